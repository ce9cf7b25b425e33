// benchmarks/train_clip/train_step.hpp — the Fashion-MNIST CLIP training step on any backend,
// shared by bench_train_clip (CPU) and bench_train_clip_gpu (CUDA).
//
// One step: image and text features, soft-target symmetric InfoNCE, backward, clip the global
// norm to 1, AdamW (lr 1e-3, betas 0.9/0.98, eps 1e-6, weight decay 0.05), clamp logit_scale.
// Batches arrive in host memory (pixels [B, 784], ids and mask [B, L], soft targets [B, B]); a
// backend whose tensors live elsewhere gets pixels and targets copied in each step, as a training
// loop would (rounded to the storage type on a 16-bit backend, whose AdamW then keeps float
// master weights).
#pragma once

#include <mmalign/models/clip.hpp>
#include <mmalign/objectives/contrastive.hpp>
#include <mmalign/train/adamw.hpp>
#include <mmalign/train/gradients.hpp>

#include <cstdint>
#include <span>
#include <type_traits>

namespace mmalign::bench {

template <Backend B>
struct ClipTrainStep {
    using T = typename B::Scalar;
    using C = typename B::Compute;
    using Buffer = typename B::Tensor;
    static constexpr bool host_tensors = std::is_same_v<Buffer, Tensor<T>>;

    Clip<B>& model;
    AdamW<B> opt;
    SymmetricInfoNce<B> loss;
    typename Clip<B>::ImageSaved si;
    typename Clip<B>::TextSaved st;
    typename SymmetricInfoNce<B>::Saved sl;
    Buffer fi, ft, d_fi, d_ft, pixels, soft;

    // (AdamW's options are set here, not in a default member initializer: GCC 12 crashes on the
    // designated initializer there inside a class template.)
    ClipTrainStep(Clip<B>& m, index_t batch)
        : model(m), opt(typename AdamW<B>::Config{.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.98, .eps = 1e-6, .weight_decay = 0.05}) {
        const index_t E = m.config.projection_dim;
        for (Buffer* t : {&fi, &ft, &d_fi, &d_ft}) t->resize(Shape{batch, E});
    }

    /// One step on a batch of 28×28 single-channel images; returns the loss.
    double operator()(B& be, ConstView<C> px, std::span<const std::int32_t> ids, std::span<const std::int32_t> mask,
                      ConstView<C> targets) {
        const index_t n = targets.dim(0);
        const Shape images{n, 1, 28, 28};
        ConstView<T> x, y;
        if constexpr (host_tensors) {
            x = ConstView<T>(px.data(), images), y = targets;
        } else {
            pixels.resize(images);
            soft.resize(targets.shape());
            be.from_host(ConstView<C>(px.data(), images), pixels.view());
            be.from_host(targets, soft.view());
            x = pixels.view(), y = soft.view();
        }
        zero_grad(model);
        model.image_features(be, x, fi.view(), &si);
        model.text_features(be, ids, mask, n, ft.view(), &st);
        auto r = loss.forward(be, fi.view(), ft.view(), model.logit_scale, sl, y, y);
        loss.backward(be, sl, C(1), d_fi.view(), d_ft.view(), model.logit_scale, GradMode::accumulate);
        model.image_features_backward(be, si, d_fi.view(), GradMode::accumulate);
        model.text_features_backward(be, st, d_ft.view(), GradMode::accumulate);
        clip_grad_norm(be, model, 1.0);
        opt.step(be, model);
        loss.clamp_logit_scale(be, model.logit_scale);
        return r.loss;
    }
};

}  // namespace mmalign::bench
