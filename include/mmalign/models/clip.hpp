// mmalign/models/clip.hpp — CLIP (Radford et al. 2021) as HF's CLIPModel computes it.
//
//        pixels ──► VisionTransformer ──► pooled ──► visual_projection ──► image features [Bi, E]
//        ids    ──► TextTransformer   ──► pooled ──► text_projection   ──► text features  [Bt, E]
//   image_embeds = i/‖i‖, text_embeds = t/‖t‖ (no eps), logits_per_text = exp(logit_scale)·t·iᵀ
//   [Bt, Bi], logits_per_image = its transpose (nn/scaled_cosine_similarity.hpp, shared with the
//   contrastive objective). HF does not clamp logit_scale.
// HF keys: vision_model.*, text_model.*, visual_projection.weight [E, Dv], text_projection.weight
// [E, Dt] (both without bias), logit_scale [] (a scalar).
// Training goes through image_features/text_features (each with Saved and backward); the
// contrastive objective normalises and scales through the same ScaledCosineSimilarity.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "mmalign/encoders/text_transformer.hpp"
#include "mmalign/encoders/vision_transformer.hpp"
#include "mmalign/io/config_checkpoint.hpp"
#include "mmalign/io/hf_config.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/nn/linear.hpp"
#include "mmalign/nn/scaled_cosine_similarity.hpp"

namespace mmalign {

template <Backend B>
struct Clip {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;
    using Param = BasicParameter<Buffer>;

    struct Config {
        typename VisionTransformer<B>::Config vision;
        typename TextTransformer<B>::Config text;
        index_t projection_dim = 512;
        double logit_scale_init = 2.6592;  // ln(1/0.07)

        /// The config.json fields of transformers' CLIPConfig: the towers' own tables nested under
        /// "text_config" and "vision_config" (io/hf_config.hpp).
        template <class F>
        void hf_fields(F&& f) {
            f("projection_dim", projection_dim, 1);
            f("logit_scale_init_value", logit_scale_init);
            f("text_config", text);
            f("vision_config", vision);
        }

        /// The model a HF config.json describes; fields it lacks keep CLIPConfig's defaults.
        static Config from_hf(const io::HfConfig& c) {
            Config m;
            io::read_hf_fields(m, c);
            return m;
        }

        /// The tensors of a HF CLIPModel checkpoint (modeling_clip.py's names) whose dimensions the
        /// config's sizes give, each dimension with its field: compared with the checkpoint's
        /// header before anything is allocated (io/config_checkpoint.hpp).
        std::vector<io::ConfigTensor> checkpoint_tensors() const {
            const auto& v = vision;
            const auto& t = text;
            std::vector<io::ConfigTensor> out = io::vision_tower_tensors(
                "vision_config", v.hidden, v.channels, v.patch_size, v.image_size, v.tokens(), v.mlp_hidden);
            const io::ConfigDim dv{"vision_config.hidden_size", v.hidden}, dt{"text_config.hidden_size", t.hidden};
            out.push_back({"vision_model.embeddings.class_embedding", {dv}});
            out.push_back({"text_model.embeddings.token_embedding.weight", {{"text_config.vocab_size", t.vocab_size}, dt}});
            out.push_back({"text_model.embeddings.position_embedding.weight",
                           {{"text_config.max_position_embeddings", t.max_positions}, dt}});
            out.push_back({"text_model.encoder.layers.0.mlp.fc1.weight", {{"text_config.intermediate_size", t.mlp_hidden}, dt}});
            out.push_back({"visual_projection.weight", {{"projection_dim", projection_dim}, dv}});
            out.push_back({"text_projection.weight", {{"projection_dim", projection_dim}, dt}});
            return out;
        }

        /// The parameters (values) the model holds: the memory estimate a checkpoint must cover.
        double parameter_count() const {
            auto block = [](double d, double f) { return 4 * (d * d + d) + 2 * d * f + f + d + 4 * d; };
            const double dv = double(vision.hidden), dt = double(text.hidden);
            const double patch = double(vision.channels) * double(vision.patch_size) * double(vision.patch_size);
            const double image = dv * (1 + patch + double(vision.tokens()) + 4) +
                                 double(vision.layers) * block(dv, double(vision.mlp_hidden));
            const double words = dt * (double(text.vocab_size) + double(text.max_positions) + 2) +
                                 double(text.layers) * block(dt, double(text.mlp_hidden));
            return image + words + double(projection_dim) * (dv + dt) + 1;
        }

        /// What in config.json (read from `where`) the checkpoint contradicts, checked on the
        /// headers alone, as one IoError naming the file and the field.
        void check_against(const io::Checkpoint& file, const std::string& where) const {
            std::string why = io::config_checkpoint_problem(file, checkpoint_tensors());
            if (why.empty())
                why = io::layer_count_problem(file, "vision_model.encoder.layers.", "vision_config.num_hidden_layers",
                                              vision.layers);
            if (why.empty())
                why = io::layer_count_problem(file, "text_model.encoder.layers.", "text_config.num_hidden_layers",
                                              text.layers);
            if (why.empty()) why = io::parameter_budget_problem(file, parameter_count(), "a CLIP model");
            if (!why.empty()) throw IoError(where + ": " + why);
        }
    };
    struct ImageSaved {
        typename VisionTransformer<B>::Saved vision;
        typename Linear<B>::Saved projection;
    };
    struct TextSaved {
        typename TextTransformer<B>::Saved text;
        typename Linear<B>::Saved projection;
    };
    struct Output {
        Buffer image_embeds;      // [Bi, E], unit rows
        Buffer text_embeds;       // [Bt, E], unit rows
        Buffer logits_per_image;  // [Bi, Bt]
        Buffer logits_per_text;   // [Bt, Bi]
    };

    Config config;
    VisionTransformer<B> vision_model;
    TextTransformer<B> text_model;
    Linear<B> visual_projection, text_projection;
    Param logit_scale;  // [] — the log of the logit multiplier

    Clip() = default;
    explicit Clip(Config c)
        : config(c),
          vision_model(c.vision),
          text_model(c.text),
          visual_projection({.in = c.vision.hidden, .out = c.projection_dim, .bias = false}),
          text_projection({.in = c.text.hidden, .out = c.projection_dim, .bias = false}),
          logit_scale(Shape{}) {
        logit_scale.value.fill(static_cast<T>(c.logit_scale_init));
    }

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        text_model.visit(f, join_name(prefix, "text_model"));
        vision_model.visit(f, join_name(prefix, "vision_model"));
        visual_projection.visit(f, join_name(prefix, "visual_projection"));
        text_projection.visit(f, join_name(prefix, "text_projection"));
        f(join_name(prefix, "logit_scale"), logit_scale);
    }

    /// HF get_image_features: pixels [Bi, C, S, S] → features [Bi, E] (not normalised).
    void image_features(B& be, ConstView<T> pixels, TensorView<T> features, ImageSaved* s = nullptr) const {
        auto sc = be.scope();
        auto pooled = sc.tensor({pixels.dim(0), config.vision.hidden});
        vision_model.forward(be, pixels, {}, pooled, s ? &s->vision : nullptr);
        visual_projection.forward(be, pooled, features, s ? &s->projection : nullptr);
    }
    void image_features_backward(B& be, ImageSaved& s, ConstView<T> d_features, GradMode mode) {
        auto sc = be.scope();
        auto d_pooled = sc.tensor({d_features.dim(0), config.vision.hidden});
        visual_projection.backward(be, s.projection, d_features, d_pooled, mode);
        vision_model.backward(be, s.vision, d_pooled, {}, mode);
    }

    /// HF get_text_features: ids [Bt·T], attention_mask [Bt·T] or empty → features [Bt, E].
    void text_features(B& be, std::span<const std::int32_t> ids, std::span<const std::int32_t> attention_mask,
                       index_t batch, TensorView<T> features, TextSaved* s = nullptr) const {
        auto sc = be.scope();
        auto pooled = sc.tensor({batch, config.text.hidden});
        text_model.forward(be, ids, attention_mask, batch, {}, pooled, s ? &s->text : nullptr);
        text_projection.forward(be, pooled, features, s ? &s->projection : nullptr);
    }
    void text_features_backward(B& be, TextSaved& s, ConstView<T> d_features, GradMode mode) {
        auto sc = be.scope();
        auto d_pooled = sc.tensor({d_features.dim(0), config.text.hidden});
        text_projection.backward(be, s.projection, d_features, d_pooled, mode);
        text_model.backward(be, s.text, d_pooled, {}, mode);
    }

    /// CLIPModel's forward for inference: normalised embeddings and both logit matrices.
    Output forward(B& be, ConstView<T> pixels, std::span<const std::int32_t> ids,
                   std::span<const std::int32_t> attention_mask, index_t text_batch) const {
        const index_t Bi = pixels.dim(0), Bt = text_batch, E = config.projection_dim;
        Output o;
        o.logits_per_image.resize(Shape{Bi, Bt});
        o.logits_per_text.resize(Shape{Bt, Bi});
        typename ScaledCosineSimilarity<B>::Saved unit;  // its unit rows are the embeddings HF returns
        {
            auto sc = be.scope();
            auto fi = sc.tensor({Bi, E}), ft = sc.tensor({Bt, E});  // [Bi, E], [Bt, E] features
            image_features(be, pixels, fi);
            text_features(be, ids, attention_mask, Bt, ft);
            ScaledCosineSimilarity<B>{}.forward(be, fi, ft, logit_scale, o.logits_per_image.view(),
                                                o.logits_per_text.view(), unit);
        }
        o.image_embeds = std::move(unit.a);
        o.text_embeds = std::move(unit.b);
        return o;
    }

    /// Random initialisation as transformers' CLIPPreTrainedModel._init_weights (factor 1):
    /// embeddings N(0, 0.02), class embedding N(0, D^-½), q/k/v and fc2 N(0, D^-½·(2L)^-½),
    /// out_proj N(0, D^-½), fc1 N(0, (2D)^-½), projections N(0, D^-½), biases 0, LayerNorm 1/0,
    /// logit_scale = logit_scale_init. Deterministic for a seed. Host storage.
    void init_like_hf(unsigned seed) {
        std::mt19937_64 rng(seed);
        auto normal = [&](Param& p, double std) {
            std::normal_distribution<double> d(0.0, std);
            for (auto& v : p.value) v = static_cast<T>(d(rng));
        };
        auto tower = [&](auto& stack, double D, double L) {
            const double in_std = std::pow(D, -0.5) * std::pow(2 * std::max(L, 1.0), -0.5);
            for (auto& layer : stack.layers) {
                auto& attn = layer.attention.inner;
                for (auto* lin : {&attn.q_proj, &attn.k_proj, &attn.v_proj}) normal(lin->params.weight, in_std);
                normal(attn.out_proj.params.weight, std::pow(D, -0.5));
                normal(layer.feed_forward.inner.fc1.params.weight, std::pow(2 * D, -0.5));
                normal(layer.feed_forward.inner.fc2.params.weight, in_std);
            }
        };
        visit([](const std::string& name, Param& p) {
            const bool is_weight = name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0;
            const bool is_norm = name.find("norm") != std::string::npos;
            p.value.fill(is_norm && is_weight ? T(1) : T(0));
        });
        const double Dv = double(config.vision.hidden), Dt = double(config.text.hidden);
        normal(text_model.token_embedding.params.weight, 0.02);
        normal(text_model.position_embedding.params.weight, 0.02);
        normal(vision_model.class_embedding, std::pow(Dv, -0.5));
        normal(vision_model.patch_embedding, 0.02);
        normal(vision_model.position_embedding.params.weight, 0.02);
        tower(vision_model.encoder, Dv, double(config.vision.layers));
        tower(text_model.encoder, Dt, double(config.text.layers));
        normal(text_projection.params.weight, std::pow(Dt, -0.5));
        normal(visual_projection.params.weight, std::pow(Dv, -0.5));
        logit_scale.value.fill(static_cast<T>(config.logit_scale_init));
    }

    /// A Hugging Face CLIP folder: config.json plus model.safetensors (or a sharded index).
    /// Checkpoint keys the model does not use (old position_ids buffers) are ignored only where
    /// io::load_parameters ignores them; any missing or misshapen tensor is an IoError. The
    /// config's sizes are compared with the checkpoint's header shapes, and its parameter count with
    /// the values the checkpoint holds, before the model is allocated (Config::check_against).
    static Clip from_pretrained(B& be, const std::string& dir) {
        const std::string config_path = dir + "/config.json";
        const Config config = Config::from_hf(io::load_clip_config(config_path));
        const io::Checkpoint file = io::Checkpoint::open(dir);
        config.check_against(file, config_path);
        Clip m(config);
        io::load_parameters(be, m, file, "");
        return m;
    }
};

}  // namespace mmalign
