// mmalign/backend/cuda/kernels/losses.cuh — softmax cross-entropy and L2 normalisation, with the
// formulas of backend/cpu/cross_entropy.hpp and backend/cpu/l2_normalize.hpp:
//   lse_n = max + log Σ_c exp(x[n,c] − max)   (the sum in double)
//   loss_n = (1 − ε)·(lse_n − x[n,t_n]) + ε·mean_c(lse_n − x[n,c])   (0 for ignored rows)
//   d_logits[n,c] = g·(exp(x[n,c] − lse_n) − ε/C) − [c = t_n]·g·(1 − ε),  g = d_loss / count
//   y = x / max(‖x‖, eps),  norm = ‖x‖ (−eps when floored);  d_x = (d_y − y⟨y, d_y⟩)/‖x‖ (d_y/eps)
// Cross-entropy runs one block per row (vocabularies are wide); the per-row losses are summed on
// the host in row order, as the CPU does. L2 normalisation runs one warp per row.
#pragma once

#include <cstdint>

#include "mmalign/backend/cuda/kernels/common.cuh"

namespace mmalign::cuda::kernels {

/// lse [rows] and row_loss [rows] (double, 0 for ignored rows). targets: device [rows].
template <class T>
__global__ void cross_entropy_forward_kernel(const T* logits, const std::int32_t* targets, index_t rows,
                                             index_t classes, std::int32_t ignore_index, acc_t<T> label_smoothing,
                                             acc_t<T>* lse, double* row_loss) {
    using A = acc_t<T>;
    for (index_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* x = logits + r * classes;
        A mx = -INFINITY;
        for (index_t c = threadIdx.x; c < classes; c += blockDim.x) mx = max(mx, static_cast<A>(x[c]));
        mx = block_max(mx, A(-INFINITY));
        double s = 0;
        for (index_t c = threadIdx.x; c < classes; c += blockDim.x) s += exp(static_cast<double>(static_cast<A>(x[c]) - mx));
        s = block_sum(s);
        const A l = mx + static_cast<A>(log(s));
        const std::int32_t t = targets[r];
        double mean_nll = 0;
        if (t != ignore_index && label_smoothing != A(0)) {
            for (index_t c = threadIdx.x; c < classes; c += blockDim.x) mean_nll += l - static_cast<A>(x[c]);
            mean_nll = block_sum(mean_nll) / static_cast<double>(classes);
        }
        if (threadIdx.x == 0) {
            lse[r] = l;
            double nll = 0;
            if (t != ignore_index) {
                nll = l - static_cast<A>(x[t]);
                if (label_smoothing != A(0)) nll = (1.0 - label_smoothing) * nll + label_smoothing * mean_nll;
            }
            row_loss[r] = nll;
        }
    }
}

/// d_logits [rows, classes] (assigned); g = d_loss / count, off = ε / C.
template <class T>
__global__ void cross_entropy_backward_kernel(const T* logits, const std::int32_t* targets, const acc_t<T>* lse,
                                              index_t rows, index_t classes, std::int32_t ignore_index,
                                              acc_t<T> label_smoothing, acc_t<T> g, acc_t<T> off, T* d_logits) {
    using A = acc_t<T>;
    const index_t n = rows * classes;
    for (index_t i = global_thread(); i < n; i += grid_threads()) {
        const index_t r = i / classes, c = i % classes;
        const std::int32_t t = targets[r];
        if (t == ignore_index) {
            d_logits[i] = A(0);
            continue;
        }
        A d = g * (expf(static_cast<A>(logits[i]) - lse[r]) - off);
        if (c == t) d -= g * (A(1) - label_smoothing);
        d_logits[i] = d;
    }
}

template <class T>
__global__ void l2_normalize_forward_kernel(const T* x, T* y, acc_t<T>* norm, index_t rows, index_t cols,
                                            acc_t<T> eps) {
    using A = acc_t<T>;
    const int lane = threadIdx.x % warp_size;
    for (index_t r = global_warp(); r < rows; r += grid_warps()) {
        const T* xr = x + r * cols;
        A s = 0;
        for (index_t i = lane; i < cols; i += warp_size) s += static_cast<A>(xr[i]) * static_cast<A>(xr[i]);
        s = warp_sum(s);
        const A n = sqrt(s);
        const bool floored = n < eps;
        const A d = floored ? eps : n;
        for (index_t i = lane; i < cols; i += warp_size) y[r * cols + i] = static_cast<A>(xr[i]) / d;
        if (norm && lane == 0) norm[r] = floored ? -eps : n;
    }
}

template <class T>
__global__ void l2_normalize_backward_kernel(const T* d_y, const T* y, const acc_t<T>* norm, T* d_x, index_t rows,
                                             index_t cols) {
    using A = acc_t<T>;
    const int lane = threadIdx.x % warp_size;
    for (index_t r = global_warp(); r < rows; r += grid_warps()) {
        const T* gy = d_y + r * cols;
        const T* yr = y + r * cols;
        T* dx = d_x + r * cols;
        const A nr = norm[r];
        if (nr < A(0)) {
            for (index_t i = lane; i < cols; i += warp_size) dx[i] = static_cast<A>(gy[i]) / -nr;
            continue;
        }
        A dot = 0;
        for (index_t i = lane; i < cols; i += warp_size) dot += static_cast<A>(yr[i]) * static_cast<A>(gy[i]);
        dot = warp_sum(dot);
        for (index_t i = lane; i < cols; i += warp_size)
            dx[i] = (static_cast<A>(gy[i]) - static_cast<A>(yr[i]) * dot) / nr;
    }
}

}  // namespace mmalign::cuda::kernels
