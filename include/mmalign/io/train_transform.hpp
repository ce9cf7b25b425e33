// mmalign/io/train_transform.hpp — BLIP-2's training image transform, LAVIS's
// Blip2ImageTrainProcessor (lavis/processors/blip_processors.py):
//
//   RandomResizedCrop(image_size, scale=(min_scale, max_scale), interpolation=BICUBIC)
//   RandomHorizontalFlip()            (p = 0.5)
//   ToTensor()                        (uint8 → float32 / 255, HWC → CHW)
//   Normalize(mean, std)              (OpenAI CLIP's mean and std by default)
//
// The crop box follows torchvision's RandomResizedCrop.get_params (transforms.py): up to ten
// draws of an area fraction uniform in [min_scale, max_scale] and a log-uniform aspect ratio in
// [3/4, 4/3], w = round(sqrt(area·ratio)), h = round(sqrt(area/ratio)) (Python's round: half to
// even), accepted when 0 < w ≤ width and 0 < h ≤ height, at a uniform position; otherwise the
// centre crop of the whole image clamped to the ratio range. On a PIL image torchvision's
// F.resized_crop is img.crop(box).resize((S, S), BICUBIC), which pillow_resize reproduces bit for
// bit, and the flip is a mirror of the resized pixels. The random choices come from a
// std::mt19937_64 seeded by the caller (its output sequence is fixed by the C++ standard; the
// uniforms are built from its bits here, not by the standard library's distributions, so one seed
// gives the same crops everywhere). The draws are not torch's (another generator); what matches
// torchvision exactly is the pixels for a given box and flip.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>

#include "mmalign/core/error.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/io/image.hpp"
#include "mmalign/io/pillow_resize.hpp"

namespace mmalign::io {

struct TrainTransformConfig {
    index_t image_size = 224;                  // S: the output is [3, S, S]
    double min_scale = 0.5, max_scale = 1.0;   // RandomResizedCrop's scale (area fraction)
    double min_ratio = 3.0 / 4.0, max_ratio = 4.0 / 3.0;  // RandomResizedCrop's ratio (width / height)
    bool flip = true;                          // RandomHorizontalFlip(0.5)
    std::array<float, 3> mean{0.48145466f, 0.4578275f, 0.40821073f};
    std::array<float, 3> std{0.26862954f, 0.26130258f, 0.27577711f};

    /// What is wrong with the configuration, empty when nothing is.
    std::string problem() const {
        if (image_size < 1 || image_size > 8192)
            return "image_size must be in [1, 8192], found " + std::to_string(image_size);
        if (!(min_scale > 0) || !(max_scale >= min_scale) || !std::isfinite(max_scale))
            return "scale must satisfy 0 < min_scale <= max_scale (finite), found (" + std::to_string(min_scale) + ", " +
                   std::to_string(max_scale) + ")";
        if (!(min_ratio > 0) || !(max_ratio >= min_ratio) || !std::isfinite(max_ratio))
            return "ratio must satisfy 0 < min_ratio <= max_ratio (finite), found (" + std::to_string(min_ratio) + ", " +
                   std::to_string(max_ratio) + ")";
        for (int c = 0; c < 3; ++c)
            if (!(std[static_cast<std::size_t>(c)] > 0) || !std::isfinite(mean[static_cast<std::size_t>(c)]))
                return "std must be positive and mean finite (channel " + std::to_string(c) + ")";
        return {};
    }
};

/// A crop: rows [top, top + height), columns [left, left + width) — get_params's (i, j, h, w).
struct CropBox {
    index_t top = 0, left = 0, height = 0, width = 0;
    bool operator==(const CropBox&) const = default;
};

/// The random source of the transform (see the top of this header).
class TransformRng {
public:
    explicit TransformRng(std::uint64_t seed) : engine_(seed) {}
    /// Uniform in [0, 1) from 53 random bits.
    double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
    /// Uniform in [lo, hi).
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
    /// Uniform integer in [0, n), n ≥ 1, without modulo bias (rejection of the top remainder).
    std::uint64_t below(std::uint64_t n) {
        const std::uint64_t limit = UINT64_MAX - UINT64_MAX % n;
        std::uint64_t x;
        do x = engine_();
        while (x >= limit);
        return x % n;
    }

private:
    std::mt19937_64 engine_;
};

/// torchvision's RandomResizedCrop.get_params for a height × width image (see the top).
inline CropBox random_resized_crop_box(index_t height, index_t width, const TrainTransformConfig& c,
                                       TransformRng& rng) {
    if (height < 1 || width < 1)
        throw ArgumentError("random_resized_crop_box: image size must be positive, found " + std::to_string(height) +
                            "x" + std::to_string(width));
    const double area = static_cast<double>(height) * static_cast<double>(width);
    const double log_lo = std::log(c.min_ratio), log_hi = std::log(c.max_ratio);
    for (int attempt = 0; attempt < 10; ++attempt) {
        const double target_area = area * rng.uniform(c.min_scale, c.max_scale);
        const double aspect = std::exp(rng.uniform(log_lo, log_hi));
        // Python's round(): to nearest, ties to even — std::nearbyint in the default rounding mode.
        const double w = std::nearbyint(std::sqrt(target_area * aspect));
        const double h = std::nearbyint(std::sqrt(target_area / aspect));
        if (w > 0 && w <= static_cast<double>(width) && h > 0 && h <= static_cast<double>(height)) {
            const auto hi = static_cast<index_t>(h), wi = static_cast<index_t>(w);
            const auto top = static_cast<index_t>(rng.below(static_cast<std::uint64_t>(height - hi + 1)));
            const auto left = static_cast<index_t>(rng.below(static_cast<std::uint64_t>(width - wi + 1)));
            return {top, left, hi, wi};
        }
    }
    // Fallback: the centre crop of the whole image, narrowed to the nearest allowed ratio.
    const double in_ratio = static_cast<double>(width) / static_cast<double>(height);
    index_t w = width, h = height;
    if (in_ratio < c.min_ratio)
        h = static_cast<index_t>(std::nearbyint(static_cast<double>(w) / c.min_ratio));
    else if (in_ratio > c.max_ratio)
        w = static_cast<index_t>(std::nearbyint(static_cast<double>(h) * c.max_ratio));
    return {(height - h) / 2, (width - w) / 2, h, w};
}

/// The deterministic part of the transform: `box` of the RGB image resized to S × S with Pillow's
/// bicubic, mirrored when `flip`, then ToTensor and Normalize into out[3·S·S] ([3, S, S]).
inline void resized_crop_normalize(const Image& rgb, const CropBox& box, bool flip, const TrainTransformConfig& c,
                                   float* out) {
    if (rgb.channels != 3) throw ArgumentError("train_transform: expected an RGB image, found " +
                                               std::to_string(rgb.channels) + " channels");
    if (box.height < 1 || box.width < 1 || box.top < 0 || box.left < 0 || box.top + box.height > rgb.height ||
        box.left + box.width > rgb.width)
        throw ArgumentError("train_transform: crop box (top " + std::to_string(box.top) + ", left " +
                            std::to_string(box.left) + ", " + std::to_string(box.height) + "x" +
                            std::to_string(box.width) + ") is not inside the " + std::to_string(rgb.height) + "x" +
                            std::to_string(rgb.width) + " image");
    const index_t S = c.image_size;
    Image crop(box.height, box.width, 3);  // [h, w, 3]
    for (index_t y = 0; y < box.height; ++y) {
        const std::uint8_t* src = rgb.row(box.top + y) + box.left * 3;
        std::copy(src, src + box.width * 3, crop.row(y));
    }
    const Image resized = pillow_resize(crop, S, S, Resample::bicubic);  // [S, S, 3]
    // ToTensor divides in float32, Normalize subtracts and divides in float32 (torchvision's
    // F.to_tensor and F.normalize), so the same float operations give the same bits.
    for (index_t ch = 0; ch < 3; ++ch) {
        const float m = c.mean[static_cast<std::size_t>(ch)], s = c.std[static_cast<std::size_t>(ch)];
        float* plane = out + ch * S * S;  // [S, S]
        for (index_t y = 0; y < S; ++y)
            for (index_t x = 0; x < S; ++x) {
                const index_t sx = flip ? S - 1 - x : x;
                const float v = static_cast<float>(resized.at(y, sx, ch)) / 255.0f;
                plane[y * S + x] = (v - m) / s;
            }
    }
}

/// Blip2ImageTrainProcessor on a decoded RGB image: a crop box, then a flip with probability 0.5
/// (when c.flip), drawn in that order from TransformRng(rng_seed); out holds 3·S·S floats.
inline void train_transform(const Image& rgb, const TrainTransformConfig& c, std::uint64_t rng_seed, float* out) {
    if (const std::string why = c.problem(); !why.empty()) throw ArgumentError("train_transform: " + why);
    TransformRng rng(rng_seed);
    const CropBox box = random_resized_crop_box(rgb.height, rgb.width, c, rng);
    const bool flip = c.flip && rng.uniform() < 0.5;
    resized_crop_normalize(rgb, box, flip, c, out);
}

}  // namespace mmalign::io
