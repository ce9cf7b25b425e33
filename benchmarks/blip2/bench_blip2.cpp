// bench_blip2 — full-size BLIP-2 (blip2-opt-2.7b layout) inference on mmalign's CPU backend in
// float32, for comparison with PyTorch eager (benchmarks/torch/blip2.py) on the same weights, the
// same inputs and the same thread count; and the two measurements a decoding speed is judged by:
// the memory a full-size load takes and the machine's memory bandwidth.
// benchmarks/run_blip2.sh runs them and prints the table.
//
//   bench_blip2 --dir DIR --task features|caption|all|load [--batch B] [--new-tokens N] [--iters N]
//               [--threads T] [--out PATH]
//   bench_blip2 --task stream [--threads T] [--mb M]
//
// DIR is what `blip2.py make` writes: a Blip2ForConditionalGeneration folder (config.json and
// model.safetensors, or shards with model.safetensors.index.json; float16 or float32, read into
// float) with inputs.safetensors (pixel_values [4, 3, 224, 224] F32, prompt_ids [1, 36] I64). Tasks:
//   features  image_embeds of the first B images, then the Q-Former's output [B, 32, 768]
//             (Blip2Model.get_qformer_features); per_s = images/s
//   caption   generate() of image 0 with prompt_ids (32 <image> tokens, </s>, "a photo of"), greedy,
//             min_new_tokens = max_new_tokens = N, and the same with 1 new token; per_s = images/s
//             of the full call, new_tokens_per_s = N / s, decode_tokens_per_s = (N − 1) / (t_N − t_1)
//             (the steps after the first token: the prompt's prefill and the image excluded), and
//             weight_bytes_per_token: the float32 bytes of the weights one decoding step reads (every
//             language-model weight once, the tied embedding as the LM head; not the position table)
//   all       features at batch 1 and 4, then caption, after one load (one line each; --out is then
//             a prefix: PATH.features-b1.safetensors, PATH.features-b4.safetensors)
//   load      from_pretrained alone: load_s, the parameters, peak_rss_mb and rss_mb after it
//   stream    STREAM's triad a = b + s·c over three double arrays of M MB each (default 1024, far
//             beyond any cache), best of 10 passes; bandwidth_gbs counts 3 × 8 bytes per element,
//             as STREAM does (no write-allocate traffic)
// One warm-up call, then --iters timed calls (median); each row is one JSON line with load_s and
// peak_rss_mb (VmHWM so far: loading included), and for caption the new ids. --out writes
// features' "qformer_output".
#include <mmalign/backend/cpu/backend.hpp>
#include <mmalign/io/safetensors.hpp>
#include <mmalign/models/blip2_generation.hpp>

#include <omp.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../common/timed_calls.hpp"

using namespace mmalign;
using namespace mmalign::bench;
using Be = CpuBackend<float>;
using Model = Blip2ForConditionalGeneration<Be>;

namespace {

/// STREAM triad (McCalpin, "STREAM: Sustainable Memory Bandwidth in High Performance Computers"):
/// the best of `passes` passes of a[i] = b[i] + s·c[i], in bytes per second.
double triad_bandwidth(std::size_t mb, int threads, int passes) {
    const auto n = static_cast<std::ptrdiff_t>(mb * (1u << 20) / sizeof(double));
    std::unique_ptr<double[]> a(new double[static_cast<std::size_t>(n)]), b(new double[static_cast<std::size_t>(n)]),
        c(new double[static_cast<std::size_t>(n)]);
    double* pa = a.get();
    double* pb = b.get();
    double* pc = c.get();
    // First touch by the threads that use the pages.
#pragma omp parallel for num_threads(threads) schedule(static)
    for (std::ptrdiff_t i = 0; i < n; ++i) pa[i] = 0, pb[i] = 1, pc[i] = 2;
    double best = 1e30;
    for (int p = 0; p < passes; ++p) {
        const double s = 3.0 + p;
        const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel for num_threads(threads) schedule(static)
        for (std::ptrdiff_t i = 0; i < n; ++i) pa[i] = pb[i] + s * pc[i];
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    if (pa[n / 2] != 1.0 + 2.0 * (3.0 + passes - 1)) throw Error("stream: the triad computed a wrong value");
    return 3.0 * sizeof(double) * static_cast<double>(n) / best;
}

/// The float32 bytes of the weights one decoding step reads.
double weight_bytes_per_token(Model& model) {
    double n = 0;
    model.model.language_model.visit([&](const std::string& name, auto& p) {
        if (name.find("embed_positions") == std::string::npos) n += static_cast<double>(p.value.numel());
    });
    return 4.0 * n;
}

/// One row: its JSON line with per_s from the median call and the process's peak RSS so far.
nlohmann::json row(const std::string& task, index_t images, long iters, const std::vector<double>& secs) {
    const double median = median_of(secs);
    return {{"impl", "mmalign"}, {"task", task}, {"batch", images}, {"iters", iters}, {"per_s", double(images) / median},
            {"median_s", median}, {"times_s", secs}, {"peak_rss_mb", proc_status_mb("VmHWM")}};
}

/// features: image_embeds of the first B images, then the Q-Former's output [B, Q, Dq].
nlohmann::json features(Be& be, const Model& model, const Tensor<float>& pixels, index_t B, long iters, const std::string& out_path) {
    if (pixels.dim(0) < B) throw ArgumentError("inputs.safetensors holds fewer images than --batch");
    const ConstView<float> px(pixels.data(), Shape{B, pixels.dim(1), pixels.dim(2), pixels.dim(3)});  // [B, C, S, S]
    Tensor<float> q;  // [B, Q, Dq]
    const auto secs = time_calls(iters, [&] {
        const auto img = model.image_embeds(be, px);  // [B, N+1, Dv]
        q = model.qformer_output(be, img.cview());
    });
    if (!out_path.empty()) io::save_safetensors(out_path, {{"qformer_output", q.cview()}});
    return row("features", B, iters, secs);
}

/// caption: greedy generate() of image 0 with the prompt, N new tokens and 1 new token.
nlohmann::json caption(Be& be, Model& model, const Tensor<float>& pixels, const Tensor<std::int32_t>& ids, index_t new_tokens,
                       long iters) {
    const ConstView<float> px(pixels.data(), Shape{1, pixels.dim(1), pixels.dim(2), pixels.dim(3)});  // [1, C, S, S]
    const std::vector<std::int32_t> mask(static_cast<std::size_t>(ids.numel()), 1);
    const Blip2Tokens prompt{{ids.data(), static_cast<std::size_t>(ids.numel())}, mask, 1};
    auto options = [](index_t n) {
        generation::GenerationConfig o;
        o.min_new_tokens = n;
        o.max_new_tokens = n;
        return o;
    };
    generation::Generated g;
    const auto secs = time_calls(iters, [&] { g = model.generate(be, px, prompt, options(new_tokens)); });
    const auto first = time_calls(iters, [&] { model.generate(be, px, prompt, options(1)); });
    nlohmann::json out = row("caption", 1, iters, secs);
    const auto ids_new = g.new_tokens(0);
    out["ids"] = {std::vector<std::int32_t>(ids_new.begin(), ids_new.end())};
    out["new_tokens_per_s"] = double(new_tokens) / median_of(secs);
    out["first_token_s"] = median_of(first);
    out["decode_tokens_per_s"] = double(new_tokens - 1) / (median_of(secs) - median_of(first));
    out["weight_bytes_per_token"] = weight_bytes_per_token(model);
    return out;
}

int run(int argc, char** argv) {
    const std::string dir = arg(argc, argv, "--dir", ""), task = arg(argc, argv, "--task", "features"),
                      out_prefix = arg(argc, argv, "--out", "");
    const index_t B = std::stol(arg(argc, argv, "--batch", "1"));
    const index_t new_tokens = std::stol(arg(argc, argv, "--new-tokens", "20"));
    const long iters = std::stol(arg(argc, argv, "--iters", "1"));
    const int threads = std::stoi(arg(argc, argv, "--threads", "2"));
    auto print = [&](nlohmann::json j) {
        j["threads"] = threads;
        std::printf("%s\n", j.dump().c_str());
        std::fflush(stdout);
    };
    if (task == "stream") {
        const auto mb = static_cast<std::size_t>(std::stol(arg(argc, argv, "--mb", "1024")));
        print({{"impl", "mmalign"}, {"task", task}, {"array_mb", mb}, {"bandwidth_gbs", triad_bandwidth(mb, threads, 10) / 1e9}});
        return 0;
    }
    if (dir.empty()) throw ArgumentError("--dir DIR is required");
    if (task != "features" && task != "caption" && task != "load" && task != "all")
        throw ArgumentError("--task must be features, caption, all, load or stream");
    if (B < 1 || new_tokens < 2 || iters < 1) throw ArgumentError("--batch and --iters must be positive, --new-tokens at least 2");

    Be be({.threads = threads});
    const auto t0 = std::chrono::steady_clock::now();
    Model model = Model::from_pretrained(be, dir);
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (task == "load") {
        print({{"impl", "mmalign"}, {"task", task}, {"load_s", load_s}, {"parameters", count_parameters(model)},
               {"peak_rss_mb", proc_status_mb("VmHWM")}, {"rss_mb", proc_status_mb("VmRSS")}});
        return 0;
    }
    auto inputs = io::SafetensorsFile::open(dir + "/inputs.safetensors");
    const Tensor<float> pixels = inputs.read<float>("pixel_values");  // [4, C, S, S]
    const Tensor<std::int32_t> ids = inputs.read<std::int32_t>("prompt_ids");  // [1, T]
    auto with_load = [&](nlohmann::json j) {
        j["load_s"] = load_s;
        return j;
    };
    if (task == "features") print(with_load(features(be, model, pixels, B, iters, out_prefix)));
    if (task == "caption") print(with_load(caption(be, model, pixels, ids, new_tokens, iters)));
    if (task == "all") {  // one load for every row: features at batch 1 and 4, then the caption
        for (index_t b : {index_t(1), index_t(4)})
            print(with_load(features(be, model, pixels, b, iters, out_prefix.empty() ? "" : out_prefix + ".features-b" + std::to_string(b) + ".safetensors")));
        print(with_load(caption(be, model, pixels, ids, new_tokens, iters)));
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) try {
    if (argc < 2 || std::string(argv[1]) == "--help") {
        std::fprintf(stderr, "usage: bench_blip2 --dir DIR --task features|caption|all|load [--batch B] [--new-tokens N] "
                             "[--iters N] [--threads T] [--out PATH]\n       bench_blip2 --task stream [--threads T] [--mb M]\n");
        return 2;
    }
    return run(argc, argv);
} catch (const std::exception& e) {
    std::fprintf(stderr, "bench_blip2: %s\n", e.what());
    return 1;
}
