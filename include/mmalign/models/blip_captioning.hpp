// mmalign/models/blip_captioning.hpp — BLIP's image captioner (Li et al. 2022, §3.1 "image-grounded
// text decoder"), as transformers' BlipForConditionalGeneration computes it (modeling_blip.py).
//
//   pixels ──► vision_model (BLIP ViT) ──► image_embeds [B, N+1, Dv]
//   [DEC] prompt… ──► text_decoder (causal BERT, cross-attending to image_embeds) ──► logits [B, T, V]
// generate(): HF's prompt handling — without a prompt the start is [bos, eos]; position 0 is always
// overwritten with bos ([DEC]) and the last token (the tokenizer's [SEP], or that eos) is dropped
// with its mask entry; then the text decoder generates with eos = sep_token_id, pad = pad_token_id
// and the image states unmasked. Output rows start with bos, as HF's.
// HF keys: vision_model.*, text_decoder.bert.*, text_decoder.cls.predictions.*.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "mmalign/decoders/bert_lm_decoder.hpp"
#include "mmalign/generation/generate.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/io/tensor_map.hpp"
#include "mmalign/models/blip_config.hpp"

namespace mmalign {

template <Backend B>
struct BlipForConditionalGeneration {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;
    using Decoder = BertLmDecoder<B>;
    /// Token rows [B·T] with their mask (the processor's input_ids and attention_mask).
    struct Tokens {
        std::span<const std::int32_t> ids, attention_mask;
        index_t batch = 1;
    };

    BlipConfig<B> config;
    VisionTransformer<B> vision_model;
    Decoder text_decoder;

    explicit BlipForConditionalGeneration(BlipConfig<B> c)
        : config(c), vision_model(c.vision), text_decoder({c.text.bert}) {}

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        vision_model.visit(f, join_name(prefix, "vision_model"));
        text_decoder.visit(f, join_name(prefix, "text_decoder"));
    }
    template <class Map>
    void hf_layout(Map& map, const std::string& prefix = "") {
        vision_model.hf_layout(map, join_name(prefix, "vision_model"));
        text_decoder.hf_layout(map, join_name(prefix, "text_decoder"));
    }

    /// pixels [B, C, S, S] → image_embeds [B, N+1, Dv] (the vision model's last_hidden_state).
    Buffer image_embeds(B& be, ConstView<T> pixels) const {
        Buffer out(Shape{pixels.dim(0), config.vision.tokens(), config.vision.hidden});
        vision_model.forward(be, pixels, out.view(), {});
        return out;
    }

    /// HF forward (labels None): logits [B, T, V] of the text as given, one image per row.
    Buffer logits(B& be, ConstView<T> pixels, const Tokens& text) const {
        if (text.batch <= 0 || text.ids.empty() || text.ids.size() % static_cast<std::size_t>(text.batch))
            throw ShapeError("BlipForConditionalGeneration: " + std::to_string(text.ids.size()) + " ids do not form " +
                             std::to_string(text.batch) + " rows");
        const Buffer img = image_embeds(be, pixels);
        const index_t Tn = static_cast<index_t>(text.ids.size()) / text.batch;
        Buffer out(Shape{text.batch, Tn, config.text.bert.vocab_size});
        text_decoder.forward(be, {.ids = text.ids, .attention_mask = text.attention_mask, .batch = text.batch,
                                  .encoder_states = img.view()}, out.view());
        return out;
    }

    /// Captions for each image: HF generate(pixel_values, input_ids, attention_mask, **options).
    /// `prompt` (optional) holds one tokenized prompt per image, [CLS] … [SEP] as the processor gives it.
    generation::Generated generate(B& be, ConstView<T> pixels, const Tokens& prompt = {},
                                   generation::GenerationConfig options = {}) const {
        const index_t Bn = pixels.dim(0);
        const Buffer img = image_embeds(be, pixels);
        std::vector<std::int32_t> ids, keep;
        index_t Tn = 2;
        if (prompt.ids.empty()) {
            for (index_t b = 0; b < Bn; ++b)
                ids.insert(ids.end(), {std::int32_t(config.text.bos_token_id), std::int32_t(config.text.eos_token_id)});
        } else {
            if (prompt.batch != Bn || Bn <= 0 || prompt.ids.size() % static_cast<std::size_t>(Bn))
                throw ShapeError("BlipForConditionalGeneration: " + std::to_string(prompt.batch) + " prompts for " +
                                 std::to_string(Bn) + " images");
            Tn = static_cast<index_t>(prompt.ids.size()) / Bn;
            ids.assign(prompt.ids.begin(), prompt.ids.end());
            if (!prompt.attention_mask.empty()) keep.assign(prompt.attention_mask.begin(), prompt.attention_mask.end());
        }
        if (Tn < 2) throw ArgumentError("BlipForConditionalGeneration: a prompt needs at least two tokens ([CLS] … [SEP])");
        // input_ids[:, 0] = bos; input_ids[:, :-1] and attention_mask[:, :-1] go to the decoder.
        std::vector<std::int32_t> start_ids, start_keep;
        for (index_t b = 0; b < Bn; ++b)
            for (index_t t = 0; t + 1 < Tn; ++t) {
                const auto i = static_cast<std::size_t>(b * Tn + t);
                start_ids.push_back(t == 0 ? std::int32_t(config.text.bos_token_id) : ids[i]);
                if (!keep.empty()) start_keep.push_back(keep[i]);
            }
        options.eos_token_id = {std::int32_t(config.text.sep_token_id)};
        options.pad_token_id = std::int32_t(config.text.pad_token_id);
        options.max_position_embeddings = config.text.bert.max_positions;
        typename Decoder::Session session(be, text_decoder, img.view());
        return generation::generate(session, start_ids, start_keep, Bn, options);
    }

    /// A Hugging Face BlipForConditionalGeneration folder (config.json, model.safetensors or shards).
    static BlipForConditionalGeneration from_pretrained(B& be, const std::string& dir) {
        const BlipConfig<B> config = BlipConfig<B>::from_folder(dir);
        const io::Checkpoint file = io::Checkpoint::open(dir);
        config.check_against(file, dir + "/config.json");  // before anything is allocated
        BlipForConditionalGeneration m(config);
        io::load_mapped(be, m, file, io::hf_tensor_map(m));
        return m;
    }
};

}  // namespace mmalign
