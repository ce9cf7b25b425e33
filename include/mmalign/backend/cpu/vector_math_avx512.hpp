// mmalign/backend/cpu/vector_math_avx512.hpp — float exp, sigmoid and the row kernels around the
// gemms (activations, softmax, LayerNorm statistics) on AVX-512F, chosen at run time.
//
// The portable versions (activation.hpp, softmax.hpp, layer_norm.hpp) go through Eigen's packet
// math or plain loops compiled for the user's -march, which is SSE2 on a default x86-64 build; on
// the CPUs whose gemm runs in sgemm_avx512.hpp these loops then become a visible share of a
// forward pass (docs/performance.md). Dispatch as described in avx512.hpp.
//
// exp: Cody–Waite reduction x = n·ln2 + r, |r| ≤ ln2/2, with Cephes' degree-6 polynomial for e^r
// (the coefficients of Cephes' expf, also used by Eigen) and 2^n applied by vscalefps, which
// saturates to 0 and +inf without integer tricks. Within 2 ulp of std::exp on [-87, 88].
#pragma once

#include <cmath>
#include <utility>

#include "mmalign/backend/cpu/avx512.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/core/ops.hpp"

#if MMALIGN_AVX512

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace mmalign::cpu::avx512 {

MMALIGN_AVX512_INLINE __m512 exp_ps(__m512 x) {
    // Clamp below so n stays finite; e^-150 scales to exactly 0 (not a denormal), so a key hidden
    // by −inf gets probability 0. max(lo, x) keeps a NaN x.
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-150.0f), x));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);  // ln2 split in two (Cody–Waite)
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

// σ(x) = 1 / (1 + e^-x); e^-x = +inf gives 0.
MMALIGN_AVX512_INLINE __m512 sigmoid_ps(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

// erf(x) = x·P(x²)/Q(x²) on x clamped to [−4, 4] (erf(±4) is ±1 in float): the rational
// approximation and coefficients of Eigen's float erf (SpecialFunctionsImpl.h), which the
// portable path uses, so both paths agree to rounding.
MMALIGN_AVX512_INLINE __m512 erf_ps(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(4.0f), _mm512_max_ps(_mm512_set1_ps(-4.0f), x));
    const __m512 t = _mm512_mul_ps(x, x);
    __m512 p = _mm512_set1_ps(-2.72614225801306e-10f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(2.77068142495902e-08f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-2.10102402082508e-06f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-5.69250639462346e-05f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-7.34990630326855e-04f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-2.95459980854025e-03f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.60960333262415e-02f));
    __m512 q = _mm512_set1_ps(-1.45660718464996e-05f);
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(-2.13374055278905e-04f));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(-1.68282697438203e-03f));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(-7.37332916720468e-03f));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(-1.42647390514189e-02f));
    return _mm512_div_ps(_mm512_mul_ps(x, p), q);
}

inline constexpr float inv_sqrt2 = 0.7071067811865476f;
inline constexpr float inv_sqrt_2pi = 0.3989422804014327f;  // 1/√(2π)

inline constexpr float sqrt_2_over_pi = 0.7978845608028654f;  // √(2/π)
inline constexpr float gelu_tanh_cubic = 0.044715f;

// f(x); gelu_tanh as x·σ(2u), since ½(1 + tanh u) = σ(2u).
MMALIGN_AVX512_INLINE __m512 activate_ps(Activation a, __m512 x) {
    switch (a) {
        case Activation::relu: return _mm512_max_ps(x, _mm512_setzero_ps());
        case Activation::gelu: {
            const __m512 half_x = _mm512_mul_ps(_mm512_set1_ps(0.5f), x);
            return _mm512_fmadd_ps(half_x, erf_ps(_mm512_mul_ps(x, _mm512_set1_ps(inv_sqrt2))), half_x);
        }
        case Activation::quick_gelu: return _mm512_mul_ps(x, sigmoid_ps(_mm512_mul_ps(_mm512_set1_ps(1.702f), x)));
        case Activation::tanh:  // tanh x = 2σ(2x) − 1
            return _mm512_fmsub_ps(_mm512_set1_ps(2.0f), sigmoid_ps(_mm512_add_ps(x, x)), _mm512_set1_ps(1.0f));
        case Activation::gelu_tanh: {
            const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
            const __m512 u = _mm512_mul_ps(_mm512_set1_ps(sqrt_2_over_pi),
                                           _mm512_fmadd_ps(_mm512_set1_ps(gelu_tanh_cubic), x3, x));
            return _mm512_mul_ps(x, sigmoid_ps(_mm512_add_ps(u, u)));
        }
        default: return x;
    }
}

// d_y · f'(x). gelu: Φ(x) + x·φ(x). gelu_tanh: f' = σ₂ + 2x·σ₂(1 − σ₂)·√(2/π)(1 + 3·0.044715x²), σ₂ = σ(2u), from
// 1 − tanh²u = 4σ₂(1 − σ₂).
MMALIGN_AVX512_INLINE __m512 activate_derivative_ps(Activation a, __m512 x, __m512 g) {
    const __m512 one = _mm512_set1_ps(1.0f);
    switch (a) {
        case Activation::relu: return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ), g);
        case Activation::gelu: {  // Φ(x) + x·φ(x)
            const __m512 cdf = _mm512_fmadd_ps(_mm512_set1_ps(0.5f), erf_ps(_mm512_mul_ps(x, _mm512_set1_ps(inv_sqrt2))),
                                               _mm512_set1_ps(0.5f));
            const __m512 pdf = _mm512_mul_ps(_mm512_set1_ps(inv_sqrt_2pi),
                                             exp_ps(_mm512_mul_ps(_mm512_set1_ps(-0.5f), _mm512_mul_ps(x, x))));
            return _mm512_mul_ps(g, _mm512_fmadd_ps(x, pdf, cdf));
        }
        case Activation::quick_gelu: {
            const __m512 s = sigmoid_ps(_mm512_mul_ps(_mm512_set1_ps(1.702f), x));
            const __m512 t = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(1.702f), x), _mm512_sub_ps(one, s));
            return _mm512_mul_ps(g, _mm512_fmadd_ps(s, t, s));  // s + 1.702·x·s(1 − s)
        }
        case Activation::tanh: {  // 1 − tanh²x
            const __m512 t = _mm512_fmsub_ps(_mm512_set1_ps(2.0f), sigmoid_ps(_mm512_add_ps(x, x)), one);
            return _mm512_mul_ps(g, _mm512_fnmadd_ps(t, t, one));
        }
        case Activation::gelu_tanh: {
            const __m512 x2 = _mm512_mul_ps(x, x);
            const __m512 u = _mm512_mul_ps(_mm512_set1_ps(sqrt_2_over_pi),
                                           _mm512_fmadd_ps(_mm512_set1_ps(gelu_tanh_cubic), _mm512_mul_ps(x2, x), x));
            const __m512 s = sigmoid_ps(_mm512_add_ps(u, u));
            const __m512 du = _mm512_mul_ps(_mm512_set1_ps(sqrt_2_over_pi),
                                            _mm512_fmadd_ps(_mm512_set1_ps(3 * gelu_tanh_cubic), x2, one));
            const __m512 tail = _mm512_mul_ps(_mm512_mul_ps(_mm512_add_ps(x, x), _mm512_mul_ps(s, _mm512_sub_ps(one, s))), du);
            return _mm512_mul_ps(g, _mm512_add_ps(s, tail));
        }
        default: return g;
    }
}

/// Lanes of a 16-float vector that hold one of `left` remaining elements (none when left ≤ 0).
inline __mmask16 tail_mask(index_t left) {
    return static_cast<__mmask16>(left >= 16 ? 0xFFFF : left <= 0 ? 0 : (1u << left) - 1);
}

/// y[0..n) = f(x[0..n)); y may alias x.
MMALIGN_AVX512_OUTLINE void activate_span(Activation a, const float* x, float* y, index_t n) {
    for (index_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, activate_ps(a, _mm512_maskz_loadu_ps(m, x + i)));
    }
}

/// y[0..n) = f(x[0..n) + bias[0..n)), and pre[0..n) = x + bias when pre is not null; bias may be
/// null; y may alias x. The epilogue of a Linear row.
MMALIGN_AVX512_OUTLINE void bias_activate_span(Activation a, const float* x, const float* bias, float* y, float* pre,
                                               index_t n) {
    for (index_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + i));
        if (pre) _mm512_mask_storeu_ps(pre + i, m, v);
        _mm512_mask_storeu_ps(y + i, m, activate_ps(a, v));
    }
}

/// d_x[0..n) = d_y · f'(x); d_x may alias d_y.
MMALIGN_AVX512_OUTLINE void activate_derivative_span(Activation a, const float* x, const float* d_y, float* d_x,
                                                     index_t n) {
    for (index_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(d_x + i, m,
                              activate_derivative_ps(a, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, d_y + i)));
    }
}

/// max over s[0..n) (−inf for n = 0).
MMALIGN_AVX512_OUTLINE float max_span(const float* s, index_t n) {
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (index_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        mx = _mm512_mask_max_ps(mx, m, mx, _mm512_maskz_loadu_ps(m, s + i));
    }
    return _mm512_reduce_max_ps(mx);
}

/// s[j] = e^(s[j] − mx) for j < n; returns the sum (the softmax denominator).
MMALIGN_AVX512_OUTLINE float exp_shifted_span(float* s, index_t n, float mx) {
    const __m512 vmx = _mm512_set1_ps(mx);
    __m512 sum = _mm512_setzero_ps();
    for (index_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + i), vmx));
        _mm512_mask_storeu_ps(s + i, m, e);
        sum = _mm512_mask_add_ps(sum, m, sum, e);
    }
    return _mm512_reduce_add_ps(sum);
}

/// s[0..n) *= v.
MMALIGN_AVX512_OUTLINE void scale_span(float* s, index_t n, float v) {
    const __m512 vv = _mm512_set1_ps(v);
    for (index_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(s + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + i), vv));
    }
}

/// LayerNorm of one row, statistics accumulated in double (as the portable version):
/// y = (x − μ)·rstd·w + b; returns {μ, rstd}.
MMALIGN_AVX512_OUTLINE std::pair<float, float> layer_norm_row(const float* x, const float* w, const float* b, float* y,
                                                               index_t n, double eps) {
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    for (index_t i = 0; i < n; i += 16) {
        const __m512 v = _mm512_maskz_loadu_ps(tail_mask(n - i), x + i);
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
    }
    const double mean = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)) / static_cast<double>(n);
    const __m512d vm = _mm512_set1_pd(mean);
    s0 = s1 = _mm512_setzero_pd();
    for (index_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        // Masked-off lanes load 0 and would add mean²; they are masked out of the sum.
        const __m512d d0 = _mm512_maskz_sub_pd(static_cast<__mmask8>(m), _mm512_cvtps_pd(_mm512_castps512_ps256(v)), vm);
        const __m512d d1 = _mm512_maskz_sub_pd(static_cast<__mmask8>(m >> 8),
                                               _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))),
                                               vm);
        s0 = _mm512_fmadd_pd(d0, d0, s0);
        s1 = _mm512_fmadd_pd(d1, d1, s1);
    }
    const double var = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)) / static_cast<double>(n);
    const float mt = static_cast<float>(mean), st = static_cast<float>(1.0 / std::sqrt(var + eps));
    const __m512 vmf = _mm512_set1_ps(mt), vs = _mm512_set1_ps(st);
    for (index_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vmf), vs);
        _mm512_mask_storeu_ps(y + i, m,
                              _mm512_fmadd_ps(xh, _mm512_maskz_loadu_ps(m, w + i),
                                              _mm512_maskz_loadu_ps(m, b + i)));
    }
    return {mt, st};
}

}  // namespace mmalign::cpu::avx512

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif  // MMALIGN_AVX512
