// Tests of encoders/vision_transformer.hpp: patch layout, HF key names, the backward of the whole
// tower (patch embedding and its bias, class token, positions, the LayerNorms, blocks, pooling)
// against finite differences in double, and the BLIP / BLIP-2 configurations against transformers'
// BlipVisionModel and Blip2VisionModel (tests/fixtures/vit, tools/make_vit_fixtures.py), loaded
// through io/tensor_map.hpp from HF's fused q/k/v tensors and LAVIS's q_bias/v_bias.
#include <doctest/doctest.h>

#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "mmalign/encoders/vision_transformer.hpp"
#include "mmalign/io/hf_config.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/io/tensor_map.hpp"
#include "support/compare.hpp"
#include "support/module_check.hpp"
#include "support/reference.hpp"
#include "support/temp_dir.hpp"

using namespace mmalign;
using test::Be;
using Vit = VisionTransformer<Be>;
using Bf = CpuBackend<float>;
using VitF = VisionTransformer<Bf>;

namespace {

const std::string vit_fixtures = std::string(MMALIGN_FIXTURE_DIR) + "/vit/";

/// A tower of `preset`'s layout with the sizes of the fixture's config.json, HF's weights loaded.
VitF load_fixture(const std::string& name, VitF::Config preset) {
    io::read_hf_fields(preset, io::load_hf_config(vit_fixtures + name + "/config.json"));
    VitF vit(preset);
    Bf be;
    io::load_mapped(be, vit, io::SafetensorsFile::open(vit_fixtures + name + "/model.safetensors"), io::hf_tensor_map(vit));
    return vit;
}

/// Max |got − want| of the tower's two outputs against HF's, plain and fused attention.
void check_against_hf(VitF& vit, const std::string& name) {
    auto exp = io::SafetensorsFile::open(vit_fixtures + name + "/expected.safetensors");
    const Tensor<float> pixels = exp.read<float>("pixel_values");
    const Tensor<float> want_last = exp.read<float>("last_hidden_state"), want_pooled = exp.read<float>("pooler_output");
    for (bool fused : {false, true}) {
        CAPTURE(fused);
        Bf be({.threads = 2, .fused_attention = fused});
        Tensor<float> last(want_last.shape()), pooled(want_pooled.shape());  // [B, N+1, D], [B, D]
        vit.forward(be, pixels.view(), last.view(), pooled.view());
        CHECK(test::max_abs_diff<float>(last.view(), want_last.view()) <= 1e-5);
        CHECK(test::max_abs_diff<float>(pooled.view(), want_pooled.view()) <= 1e-5);
    }
}

}  // namespace

TEST_CASE("patchify orders patches row-major over the grid and elements as (channel, row, column)") {
    Be be;
    Tensor<double> px(Shape{1, 2, 4, 4});
    for (index_t i = 0; i < px.numel(); ++i) px.data()[i] = double(i);
    Tensor<double> patches(Shape{1, 4, 8});
    be.patchify(px.view(), 2, patches.view());
    // patch 1 = grid row 0, column 1: channel 0 rows 0-1 columns 2-3, then channel 1.
    const double want[] = {2, 3, 6, 7, 18, 19, 22, 23};
    for (index_t e = 0; e < 8; ++e) CHECK(patches(0, 1, e) == want[e]);
    // A fifth row is a remainder the stride-2 convolution never reads: the same patches.
    Tensor<double> taller(Shape{1, 2, 5, 4});
    for (index_t c = 0; c < 2; ++c)
        for (index_t y = 0; y < 5; ++y)
            for (index_t x = 0; x < 4; ++x) taller(0, c, y, x) = y < 4 ? px(0, c, y, x) : -1.0;
    Tensor<double> again(Shape{1, 4, 8});
    be.patchify(taller.view(), 2, again.view());
    for (index_t i = 0; i < again.numel(); ++i) CHECK(again.data()[i] == patches.data()[i]);
    Tensor<double> small(Shape{1, 2, 1, 4});
    CHECK_THROWS_AS(be.patchify(small.view(), 2, patches.view()), ShapeError);
}

TEST_CASE("the vision tower names its parameters like HF CLIPVisionTransformer") {
    Vit vit({.image_size = 8, .patch_size = 4, .hidden = 8, .layers = 1, .heads = 2, .mlp_hidden = 16});
    std::vector<std::string> names;
    vit.visit([&](const std::string& n, Parameter<double>& p) { names.push_back(n + p.shape().str()); }, "vision_model");
    CHECK(names[0] == "vision_model.embeddings.class_embedding[8]");
    CHECK(names[1] == "vision_model.embeddings.patch_embedding.weight[8, 3, 4, 4]");
    CHECK(names[2] == "vision_model.embeddings.position_embedding.weight[5, 8]");
    CHECK(names[3] == "vision_model.pre_layrnorm.weight[8]");
    CHECK(names.back() == "vision_model.post_layernorm.bias[8]");
}

TEST_CASE("the vision tower's backward matches finite differences for every parameter") {
    Be be;
    Vit vit({.image_size = 8, .patch_size = 4, .channels = 3, .hidden = 8, .layers = 2, .heads = 2, .mlp_hidden = 12,
             .activation = Activation::quick_gelu});
    test::randomize(vit, 1, 0.4);
    Tensor<double> px = test::random_tensor({2, 3, 8, 8}, 2);
    Tensor<double> r_pool = test::random_tensor({2, 8}, 3), r_last = test::random_tensor({2, 5, 8}, 4);
    Tensor<double> pooled(Shape{2, 8}), last(Shape{2, 5, 8});
    Vit::Saved s;
    vit.forward(be, px.view(), last.view(), pooled.view(), &s);
    zero_grad(vit);
    vit.backward(be, s, r_pool.view(), r_last.view(), GradMode::accumulate);
    test::check_module_gradients(vit, {}, [&] {
        vit.forward(be, px.view(), last.view(), pooled.view());
        return testing::dot<double>(r_pool.view(), pooled.view()) + testing::dot<double>(r_last.view(), last.view());
    });
}

TEST_CASE("the vision tower rejects images of another size") {
    Be be;
    Vit vit({.image_size = 8, .patch_size = 4, .hidden = 8, .layers = 1, .heads = 2, .mlp_hidden = 16});
    Tensor<double> px(Shape{1, 3, 12, 12}), pooled(Shape{1, 8});
    CHECK_THROWS_WITH_AS(vit.forward(be, px.view(), {}, pooled.view()),
                         "VisionTransformer pixels: expected [*, 3, 8, 8], found [1, 3, 12, 12]", ShapeError);
}

TEST_CASE("a BLIP tower (patch bias, no pre-norm, post-norm on every token and again on the pooled one, raw position and class parameters, fused qkv) reproduces HF BlipVisionModel to 1e-5") {
    VitF vit = load_fixture("blip", VitF::Config::blip());
    CHECK(vit.config.hidden == 16);
    CHECK(vit.config.eps == 1e-5);
    check_against_hf(vit, "blip");
}

TEST_CASE("BLIP-2 towers, with qkv_bias (fused [3D] bias) and without (no q/k/v bias), reproduce HF Blip2VisionModel to 1e-5") {
    VitF with_bias = load_fixture("blip2", VitF::Config::blip2());
    CHECK(with_bias.config.eps == 1e-6);
    CHECK(with_bias.config.qkv_bias == QkvBias::all);
    check_against_hf(with_bias, "blip2");

    VitF no_bias = load_fixture("blip2_no_qkv_bias", VitF::Config::blip2());
    CHECK(no_bias.config.qkv_bias == QkvBias::none);  // config.json: "qkv_bias": false
    CHECK(no_bias.config.activation == Activation::gelu_tanh);
    check_against_hf(no_bias, "blip2_no_qkv_bias");
    // the biases the checkpoint has no tensor for are zero and never trained
    no_bias.visit([&](const std::string& name, Parameter<float>& p) {
        const bool qkv_bias = name.ends_with("self_attn.q.bias") || name.ends_with("self_attn.k.bias") ||
                              name.ends_with("self_attn.v.bias");
        CHECK_MESSAGE(p.requires_grad == !qkv_bias, name);
        if (qkv_bias)
            for (float v : p.value) CHECK(v == 0.f);
    });
}

TEST_CASE("the BLIP and BLIP-2 layouts give exactly the keys and shapes of HF's state dict") {
    for (const char* name : {"blip", "blip2", "blip2_no_qkv_bias"}) {
        CAPTURE(name);
        VitF vit = load_fixture(name, std::string(name) == "blip" ? VitF::Config::blip() : VitF::Config::blip2());
        auto file = io::SafetensorsFile::open(vit_fixtures + name + "/model.safetensors");
        const auto keys = io::mapped_shapes(vit, io::hf_tensor_map(vit));
        CHECK(keys.size() == file.names().size());
        for (const auto& [key, shape] : keys) {
            REQUIRE_MESSAGE(file.contains(key), key);
            CHECK_MESSAGE(file.shape(key) == shape, key);
        }
    }
}

TEST_CASE("saving a loaded BLIP tower writes HF's tensors back bit for bit (fused qkv concatenated), and reloading gives identical parameters") {
    for (const char* name : {"blip", "blip2"}) {
        CAPTURE(name);
        VitF vit = load_fixture(name, std::string(name) == "blip" ? VitF::Config::blip() : VitF::Config::blip2());
        test::TempDir tmp;
        Bf be;
        const auto map = io::hf_tensor_map(vit);
        io::save_mapped(be, vit, tmp / "saved.safetensors", map);
        auto hf = io::SafetensorsFile::open(vit_fixtures + name + "/model.safetensors");
        auto ours = io::SafetensorsFile::open(tmp / "saved.safetensors");
        REQUIRE(ours.names() == hf.names());
        for (const auto& key : hf.names()) {
            CAPTURE(key);
            REQUIRE(ours.info(key).dtype == hf.info(key).dtype);
            CHECK(ours.shape(key) == hf.shape(key));
            const auto a = ours.bytes(key), b = hf.bytes(key);
            REQUIRE(a.size() == b.size());
            CHECK(std::memcmp(a.data(), b.data(), a.size()) == 0);
        }
        VitF again(vit.config);
        io::load_mapped(be, again, ours, map);
        std::vector<const Parameter<float>*> before;
        vit.visit([&](const std::string&, Parameter<float>& p) { before.push_back(&p); });
        std::size_t i = 0;
        again.visit([&](const std::string& n, Parameter<float>& p) {
            CAPTURE(n);
            CHECK(std::memcmp(p.value.data(), before[i++]->value.data(), std::size_t(p.value.numel()) * sizeof(float)) == 0);
        });
    }
}

TEST_CASE("LAVIS's q_bias/v_bias form (no k bias) loads into the q and v biases with a zero, frozen k bias, reproduces HF, and saves back in that form") {
    // The blip2 fixture's k third of every qkv.bias is zero, as in the hub checkpoints that HF
    // converted from LAVIS, so the same outputs hold for the split form written here.
    test::TempDir tmp;
    auto hf = io::SafetensorsFile::open(vit_fixtures + "blip2/model.safetensors");
    std::deque<Tensor<float>> keep;
    std::vector<io::TensorToSave> lavis;
    for (const auto& key : hf.names()) {
        const Tensor<float>& t = keep.emplace_back(hf.read<float>(key));
        const std::string fused_bias = "self_attn.qkv.bias";
        if (key.ends_with(fused_bias)) {
            const std::string attn = key.substr(0, key.size() - std::string("qkv.bias").size());
            const index_t D = t.dim(0) / 3;
            lavis.emplace_back(attn + "q_bias", t.view().slice(0, D));
            lavis.emplace_back(attn + "v_bias", t.view().slice(2 * D, 3 * D));
        } else {
            lavis.emplace_back(key, t.cview());
        }
    }
    io::save_safetensors(tmp / "lavis.safetensors", lavis);

    VitF::Config c = VitF::Config::blip2();
    io::read_hf_fields(c, io::load_hf_config(vit_fixtures + "blip2/config.json"));
    c.qkv_bias = QkvBias::qv;
    VitF vit(c);
    Bf be;
    const auto map = io::hf_tensor_map(vit);
    vit.visit([&](const std::string& name, Parameter<float>& p) {
        if (name.ends_with("self_attn.k.bias")) p.value.fill(7.f);  // the load must write the zeros
    });
    io::load_mapped(be, vit, io::SafetensorsFile::open(tmp / "lavis.safetensors"), map);
    check_against_hf(vit, "blip2");
    int k_biases = 0;
    vit.visit([&](const std::string& name, Parameter<float>& p) {
        if (!name.ends_with("self_attn.k.bias")) {
            CHECK_MESSAGE(p.requires_grad, name);
            return;
        }
        ++k_biases;
        CHECK_FALSE(p.requires_grad);
        for (float v : p.value) CHECK(v == 0.f);
    });
    CHECK(k_biases == c.layers);

    // a backward leaves the frozen k bias without a gradient
    Tensor<float> px = test::random_host({1, 3, c.image_size, c.image_size}, 9);
    Tensor<float> pooled(Shape{1, c.hidden}), d_pooled = test::random_host({1, c.hidden}, 10);
    VitF::Saved s;
    vit.forward(be, px.view(), {}, pooled.view(), &s);
    vit.backward(be, s, d_pooled.view(), {}, GradMode::accumulate);
    vit.visit([&](const std::string& name, Parameter<float>& p) {
        if (name.ends_with("self_attn.k.bias")) CHECK_FALSE(p.has_grad());
        else if (name.ends_with("self_attn.q.bias")) CHECK(p.has_grad());
    });

    io::save_mapped(be, vit, tmp / "again.safetensors", map);
    auto a = io::SafetensorsFile::open(tmp / "again.safetensors"), b = io::SafetensorsFile::open(tmp / "lavis.safetensors");
    REQUIRE(a.names() == b.names());
    for (const auto& key : b.names()) {
        CAPTURE(key);
        const auto x = a.bytes(key), y = b.bytes(key);
        REQUIRE(x.size() == y.size());
        CHECK(std::memcmp(x.data(), y.data(), x.size()) == 0);
    }
    // a k bias that is no longer zero cannot be written in a layout without one
    vit.visit([&](const std::string& name, Parameter<float>& p) {
        if (name == "encoder.layers.1.self_attn.k.bias") p.value(2) = 0.5f;
    });
    CHECK_THROWS_AS(io::save_mapped(be, vit, tmp / "bad.safetensors", map), IoError);
}

TEST_CASE("a BLIP-style tower's backward matches finite differences (patch bias, no pre-norm, post-norm twice, raw positions)") {
    Be be;
    Vit::Config c = Vit::Config::blip();
    c.image_size = 8, c.patch_size = 4, c.hidden = 8, c.layers = 2, c.heads = 2, c.mlp_hidden = 12;
    Vit vit(c);
    test::randomize(vit, 11, 0.4);
    Tensor<double> px = test::random_tensor({2, 3, 8, 8}, 12);
    Tensor<double> r_pool = test::random_tensor({2, 8}, 13), r_last = test::random_tensor({2, 5, 8}, 14);
    Tensor<double> pooled(Shape{2, 8}), last(Shape{2, 5, 8});
    Vit::Saved s;
    vit.forward(be, px.view(), last.view(), pooled.view(), &s);
    zero_grad(vit);
    vit.backward(be, s, r_pool.view(), r_last.view(), GradMode::accumulate);
    test::check_module_gradients(vit, {}, [&] {
        vit.forward(be, px.view(), last.view(), pooled.view());
        return testing::dot<double>(r_pool.view(), pooled.view()) + testing::dot<double>(r_last.view(), last.view());
    });
}

TEST_CASE("mean pooling averages the patch tokens (not the class token) and its backward matches finite differences") {
    Be be;
    Vit::Config c{.image_size = 8, .patch_size = 4, .hidden = 8, .layers = 1, .heads = 2, .mlp_hidden = 12};
    c.post_norm = VisionPostNorm::tokens;
    c.pooling = VisionPooling::mean;
    c.patch_bias = true;
    Vit vit(c);
    test::randomize(vit, 21, 0.4);
    Tensor<double> px = test::random_tensor({2, 3, 8, 8}, 22);
    Tensor<double> pooled(Shape{2, 8}), last(Shape{2, 5, 8});
    vit.forward(be, px.view(), last.view(), pooled.view());
    for (index_t b = 0; b < 2; ++b)
        for (index_t d = 0; d < 8; ++d) {
            double mean = 0;
            for (index_t t = 1; t < 5; ++t) mean += last(b, t, d) / 4;
            CHECK(pooled(b, d) == doctest::Approx(mean).epsilon(1e-12));
        }
    Tensor<double> r_pool = test::random_tensor({2, 8}, 23);
    Vit::Saved s;
    vit.forward(be, px.view(), {}, pooled.view(), &s);
    zero_grad(vit);
    vit.backward(be, s, r_pool.view(), {}, GradMode::accumulate);
    test::check_module_gradients(vit, {}, [&] {
        vit.forward(be, px.view(), {}, pooled.view());
        return testing::dot<double>(r_pool.view(), pooled.view());
    });
}

TEST_CASE("a tower without pooling (BLIP-2's, feeding the Q-Former) gives last_hidden_state only, and its backward from it matches finite differences") {
    Be be;
    Vit::Config c = Vit::Config::blip2();
    c.image_size = 8, c.patch_size = 4, c.hidden = 8, c.layers = 1, c.heads = 2, c.mlp_hidden = 12;
    c.pooling = VisionPooling::none;
    Vit vit(c);
    test::randomize(vit, 31, 0.4);
    Tensor<double> px = test::random_tensor({1, 3, 8, 8}, 32);
    Tensor<double> pooled(Shape{1, 8}), last(Shape{1, 5, 8});
    CHECK_THROWS_AS(vit.forward(be, px.view(), last.view(), pooled.view()), ArgumentError);
    CHECK_THROWS_AS(vit.forward(be, px.view(), {}, {}), ArgumentError);
    Tensor<double> r_last = test::random_tensor({1, 5, 8}, 33);
    Vit::Saved s;
    vit.forward(be, px.view(), last.view(), {}, &s);
    zero_grad(vit);
    vit.backward(be, s, {}, r_last.view(), GradMode::accumulate);
    test::check_module_gradients(vit, {}, [&] {
        vit.forward(be, px.view(), last.view(), {});
        return testing::dot<double>(r_last.view(), last.view());
    });
}

TEST_CASE("the BLIP layout names q, k, v under the attention and stores the class token and positions as HF's raw parameters") {
    Vit::Config c = Vit::Config::blip();
    c.image_size = 8, c.patch_size = 4, c.hidden = 8, c.layers = 1, c.heads = 2, c.mlp_hidden = 16;
    Vit vit(c);
    std::vector<std::string> names;
    vit.visit([&](const std::string& n, Parameter<double>& p) { names.push_back(n + p.shape().str()); }, "vision_model");
    CHECK(names[0] == "vision_model.embeddings.class_embedding[1, 1, 8]");
    CHECK(names[1] == "vision_model.embeddings.patch_embedding.weight[8, 3, 4, 4]");
    CHECK(names[2] == "vision_model.embeddings.patch_embedding.bias[8]");
    CHECK(names[3] == "vision_model.embeddings.position_embedding[1, 5, 8]");
    CHECK(names[4] == "vision_model.encoder.layers.0.self_attn.q.weight[8, 8]");
    CHECK(names.back() == "vision_model.post_layernorm.bias[8]");
    io::TensorMap map;
    vit.hf_layout(map, "vision_model");
    REQUIRE(map.groups().size() == 2);
    CHECK(map.groups()[0].key == "vision_model.encoder.layers.0.self_attn.qkv.weight");
    CHECK(map.groups()[0].parts == std::vector<std::string>{"vision_model.encoder.layers.0.self_attn.q.weight",
                                                              "vision_model.encoder.layers.0.self_attn.k.weight",
                                                              "vision_model.encoder.layers.0.self_attn.v.weight"});
    CHECK(map.groups()[1].key == "vision_model.encoder.layers.0.self_attn.qkv.bias");
}
