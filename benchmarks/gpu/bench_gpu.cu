// benchmarks/gpu/bench_gpu.cu — throughput of the CUDA backend on one GPU.
//
// (a) Square fp32 products C = A·B (row-major, both Trans::N) through CudaBackend::gemm and
//     through cublasSgemm called directly (the same column-major trick by hand), with exact fp32
//     and with TF32 tensor cores, in GFLOP/s = 2n³ / time.
// (b) A ViT-B/32-sized image encoder forward (inference, no saved activations): 12 pre-norm
//     layers, D = 768, H = 12, MLP 3072, quick_gelu, T = 50 tokens, built as
//     TransformerStack<CudaBackend<float>, PreNorm>, at batch 1, 32 and 256, fp32 and TF32, in
//     sequences per second. benchmarks/torch/gpu_vit.py runs the same stack in PyTorch.
// Timing: CUDA events around each call on the backend's stream, after warm-up calls; the median
// of the repetitions counts. Inputs and weights are random (never zeros). Every product is
// checked (mmalign against cuBLAS, both against double-precision dot products at sampled
// entries) and the encoder's output must be finite, with TF32 close to fp32; the program exits 1
// if a check fails. Output: one "RESULT" line per measurement (parsed by scripts/gpu-check.sh),
// then a table.
//
//   bench_gpu [--sizes 1024,2048,4096] [--batches 1,32,256] [--reps N] [--no-gemm] [--no-vit] [--quick]
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mmalign/backend/cuda/backend.hpp"
#include "mmalign/nn/transformer_stack.hpp"

namespace {

using mmalign::index_t;
using Be = mmalign::CudaBackend<float>;

struct Options {
    std::vector<int> sizes{1024, 2048, 4096};
    std::vector<int> batches{1, 32, 256};
    int reps = 20;
    bool gemm = true, vit = true;
};

std::vector<int> parse_list(const char* text) {
    std::vector<int> out;
    std::string s(text);
    std::size_t pos = 0;
    while (pos <= s.size()) {
        const std::size_t comma = s.find(',', pos);
        const std::string item = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        const int v = std::atoi(item.c_str());
        if (v <= 0) {
            std::fprintf(stderr, "bench_gpu: bad list item '%s'\n", item.c_str());
            std::exit(2);
        }
        out.push_back(v);
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    return out;
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "bench_gpu: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--sizes") o.sizes = parse_list(next());
        else if (a == "--batches") o.batches = parse_list(next());
        else if (a == "--reps") o.reps = std::max(1, std::atoi(next()));
        else if (a == "--no-gemm") o.gemm = false;
        else if (a == "--no-vit") o.vit = false;
        else if (a == "--quick") {
            o.sizes = {256, 512};
            o.batches = {1, 4};
            o.reps = 3;
        } else {
            std::fprintf(stderr,
                         "usage: bench_gpu [--sizes 1024,2048,4096] [--batches 1,32,256] [--reps N] [--no-gemm] "
                         "[--no-vit] [--quick]\n");
            std::exit(a == "--help" ? 0 : 2);
        }
    }
    return o;
}

/// Uniform values in [-a, a) from a counter-based generator (fast enough for 10⁸ values).
void fill_random(std::vector<float>& v, std::uint64_t seed, float a) {
    std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (float& f : v) {
        x += 0x9E3779B97F4A7C15ull;
        std::uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        f = a * (static_cast<float>(z >> 40) / static_cast<float>(1 << 24) * 2.0f - 1.0f);
    }
}

mmalign::DeviceTensor<float> random_device(Be& be, mmalign::Shape s, std::uint64_t seed, float a) {
    std::vector<float> h(static_cast<std::size_t>(s.numel()));
    fill_random(h, seed, a);
    mmalign::DeviceTensor<float> d(s);
    be.from_host(mmalign::ConstView<float>(h.data(), s), d.view());
    return d;
}

/// Median milliseconds of `reps` calls of f on `stream`, after `warmup` untimed calls.
template <class F>
double median_ms(cudaStream_t stream, int warmup, int reps, F&& f) {
    for (int i = 0; i < warmup; ++i) f();
    MMALIGN_CUDA_CHECK(cudaStreamSynchronize(stream));
    cudaEvent_t start, stop;
    MMALIGN_CUDA_CHECK(cudaEventCreate(&start));
    MMALIGN_CUDA_CHECK(cudaEventCreate(&stop));
    std::vector<float> t;
    for (int i = 0; i < reps; ++i) {
        MMALIGN_CUDA_CHECK(cudaEventRecord(start, stream));
        f();
        MMALIGN_CUDA_CHECK(cudaEventRecord(stop, stream));
        MMALIGN_CUDA_CHECK(cudaEventSynchronize(stop));
        float ms = 0;
        MMALIGN_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
        t.push_back(ms);
    }
    MMALIGN_CUDA_CHECK(cudaEventDestroy(start));
    MMALIGN_CUDA_CHECK(cudaEventDestroy(stop));
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

struct Row {
    std::string what, precision, impl;
    double value;
    std::string unit;
};
std::vector<Row> rows;
bool failed = false;

void result(const std::string& what, const std::string& precision, const std::string& impl, double value,
            const std::string& unit) {
    std::printf("RESULT %s %s %s %.2f %s\n", what.c_str(), precision.c_str(), impl.c_str(), value, unit.c_str());
    std::fflush(stdout);
    rows.push_back({what, precision, impl, value, unit});
}

void fail(const std::string& why) {
    std::printf("CHECK FAILED: %s\n", why.c_str());
    failed = true;
}

void bench_gemm(Be& be, const Options& o) {
    cublasHandle_t direct;
    MMALIGN_CUBLAS_CHECK(cublasCreate(&direct));
    MMALIGN_CUBLAS_CHECK(cublasSetStream(direct, be.stream()));
    for (int n : o.sizes) {
        const index_t N = n;
        auto a = random_device(be, {N, N}, 1, 1.0f), b = random_device(be, {N, N}, 2, 1.0f);
        mmalign::DeviceTensor<float> c_mm(mmalign::Shape{N, N}), c_blas(mmalign::Shape{N, N});
        const mmalign::Tensor<float> host_a = a.to_host(), host_b = b.to_host();
        for (bool tf32 : {false, true}) {
            const std::string prec = tf32 ? "tf32" : "fp32";
            be.set_tf32(tf32);
            MMALIGN_CUBLAS_CHECK(cublasSetMathMode(direct, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
            const float one = 1.0f, zero = 0.0f;
            auto run_mm = [&] {
                be.gemm(mmalign::Trans::N, mmalign::Trans::N, N, N, N, 1.0f, a.data(), N, b.data(), N, 0.0f,
                        c_mm.data(), N);
            };
            // Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ: B first, sizes n, m.
            auto run_blas = [&] {
                MMALIGN_CUBLAS_CHECK(
                    cublasSgemm(direct, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, b.data(), n, a.data(), n, &zero,
                                c_blas.data(), n));
            };
            const int reps = n >= 4096 ? std::max(3, o.reps / 2) : o.reps;
            // Interleave: mmalign, cuBLAS, mmalign, cuBLAS (best of two medians each).
            double t_mm = median_ms(be.stream(), 2, reps, run_mm), t_blas = median_ms(be.stream(), 2, reps, run_blas);
            t_mm = std::min(t_mm, median_ms(be.stream(), 1, reps, run_mm));
            t_blas = std::min(t_blas, median_ms(be.stream(), 1, reps, run_blas));
            const double gflop = 2.0 * N * N * N * 1e-9;
            const std::string what = "gemm n=" + std::to_string(n);
            result(what, prec, "mmalign", gflop / (t_mm * 1e-3), "GFLOP/s");
            result(what, prec, "cublas", gflop / (t_blas * 1e-3), "GFLOP/s");
            // Checks: mmalign against cuBLAS everywhere, and both against double at sampled entries.
            const mmalign::Tensor<float> hm = c_mm.to_host(), hb = c_blas.to_host();
            double max_diff = 0, max_ref = 0;
            for (index_t i = 0; i < hm.numel(); ++i) {
                max_diff = std::max(max_diff, double(std::abs(hm.data()[i] - hb.data()[i])));
                max_ref = std::max(max_ref, double(std::abs(hb.data()[i])));
            }
            if (!(max_diff <= 1e-5 * max_ref)) fail(what + " " + prec + ": mmalign differs from cuBLAS by " + std::to_string(max_diff));
            double worst = 0;
            for (int s = 0; s < 64; ++s) {
                const index_t i = (s * 7919) % N, j = (s * 104729 + 13) % N;
                double ref = 0;
                for (index_t k = 0; k < N; ++k) ref += double(host_a(i, k)) * double(host_b(k, j));
                worst = std::max(worst, std::abs(double(hm(i, j)) - ref) / std::max(1.0, max_ref));
            }
            const double limit = tf32 ? 1e-2 : 1e-5;
            if (!(worst <= limit)) fail(what + " " + prec + ": error against double " + std::to_string(worst));
        }
    }
    be.set_tf32(false);
    MMALIGN_CUBLAS_CHECK(cublasDestroy(direct));
}

void bench_vit(Be& be, const Options& o) {
    using Stack = mmalign::TransformerStack<Be, mmalign::PreNorm>;
    const index_t L = 12, D = 768, H = 12, F = 3072, T = 50;
    Stack enc({.layers = L,
               .block = {.dim = D, .heads = H, .mlp_hidden = F, .activation = mmalign::Activation::quick_gelu,
                         .eps = 1e-5}});
    std::uint64_t seed = 100;
    enc.visit([&](const std::string& name, mmalign::BasicParameter<mmalign::DeviceTensor<float>>& p) {
        std::vector<float> h(static_cast<std::size_t>(p.value.numel()));
        const bool bias = name.ends_with("bias"), norm = name.find("layer_norm") != std::string::npos;
        fill_random(h, seed++, bias || norm ? 0.02f : 0.035f);  // U(-a, a): std 0.02 for weights
        if (norm && !bias)
            for (float& v : h) v += 1.0f;
        be.from_host(mmalign::ConstView<float>(h.data(), p.value.shape()), p.value.view());
    });
    const double gflop_per_seq =
        L * (4.0 * 2 * T * D * D + 2.0 * 2 * T * T * D + 2.0 * 2 * T * D * F) * 1e-9;
    for (int batch : o.batches) {
        const index_t Bn = batch;
        auto x = random_device(be, {Bn, T, D}, 7, 1.0f);
        mmalign::DeviceTensor<float> y(mmalign::Shape{Bn, T, D}), y_fp32(mmalign::Shape{Bn, T, D});
        const std::string what = "vit b=" + std::to_string(batch);
        for (bool tf32 : {false, true}) {
            be.set_tf32(tf32);
            auto run = [&] { enc.forward(be, x.view(), {}, {}, {}, y.view()); };
            const int reps = batch >= 256 ? std::max(3, o.reps / 2) : o.reps;
            const double ms = median_ms(be.stream(), 2, reps, run);
            const std::string prec = tf32 ? "tf32" : "fp32";
            result(what, prec, "mmalign", batch / (ms * 1e-3), "seq/s");
            std::printf("  %s %s: %.3f ms per forward, %.1f TFLOP/s\n", what.c_str(), prec.c_str(), ms,
                        gflop_per_seq * batch / ms);
            const mmalign::Tensor<float> out = y.to_host();
            for (float v : out)
                if (!std::isfinite(v)) {
                    fail(what + " " + prec + ": non-finite output");
                    break;
                }
            if (!tf32) {
                be.copy(y.view(), y_fp32.view());
            } else {
                const mmalign::Tensor<float> ref = y_fp32.to_host();
                double d2 = 0, r2 = 0;
                for (index_t i = 0; i < out.numel(); ++i) {
                    const double d = double(out.data()[i]) - ref.data()[i];
                    d2 += d * d;
                    r2 += double(ref.data()[i]) * ref.data()[i];
                }
                const double rel = std::sqrt(d2 / std::max(r2, 1e-30));
                std::printf("  %s: TF32 output vs fp32, relative norm difference %.2e\n", what.c_str(), rel);
                if (!(rel < 2e-2)) fail(what + ": TF32 output far from fp32 (" + std::to_string(rel) + ")");
            }
        }
    }
    be.set_tf32(false);
}

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse(argc, argv);
    if (mmalign::cuda::device_count() == 0) {
        std::printf("bench_gpu: no CUDA device\n");
        return 77;
    }
    try {
        cudaDeviceProp prop{};
        int dev = 0;
        MMALIGN_CUDA_CHECK(cudaGetDevice(&dev));
        MMALIGN_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
        std::printf("device: %s, %d SMs, compute capability %d.%d\n", prop.name, prop.multiProcessorCount, prop.major,
                    prop.minor);
        Be be;
        if (o.gemm) bench_gemm(be, o);
        if (o.vit) bench_vit(be, o);
    } catch (const std::exception& e) {
        std::printf("bench_gpu: error: %s\n", e.what());
        return 1;
    }
    std::printf("\n%-16s %-5s %-8s %14s\n", "benchmark", "prec", "impl", "value");
    for (const Row& r : rows)
        std::printf("%-16s %-5s %-8s %14.1f %s\n", r.what.c_str(), r.precision.c_str(), r.impl.c_str(), r.value,
                    r.unit.c_str());
    if (failed) std::printf("bench_gpu: some checks FAILED\n");
    return failed ? 1 : 0;
}
