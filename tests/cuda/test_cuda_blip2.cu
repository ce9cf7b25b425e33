// The BLIP-2 fixtures of tests/models/test_blip2.cpp through CudaBackend<float>: each folder loaded
// with from_pretrained(be, …) into device storage, every stage downloaded and checked against
// transformers' outputs (tests/fixtures/blip2/<case>/expected.*) with the CPU tests' tolerance, 1e-5
// relative to max(1, max |HF|), in the backend's default fp32 mode; generated ids identical.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "cuda/cuda_support.hpp"
#include "support/blip_fixtures.hpp"
#include "mmalign/models/blip2_generation.hpp"
#include "mmalign/models/blip2_retrieval.hpp"

using namespace mmalign;
using test::Gpu;
using test::download;
using test::upload;
using namespace mmalign::test::blip;

namespace {

Blip2Tokens tokens(const Rows& r) { return {.ids = r.ids, .attention_mask = r.mask, .batch = r.batch}; }

}  // namespace

TEST_CASE("Blip2ForConditionalGeneration on CUDA reproduces HF's stages and generated ids") {
    for (const std::string name : {"opt_prenorm", "opt_postnorm"}) {
        CAPTURE(name);
        Case c(name, blip2_fixtures);
        Gpu be;
        REQUIRE_FALSE(be.tf32());
        const auto model = Blip2ForConditionalGeneration<Gpu>::from_pretrained(be, c.dir);
        const DeviceTensor<float> pixels = upload(be, c.tensor("pixel_values"));  // [B, C, S, S]
        const auto img = model.image_embeds(be, pixels.view());
        CHECK(worst_diff(be, name + " image_embeds", img.view(), c.tensor("image_embeds").view()) <= 1e-5);
        const auto q = model.qformer_output(be, img.view());
        CHECK(worst_diff(be, name + " qformer", q.view(), c.tensor("qformer.last_hidden_state").view()) <= 1e-5);
        const Rows in = rows(c.json.at("input_ids"), c.json.at("attention_mask"));
        const auto logits = model.logits(be, pixels.view(), tokens(in));
        CHECK(worst_diff(be, name + " logits", logits.view(), c.tensor("logits").view()) <= 1e-5);
        for (const auto& rec : c.json.at("generate")) {
            const DeviceTensor<float> px = upload(be, mmalign::test::blip::pixels_of(c, rec.at("images")));
            const auto options = options_of(rec.at("kwargs"));
            const Rows prompt = rec.at("input_ids").is_null() ? Rows{} : rows(rec.at("input_ids"), rec.at("attention_mask"));
            check_ids(name + " " + rec.at("name").get<std::string>() + " (CUDA)",
                      model.generate(be, px.view(), tokens(prompt), options), rec.at("ids"));
        }
    }
}

TEST_CASE("Blip2ForImageTextRetrieval on CUDA reproduces HF's ITM logits and ITC scores") {
    Case c("retrieval", blip2_fixtures);
    Gpu be;
    const auto model = Blip2ForImageTextRetrieval<Gpu>::from_pretrained(be, c.dir);
    const DeviceTensor<float> itm_pixels = upload(be, c.tensor("itm.pixel_values"));
    const auto itm_img = model.image_embeds(be, itm_pixels.view());
    const Rows itm = rows(c.json.at("itm").at("input_ids"), c.json.at("itm").at("attention_mask"));
    CHECK(worst_diff(be, "itm logits", model.itm_logits(be, itm_img.view(), tokens(itm)).view(), c.tensor("itm.logits").view()) <= 1e-5);
    const DeviceTensor<float> pixels = upload(be, c.tensor("pixel_values"));
    const auto img = model.image_embeds(be, pixels.view());
    const Rows itc = rows(c.json.at("itc").at("input_ids"), c.json.at("itc").at("attention_mask"));
    CHECK(worst_diff(be, "itc scores", model.itc_scores(be, img.view(), tokens(itc)).view(), c.tensor("itc.scores").view()) <= 1e-5);
}
