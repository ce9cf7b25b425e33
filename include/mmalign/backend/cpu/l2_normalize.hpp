// mmalign/backend/cpu/l2_normalize.hpp — rows scaled to unit Euclidean length.
//
//   forward:  y = x / max(‖x‖₂, eps)       (HF CLIP: eps = 0, `x / x.norm(p=2, dim=-1)`;
//                                            torch F.normalize: eps = 1e-12)
//   backward: d_x = (d_y − y·⟨y, d_y⟩) / ‖x‖   (assigned; when the eps floor was hit, d_x = d_y/eps)
#pragma once

#include <cmath>

#include "mmalign/backend/cpu/parallel.hpp"

namespace mmalign::cpu {

template <class T>
void l2_normalize_forward(int threads, const T* x, T* y, T* norm, index_t rows, index_t cols, T eps) {
    parallel_for(threads, rows, cols * 3, [&](index_t r) {
        const T* xr = x + r * cols;
        T s = 0;
        for (index_t i = 0; i < cols; ++i) s += xr[i] * xr[i];
        const T n = std::sqrt(s);
        const bool floored = n < eps;
        const T d = floored ? eps : n;
        for (index_t i = 0; i < cols; ++i) y[r * cols + i] = xr[i] / d;
        // A negative norm marks a floored row for backward (the map there is linear: y = x/eps).
        if (norm) norm[r] = floored ? -eps : n;
    });
}

template <class T>
void l2_normalize_backward(int threads, const T* d_y, const T* y, const T* norm, T* d_x, index_t rows,
                           index_t cols) {
    parallel_for(threads, rows, cols * 4, [&](index_t r) {
        const T* gy = d_y + r * cols;
        const T* yr = y + r * cols;
        T* dx = d_x + r * cols;
        if (norm[r] < T(0)) {
            for (index_t i = 0; i < cols; ++i) dx[i] = gy[i] / -norm[r];
            return;
        }
        T dot = 0;
        for (index_t i = 0; i < cols; ++i) dot += yr[i] * gy[i];
        for (index_t i = 0; i < cols; ++i) dx[i] = (gy[i] - yr[i] * dot) / norm[r];
    });
}

}  // namespace mmalign::cpu
