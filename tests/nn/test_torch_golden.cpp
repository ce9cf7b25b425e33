// tests/nn/test_torch_golden.cpp — TransformerBlock against Hugging Face transformers.
//
// tests/fixtures/blocks.safetensors (made by tools/make_block_fixtures.py, float64 autograd stored
// as float32) holds a CLIPEncoderLayer ("pre.*", pre-LN, causal + padding mask) and a BertLayer
// with cross-attention ("post.*", post-LN, padding masks), their inputs, outputs y and, for the loss
// Σ r ⊙ y, the gradients of the inputs and of every parameter. We load the parameters by their HF
// names, run forward and backward in float, and require y within 1e-5 and gradients within 1e-4
// (absolute, or relative to max |reference| where that exceeds 1). The reader's own failure modes
// (missing keys, wrong shapes, corrupt files) are tested here too, since this test is its first user.
// Set MMALIGN_GOLDEN_VERBOSE=1 to print the measured error of every compared tensor.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "support/errors.hpp"
#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/nn/transformer_block.hpp"

using namespace mmalign;
using mmalign::test::io_error_of;

namespace {

using Be = CpuBackend<float>;

const std::string fixture_path = std::string(MMALIGN_FIXTURE_DIR) + "/blocks.safetensors";

const io::SafetensorsFile& fixture() {
    static const io::SafetensorsFile f = io::SafetensorsFile::open(fixture_path);
    return f;
}

bool verbose() { return std::getenv("MMALIGN_GOLDEN_VERBOSE") != nullptr; }

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

/// Compares like llm.c's check_tensor: the bound is tol · max(1, max |want|), so large gradients
/// are held to a relative and small ones to an absolute tolerance; on failure it prints the worst
/// element and the first few of each tensor.
void check_close(const std::string& what, ConstView<float> got, ConstView<float> want, double tol) {
    INFO(what);
    REQUIRE_MESSAGE(got.shape() == want.shape(), what, ": shape ", got.shape().str(), " vs reference ", want.shape().str());
    double err = 0, ref_max = 0;
    index_t worst = 0;
    for (index_t i = 0; i < want.numel(); ++i) {
        const double e = std::abs(double(got.data()[i]) - double(want.data()[i]));
        ref_max = std::max(ref_max, std::abs(double(want.data()[i])));
        if (e > err || std::isnan(e)) err = e, worst = i;
    }
    const double bound = tol * std::max(1.0, ref_max);
    const bool ok = err <= bound;  // false for NaN
    if (verbose())
        MESSAGE(what << ": max abs error " << err << " (bound " << bound << ", max |ref| " << ref_max << ")");
    if (!ok) {
        std::ostringstream os;
        os.precision(9);
        os << what << " " << want.shape().str() << ": max abs error " << err << " > bound " << bound << " at flat index "
           << worst << ": got " << got.data()[worst] << ", reference " << want.data()[worst] << "\n  first values:";
        for (index_t i = 0; i < std::min<index_t>(5, want.numel()); ++i)
            os << " [" << i << "] " << got.data()[i] << " vs " << want.data()[i];
        FAIL_CHECK(os.str());
    }
}

/// HF's 0/1 attention_mask (stored as F32) as the int32 key_keep mmalign takes.
std::vector<std::int32_t> keep_ids(const Tensor<float>& m) {
    std::vector<std::int32_t> ids;
    for (float v : m) {
        REQUIRE_MESSAGE((v == 0.0f || v == 1.0f), "mask values must be 0 or 1, found ", v);
        ids.push_back(v != 0.0f ? 1 : 0);
    }
    return ids;
}

using PreBlock = TransformerBlock<Be, PreNorm>;
using PostBlock = TransformerBlock<Be, PostNorm>;

PreBlock::Config clip_config(index_t dim) {
    return {.dim = dim, .heads = 4, .mlp_hidden = dim * 2, .activation = Activation::quick_gelu, .eps = 1e-5,
            .names = BlockNames::clip()};
}

PostBlock::Config bert_config(index_t dim, index_t cross_dim) {
    return {.dim = dim, .heads = 4, .mlp_hidden = dim * 2, .activation = Activation::gelu, .eps = 1e-12,
            .cross_attention = true, .cross_dim = cross_dim, .names = BlockNames::bert()};
}

/// Forward with Saved, then backward of Σ r ⊙ y, for the block stored under `prefix`; with
/// cross-attention when the fixture holds "<prefix>.enc".
template <class Block>
struct GoldenRun {
    Block block;
    Tensor<float> y, d_x, d_enc;
    bool cross = false;  // not d_enc.empty(): a default Tensor has shape [] and numel 1

    GoldenRun(const std::string& prefix, typename Block::Config cfg) : block(cfg) {
        const auto& f = fixture();
        io::load_parameters(block, f, prefix + ".params.");
        const Tensor<float> x = f.read<float>(prefix + ".x"), r = f.read<float>(prefix + ".r");
        const std::vector<std::int32_t> keep = keep_ids(f.read<float>(prefix + ".mask"));
        cross = f.contains(prefix + ".enc");
        Tensor<float> enc;
        std::vector<std::int32_t> enc_keep;
        AttentionMask<float> self_mask{.key_keep = keep.data(), .causal = std::is_same_v<Block, PreBlock>};
        AttentionMask<float> cross_mask;
        if (cross) {
            enc = f.read<float>(prefix + ".enc");
            enc_keep = keep_ids(f.read<float>(prefix + ".enc_mask"));
            cross_mask.key_keep = enc_keep.data();
        }

        Be be;
        typename Block::Saved saved;
        y = Tensor<float>(x.shape());
        block.forward(be, x.cview(), cross ? enc.cview() : ConstView<float>{}, self_mask, cross_mask, y.view(), &saved);

        zero_grad(block);
        d_x = Tensor<float>(x.shape(), -7.0f);  // garbage: backward must assign d_x
        if (cross) d_enc = Tensor<float>(enc.shape(), 0.0f);  // accumulated, so zeroed first
        block.backward(be, saved, r.cview(), d_x.view(), cross ? d_enc.view() : TensorView<float>{},
                       GradMode::accumulate);
    }

    void check_gradients(const std::string& prefix) {
        const auto& f = fixture();
        check_close(prefix + ".grad.x", d_x.cview(), f.read<float>(prefix + ".grad.x").cview(), 1e-4);
        if (cross)
            check_close(prefix + ".grad.enc", d_enc.cview(), f.read<float>(prefix + ".grad.enc").cview(), 1e-4);
        int n = 0;
        block.visit([&](const std::string& name, Parameter<float>& p) {
            check_close(prefix + ".grad." + name, p.grad.cview(), f.read<float>(prefix + ".grad." + name).cview(), 1e-4);
            ++n;
        });
        CHECK(n == (cross ? 26 : 16));  // every HF parameter of the layer (the names test checks which)
    }
};

GoldenRun<PreBlock> run_pre() { return {"pre", clip_config(fixture().shape("pre.x")[2])}; }
GoldenRun<PostBlock> run_post() {
    return {"post", bert_config(fixture().shape("post.x")[2], fixture().shape("post.enc")[2])};
}

/// The parameter names a block's visit() produces.
template <class Block>
std::vector<std::string> visited_names(Block& block) {
    std::vector<std::string> names;
    block.visit([&](const std::string& name, auto&) { names.push_back(name); });
    std::sort(names.begin(), names.end());
    return names;
}

/// The fixture's keys under `prefix`, with the prefix removed.
std::vector<std::string> fixture_names(const std::string& prefix) {
    std::vector<std::string> names;
    for (const auto& k : fixture().names())
        if (k.rfind(prefix, 0) == 0) names.push_back(k.substr(prefix.size()));
    return names;  // names() is sorted, and so is any run of it sharing a prefix
}

/// A file under the system temp directory, removed when the test ends.
struct TempFile {
    std::filesystem::path path;
    explicit TempFile(const std::string& bytes) {
        static int counter = 0;
        const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
        path = std::filesystem::temp_directory_path() /
               ("mmalign_golden_" + std::to_string(stamp) + "_" + std::to_string(counter++) + ".safetensors");
        std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    ~TempFile() {
        std::error_code ec;
        std::filesystem::remove(path, ec);
    }
    std::string str() const { return path.string(); }
};

/// length (u64 little-endian) · header · data, as a safetensors writer lays them out.
std::string safetensors_bytes(const std::string& header, const std::string& data, std::uint64_t length_field) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((length_field >> (8 * i)) & 0xff);
    return out + header + data;
}
std::string safetensors_bytes(const std::string& header, const std::string& data) {
    return safetensors_bytes(header, data, header.size());
}

template <class S>
std::string raw(std::initializer_list<S> values) {
    std::string out(values.size() * sizeof(S), '\0');
    std::memcpy(out.data(), values.begin(), out.size());
    return out;
}

}  // namespace

TEST_CASE("pre-LN block with causal+padding mask: forward matches HF CLIPEncoderLayer within 1e-5") {
    auto run = run_pre();
    check_close("pre.y", run.y.cview(), fixture().read<float>("pre.y").cview(), 1e-5);
}

TEST_CASE("pre-LN block: d_x and every parameter gradient match torch autograd within 1e-4") {
    auto run = run_pre();
    run.check_gradients("pre");
}

TEST_CASE("post-LN block with cross-attention and padding masks: forward matches HF BertLayer within 1e-5") {
    auto run = run_post();
    check_close("post.y", run.y.cview(), fixture().read<float>("post.y").cview(), 1e-5);
}

TEST_CASE("post-LN block: d_x, accumulated d_enc and every parameter gradient match torch autograd within 1e-4") {
    auto run = run_post();
    run.check_gradients("post");
}

TEST_CASE("BlockNames::clip() and ::bert() visit exactly the HF state_dict keys of the fixture layers") {
    PreBlock pre(clip_config(16));
    PostBlock post(bert_config(16, 16));
    CHECK(visited_names(pre) == fixture_names("pre.params."));
    CHECK(visited_names(post) == fixture_names("post.params."));
    if (verbose())
        for (const auto& [k, v] : fixture().metadata()) MESSAGE("fixture metadata " << k << " = " << v);
    CHECK(fixture().metadata().count("transformers") == 1);
}

TEST_CASE("load_parameters reports all missing keys in one IoError and leaves the module untouched") {
    auto cfg = clip_config(16);
    cfg.cross_attention = true;  // asks for cross_attn.* and layer_norm_cross.*, which CLIP lacks
    PreBlock block(cfg);
    const std::string msg = io_error_of([&] { io::load_parameters(block, fixture(), "pre.params."); });
    INFO(msg);
    CHECK(contains(msg, fixture_path));
    CHECK(contains(msg, "10 missing"));
    CHECK(contains(msg, "pre.params.cross_attn.q_proj.weight"));
    CHECK(contains(msg, "pre.params.cross_attn.out_proj.bias"));
    CHECK(contains(msg, "pre.params.layer_norm_cross.weight"));
    CHECK_FALSE(contains(msg, "pre.params.self_attn.q_proj.weight"));
    // Checked before anything is read: the keys that do exist were not loaded either.
    const auto& w = block.attention.inner.q_proj.params.weight.value;
    CHECK(std::all_of(w.begin(), w.end(), [](float v) { return v == 0.0f; }));
}

TEST_CASE("load_parameters names the key and both shapes when the module's shapes differ from the file") {
    PreBlock block(clip_config(8));  // dim 8 against the fixture's 16
    const std::string msg = io_error_of([&] { io::load_parameters(block, fixture(), "pre.params."); });
    INFO(msg);
    CHECK(contains(msg, fixture_path));
    CHECK(contains(msg, "16 with the wrong shape"));
    CHECK(contains(msg, "pre.params.self_attn.q_proj.weight: expected shape [8, 8], found [16, 16]"));
    CHECK(contains(msg, "pre.params.mlp.fc1.weight: expected shape [16, 8], found [32, 16]"));
    CHECK(contains(msg, "pre.params.layer_norm2.bias: expected shape [8], found [16]"));
    CHECK_FALSE(contains(msg, "missing"));
}

TEST_CASE("a well-formed file reads back F32/F64, unaligned offsets, rank 0 and metadata exactly") {
    // "a": F64 [2] at byte 4 (not 8-aligned), "s": F32 scalar at byte 0.
    const std::string header =
        R"({"__metadata__":{"k":"v"},"a":{"dtype":"F64","shape":[2],"data_offsets":[4,20]},)"
        R"("s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})";
    TempFile file(safetensors_bytes(header, raw<float>({2.5f}) + raw<double>({0.1, -3.0})));
    const auto f = io::SafetensorsFile::open(file.str());
    CHECK(f.names() == std::vector<std::string>{"a", "s"});
    CHECK(f.metadata().at("k") == "v");
    CHECK(f.dtype("a") == "F64");
    CHECK(f.shape("s").rank() == 0);
    const auto a = f.read<double>("a");
    CHECK(a(0) == 0.1);
    CHECK(a(1) == -3.0);
    CHECK(f.read<float>("a")(0) == 0.1f);
    const auto s = f.read<double>("s");
    CHECK(s.numel() == 1);
    CHECK(s.data()[0] == 2.5);
    Tensor<float> wrong(Shape{3});
    const std::string msg = io_error_of([&] { f.read_into("a", wrong.view()); });
    CHECK(contains(msg, "tensor 'a': expected shape [3], found [2]"));
    CHECK(contains(io_error_of([&] { (void)f.shape("nope"); }), "tensor 'nope': not in the file"));
}

TEST_CASE("truncated or corrupt safetensors files raise an IoError naming the file and the fault") {
    const std::string ok_entry = R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
    const std::string data16(16, '\0');
    struct Case {
        const char* what;
        std::string bytes;
        const char* expect;
    };
    std::ifstream in(fixture_path, std::ios::binary);
    const std::string real((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(real.size() > 1000);
    const std::vector<Case> cases = {
        {"shorter than the length field", "\x01\x02\x03", "too short"},
        {"length field past the end", safetensors_bytes(ok_entry, data16, 1000), "exceeds the"},
        {"absurd length field", safetensors_bytes(ok_entry, data16, std::uint64_t(1) << 62), "exceeds the limit"},
        {"header not JSON", safetensors_bytes("{\"t\": [1, 2", data16), "not valid JSON"},
        {"header not an object", safetensors_bytes("[1, 2]", data16), "must be a JSON object"},
        {"data cut short", safetensors_bytes(ok_entry, std::string(10, '\0')), "tensor 't': data_offsets [0, 16] end past"},
        {"byte count != numel * itemsize",
         safetensors_bytes(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", data16),
         "tensor 't': expected 12 bytes for shape [3] of F32"},
        {"offsets backwards", safetensors_bytes(R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", data16),
         "run backwards"},
        {"unknown dtype", safetensors_bytes(R"({"t":{"dtype":"Q8","shape":[8],"data_offsets":[0,16]}})", data16),
         "tensor 't': unknown dtype 'Q8'"},
        {"rank above 4",
         safetensors_bytes(R"({"t":{"dtype":"F32","shape":[1,1,1,1,4],"data_offsets":[0,16]}})", data16),
         "expected rank <= 4, found rank 5"},
        {"negative extent", safetensors_bytes(R"({"t":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", data16),
         "non-negative integer extents"},
        {"overflowing shape",
         safetensors_bytes(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,16]}})", data16),
         "is too large"},
        {"missing field", safetensors_bytes(R"({"t":{"dtype":"F32","shape":[4]}})", data16), "missing field 'data_offsets'"},
        {"real fixture, truncated", real.substr(0, real.size() - 100), "end past the data region"},
        {"real fixture, header cut", real.substr(0, 200), "exceeds the"},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        TempFile file(c.bytes);
        const std::string msg = io_error_of([&] { (void)io::SafetensorsFile::open(file.str()); });
        INFO(msg);
        CHECK(contains(msg, file.str()));
        CHECK(contains(msg, c.expect));
    }
    const std::string missing = (std::filesystem::temp_directory_path() / "mmalign_no_such_file.safetensors").string();
    const std::string msg = io_error_of([&] { (void)io::SafetensorsFile::open(missing); });
    CHECK(contains(msg, missing));
    CHECK(contains(msg, "no such file"));
}
