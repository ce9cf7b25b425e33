// Zero-shot image classification with a Hugging Face CLIP folder — the library calls behind
// `mmalign-clip classify`, written out.
//
//   clip_zero_shot <model-dir> <image> <label> [<label>...]
//   e.g. clip_zero_shot clip-vit-base-patch32 cat.jpg "cat" "dog" "car"
#include <mmalign/backend/cpu/backend.hpp>
#include <mmalign/io/clip_image_processor.hpp>
#include <mmalign/io/clip_tokenizer.hpp>
#include <mmalign/io/image.hpp>
#include <mmalign/models/clip.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) try {
    if (argc < 4) {
        std::fprintf(stderr, "usage: clip_zero_shot <model-dir> <image> <label> [<label>...]\n");
        return 2;
    }
    using Be = mmalign::CpuBackend<float>;
    namespace io = mmalign::io;
    const std::string dir = argv[1];
    Be be;

    // The checkpoint, its tokenizer and its image preprocessing, all from the HF folder.
    auto model = mmalign::Clip<Be>::from_pretrained(be, dir);
    auto tokenizer = io::ClipTokenizer::from_hf_folder(dir);
    auto processor = io::load_clip_image_processor_config(dir + "/preprocessor_config.json");

    // One image → pixel_values [1, 3, 224, 224]; one prompt per label → ids [N, T] + mask.
    mmalign::Tensor<float> pixels = io::preprocess({io::load_image(argv[2])}, processor);
    std::vector<std::string> labels(argv + 3, argv + argc), prompts;
    for (const auto& l : labels) prompts.push_back(std::string("a photo of a ").append(l).append("."));
    auto tokens = tokenizer(prompts);

    // CLIPModel's forward: normalised embeddings and logits_per_image [1, N].
    const auto n = static_cast<mmalign::index_t>(prompts.size());
    auto out = model.forward(be, pixels.view(), {tokens.input_ids.begin(), tokens.input_ids.end()},
                             {tokens.attention_mask.begin(), tokens.attention_mask.end()}, n);

    // Softmax over the labels.
    double max = -INFINITY, sum = 0;
    for (mmalign::index_t i = 0; i < n; ++i) max = std::max(max, double(out.logits_per_image(0, i)));
    std::vector<double> p(prompts.size());
    for (mmalign::index_t i = 0; i < n; ++i) sum += p[std::size_t(i)] = std::exp(out.logits_per_image(0, i) - max);
    for (std::size_t i = 0; i < p.size(); ++i) std::printf("%-20s %.4f\n", labels[i].c_str(), p[i] / sum);
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "clip_zero_shot: %s\n", e.what());
    return 1;
}
