// Tests of objectives/contrastive.hpp: CLIP's symmetric InfoNCE against PyTorch (plain, label
// smoothing, soft targets; fixture from tools/make_objective_fixtures.py), against finite
// differences, and the open_clip clamp of the log scale.
#include <doctest/doctest.h>

#include <cmath>

#include "mmalign/io/safetensors.hpp"
#include "mmalign/objectives/contrastive.hpp"
#include "support/module_check.hpp"
#include "support/reference.hpp"

using namespace mmalign;

namespace {
const std::string fixture = std::string(MMALIGN_FIXTURE_DIR) + "/objectives.safetensors";

template <class T>
double rel(double got, double want) {
    return std::abs(got - want) / std::max(1.0, std::abs(want));
}
template <class T>
double max_rel(ConstView<T> got, ConstView<double> want) {
    double scale = 1, worst = 0;
    for (double v : want) scale = std::max(scale, std::abs(v));
    for (index_t i = 0; i < got.numel(); ++i) worst = std::max(worst, std::abs(double(got.data()[i]) - want.data()[i]));
    return worst / scale;
}

template <class T>
void check_against_torch(double loss_tol, double grad_tol) {
    using B = CpuBackend<T>;
    auto f = io::SafetensorsFile::open(fixture);
    Tensor<T> img = f.read<T>("infonce.img"), txt = f.read<T>("infonce.txt");
    const Tensor<T> soft_i = f.read<T>("infonce.soft_i2t"), soft_t = f.read<T>("infonce.soft_t2i");
    for (const char* tag : {"plain", "smooth", "soft"}) {
        CAPTURE(tag);
        const bool soft = std::string(tag) == "soft";
        SymmetricInfoNce<B> loss({.label_smoothing = std::string(tag) == "smooth" ? 0.1 : 0.0});
        B be;
        BasicParameter<Tensor<T>> scale(Shape{});
        scale.value.fill(T(2.3));
        typename SymmetricInfoNce<B>::Saved s;
        auto r = loss.forward(be, img.view(), txt.view(), scale, s, soft ? soft_i.view() : ConstView<T>{},
                              soft ? soft_t.view() : ConstView<T>{});
        CHECK(rel<T>(r.loss, f.read<double>(std::string("infonce.") + tag + ".loss")(0)) <= loss_tol);
        Tensor<T> d_img(img.shape()), d_txt(txt.shape());
        loss.backward(be, s, T(1), d_img.view(), d_txt.view(), scale, GradMode::accumulate);
        CHECK(max_rel<T>(d_img.view(), f.read<double>(std::string("infonce.") + tag + ".d_img").view()) <= grad_tol);
        CHECK(max_rel<T>(d_txt.view(), f.read<double>(std::string("infonce.") + tag + ".d_txt").view()) <= grad_tol);
        CHECK(rel<T>(scale.grad(0), f.read<double>(std::string("infonce.") + tag + ".d_logit_scale")(0)) <= grad_tol);
    }
}
}  // namespace

TEST_CASE("InfoNCE loss and gradients equal PyTorch's clip_loss (plain, label smoothing, soft targets)") {
    check_against_torch<double>(1e-12, 1e-10);
    check_against_torch<float>(1e-6, 1e-5);
}

TEST_CASE("InfoNCE backward matches finite differences for features and the log scale") {
    using B = test::Be;
    B be;
    SymmetricInfoNce<B> loss({.label_smoothing = 0.05});
    Tensor<double> img = test::random_tensor({5, 4}, 1), txt = test::random_tensor({5, 4}, 2);
    Parameter<double> scale(Shape{});
    scale.value.fill(1.7);
    SymmetricInfoNce<B>::Saved s;
    loss.forward(be, img.view(), txt.view(), scale, s);
    Tensor<double> d_img(img.shape()), d_txt(txt.shape());
    loss.backward(be, s, 1.0, d_img.view(), d_txt.view(), scale, GradMode::accumulate);
    auto value = [&] {
        SymmetricInfoNce<B>::Saved t;
        return double(loss.forward(be, img.view(), txt.view(), scale, t).loss);
    };
    for (auto [name, x, g] : {std::tuple{"img", &img, &d_img}, {"txt", &txt, &d_txt}, {"logit_scale", &scale.value, &scale.grad}}) {
        auto rep = testing::check_gradient(name, x->view(), g->view(), value);
        CHECK_MESSAGE(rep.max_rel_error < 1e-6, rep.str());
    }
}

TEST_CASE("InfoNCE reports retrieval accuracy and clamps the log scale to [0, ln 100]") {
    using B = test::Be;
    B be;
    SymmetricInfoNce<B> loss;
    Tensor<double> img = test::random_tensor({4, 3}, 3);
    Parameter<double> scale(Shape{});
    scale.value.fill(5.0);
    SymmetricInfoNce<B>::Saved s;
    auto r = loss.forward(be, img.view(), img.view(), scale, s);  // identical pairs: all retrieved
    CHECK(r.image_to_text_accuracy == 1.0);
    CHECK(r.text_to_image_accuracy == 1.0);
    loss.clamp_logit_scale(be, scale);
    CHECK(scale.value(0) == doctest::Approx(std::log(100.0)));
    scale.value.fill(-1.0);
    loss.clamp_logit_scale(be, scale);
    CHECK(scale.value(0) == 0.0);
    Tensor<double> other(Shape{3, 3});
    CHECK_THROWS_AS(loss.forward(be, img.view(), other.view(), scale, s), ShapeError);
}
