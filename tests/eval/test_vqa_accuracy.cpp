// VQA accuracy against the official VQAv2 evaluation (GT-Vision-Lab/VQA vqaEval.py) on 56
// questions of six question types and three answer types (tools/make_vqa_eval_fixtures.py).
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <string>

#include <nlohmann/json.hpp>

#include "eval/eval_fixtures.hpp"

#include "mmalign/eval/result_files.hpp"
#include "mmalign/eval/vqa_accuracy.hpp"
#include "support/errors.hpp"
#include "support/temp_dir.hpp"

namespace {

const std::string fixture_dir = mmalign::test::eval_fixture_dir("vqa_eval");

nlohmann::json load(const std::string& name) { return mmalign::test::load_eval_fixture("vqa_eval", name); }

}  // namespace

TEST_CASE("normalize_vqa_answer equals the official processPunctuation + processDigitArticle on every rule") {
    for (const auto& c : load("normalize.json"))
        CHECK_MESSAGE(mmalign::eval::normalize_vqa_answer(c.at("answer").get<std::string>()) ==
                          c.at("normalized").get<std::string>(),
                      "answer: '", c.at("answer").get<std::string>(), "'");
    CHECK(mmalign::eval::normalize_vqa_answer("Two dogs") == "2 dogs");
    CHECK(mmalign::eval::normalize_vqa_answer("dont") == "don't");
}

TEST_CASE("VQA accuracy of a results file equals the official evaluation exactly: overall, per question and answer type") {
    const nlohmann::json expected = load("accuracy.json");
    const auto s = mmalign::eval::score_vqa_files(fixture_dir + "results.json", fixture_dir + "questions.json",
                                                  fixture_dir + "annotations.json");
    const nlohmann::json got = nlohmann::json::parse(s.json());
    CHECK(got.at("overall").get<double>() == expected.at("overall").get<double>());
    CHECK(got.at("perQuestionType") == expected.at("perQuestionType"));
    CHECK(got.at("perAnswerType") == expected.at("perAnswerType"));
    CHECK(s.per_question_type.size() == 6);
}

TEST_CASE("VQA results that do not match the annotations, and malformed files, are rejected naming the file") {
    mmalign::test::TempDir dir;
    const std::string q = dir.file("q.json", R"({"questions": [{"question_id": 1, "image_id": 1, "question": "?"}]})");
    const std::string a = dir.file("a.json", R"({"annotations": [{"question_id": 1, "image_id": 1, "question_type": "what",
        "answer_type": "other", "answers": [{"answer": "dog", "answer_id": 1}]}]})");
    using mmalign::eval::score_vqa_files;
    using mmalign::test::io_error_of;
    const std::string unknown = dir.file("unknown.json", R"([{"question_id": 1, "answer": "dog"}, {"question_id": 7, "answer": "x"}])");
    CHECK(io_error_of([&] { score_vqa_files(unknown, q, a); }).find("unknown.json': entry 1: question 7 is not in") !=
          std::string::npos);
    const std::string none = dir.file("none.json", "[]");
    CHECK(io_error_of([&] { score_vqa_files(none, q, a); }).find("none.json': no result for question 1") != std::string::npos);
    const std::string bad = dir.file("bad.json", R"([{"question_id": 1, "answer": 3}])");
    CHECK(io_error_of([&] { score_vqa_files(bad, q, a); }).find("entry 0: \"answer\": expected a string") != std::string::npos);
    const std::string no_type = dir.file("notype.json", R"({"annotations": [{"question_id": 1, "answer_type": "other", "answers": []}]})");
    CHECK(io_error_of([&] { score_vqa_files(none, q, no_type); }).find("notype.json': annotations[0]: missing the field \"question_type\"") !=
          std::string::npos);
    const std::string bad_q = dir.file("badq.json", R"({"question": []})");
    CHECK(io_error_of([&] { score_vqa_files(none, bad_q, a); }).find("badq.json': missing the field \"questions\"") !=
          std::string::npos);
    REQUIRE(mkfifo((dir / "fifo.json").c_str(), 0600) == 0);
    CHECK(io_error_of([&] { score_vqa_files(dir / "fifo.json", q, a); }).find("fifo.json") != std::string::npos);
    const auto ok = score_vqa_files(dir.file("ok.json", R"([{"question_id": 1, "answer": "dog"}])"), q, a);
    CHECK(ok.overall == 0.0);  // one human answer: no *other* answer can match
}
