// The pieces every inference benchmark program shares: flags, timed calls and their median, and
// the process's peak resident memory.
#pragma once

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

namespace mmalign::bench {

/// The value after `flag` on the command line, or `fallback`.
inline std::string arg(int argc, char** argv, const char* flag, std::string fallback) {
    for (int i = 1; i + 1 < argc; ++i)
        if (flag == std::string(argv[i])) return argv[i + 1];
    return fallback;
}

/// Runs `call` once to warm up, then `iters` times; returns each timed call's seconds.
inline std::vector<double> time_calls(long iters, const std::function<void()>& call) {
    call();  // allocates the scratch arena, faults in the weights
    std::vector<double> secs;
    for (long i = 0; i < iters; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        call();
        secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return secs;
}

inline double median_of(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// A "Vm…:" line of /proc/self/status in MB (VmHWM: peak resident set, VmRSS: now); −1 where
/// the file or the field is missing (not Linux).
inline double proc_status_mb(const std::string& field) {
    std::ifstream in("/proc/self/status");
    for (std::string line; std::getline(in, line);)
        if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1)) / 1024.0;  // kB
    return -1;
}

}  // namespace mmalign::bench
