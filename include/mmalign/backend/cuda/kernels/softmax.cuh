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

#include "mmalign/backend/cuda/kernels/attention_mask.cuh"

namespace mmalign::cuda::kernels {

template <class T>
__global__ void attention_softmax_forward_kernel(T* s, index_t B, index_t H, index_t Tq, index_t Tk, acc_t<T> scale,
                                                 DeviceMask<T> mask) {
    using A = acc_t<T>;
    const int lane = threadIdx.x % warp_size;
    const index_t rows = B * H * Tq;
    const A neg_inf = -INFINITY;
    for (index_t row = global_warp(); row < rows; row += grid_warps()) {
        const index_t b = row / (H * Tq), i = row % Tq;
        T* sr = s + row * Tk;
        const DeviceMaskRow<T> mr = mask.row(b, i, Tk);
        A mx = neg_inf;
        for (index_t j = lane; j < mr.end; j += warp_size) {
            if (!mr.visible(j)) continue;
            A v = sr[j] * scale;
            if (mr.add) v += mr.add[j];
            mx = max(mx, v);
        }
        mx = warp_max(mx);
        // The exponentials are computed twice (for the sum, then for the output) instead of stored
        // and rescaled: one write per element, and a 16-bit row is rounded once, not twice.
        auto exp_at = [&](index_t j) -> A {
            if (!mr.visible(j) || mx == neg_inf) return A(0);
            A v = sr[j] * scale;
            if (mr.add) v += mr.add[j];
            return expf(v - mx);
        };
        A sum = 0;
        for (index_t j = lane; j < Tk; j += warp_size) sum += exp_at(j);
        sum = warp_sum(sum);
        const A inv = sum > A(0) ? A(1) / sum : A(0);
        for (index_t j = lane; j < Tk; j += warp_size) sr[j] = exp_at(j) * inv;
    }
}

/// d holds d_P on entry and d_S on return; p [rows, Tk] is the forward's output.
template <class T>
__global__ void attention_softmax_backward_kernel(const T* p, T* d, index_t rows, index_t Tk, acc_t<T> scale) {
    using A = acc_t<T>;
    const int lane = threadIdx.x % warp_size;
    for (index_t r = global_warp(); r < rows; r += grid_warps()) {
        const T* pr = p + r * Tk;
        T* dr = d + r * Tk;
        A dot = 0;
        for (index_t j = lane; j < Tk; j += warp_size) dot += static_cast<A>(dr[j]) * static_cast<A>(pr[j]);
        dot = warp_sum(dot);
        for (index_t j = lane; j < Tk; j += warp_size) dr[j] = scale * static_cast<A>(pr[j]) * (static_cast<A>(dr[j]) - dot);
    }
}

/// y[r, :] = softmax(x[r, :]); y may alias x.
template <class T>
__global__ void softmax_rows_kernel(const T* x, T* y, index_t rows, index_t cols) {
    const int lane = threadIdx.x % warp_size;
    for (index_t r = global_warp(); r < rows; r += grid_warps()) {
        using A = acc_t<T>;
        const T* xr = x + r * cols;
        T* yr = y + r * cols;
        A mx = -INFINITY;
        for (index_t j = lane; j < cols; j += warp_size) mx = max(mx, static_cast<A>(xr[j]));
        mx = warp_max(mx);
        A sum = 0;
        for (index_t j = lane; j < cols; j += warp_size) sum += expf(static_cast<A>(xr[j]) - mx);
        sum = warp_sum(sum);
        // y may alias x: each lane reads x[j] before it writes y[j], and no lane touches another's j.
        for (index_t j = lane; j < cols; j += warp_size) yr[j] = expf(static_cast<A>(xr[j]) - mx) / sum;
    }
}

}  // namespace mmalign::cuda::kernels
