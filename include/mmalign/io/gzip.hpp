// mmalign/io/gzip.hpp — bounded gzip (RFC 1952) and zlib (RFC 1950) decompression through zlib.
//
// Used for OpenAI's `bpe_simple_vocab_16e6.txt.gz` (as shipped by openai/CLIP and open_clip) and
// the gzipped IDX files of (Fashion-)MNIST. The inflating is zlib's (Debian zlib1g-dev), the
// library behind Python's gzip module and gzip(1): the most exercised DEFLATE decoder there is,
// maintained and fuzzed upstream (OSS-Fuzz), so a hostile stream meets well-tested code.
// What this header adds are the bounds and the words:
//
//  * output is capped while inflating (`max_output`): a small file that inflates to gigabytes
//    (a "gzip bomb") is refused once the cap is passed, having held at most the cap in memory;
//  * each member's CRC-32 and length (ISIZE) trailer is verified (by zlib), as is a header CRC;
//  * a stream that stops before its trailer is "truncated", bytes after the last member that
//    are neither another member nor zero padding are "trailing garbage";
//  * a file of several members decompresses to their concatenation, as `gzip -d` and Python's
//    gzip module do (RFC 1952 §2.2); zero bytes after a member are skipped, as Python does.
//
// Every refusal is one IoError line, "<name>: <reason>", naming the file and, for corrupt data,
// the compressed byte offset.
//
//   std::string text = gunzip(bytes, "vocab.txt.gz", cap);     whole output, at most cap bytes
//   GzipReader r(bytes, "x.gz"); r.read(buf, n);                streaming: the caller bounds it
#pragma once

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "mmalign/core/error.hpp"
#include "mmalign/io/input_file.hpp"

namespace mmalign::io {

namespace detail::gzip {

/// CRC-32 of ISO 3309 / ITU-T V.42 (gzip's and PNG's), continued from `crc`.
inline std::uint32_t crc32(const char* p, std::size_t n, std::uint32_t crc = 0) {
    return static_cast<std::uint32_t>(::crc32_z(crc, reinterpret_cast<const Bytef*>(p), n));
}

/// `name` with control characters escaped, so that a message stays one line.
inline std::string shown_name(std::string_view name) { return escape_control(name); }

}  // namespace detail::gzip

/// True when `data` begins with the gzip magic bytes 1f 8b.
inline bool is_gzip(std::string_view data) {
    return data.size() >= 2 && static_cast<unsigned char>(data[0]) == 0x1F && static_cast<unsigned char>(data[1]) == 0x8B;
}

/// Decompresses gzip (every member) or zlib data held in memory, a piece at a time, so that the
/// caller decides how much output to accept (gunzip() caps the whole; io/idx.hpp reads the header
/// first and then exactly the bytes it promises). Not copyable or movable: zlib's state points
/// into itself.
class GzipReader {
public:
    enum class Format { gzip, zlib };

    GzipReader(std::string_view data, std::string name, Format format = Format::gzip)
        : in_(data), name_(detail::gzip::shown_name(name)), format_(format) {
        if (format_ == Format::gzip && !is_gzip(in_))
            fail(in_.empty() ? "no gzip data (empty input)" : "not gzip data (the magic bytes 1f 8b are missing)");
        // 16 + MAX_WBITS: gzip wrapper only (header, CRC-32 and ISIZE checked); MAX_WBITS: zlib (Adler-32).
        if (::inflateInit2(&z_, format_ == Format::gzip ? 16 + MAX_WBITS : MAX_WBITS) != Z_OK)
            fail("cannot initialise zlib (out of memory)");
        live_ = true;
    }
    GzipReader(const GzipReader&) = delete;
    GzipReader& operator=(const GzipReader&) = delete;
    ~GzipReader() {
        if (live_) ::inflateEnd(&z_);
    }

    /// Up to n decompressed bytes into dst; fewer only at the end of the data, 0 once everything
    /// has been read and every trailer verified. Throws IoError on corrupt, truncated or trailing data.
    std::size_t read(char* dst, std::size_t n) {
        std::size_t got = 0;
        while (got < n && !done_) {
            if (z_.avail_in == 0 && pos_ < in_.size()) feed();
            const std::size_t room = std::min<std::size_t>(n - got, UINT_MAX);
            z_.next_out = reinterpret_cast<Bytef*>(dst + got);
            z_.avail_out = static_cast<uInt>(room);
            const int r = ::inflate(&z_, Z_NO_FLUSH);
            const std::size_t made = room - z_.avail_out;
            got += made;
            produced_ += made;
            if (r == Z_STREAM_END) {
                end_of_member();
                continue;
            }
            if (r == Z_DATA_ERROR || r == Z_NEED_DICT) corrupt();
            if (r == Z_MEM_ERROR) fail("out of memory while inflating");
            // Z_OK or Z_BUF_ERROR: no progress with all input given means the stream stops early.
            if (z_.avail_in == 0 && pos_ == in_.size() && z_.avail_out > 0 && made == 0) truncated();
        }
        return got;
    }

    /// Decompressed bytes returned so far.
    std::uint64_t produced() const { return produced_; }
    /// True once the data is exhausted and verified (read() returns 0).
    bool done() const { return done_; }
    const std::string& name() const { return name_; }

    [[noreturn]] void fail(const std::string& what) const { throw IoError(name_ + ": " + what); }

private:
    // The offset in `in_` of zlib's next unread byte.
    std::size_t offset() const { return pos_ - z_.avail_in; }

    void feed() {
        const std::size_t n = std::min<std::size_t>(in_.size() - pos_, UINT_MAX);
        z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in_.data() + pos_));  // zlib never writes input
        z_.avail_in = static_cast<uInt>(n);
        pos_ += n;
    }

    [[noreturn]] void corrupt() const {
        const std::string why = z_.msg ? z_.msg : "invalid data";
        std::string text = "corrupt " + std::string(format_ == Format::gzip ? "gzip" : "zlib") + " data at byte " +
                           std::to_string(offset()) + ": ";
        if (why == "incorrect data check") text += format_ == Format::gzip ? "CRC-32 mismatch" : "Adler-32 mismatch";
        else if (why == "incorrect length check") text += "length mismatch (ISIZE)";
        else text += why;
        fail(text);
    }

    [[noreturn]] void truncated() const {
        fail("truncated " + std::string(format_ == Format::gzip ? "gzip" : "zlib") + " data: the stream stops at byte " +
             std::to_string(in_.size()) + ", before its end and " +
             (format_ == Format::gzip ? "CRC-32/length trailer" : "Adler-32 trailer"));
    }

    void end_of_member() {
        std::size_t p = offset();
        if (format_ == Format::zlib) {
            if (p != in_.size())
                fail(std::to_string(in_.size() - p) + " bytes of trailing garbage after the zlib stream ending at byte " +
                     std::to_string(p));
            done_ = true;
            return;
        }
        // Zero padding after the last member is ignored (Python's gzip module does the same).
        std::size_t q = p;
        while (q < in_.size() && in_[q] == '\0') ++q;
        if (q == in_.size()) {
            done_ = true;
            return;
        }
        if (!is_gzip(in_.substr(q)))
            fail(std::to_string(in_.size() - p) + " bytes of trailing garbage after the gzip member ending at byte " +
                 std::to_string(p) + " (not another gzip member)");
        // Another member (after zero padding, which Python also skips): start over at its header.
        if (::inflateReset(&z_) != Z_OK) fail("cannot reset zlib");
        z_.avail_in = 0;
        pos_ = q;
    }

    std::string_view in_;
    std::string name_;
    Format format_;
    z_stream z_{};
    bool live_ = false;
    bool done_ = false;
    std::size_t pos_ = 0;  // bytes of in_ handed to zlib
    std::uint64_t produced_ = 0;
};

namespace detail::gzip {

/// Whole output of `r`, refused once it passes max_output bytes: at most max_output + 1 bytes are
/// ever held, whatever the data claims.
inline std::string read_all(GzipReader& r, std::size_t max_output, std::string_view what) {
    std::string out;
    for (;;) {
        // Geometric growth (at least 64 KiB), bounded by one byte past the cap.
        const std::size_t want = std::max<std::size_t>(std::size_t(1) << 16, out.size());
        const std::size_t limit = max_output - std::min(max_output, out.size()) + 1;
        const std::size_t step = std::min(want, limit);
        const std::size_t old = out.size();
        out.resize(old + step);
        const std::size_t got = r.read(out.data() + old, step);
        out.resize(old + got);
        if (out.size() > max_output)
            r.fail("the " + std::string(what) + " data decompress to more than " + std::to_string(max_output) +
                   " bytes, the cap of this reader (a decompression bomb, or not the expected file)");
        if (got < step) return out;  // read() stops short only at the end
    }
}

}  // namespace detail::gzip

/// Decompresses every gzip member of `data`, at most `max_output` bytes in all. `name` (a file
/// name) labels error messages.
inline std::string gunzip(std::string_view data, const std::string& name = "<gzip data>",
                          std::size_t max_output = std::size_t{1} << 30) {
    GzipReader r(data, name, GzipReader::Format::gzip);
    return detail::gzip::read_all(r, max_output, "gzip");
}

/// Decompresses one zlib stream (RFC 1950: the IDAT payload of a PNG), Adler-32 verified, at most
/// `max_output` bytes; bytes after the stream are refused.
inline std::string inflate_zlib(std::string_view data, const std::string& name = "<zlib data>",
                                std::size_t max_output = std::size_t{1} << 30) {
    GzipReader r(data, name, GzipReader::Format::zlib);
    return detail::gzip::read_all(r, max_output, "zlib");
}

}  // namespace mmalign::io
