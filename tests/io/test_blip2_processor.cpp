// Blip2Processor against transformers 5.25's Blip2Processor (GPT2Tokenizer + BlipImageProcessorPil)
// saved and reloaded by transformers: input_ids and attention_mask of prompt batches of different
// lengths with left padding and 4 queries, and of a legacy folder (no num_query_tokens, right
// padding); the prompt templates; the image processor config read from processor_config.json.
// Fixtures: tools/make_gpt2_fixtures.py.
#include <doctest/doctest.h>

#include <mmalign/io/blip2_processor.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/corpus_fixture.hpp"
#include "support/errors.hpp"
#include "support/temp_dir.hpp"

namespace {

using mmalign::io::Blip2Processor;
using mmalign::test::TempDir;
using Ids = std::vector<std::int32_t>;

const std::string dir = std::string(MMALIGN_FIXTURE_DIR) + "/gpt2_bpe";

std::vector<nlohmann::json> processor_records() {
    std::vector<nlohmann::json> out;
    for (const auto& line : mmalign::test::read_lines(dir + "/expected.jsonl")) {
        auto j = nlohmann::json::parse(line);
        if (j.contains("processor")) out.push_back(j);
    }
    return out;
}

Ids flatten(const nlohmann::json& rows) {
    Ids out;
    for (const auto& r : rows)
        for (const auto& v : r) out.push_back(v.get<std::int32_t>());
    return out;
}

}  // namespace

TEST_CASE("prompt batches give transformers' input_ids and attention_mask, image tokens before the padding and </s>") {
    const auto q4 = Blip2Processor::from_folder(dir + "/processor_q4");
    const auto legacy = Blip2Processor::from_folder(dir + "/processor_legacy");
    std::size_t n = 0;
    for (const auto& r : processor_records()) {
        const auto& proc = r["processor"] == "processor_q4" ? q4 : legacy;
        const auto prompts = r["prompts"].get<std::vector<std::string>>();
        const auto text = proc.encode(prompts);
        CHECK(text.batch == static_cast<mmalign::index_t>(prompts.size()));
        CHECK(text.length == static_cast<mmalign::index_t>(r["input_ids"][0].size()));
        CHECK_MESSAGE(text.ids == flatten(r["input_ids"]), r["prompts"].dump());
        CHECK_MESSAGE(text.attention_mask == flatten(r["attention_mask"]), r["prompts"].dump());
        CHECK(proc.image_token_id() == r["image_token_id"].get<std::int32_t>());
        ++n;
    }
    CHECK(n == 8);
}

TEST_CASE("num_query_tokens and padding side come from the folder; a legacy folder has no image tokens") {
    const auto q4 = Blip2Processor::from_folder(dir + "/processor_q4");
    CHECK(q4.num_query_tokens() == 4);
    CHECK(q4.padding_side() == mmalign::io::PaddingSide::left);
    const auto t = q4.encode({"a photo of"});
    REQUIRE(t.ids.size() >= 5);
    for (int k = 0; k < 4; ++k) CHECK(t.ids[static_cast<std::size_t>(k)] == *q4.image_token_id());
    CHECK(t.ids[4] == q4.tokenizer().bos_id());
    const auto text_only = q4.encode({"a photo of"}, false);
    CHECK(text_only.ids == q4.tokenizer().encode("a photo of"));

    const auto legacy = Blip2Processor::from_folder(dir + "/processor_legacy");
    CHECK(legacy.num_query_tokens() == 0);
    CHECK(legacy.padding_side() == mmalign::io::PaddingSide::right);
    CHECK(legacy.encode({""}).ids == std::vector<std::int32_t>{legacy.tokenizer().bos_id()});
}

TEST_CASE("set_padding_side moves the padding between the image tokens and </s>") {
    auto proc = Blip2Processor::from_folder(dir + "/processor_q4");
    proc.set_padding_side(mmalign::io::PaddingSide::right);
    const auto t = proc.encode({"", "a b"});
    const std::int32_t img = *proc.image_token_id(), bos = proc.tokenizer().bos_id(), pad = proc.tokenizer().pad_id();
    const auto ab = proc.tokenizer().encode("a b", false);
    Ids row0{img, img, img, img, bos}, row1{img, img, img, img, bos};
    row0.insert(row0.end(), ab.size(), pad);
    row1.insert(row1.end(), ab.begin(), ab.end());
    Ids want = row0;
    want.insert(want.end(), row1.begin(), row1.end());
    CHECK(t.ids == want);
    CHECK(t.attention_mask[4] == 1);
    CHECK(t.attention_mask[5] == 0);
}

TEST_CASE("VQA prompt templates of transformers and LAVIS") {
    CHECK(mmalign::io::vqa_prompt("which city is this?") == "Question: which city is this? Answer:");
    CHECK(mmalign::io::vqa_prompt("what?", mmalign::io::lavis_vqa_template) == "Question: what? Short answer:");
    CHECK_THROWS_AS(mmalign::io::vqa_prompt("q", "no field"), mmalign::ArgumentError);
}

TEST_CASE("the image processor is read from processor_config.json's image_processor object") {
    const auto proc = Blip2Processor::from_folder(dir + "/processor_q4");
    CHECK(proc.image_processor().size.height == 224);
    CHECK(proc.image_processor().size.width == 224);
    CHECK(proc.image_processor().image_mean[0] == doctest::Approx(0.48145466));
}

TEST_CASE("a processor folder with a bad num_query_tokens or no image processor is refused, naming the file") {
    auto copy_tokenizer = [](const TempDir& t) {
        for (const char* f : {"vocab.json", "merges.txt", "tokenizer_config.json"})
            std::filesystem::copy_file(dir + "/processor_legacy/" + f, t / f);
    };
    auto error_of = [](const std::string& d) {
        return mmalign::test::io_error_of([&] { (void)Blip2Processor::from_folder(d); });
    };
    {
        TempDir t;
        copy_tokenizer(t);
        t.file("processor_config.json", R"({"num_query_tokens": "four", "image_processor": {}})");
        const std::string msg = error_of(t.path.string());
        CHECK_MESSAGE(msg.find("processor_config.json") != std::string::npos, msg);
        CHECK_MESSAGE(msg.find("num_query_tokens") != std::string::npos, msg);
    }
    {
        TempDir t;
        copy_tokenizer(t);
        t.file("processor_config.json", R"({"num_query_tokens": -3, "image_processor": {}})");
        CHECK(error_of(t.path.string()).find("num_query_tokens") != std::string::npos);
    }
    {
        TempDir t;
        copy_tokenizer(t);
        const std::string msg = error_of(t.path.string());
        CHECK_MESSAGE(msg.find("no preprocessor_config.json or processor_config.json") != std::string::npos, msg);
    }
}
