// Reading the Q-Former parity fixtures (tests/fixtures/qformer/<case>/, made by
// tools/make_qformer_fixtures.py from transformers' Blip2QFormerModel) and comparing with them:
// shared by the CPU test (tests/bridges/test_qformer.cpp) and the CUDA one (tests/cuda/test_cuda_qformer.cu).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "mmalign/bridges/qformer.hpp"
#include "mmalign/io/hf_config.hpp"
#include "mmalign/io/safetensors.hpp"

namespace mmalign::test::qformer {

inline const std::string fixtures = std::string(MMALIGN_FIXTURE_DIR) + "/qformer/";
inline const std::vector<std::string> cases = {"f2_q4_query_only", "f1_q8_text", "f2_q4_text"};

/// Every parameter of a Q-Former under Blip2ForImageTextRetrieval's names.
template <class B>
struct Everything {
    QFormer<B>& q;
    template <class F>
    void visit(F&& f, const std::string& = "") {
        q.visit_query_tokens(f);
        if (q.config.text) q.visit_text_embeddings(f);
        q.visit(f);
    }
};

template <class T>
Tensor<T> read(const io::SafetensorsFile& file, const std::string& name) {
    REQUIRE_MESSAGE(file.contains(name), "no tensor ", name);
    Tensor<T> t(file.info(name).shape);
    file.read_into(name, t.view());
    return t;
}

/// max |got − want| / max |want|.
inline double relative_diff(ConstView<float> got, ConstView<float> want) {
    REQUIRE(got.numel() == want.numel());
    double worst = 0, scale = 1e-30;
    for (index_t i = 0; i < got.numel(); ++i) {
        worst = std::max(worst, std::abs(double(got.data()[i]) - double(want.data()[i])));
        scale = std::max(scale, std::abs(double(want.data()[i])));
    }
    return worst / scale;
}

/// A fixture case: its config (config.json through Config::hf_fields), inputs and expected values.
struct Case {
    std::string name, dir;
    nlohmann::json json;
    io::SafetensorsFile expected;
    QFormerConfig config;
    Tensor<float> image;  // [B, Te, De]
    std::vector<std::int32_t> ids, mask;  // [B·T] each, text cases only

    explicit Case(const std::string& case_name)
        : name(case_name), dir(fixtures + case_name), json(read_json(dir + "/expected.json")),
          expected(io::SafetensorsFile::open(dir + "/expected.safetensors")) {
        io::read_hf_fields(config, io::load_hf_config(dir + "/config.json"));
        config.num_queries = json.at("num_query_tokens").get<index_t>();
        image = read<float>(expected, "image");
        if (config.text) {
            const Tensor<std::int32_t> i = read<std::int32_t>(expected, "ids"), m = read<std::int32_t>(expected, "mask");
            ids.assign(i.begin(), i.end());
            mask.assign(m.begin(), m.end());
        }
    }
    static nlohmann::json read_json(const std::string& path) {
        std::ifstream f(path);
        REQUIRE_MESSAGE(f.good(), "cannot open ", path);
        return nlohmann::json::parse(f);
    }
    index_t batch() const { return json.at("batch").get<index_t>(); }

    /// The model with model.safetensors loaded (host parameters, or the backend's with `be`).
    template <class B>
    QFormer<B> model(B* be = nullptr) const {
        QFormer<B> q(config);
        Everything<B> all{q};
        const auto file = io::SafetensorsFile::open(dir + "/model.safetensors");
        if constexpr (std::is_same_v<typename B::Tensor, Tensor<typename B::Scalar>>) io::load_parameters(all, file);
        else io::load_parameters(*be, all, file);
        return q;
    }
    /// The Input of a pass of expected.json; `img` is the image in the backend's memory.
    template <class B>
    typename QFormer<B>::Input input(const nlohmann::json& pass, ConstView<typename B::Scalar> img) const {
        const bool text = pass.at("text").get<bool>();
        const std::span<const std::int32_t> none;
        return {.batch = batch(),
                .queries = pass.at("queries").get<bool>(),
                .ids = text ? std::span<const std::int32_t>(ids) : none,
                .attention_mask = text ? std::span<const std::int32_t>(mask) : none,
                .image = pass.at("image").get<bool>() ? img : ConstView<typename B::Scalar>{},
                .attention = pass.at("attention") == "multimodal_causal" ? QFormerAttention::multimodal_causal
                                                                          : QFormerAttention::bidirectional};
    }
};

}  // namespace mmalign::test::qformer
