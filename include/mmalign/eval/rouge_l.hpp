// mmalign/eval/rouge_l.hpp — ROUGE-L (Lin 2004) as pycocoevalcap's Rouge computes it
// (rouge/rouge.py): the longest common subsequence with each reference, the best precision and
// the best recall over the references (taken separately), F-measure with beta = 1.2, the mean over
// images. Sentences are split on " " there, so a caption with no tokens is one empty token
// (length 1, and it matches an empty reference).
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

namespace mmalign::eval {

/// Length of the longest common subsequence of a and b.
inline std::size_t lcs_length(const std::vector<std::string>& a, const std::vector<std::string>& b) {
    std::vector<std::size_t> prev(b.size() + 1, 0), cur(b.size() + 1, 0);
    for (std::size_t i = 1; i <= a.size(); ++i) {
        for (std::size_t j = 1; j <= b.size(); ++j)
            cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

/// The token list rouge.py sees: the tokens joined by " " and split on " ".
inline std::vector<std::string> rouge_tokens(const std::vector<std::string>& tokens) {
    return tokens.empty() ? std::vector<std::string>{std::string()} : tokens;
}

/// One image's ROUGE-L of a candidate against its references (PTB tokens).
inline double rouge_l(const std::vector<std::string>& candidate, const std::vector<std::vector<std::string>>& references) {
    constexpr double beta = 1.2;
    const std::vector<std::string> c = rouge_tokens(candidate);
    double prec_max = 0, rec_max = 0;
    for (const auto& reference : references) {
        const std::vector<std::string> r = rouge_tokens(reference);
        const double lcs = static_cast<double>(lcs_length(r, c));
        prec_max = std::max(prec_max, lcs / static_cast<double>(c.size()));
        rec_max = std::max(rec_max, lcs / static_cast<double>(r.size()));
    }
    if (prec_max == 0 || rec_max == 0) return 0.0;
    return ((1 + beta * beta) * prec_max * rec_max) / (rec_max + beta * beta * prec_max);
}

}  // namespace mmalign::eval
