// mmalign/nn/transformer_block.hpp — one transformer layer, pre- or post-norm, with optional
// cross-attention, and the names Hugging Face gives its weights: three residual sublayers
// (nn/sublayer.hpp) in a row.
//
// PreNorm (CLIP's CLIPEncoderLayer, ViT, OPT's OPTDecoderLayer; Xiong et al. 2020):
//   h = x + SelfAttn(LN1(x));  [h = h + CrossAttn(LNc(h), enc)];  y = h + Mlp(LN2(h))
// PostNorm (BERT's BertLayer, BLIP's text model; Vaswani et al. 2017, §3.1):
//   h = LN1(x + SelfAttn(x));  [h = LNc(h + CrossAttn(h, enc))];  y = LN2(h + Mlp(h))
// x, y [B, T, D]; enc [B, Te, De]. The norm placement is structure (a type); sizes, eps, the
// activation (HF `hidden_act`) and whether the layer has cross-attention are Config values, so one
// compiled model loads every checkpoint of its architecture, and a Q-Former can hold
// cross-attention in every other layer only (transformers' modeling_blip_2.py,
// `cross_attention_frequency`).
// Cross-attention is skipped at run time when no encoder states are given (empty enc): the layer
// is then the same function as one built without it, as BertLayer's forward skips its
// crossattention when encoder_hidden_states is None (modeling_bert.py) — BLIP's text encoder runs
// its image-text-contrastive pass this way, with the weights of its image-grounded pass.
// Backward: d_x assigned; d_enc accumulated (shared by every layer's cross-attention).
// Decoding: forward_cached runs one step (the next Tn positions) against a Cache holding the
// self-attention's keys/values of every earlier position and the cross-attention's keys/values of
// the encoder states, projected once by start_cache; Cache::reorder gathers its rows for beam
// search (HF `_reorder_cache`).
#pragma once

#include <optional>
#include <span>
#include <string>

#include "mmalign/nn/attention.hpp"
#include "mmalign/nn/mlp.hpp"
#include "mmalign/nn/sublayer.hpp"

namespace mmalign {

/// State-dict names of a layer's parts, relative to the layer ("encoder.layers.3").
struct BlockNames {
    std::string attn, cross_attn;                       // attention prefixes
    std::string q, k, v, out;                           // projections inside an attention prefix
    std::string norm1, norm_cross, norm2;               // the three LayerNorms
    std::string mlp, fc1, fc2;                          // feed-forward prefix and its two layers

    /// HF CLIP (`CLIPEncoderLayer`): self_attn.q_proj, layer_norm1, mlp.fc1, layer_norm2, …
    /// (CLIP has no cross-attention; "cross_attn"/"layer_norm_cross" name it for pre-norm decoders.)
    static BlockNames clip() {
        return {"self_attn", "cross_attn", "q_proj", "k_proj", "v_proj", "out_proj",
                "layer_norm1", "layer_norm_cross", "layer_norm2", "mlp", "fc1", "fc2"};
    }
    /// HF BERT (`BertLayer`, BLIP text, Q-Former): attention.self.query, attention.output.dense,
    /// attention.output.LayerNorm, crossattention.…, intermediate.dense, output.dense, output.LayerNorm.
    static BlockNames bert() {
        return {"attention", "crossattention", "self.query", "self.key", "self.value", "output.dense",
                "attention.output.LayerNorm", "crossattention.output.LayerNorm", "output.LayerNorm",
                "", "intermediate.dense", "output.dense"};
    }
    /// HF BLIP-2 Q-Former (`Blip2QFormerLayer`): BERT's layout with the projections under
    /// attention.attention.{query,key,value}; its query feed-forward adds "_query" to the first part of
    /// the feed-forward names (intermediate_query.dense, output_query.dense, output_query.LayerNorm).
    static BlockNames qformer() {
        return {"attention", "crossattention", "attention.query", "attention.key", "attention.value", "output.dense",
                "attention.output.LayerNorm", "crossattention.output.LayerNorm", "output.LayerNorm",
                "", "intermediate.dense", "output.dense"};
    }
    /// HF BLIP / BLIP-2 vision (`BlipEncoderLayer`, `Blip2EncoderLayer`): CLIP's layout with one
    /// fused `self_attn.qkv` (its parts named q, k, v on the module side, io/tensor_map.hpp) and
    /// the output projection `self_attn.projection`.
    static BlockNames blip_vision() {
        return {"self_attn", "cross_attn", "q", "k", "v", "projection",
                "layer_norm1", "layer_norm_cross", "layer_norm2", "mlp", "fc1", "fc2"};
    }
    /// HF OPT (`OPTDecoderLayer`, BLIP-2's language model): self_attn.q_proj, self_attn_layer_norm,
    /// fc1, fc2 (no feed-forward prefix), final_layer_norm. OPT has no cross-attention; the
    /// cross names follow the CLIP form.
    static BlockNames opt() {
        return {"self_attn", "cross_attn", "q_proj", "k_proj", "v_proj", "out_proj",
                "self_attn_layer_norm", "cross_attn_layer_norm", "final_layer_norm", "", "fc1", "fc2"};
    }
};

template <Backend B, NormPlacement Norm>
struct TransformerBlock {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;  // owning storage in the backend's memory
    using Attention = MultiHeadAttention<B>;
    using AttentionSublayer = Sublayer<B, Norm, Attention>;
    using FeedForward = Sublayer<B, Norm, Mlp<B>>;

    struct Config {
        index_t dim = 0;
        index_t heads = 1;
        index_t mlp_hidden = 0;
        Activation activation = Activation::gelu;
        double eps = 1e-5;
        double attn_scale = 0;        // 0: 1/√(D/H)
        bool cross_attention = false;
        index_t cross_dim = 0;        // width of enc; 0: dim
        BlockNames names = BlockNames::clip();
        bool bias = true;             // false: no biases in the projections and the feed-forward (OPT's enable_bias)
    };
    struct Saved {
        typename AttentionSublayer::Saved attention, cross;
        typename FeedForward::Saved feed_forward;
        bool cross_ran = false;  // whether forward ran the cross-attention (encoder states given)
        /// Where forward keeps x; a parent may write x here first (no copy then).
        Buffer& input() { return attention.input(); }
    };
    /// What decoding keeps between steps.
    struct Cache {
        typename Attention::KvCache self;   // keys, values of the positions so far [B, Tmax, D]
        typename Attention::KvCache cross;  // of the encoder states [B, Te, D], projected once
        bool has_cross = false;             // start_cache was given encoder states

        index_t length() const { return self.length; }
        index_t batch() const { return self.batch(); }
        /// Row b becomes row rows[b] (beam search; see MultiHeadAttention::KvCache::reorder).
        void reorder(B& be, std::span<const std::int32_t> rows) {
            self.reorder(be, rows);
            if (has_cross) cross.reorder(be, rows);
        }
    };

    Config config;
    AttentionSublayer attention;
    std::optional<AttentionSublayer> cross;
    FeedForward feed_forward;

    TransformerBlock() = default;
    explicit TransformerBlock(Config c)
        : config(c),
          attention({.dim = c.dim, .eps = c.eps, .inner_name = c.names.attn, .norm_name = c.names.norm1},
                    Attention(attention_config(c, false))),
          feed_forward({.dim = c.dim, .eps = c.eps, .inner_name = c.names.mlp, .norm_name = c.names.norm2},
                       Mlp<B>({.dim = c.dim, .hidden = c.mlp_hidden, .activation = c.activation,
                               .fc1_name = c.names.fc1, .fc2_name = c.names.fc2, .bias = c.bias})) {
        if (c.cross_attention)
            cross.emplace(typename AttentionSublayer::Config{.dim = c.dim, .eps = c.eps, .inner_name = c.names.cross_attn,
                                                             .norm_name = c.names.norm_cross},
                          Attention(attention_config(c, true)));
    }

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        attention.visit(f, prefix);
        if (cross) cross->visit(f, prefix);
        feed_forward.visit(f, prefix);
    }

    /// x [B, T, D] → y [B, T, D] (distinct buffers). `enc` [B, Te, De] feeds the cross-attention;
    /// empty, it is skipped. `cross_mask.key_keep` spans enc's positions.
    void forward(B& be, ConstView<T> x, ConstView<T> enc, const AttentionMask<T>& self_mask,
                 const AttentionMask<T>& cross_mask, TensorView<T> y, Saved* s = nullptr) const {
        const bool run_cross = check_io(x, enc, y);
        auto sc = be.scope();
        // Each sublayer's output is the next one's input: written straight into that one's saved
        // input when training, else into scratch.
        auto next = [&](typename AttentionSublayer::Saved* into_cross, typename FeedForward::Saved* into_ff) {
            if (!s) return sc.tensor(x.shape());
            Buffer& b = into_cross ? into_cross->input() : into_ff->input();
            b.resize(x.shape());
            return b.view();
        };
        TensorView<T> h = next(s && run_cross ? &s->cross : nullptr, s ? &s->feed_forward : nullptr);  // [B, T, D]
        attention.forward(be, x, h, s ? &s->attention : nullptr, ConstView<T>{}, self_mask);
        if (run_cross) {
            TensorView<T> h2 = next(nullptr, s ? &s->feed_forward : nullptr);  // [B, T, D]
            cross->forward(be, h, h2, s ? &s->cross : nullptr, enc, cross_mask);
            h = h2;
        }
        feed_forward.forward(be, h, y, s ? &s->feed_forward : nullptr);
        if (s) s->cross_ran = run_cross;
    }

    /// d_x (assigned) may be empty; d_enc (accumulated) may be empty.
    void backward(B& be, Saved& s, ConstView<T> d_y, TensorView<T> d_x, TensorView<T> d_enc, GradMode mode) {
        auto sc = be.scope();
        // One buffer carries the residual stream's gradient down through the sublayers, in place.
        TensorView<T> d = d_x.empty() ? sc.tensor(d_y.shape()) : d_x;  // [B, T, D]
        feed_forward.backward(be, s.feed_forward, d_y, d, mode);
        if (s.cross_ran) cross->backward(be, s.cross, d, d, mode, InputGradMode::assign, d_enc);
        attention.backward(be, s.attention, d, d_x, mode, InputGradMode::assign, TensorView<T>{});
    }

    /// Prepares `c` for decoding `batch` rows of up to `max_positions` positions. With encoder
    /// states enc [batch, Te, De] the cross-attention's keys and values are projected now, once,
    /// and every step reads them; without, decoding skips the cross-attention.
    void start_cache(B& be, Cache& c, index_t batch, index_t max_positions, ConstView<T> enc = {}) const {
        if (!enc.empty() && !cross)
            throw ArgumentError("TransformerBlock: encoder states given to a layer without cross-attention");
        if (!enc.empty() && (enc.rank() != 3 || enc.dim(0) != batch))
            throw ShapeError("TransformerBlock cache: encoder states " + enc.shape().str() + " do not have " +
                             std::to_string(batch) + " rows");
        c.self.reset(batch, max_positions, config.dim);
        c.has_cross = !enc.empty();
        if (c.has_cross) cross->inner.project_context(be, enc, c.cross);
    }

    /// One decoding step: x [B, Tn, D], the next Tn positions → y [B, Tn, D]; their keys and
    /// values join the cache. `self_mask.key_keep` (optional) spans every cached position
    /// [B, length + Tn], so padding anywhere in a row is hidden; causality is implied.
    /// `cross_mask.key_keep` spans the encoder positions.
    void forward_cached(B& be, ConstView<T> x, Cache& c, const AttentionMask<T>& self_mask,
                        const AttentionMask<T>& cross_mask, TensorView<T> y) const {
        check_io(x, {}, y);
        auto sc = be.scope();
        TensorView<T> h = sc.tensor(x.shape());  // [B, Tn, D]
        attention.forward_with(be, x, h, [&](ConstView<T> in, TensorView<T> out) {
            attention.inner.forward_cached(be, in, c.self, self_mask, out);
        });
        if (cross && c.has_cross) {
            TensorView<T> h2 = sc.tensor(x.shape());  // [B, Tn, D]
            cross->forward_with(be, h, h2, [&](ConstView<T> in, TensorView<T> out) {
                cross->inner.forward_cross_cached(be, in, c.cross, cross_mask, out);
            });
            h = h2;
        }
        feed_forward.forward(be, h, y, nullptr);
    }

private:
    /// Shapes and aliasing; returns whether the cross-attention runs.
    bool check_io(ConstView<T> x, ConstView<T> enc, ConstView<T> y) const {
        expect_shape(x.shape(), {-1, -1, config.dim}, "TransformerBlock input");
        expect_shape(y.shape(), {x.dim(0), x.dim(1), config.dim}, "TransformerBlock output");
        if (!enc.empty() && !cross)
            throw ArgumentError("TransformerBlock: encoder states given to a layer without cross-attention");
        if (x.data() == y.data()) throw ArgumentError("TransformerBlock: x and y must be distinct buffers");
        return cross.has_value() && !enc.empty();
    }

    static typename Attention::Config attention_config(const Config& c, bool is_cross) {
        return {.dim = c.dim, .heads = c.heads, .kv_dim = is_cross ? c.cross_dim : 0, .scale = c.attn_scale,
                .q_name = c.names.q, .k_name = c.names.k, .v_name = c.names.v, .out_name = c.names.out,
                .bias = c.bias};
    }
};

}  // namespace mmalign
