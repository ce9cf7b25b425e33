// mmalign/backend/cpu/activation.hpp — pointwise nonlinearities, forward and backward.
//
//   relu(x)       = max(x, 0)
//   gelu(x)       = x·Φ(x) = ½x(1 + erf(x/√2))                          (HF "gelu")
//   gelu_tanh(x)  = ½x(1 + tanh(√(2/π)(x + 0.044715x³)))                 (HF "gelu_new")
//   quick_gelu(x) = x·σ(1.702x)                                          (CLIP, HF "quick_gelu")
//   tanh(x)                                                              (BERT's pooler, BertPooler)
// Backward takes the pre-activation x and returns d_x = d_y · f'(x) (assigned, not added).
#pragma once

#include <cmath>
#include <numbers>

#include <Eigen/Core>
#include <unsupported/Eigen/SpecialFunctions>

#include "mmalign/backend/cpu/parallel.hpp"
#include "mmalign/backend/cpu/vector_math_avx512.hpp"
#include "mmalign/core/ops.hpp"

namespace mmalign::cpu {

/// The scalar definitions (the reference the SIMD spans below are tested against).
template <class T>
inline T activate(Activation a, T x) {
    switch (a) {
        case Activation::none: return x;
        case Activation::relu: return x > T(0) ? x : T(0);
        case Activation::gelu: return T(0.5) * x * (T(1) + std::erf(x * T(std::numbers::sqrt2 / 2)));
        case Activation::gelu_tanh: {
            const T c = T(std::numbers::sqrt2 * std::numbers::inv_sqrtpi);  // √(2/π)
            return T(0.5) * x * (T(1) + std::tanh(c * (x + T(0.044715) * x * x * x)));
        }
        case Activation::quick_gelu: return x / (T(1) + std::exp(T(-1.702) * x));
        case Activation::tanh: return std::tanh(x);
    }
    return x;
}

/// y[0..n) = f(x[0..n)) on the calling thread, through Eigen's packet math (SIMD erf, tanh and
/// exp for float; within a few ulp of libm, where the per-element std:: calls cost a fifth of a
/// training step), or for float on AVX-512F CPUs vector_math_avx512.hpp. y may alias x.
template <class T>
void activate_span(Activation a, const T* x, T* y, index_t n) {
#if MMALIGN_AVX512
    if constexpr (std::is_same_v<T, float>)
        if (a != Activation::none && avx512::supported())
            return avx512::activate_span(a, x, y, n);
#endif
    using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
    Eigen::Map<const Arr> X(x, n);
    Eigen::Map<Arr> Y(y, n);
    const T c = T(std::numbers::sqrt2 * std::numbers::inv_sqrtpi);  // √(2/π)
    switch (a) {
        case Activation::none: if (x != y) Y = X; break;
        case Activation::relu: Y = X.max(T(0)); break;
        case Activation::gelu: Y = T(0.5) * X * (T(1) + (X * T(std::numbers::sqrt2 / 2)).erf()); break;
        case Activation::gelu_tanh: Y = T(0.5) * X * (T(1) + (c * (X + T(0.044715) * X * X * X)).tanh()); break;
        case Activation::quick_gelu: Y = X / (T(1) + (T(-1.702) * X).exp()); break;
        case Activation::tanh: Y = X.tanh(); break;
    }
}

/// d_x[0..n) = d_y · f'(x) on the calling thread (packet math as above); d_x may alias d_y.
template <class T>
void activate_derivative_span(Activation a, const T* x, const T* d_y, T* d_x, index_t n) {
#if MMALIGN_AVX512
    if constexpr (std::is_same_v<T, float>)
        if (a != Activation::none && avx512::supported())
            return avx512::activate_derivative_span(a, x, d_y, d_x, n);
#endif
    using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
    Eigen::Map<const Arr> X(x, n), G(d_y, n);
    Eigen::Map<Arr> D(d_x, n);
    const T c = T(std::numbers::sqrt2 * std::numbers::inv_sqrtpi);
    switch (a) {
        case Activation::none: if (d_x != d_y) D = G; break;
        case Activation::relu: D = (X > T(0)).select(G, T(0)); break;
        case Activation::gelu:
            D = G * (T(0.5) * (T(1) + (X * T(std::numbers::sqrt2 / 2)).erf()) +
                     X * (T(-0.5) * X * X).exp() * T(std::numbers::inv_sqrtpi / std::numbers::sqrt2));
            break;
        case Activation::gelu_tanh: {
            const Arr t = (c * (X + T(0.044715) * X * X * X)).tanh();
            D = G * (T(0.5) * (T(1) + t) + T(0.5) * X * (T(1) - t * t) * c * (T(1) + T(3 * 0.044715) * X * X));
            break;
        }
        case Activation::quick_gelu: {
            const Arr sg = T(1) / (T(1) + (T(-1.702) * X).exp());
            D = G * (sg + T(1.702) * X * sg * (T(1) - sg));
            break;
        }
        case Activation::tanh: D = G * (T(1) - X.tanh().square()); break;
    }
}

/// y[i] = f(x[i]); y may alias x.
template <class T>
void activation_forward(int threads, Activation a, const T* x, T* y, index_t n) {
    constexpr index_t chunk = 4096;
    parallel_for(threads, (n + chunk - 1) / chunk, chunk * 8, [&](index_t c) {
        const index_t lo = c * chunk, len = std::min(n, lo + chunk) - lo;
        activate_span(a, x + lo, y + lo, len);
    });
}

/// d_x[i] = d_y[i] · f'(x[i]); d_x may alias d_y.
template <class T>
void activation_backward(int threads, Activation a, const T* x, const T* d_y, T* d_x, index_t n) {
    constexpr index_t chunk = 4096;
    parallel_for(threads, (n + chunk - 1) / chunk, chunk * 8, [&](index_t c) {
        const index_t lo = c * chunk, len = std::min(n, lo + chunk) - lo;
        activate_derivative_span(a, x + lo, d_y + lo, d_x + lo, len);
    });
}

}  // namespace mmalign::cpu
