// Tests of generation/logits_processors.hpp on hand-computed rows: each processor against the rule
// transformers' logits_process.py states, at the boundaries the fixture matrix cannot reach.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "mmalign/generation/logits_processors.hpp"

using namespace mmalign;
namespace gen = mmalign::generation;

namespace {
bool banned(float x) { return std::isinf(x) && x < 0; }
}  // namespace

TEST_CASE("log_softmax gives log-probabilities that sum to one and keeps -inf") {
    std::vector<float> x = {1.0f, 2.0f, gen::minus_inf, 0.5f};
    gen::log_softmax(x);
    const double z = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(0.5));
    CHECK(x[0] == doctest::Approx(1.0 - z).epsilon(1e-6));
    CHECK(x[1] == doctest::Approx(2.0 - z).epsilon(1e-6));
    CHECK(banned(x[2]));
    CHECK(x[3] == doctest::Approx(0.5 - z).epsilon(1e-6));
}

TEST_CASE("the repetition penalty divides positive and multiplies negative scores of tokens seen from `from` on, once each") {
    std::vector<float> s = {2.0f, -2.0f, 3.0f, 4.0f, -1.0f};
    const std::vector<std::int32_t> ids = {4, 0, 1, 1, 1};  // token 4 sits before `from`
    gen::penalize_repetitions(s, ids, 1, 2.0f);
    CHECK(s[0] == 1.0f);   // 2 / 2
    CHECK(s[1] == -4.0f);  // -2 × 2, once although it occurs three times
    CHECK(s[2] == 3.0f);
    CHECK(s[3] == 4.0f);
    CHECK(s[4] == -1.0f);  // only before `from`: left padding is not penalized
}

TEST_CASE("no_repeat_ngram_size bans exactly the tokens that would complete an n-gram already present") {
    // ids 5 6 7 5 6: the current suffix (5 6) began the window 5 6 7 at position 0, so 7 is banned.
    const std::vector<std::int32_t> ids = {5, 6, 7, 5, 6};
    std::vector<float> s(10, 0.0f);
    gen::ban_repeated_ngrams(s, ids, 3);
    for (int v = 0; v < 10; ++v) CHECK(banned(s[static_cast<std::size_t>(v)]) == (v == 7));
    // Bigrams: the suffix 6 was followed by 7 once; 1-grams ban every token seen.
    std::vector<float> b(10, 0.0f), u(10, 0.0f);
    gen::ban_repeated_ngrams(b, ids, 2);
    for (int v = 0; v < 10; ++v) CHECK(banned(b[static_cast<std::size_t>(v)]) == (v == 7));
    gen::ban_repeated_ngrams(u, ids, 1);
    for (int v = 0; v < 10; ++v) CHECK(banned(u[static_cast<std::size_t>(v)]) == (v >= 5 && v <= 7));
    // Shorter than n: nothing to ban.
    std::vector<float> none(10, 0.0f);
    gen::ban_repeated_ngrams(none, std::vector<std::int32_t>{5, 6}, 3);
    for (float x : none) CHECK(x == 0.0f);
}

TEST_CASE("top-k keeps the k largest scores and everything tied with the k-th") {
    std::vector<float> s = {0.1f, 0.9f, 0.5f, 0.5f, 0.3f};
    gen::keep_top_k(s, 2);
    CHECK(s[1] == 0.9f);
    CHECK(s[2] == 0.5f);
    CHECK(s[3] == 0.5f);  // tied with the 2nd largest
    CHECK(banned(s[0]));
    CHECK(banned(s[4]));
    std::vector<float> all = {1.0f, 2.0f};
    gen::keep_top_k(all, 5);  // k beyond the row: nothing removed
    CHECK(all == std::vector<float>{1.0f, 2.0f});
}

TEST_CASE("top-p keeps the most probable tokens until their mass exceeds top_p, and at least min_tokens_to_keep") {
    // Probabilities 0.5, 0.3, 0.15, 0.05 (as log-probabilities).
    const std::vector<float> logp = {std::log(0.15f), std::log(0.5f), std::log(0.05f), std::log(0.3f)};
    std::vector<float> s = logp;
    gen::keep_top_p(s, 0.75, 1);  // 0.5 alone is not above 0.75; 0.5 + 0.3 is
    CHECK(!banned(s[1]));
    CHECK(!banned(s[3]));
    CHECK(banned(s[0]));
    CHECK(banned(s[2]));
    s = logp;
    gen::keep_top_p(s, 0.2, 1);  // the most probable token alone exceeds 0.2
    CHECK(!banned(s[1]));
    CHECK((banned(s[0]) && banned(s[2]) && banned(s[3])));
    s = logp;
    gen::keep_top_p(s, 0.2, 3);  // but three are protected
    CHECK((!banned(s[1]) && !banned(s[3]) && !banned(s[0])));
    CHECK(banned(s[2]));
}

TEST_CASE("the processors run in transformers' order: min length bans eos only while the sequence is shorter") {
    gen::GenerationConfig c;
    c.eos_token_id = {2, 3};
    const gen::LengthLimits limits{20, 5};
    const gen::LogitsProcessors p(c, limits, c.eos_token_id, 1);
    std::vector<float> s(6, 1.0f);
    p.apply(std::vector<std::int32_t>{1, 1, 1, 1}, 0, s);  // length 4 < 5
    CHECK((banned(s[2]) && banned(s[3])));
    CHECK(!banned(s[1]));
    std::vector<float> t(6, 1.0f);
    p.apply(std::vector<std::int32_t>{1, 1, 1, 1, 1}, 0, t);  // length 5: free
    for (float x : t) CHECK(x == 1.0f);
}

TEST_CASE("warpers apply only when sampling, temperature before top-k before top-p") {
    gen::GenerationConfig c;
    c.temperature = 0.5;
    c.top_k = 2;
    c.top_p = 0.5;
    std::vector<float> s = {1.0f, 3.0f, 2.0f, 0.0f};
    gen::LogitsProcessors(c, {20, 0}, {}, 1).apply(std::vector<std::int32_t>{0}, 0, s);
    CHECK(s == std::vector<float>{1.0f, 3.0f, 2.0f, 0.0f});  // greedy: untouched
    c.do_sample = true;
    gen::LogitsProcessors(c, {20, 0}, {}, 1).apply(std::vector<std::int32_t>{0}, 0, s);
    // /0.5 → 2 6 4 0; top-2 keeps 6 and 4; top-p 0.5: 6 alone has softmax mass 0.88 > 0.5.
    CHECK(banned(s[0]));
    CHECK(s[1] == 6.0f);
    CHECK(banned(s[2]));
    CHECK(banned(s[3]));
}
