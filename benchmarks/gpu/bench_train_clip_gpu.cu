// bench_train_clip_gpu — the CLIP training step of benchmarks/train_clip on the CUDA backend, for
// comparison with benchmarks/torch/train_clip.py --device cuda on the same weights and batches.
//
//   bench_train_clip_gpu --dir DIR [--tf32 | --bf16] [--fused-attention]
//       DIR from `bench_train_clip prepare` (config.json, init.safetensors, batches.safetensors);
//       trains every batch from init and prints one JSON line: steps_per_s (after 2 warm-up
//       steps; each step ends on the host, as the loss is read), losses
// The step (train_step.hpp) is the CPU benchmark's: features, soft-target InfoNCE, backward,
// global-norm clipping, AdamW, logit-scale clamp. On CudaBackend<float> by default; --bf16 runs
// it on CudaBackend<bfloat16> (bf16 weights, activations and gradients, fp32 accumulation,
// float master weights and moments in AdamW; bfloat16 has float's range, so no loss scaling).
// Exit 77 without a device.
#include <mmalign/backend/cuda/backend.hpp>
#include <mmalign/io/hf_config.hpp>
#include <mmalign/io/safetensors.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../train_clip/train_step.hpp"

using namespace mmalign;

namespace {

template <class Be>
nlohmann::json train(const std::string& dir, typename Be::Options options) {
    Be be(options);
    Clip<Be> model(Clip<Be>::Config::from_hf(io::load_clip_config(dir + "/config.json")));
    io::load_parameters(be, model, io::SafetensorsFile::open(dir + "/init.safetensors"));
    auto f = io::SafetensorsFile::open(dir + "/batches.safetensors");
    Tensor<float> px = f.read<float>("pixel_values"), idf = f.read<float>("input_ids"), mf = f.read<float>("attention_mask"),
                  soft = f.read<float>("soft_targets");
    const index_t steps = px.dim(0), B = px.dim(1), L = idf.dim(2);
    std::vector<std::int32_t> ids(idf.begin(), idf.end()), mask(mf.begin(), mf.end());
    bench::ClipTrainStep<Be> step(model, B);
    std::vector<double> losses;
    auto t0 = std::chrono::steady_clock::now();
    for (index_t s = 0; s < steps; ++s) {
        if (s == 2) {
            be.synchronize();
            t0 = std::chrono::steady_clock::now();
        }
        losses.push_back(step(be, ConstView<float>(px.data() + s * B * 784, Shape{B, 784}),
                              {ids.data() + s * B * L, std::size_t(B * L)}, {mask.data() + s * B * L, std::size_t(B * L)},
                              ConstView<float>(soft.data() + s * B * B, Shape{B, B})));
    }
    be.synchronize();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return {{"steps", steps}, {"batch", B}, {"steps_per_s", double(steps - 2) / secs}, {"losses", losses}};
}

}  // namespace

int main(int argc, char** argv) try {
    std::string dir;
    bool tf32 = false, bf16 = false, fused = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--dir" && i + 1 < argc) dir = argv[++i];
        else if (a == "--tf32") tf32 = true;
        else if (a == "--bf16") bf16 = true;
        else if (a == "--fused-attention") fused = true;
        else {
            std::fprintf(stderr, "usage: bench_train_clip_gpu --dir DIR [--tf32 | --bf16] [--fused-attention]\n");
            return 2;
        }
    }
    if (dir.empty() || (tf32 && bf16)) {
        std::fprintf(stderr, "bench_train_clip_gpu: --dir is required; --tf32 and --bf16 exclude each other\n");
        return 2;
    }
    if (cuda::device_count() == 0) {
        std::fprintf(stderr, "bench_train_clip_gpu: no CUDA device\n");
        return 77;
    }
    nlohmann::json out = bf16 ? train<CudaBackend<mmalign::bfloat16>>(dir, {.fused_attention = fused})
                              : train<CudaBackend<float>>(dir, {.tf32 = tf32, .fused_attention = fused});
    out["impl"] = fused ? "mmalign-cuda-fused" : "mmalign-cuda";
    out["tf32"] = tf32;
    out["precision"] = bf16 ? "bf16" : tf32 ? "tf32" : "fp32";
    std::printf("%s\n", out.dump().c_str());
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train_clip_gpu: %s\n", e.what());
    return 1;
}
