// mmalign/models/clip_contrastive.hpp — CLIP's training pass as a task for train/train_step.hpp:
// both towers' features, symmetric InfoNCE (objectives/contrastive.hpp), and the backward through
// the objective and both towers into every parameter's gradient.
//
//   pixels [N, C, S, S] ──► image_features ──► i [N, E] ─┐
//                                                         ├─► SymmetricInfoNce (soft targets optional)
//   ids, mask [N·T]     ──► text_features  ──► t [N, E] ─┘
//
// loss_and_backward seeds the backward with `seed` (1, a loss scale, or 1/k for one of k
// micro-batches) and adds into the gradients; zeroing them is the step's job. after_update clamps
// the logit scale to [0, ln 100] as open_clip does after each optimizer step (clamp_logit_scale =
// false leaves it free, as HF's CLIPModel does). The saved activations live here and keep their
// memory from step to step.
#pragma once

#include <cstdint>
#include <span>

#include "mmalign/core/backend.hpp"
#include "mmalign/models/clip.hpp"
#include "mmalign/objectives/contrastive.hpp"

namespace mmalign {

template <Backend B>
struct ClipContrastiveTask {
    using T = typename B::Scalar;
    using C = typename B::Compute;
    using Buffer = typename B::Tensor;
    using Result = typename SymmetricInfoNce<B>::Result;

    /// N image-text pairs in the backend's memory (the ids and mask on the host, as Clip takes them).
    struct Batch {
        ConstView<T> pixels;                             // [N, C, S, S]
        std::span<const std::int32_t> ids;               // [N·T] row-major
        std::span<const std::int32_t> attention_mask;    // [N·T] or empty
        ConstView<T> soft_i2t = {}, soft_t2i = {};       // [N, N] each, or both empty: targets arange(N)
    };

    Clip<B>& model;
    SymmetricInfoNce<B> objective;
    bool clamp_logit_scale = true;

    explicit ClipContrastiveTask(Clip<B>& m) : model(m) {}
    ClipContrastiveTask(Clip<B>& m, typename SymmetricInfoNce<B>::Config c) : model(m), objective(c) {}

    /// The module whose parameters the step zeroes, clips and updates.
    Clip<B>& module() { return model; }

    /// Forward and backward of one batch; parameter gradients are added to.
    Result loss_and_backward(B& be, const Batch& batch, C seed) {
        const index_t N = batch.pixels.dim(0), E = model.config.projection_dim;  // TextTransformer checks ids
        for (Buffer* t : {&fi_, &ft_, &d_fi_, &d_ft_}) t->resize(Shape{N, E});
        model.image_features(be, batch.pixels, fi_.view(), &si_);
        model.text_features(be, batch.ids, batch.attention_mask, N, ft_.view(), &st_);
        const Result r = objective.forward(be, fi_.view(), ft_.view(), model.logit_scale, sl_, batch.soft_i2t, batch.soft_t2i);
        objective.backward(be, sl_, seed, d_fi_.view(), d_ft_.view(), model.logit_scale, GradMode::accumulate);
        model.image_features_backward(be, si_, d_fi_.view(), GradMode::accumulate);
        model.text_features_backward(be, st_, d_ft_.view(), GradMode::accumulate);
        return r;
    }

    /// After an applied update: open_clip's clamp of the log scale.
    void after_update(B& be) {
        if (clamp_logit_scale) objective.clamp_logit_scale(be, model.logit_scale);
    }

private:
    typename Clip<B>::ImageSaved si_;
    typename Clip<B>::TextSaved st_;
    typename SymmetricInfoNce<B>::Saved sl_;
    Buffer fi_, ft_, d_fi_, d_ft_;  // [N, E] features and their gradients
};

}  // namespace mmalign
