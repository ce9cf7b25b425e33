// mmalign/backend/cpu/softmax.hpp — masked, scaled softmax over attention scores.
//
//   forward:  P[b,h,i,:] = softmax(scale · S[b,h,i,:] + A[b,i,:])  over the keys visible to query i
//   backward: d_S = scale · P ⊙ (d_P − Σ_j d_P·P)                    (softmax Jacobian, then the scale)
// Both work in place on the [B, H, Tq, Tk] score buffer. Masks: core/ops.hpp AttentionMask.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "mmalign/backend/cpu/parallel.hpp"
#include "mmalign/backend/cpu/vector_math_avx512.hpp"
#include "mmalign/core/ops.hpp"

namespace mmalign::cpu {

/// Where query i of batch b may look: keys [0, end) minus those key_keep hides; A's row or null.
template <class T>
struct MaskRow {
    index_t end;
    const std::int32_t* keep;
    const T* add;
    bool hidden(index_t j) const { return keep && keep[j] == 0; }
};

template <class T>
MaskRow<T> mask_row(const AttentionMask<T>& mask, index_t b, index_t i, index_t Tq, index_t Tk) {
    const index_t add_stride = mask.additive_batch_stride < 0 ? Tq * Tk : mask.additive_batch_stride;
    index_t end = Tk;
    if (mask.causal) end = std::clamp<index_t>(i + mask.causal_offset + 1, 0, Tk);
    return {end, mask.key_keep ? mask.key_keep + b * Tk : nullptr,
            mask.additive ? mask.additive + b * add_stride + i * Tk : nullptr};
}

template <class T>
void attention_softmax_forward(int threads, T* s, index_t B, index_t H, index_t Tq, index_t Tk, T scale,
                               const AttentionMask<T>& mask) {
    parallel_for(threads, B * H * Tq, Tk * 8, [&](index_t row) {
        const index_t b = row / (H * Tq), i = row % Tq;
        T* sr = s + row * Tk;
        const MaskRow<T> mr = mask_row(mask, b, i, Tq, Tk);
        const std::int32_t* keep = mr.keep;
        const T* add = mr.add;
        const index_t visible_end = mr.end;
        T mx = -std::numeric_limits<T>::infinity();
#if MMALIGN_AVX512
        if constexpr (std::is_same_v<T, float>)
            if (avx512::supported()) {
                // Hidden keys become −inf, whose exponential is exactly 0.
                if (!keep && !add) avx512::scale_span(sr, visible_end, scale);
                else
                    for (index_t j = 0; j < visible_end; ++j)
                        sr[j] = keep && keep[j] == 0 ? -std::numeric_limits<T>::infinity()
                                                     : sr[j] * scale + (add ? add[j] : T(0));
                mx = avx512::max_span(sr, visible_end);
                std::fill(sr + visible_end, sr + Tk, T(0));
                if (mx == -std::numeric_limits<T>::infinity()) {  // every key hidden
                    std::fill(sr, sr + visible_end, T(0));
                    return;
                }
                avx512::scale_span(sr, visible_end, T(1) / avx512::exp_shifted_span(sr, visible_end, mx));
                return;
            }
#endif
        for (index_t j = 0; j < visible_end; ++j) {
            if (keep && keep[j] == 0) continue;
            T v = sr[j] * scale;
            if (add) v += add[j];
            sr[j] = v;
            mx = std::max(mx, v);
        }
        T sum = 0;
        for (index_t j = 0; j < Tk; ++j) {
            const bool hidden = j >= visible_end || (keep && keep[j] == 0);
            // An additive mask of −inf may hide every key as well: exp(−inf − (−inf)) is NaN.
            const T e = hidden || mx == -std::numeric_limits<T>::infinity() ? T(0) : std::exp(sr[j] - mx);
            sr[j] = e;
            sum += e;
        }
        const T inv = sum > T(0) ? T(1) / sum : T(0);
        for (index_t j = 0; j < Tk; ++j) sr[j] *= inv;
    });
}

/// `d` holds d_P on entry and d_S on return; `p` is the forward's output.
template <class T>
void attention_softmax_backward(int threads, const T* p, T* d, index_t rows, index_t Tk, T scale) {
    parallel_for(threads, rows, Tk * 4, [&](index_t r) {
        const T* pr = p + r * Tk;
        T* dr = d + r * Tk;
        T dot = 0;
        for (index_t j = 0; j < Tk; ++j) dot += dr[j] * pr[j];
        for (index_t j = 0; j < Tk; ++j) dr[j] = scale * pr[j] * (dr[j] - dot);
    });
}

/// Plain row softmax, y may alias x: y[r,:] = softmax(x[r,:]).
template <class T>
void softmax_rows(int threads, const T* x, T* y, index_t rows, index_t cols) {
    parallel_for(threads, rows, cols * 8, [&](index_t r) {
        const T* xr = x + r * cols;
        T* yr = y + r * cols;
        T mx = -std::numeric_limits<T>::infinity();
        for (index_t j = 0; j < cols; ++j) mx = std::max(mx, xr[j]);
        T sum = 0;
        for (index_t j = 0; j < cols; ++j) sum += (yr[j] = std::exp(xr[j] - mx));
        for (index_t j = 0; j < cols; ++j) yr[j] /= sum;
    });
}

}  // namespace mmalign::cpu
