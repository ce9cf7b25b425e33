// mmalign/backend/cuda/kernels/attention.cuh — fused attention, forward and backward, with the
// semantics and formulas of backend/cpu/attention.hpp (online softmax; backward recomputes
// P_ij = e^{(s_ij − m_i) − ℓ_i} from each query's score maximum m_i and log-denominator ℓ_i):
//   forward:   one warp per (b, h, query i): walks the visible keys, keeps the running maximum,
//              denominator and Σ p·v (each lane holds head dimensions lane, lane + 32, ...)
//   backward:  D_i = d_o_i·o_i and d_q (one warp per query), then d_k, d_v (one warp per key,
//              walking the queries that see it) — deterministic, no atomics
// Head widths up to max_head_dim (the backend checks). Scores are reduced across the warp with
// shuffles; k and v rows are read straight from global memory (coalesced, one row per step).
#pragma once

#include <cstdint>

#include "mmalign/backend/cuda/kernels/attention_mask.cuh"

namespace mmalign::cuda::kernels {

inline constexpr int max_head_dim = 128;
inline constexpr int dims_per_lane = max_head_dim / warp_size;

// Σ_d a[d]·b[d] over the head, each lane taking dimensions lane + 32·t; every lane gets the sum.
template <class T>
__device__ __forceinline__ acc_t<T> warp_dot(const T* a, const T* b, index_t dh, int lane) {
    acc_t<T> s = 0;
#pragma unroll
    for (int t = 0; t < dims_per_lane; ++t) {
        const index_t d = lane + t * warp_size;
        if (d < dh) s += static_cast<acc_t<T>>(a[d]) * static_cast<acc_t<T>>(b[d]);
    }
    return warp_sum(s);
}

/// q, o: [B, Tq, H·dh]; k, v: rows of H·dh, batch b at b·kv_stride; stats: [B, H, Tq, 2] (m_i, ℓ_i)
/// or null.
template <class T>
__global__ void attention_forward_kernel(const T* q, const T* k, const T* v, index_t kv_stride, index_t B, index_t H,
                                         index_t Tq, index_t Tk, index_t dh, acc_t<T> scale, DeviceMask<T> mask, T* o,
                                         acc_t<T>* stats) {
    const int lane = threadIdx.x % warp_size;
    const index_t D = H * dh, rows = B * H * Tq;
    using A = acc_t<T>;
    const A neg_inf = -INFINITY;
    for (index_t row = global_warp(); row < rows; row += grid_warps()) {
        const index_t b = row / (H * Tq), h = (row / Tq) % H, i = row % Tq;
        const T* qi = q + (b * Tq + i) * D + h * dh;
        const T* kb = k + b * kv_stride + h * dh;
        const T* vb = v + b * kv_stride + h * dh;
        const DeviceMaskRow<T> mr = mask.row(b, i, Tk);
        A acc[dims_per_lane] = {};
        A m = neg_inf, l = 0;
        for (index_t j = 0; j < mr.end; ++j) {
            if (!mr.visible(j)) continue;  // the same for every lane: no divergence
            const A s = scale * warp_dot(qi, kb + j * D, dh, lane) + (mr.add ? static_cast<A>(mr.add[j]) : A(0));
            if (s == neg_inf) continue;
            if (s > m) {
                const A corr = m == neg_inf ? A(0) : expf(m - s);
#pragma unroll
                for (int t = 0; t < dims_per_lane; ++t) acc[t] *= corr;
                l *= corr;
                m = s;
            }
            const A p = expf(s - m);
            l += p;
            const T* vj = vb + j * D;
#pragma unroll
            for (int t = 0; t < dims_per_lane; ++t) {
                const index_t d = lane + t * warp_size;
                if (d < dh) acc[t] += p * vj[d];
            }
        }
        const A inv = l > A(0) ? A(1) / l : A(0);
        T* oi = o + (b * Tq + i) * D + h * dh;
#pragma unroll
        for (int t = 0; t < dims_per_lane; ++t) {
            const index_t d = lane + t * warp_size;
            if (d < dh) oi[d] = acc[t] * inv;
        }
        if (stats && lane == 0) {
            A* st = stats + 2 * ((b * H + h) * Tq + i);
            st[0] = l > A(0) ? m : neg_inf;
            st[1] = l > A(0) ? logf(l) : A(0);
        }
    }
}

/// d_q [B, Tq, H·dh] assigned; delta [B, H, Tq] receives D_i = d_o_i·o_i for the key pass.
template <class T>
__global__ void attention_backward_dq_kernel(const T* q, const T* k, const T* v, index_t kv_stride, index_t B,
                                             index_t H, index_t Tq, index_t Tk, index_t dh, acc_t<T> scale,
                                             DeviceMask<T> mask, const T* o, const T* d_o, const acc_t<T>* stats,
                                             T* d_q, acc_t<T>* delta) {
    const int lane = threadIdx.x % warp_size;
    const index_t D = H * dh, rows = B * H * Tq;
    using A = acc_t<T>;
    const A neg_inf = -INFINITY;
    for (index_t row = global_warp(); row < rows; row += grid_warps()) {
        const index_t b = row / (H * Tq), h = (row / Tq) % H, i = row % Tq;
        const index_t at = (b * Tq + i) * D + h * dh;
        const T* qi = q + at;
        const T* gi = d_o + at;
        const A mi = stats[2 * ((b * H + h) * Tq + i)], li = stats[2 * ((b * H + h) * Tq + i) + 1];
        const A Di = warp_dot(gi, o + at, dh, lane);
        if (lane == 0) delta[(b * H + h) * Tq + i] = Di;
        A acc[dims_per_lane] = {};
        if (mi != neg_inf) {
            const T* kb = k + b * kv_stride + h * dh;
            const T* vb = v + b * kv_stride + h * dh;
            const DeviceMaskRow<T> mr = mask.row(b, i, Tk);
            for (index_t j = 0; j < mr.end; ++j) {
                if (!mr.visible(j)) continue;
                const T* kj = kb + j * D;
                const A s = scale * warp_dot(qi, kj, dh, lane) + (mr.add ? static_cast<A>(mr.add[j]) : A(0));
                const A p = expf((s - mi) - li);
                if (p == A(0)) continue;
                const A ds = p * (warp_dot(gi, vb + j * D, dh, lane) - Di);
#pragma unroll
                for (int t = 0; t < dims_per_lane; ++t) {
                    const index_t d = lane + t * warp_size;
                    if (d < dh) acc[t] += scale * ds * kj[d];
                }
            }
        }
        T* dqi = d_q + at;
#pragma unroll
        for (int t = 0; t < dims_per_lane; ++t) {
            const index_t d = lane + t * warp_size;
            if (d < dh) dqi[d] = acc[t];
        }
    }
}

/// d_k, d_v [B, Tk, H·dh] assigned, one warp per key: Σ over the queries that see key j.
template <class T>
__global__ void attention_backward_dkv_kernel(const T* q, const T* k, const T* v, index_t kv_stride, index_t B,
                                              index_t H, index_t Tq, index_t Tk, index_t dh, acc_t<T> scale,
                                              DeviceMask<T> mask, const T* d_o, const acc_t<T>* stats,
                                              const acc_t<T>* delta, T* d_k, T* d_v) {
    const int lane = threadIdx.x % warp_size;
    const index_t D = H * dh, rows = B * H * Tk;
    using A = acc_t<T>;
    const A neg_inf = -INFINITY;
    for (index_t row = global_warp(); row < rows; row += grid_warps()) {
        const index_t b = row / (H * Tk), h = (row / Tk) % H, j = row % Tk;
        const T* kj = k + b * kv_stride + j * D + h * dh;
        const T* vj = v + b * kv_stride + j * D + h * dh;
        A dk[dims_per_lane] = {}, dv[dims_per_lane] = {};
        const bool kept = mask.kept(b, j, Tk);
        // Causal: query i sees key j when j ≤ i + offset, i.e. from i = j − offset on.
        const index_t i0 = mask.causal ? max(index_t(0), j - mask.causal_offset) : 0;
        for (index_t i = kept ? i0 : Tq; i < Tq; ++i) {
            const A mi = stats[2 * ((b * H + h) * Tq + i)], li = stats[2 * ((b * H + h) * Tq + i) + 1];
            if (mi == neg_inf) continue;
            const index_t at = (b * Tq + i) * D + h * dh;
            const T* qi = q + at;
            const T* gi = d_o + at;
            const T* add = mask.row(b, i, Tk).add;
            const A s = scale * warp_dot(qi, kj, dh, lane) + (add ? static_cast<A>(add[j]) : A(0));
            const A p = expf((s - mi) - li);
            if (p == A(0)) continue;
            const A ds = p * (warp_dot(gi, vj, dh, lane) - delta[(b * H + h) * Tq + i]);
#pragma unroll
            for (int t = 0; t < dims_per_lane; ++t) {
                const index_t d = lane + t * warp_size;
                if (d < dh) {
                    dk[t] += scale * ds * qi[d];
                    dv[t] += p * gi[d];
                }
            }
        }
        T* dkj = d_k + (b * Tk + j) * D + h * dh;
        T* dvj = d_v + (b * Tk + j) * D + h * dh;
#pragma unroll
        for (int t = 0; t < dims_per_lane; ++t) {
            const index_t d = lane + t * warp_size;
            if (d < dh) {
                dkj[d] = dk[t];
                dvj[d] = dv[t];
            }
        }
    }
}

}  // namespace mmalign::cuda::kernels
