// ptb_tokenize against pycocoevalcap's PTBTokenizer (Stanford CoreNLP's Java tokenizer plus its
// punctuation removal) on every caption of the caption-metric fixtures
// (tools/make_caption_metric_fixtures.py).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/eval_fixtures.hpp"

#include "mmalign/eval/ptb_tokenizer.hpp"

namespace {

nlohmann::json load(const std::string& name) { return mmalign::test::load_eval_fixture("caption_metrics", name); }

}  // namespace

TEST_CASE("ptb_tokenize gives the tokens of pycocoevalcap's Java PTB tokenization on every fixture caption") {
    const nlohmann::json cases = load("tokens.json");
    REQUIRE(cases.size() > 100);
    std::size_t mismatches = 0;
    for (const auto& c : cases) {
        const std::string text = c.at("text").get<std::string>();
        const auto expected = c.at("tokens").get<std::vector<std::string>>();
        const auto got = mmalign::eval::ptb_tokenize(text);
        if (got != expected) ++mismatches;
        CHECK_MESSAGE(got == expected, "caption: '", text, "'");
    }
    CHECK(mismatches == 0);
}

TEST_CASE("ptb_tokenize splits clitics, escapes brackets in lower case and drops the listed punctuation") {
    using mmalign::eval::ptb_tokenize;
    CHECK(ptb_tokenize("Don't (go)!") == std::vector<std::string>{"do", "n't", "-lrb-", "go", "-rrb-"});
    CHECK(ptb_tokenize("it's 3,000.50 ft. long").size() == 5);
    CHECK(ptb_tokenize("...  -- ,").empty());
    CHECK(ptb_tokenize("").empty());
}
