// mmalign/io/input_file.hpp — opening the files mmalign reads, with one vocabulary of refusals.
//
// Every reader of outside data opens its file here, so that a FIFO never blocks the open (it is
// opened non-blocking and refused by its kind), a directory or a device is named as what it is,
// and a file larger than the reader's documented cap is refused from its size before a byte is
// read. The kind is taken with fstat on the open descriptor, so the file checked is the file read.
//
//   InputFile f = open_input_file(path, cap, "who")   checked descriptor + size; f.fd(), f.size()
//   std::string s = read_input_file(path, cap, "who")  the whole file (refuses a short read)
//
// Messages are one line, "<who>: '<path>': <reason>", with <reason> one of: no such file;
// permission denied; a directory / a FIFO (named pipe) / a character device / a block device /
// a socket, not a regular file; empty; N bytes, more than the M this reader accepts; truncated
// (read N of M bytes: the file changed while it was read). POSIX only (Linux, macOS, BSDs).
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mmalign/core/error.hpp"

namespace mmalign::io {

/// Size caps of the readers (bytes). Each is far above any real file of its kind; docs/robustness.md
/// lists them.
inline constexpr std::uintmax_t max_json_config_bytes = std::uintmax_t(64) << 20;  // config.json & co.

/// `s` with control bytes escaped (\x0a), so that a hostile name or path can neither break a
/// message over lines nor drive a terminal.
inline std::string escape_control(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) {
            static constexpr char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[u >> 4];
            out += hex[u & 15];
        } else {
            out += c;
        }
    }
    return out;
}

/// "<who>: '<path>': <reason>" as IoError, the path's control characters escaped.
[[noreturn]] inline void input_file_fail(std::string_view who, std::string_view path, std::string_view reason) {
    std::string msg;
    if (!who.empty()) msg.append(who).append(": ");
    msg.append("'").append(escape_control(path)).append("': ").append(reason);
    throw IoError(msg);
}

/// What a non-regular file is, in words ("a directory", "a FIFO (named pipe)", ...).
inline const char* file_kind_words(mode_t mode) {
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a regular file";
}

/// A read-only descriptor to a checked regular file; closes on destruction. Movable.
class InputFile {
public:
    InputFile() = default;
    InputFile(int fd, std::uintmax_t size, std::string path) : fd_(fd), size_(size), path_(std::move(path)) {}
    InputFile(InputFile&& o) noexcept : fd_(std::exchange(o.fd_, -1)), size_(o.size_), path_(std::move(o.path_)) {}
    InputFile& operator=(InputFile&& o) noexcept {
        if (this != &o) {
            close();
            fd_ = std::exchange(o.fd_, -1);
            size_ = o.size_;
            path_ = std::move(o.path_);
        }
        return *this;
    }
    InputFile(const InputFile&) = delete;
    InputFile& operator=(const InputFile&) = delete;
    ~InputFile() { close(); }

    int fd() const { return fd_; }
    std::uintmax_t size() const { return size_; }
    const std::string& path() const { return path_; }
    void close() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }
    /// Gives up ownership of the descriptor.
    int release() { return std::exchange(fd_, -1); }

private:
    int fd_ = -1;
    std::uintmax_t size_ = 0;
    std::string path_;
};

/// Opens `path` for reading: a regular file of 1 to max_bytes bytes (0 < size unless allow_empty).
inline InputFile open_input_file(const std::string& path, std::uintmax_t max_bytes, std::string_view who,
                                 bool allow_empty = false) {
    if (path.empty()) input_file_fail(who, path, "empty path");
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
    const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        const int e = errno;
        if (e == ENOENT || e == ENOTDIR) input_file_fail(who, path, "no such file");
        if (e == EACCES || e == EPERM) input_file_fail(who, path, "permission denied");
        input_file_fail(who, path, std::string("cannot open (") + std::strerror(e) + ")");
    }
    InputFile guard(fd, 0, path);  // closes the descriptor if a check below throws
    struct stat st {};
    if (::fstat(fd, &st) != 0) input_file_fail(who, path, std::string("cannot stat (") + std::strerror(errno) + ")");
    if (!S_ISREG(st.st_mode)) input_file_fail(who, path, std::string(file_kind_words(st.st_mode)) + ", not a regular file");
    // Back to blocking reads (no effect on a regular file's reads, but tidy for whoever reads on).
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags >= 0) (void)::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    const auto size = static_cast<std::uintmax_t>(st.st_size);
    if (size == 0 && !allow_empty) input_file_fail(who, path, "the file is empty");
    if (size > max_bytes)
        input_file_fail(who, path, std::to_string(size) + " bytes, more than the " + std::to_string(max_bytes) +
                                       " this reader accepts");
    return InputFile(guard.release(), size, path);
}

/// The whole of a regular file of at most max_bytes bytes.
inline std::string read_input_file(const std::string& path, std::uintmax_t max_bytes, std::string_view who,
                                   bool allow_empty = false) {
    const InputFile f = open_input_file(path, max_bytes, who, allow_empty);
    std::string data(static_cast<std::size_t>(f.size()), '\0');
    std::size_t got = 0;
    while (got < data.size()) {
        const ssize_t n = ::read(f.fd(), data.data() + got, data.size() - got);
        if (n < 0) {
            if (errno == EINTR) continue;
            input_file_fail(who, path, std::string("read error (") + std::strerror(errno) + ")");
        }
        if (n == 0) break;
        got += static_cast<std::size_t>(n);
    }
    if (got != data.size())
        input_file_fail(who, path, "truncated (read " + std::to_string(got) + " of " + std::to_string(data.size()) +
                                       " bytes: the file changed while it was read)");
    return data;
}

}  // namespace mmalign::io
