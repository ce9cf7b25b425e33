// mmalign/decoders/session_support.hpp — what the decoders' generation sessions share
// (BertLmDecoder::Session, OptDecoder::Session; the generation::Decoder contract of
// generation/decoder.hpp).
//
// Position ids of a step, numbered as transformers' generate numbers them for a decoder whose
// forward takes position_ids (GenerationMixin._prepare_position_ids_for_generation in
// generation/utils.py): the prompt's are cumsum(attention_mask) − 1 with padding at 0; each later
// token's is the row's previous last position + 1 (_update_model_kwargs_for_generation): a
// left-padded row counts from its first token, and after a right-padded prompt the continuation
// restarts at 1 (the padding's position 0, plus 1), as in transformers.
// Logits come back to generate() as host floats, whatever the backend's storage type.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "mmalign/core/backend.hpp"

namespace mmalign::decoding {

/// Fills positions [rows·Tn] for the next Tn tokens of every row. last [rows] holds each row's last
/// position id (−1 before the prompt) and is advanced; keep [rows·Tn] (1 token, 0 padding; empty:
/// all tokens) matters only for the prompt step.
inline void generation_positions(std::span<const std::int32_t> keep, index_t rows, index_t Tn, bool prompt,
                                 std::vector<std::int32_t>& last, std::span<std::int32_t> positions) {
    if (static_cast<index_t>(last.size()) != rows || static_cast<index_t>(positions.size()) != rows * Tn)
        throw ShapeError("generation_positions: expected " + std::to_string(rows) + " rows of " + std::to_string(Tn) +
                         " positions");
    for (index_t r = 0; r < rows; ++r) {
        std::int32_t& row_last = last[static_cast<std::size_t>(r)];
        for (index_t t = 0; t < Tn; ++t) {
            const auto i = static_cast<std::size_t>(r * Tn + t);
            const bool token = keep.empty() || keep[i] != 0;
            if (prompt) {  // cumsum(mask) − 1, padding at 0
                if (token) ++row_last;
                positions[i] = token ? row_last : 0;
            } else {
                positions[i] = ++row_last;
            }
        }
        if (prompt) row_last = positions[static_cast<std::size_t>(r * Tn + Tn - 1)];
    }
}

/// Copies logits [R, V] from the backend's memory into host floats (converting 16-bit or double
/// storage); out holds R·V values.
template <Backend B>
void logits_to_host(B& be, ConstView<typename B::Scalar> logits, std::span<float> out) {
    using T = typename B::Scalar;
    const Shape s{static_cast<index_t>(out.size())};
    if (logits.numel() != s.numel())
        throw ShapeError("logits_to_host: " + std::to_string(out.size()) + " host values for logits " + logits.shape().str());
    if constexpr (std::is_same_v<T, float>) {
        be.to_host(logits.reshape(s), TensorView<float>(out.data(), s));
    } else {
        Tensor<T> host(s);
        be.to_host(logits.reshape(s), host.view());
        for (index_t i = 0; i < s.numel(); ++i) out[static_cast<std::size_t>(i)] = static_cast<float>(host.data()[i]);
    }
}

}  // namespace mmalign::decoding
