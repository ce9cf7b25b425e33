// io/detail/utf8.hpp: every class of invalid UTF-8 (RFC 3629, and the Unicode Standard's Table
// 3-7 of well-formed byte sequences) is rejected at the byte where its sequence starts, valid text
// round-trips through decoding and encoding, and lossy decoding replaces maximal subparts.
#include <doctest/doctest.h>

#include <mmalign/io/detail/utf8.hpp>

#include <cstddef>
#include <string>

namespace {

using namespace mmalign::io::detail;
using mmalign::io::InvalidUtf8Error;

struct Invalid {
    std::string bytes;
    std::size_t offset;
    const char* reason;
};

}  // namespace

TEST_CASE("utf8: each class of invalid sequence is rejected at its first byte with its reason") {
    const Invalid cases[] = {
        {"\x80", 0, "unexpected continuation byte"},
        {"ab\xBF", 2, "unexpected continuation byte"},
        {"\xC0\xAF", 0, "overlong encoding"},        // C0, C1 lead only overlong 2-byte forms
        {"x\xC1\xBF", 1, "overlong encoding"},
        {"\xE0\x80\xAF", 0, "overlong encoding"},    // E0 needs A0..BF next
        {"\xF0\x8F\xBF\xBF", 0, "overlong encoding"},  // F0 needs 90..BF next
        {"ok \xED\xA0\x80", 3, "surrogate code point"},  // U+D800
        {"\xED\xBF\xBF", 0, "surrogate code point"},     // U+DFFF
        {"\xF4\x90\x80\x80", 0, "code point above U+10FFFF"},
        {"\xF5\x80\x80\x80", 0, "byte is never valid in UTF-8"},
        {"caf\xC3\xA9 \xFF", 6, "byte is never valid in UTF-8"},
        {"\xFE", 0, "byte is never valid in UTF-8"},
        {"ab\xC3", 2, "truncated sequence"},
        {"\xE2\x82", 0, "truncated sequence"},
        {"\xF0\x9F\x98", 0, "truncated sequence"},
        {"\xE2\x28\xA1", 0, "missing continuation byte"},
        {"\xC3\x41", 0, "missing continuation byte"},
        {"\xF0\x9F\x98\x41", 0, "missing continuation byte"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.offset);
        CAPTURE(c.reason);
        const auto bad = find_invalid_utf8(c.bytes);
        REQUIRE(bad.has_value());
        CHECK(bad->offset == c.offset);
        CHECK(std::string(bad->reason) == c.reason);
        try {
            validate_utf8(c.bytes, "Reader");
            FAIL("validate_utf8 accepted invalid UTF-8");
        } catch (const InvalidUtf8Error& e) {
            CHECK(e.offset() == c.offset);
            CHECK(e.reason() == c.reason);
            CHECK(std::string(e.what()) == "Reader: invalid UTF-8 at byte " + std::to_string(c.offset) + ": " + c.reason);
        }
    }
}

TEST_CASE("utf8: the boundaries of each well-formed range are accepted and decode to their code points") {
    const std::pair<std::string, char32_t> cases[] = {
        {std::string(1, '\0'), 0x0},   {"\x7F", 0x7F},          {"\xC2\x80", 0x80},          {"\xDF\xBF", 0x7FF},
        {"\xE0\xA0\x80", 0x800},       {"\xED\x9F\xBF", 0xD7FF}, {"\xEE\x80\x80", 0xE000},     {"\xEF\xBF\xBF", 0xFFFF},
        {"\xF0\x90\x80\x80", 0x10000}, {"\xF4\x8F\xBF\xBF", 0x10FFFF},
    };
    for (const auto& [bytes, cp] : cases) {
        CAPTURE(static_cast<unsigned>(cp));
        CHECK_FALSE(find_invalid_utf8(bytes).has_value());
        const char* why = nullptr;
        CHECK(utf8_length(bytes, 0, &why) == static_cast<int>(bytes.size()));
        CHECK(to_u32(bytes) == std::u32string(1, cp));
        CHECK(to_utf8(std::u32string(1, cp)) == bytes);
    }
}

TEST_CASE("utf8: every scalar value round-trips through encoding and decoding") {
    std::u32string all;
    for (char32_t c = 0; c < 0x110000; ++c)
        if (c < 0xD800 || c > 0xDFFF) all.push_back(c);
    const std::string bytes = to_utf8(all);
    // 128 one-byte, 1,920 two-byte, 61,440 three-byte (the 2,048 surrogates excluded) and 1,048,576
    // four-byte scalar values.
    CHECK(bytes.size() == 128u + 2u * 1920u + 3u * 61440u + 4u * 1048576u);
    CHECK_FALSE(find_invalid_utf8(bytes).has_value());
    CHECK(to_u32(bytes) == all);
}

TEST_CASE("utf8: lossy decoding replaces each maximal invalid subpart with one U+FFFD") {
    const std::string r = "\xEF\xBF\xBD";
    CHECK(utf8_lossy("plain caf\xC3\xA9") == "plain caf\xC3\xA9");
    CHECK(utf8_lossy("\x80\x80") == r + r);                  // two lone continuation bytes
    CHECK(utf8_lossy("\xE2\x82z") == r + "z");               // a truncated 3-byte prefix is one subpart
    CHECK(utf8_lossy("\xF0\x9F\x98") == r);                  // truncated at the end
    CHECK(utf8_lossy("\xED\xA0\x80") == r + r + r);          // a surrogate's bytes are three subparts
    CHECK(utf8_lossy("\xC0\xAF") == r + r);                  // C0 is never a lead byte
    CHECK(utf8_lossy("a\xF4\x90\x80\x80" "b") == "a" + r + r + r + r + "b");
    CHECK_FALSE(find_invalid_utf8(utf8_lossy("\xFF\xFE\xE2\x28\xA1")).has_value());
}
