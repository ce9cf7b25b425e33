// mmalign/backend/cpu/backend16.hpp — CpuBackend<bfloat16> and CpuBackend<float16>: 16-bit storage
// on the CPU, a reference for what CudaBackend<bfloat16> / CudaBackend<float16> compute.
//
// Why: the 16-bit paths of modules, models, io and training (rounded parameters, float statistics,
// float master weights, loss scaling, checkpoints that cross storage types) would otherwise run
// only where a GPU is. This backend runs them on the CPU with the CUDA backend's semantics, op for
// op, so CI exercises them. It is a reference, not a fast path: every op widens its 16-bit inputs
// (and any outputs it accumulates into) to float scratch, runs the CpuBackend<float> op there, and
// rounds each output once (to nearest even) — at CPU float speed plus the conversions, with no
// memory saved. The conventions are CudaBackend<16-bit>'s (backend/cuda/backend.hpp):
//  * Scalar T is the 16-bit type; Compute is float. The op set's scalars (alpha, scale, eps, the
//    loss) and the statistics a backward needs (LayerNorm mean/rstd, attention stats,
//    cross-entropy lse, L2 norms) are float (ComputeTensor = Tensor<float>).
//  * Products accumulate in float and round once (cublasGemmEx with CUBLAS_COMPUTE_32F).
//  * Rounding points that differ from "one op, one rounding" follow CUDA's defaults:
//    linear_forward rounds the product before the bias + activation epilogue (two roundings on y,
//    one on `pre`: cuBLAS then bias_activation_kernel); embedding_backward and
//    sum_rows_accumulate sum each output's contributions in float (double for column sums) and
//    add them to the stored value once; adamw_step is adamw_kernel (float moments, a float master
//    used while the parameter equals its rounding, else restarted from the parameter).
//  * Within an op the float arithmetic is the CPU's, not the GPU's (summation orders, exp/erf,
//    and the tensor-core attention's rounding of P to 16 bits before P·V differ), so results
//    agree with CUDA to the CUDA tests' tolerances, not bit for bit.
// Tensors are host memory (Tensor<T>), so transfers are conversions: from_host(float → T) rounds,
// to_host(T → float) widens exactly, and float ↔ float and T ↔ T are plain copies.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "mmalign/backend/cpu/backend.hpp"  // CpuBackend<float>: the op every 16-bit op widens to
#include "mmalign/core/backend.hpp"
#include "mmalign/core/contracts/cross_entropy.hpp"
#include "mmalign/core/contracts/embedding.hpp"
#include "mmalign/core/float16.hpp"
#include "mmalign/core/ops.hpp"
#include "mmalign/core/tensor.hpp"

namespace mmalign {

template <class T>
    requires is_16bit_float_v<T>
class CpuBackend<T> {
public:
    using Scalar = T;
    using Compute = float;
    using Tensor = mmalign::Tensor<T>;  // what modules own: parameters, saved activations
    using ComputeTensor = mmalign::Tensor<float>;
    using IndexTensor = mmalign::Tensor<std::int32_t>;  // a mask's key_keep kept across calls (upload_mask)
    using Scope = typename cpu::ScratchArena<T>::Scope;
    using CrossEntropyResult = mmalign::CrossEntropyResult<float>;
    using C = float;

    struct Options {
        int threads = 0;  // 0: all OpenMP threads (OMP_NUM_THREADS or the core count)
        cpu::GemmImpl gemm = cpu::default_gemm_impl<float>();
        bool fused_attention = false;  // MultiHeadAttention through attention_forward/backward
    };

    CpuBackend() : CpuBackend(Options{}) {}
    explicit CpuBackend(Options o) : ref_(make_ref(o)) {}

    int threads() const { return ref_.threads(); }
    void set_threads(int n) { ref_.set_threads(n); }
    cpu::GemmImpl gemm_impl() const { return ref_.gemm_impl(); }
    void set_gemm_impl(cpu::GemmImpl g) { ref_.set_gemm_impl(g); }
    /// The float backend every op runs on after widening.
    CpuBackend<float>& reference() { return ref_; }

    /// Temporaries for one call (16-bit): `auto sc = be.scope(); auto t = sc.tensor({B, T, D});`
    Scope scope() { return Scope(arena_); }
    const cpu::ScratchArena<T>& arena() const { return arena_; }

    // ---- products -------------------------------------------------------------------------
    /// C[m, n] = alpha · op(A) · op(B) + beta · C in float, C rounded once.
    void gemm(Trans ta, Trans tb, index_t m, index_t n, index_t k, C alpha, const T* a, index_t lda, const T* b,
              index_t ldb, C beta, T* c, index_t ldc) {
        gemm_batched_2d(ta, tb, m, n, k, alpha, a, lda, 0, 0, b, ldb, 0, 0, beta, c, ldc, 0, 0, 1, 1);
    }
    void gemm_strided_batched(Trans ta, Trans tb, index_t m, index_t n, index_t k, C alpha, const T* a, index_t lda,
                              index_t stride_a, const T* b, index_t ldb, index_t stride_b, C beta, T* c, index_t ldc,
                              index_t stride_c, index_t batch) {
        gemm_batched_2d(ta, tb, m, n, k, alpha, a, lda, stride_a, 0, b, ldb, stride_b, 0, beta, c, ldc, stride_c, 0,
                        batch, 1);
    }
    /// outer × inner products; (o, i) starts at a + o·outer_a + i·inner_a (likewise b, c). The
    /// memory the products read (and C, which they may accumulate into) is widened as one span
    /// each, the float products run with the same strides, and only C's m × n blocks are
    /// rounded back (the gaps between them are left untouched).
    void gemm_batched_2d(Trans ta, Trans tb, index_t m, index_t n, index_t k, C alpha, const T* a, index_t lda,
                         index_t outer_a, index_t inner_a, const T* b, index_t ldb, index_t outer_b, index_t inner_b,
                         C beta, T* c, index_t ldc, index_t outer_c, index_t inner_c, index_t outer, index_t inner) {
        cpu::detail::check_gemm_args(ta, tb, m, n, k, lda, ldb, ldc);
        if (m == 0 || n == 0 || outer <= 0 || inner <= 0) return;
        if (outer_a < 0 || inner_a < 0 || outer_b < 0 || inner_b < 0 || outer_c < 0 || inner_c < 0)
            throw ArgumentError("gemm: CpuBackend<16-bit> takes non-negative batch strides");
        auto fs = ref_.scope();
        const index_t na = extent(ta == Trans::N ? m : k, ta == Trans::N ? k : m, lda, outer, outer_a, inner, inner_a);
        const index_t nb = extent(tb == Trans::N ? k : n, tb == Trans::N ? n : k, ldb, outer, outer_b, inner, inner_b);
        const index_t nc = extent(m, n, ldc, outer, outer_c, inner, inner_c);
        const float* af = widen(fs, a, na);
        const float* bf = widen(fs, b, nb);
        float* cf = beta == C(0) ? zeros(fs, nc) : widen(fs, c, nc);  // beta 0: C is not read (may be NaN)
        if (outer * inner == 1)
            ref_.gemm(ta, tb, m, n, k, alpha, af, lda, bf, ldb, beta, cf, ldc);
        else
            ref_.gemm_batched_2d(ta, tb, m, n, k, alpha, af, lda, outer_a, inner_a, bf, ldb, outer_b, inner_b, beta, cf,
                                 ldc, outer_c, inner_c, outer, inner);
        for (index_t o = 0; o < outer; ++o)
            for (index_t i = 0; i < inner; ++i)
                for (index_t r = 0; r < m; ++r) {
                    const index_t at = o * outer_c + i * inner_c + r * ldc;
                    round_into(cf + at, c + at, n);
                }
    }

    /// y[M, N] = act(x[M, K] · w[N, K]ᵀ + bias[N]); `pre` (nullable) receives the value before the
    /// activation; `bias` may be null. As CudaBackend's default path: the product is rounded to T,
    /// then the epilogue adds the bias in float, stores `pre` rounded, and rounds act(·) into y.
    void linear_forward(ConstView<T> x, ConstView<T> w, const T* bias, Activation act, TensorView<T> y, T* pre) {
        const index_t K = w.dim(1), N = w.dim(0), M = x.numel() / K;
        if (x.shape().cols() != K || y.numel() != M * N || y.shape().cols() != N)
            throw ShapeError("linear: input " + x.shape().str() + " and output " + y.shape().str() +
                             " do not fit weight " + w.shape().str());
        gemm(Trans::N, Trans::T, M, N, K, C(1), x.data(), K, w.data(), K, C(0), y.data(), N);
        if ((!bias && act == Activation::none) || M * N == 0) return;
        auto fs = ref_.scope();
        float* v = widen(fs, y.data(), M * N);
        if (bias) {
            const float* bf = widen(fs, bias, N);
            for (index_t r = 0; r < M; ++r)
                for (index_t j = 0; j < N; ++j) v[r * N + j] += bf[j];
        }
        if (pre) round_into(v, pre, M * N);
        cpu::activation_forward<float>(threads(), act, v, v, M * N);
        round_into(v, y.data(), M * N);
    }

    // ---- normalisation ----------------------------------------------------------------------
    /// mean, rstd: float [rows] or null (inference).
    void layer_norm_forward(ConstView<T> x, ConstView<T> w, ConstView<T> b, double eps, TensorView<T> y, C* mean,
                            C* rstd) {
        check_same(x, y, "layer_norm output");
        auto fs = ref_.scope();
        TensorView<float> yf = fresh(fs, y.shape());
        ref_.layer_norm_forward(wide(fs, x), wide(fs, w), wide(fs, b), eps, yf, mean, rstd);
        narrow(yf, y);
    }
    /// d_x (assigned) may be empty; d_w, d_b (accumulated, each rounded once) may be null.
    void layer_norm_backward(ConstView<T> d_y, ConstView<T> x, ConstView<T> w, const C* mean, const C* rstd,
                             TensorView<T> d_x, T* d_w, T* d_b) {
        const index_t Cn = w.numel();
        check_same(x, d_y, "layer_norm d_y");
        if (!d_x.empty()) check_same(x, d_x, "layer_norm d_x");
        auto fs = ref_.scope();
        TensorView<float> dxf = d_x.empty() ? TensorView<float>{} : fresh(fs, d_x.shape());
        float* dwf = d_w ? widen(fs, d_w, Cn) : nullptr;
        float* dbf = d_b ? widen(fs, d_b, Cn) : nullptr;
        ref_.layer_norm_backward(wide(fs, d_y), wide(fs, x), wide(fs, w), mean, rstd, dxf, dwf, dbf);
        if (!d_x.empty()) narrow(dxf, d_x);
        if (d_w) round_into(dwf, d_w, Cn);
        if (d_b) round_into(dbf, d_b, Cn);
    }

    // ---- fused attention ----------------------------------------------------------------------
    bool fused_attention() const { return ref_.fused_attention(); }
    void set_fused_attention(bool on) { ref_.set_fused_attention(on); }
    /// q, o: [B, Tq, H·dh]; k, v: rows of H·dh, batch b at b·kv_batch_stride; stats float
    /// [B, H, Tq, 2] or null. o is rounded once; P stays float (as CUDA's warp kernels).
    void attention_forward(const T* q, const T* k, const T* v, index_t kv_batch_stride, index_t B, index_t H, index_t Tq,
                           index_t Tk, index_t dh, C scale, const AttentionMask<T>& mask, T* o, C* stats) {
        const index_t D = H * dh, nq = B * Tq * D, nkv = kv_extent(kv_batch_stride, B, Tk, D);
        auto fs = ref_.scope();
        float* of = fresh(fs, nq);
        ref_.attention_forward(widen(fs, q, nq), widen(fs, k, nkv), widen(fs, v, nkv), kv_batch_stride, B, H, Tq, Tk, dh,
                               scale, wide_mask(fs, mask, B, Tq, Tk), of, stats);
        round_into(of, o, nq);
    }
    /// d_q [B, Tq, H·dh], d_k, d_v [B, Tk, H·dh] assigned (each rounded once), from o and stats.
    void attention_backward(const T* q, const T* k, const T* v, index_t kv_batch_stride, index_t B, index_t H,
                            index_t Tq, index_t Tk, index_t dh, C scale, const AttentionMask<T>& mask, const T* o,
                            const T* d_o, const C* stats, T* d_q, T* d_k, T* d_v) {
        const index_t D = H * dh, nq = B * Tq * D, nk = B * Tk * D, nkv = kv_extent(kv_batch_stride, B, Tk, D);
        auto fs = ref_.scope();
        float *dqf = fresh(fs, nq), *dkf = fresh(fs, nk), *dvf = fresh(fs, nk);
        ref_.attention_backward(widen(fs, q, nq), widen(fs, k, nkv), widen(fs, v, nkv), kv_batch_stride, B, H, Tq, Tk,
                                dh, scale, wide_mask(fs, mask, B, Tq, Tk), widen(fs, o, nq), widen(fs, d_o, nq), stats,
                                dqf, dkf, dvf);
        round_into(dqf, d_q, nq);
        round_into(dkf, d_k, nk);
        round_into(dvf, d_v, nk);
    }

    /// Copies mask.key_keep ([n]) into `dst` and returns the mask pointing at it (as CpuBackend<float>).
    AttentionMask<T> upload_mask(const AttentionMask<T>& mask, index_t n, IndexTensor& dst) {
        return cpu::copy_mask(mask, n, dst);
    }

    // ---- attention softmax --------------------------------------------------------------------
    /// scores [B, H, Tq, Tk] → probabilities, in place.
    void attention_softmax_forward(TensorView<T> scores, C scale, const AttentionMask<T>& mask) {
        if (scores.rank() != 4) throw ShapeError("attention_softmax: expected [B, H, Tq, Tk], found " + scores.shape().str());
        auto fs = ref_.scope();
        TensorView<float> sf = wide(fs, scores);
        ref_.attention_softmax_forward(sf, scale, wide_mask(fs, mask, scores.dim(0), scores.dim(2), scores.dim(3)));
        narrow(sf, scores);
    }
    /// d holds d_probs on entry and d_scores (including `scale`) on return.
    void attention_softmax_backward(ConstView<T> probs, TensorView<T> d, C scale) {
        check_same(probs, d, "attention_softmax d_probs");
        auto fs = ref_.scope();
        TensorView<float> df = wide(fs, d);
        ref_.attention_softmax_backward(wide(fs, probs), df, scale);
        narrow(df, d);
    }
    void softmax(ConstView<T> x, TensorView<T> y) {
        check_same(x, y, "softmax output");
        auto fs = ref_.scope();
        TensorView<float> yf = fresh(fs, y.shape());
        ref_.softmax(wide(fs, x), yf);
        narrow(yf, y);
    }

    // ---- pointwise ----------------------------------------------------------------------------
    void activation_forward(Activation a, ConstView<T> x, TensorView<T> y) {
        check_same(x, y, "activation output");
        auto fs = ref_.scope();
        TensorView<float> yf = fresh(fs, y.shape());
        ref_.activation_forward(a, wide(fs, x), yf);
        narrow(yf, y);
    }
    /// d_x = d_y · f'(x), assigned.
    void activation_backward(Activation a, ConstView<T> x, ConstView<T> d_y, TensorView<T> d_x) {
        check_same(x, d_y, "activation d_y");
        check_same(x, d_x, "activation d_x");
        auto fs = ref_.scope();
        TensorView<float> dxf = fresh(fs, d_x.shape());
        ref_.activation_backward(a, wide(fs, x), wide(fs, d_y), dxf);
        narrow(dxf, d_x);
    }
    void add(ConstView<T> a, ConstView<T> b, TensorView<T> y) {
        check_same(a, b, "add operand");
        check_same(a, y, "add output");
        auto fs = ref_.scope();
        TensorView<float> yf = fresh(fs, y.shape());
        ref_.add(wide(fs, a), wide(fs, b), yf);
        narrow(yf, y);
    }
    /// y += alpha · x
    void axpy(C alpha, ConstView<T> x, TensorView<T> y) {
        check_same(x, y, "axpy");
        auto fs = ref_.scope();
        TensorView<float> yf = wide(fs, y);
        ref_.axpy(alpha, wide(fs, x), yf);
        narrow(yf, y);
    }
    void scale(C alpha, TensorView<T> x) {
        auto fs = ref_.scope();
        TensorView<float> xf = wide(fs, x);
        ref_.scale(alpha, xf);
        narrow(xf, x);
    }
    void copy(ConstView<T> src, TensorView<T> dst) { mmalign::copy<T>(src, dst); }
    /// dst = src converted between float and T (rounded to nearest even, or widened exactly):
    /// master weights from 16-bit parameters (train/adamw.hpp), float tensors into 16-bit ones.
    template <class U, class V>
        requires((std::is_same_v<U, T> || std::is_same_v<U, C>) && (std::is_same_v<V, T> || std::is_same_v<V, C>))
    void cast(ConstView<U> src, TensorView<V> dst) {
        check_same_size(src.shape(), dst.shape(), "cast");
        for (index_t i = 0; i < src.numel(); ++i) dst.data()[i] = static_cast<V>(static_cast<float>(src.data()[i]));
    }
    /// Transfers: the backend's memory is host memory. T ↔ T and float ↔ float copy; float → T
    /// rounds to nearest even (how float checkpoints and inputs reach 16-bit storage, as
    /// torch's .to(torch.bfloat16) / .half()); T → float widens exactly.
    void from_host(ConstView<T> host, TensorView<T> dst) { mmalign::copy<T>(host, dst); }
    void from_host(ConstView<C> host, TensorView<T> dst) { cast(host, dst); }
    void from_host(ConstView<C> host, TensorView<C> dst) { mmalign::copy<C>(host, dst); }
    void to_host(ConstView<T> src, TensorView<T> host) { mmalign::copy<T>(src, host); }
    void to_host(ConstView<T> src, TensorView<C> host) { cast(src, host); }
    void to_host(ConstView<C> src, TensorView<C> host) { mmalign::copy<C>(src, host); }
    void fill(TensorView<T> x, C v) { std::fill(x.begin(), x.end(), static_cast<T>(v)); }

    // ---- embeddings ---------------------------------------------------------------------------
    /// out[n, :] = table[ids[n], :] (a gather: no arithmetic).
    void embedding_forward(const std::int32_t* ids, index_t n, ConstView<T> table, TensorView<T> out) {
        if (out.numel() != n * table.dim(1))
            throw ShapeError("embedding output: expected " + std::to_string(n) + " rows of " +
                             std::to_string(table.dim(1)) + ", found " + out.shape().str());
        cpu::embedding_forward<T>(threads(), ids, n, table.data(), table.dim(0), table.dim(1), out.data());
    }
    /// d_table[ids[n], :] += d_out[n, :]: as CUDA's grouped kernel, each touched row gets the float
    /// sum of its occurrences (in order) added to its stored value once, and is rounded once.
    void embedding_backward(const std::int32_t* ids, index_t n, ConstView<T> d_out, TensorView<T> d_table) {
        const index_t D = d_table.dim(1);
        if (d_out.numel() != n * D)
            throw ShapeError("embedding d_out: expected " + std::to_string(n) + " rows of " + std::to_string(D) +
                             ", found " + d_out.shape().str());
        check_table_ids(ids, n, d_table.dim(0), "embedding backward");
        if (d_out.numel() == 0) return;
        std::vector<std::int32_t> order(static_cast<std::size_t>(n));
        for (index_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
        std::stable_sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) { return ids[a] < ids[b]; });
        std::vector<float> s(static_cast<std::size_t>(D));
        for (std::size_t j = 0; j < order.size();) {
            const std::int32_t id = ids[order[j]];
            std::fill(s.begin(), s.end(), 0.0f);
            for (; j < order.size() && ids[order[j]] == id; ++j) {
                const T* src = d_out.data() + index_t(order[j]) * D;
                for (index_t c = 0; c < D; ++c) s[std::size_t(c)] += static_cast<float>(src[c]);
            }
            T* row = d_table.data() + index_t(id) * D;
            for (index_t c = 0; c < D; ++c) row[c] = static_cast<T>(static_cast<float>(row[c]) + s[std::size_t(c)]);
        }
    }

    // ---- images -------------------------------------------------------------------------------
    /// pixels [B, C, H, W] → patches [B, (H/P)·(W/P), C·P·P] (a permutation: no arithmetic).
    void patchify(ConstView<T> pixels, index_t P, TensorView<T> patches) {
        cpu::patchify<T>(threads(), pixels, P, patches);
    }

    // ---- losses and normalised embeddings -----------------------------------------------------
    /// logits [N, C]; lse (float [N]) receives log Σ exp per row for the backward.
    CrossEntropyResult cross_entropy_forward(ConstView<T> logits, const std::int32_t* targets, std::int32_t ignore_index,
                                             C label_smoothing, C* lse) {
        auto fs = ref_.scope();
        return ref_.cross_entropy_forward(wide(fs, logits), targets, ignore_index, label_smoothing, lse);
    }
    void cross_entropy_backward(ConstView<T> logits, const std::int32_t* targets, const C* lse, std::int32_t ignore_index,
                                C label_smoothing, index_t count, C d_loss, TensorView<T> d_logits) {
        check_same(logits, d_logits, "cross_entropy d_logits");
        auto fs = ref_.scope();
        TensorView<float> df = fresh(fs, d_logits.shape());
        ref_.cross_entropy_backward(wide(fs, logits), targets, lse, ignore_index, label_smoothing, count, d_loss, df);
        narrow(df, d_logits);
    }
    /// y = x / max(‖x‖, eps) per row; norm (float [rows], nullable) is kept for the backward.
    void l2_normalize_forward(ConstView<T> x, TensorView<T> y, C* norm, C eps = C(0)) {
        check_same(x, y, "l2_normalize output");
        auto fs = ref_.scope();
        TensorView<float> yf = fresh(fs, y.shape());
        ref_.l2_normalize_forward(wide(fs, x), yf, norm, eps);
        narrow(yf, y);
    }
    void l2_normalize_backward(ConstView<T> d_y, ConstView<T> y, const C* norm, TensorView<T> d_x) {
        check_same(y, d_y, "l2_normalize d_y");
        check_same(y, d_x, "l2_normalize d_x");
        auto fs = ref_.scope();
        TensorView<float> dxf = fresh(fs, d_x.shape());
        ref_.l2_normalize_backward(wide(fs, d_y), wide(fs, y), norm, dxf);
        narrow(dxf, d_x);
    }

    // ---- optimizer ----------------------------------------------------------------------------
    /// One AdamW step (CpuBackend<float>::adamw_step's order of operations) with float moments, as
    /// CUDA's adamw_kernel: with `master` (float) the update runs on the master and p receives it
    /// rounded; an element of p that is no longer its master's rounding (written since the last
    /// step) restarts its master from p. Without a master, p is widened, updated and rounded.
    void adamw_step(TensorView<T> p, ConstView<T> g, TensorView<C> m, TensorView<C> v, const AdamWHyper& h,
                    TensorView<C> master = {}) {
        check_adamw_shapes(p.shape(), g.shape(), m.shape(), v.shape(), master.empty() ? nullptr : &master.shape());
        const AdamWConstants<C> k(h);
        const bool has_master = !master.empty();
        T* pd = p.data();
        const T* gd = g.data();
        C *md = m.data(), *vd = v.data(), *wd = has_master ? master.data() : nullptr;
        for (index_t i = 0; i < p.numel(); ++i) {
            C pi = static_cast<C>(pd[i]);
            if (has_master && static_cast<C>(static_cast<T>(wd[i])) == pi) pi = wd[i];
            pi = adamw_update(pi, static_cast<C>(gd[i]), md[i], vd[i], k);
            if (has_master) wd[i] = pi;
            pd[i] = static_cast<T>(pi);
        }
    }
    /// False when any element of any tensor is infinite or NaN (a loss-scaled gradient overflowed).
    bool all_finite(std::span<const ConstView<T>> xs) {
        for (const ConstView<T>& x : xs)
            for (index_t i = 0; i < x.numel(); ++i)
                if (!std::isfinite(static_cast<float>(x.data()[i]))) return false;
        return true;
    }

    // ---- reductions ---------------------------------------------------------------------------
    /// out[c] += Σ_r x[r, c]: as CUDA's column sums, Σ in double, added to the stored value in
    /// float and rounded once.
    void sum_rows_accumulate(ConstView<T> x, T* out) {
        const index_t rows = x.shape().rows(), cols = x.shape().cols();
        if (rows == 0 || cols == 0) return;
        std::vector<double> s(static_cast<std::size_t>(cols), 0.0);
        for (index_t r = 0; r < rows; ++r)
            for (index_t c = 0; c < cols; ++c) s[std::size_t(c)] += static_cast<float>(x.data()[r * cols + c]);
        for (index_t c = 0; c < cols; ++c)
            out[c] = static_cast<T>(static_cast<float>(out[c]) + static_cast<float>(s[std::size_t(c)]));
    }
    /// Σ x in double, returned as float.
    C sum(ConstView<T> x) {
        double s = 0;
        for (index_t i = 0; i < x.numel(); ++i) s += static_cast<float>(x.data()[i]);
        return static_cast<C>(s);
    }
    /// The same over a float tensor (saved statistics).
    C sum(ConstView<C> x) { return ref_.sum(x); }
    /// Σ a·b in double, returned as float.
    C dot(ConstView<T> a, ConstView<T> b) {
        check_same(a, b, "dot operand");
        double s = 0;
        for (index_t i = 0; i < a.numel(); ++i)
            s += static_cast<double>(static_cast<float>(a.data()[i])) * static_cast<float>(b.data()[i]);
        return static_cast<C>(s);
    }
    C mean(ConstView<T> x) { return x.numel() ? sum(x) / static_cast<C>(x.numel()) : C(0); }

private:
    using FloatScope = typename CpuBackend<float>::Scope;

    static CpuBackend<float> make_ref(const Options& o) {
        typename CpuBackend<float>::Options r;
        r.threads = o.threads;
        r.gemm = o.gemm;
        r.fused_attention = o.fused_attention;
        return CpuBackend<float>(r);
    }

    /// Elements a (rows × cols, leading dimension ld) operand spans over a two-level batch.
    static index_t extent(index_t rows, index_t cols, index_t ld, index_t outer, index_t outer_s, index_t inner,
                          index_t inner_s) {
        if (rows == 0 || cols == 0) return 0;
        return (rows - 1) * ld + cols + (outer - 1) * outer_s + (inner - 1) * inner_s;
    }
    /// Elements of attention's k or v: rows of D, batch b at b·stride.
    static index_t kv_extent(index_t stride, index_t B, index_t Tk, index_t D) {
        return B == 0 || Tk * D == 0 ? 0 : (B - 1) * stride + Tk * D;
    }

    static float* widen(FloatScope& fs, const T* src, index_t n) {
        float* d = fs.tensor(Shape{n}).data();
        for (index_t i = 0; i < n; ++i) d[i] = static_cast<float>(src[i]);
        return d;
    }
    static float* zeros(FloatScope& fs, index_t n) { return fs.zeros(Shape{n}).data(); }
    static float* fresh(FloatScope& fs, index_t n) { return fs.tensor(Shape{n}).data(); }
    static TensorView<float> fresh(FloatScope& fs, Shape s) { return fs.tensor(s); }
    static TensorView<float> wide(FloatScope& fs, ConstView<T> x) { return {widen(fs, x.data(), x.numel()), x.shape()}; }
    static void round_into(const float* src, T* dst, index_t n) {
        for (index_t i = 0; i < n; ++i) dst[i] = static_cast<T>(src[i]);
    }
    static void narrow(ConstView<float> src, TensorView<T> dst) { round_into(src.data(), dst.data(), dst.numel()); }

    /// The mask with its additive part ([B or 1, Tq, Tk], batch stride as given) widened.
    static AttentionMask<float> wide_mask(FloatScope& fs, const AttentionMask<T>& m, index_t B, index_t Tq, index_t Tk) {
        AttentionMask<float> f;
        f.key_keep = m.key_keep;
        f.causal = m.causal;
        f.causal_offset = m.causal_offset;
        f.additive_batch_stride = m.additive_batch_stride;
        if (m.additive) {
            const index_t stride = m.additive_batch_stride < 0 ? Tq * Tk : m.additive_batch_stride;
            f.additive = widen(fs, m.additive, B == 0 ? 0 : (B - 1) * stride + Tq * Tk);
        }
        return f;
    }

    static void check_same(ConstView<T> a, ConstView<T> b, const char* what) {
        if (!(a.shape() == b.shape()))
            throw ShapeError(std::string(what) + ": expected " + a.shape().str() + ", found " + b.shape().str());
    }

    CpuBackend<float> ref_;
    cpu::ScratchArena<T> arena_;
};

static_assert(Backend<CpuBackend<bfloat16>>, "CpuBackend<bfloat16> must provide the whole op set.");
static_assert(Backend<CpuBackend<float16>>, "CpuBackend<float16> must provide the whole op set.");

}  // namespace mmalign
