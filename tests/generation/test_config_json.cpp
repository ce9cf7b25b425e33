// Tests of generation/config_json.hpp: files transformers wrote read back to the values transformers
// reads from them (GenerationConfig.from_pretrained, .from_model_config), malformed fields named with
// file, field, expectation and finding, absurd sizes refused, and a failed read changing nothing.
#include <doctest/doctest.h>

#include <limits>
#include <string>

#include "mmalign/generation/config_json.hpp"
#include "support/errors.hpp"
#include "support/temp_dir.hpp"

using namespace mmalign;
namespace gen = mmalign::generation;
using test::io_error_of;

namespace {

const std::string dir = std::string(MMALIGN_FIXTURE_DIR) + "/generation";

/// Every field transformers read (null: left unset, which is our default) equals ours.
void check_reads_as(const gen::GenerationConfig& c, const nlohmann::json& expected) {
    const nlohmann::json ours = gen::to_json(c), defaults = gen::to_json(gen::GenerationConfig{});
    for (const auto& [key, value] : expected.items()) {
        CAPTURE(key);
        if (key == "max_position_embeddings") {
            CHECK(c.max_position_embeddings == value.get<index_t>());
        } else if (value.is_null()) {
            CHECK(ours.contains(key) == defaults.contains(key));
            if (ours.contains(key)) CHECK(ours[key] == defaults[key]);
        } else if (value.is_number_float()) {
            CHECK(ours[key].get<double>() == value.get<double>());
        } else {
            CHECK(ours[key] == value);
        }
    }
}

gen::GenerationConfig read(const nlohmann::json& j) {
    gen::GenerationConfig c;
    gen::read_generation_fields(c, j, "generation_config.json");
    return c;
}

}  // namespace

TEST_CASE("a generation_config.json saved by transformers reads back as transformers reads it") {
    const nlohmann::json expected = io::read_json_file(dir + "/cases.json")["config_files"]["generation_config.json"];
    const gen::GenerationConfig c = gen::load_generation_config(dir + "/generation_config.json");
    check_reads_as(c, expected);
    CHECK(c.early_stopping == gen::EarlyStopping::never);
    CHECK(c.eos_token_id == std::vector<std::int32_t>{2, 5});
    CHECK(c.problem().empty());
}

TEST_CASE("a model's config.json gives the generation settings transformers' from_model_config gives (BLIP: text_config's ids)") {
    const nlohmann::json expected = io::read_json_file(dir + "/cases.json")["config_files"]["blip_config.json"];
    const gen::GenerationConfig c =
        gen::generation_config_from_model_config(io::read_json_file(dir + "/blip_config.json"), "blip_config.json");
    check_reads_as(c, expected);
    CHECK(c.bos_token_id == 30522);
    CHECK(c.max_position_embeddings == 40);
}

TEST_CASE("a field set at a config.json's top level wins over the nested decoder config's") {
    const nlohmann::json j = {{"eos_token_id", 7},
                              {"text_config", {{"eos_token_id", 102}, {"pad_token_id", 0}, {"max_position_embeddings", 64}}}};
    const gen::GenerationConfig c = gen::generation_config_from_model_config(j, "config.json");
    CHECK(c.eos_token_id == std::vector<std::int32_t>{7});
    CHECK(c.pad_token_id == 0);
    CHECK(c.max_position_embeddings == 64);
}

TEST_CASE("every field reads both JSON spellings transformers writes, and null leaves a field unset") {
    gen::GenerationConfig c = read({{"early_stopping", true}, {"eos_token_id", 3}, {"max_length", nullptr}, {"num_beams", 2}});
    CHECK(c.early_stopping == gen::EarlyStopping::finished);
    CHECK(c.eos_token_id == std::vector<std::int32_t>{3});
    CHECK(!c.max_length);
    CHECK(c.num_beams == 2);
    c = read({{"early_stopping", false}, {"eos_token_id", nlohmann::json::array({1, 2})}, {"top_k", 0}});
    CHECK(c.early_stopping == gen::EarlyStopping::heuristic);
    CHECK(c.eos_token_id == std::vector<std::int32_t>{1, 2});
    CHECK(c.top_k == 0);
    // Written and read again: the same config.
    c.max_new_tokens = 9;
    c.pad_token_id = 4;
    c.length_penalty = -0.5;
    gen::GenerationConfig back;
    gen::read_generation_fields(back, gen::to_json(c), "round trip");
    CHECK(gen::to_json(back) == gen::to_json(c));
}

TEST_CASE("a malformed field is named with file, field, what was expected and what was found") {
    CHECK(io_error_of([] { read({{"num_beams", "4"}}); }) == "generation_config.json.num_beams: expected an integer, found string");
    CHECK(io_error_of([] { read({{"do_sample", 1}}); }) == "generation_config.json.do_sample: expected a boolean, found number");
    CHECK(io_error_of([] { read({{"temperature", "hot"}}); }) ==
          "generation_config.json.temperature: expected a number, found string");
    CHECK(io_error_of([] { read({{"early_stopping", "sometimes"}}); }) ==
          "generation_config.json.early_stopping: expected true, false or \"never\", found \"sometimes\"");
    CHECK(io_error_of([] { read({{"eos_token_id", "2"}}); }) ==
          "generation_config.json.eos_token_id: expected an integer or a list of integers, found string");
    CHECK(io_error_of([] { read({{"eos_token_id", nlohmann::json::array({2, "x"})}}); }) ==
          "generation_config.json.eos_token_id: expected an integer or a list of integers, found a list holding string");
    CHECK(io_error_of([] { read({{"num_beams", 2.5}}); }) == "generation_config.json.num_beams: expected an integer, found 2.5");
    CHECK(read({{"num_beams", 4.0}}).num_beams == 4);  // an integral float counts, as io::json_field takes it
    // A file cannot hold infinity (the JSON parser refuses 1e400), an object built in memory can.
    CHECK(io_error_of([] { read({{"temperature", std::numeric_limits<double>::infinity()}}); }) ==
          "generation_config.json.temperature: expected a finite number, found one out of range");
    CHECK(io_error_of([] { read({{"num_beams", 0}}); }) == "generation_config.json: num_beams must be positive, found 0");
    CHECK(io_error_of([] { read({{"min_length", -1e300}}); }) == "generation_config.json: min_length must be >= 0, found -1e+300");
    CHECK(io_error_of([] { read({{"pad_token_id", -1}}); }) == "generation_config.json: pad_token_id must be >= 0, found -1");
    CHECK(io_error_of([] { read(nlohmann::json::array()); }) == "generation_config.json: expected a JSON object, found array");
    CHECK(io_error_of([] { gen::generation_config_from_model_config({{"text_config", 3}}, "config.json"); }) ==
          "config.json.text_config: expected an object, found number");
}

TEST_CASE("absurd sizes and ids are refused before anything is sized from them") {
    CHECK(io_error_of([] { read({{"max_new_tokens", 1'000'000'000}}); }) ==
          "generation_config.json: max_new_tokens 1000000000 exceeds 16777216, larger than any model has");
    CHECK(io_error_of([] { read({{"eos_token_id", 4'000'000'000}}); }) ==
          "generation_config.json: eos_token_id 4000000000 exceeds 16777216, larger than any model has");
    CHECK(io_error_of([] { read({{"num_beams", 18446744073709551615ull}}); }).find("exceeds 16777216") != std::string::npos);
}

TEST_CASE("a read that fails leaves the config as it was") {
    gen::GenerationConfig c;
    c.num_beams = 3;
    io_error_of([&] { gen::read_generation_fields(c, {{"num_beams", 5}, {"top_k", "many"}}, "generation_config.json"); });
    CHECK(c.num_beams == 3);
    CHECK(c.top_k == 50);
}

TEST_CASE("a missing or invalid file is an IoError naming it") {
    test::TempDir tmp;
    CHECK(io_error_of([&] { gen::load_generation_config(tmp / "absent.json"); }).find("absent.json': no such file") !=
          std::string::npos);
    const std::string bad = tmp.file("generation_config.json", "{\"num_beams\": ");
    CHECK(io_error_of([&] { gen::load_generation_config(bad); }).find("generation_config.json': not valid JSON") != std::string::npos);
    const std::string wrong = tmp.file("wrong.json", "{\"num_beams\": true}");
    CHECK(io_error_of([&] { gen::load_generation_config(wrong); }) == wrong + ".num_beams: expected an integer, found boolean");
}
