// Tests of train/train_step.hpp with CLIP's task (models/clip_contrastive.hpp) on the tiny HF CLIP
// and a softmax regression: TrainStep equals the hand-written step it replaced bit for bit, a
// power-of-two loss scale leaves clipped steps unchanged bit for bit, an overflowing gradient skips
// the update, clipping engages exactly above max_grad_norm and scales the gradient to it, and two
// accumulated micro-batches of a per-example loss equal one batch of both to float rounding.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/models/clip.hpp"
#include "mmalign/models/clip_contrastive.hpp"
#include "mmalign/objectives/contrastive.hpp"
#include "mmalign/testing/gradcheck.hpp"
#include "mmalign/train/adamw.hpp"
#include "mmalign/train/gradients.hpp"
#include "mmalign/train/loss_scaler.hpp"
#include "mmalign/train/schedule.hpp"
#include "mmalign/train/train_step.hpp"
#include "support/clip_step.hpp"

using namespace mmalign;
using Be = CpuBackend<float>;

namespace {

constexpr double u = 0x1p-24;  // float's unit roundoff

AdamW<Be>::Config adamw_config() {
    AdamW<Be>::Config c;
    c.lr = 1e-3;
    c.beta1 = 0.9;
    c.beta2 = 0.98;
    c.eps = 1e-6;
    c.weight_decay = 0.05;
    return c;
}

/// The step as examples/clip_fashion_mnist and benchmarks/train_clip wrote it before TrainStep:
/// zero_grad, both towers, InfoNCE, backward through the objective and both towers, clip (when
/// max_norm > 0), AdamW, clamp the logit scale.
struct HandWritten {
    float loss;
    double grad_norm;
};
HandWritten hand_written_step(Be& be, Clip<Be>& model, AdamW<Be>& opt, const test::ClipBatch& b, ConstView<float> soft,
                              double max_norm, double lr) {
    const index_t N = b.pairs, E = model.config.projection_dim;
    Tensor<float> fi(Shape{N, E}), ft(Shape{N, E}), d_fi(Shape{N, E}), d_ft(Shape{N, E});  // [N, E]
    Clip<Be>::ImageSaved si;
    Clip<Be>::TextSaved st;
    SymmetricInfoNce<Be> objective;
    SymmetricInfoNce<Be>::Saved sl;
    zero_grad(model);
    model.image_features(be, b.pixels.view(), fi.view(), &si);
    model.text_features(be, b.ids, b.mask, N, ft.view(), &st);
    const auto r = objective.forward(be, fi.view(), ft.view(), model.logit_scale, sl, soft, soft);
    objective.backward(be, sl, 1.f, d_fi.view(), d_ft.view(), model.logit_scale, GradMode::accumulate);
    model.image_features_backward(be, si, d_fi.view(), GradMode::accumulate);
    model.text_features_backward(be, st, d_ft.view(), GradMode::accumulate);
    const double norm = max_norm > 0 ? clip_grad_norm(be, model, max_norm) : global_grad_norm(be, model);
    opt.step(be, model, lr);
    objective.clamp_logit_scale(be, model.logit_scale);
    return {r.loss, norm};
}

ClipContrastiveTask<Be>::Batch batch_of(const test::ClipBatch& b, ConstView<float> soft = {}) {
    return {.pixels = b.pixels.view(), .ids = b.ids, .attention_mask = b.mask, .soft_i2t = soft, .soft_t2i = soft};
}

template <class T>
bool same_bits(ConstView<T> a, ConstView<T> b) {
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(T) * std::size_t(a.numel())) == 0;
}

/// Parameters (values or gradients) of two models equal bit for bit.
template <class M>
bool same_tensors(M& a, M& b, bool gradients = false) {
    std::vector<ConstView<float>> va;
    a.visit([&](const std::string&, Parameter<float>& p) { va.push_back(gradients ? p.grad.cview() : p.value.cview()); });
    std::size_t i = 0;
    bool same = true;
    b.visit([&](const std::string&, Parameter<float>& p) {
        same = same && same_bits(va[i++], gradients ? p.grad.cview() : p.value.cview());
    });
    return same && i == va.size();
}

bool same_moments(AdamW<Be>& a, AdamW<Be>& b) {
    bool same = a.step_count() == b.step_count() && a.state().size() == b.state().size();
    for (auto& [name, st] : a.state()) {
        auto it = b.state().find(name);
        same = same && it != b.state().end() && same_bits(st.exp_avg.cview(), it->second.exp_avg.cview()) &&
               same_bits(st.exp_avg_sq.cview(), it->second.exp_avg_sq.cview());
    }
    return same;
}

/// Global norm of a model's gradients, summed in double on the host.
template <class M>
double host_grad_norm(M& m) {
    double sq = 0;
    m.visit([&](const std::string&, Parameter<float>& p) {
        for (float g : p.grad) sq += double(g) * double(g);
    });
    return std::sqrt(sq);
}

/// The tiny CLIP's task with an infinity written into one gradient when `poison` is set (an
/// overflowing 16-bit backward), counting the updates it is told of.
struct OverflowingClip {
    using Batch = ClipContrastiveTask<Be>::Batch;
    ClipContrastiveTask<Be> inner;
    bool poison = false;
    int updates = 0;

    explicit OverflowingClip(Clip<Be>& m) : inner(m) {}
    Clip<Be>& module() { return inner.model; }
    auto loss_and_backward(Be& be, const Batch& b, float seed) {
        auto r = inner.loss_and_backward(be, b, seed);
        if (poison) inner.model.visual_projection.params.weight.grad.data()[7] = std::numeric_limits<float>::infinity();
        return r;
    }
    void after_update(Be& be) {
        ++updates;
        inner.after_update(be);
    }
};

/// Softmax regression: logits = x·Wᵀ [n, K], loss = mean over rows of CE(logits, labels) — a loss
/// that is a mean over examples, so accumulation must reproduce the whole batch.
struct SoftmaxRegression {
    Parameter<float> weight;  // [K, D]
    SoftmaxRegression(index_t K, index_t D, unsigned seed) : weight(Shape{K, D}) {
        testing::fill_uniform(weight.value.view(), seed, -0.5, 0.5);
    }
    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        f(join_name(prefix, "weight"), weight);
    }
};

struct SoftmaxRegressionTask {
    struct Batch {
        ConstView<float> x;                     // [n, D]
        std::span<const std::int32_t> labels;   // [n]
    };
    struct Result {
        float loss = 0;
    };
    SoftmaxRegression& model;
    Tensor<float> logits, lse, d_logits;  // [n, K], [n], [n, K]

    SoftmaxRegression& module() { return model; }
    Result loss_and_backward(Be& be, const Batch& b, float seed) {
        const index_t n = b.x.dim(0), D = b.x.dim(1), K = model.weight.shape()[0];
        logits.resize(Shape{n, K});
        lse.resize(Shape{n});
        d_logits.resize(Shape{n, K});
        be.gemm(Trans::N, Trans::T, n, K, D, 1.f, b.x.data(), D, model.weight.value.data(), D, 0.f, logits.data(), K);
        const auto ce = be.cross_entropy_forward(logits.view(), b.labels.data(), -100, 0.f, lse.data());
        be.cross_entropy_backward(logits.view(), b.labels.data(), lse.data(), -100, 0.f, ce.count, seed, d_logits.view());
        be.gemm(Trans::T, Trans::N, K, D, n, 1.f, d_logits.data(), K, b.x.data(), D, 1.f, model.weight.grad_target(true), D);
        return {ce.loss};
    }
};

static_assert(Trainable<ClipContrastiveTask<Be>, Be>, "CLIP's task must be drivable by TrainStep");
static_assert(Trainable<SoftmaxRegressionTask, Be>, "a task needs only module() and loss_and_backward()");
static_assert(!Trainable<SoftmaxRegression, Be>, "a module without loss_and_backward is not a task");

}  // namespace

TEST_CASE("TrainStep with CLIP's task equals the hand-written zero_grad/forward/backward/clip/AdamW/clamp sequence "
          "bit for bit (losses, norms, parameters, moments) over 4 steps") {
    Be be({.threads = 2});
    const test::ClipBatch batch = test::ClipBatch::load();
    Tensor<float> soft(Shape{3, 3}, 0.f);  // [3, 3]: pairs 0 and 1 share a class, rows sum to 1
    soft(0, 0) = soft(0, 1) = soft(1, 0) = soft(1, 1) = 0.5f;
    soft(2, 2) = 1.f;
    for (const bool with_soft : {false, true})
        for (const double max_norm : {0.0, 1.0, 15.0}) {  // off, always (norms 8 to 24), some steps
            CAPTURE(with_soft);
            CAPTURE(max_norm);
            const ConstView<float> targets = with_soft ? soft.cview() : ConstView<float>{};
            Clip<Be> ref = test::tiny_clip<Be>(), model = test::tiny_clip<Be>();
            AdamW<Be> ref_opt(adamw_config()), opt(adamw_config());
            TrainStep<Be> step(opt, {.max_grad_norm = max_norm});
            ClipContrastiveTask<Be> task(model);
            const WarmupCosine sched{.base_lr = 1e-3, .warmup = 2, .total = 4};
            int clipped = 0;
            for (long s = 0; s < 4; ++s) {
                CAPTURE(s);
                const HandWritten want = hand_written_step(be, ref, ref_opt, batch, targets, max_norm, sched(s));
                const auto got = step(be, task, batch_of(batch, targets), sched(s));
                CHECK(got.result.loss == want.loss);
                CHECK(got.loss == double(want.loss));
                CHECK(got.grad_norm == want.grad_norm);
                CHECK(got.lr == sched(s));
                CHECK(got.micro_batches == 1);
                CHECK_FALSE(got.skipped);
                CHECK(got.clipped == (max_norm > 0 && want.grad_norm > max_norm));
                clipped += got.clipped;
                CHECK(same_tensors(ref, model));
                CHECK(same_moments(ref_opt, opt));
            }
            if (max_norm == 1.0) CHECK(clipped == 4);
            if (max_norm == 15.0) CHECK((clipped > 0 && clipped < 4));  // both branches within one run
        }
}

TEST_CASE("under a LossScaler with a growing power-of-two scale, clipped steps equal the unscaled ones bit for bit") {
    Be be({.threads = 2});
    const test::ClipBatch batch = test::ClipBatch::load();
    Clip<Be> plain = test::tiny_clip<Be>(), scaled = test::tiny_clip<Be>();
    AdamW<Be> plain_opt(adamw_config()), scaled_opt(adamw_config());
    LossScaler<Be> scaler({.init_scale = 1024.0, .growth_interval = 2});
    TrainStep<Be> plain_step(plain_opt, {.max_grad_norm = 0.05}), scaled_step(scaled_opt, {.max_grad_norm = 0.05}, &scaler);
    ClipContrastiveTask<Be> plain_task(plain), scaled_task(scaled);
    const double scales[] = {1024, 1024, 2048, 2048, 4096};
    for (int s = 0; s < 5; ++s) {
        CAPTURE(s);
        const auto a = plain_step(be, plain_task, batch_of(batch), 1e-3);
        const auto b = scaled_step(be, scaled_task, batch_of(batch), 1e-3);
        CHECK(b.loss_scale == scales[s]);
        CHECK(a.loss_scale == 1.0);
        CHECK(a.loss == b.loss);
        CHECK(a.grad_norm == b.grad_norm);  // ‖S·g‖/S is ‖g‖ exactly for S a power of two
        CHECK(a.clipped);
        CHECK(b.clipped);
        CHECK_FALSE(b.skipped);
    }
    CHECK(same_tensors(plain, scaled));
    CHECK(same_moments(plain_opt, scaled_opt));
    CHECK(scaler.scale() == 4096.0);  // grew after steps 2 and 4
}

TEST_CASE("a non-finite gradient under a LossScaler skips the update (parameters, moments, step count and "
          "after_update untouched), backs the scale off, and the next finite step is the unscaled run's") {
    Be be;
    const test::ClipBatch batch = test::ClipBatch::load();
    Clip<Be> ref = test::tiny_clip<Be>(), model = test::tiny_clip<Be>();
    AdamW<Be> ref_opt(adamw_config()), opt(adamw_config());
    LossScaler<Be> scaler;  // 2^16
    TrainStep<Be> ref_step(ref_opt, {.max_grad_norm = 1.0}), step(opt, {.max_grad_norm = 1.0}, &scaler);
    ClipContrastiveTask<Be> ref_task(ref);
    OverflowingClip task(model);

    ref_step(be, ref_task, batch_of(batch), 1e-3);
    CHECK_FALSE(step(be, task, batch_of(batch), 1e-3).skipped);
    CHECK(task.updates == 1);
    REQUIRE(same_tensors(ref, model));

    task.poison = true;
    const auto skipped = step(be, task, batch_of(batch), 1e-3);
    CHECK(skipped.skipped);
    CHECK(skipped.loss_scale == 65536.0);
    CHECK_FALSE(std::isfinite(skipped.grad_norm));
    CHECK(scaler.scale() == 32768.0);
    CHECK(scaler.skipped_steps() == 1);
    CHECK(opt.step_count() == 1);
    CHECK(task.updates == 1);
    CHECK(same_tensors(ref, model));
    CHECK(same_moments(ref_opt, opt));

    task.poison = false;
    ref_step(be, ref_task, batch_of(batch), 1e-3);
    const auto next = step(be, task, batch_of(batch), 1e-3);
    CHECK_FALSE(next.skipped);
    CHECK(next.loss_scale == 32768.0);
    CHECK(task.updates == 2);
    CHECK(same_tensors(ref, model));
    CHECK(same_moments(ref_opt, opt));
}

TEST_CASE("under a LossScaler, a gradient norm that overflows while every element is finite skips the step and "
          "backs the scale off (clipping by an infinite norm would zero the gradient and step)") {
    Be be;
    const index_t n = 4, K = 3, D = 5;
    Tensor<float> x(Shape{n, D});  // [n, D]
    testing::fill_uniform(x.view(), 11, -1.0, 1.0);
    const std::vector<std::int32_t> labels = {0, 2, 1, 0};
    SoftmaxRegression model(K, D, 5);
    const Tensor<float> before = model.weight.value;
    SoftmaxRegressionTask task{model, {}, {}, {}};
    AdamW<Be> opt(adamw_config());
    // S = 2^100: every element of S·g stays below float's 3.4e38, the sum of their squares does not.
    LossScaler<Be> scaler({.init_scale = std::ldexp(1.0, 100)});
    TrainStep<Be> step(opt, {.max_grad_norm = 1.0}, &scaler);
    const auto r = step(be, task, SoftmaxRegressionTask::Batch{x.cview(), labels}, 1e-3);
    bool elements_finite = true;
    for (float g : model.weight.grad) elements_finite = elements_finite && std::isfinite(g);
    REQUIRE(elements_finite);
    CHECK_FALSE(std::isfinite(r.grad_norm));
    CHECK(r.skipped);
    CHECK_FALSE(r.clipped);
    CHECK(opt.step_count() == 0);
    CHECK(scaler.scale() == std::ldexp(1.0, 99));
    CHECK(scaler.skipped_steps() == 1);
    CHECK(std::equal(before.begin(), before.end(), model.weight.value.begin()));
}

TEST_CASE("clipping leaves a gradient within max_grad_norm untouched and scales a larger one to max_grad_norm") {
    Be be;
    const test::ClipBatch batch = test::ClipBatch::load();
    Clip<Be> ref = test::tiny_clip<Be>();
    test::clip_infonce_backward(be, ref, batch.pixels.view(), batch.ids, batch.mask, batch.pairs);
    const double norm = global_grad_norm(be, ref);
    REQUIRE(norm > 0);

    SUBCASE("max_grad_norm twice the norm: not clipped, the gradient is the backward's bit for bit") {
        Clip<Be> model = test::tiny_clip<Be>();
        AdamW<Be> opt(adamw_config());
        TrainStep<Be> step(opt, {.max_grad_norm = 2 * norm});
        ClipContrastiveTask<Be> task(model);
        const auto r = step(be, task, batch_of(batch), 1e-3);
        CHECK_FALSE(r.clipped);
        CHECK(r.grad_norm == norm);
        CHECK(same_tensors(ref, model, /*gradients=*/true));
    }
    SUBCASE("max_grad_norm a quarter of the norm: clipped, the gradient is the backward's times max/(norm + 1e-6)") {
        const double max_norm = norm / 4;
        Clip<Be> model = test::tiny_clip<Be>();
        AdamW<Be> opt(adamw_config());
        TrainStep<Be> step(opt, {.max_grad_norm = max_norm});
        ClipContrastiveTask<Be> task(model);
        const auto r = step(be, task, batch_of(batch), 1e-3);
        CHECK(r.clipped);
        CHECK(r.grad_norm == norm);
        // Each clipped element is fl(g·fl(c)) with c = max/(norm + 1e-6): within 2u of c·g, so
        // the clipped norm (summed in double) is within 2u of c·‖g‖, and ‖g‖ itself, as summed by
        // global_grad_norm (each parameter's dot in double, rounded to float once), is within u/2
        // of its value: |‖g'‖ − c·norm| ≤ 3u·c·norm, checked with 4u.
        const double c = max_norm / (norm + 1e-6);
        const double clipped_norm = host_grad_norm(model);
        CHECK(std::abs(clipped_norm - c * norm) <= 4 * u * c * norm);
        // and the direction is kept: every element is c times the backward's, to two roundings
        // (c to float, the product): (1 + u)² − 1 = 2u + u².
        std::vector<const Tensor<float>*> g0;
        ref.visit([&](const std::string&, Parameter<float>& p) { g0.push_back(&p.grad); });
        std::size_t i = 0;
        double worst = 0;
        model.visit([&](const std::string&, Parameter<float>& p) {
            const Tensor<float>& want = *g0[i++];
            for (index_t k = 0; k < p.grad.numel(); ++k) {
                const double exact = c * double(want.data()[k]);
                worst = std::max(worst, std::abs(double(p.grad.data()[k]) - exact) / std::max(std::abs(exact), 1e-30));
            }
        });
        CHECK(worst <= 2 * u + u * u);
    }
}

TEST_CASE("accumulating 2 micro-batches of a per-example loss equals one step on both: gradient and loss to float "
          "rounding") {
    constexpr index_t n = 8, D = 6, K = 5;  // rows per micro-batch, features, classes
    Be be;
    Tensor<float> x(Shape{2 * n, D});       // [2n, D]
    testing::fill_uniform(x.view(), 11, -1.0, 1.0);
    std::vector<std::int32_t> labels(2 * n);  // [2n]
    for (index_t r = 0; r < 2 * n; ++r) labels[std::size_t(r)] = std::int32_t((r * 3 + 1) % K);
    SoftmaxRegression whole_model(K, D, 5), acc_model(K, D, 5);
    AdamW<Be> whole_opt(adamw_config()), acc_opt(adamw_config());
    TrainStep<Be> whole_step(whole_opt), acc_step(acc_opt);
    SoftmaxRegressionTask whole{whole_model, {}, {}, {}}, acc{acc_model, {}, {}, {}};

    const SoftmaxRegressionTask::Batch both{x.view(), labels};
    const SoftmaxRegressionTask::Batch micro[2] = {
        {x.view().slice(0, n), std::span<const std::int32_t>(labels).first(n)},
        {x.view().slice(n, 2 * n), std::span<const std::int32_t>(labels).last(n)}};
    // Largest |x| and largest |logit| bound (Σ_d |x_rd|·|w_kd|), from the initial weights.
    double X = 0, Z = 0;
    for (float v : x) X = std::max(X, double(std::abs(v)));
    for (index_t r = 0; r < 2 * n; ++r)
        for (index_t k = 0; k < K; ++k) {
            double z = 0;
            for (index_t d = 0; d < D; ++d) z += std::abs(double(x(r, d)) * double(whole_model.weight.value(k, d)));
            Z = std::max(Z, z);
        }
    const auto a = whole_step(be, whole, both, 1e-3);
    const auto b = acc_step(be, acc, std::span<const SoftmaxRegressionTask::Batch>(micro), 1e-3);
    CHECK(a.micro_batches == 1);
    CHECK(b.micro_batches == 2);
    CHECK(b.loss_scale == 1.0);
    // Gradient: W's element (k, d) is Σ_r (p_rk − y_rk)·x_rd / 2n over all 2n rows in both runs (the
    // accumulated run seeds each micro-batch with 1/2 and divides by n). Each term is at most X/2n;
    // its factor p − y carries at most (K + 4)u absolute error (softmax in float) plus the logits'
    // error of at most 2·D·u·Z (a D-term product); the sum of 2n terms adds at most 2n·u·X. Both
    // runs err by at most (2n + K + 4 + 2·D·Z)·u·X, so they differ by at most twice that.
    const double tol_grad = 2 * (2 * n + K + 4 + 2 * D * Z) * u * X;
    double worst = 0;
    for (index_t i = 0; i < whole_model.weight.grad.numel(); ++i)
        worst = std::max(worst, std::abs(double(whole_model.weight.grad.data()[i]) - double(acc_model.weight.grad.data()[i])));
    INFO("largest gradient difference " << worst << ", bound " << tol_grad);
    CHECK(worst <= tol_grad);
    // A wrong seed (1 instead of 1/2 per micro-batch) would double the gradient: the bound is far below it.
    CHECK(host_grad_norm(acc_model) > 1000 * tol_grad);
    // Loss: each example's loss lies in [0, log K + 2Z] and is computed to (K + 6 + 2D)·u of that
    // range; the means add at most 2n + 1 roundings of it.
    const double range = std::log(double(K)) + 2 * Z;
    CHECK(std::abs(a.loss - b.loss) <= 2 * (2 * n + K + 7 + 2 * D) * u * range);
}
