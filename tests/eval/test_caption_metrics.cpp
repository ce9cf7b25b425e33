// BLEU-1..4, ROUGE-L and CIDEr-D against pycocoevalcap on a 40-image corpus with tricky captions
// (tools/make_caption_metric_fixtures.py), corpus and per-image, from both annotation formats.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include <nlohmann/json.hpp>

#include "eval/eval_fixtures.hpp"

#include "mmalign/eval/caption_metrics.hpp"
#include "mmalign/eval/result_files.hpp"
#include "support/errors.hpp"
#include "support/temp_dir.hpp"

namespace {

const std::string fixture_dir = mmalign::test::eval_fixture_dir("caption_metrics");
constexpr double tolerance = 1e-6;

nlohmann::json load(const std::string& name) { return mmalign::test::load_eval_fixture("caption_metrics", name); }

double max_difference(const mmalign::eval::CaptionScores& got, const nlohmann::json& expected) {
    const nlohmann::json g = got.to_json();
    double worst = 0;
    for (const char* key : {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"})
        worst = std::max(worst, std::abs(g.at(key).get<double>() - expected.at(key).get<double>()));
    return worst;
}

}  // namespace

TEST_CASE("caption scores of COCO-format files equal pycocoevalcap's, corpus and per image, within 1e-6") {
    const nlohmann::json scores = load("scores.json");
    const auto eval = mmalign::eval::evaluate_caption_files(fixture_dir + "results.json", fixture_dir + "annotations.json");
    const double corpus = max_difference(eval.overall, scores.at("overall"));
    MESSAGE("largest corpus difference: ", corpus);
    CHECK(corpus <= tolerance);
    REQUIRE(eval.per_image.size() == scores.at("per_image").size());
    double worst = 0;
    for (const auto& [id, s] : eval.per_image) worst = std::max(worst, max_difference(s, scores.at("per_image").at(id)));
    MESSAGE("largest per-image difference: ", worst);
    CHECK(worst <= tolerance);
    CHECK(eval.overall.cider > 0.5);  // the corpus is far from trivial: a broken scorer would show
}

TEST_CASE("caption scores against a coco_karpathy annotation list equal those of the COCO-format file") {
    const nlohmann::json scores = load("scores.json");
    const auto s = mmalign::eval::score_caption_files(fixture_dir + "results.json", fixture_dir + "karpathy.json");
    CHECK(max_difference(s, scores.at("overall")) <= tolerance);
    const nlohmann::json j = nlohmann::json::parse(s.json());
    CHECK(j.size() == 6);
    CHECK(j.contains("Bleu_4"));
    CHECK(j.contains("CIDEr"));
}

TEST_CASE("a caption results file that does not match the annotations is rejected naming the file and the image") {
    mmalign::test::TempDir dir;
    const std::string ann = dir.file("ann.json", R"({"annotations": [{"image_id": 1, "caption": "a dog"},
                                                    {"image_id": 2, "caption": "a cat"}]})");
    using mmalign::eval::score_caption_files;
    using mmalign::test::io_error_of;
    const std::string missing = dir.file("missing.json", R"([{"image_id": 1, "caption": "a dog"}])");
    CHECK(io_error_of([&] { score_caption_files(missing, ann); }).find("missing.json': no result for image 2") != std::string::npos);
    const std::string extra = dir.file("extra.json", R"([{"image_id": 1, "caption": "x"}, {"image_id": 2, "caption": "y"},
                                                        {"image_id": 3, "caption": "z"}])");
    CHECK(io_error_of([&] { score_caption_files(extra, ann); }).find("image 3") != std::string::npos);
    const std::string twice = dir.file("twice.json", R"([{"image_id": 1, "caption": "x"}, {"image_id": 1, "caption": "y"},
                                                        {"image_id": 2, "caption": "z"}])");
    CHECK(io_error_of([&] { score_caption_files(twice, ann); }).find("2 results for image 1") != std::string::npos);
    const std::string no_caption = dir.file("nocap.json", R"([{"image_id": 1}, {"image_id": 2, "caption": "z"}])");
    CHECK(io_error_of([&] { score_caption_files(no_caption, ann); }).find("nocap.json': entry 0: missing the field \"caption\"") !=
          std::string::npos);
    const std::string bad_id = dir.file("badid.json", R"([{"image_id": 1.5, "caption": "x"}])");
    CHECK(io_error_of([&] { score_caption_files(bad_id, ann); }).find("\"image_id\": expected an integer or a string") !=
          std::string::npos);
    const std::string bad_ann = dir.file("badann.json", R"({"annotations": [{"image_id": 1, "caption": 5}]})");
    CHECK(io_error_of([&] { score_caption_files(missing, bad_ann); }).find("badann.json': annotations[0]: \"caption\"") !=
          std::string::npos);
    CHECK(io_error_of([&] { score_caption_files(dir.path.string(), ann); }).find(dir.path.string()) != std::string::npos);
}
