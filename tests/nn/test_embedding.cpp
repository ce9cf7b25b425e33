// Tests of nn/embedding.hpp: token lookup, learned positions with an offset, gradients and the
// errors for ids and positions outside the tables.
#include <doctest/doctest.h>

#include "mmalign/nn/embedding.hpp"
#include "support/module_check.hpp"

using namespace mmalign;
using test::Be;

TEST_CASE("Embedding backward scatters d_out into the looked-up rows (finite differences)") {
    Be be;
    Embedding<Be> emb({.rows = 10, .dim = 4});
    test::randomize(emb, 1);
    std::vector<std::int32_t> ids = {3, 7, 3, 0, 9, 3};
    Tensor<double> y(Shape{2, 3, 4}), r = test::random_tensor({2, 3, 4}, 2);
    Embedding<Be>::Saved s;
    emb.forward(be, ids, y.view(), &s);
    CHECK(y.view()(0, 2, 1) == emb.params.weight.value(3, 1));
    zero_grad(emb);
    emb.backward(be, s, r.view(), GradMode::accumulate);
    test::check_module_gradients(emb, {}, [&] {
        emb.forward(be, ids, y.view());
        return testing::dot<double>(r.view(), y.view());
    });
    std::vector<std::int32_t> bad = {10};
    CHECK_THROWS_AS(emb.forward(be, bad, y.view().reshape(Shape{6, 4}).slice(0, 1)), ArgumentError);
}

TEST_CASE("Embedding with padding_idx never changes that row's gradient while the other rows accumulate (nn.Embedding)") {
    Be be;
    Embedding<Be> emb({.rows = 6, .dim = 3, .padding_idx = 0});
    test::randomize(emb, 6);
    const std::vector<std::int32_t> ids = {0, 2, 0, 5};
    Tensor<double> y(Shape{4, 3}), r = test::random_tensor({4, 3}, 7);
    Embedding<Be>::Saved s;
    emb.forward(be, ids, y.view(), &s);
    CHECK(y.view()(0, 1) == emb.params.weight.value(0, 1));  // the lookup itself is unchanged
    zero_grad(emb);
    emb.params.weight.grad_target(true)[1] = 0.25;  // an earlier gradient in the padding row stays as it is
    emb.backward(be, s, r.view(), GradMode::accumulate);
    const Tensor<double>& g = emb.params.weight.grad;
    CHECK(g.view()(0, 0) == 0.0);
    CHECK(g.view()(0, 1) == 0.25);
    CHECK(g.view()(0, 2) == 0.0);
    CHECK(g.view()(2, 1) == r.view()(1, 1));
    CHECK(g.view()(5, 2) == r.view()(3, 2));
}

TEST_CASE("LearnedPositions adds rows offset..offset+T and its table gradient matches finite differences") {
    Be be;
    LearnedPositions<Be> pos({.max_positions = 8, .dim = 3});
    test::randomize(pos, 3);
    Tensor<double> x = test::random_tensor({2, 4, 3}, 4), y(Shape{2, 4, 3}), r = test::random_tensor({2, 4, 3}, 5);
    LearnedPositions<Be>::Saved s;
    pos.forward(be, x.view(), y.view(), 2, &s);
    CHECK(y.view()(1, 0, 2) == doctest::Approx(x.view()(1, 0, 2) + pos.params.weight.value(2, 2)));
    zero_grad(pos);
    pos.backward(be, s, r.view(), GradMode::accumulate);
    test::check_module_gradients(pos, {}, [&] {
        pos.forward(be, x.view(), y.view(), 2);
        return testing::dot<double>(r.view(), y.view());
    });
    CHECK_THROWS_WITH_AS(pos.forward(be, x.view(), y.view(), 5),
                         "LearnedPositions: positions [5, 9) exceed the table of 8 positions", ShapeError);
}
