// mmalign/backend/cpu/attention.hpp — fused scaled dot-product attention, forward and backward,
// without the [B, H, Tq, Tk] probability tensor (FlashAttention's algorithm: Dao et al. 2022,
// online softmax after Milakov & Gimelshein 2018; backward as in FlashAttention-2, Dao 2023).
//
// Per batch b, head h (columns h·dh .. h·dh + dh of rows of width D = H·dh), query i, key j:
//   s_ij = scale · q_i·k_j + A[b, i, j]     over the keys visible to i (AttentionMask)
//   o_i  = Σ_j softmax_j(s_i) v_j,   m_i = max_j s_ij,   ℓ_i = log Σ_j e^{s_ij − m_i}
// (m_i = −inf, and o_i = 0, when no key is visible). Backward recomputes the probabilities from
// the two row statistics instead of storing them: P_ij = e^{(s_ij − m_i) − ℓ_i}. (Kept apart, not
// as one log-sum-exp m_i + ℓ_i: with a large finite mask such as −3.4e38 the sum would round ℓ_i
// away and every P_ij would come out as 1.)
//   D_i = d_o_i·o_i,  dS_ij = P_ij (d_o_i·v_j − D_i)
//   d_q_i = scale Σ_j dS_ij k_j,   d_k_j = scale Σ_i dS_ij q_i,   d_v_j = Σ_i P_ij d_o_i
// The same results as attention_softmax_forward/backward between the batched products (the plain
// path), to rounding. This is the reference the CUDA kernels (cuda/kernels/attention.cuh) follow;
// on the CPU it saves the probabilities' memory, not time, at CLIP's sequence lengths.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "mmalign/backend/cpu/parallel.hpp"
#include "mmalign/backend/cpu/softmax.hpp"  // MaskRow
#include "mmalign/core/ops.hpp"

namespace mmalign::cpu {

template <class T>
T dot(const T* a, const T* b, index_t n) {
    T s = 0;
#if defined(_OPENMP) && !defined(__CUDACC__)
#pragma omp simd reduction(+ : s)
#endif
    for (index_t d = 0; d < n; ++d) s += a[d] * b[d];
    return s;
}

/// q, o: [B, Tq, H·dh]; k, v: rows of H·dh, batch b at b·kv_batch_stride; stats: [B, H, Tq, 2]
/// (m_i, ℓ_i per query) or null.
template <class T>
void attention_forward(int threads, const T* q, const T* k, const T* v, index_t kv_batch_stride, index_t B, index_t H,
                       index_t Tq, index_t Tk, index_t dh, T scale, const AttentionMask<T>& mask, T* o, T* stats) {
    const index_t D = H * dh;
    const T neg_inf = -std::numeric_limits<T>::infinity();
    parallel_for(threads, B * H * Tq, Tk * dh * 4, [&](index_t row) {
        const index_t b = row / (H * Tq), h = (row / Tq) % H, i = row % Tq;
        const T* qi = q + (b * Tq + i) * D + h * dh;
        const T* kb = k + b * kv_batch_stride + h * dh;
        const T* vb = v + b * kv_batch_stride + h * dh;
        T* oi = o + (b * Tq + i) * D + h * dh;
        const MaskRow<T> mr = mask_row(mask, b, i, Tq, Tk);
        T m = neg_inf, l = 0;
        std::fill(oi, oi + dh, T(0));  // the running Σ p·v, rescaled as the maximum grows
        for (index_t j = 0; j < mr.end; ++j) {
            if (mr.hidden(j)) continue;
            const T s = scale * dot(qi, kb + j * D, dh) + (mr.add ? mr.add[j] : T(0));
            if (s == neg_inf) continue;
            if (s > m) {
                const T corr = m == neg_inf ? T(0) : std::exp(m - s);
                for (index_t d = 0; d < dh; ++d) oi[d] *= corr;
                l *= corr;
                m = s;
            }
            const T p = std::exp(s - m);
            l += p;
            const T* vj = vb + j * D;
            for (index_t d = 0; d < dh; ++d) oi[d] += p * vj[d];
        }
        const T inv = l > T(0) ? T(1) / l : T(0);
        for (index_t d = 0; d < dh; ++d) oi[d] *= inv;
        if (stats) {
            T* st = stats + 2 * ((b * H + h) * Tq + i);
            st[0] = l > T(0) ? m : neg_inf;
            st[1] = l > T(0) ? std::log(l) : T(0);
        }
    });
}

/// d_q: [B, Tq, H·dh]; d_k, d_v: [B, Tk, H·dh] — all assigned. o and stats from the forward.
template <class T>
void attention_backward(int threads, const T* q, const T* k, const T* v, index_t kv_batch_stride, index_t B, index_t H,
                        index_t Tq, index_t Tk, index_t dh, T scale, const AttentionMask<T>& mask, const T* o,
                        const T* d_o, const T* stats, T* d_q, T* d_k, T* d_v) {
    const index_t D = H * dh;
    const T neg_inf = -std::numeric_limits<T>::infinity();
    // One (batch, head) per task: its columns of d_q, d_k and d_v belong to it alone.
    parallel_for(threads, B * H, Tq * Tk * dh * 8, [&](index_t bh) {
        const index_t b = bh / H, h = bh % H;
        const T* kb = k + b * kv_batch_stride + h * dh;
        const T* vb = v + b * kv_batch_stride + h * dh;
        for (index_t j = 0; j < Tk; ++j) {
            std::fill(d_k + (b * Tk + j) * D + h * dh, d_k + (b * Tk + j) * D + (h + 1) * dh, T(0));
            std::fill(d_v + (b * Tk + j) * D + h * dh, d_v + (b * Tk + j) * D + (h + 1) * dh, T(0));
        }
        for (index_t i = 0; i < Tq; ++i) {
            const index_t at = (b * Tq + i) * D + h * dh;
            const T* qi = q + at;
            const T* gi = d_o + at;
            T* dqi = d_q + at;
            std::fill(dqi, dqi + dh, T(0));
            const T mi = stats[2 * ((b * H + h) * Tq + i)], li = stats[2 * ((b * H + h) * Tq + i) + 1];
            if (mi == neg_inf) continue;  // no visible key: o_i = 0 whatever q, k, v
            const T Di = dot(gi, o + at, dh);
            const MaskRow<T> mr = mask_row(mask, b, i, Tq, Tk);
            for (index_t j = 0; j < mr.end; ++j) {
                if (mr.hidden(j)) continue;
                const T* kj = kb + j * D;
                const T* vj = vb + j * D;
                const T s = scale * dot(qi, kj, dh) + (mr.add ? mr.add[j] : T(0));
                const T p = std::exp((s - mi) - li);
                if (p == T(0)) continue;
                const T ds = p * (dot(gi, vj, dh) - Di);
                T* dkj = d_k + (b * Tk + j) * D + h * dh;
                T* dvj = d_v + (b * Tk + j) * D + h * dh;
                for (index_t d = 0; d < dh; ++d) {
                    dqi[d] += scale * ds * kj[d];
                    dkj[d] += scale * ds * qi[d];
                    dvj[d] += p * gi[d];
                }
            }
        }
    });
}

}  // namespace mmalign::cpu
