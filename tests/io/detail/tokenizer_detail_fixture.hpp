// Reads tests/fixtures/tokenizer_detail/ (written by tools/make_tokenizer_detail_fixtures.py from
// Hugging Face tokenizers) for the tests of include/mmalign/io/detail/.
#pragma once

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>
#include <string>
#include <string_view>

#include <mmalign/io/detail/utf8.hpp>

namespace mmalign::test {

inline nlohmann::json tokenizer_detail_fixture(const std::string& name) {
    const std::string path = std::string(MMALIGN_FIXTURE_DIR) + "/tokenizer_detail/" + name;
    std::ifstream f(path);
    REQUIRE_MESSAGE(f.good(), "cannot open " << path);
    return nlohmann::json::parse(f);
}

/// FNV-1a 64 over the UTF-8 of f(c) followed by one 0xFF byte, for every scalar value c in
/// [first, first + count), in order: the digest tools/make_tokenizer_detail_fixtures.py writes.
template <class F>
std::string block_digest(char32_t first, char32_t count, F f) {
    std::uint64_t h = 0xCBF29CE484222325ull;
    auto eat = [&](unsigned char b) { h = (h ^ b) * 0x100000001B3ull; };
    for (char32_t c = first; c < first + count; ++c) {
        if (c >= 0xD800 && c < 0xE000) continue;
        for (char b : io::detail::to_utf8(f(c))) eat(static_cast<unsigned char>(b));
        eat(0xFF);
    }
    char hex[17];
    static constexpr char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; ++i) hex[i] = digits[(h >> (60 - 4 * i)) & 0xF];
    hex[16] = 0;
    return hex;
}

}  // namespace mmalign::test
