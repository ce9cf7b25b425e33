// io/detail/byte_level.hpp: GPT-2's bytes_to_unicode() is a bijection from the 256 bytes onto 256
// printable characters, keeps the printable bytes and moves the others to U+0100 + n in order,
// and byte-level encoding round-trips through decoding.
#include <doctest/doctest.h>

#include <mmalign/io/detail/byte_level.hpp>

#include <set>
#include <string>

namespace {

using namespace mmalign::io::detail;

}  // namespace

TEST_CASE("byte_level: bytes_to_unicode is a bijection onto 256 characters, inverted by char_to_byte") {
    std::set<char32_t> seen;
    for (int b = 0; b < 256; ++b) {
        const char32_t c = byte_to_char()[static_cast<std::size_t>(b)];
        seen.insert(c);
        CHECK(char_to_byte(c) == b);
    }
    CHECK(seen.size() == 256);
    CHECK(char_to_byte(U' ') == -1);  // the space byte is Ġ, so ' ' itself is not in the alphabet
    CHECK(char_to_byte(U'\u0144') == -1);
    CHECK(char_to_byte(U'\u65E5') == -1);
}

TEST_CASE("byte_level: printable bytes map to themselves, the 68 others to U+0100 onwards in byte order") {
    for (int b = 0; b < 256; ++b) {
        CAPTURE(b);
        const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        if (printable) CHECK(byte_to_char()[static_cast<std::size_t>(b)] == static_cast<char32_t>(b));
        else CHECK(byte_to_char()[static_cast<std::size_t>(b)] >= 0x100);
    }
    // The well-known members of GPT-2's table: NUL Ā, space Ġ, newline Ċ, DEL ġ, NBSP ł, soft hyphen Ń.
    CHECK(byte_to_char()[0x00] == U'\u0100');
    CHECK(byte_to_char()[0x20] == U'\u0120');
    CHECK(byte_to_char()['\n'] == U'\u010A');
    CHECK(byte_to_char()[0x7F] == U'\u0121');
    CHECK(byte_to_char()[0xA0] == U'\u0142');
    CHECK(byte_to_char()[0xAD] == U'\u0143');
    const auto order = bytes_in_table_order();
    REQUIRE(order.size() == 256);
    CHECK(order.front() == '!');
    CHECK(order[93] == '~');     // 94 printable ASCII bytes first,
    CHECK(order[94] == 0xA1);    // then 0xA1..0xAC and 0xAE..0xFF,
    CHECK(order[188] == 0x00);   // then the 68 others from byte 0
    CHECK(order.back() == 0xAD);
    CHECK(std::set<int>(order.begin(), order.end()).size() == 256);
}

TEST_CASE("byte_level: encoding any bytes and decoding the result gives the bytes back") {
    CHECK(byte_level_encode("a b\n") == "a\xC4\xA0" "b\xC4\x8A");  // aĠbĊ
    CHECK(byte_level_encode("caf\xC3\xA9") == "caf\xC3\x83\xC2\xA9");  // each byte of é on its own: Ã©
    std::string all;
    for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
    std::string back;
    CHECK(byte_level_decode(byte_level_encode(all), back));
    CHECK(back == all);
    std::string out = "x";
    CHECK_FALSE(byte_level_decode("a b", out));                // ' ' is not a byte-level character
    CHECK_FALSE(byte_level_decode("\xE6\x97\xA5", out));       // nor is 日
    CHECK(out == "x");                                         // nothing appended on failure
}
