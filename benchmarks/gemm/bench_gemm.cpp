// benchmarks/gemm/bench_gemm.cpp — single-precision gemm throughput of the CPU backend.
//
// Measures C = A·B for square row-major float matrices (Trans::N for both operands, alpha 1,
// beta 0) through these routes, in GFLOP/s = 2·n³ / time:
//   mmalign/Eigen     CpuBackend<float> with GemmImpl::eigen  (Eigen product, Eigen::setNbThreads)
//   mmalign/OpenBLAS  CpuBackend<float> with GemmImpl::blas   (cblas_sgemm, openblas_set_num_threads)
//   mmalign/AVX-512   CpuBackend<float> with GemmImpl::avx512 (mmalign's packed kernel; only where
//                     the CPU has AVX-512F)
//   cblas_sgemm       OpenBLAS called directly, no mmalign in between
// For each size and thread count the routes run interleaved in 3 rounds of one block each (the
// order rotating every round), so drift in clock speed or machine load hits all routes alike. A
// block first waits until the previous route's thread team has stopped spinning (OpenBLAS's
// pthread workers busy-wait ~0.1 s after a call, OpenMP's a few ms; on a 2-core machine they
// slowed the next route's 2-thread product up to 2.5x when routes alternated product by product),
// then runs one untimed warm-up product, then timed products for >= --min-time / 3 seconds and at
// least one. So every route is timed >= 3 times and >= --min-time seconds in all; its median
// counts. Every route's output is checked against cblas_sgemm (max |C - C_cblas| / max |C_cblas|
// < 1e-3) and cblas_sgemm itself against double-precision dot products at sampled entries, so a
// fast wrong answer cannot win: the program exits 1 if any check fails.
//
// Eigen is compiled for the build's target (no -march: SSE2 on x86-64) while OpenBLAS picks its
// kernels at run time (DYNAMIC_ARCH builds), so on x86-64 the Eigen/cblas ratio mostly reflects
// that: building with -march=x86-64-v3 (AVX2, FMA) brings Eigen close to OpenBLAS.
//
// Build and run (Release; the benchmark adds no -march flags):
//   cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release
//   cmake --build build-bench --target bench_gemm
//   ./build-bench/benchmarks/bench_gemm [--sizes 256,512,1024,2048] [--threads 1,2] [--min-time 0.3]
//   ./build-bench/benchmarks/bench_gemm --quick      # sizes 64,128 and min-time 0.01: a smoke test
// Run it on an otherwise idle machine; thread counts above the core count measure contention.
#include <cblas.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/backend/cpu/sgemm_avx512.hpp"

namespace {

using mmalign::index_t;
using mmalign::Trans;
using mmalign::cpu::GemmImpl;

constexpr int rounds = 3;  // blocks per route, interleaved; each block runs >= 1 product and >= min_time / rounds
constexpr double max_rel_diff = 1e-3;

struct Config {
    std::vector<int> sizes{256, 512, 1024, 2048};
    std::vector<int> threads{1, 2};
    double min_time = 0.3;
};

[[noreturn]] void usage(const char* prog, const std::string& error) {
    if (!error.empty()) std::fprintf(stderr, "bench_gemm: %s\n", error.c_str());
    std::fprintf(error.empty() ? stdout : stderr,
                 "usage: %s [--sizes N,N,...] [--threads T,T,...] [--min-time SECONDS] [--quick]\n"
                 "  --sizes     square matrix sizes (default 256,512,1024,2048)\n"
                 "  --threads   thread counts (default 1,2)\n"
                 "  --min-time  seconds each route is timed per size and thread count, at least %d products "
                 "(default 0.3)\n"
                 "  --quick     sizes 64,128 and min-time 0.01, for a smoke test (explicit options win)\n",
                 prog, rounds);
    std::exit(error.empty() ? 0 : 2);
}

std::vector<int> parse_list(const char* prog, const std::string& opt, const std::string& text) {
    std::vector<int> out;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        const std::size_t comma = std::min(text.find(',', pos), text.size());
        const std::string item = text.substr(pos, comma - pos);
        char* end = nullptr;
        errno = 0;
        const long v = std::strtol(item.c_str(), &end, 10);
        if (item.empty() || *end != '\0' || errno != 0 || v <= 0 || v > 1'000'000)
            usage(prog, opt + ": expected a comma-separated list of positive integers, found '" + text + "'");
        out.push_back(static_cast<int>(v));
        pos = comma + 1;
    }
    return out;
}

Config parse_args(int argc, char** argv) {
    Config cfg;
    bool quick = false, have_sizes = false, have_min_time = false;
    std::vector<int> sizes, threads;
    double min_time = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string opt = argv[i];
        const auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage(argv[0], opt + " needs a value");
            return argv[++i];
        };
        if (opt == "--help" || opt == "-h") usage(argv[0], "");
        else if (opt == "--quick") quick = true;
        else if (opt == "--sizes") sizes = parse_list(argv[0], opt, value()), have_sizes = true;
        else if (opt == "--threads") threads = parse_list(argv[0], opt, value());
        else if (opt == "--min-time") {
            const std::string v = value();
            char* end = nullptr;
            min_time = std::strtod(v.c_str(), &end);
            if (v.empty() || *end != '\0' || !(min_time >= 0) || !std::isfinite(min_time))
                usage(argv[0], "--min-time: expected a number of seconds >= 0, found '" + v + "'");
            have_min_time = true;
        } else usage(argv[0], "unknown option '" + opt + "'");
    }
    if (quick) {
        cfg.sizes = {64, 128};
        cfg.min_time = 0.01;
    }
    if (have_sizes) cfg.sizes = sizes;
    if (!threads.empty()) cfg.threads = threads;
    if (have_min_time) cfg.min_time = min_time;
    return cfg;
}

/// 64-byte aligned float buffer, so no route gets a better-aligned operand than another.
struct Buffer {
    explicit Buffer(std::size_t n)
        : data(static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64))) {
        if (!data) throw std::bad_alloc();
    }
    float* get() const { return data.get(); }
    struct Free {
        void operator()(float* p) const { std::free(p); }
    };
    std::unique_ptr<float, Free> data;
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t h = v.size() / 2;
    return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

struct Route {
    const char* name;
    std::function<void(float*)> run;  // C = A·B into the given buffer
    Buffer c;
    std::vector<double> times;
};

/// max |x - ref| / max |ref|; NaN (an unwritten or broken result) gives infinity.
double rel_diff(const float* x, const float* ref, std::size_t n) {
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const double d = std::abs(double(x[i]) - double(ref[i]));
        if (!(d <= diff)) diff = std::isnan(d) ? std::numeric_limits<double>::infinity() : d;
        scale = std::max(scale, std::abs(double(ref[i])));
    }
    return scale > 0 ? diff / scale : diff;
}

/// cblas_sgemm's result against double-precision dot products at `samples` pseudo-random entries,
/// relative to max |C|.
double sampled_rel_diff(const float* a, const float* b, const float* c, int n, int samples) {
    std::mt19937 rng(12345);
    std::uniform_int_distribution<int> pick(0, n - 1);
    double scale = 0;
    for (std::size_t i = 0, nn = std::size_t(n) * std::size_t(n); i < nn; ++i)
        scale = std::max(scale, double(std::abs(c[i])));
    double diff = 0;
    for (int s = 0; s < samples; ++s) {
        const int i = pick(rng), j = pick(rng);
        double ref = 0;
        for (int k = 0; k < n; ++k) ref += double(a[std::size_t(i) * n + k]) * double(b[std::size_t(k) * n + j]);
        const double d = std::abs(double(c[std::size_t(i) * n + j]) - ref);
        if (!(d <= diff)) diff = std::isnan(d) ? std::numeric_limits<double>::infinity() : d;
    }
    return scale > 0 ? diff / scale : diff;
}

using Clock = std::chrono::steady_clock;

double process_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

/// How many cores the whole machine kept busy over `seconds` (Linux /proc/stat); 0 where unknown.
double busy_cores(double seconds) {
    const auto sample = [](double& busy, double& total) {
        std::FILE* f = std::fopen("/proc/stat", "r");
        if (!f) return false;
        unsigned long long v[8] = {};
        const int got = std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                                    &v[4], &v[5], &v[6], &v[7]);
        std::fclose(f);
        if (got != 8) return false;
        total = 0;
        for (unsigned long long x : v) total += double(x);
        busy = total - double(v[3]) - double(v[4]);  // minus idle and iowait
        return true;
    };
    double b0 = 0, t0 = 0, b1 = 0, t1 = 0;
    if (!sample(b0, t0)) return 0;
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    if (!sample(b1, t1) || t1 <= t0) return 0;
    return (b1 - b0) / (t1 - t0) * double(std::thread::hardware_concurrency());
}

/// Waits (at most 2 s) until no other thread of this process is spinning: sleeps in 5 ms steps until
/// two in a row see the process use < 10% of a core. OpenBLAS's pthread workers spin for ~0.1 s after
/// each call and OpenMP's for a few ms; left alone they would take cores from whichever route is timed
/// next.
void settle() {
    const auto deadline = Clock::now() + std::chrono::seconds(2);
    for (int quiet = 0; quiet < 2 && Clock::now() < deadline;) {
        const double c0 = process_cpu_seconds();
        const auto w0 = Clock::now();
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        const double wall = std::chrono::duration<double>(Clock::now() - w0).count();
        quiet = process_cpu_seconds() - c0 < 0.1 * wall ? quiet + 1 : 0;
    }
}

double time_once(Route& r) {
    const auto t0 = Clock::now();
    r.run(r.c.get());
    const auto t1 = Clock::now();
    return std::chrono::duration<double>(t1 - t0).count();
}

}  // namespace

int main(int argc, char** argv) try {
    const Config cfg = parse_args(argc, argv);

    std::printf("# bench_gemm: C = A*B, square row-major float, Trans::N both; GFLOP/s = 2n^3 / median time\n");
    std::printf("# Eigen %d.%d.%d, %s; OpenBLAS: %s (core %s)\n", EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION,
                EIGEN_MINOR_VERSION,
#if defined(_OPENMP)
                "OpenMP on",
#else
                "OpenMP off (Eigen runs single-threaded)",
#endif
                openblas_get_config(), openblas_get_corename());
    std::printf("# per size and thread count: routes interleaved in %d rounds; each timed >= %d times and >= %g s\n",
                rounds, rounds, cfg.min_time);
    settle();
    if (const double busy = busy_cores(0.5); busy > 0.25)
        std::printf("# WARNING: other processes kept %.1f cores busy at start; they skew these timings, "
                    "multi-threaded Eigen's most\n",
                    busy);
    std::printf("\n");

    // Routes: mmalign through each engine this build and CPU have, and OpenBLAS called directly.
    std::vector<std::pair<const char*, GemmImpl>> engines = {{"mmalign/Eigen", GemmImpl::eigen},
                                                             {"mmalign/OpenBLAS", GemmImpl::blas}};
    if (mmalign::cpu::avx512::supported()) engines.push_back({"mmalign/AVX-512", GemmImpl::avx512});
    std::vector<std::string> cols = {"size", "threads"};
    for (const auto& e : engines) cols.push_back(std::string(e.first) + " GFLOP/s");
    cols.push_back("cblas_sgemm GFLOP/s");
    cols.push_back("best mmalign/cblas");
    std::vector<int> width;
    std::printf("|");
    for (const std::string& c : cols) {
        width.push_back(static_cast<int>(c.size()));
        std::printf(" %s |", c.c_str());
    }
    std::printf("\n|");
    for (int w : width) std::printf("%s|", std::string(static_cast<std::size_t>(w) + 1, '-').append(":").c_str());
    std::printf("\n");
    std::fflush(stdout);

    bool ok = true;
    double worst = 0;
    for (const int n : cfg.sizes) {
        const std::size_t nn = std::size_t(n) * std::size_t(n);
        Buffer a(nn), b(nn);
        std::mt19937 rng(static_cast<unsigned>(n));
        std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
        for (std::size_t i = 0; i < nn; ++i) a.get()[i] = dist(rng);
        for (std::size_t i = 0; i < nn; ++i) b.get()[i] = dist(rng);
        const index_t N = n;

        for (const int t : cfg.threads) {
            using Backend = mmalign::CpuBackend<float>;
            std::vector<std::unique_ptr<Backend>> backends;
            std::vector<Route> routes;
            routes.reserve(engines.size() + 1);
            for (const auto& [name, impl] : engines) {
                backends.push_back(std::make_unique<Backend>(Backend::Options{.threads = t, .gemm = impl}));
                Backend* be = backends.back().get();
                routes.push_back({name,
                                  [&, be](float* c) {
                                      be->gemm(Trans::N, Trans::N, N, N, N, 1.0f, a.get(), N, b.get(), N, 0.0f, c, N);
                                  },
                                  Buffer(nn), {}});
            }
            routes.push_back({"cblas_sgemm",
                              [&](float* c) {
                                  // Raw OpenBLAS: the caller sets its team size, as mmalign's blas path does per call.
                                  openblas_set_num_threads(t);
                                  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.get(), n,
                                              b.get(), n, 0.0f, c, n);
                              },
                              Buffer(nn), {}});

            for (Route& r : routes) std::fill(r.c.get(), r.c.get() + nn, std::numeric_limits<float>::quiet_NaN());
            for (int round = 0; round < rounds; ++round) {
                for (std::size_t k = 0; k < routes.size(); ++k) {
                    Route& r = routes[(std::size_t(round) + k) % routes.size()];
                    settle();
                    r.run(r.c.get());  // warm-up: wakes the thread team, touches C and the library's buffers
                    const double budget = cfg.min_time / rounds;
                    double spent = 0;
                    for (int rep = 0; rep < 1 || spent < budget; ++rep) {
                        const double s = time_once(r);
                        r.times.push_back(s);
                        spent += s;
                    }
                }
            }

            const Route& cblas = routes.back();
            const float* ref = cblas.c.get();
            const double d_ref = sampled_rel_diff(a.get(), b.get(), ref, n, 256);
            worst = std::max(worst, d_ref);
            if (!(d_ref < max_rel_diff)) {
                std::fprintf(stderr,
                             "bench_gemm: FAILED n=%d threads=%d: cblas_sgemm vs double-precision dot products: max "
                             "rel diff %.3g >= %g\n",
                             n, t, d_ref, max_rel_diff);
                ok = false;
            }
            for (std::size_t k = 0; k + 1 < routes.size(); ++k) {
                const double d = rel_diff(routes[k].c.get(), ref, nn);
                worst = std::max(worst, d);
                if (!(d < max_rel_diff)) {
                    std::fprintf(stderr, "bench_gemm: FAILED n=%d threads=%d: %s vs cblas_sgemm: max rel diff %.3g >= %g\n",
                                 n, t, routes[k].name, d, max_rel_diff);
                    ok = false;
                }
            }

            const double flops = 2.0 * double(n) * double(n) * double(n);
            std::vector<double> gf;
            for (const Route& r : routes) gf.push_back(flops / median(r.times) / 1e9);
            const double best = *std::max_element(gf.begin(), gf.end() - 1);
            std::printf("| %*d | %*d |", width[0], n, width[1], t);
            for (std::size_t k = 0; k < gf.size(); ++k) std::printf(" %*.1f |", width[k + 2], gf[k]);
            std::printf(" %*.2f |\n", width.back(), best / gf.back());
            std::fflush(stdout);
        }
    }

    if (!ok) {
        std::fprintf(stderr, "bench_gemm: results disagree; timings above are not valid\n");
        return 1;
    }
    std::printf("\n# all results agree with cblas_sgemm (worst max rel diff %.2g < %g)\n", worst, max_rel_diff);
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gemm: %s\n", e.what());
    return 1;
}
