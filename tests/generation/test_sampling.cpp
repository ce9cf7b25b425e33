// Tests of generation/sampling.hpp: the seeded generator is reproducible, draws never pick a
// removed (-inf) token, and draws without replacement are distinct.
#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <vector>

#include "mmalign/generation/sampling.hpp"

using namespace mmalign;
namespace gen = mmalign::generation;

TEST_CASE("uniforms come from the top 53 bits of std::mt19937_64, so a seed fixes them on every platform") {
    gen::Rng rng(42);
    std::mt19937_64 reference(42);
    for (int i = 0; i < 100; ++i) {
        const double u = rng.uniform();
        CHECK(u == static_cast<double>(reference() >> 11) * 0x1.0p-53);
        CHECK((u >= 0.0 && u < 1.0));
    }
}

TEST_CASE("a draw never picks a token scored -inf, and picks a certain token always") {
    const float ninf = -std::numeric_limits<float>::infinity();
    const std::vector<float> scores = {ninf, 0.0f, ninf, 0.0f, ninf};
    gen::Rng rng(1);
    std::set<index_t> seen;
    for (int i = 0; i < 2000; ++i) seen.insert(gen::sample_token(scores, rng));
    CHECK(seen == std::set<index_t>{1, 3});
    const std::vector<float> certain = {ninf, ninf, 5.0f};
    for (int i = 0; i < 100; ++i) CHECK(gen::sample_token(certain, rng) == 2);
    const std::vector<float> empty = {ninf, ninf};
    CHECK_THROWS_AS(gen::sample_token(empty, rng), ArgumentError);
}

TEST_CASE("draws without replacement are distinct, and fewer candidates than draws is refused") {
    const float ninf = -std::numeric_limits<float>::infinity();
    const std::vector<float> scores = {0.0f, 1.0f, ninf, 2.0f, 0.5f, ninf};
    gen::Rng rng(3);
    for (int i = 0; i < 200; ++i) {
        const auto d = gen::sample_distinct(scores, 4, rng);
        CHECK(std::set<index_t>(d.begin(), d.end()) == std::set<index_t>{0, 1, 3, 4});
    }
    CHECK_THROWS_AS(gen::sample_distinct(scores, 5, rng), ArgumentError);
}
