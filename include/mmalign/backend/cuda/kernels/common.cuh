// mmalign/backend/cuda/kernels/common.cuh — launch shapes and reductions shared by the kernels.
//
// Row kernels use one warp per row (layer norm, softmax, L2 normalisation: rows of at most a few
// thousand elements) or one block per row (cross-entropy over a vocabulary). Pointwise kernels
// are grid-stride loops. Every kernel is a template over the element type: header-only code may
// be included by several translation units, and templates give the kernels one definition.
// Elements may be a 16-bit storage type (core/float16.hpp): kernels load them into acc_t<T>
// (float), compute there, and round once when they store.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "mmalign/core/float16.hpp"
#include "mmalign/core/shape.hpp"

namespace mmalign::cuda::kernels {

/// What a kernel computes an element of type T in: float for float and the 16-bit formats.
template <class T>
using acc_t = compute_type_t<T>;

inline constexpr int warp_size = 32;
inline constexpr int pointwise_threads = 256;
inline constexpr int rows_per_block = 8;  // warp-per-row kernels: 8 warps, 256 threads
inline constexpr int row_block_threads = 256;  // block-per-row kernels
inline constexpr int column_block_rows = 8;    // column sums: blocks of warp_size × 8 threads

/// Blocks for a grid-stride loop over n items: enough to fill any current GPU, never more than
/// the items need.
inline unsigned pointwise_blocks(index_t n) {
    const index_t b = (n + pointwise_threads - 1) / pointwise_threads;
    return static_cast<unsigned>(std::clamp<index_t>(b, 1, index_t(1) << 20));
}

/// Blocks for a warp-per-row kernel over `rows` rows (the kernels loop when rows exceed the grid).
inline unsigned warp_row_blocks(index_t rows) {
    const index_t b = (rows + rows_per_block - 1) / rows_per_block;
    return static_cast<unsigned>(std::clamp<index_t>(b, 1, index_t(1) << 20));
}

/// Blocks for a block-per-row kernel.
inline unsigned block_row_blocks(index_t rows) {
    return static_cast<unsigned>(std::clamp<index_t>(rows, 1, index_t(1) << 20));
}

template <class V>
__device__ __forceinline__ V warp_sum(V v) {
#pragma unroll
    for (int o = warp_size / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template <class V>
__device__ __forceinline__ V warp_max(V v) {
#pragma unroll
    for (int o = warp_size / 2; o > 0; o /= 2) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
/// May be called repeatedly: the leading barrier keeps a call from overwriting the previous
/// call's result before every thread has read it.
template <class V>
__device__ V block_sum(V v) {
    __shared__ V partial[warp_size];
    const int lane = threadIdx.x % warp_size, warp = threadIdx.x / warp_size;
    const int warps = blockDim.x / warp_size;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        V t = lane < warps ? partial[lane] : V(0);
        t = warp_sum(t);
        if (lane == 0) partial[0] = t;
    }
    __syncthreads();
    return partial[0];
}

/// Maximum over the block; `lowest` is the identity (−inf for floats).
template <class V>
__device__ V block_max(V v, V lowest) {
    __shared__ V partial[warp_size];
    const int lane = threadIdx.x % warp_size, warp = threadIdx.x / warp_size;
    const int warps = blockDim.x / warp_size;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        V t = lane < warps ? partial[lane] : lowest;
        t = warp_max(t);
        if (lane == 0) partial[0] = t;
    }
    __syncthreads();
    return partial[0];
}

/// Index of this thread's warp among all warps of the grid, and the number of warps in it.
__device__ __forceinline__ index_t global_warp() {
    return (static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x) / warp_size;
}
__device__ __forceinline__ index_t grid_warps() { return static_cast<index_t>(gridDim.x) * blockDim.x / warp_size; }
__device__ __forceinline__ index_t global_thread() {
    return static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ index_t grid_threads() { return static_cast<index_t>(gridDim.x) * blockDim.x; }

}  // namespace mmalign::cuda::kernels
