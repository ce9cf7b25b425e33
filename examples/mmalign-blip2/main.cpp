// mmalign-blip2 — BLIP-2 (OPT) from a Hugging Face folder on the command line: Q-Former features,
// captioning, visual question answering, image-text matching and a benchmark.
//
//   mmalign-blip2 features --model DIR --image PATH [--image PATH]... [--json]
//   mmalign-blip2 caption  --model DIR --image PATH [--image PATH]... [--prompt TEXT] [generation options] [--json]
//   mmalign-blip2 vqa      --model DIR --image PATH [--image PATH]... --question TEXT [--question TEXT]...
//                          [--prompt-template "Question: {} Answer:"] [generation options] [--json]
//   mmalign-blip2 itm      --model DIR --image PATH --text STRING [--text STRING]... [--json]
//   mmalign-blip2 bench    --model DIR --task features|caption --batch B --iters N [generation options]
//
// DIR is a folder as transformers' save_pretrained writes it (config.json, model.safetensors or
// model.safetensors.index.json and its shards, the tokenizer files, processor_config.json and/or
// preprocessor_config.json); `--help` lists which files each command reads. config.json's
// `architectures` names the model class, and each command needs its own. The JSON outputs follow
// transformers (modeling_blip_2.py) fed by Blip2Processor with the Pillow image path:
//   features --json  {"image_embeds_shape": [B, N, D], "qformer_output": [[[...]]]}: the vision
//                    model's last_hidden_state shape and Blip2Model.get_qformer_features(pixel_values);
//   caption --json   {"captions": [...], "ids": [[...]]}: generate(**processor(images, text))'s rows
//                    after the prompt (the new tokens) and their decode with skip_special_tokens;
//   vqa --json       {"answers": [...], "ids": [[...]]}, the prompt being the template with the question;
//   itm --json       {"itm_scores": [...], "itc_scores": [...]}: Blip2ForImageTextRetrieval with
//                    use_image_text_matching_head=True (softmax of the logits, "match" column) and
//                    False (the largest cosine over the query embeddings).
// Generation defaults are transformers' GenerationConfig defaults with the language model's eos and
// pad ids: Blip2ForConditionalGeneration.generate runs its language model's generate, whose
// generation config is built from text_config and never from the folder's generation_config.json
// (transformers 5); --generation-config FILE applies such a file.
// Bad input (a file, a field, an option's value) exits 1 with one line on stderr; bad usage exits 2.
#include <mmalign/backend/cpu/backend.hpp>
#include <mmalign/io/blip2_processor.hpp>
#include <mmalign/io/blip_image_processor.hpp>
#include <mmalign/io/image.hpp>
#include <mmalign/io/wordpiece_tokenizer.hpp>
#include <mmalign/models/blip2_generation.hpp>
#include <mmalign/models/blip2_model.hpp>
#include <mmalign/models/blip2_retrieval.hpp>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../common/bench.hpp"
#include "../common/cli_options.hpp"
#include "../common/json_output.hpp"
#include "../common/model_folder.hpp"
#include "../common/token_rows.hpp"
#include "commands.hpp"

using namespace mmalign;
using Be = CpuBackend<float>;
using cli::architecture;
using cli::require;
using cli::UsageError;

namespace {

const char* const kGeneration = "Blip2ForConditionalGeneration";
const char* const kModel = "Blip2Model";
const char* const kRetrieval = "Blip2ForImageTextRetrieval";
/// Both hold get_qformer_features' parts (transformers' keys are the same).
const std::vector<std::string> kFeatureClasses{kModel, kGeneration};

const std::string kUsage = std::string(
    "usage:\n"
    "  mmalign-blip2 features --model DIR --image PATH [--image PATH]... [--json] [--threads T]\n"
    "  mmalign-blip2 caption  --model DIR --image PATH [--image PATH]... [--prompt TEXT]\n"
    "                         [generation options] [--json] [--threads T]\n"
    "  mmalign-blip2 vqa      --model DIR --image PATH [--image PATH]... --question TEXT [--question TEXT]...\n"
    "                         [--prompt-template \"Question: {} Answer:\"] [generation options] [--json] [--threads T]\n"
    "  mmalign-blip2 itm      --model DIR --image PATH --text STRING [--text STRING]... [--json] [--threads T]\n"
    "  mmalign-blip2 bench    --model DIR --task features|caption --batch B --iters N\n"
    "                         [generation options] [--threads T]\n"
    "  mmalign-blip2 predict  the caption command under PaddleMIX's name\n"
    "  mmalign-blip2 pretrain-stage1|pretrain-stage2|finetune-caption|eval-caption|eval-vqa --help\n"
    "                         training and evaluation\n"
    "model class each command needs (config.json \"architectures\"):\n"
    "  features        Blip2Model or Blip2ForConditionalGeneration\n"
    "  caption, vqa    Blip2ForConditionalGeneration (an OPT language model)\n"
    "  itm             Blip2ForImageTextRetrieval\n"
    "  bench           that of its --task\n"
    "files read from DIR:\n"
    "  every command   config.json, model.safetensors (or model.safetensors.index.json + shards)\n"
    "  features        + preprocessor_config.json (or processor_config.json's \"image_processor\")\n"
    "  caption, vqa    + the same, processor_config.json's num_query_tokens (absent: no <image> tokens),\n"
    "                    tokenizer.json or vocab.json + merges.txt, tokenizer_config.json,\n"
    "                    special_tokens_map.json, added_tokens.json (those present)\n"
    "  itm             + the image processor's file, tokenizer.json or vocab.txt (BERT WordPiece),\n"
    "                    tokenizer_config.json, special_tokens_map.json, added_tokens.json (those present)\n"
    "  bench           nothing more (random pixels)\n"
    "inputs:\n"
    "  features  the Q-Former's output for every --image, all images in one batch\n"
    "  caption   one caption per --image, all images in one batch; --prompt (e.g. \"a photo of\") starts\n"
    "            every caption, as Blip2Processor(images, text=prompt) gives it: <image> x Q, </s>, prompt\n"
    "  vqa       one --question for every image, or one --question per --image (in order, padded together\n"
    "            on the tokenizer's padding_side); the prompt is the template with {} replaced by the\n"
    "            question (LAVIS's zero-shot VQAv2 template: \"Question: {} Short answer:\")\n"
    "  itm       one image against every --text (texts padded together, as Blip2Processor(padding=True))\n"
    "generation options (caption, vqa, bench --task caption) and their defaults: transformers'\n"
    "GenerationConfig defaults, as BLIP-2's generate uses them (its language model's generation config\n"
    "comes from text_config; transformers does not read the folder's generation_config.json there, so\n"
    "neither does mmalign-blip2; the end token is text_config.eos_token_id):\n") +
    cli::generation_options_help +
    "  Generation ends at text_config.eos_token_id (\"\\n\" = 50118 in Salesforce's OPT folders); rows that\n"
    "  end early are filled with text_config.pad_token_id.\n"
    "  The JSON ids and texts are the new tokens only (each row after its prompt, <image> tokens included).\n"
    "other options:\n"
    "  --json       print the command's JSON object: image_embeds_shape/qformer_output,\n"
    "               captions/ids, answers/ids or itm_scores/itc_scores\n"
    "  --threads T  CPU threads (default: OMP_NUM_THREADS, else every core)\n"
    "  --batch B    bench: B random images\n"
    "  --iters N    bench: N timed runs after one warm-up run\n";

struct Args : cli::Args {
    std::string prompt_template{io::blip2_vqa_template};
    bool has_template = false;
};

Args parse(int argc, char** argv) {
    Args a;
    cli::parse_command_line(argc, argv, kUsage.c_str(), {"features", "caption", "vqa", "itm", "bench", "predict"}, a,
                            [&](const std::string& f, auto&& value) {
                                if (f != "--prompt-template") return false;
                                a.prompt_template = value(), a.has_template = true;
                                return true;
                            });
    if (a.command == "predict") a.command = "caption";  // PaddleMIX's name for it
    const bool generates = a.command == "caption" || a.command == "vqa" || (a.command == "bench" && a.task == "caption");
    if (a.gen.any() && !generates)
        throw UsageError("generation options apply to caption, vqa and bench --task caption");
    if (a.command != "bench" && !a.task.empty()) throw UsageError("--task is a bench option");
    if (a.command != "caption" && a.has_prompt) throw UsageError("--prompt is a caption option");
    if (a.command != "vqa" && a.has_template) throw UsageError("--prompt-template is a vqa option");
    if (a.command != "itm" && !a.texts.empty()) throw UsageError("--text is an itm option");
    if (a.command != "vqa" && !a.questions.empty()) throw UsageError("--question is a vqa option");
    if (a.command == "itm" && (a.images.size() != 1 || a.texts.empty()))
        throw UsageError("itm needs one --image and at least one --text");
    if ((a.command == "features" || a.command == "caption" || a.command == "vqa") && a.images.empty())
        throw UsageError(a.command + " needs --image");
    if (a.command == "vqa" && a.questions.size() != 1 && a.questions.size() != a.images.size())
        throw UsageError("vqa needs one --question, or one per --image (found " + std::to_string(a.questions.size()) +
                         " for " + std::to_string(a.images.size()) + " images)");
    if (a.has_template && a.prompt_template.find("{}") == std::string::npos)
        throw cli::OptionError("--prompt-template expects a text with {} where the question goes, found \"" +
                               a.prompt_template + "\"");
    if (a.command == "bench") {
        if (!a.images.empty()) throw UsageError("bench runs on random pixels: no --image");
        if (a.task != "features" && a.task != "caption") throw UsageError("bench needs --task features or caption");
    }
    return a;
}

/// pixel_values [N, 3, S, S] of the images, in order (BlipImageProcessorPil, as Blip2Processor
/// runs it), configured by preprocessor_config.json or processor_config.json's "image_processor".
Tensor<float> pixels(const io::BlipImageProcessorConfig& config, const std::vector<std::string>& paths) {
    std::vector<io::Image> imgs;
    for (const auto& p : paths) imgs.push_back(io::load_image(p));
    return io::preprocess(imgs, config);
}
Tensor<float> pixels(const std::string& dir, const std::vector<std::string>& paths) {
    return pixels(io::load_blip_image_processor_config(io::blip_image_processor_config_path(dir)), paths);
}

int features(const Args& a) {
    require(a.model, architecture(a.model), kFeatureClasses, "features");
    Be be({.threads = a.threads});
    const auto model = Blip2Model<Be>::from_pretrained(be, a.model);
    const Tensor<float> px = pixels(a.model, a.images);              // [B, 3, S, S]
    const auto img = model.get_image_features(be, px.view());       // [B, N+1, Dv]
    const auto q = model.vision_queries.query_output(be, img.view());  // [B, Q, Dq]
    const std::vector<index_t> shape{img.dim(0), img.dim(1), img.dim(2)};
    if (a.json) {
        nlohmann::ordered_json rows = nlohmann::ordered_json::array();
        for (index_t b = 0; b < q.dim(0); ++b) {
            nlohmann::ordered_json queries = nlohmann::ordered_json::array();
            for (index_t i = 0; i < q.dim(1); ++i) {
                std::vector<double> row(static_cast<std::size_t>(q.dim(2)));
                for (index_t d = 0; d < q.dim(2); ++d) row[static_cast<std::size_t>(d)] = q(b, i, d);
                queries.push_back(row);
            }
            rows.push_back(queries);
        }
        cli::print_json({{"image_embeds_shape", shape}, {"qformer_output", rows}});
        return 0;
    }
    std::printf("image_embeds %s, qformer_output %s\n", img.shape().str().c_str(), q.shape().str().c_str());
    for (index_t b = 0; b < q.dim(0); ++b) {
        std::printf("%s: query 0", a.images[static_cast<std::size_t>(b)].c_str());
        for (index_t d = 0; d < std::min<index_t>(q.dim(2), 6); ++d) std::printf(" %+.5f", q(b, 0, d));
        std::printf("%s\n", q.dim(2) > 6 ? " …" : "");
    }
    return 0;
}

/// Each row's new tokens decoded as transformers' batch_decode(..., skip_special_tokens=True).
std::vector<std::string> decode_new(const io::Gpt2Tokenizer& tok, const generation::Generated& g) {
    std::vector<std::string> out;
    for (index_t r = 0; r < g.rows; ++r) out.push_back(tok.decode(g.new_tokens(r), true));
    return out;
}

/// generate(**processor(images, text=prompts, padding=True), **options); no prompts: images alone.
generation::Generated generate(Be& be, const Blip2ForConditionalGeneration<Be>& model, const io::Blip2Processor& proc,
                               const Tensor<float>& px, const std::vector<std::string>& prompts,
                               const generation::GenerationConfig& options) {
    if (prompts.empty()) return model.generate(be, px.view(), {}, options);
    const io::Blip2Text t = proc.encode(prompts);
    return model.generate(be, px.view(), {t.ids, t.attention_mask, t.batch}, options);
}

int caption_or_vqa(const Args& a) {
    const bool vqa = a.command == "vqa";
    require(a.model, architecture(a.model), kGeneration, a.command);
    const generation::GenerationConfig options = a.gen.config();
    Be be({.threads = a.threads});
    const auto model = Blip2ForConditionalGeneration<Be>::from_pretrained(be, a.model);
    const io::Blip2Processor proc = io::Blip2Processor::from_folder(a.model);
    const Tensor<float> px = pixels(proc.image_processor(), a.images);  // [B, 3, S, S]
    const auto B = static_cast<std::size_t>(px.dim(0));
    std::vector<std::string> prompts, questions;
    if (vqa) {
        questions = a.questions.size() == 1 ? std::vector<std::string>(B, a.questions[0]) : a.questions;
        for (const auto& q : questions) prompts.push_back(io::vqa_prompt(q, a.prompt_template));
    } else if (a.has_prompt) {
        prompts.assign(B, a.prompt);
    }
    const generation::Generated g = generate(be, model, proc, px, prompts, options);
    cli::print_generated(a.json, vqa ? "answers" : "captions", decode_new(proc.tokenizer(), g), cli::id_rows(g, true),
                         a.images, questions);
    return 0;
}

int itm(const Args& a) {
    require(a.model, architecture(a.model), kRetrieval, "itm");
    Be be({.threads = a.threads});
    const auto model = Blip2ForImageTextRetrieval<Be>::from_pretrained(be, a.model);
    const Tensor<float> px = pixels(a.model, a.images);  // [1, 3, S, S]
    // Blip2Processor(text=texts, padding=True) without the <image> tokens, which the model drops
    // (input_ids[:, num_query_tokens:]); rows past the Q-Former's positions are cut (HF would raise).
    const auto tok = io::WordPieceTokenizer::from_hf_folder(a.model);
    const auto t = tok(a.texts, {.padding = io::WordPieceTokenizer::Options::Padding::longest, .truncate = true,
                                 .max_length = model.config.qformer.max_positions});
    const auto texts = cli::token_rows<Blip2Tokens>(t);
    const auto emb = model.image_embeds(be, px.view());  // [1, N+1, Dv]
    cli::print_match_scores(a.json, model.itm_logits(be, emb.view(), texts),  // [n, 2]
                            model.itc_scores(be, emb.view(), texts), a.texts);  // [1, n]
    return 0;
}

int bench(const Args& a) {
    const std::string held = architecture(a.model);
    const index_t B = a.batch;
    cli::RandomInputs rnd;
    Be be({.threads = a.threads});
    if (a.task == "features") {
        require(a.model, held, kFeatureClasses, "bench --task features");
        const auto model = Blip2Model<Be>::from_pretrained(be, a.model);
        const Tensor<float> px = rnd.pixels(B, model.config.vision);  // [B, 3, S, S]
        const double s = cli::time_runs(a.iters, [&] { (void)model.get_qformer_features(be, px.view()); });
        std::printf("features batch=%ld images_per_s=%.3f\n", a.batch, double(B * a.iters) / s);
        return 0;
    }
    require(a.model, held, kGeneration, "bench --task caption");
    const generation::GenerationConfig options = a.gen.config();
    const auto model = Blip2ForConditionalGeneration<Be>::from_pretrained(be, a.model);
    const Tensor<float> px = rnd.pixels(B, model.config().vision);  // [B, 3, S, S]
    cli::GeneratedTokens counted;
    const double s = cli::time_runs(
        a.iters, [&] { counted.add(model.generate(be, px.view(), {}, options), model.config().text.eos_token_id); });
    cli::print_generation_rate("caption", a.batch, options.num_beams, a.iters, s, counted.timed);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc >= 2 && blip2cli::is_training_command(argv[1])) return blip2cli::training_main(argc, argv);
    return cli::run_main("mmalign-blip2", kUsage.c_str(), [&] {
        const Args a = parse(argc, argv);
        if (a.command == "features") return features(a);
        if (a.command == "caption" || a.command == "vqa") return caption_or_vqa(a);
        if (a.command == "itm") return itm(a);
        return bench(a);
    });
}
