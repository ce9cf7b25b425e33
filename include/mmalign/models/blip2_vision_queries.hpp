// mmalign/models/blip2_vision_queries.hpp — the image half every BLIP-2 model shares (Li et al.
// 2023, Fig. 2): a frozen ViT and the Q-Former whose learned queries read it through
// cross-attention, as transformers' Blip2Model, Blip2ForConditionalGeneration and
// Blip2ForImageTextRetrieval hold them (modeling_blip_2.py).
//
//   pixels [B, C, S, S] ──► vision_model (EVA ViT, post_layernorm on every token) ──► image_embeds [B, N+1, Dv]
//   query_tokens [1, Q, Dq] ──► qformer (cross-attending to image_embeds, every token kept) ──► [B, Q, Dq]
// HF keys: vision_model.*, query_tokens, qformer.*. The vision attention's q/v biases come in two
// forms (one fused `qkv.bias` = [q_bias, 0, v_bias], or LAVIS's `q_bias` + `v_bias`); the form is
// read from the checkpoint's keys before loading (adapt_to).
#pragma once

#include <string>

#include "mmalign/io/safetensors.hpp"
#include "mmalign/models/blip2_config.hpp"

namespace mmalign {

template <Backend B>
struct Blip2VisionQueries {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;

    VisionTransformer<B> vision_model;
    QFormer<B> qformer;

    explicit Blip2VisionQueries(const Blip2Config<B>& c) : vision_model(c.vision), qformer(c.qformer) {}

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        vision_model.visit(f, join_name(prefix, "vision_model"));
        qformer.visit_query_tokens(f, join_name(prefix, "query_tokens"));
        qformer.visit(f, join_name(prefix, "qformer"));
    }
    template <class Map>
    void hf_layout(Map& map, const std::string& prefix = "") { vision_model.hf_layout(map, join_name(prefix, "vision_model")); }

    /// The q/v bias form the checkpoint stores: LAVIS's `q_bias`/`v_bias` pair where the first
    /// layer has it, else the fused `qkv.bias` (when qkv_bias is on).
    static void adapt_to(Blip2Config<B>& c, const io::Checkpoint& file, const std::string& prefix = "") {
        if (c.vision.qkv_bias == QkvBias::none || c.vision.layers == 0) return;
        const auto& n = c.vision.names;
        const std::string attn = join_name(prefix, "vision_model." + n.encoder + ".layers.0." + n.block.attn);
        c.vision.qkv_bias = file.contains(attn + "." + n.q_bias) ? QkvBias::qv : QkvBias::all;
    }

    /// pixels [B, C, S, S] → image_embeds [B, N+1, Dv] (the vision model's last_hidden_state).
    Buffer image_embeds(B& be, ConstView<T> pixels) const {
        Buffer out(Shape{pixels.dim(0), vision_model.config.tokens(), vision_model.config.hidden});  // [B, N+1, Dv]
        vision_model.forward(be, pixels, out.view(), {});
        return out;
    }
    /// image_embeds [B, N+1, Dv] → the queries' last_hidden_state [B, Q, Dq].
    Buffer query_output(B& be, ConstView<T> image_embeds) const {
        const auto& q = qformer.config;
        Buffer out(Shape{image_embeds.dim(0), q.num_queries, q.hidden});  // [B, Q, Dq]
        qformer.forward(be, {.batch = image_embeds.dim(0), .queries = true, .image = image_embeds}, out.view());
        return out;
    }
};

}  // namespace mmalign
