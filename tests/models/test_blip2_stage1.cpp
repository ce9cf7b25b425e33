// BLIP-2's first stage (models/blip2_qformer_pretraining.hpp, models/blip2_stage1_task.hpp) against
// PyTorch (tests/fixtures/blip2_stage1, tools/make_blip2_stage1_fixtures.py: transformers'
// Blip2ForImageTextRetrieval + BertLMPredictionHead, the losses as LAVIS's Blip2Qformer.forward with
// fixed negatives, ITG in LAVIS's two-pass cached form): losses and every trainable gradient; finite
// differences in double through all three objectives and into a trainable vision tower; the hard
// negatives; loading a folder without the stage-1 extras; training steps with the tower frozen.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/models/blip2_stage1_task.hpp"
#include "mmalign/testing/gradcheck.hpp"
#include "mmalign/train/gradients.hpp"
#include "mmalign/train/train_step.hpp"
#include "support/qformer_fixtures.hpp"
#include "support/temp_dir.hpp"

using namespace mmalign;

namespace {

const std::string fixture_dir = std::string(MMALIGN_FIXTURE_DIR) + "/blip2_stage1";
constexpr std::int32_t dec_token = 59, pad_token = 0;  // tools/make_blip2_stage1_fixtures.py

using test::qformer::read;

/// The fixture's batch in scalar type T.
template <class T>
struct Inputs {
    Tensor<T> pixels;                          // [N, 3, 32, 32]
    std::vector<std::int32_t> ids, mask;       // [N·T]
    std::vector<index_t> neg_image, neg_text;  // [N]

    Inputs() {
        const auto f = io::SafetensorsFile::open(fixture_dir + "/expected.safetensors");
        pixels = read<T>(f, "pixel_values");
        const auto i = read<std::int32_t>(f, "ids"), m = read<std::int32_t>(f, "attention_mask");
        ids.assign(i.begin(), i.end());
        mask.assign(m.begin(), m.end());
        for (const auto& [name, out] : {std::pair{"negative_image_for_text", &neg_image}, std::pair{"negative_text_for_image", &neg_text}}) {
            const auto v = read<std::int64_t>(f, name);
            out->assign(v.begin(), v.end());
        }
    }
    template <class Task>
    typename Task::Batch batch(bool fixed_negatives = true) const {
        typename Task::Batch b{.pixels = pixels.view(), .ids = ids, .attention_mask = mask};
        if (fixed_negatives) b.negative_image_for_text = neg_image, b.negative_text_for_image = neg_text;
        return b;
    }
};

template <class B>
typename Blip2Stage1Task<B>::Options options() {
    return {.dec_token_id = dec_token, .pad_token_id = pad_token};
}

/// Every parameter except those whose name starts with `skip` (a folder without them).
template <class M>
struct Without {
    M& m;
    std::vector<std::string> skip;
    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        m.visit([&](const std::string& name, auto& p) {
            for (const auto& s : skip)
                if (name.rfind(s, 0) == 0) return;
            f(name, p);
        }, prefix);
    }
    template <class Map>
    void hf_layout(Map& map, const std::string& prefix = "") { m.hf_layout(map, prefix); }
};

}  // namespace

TEST_CASE("stage-1 losses and every trainable gradient equal PyTorch's (LAVIS's ITC + ITM + two-pass ITG)") {
    using Be = CpuBackend<float>;
    Be be;
    auto model = Blip2QFormerPretraining<Be>::from_pretrained(be, fixture_dir, 0);
    CHECK(model.initialised.empty());
    REQUIRE(freeze(model, "vision_model.*") > 0);
    const Inputs<float> in;
    Blip2Stage1Task<Be> task(model, options<Be>());
    zero_grad(model);
    const auto r = task.loss_and_backward(be, in.batch<Blip2Stage1Task<Be>>(), 1.0f);

    const auto f = io::SafetensorsFile::open(fixture_dir + "/expected.safetensors");
    auto loss = [&](const std::string& name) { return double(read<float>(f, "loss." + name).data()[0]); };
    auto rel = [](double got, double want) { return std::abs(got - want) / std::abs(want); };
    CHECK(rel(r.itc, loss("itc")) <= 1e-5);
    CHECK(rel(r.itm, loss("itm")) <= 1e-5);
    CHECK(rel(r.itg, loss("itg")) <= 1e-5);           // LAVIS's cached two-pass form
    CHECK(rel(r.itg, loss("itg_one_pass")) <= 1e-5);  // the one-pass multimodal-causal form
    CHECK(rel(r.loss, loss("total")) <= 1e-5);
    MESSAGE("relative loss errors: itc ", rel(r.itc, loss("itc")), " itm ", rel(r.itm, loss("itm")), " itg ",
            rel(r.itg, loss("itg")), " total ", rel(r.loss, loss("total")));
    CHECK(r.negative_image_for_text == in.neg_image);
    CHECK(r.negative_text_for_image == in.neg_text);

    double worst = 0, worst_other = 0;  // worst_other: all but the self-attention key biases
    std::string worst_name;
    int compared = 0;
    model.visit([&](const std::string& name, Parameter<float>& p) {
        CAPTURE(name);
        if (name.rfind("vision_model.", 0) == 0) {
            CHECK(!p.has_grad());  // frozen: no gradient allocated
            return;
        }
        REQUIRE(p.has_grad());
        const Tensor<float> want = read<float>(f, "grad." + name);
        REQUIRE(want.numel() == p.grad.numel());
        double diff = 0, scale = 1e-3;  // floor: a self-attention key bias's gradient is 0 up to rounding
        for (index_t i = 0; i < want.numel(); ++i) {
            diff = std::max(diff, std::abs(double(p.grad.data()[i]) - double(want.data()[i])));
            scale = std::max(scale, std::abs(double(want.data()[i])));
        }
        CHECK(diff / scale <= 1e-4);
        if (diff / scale > worst) worst = diff / scale, worst_name = name;
        if (name.find("attention.attention.key.bias") == std::string::npos) worst_other = std::max(worst_other, diff / scale);
        ++compared;
    });
    CHECK(compared > 40);
    MESSAGE("gradients compared: ", compared, ", worst max-abs relative error ", worst, " (", worst_name,
            "); without the self-attention key biases ", worst_other);
}

TEST_CASE("the stage-1 loss's gradients match finite differences in double, the vision tower included") {
    using Be = CpuBackend<double>;
    Be be;
    auto model = Blip2QFormerPretraining<Be>::from_pretrained(be, fixture_dir, 0);  // vision tower trainable
    const Inputs<double> in;
    Blip2Stage1Task<Be> task(model, options<Be>());
    const auto batch = in.batch<Blip2Stage1Task<Be>>();
    zero_grad(model);
    task.loss_and_backward(be, batch, 1.0);
    std::map<std::string, Tensor<double>> analytic;
    model.visit([&](const std::string& name, Parameter<double>& p) {
        if (p.has_grad()) analytic.emplace(name, p.grad);
    });
    auto loss = [&] { return task.loss_and_backward(be, batch, 0.0).loss; };
    const std::vector<std::string> names = {
        "query_tokens",
        "qformer.encoder.layer.0.crossattention.attention.key.weight",
        "qformer.encoder.layer.0.crossattention.attention.query.weight",
        "qformer.encoder.layer.1.attention.attention.value.weight",
        "qformer.encoder.layer.1.intermediate_query.dense.weight",
        "qformer.encoder.layer.1.output.dense.weight",
        "qformer.layernorm.weight",
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "vision_projection.weight",
        "text_projection.bias",
        "itm_head.weight",
        "cls.predictions.transform.dense.weight",
        "cls.predictions.transform.LayerNorm.weight",
        "cls.predictions.bias",
        "temp",
        "vision_model.encoder.layers.1.mlp.fc2.weight",
        "vision_model.post_layernorm.weight",
    };
    int found = 0;
    double worst = 0;
    model.visit([&](const std::string& name, Parameter<double>& p) {
        if (std::find(names.begin(), names.end(), name) == names.end()) return;
        ++found;
        REQUIRE_MESSAGE(analytic.count(name), name);
        const Tensor<double> g = analytic.at(name);
        const auto rep = testing::check_gradient(name, p.value.view(), g.view(), loss, 16);
        CHECK_MESSAGE(rep.max_rel_error < 1e-6, rep.str());
        worst = std::max(worst, rep.max_rel_error);
    });
    CHECK(found == static_cast<int>(names.size()));
    MESSAGE("finite differences: worst relative error ", worst, " over ", found, " tensors");
}

TEST_CASE("hard negatives: drawn ones are never the own pair and reproducible per seed; given ones are used as given") {
    using Be = CpuBackend<float>;
    Be be;
    auto model = Blip2QFormerPretraining<Be>::from_pretrained(be, fixture_dir, 0);
    freeze(model, "vision_model.*");
    const Inputs<float> in;
    const auto drawn = in.batch<Blip2Stage1Task<Be>>(false);
    std::vector<std::vector<index_t>> first;
    for (std::uint64_t seed = 0; seed < 12; ++seed) {
        auto o = options<Be>();
        o.seed = seed;
        Blip2Stage1Task<Be> a(model, o), b(model, o);
        for (int step = 0; step < 3; ++step) {
            const auto ra = a.loss_and_backward(be, drawn, 1.0f), rb = b.loss_and_backward(be, drawn, 1.0f);
            REQUIRE(ra.negative_image_for_text.size() == 4);
            REQUIRE(ra.negative_text_for_image.size() == 4);
            for (index_t i = 0; i < 4; ++i) {
                CHECK(ra.negative_image_for_text[std::size_t(i)] != i);
                CHECK(ra.negative_text_for_image[std::size_t(i)] != i);
            }
            CHECK(ra.negative_image_for_text == rb.negative_image_for_text);  // same seed, same draws
            CHECK(ra.negative_text_for_image == rb.negative_text_for_image);
            if (step == 0) first.push_back(ra.negative_image_for_text);
            // The drawn negatives given back explicitly give the same ITM loss.
            auto given = in.batch<Blip2Stage1Task<Be>>(false);
            given.negative_image_for_text = ra.negative_image_for_text;
            given.negative_text_for_image = ra.negative_text_for_image;
            Blip2Stage1Task<Be> c(model, o);
            CHECK(c.loss_and_backward(be, given, 1.0f).itm == doctest::Approx(ra.itm).epsilon(1e-6));
        }
    }
    CHECK(std::any_of(first.begin(), first.end(), [&](const auto& v) { return v != first[0]; }));  // seeds differ
    // Given negatives, even the own pair (the caller's choice), are taken as they are.
    Blip2Stage1Task<Be> t(model, options<Be>());
    auto given = in.batch<Blip2Stage1Task<Be>>(false);
    const std::vector<index_t> ni = {3, 2, 1, 0}, nt = {1, 0, 3, 2};
    given.negative_image_for_text = ni, given.negative_text_for_image = nt;
    const auto r = t.loss_and_backward(be, given, 1.0f);
    CHECK(r.negative_image_for_text == ni);
    CHECK(r.negative_text_for_image == nt);
    const std::vector<index_t> bad = {0, 1, 4, 2}, short_list = {1, 0};
    given.negative_image_for_text = bad;
    CHECK_THROWS_AS(t.loss_and_backward(be, given, 1.0f), ArgumentError);
    given.negative_image_for_text = short_list;
    CHECK_THROWS_AS(t.loss_and_backward(be, given, 1.0f), ShapeError);
    CHECK_THROWS_AS(Blip2Stage1Task<Be>(model, {}), ArgumentError);  // ITG without a [DEC] id
}

TEST_CASE("from_pretrained initialises the ITG head and temp a transformers retrieval folder lacks, and needs the vision tower") {
    using Be = CpuBackend<float>;
    Be be;
    auto full = Blip2QFormerPretraining<Be>::from_pretrained(be, fixture_dir, 0);
    test::TempDir dir;
    std::filesystem::copy_file(fixture_dir + "/config.json", dir / "config.json");
    Without<Blip2QFormerPretraining<Be>> retrieval{full, {"cls.", "temp"}};
    io::save_mapped(be, retrieval, dir / "model.safetensors", io::hf_tensor_map(full), "", {{"format", "pt"}});
    auto m = Blip2QFormerPretraining<Be>::from_pretrained(be, dir.path.string(), 5);
    const std::vector<std::string> want = {"cls.predictions.bias", "cls.predictions.transform.LayerNorm.bias",
                                           "cls.predictions.transform.LayerNorm.weight",
                                           "cls.predictions.transform.dense.bias",
                                           "cls.predictions.transform.dense.weight", "temp"};
    auto got = m.initialised;
    std::sort(got.begin(), got.end());
    CHECK(got == want);
    CHECK(m.temp.value.data()[0] == doctest::Approx(0.07f));
    CHECK(*std::min_element(m.lm_head.norm->params.weight.value.begin(), m.lm_head.norm->params.weight.value.end()) == 1.0f);
    double sq = 0;
    for (const float v : m.lm_head.dense->params.weight.value) sq += double(v) * v;
    const double std_dev = std::sqrt(sq / double(m.lm_head.dense->params.weight.value.numel()));
    CHECK(std_dev == doctest::Approx(0.02).epsilon(0.15));  // N(0, 0.02²) over 32·32 weights
    // What the folder has is read, not initialised.
    CHECK(std::memcmp(m.qformer.query_tokens.value.data(), full.qformer.query_tokens.value.data(),
                      sizeof(float) * std::size_t(full.qformer.query_tokens.value.numel())) == 0);

    test::TempDir no_vision;
    std::filesystem::copy_file(fixture_dir + "/config.json", no_vision / "config.json");
    Without<Blip2QFormerPretraining<Be>> lacking{full, {"vision_model.post_layernorm."}};
    io::save_mapped(be, lacking, no_vision / "model.safetensors", io::hf_tensor_map(full), "", {{"format", "pt"}});
    try {
        Blip2QFormerPretraining<Be>::from_pretrained(be, no_vision.path.string(), 0);
        FAIL("a folder without the vision tower's weights loaded");
    } catch (const IoError& e) {
        CHECK(std::string(e.what()).find("vision_model.post_layernorm.weight") != std::string::npos);
    }
}

TEST_CASE("AdamW steps on the frozen-vision stage-1 model lower the loss on a repeated batch and leave vision_model bit-identical") {
    using Be = CpuBackend<float>;
    Be be;
    auto model = Blip2QFormerPretraining<Be>::from_pretrained(be, fixture_dir, 0);
    REQUIRE(freeze(model, "vision_model.*") > 0);
    std::map<std::string, Tensor<float>> vision;
    model.visit([&](const std::string& name, Parameter<float>& p) {
        if (name.rfind("vision_model.", 0) == 0) vision.emplace(name, p.value);
    });
    const Inputs<float> in;
    const auto batch = in.batch<Blip2Stage1Task<Be>>();
    Blip2Stage1Task<Be> task(model, options<Be>());
    AdamW<Be> opt({.lr = 1e-3, .weight_decay = 0.05});
    TrainStep<Be> step(opt, {.max_grad_norm = 1.0});
    std::vector<double> losses;
    for (int i = 0; i < 6; ++i) losses.push_back(step(be, task, batch, 1e-3).loss);
    MESSAGE("stage-1 losses over 6 steps: ", losses.front(), " -> ", losses.back());
    CHECK(losses.back() < losses.front() - 0.05);
    for (std::size_t i = 1; i < losses.size(); ++i) CHECK(losses[i] < losses[i - 1]);
    int same = 0;
    model.visit([&](const std::string& name, Parameter<float>& p) {
        if (name.rfind("vision_model.", 0) != 0) return;
        const Tensor<float>& before = vision.at(name);
        CHECK_MESSAGE(std::memcmp(before.data(), p.value.data(), sizeof(float) * std::size_t(p.value.numel())) == 0, name);
        ++same;
    });
    CHECK(same == static_cast<int>(vision.size()));
}
