// mmalign/train/training_arguments.hpp — what a training run is told, under the names of
// transformers' and PaddleNLP's TrainingArguments (which PaddleMIX's BLIP-2 scripts take), so a
// command of theirs maps onto these fields one to one. The learning-rate schedule is LAVIS's
// linear_warmup_cosine_lr (train/schedule.hpp: LinearWarmupCosineByEpoch), AdamW as LAVIS builds
// it for BLIP-2 (betas 0.9/0.999, decay on weights of rank ≥ 2 only).
#pragma once

#include <cstdint>
#include <string>

namespace mmalign {

enum class SaveStrategy { no, epoch, steps };

struct TrainingArguments {
    std::string output_dir;
    long per_device_train_batch_size = 8;
    long gradient_accumulation_steps = 1;
    double learning_rate = 1e-4;
    double warmup_start_lr = -1;   // < 0: learning_rate (LAVIS's warmup_lr default)
    long warmup_steps = 0;
    double eta_min = 0;            // LAVIS's min_lr
    double weight_decay = 0.05;
    double max_grad_norm = 0;      // > 0: clip the global gradient norm
    long num_train_epochs = 1;
    long max_steps = -1;           // > 0: stop after this many optimizer steps (transformers' max_steps)
    long logging_steps = 10;
    SaveStrategy save_strategy = SaveStrategy::epoch;
    long save_steps = 0;           // with SaveStrategy::steps
    bool resume = false;           // continue from the latest checkpoint-<step> in output_dir
    // A step whose loss or gradient is NaN or infinite stops the run naming the step and the
    // parameter; with this it is skipped instead (no update) and counted ("skipped_steps").
    bool skip_nonfinite_steps = false;
    // A checkpoint holding NaN or an infinity is refused on resume unless this is set.
    bool allow_nonfinite_checkpoint = false;
    std::uint64_t seed = 42;

    /// What makes the arguments unusable, naming the option, or empty.
    std::string problem() const {
        if (output_dir.empty()) return "--output-dir is required";
        if (per_device_train_batch_size < 1) return "--per-device-train-batch-size must be at least 1";
        if (gradient_accumulation_steps < 1) return "--gradient-accumulation-steps must be at least 1";
        if (!(learning_rate > 0)) return "--learning-rate must be positive";
        if (warmup_steps < 0) return "--warmup-steps must be >= 0";
        if (!(eta_min >= 0) || eta_min > learning_rate) return "--eta-min must be in [0, --learning-rate]";
        if (!(weight_decay >= 0)) return "--weight-decay must be >= 0";
        if (!(max_grad_norm >= 0)) return "--max-grad-norm must be >= 0";
        if (num_train_epochs < 1) return "--num-train-epochs must be at least 1";
        if (logging_steps < 1) return "--logging-steps must be at least 1";
        if (save_strategy == SaveStrategy::steps && save_steps < 1) return "--save-strategy steps needs --save-steps N >= 1";
        return {};
    }
};

}  // namespace mmalign
