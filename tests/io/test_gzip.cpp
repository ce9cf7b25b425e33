// Property: io/gzip.hpp decompresses what gzip(1) writes — every member of a multi-member file,
// as `gzip -d` and Python's gzip.decompress do (tests/fixtures/gzip/two_members.gz, made with
// gzip 1.12; the expected text is gzip -dc's output) — and refuses, in one line naming the file,
// a CRC-32 or ISIZE trailer that does not match, a stream cut anywhere, trailing bytes that are
// not another member, and output beyond the caller's cap, the last while inflating: a 2 GiB
// gzip bomb costs neither the time nor the memory of inflating it.
#include <doctest/doctest.h>

#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "mmalign/io/gzip.hpp"
#include "support/errors.hpp"
#include "support/hostile_inputs.hpp"

using namespace mmalign;
using mmalign::test::io_error_of;
namespace fs = std::filesystem;

namespace {

const fs::path fixture = fs::path(MMALIGN_FIXTURE_DIR) / "gzip" / "two_members.gz";
const std::string expected_text = "first member\nsecond member, longer: abcabcabcabcabcabcabc\n";
constexpr std::size_t first_member_bytes = 43;  // gzip -9 of "first member\n" with FNAME "first.txt"

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

/// One gzip member of `text`, written by zlib's deflate (the encoder, not the decoder under test).
std::string gzip_member(const std::string& text) {
    z_stream z{};
    REQUIRE(deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY) == Z_OK);
    std::string out(deflateBound(&z, static_cast<uLong>(text.size())), '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
    z.avail_in = static_cast<uInt>(text.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
    out.resize(z.total_out);
    deflateEnd(&z);
    return out;
}

}  // namespace

TEST_CASE("gunzip decompresses every member of a file gzip(1) wrote, as gzip -d does, skipping zero padding") {
    const std::string gz = slurp(fixture);
    REQUIRE(gz.size() == 102);
    CHECK(io::is_gzip(gz));
    CHECK(io::gunzip(gz, "two_members.gz") == expected_text);
    CHECK(io::gunzip(gz.substr(0, first_member_bytes), "first.gz") == "first member\n");
    // Zero bytes after a member are padding (Python's gzip module skips them too).
    CHECK(io::gunzip(gz + std::string(7, '\0'), "padded.gz") == expected_text);
    CHECK(io::gunzip(gz.substr(0, first_member_bytes) + std::string(3, '\0') + gz.substr(first_member_bytes)) ==
          expected_text);
    // An empty member decompresses to nothing.
    CHECK(io::gunzip(gzip_member("")).empty());
}

TEST_CASE("a CRC-32 or ISIZE trailer that does not match the data is refused naming the file") {
    const std::string gz = slurp(fixture).substr(0, first_member_bytes);
    std::string bad_crc = gz, bad_size = gz;
    bad_crc[first_member_bytes - 8] ^= 0x01;   // CRC-32, little-endian, before ISIZE
    bad_size[first_member_bytes - 4] ^= 0x01;  // ISIZE
    CHECK(io_error_of([&] { io::gunzip(bad_crc, "crc.gz"); }) == "crc.gz: corrupt gzip data at byte 39: CRC-32 mismatch");
    CHECK(io_error_of([&] { io::gunzip(bad_size, "isize.gz"); }) == "isize.gz: corrupt gzip data at byte 43: length mismatch (ISIZE)");
    std::string bad_block = gz;
    bad_block[first_member_bytes - 12] ^= 0x40;  // inside the deflate data
    const std::string msg = io_error_of([&] { io::gunzip(bad_block, "data.gz"); });
    CHECK(has(msg, "data.gz: corrupt gzip data at byte "));
}

TEST_CASE("a gzip stream cut at any byte is refused as truncated, naming the file") {
    const std::string gz = slurp(fixture).substr(0, first_member_bytes);
    CHECK(io_error_of([&] { io::gunzip("", "cut.gz"); }) == "cut.gz: no gzip data (empty input)");
    CHECK(io_error_of([&] { io::gunzip(gz.substr(0, 1), "cut.gz"); }) == "cut.gz: not gzip data (the magic bytes 1f 8b are missing)");
    for (std::size_t n = 2; n < gz.size(); ++n) {
        INFO("cut at " << n);
        CHECK(io_error_of([&] { io::gunzip(gz.substr(0, n), "cut.gz"); }) ==
              "cut.gz: truncated gzip data: the stream stops at byte " + std::to_string(n) +
                  ", before its end and CRC-32/length trailer");
    }
}

TEST_CASE("bytes after the last member that are not another member are refused as trailing garbage") {
    const std::string gz = slurp(fixture);
    CHECK(io_error_of([&] { io::gunzip(gz + "junk", "tail.gz"); }) ==
          "tail.gz: 4 bytes of trailing garbage after the gzip member ending at byte 102 (not another gzip member)");
    CHECK(has(io_error_of([&] { io::gunzip(gz + std::string(2, '\0') + "\x1f", "tail.gz"); }), "3 bytes of trailing garbage"));
    CHECK(has(io_error_of([&] { io::gunzip("PK\x03\x04 not gzip", "zip.gz"); }), "zip.gz: not gzip data"));
}

TEST_CASE("a gzip bomb is refused once the cap is passed, naming the file and the cap, in bounded time and memory") {
    // 128 members of 16 MiB of zeros each: 2 GiB of output from about 2 MB of input.
    const std::string member = gzip_member(std::string(std::size_t(16) << 20, '\0'));
    std::string bomb;
    for (int i = 0; i < 128; ++i) bomb += member;
    REQUIRE(bomb.size() < (std::size_t(4) << 20));
    CHECK(io_error_of([&] { io::gunzip(bomb, "bomb.gz", std::size_t(1) << 20); }) ==
          "bomb.gz: the gzip data decompress to more than 1048576 bytes, the cap of this reader "
          "(a decompression bomb, or not the expected file)");
    // In a child process: the refusal under a 16 MiB cap stays far below the 2 GiB the data claims.
    const auto o = mmalign::test::detail::run_in_child(
        "bomb", [&](const fs::path&) { io::gunzip(bomb, "bomb.gz", std::size_t(16) << 20); }, "bomb.gz",
        1.0 * mmalign::test::detail::hostile_time_scale());
    INFO(o.message);
    CHECK(o.kind == mmalign::test::HostileOutcome::Kind::refused);
    CHECK(has(o.message, "more than 16777216 bytes"));
    if (!mmalign::test::detail::hostile_sanitized()) CHECK(o.rss_mb < 100);
    // The exact cap is accepted.
    CHECK(io::gunzip(member, "m.gz", std::size_t(16) << 20).size() == (std::size_t(16) << 20));
}

TEST_CASE("GzipReader streams the data in pieces and stops at its end; inflate_zlib checks Adler-32") {
    const std::string gz = slurp(fixture);
    io::GzipReader r(gz, "two_members.gz");
    std::string out;
    char buf[5];
    for (std::size_t n; (n = r.read(buf, sizeof buf)) > 0;) out.append(buf, n);
    CHECK(out == expected_text);
    CHECK(r.done());
    CHECK(r.produced() == expected_text.size());
    CHECK(r.read(buf, sizeof buf) == 0);

    const std::string text = "zlib, not gzip: zlib, not gzip";
    uLongf len = compressBound(static_cast<uLong>(text.size()));
    std::string z(len, '\0');
    REQUIRE(compress2(reinterpret_cast<Bytef*>(z.data()), &len, reinterpret_cast<const Bytef*>(text.data()),
                      static_cast<uLong>(text.size()), 9) == Z_OK);
    z.resize(len);
    CHECK(io::inflate_zlib(z, "z") == text);
    std::string bad = z;
    bad.back() ^= 0x01;  // the Adler-32 trailer
    CHECK(has(io_error_of([&] { io::inflate_zlib(bad, "idat"); }), "idat: corrupt zlib data at byte"));
    CHECK(has(io_error_of([&] { io::inflate_zlib(bad, "idat"); }), "Adler-32 mismatch"));
    CHECK(has(io_error_of([&] { io::inflate_zlib(z + "x", "idat"); }), "idat: 1 bytes of trailing garbage"));
}

TEST_CASE("a control character in the name is escaped: the message stays one line") {
    CHECK(io_error_of([&] { io::gunzip("xx", "a\nb.gz"); }) == "a\\x0ab.gz: not gzip data (the magic bytes 1f 8b are missing)");
}
