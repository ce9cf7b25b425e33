// Tests of models/clip.hpp against Hugging Face's CLIPModel: three random tiny checkpoints written
// by tools/make_clip_fixtures.py (save_pretrained + HF's outputs for fixed inputs), loaded from
// config.json and model.safetensors, must reproduce every output to 1e-5.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/io/hf_config.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/models/clip.hpp"

using namespace mmalign;
using Be = CpuBackend<float>;

namespace {

const std::string fixtures = std::string(MMALIGN_FIXTURE_DIR) + "/clip/";

// Max |a − b| over all elements, divided by max(1, max |b|): absolute for embeddings and hidden
// states, relative for logits, which are cosines times exp(logit_scale) (up to 100, where one
// float ulp is 7.6e-6). Prints the worst element so a failure says where.
double worst_diff(const std::string& what, ConstView<float> got, ConstView<float> want) {
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
        std::printf("%s: worst |diff|/max(1,|HF|) %.3g at flat index %lld (got %.7g, HF %.7g)\n", what.c_str(), worst, (long long)at,
                    double(got.data()[at]), double(want.data()[at]));
    return worst;
}

std::vector<std::int32_t> as_ids(const Tensor<float>& t) {
    std::vector<std::int32_t> v(static_cast<std::size_t>(t.numel()));
    for (index_t i = 0; i < t.numel(); ++i) v[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(t.data()[i]);
    return v;
}

struct Loaded {
    io::HfConfig hf;
    Clip<Be> model;
};

Loaded load(const std::string& name) {
    Loaded l{io::load_clip_config(fixtures + name + "/config.json"), {}};
    l.model = Clip<Be>(Clip<Be>::Config::from_hf(l.hf));
    auto file = io::SafetensorsFile::open(fixtures + name + "/model.safetensors");
    io::load_parameters(l.model, file, "");
    return l;
}

}  // namespace

TEST_CASE("CLIP loads HF configs: every field the towers use, and the top-level projection_dim") {
    auto c = Clip<Be>::Config::from_hf(io::load_clip_config(fixtures + "odd_grid_gelu/config.json"));
    CHECK(c.projection_dim == 8);
    CHECK(Clip<Be>(c).text_projection.config.out == 8);  // text_config's own projection_dim (512) is not used
    CHECK(c.vision.image_size == 30);
    CHECK(c.vision.patch_size == 6);
    CHECK(c.vision.activation == Activation::gelu);
    CHECK(c.text.activation == Activation::gelu_tanh);
    CHECK(c.text.eos_token_id == 7);
    CHECK(c.text.max_positions == 12);
}

TEST_CASE("CLIP reproduces HF CLIPModel outputs (features, embeddings, logits, both towers) to 1e-5, plain and fused attention") {
    for (bool fused : {false, true})
        for (const char* name : {"tiny_quick_gelu", "odd_grid_gelu", "single_head_relu"}) {
            CAPTURE(name);
            CAPTURE(fused);
            Loaded l = load(name);
            auto exp = io::SafetensorsFile::open(fixtures + name + "/expected.safetensors");
            Tensor<float> pixels = exp.read<float>("pixel_values");
            const std::vector<std::int32_t> ids = as_ids(exp.read<float>("input_ids"));
            const std::vector<std::int32_t> mask = as_ids(exp.read<float>("attention_mask"));
            const index_t Bi = pixels.dim(0), Bt = exp.shape("input_ids")[0], Tn = exp.shape("input_ids")[1];
            Be be({.threads = 2, .fused_attention = fused});

            auto out = l.model.forward(be, pixels.view(), ids, mask, Bt);
            CHECK(worst_diff("image_embeds", out.image_embeds.view(), exp.read<float>("image_embeds").view()) <= 1e-5);
            CHECK(worst_diff("text_embeds", out.text_embeds.view(), exp.read<float>("text_embeds").view()) <= 1e-5);
            CHECK(worst_diff("logits_per_image", out.logits_per_image.view(), exp.read<float>("logits_per_image").view()) <= 1e-5);
            CHECK(worst_diff("logits_per_text", out.logits_per_text.view(), exp.read<float>("logits_per_text").view()) <= 1e-5);

            const index_t E = l.model.config.projection_dim, Dv = l.model.config.vision.hidden, Dt = l.model.config.text.hidden;
            Tensor<float> fi(Shape{Bi, E}), ft(Shape{Bt, E});
            l.model.image_features(be, pixels.view(), fi.view());
            l.model.text_features(be, ids, mask, Bt, ft.view());
            CHECK(worst_diff("image_features", fi.view(), exp.read<float>("image_features").view()) <= 1e-5);
            CHECK(worst_diff("text_features", ft.view(), exp.read<float>("text_features").view()) <= 1e-5);

            const index_t Tv = l.model.config.vision.tokens();
            Tensor<float> vl(Shape{Bi, Tv, Dv}), vp(Shape{Bi, Dv}), tl(Shape{Bt, Tn, Dt}), tp(Shape{Bt, Dt});
            l.model.vision_model.forward(be, pixels.view(), vl.view(), vp.view());
            l.model.text_model.forward(be, ids, mask, Bt, tl.view(), tp.view());
            CHECK(worst_diff("vision last_hidden_state", vl.view(), exp.read<float>("vision_last_hidden_state").view()) <= 1e-5);
            CHECK(worst_diff("vision pooler_output", vp.view(), exp.read<float>("vision_pooler_output").view()) <= 1e-5);
            // Padded positions of last_hidden_state are compared too: HF computes them under the same
            // causal mask, so they are defined and must agree.
            CHECK(worst_diff("text last_hidden_state", tl.view(), exp.read<float>("text_last_hidden_state").view()) <= 1e-5);
            CHECK(worst_diff("text pooler_output", tp.view(), exp.read<float>("text_pooler_output").view()) <= 1e-5);
        }
}

TEST_CASE("CLIP visits exactly the keys of HF's checkpoint, with HF's shapes") {
    Loaded l = load("tiny_quick_gelu");
    auto file = io::SafetensorsFile::open(fixtures + "tiny_quick_gelu/model.safetensors");
    std::size_t visited = 0;
    l.model.visit([&](const std::string& name, Parameter<float>& p) {
        ++visited;
        REQUIRE_MESSAGE(file.contains(name), name);
        CHECK_MESSAGE(file.shape(name) == p.shape(), name);
    });
    CHECK(visited == file.names().size());
}

TEST_CASE("the text tower rejects sequences longer than max_position_embeddings and ids outside the vocabulary") {
    Loaded l = load("single_head_relu");
    Be be;
    std::vector<std::int32_t> long_ids(11, 5);  // max_position_embeddings is 10
    Tensor<float> pooled(Shape{1, 20});
    CHECK_THROWS_AS(l.model.text_model.forward(be, long_ids, {}, 1, {}, pooled.view()), ShapeError);
    std::vector<std::int32_t> bad(4, 300);  // vocab_size is 300
    CHECK_THROWS_AS(l.model.text_model.forward(be, bad, {}, 1, {}, pooled.view()), ArgumentError);
}

TEST_CASE("bad config.json values are named: wrong type, unknown activation, inconsistent sizes") {
    auto where = std::string("config.json");
    auto parse_clip_config = [](const nlohmann::json& j, const std::string& w) { return Clip<Be>::Config::from_hf({j, w}); };
    nlohmann::json j = {{"projection_dim", "16"}};
    CHECK_THROWS_WITH_AS(parse_clip_config(j, where), "config.json.projection_dim: expected an integer, found string",
                         IoError);
    j = {{"vision_config", {{"hidden_act", "swish"}}}};
    CHECK_THROWS_AS(parse_clip_config(j, where), IoError);
    j = {{"vision_config", {{"image_size", 30}, {"patch_size", 40}}}};
    CHECK_THROWS_WITH_AS(parse_clip_config(j, where), "config.json: vision_config.patch_size 40 exceeds image_size 30",
                         IoError);
    CHECK_THROWS_AS(io::load_clip_config(fixtures + "no_such_dir/config.json"), IoError);
}

TEST_CASE("init_like_hf draws each group with transformers' CLIP standard deviations, reproducibly") {
    Clip<Be>::Config c;
    c.vision = {.image_size = 32, .patch_size = 8, .hidden = 64, .layers = 2, .heads = 4, .mlp_hidden = 128};
    c.text = {.vocab_size = 500, .max_positions = 16, .hidden = 48, .layers = 3, .heads = 4, .mlp_hidden = 96};
    c.projection_dim = 32;
    Clip<Be> a(c), b(c);
    a.init_like_hf(3);
    b.init_like_hf(3);
    auto stddev = [](const Tensor<float>& t) {
        double s = 0;
        for (float v : t) s += double(v) * v;
        return std::sqrt(s / double(t.numel()));
    };
    // q_proj of the vision tower: D^-½·(2L)^-½ = 64^-½·4^-½ = 0.0625; fc1: (2D)^-½ = 0.0884
    CHECK(stddev(a.vision_model.encoder.layers[0].attention.inner.q_proj.params.weight.value) == doctest::Approx(0.0625).epsilon(0.05));
    CHECK(stddev(a.vision_model.encoder.layers[1].feed_forward.inner.fc1.params.weight.value) == doctest::Approx(0.0884).epsilon(0.05));
    CHECK(stddev(a.text_model.token_embedding.params.weight.value) == doctest::Approx(0.02).epsilon(0.05));
    CHECK(stddev(a.text_projection.params.weight.value) == doctest::Approx(1 / std::sqrt(48.0)).epsilon(0.05));
    CHECK(a.vision_model.post_layernorm.params.weight.value(3) == 1.f);
    CHECK(a.vision_model.encoder.layers[0].attention.inner.q_proj.params.bias.value(0) == 0.f);
    CHECK(a.logit_scale.value(0) == doctest::Approx(2.6592));
    CHECK(a.text_model.token_embedding.params.weight.value(7, 3) == b.text_model.token_embedding.params.weight.value(7, 3));
}
