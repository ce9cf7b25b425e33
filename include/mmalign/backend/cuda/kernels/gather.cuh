// mmalign/backend/cuda/kernels/gather.cuh — embedding lookup and its scatter-add backward, and
// the patch layout of a ViT's patch embedding (backend/cpu/embedding.hpp, CpuBackend::patchify):
//   out[n, :] = table[ids[n], :]                d_table[ids[n], :] += d_out[n, :]  (atomicAdd:
//                                               repeated ids add in any order)
//   patches[b, i·gw + j, (c·P + ky)·P + kx] = pixels[b, c, i·P + ky, j·P + kx]
#pragma once

#include <cstdint>

#include "mmalign/backend/cuda/kernels/common.cuh"

namespace mmalign::cuda::kernels {

template <class T>
__global__ void embedding_forward_kernel(const std::int32_t* ids, index_t n, const T* table, index_t dim, T* out) {
    const index_t total = n * dim;
    for (index_t i = global_thread(); i < total; i += grid_threads()) {
        const index_t row = i / dim, c = i % dim;
        out[i] = table[static_cast<index_t>(ids[row]) * dim + c];
    }
}

template <class T>
__global__ void embedding_backward_kernel(const std::int32_t* ids, index_t n, const T* d_out, index_t dim, T* d_table) {
    const index_t total = n * dim;
    for (index_t i = global_thread(); i < total; i += grid_threads()) {
        const index_t row = i / dim, c = i % dim;
        atomicAdd(d_table + static_cast<index_t>(ids[row]) * dim + c, d_out[i]);  // float tables
    }
}

/// 16-bit tables: row `rows[u]` of d_table gets the float sum of d_out's rows `occ[first[u] ..
/// first[u + 1])` (each id's occurrences, in order), rounded once — no atomics, so the sum is the
/// same on every run and does not lose bits per occurrence as 16-bit additions would.
template <class T>
__global__ void embedding_backward_grouped_kernel(const std::int32_t* rows, const std::int32_t* first,
                                                  const std::int32_t* occ, index_t unique, const T* d_out, index_t dim,
                                                  T* d_table) {
    const index_t total = unique * dim;
    for (index_t i = global_thread(); i < total; i += grid_threads()) {
        const index_t u = i / dim, c = i % dim;
        float s = 0;
        for (std::int32_t j = first[u]; j < first[u + 1]; ++j) s += static_cast<float>(d_out[index_t(occ[j]) * dim + c]);
        T& t = d_table[index_t(rows[u]) * dim + c];
        t = static_cast<float>(t) + s;
    }
}

/// One thread per output element of patches [B, gh·gw, C·P·P].
template <class T>
__global__ void patchify_kernel(const T* pixels, index_t B, index_t C, index_t H, index_t W, index_t P, T* patches) {
    const index_t gh = H / P, gw = W / P, K = C * P * P;
    const index_t total = B * gh * gw * K;
    for (index_t o = global_thread(); o < total; o += grid_threads()) {
        const index_t k = o % K, patch = (o / K) % (gh * gw), b = o / (K * gh * gw);
        const index_t c = k / (P * P), ky = (k / P) % P, kx = k % P;
        const index_t i = patch / gw, j = patch % gw;
        patches[o] = pixels[((b * C + c) * H + i * P + ky) * W + j * P + kx];
    }
}

}  // namespace mmalign::cuda::kernels
