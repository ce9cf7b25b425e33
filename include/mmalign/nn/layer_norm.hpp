// mmalign/nn/layer_norm.hpp — LayerNorm over the last axis (torch.nn.LayerNorm).
//
//   x [M.., D] → y [M.., D];  weight [D], bias [D];  eps from the config (1e-5 CLIP's
//   layer_norm_eps, 1e-12 BERT's, 1e-6 BLIP-2's vision tower, as their HF configs set it).
//   Saved: x, mean [M], rstd [M].
//   Backward: d_x assigned (or added with InputGradMode::accumulate), d_weight/d_bias accumulated.
#pragma once

#include <string>

#include "mmalign/core/backend.hpp"
#include "mmalign/core/parameter.hpp"

namespace mmalign {

template <Backend B>
struct LayerNorm {
    using T = typename B::Scalar;
    using Buffer = typename B::Tensor;  // owning storage in the backend's memory
    using Param = BasicParameter<Buffer>;

    struct Config {
        index_t dim = 0;
        double eps = 1e-5;
    };
    struct Params {
        Param weight;  // [D]
        Param bias;    // [D]
    };
    struct Saved {
        Buffer x;     // [M, D]
        typename B::ComputeTensor mean;  // [M]
        typename B::ComputeTensor rstd;  // [M]
        /// Where forward keeps its input; a parent may write the input here first (no copy then).
        Buffer& input() { return x; }
    };

    Config config;
    Params params;

    LayerNorm() = default;
    explicit LayerNorm(Config c) : config(c) {
        if (c.dim <= 0) throw ArgumentError("LayerNorm: dim must be positive, found " + std::to_string(c.dim));
        params.weight = Param(Shape{c.dim});
        params.weight.value.fill(T(1));
        params.bias = Param(Shape{c.dim});
    }

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        f(join_name(prefix, "weight"), params.weight);
        f(join_name(prefix, "bias"), params.bias);
    }

    void forward(B& be, ConstView<T> x, TensorView<T> y, Saved* s = nullptr) const {
        if (x.shape().cols() != config.dim)
            throw ShapeError("LayerNorm input: expected last extent " + std::to_string(config.dim) + ", found " +
                             x.shape().str());
        typename B::Compute *mean = nullptr, *rstd = nullptr;
        if (s) {
            if (s->x.data() != x.data()) {
                s->x.resize(x.shape());
                be.copy(x, s->x.view());
            }
            s->mean.resize(Shape{x.shape().rows()});
            s->rstd.resize(Shape{x.shape().rows()});
            mean = s->mean.data();
            rstd = s->rstd.data();
        }
        be.layer_norm_forward(x, params.weight.value.view(), params.bias.value.view(), config.eps, y, mean, rstd);
    }

    void backward(B& be, Saved& s, ConstView<T> d_y, TensorView<T> d_x, GradMode mode,
                  InputGradMode d_x_mode = InputGradMode::assign) {
        const bool acc = mode == GradMode::accumulate;
        if (d_x_mode == InputGradMode::assign || d_x.empty()) {
            be.layer_norm_backward(d_y, s.x.view(), params.weight.value.view(), s.mean.data(), s.rstd.data(), d_x,
                                   params.weight.grad_target(acc), params.bias.grad_target(acc));
            return;
        }
        auto sc = be.scope();  // the op assigns, so the accumulating form goes through a temporary
        auto tmp = sc.tensor(d_x.shape());
        be.layer_norm_backward(d_y, s.x.view(), params.weight.value.view(), s.mean.data(), s.rstd.data(), tmp,
                               params.weight.grad_target(acc), params.bias.grad_target(acc));
        be.axpy(T(1), tmp, d_x);
    }
};

}  // namespace mmalign
