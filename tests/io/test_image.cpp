// tests/io/test_image.cpp — image decoding, Pillow's resize and HF's CLIP preprocessing against
// Pillow 13.0.0 / transformers 5.24 (tests/fixtures/images/, made by tools/make_image_fixtures.py).
//
// expected.safetensors holds, per fixture file, Pillow's decoded pixels, its convert("RGB"),
// transformers' convert_to_rgb, Pillow resizes and CLIPImageProcessorPil pixel_values for the
// configs in configs/*.json. Resize and preprocessing start from Pillow's decoded pixels, so they
// are checked bit for bit whatever the JPEG decoder; the end-to-end test starts from the file.
// The entries are U8 and F32, read through io::SafetensorsFile.
#include <doctest/doctest.h>

#if !defined(MMALIGN_WITH_IMAGE)
// Built without mmalign::image (libjpeg or stb_image.h missing): nothing to test.
TEST_CASE("image tests are skipped: mmalign::image was not configured (needs libjpeg and stb_image.h)") {
    MESSAGE("mmalign::image not available; install libjpeg62-turbo-dev and libstb-dev");
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
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/errors.hpp"
#include "mmalign/io/clip_image_processor.hpp"
#include "mmalign/io/image.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/io/pillow_resize.hpp"
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
        {R"({"size": 0})", "size", "1 <= value"},
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
    // PNG IHDR width/height at bytes 16..23 (stb_image does not check chunk CRCs)
    std::vector<char> big_png = png;
    big_png[16] = 0, big_png[17] = 1, big_png[18] = 0, big_png[19] = 0;  // width 65536
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

#endif  // MMALIGN_WITH_IMAGE
