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
#include "mmalign/io/safetensors.hpp"
#include "mmalign/models/blip_captioning.hpp"
#include "mmalign/models/blip_model.hpp"
#include "mmalign/models/blip_retrieval.hpp"
#include "mmalign/models/blip_vqa.hpp"

using namespace mmalign;
using test::Gpu;
using test::download;
using test::upload;

namespace {

const std::string fixtures = std::string(MMALIGN_FIXTURE_DIR) + "/blip/";

/// max |got − want| / max(1, max |want|) of a device result against HF's host tensor.
double worst_diff(Gpu& be, const std::string& what, ConstView<float> got_device, ConstView<float> want) {
    REQUIRE_MESSAGE(got_device.shape() == want.shape(), what, ": shape ", got_device.shape().str(), " vs ",
                    want.shape().str());
    const Tensor<float> got = download(be, got_device);
    double worst = 0, scale = 1;
    index_t at = 0;
    for (index_t i = 0; i < got.numel(); ++i) {
        const double d = std::abs(double(got.data()[i]) - double(want.data()[i]));
        if (d > worst || std::isnan(d)) worst = d, at = i;
        scale = std::max(scale, std::abs(double(want.data()[i])));
    }
    worst /= scale;
    if (worst > 1e-5 || std::getenv("MMALIGN_PARITY_VERBOSE"))
        std::printf("%s (CUDA): worst |diff|/max(1,|HF|) %.3g at flat index %lld (got %.7g, HF %.7g)\n", what.c_str(),
                    worst, (long long)at, double(got.data()[at]), double(want.data()[at]));
    return worst;
}

struct Case {
    std::string dir;
    nlohmann::json json;
    io::SafetensorsFile expected;

    explicit Case(const std::string& name)
        : dir(fixtures + name), json(read_json(dir + "/expected.json")),
          expected(io::SafetensorsFile::open(dir + "/expected.safetensors")) {}

    static nlohmann::json read_json(const std::string& path) {
        std::ifstream f(path);
        REQUIRE_MESSAGE(f.good(), "cannot open ", path);
        return nlohmann::json::parse(f);
    }
    Tensor<float> tensor(const std::string& name) const {
        REQUIRE_MESSAGE(expected.contains(name), dir, ": no tensor ", name);
        Tensor<float> t(expected.info(name).shape);
        expected.read_into(name, t.view());
        return t;
    }
};

/// A JSON list of equal-length int lists → its flat row-major ids and the row count.
std::vector<std::int32_t> flat(const nlohmann::json& rows, index_t* batch = nullptr) {
    std::vector<std::int32_t> out;
    for (const auto& r : rows)
        for (const auto& v : r) out.push_back(v.get<std::int32_t>());
    if (batch) *batch = static_cast<index_t>(rows.size());
    return out;
}

/// kwargs of an expected.json generate record → GenerationConfig (HF names).
generation::GenerationConfig options_of(const nlohmann::json& kw) {
    static const std::set<std::string> known = {"num_beams", "num_return_sequences", "length_penalty",
                                                "repetition_penalty", "max_new_tokens", "min_new_tokens",
                                                "max_length", "early_stopping"};
    for (const auto& [key, value] : kw.items())
        REQUIRE_MESSAGE(known.count(key), "generate record with an unhandled option ", key, " = ", value.dump());
    generation::GenerationConfig o;
    if (kw.contains("num_beams")) o.num_beams = kw.at("num_beams").get<index_t>();
    if (kw.contains("num_return_sequences")) o.num_return_sequences = kw.at("num_return_sequences").get<index_t>();
    if (kw.contains("length_penalty")) o.length_penalty = kw.at("length_penalty").get<double>();
    if (kw.contains("repetition_penalty")) o.repetition_penalty = kw.at("repetition_penalty").get<double>();
    if (kw.contains("max_new_tokens")) o.max_new_tokens = kw.at("max_new_tokens").get<index_t>();
    if (kw.contains("min_new_tokens")) o.min_new_tokens = kw.at("min_new_tokens").get<index_t>();
    if (kw.contains("max_length")) o.max_length = kw.at("max_length").get<index_t>();
    if (kw.contains("early_stopping")) {
        const auto& e = kw.at("early_stopping");
        o.early_stopping = e.is_string() ? generation::EarlyStopping::never
                           : e.get<bool>() ? generation::EarlyStopping::finished
                                           : generation::EarlyStopping::heuristic;
    }
    return o;
}

/// The rows of pixel_values that a generate record's images are, uploaded: [n, C, S, S].
DeviceTensor<float> pixels_of(Gpu& be, const Case& c, const nlohmann::json& images) {
    const Tensor<float> all = c.tensor("pixel_values");  // [N, C, S, S]
    const auto& listed = c.json.at("images");
    const index_t per = all.numel() / all.dim(0);
    Tensor<float> rows(Shape{static_cast<index_t>(images.size()), all.dim(1), all.dim(2), all.dim(3)});  // [n, C, S, S]
    for (std::size_t i = 0; i < images.size(); ++i) {
        const auto at = std::find(listed.begin(), listed.end(), images[i]);
        REQUIRE(at != listed.end());
        std::copy_n(all.data() + static_cast<index_t>(at - listed.begin()) * per, per,
                    rows.data() + static_cast<index_t>(i) * per);
    }
    return upload(be, rows);
}

void check_ids(const std::string& what, const generation::Generated& got, const nlohmann::json& want) {
    CAPTURE(what);
    REQUIRE(got.rows == static_cast<index_t>(want.size()));
    for (index_t r = 0; r < got.rows; ++r) {
        std::vector<std::int32_t> expected;
        for (const auto& v : want[static_cast<std::size_t>(r)]) expected.push_back(v.get<std::int32_t>());
        const auto row = got.row(r);
        const std::vector<std::int32_t> got_row(row.begin(), row.end());
        std::size_t first = 0;
        while (first < std::min(got_row.size(), expected.size()) && got_row[first] == expected[first]) ++first;
        CHECK_MESSAGE(got_row == expected, what, " row ", r, ": first difference at position ", first, " of ",
                      expected.size(), " (lengths ", got_row.size(), "/", expected.size(), ")");
    }
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
