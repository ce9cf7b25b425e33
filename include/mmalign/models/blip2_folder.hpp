// mmalign/models/blip2_folder.hpp — writing a BLIP-2 model as the folder transformers'
// from_pretrained reads (save_pretrained's layout): config.json with Blip2Config's fields and the
// model_type / architectures keys its AutoConfig and Auto classes look for
// (configuration_blip_2.py: "blip-2", "blip_2_vision_model", "blip_2_qformer"; configuration_opt.py:
// "opt"), model.safetensors under the HF names in the q/v-bias form the model was read in
// (models/blip2_vision_queries.hpp), and the tokenizer and processor files copied from the folders
// the parts came from. Every file is written atomically (io/atomic_file.hpp), so a folder being
// overwritten holds the old file or the new one, never a part.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "mmalign/io/atomic_file.hpp"
#include "mmalign/io/detail/tokenizer_files.hpp"
#include "mmalign/io/hf_config.hpp"
#include "mmalign/io/tensor_map.hpp"
#include "mmalign/models/blip2_config.hpp"

namespace mmalign {

/// The tokenizer and processor files of a transformers folder, those a saved folder carries along.
inline const std::vector<std::string>& hf_asset_files() {
    static const std::vector<std::string> files{"tokenizer.json",          "tokenizer_config.json", "special_tokens_map.json",
                                                "added_tokens.json",       "vocab.txt",             "vocab.json",
                                                "merges.txt",              "preprocessor_config.json",
                                                "processor_config.json",   "generation_config.json"};
    return files;
}

/// config.json of a BLIP-2 folder holding `architecture` (e.g. "Blip2ForConditionalGeneration").
template <Backend B>
nlohmann::json blip2_config_json(const Blip2Config<B>& config, const std::string& architecture) {
    nlohmann::json j = io::to_hf_json(config);
    if (config.image_token_index < 0) j.erase("image_token_index");
    j["model_type"] = "blip-2";
    j["architectures"] = {architecture};
    j["dtype"] = "float32";
    j["vision_config"]["model_type"] = "blip_2_vision_model";
    j["qformer_config"]["model_type"] = "blip_2_qformer";
    j["text_config"]["model_type"] = "opt";
    return j;
}

/// Copies the asset files present in `from` into `dir` (atomically, each whole).
inline void copy_hf_assets(const std::string& from, const std::string& dir, const std::vector<std::string>& files = hf_asset_files()) {
    namespace fs = std::filesystem;
    for (const auto& name : files) {
        const fs::path src = fs::path(from) / name;
        if (!fs::is_regular_file(src)) continue;
        // An empty asset is copied as it is: this copies files, it does not judge them.
        const std::string text = io::detail::read_tokenizer_file(src.string(), "copying assets",
                                                                 io::detail::max_tokenizer_file_bytes, /*allow_empty=*/true);
        const std::string_view parts[] = {text};
        io::write_file_atomic((fs::path(dir) / name).string(), parts, "copying " + name);
    }
}

/// Writes `model` (its visit names are HF's) and its config into `dir`, which must exist.
template <Backend B, class M>
void save_blip2_folder(B& be, M& model, const Blip2Config<B>& config, const std::string& architecture, const std::string& dir) {
    const std::string text = blip2_config_json(config, architecture).dump(2) + "\n";
    const std::string_view parts[] = {text};
    io::save_mapped(be, model, dir + "/model.safetensors", io::hf_tensor_map(model), "", {{"format", "pt"}});
    io::write_file_atomic(dir + "/config.json", parts, "config");
}

}  // namespace mmalign
