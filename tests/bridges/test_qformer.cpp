// The BLIP-2 Q-Former (bridges/qformer.hpp) against transformers' Blip2QFormerModel: outputs and
// autograd gradients of every pass in tests/fixtures/qformer (tools/make_qformer_fixtures.py),
// finite differences in double under each mask, the masks' definitions, and the refusals.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/bridges/qformer.hpp"
#include "mmalign/testing/gradcheck.hpp"
#include "support/qformer_fixtures.hpp"

using namespace mmalign;

using test::qformer::Case;
using test::qformer::Everything;
using test::qformer::read;
using test::qformer::relative_diff;
using test::qformer::cases;
using Cpu = CpuBackend<float>;

TEST_CASE("QFormer output equals transformers' Blip2QFormerModel on every fixture pass (query only, ITM, text only, multimodal-causal) within 1e-5") {
    Cpu be;
    int passes = 0;
    for (const auto& name : cases) {
        const Case c(name);
        const QFormer<Cpu> model = c.model<Cpu>();
        for (const auto& pass : c.json.at("passes")) {
            const std::string p = pass.at("name");
            const Tensor<float> want = read<float>(c.expected, p + ".output");
            Tensor<float> got(want.shape());
            model.forward(be, c.input<Cpu>(pass, c.image.view()), got.view());
            const double d = relative_diff(got.view(), want.view());
            CHECK_MESSAGE(d < 1e-5, name, " ", p, ": ", d);
            ++passes;
        }
    }
    CHECK(passes == 9);
}

TEST_CASE("QFormer gradients equal PyTorch autograd's through Blip2QFormerModel (d_image and every parameter) within 1e-4 relative") {
    Cpu be;
    for (const auto& name : cases) {
        const Case c(name);
        QFormer<Cpu> model = c.model<Cpu>();
        const Tensor<float>& image = c.image;
        Everything<Cpu> all{model};
        for (const auto& pass : c.json.at("passes")) {
            const std::string p = pass.at("name");
            const Tensor<float> d_out = read<float>(c.expected, p + ".d_output");
            all.visit([](const std::string&, Parameter<float>& prm) { prm.grad = Tensor<float>(); });
            QFormer<Cpu>::Saved s;
            Tensor<float> out(d_out.shape()), d_image(image.shape());
            d_image.zero();
            model.forward(be, c.input<Cpu>(pass, image.view()), out.view(), &s);
            const bool with_image = pass.at("image").get<bool>();
            model.backward(be, s, d_out.view(), with_image ? d_image.view() : TensorView<float>{}, GradMode::accumulate);
            if (with_image) {
                const double d = relative_diff(d_image.view(), read<float>(c.expected, p + ".grad.image").view());
                CHECK_MESSAGE(d < 1e-4, name, " ", p, " d_image: ", d);
            }
            int compared = 0;
            all.visit([&](const std::string& key, Parameter<float>& prm) {
                const std::string k = p + ".grad." + key;
                if (!c.expected.contains(k)) {  // autograd never reached it: ours must be absent or zero
                    bool zero = true;
                    for (const float v : prm.grad) zero = zero && v == 0.0f;
                    CHECK_MESSAGE(zero, name, " ", p, ": ", key, " has a gradient autograd does not");
                    return;
                }
                REQUIRE_MESSAGE(prm.has_grad(), name, " ", p, ": no gradient for ", key);
                const Tensor<float> want = read<float>(c.expected, k);
                if (key.ends_with("key.bias")) {
                    // Its true gradient is 0 (softmax ignores a shift common to a row's scores):
                    // both sides hold rounding noise, compared absolutely.
                    for (index_t i = 0; i < want.numel(); ++i) {
                        CHECK(std::abs(want.data()[i]) < 1e-5f);
                        CHECK(std::abs(prm.grad.data()[i]) < 1e-5f);
                    }
                } else {
                    const double d = relative_diff(prm.grad.view(), want.view());
                    CHECK_MESSAGE(d < 1e-4, name, " ", p, " ", key, ": ", d);
                }
                ++compared;
            });
            CHECK(compared > 0);
        }
    }
}

TEST_CASE("QFormer under the multimodal-causal mask gives the query rows of the query-only pass (they see no text)") {
    Cpu be;
    const Case c("f2_q4_text");
    const QFormer<Cpu> model = c.model<Cpu>();
    const Tensor<float>& image = c.image;
    const index_t Bn = c.batch(), Q = model.config.num_queries, D = model.config.hidden;
    const index_t Tn = static_cast<index_t>(c.ids.size()) / Bn;
    Tensor<float> alone({Bn, Q, D}), joint({Bn, Q + Tn, D}), bidir({Bn, Q + Tn, D});
    model.forward(be, {.batch = Bn, .image = image.view()}, alone.view());
    model.forward(be, {.batch = Bn, .ids = c.ids, .attention_mask = c.mask, .image = image.view(),
                         .attention = QFormerAttention::multimodal_causal}, joint.view());
    model.forward(be, {.batch = Bn, .ids = c.ids, .attention_mask = c.mask, .image = image.view()}, bidir.view());
    double same = 0, differs = 0;
    for (index_t b = 0; b < Bn; ++b)
        for (index_t i = 0; i < Q * D; ++i) {
            const float a = alone.data()[b * Q * D + i];
            same = std::max(same, double(std::abs(a - joint.data()[b * (Q + Tn) * D + i])));
            differs = std::max(differs, double(std::abs(a - bidir.data()[b * (Q + Tn) * D + i])));
        }
    CHECK(same < 1e-5);
    CHECK(differs > 1e-3);  // bidirectionally, the queries do read the text
}

TEST_CASE("QFormer masks: bidirectional shows every kept column, multimodal-causal hides text from queries and later text") {
    const std::vector<std::int32_t> keep = {1, 1, 1, 1, 1, 0};  // [2, 3]: row 1 ends in padding
    const auto bi = qformer_bidirectional_mask<float>(2, 2, 3, keep);
    const auto mc = qformer_multimodal_causal_mask<float>(2, 2, 3, keep);
    CHECK(bi.pattern.empty());
    REQUIRE(bi.key_keep.size() == 10);
    for (index_t b = 0; b < 2; ++b)
        for (index_t i = 0; i < 5; ++i)
            for (index_t j = 0; j < 5; ++j) {
                const bool kept = j < 2 || keep[static_cast<std::size_t>(b * 3 + j - 2)] == 1;
                CHECK(bi.sees(b, i, j) == kept);
                const bool causal = i < 2 ? j < 2 : j <= i;
                CHECK(mc.sees(b, i, j) == (kept && causal));
            }
    // Nothing padded: no key_keep at all (every column visible); the unimodal passes are Q = 0 or T = 0.
    CHECK(qformer_bidirectional_mask<float>(2, 2, 3, std::vector<std::int32_t>(6, 1)).key_keep.empty());
    const auto text_only = qformer_multimodal_causal_mask<float>(1, 0, 3);
    CHECK(text_only.sees(0, 2, 0));
    CHECK_FALSE(text_only.sees(0, 0, 2));
    CHECK_THROWS_AS(qformer_bidirectional_mask<float>(2, 2, 3, std::vector<std::int32_t>(5, 1)), ShapeError);
}

namespace {

using Be = CpuBackend<double>;

/// A tiny double Q-Former with every parameter random (LayerNorm scales around 1). No padding_idx:
/// the finite differences see every word row (the fixture tests check that row 0 learns nothing
/// with HF's pad_token_id 0).
QFormer<Be> tiny(index_t frequency) {
    QFormer<Be> q({.hidden = 8, .layers = 3, .heads = 2, .intermediate = 12, .encoder_width = 6,
                   .cross_attention_frequency = frequency, .num_queries = 3, .text = true, .vocab_size = 20,
                   .max_positions = 8, .pad_token_id = -1});
    unsigned seed = 100;
    Everything<Be>{q}.visit([&](const std::string& name, Parameter<double>& p) {
        testing::fill_uniform(p.value.view(), seed++, -0.6, 0.6);
        if (name.find("LayerNorm.weight") != std::string::npos || name.find("layernorm.weight") != std::string::npos)
            for (auto& v : p.value) v += 1.0;
    });
    return q;
}

}  // namespace

TEST_CASE("QFormer backward matches finite differences in double under each mask (d_image, query tokens, text embeddings, layer parameters)") {
    Be be;
    const index_t Bn = 2, Te = 4, Tn = 4;
    const std::vector<std::int32_t> ids = {3, 7, 1, 19, 4, 0, 12, 2}, keep = {1, 1, 1, 1, 1, 1, 0, 0};  // [2, 4]
    struct Pass {
        const char* name;
        bool queries, text;
        QFormerAttention attention;
    };
    const Pass passes[] = {{"queries alone (unimodal)", true, false, QFormerAttention::bidirectional},
                           {"text alone (unimodal)", false, true, QFormerAttention::bidirectional},
                           {"bidirectional", true, true, QFormerAttention::bidirectional},
                           {"multimodal causal", true, true, QFormerAttention::multimodal_causal}};
    for (const index_t frequency : {1, 2})
        for (const Pass& p : passes) {
            CAPTURE(frequency);
            const std::string pass = p.name;
            CAPTURE(pass);
            QFormer<Be> q = tiny(frequency);
            Tensor<double> image({Bn, Te, 6}), d_image({Bn, Te, 6});
            testing::fill_uniform(image.view(), 7, -1, 1);
            const index_t N = (p.queries ? 3 : 0) + (p.text ? Tn : 0);
            Tensor<double> r({Bn, N, 8}), out({Bn, N, 8});
            testing::fill_uniform(r.view(), 9, -1, 1);
            const QFormer<Be>::Input in{.batch = Bn, .queries = p.queries,
                                        .ids = p.text ? std::span<const std::int32_t>(ids) : std::span<const std::int32_t>(),
                                        .attention_mask = p.text ? std::span<const std::int32_t>(keep) : std::span<const std::int32_t>(),
                                        .image = p.queries ? image.view() : ConstView<double>{},
                                        .attention = p.attention};
            QFormer<Be>::Saved s;
            q.forward(be, in, out.view(), &s);
            d_image.zero();
            q.backward(be, s, r.view(), p.queries ? d_image.view() : TensorView<double>{}, GradMode::accumulate);
            auto loss = [&] {
                q.forward(be, in, out.view());
                return testing::dot<double>(r.view(), out.view());
            };
            if (p.queries) {
                const auto rep = testing::check_gradient("d_image", image.view(), d_image.view(), loss);
                CHECK_MESSAGE(rep.max_rel_error < 1e-6, rep.str());
            }
            int checked = 0;
            Everything<Be>{q}.visit([&](const std::string& name, Parameter<double>& prm) {
                // Every parameter of the first two layers and the embeddings; the third layer sampled.
                const bool sampled = name.find("layer.2.") == std::string::npos || name.find("dense.weight") != std::string::npos;
                if (!sampled) return;
                if (!prm.has_grad()) {  // not on this pass's path (query parts in a text pass, ...): zero effect
                    Tensor<double> zero(prm.value.shape());
                    zero.zero();
                    const auto rep = testing::check_gradient(name, prm.value.view(), zero.view(), loss, 6);
                    CHECK_MESSAGE(rep.max_abs_error < 1e-9, rep.str());
                    return;
                }
                const auto rep = testing::check_gradient(name, prm.value.view(), prm.grad.view(), loss, 12);
                CHECK_MESSAGE(rep.max_rel_error < 1e-6, rep.str());
                ++checked;
            });
            CHECK(checked > 10);
        }
}

TEST_CASE("QFormer with GradMode::ignore leaves parameter gradients alone while d_image still flows") {
    Be be;
    QFormer<Be> q = tiny(2);
    Tensor<double> image({1, 4, 6}), d_image({1, 4, 6}), out({1, 3, 8}), r({1, 3, 8});
    testing::fill_uniform(image.view(), 3);
    testing::fill_uniform(r.view(), 4);
    QFormer<Be>::Saved s;
    q.forward(be, {.batch = 1, .image = image.view()}, out.view(), &s);
    d_image.zero();
    q.backward(be, s, r.view(), d_image.view(), GradMode::ignore);
    bool any_grad = false;
    Everything<Be>{q}.visit([&](const std::string&, Parameter<double>& p) { any_grad = any_grad || p.has_grad(); });
    CHECK_FALSE(any_grad);
    double norm = 0;
    for (const double v : d_image) norm += v * v;
    CHECK(norm > 0);
}

TEST_CASE("QFormer visits HF's Blip2QFormerModel keys, query_tokens and Blip2TextEmbeddings' keys") {
    QFormer<Be> q({.hidden = 8, .layers = 2, .heads = 2, .intermediate = 12, .encoder_width = 6,
                   .cross_attention_frequency = 2, .num_queries = 3, .text = true, .vocab_size = 20, .max_positions = 8});
    std::set<std::string> names;
    Everything<Be>{q}.visit([&](const std::string& n, Parameter<double>&) { names.insert(n); });
    for (const char* k : {"query_tokens", "embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                          "qformer.layernorm.weight", "qformer.encoder.layer.0.attention.attention.query.weight",
                          "qformer.encoder.layer.0.attention.output.LayerNorm.bias",
                          "qformer.encoder.layer.0.crossattention.attention.key.weight",
                          "qformer.encoder.layer.0.crossattention.output.dense.bias",
                          "qformer.encoder.layer.0.intermediate_query.dense.weight",
                          "qformer.encoder.layer.0.output_query.LayerNorm.weight",
                          "qformer.encoder.layer.1.intermediate.dense.weight", "qformer.encoder.layer.1.output.LayerNorm.bias"})
        CHECK_MESSAGE(names.count(k) == 1, k);
    CHECK(names.count("qformer.encoder.layer.1.crossattention.attention.key.weight") == 0);  // 1 % 2 != 0
    // layernorm 2 + per layer: self 8+2, text ffn 4+2, query ffn 4+2; cross 8+2 in layer 0; query_tokens; 2 embeddings
    CHECK(names.size() == 2 + 2 * 22 + 10 + 1 + 2);
    QFormer<Be> no_text({.hidden = 8, .layers = 1, .heads = 2, .intermediate = 12, .encoder_width = 6, .num_queries = 3});
    CHECK_THROWS_AS(no_text.visit_text_embeddings([](const std::string&, Parameter<double>&) {}), ArgumentError);
}

TEST_CASE("QFormer refuses bad inputs and configs with one-line messages") {
    Be be;
    QFormer<Be> q = tiny(2);
    QFormer<Be> no_text({.hidden = 8, .layers = 1, .heads = 2, .intermediate = 12, .encoder_width = 6, .num_queries = 3});
    Tensor<double> image({2, 4, 6}), wide({2, 4, 7}), out({2, 7, 8}), queries_out({2, 3, 8});
    const std::vector<std::int32_t> ids = {3, 7, 1, 19, 4, 0, 12, 2}, bad_ids = {3, 7, 1, 20, 4, 0, 12, 2};
    const std::vector<std::int32_t> short_mask = {1, 1, 1};
    auto message = [](auto&& f) -> std::string {
        try {
            f();
        } catch (const Error& e) {
            return e.what();
        }
        return "(nothing thrown)";
    };
    const std::vector<std::string> messages = {
        message([&] { q.forward(be, {.batch = 2, .ids = ids, .image = image.view()}, queries_out.view()); }),  // wrong out
        message([&] { q.forward(be, {.batch = 2, .ids = ids, .image = wide.view()}, out.view()); }),
        message([&] { q.forward(be, {.batch = 2, .ids = bad_ids, .image = image.view()}, out.view()); }),
        message([&] { q.forward(be, {.batch = 2, .ids = ids, .attention_mask = short_mask, .image = image.view()}, out.view()); }),
        message([&] { q.forward(be, {.batch = 3, .ids = ids, .image = image.view()}, out.view()); }),
        message([&] { no_text.forward(be, {.batch = 2, .ids = ids, .image = image.view()}, out.view()); }),
        message([&] { q.forward(be, {.batch = 2, .ids = ids}, out.view()); }),                                  // no image
        message([&] { q.forward(be, {.batch = 2, .queries = false, .ids = ids, .image = image.view()}, out.view()); }),
        message([&] { q.forward(be, {.batch = 2, .queries = false}, out.view()); }),
        message([] { QFormer<Be>({.hidden = 10, .heads = 3}); }),
    };
    for (const auto& m : messages) {
        CHECK_MESSAGE(m != "(nothing thrown)", m);
        CHECK_MESSAGE(m.find('\n') == std::string::npos, m);
    }
    CHECK(messages[2].find("id 20") != std::string::npos);
    CHECK(messages[5].find("without a text path") != std::string::npos);
    CHECK(messages[9].find("num_attention_heads") != std::string::npos);
    QFormer<Be>::Saved empty;
    CHECK_THROWS_AS(q.backward(be, empty, out.view(), {}, GradMode::accumulate), ArgumentError);
}
