// mmalign/models/blip2_generation.hpp — BLIP-2 captioning and visual question answering (Li et al.
// 2023, §3.3, Fig. 3), as transformers' Blip2ForConditionalGeneration.generate runs it
// (modeling_blip_2.py): the soft prompt of each image (models/blip2_model.hpp) takes the prompt's
// image rows, then the OPT language model generates with its KV cache (decoders/opt_decoder.hpp,
// generation/generate.hpp). As HF passes input_ids with inputs_embeds, the returned rows hold the
// prompt ids (image tokens included) and the repetition penalty counts them; eos and pad are the
// language model's (text_config: "\n" = 50118 for the Salesforce OPT folders) unless the options
// set them. HF keys: those of Blip2Model.
#pragma once

#include <string>

#include "mmalign/generation/generate.hpp"
#include "mmalign/models/blip2_model.hpp"

namespace mmalign {

template <Backend B>
struct Blip2ForConditionalGeneration {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;

    Blip2Model<B> model;

    explicit Blip2ForConditionalGeneration(Blip2Config<B> c) : model(std::move(c)) {}
    explicit Blip2ForConditionalGeneration(Blip2Model<B> m) : model(std::move(m)) {}

    const Blip2Config<B>& config() const { return model.config; }
    template <class F>
    void visit(F&& f, const std::string& prefix = "") { model.visit(f, prefix); }
    template <class Map>
    void hf_layout(Map& map, const std::string& prefix = "") { model.hf_layout(map, prefix); }

    Buffer image_embeds(B& be, ConstView<T> pixels) const { return model.get_image_features(be, pixels); }
    Buffer qformer_output(B& be, ConstView<T> image_embeds) const { return model.vision_queries.query_output(be, image_embeds); }
    Buffer language_model_inputs(B& be, ConstView<T> qformer_output) const { return model.language_model_inputs(be, qformer_output); }
    Buffer logits(B& be, ConstView<T> pixels, const Blip2Tokens& t) const { return model.logits(be, pixels, t); }

    /// HF generate(pixel_values, input_ids, attention_mask, **options) for each image.
    generation::Generated generate(B& be, ConstView<T> pixels, const Blip2Tokens& prompt = {},
                                   generation::GenerationConfig options = {}) const {
        const auto& text = model.config.text;
        const auto p = model.soft_prompted(prompt, pixels.dim(0));
        const Buffer soft = model.soft_prompt(be, pixels);  // [B, Q, D]
        if (options.eos_token_id.empty()) options.eos_token_id = {static_cast<std::int32_t>(text.eos_token_id)};
        if (!options.pad_token_id) options.pad_token_id = static_cast<std::int32_t>(text.pad_token_id);
        options.max_position_embeddings = text.max_positions;
        typename OptDecoder<B>::Session session(be, model.language_model, soft.view(), p.soft_token);
        return generation::generate(session, p.ids, p.attention_mask, p.batch, options);
    }

    /// A Hugging Face Blip2ForConditionalGeneration folder (config.json, model.safetensors or shards).
    static Blip2ForConditionalGeneration from_pretrained(B& be, const std::string& dir) {
        return Blip2ForConditionalGeneration(Blip2Model<B>::from_pretrained(be, dir));
    }
};

}  // namespace mmalign
