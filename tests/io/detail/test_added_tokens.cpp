// io/detail/added_tokens.hpp: the split at added tokens keeps the longest of the leftmost matches,
// honours single_word, lstrip and rstrip, and with a second pass over normalized text reproduces
// Hugging Face tokenizers' AddedVocabulary piece for piece (tests/fixtures/tokenizer_detail).
#include <doctest/doctest.h>

#include <mmalign/io/detail/added_tokens.hpp>
#include <mmalign/io/detail/unicode_properties.hpp>
#include <mmalign/io/detail/utf8.hpp>

#include <string>
#include <tuple>
#include <vector>

#include "io/detail/tokenizer_detail_fixture.hpp"

namespace {

using namespace mmalign::io::detail;
using Piece = std::tuple<std::size_t, std::size_t, int>;  // [begin, end), token index or -1

AddedToken token(std::string content, std::int32_t id) {
    AddedToken t;
    t.content = std::move(content);
    t.id = id;
    return t;
}

AddedTokenMatcher matcher(const std::vector<AddedToken>& tokens) {
    std::vector<std::u32string> patterns;
    for (const auto& t : tokens) patterns.push_back(to_u32(t.content));
    return AddedTokenMatcher(tokens, patterns);
}

std::vector<Piece> pieces(const AddedTokenMatcher& m, std::u32string_view text) {
    std::vector<Piece> out;
    for (const auto& p : m.split(text)) out.emplace_back(p.begin, p.end, p.token ? p.token->id : -1);
    return out;
}

}  // namespace

TEST_CASE("added_tokens: the leftmost match wins, and of the matches there the longest") {
    const auto m = matcher({token("ab", 0), token("abc", 1), token("bcd", 2)});
    CHECK(pieces(m, U"xabcd") == std::vector<Piece>{{0, 1, -1}, {1, 4, 1}, {4, 5, -1}});
    CHECK(pieces(m, U"bcdab") == std::vector<Piece>{{0, 3, 2}, {3, 5, 0}});
    CHECK(pieces(m, U"plain") == std::vector<Piece>{{0, 5, -1}});
    CHECK(pieces(m, U"").empty());
    CHECK(pieces(AddedTokenMatcher(), U"abc") == std::vector<Piece>{{0, 3, -1}});
}

TEST_CASE("added_tokens: single_word rejects a match next to a word character and does not retry inside it") {
    AddedToken mask = token("<m>", 0);
    mask.single_word = true;
    const auto m = matcher({mask});
    CHECK(pieces(m, U"<m> a<m> <m>b (<m>)") ==
          std::vector<Piece>{{0, 3, 0}, {3, 15, -1}, {15, 18, 0}, {18, 19, -1}});
    AddedToken abc = token("abc", 0);
    abc.single_word = true;
    // "abc" at 1 is rejected (x before it); the search resumes after it, so "bc" at 2 is not tried.
    CHECK(pieces(matcher({abc, token("bc", 1)}), U"xabc bc") == std::vector<Piece>{{0, 5, -1}, {5, 7, 1}});
}

TEST_CASE("added_tokens: lstrip and rstrip take in white space, lstrip never into an earlier match") {
    AddedToken a = token("A", 0), b = token("B", 1);
    a.rstrip = true;
    b.lstrip = true;
    const auto m = matcher({a, b});
    CHECK(pieces(m, U"x  A \t B  B") == std::vector<Piece>{{0, 3, -1}, {3, 7, 0}, {7, 8, 1}, {8, 11, 1}});
    CHECK(pieces(m, U"A\u3000") == std::vector<Piece>{{0, 2, 0}});  // ideographic space is white space
}

TEST_CASE("added_tokens: raw and normalized passes reproduce tokenizers' AddedVocabulary splits") {
    const auto fx = mmalign::test::tokenizer_detail_fixture("added_tokens.json");
    for (const auto& c : fx.at("cases")) {
        const std::u32string text = to_u32(c.at("text").get<std::string>());
        const bool lowercase = c.at("lowercase").get<bool>();
        CAPTURE(c.at("text").get<std::string>());
        std::vector<AddedToken> raw, normalized;
        std::vector<std::u32string> raw_patterns, normalized_patterns;
        std::int32_t index = 0;
        for (const auto& t : c.at("tokens")) {
            AddedToken a = token(t.at("content").get<std::string>(), index++);
            a.single_word = t.value("single_word", false);
            a.lstrip = t.value("lstrip", false);
            a.rstrip = t.value("rstrip", false);
            a.normalized = t.value("normalized", false);
            const std::u32string content = to_u32(a.content);
            // A normalized token is matched against its content normalized like the text.
            (a.normalized ? normalized_patterns : raw_patterns).push_back(a.normalized && lowercase ? to_lower(content) : content);
            (a.normalized ? normalized : raw).push_back(a);
        }
        const AddedTokenMatcher first(raw, raw_patterns), second(normalized, normalized_patterns);
        std::vector<Piece> got;
        for (const auto& p : first.split(text)) {
            if (p.token) {
                got.emplace_back(p.begin, p.end, p.token->id);
                continue;
            }
            // The fixture's texts keep their length when lowercased, so offsets carry over.
            const std::u32string piece = text.substr(p.begin, p.end - p.begin);
            const std::u32string norm = lowercase ? to_lower(piece) : piece;
            REQUIRE(norm.size() == piece.size());
            for (const auto& q : second.split(norm))
                got.emplace_back(p.begin + q.begin, p.begin + q.end, q.token ? q.token->id : -1);
        }
        std::vector<Piece> want;
        for (const auto& p : c.at("pieces")) want.emplace_back(p.at(0).get<std::size_t>(), p.at(1).get<std::size_t>(), p.at(2).get<int>());
        CHECK(got == want);
    }
}
