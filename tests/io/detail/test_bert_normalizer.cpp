// io/detail/bert_normalizer.hpp: BERT's normalizer (four flag sets) and pre-tokenizer against
// Hugging Face tokenizers' BertNormalizer and BertPreTokenizer, on every scalar value (block
// digests) and on strings (tests/fixtures/wordpiece/detail.json, tools/make_wordpiece_fixtures.py).
#include <doctest/doctest.h>

#include <mmalign/io/detail/bert_normalizer.hpp>
#include <mmalign/io/detail/utf8.hpp>

#include <fstream>
#include <string>
#include <vector>

#include "io/detail/tokenizer_detail_fixture.hpp"

namespace {

using namespace mmalign::io::detail;

const nlohmann::json& detail_fixture() {
    static const nlohmann::json j = [] {
        const std::string path = std::string(MMALIGN_FIXTURE_DIR) + "/wordpiece/detail.json";
        std::ifstream f(path);
        REQUIRE_MESSAGE(f.good(), "cannot open " << path);
        return nlohmann::json::parse(f);
    }();
    return j;
}

BertNormalizer from_flags(const nlohmann::json& f) {
    BertNormalizer n;
    n.clean_text = f.at("clean_text").get<bool>();
    n.handle_chinese_chars = f.at("handle_chinese_chars").get<bool>();
    if (!f.at("strip_accents").is_null()) n.strip_accents = f.at("strip_accents").get<bool>();
    n.lowercase = f.at("lowercase").get<bool>();
    return n;
}

std::vector<std::string> words_of(std::u32string_view s) {
    std::vector<std::string> out;
    bert_pre_tokenize(s, [&](std::u32string_view w) { out.push_back(to_utf8(w)); });
    return out;
}

}  // namespace

TEST_CASE("bert_normalizer: BERT-uncased's defaults clean, space CJK, strip accents and lowercase") {
    const BertNormalizer n;
    CHECK(n.strips_accents());
    CHECK(n.normalize(U"H\u00E9llo\tW\u00D6RLD\u00A0!") == U"hello world !");
    CHECK(n.normalize(std::u32string(U"a\0b\uFFFDc\u200Bd", 7)) == U"abcd");  // NUL, U+FFFD, format characters go
    CHECK(n.normalize(U"\u732B\u304C") == U" \u732B \u304B");  // only the ideograph is spaced; が loses its mark
    CHECK(n.normalize(U"\u0130") == U"i");  // İ: NFD's dot above goes before lowercasing could add one
    const BertNormalizer cased{.strip_accents = false, .lowercase = false};
    CHECK(cased.normalize(U"Caf\u00E9") == U"Caf\u00E9");
    CHECK(is_bert_punctuation(U'$'));   // ASCII punctuation includes the symbols
    CHECK_FALSE(is_bert_punctuation(U'\u20AC'));  // the euro sign is a symbol (Sc), not P*
    CHECK(is_bert_whitespace(U'\u0085'));
    CHECK(is_bert_dropped(U'\u0085'));  // ... but clean_text removes it first: it is a control
}

TEST_CASE("bert_normalizer: every scalar value normalizes as tokenizers' BertNormalizer does, for four flag sets") {
    const auto& j = detail_fixture();
    REQUIRE(j.at("normalizer").size() == 4);
    for (const auto& c : j.at("normalizer")) {
        const BertNormalizer n = from_flags(c.at("flags"));
        CAPTURE(c.at("flags").dump());
        const auto want = c.at("digests").get<std::vector<std::string>>();
        REQUIRE(want.size() == 17);
        for (std::size_t b = 0; b < want.size(); ++b) {
            CAPTURE(b);
            const auto first = static_cast<char32_t>(b * 0x10000);
            CHECK(mmalign::test::block_digest(first, 0x10000, [&](char32_t ch) { return n.normalize(std::u32string(1, ch)); }) ==
                  want[b]);
        }
        for (const auto& s : c.at("strings")) {
            CAPTURE(s.dump());
            CHECK(to_utf8(n.normalize(to_u32(s.at(0).get<std::string>()))) == s.at(1).get<std::string>());
        }
    }
}

TEST_CASE("bert_normalizer: the pre-tokenizer splits on white space and isolates punctuation as BertPreTokenizer does") {
    const auto& j = detail_fixture().at("pre_tokenizer");
    const auto want = j.at("digests").get<std::vector<std::string>>();
    REQUIRE(want.size() == 17);
    for (std::size_t b = 0; b < want.size(); ++b) {
        CAPTURE(b);
        const auto first = static_cast<char32_t>(b * 0x10000);
        CHECK(mmalign::test::block_digest(first, 0x10000, [](char32_t ch) {
                  std::u32string joined;
                  bool sep = false;
                  bert_pre_tokenize(std::u32string(U"a") + ch + U"b", [&](std::u32string_view w) {
                      if (sep) joined += U'|';
                      joined += w;
                      sep = true;
                  });
                  return joined;
              }) == want[b]);
    }
    for (const auto& s : j.at("strings")) {
        CAPTURE(s.dump());
        CHECK(words_of(to_u32(s.at(0).get<std::string>())) == s.at(1).get<std::vector<std::string>>());
    }
}
