// io/detail/unicode_normalization.hpp: NFD, NFC and accent stripping on the Unicode Standard's
// known pairs, and on every scalar value and on combining sequences against Hugging Face
// tokenizers' own NFD, NFC and BertNormalizer(strip_accents) (tests/fixtures/tokenizer_detail).
#include <doctest/doctest.h>

#include <mmalign/io/detail/unicode_normalization.hpp>
#include <mmalign/io/detail/utf8.hpp>

#include <string>

#include "io/detail/tokenizer_detail_fixture.hpp"

namespace {

using namespace mmalign::io::detail;

std::string u8(std::u32string_view s) { return to_utf8(s); }

}  // namespace

TEST_CASE("unicode_normalization: known canonical pairs decompose and compose as UAX #15 defines") {
    struct Pair {
        std::u32string composed, decomposed;
    };
    const Pair pairs[] = {
        {U"\u00E9", U"e\u0301"},                    // é
        {U"\u00C5", U"A\u030A"},                    // Å
        {U"\u1EAD", U"a\u0323\u0302"},              // ậ: dot below (220) before circumflex (230)
        {U"\u1E69", U"s\u0323\u0307"},              // ṩ
        {U"\uD55C", U"\u1112\u1161\u11AB"},         // 한, an LVT Hangul syllable
        {U"\uAC00", U"\u1100\u1161"},               // 가, an LV syllable
        {U"\u01D5", U"U\u0308\u0304"},              // Ǖ: two steps of decomposition
    };
    for (const auto& p : pairs) {
        CAPTURE(u8(p.composed));
        CHECK(nfd(p.composed) == p.decomposed);
        CHECK(nfc(p.decomposed) == p.composed);
        CHECK(nfc(p.composed) == p.composed);
        CHECK(nfd(p.decomposed) == p.decomposed);
    }
    CHECK(nfd(U"a\u0302\u0323") == U"a\u0323\u0302");  // canonical reordering by combining class
    CHECK(nfc(U"a\u0302\u0323") == U"\u1EAD");
    CHECK(nfc(U"\u212B") == U"\u00C5");                // ANGSTROM SIGN: a singleton, never recomposed
    CHECK(nfd(U"\u212B") == U"A\u030A");
    CHECK(nfc(U"\u0958") == U"\u0915\u093C");          // DEVANAGARI QA: a composition exclusion
    CHECK(nfc(U"e\u0301\u0301") == U"\u00E9\u0301");   // é and a second acute have no composite
    CHECK(combining_class(U'\u0301') == 230);
    CHECK(combining_class(U'\u0323') == 220);
    CHECK(combining_class(U'a') == 0);
}

TEST_CASE("unicode_normalization: accent stripping removes nonspacing marks after NFD") {
    CHECK(strip_accents(U"caf\u00E9 na\u00EFve \u00C5ngstr\u00F6m") == U"cafe naive Angstrom");
    CHECK(strip_accents(U"\u1EAD") == U"a");
    CHECK(strip_accents(U"\uD55C") == U"\u1112\u1161\u11AB");  // Hangul jamo are letters, not marks
    CHECK(is_nonspacing_mark(U'\u0301'));
    CHECK_FALSE(is_nonspacing_mark(U'e'));
    CHECK_FALSE(is_nonspacing_mark(U'\u0903'));  // DEVANAGARI SIGN VISARGA is a spacing mark (Mc)
}

TEST_CASE("unicode_normalization: NFD, NFC and accent stripping of every scalar value equal tokenizers'") {
    const auto fx = mmalign::test::tokenizer_detail_fixture("unicode.json");
    const auto block = fx.at("meta").at("block").get<char32_t>();
    const auto& digests = fx.at("digests");
    auto single = [](auto f) { return [f](char32_t c) { return f(std::u32string(1, c)); }; };
    for (char32_t first = 0, k = 0; first < 0x110000; first += block, ++k) {
        CAPTURE(static_cast<unsigned>(first));
        CHECK(mmalign::test::block_digest(first, block, single([](const std::u32string& s) { return nfd(s); })) ==
              digests.at("nfd").at(k).get<std::string>());
        CHECK(mmalign::test::block_digest(first, block, single([](const std::u32string& s) { return nfc(s); })) ==
              digests.at("nfc").at(k).get<std::string>());
        CHECK(mmalign::test::block_digest(first, block, single([](const std::u32string& s) { return strip_accents(s); })) ==
              digests.at("strip_accents").at(k).get<std::string>());
    }
}

TEST_CASE("unicode_normalization: combining sequences reorder and compose as tokenizers does") {
    const auto fx = mmalign::test::tokenizer_detail_fixture("unicode.json");
    for (const auto& seq : fx.at("sequences")) {
        const std::u32string text = to_u32(seq.at("text").get<std::string>());
        CAPTURE(seq.at("text").get<std::string>());
        CHECK(u8(nfd(text)) == seq.at("nfd").get<std::string>());
        CHECK(u8(nfc(text)) == seq.at("nfc").get<std::string>());
        CHECK(u8(strip_accents(text)) == seq.at("strip_accents").get<std::string>());
    }
}
