// Tests of train/loss_scaler.hpp and the mixed-precision parts of train/adamw.hpp on the CPU:
// power-of-two loss scaling is exact (a scaled tiny-CLIP run equals the unscaled one bit for
// bit), an overflowing gradient skips the step and backs the scale off, finite steps grow it,
// and AdamW's master-weight form equals the plain update. The 16-bit side of mixed precision
// runs on the CUDA backend (tests/cuda/test_cuda_half.cu).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/io/hf_config.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/models/clip.hpp"
#include "mmalign/objectives/contrastive.hpp"
#include "mmalign/train/adamw.hpp"
#include "mmalign/train/loss_scaler.hpp"
#include "support/clip_step.hpp"

using namespace mmalign;
using Be = CpuBackend<float>;

namespace {

struct Run {
    Clip<Be> model = test::tiny_clip<Be>();
    AdamW<Be> opt;
    test::ClipBatch batch = test::ClipBatch::load();

    Run() {
        opt.config.lr = 1e-3;
        opt.config.weight_decay = 0.1;
    }
    /// Forward and backward of the InfoNCE loss with the backward seeded by `seed`; returns the loss.
    float backward(Be& be, double seed) {
        return test::clip_infonce_backward(be, model, batch.pixels.view(), batch.ids, batch.mask, batch.pairs,
                                           static_cast<float>(seed));
    }
};

bool same_bits(Clip<Be>& a, Clip<Be>& b) {
    std::vector<const Tensor<float>*> va;
    a.visit([&](const std::string&, Parameter<float>& p) { va.push_back(&p.value); });
    std::size_t i = 0;
    bool same = true;
    b.visit([&](const std::string&, Parameter<float>& p) {
        same = same && std::memcmp(va[i]->data(), p.value.data(), sizeof(float) * p.value.numel()) == 0;
        ++i;
    });
    return same;
}
}  // namespace

TEST_CASE("a loss-scaled tiny-CLIP run (scale 2^10, growing) equals the unscaled run bit for bit") {
    Be be({.threads = 2});
    Run plain, scaled;
    LossScaler<Be> scaler({.init_scale = 1024.0, .growth_interval = 2});
    for (int step = 0; step < 5; ++step) {
        const float l0 = plain.backward(be, 1.0);
        plain.opt.step(be, plain.model, 1e-3);
        const float l1 = scaled.backward(be, scaler.scale());
        CHECK(l0 == l1);
        CHECK(scaler.step(be, scaled.opt, scaled.model, 1e-3));
    }
    CHECK(same_bits(plain.model, scaled.model));
    CHECK(scaler.scale() == 4096.0);  // grew twice: after steps 2 and 4
    CHECK(scaler.growth_tracker() == 1);
    CHECK(scaled.opt.step_count() == 5);
}

TEST_CASE("an overflowing gradient skips the step, leaves parameters and optimizer alone, and backs off") {
    Be be;
    Run a, ref;
    LossScaler<Be> scaler;
    CHECK(scaler.scale() == 65536.0);
    a.backward(be, scaler.scale());
    CHECK(scaler.step(be, a.opt, a.model, 1e-3));
    ref.backward(be, 1.0);
    ref.opt.step(be, ref.model, 1e-3);
    a.backward(be, scaler.scale());
    a.model.visual_projection.params.weight.grad.data()[7] = std::numeric_limits<float>::infinity();
    CHECK_FALSE(scaler.step(be, a.opt, a.model, 1e-3));
    CHECK(scaler.scale() == 32768.0);
    CHECK(scaler.skipped_steps() == 1);
    CHECK(a.opt.step_count() == 1);
    CHECK(same_bits(a.model, ref.model));  // the skipped step changed nothing
    a.backward(be, scaler.scale());
    a.model.text_projection.params.weight.grad.data()[0] = std::numeric_limits<float>::quiet_NaN();
    CHECK_FALSE(scaler.step(be, a.opt, a.model, 1e-3));
    CHECK(scaler.scale() == 16384.0);
    // A finite step after the skips is the unscaled run's second step.
    a.backward(be, scaler.scale());
    CHECK(scaler.step(be, a.opt, a.model, 1e-3));
    ref.backward(be, 1.0);
    ref.opt.step(be, ref.model, 1e-3);
    CHECK(same_bits(a.model, ref.model));
}

TEST_CASE("LossScaler rejects nonsensical settings and, disabled, is a plain step") {
    CHECK_THROWS_AS(LossScaler<Be>({.init_scale = 0}), ArgumentError);
    CHECK_THROWS_AS(LossScaler<Be>({.backoff_factor = 1.5}), ArgumentError);
    CHECK_THROWS_AS(LossScaler<Be>({.growth_interval = 0}), ArgumentError);
    Be be;
    Run a;
    LossScaler<Be> off({.enabled = false});
    CHECK(off.scale() == 1.0);
    a.backward(be, off.scale());
    a.model.visual_projection.params.weight.grad.data()[0] = std::numeric_limits<float>::infinity();
    CHECK(off.step(be, a.opt, a.model, 1e-3));  // no check: the inf reaches the weights, as in torch
    CHECK(std::isnan(a.model.visual_projection.params.weight.value.data()[0]));
}

TEST_CASE("AdamW's master-weight form and grad_scale equal the plain update") {
    Be be;
    Tensor<float> p(Shape{3, 5}), g(Shape{3, 5}), m(Shape{3, 5}), v(Shape{3, 5});
    for (index_t i = 0; i < 15; ++i) {
        p.data()[i] = 0.1f * float(i) - 0.7f;
        g.data()[i] = 0.03f * float((i * 7) % 11) - 0.15f;
    }
    Tensor<float> p2 = p, master = p, m2(Shape{3, 5}), v2(Shape{3, 5}), g2 = g;
    for (float& x : g2) x *= 256.0f;
    m.zero(), v.zero(), m2.zero(), v2.zero();
    const AdamWHyper h{.lr = 0.01, .weight_decay = 0.1, .step = 1};
    be.adamw_step(p.view(), g.cview(), m.view(), v.view(), h);
    AdamWHyper h2 = h;
    h2.grad_scale = 1.0 / 256.0;
    be.adamw_step(p2.view(), g2.cview(), m2.view(), v2.view(), h2, master.view());
    CHECK(std::memcmp(p.data(), p2.data(), sizeof(float) * 15) == 0);
    CHECK(std::memcmp(p.data(), master.data(), sizeof(float) * 15) == 0);
    CHECK(std::memcmp(v.data(), v2.data(), sizeof(float) * 15) == 0);
}
