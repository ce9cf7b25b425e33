// mmalign-blip — BLIP from a Hugging Face folder on the command line: image-text matching,
// captioning, visual question answering and a benchmark.
//
//   mmalign-blip itm     --model DIR --image PATH --text STRING [--text STRING]... [--json]
//   mmalign-blip caption --model DIR --image PATH [--image PATH]... [--prompt TEXT] [generation options] [--json]
//   mmalign-blip vqa     --model DIR --image PATH [--image PATH]... --question TEXT [--question TEXT]...
//                        [generation options] [--json]
//   mmalign-blip bench   --model DIR --task caption|vqa|itm|vision --batch B --iters N [generation options]
//
// DIR is a folder as transformers' save_pretrained writes it (config.json, model.safetensors or
// model.safetensors.index.json and its shards, vocab.txt and/or tokenizer.json, tokenizer_config.json,
// special_tokens_map.json, preprocessor_config.json); `--help` lists which files each command reads.
// config.json's `architectures` names the model class, and each command needs its own:
// BlipForImageTextRetrieval (itm), BlipForConditionalGeneration (caption), BlipForQuestionAnswering (vqa).
// The JSON outputs follow transformers (modeling_blip.py) fed by BlipProcessor with the Pillow image path:
//   itm --json      {"itm_scores": [...], "itc_scores": [...]}  softmax(ITM logits)[:, 1] and the
//                   use_itm_head=False cosine of the image against each text (texts padded together);
//   caption --json  {"captions": [...], "ids": [[...]]}         generate()'s rows and their decode;
//   vqa --json      {"answers": [...], "ids": [[...]]}.
// Generation defaults are transformers' GenerationConfig defaults, because BLIP's generate runs its
// text decoder with the decoder's own generation config, built from the model class and never from the
// folder's generation_config.json (transformers 5); --generation-config FILE applies such a file.
// Bad input (a file, a field, an option's value) exits 1 with one line on stderr; bad usage exits 2.
#include <mmalign/backend/cpu/backend.hpp>
#include <mmalign/io/blip_image_processor.hpp>
#include <mmalign/io/image.hpp>
#include <mmalign/io/wordpiece_tokenizer.hpp>
#include <mmalign/models/blip_captioning.hpp>
#include <mmalign/models/blip_retrieval.hpp>
#include <mmalign/models/blip_vqa.hpp>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "../common/bench.hpp"
#include "../common/cli_options.hpp"
#include "../common/json_output.hpp"
#include "../common/model_folder.hpp"
#include "../common/token_rows.hpp"

using namespace mmalign;
using Be = CpuBackend<float>;
using cli::architecture;
using cli::require;
using cli::UsageError;

namespace {

const std::string kUsage = std::string(
    "usage:\n"
    "  mmalign-blip itm     --model DIR --image PATH --text STRING [--text STRING]... [--json] [--threads T]\n"
    "  mmalign-blip caption --model DIR --image PATH [--image PATH]... [--prompt TEXT]\n"
    "                       [generation options] [--json] [--threads T]\n"
    "  mmalign-blip vqa     --model DIR --image PATH [--image PATH]... --question TEXT [--question TEXT]...\n"
    "                       [generation options] [--json] [--threads T]\n"
    "  mmalign-blip bench   --model DIR --task caption|vqa|itm|vision --batch B --iters N\n"
    "                       [generation options] [--threads T]\n"
    "model class each command needs (config.json \"architectures\"):\n"
    "  itm       BlipForImageTextRetrieval\n"
    "  caption   BlipForConditionalGeneration\n"
    "  vqa       BlipForQuestionAnswering\n"
    "  bench     that of its --task (vision: any of the three)\n"
    "files read from DIR:\n"
    "  every command       config.json, model.safetensors (or model.safetensors.index.json + shards)\n"
    "  itm, caption, vqa   + preprocessor_config.json (or processor_config.json), tokenizer.json or vocab.txt,\n"
    "                        tokenizer_config.json, special_tokens_map.json, added_tokens.json (those present)\n"
    "  bench               nothing more (random pixels and ids)\n"
    "inputs:\n"
    "  itm      one image against every --text (texts padded together, as BlipProcessor(padding=True))\n"
    "  caption  one caption per --image, all images in one batch; --prompt starts every caption\n"
    "  vqa      one --question for every image, or one --question per --image (in order, padded together)\n"
    "generation options (caption, vqa, bench --task caption|vqa) and their defaults: transformers'\n"
    "GenerationConfig defaults, as BLIP's generate uses them (transformers does not read the folder's\n"
    "generation_config.json there, so neither does mmalign-blip; the end token is [SEP]):\n") +
    cli::generation_options_help +
    "  Generation ends at [SEP] (text_config.sep_token_id); rows that end early are filled with\n"
    "  text_config.pad_token_id, or in beam search with [SEP] when that id is 0 (transformers' fill).\n"
    "other options:\n"
    "  --json       print the command's JSON object: itm_scores/itc_scores, captions/ids or answers/ids\n"
    "  --threads T  CPU threads (default: OMP_NUM_THREADS, else every core)\n"
    "  --batch B    bench: B images (itm: one image against B texts of 16 tokens; vqa: questions of 12)\n"
    "  --iters N    bench: N timed runs after one warm-up run\n";

using Args = cli::Args;

Args parse(int argc, char** argv) {
    Args a;
    cli::parse_command_line(argc, argv, kUsage.c_str(), {"itm", "caption", "vqa", "bench"}, a,
                            [](const std::string&, auto&&) { return false; });
    const bool generates = a.command == "caption" || a.command == "vqa" ||
                           (a.command == "bench" && (a.task == "caption" || a.task == "vqa"));
    if (a.gen.any() && !generates)
        throw UsageError("generation options apply to caption, vqa and bench --task caption|vqa");
    if (a.command != "bench" && !a.task.empty()) throw UsageError("--task is a bench option");
    if (a.command != "caption" && a.has_prompt) throw UsageError("--prompt is a caption option");
    if (a.command != "itm" && !a.texts.empty()) throw UsageError("--text is an itm option");
    if (a.command != "vqa" && !a.questions.empty()) throw UsageError("--question is a vqa option");
    if (a.command == "itm" && (a.images.size() != 1 || a.texts.empty()))
        throw UsageError("itm needs one --image and at least one --text");
    if ((a.command == "caption" || a.command == "vqa") && a.images.empty())
        throw UsageError(a.command + " needs --image");
    if (a.command == "vqa" && a.questions.size() != 1 && a.questions.size() != a.images.size())
        throw UsageError("vqa needs one --question, or one per --image (found " + std::to_string(a.questions.size()) +
                         " for " + std::to_string(a.images.size()) + " images)");
    if (a.command == "bench") {
        if (!a.images.empty()) throw UsageError("bench runs on random pixels: no --image");
        if (a.task != "caption" && a.task != "vqa" && a.task != "itm" && a.task != "vision")
            throw UsageError("bench needs --task caption, vqa, itm or vision");
    }
    return a;
}

/// The tokenizer and the image processor, loaded on first use, and the generation settings.
struct Inputs {
    std::string dir;
    index_t max_positions = 0;  // text_config.max_position_embeddings: texts are cut to it
    std::optional<io::WordPieceTokenizer> loaded_tokenizer;
    std::optional<io::BlipImageProcessorConfig> loaded_processor;

    Inputs(std::string d, index_t positions) : dir(std::move(d)), max_positions(positions) {}

    const io::WordPieceTokenizer& tokenizer() {
        if (!loaded_tokenizer) loaded_tokenizer.emplace(io::WordPieceTokenizer::from_hf_folder(dir));
        return *loaded_tokenizer;
    }
    /// pixel_values [N, 3, S, S] of the images, in order (BlipImageProcessorPil), configured by
    /// preprocessor_config.json or, without it, transformers 5's processor_config.json.
    Tensor<float> pixels(const std::vector<std::string>& paths) {
        if (!loaded_processor)
            loaded_processor = io::load_blip_image_processor_config(io::blip_image_processor_config_path(dir));
        std::vector<io::Image> imgs;
        for (const auto& p : paths) imgs.push_back(io::load_image(p));
        return io::preprocess(imgs, *loaded_processor);
    }
    /// BlipProcessor(text=texts, padding=True): [CLS] … [SEP] rows padded to the longest. Rows longer than
    /// the model's positions are cut to them (transformers' model would raise).
    io::WordPieceTokenizer::Batch tokens(const std::vector<std::string>& texts) {
        return tokenizer()(texts, {.padding = io::WordPieceTokenizer::Options::Padding::longest, .truncate = true,
                                   .max_length = max_positions});
    }
    std::vector<std::string> decode(const generation::Generated& g) {
        std::vector<std::string> out;
        for (index_t r = 0; r < g.rows; ++r) out.push_back(tokenizer().decode(g.row(r), true));
        return out;
    }
};

/// Tokens of `rows` copies of one batch row (a prompt or question given once for every image).
struct RepeatedTokens {
    std::vector<std::int32_t> ids, mask;
    RepeatedTokens(const io::WordPieceTokenizer::Batch& b, index_t rows) {
        const auto n = static_cast<std::size_t>(b.input_ids.numel());
        for (index_t r = 0; r < rows; ++r) {
            ids.insert(ids.end(), b.input_ids.data(), b.input_ids.data() + n);
            mask.insert(mask.end(), b.attention_mask.data(), b.attention_mask.data() + n);
        }
    }
};

int itm(const Args& a) {
    require(a.model, architecture(a.model), "BlipForImageTextRetrieval", "itm");
    Be be({.threads = a.threads});
    const auto model = BlipForImageTextRetrieval<Be>::from_pretrained(be, a.model);
    Inputs in(a.model, model.config.text.bert.max_positions);
    const Tensor<float> px = in.pixels(a.images);  // [1, 3, S, S]
    const auto t = in.tokens(a.texts);
    const auto texts = cli::token_rows<typename BlipForImageTextRetrieval<Be>::Texts>(t);
    const auto emb = model.image_embeds(be, px.view());  // [1, N+1, Dv]
    cli::print_match_scores(a.json, model.itm_logits(be, emb.view(), texts),  // [n, 2]
                            model.itc_scores(be, emb.view(), texts), a.texts);  // [1, n]
    return 0;
}

int caption(const Args& a) {
    require(a.model, architecture(a.model), "BlipForConditionalGeneration", "caption");
    const generation::GenerationConfig options = a.gen.config();
    Be be({.threads = a.threads});
    const auto model = BlipForConditionalGeneration<Be>::from_pretrained(be, a.model);
    Inputs in(a.model, model.config.text.bert.max_positions);
    const Tensor<float> px = in.pixels(a.images);  // [B, 3, S, S]
    const index_t B = px.dim(0);
    generation::Generated g;
    if (a.has_prompt) {  // tokenized once, the same prompt for every image
        const RepeatedTokens prompt(in.tokens({a.prompt}), B);
        g = model.generate(be, px.view(), {prompt.ids, prompt.mask, B}, options);
    } else {
        g = model.generate(be, px.view(), {}, options);
    }
    cli::print_generated(a.json, "captions", in.decode(g), cli::id_rows(g, false), a.images);
    return 0;
}

int vqa(const Args& a) {
    require(a.model, architecture(a.model), "BlipForQuestionAnswering", "vqa");
    const generation::GenerationConfig options = a.gen.config();
    Be be({.threads = a.threads});
    const auto model = BlipForQuestionAnswering<Be>::from_pretrained(be, a.model);
    Inputs in(a.model, model.config.text.bert.max_positions);
    const Tensor<float> px = in.pixels(a.images);  // [B, 3, S, S]
    const index_t B = px.dim(0);
    std::vector<std::string> questions = a.questions;
    if (questions.size() == 1) questions.assign(std::size_t(B), a.questions[0]);
    const auto q = in.tokens(questions);  // padded together, as BlipProcessor(text=questions, padding=True)
    const auto g = model.generate(be, px.view(),
                                  {{q.input_ids.data(), std::size_t(q.input_ids.numel())},
                                   {q.attention_mask.data(), std::size_t(q.attention_mask.numel())}, B},
                                  options);
    cli::print_generated(a.json, "answers", in.decode(g), cli::id_rows(g, false), a.images, questions);
    return 0;
}

int bench(const Args& a) {
    const std::string held = architecture(a.model);
    const index_t B = a.batch;
    cli::RandomInputs rnd;
    Be be({.threads = a.threads});
    const generation::GenerationConfig options =
        a.task == "caption" || a.task == "vqa" ? a.gen.config() : generation::GenerationConfig{};
    if (a.task == "vision") {
        auto run = [&](const auto& model) {
            const Tensor<float> px = rnd.pixels(B, model.config.vision);
            const auto& v = model.config.vision;
            Tensor<float> out(Shape{B, v.tokens(), v.hidden});  // [B, N+1, Dv]
            const double s = cli::time_runs(a.iters, [&] { model.vision_model.forward(be, px.view(), out.view(), {}); });
            std::printf("vision batch=%ld images_per_s=%.3f\n", a.batch, double(B * a.iters) / s);
        };
        if (held == "BlipForImageTextRetrieval") {
            run(BlipForImageTextRetrieval<Be>::from_pretrained(be, a.model));
        } else if (held == "BlipForQuestionAnswering") {
            run(BlipForQuestionAnswering<Be>::from_pretrained(be, a.model));
        } else {
            require(a.model, held, "BlipForConditionalGeneration", "bench --task vision (or another BLIP task class)");
            run(BlipForConditionalGeneration<Be>::from_pretrained(be, a.model));
        }
    } else if (a.task == "itm") {  // one image against B texts of 16 tokens
        require(a.model, held, "BlipForImageTextRetrieval", "bench --task itm");
        const auto model = BlipForImageTextRetrieval<Be>::from_pretrained(be, a.model);
        const Tensor<float> px = rnd.pixels(1, model.config.vision);
        const index_t T = std::min<index_t>(16, model.config.text.bert.max_positions);
        const auto ids = rnd.ids(B, T, model.config.text.bert.vocab_size);
        const std::vector<std::int32_t> mask(ids.size(), 1);
        const double s = cli::time_runs(a.iters, [&] {
            const auto emb = model.image_embeds(be, px.view());
            (void)model.itm_logits(be, emb.view(), {ids, mask, B});
        });
        std::printf("itm images=1 texts=%ld texts_per_s=%.2f\n", a.batch, double(B * a.iters) / s);
    } else if (a.task == "caption") {
        require(a.model, held, "BlipForConditionalGeneration", "bench --task caption");
        const auto model = BlipForConditionalGeneration<Be>::from_pretrained(be, a.model);
        const Tensor<float> px = rnd.pixels(B, model.config.vision);
        cli::GeneratedTokens counted;
        const double s =
            cli::time_runs(a.iters, [&] { counted.add(model.generate(be, px.view(), {}, options), model.config.text.sep_token_id); });
        cli::print_generation_rate("caption", a.batch, options.num_beams, a.iters, s, counted.timed);
    } else {  // vqa: B images, each with a random question of 12 tokens
        require(a.model, held, "BlipForQuestionAnswering", "bench --task vqa");
        const auto model = BlipForQuestionAnswering<Be>::from_pretrained(be, a.model);
        const Tensor<float> px = rnd.pixels(B, model.config.vision);
        const index_t T = std::min<index_t>(12, model.config.text.bert.max_positions);
        const auto ids = rnd.ids(B, T, model.config.text.bert.vocab_size);
        const std::vector<std::int32_t> mask(ids.size(), 1);
        cli::GeneratedTokens counted;
        const double s = cli::time_runs(
            a.iters, [&] { counted.add(model.generate(be, px.view(), {ids, mask, B}, options), model.config.text.sep_token_id); });
        cli::print_generation_rate("vqa", a.batch, options.num_beams, a.iters, s, counted.timed);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return cli::run_main("mmalign-blip", kUsage.c_str(), [&] {
        const Args a = parse(argc, argv);
        if (a.command == "itm") return itm(a);
        if (a.command == "caption") return caption(a);
        if (a.command == "vqa") return vqa(a);
        return bench(a);
    });
}
