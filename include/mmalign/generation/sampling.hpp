// mmalign/generation/sampling.hpp — drawing tokens from processed scores: what torch.multinomial
// over softmax(scores) does in transformers' sampling and beam sampling, from a seeded generator.
//
// The generator is std::mt19937_64, whose output sequence the C++ standard fixes, and uniforms are
// made from its top 53 bits here rather than through std::uniform_real_distribution (whose
// algorithm each standard library chooses), so one seed gives the same ids on every platform. The
// draws cannot equal torch's (a different generator); tests check the distribution instead.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "mmalign/core/error.hpp"
#include "mmalign/core/shape.hpp"

namespace mmalign::generation {

/// The random source of one generate() call.
class Rng {
public:
    explicit Rng(std::uint64_t seed) : engine_(seed) {}
    /// Uniform in [0, 1), 53 random bits.
    double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

private:
    std::mt19937_64 engine_;
};

namespace detail {

/// exp(s − max) per score in double: softmax up to its normalisation; −inf scores weigh 0.
inline double softmax_weights(std::span<const float> scores, std::vector<double>& w) {
    w.resize(scores.size());
    const float m = *std::max_element(scores.begin(), scores.end());
    double total = 0;
    for (std::size_t i = 0; i < scores.size(); ++i) {
        w[i] = std::isinf(scores[i]) && scores[i] < 0 ? 0.0 : std::exp(static_cast<double>(scores[i] - m));
        total += w[i];
    }
    return total;
}

/// The index whose cumulative weight first exceeds u·total, among positive weights only.
inline index_t pick(const std::vector<double>& w, double total, double u) {
    const double target = u * total;
    double cumulative = 0;
    index_t last_positive = -1;
    for (std::size_t i = 0; i < w.size(); ++i) {
        if (w[i] <= 0) continue;
        cumulative += w[i];
        last_positive = static_cast<index_t>(i);
        if (target < cumulative) return last_positive;
    }
    return last_positive;  // rounding left target at the very top
}

}  // namespace detail

/// One draw from softmax(scores): torch.multinomial(softmax(scores), 1). A token scored −inf is
/// never drawn; a row with no finite score is refused.
inline index_t sample_token(std::span<const float> scores, Rng& rng) {
    std::vector<double> w;
    const double total = detail::softmax_weights(scores, w);
    if (!(total > 0) || !std::isfinite(total))
        throw ArgumentError("generate: sampling from a row whose scores are all -inf or not finite");
    return detail::pick(w, total, rng.uniform());
}

/// k distinct draws from softmax(scores), each from what the earlier draws left: torch.multinomial(
/// softmax(scores), k, replacement=False), as beam sampling draws its candidates. Fewer than k
/// tokens with nonzero probability is refused, as torch refuses it.
inline std::vector<index_t> sample_distinct(std::span<const float> scores, index_t k, Rng& rng) {
    std::vector<double> w;
    double total = detail::softmax_weights(scores, w);
    const auto available = std::count_if(w.begin(), w.end(), [](double x) { return x > 0; });
    if (!std::isfinite(total) || available < k)
        throw ArgumentError("generate: beam sampling needs " + std::to_string(k) + " candidates with nonzero probability, found " +
                            std::to_string(available));
    std::vector<index_t> out;
    out.reserve(static_cast<std::size_t>(k));
    for (index_t i = 0; i < k; ++i) {
        if (i > 0) {
            total = 0;  // the mass the earlier draws left, summed afresh rather than by subtraction
            for (double x : w) total += x;
        }
        const index_t t = detail::pick(w, total, rng.uniform());
        out.push_back(t);
        w[static_cast<std::size_t>(t)] = 0;
    }
    return out;
}

}  // namespace mmalign::generation
