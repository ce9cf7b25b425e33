// Tests of io/hf_config.hpp: module Configs read from (and written to) Hugging Face config.json
// files through their one field table — presets keep HF's class defaults for absent fields, bad
// values are named with file and field, absurd sizes are refused, and writing gives back HF's values.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <filesystem>

#include <string>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/encoders/text_transformer.hpp"
#include "mmalign/encoders/vision_transformer.hpp"
#include "mmalign/io/hf_config.hpp"
#include "mmalign/models/clip.hpp"

using namespace mmalign;
using Be = CpuBackend<float>;
using VitConfig = VisionTransformer<Be>::Config;
using ClipConfig = Clip<Be>::Config;

namespace {

const std::string fixtures = std::string(MMALIGN_FIXTURE_DIR);

std::string error_of(auto&& f) {
    try {
        f();
    } catch (const IoError& e) {
        return e.what();
    }
    return "";
}

/// Every field `written` holds equals the one in HF's file (hidden_act by its meaning: gelu_new
/// and gelu_pytorch_tanh are one function), descending into nested objects.
void check_written_matches(const nlohmann::json& written, const nlohmann::json& hf, const std::string& path) {
    for (const auto& [key, value] : written.items()) {
        CAPTURE(path + key);
        if (!hf.contains(key)) continue;  // a field HF's file leaves at its class default
        if (value.is_object()) {
            check_written_matches(value, hf[key], path + key + ".");
        } else if (key == "hidden_act") {
            CHECK(io::parse_activation(value.get<std::string>(), key) == io::parse_activation(hf[key].get<std::string>(), key));
        } else if (value.is_number_float() || hf[key].is_number_float()) {
            CHECK(value.get<double>() == hf[key].get<double>());
        } else {
            CHECK(value == hf[key]);
        }
    }
}

}  // namespace

TEST_CASE("a preset keeps HF's class defaults for the fields a config.json leaves out, and reads the rest") {
    VitConfig blip2 = VitConfig::blip2();
    io::read_hf_fields(blip2, nlohmann::json{{"hidden_size", 64}, {"num_attention_heads", 4}}, "config.json");
    CHECK(blip2.hidden == 64);
    CHECK(blip2.heads == 4);
    CHECK(blip2.image_size == 224);  // Blip2VisionConfig's defaults
    CHECK(blip2.patch_size == 14);
    CHECK(blip2.layers == 39);
    CHECK(blip2.eps == 1e-6);
    CHECK(blip2.activation == Activation::gelu);
    CHECK(blip2.qkv_bias == QkvBias::all);
    io::read_hf_fields(blip2, nlohmann::json{{"qkv_bias", false}}, "config.json");
    CHECK(blip2.qkv_bias == QkvBias::none);
    VitConfig blip = VitConfig::blip();
    io::read_hf_fields(blip, io::load_hf_config(fixtures + "/vit/blip/config.json"));
    CHECK(blip.image_size == 12);
    CHECK(blip.mlp_hidden == 24);
    CHECK(blip.channels == 3);  // BlipVisionConfig has no num_channels: three, as its patch convolution
    CHECK(blip.patch_bias);
}

TEST_CASE("bad config values name the file and the field: wrong type, nested non-object, sizes out of range, inconsistent sizes") {
    auto read = [](const nlohmann::json& j) {
        ClipConfig c;
        io::read_hf_fields(c, j, "config.json");
    };
    CHECK(error_of([&] { read({{"text_config", {{"hidden_size", 1.5}}}}); }) ==
          "config.json.text_config.hidden_size: expected an integer, found 1.5");
    CHECK(error_of([&] { read({{"vision_config", {{"hidden_act", 3}}}}); }) ==
          "config.json.vision_config.hidden_act: expected a string, found number");
    CHECK(error_of([&] { read({{"vision_config", {{"hidden_act", "swish"}}}}); })
              .starts_with("config.json.vision_config.hidden_act: unsupported hidden_act \"swish\""));
    CHECK(error_of([&] { read({{"text_config", "clip"}}); }) == "config.json.text_config: expected an object, found string");
    CHECK(error_of([&] { read({{"text_config", {{"hidden_size", 0}}}}); }) ==
          "config.json: text_config.hidden_size must be positive, found 0");
    CHECK(error_of([&] { read({{"vision_config", {{"num_hidden_layers", -1}}}}); }) ==
          "config.json: vision_config.num_hidden_layers must be >= 0, found -1");
    CHECK(error_of([&] { read({{"text_config", {{"vocab_size", 4'000'000'000LL}}}}); }) ==
          "config.json: text_config.vocab_size 4000000000 exceeds 16777216, larger than any model has");
    CHECK(error_of([&] { read({{"text_config", {{"hidden_size", 30}, {"num_attention_heads", 4}}}}); }) ==
          "config.json: text_config.hidden_size 30 is not a multiple of num_attention_heads 4");
    // Values beyond the integer type are refused before any conversion (found by fuzzing: a float
    // cast out of range is undefined; 2^64 − 1 read as int64 wrapped to −1).
    CHECK(error_of([&] { read({{"text_config", {{"hidden_size", 6.7e53}}}}); }) ==
          "config.json.text_config.hidden_size: expected an integer, found 6.7e+53");
    CHECK(error_of([&] { read({{"text_config", {{"hidden_size", 18446744073709551615ULL}}}}); }) ==
          "config.json.text_config.hidden_size: 18446744073709551615 is out of range");
    CHECK(error_of([&] { read({{"text_config", {{"hidden_size", 64.0}}}}); }).empty());
    CHECK(error_of([&] { read(nlohmann::json::array()); }) == "config.json: expected a JSON object, found array");
    CHECK(error_of([&] { read({{"projection_dim", 8}}); }).empty());
}

TEST_CASE("a JSON configuration must be a regular file of bounded size: a directory or FIFO is refused without blocking") {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / "mmalign_test_json_file";
    fs::remove_all(dir);
    fs::create_directories(dir / "config.json");
    CHECK(error_of([&] { (void)io::read_json_file((dir / "config.json").string()); })
              .ends_with("config.json': a directory, not a regular file"));
    const std::string fifo = (dir / "fifo.json").string();
    REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
    CHECK(error_of([&] { (void)io::read_json_file(fifo); }).ends_with("fifo.json': a FIFO (named pipe), not a regular file"));
    CHECK(error_of([&] { (void)io::read_json_file((dir / "absent.json").string()); }).ends_with("absent.json': no such file"));
    fs::remove_all(dir);
}

TEST_CASE("sizes that pass one by one but whose product is absurd are refused before anything is allocated") {
    // image 2^24 / patch 1 is 2^48 tokens: their product would wrap the element count around.
    VitConfig v = VitConfig::blip();
    const std::string vit = error_of([&] {
        io::read_hf_fields(v, {{"image_size", 16777216}, {"patch_size", 1}, {"hidden_size", 65536},
                                {"num_attention_heads", 1}, {"num_hidden_layers", 0}, {"intermediate_size", 1}},
                           "config.json");
    });
    CHECK(vit.starts_with("config.json: image_size 16777216 / patch_size 1 gives"));
    CHECK(vit.find("more than 2^32 position-table elements") != std::string::npos);
    ClipConfig c;
    const std::string text = error_of([&] {
        io::read_hf_fields(c, {{"text_config", {{"vocab_size", 16777216}, {"hidden_size", 4096}, {"num_attention_heads", 8}}}},
                           "config.json");
    });
    CHECK(text.find("more than 2^32 elements") != std::string::npos);
    // The Shape a wrapped count would have come from throws instead of reporting a small size.
    CHECK_THROWS_AS(Shape({1, index_t(1) << 48, 65536}).numel(), ShapeError);
}

TEST_CASE("writing a Config gives back the values of the config.json it was read from (CLIP, BLIP, BLIP-2)") {
    {
        const io::HfConfig hf = io::load_clip_config(fixtures + "/clip/odd_grid_gelu/config.json");
        const nlohmann::json written = io::to_hf_json(ClipConfig::from_hf(hf));
        CHECK(written["text_config"]["max_position_embeddings"] == 12);
        check_written_matches(written, hf.json, "");
        ClipConfig again;
        io::read_hf_fields(again, written, "written");
        CHECK(io::to_hf_json(again) == written);
    }
    for (const char* name : {"blip", "blip2", "blip2_no_qkv_bias"}) {
        CAPTURE(name);
        const io::HfConfig hf = io::load_hf_config(fixtures + "/vit/" + name + "/config.json");
        VitConfig c = std::string(name) == "blip" ? VitConfig::blip() : VitConfig::blip2();
        io::read_hf_fields(c, hf);
        check_written_matches(io::to_hf_json(c), hf.json, "");
    }
}
