// mmalign/generation/logits_processors.hpp — what happens to one row's next-token scores before a
// token is chosen, as transformers' generation/logits_process.py does it, in its order
// (GenerationMixin._get_logits_processor):
//   repetition_penalty → no_repeat_ngram_size → min length (eos suppressed) → [sampling only]
//   temperature → top_k → top_p.
// Scores are float32, like transformers' (generate casts the logits to float32; its scalar
// operands are cast to float32 too: `scores / temperature` divides by float(temperature)), so the
// same float arithmetic gives the same scores. Greedy search and sampling process the raw logits;
// beam search processes log-softmaxed scores (generation/beam_search.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <vector>

#include "mmalign/core/shape.hpp"
#include "mmalign/generation/config.hpp"

namespace mmalign::generation {

inline constexpr float minus_inf = -std::numeric_limits<float>::infinity();

/// log_softmax over one row, in place: x − max − log Σ exp(x − max) (torch's formula; the sum is
/// taken in double, so the result is within an ulp or two of torch's float32 kernel).
inline void log_softmax(std::span<float> x) {
    const float m = *std::max_element(x.begin(), x.end());
    if (m == minus_inf) return;  // every token banned: stays −inf, as in torch
    double sum = 0;
    for (float v : x) sum += std::exp(static_cast<double>(v - m));
    const float log_sum = static_cast<float>(std::log(sum));
    for (float& v : x) v = (v - m) - log_sum;
}

/// RepetitionPenaltyLogitsProcessor: each token id that occurs in `ids` at or after position `from`
/// has its score divided by `penalty` (multiplied when the score is negative), once however often
/// it occurs. transformers' generate passes the index of each row's first attention_mask 1 as
/// `from`, so left padding is not penalized while right padding (within the prompt) is.
inline void penalize_repetitions(std::span<float> scores, std::span<const std::int32_t> ids, index_t from, float penalty) {
    const index_t V = static_cast<index_t>(scores.size());
    std::vector<char> seen(scores.size(), 0);
    for (index_t t = std::max<index_t>(from, 0); t < static_cast<index_t>(ids.size()); ++t) {
        const std::int32_t id = ids[static_cast<std::size_t>(t)];
        if (id < 0 || id >= V) continue;  // ids the head cannot produce (transformers clamps them away)
        seen[static_cast<std::size_t>(id)] = 1;
    }
    for (std::size_t v = 0; v < scores.size(); ++v)
        if (seen[v]) scores[v] = scores[v] < 0 ? scores[v] * penalty : scores[v] / penalty;
}

/// NoRepeatNGramLogitsProcessor: bans (−inf) every token that would complete an n-gram already
/// present in `ids` (prompt included), i.e. the last token of each window whose first n−1 tokens
/// equal the current last n−1 tokens.
inline void ban_repeated_ngrams(std::span<float> scores, std::span<const std::int32_t> ids, index_t n) {
    const auto len = static_cast<index_t>(ids.size());
    const auto V = static_cast<index_t>(scores.size());
    if (n <= 0 || len < n) return;
    const index_t prefix = len + 1 - n;  // the current suffix of n − 1 tokens starts here
    for (index_t w = 0; w + n <= len; ++w) {
        bool match = true;
        for (index_t i = 0; i + 1 < n && match; ++i)
            match = ids[static_cast<std::size_t>(w + i)] == ids[static_cast<std::size_t>(prefix + i)];
        const std::int32_t last = ids[static_cast<std::size_t>(w + n - 1)];
        if (match && last >= 0 && last < V) scores[static_cast<std::size_t>(last)] = minus_inf;
    }
}

/// MinLengthLogitsProcessor / MinNewTokensLengthLogitsProcessor: the listed tokens (the eos ids)
/// get −inf.
inline void suppress_tokens(std::span<float> scores, std::span<const std::int32_t> tokens) {
    for (std::int32_t t : tokens)
        if (t >= 0 && static_cast<std::size_t>(t) < scores.size()) scores[static_cast<std::size_t>(t)] = minus_inf;
}

/// TemperatureLogitsWarper: scores / temperature.
inline void divide_by_temperature(std::span<float> scores, float temperature) {
    for (float& s : scores) s /= temperature;
}

/// TopKLogitsWarper: −inf for every score below the k-th largest (scores equal to it survive, so
/// ties may keep more than k). k >= the row length keeps everything.
inline void keep_top_k(std::span<float> scores, index_t k) {
    if (k <= 0 || k >= static_cast<index_t>(scores.size())) return;
    std::vector<float> sorted(scores.begin(), scores.end());
    std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(), std::greater<float>());
    const float kth = sorted[static_cast<std::size_t>(k - 1)];
    for (float& s : scores)
        if (s < kth) s = minus_inf;
}

/// TopPLogitsWarper: sort ascending, softmax, cumulative sum; every token whose cumulative
/// probability is <= 1 − top_p is removed (−inf), except the `min_tokens_to_keep` most probable.
/// So the kept set is the smallest set of most probable tokens whose mass exceeds top_p.
inline void keep_top_p(std::span<float> scores, double top_p, index_t min_tokens_to_keep) {
    const std::size_t V = scores.size();
    std::vector<std::size_t> order(V);
    std::iota(order.begin(), order.end(), std::size_t(0));
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] < scores[b]; });
    const float m = scores[order.back()];
    if (m == minus_inf) return;
    double sum = 0;
    for (float s : scores) sum += std::exp(static_cast<double>(s - m));
    // Softmax values rounded to float, accumulated in double as torch's CPU cumsum does, each
    // partial sum rounded to float before the float comparison with float(1 − top_p).
    const float threshold = static_cast<float>(1.0 - top_p);
    const std::size_t protect = static_cast<std::size_t>(std::clamp<index_t>(min_tokens_to_keep, 0, static_cast<index_t>(V)));
    double cumulative = 0;
    std::vector<std::size_t> removed;
    for (std::size_t i = 0; i < V; ++i) {
        const std::size_t v = order[i];
        cumulative += static_cast<float>(std::exp(static_cast<double>(scores[v] - m)) / sum);
        if (i < V - protect && static_cast<float>(cumulative) <= threshold) removed.push_back(v);
    }
    for (std::size_t v : removed) scores[v] = minus_inf;
}

/// The processors and warpers of one generate() call, built once from its config.
class LogitsProcessors {
public:
    /// `min_tokens_to_keep`: what top-k/top-p never remove (1; beam sampling: eos count + 1, 2 without eos).
    LogitsProcessors(const GenerationConfig& c, LengthLimits limits, std::vector<std::int32_t> eos, index_t min_tokens_to_keep)
        : repetition_penalty_(static_cast<float>(c.repetition_penalty)),
          ngram_(c.no_repeat_ngram_size),
          min_length_(limits.min_length),
          eos_(std::move(eos)),
          sample_(c.do_sample),
          temperature_(static_cast<float>(c.temperature)),
          top_k_(c.top_k == 0 ? 0 : std::max(c.top_k, min_tokens_to_keep)),
          top_p_(c.top_p),
          keep_(min_tokens_to_keep) {}

    /// Processes `scores` [V], the next-token scores of a row whose ids so far are `ids`;
    /// `penalty_from` is the row's first position the repetition penalty counts.
    void apply(std::span<const std::int32_t> ids, index_t penalty_from, std::span<float> scores) const {
        if (repetition_penalty_ != 1.0f) penalize_repetitions(scores, ids, penalty_from, repetition_penalty_);
        if (ngram_ > 0) ban_repeated_ngrams(scores, ids, ngram_);
        if (min_length_ > 0 && static_cast<index_t>(ids.size()) < min_length_) suppress_tokens(scores, eos_);
        if (!sample_) return;
        if (temperature_ != 1.0f) divide_by_temperature(scores, temperature_);
        if (top_k_ != 0) keep_top_k(scores, top_k_);
        if (top_p_ < 1.0) keep_top_p(scores, top_p_, keep_);
    }

private:
    float repetition_penalty_;
    index_t ngram_, min_length_;
    std::vector<std::int32_t> eos_;
    bool sample_;
    float temperature_;
    index_t top_k_;
    double top_p_;
    index_t keep_;
};

}  // namespace mmalign::generation
