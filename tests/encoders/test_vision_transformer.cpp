// Tests of encoders/vision_transformer.hpp: patch layout, HF key names, and the backward of the
// whole tower (patch embedding, class token, positions, both LayerNorms, blocks) against finite
// differences in double.
#include <doctest/doctest.h>

#include "mmalign/encoders/vision_transformer.hpp"
#include "support/module_check.hpp"

using namespace mmalign;
using test::Be;
using Vit = VisionTransformer<Be>;

TEST_CASE("patchify orders patches row-major over the grid and elements as (channel, row, column)") {
    Be be;
    Tensor<double> px(Shape{1, 2, 4, 4});
    for (index_t i = 0; i < px.numel(); ++i) px.data()[i] = double(i);
    Tensor<double> patches(Shape{1, 4, 8});
    be.patchify(px.view(), 2, patches.view());
    // patch 1 = grid row 0, column 1: channel 0 rows 0-1 columns 2-3, then channel 1.
    const double want[] = {2, 3, 6, 7, 18, 19, 22, 23};
    for (index_t e = 0; e < 8; ++e) CHECK(patches(0, 1, e) == want[e]);
    Tensor<double> bad(Shape{1, 2, 5, 4});
    CHECK_THROWS_AS(be.patchify(bad.view(), 2, patches.view()), ShapeError);
}

TEST_CASE("the vision tower names its parameters like HF CLIPVisionTransformer") {
    Vit vit({.image_size = 8, .patch_size = 4, .hidden = 8, .layers = 1, .heads = 2, .mlp_hidden = 16});
    std::vector<std::string> names;
    vit.visit([&](const std::string& n, Parameter<double>& p) { names.push_back(n + p.shape().str()); }, "vision_model");
    CHECK(names[0] == "vision_model.embeddings.class_embedding[8]");
    CHECK(names[1] == "vision_model.embeddings.patch_embedding.weight[8, 3, 4, 4]");
    CHECK(names[2] == "vision_model.embeddings.position_embedding.weight[5, 8]");
    CHECK(names[3] == "vision_model.pre_layrnorm.weight[8]");
    CHECK(names.back() == "vision_model.post_layernorm.bias[8]");
}

TEST_CASE("the vision tower's backward matches finite differences for every parameter") {
    Be be;
    Vit vit({.image_size = 8, .patch_size = 4, .channels = 3, .hidden = 8, .layers = 2, .heads = 2, .mlp_hidden = 12,
             .activation = Activation::quick_gelu});
    test::randomize(vit, 1, 0.4);
    Tensor<double> px = test::random_tensor({2, 3, 8, 8}, 2);
    Tensor<double> r_pool = test::random_tensor({2, 8}, 3), r_last = test::random_tensor({2, 5, 8}, 4);
    Tensor<double> pooled(Shape{2, 8}), last(Shape{2, 5, 8});
    Vit::Saved s;
    vit.forward(be, px.view(), last.view(), pooled.view(), &s);
    zero_grad(vit);
    vit.backward(be, s, r_pool.view(), r_last.view(), GradMode::accumulate);
    test::check_module_gradients(vit, {}, [&] {
        vit.forward(be, px.view(), last.view(), pooled.view());
        return testing::dot<double>(r_pool.view(), pooled.view()) + testing::dot<double>(r_last.view(), last.view());
    });
}

TEST_CASE("the vision tower rejects images of another size") {
    Be be;
    Vit vit({.image_size = 8, .patch_size = 4, .hidden = 8, .layers = 1, .heads = 2, .mlp_hidden = 16});
    Tensor<double> px(Shape{1, 3, 12, 12}), pooled(Shape{1, 8});
    CHECK_THROWS_WITH_AS(vit.forward(be, px.view(), {}, pooled.view()),
                         "VisionTransformer pixels: expected [*, 3, 8, 8], found [1, 3, 12, 12]", ShapeError);
}
