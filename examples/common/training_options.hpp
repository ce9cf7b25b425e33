// examples/common/training_options.hpp — the training commands' options, named as transformers'
// and PaddleNLP's TrainingArguments name them (PaddleMIX's BLIP-2 scripts take those), onto
// mmalign::TrainingArguments. Both spellings are taken: --per-device-train-batch-size and
// --per_device_train_batch_size, so a PaddleMIX command line carries over as it is.
#pragma once

#include <algorithm>
#include <string>

#include <mmalign/train/training_arguments.hpp>

#include "cli_options.hpp"

namespace mmalign::cli {

/// "--per_device_train_batch_size" → "--per-device-train-batch-size" (only after the leading dashes).
inline std::string dashed(std::string flag) {
    if (flag.rfind("--", 0) == 0) std::replace(flag.begin() + 2, flag.end(), '_', '-');
    return flag;
}

inline constexpr const char* training_options_help =
    "training options (transformers'/PaddleNLP's TrainingArguments names; '_' spellings accepted):\n"
    "  --output-dir DIR                    required; one run at a time (OUT/.lock)\n"
    "  --per-device-train-batch-size N     default 8\n"
    "  --gradient-accumulation-steps N     default 1\n"
    "  --learning-rate X                   default 1e-4 (LAVIS's init_lr)\n"
    "  --warmup-steps N                    linear warm-up steps in epoch 0, default 0\n"
    "  --warmup-start-lr X                 default: the learning rate (LAVIS's warmup_lr)\n"
    "  --eta-min X                         the cosine's floor (LAVIS's min_lr), default 0\n"
    "  --weight-decay X                    AdamW decoupled decay on weights of rank >= 2, default 0.05\n"
    "  --max-grad-norm X                   clip the global gradient norm (0: off), default 0\n"
    "  --num-train-epochs N                default 1\n"
    "  --max-steps N                       stop after N optimizer steps (default: the epochs' steps)\n"
    "  --logging-steps N                   a metrics.jsonl record every N steps, default 10\n"
    "  --save-strategy no|epoch|steps      checkpoint-<step>/ folders, default epoch\n"
    "  --save-steps N                      with --save-strategy steps\n"
    "  --resume                            continue from the latest OUT/checkpoint-<step> (its step must not\n"
    "                                      be past --max-steps / the epochs' steps)\n"
    "  --skip-nonfinite-steps              skip (no update) a step whose loss or gradient is NaN/inf and count\n"
    "                                      it in metrics.jsonl's \"skipped_steps\"; default: stop naming the step\n"
    "  --allow-nonfinite-checkpoint        resume from a checkpoint holding NaN/inf (refused by default)\n"
    "  --seed S                            data order, augmentation, initialisation, negatives; default 42\n";

/// Takes `flag` (dashed) when it is a training option; false otherwise.
template <class Value>
bool take_training_option(TrainingArguments& t, const std::string& flag, Value&& value) {
    // The ranges: counts of steps up to 2^40 (beyond any run), batch sizes and accumulation up to
    // 2^20, rates and norms finite (NaN and infinities are refused by real()).
    const auto positive = [](double x) { return x > 0; };
    const auto non_negative = [](double x) { return x >= 0; };
    constexpr long long big = 1LL << 40;
    if (flag == "--output-dir") t.output_dir = value();
    else if (flag == "--per-device-train-batch-size") t.per_device_train_batch_size = long(integer(flag, value(), 1, 1 << 20));
    else if (flag == "--gradient-accumulation-steps") t.gradient_accumulation_steps = long(integer(flag, value(), 1, 1 << 20));
    else if (flag == "--learning-rate") t.learning_rate = real(flag, value(), positive, "a positive number");
    else if (flag == "--warmup-steps") t.warmup_steps = long(integer(flag, value(), 0, big));
    else if (flag == "--warmup-start-lr") t.warmup_start_lr = real(flag, value(), non_negative, "a number >= 0");
    else if (flag == "--eta-min") t.eta_min = real(flag, value(), non_negative, "a number >= 0");
    else if (flag == "--weight-decay") t.weight_decay = real(flag, value(), non_negative, "a number >= 0");
    else if (flag == "--max-grad-norm") t.max_grad_norm = real(flag, value(), non_negative, "a number >= 0");
    else if (flag == "--num-train-epochs") t.num_train_epochs = long(integer(flag, value(), 1, 1 << 20));
    else if (flag == "--max-steps") t.max_steps = long(integer(flag, value(), 1, big));
    else if (flag == "--logging-steps") t.logging_steps = long(integer(flag, value(), 1, big));
    else if (flag == "--save-steps") t.save_steps = long(integer(flag, value(), 1, big));
    else if (flag == "--resume") t.resume = true;
    else if (flag == "--skip-nonfinite-steps") t.skip_nonfinite_steps = true;
    else if (flag == "--allow-nonfinite-checkpoint") t.allow_nonfinite_checkpoint = true;
    else if (flag == "--seed") t.seed = std::uint64_t(integer(flag, value(), 0, 1LL << 62));
    else if (flag == "--save-strategy") {
        const std::string v = value();
        if (v == "no") t.save_strategy = SaveStrategy::no;
        else if (v == "epoch") t.save_strategy = SaveStrategy::epoch;
        else if (v == "steps") t.save_strategy = SaveStrategy::steps;
        else throw OptionError("--save-strategy: expected no, epoch or steps, found " + quoted(v));
    } else return false;
    return true;
}

}  // namespace mmalign::cli
