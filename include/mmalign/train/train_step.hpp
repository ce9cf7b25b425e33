// mmalign/train/train_step.hpp — one optimisation step of any model: zero the gradients, forward
// and backward over one batch or k micro-batches, clip the global norm, update with AdamW (loss
// scaling: skip on overflow and adjust the scale), and report what happened.
//
// The model-specific part is a task (concept Trainable): it holds the model and its saved
// activations and runs `loss_and_backward(be, batch, seed)` — forward, objective, and a backward
// seeded with `seed` that adds into the parameter gradients — returning a result with a `.loss`
// (and whatever else the objective reports). An optional `after_update(be)` runs after each
// applied update (CLIP's logit-scale clamp). models/clip_contrastive.hpp is CLIP's task.
//
// The order is torch's mixed-precision recipe (torch.amp docs, "Gradient clipping": unscale_,
// clip_grad_norm_, step, update), with S the loss scale (1 without a LossScaler):
//   zero_grad → for each of k micro-batches: loss_and_backward(seed = S/k)
//   → norm = ‖g‖/S → when norm > max_grad_norm: g ← g·max/(norm + 1e-6) (train/gradients.hpp)
//   → LossScaler::step (any non-finite gradient: no update, S backed off; else AdamW with g/S)
//   → after_update
// Without a scaler, TrainStepConfig::skip_nonfinite makes a non-finite loss or norm skip the update.
// The gradients stay scaled until AdamW's one multiply by 1/S, so 16-bit gradients never hold
// unscaled values that could underflow. With S a power of two the norm and the clipped values
// are the unscaled run's exactly (powers of two scale without rounding), so a scaled step equals
// an unscaled one bit for bit, as train/loss_scaler.hpp's steps do.
// Accumulation: seeding each micro-batch with S/k makes the summed gradient that of the mean of
// the micro-batch losses. For a loss that is a mean over examples and micro-batches of equal size
// this is the gradient of the whole batch; a contrastive loss, whose negatives are the rest of its
// batch, instead trains on k smaller batches.
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <span>
#include <type_traits>

#include "mmalign/core/backend.hpp"
#include "mmalign/core/error.hpp"
#include "mmalign/core/parameter.hpp"
#include "mmalign/train/adamw.hpp"
#include "mmalign/train/gradients.hpp"
#include "mmalign/train/loss_scaler.hpp"

namespace mmalign {

/// A model-specific training pass the step can drive on backend B.
template <class Task, class B>
concept Trainable = Backend<B> && requires(Task& task, B& be, const typename Task::Batch& batch,
                                           typename B::Compute seed) {
    typename Task::Batch;
    task.module();  // the model whose parameters (its visit) the step zeroes, clips and updates
    { task.loss_and_backward(be, batch, seed).loss } -> std::convertible_to<double>;
};

struct TrainStepConfig {
    double max_grad_norm = 0;  // > 0: clip the global gradient norm to this (torch clip_grad_norm_)
    // Without an enabled LossScaler: a step whose loss or gradient norm is not finite makes no
    // update (StepRecord::skipped and ::nonfinite), so the weights and AdamW's moments stay finite
    // and the caller decides (stop naming the step, or skip and count it: train/trainer.hpp).
    // false applies such a step, as torch does without a scaler.
    bool skip_nonfinite = false;
};

/// What one step did. `Result` is the task's report (the objective's loss and metrics).
template <class Result>
struct StepRecord {
    Result result{};          // the task's report on the last micro-batch
    double loss = 0;          // mean of the micro-batches' losses
    double grad_norm = 0;     // global norm of the unscaled gradient before clipping (inf/NaN on overflow)
    double lr = 0;
    double loss_scale = 1;    // the loss scale S (each of k micro-batches' backward is seeded with S/k)
    int micro_batches = 0;
    bool clipped = false;     // the gradient was scaled down to max_grad_norm
    bool skipped = false;     // no update: a gradient overflowed (the loss scale backed off), or skip_nonfinite
    bool nonfinite = false;   // the loss or the gradient norm is NaN or infinite
};

template <Backend B>
class TrainStep {
public:
    using C = typename B::Compute;

    /// The optimizer and the scaler (null: no loss scaling) stay the caller's, so checkpoints
    /// save and restore them as before.
    explicit TrainStep(AdamW<B>& optimizer, TrainStepConfig config = {}, LossScaler<B>* scaler = nullptr)
        : opt_(optimizer), scaler_(scaler), config_(config) {}

    AdamW<B>& optimizer() { return opt_; }
    LossScaler<B>* scaler() { return scaler_; }
    const TrainStepConfig& config() const { return config_; }

    /// One step on one batch with learning rate `lr`.
    template <class Task>
        requires Trainable<Task, B>
    auto operator()(B& be, Task& task, const typename Task::Batch& batch, double lr) {
        return (*this)(be, task, std::span<const typename Task::Batch>(&batch, 1), lr);
    }

    /// One step whose gradient is accumulated over `micro_batches` (k ≥ 1).
    template <class Task>
        requires Trainable<Task, B>
    auto operator()(B& be, Task& task, std::span<const typename Task::Batch> micro_batches, double lr) {
        using Result = std::remove_cvref_t<decltype(task.loss_and_backward(be, micro_batches[0], C(1)))>;
        if (micro_batches.empty()) throw ArgumentError("TrainStep: no batch to train on");
        auto& model = task.module();
        StepRecord<Result> r;
        r.lr = lr;
        r.micro_batches = static_cast<int>(micro_batches.size());
        r.loss_scale = scaler_ ? scaler_->scale() : 1.0;
        const C seed = static_cast<C>(r.loss_scale / double(micro_batches.size()));

        zero_grad(model);
        double loss_sum = 0;
        for (const auto& batch : micro_batches) {
            r.result = task.loss_and_backward(be, batch, seed);
            loss_sum += double(r.result.loss);
        }
        r.loss = loss_sum / double(micro_batches.size());

        r.grad_norm = global_grad_norm(be, model) / r.loss_scale;
        r.nonfinite = !std::isfinite(r.loss) || !std::isfinite(r.grad_norm);
        if (r.nonfinite && config_.skip_nonfinite && !(scaler_ && scaler_->config().enabled)) {
            r.skipped = true;  // nothing applied: the weights, moments and step count stay as they were
            return r;
        }
        // The norm is summed from the scaled gradients, so it can overflow while every element is
        // finite (‖S·g‖ > float's range). Under a scaler that is an overflow like any other: skip
        // and back off. Clipping by an infinite norm would zero every gradient and take the step.
        if (scaler_ && scaler_->config().enabled && !std::isfinite(r.grad_norm)) {
            scaler_->skip();
            r.skipped = true;
            return r;
        }
        if (config_.max_grad_norm > 0 && std::isfinite(r.grad_norm)) {
            const double coef = clip_coefficient(r.grad_norm, config_.max_grad_norm);
            if (coef < 1.0) {
                scale_gradients(be, model, coef);  // scaled gradients: S·g·c, unscaled by AdamW
                r.clipped = true;
            }
        }
        if (scaler_) {
            r.skipped = !scaler_->step(be, opt_, model, lr);
        } else {
            opt_.step(be, model, lr);  // as torch without a scaler: a non-finite gradient is applied
        }
        if constexpr (requires { task.after_update(be); })
            if (!r.skipped) task.after_update(be);
        return r;
    }

private:
    AdamW<B>& opt_;
    LossScaler<B>* scaler_;
    TrainStepConfig config_;
};

}  // namespace mmalign
