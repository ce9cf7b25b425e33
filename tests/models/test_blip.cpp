// Tests of the BLIP models (models/blip_*.hpp) against transformers' BLIP classes: random tiny
// checkpoints saved by tools/make_blip_fixtures.py (save_pretrained + the HF outputs of fixed
// inputs, tests/fixtures/blip/<case>/expected.{safetensors,json}), loaded from the folder as it is,
// must reproduce every stage to 1e-5 (relative above 1) and generate identical ids.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/models/blip_captioning.hpp"
#include "mmalign/models/blip_model.hpp"
#include "mmalign/models/blip_retrieval.hpp"
#include "mmalign/models/blip_vqa.hpp"
#include "support/blip_fixtures.hpp"
#include "support/errors.hpp"

using namespace mmalign;
using Be = CpuBackend<float>;

using namespace mmalign::test::blip;

TEST_CASE("BlipForConditionalGeneration reproduces HF's vision states and teacher-forced logits") {
    for (const std::string name : {"caption_a", "caption_b", "caption_remainder"}) {
        CAPTURE(name);
        Case c(name);
        Be be;
        const auto model = BlipForConditionalGeneration<Be>::from_pretrained(be, c.dir);
        const Tensor<float> pixels = c.tensor("pixel_values");
        const auto img = model.image_embeds(be, pixels.view());
        CHECK(worst_diff(name + " vision.last_hidden_state", img.view(), c.tensor("vision.last_hidden_state").view()) <= 1e-5);
        Tensor<float> pooled(Shape{pixels.dim(0), model.config.vision.hidden});
        model.vision_model.forward(be, pixels.view(), {}, pooled.view());
        CHECK(worst_diff(name + " vision.pooler_output", pooled.view(), c.tensor("vision.pooler_output").view()) <= 1e-5);

        index_t batch = 0;
        const auto ids = flat(c.json.at("fed_input_ids"), &batch);
        const auto mask = flat(c.json.at("processor_attention_mask"));
        const auto logits = model.logits(be, pixels.view(), {ids, mask, batch});
        CHECK(worst_diff(name + " logits", logits.view(), c.tensor("logits").view()) <= 1e-5);
    }
}

TEST_CASE("BlipForImageTextRetrieval reproduces HF's ITM logits and ITC cosines, one image against many texts and in pairs") {
    Case c("retrieval");
    Be be;
    const auto model = BlipForImageTextRetrieval<Be>::from_pretrained(be, c.dir);
    const Tensor<float> pixels = c.tensor("pixel_values");  // [2, 3, S, S]
    const auto img = model.image_embeds(be, pixels.view());
    CHECK(worst_diff("vision.last_hidden_state", img.view(), c.tensor("vision.last_hidden_state").view()) <= 1e-5);
    for (const std::string part : {"single", "pairs"}) {
        CAPTURE(part);
        const auto& j = c.json.at(part);
        index_t batch = 0;
        const auto ids = flat(j.at("input_ids"), &batch);
        const auto mask = flat(j.at("attention_mask"));
        const index_t images = static_cast<index_t>(j.at("images").size());
        const ConstView<float> emb(img.data(), Shape{images, img.dim(1), img.dim(2)});  // the first `images` rows
        const auto itm = model.itm_logits(be, emb, {ids, mask, batch});
        CHECK(worst_diff(part + ".itm_logits", itm.view(), c.tensor(part + ".itm_logits").view()) <= 1e-5);
        const auto itc = model.itc_scores(be, emb, {ids, mask, batch});
        CHECK(worst_diff(part + ".itc_scores", itc.view(), c.tensor(part + ".itc_scores").view()) <= 1e-5);
        // itm_scores = softmax(itm_logits)[:, 1], as the JSON contract of mmalign-blip prints them.
        const auto& want = j.at("itm_scores");
        for (index_t b = 0; b < batch; ++b) {
            const double l0 = itm(b, 0), l1 = itm(b, 1);
            CHECK(1.0 / (1.0 + std::exp(l0 - l1)) == doctest::Approx(want[static_cast<std::size_t>(b)].get<double>()).epsilon(1e-5));
        }
    }
}

TEST_CASE("BlipForQuestionAnswering reproduces HF's question states and teacher-forced answer logits") {
    Case c("vqa");
    Be be;
    const auto model = BlipForQuestionAnswering<Be>::from_pretrained(be, c.dir);
    const Tensor<float> pixels = c.tensor("pixel_values");
    index_t batch = 0;
    const auto ids = flat(c.json.at("processor_input_ids"), &batch);
    const auto mask = flat(c.json.at("processor_attention_mask"));
    const auto q = model.question_states(be, pixels.view(), {ids, mask, batch});
    CHECK(worst_diff("question_states", q.view(), c.tensor("question_states").view()) <= 1e-5);
    index_t answers = 0;
    const auto answer_ids = flat(c.json.at("fed_answer_ids"), &answers);
    const std::vector<std::int32_t> answer_mask(answer_ids.size(), 1);
    const auto logits = model.answer_logits(be, pixels.view(), {ids, mask, batch}, {answer_ids, answer_mask, answers});
    CHECK(worst_diff("answer_logits", logits.view(), c.tensor("answer_logits").view()) <= 1e-5);
}

TEST_CASE("BlipModel reproduces HF's pooled text, embeddings and contrastive logits") {
    Case c("model");
    Be be;
    const auto model = BlipModel<Be>::from_pretrained(be, c.dir);
    const Tensor<float> pixels = c.tensor("pixel_values");
    index_t batch = 0;
    const auto ids = flat(c.json.at("input_ids"), &batch);
    const auto mask = flat(c.json.at("attention_mask"));
    Tensor<float> pooled(Shape{batch, model.config.text.bert.hidden});
    model.text_model.forward(be, {.ids = ids, .attention_mask = mask, .batch = batch}, {}, pooled.view());
    CHECK(worst_diff("text.pooler_output", pooled.view(), c.tensor("text.pooler_output").view()) <= 1e-5);
    const auto o = model.forward(be, pixels.view(), ids, mask, batch);
    CHECK(worst_diff("image_embeds", o.image_embeds.view(), c.tensor("image_embeds").view()) <= 1e-5);
    CHECK(worst_diff("text_embeds", o.text_embeds.view(), c.tensor("text_embeds").view()) <= 1e-5);
    CHECK(worst_diff("logits_per_image", o.logits_per_image.view(), c.tensor("logits_per_image").view()) <= 1e-5);
    CHECK(worst_diff("logits_per_text", o.logits_per_text.view(), c.tensor("logits_per_text").view()) <= 1e-5);
}


TEST_CASE("BlipForConditionalGeneration.generate gives HF's ids: greedy, beams, penalties, lengths, prompts, batches") {
    int records = 0;
    for (const std::string name : {"caption_a", "caption_b", "caption_remainder"}) {
        Case c(name);
        Be be;
        const auto model = BlipForConditionalGeneration<Be>::from_pretrained(be, c.dir);
        for (const auto& g : c.json.at("generate")) {
            const std::string what = name + " " + g.at("name").get<std::string>();
            const Tensor<float> pixels = pixels_of(c, g.at("images"));
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
    }
    MESSAGE(records, " captioning records");
    CHECK(records >= 30);
}

TEST_CASE("BlipForQuestionAnswering.generate gives HF's ids for single and batched questions") {
    Case c("vqa");
    Be be;
    const auto model = BlipForQuestionAnswering<Be>::from_pretrained(be, c.dir);
    int records = 0;
    for (const auto& g : c.json.at("generate")) {
        const std::string what = g.at("name").get<std::string>();
        const Tensor<float> pixels = pixels_of(c, g.at("images"));
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

TEST_CASE("a BLIP folder with a bad config.json or checkpoint is refused with one line naming the file and the field") {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / "mmalign_test_blip_bad";
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::string src = fixtures + "caption_a";
    fs::copy_file(src + "/model.safetensors", dir / "model.safetensors");
    nlohmann::json config = Case::read_json(src + "/config.json");
    auto attempt = [&](const nlohmann::json& j) {
        std::ofstream(dir / "config.json") << j.dump();
        Be be;
        return test::io_error_of([&] { (void)BlipForConditionalGeneration<Be>::from_pretrained(be, dir.string()); });
    };
    const std::string vocab = std::to_string(config.at("text_config").at("vocab_size").get<index_t>());
    const index_t width = config.at("vision_config").at("hidden_size").get<index_t>();
    nlohmann::json j = config;
    j["text_config"]["bos_token_id"] = 100000;
    CHECK(attempt(j).find("text_config.bos_token_id 100000 is outside the vocabulary [0, " + vocab + ")") != std::string::npos);
    j = config;
    j["text_config"]["encoder_hidden_size"] = width + 16;
    CHECK(attempt(j).find("text_config.encoder_hidden_size " + std::to_string(width + 16) +
                          " differs from vision_config.hidden_size " + std::to_string(width)) != std::string::npos);
    j = config;
    j["text_config"]["hidden_size"] = 4294967296;
    CHECK(attempt(j).find("text_config.hidden_size") != std::string::npos);
    j = config;
    j["vision_config"]["hidden_act"] = 7;
    CHECK(attempt(j).find("vision_config.hidden_act: expected a string") != std::string::npos);
    j = config;
    j["text_config"]["num_hidden_layers"] = 3;  // one layer more than the checkpoint holds
    CHECK(attempt(j).find("config.json: text_config.num_hidden_layers 3 does not match model.safetensors, which holds 2 "
                          "layers (text_decoder.bert.encoder.layer.0 to text_decoder.bert.encoder.layer.1)") != std::string::npos);
    fs::remove(dir / "config.json");
    Be be;
    CHECK(test::io_error_of([&] { (void)BlipForConditionalGeneration<Be>::from_pretrained(be, dir.string()); })
              .find("config.json") != std::string::npos);
    fs::remove_all(dir);
}

TEST_CASE("generation may ask for more new tokens than the position table holds, as transformers allows; empty batches are refused") {
    Case c("caption_a");
    Be be;
    const auto model = BlipForConditionalGeneration<Be>::from_pretrained(be, c.dir);
    for (const auto& g : c.json.at("generate")) {
        if (g.at("name") != "defaults|single_image") continue;
        // transformers' generate(max_new_tokens=200) returns the default run's ids: [SEP] comes first.
        generation::GenerationConfig o;
        o.max_new_tokens = 200;
        const Tensor<float> pixels = pixels_of(c, g.at("images"));
        check_ids("max_new_tokens 200", model.generate(be, pixels.view(), {}, o), g.at("ids"));
        const std::vector<std::int32_t> none;
        CHECK_THROWS_AS(model.logits(be, pixels.view(), {none, none, 0}), ShapeError);
    }
    Case r("retrieval");
    const auto itm = BlipForImageTextRetrieval<Be>::from_pretrained(be, r.dir);
    const auto img = itm.image_embeds(be, r.tensor("pixel_values").view());
    const std::vector<std::int32_t> none;
    CHECK_THROWS_AS(itm.itc_scores(be, img.view(), {none, none, 0}), ShapeError);
    CHECK_THROWS_AS(itm.itm_logits(be, img.view(), {none, none, 0}), ShapeError);
}
