// tests/io/test_train_transform.cpp — BLIP-2's train transform (LAVIS's Blip2ImageTrainProcessor):
// the pixels for given crop boxes and flips against torchvision's F.resized_crop(PIL image, box,
// (S, S), BICUBIC) + hflip + to_tensor + normalize (tests/fixtures/caption_data/crops.json, made
// by tools/make_caption_data_fixtures.py), and the crop sampling's invariants from
// torchvision's RandomResizedCrop.get_params.
#include <doctest/doctest.h>

#if !defined(MMALIGN_WITH_IMAGE)
TEST_CASE("train transform tests are skipped: mmalign::image was not configured (needs libjpeg, libpng)") {
    MESSAGE("mmalign::image not available; install libjpeg62-turbo-dev and libpng-dev");
}
#else

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mmalign/io/image.hpp"
#include "mmalign/io/train_transform.hpp"

using namespace mmalign;
using namespace mmalign::io;

namespace {

const std::string fixture_dir = std::string(MMALIGN_FIXTURE_DIR) + "/caption_data/";

/// Whether some real w', h' that round to w, h (|w − w'| ≤ ½, |h − h'| ≤ ½) have an area fraction
/// in [lo, hi] and a ratio w'/h' in [rlo, rhi]: what get_params's accepted boxes must satisfy.
bool reachable(const CropBox& b, index_t height, index_t width, double lo, double hi, double rlo, double rhi) {
    const double area = static_cast<double>(height) * static_cast<double>(width);
    const double w0 = static_cast<double>(b.width) - 0.5, w1 = static_cast<double>(b.width) + 0.5;
    const double h0 = static_cast<double>(b.height) - 0.5, h1 = static_cast<double>(b.height) + 0.5;
    return w1 * h1 >= lo * area && w0 * h0 <= hi * area && w1 / h0 >= rlo && w0 / h1 <= rhi;
}

}  // namespace

TEST_CASE("for given boxes and flips the pixels equal torchvision's resized_crop + hflip + to_tensor + normalize") {
    const nlohmann::json cases = nlohmann::json::parse(std::ifstream(fixture_dir + "crops.json"));
    REQUIRE(cases.size() == 7);
    for (const auto& c : cases) {
        const std::string name = c.at("image");
        const auto box_v = c.at("box").get<std::vector<index_t>>();
        const bool flip = c.at("flip");
        TrainTransformConfig cfg;
        cfg.image_size = c.at("size");
        CAPTURE(name);
        CAPTURE(cfg.image_size);
        CAPTURE(flip);
        const Image rgb = to_rgb(load_image(fixture_dir + "images/" + name));
        const CropBox box{box_v[0], box_v[1], box_v[2], box_v[3]};
        const auto expected = c.at("pixels").get<std::vector<float>>();  // [3, S, S]
        REQUIRE(expected.size() == static_cast<std::size_t>(3 * cfg.image_size * cfg.image_size));
        std::vector<float> got(expected.size());  // [3, S, S]
        resized_crop_normalize(rgb, box, flip, cfg, got.data());
        float worst = 0;
        for (std::size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - expected[i]));
        CHECK(worst <= 1e-6f);
    }
}

TEST_CASE("sampled boxes lie inside the image with area fraction and ratio in range, or are the centre fallback") {
    const TrainTransformConfig cfg;  // scale (0.5, 1), ratio (3/4, 4/3)
    const index_t sizes[][2] = {{30, 40}, {40, 30}, {224, 224}, {7, 9}, {1000, 800}, {1, 1}, {3, 2}};
    int fallbacks = 0, draws = 0;
    for (const auto& hw : sizes) {
        const index_t h = hw[0], w = hw[1];
        for (std::uint64_t seed = 0; seed < 500; ++seed) {
            TransformRng rng(seed);
            const CropBox b = random_resized_crop_box(h, w, cfg, rng);
            CAPTURE(h);
            CAPTURE(w);
            CAPTURE(seed);
            REQUIRE(b.height >= 1);
            REQUIRE(b.width >= 1);
            REQUIRE(b.top >= 0);
            REQUIRE(b.left >= 0);
            REQUIRE(b.top + b.height <= h);
            REQUIRE(b.left + b.width <= w);
            ++draws;
            // The fallback of an image inside the ratio range is the whole image.
            if (b == CropBox{0, 0, h, w}) {
                ++fallbacks;
                continue;
            }
            CHECK(reachable(b, h, w, cfg.min_scale, cfg.max_scale, cfg.min_ratio, cfg.max_ratio));
            if (h >= 224) {  // rounding is negligible at this size: the fraction itself is in range
                const double frac = static_cast<double>(b.height * b.width) / static_cast<double>(h * w);
                CHECK(frac >= 0.5 * 0.99);
                CHECK(frac <= 1.0);
            }
        }
    }
    CHECK(fallbacks < draws);
}

TEST_CASE("images outside the ratio range fall back to torchvision's centre crop at the nearest allowed ratio") {
    const TrainTransformConfig cfg;
    // 200 × 10: no sampled box fits in 10 columns (w ≥ sqrt(1000 · 3/4) ≈ 27): w = 10,
    // h = round(10 / (3/4)) = 13, i = (200 − 13) // 2 = 93.
    for (std::uint64_t seed = 0; seed < 20; ++seed) {
        TransformRng tall(seed), wide(seed);
        CHECK(random_resized_crop_box(200, 10, cfg, tall) == CropBox{93, 0, 13, 10});
        CHECK(random_resized_crop_box(10, 200, cfg, wide) == CropBox{0, 93, 10, 13});
    }
}

TEST_CASE("positions and flips are spread over their whole range") {
    TrainTransformConfig cfg;
    int flips = 0, at_top = 0, at_bottom = 0;
    const int n = 4000;
    for (int seed = 0; seed < n; ++seed) {
        TransformRng rng(static_cast<std::uint64_t>(seed));
        const CropBox b = random_resized_crop_box(100, 100, cfg, rng);
        flips += rng.uniform() < 0.5;
        at_top += b.top == 0;
        at_bottom += b.top + b.height == 100;
    }
    // Binomial(4000, ½): ±5σ is ±158.
    CHECK(std::abs(flips - n / 2) < 158);
    CHECK(at_top > 0);
    CHECK(at_bottom > 0);
}

TEST_CASE("train_transform draws the box then the flip from its seed, so one seed gives one tensor") {
    const Image rgb = to_rgb(load_image(fixture_dir + "images/a.png"));
    TrainTransformConfig cfg;
    cfg.image_size = 12;
    const std::size_t n = 3 * 12 * 12;
    std::vector<float> a(n), b(n), manual(n), other(n);  // [3, 12, 12] each
    train_transform(rgb, cfg, 99, a.data());
    train_transform(rgb, cfg, 99, b.data());
    CHECK(a == b);
    TransformRng rng(99);
    const CropBox box = random_resized_crop_box(rgb.height, rgb.width, cfg, rng);
    const bool flip = rng.uniform() < 0.5;
    resized_crop_normalize(rgb, box, flip, cfg, manual.data());
    CHECK(a == manual);
    train_transform(rgb, cfg, 100, other.data());
    CHECK(a != other);
}

TEST_CASE("bad transform settings and boxes outside the image are refused by name") {
    const Image rgb(30, 40, 3, 128);
    std::vector<float> out(3 * 16 * 16);  // [3, 16, 16]
    TrainTransformConfig cfg;
    cfg.image_size = 0;
    CHECK_THROWS_WITH_AS(train_transform(rgb, cfg, 0, out.data()), "train_transform: image_size must be in [1, 8192], found 0",
                         ArgumentError);
    cfg.image_size = 16;
    cfg.min_scale = 0;
    CHECK_THROWS_AS(train_transform(rgb, cfg, 0, out.data()), ArgumentError);
    cfg.min_scale = 0.5;
    CHECK_THROWS_WITH_AS(resized_crop_normalize(rgb, {20, 0, 11, 40}, false, cfg, out.data()),
                         "train_transform: crop box (top 20, left 0, 11x40) is not inside the 30x40 image", ArgumentError);
    const Image grey(30, 40, 1);
    CHECK_THROWS_AS(resized_crop_normalize(grey, {0, 0, 30, 40}, false, cfg, out.data()), ArgumentError);
}

#endif
