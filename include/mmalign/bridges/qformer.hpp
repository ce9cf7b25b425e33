// mmalign/bridges/qformer.hpp — BLIP-2's Querying Transformer (Li et al. 2023, §3.1): learned query
// tokens that read a frozen image encoder's states through cross-attention, optionally next to
// text. What transformers computes with Blip2QFormerModel (modeling_blip_2.py) fed as its callers
// feed it:
//
//   x [B, Q+T, D] = [query_tokens expanded to B | word_embeddings[ids] + position_embeddings[0..T)]
//                   (Blip2TextEmbeddings: the queries get no position; text positions start at 0;
//                    Blip2TextEmbeddings has no LayerNorm of its own)
//   e = LayerNorm(x)                 Blip2QFormerModel.layernorm, over queries and text alike; its
//                                    dropout is the identity at inference (mmalign has no dropout)
//   y = L QFormerLayers (bridges/qformer_layer.hpp): self-attention over all rows with the chosen
//       mask (bridges/qformer_masks.hpp); on the Q query rows cross-attention to the image in layers
//       i % cross_attention_frequency == 0 and the query feed-forward; the text rows the text
//       feed-forward, never the image.
//
// Passes (Input): queries alone (Blip2VisionModelWithProjection, Blip2Model.get_qformer_features,
// ITC's image side); text alone, queries = false (HF query_length 0: Blip2TextModelWithProjection,
// ITC's text side); queries and text (Blip2ForImageTextRetrieval's ITM, bidirectional; or stage-1
// image-grounded generation, multimodal_causal). The query tokens and the text embeddings are
// parameters of the HF models that hold the Q-Former, not of Blip2QFormerModel: visit() lists the
// Q-Former's own keys, visit_query_tokens() and visit_text_embeddings() the others under the names
// the caller gives.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "mmalign/bridges/qformer_layer.hpp"
#include "mmalign/bridges/qformer_masks.hpp"
#include "mmalign/nn/embedding.hpp"

namespace mmalign {

/// The sizes of a Q-Former (transformers' Blip2QFormerConfig, configuration_blip_2.py); the same for
/// every backend (QFormer<B>::Config).
struct QFormerConfig {
    index_t hidden = 768, layers = 12, heads = 12, intermediate = 3072;
    Activation activation = Activation::gelu;
    double eps = 1e-12;
    index_t encoder_width = 1408;             // HF encoder_hidden_size
    index_t cross_attention_frequency = 2;
    index_t num_queries = 32;                 // learned query tokens (0: none)
    bool text = false;                        // text path: word/position embeddings + text FFN in every layer
    index_t vocab_size = 30522, max_positions = 512;
    std::int64_t pad_token_id = 0;  // Blip2TextEmbeddings' padding_idx: that word row gets no gradient (−1: none)

    /// Blip2QFormerConfig's config.json fields (configuration_blip_2.py). num_queries is
    /// Blip2Config's num_query_tokens and encoder_width its vision hidden_size: the enclosing
    /// config sets both.
    template <class F>
    void hf_fields(F&& f) {
        f("vocab_size", vocab_size, 1);
        f("hidden_size", hidden, 1);
        f("num_hidden_layers", layers, 0);
        f("num_attention_heads", heads, 1);
        f("intermediate_size", intermediate, 1);
        f("hidden_act", activation);
        f("max_position_embeddings", max_positions, 1);
        f("layer_norm_eps", eps);
        f("cross_attention_frequency", cross_attention_frequency, 1);
        f("encoder_hidden_size", encoder_width, 1);
        f("use_qformer_text_input", text);
        f("pad_token_id", pad_token_id);
    }
    /// What makes the sizes unusable together, in HF's field names, or empty.
    std::string hf_problem() const {
        if (hidden <= 0 || heads <= 0 || hidden % heads)
            return "hidden_size " + std::to_string(hidden) + " is not a positive multiple of num_attention_heads " +
                   std::to_string(heads);
        if (layers < 0) return "num_hidden_layers " + std::to_string(layers) + " is negative";
        if (cross_attention_frequency < 1)
            return "cross_attention_frequency " + std::to_string(cross_attention_frequency) + " is not positive";
        if (intermediate <= 0 || encoder_width <= 0 || num_queries < 0)
            return "intermediate_size " + std::to_string(intermediate) + ", encoder_hidden_size " +
                   std::to_string(encoder_width) + " and num_query_tokens " + std::to_string(num_queries) +
                   " must be positive (num_query_tokens may be 0)";
        if (text && (vocab_size <= 0 || max_positions <= 0))
            return "vocab_size " + std::to_string(vocab_size) + " and max_position_embeddings " +
                   std::to_string(max_positions) + " must be positive with use_qformer_text_input";
        if (text && (pad_token_id < -1 || pad_token_id >= vocab_size))
            return "pad_token_id " + std::to_string(pad_token_id) + " is outside the vocabulary of " +
                   std::to_string(vocab_size);
        // As the other towers: a table or weight beyond 2^32 elements is refused as absurd.
        constexpr double limit = 4294967296.0;
        const double widest = std::max({double(intermediate), double(encoder_width), double(num_queries), double(hidden),
                                        text ? double(vocab_size) : 0.0, text ? double(max_positions) : 0.0});
        if (widest * double(hidden) > limit)
            return "hidden_size " + std::to_string(hidden) + " with intermediate_size " + std::to_string(intermediate) +
                   ", encoder_hidden_size " + std::to_string(encoder_width) + ", num_query_tokens " +
                   std::to_string(num_queries) + (text ? ", vocab_size " + std::to_string(vocab_size) : std::string()) +
                   " gives a table or weight of more than 2^32 elements";
        return {};
    }
};

template <Backend B>
struct QFormer {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;
    using Param = BasicParameter<Buffer>;
    using Layer = QFormerLayer<B>;

    using Config = QFormerConfig;

    struct Input {
        index_t batch = 0;
        bool queries = true;                          // rows 0..Q are the learned queries (expanded to batch)
        std::span<const std::int32_t> ids{};          // [batch·T] text tokens, or empty
        std::span<const std::int32_t> attention_mask{};  // [batch·T] 1 keep / 0 pad, or empty (all kept)
        ConstView<T> image{};                         // [batch, Te, encoder_width] or empty (no cross-attention)
        QFormerAttention attention = QFormerAttention::bidirectional;  // or multimodal_causal (ITG, stage 1)
    };
    struct Saved {
        typename Embedding<B>::Saved words;
        typename LayerNorm<B>::Saved layernorm;
        std::vector<typename Layer::Saved> layers;
        index_t batch = 0, queries = 0, text = 0;
    };

    Config config;
    Param query_tokens;  // [1, Q, D] (HF top-level "query_tokens")
    LayerNorm<B> layernorm;
    std::vector<Layer> layers;
    std::optional<Embedding<B>> word_embeddings;                // with Config::text
    std::optional<LearnedPositions<B>> position_embeddings;     // with Config::text

    QFormer() = default;
    explicit QFormer(Config c) : config(c), layernorm({.dim = c.hidden, .eps = c.eps}) {
        if (const std::string problem = c.hf_problem(); !problem.empty()) throw ArgumentError("QFormer: " + problem);
        query_tokens = Param(Shape{1, c.num_queries, c.hidden});
        layers.reserve(static_cast<std::size_t>(c.layers));
        for (index_t i = 0; i < c.layers; ++i)
            layers.emplace_back(typename Layer::Config{
                .dim = c.hidden, .heads = c.heads, .mlp_hidden = c.intermediate, .activation = c.activation, .eps = c.eps,
                .cross_attention = i % c.cross_attention_frequency == 0, .cross_dim = c.encoder_width, .text = c.text});
        if (c.text) {
            word_embeddings.emplace(
                typename Embedding<B>::Config{.rows = c.vocab_size, .dim = c.hidden, .padding_idx = c.pad_token_id});
            position_embeddings.emplace(typename LearnedPositions<B>::Config{.max_positions = c.max_positions, .dim = c.hidden});
        }
    }

    /// Blip2QFormerModel's keys: layernorm.*, encoder.layer.{i}.*
    template <class F>
    void visit(F&& f, const std::string& prefix = "qformer") {
        layernorm.visit(f, join_name(prefix, "layernorm"));
        for (std::size_t i = 0; i < layers.size(); ++i)
            layers[i].visit(f, join_name(prefix, "encoder.layer." + std::to_string(i)));
    }
    template <class F>
    void visit_query_tokens(F&& f, const std::string& name = "query_tokens") {
        if (config.num_queries > 0) f(name, query_tokens);
    }
    /// Blip2TextEmbeddings' keys (word_embeddings.weight, position_embeddings.weight); only with Config::text.
    template <class F>
    void visit_text_embeddings(F&& f, const std::string& prefix = "embeddings") {
        if (!config.text) throw ArgumentError("QFormer: this Q-Former has no text path (use_qformer_text_input is false)");
        word_embeddings->visit(f, join_name(prefix, "word_embeddings"));
        position_embeddings->visit(f, join_name(prefix, "position_embeddings"));
    }

    /// The number of rows forward writes per batch row: Q (with queries) + T.
    index_t length(const Input& in) const {
        const auto [Q, Tn] = check(in);
        return Q + Tn;
    }

    /// out [batch, Q+T, D] (Q = 0 when !queries).
    void forward(B& be, const Input& in, TensorView<T> out, Saved* s = nullptr) const {
        const auto [Q, Tn] = check(in);
        const index_t Bn = in.batch, N = Q + Tn, D = config.hidden;
        expect_shape(out.shape(), {Bn, N, D}, "QFormer output");
        if (!in.image.empty()) {
            // One image may serve every row in inference (its keys and values projected once).
            const bool shared = !s && in.image.rank() == 3 && in.image.dim(0) == 1;
            expect_shape(in.image.shape(), {shared ? 1 : Bn, -1, config.encoder_width}, "QFormer image states");
        }
        auto sc = be.scope();
        // Self-attention mask, its pattern in the backend's memory; key_keep uploaded once for all layers.
        const QFormerMask<T> mask = qformer_mask<T>(in.attention, Bn, Q, Tn, in.attention_mask);
        TensorView<T> pattern;
        if (!mask.pattern.empty()) {
            pattern = sc.tensor({N, N});  // [N, N]
            be.from_host(ConstView<T>(mask.pattern.data(), Shape{N, N}), pattern);
        }
        typename B::IndexTensor keep;  // [B, N] in the backend's memory
        AttentionMask<T> self_mask = mask.view(pattern.data());
        if (self_mask.key_keep) self_mask = be.upload_mask(self_mask, Bn * N, keep);

        auto x = sc.tensor({Bn, N, D});  // [B, N, D]: queries, then word + position embeddings
        embed(be, in, Q, Tn, x, s);
        const index_t L = static_cast<index_t>(layers.size());
        if (s) {
            s->layers.resize(layers.size());
            s->batch = Bn, s->queries = Q, s->text = Tn;
        }
        // The LayerNorm writes into layer 0's saved input (training) and each layer into the next one's.
        auto into = [&](index_t i) -> TensorView<T> {
            if (i >= L) return out;
            if (!s) return sc.tensor({Bn, N, D});
            Buffer& next = s->layers[static_cast<std::size_t>(i)].input();
            next.resize(Shape{Bn, N, D});
            return next.view();
        };
        TensorView<T> h = into(0);  // [B, N, D]
        layernorm.forward(be, x, h, s ? &s->layernorm : nullptr);
        for (index_t i = 0; i < L; ++i) {
            const Layer& layer = layers[static_cast<std::size_t>(i)];
            TensorView<T> next = into(i + 1);  // [B, N, D]
            layer.forward(be, h, Q, layer.cross ? in.image : ConstView<T>{}, self_mask, next,
                          s ? &s->layers[static_cast<std::size_t>(i)] : nullptr);
            h = next;
        }
    }

    /// d_out [batch, Q+T, D] → d_image (accumulated; may be empty) and the parameter gradients
    /// (query tokens, text embeddings, LayerNorm, layers) accumulated per `mode`.
    void backward(B& be, Saved& s, ConstView<T> d_out, TensorView<T> d_image, GradMode mode) {
        const index_t Bn = s.batch, Q = s.queries, Tn = s.text, N = Q + Tn, D = config.hidden;
        if (Bn <= 0) throw ArgumentError("QFormer backward: this Saved holds no forward pass");
        expect_shape(d_out.shape(), {Bn, N, D}, "QFormer backward d_out");
        if (!d_image.empty()) expect_shape(d_image.shape(), {Bn, -1, config.encoder_width}, "QFormer backward d_image");
        auto sc = be.scope();
        TensorView<T> bufs[2] = {sc.tensor({Bn, N, D}), sc.tensor({Bn, N, D})};  // [B, N, D] each
        ConstView<T> d = d_out;
        for (index_t i = static_cast<index_t>(layers.size()) - 1; i >= 0; --i) {
            Layer& layer = layers[static_cast<std::size_t>(i)];
            TensorView<T> d_in = bufs[i % 2];
            layer.backward(be, s.layers[static_cast<std::size_t>(i)], d, d_in, layer.cross ? d_image : TensorView<T>{}, mode);
            d = d_in;
        }
        TensorView<T> d_x = sc.tensor({Bn, N, D});  // [B, N, D]: d of the embeddings before the LayerNorm
        layernorm.backward(be, s.layernorm, d, d_x, mode);
        if (Q > 0) {
            if (T* g = query_tokens.grad_target(mode == GradMode::accumulate)) {  // Σ over the batch rows
                TensorView<T> dq = Tn == 0 ? d_x : sc.tensor({Bn, Q, D});  // [B, Q, D]
                if (Tn > 0) copy_positions(be, ConstView<T>(d_x), 0, dq, 0, Q);
                be.sum_rows_accumulate(ConstView<T>(dq.data(), Shape{Bn, Q * D}), g);
            }
        }
        if (Tn > 0) {
            TensorView<T> dt = Q == 0 ? d_x : sc.tensor({Bn, Tn, D});  // [B, T, D]
            if (Q > 0) copy_positions(be, ConstView<T>(d_x), Q, dt, 0, Tn);
            position_embeddings->backward(be, {0}, dt, mode);
            word_embeddings->backward(be, s.words, dt, mode);
        }
    }

private:
    /// Checks the input against the config; returns (Q, T).
    std::pair<index_t, index_t> check(const Input& in) const {
        if (in.batch <= 0) throw ShapeError("QFormer: batch " + std::to_string(in.batch) + " must be positive");
        if (in.queries && config.num_queries == 0)
            throw ArgumentError("QFormer: queries asked for, but this Q-Former has no query tokens (num_query_tokens 0)");
        const index_t Q = in.queries ? config.num_queries : 0;
        index_t Tn = 0;
        if (!in.ids.empty()) {
            if (!config.text)
                throw ArgumentError("QFormer: text ids given to a Q-Former without a text path (use_qformer_text_input is false)");
            if (static_cast<index_t>(in.ids.size()) % in.batch)
                throw ShapeError("QFormer: " + std::to_string(in.ids.size()) + " ids do not form " + std::to_string(in.batch) + " rows");
            Tn = static_cast<index_t>(in.ids.size()) / in.batch;
            for (std::size_t i = 0; i < in.ids.size(); ++i)
                if (in.ids[i] < 0 || in.ids[i] >= config.vocab_size)
                    throw ArgumentError("QFormer: id " + std::to_string(in.ids[i]) + " at position " + std::to_string(i) +
                                        " is outside the vocabulary [0, " + std::to_string(config.vocab_size) + ")");
            if (Tn > config.max_positions)
                throw ShapeError("QFormer: text length " + std::to_string(Tn) + " exceeds max_position_embeddings " +
                                 std::to_string(config.max_positions));
        }
        if (!in.attention_mask.empty() && in.attention_mask.size() != in.ids.size())
            throw ShapeError("QFormer attention_mask: expected " + std::to_string(in.ids.size()) + " entries (one per id), found " +
                             std::to_string(in.attention_mask.size()));
        if (Q + Tn == 0) throw ArgumentError("QFormer: neither queries nor text ids given");
        if (!in.image.empty() && Q == 0)
            throw ArgumentError("QFormer: image states given without queries (only query rows cross-attend)");
        if (in.image.empty() && Q > 0 && !layers.empty())
            throw ArgumentError("QFormer: queries need the image states (layer 0 cross-attends)");
        return {Q, Tn};
    }

    /// x [B, Q+T, D] = [query_tokens per row | word[ids] + position[0..T)].
    void embed(B& be, const Input& in, index_t Q, index_t Tn, TensorView<T> x, Saved* s) const {
        const index_t Bn = in.batch, N = Q + Tn, D = config.hidden;
        for (index_t b = 0; b < Bn && Q > 0; ++b)
            be.copy(ConstView<T>(query_tokens.value.data(), Shape{Q * D}), TensorView<T>(x.data() + b * N * D, Shape{Q * D}));
        if (Tn == 0) return;
        auto sc = be.scope();
        TensorView<T> e = Q == 0 ? x : sc.tensor({Bn, Tn, D});  // [B, T, D]
        word_embeddings->forward(be, in.ids, e, s ? &s->words : nullptr);
        position_embeddings->forward(be, e, e, 0);
        if (Q > 0) copy_positions(be, ConstView<T>(e), 0, x, Q, Tn);
    }
};

}  // namespace mmalign
