// bench_blip2_train — one BLIP-2 training step of stage 1 (the Q-Former's ITC + ITM + ITG over a
// frozen vision tower) and of stage 2 (the generative loss through a frozen OPT), timed on
// mmalign's CPU backend, for comparison with PyTorch (benchmarks/torch/blip2_train.py) on the same
// weights, the same batches and the same thread count. benchmarks/run_blip2_train.sh runs both and
// prints the table.
//
//   bench_blip2_train --dir DIR --stage 1|2 [--threads T]
//
// DIR is what `blip2_train.py make` writes: stage1/ (a Blip2ForImageTextRetrieval folder whose
// model.safetensors also holds LAVIS's ITG head cls.predictions.* and temp), stage2/ (a
// Blip2ForConditionalGeneration folder with an OPT language model) and batches.safetensors (N
// batches of B: pixel_values [N·B, 3, S, S]; s1_ids, s1_mask [N, B, T] and the ITM negatives
// s1_neg_image_for_text, s1_neg_text_for_image [N, B]; s2_ids, s2_mask [N, B, T'] captions).
// Each step is the library's TrainStep (train/train_step.hpp): zero the gradients, the task's
// forward and backward, AdamW (lr 1e-4, betas 0.9/0.999, eps 1e-8, weight decay 0.05 with the
// default rule of train/adamw.hpp), no gradient clipping; the frozen parts by name (freeze,
// train/gradients.hpp):
//   stage 1  Blip2Stage1Task (models/blip2_stage1_task.hpp) over Blip2QFormerPretraining, with
//            vision_model.* frozen, [DEC] 30522 and [PAD] 0, the given ITM negatives
//   stage 2  Blip2GenerativeTask (models/blip2_generative_task.hpp) over Blip2Model, with
//            vision_model.* and language_model.* frozen; labels from blip2_caption_labels (no
//            prompt), the soft prompt's rows prepended by the model as transformers' processor does
// Step 1 is the warm-up; steps 2…N are timed. Prints one JSON line: steps_per_s over the timed
// steps, step_times_s, the loss of every step (stage 1 also ITC, ITM and ITG), peak_rss_mb (VmHWM:
// loading included) and the trainable and weight-decayed parameter counts (the PyTorch side prints
// the same counts: a check that both train the same parameters).
#include <mmalign/backend/cpu/backend.hpp>
#include <mmalign/io/safetensors.hpp>
#include <mmalign/models/blip2_generative_task.hpp>
#include <mmalign/models/blip2_model.hpp>
#include <mmalign/models/blip2_qformer_pretraining.hpp>
#include <mmalign/models/blip2_stage1_task.hpp>
#include <mmalign/train/adamw.hpp>
#include <mmalign/train/gradients.hpp>
#include <mmalign/train/train_step.hpp>

#include <chrono>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../common/timed_calls.hpp"

using namespace mmalign;
using namespace mmalign::bench;
using Be = CpuBackend<float>;

namespace {

constexpr std::int32_t kDec = 30522;   // LAVIS's [DEC], appended to bert-base-uncased's 30522 words
constexpr std::int32_t kBertPad = 0;   // [PAD]

/// The batches of batches.safetensors, and one step's slice of them.
struct Batches {
    Tensor<float> pixels;                                // [N·B, C, S, S]
    Tensor<std::int32_t> s1_ids, s1_mask, s2_ids, s2_mask;  // [N, B, T]
    Tensor<index_t> neg_image_for_text, neg_text_for_image;  // [N, B]
    index_t steps = 0, batch = 0;

    explicit Batches(const std::string& path) {
        const auto f = io::SafetensorsFile::open(path);
        pixels = f.read<float>("pixel_values");
        s1_ids = f.read<std::int32_t>("s1_ids");
        s1_mask = f.read<std::int32_t>("s1_mask");
        s2_ids = f.read<std::int32_t>("s2_ids");
        s2_mask = f.read<std::int32_t>("s2_mask");
        neg_image_for_text = f.read<index_t>("s1_neg_image_for_text");
        neg_text_for_image = f.read<index_t>("s1_neg_text_for_image");
        steps = s1_ids.dim(0), batch = s1_ids.dim(1);
        if (pixels.dim(0) != steps * batch) throw ShapeError(path + ": pixel_values does not hold N·B images");
    }
    ConstView<float> images(index_t s) const {  // [B, C, S, S]
        const index_t per = pixels.dim(1) * pixels.dim(2) * pixels.dim(3);
        return ConstView<float>(pixels.data() + s * batch * per, Shape{batch, pixels.dim(1), pixels.dim(2), pixels.dim(3)});
    }
    /// Step s's slice of a tensor whose first dimension is the step.
    template <class E>
    static std::span<const E> row(const Tensor<E>& t, index_t s) {
        const auto per = static_cast<std::size_t>(t.numel() / t.dim(0));
        return {t.data() + static_cast<std::size_t>(s) * per, per};
    }
};

AdamW<Be>::Config adamw_config() {  // LAVIS's stage-1 settings (lr 1e-4, weight decay 0.05)
    AdamW<Be>::Config c;
    c.lr = 1e-4, c.beta1 = 0.9, c.beta2 = 0.999, c.eps = 1e-8, c.weight_decay = 0.05;
    return c;
}

/// Trains every batch in order (`step_on(s)` runs step s and returns its loss and its terms as
/// JSON, or null); the JSON line's timings, losses and parameter counts.
template <class M, class StepOn>
nlohmann::json train(M& model, index_t steps, StepOn&& step_on) {
    std::vector<double> losses, times;
    nlohmann::json terms = nlohmann::json::array();
    for (index_t s = 0; s < steps; ++s) {
        const auto t0 = std::chrono::steady_clock::now();
        const auto [loss, part] = step_on(s);
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        losses.push_back(loss);
        if (!part.is_null()) terms.push_back(part);
    }
    std::size_t trainable = 0, decayed = 0;
    model.visit([&](const std::string& name, auto& p) {
        if (!p.requires_grad) return;
        trainable += static_cast<std::size_t>(p.value.numel());
        if (default_weight_decay_filter(name, p.shape())) decayed += static_cast<std::size_t>(p.value.numel());
    });
    const std::vector<double> timed(times.size() > 1 ? times.begin() + 1 : times.begin(), times.end());
    return {{"impl", "mmalign"}, {"steps", steps}, {"steps_per_s", double(timed.size()) / std::accumulate(timed.begin(), timed.end(), 0.0)},
            {"step_times_s", times}, {"losses", losses}, {"terms", terms}, {"peak_rss_mb", proc_status_mb("VmHWM")},
            {"trainable", trainable}, {"decayed", decayed}};
}

nlohmann::json stage1(Be& be, const std::string& dir, const Batches& data) {
    auto model = Blip2QFormerPretraining<Be>::from_pretrained(be, dir + "/stage1", 0);
    if (!model.initialised.empty())  // the comparison needs PyTorch's weights, every one of them
        throw IoError(dir + "/stage1: parameters missing from the file: " + model.initialised.front() + " and " +
                      std::to_string(model.initialised.size() - 1) + " more");
    freeze(model, "vision_model.*");
    Blip2Stage1Task<Be> task(model, {.dec_token_id = kDec, .pad_token_id = kBertPad});
    AdamW<Be> opt(adamw_config());
    TrainStep<Be> step(opt);
    return train(model, data.steps, [&](index_t s) {
        const Blip2Stage1Task<Be>::Batch batch{.pixels = data.images(s),
                                               .ids = Batches::row(data.s1_ids, s),
                                               .attention_mask = Batches::row(data.s1_mask, s),
                                               .negative_image_for_text = Batches::row(data.neg_image_for_text, s),
                                               .negative_text_for_image = Batches::row(data.neg_text_for_image, s)};
        const auto r = step(be, task, batch, opt.config.lr).result;
        return std::pair{r.loss, nlohmann::json{{"itc", r.itc}, {"itm", r.itm}, {"itg", r.itg}}};
    });
}

nlohmann::json stage2(Be& be, const std::string& dir, const Batches& data) {
    auto model = Blip2Model<Be>::from_pretrained(be, dir + "/stage2");
    freeze(model, "vision_model.*");
    freeze(model, "language_model.*");
    Blip2GenerativeTask<Be> task(model);
    AdamW<Be> opt(adamw_config());
    TrainStep<Be> step(opt);
    return train(model, data.steps, [&](index_t s) {
        const Blip2Tokens text{Batches::row(data.s2_ids, s), Batches::row(data.s2_mask, s), data.batch};
        const std::vector<std::int32_t> labels = blip2_caption_labels(text, 0);
        const Blip2GenerativeTask<Be>::Batch batch{.pixels = data.images(s), .text = text, .labels = labels};
        return std::pair{step(be, task, batch, opt.config.lr).result.loss, nlohmann::json()};
    });
}

int run(int argc, char** argv) {
    const std::string dir = arg(argc, argv, "--dir", "");
    const int stage = std::stoi(arg(argc, argv, "--stage", "1"));
    const int threads = std::stoi(arg(argc, argv, "--threads", "2"));
    if (dir.empty()) throw ArgumentError("--dir DIR is required");
    if (stage != 1 && stage != 2) throw ArgumentError("--stage must be 1 or 2");
    const Batches data(dir + "/batches.safetensors");
    Be be({.threads = threads});
    nlohmann::json out = stage == 1 ? stage1(be, dir, data) : stage2(be, dir, data);
    out["stage"] = stage;
    out["threads"] = threads;
    out["batch"] = data.batch;
    std::printf("%s\n", out.dump().c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) try {
    if (argc < 2) {
        std::fprintf(stderr, "usage: bench_blip2_train --dir DIR --stage 1|2 [--threads T]\n");
        return 2;
    }
    return run(argc, argv);
} catch (const std::exception& e) {
    std::fprintf(stderr, "bench_blip2_train: %s\n", e.what());
    return 1;
}
