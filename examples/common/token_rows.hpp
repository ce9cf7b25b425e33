// examples/common/token_rows.hpp — a tokenizer's padded batch ([rows, length] ids and mask) as the
// (ids, attention_mask, batch) spans the BLIP and BLIP-2 models take.
#pragma once

#include <cstddef>

namespace mmalign::cli {

/// `Rows` is a model's token-span type ({ids, attention_mask, batch}); `batch` a tokenizer batch
/// with input_ids and attention_mask [rows, length] (io::WordPieceTokenizer::Batch). The spans view
/// `batch`, which must outlive them.
template <class Rows, class Batch>
Rows token_rows(const Batch& batch) {
    return {{batch.input_ids.data(), static_cast<std::size_t>(batch.input_ids.numel())},
            {batch.attention_mask.data(), static_cast<std::size_t>(batch.attention_mask.numel())},
            batch.input_ids.dim(0)};
}

}  // namespace mmalign::cli
