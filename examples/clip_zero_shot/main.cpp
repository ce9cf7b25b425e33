// Zero-shot image classification with a Hugging Face CLIP folder — the library calls behind
// `mmalign-clip classify`, written out, with xtensor for the probabilities and the ranking.
//
//   clip_zero_shot <model-dir> <image> <label> [<label>...]
//   e.g. clip_zero_shot clip-vit-base-patch32 cat.jpg "cat" "dog" "car"
// prints one line per label, best first: the label and its softmax probability.
#include <mmalign/backend/cpu/backend.hpp>
#include <mmalign/io/clip_image_processor.hpp>
#include <mmalign/io/clip_tokenizer.hpp>
#include <mmalign/io/image.hpp>
#include <mmalign/models/clip_xtensor.hpp>

#include <xtensor/xmanipulation.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xsort.hpp>
#include <xtensor/xview.hpp>

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

    // CLIPModel's forward on zero-copy xtensor views of the inputs; logits_per_image [1, N] comes
    // back as an xt::xtensor.
    auto out = mmalign::forward(be, model, mmalign::as_xtensor<4>(pixels), mmalign::as_xtensor<2>(tokens.input_ids),
                                mmalign::as_xtensor<2>(tokens.attention_mask));

    // Softmax over the labels (in double), then the labels best first.
    const xt::xtensor<double, 1> logits = xt::cast<double>(xt::row(out.logits_per_image, 0));  // [N]
    xt::xtensor<double, 1> p = xt::exp(logits - xt::amax(logits)());                          // [N]
    p /= xt::sum(p)();
    const xt::xtensor<std::size_t, 1> best_first = xt::flip(xt::argsort(p), 0);  // [N]
    for (std::size_t i : best_first) std::printf("%-20s %.4f\n", labels[i].c_str(), p(i));
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "clip_zero_shot: %s\n", e.what());
    return 1;
}
