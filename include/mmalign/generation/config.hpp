// mmalign/generation/config.hpp — the settings of one generate() call: the fields of transformers'
// GenerationConfig that generate() implements, under HF's names, with the defaults transformers 5
// applies when neither the model's generation_config.json nor the caller sets a field
// (GenerationConfig._get_default_generation_params in generation/configuration_utils.py).
//
// Two defaults differ from what older transformers documented, because version 5 leaves a field
// unset rather than writing its default into the config:
//  * max_length unset means "20 new tokens" (prompt length + 20, capped at the model's
//    max_position_embeddings), while a max_length that is set counts the prompt
//    (_prepare_generated_length); max_new_tokens, when set, wins over both;
//  * pad_token_id unset becomes eos_token_id[0] (_prepare_special_tokens).
// io-free: generation/config_json.hpp reads and writes the JSON form.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mmalign/core/shape.hpp"

namespace mmalign::generation {

/// transformers' `early_stopping` (true, false or "never"): when beam search may stop.
enum class EarlyStopping {
    /// false (the default): stop once the best running beam, scored at the current length, cannot
    /// beat the worst of the num_beams finished hypotheses.
    heuristic,
    /// true: stop as soon as num_beams hypotheses are finished.
    finished,
    /// "never": as `heuristic`, but a positive length_penalty scores the running beam at max_length
    /// (its best possible length), so the search stops only when no better hypothesis can come.
    never,
};

/// What generate() does (generation/generate.hpp); field names are transformers'.
struct GenerationConfig {
    // Lengths. "Length" counts the prompt, "new tokens" do not.
    std::optional<index_t> max_length;      ///< unset: prompt + 20, capped at max_position_embeddings
    std::optional<index_t> max_new_tokens;  ///< wins over max_length
    index_t min_length = 0;                 ///< eos is suppressed while the length is below this
    std::optional<index_t> min_new_tokens;  ///< wins over min_length
    // Strategy: greedy (num_beams 1), sampling (do_sample), beam search (num_beams > 1), beam sampling.
    bool do_sample = false;
    index_t num_beams = 1;
    index_t num_return_sequences = 1;  ///< per prompt: <= num_beams in beam search; > 1 needs sampling otherwise
    EarlyStopping early_stopping = EarlyStopping::heuristic;
    double length_penalty = 1.0;  ///< a finished hypothesis scores sum(log p) / (generated length)^length_penalty
    // Logits processing, in transformers' order: repetition_penalty, no_repeat_ngram_size, min
    // length; then, when sampling, temperature, top_k, top_p.
    double repetition_penalty = 1.0;
    index_t no_repeat_ngram_size = 0;
    double temperature = 1.0;
    index_t top_k = 50;  ///< 0: no top-k filtering
    double top_p = 1.0;
    // Special tokens.
    std::optional<std::int32_t> bos_token_id;  ///< read and written for completeness; generate() needs a prompt
    std::vector<std::int32_t> eos_token_id;    ///< any of them ends a sequence; empty: only length ends it
    std::optional<std::int32_t> pad_token_id;  ///< fills finished rows; unset: eos_token_id[0]

    // Not GenerationConfig fields.
    std::uint64_t seed = 0;  ///< sampling: the seed of the std::mt19937_64 every draw comes from
    /// The model's max_position_embeddings (config.json); 0 when unknown. Like transformers, caps only
    /// the default max_length.
    index_t max_position_embeddings = 0;

    /// The generation_config.json fields, for generation/config_json.hpp: f(key, size, minimum) for
    /// sizes, f(key, optional size, minimum), f(key, value) for the rest.
    template <class F>
    void hf_fields(F&& f) {
        f("max_length", max_length, 1);
        f("max_new_tokens", max_new_tokens, 1);
        f("min_length", min_length, 0);
        f("min_new_tokens", min_new_tokens, 0);
        f("do_sample", do_sample);
        f("num_beams", num_beams, 1);
        f("num_return_sequences", num_return_sequences, 1);
        f("early_stopping", early_stopping);
        f("length_penalty", length_penalty);
        f("repetition_penalty", repetition_penalty);
        f("no_repeat_ngram_size", no_repeat_ngram_size, 0);
        f("temperature", temperature);
        f("top_k", top_k, 0);
        f("top_p", top_p);
        f("bos_token_id", bos_token_id);
        f("eos_token_id", eos_token_id);
        f("pad_token_id", pad_token_id);
    }

    /// What makes this config unusable, in transformers' terms (the errors of GenerationConfig.validate
    /// and of the logits processors' constructors); empty when generate() can run it.
    std::string problem() const {
        auto num = [](double v) { return std::to_string(v); };
        if (max_length && *max_length < 1) return "max_length must be positive, found " + std::to_string(*max_length);
        if (max_new_tokens && *max_new_tokens < 1)
            return "max_new_tokens must be greater than 0, found " + std::to_string(*max_new_tokens);
        if (min_length < 0) return "min_length must be >= 0, found " + std::to_string(min_length);
        if (min_new_tokens && *min_new_tokens < 0) return "min_new_tokens must be >= 0, found " + std::to_string(*min_new_tokens);
        if (num_beams < 1) return "num_beams must be positive, found " + std::to_string(num_beams);
        if (num_return_sequences < 1)
            return "num_return_sequences must be positive, found " + std::to_string(num_return_sequences);
        if (num_beams == 1 && !do_sample && num_return_sequences > 1)
            return "greedy search returns one sequence per prompt, found num_return_sequences " +
                   std::to_string(num_return_sequences) + " (use do_sample or num_beams > 1)";
        if (num_beams > 1 && num_return_sequences > num_beams)
            return "num_return_sequences (" + std::to_string(num_return_sequences) + ") must be <= num_beams (" +
                   std::to_string(num_beams) + ")";
        if (!std::isfinite(length_penalty)) return "length_penalty must be finite, found " + num(length_penalty);
        if (!(repetition_penalty > 0) || !std::isfinite(repetition_penalty))
            return "repetition_penalty must be a positive number, found " + num(repetition_penalty);
        if (no_repeat_ngram_size < 0) return "no_repeat_ngram_size must be >= 0, found " + std::to_string(no_repeat_ngram_size);
        if (do_sample) {
            if (!(temperature > 0) || !std::isfinite(temperature))
                return "temperature must be a positive number when sampling, found " + num(temperature) +
                       " (greedy search is do_sample = false)";
            if (top_k < 0) return "top_k must be >= 0, found " + std::to_string(top_k);
            if (!(top_p >= 0 && top_p <= 1)) return "top_p must lie in [0, 1], found " + num(top_p);
        }
        auto bad_id = [](const char* name, std::int32_t id) {
            return std::string(name) + " must be >= 0, found " + std::to_string(id);
        };
        if (bos_token_id && *bos_token_id < 0) return bad_id("bos_token_id", *bos_token_id);
        if (pad_token_id && *pad_token_id < 0) return bad_id("pad_token_id", *pad_token_id);
        for (std::int32_t e : eos_token_id)
            if (e < 0) return bad_id("eos_token_id", e);
        if (max_position_embeddings < 0)
            return "max_position_embeddings must be >= 0, found " + std::to_string(max_position_embeddings);
        return "";
    }
};

/// The total lengths one call runs within, for a prompt of `prompt_length` tokens.
struct LengthLimits {
    index_t max_length = 0;  ///< sequences end at this length, prompt included
    index_t min_length = 0;  ///< eos is suppressed while a sequence is shorter than this
};

/// transformers' _prepare_generated_length: max_new_tokens over max_length over the default of
/// 20 new tokens (capped at max_position_embeddings); min_new_tokens over min_length.
inline LengthLimits length_limits(const GenerationConfig& c, index_t prompt_length) {
    LengthLimits l;
    if (c.max_new_tokens) {
        l.max_length = prompt_length + *c.max_new_tokens;
    } else if (c.max_length) {
        l.max_length = *c.max_length;
    } else {
        l.max_length = prompt_length + 20;
        if (c.max_position_embeddings > 0 && c.max_position_embeddings < l.max_length) l.max_length = c.max_position_embeddings;
    }
    l.min_length = c.min_new_tokens ? prompt_length + *c.min_new_tokens : c.min_length;
    return l;
}

}  // namespace mmalign::generation
