// Text-to-image retrieval: CLIP embeds images and captions, xtensor ranks the images per caption.
//   xtensor_retrieval <model-dir> <image>... -- <caption>...
#include <mmalign/backend/cpu/backend.hpp>
#include <mmalign/io/clip_image_processor.hpp>
#include <mmalign/io/clip_tokenizer.hpp>
#include <mmalign/io/image.hpp>
#include <mmalign/models/clip_xtensor.hpp>

#include <xtensor/xmath.hpp>
#include <xtensor/xsort.hpp>
#include <xtensor/xview.hpp>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) try {
    using Be = mmalign::CpuBackend<float>;
    namespace io = mmalign::io;
    const std::vector<std::string> args(argv + 1, argv + argc);
    const auto sep = std::find(args.begin(), args.end(), "--");
    if (sep == args.end() || sep - args.begin() < 2 || sep + 1 == args.end()) {
        std::fprintf(stderr, "usage: xtensor_retrieval <model-dir> <image>... -- <caption>...\n");
        return 2;
    }
    const std::string dir = args[0];
    const std::vector<std::string> paths(args.begin() + 1, sep), captions(sep + 1, args.end());

    Be be;
    auto model = mmalign::Clip<Be>::from_pretrained(be, dir);
    auto tokenizer = io::ClipTokenizer::from_hf_folder(dir);
    auto processor = io::load_clip_image_processor_config(dir + "/preprocessor_config.json");
    std::vector<io::Image> images;
    for (const auto& p : paths) images.push_back(io::load_image(p));
    mmalign::Tensor<float> pixels = io::preprocess(images, processor);  // [N, 3, S, S]
    auto tokens = tokenizer(captions);                                   // ids, mask [Q, T]

    // Features come back as xt::xtensor; the library's tensors go in as zero-copy xtensor views.
    xt::xtensor<float, 2> img = mmalign::image_features(be, model, mmalign::as_xtensor<4>(pixels));  // [N, E]
    xt::xtensor<float, 2> txt = mmalign::text_features(be, model, mmalign::as_xtensor<2>(tokens.input_ids),
                                                       mmalign::as_xtensor<2>(tokens.attention_mask));  // [Q, E]

    // Unit rows (norms evaluated before they broadcast), then cosine similarity [Q, N].
    img /= xt::eval(xt::sqrt(xt::sum(img * img, {1}, xt::keep_dims)));
    txt /= xt::eval(xt::sqrt(xt::sum(txt * txt, {1}, xt::keep_dims)));
    using xt::all, xt::newaxis;
    const xt::xtensor<float, 2> sim =
        xt::sum(xt::view(txt, all(), newaxis(), all()) * xt::view(img, newaxis(), all(), all()), {2});

    // Each caption's best three images: argsort of the negated row.
    for (std::size_t q = 0; q < captions.size(); ++q) {
        const xt::xtensor<float, 1> neg = -xt::view(sim, q, xt::all());  // [N]
        const auto order = xt::argsort(neg);
        std::printf("%s\n", captions[q].c_str());
        for (std::size_t r = 0; r < std::min<std::size_t>(3, paths.size()); ++r)
            std::printf("  %zu. %s  cos %.4f\n", r + 1, paths[order(r)].c_str(), sim(q, order(r)));
    }
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "xtensor_retrieval: %s\n", e.what());
    return 1;
}
