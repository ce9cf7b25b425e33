// The tiny-CLIP training pass the training tests share: image and text features, symmetric
// InfoNCE, and the backward through both towers into every parameter's gradient (zeroed first),
// on any backend.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mmalign/io/safetensors.hpp"
#include "mmalign/models/clip.hpp"
#include "mmalign/objectives/contrastive.hpp"

namespace mmalign::test {

/// The training batch of the tiny HF CLIP (tests/fixtures/training.safetensors): `pairs`
/// image-text pairs, ids and attention mask row-major [pairs, T].
struct ClipBatch {
    static constexpr index_t pairs = 3;
    Tensor<float> pixels;
    std::vector<std::int32_t> ids, mask;

    static ClipBatch load() {
        ClipBatch b;
        auto f = io::SafetensorsFile::open(std::string(MMALIGN_FIXTURE_DIR) + "/training.safetensors");
        b.pixels = f.read<float>("clip.pixel_values");
        const Tensor<float> i = f.read<float>("clip.input_ids"), m = f.read<float>("clip.attention_mask");
        b.ids.assign(i.begin(), i.end());
        b.mask.assign(m.begin(), m.end());
        return b;
    }
};

/// The tiny HF CLIP (tests/fixtures/clip/tiny_quick_gelu) with its weights, on a backend with
/// host storage.
template <class B>
Clip<B> tiny_clip() {
    const std::string dir = std::string(MMALIGN_FIXTURE_DIR) + "/clip/tiny_quick_gelu";
    const auto config = Clip<B>::Config::from_hf(io::load_clip_config(dir + "/config.json"));
    Clip<B> model(config);
    io::load_parameters(model, io::SafetensorsFile::open(dir + "/model.safetensors"), "");
    return model;
}

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
