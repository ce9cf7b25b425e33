// mmalign/models/blip_vqa.hpp — BLIP's visual question answering (Li et al. 2022, §5.3: the
// question is encoded with the image, the answer decoded from the question states), as
// transformers' BlipForQuestionAnswering computes it (modeling_blip.py).
//
//   pixels ──► vision_model ──► image_embeds [B, N+1, Dv]
//   question ──► text_encoder (bidirectional, cross-attending to image_embeds) ──► question_states [B, Tq, D]
//   [DEC] answer… ──► text_decoder (causal, cross-attending to question_states) ──► logits [B, Ta, V]
// The decoder attends to every question position, padding included: generate() passes an all-ones
// question mask, and forward's question attention_mask never reaches the cross-attention in
// transformers 5 (BlipTextAttention.forward does not hand encoder_attention_mask to
// BlipTextSelfAttention, which then reads None). The original BLIP (models/med.py) masks the
// padding: answer_logits(..., mask_question_padding = true) computes that.
// generate(): the decoder starts from [bos] alone; eos = sep_token_id, pad = pad_token_id.
// HF keys: vision_model.*, text_encoder.* (no pooler), text_decoder.bert.*, text_decoder.cls.predictions.*.
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
struct BlipForQuestionAnswering {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;
    using Decoder = BertLmDecoder<B>;
    struct Tokens {
        std::span<const std::int32_t> ids, attention_mask;
        index_t batch = 1;
    };

    BlipConfig<B> config;
    VisionTransformer<B> vision_model;
    BertTransformer<B> text_encoder;
    Decoder text_decoder;

    explicit BlipForQuestionAnswering(BlipConfig<B> c)
        : config(c), vision_model(c.vision), text_encoder(c.text.bert), text_decoder({c.text.bert}) {}

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        vision_model.visit(f, join_name(prefix, "vision_model"));
        text_encoder.visit(f, join_name(prefix, "text_encoder"));
        text_decoder.visit(f, join_name(prefix, "text_decoder"));
    }
    template <class Map>
    void hf_layout(Map& map, const std::string& prefix = "") {
        vision_model.hf_layout(map, join_name(prefix, "vision_model"));
        text_decoder.hf_layout(map, join_name(prefix, "text_decoder"));
    }

    /// The question encoded with its image: question_states [B, Tq, D].
    Buffer question_states(B& be, ConstView<T> pixels, const Tokens& question) const {
        rows_of(question, "question");
        Buffer img(Shape{pixels.dim(0), config.vision.tokens(), config.vision.hidden});  // [B, N+1, Dv]
        vision_model.forward(be, pixels, img.view(), {});
        const index_t Tq = static_cast<index_t>(question.ids.size()) / question.batch;
        Buffer q(Shape{question.batch, Tq, config.text.bert.hidden});
        text_encoder.forward(be, {.ids = question.ids, .attention_mask = question.attention_mask,
                                  .batch = question.batch, .encoder_states = img.view()}, q.view(), {});
        return q;
    }

    /// Teacher-forced answer logits [B, Ta, V] (HF forward's text_decoder call).
    Buffer answer_logits(B& be, ConstView<T> pixels, const Tokens& question, const Tokens& answer,
                         bool mask_question_padding = false) const {
        const Buffer q = question_states(be, pixels, question);
        const index_t Ta = rows_of(answer, "answer");
        Buffer out(Shape{answer.batch, Ta, config.text.bert.vocab_size});
        text_decoder.forward(be, {.ids = answer.ids, .attention_mask = answer.attention_mask, .batch = answer.batch,
                                  .encoder_states = q.view(),
                                  .encoder_mask = mask_question_padding ? question.attention_mask
                                                                        : std::span<const std::int32_t>{}},
                            out.view());
        return out;
    }

    /// Answers for each (image, question): HF generate(input_ids, pixel_values, **options).
    generation::Generated generate(B& be, ConstView<T> pixels, const Tokens& question,
                                   generation::GenerationConfig options = {}) const {
        const Buffer q = question_states(be, pixels, question);
        const std::vector<std::int32_t> start(static_cast<std::size_t>(question.batch),
                                              std::int32_t(config.text.bos_token_id));
        options.eos_token_id = {std::int32_t(config.text.sep_token_id)};
        options.pad_token_id = std::int32_t(config.text.pad_token_id);
        options.max_position_embeddings = config.text.bert.max_positions;
        typename Decoder::Session session(be, text_decoder, q.view());
        return generation::generate(session, start, {}, question.batch, options);
    }

    /// The length of each of `t.batch` rows; ShapeError unless the ids form them.
    static index_t rows_of(const Tokens& t, const char* what) {
        if (t.batch <= 0 || t.ids.empty() || t.ids.size() % static_cast<std::size_t>(t.batch))
            throw ShapeError(std::string("BlipForQuestionAnswering: ") + std::to_string(t.ids.size()) + " " + what +
                             " ids do not form " + std::to_string(t.batch) + " rows");
        return static_cast<index_t>(t.ids.size()) / t.batch;
    }

    /// A Hugging Face BlipForQuestionAnswering folder.
    static BlipForQuestionAnswering from_pretrained(B& be, const std::string& dir) {
        const BlipConfig<B> config = BlipConfig<B>::from_folder(dir);
        const io::Checkpoint file = io::Checkpoint::open(dir);
        config.check_against(file, dir + "/config.json");  // before anything is allocated
        BlipForQuestionAnswering m(config);
        io::load_mapped(be, m, file, io::hf_tensor_map(m));
        return m;
    }
};

}  // namespace mmalign
