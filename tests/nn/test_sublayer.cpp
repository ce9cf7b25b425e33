// Tests of nn/sublayer.hpp: the pre- and post-norm equations from the parts, gradients by finite
// differences (feed-forward and cross-attention inners, assigned and accumulated d_x, in place),
// the write-into-the-saved-input path and the argument checks.
#include <doctest/doctest.h>

#include <vector>

#include "mmalign/nn/attention.hpp"
#include "mmalign/nn/mlp.hpp"
#include "mmalign/nn/sublayer.hpp"
#include "support/module_check.hpp"
#include "support/reference.hpp"

using namespace mmalign;
using test::Be;

namespace {

template <class Norm>
using FeedForward = Sublayer<Be, Norm, Mlp<Be>>;
template <class Norm>
using CrossAttention = Sublayer<Be, Norm, MultiHeadAttention<Be>>;

template <class Norm>
FeedForward<Norm> feed_forward() {
    return FeedForward<Norm>({.dim = 6, .eps = 1e-5, .inner_name = "mlp", .norm_name = "norm"},
                             Mlp<Be>({.dim = 6, .hidden = 10, .activation = Activation::gelu}));
}

template <class Norm>
CrossAttention<Norm> cross_attention() {
    return CrossAttention<Norm>({.dim = 8, .eps = 1e-12, .inner_name = "crossattention", .norm_name = "ln"},
                                MultiHeadAttention<Be>({.dim = 8, .heads = 2, .kv_dim = 5}));
}

}  // namespace

TEST_CASE("a pre-norm sublayer computes y = x + F(LN(x)) and a post-norm one y = LN(x + F(x)) from its parts") {
    Be be;
    Tensor<double> x = test::random_tensor({2, 3, 6}, 1), y(x.shape()), t(x.shape()), want(x.shape());
    auto pre = feed_forward<PreNorm>();
    test::randomize(pre, 2);
    pre.forward(be, x.view(), y.view(), nullptr);
    pre.norm.forward(be, x.view(), t.view());
    pre.inner.forward(be, t.view(), want.view());
    be.axpy(1.0, x.view(), want.view());
    CHECK(test::max_abs_diff<double>(y.view(), want.view()) < 1e-14);

    auto post = feed_forward<PostNorm>();
    test::randomize(post, 3);
    post.forward(be, x.view(), y.view(), nullptr);
    post.inner.forward(be, x.view(), t.view());
    be.axpy(1.0, x.view(), t.view());
    post.norm.forward(be, t.view(), want.view());
    CHECK(test::max_abs_diff<double>(y.view(), want.view()) < 1e-14);
}

TEST_CASE("a sublayer visits its inner module, then its norm, under the names its config gives") {
    auto s = cross_attention<PostNorm>();
    std::vector<std::string> names;
    s.visit([&](const std::string& n, Parameter<double>&) { names.push_back(n); }, "layer.1");
    REQUIRE(names.size() == 10);
    CHECK(names.front() == "layer.1.crossattention.q_proj.weight");
    CHECK(names[7] == "layer.1.crossattention.out_proj.bias");
    CHECK(names[8] == "layer.1.ln.weight");
    CHECK(names[9] == "layer.1.ln.bias");
}

TEST_CASE_TEMPLATE("a feed-forward sublayer's backward matches finite differences; accumulate adds, in place assigns",
                   Norm, PreNorm, PostNorm) {
    Be be;
    auto sub = feed_forward<Norm>();
    test::randomize(sub, 4);
    Tensor<double> x = test::random_tensor({2, 3, 6}, 5), r = test::random_tensor({2, 3, 6}, 6);
    Tensor<double> y(x.shape()), dx(x.shape(), -7.0);  // garbage: an assigned d_x must overwrite it
    typename FeedForward<Norm>::Saved s;
    sub.forward(be, x.view(), y.view(), &s);
    zero_grad(sub);
    sub.backward(be, s, r.view(), dx.view(), GradMode::accumulate);
    test::check_module_gradients(sub, {{"x", x.view(), dx.view()}}, [&] {
        sub.forward(be, x.view(), y.view(), nullptr);
        return testing::dot<double>(r.view(), y.view());
    });

    // InputGradMode::accumulate adds the same gradient to what d_x holds.
    const Tensor<double> base = test::random_tensor({2, 3, 6}, 7);
    Tensor<double> acc = base;
    sub.backward(be, s, r.view(), acc.view(), GradMode::ignore, InputGradMode::accumulate);
    for (index_t i = 0; i < acc.numel(); ++i)
        CHECK(acc.data()[i] == doctest::Approx(base.data()[i] + dx.data()[i]).epsilon(1e-12));

    // d_x may be d_y itself: the residual stream's gradient updated in place.
    Tensor<double> stream = r;
    sub.backward(be, s, stream.view(), stream.view(), GradMode::ignore);
    CHECK(test::max_abs_diff<double>(stream.view(), dx.view()) < 1e-14);
    CHECK_THROWS_AS(sub.backward(be, s, stream.view(), stream.view(), GradMode::ignore, InputGradMode::accumulate),
                    ArgumentError);
}

TEST_CASE_TEMPLATE("a cross-attention sublayer passes the context and mask through; d_x and the accumulated d_ctx match "
                   "finite differences", Norm, PreNorm, PostNorm) {
    Be be;
    auto sub = cross_attention<Norm>();
    test::randomize(sub, 8);
    Tensor<double> x = test::random_tensor({2, 3, 8}, 9), c = test::random_tensor({2, 4, 5}, 10);
    Tensor<double> r = test::random_tensor({2, 3, 8}, 11), y(x.shape()), dx(x.shape()), dc(c.shape(), 0.0);
    std::vector<std::int32_t> keep = {1, 1, 0, 1, 1, 1, 1, 0};
    const AttentionMask<double> mask{.key_keep = keep.data()};
    typename CrossAttention<Norm>::Saved s;
    sub.forward(be, x.view(), y.view(), &s, c.cview(), mask);
    zero_grad(sub);
    sub.backward(be, s, r.view(), dx.view(), GradMode::accumulate, InputGradMode::assign, dc.view());
    test::check_module_gradients(sub, {{"x", x.view(), dx.view()}, {"ctx", c.view(), dc.view()}}, [&] {
        sub.forward(be, x.view(), y.view(), nullptr, c.cview(), mask);
        return testing::dot<double>(r.view(), y.view());
    });
}

TEST_CASE_TEMPLATE("a parent that writes x into Saved::input() gets the same result with x stored once", Norm, PreNorm,
                   PostNorm) {
    Be be;
    auto sub = feed_forward<Norm>();
    test::randomize(sub, 12);
    const Tensor<double> x = test::random_tensor({2, 3, 6}, 13), r = test::random_tensor({2, 3, 6}, 14);
    Tensor<double> want(x.shape()), got(x.shape()), d_want(x.shape()), d_got(x.shape());
    typename FeedForward<Norm>::Saved a, b;
    sub.forward(be, x.view(), want.view(), &a);
    sub.backward(be, a, r.view(), d_want.view(), GradMode::ignore);

    auto& in = b.input();
    in.resize(x.shape());
    be.copy(x.view(), in.view());
    const double* where = in.data();
    sub.forward(be, in.view(), got.view(), &b);
    CHECK(b.input().data() == where);  // forward kept x where the parent put it
    CHECK(test::max_abs_diff<double>(got.view(), want.view()) == 0.0);
    sub.backward(be, b, r.view(), d_got.view(), GradMode::ignore);
    CHECK(test::max_abs_diff<double>(d_got.view(), d_want.view()) == 0.0);
}

TEST_CASE("a sublayer refuses aliased x and y and inputs of the wrong width") {
    Be be;
    auto sub = feed_forward<PreNorm>();
    Tensor<double> x(Shape{1, 2, 6}, 0.5), wide(Shape{1, 2, 7}, 0.5), y(x.shape());
    CHECK_THROWS_AS(sub.forward(be, x.view(), x.view(), nullptr), ArgumentError);
    CHECK_THROWS_AS(sub.forward(be, wide.view(), y.view(), nullptr), ShapeError);
}
