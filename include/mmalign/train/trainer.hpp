// mmalign/train/trainer.hpp — the loop every training command runs: epochs of optimizer steps over
// a data source, each step a TrainStep (train/train_step.hpp: gradient accumulation, clipping,
// AdamW) at the rate of LAVIS's linear_warmup_cosine_lr, with metrics, a progress line and
// checkpoints, in an output directory that one run owns at a time (train/run_directory.hpp).
//
//   OUT/metrics.jsonl              one record per --logging-steps (step, epoch, loss, lr, grad_norm,
//                                  and the task's own figures)
//   OUT/checkpoint-<step>/         per --save-strategy: the model as the caller saves it (e.g. a
//                                  Hugging Face folder) + training_state.safetensors (weights, AdamW
//                                  moments, step: train/checkpoint.hpp)
//   OUT/                           the final model, saved by the caller's function at the end
// Resuming (TrainingArguments::resume) loads the latest complete checkpoint and continues; the
// data source is asked for micro-batch i = step·k + j (k = gradient_accumulation_steps), so when
// it is a function of i (train/image_text_loader.hpp) a resumed run repeats the uninterrupted one
// bit for bit. Metrics records past the resumed step (written after the checkpoint by the run that
// stopped) are dropped, so the file never holds a step twice.
// A non-finite loss or gradient norm stops the run with the step and the first parameter whose
// gradient (else value) is not finite named, before that step changes anything; checkpoints
// already written stay as they are. With skip_nonfinite_steps such a step is skipped instead (no
// update) and counted: every record carries "skipped_steps", the count so far, and checkpoints
// keep it. A checkpoint holding a non-finite value is refused on resume unless
// allow_nonfinite_checkpoint (train/nonfinite.hpp); so is one past the step the arguments end at.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "mmalign/io/atomic_file.hpp"
#include "mmalign/train/checkpoint.hpp"
#include "mmalign/train/nonfinite.hpp"
#include "mmalign/train/progress.hpp"
#include "mmalign/train/run_directory.hpp"
#include "mmalign/train/schedule.hpp"
#include "mmalign/train/train_step.hpp"
#include "mmalign/train/training_arguments.hpp"

namespace mmalign {

/// What a finished (or resumed-and-finished) run did.
struct TrainSummary {
    long start_step = 0, steps = 0;   // the step it started from and the last step
    double last_loss = 0;             // the last finite loss
    double seconds = 0;
    std::int64_t skipped_steps = 0;   // steps skipped for a non-finite loss or gradient (whole run)
};

template <Backend B>
class Trainer {
public:
    static constexpr const char* state_file = "training_state.safetensors";

    /// `micro_batches_per_epoch`: how many batches of per_device_train_batch_size one epoch holds.
    Trainer(TrainingArguments args, long micro_batches_per_epoch) : args_(std::move(args)) {
        if (const std::string p = args_.problem(); !p.empty()) throw ArgumentError(p);
        steps_per_epoch_ = micro_batches_per_epoch / args_.gradient_accumulation_steps;
        if (steps_per_epoch_ < 1)
            throw ArgumentError("the data gives " + std::to_string(micro_batches_per_epoch) + " batches of " +
                                std::to_string(args_.per_device_train_batch_size) + " per epoch: fewer than one step of " +
                                std::to_string(args_.gradient_accumulation_steps) + " accumulated batches");
        total_ = steps_per_epoch_ * args_.num_train_epochs;
        if (args_.max_steps > 0) total_ = std::min(total_, args_.max_steps);
        schedule_ = {.base_lr = args_.learning_rate,
                     .warmup_start_lr = args_.warmup_start_lr < 0 ? args_.learning_rate : args_.warmup_start_lr,
                     .eta_min = args_.eta_min,
                     .warmup = args_.warmup_steps,
                     .epochs = args_.num_train_epochs};
    }

    long steps_per_epoch() const { return steps_per_epoch_; }
    long total_steps() const { return total_; }
    double learning_rate(long step) const { return schedule_(step / steps_per_epoch_, step % steps_per_epoch_); }

    /// Runs the training. `data(i)` returns an object whose `.batch` is micro-batch i's
    /// Task::Batch (it owns what the batch views); `save_model(dir)` writes the model into the
    /// directory `dir` (which exists); `describe(result)` returns the task's figures as a JSON
    /// object for the metrics (may return an empty object).
    template <class Task, class Data, class Save, class Describe>
        requires Trainable<Task, B>
    TrainSummary run(B& be, Task& task, Data&& data, Save&& save_model, Describe&& describe, const std::string& label) {
        RunDirectory dir(args_.output_dir);
        dir.remove_stale_temporaries();
        auto& model = task.module();
        AdamW<B> opt({.lr = args_.learning_rate, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = args_.weight_decay});
        TrainStep<B> step(opt, {.max_grad_norm = args_.max_grad_norm, .skip_nonfinite = true});

        TrainSummary summary;
        std::int64_t skipped = 0;
        const std::string metrics_path = dir.path() + "/metrics.jsonl";
        if (args_.resume) {
            const auto latest = dir.latest_checkpoint(state_file);
            if (!latest) throw IoError(dir.path() + ": --resume, but no checkpoint-<step>/" + state_file + " to resume from");
            const std::string path = dir.checkpoint(*latest) + "/" + state_file;
            summary.start_step = long(load_checkpoint(be, path, model, opt,
                                                      {.allow_nonfinite = args_.allow_nonfinite_checkpoint}));
            if (summary.start_step > total_)
                throw ArgumentError(path + ": the checkpoint is at step " + std::to_string(summary.start_step) +
                                    ", past the " + std::to_string(total_) +
                                    " steps these arguments give; resuming would rewind it (give --max-steps >= " +
                                    std::to_string(summary.start_step) + " or more --num-train-epochs)");
            skipped = skipped_steps_of(path);
            const long resumed = summary.start_step;
            drop_metrics_records(metrics_path, [&](const nlohmann::json& rec) { return record_step(rec) > resumed; });
        }
        MetricsLog metrics(metrics_path, /*append=*/args_.resume);
        Progress progress(total_, label);
        const auto started = std::chrono::steady_clock::now();
        const long k = args_.gradient_accumulation_steps;
        for (long s = summary.start_step; s < total_; ++s) {
            const double lr = learning_rate(s);
            if constexpr (requires { task.reseed(std::uint64_t{}); })
                task.reseed(args_.seed * 0x9E3779B97F4A7C15ULL + static_cast<std::uint64_t>(s));  // a function of the step
            std::vector<std::decay_t<decltype(data(0L))>> held;
            held.reserve(static_cast<std::size_t>(k));
            std::vector<typename Task::Batch> batches;
            for (long j = 0; j < k; ++j) {
                held.push_back(data(s * k + j));
                batches.push_back(held.back().batch);
            }
            const auto r = step(be, task, std::span<const typename Task::Batch>(batches), lr);
            if (r.nonfinite && !args_.skip_nonfinite_steps)
                throw Error(nonfinite_step_message(be, model, s + 1, r.loss, r.grad_norm));
            skipped += r.nonfinite ? 1 : 0;
            if (!r.nonfinite) summary.last_loss = r.loss;
            const long done = s + 1;
            if (done % args_.logging_steps == 0 || done == total_) {
                nlohmann::json rec = {{"step", done}, {"epoch", double(done) / double(steps_per_epoch_)},
                                      {"loss", r.loss}, {"lr", lr}, {"grad_norm", r.grad_norm},
                                      {"skipped_steps", skipped}};
                const nlohmann::json extra = describe(r.result);
                for (const auto& [key, value] : extra.items()) rec[key] = value;
                metrics.write(rec);
            }
            char status[96];
            std::snprintf(status, sizeof status, "loss %.4f lr %.3g", r.loss, lr);
            progress.update(done, status);
            const bool save = (args_.save_strategy == SaveStrategy::epoch && done % steps_per_epoch_ == 0) ||
                              (args_.save_strategy == SaveStrategy::steps && done % args_.save_steps == 0);
            if (save || (done == total_ && args_.save_strategy != SaveStrategy::no)) {
                const std::string ck = dir.checkpoint(done);
                std::filesystem::create_directories(ck);
                save_model(ck);
                save_checkpoint(be, ck + "/" + state_file, model, opt, done,
                                {.metadata = {{"epoch", std::to_string(done / steps_per_epoch_)},
                                              {"skipped_steps", std::to_string(skipped)}}});
            }
        }
        summary.skipped_steps = skipped;
        save_model(dir.path());
        summary.steps = total_;
        summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        return summary;
    }

private:
    /// The skipped-step count a checkpoint kept (0 in one written before it was kept).
    static std::int64_t skipped_steps_of(const std::string& path) {
        const auto meta = io::SafetensorsFile::open(path).metadata();
        const auto it = meta.find("skipped_steps");
        if (it == meta.end()) return 0;
        std::int64_t n = -1;
        const auto [end, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), n);
        if (ec != std::errc() || end != it->second.data() + it->second.size() || n < 0)
            throw IoError("checkpoint '" + path + "': metadata \"skipped_steps\" is \"" + io::detail::printable(it->second) +
                          "\", expected a count >= 0");
        return n;
    }

    TrainingArguments args_;
    long steps_per_epoch_ = 1, total_ = 1;
    LinearWarmupCosineByEpoch schedule_;
};

}  // namespace mmalign
