// mmalign/eval/cider_d.hpp — CIDEr-D (Vedantam et al. 2015, arXiv:1411.5726) as pycocoevalcap's
// Cider computes it (cider/cider_scorer.py): tf-idf vectors of 1..4-grams with document
// frequencies counted over the references of the evaluated images (one count per image),
// idf = log(#images) − log(max(1, df)); per order, the clipped cosine
// Σ min(hyp, ref)·ref / (|hyp|·|ref|) times the Gaussian length penalty exp(−δ²/2σ²), σ = 6;
// mean over orders, mean over references, ×10; the corpus score is the mean over images.
// As in that code, the "length" in δ is the number of bigrams (its counts2vec adds term
// frequencies where its 0-based order index is 1), not the number of words.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "mmalign/eval/ngrams.hpp"

namespace mmalign::eval {

/// Corpus CIDEr-D: per-image scores (same order as the input) for candidates[i] against references[i].
inline std::vector<double> cider_d(const std::vector<std::vector<std::string>>& candidates,
                                   const std::vector<std::vector<std::vector<std::string>>>& references,
                                   double sigma = 6.0) {
    std::vector<NgramCounts> hyp_counts;
    std::vector<std::vector<NgramCounts>> ref_counts(references.size());
    std::map<NgramKey, double> document_frequency;
    for (std::size_t i = 0; i < references.size(); ++i) {
        std::set<NgramKey> seen;
        for (const auto& r : references[i]) {
            ref_counts[i].push_back(count_ngrams(r));
            for (const auto& entry : ref_counts[i].back()) seen.insert(entry.first);
        }
        for (const NgramKey& g : seen) document_frequency[g] += 1;
        hyp_counts.push_back(count_ngrams(candidates[i]));
    }
    const double log_images = std::log(static_cast<double>(references.size()));

    struct Vec {
        std::array<std::map<NgramKey, double>, 4> w;
        std::array<double, 4> norm{};
        double length = 0;
    };
    auto to_vec = [&](const NgramCounts& counts) {
        Vec v;
        for (const auto& [g, tf] : counts) {
            const auto it = document_frequency.find(g);
            const double df = std::log(std::max(1.0, it == document_frequency.end() ? 0.0 : it->second));
            const double x = static_cast<double>(tf) * (log_images - df);
            v.w[g.n - 1][g] = x;
            v.norm[g.n - 1] += x * x;
            if (g.n == 2) v.length += tf;
        }
        for (double& n : v.norm) n = std::sqrt(n);
        return v;
    };

    std::vector<double> scores;
    for (std::size_t i = 0; i < references.size(); ++i) {
        const Vec hyp = to_vec(hyp_counts[i]);
        std::array<double, 4> score{};
        for (const NgramCounts& rc : ref_counts[i]) {
            const Vec ref = to_vec(rc);
            const double delta = hyp.length - ref.length;
            for (std::size_t n = 0; n < 4; ++n) {
                double val = 0;
                for (const auto& [g, h] : hyp.w[n]) {
                    const auto it = ref.w[n].find(g);
                    const double r = it == ref.w[n].end() ? 0.0 : it->second;
                    val += std::min(h, r) * r;
                }
                if (hyp.norm[n] != 0 && ref.norm[n] != 0) val /= hyp.norm[n] * ref.norm[n];
                val *= std::exp(-(delta * delta) / (2 * sigma * sigma));
                score[n] += val;
            }
        }
        const double mean = (score[0] + score[1] + score[2] + score[3]) / 4.0;
        scores.push_back(mean / static_cast<double>(ref_counts[i].size()) * 10.0);
    }
    return scores;
}

}  // namespace mmalign::eval
