// mmalign/train/run_directory.hpp — the output directory of one training run: one run at a time
// (an advisory flock(2) on OUT/.lock, which holds the holder's pid; the kernel drops the lock when
// the holder dies, so a killed run never blocks the next), the temporary files of dead writers
// removed at start (io/atomic_file.hpp names them "<file>.tmp.<pid>.<n>"), and the checkpoint
// folders "checkpoint-<step>" (the naming of transformers' Trainer) found for resuming.
#pragma once

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include "mmalign/core/error.hpp"

namespace mmalign {

class RunDirectory {
public:
    /// Creates `dir` when absent and takes its lock; IoError naming the holder's pid when another
    /// run has it.
    explicit RunDirectory(std::string dir) : dir_(std::move(dir)) {
        namespace fs = std::filesystem;
        std::error_code ec;
        fs::create_directories(dir_, ec);
        if (ec || !fs::is_directory(dir_))
            throw IoError(dir_ + ": cannot use as the output directory" + (ec ? ": " + ec.message() : ": not a directory"));
        const std::string lock = dir_ + "/.lock";
        fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd_ < 0) throw IoError(lock + ": cannot open the run lock: " + std::strerror(errno));
        if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
            char buf[32] = {};
            const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
            ::close(fd_);
            fd_ = -1;
            throw IoError(dir_ + ": another run writes this output directory (pid " +
                          (n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string("unknown")) + ", " + lock + ")");
        }
        const std::string pid = std::to_string(::getpid());
        if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
            throw IoError(lock + ": cannot write the run lock: " + std::strerror(errno));
    }
    RunDirectory(const RunDirectory&) = delete;
    RunDirectory& operator=(const RunDirectory&) = delete;
    ~RunDirectory() {
        if (fd_ >= 0) ::close(fd_);  // closing releases the flock
    }

    const std::string& path() const { return dir_; }
    std::string checkpoint(long step) const { return dir_ + "/checkpoint-" + std::to_string(step); }

    /// The largest step of a complete checkpoint folder (one holding `marker`), if any.
    std::optional<long> latest_checkpoint(const std::string& marker) const {
        namespace fs = std::filesystem;
        std::optional<long> best;
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(dir_, ec)) {
            const std::string name = e.path().filename().string();
            constexpr std::string_view prefix = "checkpoint-";
            if (name.rfind(prefix, 0) != 0) continue;
            long step = -1;
            const char* first = name.data() + prefix.size();
            const auto [end, err] = std::from_chars(first, name.data() + name.size(), step);
            if (err != std::errc() || end != name.data() + name.size() || step < 0) continue;
            if (!fs::is_regular_file(e.path() / marker)) continue;
            if (!best || step > *best) best = step;
        }
        return best;
    }

    /// Removes "<name>.tmp.<pid>.<n>" files whose writer is no longer alive, here and in the
    /// checkpoint folders; returns how many.
    std::size_t remove_stale_temporaries() const {
        namespace fs = std::filesystem;
        std::size_t removed = 0;
        std::error_code ec;
        for (const auto& e : fs::recursive_directory_iterator(dir_, fs::directory_options::skip_permission_denied, ec)) {
            if (!e.is_regular_file()) continue;
            const std::optional<long> pid = writer_pid(e.path().filename().string());
            if (!pid || *pid == ::getpid() || alive(*pid)) continue;
            std::error_code rm;
            if (fs::remove(e.path(), rm)) ++removed;
        }
        return removed;
    }

private:
    static std::optional<long> writer_pid(const std::string& name) {
        const std::size_t tmp = name.rfind(".tmp.");
        if (tmp == std::string::npos) return std::nullopt;
        const std::size_t dot = name.find('.', tmp + 5);
        if (dot == std::string::npos) return std::nullopt;
        long pid = 0, n = 0;
        const char* s = name.data();
        auto a = std::from_chars(s + tmp + 5, s + dot, pid);
        auto b = std::from_chars(s + dot + 1, s + name.size(), n);
        if (a.ec != std::errc() || a.ptr != s + dot || b.ec != std::errc() || b.ptr != s + name.size() || pid <= 0)
            return std::nullopt;
        return pid;
    }
    static bool alive(long pid) { return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM; }

    std::string dir_;
    int fd_ = -1;
};

}  // namespace mmalign
