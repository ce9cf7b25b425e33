// Tests of models/clip_xtensor.hpp: Clip called with xtensor inputs reproduces HF's CLIPModel,
// and retrieval written in xtensor algebra (normalise, cosine, argsort) agrees with the model's
// own logits. Reference values: tests/fixtures/clip/tiny_quick_gelu (transformers' outputs).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <xtensor/xmanipulation.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xsort.hpp>
#include <xtensor/xview.hpp>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/models/clip_xtensor.hpp"
#include "support/clip_step.hpp"

using namespace mmalign;
using Be = CpuBackend<float>;
using Mat = xt::xtensor<float, 2, xt::layout_type::row_major>;

namespace {

const std::string fixture = std::string(MMALIGN_FIXTURE_DIR) + "/clip/tiny_quick_gelu";

// Max |a − b| / max(1, max |b|), as tests/models/test_clip.cpp measures parity.
template <class A, class B>
double worst_diff(const A& got, const B& want) {
    REQUIRE(got.shape() == want.shape());
    const double scale = std::max(1.0, double(xt::amax(xt::abs(want))()));
    return double(xt::amax(xt::abs(got - want))()) / scale;
}

// Rows scaled to unit length, in xtensor algebra: x / ‖x‖ over the last axis. The norms are
// evaluated before they broadcast: xtensor 0.24's lazy keep_dims reducer reads out of bounds
// when broadcast against its input (AddressSanitizer: heap-buffer-overflow, wrong values).
Mat normalize_rows(const Mat& x) { return x / xt::sqrt(xt::eval(xt::sum(x * x, {1}, xt::keep_dims))); }

// cos[i, j] = a_i · b_j for unit rows, as a broadcast product summed over the feature axis.
Mat cosines(const Mat& a, const Mat& b) {
    return xt::sum(xt::view(a, xt::all(), xt::newaxis(), xt::all()) * xt::view(b, xt::newaxis(), xt::all(), xt::all()), {2});
}

// A small random CLIP with transformers' initialisation (Clip::init_like_hf).
Clip<Be> random_clip() {
    Clip<Be>::Config c;
    c.vision = {.image_size = 16, .patch_size = 8, .hidden = 32, .layers = 2, .heads = 4, .mlp_hidden = 64};
    c.text = {.vocab_size = 60, .max_positions = 8, .hidden = 24, .layers = 2, .heads = 2, .mlp_hidden = 48,
              .eos_token_id = 59};
    c.projection_dim = 12;
    Clip<Be> m(c);
    m.init_like_hf(11);
    return m;
}

struct HfInputs {
    xt::xtensor<float, 4> pixels;        // [Bi, 3, 32, 32]
    xt::xtensor<std::int32_t, 2> ids;    // [Bt, T]
    xt::xtensor<std::int32_t, 2> mask;   // [Bt, T]
    io::SafetensorsFile expected;
};

HfInputs hf_inputs() {
    auto f = io::SafetensorsFile::open(fixture + "/expected.safetensors");
    const Tensor<float> ids = f.read<float>("input_ids"), mask = f.read<float>("attention_mask");  // [Bt, T]
    return {to_xtensor<4>(f.read<float>("pixel_values")), xt::cast<std::int32_t>(as_xtensor<2>(ids)),
            xt::cast<std::int32_t>(as_xtensor<2>(mask)), std::move(f)};
}

}  // namespace

TEST_CASE("forward with xtensor inputs reproduces HF CLIPModel's embeddings and logits to 1e-5, outputs as xt::xtensor") {
    auto model = test::tiny_clip<Be>();
    HfInputs in = hf_inputs();
    Be be;
    const ClipXtensorOutput<float> out = forward(be, model, in.pixels, in.ids, in.mask);
    CHECK(worst_diff(out.image_embeds, to_xtensor<2>(in.expected.read<float>("image_embeds"))) <= 1e-5);
    CHECK(worst_diff(out.text_embeds, to_xtensor<2>(in.expected.read<float>("text_embeds"))) <= 1e-5);
    CHECK(worst_diff(out.logits_per_image, to_xtensor<2>(in.expected.read<float>("logits_per_image"))) <= 1e-5);
    CHECK(worst_diff(out.logits_per_text, to_xtensor<2>(in.expected.read<float>("logits_per_text"))) <= 1e-5);
}

TEST_CASE("xtensor cosine similarities of image_features/text_features equal HF's logits / exp(logit_scale)") {
    auto model = test::tiny_clip<Be>();
    HfInputs in = hf_inputs();
    Be be;
    const Mat fi = image_features(be, model, in.pixels);          // [Bi, E]
    const Mat ft = text_features(be, model, in.ids, in.mask);     // [Bt, E]
    CHECK(worst_diff(fi, to_xtensor<2>(in.expected.read<float>("image_features"))) <= 1e-5);
    CHECK(worst_diff(ft, to_xtensor<2>(in.expected.read<float>("text_features"))) <= 1e-5);
    const Mat cos = cosines(normalize_rows(fi), normalize_rows(ft));  // [Bi, Bt]
    const float scale = std::exp(model.logit_scale.value(0));
    const Mat hf = to_xtensor<2>(in.expected.read<float>("logits_per_image"));  // [Bi, Bt]
    CHECK(worst_diff(Mat(cos * scale), hf) <= 1e-5);
    CHECK(worst_diff(cos, Mat(hf / scale)) <= 1e-6);
}

TEST_CASE("xt::argsort top-k over xtensor cosines ranks images as the sorted logits of Clip::forward do (random tiny CLIP)") {
    const Clip<Be> model = random_clip();
    Be be;
    constexpr index_t Bi = 6, Bt = 4, T = 7;
    std::mt19937 rng(5);
    std::normal_distribution<float> pixel(0.f, 1.f);
    std::uniform_int_distribution<std::int32_t> token(1, 58);
    Tensor<float> pixels(Shape{Bi, 3, 16, 16});  // [Bi, C, S, S]
    for (float& v : pixels) v = pixel(rng);
    Tensor<std::int32_t> ids(Shape{Bt, T}), mask(Shape{Bt, T}, 1);  // [Bt, T]
    for (index_t b = 0; b < Bt; ++b) {
        const index_t len = T - b;  // right padding: row b has T − b tokens, the last one EOS
        for (index_t t = 0; t < T; ++t) {
            ids(b, t) = t + 1 < len ? token(rng) : (t + 1 == len ? 59 : 0);
            mask(b, t) = t < len;
        }
    }
    // The library's own API on its own tensors: the reference for this case.
    const auto ref = model.forward(be, pixels.view(), {ids.begin(), ids.end()}, {mask.begin(), mask.end()}, Bt);

    // The same model through xtensor: zero-copy views of the tokenizer-style Tensors.
    const Mat fi = image_features(be, model, as_xtensor<4>(pixels));                        // [Bi, E]
    const Mat ft = text_features(be, model, as_xtensor<2>(ids), as_xtensor<2>(mask));      // [Bt, E]
    const Mat cos = cosines(normalize_rows(ft), normalize_rows(fi));                        // [Bt, Bi]
    const float scale = std::exp(model.logit_scale.value(0));
    CHECK(worst_diff(cos, Mat(as_xtensor<2>(ref.logits_per_text) / scale)) <= 1e-5);

    // Each caption's images best first: argsort of the negated row, top 3. (Row by row: GCC 12
    // reports a false -Warray-bounds inside xtensor 0.24's argsort along an axis of a 2-D array.)
    for (index_t b = 0; b < Bt; ++b) {
        const xt::xtensor<float, 1> row = -xt::row(cos, b);  // [Bi]
        const auto top3 = xt::view(xt::argsort(row), xt::range(0, 3));
        std::vector<index_t> want(static_cast<std::size_t>(Bi));
        std::iota(want.begin(), want.end(), index_t(0));
        std::stable_sort(want.begin(), want.end(),
                         [&](index_t x, index_t y) { return ref.logits_per_text(b, x) > ref.logits_per_text(b, y); });
        for (std::size_t k = 0; k < 3; ++k) CHECK(index_t(top3(k)) == want[k]);
    }
}

TEST_CASE("non-contiguous inputs (transposed pixels, stepped ids, column-major mask) give the same outputs bit for bit") {
    auto model = test::tiny_clip<Be>();
    HfInputs in = hf_inputs();
    Be be;
    const ClipXtensorOutput<float> want = forward(be, model, in.pixels, in.ids, in.mask);

    // Pixels stored [S, S, C, Bi] and transposed back: a strided view, copied before use.
    xt::xtensor<float, 4> hwcn = xt::transpose(in.pixels, {3, 2, 1, 0});  // [S, S, C, Bi]
    auto pixels_view = xt::transpose(hwcn, {3, 2, 1, 0});                   // [Bi, C, S, S], not contiguous
    REQUIRE_FALSE(is_row_major_contiguous(pixels_view));
    // Ids interleaved with junk rows, read back with a step of 2.
    const std::size_t Bt = in.ids.shape()[0], T = in.ids.shape()[1];
    xt::xtensor<std::int32_t, 2> spread(std::array<std::size_t, 2>{2 * Bt, T}, 97);  // [2·Bt, T]
    xt::view(spread, xt::range(0, 2 * Bt, 2), xt::all()) = in.ids;
    auto ids_view = xt::view(spread, xt::range(0, 2 * Bt, 2), xt::all());  // [Bt, T], stride 2·T
    REQUIRE_FALSE(is_row_major_contiguous(ids_view));
    xt::xtensor<std::int32_t, 2, xt::layout_type::column_major> mask_cm = in.mask;  // [Bt, T]

    const ClipXtensorOutput<float> got = forward(be, model, pixels_view, ids_view, mask_cm);
    CHECK(got.image_embeds == want.image_embeds);
    CHECK(got.text_embeds == want.text_embeds);
    CHECK(got.logits_per_image == want.logits_per_image);
    CHECK(got.logits_per_text == want.logits_per_text);
    CHECK(text_features(be, model, ids_view, mask_cm) == text_features(be, model, in.ids, in.mask));
}

TEST_CASE("Clip's xtensor inputs are read in place when row-major contiguous and copied otherwise") {
    xt::xtensor<std::int32_t, 2> ids = {{1, 2, 3}, {4, 5, 6}};  // [2, 3]
    Tensor<std::int32_t> keep;
    ConstView<std::int32_t> v = detail::host_input(ids, keep);
    CHECK(v.data() == ids.data());
    CHECK(keep.empty());
    auto tr = xt::transpose(ids);  // [3, 2]
    v = detail::host_input(tr, keep);
    CHECK(v.data() == keep.data());
    CHECK(v.shape() == Shape{3, 2});
    CHECK(v(0, 1) == 4);
}

TEST_CASE("Clip's xtensor entry points name wrong input shapes: pixels rank and size, ids rank, mask vs ids") {
    auto model = test::tiny_clip<Be>();
    Be be;
    xt::xtensor<float, 3> px3 = xt::zeros<float>({3, 32, 32});  // [C, S, S], no batch axis
    CHECK_THROWS_WITH_AS(image_features(be, model, px3), "Clip: pixels: expected [*, *, *, *], found [3, 32, 32]", ShapeError);
    xt::xtensor<float, 4> px = xt::zeros<float>({1, 3, 30, 30});  // [1, 3, 30, 30]: the model takes 32×32
    CHECK_THROWS_AS(image_features(be, model, px), ShapeError);
    xt::xtensor<std::int32_t, 1> ids1 = {1, 2, 3};  // [T]
    CHECK_THROWS_WITH_AS(text_features(be, model, ids1), "Clip: input_ids: expected [*, *], found [3]", ShapeError);
    xt::xtensor<std::int32_t, 2> ids = {{1, 2, 3}};  // [1, 3]
    xt::xtensor<std::int32_t, 2> mask = {{1, 1}};   // [1, 2]
    CHECK_THROWS_WITH_AS(text_features(be, model, ids, mask), "Clip: attention_mask [1, 2] differs from input_ids [1, 3]",
                         ShapeError);
}
