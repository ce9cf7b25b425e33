// Tests of objectives/query_text_contrastive.hpp (BLIP-2's ITC): a case worked by hand, the
// maximum over queries (only the arg-max query of a pair gets gradient), finite differences in
// double for the features and the temperature (with and without image ids), the clamp, and the
// hard-negative sampler's LAVIS weights (objectives/matching.hpp).
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "mmalign/objectives/matching.hpp"
#include "mmalign/objectives/query_text_contrastive.hpp"
#include "support/module_check.hpp"

using namespace mmalign;
using test::Be;
using Itc = QueryTextContrastive<Be>;

namespace {

Parameter<double> scalar(double v) {
    Parameter<double> p(Shape{});
    p.value.fill(v);
    return p;
}

}  // namespace

TEST_CASE("ITC equals the hand-computed loss: max over queries, /temp, symmetric CE with label smoothing") {
    Be be;
    // Image 0's queries are the unit axes; image 1's are (1, 1) and (−1, 0). Texts: the unit axes.
    Tensor<double> img(Shape{2, 2, 2}), txt(Shape{2, 2});  // [N, Q, E], [N, E]
    const double iv[] = {1, 0, 0, 1, 3, 3, -2, 0}, tv[] = {5, 0, 0, 0.5};  // norms do not matter
    std::copy(std::begin(iv), std::end(iv), img.data());
    std::copy(std::begin(tv), std::end(tv), txt.data());
    // M = [[1, 1], [1/√2, 1/√2]], S = M / 0.5; ε = 0.1 over N = 2: targets 0.95 / 0.05.
    auto temp = scalar(0.5);
    Itc itc({.label_smoothing = 0.1});
    Itc::Saved s;
    const auto r = itc.forward(be, img.view(), txt.view(), temp, s);
    const double r2 = std::sqrt(2.0);
    const double i2t = std::log(2.0);  // both rows of S are constant: CE = log 2 whatever the targets
    const double lse = std::log(std::exp(2.0) + std::exp(r2));  // rows of Sᵀ are (2, √2)
    const double t2i = 0.5 * ((lse - (0.95 * 2 + 0.05 * r2)) + (lse - (0.05 * 2 + 0.95 * r2)));
    CHECK(double(r.loss) == doctest::Approx(0.5 * (i2t + t2i)).epsilon(1e-12));
    CHECK(s.sim[0] == doctest::Approx(2.0));
    CHECK(s.sim[2] == doctest::Approx(r2));
    CHECK(s.best == std::vector<index_t>{0, 1, 0, 0});  // image 1's query (−1, 0) never wins
    // Accuracies: ties pick the first column (torch's argmax), so i2t row 0 → 0 ✓, row 1 → 0 ✗;
    // t2i rows (2, √2) → image 0 both: row 0 ✓, row 1 ✗.
    CHECK(r.image_to_text_accuracy == doctest::Approx(0.5));
    CHECK(r.text_to_image_accuracy == doctest::Approx(0.5));

    Tensor<double> d_img(img.shape()), d_txt(txt.shape());
    temp.grad.zero();
    itc.backward(be, s, 1.0, d_img.view(), d_txt.view(), temp, GradMode::accumulate);
    // Only arg-max queries receive gradient: image 1's second query gets exactly zero.
    CHECK(d_img.data()[6] == 0.0);
    CHECK(d_img.data()[7] == 0.0);
    CHECK(std::abs(d_img.data()[4]) + std::abs(d_img.data()[5]) > 0);
}

TEST_CASE("ITC gradients of the query features, the text features and the temperature match finite differences") {
    Be be;
    for (const bool with_ids : {false, true}) {
        CAPTURE(with_ids);
        const index_t N = 3, Q = 4, E = 5;
        Tensor<double> img = test::random_tensor({N, Q, E}, 11), txt = test::random_tensor({N, E}, 12);
        auto temp = scalar(0.3);
        const std::vector<std::int64_t> ids = {7, 3, 7};  // images 0 and 2 are the same picture
        const std::span<const std::int64_t> id_span = with_ids ? std::span<const std::int64_t>(ids) : std::span<const std::int64_t>();
        Itc itc({.label_smoothing = 0.1});
        Itc::Saved s;
        itc.forward(be, img.view(), txt.view(), temp, s, id_span);
        Tensor<double> d_img(img.shape()), d_txt(txt.shape());
        temp.grad.zero();
        itc.backward(be, s, 1.0, d_img.view(), d_txt.view(), temp, GradMode::accumulate);
        auto loss = [&] {
            Itc::Saved t;
            return double(itc.forward(be, img.view(), txt.view(), temp, t, id_span).loss);
        };
        for (auto rep : {testing::check_gradient("img", img.view(), d_img.view(), loss, 60),
                         testing::check_gradient("txt", txt.view(), d_txt.view(), loss),
                         testing::check_gradient("temp", temp.value.view(), temp.grad.view(), loss)})
            CHECK_MESSAGE(rep.max_rel_error < 1e-6, rep.str());
        // Gradient scaling by the seed is linear.
        Tensor<double> d_img2(img.shape()), d_txt2(txt.shape());
        itc.backward(be, s, 2.0, d_img2.view(), d_txt2.view(), temp, GradMode::ignore);
        CHECK(d_img2.data()[3] == doctest::Approx(2 * d_img.data()[3]).epsilon(1e-12));
    }
}

TEST_CASE("ITC with image ids spreads each row's target over the texts of the same image") {
    Be be;
    // Rows 0 and 2 show the same image (two views: different features): each of them has the
    // targets ½ on text 0 and ½ on text 2, and so have texts 0 and 2 over the images (ε = 0.1 mixed in).
    Tensor<double> img = test::random_tensor({3, 2, 4}, 21), txt = test::random_tensor({3, 4}, 22);
    auto temp = scalar(0.2);
    const double eps = 0.1;
    Itc itc({.label_smoothing = eps});
    const std::vector<std::int64_t> ids = {5, 6, 5};
    Itc::Saved a;
    const double loss = double(itc.forward(be, img.view(), txt.view(), temp, a, ids).loss);
    const double pos[3][3] = {{0.5, 0, 0.5}, {0, 1, 0}, {0.5, 0, 0.5}};
    double want = 0;
    for (const bool transposed : {false, true})
        for (int r = 0; r < 3; ++r) {
            auto S = [&](int c) { return transposed ? a.sim[std::size_t(c * 3 + r)] : a.sim[std::size_t(r * 3 + c)]; };
            const double lse = std::log(std::exp(S(0)) + std::exp(S(1)) + std::exp(S(2)));
            for (int c = 0; c < 3; ++c) want -= ((1 - eps) * pos[r][c] + eps / 3) * (S(c) - lse);
        }
    CHECK(loss == doctest::Approx(0.5 * want / 3).epsilon(1e-12));
    Itc::Saved b;
    const double plain = double(itc.forward(be, img.view(), txt.view(), temp, b).loss);
    CHECK(std::abs(plain - loss) > 1e-6);  // without ids the other view's text is a negative
}

TEST_CASE("clamp_temperature keeps the temperature within [min_temp, max_temp]") {
    Be be;
    Itc itc({.min_temp = 0.001, .max_temp = 0.5});
    auto t = scalar(0.9);
    itc.clamp_temperature(be, t);
    CHECK(t.value.data()[0] == 0.5);
    t.value.fill(1e-5);
    itc.clamp_temperature(be, t);
    CHECK(t.value.data()[0] == 0.001);
    t.value.fill(0.07);
    itc.clamp_temperature(be, t);
    CHECK(t.value.data()[0] == 0.07);
}

TEST_CASE("the sampler with LAVIS's floor never picks the own pair and follows softmax(sim) + 1e-4") {
    const index_t N = 3;
    // Row 0: softmax over (0, 0, 10): column 2 dominates. Row 1: (−50, 0, −40): the other columns'
    // softmax weights (~e⁻⁵⁰, ~e⁻⁴⁰) vanish next to the floor, so the floor, equal on both, decides:
    // ≈ ½ each (without it column 2 would win e¹⁰ : 1).
    Tensor<double> sim(Shape{N, N}, 0.0);
    sim(0, 2) = 10.0;
    sim(1, 0) = -50.0, sim(1, 2) = -40.0;
    HardNegativeSampler sampler(3, 1e-4);
    std::vector<std::vector<int>> counts(N, std::vector<int>(N, 0));
    const int trials = 4000;
    for (int t = 0; t < trials; ++t) {
        const auto picks = sampler.sample<double>(sim.view());
        for (index_t r = 0; r < N; ++r) ++counts[r][static_cast<std::size_t>(picks[static_cast<std::size_t>(r)])];
    }
    for (index_t r = 0; r < N; ++r) CHECK(counts[r][static_cast<std::size_t>(r)] == 0);
    CHECK(counts[0][2] > trials * 0.99);
    CHECK(counts[1][0] > trials * 0.4);
    CHECK(counts[1][2] > trials * 0.4);
}
