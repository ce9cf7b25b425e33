// Reading the BLIP and BLIP-2 parity fixtures (tests/fixtures/{blip,blip2}/<case>/expected.{json,
// safetensors}, made by tools/make_blip_fixtures.py and tools/make_blip2_fixtures.py from transformers'
// own classes) and comparing with them: shared by the CPU tests (tests/models/test_blip.cpp,
// test_blip2.cpp) and the CUDA ones (tests/cuda/test_cuda_blip.cu).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mmalign/generation/generate.hpp"
#include "mmalign/io/safetensors.hpp"

namespace mmalign::test::blip {

inline const std::string fixtures = std::string(MMALIGN_FIXTURE_DIR) + "/blip/";
inline const std::string blip2_fixtures = std::string(MMALIGN_FIXTURE_DIR) + "/blip2/";

/// max |got − want| / max(1, max |want|), the worst element printed on failure.
inline double worst_diff(const std::string& what, ConstView<float> got, ConstView<float> want) {
    REQUIRE_MESSAGE(got.shape() == want.shape(), what, ": shape ", got.shape().str(), " vs ", want.shape().str());
    double worst = 0, scale = 1;
    index_t at = 0;
    for (index_t i = 0; i < got.numel(); ++i) {
        const double d = std::abs(double(got.data()[i]) - double(want.data()[i]));
        if (d > worst || std::isnan(d)) worst = d, at = i;
        scale = std::max(scale, std::abs(double(want.data()[i])));
    }
    worst /= scale;
    if (worst > 1e-5 || std::getenv("MMALIGN_PARITY_VERBOSE"))
        std::printf("%s: worst |diff|/max(1,|HF|) %.3g at flat index %lld (got %.7g, HF %.7g)\n", what.c_str(), worst,
                    (long long)at, double(got.data()[at]), double(want.data()[at]));
    return worst;
}

/// worst_diff of a result in the backend's memory (downloaded first) against HF's host tensor.
template <class Be>
double worst_diff(Be& be, const std::string& what, ConstView<float> got, ConstView<float> want) {
    Tensor<float> host(got.shape());
    be.to_host(got, host.view());
    return worst_diff(what, host.view(), want);
}

struct Case {
    std::string dir;
    nlohmann::json json;
    io::SafetensorsFile expected;

    /// tests/fixtures/<root>/<name>: BLIP's cases by default, BLIP-2's with root blip2 (same schema).
    explicit Case(const std::string& name, const std::string& root = fixtures)
        : dir(root + name), json(read_json(dir + "/expected.json")),
          expected(io::SafetensorsFile::open(dir + "/expected.safetensors")) {}

    static nlohmann::json read_json(const std::string& path) {
        std::ifstream f(path);
        REQUIRE_MESSAGE(f.good(), "cannot open ", path);
        return nlohmann::json::parse(f);
    }
    Tensor<float> tensor(const std::string& name) const {
        REQUIRE_MESSAGE(expected.contains(name), dir, ": no tensor ", name);
        Tensor<float> t(expected.info(name).shape);
        expected.read_into(name, t.view());
        return t;
    }
};

/// A JSON list of equal-length int lists → its flat row-major ids and the row count.
inline std::vector<std::int32_t> flat(const nlohmann::json& rows, index_t* batch = nullptr) {
    std::vector<std::int32_t> out;
    for (const auto& r : rows)
        for (const auto& v : r) out.push_back(v.get<std::int32_t>());
    if (batch) *batch = static_cast<index_t>(rows.size());
    return out;
}


/// A JSON [[…]] ids matrix and its mask (or null) as flat rows.
struct Rows {
    std::vector<std::int32_t> ids, mask;  // [batch·T]
    index_t batch = 0;
};
inline Rows rows(const nlohmann::json& ids, const nlohmann::json& mask) {
    Rows r;
    r.ids = flat(ids, &r.batch);
    if (!mask.is_null()) r.mask = flat(mask);
    return r;
}

/// kwargs of an expected.json generate record → GenerationConfig (HF names).
inline generation::GenerationConfig options_of(const nlohmann::json& kw) {
    generation::GenerationConfig o;
    if (kw.contains("num_beams")) o.num_beams = kw.at("num_beams").get<index_t>();
    if (kw.contains("num_return_sequences")) o.num_return_sequences = kw.at("num_return_sequences").get<index_t>();
    if (kw.contains("length_penalty")) o.length_penalty = kw.at("length_penalty").get<double>();
    if (kw.contains("repetition_penalty")) o.repetition_penalty = kw.at("repetition_penalty").get<double>();
    if (kw.contains("max_new_tokens")) o.max_new_tokens = kw.at("max_new_tokens").get<index_t>();
    if (kw.contains("min_new_tokens")) o.min_new_tokens = kw.at("min_new_tokens").get<index_t>();
    if (kw.contains("max_length")) o.max_length = kw.at("max_length").get<index_t>();
    if (kw.contains("early_stopping")) {
        const auto& e = kw.at("early_stopping");
        o.early_stopping = e.is_string() ? generation::EarlyStopping::never
                           : e.get<bool>() ? generation::EarlyStopping::finished
                                           : generation::EarlyStopping::heuristic;
    }
    for (const auto& [key, value] : kw.items()) {
        static const std::set<std::string> known = {"num_beams", "num_return_sequences", "length_penalty", "repetition_penalty",
                                                    "max_new_tokens", "min_new_tokens", "max_length", "early_stopping"};
        REQUIRE_MESSAGE(known.count(key), "generate record with an unhandled option ", key, " = ", value.dump());
    }
    return o;
}

/// The rows of pixel_values (the case's images) that a record's images are.
inline Tensor<float> pixels_of(const Case& c, const nlohmann::json& images) {
    const Tensor<float> all = c.tensor("pixel_values");
    const auto& listed = c.json.at("images");
    const index_t per = all.numel() / all.dim(0);
    Tensor<float> out(Shape{static_cast<index_t>(images.size()), all.dim(1), all.dim(2), all.dim(3)});
    for (std::size_t i = 0; i < images.size(); ++i) {
        const auto at = std::find(listed.begin(), listed.end(), images[i]);
        REQUIRE(at != listed.end());
        const index_t k = static_cast<index_t>(at - listed.begin());
        std::copy_n(all.data() + k * per, per, out.data() + static_cast<index_t>(i) * per);
    }
    return out;
}

inline void check_ids(const std::string& what, const generation::Generated& got, const nlohmann::json& want) {
    CAPTURE(what);
    REQUIRE(got.rows == static_cast<index_t>(want.size()));
    for (index_t r = 0; r < got.rows; ++r) {
        std::vector<std::int32_t> expected;
        for (const auto& v : want[static_cast<std::size_t>(r)]) expected.push_back(v.get<std::int32_t>());
        const auto row = got.row(r);
        const std::vector<std::int32_t> got_row(row.begin(), row.end());
        std::size_t first = 0;
        while (first < std::min(got_row.size(), expected.size()) && got_row[first] == expected[first]) ++first;
        CHECK_MESSAGE(got_row == expected, what, " row ", r, ": first difference at position ", first, " of ",
                      expected.size(), " (got ", first < got_row.size() ? got_row[first] : -1, ", HF ",
                      first < expected.size() ? expected[first] : -1, ", lengths ", got_row.size(), "/", expected.size(), ")");
    }
}

}  // namespace mmalign::test::blip
