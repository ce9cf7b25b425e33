// Tests of nn/transformer_block.hpp: HF names for the CLIP and BERT layouts, the pre- and post-norm
// equations, and gradients of both placements, with and without cross-attention.
#include <doctest/doctest.h>

#include "mmalign/nn/transformer_block.hpp"
#include "support/module_check.hpp"
#include "support/reference.hpp"

using namespace mmalign;
using test::Be;

TEST_CASE("a CLIP-layout pre-norm block visits exactly the HF CLIPEncoderLayer keys") {
    TransformerBlock<Be, PreNorm> blk({.dim = 8, .heads = 2, .mlp_hidden = 16});
    std::vector<std::string> names;
    blk.visit([&](const std::string& n, Parameter<double>&) { names.push_back(n); });
    CHECK(names == std::vector<std::string>{
                       "self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight",
                       "self_attn.k_proj.bias", "self_attn.v_proj.weight", "self_attn.v_proj.bias",
                       "self_attn.out_proj.weight", "self_attn.out_proj.bias", "layer_norm1.weight", "layer_norm1.bias",
                       "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias", "layer_norm2.weight",
                       "layer_norm2.bias"});
}

TEST_CASE("the pre-norm block computes h = x + Attn(LN1(x)), y = h + Mlp(LN2(h)) from its parts") {
    Be be;
    TransformerBlock<Be, PreNorm> blk({.dim = 8, .heads = 2, .mlp_hidden = 12, .activation = Activation::quick_gelu});
    test::randomize(blk, 1);
    Tensor<double> x = test::random_tensor({2, 3, 8}, 2), y(x.shape());
    blk.forward(be, x.view(), {}, {.causal = true}, {}, y.view());
    Tensor<double> a(x.shape()), h(x.shape()), m(x.shape()), want(x.shape());
    blk.ln1.forward(be, x.view(), a.view());
    blk.attn.forward(be, a.view(), {}, {.causal = true}, h.view());
    be.axpy(1.0, x.view(), h.view());
    blk.ln2.forward(be, h.view(), m.view());
    blk.mlp.forward(be, m.view(), want.view());
    be.axpy(1.0, h.view(), want.view());
    CHECK(test::max_abs_diff<double>(y.view(), want.view()) < 1e-14);
}

TEST_CASE("the post-norm block computes h = LN1(x + Attn(x)), y = LN2(h + Mlp(h)) from its parts") {
    Be be;
    TransformerBlock<Be, PostNorm> blk({.dim = 8, .heads = 2, .mlp_hidden = 12, .eps = 1e-12, .names = BlockNames::bert()});
    test::randomize(blk, 3);
    Tensor<double> x = test::random_tensor({2, 3, 8}, 4), y(x.shape());
    blk.forward(be, x.view(), {}, {}, {}, y.view());
    Tensor<double> u(x.shape()), h(x.shape()), z(x.shape()), want(x.shape());
    blk.attn.forward(be, x.view(), {}, {}, u.view());
    be.axpy(1.0, x.view(), u.view());
    blk.ln1.forward(be, u.view(), h.view());
    blk.mlp.forward(be, h.view(), z.view());
    be.axpy(1.0, h.view(), z.view());
    blk.ln2.forward(be, z.view(), want.view());
    CHECK(test::max_abs_diff<double>(y.view(), want.view()) < 1e-14);
}

TEST_CASE_TEMPLATE("block backward matches finite differences, with cross-attention and masks", Norm, PreNorm, PostNorm) {
    Be be;
    TransformerBlock<Be, Norm> blk({.dim = 8, .heads = 2, .mlp_hidden = 12, .activation = Activation::gelu,
                                    .cross_attention = true, .cross_dim = 6, .names = BlockNames::bert()});
    test::randomize(blk, 5);
    Tensor<double> x = test::random_tensor({2, 3, 8}, 6), enc = test::random_tensor({2, 4, 6}, 7);
    Tensor<double> r = test::random_tensor({2, 3, 8}, 8), y(x.shape()), dx(x.shape()), denc(enc.shape(), 0.0);
    std::vector<std::int32_t> keep = {1, 1, 1, 1, 1, 0}, enc_keep = {1, 1, 1, 1, 1, 1, 0, 0};
    AttentionMask<double> self_mask{.key_keep = keep.data(), .causal = true}, cross_mask{.key_keep = enc_keep.data()};
    typename TransformerBlock<Be, Norm>::Saved s;
    blk.forward(be, x.view(), enc.view(), self_mask, cross_mask, y.view(), &s);
    zero_grad(blk);
    blk.backward(be, s, r.view(), dx.view(), denc.view(), GradMode::accumulate);
    test::check_module_gradients(blk, {{"x", x.view(), dx.view()}, {"enc", enc.view(), denc.view()}}, [&] {
        blk.forward(be, x.view(), enc.view(), self_mask, cross_mask, y.view());
        return testing::dot<double>(r.view(), y.view());
    });
}

TEST_CASE("a block with cross-attention refuses to run without encoder states, and vice versa") {
    Be be;
    TransformerBlock<Be, PreNorm> with({.dim = 4, .heads = 1, .mlp_hidden = 4, .cross_attention = true});
    TransformerBlock<Be, PreNorm> without({.dim = 4, .heads = 1, .mlp_hidden = 4});
    Tensor<double> x(Shape{1, 2, 4}, 0.5), y(x.shape()), enc(Shape{1, 3, 4}, 0.5);
    CHECK_THROWS_AS(with.forward(be, x.view(), {}, {}, {}, y.view()), ArgumentError);
    CHECK_THROWS_AS(without.forward(be, x.view(), enc.view(), {}, {}, y.view()), ArgumentError);
    CHECK_THROWS_AS(without.forward(be, x.view(), {}, {}, {}, x.view()), ArgumentError);  // aliasing
}
