// Tests of objectives/language_modeling.hpp: shifted next-token CE with ignore_index and label
// smoothing against PyTorch, and against finite differences.
#include <doctest/doctest.h>

#include "mmalign/io/safetensors.hpp"
#include "mmalign/objectives/language_modeling.hpp"
#include "support/module_check.hpp"

using namespace mmalign;

TEST_CASE("shifted LM loss and d_logits equal PyTorch's cross_entropy(logits[:, :-1], labels[:, 1:])") {
    auto f = io::SafetensorsFile::open(std::string(MMALIGN_FIXTURE_DIR) + "/objectives.safetensors");
    auto run = [&]<class T>(T, double loss_tol, double grad_tol) {
        using B = CpuBackend<T>;
        B be;
        Tensor<T> logits = f.read<T>("lm.logits");
        Tensor<double> lab = f.read<double>("lm.labels");
        std::vector<std::int32_t> labels(lab.begin(), lab.end());
        LanguageModeling<B> lm({.label_smoothing = 0.1});
        typename LanguageModeling<B>::Saved s;
        auto r = lm.forward(be, logits.view(), labels, s, true);
        CHECK(r.tokens == 6);  // 2 rows × 4 shifted targets, two of them −100 (labels[0, 3], labels[1, 1])
        const double want = f.read<double>("lm.loss")(0);
        CHECK(std::abs(double(r.loss) - want) / want <= loss_tol);
        Tensor<T> d(logits.shape());
        lm.backward(be, s, logits.view(), T(1), d.view());
        Tensor<double> ref = f.read<double>("lm.d_logits");
        double worst = 0;
        for (index_t i = 0; i < d.numel(); ++i) worst = std::max(worst, std::abs(double(d.data()[i]) - ref.data()[i]));
        CHECK(worst <= grad_tol);
    };
    run(double{}, 1e-12, 1e-12);
    run(float{}, 1e-6, 1e-5);
}

TEST_CASE("LM backward matches finite differences, and the last position of each row never counts") {
    using B = test::Be;
    B be;
    Tensor<double> logits = test::random_tensor({2, 4, 5}, 1, -2, 2);
    std::vector<std::int32_t> labels = {1, 4, -100, 2, 0, 3, 3, 1};
    LanguageModeling<B> lm({.label_smoothing = 0.2});
    LanguageModeling<B>::Saved s;
    auto r = lm.forward(be, logits.view(), labels, s);
    CHECK(r.tokens == 5);  // targets 4, 2 | 3, 3, 1 (labels at t = 0 are never predicted; −100 skipped)
    Tensor<double> d(logits.shape());
    lm.backward(be, s, logits.view(), 1.0, d.view());
    for (index_t v = 0; v < 5; ++v) CHECK(d.view()(0, 3, v) == 0.0);  // last position: no target
    auto rep = testing::check_gradient("logits", logits.view(), d.view(), [&] {
        LanguageModeling<B>::Saved t;
        return double(lm.forward(be, logits.view(), labels, t).loss);
    });
    CHECK_MESSAGE(rep.max_rel_error < 1e-6, rep.str());
    std::vector<std::int32_t> short_labels(7, 0);
    CHECK_THROWS_AS(lm.forward(be, logits.view(), short_labels, s), ShapeError);
}
