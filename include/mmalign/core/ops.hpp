// mmalign/core/ops.hpp — the vocabulary shared by every backend's op set.
//
// These small value types appear in the signatures that the Backend concept (core/backend.hpp)
// requires, so modules describe an operation once and every backend carries it out.
#pragma once

#include <cstdint>
#include <string_view>

#include "mmalign/core/shape.hpp"

namespace mmalign {

/// Whether a gemm operand is used as stored (N) or transposed (T).
enum class Trans { N, T };

/// Pointwise nonlinearities of the reference models (models.md §0):
/// quick_gelu x·σ(1.702x) (CLIP), gelu with erf (BERT, BLIP, Q-Former), gelu_tanh (HF "gelu_new"),
/// relu (OPT).
enum class Activation { none, relu, gelu, gelu_tanh, quick_gelu };

/// What a product's result gets on its way out (element i, j of C = alpha·op(A)·op(B) + beta·C):
///   z = C[i, j] + bias[j];  pre[i·ldpre + j] = z (when pre is set);  C[i, j] = act(z).
/// Linear layers are one product with this epilogue; the CPU's AVX-512 engine applies it to each
/// tile while the tile is in L1, the other engines in one pass after the product.
template <class T>
struct GemmEpilogue {
    const T* bias = nullptr;  // [n] or null
    Activation act = Activation::none;
    T* pre = nullptr;  // [m, ldpre] or null
    index_t ldpre = 0;
    bool empty() const { return bias == nullptr && pre == nullptr && act == Activation::none; }
};

inline std::string_view to_string(Activation a) {
    switch (a) {
        case Activation::none: return "none";
        case Activation::relu: return "relu";
        case Activation::gelu: return "gelu";
        case Activation::gelu_tanh: return "gelu_tanh";
        case Activation::quick_gelu: return "quick_gelu";
    }
    return "?";
}

/// Whether a backward pass accumulates parameter gradients (`+=`) or leaves them alone
/// (a frozen module that still passes the input gradient through).
enum class GradMode { ignore, accumulate };

/// Which keys a query may attend to, in any combination:
///  - `key_keep` [B, Tk]: Hugging Face's attention_mask, 1 = attend, 0 = padding;
///  - `causal`: key j is visible from query i iff j <= i + causal_offset (causal_offset = Tk - Tq
///    when the queries are the last Tq positions, as in incremental decoding);
///  - `additive` [B, Tq, Tk] (or [1, Tq, Tk] with additive_batch_stride = 0): added to the
///    scaled scores, shared by all heads, for custom masks and biases.
/// Keys hidden by key_keep or causal are removed exactly (probability 0). HF adds a large negative
/// constant instead; with at least one visible key per row both give identical fp32 results.
/// A row with no visible key gets all-zero probabilities.
template <class T>
struct AttentionMask {
    const std::int32_t* key_keep = nullptr;  // [B, Tk]
    bool causal = false;
    index_t causal_offset = 0;
    const T* additive = nullptr;         // [B, Tq, Tk] or [1, Tq, Tk]
    index_t additive_batch_stride = -1;  // -1: Tq*Tk (one mask per batch row); 0: broadcast

    bool any() const { return key_keep || causal || additive; }
};

/// The hyper-parameters of one AdamW update (Loshchilov & Hutter 2019), step counted from 1.
struct AdamWHyper {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.0;
    std::int64_t step = 1;
    double grad_scale = 1.0;  // the gradient is multiplied by this first: 1 / loss scale under loss scaling
};

}  // namespace mmalign
