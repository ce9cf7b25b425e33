// Full-size BLIP-2 layouts (blip2-opt-2.7b, blip2-opt-6.7b, blip2-itm-vit-g) build from their
// config.json with exactly the tensors — file keys and shapes — of transformers' own classes
// (tools/make_blip2_layout_fixtures.py: the state dict of the model built from that config on the
// meta device, and which of its keys are tied to another). Compared in the file's form, after
// each model's hf_layout: the vision qkv bias fused from q/k/v, the LM head tied to the word
// embeddings. The models are built on a backend whose tensors own no storage
// (support/layout_backend.hpp), so 7.8 billion parameters cost no memory.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "mmalign/io/json_fields.hpp"
#include "mmalign/io/tensor_map.hpp"
#include "mmalign/models/blip2_generation.hpp"
#include "mmalign/models/blip2_model.hpp"
#include "mmalign/models/blip2_retrieval.hpp"
#include "support/layout_backend.hpp"

using namespace mmalign;
using Lb = test::LayoutBackend;

namespace {

std::string layout_dir(const std::string& name) { return std::string(MMALIGN_FIXTURE_DIR) + "/blip2_layouts/" + name; }

/// keys.json: every state-dict key of the transformers model and its shape.
std::map<std::string, std::vector<index_t>> hf_keys(const std::string& name) {
    const nlohmann::json j = io::read_json_file(layout_dir(name) + "/keys.json");
    std::map<std::string, std::vector<index_t>> out;
    for (const auto& [k, v] : j.items()) out.emplace(k, v.get<std::vector<index_t>>());
    return out;
}

/// tied.json: alias key → the key of the parameter it shares.
std::map<std::string, std::string> hf_ties(const std::string& name) {
    const nlohmann::json j = io::read_json_file(layout_dir(name) + "/tied.json");
    std::map<std::string, std::string> out;
    for (const auto& [k, v] : j.items()) out.emplace(k, v.get<std::string>());
    return out;
}

std::vector<index_t> extents(const Shape& s) {
    std::vector<index_t> v;
    for (int i = 0; i < s.rank(); ++i) v.push_back(s[i]);
    return v;
}

/// What the module's state dict is in transformers' form: the keys save_mapped writes (fused,
/// renamed, zero tensors resolved) plus every tied alias under its parameter's shape.
struct Layout {
    std::map<std::string, std::vector<index_t>> keys;
    std::map<std::string, std::string> ties;  // alias → parameter
    index_t parameters = 0;
};

template <class M>
Layout layout_of(M& model) {
    const io::TensorMap map = io::hf_tensor_map(model);
    Layout out;
    for (const auto& [key, shape] : io::mapped_shapes(model, map)) out.keys.emplace(key, extents(shape));
    std::map<std::string, Shape> shapes;
    model.visit([&](const std::string& name, auto& p) {
        shapes.emplace(name, p.shape());
        out.parameters += p.shape().numel();
    });
    for (const auto& [name, rule] : map.rules())
        if (rule.kind == io::TensorMap::Kind::tied) {
            out.ties.emplace(rule.key, name);
            out.keys.emplace(rule.key, extents(shapes.at(name)));
        }
    return out;
}

/// Every key of `want` with its shape in `got` and nothing else; both directions reported by name.
void check_same_keys(const std::map<std::string, std::vector<index_t>>& got,
                     const std::map<std::string, std::vector<index_t>>& want) {
    for (const auto& [key, shape] : want) {
        const auto it = got.find(key);
        if (it == got.end()) {
            FAIL_CHECK("transformers has " << key << ", mmalign does not");
            continue;
        }
        CHECK_MESSAGE(it->second == shape, key);
    }
    for (const auto& [key, shape] : got) CHECK_MESSAGE(want.count(key) == 1, "mmalign has " << key << ", transformers does not");
    CHECK(got.size() == want.size());
}

/// The parameter count of a state dict whose tied aliases are one parameter.
index_t unique_parameters(const std::map<std::string, std::vector<index_t>>& keys, const std::map<std::string, std::string>& ties) {
    index_t n = 0;
    for (const auto& [key, shape] : keys) {
        if (ties.count(key)) continue;
        index_t e = 1;
        for (index_t d : shape) e *= d;
        n += e;
    }
    return n;
}

}  // namespace

TEST_CASE("blip2-opt-2.7b and blip2-opt-6.7b configs give Blip2ForConditionalGeneration's keys, shapes and LM-head tie") {
    for (const char* name : {"blip2-opt-2.7b", "blip2-opt-6.7b"}) {
        CAPTURE(name);
        const auto config = Blip2Config<Lb>::from_folder(layout_dir(name));
        Blip2ForConditionalGeneration<Lb> model(config);
        const Layout got = layout_of(model);
        const auto want = hf_keys(name);
        const auto ties = hf_ties(name);
        check_same_keys(got.keys, want);
        CHECK(got.ties == ties);
        CHECK(got.parameters == unique_parameters(want, ties));
    }
}

TEST_CASE("Blip2Model of the blip2-opt-2.7b config has the same keys as transformers' Blip2Model") {
    Blip2Model<Lb> model(Blip2Config<Lb>::from_folder(layout_dir("blip2-opt-2.7b")));
    const Layout got = layout_of(model);
    check_same_keys(got.keys, hf_keys("blip2-opt-2.7b"));
    CHECK(got.ties == hf_ties("blip2-opt-2.7b"));
}

TEST_CASE("the LAVIS q_bias/v_bias form of blip2-opt-2.7b stores every fused qkv.bias [3·D] as q_bias [D] and v_bias [D]") {
    auto config = Blip2Config<Lb>::from_folder(layout_dir("blip2-opt-2.7b"));
    config.vision.qkv_bias = QkvBias::qv;
    Blip2ForConditionalGeneration<Lb> model(config);
    // transformers' keys with the first HF release's form of the vision attention bias
    std::map<std::string, std::vector<index_t>> want;
    index_t fused = 0;
    const std::string suffix = ".qkv.bias";
    for (const auto& [key, shape] : hf_keys("blip2-opt-2.7b")) {
        if (key.ends_with(suffix)) {
            const std::string attn = key.substr(0, key.size() - suffix.size());
            REQUIRE(shape.size() == 1);
            want.emplace(attn + ".q_bias", std::vector<index_t>{shape[0] / 3});
            want.emplace(attn + ".v_bias", std::vector<index_t>{shape[0] / 3});
            ++fused;
        } else {
            want.emplace(key, shape);
        }
    }
    CHECK(fused == 39);
    check_same_keys(layout_of(model).keys, want);
}

TEST_CASE("the blip2-itm-vit-g config gives Blip2ForImageTextRetrieval's keys and shapes") {
    const auto config = Blip2Config<Lb>::from_folder(layout_dir("blip2-itm-vit-g"));
    Blip2ForImageTextRetrieval<Lb> model(config);
    const Layout got = layout_of(model);
    const auto want = hf_keys("blip2-itm-vit-g");
    check_same_keys(got.keys, want);
    CHECK(got.ties.empty());
    CHECK(got.parameters == unique_parameters(want, {}));
}
