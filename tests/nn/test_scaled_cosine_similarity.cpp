// Tests of nn/scaled_cosine_similarity.hpp: the logits against the formula evaluated on the host,
// the backward against finite differences (both products and one), and shape errors. CLIP's use
// is checked against transformers in tests/models/test_clip.cpp, the objective's against PyTorch
// in tests/objectives/test_contrastive.cpp.
#include <doctest/doctest.h>

#include <cmath>
#include <tuple>

#include "mmalign/nn/scaled_cosine_similarity.hpp"
#include "support/module_check.hpp"

using namespace mmalign;
using test::Be;

namespace {

/// Σ w_ab ⊙ ab + Σ w_ba ⊙ ba of a fresh forward (either weight may be empty: that product unused).
double weighted_logits(Be& be, const Tensor<double>& a, const Tensor<double>& b, const Parameter<double>& scale,
                       const Tensor<double>& w_ab, const Tensor<double>& w_ba) {
    ScaledCosineSimilarity<Be> sim;
    ScaledCosineSimilarity<Be>::Saved s;
    Tensor<double> ab(Shape{a.dim(0), b.dim(0)}), ba(Shape{b.dim(0), a.dim(0)});  // [Na, Nb], [Nb, Na]
    sim.forward(be, a.view(), b.view(), scale, w_ab.numel() ? ab.view() : TensorView<double>{},
                w_ba.numel() ? ba.view() : TensorView<double>{}, s);
    double v = 0;
    for (index_t i = 0; i < w_ab.numel(); ++i) v += w_ab.data()[i] * ab.data()[i];
    for (index_t i = 0; i < w_ba.numel(); ++i) v += w_ba.data()[i] * ba.data()[i];
    return v;
}

}  // namespace

TEST_CASE("scaled cosine logits equal exp(logit_scale)·â·b̂ᵀ and its transpose, with unit rows saved") {
    Be be;
    const Tensor<double> a = test::random_tensor({3, 4}, 1), b = test::random_tensor({5, 4}, 2);  // [Na, E], [Nb, E]
    Parameter<double> scale(Shape{});
    scale.value.fill(1.3);
    ScaledCosineSimilarity<Be> sim;
    ScaledCosineSimilarity<Be>::Saved s;
    Tensor<double> ab(Shape{3, 5}), ba(Shape{5, 3});  // [Na, Nb], [Nb, Na]
    sim.forward(be, a.view(), b.view(), scale, ab.view(), ba.view(), s);
    CHECK(s.scale == doctest::Approx(std::exp(1.3)).epsilon(1e-15));
    auto norm = [](const Tensor<double>& t, index_t r) {
        double q = 0;
        for (index_t k = 0; k < t.dim(1); ++k) q += t(r, k) * t(r, k);
        return std::sqrt(q);
    };
    for (index_t i = 0; i < 3; ++i)
        for (index_t j = 0; j < 5; ++j) {
            double dot = 0;
            for (index_t k = 0; k < 4; ++k) dot += a(i, k) * b(j, k);
            const double want = std::exp(1.3) * dot / (norm(a, i) * norm(b, j));
            CHECK(ab(i, j) == doctest::Approx(want).epsilon(1e-13));
            CHECK(ba(j, i) == doctest::Approx(want).epsilon(1e-13));
        }
    for (index_t i = 0; i < 3; ++i) CHECK(norm(s.a, i) == doctest::Approx(1.0).epsilon(1e-14));
    for (index_t j = 0; j < 5; ++j) CHECK(norm(s.b, j) == doctest::Approx(1.0).epsilon(1e-14));
}

TEST_CASE("scaled cosine backward matches finite differences for both inputs and the log scale, with both products "
          "and with one") {
    Be be;
    Tensor<double> a = test::random_tensor({3, 4}, 3), b = test::random_tensor({5, 4}, 4);  // [Na, E], [Nb, E]
    // [Na, Nb], [Nb, Na]: the loss Σ w ⊙ logits makes d_ab = w_ab, d_ba = w_ba
    const Tensor<double> w_ab = test::random_tensor({3, 5}, 5), w_ba = test::random_tensor({5, 3}, 6);
    for (const bool both : {true, false}) {
        CAPTURE(both);
        const Tensor<double> none;
        const Tensor<double>& wba = both ? w_ba : none;
        Parameter<double> scale(Shape{});
        scale.value.fill(0.7);
        ScaledCosineSimilarity<Be> sim;
        ScaledCosineSimilarity<Be>::Saved s;
        Tensor<double> ab(Shape{3, 5}), ba(Shape{5, 3});  // [Na, Nb], [Nb, Na]
        sim.forward(be, a.view(), b.view(), scale, ab.view(), both ? ba.view() : TensorView<double>{}, s);
        Tensor<double> d_a(a.shape()), d_b(b.shape());  // [Na, E], [Nb, E]
        sim.backward(be, s, ab.view(), w_ab.view(), ba.view(), both ? w_ba.view() : ConstView<double>{}, d_a.view(),
                     d_b.view(), scale, GradMode::accumulate);
        auto value = [&] { return weighted_logits(be, a, b, scale, w_ab, wba); };
        for (auto [name, x, g] : {std::tuple{"a", &a, &d_a}, {"b", &b, &d_b}, {"logit_scale", &scale.value, &scale.grad}}) {
            const auto rep = testing::check_gradient(name, x->view(), g->view(), value);
            CHECK_MESSAGE(rep.max_rel_error < 1e-7, rep.str());
        }
    }
}

TEST_CASE("scaled cosine similarity rejects mismatched widths and misshapen logits, and a frozen scale gets no gradient") {
    Be be;
    // [3, 4], [2, 4], and [2, 5] of another width
    const Tensor<double> a = test::random_tensor({3, 4}, 7), b = test::random_tensor({2, 4}, 8), c = test::random_tensor({2, 5}, 9);
    Parameter<double> scale(Shape{});
    ScaledCosineSimilarity<Be> sim;
    ScaledCosineSimilarity<Be>::Saved s;
    Tensor<double> ab(Shape{3, 2}), wrong(Shape{2, 2});  // [Na, Nb], and a shape that fits neither product
    CHECK_THROWS_AS(sim.forward(be, a.view(), c.view(), scale, ab.view(), {}, s), ShapeError);
    CHECK_THROWS_AS(sim.forward(be, a.view(), b.view(), scale, wrong.view(), {}, s), ShapeError);
    CHECK_THROWS_AS(sim.forward(be, a.view(), b.view(), scale, {}, wrong.view(), s), ShapeError);
    sim.forward(be, a.view(), b.view(), scale, ab.view(), {}, s);
    Tensor<double> d_a(a.shape()), w(Shape{3, 2}, 1.0);  // [Na, E], [Na, Nb]
    sim.backward(be, s, ab.view(), w.view(), {}, {}, d_a.view(), {}, scale, GradMode::ignore);
    CHECK_FALSE(scale.has_grad());
}
