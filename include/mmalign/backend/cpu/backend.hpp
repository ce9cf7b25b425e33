// mmalign/backend/cpu/backend.hpp — CpuBackend<T>: the op set of core/backend.hpp on Eigen.
//
// The backend is an object passed to every module call (`be`). It holds what the ops need at run
// time — the thread count, the gemm library choice, a scratch arena — while modules hold only
// weights. T is the arithmetic type: float for models, double for gradient checks. T = bfloat16 or
// float16 (16-bit storage computed in float, the reference for CudaBackend's 16-bit types) is a
// specialisation of its own in backend16.hpp, which builds on this header (each 16-bit op runs the
// float op): include that header for those types. The dependency runs one way only, so neither
// header is ever read half-finished through the other.
// Views are row-major; every op checks the shapes it is given and throws ShapeError otherwise.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mmalign/backend/cpu/activation.hpp"
#include "mmalign/backend/cpu/attention.hpp"
#include "mmalign/backend/cpu/arena.hpp"
#include "mmalign/backend/cpu/cross_entropy.hpp"
#include "mmalign/backend/cpu/embedding.hpp"
#include "mmalign/backend/cpu/gemm.hpp"
#include "mmalign/backend/cpu/l2_normalize.hpp"
#include "mmalign/backend/cpu/layer_norm.hpp"
#include "mmalign/backend/cpu/parallel.hpp"
#include "mmalign/backend/cpu/patchify.hpp"
#include "mmalign/backend/cpu/reduce.hpp"
#include "mmalign/backend/cpu/softmax.hpp"
#include "mmalign/core/backend.hpp"
#include "mmalign/core/ops.hpp"
#include "mmalign/core/tensor.hpp"

namespace mmalign {

namespace cpu {
/// Copies mask.key_keep ([n]) into `dst` and returns the mask pointing at the copy, marked
/// resident (CpuBackend's upload_mask for every storage type).
template <class M>
M copy_mask(const M& mask, index_t n, Tensor<std::int32_t>& dst) {
    M m = mask;
    if (!mask.key_keep) return m;
    dst.resize(Shape{n});
    if (n) std::copy(mask.key_keep, mask.key_keep + n, dst.data());
    m.key_keep = dst.data();
    m.key_keep_resident = true;
    return m;
}
}  // namespace cpu

template <class T = float>
class CpuBackend {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "CpuBackend computes in float or double; for bfloat16/float16 storage include "
                  "mmalign/backend/cpu/backend16.hpp; other element types need a conversion first.");

public:
    using Scalar = T;
    using Compute = T;                  // computes in its storage type
    using Tensor = mmalign::Tensor<T>;  // what modules own: parameters, saved activations
    using ComputeTensor = Tensor;
    using IndexTensor = mmalign::Tensor<std::int32_t>;  // a mask's key_keep kept across calls (upload_mask)
    using Scope = typename cpu::ScratchArena<T>::Scope;
    using CrossEntropyResult = mmalign::CrossEntropyResult<T>;

    struct Options {
        int threads = 0;  // 0: all OpenMP threads (OMP_NUM_THREADS or the core count)
        cpu::GemmImpl gemm = cpu::default_gemm_impl<T>();
        bool fused_attention = false;  // MultiHeadAttention through attention_forward/backward
    };

    CpuBackend() : CpuBackend(Options{}) {}
    explicit CpuBackend(Options o) : gemm_impl_(o.gemm), fused_attention_(o.fused_attention) {
        cpu::check_gemm_impl(gemm_impl_);
        set_threads(o.threads);
    }

    int threads() const { return threads_; }
    void set_threads(int n) {
        if (n < 0) throw ArgumentError("CpuBackend: thread count must be >= 0, found " + std::to_string(n));
        threads_ = n == 0 ? cpu::hardware_threads() : n;
    }
    cpu::GemmImpl gemm_impl() const { return gemm_impl_; }
    void set_gemm_impl(cpu::GemmImpl g) {
        cpu::check_gemm_impl(g);
        gemm_impl_ = g;
    }

    /// Temporaries for one call: `auto sc = be.scope(); auto t = sc.tensor({B, T, D});`
    Scope scope() { return Scope(arena_); }
    const cpu::ScratchArena<T>& arena() const { return arena_; }

    // ---- products -------------------------------------------------------------------------
    void gemm(Trans ta, Trans tb, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda, const T* b,
              index_t ldb, T beta, T* c, index_t ldc) {
        cpu::gemm<T>(gemm_impl_, threads_, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    }
    void gemm_strided_batched(Trans ta, Trans tb, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda,
                              index_t stride_a, const T* b, index_t ldb, index_t stride_b, T beta, T* c, index_t ldc,
                              index_t stride_c, index_t batch) {
        cpu::gemm_strided_batched<T>(gemm_impl_, threads_, ta, tb, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c,
                                     ldc, stride_c, batch);
    }

    /// outer × inner products; (o, i) starts at a + o·outer_a + i·inner_a (likewise b, c).
    void gemm_batched_2d(Trans ta, Trans tb, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda,
                         index_t outer_a, index_t inner_a, const T* b, index_t ldb, index_t outer_b, index_t inner_b, T beta,
                         T* c, index_t ldc, index_t outer_c, index_t inner_c, index_t outer, index_t inner) {
        cpu::gemm_batched_2d<T>(gemm_impl_, threads_, ta, tb, m, n, k, alpha, a, lda, outer_a, inner_a, b, ldb, outer_b, inner_b, beta,
                                c, ldc, outer_c, inner_c, outer, inner);
    }

    /// y[M, N] = act(x[M, K] · w[N, K]ᵀ + bias[N]) — torch.nn.Linear's layout, as one product
    /// with a GemmEpilogue (bias and activation applied as each tile of y is finished). `pre` (nullable, [M, N]) receives the value before
    /// the activation, which the activation's backward needs. `bias` may be null.
    void linear_forward(ConstView<T> x, ConstView<T> w, const T* bias, Activation act, TensorView<T> y, T* pre) {
        const index_t K = w.dim(1), N = w.dim(0), M = x.numel() / K;
        if (x.shape().cols() != K || y.numel() != M * N || y.shape().cols() != N)
            throw ShapeError("linear: input " + x.shape().str() + " and output " + y.shape().str() +
                             " do not fit weight " + w.shape().str());
        cpu::gemm<T>(gemm_impl_, threads_, Trans::N, Trans::T, M, N, K, T(1), x.data(), K, w.data(), K, T(0), y.data(), N,
                     GemmEpilogue<T>{.bias = bias, .act = act, .pre = pre, .ldpre = N});
    }

    // ---- normalisation ----------------------------------------------------------------------
    /// mean, rstd: [rows] or null (inference).
    void layer_norm_forward(ConstView<T> x, ConstView<T> w, ConstView<T> b, double eps, TensorView<T> y, T* mean,
                            T* rstd) {
        const index_t C = w.numel();
        check_rows(x, C, "layer_norm input");
        check_same(x, y, "layer_norm output");
        cpu::layer_norm_forward<T>(threads_, x.data(), w.data(), b.data(), y.data(), mean, rstd, x.shape().rows(), C,
                                   eps);
    }
    /// d_x (assigned) may be empty; d_w, d_b (accumulated) may be null.
    void layer_norm_backward(ConstView<T> d_y, ConstView<T> x, ConstView<T> w, const T* mean, const T* rstd,
                             TensorView<T> d_x, T* d_w, T* d_b) {
        const index_t C = w.numel();
        check_same(x, d_y, "layer_norm d_y");
        if (!d_x.empty()) check_same(x, d_x, "layer_norm d_x");
        cpu::layer_norm_backward<T>(threads_, d_y.data(), x.data(), w.data(), mean, rstd,
                                    d_x.empty() ? nullptr : d_x.data(), d_w, d_b, x.shape().rows(), C, scratch_);
    }

    // ---- fused attention ----------------------------------------------------------------------
    /// Whether modules compute attention with attention_forward/backward (no [B, H, Tq, Tk]
    /// probabilities kept) instead of gemm + attention_softmax + gemm.
    bool fused_attention() const { return fused_attention_; }
    void set_fused_attention(bool on) { fused_attention_ = on; }
    /// o = softmax(scale·q kᵀ + mask) v per (batch, head), online (cpu/attention.hpp). q, o:
    /// [B, Tq, H·dh]; k, v: rows of H·dh, batch b at b·kv_batch_stride; stats [B, H, Tq, 2] (each
    /// query's score maximum and log-denominator, for the backward) or null.
    void attention_forward(const T* q, const T* k, const T* v, index_t kv_batch_stride, index_t B, index_t H, index_t Tq,
                           index_t Tk, index_t dh, T scale, const AttentionMask<T>& mask, T* o, T* stats) {
        cpu::attention_forward<T>(threads_, q, k, v, kv_batch_stride, B, H, Tq, Tk, dh, scale, mask, o, stats);
    }
    /// d_q [B, Tq, H·dh], d_k, d_v [B, Tk, H·dh] assigned, from the forward's o and stats.
    void attention_backward(const T* q, const T* k, const T* v, index_t kv_batch_stride, index_t B, index_t H,
                            index_t Tq, index_t Tk, index_t dh, T scale, const AttentionMask<T>& mask, const T* o,
                            const T* d_o, const T* stats, T* d_q, T* d_k, T* d_v) {
        cpu::attention_backward<T>(threads_, q, k, v, kv_batch_stride, B, H, Tq, Tk, dh, scale, mask, o, d_o, stats, d_q,
                                   d_k, d_v);
    }

    /// Copies mask.key_keep ([n]) into `dst` and returns the mask pointing at the copy, marked
    /// resident. Host memory is this backend's memory, so key_keep_resident changes nothing here;
    /// the copy is what a module keeps (a Saved's mask outlives the caller's array).
    AttentionMask<T> upload_mask(const AttentionMask<T>& mask, index_t n, IndexTensor& dst) {
        return cpu::copy_mask(mask, n, dst);
    }

    // ---- attention softmax --------------------------------------------------------------------
    /// scores [B, H, Tq, Tk] → probabilities, in place.
    void attention_softmax_forward(TensorView<T> scores, T scale, const AttentionMask<T>& mask) {
        if (scores.rank() != 4) throw ShapeError("attention_softmax: expected [B, H, Tq, Tk], found " + scores.shape().str());
        cpu::attention_softmax_forward<T>(threads_, scores.data(), scores.dim(0), scores.dim(1), scores.dim(2),
                                          scores.dim(3), scale, mask);
    }
    /// d holds d_probs on entry and d_scores (including `scale`) on return.
    void attention_softmax_backward(ConstView<T> probs, TensorView<T> d, T scale) {
        check_same(probs, d, "attention_softmax d_probs");
        cpu::attention_softmax_backward<T>(threads_, probs.data(), d.data(), probs.shape().rows(), probs.shape().cols(),
                                           scale);
    }
    void softmax(ConstView<T> x, TensorView<T> y) {
        check_same(x, y, "softmax output");
        cpu::softmax_rows<T>(threads_, x.data(), y.data(), x.shape().rows(), x.shape().cols());
    }

    // ---- pointwise ----------------------------------------------------------------------------
    void activation_forward(Activation a, ConstView<T> x, TensorView<T> y) {
        check_same(x, y, "activation output");
        cpu::activation_forward<T>(threads_, a, x.data(), y.data(), x.numel());
    }
    /// d_x = d_y · f'(x), assigned.
    void activation_backward(Activation a, ConstView<T> x, ConstView<T> d_y, TensorView<T> d_x) {
        check_same(x, d_y, "activation d_y");
        check_same(x, d_x, "activation d_x");
        cpu::activation_backward<T>(threads_, a, x.data(), d_y.data(), d_x.data(), x.numel());
    }
    void add(ConstView<T> a, ConstView<T> b, TensorView<T> y) {
        check_same(a, b, "add operand");
        check_same(a, y, "add output");
        cpu::add<T>(threads_, a.data(), b.data(), y.data(), a.numel());
    }
    /// y += alpha · x
    void axpy(T alpha, ConstView<T> x, TensorView<T> y) {
        check_same(x, y, "axpy");
        cpu::axpy<T>(threads_, alpha, x.data(), y.data(), x.numel());
    }
    void scale(T alpha, TensorView<T> x) { cpu::scale<T>(threads_, alpha, x.data(), x.numel()); }
    void copy(ConstView<T> src, TensorView<T> dst) { mmalign::copy<T>(src, dst); }
    /// Transfers between host memory and the backend's memory (both plain copies here).
    void from_host(ConstView<T> host, TensorView<T> dst) { mmalign::copy<T>(host, dst); }
    void to_host(ConstView<T> src, TensorView<T> host) { mmalign::copy<T>(src, host); }
    void fill(TensorView<T> x, T v) { std::fill(x.begin(), x.end(), v); }

    // ---- embeddings ---------------------------------------------------------------------------
    /// out[n, :] = table[ids[n], :]; throws ArgumentError naming an id outside the table.
    void embedding_forward(const std::int32_t* ids, index_t n, ConstView<T> table, TensorView<T> out) {
        if (out.numel() != n * table.dim(1))
            throw ShapeError("embedding output: expected " + std::to_string(n) + " rows of " +
                             std::to_string(table.dim(1)) + ", found " + out.shape().str());
        cpu::embedding_forward<T>(threads_, ids, n, table.data(), table.dim(0), table.dim(1), out.data());
    }
    /// d_table[ids[n], :] += d_out[n, :]
    void embedding_backward(const std::int32_t* ids, index_t n, ConstView<T> d_out, TensorView<T> d_table) {
        if (d_out.numel() != n * d_table.dim(1))
            throw ShapeError("embedding d_out: expected " + std::to_string(n) + " rows of " +
                             std::to_string(d_table.dim(1)) + ", found " + d_out.shape().str());
        cpu::embedding_backward<T>(threads_, ids, n, d_out.data(), d_table.dim(1), d_table.data());
    }

    // ---- images -------------------------------------------------------------------------------
    /// pixels [B, C, H, W] → patches [B, (H/P)·(W/P), C·P·P] (cpu/patchify.hpp).
    void patchify(ConstView<T> pixels, index_t P, TensorView<T> patches) {
        cpu::patchify<T>(threads_, pixels, P, patches);
    }

    // ---- losses and normalised embeddings -----------------------------------------------------
    /// logits [N, C]; lse [N] receives log Σ exp per row for the backward.
    CrossEntropyResult cross_entropy_forward(ConstView<T> logits, const std::int32_t* targets, std::int32_t ignore_index,
                                             T label_smoothing, T* lse) {
        return cpu::cross_entropy_forward<T>(threads_, logits.data(), targets, logits.shape().rows(),
                                             logits.shape().cols(), ignore_index, label_smoothing, lse);
    }
    void cross_entropy_backward(ConstView<T> logits, const std::int32_t* targets, const T* lse, std::int32_t ignore_index,
                                T label_smoothing, index_t count, T d_loss, TensorView<T> d_logits) {
        check_same(logits, d_logits, "cross_entropy d_logits");
        cpu::cross_entropy_backward<T>(threads_, logits.data(), targets, lse, logits.shape().rows(),
                                       logits.shape().cols(), ignore_index, label_smoothing, count, d_loss,
                                       d_logits.data());
    }
    /// y = x / max(‖x‖, eps) per row; norm [rows] (nullable) is kept for the backward.
    void l2_normalize_forward(ConstView<T> x, TensorView<T> y, T* norm, T eps = T(0)) {
        check_same(x, y, "l2_normalize output");
        cpu::l2_normalize_forward<T>(threads_, x.data(), y.data(), norm, x.shape().rows(), x.shape().cols(), eps);
    }
    void l2_normalize_backward(ConstView<T> d_y, ConstView<T> y, const T* norm, TensorView<T> d_x) {
        check_same(y, d_y, "l2_normalize d_y");
        check_same(y, d_x, "l2_normalize d_x");
        cpu::l2_normalize_backward<T>(threads_, d_y.data(), y.data(), norm, d_x.data(), y.shape().rows(),
                                      y.shape().cols());
    }

    // ---- optimizer ----------------------------------------------------------------------------
    /// One AdamW step on one parameter, in torch.optim.AdamW's order of operations (single-tensor
    /// path): p ← p·(1 − lr·wd); m ← m + (1−β1)(g − m); v ← β2·v + (1−β2)·g²;
    /// p ← p − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + eps). g is multiplied by h.grad_scale first
    /// (skipped at 1). With `master` (same shape) the update runs on master and p receives a copy:
    /// the mixed-precision form, where the backend's 16-bit storage keeps a float master copy.
    void adamw_step(TensorView<T> p, ConstView<T> g, TensorView<T> m, TensorView<T> v, const AdamWHyper& h,
                    TensorView<T> master = {}) {
        check_same(p, g, "adamw gradient");
        check_same(p, m, "adamw exp_avg");
        check_same(p, v, "adamw exp_avg_sq");
        if (!master.empty()) {
            check_same(p, master, "adamw master weights");
            adamw_step(master, g, m, v, h);
            copy(master, p);
            return;
        }
        const T decay = static_cast<T>(1.0 - h.lr * h.weight_decay);
        const T b1 = static_cast<T>(h.beta1), b2 = static_cast<T>(h.beta2), eps = static_cast<T>(h.eps);
        const T step_size = static_cast<T>(h.lr / (1.0 - std::pow(h.beta1, double(h.step))));
        const T bc2_sqrt = static_cast<T>(std::sqrt(1.0 - std::pow(h.beta2, double(h.step))));
        T *pd = p.data(), *md = m.data(), *vd = v.data();
        const T* gd = g.data();
        const T gs = static_cast<T>(h.grad_scale);
        cpu::parallel_for(threads_, (p.numel() + 4095) / 4096, 4096 * 8, [&](index_t c) {
            for (index_t i = c * 4096, e = std::min(p.numel(), (c + 1) * 4096); i < e; ++i) {
                const T gi = gs == T(1) ? gd[i] : gd[i] * gs;
                if (h.weight_decay != 0) pd[i] *= decay;
                md[i] += (gi - md[i]) * (T(1) - b1);
                vd[i] = vd[i] * b2 + (T(1) - b2) * gi * gi;
                pd[i] += -step_size * md[i] / (std::sqrt(vd[i]) / bc2_sqrt + eps);  // torch addcdiv order
            }
        });
    }

    // ---- reductions ---------------------------------------------------------------------------
    /// out[c] += Σ_r x[r, c]
    void sum_rows_accumulate(ConstView<T> x, T* out) {
        cpu::sum_rows_accumulate<T>(threads_, x.data(), x.shape().rows(), x.shape().cols(), out, scratch_);
    }
    T sum(ConstView<T> x) { return cpu::sum<T>(x.data(), x.numel()); }
    /// Σ a ⊙ b, accumulated in double.
    T dot(ConstView<T> a, ConstView<T> b) {
        check_same(a, b, "dot operand");
        double s = 0;
        for (index_t i = 0; i < a.numel(); ++i) s += static_cast<double>(a.data()[i]) * static_cast<double>(b.data()[i]);
        return static_cast<T>(s);
    }
    T mean(ConstView<T> x) { return x.numel() ? sum(x) / static_cast<T>(x.numel()) : T(0); }
    /// False when any element of any tensor is infinite or NaN (a loss-scaled gradient overflowed).
    bool all_finite(std::span<const ConstView<T>> xs) {
        for (const ConstView<T>& x : xs)
            for (index_t i = 0; i < x.numel(); ++i)
                if (!std::isfinite(x.data()[i])) return false;
        return true;
    }

private:
    static void check_same(ConstView<T> a, ConstView<T> b, const char* what) {
        if (!(a.shape() == b.shape())) throw ShapeError(std::string(what) + ": expected " + a.shape().str() + ", found " + b.shape().str());
    }
    static void check_rows(ConstView<T> x, index_t cols, const char* what) {
        if (x.shape().cols() != cols)
            throw ShapeError(std::string(what) + ": expected last extent " + std::to_string(cols) + ", found " +
                             x.shape().str());
    }

    int threads_ = 1;
    cpu::GemmImpl gemm_impl_;
    bool fused_attention_ = false;
    cpu::ScratchArena<T> arena_;
    std::vector<T> scratch_;
};

static_assert(Backend<CpuBackend<float>>, "CpuBackend<float> must provide the whole op set.");
static_assert(Backend<CpuBackend<double>>, "CpuBackend<double> must provide the whole op set.");

}  // namespace mmalign
