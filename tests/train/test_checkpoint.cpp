// Tests of train/checkpoint.hpp on the CPU: a resumed tiny-CLIP run with loss scaling equals the
// uninterrupted one bit for bit, the loss scaler's state round-trips exactly, malformed files and
// mismatched requests fail with messages that name the file and the field, files of the first
// format (no master or scaler entries) still load, and double storage is written as F64. The
// float master weights of 16-bit storage are tested on the GPU (tests/cuda/test_cuda_half.cu).
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <unistd.h>
#include <vector>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/io/hf_config.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/models/clip.hpp"
#include "mmalign/train/adamw.hpp"
#include "mmalign/train/checkpoint.hpp"
#include "mmalign/train/loss_scaler.hpp"
#include "support/clip_step.hpp"
#include "support/errors.hpp"
#include "support/temp_dir.hpp"

using namespace mmalign;
using Be = CpuBackend<float>;
namespace fs = std::filesystem;

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

/// The tiny HF CLIP with its training batch, an AdamW and a LossScaler whose scale grows every
/// second step (so the scaler's state changes across a save).
struct ClipRun {
    Clip<Be> model;
    AdamW<Be> opt;
    LossScaler<Be> scaler;
    test::ClipBatch batch;

    // Member initialisers with designated initialisers crash GCC 12 here; the constructor's list does not.
    ClipRun()
        : model(test::tiny_clip<Be>()),
          opt({.lr = 1e-3, .weight_decay = 0.1}),
          scaler({.init_scale = 1024.0, .growth_interval = 2}),
          batch(test::ClipBatch::load()) {}
    void steps(Be& be, int n) {
        for (int s = 0; s < n; ++s) {
            test::clip_infonce_backward(be, model, batch.pixels.view(), batch.ids, batch.mask, batch.pairs,
                                        static_cast<float>(scaler.scale()));
            REQUIRE(scaler.step(be, opt, model, 1e-3));
        }
    }
};

template <class T>
bool same_bits(ConstView<T> a, ConstView<T> b) {
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(T) * std::size_t(a.numel())) == 0;
}

/// Every parameter and every optimizer moment of `a` equals `b`'s bit for bit.
template <class M, class B>
bool same_training_state(M& a, AdamW<B>& oa, M& b, AdamW<B>& ob) {
    using T = typename B::Scalar;
    std::vector<ConstView<T>> va;
    a.visit([&](const std::string&, auto& p) { va.push_back(p.value.cview()); });
    std::size_t i = 0;
    bool same = oa.state().size() == ob.state().size() && oa.step_count() == ob.step_count();
    b.visit([&](const std::string&, auto& p) { same = same && same_bits<T>(va[i++], p.value.cview()); });
    for (auto& [name, st] : oa.state()) {
        auto it = ob.state().find(name);
        same = same && it != ob.state().end() && same_bits<T>(st.exp_avg.cview(), it->second.exp_avg.cview()) &&
               same_bits<T>(st.exp_avg_sq.cview(), it->second.exp_avg_sq.cview());
    }
    return same;
}

/// A two-parameter module, for the cases that need no network.
template <class T>
struct TwoParams {
    Parameter<T> w{Shape{3, 4}}, b{Shape{4}};
    explicit TwoParams(unsigned seed = 1) {
        for (index_t i = 0; i < w.value.numel(); ++i) w.value.data()[i] = T(0.1) * T(int((i * 7 + seed) % 11) - 5);
        for (index_t i = 0; i < b.value.numel(); ++i) b.value.data()[i] = T(0.01) * T(i + seed);
    }
    template <class F>
    void visit(F&& fn, const std::string& = "") {
        fn("w", w);
        fn("b", b);
    }
};

/// `n` AdamW steps of `m` on made-up gradients that depend on the step.
template <class T>
void train(CpuBackend<T>& be, TwoParams<T>& m, AdamW<CpuBackend<T>>& opt, int n) {
    for (int s = 0; s < n; ++s) {
        m.visit([&](const std::string&, Parameter<T>& p) {
            T* g = p.grad_target(true);
            for (index_t i = 0; i < p.value.numel(); ++i) g[i] = T(0.3) * std::sin(T(i + 1) * T(opt.step_count() + 1)) + p.value.data()[i];
        });
        opt.step(be, m, 1e-2);
    }
}

/// Copies safetensors file `src` to `dst` through `edit`, which may change its metadata and its
/// tensors (read as float).
void rewrite(const std::string& src, const std::string& dst,
             const std::function<void(std::map<std::string, Tensor<float>>&, std::map<std::string, std::string>&)>& edit) {
    std::map<std::string, Tensor<float>> tensors;
    std::map<std::string, std::string> meta;
    {
        auto f = io::SafetensorsFile::open(src);
        for (const auto& name : f.names()) tensors.emplace(name, f.read<float>(name));
        meta = f.metadata();
    }
    edit(tensors, meta);
    std::vector<io::TensorToSave> out;
    for (const auto& [name, t] : tensors) out.emplace_back(name, t.cview());
    io::save_safetensors(dst, out, meta);
}

/// save_checkpoint as it was before master weights and the loss scaler were stored (format
/// "mmalign-train-1" with step and optimizer_steps only): the files it wrote must still load.
template <class M>
void save_checkpoint_first_format(const std::string& path, M& model, AdamW<Be>& opt, std::int64_t step) {
    std::vector<io::TensorToSave> out;
    model.visit([&](const std::string& name, auto& p) {
        out.emplace_back("model." + name, p.value.cview());
        auto it = opt.state().find(name);
        if (it != opt.state().end()) {
            out.emplace_back("optim." + name + ".exp_avg", it->second.exp_avg.cview());
            out.emplace_back("optim." + name + ".exp_avg_sq", it->second.exp_avg_sq.cview());
        }
    });
    io::save_safetensors(path, out, {{"format", "mmalign-train-1"}, {"step", std::to_string(step)},
                                     {"optimizer_steps", std::to_string(opt.step_count())}});
}
}  // namespace

TEST_CASE("a CPU CLIP run saved after 3 loss-scaled steps (backend form) and resumed in fresh objects equals the "
          "uninterrupted 6-step run bit for bit, scaler included") {
    Be be({.threads = 2});
    test::TempDir dir;
    ClipRun whole;
    whole.steps(be, 6);

    ClipRun first;
    first.steps(be, 3);
    save_checkpoint(be, dir / "ckpt.safetensors", first.model, first.opt, 3, {.scaler = &first.scaler});
    ClipRun resumed;  // fresh model (the initial weights), optimizer and scaler
    CHECK(load_checkpoint(be, dir / "ckpt.safetensors", resumed.model, resumed.opt, {.scaler = &resumed.scaler}) == 3);
    CHECK(resumed.scaler.scale() == first.scaler.scale());
    CHECK(resumed.scaler.growth_tracker() == 1);  // grew after step 2; step 3 counted
    CHECK(same_training_state(first.model, first.opt, resumed.model, resumed.opt));
    resumed.steps(be, 3);

    CHECK(same_training_state(whole.model, whole.opt, resumed.model, resumed.opt));
    CHECK(resumed.opt.step_count() == 6);
    CHECK(resumed.scaler.scale() == whole.scaler.scale());
    CHECK(resumed.scaler.scale() == 8192.0);  // grew after steps 2, 4 and 6
    CHECK(resumed.scaler.growth_tracker() == whole.scaler.growth_tracker());
    CHECK(resumed.scaler.skipped_steps() == whole.scaler.skipped_steps());
}

TEST_CASE("the loss scaler's state round-trips exactly: scales that need 17 digits, the growth tracker and the "
          "skipped count") {
    Be be;
    test::TempDir dir;
    TwoParams<float> m;
    AdamW<Be> opt;
    train(be, m, opt, 2);
    for (const double scale : {std::nextafter(1000.1, 2000.0), 1.0 / 3.0, 0.1 + 0.2, 3.0 * std::ldexp(1.0, -40)}) {
        CAPTURE(scale);
        LossScaler<Be> saved({.init_scale = 4.0});
        saved.set_scale(scale);
        saved.set_growth_tracker(1999);
        saved.set_skipped_steps(37);
        save_checkpoint(be, dir / "s.safetensors", m, opt, 2, {.scaler = &saved});
        LossScaler<Be> loaded;
        TwoParams<float> m2(5);
        AdamW<Be> opt2;
        CHECK(load_checkpoint(be, dir / "s.safetensors", m2, opt2, {.scaler = &loaded}) == 2);
        const double got = loaded.scale();
        CHECK(std::memcmp(&got, &scale, sizeof(double)) == 0);
        CHECK(loaded.growth_tracker() == 1999);
        CHECK(loaded.skipped_steps() == 37);
        CHECK(same_training_state(m, opt, m2, opt2));
    }
}

TEST_CASE("caller metadata is written beside the format's entries, and a caller key that is the format's own is "
          "refused with ArgumentError") {
    Be be;
    test::TempDir dir;
    TwoParams<float> m;
    AdamW<Be> opt;
    train(be, m, opt, 1);
    save_checkpoint(be, dir / "m.safetensors", m, opt, 1, {.metadata = {{"run", "a"}}});
    const auto meta = io::SafetensorsFile::open(dir / "m.safetensors").metadata();
    CHECK(meta.at("run") == "a");
    CHECK(meta.at("format") == "mmalign-train-1");
    CHECK(meta.at("master_weights") == "false");
    CHECK(meta.count("loss_scale") == 0);
    CHECK_THROWS_AS(save_checkpoint(be, dir / "m.safetensors", m, opt, 1, {.metadata = {{"step", "9"}}}), ArgumentError);
    CHECK_THROWS_AS(save_checkpoint(dir / "m.safetensors", m, opt, 1, {{"optimizer_steps", "9"}}), ArgumentError);
}

TEST_CASE("loading with a LossScaler from a checkpoint saved without one throws IoError naming the file and "
          "loss_scale, and leaves model, optimizer and scaler as they were") {
    Be be;
    test::TempDir dir;
    TwoParams<float> m;
    AdamW<Be> opt;
    train(be, m, opt, 2);
    save_checkpoint(be, dir / "plain.safetensors", m, opt, 2);
    TwoParams<float> m2(5), before(5);
    AdamW<Be> opt2, opt_before;
    LossScaler<Be> scaler({.init_scale = 8.0});
    const std::string msg =
        test::io_error_of([&] { load_checkpoint(be, dir / "plain.safetensors", m2, opt2, {.scaler = &scaler}); });
    CHECK(contains(msg, dir / "plain.safetensors"));
    CHECK(contains(msg, "\"loss_scale\""));
    CHECK(contains(msg, "saved without one"));
    CHECK(same_training_state(before, opt_before, m2, opt2));
    CHECK(scaler.scale() == 8.0);
}

TEST_CASE("a wrong-shaped master or moment, or a moment without its pair, throws IoError naming the file and the "
          "tensor with expected and found shapes; nothing is loaded") {
    Be be;
    test::TempDir dir;
    TwoParams<float> m;
    AdamW<Be> opt;
    train(be, m, opt, 2);
    save_checkpoint(be, dir / "good.safetensors", m, opt, 2);
    TwoParams<float> m2(5), before(5);
    AdamW<Be> opt2, opt_before;
    auto failed_load = [&](const std::string& file) {
        const std::string msg = test::io_error_of([&] { load_checkpoint(be, dir / file, m2, opt2); });
        CHECK(contains(msg, dir / file));
        CHECK(same_training_state(before, opt_before, m2, opt2));
        return msg;
    };
    SUBCASE("a master of the wrong shape (checked even where float storage ignores masters)") {
        rewrite(dir / "good.safetensors", dir / "bad.safetensors", [](auto& t, auto& meta) {
            t.emplace("optim.w.master", Tensor<float>(Shape{4, 3}, 0.f));
            meta["master_weights"] = "true";
        });
        const std::string msg = failed_load("bad.safetensors");
        CHECK(contains(msg, "tensor 'optim.w.master'"));
        CHECK(contains(msg, "expected shape [3, 4]"));
        CHECK(contains(msg, "found [4, 3]"));
    }
    SUBCASE("a moment of the wrong shape") {
        rewrite(dir / "good.safetensors", dir / "bad.safetensors",
                [](auto& t, auto&) { t["optim.b.exp_avg_sq"] = Tensor<float>(Shape{5}, 0.f); });
        const std::string msg = failed_load("bad.safetensors");
        CHECK(contains(msg, "tensor 'optim.b.exp_avg_sq'"));
        CHECK(contains(msg, "expected shape [4]"));
        CHECK(contains(msg, "found [5]"));
    }
    SUBCASE("a moment without its pair") {
        rewrite(dir / "good.safetensors", dir / "bad.safetensors", [](auto& t, auto&) { t.erase("optim.w.exp_avg"); });
        const std::string msg = failed_load("bad.safetensors");
        CHECK(contains(msg, "tensor 'optim.w.exp_avg' missing"));
        CHECK(contains(msg, "[3, 4]"));
    }
    SUBCASE("a parameter of the wrong shape") {
        rewrite(dir / "good.safetensors", dir / "bad.safetensors", [](auto& t, auto&) { t["model.b"] = Tensor<float>(Shape{2, 2}, 0.f); });
        const std::string msg = failed_load("bad.safetensors");
        CHECK(contains(msg, "model.b: expected shape [4], found [2, 2]"));
    }
}

TEST_CASE("a corrupt file, or a metadata field that is missing or malformed, throws IoError naming the file and the "
          "field with expected and found") {
    Be be;
    test::TempDir dir;
    TwoParams<float> m;
    AdamW<Be> opt;
    train(be, m, opt, 1);
    save_checkpoint(be, dir / "good.safetensors", m, opt, 1, {.metadata = {{"run", "a"}}});
    LossScaler<Be> scaler;
    auto load_msg = [&](const std::string& file, bool with_scaler = false) {
        TwoParams<float> m2;
        AdamW<Be> opt2;
        const std::string msg = test::io_error_of([&] {
            CheckpointOptions<Be> o;
            if (with_scaler) o.scaler = &scaler;
            load_checkpoint(be, dir / file, m2, opt2, o);
        });
        CHECK(contains(msg, dir / file));
        return msg;
    };
    SUBCASE("a truncated file") {
        fs::copy_file(dir / "good.safetensors", dir / "cut.safetensors");
        fs::resize_file(dir / "cut.safetensors", fs::file_size(dir / "cut.safetensors") - 5);
        CHECK(contains(load_msg("cut.safetensors"), "truncated file?"));
    }
    SUBCASE("not a training checkpoint") {
        rewrite(dir / "good.safetensors", dir / "bad.safetensors", [](auto&, auto& meta) { meta.erase("format"); });
        CHECK(contains(load_msg("bad.safetensors"), "metadata has no \"format\""));
    }
    SUBCASE("another format") {
        rewrite(dir / "good.safetensors", dir / "bad.safetensors", [](auto&, auto& meta) { meta["format"] = "mmalign-train-9"; });
        const std::string msg = load_msg("bad.safetensors");
        CHECK(contains(msg, "\"format\" is \"mmalign-train-9\", expected \"mmalign-train-1\""));
    }
    SUBCASE("a step count that is not an integer") {
        rewrite(dir / "good.safetensors", dir / "bad.safetensors", [](auto&, auto& meta) { meta["optimizer_steps"] = "1x"; });
        CHECK(contains(load_msg("bad.safetensors"), "metadata \"optimizer_steps\" is \"1x\", expected an integer"));
    }
    SUBCASE("a master_weights flag that is neither true nor false") {
        rewrite(dir / "good.safetensors", dir / "bad.safetensors", [](auto&, auto& meta) { meta["master_weights"] = "yes"; });
        CHECK(contains(load_msg("bad.safetensors"), "\"master_weights\" is \"yes\", expected \"true\" or \"false\""));
    }
    SUBCASE("a loss scale that is not a number, or not positive") {
        save_checkpoint(be, dir / "scaled.safetensors", m, opt, 1, {.scaler = &scaler});
        rewrite(dir / "scaled.safetensors", dir / "bad.safetensors", [](auto&, auto& meta) { meta["loss_scale"] = "big"; });
        CHECK(contains(load_msg("bad.safetensors", true), "metadata \"loss_scale\" is \"big\", expected a number"));
        rewrite(dir / "scaled.safetensors", dir / "bad.safetensors", [](auto&, auto& meta) { meta["loss_scale"] = "-2"; });
        CHECK(contains(load_msg("bad.safetensors", true), "expected a finite scale > 0 and counts >= 0, found -2, 0, 0"));
    }
    SUBCASE("one scaler field missing") {
        save_checkpoint(be, dir / "scaled.safetensors", m, opt, 1, {.scaler = &scaler});
        rewrite(dir / "scaled.safetensors", dir / "bad.safetensors",
                [](auto&, auto& meta) { meta.erase("loss_scale_skipped_steps"); });
        CHECK(contains(load_msg("bad.safetensors", true), "metadata has no \"loss_scale_skipped_steps\""));
    }
}

TEST_CASE("a checkpoint of the first format (no master_weights or loss-scale entries) loads with the host and the "
          "backend forms, and a file of the host form loads with the backend form") {
    Be be;
    test::TempDir dir;
    TwoParams<float> m;
    AdamW<Be> opt;
    train(be, m, opt, 3);
    save_checkpoint_first_format(dir / "v1.safetensors", m, opt, 7);
    {
        TwoParams<float> m2(5);
        AdamW<Be> opt2;
        CHECK(load_checkpoint(dir / "v1.safetensors", m2, opt2) == 7);
        CHECK(same_training_state(m, opt, m2, opt2));
    }
    {
        TwoParams<float> m2(5);
        AdamW<Be> opt2;
        CHECK(load_checkpoint(be, dir / "v1.safetensors", m2, opt2) == 7);
        CHECK(same_training_state(m, opt, m2, opt2));
        // and the loaded run goes on like the original
        train(be, m, opt, 2);
        train(be, m2, opt2, 2);
        CHECK(same_training_state(m, opt, m2, opt2));
    }
    save_checkpoint(dir / "host.safetensors", m, opt, 9, {{"note", "host form"}});
    TwoParams<float> m3(5);
    AdamW<Be> opt3;
    CHECK(load_checkpoint(be, dir / "host.safetensors", m3, opt3) == 9);
    CHECK(same_training_state(m, opt, m3, opt3));
}

TEST_CASE("double storage is written as F64 and restored exactly; float storage as F32") {
    using Bd = CpuBackend<double>;
    Bd be;
    test::TempDir dir;
    TwoParams<double> m;
    AdamW<Bd> opt;
    train(be, m, opt, 2);
    save_checkpoint(be, dir / "d.safetensors", m, opt, 2);
    {
        auto f = io::SafetensorsFile::open(dir / "d.safetensors");
        for (const char* name : {"model.w", "optim.w.exp_avg", "optim.b.exp_avg_sq"}) CHECK(f.dtype(name) == "F64");
    }
    TwoParams<double> m2(5);
    AdamW<Bd> opt2;
    CHECK(load_checkpoint(be, dir / "d.safetensors", m2, opt2) == 2);
    CHECK(same_training_state(m, opt, m2, opt2));

    Be bf;
    TwoParams<float> mf;
    AdamW<Be> optf;
    train(bf, mf, optf, 1);
    save_checkpoint(bf, dir / "f.safetensors", mf, optf, 1);
    auto f = io::SafetensorsFile::open(dir / "f.safetensors");
    for (const char* name : {"model.w", "optim.w.exp_avg", "optim.b.exp_avg_sq"}) CHECK(f.dtype(name) == "F32");
}
