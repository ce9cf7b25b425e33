// examples/common/model_folder.hpp — which model class a Hugging Face folder holds (config.json's
// `architectures`, as transformers' Auto classes read it), and the one-line error when a command
// needs another.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <mmalign/core/error.hpp>
#include <mmalign/io/json_fields.hpp>

namespace mmalign::cli {

/// The model class config.json names (`architectures`, a list of one name).
inline std::string architecture(const std::string& dir) {
    const std::string path = dir + "/config.json";
    const nlohmann::json j = io::read_json_file(path);
    if (!j.is_object()) throw IoError(path + ": expected a JSON object, found " + std::string(j.type_name()));
    const auto it = j.find("architectures");
    if (it == j.end() || !it->is_array() || it->size() != 1 || !(*it)[0].is_string())
        throw IoError(path + ".architectures: expected a list naming the model class, found " +
                      (it == j.end() ? std::string("nothing") : it->dump()));
    return (*it)[0].get<std::string>();
}

/// Throws unless the folder holds one of the classes `needed` (one line: what it holds, what the
/// command needs).
inline void require(const std::string& dir, const std::string& held, const std::vector<std::string>& needed,
                    const std::string& command) {
    std::string names;
    for (const auto& n : needed) {
        if (held == n) return;
        names += (names.empty() ? "" : " or ") + n;
    }
    throw IoError(dir + "/config.json.architectures: the folder holds " + held + "; " + command + " needs " + names);
}
inline void require(const std::string& dir, const std::string& held, const std::string& needed,
                    const std::string& command) {
    require(dir, held, std::vector<std::string>{needed}, command);
}

}  // namespace mmalign::cli
