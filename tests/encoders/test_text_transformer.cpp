// Tests of encoders/text_transformer.hpp: the EOS pooling rules, CLS and no pooling, causal and
// bidirectional masks, independence of the pooled output from padding, and the backward of the
// whole tower against finite differences in double.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "mmalign/encoders/text_transformer.hpp"
#include "support/module_check.hpp"
#include "support/reference.hpp"

using namespace mmalign;
using test::Be;
using Text = TextTransformer<Be>;

TEST_CASE("EOS pooling: argmax(ids) when eos_token_id is 2, else the first id equal to eos_token_id") {
    Text legacy({.vocab_size = 50, .max_positions = 8, .hidden = 4, .layers = 0, .heads = 1, .mlp_hidden = 4, .eos_token_id = 2});
    Text current({.vocab_size = 50, .max_positions = 8, .hidden = 4, .layers = 0, .heads = 1, .mlp_hidden = 4, .eos_token_id = 7});
    const std::vector<std::int32_t> ids = {0, 12, 49, 3, 49, 7, 7, 1,   // first max at 2; first 7 at 5
                                           0, 3, 4, 5, 6, 8, 9, 10};    // no 7 at all → position 0
    CHECK(legacy.pool_positions(ids, 2, 8) == std::vector<index_t>{2, 7});
    CHECK(current.pool_positions(ids, 2, 8) == std::vector<index_t>{5, 0});
    current.config.pooling = TextPooling::argmax;  // pre-#24773: argmax whatever the eos id
    CHECK(current.pool_positions(ids, 2, 8) == std::vector<index_t>{2, 7});
    legacy.config.pooling = TextPooling::first_eos;  // eos id 2: first 2 in row 0 is absent → 0
    CHECK(legacy.pool_positions(ids, 2, 8) == std::vector<index_t>{0, 0});
    // newest rule: argmax only when every row's largest id is 49407
    Text newest({.vocab_size = 49408, .max_positions = 4, .hidden = 4, .layers = 0, .heads = 1, .mlp_hidden = 4,
                 .eos_token_id = 7, .pooling = TextPooling::hf_all_rows_max});
    const std::vector<std::int32_t> clip_ids = {49406, 49407, 49407, 49407, 49406, 320, 49407, 49407};
    CHECK(newest.pool_positions(clip_ids, 2, 4) == std::vector<index_t>{1, 2});
    const std::vector<std::int32_t> mixed = {49406, 49407, 7, 7, 5, 7, 9, 7};
    CHECK(newest.pool_positions(mixed, 2, 4) == std::vector<index_t>{2, 1});
}

TEST_CASE("the pooled output does not depend on what follows EOS (causal mask) or on padding") {
    Be be;
    Text text({.vocab_size = 30, .max_positions = 6, .hidden = 8, .layers = 2, .heads = 2, .mlp_hidden = 16, .eos_token_id = 29});
    test::randomize(text, 5);
    const std::vector<std::int32_t> a = {28, 4, 9, 29, 29, 29}, b = {28, 4, 9, 29, 17, 3};
    const std::vector<std::int32_t> ma = {1, 1, 1, 1, 0, 0}, mb = {1, 1, 1, 1, 1, 1};
    Tensor<double> pa(Shape{1, 8}), pb(Shape{1, 8});
    text.forward(be, a, ma, 1, {}, pa.view());
    text.forward(be, b, mb, 1, {}, pb.view());
    CHECK(test::max_abs_diff<double>(pa.view(), pb.view()) < 1e-12);
}

TEST_CASE("the text tower's backward matches finite differences for every parameter") {
    Be be;
    Text text({.vocab_size = 20, .max_positions = 7, .hidden = 8, .layers = 2, .heads = 2, .mlp_hidden = 12,
               .activation = Activation::gelu, .eos_token_id = 19});
    test::randomize(text, 6, 0.4);
    const std::vector<std::int32_t> ids = {18, 3, 5, 19, 19, 19, 18, 7, 7, 2, 11, 19};
    const std::vector<std::int32_t> mask = {1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1};
    Tensor<double> r_pool = test::random_tensor({2, 8}, 7), r_last = test::random_tensor({2, 6, 8}, 8);
    Tensor<double> pooled(Shape{2, 8}), last(Shape{2, 6, 8});
    Text::Saved s;
    text.forward(be, ids, mask, 2, last.view(), pooled.view(), &s);
    zero_grad(text);
    text.backward(be, s, r_pool.view(), r_last.view(), GradMode::accumulate);
    test::check_module_gradients(text, {}, [&] {
        text.forward(be, ids, mask, 2, last.view(), pooled.view());
        return testing::dot<double>(r_pool.view(), pooled.view()) + testing::dot<double>(r_last.view(), last.view());
    });
}

TEST_CASE("the mask is a Config value: causal keeps earlier positions blind to later tokens, bidirectional does not") {
    Be be;
    Text::Config c{.vocab_size = 30, .max_positions = 6, .hidden = 8, .layers = 2, .heads = 2, .mlp_hidden = 16, .eos_token_id = 29};
    const std::vector<std::int32_t> a = {28, 4, 9, 17, 29, 3}, b = {28, 4, 9, 11, 29, 3};  // differ at position 3
    for (bool causal : {true, false}) {
        CAPTURE(causal);
        c.causal = causal;
        Text text(c);
        test::randomize(text, 5);
        Tensor<double> la(Shape{1, 6, 8}), lb(Shape{1, 6, 8});
        text.forward(be, a, {}, 1, la.view(), {});
        text.forward(be, b, {}, 1, lb.view(), {});
        double before = 0;  // positions 0..2, which precede the changed token
        for (index_t t = 0; t < 3; ++t)
            for (index_t d = 0; d < 8; ++d) before = std::max(before, std::abs(la(0, t, d) - lb(0, t, d)));
        if (causal) CHECK(before < 1e-12);
        else CHECK(before > 1e-3);
    }
}

TEST_CASE("CLS pooling takes position 0 of last_hidden_state, and a tower without pooling has no pooled output") {
    Be be;
    Text::Config c{.vocab_size = 30, .max_positions = 6, .hidden = 8, .layers = 1, .heads = 2, .mlp_hidden = 16, .eos_token_id = 29};
    c.pooling = TextPooling::cls;
    c.causal = false;
    Text text(c);
    test::randomize(text, 9);
    const std::vector<std::int32_t> ids = {28, 4, 9, 29, 29, 29, 28, 7, 7, 2, 11, 29};
    CHECK(text.pool_positions(ids, 2, 6) == std::vector<index_t>{0, 0});
    Tensor<double> last(Shape{2, 6, 8}), pooled(Shape{2, 8});
    text.forward(be, ids, {}, 2, last.view(), pooled.view());
    for (index_t b = 0; b < 2; ++b)
        for (index_t d = 0; d < 8; ++d) CHECK(pooled(b, d) == last(b, 0, d));
    c.pooling = TextPooling::none;
    Text unpooled(c);
    CHECK(unpooled.pool_positions(ids, 2, 6).empty());
    CHECK_THROWS_AS(unpooled.forward(be, ids, {}, 2, last.view(), pooled.view()), ArgumentError);
    unpooled.forward(be, ids, {}, 2, last.view(), {});
}

TEST_CASE("a bidirectional CLS-pooled text tower's backward matches finite differences for every parameter") {
    Be be;
    Text::Config c{.vocab_size = 20, .max_positions = 7, .hidden = 8, .layers = 2, .heads = 2, .mlp_hidden = 12,
                   .activation = Activation::gelu, .eos_token_id = 19};
    c.pooling = TextPooling::cls;
    c.causal = false;
    Text text(c);
    test::randomize(text, 16, 0.4);
    const std::vector<std::int32_t> ids = {18, 3, 5, 19, 19, 19, 18, 7, 7, 2, 11, 19};
    const std::vector<std::int32_t> mask = {1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1};
    Tensor<double> r_pool = test::random_tensor({2, 8}, 17), r_last = test::random_tensor({2, 6, 8}, 18);
    Tensor<double> pooled(Shape{2, 8}), last(Shape{2, 6, 8});
    Text::Saved s;
    text.forward(be, ids, mask, 2, last.view(), pooled.view(), &s);
    zero_grad(text);
    text.backward(be, s, r_pool.view(), r_last.view(), GradMode::accumulate);
    test::check_module_gradients(text, {}, [&] {
        text.forward(be, ids, mask, 2, last.view(), pooled.view());
        return testing::dot<double>(r_pool.view(), pooled.view()) + testing::dot<double>(r_last.view(), last.view());
    });
}
