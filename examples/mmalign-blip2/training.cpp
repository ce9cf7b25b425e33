// mmalign-blip2's training commands and the parsing of the training and evaluation commands:
// BLIP-2's two pretraining stages and caption fine-tuning as LAVIS runs them (blip2_qformer.py,
// blip2_opt.py); evaluation.cpp holds the evaluations (docs/blip2_training.md).
//
//   pretrain-stage1  --model DIR --data ANN.json --image-root DIR --output-dir OUT [training options]
//   pretrain-stage2  --model STAGE1_DIR --language-model LM_DIR --data … --image-root … --output-dir OUT [--prompt TEXT]
//   finetune-caption --model DIR --data … --image-root … --output-dir OUT [--prompt TEXT] [--train-vit]
//   eval-caption     --model DIR --data ANN.json --image-root DIR --output-dir OUT [generation options] [--prompt TEXT]
//   eval-caption     --results RES.json --annotations ANN.json [--json]
//   eval-vqa         --model DIR --questions Q.json --annotations A.json --image-root DIR --output-dir OUT
//                    [--prompt-template "Question: {} Short answer:"] [--image-pattern P] [generation options]
//   eval-vqa         --results RES.json --questions Q.json --annotations A.json [--json]
#include <mmalign/backend/cpu/backend.hpp>
#include <mmalign/io/blip2_processor.hpp>
#include <mmalign/io/blip_image_processor.hpp>
#include <mmalign/io/caption_annotations.hpp>
#include <mmalign/io/gpt2_tokenizer.hpp>
#include <mmalign/io/image.hpp>
#include <mmalign/io/wordpiece_tokenizer.hpp>
#include <mmalign/models/blip2_folder.hpp>
#include <mmalign/models/blip2_generation.hpp>
#include <mmalign/models/blip2_generative_task.hpp>
#include <mmalign/models/blip2_qformer_pretraining.hpp>
#include <mmalign/models/blip2_stage1_task.hpp>
#include <mmalign/train/gradients.hpp>
#include <mmalign/train/image_text_loader.hpp>
#include <mmalign/train/trainer.hpp>

#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../common/cli_options.hpp"
#include "../common/json_output.hpp"
#include "../common/model_folder.hpp"
#include "../common/training_options.hpp"
#include "commands.hpp"
#include "training_args.hpp"

namespace mmalign::blip2cli {
namespace {

using Be = CpuBackend<float>;
using cli::OptionError;
using cli::UsageError;

const std::string kUsage = std::string(
    "usage:\n"
    "  mmalign-blip2 pretrain-stage1  --model DIR --data ANN.json --image-root DIR --output-dir OUT [options]\n"
    "  mmalign-blip2 pretrain-stage2  --model STAGE1_DIR --language-model LM_DIR --data ANN.json --image-root DIR\n"
    "                                 --output-dir OUT [--prompt TEXT] [options]\n"
    "  mmalign-blip2 finetune-caption --model DIR --data ANN.json --image-root DIR --output-dir OUT [--prompt TEXT]\n"
    "                                 [--train-vit] [options]\n"
    "  mmalign-blip2 eval-caption     --model DIR --data ANN.json --image-root DIR --output-dir OUT [--prompt TEXT]\n"
    "                                 [generation options] [--per-device-eval-batch-size N]\n"
    "  mmalign-blip2 eval-caption     --results RES.json --annotations ANN.json [--json]\n"
    "  mmalign-blip2 eval-vqa         --model DIR --questions Q.json --annotations A.json --image-root DIR\n"
    "                                 --output-dir OUT [--prompt-template T] [--image-pattern P] [generation options]\n"
    "  mmalign-blip2 eval-vqa         --results RES.json --questions Q.json --annotations A.json [--json]\n"
    "folders:\n"
    "  pretrain-stage1   --model: a BLIP-2 folder whose config.json has use_qformer_text_input true, holding at\n"
    "                    least vision_model.* (frozen), the Q-Former's WordPiece tokenizer with a [DEC] bos_token\n"
    "                    and preprocessor_config.json; parameters it lacks are initialised (seeded). Writes\n"
    "                    Blip2ForImageTextRetrieval folders (+ LAVIS's ITG head cls.predictions.* and temp).\n"
    "  pretrain-stage2   --model: a stage-1 folder (vision_model.*, query_tokens, qformer.* are read);\n"
    "                    --language-model: an OPTForCausalLM folder with its tokenizer (frozen). Writes\n"
    "                    Blip2ForConditionalGeneration folders; language_projection is initialised.\n"
    "  finetune-caption  --model: a Blip2ForConditionalGeneration folder; the ViT trains with --train-vit.\n"
    "data: a coco_karpathy annotation list ({\"image\", \"caption\": text or [texts], \"image_id\"}), images\n"
    "  under --image-root; every (image, caption) pair is a sample.\n"
    "data options:\n"
    "  --max-txt-len N     text tokens per caption (LAVIS max_txt_len), default 32\n"
    "  --workers N         image decoding threads ahead of the step, default 2\n"
    "  --threads T         CPU threads for the model (default: OMP_NUM_THREADS, else every core)\n"
    "  --precision fp32    the only precision these commands train in so far\n") +
    cli::training_options_help +
    "evaluation options:\n"
    "  --per-device-eval-batch-size N   images per generate call, default 8\n"
    "  --prompt-template T              eval-vqa, default \"Question: {} Short answer:\"\n"
    "  --image-pattern P                eval-vqa: the image of a question without an \"image\" field,\n"
    "                                   {} = its image_id, {:012} zero-padded; default COCO_val2014_{:012}.jpg\n"
    "  --json                           print the scores as JSON (pycocoevalcap's / the VQA evaluation's keys)\n"
    "generation options (eval-caption, eval-vqa):\n" +
    cli::generation_options_help;

Args parse(int argc, char** argv) {
    Args a;
    a.command = argv[1];
    for (int i = 2; i < argc; ++i) {
        const std::string f = cli::dashed(argv[i]);
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw UsageError(f + " needs a value");
            return argv[++i];
        };
        if (f == "--model") a.model = value();
        else if (f == "--language-model") a.language_model = value();
        else if (f == "--data") a.data = value();
        else if (f == "--image-root") a.image_root = value();
        else if (f == "--results") a.results = value();
        else if (f == "--questions") a.questions = value();
        else if (f == "--annotations") a.annotations = value();
        else if (f == "--prompt") a.prompt = value(), a.has_prompt = true;
        else if (f == "--prompt-template") a.prompt_template = value();
        else if (f == "--image-pattern") a.image_pattern = value();
        else if (f == "--train-vit") a.train_vit = true;
        else if (f == "--json") a.json = true;
        else if (f == "--max-txt-len") a.max_txt_len = long(cli::integer(f, value(), 2, 4096));
        else if (f == "--per-device-eval-batch-size") a.eval_batch = long(cli::integer(f, value(), 1, 1 << 16));
        else if (f == "--workers") a.workers = int(cli::integer(f, value(), 1, 256));
        else if (f == "--threads") a.threads = int(cli::integer(f, value(), 1, 4096));
        else if (f == "--precision") {
            const std::string p = value();
            if (p != "fp32") throw OptionError("--precision: these commands train in fp32 only so far, found \"" + p + "\"");
        } else if (!cli::take_training_option(a.train, f, value) && !a.gen.take(f, value))
            throw UsageError("unknown option \"" + f + "\"");
    }
    const bool trains = a.command.rfind("pretrain", 0) == 0 || a.command == "finetune-caption";
    const bool scores_file = !a.results.empty();
    auto need = [&](const std::string& v, const char* flag) {
        if (v.empty()) throw UsageError(a.command + " needs " + flag);
    };
    if (trains) {
        need(a.model, "--model DIR");
        need(a.data, "--data ANN.json");
        need(a.image_root, "--image-root DIR");
        need(a.train.output_dir, "--output-dir OUT");
        if (a.command == "pretrain-stage2") need(a.language_model, "--language-model LM_DIR");
        if (a.gen.any()) throw UsageError("generation options apply to eval-caption and eval-vqa");
        if (const std::string p = a.train.problem(); !p.empty()) throw OptionError(p);
    } else if (scores_file) {
        need(a.annotations, "--annotations");
        if (a.command == "eval-vqa") need(a.questions, "--questions Q.json");
        if (!a.model.empty()) throw UsageError("--results scores a results file: no --model");
    } else {
        need(a.model, "--model DIR (or --results RES.json)");
        need(a.image_root, "--image-root DIR");
        need(a.train.output_dir, "--output-dir OUT");
        if (a.command == "eval-caption") need(a.data, "--data ANN.json");
        else need(a.questions, "--questions Q.json"), need(a.annotations, "--annotations A.json");
    }
    if (a.command != "pretrain-stage2" && !a.language_model.empty()) throw UsageError("--language-model is a pretrain-stage2 option");
    if (a.command != "finetune-caption" && a.train_vit) throw UsageError("--train-vit is a finetune-caption option");
    if (a.prompt_template.find("{}") == std::string::npos)
        throw OptionError("--prompt-template expects a text with {} where the question goes, found \"" + a.prompt_template + "\"");
    a.gen.check_usage();
    return a;
}

/// Refuses a folder that is not a BLIP-2 one (by config.json's model_type) before its config's
/// defaults — a full-size ViT-g for a missing vision_config — are allocated; with `architecture`
/// also the model class it must hold.
void require_blip2(const std::string& dir, const std::string& flag, const std::string& architecture = "") {
    const std::string path = join(dir, "config.json");
    const nlohmann::json j = io::read_json_file(path);
    const auto type = j.is_object() ? j.find("model_type") : j.end();
    if (type == j.end() || *type != "blip-2")
        throw IoError(path + ".model_type: " + flag + " expects a BLIP-2 folder (\"blip-2\"), found " +
                      (type == j.end() ? std::string("nothing") : type->dump()));
    if (!architecture.empty()) cli::require(dir, cli::architecture(dir), architecture, flag);
}

/// The loader of a training command: pairs of the annotation file, transformed as BLIP-2's train
/// processor does with the model's image size, mean and std.
ImageTextLoader make_loader(const io::CaptionAnnotations& ann, const Args& a, const std::string& processor_dir,
                            index_t image_size) {
    const io::BlipImageProcessorConfig p = io::load_blip_image_processor_config(io::blip_image_processor_config_path(processor_dir));
    ImageTextLoaderConfig c;
    c.image_root = a.image_root;
    c.batch_size = a.train.per_device_train_batch_size;
    c.seed = a.train.seed;
    c.workers = a.workers;
    c.transform.image_size = image_size;
    for (int i = 0; i < 3; ++i) c.transform.mean[i] = float(p.image_mean[i]), c.transform.std[i] = float(p.image_std[i]);
    return ImageTextLoader(ann, c);
}

/// Micro-batch i of the run from a loader asked in order (seek only when the order jumps: resume).
struct LoaderAt {
    ImageTextLoader& loader;
    long expected = -1;
    ImageTextBatch operator()(long i) {
        if (i != expected) loader.seek(i);
        expected = i + 1;
        return loader.next();
    }
};

void report(const TrainSummary& s, const std::string& out) {
    std::printf("trained steps %ld..%ld in %.1f s, last loss %.4f; model in %s\n", s.start_step, s.steps, s.seconds,
                s.last_loss, out.c_str());
}

int pretrain_stage1(const Args& a) {
    require_blip2(a.model, "pretrain-stage1 --model");
    Be be({.threads = a.threads});
    auto model = Blip2QFormerPretraining<Be>::from_pretrained(be, a.model, a.train.seed);
    freeze(model, "vision_model.*");
    const auto tok = io::WordPieceTokenizer::from_hf_folder(a.model);
    const auto dec = tok.bos_id();
    if (!dec) throw IoError(a.model + ": the Q-Former tokenizer has no bos_token ([DEC] in LAVIS) for image-grounded text generation");
    const io::CaptionAnnotations ann = io::CaptionAnnotations::read(a.data);
    ImageTextLoader loader = make_loader(ann, a, a.model, model.config.vision.image_size);
    Blip2Stage1Task<Be> task(model, {.dec_token_id = *dec, .pad_token_id = tok.pad_id(), .seed = a.train.seed});
    const io::WordPieceTokenizer::Options topt{.padding = io::WordPieceTokenizer::Options::Padding::max_length,
                                               .truncate = true, .max_length = a.max_txt_len};
    struct Held {
        ImageTextBatch images;
        io::WordPieceTokenizer::Batch text;
        Blip2Stage1Task<Be>::Batch batch;
    };
    LoaderAt at{loader};
    const index_t S = model.config.vision.image_size;
    auto data = [&](long i) {
        Held h;
        h.images = at(i);
        h.text = tok(h.images.captions, topt);
        h.batch.pixels = ConstView<float>(h.images.pixels.data(), Shape{h.images.size, 3, S, S});
        h.batch.ids = {h.text.input_ids.data(), static_cast<std::size_t>(h.text.input_ids.numel())};
        h.batch.attention_mask = {h.text.attention_mask.data(), static_cast<std::size_t>(h.text.attention_mask.numel())};
        return h;
    };
    auto save = [&](const std::string& dir) {
        save_blip2_folder(be, model, model.config, "Blip2ForImageTextRetrieval", dir);
        copy_hf_assets(a.model, dir);
    };
    auto describe = [](const Blip2Stage1Task<Be>::Result& r) {
        return nlohmann::json{{"itc", r.itc}, {"itm", r.itm}, {"itg", r.itg}, {"itc_accuracy", r.itc_accuracy},
                              {"itm_accuracy", r.itm_accuracy}};
    };
    Trainer<Be> trainer(a.train, loader.batches_per_epoch());
    report(trainer.run(be, task, data, save, describe, "stage 1"), a.train.output_dir);
    return 0;
}

/// The image token of a stage-2 folder: the tokenizer's "<image>" where it has one (prompts then
/// carry the Q tokens, as Blip2Processor writes them), else the first id past the tokenizer that
/// the language model's vocabulary still holds (captioning from the image alone works in
/// transformers; prompts there need the token in the tokenizer).
std::int64_t image_token_for(const io::Gpt2Tokenizer& tok, const OptDecoder<Be>::Config& lm, const std::string& lm_dir) {
    if (const auto id = tok.find("<image>")) return *id;
    if (tok.vocab_size() >= lm.vocab_size)
        throw IoError(lm_dir + "/config.json: vocab_size " + std::to_string(lm.vocab_size) +
                      " leaves no id for BLIP-2's image token past the tokenizer's " + std::to_string(tok.vocab_size()));
    return tok.vocab_size();
}

/// Stage 2 starts from a stage-1 folder and a language model folder.
Blip2Model<Be> stage2_model(Be& be, const Args& a) {
    require_blip2(a.model, "pretrain-stage2 --model");
    Blip2Config<Be> c = Blip2Config<Be>::from_folder(a.model);
    c.qformer.text = false;  // Blip2ForConditionalGeneration's Q-Former reads no text
    const io::HfConfig lm = io::load_hf_config(join(a.language_model, "config.json"));
    if (const auto t = lm.json.find("model_type"); t == lm.json.end() || *t != "opt")
        throw IoError(lm.where + ": model_type: expected \"opt\" (an OPTForCausalLM folder)");
    io::read_hf_fields(c.text, lm);
    c.image_token_index = image_token_for(io::Gpt2Tokenizer::from_folder(a.language_model), c.text, a.language_model);
    const io::Checkpoint stage1 = io::Checkpoint::open(a.model);
    Blip2VisionQueries<Be>::adapt_to(c, stage1);
    Blip2Model<Be> m(c);
    io::load_mapped(be, m.vision_queries, stage1, io::hf_tensor_map(m.vision_queries), "", {.allow_unexpected = true});
    const io::Checkpoint lm_file = io::Checkpoint::open(a.language_model);
    io::load_mapped(be, m.language_model, lm_file, io::hf_tensor_map(m.language_model));
    // transformers' _init_weights for nn.Linear: N(0, initializer_range 0.02), bias 0.
    init_normal(m.language_projection, static_cast<unsigned>(a.train.seed), 0.02);
    return m;
}

/// Stage 2 and caption fine-tuning: the generative objective through the frozen language model.
int generative(const Args& a) {
    const bool stage2 = a.command == "pretrain-stage2";
    if (!stage2) require_blip2(a.model, "finetune-caption --model", "Blip2ForConditionalGeneration");
    Be be({.threads = a.threads});
    Blip2Model<Be> model = stage2 ? stage2_model(be, a) : Blip2Model<Be>::from_pretrained(be, a.model);
    const std::string lm_dir = stage2 ? a.language_model : a.model;
    freeze(model, "language_model.*");
    if (!a.train_vit) freeze(model, "vision_model.*");
    const auto tok = io::Gpt2Tokenizer::from_folder(lm_dir);
    // LAVIS blip2_opt.py: the prompt's tokens (with the bos) are not targets.
    const index_t prompt_length = a.has_prompt ? index_t(tok.encode(a.prompt).size()) : 0;
    const io::CaptionAnnotations ann = io::CaptionAnnotations::read(a.data);
    ImageTextLoader loader = make_loader(ann, a, a.model, model.config.vision.image_size);
    Blip2GenerativeTask<Be> task(model, {.train_vision = a.train_vit});
    struct Held {
        ImageTextBatch images;
        std::vector<std::int32_t> ids, mask, labels;
        Blip2GenerativeTask<Be>::Batch batch;
    };
    LoaderAt at{loader};
    const index_t S = model.config.vision.image_size;
    const std::int32_t pad = tok.pad_id_if_any().value_or(std::int32_t(model.config.text.pad_token_id));
    auto data = [&](long i) {
        Held h;
        h.images = at(i);
        // LAVIS: prompt + caption + "\n", the tokenizer's </s> first, right padding to the longest, max_txt_len.
        std::vector<std::vector<std::int32_t>> rows;
        std::size_t T = 0;
        for (const auto& c : h.images.captions) {
            auto r = tok.encode((a.has_prompt ? a.prompt : std::string()) + c + "\n");
            if (r.size() > std::size_t(a.max_txt_len)) r.resize(std::size_t(a.max_txt_len));
            T = std::max(T, r.size());
            rows.push_back(std::move(r));
        }
        for (const auto& r : rows) {
            h.ids.insert(h.ids.end(), r.begin(), r.end());
            h.ids.insert(h.ids.end(), T - r.size(), pad);
            h.mask.insert(h.mask.end(), r.size(), 1);
            h.mask.insert(h.mask.end(), T - r.size(), 0);
        }
        const Blip2Tokens text{h.ids, h.mask, h.images.size};
        h.labels = blip2_caption_labels(text, prompt_length);
        h.batch.pixels = ConstView<float>(h.images.pixels.data(), Shape{h.images.size, 3, S, S});
        h.batch.text = text;
        h.batch.labels = h.labels;
        return h;
    };
    auto save = [&](const std::string& dir) {
        save_blip2_folder(be, model, model.config, "Blip2ForConditionalGeneration", dir);
        copy_hf_assets(lm_dir, dir, {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                                     "vocab.json", "merges.txt"});
        copy_hf_assets(a.model, dir, {"preprocessor_config.json"});
        // Blip2Processor puts num_query_tokens <image> tokens before a prompt where the tokenizer has the token.
        if (io::Gpt2Tokenizer::from_folder(lm_dir).find("<image>")) {
            const std::string text = nlohmann::json{{"processor_class", "Blip2Processor"},
                                                    {"num_query_tokens", model.config.num_query_tokens}}.dump(2) + "\n";
            const std::string_view parts[] = {text};
            io::write_file_atomic(join(dir, "processor_config.json"), parts, "processor config");
        }
    };
    auto describe = [](const Blip2GenerativeTask<Be>::Result& r) {
        return nlohmann::json{{"tokens", r.tokens}, {"accuracy", r.accuracy}};
    };
    Trainer<Be> trainer(a.train, loader.batches_per_epoch());
    report(trainer.run(be, task, data, save, describe, stage2 ? "stage 2" : "caption"), a.train.output_dir);
    return 0;
}

}  // namespace

bool is_training_command(const std::string& c) {
    return c == "pretrain-stage1" || c == "pretrain-stage2" || c == "finetune-caption" || c == "eval-caption" ||
           c == "eval-vqa";
}

int training_main(int argc, char** argv) {
    return cli::run_main("mmalign-blip2", kUsage.c_str(), [&] {
        const Args a = parse(argc, argv);
        if (a.command == "pretrain-stage1") return pretrain_stage1(a);
        if (a.command == "pretrain-stage2" || a.command == "finetune-caption") return generative(a);
        if (a.command == "eval-caption") return eval_caption(a);
        return eval_vqa(a);
    });
}

}  // namespace mmalign::blip2cli
