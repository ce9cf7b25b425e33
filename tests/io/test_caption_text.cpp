// tests/io/test_caption_text.cpp — blip_caption against LAVIS's BlipCaptionProcessor on tricky
// strings: tests/fixtures/caption_data/captions.json, made by tools/make_caption_data_fixtures.py
// (which runs LAVIS's pre_caption statements in Python).
#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "mmalign/io/caption_text.hpp"

using namespace mmalign;

namespace {

nlohmann::json read_fixture(const std::string& name) {
    std::ifstream f(std::string(MMALIGN_FIXTURE_DIR) + "/caption_data/" + name);
    REQUIRE_MESSAGE(f.good(), "cannot open fixture " << name);
    return nlohmann::json::parse(f);
}

}  // namespace

TEST_CASE("blip_caption equals LAVIS's BlipCaptionProcessor on every fixture string, max_words and prompt") {
    const nlohmann::json cases = read_fixture("captions.json");
    REQUIRE(cases.size() >= 100);
    int checked = 0;
    for (const auto& c : cases) {
        const std::string text = c.at("text"), prompt = c.at("prompt"), expected = c.at("expected");
        const std::size_t max_words = c.at("max_words");
        CAPTURE(text);
        CAPTURE(max_words);
        CAPTURE(prompt);
        CHECK(io::blip_caption(text, max_words, prompt) == expected);
        ++checked;
    }
    CHECK(checked == static_cast<int>(cases.size()));
}

TEST_CASE("blip_caption keeps a lone tab or newline and collapses only runs of white space, as Python's re does") {
    CHECK(io::blip_caption("A\tB") == "a\tb");
    CHECK(io::blip_caption("A\t\tB") == "a b");
    CHECK(io::blip_caption("A.\tB") == "a b");  // '.' becomes a space, then " \t" is a run
    CHECK(io::blip_caption("x\x1f\x1fy") == "x y");  // U+001F is white space to Python's str.isspace
    CHECK(io::blip_caption("\n\nend\n") == "end");
}

TEST_CASE("blip_caption truncates to max_words words counted by single spaces") {
    CHECK(io::blip_caption("one two three four", 2) == "one two");
    CHECK(io::blip_caption("one two three four", 4) == "one two three four");
    CHECK(io::blip_caption("one two", 0) == "");
    CHECK(io::blip_caption("One (two) three!", 2, "a picture of ") == "a picture of one two");
}

TEST_CASE("blip_caption lower-cases Greek capital sigma to final sigma at the end of a word, as Python's str.lower") {
    CHECK(io::blip_caption("ΟΔΟΣ") == "οδος");
    CHECK(io::blip_caption("ΣΑΣ ΑΣΑ") == "σας ασα");
    CHECK(io::blip_caption("Σ") == "σ");
}

TEST_CASE("blip_caption refuses text that is not valid UTF-8, naming the byte") {
    try {
        (void)io::blip_caption("ok \xff bad");
        FAIL("expected InvalidUtf8Error");
    } catch (const io::InvalidUtf8Error& e) {
        CHECK(e.offset() == 3);
        CHECK(std::string(e.what()).find("blip_caption") != std::string::npos);
    }
}
