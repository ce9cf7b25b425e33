// mmalign/backend/cuda/kernels/reduce.cuh — column sums (bias gradients) and the sum of a tensor.
//
// Column sums run in two stages: stage 1 gives each (column tile, chunk of rows) block its own
// partial sum in double, stage 2 adds the partials of each column in chunk order and accumulates
// into the output. No atomics, so the result is the same on every run.
//   out[c] += Σ_r x[r, c]          (sum_rows_accumulate)
//   Σ_i x[i], Σ_i x[i]·y[i] in double  (sum, dot)
#pragma once

#include "mmalign/backend/cuda/kernels/common.cuh"

namespace mmalign::cuda::kernels {

/// How many chunks of rows stage 1 splits `rows` into: about 32 rows per chunk, enough blocks
/// to fill the GPU for narrow outputs, at most 256 partials per column for stage 2.
inline index_t column_splits(index_t rows) {
    return std::clamp<index_t>((rows + 31) / 32, 1, 256);
}

/// Stage 1: partial[y][c] = Σ_{r in chunk y} x[r, c]. Block: warp_size × column_block_rows threads,
/// grid: (⌈cols / 32⌉, splits).
template <class T>
__global__ void column_sum_partial_kernel(const T* x, double* partial, index_t rows, index_t cols, index_t chunk) {
    __shared__ double s[column_block_rows][warp_size + 1];
    const index_t col = static_cast<index_t>(blockIdx.x) * warp_size + threadIdx.x;
    const index_t r0 = static_cast<index_t>(blockIdx.y) * chunk, r1 = min(rows, r0 + chunk);
    double a = 0;
    if (col < cols)
        for (index_t r = r0 + threadIdx.y; r < r1; r += column_block_rows) a += static_cast<acc_t<T>>(x[r * cols + col]);
    s[threadIdx.y][threadIdx.x] = a;
    __syncthreads();
    if (threadIdx.y == 0 && col < cols) {
        for (int j = 1; j < column_block_rows; ++j) a += s[j][threadIdx.x];
        partial[blockIdx.y * cols + col] = a;
    }
}

/// Stage 2: out0[c] += Σ_k partial[k][c] and out1[c] += Σ_k partial[splits + k][c] (either output
/// nullable), the partials added in chunk order.
template <class T>
__global__ void column_partials_accumulate_kernel(const double* partial, index_t splits, index_t cols, T* out0,
                                                  T* out1) {
    for (index_t c = global_thread(); c < cols; c += grid_threads()) {
        if (out0) {
            double s = 0;
            for (index_t k = 0; k < splits; ++k) s += partial[k * cols + c];
            out0[c] = static_cast<acc_t<T>>(out0[c]) + static_cast<acc_t<T>>(s);
        }
        if (out1) {
            double s = 0;
            for (index_t k = 0; k < splits; ++k) s += partial[(splits + k) * cols + c];
            out1[c] = static_cast<acc_t<T>>(out1[c]) + static_cast<acc_t<T>>(s);
        }
    }
}

/// partial[block] = Σ x[i] (or Σ x[i]·y[i] when y is not null) over this block's grid-stride
/// share, in double.
template <class T>
__global__ void sum_partial_kernel(const T* x, const T* y, index_t n, double* partial) {
    double a = 0;
    if (y)
        for (index_t i = global_thread(); i < n; i += grid_threads()) a += static_cast<double>(static_cast<acc_t<T>>(x[i])) * static_cast<acc_t<T>>(y[i]);
    else
        for (index_t i = global_thread(); i < n; i += grid_threads()) a += static_cast<acc_t<T>>(x[i]);
    a = block_sum(a);
    if (threadIdx.x == 0) partial[blockIdx.x] = a;
}

/// One block: out[0] = Σ partial[0 .. n).
template <class V>
__global__ void sum_final_kernel(const V* partial, index_t n, V* out) {
    V a = 0;
    for (index_t i = threadIdx.x; i < n; i += blockDim.x) a += partial[i];
    a = block_sum(a);
    if (threadIdx.x == 0) out[0] = a;
}

}  // namespace mmalign::cuda::kernels
