// mmalign/core/contracts/cross_entropy.hpp — what every backend's cross_entropy_forward returns,
// and the target check every backend runs before it reads a logit.
//
// The op follows torch.nn.functional.cross_entropy(reduction="mean"): the loss is the mean over
// the rows whose target is not ignore_index. The count travels with the loss because the backward
// divides by it, and because a caller averaging over micro-batches weighs each by its count.
// Targets are host memory on every backend (core/backend.hpp), so the check is plain host code
// and gives the same message whichever backend runs the op.
#pragma once

#include <cstdint>
#include <string>

#include "mmalign/core/error.hpp"
#include "mmalign/core/shape.hpp"

namespace mmalign {

/// T is the backend's Compute type (float for 16-bit storage).
template <class T>
struct CrossEntropyResult {
    T loss = 0;         // mean over counted rows; 0 when every row is ignored (torch gives NaN)
    index_t count = 0;  // rows whose target is not ignore_index
};

/// Throws ArgumentError naming the first row whose target is neither ignore_index nor in
/// [0, classes): an out-of-range target would read outside its row of logits.
inline void check_cross_entropy_targets(const std::int32_t* targets, index_t rows, index_t classes,
                                        std::int32_t ignore_index) {
    for (index_t r = 0; r < rows; ++r)
        if (targets[r] != ignore_index && (targets[r] < 0 || targets[r] >= classes))
            throw ArgumentError("cross_entropy: target " + std::to_string(targets[r]) + " at row " +
                                std::to_string(r) + " is outside [0, " + std::to_string(classes) +
                                ") and is not ignore_index " + std::to_string(ignore_index));
}

}  // namespace mmalign
