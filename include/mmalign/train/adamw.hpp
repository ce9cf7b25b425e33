// mmalign/train/adamw.hpp — AdamW (Loshchilov & Hutter 2019) over a module's parameters, as
// torch.optim.AdamW updates them.
//
// State per parameter: exp_avg, exp_avg_sq (the backend's tensors), and one step count. Decay is
// decoupled (p ← p·(1 − lr·wd) before the Adam update). By default no decay is applied to
// parameters of rank < 2 (biases, LayerNorm weights, class embeddings, the logit scale) nor to
// token/position embedding tables, following open_clip's exclusion of gains, biases and
// embeddings; `decay_filter` replaces that rule. Frozen parameters (requires_grad = false) are
// skipped. State is keyed by the visitor's names, so a checkpoint can save and restore it.
//
// Mixed precision: moments are kept in the backend's Compute type (float). On a backend whose
// storage is 16-bit, each parameter also gets a float master copy, made from its stored value at
// the first step; the update runs on the master copy and the parameter receives it rounded
// (Micikevicius et al. 2018, "Mixed Precision Training"). An element of the parameter written
// between steps (no longer its master's rounding) restarts its master from the written value
// (backend adamw_step), so a checkpoint restores the parameter and its master together
// (train/checkpoint.hpp). A step may take 1/loss-scale to apply to the gradients first
// (train/loss_scaler.hpp decides it and skips overflowing steps).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <type_traits>

#include "mmalign/core/backend.hpp"
#include "mmalign/core/parameter.hpp"

namespace mmalign {

/// open_clip-style rule: decay only matrices, and not token/position embedding tables.
inline bool default_weight_decay_filter(const std::string& name, const Shape& shape) {
    if (shape.rank() < 2) return false;
    for (const char* e : {"token_embedding", "position_embedding", "embed_tokens", "embed_positions",
                          "word_embeddings", "position_embeddings"})
        if (name.find(e) != std::string::npos) return false;
    return true;
}

template <Backend B>
class AdamW {
public:
    using T = typename B::Scalar;
    using C = typename B::Compute;
    using Buffer = typename B::ComputeTensor;
    static constexpr bool has_master = !std::is_same_v<T, C>;  // 16-bit storage: float master weights

    struct Config {
        double lr = 1e-3;
        double beta1 = 0.9;
        double beta2 = 0.999;
        double eps = 1e-8;
        double weight_decay = 0.01;
        std::function<bool(const std::string&, const Shape&)> decay_filter = default_weight_decay_filter;
    };
    struct State {
        Buffer exp_avg, exp_avg_sq;
        Buffer master;  // float copy of the parameter, with 16-bit storage only
    };

    Config config;

    AdamW() = default;
    explicit AdamW(Config c) : config(std::move(c)) {}

    std::int64_t step_count() const { return step_; }
    void set_step_count(std::int64_t s) { step_ = s; }
    std::map<std::string, State>& state() { return state_; }

    /// One update of every trainable parameter of `module` with learning rate `lr`; gradients are
    /// multiplied by `grad_scale` first (1 / the loss scale when the loss was scaled).
    template <class M>
    void step(B& be, M& module, double lr, double grad_scale = 1.0) {
        ++step_;
        module.visit([&](const std::string& name, auto& p) {
            if (!p.requires_grad || !p.has_grad()) return;  // like torch: no gradient, no update
            State& st = state_[name];
            const bool fresh = !(st.exp_avg.shape() == p.shape()) || !(st.exp_avg_sq.shape() == p.shape());
            if (fresh) {
                st.exp_avg.resize(p.shape());
                st.exp_avg_sq.resize(p.shape());
                st.exp_avg.zero();
                st.exp_avg_sq.zero();
            }
            if constexpr (has_master) {
                // No master yet: it starts from the stored, rounded parameter. A master that exists
                // is kept even beside fresh moments (load_master_weights and load_checkpoint set
                // masters from a float checkpoint's unrounded values before the first step); where
                // the parameter was written since, the update restarts those elements from it.
                if (!(st.master.shape() == p.shape())) {
                    st.master.resize(p.shape());
                    be.cast(p.value.cview(), st.master.view());
                }
            }
            const double wd = config.decay_filter(name, p.shape()) ? config.weight_decay : 0.0;
            be.adamw_step(p.value.view(), p.grad.view(), st.exp_avg.view(), st.exp_avg_sq.view(),
                          AdamWHyper{.lr = lr, .beta1 = config.beta1, .beta2 = config.beta2, .eps = config.eps,
                                     .weight_decay = wd, .step = step_, .grad_scale = grad_scale},
                          has_master ? st.master.view() : TensorView<C>{});
        });
    }
    template <class M>
    void step(B& be, M& module) {
        step(be, module, config.lr);
    }

private:
    std::map<std::string, State> state_;
    std::int64_t step_ = 0;
};

}  // namespace mmalign
