// mmalign/train/tensorboard.hpp — TensorBoard event files ("tfevents") written without TensorFlow
// or protobuf, so `tensorboard --logdir DIR` shows a run's scalars.
//
// The file is a sequence of TFRecords (tensorflow/core/lib/io/record_writer.cc):
//   uint64 length | uint32 masked_crc32c(length) | data[length] | uint32 masked_crc32c(data)
// little-endian, CRC-32C (Castagnoli) masked as ((crc >> 15) | (crc << 17)) + 0xa282ead8, each
// `data` a serialized tensorflow.Event (tensorflow/core/util/event.proto; tensorboard's copy is
// tensorboard/compat/proto/event.proto):
//   Event         wall_time double = 1, step int64 = 2, file_version string = 3, summary Summary = 5,
//                 session_log SessionLog = 7, source_metadata SourceMetadata = 10
//   Summary       repeated Value value = 1;  Value: tag string = 1, simple_value float = 2
//   SessionLog    status enum = 1 (START = 1);  SourceMetadata: writer string = 1
// The protobuf wire format is written by hand (varints, fixed64 doubles, fixed32 floats,
// length-delimited strings and messages), fields in field-number order and proto3's rule that a
// zero/empty singular field is left out while a set oneof member (simple_value, file_version,
// summary, session_log) is always written — the bytes protobuf's own serializer produces, checked
// against a file from tensorboard's EventFileWriter (tests/train/test_tensorboard.cpp).
//
// TensorBoardWriter opens a new file per run, events.out.tfevents.<unix seconds>.<hostname> as
// TensorFlow names them (a suffix is added if that name exists), starts it with the file_version
// event "brain.Event:2", and flushes every record, so a crashed run keeps its history. A resumed
// run adds a new file to the same folder and may mark its first step with a SessionLog START,
// which makes TensorBoard drop the earlier run's events from that step on (they were never part
// of the resumed history).
#pragma once

#include <array>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <unistd.h>

#include "mmalign/core/error.hpp"

namespace mmalign {

namespace tfevents {

namespace detail {
inline constexpr std::array<std::uint32_t, 256> crc32c_table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t n = 0; n < 256; ++n) {
        std::uint32_t c = n;
        for (int k = 0; k < 8; ++k) c = (c & 1) ? 0x82F63B78u ^ (c >> 1) : c >> 1;  // reflected 0x1EDC6F41
        t[n] = c;
    }
    return t;
}();
}  // namespace detail

/// CRC-32C (Castagnoli, RFC 3720 appendix B.4) of `n` bytes; `crc` continues an earlier call.
inline std::uint32_t crc32c(const void* data, std::size_t n, std::uint32_t crc = 0) {
    const auto* p = static_cast<const unsigned char*>(data);
    crc = ~crc;
    for (std::size_t i = 0; i < n; ++i) crc = detail::crc32c_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/// TFRecord's masked CRC (tensorflow/core/lib/hash/crc32c.h: Mask), so that a CRC stored inside
/// the data it covers does not check itself.
inline std::uint32_t masked_crc32c(const void* data, std::size_t n) {
    const std::uint32_t c = crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

// ---- protobuf wire format (protobuf.dev/programming-guides/encoding) ------------------------
enum class WireType : std::uint32_t { varint = 0, fixed64 = 1, length_delimited = 2, fixed32 = 5 };

/// Base-128 varint, least significant group first. An int64 is sent as its two's-complement
/// uint64, so a negative one takes 10 bytes.
inline void put_varint(std::string& out, std::uint64_t v) {
    while (v >= 0x80) out.push_back(char(std::uint8_t(v) | 0x80)), v >>= 7;
    out.push_back(char(v));
}

inline void put_key(std::string& out, std::uint32_t field, WireType type) {
    put_varint(out, std::uint64_t(field) << 3 | std::uint32_t(type));
}

inline void put_fixed(std::string& out, const void* p, std::size_t n) {
    // The wire format is little-endian; so is every machine this library builds for.
    static_assert(std::endian::native == std::endian::little, "tfevents: the byte order is written for little-endian hosts");
    out.append(static_cast<const char*>(p), n);
}

inline void put_double(std::string& out, std::uint32_t field, double v) {
    put_key(out, field, WireType::fixed64);
    put_fixed(out, &v, 8);
}

inline void put_float(std::string& out, std::uint32_t field, float v) {
    put_key(out, field, WireType::fixed32);
    put_fixed(out, &v, 4);
}

inline void put_bytes(std::string& out, std::uint32_t field, std::string_view bytes) {
    put_key(out, field, WireType::length_delimited);
    put_varint(out, bytes.size());
    out.append(bytes);
}

// ---- Event messages -------------------------------------------------------------------------
// Singular proto3 scalars (wall_time, step, tag) are left out when zero or empty, as protobuf does.
inline void put_header(std::string& e, double wall_time, std::int64_t step) {
    if (wall_time != 0 || std::signbit(wall_time)) put_double(e, 1, wall_time);
    if (step != 0) {
        put_key(e, 2, WireType::varint);
        put_varint(e, std::uint64_t(step));
    }
}

/// The first event of every file: file_version "brain.Event:2" and the writer's name.
inline std::string file_version_event(double wall_time, std::string_view writer) {
    std::string e;
    put_header(e, wall_time, 0);
    put_bytes(e, 3, "brain.Event:2");
    if (!writer.empty()) {
        std::string meta;
        put_bytes(meta, 1, writer);
        put_bytes(e, 10, meta);
    }
    return e;
}

/// One event holding a Summary with a simple_value per (tag, value), all at `step`.
inline std::string scalars_event(double wall_time, std::int64_t step,
                                 const std::vector<std::pair<std::string, float>>& values) {
    std::string summary;
    for (const auto& [tag, value] : values) {
        std::string v;
        if (!tag.empty()) put_bytes(v, 1, tag);
        put_float(v, 2, value);
        put_bytes(summary, 1, v);
    }
    std::string e;
    put_header(e, wall_time, step);
    put_bytes(e, 5, summary);
    return e;
}

/// SessionLog START at `step`: TensorBoard drops the earlier events at or after `step`.
inline std::string session_start_event(double wall_time, std::int64_t step) {
    std::string log;
    put_key(log, 1, WireType::varint);
    put_varint(log, 1);  // SessionLog.START
    std::string e;
    put_header(e, wall_time, step);
    put_bytes(e, 7, log);
    return e;
}

/// `data` framed as one TFRecord.
inline std::string record(std::string_view data) {
    std::string r;
    const std::uint64_t len = data.size();
    put_fixed(r, &len, 8);
    const std::uint32_t len_crc = masked_crc32c(&len, 8);
    put_fixed(r, &len_crc, 4);
    r.append(data);
    const std::uint32_t data_crc = masked_crc32c(data.data(), data.size());
    put_fixed(r, &data_crc, 4);
    return r;
}

/// Seconds since the Unix epoch, with the fraction, as TensorFlow's wall_time.
inline double now() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace tfevents

struct TensorBoardOptions {
    std::optional<double> wall_time{};  // of the first event and the file name; default: now
    std::string writer = "mmalign";     // Event.source_metadata.writer of the first event
};

class TensorBoardWriter {
public:
    /// Creates `dir` (with its parents) and a new event file in it.
    explicit TensorBoardWriter(const std::string& dir, const TensorBoardOptions& options = {}) {
        const double t0 = options.wall_time ? *options.wall_time : tfevents::now();
        std::error_code ec;
        std::filesystem::create_directories(dir, ec);
        if (ec) throw IoError(dir + ": cannot create the TensorBoard folder: " + ec.message());
        char host[256] = {};
        if (::gethostname(host, sizeof host - 1) != 0 || !host[0]) std::strcpy(host, "localhost");
        for (char* c = host; *c; ++c)
            if (*c == '/') *c = '_';
        char name[320];
        std::snprintf(name, sizeof name, "events.out.tfevents.%010lld.%s", static_cast<long long>(t0), host);
        const std::string base = (std::filesystem::path(dir) / name).string();
        // "x": fail rather than append to a file another run (same second, same host) has made.
        path_ = base;
        for (int k = 0; !(file_ = std::fopen(path_.c_str(), "wbx")); ++k) {
            const int err = errno;
            if (err != EEXIST || k == 100)
                throw IoError(path_ + ": cannot create the TensorBoard event file: " + std::strerror(err));
            path_ = base + "." + std::to_string(::getpid()) + (k ? "." + std::to_string(k) : "");
        }
        write_record(tfevents::file_version_event(t0, options.writer));
    }
    ~TensorBoardWriter() {
        if (file_) std::fclose(file_);
    }
    TensorBoardWriter(const TensorBoardWriter&) = delete;
    TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;
    TensorBoardWriter(TensorBoardWriter&& o) noexcept : path_(std::move(o.path_)), file_(std::exchange(o.file_, nullptr)) {}
    TensorBoardWriter& operator=(TensorBoardWriter&& o) noexcept {
        if (this != &o) {
            if (file_) std::fclose(file_);
            path_ = std::move(o.path_), file_ = std::exchange(o.file_, nullptr);
        }
        return *this;
    }

    /// The event file's path.
    const std::string& path() const { return path_; }

    /// One event with a scalar per (tag, value) at `step` (values are stored as float, as
    /// TensorBoard's simple_value). Flushed before returning.
    void add_scalars(std::int64_t step, const std::vector<std::pair<std::string, float>>& values,
                     std::optional<double> wall_time = {}) {
        write_record(tfevents::scalars_event(wall_time ? *wall_time : tfevents::now(), step, values));
    }
    void add_scalar(const std::string& tag, float value, std::int64_t step, std::optional<double> wall_time = {}) {
        add_scalars(step, {{tag, value}}, wall_time);
    }
    /// Marks a resumed run's first step (see the top of this header).
    void add_session_start(std::int64_t step, std::optional<double> wall_time = {}) {
        write_record(tfevents::session_start_event(wall_time ? *wall_time : tfevents::now(), step));
    }

private:
    void write_record(std::string_view data) {
        const std::string r = tfevents::record(data);
        if (std::fwrite(r.data(), 1, r.size(), file_) != r.size() || std::fflush(file_) != 0) {
            const int err = errno;
            throw IoError(path_ + ": writing a TensorBoard event failed: " + std::strerror(err));
        }
    }

    std::string path_;
    std::FILE* file_ = nullptr;
};

}  // namespace mmalign
