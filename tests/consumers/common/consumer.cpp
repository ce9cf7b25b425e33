// A downstream program: includes the umbrella header, runs a pre-norm transformer block and checks
// that its output is finite and shaped as documented. Built by each consumer project.
#include <mmalign/mmalign.hpp>

#include <cmath>
#include <cstdio>

int main() {
    using Be = mmalign::CpuBackend<float>;
    Be be;
    mmalign::TransformerBlock<Be, mmalign::PreNorm> block({.dim = 16, .heads = 4, .mlp_hidden = 64});
    mmalign::init_normal(block, 1);
    mmalign::Tensor<float> x(mmalign::Shape{2, 5, 16}, 0.1f), y(x.shape());
    block.forward(be, x.view(), {}, {.causal = true}, {}, y.view());
    for (float v : y)
        if (!std::isfinite(v)) return 1;
    if (!(y.shape() == mmalign::Shape{2, 5, 16})) return 1;
    std::printf("consumer ok: %lld parameters, output %s\n",
                static_cast<long long>(mmalign::count_parameters(block)), y.shape().str().c_str());
    return 0;
}
