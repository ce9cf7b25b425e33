// tests/io/test_image.cpp — image decoding, Pillow's resize and HF's CLIP preprocessing against
// Pillow 13.0.0 / transformers 5.24 (tests/fixtures/images/, made by tools/make_image_fixtures.py).
//
// expected.safetensors holds, per fixture file, Pillow's decoded pixels, its convert("RGB"),
// transformers' convert_to_rgb, Pillow resizes and CLIPImageProcessorPil pixel_values for the
// configs in configs/*.json. Resize and preprocessing start from Pillow's decoded pixels, so they
// are checked bit for bit whatever the JPEG decoder; the end-to-end test starts from the file.
// The entries are U8 and F32, read through io::SafetensorsFile.
//
// images/decoders/ (tools/make_decoder_fixtures.py) holds BMP and PNG variants Pillow does not
// write (top-down, bitfields, OS/2, Adam7, 16-bit colour keys) with Pillow's pixels for them. The
// hostile inputs (zlib bomb, 16-bit giant, 20,000-scan JPEG, bad CRCs, truncations) are made in
// the tests; docs/robustness.md lists what each gets.
#include <doctest/doctest.h>

#if !defined(MMALIGN_WITH_IMAGE)
// Built without mmalign::image (libjpeg or libpng missing): nothing to test.
TEST_CASE("image tests are skipped: mmalign::image was not configured (needs libjpeg and libpng)") {
    MESSAGE("mmalign::image not available; install libjpeg62-turbo-dev and libpng-dev");
}
#else

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <zlib.h>

#include "support/errors.hpp"
#include "mmalign/io/clip_image_processor.hpp"
#include "mmalign/io/image.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/io/pillow_resize.hpp"
#include "support/hostile_inputs.hpp"
#include "support/temp_dir.hpp"

using namespace mmalign;
using mmalign::test::io_error_of;
using namespace mmalign::io;
namespace fs = std::filesystem;

#define MMALIGN_TEST_STR2(x) #x
#define MMALIGN_TEST_STR(x) MMALIGN_TEST_STR2(x)

namespace {

const fs::path image_dir = fs::path(MMALIGN_FIXTURE_DIR) / "images";

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out(1);
    for (char c : s) {
        if (c == sep)
            out.emplace_back();
        else
            out.back() += c;
    }
    return out;
}

std::vector<char> read_all(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    REQUIRE_MESSAGE(in, "cannot open ", p.string());
    return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_all(const fs::path& p, const void* data, std::size_t n) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
    REQUIRE(out.good());
}

// ---- expected.safetensors (U8 and F32 entries), read through io::SafetensorsFile ---------------
struct Entry {
    std::string dtype;
    std::vector<index_t> shape;
    const char* data = nullptr;
};

struct Expected {
    io::SafetensorsFile file;  // mmapped; entries point into it
    std::map<std::string, Entry> entries;
    std::map<std::string, std::string> meta;

    static const Expected& get() {
        static const Expected e = load();
        return e;
    }
    static Expected load() {
        Expected e{io::SafetensorsFile::open((image_dir / "expected.safetensors").string()), {}, {}};
        e.meta = e.file.metadata();
        for (const std::string& k : e.file.names()) {
            Entry en;
            en.dtype = e.file.dtype(k);
            const Shape sh = e.file.shape(k);
            for (int i = 0; i < sh.rank(); ++i) en.shape.push_back(sh[i]);
            en.data = reinterpret_cast<const char*>(e.file.bytes(k).data());
            e.entries[k] = en;
        }
        return e;
    }
    bool has(const std::string& k) const { return entries.count(k) != 0; }
    const Entry& at(const std::string& k) const {
        auto it = entries.find(k);
        REQUIRE_MESSAGE(it != entries.end(), "expected.safetensors has no entry ", k);
        return it->second;
    }
    /// An [H, W, C] U8 entry as an Image.
    Image image(const std::string& k) const {
        const Entry& e = at(k);
        REQUIRE(e.dtype == "U8");
        REQUIRE(e.shape.size() == 3);
        Image img(e.shape[0], e.shape[1], e.shape[2]);
        std::memcpy(img.pixels.data(), e.data, img.pixels.size());
        return img;
    }
    /// The fixture files, in name order.
    std::vector<std::string> files() const {
        std::vector<std::string> out;
        for (const auto& kv : entries)
            if (kv.first.ends_with("|decoded")) out.push_back(split(kv.first, '|')[0]);
        return out;
    }
};

bool is_jpeg(const std::string& f) { return f.ends_with(".jpg"); }

/// Largest absolute difference between two images of the same shape (-1 if the shapes differ).
int max_diff(const Image& a, const Image& b) {
    if (a.height != b.height || a.width != b.width || a.channels != b.channels) return -1;
    int m = 0;
    for (std::size_t i = 0; i < a.pixels.size(); ++i) m = std::max(m, std::abs(int(a.pixels[i]) - int(b.pixels[i])));
    return m;
}

/// Recomputes the CRC of the PNG chunk that starts (at its length field) at `at`.
void fix_chunk_crc(std::vector<char>& png, std::size_t at) {
    auto u8 = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(png[i])); };
    const std::uint32_t len = u8(at) << 24 | u8(at + 1) << 16 | u8(at + 2) << 8 | u8(at + 3);
    const auto crc = static_cast<std::uint32_t>(
        crc32(0, reinterpret_cast<const Bytef*>(png.data() + at + 4), static_cast<uInt>(len + 4)));
    for (int i = 0; i < 4; ++i) png[at + 8 + len + std::size_t(i)] = static_cast<char>(crc >> (24 - 8 * i));
}

std::string dims(const Image& a) {
    return std::to_string(a.height) + "x" + std::to_string(a.width) + "x" + std::to_string(a.channels);
}

/// Max |ours − HF| over pixel_values [1, 3, H, W] vs a [3, H, W] entry (U8 or F32); -1 on shape mismatch.
double max_diff_pv(const Tensor<float>& ours, const Entry& e) {
    if (e.shape.size() != 3 || ours.dim(0) != 1 || ours.dim(1) != e.shape[0] || ours.dim(2) != e.shape[1] ||
        ours.dim(3) != e.shape[2])
        return -1;
    double m = 0;
    for (index_t i = 0; i < ours.numel(); ++i) {
        float ref;
        if (e.dtype == "U8")
            ref = static_cast<float>(static_cast<std::uint8_t>(e.data[i]));
        else
            std::memcpy(&ref, e.data + 4 * i, 4);
        m = std::max(m, std::abs(double(ours.data()[i]) - double(ref)));
    }
    return m;
}

}  // namespace

TEST_CASE("fixtures record the Pillow and transformers versions they were made with") {
    const Expected& ex = Expected::get();
    MESSAGE("Pillow ", ex.meta.at("pillow"), " (libjpeg-turbo ", ex.meta.at("pillow_libjpeg_turbo"), "), transformers ",
            ex.meta.at("transformers"), "; mmalign decodes with libjpeg ", MMALIGN_TEST_STR(JPEG_LIB_VERSION),
#if defined(LIBJPEG_TURBO_VERSION)
            " (libjpeg-turbo ", MMALIGN_TEST_STR(LIBJPEG_TURBO_VERSION), ")"
#else
            ""
#endif
    );
    CHECK(ex.meta.at("pillow") == "13.0.0");  // PillowVersion::v13 is the default pass order
    CHECK(ex.files().size() >= 25);
}

TEST_CASE(
    "load_image decodes PNG and BMP exactly like Pillow (L, 1-bit, 16-bit, LA, RGBA, palette, tRNS, BMP 8/24/32)") {
    const Expected& ex = Expected::get();
    int n = 0;
    for (const std::string& f : ex.files()) {
        if (is_jpeg(f)) continue;
        CAPTURE(f);
        const Image ours = load_image((image_dir / f).string());
        const Image ref = ex.image(f + "|decoded");
        CHECK_MESSAGE(max_diff(ours, ref) == 0, f, ": ours ", dims(ours), ", Pillow ", dims(ref), ", max diff ",
                      max_diff(ours, ref));
        ++n;
    }
    CHECK(n >= 18);
}

TEST_CASE(
    "load_image decodes JPEG like Pillow (libjpeg-turbo ISLOW IDCT, fancy upsampling) for 4:2:0, 4:2:2, 4:4:4, "
    "progressive, grey and CMYK files") {
    const Expected& ex = Expected::get();
    for (const std::string& f : ex.files()) {
        if (!is_jpeg(f)) continue;
        CAPTURE(f);
        const Image ours = load_image((image_dir / f).string());
        const Image ref = ex.image(f + "|decoded");
        const int d = max_diff(ours, ref);
        std::size_t differing = 0;
        if (d > 0)
            for (std::size_t i = 0; i < ours.pixels.size(); ++i) differing += ours.pixels[i] != ref.pixels[i];
        MESSAGE(f, ": ", dims(ours), " max |ours - Pillow| = ", d, " (", differing, " of ", ours.pixels.size(),
                " samples differ)");
        // Pillow's wheel bundles a newer libjpeg-turbo than the system one; both run the same
        // ISLOW integer IDCT and fancy upsampling, so the pixels are identical.
        CHECK(d == 0);
    }
}

TEST_CASE("load_image keeps the stored orientation: EXIF Orientation is not applied, as in PIL.Image.open") {
    const Image img = load_image((image_dir / "exif_rotated.jpg").string());
    CHECK(img.height == 40);
    CHECK(img.width == 24);
    CHECK(img.channels == 3);
}

TEST_CASE("to_rgb equals Pillow convert(\"RGB\") and to_rgb_on_white equals transformers convert_to_rgb") {
    const Expected& ex = Expected::get();
    int with_alpha = 0;
    for (const std::string& f : ex.files()) {
        CAPTURE(f);
        const Image dec = ex.image(f + "|decoded");
        const std::string rgb_key = ex.has(f + "|rgb") ? f + "|rgb" : f + "|decoded";
        if (dec.channels == 1 && !ex.has(f + "|rgb")) continue;  // large grey photo: rgb not stored
        const Image rgb = ex.image(rgb_key);
        const Image hf = ex.has(f + "|hf_rgb") ? ex.image(f + "|hf_rgb") : rgb;
        CHECK(max_diff(to_rgb(dec), rgb) == 0);
        CHECK(max_diff(to_rgb_on_white(dec), hf) == 0);
        with_alpha += dec.has_alpha();
    }
    CHECK(with_alpha >= 5);  // RGBA, LA, LA16, palette+tRNS, RGB+tRNS
}

TEST_CASE(
    "pillow_resize is bit-exact with Pillow 13 Image.resize (bicubic, bilinear, nearest) on RGB and natively on L, LA, "
    "RGBA") {
    const Expected& ex = Expected::get();
    int n = 0, worst = 0;
    for (const auto& kv : ex.entries) {
        const std::string& key = kv.first;
        const auto parts = split(key, '|');
        if (parts.size() != 5 || parts[1] != "resize") continue;
        CAPTURE(key);
        const std::string& f = parts[0];
        const Image src = parts[2] == "rgb"
                              ? (ex.has(f + "|rgb") ? ex.image(f + "|rgb") : to_rgb(ex.image(f + "|decoded")))
                              : ex.image(f + "|decoded");
        const Resample filter = parts[3] == "bicubic"    ? Resample::bicubic
                                : parts[3] == "bilinear" ? Resample::bilinear
                                                         : Resample::nearest;
        const Image ref = ex.image(key);
        const Image ours = pillow_resize(src, ref.height, ref.width, filter);
        const int d = max_diff(ours, ref);
        CHECK_MESSAGE(d == 0, key, ": ", dims(src), " -> ", dims(ref), " max diff ", d);
        worst = std::max(worst, d);
        ++n;
    }
    MESSAGE(n, " Pillow resizes compared, max diff ", worst);
    CHECK(n >= 80);
}

TEST_CASE(
    "pillow_resize pass order follows the Pillow version: v13 runs vertical first when the height shrinks 2x more") {
    const Expected& ex = Expected::get();
    // rocket_tall 170x64 -> 85x32: (170-85) > 2*(64-32), vertical first in 13 only (not taller
    // than 100x its width); tall_500x4 -> 60x3 is vertical first in 12.2 and 13.
    struct Case {
        std::string key;
        bool v12_2_vertical;
    };
    for (const Case& c : {Case{"rocket_tall.png|resize|rgb|bicubic|85x32", false},
                          Case{"tall_500x4.png|resize|rgb|bicubic|60x3", true}}) {
        CAPTURE(c.key);
        const std::string f = split(c.key, '|')[0];
        const Image src = ex.image(f + "|decoded");
        const Image ref = ex.image(c.key);
        const Image v13 = pillow_resize(src, ref.height, ref.width, Resample::bicubic, PillowVersion::v13);
        const Image v12 = pillow_resize(src, ref.height, ref.width, Resample::bicubic, PillowVersion::v12_2_to_12_3);
        const Image v9 = pillow_resize(src, ref.height, ref.width, Resample::bicubic, PillowVersion::v9_to_12_1);
        CHECK(max_diff(v13, ref) == 0);
        CHECK(max_diff(v9, ref) > 0);  // the order is visible in the pixels
        CHECK((max_diff(v12, ref) == 0) == c.v12_2_vertical);
    }
}

TEST_CASE(
    "preprocess equals HF CLIPImageProcessorPil pixel_values exactly, from Pillow's decoded pixels, for every config") {
    const Expected& ex = Expected::get();
    std::map<std::string, ClipImageProcessorConfig> configs;
    int n = 0;
    double worst = 0;
    for (const auto& kv : ex.entries) {
        const std::string& key = kv.first;
        const Entry& e = kv.second;
        const auto parts = split(key, '|');
        if (parts.size() != 3 || parts[1] != "pv") continue;
        CAPTURE(key);
        if (!configs.count(parts[2]))
            configs[parts[2]] =
                load_clip_image_processor_config((image_dir / "configs" / (parts[2] + ".json")).string());
        const Tensor<float> pv = preprocess({ex.image(parts[0] + "|decoded")}, configs[parts[2]]);
        const double d = max_diff_pv(pv, e);
        CHECK_MESSAGE(d == 0.0, key, ": max |ours - HF| = ", d);
        worst = std::max(worst, d);
        ++n;
    }
    MESSAGE(n, " pixel_values compared, max |ours - HF| = ", worst);
    CHECK(n >= 50);
    CHECK(configs.size() == 6);
}

TEST_CASE("load_image then preprocess matches HF from the file: exact for PNG/BMP, within (1/255)/std for JPEG") {
    const Expected& ex = Expected::get();
    std::map<std::string, ClipImageProcessorConfig> configs;
    double worst_jpeg = 0, worst_other = 0;
    int n = 0;
    for (const auto& kv : ex.entries) {
        const std::string& key = kv.first;
        const Entry& e = kv.second;
        const auto parts = split(key, '|');
        if (parts.size() != 3 || parts[1] != "pv") continue;
        CAPTURE(key);
        if (!configs.count(parts[2]))
            configs[parts[2]] =
                load_clip_image_processor_config((image_dir / "configs" / (parts[2] + ".json")).string());
        const ClipImageProcessorConfig& cfg = configs[parts[2]];
        const Tensor<float> pv = preprocess({load_image((image_dir / parts[0]).string())}, cfg);
        const double d = max_diff_pv(pv, e);
        // one uint8 level after normalisation is (1/255)/std (0.0142..0.0150 for CLIP's std)
        const double level = (cfg.do_rescale ? cfg.rescale_factor : 1.0) /
                             (cfg.do_normalize ? *std::min_element(cfg.image_std.begin(), cfg.image_std.end()) : 1.0);
        // A JPEG decoded by another libjpeg may differ by a level (the decode test pins the
        // system libjpeg-turbo to exact); PNG and BMP are lossless and must be exact.
        if (is_jpeg(parts[0])) {
            CHECK_MESSAGE(d <= level * 1.0001, key, ": max diff ", d, " (one level ", level, ")");
            worst_jpeg = std::max(worst_jpeg, d);
        } else {
            CHECK_MESSAGE(d == 0.0, key, ": max diff ", d);
            worst_other = std::max(worst_other, d);
        }
        ++n;
    }
    MESSAGE(n, " files preprocessed end to end: max |ours - HF| = ", worst_jpeg, " (JPEG), ", worst_other,
            " (PNG/BMP)");
    CHECK(n >= 50);
}

TEST_CASE("load_clip_image_processor_config reads the hub's legacy int sizes, dict and list forms, and HF defaults") {
    const auto b32 = load_clip_image_processor_config((image_dir / "configs" / "clip_b32.json").string());
    CHECK(b32.do_resize);
    CHECK(b32.size.shortest_edge == 224);
    CHECK(b32.crop_height == 224);
    CHECK(b32.crop_width == 224);
    CHECK(b32.resample == Resample::bicubic);
    CHECK(b32.do_rescale);  // absent: CLIPImageProcessorPil's default
    CHECK(b32.rescale_factor == 1.0 / 255.0);
    CHECK(b32.do_convert_rgb);
    CHECK(b32.image_std[2] == 0.27577711);

    const auto pad = load_clip_image_processor_config((image_dir / "configs" / "pad_bilinear.json").string());
    CHECK(pad.size.shortest_edge == 0);
    CHECK(pad.size.height == 20);
    CHECK(pad.size.width == 30);
    CHECK(pad.crop_height == 24);
    CHECK(pad.crop_width == 26);
    CHECK(pad.resample == Resample::bilinear);
    CHECK(pad.image_mean[1] == 0.5);

    const auto nearest = load_clip_image_processor_config((image_dir / "configs" / "nearest.json").string());
    CHECK(nearest.size.shortest_edge == 40);
    CHECK(nearest.crop_height == 30);
    CHECK(nearest.crop_width == 36);
    CHECK(nearest.resample == Resample::nearest);
    CHECK_FALSE(nearest.do_normalize);
}

TEST_CASE(
    "load_clip_image_processor_config rejects wrong types and unsupported fields, naming the file and the field") {
    test::TempDir tmp;
    struct Case {
        std::string json, field, what;
    };
    const Case cases[] = {
        {R"({"do_resize": "yes"})", "do_resize", "boolean"},
        {R"({"size": {"longest_edge": 5}})", "size", "longest_edge"},
        {R"({"size": 0})", "size", "must be positive, found 0"},
        {R"({"crop_size": {"shortest_edge": 5}})", "crop_size", "height, width"},
        {R"({"crop_size": [1, 2, 3]})", "crop_size", "3 elements"},
        {R"({"resample": 1})", "resample", "LANCZOS"},
        {R"({"resample": "bicubic"})", "resample", "integer"},
        {R"({"rescale_factor": "1/255"})", "rescale_factor", "number"},
        {R"({"image_mean": [0.5, 0.5]})", "image_mean", "2 elements"},
        {R"({"image_std": [0.5, "x", 0.5]})", "image_std[1]", "number"},
        {R"({"do_pad": true})", "do_pad", "not supported"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.json);
        const fs::path p = tmp.path / "preprocessor_config.json";
        write_all(p, c.json.data(), c.json.size());
        const std::string msg = io_error_of([&] { load_clip_image_processor_config(p.string()); });
        CHECK(contains(msg, p.string()));
        CHECK(contains(msg, "'" + c.field + "'"));
        CHECK_MESSAGE(contains(msg, c.what), msg);
    }
    const fs::path bad = tmp.path / "bad.json";
    write_all(bad, "{\"size\": ", 9);
    CHECK(contains(io_error_of([&] { load_clip_image_processor_config(bad.string()); }), "not valid JSON"));
    CHECK(contains(io_error_of([&] { load_clip_image_processor_config((tmp.path / "none.json").string()); }),
                   "none.json"));
    // null means "use the default", as HF's constructor treats None
    const fs::path nul = tmp.path / "null.json";
    write_all(nul, "{\"size\": null, \"do_resize\": null}", 33);
    CHECK(load_clip_image_processor_config(nul.string()).size.shortest_edge == 224);
}

TEST_CASE(
    "load_image errors name the file: missing, empty, truncated (as Pillow: also progressive, no EOI), garbage, GIF, "
    "zero and absurd sizes") {
    test::TempDir tmp;
    const std::vector<char> jpg = read_all(image_dir / "astronaut_420.jpg");
    const std::vector<char> png = read_all(image_dir / "cat_crop.png");
    auto expect = [&](const std::string& name, const std::vector<char>& bytes, const std::string& what) {
        CAPTURE(name);
        const fs::path p = tmp.path / name;
        write_all(p, bytes.data(), bytes.size());
        const std::string msg = io_error_of([&] { load_image(p.string()); });
        CHECK(contains(msg, p.string()));
        CHECK_MESSAGE(contains(msg, what), msg);
    };
    CHECK(contains(io_error_of([&] { load_image((tmp.path / "missing.png").string()); }), "missing.png"));
    expect("empty.jpg", {}, "empty");
    expect("half.jpg", std::vector<char>(jpg.begin(), jpg.begin() + static_cast<std::ptrdiff_t>(jpg.size() / 2)),
           "truncated");
    expect("no_eoi.jpg", std::vector<char>(jpg.begin(), jpg.end() - 2), "truncated");  // Pillow: truncated too
    const std::vector<char> prog = read_all(image_dir / "chelsea_422_progressive.jpg");
    expect("half_progressive.jpg",
           std::vector<char>(prog.begin(), prog.begin() + static_cast<std::ptrdiff_t>(prog.size() * 6 / 10)),
           "truncated");
    expect("header_only.jpg", std::vector<char>(jpg.begin(), jpg.begin() + 200), "JPEG");
    expect("half.png", std::vector<char>(png.begin(), png.begin() + static_cast<std::ptrdiff_t>(png.size() / 2)),
           "PNG");
    expect("garbage.png", std::vector<char>(64, 'x'), "unknown image format");
    expect("anim.gif", {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0, 0, 0}, "GIF");
    std::vector<char> bad_magic = png;
    bad_magic[0] = 0;
    expect("bad_magic.png", bad_magic, "unknown image format");

    // JPEG SOF0 (FF C0, length, precision, height, width): patch the frame size
    const char sof0[] = {char(0xFF), char(0xC0)};
    auto sof = std::search(jpg.begin(), jpg.end(), std::begin(sof0), std::end(sof0));
    REQUIRE(sof != jpg.end());
    const std::size_t at = static_cast<std::size_t>(sof - jpg.begin()) + 5;
    std::vector<char> huge = jpg;
    huge[at] = char(0xEA), huge[at + 1] = char(0x60);      // height 60000
    huge[at + 2] = char(0xEA), huge[at + 3] = char(0x60);  // width 60000
    expect("huge.jpg", huge, "exceeds the limits");
    std::vector<char> zero = jpg;
    zero[at + 2] = 0, zero[at + 3] = 0;  // width 0
    expect("zero.jpg", zero, "JPEG");
    // PNG IHDR width/height at bytes 16..23; the IHDR CRC (bytes 29..32) made right again, so
    // that the size is what is refused
    std::vector<char> big_png = png;
    big_png[16] = 0, big_png[17] = 1, big_png[18] = 0, big_png[19] = 0;  // width 65536
    fix_chunk_crc(big_png, 8);
    expect("huge.png", big_png, "exceeds the limits");
    // tighter limits apply before decoding
    const std::string msg = io_error_of([&] {
        load_image((image_dir / "cat_crop.png").string(), ImageLimits{64, 1 << 20});
    });
    CHECK(contains(msg, "cat_crop.png"));
    CHECK(contains(msg, "exceeds the limits"));
}

TEST_CASE("center_crop pads like HF when the image is smaller than the crop (image at ceil of half the gap)") {
    Image img(3, 2, 1);
    for (std::size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<std::uint8_t>(10 + i);
    const Image out = center_crop(img, 6, 5);  // gaps 3 and 3: image rows 2..4, cols 2..3
    REQUIRE(out.height == 6);
    REQUIRE(out.width == 5);
    for (index_t y = 0; y < 6; ++y)
        for (index_t x = 0; x < 5; ++x) {
            const bool inside = y >= 2 && y < 5 && x >= 2 && x < 4;
            CHECK(out.at(y, x, 0) == (inside ? img.at(y - 2, x - 2, 0) : 0));
        }
    const Image crop = center_crop(img, 2, 1);  // floor((3-2)/2) = 0, floor((2-1)/2) = 0
    CHECK(crop.at(0, 0, 0) == img.at(0, 0, 0));
    CHECK(crop.at(1, 0, 0) == img.at(1, 0, 0));
}

TEST_CASE("shortest_edge_size follows HF get_resize_output_image_size (long edge truncated)") {
    CHECK(shortest_edge_size(480, 640, 224) == std::pair<index_t, index_t>{224, 298});  // 480×640 → 224×298, the shortest-edge rule of transformers image_processing_utils
    CHECK(shortest_edge_size(640, 480, 224) == std::pair<index_t, index_t>{298, 224});
    CHECK(shortest_edge_size(300, 300, 224) == std::pair<index_t, index_t>{224, 224});
    CHECK(shortest_edge_size(1, 37, 224) == std::pair<index_t, index_t>{224, 8288});
    CHECK(shortest_edge_size(3333, 5000, 224) == std::pair<index_t, index_t>{224, 336});
}

TEST_CASE("preprocess batches images into [N, 3, H, W] and rejects mismatched sizes without a crop") {
    const Expected& ex = Expected::get();
    auto cfg = load_clip_image_processor_config((image_dir / "configs" / "small.json").string());
    const Image a = ex.image("cat_crop.png|decoded"), b = ex.image("gray_33x45.png|decoded");
    const Tensor<float> both = preprocess({a, b}, cfg);
    CHECK(both.shape() == Shape{2, 3, 28, 28});
    const Tensor<float> only_b = preprocess({b}, cfg);
    CHECK(std::equal(only_b.begin(), only_b.end(), both.begin() + 3 * 28 * 28));
    cfg.do_center_crop = false;
    CHECK_THROWS_AS(preprocess({a, b}, cfg), ShapeError);
    cfg.do_convert_rgb = false;
    CHECK_THROWS_AS(preprocess({b}, cfg), ArgumentError);
}

// ---- the decoders on hostile and unusual input (docs/robustness.md) ----------------------------
namespace {

const fs::path decoder_dir = image_dir / "decoders";

std::span<const std::uint8_t> as_bytes(const std::vector<char>& v) {
    return {reinterpret_cast<const std::uint8_t*>(v.data()), v.size()};
}

std::vector<char> bytes_of(const std::string& s) { return std::vector<char>(s.begin(), s.end()); }

void put_be32(std::string& out, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out += static_cast<char>(v >> (24 - 8 * i));
}

/// A PNG chunk: length, type, data, CRC.
std::string png_chunk(const std::string& type, const std::string& data) {
    std::string out;
    put_be32(out, static_cast<std::uint32_t>(data.size()));
    out += type + data;
    uLong crc = crc32(0, reinterpret_cast<const Bytef*>(type.data()), 4);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size()));
    put_be32(out, static_cast<std::uint32_t>(crc));
    return out;
}

/// A zlib stream of `count` × `block` zero bytes, made without compressing them all: after a full
/// flush deflate starts afresh, so every block of zeros compresses to the same bytes; the stream
/// ends with an empty final block and the Adler-32 of all the data.
std::string zlib_zeros(std::size_t block, std::size_t count) {
    const std::vector<Bytef> zeros(block, 0);
    z_stream z{};
    REQUIRE(deflateInit(&z, 9) == Z_OK);
    auto flush_block = [&] {
        std::string out(deflateBound(&z, static_cast<uLong>(block)) + 64, '\0');
        z.next_in = const_cast<Bytef*>(zeros.data());
        z.avail_in = static_cast<uInt>(block);
        z.next_out = reinterpret_cast<Bytef*>(out.data());
        z.avail_out = static_cast<uInt>(out.size());
        REQUIRE(deflate(&z, Z_FULL_FLUSH) == Z_OK);
        REQUIRE(z.avail_in == 0);
        out.resize(out.size() - z.avail_out);
        return out;
    };
    std::string stream = flush_block();  // zlib header + first block
    const std::string again = flush_block();
    REQUIRE(flush_block() == again);  // the claim above
    deflateEnd(&z);
    stream += again;
    for (std::size_t i = 2; i < count; ++i) stream += again;
    const uLong block_adler = adler32(adler32(0, nullptr, 0), zeros.data(), static_cast<uInt>(block));
    uLong adler = adler32(0, nullptr, 0);
    for (std::size_t i = 0; i < count; ++i) adler = adler32_combine(adler, block_adler, static_cast<z_off_t>(block));
    stream += std::string("\x03\x00", 2);  // final empty block (fixed Huffman: BFINAL, 01, EOB)
    put_be32(stream, static_cast<std::uint32_t>(adler));
    return stream;
}

/// A PNG with the given IHDR fields whose image data is `idat` (one chunk).
std::string png_with(std::uint32_t w, std::uint32_t h, int depth, int color_type, const std::string& idat,
                     bool interlaced = false) {
    std::string ihdr;
    put_be32(ihdr, w);
    put_be32(ihdr, h);
    ihdr += {static_cast<char>(depth), static_cast<char>(color_type), 0, 0, static_cast<char>(interlaced ? 1 : 0)};
    return std::string("\x89PNG\r\n\x1a\n", 8) + png_chunk("IHDR", ihdr) + png_chunk("IDAT", idat) +
           png_chunk("IEND", "");
}

/// Runs `decode` in a child process (io errors, hangs, crashes and its peak RSS observed).
mmalign::test::HostileOutcome in_child(const std::string& what, const std::function<void()>& decode,
                                       double seconds) {
    test::TempDir tmp;
    return mmalign::test::detail::run_in_child(
        what, [&](const fs::path&) { decode(); }, tmp.path / "unused",
        seconds * mmalign::test::detail::hostile_time_scale());
}

/// The JPEG's segments from SOS up to the next marker that is not RSTn or a stuffed 0xFF.
std::vector<std::pair<std::size_t, std::size_t>> jpeg_scans(const std::vector<char>& j) {
    std::vector<std::pair<std::size_t, std::size_t>> scans;
    auto u8 = [&](std::size_t i) { return static_cast<unsigned char>(j[i]); };
    std::size_t i = 2;
    while (i + 4 <= j.size() && u8(i) == 0xFF) {
        const unsigned m = u8(i + 1);
        if (m == 0xD9) break;
        const std::size_t len = std::size_t(u8(i + 2)) << 8 | u8(i + 3);
        std::size_t end = i + 2 + len;
        if (m == 0xDA) {
            while (end + 1 < j.size() && !(u8(end) == 0xFF && u8(end + 1) != 0 && (u8(end + 1) < 0xD0 || u8(end + 1) > 0xD7)))
                ++end;
            scans.emplace_back(i, end);
        }
        i = end;
    }
    return scans;
}

}  // namespace

TEST_CASE("load_image decodes BMP variants exactly like Pillow: top-down, 1/4/8-bit and grey palettes, 16-bit "
          "5-5-5/5-6-5, 32-bit bitfields, OS/2 header") {
    Expected ex{io::SafetensorsFile::open((decoder_dir / "expected.safetensors").string()), {}, {}};
    for (const std::string& k : ex.file.names()) {
        Entry en;
        en.dtype = ex.file.dtype(k);
        const Shape sh = ex.file.shape(k);
        for (int i = 0; i < sh.rank(); ++i) en.shape.push_back(sh[i]);
        en.data = reinterpret_cast<const char*>(ex.file.bytes(k).data());
        ex.entries[k] = en;
    }
    int bmp = 0, png = 0;
    for (const std::string& f : ex.files()) {
        CAPTURE(f);
        const Image ours = load_image((decoder_dir / f).string());
        const Image ref = ex.image(f + "|decoded");
        CHECK_MESSAGE(max_diff(ours, ref) == 0, f, ": ours ", dims(ours), ", Pillow ", dims(ref));
        (f.ends_with(".bmp") ? bmp : png)++;
    }
    CHECK(bmp >= 13);
    // The PNGs: Adam7 (with empty passes), 2/4-bit grey, tRNS keys; see the next test case.
    CHECK(png >= 10);
}

TEST_CASE("load_image decodes interlaced PNGs, low-depth grey and tRNS colour keys as Pillow (key compared by low "
          "byte)") {
    // The pixels are checked against Pillow in the test case above; here, what makes them special.
    const Image key = load_image((decoder_dir / "rgb16_key_6x4.png").string());
    REQUIRE(key.channels == 4);
    CHECK(key.at(1, 2, 3) == 0);    // high bytes 01 FF 1E = the key's low bytes: transparent
    CHECK(key.at(2, 3, 3) == 255);  // the key's own samples: opaque in Pillow
    CHECK(load_image((decoder_dir / "gray8_key_5x3.png").string()).channels == 1);  // grey key: no alpha
    CHECK(load_image((decoder_dir / "adam7_1x1.png").string()).pixels.size() == 3);
}

TEST_CASE("a top-down BMP (negative height) decodes to the same pixels as its bottom-up original") {
    std::vector<char> bmp = read_all(image_dir / "bmp24_21x33.bmp");
    const Image bottom_up = load_image((image_dir / "bmp24_21x33.bmp").string());
    const std::uint32_t offset = io::detail::le32(reinterpret_cast<const unsigned char*>(bmp.data()) + 10);
    const std::int32_t h = static_cast<std::int32_t>(io::detail::le32(reinterpret_cast<const unsigned char*>(bmp.data()) + 22));
    REQUIRE(h == 21);
    const std::size_t stride = 100;  // 33 × 3 bytes, padded to 4
    std::vector<char> flipped = bmp;
    for (std::int32_t y = 0; y < h; ++y)
        std::memcpy(flipped.data() + offset + stride * std::size_t(y), bmp.data() + offset + stride * std::size_t(h - 1 - y),
                    stride);
    const std::uint32_t neg = static_cast<std::uint32_t>(-h);
    for (int i = 0; i < 4; ++i) flipped[22 + std::size_t(i)] = static_cast<char>(neg >> (8 * i));
    const Image top_down = load_image_from_memory(as_bytes(flipped), "top_down.bmp");
    CHECK(max_diff(top_down, bottom_up) == 0);
    CHECK(max_diff(top_down, Expected::get().image("bmp24_21x33.bmp|decoded")) == 0);
}

TEST_CASE("a truncated BMP is refused as Pillow refuses it; only the last row's padding may be missing") {
    const std::vector<char> bmp = read_all(image_dir / "bmp24_21x33.bmp");
    // Pillow 13: the file minus its last (padding) byte opens; minus two bytes raises "image file is truncated".
    const std::vector<char> no_pad(bmp.begin(), bmp.end() - 1);
    CHECK(max_diff(load_image_from_memory(as_bytes(no_pad), "no_pad.bmp"),
                   Expected::get().image("bmp24_21x33.bmp|decoded")) == 0);
    for (const std::size_t cut : {bmp.size() - 2, bmp.size() / 2, std::size_t(60), std::size_t(20)}) {
        CAPTURE(cut);
        const std::vector<char> part(bmp.begin(), bmp.begin() + static_cast<std::ptrdiff_t>(cut));
        const std::string msg = io_error_of([&] { load_image_from_memory(as_bytes(part), "cut.bmp"); });
        CHECK(contains(msg, "'cut.bmp'"));
        CHECK_MESSAGE(contains(msg, "truncated file"), msg);
    }
    // RLE is named, not mistaken for raw pixels.
    std::vector<char> rle = bmp;
    rle[30] = 1;
    CHECK(contains(io_error_of([&] { load_image_from_memory(as_bytes(rle), "rle.bmp"); }), "RLE8"));
}

TEST_CASE("a PNG with a bad CRC before the image data is refused (Pillow: bad header checksum), IDAT CRCs too") {
    const std::vector<char> png = read_all(image_dir / "cat_crop.png");
    std::vector<char> bad_ihdr = png;
    bad_ihdr[29] = static_cast<char>(bad_ihdr[29] ^ 1);  // IHDR's CRC
    std::string msg = io_error_of([&] { load_image_from_memory(as_bytes(bad_ihdr), "bad_ihdr.png"); });
    CHECK(contains(msg, "'bad_ihdr.png'"));
    CHECK_MESSAGE(contains(msg, "IHDR: CRC error"), msg);
    // An ancillary chunk with a bad CRC before IDAT: Pillow raises as well.
    std::string text = png_chunk("tEXt", std::string("Comment\0hello", 13));
    text.back() = static_cast<char>(text.back() ^ 1);
    std::vector<char> bad_text(png.begin(), png.begin() + 33);
    bad_text.insert(bad_text.end(), text.begin(), text.end());
    bad_text.insert(bad_text.end(), png.begin() + 33, png.end());
    msg = io_error_of([&] { load_image_from_memory(as_bytes(bad_text), "bad_text.png"); });
    CHECK_MESSAGE(contains(msg, "tEXt: CRC error"), msg);
    // The IDAT's CRC (which Pillow does not check).
    const std::size_t idat_len = 23692;  // cat_crop.png: IHDR, one IDAT at byte 33, IEND
    std::vector<char> bad_idat = png;
    bad_idat[33 + 8 + idat_len] = static_cast<char>(bad_idat[33 + 8 + idat_len] ^ 1);
    msg = io_error_of([&] { load_image_from_memory(as_bytes(bad_idat), "bad_idat.png"); });
    CHECK_MESSAGE(contains(msg, "IDAT: CRC error"), msg);
    // A well-formed ancillary chunk is skipped.
    std::vector<char> good_text(png.begin(), png.begin() + 33);
    const std::string ok = png_chunk("tEXt", std::string("Comment\0hello", 13));
    good_text.insert(good_text.end(), ok.begin(), ok.end());
    good_text.insert(good_text.end(), png.begin() + 33, png.end());
    CHECK(max_diff(load_image_from_memory(as_bytes(good_text), "text.png"), Expected::get().image("cat_crop.png|decoded")) ==
          0);
}

TEST_CASE("a truncated PNG's message says why; a PNG cut after its image data opens, as in Pillow") {
    const std::vector<char> png = read_all(image_dir / "cat_crop.png");
    const std::vector<char> half(png.begin(), png.begin() + static_cast<std::ptrdiff_t>(png.size() / 2));
    const std::string msg = io_error_of([&] { load_image_from_memory(as_bytes(half), "half.png"); });
    CHECK(contains(msg, "load_image: 'half.png': PNG error: "));
    CHECK_MESSAGE(contains(msg, "truncated file ("), msg);
    // Without IEND (12 bytes) or even the IDAT CRC: Pillow 13 opens both.
    for (const std::size_t cut : {std::size_t(12), std::size_t(16)}) {
        const std::vector<char> part(png.begin(), png.end() - static_cast<std::ptrdiff_t>(cut));
        CHECK(max_diff(load_image_from_memory(as_bytes(part), "part.png"), Expected::get().image("cat_crop.png|decoded")) ==
              0);
    }
}

TEST_CASE("a PNG whose bytes cannot inflate to the image its header declares is refused before allocating "
          "(deflate expands at most 1032:1)") {
    // 8000 x 8000 RGBA, interlaced (its buffer would be needed whole): 256 MB of pixels from 300 KB.
    const std::string png = png_with(8000, 8000, 8, 6, zlib_zeros(100000, 1000), true);
    const std::vector<char> bytes = bytes_of(png);
    const auto o = in_child("short interlaced", [&] { load_image_from_memory(as_bytes(bytes), "short.png"); }, 1.0);
    CHECK(o.kind == mmalign::test::HostileOutcome::Kind::refused);
    CHECK_MESSAGE(contains(o.message, "PNG error: truncated file ("), o.message);
    CHECK_MESSAGE(contains(o.message, "bytes of image data the header declares)"), o.message);
    if (!mmalign::test::detail::hostile_sanitized()) CHECK(o.rss_mb < 50);
    // The same data under a size it can fill decodes: 100 MB of zeros is 1612 rows of 1 + 4 x 15500.
    const Image img = load_image_from_memory(as_bytes(bytes_of(png_with(15500, 1612, 8, 6, zlib_zeros(62001, 1612)))),
                                             "fits.png");
    CHECK(img.channels == 4);
}

TEST_CASE("a 1x1 PNG whose zlib stream inflates to 1.5 GiB decodes within 1 s and 200 MB, as Pillow decodes it") {
    const std::string idat = zlib_zeros(std::size_t(1) << 20, 1536);  // 1.5 GiB of zeros, ~1.5 MB
    const std::string png = png_with(1, 1, 8, 0, idat);
    MESSAGE("zlib bomb PNG: ", png.size(), " bytes");
    CHECK(png.size() < (std::size_t(2) << 20));
    const std::vector<char> bytes = bytes_of(png);
    Image img;
    const auto o = in_child("zlib bomb", [&] {
        img = load_image_from_memory(as_bytes(bytes), "bomb.png");
        if (img.pixels.size() != 1 || img.pixels[0] != 0) throw std::runtime_error("wrong pixels");
    }, 1.0);
    MESSAGE("decoded in ", o.seconds, " s, ", o.rss_mb, " MB new RSS");
    CHECK(o.kind == mmalign::test::HostileOutcome::Kind::accepted);
    CHECK(o.seconds < 1.0 * mmalign::test::detail::hostile_time_scale());
    if (!mmalign::test::detail::hostile_sanitized()) CHECK(o.rss_mb < 200);
}

TEST_CASE("a 32768x5461 16-bit RGB PNG decodes straight to 8 bits: the 537 MB output and little else; a lower "
          "max_decoded_bytes refuses it before allocating") {
    const std::size_t w = 32768, h = 5461;
    const std::string png = png_with(w, h, 16, 2, zlib_zeros(1 + w * 6, h));  // filter byte + 6 bytes a pixel
    const std::vector<char> bytes = bytes_of(png);
    MESSAGE("16-bit PNG: ", bytes.size(), " bytes");
    const double output_mb = double(w * h * 3) / (1024.0 * 1024.0);
    if (!mmalign::test::detail::hostile_sanitized()) {
        const auto o = in_child("16-bit", [&] {
            const Image img = load_image_from_memory(as_bytes(bytes), "rgb16.png");
            if (img.channels != 3 || img.width != index_t(w) || img.height != index_t(h) || img.pixels[12345] != 0)
                throw std::runtime_error("wrong image");
        }, 60.0);
        MESSAGE("decoded in ", o.seconds, " s, ", o.rss_mb, " MB new RSS (output ", output_mb,
                " MB; Pillow 13 peaks at 717 MB: it keeps RGB at 4 bytes a pixel)");
        CHECK(o.kind == mmalign::test::HostileOutcome::Kind::accepted);
        CHECK(o.rss_mb < output_mb + 64);
    }
    ImageLimits lim;
    lim.max_decoded_bytes = std::uint64_t(256) << 20;
    const std::string msg = io_error_of([&] { load_image_from_memory(as_bytes(bytes), "rgb16.png", lim); });
    CHECK_MESSAGE(contains(msg, "the decoded image needs 536838144 bytes, more than the 268435456 of "
                                "ImageLimits::max_decoded_bytes"),
                  msg);
}

TEST_CASE("a progressive JPEG with 20,000 scans is refused within 1 s (ImageLimits::max_jpeg_scans, 500)") {
    const std::vector<char> jpg = read_all(image_dir / "chelsea_422_progressive.jpg");
    const auto scans = jpeg_scans(jpg);
    REQUIRE(scans.size() >= 6);
    auto smallest = scans.front();
    for (const auto& s : scans)
        if (s.second - s.first < smallest.second - smallest.first) smallest = s;
    std::vector<char> many(jpg.begin(), jpg.begin() + static_cast<std::ptrdiff_t>(scans.back().second));
    for (int i = 0; i < 20000; ++i)
        many.insert(many.end(), jpg.begin() + static_cast<std::ptrdiff_t>(smallest.first),
                    jpg.begin() + static_cast<std::ptrdiff_t>(smallest.second));
    many.push_back(static_cast<char>(0xFF));
    many.push_back(static_cast<char>(0xD9));
    MESSAGE(scans.size(), " scans + 20000 copies of a ", smallest.second - smallest.first, "-byte scan: ", many.size(),
            " bytes");
    std::string msg;
    const auto o = in_child("20000 scans", [&] { load_image_from_memory(as_bytes(many), "scans.jpg"); }, 1.0);
    MESSAGE("refused in ", o.seconds, " s: ", o.message);
    CHECK(o.kind == mmalign::test::HostileOutcome::Kind::refused);
    CHECK(contains(o.message, "load_image: 'scans.jpg': JPEG error: more than 500 scans"));
    CHECK(o.seconds < 1.0 * mmalign::test::detail::hostile_time_scale());
    // The limit is what refuses it: 20,000 scans under a higher limit decode.
    ImageLimits lim;
    lim.max_jpeg_scans = 30000;
    const Image img = load_image_from_memory(as_bytes(many), "scans.jpg", lim);
    CHECK(img.width == 240);
    // The original file has its few scans and decodes under the default.
    CHECK(load_image((image_dir / "chelsea_422_progressive.jpg").string()).height == 160);
}

TEST_CASE("JPEG decoding stays within ImageLimits::max_decoded_bytes: the output before allocating, libjpeg's "
          "coefficient buffers of a progressive file while decoding") {
    ImageLimits lim;
    lim.max_decoded_bytes = 100000;  // astronaut_420.jpg: 232 × 232 × 3 = 161472 bytes
    std::string msg = io_error_of([&] { load_image((image_dir / "astronaut_420.jpg").string(), lim); });
    CHECK_MESSAGE(contains(msg, "the decoded image needs 161472 bytes, more than the 100000 of "
                                "ImageLimits::max_decoded_bytes"),
                  msg);
    // chelsea_422_progressive.jpg: 240 × 160 × 3 = 115200 bytes of output, and libjpeg holds
    // every coefficient (2 bytes each, 4:2:2: 2 × 240 × 160 of them) for a progressive file.
    lim.max_decoded_bytes = 115200 + 50000;
    msg = io_error_of([&] { load_image((image_dir / "chelsea_422_progressive.jpg").string(), lim); });
    CHECK_MESSAGE(contains(msg, "JPEG error: decoding needs more than the 50000 bytes left of "
                                "ImageLimits::max_decoded_bytes"),
                  msg);
    lim.max_decoded_bytes = 115200 + 400000;
    CHECK(load_image((image_dir / "chelsea_422_progressive.jpg").string(), lim).width == 240);
}

TEST_CASE("load_image_from_memory decodes what load_image decodes, naming the given source") {
    for (const char* f : {"astronaut_420.jpg", "cat_crop.png", "bmp8_19x29.bmp", "la16_11x13.png"}) {
        CAPTURE(f);
        const std::vector<char> b = read_all(image_dir / f);
        CHECK(max_diff(load_image_from_memory(as_bytes(b), f), load_image((image_dir / f).string())) == 0);
    }
    CHECK(io_error_of([] { load_image_from_memory({}, "nothing"); }) == "load_image: 'nothing': the file is empty");
    ImageLimits lim;
    lim.max_file_bytes = 1000;
    CHECK(contains(io_error_of([&] { load_image((image_dir / "cat_crop.png").string(), lim); }),
                   "bytes, more than the 1000 this reader accepts"));
}

namespace {
mmalign::test::HostileReader image_reader(const std::string& file, bool every_truncation_fails) {
    mmalign::test::HostileReader r;
    r.name = "load_image";
    r.valid = image_dir / file;
    r.read = [](const fs::path& f) { load_image(f.string()); };
    r.cap_bytes = ImageLimits{}.max_file_bytes;
    r.every_truncation_fails = every_truncation_fails;
    r.wrong_type = {"GIF89a\x01\x00\x01\x00\x00\x00\x00", "{\"size\": 224}", std::string("\x89PNG\r\n\x1a\n", 8),
                    "BM", std::string("\xFF\xD8\xFF", 3)};
    return r;
}
}  // namespace

TEST_CASE("load_image refuses every hostile variant of a JPEG in its own words (every truncation, as Pillow)") {
    mmalign::test::check_hostile_inputs(image_reader("astronaut_420.jpg", true));
}

TEST_CASE("load_image refuses every hostile variant of a PNG in its own words (a file cut after its image data "
          "opens, as in Pillow)") {
    mmalign::test::check_hostile_inputs(image_reader("cat_crop.png", false));
}

TEST_CASE("load_image refuses every hostile variant of a BMP in its own words (the last row's padding may be "
          "missing, as in Pillow)") {
    mmalign::test::check_hostile_inputs(image_reader("bmp24_21x33.bmp", false));
}

#endif  // MMALIGN_WITH_IMAGE
