// io/detail/wordpiece.hpp: the WordPiece model, its decoder and transformers' clean-up against
// Hugging Face (tokenizers' models.WordPiece and decoders.WordPiece, transformers'
// clean_up_tokenization; tests/fixtures/wordpiece/detail.json, tools/make_wordpiece_fixtures.py).
#include <doctest/doctest.h>

#include <mmalign/io/detail/utf8.hpp>
#include <mmalign/io/detail/wordpiece.hpp>

#include <nlohmann/json.hpp>

#include <fstream>
#include <string>
#include <vector>

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

}  // namespace

TEST_CASE("wordpiece: words split into the longest pieces, or become [UNK] whole, as tokenizers' WordPiece does") {
    const auto& j = detail_fixture().at("wordpiece");
    WordPieceModel m({.unk_token = "[UNK]", .continuing_subword_prefix = "##",
                      .max_input_chars_per_word = j.at("max_input_chars_per_word").get<std::size_t>()});
    const auto vocab = j.at("vocab").get<std::vector<std::string>>();
    for (std::size_t i = 0; i < vocab.size(); ++i) REQUIRE(m.add(vocab[i], static_cast<std::int32_t>(i)));
    CHECK(m.size() == vocab.size());
    CHECK(m.unk_id() == 0);
    CHECK_FALSE(m.add("un", 99));     // a token twice
    CHECK_FALSE(m.add("other", 1));   // an id twice
    REQUIRE(j.at("words").size() >= 15);
    for (const auto& w : j.at("words")) {
        CAPTURE(w.dump());
        std::vector<std::int32_t> ids;
        m.encode_word(to_u32(w.at(0).get<std::string>()), ids);
        std::vector<std::string> tokens;
        for (auto id : ids) tokens.push_back(*m.token_of(id));
        CHECK(tokens == w.at(1).get<std::vector<std::string>>());
    }
    WordPieceModel no_unk;
    REQUIRE(no_unk.add("a", 0));
    std::vector<std::int32_t> ids;
    CHECK_THROWS_AS(no_unk.encode_word(U"b", ids), mmalign::ArgumentError);  // tokenizers: MissingUnkToken
}

TEST_CASE("wordpiece: the decoder glues prefixed pieces and cleans each token as tokenizers' WordPiece decoder does") {
    const auto& cases = detail_fixture().at("decoder");
    REQUIRE(cases.size() == 4);
    for (const auto& c : cases) {
        const std::string prefix = c.at("prefix").get<std::string>();
        const bool cleanup = c.at("cleanup").get<bool>();
        for (const auto& t : c.at("cases")) {
            CAPTURE(prefix);
            CAPTURE(cleanup);
            CAPTURE(t.dump());
            const auto tokens = t.at(0).get<std::vector<std::string>>();
            std::vector<std::string_view> views(tokens.begin(), tokens.end());
            CHECK(wordpiece_decode(views, prefix, cleanup) == t.at(1).get<std::string>());
        }
    }
}

TEST_CASE("wordpiece: clean_up_tokenization replaces as transformers' does, without the decoder's \" do not\" rule") {
    for (const auto& t : detail_fixture().at("clean_up_tokenization")) {
        CAPTURE(t.dump());
        CHECK(clean_up_tokenization(t.at(0).get<std::string>()) == t.at(1).get<std::string>());
    }
    CHECK(decoder_cleanup(" do not") == " don't");
    CHECK(clean_up_tokenization(" do not") == " do not");
    CHECK(replace_all("aaa", "aa", "b") == "ba");  // left to right, no overlaps (str.replace)
}
