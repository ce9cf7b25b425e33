// mmalign/nn/linear.hpp — Linear: y = act(x · Wᵀ + b), torch.nn.Linear's layout.
//
//   x [M.., in] → y [M.., out];  W [out, in], b [out]   (HF keys "<name>.weight", "<name>.bias")
//   An optional activation is fused into the product's epilogue (Mlp's first layer).
// Saved: x, and the pre-activation when there is an activation.
// Backward (d_y given):  g = d_y · act'(pre)
//   d_x  = g · W              (assigned, or added with InputGradMode::accumulate; skipped when empty)
//   d_W += gᵀ · x,  d_b += Σ_rows g   (when mode == accumulate and the parameter requires grad)
#pragma once

#include <string>

#include "mmalign/core/backend.hpp"
#include "mmalign/core/parameter.hpp"

namespace mmalign {

template <Backend B>
struct Linear {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;  // owning storage in the backend's memory
    using Param = BasicParameter<Buffer>;

    struct Config {
        index_t in = 0;
        index_t out = 0;
        bool bias = true;
        Activation activation = Activation::none;
    };
    struct Params {
        Param weight;  // [out, in]
        Param bias;    // [out], empty when Config::bias is false
    };
    struct Saved {
        Buffer x;    // [M, in]
        Buffer pre;  // [M, out], only with an activation
        /// Where forward keeps its input; a parent may write the input here first (no copy then).
        Buffer& input() { return x; }
    };

    Config config;
    Params params;

    Linear() = default;
    explicit Linear(Config c) : config(c) {
        if (c.in <= 0 || c.out <= 0)
            throw ArgumentError("Linear: in and out must be positive, found in=" + std::to_string(c.in) +
                                " out=" + std::to_string(c.out));
        params.weight = Param(Shape{c.out, c.in});
        if (c.bias) params.bias = Param(Shape{c.out});
    }

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        f(join_name(prefix, "weight"), params.weight);
        if (config.bias) f(join_name(prefix, "bias"), params.bias);
    }

    /// x [M.., in] → y [M.., out]. With `s`, keeps what backward needs (no copy when x already
    /// is s->x, which lets a parent write its output straight into this layer's saved input).
    void forward(B& be, ConstView<T> x, TensorView<T> y, Saved* s = nullptr) const {
        check_io(x, y);
        T* pre = nullptr;
        if (s) {
            if (s->x.data() != x.data()) {
                s->x.resize(x.shape());
                be.copy(x, s->x.view());
            }
            if (config.activation != Activation::none) {
                s->pre.resize(y.shape());
                pre = s->pre.data();
            }
        }
        be.linear_forward(x, params.weight.value.view(), config.bias ? params.bias.value.data() : nullptr,
                          config.activation, y, pre);
    }

    void backward(B& be, Saved& s, ConstView<T> d_y, TensorView<T> d_x, GradMode mode,
                  InputGradMode d_x_mode = InputGradMode::assign) {
        backward_from(be, s.x.view(), config.activation != Activation::none ? s.pre.view() : ConstView<T>{}, d_y, d_x,
                      mode, d_x_mode);
    }

    /// The backward with the saved tensors passed explicitly, for parents that keep the input
    /// themselves (attention keeps x once for its three projections).
    void backward_from(B& be, ConstView<T> x, ConstView<T> pre, ConstView<T> d_y, TensorView<T> d_x, GradMode mode,
                       InputGradMode d_x_mode = InputGradMode::assign) {
        const index_t K = config.in, N = config.out, M = x.numel() / K;
        if (d_y.numel() != M * N || d_y.shape().cols() != N)
            throw ShapeError("Linear backward d_y: expected " + std::to_string(M) + " rows of " + std::to_string(N) +
                             ", found " + d_y.shape().str());
        auto sc = be.scope();
        ConstView<T> g = d_y;
        if (config.activation != Activation::none) {
            auto gp = sc.tensor(d_y.shape());
            be.activation_backward(config.activation, pre, d_y, gp);
            g = gp;
        }
        if (!d_x.empty()) {
            if (d_x.numel() != M * K) throw ShapeError("Linear backward d_x: expected " + x.shape().str() + ", found " + d_x.shape().str());
            be.gemm(Trans::N, Trans::N, M, K, N, T(1), g.data(), N, params.weight.value.data(), K,
                    d_x_mode == InputGradMode::accumulate ? T(1) : T(0), d_x.data(), K);
        }
        const bool acc = mode == GradMode::accumulate;
        if (T* dw = params.weight.grad_target(acc))
            be.gemm(Trans::T, Trans::N, N, K, M, T(1), g.data(), N, x.data(), K, T(1), dw, K);
        if (config.bias)
            if (T* db = params.bias.grad_target(acc)) be.sum_rows_accumulate(g, db);
    }

private:
    void check_io(ConstView<T> x, ConstView<T> y) const {
        if (x.shape().cols() != config.in)
            throw ShapeError("Linear input: expected last extent " + std::to_string(config.in) + ", found " +
                             x.shape().str());
        if (y.shape().cols() != config.out || y.shape().rows() != x.shape().rows())
            throw ShapeError("Linear output: expected " + std::to_string(x.shape().rows()) + " rows of " +
                             std::to_string(config.out) + ", found " + y.shape().str());
    }
};

}  // namespace mmalign
