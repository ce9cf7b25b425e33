// mmalign/backend/cuda/kernels/attention_wmma.cuh — fused attention forward on tensor cores, for
// 16-bit storage (bfloat16, float16) and head widths 32, 64 and 128: FlashAttention's tiling
// (Dao et al. 2022) with the per-row bookkeeping of FlashAttention-2 (Dao 2023).
//
// One block of 4 warps takes 64 queries of one (batch, head); each warp owns 16 of them. For each
// tile of 64 keys, staged in shared memory with its values:
//   S = Q·Kᵀ          (WMMA 16×16×16, fp32 accumulation) → shared, per warp 16 × 64
//   online softmax    two lanes per query row: scale, masks, running max m and sum ℓ (float),
//                     P = exp(S − m) rounded to the storage type, the correction exp(m_old − m)
//   O = O·corr + P·V  (WMMA into shared scratch, then the float accumulator O in shared memory,
//                     since WMMA's accumulator layout cannot be rescaled row by row in registers)
// and at the end o = O / ℓ (rounded once) and the statistics (m, log ℓ), as the warp kernels of
// attention.cuh write them, so their backward applies unchanged. Masks and empty rows follow
// backend/cpu/attention.hpp: hidden keys contribute nothing; a query that sees no key gets zeros
// and (−inf, 0). Key tiles past the last visible causal key of the block are skipped. Only the
// sum ℓ uses the unrounded exponentials (as FlashAttention-2 does); P·V uses them rounded.
// Needs sm_80 or newer (bfloat16 WMMA); the backend routes other widths to attention.cuh.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <cstdint>

#include "mmalign/backend/cuda/kernels/attention.cuh"

namespace mmalign::cuda::kernels {

inline constexpr int wmma_queries = 64;  // per block: 4 warps × 16 rows
inline constexpr int wmma_keys = 64;     // per shared-memory tile
inline constexpr int wmma_warps = 4;

/// The CUDA type WMMA takes for a storage type.
template <class T>
struct wmma_type;
template <>
struct wmma_type<bfloat16> {
    using type = __nv_bfloat16;
};
template <>
struct wmma_type<float16> {
    using type = __half;
};

/// Dynamic shared memory of one block, in bytes: Q, K, V tiles (storage type), then per warp S
/// (float 16 × 64), P (storage 16 × 64), O and the P·V scratch (float 16 × DH each).
template <int DH>
constexpr std::size_t wmma_attention_smem() {
    return std::size_t(wmma_queries + 2 * wmma_keys) * DH * 2 +
           std::size_t(wmma_warps) * (16 * wmma_keys * 4 + 16 * wmma_keys * 2 + 2 * 16 * DH * 4);
}

template <class T, int DH>
__global__ void __launch_bounds__(wmma_warps * 32)
    attention_forward_wmma_kernel(const T* q, const T* k, const T* v, index_t kv_stride, index_t B, index_t H,
                                  index_t Tq, index_t Tk, float scale, DeviceMask<T> mask, T* o, float* stats) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    namespace w = nvcuda::wmma;
    using W = typename wmma_type<T>::type;
    static_assert(DH % 16 == 0 && DH <= 128, "WMMA attention: head width a multiple of 16, at most 128");
    extern __shared__ __align__(128) unsigned char smem[];
    T* Qs = reinterpret_cast<T*>(smem);
    T* Ks = Qs + wmma_queries * DH;
    T* Vs = Ks + wmma_keys * DH;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float* Ss = reinterpret_cast<float*>(Vs + wmma_keys * DH) + warp * (16 * wmma_keys);
    T* Ps = reinterpret_cast<T*>(reinterpret_cast<float*>(Vs + wmma_keys * DH) + wmma_warps * 16 * wmma_keys) +
            warp * (16 * wmma_keys);
    float* Os = reinterpret_cast<float*>(reinterpret_cast<T*>(reinterpret_cast<float*>(Vs + wmma_keys * DH) +
                                                              wmma_warps * 16 * wmma_keys) +
                                         wmma_warps * 16 * wmma_keys) +
                warp * (2 * 16 * DH);
    float* Ts = Os + 16 * DH;

    const index_t D = H * DH;
    const index_t bh = blockIdx.y, b = bh / H, h = bh % H;
    const index_t q0 = static_cast<index_t>(blockIdx.x) * wmma_queries;
    // This lane's row of the warp's 16 and its half of each row's columns.
    const int r = lane / 2, half = lane % 2;
    const index_t i = q0 + warp * 16 + r;  // query index (may be ≥ Tq: a padding row)
    const bool row_valid = i < Tq;
    // A padding row sees no key.
    const DeviceMaskRow<T> mr = row_valid ? mask.row(b, i, Tk) : DeviceMaskRow<T>{0, nullptr, nullptr};

    // Q tile (rows past Tq are zero) and a zeroed O.
    for (int e = threadIdx.x; e < wmma_queries * DH; e += blockDim.x) {
        const index_t qi = q0 + e / DH;
        Qs[e] = qi < Tq ? q[(b * Tq + qi) * D + h * DH + e % DH] : T(0.0f);
    }
    for (int e = lane; e < 16 * DH; e += 32) Os[e] = 0.0f;
    __syncwarp();  // the epilogue reads other lanes' zeros even when no key tile runs

    // Keys past the block's last visible one never matter.
    index_t block_end = Tk;
    if (mask.causal) block_end = mask.row(b, min(Tq, q0 + wmma_queries) - 1, Tk).end;
    float m = -INFINITY, l = 0.0f;
    const T* kb = k + b * kv_stride + h * DH;
    const T* vb = v + b * kv_stride + h * DH;
    for (index_t k0 = 0; k0 < block_end; k0 += wmma_keys) {
        __syncthreads();  // every warp is done with the previous K, V tiles (and Q is written)
        for (int e = threadIdx.x; e < wmma_keys * DH; e += blockDim.x) {
            const index_t j = k0 + e / DH;
            const bool in = j < Tk;  // rows past Tk are zero: 0 · V must not meet garbage
            Ks[e] = in ? kb[j * D + e % DH] : T(0.0f);
            Vs[e] = in ? vb[j * D + e % DH] : T(0.0f);
        }
        __syncthreads();

        // S = Q_w · Kᵀ: 16 × 64 per warp, four 16 × 16 fragments.
        {
            w::fragment<w::accumulator, 16, 16, 16, float> acc[wmma_keys / 16];
#pragma unroll
            for (int n = 0; n < wmma_keys / 16; ++n) w::fill_fragment(acc[n], 0.0f);
#pragma unroll
            for (int kk = 0; kk < DH / 16; ++kk) {
                w::fragment<w::matrix_a, 16, 16, 16, W, w::row_major> a;
                w::load_matrix_sync(a, reinterpret_cast<const W*>(Qs + warp * 16 * DH + kk * 16), DH);
#pragma unroll
                for (int n = 0; n < wmma_keys / 16; ++n) {
                    // Kᵀ's columns are K's rows: a column-major 16 × 16 block with leading dimension DH.
                    w::fragment<w::matrix_b, 16, 16, 16, W, w::col_major> bk;
                    w::load_matrix_sync(bk, reinterpret_cast<const W*>(Ks + n * 16 * DH + kk * 16), DH);
                    w::mma_sync(acc[n], a, bk, acc[n]);
                }
            }
#pragma unroll
            for (int n = 0; n < wmma_keys / 16; ++n)
                w::store_matrix_sync(Ss + n * 16, acc[n], wmma_keys, w::mem_row_major);
        }
        __syncwarp();

        // Online softmax over this tile: lanes 2r and 2r+1 share row r, 32 columns each.
        float tile_max = -INFINITY;
        float* srow = Ss + r * wmma_keys;
        for (int c = half * 32; c < half * 32 + 32; ++c) {
            const index_t j = k0 + c;
            float s = -INFINITY;
            if (mr.visible(j)) {
                s = srow[c] * scale;
                if (mr.add) s += static_cast<float>(mr.add[j]);
            }
            srow[c] = s;
            tile_max = fmaxf(tile_max, s);
        }
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        const float m_new = fmaxf(m, tile_max);
        const float corr = m == -INFINITY ? 0.0f : expf(m - m_new);  // m_new ≥ m, so finite when m is
        float psum = 0.0f;
        T* prow = Ps + r * wmma_keys;
        for (int c = half * 32; c < half * 32 + 32; ++c) {
            const float s = srow[c];
            const float p = (s == -INFINITY || m_new == -INFINITY) ? 0.0f : expf(s - m_new);
            psum += p;
            prow[c] = p;
        }
        psum += __shfl_xor_sync(0xffffffffu, psum, 1);
        l = l * corr + psum;
        m = m_new;
        __syncwarp();

        // Ts = P · V (16 × DH), then O = O · corr + Ts row by row.
        {
#pragma unroll
            for (int n = 0; n < DH / 16; ++n) {
                w::fragment<w::accumulator, 16, 16, 16, float> acc;
                w::fill_fragment(acc, 0.0f);
#pragma unroll
                for (int kk = 0; kk < wmma_keys / 16; ++kk) {
                    w::fragment<w::matrix_a, 16, 16, 16, W, w::row_major> a;
                    w::fragment<w::matrix_b, 16, 16, 16, W, w::row_major> bv;
                    w::load_matrix_sync(a, reinterpret_cast<const W*>(Ps + kk * 16), wmma_keys);
                    w::load_matrix_sync(bv, reinterpret_cast<const W*>(Vs + kk * 16 * DH + n * 16), DH);
                    w::mma_sync(acc, a, bv, acc);
                }
                w::store_matrix_sync(Ts + n * 16, acc, DH, w::mem_row_major);
            }
        }
        __syncwarp();
        for (int c = half * (DH / 2); c < (half + 1) * (DH / 2); ++c) Os[r * DH + c] = Os[r * DH + c] * corr + Ts[r * DH + c];
        __syncwarp();
    }

    if (row_valid) {
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        T* oi = o + (b * Tq + i) * D + h * DH;
        for (int c = half * (DH / 2); c < (half + 1) * (DH / 2); ++c) oi[c] = Os[r * DH + c] * inv;
        if (stats && half == 0) {
            float* st = stats + 2 * ((b * H + h) * Tq + i);
            st[0] = l > 0.0f ? m : -INFINITY;
            st[1] = l > 0.0f ? logf(l) : 0.0f;
        }
    }
#else
    __trap();  // the backend launches this kernel only on compute capability 8.0 or newer
#endif
}

}  // namespace mmalign::cuda::kernels
