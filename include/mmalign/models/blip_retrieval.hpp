// mmalign/models/blip_retrieval.hpp — BLIP's image-text retrieval model (Li et al. 2022, §3.1:
// "image-grounded text encoder" for ITM, "unimodal encoders" for ITC), as transformers'
// BlipForImageTextRetrieval computes it (modeling_blip.py).
//
//   pixels ──► vision_model (BLIP ViT) ──► image_embeds [Bi, N+1, Dv]
//   ITM:  ids ──► text_encoder, cross-attending to image_embeds ──► h[:, 0] ──► itm_head ──► [Bt, 2]
//         (index 1 = "match"; itm_scores = softmax(...)[:, 1])
//   ITC:  ids ──► text_encoder, no image ──► text_proj(h[:, 0]) ─┐  cosine [Bi, Bt]
//         image_embeds[:, 0] ──► vision_proj ───────────────────┘  (no temperature, as HF's use_itm_head=False)
// One image may be scored against many texts: Bi = 1 broadcasts, as torch's batched matmul does in HF.
// HF keys: vision_model.*, text_encoder.* (no pooler), vision_proj.*, text_proj.*, itm_head.*.
#pragma once

#include <span>
#include <string>

#include "mmalign/models/blip_config.hpp"
#include "mmalign/nn/linear.hpp"
#include "mmalign/nn/scaled_cosine_similarity.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/io/tensor_map.hpp"

namespace mmalign {

template <Backend B>
struct BlipForImageTextRetrieval {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;
    using Bert = BertTransformer<B>;
    /// Texts: ids and attention_mask [Bt·T] (the processor's, padded).
    struct Texts {
        std::span<const std::int32_t> ids, attention_mask;
        index_t batch = 1;
    };

    BlipConfig<B> config;
    VisionTransformer<B> vision_model;
    Bert text_encoder;
    Linear<B> vision_proj, text_proj, itm_head;

    explicit BlipForImageTextRetrieval(BlipConfig<B> c)
        : config(c), vision_model(c.vision), text_encoder(c.text.bert),
          vision_proj({.in = c.vision.hidden, .out = c.image_text_hidden_size}),
          text_proj({.in = c.text.bert.hidden, .out = c.image_text_hidden_size}),
          itm_head({.in = c.text.bert.hidden, .out = 2}) {}

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        vision_model.visit(f, join_name(prefix, "vision_model"));
        text_encoder.visit(f, join_name(prefix, "text_encoder"));
        vision_proj.visit(f, join_name(prefix, "vision_proj"));
        text_proj.visit(f, join_name(prefix, "text_proj"));
        itm_head.visit(f, join_name(prefix, "itm_head"));
    }
    template <class Map>
    void hf_layout(Map& map, const std::string& prefix = "") { vision_model.hf_layout(map, join_name(prefix, "vision_model")); }

    /// pixels [Bi, C, S, S] → last_hidden_state [Bi, N+1, Dv] (post-LayerNorm, BlipVisionModel).
    Buffer image_embeds(B& be, ConstView<T> pixels) const {
        Buffer out(Shape{pixels.dim(0), config.vision.tokens(), config.vision.hidden});
        vision_model.forward(be, pixels, out.view(), {});
        return out;
    }

    /// ITM logits [Bt, 2] of each text against its image (Bi = Bt) or the one image (Bi = 1).
    Buffer itm_logits(B& be, ConstView<T> image_embeds, const Texts& t) const {
        check_texts(t);
        const index_t Bi = image_embeds.dim(0), Bt = t.batch, D = config.text.bert.hidden;
        if (Bi != Bt && Bi != 1)
            throw ShapeError("BlipForImageTextRetrieval: " + std::to_string(Bi) + " images for " + std::to_string(Bt) +
                             " texts (expected one image, or one per text)");
        auto sc = be.scope();
        // One image (Bi = 1) is passed as it is: every text's cross-attention reads the same keys and
        // values, projected once (nn/attention.hpp), not once per text.
        const index_t Tn = static_cast<index_t>(t.ids.size()) / Bt;
        auto h = sc.tensor({Bt, Tn, D});  // [Bt, T, D]
        text_encoder.forward(be, {.ids = t.ids, .attention_mask = t.attention_mask, .batch = Bt,
                                  .encoder_states = image_embeds}, h, {});
        Buffer logits(Shape{Bt, 2});
        itm_head.forward(be, first_tokens(be, h, sc), logits.view());
        return logits;
    }

    /// ITC cosine similarities [Bi, Bt] of normalised vision_proj(image CLS) and text_proj(text CLS),
    /// the text encoded without the image.
    Buffer itc_scores(B& be, ConstView<T> image_embeds, const Texts& t) const {
        check_texts(t);
        const index_t Bi = image_embeds.dim(0), Bt = t.batch, E = config.image_text_hidden_size;
        const index_t Tn = static_cast<index_t>(t.ids.size()) / Bt, D = config.text.bert.hidden;
        auto sc = be.scope();
        auto h = sc.tensor({Bt, Tn, D});  // [Bt, T, D]
        text_encoder.forward(be, {.ids = t.ids, .attention_mask = t.attention_mask, .batch = Bt}, h, {});
        auto img = sc.tensor({Bi, E}), txt = sc.tensor({Bt, E});  // [Bi, E], [Bt, E]
        vision_proj.forward(be, first_tokens(be, image_embeds, sc), img);
        text_proj.forward(be, first_tokens(be, h, sc), txt);
        Buffer scores(Shape{Bi, Bt});
        BasicParameter<Buffer> no_scale(Shape{});  // logit_scale 0: exp(0) = 1, the raw cosine
        typename ScaledCosineSimilarity<B>::Saved unit;
        ScaledCosineSimilarity<B>{}.forward(be, img, txt, no_scale, scores.view(), {}, unit);
        return scores;
    }

    /// A Hugging Face BlipForImageTextRetrieval folder (config.json, model.safetensors or shards).
    static BlipForImageTextRetrieval from_pretrained(B& be, const std::string& dir) {
        const BlipConfig<B> config = BlipConfig<B>::from_folder(dir);
        const io::Checkpoint file = io::Checkpoint::open(dir);
        config.check_against(file, dir + "/config.json");  // before anything is allocated
        BlipForImageTextRetrieval m(config);
        io::load_mapped(be, m, file, io::hf_tensor_map(m));
        return m;
    }

private:
    static void check_texts(const Texts& t) {
        if (t.batch <= 0 || t.ids.empty() || t.ids.size() % static_cast<std::size_t>(t.batch))
            throw ShapeError("BlipForImageTextRetrieval: " + std::to_string(t.ids.size()) + " ids do not form " +
                             std::to_string(t.batch) + " texts");
    }
    /// x [B, T, D] → its position-0 rows [B, D] (scratch of `sc`).
    template <class Scope>
    static TensorView<T> first_tokens(B& be, ConstView<T> x, Scope& sc) {
        const index_t Bn = x.dim(0), Tn = x.dim(1), D = x.dim(2);
        auto out = sc.tensor({Bn, D});  // [B, D]
        for (index_t b = 0; b < Bn; ++b)
            be.copy(ConstView<T>(x.data() + b * Tn * D, Shape{D}), TensorView<T>(out.data() + b * D, Shape{D}));
        return out;
    }
};

}  // namespace mmalign
