// mmalign/core/ops.hpp — the vocabulary shared by every backend's op set.
//
// These small value types appear in the signatures that the Backend concept (core/backend.hpp)
// requires, so modules describe an operation once and every backend carries it out.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include "mmalign/core/error.hpp"
#include "mmalign/core/float16.hpp"  // MMALIGN_HD
#include "mmalign/core/shape.hpp"

namespace mmalign {

/// Whether a gemm operand is used as stored (N) or transposed (T).
enum class Trans { N, T };

/// Pointwise nonlinearities of the reference models (transformers' activations.py):
/// quick_gelu x·σ(1.702x) (CLIP), gelu with erf (BERT, BLIP, Q-Former), gelu_tanh (HF "gelu_new"),
/// relu (OPT).
enum class Activation { none, relu, gelu, gelu_tanh, quick_gelu, tanh };

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
        case Activation::tanh: return "tanh";
    }
    return "?";
}

/// Whether a backward pass accumulates parameter gradients (`+=`) or leaves them alone
/// (a frozen module that still passes the input gradient through).
enum class GradMode { ignore, accumulate };

/// Whether a backward pass assigns its input gradient (`d_x = …`, the default) or adds it to what
/// d_x holds (`d_x += …`): a residual branch adds its gradient into the stream's without a
/// temporary (nn/sublayer.hpp).
enum class InputGradMode { assign, accumulate };

/// Which keys a query may attend to, in any combination:
///  - `key_keep` [B, Tk]: Hugging Face's attention_mask, 1 = attend, 0 = padding;
///  - `causal`: key j is visible from query i iff j <= i + causal_offset (causal_offset = Tk - Tq
///    when the queries are the last Tq positions, as in incremental decoding);
///  - `additive` [B, Tq, Tk] (or [1, Tq, Tk] with additive_batch_stride = 0): added to the
///    scaled scores, shared by all heads, for custom masks and biases.
/// key_keep is host memory unless `key_keep_resident` is set, which `be.upload_mask` does when it
/// keeps a copy in the backend's own memory: a module uploads a mask once and passes it to every
/// attention call of a forward or of a decoding step (the CPU's memory is the host's, so there the
/// flag changes nothing).
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
    bool key_keep_resident = false;      // key_keep lies in the backend's memory (be.upload_mask)

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

/// One AdamW step's constants in the compute type C, in torch's order of operations (decoupled
/// decay factor, bias corrections folded into the step size and the sqrt of the second one).
template <class C>
struct AdamWConstants {
    C decay, beta1, beta2, eps, step_size, bc2_sqrt, grad_scale;
    bool decay_on;

    explicit AdamWConstants(const AdamWHyper& h)
        : decay(static_cast<C>(1.0 - h.lr * h.weight_decay)),
          beta1(static_cast<C>(h.beta1)),
          beta2(static_cast<C>(h.beta2)),
          eps(static_cast<C>(h.eps)),
          step_size(static_cast<C>(h.lr / (1.0 - std::pow(h.beta1, double(h.step))))),
          bc2_sqrt(static_cast<C>(std::sqrt(1.0 - std::pow(h.beta2, double(h.step))))),
          grad_scale(static_cast<C>(h.grad_scale)),
          decay_on(h.weight_decay != 0) {}
};

/// The AdamW update of one element in C, shared by every 16-bit path (the CPU reference and the
/// CUDA kernel) so that they cannot drift apart: gradient g (unscaled here), moments m and v
/// updated in place; returns the new parameter.
template <class C>
MMALIGN_HD inline C adamw_update(C p, C g, C& m, C& v, const AdamWConstants<C>& k) {
    if (k.grad_scale != C(1)) g *= k.grad_scale;
    if (k.decay_on) p *= k.decay;
    m = m + (g - m) * (C(1) - k.beta1);
    v = v * k.beta2 + (C(1) - k.beta2) * g * g;
#if defined(__CUDA_ARCH__)
    const C root = sqrt(v);
#else
    const C root = std::sqrt(v);
#endif
    return p - k.step_size * m / (root / k.bc2_sqrt + k.eps);
}

/// The shape rule of every backend's adamw_step: gradient, moments and (when given) master
/// weights shaped like the parameter.
inline void check_adamw_shapes(const Shape& p, const Shape& g, const Shape& m, const Shape& v,
                               const Shape* master = nullptr) {
    if (!(p == g) || !(p == m) || !(p == v) || (master && !(p == *master)))
        throw ShapeError("adamw: parameter " + p.str() + ", gradient " + g.str() + ", exp_avg " + m.str() +
                         ", exp_avg_sq " + v.str() + (master ? ", master " + master->str() : std::string()) +
                         " must agree");
}

}  // namespace mmalign
