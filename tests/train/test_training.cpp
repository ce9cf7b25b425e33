// Tests of train/ and of the whole CLIP training path: every parameter's InfoNCE gradient of a
// tiny CLIP against PyTorch autograd, three AdamW steps against torch.optim.AdamW, the schedule,
// clipping, accumulation and freezing. Fixture: tools/make_training_fixtures.py.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/io/hf_config.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/models/clip.hpp"
#include "mmalign/objectives/contrastive.hpp"
#include "mmalign/train/adamw.hpp"
#include "mmalign/train/gradients.hpp"
#include "mmalign/train/schedule.hpp"
#include "support/clip_step.hpp"

using namespace mmalign;
using Be = CpuBackend<float>;

namespace {
const std::string fixtures = std::string(MMALIGN_FIXTURE_DIR);

// A two-parameter "module" for optimizer and gradient utilities.
struct TwoParams {
    std::string na, nb;
    Parameter<float> a, b;
    TwoParams(std::string x, Shape sa, std::string y, Shape sb) : na(std::move(x)), nb(std::move(y)), a(sa), b(sb) {}
    template <class F>
    void visit(F&& fn, const std::string& = "") {
        fn(na, a);
        fn(nb, b);
    }
};

Be& be_for_empty() {
    static Be be;
    return be;
}

std::vector<std::int32_t> as_ids(const Tensor<float>& t) { return {t.begin(), t.end()}; }

// max |a − b| / max(1, max |b|)
double scaled_diff(ConstView<float> a, ConstView<float> b) {
    double worst = 0, scale = 1;
    for (index_t i = 0; i < b.numel(); ++i) {
        worst = std::max(worst, std::abs(double(a.data()[i]) - double(b.data()[i])));
        scale = std::max(scale, std::abs(double(b.data()[i])));
    }
    return worst / scale;
}
}  // namespace

TEST_CASE("a tiny CLIP's InfoNCE gradient w.r.t. every parameter equals PyTorch autograd (<= 1e-4 relative)") {
    auto cfg = io::load_clip_config(fixtures + "/clip/tiny_quick_gelu/config.json");
    Clip<Be> model(Clip<Be>::Config::from_hf(cfg));
    io::load_parameters(model, io::SafetensorsFile::open(fixtures + "/clip/tiny_quick_gelu/model.safetensors"), "");
    auto f = io::SafetensorsFile::open(fixtures + "/training.safetensors");
    Tensor<float> pixels = f.read<float>("clip.pixel_values");
    const auto ids = as_ids(f.read<float>("clip.input_ids")), mask = as_ids(f.read<float>("clip.attention_mask"));
    Be be({.threads = 2});
    const float loss = test::clip_infonce_backward(be, model, pixels.view(), ids, mask, 3);
    CHECK(std::abs(loss - f.read<float>("clip.loss")(0)) / std::abs(f.read<float>("clip.loss")(0)) <= 1e-6);
    std::size_t checked = 0;
    double worst = 0;
    std::string worst_name;
    model.visit([&](const std::string& name, Parameter<float>& p) {
        Tensor<float> ref = f.read<float>("clip.grad." + name);
        const double d = scaled_diff(p.grad.view(), ref.view());
        if (d > worst) worst = d, worst_name = name;
        CHECK_MESSAGE(d <= 1e-4, name, " relative diff ", d);
        ++checked;
    });
    MESSAGE("checked ", checked, " gradients; worst ", worst, " (", worst_name, ")");
    CHECK(checked == 78);
}

TEST_CASE("three AdamW steps equal torch.optim.AdamW (decoupled decay on the matrix only) to 1e-6") {
    auto f = io::SafetensorsFile::open(fixtures + "/training.safetensors");
    TwoParams m("w", Shape{4, 5}, "b", Shape{5});
    m.a.value = f.read<float>("adamw.w0");
    m.b.value = f.read<float>("adamw.b0");
    Be be;
    AdamW<Be> opt({.lr = 0.01, .beta1 = 0.9, .beta2 = 0.98, .eps = 1e-6, .weight_decay = 0.1});
    for (int step = 1; step <= 3; ++step) {
        m.a.grad = f.read<float>("adamw.gw" + std::to_string(step));
        m.b.grad = f.read<float>("adamw.gb" + std::to_string(step));
        opt.step(be, m);
        CHECK(scaled_diff(m.a.value.view(), f.read<float>("adamw.w" + std::to_string(step)).view()) <= 1e-6);
        CHECK(scaled_diff(m.b.value.view(), f.read<float>("adamw.b" + std::to_string(step)).view()) <= 1e-6);
    }
    CHECK(opt.step_count() == 3);
}

TEST_CASE("the default decay rule spares biases, gains, embeddings tables and the logit scale") {
    CHECK(default_weight_decay_filter("vision_model.encoder.layers.0.mlp.fc1.weight", Shape{8, 4}));
    CHECK(default_weight_decay_filter("vision_model.embeddings.patch_embedding.weight", Shape{8, 3, 4, 4}));
    CHECK_FALSE(default_weight_decay_filter("vision_model.encoder.layers.0.mlp.fc1.bias", Shape{8}));
    CHECK_FALSE(default_weight_decay_filter("text_model.final_layer_norm.weight", Shape{8}));
    CHECK_FALSE(default_weight_decay_filter("text_model.embeddings.token_embedding.weight", Shape{100, 8}));
    CHECK_FALSE(default_weight_decay_filter("logit_scale", Shape{}));
}

TEST_CASE("warm-up + cosine follows open_clip's cosine_lr") {
    WarmupCosine s{.base_lr = 1.0, .warmup = 10, .total = 110};
    CHECK(s(0) == doctest::Approx(0.1));
    CHECK(s(9) == doctest::Approx(1.0));
    CHECK(s(10) == doctest::Approx(1.0));
    CHECK(s(60) == doctest::Approx(0.5));
    CHECK(s(110) == doctest::Approx(0.0));
}

TEST_CASE("clip_grad_norm rescales to the max norm and reports the norm before; freeze matches globs") {
    TwoParams m("vision.a", Shape{2}, "text.b", Shape{2});
    CHECK_FALSE(m.a.has_grad());  // allocated by the first backward, not by construction
    CHECK(clip_grad_norm(be_for_empty(), m, 1.0) == 0.0);
    m.a.grad = Tensor<float>(Shape{2}, 0.f), m.b.grad = Tensor<float>(Shape{2}, 0.f);
    m.a.grad(0) = 3, m.b.grad(1) = 4;  // norm 5
    Be be;
    CHECK(clip_grad_norm(be, m, 1.0) == doctest::Approx(5.0));
    CHECK(m.a.grad(0) == doctest::Approx(0.6).epsilon(1e-5));
    CHECK(m.b.grad(1) == doctest::Approx(0.8).epsilon(1e-5));
    CHECK(clip_grad_norm(be, m, 10.0) == doctest::Approx(1.0).epsilon(1e-5));  // below: unchanged
    CHECK(m.a.grad(0) == doctest::Approx(0.6).epsilon(1e-5));
    scale_gradients(be, m, 0.5);
    CHECK(m.a.grad(0) == doctest::Approx(0.3).epsilon(1e-5));
    CHECK(freeze(m, "vision.*") == 1);
    CHECK_FALSE(m.a.requires_grad);
    CHECK(m.b.requires_grad);
    CHECK(glob_match("text_model.*.weight", "text_model.encoder.layers.0.mlp.fc1.weight"));
    CHECK_FALSE(glob_match("text_model.*.weight", "text_model.final_layer_norm.bias"));
}
