// tests/support/hostile_inputs.hpp — the hostile-input corpus every reader of outside data runs.
//
// A reader is described once (a file it accepts, how to call it, its size cap) and
// check_hostile_inputs() puts each hostile variant where that file was and calls the reader in a
// child process, so that a hang is a failed check after a deadline (not a stuck test), a crash is a
// failed check (not a dead test binary), and the child's peak RSS can be measured. Variants:
//
//   missing      the file does not exist                   message says "no such file" (unless missing_accepted)
//   directory    a directory in its place                  "directory"
//   fifo         a FIFO nobody writes to                   "FIFO"
//   dev_zero     a symlink to /dev/zero                    "character device"
//   empty        zero bytes                                "empty"        (unless empty_accepted)
//   huge         a sparse file one byte over the cap       "more than"    (when cap_bytes > 0)
//   truncated    prefixes of the valid file               refused, or accepted where a prefix is itself valid
//   garbage      seeded random bytes of the valid size     refused        (unless lenient_content)
//   wrong_type   each of `wrong_type` (another format)     refused        (unless lenient_content)
//
// Every refusal must be an mmalign::Error whose message is one line and names the file (its
// file name appears in it); anything else — another exception, a signal, a deadline passed, more
// than max_rss_mb of new resident memory — fails the check with the variant named.
#pragma once

#include <doctest/doctest.h>

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <typeinfo>
#include <vector>

#include "mmalign/core/error.hpp"
#include "support/temp_dir.hpp"

namespace mmalign::test {

struct HostileReader {
    std::string name;                  // shown in failures, e.g. "read_json_file"
    std::filesystem::path valid;       // a file the reader accepts; its bytes seed truncation/garbage
    // Reads the input at `file` (the hostile variant, at valid's file name). With copy_folder the
    // harness first copies valid's folder, so a reader that takes a folder finds its other files.
    std::function<void(const std::filesystem::path& file)> read;
    bool copy_folder = false;
    std::uintmax_t cap_bytes = 0;      // the reader's documented size cap; 0 skips the "huge" variant
    bool empty_accepted = false;       // an empty file is valid input for this reader
    bool missing_accepted = false;     // the file is optional: without it the reader uses defaults
    bool lenient_content = false;      // garbage/wrong-type content may be accepted (plain text formats)
    bool every_truncation_fails = false;  // binary formats: no proper prefix is valid
    std::vector<std::string> wrong_type;  // contents of other formats to put in the file's place
    double seconds = 1.0;              // deadline per variant (scaled by MMALIGN_HOSTILE_TIME_SCALE)
    double max_rss_mb = 200.0;         // new resident memory per variant (not checked when sanitized)
};

struct HostileOutcome {
    std::string variant;
    enum class Kind { refused, accepted, other_exception, crashed, timed_out } kind = Kind::crashed;
    std::string message;               // the exception's message, or what went wrong
    double seconds = 0;
    double rss_mb = 0;                 // child's peak RSS above the parent's at the fork
};

namespace detail {

inline double hostile_time_scale() {
    const char* s = std::getenv("MMALIGN_HOSTILE_TIME_SCALE");
    const double v = s ? std::atof(s) : 1.0;
    return v > 0 ? v : 1.0;
}

inline bool hostile_sanitized() {
#if defined(__SANITIZE_ADDRESS__)
    return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return true;
#else
    return false;
#endif
#else
    return false;
#endif
}

inline double current_rss_mb() {
    std::ifstream f("/proc/self/statm");
    long pages = 0, resident = 0;
    f >> pages >> resident;
    return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

/// Runs read(file) in a child; reports how it ended.
inline HostileOutcome run_in_child(const std::string& variant, const std::function<void(const std::filesystem::path&)>& read,
                                   const std::filesystem::path& file, double seconds) {
    HostileOutcome out;
    out.variant = variant;
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const double rss_before = current_rss_mb();
    const auto start = std::chrono::steady_clock::now();
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(fds[0]);
        // The test framework's crash handlers would report the child's signal as the test's own.
        for (const int sig : {SIGABRT, SIGSEGV, SIGFPE, SIGILL, SIGBUS}) ::signal(sig, SIG_DFL);
        std::string reply;
        try {
            read(file);
            reply = "A";
        } catch (const mmalign::Error& e) {
            reply = std::string("R") + e.what();
        } catch (const std::exception& e) {
            reply = std::string("X") + typeid(e).name() + ": " + e.what();
        } catch (...) {
            reply = "Xa non-std exception";
        }
        std::size_t off = 0;
        while (off < reply.size()) {
            const ssize_t n = ::write(fds[1], reply.data() + off, reply.size() - off);
            if (n <= 0) break;
            off += static_cast<std::size_t>(n);
        }
        ::_exit(0);  // no destructors or atexit handlers of the parent's state
    }
    ::close(fds[1]);
    std::string reply;
    bool timed_out = false;
    const auto deadline = start + std::chrono::duration<double>(seconds);
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            timed_out = true;
            break;
        }
        pollfd p{fds[0], POLLIN, 0};
        const int r = ::poll(&p, 1, static_cast<int>(left.count()));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;  // re-checks the deadline
        char buf[4096];
        const ssize_t n = ::read(fds[0], buf, sizeof buf);
        if (n <= 0) break;  // EOF: the child has exited (or closed the pipe)
        reply.append(buf, static_cast<std::size_t>(n));
    }
    if (timed_out) ::kill(pid, SIGKILL);
    int status = 0;
    rusage usage{};
    ::wait4(pid, &status, 0, &usage);
    ::close(fds[0]);
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    out.rss_mb = static_cast<double>(usage.ru_maxrss) / 1024.0 - rss_before;
    if (timed_out) {
        out.kind = HostileOutcome::Kind::timed_out;
        out.message = "no answer within " + std::to_string(seconds) + " s";
    } else if (!WIFEXITED(status) || reply.empty()) {
        out.kind = HostileOutcome::Kind::crashed;
        out.message = WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                                          : "exited with status " + std::to_string(WEXITSTATUS(status)) + " and no answer";
    } else if (reply[0] == 'A') {
        out.kind = HostileOutcome::Kind::accepted;
    } else if (reply[0] == 'R') {
        out.kind = HostileOutcome::Kind::refused;
        out.message = reply.substr(1);
    } else {
        out.kind = HostileOutcome::Kind::other_exception;
        out.message = reply.substr(1);
    }
    return out;
}

inline std::string read_bytes(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::filesystem::path& p, const std::string& bytes) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace detail

/// Runs every variant and returns how each ended (no checks: check_hostile_inputs checks them).
inline std::vector<HostileOutcome> run_hostile_inputs(const HostileReader& r) {
    namespace fs = std::filesystem;
    REQUIRE_MESSAGE(fs::is_regular_file(r.valid), r.name << ": the valid input " << r.valid << " is missing");
    const std::string valid_bytes = detail::read_bytes(r.valid);
    const double seconds = r.seconds * detail::hostile_time_scale();
    std::vector<HostileOutcome> outcomes;
    int serial = 0;

    // A fresh place for the file (a copy of its folder when the reader needs the neighbours).
    auto place = [&](const std::string& variant, const std::function<void(const fs::path&)>& make) {
        TempDir tmp;
        fs::path file;
        if (r.copy_folder) {
            const fs::path folder = tmp.path / ("folder" + std::to_string(serial++));
            fs::copy(r.valid.parent_path(), folder, fs::copy_options::recursive);
            file = folder / r.valid.filename();
            fs::remove(file);
        } else {
            file = tmp.path / r.valid.filename();
        }
        make(file);
        outcomes.push_back(detail::run_in_child(variant, r.read, file, seconds));
    };

    place("missing", [](const fs::path&) {});
    place("directory", [](const fs::path& f) { fs::create_directory(f); });
    place("fifo", [](const fs::path& f) { REQUIRE(::mkfifo(f.c_str(), 0600) == 0); });
    place("dev_zero", [](const fs::path& f) { fs::create_symlink("/dev/zero", f); });
    place("empty", [](const fs::path& f) { detail::write_bytes(f, ""); });
    if (r.cap_bytes > 0)
        place("huge", [&](const fs::path& f) {
            detail::write_bytes(f, valid_bytes.substr(0, 64));
            fs::resize_file(f, r.cap_bytes + 1);  // sparse: no disk used
        });
    std::vector<std::size_t> cuts;
    const std::size_t n = valid_bytes.size();
    for (std::size_t c : {std::size_t(1), std::size_t(2), n / 4, n / 2, 3 * n / 4, n - 1})
        if (c > 0 && c < n && std::find(cuts.begin(), cuts.end(), c) == cuts.end()) cuts.push_back(c);
    for (std::size_t c : cuts)
        place("truncated at " + std::to_string(c) + " of " + std::to_string(n),
              [&](const fs::path& f) { detail::write_bytes(f, valid_bytes.substr(0, c)); });
    place("garbage", [&](const fs::path& f) {
        std::mt19937 gen(20261205);
        std::string g(n, '\0');
        for (auto& ch : g) ch = static_cast<char>(gen() & 0xff);
        detail::write_bytes(f, g);
    });
    for (std::size_t i = 0; i < r.wrong_type.size(); ++i)
        place("wrong_type " + std::to_string(i), [&](const fs::path& f) { detail::write_bytes(f, r.wrong_type[i]); });
    return outcomes;
}

/// The checks of the file comment, one CHECK per property and variant.
inline void check_hostile_inputs(const HostileReader& r) {
    const auto outcomes = run_hostile_inputs(r);
    const std::string file = r.valid.filename().string();
    const bool verbose = std::getenv("MMALIGN_HOSTILE_VERBOSE") != nullptr;  // one line per variant, for docs
    for (const HostileOutcome& o : outcomes) {
        if (verbose)
            std::printf("%s | %s | %s | %s | %s | %.3f s | %.1f MB\n", r.name.c_str(), file.c_str(), o.variant.c_str(),
                        o.kind == HostileOutcome::Kind::refused    ? "refused"
                        : o.kind == HostileOutcome::Kind::accepted ? "accepted"
                                                                   : "FAILED",
                        o.message.c_str(), o.seconds, o.rss_mb);
        INFO(r.name << " given " << o.variant << " in place of " << file << ": " << o.message);
        using K = HostileOutcome::Kind;
        CHECK_MESSAGE(o.kind != K::crashed, "crashed");
        CHECK_MESSAGE(o.kind != K::timed_out, "hung");
        CHECK_MESSAGE(o.kind != K::other_exception, "threw something other than mmalign::Error");
        if (!detail::hostile_sanitized())
            CHECK_MESSAGE(o.rss_mb <= r.max_rss_mb, "used " << o.rss_mb << " MB of new resident memory");
        const bool must_refuse =
            (o.variant == "missing" && !r.missing_accepted) || o.variant == "directory" || o.variant == "fifo" || o.variant == "dev_zero" ||
            o.variant == "huge" || (o.variant == "empty" && !r.empty_accepted) ||
            (o.variant.rfind("truncated", 0) == 0 && r.every_truncation_fails) ||
            ((o.variant == "garbage" || o.variant.rfind("wrong_type", 0) == 0) && !r.lenient_content);
        if (must_refuse) CHECK_MESSAGE(o.kind == K::refused, "was not refused");
        if (o.kind != K::refused) continue;
        CHECK_MESSAGE(o.message.find('\n') == std::string::npos, "message spans lines");
        CHECK_MESSAGE(o.message.find(file) != std::string::npos, "message does not name the file");
        const char* words = o.variant == "missing"     ? "no such file"
                            : o.variant == "directory" ? "directory"
                            : o.variant == "fifo"      ? "FIFO"
                            : o.variant == "dev_zero"  ? "character device"
                            : o.variant == "huge"      ? "more than"
                            : o.variant == "empty"     ? "empty"
                                                       : nullptr;
        if (words) CHECK_MESSAGE(o.message.find(words) != std::string::npos, "message lacks \"" << words << "\"");
    }
}

}  // namespace mmalign::test
