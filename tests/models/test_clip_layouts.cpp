// The four OpenAI CLIP layouts (ViT-B/32, B/16, L/14, L/14@336) build from their config.json with
// exactly the tensors — names and shapes — of transformers' CLIPModel (tools/make_layout_fixtures.py).
// Full-size models allocate up to 3.4 GB (values and gradients): label "slow".
#include <doctest/doctest.h>

#include <map>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/io/json_fields.hpp"
#include "mmalign/models/clip.hpp"

using namespace mmalign;
using Be = CpuBackend<float>;

TEST_CASE("ViT-B/32, ViT-B/16, ViT-L/14 and ViT-L/14@336 configs give HF's tensors and shapes") {
    for (const char* name : {"vit-base-patch32", "vit-base-patch16", "vit-large-patch14", "vit-large-patch14-336"}) {
        CAPTURE(name);
        const std::string dir = std::string(MMALIGN_FIXTURE_DIR) + "/clip_layouts/" + name;
        const nlohmann::json keys = io::read_json_file(dir + "/keys.json");
        Clip<Be> model(Clip<Be>::Config::from_hf(io::load_clip_config(dir + "/config.json")));
        std::size_t seen = 0;
        model.visit([&](const std::string& key, Parameter<float>& p) {
            ++seen;
            REQUIRE_MESSAGE(keys.contains(key), key);
            std::vector<index_t> want = keys[key].get<std::vector<index_t>>(), got;
            for (int i = 0; i < p.shape().rank(); ++i) got.push_back(p.shape()[i]);
            CHECK_MESSAGE(got == want, key);
        });
        CHECK(seen == keys.size());
    }
}
