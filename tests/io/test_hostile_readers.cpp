// Property: every reader of a text/JSON file a model folder or an evaluation holds — config.json
// of BLIP and BLIP-2 (CLIP's is in tests/models/test_clip_config_checks.cpp), the CLIP and BLIP
// image processor files, generation_config.json, each tokenizer file (vocab.json, merges.txt,
// tokenizer.json, tokenizer_config.json, special_tokens_map.json, added_tokens.json, vocab.txt),
// the caption annotation JSON and the caption/VQA evaluation files — refuses the shared corpus of
// hostile inputs (tests/support/hostile_inputs.hpp): a missing file, a directory, a FIFO (without
// blocking), /dev/zero, an empty file, a sparse file one byte over its documented cap, truncations,
// random bytes and files of another format, each in one line naming the file, within a second and
// 200 MB. JSON files are given without their final newline, so that no proper prefix is valid
// JSON and every truncation must be refused; the plain-text files (merges.txt, vocab.txt) have
// no end marker, so a prefix cut at a line boundary is a valid shorter file, as tokenizers reads it.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/eval/result_files.hpp"
#include "mmalign/generation/config_json.hpp"
#include "mmalign/io/blip_image_processor.hpp"
#include "mmalign/io/caption_annotations.hpp"
#include "mmalign/io/clip_image_processor.hpp"
#include "mmalign/io/clip_tokenizer.hpp"
#include "mmalign/io/gpt2_tokenizer.hpp"
#include "mmalign/io/wordpiece_tokenizer.hpp"
#include "mmalign/models/blip2_config.hpp"
#include "mmalign/models/blip_config.hpp"
#include "support/errors.hpp"
#include "support/hostile_inputs.hpp"
#include "support/temp_dir.hpp"

using namespace mmalign;
using Be = CpuBackend<float>;
namespace fs = std::filesystem;
using mmalign::test::HostileReader;
using mmalign::test::TempDir;

namespace {

const fs::path fixtures(MMALIGN_FIXTURE_DIR);

/// A copy of `folder` in `tmp` with `file`'s trailing whitespace removed; returns the copy of `file`.
fs::path trimmed_copy(const TempDir& tmp, const fs::path& folder, const std::string& file) {
    const fs::path dir = tmp.path / folder.filename();
    fs::copy(folder, dir, fs::copy_options::recursive);
    std::string bytes = mmalign::test::detail::read_bytes(dir / file);
    while (!bytes.empty() && (bytes.back() == '\n' || bytes.back() == ' ' || bytes.back() == '\r')) bytes.pop_back();
    mmalign::test::detail::write_bytes(dir / file, bytes);
    return dir / file;
}

/// Files of other formats put in a JSON file's place: all are refused by every JSON reader here.
std::vector<std::string> not_this_json() {
    return {mmalign::test::detail::read_bytes(fixtures / "clip" / "tiny_quick_gelu" / "model.safetensors").substr(0, 2048),
            "\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "18446744073709551615", "\"a JSON string\""};
}

HostileReader json_reader(const std::string& name, const fs::path& valid, std::function<void(const fs::path&)> read,
                          std::uintmax_t cap) {
    HostileReader r;
    r.name = name;
    r.valid = valid;
    r.read = std::move(read);
    r.copy_folder = true;
    r.cap_bytes = cap;
    r.every_truncation_fails = true;
    r.wrong_type = not_this_json();
    return r;
}

}  // namespace

// ---- config.json ------------------------------------------------------------------------------

TEST_CASE("BLIP's config.json refuses every hostile input (BlipConfig::from_folder)") {
    TempDir tmp;
    auto r = json_reader("BlipConfig::from_folder", trimmed_copy(tmp, fixtures / "blip" / "model", "config.json"),
                         [](const fs::path& f) { (void)BlipConfig<Be>::from_folder(f.parent_path().string()); },
                         io::max_json_config_bytes);
    r.wrong_type.push_back("[{\"hidden_size\": 32}]");
    mmalign::test::check_hostile_inputs(r);
}

TEST_CASE("BLIP-2's config.json (vision, Q-Former and OPT sub-configs) refuses every hostile input (Blip2Config::from_folder)") {
    TempDir tmp;
    auto r = json_reader("Blip2Config::from_folder", trimmed_copy(tmp, fixtures / "blip2" / "model", "config.json"),
                         [](const fs::path& f) { (void)Blip2Config<Be>::from_folder(f.parent_path().string()); },
                         io::max_json_config_bytes);
    r.wrong_type.push_back(R"({"text_config": {"model_type": "t5"}})");
    r.wrong_type.push_back(R"({"qformer_config": [], "text_config": {"model_type": "opt"}})");
    mmalign::test::check_hostile_inputs(r);
}

TEST_CASE("integer fields of 2^64 - 1 are out of range in every config kind, never a wrapped -1") {
    TempDir tmp;
    const std::string big = "18446744073709551615";
    auto error_in = [&](const std::string& name, const std::string& text, const std::function<void(const std::string&)>& read) {
        const fs::path dir = tmp.path / ("case_" + std::to_string(std::hash<std::string>{}(name + text)));
        fs::create_directories(dir);
        mmalign::test::detail::write_bytes(dir / name, text);
        return mmalign::test::io_error_of([&] { read((dir / name).string()); });
    };
    auto blip = [](const std::string& p) { (void)BlipConfig<Be>::from_folder(fs::path(p).parent_path().string()); };
    auto blip2 = [](const std::string& p) { (void)Blip2Config<Be>::from_folder(fs::path(p).parent_path().string()); };
    CHECK(error_in("config.json", "{\"vision_config\": {\"hidden_size\": " + big + "}}", blip).ends_with(
        "config.json.vision_config.hidden_size: 18446744073709551615 is out of range"));
    CHECK(error_in("config.json", "{\"text_config\": {\"vocab_size\": " + big + "}}", blip).ends_with(
        "config.json.text_config.vocab_size: 18446744073709551615 is out of range"));
    CHECK(error_in("config.json", "{\"qformer_config\": {\"hidden_size\": " + big + "}}", blip2).ends_with(
        "config.json.qformer_config.hidden_size: 18446744073709551615 is out of range"));
    CHECK(error_in("config.json", "{\"text_config\": {\"model_type\": \"opt\", \"ffn_dim\": " + big + "}}", blip2).ends_with(
        "config.json.text_config.ffn_dim: 18446744073709551615 is out of range"));
    CHECK(error_in("config.json", "{\"num_query_tokens\": " + big + "}", blip2).ends_with(
        "config.json.num_query_tokens: 18446744073709551615 is out of range"));
    CHECK(error_in("config.json", "{\"image_token_index\": " + big + "}", blip2).ends_with(
        "config.json.image_token_index: 18446744073709551615 is out of range"));
    auto clip_pre = [](const std::string& p) { (void)io::load_clip_image_processor_config(p); };
    const std::string pre = "preprocessor_config.json";
    CHECK(error_in(pre, "{\"crop_size\": " + big + "}", clip_pre).ends_with(
        "field 'crop_size': 18446744073709551615 is out of range (at most 8192 pixels: larger than any model's input, "
        "and the resized image would take gigabytes)"));
    CHECK(error_in(pre, "{\"size\": {\"shortest_edge\": " + big + "}}", clip_pre).find(
              "field 'size.shortest_edge': 18446744073709551615 is out of range") != std::string::npos);
    CHECK(error_in(pre, "{\"resample\": " + big + "}", clip_pre).ends_with(
        "field 'resample': 18446744073709551615 is not supported; 0 (NEAREST), 2 (BILINEAR) and 3 (BICUBIC) are"));
    auto gen = [](const std::string& p) { (void)generation::load_generation_config(p); };
    CHECK(error_in("generation_config.json", "{\"max_new_tokens\": " + big + "}", gen).find(
              "max_new_tokens 18446744073709551615 exceeds") != std::string::npos);
}

// ---- image processor files --------------------------------------------------------------------

TEST_CASE("CLIP's preprocessor_config.json refuses every hostile input (load_clip_image_processor_config)") {
    TempDir tmp;
    const fs::path dir = tmp.path / "clip";
    fs::create_directories(dir);
    // openai/clip-vit-base-patch32's file (CLIPImageProcessor), without a final newline.
    mmalign::test::detail::write_bytes(
        dir / "preprocessor_config.json",
        R"({"crop_size": {"height": 224, "width": 224}, "do_center_crop": true, "do_convert_rgb": true, )"
        R"("do_normalize": true, "do_rescale": true, "do_resize": true, "image_mean": [0.48145466, 0.4578275, 0.40821073], )"
        R"("image_processor_type": "CLIPImageProcessor", "image_std": [0.26862954, 0.26130258, 0.27577711], )"
        R"("resample": 3, "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 224}})");
    auto r = json_reader("load_clip_image_processor_config", dir / "preprocessor_config.json",
                         [](const fs::path& f) { (void)io::load_clip_image_processor_config(f.string()); },
                         io::max_json_config_bytes);
    r.wrong_type.push_back("[224, 224]");
    r.wrong_type.push_back(R"({"crop_size": 30000})");
    r.wrong_type.push_back(R"({"size": {"shortest_edge": 16384}})");
    mmalign::test::check_hostile_inputs(r);
}

TEST_CASE("BLIP's preprocessor_config.json and processor_config.json refuse every hostile input") {
    for (const char* name : {"preprocessor_config.json", "processor_config.json"}) {
        INFO(name);
        TempDir tmp;
        auto r = json_reader("load_blip_image_processor_config", trimmed_copy(tmp, fixtures / "blip" / "model", name),
                             [](const fs::path& f) { (void)io::load_blip_image_processor_config(f.string()); },
                             io::max_json_config_bytes);
        r.wrong_type.push_back(R"({"size": 30000})");
        r.wrong_type.push_back(R"({"image_processor": {"crop_size": 16384, "do_center_crop": true}})");
        mmalign::test::check_hostile_inputs(r);
    }
}

TEST_CASE("a crop or size of 16k-30k pixels is refused with the field and the bound, before any image is touched") {
    TempDir tmp;
    for (const auto& [text, field] : std::vector<std::pair<std::string, std::string>>{
             {R"({"crop_size": 30000})", "crop_size"},
             {R"({"crop_size": {"height": 224, "width": 16384}})", "crop_size.width"},
             {R"({"size": {"shortest_edge": 16384}})", "size.shortest_edge"},
             {R"({"size": [30000, 224]})", "size[0]"}}) {
        INFO(text);
        const std::string path = tmp.file("preprocessor_config.json", text);
        const std::string value = field == "crop_size.width" || field == "size.shortest_edge" ? "16384" : "30000";
        CHECK(mmalign::test::io_error_of([&] { (void)io::load_clip_image_processor_config(path); }) ==
              "preprocessor config '" + path + "': field '" + field + "': " + value +
                  " is out of range (at most 8192 pixels: larger than any model's input, and the resized image would "
                  "take gigabytes)");
        CHECK(mmalign::test::io_error_of([&] { (void)io::load_blip_image_processor_config(path); }).find(
                  "field '" + field + "': " + value + " is out of range") != std::string::npos);
    }
    // The bound itself is accepted.
    CHECK(io::load_clip_image_processor_config(tmp.file("edge.json", R"({"crop_size": 8192})")).crop_height == 8192);
}

TEST_CASE("a processor whose images cannot fit the model's image_size is blamed on its own file and field") {
    TempDir tmp;
    const std::string clip = tmp.file("preprocessor_config.json", R"({"crop_size": 256, "size": 256})");
    CHECK(mmalign::test::io_error_of([&] { (void)io::load_clip_image_processor_config(clip, 224); }) ==
          "preprocessor config '" + clip +
              "': field 'crop_size': crops to 256x256, which does not match the model's image_size 224 "
              "(vision_config.image_size in config.json)");
    CHECK(io::load_clip_image_processor_config(clip, 256).crop_height == 256);
    const std::string no_crop = tmp.file("no_crop.json", R"({"do_center_crop": false, "size": 300})");
    CHECK(mmalign::test::io_error_of([&] { (void)io::load_clip_image_processor_config(no_crop, 224); }) ==
          "preprocessor config '" + no_crop +
              "': field 'size': shortest_edge 300 without a center crop does not match the model's image_size 224 "
              "(vision_config.image_size in config.json)");
    const std::string blip = tmp.file("processor_config.json", R"({"image_processor": {"size": {"height": 384, "width": 380}}})");
    CHECK(mmalign::test::io_error_of([&] { (void)io::load_blip_image_processor_config(blip, 384); }) ==
          "preprocessor config '" + blip +
              "': field 'image_processor.size': resizes to 384x380, which does not match the model's image_size 384 "
              "(vision_config.image_size in config.json)");
    CHECK(io::load_blip_image_processor_config((fixtures / "blip" / "model" / "preprocessor_config.json").string(),
                                               BlipConfig<Be>::from_folder((fixtures / "blip" / "model").string()).vision.image_size)
              .size.height > 0);
    // A directory in preprocessor_config.json's place is named, not passed over for processor_config.json.
    const fs::path folder = tmp.path / "blip";
    fs::create_directories(folder / "preprocessor_config.json");
    mmalign::test::detail::write_bytes(folder / "processor_config.json", "{}");
    CHECK(mmalign::test::io_error_of([&] {
              (void)io::load_blip_image_processor_config(io::blip_image_processor_config_path(folder.string()));
          }) == "'" + (folder / "preprocessor_config.json").string() + "': a directory, not a regular file");
}

// ---- generation_config.json -------------------------------------------------------------------

TEST_CASE("generation_config.json refuses every hostile input (load_generation_config)") {
    TempDir tmp;
    auto r = json_reader("load_generation_config", trimmed_copy(tmp, fixtures / "blip" / "caption_a", "generation_config.json"),
                         [](const fs::path& f) { (void)generation::load_generation_config(f.string()); },
                         io::max_json_config_bytes);
    r.wrong_type.push_back("[{\"num_beams\": 3}]");
    mmalign::test::check_hostile_inputs(r);
}

// ---- tokenizer files --------------------------------------------------------------------------

TEST_CASE("the GPT-2/OPT tokenizer's files each refuse every hostile input (Gpt2Tokenizer::from_folder)") {
    auto read = [](const fs::path& f) { (void)io::Gpt2Tokenizer::from_folder(f.parent_path().string()); };
    for (const char* name : {"vocab.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"}) {
        INFO(name);
        TempDir tmp;
        auto r = json_reader("Gpt2Tokenizer::from_folder", trimmed_copy(tmp, fixtures / "gpt2_bpe" / "opt_files", name), read,
                             io::detail::max_tokenizer_file_bytes);
        r.missing_accepted = std::string(name) != "vocab.json";  // the others are optional, as in transformers
        mmalign::test::check_hostile_inputs(r);
    }
    {
        TempDir tmp;
        auto r = json_reader("Gpt2Tokenizer::from_folder", trimmed_copy(tmp, fixtures / "gpt2_bpe" / "opt_json", "tokenizer.json"),
                             read, io::detail::max_tokenizer_file_bytes);
        mmalign::test::check_hostile_inputs(r);
    }
    {
        // merges.txt is text without an end marker: a prefix cut at a line boundary is a valid
        // shorter merge list (tokenizers reads it so); a cut inside a line leaves a symbol that is
        // not in vocab.json, or a line without its second symbol, and is refused.
        TempDir tmp;
        HostileReader r;
        r.name = "Gpt2Tokenizer::from_folder (merges.txt)";
        r.valid = trimmed_copy(tmp, fixtures / "gpt2_bpe" / "opt_files", "merges.txt");
        r.read = read;
        r.copy_folder = true;
        r.cap_bytes = io::detail::max_tokenizer_file_bytes;
        r.wrong_type = not_this_json();
        r.wrong_type.push_back(R"({"a": 1})");
        mmalign::test::check_hostile_inputs(r);
    }
}

TEST_CASE("the CLIP tokenizer's files each refuse every hostile input (ClipTokenizer::from_hf_folder)") {
    auto read = [](const fs::path& f) { (void)io::ClipTokenizer::from_hf_folder(f.parent_path().string()); };
    for (const char* name : {"vocab.json", "tokenizer_config.json"}) {
        INFO(name);
        TempDir tmp;
        auto r = json_reader("ClipTokenizer::from_hf_folder", trimmed_copy(tmp, fixtures / "clip_tokenizer" / "hf", name), read,
                             io::detail::max_tokenizer_file_bytes);
        r.missing_accepted = std::string(name) != "vocab.json";
        mmalign::test::check_hostile_inputs(r);
    }
    {
        TempDir tmp;
        auto r = json_reader("ClipTokenizer::from_hf_folder",
                             trimmed_copy(tmp, fixtures / "clip_tokenizer" / "small_tokenizer_json", "tokenizer.json"), read,
                             io::detail::max_tokenizer_file_bytes);
        mmalign::test::check_hostile_inputs(r);
    }
    {
        TempDir tmp;
        HostileReader r;  // plain text: see the GPT-2 merges.txt case
        r.name = "ClipTokenizer::from_hf_folder (merges.txt)";
        r.valid = trimmed_copy(tmp, fixtures / "clip_tokenizer" / "hf", "merges.txt");
        r.read = read;
        r.copy_folder = true;
        r.cap_bytes = io::detail::max_tokenizer_file_bytes;
        r.wrong_type = not_this_json();
        mmalign::test::check_hostile_inputs(r);
    }
}

TEST_CASE("the WordPiece tokenizer's files each refuse every hostile input (WordPieceTokenizer::from_hf_folder)") {
    auto read = [](const fs::path& f) { (void)io::WordPieceTokenizer::from_hf_folder(f.parent_path().string()); };
    for (const char* name : {"tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"}) {
        INFO(name);
        TempDir tmp;
        auto r = json_reader("WordPieceTokenizer::from_hf_folder",
                             trimmed_copy(tmp, fixtures / "wordpiece" / "blip_vocab_txt", name), read,
                             io::detail::wordpiece_files::max_file_bytes);
        r.missing_accepted = true;
        mmalign::test::check_hostile_inputs(r);
    }
    {
        TempDir tmp;
        auto r = json_reader("WordPieceTokenizer::from_hf_folder",
                             trimmed_copy(tmp, fixtures / "wordpiece" / "blip_tokenizer_json", "tokenizer.json"), read,
                             io::detail::wordpiece_files::max_file_bytes);
        mmalign::test::check_hostile_inputs(r);
    }
    {
        // vocab.txt: one token per line, no end marker, so a prefix cut at a line boundary is a
        // smaller vocabulary; random bytes are refused (invalid UTF-8, or no [UNK]).
        TempDir tmp;
        HostileReader r;
        r.name = "WordPieceTokenizer::from_hf_folder (vocab.txt)";
        r.valid = trimmed_copy(tmp, fixtures / "wordpiece" / "blip_vocab_txt", "vocab.txt");
        r.read = read;
        r.copy_folder = true;
        r.cap_bytes = io::detail::wordpiece_files::max_file_bytes;
        r.wrong_type = not_this_json();
        mmalign::test::check_hostile_inputs(r);
    }
}

TEST_CASE("vocab.json that is /dev/zero, a FIFO or a directory is named as such, without reading it") {
    TempDir tmp;
    const fs::path dir = tmp.path / "opt";
    fs::copy(fixtures / "gpt2_bpe" / "opt_files", dir);
    fs::remove(dir / "vocab.json");
    fs::create_symlink("/dev/zero", dir / "vocab.json");
    CHECK(mmalign::test::io_error_of([&] { (void)io::Gpt2Tokenizer::from_folder(dir.string()); }) ==
          "Gpt2Tokenizer: '" + (dir / "vocab.json").string() + "': a character device, not a regular file");
    const fs::path clip = tmp.path / "clip";
    fs::copy(fixtures / "clip_tokenizer" / "hf", clip);
    fs::remove(clip / "vocab.json");
    fs::create_symlink("/dev/zero", clip / "vocab.json");
    CHECK(mmalign::test::io_error_of([&] { (void)io::ClipTokenizer::from_hf_folder(clip.string()); }) ==
          "ClipTokenizer: '" + (clip / "vocab.json").string() + "': a character device, not a regular file");
}

// ---- caption annotations and evaluation files -------------------------------------------------

TEST_CASE("the caption annotation JSON refuses every hostile input (CaptionAnnotations::read)") {
    TempDir tmp;
    auto r = json_reader("CaptionAnnotations::read", trimmed_copy(tmp, fixtures / "caption_data", "train.json"),
                         [](const fs::path& f) { (void)io::CaptionAnnotations::read(f.string()); },
                         io::max_annotation_file_bytes);
    r.wrong_type.push_back(R"({"annotations": []})");
    r.wrong_type.push_back(R"([{"image": 3, "caption": "x"}])");
    mmalign::test::check_hostile_inputs(r);
}

TEST_CASE("caption results and COCO caption annotations refuse every hostile input (evaluate_caption_files)") {
    auto read = [](const fs::path& f) {
        (void)eval::evaluate_caption_files((f.parent_path() / "results.json").string(),
                                           (f.parent_path() / "annotations.json").string());
    };
    for (const char* name : {"results.json", "annotations.json"}) {
        INFO(name);
        TempDir tmp;
        auto r = json_reader("evaluate_caption_files", trimmed_copy(tmp, fixtures / "caption_metrics", name), read,
                             eval::max_eval_file_bytes);
        r.wrong_type.push_back(R"({"annotations": {}})");
        mmalign::test::check_hostile_inputs(r);
    }
}

TEST_CASE("VQA questions, annotations and results files refuse every hostile input (score_vqa_files)") {
    auto read = [](const fs::path& f) {
        const fs::path d = f.parent_path();
        (void)eval::score_vqa_files((d / "results.json").string(), (d / "questions.json").string(),
                                    (d / "annotations.json").string());
    };
    for (const char* name : {"questions.json", "annotations.json", "results.json"}) {
        INFO(name);
        TempDir tmp;
        auto r = json_reader("score_vqa_files", trimmed_copy(tmp, fixtures / "vqa_eval", name), read, eval::max_eval_file_bytes);
        r.wrong_type.push_back(R"({"questions": {}, "annotations": {}})");
        r.wrong_type.push_back(R"([{"question_id": [1], "answer": 2}])");
        mmalign::test::check_hostile_inputs(r);
    }
}
