// mmalign/generation/generate.hpp — text generation over any Decoder (generation/decoder.hpp), as
// transformers' GenerationMixin.generate does it for a decoder-only model.
//
//   Generated g = generation::generate(decoder, prompt_ids, prompt_keep, batch, config);
//
// prompt_ids [batch, T] row-major, every row padded to one length T (left padding as decoder-only
// models expect, or right padding as BLIP's processor gives it: prompt_keep marks it, 1 token /
// 0 padding, like an attention_mask; empty when nothing is padded). The result's sequences
// [batch × num_return_sequences, length] equal what transformers' generate returns for the same
// logits (tests/generation/test_generate.cpp checks ids against it on a fixture matrix): greedy search or
// sampling (generation/sample_search.hpp) when num_beams is 1, beam search or beam sampling
// (generation/beam_search.hpp) otherwise; the strategy and every limit come from `config`
// (generation/config.hpp, HF's names and defaults).
#pragma once

#include <cstdint>
#include <span>

#include "mmalign/generation/beam_search.hpp"
#include "mmalign/generation/config.hpp"
#include "mmalign/generation/decoder.hpp"
#include "mmalign/generation/generated.hpp"
#include "mmalign/generation/prepared.hpp"
#include "mmalign/generation/sample_search.hpp"

namespace mmalign::generation {

/// Generates continuations of `batch` prompts with `decoder`. Throws ArgumentError/ShapeError for a
/// config transformers would refuse (generation/config.hpp, GenerationConfig::problem), a prompt
/// not shaped [batch, T], ids outside the decoder's vocabulary, or a prompt already max_length long.
template <class D>
Generated generate(D& decoder, std::span<const std::int32_t> prompt_ids, std::span<const std::int32_t> prompt_keep,
                   index_t batch, const GenerationConfig& config) {
    static_assert(Decoder<D>,
                  "generate() drives a generation::Decoder: vocab_size(), start(rows, expand, max_positions), "
                  "step(ids, keep, logits) and reorder(rows) (generation/decoder.hpp).");
    const Prepared p = prepare(prompt_ids, prompt_keep, batch, config, static_cast<index_t>(decoder.vocab_size()));
    return config.num_beams > 1 ? beam_search(decoder, p, config) : sample_search(decoder, p, config);
}

}  // namespace mmalign::generation
