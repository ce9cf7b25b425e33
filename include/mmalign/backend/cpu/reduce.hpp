// mmalign/backend/cpu/reduce.hpp — sums, means and the elementwise updates modules need.
#pragma once

#include <vector>

#include "mmalign/backend/cpu/parallel.hpp"

namespace mmalign::cpu {

/// out[c] += Σ_r x[r, c]   (bias gradients). `scratch` holds per-thread partial sums.
template <class T>
void sum_rows_accumulate(int threads, const T* x, index_t rows, index_t cols, T* out, std::vector<T>& scratch) {
    const int team = rows * cols >= parallel_grain ? threads : 1;
    if (team == 1) {
        for (index_t r = 0; r < rows; ++r)
            for (index_t c = 0; c < cols; ++c) out[c] += x[r * cols + c];
        return;
    }
    scratch.assign(static_cast<std::size_t>(team * cols), T(0));
    parallel_for(team, team, parallel_grain, [&](index_t t) {
        T* p = scratch.data() + t * cols;
        for (index_t r = rows * t / team; r < rows * (t + 1) / team; ++r)
            for (index_t c = 0; c < cols; ++c) p[c] += x[r * cols + c];
    });
    for (index_t t = 0; t < team; ++t)
        for (index_t c = 0; c < cols; ++c) out[c] += scratch[static_cast<std::size_t>(t * cols + c)];
}

/// Σ x in double, returned as T.
template <class T>
T sum(const T* x, index_t n) {
    double s = 0;
    for (index_t i = 0; i < n; ++i) s += x[i];
    return static_cast<T>(s);
}

/// y = a + b (y may alias a or b).
template <class T>
void add(int threads, const T* a, const T* b, T* y, index_t n) {
    constexpr index_t chunk = 8192;
    parallel_for(threads, (n + chunk - 1) / chunk, chunk, [&](index_t c) {
        for (index_t i = c * chunk, e = std::min(n, (c + 1) * chunk); i < e; ++i) y[i] = a[i] + b[i];
    });
}

/// y += alpha · x
template <class T>
void axpy(int threads, T alpha, const T* x, T* y, index_t n) {
    constexpr index_t chunk = 8192;
    parallel_for(threads, (n + chunk - 1) / chunk, chunk, [&](index_t c) {
        for (index_t i = c * chunk, e = std::min(n, (c + 1) * chunk); i < e; ++i) y[i] += alpha * x[i];
    });
}

/// x *= alpha
template <class T>
void scale(int threads, T alpha, T* x, index_t n) {
    constexpr index_t chunk = 8192;
    parallel_for(threads, (n + chunk - 1) / chunk, chunk, [&](index_t c) {
        for (index_t i = c * chunk, e = std::min(n, (c + 1) * chunk); i < e; ++i) x[i] *= alpha;
    });
}

/// out[r, c] = x[r, c] + v[c]   (row broadcast; out may alias x)
template <class T>
void add_row_vector(int threads, const T* x, const T* v, T* out, index_t rows, index_t cols) {
    parallel_for(threads, rows, cols, [&](index_t r) {
        for (index_t c = 0; c < cols; ++c) out[r * cols + c] = x[r * cols + c] + v[c];
    });
}

}  // namespace mmalign::cpu
