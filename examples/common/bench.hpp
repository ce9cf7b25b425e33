// examples/common/bench.hpp — what the BLIP tools' bench commands share: random inputs (no files
// beyond the model's), timing after a warm-up run, and counting the tokens a generation made.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include <mmalign/core/tensor.hpp>
#include <mmalign/generation/generated.hpp>

namespace mmalign::cli {

/// Random pixels [B, C, S, S] and random token rows [B, T] from a fixed seed.
struct RandomInputs {
    std::mt19937 rng{0};
    /// `vision` is a VisionTransformer config (channels, image_size).
    template <class VisionConfig>
    Tensor<float> pixels(index_t B, const VisionConfig& vision) {
        std::normal_distribution<float> normal;
        Tensor<float> px(Shape{B, vision.channels, vision.image_size, vision.image_size});
        for (float& x : px) x = normal(rng);
        return px;
    }
    std::vector<std::int32_t> ids(index_t B, index_t T, index_t vocab) {
        std::uniform_int_distribution<std::int32_t> tok(1, std::int32_t(vocab - 1));
        std::vector<std::int32_t> out(std::size_t(B * T));
        for (auto& t : out) t = tok(rng);
        return out;
    }
};

/// Seconds for `iters` runs of `run` after one warm-up run (scratch arena, weights faulted in).
template <class F>
double time_runs(long iters, F&& run) {
    run();
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < iters; ++i) run();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// New tokens generated over the timed runs: each row's new tokens up to and including its first
/// end token; the warm-up run's are not counted.
struct GeneratedTokens {
    bool warm = false;
    index_t timed = 0;
    void add(const generation::Generated& g, std::int64_t end_token) {
        index_t n = 0;
        for (index_t r = 0; r < g.rows; ++r)
            for (std::int32_t id : g.new_tokens(r)) {
                ++n;
                if (id == end_token) break;
            }
        if (warm) timed += n;
        warm = true;
    }
};

/// The generation bench's line: images and new tokens per second over `iters` runs of `batch` images.
inline void print_generation_rate(const char* task, long batch, index_t beams, long iters, double seconds,
                                  index_t tokens) {
    std::printf("%s batch=%ld beams=%lld images_per_s=%.3f new_tokens_per_s=%.2f\n", task, batch,
                static_cast<long long>(beams), double(batch * iters) / seconds, double(tokens) / seconds);
}

}  // namespace mmalign::cli
