// mmalign/generation/decoder.hpp — what generate() drives: a decoder with a KV cache that hands
// back host-side logits.
//
// generate() (generation/generate.hpp) owns the token bookkeeping of transformers'
// GenerationMixin; a decoder only runs the network. One generate() call is
//   start(R, E, P)             R rows = batch × E; row r decodes against context row r / E, E =
//                              max(num_beams, num_return_sequences), the way transformers'
//                              _expand_inputs_for_generation repeat_interleaves encoder/image states;
//                              P = the most positions any row will be fed (max_length − 1: the last
//                              generated token is never fed back);
//   step(prompt, keep, logits) the whole prompt of every row: ids [R·T], keep [R·T] (1 token, 0
//                              padding — left padding as decoder-only models expect, or right padding
//                              as BLIP's processor gives it; empty means no padding);
//   step(next, {}, logits)     then one token per row per step (ids [R], keep empty), so a step costs
//                              O(length) with a cache rather than O(length²);
//   reorder(rows)              between steps in beam search: row r continues old row rows[r]
//                              (rows may repeat or drop rows; transformers' reorder_cache);
// and every step writes, for each row, the logits at its last new position into logits [R·V].
// BLIP's BertLmDecoder session and BLIP-2's OPT implement it; tests/generation has a toy one.
#pragma once

#include <concepts>
#include <cstdint>
#include <span>

#include "mmalign/core/shape.hpp"

namespace mmalign::generation {

/// What generate() drives: a decoder with a KV cache, host-side logits.
template <class D>
concept Decoder = requires(D& d, const D& cd, index_t n, std::span<const std::int32_t> ids,
                           std::span<const std::int32_t> keep, std::span<const std::int32_t> rows,
                           std::span<float> logits) {
    { cd.vocab_size() } -> std::convertible_to<index_t>;
    d.start(n /*rows R*/, n /*expand E: row r uses context row r / E*/, n /*max_positions*/);
    d.step(ids /*[R·Tn], the next Tn tokens of every row*/, keep /*[R·Tn] 1 token / 0 padding, or empty*/,
           logits /*out [R·V]: each row's logits at its last new position*/);
    d.reorder(rows /*[R]: row r becomes old row rows[r] (beam search)*/);
};

}  // namespace mmalign::generation
