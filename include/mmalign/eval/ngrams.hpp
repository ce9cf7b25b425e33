// mmalign/eval/ngrams.hpp — n-gram counts of a tokenized sentence, shared by BLEU and CIDEr-D
// (pycocoevalcap's precook in bleu_scorer.py and cider_scorer.py: every n-gram of length 1..n of
// the white-space-split sentence, with its count).
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace mmalign::eval {

/// An n-gram as its tokens joined by '\n' (no PTB token holds a line break), with its order n.
struct NgramKey {
    std::string text;
    std::size_t n = 0;
    auto operator<=>(const NgramKey&) const = default;
};

using NgramCounts = std::map<NgramKey, int>;

/// Counts of every n-gram of length 1..max_n of `tokens`.
inline NgramCounts count_ngrams(const std::vector<std::string>& tokens, std::size_t max_n = 4) {
    NgramCounts counts;
    for (std::size_t n = 1; n <= max_n; ++n) {
        for (std::size_t i = 0; i + n <= tokens.size(); ++i) {
            std::string key = tokens[i];
            for (std::size_t k = 1; k < n; ++k) key += '\n' + tokens[i + k];
            ++counts[NgramKey{std::move(key), n}];
        }
    }
    return counts;
}

}  // namespace mmalign::eval
