// Property: Clip::from_pretrained compares every size of config.json with the checkpoint's header
// shapes, and the parameter count it describes with the values the checkpoint holds, before the
// model is allocated: a contradicting field is named with the tensor it contradicts, within a few
// MB of memory (the old loader allocated the whole model first), and config.json itself is refused
// by kind, size and content as every reader is (tests/support/hostile_inputs.hpp).
#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/models/clip.hpp"
#include "support/errors.hpp"
#include "support/hostile_inputs.hpp"
#include "support/temp_dir.hpp"

using namespace mmalign;
using Be = CpuBackend<float>;
namespace fs = std::filesystem;
using mmalign::test::TempDir;

namespace {

const fs::path fixtures = fs::path(MMALIGN_FIXTURE_DIR) / "clip";

/// A copy of the tiny CLIP folder whose config.json has `edit` applied; returns the folder.
std::string edited_folder(const TempDir& tmp, const std::function<void(nlohmann::json&)>& edit) {
    const fs::path dir = tmp.path / "clip";
    fs::copy(fixtures / "tiny_quick_gelu", dir, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    nlohmann::json j;
    std::ifstream(dir / "config.json") >> j;
    edit(j);
    std::ofstream(dir / "config.json", std::ios::trunc) << j.dump(2);
    return dir.string();
}

/// from_pretrained in a child process: how it ended and its peak new RSS (MB).
mmalign::test::HostileOutcome load_in_child(const std::string& dir) {
    return mmalign::test::detail::run_in_child(
        "load", [](const fs::path& d) { Be be; (void)Clip<Be>::from_pretrained(be, d.string()); }, dir,
        10.0 * mmalign::test::detail::hostile_time_scale());
}

}  // namespace

TEST_CASE("parameter_count is exactly the number of values the model allocates, for every CLIP fixture") {
    for (const char* name : {"tiny_quick_gelu", "odd_grid_gelu", "single_head_relu"}) {
        INFO(name);
        const auto c = Clip<Be>::Config::from_hf(io::load_clip_config((fixtures / name / "config.json").string()));
        Clip<Be> m(c);
        double n = 0;
        m.visit([&](const std::string&, auto& p) { n += double(p.value.numel()); });
        CHECK(c.parameter_count() == n);
        // And the fixture's checkpoint passes the checks: no false refusal.
        Be be;
        CHECK_NOTHROW((void)Clip<Be>::from_pretrained(be, (fixtures / name).string()));
    }
}

TEST_CASE("hidden_size 8192 is named with the tensor it contradicts, before the model is allocated") {
    TempDir tmp;
    const std::string dir = edited_folder(tmp, [](nlohmann::json& j) { j["vision_config"]["hidden_size"] = 8192; });
    const auto o = load_in_child(dir);
    REQUIRE(o.kind == mmalign::test::HostileOutcome::Kind::refused);
    CHECK(o.message == dir + "/config.json: vision_config.hidden_size 8192 does not match model.safetensors's "
                             "vision_model.embeddings.patch_embedding.weight [32, 3, 8, 8]");
    // The model it describes is 2 layers of 4·8192² + 2·8192·64 weights: over 2 GB of float. The
    // refusal must come from the header alone.
    if (!mmalign::test::detail::hostile_sanitized()) CHECK(o.rss_mb < 64.0);
}

TEST_CASE("each size field of config.json that contradicts the checkpoint is named with its tensor") {
    struct Case {
        const char* tower;  // "" for the top level
        const char* key;
        std::int64_t value;
        std::string message;  // after "<dir>/config.json: "
    };
    const std::vector<Case> cases = {
        {"vision_config", "num_channels", 4,
         "vision_config.num_channels 4 does not match model.safetensors's vision_model.embeddings.patch_embedding.weight [32, 3, 8, 8]"},
        {"vision_config", "patch_size", 16,
         "vision_config.patch_size 16 does not match model.safetensors's vision_model.embeddings.patch_embedding.weight [32, 3, 8, 8]"},
        {"vision_config", "image_size", 64,
         "vision_config.image_size 64 with patch_size 8 (65 positions) does not match model.safetensors's "
         "vision_model.embeddings.position_embedding.weight [17, 32]"},
        {"vision_config", "intermediate_size", 128,
         "vision_config.intermediate_size 128 does not match model.safetensors's vision_model.encoder.layers.0.mlp.fc1.weight [64, 32]"},
        {"vision_config", "num_hidden_layers", 24,
         "vision_config.num_hidden_layers 24 does not match model.safetensors, which holds 2 layers "
         "(vision_model.encoder.layers.0 to vision_model.encoder.layers.1)"},
        {"text_config", "vocab_size", 1000000,
         "text_config.vocab_size 1000000 does not match model.safetensors's text_model.embeddings.token_embedding.weight [99, 32]"},
        {"text_config", "max_position_embeddings", 77,
         "text_config.max_position_embeddings 77 does not match model.safetensors's text_model.embeddings.position_embedding.weight [16, 32]"},
        {"text_config", "hidden_size", 4096,
         "text_config.hidden_size 4096 does not match model.safetensors's text_model.embeddings.token_embedding.weight [99, 32]"},
        {"text_config", "intermediate_size", 96,
         "text_config.intermediate_size 96 does not match model.safetensors's text_model.encoder.layers.0.mlp.fc1.weight [48, 32]"},
        {"text_config", "num_hidden_layers", 1,
         "text_config.num_hidden_layers 1 does not match model.safetensors, which holds 2 layers "
         "(text_model.encoder.layers.0 to text_model.encoder.layers.1)"},
        {"", "projection_dim", 512,
         "projection_dim 512 does not match model.safetensors's visual_projection.weight [16, 32]"},
    };
    for (const Case& c : cases) {
        INFO(c.tower << "." << c.key << " = " << c.value);
        TempDir tmp;
        const std::string dir = edited_folder(tmp, [&](nlohmann::json& j) { (*c.tower ? j[c.tower] : j)[c.key] = c.value; });
        Be be;
        CHECK(mmalign::test::io_error_of([&] { (void)Clip<Be>::from_pretrained(be, dir); }) == dir + "/config.json: " + c.message);
    }
}

TEST_CASE("a size of 2^64 - 1 in any tower is out of range, not a wrapped -1") {
    for (const char* tower : {"vision_config", "text_config"})
        for (const char* key : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"}) {
            INFO(tower << "." << key);
            TempDir tmp;
            const std::string dir =
                edited_folder(tmp, [&](nlohmann::json& j) { j[tower][key] = std::uint64_t(18446744073709551615ULL); });
            Be be;
            CHECK(mmalign::test::io_error_of([&] { (void)Clip<Be>::from_pretrained(be, dir); }) ==
                  dir + "/config.json." + tower + "." + key + ": 18446744073709551615 is out of range");
        }
}

TEST_CASE("a config larger than its checkpoint's values is refused by the memory estimate, before allocating") {
    // A checkpoint without the tensors the shape table lists: only the parameter count can tell.
    TempDir tmp;
    const std::string dir = edited_folder(tmp, [](nlohmann::json& j) { j["vision_config"]["hidden_size"] = 4096; });
    Tensor<float> scale(Shape{});  // []
    io::save_safetensors(dir + "/model.safetensors", {{"logit_scale", scale.view()}});
    const auto c = Clip<Be>::Config::from_hf(io::load_clip_config(dir + "/config.json"));
    const auto o = load_in_child(dir);
    REQUIRE(o.kind == mmalign::test::HostileOutcome::Kind::refused);
    const long long n = static_cast<long long>(c.parameter_count());
    CHECK(o.message == dir + "/config.json: its sizes describe a CLIP model of " + std::to_string(n) + " parameters (" +
                           std::to_string(static_cast<long long>(double(n) * 4 / 1048576)) +
                           " MiB of float), more than the 1 values model.safetensors holds");
    if (!mmalign::test::detail::hostile_sanitized()) CHECK(o.rss_mb < 64.0);
}

TEST_CASE("CLIP's config.json refuses every hostile input by kind, size and content, in one line naming it") {
    // The fixture's config.json without its final newline, so that every proper prefix is invalid.
    TempDir tmp;
    const std::string dir = edited_folder(tmp, [](nlohmann::json&) {});
    std::ofstream(dir + "/config.json", std::ios::trunc)
        << nlohmann::json::parse(mmalign::test::detail::read_bytes(fixtures / "tiny_quick_gelu" / "config.json")).dump(2);
    mmalign::test::HostileReader r;
    r.name = "Clip::from_pretrained (config.json)";
    r.valid = fs::path(dir) / "config.json";
    r.copy_folder = true;
    r.read = [](const fs::path& f) { Be be; (void)Clip<Be>::from_pretrained(be, f.parent_path().string()); };
    r.cap_bytes = io::max_json_config_bytes;
    r.every_truncation_fails = true;  // a prefix of a JSON object is never JSON
    // Another file of the folder in config.json's place: the preprocessor's JSON object reads as a
    // config of CLIPConfig's defaults (ViT-B/32, 150M parameters), which the checkpoint refuses
    // before any of it is allocated; the checkpoint's bytes are not JSON.
    r.wrong_type = {R"({"crop_size": 224, "do_center_crop": true, "image_processor_type": "CLIPImageProcessor", "size": 224})",
                    mmalign::test::detail::read_bytes(fixtures / "tiny_quick_gelu" / "model.safetensors").substr(0, 4096),
                    "[1, 2, 3]", "18446744073709551615"};
    mmalign::test::check_hostile_inputs(r);
}

TEST_CASE("config.json that is a directory, /dev/zero or 200 MB says so, within a second") {
    TempDir tmp;
    const std::string dir = edited_folder(tmp, [](nlohmann::json&) {});
    const std::string config = dir + "/config.json";
    auto error_now = [&] {
        Be be;
        return mmalign::test::io_error_of([&] { (void)Clip<Be>::from_pretrained(be, dir); });
    };
    fs::remove(config);
    fs::create_directory(config);
    CHECK(error_now() == "'" + config + "': a directory, not a regular file");
    fs::remove(config);
    fs::create_symlink("/dev/zero", config);
    CHECK(error_now() == "'" + config + "': a character device, not a regular file");
    fs::remove(config);
    { std::ofstream(config) << "{}"; }
    fs::resize_file(config, 200'000'000);  // sparse: refused from its size, nothing read
    CHECK(error_now() == "'" + config + "': 200000000 bytes, more than the 67108864 this reader accepts");
}
