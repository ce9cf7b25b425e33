// Tests of decoders/bert_lm_decoder.hpp: the decoding session (context expanded to beam rows,
// prompt then one token per step, rows reordered) gives the logits of the teacher-forced forward
// over the same text; the tied keys load from a file that carries either copy; the backward
// matches finite differences. (Parity with transformers' BlipTextLMHeadModel: tests/models/test_blip.cpp.)
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <vector>

#include "mmalign/decoders/bert_lm_decoder.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/io/tensor_map.hpp"
#include "support/module_check.hpp"

using namespace mmalign;
using test::Be;
using Dec = BertLmDecoder<Be>;

namespace {

Dec::Config small() {
    Dec::Config c;
    auto& b = c.bert;
    b.vocab_size = 17, b.max_positions = 8, b.hidden = 8, b.layers = 2, b.heads = 2, b.mlp_hidden = 12;
    b.cross_attention = true, b.cross_dim = 6;
    return c;
}

}  // namespace

TEST_CASE("a session expands each context row, decodes step by step, follows reordered rows, and equals the full forward") {
    Be be;
    Dec dec(small());
    test::randomize(dec, 5, 0.6);
    const index_t C = 2, E = 2, R = C * E, Te = 3, V = 17, Tn = 4;
    const Tensor<double> context = test::random_tensor({C, Te, 6}, 6);
    // Row r's text; rows 0/1 share context 0, rows 2/3 context 1.
    const std::vector<std::vector<std::int32_t>> texts = {{1, 5, 9, 2}, {1, 7, 3, 3}, {1, 4, 4, 16}, {1, 11, 2, 8}};
    auto full_logits = [&](const std::vector<std::int32_t>& text, index_t ctx) {  // [Tn, V] of one row
        Tensor<double> l(Shape{1, Tn, V});
        const ConstView<double> c(context.data() + ctx * Te * 6, Shape{1, Te, 6});
        dec.forward(be, {.ids = text, .batch = 1, .encoder_states = c}, l.view());
        return l;
    };
    Dec::Session session(be, dec, context.view());
    session.start(R, E, Tn);
    std::vector<float> logits(static_cast<std::size_t>(R * V));
    // Prompt: the first two tokens of every row.
    std::vector<std::int32_t> prompt;
    for (const auto& t : texts) prompt.insert(prompt.end(), t.begin(), t.begin() + 2);
    session.step(prompt, {}, logits);
    double worst = 0;
    auto compare = [&](index_t row, const std::vector<std::int32_t>& text, index_t ctx, index_t pos) {
        const Tensor<double> want = full_logits(text, ctx);
        for (index_t v = 0; v < V; ++v)
            worst = std::max(worst, std::abs(double(logits[static_cast<std::size_t>(row * V + v)]) - want(0, pos, v)));
    };
    for (index_t r = 0; r < R; ++r) compare(r, texts[static_cast<std::size_t>(r)], r / E, 1);
    // Beam-style reorder: rows become old rows {1, 1, 3, 2}; each keeps its context row.
    const std::vector<std::int32_t> order = {1, 1, 3, 2};
    session.reorder(order);
    std::vector<std::vector<std::int32_t>> now;
    for (auto o : order) now.push_back(texts[static_cast<std::size_t>(o)]);
    for (index_t t = 2; t < Tn; ++t) {
        std::vector<std::int32_t> next;
        for (const auto& text : now) next.push_back(text[static_cast<std::size_t>(t)]);
        session.step(next, {}, logits);
        for (index_t r = 0; r < R; ++r) compare(r, now[static_cast<std::size_t>(r)], order[static_cast<std::size_t>(r)] / E, t);
    }
    CHECK(worst < 1e-6);  // logits come back as float
    CHECK_THROWS_AS(session.start(3, E, Tn), ArgumentError);  // 3 rows are not 2 contexts × 2
}

TEST_CASE("the output weight is the word-embedding table: a file with either tied copy loads, unequal copies are refused") {
    Be be;
    Dec dec(small());
    test::randomize(dec, 9);
    const auto dir = std::filesystem::temp_directory_path() / "mmalign_test_bert_lm_decoder";
    std::filesystem::create_directories(dir);
    const std::string path = (dir / "model.safetensors").string();
    io::save_mapped(be, dec, path, io::hf_tensor_map(dec));  // HF's form: the tie's source only
    const auto keys = io::SafetensorsFile::open(path);
    CHECK(keys.contains("bert.embeddings.word_embeddings.weight"));
    CHECK(!keys.contains("cls.predictions.decoder.weight"));
    Dec again(small());
    io::load_mapped(be, again, io::SafetensorsFile::open(path), io::hf_tensor_map(again));
    CHECK(again.bert.word_embeddings.params.weight.value(3, 2) == dec.bert.word_embeddings.params.weight.value(3, 2));
    // A file with both copies, equal: loads; with the decoder copy altered: one IoError naming both keys.
    const Tensor<double>& table = dec.bert.word_embeddings.params.weight.value;
    std::vector<io::TensorToSave> both;
    dec.visit([&](const std::string& name, Parameter<double>& p) { both.emplace_back(name, p.value.view()); });
    both.emplace_back("cls.predictions.decoder.weight", table.view());
    both.emplace_back("cls.predictions.decoder.bias", dec.head.bias.value.view());
    io::save_safetensors(path, both);
    CHECK_NOTHROW(io::load_mapped(be, again, io::SafetensorsFile::open(path), io::hf_tensor_map(again)));
    Tensor<double> altered = table;
    altered(0, 0) += 1;
    both[both.size() - 2] = io::TensorToSave("cls.predictions.decoder.weight", altered.view());
    io::save_safetensors(path, both);
    CHECK_THROWS_AS(io::load_mapped(be, again, io::SafetensorsFile::open(path), io::hf_tensor_map(again)), IoError);
    std::filesystem::remove_all(dir);
}

TEST_CASE("the decoder's backward matches finite differences, the tied table receiving both of its gradients") {
    Be be;
    Dec dec(small());
    test::randomize(dec, 13, 0.4);
    const std::vector<std::int32_t> ids = {1, 5, 9, 0, 1, 7, 3, 3};
    const std::vector<std::int32_t> mask = {1, 1, 1, 0, 1, 1, 1, 1};
    Tensor<double> enc = test::random_tensor({2, 3, 6}, 14), d_enc(Shape{2, 3, 6});
    Tensor<double> r = test::random_tensor({2, 4, 17}, 15), logits(Shape{2, 4, 17});
    const Dec::Bert::Input in{.ids = ids, .attention_mask = mask, .batch = 2, .encoder_states = enc.view()};
    Dec::Saved s;
    dec.forward(be, in, logits.view(), &s);
    zero_grad(dec);
    d_enc.zero();
    dec.backward(be, s, r.view(), d_enc.view(), GradMode::accumulate);
    test::check_module_gradients(dec, {{"encoder states", enc.view(), d_enc.view()}}, [&] {
        dec.forward(be, in, logits.view());
        return testing::dot<double>(r.view(), logits.view());
    });
}
