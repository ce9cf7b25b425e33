// mmalign/io/safetensors.hpp — a small, validating reader of safetensors files, and loading a
// module's parameters from one by their Hugging Face names.
//
//   file = u64 n (little-endian) · n bytes of JSON header · data region
//   header = {"__metadata__": {str: str}?, "<name>": {"dtype": "F32", "shape": [..],
//             "data_offsets": [begin, end]}, ...}   (offsets relative to the data region)
// Every header field is checked against the file before any byte is read as a tensor: the header
// length against the file size, dtype (F32, F64), shape (rank <= 4, non-negative), and offsets
// (begin <= end <= data size, end − begin = numel · itemsize). A malformed file throws IoError
// naming the file, the tensor and what was expected and found; it never reads out of bounds.
// The whole file is read into memory (fine for fixtures and small checkpoints; mmap comes later).
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "mmalign/core/error.hpp"
#include "mmalign/core/parameter.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/core/tensor.hpp"

namespace mmalign::io {

// Tensor bytes are copied straight into host floats, which is only right on a little-endian host
// (the format's byte order). Every platform mmalign targets is; a big-endian port must swap here.
static_assert(std::endian::native == std::endian::little, "mmalign::io::safetensors assumes a little-endian host");

class SafetensorsFile {
public:
    /// The spec's own cap on the JSON header; a larger length field means a corrupt file, and
    /// checking it first avoids trusting it for an allocation.
    static constexpr std::uint64_t max_header_bytes = 100'000'000;

    /// Reads and validates `path`; throws IoError if it cannot be opened or is malformed.
    static SafetensorsFile open(const std::string& path) {
        SafetensorsFile f;
        f.path_ = path;
        std::ifstream in(path, std::ios::binary | std::ios::ate);
        if (!in) f.fail("cannot open the file for reading");
        const std::streamoff size = in.tellg();
        if (size < 0) f.fail("cannot determine the file size");
        f.bytes_.resize(static_cast<std::size_t>(size));
        in.seekg(0);
        if (size > 0 && !in.read(f.bytes_.data(), size)) f.fail("read failed after " + std::to_string(in.gcount()) + " bytes");
        f.parse();
        return f;
    }

    const std::string& path() const { return path_; }
    bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
    /// Tensor names in sorted order ("__metadata__" is not a tensor).
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        out.reserve(tensors_.size());
        for (const auto& [name, info] : tensors_) out.push_back(name);
        return out;
    }
    Shape shape(const std::string& name) const { return entry(name).shape; }
    /// "F32" or "F64".
    std::string dtype(const std::string& name) const { return entry(name).dtype == Dtype::f32 ? "F32" : "F64"; }
    /// The header's "__metadata__" (empty when absent).
    const std::map<std::string, std::string>& metadata() const { return metadata_; }

    /// Converts tensor `name` to T into `dst`, whose shape must equal the stored shape.
    template <class T>
    void read_into(const std::string& name, TensorView<T> dst) const {
        static_assert(std::is_floating_point_v<T>, "safetensors: tensors are read as float or double");
        const Info& e = entry(name);
        if (!(dst.shape() == e.shape))
            fail_tensor(name, "expected shape " + dst.shape().str() + ", found " + e.shape.str());
        const char* src = bytes_.data() + data_begin_ + e.begin;
        // memcpy per element: offsets need not be aligned for the element type.
        if (e.dtype == Dtype::f32) convert<float>(src, dst);
        else convert<double>(src, dst);
    }

    template <class T>
    Tensor<T> read(const std::string& name) const {
        Tensor<T> t(shape(name));
        read_into<T>(name, t.view());
        return t;
    }

private:
    enum class Dtype { f32, f64 };
    struct Info {
        Dtype dtype = Dtype::f32;
        Shape shape;
        std::uint64_t begin = 0;  // relative to the data region
    };

    SafetensorsFile() = default;

    [[noreturn]] void fail(const std::string& what) const {
        throw IoError("safetensors '" + path_ + "': " + what);
    }
    [[noreturn]] void fail_tensor(const std::string& name, const std::string& what) const {
        fail("tensor '" + name + "': " + what);
    }

    const Info& entry(const std::string& name) const {
        auto it = tensors_.find(name);
        if (it == tensors_.end()) fail_tensor(name, "not in the file (" + std::to_string(tensors_.size()) + " tensors)");
        return it->second;
    }

    template <class S, class T>
    static void convert(const char* src, TensorView<T> dst) {
        for (index_t i = 0; i < dst.numel(); ++i) {
            S v;
            std::memcpy(&v, src + static_cast<std::size_t>(i) * sizeof(S), sizeof(S));
            dst.data()[i] = static_cast<T>(v);
        }
    }

    void parse() {
        const std::uint64_t size = bytes_.size();
        if (size < 8) fail("file is " + std::to_string(size) + " bytes, too short for the 8-byte header length");
        std::uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes_[static_cast<std::size_t>(i)]);
        if (n > max_header_bytes)
            fail("header length " + std::to_string(n) + " exceeds the limit of " + std::to_string(max_header_bytes) +
                 " bytes (corrupt or not a safetensors file)");
        if (n > size - 8)
            fail("header length " + std::to_string(n) + " exceeds the " + std::to_string(size - 8) +
                 " bytes after the length field (truncated file?)");
        data_begin_ = 8 + static_cast<std::size_t>(n);
        const std::uint64_t data_size = size - 8 - n;

        const char* h = bytes_.data() + 8;
        const nlohmann::json header = nlohmann::json::parse(h, h + n, nullptr, /*allow_exceptions=*/false);
        if (header.is_discarded()) fail("header is not valid JSON");
        if (!header.is_object()) fail("header must be a JSON object, found " + std::string(header.type_name()));

        for (const auto& [name, value] : header.items()) {
            if (name == "__metadata__") {
                if (!value.is_object()) fail("__metadata__ must be an object, found " + std::string(value.type_name()));
                for (const auto& [k, v] : value.items()) {
                    if (!v.is_string()) fail("__metadata__ '" + k + "' must be a string, found " + v.type_name());
                    metadata_[k] = v.get<std::string>();
                }
                continue;
            }
            tensors_[name] = parse_entry(name, value, data_size);
        }
    }

    Info parse_entry(const std::string& name, const nlohmann::json& v, std::uint64_t data_size) const {
        if (!v.is_object()) fail_tensor(name, "expected an object, found " + std::string(v.type_name()));
        for (const char* field : {"dtype", "shape", "data_offsets"})
            if (!v.contains(field)) fail_tensor(name, std::string("missing field '") + field + "'");
        Info e;
        std::uint64_t itemsize = 0;
        const auto& dt = v["dtype"];
        if (!dt.is_string()) fail_tensor(name, "dtype must be a string, found " + std::string(dt.type_name()));
        const std::string dts = dt.get<std::string>();
        if (dts == "F32") e.dtype = Dtype::f32, itemsize = 4;
        else if (dts == "F64") e.dtype = Dtype::f64, itemsize = 8;
        else fail_tensor(name, "expected dtype F32 or F64, found " + dts);

        const auto& sh = v["shape"];
        if (!sh.is_array()) fail_tensor(name, "shape must be an array, found " + std::string(sh.type_name()));
        if (sh.size() > static_cast<std::size_t>(Shape::max_rank))
            fail_tensor(name, "expected rank <= " + std::to_string(Shape::max_rank) + ", found rank " +
                                  std::to_string(sh.size()) + " (shape " + sh.dump() + ")");
        index_t d[Shape::max_rank] = {};
        std::uint64_t numel = 1;
        bool overflow = false;
        for (std::size_t i = 0; i < sh.size(); ++i) {
            // nlohmann parses non-negative integer literals as unsigned; negatives and fractions fail here.
            if (!sh[i].is_number_unsigned() || sh[i].get<std::uint64_t>() > std::uint64_t(std::numeric_limits<index_t>::max()))
                fail_tensor(name, "expected non-negative integer extents, found shape " + sh.dump());
            const std::uint64_t x = sh[i].get<std::uint64_t>();
            d[i] = static_cast<index_t>(x);
            if (x != 0 && numel > std::numeric_limits<std::uint64_t>::max() / x) overflow = true;
            numel *= x;
        }
        switch (sh.size()) {
            case 0: e.shape = Shape{}; break;
            case 1: e.shape = Shape{d[0]}; break;
            case 2: e.shape = Shape{d[0], d[1]}; break;
            case 3: e.shape = Shape{d[0], d[1], d[2]}; break;
            default: e.shape = Shape{d[0], d[1], d[2], d[3]}; break;
        }

        const auto& off = v["data_offsets"];
        if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
            fail_tensor(name, "data_offsets must be two non-negative integers, found " + off.dump());
        const std::uint64_t b = off[0].get<std::uint64_t>(), end = off[1].get<std::uint64_t>();
        if (b > end) fail_tensor(name, "data_offsets [" + std::to_string(b) + ", " + std::to_string(end) + "] run backwards");
        if (end > data_size)
            fail_tensor(name, "data_offsets [" + std::to_string(b) + ", " + std::to_string(end) +
                                  "] end past the data region of " + std::to_string(data_size) + " bytes (truncated file?)");
        // A byte count that overflows cannot equal any in-file range, so report it as a mismatch.
        overflow = overflow || numel > std::numeric_limits<std::uint64_t>::max() / itemsize;
        if (overflow || end - b != numel * itemsize)
            fail_tensor(name, "expected " + (overflow ? std::string("more than 2^64") : std::to_string(numel * itemsize)) +
                                  " bytes for shape " + e.shape.str() + " of " + dts + ", found data_offsets [" +
                                  std::to_string(b) + ", " + std::to_string(end) + "] (" + std::to_string(end - b) + " bytes)");
        e.begin = b;
        return e;
    }

    std::string path_;
    std::vector<char> bytes_;   // the whole file
    std::size_t data_begin_ = 0;  // 8 + header length
    std::map<std::string, Info> tensors_;
    std::map<std::string, std::string> metadata_;
};

/// Loads every parameter that `module.visit` names from `file`, under key `prefix + name` (e.g.
/// prefix "text_model.encoder.layers.0."). All keys are checked before any is read, and every
/// missing key and every shape mismatch is reported in one IoError, so a wrong prefix or config is
/// diagnosed in one run and a failed load leaves the module untouched. Keys in the file that the
/// module does not name are ignored (a file may hold several modules, or inputs and outputs).
template <class M>
void load_parameters(M& module, const SafetensorsFile& file, const std::string& prefix) {
    std::vector<std::string> missing, mismatched;
    module.visit([&](const std::string& name, auto& p) {
        // Tensors are converted straight into the parameter's memory, which must be the host's.
        static_assert(requires { p.value.begin(); },
                      "load_parameters fills host parameters; load on the CPU and copy to a device.");
        const std::string key = prefix + name;
        if (!file.contains(key)) missing.push_back(key);
        else if (!(file.shape(key) == p.value.shape()))
            mismatched.push_back(key + ": expected shape " + p.value.shape().str() + ", found " + file.shape(key).str());
    });
    if (!missing.empty() || !mismatched.empty()) {
        std::string msg = "safetensors '" + file.path() + "': cannot load parameters with prefix '" + prefix + "'";
        if (!missing.empty()) {
            msg += "; " + std::to_string(missing.size()) + " missing:";
            for (const auto& k : missing) msg += " " + k;
        }
        if (!mismatched.empty()) {
            msg += "; " + std::to_string(mismatched.size()) + " with the wrong shape:";
            for (const auto& k : mismatched) msg += " " + k + ";";
            msg.pop_back();
        }
        throw IoError(msg);
    }
    module.visit([&](const std::string& name, auto& p) { file.read_into(prefix + name, p.value.view()); });
}

}  // namespace mmalign::io
