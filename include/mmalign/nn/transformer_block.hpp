// mmalign/nn/transformer_block.hpp — one transformer layer, pre- or post-norm, with optional
// cross-attention, and the names Hugging Face gives its weights.
//
// PreNorm (CLIP, ViT, GPT-2 style; Xiong et al. 2020):
//   h = x + SelfAttn(LN1(x));  [h = h + CrossAttn(LNc(h), enc)];  y = h + Mlp(LN2(h))
// PostNorm (BERT, BLIP text, Q-Former; Vaswani et al. 2017):
//   h = LN1(x + SelfAttn(x));  [h = LNc(h + CrossAttn(h, enc))];  y = LN2(h + Mlp(h))
// x, y [B, T, D]; enc [B, Te, De]. The norm placement is structure (a type); sizes, eps, the
// activation (HF `hidden_act`) and whether the layer has cross-attention are Config values, so
// one compiled model loads every checkpoint of its architecture, and a Q-Former can hold
// cross-attention in every other layer only (models.md §3.3).
// Backward: d_x assigned; d_enc accumulated (shared by every layer's cross-attention).
#pragma once

#include <optional>
#include <string>

#include "mmalign/nn/attention.hpp"
#include "mmalign/nn/layer_norm.hpp"
#include "mmalign/nn/mlp.hpp"

namespace mmalign {

/// Normalisation before each sub-layer, inside the residual branch.
struct PreNorm {};
/// Normalisation after each residual sum.
struct PostNorm {};

template <class P>
concept NormPlacement = std::is_same_v<P, PreNorm> || std::is_same_v<P, PostNorm>;

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
};

template <Backend B, NormPlacement Norm>
struct TransformerBlock {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;  // owning storage in the backend's memory
    using Attention = MultiHeadAttention<B>;

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
    };
    struct Saved {
        typename LayerNorm<B>::Saved ln1, ln_cross, ln2;
        typename Attention::Saved attn, cross;
        typename Mlp<B>::Saved mlp;
    };

    Config config;
    LayerNorm<B> ln1, ln2;
    std::optional<LayerNorm<B>> ln_cross;
    Attention attn;
    std::optional<Attention> cross;
    Mlp<B> mlp;

    TransformerBlock() = default;
    explicit TransformerBlock(Config c)
        : config(c),
          ln1({.dim = c.dim, .eps = c.eps}),
          ln2({.dim = c.dim, .eps = c.eps}),
          attn(attention_config(c, false)),
          mlp({.dim = c.dim, .hidden = c.mlp_hidden, .activation = c.activation, .fc1_name = c.names.fc1,
               .fc2_name = c.names.fc2}) {
        if (c.cross_attention) {
            ln_cross.emplace(typename LayerNorm<B>::Config{.dim = c.dim, .eps = c.eps});
            cross.emplace(attention_config(c, true));
        }
    }

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        const BlockNames& n = config.names;
        attn.visit(f, join_name(prefix, n.attn));
        ln1.visit(f, join_name(prefix, n.norm1));
        if (cross) {
            cross->visit(f, join_name(prefix, n.cross_attn));
            ln_cross->visit(f, join_name(prefix, n.norm_cross));
        }
        mlp.visit(f, join_name(prefix, n.mlp));
        ln2.visit(f, join_name(prefix, n.norm2));
    }

    /// x [B, T, D] → y [B, T, D] (distinct buffers). `enc` [B, Te, De] is required exactly when
    /// the layer has cross-attention; `cross_mask.key_keep` spans enc's positions.
    void forward(B& be, ConstView<T> x, ConstView<T> enc, const AttentionMask<T>& self_mask,
                 const AttentionMask<T>& cross_mask, TensorView<T> y, Saved* s = nullptr) const {
        expect_shape(x.shape(), {-1, -1, config.dim}, "TransformerBlock input");
        expect_shape(y.shape(), {x.dim(0), x.dim(1), config.dim}, "TransformerBlock output");
        if (cross.has_value() != !enc.empty())
            throw ArgumentError(cross ? "TransformerBlock: this layer has cross-attention and needs the encoder states"
                                      : "TransformerBlock: encoder states given to a layer without cross-attention");
        if (x.data() == y.data()) throw ArgumentError("TransformerBlock: x and y must be distinct buffers");
        auto sc = be.scope();
        // Where an intermediate goes: into the child's saved input when training, else scratch.
        auto slot = [&](Buffer* saved) -> TensorView<T> {
            if (!s) return sc.tensor(x.shape());
            saved->resize(x.shape());
            return saved->view();
        };
        if constexpr (std::is_same_v<Norm, PreNorm>) {
            auto a = slot(s ? &s->attn.x : nullptr);
            ln1.forward(be, x, a, s ? &s->ln1 : nullptr);
            attn.forward(be, a, {}, self_mask, y, s ? &s->attn : nullptr);
            be.axpy(T(1), x, y);  // y holds h
            if (cross) {
                auto c = slot(s ? &s->cross.x : nullptr);
                auto t = sc.tensor(x.shape());
                ln_cross->forward(be, y, c, s ? &s->ln_cross : nullptr);
                cross->forward(be, c, enc, cross_mask, t, s ? &s->cross : nullptr);
                be.axpy(T(1), t, y);
            }
            auto m = slot(s ? &s->mlp.fc1.x : nullptr);
            auto t = sc.tensor(x.shape());
            ln2.forward(be, y, m, s ? &s->ln2 : nullptr);
            mlp.forward(be, m, t, s ? &s->mlp : nullptr);
            be.axpy(T(1), t, y);
        } else {
            auto u = slot(s ? &s->ln1.x : nullptr);
            attn.forward(be, x, {}, self_mask, u, s ? &s->attn : nullptr);
            be.axpy(T(1), x, u);
            auto h = slot(s ? (cross ? &s->cross.x : &s->mlp.fc1.x) : nullptr);
            ln1.forward(be, u, h, s ? &s->ln1 : nullptr);
            if (cross) {
                auto u2 = slot(s ? &s->ln_cross.x : nullptr);
                cross->forward(be, h, enc, cross_mask, u2, s ? &s->cross : nullptr);
                be.axpy(T(1), h, u2);
                auto h2 = slot(s ? &s->mlp.fc1.x : nullptr);
                ln_cross->forward(be, u2, h2, s ? &s->ln_cross : nullptr);
                h = h2;
            }
            auto z = slot(s ? &s->ln2.x : nullptr);
            mlp.forward(be, h, z, s ? &s->mlp : nullptr);
            be.axpy(T(1), h, z);
            ln2.forward(be, z, y, s ? &s->ln2 : nullptr);
        }
    }

    /// d_x (assigned) may be empty; d_enc (accumulated) may be empty.
    void backward(B& be, Saved& s, ConstView<T> d_y, TensorView<T> d_x, TensorView<T> d_enc, GradMode mode) {
        const Shape shape = d_y.shape();  // [B, T, D]
        auto sc = be.scope();
        if constexpr (std::is_same_v<Norm, PreNorm>) {
            // d_h runs down the residual stream; every branch adds its input gradient into it.
            TensorView<T> d_h = d_x.empty() ? sc.tensor(shape) : d_x;
            be.copy(d_y, d_h);
            auto d_m = sc.tensor(shape);
            mlp.backward(be, s.mlp, d_y, d_m, mode);
            ln2.backward(be, s.ln2, d_m, d_h, mode, true);
            if (cross) {
                auto d_c = sc.tensor(shape);
                cross->backward(be, s.cross, d_h, d_c, d_enc, mode);
                ln_cross->backward(be, s.ln_cross, d_c, d_h, mode, true);
            }
            auto d_a = sc.tensor(shape);
            attn.backward(be, s.attn, d_h, d_a, {}, mode);
            ln1.backward(be, s.ln1, d_a, d_x, mode, true);
        } else {
            auto d_z = sc.tensor(shape);
            ln2.backward(be, s.ln2, d_y, d_z, mode);
            auto d_h = sc.tensor(shape);
            be.copy(d_z, d_h);
            mlp.backward(be, s.mlp, d_z, d_h, mode, true);
            if (cross) {
                auto d_u2 = sc.tensor(shape);
                ln_cross->backward(be, s.ln_cross, d_h, d_u2, mode);
                be.copy(d_u2, d_h);
                cross->backward(be, s.cross, d_u2, d_h, d_enc, mode, true);
            }
            auto d_u = sc.tensor(shape);
            ln1.backward(be, s.ln1, d_h, d_u, mode);
            if (!d_x.empty()) be.copy(d_u, d_x);
            attn.backward(be, s.attn, d_u, d_x, {}, mode, true);
        }
    }

private:
    static typename Attention::Config attention_config(const Config& c, bool is_cross) {
        return {.dim = c.dim, .heads = c.heads, .kv_dim = is_cross ? c.cross_dim : 0, .scale = c.attn_scale,
                .q_name = c.names.q, .k_name = c.names.k, .v_name = c.names.v, .out_name = c.names.out};
    }
};

}  // namespace mmalign
