// The BLIP fixtures of tests/models/test_blip.cpp through CudaBackend<float>: each folder loaded with
// from_pretrained(be, …) straight into device storage, the pixels uploaded, every stage downloaded and
// checked against transformers' outputs (tests/fixtures/blip/<case>/expected.*) with the CPU tests'
// tolerance, 1e-5 relative to max(1, max |HF|). The backend runs in its default fp32 mode (no TF32,
// backend/cuda/backend.hpp), as the CLIP parity test does. Generation must give HF's ids exactly.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cuda/cuda_support.hpp"
#include "support/blip_fixtures.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/models/blip_captioning.hpp"
#include "mmalign/models/blip_model.hpp"
#include "mmalign/models/blip_retrieval.hpp"
#include "mmalign/models/blip_vqa.hpp"

using namespace mmalign;
using test::Gpu;
using test::download;
using test::upload;

using namespace mmalign::test::blip;

namespace {


/// The record's images, as pixel_values rows in device memory.
DeviceTensor<float> pixels_of(Gpu& be, const Case& c, const nlohmann::json& images) {
    return upload(be, mmalign::test::blip::pixels_of(c, images));
}

}  // namespace

TEST_CASE("BlipForConditionalGeneration on CUDA reproduces HF's vision states and teacher-forced logits") {
    for (const std::string name : {"caption_a", "caption_b", "caption_remainder"}) {
        CAPTURE(name);
        Case c(name);
        Gpu be;
        REQUIRE_FALSE(be.tf32());
        const auto model = BlipForConditionalGeneration<Gpu>::from_pretrained(be, c.dir);
        const DeviceTensor<float> pixels = upload(be, c.tensor("pixel_values"));  // [B, C, S, S]
        const auto img = model.image_embeds(be, pixels.view());
        CHECK(worst_diff(be, name + " vision.last_hidden_state", img.view(), c.tensor("vision.last_hidden_state").view()) <= 1e-5);
        DeviceTensor<float> pooled(Shape{pixels.dim(0), model.config.vision.hidden});  // [B, Dv]
        model.vision_model.forward(be, pixels.view(), {}, pooled.view());
        CHECK(worst_diff(be, name + " vision.pooler_output", pooled.view(), c.tensor("vision.pooler_output").view()) <= 1e-5);

        index_t batch = 0;
        const auto ids = flat(c.json.at("fed_input_ids"), &batch);
        const auto mask = flat(c.json.at("processor_attention_mask"));
        const auto logits = model.logits(be, pixels.view(), {ids, mask, batch});
        CHECK(worst_diff(be, name + " logits", logits.view(), c.tensor("logits").view()) <= 1e-5);
    }
}

TEST_CASE("BlipForImageTextRetrieval on CUDA reproduces HF's ITM logits and ITC cosines, one image against many texts and in pairs, plain and fused attention") {
    Case c("retrieval");
    Gpu be;
    const auto model = BlipForImageTextRetrieval<Gpu>::from_pretrained(be, c.dir);
    const DeviceTensor<float> pixels = upload(be, c.tensor("pixel_values"));  // [2, 3, S, S]
    const auto img = model.image_embeds(be, pixels.view());                   // [2, N+1, Dv]
    CHECK(worst_diff(be, "vision.last_hidden_state", img.view(), c.tensor("vision.last_hidden_state").view()) <= 1e-5);
    // Both attention paths: gemm + softmax + gemm, and the fused kernel (kernels/attention.cuh);
    // "single" has one image against many texts, whose keys and values every text reads (batch stride 0).
    for (const bool fused : {false, true}) {
        CAPTURE(fused);
        be.set_fused_attention(fused);
        for (const std::string part : {"single", "pairs"}) {
            CAPTURE(part);
            const auto& j = c.json.at(part);
            index_t batch = 0;
            const auto ids = flat(j.at("input_ids"), &batch);
            const auto mask = flat(j.at("attention_mask"));
            const index_t images = static_cast<index_t>(j.at("images").size());
            const ConstView<float> emb(img.data(), Shape{images, img.dim(1), img.dim(2)});  // the first `images` rows (device)
            const auto itm = model.itm_logits(be, emb, {ids, mask, batch});                // [Bt, 2]
            CHECK(worst_diff(be, part + ".itm_logits", itm.view(), c.tensor(part + ".itm_logits").view()) <= 1e-5);
            const auto itc = model.itc_scores(be, emb, {ids, mask, batch});  // [Bi, Bt]
            CHECK(worst_diff(be, part + ".itc_scores", itc.view(), c.tensor(part + ".itc_scores").view()) <= 1e-5);
            // itm_scores = softmax(itm_logits)[:, 1], as the JSON contract of mmalign-blip prints them.
            const Tensor<float> itm_host = download(be, itm.view());  // [Bt, 2]
            const auto& want = j.at("itm_scores");
            for (index_t b = 0; b < batch; ++b) {
                const double l0 = itm_host(b, 0), l1 = itm_host(b, 1);
                CHECK(1.0 / (1.0 + std::exp(l0 - l1)) ==
                      doctest::Approx(want[static_cast<std::size_t>(b)].get<double>()).epsilon(1e-5));
            }
        }
    }
}

TEST_CASE("BlipForQuestionAnswering on CUDA reproduces HF's question states and teacher-forced answer logits") {
    Case c("vqa");
    Gpu be;
    const auto model = BlipForQuestionAnswering<Gpu>::from_pretrained(be, c.dir);
    const DeviceTensor<float> pixels = upload(be, c.tensor("pixel_values"));  // [B, C, S, S]
    index_t batch = 0;
    const auto ids = flat(c.json.at("processor_input_ids"), &batch);
    const auto mask = flat(c.json.at("processor_attention_mask"));
    const auto q = model.question_states(be, pixels.view(), {ids, mask, batch});
    CHECK(worst_diff(be, "question_states", q.view(), c.tensor("question_states").view()) <= 1e-5);
    index_t answers = 0;
    const auto answer_ids = flat(c.json.at("fed_answer_ids"), &answers);
    const std::vector<std::int32_t> answer_mask(answer_ids.size(), 1);
    const auto logits = model.answer_logits(be, pixels.view(), {ids, mask, batch}, {answer_ids, answer_mask, answers});
    CHECK(worst_diff(be, "answer_logits", logits.view(), c.tensor("answer_logits").view()) <= 1e-5);
}

TEST_CASE("BlipModel on CUDA reproduces HF's pooled text, embeddings and contrastive logits") {
    Case c("model");
    Gpu be;
    const auto model = BlipModel<Gpu>::from_pretrained(be, c.dir);
    const DeviceTensor<float> pixels = upload(be, c.tensor("pixel_values"));  // [Bi, C, S, S]
    index_t batch = 0;
    const auto ids = flat(c.json.at("input_ids"), &batch);
    const auto mask = flat(c.json.at("attention_mask"));
    DeviceTensor<float> pooled(Shape{batch, model.config.text.bert.hidden});  // [Bt, D]
    model.text_model.forward(be, {.ids = ids, .attention_mask = mask, .batch = batch}, {}, pooled.view());
    CHECK(worst_diff(be, "text.pooler_output", pooled.view(), c.tensor("text.pooler_output").view()) <= 1e-5);
    const auto o = model.forward(be, pixels.view(), ids, mask, batch);
    CHECK(worst_diff(be, "image_embeds", o.image_embeds.view(), c.tensor("image_embeds").view()) <= 1e-5);
    CHECK(worst_diff(be, "text_embeds", o.text_embeds.view(), c.tensor("text_embeds").view()) <= 1e-5);
    CHECK(worst_diff(be, "logits_per_image", o.logits_per_image.view(), c.tensor("logits_per_image").view()) <= 1e-5);
    CHECK(worst_diff(be, "logits_per_text", o.logits_per_text.view(), c.tensor("logits_per_text").view()) <= 1e-5);
}

TEST_CASE("BlipForConditionalGeneration.generate on CUDA gives HF's ids for every caption_a record") {
    Case c("caption_a");
    Gpu be;
    const auto model = BlipForConditionalGeneration<Gpu>::from_pretrained(be, c.dir);
    int records = 0;
    for (const auto& g : c.json.at("generate")) {
        const std::string what = "caption_a " + g.at("name").get<std::string>();
        const DeviceTensor<float> pixels = pixels_of(be, c, g.at("images"));  // [n, C, S, S]
        std::vector<std::int32_t> ids, mask;
        index_t batch = pixels.dim(0);
        if (!g.at("input_ids").is_null()) {
            ids = flat(g.at("input_ids"), &batch);
            mask = flat(g.at("attention_mask"));
        }
        const auto out = model.generate(be, pixels.view(), {ids, mask, batch}, options_of(g.at("kwargs")));
        check_ids(what, out, g.at("ids"));
        ++records;
    }
    MESSAGE(records, " captioning records");
    CHECK(records >= 20);
}

TEST_CASE("BlipForQuestionAnswering.generate on CUDA gives HF's ids for single and batched questions") {
    Case c("vqa");
    Gpu be;
    const auto model = BlipForQuestionAnswering<Gpu>::from_pretrained(be, c.dir);
    int records = 0;
    for (const auto& g : c.json.at("generate")) {
        const std::string what = g.at("name").get<std::string>();
        const DeviceTensor<float> pixels = pixels_of(be, c, g.at("images"));  // [n, C, S, S]
        index_t batch = 0;
        const auto ids = flat(g.at("input_ids"), &batch);
        const auto mask = flat(g.at("attention_mask"));
        const auto out = model.generate(be, pixels.view(), {ids, mask, batch}, options_of(g.at("kwargs")));
        check_ids(what, out, g.at("ids"));
        ++records;
    }
    MESSAGE(records, " VQA records");
    CHECK(records >= 8);
}
