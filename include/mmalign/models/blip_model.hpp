// mmalign/models/blip_model.hpp — BLIP's contrastive dual encoder, as transformers' BlipModel
// computes it (modeling_blip.py; the unimodal encoders of Li et al. 2022, §3.1, with CLIP's head).
//
//   pixels ──► vision_model ──► pooler_output (post_layernorm applied twice) ──► visual_projection ─┐
//   ids    ──► text_model (BERT, no image) ──► pooler (tanh(dense(h[:, 0]))) ──► text_projection ───┤
//   image_embeds, text_embeds: unit rows; logits_per_text = exp(logit_scale)·t·iᵀ [Bt, Bi] ◄────────┘
// (nn/scaled_cosine_similarity.hpp, as CLIP). Projections have no bias.
// HF keys: vision_model.*, text_model.* (with pooler.dense.*), visual_projection.weight,
// text_projection.weight, logit_scale.
#pragma once

#include <span>
#include <string>

#include "mmalign/io/safetensors.hpp"
#include "mmalign/io/tensor_map.hpp"
#include "mmalign/models/blip_config.hpp"
#include "mmalign/nn/linear.hpp"
#include "mmalign/nn/scaled_cosine_similarity.hpp"

namespace mmalign {

template <Backend B>
struct BlipModel {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;
    using Param = BasicParameter<Buffer>;
    struct Output {
        Buffer image_embeds, text_embeds;          // [Bi, E], [Bt, E] unit rows
        Buffer logits_per_image, logits_per_text;  // [Bi, Bt], [Bt, Bi]
    };

    BlipConfig<B> config;
    VisionTransformer<B> vision_model;
    BertTransformer<B> text_model;
    Linear<B> visual_projection, text_projection;
    Param logit_scale;  // []

    explicit BlipModel(BlipConfig<B> c)
        : config(c), vision_model(c.vision), text_model(with_pooler(c.text.bert)),
          visual_projection({.in = c.vision.hidden, .out = c.projection_dim, .bias = false}),
          text_projection({.in = c.text.bert.hidden, .out = c.projection_dim, .bias = false}),
          logit_scale(Shape{}) {
        logit_scale.value.fill(static_cast<T>(c.logit_scale_init));
    }

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        vision_model.visit(f, join_name(prefix, "vision_model"));
        text_model.visit(f, join_name(prefix, "text_model"));
        visual_projection.visit(f, join_name(prefix, "visual_projection"));
        text_projection.visit(f, join_name(prefix, "text_projection"));
        f(join_name(prefix, "logit_scale"), logit_scale);
    }
    template <class Map>
    void hf_layout(Map& map, const std::string& prefix = "") { vision_model.hf_layout(map, join_name(prefix, "vision_model")); }

    /// HF get_image_features: pixels [Bi, C, S, S] → [Bi, E] (not normalised).
    void image_features(B& be, ConstView<T> pixels, TensorView<T> features) const {
        auto sc = be.scope();
        auto pooled = sc.tensor({pixels.dim(0), config.vision.hidden});  // [Bi, Dv]
        vision_model.forward(be, pixels, {}, pooled);
        visual_projection.forward(be, pooled, features);
    }
    /// HF get_text_features: ids, attention_mask [Bt·T] → [Bt, E] (not normalised).
    void text_features(B& be, std::span<const std::int32_t> ids, std::span<const std::int32_t> attention_mask,
                       index_t batch, TensorView<T> features) const {
        auto sc = be.scope();
        auto pooled = sc.tensor({batch, config.text.bert.hidden});  // [Bt, Dt]
        text_model.forward(be, {.ids = ids, .attention_mask = attention_mask, .batch = batch}, {}, pooled);
        text_projection.forward(be, pooled, features);
    }

    Output forward(B& be, ConstView<T> pixels, std::span<const std::int32_t> ids,
                   std::span<const std::int32_t> attention_mask, index_t text_batch) const {
        const index_t Bi = pixels.dim(0), Bt = text_batch, E = config.projection_dim;
        Output o;
        o.logits_per_image.resize(Shape{Bi, Bt});
        o.logits_per_text.resize(Shape{Bt, Bi});
        typename ScaledCosineSimilarity<B>::Saved unit;  // its unit rows are the embeddings HF returns
        {
            auto sc = be.scope();
            auto fi = sc.tensor({Bi, E}), ft = sc.tensor({Bt, E});  // [Bi, E], [Bt, E]
            image_features(be, pixels, fi);
            text_features(be, ids, attention_mask, Bt, ft);
            ScaledCosineSimilarity<B>{}.forward(be, fi, ft, logit_scale, o.logits_per_image.view(),
                                                o.logits_per_text.view(), unit);
        }
        o.image_embeds = std::move(unit.a);
        o.text_embeds = std::move(unit.b);
        return o;
    }

    /// A Hugging Face BlipModel folder.
    static BlipModel from_pretrained(B& be, const std::string& dir) {
        const BlipConfig<B> config = BlipConfig<B>::from_folder(dir);
        const io::Checkpoint file = io::Checkpoint::open(dir);
        config.check_against(file, dir + "/config.json");  // before anything is allocated
        BlipModel m(config);
        io::load_mapped(be, m, file, io::hf_tensor_map(m));
        return m;
    }

private:
    static typename BertTransformer<B>::Config with_pooler(typename BertTransformer<B>::Config c) {
        c.pooler = true;  // BlipModel builds BlipTextModel(text_config) with add_pooling_layer=True
        return c;
    }
};

}  // namespace mmalign
