// The tiny-CLIP training pass the training tests share: image and text features, symmetric
// InfoNCE, and the backward through both towers into every parameter's gradient (zeroed first),
// on any backend.
#pragma once

#include <cstdint>
#include <span>

#include "mmalign/models/clip.hpp"
#include "mmalign/objectives/contrastive.hpp"

namespace mmalign::test {

/// Runs forward and backward on one batch of N pairs with the backward seeded by `seed` (1, or a
/// loss scale); returns the loss.
template <class B>
typename B::Compute clip_infonce_backward(B& be, Clip<B>& model, ConstView<typename B::Scalar> pixels,
                                          std::span<const std::int32_t> ids, std::span<const std::int32_t> mask,
                                          index_t N, typename B::Compute seed = 1) {
    const index_t E = model.config.projection_dim;
    typename Clip<B>::ImageSaved si;
    typename Clip<B>::TextSaved st;
    typename B::Tensor fi(Shape{N, E}), ft(Shape{N, E}), d_fi(Shape{N, E}), d_ft(Shape{N, E});
    zero_grad(model);
    model.image_features(be, pixels, fi.view(), &si);
    model.text_features(be, ids, mask, N, ft.view(), &st);
    SymmetricInfoNce<B> loss;
    typename SymmetricInfoNce<B>::Saved sl;
    const auto r = loss.forward(be, fi.view(), ft.view(), model.logit_scale, sl);
    loss.backward(be, sl, seed, d_fi.view(), d_ft.view(), model.logit_scale, GradMode::accumulate);
    model.image_features_backward(be, si, d_fi.view(), GradMode::accumulate);
    model.text_features_backward(be, st, d_ft.view(), GradMode::accumulate);
    return r.loss;
}

}  // namespace mmalign::test
