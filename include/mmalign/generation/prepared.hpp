// mmalign/generation/prepared.hpp — one generate() call after transformers' preparation steps
// (GenerationMixin.generate, steps 1-6): the config checked, the special tokens resolved
// (_prepare_special_tokens), the prompt expanded to its rows (_expand_inputs_for_generation) and
// the lengths fixed (_prepare_generated_length). The search strategies read only this.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "mmalign/core/error.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/generation/config.hpp"

namespace mmalign::generation {

struct Prepared {
    index_t batch = 0;          ///< prompts
    index_t expand = 1;         ///< rows per prompt: max(num_beams, num_return_sequences)
    index_t rows = 0;           ///< batch × expand
    index_t prompt_length = 0;  ///< T, padding included
    index_t vocab = 0;
    std::vector<std::int32_t> ids;   ///< [rows, T], row r = prompt r / expand
    std::vector<std::int32_t> keep;  ///< [rows, T] 1 token / 0 padding, or empty (no padding)
    /// [rows]: the first position the repetition penalty counts — the first attention_mask 1 of the
    /// row's prompt (transformers' `(mask != 0).argmax(1)`; 0 without a mask).
    std::vector<index_t> penalty_from;
    LengthLimits limits;
    std::vector<std::int32_t> eos;     ///< eos_token_id
    std::optional<std::int32_t> pad;   ///< pad_token_id, or eos[0] when unset (none without eos either)

    std::span<const std::int32_t> prompt_row(index_t r) const {
        return std::span<const std::int32_t>(ids).subspan(static_cast<std::size_t>(r * prompt_length),
                                                          static_cast<std::size_t>(prompt_length));
    }
    bool is_eos(std::int32_t t) const { return std::find(eos.begin(), eos.end(), t) != eos.end(); }
};

/// Checks the call and prepares it; errors are ArgumentError/ShapeError naming what is wrong.
inline Prepared prepare(std::span<const std::int32_t> prompt_ids, std::span<const std::int32_t> prompt_keep, index_t batch,
                        const GenerationConfig& c, index_t vocab) {
    if (const std::string why = c.problem(); !why.empty()) throw ArgumentError("generate: " + why);
    if (batch <= 0) throw ArgumentError("generate: batch must be positive, found " + std::to_string(batch));
    if (vocab <= 0) throw ArgumentError("generate: the decoder's vocab_size must be positive, found " + std::to_string(vocab));
    const auto n = static_cast<index_t>(prompt_ids.size());
    if (n == 0 || n % batch != 0)
        throw ShapeError("generate: prompt_ids hold " + std::to_string(n) + " ids, not batch " + std::to_string(batch) +
                         " × a positive prompt length (generate needs a prompt: pass [bos] to start from nothing)");
    if (!prompt_keep.empty() && static_cast<index_t>(prompt_keep.size()) != n)
        throw ShapeError("generate: prompt_keep holds " + std::to_string(prompt_keep.size()) + " flags, expected " +
                         std::to_string(n) + " (one per prompt id) or none");
    Prepared p;
    p.batch = batch;
    p.prompt_length = n / batch;
    p.vocab = vocab;
    p.expand = std::max(c.num_beams, c.num_return_sequences);
    p.rows = batch * p.expand;
    p.limits = length_limits(c, p.prompt_length);
    p.eos = c.eos_token_id;
    p.pad = c.pad_token_id ? c.pad_token_id : (p.eos.empty() ? std::nullopt : std::optional<std::int32_t>(p.eos[0]));

    if (p.prompt_length >= p.limits.max_length)
        throw ArgumentError("generate: the prompt is " + std::to_string(p.prompt_length) + " tokens long, but max_length is " +
                            std::to_string(p.limits.max_length) + " (raise max_length or set max_new_tokens)");
    for (std::int32_t id : prompt_ids)
        if (id < 0 || id >= vocab)
            throw ArgumentError("generate: prompt id " + std::to_string(id) + " outside the vocabulary [0, " +
                                std::to_string(vocab) + ")");
    for (std::int32_t k : prompt_keep)
        if (k != 0 && k != 1) throw ArgumentError("generate: prompt_keep holds " + std::to_string(k) + ", expected 0 or 1");
    auto check_token = [&](const char* name, std::int32_t id) {
        if (id >= vocab)
            throw ArgumentError(std::string("generate: ") + name + " " + std::to_string(id) + " outside the vocabulary [0, " +
                                std::to_string(vocab) + ")");
    };
    for (std::int32_t e : p.eos) check_token("eos_token_id", e);
    if (p.pad) check_token("pad_token_id", *p.pad);
    // The decoding buffers together: beam search keeps about four rows × max_length id matrices and
    // two rows × (vocab + max_length) score arrays (4-byte elements). Past 2^28 elements (1 GiB)
    // the setting is a mistake (num_beams 100000 from a hostile generation_config.json), refused
    // before anything is allocated.
    constexpr index_t budget = index_t(1) << 28;
    const index_t per_row = 4 * p.limits.max_length + 2 * (vocab + p.limits.max_length);
    if (p.rows > budget / per_row)
        throw ArgumentError("generate: " + std::to_string(p.rows) + " rows (batch × num_beams × num_return_sequences) × max_length " +
                            std::to_string(p.limits.max_length) + " × vocabulary " + std::to_string(vocab) +
                            " needs more than 1 GiB of decoding buffers");

    const index_t T = p.prompt_length;
    p.ids.resize(static_cast<std::size_t>(p.rows * T));
    if (!prompt_keep.empty()) p.keep.resize(p.ids.size());
    p.penalty_from.assign(static_cast<std::size_t>(p.rows), 0);
    for (index_t r = 0; r < p.rows; ++r) {
        const auto src = static_cast<std::size_t>((r / p.expand) * T), dst = static_cast<std::size_t>(r * T);
        std::copy_n(prompt_ids.begin() + static_cast<std::ptrdiff_t>(src), T, p.ids.begin() + static_cast<std::ptrdiff_t>(dst));
        if (prompt_keep.empty()) continue;
        std::copy_n(prompt_keep.begin() + static_cast<std::ptrdiff_t>(src), T, p.keep.begin() + static_cast<std::ptrdiff_t>(dst));
        const auto first = std::find(prompt_keep.begin() + static_cast<std::ptrdiff_t>(src),
                                     prompt_keep.begin() + static_cast<std::ptrdiff_t>(src + T), 1);
        const index_t at = first - (prompt_keep.begin() + static_cast<std::ptrdiff_t>(src));
        p.penalty_from[static_cast<std::size_t>(r)] = at == T ? 0 : at;  // argmax of an all-zero row is 0
    }
    return p;
}

}  // namespace mmalign::generation
