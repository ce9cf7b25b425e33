// mmalign/backend/cuda/kernels/layer_norm.cuh — LayerNorm over the last axis, forward and
// backward, with the formulas of backend/cpu/layer_norm.hpp:
//   y = (x − μ)·rstd·w + b,   μ, var in double (two passes), rstd = 1/√(var + eps)
//   d_x = rstd·(d_y·w − mean(g) − x̂·mean(g·x̂)),  g = d_y·w (sums in double)     (assigned)
//   d_w += Σ_rows d_y·x̂,  d_b += Σ_rows d_y                                       (accumulated)
// One warp per row for the row statistics; the column sums of d_w and d_b go through the
// two-stage column reduction of reduce.cuh (partials per chunk of rows, then one ordered sum per
// column), so the result does not depend on scheduling.
#pragma once

#include "mmalign/backend/cuda/kernels/reduce.cuh"

namespace mmalign::cuda::kernels {

template <class T>
__global__ void layer_norm_forward_kernel(const T* x, const T* w, const T* b, T* y, acc_t<T>* mean, acc_t<T>* rstd,
                                          index_t rows, index_t cols, double eps) {
    using A = acc_t<T>;
    const int lane = threadIdx.x % warp_size;
    for (index_t r = global_warp(); r < rows; r += grid_warps()) {
        const T* xr = x + r * cols;
        T* yr = y + r * cols;
        double m = 0;
        for (index_t i = lane; i < cols; i += warp_size) m += xr[i];
        m = warp_sum(m) / static_cast<double>(cols);
        double v = 0;
        for (index_t i = lane; i < cols; i += warp_size) {
            const double d = static_cast<A>(xr[i]) - m;
            v += d * d;
        }
        v = warp_sum(v) / static_cast<double>(cols);
        const A mt = static_cast<A>(m), st = static_cast<A>(1.0 / sqrt(v + eps));
        for (index_t i = lane; i < cols; i += warp_size)
            yr[i] = (static_cast<A>(xr[i]) - mt) * st * static_cast<A>(w[i]) + static_cast<A>(b[i]);
        if (lane == 0) {
            if (mean) mean[r] = mt;
            if (rstd) rstd[r] = st;
        }
    }
}

template <class T>
__global__ void layer_norm_backward_input_kernel(const T* d_y, const T* x, const T* w, const acc_t<T>* mean,
                                                 const acc_t<T>* rstd, T* d_x, index_t rows, index_t cols) {
    using A = acc_t<T>;
    const int lane = threadIdx.x % warp_size;
    for (index_t r = global_warp(); r < rows; r += grid_warps()) {
        const T* gy = d_y + r * cols;
        const T* xr = x + r * cols;
        const A m = mean[r], s = rstd[r];
        double sum_g = 0, sum_gx = 0;
        for (index_t i = lane; i < cols; i += warp_size) {
            const double g = static_cast<double>(static_cast<A>(gy[i])) * static_cast<A>(w[i]);
            sum_g += g;
            sum_gx += g * ((static_cast<A>(xr[i]) - m) * s);
        }
        sum_g = warp_sum(sum_g);
        sum_gx = warp_sum(sum_gx);
        const A mg = static_cast<A>(sum_g / static_cast<double>(cols));
        const A mgx = static_cast<A>(sum_gx / static_cast<double>(cols));
        T* dx = d_x + r * cols;
        for (index_t i = lane; i < cols; i += warp_size) {
            const A xhat = (static_cast<A>(xr[i]) - m) * s;
            dx[i] = s * (static_cast<A>(gy[i]) * static_cast<A>(w[i]) - mg - xhat * mgx);
        }
    }
}

/// Stage 1 of d_w, d_b: block (x, y) sums rows y·chunk .. (y+1)·chunk of columns x·32 .. x·32+31
/// into partial[y][col] (double; d_b's partials follow d_w's at partial + splits·cols).
/// Block: warp_size × column_block_rows threads.
template <class T>
__global__ void layer_norm_backward_params_partial_kernel(const T* d_y, const T* x, const acc_t<T>* mean,
                                                          const acc_t<T>* rstd, double* partial, index_t rows, index_t cols, index_t chunk) {
    __shared__ double sw[column_block_rows][warp_size + 1], sb[column_block_rows][warp_size + 1];
    const index_t col = static_cast<index_t>(blockIdx.x) * warp_size + threadIdx.x;
    const index_t r0 = static_cast<index_t>(blockIdx.y) * chunk, r1 = min(rows, r0 + chunk);
    double aw = 0, ab = 0;
    if (col < cols)
        for (index_t r = r0 + threadIdx.y; r < r1; r += column_block_rows) {
            const acc_t<T> gy = d_y[r * cols + col];
            aw += gy * ((static_cast<acc_t<T>>(x[r * cols + col]) - mean[r]) * rstd[r]);
            ab += gy;
        }
    sw[threadIdx.y][threadIdx.x] = aw;
    sb[threadIdx.y][threadIdx.x] = ab;
    __syncthreads();
    if (threadIdx.y == 0 && col < cols) {
        for (int j = 1; j < column_block_rows; ++j) {
            aw += sw[j][threadIdx.x];
            ab += sb[j][threadIdx.x];
        }
        const index_t splits = gridDim.y;
        partial[blockIdx.y * cols + col] = aw;
        partial[(splits + blockIdx.y) * cols + col] = ab;
    }
}

}  // namespace mmalign::cuda::kernels
