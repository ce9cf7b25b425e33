// io/detail/unicode_properties.hpp: the letter / number / white-space classes and per-character
// lowercasing, on known characters and (lowercasing) on every scalar value against Hugging Face
// tokenizers' Lowercase normalizer (tests/fixtures/tokenizer_detail).
#include <doctest/doctest.h>

#include <mmalign/io/detail/unicode_properties.hpp>
#include <mmalign/io/detail/utf8.hpp>

#include <string>

#include "io/detail/tokenizer_detail_fixture.hpp"

namespace {

using namespace mmalign::io::detail;

}  // namespace

TEST_CASE("unicode_properties: letters, numbers and white space are classified as the regexes see them") {
    for (char32_t c : {U'a', U'Z', U'\u00E9', U'\u03A9', U'\u0416', U'\u05D0', U'\u65E5', U'\uAC00'})
        CHECK(char_class(c) == CharClass::letter);
    for (char32_t c : {U'0', U'9', U'\u0663', U'\u00B2', U'\u2167'})  // Arabic-Indic 3, superscript 2, Roman VIII
        CHECK(char_class(c) == CharClass::number);
    for (char32_t c : {U' ', U'!', U'_', U'\u0301', U'\u3002', U'\U0001F600'})
        CHECK(char_class(c) == CharClass::other);
    for (char32_t c : {U' ', U'\t', U'\n', U'\r', U'\v', U'\f', U'\u00A0', U'\u1680', U'\u2000', U'\u2028', U'\u3000'})
        CHECK(is_space(c));
    for (char32_t c : {U'a', U'\u200B', U'\uFEFF', U'\u180E'}) CHECK_FALSE(is_space(c));
}

TEST_CASE("unicode_properties: lowercasing maps each character on its own, as Rust's to_lowercase") {
    CHECK(to_lower(U"HeLLo \u00C9\u00C5") == U"hello \u00E9\u00E5");
    CHECK(to_lower(U"\u03A3\u039F\u03A3") == U"\u03C3\u03BF\u03C3");  // no final-sigma rule
    CHECK(to_lower(U"\u0130") == U"i\u0307");                         // İ becomes two characters
    CHECK(to_lower(U"\u212A") == U"k");                               // KELVIN SIGN
}

TEST_CASE("unicode_properties: lowercasing of every scalar value equals tokenizers' Lowercase") {
    const auto fx = mmalign::test::tokenizer_detail_fixture("unicode.json");
    const auto block = fx.at("meta").at("block").get<char32_t>();
    for (char32_t first = 0, k = 0; first < 0x110000; first += block, ++k) {
        CAPTURE(static_cast<unsigned>(first));
        CHECK(mmalign::test::block_digest(first, block, [](char32_t c) { return to_lower(std::u32string(1, c)); }) ==
              fx.at("digests").at("lowercase").at(k).get<std::string>());
    }
    for (const auto& seq : fx.at("sequences"))
        CHECK(to_utf8(to_lower(to_u32(seq.at("text").get<std::string>()))) == seq.at("lowercase").get<std::string>());
}
