// bench_train_clip — the Fashion-MNIST CLIP training step, timed in mmalign, for comparison with
// PyTorch (benchmarks/torch/train_clip.py) on the same weights, the same batches and the same
// thread count. benchmarks/run_train_clip.sh runs both interleaved and prints the table.
//
//   bench_train_clip prepare --dir DIR [--steps N] [--batch B] [--data DIR | --synthetic]
//       writes DIR/config.json (a HF CLIPConfig), DIR/init.safetensors (HF names) and
//       DIR/batches.safetensors (pixels, ids, masks and soft targets of N batches); --synthetic
//       uses seeded random images and labels instead of Fashion-MNIST (same shapes and timing)
//   bench_train_clip run --dir DIR [--threads T]
//       trains N steps from init and prints one JSON line: steps_per_s (after 2 warm-up steps),
//       losses, peak_rss_mb
// The step is the example's: the library's TrainStep with CLIP's task (train_step.hpp, shared with
// the CUDA benchmark bench_train_clip_gpu): image and text features, soft-target InfoNCE, backward,
// clip the global norm to 1, AdamW (lr 1e-3, betas 0.9/0.98, eps 1e-6, wd 0.05), clamp logit_scale.
#include <mmalign/backend/cpu/backend.hpp>
#include <mmalign/io/idx.hpp>
#include <mmalign/io/safetensors.hpp>

#include "train_step.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

using namespace mmalign;
using Be = CpuBackend<float>;

namespace {

constexpr index_t kLen = 12;  // caption length: bos + up to 10 words + eos, padded
const char* const kClasses[10] = {"t-shirt", "trouser", "pullover", "dress", "coat",
                                  "sandal",  "shirt",   "sneaker",  "bag",   "ankle boot"};

Clip<Be>::Config model_config(index_t vocab) {
    Clip<Be>::Config c;
    c.vision = {.image_size = 28, .patch_size = 7, .channels = 1, .hidden = 96, .layers = 3, .heads = 4,
                .mlp_hidden = 192, .activation = Activation::gelu, .eps = 1e-5};
    c.text = {.vocab_size = vocab, .max_positions = kLen, .hidden = 64, .layers = 1, .heads = 4, .mlp_hidden = 128,
              .activation = Activation::gelu, .eps = 1e-5, .eos_token_id = vocab - 1};
    c.projection_dim = 64;
    return c;
}

nlohmann::json hf_config(const Clip<Be>::Config& c) {
    return {{"architectures", {"CLIPModel"}},
            {"model_type", "clip"},
            {"projection_dim", c.projection_dim},
            {"logit_scale_init_value", c.logit_scale_init},
            {"text_config",
             {{"vocab_size", c.text.vocab_size}, {"hidden_size", c.text.hidden}, {"intermediate_size", c.text.mlp_hidden},
              {"num_hidden_layers", c.text.layers}, {"num_attention_heads", c.text.heads},
              {"max_position_embeddings", c.text.max_positions}, {"hidden_act", "gelu"}, {"layer_norm_eps", c.text.eps},
              {"eos_token_id", c.text.eos_token_id}, {"bos_token_id", 1}, {"pad_token_id", 0}}},
            {"vision_config",
             {{"hidden_size", c.vision.hidden}, {"intermediate_size", c.vision.mlp_hidden},
              {"num_hidden_layers", c.vision.layers}, {"num_attention_heads", c.vision.heads},
              {"num_channels", c.vision.channels}, {"image_size", c.vision.image_size},
              {"patch_size", c.vision.patch_size}, {"hidden_act", "gelu"}, {"layer_norm_eps", c.vision.eps}}}};
}

std::string arg(int argc, char** argv, const char* flag, std::string fallback) {
    for (int i = 2; i + 1 < argc; ++i)
        if (flag == std::string(argv[i])) return argv[i + 1];
    return fallback;
}

int prepare(int argc, char** argv) {
    const std::string dir = arg(argc, argv, "--dir", "");
    const std::string data = arg(argc, argv, "--data", "/usr/share/datasets/fashion-mnist");
    const index_t steps = std::stol(arg(argc, argv, "--steps", "30")), B = std::stol(arg(argc, argv, "--batch", "256"));
    const bool synthetic = std::find(argv + 2, argv + argc, std::string("--synthetic")) != argv + argc;
    if (dir.empty()) throw ArgumentError("prepare needs --dir");
    io::IdxArray images, labels;
    if (synthetic) {  // where the dataset is not installed (a GPU machine): seeded noise and labels
        images.shape = {steps * B, 28, 28};
        labels.shape = {steps * B};
        images.data.resize(std::size_t(steps * B * 784));
        labels.data.resize(std::size_t(steps * B));
        std::mt19937 rng(5);
        for (auto& v : images.data) v = std::uint8_t(rng() % 256);
        for (auto& v : labels.data) v = std::uint8_t(rng() % 10);
    } else {
        images = io::load_idx(data + "/train-images-idx3-ubyte.gz");
        labels = io::load_idx(data + "/train-labels-idx1-ubyte.gz");
    }
    if (images.shape[0] < steps * B) throw ArgumentError("not enough images for " + std::to_string(steps) + " batches");
    // Word ids: 0 pad, 1 bos, the words of "a photo of a <class>." in order of appearance, then eos.
    std::vector<std::string> vocab = {"<pad>", "<bos>", "a", "photo", "of"};
    std::vector<std::vector<std::int32_t>> caption(10);
    for (int c = 0; c < 10; ++c) {
        caption[std::size_t(c)] = {1, 2, 3, 4, 2};
        std::string name = kClasses[c], word;
        for (char ch : name + " ") {
            if (std::isalnum(static_cast<unsigned char>(ch))) { word += ch; continue; }
            if (word.empty()) continue;
            auto it = std::find(vocab.begin(), vocab.end(), word);
            if (it == vocab.end()) vocab.push_back(word), it = vocab.end() - 1;
            caption[std::size_t(c)].push_back(std::int32_t(it - vocab.begin()));
            word.clear();
        }
    }
    const std::int32_t eos = std::int32_t(vocab.size());
    for (auto& cap : caption) cap.push_back(eos);
    Clip<Be> model(model_config(eos + 1));
    model.init_like_hf(7);
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/config.json") << hf_config(model.config).dump(1);
    io::save_parameters(model, dir + "/init.safetensors");

    Tensor<float> px(Shape{steps, B, 784}), ids(Shape{steps, B, kLen}), mask(Shape{steps, B, kLen}),
        soft(Shape{steps, B, B});
    for (index_t s = 0; s < steps; ++s)
        for (index_t i = 0; i < B; ++i) {
            const index_t k = s * B + i;
            for (index_t p = 0; p < 784; ++p)
                px.data()[k * 784 + p] = (images.data[std::size_t(k * 784 + p)] / 255.f - 0.2860f) / 0.3530f;
            const auto& cap = caption[labels.data[std::size_t(k)]];
            for (index_t t = 0; t < kLen; ++t) {
                ids.data()[k * kLen + t] = t < index_t(cap.size()) ? float(cap[std::size_t(t)]) : 0.f;
                mask.data()[k * kLen + t] = t < index_t(cap.size()) ? 1.f : 0.f;
            }
            index_t same = 0;
            for (index_t j = 0; j < B; ++j) same += labels.data[std::size_t(k)] == labels.data[std::size_t(s * B + j)];
            for (index_t j = 0; j < B; ++j)
                soft.data()[(s * B + i) * B + j] =
                    labels.data[std::size_t(k)] == labels.data[std::size_t(s * B + j)] ? 1.f / float(same) : 0.f;
        }
    io::save_safetensors(dir + "/batches.safetensors",
                         {{"pixel_values", px.cview()}, {"input_ids", ids.cview()}, {"attention_mask", mask.cview()},
                          {"soft_targets", soft.cview()}});
    std::printf("prepared %lld batches of %lld in %s (vocab %d)\n", (long long)steps, (long long)B, dir.c_str(), eos + 1);
    return 0;
}

int run(int argc, char** argv) {
    const std::string dir = arg(argc, argv, "--dir", "");
    const int threads = std::stoi(arg(argc, argv, "--threads", "2"));
    auto cfg = io::load_clip_config(dir + "/config.json");
    Clip<Be> model(Clip<Be>::Config::from_hf(cfg));
    io::load_parameters(model, io::SafetensorsFile::open(dir + "/init.safetensors"));
    auto f = io::SafetensorsFile::open(dir + "/batches.safetensors");
    Tensor<float> px = f.read<float>("pixel_values"), idf = f.read<float>("input_ids"), mf = f.read<float>("attention_mask"),
                  soft = f.read<float>("soft_targets");
    const index_t steps = px.dim(0), B = px.dim(1), L = idf.dim(2);
    std::vector<std::int32_t> ids(idf.begin(), idf.end()), mask(mf.begin(), mf.end());
    Be be({.threads = threads});
    bench::ClipTrainStep<Be> step(model, B);
    std::vector<double> losses;
    auto t0 = std::chrono::steady_clock::now();
    for (index_t s = 0; s < steps; ++s) {
        if (s == 2) t0 = std::chrono::steady_clock::now();
        losses.push_back(step(be, ConstView<float>(px.data() + s * B * 784, Shape{B, 784}),
                              {ids.data() + s * B * L, std::size_t(B * L)}, {mask.data() + s * B * L, std::size_t(B * L)},
                              ConstView<float>(soft.data() + s * B * B, Shape{B, B})));
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    nlohmann::json out = {{"impl", "mmalign"}, {"threads", threads}, {"steps", steps}, {"batch", B},
                          {"steps_per_s", double(steps - 2) / secs}, {"peak_rss_mb", double(ru.ru_maxrss) / 1024.0},
                          {"losses", losses}};
    std::printf("%s\n", out.dump().c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "prepare") return prepare(argc, argv);
    if (cmd == "run") return run(argc, argv);
    std::fprintf(stderr, "usage: bench_train_clip prepare --dir DIR [--steps N] [--batch B] [--data DIR | --synthetic]\n"
                         "       bench_train_clip run --dir DIR [--threads T]\n");
    return 2;
} catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train_clip: %s\n", e.what());
    return 1;
}
