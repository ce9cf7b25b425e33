// mmalign/bridges/qformer_masks.hpp — the self-attention masks of the Q-Former's first training stage
// (Li et al. 2023, "BLIP-2", §3.2 and Fig. 2; LAVIS's blip2_qformer.py builds them the same way).
//
// The sequence is [Q learned queries | T text tokens] (N = Q + T columns and rows); `text_keep`
// [B, T] is the tokenizer's attention mask (1 token, 0 padding; empty: every token kept). Query
// columns are never padding.
//
//   unimodal           (image-text contrastive learning): queries and text never see each other.
//                      This is not one mask but two separate passes over the same weights — one
//                      with the queries alone (QFormer::Input::queries, no ids), one with the text
//                      alone (queries = false: HF's query_length 0) — each bidirectional over its
//                      own kept tokens, i.e. QFormerAttention::bidirectional with Q = 0 or T = 0.
//   bidirectional      (image-text matching; HF Blip2ForImageTextRetrieval's ITM head): every row
//                      sees every kept column. Expressed as key_keep alone.
//   multimodal_causal  (image-grounded text generation): query rows see the query columns only;
//                      text row i sees every query column and the kept text columns j ≤ i. LAVIS
//                      forms it as the causal mask with the queries as a prefix times the padding
//                      mask; here as a pattern [N, N] of 0 / −inf shared by every batch row
//                      (additive, batch stride 0) plus key_keep for the padding — what
//                      core/ops.hpp's AttentionMask takes.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "mmalign/core/error.hpp"
#include "mmalign/core/ops.hpp"

namespace mmalign {

/// Which self-attention pattern a Q-Former pass uses (see the header comment for the unimodal case).
enum class QFormerAttention { bidirectional, multimodal_causal };

/// A Q-Former self-attention mask over [Q queries | T text] for a batch of B rows, in host memory.
template <class T>
struct QFormerMask {
    index_t batch = 0, queries = 0, text = 0;
    std::vector<std::int32_t> key_keep{};  // [B, Q+T] 1 visible / 0 padding, or empty: every column kept
    std::vector<T> pattern{};              // [Q+T, Q+T] 0 / −inf for every batch row, or empty: none

    index_t length() const { return queries + text; }
    /// Whether row i of batch row b attends to column j (what the mask means, for checks and docs).
    bool sees(index_t b, index_t i, index_t j) const {
        const index_t N = length();
        if (!key_keep.empty() && key_keep[static_cast<std::size_t>(b * N + j)] == 0) return false;
        return pattern.empty() || pattern[static_cast<std::size_t>(i * N + j)] == T(0);
    }
    /// The AttentionMask over these arrays, with the pattern at `pattern_data` (this->pattern copied
    /// into the backend's memory; null when the pattern is empty). Valid while both live.
    AttentionMask<T> view(const T* pattern_data) const {
        return {.key_keep = key_keep.empty() ? nullptr : key_keep.data(),
                .additive = pattern.empty() ? nullptr : pattern_data,
                .additive_batch_stride = 0};
    }
};

namespace detail {
/// key_keep [B, Q+T]: the queries' columns kept, then text_keep's row; empty when nothing is padding.
template <class T>
QFormerMask<T> qformer_key_keep(index_t batch, index_t queries, index_t text, std::span<const std::int32_t> text_keep) {
    if (batch <= 0 || queries < 0 || text < 0)
        throw ArgumentError("QFormer mask: batch " + std::to_string(batch) + ", queries " + std::to_string(queries) +
                            " and text length " + std::to_string(text) + " must be positive, non-negative, non-negative");
    if (!text_keep.empty() && static_cast<index_t>(text_keep.size()) != batch * text)
        throw ShapeError("QFormer mask: attention_mask has " + std::to_string(text_keep.size()) + " entries, expected " +
                         std::to_string(batch * text) + " (batch " + std::to_string(batch) + " x text length " +
                         std::to_string(text) + ")");
    QFormerMask<T> m{.batch = batch, .queries = queries, .text = text};
    bool padded = false;
    for (const std::int32_t k : text_keep) padded = padded || k == 0;
    if (!padded) return m;
    const index_t N = queries + text;
    m.key_keep.assign(static_cast<std::size_t>(batch * N), 1);
    for (index_t b = 0; b < batch; ++b)
        for (index_t t = 0; t < text; ++t)
            m.key_keep[static_cast<std::size_t>(b * N + queries + t)] = text_keep[static_cast<std::size_t>(b * text + t)] != 0;
    return m;
}
}  // namespace detail

/// Every row sees every kept column (ITM; with Q = 0 or T = 0, the unimodal passes).
template <class T>
QFormerMask<T> qformer_bidirectional_mask(index_t batch, index_t queries, index_t text,
                                          std::span<const std::int32_t> text_keep = {}) {
    return detail::qformer_key_keep<T>(batch, queries, text, text_keep);
}

/// Query rows see only query columns; text row i sees every query column and the kept text
/// columns j ≤ i (image-grounded text generation).
template <class T>
QFormerMask<T> qformer_multimodal_causal_mask(index_t batch, index_t queries, index_t text,
                                              std::span<const std::int32_t> text_keep = {}) {
    QFormerMask<T> m = detail::qformer_key_keep<T>(batch, queries, text, text_keep);
    const index_t N = queries + text;
    m.pattern.assign(static_cast<std::size_t>(N * N), -std::numeric_limits<T>::infinity());
    for (index_t i = 0; i < N; ++i) {
        const index_t visible = i < queries ? queries : i + 1;  // columns [0, visible)
        for (index_t j = 0; j < visible; ++j) m.pattern[static_cast<std::size_t>(i * N + j)] = T(0);
    }
    return m;
}

/// The mask of `kind`.
template <class T>
QFormerMask<T> qformer_mask(QFormerAttention kind, index_t batch, index_t queries, index_t text,
                            std::span<const std::int32_t> text_keep = {}) {
    return kind == QFormerAttention::multimodal_causal ? qformer_multimodal_causal_mask<T>(batch, queries, text, text_keep)
                                                       : qformer_bidirectional_mask<T>(batch, queries, text, text_keep);
}

}  // namespace mmalign
