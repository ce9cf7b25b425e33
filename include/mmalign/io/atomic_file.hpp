// mmalign/io/atomic_file.hpp — writing a file so that a reader sees the old content or the new,
// never a part: into "<path>.tmp.<pid>.<n>" in the same directory, fsync, rename over `path`,
// fsync the directory (POSIX rename(2) replaces the name atomically). On failure the temporary
// file is removed, `path` keeps its old content (or stays absent) and IoError names the file,
// the stage and the cause. Used for checkpoints (safetensors), PNG files and plots.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <unistd.h>

#include "mmalign/core/error.hpp"

namespace mmalign::io {

namespace detail {

/// Writes all n bytes; returns 0 or the errno of the failing write.
inline int write_all(int fd, const void* p, std::size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n) {
        const ssize_t w = ::write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return errno;
        if (w == 0) return EIO;
        c += w;
        n -= static_cast<std::size_t>(w);
    }
    return 0;
}

}  // namespace detail

/// Writes the concatenation of `parts` to `path` atomically (see the header comment). `who`
/// starts the error message: "<who> '<path>': <what went wrong>".
inline void write_file_atomic(const std::string& path, std::span<const std::string_view> parts,
                              const std::string& who) {
    auto fail = [&](const std::string& what) { throw IoError(who + " '" + path + "': " + what); };
    auto text = [](int err) { return std::string(std::strerror(err)); };
    // O_EXCL never follows a planted link or shares a file; the counter separates threads, and
    // a name left by a crashed process that had the same pid is skipped.
    static std::atomic<unsigned> counter{0};
    std::string tmp;
    int fd = -1, open_err = 0;
    for (int attempt = 0; fd < 0 && attempt < 100; ++attempt) {
        tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
        fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        open_err = errno;
        if (fd < 0 && open_err != EEXIST) break;
    }
    if (fd < 0) fail("cannot create the temporary file '" + tmp + "': " + text(open_err));
    const char* stage = "write";
    int err = 0;
    for (std::string_view part : parts)
        if (!err) err = detail::write_all(fd, part.data(), part.size());
    if (!err && ::fsync(fd) != 0) err = errno, stage = "fsync";
    if (::close(fd) != 0 && !err) err = errno, stage = "close";
    if (err) {
        ::unlink(tmp.c_str());
        fail(std::string(stage) + " of the temporary file '" + tmp + "' failed: " + text(err));
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        fail("cannot rename the temporary file over it: " + text(e));
    }
    // The rename is durable only once the directory entry is on disk.
    const std::string dir = std::filesystem::path(path).parent_path().string();
    const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        const int rc = ::fsync(dfd);
        const int e = errno;
        ::close(dfd);
        if (rc != 0 && e != EINVAL)  // EINVAL: a filesystem without directory fsync
            fail("written, but fsync of the directory failed: " + text(e));
    }
}

inline void write_file_atomic(const std::string& path, std::initializer_list<std::string_view> parts,
                              const std::string& who) {
    write_file_atomic(path, std::span<const std::string_view>(parts.begin(), parts.size()), who);
}

}  // namespace mmalign::io
