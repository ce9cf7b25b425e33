// mmalign/backend/cpu/layer_norm.hpp — LayerNorm over the last axis, forward and backward.
//
//   y = (x − μ) · rstd · w + b,   μ = mean(x),  rstd = 1/√(var_biased(x) + eps)   (Ba et al. 2016;
//   torch.nn.LayerNorm). Forward keeps μ and rstd per row for backward (llm.c's layernorm).
//   Backward: x̂ = (x − μ)·rstd, g = d_y·w,
//     d_x  = rstd · (g − mean(g) − x̂ · mean(g·x̂))      (assigned)
//     d_w += Σ_rows d_y·x̂,   d_b += Σ_rows d_y           (accumulated)
// Statistics are computed in double for float inputs, so rows with a large mean lose nothing.
#pragma once

#include <cmath>
#include <vector>

#include "mmalign/backend/cpu/parallel.hpp"
#include "mmalign/backend/cpu/vector_math_avx512.hpp"

namespace mmalign::cpu {

template <class T>
void layer_norm_forward(int threads, const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, index_t rows,
                        index_t cols, double eps) {
    parallel_for(threads, rows, cols * 6, [&](index_t r) {
        const T* xr = x + r * cols;
        T* yr = y + r * cols;
#if MMALIGN_AVX512
        if constexpr (std::is_same_v<T, float>)
            if (avx512::supported()) {
                const auto [mt, st] = avx512::layer_norm_row(xr, w, b, yr, cols, eps);
                if (mean) mean[r] = mt;
                if (rstd) rstd[r] = st;
                return;
            }
#endif
        double m = 0;
        for (index_t i = 0; i < cols; ++i) m += xr[i];
        m /= static_cast<double>(cols);
        double v = 0;
        for (index_t i = 0; i < cols; ++i) {
            const double d = xr[i] - m;
            v += d * d;
        }
        v /= static_cast<double>(cols);
        const double s = 1.0 / std::sqrt(v + eps);
        const T mt = static_cast<T>(m), st = static_cast<T>(s);
        for (index_t i = 0; i < cols; ++i) yr[i] = (xr[i] - mt) * st * w[i] + b[i];
        if (mean) mean[r] = mt;
        if (rstd) rstd[r] = st;
    });
}

/// d_x may be null (no input gradient wanted); d_w and d_b may be null (frozen).
/// `scratch` holds threads × 2·cols elements for per-thread partial sums of d_w and d_b.
template <class T>
void layer_norm_backward(int threads, const T* d_y, const T* x, const T* w, const T* mean, const T* rstd, T* d_x,
                         T* d_w, T* d_b, index_t rows, index_t cols, std::vector<T>& scratch) {
    const bool want_params = d_w != nullptr || d_b != nullptr;
    if (d_x) {
        parallel_for(threads, rows, cols * 8, [&](index_t r) {
            const T* gy = d_y + r * cols;
            const T* xr = x + r * cols;
            const T m = mean[r], s = rstd[r];
            double sum_g = 0, sum_gx = 0;
            for (index_t i = 0; i < cols; ++i) {
                const double g = static_cast<double>(gy[i]) * w[i];
                sum_g += g;
                sum_gx += g * ((xr[i] - m) * s);
            }
            const T mg = static_cast<T>(sum_g / static_cast<double>(cols));
            const T mgx = static_cast<T>(sum_gx / static_cast<double>(cols));
            T* dx = d_x + r * cols;
            for (index_t i = 0; i < cols; ++i) {
                const T xhat = (xr[i] - m) * s;
                dx[i] = s * (gy[i] * w[i] - mg - xhat * mgx);
            }
        });
    }
    if (!want_params) return;
    // Column sums: split the rows into one block per thread, then add the partial sums.
    const int team = rows * cols >= parallel_grain ? threads : 1;
    scratch.assign(static_cast<std::size_t>(team) * 2 * static_cast<std::size_t>(cols), T(0));
    parallel_for(team, team, parallel_grain, [&](index_t t) {
        T* pw = scratch.data() + t * 2 * cols;
        T* pb = pw + cols;
        const index_t r0 = rows * t / team, r1 = rows * (t + 1) / team;
        for (index_t r = r0; r < r1; ++r) {
            const T* gy = d_y + r * cols;
            const T* xr = x + r * cols;
            const T m = mean[r], s = rstd[r];
            for (index_t i = 0; i < cols; ++i) {
                pw[i] += gy[i] * ((xr[i] - m) * s);
                pb[i] += gy[i];
            }
        }
    });
    for (index_t t = 0; t < team; ++t) {
        const T* pw = scratch.data() + t * 2 * cols;
        for (index_t i = 0; i < cols; ++i) {
            if (d_w) d_w[i] += pw[i];
            if (d_b) d_b[i] += pw[cols + i];
        }
    }
}

}  // namespace mmalign::cpu
