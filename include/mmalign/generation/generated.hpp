// mmalign/generation/generated.hpp — what generate() returns: the id matrix transformers' generate
// returns for a decoder-only model (GenerateDecoderOnlyOutput.sequences /
// GenerateBeamDecoderOnlyOutput.sequences and .sequences_scores).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mmalign/core/error.hpp"
#include "mmalign/core/shape.hpp"

namespace mmalign::generation {

/// sequences [rows, length]: rows = batch × num_return_sequences, ordered prompt by prompt (a
/// prompt's sequences are adjacent; in beam search best first, as transformers sorts them); each row
/// is the prompt as given (padding included) followed by the generated tokens; a row that finished
/// early is filled to `length` (greedy and sampling: pad_token_id; beam search: transformers' fill,
/// `pad_token_id or eos_token_id[0]`, so eos when the pad id is 0).
struct Generated {
    index_t rows = 0;
    index_t length = 0;         ///< prompt included
    index_t prompt_length = 0;
    std::vector<std::int32_t> sequences;  ///< [rows, length]
    /// [rows], beam search only (empty otherwise): each returned hypothesis's sum of log-probabilities
    /// divided by (its generated length)^length_penalty, the order it is sorted by.
    std::vector<float> sequence_scores;

    /// Row r: prompt and generated tokens.
    std::span<const std::int32_t> row(index_t r) const {
        check(r);
        return std::span<const std::int32_t>(sequences).subspan(static_cast<std::size_t>(r * length),
                                                                 static_cast<std::size_t>(length));
    }
    /// Row r after the prompt (fill included).
    std::span<const std::int32_t> new_tokens(index_t r) const { return row(r).subspan(static_cast<std::size_t>(prompt_length)); }

private:
    void check(index_t r) const {
        if (r < 0 || r >= rows)
            throw ArgumentError("Generated: row " + std::to_string(r) + " outside [0, " + std::to_string(rows) + ")");
    }
};

}  // namespace mmalign::generation
