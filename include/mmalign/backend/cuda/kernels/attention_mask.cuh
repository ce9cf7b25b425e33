// mmalign/backend/cuda/kernels/attention_mask.cuh — the attention mask as the kernels see it: one
// value instead of five arguments, and the per-query view every kernel derives from it, with the
// rule of backend/cpu/softmax.hpp (cpu::mask_row): query i of batch b sees key j when j is before
// the causal end (j ≤ i + causal_offset) and key_keep[b, j] is not 0; additive[b, i, j] is added
// to the scaled score of a visible key.
#pragma once

#include <cstdint>

#include "mmalign/backend/cuda/kernels/common.cuh"

namespace mmalign::cuda::kernels {

/// The mask for query i of batch b.
template <class T>
struct DeviceMaskRow {
    index_t end;  // keys at or past end are hidden (causal)
    const std::int32_t* keep;
    const T* add;
    __device__ bool visible(index_t j) const { return j < end && (keep == nullptr || keep[j] != 0); }
};

/// key_keep [B, Tk] and additive (batch b at b·add_stride) in device memory, or null.
template <class T>
struct DeviceMask {
    const std::int32_t* key_keep = nullptr;
    bool causal = false;
    index_t causal_offset = 0;
    const T* additive = nullptr;
    index_t add_stride = 0;

    __device__ DeviceMaskRow<T> row(index_t b, index_t i, index_t Tk) const {
        index_t end = Tk;
        if (causal) end = max(index_t(0), min(Tk, i + causal_offset + 1));
        return {end, key_keep ? key_keep + b * Tk : nullptr, additive ? additive + b * add_stride + i * Tk : nullptr};
    }
    /// Whether key j of batch b is kept by the padding mask (the causal rule aside).
    __device__ bool kept(index_t b, index_t j, index_t Tk) const { return key_keep == nullptr || key_keep[b * Tk + j] != 0; }
};

}  // namespace mmalign::cuda::kernels
