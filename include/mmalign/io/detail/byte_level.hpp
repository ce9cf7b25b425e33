// mmalign/io/detail/byte_level.hpp — GPT-2's reversible map from bytes to printable characters
// (bytes_to_unicode() in OpenAI's gpt-2 encoder.py and CLIP's simple_tokenizer.py; tokenizers'
// ByteLevel pre-tokenizer and decoder), shared by every byte-level BPE tokenizer (CLIP, GPT-2,
// OPT, RoBERTa).
//
// A byte-level BPE works on text whose every byte is one visible character, so that its
// vocabulary needs no whitespace or control characters: the printable bytes 33–126, 161–172 and
// 174–255 stand for themselves, the other 68 (space, controls, DEL, NBSP, soft hyphen) for
// U+0100 + n in increasing byte order (space → U+0120 'Ġ').
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mmalign/io/detail/utf8.hpp"

namespace mmalign::io::detail {

/// Whether byte b stands for itself in the byte-level alphabet.
constexpr bool byte_is_printable(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255); }

/// The character that byte b stands for.
inline const std::array<char32_t, 256>& byte_to_char() {
    static const std::array<char32_t, 256> table = [] {
        std::array<char32_t, 256> t{};
        char32_t n = 0;
        for (int b = 0; b < 256; ++b) t[static_cast<std::size_t>(b)] = byte_is_printable(b) ? static_cast<char32_t>(b) : 0x100 + n++;
        return t;
    }();
    return table;
}

/// The byte that character c stands for, or -1 when c is not in the byte-level alphabet.
inline int char_to_byte(char32_t c) {
    // The alphabet is U+0021..U+00FF (printable bytes, themselves) and U+0100..U+0143.
    static const std::array<std::int16_t, 0x144> table = [] {
        std::array<std::int16_t, 0x144> t;
        t.fill(-1);
        for (int b = 0; b < 256; ++b) t[byte_to_char()[static_cast<std::size_t>(b)]] = static_cast<std::int16_t>(b);
        return t;
    }();
    return c < table.size() ? table[c] : -1;
}

/// The 256 bytes in the order of bytes_to_unicode()'s table (printable ranges first, then the
/// rest): the order of the first 256 entries of OpenAI's CLIP vocabulary.
inline std::vector<int> bytes_in_table_order() {
    std::vector<int> order;
    for (int b = 0; b < 256; ++b)
        if (byte_is_printable(b)) order.push_back(b);
    for (int b = 0; b < 256; ++b)
        if (!byte_is_printable(b)) order.push_back(b);
    return order;
}

/// Each byte of `bytes` as its byte-level character, UTF-8 encoded ("a b" → "aĠb").
inline std::string byte_level_encode(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size() * 2);
    for (char ch : bytes) append_utf8(out, byte_to_char()[static_cast<unsigned char>(ch)]);
    return out;
}

/// Appends the bytes a byte-level token stands for and returns true, when every character of
/// `token` (valid UTF-8) is in the alphabet; otherwise appends nothing and returns false: an
/// added token with a character outside it ("<mask> " has a space, "日本" code points above
/// U+0143) is its own text, which tokenizers' ByteLevel decoder keeps as it is.
inline bool byte_level_decode(std::string_view token, std::string& out) {
    const std::size_t start = out.size();
    for (std::size_t i = 0; i < token.size();) {
        const char* why = nullptr;
        const int n = utf8_length(token, i, &why);
        const int b = n > 0 ? char_to_byte(utf8_value(token, i, n)) : -1;
        if (b < 0) {
            out.resize(start);
            return false;
        }
        out.push_back(static_cast<char>(b));
        i += static_cast<std::size_t>(n);
    }
    return true;
}

}  // namespace mmalign::io::detail
