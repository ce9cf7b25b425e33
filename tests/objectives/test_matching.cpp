// Tests of objectives/matching.hpp: the ITM head + CE against PyTorch, finite differences, and the
// hard-negative sampler (never the own pair, reproducible, following the similarities).
#include <doctest/doctest.h>

#include "mmalign/io/safetensors.hpp"
#include "mmalign/objectives/matching.hpp"
#include "support/module_check.hpp"

using namespace mmalign;
using test::Be;

TEST_CASE("ITM loss and gradients equal PyTorch's Linear + cross_entropy on [1]*B + [0]*2B") {
    auto f = io::SafetensorsFile::open(std::string(MMALIGN_FIXTURE_DIR) + "/objectives.safetensors");
    Be be;
    ImageTextMatching<Be> itm({.dim = 4});
    itm.head.params.weight.value = f.read<double>("itm.weight");
    itm.head.params.bias.value = f.read<double>("itm.bias");
    Tensor<double> h = f.read<double>("itm.h");
    const auto labels = ImageTextMatching<Be>::labels_for(2);
    ImageTextMatching<Be>::Saved s;
    auto r = itm.forward(be, h.view(), labels, s);
    CHECK(r.loss == doctest::Approx(f.read<double>("itm.loss")(0)).epsilon(1e-12));
    Tensor<double> d_h(h.shape());
    zero_grad(itm);
    itm.backward(be, s, 1.0, d_h.view(), GradMode::accumulate);
    auto close = [](const Tensor<double>& a, const Tensor<double>& b) {
        double w = 0;
        for (index_t i = 0; i < a.numel(); ++i) w = std::max(w, std::abs(a.data()[i] - b.data()[i]));
        return w;
    };
    CHECK(close(d_h, f.read<double>("itm.d_h")) < 1e-12);
    CHECK(close(itm.head.params.weight.grad, f.read<double>("itm.d_weight")) < 1e-12);
    CHECK(close(itm.head.params.bias.grad, f.read<double>("itm.d_bias")) < 1e-12);
}

TEST_CASE("ITM backward matches finite differences") {
    Be be;
    ImageTextMatching<Be> itm({.dim = 3});
    test::randomize(itm, 1);
    Tensor<double> h = test::random_tensor({6, 3}, 2);
    const auto labels = ImageTextMatching<Be>::labels_for(2);
    ImageTextMatching<Be>::Saved s;
    itm.forward(be, h.view(), labels, s);
    Tensor<double> d_h(h.shape());
    zero_grad(itm);
    itm.backward(be, s, 1.0, d_h.view(), GradMode::accumulate);
    test::check_module_gradients(itm, {{"h", h.view(), d_h.view()}}, [&] {
        ImageTextMatching<Be>::Saved t;
        return double(itm.forward(be, h.view(), labels, t).loss);
    });
}

TEST_CASE("hard negatives never pick the own pair, are reproducible per seed, and follow softmax(sim)") {
    const index_t N = 4;
    Tensor<double> sim(Shape{N, N}, 0.0);
    sim(0, 2) = 3.0;  // row 0 strongly prefers column 2: p = e³/(e³ + 2) ≈ 0.909
    HardNegativeSampler a(42), b(42);
    std::vector<index_t> counts(N, 0);
    for (int trial = 0; trial < 2000; ++trial) {
        auto na = a.sample<double>(sim.view()), nb = b.sample<double>(sim.view());
        CHECK(na == nb);
        for (index_t r = 0; r < N; ++r) CHECK(na[static_cast<std::size_t>(r)] != r);
        ++counts[static_cast<std::size_t>(na[0])];
    }
    CHECK(counts[0] == 0);
    CHECK(double(counts[2]) / 2000 == doctest::Approx(std::exp(3.0) / (std::exp(3.0) + 2)).epsilon(0.03));
    Tensor<double> one(Shape{1, 1});
    CHECK_THROWS_AS(a.sample<double>(one.view()), ArgumentError);
}
