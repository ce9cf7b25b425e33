// mmalign/backend/cpu/patchify.hpp — images to rows of patches, the layout of ViT's patch embedding.
//
//   pixels [B, C, H, W] → patches [B, (H/P)·(W/P), C·P·P]: patch i·(W/P)+j, elements in (c, ky, kx)
//   order — which turns a stride-P P×P convolution without bias (weight [D, C, P, P]) into one
//   product with the weight viewed as [D, C·P·P].
// The shape check is every backend's (core/contracts/patchify.hpp), so all name the same problem
// the same way.
#pragma once

#include <algorithm>

#include "mmalign/backend/cpu/parallel.hpp"
#include "mmalign/core/contracts/patchify.hpp"
#include "mmalign/core/tensor.hpp"

namespace mmalign::cpu {

template <class T>
void patchify(int threads, ConstView<T> pixels, index_t P, TensorView<T> patches) {
    const PatchGrid g = check_patchify<T>(pixels, P, patches);
    const index_t C = g.channels, H = g.height, W = g.width, gh = g.rows, gw = g.cols, K = g.patch_len();
    const T* src = pixels.data();
    T* dst = patches.data();
    parallel_for(threads, g.batch * gh, gw * K, [&](index_t bi) {
        const index_t b = bi / gh, i = bi % gh;
        for (index_t j = 0; j < gw; ++j) {
            T* out = dst + ((b * gh + i) * gw + j) * K;
            for (index_t c = 0; c < C; ++c)
                for (index_t ky = 0; ky < P; ++ky) {
                    const T* row = src + ((b * C + c) * H + i * P + ky) * W + j * P;
                    std::copy(row, row + P, out + (c * P + ky) * P);
                }
        }
    });
}

}  // namespace mmalign::cpu
