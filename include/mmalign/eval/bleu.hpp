// mmalign/eval/bleu.hpp — BLEU-1..4 (Papineni et al. 2002) as pycocoevalcap's Bleu(4) computes it
// (bleu/bleu_scorer.py): clipped n-gram matches against the per-n-gram maximum count over the
// references, the "closest" reference length (ties to the shorter), corpus BLEU from the summed
// matches and lengths, and the 1e-15 / 1e-9 smoothing constants it adds to numerators and
// denominators. Per-image scores are its bleu_list: the same formula on one image.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <string>
#include <vector>

#include "mmalign/eval/ngrams.hpp"

namespace mmalign::eval {

/// One image's BLEU statistics: n-gram matches and guesses per order, candidate and
/// effective reference length.
struct BleuStats {
    std::array<double, 4> correct{}, guess{};
    double test_len = 0, ref_len = 0;
};

/// pycocoevalcap's cook_refs + cook_test with eff="closest".
inline BleuStats bleu_stats(const std::vector<std::string>& candidate,
                            const std::vector<std::vector<std::string>>& references) {
    NgramCounts max_ref;
    BleuStats st;
    const long test_len = static_cast<long>(candidate.size());
    long best_len = -1;
    for (const auto& ref : references) {
        for (const auto& [g, c] : count_ngrams(ref)) max_ref[g] = std::max(max_ref[g], c);
        const long l = static_cast<long>(ref.size());
        // min((abs(l - testlen), l)): the closest length, the shorter one on a tie.
        if (best_len < 0 || std::labs(l - test_len) < std::labs(best_len - test_len) ||
            (std::labs(l - test_len) == std::labs(best_len - test_len) && l < best_len))
            best_len = l;
    }
    st.test_len = static_cast<double>(test_len);
    st.ref_len = static_cast<double>(best_len);
    for (std::size_t k = 0; k < 4; ++k) st.guess[k] = static_cast<double>(std::max(0L, test_len - static_cast<long>(k)));
    for (const auto& [g, c] : count_ngrams(candidate)) {
        const auto it = max_ref.find(g);
        st.correct[g.n - 1] += std::min(it == max_ref.end() ? 0 : it->second, c);
    }
    return st;
}

/// BLEU-1..4 of summed statistics (one image's, or the corpus's).
inline std::array<double, 4> bleu_from_stats(const BleuStats& st) {
    constexpr double small = 1e-9, tiny = 1e-15;
    std::array<double, 4> out{};
    double product = 1.0;
    for (std::size_t k = 0; k < 4; ++k) {
        product *= (st.correct[k] + tiny) / (st.guess[k] + small);
        out[k] = std::pow(product, 1.0 / static_cast<double>(k + 1));
    }
    const double ratio = (st.test_len + tiny) / (st.ref_len + small);
    if (ratio < 1)
        for (double& b : out) b *= std::exp(1 - 1 / ratio);
    return out;
}

inline BleuStats& operator+=(BleuStats& a, const BleuStats& b) {
    for (std::size_t k = 0; k < 4; ++k) {
        a.correct[k] += b.correct[k];
        a.guess[k] += b.guess[k];
    }
    a.test_len += b.test_len;
    a.ref_len += b.ref_len;
    return a;
}

}  // namespace mmalign::eval
