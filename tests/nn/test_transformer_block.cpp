// Tests of nn/transformer_block.hpp: HF names for the CLIP and BERT layouts, the pre- and post-norm
// equations, gradients of both placements, with and without cross-attention, and cross-attention
// skipped at run time. Cached decoding: test_cached_decoding.cpp.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

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
    blk.attention.norm.forward(be, x.view(), a.view());
    blk.attention.inner.forward(be, a.view(), {}, {.causal = true}, h.view());
    be.axpy(1.0, x.view(), h.view());
    blk.feed_forward.norm.forward(be, h.view(), m.view());
    blk.feed_forward.inner.forward(be, m.view(), want.view());
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
    blk.attention.inner.forward(be, x.view(), {}, {}, u.view());
    be.axpy(1.0, x.view(), u.view());
    blk.attention.norm.forward(be, u.view(), h.view());
    blk.feed_forward.inner.forward(be, h.view(), z.view());
    be.axpy(1.0, h.view(), z.view());
    blk.feed_forward.norm.forward(be, z.view(), want.view());
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

TEST_CASE("a block without cross-attention refuses encoder states, and x and y must be distinct") {
    Be be;
    TransformerBlock<Be, PreNorm> without({.dim = 4, .heads = 1, .mlp_hidden = 4});
    Tensor<double> x(Shape{1, 2, 4}, 0.5), y(x.shape()), enc(Shape{1, 3, 4}, 0.5);
    CHECK_THROWS_AS(without.forward(be, x.view(), enc.view(), {}, {}, y.view()), ArgumentError);
    CHECK_THROWS_AS(without.forward(be, x.view(), {}, {}, {}, x.view()), ArgumentError);  // aliasing
}

namespace {

/// Copies every parameter of `src` into the same-named one of `dst` (dst's names ⊂ src's).
template <class Dst, class Src>
void copy_shared_parameters(Dst& dst, Src& src) {
    std::map<std::string, Parameter<double>*> by_name;
    src.visit([&](const std::string& n, Parameter<double>& p) { by_name.emplace(n, &p); });
    dst.visit([&](const std::string& n, Parameter<double>& p) { p.value = by_name.at(n)->value; });
}

}  // namespace

TEST_CASE_TEMPLATE("cross-attention skipped at run time (no encoder states) equals a block built without it, forward, "
                   "backward and cached", Norm, PreNorm, PostNorm) {
    Be be;
    const typename TransformerBlock<Be, Norm>::Config with_cfg{.dim = 8, .heads = 2, .mlp_hidden = 12, .eps = 1e-12,
                                                               .cross_attention = true, .cross_dim = 6,
                                                               .names = BlockNames::bert()};
    typename TransformerBlock<Be, Norm>::Config without_cfg = with_cfg;
    without_cfg.cross_attention = false;
    TransformerBlock<Be, Norm> with(with_cfg), without(without_cfg);
    test::randomize(with, 9);
    copy_shared_parameters(without, with);
    const Tensor<double> x = test::random_tensor({2, 3, 8}, 10), enc = test::random_tensor({2, 4, 6}, 11);
    const Tensor<double> r = test::random_tensor({2, 3, 8}, 12);
    std::vector<std::int32_t> keep = {1, 1, 1, 0, 1, 1};
    const AttentionMask<double> mask{.key_keep = keep.data(), .causal = true};

    Tensor<double> y_with(x.shape()), y_without(x.shape()), y_enc(x.shape());
    typename TransformerBlock<Be, Norm>::Saved sw, so;
    with.forward(be, x.view(), enc.view(), mask, {}, y_enc.view(), &sw);  // a pass with the image first: sw is reused
    with.forward(be, x.view(), {}, mask, {}, y_with.view(), &sw);
    without.forward(be, x.view(), {}, mask, {}, y_without.view(), &so);
    CHECK(test::max_abs_diff<double>(y_with.view(), y_without.view()) == 0.0);
    CHECK(test::max_abs_diff<double>(y_enc.view(), y_without.view()) > 1e-3);  // with the image it differs

    with.visit([](const std::string&, Parameter<double>& p) { p.grad_target(true); });  // all allocated, zero
    zero_grad(without);
    Tensor<double> dx_with(x.shape()), dx_without(x.shape()), d_enc(enc.shape(), 0.0);
    with.backward(be, sw, r.view(), dx_with.view(), d_enc.view(), GradMode::accumulate);
    without.backward(be, so, r.view(), dx_without.view(), {}, GradMode::accumulate);
    CHECK(test::max_abs_diff<double>(dx_with.view(), dx_without.view()) == 0.0);
    for (double g : d_enc) CHECK(g == 0.0);
    std::map<std::string, Tensor<double>> grads;
    without.visit([&](const std::string& n, Parameter<double>& p) { grads.emplace(n, p.grad); });
    with.visit([&](const std::string& n, Parameter<double>& p) {
        INFO(n);
        if (grads.count(n)) CHECK(test::max_abs_diff<double>(p.grad.view(), grads.at(n).view()) == 0.0);
        else for (double g : p.grad) CHECK(g == 0.0);  // the skipped cross-attention's weights
    });

    // Decoding without encoder states skips it too.
    typename TransformerBlock<Be, Norm>::Cache cache;
    with.start_cache(be, cache, 2, 3);
    Tensor<double> stepped(x.shape()), full(x.shape());
    with.forward_cached(be, x.view(), cache, mask, {}, stepped.view());
    without.forward(be, x.view(), {}, mask, {}, full.view());
    CHECK(test::max_abs_diff<double>(stepped.view(), full.view()) < 1e-12);
}
