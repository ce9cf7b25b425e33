// mmalign/core/contracts/patchify.hpp — the shapes of the patchify op, checked once for every
// backend.
//
//   pixels [B, C, H, W] → patches [B, ⌊H/P⌋·⌊W/P⌋, C·P·P]
// ViT's patch embedding is a stride-P P×P convolution (transformers' modeling_clip.py,
// CLIPVisionEmbeddings.patch_embedding); laid out as patches it is one product. Like that unpadded
// convolution, the grid is ⌊H/P⌋ × ⌊W/P⌋ and the last H mod P rows and W mod P columns are never read
// (HF BLIP with image_size 30 and patch_size 7: num_patches = (30 // 7)²). The grid the check derives
// is what each backend's kernel iterates over.
#pragma once

#include <string>

#include "mmalign/core/error.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/core/tensor.hpp"

namespace mmalign {

/// The patch grid of one patchify call: rows × cols patches of patch_size² pixels per channel.
struct PatchGrid {
    index_t batch, channels, height, width, rows, cols, patch_size;
    index_t patch_len() const { return channels * patch_size * patch_size; }
};

/// Throws ShapeError unless pixels is [B, C, H, W] with H, W ≥ P > 0 and patches is
/// [B, ⌊H/P⌋·⌊W/P⌋, C·P·P]; returns the grid.
template <class T>
PatchGrid check_patchify(ConstView<T> pixels, index_t P, ConstView<T> patches) {
    if (pixels.rank() != 4 || P <= 0 || pixels.dim(2) < P || pixels.dim(3) < P)
        throw ShapeError("patchify: expected [B, C, H, W] with H and W at least " + std::to_string(P) + ", found " +
                         pixels.shape().str());
    const PatchGrid g{pixels.dim(0), pixels.dim(1), pixels.dim(2), pixels.dim(3), pixels.dim(2) / P, pixels.dim(3) / P, P};
    const Shape want{g.batch, g.rows * g.cols, g.patch_len()};
    if (!(patches.shape() == want))
        throw ShapeError("patchify output: expected " + want.str() + ", found " + patches.shape().str());
    return g;
}

}  // namespace mmalign
