// mmalign/encoders/vision_transformer.hpp — the ViT image tower (Dosovitskiy et al. 2021) of CLIP,
// BLIP and BLIP-2, one module whose variants are Config values.
//
//   pixels [B, C, S, S] → patches [B, N, C·P·P] (N = (S/P)²) → · Wᵀ (+ b: patch_bias)
//   → [class_embedding ; patches] + position_embedding [N+1, D] → (pre_layrnorm: pre_norm)
//   → L pre-norm blocks → h [B, N+1, D]
//   last_hidden_state = post_norm ∈ {tokens, tokens_and_pooled} ? post_layernorm(h) : h
//   pooled = pool(last_hidden_state) [B, D], normalised again by post_layernorm when post_norm ∈
//            {pooled, tokens_and_pooled}; pool = the class token (cls), the mean of the patch
//            tokens (mean: timm vision_transformer.py `global_pool="avg"`), or none
//
// Config::clip() (also the default Config) is transformers' CLIPVisionTransformer (modeling_clip.py):
// no patch bias, pre_layrnorm ("pre_layrnorm" is HF's spelling), last_hidden_state not normalised,
// pooled = post_layernorm(h[:, 0]), class_embedding [D], position_embedding.weight [N+1, D] (an
// nn.Embedding), q_proj/k_proj/v_proj/out_proj. Config::blip() is BlipVisionModel (modeling_blip.py)
// and Config::blip2() Blip2VisionModel (modeling_blip_2.py): a patch convolution with bias, no
// pre-norm, last_hidden_state = post_layernorm(h) and pooled = post_layernorm(last_hidden_state[:, 0])
// (HF normalises the class token twice), class_embedding [1, 1, D] and position_embedding
// [1, N+1, D] (raw nn.Parameters), one fused `self_attn.qkv` [3D, D] with bias [3D], `projection`
// for the output. BLIP-2's LayerNorm eps is 1e-6; with qkv_bias = false it has no q/k/v bias at
// all, and LAVIS's own checkpoints (lavis/models/eva_vit.py) store q_bias and v_bias with no k bias
// (QkvBias::qv). The module keeps q, k and v as separate Linears in every layout; hf_layout()
// tells io/tensor_map.hpp how the file stores them, and a bias that the layout does not store is
// zero and frozen (requires_grad = false).
// Backward: from d_pooled and/or d_last_hidden to every parameter; no pixel gradient.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "mmalign/nn/embedding.hpp"
#include "mmalign/nn/transformer_stack.hpp"

namespace mmalign {

/// Where the tower's final LayerNorm (post_layernorm) is applied.
enum class VisionPostNorm {
    none,               // neither output is normalised
    pooled,             // CLIP: the pooled vector only
    tokens,             // every token of last_hidden_state; pooled is taken from it as is
    tokens_and_pooled,  // BLIP, BLIP-2: every token, and the pooled vector once more
};
/// What the pooled output is taken from.
enum class VisionPooling { cls, mean, none };
/// How the checkpoint stores the position table: `<name>.weight` [N+1, D] (an nn.Embedding, CLIP)
/// or `<name>` [1, N+1, D] (an nn.Parameter, BLIP, BLIP-2). The values are the same either way.
enum class PositionStorage { embedding, parameter };
/// The class token's stored shape: [D] (CLIP) or [1, 1, D] (BLIP, BLIP-2).
enum class ClassTokenShape { vector, batch_row };
/// Which of the q/k/v projections have a bias: all (CLIP, BLIP, HF BLIP-2 with qkv_bias), q and v
/// only (LAVIS's EVA ViT: the k bias is structurally zero), or none (BLIP-2 with qkv_bias = false).
enum class QkvBias { all, qv, none };

/// State-dict names of the tower's parts, relative to its prefix ("vision_model").
struct VisionNames {
    std::string embeddings = "embeddings";
    std::string class_embedding = "class_embedding";        // under embeddings
    std::string patch_embedding = "patch_embedding";        // under embeddings: .weight, .bias
    std::string position_embedding = "position_embedding";  // under embeddings
    std::string pre_norm = "pre_layrnorm";
    std::string encoder = "encoder";
    std::string post_norm = "post_layernorm";
    std::string qkv = "qkv";                     // a fused attention's tensor, under block.attn
    std::string q_bias = "q_bias", v_bias = "v_bias";  // LAVIS's separate biases, under block.attn
    BlockNames block = BlockNames::clip();
};

template <Backend B>
struct VisionTransformer {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;
    using Param = BasicParameter<Buffer>;
    using Stack = TransformerStack<B, PreNorm>;

    struct Config {
        index_t image_size = 224;
        index_t patch_size = 32;
        index_t channels = 3;
        index_t hidden = 768;
        index_t layers = 12;
        index_t heads = 12;
        index_t mlp_hidden = 3072;
        Activation activation = Activation::quick_gelu;
        double eps = 1e-5;
        bool patch_bias = false;
        bool pre_norm = true;
        VisionPostNorm post_norm = VisionPostNorm::pooled;
        VisionPooling pooling = VisionPooling::cls;
        PositionStorage positions = PositionStorage::embedding;
        ClassTokenShape class_token = ClassTokenShape::vector;
        bool fused_qkv = false;  // the checkpoint stores q, k, v as one `qkv` tensor
        QkvBias qkv_bias = QkvBias::all;
        VisionNames names{};

        index_t grid() const { return image_size / patch_size; }
        index_t patches() const { return grid() * grid(); }
        index_t tokens() const { return patches() + 1; }

        /// transformers' CLIPVisionConfig defaults (ViT-B/32): the default Config.
        static Config clip() { return {}; }
        /// transformers' BlipVisionConfig defaults (ViT-B/16 at 384 px) in BlipVisionModel's layout.
        static Config blip() {
            Config c{.image_size = 384, .patch_size = 16, .channels = 3, .hidden = 768, .layers = 12, .heads = 12,
                     .mlp_hidden = 3072, .activation = Activation::gelu, .eps = 1e-5};
            c.patch_bias = true;
            c.pre_norm = false;
            c.post_norm = VisionPostNorm::tokens_and_pooled;
            c.positions = PositionStorage::parameter;
            c.class_token = ClassTokenShape::batch_row;
            c.fused_qkv = true;
            c.names.block = BlockNames::blip_vision();
            return c;
        }
        /// transformers' Blip2VisionConfig defaults (EVA ViT-g/14) in Blip2VisionModel's layout.
        static Config blip2() {
            Config c = blip();
            c.image_size = 224;
            c.patch_size = 14;
            c.hidden = 1408;
            c.layers = 39;
            c.heads = 16;
            c.mlp_hidden = 6144;
            c.eps = 1e-6;
            return c;
        }

        /// The config.json fields (CLIPVisionConfig, BlipVisionConfig and Blip2VisionConfig share
        /// these names; io/hf_config.hpp reads and writes them). BLIP-2's `qkv_bias` switches
        /// between QkvBias::none and the layout's biased form.
        template <class F>
        void hf_fields(F&& f) {
            f("image_size", image_size, 1);
            f("patch_size", patch_size, 1);
            f("num_channels", channels, 1);
            f("hidden_size", hidden, 1);
            f("num_hidden_layers", layers, 0);
            f("num_attention_heads", heads, 1);
            f("intermediate_size", mlp_hidden, 1);
            f("hidden_act", activation);
            f("layer_norm_eps", eps);
            if (fused_qkv) {
                bool biased = qkv_bias != QkvBias::none;
                f("qkv_bias", biased);
                if (!biased) qkv_bias = QkvBias::none;
                else if (qkv_bias == QkvBias::none) qkv_bias = QkvBias::all;
            }
        }
        /// What makes the sizes unusable together, in HF's field names, or empty.
        std::string hf_problem() const {
            // A remainder is allowed: the patch convolution ignores the last image_size mod patch_size
            // rows and columns (core/contracts/patchify.hpp), as transformers' does.
            if (patch_size > image_size)
                return "patch_size " + std::to_string(patch_size) + " exceeds image_size " + std::to_string(image_size);
            if (heads > 0 && hidden % heads)
                return "hidden_size " + std::to_string(hidden) + " is not a multiple of num_attention_heads " +
                       std::to_string(heads);
            // Each size is bounded on its own; their products are what gets allocated. A position
            // table or a layer's weights beyond 2^32 elements (16 GiB of float) is refused as absurd.
            constexpr double limit = 4294967296.0;
            if (patch_size > 0) {
                const double grid = double(image_size / patch_size), tokens = grid * grid + 1;
                if (tokens * double(hidden) > limit)
                    return "image_size " + std::to_string(image_size) + " / patch_size " + std::to_string(patch_size) +
                           " gives " + std::to_string(static_cast<long long>(tokens)) + " tokens of width " +
                           std::to_string(hidden) + ", more than 2^32 position-table elements";
            }
            if (double(hidden) * double(mlp_hidden) > limit || double(hidden) * double(channels) * double(patch_size) * double(patch_size) > limit)
                return "hidden_size " + std::to_string(hidden) + " with intermediate_size " + std::to_string(mlp_hidden) +
                       " and patch_size " + std::to_string(patch_size) + " gives a weight of more than 2^32 elements";
            return {};
        }
    };
    struct Saved {
        Buffer patches;  // [B, N, C·P·P]
        typename LayerNorm<B>::Saved pre_ln, post_ln, post_ln_tokens;  // post_ln: the pooled vector's
        typename Stack::Saved encoder;
        index_t batch = 0;
        bool pooled = false;  // forward produced the pooled output
    };

    Config config;
    Param class_embedding;  // [D] or [1, 1, D]
    Param patch_embedding;  // [D, C, P, P]
    Param patch_bias;       // [D], with Config::patch_bias
    LearnedPositions<B> position_embedding;  // [N+1, D], or [1, N+1, D] stored as a parameter
    std::optional<LayerNorm<B>> pre_layrnorm;  // with Config::pre_norm
    LayerNorm<B> post_layernorm;               // used unless post_norm is none
    Stack encoder;

    VisionTransformer() = default;
    explicit VisionTransformer(Config c)
        : config(c),
          class_embedding(c.class_token == ClassTokenShape::vector ? Shape{c.hidden} : Shape{1, 1, c.hidden}),
          patch_embedding(Shape{c.hidden, c.channels, c.patch_size, c.patch_size}),
          position_embedding({.max_positions = checked(c).tokens(), .dim = c.hidden}),
          post_layernorm({.dim = c.hidden, .eps = c.eps}),
          encoder({.layers = c.layers,
                   .block = {.dim = c.hidden, .heads = c.heads, .mlp_hidden = c.mlp_hidden, .activation = c.activation,
                             .eps = c.eps, .names = c.names.block}}) {
        if (c.patch_bias) patch_bias = Param(Shape{c.hidden});
        if (c.positions == PositionStorage::parameter)  // same values, HF's nn.Parameter shape
            position_embedding.params.weight = Param(Shape{1, c.tokens(), c.hidden});
        if (c.pre_norm) pre_layrnorm.emplace(typename LayerNorm<B>::Config{.dim = c.hidden, .eps = c.eps});
        // A bias the checkpoint does not store is zero by construction: never trained.
        if (c.qkv_bias != QkvBias::all)
            for_each_attention([&](const std::string&, const BlockNames& n, auto& params) {
                for (const std::string& proj : {n.q, n.k, n.v})
                    if (c.qkv_bias == QkvBias::none || proj == n.k) params.at(proj + ".bias")->requires_grad = false;
            });
    }

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        const VisionNames& n = config.names;
        const std::string emb = join_name(prefix, n.embeddings);
        f(join_name(emb, n.class_embedding), class_embedding);
        f(join_name(emb, n.patch_embedding + ".weight"), patch_embedding);
        if (config.patch_bias) f(join_name(emb, n.patch_embedding + ".bias"), patch_bias);
        if (config.positions == PositionStorage::embedding)
            position_embedding.visit(f, join_name(emb, n.position_embedding));
        else
            f(join_name(emb, n.position_embedding), position_embedding.params.weight);
        if (pre_layrnorm) pre_layrnorm->visit(f, join_name(prefix, n.pre_norm));
        encoder.visit(f, join_name(prefix, n.encoder));
        if (config.post_norm != VisionPostNorm::none) post_layernorm.visit(f, join_name(prefix, n.post_norm));
    }

    /// How the checkpoint stores the q/k/v projections where that is not one tensor per parameter
    /// (`map`: io::TensorMap or any type with fuse/rename/zero; names as `visit(f, prefix)` gives):
    /// fused `<attn>.qkv.weight` / `.bias` (rows q, k, v), LAVIS's `<attn>.q_bias` / `.v_bias`, and
    /// the biases the layout does not store.
    template <class Map>
    void hf_layout(Map& map, const std::string& prefix = "") {
        const Config& c = config;
        if (!c.fused_qkv && c.qkv_bias == QkvBias::all) return;
        for_each_attention(
            [&](const std::string& attn, const BlockNames& n, auto&) {
                auto name = [&](const std::string& proj, const char* what) { return attn + "." + proj + "." + what; };
                if (c.fused_qkv)
                    map.fuse(attn + "." + c.names.qkv + ".weight", {name(n.q, "weight"), name(n.k, "weight"), name(n.v, "weight")});
                if (c.qkv_bias == QkvBias::all) {
                    if (c.fused_qkv)
                        map.fuse(attn + "." + c.names.qkv + ".bias", {name(n.q, "bias"), name(n.k, "bias"), name(n.v, "bias")});
                } else if (c.qkv_bias == QkvBias::qv) {
                    map.rename(attn + "." + c.names.q_bias, name(n.q, "bias"));
                    map.zero(name(n.k, "bias"));
                    map.rename(attn + "." + c.names.v_bias, name(n.v, "bias"));
                } else {
                    for (const std::string& proj : {n.q, n.k, n.v}) map.zero(name(proj, "bias"));
                }
            },
            prefix);
    }

    /// pixels [B, C, S, S] → last_hidden [B, N+1, D] and pooled [B, D]; either output may be an
    /// empty view (not computed), not both; pooled must be empty with VisionPooling::none.
    void forward(B& be, ConstView<T> pixels, TensorView<T> last_hidden, TensorView<T> pooled, Saved* s = nullptr) const {
        const Config& c = config;
        expect_shape(pixels.shape(), {-1, c.channels, c.image_size, c.image_size}, "VisionTransformer pixels");
        const index_t Bn = pixels.dim(0), N = c.patches(), Tn = c.tokens(), D = c.hidden;
        const index_t K = c.channels * c.patch_size * c.patch_size;
        if (!pooled.empty()) {
            if (c.pooling == VisionPooling::none)
                throw ArgumentError("VisionTransformer: this tower has no pooled output (pooling none)");
            expect_shape(pooled.shape(), {Bn, D}, "VisionTransformer pooled output");
        }
        if (!last_hidden.empty()) expect_shape(last_hidden.shape(), {Bn, Tn, D}, "VisionTransformer last_hidden_state");
        if (pooled.empty() && last_hidden.empty())
            throw ArgumentError("VisionTransformer: neither last_hidden_state nor the pooled output was asked for");
        auto sc = be.scope();
        TensorView<T> patches;
        if (s) {
            s->patches.resize(Shape{Bn, N, K});
            patches = s->patches.view();
            s->batch = Bn;
            s->pooled = !pooled.empty();
        } else {
            patches = sc.tensor({Bn, N, K});
        }
        be.patchify(pixels, c.patch_size, patches);
        auto pe = sc.tensor({Bn, N, D});
        // The patch convolution is one product: its weight [D, C, P, P] is [D, K] row-major.
        be.linear_forward(patches, patch_embedding.value.view().reshape(Shape{D, K}),
                          c.patch_bias ? patch_bias.value.data() : nullptr, Activation::none, pe, nullptr);
        auto emb = sc.tensor({Bn, Tn, D});
        for (index_t b = 0; b < Bn; ++b) {
            be.copy(class_embedding.value.view(), TensorView<T>(emb.data() + b * Tn * D, Shape{D}));
            be.copy(ConstView<T>(pe.data() + b * N * D, Shape{N, D}), TensorView<T>(emb.data() + (b * Tn + 1) * D, Shape{N, D}));
        }
        position_embedding.forward(be, emb, emb);
        ConstView<T> h0 = emb;  // [B, N+1, D], the encoder's input
        if (pre_layrnorm) {
            auto normed = sc.tensor({Bn, Tn, D});
            pre_layrnorm->forward(be, emb, normed, s ? &s->pre_ln : nullptr);
            h0 = normed;
        }
        TensorView<T> last = last_hidden.empty() ? sc.tensor({Bn, Tn, D}) : last_hidden;  // [B, N+1, D]
        if (norms_tokens()) {
            auto h = sc.tensor({Bn, Tn, D});
            encoder.forward(be, h0, {}, {}, {}, h, s ? &s->encoder : nullptr);
            post_layernorm.forward(be, h, last, s ? &s->post_ln_tokens : nullptr);
        } else {
            encoder.forward(be, h0, {}, {}, {}, last, s ? &s->encoder : nullptr);
        }
        if (pooled.empty()) return;
        TensorView<T> p = norms_pooled() ? sc.tensor({Bn, D}) : pooled;  // [B, D] before the pooled norm
        if (c.pooling == VisionPooling::cls) {
            for (index_t b = 0; b < Bn; ++b)
                be.copy(ConstView<T>(last.data() + b * Tn * D, Shape{D}), TensorView<T>(p.data() + b * D, Shape{D}));
        } else {  // mean of the N patch tokens: (1/N)·1ᵀ·last[b, 1:] per image
            auto ones = sc.tensor({N});
            be.fill(ones, 1);
            for (index_t b = 0; b < Bn; ++b)
                be.gemm(Trans::N, Trans::N, 1, D, N, typename B::Compute(1.0 / double(N)), ones.data(), N,
                        last.data() + (b * Tn + 1) * D, D, 0, p.data() + b * D, D);
        }
        if (norms_pooled()) post_layernorm.forward(be, p, pooled, s ? &s->post_ln : nullptr);
    }

    /// d_pooled [B, D] and d_last_hidden [B, N+1, D], either may be empty (d_pooled must be when
    /// forward computed no pooled output). Parameter gradients accumulate.
    void backward(B& be, Saved& s, ConstView<T> d_pooled, ConstView<T> d_last_hidden, GradMode mode) {
        const Config& c = config;
        const index_t Bn = s.batch, N = c.patches(), Tn = c.tokens(), D = c.hidden;
        const index_t K = c.channels * c.patch_size * c.patch_size;
        if (Bn <= 0) throw ArgumentError("VisionTransformer backward: this Saved holds no forward pass");
        if (!d_pooled.empty() && !s.pooled)
            throw ArgumentError("VisionTransformer backward: d_pooled given, but forward computed no pooled output");
        if (!d_pooled.empty()) expect_shape(d_pooled.shape(), {Bn, D}, "VisionTransformer backward d_pooled");
        if (!d_last_hidden.empty()) expect_shape(d_last_hidden.shape(), {Bn, Tn, D}, "VisionTransformer backward d_last_hidden");
        auto sc = be.scope();
        auto d_last = sc.tensor({Bn, Tn, D});
        if (d_last_hidden.empty()) be.fill(d_last, T(0));
        else be.copy(d_last_hidden, d_last);
        if (!d_pooled.empty()) {
            ConstView<T> d_p = d_pooled;
            if (norms_pooled()) {
                auto t = sc.tensor({Bn, D});
                post_layernorm.backward(be, s.post_ln, d_pooled, t, mode);
                d_p = t;
            }
            if (c.pooling == VisionPooling::cls) {
                for (index_t b = 0; b < Bn; ++b)
                    be.axpy(T(1), ConstView<T>(d_p.data() + b * D, Shape{D}), TensorView<T>(d_last.data() + b * Tn * D, Shape{D}));
            } else {  // d_last[b, 1:] += (1/N)·1·d_p[b]
                auto ones = sc.tensor({N});
                be.fill(ones, 1);
                for (index_t b = 0; b < Bn; ++b)
                    be.gemm(Trans::N, Trans::N, N, D, 1, typename B::Compute(1.0 / double(N)), ones.data(), 1,
                            d_p.data() + b * D, D, 1, d_last.data() + (b * Tn + 1) * D, D);
            }
        }
        ConstView<T> d_h = d_last;
        if (norms_tokens()) {
            auto t = sc.tensor({Bn, Tn, D});
            post_layernorm.backward(be, s.post_ln_tokens, d_last, t, mode);
            d_h = t;
        }
        auto d_h0 = sc.tensor({Bn, Tn, D});
        encoder.backward(be, s.encoder, d_h, d_h0, {}, mode);
        TensorView<T> d_emb = d_h0;
        if (pre_layrnorm) {
            d_emb = sc.tensor({Bn, Tn, D});
            pre_layrnorm->backward(be, s.pre_ln, d_h0, d_emb, mode);
        }
        position_embedding.backward(be, {0}, d_emb, mode);
        const bool acc = mode == GradMode::accumulate;
        if (T* g = class_embedding.grad_target(acc)) {
            if constexpr (!std::is_same_v<T, typename B::Compute>) {
                // 16-bit storage: Σ_b d_emb[b, 0, :] as one product (fp32 accumulation, one rounding).
                auto ones = sc.tensor({Bn});
                be.fill(ones, 1);
                be.gemm(Trans::N, Trans::N, 1, D, Bn, 1, ones.data(), Bn, d_emb.data(), Tn * D, 1, g, D);
            } else {
                for (index_t b = 0; b < Bn; ++b)
                    be.axpy(T(1), ConstView<T>(d_emb.data() + b * Tn * D, Shape{D}), TensorView<T>(g, Shape{D}));
            }
        }
        T* gw = patch_embedding.grad_target(acc);
        T* gb = c.patch_bias ? patch_bias.grad_target(acc) : nullptr;
        if (gw || gb) {
            auto d_pe = sc.tensor({Bn, N, D});
            for (index_t b = 0; b < Bn; ++b)
                be.copy(ConstView<T>(d_emb.data() + (b * Tn + 1) * D, Shape{N, D}),
                        TensorView<T>(d_pe.data() + b * N * D, Shape{N, D}));
            if (gw) be.gemm(Trans::T, Trans::N, D, K, Bn * N, T(1), d_pe.data(), D, s.patches.data(), K, T(1), gw, K);
            if (gb) be.sum_rows_accumulate(d_pe.reshape(Shape{Bn * N, D}), gb);
        }
    }

private:
    bool norms_tokens() const {
        return config.post_norm == VisionPostNorm::tokens || config.post_norm == VisionPostNorm::tokens_and_pooled;
    }
    bool norms_pooled() const {
        return config.post_norm == VisionPostNorm::pooled || config.post_norm == VisionPostNorm::tokens_and_pooled;
    }
    static const Config& checked(const Config& c) {
        if (c.patch_size <= 0 || c.image_size < c.patch_size)
            throw ArgumentError("VisionTransformer: patch_size " + std::to_string(c.patch_size) +
                                " must be positive and at most image_size " + std::to_string(c.image_size));
        return c;
    }
    /// Calls f(attention prefix, block names, {"<proj>.weight"/".bias" → parameter}) for the self-
    /// attention of every layer, found through the encoder's own names.
    template <class F>
    void for_each_attention(F&& f, const std::string& prefix = "") {
        const BlockNames& n = config.names.block;
        std::map<std::string, std::map<std::string, Param*>> by_attn;  // attention prefix → its parameters
        std::vector<std::string> order;
        const std::string mark = "." + n.attn + ".";
        encoder.visit(
            [&](const std::string& name, Param& p) {
                const std::size_t at = name.rfind(mark);
                if (at == std::string::npos) return;
                const std::string attn = name.substr(0, at + mark.size() - 1), rest = name.substr(at + mark.size());
                if (!by_attn.count(attn)) order.push_back(attn);
                by_attn[attn][rest] = &p;
            },
            join_name(prefix, config.names.encoder));
        for (const auto& attn : order) f(attn, n, by_attn[attn]);
    }
};

}  // namespace mmalign
