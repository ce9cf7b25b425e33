// Tests of nn/mlp.hpp: HF names for CLIP and BERT layouts, gradients for each activation.
#include <doctest/doctest.h>

#include "mmalign/nn/mlp.hpp"
#include "support/module_check.hpp"

using namespace mmalign;
using test::Be;

TEST_CASE("Mlp visits fc1 and fc2 under the names its config gives") {
    Mlp<Be> bert({.dim = 4, .hidden = 8, .fc1_name = "intermediate.dense", .fc2_name = "output.dense"});
    std::vector<std::string> names;
    bert.visit([&](const std::string& n, Parameter<double>&) { names.push_back(n); }, "layer.0");
    CHECK(names == std::vector<std::string>{"layer.0.intermediate.dense.weight", "layer.0.intermediate.dense.bias",
                                            "layer.0.output.dense.weight", "layer.0.output.dense.bias"});
}

TEST_CASE("Mlp backward matches finite differences for every activation") {
    for (Activation act : {Activation::quick_gelu, Activation::gelu, Activation::gelu_tanh, Activation::relu}) {
        Be be;
        Mlp<Be> mlp({.dim = 4, .hidden = 7, .activation = act});
        test::randomize(mlp, 10);
        Tensor<double> x = test::random_tensor({2, 3, 4}, 11), r = test::random_tensor({2, 3, 4}, 12);
        Tensor<double> y(x.shape()), dx(x.shape());
        Mlp<Be>::Saved s;
        mlp.forward(be, x.view(), y.view(), &s);
        zero_grad(mlp);
        mlp.backward(be, s, r.view(), dx.view(), GradMode::accumulate);
        test::check_module_gradients(mlp, {{"x", x.view(), dx.view()}}, [&] {
            mlp.forward(be, x.view(), y.view());
            return testing::dot<double>(r.view(), y.view());
        });
    }
}
