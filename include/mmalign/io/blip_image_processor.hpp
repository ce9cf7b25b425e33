// mmalign/io/blip_image_processor.hpp — BLIP's image preprocessing on the PIL path: transformers
// 5 `BlipImageProcessorPil` (image_processing_pil_blip.py), transformers 4 `BlipImageProcessor`
// (image_processing_blip.py), bit for bit given Pillow's decoded pixels.
//
// Per image: convert to RGB (alpha onto white, as transformers' convert_to_rgb) → Pillow bicubic
// resize straight to height × width (384 × 384 by default; the aspect ratio is not kept) → no crop
// → float32(float64(x) / 255) → (x − mean) / std with OpenAI CLIP's mean and std → CHW. That is
// the pipeline of io/clip_image_processor.hpp (`preprocess`, transformers' shared
// PilBackend._preprocess) with BLIP's class defaults; in a BLIP config an int `size` is a square
// (default_to_square=True), where CLIP reads it as the shortest edge.
//
// Two file forms hold the same fields: preprocessor_config.json (the Hub's BLIP folders and
// transformers 4; BlipImageProcessor.save_pretrained still writes it) with the fields at the top
// level, and processor_config.json (BlipProcessor.save_pretrained in transformers 5) with them in
// an "image_processor" object. load_blip_image_processor_config reads either; errors are IoError
// naming the file and the field.
//
// transformers 5's AutoImageProcessor/BlipProcessor load the torchvision `BlipImageProcessor`
// instead, whose pixels differ from these: docs/blip.md measures by how much.
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "mmalign/core/error.hpp"
#include "mmalign/io/clip_image_processor.hpp"
#include "mmalign/io/json_fields.hpp"

namespace mmalign::io {

/// BlipImageProcessorPil's defaults: 384 × 384 bicubic, no crop (and no default crop size: a
/// config that turns do_center_crop on must give crop_size, as transformers requires), rescale
/// 1/255, CLIP mean/std, convert to RGB.
struct BlipImageProcessorConfig : ImageProcessorConfig {
    BlipImageProcessorConfig() {
        size = Size{0, 384, 384};
        do_center_crop = false;
        crop_height = crop_width = 0;
    }
};

/// Reads a BLIP preprocessor_config.json (fields at the top level) or a transformers 5
/// processor_config.json (fields under "image_processor"). Absent or null fields keep
/// BlipImageProcessorPil's defaults; unknown keys are ignored as transformers ignores them.
inline BlipImageProcessorConfig load_blip_image_processor_config(const std::string& path) {
    const nlohmann::json j = read_json_file(path);
    if (!j.is_object())
        throw IoError("preprocessor config '" + path + "': expected a JSON object, found " + j.type_name());
    BlipImageProcessorConfig c;
    const auto nested = j.find("image_processor");
    const bool is_processor_file = nested != j.end();
    if (is_processor_file && !nested->is_object())
        detail::config_fail(path, "image_processor", "expected a JSON object, found " + detail::json_kind(*nested));
    const std::string prefix = is_processor_file ? "image_processor." : "";
    detail::read_image_processor_fields(is_processor_file ? *nested : j, path, prefix, false, c);
    if (c.do_center_crop && (c.crop_height < 1 || c.crop_width < 1))
        detail::config_fail(path, prefix + "crop_size",
                            "do_center_crop is true but crop_size is missing (BLIP's processor has no default)");
    return c;
}

/// load_blip_image_processor_config for a model whose vision tower takes image_size² pixels: also
/// refuses a processor whose images could never fit it (check_image_processor_output), naming the
/// processor file and its field.
inline BlipImageProcessorConfig load_blip_image_processor_config(const std::string& path, index_t image_size) {
    BlipImageProcessorConfig c = load_blip_image_processor_config(path);
    const nlohmann::json j = read_json_file(path);  // small: the nesting decides the field's name
    check_image_processor_output(c, image_size, path, j.contains("image_processor") ? "image_processor." : "");
    return c;
}

/// The image processor file of a BLIP folder: preprocessor_config.json when present (Hub folders,
/// transformers 4), else transformers 5's processor_config.json. IoError naming the folder when
/// neither exists. A preprocessor_config.json that is there but not a regular file (a directory,
/// a FIFO) is returned, so that reading it names what it is instead of passing it over.
inline std::string blip_image_processor_config_path(const std::string& dir) {
    namespace fs = std::filesystem;
    for (const char* name : {"preprocessor_config.json", "processor_config.json"}) {
        const fs::path p = fs::path(dir) / name;
        std::error_code ec;
        if (fs::exists(fs::symlink_status(p, ec))) return p.string();
    }
    throw IoError("BLIP folder '" + dir + "': no preprocessor_config.json or processor_config.json");
}

}  // namespace mmalign::io
