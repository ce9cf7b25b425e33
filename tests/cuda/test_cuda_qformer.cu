// The BLIP-2 Q-Former (bridges/qformer.hpp) through CudaBackend<float> against transformers'
// Blip2QFormerModel: outputs and autograd gradients of every pass of tests/fixtures/qformer, with
// the plain and the fused attention (the multimodal-causal pass reads the mask's shared additive
// pattern from device memory).
#include "cuda_support.hpp"
#include "support/qformer_fixtures.hpp"

using namespace mmalign;
using namespace mmalign::test;
using qformer::Case;
using qformer::Everything;
using qformer::read;
using qformer::relative_diff;

TEST_CASE("QFormer on CUDA equals transformers' outputs (1e-5) and autograd gradients (1e-4) on every pass, plain and fused attention") {
    Gpu be;
    for (const bool fused : {false, true}) {
        CAPTURE(fused);
        be.set_fused_attention(fused);
        for (const auto& name : qformer::cases) {
            const Case c(name);
            QFormer<Gpu> model = c.model<Gpu>(&be);
            Everything<Gpu> all{model};
            const DeviceTensor<float> image = upload(be, c.image);
            for (const auto& pass : c.json.at("passes")) {
                const std::string p = pass.at("name");
                CAPTURE(name);
                CAPTURE(p);
                const Tensor<float> want = read<float>(c.expected, p + ".output");
                const DeviceTensor<float> d_out = upload(be, read<float>(c.expected, p + ".d_output"));
                DeviceTensor<float> out = poisoned(be, want.shape()), d_image(c.image.shape());
                be.fill(d_image.view(), 0.0f);
                all.visit([](const std::string&, auto& prm) { prm.grad = DeviceTensor<float>(); });
                QFormer<Gpu>::Saved s;
                model.forward(be, c.input<Gpu>(pass, image.view()), out.view(), &s);
                CHECK(relative_diff(download(be, out.view()).view(), want.view()) < 1e-5);
                const bool with_image = pass.at("image").get<bool>();
                model.backward(be, s, d_out.view(), with_image ? d_image.view() : TensorView<float>{}, GradMode::accumulate);
                if (with_image)
                    CHECK(relative_diff(download(be, d_image.view()).view(), read<float>(c.expected, p + ".grad.image").view()) < 1e-4);
                all.visit([&](const std::string& key, auto& prm) {
                    const std::string k = p + ".grad." + key;
                    if (!c.expected.contains(k) || key.ends_with("key.bias")) return;  // key biases: true gradient 0
                    REQUIRE(prm.has_grad());
                    CHECK_MESSAGE(relative_diff(download(be, prm.grad.view()).view(), read<float>(c.expected, k).view()) < 1e-4, key);
                });
            }
        }
    }
}
