// mmalign-blip2's evaluation commands: captions scored with BLEU, ROUGE-L and CIDEr-D as
// pycocoevalcap computes them and VQAv2 answers with the official accuracy (eval/,
// docs/evaluation.md), from a model folder or from a results file.
#include <mmalign/backend/cpu/backend.hpp>
#include <mmalign/eval/caption_metrics.hpp>
#include <mmalign/eval/result_files.hpp>
#include <mmalign/eval/vqa_accuracy.hpp>
#include <mmalign/io/atomic_file.hpp>
#include <mmalign/io/blip2_processor.hpp>
#include <mmalign/io/caption_annotations.hpp>
#include <mmalign/io/image.hpp>
#include <mmalign/io/json_fields.hpp>
#include <mmalign/models/blip2_generation.hpp>

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../common/model_folder.hpp"
#include "training_args.hpp"

namespace mmalign::blip2cli {
namespace {

using Be = CpuBackend<float>;

/// COCO results' image_id: the number where the id is one, else the text.
nlohmann::ordered_json id_json(const std::string& id) {
    long long v = 0;
    const auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), v);
    if (ec == std::errc() && end == id.data() + id.size()) return v;
    return id;
}

void write_json(const std::string& path, const std::string& text) {
    const std::string_view parts[] = {text, "\n"};
    io::write_file_atomic(path, parts, "results");
}

/// Generates for images (paths) with per-image prompts (or none), in batches.
std::vector<std::string> generate_all(Be& be, const Blip2ForConditionalGeneration<Be>& model, const io::Blip2Processor& proc,
                                      const std::vector<std::string>& paths, const std::vector<std::string>& prompts,
                                      const generation::GenerationConfig& options, long batch) {
    std::vector<std::string> out;
    for (std::size_t s = 0; s < paths.size(); s += std::size_t(batch)) {
        const std::size_t e = std::min(paths.size(), s + std::size_t(batch));
        std::vector<io::Image> imgs;
        for (std::size_t i = s; i < e; ++i) imgs.push_back(io::load_image(paths[i]));
        const Tensor<float> px = io::preprocess(imgs, proc.image_processor());  // [b, 3, S, S]
        generation::Generated g;
        if (prompts.empty()) {
            g = model.generate(be, px.view(), {}, options);
        } else {
            const io::Blip2Text t = proc.encode(std::vector<std::string>(prompts.begin() + long(s), prompts.begin() + long(e)));
            g = model.generate(be, px.view(), {t.ids, t.attention_mask, t.batch}, options);
        }
        for (index_t r = 0; r < g.rows; ++r) out.push_back(proc.tokenizer().decode(g.new_tokens(r), true));
        std::fprintf(stderr, "\rgenerated %zu/%zu", e, paths.size());
    }
    std::fprintf(stderr, "\n");
    return out;
}

/// The image file of a VQAv2 question: its "image" field, else --image-pattern with its image_id.
std::string vqa_image(const nlohmann::json& q, const std::string& pattern, const std::string& file, std::size_t index) {
    if (const auto it = q.find("image"); it != q.end() && it->is_string()) return it->get<std::string>();
    const auto id = q.find("image_id");
    if (id == q.end() || !id->is_number_integer())
        throw IoError(file + ": questions[" + std::to_string(index) + "]: needs an \"image\" path or an integer \"image_id\"");
    const std::string text = std::to_string(id->get<long long>());
    std::string out = pattern;
    if (auto p = out.find("{:012}"); p != std::string::npos)
        out.replace(p, 6, std::string(text.size() < 12 ? 12 - text.size() : 0, '0') + text);
    else if (auto q2 = out.find("{}"); q2 != std::string::npos)
        out.replace(q2, 2, text);
    return out;
}

}  // namespace

int eval_caption(const Args& a) {
    if (!a.results.empty()) {
        const eval::CaptionScores s = eval::score_caption_files(a.results, a.annotations);
        std::printf("%s\n", s.json().c_str());
        return 0;
    }
    cli::require(a.model, cli::architecture(a.model), "Blip2ForConditionalGeneration", "eval-caption");
    const generation::GenerationConfig options = a.gen.config();
    Be be({.threads = a.threads});
    const auto model = Blip2ForConditionalGeneration<Be>::from_pretrained(be, a.model);
    const io::Blip2Processor proc = io::Blip2Processor::from_folder(a.model);
    const io::CaptionAnnotations ann = io::CaptionAnnotations::read(a.data);
    std::vector<std::string> paths, prompts;
    for (const auto& r : ann.images) paths.push_back(join(a.image_root, r.image));
    if (a.has_prompt) prompts.assign(paths.size(), a.prompt);
    const std::vector<std::string> captions = generate_all(be, model, proc, paths, prompts, options, a.eval_batch);
    std::map<std::string, std::vector<std::string>> refs, cands;
    nlohmann::ordered_json results = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < ann.images.size(); ++i) {
        const auto& r = ann.images[i];
        // LAVIS's caption task keeps the text after the prompt; the new tokens are that already.
        refs[r.image_id] = r.captions;
        cands[r.image_id] = {captions[i]};
        results.push_back({{"image_id", id_json(r.image_id)}, {"caption", captions[i]}});
    }
    const eval::CaptionScores s = eval::score_captions(refs, cands);
    std::filesystem::create_directories(a.train.output_dir);
    write_json(join(a.train.output_dir, "caption_results.json"), results.dump());
    write_json(join(a.train.output_dir, "caption_scores.json"), s.json());
    std::printf("%s\n", s.json().c_str());
    return 0;
}

int eval_vqa(const Args& a) {
    if (!a.results.empty()) {
        const eval::VqaScores s = eval::score_vqa_files(a.results, a.questions, a.annotations);
        std::printf("%s\n", s.json().c_str());
        return 0;
    }
    cli::require(a.model, cli::architecture(a.model), "Blip2ForConditionalGeneration", "eval-vqa");
    const generation::GenerationConfig options = a.gen.config();
    const nlohmann::json qs = io::read_json_file(a.questions);
    const auto list = qs.is_object() ? qs.find("questions") : qs.end();
    if (list == qs.end() || !list->is_array())
        throw IoError(a.questions + ": expected {\"questions\": [...]} (VQAv2 questions)");
    std::vector<std::string> paths, prompts;
    std::vector<long long> ids;
    for (std::size_t i = 0; i < list->size(); ++i) {
        const auto& q = (*list)[i];
        const auto qid = q.is_object() ? q.find("question_id") : q.end();
        const auto text = q.is_object() ? q.find("question") : q.end();
        if (qid == q.end() || !qid->is_number_integer() || text == q.end() || !text->is_string())
            throw IoError(a.questions + ": questions[" + std::to_string(i) + "]: needs an integer question_id and a question string");
        ids.push_back(qid->get<long long>());
        paths.push_back(join(a.image_root, vqa_image(q, a.image_pattern, a.questions, i)));
        prompts.push_back(io::vqa_prompt(text->get<std::string>(), a.prompt_template));
    }
    Be be({.threads = a.threads});
    const auto model = Blip2ForConditionalGeneration<Be>::from_pretrained(be, a.model);
    const io::Blip2Processor proc = io::Blip2Processor::from_folder(a.model);
    const std::vector<std::string> answers = generate_all(be, model, proc, paths, prompts, options, a.eval_batch);
    nlohmann::ordered_json results = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < ids.size(); ++i) results.push_back({{"question_id", ids[i]}, {"answer", answers[i]}});
    std::filesystem::create_directories(a.train.output_dir);
    const std::string res = join(a.train.output_dir, "vqa_results.json");
    write_json(res, results.dump());
    const eval::VqaScores s = eval::score_vqa_files(res, a.questions, a.annotations);
    write_json(join(a.train.output_dir, "vqa_scores.json"), s.json());
    std::printf("%s\n", s.json().c_str());
    return 0;
}

}  // namespace mmalign::blip2cli
