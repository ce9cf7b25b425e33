// Property: io/idx.hpp reads IDX arrays, raw or gzipped, to the shape and bytes the header and
// data hold (Fashion-MNIST's t10k files, where installed, against values Python's gzip and
// struct read from them), and refuses every malformed header — bad magic, another element type,
// a rank outside 1..4, a zero extent, extents whose product overflows or passes the element cap,
// data shorter or longer than the header promises — in one line naming the file, from the header
// alone, before anything is allocated from it. A gzipped file whose header claims more than its
// compressed size can inflate to is refused at once; a gzip bomb behind a small header is refused
// one byte past the promised data. load_idx runs the shared hostile-input corpus (FIFO,
// directory, /dev/zero, empty, over the cap, truncations, garbage, other formats).
#include <doctest/doctest.h>

#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "mmalign/io/idx.hpp"
#include "support/errors.hpp"
#include "support/hostile_inputs.hpp"
#include "support/temp_dir.hpp"

using namespace mmalign;
using mmalign::test::io_error_of;
using mmalign::test::TempDir;
namespace fs = std::filesystem;

namespace {

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

/// An IDX header: magic, type, rank and big-endian extents.
std::string idx_header(unsigned type, const std::vector<std::uint32_t>& dims) {
    std::string h = {'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
    for (const std::uint32_t d : dims)
        for (int s = 24; s >= 0; s -= 8) h.push_back(static_cast<char>((d >> s) & 0xFF));
    return h;
}

/// A whole unsigned-byte IDX file of the given extents, data 0, 1, 2, ... (mod 256).
std::string idx_file(const std::vector<std::uint32_t>& dims) {
    std::size_t n = 1;
    for (const std::uint32_t d : dims) n *= d;
    std::string data(n, '\0');
    for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<char>(i & 0xFF);
    return idx_header(0x08, dims) + data;
}

/// `text` gzipped by zlib's deflate (the encoder, independent of the reader under test).
std::string gzip(const std::string& text) {
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

std::string load_error(TempDir& tmp, const std::string& name, const std::string& bytes) {
    const std::string path = tmp.file(name, bytes);
    return io_error_of([&] { (void)io::load_idx(path); });
}

}  // namespace

TEST_CASE("load_idx reads raw and gzipped IDX files to their shape and bytes") {
    TempDir tmp;
    const std::string raw = idx_file({3, 2, 5});
    for (const std::string& bytes : {raw, gzip(raw)}) {
        const io::IdxArray a = io::load_idx(tmp.file("x.idx", bytes));
        CHECK(a.shape == Shape{3, 2, 5});
        REQUIRE(a.data.size() == 30);
        for (std::size_t i = 0; i < 30; ++i) CHECK(a.data[i] == i);
        const io::IdxArray b = io::parse_idx(bytes, "x.idx");
        CHECK(b.shape == a.shape);
        CHECK(b.data == a.data);
    }
    const io::IdxArray v = io::load_idx(tmp.file("v.idx", idx_file({1})));
    CHECK(v.shape == Shape{1});
    CHECK(v.data == std::vector<std::uint8_t>{0});
}

TEST_CASE("Fashion-MNIST's t10k files read as Python's gzip and struct read them") {
    const fs::path dir = "/usr/share/datasets/fashion-mnist";  // Debian dataset-fashion-mnist
    if (!fs::exists(dir / "t10k-labels-idx1-ubyte.gz")) return;
    const io::IdxArray labels = io::load_idx((dir / "t10k-labels-idx1-ubyte.gz").string());
    CHECK(labels.shape == Shape{10000});
    CHECK(std::vector<std::uint8_t>(labels.data.begin(), labels.data.begin() + 10) ==
          std::vector<std::uint8_t>{9, 2, 1, 1, 6, 1, 4, 6, 5, 7});
    const io::IdxArray images = io::load_idx((dir / "t10k-images-idx3-ubyte.gz").string());
    CHECK(images.shape == Shape{10000, 28, 28});
    CHECK(std::accumulate(images.data.begin(), images.data.begin() + 784, 0L) == 33456);
    CHECK(::crc32_z(0, images.data.data(), images.data.size()) == 309494841u);
}

TEST_CASE("every malformed IDX header is refused in one line naming the file, before allocating") {
    TempDir tmp;
    struct Case {
        const char* what;
        std::string bytes;
        const char* reason;
    };
    const std::vector<Case> cases = {
        {"short", std::string("\0\0", 2), "no IDX header: the file has 2 bytes, the header at least 8"},
        {"magic", "\x01\x02\x08\x01" + std::string(5, '\0'), "not an IDX file (it starts 0x01 0x02, not the magic 0x00 0x00)"},
        {"float", idx_header(0x0D, {1}) + std::string(4, '\0'),
         "element type 0x0d (float) is not supported: mmalign reads unsigned bytes (0x08)"},
        {"type", idx_header(0x07, {1}) + "x", "unknown IDX element type code 0x07"},
        {"rank0", idx_header(0x08, {}) + "x", "rank 0 is not 1 to 4"},
        {"rank5", idx_header(0x08, {1, 1, 1, 1, 1}) + "x", "rank 5 is not 1 to 4"},
        {"cut", idx_header(0x08, {2, 2, 2}).substr(0, 10), "header truncated: rank 3 needs 16 bytes, the file is shorter"},
        {"zero", idx_header(0x08, {5, 0, 3}), "dimension 1 is 0 (an IDX array holds at least one element)"},
        {"overflow", idx_header(0x08, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}) + "x",
         "dimensions 4294967295 x 4294967295 x 4294967295 x 4294967295 hold more than the 1073741824 elements this reader accepts"},
        {"cap", idx_header(0x08, {65536, 32768}) + "x", "dimensions 65536 x 32768 hold more than the 1073741824 elements"},
        {"short data", idx_header(0x08, {60000, 28, 28}) + std::string(100, '\0'),
         "the header (60000 x 28 x 28) promises 47040000 bytes of data, the file holds 100"},
        {"long data", idx_file({2, 3}) + "z", "the header (2 x 3) promises 6 bytes of data, the file holds 7"},
    };
    for (const Case& c : cases) {
        INFO(c.what);
        const std::string name = std::string("bad_") + c.what + ".idx";
        const std::string msg = load_error(tmp, name, c.bytes);
        CHECK(msg.rfind("IDX: '" + (tmp / name) + "': ", 0) == 0);
        CHECK(has(msg, c.reason));
        CHECK(!has(msg, "\n"));
        // The in-memory parser gives the same reason.
        CHECK(has(io_error_of([&] { (void)io::parse_idx(c.bytes, name); }), c.reason));
    }
}

TEST_CASE("a gzipped IDX file is checked against what it can inflate to and must end where its header says") {
    TempDir tmp;
    const std::string raw = idx_file({4, 3});
    // A header promising 60000 x 28 x 28 bytes in a gzip of a few dozen bytes: refused from the header.
    const std::string claim = gzip(idx_header(0x08, {60000, 28, 28}) + "abc");
    CHECK(has(load_error(tmp, "claim.gz", claim),
              "promises 47040000 bytes of data, more than the " + std::to_string(1032 * claim.size()) +
                  " the gzipped file can inflate to (DEFLATE expands at most 1032:1)"));
    CHECK(has(load_error(tmp, "short.gz", gzip(raw.substr(0, raw.size() - 1))),
              "the header (4 x 3) promises 12 bytes of data, the decompressed file holds 11"));
    CHECK(has(load_error(tmp, "long.gz", gzip(raw + "!")),
              "the decompressed file holds more than the 12 bytes of data its header (4 x 3) promises"));
    const std::string gz = gzip(raw);
    CHECK(has(load_error(tmp, "cut.gz", gz.substr(0, gz.size() - 3)), "IDX: '" + (tmp / "cut.gz") + "': truncated gzip data"));
    std::string bad_crc = gz;
    bad_crc[gz.size() - 8] ^= 0x10;
    CHECK(has(load_error(tmp, "crc.gz", bad_crc), "IDX: '" + (tmp / "crc.gz") + "': corrupt gzip data at byte"));
    CHECK(has(load_error(tmp, "crc.gz", bad_crc), "CRC-32 mismatch"));
    CHECK(has(load_error(tmp, "tail.gz", gz + "tail"), "trailing garbage"));
}

TEST_CASE("a gzip bomb behind a small IDX header is refused past the promised data, in bounded time and memory") {
    TempDir tmp;
    // 1 MiB of labels promised, then 1 GiB of zeros in 64 members of 16 MiB.
    const std::string first = gzip(idx_header(0x08, {1u << 20}) + std::string(std::size_t(16) << 20, '\0'));
    const std::string member = gzip(std::string(std::size_t(16) << 20, '\0'));
    std::string bomb = first;
    for (int i = 0; i < 63; ++i) bomb += member;
    const std::string path = tmp.file("bomb-idx1-ubyte.gz", bomb);
    const auto o = mmalign::test::detail::run_in_child(
        "bomb", [&](const fs::path& p) { (void)io::load_idx(p.string()); }, path,
        1.0 * mmalign::test::detail::hostile_time_scale());
    INFO(o.message);
    CHECK(o.kind == mmalign::test::HostileOutcome::Kind::refused);
    CHECK(has(o.message, "bomb-idx1-ubyte.gz"));
    CHECK(has(o.message, "holds more than the 1048576 bytes of data its header (1048576) promises"));
    if (!mmalign::test::detail::hostile_sanitized()) CHECK(o.rss_mb < 100);
}

TEST_CASE("load_idx refuses the hostile-input corpus, raw and gzipped, by kind and naming the file") {
    TempDir tmp;
    for (const bool gzipped : {false, true}) {
        mmalign::test::HostileReader r;
        const std::string raw = idx_file({50, 4, 4});
        r.name = gzipped ? "load_idx (gzip)" : "load_idx";
        r.valid = tmp.file(gzipped ? "images-idx3-ubyte.gz" : "images-idx3-ubyte", gzipped ? gzip(raw) : raw);
        r.read = [](const fs::path& f) { (void)io::load_idx(f.string()); };
        r.cap_bytes = io::max_idx_file_bytes;
        r.every_truncation_fails = true;
        r.wrong_type = {"{\"images\": [1, 2, 3]}", "\x89PNG\r\n\x1a\n" + std::string(32, '\0'), gzip("not an IDX file at all")};
        mmalign::test::check_hostile_inputs(r);
    }
}
