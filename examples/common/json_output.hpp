// examples/common/json_output.hpp — the BLIP tools' outputs: one line of JSON with the keys in the
// documented order, or the same results as a table for people.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <mmalign/generation/generated.hpp>

namespace mmalign::cli {

/// One line of JSON, keys in the documented order; bytes that are not UTF-8 become U+FFFD.
inline void print_json(const nlohmann::ordered_json& j) {
    std::cout << j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << '\n';
}

/// Each row's generated tokens (`new_only`: after the prompt) as a JSON array of id arrays.
inline nlohmann::ordered_json id_rows(const generation::Generated& g, bool new_only) {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (index_t r = 0; r < g.rows; ++r) {
        const auto row = new_only ? g.new_tokens(r) : g.row(r);
        out.push_back(std::vector<std::int32_t>(row.begin(), row.end()));
    }
    return out;
}

/// itm: one image against n texts — `logits` [n, 2] of an image-text matching head (no-match,
/// match) and `cosine` [1, n] — printed as {"itm_scores": softmax(logits)[:, 1], "itc_scores": cosine[0]},
/// or as a table with one text per line.
template <class Logits, class Cosine>
void print_match_scores(bool json, const Logits& logits, const Cosine& cosine, const std::vector<std::string>& texts) {
    std::vector<double> itm, itc;
    for (index_t i = 0; i < logits.dim(0); ++i) {
        itm.push_back(1.0 / (1.0 + std::exp(double(logits(i, 0)) - double(logits(i, 1)))));
        itc.push_back(double(cosine(0, i)));
    }
    if (json) {
        print_json({{"itm_scores", itm}, {"itc_scores", itc}});
        return;
    }
    std::printf("itm     itc      text\n");
    for (std::size_t i = 0; i < texts.size(); ++i) std::printf("%.4f  %+.4f  %s\n", itm[i], itc[i], texts[i].c_str());
}

/// caption/vqa: {"<key>": [texts], "ids": [[...]]}, or "<image>: <before><text>" per row (rows
/// come image by image, `rows / images` per image).
inline void print_generated(bool json, const char* key, const std::vector<std::string>& texts,
                            const nlohmann::ordered_json& ids, const std::vector<std::string>& images,
                            const std::vector<std::string>& before = {}) {
    if (json) {
        print_json({{key, texts}, {"ids", ids}});
        return;
    }
    const std::size_t per_image = texts.size() / images.size();
    for (std::size_t r = 0; r < texts.size(); ++r) {
        const std::size_t i = r / per_image;
        std::printf("%s: %s%s\n", images[i].c_str(), before.empty() ? "" : (before[i] + " ").c_str(), texts[r].c_str());
    }
}

}  // namespace mmalign::cli
