// Zero-shot image classification with a Hugging Face CLIP folder on the GPU, in fp32, TF32, bf16
// or fp16: examples/clip_zero_shot on CudaBackend<T>.
//
//   clip_zero_shot_cuda <model-dir> <image> <label>... [--precision fp32|tf32|bf16|fp16]
//                       [--fused-attention] [--compare-cpu]
//
// The float checkpoint is rounded to the storage type as it loads; images and prompts are
// prepared on the host exactly as on the CPU. --compare-cpu also runs the CPU backend in float
// and fails (exit 1) when a logit differs by more than the precision allows: 8 units of the
// format's roundoff times the logit scale (the logits are cosines times exp(logit_scale)), and at
// least 1e-5 of it. Exit 77 without a CUDA device.
#include <mmalign/backend/cpu/backend.hpp>
#include <mmalign/backend/cuda/backend.hpp>
#include <mmalign/io/clip_image_processor.hpp>
#include <mmalign/io/clip_tokenizer.hpp>
#include <mmalign/io/image.hpp>
#include <mmalign/models/clip.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

namespace io = mmalign::io;
using mmalign::index_t;

namespace {

struct Inputs {
    mmalign::Tensor<float> pixels;
    std::vector<std::int32_t> ids, mask;
    index_t labels = 0;
};

/// logits_per_image [1, labels] of the folder's model on backend `be`, and its logit scale.
template <class Be>
std::vector<float> logits(Be& be, const std::string& dir, const Inputs& in, double* logit_scale = nullptr) {
    auto model = mmalign::Clip<Be>::from_pretrained(be, dir);
    typename Be::Tensor px(in.pixels.shape());
    be.from_host(in.pixels.cview(), px.view());
    auto out = model.forward(be, px.view(), in.ids, in.mask, in.labels);
    mmalign::Tensor<float> host(out.logits_per_image.shape());
    be.to_host(out.logits_per_image.cview(), host.view());
    if (logit_scale) {
        mmalign::Tensor<float> s(mmalign::Shape{});
        be.to_host(model.logit_scale.value.cview(), s.view());
        *logit_scale = std::exp(double(s.data()[0]));
    }
    return {host.begin(), host.end()};
}

template <class T>
std::vector<float> gpu_logits(const std::string& dir, const Inputs& in, bool tf32, bool fused) {
    mmalign::CudaBackend<T> be({.tf32 = tf32, .fused_attention = fused});
    return logits(be, dir, in);
}

}  // namespace

int main(int argc, char** argv) try {
    std::vector<std::string> pos;
    std::string precision = "fp32";
    bool fused = false, compare = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--precision" && i + 1 < argc) precision = argv[++i];
        else if (a == "--fused-attention") fused = true;
        else if (a == "--compare-cpu") compare = true;
        else pos.push_back(a);
    }
    const bool known = precision == "fp32" || precision == "tf32" || precision == "bf16" || precision == "fp16";
    if (pos.size() < 3 || !known) {
        std::fprintf(stderr, "usage: clip_zero_shot_cuda <model-dir> <image> <label>... [--precision fp32|tf32|bf16|fp16] "
                             "[--fused-attention] [--compare-cpu]\n");
        return 2;
    }
    if (mmalign::cuda::device_count() == 0) {
        std::fprintf(stderr, "clip_zero_shot_cuda: no CUDA device\n");
        return 77;
    }
    const std::string dir = pos[0];
    auto tokenizer = io::ClipTokenizer::from_hf_folder(dir);
    auto processor = io::load_clip_image_processor_config(dir + "/preprocessor_config.json");
    Inputs in;
    in.pixels = io::preprocess({io::load_image(pos[1])}, processor);
    const std::vector<std::string> labels(pos.begin() + 2, pos.end());
    std::vector<std::string> prompts;
    for (const auto& l : labels) prompts.push_back(std::string("a photo of a ").append(l).append("."));
    auto tokens = tokenizer(prompts);
    in.ids.assign(tokens.input_ids.begin(), tokens.input_ids.end());
    in.mask.assign(tokens.attention_mask.begin(), tokens.attention_mask.end());
    in.labels = static_cast<index_t>(labels.size());

    const std::vector<float> got =
        precision == "bf16"   ? gpu_logits<mmalign::bfloat16>(dir, in, false, fused)
        : precision == "fp16" ? gpu_logits<mmalign::float16>(dir, in, false, fused)
                              : gpu_logits<float>(dir, in, precision == "tf32", fused);
    double max = -INFINITY, sum = 0;
    for (float v : got) max = std::max(max, double(v));
    for (float v : got) sum += std::exp(v - max);
    for (std::size_t i = 0; i < labels.size(); ++i)
        std::printf("%-20s %.4f\n", labels[i].c_str(), std::exp(got[i] - max) / sum);

    if (compare) {
        mmalign::CpuBackend<float> cpu;
        double scale = 1;
        const std::vector<float> want = logits(cpu, dir, in, &scale);
        const double u = precision == "bf16" ? std::ldexp(1.0, -8)
                         : precision == "fp16" ? std::ldexp(1.0, -11)
                         : precision == "tf32" ? std::ldexp(1.0, -11)
                                               : 0.0;
        const double tol = std::max(8 * u, 1e-5) * scale;
        double worst = 0;
        for (std::size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::abs(double(got[i]) - want[i]));
        std::printf("largest logit difference from the CPU (float): %.3g (allowed %.3g)\n", worst, tol);
        if (!(worst <= tol)) return 1;
    }
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "clip_zero_shot_cuda: %s\n", e.what());
    return 1;
}
