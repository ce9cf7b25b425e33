// mmalign/backend/cpu/sgemm_avx512.hpp — single-precision gemm on AVX-512F, chosen at run time.
//
//   C[m, n] = alpha · op(A)[m, k] · op(B)[k, n] + beta · C       (row-major, op(X) = X or Xᵀ)
//
// The five loops of the Goto/BLIS algorithm (Goto & van de Geijn 2008, "Anatomy of
// high-performance matrix multiplication"; Van Zee & van de Geijn 2015, BLIS):
//
//   for jc < n step NC            B block  [KC × NC], packed once per (jc, pc) — stays in L3
//     for pc < k step KC
//       pack op(B) → Bp           panels of NR columns, each [KC][NR], zero-padded
//       for ic < m step MC
//         pack op(A) → Ap         slivers of MR rows, each [KC][MR], zero-padded
//         for jr < NC step NR     one B panel (64 KiB): L1 and L2
//           for ir < MC step MR   micro-kernel: an MR × NR tile of C held in 28 zmm registers
//                                 (last depth block: then the GemmEpilogue, while the tile is in L1)
//
// Why a kernel of our own: the Debian OpenBLAS (0.3.21) runs its Haswell (256-bit) sgemm on CPUs
// whose AVX-512 units are full width (AMD Zen 5, Intel server cores) and so reaches about half of
// their peak (docs/performance.md has the measured figures). Packing both operands makes every
// Trans combination the same kernel; op(·)ᵀ operands are transposed 16 × 16 in registers.
//
// Dispatch as described in avx512.hpp: compiled for AVX-512F whatever the user's -march, chosen at
// run time.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <utility>

#include "mmalign/backend/cpu/avx512.hpp"
#include "mmalign/backend/cpu/vector_math_avx512.hpp"
#include "mmalign/core/ops.hpp"
#include "mmalign/core/shape.hpp"

// GCC 12 reports the intrinsics' own `_mm512_undefined_*()` placeholders as (maybe-)uninitialized.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

// The tile's row loops must be unrolled for the accumulators to live in registers. nvcc's front
// end rejects the GCC pragma (its host pass then relies on GCC's own complete peeling).
#if defined(__CUDACC__)
#define MMALIGN_UNROLL_ROWS
#else
#define MMALIGN_UNROLL_ROWS _Pragma("GCC unroll 14")
#endif

namespace mmalign::cpu::avx512 {

#if MMALIGN_AVX512

inline constexpr index_t MR = 14;   // rows of a C tile: 14 × 2 accumulators + 2 B vectors + 1 broadcast ≤ 32 zmm
inline constexpr index_t NR = 32;   // columns of a C tile: two zmm vectors
inline constexpr index_t KC = 512;  // depth of a packed block: one B panel = KC·NR·4 B = 64 KiB (L1 + L2)
inline constexpr index_t MC = 12 * MR;  // rows of a packed A block: MC·KC·4 B = 336 KiB (L2)
inline constexpr index_t NC = 2048;     // columns of a packed B block: KC·NC·4 B = 4 MiB (L3)

namespace detail {

// dst[c·ldd + r] = src[r·lds + c] for r < rows ≤ 16, c < 16: rows past `rows` are neither read
// nor written. Three shuffle stages: pairs of rows within 128-bit lanes (unpack ps), quadruples
// of rows (unpack pd), then whole lanes (shuffle_f32x4).
MMALIGN_AVX512_INLINE void transpose16(const float* src, index_t lds, index_t rows, float* dst, index_t ldd) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; ++i) r[i] = i < rows ? _mm512_loadu_ps(src + i * lds) : _mm512_setzero_ps();
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    // r[4g + e]: lane l holds column 4l + e of rows 4g .. 4g + 3.
    for (int g = 0; g < 4; ++g) {
        const __m512d lo0 = _mm512_castps_pd(t[4 * g]), hi0 = _mm512_castps_pd(t[4 * g + 1]);
        const __m512d lo1 = _mm512_castps_pd(t[4 * g + 2]), hi1 = _mm512_castps_pd(t[4 * g + 3]);
        r[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo0, lo1));
        r[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo0, lo1));
        r[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(hi0, hi1));
        r[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(hi0, hi1));
    }
    const __mmask16 keep = tail_mask(rows);
    for (int e = 0; e < 4; ++e) {
        const __m512 x0 = _mm512_shuffle_f32x4(r[e], r[4 + e], 0x44);
        const __m512 x1 = _mm512_shuffle_f32x4(r[e], r[4 + e], 0xEE);
        const __m512 x2 = _mm512_shuffle_f32x4(r[8 + e], r[12 + e], 0x44);
        const __m512 x3 = _mm512_shuffle_f32x4(r[8 + e], r[12 + e], 0xEE);
        _mm512_mask_storeu_ps(dst + (0 + e) * ldd, keep, _mm512_shuffle_f32x4(x0, x2, 0x88));
        _mm512_mask_storeu_ps(dst + (4 + e) * ldd, keep, _mm512_shuffle_f32x4(x0, x2, 0xDD));
        _mm512_mask_storeu_ps(dst + (8 + e) * ldd, keep, _mm512_shuffle_f32x4(x1, x3, 0x88));
        _mm512_mask_storeu_ps(dst + (12 + e) * ldd, keep, _mm512_shuffle_f32x4(x1, x3, 0xDD));
    }
}

// dst[c·ldd + r] = src[r·lds + c] for r < rows, c < cols (any sizes).
MMALIGN_AVX512_OUTLINE void transpose(const float* src, index_t lds, index_t rows, index_t cols, float* dst,
                                      index_t ldd) {
    const index_t c16 = cols / 16 * 16;
    for (index_t r = 0; r < rows; r += 16) {
        const index_t h = std::min<index_t>(16, rows - r);
        for (index_t c = 0; c < c16; c += 16) transpose16(src + r * lds + c, lds, h, dst + c * ldd + r, ldd);
        for (index_t i = r; i < r + h; ++i)
            for (index_t c = c16; c < cols; ++c) dst[c * ldd + i] = src[i * lds + c];
    }
}

// Bp ← op(B)[pc : pc + kc, jc : jc + nc] as ceil(nc / NR) panels of [kc][NR], columns past nc zero.
MMALIGN_AVX512_OUTLINE void pack_b(Trans tb, const float* b, index_t ldb, index_t pc, index_t jc, index_t kc,
                                   index_t nc, float* bp) {
    for (index_t j = 0; j < nc; j += NR) {
        const index_t w = std::min(NR, nc - j);
        float* panel = bp + j * kc;
        if (tb == Trans::N) {
            const float* src = b + pc * ldb + jc + j;
            const __mmask16 m0 = tail_mask(w), m1 = tail_mask(w - 16);
            for (index_t p = 0; p < kc; ++p) {
                _mm512_store_ps(panel + p * NR, _mm512_maskz_loadu_ps(m0, src + p * ldb));
                _mm512_store_ps(panel + p * NR + 16, _mm512_maskz_loadu_ps(m1, src + p * ldb + 16));
            }
        } else {  // B stored [n, k]: rows jc + j .. of B become the panel's columns
            transpose(b + (jc + j) * ldb + pc, ldb, w, kc, panel, NR);
            if (w < NR)
                for (index_t p = 0; p < kc; ++p) std::fill(panel + p * NR + w, panel + (p + 1) * NR, 0.0f);
        }
    }
}

// Ap ← op(A)[ic : ic + mc, pc : pc + kc] as ceil(mc / MR) slivers of [kc][MR], rows past mc zero.
MMALIGN_AVX512_OUTLINE void pack_a(Trans ta, const float* a, index_t lda, index_t ic, index_t pc, index_t mc,
                                   index_t kc, float* ap) {
    for (index_t i = 0; i < mc; i += MR) {
        const index_t h = std::min(MR, mc - i);
        float* sliver = ap + i * kc;
        if (ta == Trans::N) {  // rows of A become the sliver's columns
            transpose(a + (ic + i) * lda + pc, lda, h, kc, sliver, MR);
        } else {  // A stored [k, m]: each k is a contiguous run of h values
            const float* src = a + pc * lda + ic + i;
            for (index_t p = 0; p < kc; ++p) std::copy(src + p * lda, src + p * lda + h, sliver + p * MR);
        }
        if (h < MR)
            for (index_t p = 0; p < kc; ++p) std::fill(sliver + p * MR + h, sliver + (p + 1) * MR, 0.0f);
    }
}

// C[0:ROWS, 0:cols] = alpha · Ap·Bp + beta · C (beta == 0: C is not read). cols ≤ NR.
template <int ROWS>
MMALIGN_AVX512_OUTLINE void micro_kernel(index_t kc, const float* ap, const float* bp, float* c, index_t ldc,
                                         index_t cols, float alpha, float beta) {
    __m512 acc0[ROWS], acc1[ROWS];
    MMALIGN_UNROLL_ROWS
    for (int r = 0; r < ROWS; ++r) {
        acc0[r] = acc1[r] = _mm512_setzero_ps();
        // The tile's rows are ldc apart: with ldc a multiple of 1 KiB they share L1 sets and would
        // miss at the end; fetched now they arrive while the k loop runs.
        _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 16), _MM_HINT_T0);
    }
    for (index_t p = 0; p < kc; ++p) {
        const __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
        MMALIGN_UNROLL_ROWS
        for (int r = 0; r < ROWS; ++r) {
            const __m512 av = _mm512_set1_ps(ap[r]);
            acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
            acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
        }
        ap += MR;
        bp += NR;
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    const __mmask16 m0 = tail_mask(cols), m1 = tail_mask(cols - 16);
    MMALIGN_UNROLL_ROWS
    for (int r = 0; r < ROWS; ++r) {
        float* cr = c + r * ldc;
        __m512 v0 = _mm512_mul_ps(va, acc0[r]), v1 = _mm512_mul_ps(va, acc1[r]);
        if (beta != 0.0f) {
            v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), v0);
            v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), v1);
        }
        _mm512_mask_storeu_ps(cr, m0, v0);
        _mm512_mask_storeu_ps(cr + 16, m1, v1);
    }
}

using MicroKernel = void (*)(index_t, const float*, const float*, float*, index_t, index_t, float, float);

template <int... R>
constexpr auto kernel_table(std::integer_sequence<int, R...>) {
    return std::array<MicroKernel, sizeof...(R)>{&micro_kernel<R + 1>...};
}
inline constexpr auto micro_kernels = kernel_table(std::make_integer_sequence<int, int(MR)>{});

// One thread's packing buffers, 64-byte aligned, grown on first use and then reused.
struct PackBuffers {
    struct Free {
        void operator()(float* p) const { std::free(p); }
    };
    std::unique_ptr<float, Free> a, b;
    index_t a_size = 0, b_size = 0;

    static float* grow(std::unique_ptr<float, Free>& buf, index_t& have, index_t need) {
        if (need > have) {
            const std::size_t bytes = (static_cast<std::size_t>(need) * sizeof(float) + 63) / 64 * 64;
            float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
            if (!p) throw std::bad_alloc();
            buf.reset(p);
            have = need;
        }
        return buf.get();
    }
};

inline PackBuffers& pack_buffers() {
    thread_local PackBuffers buffers;
    return buffers;
}

// C = beta · C, not reading C when beta == 0 (BLAS semantics): the product for k = 0 or alpha = 0.
inline void scale_c(index_t m, index_t n, float beta, float* c, index_t ldc) {
    for (index_t i = 0; i < m; ++i) {
        float* cr = c + i * ldc;
        if (beta == 0.0f) std::fill(cr, cr + n, 0.0f);
        else if (beta != 1.0f) std::transform(cr, cr + n, cr, [beta](float v) { return beta * v; });
    }
}

// The epilogue on rows [i0, i0 + rows) × columns [j0, j0 + cols) of C (just written: in L1).
inline void apply_epilogue(const GemmEpilogue<float>& ep, float* c, index_t ldc, index_t i0, index_t rows, index_t j0,
                           index_t cols) {
    for (index_t i = i0; i < i0 + rows; ++i) {
        float* ci = c + i * ldc + j0;
        bias_activate_span(ep.act, ci, ep.bias ? ep.bias + j0 : nullptr, ci,
                           ep.pre ? ep.pre + i * ep.ldpre + j0 : nullptr, cols);
    }
}

// C[m, n] = alpha · A[m, k] · Wᵀ + beta · C for m ≤ 6 rows, W = op(B)ᵀ stored [n, k] (Trans::T): a
// linear layer on a few rows, as in decoding one token per sequence (or per beam). Such a product reads each
// weight once and does 2·m flops with it, so it is bound by memory bandwidth; packing Wᵀ first (the
// general path) would read W, write the packed copy and read it again. Here each group of four W
// rows is read once, straight from memory, against the m rows of A held in L1/L2: m × 4
// accumulators (≤ 24 of the 32 zmm registers), the depth tail masked.
MMALIGN_AVX512_INLINE void store_dot(__m512 acc, float alpha, float beta, float& out) {
    const float v = alpha * _mm512_reduce_add_ps(acc);
    out = beta == 0.0f ? v : v + beta * out;
}
template <int ROWS>
MMALIGN_AVX512_OUTLINE void gemm_few_rows_nt(index_t n, index_t k, float alpha, const float* a, index_t lda,
                                             const float* w, index_t ldw, float beta, float* c, index_t ldc) {
    const index_t k16 = k / 16 * 16;
    const auto tail = static_cast<__mmask16>((1u << (k - k16)) - 1u);
    index_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const float* w0 = w + j * ldw;
        __m512 acc[ROWS][4];
        for (int r = 0; r < ROWS; ++r)
            for (int q = 0; q < 4; ++q) acc[r][q] = _mm512_setzero_ps();
        for (index_t p = 0; p < k16; p += 16) {
            const __m512 x0 = _mm512_loadu_ps(w0 + p), x1 = _mm512_loadu_ps(w0 + ldw + p);
            const __m512 x2 = _mm512_loadu_ps(w0 + 2 * ldw + p), x3 = _mm512_loadu_ps(w0 + 3 * ldw + p);
            for (int r = 0; r < ROWS; ++r) {
                const __m512 ar = _mm512_loadu_ps(a + r * lda + p);
                acc[r][0] = _mm512_fmadd_ps(ar, x0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(ar, x1, acc[r][1]);
                acc[r][2] = _mm512_fmadd_ps(ar, x2, acc[r][2]);
                acc[r][3] = _mm512_fmadd_ps(ar, x3, acc[r][3]);
            }
        }
        if (k16 < k) {
            for (int q = 0; q < 4; ++q) {
                const __m512 x = _mm512_maskz_loadu_ps(tail, w0 + q * ldw + k16);
                for (int r = 0; r < ROWS; ++r)
                    acc[r][q] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, a + r * lda + k16), x, acc[r][q]);
            }
        }
        for (int r = 0; r < ROWS; ++r)
            for (int q = 0; q < 4; ++q) store_dot(acc[r][q], alpha, beta, c[r * ldc + j + q]);
    }
    for (; j < n; ++j) {
        const float* wj = w + j * ldw;
        __m512 acc[ROWS];
        for (int r = 0; r < ROWS; ++r) acc[r] = _mm512_setzero_ps();
        for (index_t p = 0; p < k16; p += 16) {
            const __m512 x = _mm512_loadu_ps(wj + p);
            for (int r = 0; r < ROWS; ++r) acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(a + r * lda + p), x, acc[r]);
        }
        if (k16 < k) {
            const __m512 x = _mm512_maskz_loadu_ps(tail, wj + k16);
            for (int r = 0; r < ROWS; ++r)
                acc[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, a + r * lda + k16), x, acc[r]);
        }
        for (int r = 0; r < ROWS; ++r) store_dot(acc[r], alpha, beta, c[r * ldc + j]);
    }
}

}  // namespace detail

/// One product on the calling thread, then `ep` on every element of C (GemmEpilogue). Requires
/// supported(); sizes as for cblas_sgemm (row-major).
inline void sgemm(Trans ta, Trans tb, index_t m, index_t n, index_t k, float alpha, const float* a, index_t lda,
                  const float* b, index_t ldb, float beta, float* c, index_t ldc, const GemmEpilogue<float>& ep = {}) {
    if (m == 0 || n == 0) return;
    const bool epilogue = !ep.empty();
    if (k == 0 || alpha == 0.0f) {
        detail::scale_c(m, n, beta, c, ldc);
        if (epilogue) detail::apply_epilogue(ep, c, ldc, 0, m, 0, n);
        return;
    }
    if (m <= 6 && ta == Trans::N && tb == Trans::T) {  // a few rows against W [n, k]: no packing
        switch (m) {
            case 1: detail::gemm_few_rows_nt<1>(n, k, alpha, a, lda, b, ldb, beta, c, ldc); break;
            case 2: detail::gemm_few_rows_nt<2>(n, k, alpha, a, lda, b, ldb, beta, c, ldc); break;
            case 3: detail::gemm_few_rows_nt<3>(n, k, alpha, a, lda, b, ldb, beta, c, ldc); break;
            case 4: detail::gemm_few_rows_nt<4>(n, k, alpha, a, lda, b, ldb, beta, c, ldc); break;
            case 5: detail::gemm_few_rows_nt<5>(n, k, alpha, a, lda, b, ldb, beta, c, ldc); break;
            default: detail::gemm_few_rows_nt<6>(n, k, alpha, a, lda, b, ldb, beta, c, ldc); break;
        }
        if (epilogue) detail::apply_epilogue(ep, c, ldc, 0, m, 0, n);
        return;
    }
    auto& buf = detail::pack_buffers();
    const index_t kc_max = std::min(KC, k);
    float* bp = detail::PackBuffers::grow(buf.b, buf.b_size, kc_max * (std::min(NC, n) + NR));
    float* ap = detail::PackBuffers::grow(buf.a, buf.a_size, kc_max * (std::min(MC, m) + MR));
    for (index_t jc = 0; jc < n; jc += NC) {
        const index_t nc = std::min(NC, n - jc);
        for (index_t pc = 0; pc < k; pc += KC) {
            const index_t kc = std::min(KC, k - pc);
            const float beta_pc = pc == 0 ? beta : 1.0f;  // later depth blocks add to the first's result
            const bool last = pc + kc == k;               // ... and the epilogue follows the last
            detail::pack_b(tb, b, ldb, pc, jc, kc, nc, bp);
            for (index_t ic = 0; ic < m; ic += MC) {
                const index_t mc = std::min(MC, m - ic);
                detail::pack_a(ta, a, lda, ic, pc, mc, kc, ap);
                for (index_t jr = 0; jr < nc; jr += NR) {
                    const index_t cols = std::min(NR, nc - jr);
                    for (index_t ir = 0; ir < mc; ir += MR) {
                        const index_t rows = std::min(MR, mc - ir);
                        detail::micro_kernels[rows - 1](kc, ap + ir * kc, bp + jr * kc,
                                                        c + (ic + ir) * ldc + jc + jr, ldc, cols, alpha, beta_pc);
                        if (last && epilogue) detail::apply_epilogue(ep, c, ldc, ic + ir, rows, jc + jr, cols);
                    }
                }
            }
        }
    }
}

#endif  // MMALIGN_AVX512

}  // namespace mmalign::cpu::avx512

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
