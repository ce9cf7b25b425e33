// mmalign/decoders/bert_lm_decoder.hpp — a BERT-family causal language model over encoder states:
// BLIP's text decoder (transformers' BlipTextLMHeadModel, modeling_blip_text.py; BLIP's med.py
// BertLMHeadModel), attending to image states (captioning) or question states (VQA).
//
//   ids [B, T], enc [B, Te, De] → bert (encoders/bert_transformer.hpp, decoder mode: causal ∧ padding,
//   cross-attention to enc) → h [B, T, D] → cls.predictions (nn/lm_prediction_head.hpp, output
//   weight = bert.embeddings.word_embeddings.weight) → logits [B, T, V]
// Session is the decoding form: it expands the per-example context to the rows generation runs
// (num_beams × num_return_sequences rows per example, HF _expand_inputs_for_generation), projects
// every layer's cross-attention keys and values once, then feeds the next tokens of every row and
// returns the last position's logits — the generation::Decoder contract (generation/decoder.hpp).
// Positions are numbered as transformers' generate numbers them for a model whose forward takes
// position_ids (decoders/session_support.hpp) — so after a right-padded prompt the continuation
// restarts at 1, as in HF.
// HF keys under the decoder's prefix ("text_decoder"): bert.*, cls.predictions.transform.*,
// cls.predictions.bias; cls.predictions.decoder.{weight,bias} are tied copies that files may omit.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mmalign/decoders/session_support.hpp"
#include "mmalign/encoders/bert_transformer.hpp"
#include "mmalign/nn/lm_prediction_head.hpp"

namespace mmalign {

template <Backend B>
struct BertLmDecoder {
    using T = typename B::Scalar;
    using Bert = BertTransformer<B>;
    using Head = LmPredictionHead<B>;

    struct Config {
        typename Bert::Config bert = Bert::Config::blip_text();
    };
    struct Saved {
        typename Bert::Saved bert;
        typename Head::Saved head;
        typename B::Tensor hidden;  // [B, T, D]
    };

    Config config;
    Bert bert;
    Head head;

    BertLmDecoder() = default;
    explicit BertLmDecoder(Config c)
        : config(c),
          bert(c.bert),
          head({.dim = c.bert.hidden, .vocab = c.bert.vocab_size, .activation = c.bert.activation, .eps = c.bert.eps}) {}

    index_t vocab_size() const { return config.bert.vocab_size; }

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        bert.visit(f, join_name(prefix, "bert"));
        head.visit(f, join_name(prefix, "cls.predictions"));
    }
    /// The tied keys (io/tensor_map.hpp): the output weight is the word-embedding table and the
    /// decoder's bias is the head's bias, whichever of the two keys a file carries.
    template <class Map>
    void hf_layout(Map& map, const std::string& prefix = "") {
        const std::string words = join_name(join_name(join_name(prefix, "bert"), config.bert.names.embeddings),
                                            config.bert.names.word_embeddings);
        map.tie(words + ".weight", join_name(prefix, "cls.predictions.decoder.weight"));
        map.tie(join_name(prefix, "cls.predictions.bias"), join_name(prefix, "cls.predictions.decoder.bias"));
    }

    /// Teacher-forced logits [B, T, V] of `in` (decoder mode is forced; in.encoder_states are the
    /// image or question states).
    void forward(B& be, typename Bert::Input in, TensorView<T> logits, Saved* s = nullptr) const {
        in.causal = true;
        const index_t Bn = in.batch, Tn = static_cast<index_t>(in.ids.size()) / std::max<index_t>(Bn, 1);
        auto sc = be.scope();
        TensorView<T> h = s ? (s->hidden.resize(Shape{Bn, Tn, config.bert.hidden}), s->hidden.view())
                            : sc.tensor({Bn, Tn, config.bert.hidden});  // [B, T, D]
        bert.forward(be, in, h, {}, s ? &s->bert : nullptr);
        head.forward(be, h, bert.word_embeddings.params.weight.value.view(), logits, s ? &s->head : nullptr);
    }
    void backward(B& be, Saved& s, ConstView<T> d_logits, TensorView<T> d_enc, GradMode mode) {
        auto sc = be.scope();
        auto d_h = sc.tensor(s.hidden.shape());  // [B, T, D]
        head.backward(be, s.head, d_logits, d_h, bert.word_embeddings.params.weight, mode);
        bert.backward(be, s.bert, d_h, {}, d_enc, mode);
    }

    /// Decoding against a context of C examples: context [C, Te, De] (image or question states,
    /// kept by reference), context_mask [C·Te] (optional). Satisfies generation::Decoder.
    class Session {
    public:
        Session(B& be, const BertLmDecoder& model, ConstView<T> context, std::span<const std::int32_t> context_mask = {})
            : be_(&be), model_(&model), context_(context), context_mask_(context_mask.begin(), context_mask.end()) {
            if (context.rank() != 3) throw ShapeError("BertLmDecoder session: context must be [C, Te, De], found " + context.shape().str());
        }

        index_t vocab_size() const { return model_->vocab_size(); }

        /// rows = C·expand rows; row r decodes against context row r / expand.
        void start(index_t rows, index_t expand, index_t max_positions) {
            const index_t C = context_.dim(0), Te = context_.dim(1), De = context_.dim(2);
            if (expand <= 0 || rows != C * expand)
                throw ArgumentError("BertLmDecoder session: " + std::to_string(rows) + " rows are not " +
                                    std::to_string(C) + " context rows × expand " + std::to_string(expand));
            expanded_.resize(Shape{rows, Te, De});
            std::vector<std::int32_t> mask;
            if (!context_mask_.empty()) mask.resize(static_cast<std::size_t>(rows * Te));
            for (index_t r = 0; r < rows; ++r) {
                const index_t c = r / expand;
                be_->copy(ConstView<T>(context_.data() + c * Te * De, Shape{Te, De}),
                                TensorView<T>(expanded_.data() + r * Te * De, Shape{Te, De}));
                if (!mask.empty())
                    std::copy_n(context_mask_.begin() + c * Te, Te, mask.begin() + r * Te);
            }
            mask_ = std::move(mask);
            // transformers accepts any max_new_tokens and fails only when a position passes the
            // table; the cache holds the table's positions, and a step beyond it is refused then.
            max_positions = std::min(max_positions, model_->config.bert.max_positions);
            model_->bert.start_cache(*be_, cache_, rows, max_positions, expanded_.view(), mask_);
            last_position_.assign(static_cast<std::size_t>(rows), -1);
        }
        /// ids [rows·Tn], keep [rows·Tn] or empty → logits [rows·V] at each row's last new position.
        void step(std::span<const std::int32_t> ids, std::span<const std::int32_t> keep, std::span<float> logits) {
            const index_t R = cache_.rows(), D = model_->config.bert.hidden, V = vocab_size();
            if (R <= 0) throw ArgumentError("BertLmDecoder session: step before start");
            if (static_cast<index_t>(logits.size()) != R * V)
                throw ShapeError("BertLmDecoder session: logits hold " + std::to_string(logits.size()) + " values, expected " +
                                 std::to_string(R * V));
            const index_t Tn = static_cast<index_t>(ids.size()) / R;
            if (cache_.length() + Tn > cache_.stack.max_positions)
                throw ShapeError("BertLmDecoder: decoding past max_position_embeddings " +
                                 std::to_string(model_->config.bert.max_positions) +
                                 " (lower max_new_tokens / max_length)");
            std::vector<std::int32_t> positions(ids.size());  // [R, Tn]
            decoding::generation_positions(keep, R, Tn, cache_.length() == 0, last_position_, positions);
            auto sc = be_->scope();
            auto h = sc.tensor({R, Tn, D});     // [R, Tn, D]
            model_->bert.forward_cached(*be_, ids, keep, cache_, h, positions);
            auto last = sc.tensor({R, D});      // [R, D]: each row's last position
            for (index_t r = 0; r < R; ++r)
                be_->copy(ConstView<T>(h.data() + (r * Tn + Tn - 1) * D, Shape{D}), TensorView<T>(last.data() + r * D, Shape{D}));
            auto out = sc.tensor({R, V});       // [R, V]
            model_->head.forward(*be_, last, model_->bert.word_embeddings.params.weight.value.view(), out);
            decoding::logits_to_host(*be_, out, logits);
        }
        /// Row r becomes old row rows[r] (beam search).
        void reorder(std::span<const std::int32_t> rows) {
            cache_.reorder(*be_, rows);
            std::vector<std::int32_t> moved(rows.size());
            for (std::size_t r = 0; r < rows.size(); ++r) moved[r] = last_position_.at(static_cast<std::size_t>(rows[r]));
            last_position_ = std::move(moved);
        }

    private:
        B* be_;
        const BertLmDecoder* model_;
        ConstView<T> context_;
        std::vector<std::int32_t> context_mask_, mask_;
        std::vector<std::int32_t> last_position_;  // [rows]: each row's last position id
        typename B::Tensor expanded_;  // [rows, Te, De]
        typename Bert::Cache cache_;
    };
};

}  // namespace mmalign
