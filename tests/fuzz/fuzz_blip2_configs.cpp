// libFuzzer entry point for a BLIP-2 folder's config.json: the bytes are the file, written to a
// scratch folder the reader opens as a user's folder would hold it. Blip2Config::from_folder
// (io/hf_config.hpp's field tables: vision_config, qformer_config, text_config with OPT's fields,
// num_query_tokens, image_token_index) either reads or throws IoError; a config that reads must give
// sizes a model can be built from without absurd allocation. Anything else, or a sanitizer report,
// is a finding. Seeds: tests/fuzz/corpus/fuzz_blip2_configs/ and the config.json files of
// tests/fixtures/blip2.
#include <mmalign/backend/cpu/backend.hpp>
#include <mmalign/models/blip2_config.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

namespace {

const std::string& scratch() {
    static const std::string dir = [] {
        const auto d = std::filesystem::temp_directory_path() / ("mmalign_fuzz_blip2_configs_" + std::to_string(getpid()));
        std::filesystem::create_directories(d);
        return d.string();
    }();
    return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    {
        std::ofstream f(scratch() + "/config.json", std::ios::binary | std::ios::trunc);
        f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    try {
        using Be = mmalign::CpuBackend<float>;
        const auto c = mmalign::Blip2Config<Be>::from_folder(scratch());
        (void)c.language_model_problem();
        // What a model would allocate first: every table and weight is bounded (hf_problem).
        const double limit = 4294967296.0;
        const double words = double(c.text.vocab_size) * double(c.text.embed_dim());
        const double positions = double(c.text.max_positions + 2) * double(c.text.hidden);
        const double ffn = double(c.text.ffn) * double(c.text.hidden);
        const double queries = double(c.num_query_tokens) * double(c.qformer.hidden);
        const double cross = double(c.qformer.encoder_width) * double(c.qformer.hidden);
        const double vision = double(c.vision.tokens()) * double(c.vision.hidden);
        for (double n : {words, positions, ffn, queries, cross, vision})
            if (!(n <= limit)) std::abort();
        if (c.qformer.encoder_width != c.vision.hidden || c.qformer.num_queries != c.num_query_tokens) std::abort();
    } catch (const mmalign::IoError&) {
    }
    return 0;
}
