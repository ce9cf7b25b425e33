// mmalign/backend/cpu/embedding.hpp — table lookup (gather) and its backward (scatter-add).
//
//   forward:  out[n, :] = table[ids[n], :]
//   backward: d_table[ids[n], :] += d_out[n, :]      (repeated ids accumulate)
// The id check is every backend's (core/contracts/embedding.hpp).
#pragma once

#include <cstdint>
#include <cstring>

#include "mmalign/backend/cpu/parallel.hpp"
#include "mmalign/core/contracts/embedding.hpp"

namespace mmalign::cpu {

template <class T>
void embedding_forward(int threads, const std::int32_t* ids, index_t n, const T* table, index_t rows, index_t dim,
                       T* out) {
    check_table_ids(ids, n, rows, "embedding");
    parallel_for(threads, n, dim, [&](index_t i) {
        std::memcpy(out + i * dim, table + static_cast<index_t>(ids[i]) * dim, static_cast<std::size_t>(dim) * sizeof(T));
    });
}

/// Ids were validated by the forward; split over columns so threads never write the same row slot.
template <class T>
void embedding_backward(int threads, const std::int32_t* ids, index_t n, const T* d_out, index_t dim, T* d_table) {
    const int team = n * dim >= parallel_grain ? threads : 1;
    parallel_for(team, team, parallel_grain, [&](index_t t) {
        const index_t c0 = dim * t / team, c1 = dim * (t + 1) / team;
        for (index_t i = 0; i < n; ++i) {
            T* dst = d_table + static_cast<index_t>(ids[i]) * dim;
            const T* src = d_out + i * dim;
            for (index_t c = c0; c < c1; ++c) dst[c] += src[c];
        }
    });
}

}  // namespace mmalign::cpu
