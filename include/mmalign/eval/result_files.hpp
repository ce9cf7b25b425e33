// mmalign/eval/result_files.hpp — scoring results files the way the reference evaluations read
// them. Every error is one IoError line naming the file and the entry/field at fault.
//
// Captions (pycocotools COCO.loadRes + pycocoevalcap COCOEvalCap.evaluate):
//   results      [{"image_id", "caption"}, …]
//   annotations  COCO format {"annotations": [{"image_id", "caption"}, …], "images"?: [{"id"}, …]}
//                or a coco_karpathy list (io/caption_annotations.hpp reads it).
//   Image ids are compared as text (an integer id printed as an integer). Every annotated image
//   (and every image listed in "images") is evaluated, so each needs exactly one result: a result
//   for an image not in the annotations (loadRes's assertion), an image without a result or with
//   two (COCOEvalCap's len(hypo) == 1 assertion), and an image without references are errors.
// VQA (GT-Vision-Lab/VQA vqaTools/vqa.py VQA + loadRes, vqaEvaluation/vqaEval.py):
//   questions    {"questions": [{"question_id", "image_id", "question"}, …]}
//   annotations  {"annotations": [{"question_id", "question_type", "answer_type", "answers": [{"answer", …}]}, …]}
//   results      [{"question_id", "answer"}, …]
//   The set of result question ids must equal the annotations' (loadRes's assertion): a result for
//   an unknown question and a question without a result are errors. A question answered twice
//   takes the later answer, as the official index does; a question annotated twice is an error
//   (the official code would score the later entry twice). Questions are scored in annotation order.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mmalign/core/error.hpp"
#include "mmalign/eval/caption_metrics.hpp"
#include "mmalign/eval/vqa_accuracy.hpp"
#include "mmalign/io/caption_annotations.hpp"
#include "mmalign/io/detail/tokenizer_files.hpp"

namespace mmalign::eval {

/// The largest results/annotation/question file read (VQAv2 val annotations are about 300 MB).
inline constexpr std::uintmax_t max_eval_file_bytes = std::uintmax_t(1) << 30;

namespace detail {

inline constexpr std::string_view eval_who = "evaluation";

[[noreturn]] inline void eval_fail(const std::string& path, const std::string& what) {
    io::detail::tokenizer_file_fail(eval_who, path, what);
}

inline nlohmann::json read_eval_json(const std::string& path) {
    const std::string text = io::detail::read_tokenizer_file(path, eval_who, max_eval_file_bytes);
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        eval_fail(path, "not valid JSON: " + io::json_error_text(e.what()));
    }
}

/// entry[key], which must exist; `at` is "entry 3" for messages.
inline const nlohmann::json& eval_field(const std::string& path, const nlohmann::json& entry, const char* key,
                                        const std::string& at) {
    if (!entry.is_object()) eval_fail(path, at + ": expected an object, found " + io::detail::json_value_kind(entry));
    const auto it = entry.find(key);
    if (it == entry.end()) eval_fail(path, at + ": missing the field \"" + key + "\"");
    return *it;
}

inline std::string eval_string(const std::string& path, const nlohmann::json& entry, const char* key, const std::string& at) {
    const nlohmann::json& v = eval_field(path, entry, key, at);
    if (!v.is_string()) eval_fail(path, at + ": \"" + key + "\": expected a string, found " + io::detail::json_value_kind(v));
    return v.get<std::string>();
}

/// An id as text: a string as is, an integer printed as an integer.
inline std::string eval_id(const std::string& path, const nlohmann::json& entry, const char* key, const std::string& at) {
    const nlohmann::json& v = eval_field(path, entry, key, at);
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number_integer()) return v.dump();
    eval_fail(path, at + ": \"" + key + "\": expected an integer or a string, found " + io::detail::json_value_kind(v));
}

inline const nlohmann::json& eval_array(const std::string& path, const nlohmann::json& doc, const char* key) {
    if (key == nullptr) {
        if (!doc.is_array()) eval_fail(path, "expected a JSON array at the top, found " + io::detail::json_value_kind(doc));
        return doc;
    }
    if (!doc.is_object()) eval_fail(path, "expected a JSON object at the top, found " + io::detail::json_value_kind(doc));
    const auto it = doc.find(key);
    if (it == doc.end()) eval_fail(path, std::string("missing the field \"") + key + "\"");
    if (!it->is_array()) eval_fail(path, std::string("\"") + key + "\": expected an array, found " + io::detail::json_value_kind(*it));
    return *it;
}

}  // namespace detail

/// Reference captions per image id from a COCO-format or coco_karpathy annotation file.
inline std::map<std::string, std::vector<std::string>> read_caption_references(const std::string& path) {
    const nlohmann::json doc = detail::read_eval_json(path);
    std::map<std::string, std::vector<std::string>> refs;
    if (doc.is_array()) {
        for (const io::CaptionRecord& r : io::CaptionAnnotations::parse(doc.dump(), path).images) {
            auto& v = refs[r.image_id];
            v.insert(v.end(), r.captions.begin(), r.captions.end());
        }
        return refs;
    }
    const nlohmann::json& anns = detail::eval_array(path, doc, "annotations");
    for (std::size_t e = 0; e < anns.size(); ++e) {
        const std::string at = "annotations[" + std::to_string(e) + "]";
        refs[detail::eval_id(path, anns[e], "image_id", at)].push_back(detail::eval_string(path, anns[e], "caption", at));
    }
    if (const auto images = doc.find("images"); images != doc.end()) {
        const nlohmann::json& list = detail::eval_array(path, doc, "images");
        for (std::size_t e = 0; e < list.size(); ++e) {
            const std::string id = detail::eval_id(path, list[e], "id", "images[" + std::to_string(e) + "]");
            if (!refs.count(id)) detail::eval_fail(path, "images[" + std::to_string(e) + "]: image " + id + " has no caption");
        }
    }
    if (refs.empty()) detail::eval_fail(path, "no annotated image");
    return refs;
}

/// Candidate captions per image id from a COCO caption results file.
inline std::map<std::string, std::vector<std::string>> read_caption_results(const std::string& path) {
    const nlohmann::json doc = detail::read_eval_json(path);
    const nlohmann::json& list = detail::eval_array(path, doc, nullptr);
    std::map<std::string, std::vector<std::string>> out;
    for (std::size_t e = 0; e < list.size(); ++e) {
        const std::string at = "entry " + std::to_string(e);
        out[detail::eval_id(path, list[e], "image_id", at)].push_back(detail::eval_string(path, list[e], "caption", at));
    }
    return out;
}

/// Corpus and per-image scores of a results file against an annotation file.
inline CaptionEvaluation evaluate_caption_files(const std::string& results_path, const std::string& annotations_path) {
    const auto refs = read_caption_references(annotations_path);
    const auto cands = read_caption_results(results_path);
    for (const auto& [id, c] : cands) {
        if (!refs.count(id))
            detail::eval_fail(results_path, "a result for image " + id + ", which " + annotations_path + " does not annotate");
        if (c.size() != 1)
            detail::eval_fail(results_path, std::to_string(c.size()) + " results for image " + id + ", expected one");
    }
    for (const auto& entry : refs)
        if (!cands.count(entry.first)) detail::eval_fail(results_path, "no result for image " + entry.first);
    return evaluate_captions(refs, cands);
}

inline CaptionScores score_caption_files(const std::string& results_path, const std::string& annotations_path) {
    return evaluate_caption_files(results_path, annotations_path).overall;
}

/// The official VQA accuracy table of a results file.
inline VqaScores score_vqa_files(const std::string& results_path, const std::string& questions_path,
                                 const std::string& annotations_path) {
    const nlohmann::json qdoc = detail::read_eval_json(questions_path);
    const nlohmann::json& qlist = detail::eval_array(questions_path, qdoc, "questions");
    for (std::size_t e = 0; e < qlist.size(); ++e)
        (void)detail::eval_id(questions_path, qlist[e], "question_id", "questions[" + std::to_string(e) + "]");

    const nlohmann::json adoc = detail::read_eval_json(annotations_path);
    const nlohmann::json& alist = detail::eval_array(annotations_path, adoc, "annotations");
    std::vector<std::string> order;
    std::map<std::string, VqaQuestionAnswers> qa;
    for (std::size_t e = 0; e < alist.size(); ++e) {
        const std::string at = "annotations[" + std::to_string(e) + "]";
        const std::string id = detail::eval_id(annotations_path, alist[e], "question_id", at);
        VqaQuestionAnswers q;
        q.question_type = detail::eval_string(annotations_path, alist[e], "question_type", at);
        q.answer_type = detail::eval_string(annotations_path, alist[e], "answer_type", at);
        const nlohmann::json& answers = detail::eval_field(annotations_path, alist[e], "answers", at);
        if (!answers.is_array() || answers.empty())
            detail::eval_fail(annotations_path, at + ": \"answers\": expected a non-empty array, found " +
                                                    io::detail::json_value_kind(answers));
        for (std::size_t k = 0; k < answers.size(); ++k) {
            (void)detail::eval_string(annotations_path, answers[k], "answer", at + ".answers[" + std::to_string(k) + "]");
            q.answers.push_back(answers[k]);
        }
        if (qa.count(id)) detail::eval_fail(annotations_path, at + ": question " + id + " is annotated twice");
        order.push_back(id);
        qa[id] = std::move(q);
    }
    if (order.empty()) detail::eval_fail(annotations_path, "no annotated question");

    const nlohmann::json rdoc = detail::read_eval_json(results_path);
    const nlohmann::json& rlist = detail::eval_array(results_path, rdoc, nullptr);
    std::map<std::string, std::string> answer_of;
    for (std::size_t e = 0; e < rlist.size(); ++e) {
        const std::string at = "entry " + std::to_string(e);
        const std::string id = detail::eval_id(results_path, rlist[e], "question_id", at);
        if (!qa.count(id))
            detail::eval_fail(results_path, at + ": question " + id + " is not in " + annotations_path);
        answer_of[id] = detail::eval_string(results_path, rlist[e], "answer", at);
    }
    std::vector<VqaQuestionAnswers> questions;
    std::vector<std::string> predictions;
    for (const std::string& id : order) {
        const auto it = answer_of.find(id);
        if (it == answer_of.end()) detail::eval_fail(results_path, "no result for question " + id);
        questions.push_back(qa[id]);
        predictions.push_back(it->second);
    }
    return vqa_accuracy(questions, predictions);
}

}  // namespace mmalign::eval
