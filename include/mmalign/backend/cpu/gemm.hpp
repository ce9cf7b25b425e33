// mmalign/backend/cpu/gemm.hpp — general matrix products on row-major memory.
//
//   C[m, n] = alpha · op(A)[m, k] · op(B)[k, n] + beta · C        op(X) = X or Xᵀ
//
// Row-major operands are Eigen::Map'ed with an outer stride (the leading dimension), so any
// sub-matrix of a larger tensor — one head's columns of [B, T, D], say — is a valid operand.
// Engines (GemmImpl): Eigen's product; cblas_?gemm with MMALIGN_USE_BLAS; and for float on CPUs
// with AVX-512F, mmalign's own packed kernel (sgemm_avx512.hpp), the default where it runs.
// Threads: a single product is split into row (or column) blocks, one single-threaded library
// call per OpenMP thread; batches run one Eigen product per thread.
#pragma once

#include <Eigen/Core>

#include "mmalign/backend/cpu/activation.hpp"
#include "mmalign/backend/cpu/parallel.hpp"
#include "mmalign/backend/cpu/sgemm_avx512.hpp"
#include "mmalign/core/error.hpp"
#include "mmalign/core/ops.hpp"

#if defined(MMALIGN_USE_BLAS)
#include <cblas.h>
#endif

namespace mmalign::cpu {

/// Which engine multiplies. `avx512` is mmalign's packed AVX-512F kernel for float; double
/// products under it go to OpenBLAS when built with it, else to Eigen.
enum class GemmImpl { eigen, blas, avx512 };

inline constexpr bool blas_available =
#if defined(MMALIGN_USE_BLAS)
    true;
#else
    false;
#endif

/// The fastest engine available for T on this build and CPU: avx512 (float, AVX-512F CPU), then
/// OpenBLAS, then Eigen.
template <class T>
GemmImpl default_gemm_impl() {
    if (std::is_same_v<T, float> && avx512::supported()) return GemmImpl::avx512;
    return blas_available ? GemmImpl::blas : GemmImpl::eigen;
}

/// Throws ArgumentError naming what is missing when `impl` cannot run here.
inline void check_gemm_impl(GemmImpl impl) {
    if (impl == GemmImpl::blas && !blas_available)
        throw ArgumentError("gemm: GemmImpl::blas requested but mmalign was built without MMALIGN_USE_BLAS");
    if (impl == GemmImpl::avx512 && !avx512::supported())
        throw ArgumentError("gemm: GemmImpl::avx512 requested but this CPU (or compiler) has no AVX-512F");
}

template <class T>
using RowMajorMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ConstMatMap = Eigen::Map<const RowMajorMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using MatMap = Eigen::Map<RowMajorMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

namespace detail {

template <class T, class OpA, class OpB>
void eigen_update(MatMap<T>& c, const OpA& a, const OpB& b, T alpha, T beta) {
    if (beta == T(0))
        c.noalias() = alpha * (a * b);
    else {
        if (beta != T(1)) c *= beta;
        c.noalias() += alpha * (a * b);
    }
}

template <class T>
void eigen_gemm(Trans ta, Trans tb, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda,
                const T* b, index_t ldb, T beta, T* c, index_t ldc) {
    // Stored shapes: A is [m, k] (N) or [k, m] (T); B is [k, n] (N) or [n, k] (T).
    ConstMatMap<T> am(a, ta == Trans::N ? m : k, ta == Trans::N ? k : m, Eigen::OuterStride<>(lda));
    ConstMatMap<T> bm(b, tb == Trans::N ? k : n, tb == Trans::N ? n : k, Eigen::OuterStride<>(ldb));
    MatMap<T> cm(c, m, n, Eigen::OuterStride<>(ldc));
    if (ta == Trans::N && tb == Trans::N) eigen_update<T>(cm, am, bm, alpha, beta);
    else if (ta == Trans::N) eigen_update<T>(cm, am, bm.transpose(), alpha, beta);
    else if (tb == Trans::N) eigen_update<T>(cm, am.transpose(), bm, alpha, beta);
    else eigen_update<T>(cm, am.transpose(), bm.transpose(), alpha, beta);
}

#if defined(MMALIGN_USE_BLAS)
inline CBLAS_TRANSPOSE cblas_trans(Trans t) { return t == Trans::N ? CblasNoTrans : CblasTrans; }

template <class T>
void blas_gemm(Trans ta, Trans tb, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda,
               const T* b, index_t ldb, T beta, T* c, index_t ldc) {
    const auto i = [](index_t v) { return static_cast<blasint>(v); };
    if constexpr (std::is_same_v<T, float>)
        cblas_sgemm(CblasRowMajor, cblas_trans(ta), cblas_trans(tb), i(m), i(n), i(k), alpha, a, i(lda), b,
                    i(ldb), beta, c, i(ldc));
    else
        cblas_dgemm(CblasRowMajor, cblas_trans(ta), cblas_trans(tb), i(m), i(n), i(k), alpha, a, i(lda), b,
                    i(ldb), beta, c, i(ldc));
}
#endif

inline void check_gemm_args(Trans ta, Trans tb, index_t m, index_t n, index_t k, index_t lda, index_t ldb,
                            index_t ldc) {
    const index_t a_cols = ta == Trans::N ? k : m, b_cols = tb == Trans::N ? n : k;
    if (m < 0 || n < 0 || k < 0 || lda < a_cols || ldb < b_cols || ldc < n)
        throw ArgumentError("gemm: invalid sizes m=" + std::to_string(m) + " n=" + std::to_string(n) +
                            " k=" + std::to_string(k) + " lda=" + std::to_string(lda) +
                            " ldb=" + std::to_string(ldb) + " ldc=" + std::to_string(ldc));
}

// Checks the engine can run and keeps Eigen and OpenBLAS single-threaded: all parallelism comes
// from mmalign's OpenMP team. Every call, as the process may have raised OpenBLAS's count since
// (it is a global setting).
inline void prepare_engine(GemmImpl impl) {
    check_gemm_impl(impl);
#if defined(MMALIGN_USE_BLAS)
    openblas_set_num_threads(1);
#endif
    Eigen::setNbThreads(1);
}

// The epilogue as a pass over the m × n result (engines other than avx512).
template <class T>
void apply_epilogue(const GemmEpilogue<T>& ep, T* c, index_t ldc, index_t m, index_t n) {
    if (ep.empty()) return;
    for (index_t i = 0; i < m; ++i) {
        T* ci = c + i * ldc;
        if (ep.bias)
            for (index_t j = 0; j < n; ++j) ci[j] += ep.bias[j];
        if (ep.pre) std::copy(ci, ci + n, ep.pre + i * ep.ldpre);
        if (ep.act != Activation::none) activate_span(ep.act, ci, ci, n);
    }
}

}  // namespace detail

/// One product on the calling thread (Eigen or OpenBLAS each limited to one thread), then `ep`.
template <class T>
void gemm_serial(GemmImpl impl, Trans ta, Trans tb, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda,
                 const T* b, index_t ldb, T beta, T* c, index_t ldc, const GemmEpilogue<T>& ep = {}) {
#if MMALIGN_AVX512
    if constexpr (std::is_same_v<T, float>) {
        if (impl == GemmImpl::avx512) {
            avx512::sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ep);
            return;
        }
    }
#endif
#if defined(MMALIGN_USE_BLAS)
    if (impl == GemmImpl::blas || impl == GemmImpl::avx512) {
        detail::blas_gemm<T>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        detail::apply_epilogue(ep, c, ldc, m, n);
        return;
    }
#else
    (void)impl;
#endif
    detail::eigen_gemm<T>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    detail::apply_epilogue(ep, c, ldc, m, n);
}

/// One product, then `ep` (core/ops.hpp GemmEpilogue), split over `threads` OpenMP threads by
/// blocks of rows of C (or of columns when C is wide and short), each block one single-threaded
/// call of the engine. All CPU parallelism
/// then comes from one OpenMP team: Eigen's and OpenBLAS's own thread pools would otherwise spin
/// against the OpenMP kernels around them on a small machine (docs/performance.md).
template <class T>
void gemm(GemmImpl impl, int threads, Trans ta, Trans tb, index_t m, index_t n, index_t k, T alpha, const T* a,
          index_t lda, const T* b, index_t ldb, T beta, T* c, index_t ldc, const GemmEpilogue<T>& ep = {}) {
    detail::check_gemm_args(ta, tb, m, n, k, lda, ldb, ldc);
    detail::prepare_engine(impl);
    if (m == 0 || n == 0) return;
    const index_t flops = 2 * m * n * std::max<index_t>(k, 1);
    const int team = flops < (index_t(1) << 21) ? 1 : threads;
    if (team <= 1) {
        gemm_serial<T>(impl, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ep);
        return;
    }
    // Blocks aligned to 16 rows (columns) so each stays a whole number of kernel panels.
    // Split the larger side of C: each block packs only its share of the other operand, and for
    // C = x·Wᵀ with few rows (batch 1) that share is the weight, the expensive one to pack.
    const bool by_rows = m >= n;
    const index_t extent = by_rows ? m : n;
    const index_t block = (extent + team - 1) / team;
    const index_t aligned = (block + 15) / 16 * 16;
    const index_t parts = (extent + aligned - 1) / aligned;
    parallel_for(team, parts, parallel_grain, [&](index_t p) {
        const index_t lo = p * aligned, len = std::min(aligned, extent - lo);
        GemmEpilogue<T> part = ep;
        if (by_rows) {
            const T* ap = ta == Trans::N ? a + lo * lda : a + lo;  // rows of op(A)
            if (part.pre) part.pre += lo * part.ldpre;
            gemm_serial<T>(impl, ta, tb, len, n, k, alpha, ap, lda, b, ldb, beta, c + lo * ldc, ldc, part);
        } else {
            const T* bp = tb == Trans::N ? b + lo : b + lo * ldb;  // columns of op(B)
            if (part.bias) part.bias += lo;
            if (part.pre) part.pre += lo;
            gemm_serial<T>(impl, ta, tb, m, len, k, alpha, a, lda, bp, ldb, beta, c + lo, ldc, part);
        }
    });
}

/// `batch` independent products; operand i starts at a + i·stride_a (likewise b, c).
template <class T>
void gemm_strided_batched(GemmImpl impl, int threads, Trans ta, Trans tb, index_t m, index_t n, index_t k, T alpha, const T* a,
                          index_t lda, index_t stride_a, const T* b, index_t ldb, index_t stride_b, T beta, T* c,
                          index_t ldc, index_t stride_c, index_t batch) {
    detail::check_gemm_args(ta, tb, m, n, k, lda, ldb, ldc);
    detail::prepare_engine(impl);
    if (m == 0 || n == 0) return;
    parallel_for(threads, batch, 2 * m * n * k, [&](index_t i) {
        gemm_serial<T>(impl, ta, tb, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta,
                              c + i * stride_c, ldc);
    });
}

/// `outer × inner` independent products; product (o, i) reads a + o·outer_a + i·inner_a (likewise
/// b, c). Attention's per-(batch, head) products over [B, T, H·d] tensors are one such call, so
/// all B·H of them are spread over the threads at once.
template <class T>
void gemm_batched_2d(GemmImpl impl, int threads, Trans ta, Trans tb, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda,
                     index_t outer_a, index_t inner_a, const T* b, index_t ldb, index_t outer_b, index_t inner_b, T beta,
                     T* c, index_t ldc, index_t outer_c, index_t inner_c, index_t outer, index_t inner) {
    detail::check_gemm_args(ta, tb, m, n, k, lda, ldb, ldc);
    detail::prepare_engine(impl);
    if (m == 0 || n == 0 || outer == 0 || inner == 0) return;
    parallel_for(threads, outer * inner, 2 * m * n * std::max<index_t>(k, 1), [&](index_t i) {
        const index_t o = i / inner, j = i % inner;
        gemm_serial<T>(impl, ta, tb, m, n, k, alpha, a + o * outer_a + j * inner_a, lda, b + o * outer_b + j * inner_b, ldb,
                              beta, c + o * outer_c + j * inner_c, ldc);
    });
}

}  // namespace mmalign::cpu
