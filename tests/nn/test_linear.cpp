// Tests of nn/linear.hpp: torch.nn.Linear's layout and names, the fused activation, gradients
// against finite differences, accumulation, frozen parameters and shape errors.
#include <doctest/doctest.h>

#include "mmalign/nn/linear.hpp"
#include "support/module_check.hpp"

using namespace mmalign;
using test::Be;

TEST_CASE("Linear visits weight [out, in] and bias [out] under its prefix") {
    Linear<Be> lin({.in = 3, .out = 2});
    std::vector<std::string> names;
    lin.visit([&](const std::string& n, Parameter<double>& p) { names.push_back(n + p.shape().str()); }, "fc");
    CHECK(names == std::vector<std::string>{"fc.weight[2, 3]", "fc.bias[2]"});
    Linear<Be> nobias({.in = 3, .out = 2, .bias = false});
    CHECK(count_parameters(nobias) == 6);
}

TEST_CASE("Linear computes x·Wᵀ + b") {
    Be be;
    Linear<Be> lin({.in = 2, .out = 2});
    lin.params.weight.value = Tensor<double>(Shape{2, 2});
    double w[] = {1, 2, 3, 4};
    std::copy(w, w + 4, lin.params.weight.value.data());
    lin.params.bias.value(0) = 0.5, lin.params.bias.value(1) = -1;
    Tensor<double> x(Shape{1, 2}), y(Shape{1, 2});
    x(0, 0) = 1, x(0, 1) = 10;
    lin.forward(be, x.view(), y.view());
    CHECK(y(0, 0) == 21.5);  // 1·1 + 10·2 + 0.5
    CHECK(y(0, 1) == 42.0);  // 1·3 + 10·4 − 1
}

TEST_CASE("Linear backward (with and without a fused activation) matches finite differences") {
    for (Activation act : {Activation::none, Activation::quick_gelu, Activation::gelu}) {
        Be be;
        Linear<Be> lin({.in = 5, .out = 4, .activation = act});
        test::randomize(lin, 1);
        Tensor<double> x = test::random_tensor({2, 3, 5}, 2), r = test::random_tensor({2, 3, 4}, 3);
        Tensor<double> y(Shape{2, 3, 4}), dx(Shape{2, 3, 5});
        Linear<Be>::Saved s;
        lin.forward(be, x.view(), y.view(), &s);
        zero_grad(lin);
        lin.backward(be, s, r.view(), dx.view(), GradMode::accumulate);
        test::check_module_gradients(lin, {{"x", x.view(), dx.view()}}, [&] {
            lin.forward(be, x.view(), y.view());
            return testing::dot<double>(r.view(), y.view());
        });
    }
}

TEST_CASE("Linear backward accumulates parameter gradients, and skips frozen ones") {
    Be be;
    Linear<Be> lin({.in = 3, .out = 2});
    test::randomize(lin, 4);
    Tensor<double> x = test::random_tensor({4, 3}, 5), r = test::random_tensor({4, 2}, 6), y(Shape{4, 2});
    Linear<Be>::Saved s;
    lin.forward(be, x.view(), y.view(), &s);
    zero_grad(lin);
    lin.backward(be, s, r.view(), {}, GradMode::accumulate);
    const Tensor<double> once = lin.params.weight.grad;
    lin.backward(be, s, r.view(), {}, GradMode::accumulate);
    for (index_t i = 0; i < once.numel(); ++i) CHECK(lin.params.weight.grad.data()[i] == doctest::Approx(2 * once.data()[i]));
    zero_grad(lin);
    lin.backward(be, s, r.view(), {}, GradMode::ignore);
    lin.params.bias.requires_grad = false;
    lin.backward(be, s, r.view(), {}, GradMode::accumulate);
    for (double g : lin.params.bias.grad) CHECK(g == 0.0);
    for (index_t i = 0; i < once.numel(); ++i) CHECK(lin.params.weight.grad.data()[i] == doctest::Approx(once.data()[i]));
}

TEST_CASE("Linear names the wrong extent of a bad input") {
    Be be;
    Linear<Be> lin({.in = 3, .out = 2});
    Tensor<double> x(Shape{4, 5}), y(Shape{4, 2});
    CHECK_THROWS_WITH_AS(lin.forward(be, x.view(), y.view()), "Linear input: expected last extent 3, found [4, 5]",
                         ShapeError);
    CHECK_THROWS_AS(Linear<Be>({.in = 0, .out = 2}), ArgumentError);
}

TEST_CASE("gradients are allocated by the first accumulating backward, so inference holds only weights") {
    Be be;
    Linear<Be> lin({.in = 3, .out = 2});
    Tensor<double> x = test::random_tensor({4, 3}, 7), y(Shape{4, 2}), r = test::random_tensor({4, 2}, 8);
    Linear<Be>::Saved s;
    lin.forward(be, x.view(), y.view(), &s);
    CHECK_FALSE(lin.params.weight.has_grad());
    CHECK(lin.params.weight.grad.numel() == 0);
    lin.backward(be, s, r.view(), {}, GradMode::accumulate);
    CHECK(lin.params.weight.has_grad());
    CHECK(lin.params.weight.grad.shape() == Shape{2, 3});
}
