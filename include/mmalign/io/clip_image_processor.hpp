// mmalign/io/clip_image_processor.hpp — Hugging Face's CLIP image preprocessing on the PIL path
// (transformers 5.24 `CLIPImageProcessorPil`, v4 `CLIPImageProcessor`;
// image_processing_pil_clip.py, image_processing_clip.py; resizing in io/pillow_resize.hpp),
// bit for bit given Pillow's decoded pixels.
//
// Per image, in HF's order: convert to RGB (to_rgb_on_white: alpha composited onto white) →
// resize with Pillow on uint8 (shortest edge to `size`, long edge int(size·long/short), or an
// exact height × width) → center crop on uint8 (offsets floor((H − h)/2); an axis shorter than
// the crop is zero-padded, the image placed at ceil((h − H)/2)) → rescale float32(float64(x) ·
// rescale_factor) → normalize in float32 as (x − mean_f32) / std_f32 → CHW. The batch is
// pixel_values [N, 3, H, W]. That pipeline is transformers' PilBackend._preprocess
// (image_processing_backends.py), shared by every PIL-path processor; the classes differ only in
// their defaults. ImageProcessorConfig holds the fields of a preprocessor_config.json, its member
// defaults are CLIPImageProcessorPil's (ClipImageProcessorConfig); load_clip_image_processor_config
// reads one and throws IoError naming the file and the field. BLIP's defaults and reader are in
// io/blip_image_processor.hpp.
#pragma once

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mmalign/core/error.hpp"
#include "mmalign/io/json_fields.hpp"
#include "mmalign/core/tensor.hpp"
#include "mmalign/io/image.hpp"
#include "mmalign/io/json_fields.hpp"
#include "mmalign/io/pillow_resize.hpp"

namespace mmalign::io {

/// The fields of a HF PIL-path image processor; absent or null fields keep these defaults,
/// which are CLIPImageProcessorPil's.
struct ImageProcessorConfig {
    /// HF `size`: {"shortest_edge": s} (CLIP's legacy int form) or {"height": h, "width": w}
    /// (also a [h, w] list). Exactly one form is active: shortest_edge > 0, or height and width.
    struct Size {
        index_t shortest_edge = 224;
        index_t height = 0, width = 0;
    };

    bool do_resize = true;
    Size size;
    Resample resample = Resample::bicubic;  // HF `resample`: 0 nearest, 2 bilinear, 3 bicubic
    bool do_center_crop = true;
    index_t crop_height = 224, crop_width = 224;
    bool do_rescale = true;
    double rescale_factor = 1.0 / 255.0;
    bool do_normalize = true;
    std::array<double, 3> image_mean{0.48145466, 0.4578275, 0.40821073};  // OPENAI_CLIP_MEAN
    std::array<double, 3> image_std{0.26862954, 0.26130258, 0.27577711};  // OPENAI_CLIP_STD
    bool do_convert_rgb = true;
    /// Not a HF field: which Pillow's resize to reproduce (pillow_resize.hpp).
    PillowVersion pillow = default_pillow_version;
};

/// The largest size or crop_size a preprocessor_config.json may give, per side (pixels). The
/// Hub's processors use 224–1024; a CLIP or BLIP vision tower's position table fixes its input to
/// image_size anyway (check_image_processor_output). The bound keeps a hostile file from making
/// each image a resize of gigabytes: 8192² RGB is 192 MiB of uint8 and 768 MiB of float pixels.
inline constexpr index_t max_image_processor_extent = 8192;

/// CLIP's processor: the defaults of ImageProcessorConfig are CLIPImageProcessorPil's.
using ClipImageProcessorConfig = ImageProcessorConfig;

namespace detail {

[[noreturn]] inline void config_fail(const std::string& path, const std::string& field, const std::string& what) {
    throw IoError("preprocessor config '" + path + "': field '" + field + "': " + what);
}

inline std::string json_kind(const nlohmann::json& v) { return v.type_name(); }

/// `prefix` names the object the key sits in ("image_processor." in a processor_config.json).
inline bool config_bool(const nlohmann::json& j, const std::string& path, const char* key, bool dflt,
                        const std::string& prefix = "") {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return dflt;
    if (!it->is_boolean()) config_fail(path, prefix + key, "expected a boolean, found " + json_kind(*it));
    return it->get<bool>();
}

/// A size of the processor (size, crop_size): an integer in [1, max_image_processor_extent]. The
/// range is checked on the JSON number itself, so 2^64 − 1 is "out of range", not a wrapped −1.
inline index_t config_extent(const nlohmann::json& v, const std::string& path, const std::string& field) {
    if (!v.is_number_integer()) config_fail(path, field, "expected an integer, found " + json_kind(v));
    const bool negative = !v.is_number_unsigned() && v.get<std::int64_t>() < 1;
    if (negative || (v.is_number_unsigned() && v.get<std::uint64_t>() < 1))
        config_fail(path, field, "must be positive, found " + v.dump());
    if (v.is_number_unsigned() ? v.get<std::uint64_t>() > std::uint64_t(max_image_processor_extent)
                               : v.get<std::int64_t>() > max_image_processor_extent)
        config_fail(path, field,
                    v.dump() + " is out of range (at most " + std::to_string(max_image_processor_extent) +
                        " pixels: larger than any model's input, and the resized image would take gigabytes)");
    return v.get<index_t>();
}

inline double config_number(const nlohmann::json& v, const std::string& path, const std::string& field) {
    if (!v.is_number()) config_fail(path, field, "expected a number, found " + json_kind(v));
    return v.get<double>();
}

// HF get_size_dict: an int is {"shortest_edge"} for CLIP's `size` (default_to_square=False) and
// a square for BLIP's `size` and every `crop_size`; a list is [height, width]; a dict must have
// one of HF's key sets ({shortest_edge} only where PilBackend.resize reads it: `size`).
inline void config_size(const nlohmann::json& v, const std::string& path, const std::string& field,
                        bool int_is_shortest_edge, bool shortest_edge_allowed, index_t& shortest, index_t& height,
                        index_t& width) {
    shortest = height = width = 0;
    if (v.is_number_integer()) {
        const index_t s = config_extent(v, path, field);
        if (int_is_shortest_edge)
            shortest = s;
        else
            height = width = s;
        return;
    }
    if (v.is_array()) {
        if (v.size() != 2)
            config_fail(path, field, "expected [height, width], found " + std::to_string(v.size()) + " elements");
        height = config_extent(v[0], path, field + "[0]");
        width = config_extent(v[1], path, field + "[1]");
        return;
    }
    if (!v.is_object())
        config_fail(path, field, "expected an integer, a [height, width] list or an object, found " + json_kind(v));
    std::string keys;
    for (auto it = v.begin(); it != v.end(); ++it) keys += (keys.empty() ? "" : ", ") + it.key();
    if (v.size() == 1 && v.contains("shortest_edge") && shortest_edge_allowed) {
        shortest = config_extent(v["shortest_edge"], path, field + ".shortest_edge");
        return;
    }
    if (v.size() == 2 && v.contains("height") && v.contains("width")) {
        height = config_extent(v["height"], path, field + ".height");
        width = config_extent(v["width"], path, field + ".width");
        return;
    }
    config_fail(path, field,
                std::string("supported forms are ") + (shortest_edge_allowed ? "{shortest_edge} or " : "") +
                    "{height, width}; found keys {" + keys + "}");
}

inline std::array<double, 3> config_triple(const nlohmann::json& v, const std::string& path, const char* field) {
    if (v.is_number()) {
        const double x = v.get<double>();
        return {x, x, x};  // HF normalize: a scalar applies to every channel
    }
    if (!v.is_array() || v.size() != 3)
        config_fail(path, field,
                    "expected a number or a list of 3 numbers, found " +
                        (v.is_array() ? std::to_string(v.size()) + " elements" : json_kind(v)));
    return {config_number(v[0], path, std::string(field) + "[0]"),
            config_number(v[1], path, std::string(field) + "[1]"),
            config_number(v[2], path, std::string(field) + "[2]")};
}

/// Reads the fields of the image processor object `j` onto `c` (which holds the class's
/// defaults). Unknown keys (image_processor_type, processor_class, …) are ignored as HF ignores
/// them; fields that select behaviour this header does not implement (do_pad, longest_edge sizes,
/// resample filters other than 0/2/3) throw. `int_size_is_shortest_edge` is the class's
/// default_to_square negated; `prefix` names the object in messages.
inline void read_image_processor_fields(const nlohmann::json& j, const std::string& path, const std::string& prefix,
                                        bool int_size_is_shortest_edge, ImageProcessorConfig& c) {
    if (!j.is_object())
        throw IoError("preprocessor config '" + path + "': expected a JSON object, found " + j.type_name());
    c.do_resize = config_bool(j, path, "do_resize", c.do_resize, prefix);
    if (auto it = j.find("size"); it != j.end() && !it->is_null())
        config_size(*it, path, prefix + "size", int_size_is_shortest_edge, true, c.size.shortest_edge, c.size.height,
                    c.size.width);
    if (auto it = j.find("resample"); it != j.end() && !it->is_null()) {
        if (!it->is_number_integer())
            config_fail(path, prefix + "resample", "expected an integer, found " + json_kind(*it));
        // Compared as the JSON number (2^64 − 1 must not wrap to −1 and read as a filter).
        const std::int64_t r = it->is_number_unsigned() && it->get<std::uint64_t>() > 5 ? 6 : it->get<std::int64_t>();
        if (r == 0)
            c.resample = Resample::nearest;
        else if (r == 2)
            c.resample = Resample::bilinear;
        else if (r == 3)
            c.resample = Resample::bicubic;
        else {
            static const char* names[] = {"NEAREST", "LANCZOS", "BILINEAR", "BICUBIC", "BOX", "HAMMING"};
            config_fail(path, prefix + "resample",
                        it->dump() + (r >= 0 && r < 6 ? std::string(" (") + names[r] + ")" : std::string()) +
                            " is not supported; 0 (NEAREST), 2 (BILINEAR) and 3 (BICUBIC) are");
        }
    }
    c.do_center_crop = config_bool(j, path, "do_center_crop", c.do_center_crop, prefix);
    if (auto it = j.find("crop_size"); it != j.end() && !it->is_null()) {
        index_t unused = 0;
        config_size(*it, path, prefix + "crop_size", false, false, unused, c.crop_height, c.crop_width);
    }
    c.do_rescale = config_bool(j, path, "do_rescale", c.do_rescale, prefix);
    if (auto it = j.find("rescale_factor"); it != j.end() && !it->is_null())
        c.rescale_factor = config_number(*it, path, prefix + "rescale_factor");
    c.do_normalize = config_bool(j, path, "do_normalize", c.do_normalize, prefix);
    if (auto it = j.find("image_mean"); it != j.end() && !it->is_null())
        c.image_mean = config_triple(*it, path, (prefix + "image_mean").c_str());
    if (auto it = j.find("image_std"); it != j.end() && !it->is_null())
        c.image_std = config_triple(*it, path, (prefix + "image_std").c_str());
    c.do_convert_rgb = config_bool(j, path, "do_convert_rgb", c.do_convert_rgb, prefix);
    if (config_bool(j, path, "do_pad", false, prefix)) config_fail(path, prefix + "do_pad", "padding is not supported");
}

}  // namespace detail

/// Reads a HF preprocessor_config.json of a CLIP model (CLIPImageProcessorPil's defaults for
/// absent or null fields; an int `size` is the shortest edge).
inline ClipImageProcessorConfig load_clip_image_processor_config(const std::string& path) {
    const nlohmann::json j = read_json_file(path);
    if (!j.is_object())
        throw IoError("preprocessor config '" + path + "': expected a JSON object, found " + j.type_name());
    ClipImageProcessorConfig c;
    detail::read_image_processor_fields(j, path, "", true, c);
    return c;
}

/// The square side `image_size` a vision tower takes (vision_config.image_size in config.json:
/// its position table has one row per patch of that grid) against the images `cfg` produces:
/// IoError naming the processor file and the field when they can never match, so that the
/// mismatch is blamed on preprocessor_config.json rather than found later as a tensor shape.
/// Pipelines whose output follows the input image (no resize to a fixed size, no crop) pass.
inline void check_image_processor_output(const ImageProcessorConfig& cfg, index_t image_size, const std::string& path,
                                         const std::string& prefix = "") {
    const std::string model = " does not match the model's image_size " + std::to_string(image_size) +
                              " (vision_config.image_size in config.json)";
    auto hw = [](index_t h, index_t w) { return std::to_string(h) + "x" + std::to_string(w); };
    if (cfg.do_center_crop) {
        if (cfg.crop_height != image_size || cfg.crop_width != image_size)
            detail::config_fail(path, prefix + "crop_size", "crops to " + hw(cfg.crop_height, cfg.crop_width) + ", which" + model);
    } else if (cfg.do_resize) {
        if (cfg.size.shortest_edge > 0 && cfg.size.shortest_edge != image_size)
            detail::config_fail(path, prefix + "size",
                                "shortest_edge " + std::to_string(cfg.size.shortest_edge) + " without a center crop" + model);
        if (cfg.size.shortest_edge <= 0 && (cfg.size.height != image_size || cfg.size.width != image_size))
            detail::config_fail(path, prefix + "size", "resizes to " + hw(cfg.size.height, cfg.size.width) + ", which" + model);
    }
}

/// load_clip_image_processor_config for a model whose vision tower takes image_size² pixels:
/// also refuses a processor whose images could never fit it (check_image_processor_output).
inline ClipImageProcessorConfig load_clip_image_processor_config(const std::string& path, index_t image_size) {
    ClipImageProcessorConfig c = load_clip_image_processor_config(path);
    check_image_processor_output(c, image_size, path);
    return c;
}

/// HF get_resize_output_image_size(default_to_square=False): the short side becomes `size`, the
/// long side int(size · long / short). Python's true division of exact integers is correctly
/// rounded, so for size · long < 2^53 its truncation equals the integer division used here.
/// Returns {height, width}.
inline std::pair<index_t, index_t> shortest_edge_size(index_t height, index_t width, index_t size) {
    if (width <= height) return {size * height / width, size};
    return {size, size * width / height};
}

/// HF center_crop (image_transforms.py) on uint8 HWC: per axis, offset floor((H − h)/2) when the
/// image is at least the crop, otherwise zeros with the image at ceil((h − H)/2).
inline Image center_crop(const Image& img, index_t crop_height, index_t crop_width) {
    if (crop_height < 1 || crop_width < 1)
        throw ArgumentError("center_crop: crop size must be positive, found " + std::to_string(crop_height) + "x" +
                            std::to_string(crop_width));
    Image out(crop_height, crop_width, img.channels, 0);
    // source index = destination index + shift on each axis (negative shift: padding)
    const index_t sy =
        img.height >= crop_height ? (img.height - crop_height) / 2 : -((crop_height - img.height + 1) / 2);
    const index_t sx = img.width >= crop_width ? (img.width - crop_width) / 2 : -((crop_width - img.width + 1) / 2);
    const index_t ch = img.channels;
    for (index_t y = 0; y < crop_height; ++y) {
        const index_t yi = y + sy;
        if (yi < 0 || yi >= img.height) continue;
        const index_t x0 = std::max<index_t>(0, -sx), x1 = std::min<index_t>(crop_width, img.width - sx);
        if (x1 > x0)
            std::memcpy(out.row(y) + x0 * ch, img.row(yi) + (x0 + sx) * ch, static_cast<std::size_t>((x1 - x0) * ch));
    }
    return out;
}

/// The uint8 HWC RGB image that HF hands to rescale/normalize: RGB conversion, resize, crop.
inline Image preprocess_image(const Image& img, const ImageProcessorConfig& cfg) {
    if (img.pixels.size() != static_cast<std::size_t>(img.height * img.width * img.channels) || img.height < 1 ||
        img.width < 1)
        throw ArgumentError("preprocess: image of " + std::to_string(img.height) + "x" + std::to_string(img.width) +
                            "x" + std::to_string(img.channels) + " holds " + std::to_string(img.pixels.size()) +
                            " bytes");
    Image x;
    if (cfg.do_convert_rgb)
        x = to_rgb_on_white(img);
    else if (img.channels == 3)
        x = img;
    else
        throw ArgumentError("preprocess: do_convert_rgb is false but the image has " + std::to_string(img.channels) +
                            " channels; pixel_values need 3");
    if (cfg.do_resize) {
        std::pair<index_t, index_t> hw;
        if (cfg.size.shortest_edge > 0)
            hw = shortest_edge_size(x.height, x.width, cfg.size.shortest_edge);
        else if (cfg.size.height > 0 && cfg.size.width > 0)
            hw = {cfg.size.height, cfg.size.width};
        else
            throw ArgumentError("preprocess: size needs shortest_edge or height and width");
        // A shortest edge of a few thousand pixels on a very long image would resize it to
        // gigabytes: refused beyond Pillow's decompression-bomb limit (Image.MAX_IMAGE_PIXELS).
        constexpr double max_pixels = 178956970.0;
        if (double(hw.first) * double(hw.second) > max_pixels)
            throw ArgumentError("preprocess: resizing a " + std::to_string(x.height) + "x" + std::to_string(x.width) +
                                " image to " + std::to_string(hw.first) + "x" + std::to_string(hw.second) +
                                " would exceed 178956970 pixels (Pillow's MAX_IMAGE_PIXELS)");
        x = pillow_resize(x, hw.first, hw.second, cfg.resample, cfg.pillow);
    }
    if (cfg.do_center_crop) x = center_crop(x, cfg.crop_height, cfg.crop_width);
    return x;
}

/// pixel_values [N, 3, H, W] as HF's PIL-path processor returns them (return_tensors="np").
inline Tensor<float> preprocess(const std::vector<Image>& images, const ImageProcessorConfig& cfg) {
    if (images.empty()) throw ArgumentError("preprocess: no images");
    std::array<float, 3> mean{}, stdev{};
    for (int c = 0; c < 3; ++c) {
        mean[static_cast<std::size_t>(c)] = static_cast<float>(cfg.image_mean[static_cast<std::size_t>(c)]);
        stdev[static_cast<std::size_t>(c)] = static_cast<float>(cfg.image_std[static_cast<std::size_t>(c)]);
    }
    // float32(x) per uint8 value and channel, as HF computes it element by element.
    std::array<std::array<float, 256>, 3> lut{};
    for (int c = 0; c < 3; ++c)
        for (int u = 0; u < 256; ++u) {
            float v = cfg.do_rescale ? static_cast<float>(static_cast<double>(u) * cfg.rescale_factor)
                                     : static_cast<float>(u);
            if (cfg.do_normalize) v = (v - mean[static_cast<std::size_t>(c)]) / stdev[static_cast<std::size_t>(c)];
            lut[static_cast<std::size_t>(c)][static_cast<std::size_t>(u)] = v;
        }
    Tensor<float> out;
    for (std::size_t n = 0; n < images.size(); ++n) {
        const Image x = preprocess_image(images[n], cfg);
        if (n == 0)
            out.resize({static_cast<index_t>(images.size()), 3, x.height, x.width});
        else if (x.height != out.dim(2) || x.width != out.dim(3))
            throw ShapeError("preprocess: image " + std::to_string(n) + " becomes " + std::to_string(x.height) + "x" +
                             std::to_string(x.width) + ", image 0 became " + std::to_string(out.dim(2)) + "x" +
                             std::to_string(out.dim(3)) + " (enable do_center_crop to batch different sizes)");
        const index_t plane = x.height * x.width;
        float* dst = out.data() + static_cast<index_t>(n) * 3 * plane;
        for (index_t i = 0; i < plane; ++i)
            for (index_t c = 0; c < 3; ++c)
                dst[c * plane + i] = lut[static_cast<std::size_t>(c)][x.pixels[static_cast<std::size_t>(i * 3 + c)]];
    }
    return out;
}

}  // namespace mmalign::io
