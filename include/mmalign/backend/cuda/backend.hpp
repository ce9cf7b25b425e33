// mmalign/backend/cuda/backend.hpp — CudaBackend<float>: the op set of core/backend.hpp on one
// CUDA device, through cuBLAS and the kernels in kernels/.
//
// The backend object holds the run-time state: the device, a stream (its own, or one passed in),
// the cuBLAS handle and its workspace, the cuBLASLt plan cache (lt_plans.hpp), and a device
// scratch arena. Every op is queued on that stream, so ops run in program order on the device and
// the host returns early. Semantics are
// those of CpuBackend (backend/cpu/backend.hpp), op by op, with these conventions:
//  * Every T pointer and view (tensors, bias, mean, rstd, lse, norm, AttentionMask::additive)
//    is device memory. Integer arrays (token ids, targets, AttentionMask::key_keep) are HOST
//    memory, as the op set's contract says; the ops check them on the host and upload them into
//    scratch on the stream — except a key_keep that upload_mask has already placed in device
//    memory (AttentionMask::key_keep_resident), which modules upload once per forward or
//    decoding step instead of once per attention call.
//  * Ops that return a value to the host (cross_entropy_forward's loss, sum, mean) and the
//    transfers from_host / to_host synchronise the stream; nothing else does.
//  * Products are fp32 (cuBLAS's default math: no TF32) unless Options::tf32 or set_tf32(true)
//    allows TF32 tensor cores, which keep about 10 mantissa bits of each operand.
//  * CudaBackend<bfloat16> and CudaBackend<float16> store tensors in 16 bits and compute in
//    float (Compute): products are cuBLAS's 16-bit gemms with fp32 accumulation (tensor cores),
//    every kernel loads into float and rounds once on store, and the statistics a backward needs
//    (LayerNorm mean/rstd, attention and cross-entropy log-sum-exps, L2 norms) are float tensors.
// Row-major products map onto column-major cuBLAS through the transpose identity: C = op(A)·op(B)
// in row-major memory is Cᵀ = op(B)ᵀ·op(A)ᵀ in column-major memory, so cuBLAS gets (B, A) in
// that order with the same transpose flags and with m and n exchanged.
// Only nvcc compiles this header (it includes the CUDA runtime and the kernels).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "mmalign/backend/cuda/arena.hpp"
#include "mmalign/backend/cuda/device_tensor.hpp"
#include "mmalign/backend/cuda/error.hpp"
#include "mmalign/backend/cuda/kernels/attention.cuh"
#include "mmalign/backend/cuda/kernels/attention_wmma.cuh"
#include "mmalign/backend/cuda/kernels/gather.cuh"
#include "mmalign/backend/cuda/kernels/layer_norm.cuh"
#include "mmalign/backend/cuda/kernels/losses.cuh"
#include "mmalign/backend/cuda/kernels/pointwise.cuh"
#include "mmalign/backend/cuda/kernels/reduce.cuh"
#include "mmalign/backend/cuda/kernels/softmax.cuh"
#include "mmalign/backend/cuda/lt_plans.hpp"
#include "mmalign/core/backend.hpp"
#include "mmalign/core/contracts/cross_entropy.hpp"  // the result and target check of every backend
#include "mmalign/core/contracts/embedding.hpp"      // the id check of every backend
#include "mmalign/core/contracts/patchify.hpp"       // the shape check of every backend
#include "mmalign/core/ops.hpp"
#include "mmalign/core/tensor.hpp"

namespace mmalign {

template <class T = float>
class CudaBackend {
    static_assert(std::is_same_v<T, float> || is_16bit_float_v<T>,
                  "mmalign: CudaBackend stores float, bfloat16 or float16 (and computes in float); double has no "
                  "kernels on this backend.");

public:
    using Scalar = T;
    using Compute = float;
    using Tensor = DeviceTensor<T>;  // what modules own: parameters, saved activations
    using ComputeTensor = DeviceTensor<Compute>;
    using IndexTensor = DeviceTensor<std::int32_t>;  // a mask's key_keep in device memory (upload_mask)
    using Scope = cuda::DeviceArena::Scope<T>;
    using CrossEntropyResult = mmalign::CrossEntropyResult<Compute>;
    using C = Compute;

    struct Options {
        int device = -1;                 // -1: the current device
        bool tf32 = false;               // allow TF32 tensor cores in products (off: exact fp32)
        cudaStream_t stream = nullptr;   // null: the backend creates and owns a stream. A stream passed
                                         // in must be a blocking one (not cudaStreamNonBlocking), so
                                         // that DeviceTensor's own operations are ordered with it.
        std::size_t workspace_bytes = std::size_t(32) << 20;  // cuBLAS workspace
        bool fused_attention = false;    // MultiHeadAttention through attention_forward/backward
        bool lt_epilogue = false;        // Linear's bias/ReLU/tanh-GELU fused into a cuBLASLt product
        bool wmma_attention = true;      // 16-bit fused attention forward on tensor cores where it fits
    };

    CudaBackend() : CudaBackend(Options{}) {}
    explicit CudaBackend(Options o) {
        if (o.device >= 0) MMALIGN_CUDA_CHECK(cudaSetDevice(o.device));
        MMALIGN_CUDA_CHECK(cudaGetDevice(&device_));
        try {
            if (o.stream) {
                unsigned flags = 0;
                MMALIGN_CUDA_CHECK(cudaStreamGetFlags(o.stream, &flags));
                if (flags & cudaStreamNonBlocking)
                    throw ArgumentError("CudaBackend: the stream passed in is non-blocking; DeviceTensor's operations "
                                        "run on the legacy default stream and would not be ordered with it");
                stream_ = o.stream;
            } else {
                MMALIGN_CUDA_CHECK(cudaStreamCreate(&stream_));
                owns_stream_ = true;
            }
            MMALIGN_CUBLAS_CHECK(cublasCreate(&cublas_));
            MMALIGN_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
            if (o.workspace_bytes) {
                MMALIGN_CUDA_CHECK(cudaMalloc(&workspace_, o.workspace_bytes));
                MMALIGN_CUBLAS_CHECK(cublasSetWorkspace(cublas_, workspace_, o.workspace_bytes));
            }
            workspace_bytes_ = o.workspace_bytes;
            set_tf32(o.tf32);
            fused_attention_ = o.fused_attention;
            lt_epilogue_ = o.lt_epilogue;
            wmma_attention_ = o.wmma_attention;
            int major = 0, smem_optin = 0;
            MMALIGN_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device_));
            MMALIGN_CUDA_CHECK(cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device_));
            tensor_cores_16bit_ = major >= 8;
            smem_optin_ = static_cast<std::size_t>(smem_optin);
        } catch (...) {
            release();
            throw;
        }
    }
    CudaBackend(const CudaBackend&) = delete;
    CudaBackend& operator=(const CudaBackend&) = delete;
    ~CudaBackend() { release(); }

    /// Host threads the ops use: they run on the device, so one.
    int threads() const { return 1; }
    int device() const { return device_; }
    cudaStream_t stream() const { return stream_; }
    cublasHandle_t cublas() const { return cublas_; }
    bool tf32() const { return tf32_; }
    void set_tf32(bool on) {
        // 16-bit storage: forbid cuBLAS's reduced-precision (16-bit) sums of split-K partials, so a
        // product is accumulated in fp32 and rounded once, as documented.
        const int mode = (on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH) |
                         (is_16bit_float_v<T> ? CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION : 0);
        MMALIGN_CUBLAS_CHECK(cublasSetMathMode(cublas_, static_cast<cublasMath_t>(mode)));
        tf32_ = on;
    }
    /// Waits until every op queued so far has finished (and reports its errors).
    void synchronize() { MMALIGN_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

    /// Temporaries for one call: `auto sc = be.scope(); auto t = sc.tensor({B, T, D});` (device memory).
    Scope scope() { return Scope(arena_, stream_); }
    const cuda::DeviceArena& arena() const { return arena_; }

    // ---- products -------------------------------------------------------------------------
    /// C[m, n] = alpha · op(A)[m, k] · op(B)[k, n] + beta · C, row-major with leading dimensions.
    /// 16-bit T: cublasGemmEx with fp32 accumulation (tensor cores), C rounded once.
    void gemm(Trans ta, Trans tb, index_t m, index_t n, index_t k, C alpha, const T* a, index_t lda, const T* b,
              index_t ldb, C beta, T* c, index_t ldc) {
        check_gemm(ta, tb, m, n, k, lda, ldb, ldc, 1);
        if (m == 0 || n == 0) return;
        if (k == 0) return scale_matrices(beta, c, m, n, ldc, 0, 1);
        if constexpr (std::is_same_v<T, float>)
            MMALIGN_CUBLAS_CHECK(cublasSgemm(cublas_, op(tb), op(ta), to_int(n), to_int(m), to_int(k), &alpha, b,
                                             to_int(ldb), a, to_int(lda), &beta, c, to_int(ldc)));
        else
            MMALIGN_CUBLAS_CHECK(cublasGemmEx(cublas_, op(tb), op(ta), to_int(n), to_int(m), to_int(k), &alpha, b,
                                              data_type, to_int(ldb), a, data_type, to_int(lda), &beta, c, data_type,
                                              to_int(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    /// `batch` independent products; operand i starts at a + i·stride_a (likewise b, c).
    void gemm_strided_batched(Trans ta, Trans tb, index_t m, index_t n, index_t k, C alpha, const T* a, index_t lda,
                              index_t stride_a, const T* b, index_t ldb, index_t stride_b, C beta, T* c, index_t ldc,
                              index_t stride_c, index_t batch) {
        check_gemm(ta, tb, m, n, k, lda, ldb, ldc, batch);
        if (m == 0 || n == 0 || batch == 0) return;
        if (k == 0) return scale_matrices(beta, c, m, n, ldc, stride_c, batch);
        if constexpr (std::is_same_v<T, float>)
            MMALIGN_CUBLAS_CHECK(cublasSgemmStridedBatched(cublas_, op(tb), op(ta), to_int(n), to_int(m), to_int(k),
                                                           &alpha, b, to_int(ldb), stride_b, a, to_int(lda), stride_a,
                                                           &beta, c, to_int(ldc), stride_c, to_int(batch)));
        else
            MMALIGN_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
                cublas_, op(tb), op(ta), to_int(n), to_int(m), to_int(k), &alpha, b, data_type, to_int(ldb), stride_b, a,
                data_type, to_int(lda), stride_a, &beta, c, data_type, to_int(ldc), stride_c, to_int(batch),
                CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }

    /// outer × inner products; (o, i) starts at a + o·outer_a + i·inner_a (likewise b, c). One
    /// strided batch when the two levels collapse into one stride, else one pointer-array batch
    /// (attention's (batch, head) products over [B, T, H·d] tensors): a single cuBLAS call either way.
    void gemm_batched_2d(Trans ta, Trans tb, index_t m, index_t n, index_t k, C alpha, const T* a, index_t lda,
                         index_t outer_a, index_t inner_a, const T* b, index_t ldb, index_t outer_b, index_t inner_b,
                         C beta, T* c, index_t ldc, index_t outer_c, index_t inner_c, index_t outer, index_t inner) {
        check_gemm(ta, tb, m, n, k, lda, ldb, ldc, std::min(outer, inner));
        if (m == 0 || n == 0 || outer == 0 || inner == 0) return;
        if (inner == 1)
            return gemm_strided_batched(ta, tb, m, n, k, alpha, a, lda, outer_a, b, ldb, outer_b, beta, c, ldc, outer_c,
                                        outer);
        if (outer == 1 || (outer_a == inner * inner_a && outer_b == inner * inner_b && outer_c == inner * inner_c))
            return gemm_strided_batched(ta, tb, m, n, k, alpha, a, lda, inner_a, b, ldb, inner_b, beta, c, ldc, inner_c,
                                        outer * inner);
        if (k == 0) {
            for (index_t o = 0; o < outer; ++o) scale_matrices(beta, c + o * outer_c, m, n, ldc, inner_c, inner);
            return;
        }
        const index_t count = outer * inner;
        auto sc = scope();
        const T** pa = sc.template buffer<const T*>(count);
        const T** pb = sc.template buffer<const T*>(count);
        T** pc = sc.template buffer<T*>(count);
        launch_pointwise(count, cuda::kernels::batch_pointers_kernel<T>, a, outer_a, inner_a, b, outer_b, inner_b, c,
                         outer_c, inner_c, inner, count, pa, pb, pc);
        if constexpr (std::is_same_v<T, float>)
            MMALIGN_CUBLAS_CHECK(cublasSgemmBatched(cublas_, op(tb), op(ta), to_int(n), to_int(m), to_int(k), &alpha, pb,
                                                    to_int(ldb), pa, to_int(lda), &beta, pc, to_int(ldc), to_int(count)));
        else
            MMALIGN_CUBLAS_CHECK(cublasGemmBatchedEx(
                cublas_, op(tb), op(ta), to_int(n), to_int(m), to_int(k), &alpha,
                reinterpret_cast<const void* const*>(pb), data_type, to_int(ldb), reinterpret_cast<const void* const*>(pa),
                data_type, to_int(lda), &beta, reinterpret_cast<void* const*>(pc), data_type, to_int(ldc), to_int(count),
                CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }

    /// Whether linear_forward may fuse its bias and activation into a cuBLASLt product
    /// (lt_plans.hpp: bias, ReLU and tanh GELU, when no pre-activation is asked for).
    bool lt_epilogue() const { return lt_epilogue_; }
    void set_lt_epilogue(bool on) { lt_epilogue_ = on; }
    /// Plans cached so far by the cuBLASLt path (one per shape, precision and epilogue).
    std::size_t lt_plans() const { return lt_.size(); }

    /// y[M, N] = act(x[M, K] · w[N, K]ᵀ + bias[N]); `pre` (nullable, [M, N]) receives the value
    /// before the activation. `bias` may be null.
    void linear_forward(ConstView<T> x, ConstView<T> w, const T* bias, Activation act, TensorView<T> y, T* pre) {
        const index_t K = w.dim(1), N = w.dim(0), M = x.numel() / K;
        if (x.shape().cols() != K || y.numel() != M * N || y.shape().cols() != N)
            throw ShapeError("linear: input " + x.shape().str() + " and output " + y.shape().str() +
                             " do not fit weight " + w.shape().str());
        if (lt_epilogue_ && M * N > 0 && K > 0 && (pre == nullptr || act == Activation::none) &&
            cuda::LtPlanCache::fusable(act, bias != nullptr) &&
            lt_.linear(stream_, data_type, tf32_, M, N, K, x.data(), w.data(), bias, act, y.data(), workspace_,
                       workspace_bytes_))
            return;
        gemm(Trans::N, Trans::T, M, N, K, C(1), x.data(), K, w.data(), K, C(0), y.data(), N);
        if ((!bias && act == Activation::none) || M * N == 0) return;
        launch_pointwise(M * N, cuda::kernels::bias_activation_kernel<T>, y.data(), bias, act, pre, M, N);
    }

    // ---- normalisation ----------------------------------------------------------------------
    /// mean, rstd: [rows] or null (inference).
    void layer_norm_forward(ConstView<T> x, ConstView<T> w, ConstView<T> b, double eps, TensorView<T> y, C* mean,
                            C* rstd) {
        const index_t C = w.numel();
        check_rows(x, C, "layer_norm input");
        check_same(x, y, "layer_norm output");
        const index_t rows = x.shape().rows();
        if (rows == 0 || C == 0) return;
        cuda::kernels::layer_norm_forward_kernel<T>
            <<<cuda::kernels::warp_row_blocks(rows), cuda::kernels::rows_per_block * cuda::kernels::warp_size, 0,
               stream_>>>(x.data(), w.data(), b.data(), y.data(), mean, rstd, rows, C, eps);
        MMALIGN_CUDA_CHECK_LAUNCH(stream_);
    }
    /// d_x (assigned) may be empty; d_w, d_b (accumulated) may be null.
    void layer_norm_backward(ConstView<T> d_y, ConstView<T> x, ConstView<T> w, const C* mean, const C* rstd,
                             TensorView<T> d_x, T* d_w, T* d_b) {
        const index_t C = w.numel();
        check_same(x, d_y, "layer_norm d_y");
        if (!d_x.empty()) check_same(x, d_x, "layer_norm d_x");
        const index_t rows = x.shape().rows();
        if (rows == 0 || C == 0) return;
        if (!d_x.empty()) {
            cuda::kernels::layer_norm_backward_input_kernel<T>
                <<<cuda::kernels::warp_row_blocks(rows), cuda::kernels::rows_per_block * cuda::kernels::warp_size, 0,
                   stream_>>>(d_y.data(), x.data(), w.data(), mean, rstd, d_x.data(), rows, C);
            MMALIGN_CUDA_CHECK_LAUNCH(stream_);
        }
        if (!d_w && !d_b) return;
        auto sc = scope();
        const index_t splits = cuda::kernels::column_splits(rows), chunk = (rows + splits - 1) / splits;
        double* partial = sc.template buffer<double>(2 * splits * C);
        const dim3 grid(static_cast<unsigned>((C + cuda::kernels::warp_size - 1) / cuda::kernels::warp_size),
                        static_cast<unsigned>(splits));
        const dim3 block(cuda::kernels::warp_size, cuda::kernels::column_block_rows);
        cuda::kernels::layer_norm_backward_params_partial_kernel<T>
            <<<grid, block, 0, stream_>>>(d_y.data(), x.data(), mean, rstd, partial, rows, C, chunk);
        MMALIGN_CUDA_CHECK_LAUNCH(stream_);
        launch_pointwise(C, cuda::kernels::column_partials_accumulate_kernel<T>, partial, splits, C, d_w, d_b);
    }

    // ---- fused attention ----------------------------------------------------------------------
    /// Whether modules compute attention with attention_forward/backward (kernels/attention.cuh;
    /// semantics of cpu/attention.hpp) instead of gemm + attention_softmax + gemm.
    bool fused_attention() const { return fused_attention_; }
    void set_fused_attention(bool on) { fused_attention_ = on; }
    /// 16-bit storage: whether the fused forward runs on tensor cores (kernels/attention_wmma.cuh)
    /// for head widths 32, 64 and 128 on compute capability 8.0+, instead of the warp kernels.
    bool wmma_attention() const { return wmma_attention_; }
    void set_wmma_attention(bool on) { wmma_attention_ = on; }
    /// q, o: [B, Tq, H·dh]; k, v: rows of H·dh, batch b at b·kv_batch_stride; stats [B, H, Tq, 2] or
    /// null. Head widths up to 128. mask.key_keep is host memory, mask.additive device memory.
    void attention_forward(const T* q, const T* k, const T* v, index_t kv_batch_stride, index_t B, index_t H, index_t Tq,
                           index_t Tk, index_t dh, C scale, const AttentionMask<T>& mask, T* o, C* stats) {
        check_head_dim(dh);
        if (B * H * Tq == 0) return;
        auto sc = scope();
        const cuda::kernels::DeviceMask<T> dm = device_mask(sc, mask, B, Tq, Tk);
        if constexpr (is_16bit_float_v<T>) {
            if (wmma_attention_ && tensor_cores_16bit_ && B * H <= 65535) {
                // Each width needs its shared memory (52, 80, 136 KiB); cards with a 99 KiB limit
                // (sm_86, sm_89) take the warp kernels for width 128.
                namespace ck = cuda::kernels;
                const std::size_t need = dh == 32    ? ck::wmma_attention_smem<32>()
                                         : dh == 64  ? ck::wmma_attention_smem<64>()
                                         : dh == 128 ? ck::wmma_attention_smem<128>()
                                                     : 0;
                if (need != 0 && need <= smem_optin_) {
                    if (dh == 32) return attention_forward_wmma<32>(q, k, v, kv_batch_stride, B, H, Tq, Tk, scale, dm, o, stats);
                    if (dh == 64) return attention_forward_wmma<64>(q, k, v, kv_batch_stride, B, H, Tq, Tk, scale, dm, o, stats);
                    return attention_forward_wmma<128>(q, k, v, kv_batch_stride, B, H, Tq, Tk, scale, dm, o, stats);
                }
            }
        }
        cuda::kernels::attention_forward_kernel<T>
            <<<cuda::kernels::warp_row_blocks(B * H * Tq), cuda::kernels::rows_per_block * cuda::kernels::warp_size, 0,
               stream_>>>(q, k, v, kv_batch_stride, B, H, Tq, Tk, dh, scale, dm, o, stats);
        MMALIGN_CUDA_CHECK_LAUNCH(stream_);
    }
    /// d_q [B, Tq, H·dh], d_k, d_v [B, Tk, H·dh] assigned, from the forward's o and stats.
    void attention_backward(const T* q, const T* k, const T* v, index_t kv_batch_stride, index_t B, index_t H,
                            index_t Tq, index_t Tk, index_t dh, C scale, const AttentionMask<T>& mask, const T* o,
                            const T* d_o, const C* stats, T* d_q, T* d_k, T* d_v) {
        check_head_dim(dh);
        if (B * H == 0 || dh == 0) return;
        auto sc = scope();
        const cuda::kernels::DeviceMask<T> dm = device_mask(sc, mask, B, Tq, Tk);
        C* delta = sc.template buffer<C>(B * H * Tq);
        const unsigned threads = cuda::kernels::rows_per_block * cuda::kernels::warp_size;
        if (Tq > 0) {
            cuda::kernels::attention_backward_dq_kernel<T><<<cuda::kernels::warp_row_blocks(B * H * Tq), threads, 0, stream_>>>(
                q, k, v, kv_batch_stride, B, H, Tq, Tk, dh, scale, dm, o, d_o, stats, d_q, delta);
            MMALIGN_CUDA_CHECK_LAUNCH(stream_);
        }
        if (Tk > 0) {
            cuda::kernels::attention_backward_dkv_kernel<T><<<cuda::kernels::warp_row_blocks(B * H * Tk), threads, 0, stream_>>>(
                q, k, v, kv_batch_stride, B, H, Tq, Tk, dh, scale, dm, d_o, stats, delta, d_k, d_v);
            MMALIGN_CUDA_CHECK_LAUNCH(stream_);
        }
    }

    /// Copies mask.key_keep ([n]; host memory, or device memory when key_keep_resident) into `dst`
    /// on the stream and returns the mask pointing at it, marked resident, so that the attention
    /// ops read it where it is instead of uploading it on every call. The host array may be reused
    /// as soon as this returns (pageable memory is staged).
    AttentionMask<T> upload_mask(const AttentionMask<T>& mask, index_t n, IndexTensor& dst) {
        AttentionMask<T> m = mask;
        if (!mask.key_keep) return m;
        dst.resize(Shape{n});
        if (n)
            MMALIGN_CUDA_CHECK(cudaMemcpyAsync(dst.data(), mask.key_keep, static_cast<std::size_t>(n) * sizeof(std::int32_t),
                                               mask.key_keep_resident ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice,
                                               stream_));
        m.key_keep = dst.data();
        m.key_keep_resident = true;
        return m;
    }

    // ---- attention softmax --------------------------------------------------------------------
    /// scores [B, H, Tq, Tk] → probabilities, in place. mask.key_keep is host memory [B, Tk]
    /// (device memory when key_keep_resident); mask.additive is device memory.
    void attention_softmax_forward(TensorView<T> scores, C scale, const AttentionMask<T>& mask) {
        if (scores.rank() != 4) throw ShapeError("attention_softmax: expected [B, H, Tq, Tk], found " + scores.shape().str());
        const index_t B = scores.dim(0), H = scores.dim(1), Tq = scores.dim(2), Tk = scores.dim(3);
        if (scores.numel() == 0) return;
        auto sc = scope();
        const cuda::kernels::DeviceMask<T> dm = device_mask(sc, mask, B, Tq, Tk);
        cuda::kernels::attention_softmax_forward_kernel<T>
            <<<cuda::kernels::warp_row_blocks(B * H * Tq), cuda::kernels::rows_per_block * cuda::kernels::warp_size, 0,
               stream_>>>(scores.data(), B, H, Tq, Tk, scale, dm);
        MMALIGN_CUDA_CHECK_LAUNCH(stream_);
    }
    /// d holds d_probs on entry and d_scores (including `scale`) on return.
    void attention_softmax_backward(ConstView<T> probs, TensorView<T> d, C scale) {
        check_same(probs, d, "attention_softmax d_probs");
        const index_t rows = probs.shape().rows(), cols = probs.shape().cols();
        if (rows == 0 || cols == 0) return;
        cuda::kernels::attention_softmax_backward_kernel<T>
            <<<cuda::kernels::warp_row_blocks(rows), cuda::kernels::rows_per_block * cuda::kernels::warp_size, 0,
               stream_>>>(probs.data(), d.data(), rows, cols, scale);
        MMALIGN_CUDA_CHECK_LAUNCH(stream_);
    }
    void softmax(ConstView<T> x, TensorView<T> y) {
        check_same(x, y, "softmax output");
        const index_t rows = x.shape().rows(), cols = x.shape().cols();
        if (rows == 0 || cols == 0) return;
        cuda::kernels::softmax_rows_kernel<T>
            <<<cuda::kernels::warp_row_blocks(rows), cuda::kernels::rows_per_block * cuda::kernels::warp_size, 0,
               stream_>>>(x.data(), y.data(), rows, cols);
        MMALIGN_CUDA_CHECK_LAUNCH(stream_);
    }

    // ---- pointwise ----------------------------------------------------------------------------
    void activation_forward(Activation a, ConstView<T> x, TensorView<T> y) {
        check_same(x, y, "activation output");
        if (a == Activation::none) {
            if (x.data() != y.data()) copy(x, y);
            return;
        }
        launch_pointwise(x.numel(), cuda::kernels::activation_forward_kernel<T>, a, x.data(), y.data(), x.numel());
    }
    /// d_x = d_y · f'(x), assigned.
    void activation_backward(Activation a, ConstView<T> x, ConstView<T> d_y, TensorView<T> d_x) {
        check_same(x, d_y, "activation d_y");
        check_same(x, d_x, "activation d_x");
        launch_pointwise(x.numel(), cuda::kernels::activation_backward_kernel<T>, a, x.data(), d_y.data(), d_x.data(),
                         x.numel());
    }
    void add(ConstView<T> a, ConstView<T> b, TensorView<T> y) {
        check_same(a, b, "add operand");
        check_same(a, y, "add output");
        launch_pointwise(a.numel(), cuda::kernels::add_kernel<T>, a.data(), b.data(), y.data(), a.numel());
    }
    /// y += alpha · x
    void axpy(C alpha, ConstView<T> x, TensorView<T> y) {
        check_same(x, y, "axpy");
        launch_pointwise(x.numel(), cuda::kernels::axpy_kernel<T>, alpha, x.data(), y.data(), x.numel());
    }
    void scale(C alpha, TensorView<T> x) {
        launch_pointwise(x.numel(), cuda::kernels::scale_kernel<T>, alpha, x.data(), x.numel());
    }
    /// dst = src converted between float and the storage type (rounded to nearest even), on the
    /// stream: master weights from 16-bit parameters, float tensors into 16-bit activations.
    template <class U, class V>
        requires((std::is_same_v<U, T> || std::is_same_v<U, C>) && (std::is_same_v<V, T> || std::is_same_v<V, C>))
    void cast(ConstView<U> src, TensorView<V> dst) {
        check_same_size(src.shape(), dst.shape(), "cast");
        launch_pointwise(src.numel(), cuda::kernels::cast_kernel<U, V>, src.data(), dst.data(), src.numel());
    }
    /// Device-to-device copy on the stream.
    void copy(ConstView<T> src, TensorView<T> dst) {
        check_same_size(src.shape(), dst.shape(), "copy");
        if (src.numel() && src.data() != dst.data())
            MMALIGN_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), bytes(src), cudaMemcpyDeviceToDevice, stream_));
    }
    /// Host → device; returns when the data has arrived.
    void from_host(ConstView<T> host, TensorView<T> dst) {
        check_same_size(host.shape(), dst.shape(), "from_host");
        upload(host.data(), dst.data(), host.numel());
    }
    /// Host floats → device 16-bit storage, rounded to nearest even on the host (as torch's
    /// .to(torch.bfloat16) / .half()): how float checkpoints and inputs reach a 16-bit backend.
    template <class U = T>
        requires(!std::is_same_v<U, C>)
    void from_host(ConstView<C> host, TensorView<std::type_identity_t<U>> dst) {
        check_same_size(host.shape(), dst.shape(), "from_host");
        stage_.assign(host.data(), host.data() + host.numel());
        from_host(ConstView<T>(stage_.data(), host.shape()), dst);
    }
    /// Host floats → device float tensors (optimizer moments, master weights), on the 16-bit
    /// backends; returns when the data has arrived.
    template <class U = T>
        requires(!std::is_same_v<U, C>)
    void from_host(ConstView<C> host, TensorView<C> dst) {
        check_same_size(host.shape(), dst.shape(), "from_host");
        upload(host.data(), dst.data(), host.numel());
    }
    /// Device 16-bit storage → host floats (exact).
    template <class U = T>
        requires(!std::is_same_v<U, C>)
    void to_host(ConstView<std::type_identity_t<U>> src, TensorView<C> host) {
        check_same_size(src.shape(), host.shape(), "to_host");
        stage_.resize(static_cast<std::size_t>(src.numel()));
        to_host(src, TensorView<T>(stage_.data(), src.shape()));
        std::copy(stage_.begin(), stage_.end(), host.data());
    }
    /// Float tensors (statistics) to the host, on the 16-bit backends.
    template <class U = T>
        requires(!std::is_same_v<U, C>)
    void to_host(ConstView<C> src, TensorView<C> host) {
        check_same_size(src.shape(), host.shape(), "to_host");
        download(src.data(), host.data(), src.numel());
    }
    /// Device → host, after every op queued before it; returns when the data has arrived.
    void to_host(ConstView<T> src, TensorView<T> host) {
        check_same_size(src.shape(), host.shape(), "to_host");
        download(src.data(), host.data(), src.numel());
    }
    void fill(TensorView<T> x, C v) {
        launch_pointwise(x.numel(), cuda::kernels::fill_kernel<T>, x.data(), x.numel(), static_cast<T>(v));
    }

    // ---- embeddings ---------------------------------------------------------------------------
    /// out[n, :] = table[ids[n], :]; ids are host memory; throws ArgumentError naming an id
    /// outside the table.
    void embedding_forward(const std::int32_t* ids, index_t n, ConstView<T> table, TensorView<T> out) {
        if (out.numel() != n * table.dim(1))
            throw ShapeError("embedding output: expected " + std::to_string(n) + " rows of " +
                             std::to_string(table.dim(1)) + ", found " + out.shape().str());
        check_table_ids(ids, n, table.dim(0), "embedding");
        if (out.numel() == 0) return;
        auto sc = scope();
        launch_pointwise(out.numel(), cuda::kernels::embedding_forward_kernel<T>, upload(sc, ids, n), n, table.data(),
                         table.dim(1), out.data());
    }
    /// d_table[ids[n], :] += d_out[n, :]; ids are host memory.
    void embedding_backward(const std::int32_t* ids, index_t n, ConstView<T> d_out, TensorView<T> d_table) {
        if (d_out.numel() != n * d_table.dim(1))
            throw ShapeError("embedding d_out: expected " + std::to_string(n) + " rows of " +
                             std::to_string(d_table.dim(1)) + ", found " + d_out.shape().str());
        check_table_ids(ids, n, d_table.dim(0), "embedding backward");  // a bad id here would corrupt memory
        if (d_out.numel() == 0) return;
        auto sc = scope();
        if constexpr (is_16bit_float_v<T>) {
            // Group the occurrences of each id on the host (ids are host memory), then one float
            // sum and one rounding per touched row.
            std::vector<std::int32_t>&order = group_order_, &rows = group_rows_, &first = group_first_;
            order.resize(static_cast<std::size_t>(n));
            for (index_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
            std::stable_sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) { return ids[a] < ids[b]; });
            rows.clear();
            first.clear();
            for (index_t j = 0; j < n; ++j) {
                const std::int32_t id = ids[order[static_cast<std::size_t>(j)]];
                if (rows.empty() || rows.back() != id) {
                    rows.push_back(id);
                    first.push_back(static_cast<std::int32_t>(j));
                }
            }
            first.push_back(static_cast<std::int32_t>(n));
            const index_t unique = static_cast<index_t>(rows.size());
            launch_pointwise(unique * d_table.dim(1), cuda::kernels::embedding_backward_grouped_kernel<T>,
                             upload(sc, rows.data(), unique), upload(sc, first.data(), unique + 1),
                             upload(sc, order.data(), n), unique, d_out.data(), d_table.dim(1), d_table.data());
        } else {
            launch_pointwise(d_out.numel(), cuda::kernels::embedding_backward_kernel<T>, upload(sc, ids, n), n,
                             d_out.data(), d_table.dim(1), d_table.data());
        }
    }

    // ---- images -------------------------------------------------------------------------------
    /// pixels [B, C, H, W] → patches [B, (H/P)·(W/P), C·P·P], patch i·(W/P)+j, elements in
    /// (c, ky, kx) order (CpuBackend::patchify).
    void patchify(ConstView<T> pixels, index_t P, TensorView<T> patches) {
        const PatchGrid g = check_patchify<T>(pixels, P, patches);
        launch_pointwise(patches.numel(), cuda::kernels::patchify_kernel<T>, pixels.data(), g.batch, g.channels,
                         g.height, g.width, P, patches.data());
    }

    // ---- losses and normalised embeddings -----------------------------------------------------
    /// logits [N, C]; targets host memory [N]; lse [N] (device) receives log Σ exp per row for
    /// the backward. Synchronises: the loss comes back to the host.
    CrossEntropyResult cross_entropy_forward(ConstView<T> logits, const std::int32_t* targets, std::int32_t ignore_index,
                                             C label_smoothing, C* lse) {
        const index_t rows = logits.shape().rows(), classes = logits.shape().cols();
        check_cross_entropy_targets(targets, rows, classes, ignore_index);
        if (rows == 0) return {C(0), 0};
        auto sc = scope();
        const std::int32_t* t = upload(sc, targets, rows);
        double* row_loss = sc.template buffer<double>(rows);
        if (!lse) lse = sc.template buffer<C>(rows);
        cuda::kernels::cross_entropy_forward_kernel<T>
            <<<cuda::kernels::block_row_blocks(rows), cuda::kernels::row_block_threads, 0, stream_>>>(
                logits.data(), t, rows, classes, ignore_index, label_smoothing, lse, row_loss);
        MMALIGN_CUDA_CHECK_LAUNCH(stream_);
        std::vector<double> host(static_cast<std::size_t>(rows));
        MMALIGN_CUDA_CHECK(cudaMemcpyAsync(host.data(), row_loss, host.size() * sizeof(double), cudaMemcpyDeviceToHost,
                                           stream_));
        synchronize();
        double total = 0;
        index_t count = 0;
        for (index_t r = 0; r < rows; ++r) {
            if (targets[r] == ignore_index) continue;
            total += host[static_cast<std::size_t>(r)];
            ++count;
        }
        return {count ? static_cast<C>(total / static_cast<double>(count)) : C(0), count};
    }
    /// d_logits is assigned; `d_loss` is the upstream gradient of the mean loss; targets host memory.
    void cross_entropy_backward(ConstView<T> logits, const std::int32_t* targets, const C* lse, std::int32_t ignore_index,
                                C label_smoothing, index_t count, C d_loss, TensorView<T> d_logits) {
        check_same(logits, d_logits, "cross_entropy d_logits");
        const index_t rows = logits.shape().rows(), classes = logits.shape().cols();
        check_cross_entropy_targets(targets, rows, classes, ignore_index);
        if (logits.numel() == 0) return;
        const C g = count ? d_loss / static_cast<C>(count) : C(0);
        const C off = label_smoothing / static_cast<C>(classes);
        auto sc = scope();
        launch_pointwise(logits.numel(), cuda::kernels::cross_entropy_backward_kernel<T>, logits.data(),
                         upload(sc, targets, rows), lse, rows, classes, ignore_index, label_smoothing, g, off,
                         d_logits.data());
    }
    /// y = x / max(‖x‖, eps) per row; norm [rows] (nullable) is kept for the backward.
    void l2_normalize_forward(ConstView<T> x, TensorView<T> y, C* norm, C eps = C(0)) {
        check_same(x, y, "l2_normalize output");
        const index_t rows = x.shape().rows(), cols = x.shape().cols();
        if (rows == 0) return;
        cuda::kernels::l2_normalize_forward_kernel<T>
            <<<cuda::kernels::warp_row_blocks(rows), cuda::kernels::rows_per_block * cuda::kernels::warp_size, 0,
               stream_>>>(x.data(), y.data(), norm, rows, cols, eps);
        MMALIGN_CUDA_CHECK_LAUNCH(stream_);
    }
    void l2_normalize_backward(ConstView<T> d_y, ConstView<T> y, const C* norm, TensorView<T> d_x) {
        check_same(y, d_y, "l2_normalize d_y");
        check_same(y, d_x, "l2_normalize d_x");
        const index_t rows = y.shape().rows(), cols = y.shape().cols();
        if (rows == 0) return;
        cuda::kernels::l2_normalize_backward_kernel<T>
            <<<cuda::kernels::warp_row_blocks(rows), cuda::kernels::rows_per_block * cuda::kernels::warp_size, 0,
               stream_>>>(d_y.data(), y.data(), norm, d_x.data(), rows, cols);
        MMALIGN_CUDA_CHECK_LAUNCH(stream_);
    }

    // ---- optimiser ----------------------------------------------------------------------------
    /// One AdamW step on p with gradient g (times h.grad_scale) and float moments m, v (all device,
    /// same shape), in torch's order of operations (CpuBackend::adamw_step). With `master` (float)
    /// the update runs on the master copy and p receives it rounded to T: the mixed-precision
    /// recipe of Micikevicius et al. 2018, for the 16-bit backends. An element of p written since
    /// the last step (it no longer equals its master rounded) restarts its master from p.
    void adamw_step(TensorView<T> p, ConstView<T> g, TensorView<C> m, TensorView<C> v, const AdamWHyper& h,
                    TensorView<C> master = {}) {
        check_adamw_shapes(p.shape(), g.shape(), m.shape(), v.shape(), master.empty() ? nullptr : &master.shape());
        const AdamWConstants<C> k(h);
        launch_pointwise(p.numel(), cuda::kernels::adamw_kernel<T>, p.data(), master.empty() ? nullptr : master.data(),
                         g.data(), m.data(), v.data(), p.numel(), k);
    }
    /// False when any element of any tensor is infinite or NaN (a loss-scaled gradient overflowed).
    /// One flag on the device for all tensors, one synchronisation.
    bool all_finite(std::span<const ConstView<T>> xs) {
        auto sc = scope();
        int* flag = sc.template buffer<int>(1);
        MMALIGN_CUDA_CHECK(cudaMemsetAsync(flag, 0, sizeof(int), stream_));
        for (const ConstView<T>& x : xs)
            launch_pointwise(x.numel(), cuda::kernels::nonfinite_flag_kernel<T>, x.data(), x.numel(), flag);
        int host = 0;
        MMALIGN_CUDA_CHECK(cudaMemcpyAsync(&host, flag, sizeof(int), cudaMemcpyDeviceToHost, stream_));
        synchronize();
        return host == 0;
    }

    // ---- reductions ---------------------------------------------------------------------------
    /// out[c] += Σ_r x[r, c]   (out: device [cols])
    void sum_rows_accumulate(ConstView<T> x, T* out) {
        const index_t rows = x.shape().rows(), cols = x.shape().cols();
        if (rows == 0 || cols == 0) return;
        auto sc = scope();
        const index_t splits = cuda::kernels::column_splits(rows), chunk = (rows + splits - 1) / splits;
        double* partial = sc.template buffer<double>(splits * cols);
        const dim3 grid(static_cast<unsigned>((cols + cuda::kernels::warp_size - 1) / cuda::kernels::warp_size),
                        static_cast<unsigned>(splits));
        const dim3 block(cuda::kernels::warp_size, cuda::kernels::column_block_rows);
        cuda::kernels::column_sum_partial_kernel<T><<<grid, block, 0, stream_>>>(x.data(), partial, rows, cols, chunk);
        MMALIGN_CUDA_CHECK_LAUNCH(stream_);
        launch_pointwise(cols, cuda::kernels::column_partials_accumulate_kernel<T>, partial, splits, cols, out,
                         static_cast<T*>(nullptr));
    }
    /// Σ x in double, returned as Compute. Synchronises.
    C sum(ConstView<T> x) { return reduce(x.data(), static_cast<const T*>(nullptr), x.numel()); }
    /// The same over a Compute tensor (saved statistics), on the 16-bit backends.
    template <class U = T>
        requires(!std::is_same_v<U, C>)
    C sum(ConstView<C> x) {
        return reduce(x.data(), static_cast<const C*>(nullptr), x.numel());
    }
    /// Σ a·b in double, returned as Compute. Synchronises.
    C dot(ConstView<T> a, ConstView<T> b) {
        check_same(a, b, "dot operand");
        return reduce(a.data(), b.data(), a.numel());
    }
    C mean(ConstView<T> x) { return x.numel() ? sum(x) / static_cast<C>(x.numel()) : C(0); }

private:
    static cublasOperation_t op(Trans t) { return t == Trans::N ? CUBLAS_OP_N : CUBLAS_OP_T; }

    /// The tensor-core forward (kernels/attention_wmma.cuh) for head width DH: blocks of 64
    /// queries of one (batch, head), its shared memory opted in above the default 48 KiB.
    template <int DH>
    void attention_forward_wmma(const T* q, const T* k, const T* v, index_t kv_stride, index_t B, index_t H, index_t Tq,
                                index_t Tk, C scale, cuda::kernels::DeviceMask<T> mask, T* o, C* stats) {
        constexpr std::size_t smem = cuda::kernels::wmma_attention_smem<DH>();
        constexpr unsigned bit = DH == 32 ? 1u : DH == 64 ? 2u : 4u;
        auto kernel = cuda::kernels::attention_forward_wmma_kernel<T, DH>;
        if (!(wmma_smem_opted_in_ & bit)) {  // once per width on this backend's device
            MMALIGN_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
            wmma_smem_opted_in_ |= bit;
        }
        const dim3 grid(static_cast<unsigned>((Tq + cuda::kernels::wmma_queries - 1) / cuda::kernels::wmma_queries),
                        static_cast<unsigned>(B * H));
        kernel<<<grid, cuda::kernels::wmma_warps * cuda::kernels::warp_size, smem, stream_>>>(
            q, k, v, kv_stride, B, H, Tq, Tk, scale, mask, o, stats);
        MMALIGN_CUDA_CHECK_LAUNCH(stream_);
    }
    static constexpr cudaDataType_t data_type = std::is_same_v<T, float>      ? CUDA_R_32F
                                                : std::is_same_v<T, bfloat16> ? CUDA_R_16BF
                                                                              : CUDA_R_16F;
    static int to_int(index_t v) {
        if (v > INT_MAX)
            throw ArgumentError("CudaBackend gemm: size " + std::to_string(v) + " exceeds cuBLAS's 32-bit sizes");
        return static_cast<int>(v);
    }
    static std::size_t bytes(ConstView<T> v) { return static_cast<std::size_t>(v.numel()) * sizeof(T); }

    /// The CPU backend's argument check (backend/cpu/gemm.hpp), plus cuBLAS's leading dimension
    /// of at least 1, which the product with k = 0 would otherwise violate.
    static void check_gemm(Trans ta, Trans tb, index_t m, index_t n, index_t k, index_t lda, index_t ldb, index_t ldc,
                           index_t batch) {
        const index_t a_cols = ta == Trans::N ? k : m, b_cols = tb == Trans::N ? n : k;
        if (m < 0 || n < 0 || k < 0 || batch < 0 || lda < a_cols || ldb < b_cols || ldc < n)
            throw ArgumentError("gemm: invalid sizes m=" + std::to_string(m) + " n=" + std::to_string(n) +
                                " k=" + std::to_string(k) + " lda=" + std::to_string(lda) +
                                " ldb=" + std::to_string(ldb) + " ldc=" + std::to_string(ldc));
    }

    /// Σ x[i] (y null) or Σ x[i]·y[i], in double; synchronises to bring the value to the host.
    template <class U>
    C reduce(const U* x, const U* y, index_t n) {
        if (n == 0) return C(0);
        auto sc = scope();
        const unsigned blocks = std::min<unsigned>(cuda::kernels::pointwise_blocks(n), 1024);
        double* partial = sc.template buffer<double>(blocks + 1);
        cuda::kernels::sum_partial_kernel<U>
            <<<blocks, cuda::kernels::pointwise_threads, 0, stream_>>>(x, y, n, partial);
        MMALIGN_CUDA_CHECK_LAUNCH(stream_);
        cuda::kernels::sum_final_kernel<double>
            <<<1, cuda::kernels::pointwise_threads, 0, stream_>>>(partial, blocks, partial + blocks);
        MMALIGN_CUDA_CHECK_LAUNCH(stream_);
        double s = 0;
        MMALIGN_CUDA_CHECK(cudaMemcpyAsync(&s, partial + blocks, sizeof(double), cudaMemcpyDeviceToHost, stream_));
        synchronize();
        return static_cast<C>(s);
    }

    void scale_matrices(C beta, T* c, index_t m, index_t n, index_t ldc, index_t stride, index_t batch) {
        if (beta == C(1)) return;
        launch_pointwise(batch * m * n, cuda::kernels::scale_matrices_kernel<T>, beta, c, m, n, ldc, stride, batch);
    }

    template <class Kernel, class... Args>
    void launch_pointwise(index_t n, Kernel kernel, Args... args) {
        if (n <= 0) return;
        kernel<<<cuda::kernels::pointwise_blocks(n), cuda::kernels::pointwise_threads, 0, stream_>>>(args...);
        MMALIGN_CUDA_CHECK_LAUNCH(stream_);
    }

    /// Copies n host integers into scratch of `sc`, on the stream. The call returns once the host
    /// array has been read (pageable memory is staged), so the caller may reuse it at once.
    const std::int32_t* upload(Scope& sc, const std::int32_t* host, index_t n) {
        std::int32_t* d = sc.template buffer<std::int32_t>(n);
        if (n)
            MMALIGN_CUDA_CHECK(cudaMemcpyAsync(d, host, static_cast<std::size_t>(n) * sizeof(std::int32_t),
                                               cudaMemcpyHostToDevice, stream_));
        return d;
    }

    static void check_head_dim(index_t dh) {
        if (dh < 0 || dh > cuda::kernels::max_head_dim)
            throw ArgumentError("attention: fused attention supports head widths up to " +
                                std::to_string(cuda::kernels::max_head_dim) + ", found " + std::to_string(dh));
    }
    /// The mask as the kernels take it: key_keep uploaded into scratch of `sc`, unless upload_mask
    /// has put it in device memory already.
    cuda::kernels::DeviceMask<T> device_mask(Scope& sc, const AttentionMask<T>& m, index_t B, index_t Tq, index_t Tk) {
        const std::int32_t* keep = !m.key_keep ? nullptr : m.key_keep_resident ? m.key_keep : upload(sc, m.key_keep, B * Tk);
        return {keep, m.causal, m.causal_offset, m.additive,
                m.additive_batch_stride < 0 ? Tq * Tk : m.additive_batch_stride};
    }
    static void check_same(ConstView<T> a, ConstView<T> b, const char* what) {
        if (!(a.shape() == b.shape()))
            throw ShapeError(std::string(what) + ": expected " + a.shape().str() + ", found " + b.shape().str());
    }
    static void check_rows(ConstView<T> x, index_t cols, const char* what) {
        if (x.shape().cols() != cols)
            throw ShapeError(std::string(what) + ": expected last extent " + std::to_string(cols) + ", found " +
                             x.shape().str());
    }
    /// n elements host → device / device → host on the stream, after every op queued before;
    /// return when the data has arrived.
    template <class U>
    void upload(const U* host, U* dst, index_t n) {
        if (!n) return;
        MMALIGN_CUDA_CHECK(
            cudaMemcpyAsync(dst, host, static_cast<std::size_t>(n) * sizeof(U), cudaMemcpyHostToDevice, stream_));
        synchronize();
    }
    template <class U>
    void download(const U* src, U* host, index_t n) {
        if (!n) return;
        MMALIGN_CUDA_CHECK(
            cudaMemcpyAsync(host, src, static_cast<std::size_t>(n) * sizeof(U), cudaMemcpyDeviceToHost, stream_));
        synchronize();
    }

    void release() noexcept {  // no checks: called from the destructor
        if (stream_) (void)cudaStreamSynchronize(stream_);  // queued ops may still use the workspace
        lt_.release();
        if (cublas_) (void)cublasDestroy(cublas_);
        if (workspace_) (void)cudaFree(workspace_);
        if (owns_stream_ && stream_) (void)cudaStreamDestroy(stream_);
        cublas_ = nullptr;
        workspace_ = nullptr;
        stream_ = nullptr;
        owns_stream_ = false;
    }

    int device_ = 0;
    cudaStream_t stream_ = nullptr;
    bool owns_stream_ = false;
    cublasHandle_t cublas_ = nullptr;
    void* workspace_ = nullptr;
    bool tf32_ = false;
    bool fused_attention_ = false;
    bool lt_epilogue_ = false;
    bool wmma_attention_ = true;
    bool tensor_cores_16bit_ = false;  // compute capability 8.0+: bfloat16/float16 WMMA
    std::size_t smem_optin_ = 0;       // the most dynamic shared memory a block may opt in to
    unsigned wmma_smem_opted_in_ = 0;  // widths 32 / 64 / 128 (bits 0 / 1 / 2) whose kernel has opted in
    std::vector<T> stage_;             // host staging of the float ↔ 16-bit transfers, kept between calls
    std::vector<std::int32_t> group_order_, group_rows_, group_first_;  // 16-bit embedding backward
    std::size_t workspace_bytes_ = 0;
    cuda::LtPlanCache lt_;
    cuda::DeviceArena arena_;  // freed after release() has waited for the stream
};

static_assert(Backend<CudaBackend<float>>, "CudaBackend<float> must provide the whole op set.");
static_assert(Backend<CudaBackend<bfloat16>>, "CudaBackend<bfloat16> must provide the whole op set.");
static_assert(Backend<CudaBackend<float16>>, "CudaBackend<float16> must provide the whole op set.");

}  // namespace mmalign
