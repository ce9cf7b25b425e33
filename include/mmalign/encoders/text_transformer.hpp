// mmalign/encoders/text_transformer.hpp — a pre-norm transformer text tower: CLIP's
// (transformers' CLIPTextTransformer, modeling_clip.py) by default, its mask and pooling Config values.
//
//   ids [B, T] → token_embedding[ids] + position_embedding[0..T) → L pre-norm blocks under the
//   padding mask (and a causal mask when Config::causal) → final_layer_norm → last_hidden_state
//   [B, T, D];  pooled[b] = last_hidden_state[b, pool_b] [B, D]
// Where each row pools (Config::pooling, TextPooling):
//   cls: position 0 (a [CLS]-style first token);  none: no pooled output;
//   the EOS rules: the two transformers' CLIP has used (hf_eos2_argmax, argmax) and two stricter
//   variants (first_eos, hf_all_rows_max); all four agree on CLIP-tokenized input:
//   hf_eos2_argmax (default; transformers ≥ 4.31 up to 5.25 at least): eos_token_id == 2 (the
//       legacy value still in the OpenAI hub configs) → argmax(ids), else the first position
//       whose id equals eos_token_id (position 0 when there is none);
//   argmax: argmax(ids) always (before transformers PR #24773) — the first EOS, 49407 being the
//       largest id;
//   first_eos: the first position equal to eos_token_id always;
//   hf_all_rows_max: argmax(ids) when every row's largest id is 49407, else first_eos.
// HF keys (under "text_model", names from TextNames): embeddings.token_embedding.weight [V, D],
// embeddings.position_embedding.weight [P, D], encoder.layers.{i}.*, final_layer_norm.*
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mmalign/nn/embedding.hpp"
#include "mmalign/nn/transformer_stack.hpp"

namespace mmalign {

/// Where the text tower takes its pooled output (see the header comment).
enum class TextPooling { hf_eos2_argmax, argmax, first_eos, hf_all_rows_max, cls, none };

/// State-dict names of the text tower's parts, relative to its prefix ("text_model").
struct TextNames {
    std::string embeddings = "embeddings";
    std::string token_embedding = "token_embedding";        // under embeddings
    std::string position_embedding = "position_embedding";  // under embeddings
    std::string encoder = "encoder";
    std::string final_norm = "final_layer_norm";
    BlockNames block = BlockNames::clip();
};

template <Backend B>
struct TextTransformer {
    using T = typename B::Scalar;
    using Stack = TransformerStack<B, PreNorm>;

    struct Config {
        index_t vocab_size = 49408;
        index_t max_positions = 77;
        index_t hidden = 512;
        index_t layers = 12;
        index_t heads = 8;
        index_t mlp_hidden = 2048;
        Activation activation = Activation::quick_gelu;
        double eps = 1e-5;
        std::int64_t eos_token_id = 49407;
        TextPooling pooling = TextPooling::hf_eos2_argmax;
        bool causal = true;  // false: bidirectional (only the padding mask)
        TextNames names{};

        /// transformers' CLIPTextConfig defaults: the default Config.
        static Config clip() { return {}; }

        /// The config.json fields (transformers' CLIPTextConfig names; io/hf_config.hpp reads them).
        template <class F>
        void hf_fields(F&& f) {
            f("vocab_size", vocab_size, 1);
            f("max_position_embeddings", max_positions, 1);
            f("hidden_size", hidden, 1);
            f("num_hidden_layers", layers, 0);
            f("num_attention_heads", heads, 1);
            f("intermediate_size", mlp_hidden, 1);
            f("hidden_act", activation);
            f("layer_norm_eps", eps);
            f("eos_token_id", eos_token_id);
        }
        /// What makes the sizes unusable together, in HF's field names, or empty.
        std::string hf_problem() const {
            if (heads > 0 && hidden % heads)
                return "hidden_size " + std::to_string(hidden) + " is not a multiple of num_attention_heads " +
                       std::to_string(heads);
            // As VisionTransformer: a table or weight beyond 2^32 elements is refused as absurd.
            constexpr double limit = 4294967296.0;
            const double widest = std::max({double(vocab_size), double(max_positions), double(mlp_hidden)});
            if (widest * double(hidden) > limit)
                return "hidden_size " + std::to_string(hidden) + " with vocab_size " + std::to_string(vocab_size) +
                       ", max_position_embeddings " + std::to_string(max_positions) + " and intermediate_size " +
                       std::to_string(mlp_hidden) + " gives a table or weight of more than 2^32 elements";
            return {};
        }
    };
    struct Saved {
        typename Embedding<B>::Saved tokens;
        typename Stack::Saved encoder;
        typename LayerNorm<B>::Saved final_ln;
        std::vector<index_t> pool_index;  // [B], empty when forward pooled nothing
        index_t batch = 0;
    };

    Config config;
    Embedding<B> token_embedding;
    LearnedPositions<B> position_embedding;
    Stack encoder;
    LayerNorm<B> final_layer_norm;

    TextTransformer() = default;
    explicit TextTransformer(Config c)
        : config(c),
          token_embedding({.rows = c.vocab_size, .dim = c.hidden}),
          position_embedding({.max_positions = c.max_positions, .dim = c.hidden}),
          encoder({.layers = c.layers,
                   .block = {.dim = c.hidden, .heads = c.heads, .mlp_hidden = c.mlp_hidden, .activation = c.activation,
                             .eps = c.eps, .names = c.names.block}}),
          final_layer_norm({.dim = c.hidden, .eps = c.eps}) {}

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        const TextNames& n = config.names;
        const std::string emb = join_name(prefix, n.embeddings);
        token_embedding.visit(f, join_name(emb, n.token_embedding));
        position_embedding.visit(f, join_name(emb, n.position_embedding));
        encoder.visit(f, join_name(prefix, n.encoder));
        final_layer_norm.visit(f, join_name(prefix, n.final_norm));
    }

    /// The position each row is pooled at (see the header comment); empty for TextPooling::none.
    std::vector<index_t> pool_positions(std::span<const std::int32_t> ids, index_t Bn, index_t Tn) const {
        if (config.pooling == TextPooling::none) return {};
        std::vector<index_t> idx(static_cast<std::size_t>(Bn), 0);
        if (config.pooling == TextPooling::cls) return idx;
        bool use_argmax = false;
        switch (config.pooling) {
            case TextPooling::hf_eos2_argmax: use_argmax = config.eos_token_id == 2; break;
            case TextPooling::argmax: use_argmax = true; break;
            case TextPooling::first_eos: use_argmax = false; break;
            case TextPooling::hf_all_rows_max:
                use_argmax = true;
                for (index_t b = 0; b < Bn; ++b)
                    use_argmax &= *std::max_element(ids.data() + b * Tn, ids.data() + (b + 1) * Tn) == 49407;
                break;
            case TextPooling::cls:
            case TextPooling::none: break;
        }
        for (index_t b = 0; b < Bn; ++b) {
            const std::int32_t* row = ids.data() + b * Tn;
            index_t best = 0;
            for (index_t t = 0; t < Tn; ++t) {
                if (use_argmax) {
                    if (row[t] > row[best]) best = t;  // strict: torch.argmax returns the first maximum
                } else if (row[t] == config.eos_token_id) {
                    best = t;
                    break;
                }
            }
            idx[static_cast<std::size_t>(b)] = best;
        }
        return idx;
    }

    /// ids [B·T] (row-major [B, T]); attention_mask [B·T] (HF's 0/1, may be empty: all ones).
    /// pooled [B, D] and last_hidden [B, T, D]: either may be an empty view (not computed), not
    /// both; pooled must be empty with TextPooling::none.
    void forward(B& be, std::span<const std::int32_t> ids, std::span<const std::int32_t> attention_mask, index_t Bn,
                 TensorView<T> last_hidden, TensorView<T> pooled, Saved* s = nullptr) const {
        const index_t D = config.hidden;
        if (Bn <= 0 || ids.empty() || static_cast<index_t>(ids.size()) % Bn)
            throw ShapeError("TextTransformer: " + std::to_string(ids.size()) + " ids do not form " + std::to_string(Bn) +
                             " rows");
        const index_t Tn = static_cast<index_t>(ids.size()) / Bn;
        if (!attention_mask.empty() && attention_mask.size() != ids.size())
            throw ShapeError("TextTransformer attention_mask: expected " + std::to_string(ids.size()) +
                             " entries, found " + std::to_string(attention_mask.size()));
        if (Tn > config.max_positions)
            throw ShapeError("TextTransformer: sequence length " + std::to_string(Tn) +
                             " exceeds max_position_embeddings " + std::to_string(config.max_positions));
        if (!pooled.empty()) {
            if (config.pooling == TextPooling::none)
                throw ArgumentError("TextTransformer: this tower has no pooled output (pooling none)");
            expect_shape(pooled.shape(), {Bn, D}, "TextTransformer pooled output");
        }
        if (!last_hidden.empty()) expect_shape(last_hidden.shape(), {Bn, Tn, D}, "TextTransformer last_hidden_state");
        if (pooled.empty() && last_hidden.empty())
            throw ArgumentError("TextTransformer: neither last_hidden_state nor the pooled output was asked for");
        auto sc = be.scope();
        auto emb = sc.tensor({Bn, Tn, D});
        token_embedding.forward(be, ids, emb, s ? &s->tokens : nullptr);
        position_embedding.forward(be, emb, emb);
        auto h = sc.tensor({Bn, Tn, D});
        const AttentionMask<T> mask{.key_keep = attention_mask.empty() ? nullptr : attention_mask.data(),
                                    .causal = config.causal};
        encoder.forward(be, emb, {}, mask, {}, h, s ? &s->encoder : nullptr);
        TensorView<T> last = last_hidden.empty() ? sc.tensor({Bn, Tn, D}) : last_hidden;
        final_layer_norm.forward(be, h, last, s ? &s->final_ln : nullptr);
        std::vector<index_t> idx;
        if (!pooled.empty()) {
            idx = pool_positions(ids, Bn, Tn);
            for (index_t b = 0; b < Bn; ++b)
                be.copy(ConstView<T>(last.data() + (b * Tn + idx[static_cast<std::size_t>(b)]) * D, Shape{D}),
                        TensorView<T>(pooled.data() + b * D, Shape{D}));
        }
        if (s) {
            s->pool_index = std::move(idx);
            s->batch = Bn;
        }
    }

    /// d_pooled [B, D] and d_last_hidden [B, T, D], either may be empty (d_pooled must be when
    /// forward pooled nothing). Parameter gradients accumulate.
    void backward(B& be, Saved& s, ConstView<T> d_pooled, ConstView<T> d_last_hidden, GradMode mode) {
        const index_t D = config.hidden, Bn = s.batch;
        if (Bn <= 0) throw ArgumentError("TextTransformer backward: this Saved holds no forward pass");
        const index_t Tn = static_cast<index_t>(s.tokens.ids.size()) / Bn;
        if (!d_pooled.empty() && s.pool_index.empty())
            throw ArgumentError("TextTransformer backward: d_pooled given, but forward computed no pooled output");
        if (!d_pooled.empty()) expect_shape(d_pooled.shape(), {Bn, D}, "TextTransformer backward d_pooled");
        if (!d_last_hidden.empty()) expect_shape(d_last_hidden.shape(), {Bn, Tn, D}, "TextTransformer backward d_last_hidden");
        auto sc = be.scope();
        auto d_last = sc.tensor({Bn, Tn, D});
        if (d_last_hidden.empty()) be.fill(d_last, T(0));
        else be.copy(d_last_hidden, d_last);
        if (!d_pooled.empty())
            for (index_t b = 0; b < Bn; ++b)
                be.axpy(T(1), ConstView<T>(d_pooled.data() + b * D, Shape{D}),
                        TensorView<T>(d_last.data() + (b * Tn + s.pool_index[static_cast<std::size_t>(b)]) * D, Shape{D}));
        auto d_h = sc.tensor({Bn, Tn, D});
        final_layer_norm.backward(be, s.final_ln, d_last, d_h, mode);
        auto d_emb = sc.tensor({Bn, Tn, D});
        encoder.backward(be, s.encoder, d_h, d_emb, {}, mode);
        position_embedding.backward(be, {0}, d_emb, mode);
        token_embedding.backward(be, s.tokens, d_emb, mode);
    }
};

}  // namespace mmalign
