#include <mmalign/backend/cuda/backend.hpp>  // in a .cu file, compiled by nvcc; CMake target mmalign::cuda
#include <mmalign/mmalign.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

// The README's two CLIP-style layers, on any backend.
template <class B>
mmalign::TransformerStack<B, mmalign::PreNorm> make_encoder() {
    return mmalign::TransformerStack<B, mmalign::PreNorm>(
        {.layers = 2, .block = {.dim = 64, .heads = 4, .mlp_hidden = 256, .activation = mmalign::Activation::quick_gelu}});
}

int main() {
    if (mmalign::cuda::device_count() == 0) {
        std::puts("no CUDA device");
        return 77;
    }
    using Cpu = mmalign::CpuBackend<float>;
    using Gpu = mmalign::CudaBackend<mmalign::bfloat16>;  // bf16 storage, fp32 accumulation; or CudaBackend<float>
    Cpu cpu;
    Gpu gpu;  // its stream, cuBLAS handle and scratch; options: Gpu({.device = 1, .fused_attention = true})

    auto host = make_encoder<Cpu>();
    mmalign::init_normal(host, /*seed=*/0);      // or io::load_parameters(host, checkpoint)
    auto encoder = make_encoder<Gpu>();
    mmalign::copy_parameters(gpu, encoder, host);  // host floats → device, rounded to bf16

    mmalign::Tensor<float> x({2, 7, 64}), y(x.shape()), y_cpu(x.shape());  // [B, T, D] on the host
    for (mmalign::index_t i = 0; i < x.numel(); ++i) x.data()[i] = std::sin(0.37f * float(i));  // distinct tokens
    Gpu::Tensor x_gpu(x.shape()), y_gpu(x.shape());                             // DeviceTensor<bfloat16>
    gpu.from_host(x.view(), x_gpu.view());
    std::vector<std::int32_t> keep = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0};  // HF attention_mask: host memory
    encoder.forward(gpu, x_gpu.view(), {}, {.key_keep = keep.data(), .causal = true}, {}, y_gpu.view());
    gpu.to_host(y_gpu.view(), y.view());  // waits for the device

    host.forward(cpu, x.view(), {}, {.key_keep = keep.data(), .causal = true}, {}, y_cpu.view());
    double worst = 0, largest = 0;
    for (mmalign::index_t i = 0; i < y.numel(); ++i) {
        worst = std::max(worst, double(std::abs(y.data()[i] - y_cpu.data()[i])));
        largest = std::max(largest, double(std::abs(y_cpu.data()[i])));
    }
    std::printf("y[0,0,0] = %.4f on the GPU (bf16), %.4f on the CPU (float); largest difference %.3g\n", y(0, 0, 0),
                y_cpu(0, 0, 0), worst);
    return worst <= 8 * std::ldexp(1.0, -8) * largest ? 0 : 1;  // 8 bf16 roundings of the largest value
}
