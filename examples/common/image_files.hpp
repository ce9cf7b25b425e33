// examples/common/image_files.hpp — the images a command line names: files as given, folders as
// every image file in them (.jpg, .jpeg, .png, .bmp), in name order.
#pragma once

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

namespace mmalign::cli {

/// Appends `path` to `images`, or, when it is a folder, the image files in it sorted by name.
inline void add_images(const std::string& path, std::vector<std::string>& images) {
    namespace fs = std::filesystem;
    if (!fs::is_directory(path)) {
        images.push_back(path);
        return;
    }
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(path)) {
        const std::string ext = e.path().extension().string();
        if (e.is_regular_file() && (ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp"))
            found.push_back(e.path().string());
    }
    std::sort(found.begin(), found.end());
    images.insert(images.end(), found.begin(), found.end());
}

}  // namespace mmalign::cli
