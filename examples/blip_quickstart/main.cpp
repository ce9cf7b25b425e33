// Caption one image with a Hugging Face BLIP captioning folder, as transformers'
// BlipForConditionalGeneration.generate(pixel_values, num_beams=3) does.
//   blip_quickstart <model-dir> <image>
#include <mmalign/backend/cpu/backend.hpp>
#include <mmalign/io/blip_image_processor.hpp>
#include <mmalign/io/image.hpp>
#include <mmalign/io/wordpiece_tokenizer.hpp>
#include <mmalign/models/blip_captioning.hpp>

#include <cstdio>
#include <exception>
#include <string>

int main(int argc, char** argv) try {
    using Be = mmalign::CpuBackend<float>;
    namespace io = mmalign::io;
    if (argc != 3) {
        std::fprintf(stderr, "usage: blip_quickstart <model-dir> <image>\n");
        return 2;
    }
    const std::string dir = argv[1];
    Be be;
    auto model = mmalign::BlipForConditionalGeneration<Be>::from_pretrained(be, dir);  // config.json + safetensors
    auto tokenizer = io::WordPieceTokenizer::from_hf_folder(dir);                       // tokenizer.json or vocab.txt
    auto processor = io::load_blip_image_processor_config(io::blip_image_processor_config_path(dir));
    mmalign::Tensor<float> pixels = io::preprocess({io::load_image(argv[2])}, processor);  // [1, 3, S, S]

    mmalign::generation::GenerationConfig options;  // transformers' names and defaults
    options.num_beams = 3;
    auto out = model.generate(be, pixels.view(), {}, options);        // ids [1, length], starting with [DEC]
    std::printf("%s\n", tokenizer.decode(out.row(0), true).c_str());  // decode(ids, skip_special_tokens=True)
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "blip_quickstart: %s\n", e.what());
    return 1;
}
