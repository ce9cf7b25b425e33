// BLIP-2's second stage (models/blip2_generative_task.hpp) against PyTorch (tests/fixtures/blip2_stage2,
// tools/make_blip2_stage2_fixtures.py: transformers' Blip2ForConditionalGeneration.forward(labels=…)
// with the vision tower and OPT frozen, LAVIS's caption targets): the loss and the gradients of the
// query tokens, the Q-Former and the projection, and of the vision tower when it trains; finite
// differences in double; LAVIS's labels; training steps that leave the frozen parts untouched; no
// vision activation kept when the tower is frozen.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/models/blip2_generative_task.hpp"
#include "mmalign/testing/gradcheck.hpp"
#include "mmalign/train/gradients.hpp"
#include "mmalign/train/train_step.hpp"
#include "support/qformer_fixtures.hpp"

using namespace mmalign;

namespace {

const std::string fixture_dir = std::string(MMALIGN_FIXTURE_DIR) + "/blip2_stage2";
constexpr index_t prompt_length = 7;  // "a photo of" with its </s> (tools/make_blip2_stage2_fixtures.py)

using test::qformer::read;

std::vector<std::int32_t> ints(const io::SafetensorsFile& f, const std::string& name) {
    const auto t = read<std::int32_t>(f, name);
    return {t.begin(), t.end()};
}

/// The fixture's batch in scalar type T: captions as the OPT tokenizer gives them, LAVIS's targets,
/// and the same batch in transformers' form (Q image tokens in front, labels −100 there).
template <class T>
struct Inputs {
    Tensor<T> pixels;                           // [N, 3, 32, 32]
    std::vector<std::int32_t> ids, mask, labels;  // [N·T]
    std::vector<std::int32_t> hf_ids, hf_mask, hf_labels;  // [N·(Q+T)]
    index_t batch = 0;

    Inputs() {
        const auto f = io::SafetensorsFile::open(fixture_dir + "/expected.safetensors");
        pixels = read<T>(f, "pixel_values");
        batch = pixels.dim(0);
        ids = ints(f, "ids"), mask = ints(f, "attention_mask"), labels = ints(f, "labels");
        hf_ids = ints(f, "hf_input_ids"), hf_labels = ints(f, "hf_labels");
        const index_t Q = index_t(hf_ids.size() - ids.size()) / batch, Tn = index_t(ids.size()) / batch;
        for (index_t b = 0; b < batch; ++b) {  // transformers' mask: [1]×Q + the caption's
            hf_mask.insert(hf_mask.end(), std::size_t(Q), 1);
            hf_mask.insert(hf_mask.end(), mask.begin() + b * Tn, mask.begin() + (b + 1) * Tn);
        }
    }
    template <class B>
    typename Blip2GenerativeTask<B>::Batch task_batch() const {
        return {.pixels = pixels.view(), .text = {.ids = ids, .attention_mask = mask, .batch = batch}, .labels = labels};
    }
    template <class B>
    typename Blip2GenerativeTask<B>::Batch hf_batch() const {
        return {.pixels = pixels.view(), .text = {.ids = hf_ids, .attention_mask = hf_mask, .batch = batch}, .labels = hf_labels};
    }
};

bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }
bool is_vision(const std::string& name) { return starts_with(name, "vision_model."); }
bool is_lm(const std::string& name) { return starts_with(name, "language_model."); }

template <class M>
void freeze_stage2(M& model, bool vision = true) {
    if (vision) REQUIRE(freeze(model, "vision_model.*") > 0);
    REQUIRE(freeze(model, "language_model.*") > 0);
}

/// The fixture's model on the float CPU backend, the language model frozen (and the vision tower
/// unless `freeze_vision` is false), with the fixture's batch.
struct Stage2 {
    using Be = CpuBackend<float>;
    Be be;
    Blip2Model<Be> model;
    const Inputs<float> in;

    explicit Stage2(bool freeze_vision = true) : model(Blip2Model<Be>::from_pretrained(be, fixture_dir)) {
        freeze_stage2(model, freeze_vision);
    }
};
/// The same with the vision tower trainable.
struct Stage2VisionTrainable : Stage2 {
    Stage2VisionTrainable() : Stage2(false) {}
};

/// max |got − want| / max(max |want|, floor) over one tensor.
double rel_error(ConstView<float> got, ConstView<float> want, double floor = 1e-3) {
    REQUIRE(got.numel() == want.numel());
    double diff = 0, scale = floor;
    for (index_t i = 0; i < want.numel(); ++i) {
        diff = std::max(diff, std::abs(double(got.data()[i]) - double(want.data()[i])));
        scale = std::max(scale, std::abs(double(want.data()[i])));
    }
    return diff / scale;
}

/// The fixture's gradient of the parameter `name` under `key`'s prefix. transformers' vision
/// attention holds q, k and v as one `qkv` Linear ([3D, D] and [3D]); mmalign's are its row blocks.
Tensor<float> expected_grad(const io::SafetensorsFile& f, const std::string& prefix, const std::string& name,
                            const Shape& shape) {
    for (const char* part : {".q.", ".k.", ".v."}) {
        const auto at = name.find(std::string("self_attn") + part);
        if (at == std::string::npos || !is_vision(name)) continue;
        std::string fused = name;
        fused.replace(at + 9, 3, ".qkv.");
        const Tensor<float> all = read<float>(f, prefix + fused);  // [3D, …]
        const index_t block = all.numel() / 3, offset = (part[1] == 'q' ? 0 : part[1] == 'k' ? 1 : 2) * block;
        Tensor<float> out(shape);
        REQUIRE(out.numel() == block);
        std::copy(all.data() + offset, all.data() + offset + block, out.data());
        return out;
    }
    return read<float>(f, prefix + name);
}

/// Compares every parameter's gradient with the fixture's `prefix`<name>; frozen ones must have none.
/// Returns the worst relative error; `compared` counts the tensors.
template <class M>
double compare_gradients(M& model, const io::SafetensorsFile& f, const std::string& prefix, bool vision_trains, int& compared) {
    double worst = 0;
    std::string worst_name;
    model.visit([&](const std::string& name, Parameter<float>& p) {
        CAPTURE(name);
        if (is_lm(name) || (is_vision(name) && !vision_trains)) {
            CHECK(!p.has_grad());  // frozen: no gradient allocated, nothing accumulated
            return;
        }
        REQUIRE(p.has_grad());
        const Tensor<float> want = expected_grad(f, is_vision(name) ? "vision_grad." : prefix, name, p.shape());
        const double e = rel_error(p.grad.view(), want.view());
        CHECK(e <= 1e-4);
        if (e > worst) worst = e, worst_name = name;
        ++compared;
    });
    MESSAGE("worst gradient: ", worst_name, " ", worst);
    return worst;
}

}  // namespace

TEST_CASE_FIXTURE(Stage2, "the stage-2 loss and the Q-Former, query and projection gradients equal transformers' Blip2ForConditionalGeneration(labels)") {
    const auto f = io::SafetensorsFile::open(fixture_dir + "/expected.safetensors");
    const double want = read<float>(f, "loss").data()[0];

    Blip2GenerativeTask<Be> task(model);
    zero_grad(model);
    const auto r = task.loss_and_backward(be, in.task_batch<Be>(), 1.0f);
    const double loss_error = std::abs(r.loss - want) / std::abs(want);
    CHECK(loss_error <= 1e-5);
    CHECK(r.tokens == 42);  // expected.json counted_tokens: 12 + 7 + 23 caption tokens after the 7 prompt ones, "\n" included
    CHECK(r.accuracy >= 0.0);
    CHECK(r.accuracy <= 1.0);
    // The soft rows (and the prompt) are ignored: the labels the LM was scored against are transformers'.
    CHECK(std::vector<std::int32_t>(task.labels().begin(), task.labels().end()) == in.hf_labels);
    int compared = 0;
    const double worst = compare_gradients(model, f, "grad.", false, compared);
    CHECK(compared == 57);  // query_tokens + 54 qformer.* + language_projection.{weight, bias}
    MESSAGE("loss ", r.loss, " (PyTorch ", want, ", relative error ", loss_error, "); ", compared,
            " gradients, worst relative error ", worst);

    // Without a prompt </s> is a target too, predicted from the last soft row (LAVIS's pretraining).
    const auto no_prompt = blip2_caption_labels({.ids = in.ids, .attention_mask = in.mask, .batch = in.batch});
    auto unprompted = in.task_batch<Be>();
    unprompted.labels = no_prompt;
    Blip2GenerativeTask<Be> bare(model);
    const auto u = bare.loss_and_backward(be, unprompted, 1.0f);
    const double want_bare = read<float>(f, "loss_no_prompt").data()[0];
    CHECK(std::abs(u.loss - want_bare) / std::abs(want_bare) <= 1e-5);
    CHECK(u.tokens == r.tokens + 3 * (prompt_length - 1) + 3);  // the prompt's tokens after </s>, and </s> itself

    // Transformers' own form: Q image tokens at the front of input_ids, labels −100 there.
    Blip2GenerativeTask<Be> hf_form(model);
    zero_grad(model);
    const auto h = hf_form.loss_and_backward(be, in.hf_batch<Be>(), 1.0f);
    CHECK(std::abs(h.loss - want) / std::abs(want) <= 1e-5);
    CHECK(h.tokens == r.tokens);
    int again = 0;
    compare_gradients(model, f, "grad.", false, again);
    CHECK(again == 57);
}

TEST_CASE_FIXTURE(Stage2VisionTrainable, "with train_vision the gradient reaches every vision parameter as transformers computes it") {
    const auto f = io::SafetensorsFile::open(fixture_dir + "/expected.safetensors");
    const double want = read<float>(f, "vision_loss").data()[0];
    Blip2GenerativeTask<Be> task(model, {.train_vision = true});
    zero_grad(model);
    const auto r = task.loss_and_backward(be, in.task_batch<Be>(), 1.0f);
    CHECK(std::abs(r.loss - want) / std::abs(want) <= 1e-5);
    CHECK(task.vision_saved().batch == in.batch);  // a trained tower keeps its activations
    int compared = 0;
    const double worst = compare_gradients(model, f, "grad.", true, compared);
    CHECK(compared == 57 + 38);  // HF's 30 vision tensors, each layer's qkv weight and bias as q, k, v
    MESSAGE(compared, " gradients with the vision tower trainable, worst relative error ", worst);
}

TEST_CASE("the stage-2 gradients match finite differences in double, through the frozen OPT and into a trainable ViT") {
    using Be = CpuBackend<double>;
    Be be;
    const Inputs<double> in;
    for (const bool train_vision : {false, true}) {
        CAPTURE(train_vision);
        auto model = Blip2Model<Be>::from_pretrained(be, fixture_dir);
        freeze_stage2(model, !train_vision);
        Blip2GenerativeTask<Be> task(model, {.train_vision = train_vision});
        const auto batch = in.task_batch<Be>();
        zero_grad(model);
        task.loss_and_backward(be, batch, 1.0);
        const std::vector<std::int32_t> labels(task.labels().begin(), task.labels().end());  // [N·(Q+T)]
        // The loss by another path: the model's inference forward (logits) and the objective alone.
        const LanguageModeling<Be> ce;
        auto loss = [&] {
            const auto logits = model.logits(be, in.pixels.view(), batch.text);  // [N, Q+T, V]
            typename LanguageModeling<Be>::Saved s;
            return double(ce.forward(be, logits.view(), labels, s).loss);
        };
        std::vector<std::string> names = {"query_tokens",
                                          "qformer.encoder.layer.0.crossattention.attention.key.weight",
                                          "qformer.encoder.layer.1.attention.attention.value.weight",
                                          "qformer.encoder.layer.1.intermediate_query.dense.weight",
                                          "qformer.layernorm.weight",
                                          "language_projection.weight",
                                          "language_projection.bias"};
        if (train_vision)
            names.insert(names.end(), {"vision_model.embeddings.patch_embedding.weight",
                                       "vision_model.encoder.layers.0.self_attn.q.weight",
                                       "vision_model.encoder.layers.1.self_attn.v.bias",
                                       "vision_model.encoder.layers.1.mlp.fc1.weight",
                                       "vision_model.post_layernorm.weight"});
        int found = 0;
        double worst = 0;
        model.visit([&](const std::string& name, Parameter<double>& p) {
            if (is_lm(name) || (is_vision(name) && !train_vision)) CHECK_MESSAGE(!p.has_grad(), name);
            if (std::find(names.begin(), names.end(), name) == names.end()) return;
            ++found;
            REQUIRE_MESSAGE(p.has_grad(), name);
            const Tensor<double> g = p.grad;
            const auto rep = testing::check_gradient(name, p.value.view(), g.view(), loss, 12);
            CHECK_MESSAGE(rep.max_rel_error < 1e-6, rep.str());
            worst = std::max(worst, rep.max_rel_error);
        });
        CHECK(found == static_cast<int>(names.size()));
        MESSAGE("finite differences (train_vision ", train_vision, "): worst relative error ", worst, " over ", found, " tensors");
    }
}

TEST_CASE("blip2_caption_labels: pads and the first prompt_length tokens of each row become -100, as LAVIS's blip2_opt.py") {
    const std::vector<std::int32_t> ids = {2, 10, 11, 12, 1, 1,  //
                                           2, 10, 13, 14, 15, 16,  //
                                           2, 17, 1, 1, 1, 1};
    const std::vector<std::int32_t> mask = {1, 1, 1, 1, 0, 0,  //
                                            1, 1, 1, 1, 1, 1,  //
                                            1, 1, 0, 0, 0, 0};
    const Blip2Tokens text{.ids = ids, .attention_mask = mask, .batch = 3};
    const std::vector<std::int32_t> none = {2, 10, 11, 12, -100, -100, 2, 10, 13, 14, 15, 16, 2, 17, -100, -100, -100, -100};
    CHECK(blip2_caption_labels(text) == none);
    const std::vector<std::int32_t> prompt2 = {-100, -100, 11, 12, -100, -100, -100, -100, 13, 14, 15, 16,
                                               -100, -100, -100, -100, -100, -100};
    CHECK(blip2_caption_labels(text, 2) == prompt2);
    // Without a mask every token counts.
    const Blip2Tokens unmasked{.ids = ids, .attention_mask = {}, .batch = 3};
    const auto all = blip2_caption_labels(unmasked, 1);
    CHECK(std::count(all.begin(), all.end(), -100) == 3);
    CHECK(all[1] == 10);
    CHECK_THROWS_AS(blip2_caption_labels(text, -1), ArgumentError);
    CHECK_THROWS_AS(blip2_caption_labels({.ids = ids, .attention_mask = {}, .batch = 4}), ShapeError);
    // The fixture's targets, built in Python as LAVIS builds them.
    const Inputs<float> in;
    CHECK(blip2_caption_labels({.ids = in.ids, .attention_mask = in.mask, .batch = in.batch}, prompt_length) == in.labels);
}

TEST_CASE_FIXTURE(Stage2, "AdamW steps on a repeated batch lower the stage-2 loss and leave vision_model and language_model bit-identical") {
    std::map<std::string, Tensor<float>> frozen, trained;
    model.visit([&](const std::string& name, Parameter<float>& p) {
        (is_vision(name) || is_lm(name) ? frozen : trained).emplace(name, p.value);
    });
    const auto batch = in.task_batch<Be>();
    Blip2GenerativeTask<Be> task(model);
    AdamW<Be> opt({.lr = 1e-3, .weight_decay = 0.05});
    TrainStep<Be> step(opt, {.max_grad_norm = 1.0});
    std::vector<double> losses;
    for (int i = 0; i < 6; ++i) losses.push_back(step(be, task, batch, 2e-3).loss);
    MESSAGE("stage-2 losses over 6 steps: ", losses.front(), " -> ", losses.back());
    for (std::size_t i = 1; i < losses.size(); ++i) CHECK(losses[i] < losses[i - 1]);
    std::size_t same = 0, changed = 0;
    model.visit([&](const std::string& name, Parameter<float>& p) {
        CAPTURE(name);
        if (const auto it = frozen.find(name); it != frozen.end()) {
            CHECK(std::memcmp(it->second.data(), p.value.data(), sizeof(float) * std::size_t(p.value.numel())) == 0);
            CHECK(!p.has_grad());
            ++same;
        } else {
            changed += std::memcmp(trained.at(name).data(), p.value.data(), sizeof(float) * std::size_t(p.value.numel())) != 0;
        }
    });
    CHECK(same == frozen.size());
    CHECK(changed == trained.size());  // every trainable tensor moved
}

TEST_CASE_FIXTURE(Stage2VisionTrainable, "a frozen vision tower keeps no activation from the stage-2 forward, a trained one does and lets them go once frozen") {
    // The vision parameters are trainable, but the task does not train the tower unless asked.
    auto empty = [](const typename VisionTransformer<Be>::Saved& s) {
        return s.batch == 0 && s.patches.numel() == 0 && s.encoder.layers.empty() && s.post_ln_tokens.mean.numel() == 0;
    };
    Blip2GenerativeTask<Be> frozen(model);
    zero_grad(model);
    frozen.loss_and_backward(be, in.task_batch<Be>(), 1.0f);
    CHECK(empty(frozen.vision_saved()));
    model.visit([&](const std::string& name, Parameter<float>& p) {
        if (is_vision(name)) CHECK_MESSAGE(!p.has_grad(), name);  // train_vision false: the tower gets nothing
    });

    Blip2GenerativeTask<Be> trained(model, {.train_vision = true});
    trained.loss_and_backward(be, in.task_batch<Be>(), 1.0f);
    CHECK(!empty(trained.vision_saved()));
    freeze(model, "vision_model.*");  // train_vision with every vision parameter frozen: nothing to train
    trained.loss_and_backward(be, in.task_batch<Be>(), 1.0f);
    CHECK(empty(trained.vision_saved()));
}

TEST_CASE_FIXTURE(Stage2, "stage-2 batches with mismatched labels are refused") {
    Blip2GenerativeTask<Be> task(model);
    auto batch = in.task_batch<Be>();
    const std::vector<std::int32_t> short_labels(in.labels.begin(), in.labels.end() - 1);
    batch.labels = short_labels;
    CHECK_THROWS_AS(task.loss_and_backward(be, batch, 1.0f), ShapeError);
}
