// Answer a question about one image with a Hugging Face BLIP-2 OPT folder, as transformers'
// Blip2ForConditionalGeneration.generate(**processor(image, "Question: {q} Answer:"), num_beams=3,
// length_penalty=0.6, max_new_tokens=10) does.
//   blip2_quickstart <model-dir> <image> <question>
#include <mmalign/backend/cpu/backend.hpp>
#include <mmalign/io/blip2_processor.hpp>
#include <mmalign/io/image.hpp>
#include <mmalign/models/blip2_generation.hpp>

#include <cstdio>
#include <exception>
#include <string>

int main(int argc, char** argv) try {
    using Be = mmalign::CpuBackend<float>;
    namespace io = mmalign::io;
    if (argc != 4) {
        std::fprintf(stderr, "usage: blip2_quickstart <model-dir> <image> <question>\n");
        return 2;
    }
    const std::string dir = argv[1];
    Be be;
    auto model = mmalign::Blip2ForConditionalGeneration<Be>::from_pretrained(be, dir);  // config.json + safetensors
    auto processor = io::Blip2Processor::from_folder(dir);  // OPT's BPE tokenizer, image processing, num_query_tokens
    mmalign::Tensor<float> pixels = io::preprocess({io::load_image(argv[2])}, processor.image_processor());  // [1, 3, S, S]
    io::Blip2Text prompt = processor.encode({io::vqa_prompt(argv[3])});  // <image> x Q, </s>, "Question: ... Answer:"

    mmalign::generation::GenerationConfig options;  // transformers' names and defaults
    options.num_beams = 3;
    options.length_penalty = 0.6;
    options.max_new_tokens = 10;
    auto out = model.generate(be, pixels.view(), {prompt.ids, prompt.attention_mask, prompt.batch}, options);
    std::printf("%s\n", processor.tokenizer().decode(out.new_tokens(0), true).c_str());  // the answer: after the prompt
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "blip2_quickstart: %s\n", e.what());
    return 1;
}
