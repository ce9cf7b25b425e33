// benchmarks/train_clip/train_step.hpp — the Fashion-MNIST CLIP training step on any backend,
// shared by bench_train_clip (CPU) and bench_train_clip_gpu (CUDA).
//
// One step is the library's TrainStep (train/train_step.hpp) driving CLIP's task
// (models/clip_contrastive.hpp), configured as the example trains: soft-target symmetric InfoNCE,
// backward, clip the global norm to 1, AdamW (lr 1e-3, betas 0.9/0.98, eps 1e-6, weight decay
// 0.05), clamp logit_scale. Batches arrive in host memory (pixels [B, 784], ids and mask [B, L],
// soft targets [B, B]); a backend whose tensors live elsewhere gets pixels and targets copied in
// each step, as a training loop would (rounded to the storage type on a 16-bit backend, whose
// AdamW then keeps float master weights).
#pragma once

#include <mmalign/models/clip.hpp>
#include <mmalign/models/clip_contrastive.hpp>
#include <mmalign/train/adamw.hpp>
#include <mmalign/train/train_step.hpp>

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
    TrainStep<B> step;
    ClipContrastiveTask<B> task;
    Buffer pixels, soft;  // [batch, 1, 28, 28], [batch, batch] staging copies on a device backend

    // (AdamW's options are set here, not in a default member initializer: GCC 12 crashes on the
    // designated initializer there inside a class template.)
    ClipTrainStep(Clip<B>& m, index_t batch)
        : model(m),
          opt(typename AdamW<B>::Config{.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.98, .eps = 1e-6, .weight_decay = 0.05}),
          step(opt, {.max_grad_norm = 1.0}),
          task(m) {
        if constexpr (!host_tensors) {
            pixels.resize(Shape{batch, 1, 28, 28});
            soft.resize(Shape{batch, batch});
        }
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
        const auto record = step(be, task, {.pixels = x, .ids = ids, .attention_mask = mask, .soft_i2t = y, .soft_t2i = y},
                                 opt.config.lr);
        return record.result.loss;
    }
};

}  // namespace mmalign::bench
