// Tests of nn/transformer_stack.hpp: layer names, the Q-Former's every-other-layer cross-attention,
// end-to-end gradients of two pre-norm and two post-norm layers with cross-attention and masks, and
// cross-attention skipped at run time. Cached decoding: test_cached_decoding.cpp.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "mmalign/nn/transformer_stack.hpp"
#include "support/module_check.hpp"
#include "support/reference.hpp"

using namespace mmalign;
using test::Be;

TEST_CASE("cross_attention_every = 2 gives cross-attention to layers 0 and 2 only, named like HF BERT") {
    TransformerStack<Be, PostNorm> st({.layers = 3,
                                       .block = {.dim = 4, .heads = 2, .mlp_hidden = 8, .cross_attention = true,
                                                 .names = BlockNames::bert()},
                                       .layer_name = "layer",
                                       .cross_attention_every = 2});
    CHECK(st.layers[0].cross.has_value());
    CHECK_FALSE(st.layers[1].cross.has_value());
    CHECK(st.layers[2].cross.has_value());
    bool found = false, wrong = false;
    st.visit([&](const std::string& n, Parameter<double>&) {
        found |= n == "encoder.layer.2.crossattention.self.key.weight";
        wrong |= n.rfind("encoder.layer.1.crossattention", 0) == 0;
    }, "encoder");
    CHECK(found);
    CHECK_FALSE(wrong);
}

TEST_CASE_TEMPLATE("a stack of two layers (with cross-attention and masks) matches finite differences end to end", Norm,
                   PreNorm, PostNorm) {
    Be be;
    TransformerStack<Be, Norm> st({.layers = 2,
                                   .block = {.dim = 8, .heads = 2, .mlp_hidden = 16, .activation = Activation::gelu_tanh,
                                             .cross_attention = true, .cross_dim = 6}});
    test::randomize(st, 1, 0.4);
    Tensor<double> x = test::random_tensor({2, 4, 8}, 2), enc = test::random_tensor({2, 3, 6}, 3);
    Tensor<double> r = test::random_tensor({2, 4, 8}, 4), y(x.shape()), dx(x.shape()), denc(enc.shape(), 0.0);
    std::vector<std::int32_t> keep = {1, 1, 1, 1, 1, 1, 1, 0}, enc_keep = {1, 1, 1, 1, 0, 1};
    AttentionMask<double> self_mask{.key_keep = keep.data(), .causal = true}, cross_mask{.key_keep = enc_keep.data()};
    typename TransformerStack<Be, Norm>::Saved s;
    st.forward(be, x.view(), enc.view(), self_mask, cross_mask, y.view(), &s);
    zero_grad(st);
    st.backward(be, s, r.view(), dx.view(), denc.view(), GradMode::accumulate);
    test::check_module_gradients(st, {{"x", x.view(), dx.view()}, {"enc", enc.view(), denc.view()}}, [&] {
        st.forward(be, x.view(), enc.view(), self_mask, cross_mask, y.view());
        return testing::dot<double>(r.view(), y.view());
    });
}

TEST_CASE("pre-norm and post-norm layers compose: a post-norm stack reads a pre-norm stack's output, gradients flow through both") {
    Be be;
    TransformerStack<Be, PreNorm> pre({.layers = 2, .block = {.dim = 8, .heads = 2, .mlp_hidden = 16}});
    TransformerStack<Be, PostNorm> post({.layers = 2,
                                         .block = {.dim = 8, .heads = 4, .mlp_hidden = 16, .eps = 1e-12,
                                                   .cross_attention = true, .cross_dim = 8, .names = BlockNames::bert()},
                                         .layer_name = "layer"});
    test::randomize(pre, 10, 0.4);
    test::randomize(post, 40, 0.4);
    // pre encodes an "image" sequence; post reads "text" and cross-attends to the encoding.
    Tensor<double> img = test::random_tensor({2, 5, 8}, 11), txt = test::random_tensor({2, 3, 8}, 12);
    Tensor<double> r = test::random_tensor({2, 3, 8}, 13), enc(img.shape()), y(txt.shape());
    Tensor<double> d_txt(txt.shape()), d_enc(img.shape(), 0.0), d_img(img.shape());
    std::vector<std::int32_t> txt_keep = {1, 1, 1, 1, 1, 0};
    typename TransformerStack<Be, PreNorm>::Saved sp;
    typename TransformerStack<Be, PostNorm>::Saved so;
    pre.forward(be, img.view(), {}, {}, {}, enc.view(), &sp);
    post.forward(be, txt.view(), enc.view(), {.key_keep = txt_keep.data()}, {}, y.view(), &so);
    zero_grad(pre);
    zero_grad(post);
    post.backward(be, so, r.view(), d_txt.view(), d_enc.view(), GradMode::accumulate);
    pre.backward(be, sp, d_enc.view(), d_img.view(), {}, GradMode::accumulate);
    auto loss = [&] {
        pre.forward(be, img.view(), {}, {}, {}, enc.view());
        post.forward(be, txt.view(), enc.view(), {.key_keep = txt_keep.data()}, {}, y.view());
        return testing::dot<double>(r.view(), y.view());
    };
    test::check_module_gradients(pre, {{"image", img.view(), d_img.view()}}, loss);
    test::check_module_gradients(post, {{"text", txt.view(), d_txt.view()}}, loss);
}

TEST_CASE("a stack whose layers have cross-attention, run without encoder states, equals the stack built without it") {
    Be be;
    TransformerStack<Be, PostNorm> with({.layers = 3,
                                         .block = {.dim = 8, .heads = 2, .mlp_hidden = 16, .cross_attention = true,
                                                   .cross_dim = 6, .names = BlockNames::bert()},
                                         .layer_name = "layer",
                                         .cross_attention_every = 2});
    TransformerStack<Be, PostNorm> without({.layers = 3,
                                            .block = {.dim = 8, .heads = 2, .mlp_hidden = 16, .names = BlockNames::bert()},
                                            .layer_name = "layer"});
    test::randomize(with, 50, 0.4);
    std::map<std::string, Tensor<double>> values;
    with.visit([&](const std::string& n, Parameter<double>& p) { values.emplace(n, p.value); });
    without.visit([&](const std::string& n, Parameter<double>& p) { p.value = values.at(n); });
    Tensor<double> x = test::random_tensor({2, 4, 8}, 51), a(x.shape()), b(x.shape());
    std::vector<std::int32_t> keep = {1, 1, 1, 1, 0, 1, 1, 1};
    with.forward(be, x.view(), {}, {.key_keep = keep.data()}, {}, a.view());
    without.forward(be, x.view(), {}, {.key_keep = keep.data()}, {}, b.view());
    CHECK(test::max_abs_diff<double>(a.view(), b.view()) == 0.0);
}
