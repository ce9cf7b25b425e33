// mmalign/io/safetensors.hpp — validating safetensors reader (mmap), atomic writer, and loading or
// saving a module's parameters by their Hugging Face names, from one file or a sharded checkpoint.
//
//   file = u64 n (little-endian) · n bytes of UTF-8 JSON header · data region
//   header = {"__metadata__": {str: str}?, "<name>": {"dtype": "F32", "shape": [..],
//             "data_offsets": [begin, end]}, ...}   (offsets relative to the data region)
// Checked before any tensor byte is read (spec: huggingface/safetensors README "Format";
// reference reader: safetensors/src/tensor.rs read_metadata, Metadata::validate): n <= 1e8 and
// n <= file size − 8; the header is UTF-8, begins with '{', may end in padding spaces, repeats no
// key; dtype is a byte-sized spec dtype; rank <= 4 (mmalign's limit); the element count fits
// int64; end − begin = numel · itemsize; sorted by offset, the ranges tile the data region from 0
// to the end of the file with no overlap and no hole ("the byte buffer needs to be entirely
// indexed"). A violation throws IoError naming the file, the tensor and the fault. F16/BF16 read
// exactly as float; the file stays mapped while its SafetensorsFile lives (truncating it meanwhile
// is undefined: SIGBUS).
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mmalign/core/backend.hpp"
#include "mmalign/core/error.hpp"
#include "mmalign/core/float16.hpp"
#include "mmalign/core/parameter.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/core/tensor.hpp"
#include "mmalign/io/atomic_file.hpp"
#include "mmalign/io/input_file.hpp"

namespace mmalign::io {

// Tensor bytes are reinterpreted as host numbers, which is only right on a little-endian host
// (the format's byte order). Every platform mmalign targets is; a big-endian port must swap here.
static_assert(std::endian::native == std::endian::little, "mmalign::io::safetensors assumes a little-endian host");

/// The spec's element types of whole bytes. The sub-byte ones (F4, F6_*) are rejected as
/// unsupported: no model mmalign loads stores them.
enum class Dtype { BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64 };

inline std::string_view to_string(Dtype d) {
    constexpr std::string_view names[] = {"BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3", "F8_E8M0",
                                          "I16",  "U16", "F16", "BF16",    "I32",     "U32",
                                          "F32",  "C64", "F64", "I64",     "U64"};
    return names[static_cast<int>(d)];
}

inline std::size_t itemsize(Dtype d) {
    switch (d) {
        case Dtype::BOOL: case Dtype::U8: case Dtype::I8:
        case Dtype::F8_E5M2: case Dtype::F8_E4M3: case Dtype::F8_E8M0: return 1;
        case Dtype::I16: case Dtype::U16: case Dtype::F16: case Dtype::BF16: return 2;
        case Dtype::I32: case Dtype::U32: case Dtype::F32: return 4;
        case Dtype::C64: case Dtype::F64: case Dtype::I64: case Dtype::U64: return 8;
    }
    return 0;
}

/// Where a tensor lives in its file: offsets relative to the data region, as in the header.
struct TensorInfo {
    Dtype dtype = Dtype::F32;
    Shape shape;
    std::uint64_t begin = 0;
    std::uint64_t end = 0;
    std::uint64_t nbytes() const { return end - begin; }
};

/// Which parameter keys a load may leave unmatched (see load_parameters).
struct LoadOptions {
    bool allow_unexpected = false;  // keys under the prefix that the module does not name
    bool allow_missing = false;     // keys the module names that the source lacks (left untouched)
    // Keys (after the prefix) starting with one of these are skipped, not unexpected: parts a
    // folder of a related model carries that this one does not read (e.g. the ITG head of a
    // stage-1 BLIP-2 folder). Every other unnamed key is still an error.
    std::vector<std::string> ignored = {};
};

namespace detail {

/// Offset of the first byte that breaks UTF-8 (RFC 3629: no overlongs, no surrogates, nothing
/// above U+10FFFF), or n when all n bytes are valid — the check the reference reader makes with
/// std::str::from_utf8 before parsing.
inline std::size_t utf8_error_offset(const unsigned char* s, std::size_t n) {
    std::size_t i = 0;
    while (i < n) {
        const unsigned c = s[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t len = 0;
        unsigned lo = 0x80, hi = 0xBF;  // bounds of the second byte
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c == 0xE0) len = 3, lo = 0xA0;
        else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) len = 3;
        else if (c == 0xED) len = 3, hi = 0x9F;
        else if (c == 0xF0) len = 4, lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3) len = 4;
        else if (c == 0xF4) len = 4, hi = 0x8F;
        else return i;
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi) return i;
        for (std::size_t k = 2; k < len; ++k)
            if ((s[i + k] & 0xC0) != 0x80) return i;
        i += len;
    }
    return n;
}

/// `s` with control bytes escaped (io/input_file.hpp).
inline std::string escaped(std::string_view s) { return escape_control(s); }

/// `s` in single quotes for a message, control bytes escaped and long strings cut, so a hostile
/// name cannot garble the text.
inline std::string quoted_name(std::string_view s) {
    constexpr std::size_t max_chars = 200;
    // Built by append: GCC 12 at -O3 reports a false -Wrestrict for `"'" + std::string` here.
    std::string out("'");
    out.append(escaped(s.substr(0, max_chars))).append(s.size() > max_chars ? "...'" : "'");
    return out;
}

/// nlohmann's parse messages quote the offending input; keep only printable ASCII of them.
inline std::string printable(std::string_view s) {
    std::string out;
    for (char ch : s) out += (static_cast<unsigned char>(ch) >= 0x20 && static_cast<unsigned char>(ch) < 0x7F) ? ch : '?';
    return out;
}

inline std::string offsets_str(std::uint64_t b, std::uint64_t e) {
    // Built by append: GCC 12 at -O3 reports a false -Wrestrict for `"[" + std::string` here.
    std::string s("[");
    s.append(std::to_string(b)).append(", ").append(std::to_string(e)).append("]");
    return s;
}

/// Builds a nlohmann::json document from nlohmann's SAX events, refusing duplicate keys (the
/// spec forbids them; nlohmann would keep the last silently), nesting deeper than `max_depth`
/// and more than `max_entries` keys in the top-level object. Linear in the text: each key is
/// looked up once in its object's map. (nlohmann's callback parser, which this replaces, scans the
/// enclosing object for discarded values after every nested object closes — quadratic in a
/// header's entries: 30,000 of them took seconds.) With an entry hook, each value of the
/// top-level object is handed to the hook as soon as it is complete and not kept, so a header
/// of many entries never exists as one document.
class StrictJsonBuilder {
public:
    using json = nlohmann::json;
    using EntryHook = std::function<void(const std::string& key, json& value)>;

    StrictJsonBuilder(json& root, int max_depth, std::size_t max_entries, EntryHook hook = {})
        : root_(root), max_depth_(max_depth), max_entries_(max_entries), hook_(std::move(hook)) {}

    bool null() { return put(nullptr); }
    bool boolean(bool v) { return put(v); }
    bool number_integer(json::number_integer_t v) { return put(v); }
    bool number_unsigned(json::number_unsigned_t v) { return put(v); }
    bool number_float(json::number_float_t v, const json::string_t&) { return put(v); }
    bool string(json::string_t& v) { return put(std::move(v)); }
    bool binary(json::binary_t& v) { return put(json::binary(std::move(v))); }
    bool start_object(std::size_t) { return open(json::value_t::object); }
    bool start_array(std::size_t) { return open(json::value_t::array); }
    bool end_object() { return close(); }
    bool end_array() { return close(); }

    bool key(json::string_t& k) {
        json::object_t& obj = stack_.back()->get_ref<json::object_t&>();
        if (stack_.size() == 1) {
            top_key_ = k;
            if (++entries_ > max_entries_)
                return reject("has more than " + std::to_string(max_entries_) + " entries, the most this reader accepts");
            if (hook_) {
                if (!top_keys_.insert(k).second)
                    return reject("has the key " + quoted_name(k) + " twice (the format forbids duplicate keys)");
                entry_ = nullptr;
                slot_ = &entry_;
                return true;
            }
        }
        auto [it, added] = obj.try_emplace(k, nullptr);
        if (!added) {
            if (stack_.size() == 1) return reject("has the key " + quoted_name(k) + " twice (the format forbids duplicate keys)");
            return reject("has the key " + quoted_name(k) + " twice in entry " + quoted_name(top_key_) +
                          " (the format forbids duplicate keys)");
        }
        slot_ = &it->second;
        return true;
    }

    template <class Exception>
    bool parse_error(std::size_t, const std::string&, const Exception& e) {
        return reject("is not valid JSON: " + printable(e.what()));
    }

    /// The first fault as a predicate ("has the key 'x' twice ..."), empty when there was none.
    const std::string& error() const { return error_; }

private:
    bool reject(std::string why) {
        if (error_.empty()) error_ = std::move(why);
        return false;
    }

    // Where the next value goes: the root, the end of the open array, or the slot of the last key.
    template <class V>
    json* place(V&& v) {
        if (stack_.empty()) {
            root_ = json(std::forward<V>(v));
            return &root_;
        }
        json& parent = *stack_.back();
        if (parent.is_array()) {
            // Only the innermost open container grows, so pointers to open containers stay valid.
            auto& arr = parent.get_ref<json::array_t&>();
            arr.emplace_back(std::forward<V>(v));
            return &arr.back();
        }
        *slot_ = json(std::forward<V>(v));
        return slot_;
    }
    template <class V>
    bool put(V&& v) {
        place(std::forward<V>(v));
        if (stack_.size() == 1) entry_done();
        return true;
    }
    bool open(json::value_t type) {
        if (stack_.size() >= static_cast<std::size_t>(max_depth_))
            return reject("is nested deeper than " + std::to_string(max_depth_) + " levels");
        stack_.push_back(place(json(type)));
        return true;
    }
    bool close() {
        stack_.pop_back();
        if (stack_.size() == 1) entry_done();
        return true;
    }
    // A value of the top-level object is complete: the hook takes it.
    void entry_done() {
        if (hook_ && stack_.front()->is_object()) {
            hook_(top_key_, entry_);
            entry_ = nullptr;
        }
    }

    json& root_;
    int max_depth_;
    std::size_t max_entries_;
    EntryHook hook_;
    json entry_;                            // with a hook: the top-level value being built
    std::unordered_set<std::string> top_keys_;  // with a hook: the top-level keys seen
    std::vector<json*> stack_;  // the open containers, innermost last
    json* slot_ = nullptr;      // the value of the key just read
    std::size_t entries_ = 0;   // keys of the top-level object
    std::string top_key_;       // the top-level key being parsed, for messages
    std::string error_;
};

/// Parses `text` as JSON with StrictJsonBuilder's checks. A failure is returned as a predicate
/// ("is not valid JSON: ...", empty on success) for the caller to give a subject.
/// With `hook`, the top-level object's values go to it as they complete and `out` keeps none.
inline std::string parse_json_strict(std::string_view text, nlohmann::json& out,
                                     std::size_t max_entries = std::numeric_limits<std::size_t>::max(),
                                     StrictJsonBuilder::EntryHook hook = {}) {
    constexpr int max_depth = 32;  // a header nests 3 deep; the cap bounds the builder's stack
    StrictJsonBuilder b(out, max_depth, max_entries, std::move(hook));
    bool ok = false;
    try {
        ok = nlohmann::json::sax_parse(text.begin(), text.end(), &b, nlohmann::json::input_format_t::json, /*strict=*/true);
    } catch (const nlohmann::json::exception& e) {
        return "is not valid JSON: " + printable(e.what());
    }
    if (!ok) return b.error().empty() ? std::string("is not valid JSON") : b.error();
    return {};
}

inline std::string errno_text(int err) { return std::strerror(err); }

/// Owns the bytes of one file: a read-only private mapping, or (for parse()) a copy in memory.
class Bytes {
public:
    Bytes() = default;
    Bytes(Bytes&& o) noexcept { *this = std::move(o); }
    Bytes& operator=(Bytes&& o) noexcept {
        if (this != &o) {
            release();
            map_ = std::exchange(o.map_, nullptr);
            map_size_ = std::exchange(o.map_size_, 0);
            owned_ = std::move(o.owned_);
            o.owned_.clear();
        }
        return *this;
    }
    Bytes(const Bytes&) = delete;
    Bytes& operator=(const Bytes&) = delete;
    ~Bytes() { release(); }

    static Bytes mapped(void* p, std::size_t n) {
        Bytes b;
        b.map_ = p;
        b.map_size_ = n;
        return b;
    }
    static Bytes copied(std::vector<std::byte> v) {
        Bytes b;
        b.owned_ = std::move(v);
        return b;
    }
    const std::byte* data() const { return map_ ? static_cast<const std::byte*>(map_) : owned_.data(); }
    std::size_t size() const { return map_ ? map_size_ : owned_.size(); }

    /// Hands the mapped pages lying wholly inside [offset, offset + n) back to the OS. The
    /// mapping is private and never written, so a later read faults them in again from the file;
    /// until then they stop counting towards this process's resident memory.
    void drop_pages(std::size_t offset, std::size_t n) const {
        if (!map_ || n == 0) return;
        const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        const std::size_t lo = (offset + page - 1) / page * page, hi = (offset + n) / page * page;
        if (hi > lo) ::madvise(static_cast<char*>(map_) + lo, hi - lo, MADV_DONTNEED);  // advice: failure is harmless
    }

private:
    void release() {
        if (map_) ::munmap(map_, map_size_);
        map_ = nullptr;
        map_size_ = 0;
    }
    void* map_ = nullptr;
    std::size_t map_size_ = 0;
    std::vector<std::byte> owned_;
};

inline float f16_to_float(std::uint16_t h) {
    const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
    const std::uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
    std::uint32_t bits;
    if (exp == 0 && man == 0) bits = sign;  // ±0
    else if (exp == 0) {
        // Subnormal man·2^-24: shift the leading 1 up to the implicit-bit position; every such
        // value is a normal float, so this is exact.
        std::uint32_t m = man, shift = 0;
        while (!(m & 0x400u)) m <<= 1, ++shift;
        bits = sign | ((127u - 14u - shift) << 23) | ((m & 0x3FFu) << 13);
    } else if (exp == 31) bits = sign | 0x7F800000u | (man << 13);  // inf, NaN (payload kept)
    else bits = sign | ((exp + 127u - 15u) << 23) | (man << 13);
    return std::bit_cast<float>(bits);
}

/// bfloat16 is the top half of a float32.
inline float bf16_to_float(std::uint16_t b) { return std::bit_cast<float>(std::uint32_t(b) << 16); }

template <class S>
S load_unaligned(const std::byte* p) {
    S v;
    std::memcpy(&v, p, sizeof(S));  // offsets need not be aligned for S: no UB, no bus error
    return v;
}

template <class T>
std::string type_name() {
    if constexpr (std::is_floating_point_v<T>) return sizeof(T) == 4 ? "float" : "double";
    else return std::string(std::is_signed_v<T> ? "int" : "uint") + std::to_string(8 * sizeof(T));
}

template <class T>
void check_element_type() {
    static_assert((std::is_floating_point_v<T> && sizeof(T) <= 8) || (std::is_integral_v<T> && !std::is_same_v<T, bool>),
                  "safetensors: tensors are read as float, double or an integer type");
}

inline bool is_float_dtype(Dtype d) { return d == Dtype::F16 || d == Dtype::BF16 || d == Dtype::F32 || d == Dtype::F64; }
inline bool is_int_dtype(Dtype d) {
    switch (d) {
        case Dtype::BOOL: case Dtype::U8: case Dtype::I8: case Dtype::I16: case Dtype::U16:
        case Dtype::I32: case Dtype::U32: case Dtype::I64: case Dtype::U64: return true;
        default: return false;
    }
}

/// Why a tensor of dtype `d` cannot be read as T, or empty when it can.
template <class T>
std::string conversion_problem(Dtype d) {
    if constexpr (std::is_floating_point_v<T>) {
        if (is_float_dtype(d)) return {};
    } else {
        if (is_int_dtype(d)) return {};
    }
    return "dtype " + std::string(to_string(d)) + " cannot be read as " + type_name<T>() +
           (is_int_dtype(d) ? " (read it as an integer type)" : is_float_dtype(d) ? " (read it as float or double)" : "");
}

}  // namespace detail

class SafetensorsFile {
public:
    /// The reference reader's cap on the JSON header (MAX_HEADER_SIZE); a larger length field
    /// means a corrupt file, and checking it first avoids trusting it.
    static constexpr std::uint64_t max_header_bytes = 100'000'000;

    /// The most tensors one file may list: 1,000,000, ten times the largest real checkpoints' shards
    /// hold. The header is parsed in time and memory linear in its entries (about 1 s per million
    /// on one core); the cap bounds both before the 100 MB header limit would.
    static constexpr std::size_t max_tensors = 1'000'000;
    /// The largest file open() maps: 1 TiB, far above any single file or shard published.
    static constexpr std::uintmax_t max_file_bytes = std::uintmax_t(1) << 40;

    /// Maps and validates `path`; throws IoError if it cannot be opened or is malformed. The file
    /// is opened through io/input_file.hpp: a FIFO (never blocking), a directory, a device, an
    /// empty or an oversized file is refused by its kind before anything is mapped.
    static SafetensorsFile open(const std::string& path) {
        SafetensorsFile f;
        f.path_ = path;
        InputFile in;
        try {
            in = open_input_file(path, max_file_bytes, "");
        } catch (const IoError& e) {
            throw IoError("safetensors " + std::string(e.what()));  // "safetensors '<path>': <reason>"
        }
        const auto size = static_cast<std::uint64_t>(in.size());
        if (size < 8) f.fail("file is " + std::to_string(size) + " bytes, too short for the 8-byte header length");
        void* p = ::mmap(nullptr, static_cast<std::size_t>(size), PROT_READ, MAP_PRIVATE, in.fd(), 0);
        const int err = errno;
        in.close();  // the mapping keeps the file open
        if (p == MAP_FAILED) f.fail("cannot map the file: " + detail::errno_text(err));
        f.bytes_ = detail::Bytes::mapped(p, static_cast<std::size_t>(size));
        f.parse();
        return f;
    }

    /// Validates an in-memory copy of a file's bytes; `name` stands for the path in messages.
    static SafetensorsFile parse(std::vector<std::byte> bytes, const std::string& name = "<memory>") {
        SafetensorsFile f;
        f.path_ = name;
        f.bytes_ = detail::Bytes::copied(std::move(bytes));
        f.parse();
        return f;
    }

    SafetensorsFile(SafetensorsFile&&) noexcept = default;
    SafetensorsFile& operator=(SafetensorsFile&&) noexcept = default;
    SafetensorsFile(const SafetensorsFile&) = delete;
    SafetensorsFile& operator=(const SafetensorsFile&) = delete;

    const std::string& path() const { return path_; }
    std::size_t size() const { return tensors_.size(); }
    bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
    /// Tensor names in sorted order ("__metadata__" is not a tensor).
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        out.reserve(tensors_.size());
        for (const auto& [name, info] : tensors_) out.push_back(name);
        return out;
    }
    const TensorInfo& info(const std::string& name) const {
        auto it = tensors_.find(name);
        if (it == tensors_.end())
            fail_tensor(name, "not in the file (" + std::to_string(tensors_.size()) + " tensors)");
        return it->second;
    }
    Shape shape(const std::string& name) const { return info(name).shape; }
    /// The header's dtype string: "F32", "BF16", "I64", ...
    std::string dtype(const std::string& name) const { return std::string(to_string(info(name).dtype)); }
    /// The header's "__metadata__" (empty when absent).
    const std::map<std::string, std::string>& metadata() const { return metadata_; }

    /// The tensor's stored bytes, little-endian and with no alignment guarantee.
    std::span<const std::byte> bytes(const std::string& name) const {
        const TensorInfo& e = info(name);
        return {bytes_.data() + data_begin_ + e.begin, static_cast<std::size_t>(e.nbytes())};
    }

    /// Converts tensor `name` into `dst`, whose shape must equal the stored shape. Floating T
    /// reads F16, BF16 (exactly), F32 and F64 (rounded to nearest when T is float); integer T reads
    /// BOOL and the integer dtypes, failing on a value T cannot hold. The tensor's mapped pages are
    /// then returned to the OS (they fault in again if read later), so loading a model costs the
    /// parameters' memory, not that plus the file's.
    template <class T>
    void read_into(const std::string& name, TensorView<T> dst) const {
        detail::check_element_type<T>();
        const TensorInfo& e = info(name);
        if (!(dst.shape() == e.shape))
            fail_tensor(name, "expected shape " + dst.shape().str() + ", found " + e.shape.str());
        if (const std::string why = detail::conversion_problem<T>(e.dtype); !why.empty()) fail_tensor(name, why);
        const std::byte* src = bytes_.data() + data_begin_ + e.begin;
        const auto n = static_cast<std::size_t>(e.shape.numel());
        T* out = dst.data();
        if constexpr (std::is_floating_point_v<T>) {
            switch (e.dtype) {
                case Dtype::F32: convert<float>(src, out, n); break;
                case Dtype::F64: convert<double>(src, out, n); break;
                case Dtype::F16:
                    for (std::size_t i = 0; i < n; ++i)
                        out[i] = static_cast<T>(detail::f16_to_float(detail::load_unaligned<std::uint16_t>(src + 2 * i)));
                    break;
                case Dtype::BF16:
                    for (std::size_t i = 0; i < n; ++i)
                        out[i] = static_cast<T>(detail::bf16_to_float(detail::load_unaligned<std::uint16_t>(src + 2 * i)));
                    break;
                default: break;  // excluded by conversion_problem
            }
        } else {
            switch (e.dtype) {
                case Dtype::BOOL:
                    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(src[i] != std::byte{0});
                    break;
                case Dtype::U8: convert_int<std::uint8_t>(name, src, out, n); break;
                case Dtype::I8: convert_int<std::int8_t>(name, src, out, n); break;
                case Dtype::I16: convert_int<std::int16_t>(name, src, out, n); break;
                case Dtype::U16: convert_int<std::uint16_t>(name, src, out, n); break;
                case Dtype::I32: convert_int<std::int32_t>(name, src, out, n); break;
                case Dtype::U32: convert_int<std::uint32_t>(name, src, out, n); break;
                case Dtype::I64: convert_int<std::int64_t>(name, src, out, n); break;
                case Dtype::U64: convert_int<std::uint64_t>(name, src, out, n); break;
                default: break;
            }
        }
        // A model load then never holds the file's pages and the parameters at once.
        bytes_.drop_pages(data_begin_ + e.begin, static_cast<std::size_t>(e.nbytes()));
    }

    template <class T>
    Tensor<T> read(const std::string& name) const {
        Tensor<T> t(shape(name));
        read_into<T>(name, t.view());
        return t;
    }

private:
    SafetensorsFile() = default;

    [[noreturn]] void fail(const std::string& what) const {
        throw IoError("safetensors '" + detail::escaped(path_) + "': " + what);
    }
    [[noreturn]] void fail_tensor(const std::string& name, const std::string& what) const {
        fail("tensor " + detail::quoted_name(name) + ": " + what);
    }

    template <class S, class T>
    static void convert(const std::byte* src, T* out, std::size_t n) {
        if constexpr (std::is_same_v<S, T>) {
            if (n) std::memcpy(out, src, n * sizeof(S));
        } else {
            for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(detail::load_unaligned<S>(src + sizeof(S) * i));
        }
    }

    template <class S, class T>
    void convert_int(const std::string& name, const std::byte* src, T* out, std::size_t n) const {
        for (std::size_t i = 0; i < n; ++i) {
            const S v = detail::load_unaligned<S>(src + sizeof(S) * i);
            if (!std::in_range<T>(v))
                fail_tensor(name, "value " + std::to_string(v) + " at flat index " + std::to_string(i) +
                                      " does not fit " + detail::type_name<T>());
            out[i] = static_cast<T>(v);
        }
    }

    void parse() {
        const std::byte* base = bytes_.data();
        const std::uint64_t size = bytes_.size();
        if (size < 8) fail("file is " + std::to_string(size) + " bytes, too short for the 8-byte header length");
        std::uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = (n << 8) | std::to_integer<std::uint64_t>(base[i]);
        if (n > max_header_bytes)
            fail("header length " + std::to_string(n) + " exceeds the limit of " + std::to_string(max_header_bytes) +
                 " bytes (corrupt or not a safetensors file)");
        if (n > size - 8)
            fail("header length " + std::to_string(n) + " exceeds the " + std::to_string(size - 8) +
                 " bytes after the length field (truncated file?)");
        data_begin_ = 8 + static_cast<std::size_t>(n);
        const std::uint64_t data_size = size - 8 - n;

        const auto* h = reinterpret_cast<const unsigned char*>(base + 8);
        // Spec: "The header data MUST begin with a `{` character". (The reference reader has
        // tolerated leading JSON whitespace since #686; its writer never produces it.)
        if (n == 0 || h[0] != '{')
            fail("header must be a JSON object starting with '{', found " +
                 (n == 0 ? std::string("an empty header") : "byte 0x" + hex_byte(h[0])));
        if (const std::size_t bad = detail::utf8_error_offset(h, static_cast<std::size_t>(n)); bad != n)
            fail("header is not valid UTF-8 (byte 0x" + hex_byte(h[bad]) + " at header offset " + std::to_string(bad) + ")");
        // Each entry is checked as soon as the parser completes it, and not kept as JSON: time and
        // memory stay linear in the header's entries. nlohmann skips trailing whitespace after
        // the object, which covers the spec's padding.
        auto on_entry = [&](const std::string& name, const nlohmann::json& value) {
            if (name == "__metadata__") {
                if (value.is_null()) return;  // serde reads the optional map from null too
                if (!value.is_object()) fail("__metadata__ must be an object, found " + std::string(value.type_name()));
                for (const auto& [k, v] : value.items()) {
                    if (!v.is_string())
                        fail("__metadata__ " + detail::quoted_name(k) + " must be a string, found " + v.type_name());
                    metadata_[k] = v.get<std::string>();
                }
                return;
            }
            tensors_.emplace(name, parse_entry(name, value, data_size));
        };
        nlohmann::json header;
        if (const std::string err = detail::parse_json_strict({reinterpret_cast<const char*>(h), static_cast<std::size_t>(n)},
                                                              header, max_tensors + 1, on_entry);  // + "__metadata__"
            !err.empty())
            fail("header " + err);
        if (!header.is_object()) fail("header must be a JSON object, found " + std::string(header.type_name()));
        if (tensors_.size() > max_tensors)
            fail("header lists " + std::to_string(tensors_.size()) + " tensors, more than the " + std::to_string(max_tensors) +
                 " this reader accepts");
        check_coverage(data_size);
    }

    static std::string hex_byte(unsigned c) {
        constexpr char hex[] = "0123456789abcdef";
        return {hex[(c >> 4) & 15], hex[c & 15]};
    }

    static std::string dims_str(const nlohmann::json& sh) {
        // Only called once every element is known to be a number, so dump() cannot recurse deeply.
        std::string s = sh.dump();
        return s.size() > 200 ? s.substr(0, 200) + "..." : s;
    }

    TensorInfo parse_entry(const std::string& name, const nlohmann::json& v, std::uint64_t data_size) const {
        if (!v.is_object()) fail_tensor(name, "expected an object, found " + std::string(v.type_name()));
        for (const char* field : {"dtype", "shape", "data_offsets"})
            if (!v.contains(field)) fail_tensor(name, std::string("missing field '") + field + "'");
        TensorInfo e;
        const auto& dt = v["dtype"];
        if (!dt.is_string()) fail_tensor(name, "dtype must be a string, found " + std::string(dt.type_name()));
        const std::string& dts = dt.get_ref<const std::string&>();
        e.dtype = parse_dtype(name, dts);
        const std::uint64_t isz = itemsize(e.dtype);

        const auto& sh = v["shape"];
        if (!sh.is_array()) fail_tensor(name, "shape must be an array, found " + std::string(sh.type_name()));
        for (const auto& d : sh)
            if (!d.is_number())
                fail_tensor(name, "expected non-negative integer extents, found a " + std::string(d.type_name()) + " in shape");
        if (sh.size() > static_cast<std::size_t>(Shape::max_rank))
            fail_tensor(name, "expected rank <= " + std::to_string(Shape::max_rank) + ", found rank " +
                                  std::to_string(sh.size()) + " (shape " + dims_str(sh) + ")");
        index_t d[Shape::max_rank] = {};
        // The product of the non-zero extents must fit index_t, so that no partial product any
        // later code forms (rows, strides) can overflow, even for a tensor with a zero extent.
        std::uint64_t nonzero_product = 1;
        bool has_zero = false, overflow = false;
        constexpr auto limit = static_cast<std::uint64_t>(std::numeric_limits<index_t>::max());
        for (std::size_t i = 0; i < sh.size(); ++i) {
            // nlohmann parses non-negative integer literals as unsigned; negatives and fractions fail here.
            if (!sh[i].is_number_unsigned()) fail_tensor(name, "expected non-negative integer extents, found shape " + dims_str(sh));
            const std::uint64_t x = sh[i].get<std::uint64_t>();
            if (x == 0) {
                has_zero = true;
                continue;
            }
            if (x > limit / nonzero_product) overflow = true;
            else nonzero_product *= x;
            d[i] = static_cast<index_t>(std::min(x, limit));
        }
        if (overflow)
            fail_tensor(name, "shape " + dims_str(sh) + " is too large: the product of its extents exceeds 2^63 - 1");
        const std::uint64_t numel = has_zero ? 0 : nonzero_product;
        switch (sh.size()) {
            case 0: e.shape = Shape{}; break;
            case 1: e.shape = Shape{d[0]}; break;
            case 2: e.shape = Shape{d[0], d[1]}; break;
            case 3: e.shape = Shape{d[0], d[1], d[2]}; break;
            default: e.shape = Shape{d[0], d[1], d[2], d[3]}; break;
        }

        const auto& off = v["data_offsets"];
        if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
            fail_tensor(name, "data_offsets must be two non-negative integers, found " +
                                  (off.is_array() && off.size() <= 2 && std::all_of(off.begin(), off.end(), [](const auto& x) { return x.is_number(); })
                                       ? off.dump()
                                       : std::string("a ") + off.type_name() +
                                             (off.is_array() ? " of " + std::to_string(off.size()) + " elements" : "")));
        const std::uint64_t b = off[0].get<std::uint64_t>(), end = off[1].get<std::uint64_t>();
        if (b > end) fail_tensor(name, "data_offsets " + detail::offsets_str(b, end) + " run backwards");
        if (end > data_size)
            fail_tensor(name, "data_offsets " + detail::offsets_str(b, end) + " end past the data region of " +
                                  std::to_string(data_size) + " bytes (truncated file?)");
        // numel <= 2^63 - 1 and itemsize <= 8 could still overflow 64 bits; such a count cannot
        // equal an in-file range, so it is reported as a mismatch.
        const bool bytes_overflow = numel > std::numeric_limits<std::uint64_t>::max() / isz;
        if (bytes_overflow || end - b != numel * isz)
            fail_tensor(name, "expected " + (bytes_overflow ? std::string("more than 2^64") : std::to_string(numel * isz)) +
                                  " bytes for shape " + e.shape.str() + " of " + dts + ", found data_offsets " +
                                  detail::offsets_str(b, end) + " (" + std::to_string(end - b) + " bytes)");
        e.begin = b;
        e.end = end;
        return e;
    }

    Dtype parse_dtype(const std::string& name, const std::string& s) const {
        for (int i = 0; i <= static_cast<int>(Dtype::U64); ++i)
            if (s == to_string(static_cast<Dtype>(i))) return static_cast<Dtype>(i);
        if (s == "F4" || s == "F6_E2M3" || s == "F6_E3M2" || s == "F8_E4M3FNUZ" || s == "F8_E5M2FNUZ")
            fail_tensor(name, "dtype " + s + " is valid safetensors but not supported by mmalign");
        fail_tensor(name, "unknown dtype " + detail::quoted_name(s) +
                              " (expected one of BOOL U8 I8 I16 U16 I32 U32 I64 U64 F16 BF16 F32 F64 C64 F8_E5M2 F8_E4M3 F8_E8M0)");
    }

    /// Sorted by offsets, the ranges must tile the data region exactly, as the reference's
    /// Metadata::validate and the final "buffer fully covered" check require: this rejects
    /// aliasing tensors and hidden bytes (polyglot files).
    void check_coverage(std::uint64_t data_size) const {
        std::vector<std::pair<const std::string*, const TensorInfo*>> order;
        order.reserve(tensors_.size());
        for (const auto& [name, e] : tensors_) order.emplace_back(&name, &e);
        std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
            if (a.second->begin != b.second->begin) return a.second->begin < b.second->begin;
            if (a.second->end != b.second->end) return a.second->end < b.second->end;
            return *a.first < *b.first;
        });
        std::uint64_t covered = 0;
        const std::pair<const std::string*, const TensorInfo*>* prev = nullptr;
        for (const auto& cur : order) {
            const TensorInfo& e = *cur.second;
            if (e.begin < covered)
                fail("tensors " + detail::quoted_name(*prev->first) + " (data_offsets " +
                     detail::offsets_str(prev->second->begin, prev->second->end) + ") and " + detail::quoted_name(*cur.first) +
                     " (data_offsets " + detail::offsets_str(e.begin, e.end) + ") overlap");
            if (e.begin > covered)
                fail("bytes [" + std::to_string(covered) + ", " + std::to_string(e.begin) +
                     ") of the data region belong to no tensor (a hole before tensor " + detail::quoted_name(*cur.first) +
                     "); the format requires the data region to be fully indexed");
            covered = e.end;
            prev = &cur;
        }
        if (covered != data_size)
            fail("the data region has " + std::to_string(data_size) + " bytes but the tensors cover only " +
                 std::to_string(covered) + " (trailing bytes); the format requires the data region to be fully indexed");
    }

    std::string path_;
    detail::Bytes bytes_;
    std::size_t data_begin_ = 0;  // 8 + header length
    std::map<std::string, TensorInfo> tensors_;
    std::map<std::string, std::string> metadata_;
};

/// A checkpoint as one tensor source: a single safetensors file, or the shards that a Hugging Face
/// index (`model.safetensors.index.json`, {"metadata": {...}, "weight_map": {name: shard file}})
/// names. The index decides which tensors exist and where; every mapped tensor is checked to be
/// in its shard when the checkpoint is opened. Shard names must be relative and stay inside the
/// index's directory.
class Checkpoint {
public:
    static constexpr const char* single_file_name = "model.safetensors";
    static constexpr const char* index_file_name = "model.safetensors.index.json";
    /// The largest index file read: 64 MiB (io/input_file.hpp's cap on JSON files); the index of a
    /// checkpoint of a thousand shards and a million tensors stays below 100 MB only barely, real
    /// ones are a few MB at most.
    static constexpr std::uintmax_t max_index_bytes = max_json_config_bytes;

    /// A directory (its model.safetensors, else its model.safetensors.index.json, the order
    /// transformers' from_pretrained tries), an index file (*.json) or a single safetensors file.
    static Checkpoint open(const std::string& path) {
        namespace fs = std::filesystem;
        std::error_code ec;
        if (fs::is_directory(path, ec)) {
            const fs::path dir(path);
            if (fs::exists(dir / single_file_name, ec)) return from_file(SafetensorsFile::open((dir / single_file_name).string()));
            if (fs::exists(dir / index_file_name, ec)) return open_index((dir / index_file_name).string());
            throw IoError("checkpoint '" + detail::escaped(path) + "': the directory has neither " + single_file_name + " nor " +
                          index_file_name);
        }
        if (path.ends_with(".json")) return open_index(path);
        return from_file(SafetensorsFile::open(path));
    }

    /// Opens the index and every shard it names.
    static Checkpoint open_index(const std::string& index_path) {
        namespace fs = std::filesystem;
        Checkpoint c;
        c.path_ = index_path;
        auto fail = [&](const std::string& what) -> void {
            throw IoError("safetensors index '" + detail::escaped(index_path) + "': " + what);
        };
        std::string text;
        try {
            text = read_input_file(index_path, max_index_bytes, "");
        } catch (const IoError& e) {
            throw IoError("safetensors index " + std::string(e.what()));  // "safetensors index '<path>': <reason>"
        }
        const auto* u = reinterpret_cast<const unsigned char*>(text.data());
        if (const std::size_t bad = detail::utf8_error_offset(u, text.size()); bad != text.size())
            fail("not valid UTF-8 (byte offset " + std::to_string(bad) + ")");
        nlohmann::json j;
        if (const std::string err = detail::parse_json_strict(text, j); !err.empty()) fail("the file " + err);
        if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
            fail("expected an object with a \"weight_map\" object");
        const fs::path dir = fs::path(index_path).parent_path();
        std::map<std::string, std::size_t> shard_of_file;
        for (const auto& [name, v] : j["weight_map"].items()) {
            if (!v.is_string()) fail("weight_map " + detail::quoted_name(name) + " must be a string, found " + v.type_name());
            const std::string& file = v.get_ref<const std::string&>();
            const fs::path rel(file);
            bool escapes = file.empty() || rel.is_absolute();
            for (const auto& part : rel)
                if (part == "..") escapes = true;
            if (escapes)
                fail("weight_map " + detail::quoted_name(name) + " names the shard " + detail::quoted_name(file) +
                     ", which is not a relative path inside the index's directory");
            auto [it, added] = shard_of_file.emplace(file, c.shards_.size());
            if (added) c.shards_.push_back(SafetensorsFile::open((dir / rel).string()));
            c.where_.emplace(name, it->second);
        }
        std::string absent;
        std::size_t n_absent = 0;
        for (const auto& [name, shard] : c.where_)
            if (!c.shards_[shard].contains(name)) {
                if (n_absent++ < 20)
                    absent += " " + detail::quoted_name(name) + " (in " + detail::escaped(c.shards_[shard].path()) + ")";
            }
        if (n_absent)
            fail(std::to_string(n_absent) + " tensors of the weight_map are not in their shard:" + absent +
                 (n_absent > 20 ? " ..." : ""));
        return c;
    }

    static Checkpoint from_file(SafetensorsFile file) {
        Checkpoint c;
        c.path_ = file.path();
        for (const auto& name : file.names()) c.where_.emplace(name, 0);
        c.shards_.push_back(std::move(file));
        return c;
    }

    /// The index file, or the single file.
    const std::string& path() const { return path_; }
    std::size_t shard_count() const { return shards_.size(); }
    const SafetensorsFile& shard(std::size_t i) const { return shards_.at(i); }
    const SafetensorsFile& file_of(const std::string& name) const { return shards_[locate(name)]; }

    std::size_t size() const { return where_.size(); }
    bool contains(const std::string& name) const { return where_.count(name) != 0; }
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        out.reserve(where_.size());
        for (const auto& [name, shard] : where_) out.push_back(name);
        return out;
    }
    const TensorInfo& info(const std::string& name) const { return file_of(name).info(name); }
    Shape shape(const std::string& name) const { return info(name).shape; }
    std::string dtype(const std::string& name) const { return file_of(name).dtype(name); }
    template <class T>
    void read_into(const std::string& name, TensorView<T> dst) const {
        file_of(name).read_into(name, dst);
    }
    template <class T>
    Tensor<T> read(const std::string& name) const {
        return file_of(name).template read<T>(name);
    }

private:
    Checkpoint() = default;
    std::size_t locate(const std::string& name) const {
        auto it = where_.find(name);
        if (it == where_.end())
            throw IoError("checkpoint '" + detail::escaped(path_) + "': tensor " + detail::quoted_name(name) + ": not in the checkpoint (" +
                          std::to_string(where_.size()) + " tensors)");
        return it->second;
    }

    std::string path_;
    std::vector<SafetensorsFile> shards_;
    std::map<std::string, std::size_t> where_;  // tensor name → index into shards_
};

/// A sharded checkpoint is a Checkpoint opened from its index: ShardedSafetensors::open(index).
using ShardedSafetensors = Checkpoint;

/// What load_parameters reads from: SafetensorsFile or Checkpoint.
template <class S>
concept TensorSource = requires(const S& s, const std::string& name, TensorView<float> v) {
    { s.path() } -> std::convertible_to<std::string>;
    { s.names() } -> std::same_as<std::vector<std::string>>;
    { s.contains(name) } -> std::same_as<bool>;
    { s.info(name) } -> std::same_as<const TensorInfo&>;
    s.read_into(name, v);
};

namespace detail {

template <class X>
struct is_host_tensor : std::false_type {};
template <class T>
struct is_host_tensor<Tensor<T>> : std::true_type {};

/// What a load found wrong, gathered over every key before anything is read, and reported as
/// one IoError (load_parameters and io/tensor_map.hpp's load_mapped).
struct LoadProblems {
    std::vector<std::string> missing, mismatched, bad_dtype, unexpected;

    /// Keys under `prefix` that no parameter claims. HF keeps non-persistent buffers such as
    /// embeddings.position_ids out of its own state dicts but old checkpoints hold them
    /// (registered with persistent=False in modeling_clip.py): never a parameter.
    template <class S>
    void find_unexpected(const S& source, const std::string& prefix, const std::set<std::string>& expected,
                         const std::vector<std::string>& ignored = {}) {
        for (const auto& key : source.names()) {
            if (!key.starts_with(prefix) || expected.count(key) || key.ends_with("position_ids")) continue;
            bool skip = false;
            for (const auto& i : ignored) skip = skip || key.compare(prefix.size(), i.size(), i) == 0;
            if (skip) continue;
            const TensorInfo& e = source.info(key);
            unexpected.push_back(escaped(key) + " (found " + e.shape.str() + " " + std::string(to_string(e.dtype)) + ")");
        }
    }
    void throw_if_any(const std::string& path, const std::string& prefix) const {
        if (missing.empty() && mismatched.empty() && bad_dtype.empty() && unexpected.empty()) return;
        std::string msg = "safetensors '" + escaped(path) + "': cannot load parameters with prefix '" + escaped(prefix) + "'";
        auto list = [&](const std::vector<std::string>& items, const char* what, const char* sep) {
            if (items.empty()) return;
            // The first few name the problem; a folder of another model would list every key.
            constexpr std::size_t shown = 32;
            msg += "; " + std::to_string(items.size()) + " " + what + ":";
            for (std::size_t i = 0; i < items.size() && i < shown; ++i) msg += (i ? sep : " ") + items[i];
            if (items.size() > shown) msg += std::string(sep) + "and " + std::to_string(items.size() - shown) + " more";
        };
        list(missing, "missing", ", ");
        list(mismatched, "with the wrong shape", "; ");
        list(bad_dtype, "with an unusable dtype", "; ");
        list(unexpected, "unexpected", ", ");
        throw IoError(msg);
    }
};

/// Checks every parameter `module` names against `source` before anything is read; throws one
/// IoError listing each problem.
template <class M, TensorSource S>
void check_load(M& module, const S& source, const std::string& prefix, const LoadOptions& opt) {
    LoadProblems problems;
    std::set<std::string> named;
    module.visit([&](const std::string& name, auto& p) {
        // 16-bit storage is filled through its compute type (float staging, then rounded), so
        // a tensor is acceptable when it converts to that type.
        using T = compute_type_t<std::remove_cvref_t<decltype(*p.value.data())>>;
        const std::string key = prefix + name;
        named.insert(key);
        if (!source.contains(key)) {
            if (!opt.allow_missing) problems.missing.push_back(escaped(key) + " (expected " + p.value.shape().str() + ")");
            return;
        }
        const TensorInfo& e = source.info(key);
        if (!(e.shape == p.value.shape()))
            problems.mismatched.push_back(escaped(key) + ": expected shape " + p.value.shape().str() + ", found " + e.shape.str());
        if (const std::string why = conversion_problem<T>(e.dtype); !why.empty()) problems.bad_dtype.push_back(escaped(key) + ": " + why);
    });
    if (!opt.allow_unexpected) problems.find_unexpected(source, prefix, named, opt.ignored);
    problems.throw_if_any(source.path(), prefix);
}

}  // namespace detail

/// Loads every parameter that `module.visit` names from `source` (a SafetensorsFile or a
/// Checkpoint), under key `prefix + name` (e.g. prefix "text_model.encoder.layers.0."). All keys
/// are checked before any is read, and every missing key, wrong shape, unusable dtype and
/// unexpected key (one under `prefix` that the module does not name; keys ending in
/// "position_ids" never count) is reported in one IoError, so a failed load leaves the module
/// untouched. F16/BF16/F64 tensors are converted to the parameter's type. Host parameters only;
/// the overload taking a backend loads into device storage.
template <class M, TensorSource S>
void load_parameters(M& module, const S& source, const std::string& prefix = "", const LoadOptions& options = {}) {
    module.visit([](const std::string&, auto& p) {
        static_assert(detail::is_host_tensor<std::remove_cvref_t<decltype(p.value)>>::value,
                      "load_parameters(module, ...) fills host parameters; pass the backend "
                      "(load_parameters(be, module, ...)) to load device storage.");
    });
    detail::check_load(module, source, prefix, options);
    module.visit([&](const std::string& name, auto& p) {
        const std::string key = prefix + name;
        if (source.contains(key)) source.read_into(key, p.value.view());
    });
}

/// Reads tensor `key` of `source` into `dst`, a tensor in `be`'s memory of its storage or Compute
/// type: directly where the backend's tensors are host memory of the Compute type, else (device
/// memory, or 16-bit storage, which read_into cannot convert to) into `staging` (a host tensor
/// of the Compute type) and over with be.from_host, which rounds to nearest even into 16-bit
/// storage. The one host-to-backend path of parameter and training-state loads.
template <Backend B, TensorSource S, class U>
void read_into_backend(B& be, const S& source, const std::string& key, TensorView<U> dst,
                       Tensor<typename B::Compute>& staging) {
    if constexpr (detail::is_host_tensor<typename B::Tensor>::value && std::is_same_v<U, typename B::Compute>) {
        source.read_into(key, dst);
    } else {
        staging.resize(dst.shape());
        source.read_into(key, staging.view());
        be.from_host(staging.cview(), dst);
    }
}

/// As above, for parameters in a backend's storage: each tensor is read into a host staging
/// tensor of the backend's Compute type and copied over with be.from_host (which rounds to the
/// storage type on 16-bit backends).
template <Backend B, class M, TensorSource S>
void load_parameters(B& be, M& module, const S& source, const std::string& prefix = "", const LoadOptions& options = {}) {
    detail::check_load(module, source, prefix, options);
    Tensor<typename B::Compute> staging;
    module.visit([&](const std::string& name, auto& p) {
        const std::string key = prefix + name;
        if (source.contains(key)) read_into_backend(be, source, key, p.value.view(), staging);
    });
}

/// One tensor to write: F32 from float, F64 from double, from host memory that outlives the call.
struct TensorToSave {
    std::string name;
    Shape shape;
    Dtype dtype = Dtype::F32;
    const void* data = nullptr;

    TensorToSave(std::string n, ConstView<float> v) : name(std::move(n)), shape(v.shape()), dtype(Dtype::F32), data(v.data()) {}
    TensorToSave(std::string n, ConstView<double> v) : name(std::move(n)), shape(v.shape()), dtype(Dtype::F64), data(v.data()) {}
    TensorToSave(std::string n, Shape s, const float* p) : name(std::move(n)), shape(s), dtype(Dtype::F32), data(p) {}
};


/// Writes `tensors` and `metadata` to `path` atomically (io/atomic_file.hpp): on failure `path`
/// keeps its old content (or stays absent) and IoError names the file and the cause. Layout as the reference writer's `prepare`: keys sorted, data in order of descending
/// element size then name (so every tensor is aligned to its element size), header padded
/// with spaces to a multiple of 8 bytes.
inline void save_safetensors(const std::string& path, const std::vector<TensorToSave>& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
    auto fail = [&](const std::string& what) -> void { throw IoError("safetensors '" + path + "': " + what); };
    auto utf8_ok = [](const std::string& s) {
        return detail::utf8_error_offset(reinterpret_cast<const unsigned char*>(s.data()), s.size()) == s.size();
    };
    std::vector<const TensorToSave*> order;
    std::set<std::string> seen;
    for (const auto& t : tensors) {
        if (t.name == "__metadata__") fail("'__metadata__' is reserved and cannot name a tensor");
        if (!utf8_ok(t.name)) fail("tensor name " + detail::quoted_name(t.name) + " is not valid UTF-8");
        if (!seen.insert(t.name).second) fail("tensor " + detail::quoted_name(t.name) + " is given twice");
        if (t.shape.numel() > 0 && !t.data) fail("tensor " + detail::quoted_name(t.name) + " has no data");
        order.push_back(&t);
    }
    for (const auto& [k, v] : metadata)
        if (!utf8_ok(k) || !utf8_ok(v)) fail("__metadata__ " + detail::quoted_name(k) + " is not valid UTF-8");
    std::stable_sort(order.begin(), order.end(), [](const TensorToSave* a, const TensorToSave* b) {
        if (itemsize(a->dtype) != itemsize(b->dtype)) return itemsize(a->dtype) > itemsize(b->dtype);
        return a->name < b->name;
    });

    nlohmann::json header = nlohmann::json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::uint64_t offset = 0;
    for (const TensorToSave* t : order) {
        const std::uint64_t n = static_cast<std::uint64_t>(t->shape.numel()) * itemsize(t->dtype);
        std::vector<index_t> dims;
        for (int i = 0; i < t->shape.rank(); ++i) dims.push_back(t->shape[i]);
        header[t->name] = {{"dtype", std::string(to_string(t->dtype))}, {"shape", dims}, {"data_offsets", {offset, offset + n}}};
        offset += n;
    }
    std::string text = header.dump();
    text.resize((text.size() + 7) / 8 * 8, ' ');
    if (text.size() > SafetensorsFile::max_header_bytes)
        fail("header of " + std::to_string(text.size()) + " bytes exceeds the format's limit");
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((std::uint64_t(text.size()) >> (8 * i)) & 0xFF);

    std::vector<std::string_view> parts = {std::string_view(reinterpret_cast<const char*>(len), 8), text};
    for (const TensorToSave* t : order)
        parts.emplace_back(static_cast<const char*>(t->data), static_cast<std::size_t>(t->shape.numel()) * itemsize(t->dtype));
    write_file_atomic(path, parts, "safetensors");
}

/// Saves every parameter `module.visit` names as F32 (float) or F64 (double) under
/// `prefix + name`, the keys load_parameters reads back.
template <class M>
void save_parameters(M& module, const std::string& path, const std::string& prefix = "",
                     const std::map<std::string, std::string>& metadata = {}) {
    std::vector<TensorToSave> out;
    module.visit([&](const std::string& name, auto& p) {
        static_assert(detail::is_host_tensor<std::remove_cvref_t<decltype(p.value)>>::value,
                      "save_parameters(module, ...) reads host parameters; pass the backend "
                      "(save_parameters(be, module, ...)) to save device storage.");
        out.emplace_back(prefix + name, p.value.cview());
    });
    save_safetensors(path, out, metadata);
}

/// Tensors in a backend's memory gathered for one save_safetensors call, the one backend-to-host
/// path of parameter and training-state saves. Host tensors of the Compute type are written from
/// where they are; every other (device memory, 16-bit storage) is copied with be.to_host into a
/// host tensor of the Compute type, which holds every storage value exactly (16-bit parameters
/// are written as F32). Compute float gives F32, double F64.
template <Backend B>
class StagedTensors {
public:
    /// `src` (storage or Compute type) must outlive the save when it is host memory of the Compute type.
    template <class U>
    void add(B& be, std::string name, ConstView<U> src) {
        if constexpr (detail::is_host_tensor<typename B::Tensor>::value && std::is_same_v<U, typename B::Compute>) {
            tensors_.emplace_back(std::move(name), src);
        } else {
            Tensor<typename B::Compute>& h = copies_.emplace_back(src.shape());
            be.to_host(src, h.view());
            tensors_.emplace_back(std::move(name), h.cview());
        }
    }
    const std::vector<TensorToSave>& tensors() const { return tensors_; }

private:
    std::deque<Tensor<typename B::Compute>> copies_;  // a deque never moves what it already holds
    std::vector<TensorToSave> tensors_;
};

/// Adds every parameter `module.visit` names to `out` under `prefix + name`.
template <Backend B, class M>
void stage_parameters(B& be, M& module, StagedTensors<B>& out, const std::string& prefix = "") {
    module.visit([&](const std::string& name, auto& p) { out.add(be, prefix + name, p.value.cview()); });
}

/// As above, for parameters in a backend's storage (copied to host with be.to_host first).
template <Backend B, class M>
void save_parameters(B& be, M& module, const std::string& path, const std::string& prefix = "",
                     const std::map<std::string, std::string>& metadata = {}) {
    StagedTensors<B> staged;
    stage_parameters(be, module, staged, prefix);
    save_safetensors(path, staged.tensors(), metadata);
}

}  // namespace mmalign::io
