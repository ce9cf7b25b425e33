// mmalign/nn/mlp.hpp — the transformer feed-forward block: y = fc2(act(fc1(x))).
//
//   x [M.., D] → fc1 [F, D] → act → fc2 [D, F] → y [M.., D]
//   HF names: CLIP "mlp.fc1"/"mlp.fc2"; BERT "intermediate.dense"/"output.dense" (Config::names).
//   The activation is fused into fc1's epilogue. Saved: fc1's (x, pre-activation), fc2's input
//   (fc1 writes its output straight there, so the hidden activations are stored once).
// Backward: d_x assigned (or added with InputGradMode::accumulate), parameter gradients accumulated.
#pragma once

#include <string>

#include "mmalign/nn/linear.hpp"

namespace mmalign {

template <Backend B>
struct Mlp {
    using T = typename B::Scalar;

    struct Config {
        index_t dim = 0;
        index_t hidden = 0;
        Activation activation = Activation::gelu;
        std::string fc1_name = "fc1";
        std::string fc2_name = "fc2";
        bool bias = true;  // false: fc1 and fc2 without biases (OPT's enable_bias)
    };
    struct Saved {
        typename Linear<B>::Saved fc1, fc2;
        /// Where forward keeps its input; a parent may write the input here first (no copy then).
        typename B::Tensor& input() { return fc1.input(); }
    };

    Config config;
    Linear<B> fc1, fc2;

    Mlp() = default;
    explicit Mlp(Config c)
        : config(c),
          fc1({.in = c.dim, .out = c.hidden, .bias = c.bias, .activation = c.activation}),
          fc2({.in = c.hidden, .out = c.dim, .bias = c.bias}) {}

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        fc1.visit(f, join_name(prefix, config.fc1_name));
        fc2.visit(f, join_name(prefix, config.fc2_name));
    }

    void forward(B& be, ConstView<T> x, TensorView<T> y, Saved* s = nullptr) const {
        const Shape hs{x.shape().rows(), config.hidden};  // [M, F]
        if (s) {
            // fc1 writes into fc2's saved input, so the hidden activations are stored once.
            s->fc2.input().resize(hs);
            fc1.forward(be, x, s->fc2.input().view(), &s->fc1);
            fc2.forward(be, s->fc2.input().view(), y, &s->fc2);
            return;
        }
        auto sc = be.scope();
        auto h = sc.tensor(hs);
        fc1.forward(be, x, h, nullptr);
        fc2.forward(be, h, y, nullptr);
    }

    /// d_x (may be empty) assigned or added to (`d_x_mode`); parameter gradients accumulated.
    void backward(B& be, Saved& s, ConstView<T> d_y, TensorView<T> d_x, GradMode mode,
                  InputGradMode d_x_mode = InputGradMode::assign) {
        auto sc = be.scope();
        auto d_h = sc.tensor(s.fc2.x.shape());  // [M, F]
        fc2.backward(be, s.fc2, d_y, d_h, mode);
        fc1.backward(be, s.fc1, d_h, d_x, mode, d_x_mode);
    }
};

}  // namespace mmalign
