// bench_cpu — CLIP inference throughput of mmalign's CPU backend, for comparison with PyTorch and
// ONNX Runtime (benchmarks/torch/cpu_clip.py) on the same weights, the same inputs and the same
// thread count. benchmarks/run_cpu.sh runs them interleaved and prints the table.
//
//   bench_cpu --model DIR --row image|text --batch B --iters N [--threads T] [--out-embeds PATH]
//
// DIR is a Hugging Face CLIP folder (config.json + model.safetensors) that also holds
// inputs.safetensors (written by `cpu_clip.py make`): pixel_values [Bmax, C, S, S], input_ids and
// attention_mask [Bmax, T] as F32 (token ids are exact in F32). The first B rows are used.
// Runs 1 warm-up and N timed calls of image_features or text_features (HF get_image_features /
// get_text_features: projected, not normalised) and prints one JSON line: per_s (images or texts
// per second, from the median call time), gflops (matmul FLOPs counted from the config, divided
// by the median time), peak_rss_mb (getrusage). --out-embeds writes the features ("features").
#include <mmalign/backend/cpu/backend.hpp>
#include <mmalign/io/safetensors.hpp>
#include <mmalign/models/clip.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

using namespace mmalign;
using Be = CpuBackend<float>;

namespace {

std::string arg(int argc, char** argv, const char* flag, std::string fallback) {
    for (int i = 1; i + 1 < argc; ++i)
        if (flag == std::string(argv[i])) return argv[i + 1];
    return fallback;
}

/// Matmul FLOPs (2 per multiply-add) of one transformer encoder over `tokens` tokens.
double encoder_flops(double tokens, double D, double F, double layers) {
    const double per_layer = tokens * 4 * D * D        // q, k, v, out projections
                             + tokens * 2 * D * F      // MLP up and down
                             + 2 * tokens * tokens * D;  // QKᵀ and attention·V
    return 2 * layers * per_layer;
}

/// FLOPs of one image through the vision tower and its projection.
double image_flops(const Clip<Be>::Config& c) {
    const auto& v = c.vision;
    const double patches = double(v.image_size / v.patch_size) * double(v.image_size / v.patch_size);
    const double patch_embed = 2 * patches * double(v.channels * v.patch_size * v.patch_size) * double(v.hidden);
    return patch_embed + encoder_flops(patches + 1, double(v.hidden), double(v.mlp_hidden), double(v.layers)) +
           2 * double(v.hidden) * double(c.projection_dim);
}

/// FLOPs of one text of `len` tokens (all positions are computed, padding included).
double text_flops(const Clip<Be>::Config& c, index_t len) {
    const auto& t = c.text;
    return encoder_flops(double(len), double(t.hidden), double(t.mlp_hidden), double(t.layers)) +
           2 * double(t.hidden) * double(c.projection_dim);
}

int run(int argc, char** argv) {
    const std::string dir = arg(argc, argv, "--model", ""), row = arg(argc, argv, "--row", "image"),
                      out_path = arg(argc, argv, "--out-embeds", "");
    const index_t B = std::stol(arg(argc, argv, "--batch", "1"));
    const long iters = std::stol(arg(argc, argv, "--iters", "5"));
    const int threads = std::stoi(arg(argc, argv, "--threads", "2"));
    if (dir.empty()) throw ArgumentError("--model DIR is required");
    if (row != "image" && row != "text") throw ArgumentError("--row must be image or text");
    if (B < 1 || iters < 1) throw ArgumentError("--batch and --iters must be positive");

    Be be({.threads = threads});
    const Clip<Be> model = Clip<Be>::from_pretrained(be, dir);
    const auto& c = model.config;
    auto inputs = io::SafetensorsFile::open(dir + "/inputs.safetensors");
    Tensor<float> features(Shape{B, c.projection_dim});
    std::function<void()> call;
    Tensor<float> px;
    std::vector<std::int32_t> ids, mask;
    double flops = 0;
    if (row == "image") {
        Tensor<float> all = inputs.read<float>("pixel_values");
        if (all.dim(0) < B) throw ArgumentError("inputs.safetensors holds fewer images than --batch");
        const index_t per = all.numel() / all.dim(0);
        px = Tensor<float>(Shape{B, all.dim(1), all.dim(2), all.dim(3)});
        std::copy(all.data(), all.data() + B * per, px.data());
        flops = double(B) * image_flops(c);
        call = [&] { model.image_features(be, px.cview(), features.view()); };
    } else {
        Tensor<float> idf = inputs.read<float>("input_ids"), mf = inputs.read<float>("attention_mask");
        if (idf.dim(0) < B) throw ArgumentError("inputs.safetensors holds fewer texts than --batch");
        const index_t L = idf.dim(1);
        ids.assign(idf.data(), idf.data() + B * L);
        mask.assign(mf.data(), mf.data() + B * L);
        flops = double(B) * text_flops(c, L);
        call = [&] { model.text_features(be, ids, mask, B, features.view()); };
    }

    call();  // warm-up: allocates the scratch arena, faults in the weights
    std::vector<double> secs;
    for (long i = 0; i < iters; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        call();
        secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::vector<double> sorted = secs;
    std::sort(sorted.begin(), sorted.end());
    const std::size_t n = sorted.size();
    const double median = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
    if (!out_path.empty()) io::save_safetensors(out_path, {{"features", features.cview()}});
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    nlohmann::json out = {{"impl", "mmalign"},
                          {"row", row},
                          {"batch", B},
                          {"threads", threads},
                          {"iters", iters},
                          {"per_s", double(B) / median},
                          {"median_s", median},
                          {"times_s", secs},
                          {"gflop_per_call", flops / 1e9},
                          {"gflops", flops / 1e9 / median},
                          {"peak_rss_mb", double(ru.ru_maxrss) / 1024.0}};
    std::printf("%s\n", out.dump().c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) try {
    if (argc < 2 || std::string(argv[1]) == "--help") {
        std::fprintf(stderr, "usage: bench_cpu --model DIR --row image|text --batch B --iters N [--threads T] "
                             "[--out-embeds PATH]\n");
        return 2;
    }
    return run(argc, argv);
} catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cpu: %s\n", e.what());
    return 1;
}
