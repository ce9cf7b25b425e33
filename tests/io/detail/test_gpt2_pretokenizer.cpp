// io/detail/gpt2_pretokenizer.hpp: GPT-2's pre-tokenizer regex
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// computed without a regex engine splits as the regex does (the whole-corpus comparison with
// transformers is tests/io/test_gpt2_tokenizer.cpp), and the contractions are lower case only.
#include <doctest/doctest.h>

#include <mmalign/io/detail/gpt2_pretokenizer.hpp>
#include <mmalign/io/detail/utf8.hpp>

#include <string>
#include <vector>

namespace {

using namespace mmalign::io::detail;

}  // namespace

TEST_CASE("gpt2_split: white space runs give their last character to the next word, as GPT-2's regex does") {
    std::vector<std::string> pieces;
    auto split = [&](const std::u32string& s) {
        pieces.clear();
        gpt2_split(s, [&](std::size_t b, std::size_t e) {
            pieces.push_back(to_utf8(std::u32string_view(s).substr(b, e - b)));
        });
        return pieces;
    };
    // Expected: Python's `regex` module, findall with the pattern above (OpenAI's encoder.py).
    CHECK(split(U"a   b") == std::vector<std::string>{"a", "  ", " b"});
    CHECK(split(U"a \tb") == std::vector<std::string>{"a", " ", "\t", "b"});
    CHECK(split(U"it's 42!!") == std::vector<std::string>{"it", "'s", " 42", "!!"});
    CHECK(split(U"end  ") == std::vector<std::string>{"end", "  "});
    CHECK(split(U" 's") == std::vector<std::string>{" '", "s"});
    CHECK(split(U"x'LL'll") == std::vector<std::string>{"x", "'", "LL", "'ll"});
    CHECK(split(U"\n\nb") == std::vector<std::string>{"\n", "\n", "b"});
    CHECK(split(U"日本 語") == std::vector<std::string>{"日本", " 語"});
}

TEST_CASE("contraction_length: the seven lower-case English contractions and nothing else") {
    CHECK(contraction_length(U"'s") == 2);
    CHECK(contraction_length(U"'tis") == 2);
    CHECK(contraction_length(U"'re") == 3);
    CHECK(contraction_length(U"'ve") == 3);
    CHECK(contraction_length(U"'ll") == 3);
    CHECK(contraction_length(U"'m") == 2);
    CHECK(contraction_length(U"'d") == 2);
    CHECK(contraction_length(U"'r") == 0);
    CHECK(contraction_length(U"'l") == 0);
    CHECK(contraction_length(U"'S") == 0);
    CHECK(contraction_length(U"s") == 0);
    CHECK(contraction_length(U"\u2019s") == 0);  // a typographic apostrophe is not one
}
