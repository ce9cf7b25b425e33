// benchmarks/gpu/bench_gpu.cu — throughput of the CUDA backend on one GPU.
//
// (a) Square fp32 products C = A·B (row-major, both Trans::N) through CudaBackend::gemm and
//     through cublasSgemm called directly (the same column-major trick by hand), with exact fp32
//     and with TF32 tensor cores, in GFLOP/s = 2n³ / time.
// (b) cuBLAS's bf16 gemm (bf16 inputs, fp32 accumulation) at n = 8192: the peak the encoder rows
//     are compared with.
// (c) CLIP's image encoders end to end (HF get_image_features: patch embedding, class token,
//     positions, pre-LN, the encoder layers, post-LN, visual projection; inference, no saved
//     activations) at full size — ViT-B/32 (12 layers, D 768, 50 tokens; label "clip-b32") and
//     ViT-L/14 (24 layers, D 1024, 257 tokens; label "clip-l14") — loaded from random-weight HF
//     folders (config.json + model.safetensors, made by benchmarks/torch/cpu_clip.py make) that
//     benchmarks/torch/gpu_clip.py loads into transformers' CLIPModel too; batch 1, 32 and 256,
//     fp32 and TF32 with plain and fused attention, then the same checkpoint rounded into
//     Clip<CudaBackend<bfloat16>> (bf16 storage, fp32 accumulation; plain, fused (tensor-core
//     forward), and plain with the projections' biases fused into cuBLASLt products, impl
//     "mmalign-lt"), in images per second and % of the cuBLAS bf16 peak.
// Timing: CUDA events around each call on the backend's stream, after warm-up calls; the median
// of the repetitions counts. Inputs and weights are random (never zeros). Every product is
// checked (mmalign against cuBLAS, both against double-precision dot products at sampled
// entries) and the encoder's features must be finite, with TF32 close to fp32 (2e-2 relative
// norm), fused attention equal to the plain path (1e-5 in fp32) and bf16 within 5e-2 of fp32; the
// program exits 1 if a check fails. The fp32 features of the folder's 16 input images go to
// <folder>/features_mmalign.safetensors for gpu_clip.py's comparison with transformers. Output:
// one "RESULT" line per measurement (parsed by scripts/gpu-check.sh), then a table.
//
//   bench_gpu [--clip-dir DIR] [--sizes 1024,2048,4096] [--batches 1,32,256] [--models b32,l14]
//             [--reps N] [--no-gemm] [--no-vit] [--quick]
// DIR holds vit-base-patch32/ and vit-large-patch14/; without it the encoder rows are skipped.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "mmalign/backend/cuda/backend.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/models/clip.hpp"

namespace {

using mmalign::index_t;
using Be = mmalign::CudaBackend<float>;

struct Options {
    std::vector<int> sizes{1024, 2048, 4096};
    std::vector<int> batches{1, 32, 256};
    int reps = 20;
    bool gemm = true, vit = true;
    std::vector<std::string> models{"b32", "l14"};
    std::string clip_dir;  // holds vit-base-patch32/ and vit-large-patch14/ (cpu_clip.py make)
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
        else if (a == "--clip-dir") o.clip_dir = next();
        else if (a == "--models") {
            o.models.clear();
            for (std::string rest = next(); !rest.empty();) {
                const std::size_t comma = rest.find(',');
                o.models.push_back(rest.substr(0, comma));
                rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
                if (o.models.back() != "b32" && o.models.back() != "l14") {
                    std::fprintf(stderr, "bench_gpu: --models takes b32 and/or l14\n");
                    std::exit(2);
                }
            }
        }
        else if (a == "--quick") {
            o.sizes = {256, 512};
            o.batches = {1, 4};
            o.reps = 3;
        } else {
            std::fprintf(stderr,
                         "usage: bench_gpu [--clip-dir DIR] [--sizes 1024,2048,4096] [--batches 1,32,256] [--models b32,l14] "
                         "[--reps N] [--no-gemm] [--no-vit] [--quick]\n");
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

/// A CLIP layout benchmarked: its --models key, RESULT label, and the folder name (the layouts of
/// tests/fixtures/clip_layouts, made into random-weight HF folders by
/// `benchmarks/torch/cpu_clip.py make --dir <clip-dir>/<folder> --layout <folder>`).
struct ClipLayout {
    const char* key;
    const char* label;
    const char* folder;
};
constexpr ClipLayout clip_b32{"b32", "clip-b32", "vit-base-patch32"};
constexpr ClipLayout clip_l14{"l14", "clip-l14", "vit-large-patch14"};

double relative_difference(const mmalign::Tensor<float>& out, const mmalign::Tensor<float>& ref) {
    double d2 = 0, r2 = 0;
    for (index_t i = 0; i < out.numel(); ++i) {
        const double d = double(out.data()[i]) - ref.data()[i];
        d2 += d * d;
        r2 += double(ref.data()[i]) * ref.data()[i];
    }
    return std::sqrt(d2 / std::max(r2, 1e-30));
}

/// Matmul FLOPs (2 per multiply-add) of get_image_features for one image: the patch embedding,
/// every layer's projections, scores, weighted sums and MLP over T = patches + 1 tokens, and the
/// visual projection.
template <class Config>
double image_gflop(const Config& c) {
    const auto& v = c.vision;
    const double N = double(v.patches()), T = N + 1, D = double(v.hidden), F = double(v.mlp_hidden);
    const double K = double(v.channels) * double(v.patch_size) * double(v.patch_size);
    return (2 * N * K * D + double(v.layers) * (8 * T * D * D + 4 * T * T * D + 4 * T * D * F) +
            2 * D * double(c.projection_dim)) * 1e-9;
}

/// CLIP's image encoder end to end, HF get_image_features (pixels → patch embedding, class token,
/// positions, pre-LN, the pre-norm layers, post-LN of the class token, visual projection), from a
/// HF folder that PyTorch (benchmarks/torch/gpu_clip.py) loads too: fp32 and TF32 with plain and
/// fused attention, and the same checkpoint rounded into bf16 storage (plain, fused, cuBLASLt
/// bias epilogues). Batches are tiled from the folder's inputs.safetensors pixel_values. The fp32
/// plain features of those images are written to <folder>/features_mmalign.safetensors, which
/// gpu_clip.py compares with HF's.
void bench_clip_image(Be& be, const Options& o, const ClipLayout& m, double bf16_peak_tflops) {
    namespace io = mmalign::io;
    using Be16 = mmalign::CudaBackend<mmalign::bfloat16>;
    const std::string dir = o.clip_dir + "/" + m.folder;
    const auto model = mmalign::Clip<Be>::from_pretrained(be, dir);
    const mmalign::Tensor<float> pool =
        io::SafetensorsFile::open(dir + "/inputs.safetensors").read<float>("pixel_values");
    const auto& vc = model.config.vision;
    if (pool.rank() != 4 || pool.dim(0) < 1 || pool.dim(1) != vc.channels || pool.dim(2) != vc.image_size ||
        pool.dim(3) != vc.image_size)
        throw mmalign::ShapeError(dir + "/inputs.safetensors: pixel_values has shape " + pool.shape().str() +
                                  ", expected [n, " + std::to_string(vc.channels) + ", " +
                                  std::to_string(vc.image_size) + ", " + std::to_string(vc.image_size) + "]");
    const index_t E = model.config.projection_dim, per_image = pool.numel() / pool.dim(0);
    auto pixels_for = [&](index_t B) {  // image i of a batch is pool image i mod n
        mmalign::Tensor<float> h(mmalign::Shape{B, pool.dim(1), pool.dim(2), pool.dim(3)});
        for (index_t i = 0; i < B; ++i)
            std::copy_n(pool.data() + (i % pool.dim(0)) * per_image, per_image, h.data() + i * per_image);
        return h;
    };
    {  // the parity file first, so that a later failure cannot cost the comparison with transformers
        mmalign::DeviceTensor<float> px(pool.shape()), y(mmalign::Shape{pool.dim(0), E});
        be.from_host(pool.cview(), px.view());
        model.image_features(be, px.view(), y.view());
        const mmalign::Tensor<float> f = y.to_host();
        io::save_safetensors(dir + "/features_mmalign.safetensors", {io::TensorToSave("features", f.cview())},
                             {{"what", "mmalign CudaBackend<float> get_image_features of inputs.safetensors"}});
    }
    const double gflop_per_image = image_gflop(model.config);
    const index_t tokens = vc.patches() + 1;
    std::map<int, mmalign::Tensor<float>> reference;  // fp32 plain features per batch size
    // Times `run` on `stream`, records the RESULT line and prints the rate and share of the peak.
    auto measure = [&](int batch, cudaStream_t stream, auto&& run, const std::string& prec, const std::string& impl) {
        const std::string what = std::string(m.label) + " b=" + std::to_string(batch);
        const int reps = batch >= 256 ? std::max(3, o.reps / (tokens > 100 ? 4 : 2)) : o.reps;
        const double ms = median_ms(stream, 2, reps, run);
        const double tflops = gflop_per_image * batch / ms;
        result(what, prec, impl, batch / (ms * 1e-3), "img/s");
        std::printf("  %s %s %s: %.3f ms per forward, %.1f TFLOP/s", what.c_str(), prec.c_str(), impl.c_str(), ms,
                    tflops);
        if (bf16_peak_tflops > 0) std::printf(", %.0f%% of the cuBLAS bf16 peak", 100 * tflops / bf16_peak_tflops);
        std::printf("\n");
    };
    // Finite, and within `limit` (relative norm) of the batch's fp32 plain features (the first
    // features checked for a batch become that reference).
    auto check = [&](int batch, const mmalign::Tensor<float>& out, const std::string& config, double limit) {
        const std::string what = std::string(m.label) + " b=" + std::to_string(batch);
        for (float v : out)
            if (!std::isfinite(v)) {
                fail(what + " " + config + ": non-finite output");
                return;
            }
        auto it = reference.find(batch);
        if (it == reference.end()) {
            reference.emplace(batch, out);
            return;
        }
        const double rel = relative_difference(out, it->second);
        std::printf("  %s %s: features vs fp32 plain, relative norm difference %.2e\n", what.c_str(), config.c_str(),
                    rel);
        if (!(rel < limit)) fail(what + " " + config + ": features far from fp32 plain (" + std::to_string(rel) + ")");
    };

    for (int batch : o.batches) {
        const mmalign::Tensor<float> pixels = pixels_for(batch);
        mmalign::DeviceTensor<float> px(pixels.shape()), y(mmalign::Shape{index_t(batch), E});
        be.from_host(pixels.cview(), px.view());
        for (bool tf32 : {false, true}) {
            be.set_tf32(tf32);
            const std::string prec = tf32 ? "tf32" : "fp32";
            for (bool fused : {false, true}) {  // plain attention (cuBLAS + softmax kernel), then fused kernels
                be.set_fused_attention(fused);
                measure(batch, be.stream(), [&] { model.image_features(be, px.view(), y.view()); }, prec,
                        fused ? "mmalign-fused" : "mmalign");
                check(batch, y.to_host(), prec + (fused ? " fused" : ""), tf32 ? 2e-2 : 1e-5);
            }
        }
    }
    be.set_tf32(false);
    be.set_fused_attention(false);

    // bf16 storage, fp32 accumulation: the same checkpoint and pixels rounded; plain attention,
    // fused attention, and plain attention with the bias-only projections' bias fused into
    // cuBLASLt products. Last, and each configuration on its own, so that a failure here costs
    // only bf16 rows.
    try {
        Be16 be16;
        const auto model16 = mmalign::Clip<Be16>::from_pretrained(be16, dir);
        for (int batch : o.batches) {
            const mmalign::Tensor<float> pixels = pixels_for(batch);
            mmalign::DeviceTensor<mmalign::bfloat16> px16(pixels.shape()), y16(mmalign::Shape{index_t(batch), E});
            be16.from_host(pixels.cview(), px16.view());
            for (const char* impl : {"mmalign", "mmalign-fused", "mmalign-lt"}) {
                be16.set_fused_attention(std::string(impl) == "mmalign-fused");
                be16.set_lt_epilogue(std::string(impl) == "mmalign-lt");
                try {
                    measure(batch, be16.stream(), [&] { model16.image_features(be16, px16.view(), y16.view()); },
                            "bf16", impl);
                    mmalign::Tensor<float> out(y16.shape());
                    be16.to_host(y16.cview(), out.view());
                    check(batch, out, std::string("bf16 ") + impl, 5e-2);
                } catch (const std::exception& e) {
                    fail(std::string(m.label) + " b=" + std::to_string(batch) + " bf16 " + impl + ": " + e.what());
                }
            }
        }
    } catch (const std::exception& e) {
        fail(std::string(m.label) + " bf16: " + e.what());
    }
}

/// cuBLAS bf16 gemm (bf16 inputs, fp32 accumulation and output: cublasGemmEx with
/// CUBLAS_COMPUTE_32F) at n = 8192, in TFLOP/s: the peak the ViT-L/14 rows are compared with.
double bench_bf16_peak(Be& be, const Options& o) {
    const int n = 8192;
    const std::size_t nn = std::size_t(n) * n;
    __nv_bfloat16 *a = nullptr, *b = nullptr;
    float* c = nullptr;
    MMALIGN_CUDA_CHECK(cudaMalloc(&a, nn * sizeof(__nv_bfloat16)));
    MMALIGN_CUDA_CHECK(cudaMalloc(&b, nn * sizeof(__nv_bfloat16)));
    MMALIGN_CUDA_CHECK(cudaMalloc(&c, nn * sizeof(float)));
    std::vector<float> h(nn);
    std::vector<__nv_bfloat16> hb(nn);
    fill_random(h, 31, 1.0f);
    for (std::size_t i = 0; i < nn; ++i) hb[i] = __float2bfloat16(h[i]);
    MMALIGN_CUDA_CHECK(cudaMemcpy(a, hb.data(), nn * sizeof(__nv_bfloat16), cudaMemcpyHostToDevice));
    MMALIGN_CUDA_CHECK(cudaMemcpy(b, hb.data(), nn * sizeof(__nv_bfloat16), cudaMemcpyHostToDevice));
    cublasHandle_t handle;
    MMALIGN_CUBLAS_CHECK(cublasCreate(&handle));
    MMALIGN_CUBLAS_CHECK(cublasSetStream(handle, be.stream()));
    const float one = 1.0f, zero = 0.0f;
    auto run = [&] {
        MMALIGN_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, b, CUDA_R_16BF, n, a,
                                          CUDA_R_16BF, n, &zero, c, CUDA_R_32F, n, CUBLAS_COMPUTE_32F,
                                          CUBLAS_GEMM_DEFAULT));
    };
    const double ms = median_ms(be.stream(), 2, std::max(3, o.reps / 2), run);
    const double tflops = 2.0 * n * double(n) * n * 1e-12 / (ms * 1e-3);
    result("gemm-bf16 n=8192", "bf16", "cublas", tflops * 1e3, "GFLOP/s");
    MMALIGN_CUBLAS_CHECK(cublasDestroy(handle));
    MMALIGN_CUDA_CHECK(cudaFree(a));
    MMALIGN_CUDA_CHECK(cudaFree(b));
    MMALIGN_CUDA_CHECK(cudaFree(c));
    return tflops;
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
        const double bf16_peak = o.gemm ? bench_bf16_peak(be, o) : 0.0;
        if (o.vit && o.clip_dir.empty())
            std::printf("bench_gpu: no --clip-dir, so no CLIP image-encoder rows (make the folders with "
                        "benchmarks/torch/cpu_clip.py make)\n");
        else if (o.vit)
            for (const std::string& model : o.models) {
                const ClipLayout& layout = model == "l14" ? clip_l14 : clip_b32;
                try {  // one model's failure is reported and the next still runs
                    bench_clip_image(be, o, layout, bf16_peak);
                } catch (const std::exception& e) {
                    fail(std::string(layout.label) + ": " + e.what());
                }
            }
    } catch (const std::exception& e) {
        std::printf("bench_gpu: error: %s\n", e.what());
        return 1;
    }
    std::printf("\n%-16s %-5s %-14s %14s\n", "benchmark", "prec", "impl", "value");
    for (const Row& r : rows)
        std::printf("%-16s %-5s %-14s %14.1f %s\n", r.what.c_str(), r.precision.c_str(), r.impl.c_str(), r.value,
                    r.unit.c_str());
    if (failed) std::printf("bench_gpu: some checks FAILED\n");
    return failed ? 1 : 0;
}
