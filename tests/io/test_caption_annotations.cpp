// tests/io/test_caption_annotations.cpp — the coco_karpathy annotation reader: both forms of the
// format (tests/fixtures/caption_data/{train,val}.json against expected_annotations.json, made by
// tools/make_caption_data_fixtures.py with LAVIS's image_id derivation), and one line naming the
// file, entry and field for every bad form.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "mmalign/io/caption_annotations.hpp"
#include "support/errors.hpp"
#include "support/temp_dir.hpp"

using namespace mmalign;
using mmalign::test::io_error_of;

namespace {

const std::string fixture_dir = std::string(MMALIGN_FIXTURE_DIR) + "/caption_data/";

void check_against_expected(const io::CaptionAnnotations& ann, const nlohmann::json& expected) {
    REQUIRE(ann.images.size() == expected.size());
    std::size_t pairs = 0;
    for (std::size_t i = 0; i < expected.size(); ++i) {
        const auto& e = expected[i];
        const io::CaptionRecord& r = ann.images[i];
        CAPTURE(i);
        CHECK(r.image == e.at("image").get<std::string>());
        CHECK(r.captions == e.at("captions").get<std::vector<std::string>>());
        CHECK(r.image_id == e.at("image_id").get<std::string>());
        CHECK(r.entry == e.at("entry").get<std::size_t>());
        CHECK(r.caption_entry == e.at("caption_entry").get<std::vector<std::size_t>>());
        pairs += r.captions.size();
    }
    CHECK(ann.pairs() == pairs);
}

/// The message reading `text` as an annotation file gives, after the "CaptionAnnotations: '<file>': " prefix.
std::string error_for(const mmalign::test::TempDir& dir, const std::string& text) {
    const std::string path = dir.file("ann.json", text);
    const std::string msg = io_error_of([&] { (void)io::CaptionAnnotations::read(path); });
    const std::string prefix = "CaptionAnnotations: '" + path + "': ";
    REQUIRE_MESSAGE(msg.starts_with(prefix), msg);
    CHECK_MESSAGE(msg.find('\n') == std::string::npos, msg);
    return msg.substr(prefix.size());
}

}  // namespace

TEST_CASE("the train form (one caption string per entry, string and integer ids) is grouped by image as LAVIS's files give it") {
    const nlohmann::json expected = nlohmann::json::parse(std::ifstream(fixture_dir + "expected_annotations.json"));
    const auto ann = io::CaptionAnnotations::read(fixture_dir + "train.json");
    CHECK(ann.path == fixture_dir + "train.json");
    check_against_expected(ann, expected.at("train.json"));
    CHECK(ann.pairs() == 5);
    CHECK(ann.images.size() == 3);
    CHECK(ann.images[1].image_id == "42");  // an integer id, as text
}

TEST_CASE("the val/test form (a list of captions, no image_id) derives the id as LAVIS's COCOCapEvalDataset does") {
    const nlohmann::json expected = nlohmann::json::parse(std::ifstream(fixture_dir + "expected_annotations.json"));
    const auto ann = io::CaptionAnnotations::read(fixture_dir + "val.json");
    check_against_expected(ann, expected.at("val.json"));
    CHECK(ann.images[0].image_id == "391895");
    CHECK(ann.images[2].image_id == "custom/photo-1.png");  // not a number: the image path
}

TEST_CASE("each bad entry or field is one line naming the entry index and the field") {
    mmalign::test::TempDir dir;
    CHECK(error_for(dir, R"([{"image": "a.jpg", "caption": "x"}, {"caption": "y"}])") ==
          "entry 1: missing the field \"image\"");
    CHECK(error_for(dir, R"([{"image": "a.jpg"}])") == "entry 0: missing the field \"caption\"");
    CHECK(error_for(dir, R"([{"image": "a.jpg", "caption": 5}])") ==
          "entry 0: \"caption\": expected a string or a non-empty list of strings, found an integer (5)");
    CHECK(error_for(dir, R"([{"image": "a.jpg", "caption": []}])") ==
          "entry 0: \"caption\": expected a string or a non-empty list of strings, found an empty list");
    CHECK(error_for(dir, R"([{"image": "a.jpg", "caption": ["ok", null]}])") ==
          "entry 0: \"caption\": item 1: expected a string, found null");
    CHECK(error_for(dir, R"([{"image": 3, "caption": "x"}])") == "entry 0: \"image\": expected a string, found an integer (3)");
    CHECK(error_for(dir, R"([{"image": "", "caption": "x"}])") == "entry 0: \"image\": is empty");
    CHECK(error_for(dir, R"([{"image": "a.jpg", "caption": "x", "image_id": 1.5}])") ==
          "entry 0: \"image_id\": expected a string or an integer, found a number (1.5)");
    CHECK(error_for(dir, R"([{"image": "a.jpg", "caption": "x", "image_id": true}])") ==
          "entry 0: \"image_id\": expected a string or an integer, found a boolean");
    CHECK(error_for(dir, R"([{"image": "a.jpg", "caption": "x"}, "b.jpg"])") == "entry 1: expected an object, found a string");
    CHECK(error_for(dir, R"([{"image": "a.jpg", "caption": "x", "image_id": 1},
                            {"image": "a.jpg", "caption": "y", "image_id": "2"}])") ==
          "entry 1: \"image_id\": \"2\" differs from \"1\", given for the same image by entry 0");
}

TEST_CASE("fields the format does not define are skipped whatever they hold, and nested lists are not captions") {
    mmalign::test::TempDir dir;
    const std::string path = dir.file("ann.json", R"([
        {"image": "a.jpg", "extra": {"caption": 5, "x": [[{"image": 1}], []]}, "caption": "ok", "sentids": [1, [2]]},
        {"split": "train", "image": "a.jpg", "caption": ["two", "three"], "image_id": null}])");
    const auto ann = io::CaptionAnnotations::read(path);
    REQUIRE(ann.images.size() == 1);
    CHECK(ann.images[0].captions == std::vector<std::string>{"ok", "two", "three"});
    CHECK(ann.images[0].caption_entry == std::vector<std::size_t>{0, 1, 1});
    CHECK(ann.images[0].image_id == "a.jpg");  // null is absent; "a" is no number
    CHECK(error_for(dir, R"([{"image": "a.jpg", "caption": ["a", ["b"]]}])") ==
          "entry 0: \"caption\": item 1: expected a string, found an array");
    CHECK(error_for(dir, "5") == "expected a JSON array of entries at the top, found an integer (5)");
}

TEST_CASE("a file that is not a JSON array of entries is refused in its own words") {
    mmalign::test::TempDir dir;
    CHECK(error_for(dir, "") == "the file is empty");
    CHECK(error_for(dir, "[]") == "the array holds no entries");
    CHECK(error_for(dir, R"({"annotations": []})") == "expected a JSON array of entries at the top, found an object");
    CHECK(error_for(dir, R"([{"image": "a.jpg", "caption": "x"})").starts_with("not valid JSON: "));
    CHECK(error_for(dir, "[{\"image\": \"a.jpg\", \"caption\": \"bad \xff byte\"}]").starts_with("not valid JSON: "));
    CHECK(error_for(dir, "[{\"image\": \"a.jpg\", \"caption\": \"bad \xff byte\"}]").find("UTF-8") != std::string::npos);
}

TEST_CASE("a missing file, a directory, a FIFO, a device and an oversized file are refused before reading") {
    mmalign::test::TempDir dir;
    auto error_at = [](const std::string& path) {
        return io_error_of([&] { (void)io::CaptionAnnotations::read(path); });
    };
    CHECK(error_at(dir / "absent.json") == "CaptionAnnotations: '" + (dir / "absent.json") + "': no such file");
    std::filesystem::create_directories(dir / "folder.json");
    CHECK(error_at(dir / "folder.json") ==
          "CaptionAnnotations: '" + (dir / "folder.json") + "': a directory, not a regular file");
    REQUIRE(mkfifo((dir / "fifo.json").c_str(), 0600) == 0);
    CHECK(error_at(dir / "fifo.json") ==
          "CaptionAnnotations: '" + (dir / "fifo.json") + "': a FIFO (named pipe), not a regular file");
    CHECK(error_at("/dev/zero") == "CaptionAnnotations: '/dev/zero': a character device, not a regular file");
    // A sparse file one byte over the cap: refused by its size, nothing read or allocated.
    const std::string huge = dir / "huge.json";
    { std::ofstream(huge) << ""; }
    REQUIRE(truncate(huge.c_str(), static_cast<off_t>(io::max_annotation_file_bytes + 1)) == 0);
    CHECK(error_at(huge) == "CaptionAnnotations: '" + huge + "': " + std::to_string(io::max_annotation_file_bytes + 1) +
                                " bytes, more than the " + std::to_string(io::max_annotation_file_bytes) +
                                " this reader accepts");
}
