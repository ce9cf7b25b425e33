// mmalign/models/blip2_model.hpp — BLIP-2 (Li et al. 2023, Fig. 3 top: a frozen image encoder, the
// Q-Former, a fully-connected projection and a frozen decoder-only LLM), as transformers'
// Blip2Model computes it (modeling_blip_2.py).
//
//   pixels ──► vision_model + Q-Former (models/blip2_vision_queries.hpp) ──► [B, Q, Dq]
//          ──► language_projection ──► soft prompt [B, Q, D]
//   [<image>×Q, </s>, prompt…] ──► language_model (OPT; the <image> rows take the soft prompt) ──► logits [B, T, V]
// get_image_features / get_qformer_features / get_text_features return what HF's methods of those
// names return (the vision last_hidden_state, the Q-Former last_hidden_state, the OPT base model's
// last_hidden_state of the text alone).
// The prompt's image rows: where config.json has image_token_index, the processor puts Q such tokens
// before </s> and their embeddings are overwritten with the soft prompt in order (HF masked_scatter).
// A prompt without them (a processor without num_query_tokens: the form of transformers before
// 4.47) gets Q of them prepended with attention 1, the concatenation those versions did; where the
// config has no image_token_index the rows are marked with an id absent from every prompt.
// HF keys (Blip2Model and Blip2ForConditionalGeneration alike): vision_model.*, query_tokens,
// qformer.*, language_projection.*, language_model.model.decoder.*, language_model.lm_head.weight.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "mmalign/io/tensor_map.hpp"
#include "mmalign/models/blip2_vision_queries.hpp"
#include "mmalign/nn/linear.hpp"

namespace mmalign {

template <Backend B>
struct Blip2Model {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;
    using Lm = OptDecoder<B>;

    /// A prompt with its soft-prompt rows marked: ids and mask [batch · length].
    struct SoftPrompted {
        std::vector<std::int32_t> ids, attention_mask;
        index_t batch = 0, length = 0;
        std::int32_t soft_token = -1;  // the id of the rows that take the soft prompt
    };

    Blip2Config<B> config;
    Blip2VisionQueries<B> vision_queries;
    Linear<B> language_projection;
    Lm language_model;

    explicit Blip2Model(Blip2Config<B> c)
        : config(c), vision_queries(c),
          language_projection({.in = c.qformer.hidden, .out = c.text.hidden}),
          language_model(c.text) {}

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        vision_queries.visit(f, prefix);
        language_projection.visit(f, join_name(prefix, "language_projection"));
        language_model.visit(f, join_name(prefix, "language_model"));
    }
    template <class Map>
    void hf_layout(Map& map, const std::string& prefix = "") {
        vision_queries.hf_layout(map, prefix);
        language_model.hf_layout(map, join_name(prefix, "language_model"));
    }

    /// pixels [B, C, S, S] → the vision model's last_hidden_state [B, N+1, Dv].
    Buffer get_image_features(B& be, ConstView<T> pixels) const { return vision_queries.image_embeds(be, pixels); }
    /// pixels [B, C, S, S] → the Q-Former's last_hidden_state [B, Q, Dq].
    Buffer get_qformer_features(B& be, ConstView<T> pixels) const {
        const Buffer img = get_image_features(be, pixels);  // [B, N+1, Dv]
        return vision_queries.query_output(be, img.view());
    }
    /// The language model's last_hidden_state [B, T, Dw] of the text alone.
    Buffer get_text_features(B& be, const Blip2Tokens& t) const {
        const index_t Tn = t.length("Blip2Model text");
        Buffer out(Shape{t.batch, Tn, config.text.embed_dim()});  // after project_out, as OPTModel returns it
        language_model.hidden_states(be, {.batch = t.batch, .ids = t.ids, .attention_mask = t.attention_mask, .soft_prompt = {}, .soft_token = -1},
                                     out.view());
        return out;
    }
    /// The Q-Former's output [B, Q, Dq] → the soft prompt [B, Q, D].
    Buffer language_model_inputs(B& be, ConstView<T> query_output) const {
        Buffer out(Shape{query_output.dim(0), query_output.dim(1), config.text.hidden});  // [B, Q, D]
        language_projection.forward(be, query_output, out.view());
        return out;
    }
    /// pixels [B, C, S, S] → the soft prompt [B, Q, D].
    Buffer soft_prompt(B& be, ConstView<T> pixels) const {
        const Buffer img = get_image_features(be, pixels);  // [B, N+1, Dv]
        const Buffer q = vision_queries.query_output(be, img.view());  // [B, Q, Dq]
        return language_model_inputs(be, q.view());
    }

    /// HF forward (labels None): logits [B, L, V] of the prompt's rows, L = its length with the
    /// image rows (prepended ones included).
    Buffer logits(B& be, ConstView<T> pixels, const Blip2Tokens& t) const {
        const SoftPrompted p = soft_prompted(t, pixels.dim(0));
        const Buffer soft = soft_prompt(be, pixels);  // [B, Q, D]
        Buffer out(Shape{p.batch, p.length, config.text.vocab_size});  // [B, L, V]
        language_model.forward(be, {.batch = p.batch, .ids = p.ids, .attention_mask = p.attention_mask,
                                    .soft_prompt = soft.view(), .soft_token = p.soft_token},
                               out.view());
        return out;
    }

    /// The prompt rows the language model reads for `images` images: as given when every row
    /// holds Q image tokens; Q of them prepended when none does; [<image>×Q, </s>] when empty.
    SoftPrompted soft_prompted(const Blip2Tokens& t, index_t images) const {
        const index_t Q = config.num_query_tokens;
        SoftPrompted p;
        p.batch = images;
        if (t.ids.empty()) {
            p.soft_token = placeholder({});
            for (index_t b = 0; b < images; ++b) {
                p.ids.insert(p.ids.end(), static_cast<std::size_t>(Q), p.soft_token);
                p.ids.push_back(static_cast<std::int32_t>(config.text.bos_token_id));
            }
            p.length = Q + 1;
            p.attention_mask.assign(p.ids.size(), 1);
            return p;
        }
        const index_t Tn = t.length("Blip2 prompt");
        if (t.batch != images)
            throw ShapeError("Blip2: " + std::to_string(t.batch) + " prompts for " + std::to_string(images) + " images");
        p.soft_token = placeholder(t.ids);
        index_t with = 0;
        for (index_t b = 0; b < t.batch; ++b) {
            const auto row = t.ids.subspan(static_cast<std::size_t>(b * Tn), static_cast<std::size_t>(Tn));
            const auto n = static_cast<index_t>(std::count(row.begin(), row.end(), p.soft_token));
            if (n != 0 && n != Q)
                throw ArgumentError("Blip2 prompt row " + std::to_string(b) + " holds " + std::to_string(n) +
                                    " image tokens (id " + std::to_string(p.soft_token) + "); expected num_query_tokens " +
                                    std::to_string(Q) + " or none");
            with += n != 0;
        }
        if (with != 0 && with != t.batch)
            throw ArgumentError("Blip2 prompt: some rows carry the image tokens and some do not");
        const index_t add = with ? 0 : Q;
        p.length = Tn + add;
        for (index_t b = 0; b < t.batch; ++b) {
            p.ids.insert(p.ids.end(), static_cast<std::size_t>(add), p.soft_token);
            p.ids.insert(p.ids.end(), t.ids.begin() + b * Tn, t.ids.begin() + (b + 1) * Tn);
            p.attention_mask.insert(p.attention_mask.end(), static_cast<std::size_t>(add), 1);
            if (t.attention_mask.empty())
                p.attention_mask.insert(p.attention_mask.end(), static_cast<std::size_t>(Tn), 1);
            else
                p.attention_mask.insert(p.attention_mask.end(), t.attention_mask.begin() + b * Tn,
                                        t.attention_mask.begin() + (b + 1) * Tn);
        }
        return p;
    }

    /// A Hugging Face Blip2Model or Blip2ForConditionalGeneration folder.
    static Blip2Model from_pretrained(B& be, const std::string& dir) {
        Blip2Config<B> c = Blip2Config<B>::from_folder(dir);
        if (const std::string problem = c.language_model_problem(); !problem.empty())
            throw IoError(dir + "/config.json: " + problem);
        const io::Checkpoint file = io::Checkpoint::open(dir);
        Blip2VisionQueries<B>::adapt_to(c, file);
        c.check_against(file, dir + "/config.json", /*language_model=*/true);  // before anything is allocated
        Blip2Model m(c);
        io::load_mapped(be, m, file, io::hf_tensor_map(m));
        return m;
    }

private:
    /// The image token's id; without one in config.json, the highest id no prompt uses.
    std::int32_t placeholder(std::span<const std::int32_t> ids) const {
        if (config.image_token_index >= 0) return static_cast<std::int32_t>(config.image_token_index);
        std::vector<char> used(static_cast<std::size_t>(config.text.vocab_size), 0);
        for (std::int32_t id : ids)
            if (id >= 0 && id < config.text.vocab_size) used[static_cast<std::size_t>(id)] = 1;
        for (index_t v = config.text.vocab_size - 1; v >= 0; --v)
            if (!used[static_cast<std::size_t>(v)]) return static_cast<std::int32_t>(v);
        throw ArgumentError("Blip2 prompt: every id of the vocabulary occurs in it; none is left to mark the image rows");
    }
};

}  // namespace mmalign
