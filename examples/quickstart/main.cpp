#include <mmalign/mmalign.hpp>

#include <cstdio>
#include <vector>

int main() {
    using Be = mmalign::CpuBackend<float>;  // the backend object: threads, gemm library, scratch memory
    Be be;
    // Two CLIP-style layers: pre-norm, quick_gelu, HF weight names ("layers.0.self_attn.q_proj.weight").
    mmalign::TransformerStack<Be, mmalign::PreNorm> encoder(
        {.layers = 2, .block = {.dim = 64, .heads = 4, .mlp_hidden = 256, .activation = mmalign::Activation::quick_gelu}});
    mmalign::init_normal(encoder, /*seed=*/0);

    mmalign::Tensor<float> x({2, 7, 64}, 0.5f), y(x.shape());            // [B, T, D]
    std::vector<std::int32_t> keep = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0};  // HF attention_mask [B, T]
    mmalign::AttentionMask<float> mask{.key_keep = keep.data(), .causal = true};

    decltype(encoder)::Saved saved;  // what backward needs; pass nullptr for inference
    encoder.forward(be, x.view(), {}, mask, {}, y.view(), &saved);

    mmalign::zero_grad(encoder);
    mmalign::Tensor<float> d_y(y.shape(), 1.0f), d_x(x.shape());
    encoder.backward(be, saved, d_y.view(), d_x.view(), {}, mmalign::GradMode::accumulate);

    encoder.visit([](const std::string& name, mmalign::Parameter<float>& p) {
        if (name.ends_with("q_proj.weight")) std::printf("%s %s\n", name.c_str(), p.shape().str().c_str());
    });
    std::printf("%lld parameters, y[0,0,0] = %.4f\n", (long long)mmalign::count_parameters(encoder), y(0, 0, 0));
}
