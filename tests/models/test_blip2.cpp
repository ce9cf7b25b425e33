// BLIP-2 against transformers 5.25 (tests/fixtures/blip2, tools/make_blip2_fixtures.py): every stage
// of Blip2ForConditionalGeneration, Blip2Model and Blip2ForImageTextRetrieval within 1e-5 and every
// generate record's ids identical; both q/v bias checkpoint forms; the prompt forms; config errors.
#include <doctest/doctest.h>

#include <filesystem>
#include <algorithm>
#include <functional>
#include <fstream>

#include "../support/blip_fixtures.hpp"
#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/models/blip2_generation.hpp"
#include "mmalign/models/blip2_model.hpp"
#include "mmalign/models/blip2_retrieval.hpp"

using namespace mmalign;
using namespace mmalign::test::blip;
using Be = CpuBackend<float>;

namespace {

Case blip2_case(const std::string& name) { return Case(name, blip2_fixtures); }

Blip2Tokens tokens(const Rows& r) { return {.ids = r.ids, .attention_mask = r.mask, .batch = r.batch}; }

/// The rows without their first `drop` positions (the processor's image tokens).
Rows without_prefix(const Rows& in, index_t drop) {
    Rows r;
    r.batch = in.batch;
    const index_t T = static_cast<index_t>(in.ids.size()) / in.batch;
    for (index_t b = 0; b < in.batch; ++b)
        for (index_t t = drop; t < T; ++t) {
            r.ids.push_back(in.ids[static_cast<std::size_t>(b * T + t)]);
            if (!in.mask.empty()) r.mask.push_back(in.mask[static_cast<std::size_t>(b * T + t)]);
        }
    return r;
}

Tensor<float> host(Be& be, const Be::Tensor& t) {
    Tensor<float> h(t.shape());
    be.to_host(t.view(), h.view());
    return h;
}

void check_generation_stages(const std::string& name, const std::string& folder) {
    CAPTURE(name);
    Be be;
    const Case c = blip2_case(name);
    const auto model = Blip2ForConditionalGeneration<Be>::from_pretrained(be, blip2_fixtures + folder);
    const Tensor<float> pixels = c.tensor("pixel_values");
    const auto img = model.image_embeds(be, pixels.view());
    CHECK(worst_diff(name + " image_embeds", host(be, img).view(), c.tensor("image_embeds").view()) <= 1e-5);
    const auto q = model.qformer_output(be, img.view());
    CHECK(worst_diff(name + " qformer", host(be, q).view(), c.tensor("qformer.last_hidden_state").view()) <= 1e-5);
    const auto soft = model.language_model_inputs(be, q.view());
    CHECK(worst_diff(name + " language_model_inputs", host(be, soft).view(), c.tensor("language_model_inputs").view()) <= 1e-5);
    const Rows in = rows(c.json.at("input_ids"), c.json.at("attention_mask"));
    const auto logits = model.logits(be, pixels.view(), tokens(in));
    CHECK(worst_diff(name + " logits", host(be, logits).view(), c.tensor("logits").view()) <= 1e-5);
}

void check_generate_records(const std::string& name) {
    CAPTURE(name);
    Be be;
    const Case c = blip2_case(name);
    const auto model = Blip2ForConditionalGeneration<Be>::from_pretrained(be, blip2_fixtures + name);
    const index_t Q = model.config().num_query_tokens;
    int checked = 0;
    for (const auto& rec : c.json.at("generate")) {
        const std::string what = name + " " + rec.at("name").get<std::string>();
        const Tensor<float> pixels = pixels_of(c, rec.at("images"));
        const auto options = options_of(rec.at("kwargs"));
        if (rec.at("input_ids").is_null()) {
            check_ids(what, model.generate(be, pixels.view(), {}, options), rec.at("ids"));
        } else {
            const Rows in = rows(rec.at("input_ids"), rec.at("attention_mask"));
            check_ids(what, model.generate(be, pixels.view(), tokens(in), options), rec.at("ids"));
            // The legacy form (no <image> tokens; the soft prompt prepended) builds the same rows.
            const Rows legacy = without_prefix(in, Q);
            check_ids(what + " (legacy prompt form)", model.generate(be, pixels.view(), tokens(legacy), options), rec.at("ids"));
        }
        ++checked;
    }
    CHECK(checked >= 12);
}

}  // namespace

TEST_CASE("BLIP-2 with a pre-norm OPT: vision, Q-Former, projection and logits equal transformers'") {
    check_generation_stages("opt_prenorm", "opt_prenorm");
}

TEST_CASE("BLIP-2 with a post-norm OPT and project_in/out: every stage equals transformers', the soft prompt scattered in flat order") {
    check_generation_stages("opt_postnorm", "opt_postnorm");
}

TEST_CASE("LAVIS's q_bias/v_bias vision checkpoint loads to the same model as the fused qkv.bias one") {
    check_generation_stages("opt_prenorm", "qv_bias");
}

TEST_CASE("BLIP-2 generate (greedy, beams with length penalty, min/max new tokens, repetition penalty, batches) gives transformers' ids, in both prompt forms") {
    check_generate_records("opt_prenorm");
    check_generate_records("opt_postnorm");
}

TEST_CASE("A prompt without image tokens: transformers 5.25 ignores the image (its ids are the language model's alone), mmalign prepends the soft prompt") {
    Be be;
    const Case c = blip2_case("legacy");
    const auto model = Blip2ForConditionalGeneration<Be>::from_pretrained(be, blip2_fixtures + "legacy");
    const auto& text = model.config().text;
    const index_t Q = model.config().num_query_tokens;
    int checked = 0;
    for (const auto& rec : c.json.at("generate")) {
        const std::string what = "legacy " + rec.at("name").get<std::string>();
        const Rows in = rows(rec.at("input_ids"), rec.at("attention_mask"));
        REQUIRE(std::count(in.ids.begin(), in.ids.end(), std::int32_t(model.config().image_token_index)) == 0);
        auto options = options_of(rec.at("kwargs"));
        options.eos_token_id = {std::int32_t(text.eos_token_id)};
        options.pad_token_id = std::int32_t(text.pad_token_id);
        // transformers' rows: the language model alone on the prompt.
        OptDecoder<Be>::Session lm(be, model.model.language_model);
        check_ids(what + " (language model alone)", generation::generate(lm, in.ids, in.mask, in.batch, options), rec.at("ids"));
        // mmalign's: the same rows as the prompt with the processor's image tokens in front.
        const Tensor<float> pixels = pixels_of(c, rec.at("images"));
        Rows expanded;
        expanded.batch = in.batch;
        const index_t T = static_cast<index_t>(in.ids.size()) / in.batch;
        for (index_t b = 0; b < in.batch; ++b) {
            expanded.ids.insert(expanded.ids.end(), static_cast<std::size_t>(Q), std::int32_t(model.config().image_token_index));
            expanded.ids.insert(expanded.ids.end(), in.ids.begin() + b * T, in.ids.begin() + (b + 1) * T);
            expanded.mask.insert(expanded.mask.end(), static_cast<std::size_t>(Q), 1);
            expanded.mask.insert(expanded.mask.end(), in.mask.begin() + b * T, in.mask.begin() + (b + 1) * T);
        }
        const auto legacy = model.generate(be, pixels.view(), tokens(in), options);
        const auto with_tokens = model.generate(be, pixels.view(), tokens(expanded), options);
        CHECK(legacy.sequences == with_tokens.sequences);
        ++checked;
    }
    CHECK(checked == 9);
}

TEST_CASE("Blip2Model: get_image_features, get_qformer_features, get_text_features and logits equal transformers'") {
    Be be;
    const Case c = blip2_case("model");
    const auto model = Blip2Model<Be>::from_pretrained(be, blip2_fixtures + "model");
    const Tensor<float> pixels = c.tensor("pixel_values");
    CHECK(worst_diff("image features", host(be, model.get_image_features(be, pixels.view())).view(),
                     c.tensor("get_image_features.last_hidden_state").view()) <= 1e-5);
    CHECK(worst_diff("qformer features", host(be, model.get_qformer_features(be, pixels.view())).view(),
                     c.tensor("get_qformer_features").view()) <= 1e-5);
    const Rows text = rows(c.json.at("text_input_ids"), c.json.at("text_attention_mask"));
    CHECK(worst_diff("text features", host(be, model.get_text_features(be, tokens(text))).view(),
                     c.tensor("get_text_features.last_hidden_state").view()) <= 1e-5);
    const Rows in = rows(c.json.at("input_ids"), c.json.at("attention_mask"));
    CHECK(worst_diff("logits", host(be, model.logits(be, pixels.view(), tokens(in))).view(), c.tensor("logits").view()) <= 1e-5);
}

TEST_CASE("Blip2ForImageTextRetrieval: ITM logits (mean over queries) and ITC scores (max over queries) equal transformers', with and without image tokens") {
    Be be;
    const Case c = blip2_case("retrieval");
    auto model = Blip2ForImageTextRetrieval<Be>::from_pretrained(be, blip2_fixtures + "retrieval");
    const Tensor<float> pixels = c.tensor("pixel_values");
    const auto img = model.image_embeds(be, pixels.view());
    CHECK(worst_diff("image_embeds", host(be, img).view(), c.tensor("image_embeds").view()) <= 1e-5);

    const Tensor<float> itm_pixels = c.tensor("itm.pixel_values");
    const auto itm_img = model.image_embeds(be, itm_pixels.view());
    const Rows itm = rows(c.json.at("itm").at("input_ids"), c.json.at("itm").at("attention_mask"));
    CHECK(worst_diff("itm logits", host(be, model.itm_logits(be, itm_img.view(), tokens(itm))).view(),
                     c.tensor("itm.logits").view()) <= 1e-5);
    const Rows itc = rows(c.json.at("itc").at("input_ids"), c.json.at("itc").at("attention_mask"));
    CHECK(worst_diff("itc scores", host(be, model.itc_scores(be, img.view(), tokens(itc))).view(),
                     c.tensor("itc.scores").view()) <= 1e-5);

    SUBCASE("one image against many texts equals that image repeated") {
        const Tensor<float> one = pixels_of(c, nlohmann::json::array({c.json.at("itm_images")[0]}));
        const auto one_img = model.image_embeds(be, one.view());
        const Rows first = rows(nlohmann::json::array({c.json.at("itm").at("input_ids")[0], c.json.at("itm").at("input_ids")[2]}),
                                nlohmann::json::array({c.json.at("itm").at("attention_mask")[0], c.json.at("itm").at("attention_mask")[2]}));
        const Tensor<float> got = host(be, model.itm_logits(be, one_img.view(), tokens(first)));
        const Tensor<float> want = c.tensor("itm.logits");
        for (index_t k = 0; k < 2; ++k) {
            CHECK(got.data()[k] == doctest::Approx(want.data()[k]).epsilon(1e-5));
            CHECK(got.data()[2 + k] == doctest::Approx(want.data()[2 * 2 + k]).epsilon(1e-5));
        }
    }
    SUBCASE("a config without image_token_index takes texts without image tokens") {
        model.config.image_token_index = -1;
        const auto& legacy = c.json.at("legacy");
        const Rows litm = rows(legacy.at("itm_input_ids"), legacy.at("itm_attention_mask"));
        CHECK(worst_diff("legacy itm", host(be, model.itm_logits(be, itm_img.view(), tokens(litm))).view(),
                         c.tensor("legacy.itm.logits").view()) <= 1e-5);
        const Rows litc = rows(legacy.at("itc_input_ids"), legacy.at("itc_attention_mask"));
        CHECK(worst_diff("legacy itc", host(be, model.itc_scores(be, img.view(), tokens(litc))).view(),
                         c.tensor("legacy.itc.scores").view()) <= 1e-5);
    }
}

namespace {
/// A copy of a fixture folder with config.json edited by `edit`.
std::string edited_copy(const std::string& name, const std::function<void(nlohmann::json&)>& edit) {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("mmalign_blip2_" + name + "_edited");
    fs::remove_all(dir);
    fs::copy(blip2_fixtures + name, dir);
    nlohmann::json cfg = Case::read_json((dir / "config.json").string());
    edit(cfg);
    std::ofstream((dir / "config.json").string()) << cfg.dump();
    return dir.string();
}
}  // namespace

TEST_CASE("Malformed BLIP-2 folders are refused with the file and field named") {
    Be be;
    auto message = [&](const std::string& dir) {
        try {
            (void)Blip2ForConditionalGeneration<Be>::from_pretrained(be, dir);
        } catch (const std::exception& e) {
            return std::string(e.what());
        }
        return std::string("(loaded)");
    };
    const std::string t5 = message(edited_copy("opt_prenorm", [](nlohmann::json& j) { j["text_config"]["model_type"] = "t5"; }));
    CHECK_MESSAGE(t5.find("text_config.model_type") != std::string::npos, t5);
    const std::string image = message(edited_copy("opt_prenorm", [](nlohmann::json& j) { j["image_token_index"] = 1 << 20; }));
    CHECK_MESSAGE(image.find("image_token_index") != std::string::npos, image);
    const std::string queries = message(edited_copy("opt_prenorm", [](nlohmann::json& j) { j["num_query_tokens"] = 0; }));
    CHECK_MESSAGE(queries.find("num_query_tokens") != std::string::npos, queries);
    const std::string many = message(edited_copy("opt_prenorm", [](nlohmann::json& j) {
        j["num_query_tokens"] = 1 << 24;  // 2^24 queries of width 768: 2^33.6 values
        j["qformer_config"]["hidden_size"] = 768;
    }));
    CHECK_MESSAGE(many.find("config.json") != std::string::npos, many);
    CHECK_MESSAGE(many.find("num_query_tokens") != std::string::npos, many);
    const std::string wide = message(edited_copy("opt_prenorm", [](nlohmann::json& j) { j["text_config"]["hidden_size"] = 1 << 20; j["text_config"]["num_attention_heads"] = 1; }));
    CHECK_MESSAGE(wide.find("config.json") != std::string::npos, wide);
    const std::string width = message(edited_copy("opt_prenorm", [](nlohmann::json& j) { j["qformer_config"]["hidden_size"] = 7; }));
    CHECK_MESSAGE(width.find("config.json") != std::string::npos, width);
    // A prompt whose rows hold some but not all of the image tokens is refused, not silently misread.
    const auto model = Blip2ForConditionalGeneration<Be>::from_pretrained(be, blip2_fixtures + "opt_prenorm");
    const std::vector<std::int32_t> ids = {400, 400, 2, 50};
    Tensor<float> pixels(Shape{1, 3, model.config().vision.image_size, model.config().vision.image_size});
    pixels.fill(0.f);
    try {
        (void)Blip2ForImageTextRetrieval<Be>::from_pretrained(
            be, edited_copy("retrieval", [](nlohmann::json& j) {
                    j["image_text_hidden_size"] = 1 << 24;  // projections of 2^24 × 512
                    j["qformer_config"]["hidden_size"] = 512;
                }));
        FAIL("a 2^24-wide image_text_hidden_size was accepted");
    } catch (const IoError& e) {
        const std::string what = e.what();
        CHECK_MESSAGE(what.find("image_text_hidden_size") != std::string::npos, what);
    }
    CHECK_THROWS_WITH_AS(model.generate(be, pixels.view(), {.ids = ids, .attention_mask = {}, .batch = 1}),
                         doctest::Contains("image tokens"), ArgumentError);
}
