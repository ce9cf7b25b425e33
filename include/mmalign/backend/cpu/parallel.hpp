// mmalign/backend/cpu/parallel.hpp — the one way CPU kernels spread work over threads.
#pragma once

#include "mmalign/core/shape.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace mmalign::cpu {

/// Below this much work (items × cost per item, roughly flops) a loop runs on the calling thread:
/// starting an OpenMP team costs a few microseconds, more than small loops take.
inline constexpr index_t parallel_grain = 1 << 15;

/// Calls f(i) for i in [0, n), split statically over `threads` OpenMP threads when the work is
/// worth it. Runs serially inside an enclosing parallel region (no nested teams).
template <class F>
void parallel_for(int threads, index_t n, index_t cost_per_item, F&& f) {
#if defined(_OPENMP)
    if (threads > 1 && n > 1 && n * cost_per_item >= parallel_grain && !omp_in_parallel()) {
#pragma omp parallel for num_threads(threads) schedule(static)
        for (index_t i = 0; i < n; ++i) f(i);
        return;
    }
#else
    (void)threads;
    (void)cost_per_item;
#endif
    for (index_t i = 0; i < n; ++i) f(i);
}

inline int hardware_threads() {
#if defined(_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
}

}  // namespace mmalign::cpu
