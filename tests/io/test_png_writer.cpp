// Tests of io/png_writer.hpp: Adler-32 and the chunk CRC against published values, the zlib
// stream inflated by io/gzip.hpp's decoder back to its input (literals, runs, matches reaching
// across the whole 32 KiB window), and whole PNGs decoded two ways — by a reader written here from
// the PNG specification (chunks, CRCs, the five filters) and, where mmalign::image exists, by
// libpng through io/image.hpp — to the exact pixels for 1 to 4 channels.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "mmalign/io/gzip.hpp"
#include "mmalign/io/png_writer.hpp"
#include "support/temp_dir.hpp"
#if defined(MMALIGN_WITH_IMAGE)
#include "mmalign/io/image.hpp"
#endif

using namespace mmalign;

namespace {

std::uint32_t be32(const std::string& s, std::size_t p) {
    return std::uint32_t(std::uint8_t(s[p])) << 24 | std::uint32_t(std::uint8_t(s[p + 1])) << 16 |
           std::uint32_t(std::uint8_t(s[p + 2])) << 8 | std::uint32_t(std::uint8_t(s[p + 3]));
}

std::string inflate_zlib(const std::string& z) {
    REQUIRE(z.size() >= 6);
    const unsigned cmf = std::uint8_t(z[0]), flg = std::uint8_t(z[1]);
    CHECK((cmf & 0x0F) == 8);         // deflate
    CHECK((cmf * 256 + flg) % 31 == 0);  // RFC 1950's header check
    CHECK((flg & 0x20) == 0);         // no preset dictionary
    // zlib checks the stream's Adler-32 itself and refuses any byte after it.
    const std::string out = io::inflate_zlib(z, "zlib stream", std::size_t(1) << 28);
    CHECK(be32(z, z.size() - 4) == io::detail::png::adler32(reinterpret_cast<const std::uint8_t*>(out.data()), out.size()));
    return out;
}

struct Decoded {
    std::uint32_t width = 0, height = 0;
    int color_type = -1;
    std::vector<std::uint8_t> pixels;
};

/// A PNG reader after the specification (ISO 15948 §5, §9): signature, chunk CRCs, IHDR, IDAT,
/// IEND, and the five filters undone.
Decoded decode(const std::string& png) {
    REQUIRE(png.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
    Decoded d;
    std::string idat;
    std::size_t p = 8;
    bool ended = false;
    while (p < png.size()) {
        const std::uint32_t len = be32(png, p);
        const std::string type = png.substr(p + 4, 4);
        CHECK(be32(png, p + 8 + len) == io::detail::gzip::crc32(png.data() + p + 4, len + 4));
        const std::string body = png.substr(p + 8, len);
        if (type == "IHDR") {
            d.width = be32(body, 0), d.height = be32(body, 4);
            CHECK(body[8] == 8);
            d.color_type = body[9];
            CHECK(body.substr(10) == std::string(3, '\0'));
        } else if (type == "IDAT") {
            idat += body;
        } else if (type == "IEND") {
            ended = true;
        }
        p += 12 + len;
    }
    CHECK(ended);
    const int channels = d.color_type == 0 ? 1 : d.color_type == 4 ? 2 : d.color_type == 2 ? 3 : 4;
    const std::string raw = inflate_zlib(idat);
    const std::size_t stride = std::size_t(d.width) * std::size_t(channels), bpp = std::size_t(channels);
    REQUIRE(raw.size() == (stride + 1) * d.height);
    d.pixels.resize(stride * d.height);
    for (std::size_t y = 0; y < d.height; ++y) {
        const int filter = std::uint8_t(raw[y * (stride + 1)]);
        REQUIRE(filter <= 4);
        for (std::size_t x = 0; x < stride; ++x) {
            const int f = std::uint8_t(raw[y * (stride + 1) + 1 + x]);
            const int a = x >= bpp ? d.pixels[y * stride + x - bpp] : 0;
            const int b = y ? d.pixels[(y - 1) * stride + x] : 0;
            const int c = x >= bpp && y ? d.pixels[(y - 1) * stride + x - bpp] : 0;
            int pred = 0;
            if (filter == 1) pred = a;
            if (filter == 2) pred = b;
            if (filter == 3) pred = (a + b) / 2;
            if (filter == 4) {
                const int q = a + b - c, pa = std::abs(q - a), pb = std::abs(q - b), pc = std::abs(q - c);
                pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
            }
            d.pixels[y * stride + x] = std::uint8_t(f + pred);
        }
    }
    return d;
}

/// Pixels with flat areas, gradients (where Sub/Up/Average/Paeth win) and noise (where None does).
std::vector<std::uint8_t> test_pixels(int w, int h, int c, unsigned seed) {
    std::mt19937 rng(seed);
    std::vector<std::uint8_t> px(std::size_t(w * h * c));
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            for (int k = 0; k < c; ++k) {
                std::uint8_t v;
                if (y < h / 3) v = 255;
                else if (y < 2 * h / 3) v = std::uint8_t(x * 3 + y * 2 + k * 40);
                else v = std::uint8_t(rng());
                px[std::size_t((y * w + x) * c + k)] = v;
            }
    return px;
}

}  // namespace

TEST_CASE("adler32 and the chunk CRC give their published values") {
    const std::string w = "Wikipedia";  // the example of RFC 1950's Adler-32 on Wikipedia
    CHECK(io::detail::png::adler32(reinterpret_cast<const std::uint8_t*>(w.data()), w.size()) == 0x11E60398u);
    CHECK(io::detail::png::adler32(nullptr, 0) == 1u);
    // Every PNG ends with the same IEND chunk: length 0, "IEND", CRC ae 42 60 82.
    const std::uint8_t px[3] = {1, 2, 3};
    const std::string png = io::encode_png(px, 1, 1, 3);
    CHECK(png.substr(png.size() - 12) == std::string("\0\0\0\0IEND\xae\x42\x60\x82", 12));
}

TEST_CASE("the zlib stream inflates back to its input: empty, literals, runs and matches across the window") {
    std::mt19937 rng(3);
    std::vector<std::string> inputs = {"", "a", "abcabcabcabcabcabcabc", std::string(100000, '\0')};
    std::string noise(5000, '\0');
    for (char& c : noise) c = char(rng());
    inputs.push_back(noise);
    std::string far(32000, '\0');  // a random block repeated: matches at distances near 32 KiB
    for (char& c : far) c = char(rng() % 7);
    inputs.push_back(far + far + far.substr(0, 1000));
    std::string lengths;  // runs of every length 1 .. 300 between changing bytes
    for (int n = 1; n <= 300; ++n) lengths += std::string(std::size_t(n), char('a' + n % 26)) + char(n);
    inputs.push_back(lengths);
    for (const std::string& in : inputs) {
        CAPTURE(in.size());
        const std::string z = io::detail::png::zlib_compress(reinterpret_cast<const std::uint8_t*>(in.data()), in.size());
        CHECK(inflate_zlib(z) == in);
    }
    // Runs compress: 100,000 zero bytes take a few hundred bytes.
    const std::string zeros(100000, '\0');
    CHECK(io::detail::png::zlib_compress(reinterpret_cast<const std::uint8_t*>(zeros.data()), zeros.size()).size() < 1000);
}

TEST_CASE("encode_png decodes to the same pixels for grey, grey+alpha, RGB and RGBA") {
    for (int c = 1; c <= 4; ++c)
        for (auto [w, h] : {std::pair{1, 1}, std::pair{7, 3}, std::pair{64, 48}}) {
            CAPTURE(c);
            CAPTURE(w);
            const auto px = test_pixels(w, h, c, unsigned(c * 100 + w));
            const std::string png = io::encode_png(px.data(), w, h, c);
            const Decoded d = decode(png);
            CHECK(d.width == std::uint32_t(w));
            CHECK(d.height == std::uint32_t(h));
            CHECK(d.color_type == (c == 1 ? 0 : c == 2 ? 4 : c == 3 ? 2 : 6));
            CHECK(d.pixels == px);
#if defined(MMALIGN_WITH_IMAGE)
            test::TempDir tmp;
            io::write_png(tmp / "x.png", px.data(), w, h, c);
            CHECK(tmp.listing() == std::vector<std::string>{"x.png"});
            const io::Image img = io::load_image(tmp / "x.png");
            CHECK(img.width == w);
            CHECK(img.height == h);
            CHECK(img.channels == c);
            CHECK(img.pixels == px);
#endif
        }
}

TEST_CASE("encode_png refuses channel counts and sizes PNG cannot hold, write_png an unwritable path") {
    const std::uint8_t px[4] = {};
    CHECK_THROWS_AS(io::encode_png(px, 1, 1, 5), ArgumentError);
    CHECK_THROWS_AS(io::encode_png(px, 1, 1, 0), ArgumentError);
    CHECK_THROWS_AS(io::encode_png(px, 0, 1, 1), ArgumentError);
    CHECK_THROWS_AS(io::encode_png(px, 1, 0, 1), ArgumentError);
    test::TempDir tmp;
    CHECK_THROWS_AS(io::write_png(tmp / "missing/dir/x.png", px, 1, 1, 1), IoError);
    CHECK(tmp.listing().empty());
}
