// Tests of core/parameter.hpp's module helpers: copy_parameters between two modules of one
// architecture (the host-to-device path, here host to host), and its refusal of mismatches.
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/nn/transformer_stack.hpp"

using namespace mmalign;
using Be = CpuBackend<float>;
using Stack = TransformerStack<Be, PreNorm>;

namespace {
Stack make(index_t layers, index_t dim) {
    return Stack({.layers = layers, .block = {.dim = dim, .heads = 2, .mlp_hidden = 2 * dim}});
}
std::vector<Tensor<float>> values(Stack& m) {
    std::vector<Tensor<float>> out;
    m.visit([&](const std::string&, Parameter<float>& p) { out.push_back(p.value); });
    return out;
}
bool same(const std::vector<Tensor<float>>& a, const std::vector<Tensor<float>>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (!(a[i].shape() == b[i].shape()) || std::memcmp(a[i].data(), b[i].data(), sizeof(float) * a[i].numel()) != 0)
            return false;
    return true;
}
}  // namespace

TEST_CASE("copy_parameters copies every parameter of one module into another of the same architecture") {
    Be be;
    Stack src = make(2, 8), dst = make(2, 8);
    init_normal(src, 1);
    init_normal(dst, 2);
    REQUIRE_FALSE(same(values(src), values(dst)));
    copy_parameters(be, dst, src);
    CHECK(same(values(src), values(dst)));
}

TEST_CASE("copy_parameters refuses modules that differ in names, shapes or count, naming the first difference, "
          "and copies nothing") {
    Be be;
    Stack src = make(2, 8);
    init_normal(src, 1);
    auto refused = [&](Stack& dst, const std::string& expected_part) {
        init_normal(dst, 3);
        const auto before = values(dst);
        std::string msg;
        try {
            copy_parameters(be, dst, src);
        } catch (const ShapeError& e) {
            msg = e.what();
        }
        CHECK_MESSAGE(msg.find(expected_part) != std::string::npos, msg);
        CHECK(same(values(dst), before));
    };
    SUBCASE("another width") {
        Stack dst = make(2, 16);
        refused(dst, "'layers.0.self_attn.q_proj.weight' [16, 16] in the destination but "
                     "'layers.0.self_attn.q_proj.weight' [8, 8] in the source");
    }
    SUBCASE("more layers in the destination") {
        Stack dst = make(3, 8);
        refused(dst, "the first extra one is 'layers.2.");
    }
    SUBCASE("fewer layers in the destination") {
        Stack dst = make(1, 8);
        refused(dst, "the first missing one is 'layers.1.");
    }
}
