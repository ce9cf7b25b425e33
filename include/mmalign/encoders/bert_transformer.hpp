// mmalign/encoders/bert_transformer.hpp — a BERT-family text transformer (Devlin et al. 2019): the
// text towers of BLIP (transformers' BlipTextModel, modeling_blip_text.py) and of BERT itself
// (BertModel, modeling_bert.py), and the layer stack of BLIP's text decoder.
//
//   ids [B, T] → word_embeddings[ids] + position_embeddings[p0 .. p0+T) (+ token_type_embeddings[types])
//   → LayerNorm → L post-norm blocks (self-attention, [cross-attention to enc], feed-forward)
//   → last_hidden_state [B, T, D];  pooled = tanh(pooler.dense(last_hidden_state[:, 0])) [B, D]
// Encoder mode: the self-attention sees every non-padding key (HF create_bidirectional_mask);
// decoder mode (Input::causal, BlipTextLMHeadModel): each query sees the non-padding keys up to its
// own position (create_causal_mask). enc [B, Te, De] (image or question states) feeds every
// cross-attending layer; empty, the cross-attention is skipped (BLIP's unimodal text encoding).
// Positions start at p0 = the number of cached positions (BlipTextEmbeddings: position_ids =
// arange(cache_length, cache_length + T)), independent of padding.
// Decoding (start_cache / forward_cached) keeps a KV cache per layer for the self-attention and the
// cross-attention's keys/values of enc, projected once (nn/transformer_stack.hpp).
// Which layers hold cross-attention is a Config value: BLIP's text config has is_decoder = true,
// which gives every layer a `crossattention` (BlipTextLayer); BERT's add_cross_attention does the same.
// HF keys (under the tower's prefix): embeddings.{word_embeddings,position_embeddings,
// token_type_embeddings}.weight, embeddings.LayerNorm.*, encoder.layer.{i}.* (BlockNames::bert()),
// pooler.dense.*.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "mmalign/nn/embedding.hpp"
#include "mmalign/nn/linear.hpp"
#include "mmalign/nn/transformer_stack.hpp"

namespace mmalign {

/// State-dict names of a BERT tower's parts, relative to its prefix ("text_encoder", "bert").
struct BertNames {
    std::string embeddings = "embeddings";
    std::string word_embeddings = "word_embeddings";              // under embeddings
    std::string position_embeddings = "position_embeddings";      // under embeddings
    std::string token_type_embeddings = "token_type_embeddings";  // under embeddings
    std::string embedding_norm = "LayerNorm";                     // under embeddings
    std::string encoder = "encoder";
    std::string layer = "layer";  // encoder.layer.{i}
    std::string pooler = "pooler.dense";
    BlockNames block = BlockNames::bert();
};

template <Backend B>
struct BertTransformer {
    using T = typename B::Scalar;
    using Stack = TransformerStack<B, PostNorm>;

    struct Config {
        index_t vocab_size = 30522;
        index_t max_positions = 512;
        index_t type_vocab_size = 0;  // 0: no token-type embeddings (BLIP)
        index_t hidden = 768;
        index_t layers = 12;
        index_t heads = 12;
        index_t mlp_hidden = 3072;
        Activation activation = Activation::gelu;
        double eps = 1e-12;
        bool cross_attention = false;  // every layer attends to encoder states
        index_t cross_dim = 0;         // their width (encoder_hidden_size); 0: hidden
        bool pooler = false;
        BertNames names{};

        /// transformers' BertConfig defaults (bert-base-uncased), with BertModel's pooler.
        static Config bert() {
            Config c;
            c.type_vocab_size = 2;
            c.pooler = true;
            return c;
        }
        /// transformers' BlipTextConfig defaults: 30524 ids ([DEC] and [ENC] added), 8 heads (the
        /// hub checkpoints set 12), no token types, cross-attention in every layer (is_decoder).
        static Config blip_text() {
            Config c;
            c.vocab_size = 30524;
            c.heads = 8;
            c.cross_attention = true;
            return c;
        }

        /// The config.json fields BertConfig and BlipTextConfig share (io/hf_config.hpp reads them);
        /// which field turns the cross-attention on differs per model and is read by its config.
        template <class F>
        void hf_fields(F&& f) {
            f("vocab_size", vocab_size, 1);
            f("max_position_embeddings", max_positions, 1);
            f("type_vocab_size", type_vocab_size, 0);
            f("hidden_size", hidden, 1);
            f("num_hidden_layers", layers, 0);
            f("num_attention_heads", heads, 1);
            f("intermediate_size", mlp_hidden, 1);
            f("hidden_act", activation);
            f("layer_norm_eps", eps);
        }
        /// What makes the sizes unusable together, in HF's field names, or empty.
        std::string hf_problem() const {
            if (heads > 0 && hidden % heads)
                return "hidden_size " + std::to_string(hidden) + " is not a multiple of num_attention_heads " +
                       std::to_string(heads);
            // As the other towers: a table or weight beyond 2^32 elements is refused as absurd.
            constexpr double limit = 4294967296.0;
            const double widest = std::max({double(vocab_size), double(max_positions), double(mlp_hidden),
                                            double(type_vocab_size), double(cross_dim)});
            if (widest * double(hidden) > limit)
                return "hidden_size " + std::to_string(hidden) + " with vocab_size " + std::to_string(vocab_size) +
                       ", max_position_embeddings " + std::to_string(max_positions) + " and intermediate_size " +
                       std::to_string(mlp_hidden) + " gives a table or weight of more than 2^32 elements";
            return {};
        }
    };

    /// One forward's text and context. Spans are row-major [B, T] (or [B, Te]).
    struct Input {
        std::span<const std::int32_t> ids{};             // [B·T]
        std::span<const std::int32_t> attention_mask{};  // [B·T] HF's 1 token / 0 padding, or empty: all tokens
        index_t batch = 1;
        ConstView<T> encoder_states{};                 // [B, Te, De], or empty: no cross-attention
        std::span<const std::int32_t> encoder_mask{};  // [B·Te], or empty: every encoder position
        bool causal = false;                           // decoder mode
        std::span<const std::int32_t> token_type_ids{};  // [B·T], or empty: all type 0
    };
    struct Saved {
        typename Embedding<B>::Saved words, types;
        typename LayerNorm<B>::Saved embedding_norm;
        typename Stack::Saved encoder;
        typename Linear<B>::Saved pooler;
        index_t batch = 0, length = 0;
        bool pooled = false;
    };
    /// What decoding keeps between steps.
    struct Cache {
        typename Stack::Cache stack;
        index_t length() const { return stack.length; }
        index_t rows() const { return stack.batch; }
        /// Row r becomes old row rows[r] (beam search).
        void reorder(B& be, std::span<const std::int32_t> rows) { stack.reorder(be, rows); }
    };

    Config config;
    Embedding<B> word_embeddings;
    LearnedPositions<B> position_embeddings;
    std::optional<Embedding<B>> token_type_embeddings;
    LayerNorm<B> embedding_norm;
    Stack encoder;
    std::optional<Linear<B>> pooler;

    BertTransformer() = default;
    explicit BertTransformer(Config c)
        : config(c),
          word_embeddings({.rows = c.vocab_size, .dim = c.hidden}),
          position_embeddings({.max_positions = c.max_positions, .dim = c.hidden}),
          embedding_norm({.dim = c.hidden, .eps = c.eps}),
          encoder({.layers = c.layers,
                   .block = {.dim = c.hidden, .heads = c.heads, .mlp_hidden = c.mlp_hidden, .activation = c.activation,
                             .eps = c.eps, .cross_attention = c.cross_attention,
                             .cross_dim = c.cross_dim > 0 ? c.cross_dim : c.hidden, .names = c.names.block},
                   .layer_name = c.names.layer}) {
        if (c.type_vocab_size > 0) token_type_embeddings.emplace(typename Embedding<B>::Config{c.type_vocab_size, c.hidden});
        if (c.pooler)
            pooler.emplace(typename Linear<B>::Config{.in = c.hidden, .out = c.hidden, .activation = Activation::tanh});
    }

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        const BertNames& n = config.names;
        const std::string emb = join_name(prefix, n.embeddings);
        word_embeddings.visit(f, join_name(emb, n.word_embeddings));
        position_embeddings.visit(f, join_name(emb, n.position_embeddings));
        if (token_type_embeddings) token_type_embeddings->visit(f, join_name(emb, n.token_type_embeddings));
        embedding_norm.visit(f, join_name(emb, n.embedding_norm));
        encoder.visit(f, join_name(prefix, n.encoder));
        if (pooler) pooler->visit(f, join_name(prefix, n.pooler));
    }

    /// last_hidden [B, T, D] and pooled [B, D] (with Config::pooler): either may be an empty view
    /// (not computed), not both.
    void forward(B& be, const Input& in, TensorView<T> last_hidden, TensorView<T> pooled, Saved* s = nullptr) const {
        const index_t D = config.hidden, Bn = in.batch, Tn = check_input(in, 0);
        if (!last_hidden.empty()) expect_shape(last_hidden.shape(), {Bn, Tn, D}, "BertTransformer last_hidden_state");
        if (!pooled.empty()) {
            if (!pooler) throw ArgumentError("BertTransformer: this tower has no pooler");
            expect_shape(pooled.shape(), {Bn, D}, "BertTransformer pooled output");
        }
        if (pooled.empty() && last_hidden.empty())
            throw ArgumentError("BertTransformer: neither last_hidden_state nor the pooled output was asked for");
        check_encoder(in.encoder_states, in.encoder_mask, Bn);
        auto sc = be.scope();
        auto x = sc.tensor({Bn, Tn, D});  // [B, T, D]: the embedding LayerNorm's output
        embed(be, in.ids, in.token_type_ids, Bn, 0, x, s);
        TensorView<T> h = last_hidden.empty() ? sc.tensor({Bn, Tn, D}) : last_hidden;  // [B, T, D]
        const AttentionMask<T> self_mask{.key_keep = in.attention_mask.empty() ? nullptr : in.attention_mask.data(),
                                         .causal = in.causal};
        const AttentionMask<T> cross_mask{.key_keep = in.encoder_mask.empty() ? nullptr : in.encoder_mask.data()};
        encoder.forward(be, x, in.encoder_states, self_mask, cross_mask, h, s ? &s->encoder : nullptr);
        if (!pooled.empty()) pool(be, h, pooled, s ? &s->pooler : nullptr);
        if (s) s->batch = Bn, s->length = Tn, s->pooled = !pooled.empty();
    }

    /// d_last_hidden [B, T, D] and d_pooled [B, D], either may be empty; d_enc [B, Te, De]
    /// (accumulated) may be empty. Parameter gradients accumulate.
    void backward(B& be, Saved& s, ConstView<T> d_last_hidden, ConstView<T> d_pooled, TensorView<T> d_enc, GradMode mode) {
        const index_t D = config.hidden, Bn = s.batch, Tn = s.length;
        if (Bn <= 0) throw ArgumentError("BertTransformer backward: this Saved holds no forward pass");
        if (!d_pooled.empty() && !s.pooled)
            throw ArgumentError("BertTransformer backward: d_pooled given, but forward computed no pooled output");
        if (!d_pooled.empty()) expect_shape(d_pooled.shape(), {Bn, D}, "BertTransformer backward d_pooled");
        if (!d_last_hidden.empty()) expect_shape(d_last_hidden.shape(), {Bn, Tn, D}, "BertTransformer backward d_last_hidden");
        auto sc = be.scope();
        auto d_h = sc.tensor({Bn, Tn, D});  // [B, T, D]
        if (d_last_hidden.empty()) be.fill(d_h, T(0));
        else be.copy(d_last_hidden, d_h);
        if (!d_pooled.empty()) {
            auto d_first = sc.tensor({Bn, D});  // [B, D]: d h[:, 0]
            pooler->backward(be, s.pooler, d_pooled, d_first, mode);
            for (index_t b = 0; b < Bn; ++b)
                be.axpy(T(1), ConstView<T>(d_first.data() + b * D, Shape{D}), TensorView<T>(d_h.data() + b * Tn * D, Shape{D}));
        }
        auto d_x = sc.tensor({Bn, Tn, D});  // [B, T, D]
        encoder.backward(be, s.encoder, d_h, d_x, d_enc, mode);
        auto d_emb = sc.tensor({Bn, Tn, D});  // [B, T, D]: d (word + position + type)
        embedding_norm.backward(be, s.embedding_norm, d_x, d_emb, mode);
        position_embeddings.backward(be, {0}, d_emb, mode);
        if (token_type_embeddings) token_type_embeddings->backward(be, s.types, d_emb, mode);
        word_embeddings.backward(be, s.words, d_emb, mode);
    }

    /// Prepares `c` for decoding `rows` rows of up to `max_positions` positions in decoder mode.
    /// enc [rows, Te, De] (optional) is projected to every layer's cross-attention keys and values
    /// now, once; enc_mask [rows·Te] (optional) marks its padding.
    void start_cache(B& be, Cache& c, index_t rows, index_t max_positions, ConstView<T> enc = {},
                     std::span<const std::int32_t> enc_mask = {}) const {
        if (max_positions > config.max_positions)
            throw ShapeError("BertTransformer cache: " + std::to_string(max_positions) +
                             " positions exceed max_position_embeddings " + std::to_string(config.max_positions));
        check_encoder(enc, enc_mask, rows);
        encoder.start_cache(be, c.stack, rows, max_positions, enc, enc_mask);
    }

    /// One decoding step: ids [rows·Tn] (the next Tn tokens of every row), keep [rows·Tn] (1 token,
    /// 0 padding; empty: all tokens) → hidden [rows, Tn, D]. Causal over every cached position.
    /// positions [rows·Tn] (optional) are the position ids of the new tokens; empty, they follow the
    /// cache (cache length + t, as the model's own forward numbers them).
    void forward_cached(B& be, std::span<const std::int32_t> ids, std::span<const std::int32_t> keep, Cache& c,
                        TensorView<T> hidden, std::span<const std::int32_t> positions = {}) const {
        const index_t R = c.rows(), D = config.hidden;
        if (R <= 0 || ids.empty() || static_cast<index_t>(ids.size()) % R)
            throw ShapeError("BertTransformer cached step: " + std::to_string(ids.size()) + " ids do not form " +
                             std::to_string(R) + " rows");
        const index_t Tn = static_cast<index_t>(ids.size()) / R;
        expect_shape(hidden.shape(), {R, Tn, D}, "BertTransformer cached output");
        auto sc = be.scope();
        auto x = sc.tensor({R, Tn, D});  // [R, Tn, D]
        if (!positions.empty() && positions.size() != ids.size())
            throw ShapeError("BertTransformer cached step: " + std::to_string(positions.size()) + " positions for " +
                             std::to_string(ids.size()) + " ids");
        embed(be, ids, {}, R, c.length(), x, nullptr, positions);
        encoder.forward_cached(be, x, c.stack, keep, hidden);
    }

private:
    /// Checks ids, masks and token types; returns T.
    index_t check_input(const Input& in, index_t offset) const {
        const index_t Bn = in.batch;
        if (Bn <= 0 || in.ids.empty() || static_cast<index_t>(in.ids.size()) % Bn)
            throw ShapeError("BertTransformer: " + std::to_string(in.ids.size()) + " ids do not form " +
                             std::to_string(Bn) + " rows");
        const index_t Tn = static_cast<index_t>(in.ids.size()) / Bn;
        if (!in.attention_mask.empty() && in.attention_mask.size() != in.ids.size())
            throw ShapeError("BertTransformer attention_mask: expected " + std::to_string(in.ids.size()) +
                             " entries, found " + std::to_string(in.attention_mask.size()));
        if (!in.token_type_ids.empty() && in.token_type_ids.size() != in.ids.size())
            throw ShapeError("BertTransformer token_type_ids: expected " + std::to_string(in.ids.size()) +
                             " entries, found " + std::to_string(in.token_type_ids.size()));
        if (offset + Tn > config.max_positions)
            throw ShapeError("BertTransformer: sequence length " + std::to_string(offset + Tn) +
                             " exceeds max_position_embeddings " + std::to_string(config.max_positions));
        return Tn;
    }

    void check_encoder(ConstView<T> enc, std::span<const std::int32_t> enc_mask, index_t rows) const {
        if (enc.empty()) {
            if (!enc_mask.empty()) throw ArgumentError("BertTransformer: an encoder mask without encoder states");
            return;
        }
        if (!config.cross_attention)
            throw ArgumentError("BertTransformer: encoder states given to a tower without cross-attention");
        const index_t De = config.cross_dim > 0 ? config.cross_dim : config.hidden;
        // One unmasked row of states may serve every text (inference: nn/attention.hpp projects its
        // keys and values once), as transformers broadcasts one image against many texts.
        const bool shared = enc.rank() == 3 && enc.dim(0) == 1 && enc_mask.empty();
        expect_shape(enc.shape(), {shared ? 1 : rows, -1, De}, "BertTransformer encoder states");
        if (!enc_mask.empty() && static_cast<index_t>(enc_mask.size()) != rows * enc.dim(1))
            throw ShapeError("BertTransformer encoder mask: expected " + std::to_string(rows * enc.dim(1)) +
                             " entries, found " + std::to_string(enc_mask.size()));
    }

    /// x [B, T, D] = LayerNorm(word[ids] + position[p] + type[types]), p = offset + t, or
    /// `positions` [B·T] when given.
    void embed(B& be, std::span<const std::int32_t> ids, std::span<const std::int32_t> types, index_t Bn,
               index_t offset, TensorView<T> x, Saved* s, std::span<const std::int32_t> positions = {}) const {
        const index_t Tn = static_cast<index_t>(ids.size()) / Bn, D = config.hidden;
        if (positions.empty() && offset + Tn > config.max_positions)
            throw ShapeError("BertTransformer: positions up to " + std::to_string(offset + Tn) +
                             " exceed max_position_embeddings " + std::to_string(config.max_positions));
        auto sc = be.scope();
        auto e = sc.tensor({Bn, Tn, D});  // [B, T, D]
        word_embeddings.forward(be, ids, e, s ? &s->words : nullptr);
        if (positions.empty()) {
            position_embeddings.forward(be, e, e, offset);
        } else {  // a gather from the table; the backend refuses a position outside it, naming it
            auto p = sc.tensor({Bn, Tn, D});  // [B, T, D]
            be.embedding_forward(positions.data(), static_cast<index_t>(positions.size()),
                                 position_embeddings.params.weight.value.view(), p);
            be.axpy(T(1), p, e);
        }
        if (token_type_embeddings) {
            // BertEmbeddings: token_type_ids default to zeros (the buffered all-zero row).
            std::vector<std::int32_t> zeros;
            if (types.empty()) zeros.assign(ids.size(), 0), types = zeros;
            auto t = sc.tensor({Bn, Tn, D});  // [B, T, D]
            token_type_embeddings->forward(be, types, t, s ? &s->types : nullptr);
            be.axpy(T(1), t, e);
        }
        embedding_norm.forward(be, e, x, s ? &s->embedding_norm : nullptr);
    }

    /// pooled[b] = tanh(dense(h[b, 0])) (BertPooler, BlipTextPooler).
    void pool(B& be, ConstView<T> h, TensorView<T> pooled, typename Linear<B>::Saved* s) const {
        const index_t Bn = h.dim(0), Tn = h.dim(1), D = config.hidden;
        auto sc = be.scope();
        auto first = sc.tensor({Bn, D});  // [B, D]
        for (index_t b = 0; b < Bn; ++b)
            be.copy(ConstView<T>(h.data() + b * Tn * D, Shape{D}), TensorView<T>(first.data() + b * D, Shape{D}));
        pooler->forward(be, first, pooled, s);
    }
};

}  // namespace mmalign
