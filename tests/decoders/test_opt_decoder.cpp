// Tests of decoders/opt_decoder.hpp against transformers 5.25's OPTForCausalLM (tests/fixtures/opt,
// tools/make_opt_fixtures.py: pre-norm; post-norm with project_in/out; untied head without biases):
// logits and last_hidden_state of a left-padded batch within 1e-5, soft prompts placed in
// masked_scatter's flat order, d_soft_prompt against PyTorch autograd, generate ids identical
// through the Session; the backward against finite differences; refusals.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../support/blip_fixtures.hpp"
#include "../support/module_check.hpp"
#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/decoders/opt_decoder.hpp"
#include "mmalign/generation/generate.hpp"
#include "mmalign/io/hf_config.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/io/tensor_map.hpp"

using namespace mmalign;
using test::blip::Case;

namespace {

const std::string root = std::string(MMALIGN_FIXTURE_DIR) + "/opt/";
const char* const cases[] = {"prenorm", "postnorm_proj", "untied_nobias"};

template <class Be>
OptDecoder<Be> load(Be& be, const std::string& name) {
    typename OptDecoder<Be>::Config c;
    io::read_hf_fields(c, io::load_hf_config(root + name + "/config.json"));
    OptDecoder<Be> m(c);
    io::load_mapped(be, m, io::SafetensorsFile::open(root + name + "/model.safetensors"), io::hf_tensor_map(m));
    return m;
}

struct Batch {
    std::vector<std::int32_t> ids, mask;
    index_t batch = 0, length = 0;
};
Batch batch_of(const nlohmann::json& in) {
    Batch b;
    b.ids = test::blip::flat(in.at("input_ids"), &b.batch);
    b.mask = test::blip::flat(in.at("attention_mask"));
    b.length = static_cast<index_t>(b.ids.size()) / b.batch;
    return b;
}

/// max |got − want| / max(1, max |want|) over the positions the mask keeps ([B, T, W] tensors).
double worst_kept(ConstView<float> got, ConstView<float> want, const Batch& b) {
    REQUIRE(got.shape() == want.shape());
    const index_t W = got.dim(2);
    double worst = 0, scale = 1;
    for (index_t i = 0; i < b.batch * b.length; ++i) {
        if (!b.mask[static_cast<std::size_t>(i)]) continue;
        for (index_t v = 0; v < W; ++v) {
            worst = std::max(worst, std::abs(double(got.data()[i * W + v]) - double(want.data()[i * W + v])));
            scale = std::max(scale, std::abs(double(want.data()[i * W + v])));
        }
    }
    if (std::getenv("MMALIGN_PARITY_VERBOSE")) std::printf("worst |diff|/max(1,|HF|) over kept positions: %.3g\n", worst / scale);
    return worst / scale;
}

template <class T>
Tensor<T> fixture_tensor(const Case& c, const std::string& name) {
    const Tensor<float> f = c.tensor(name);
    Tensor<T> t(f.shape());
    for (index_t i = 0; i < f.numel(); ++i) t.data()[i] = static_cast<T>(f.data()[i]);
    return t;
}

using Dd = OptDecoder<CpuBackend<double>>;

/// A small random decoder in double: pre- or post-norm, with or without the projections.
Dd::Config small(bool pre_norm, index_t proj) {
    Dd::Config c;
    c.vocab_size = 23, c.hidden = 8, c.layers = 2, c.heads = 2, c.ffn = 12, c.max_positions = 10;
    c.word_embed_proj_dim = proj, c.pre_norm = pre_norm, c.pad_token_id = 22;
    return c;
}

}  // namespace

TEST_CASE("logits and last_hidden_state of a left-padded batch equal transformers' at every token position") {
    CpuBackend<float> be;
    for (const std::string name : cases) {
        CAPTURE(name);
        const Case c(name, root);
        const auto m = load(be, name);
        const Batch b = batch_of(c.json.at("inputs").at("padded"));
        const OptDecoder<CpuBackend<float>>::Input in{.batch = b.batch, .ids = b.ids, .attention_mask = b.mask};
        Tensor<float> logits(Shape{b.batch, b.length, m.vocab_size()});
        m.forward(be, in, logits.view());
        CHECK(worst_kept(logits.view(), c.tensor("padded.logits").view(), b) < 1e-5);
        Tensor<float> hidden(Shape{b.batch, b.length, m.embed_dim()});
        m.hidden_states(be, in, hidden.view());
        CHECK(worst_kept(hidden.view(), c.tensor("padded.last_hidden_state").view(), b) < 1e-5);
    }
}

TEST_CASE("soft-prompt rows take masked_scatter's flat-order values: logits equal transformers' with inputs_embeds") {
    CpuBackend<float> be;
    for (const std::string name : cases) {
        CAPTURE(name);
        const Case c(name, root);
        const auto m = load(be, name);
        const Batch b = batch_of(c.json.at("inputs").at("soft"));
        const Tensor<float> soft = c.tensor("soft.soft_prompt");  // [2, Q, hidden]; wider than Dw in postnorm_proj
        const auto soft_token = c.json.at("soft_token").get<std::int32_t>();
        Tensor<float> logits(Shape{b.batch, b.length, m.vocab_size()});
        m.forward(be, {.batch = b.batch, .ids = b.ids, .attention_mask = b.mask, .soft_prompt = soft.view(), .soft_token = soft_token},
                  logits.view());
        CHECK(worst_kept(logits.view(), c.tensor("soft.logits").view(), b) < 1e-5);
    }
}

TEST_CASE("d_soft_prompt equals PyTorch autograd's for a random upstream gradient, with and without parameter gradients") {
    CpuBackend<double> be;
    for (const std::string name : cases) {
        CAPTURE(name);
        const Case c(name, root);
        auto m = load(be, name);
        const Batch b = batch_of(c.json.at("inputs").at("soft"));
        const Tensor<double> soft = fixture_tensor<double>(c, "soft.soft_prompt");   // [2, Q, hidden]
        const Tensor<double> up = fixture_tensor<double>(c, "soft.upstream");        // [2, T, V]
        const Tensor<double> want = fixture_tensor<double>(c, "soft.d_soft_prompt"); // [2, Q, hidden]
        for (const GradMode mode : {GradMode::accumulate, GradMode::ignore}) {
            Dd::Saved s;
            Tensor<double> logits(up.shape()), d_soft(soft.shape());
            m.forward(be, {.batch = b.batch, .ids = b.ids, .attention_mask = b.mask, .soft_prompt = soft.view(),
                           .soft_token = c.json.at("soft_token").get<std::int32_t>()},
                      logits.view(), &s);
            zero_grad(m);
            d_soft.zero();
            m.backward(be, s, up.view(), d_soft.view(), mode);
            double worst = 0, scale = 0;
            for (index_t i = 0; i < want.numel(); ++i) {
                worst = std::max(worst, std::abs(d_soft.data()[i] - want.data()[i]));
                scale = std::max(scale, std::abs(want.data()[i]));
            }
            if (std::getenv("MMALIGN_PARITY_VERBOSE")) std::printf("%s d_soft_prompt: max |diff|/max|torch| %.3g\n", name.c_str(), worst / scale);
            CHECK(scale > 0);
            CHECK(worst / scale <= 1e-4);
            double grads = 0;  // parameter gradients: accumulated, or left at zero
            m.visit([&](const std::string&, Parameter<double>& p) { for (double g : p.grad) grads += std::abs(g); });
            CHECK((mode == GradMode::accumulate ? grads > 0 : grads == 0));
        }
    }
}

TEST_CASE("generate through the Session gives transformers' ids: greedy, beams, length limits, repetition penalty, soft prompts") {
    CpuBackend<float> be;
    for (const std::string name : cases) {
        const Case c(name, root);
        const auto m = load(be, name);
        const Tensor<float> soft = c.tensor("soft.soft_prompt");  // [2, Q, hidden]
        const auto soft_token = c.json.at("soft_token").get<std::int32_t>();
        for (const auto& rec : c.json.at("generate")) {
            const std::string what = std::string(name) + "/" + rec.at("name").get<std::string>();
            const Batch b = batch_of(rec);
            auto options = test::blip::options_of(rec.at("kwargs"));
            options.eos_token_id = {m.config.eos_token_id};
            options.pad_token_id = m.config.pad_token_id;
            options.max_position_embeddings = m.config.max_positions;
            const bool soft_rows = rec.at("soft").get<bool>();
            OptDecoder<CpuBackend<float>>::Session session(be, m, soft_rows ? soft.view() : ConstView<float>{},
                                                           soft_rows ? soft_token : -1);
            const auto got = generation::generate(session, b.ids, b.mask, b.batch, options);
            test::blip::check_ids(what, got, rec.at("ids"));
        }
    }
}

TEST_CASE("the backward matches finite differences for d_soft_prompt and the parameters, pre- and post-norm, with projections") {
    CpuBackend<double> be;
    // Row 0: a soft prompt at positions 1–2; row 1: left padding, then one soft token.
    const std::vector<std::int32_t> ids = {3, 21, 21, 7, 5, 4, 4, 21, 9, 12};
    const std::vector<std::int32_t> mask = {1, 1, 1, 1, 1, 0, 0, 1, 1, 1};
    for (const bool pre : {true, false})
        for (const index_t proj : {index_t(0), index_t(6)}) {
            CAPTURE(pre);
            CAPTURE(proj);
            Dd m(small(pre, proj));
            test::randomize(m, 40 + unsigned(pre) + unsigned(proj), 0.5);
            const index_t W = 8;  // soft rows as wide as hidden: wider than Dw when projected
            Tensor<double> soft = test::random_tensor({2, 2, W}, 50), d_soft(Shape{2, 2, W});  // [B, Q, W]
            const Tensor<double> r = test::random_tensor({2, 5, 23}, 51);                      // [B, T, V]
            Tensor<double> logits(Shape{2, 5, 23});
            const Dd::Input in{.batch = 2, .ids = ids, .attention_mask = mask, .soft_prompt = soft.view(), .soft_token = 21};
            Dd::Saved s;
            m.forward(be, in, logits.view(), &s);
            zero_grad(m);
            d_soft.zero();
            m.backward(be, s, r.view(), d_soft.view(), GradMode::accumulate);
            test::check_module_gradients(m, {{"soft prompt", soft.view(), d_soft.view()}}, [&] {
                m.forward(be, in, logits.view());
                return testing::dot<double>(r.view(), logits.view());
            });
        }
}

TEST_CASE("the Session's step-by-step logits equal the teacher-forced forward with generate's position numbering") {
    CpuBackend<double> be;
    Dd m(small(false, 6));
    test::randomize(m, 60);
    // No padding: generate's positions and the forward's agree, so every step's logits are the
    // forward's at that position. Two examples × expand 2 with one soft token each.
    const Tensor<double> soft = test::random_tensor({2, 1, 8}, 61);  // [C, Q, hidden]
    const std::vector<std::vector<std::int32_t>> texts = {{21, 5, 9, 2}, {21, 7, 3, 3}};
    Dd::Session session(be, m, soft.view(), 21);
    session.start(4, 2, 4);
    std::vector<float> logits(4 * 23);
    std::vector<std::int32_t> prompt;
    for (index_t r = 0; r < 4; ++r) prompt.insert(prompt.end(), texts[r / 2].begin(), texts[r / 2].begin() + 2);
    double worst = 0;
    auto compare = [&](index_t row, index_t example, index_t pos) {
        Tensor<double> want(Shape{1, 4, 23});
        // The flat order: example 1's soft token takes the 6 (= Dw) values after example 0's, not its
        // own row of the [2, 1, 8] soft prompt.
        const ConstView<double> own(soft.data() + example * 6, Shape{1, 1, 6});
        m.forward(be, {.batch = 1, .ids = texts[static_cast<std::size_t>(example)], .soft_prompt = own, .soft_token = 21},
                  want.view());
        for (index_t v = 0; v < 23; ++v)
            worst = std::max(worst, std::abs(double(logits[static_cast<std::size_t>(row * 23 + v)]) - want(0, pos, v)));
    };
    session.step(prompt, {}, logits);
    for (index_t r = 0; r < 4; ++r) compare(r, r / 2, 1);
    const std::vector<std::int32_t> order = {1, 0, 3, 3};
    session.reorder(order);
    for (index_t t = 2; t < 4; ++t) {
        std::vector<std::int32_t> next;
        for (index_t r = 0; r < 4; ++r) next.push_back(texts[static_cast<std::size_t>(order[static_cast<std::size_t>(r)] / 2)][static_cast<std::size_t>(t)]);
        session.step(next, {}, logits);
        for (index_t r = 0; r < 4; ++r) compare(r, order[static_cast<std::size_t>(r)] / 2, t);
    }
    CHECK(worst < 1e-6);
}

TEST_CASE("refusals: decoding past the position table, narrow or short soft prompts, and config problems are named") {
    CpuBackend<double> be;
    Dd m(small(true, 0));
    test::randomize(m, 70);
    // max_position_embeddings 10: a prompt of 4 and 20 new tokens passes position 9 at the 7th step.
    Dd::Session session(be, m);
    generation::GenerationConfig options;
    options.max_new_tokens = 20;
    options.eos_token_id = {};
    const std::vector<std::int32_t> prompt = {2, 5, 6, 7};
    try {
        (void)generation::generate(session, prompt, {}, 1, options);
        FAIL("decoding past the table was accepted");
    } catch (const ShapeError& e) {
        const std::string what = e.what();
        CHECK(what.find("position 10 is past max_position_embeddings 10") != std::string::npos);
        CHECK(what.find('\n') == std::string::npos);
    }
    // Left padding shifts positions: with at least two padded slots in every row, 12 cache slots
    // hold positions 0..9 (transformers' cache has no limit; only the position table has).
    Dd::Session padded(be, m);
    const std::vector<std::int32_t> two_rows = {1, 1, 2, 5, 6, 7, 1, 1, 1, 2, 5, 6};
    const std::vector<std::int32_t> keep = {0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1};
    options.max_new_tokens = 7;  // row 0's last fed token sits at position 9, cache slot 11
    CHECK_NOTHROW((void)generation::generate(padded, two_rows, keep, 2, options));
    options.max_new_tokens = 8;  // … and one more reaches position 10
    CHECK_THROWS_AS((void)generation::generate(padded, two_rows, keep, 2, options), ShapeError);

    Tensor<double> logits(Shape{1, 3, 23});
    const std::vector<std::int32_t> ids = {21, 21, 5};
    const Tensor<double> narrow = test::random_tensor({1, 2, 7}, 71);  // rows narrower than Dw 8
    CHECK_THROWS_AS(m.forward(be, {.batch = 1, .ids = ids, .soft_prompt = narrow.view(), .soft_token = 21}, logits.view()),
                    ShapeError);
    const Tensor<double> one = test::random_tensor({1, 1, 8}, 72);  // 8 values for two soft tokens
    CHECK_THROWS_AS(m.forward(be, {.batch = 1, .ids = ids, .soft_prompt = one.view(), .soft_token = 21}, logits.view()),
                    ShapeError);
    const Tensor<double> wide = test::random_tensor({1, 1, 16}, 73);  // 16 values: two soft tokens of 8 (flat order)
    CHECK_NOTHROW(m.forward(be, {.batch = 1, .ids = ids, .soft_prompt = wide.view(), .soft_token = 21}, logits.view()));

    Dd::Config bad = small(true, 0);
    bad.heads = 3;
    CHECK(bad.hf_problem().find("num_attention_heads 3") != std::string::npos);
    CHECK_THROWS_AS((void)Dd(bad), ArgumentError);
    const nlohmann::json affine = {{"layer_norm_elementwise_affine", false}};
    Dd::Config c;
    try {
        io::read_hf_fields(c, affine, "config.json");
        FAIL("layer_norm_elementwise_affine false was accepted");
    } catch (const IoError& e) {
        CHECK(std::string(e.what()).find("layer_norm_elementwise_affine") != std::string::npos);
    }
    CHECK_THROWS_AS(io::read_hf_fields(c, nlohmann::json{{"ffn_dim", 0}}, "config.json"), IoError);
    CHECK_THROWS_AS(io::read_hf_fields(c, nlohmann::json{{"activation_function", "swish"}}, "config.json"), IoError);
}

TEST_CASE("lm_head.weight is tied to embed_tokens when tie_word_embeddings, and its own weight otherwise") {
    CpuBackend<float> be;
    const auto tied = load(be, "prenorm");  // the file has no lm_head.weight
    const auto keys = io::SafetensorsFile::open(root + "prenorm/model.safetensors");
    CHECK(!keys.contains("lm_head.weight"));
    CHECK(tied.config.tie_word_embeddings);
    const auto untied = load(be, "untied_nobias");
    CHECK(untied.lm_head.value.shape() == Shape{300, 24});
    CHECK(untied.lm_head.value(5, 3) != untied.embed_tokens.params.weight.value(5, 3));
}
