// mmalign-clip — CLIP from a Hugging Face folder on the command line.
//
//   mmalign-clip embed    --model DIR [--image PATH]... [--text STRING]... [--json] [--threads T]
//   mmalign-clip classify --model DIR --image PATH --labels "cat,dog,car" [--template "a photo of a {}."]
//   mmalign-clip bench    --model DIR --batch B --iters N [--threads T]
//
// DIR holds config.json and model.safetensors (or model.safetensors.index.json and its shards),
// plus what the inputs need: vocab.json and merges.txt for texts, preprocessor_config.json for
// images; a command reads only the files its inputs use (`--help` lists them). `embed --json` prints one object
//   {"image_embeds": [[…]], "text_embeds": [[…]], "logits_per_image": [[…]]}
// equal to HF's CLIPModel(**CLIPProcessor(text=…, images=…, padding=True)) outputs; keys appear
// for the inputs given (logits need both). Texts longer than the context (77) are truncated where
// HF's model would raise. Bad input exits 1 with one line on stderr; bad usage exits 2.
#include <mmalign/backend/cpu/backend.hpp>
#include <mmalign/io/clip_image_processor.hpp>
#include <mmalign/io/clip_tokenizer.hpp>
#include <mmalign/io/image.hpp>
#include <mmalign/models/clip.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../common/cli_options.hpp"

using namespace mmalign;
using Be = CpuBackend<float>;

namespace {

using cli::UsageError;  // bad usage: exit 2 with the usage text (cli::run_main)

const char* const kUsage =
    "usage:\n"
    "  mmalign-clip embed    --model DIR [--image PATH]... [--text STRING]... [--json] [--threads T]\n"
    "  mmalign-clip classify --model DIR --image PATH --labels \"a,b,c\" [--template \"a photo of a {}.\"] [--threads T]\n"
    "  mmalign-clip bench    --model DIR --batch B --iters N [--threads T]\n"
    "numbers: --threads T in [1, 4096]; --batch B in [1, 65536] and within memory; --iters N in [1, 1048576]\n"
    "files read from DIR:\n"
    "  every command   config.json, model.safetensors (or model.safetensors.index.json + shards)\n"
    "  embed --image   + preprocessor_config.json\n"
    "  embed --text    + vocab.json, merges.txt\n"
    "  classify        + preprocessor_config.json, vocab.json, merges.txt\n"
    "  bench           nothing more (random inputs)\n";

// The numeric options' ranges (values outside them are refused naming the option and the range):
// threads as the BLIP tools take them, a bench batch also bounded by a memory estimate (bench()).
constexpr long long kMaxThreads = 4096, kMaxBatch = 1 << 16, kMaxIters = 1 << 20;

struct Args {
    std::string command, model, labels, tmpl = "a photo of a {}.";
    std::vector<std::string> images, texts;
    bool json = false;
    int threads = 0;
    long batch = 1, iters = 10;
};

Args parse(int argc, char** argv) {
    if (argc < 2) throw UsageError("missing command");
    Args a;
    a.command = argv[1];
    if (a.command == "--help" || a.command == "-h") {
        std::fputs(kUsage, stdout);
        std::exit(0);
    }
    if (a.command != "embed" && a.command != "classify" && a.command != "bench")
        throw UsageError("unknown command \"" + a.command + "\"");
    for (int i = 2; i < argc; ++i) {
        const std::string f = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw UsageError(f + " needs a value");
            return argv[++i];
        };
        if (f == "--model") a.model = value();
        else if (f == "--image") a.images.push_back(value());
        else if (f == "--text") a.texts.push_back(value());
        else if (f == "--labels") a.labels = value();
        else if (f == "--template") a.tmpl = value();
        else if (f == "--json") a.json = true;
        else if (f == "--threads") a.threads = int(cli::integer(f, value(), 1, kMaxThreads));
        else if (f == "--batch") a.batch = long(cli::integer(f, value(), 1, kMaxBatch));
        else if (f == "--iters") a.iters = long(cli::integer(f, value(), 1, kMaxIters));
        else throw UsageError("unknown option \"" + f + "\"");
    }
    if (a.model.empty()) throw UsageError("--model DIR is required");
    if (a.command == "embed" && a.images.empty() && a.texts.empty()) throw UsageError("embed needs --image or --text");
    if (a.command == "classify" && (a.images.size() != 1 || a.labels.empty()))
        throw UsageError("classify needs one --image and --labels");
    return a;
}

/// The model, and the tokenizer and image processor loaded on first use: a command reads only
/// the files its inputs need (image-only `embed` runs on a folder without tokenizer files).
struct Pipeline {
    Be be;
    std::string dir;
    Clip<Be> model;
    std::optional<io::ClipTokenizer> loaded_tokenizer;
    std::optional<io::ClipImageProcessorConfig> loaded_processor;

    Pipeline(const std::string& d, int threads) : be({.threads = threads}), dir(d), model(Clip<Be>::from_pretrained(be, d)) {}

    io::ClipTokenizer& tokenizer() {
        if (!loaded_tokenizer) loaded_tokenizer.emplace(io::ClipTokenizer::from_hf_folder(dir));
        return *loaded_tokenizer;
    }
    const io::ClipImageProcessorConfig& processor() {
        if (!loaded_processor) loaded_processor = io::load_clip_image_processor_config(dir + "/preprocessor_config.json");
        return *loaded_processor;
    }
    Tensor<float> pixels(const std::vector<std::string>& paths) {
        std::vector<io::Image> imgs;
        for (const auto& p : paths) imgs.push_back(io::load_image(p));
        return io::preprocess(imgs, processor());
    }
    io::ClipTokenizer::Batch tokens(const std::vector<std::string>& texts) {
        return tokenizer()(texts, {.context_length = model.config.text.max_positions, .truncate = true});
    }
    Tensor<float> image_embeds(const Tensor<float>& px) {
        Tensor<float> f(Shape{px.dim(0), model.config.projection_dim});
        model.image_features(be, px.view(), f.view());
        be.l2_normalize_forward(f.view(), f.view(), nullptr);
        return f;
    }
    Tensor<float> text_embeds(const io::ClipTokenizer::Batch& t) {
        const index_t n = t.input_ids.dim(0);
        Tensor<float> f(Shape{n, model.config.projection_dim});
        model.text_features(be, {t.input_ids.data(), std::size_t(t.input_ids.numel())},
                            {t.attention_mask.data(), std::size_t(t.attention_mask.numel())}, n, f.view());
        be.l2_normalize_forward(f.view(), f.view(), nullptr);
        return f;
    }
    /// logits_per_image [Bi, Bt] = exp(logit_scale)·î·t̂ᵀ
    Tensor<float> logits(const Tensor<float>& img, const Tensor<float>& txt) {
        const index_t Bi = img.dim(0), Bt = txt.dim(0), E = img.dim(1);
        Tensor<float> l(Shape{Bi, Bt});
        be.gemm(Trans::N, Trans::T, Bi, Bt, E, std::exp(model.logit_scale.value(0)), img.data(), E, txt.data(), E, 0.f,
                l.data(), Bt);
        return l;
    }
};

nlohmann::json rows(const Tensor<float>& t) {
    nlohmann::json out = nlohmann::json::array();
    for (index_t r = 0; r < t.dim(0); ++r) {
        nlohmann::json row = nlohmann::json::array();
        for (index_t c = 0; c < t.dim(1); ++c) row.push_back(double(t(r, c)));
        out.push_back(std::move(row));
    }
    return out;
}

int embed(const Args& a) {
    Pipeline p(a.model, a.threads);
    nlohmann::json out = nlohmann::json::object();
    Tensor<float> img, txt;
    if (!a.images.empty()) img = p.image_embeds(p.pixels(a.images)), out["image_embeds"] = rows(img);
    if (!a.texts.empty()) txt = p.text_embeds(p.tokens(a.texts)), out["text_embeds"] = rows(txt);
    if (!a.images.empty() && !a.texts.empty()) out["logits_per_image"] = rows(p.logits(img, txt));
    if (a.json) {
        std::cout << out.dump() << '\n';
        return 0;
    }
    auto show = [](const char* what, const Tensor<float>& t) {
        std::printf("%s %s\n", what, t.shape().str().c_str());
        for (index_t r = 0; r < t.dim(0); ++r) {
            std::printf("  [%lld]", (long long)r);
            for (index_t c = 0; c < std::min<index_t>(t.dim(1), 6); ++c) std::printf(" %+.5f", t(r, c));
            std::printf("%s\n", t.dim(1) > 6 ? " …" : "");
        }
    };
    if (!a.images.empty()) show("image_embeds", img);
    if (!a.texts.empty()) show("text_embeds", txt);
    if (!a.images.empty() && !a.texts.empty()) show("logits_per_image", p.logits(img, txt));
    return 0;
}

int classify(const Args& a) {
    Pipeline p(a.model, a.threads);
    std::vector<std::string> labels, prompts;
    std::size_t start = 0;
    while (start <= a.labels.size()) {
        std::size_t end = a.labels.find(',', start);
        if (end == std::string::npos) end = a.labels.size();
        std::string l = a.labels.substr(start, end - start);
        l.erase(0, l.find_first_not_of(' '));
        l.erase(l.find_last_not_of(' ') + 1);
        if (!l.empty()) labels.push_back(l);
        start = end + 1;
    }
    if (labels.empty()) throw UsageError("--labels holds no label");
    const std::size_t slot = a.tmpl.find("{}");
    if (slot == std::string::npos) throw UsageError("--template must contain {}");
    for (const auto& l : labels) prompts.push_back(std::string(a.tmpl).replace(slot, 2, l));
    Tensor<float> logits = p.logits(p.image_embeds(p.pixels(a.images)), p.text_embeds(p.tokens(prompts)));
    std::vector<double> prob(labels.size());
    double mx = -INFINITY, sum = 0;
    for (std::size_t i = 0; i < labels.size(); ++i) mx = std::max(mx, double(logits(0, index_t(i))));
    for (std::size_t i = 0; i < labels.size(); ++i) sum += prob[i] = std::exp(double(logits(0, index_t(i))) - mx);
    std::vector<std::size_t> order(labels.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) { return prob[x] > prob[y]; });
    for (std::size_t i : order) std::printf("%s\t%.4f\n", labels[i].c_str(), prob[i] / sum);
    return 0;
}

int bench(const Args& a) {
    Pipeline p(a.model, a.threads);
    const auto& c = p.model.config;
    const index_t B = a.batch, T = c.text.max_positions;
    // What the batch costs before any of it is allocated (a lower bound): the pixels and token
    // rows, and the larger tower's working set in one layer — its activations [B, N, 4D + M] and
    // attention scores [B, H, N, N] in float.
    const auto& v = c.vision;
    const auto& t = c.text;
    const double f32 = 4, n_v = double(v.tokens()), n_t = double(T);
    const double inputs = double(B) * (double(v.channels * v.image_size * v.image_size) + 2.0 * n_t) * f32;
    const double vision = double(B) * (n_v * double(4 * v.hidden + v.mlp_hidden) + double(v.heads) * n_v * n_v) * f32;
    const double text = double(B) * (n_t * double(4 * t.hidden + t.mlp_hidden) + double(t.heads) * n_t * n_t) * f32;
    cli::check_memory("--batch", a.batch, inputs + std::max(vision, text), "the bench's inputs and one layer's activations");
    std::mt19937 rng(0);
    std::normal_distribution<float> normal;
    Tensor<float> px(Shape{B, c.vision.channels, c.vision.image_size, c.vision.image_size});
    for (float& v : px) v = normal(rng);
    std::vector<std::int32_t> ids(std::size_t(B * T)), mask(std::size_t(B * T), 1);
    std::uniform_int_distribution<std::int32_t> tok(0, std::int32_t(c.text.vocab_size - 2));
    for (index_t b = 0; b < B; ++b) {
        for (index_t t = 0; t < T; ++t) ids[std::size_t(b * T + t)] = tok(rng);
        ids[std::size_t(b * T + T - 1)] = std::int32_t(c.text.eos_token_id == 2 ? c.text.vocab_size - 1 : c.text.eos_token_id);
    }
    Tensor<float> fi(Shape{B, c.projection_dim}), ft(Shape{B, c.projection_dim});
    auto time_it = [&](auto&& run) {
        run();  // warm-up: allocates the scratch arena, faults in the weights
        const auto t0 = std::chrono::steady_clock::now();
        for (long i = 0; i < a.iters; ++i) run();
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    const double ti = time_it([&] { p.model.image_features(p.be, px.view(), fi.view()); });
    const double tt = time_it([&] { p.model.text_features(p.be, ids, mask, B, ft.view()); });
    std::printf("image_encoder batch=%ld images_per_s=%.2f\n", a.batch, double(B * a.iters) / ti);
    std::printf("text_encoder batch=%ld texts_per_s=%.2f\n", a.batch, double(B * a.iters) / tt);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return cli::run_main("mmalign-clip", kUsage, [&] {
        const Args a = parse(argc, argv);
        if (a.command == "embed") return embed(a);
        if (a.command == "classify") return classify(a);
        return bench(a);
    });
}
