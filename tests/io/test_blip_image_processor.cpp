// tests/io/test_blip_image_processor.cpp — BLIP's image preprocessing against transformers 5.25's
// BlipImageProcessorPil (Pillow 13.0.0): tests/fixtures/blip/, made by tools/make_blip_fixtures.py.
//
// Every model case folder holds its preprocessor_config.json (the Hub's / transformers 4's form)
// and processor_config.json (transformers 5's), and pixel_values of the images its expected.json
// lists; image_processor/ holds config files in both forms and, for every image of
// tests/fixtures/images, the uint8 resize BlipImageProcessorPil makes under a square int size and a
// height × width dict. Preprocessing starts from Pillow's decoded pixels
// (tests/fixtures/images/expected.safetensors), so it is checked bit for bit whatever the JPEG
// decoder; one test also starts from the files.
#include <doctest/doctest.h>

#if !defined(MMALIGN_WITH_IMAGE)
TEST_CASE("BLIP image processor tests are skipped: mmalign::image was not configured (needs libjpeg, libpng)") {
    MESSAGE("mmalign::image not available; install libjpeg62-turbo-dev and libpng-dev");
}
#else

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mmalign/io/blip_image_processor.hpp"
#include "mmalign/io/clip_image_processor.hpp"
#include "mmalign/io/image.hpp"
#include "mmalign/io/json_fields.hpp"
#include "mmalign/io/safetensors.hpp"
#include "support/errors.hpp"
#include "support/temp_dir.hpp"

using namespace mmalign;
using namespace mmalign::io;
using mmalign::test::io_error_of;
namespace fs = std::filesystem;

namespace {

const fs::path fixtures = fs::path(MMALIGN_FIXTURE_DIR);
const fs::path blip_dir = fixtures / "blip";
const fs::path processor_dir = blip_dir / "image_processor";

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

/// Pillow's decoded pixels of a tests/fixtures/images file ([H, W, C] U8 "<file>|decoded").
Image decoded(const SafetensorsFile& images, const std::string& file) {
    const std::string key = file + "|decoded";
    REQUIRE_MESSAGE(images.contains(key), "images/expected.safetensors has no ", key);
    REQUIRE(images.dtype(key) == "U8");
    const Shape s = images.shape(key);
    REQUIRE(s.rank() == 3);
    Image img(s[0], s[1], s[2]);
    const auto bytes = images.bytes(key);
    REQUIRE(bytes.size() == img.pixels.size());
    std::memcpy(img.pixels.data(), bytes.data(), bytes.size());
    return img;
}

const SafetensorsFile& image_fixture() {
    static const SafetensorsFile f = SafetensorsFile::open((fixtures / "images" / "expected.safetensors").string());
    return f;
}

/// Max |ours − HF| between pixel_values and an F32 or U8 entry of the same element count and
/// shape (the entry may lack ours' leading batch axis of 1); -1 when the shapes differ.
double max_diff(const Tensor<float>& ours, const SafetensorsFile& file, const std::string& key) {
    const Shape s = file.shape(key);
    std::vector<index_t> theirs, mine;
    for (int i = 0; i < s.rank(); ++i) theirs.push_back(s[i]);
    for (int i = 0; i < ours.shape().rank(); ++i) mine.push_back(ours.dim(i));
    if (mine.size() == theirs.size() + 1 && mine[0] == 1) mine.erase(mine.begin());
    if (mine != theirs) return -1;
    const auto bytes = file.bytes(key);
    const std::string dtype = file.dtype(key);
    double m = 0;
    for (index_t i = 0; i < ours.numel(); ++i) {
        float ref;
        if (dtype == "U8")
            ref = static_cast<float>(static_cast<std::uint8_t>(bytes[static_cast<std::size_t>(i)]));
        else
            std::memcpy(&ref, bytes.data() + 4 * i, 4);
        m = std::max(m, std::abs(double(ours.data()[i]) - double(ref)));
    }
    return m;
}

/// The model case folders (those with an expected.json), in name order.
std::vector<fs::path> case_dirs() {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(blip_dir))
        if (e.is_directory() && fs::exists(e.path() / "expected.json")) out.push_back(e.path());
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::string> case_images(const fs::path& dir) {
    const nlohmann::json j = read_json_file((dir / "expected.json").string());
    std::vector<std::string> out;
    for (const auto& p : j.at("images")) {
        const std::string s = p.get<std::string>();
        REQUIRE(s.starts_with("images/"));
        out.push_back(s.substr(7));
    }
    return out;
}

void same_config(const ImageProcessorConfig& a, const ImageProcessorConfig& b) {
    CHECK(a.do_resize == b.do_resize);
    CHECK(a.size.shortest_edge == b.size.shortest_edge);
    CHECK(a.size.height == b.size.height);
    CHECK(a.size.width == b.size.width);
    CHECK(a.resample == b.resample);
    CHECK(a.do_center_crop == b.do_center_crop);
    CHECK(a.do_rescale == b.do_rescale);
    CHECK(a.rescale_factor == b.rescale_factor);
    CHECK(a.do_normalize == b.do_normalize);
    CHECK(a.image_mean == b.image_mean);
    CHECK(a.image_std == b.image_std);
    CHECK(a.do_convert_rgb == b.do_convert_rgb);
}

}  // namespace

TEST_CASE("BlipImageProcessorConfig defaults are BlipImageProcessorPil's: 384x384 bicubic, no crop, CLIP mean/std") {
    const BlipImageProcessorConfig d;
    CHECK(d.do_resize);
    CHECK(d.size.shortest_edge == 0);
    CHECK(d.size.height == 384);
    CHECK(d.size.width == 384);
    CHECK(d.resample == Resample::bicubic);
    CHECK_FALSE(d.do_center_crop);
    CHECK(d.do_rescale);
    CHECK(d.rescale_factor == 1.0 / 255.0);
    CHECK(d.do_normalize);
    CHECK(d.image_mean == std::array<double, 3>{0.48145466, 0.4578275, 0.40821073});
    CHECK(d.image_std == std::array<double, 3>{0.26862954, 0.26130258, 0.27577711});
    CHECK(d.do_convert_rgb);

    test::TempDir tmp;
    const auto empty = load_blip_image_processor_config(tmp.file("preprocessor_config.json", "{}"));
    same_config(empty, d);
    // an image of any shape becomes [1, 3, 384, 384]
    Image img(5, 9, 3, 77);
    const Tensor<float> pv = preprocess({img}, empty);
    CHECK(pv.dim(0) == 1);
    CHECK(pv.dim(1) == 3);
    CHECK(pv.dim(2) == 384);
    CHECK(pv.dim(3) == 384);
}

TEST_CASE("an int size is a square for BLIP and a shortest edge for CLIP, and both file forms read the same fields") {
    const auto legacy = load_blip_image_processor_config((processor_dir / "configs" / "legacy_int_size.json").string());
    CHECK(legacy.size.shortest_edge == 0);
    CHECK(legacy.size.height == 24);
    CHECK(legacy.size.width == 24);
    CHECK_FALSE(legacy.do_center_crop);
    const auto v5 = load_blip_image_processor_config((processor_dir / "configs" / "processor_v5.json").string());
    same_config(v5, legacy);

    const auto clip = load_clip_image_processor_config((processor_dir / "configs" / "square_uint8.json").string());
    CHECK(clip.size.shortest_edge == 24);
    CHECK(clip.size.height == 0);
    const auto blip = load_blip_image_processor_config((processor_dir / "configs" / "square_uint8.json").string());
    CHECK(blip.size.shortest_edge == 0);
    CHECK(blip.size.height == 24);
    CHECK(blip.size.width == 24);
    CHECK_FALSE(blip.do_rescale);
    CHECK_FALSE(blip.do_normalize);

    const auto rect = load_blip_image_processor_config((processor_dir / "configs" / "rect_uint8.json").string());
    CHECK(rect.size.height == 17);
    CHECK(rect.size.width == 23);

    // every model case: preprocessor_config.json and processor_config.json agree
    for (const fs::path& dir : case_dirs()) {
        CAPTURE(dir.string());
        same_config(load_blip_image_processor_config((dir / "preprocessor_config.json").string()),
                    load_blip_image_processor_config((dir / "processor_config.json").string()));
    }
}

TEST_CASE("BLIP preprocess equals BlipImageProcessorPil pixel_values exactly in every fixture case, from both config "
          "files") {
    const SafetensorsFile& images = image_fixture();
    int cases = 0, compared = 0;
    double worst = 0;
    for (const fs::path& dir : case_dirs()) {
        CAPTURE(dir.string());
        const SafetensorsFile expected = SafetensorsFile::open((dir / "expected.safetensors").string());
        std::vector<Image> batch;
        for (const std::string& f : case_images(dir)) batch.push_back(decoded(images, f));
        for (const char* file : {"preprocessor_config.json", "processor_config.json"}) {
            CAPTURE(file);
            const auto cfg = load_blip_image_processor_config((dir / file).string());
            const Tensor<float> pv = preprocess(batch, cfg);
            const double d = max_diff(pv, expected, "pixel_values");
            CHECK_MESSAGE(d == 0.0, "max |ours - HF| = ", d);
            worst = std::max(worst, d);
            ++compared;
        }
        ++cases;
    }
    MESSAGE(cases, " cases, ", compared, " pixel_values batches compared, max |ours - HF| = ", worst);
    CHECK(cases == 6);
}

TEST_CASE("BLIP resize equals BlipImageProcessorPil on every fixture image, square int size and height x width") {
    const SafetensorsFile& images = image_fixture();
    const SafetensorsFile expected = SafetensorsFile::open((processor_dir / "expected.safetensors").string());
    std::map<std::string, BlipImageProcessorConfig> configs;
    int n = 0;
    double worst = 0;
    for (const std::string& key : expected.names()) {
        CAPTURE(key);
        const auto bar = key.find('|');
        REQUIRE(bar != std::string::npos);
        const std::string file = key.substr(0, bar), config = key.substr(bar + 1);
        if (!configs.count(config))
            configs[config] = load_blip_image_processor_config((processor_dir / "configs" / (config + ".json")).string());
        REQUIRE(expected.dtype(key) == "U8");
        const Tensor<float> pv = preprocess({decoded(images, file)}, configs[config]);
        const double d = max_diff(pv, expected, key);
        CHECK_MESSAGE(d == 0.0, "max |ours - HF| = ", d);
        worst = std::max(worst, d);
        ++n;
    }
    MESSAGE(n, " images x configs compared, max |ours - HF| = ", worst);
    CHECK(n >= 56);
    CHECK(configs.size() == 2);
}

TEST_CASE("load_image then BLIP preprocess matches HF from the file: exact for PNG/BMP, within one level for JPEG") {
    double worst_jpeg = 0, worst_other = 0;
    int n = 0;
    for (const fs::path& dir : case_dirs()) {
        const SafetensorsFile expected = SafetensorsFile::open((dir / "expected.safetensors").string());
        const auto cfg = load_blip_image_processor_config((dir / "preprocessor_config.json").string());
        const std::vector<std::string> files = case_images(dir);
        bool any_jpeg = false;
        std::vector<Image> batch;
        for (const std::string& f : files) {
            batch.push_back(load_image((fixtures / "images" / f).string()));
            any_jpeg = any_jpeg || f.ends_with(".jpg");
        }
        const double d = max_diff(preprocess(batch, cfg), expected, "pixel_values");
        CAPTURE(dir.string());
        // one uint8 level after normalisation: (1/255)/std. A JPEG decoded by another libjpeg may
        // differ by a level (test_image.cpp pins the system libjpeg-turbo to exact).
        const double level = cfg.rescale_factor / *std::min_element(cfg.image_std.begin(), cfg.image_std.end());
        if (any_jpeg) {
            CHECK(d >= 0);
            CHECK(d <= level * 1.0001);
            worst_jpeg = std::max(worst_jpeg, d);
        } else {
            CHECK(d == 0.0);
            worst_other = std::max(worst_other, d);
        }
        ++n;
    }
    MESSAGE(n, " cases from the files: max |ours - HF| = ", worst_jpeg, " (batches with a JPEG), ", worst_other,
            " (PNG/BMP only)");
    CHECK(n == 6);
}

TEST_CASE("malformed BLIP image processor configs are rejected naming the file and the field, in both file forms") {
    test::TempDir tmp;
    struct Case {
        std::string json, field, what;
    };
    const Case cases[] = {
        {R"({"size": "384"})", "size", "found string"},
        {R"({"size": {"longest_edge": 5}})", "size", "longest_edge"},
        {R"({"size": {"height": 0, "width": 384}})", "size.height", "must be positive, found 0"},
        {R"({"size": [384]})", "size", "1 elements"},
        {R"({"resample": 1})", "resample", "LANCZOS"},
        {R"({"do_convert_rgb": 1})", "do_convert_rgb", "boolean"},
        {R"({"do_center_crop": true})", "crop_size", "no default"},
        {R"({"image_mean": [0.5, 0.5]})", "image_mean", "2 elements"},
        {R"({"image_std": [0.5, "x", 0.5]})", "image_std[1]", "number"},
        {R"({"rescale_factor": null, "do_pad": true})", "do_pad", "not supported"},
        {R"({"image_processor": 3})", "image_processor", "object"},
        {R"({"image_processor": {"size": {"height": 24}}})", "image_processor.size", "height, width"},
        {R"({"image_processor": {"do_rescale": "no"}})", "image_processor.do_rescale", "boolean"},
        {R"({"image_processor": {"image_std": [1, 2, []]}})", "image_processor.image_std[2]", "number"},
        {R"({"processor_class": "BlipProcessor", "image_processor": {"resample": 4}})", "image_processor.resample",
         "BOX"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.json);
        const std::string p = tmp.file("preprocessor_config.json", c.json);
        const std::string msg = io_error_of([&] { load_blip_image_processor_config(p); });
        CHECK(contains(msg, p));
        CHECK_MESSAGE(contains(msg, "'" + c.field + "'"), msg);
        CHECK_MESSAGE(contains(msg, c.what), msg);
    }
    CHECK(contains(io_error_of([&] { load_blip_image_processor_config(tmp.file("bad.json", "{\"size\": ")); }),
                   "not valid JSON"));
    CHECK(contains(io_error_of([&] { load_blip_image_processor_config(tmp.file("list.json", "[1, 2]")); }),
                   "expected a JSON object"));
    CHECK(contains(io_error_of([&] { load_blip_image_processor_config(tmp / "none.json"); }), "none.json"));
    // null keeps the default, as transformers treats None
    CHECK(load_blip_image_processor_config(tmp.file("null.json", R"({"size": null, "image_mean": null})")).size.height ==
          384);
}

TEST_CASE("blip_image_processor_config_path prefers preprocessor_config.json, falls back to processor_config.json, "
          "and names the folder when neither exists") {
    test::TempDir tmp;
    const std::string err = io_error_of([&] { blip_image_processor_config_path(tmp.path.string()); });
    CHECK(contains(err, tmp.path.string()));
    CHECK(contains(err, "processor_config.json"));
    const std::string v5 = tmp.file("processor_config.json", R"({"image_processor": {"size": 30}})");
    CHECK(blip_image_processor_config_path(tmp.path.string()) == v5);
    CHECK(load_blip_image_processor_config(blip_image_processor_config_path(tmp.path.string())).size.width == 30);
    const std::string v4 = tmp.file("preprocessor_config.json", R"({"size": {"height": 20, "width": 40}})");
    CHECK(blip_image_processor_config_path(tmp.path.string()) == v4);
    CHECK(load_blip_image_processor_config(blip_image_processor_config_path(tmp.path.string())).size.width == 40);
}

#endif  // MMALIGN_WITH_IMAGE
