// mmalign/backend/cuda/kernels/pointwise.cuh — pointwise kernels: fill, add, axpy, scale, the
// activations with their derivatives, and the bias + activation epilogue of Linear.
//
// The activation formulas are those of backend/cpu/activation.hpp, written in the same order of
// operations with the same constants, so that both backends round alike up to the library's
// exp/erf/tanh (CUDA's are within 2 ulp):
//   relu(x) = max(x, 0)          gelu(x) = ½x(1 + erf(x/√2))
//   gelu_tanh(x) = ½x(1 + tanh(√(2/π)(x + 0.044715x³)))      quick_gelu(x) = x / (1 + exp(−1.702x))
#pragma once

#include <numbers>

#include "mmalign/backend/cuda/kernels/common.cuh"
#include "mmalign/core/ops.hpp"

namespace mmalign::cuda::kernels {

__device__ __forceinline__ float activate(Activation a, float x) {
    switch (a) {
        case Activation::none: return x;
        case Activation::relu: return x > 0.0f ? x : 0.0f;
        case Activation::gelu: {
            constexpr float inv_sqrt2 = static_cast<float>(std::numbers::sqrt2 / 2);
            return 0.5f * x * (1.0f + erff(x * inv_sqrt2));
        }
        case Activation::gelu_tanh: {
            constexpr float c = static_cast<float>(std::numbers::sqrt2 * std::numbers::inv_sqrtpi);  // √(2/π)
            return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
        }
        case Activation::quick_gelu: return x / (1.0f + expf(-1.702f * x));
        case Activation::tanh: return tanhf(x);
    }
    return x;
}

__device__ __forceinline__ float activate_derivative(Activation a, float x) {
    switch (a) {
        case Activation::none: return 1.0f;
        case Activation::relu: return x > 0.0f ? 1.0f : 0.0f;
        case Activation::gelu: {
            constexpr float inv_sqrt2 = static_cast<float>(std::numbers::sqrt2 / 2);
            constexpr float inv_sqrt2pi = static_cast<float>(std::numbers::inv_sqrtpi / std::numbers::sqrt2);
            const float cdf = 0.5f * (1.0f + erff(x * inv_sqrt2));
            const float pdf = expf(-0.5f * x * x) * inv_sqrt2pi;
            return cdf + x * pdf;
        }
        case Activation::gelu_tanh: {
            constexpr float c = static_cast<float>(std::numbers::sqrt2 * std::numbers::inv_sqrtpi);
            constexpr float c3 = static_cast<float>(3 * 0.044715);
            const float t = tanhf(c * (x + 0.044715f * x * x * x));
            return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * c * (1.0f + c3 * x * x);
        }
        case Activation::quick_gelu: {
            const float s = 1.0f / (1.0f + expf(-1.702f * x));
            return s + 1.702f * x * s * (1.0f - s);
        }
        case Activation::tanh: {
            const float t = tanhf(x);
            return 1.0f - t * t;
        }
    }
    return 1.0f;
}

template <class T>
__global__ void fill_kernel(T* x, index_t n, T v) {
    for (index_t i = global_thread(); i < n; i += grid_threads()) x[i] = v;
}

/// y = a + b (y may alias a or b).
template <class T>
__global__ void add_kernel(const T* a, const T* b, T* y, index_t n) {
    for (index_t i = global_thread(); i < n; i += grid_threads()) y[i] = a[i] + b[i];
}

/// y += alpha · x. The product is rounded before the sum (no fused multiply-add), as on the CPU.
template <class T>
__global__ void axpy_kernel(acc_t<T> alpha, const T* x, T* y, index_t n) {
    for (index_t i = global_thread(); i < n; i += grid_threads())
        y[i] = static_cast<acc_t<T>>(y[i]) + __fmul_rn(alpha, static_cast<acc_t<T>>(x[i]));
}

template <class T>
__global__ void scale_kernel(acc_t<T> alpha, T* x, index_t n) {
    for (index_t i = global_thread(); i < n; i += grid_threads()) x[i] = alpha * static_cast<acc_t<T>>(x[i]);
}

/// C[b][r, c] = beta · C[b][r, c] over a strided batch of row-major m×n matrices (0 when beta is
/// 0, so that NaN in uninitialised memory does not survive): the product with k = 0.
template <class T>
__global__ void scale_matrices_kernel(acc_t<T> beta, T* c, index_t m, index_t n, index_t ldc, index_t stride,
                                      index_t batch) {
    const index_t total = batch * m * n;
    for (index_t i = global_thread(); i < total; i += grid_threads()) {
        const index_t b = i / (m * n), r = (i / n) % m, col = i % n;
        T& v = c[b * stride + r * ldc + col];
        v = beta == 0 ? acc_t<T>(0) : beta * static_cast<acc_t<T>>(v);
    }
}

/// Operand addresses of the outer × inner products of a two-level batch (CudaBackend::gemm_batched_2d):
/// product o·inner + i reads a + o·outer_a + i·inner_a (likewise b, c).
template <class T>
__global__ void batch_pointers_kernel(const T* a, index_t outer_a, index_t inner_a, const T* b, index_t outer_b,
                                      index_t inner_b, T* c, index_t outer_c, index_t inner_c, index_t inner,
                                      index_t count, const T** pa, const T** pb, T** pc) {
    for (index_t i = global_thread(); i < count; i += grid_threads()) {
        const index_t o = i / inner, j = i % inner;
        pa[i] = a + o * outer_a + j * inner_a;
        pb[i] = b + o * outer_b + j * inner_b;
        pc[i] = c + o * outer_c + j * inner_c;
    }
}

template <class T>
__global__ void activation_forward_kernel(Activation a, const T* x, T* y, index_t n) {
    for (index_t i = global_thread(); i < n; i += grid_threads()) y[i] = activate(a, x[i]);
}

/// d_x = d_y · f'(x) (d_x may alias d_y).
template <class T>
__global__ void activation_backward_kernel(Activation a, const T* x, const T* d_y, T* d_x, index_t n) {
    for (index_t i = global_thread(); i < n; i += grid_threads()) d_x[i] = d_y[i] * activate_derivative(a, x[i]);
}

/// Linear's epilogue over y [rows, cols]: v = y + bias (bias nullable), pre = v (nullable), y = act(v).
template <class T>
__global__ void bias_activation_kernel(T* y, const T* bias, Activation a, T* pre, index_t rows, index_t cols) {
    const index_t n = rows * cols;
    for (index_t i = global_thread(); i < n; i += grid_threads()) {
        const float v = bias ? static_cast<float>(y[i]) + static_cast<float>(bias[i % cols]) : static_cast<float>(y[i]);
        if (pre) pre[i] = v;
        y[i] = activate(a, v);
    }
}

/// One AdamW update in torch's order of operations (CpuBackend::adamw_step): decoupled weight
/// decay, moment updates, then p += −step_size · m / (√v / √(1 − β₂ᵗ) + eps). The gradient is
/// multiplied by grad_scale first (1/loss scale; skipped at 1). With `master` (mixed precision)
/// the update runs on the float master copy and p receives it rounded to T; moments are float. A
/// parameter whose stored value is no longer its master's rounding was written since the last
/// step (a clamp, a reload): its master restarts from the stored value.
template <class T>
__global__ void adamw_kernel(T* p, acc_t<T>* master, const T* g, acc_t<T>* m, acc_t<T>* v, index_t n,
                             AdamWConstants<acc_t<T>> k) {
    using A = acc_t<T>;
    for (index_t i = global_thread(); i < n; i += grid_threads()) {
        A pi = static_cast<A>(p[i]);
        if (master && static_cast<A>(static_cast<T>(master[i])) == pi) pi = master[i];
        pi = adamw_update(pi, static_cast<A>(g[i]), m[i], v[i], k);
        if (master) master[i] = pi;
        p[i] = pi;
    }
}

/// y = x converted element by element (float ↔ 16-bit storage), rounded to nearest even.
template <class U, class V>
__global__ void cast_kernel(const U* x, V* y, index_t n) {
    for (index_t i = global_thread(); i < n; i += grid_threads()) y[i] = static_cast<V>(static_cast<float>(x[i]));
}

/// *flag = 1 when any of x[0 .. n) is infinite or NaN (a loss-scaled gradient that overflowed).
template <class T>
__global__ void nonfinite_flag_kernel(const T* x, index_t n, int* flag) {
    bool bad = false;
    for (index_t i = global_thread(); i < n; i += grid_threads()) bad |= !isfinite(static_cast<acc_t<T>>(x[i]));
    if (__syncthreads_or(bad) && threadIdx.x == 0) *flag = 1;
}

}  // namespace mmalign::cuda::kernels
