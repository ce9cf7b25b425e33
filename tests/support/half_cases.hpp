// The model-level cases of the 16-bit storage tests, once for any backend B with a 16-bit Scalar:
// CudaBackend<bfloat16 / float16> (tests/cuda/test_cuda_half.cu) and their CPU reference
// CpuBackend<bfloat16 / float16> (tests/backend/test_cpu_half.cpp) call the same bodies. The float
// reference runs on CpuBackend<float>; values reach B through support/half.hpp's to_backend and
// to_float.
//
// Tolerances follow from the format's unit roundoff u (bfloat16 2^-8, float16 2^-11): relative
// norm of the difference within 8u (forward) and 16u (gradients).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/core/float16.hpp"
#include "mmalign/io/hf_config.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/models/clip.hpp"
#include "mmalign/nn/transformer_stack.hpp"
#include "mmalign/train/adamw.hpp"
#include "mmalign/train/checkpoint.hpp"
#include "mmalign/train/loss_scaler.hpp"
#include "support/clip_step.hpp"
#include "support/errors.hpp"
#include "support/half.hpp"
#include "support/temp_dir.hpp"

namespace mmalign::test {

/// A CLIP-style pre-norm stack (3 layers, quick_gelu, causal + padding) in 16-bit storage on `be`
/// follows the float one on the CPU, forward (8u) and backward (16u), with `be`'s attention path.
template <class B>
void stack_follows_float(B& be, bool fused) {
    using T = typename B::Scalar;
    using Cpu = CpuBackend<float>;
    Cpu cpu;
    be.set_fused_attention(fused);  // the float reference takes the plain path
    typename TransformerStack<Cpu, PreNorm>::Config cc;
    cc.layers = 3;
    cc.block.dim = 64, cc.block.heads = 4, cc.block.mlp_hidden = 128, cc.block.activation = Activation::quick_gelu;
    typename TransformerStack<B, PreNorm>::Config gc;
    gc.layers = 3;
    gc.block.dim = 64, gc.block.heads = 4, gc.block.mlp_hidden = 128, gc.block.activation = Activation::quick_gelu;
    TransformerStack<Cpu, PreNorm> cm(cc);
    TransformerStack<B, PreNorm> gm(gc);
    unsigned seed = 40;
    cm.visit([&](const std::string& name, Parameter<float>& p) {
        p.value = random_rounded<T>(p.shape(), seed++, -0.3, 0.3);
        if (name.find("norm") != std::string::npos && name.find("weight") != std::string::npos)
            for (auto& v : p.value) v = static_cast<float>(T(v + 1.0f));
    });
    copy_parameters(be, gm, cm);
    std::vector<Parameter<float>*> host;
    cm.visit([&](const std::string&, Parameter<float>& p) { host.push_back(&p); });
    const Tensor<float> x = random_rounded<T>({3, 11, 64}, 90), dy = random_rounded<T>({3, 11, 64}, 91);
    const std::vector<std::int32_t> keep = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0,
                                            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    Tensor<float> y(x.shape()), dx(x.shape());
    typename TransformerStack<Cpu, PreNorm>::Saved cs;
    typename TransformerStack<B, PreNorm>::Saved gs;
    cm.forward(cpu, x.view(), {}, AttentionMask<float>{.key_keep = keep.data(), .causal = true}, {}, y.view(), &cs);
    cm.backward(cpu, cs, dy.view(), dx.view(), {}, GradMode::accumulate);
    auto gx = to_backend(be, x), gdy = to_backend(be, dy);
    typename B::Tensor gy(x.shape(), std::numeric_limits<T>::quiet_NaN()), gdx(x.shape(), std::numeric_limits<T>::quiet_NaN());
    gm.forward(be, gx.cview(), {}, AttentionMask<T>{.key_keep = keep.data(), .causal = true}, {}, gy.view(), &gs);
    gm.backward(be, gs, gdy.cview(), gdx.view(), {}, GradMode::accumulate);
    const double u = unit_roundoff<T>;
    check_norm("stack y", to_float(be, gy.cview()).view(), y.view(), 8 * u);
    check_norm("stack d_x", to_float(be, gdx.cview()).view(), dx.view(), 16 * u);
    std::size_t i = 0;
    gm.visit([&](const std::string& name, auto& p) {
        CAPTURE(name);
        REQUIRE(p.has_grad());
        const Parameter<float>& ref = *host[i++];
        // The key projection's bias has an exactly zero gradient (softmax is shift invariant):
        // both sides hold rounding noise only, so its relative error means nothing; it must be
        // small next to the module's other gradients instead.
        if (name.find("k_proj.bias") != std::string::npos) {
            const Tensor<float> g = to_float(be, p.grad.cview());
            double worst = 0, scale = 0;
            for (float v : g) worst = std::max(worst, double(std::abs(v)));
            for (const Parameter<float>* q : host)
                for (float v : q->grad) scale = std::max(scale, double(std::abs(v)));
            CHECK(worst <= 16 * u * scale);
            return;
        }
        check_norm("d " + name, to_float(be, p.grad.cview()).view(), ref.grad.view(), 16 * u);
    });
}

/// CLIP loaded from each HF float fixture into 16-bit storage (a fresh B each) reproduces HF's
/// image and text embeddings within 8u.
template <class B>
void clip_reproduces_hf_embeddings() {
    using T = typename B::Scalar;
    const std::string root = std::string(MMALIGN_FIXTURE_DIR) + "/clip/";
    for (const std::string name : {"tiny_quick_gelu", "odd_grid_gelu"}) {
        CAPTURE(name);
        B be;
        auto model = Clip<B>::from_pretrained(be, root + name);  // float checkpoint, rounded on load
        auto exp = io::SafetensorsFile::open(root + name + "/expected.safetensors");
        const Tensor<float> pixels = exp.read<float>("pixel_values");
        const Tensor<float> idf = exp.read<float>("input_ids"), mf = exp.read<float>("attention_mask");
        const std::vector<std::int32_t> ids(idf.begin(), idf.end()), mask(mf.begin(), mf.end());
        auto px = to_backend(be, pixels);
        auto out = model.forward(be, px.cview(), ids, mask, idf.dim(0));
        const double u = unit_roundoff<T>;
        check_norm("image_embeds", to_float(be, out.image_embeds.cview()).view(), exp.read<float>("image_embeds").view(), 8 * u);
        check_norm("text_embeds", to_float(be, out.text_embeds.cview()).view(), exp.read<float>("text_embeds").view(), 8 * u);
    }
}

/// Three float16 mixed-precision steps (loss scale 2^10, float masters) follow the CPU's float run:
/// losses within 16u·exp(logit_scale), no step skipped, the update's direction within cosine 0.95
/// and its norm within 5%.
template <class B>
void mixed_precision_follows_float(B& be) {
    using T = typename B::Scalar;
    static_assert(std::is_same_v<T, mmalign::float16>, "the loss scale and bounds are float16's");
    using Cpu = CpuBackend<float>;
    const std::string dir = std::string(MMALIGN_FIXTURE_DIR) + "/clip/tiny_quick_gelu";
    const ClipBatch batch = half_batch<T>();
    const Tensor<float>& pixels = batch.pixels;
    const index_t N = batch.pairs;
    Cpu cpu;
    auto cm = tiny_clip<Cpu>();
    cm.visit([](const std::string&, Parameter<float>& p) { p.value = rounded<T>(p.value); });
    auto gm = Clip<B>::from_pretrained(be, dir);  // the same weights, rounded on load
    AdamW<Cpu> copt(HalfRun<Cpu>::adamw_config());
    AdamW<B> gopt(HalfRun<B>::adamw_config());
    // 2^10, not torch's 2^16: this model's scaled feature gradients reach ~7·2^10 and float16
    // overflows at 65504, where GradScaler would skip the first steps and back off to the same.
    typename LossScaler<B>::Config sc;
    sc.init_scale = 1024.0;
    LossScaler<B> scaler(sc);
    auto gpx = to_backend(be, pixels);
    std::vector<Tensor<float>> initial;
    cm.visit([&](const std::string&, Parameter<float>& p) { initial.push_back(p.value); });
    const double logit_scale = std::exp(double(cm.logit_scale.value.data()[0]));
    for (int step = 0; step < 3; ++step) {
        CAPTURE(step);
        const float lc = clip_infonce_backward(cpu, cm, pixels.view(), batch.ids, batch.mask, N);
        copt.step(cpu, cm);
        // float16 storage, the backward seeded with the loss scale
        const float lg = clip_infonce_backward(be, gm, gpx.cview(), batch.ids, batch.mask, N, float(scaler.scale()));
        // The logits are cosines × exp(logit_scale); the mean cross-entropy moves by at most twice
        // the largest logit change, and cosines of 8u-close features differ by at most 16u.
        CHECK(std::abs(lg - lc) <= 16 * unit_roundoff<T> * logit_scale);
        CHECK(scaler.step(be, gopt, gm));
    }
    CHECK(scaler.skipped_steps() == 0);
    CHECK(gopt.step_count() == 3);
    // The three updates point the float run's way. Adam's first steps move each weight by about
    // ±lr whatever the gradient's size, so weights whose gradient is rounding noise (the key
    // bias's is zero in exact arithmetic) may move either way: compare the whole update's
    // direction, not each weight.
    std::vector<const Tensor<float>*> ref;
    cm.visit([&](const std::string&, Parameter<float>& p) { ref.push_back(&p.value); });
    std::size_t i = 0;
    double dot = 0, n_cpu = 0, n_half = 0;
    gm.visit([&](const std::string&, auto& p) {
        const Tensor<float> w = to_float(be, p.value.cview());
        for (index_t j = 0; j < w.numel(); ++j) {
            const double dc = double(ref[i]->data()[j]) - initial[i].data()[j];
            const double dg = double(w.data()[j]) - initial[i].data()[j];
            dot += dc * dg, n_cpu += dc * dc, n_half += dg * dg;
        }
        ++i;
    });
    const double cosine = dot / std::sqrt(n_cpu * n_half);
    INFO("cosine of the float16 and float updates " << cosine << ", norms " << std::sqrt(n_half) << " / "
                                                    << std::sqrt(n_cpu));
    CHECK(cosine >= 0.95);
    CHECK(std::abs(std::sqrt(n_half) / std::sqrt(n_cpu) - 1) <= 0.05);
}

/// A 16-bit HalfRun saved after 2 steps (float masters, scaler) and resumed in fresh objects
/// equals 4 uninterrupted steps bit for bit; with `check_dropped_master`, a checkpoint missing one
/// master beside its moments is then refused with an IoError naming the file and the tensor.
template <class B>
void resume_equals_uninterrupted(B& be, bool check_dropped_master = false) {
    using T = typename B::Scalar;
    const ClipBatch batch = half_batch<T>();
    auto px = to_backend(be, batch.pixels);
    TempDir tmp;
    const std::string path = tmp / "resume.safetensors", cut = tmp / "no_master.safetensors";

    HalfRun<B> whole(be);
    half_steps(be, whole, batch, px.cview(), 4);

    HalfRun<B> first(be);
    half_steps(be, first, batch, px.cview(), 2);
    save_checkpoint(be, path, first.model, first.opt, 2, {.scaler = &first.scaler});
    {
        auto f = io::SafetensorsFile::open(path);
        CHECK(f.metadata().at("master_weights") == "true");
        for (const auto& entry : first.opt.state()) {
            const std::string& name = entry.first;
            CAPTURE(name);
            REQUIRE(f.contains("optim." + name + ".master"));
            CHECK(f.dtype("optim." + name + ".master") == "F32");
            CHECK(f.dtype("model." + name) == "F32");
        }
    }
    HalfRun<B> resumed(be);  // the initial weights, no optimizer state, the initial scale
    CHECK(load_checkpoint(be, path, resumed.model, resumed.opt, {.scaler = &resumed.scaler}) == 2);
    CHECK(resumed.scaler.scale() == first.scaler.scale());
    CHECK(resumed.scaler.growth_tracker() == 2);
    REQUIRE(resumed.opt.state().size() == first.opt.state().size());
    for (auto& [name, st] : resumed.opt.state()) {
        CAPTURE(name);
        CHECK(same_values(be, st.master.cview(), first.opt.state().at(name).master.cview()));
    }
    half_steps(be, resumed, batch, px.cview(), 2);

    CHECK(resumed.opt.step_count() == whole.opt.step_count());
    CHECK(resumed.scaler.scale() == whole.scaler.scale());
    CHECK(resumed.scaler.scale() == 2048.0);  // grew after step 3, in the resumed half
    CHECK(resumed.scaler.growth_tracker() == whole.scaler.growth_tracker());
    CHECK(resumed.scaler.skipped_steps() == whole.scaler.skipped_steps());
    std::vector<ConstView<T>> want;
    whole.model.visit([&](const std::string&, auto& p) { want.push_back(p.value.cview()); });
    std::size_t i = 0;
    resumed.model.visit([&](const std::string& name, auto& p) {
        CAPTURE(name);
        CHECK(same_values(be, p.value.cview(), want[i++]));
    });
    for (auto& [name, st] : resumed.opt.state()) {
        CAPTURE(name);
        const auto& w = whole.opt.state().at(name);
        CHECK(same_values(be, st.master.cview(), w.master.cview()));
        CHECK(same_values(be, st.exp_avg.cview(), w.exp_avg.cview()));
        CHECK(same_values(be, st.exp_avg_sq.cview(), w.exp_avg_sq.cview()));
    }
    if (!check_dropped_master) return;

    // A master missing beside its parameter's moments is an error, not a silent restart.
    std::string dropped;
    {
        auto f = io::SafetensorsFile::open(path);
        std::vector<Tensor<float>> keep;
        std::vector<std::string> names;
        for (const auto& name : f.names()) {
            if (dropped.empty() && name.ends_with(".master")) {
                dropped = name;
                continue;
            }
            keep.push_back(f.read<float>(name));
            names.push_back(name);
        }
        std::vector<io::TensorToSave> out;
        for (std::size_t k = 0; k < keep.size(); ++k) out.emplace_back(names[k], keep[k].cview());
        io::save_safetensors(cut, out, f.metadata());
    }
    HalfRun<B> other(be);
    const std::string msg = io_error_of([&] { load_checkpoint(be, cut, other.model, other.opt); });
    CHECK(msg.find(cut) != std::string::npos);
    CHECK(msg.find("tensor '" + dropped + "' missing") != std::string::npos);
}

/// Checkpoints cross storage types: a float CPU checkpoint loads into 16-bit storage as rounded
/// parameters with the unrounded values as masters, and a 16-bit checkpoint loads into float (its
/// masters ignored).
template <class B>
void checkpoints_cross_storage(B& be) {
    using T = typename B::Scalar;
    using Cpu = CpuBackend<float>;
    Cpu cpu;
    const ClipBatch batch = half_batch<T>();
    auto px = to_backend(be, batch.pixels);
    TempDir tmp;
    const std::string from_float = tmp / "from_float.safetensors", from_half = tmp / "from_half.safetensors";

    auto cm = tiny_clip<Cpu>();
    AdamW<Cpu> copt(HalfRun<Cpu>::adamw_config());
    clip_infonce_backward(cpu, cm, batch.pixels.view(), batch.ids, batch.mask, 3);
    copt.step(cpu, cm);
    save_checkpoint(from_float, cm, copt, 1);

    HalfRun<B> half(be);
    CHECK(load_checkpoint(be, from_float, half.model, half.opt) == 1);
    std::vector<Tensor<float>> float_values;
    cm.visit([&](const std::string&, Parameter<float>& p) { float_values.push_back(p.value); });
    std::size_t i = 0;
    half.model.visit([&](const std::string& name, auto& p) {
        CAPTURE(name);
        CHECK(same_bits(to_float(be, p.value.cview()).view(), rounded<T>(float_values[i++]).view()));
    });
    check_masters_equal(be, half.opt, half.model, float_values);
    half_steps(be, half, batch, px.cview(), 1);
    CHECK(half.opt.step_count() == 2);
    check_parameters_are_rounded_masters(be, half.opt, half.model);

    save_checkpoint(be, from_half, half.model, half.opt, 2);
    auto cm2 = Clip<Cpu>(Clip<Cpu>::Config::from_hf(
        io::load_clip_config(std::string(MMALIGN_FIXTURE_DIR) + "/clip/tiny_quick_gelu/config.json")));
    AdamW<Cpu> copt2;
    CHECK(load_checkpoint(from_half, cm2, copt2) == 2);
    std::vector<Tensor<float>> half_values;
    half.model.visit([&](const std::string&, auto& p) { half_values.push_back(to_float(be, p.value.cview())); });
    i = 0;
    cm2.visit([&](const std::string& name, Parameter<float>& p) {
        CAPTURE(name);
        CHECK(same_bits(p.value.view(), half_values[i++].view()));
    });
    CHECK(copt2.step_count() == 2);
}

/// load_master_weights starts 16-bit training from the HF checkpoint's unrounded values, a step-0
/// checkpoint keeps them, steps use them, and an unknown prefix is an IoError that changes nothing.
template <class B>
void master_weights_from_hf(B& be) {
    using T = typename B::Scalar;
    const ClipBatch batch = half_batch<T>();
    auto px = to_backend(be, batch.pixels);
    const std::string dir = std::string(MMALIGN_FIXTURE_DIR) + "/clip/tiny_quick_gelu";
    const auto source = io::Checkpoint::open(dir);
    HalfRun<B> run(be);  // from_pretrained: the parameters rounded to T
    load_master_weights(be, run.opt, run.model, source);
    std::vector<Tensor<float>> file_values;
    run.model.visit([&](const std::string& name, auto& p) {
        Tensor<float> v(p.shape());
        source.read_into(name, v.view());
        file_values.push_back(std::move(v));
    });
    check_masters_equal(be, run.opt, run.model, file_values);
    // Saved before any step (masters without moments) and resumed: the masters survive.
    TempDir tmp;
    save_checkpoint(be, tmp / "step0.safetensors", run.model, run.opt, 0);
    HalfRun<B> resumed(be);
    CHECK(load_checkpoint(be, tmp / "step0.safetensors", resumed.model, resumed.opt) == 0);
    check_masters_equal(be, resumed.opt, resumed.model, file_values);
    half_steps(be, run, batch, px.cview(), 2);
    check_parameters_are_rounded_masters(be, run.opt, run.model);

    HalfRun<B> other(be);
    const std::string msg = io_error_of([&] { load_master_weights(be, other.opt, other.model, source, "nope."); });
    CHECK(msg.find("nope.") != std::string::npos);
    CHECK(other.opt.state().empty());
}

}  // namespace mmalign::test
