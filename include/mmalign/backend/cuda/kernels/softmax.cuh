// mmalign/backend/cuda/kernels/softmax.cuh — masked, scaled attention softmax and plain row
// softmax, one warp per row, with the semantics of backend/cpu/softmax.hpp:
//   forward:  P[b,h,i,:] = softmax(scale·S[b,h,i,:] + A[b,i,:]) over the keys visible to query i;
//             hidden keys (key_keep 0, or j > i + causal_offset) get probability 0; a row with no
//             visible key (or only −inf scores) is all zeros
//   backward: d_S = scale · P ⊙ (d_P − Σ_j d_P·P)
// Both in place on the [B, H, Tq, Tk] score buffer. Every lane reads and writes only its own
// columns j ≡ lane (mod 32), so the passes over a row need no barrier besides the shuffles.
#pragma once

#include <cstdint>

#include "mmalign/backend/cuda/kernels/common.cuh"

namespace mmalign::cuda::kernels {

/// key_keep: device [B, Tk] or null; additive: device, row i of batch b at b·add_stride + i·Tk, or null.
template <class T>
__global__ void attention_softmax_forward_kernel(T* s, index_t B, index_t H, index_t Tq, index_t Tk, T scale,
                                                 const std::int32_t* key_keep, bool causal, index_t causal_offset,
                                                 const T* additive, index_t add_stride) {
    const int lane = threadIdx.x % warp_size;
    const index_t rows = B * H * Tq;
    const T neg_inf = -INFINITY;
    for (index_t row = global_warp(); row < rows; row += grid_warps()) {
        const index_t b = row / (H * Tq), i = row % Tq;
        T* sr = s + row * Tk;
        const std::int32_t* keep = key_keep ? key_keep + b * Tk : nullptr;
        const T* add = additive ? additive + b * add_stride + i * Tk : nullptr;
        index_t visible_end = Tk;
        if (causal) visible_end = max(index_t(0), min(Tk, i + causal_offset + 1));
        T mx = neg_inf;
        for (index_t j = lane; j < visible_end; j += warp_size) {
            if (keep && keep[j] == 0) continue;
            T v = sr[j] * scale;
            if (add) v += add[j];
            mx = max(mx, v);
        }
        mx = warp_max(mx);
        T sum = 0;
        for (index_t j = lane; j < Tk; j += warp_size) {
            const bool hidden = j >= visible_end || (keep && keep[j] == 0);
            T e = 0;
            if (!hidden && mx != neg_inf) {
                T v = sr[j] * scale;
                if (add) v += add[j];
                e = expf(v - mx);
            }
            sr[j] = e;
            sum += e;
        }
        sum = warp_sum(sum);
        const T inv = sum > T(0) ? T(1) / sum : T(0);
        for (index_t j = lane; j < Tk; j += warp_size) sr[j] *= inv;
    }
}

/// d holds d_P on entry and d_S on return; p [rows, Tk] is the forward's output.
template <class T>
__global__ void attention_softmax_backward_kernel(const T* p, T* d, index_t rows, index_t Tk, T scale) {
    const int lane = threadIdx.x % warp_size;
    for (index_t r = global_warp(); r < rows; r += grid_warps()) {
        const T* pr = p + r * Tk;
        T* dr = d + r * Tk;
        T dot = 0;
        for (index_t j = lane; j < Tk; j += warp_size) dot += dr[j] * pr[j];
        dot = warp_sum(dot);
        for (index_t j = lane; j < Tk; j += warp_size) dr[j] = scale * pr[j] * (dr[j] - dot);
    }
}

/// y[r, :] = softmax(x[r, :]); y may alias x.
template <class T>
__global__ void softmax_rows_kernel(const T* x, T* y, index_t rows, index_t cols) {
    const int lane = threadIdx.x % warp_size;
    for (index_t r = global_warp(); r < rows; r += grid_warps()) {
        const T* xr = x + r * cols;
        T* yr = y + r * cols;
        T mx = -INFINITY;
        for (index_t j = lane; j < cols; j += warp_size) mx = max(mx, xr[j]);
        mx = warp_max(mx);
        T sum = 0;
        for (index_t j = lane; j < cols; j += warp_size) {
            const T e = expf(xr[j] - mx);
            yr[j] = e;
            sum += e;
        }
        sum = warp_sum(sum);
        for (index_t j = lane; j < cols; j += warp_size) yr[j] /= sum;
    }
}

}  // namespace mmalign::cuda::kernels
