// Tests of nn/lm_prediction_head.hpp: the head's logits equal the formula, its backward (into the
// tied embedding table and its own transform) matches finite differences in double, and the tie is
// one parameter.
#include <doctest/doctest.h>

#include <cmath>

#include "mmalign/nn/embedding.hpp"
#include "mmalign/nn/lm_prediction_head.hpp"
#include "support/module_check.hpp"

using namespace mmalign;
using test::Be;
using Head = LmPredictionHead<Be>;

TEST_CASE("the prediction head computes LayerNorm(act(dense(h)))·Eᵀ + bias with the embedding table passed in") {
    Be be;
    Head head({.dim = 4, .vocab = 7, .activation = Activation::gelu, .eps = 1e-12, .transform = false});
    test::randomize(head, 3);
    const Tensor<double> h = test::random_tensor({2, 4}, 4), table = test::random_tensor({7, 4}, 5);
    Tensor<double> logits(Shape{2, 7});
    head.forward(be, h.view(), table.view(), logits.view());
    for (index_t n = 0; n < 2; ++n)
        for (index_t v = 0; v < 7; ++v) {
            double z = head.bias.value(v);
            for (index_t d = 0; d < 4; ++d) z += h(n, d) * table(v, d);
            CHECK(logits(n, v) == doctest::Approx(z).epsilon(1e-14));
        }
}

TEST_CASE("the head's backward matches finite differences for its transform, its bias and the tied table") {
    Be be;
    Embedding<Be> words({.rows = 9, .dim = 6});
    Head head({.dim = 6, .vocab = 9, .activation = Activation::gelu_tanh, .eps = 1e-12});
    test::randomize(words, 7);
    test::randomize(head, 8);
    Tensor<double> h = test::random_tensor({2, 3, 6}, 9), r = test::random_tensor({2, 3, 9}, 10);
    Tensor<double> logits(Shape{2, 3, 9}), d_h(Shape{2, 3, 6});
    Head::Saved s;
    head.forward(be, h.view(), words.params.weight.value.view(), logits.view(), &s);
    zero_grad(head);
    zero_grad(words);
    head.backward(be, s, r.view(), d_h.view(), words.params.weight, GradMode::accumulate);
    auto loss = [&] {
        head.forward(be, h.view(), words.params.weight.value.view(), logits.view());
        return testing::dot<double>(r.view(), logits.view());
    };
    test::check_module_gradients(head, {{"h", h.view(), d_h.view()}}, loss);
    auto rep = testing::check_gradient("tied word embeddings", words.params.weight.value.view(),
                                       words.params.weight.grad.view(), loss);
    CHECK_MESSAGE(rep.max_rel_error < 1e-6, rep.str());
    // One parameter: the head names no output weight of its own.
    int weights = 0;
    head.visit([&](const std::string& name, Parameter<double>&) { weights += name.find("decoder") != std::string::npos; });
    CHECK(weights == 0);
}
