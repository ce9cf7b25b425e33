// Tests of nn/layer_norm.hpp: names, the eps of the config, gradients and accumulation into d_x.
#include <doctest/doctest.h>

#include <cmath>

#include "mmalign/nn/layer_norm.hpp"
#include "support/module_check.hpp"

using namespace mmalign;
using test::Be;

TEST_CASE("LayerNorm starts as the identity normaliser (weight 1, bias 0) and uses its eps") {
    Be be;
    LayerNorm<Be> ln({.dim = 2, .eps = 1.0});
    Tensor<double> x(Shape{1, 2}), y(Shape{1, 2});
    x(0, 0) = 1, x(0, 1) = 3;  // mean 2, biased variance 1 → divide by √(1 + eps) = √2
    ln.forward(be, x.view(), y.view());
    CHECK(y(0, 0) == doctest::Approx(-1 / std::sqrt(2.0)));
    CHECK(y(0, 1) == doctest::Approx(1 / std::sqrt(2.0)));
}

TEST_CASE("LayerNorm backward matches finite differences, assigned and accumulated into d_x") {
    Be be;
    LayerNorm<Be> ln({.dim = 6, .eps = 1e-12});
    test::randomize(ln, 7);
    Tensor<double> x = test::random_tensor({3, 2, 6}, 8, -2, 2), r = test::random_tensor({3, 2, 6}, 9);
    Tensor<double> y(x.shape()), dx(x.shape());
    LayerNorm<Be>::Saved s;
    ln.forward(be, x.view(), y.view(), &s);
    zero_grad(ln);
    ln.backward(be, s, r.view(), dx.view(), GradMode::accumulate);
    test::check_module_gradients(ln, {{"x", x.view(), dx.view()}}, [&] {
        ln.forward(be, x.view(), y.view());
        return testing::dot<double>(r.view(), y.view());
    });
    Tensor<double> acc(x.shape(), 1.0);
    ln.backward(be, s, r.view(), acc.view(), GradMode::ignore, InputGradMode::accumulate);
    for (index_t i = 0; i < acc.numel(); ++i) CHECK(acc.data()[i] == doctest::Approx(1.0 + dx.data()[i]));
}

TEST_CASE("LayerNorm rejects an input whose last extent is not its dim") {
    Be be;
    LayerNorm<Be> ln({.dim = 4});
    Tensor<double> x(Shape{2, 3}), y(Shape{2, 3});
    CHECK_THROWS_AS(ln.forward(be, x.view(), y.view()), ShapeError);
}
