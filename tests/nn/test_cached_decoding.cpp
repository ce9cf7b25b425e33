// Tests of cached decoding in nn/transformer_block.hpp and nn/transformer_stack.hpp: decoding
// step by step (one position or several) equals the full forward over the whole sequence —
// causal, with left and right padding hidden through key_keep over the cache positions, with
// cross-attention whose keys and values are projected once — and beam-search reordering of the
// caches (rows duplicated, permuted, dropped) equals the full forward of the reordered sequences.
#include <doctest/doctest.h>

#include <algorithm>
#include <span>
#include <vector>

#include "mmalign/nn/transformer_stack.hpp"
#include "support/module_check.hpp"
#include "support/reference.hpp"

using namespace mmalign;
using test::Be;

namespace {

/// Positions [t0, t0 + n) of x [B, T, D] → [B, n, D].
template <class T>
Tensor<T> positions(const Tensor<T>& x, index_t t0, index_t n) {
    Tensor<T> out(Shape{x.dim(0), n, x.dim(2)});
    for (index_t b = 0; b < x.dim(0); ++b)
        for (index_t t = 0; t < n; ++t)
            for (index_t e = 0; e < x.dim(2); ++e) out(b, t, e) = x(b, t0 + t, e);
    return out;
}

/// dst[:, t0 .. t0 + n) = src [B, n, D].
template <class T>
void put_positions(Tensor<T>& dst, index_t t0, const Tensor<T>& src) {
    for (index_t b = 0; b < src.dim(0); ++b)
        for (index_t t = 0; t < src.dim(1); ++t)
            for (index_t e = 0; e < src.dim(2); ++e) dst(b, t0 + t, e) = src(b, t, e);
}

/// Row b of the result is row rows[b] of x ([B, row] for the vector form).
template <class T>
std::vector<T> gather_rows(const std::vector<T>& x, index_t row, const std::vector<std::int32_t>& rows) {
    std::vector<T> out;
    for (std::int32_t r : rows) out.insert(out.end(), x.begin() + r * row, x.begin() + (r + 1) * row);
    return out;
}
template <class T>
Tensor<T> gather_rows(const Tensor<T>& x, const std::vector<std::int32_t>& rows) {  // x [B, T, D]
    const index_t row = x.dim(1) * x.dim(2);
    Tensor<T> out(Shape{static_cast<index_t>(rows.size()), x.dim(1), x.dim(2)});
    for (std::size_t b = 0; b < rows.size(); ++b)
        std::copy_n(x.data() + rows[b] * row, row, out.data() + static_cast<index_t>(b) * row);
    return out;
}

/// [B, Ta, D] ++ [B, Tb, D] along positions.
template <class T>
Tensor<T> concat_positions(const Tensor<T>& a, const Tensor<T>& b) {
    Tensor<T> out(Shape{a.dim(0), a.dim(1) + b.dim(1), a.dim(2)});
    put_positions(out, 0, a);
    put_positions(out, a.dim(1), b);
    return out;
}

/// keep rows [B, Ta] ++ [B, Tb].
std::vector<std::int32_t> concat_keep(const std::vector<std::int32_t>& a, index_t ta, const std::vector<std::int32_t>& b,
                                      index_t tb) {
    std::vector<std::int32_t> out;
    const index_t B = static_cast<index_t>(a.size()) / ta;
    for (index_t r = 0; r < B; ++r) {
        out.insert(out.end(), a.begin() + r * ta, a.begin() + (r + 1) * ta);
        out.insert(out.end(), b.begin() + r * tb, b.begin() + (r + 1) * tb);
    }
    return out;
}

/// Shifts every cross-attention key and value projection of `m` (by name), so that anything
/// computed from them after this point differs.
template <class M>
void perturb_cross_kv(M& m) {
    m.visit([](const std::string& name, auto& p) {
        const bool cross = name.find("crossattention") != std::string::npos || name.find("cross_attn") != std::string::npos;
        const bool kv = name.find(".self.key.") != std::string::npos || name.find(".self.value.") != std::string::npos ||
                        name.find("k_proj") != std::string::npos || name.find("v_proj") != std::string::npos;
        if (cross && kv)
            for (auto& v : p.value) v += 0.5;
    });
}

template <class Norm>
typename TransformerBlock<Be, Norm>::Config block_config(bool cross) {
    return {.dim = 8, .heads = 2, .mlp_hidden = 12, .activation = Activation::gelu,
            .eps = std::is_same_v<Norm, PreNorm> ? 1e-5 : 1e-12, .cross_attention = cross, .cross_dim = 6,
            .names = std::is_same_v<Norm, PreNorm> ? BlockNames::clip() : BlockNames::bert()};
}

}  // namespace

TEST_CASE_TEMPLATE("a block decoding one position or several at a time with its cache equals the full causal forward",
                   Norm, PreNorm, PostNorm) {
    for (bool fused : {false, true}) {
        INFO((fused ? "fused attention" : "plain attention"));
        Be be({.fused_attention = fused});
        TransformerBlock<Be, Norm> blk(block_config<Norm>(false));
        test::randomize(blk, 1);
        const index_t B = 2, T = 6, D = 8;
        const Tensor<double> x = test::random_tensor({B, T, D}, 2);
        Tensor<double> full(x.shape()), stepped(x.shape());
        blk.forward(be, x.view(), {}, {.causal = true}, {}, full.view());
        typename TransformerBlock<Be, Norm>::Cache cache;
        blk.start_cache(be, cache, B, T);
        index_t t0 = 0;
        for (index_t n : {1, 2, 1, 2}) {
            const Tensor<double> xs = positions(x, t0, n);
            Tensor<double> ys(xs.shape());
            blk.forward_cached(be, xs.view(), cache, {}, {}, ys.view());
            put_positions(stepped, t0, ys);
            t0 += n;
        }
        CHECK(cache.length() == T);
        CHECK(test::max_abs_diff<double>(stepped.view(), full.view()) < 1e-12);
        Tensor<double> one(Shape{B, 1, D}), out(one.shape());
        CHECK_THROWS_AS(blk.forward_cached(be, one.view(), cache, {}, {}, out.view()), ShapeError);  // cache full
    }
}

TEST_CASE_TEMPLATE("a block with cross-attention decodes like the full forward, reading keys and values projected once",
                   Norm, PreNorm, PostNorm) {
    Be be;
    TransformerBlock<Be, Norm> blk(block_config<Norm>(true));
    test::randomize(blk, 3);
    const index_t B = 2, T = 5;
    const Tensor<double> x = test::random_tensor({B, T, 8}, 4), enc = test::random_tensor({B, 4, 6}, 5);
    const std::vector<std::int32_t> enc_keep = {1, 1, 1, 0, 1, 1, 1, 1};
    const AttentionMask<double> cross_mask{.key_keep = enc_keep.data()};
    Tensor<double> full(x.shape()), stepped(x.shape()), perturbed(x.shape());
    blk.forward(be, x.view(), enc.view(), {.causal = true}, cross_mask, full.view());
    typename TransformerBlock<Be, Norm>::Cache cache;
    blk.start_cache(be, cache, B, T, enc.view());
    CHECK(cache.cross.length == 4);
    // From here on, a step that projected the encoder states again would see other weights.
    perturb_cross_kv(blk);
    for (index_t t = 0; t < T; ++t) {
        const Tensor<double> xs = positions(x, t, 1);
        Tensor<double> ys(xs.shape());
        blk.forward_cached(be, xs.view(), cache, {}, cross_mask, ys.view());
        put_positions(stepped, t, ys);
    }
    CHECK(test::max_abs_diff<double>(stepped.view(), full.view()) < 1e-12);
    blk.forward(be, x.view(), enc.view(), {.causal = true}, cross_mask, perturbed.view());
    CHECK(test::max_abs_diff<double>(perturbed.view(), full.view()) > 1e-3);  // the perturbation does matter
}

TEST_CASE_TEMPLATE("a stack hides left and right padding through key_keep over the cache positions, plain and fused",
                   Norm, PreNorm, PostNorm) {
    const index_t B = 3, T0 = 4, T1 = 3, T = T0 + T1, D = 8;
    // Left padding: prompts of 2, 4 and 3 tokens, padded at the front (HF's padding_side="left").
    const std::vector<std::int32_t> left = {0, 0, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1};
    // Right padding: prompts of 2, 4 and 1 tokens, padded at the end; the continuation follows the padding.
    const std::vector<std::int32_t> right = {1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0};
    for (const auto* prompt_keep : {&left, &right})
        for (bool fused : {false, true}) {
            INFO((prompt_keep == &left ? "left padding" : "right padding"), (fused ? ", fused" : ", plain"));
            Be be({.fused_attention = fused});
            TransformerStack<Be, Norm> st({.layers = 2, .block = block_config<Norm>(false)});
            test::randomize(st, 6, 0.4);
            const Tensor<double> x = test::random_tensor({B, T, D}, 7);
            const std::vector<std::int32_t> keep = concat_keep(*prompt_keep, T0, std::vector<std::int32_t>(B * T1, 1), T1);
            Tensor<double> full(x.shape()), stepped(x.shape());
            st.forward(be, x.view(), {}, {.key_keep = keep.data(), .causal = true}, {}, full.view());

            typename TransformerStack<Be, Norm>::Cache cache;
            st.start_cache(be, cache, B, T);
            const Tensor<double> prompt = positions(x, 0, T0);
            Tensor<double> y0(prompt.shape());
            st.forward_cached(be, prompt.view(), cache, *prompt_keep, y0.view());
            put_positions(stepped, 0, y0);
            for (index_t t = T0; t < T; ++t) {
                const Tensor<double> xs = positions(x, t, 1);
                Tensor<double> ys(xs.shape());
                st.forward_cached(be, xs.view(), cache, {}, ys.view());  // empty keep: new tokens are real
                put_positions(stepped, t, ys);
            }
            CHECK(cache.length == T);
            CHECK(test::max_abs_diff<double>(stepped.view(), full.view()) < 1e-12);
        }
}

TEST_CASE("a float stack decoding a left-padded batch token by token equals the full forward within 1e-5") {
    using F = CpuBackend<float>;
    F be;
    TransformerStack<F, PreNorm> st({.layers = 3,
                                     .block = {.dim = 16, .heads = 4, .mlp_hidden = 32, .activation = Activation::relu,
                                               .names = BlockNames::opt()}});
    unsigned seed = 10;
    st.visit([&](const std::string& name, Parameter<float>& p) {
        testing::fill_uniform(p.value.view(), seed++, -0.3, 0.3);
        if (name.find("norm") != std::string::npos && name.find("weight") != std::string::npos)
            for (auto& v : p.value) v += 1.0f;
    });
    const index_t B = 2, T = 7, D = 16;
    Tensor<float> x(Shape{B, T, D});
    testing::fill_uniform(x.view(), 40);
    const std::vector<std::int32_t> keep = {0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    Tensor<float> full(x.shape()), stepped(x.shape());
    st.forward(be, x.view(), {}, {.key_keep = keep.data(), .causal = true}, {}, full.view());
    TransformerStack<F, PreNorm>::Cache cache;
    st.start_cache(be, cache, B, T);
    for (index_t t = 0; t < T; ++t) {
        const Tensor<float> xs = positions(x, t, 1);
        Tensor<float> ys(xs.shape());
        const std::vector<std::int32_t> k = {keep[static_cast<std::size_t>(t)], keep[static_cast<std::size_t>(T + t)]};
        st.forward_cached(be, xs.view(), cache, k, ys.view());
        put_positions(stepped, t, ys);
    }
    CHECK(test::max_abs_diff<float>(stepped.view(), full.view()) < 1e-5);
}

TEST_CASE("a stack with cross-attention every other layer and padded encoder states decodes like the full forward") {
    Be be;
    TransformerStack<Be, PostNorm> st({.layers = 3, .block = block_config<PostNorm>(true), .layer_name = "layer",
                                       .cross_attention_every = 2});
    test::randomize(st, 11, 0.4);
    const index_t B = 2, T = 5;
    const Tensor<double> x = test::random_tensor({B, T, 8}, 12), enc = test::random_tensor({B, 3, 6}, 13);
    const std::vector<std::int32_t> enc_keep = {1, 1, 0, 1, 1, 1};
    Tensor<double> full(x.shape()), stepped(x.shape());
    st.forward(be, x.view(), enc.view(), {.causal = true}, {.key_keep = enc_keep.data()}, full.view());
    TransformerStack<Be, PostNorm>::Cache cache;
    st.start_cache(be, cache, B, T, enc.view(), enc_keep);
    perturb_cross_kv(st);  // the steps below must read the projections made by start_cache
    index_t t0 = 0;
    for (index_t n : {2, 1, 2}) {
        const Tensor<double> xs = positions(x, t0, n);
        Tensor<double> ys(xs.shape());
        st.forward_cached(be, xs.view(), cache, {}, ys.view());
        put_positions(stepped, t0, ys);
        t0 += n;
    }
    CHECK(test::max_abs_diff<double>(stepped.view(), full.view()) < 1e-12);
}

TEST_CASE("beam search: duplicated, permuted and dropped cache rows decode on like the full forward of the reordered "
          "sequences") {
    Be be;
    TransformerStack<Be, PostNorm> st({.layers = 2, .block = block_config<PostNorm>(true), .layer_name = "layer"});
    test::randomize(st, 20, 0.4);
    const index_t T0 = 3, T1 = 2, T2 = 1, Tmax = T0 + T1 + T2, D = 8;
    // Two prompts (the first left-padded), each with its own padded image.
    const Tensor<double> prompt = test::random_tensor({2, T0, D}, 21), enc = test::random_tensor({2, 4, 6}, 22);
    const std::vector<std::int32_t> prompt_keep = {0, 1, 1, 1, 1, 1}, enc_keep = {1, 1, 1, 0, 1, 1, 1, 1};
    typename TransformerStack<Be, PostNorm>::Cache cache;
    st.start_cache(be, cache, 2, Tmax, enc.view(), enc_keep);
    Tensor<double> y0(prompt.shape());
    st.forward_cached(be, prompt.view(), cache, prompt_keep, y0.view());

    // Full forward of the sequences a cache row holds: prompt ++ continuations, with its image.
    auto full_forward = [&](const std::vector<std::int32_t>& origin, const Tensor<double>& seq) {
        const index_t n = static_cast<index_t>(origin.size()), Tn = seq.dim(1);
        const std::vector<std::int32_t> keep =
            concat_keep(gather_rows(prompt_keep, T0, origin), T0, std::vector<std::int32_t>(n * (Tn - T0), 1), Tn - T0);
        const std::vector<std::int32_t> ek = gather_rows(enc_keep, 4, origin);
        const Tensor<double> e = gather_rows(enc, origin);
        Tensor<double> y(seq.shape());
        st.forward(be, seq.view(), e.view(), {.key_keep = keep.data(), .causal = true}, {.key_keep = ek.data()}, y.view());
        return y;
    };
    CHECK(test::max_abs_diff<double>(y0.view(), positions(full_forward({0, 1}, prompt), 0, T0).view()) < 1e-12);

    // Two beams per prompt, in an order other than the cache's.
    const std::vector<std::int32_t> r1 = {1, 0, 0, 1};
    cache.reorder(be, r1);
    CHECK(cache.batch == 4);
    const Tensor<double> x1 = test::random_tensor({4, T1, D}, 23);
    Tensor<double> y1(x1.shape());
    st.forward_cached(be, x1.view(), cache, {}, y1.view());
    const Tensor<double> seq1 = concat_positions(gather_rows(prompt, r1), x1);
    CHECK(test::max_abs_diff<double>(y1.view(), positions(full_forward(r1, seq1), T0, T1).view()) < 1e-12);

    // Keep beams 3, 1 and 2 (beam 0 dropped), then one more step.
    const std::vector<std::int32_t> r2 = {3, 1, 2};
    cache.reorder(be, r2);
    const Tensor<double> x2 = test::random_tensor({3, T2, D}, 24);
    Tensor<double> y2(x2.shape());
    st.forward_cached(be, x2.view(), cache, {}, y2.view());
    std::vector<std::int32_t> origin;
    for (std::int32_t r : r2) origin.push_back(r1[static_cast<std::size_t>(r)]);
    const Tensor<double> seq2 = concat_positions(gather_rows(seq1, r2), x2);
    CHECK(test::max_abs_diff<double>(y2.view(), positions(full_forward(origin, seq2), T0 + T1, T2).view()) < 1e-12);

    const std::vector<std::int32_t> bad = {0, 3};
    CHECK_THROWS_AS(cache.reorder(be, bad), ArgumentError);
}

TEST_CASE("a block's cache reorders its self- and cross-attention rows together") {
    Be be;
    TransformerBlock<Be, PreNorm> blk(block_config<PreNorm>(true));
    test::randomize(blk, 30);
    const Tensor<double> x = test::random_tensor({2, 3, 8}, 31), enc = test::random_tensor({2, 4, 6}, 32);
    TransformerBlock<Be, PreNorm>::Cache cache;
    blk.start_cache(be, cache, 2, 4, enc.view());
    Tensor<double> y(x.shape());
    blk.forward_cached(be, x.view(), cache, {}, {}, y.view());
    const std::vector<std::int32_t> rows = {1, 1, 0};
    cache.reorder(be, rows);
    const Tensor<double> next = test::random_tensor({3, 1, 8}, 33);
    Tensor<double> got(next.shape()), full(Shape{3, 4, 8});
    blk.forward_cached(be, next.view(), cache, {}, {}, got.view());
    const Tensor<double> seq = concat_positions(gather_rows(x, rows), next), e = gather_rows(enc, rows);
    blk.forward(be, seq.view(), e.view(), {.causal = true}, {}, full.view());
    CHECK(test::max_abs_diff<double>(got.view(), positions(full, 3, 1).view()) < 1e-12);
}
