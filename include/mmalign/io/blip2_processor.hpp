// mmalign/io/blip2_processor.hpp — transformers' Blip2Processor (processing_blip_2.py): OPT's
// GPT-2 tokenizer (io/gpt2_tokenizer.hpp) and BLIP's image processor (io/blip_image_processor.hpp)
// of one BLIP-2 folder, and the text layout Blip2ForConditionalGeneration expects.
//
// With images, each prompt row is
//
//     [<image> × num_query_tokens] [padding…] </s> prompt ids        (left padding)
//     [<image> × num_query_tokens] </s> prompt ids [padding…]        (right padding)
//
// because Blip2Processor tokenizes (and pads) the prompts first and then prepends the image tokens
// to every row, outside the padding and before the BOS ("BLIP expects image tokens to be at the
// beginning even before BOS token"); the model overwrites those positions with the Q-Former's
// projected queries. The attention mask is 1 on image tokens and text, 0 on padding. A folder whose
// processor_config.json has no num_query_tokens (the first BLIP-2 releases) gets no image tokens: the
// model then concatenates the queries in front itself (the legacy path).
//
// Padding follows the tokenizer config's padding_side (HF's default is right). Batched generation
// with a decoder-only LM wants left padding, so that every row's last position is a real token:
// transformers' generate() (generation/utils.py) warns on right padding and asks for
// padding_side='left'; set_padding_side() is HF's `processor.tokenizer.padding_side = "left"`.
//
// "<image>" comes from the tokenizer config's extra_special_tokens.image_token when present;
// otherwise Blip2Processor adds it as a special, non-normalized token (keeping its id when the
// vocabulary already has it, else the next id), even for a legacy folder — so "<image>" typed in a
// prompt is always that one token.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mmalign/core/error.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/io/blip_image_processor.hpp"
#include "mmalign/io/detail/tokenizer_files.hpp"
#include "mmalign/io/gpt2_tokenizer.hpp"
#include "mmalign/io/json_fields.hpp"

namespace mmalign::io {

/// The prompt templates of BLIP-2's VQA: transformers' docs and tests, and LAVIS's zero-shot VQAv2
/// evaluation (blip2_opt.py's predict_answers with prompt "Question: {} Short answer:").
inline constexpr std::string_view blip2_vqa_template = "Question: {} Answer:";
inline constexpr std::string_view lavis_vqa_template = "Question: {} Short answer:";
/// LAVIS's captioning prompt for OPT (caption_coco_opt*.yaml); an empty prompt is HF's default.
inline constexpr std::string_view blip2_caption_prompt = "a photo of";

/// `tmpl` with its first "{}" replaced by the question (Python's str.format with one field).
inline std::string vqa_prompt(std::string_view question, std::string_view tmpl = blip2_vqa_template) {
    const std::size_t at = tmpl.find("{}");
    if (at == std::string_view::npos)
        throw ArgumentError("vqa_prompt: template \"" + std::string(tmpl) + "\" has no {} for the question");
    return std::string(tmpl.substr(0, at)) + std::string(question) + std::string(tmpl.substr(at + 2));
}

/// Token ids and attention mask of a batch of prompts, both [batch · length] row-major.
struct Blip2Text {
    std::vector<std::int32_t> ids, attention_mask;
    index_t batch = 0, length = 0;
};

class Blip2Processor {
public:
    /// A BLIP-2 folder: the tokenizer files (see Gpt2Tokenizer::from_folder), processor_config.json
    /// (num_query_tokens; absent file or field = legacy) and preprocessor_config.json or
    /// processor_config.json's "image_processor" object.
    static Blip2Processor from_folder(const std::string& dir) {
        Blip2Processor p(Gpt2Tokenizer::from_folder(dir));
        const std::string config = detail::in_folder(dir, "processor_config.json");
        if (detail::tokenizer_file_exists(config)) {
            const nlohmann::json j = read_json_file(config);
            if (!j.is_object()) throw IoError(config + ": expected a JSON object, found " + detail::json_value_kind(j));
            p.num_query_tokens_ = json_field<index_t>(j, "num_query_tokens", 0, config);
            if (p.num_query_tokens_ < 0 || p.num_query_tokens_ > 1 << 16)
                throw IoError(config + ".num_query_tokens: expected 0 to 65536, found " + std::to_string(p.num_query_tokens_));
        }
        p.image_processor_ = load_blip_image_processor_config(blip_image_processor_config_path(dir));
        if (const auto& name = p.tokenizer_.image_token()) {
            p.image_token_id_ = p.tokenizer_.token_to_id(*name);
        } else {
            detail::AddedToken image{.content = "<image>", .special = true, .normalized = false};
            p.image_token_id_ = p.tokenizer_.add_token(image);
        }
        p.padding_side_ = p.tokenizer_.padding_side();
        return p;
    }

    /// HF's `processor(images=..., text=prompts, padding=True)` input_ids and attention_mask (without
    /// images: `processor(text=prompts, padding=True)`, no image tokens). One row per prompt; an
    /// empty prompt is the BOS alone (plus the image tokens).
    Blip2Text encode(const std::vector<std::string>& prompts, bool with_images = true) const {
        std::vector<std::vector<std::int32_t>> rows;
        rows.reserve(prompts.size());
        std::size_t longest = 0;
        for (const auto& p : prompts) {
            rows.push_back(tokenizer_.encode(p));
            longest = std::max(longest, rows.back().size());
        }
        const std::size_t q = with_images ? static_cast<std::size_t>(num_query_tokens_) : 0;
        Blip2Text out;
        out.batch = static_cast<index_t>(rows.size());
        out.length = static_cast<index_t>(q + longest);
        out.ids.reserve(rows.size() * (q + longest));
        out.attention_mask.reserve(rows.size() * (q + longest));
        std::optional<std::int32_t> pad;
        for (const auto& r : rows) {
            if (r.size() < longest && !pad) pad = tokenizer_.pad_id();  // throws without a pad token, as HF does
            const std::size_t fill = longest - r.size();
            out.ids.insert(out.ids.end(), q, image_token_id_);
            out.attention_mask.insert(out.attention_mask.end(), q, 1);
            if (padding_side_ == PaddingSide::left) {
                out.ids.insert(out.ids.end(), fill, pad.value_or(0));
                out.attention_mask.insert(out.attention_mask.end(), fill, 0);
            }
            out.ids.insert(out.ids.end(), r.begin(), r.end());
            out.attention_mask.insert(out.attention_mask.end(), r.size(), 1);
            if (padding_side_ == PaddingSide::right) {
                out.ids.insert(out.ids.end(), fill, pad.value_or(0));
                out.attention_mask.insert(out.attention_mask.end(), fill, 0);
            }
        }
        return out;
    }

    const Gpt2Tokenizer& tokenizer() const { return tokenizer_; }
    const BlipImageProcessorConfig& image_processor() const { return image_processor_; }
    /// processor_config.json's num_query_tokens; 0 for a legacy folder (no image tokens).
    index_t num_query_tokens() const { return num_query_tokens_; }
    /// The "<image>" token's id (always present: Blip2Processor adds it when the folder lacks it).
    std::optional<std::int32_t> image_token_id() const { return image_token_id_; }
    PaddingSide padding_side() const { return padding_side_; }
    /// HF's `processor.tokenizer.padding_side = ...`.
    void set_padding_side(PaddingSide side) { padding_side_ = side; }

private:
    explicit Blip2Processor(Gpt2Tokenizer tokenizer) : tokenizer_(std::move(tokenizer)) {}

    Gpt2Tokenizer tokenizer_;
    BlipImageProcessorConfig image_processor_;
    index_t num_query_tokens_ = 0;
    std::int32_t image_token_id_ = -1;
    PaddingSide padding_side_ = PaddingSide::right;
};

}  // namespace mmalign::io
