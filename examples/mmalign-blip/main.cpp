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
#include <mmalign/generation/config_json.hpp>
#include <mmalign/io/blip_image_processor.hpp>
#include <mmalign/io/image.hpp>
#include <mmalign/io/json_fields.hpp>
#include <mmalign/io/wordpiece_tokenizer.hpp>
#include <mmalign/models/blip_captioning.hpp>
#include <mmalign/models/blip_retrieval.hpp>
#include <mmalign/models/blip_vqa.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

using namespace mmalign;
using Be = CpuBackend<float>;

namespace {

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
/// An option given a value it cannot take: bad input, one line, exit 1.
struct OptionError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

const char* const kUsage =
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
    "generation_config.json there, so neither does mmalign-blip):\n"
    "  --beams N                 num_beams; 1 is greedy search                            default 1\n"
    "  --max-new-tokens N        max_new_tokens                                           default 20, the row\n"
    "                            then capped at text_config.max_position_embeddings (prompt included)\n"
    "  --min-new-tokens N        min_new_tokens: [SEP] is suppressed until N are new      default 0\n"
    "  --repetition-penalty X    repetition_penalty; 1 is none                            default 1.0\n"
    "  --sample                  do_sample: multinomial sampling (beam sampling with --beams)  default off\n"
    "  --top-k K                 top_k, with --sample; 0 is no top-k filter               default 50\n"
    "  --top-p P                 top_p in (0, 1], with --sample                           default 1.0\n"
    "  --temperature T           temperature > 0, with --sample                           default 1.0\n"
    "  --seed S                  the sampler's seed (std::mt19937_64), with --sample      default 0\n"
    "  --generation-config FILE  start from a generation_config.json's fields (the options above win)\n"
    "  Fixed unless FILE sets them: length_penalty 1.0, early_stopping false, num_return_sequences 1.\n"
    "  Generation ends at [SEP] (text_config.sep_token_id); rows that end early are filled with\n"
    "  text_config.pad_token_id, or in beam search with [SEP] when that id is 0 (transformers' fill).\n"
    "other options:\n"
    "  --json       print the command's JSON object: itm_scores/itc_scores, captions/ids or answers/ids\n"
    "  --threads T  CPU threads (default: OMP_NUM_THREADS, else every core)\n"
    "  --batch B    bench: B images (itm: one image against B texts of 16 tokens; vqa: questions of 12)\n"
    "  --iters N    bench: N timed runs after one warm-up run\n";

/// The generation options given on the command line; unset ones keep the defaults.
struct GenerationFlags {
    std::optional<index_t> beams, max_new_tokens, min_new_tokens, top_k;
    std::optional<double> repetition_penalty, top_p, temperature;
    std::optional<std::uint64_t> seed;
    bool sample = false;
    std::string config_file;
    bool any() const {
        return beams || max_new_tokens || min_new_tokens || top_k || repetition_penalty || top_p || temperature ||
               seed || sample || !config_file.empty();
    }
};

struct Args {
    std::string command, model, prompt, task;
    bool has_prompt = false;
    std::vector<std::string> images, texts, questions;
    GenerationFlags gen;
    bool json = false;
    int threads = 0;
    long batch = 1, iters = 10;
};

/// A whole-number option value in [min, max].
long long integer(const std::string& flag, const std::string& v, long long min, long long max) {
    long long x = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
    if (ec != std::errc() || end != v.data() + v.size() || x < min || x > max)
        throw OptionError(flag + " expects an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
                          "], found \"" + v + "\"");
    return x;
}

/// A real option value; `ok` says whether it is in range, `range` says which range in the message.
template <class Ok>
double real(const std::string& flag, const std::string& v, Ok ok, const char* range) {
    double x = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
    if (ec != std::errc() || end != v.data() + v.size() || !std::isfinite(x) || !ok(x))
        throw OptionError(flag + " expects " + range + ", found \"" + v + "\"");
    return x;
}

Args parse(int argc, char** argv) {
    if (argc < 2) throw UsageError("missing command");
    Args a;
    a.command = argv[1];
    if (a.command == "--help" || a.command == "-h") {
        std::fputs(kUsage, stdout);
        std::exit(0);
    }
    if (a.command != "itm" && a.command != "caption" && a.command != "vqa" && a.command != "bench")
        throw UsageError("unknown command \"" + a.command + "\"");
    const auto positive = [](double x) { return x > 0; };
    const auto fraction = [](double x) { return x > 0 && x <= 1; };
    for (int i = 2; i < argc; ++i) {
        const std::string f = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw UsageError(f + " needs a value");
            return argv[++i];
        };
        GenerationFlags& g = a.gen;
        if (f == "--model") a.model = value();
        else if (f == "--image") a.images.push_back(value());
        else if (f == "--text") a.texts.push_back(value());
        else if (f == "--question") a.questions.push_back(value());
        else if (f == "--prompt") a.prompt = value(), a.has_prompt = true;
        else if (f == "--task") a.task = value();
        else if (f == "--json") a.json = true;
        else if (f == "--threads") a.threads = int(integer(f, value(), 1, 4096));
        else if (f == "--batch") a.batch = long(integer(f, value(), 1, 1 << 16));
        else if (f == "--iters") a.iters = long(integer(f, value(), 1, 1 << 20));
        else if (f == "--beams") g.beams = integer(f, value(), 1, 1024);
        else if (f == "--max-new-tokens") g.max_new_tokens = integer(f, value(), 1, io::max_config_size);
        else if (f == "--min-new-tokens") g.min_new_tokens = integer(f, value(), 0, io::max_config_size);
        else if (f == "--top-k") g.top_k = integer(f, value(), 0, io::max_config_size);
        else if (f == "--seed") g.seed = std::uint64_t(integer(f, value(), 0, (1LL << 62)));
        else if (f == "--repetition-penalty") g.repetition_penalty = real(f, value(), positive, "a positive number");
        else if (f == "--top-p") g.top_p = real(f, value(), fraction, "a number in (0, 1]");
        else if (f == "--temperature") g.temperature = real(f, value(), positive, "a positive number");
        else if (f == "--sample") g.sample = true;
        else if (f == "--generation-config") g.config_file = value();
        else throw UsageError("unknown option \"" + f + "\"");
    }
    if (a.model.empty()) throw UsageError("--model DIR is required");
    const bool generates = a.command == "caption" || a.command == "vqa" ||
                           (a.command == "bench" && (a.task == "caption" || a.task == "vqa"));
    if (a.gen.any() && !generates)
        throw UsageError("generation options apply to caption, vqa and bench --task caption|vqa");
    if (!a.gen.sample && a.gen.config_file.empty() && (a.gen.top_k || a.gen.top_p || a.gen.temperature || a.gen.seed))
        throw UsageError("--top-k, --top-p, --temperature and --seed need --sample");
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

/// The model class config.json names (`architectures`, as transformers' AutoModel reads it).
std::string architecture(const std::string& dir) {
    const std::string path = dir + "/config.json";
    const nlohmann::json j = io::read_json_file(path);
    if (!j.is_object()) throw IoError(path + ": expected a JSON object, found " + std::string(j.type_name()));
    const auto it = j.find("architectures");
    if (it == j.end() || !it->is_array() || it->size() != 1 || !(*it)[0].is_string())
        throw IoError(path + ".architectures: expected a list naming the model class, found " +
                      (it == j.end() ? std::string("nothing") : it->dump()));
    return (*it)[0].get<std::string>();
}

/// Throws unless the folder holds `needed` (one line: what it holds, what the command needs).
void require(const std::string& dir, const std::string& held, const std::string& needed, const std::string& command) {
    if (held != needed)
        throw IoError(dir + "/config.json.architectures: the folder holds " + held + "; " + command + " needs " +
                      needed);
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

generation::GenerationConfig generation_config(const GenerationFlags& g) {
    generation::GenerationConfig c;
    if (!g.config_file.empty()) c = generation::load_generation_config(g.config_file);
    if (g.beams) c.num_beams = *g.beams;
    if (g.max_new_tokens) c.max_new_tokens = *g.max_new_tokens;
    if (g.min_new_tokens) c.min_new_tokens = *g.min_new_tokens;
    if (g.repetition_penalty) c.repetition_penalty = *g.repetition_penalty;
    if (g.sample) c.do_sample = true;
    if (g.top_k) c.top_k = *g.top_k;
    if (g.top_p) c.top_p = *g.top_p;
    if (g.temperature) c.temperature = *g.temperature;
    if (g.seed) c.seed = *g.seed;
    const std::string problem = c.problem();
    if (!problem.empty())
        throw OptionError((g.config_file.empty() ? "generation options" : g.config_file) + ": " + problem);
    return c;
}

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

nlohmann::ordered_json id_rows(const generation::Generated& g) {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (index_t r = 0; r < g.rows; ++r) {
        const auto row = g.row(r);
        out.push_back(std::vector<std::int32_t>(row.begin(), row.end()));
    }
    return out;
}

/// One line of JSON, keys in the documented order; bytes that are not UTF-8 become U+FFFD.
void print_json(const nlohmann::ordered_json& j) {
    std::cout << j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << '\n';
}

int itm(const Args& a) {
    require(a.model, architecture(a.model), "BlipForImageTextRetrieval", "itm");
    Be be({.threads = a.threads});
    const auto model = BlipForImageTextRetrieval<Be>::from_pretrained(be, a.model);
    Inputs in(a.model, model.config.text.bert.max_positions);
    const Tensor<float> px = in.pixels(a.images);  // [1, 3, S, S]
    const auto t = in.tokens(a.texts);
    const index_t n = t.input_ids.dim(0);
    const typename BlipForImageTextRetrieval<Be>::Texts texts{
        {t.input_ids.data(), std::size_t(t.input_ids.numel())},
        {t.attention_mask.data(), std::size_t(t.attention_mask.numel())},
        n};
    const auto emb = model.image_embeds(be, px.view());     // [1, N+1, Dv]
    const auto logits = model.itm_logits(be, emb.view(), texts);  // [n, 2]
    const auto cosine = model.itc_scores(be, emb.view(), texts);  // [1, n]
    std::vector<double> itm_scores, itc_scores;
    for (index_t i = 0; i < n; ++i) {
        // softmax(logits)[1] = 1 / (1 + exp(l0 - l1))
        itm_scores.push_back(1.0 / (1.0 + std::exp(double(logits(i, 0)) - double(logits(i, 1)))));
        itc_scores.push_back(double(cosine(0, i)));
    }
    if (a.json) {
        print_json({{"itm_scores", itm_scores}, {"itc_scores", itc_scores}});
        return 0;
    }
    std::printf("itm     itc      text\n");
    for (index_t i = 0; i < n; ++i)
        std::printf("%.4f  %+.4f  %s\n", itm_scores[std::size_t(i)], itc_scores[std::size_t(i)],
                    a.texts[std::size_t(i)].c_str());
    return 0;
}

int caption(const Args& a) {
    require(a.model, architecture(a.model), "BlipForConditionalGeneration", "caption");
    const generation::GenerationConfig options = generation_config(a.gen);
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
    const std::vector<std::string> captions = in.decode(g);
    if (a.json) {
        print_json({{"captions", captions}, {"ids", id_rows(g)}});
        return 0;
    }
    const index_t per_image = g.rows / B;
    for (index_t r = 0; r < g.rows; ++r)
        std::printf("%s: %s\n", a.images[std::size_t(r / per_image)].c_str(), captions[std::size_t(r)].c_str());
    return 0;
}

int vqa(const Args& a) {
    require(a.model, architecture(a.model), "BlipForQuestionAnswering", "vqa");
    const generation::GenerationConfig options = generation_config(a.gen);
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
    const std::vector<std::string> answers = in.decode(g);
    if (a.json) {
        print_json({{"answers", answers}, {"ids", id_rows(g)}});
        return 0;
    }
    const index_t per_image = g.rows / B;
    for (index_t r = 0; r < g.rows; ++r) {
        const auto i = std::size_t(r / per_image);
        std::printf("%s: %s %s\n", a.images[i].c_str(), questions[i].c_str(), answers[std::size_t(r)].c_str());
    }
    return 0;
}

/// Random pixels [B, C, S, S] and random token rows [B, T] (bench inputs: no files beyond the model's).
struct RandomInputs {
    std::mt19937 rng{0};
    Tensor<float> pixels(index_t B, const typename VisionTransformer<Be>::Config& v) {
        std::normal_distribution<float> normal;
        Tensor<float> px(Shape{B, v.channels, v.image_size, v.image_size});
        for (float& x : px) x = normal(rng);
        return px;
    }
    std::vector<std::int32_t> ids(index_t B, index_t T, index_t vocab) {
        std::uniform_int_distribution<std::int32_t> tok(1, std::int32_t(vocab - 1));
        std::vector<std::int32_t> out(std::size_t(B * T));
        for (auto& t : out) t = tok(rng);
        return out;
    }
};

/// Seconds for `iters` runs of `run` after one warm-up run (scratch arena, weights faulted in).
template <class F>
double time_runs(long iters, F&& run) {
    run();
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < iters; ++i) run();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// New tokens generated over the timed runs: each row's new tokens up to and including its first
/// [SEP]; the warm-up run's are not counted.
struct GeneratedTokens {
    bool warm = false;
    index_t timed = 0;
    void add(const generation::Generated& g, const BlipTextConfig<Be>& text) {
        index_t n = 0;
        for (index_t r = 0; r < g.rows; ++r)
            for (std::int32_t id : g.new_tokens(r)) {
                ++n;
                if (id == text.sep_token_id) break;
            }
        if (warm) timed += n;
        warm = true;
    }
};

int bench(const Args& a) {
    const std::string held = architecture(a.model);
    const index_t B = a.batch;
    RandomInputs rnd;
    Be be({.threads = a.threads});
    const generation::GenerationConfig options =
        a.task == "caption" || a.task == "vqa" ? generation_config(a.gen) : generation::GenerationConfig{};
    auto report_generation = [&](const char* task, double seconds, index_t tokens) {
        std::printf("%s batch=%ld beams=%lld images_per_s=%.3f new_tokens_per_s=%.2f\n", task, a.batch,
                    (long long)options.num_beams, double(B * a.iters) / seconds, double(tokens) / seconds);
    };
    if (a.task == "vision") {
        auto run = [&](const auto& model) {
            const Tensor<float> px = rnd.pixels(B, model.config.vision);
            const auto& v = model.config.vision;
            Tensor<float> out(Shape{B, v.tokens(), v.hidden});  // [B, N+1, Dv]
            const double s = time_runs(a.iters, [&] { model.vision_model.forward(be, px.view(), out.view(), {}); });
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
        const double s = time_runs(a.iters, [&] {
            const auto emb = model.image_embeds(be, px.view());
            (void)model.itm_logits(be, emb.view(), {ids, mask, B});
        });
        std::printf("itm images=1 texts=%ld texts_per_s=%.2f\n", a.batch, double(B * a.iters) / s);
    } else if (a.task == "caption") {
        require(a.model, held, "BlipForConditionalGeneration", "bench --task caption");
        const auto model = BlipForConditionalGeneration<Be>::from_pretrained(be, a.model);
        const Tensor<float> px = rnd.pixels(B, model.config.vision);
        GeneratedTokens counted;
        const double s =
            time_runs(a.iters, [&] { counted.add(model.generate(be, px.view(), {}, options), model.config.text); });
        report_generation("caption", s, counted.timed);
    } else {  // vqa: B images, each with a random question of 12 tokens
        require(a.model, held, "BlipForQuestionAnswering", "bench --task vqa");
        const auto model = BlipForQuestionAnswering<Be>::from_pretrained(be, a.model);
        const Tensor<float> px = rnd.pixels(B, model.config.vision);
        const index_t T = std::min<index_t>(12, model.config.text.bert.max_positions);
        const auto ids = rnd.ids(B, T, model.config.text.bert.vocab_size);
        const std::vector<std::int32_t> mask(ids.size(), 1);
        GeneratedTokens counted;
        const double s = time_runs(
            a.iters, [&] { counted.add(model.generate(be, px.view(), {ids, mask, B}, options), model.config.text); });
        report_generation("vqa", s, counted.timed);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Args a = parse(argc, argv);
        if (a.command == "itm") return itm(a);
        if (a.command == "caption") return caption(a);
        if (a.command == "vqa") return vqa(a);
        return bench(a);
    } catch (const UsageError& e) {
        std::fprintf(stderr, "mmalign-blip: %s\n%s", e.what(), kUsage);
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mmalign-blip: %s\n", e.what());
        return 1;
    }
}
