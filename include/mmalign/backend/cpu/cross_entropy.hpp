// mmalign/backend/cpu/cross_entropy.hpp — softmax cross-entropy with ignore_index and label
// smoothing, as torch.nn.functional.cross_entropy(reduction="mean") computes it:
//
//   loss_n = (1 − ε)·(−log p[n, t_n]) + ε · mean_c(−log p[n, c]),   p = softmax(logits[n, :])
//   loss   = Σ_{n: t_n ≠ ignore} loss_n / #{n: t_n ≠ ignore}
//   d_logits[n, c] = g / count · (p[n, c] − (1 − ε)·[c = t_n] − ε/C),  0 for ignored rows
// Forward keeps log Σ exp per row (lse) for backward. When every row is ignored torch returns NaN;
// here the loss is 0 with count 0, so an empty micro-batch cannot poison a running mean. The result
// type and the target check are every backend's (core/contracts/cross_entropy.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "mmalign/backend/cpu/parallel.hpp"
#include "mmalign/core/contracts/cross_entropy.hpp"

namespace mmalign::cpu {

template <class T>
CrossEntropyResult<T> cross_entropy_forward(int threads, const T* logits, const std::int32_t* targets, index_t rows,
                                            index_t classes, std::int32_t ignore_index, T label_smoothing, T* lse) {
    check_cross_entropy_targets(targets, rows, classes, ignore_index);
    parallel_for(threads, rows, classes * 4, [&](index_t r) {
        const T* x = logits + r * classes;
        T mx = -std::numeric_limits<T>::infinity();
        for (index_t c = 0; c < classes; ++c) mx = std::max(mx, x[c]);
        double s = 0;
        for (index_t c = 0; c < classes; ++c) s += std::exp(static_cast<double>(x[c] - mx));
        lse[r] = mx + static_cast<T>(std::log(s));
    });
    double total = 0;
    index_t count = 0;
    for (index_t r = 0; r < rows; ++r) {
        if (targets[r] == ignore_index) continue;
        const T* x = logits + r * classes;
        double nll = lse[r] - x[targets[r]];
        if (label_smoothing != T(0)) {
            double mean_nll = 0;
            for (index_t c = 0; c < classes; ++c) mean_nll += lse[r] - x[c];
            mean_nll /= static_cast<double>(classes);
            nll = (1.0 - label_smoothing) * nll + label_smoothing * mean_nll;
        }
        total += nll;
        ++count;
    }
    return {count ? static_cast<T>(total / static_cast<double>(count)) : T(0), count};
}

/// d_logits is assigned. `d_loss` is the upstream gradient of the mean loss.
template <class T>
void cross_entropy_backward(int threads, const T* logits, const std::int32_t* targets, const T* lse, index_t rows,
                            index_t classes, std::int32_t ignore_index, T label_smoothing, index_t count, T d_loss,
                            T* d_logits) {
    const T g = count ? d_loss / static_cast<T>(count) : T(0);
    const T off = label_smoothing / static_cast<T>(classes);
    parallel_for(threads, rows, classes * 4, [&](index_t r) {
        T* d = d_logits + r * classes;
        if (targets[r] == ignore_index) {
            std::fill(d, d + classes, T(0));
            return;
        }
        const T* x = logits + r * classes;
        for (index_t c = 0; c < classes; ++c) d[c] = g * (std::exp(x[c] - lse[r]) - off);
        d[targets[r]] -= g * (T(1) - label_smoothing);
    });
}

}  // namespace mmalign::cpu
