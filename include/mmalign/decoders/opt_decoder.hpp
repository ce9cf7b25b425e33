// mmalign/decoders/opt_decoder.hpp — Meta's OPT causal language model (Zhang et al. 2022), as
// transformers' OPTForCausalLM computes it (models/opt/modeling_opt.py): BLIP-2's language model.
//
//   ids [B, T] → embed_tokens [V, Dw] → e [B, T, Dw]   (rows whose id is the soft token: the soft prompt's)
//   → project_in (Dw → D, no bias; only when word_embed_proj_dim ≠ hidden_size) + embed_positions[p + 2]
//   → L OPTDecoderLayers (nn/transformer_stack.hpp; pre-norm, or post-norm as opt-350m:
//     do_layer_norm_before) → final_layer_norm (pre-norm only) → project_out (D → Dw, no bias)
//   → h [B, T, Dw] (OPTModel's last_hidden_state) → lm_head (tied to embed_tokens unless
//     tie_word_embeddings is false) → logits [B, T, V]
// Attention is causal and hides padding keys; q is scaled by head_dim^-½ (OPTAttention).
// Positions: the table has max_position_embeddings + 2 rows (OPTLearnedPositionalEmbedding's
// offset 2). The teacher-forced forward numbers a row as OPTDecoder.forward does without
// position_ids: p = cumsum(mask)·mask − 1, so left padding sits at −1 (table row 1). Decoding
// (Session) numbers them as generate passes position_ids (decoders/session_support.hpp: padding at
// 0, then last + 1). Either way padding positions are never attended to; a position id reaching
// max_position_embeddings is refused, as the table lookup fails in transformers.
// Soft prompts (BLIP-2): transformers' Blip2ForConditionalGeneration builds inputs_embeds as
// `embed_tokens(ids).masked_scatter(ids == image_token_id, language_model_inputs)`. masked_scatter
// fills the selected rows with the source's values in flat (row-major) order over the whole batch:
// the k-th soft token of the batch (row-major over [B, T]) takes source values [k·Dw, (k+1)·Dw).
// With a soft prompt [B, Q, Dq] of width Dq = Dw that is row k of the flattened [B·Q, Dw]; with
// Dq > Dw (opt-350m style: language_projection gives hidden_size 1024, the embeddings are 512) it
// is the first values of the flattened source, not the first Dw columns of each row. That flat
// behaviour is reproduced exactly; a narrower source (Dq < Dw) is refused, and so is a batch with
// more soft tokens than the source holds values for (torch refuses that too). Soft-token ids are
// never looked up; their rows receive no embedding gradient, their gradient goes to the soft
// prompt instead.
// embed_tokens has padding_idx = pad_token_id (nn.Embedding): the lookup's gradient never reaches
// that row (the tied lm_head's still does, as in torch).
// HF keys (under the model's prefix): model.decoder.embed_tokens.weight,
// model.decoder.embed_positions.weight, model.decoder.project_in.weight,
// model.decoder.project_out.weight, model.decoder.final_layer_norm.*, model.decoder.layers.{i}.
// {self_attn.{q,k,v,out}_proj, self_attn_layer_norm, fc1, fc2, final_layer_norm}.*, lm_head.weight
// (a tied copy of embed_tokens, which files may omit, unless tie_word_embeddings is false).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mmalign/decoders/session_support.hpp"
#include "mmalign/nn/embedding.hpp"
#include "mmalign/nn/layer_norm.hpp"
#include "mmalign/nn/linear.hpp"
#include "mmalign/nn/lm_prediction_head.hpp"
#include "mmalign/nn/transformer_stack.hpp"

namespace mmalign {

template <Backend B>
struct OptDecoder {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;
    using Param = BasicParameter<Buffer>;
    using PreStack = TransformerStack<B, PreNorm>;
    using PostStack = TransformerStack<B, PostNorm>;
    using Head = LmPredictionHead<B>;

    /// OPTConfig (configuration_opt.py), its defaults.
    struct Config {
        index_t vocab_size = 50272, hidden = 768, layers = 12, heads = 12, ffn = 3072;
        index_t max_positions = 2048;     // HF max_position_embeddings (the table has 2 more rows)
        index_t word_embed_proj_dim = 0;  // 0: = hidden
        bool pre_norm = true;             // do_layer_norm_before
        bool bias = true;                 // enable_bias
        bool tie_word_embeddings = true;
        Activation activation = Activation::relu;  // activation_function
        double eps = 1e-5;                // nn.LayerNorm's default: OPTConfig has no field for it
        std::int32_t bos_token_id = 2, eos_token_id = 2, pad_token_id = 1;
        bool remove_final_layer_norm = false;  // _remove_final_layer_norm (checkpoints before transformers 4.20.1)
        bool elementwise_affine = true;        // layer_norm_elementwise_affine (only true is supported)

        template <class F>
        void hf_fields(F&& f) {
            f("vocab_size", vocab_size, 1);
            f("hidden_size", hidden, 1);
            f("num_hidden_layers", layers, 0);
            f("num_attention_heads", heads, 1);
            f("ffn_dim", ffn, 1);
            f("max_position_embeddings", max_positions, 1);
            f("word_embed_proj_dim", word_embed_proj_dim, 0);
            f("do_layer_norm_before", pre_norm);
            f("_remove_final_layer_norm", remove_final_layer_norm);
            f("enable_bias", bias);
            f("tie_word_embeddings", tie_word_embeddings);
            f("activation_function", activation);
            f("layer_norm_elementwise_affine", elementwise_affine);
            f("bos_token_id", bos_token_id);
            f("eos_token_id", eos_token_id);
            f("pad_token_id", pad_token_id);
        }
        /// What makes the fields unusable together, in HF's field names, or empty.
        std::string hf_problem() const {
            if (hidden <= 0 || heads <= 0 || hidden % heads)
                return "hidden_size " + std::to_string(hidden) + " is not a positive multiple of num_attention_heads " +
                       std::to_string(heads);
            if (vocab_size <= 0 || ffn <= 0 || max_positions <= 0 || layers < 0 || word_embed_proj_dim < 0)
                return "vocab_size " + std::to_string(vocab_size) + ", ffn_dim " + std::to_string(ffn) +
                       ", max_position_embeddings " + std::to_string(max_positions) + " must be positive, num_hidden_layers " +
                       std::to_string(layers) + " and word_embed_proj_dim " + std::to_string(word_embed_proj_dim) +
                       " not negative";
            if (!elementwise_affine)
                return "layer_norm_elementwise_affine false (LayerNorms without weights) is not supported";
            if (pad_token_id >= vocab_size)
                return "pad_token_id " + std::to_string(pad_token_id) + " is outside the vocabulary of " +
                       std::to_string(vocab_size);
            // As the other towers: a table or weight beyond 2^32 elements is refused as absurd.
            constexpr double limit = 4294967296.0;
            const double widest = std::max({double(vocab_size), double(max_positions) + 2, double(ffn), double(hidden),
                                            double(embed_dim())});  // hidden: the [D, D] attention weights
            if (widest * double(std::max(hidden, embed_dim())) > limit)
                return "hidden_size " + std::to_string(hidden) + " with vocab_size " + std::to_string(vocab_size) +
                       ", max_position_embeddings " + std::to_string(max_positions) + ", ffn_dim " +
                       std::to_string(ffn) + " and word_embed_proj_dim " + std::to_string(embed_dim()) + " gives a table or weight of more than 2^32 elements";
            return {};
        }
        /// Dw: the width of the word embeddings, the soft prompt's rows and last_hidden_state.
        index_t embed_dim() const { return word_embed_proj_dim > 0 ? word_embed_proj_dim : hidden; }
        bool projected() const { return embed_dim() != hidden; }
        bool final_norm() const { return pre_norm && !remove_final_layer_norm; }
    };

    /// One teacher-forced forward's tokens. Spans are row-major [batch, T].
    struct Input {
        index_t batch = 0;
        std::span<const std::int32_t> ids{};             // [batch·T]
        std::span<const std::int32_t> attention_mask{};  // [batch·T] 1 token / 0 padding, or empty (all kept)
        ConstView<T> soft_prompt{};                      // [batch, Q, ≥Dw] or empty
        std::int32_t soft_token = -1;                  // ids equal to it take the soft prompt's values (never looked up)
    };
    /// Which input rows took the soft prompt, and from where.
    struct SoftRow {
        index_t row = 0;     // flat position b·T + t
        index_t source = 0;  // offset of its Dw values in the flattened soft prompt
    };
    struct Saved {
        typename Embedding<B>::Saved words, positions;
        std::vector<SoftRow> soft;
        Shape soft_shape;
        typename Linear<B>::Saved project_in, project_out;
        typename PreStack::Saved pre_layers;
        typename PostStack::Saved post_layers;
        typename LayerNorm<B>::Saved final_norm;
        typename Head::Saved head;
        index_t batch = 0, length = 0;
    };
    /// What decoding keeps between steps.
    struct Cache {
        typename PreStack::Cache pre_layers;
        typename PostStack::Cache post_layers;
    };

    Config config;
    Embedding<B> embed_tokens;                // [V, Dw]
    Embedding<B> embed_positions;             // [max_positions + 2, D]
    std::optional<Linear<B>> project_in;      // Dw → D
    std::optional<Linear<B>> project_out;     // D → Dw
    std::optional<PreStack> pre_layers;       // do_layer_norm_before
    std::optional<PostStack> post_layers;     // opt-350m
    std::optional<LayerNorm<B>> final_layer_norm;
    Param lm_head;                            // [V, Dw], only when tie_word_embeddings is false
    Head head;                                // the bias-free product with lm_head's weight

    static constexpr std::int32_t position_offset = 2;  // OPTLearnedPositionalEmbedding.offset

    OptDecoder() = default;
    explicit OptDecoder(Config c) : config(checked(c)) {
        const index_t Dw = c.embed_dim(), D = c.hidden;
        embed_tokens = Embedding<B>({.rows = c.vocab_size, .dim = Dw});
        embed_positions = Embedding<B>({.rows = c.max_positions + position_offset, .dim = D});
        if (c.projected()) {
            project_in.emplace(typename Linear<B>::Config{.in = Dw, .out = D, .bias = false});
            project_out.emplace(typename Linear<B>::Config{.in = D, .out = Dw, .bias = false});
        }
        if (c.pre_norm) pre_layers.emplace(stack_config<PreStack>(c));
        else post_layers.emplace(stack_config<PostStack>(c));
        if (c.final_norm()) final_layer_norm.emplace(typename LayerNorm<B>::Config{.dim = D, .eps = c.eps});
        if (!c.tie_word_embeddings) lm_head = Param(Shape{c.vocab_size, Dw});
        head = Head({.dim = Dw, .vocab = c.vocab_size, .transform = false, .bias = false});
    }

    index_t vocab_size() const { return config.vocab_size; }
    index_t embed_dim() const { return config.embed_dim(); }

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        const std::string dec = join_name(prefix, "model.decoder");
        embed_tokens.visit(f, join_name(dec, "embed_tokens"));
        embed_positions.visit(f, join_name(dec, "embed_positions"));
        if (project_in) project_in->visit(f, join_name(dec, "project_in"));
        if (project_out) project_out->visit(f, join_name(dec, "project_out"));
        if (final_layer_norm) final_layer_norm->visit(f, join_name(dec, "final_layer_norm"));
        with_layers([&](auto& layers) { layers.visit(f, dec); });
        if (!config.tie_word_embeddings) f(join_name(prefix, "lm_head.weight"), lm_head);
    }
    /// With tied embeddings, lm_head.weight is stored as embed_tokens, lm_head.weight or both
    /// (OPTForCausalLM's _tied_weights_keys; io/tensor_map.hpp).
    template <class Map>
    void hf_layout(Map& map, const std::string& prefix = "") {
        if (config.tie_word_embeddings)
            map.tie(join_name(prefix, "model.decoder.embed_tokens.weight"), join_name(prefix, "lm_head.weight"));
    }

    /// Teacher-forced logits [batch, T, V] of `in`.
    void forward(B& be, const Input& in, TensorView<T> logits, Saved* s = nullptr) const {
        const index_t Tn = check_input(in);
        expect_shape(logits.shape(), {in.batch, Tn, config.vocab_size}, "OptDecoder logits");
        auto sc = be.scope();
        auto h = sc.tensor({in.batch, Tn, embed_dim()});  // [B, T, Dw]
        hidden_states(be, in, h, s);
        head.forward(be, h, output_weight(), logits, s ? &s->head : nullptr);
    }
    /// OPTModel's last_hidden_state [batch, T, Dw] (after final_layer_norm and project_out), what
    /// Blip2Model.get_text_features returns.
    void hidden_states(B& be, const Input& in, TensorView<T> last_hidden_state) const {
        hidden_states(be, in, last_hidden_state, nullptr);
    }

    /// d_logits [batch, T, V] → d_soft_prompt (accumulated; may be empty); parameter gradients
    /// accumulate with GradMode::accumulate, and are left alone with GradMode::ignore (a frozen
    /// language model passing gradients to the soft prompt, BLIP-2's second stage).
    void backward(B& be, Saved& s, ConstView<T> d_logits, TensorView<T> d_soft_prompt, GradMode mode) {
        const index_t Bn = s.batch, Tn = s.length, D = config.hidden, Dw = embed_dim();
        if (Bn <= 0) throw ArgumentError("OptDecoder backward: this Saved holds no forward pass");
        expect_shape(d_logits.shape(), {Bn, Tn, config.vocab_size}, "OptDecoder backward d_logits");
        if (!d_soft_prompt.empty() && !(d_soft_prompt.shape() == s.soft_shape))
            throw ShapeError("OptDecoder backward d_soft_prompt: expected " + s.soft_shape.str() + ", found " +
                             d_soft_prompt.shape().str());
        auto sc = be.scope();
        auto d_h = sc.tensor({Bn, Tn, Dw});  // [B, T, Dw]
        head.backward(be, s.head, d_logits, d_h, output_param(), mode);
        TensorView<T> d_y = d_h;  // [B, T, D]
        if (project_out) {
            d_y = sc.tensor({Bn, Tn, D});
            project_out->backward(be, s.project_out, d_h, d_y, mode);
        }
        if (final_layer_norm) {
            auto d_n = sc.tensor({Bn, Tn, D});  // [B, T, D]: d of the layers' output
            final_layer_norm->backward(be, s.final_norm, d_y.reshape(Shape{Bn * Tn, D}), d_n.reshape(Shape{Bn * Tn, D}), mode);
            d_y = d_n;
        }
        auto d_x = sc.tensor({Bn, Tn, D});  // [B, T, D]: d (project_in(e) + positions)
        with_layers([&](auto& layers) { layers.backward(be, layers_saved(layers, s), d_y, d_x, {}, mode); });
        embed_positions.backward(be, s.positions, d_x, mode);
        TensorView<T> d_e = d_x;  // [B, T, Dw]
        if (project_in) {
            d_e = sc.tensor({Bn, Tn, Dw});
            project_in->backward(be, s.project_in, d_x, d_e, mode);
        }
        for (const SoftRow& r : s.soft) {
            TensorView<T> row(d_e.data() + r.row * Dw, Shape{Dw});
            if (!d_soft_prompt.empty())
                be.axpy(T(1), row, TensorView<T>(d_soft_prompt.data() + r.source, Shape{Dw}));
            be.fill(row, T(0));
        }
        if (mode == GradMode::accumulate) {
            // nn.Embedding(padding_idx = pad_token_id): the lookup never updates the padding row.
            for (std::size_t i = 0; i < s.words.ids.size(); ++i)
                if (s.words.ids[i] == config.pad_token_id)
                    be.fill(TensorView<T>(d_e.data() + static_cast<index_t>(i) * Dw, Shape{Dw}), T(0));
            embed_tokens.backward(be, s.words, d_e, mode);
        }
    }

    /// Decoding rows against per-example soft prompts. Satisfies generation::Decoder.
    class Session {
    public:
        /// soft_prompt [C, Q, ≥Dw] per example (kept by reference) or empty; soft_token as in Input:
        /// in the prompt step, ids equal to it take the soft prompt's values (the prompt's
        /// inputs_embeds that Blip2ForConditionalGeneration.generate passes with its input_ids).
        Session(B& be, const OptDecoder& model, ConstView<T> soft_prompt = {}, std::int32_t soft_token = -1)
            : be_(&be), model_(&model), soft_(soft_prompt), soft_token_(soft_token) {
            if (!soft_.empty()) model.check_soft_prompt(soft_, -1, "session");
        }

        index_t vocab_size() const { return model_->vocab_size(); }

        /// rows = C·expand when there is a soft prompt (row r takes example r / expand's); the
        /// cache is sized at the prompt step, when the padding is known.
        void start(index_t rows, index_t expand, index_t max_positions) {
            if (rows <= 0 || expand <= 0 || max_positions <= 0)
                throw ArgumentError("OptDecoder session: rows, expand and max_positions must be positive");
            if (!soft_.empty() && rows != soft_.dim(0) * expand)
                throw ArgumentError("OptDecoder session: " + std::to_string(rows) + " rows are not " +
                                    std::to_string(soft_.dim(0)) + " soft prompts × expand " + std::to_string(expand));
            rows_ = rows, expand_ = expand, max_positions_ = max_positions;
            started_ = false;
            last_position_.assign(static_cast<std::size_t>(rows), -1);
        }

        /// ids [rows·Tn], keep [rows·Tn] or empty → logits [rows·V] at each row's last new position.
        void step(std::span<const std::int32_t> ids, std::span<const std::int32_t> keep, std::span<float> logits) {
            const index_t R = rows_, D = model_->config.hidden, Dw = model_->embed_dim(), V = vocab_size();
            if (R <= 0) throw ArgumentError("OptDecoder session: step before start");
            if (ids.empty() || static_cast<index_t>(ids.size()) % R)
                throw ShapeError("OptDecoder session: " + std::to_string(ids.size()) + " ids do not form " +
                                 std::to_string(R) + " rows");
            if (static_cast<index_t>(logits.size()) != R * V)
                throw ShapeError("OptDecoder session: logits hold " + std::to_string(logits.size()) + " values, expected " +
                                 std::to_string(R * V));
            const index_t Tn = static_cast<index_t>(ids.size()) / R;
            const bool prompt = !started_;
            std::vector<std::int32_t> positions(ids.size());  // [R, Tn]
            std::vector<std::int32_t> last = last_position_;
            decoding::generation_positions(keep, R, Tn, prompt, last, positions);
            model_->check_positions(positions);
            std::vector<SoftRow> soft;
            if (prompt && !soft_.empty()) soft = model_->soft_rows(ids, R, Tn, expand_, soft_, soft_token_);
            if (prompt) begin(keep, Tn);
            auto sc = be_->scope();
            auto x = sc.tensor({R, Tn, D});  // [R, Tn, D]
            model_->embed(*be_, ids, soft, soft_, positions, x, nullptr);
            auto h = sc.tensor({R, Tn, D});  // [R, Tn, D]
            model_->with_layers([&](const auto& layers) { layers.forward_cached(*be_, x, cache_of(layers), keep, h); });
            last_position_ = std::move(last);
            auto y = sc.tensor({R, D});  // [R, D]: each row's last position
            for (index_t r = 0; r < R; ++r)
                be_->copy(ConstView<T>(h.data() + (r * Tn + Tn - 1) * D, Shape{D}), TensorView<T>(y.data() + r * D, Shape{D}));
            auto out = sc.tensor({R, Dw});  // [R, Dw]
            model_->finish(*be_, y, out, nullptr);
            auto l = sc.tensor({R, V});  // [R, V]
            model_->head.forward(*be_, out, model_->output_weight(), l);
            decoding::logits_to_host(*be_, l, logits);
        }

        /// Row r becomes old row rows[r] (beam search).
        void reorder(std::span<const std::int32_t> rows) {
            if (!started_) throw ArgumentError("OptDecoder session: reorder before the prompt step");
            model_->with_layers([&](const auto& layers) { cache_of(layers).reorder(*be_, rows); });
            std::vector<std::int32_t> moved(rows.size());
            for (std::size_t r = 0; r < rows.size(); ++r) moved[r] = last_position_.at(static_cast<std::size_t>(rows[r]));
            last_position_ = std::move(moved);
            rows_ = static_cast<index_t>(rows.size());
        }

    private:
        /// Sizes the cache from the prompt: positions reach max_position_embeddings no earlier than
        /// max_position_embeddings + (the fewest padding slots of any row) cache slots, so transformers
        /// accepts any max_new_tokens and fails only when a position passes the table; the step
        /// beyond it is refused then.
        void begin(std::span<const std::int32_t> keep, index_t Tn) {
            index_t fewest_pads = Tn;
            for (index_t r = 0; r < rows_; ++r) {
                index_t pads = 0;
                for (index_t t = 0; t < Tn; ++t) pads += !keep.empty() && keep[static_cast<std::size_t>(r * Tn + t)] == 0;
                fewest_pads = std::min(fewest_pads, pads);
            }
            const index_t capacity = std::max(Tn, std::min(max_positions_, model_->config.max_positions + fewest_pads));
            model_->with_layers([&](const auto& layers) { layers.start_cache(*be_, cache_of(layers), rows_, capacity); });
            started_ = true;
        }
        template <class Layers>
        auto& cache_of(const Layers&) {
            if constexpr (std::is_same_v<Layers, PreStack>) return cache_.pre_layers;
            else return cache_.post_layers;
        }

        B* be_;
        const OptDecoder* model_;
        ConstView<T> soft_;
        std::int32_t soft_token_ = -1;
        index_t rows_ = 0, expand_ = 1, max_positions_ = 0;
        bool started_ = false;
        std::vector<std::int32_t> last_position_;  // [rows]: each row's last position id
        Cache cache_;
    };

private:
    /// OPTDecoderLayer ×L under "layers.{i}": causal self-attention and fc1 → act → fc2.
    template <class Stack>
    static typename Stack::Config stack_config(const Config& c) {
        return {.layers = c.layers,
                .block = {.dim = c.hidden, .heads = c.heads, .mlp_hidden = c.ffn, .activation = c.activation,
                          .eps = c.eps, .names = BlockNames::opt(), .bias = c.bias},
                .layer_name = "layers"};
    }

    static Config checked(Config c) {
        if (const std::string problem = c.hf_problem(); !problem.empty()) throw ArgumentError("OptDecoder: " + problem);
        return c;
    }

    template <class F>
    void with_layers(F&& f) const {
        if (pre_layers) f(*pre_layers);
        else f(*post_layers);
    }
    template <class F>
    void with_layers(F&& f) {
        if (pre_layers) f(*pre_layers);
        else f(*post_layers);
    }
    template <class Layers>
    static auto& layers_saved(const Layers&, Saved& s) {
        if constexpr (std::is_same_v<Layers, PreStack>) return s.pre_layers;
        else return s.post_layers;
    }

    ConstView<T> output_weight() const {
        return config.tie_word_embeddings ? embed_tokens.params.weight.value.view() : lm_head.value.view();
    }
    Param& output_param() { return config.tie_word_embeddings ? embed_tokens.params.weight : lm_head; }

    /// Checks ids, mask and soft prompt; returns T.
    index_t check_input(const Input& in) const {
        if (in.batch <= 0 || in.ids.empty() || static_cast<index_t>(in.ids.size()) % in.batch)
            throw ShapeError("OptDecoder: " + std::to_string(in.ids.size()) + " ids do not form " +
                             std::to_string(in.batch) + " rows");
        if (!in.attention_mask.empty() && in.attention_mask.size() != in.ids.size())
            throw ShapeError("OptDecoder attention_mask: expected " + std::to_string(in.ids.size()) + " entries, found " +
                             std::to_string(in.attention_mask.size()));
        if (!in.soft_prompt.empty()) check_soft_prompt(in.soft_prompt, in.batch, "input");
        return static_cast<index_t>(in.ids.size()) / in.batch;
    }
    /// soft [rows, Q, ≥Dw] (rows: any when −1).
    void check_soft_prompt(ConstView<T> soft, index_t rows, const char* who) const {
        if (soft.rank() != 3 || (rows >= 0 && soft.dim(0) != rows))
            throw ShapeError(std::string("OptDecoder ") + who + ": the soft prompt must be [" +
                             (rows >= 0 ? std::to_string(rows) : std::string("C")) + ", Q, >=" +
                             std::to_string(embed_dim()) + "], found " + soft.shape().str());
        if (soft.dim(2) < embed_dim())
            throw ShapeError(std::string("OptDecoder ") + who + ": soft prompt rows of width " + std::to_string(soft.dim(2)) +
                             " are narrower than the word embeddings (word_embed_proj_dim " + std::to_string(embed_dim()) + ")");
    }

    /// Position ids p [n] → refused at max_position_embeddings (the table lookup p + 2 would fail).
    void check_positions(std::span<const std::int32_t> positions) const {
        for (const std::int32_t p : positions)
            if (p >= config.max_positions)
                throw ShapeError("OptDecoder: position " + std::to_string(p) + " is past max_position_embeddings " +
                                 std::to_string(config.max_positions) + " (lower max_new_tokens / max_length)");
    }

    /// The soft rows of ids [rows·Tn]: row r belongs to example r / group (rows of one example are
    /// copies, as generate's expansion makes them); examples take the soft prompt's values in flat
    /// order (masked_scatter), each soft token the next Dw values.
    std::vector<SoftRow> soft_rows(std::span<const std::int32_t> ids, index_t rows, index_t Tn, index_t group,
                                   ConstView<T> soft, std::int32_t soft_token) const {
        const index_t Dw = embed_dim();
        std::vector<SoftRow> out;
        index_t next = 0, base = 0, first_count = 0;
        for (index_t r = 0; r < rows; ++r) {
            if (r % group == 0) base = next;
            index_t k = 0;
            for (index_t t = 0; t < Tn; ++t)
                if (ids[static_cast<std::size_t>(r * Tn + t)] == soft_token) out.push_back({r * Tn + t, base + (k++) * Dw});
            if (r % group == 0) {
                first_count = k;
                next = base + k * Dw;
            } else if (k != first_count) {
                throw ArgumentError("OptDecoder session: row " + std::to_string(r) + " has " + std::to_string(k) +
                                    " soft tokens, its example's first row " + std::to_string(first_count));
            }
        }
        if (next > soft.numel())
            throw ShapeError("OptDecoder: " + std::to_string(next / std::max<index_t>(Dw, 1)) + " soft tokens (id " +
                             std::to_string(soft_token) + ") need " + std::to_string(next) + " soft-prompt values of width " +
                             std::to_string(Dw) + ", the soft prompt " + soft.shape().str() + " holds " +
                             std::to_string(soft.numel()));
        return out;
    }

    /// x [N.., D] = project_in(embed_tokens(ids), soft rows overwritten) + embed_positions[positions + 2].
    void embed(B& be, std::span<const std::int32_t> ids, const std::vector<SoftRow>& soft_rows, ConstView<T> soft,
               std::span<const std::int32_t> positions, TensorView<T> x, Saved* s) const {
        const index_t N = static_cast<index_t>(ids.size()), D = config.hidden, Dw = embed_dim();
        auto sc = be.scope();
        std::vector<std::int32_t> looked_up(ids.begin(), ids.end());  // [N]: soft tokens are never looked up
        for (const SoftRow& r : soft_rows) looked_up[static_cast<std::size_t>(r.row)] = config.pad_token_id >= 0 ? config.pad_token_id : 0;
        TensorView<T> e = project_in ? sc.tensor({N, Dw}) : x.reshape(Shape{N, D});  // [N, Dw]
        embed_tokens.forward(be, looked_up, e, s ? &s->words : nullptr);
        for (const SoftRow& r : soft_rows)
            be.copy(ConstView<T>(soft.data() + r.source, Shape{Dw}), TensorView<T>(e.data() + r.row * Dw, Shape{Dw}));
        if (s) s->soft = soft_rows, s->soft_shape = soft.shape();
        if (project_in) project_in->forward(be, e, x.reshape(Shape{N, D}), s ? &s->project_in : nullptr);
        std::vector<std::int32_t> rows(positions.begin(), positions.end());  // [N]: table rows
        for (auto& p : rows) p += position_offset;
        auto p = sc.tensor({N, D});  // [N, D]
        embed_positions.forward(be, rows, p, s ? &s->positions : nullptr);
        be.axpy(T(1), p, x.reshape(Shape{N, D}));
    }

    /// y [N.., D] → out [N.., Dw]: final_layer_norm (pre-norm) and project_out.
    void finish(B& be, ConstView<T> y, TensorView<T> out, Saved* s) const {
        const index_t N = y.numel() / config.hidden, D = config.hidden;
        auto sc = be.scope();
        ConstView<T> v = y.reshape(Shape{N, D});
        if (final_layer_norm) {
            TensorView<T> n = project_out ? sc.tensor({N, D}) : out.reshape(Shape{N, D});  // [N, D]
            final_layer_norm->forward(be, v, n, s ? &s->final_norm : nullptr);
            v = n;
        }
        if (project_out) project_out->forward(be, v, out.reshape(Shape{N, embed_dim()}), s ? &s->project_out : nullptr);
        else if (!final_layer_norm) be.copy(v, out.reshape(Shape{N, D}));
    }

    void hidden_states(B& be, const Input& in, TensorView<T> last_hidden_state, Saved* s) const {
        const index_t Bn = in.batch, Tn = check_input(in), D = config.hidden;
        expect_shape(last_hidden_state.shape(), {Bn, Tn, embed_dim()}, "OptDecoder last_hidden_state");
        // OPTDecoder.forward without position_ids: cumsum(mask)·mask − 1 (padding at −1).
        std::vector<std::int32_t> positions(in.ids.size());  // [B, T]
        for (index_t b = 0; b < Bn; ++b) {
            std::int32_t count = 0;
            for (index_t t = 0; t < Tn; ++t) {
                const auto i = static_cast<std::size_t>(b * Tn + t);
                const bool token = in.attention_mask.empty() || in.attention_mask[i] != 0;
                count += token;
                positions[i] = token ? count - 1 : -1;
            }
        }
        check_positions(positions);
        std::vector<SoftRow> soft;
        if (!in.soft_prompt.empty()) soft = soft_rows(in.ids, Bn, Tn, 1, in.soft_prompt, in.soft_token);
        auto sc = be.scope();
        auto x = sc.tensor({Bn, Tn, D});  // [B, T, D]
        embed(be, in.ids, soft, in.soft_prompt, positions, x, s);
        auto y = sc.tensor({Bn, Tn, D});  // [B, T, D]
        const AttentionMask<T> mask{.key_keep = in.attention_mask.empty() ? nullptr : in.attention_mask.data(), .causal = true};
        with_layers([&](const auto& layers) {
            layers.forward(be, x, {}, mask, {}, y, s ? &layers_saved(layers, *s) : nullptr);
        });
        finish(be, y, last_hidden_state, s);
        if (s) s->batch = Bn, s->length = Tn;
    }
};

}  // namespace mmalign
