// mmalign/eval/caption_metrics.hpp — the COCO caption scores (BLEU-1..4, ROUGE-L, CIDEr-D) of
// candidate captions against references, as pycocoevalcap's COCOEvalCap.evaluate computes them:
// both sides PTB-tokenized (eval/ptb_tokenizer.hpp), then the scorers of eval/bleu.hpp,
// eval/rouge_l.hpp and eval/cider_d.hpp over the images, each image with one candidate.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mmalign/core/error.hpp"
#include "mmalign/eval/bleu.hpp"
#include "mmalign/eval/cider_d.hpp"
#include "mmalign/eval/ptb_tokenizer.hpp"
#include "mmalign/eval/rouge_l.hpp"

namespace mmalign::eval {

struct CaptionScores {
    double bleu[4] = {};
    double rouge_l = 0, cider = 0;

    /// {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"}: pycocoevalcap's key names.
    nlohmann::json to_json() const {
        return {{"Bleu_1", bleu[0]}, {"Bleu_2", bleu[1]}, {"Bleu_3", bleu[2]},
                {"Bleu_4", bleu[3]}, {"ROUGE_L", rouge_l}, {"CIDEr", cider}};
    }
    std::string json() const { return to_json().dump(); }
};

/// The corpus scores and each image's (pycocoevalcap's imgToEval).
struct CaptionEvaluation {
    CaptionScores overall;
    std::map<std::string, CaptionScores> per_image;
};

/// Scores every image of `references`; `candidates` must hold exactly one caption for each of
/// them and no other image (pycocoevalcap asserts the same). Raw captions, tokenized here.
inline CaptionEvaluation evaluate_captions(const std::map<std::string, std::vector<std::string>>& references,
                                           const std::map<std::string, std::vector<std::string>>& candidates) {
    if (references.empty()) throw ArgumentError("evaluate_captions: no reference images");
    std::vector<std::string> ids;
    std::vector<std::vector<std::string>> cand_tokens;
    std::vector<std::vector<std::vector<std::string>>> ref_tokens;
    for (const auto& [id, refs] : references) {
        const auto it = candidates.find(id);
        if (it == candidates.end()) throw ArgumentError("evaluate_captions: image " + id + " has no candidate caption");
        if (it->second.size() != 1)
            throw ArgumentError("evaluate_captions: image " + id + " has " + std::to_string(it->second.size()) +
                                " candidate captions, expected one");
        if (refs.empty()) throw ArgumentError("evaluate_captions: image " + id + " has no reference caption");
        ids.push_back(id);
        cand_tokens.push_back(ptb_tokenize(it->second.front()));
        ref_tokens.emplace_back();
        for (const std::string& r : refs) ref_tokens.back().push_back(ptb_tokenize(r));
    }
    for (const auto& entry : candidates)
        if (!references.count(entry.first))
            throw ArgumentError("evaluate_captions: image " + entry.first + " has a candidate but no references");

    CaptionEvaluation out;
    BleuStats total;
    double rouge_sum = 0, cider_sum = 0;
    const std::vector<double> cider = cider_d(cand_tokens, ref_tokens);
    for (std::size_t i = 0; i < ids.size(); ++i) {
        CaptionScores& s = out.per_image[ids[i]];
        const BleuStats st = bleu_stats(cand_tokens[i], ref_tokens[i]);
        const auto b = bleu_from_stats(st);
        for (std::size_t k = 0; k < 4; ++k) s.bleu[k] = b[k];
        total += st;
        s.rouge_l = rouge_l(cand_tokens[i], ref_tokens[i]);
        s.cider = cider[i];
        rouge_sum += s.rouge_l;
        cider_sum += s.cider;
    }
    const auto b = bleu_from_stats(total);
    for (std::size_t k = 0; k < 4; ++k) out.overall.bleu[k] = b[k];
    out.overall.rouge_l = rouge_sum / static_cast<double>(ids.size());
    out.overall.cider = cider_sum / static_cast<double>(ids.size());
    return out;
}

/// The corpus scores of evaluate_captions.
inline CaptionScores score_captions(const std::map<std::string, std::vector<std::string>>& references,
                                    const std::map<std::string, std::vector<std::string>>& candidates) {
    return evaluate_captions(references, candidates).overall;
}

}  // namespace mmalign::eval
