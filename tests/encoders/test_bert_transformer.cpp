// Tests of encoders/bert_transformer.hpp: the backward of the whole tower (token types, pooler,
// cross-attention, encoder and decoder modes) against finite differences in double, padding and
// causality as masks, and KV-cached decoding equal to the full decoder-mode forward.
// (Parity with transformers' BlipTextModel / BertModel: tests/models/test_blip.cpp and
// tools/check_bert_real_weights.py.)
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "mmalign/encoders/bert_transformer.hpp"
#include "support/module_check.hpp"

using namespace mmalign;
using test::Be;
using Bert = BertTransformer<Be>;

namespace {

Bert::Config small(bool cross, bool pooler, index_t types) {
    Bert::Config c;
    c.vocab_size = 23, c.max_positions = 9, c.type_vocab_size = types, c.hidden = 8, c.layers = 2, c.heads = 2;
    c.mlp_hidden = 12, c.activation = Activation::gelu, c.eps = 1e-12, c.cross_attention = cross, c.cross_dim = 6;
    c.pooler = pooler;
    return c;
}

}  // namespace

TEST_CASE("the BERT tower's backward matches finite differences: token types, pooler, cross-attention, both modes") {
    for (const bool causal : {false, true}) {
        CAPTURE(causal);
        Be be;
        Bert bert(small(true, true, 2));
        test::randomize(bert, 11, 0.4);
        const std::vector<std::int32_t> ids = {4, 9, 17, 3, 0, 0, 5, 22, 1, 8, 13, 2};
        const std::vector<std::int32_t> mask = {1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1};
        const std::vector<std::int32_t> types = {0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1};
        Tensor<double> enc = test::random_tensor({2, 5, 6}, 12);
        const std::vector<std::int32_t> enc_mask = {1, 1, 1, 0, 0, 1, 1, 1, 1, 1};
        Tensor<double> r_last = test::random_tensor({2, 6, 8}, 13), r_pool = test::random_tensor({2, 8}, 14);
        Tensor<double> last(Shape{2, 6, 8}), pooled(Shape{2, 8}), d_enc(Shape{2, 5, 6});
        const Bert::Input in{.ids = ids, .attention_mask = mask, .batch = 2, .encoder_states = enc.view(),
                             .encoder_mask = enc_mask, .causal = causal, .token_type_ids = types};
        Bert::Saved s;
        bert.forward(be, in, last.view(), pooled.view(), &s);
        zero_grad(bert);
        d_enc.zero();
        bert.backward(be, s, r_last.view(), r_pool.view(), d_enc.view(), GradMode::accumulate);
        test::check_module_gradients(bert, {{"encoder states", enc.view(), d_enc.view()}}, [&] {
            bert.forward(be, in, last.view(), pooled.view());
            return testing::dot<double>(r_last.view(), last.view()) + testing::dot<double>(r_pool.view(), pooled.view());
        });
    }
}

TEST_CASE("encoder mode: a token's state does not depend on padded keys; decoder mode: not on later tokens") {
    Be be;
    Bert bert(small(false, false, 0));
    test::randomize(bert, 21, 0.5);
    const index_t D = 8;
    auto run = [&](const std::vector<std::int32_t>& ids, const std::vector<std::int32_t>& mask, bool causal) {
        Tensor<double> h(Shape{1, static_cast<index_t>(ids.size()), D});
        bert.forward(be, {.ids = ids, .attention_mask = mask, .batch = 1, .causal = causal}, h.view(), {});
        return h;
    };
    // Padding: the id under a masked position changes nothing at the kept positions.
    const auto a = run({3, 7, 11, 5}, {1, 1, 1, 0}, false), b = run({3, 7, 11, 19}, {1, 1, 1, 0}, false);
    for (index_t i = 0; i < 3 * D; ++i) CHECK(a.data()[i] == doctest::Approx(b.data()[i]).epsilon(1e-12));
    // Causal: positions before a changed token keep their states; bidirectional: they do not.
    const auto c = run({3, 7, 11, 5}, {}, true), d = run({3, 7, 11, 19}, {}, true);
    for (index_t i = 0; i < 3 * D; ++i) CHECK(c.data()[i] == doctest::Approx(d.data()[i]).epsilon(1e-12));
    const auto e = run({3, 7, 11, 5}, {}, false), f = run({3, 7, 11, 19}, {}, false);
    double moved = 0;
    for (index_t i = 0; i < 3 * D; ++i) moved = std::max(moved, std::abs(e.data()[i] - f.data()[i]));
    CHECK(moved > 1e-6);
}

TEST_CASE("cached decoding, prompt first then one token per step, equals the decoder-mode forward over the whole text") {
    Be be;
    Bert bert(small(true, false, 2));
    test::randomize(bert, 31, 0.5);
    const index_t Bn = 2, Tn = 6, D = 8, Te = 4;
    const std::vector<std::int32_t> ids = {4, 9, 17, 3, 12, 6, 5, 22, 1, 8, 13, 2};
    const std::vector<std::int32_t> mask = {0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};  // row 0 left-padded
    Tensor<double> enc = test::random_tensor({Bn, Te, 6}, 32);
    const std::vector<std::int32_t> enc_mask = {1, 1, 0, 1, 1, 1, 1, 1};
    Tensor<double> full(Shape{Bn, Tn, D});
    bert.forward(be, {.ids = ids, .attention_mask = mask, .batch = Bn, .encoder_states = enc.view(),
                      .encoder_mask = enc_mask, .causal = true},
                 full.view(), {});
    Bert::Cache cache;
    bert.start_cache(be, cache, Bn, Tn, enc.view(), enc_mask);
    const index_t prompt = 3;
    auto slice = [&](const std::vector<std::int32_t>& v, index_t t0, index_t n) {
        std::vector<std::int32_t> out;
        for (index_t b = 0; b < Bn; ++b)
            for (index_t t = t0; t < t0 + n; ++t) out.push_back(v[static_cast<std::size_t>(b * Tn + t)]);
        return out;
    };
    double worst = 0;
    for (index_t t0 = 0; t0 < Tn;) {
        const index_t n = t0 == 0 ? prompt : 1;
        const auto step_ids = slice(ids, t0, n), step_keep = slice(mask, t0, n);
        Tensor<double> h(Shape{Bn, n, D});
        bert.forward_cached(be, step_ids, step_keep, cache, h.view());
        for (index_t b = 0; b < Bn; ++b)
            for (index_t t = 0; t < n; ++t) {
                if (!mask[static_cast<std::size_t>(b * Tn + t0 + t)]) continue;  // a padded query's state is unused
                for (index_t d = 0; d < D; ++d)
                    worst = std::max(worst, std::abs(h(b, t, d) - full(b, t0 + t, d)));
            }
        t0 += n;
    }
    CHECK(worst < 1e-12);
    CHECK(cache.length() == Tn);
    std::vector<std::int32_t> one = {1, 2};
    Tensor<double> h(Shape{Bn, 1, D});
    CHECK_THROWS_AS(bert.forward_cached(be, one, {}, cache, h.view()), ShapeError);  // the cache is full
}

TEST_CASE("config sizes are checked in HF's field names, and misuse is refused with a sentence") {
    Bert::Config c = small(false, false, 0);
    c.hidden = 10, c.heads = 4;
    CHECK(c.hf_problem() == "hidden_size 10 is not a multiple of num_attention_heads 4");
    Be be;
    Bert bert(small(false, false, 0));
    Tensor<double> h(Shape{1, 3, 8}), pooled(Shape{1, 8}), enc(Shape{1, 2, 6});
    const std::vector<std::int32_t> ids = {1, 2, 3};
    CHECK_THROWS_AS(bert.forward(be, {.ids = ids}, h.view(), pooled.view()), ArgumentError);  // no pooler
    CHECK_THROWS_AS(bert.forward(be, {.ids = ids, .encoder_states = enc.view()}, h.view(), {}), ArgumentError);
    const std::vector<std::int32_t> long_ids(10, 1);
    Tensor<double> hl(Shape{1, 10, 8});
    CHECK_THROWS_AS(bert.forward(be, {.ids = long_ids}, hl.view(), {}), ShapeError);  // > max_position_embeddings
}
