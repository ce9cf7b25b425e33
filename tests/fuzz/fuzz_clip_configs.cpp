// libFuzzer entry point for the files a CLIP folder is configured by: the first byte picks the
// reader, the rest is the file's content, written to a scratch folder the reader opens as a user's
// folder would hold it:
//   even: config.json → Clip::Config::from_hf (io/hf_config.hpp's field tables: text_config,
//         vision_config, projection_dim), then Config::check_against the tiny fixture checkpoint's
//         header (tests/fixtures/clip/tiny_quick_gelu), as Clip::from_pretrained does before it
//         allocates: a config that passes must describe no more parameters than the checkpoint
//         holds, with sizes a model can be built from;
//   odd:  preprocessor_config.json → load_clip_image_processor_config, alone and against the
//         fixture's image_size (32): every size it gives lies in [1, max_image_processor_extent].
// Each either reads or throws IoError; anything else, or a sanitizer report, is a finding.
// Seeds: tests/fuzz/corpus/fuzz_clip_configs/.
#include <mmalign/backend/cpu/backend.hpp>
#include <mmalign/io/clip_image_processor.hpp>
#include <mmalign/io/safetensors.hpp>
#include <mmalign/models/clip.hpp>

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
        const auto d = std::filesystem::temp_directory_path() / ("mmalign_fuzz_clip_configs_" + std::to_string(getpid()));
        std::filesystem::create_directories(d);
        return d.string();
    }();
    return dir;
}

const mmalign::io::Checkpoint& checkpoint() {
    static const mmalign::io::Checkpoint c =
        mmalign::io::Checkpoint::open(std::string(MMALIGN_FIXTURE_DIR) + "/clip/tiny_quick_gelu");
    return c;
}

bool extent_ok(mmalign::index_t v) { return v >= 1 && v <= mmalign::io::max_image_processor_extent; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const bool config = data[0] % 2 == 0;
    const std::string path = scratch() + (config ? "/config.json" : "/preprocessor_config.json");
    {
        std::ofstream f(path, std::ios::binary | std::ios::trunc);
        f.write(reinterpret_cast<const char*>(data + 1), static_cast<std::streamsize>(size - 1));
    }
    try {
        if (config) {
            using Be = mmalign::CpuBackend<float>;
            const auto cfg = mmalign::Clip<Be>::Config::from_hf(mmalign::io::load_clip_config(path));
            cfg.check_against(checkpoint(), path);
            // Passed: the model would be built now, so it must fit in what the checkpoint holds.
            if (!(cfg.parameter_count() <= mmalign::io::checkpoint_values(checkpoint()))) std::abort();
        } else {
            const auto p = mmalign::io::load_clip_image_processor_config(path);
            if (p.size.shortest_edge > 0 ? !extent_ok(p.size.shortest_edge)
                                         : !(extent_ok(p.size.height) && extent_ok(p.size.width)))
                std::abort();
            if (!extent_ok(p.crop_height) || !extent_ok(p.crop_width)) std::abort();
            const auto fitted = mmalign::io::load_clip_image_processor_config(path, 32);
            if (fitted.do_center_crop && (fitted.crop_height != 32 || fitted.crop_width != 32)) std::abort();
        }
    } catch (const mmalign::IoError&) {
    }
    return 0;
}
