// libFuzzer entry point for the files a BLIP folder is configured by: the first byte picks the
// reader, the rest is the file's content, written to a scratch file the reader opens as a user's
// folder would hold it:
//   0: config.json → BlipConfig (io/hf_config.hpp's field tables: text_config, vision_config),
//      and a config that reads must give sizes a model can be built from without absurd allocation;
//   1: preprocessor_config.json or processor_config.json → load_blip_image_processor_config;
//   2: preprocessor_config.json → load_clip_image_processor_config (the shared reader's CLIP form).
// Each either reads or throws IoError; anything else, or a sanitizer report, is a finding.
// Seeds: tests/fuzz/corpus/fuzz_blip_configs/ and the fixture folders' files (tests/fixtures/blip).
#include <mmalign/backend/cpu/backend.hpp>
#include <mmalign/io/blip_image_processor.hpp>
#include <mmalign/io/clip_image_processor.hpp>
#include <mmalign/models/blip_config.hpp>

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
        const auto d = std::filesystem::temp_directory_path() / ("mmalign_fuzz_blip_configs_" + std::to_string(getpid()));
        std::filesystem::create_directories(d);
        return d.string();
    }();
    return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const int which = data[0] % 3;
    const std::string name = which == 0 ? "config.json" : "preprocessor_config.json";
    const std::string path = scratch() + "/" + name;
    {
        std::ofstream f(path, std::ios::binary | std::ios::trunc);
        f.write(reinterpret_cast<const char*>(data + 1), static_cast<std::streamsize>(size - 1));
    }
    try {
        if (which == 0) {
            using Be = mmalign::CpuBackend<float>;
            const auto c = mmalign::BlipConfig<Be>::from_folder(scratch());
            // What a model would allocate first: every table and weight is bounded (hf_problem).
            const double text = double(c.text.bert.vocab_size) * double(c.text.bert.hidden);
            const double vision = double(c.vision.tokens()) * double(c.vision.hidden);
            if (!(text <= 4294967296.0) || !(vision <= 4294967296.0)) std::abort();
        } else if (which == 1) {
            const auto c = mmalign::io::load_blip_image_processor_config(path);
            if (c.do_resize && c.size.shortest_edge <= 0 && (c.size.height < 1 || c.size.width < 1)) std::abort();
        } else {
            (void)mmalign::io::load_clip_image_processor_config(path);
        }
    } catch (const mmalign::IoError&) {
    }
    return 0;
}
