// Tests of nn/attention.hpp: the forward against a loop implementation of softmax(qkᵀ·scale)v,
// gradients (self and cross, every mask kind), the frozen mode, incremental decoding with the
// KV cache equal to the full causal forward, masks uploaded once (be.upload_mask), and cross-attention
// keys and values projected once.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "mmalign/nn/attention.hpp"
#include "support/module_check.hpp"
#include "support/reference.hpp"

using namespace mmalign;
using test::Be;
using Mha = MultiHeadAttention<Be>;

namespace {

// y = out(concat_h softmax(q_h k_hᵀ/√d + mask) v_h), computed with plain loops.
Tensor<double> reference_attention(Mha& m, const Tensor<double>& x, const Tensor<double>& c,
                                   const std::vector<std::int32_t>& keep, bool causal) {
    const index_t B = x.dim(0), Tq = x.dim(1), Tk = c.dim(1), D = m.config.dim, H = m.config.heads, d = D / H;
    auto proj = [](Linear<Be>& l, const Tensor<double>& in) {
        Tensor<double> out(Shape{in.dim(0), in.dim(1), l.config.out});
        for (index_t i = 0; i < in.shape().rows(); ++i)
            for (index_t o = 0; o < l.config.out; ++o) {
                double s = l.params.bias.value(o);
                for (index_t k = 0; k < l.config.in; ++k) s += in.data()[i * l.config.in + k] * l.params.weight.value(o, k);
                out.data()[i * l.config.out + o] = s;
            }
        return out;
    };
    Tensor<double> q = proj(m.q_proj, x), k = proj(m.k_proj, c), v = proj(m.v_proj, c), o(Shape{B, Tq, D}, 0.0);
    for (index_t b = 0; b < B; ++b)
        for (index_t h = 0; h < H; ++h)
            for (index_t i = 0; i < Tq; ++i) {
                std::vector<double> p(static_cast<std::size_t>(Tk), 0.0);
                double mx = -1e300, sum = 0;
                auto vis = [&](index_t j) { return (keep.empty() || keep[b * Tk + j]) && (!causal || j <= i); };
                for (index_t j = 0; j < Tk; ++j) {
                    double s = 0;
                    for (index_t e = 0; e < d; ++e) s += q(b, i, h * d + e) * k(b, j, h * d + e);
                    p[j] = s / std::sqrt(double(d));
                    if (vis(j)) mx = std::max(mx, p[j]);
                }
                for (index_t j = 0; j < Tk; ++j) sum += (p[j] = vis(j) ? std::exp(p[j] - mx) : 0.0);
                for (index_t j = 0; j < Tk; ++j)
                    for (index_t e = 0; e < d; ++e) o(b, i, h * d + e) += p[j] / sum * v(b, j, h * d + e);
            }
    return proj(m.out_proj, o);
}

}  // namespace

TEST_CASE("self-attention with padding and causal masks equals the loop reference") {
    Be be;
    Mha m({.dim = 8, .heads = 2});
    test::randomize(m, 1);
    Tensor<double> x = test::random_tensor({2, 4, 8}, 2), y(Shape{2, 4, 8});
    std::vector<std::int32_t> keep = {1, 1, 1, 1, 1, 1, 0, 0};
    m.forward(be, x.view(), {}, {.key_keep = keep.data(), .causal = true}, y.view());
    Tensor<double> ref = reference_attention(m, x, x, keep, true);
    CHECK(test::max_abs_diff<double>(y.view(), ref.view()) < 1e-12);
}

TEST_CASE("self-attention backward matches finite differences under padding, causal and additive masks, plain and fused") {
    for (bool fused : {false, true}) {
        INFO((fused ? "fused attention" : "plain attention"));
        Be be({.fused_attention = fused});
        Mha m({.dim = 8, .heads = 2});
        test::randomize(m, 3);
        Tensor<double> x = test::random_tensor({2, 4, 8}, 4), r = test::random_tensor({2, 4, 8}, 5);
        Tensor<double> add = test::random_tensor({1, 4, 4}, 6), y(x.shape()), dx(x.shape());
        std::vector<std::int32_t> keep = {1, 1, 1, 0, 1, 1, 1, 1};
        AttentionMask<double> mask{.key_keep = keep.data(), .causal = true, .additive = add.data(), .additive_batch_stride = 0};
        Mha::Saved s;
        m.forward(be, x.view(), {}, mask, y.view(), &s);
        zero_grad(m);
        m.backward(be, s, r.view(), dx.view(), {}, GradMode::accumulate);
        test::check_module_gradients(m, {{"x", x.view(), dx.view()}}, [&] {
            m.forward(be, x.view(), {}, mask, y.view());
            return testing::dot<double>(r.view(), y.view());
        });
    }
}

TEST_CASE("cross-attention over a wider context: forward equals the loop reference, gradients match, d_ctx accumulates") {
    Be be;
    Mha m({.dim = 8, .heads = 4, .kv_dim = 6, .q_name = "self.query", .k_name = "self.key", .v_name = "self.value",
           .out_name = "output.dense"});
    test::randomize(m, 7);
    CHECK(m.k_proj.params.weight.shape() == Shape{8, 6});
    Tensor<double> x = test::random_tensor({2, 3, 8}, 8), c = test::random_tensor({2, 5, 6}, 9);
    Tensor<double> r = test::random_tensor({2, 3, 8}, 10), y(x.shape()), dx(x.shape()), dc(c.shape(), 0.0);
    std::vector<std::int32_t> keep = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
    AttentionMask<double> mask{.key_keep = keep.data()};
    Mha::Saved s;
    m.forward(be, x.view(), c.view(), mask, y.view(), &s);
    CHECK(test::max_abs_diff<double>(y.view(), reference_attention(m, x, c, keep, false).view()) < 1e-12);
    zero_grad(m);
    m.backward(be, s, r.view(), dx.view(), dc.view(), GradMode::accumulate);
    test::check_module_gradients(m, {{"x", x.view(), dx.view()}, {"ctx", c.view(), dc.view()}}, [&] {
        m.forward(be, x.view(), c.view(), mask, y.view());
        return testing::dot<double>(r.view(), y.view());
    });
    const Tensor<double> once = dc;
    m.backward(be, s, r.view(), {}, dc.view(), GradMode::ignore);
    for (index_t i = 0; i < dc.numel(); ++i) CHECK(dc.data()[i] == doctest::Approx(2 * once.data()[i]));
}

TEST_CASE("a frozen attention (GradMode::ignore) touches no weight gradient but still returns d_x") {
    Be be;
    Mha m({.dim = 4, .heads = 2});
    test::randomize(m, 11);
    Tensor<double> x = test::random_tensor({1, 3, 4}, 12), r = test::random_tensor({1, 3, 4}, 13), y(x.shape());
    Tensor<double> dx(x.shape(), 0.0);
    Mha::Saved s;
    m.forward(be, x.view(), {}, {}, y.view(), &s);
    zero_grad(m);
    m.backward(be, s, r.view(), dx.view(), {}, GradMode::ignore);
    m.visit([](const std::string& name, Parameter<double>& p) {
        CHECK_MESSAGE(!p.has_grad(), name, ": a frozen module allocates no weight gradient");
    });
    double norm = 0;
    for (double g : dx) norm += g * g;
    CHECK(norm > 0);
}

TEST_CASE("decoding with the KV cache, one position or several at a time, equals the full causal forward") {
    CpuBackend<float> be;
    MultiHeadAttention<CpuBackend<float>> m({.dim = 8, .heads = 2});
    m.visit([seed = 20u](const std::string&, Parameter<float>& p) mutable { testing::fill_uniform(p.value.view(), seed++); });
    const index_t B = 2, T = 6, D = 8;
    Tensor<float> x(Shape{B, T, D}), full(Shape{B, T, D});
    testing::fill_uniform(x.view(), 30);
    m.forward(be, x.view(), {}, {.causal = true}, full.view());
    MultiHeadAttention<CpuBackend<float>>::KvCache cache;
    cache.reset(B, T, D);
    Tensor<float> step_out(Shape{B, T, D});
    const index_t chunks[] = {1, 2, 3};  // positions 0 | 1..2 | 3..5
    index_t t0 = 0;
    for (index_t n : chunks) {
        Tensor<float> xs(Shape{B, n, D}), ys(Shape{B, n, D});
        for (index_t b = 0; b < B; ++b)
            for (index_t t = 0; t < n; ++t)
                for (index_t e = 0; e < D; ++e) xs(b, t, e) = x(b, t0 + t, e);
        m.forward_cached(be, xs.view(), cache, {}, ys.view());
        for (index_t b = 0; b < B; ++b)
            for (index_t t = 0; t < n; ++t)
                for (index_t e = 0; e < D; ++e) step_out(b, t0 + t, e) = ys(b, t, e);
        t0 += n;
    }
    CHECK(cache.length == T);
    CHECK(test::max_abs_diff<float>(step_out.view(), full.view()) < 1e-6);
    Tensor<float> one(Shape{B, 1, D}), out(Shape{B, 1, D});
    CHECK_THROWS_AS(m.forward_cached(be, one.view(), cache, {}, out.view()), ShapeError);  // cache full
}

TEST_CASE("attention rejects heads that do not divide the width and inputs of the wrong width") {
    CHECK_THROWS_AS(Mha({.dim = 6, .heads = 4}), ArgumentError);
    Be be;
    Mha m({.dim = 4, .heads = 2});
    Tensor<double> x(Shape{1, 3, 5}), y(Shape{1, 3, 4});
    CHECK_THROWS_WITH_AS(m.forward(be, x.view(), {}, {}, y.view()),
                         "MultiHeadAttention input: expected [*, *, 4], found [1, 3, 5]", ShapeError);
}

namespace {

struct AttentionRun {
    Tensor<double> y, dx, dc;
    std::map<std::string, Tensor<double>> grads;
};

// One forward and backward of `m` on a backend with or without fused attention.
AttentionRun run_attention(Mha& m, bool fused, const Tensor<double>& x, const Tensor<double>* c,
                           const AttentionMask<double>& mask, const Tensor<double>& r) {
    Be be({.fused_attention = fused});
    AttentionRun out{Tensor<double>(r.shape()), Tensor<double>(x.shape()), c ? Tensor<double>(c->shape(), 0.0) : Tensor<double>(), {}};
    Mha::Saved s;
    m.forward(be, x.view(), c ? c->view() : ConstView<double>(), mask, out.y.view(), &s);
    CHECK(s.fused == fused);
    CHECK((fused ? s.probs.numel() == 0 : s.stats.numel() == 0));
    zero_grad(m);
    m.backward(be, s, r.view(), out.dx.view(), c ? out.dc.view() : TensorView<double>(), GradMode::accumulate);
    m.visit([&](const std::string& name, Parameter<double>& p) { out.grads.emplace(name, p.grad); });
    return out;
}

}  // namespace

TEST_CASE("fused attention (online softmax, row statistics saved) equals the plain path forward and backward for every mask") {
    const index_t B = 2, Tq = 5, Tk = 7, D = 8;
    Tensor<double> x = test::random_tensor({B, Tq, D}, 30), c = test::random_tensor({B, Tk, 6}, 31);
    Tensor<double> r = test::random_tensor({B, Tq, D}, 32);
    // Sized for self-attention (Tq = Tk); cross-attention reads the first Tq·Tk of each batch.
    Tensor<double> add_b = test::random_tensor({B, Tk, Tk}, 33), add_1 = test::random_tensor({1, Tk, Tk}, 34);
    add_b.data()[3] = -std::numeric_limits<double>::infinity();  // a key hidden by the additive mask
    // Whole rows under a huge finite additive mask (HF pads with the type's lowest value): every
    // score of the row then rounds to the mask, and softmax is uniform over the row's keys.
    Tensor<double> add_big = add_b;
    for (index_t j = 0; j < Tk; ++j) {
        add_big(0, 1, j) = -1e30;
        add_big(1, 2, j) = std::numeric_limits<double>::lowest();
    }
    std::vector<std::int32_t> keep = {1, 0, 1, 1, 1, 1, 0, /* batch 1 sees nothing: */ 0, 0, 0, 0, 0, 0, 0};
    std::vector<std::int32_t> keep_some = {1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
    const std::vector<std::pair<const char*, AttentionMask<double>>> masks = {
        {"none", {}},
        {"padding, one batch row fully hidden", {.key_keep = keep.data()}},
        {"causal with offset 2 and padding", {.key_keep = keep_some.data(), .causal = true, .causal_offset = 2}},
        {"additive per batch with -inf", {.additive = add_b.data()}},
        {"additive broadcast, causal", {.causal = true, .additive = add_1.data(), .additive_batch_stride = 0}},
        {"rows under -1e30 and the lowest double", {.additive = add_big.data()}},
    };
    for (bool cross : {false, true})
        for (const auto& [name, mask] : masks) {
            INFO(std::string(name), (cross ? " (cross-attention)" : " (self-attention)"));
            Mha m(cross ? Mha::Config{.dim = D, .heads = 2, .kv_dim = 6} : Mha::Config{.dim = D, .heads = 2});
            test::randomize(m, 35);
            const Tensor<double> xs = cross ? x : test::random_tensor({B, Tk, D}, 36);
            const Tensor<double> rs = cross ? r : test::random_tensor({B, Tk, D}, 37);
            const AttentionRun plain = run_attention(m, false, xs, cross ? &c : nullptr, mask, rs);
            const AttentionRun fused = run_attention(m, true, xs, cross ? &c : nullptr, mask, rs);
            CHECK(test::max_abs_diff<double>(plain.y.view(), fused.y.view()) < 1e-12);
            CHECK(test::max_abs_diff<double>(plain.dx.view(), fused.dx.view()) < 1e-12);
            if (cross) CHECK(test::max_abs_diff<double>(plain.dc.view(), fused.dc.view()) < 1e-12);
            for (const auto& [p, g] : plain.grads) {
                INFO("parameter ", p);
                CHECK(test::max_abs_diff<double>(g.view(), fused.grads.at(p).view()) < 1e-12);
            }
        }
}

TEST_CASE("fused attention decodes with the KV cache like the full causal forward") {
    Be be({.fused_attention = true});
    Mha m({.dim = 8, .heads = 2});
    test::randomize(m, 40);
    Tensor<double> x = test::random_tensor({2, 4, 8}, 41);
    // Decoding position by position through the fused forward equals the full causal forward.
    Tensor<double> full(x.shape()), step(Shape{2, 1, 8}), one(Shape{2, 1, 8});
    m.forward(be, x.view(), {}, {.causal = true}, full.view());
    Mha::KvCache cache;
    cache.reset(2, 4, 8);
    double worst = 0;
    for (index_t t = 0; t < 4; ++t) {
        for (index_t b = 0; b < 2; ++b)
            for (index_t e = 0; e < 8; ++e) one(b, 0, e) = x(b, t, e);
        m.forward_cached(be, one.view(), cache, {}, step.view());
        for (index_t b = 0; b < 2; ++b)
            for (index_t e = 0; e < 8; ++e) worst = std::max(worst, std::abs(step(b, 0, e) - full(b, t, e)));
    }
    CHECK(worst < 1e-12);
}

TEST_CASE("a copied Saved of the fused path keeps its own mask when the original is reused") {
    Be be({.fused_attention = true});
    Mha m({.dim = 8, .heads = 2});
    test::randomize(m, 50);
    Tensor<double> x = test::random_tensor({2, 4, 8}, 51), r = test::random_tensor({2, 4, 8}, 52), y(x.shape());
    std::vector<std::int32_t> keep_a = {1, 1, 0, 1, 1, 0, 1, 1}, keep_b(8, 1);
    Tensor<double> add_a = test::random_tensor({2, 4, 4}, 53), add_b = test::random_tensor({2, 4, 4}, 54);
    const AttentionMask<double> mask_a{.key_keep = keep_a.data(), .causal = true, .additive = add_a.data()};
    const AttentionMask<double> mask_b{.key_keep = keep_b.data(), .additive = add_b.data()};
    Mha::Saved s;
    m.forward(be, x.view(), {}, mask_a, y.view(), &s);
    zero_grad(m);
    Tensor<double> want(x.shape()), got(x.shape());
    m.backward(be, s, r.view(), want.view(), {}, GradMode::ignore);
    Mha::Saved copy = s;
    m.forward(be, x.view(), {}, mask_b, y.view(), &s);  // the original now holds mask_b
    m.backward(be, copy, r.view(), got.view(), {}, GradMode::ignore);
    CHECK(test::max_abs_diff<double>(got.view(), want.view()) == 0.0);
}

TEST_CASE("a mask placed in the backend's memory once (be.upload_mask) attends like the host mask, plain and fused") {
    for (bool fused : {false, true}) {
        INFO((fused ? "fused attention" : "plain attention"));
        Be be({.fused_attention = fused});
        Mha m({.dim = 8, .heads = 2});
        test::randomize(m, 60);
        const Tensor<double> x = test::random_tensor({2, 4, 8}, 61), r = test::random_tensor({2, 4, 8}, 62);
        const std::vector<std::int32_t> original = {1, 0, 1, 1, 1, 1, 1, 0};
        std::vector<std::int32_t> keep = original;
        Be::IndexTensor store;
        const AttentionMask<double> resident = be.upload_mask({.key_keep = keep.data(), .causal = true}, 8, store);
        CHECK(resident.key_keep_resident);
        CHECK(resident.key_keep == store.data());
        CHECK(resident.causal);
        std::fill(keep.begin(), keep.end(), 0);  // the upload holds its own copy
        const AttentionMask<double> host{.key_keep = original.data(), .causal = true};
        Tensor<double> want(x.shape()), got(x.shape()), d_want(x.shape()), d_got(x.shape());
        Mha::Saved sw, sg;
        m.forward(be, x.view(), {}, host, want.view(), &sw);
        m.forward(be, x.view(), {}, resident, got.view(), &sg);
        CHECK(test::max_abs_diff<double>(got.view(), want.view()) == 0.0);
        m.backward(be, sw, r.view(), d_want.view(), {}, GradMode::ignore);
        m.backward(be, sg, r.view(), d_got.view(), {}, GradMode::ignore);
        CHECK(test::max_abs_diff<double>(d_got.view(), d_want.view()) == 0.0);
        const AttentionMask<double> none = be.upload_mask({.causal = true}, 8, store);
        CHECK((none.key_keep == nullptr && !none.key_keep_resident && none.causal));
    }
}

TEST_CASE("cross-attention keys and values projected once (project_context) give the full cross-attention") {
    Be be;
    Mha m({.dim = 8, .heads = 2, .kv_dim = 6});
    test::randomize(m, 70);
    const Tensor<double> x = test::random_tensor({2, 3, 8}, 71), c = test::random_tensor({2, 5, 6}, 72);
    const std::vector<std::int32_t> keep = {1, 1, 1, 0, 0, 1, 1, 1, 1, 1};
    Tensor<double> want(x.shape()), got(x.shape());
    m.forward(be, x.view(), c.view(), {.key_keep = keep.data()}, want.view());
    Mha::KvCache cache;
    m.project_context(be, c.view(), cache);
    CHECK(cache.length == 5);
    m.forward_cross_cached(be, x.view(), cache, {.key_keep = keep.data()}, got.view());
    CHECK(test::max_abs_diff<double>(got.view(), want.view()) < 1e-14);
    Tensor<double> other(Shape{3, 3, 8});
    CHECK_THROWS_AS(m.forward_cross_cached(be, other.view(), cache, {}, Tensor<double>(other.shape()).view()), ShapeError);
}

TEST_CASE("one context row shared by every query row (inference) equals that row repeated, plain and fused; training refuses it") {
    Mha m({.dim = 8, .heads = 2, .kv_dim = 6});
    test::randomize(m, 80);
    const index_t B = 3, Tk = 5;
    const Tensor<double> x = test::random_tensor({B, 4, 8}, 81), c = test::random_tensor({1, Tk, 6}, 82);
    Tensor<double> repeated(Shape{B, Tk, 6});  // [B, Tk, 6]: c's one row, B times
    for (index_t b = 0; b < B; ++b) std::copy_n(c.data(), Tk * 6, repeated.data() + b * Tk * 6);
    // The mask still has one row per query row: row 1 hides two positions, the others none.
    const std::vector<std::int32_t> keep = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1};
    const Tensor<double> want = reference_attention(m, x, repeated, keep, false);
    for (const bool fused : {false, true}) {
        CAPTURE(fused);
        Be be({.fused_attention = fused});
        Tensor<double> got(x.shape());
        m.forward(be, x.view(), c.view(), {.key_keep = keep.data()}, got.view());
        CHECK(test::max_abs_diff<double>(got.view(), want.view()) < 1e-12);
        Mha::Saved s;
        CHECK_THROWS_AS(m.forward(be, x.view(), c.view(), {}, got.view(), &s), ShapeError);
    }
}
