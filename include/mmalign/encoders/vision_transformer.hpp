// mmalign/encoders/vision_transformer.hpp — the CLIP image tower (HF CLIPVisionTransformer;
// Dosovitskiy et al. 2021 with CLIP's extra LayerNorm before the blocks, Radford et al. 2021).
//
//   pixels [B, C, S, S] → patches [B, N, C·P·P] (N = (S/P)²) → · Wᵀ (patch_embedding, no bias)
//   → [class_embedding ; patches] + position_embedding[0..N] → pre_layrnorm → L pre-norm blocks
//   → last_hidden_state [B, N+1, D] (not normalised) ;  pooled = post_layernorm(last[:, 0]) [B, D]
// HF keys (under "vision_model"): embeddings.{class_embedding [D], patch_embedding.weight
// [D, C, P, P], position_embedding.weight [N+1, D]}, pre_layrnorm.*, encoder.layers.{i}.*,
// post_layernorm.* (models.md §1.2–1.3; "pre_layrnorm" is HF's spelling).
// Backward: from d_pooled (and optionally d_last_hidden) to every parameter; no pixel gradient.
#pragma once

#include <string>
#include <type_traits>

#include "mmalign/nn/embedding.hpp"
#include "mmalign/nn/transformer_stack.hpp"

namespace mmalign {

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

        index_t grid() const { return image_size / patch_size; }
        index_t patches() const { return grid() * grid(); }
        index_t tokens() const { return patches() + 1; }
    };
    struct Saved {
        Buffer patches;  // [B, N, C·P·P]
        typename LayerNorm<B>::Saved pre_ln, post_ln;
        typename Stack::Saved encoder;
    };

    Config config;
    Param class_embedding;  // [D]
    Param patch_embedding;  // [D, C, P, P]
    LearnedPositions<B> position_embedding;
    LayerNorm<B> pre_layrnorm, post_layernorm;
    Stack encoder;

    VisionTransformer() = default;
    explicit VisionTransformer(Config c)
        : config(c),
          class_embedding(Shape{c.hidden}),
          patch_embedding(Shape{c.hidden, c.channels, c.patch_size, c.patch_size}),
          position_embedding({.max_positions = c.tokens(), .dim = c.hidden}),
          pre_layrnorm({.dim = c.hidden, .eps = c.eps}),
          post_layernorm({.dim = c.hidden, .eps = c.eps}),
          encoder({.layers = c.layers,
                   .block = {.dim = c.hidden, .heads = c.heads, .mlp_hidden = c.mlp_hidden, .activation = c.activation,
                             .eps = c.eps, .names = BlockNames::clip()}}) {
        if (c.patch_size <= 0 || c.image_size % c.patch_size)
            throw ArgumentError("VisionTransformer: image_size " + std::to_string(c.image_size) +
                                " must be a positive multiple of patch_size " + std::to_string(c.patch_size));
    }

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        f(join_name(prefix, "embeddings.class_embedding"), class_embedding);
        f(join_name(prefix, "embeddings.patch_embedding.weight"), patch_embedding);
        position_embedding.visit(f, join_name(prefix, "embeddings.position_embedding"));
        pre_layrnorm.visit(f, join_name(prefix, "pre_layrnorm"));
        encoder.visit(f, join_name(prefix, "encoder"));
        post_layernorm.visit(f, join_name(prefix, "post_layernorm"));
    }

    /// pixels [B, C, S, S] → pooled [B, D]; last_hidden [B, N+1, D] is filled when not empty.
    void forward(B& be, ConstView<T> pixels, TensorView<T> last_hidden, TensorView<T> pooled, Saved* s = nullptr) const {
        const Config& c = config;
        expect_shape(pixels.shape(), {-1, c.channels, c.image_size, c.image_size}, "VisionTransformer pixels");
        const index_t Bn = pixels.dim(0), N = c.patches(), Tn = c.tokens(), D = c.hidden;
        const index_t K = c.channels * c.patch_size * c.patch_size;
        expect_shape(pooled.shape(), {Bn, D}, "VisionTransformer pooled output");
        if (!last_hidden.empty()) expect_shape(last_hidden.shape(), {Bn, Tn, D}, "VisionTransformer last_hidden_state");
        auto sc = be.scope();
        TensorView<T> patches;
        if (s) {
            s->patches.resize(Shape{Bn, N, K});
            patches = s->patches.view();
        } else {
            patches = sc.tensor({Bn, N, K});
        }
        be.patchify(pixels, c.patch_size, patches);
        auto pe = sc.tensor({Bn, N, D});
        be.gemm(Trans::N, Trans::T, Bn * N, D, K, T(1), patches.data(), K, patch_embedding.value.data(), K, T(0), pe.data(), D);
        auto emb = sc.tensor({Bn, Tn, D});
        for (index_t b = 0; b < Bn; ++b) {
            be.copy(class_embedding.value.view(), TensorView<T>(emb.data() + b * Tn * D, Shape{D}));
            be.copy(ConstView<T>(pe.data() + b * N * D, Shape{N, D}), TensorView<T>(emb.data() + (b * Tn + 1) * D, Shape{N, D}));
        }
        position_embedding.forward(be, emb, emb);
        auto h0 = sc.tensor({Bn, Tn, D});
        pre_layrnorm.forward(be, emb, h0, s ? &s->pre_ln : nullptr);
        TensorView<T> hidden = last_hidden.empty() ? sc.tensor({Bn, Tn, D}) : last_hidden;
        encoder.forward(be, h0, {}, {}, {}, hidden, s ? &s->encoder : nullptr);
        auto cls = sc.tensor({Bn, D});
        for (index_t b = 0; b < Bn; ++b)
            be.copy(ConstView<T>(hidden.data() + b * Tn * D, Shape{D}), TensorView<T>(cls.data() + b * D, Shape{D}));
        post_layernorm.forward(be, cls, pooled, s ? &s->post_ln : nullptr);
    }

    /// d_pooled [B, D]; d_last_hidden [B, N+1, D] may be empty. Parameter gradients accumulate.
    void backward(B& be, Saved& s, ConstView<T> d_pooled, ConstView<T> d_last_hidden, GradMode mode) {
        const Config& c = config;
        const index_t Bn = d_pooled.dim(0), N = c.patches(), Tn = c.tokens(), D = c.hidden;
        const index_t K = c.channels * c.patch_size * c.patch_size;
        auto sc = be.scope();
        auto d_cls = sc.tensor({Bn, D});
        post_layernorm.backward(be, s.post_ln, d_pooled, d_cls, mode);
        auto d_hidden = sc.tensor({Bn, Tn, D});
        if (d_last_hidden.empty()) be.fill(d_hidden, T(0));
        else be.copy(d_last_hidden, d_hidden);
        for (index_t b = 0; b < Bn; ++b)
            be.axpy(T(1), ConstView<T>(d_cls.data() + b * D, Shape{D}), TensorView<T>(d_hidden.data() + b * Tn * D, Shape{D}));
        auto d_h0 = sc.tensor({Bn, Tn, D});
        encoder.backward(be, s.encoder, d_hidden, d_h0, {}, mode);
        auto d_emb = sc.tensor({Bn, Tn, D});
        pre_layrnorm.backward(be, s.pre_ln, d_h0, d_emb, mode);
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
        if (T* g = patch_embedding.grad_target(acc)) {
            auto d_pe = sc.tensor({Bn, N, D});
            for (index_t b = 0; b < Bn; ++b)
                be.copy(ConstView<T>(d_emb.data() + (b * Tn + 1) * D, Shape{N, D}), TensorView<T>(d_pe.data() + b * N * D, Shape{N, D}));
            be.gemm(Trans::T, Trans::N, D, K, Bn * N, T(1), d_pe.data(), D, s.patches.data(), K, T(1), g, K);
        }
    }
};

}  // namespace mmalign
