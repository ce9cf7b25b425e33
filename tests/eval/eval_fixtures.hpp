// The JSON fixtures of the eval tests (tests/fixtures/caption_metrics/, vqa_eval/).
#pragma once

#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

namespace mmalign::test {

/// The directory of one eval fixture set, with a trailing slash.
inline std::string eval_fixture_dir(const std::string& set) { return std::string(MMALIGN_FIXTURE_DIR) + "/" + set + "/"; }

/// A parsed fixture file of `set`.
inline nlohmann::json load_eval_fixture(const std::string& set, const std::string& name) {
    std::ifstream in(eval_fixture_dir(set) + name);
    REQUIRE_MESSAGE(in, "missing fixture ", set, "/", name);
    return nlohmann::json::parse(in);
}

}  // namespace mmalign::test
