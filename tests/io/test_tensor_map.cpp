// Tests of io/tensor_map.hpp: a parameter tied to two keys (load from either or both, mismatch
// rejected, save writes the tie's source as transformers does, gradients of both uses add), fused
// tensors (sliced on load, concatenated bit for bit on save, a wrong size rejected from the header
// before any tensor is read), renamed, zero and optional parameters, and maps that do not fit the
// module. The BLIP/BLIP-2 layouts themselves are tested with the vision tower
// (tests/encoders/test_vision_transformer.cpp).
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/io/tensor_map.hpp"
#include "mmalign/nn/embedding.hpp"
#include "support/module_check.hpp"
#include "support/temp_dir.hpp"

using namespace mmalign;
using Bf = CpuBackend<float>;

namespace {

/// A language model whose output head is its token embedding: one Parameter that HF names
/// `model.decoder.embed_tokens.weight` and `lm_head.weight` (OPTForCausalLM's tie).
///   x [N, D] = W[ids];  logits [N, V] = x · Wᵀ
template <Backend B>
struct TiedLm {
    using T = typename B::Scalar;
    struct Saved {
        typename Embedding<B>::Saved ids;
        Tensor<T> x;  // [N, D]
    };
    Embedding<B> embed{{.rows = 6, .dim = 4}};

    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        embed.visit(f, join_name(prefix, "model.decoder.embed_tokens"));
    }
    template <class Map>
    void hf_layout(Map& map, const std::string& prefix = "") {
        map.tie(join_name(prefix, "model.decoder.embed_tokens.weight"), join_name(prefix, "lm_head.weight"));
    }
    void forward(B& be, std::span<const std::int32_t> ids, TensorView<T> logits, Saved& s) const {
        const index_t N = static_cast<index_t>(ids.size()), V = embed.config.rows, D = embed.config.dim;
        s.x.resize(Shape{N, D});
        embed.forward(be, ids, s.x.view(), &s.ids);
        be.gemm(Trans::N, Trans::T, N, V, D, 1, s.x.data(), D, embed.params.weight.value.data(), D, 0, logits.data(), V);
    }
    void backward(B& be, Saved& s, ConstView<T> d_logits) {
        const index_t N = s.x.dim(0), V = embed.config.rows, D = embed.config.dim;
        T* g = embed.params.weight.grad_target(true);
        be.gemm(Trans::T, Trans::N, V, D, N, 1, d_logits.data(), V, s.x.data(), D, 1, g, D);  // the head's use
        Tensor<T> d_x(Shape{N, D});
        be.gemm(Trans::N, Trans::N, N, D, V, 1, d_logits.data(), V, embed.params.weight.value.data(), D, 0, d_x.data(), D);
        embed.backward(be, s.ids, d_x.view(), GradMode::accumulate);  // the lookup's use, into the same gradient
    }
};

/// Three projections that a checkpoint stores as one `attn.qkv` tensor, plus LAVIS-style biases.
template <Backend B>
struct Qkv {
    using Param = BasicParameter<typename B::Tensor>;
    Param q{Shape{2, 3}}, k{Shape{2, 3}}, v{Shape{2, 3}};
    Param q_bias{Shape{2}}, k_bias{Shape{2}}, v_bias{Shape{2}};
    template <class F>
    void visit(F&& f, const std::string& = "") {
        f("attn.q.weight", q), f("attn.k.weight", k), f("attn.v.weight", v);
        f("attn.q.bias", q_bias), f("attn.k.bias", k_bias), f("attn.v.bias", v_bias);
    }
    template <class Map>
    void hf_layout(Map& map, const std::string& = "") {
        map.fuse("attn.qkv.weight", {"attn.q.weight", "attn.k.weight", "attn.v.weight"});
        map.rename("attn.q_bias", "attn.q.bias");
        map.zero("attn.k.bias");
        map.rename("attn.v_bias", "attn.v.bias");
    }
};

Tensor<float> counting(Shape s, float start) {
    Tensor<float> t(s);
    for (index_t i = 0; i < t.numel(); ++i) t.data()[i] = start + float(i);
    return t;
}

std::string error_of(auto&& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

/// A TensorSource that reports one key with another shape and counts tensor reads.
struct Spoofed {
    const io::SafetensorsFile& file;
    std::string key;
    io::TensorInfo fake;
    mutable int reads = 0;
    const std::string& path() const { return file.path(); }
    std::vector<std::string> names() const { return file.names(); }
    bool contains(const std::string& n) const { return file.contains(n); }
    const io::TensorInfo& info(const std::string& n) const { return n == key ? fake : file.info(n); }
    template <class T>
    void read_into(const std::string& n, TensorView<T> v) const {
        ++reads;
        file.read_into(n, v);
    }
};
static_assert(io::TensorSource<Spoofed>);

}  // namespace

TEST_CASE("a tied parameter loads from either of its keys or from both when they are equal") {
    test::TempDir tmp;
    const Tensor<float> w = counting({6, 4}, 1.f);  // [V, D]
    Bf be;
    TiedLm<Bf> m;
    const auto map = io::hf_tensor_map(m);
    for (const auto& keys : std::vector<std::vector<std::string>>{
             {"model.decoder.embed_tokens.weight"}, {"lm_head.weight"}, {"model.decoder.embed_tokens.weight", "lm_head.weight"}}) {
        CAPTURE(keys.size());
        std::vector<io::TensorToSave> out;
        for (const auto& k : keys) out.emplace_back(k, w.cview());
        io::save_safetensors(tmp / "tied.safetensors", out);
        m.embed.params.weight.value.zero();
        io::load_mapped(be, m, io::SafetensorsFile::open(tmp / "tied.safetensors"), map);
        CHECK(std::memcmp(m.embed.params.weight.value.data(), w.data(), sizeof(float) * 24) == 0);
    }
}

TEST_CASE("a tied parameter stored twice with different values is rejected, naming both keys, and the module is left untouched") {
    test::TempDir tmp;
    const Tensor<float> a = counting({6, 4}, 1.f);
    Tensor<float> b = a;
    b(3, 2) += 0.5f;  // [V, D]
    io::save_safetensors(tmp / "t.safetensors", {{"model.decoder.embed_tokens.weight", a.cview()}, {"lm_head.weight", b.cview()}});
    Bf be;
    TiedLm<Bf> m;
    m.embed.params.weight.value.fill(-2.f);
    const std::string msg = error_of([&] { io::load_mapped(be, m, io::SafetensorsFile::open(tmp / "t.safetensors"), io::hf_tensor_map(m)); });
    CHECK(msg.find("'model.decoder.embed_tokens.weight' and 'lm_head.weight' are one tied parameter but differ") != std::string::npos);
    CHECK(msg.find("flat index 14") != std::string::npos);
    for (float v : m.embed.params.weight.value) CHECK(v == -2.f);
}

TEST_CASE("a tied parameter absent under both keys is missing, unless the map marks it optional") {
    test::TempDir tmp;
    const Tensor<float> other = counting({2}, 0.f);
    io::save_safetensors(tmp / "none.safetensors", {{"unrelated", other.cview()}});
    auto file = io::SafetensorsFile::open(tmp / "none.safetensors");
    Bf be;
    TiedLm<Bf> m;
    io::TensorMap map = io::hf_tensor_map(m);
    const std::string msg = error_of([&] { io::load_mapped(be, m, file, map, "", {.allow_unexpected = true}); });
    CHECK(msg.find("1 missing: model.decoder.embed_tokens.weight or its tied alias lm_head.weight (expected [6, 4])") !=
          std::string::npos);
    m.embed.params.weight.value.fill(3.f);
    map.optional("model.decoder.embed_tokens.weight");
    io::load_mapped(be, m, file, map, "", {.allow_unexpected = true});
    for (float v : m.embed.params.weight.value) CHECK(v == 3.f);
}

TEST_CASE("saving a tied parameter writes only the tie's source, as transformers' save_pretrained does, and loading that file restores it exactly") {
    test::TempDir tmp;
    Bf be;
    TiedLm<Bf> m;
    const Tensor<float> w = counting({6, 4}, 0.25f);
    m.embed.params.weight.value = w;
    const auto map = io::hf_tensor_map(m);
    io::save_mapped(be, m, tmp / "saved.safetensors", map);
    auto file = io::SafetensorsFile::open(tmp / "saved.safetensors");
    CHECK(file.names() == std::vector<std::string>{"model.decoder.embed_tokens.weight"});
    TiedLm<Bf> back;
    io::load_mapped(be, back, file, map);
    CHECK(std::memcmp(back.embed.params.weight.value.data(), w.data(), sizeof(float) * 24) == 0);
    CHECK(io::mapped_shapes(m, map) == std::map<std::string, Shape>{{"model.decoder.embed_tokens.weight", Shape{6, 4}}});
}

TEST_CASE("the gradient of a tied weight is the sum of its uses as embedding and as output head (finite differences)") {
    using Be = test::Be;
    Be be;
    TiedLm<Be> m;
    test::randomize(m, 3);
    const std::vector<std::int32_t> ids = {1, 4, 4, 0, 5};
    Tensor<double> r = test::random_tensor({5, 6}, 4), logits(Shape{5, 6});
    TiedLm<Be>::Saved s;
    m.forward(be, ids, logits.view(), s);
    zero_grad(m);
    m.backward(be, s, r.view());
    test::check_module_gradients(m, {}, [&] {
        TiedLm<Be>::Saved t;
        m.forward(be, ids, logits.view(), t);
        return testing::dot<double>(r.view(), logits.view());
    });
}

TEST_CASE("fused, renamed and zero parameters: loaded from the file's form, saved back to it bit for bit") {
    test::TempDir tmp;
    const Tensor<float> qkv = counting({6, 3}, 0.5f), qb = counting({2}, 10.f), vb = counting({2}, 20.f);
    io::save_safetensors(tmp / "in.safetensors",
                         {{"attn.qkv.weight", qkv.cview()}, {"attn.q_bias", qb.cview()}, {"attn.v_bias", vb.cview()}});
    Bf be;
    Qkv<Bf> m;
    m.k_bias.value.fill(9.f);
    const auto map = io::hf_tensor_map(m);
    auto in = io::SafetensorsFile::open(tmp / "in.safetensors");
    io::load_mapped(be, m, in, map);
    CHECK(m.q.value(0, 0) == 0.5f);
    CHECK(m.k.value(0, 0) == 6.5f);  // rows 2..3 of the fused tensor
    CHECK(m.v.value(1, 2) == 17.5f);
    CHECK(m.q_bias.value(1) == 11.f);
    CHECK(m.v_bias.value(0) == 20.f);
    CHECK(m.k_bias.value(0) == 0.f);
    CHECK(m.k_bias.value(1) == 0.f);
    io::save_mapped(be, m, tmp / "out.safetensors", map);
    auto out = io::SafetensorsFile::open(tmp / "out.safetensors");
    REQUIRE(out.names() == in.names());
    for (const auto& key : in.names()) {
        CAPTURE(key);
        CHECK(out.shape(key) == in.shape(key));
        const auto a = out.bytes(key), b = in.bytes(key);
        REQUIRE(a.size() == b.size());
        CHECK(std::memcmp(a.data(), b.data(), a.size()) == 0);
    }
    m.k_bias.value(1) = 1e-30f;
    const std::string msg = error_of([&] { io::save_mapped(be, m, tmp / "bad.safetensors", map); });
    CHECK(msg.find("cannot save 'attn.k.bias'") != std::string::npos);
}

TEST_CASE("a fused tensor whose first dimension is not the sum of its parts' is rejected in one line naming the key and both shapes, before any tensor is read") {
    test::TempDir tmp;
    const Tensor<float> qkv = counting({5, 3}, 0.f), qb = counting({2}, 0.f), vb = counting({2}, 0.f);
    io::save_safetensors(tmp / "short.safetensors",
                         {{"attn.qkv.weight", qkv.cview()}, {"attn.q_bias", qb.cview()}, {"attn.v_bias", vb.cview()}});
    auto file = io::SafetensorsFile::open(tmp / "short.safetensors");
    Bf be;
    Qkv<Bf> m;
    m.q.value.fill(4.f);
    const auto map = io::hf_tensor_map(m);
    const std::string msg = error_of([&] { io::load_mapped(be, m, file, map); });
    CHECK(msg == "safetensors '" + file.path() +
                     "': cannot load parameters with prefix ''; 1 with the wrong shape: attn.qkv.weight: expected shape "
                     "[6, 3] (3 parameters of [2, 3] stacked on the first axis), found [5, 3]");
    CHECK(msg.find('\n') == std::string::npos);
    for (float v : m.q.value) CHECK(v == 4.f);

    // A header claiming a huge fused tensor: refused from the header alone, nothing read or sized.
    io::TensorInfo huge = file.info("attn.qkv.weight");
    huge.shape = Shape{3'000'000'000, 3};
    Spoofed src{file, "attn.qkv.weight", huge};
    const std::string big = error_of([&] { io::load_mapped(be, m, src, map); });
    CHECK(big.find("attn.qkv.weight: expected shape [6, 3] (3 parameters of [2, 3] stacked on the first axis), found "
                   "[3000000000, 3]") != std::string::npos);
    CHECK(src.reads == 0);
}

TEST_CASE("a file in the module's own names is not the fused layout: the fused key is missing and the parts are unexpected") {
    test::TempDir tmp;
    const Tensor<float> w = counting({2, 3}, 0.f), b = counting({2}, 0.f);
    io::save_safetensors(tmp / "own.safetensors", {{"attn.q.weight", w.cview()}, {"attn.k.weight", w.cview()},
                                                   {"attn.v.weight", w.cview()}, {"attn.q_bias", b.cview()},
                                                   {"attn.v_bias", b.cview()}});
    Bf be;
    Qkv<Bf> m;
    const std::string msg = error_of([&] { io::load_mapped(be, m, io::SafetensorsFile::open(tmp / "own.safetensors"), io::hf_tensor_map(m)); });
    CHECK(msg.find("1 missing: attn.qkv.weight (expected [6, 3] (3 parameters of [2, 3] stacked on the first axis))") !=
          std::string::npos);
    CHECK(msg.find("3 unexpected: attn.k.weight (found [2, 3] F32), attn.q.weight (found [2, 3] F32), attn.v.weight") !=
          std::string::npos);
}

TEST_CASE("keys are prefixed as in load_parameters, and a map that does not fit the module is an ArgumentError") {
    test::TempDir tmp;
    const Tensor<float> qkv = counting({6, 3}, 0.f), qb = counting({2}, 1.f), vb = counting({2}, 2.f);
    io::save_safetensors(tmp / "p.safetensors", {{"vision_model.attn.qkv.weight", qkv.cview()},
                                                 {"vision_model.attn.q_bias", qb.cview()},
                                                 {"vision_model.attn.v_bias", vb.cview()}});
    Bf be;
    Qkv<Bf> m;
    io::load_mapped(be, m, io::SafetensorsFile::open(tmp / "p.safetensors"), io::hf_tensor_map(m), "vision_model.");
    CHECK(m.v.value(1, 2) == 17.f);
    CHECK(io::mapped_shapes(m, io::hf_tensor_map(m), "vision_model.").count("vision_model.attn.qkv.weight") == 1);

    io::TensorMap wrong;
    wrong.fuse("attn.kv.weight", {"attn.k.weight", "attn.w.weight"});
    CHECK_THROWS_AS(io::load_mapped(be, m, io::SafetensorsFile::open(tmp / "p.safetensors"), wrong, "vision_model."),
                    ArgumentError);
    io::TensorMap twice;
    twice.zero("attn.k.bias");
    CHECK_THROWS_AS(twice.rename("attn.k_bias", "attn.k.bias"), ArgumentError);
    CHECK_THROWS_AS(twice.tie("attn.q.weight", "attn.k_bias").tie("attn.v.weight", "attn.k_bias"), ArgumentError);
    // A rule whose file key is another parameter's own name would read one tensor into both.
    io::TensorMap clash;
    clash.fuse("attn.qkv.weight", {"attn.q.weight", "attn.k.weight", "attn.v.weight"});
    clash.zero("attn.k.bias");
    clash.rename("attn.v.bias", "attn.q.bias");  // attn.v.bias is also v_bias's own key
    const std::string why =
        error_of([&] { io::load_mapped(be, m, io::SafetensorsFile::open(tmp / "p.safetensors"), clash, "vision_model."); });
    CHECK(why == "TensorMap: file key 'attn.v.bias' would be read for both parameter 'attn.q.bias' and parameter 'attn.v.bias'");
}
