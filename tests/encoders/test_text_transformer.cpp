// Tests of encoders/text_transformer.hpp: both EOS pooling rules, independence of the pooled
// output from padding, and the backward of the whole tower against finite differences in double.
#include <doctest/doctest.h>

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
    current.config.pooling = EosPooling::argmax;  // pre-#24777: argmax whatever the eos id
    CHECK(current.pool_positions(ids, 2, 8) == std::vector<index_t>{2, 7});
    legacy.config.pooling = EosPooling::first_eos;  // eos id 2: first 2 in row 0 is absent → 0
    CHECK(legacy.pool_positions(ids, 2, 8) == std::vector<index_t>{0, 0});
    // newest rule: argmax only when every row's largest id is 49407
    Text newest({.vocab_size = 49408, .max_positions = 4, .hidden = 4, .layers = 0, .heads = 1, .mlp_hidden = 4,
                 .eos_token_id = 7, .pooling = EosPooling::hf_all_rows_max});
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
