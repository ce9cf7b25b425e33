// The tiny-CLIP training pass the training tests share: the library's CLIP task
// (models/clip_contrastive.hpp: image and text features, symmetric InfoNCE, and the backward
// through both towers) on zeroed gradients, on any backend.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mmalign/core/error.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/models/clip.hpp"
#include "mmalign/models/clip_contrastive.hpp"

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
    if (pixels.dim(0) != N)
        throw ArgumentError("clip_infonce_backward: " + std::to_string(N) + " pairs but " +
                            std::to_string(pixels.dim(0)) + " images");
    ClipContrastiveTask<B> task(model);
    zero_grad(model);
    return task.loss_and_backward(be, {.pixels = pixels, .ids = ids, .attention_mask = mask}, seed).loss;
}

}  // namespace mmalign::test
