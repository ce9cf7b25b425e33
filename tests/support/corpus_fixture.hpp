// Reading a tokenizer corpus fixture: corpus.txt (one JSON string per line) and a JSON-lines file
// of expectations whose first line is {"meta": ...}, as the tools/make_*_fixtures.py scripts write
// them; and printing id lists in messages.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <fstream>
#include <istream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mmalign::test {

inline std::vector<std::string> read_lines(std::istream& in) {
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

inline std::vector<std::string> read_lines(const std::string& path) {
    std::ifstream f(path);
    REQUIRE_MESSAGE(f.good(), "cannot open " << path);
    return read_lines(f);
}

struct CorpusFixture {
    std::vector<std::string> corpus;
    nlohmann::json meta;
    std::vector<nlohmann::json> records;  // the expectation lines after the metadata
};

/// The metadata line and the records of JSON lines.
inline void read_expectations(const std::vector<std::string>& lines, CorpusFixture& f) {
    REQUIRE_FALSE(lines.empty());
    f.meta = nlohmann::json::parse(lines.front()).at("meta");
    for (std::size_t i = 1; i < lines.size(); ++i) f.records.push_back(nlohmann::json::parse(lines[i]));
}

inline CorpusFixture read_corpus_fixture(const std::string& corpus_txt, const std::string& expected_jsonl) {
    CorpusFixture f;
    for (const auto& line : read_lines(corpus_txt)) f.corpus.push_back(nlohmann::json::parse(line).get<std::string>());
    read_expectations(read_lines(expected_jsonl), f);
    return f;
}

inline std::string show_ids(const std::vector<std::int32_t>& ids) {
    std::string s = "[";
    for (std::size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
    return s + "]";
}

}  // namespace mmalign::test
