// Property: every BLIP and BLIP-2 from_pretrained compares config.json's sizes with the
// checkpoint's header shapes (BlipConfig::check_against, Blip2Config::check_against) and its
// towers' parameter count with the values the checkpoint holds, before the model is allocated: a
// contradicting field is named with the tensor it contradicts, in a child process whose memory stays
// small although the model the file describes would take gigabytes.
#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/models/blip2_model.hpp"
#include "mmalign/models/blip2_qformer_pretraining.hpp"
#include "mmalign/models/blip2_retrieval.hpp"
#include "mmalign/models/blip_captioning.hpp"
#include "mmalign/models/blip_model.hpp"
#include "mmalign/models/blip_retrieval.hpp"
#include "mmalign/models/blip_vqa.hpp"
#include "support/errors.hpp"
#include "support/hostile_inputs.hpp"
#include "support/temp_dir.hpp"

using namespace mmalign;
using Be = CpuBackend<float>;
namespace fs = std::filesystem;
using mmalign::test::TempDir;

namespace {

const fs::path fixtures(MMALIGN_FIXTURE_DIR);

/// A copy of a fixture folder whose config.json has `edit` applied; returns the folder.
std::string edited_folder(const TempDir& tmp, const fs::path& from, const std::function<void(nlohmann::json&)>& edit) {
    const fs::path dir = tmp.path / from.filename();
    fs::copy(from, dir, fs::copy_options::recursive);
    nlohmann::json j;
    std::ifstream(dir / "config.json") >> j;
    edit(j);
    std::ofstream(dir / "config.json", std::ios::trunc) << j.dump(2);
    return dir.string();
}

/// `load(dir)` in a child process: how it ended and its peak new RSS (MB).
mmalign::test::HostileOutcome in_child(const std::string& dir, const std::function<void(const std::string&)>& load) {
    return mmalign::test::detail::run_in_child(
        "load", [&](const fs::path& d) { load(d.string()); }, dir, 10.0 * mmalign::test::detail::hostile_time_scale());
}

void check_refused_small(const mmalign::test::HostileOutcome& o, const std::string& message) {
    REQUIRE_MESSAGE(o.kind == mmalign::test::HostileOutcome::Kind::refused, o.message);
    CHECK(o.message == message);
    if (!mmalign::test::detail::hostile_sanitized()) CHECK(o.rss_mb < 64.0);
}

}  // namespace

TEST_CASE("every BLIP and BLIP-2 fixture folder passes the checks: no false refusal") {
    Be be;
    CHECK_NOTHROW((void)BlipModel<Be>::from_pretrained(be, (fixtures / "blip" / "model").string()));
    for (const char* name : {"caption_a", "caption_b", "caption_remainder"})
        CHECK_NOTHROW((void)BlipForConditionalGeneration<Be>::from_pretrained(be, (fixtures / "blip" / name).string()));
    CHECK_NOTHROW((void)BlipForImageTextRetrieval<Be>::from_pretrained(be, (fixtures / "blip" / "retrieval").string()));
    CHECK_NOTHROW((void)BlipForQuestionAnswering<Be>::from_pretrained(be, (fixtures / "blip" / "vqa").string()));
    for (const char* name : {"model", "opt_prenorm", "opt_postnorm", "legacy", "qv_bias"})
        CHECK_NOTHROW((void)Blip2Model<Be>::from_pretrained(be, (fixtures / "blip2" / name).string()));
    CHECK_NOTHROW((void)Blip2ForImageTextRetrieval<Be>::from_pretrained(be, (fixtures / "blip2" / "retrieval").string()));
    CHECK_NOTHROW((void)Blip2QFormerPretraining<Be>::from_pretrained(be, (fixtures / "blip2_stage1").string(), 1));
}

TEST_CASE("BLIP: a hidden_size of 8192 is named with the tensor it contradicts, before the model is allocated") {
    TempDir tmp;
    // text_config.hidden_size 8192: two decoder layers with cross-attention of 8192² weights, over 3 GB.
    const std::string dir = edited_folder(tmp, fixtures / "blip" / "caption_a",
                                          [](nlohmann::json& j) { j["text_config"]["hidden_size"] = 8192; });
    check_refused_small(in_child(dir, [](const std::string& d) { Be be; (void)BlipForConditionalGeneration<Be>::from_pretrained(be, d); }),
                        dir + "/config.json: text_config.hidden_size 8192 does not match model.safetensors's "
                              "text_decoder.bert.embeddings.word_embeddings.weight [377, 24]");
}

TEST_CASE("BLIP: each size field that contradicts the checkpoint is named with its tensor") {
    struct Case {
        const char* tower;
        const char* key;
        std::int64_t value;
        std::string message;
    };
    const std::vector<Case> cases = {
        {"vision_config", "intermediate_size", 4096,
         "vision_config.intermediate_size 4096 does not match model.safetensors's vision_model.encoder.layers.0.mlp.fc1.weight [40, 24]"},
        {"vision_config", "image_size", 64,
         "vision_config.image_size 64 with patch_size 8 (65 positions) does not match model.safetensors's "
         "vision_model.embeddings.position_embedding [1, 17, 24]"},
        {"vision_config", "num_hidden_layers", 12,
         "vision_config.num_hidden_layers 12 does not match model.safetensors, which holds 2 layers "
         "(vision_model.encoder.layers.0 to vision_model.encoder.layers.1)"},
        {"text_config", "vocab_size", 30524,
         "text_config.vocab_size 30524 does not match model.safetensors's text_decoder.bert.embeddings.word_embeddings.weight [377, 24]"},
        {"text_config", "max_position_embeddings", 512,
         "text_config.max_position_embeddings 512 does not match model.safetensors's "
         "text_decoder.bert.embeddings.position_embeddings.weight [40, 24]"},
        {"text_config", "intermediate_size", 3072,
         "text_config.intermediate_size 3072 does not match model.safetensors's "
         "text_decoder.bert.encoder.layer.0.intermediate.dense.weight [36, 24]"},
    };
    for (const Case& c : cases) {
        INFO(c.tower << "." << c.key);
        TempDir tmp;
        const std::string dir = edited_folder(tmp, fixtures / "blip" / "caption_a", [&](nlohmann::json& j) { j[c.tower][c.key] = c.value; });
        Be be;
        CHECK(test::io_error_of([&] { (void)BlipForConditionalGeneration<Be>::from_pretrained(be, dir); }) ==
              dir + "/config.json: " + c.message);
    }
}

TEST_CASE("BLIP-2: vision, Q-Former and OPT sizes are checked against the checkpoint before allocating") {
    TempDir tmp;
    const std::string dir = edited_folder(tmp, fixtures / "blip2" / "model",
                                          [](nlohmann::json& j) { j["vision_config"]["hidden_size"] = 8192; });
    check_refused_small(in_child(dir, [](const std::string& d) { Be be; (void)Blip2Model<Be>::from_pretrained(be, d); }),
                        dir + "/config.json: vision_config.hidden_size 8192 does not match model.safetensors's "
                              "vision_model.embeddings.patch_embedding.weight [16, 3, 7, 7]");
    struct Case {
        const char* tower;  // "" for the top level
        const char* key;
        std::int64_t value;
        std::string message;
    };
    const std::vector<Case> cases = {
        {"text_config", "ffn_dim", 1000000,
         "text_config.ffn_dim 1000000 does not match model.safetensors's language_model.model.decoder.layers.0.fc1.weight [28, 20]"},
        {"text_config", "vocab_size", 50272,
         "text_config.vocab_size 50272 does not match model.safetensors's language_model.model.decoder.embed_tokens.weight [401, 20]"},
        {"text_config", "max_position_embeddings", 2048,
         "text_config.max_position_embeddings 2048 (2050 rows: OPT's offset of 2) does not match model.safetensors's "
         "language_model.model.decoder.embed_positions.weight [50, 20]"},
        {"text_config", "num_hidden_layers", 32,
         "text_config.num_hidden_layers 32 does not match model.safetensors, which holds 2 layers "
         "(language_model.model.decoder.layers.0 to language_model.model.decoder.layers.1)"},
        {"qformer_config", "intermediate_size", 3072,
         "qformer_config.intermediate_size 3072 does not match model.safetensors's "
         "qformer.encoder.layer.0.intermediate_query.dense.weight [24, 16]"},
        {"qformer_config", "num_hidden_layers", 12,
         "qformer_config.num_hidden_layers 12 does not match model.safetensors, which holds 2 layers "
         "(qformer.encoder.layer.0 to qformer.encoder.layer.1)"},
        {"", "num_query_tokens", 32, "num_query_tokens 32 does not match model.safetensors's query_tokens [1, 8, 16]"},
    };
    for (const Case& c : cases) {
        INFO(c.tower << "." << c.key);
        TempDir t2;
        const std::string d2 =
            edited_folder(t2, fixtures / "blip2" / "model", [&](nlohmann::json& j) { (*c.tower ? j[c.tower] : j)[c.key] = c.value; });
        Be be;
        CHECK(test::io_error_of([&] { (void)Blip2Model<Be>::from_pretrained(be, d2); }) == d2 + "/config.json: " + c.message);
    }
    // The retrieval heads' Q-Former text embeddings are checked too.
    TempDir t3;
    const std::string d3 = edited_folder(t3, fixtures / "blip2" / "retrieval",
                                         [](nlohmann::json& j) { j["qformer_config"]["vocab_size"] = 30522; });
    Be be;
    CHECK(test::io_error_of([&] { (void)Blip2ForImageTextRetrieval<Be>::from_pretrained(be, d3); }) ==
          d3 + "/config.json: qformer_config.vocab_size 30522 does not match model.safetensors's embeddings.word_embeddings.weight [378, 24]");
}

TEST_CASE("a BLIP-2 config larger than its checkpoint's values is refused by the memory estimate") {
    // A checkpoint holding only the query tokens: the shapes agree, but the towers the config
    // describes have far more parameters than the 128 values it holds.
    TempDir tmp;
    const std::string dir = edited_folder(tmp, fixtures / "blip2" / "model", [](nlohmann::json&) {});
    Tensor<float> queries(Shape{1, 8, 16});  // [1, Q, Dq]
    io::save_safetensors(dir + "/model.safetensors", {{"query_tokens", queries.view()}});
    // Blocks (4·D² + 2·D·F per layer, 2 layers each): vision 16/28, Q-Former 16/24, OPT 20/28.
    const long long blocks = 2 * (4 * 16 * 16 + 2 * 16 * 28) + 2 * (4 * 16 * 16 + 2 * 16 * 24) + 2 * (4 * 20 * 20 + 2 * 20 * 28);
    Be be;
    CHECK(test::io_error_of([&] { (void)Blip2Model<Be>::from_pretrained(be, dir); }) ==
          dir + "/config.json: its sizes describe a BLIP-2 model of at least " + std::to_string(blocks) +
              " parameters (0 MiB of float), more than the 128 values model.safetensors holds");
}
