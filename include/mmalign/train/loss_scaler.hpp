// mmalign/train/loss_scaler.hpp — dynamic loss scaling for 16-bit training, with the rule and
// defaults of torch.amp.GradScaler.
//
// float16 gradients underflow: values below 2^-24 become zero. Multiplying the loss's gradient by
// a large scale S moves them into range; the optimizer divides by S again before the update
// (Micikevicius et al. 2018). When a scaled gradient overflows (inf or NaN anywhere) the step is
// skipped and S is multiplied by backoff_factor; after growth_interval finite steps in a row S
// is multiplied by growth_factor. Scales are powers of two by default, so scaling and unscaling
// are exact: with float storage a scaled run equals an unscaled one bit for bit. bfloat16 has
// float's range and needs no scaling; `enabled = false` makes every call a plain step.
//
//   LossScaler<Be> scaler;                       // scale 2^16
//   auto r = loss.forward(be, ...);
//   loss.backward(be, s, scaler.scale(), ...);   // seed the backward with S instead of 1
//   ... model backward ...
//   scaler.step(be, optimizer, model, lr);       // unscale, check, update or skip; adjust S
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mmalign/core/backend.hpp"
#include "mmalign/core/error.hpp"
#include "mmalign/train/adamw.hpp"

namespace mmalign {

template <Backend B>
class LossScaler {
public:
    using T = typename B::Scalar;

    struct Config {
        double init_scale = 65536.0;  // 2^16, torch's default
        double growth_factor = 2.0;
        double backoff_factor = 0.5;
        std::int64_t growth_interval = 2000;
        bool enabled = true;
    };

    LossScaler() : LossScaler(Config{}) {}
    explicit LossScaler(Config c) : config_(c), scale_(c.enabled ? c.init_scale : 1.0) {
        if (!(c.init_scale > 0) || !(c.growth_factor >= 1) || !(c.backoff_factor > 0 && c.backoff_factor < 1) ||
            c.growth_interval < 1)
            throw ArgumentError("LossScaler: expected init_scale > 0, growth_factor ≥ 1, 0 < backoff_factor < 1 and "
                                "growth_interval ≥ 1, found " + std::to_string(c.init_scale) + ", " +
                                std::to_string(c.growth_factor) + ", " + std::to_string(c.backoff_factor) + ", " +
                                std::to_string(c.growth_interval));
    }

    /// What to seed the backward with (the upstream gradient of the loss).
    double scale() const { return scale_; }
    void set_scale(double s) { scale_ = s; }
    /// Finite steps since the scale last changed.
    std::int64_t growth_tracker() const { return tracker_; }
    void set_growth_tracker(std::int64_t t) { tracker_ = t; }
    const Config& config() const { return config_; }
    /// Steps skipped because a gradient overflowed.
    std::int64_t skipped_steps() const { return skipped_; }
    void set_skipped_steps(std::int64_t n) { skipped_ = n; }

    /// Unscales and applies the gradients of `module` with `opt` when all are finite, then updates
    /// the scale. Returns false when the step was skipped (the parameters and the optimizer's
    /// state and step count are untouched; zero the gradients and go on with the next batch).
    template <class M>
    bool step(B& be, AdamW<B>& opt, M& module, double lr) {
        if (!config_.enabled) {
            opt.step(be, module, lr);
            return true;
        }
        std::vector<ConstView<T>> grads;
        module.visit([&](const std::string&, auto& p) {
            if (p.requires_grad && p.has_grad()) grads.push_back(p.grad.cview());
        });
        if (!be.all_finite(std::span<const ConstView<T>>(grads))) {
            skip();
            return false;
        }
        opt.step(be, module, lr, 1.0 / scale_);
        if (++tracker_ >= config_.growth_interval) {
            scale_ *= config_.growth_factor;
            tracker_ = 0;
        }
        return true;
    }
    template <class M>
    bool step(B& be, AdamW<B>& opt, M& module) {
        return step(be, opt, module, opt.config.lr);
    }
    /// Records an overflow found outside step() — e.g. a global gradient norm that is infinite
    /// while every element is finite (‖S·g‖ beyond the float range): the step is not taken, the
    /// scale backs off and the growth count restarts, as for a non-finite element.
    void skip() {
        if (!config_.enabled) return;
        scale_ *= config_.backoff_factor;
        tracker_ = 0;
        ++skipped_;
    }

private:
    Config config_;
    double scale_ = 1.0;
    std::int64_t tracker_ = 0;
    std::int64_t skipped_ = 0;
};

}  // namespace mmalign
