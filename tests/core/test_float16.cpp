// Tests of core/float16.hpp: the 16-bit storage types convert exactly as two independent
// references do — Eigen's bfloat16 and half (software round-to-nearest-even), and the CPU's F16C
// instructions where the CPU has them — on every 16-bit pattern and on every rounding tie.
#include <doctest/doctest.h>

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "mmalign/core/float16.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MMALIGN_TEST_F16C 1
#endif

using namespace mmalign;

namespace {

std::uint32_t bits(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
float from_bits(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
bool same_value(float a, float b) { return (std::isnan(a) && std::isnan(b)) || bits(a) == bits(b); }

std::uint16_t eigen_bf16(float f) { return Eigen::numext::bit_cast<std::uint16_t>(Eigen::bfloat16(f)); }
std::uint16_t eigen_half(float f) { return Eigen::numext::bit_cast<std::uint16_t>(Eigen::half(f)); }

#ifdef MMALIGN_TEST_F16C
__attribute__((target("f16c"))) std::uint16_t hw_half(float f) {
    return static_cast<std::uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}
__attribute__((target("f16c"))) float hw_half_to_float(std::uint16_t h) { return _cvtsh_ss(h); }
bool has_f16c() { return __builtin_cpu_supports("f16c"); }
#endif

/// Floats that probe every rounding decision: for each 16-bit value with mantissa width `drop`
/// bits below float's, the value itself, the exact midpoint to its neighbour and the floats one
/// ulp either side of it, plus a sweep over all exponents.
std::vector<float> probes(int drop_bits, bool half_format) {
    std::vector<float> out;
    for (std::uint32_t h = 0; h < 0x10000u; ++h) {
        float base;
        if (half_format) base = static_cast<float>(float16::from_bits(static_cast<std::uint16_t>(h)));
        else base = static_cast<float>(mmalign::bfloat16::from_bits(static_cast<std::uint16_t>(h)));
        if (!std::isfinite(base)) continue;
        const std::uint32_t b = bits(base);
        std::uint32_t mid = b + (1u << (drop_bits - 1));
        if (half_format && (h & 0x7c00u) == 0) {  // subnormal float16: the step is 2^-24 in value
            const float next = static_cast<float>(float16::from_bits(static_cast<std::uint16_t>(h + 1)));
            mid = bits(0.5f * (base + next));  // exact: both are multiples of 2^-24 well inside float
        }
        for (std::uint32_t u : {b, mid - 1, mid, mid + 1}) out.push_back(from_bits(u));
    }
    for (std::uint64_t u = 0; u < (std::uint64_t(1) << 32); u += 65521) out.push_back(from_bits(static_cast<std::uint32_t>(u)));
    for (float f : {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, 65536.0f, 1e-8f, 2.98023224e-8f, 2.98023259e-8f,
                    std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min(),
                    std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN()})
        out.push_back(f);
    return out;
}

}  // namespace

TEST_CASE("every bfloat16 pattern widens to the float with the same upper 16 bits") {
    for (std::uint32_t h = 0; h < 0x10000u; ++h) {
        const float f = mmalign::bfloat16::from_bits(static_cast<std::uint16_t>(h));
        REQUIRE(bits(f) == h << 16);
        if (!std::isnan(f)) REQUIRE(mmalign::bfloat16(f).bits == h);  // a round trip is exact
    }
}

TEST_CASE("float → bfloat16 rounds to nearest even like Eigen's bfloat16, NaN stays NaN") {
    int checked = 0;
    for (float f : probes(16, false)) {
        const mmalign::bfloat16 v(f);
        if (std::isnan(f)) {
            REQUIRE(std::isnan(static_cast<float>(v)));
            continue;
        }
        INFO("float bits 0x" << std::hex << bits(f));
        REQUIRE(v.bits == eigen_bf16(f));
        ++checked;
    }
    CHECK(checked > 250000);
    CHECK(mmalign::bfloat16(1.00390625f).bits == 0x3f80);  // tie 1 + 2^-8 → even (1)
    CHECK(mmalign::bfloat16(1.01171875f).bits == 0x3f82);  // tie 1 + 3·2^-8 → even (1 + 2^-6)
    CHECK(static_cast<float>(mmalign::bfloat16(3.4e38f)) == std::numeric_limits<float>::infinity());  // rounds past max
}

TEST_CASE("every float16 pattern widens like Eigen's half and the CPU's F16C; round trips are exact") {
#ifdef MMALIGN_TEST_F16C
    const bool hw = has_f16c();
#else
    const bool hw = false;
#endif
    for (std::uint32_t h = 0; h < 0x10000u; ++h) {
        const float f = float16::from_bits(static_cast<std::uint16_t>(h));
        const float ref = static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(static_cast<std::uint16_t>(h)));
        INFO("float16 bits 0x" << std::hex << h);
        REQUIRE(same_value(f, ref));
#ifdef MMALIGN_TEST_F16C
        if (hw) REQUIRE(same_value(f, hw_half_to_float(static_cast<std::uint16_t>(h))));
#endif
        if (!std::isnan(f)) REQUIRE(float16(f).bits == h);
    }
    MESSAGE(std::string(hw ? "F16C reference used" : "F16C reference not available on this CPU"));
}

TEST_CASE("float → float16 rounds to nearest even with subnormals and overflow, like Eigen and F16C") {
#ifdef MMALIGN_TEST_F16C
    const bool hw = has_f16c();
#endif
    int checked = 0;
    for (float f : probes(13, true)) {
        const float16 v(f);
        INFO("float bits 0x" << std::hex << bits(f));
        if (std::isnan(f)) {
            REQUIRE(std::isnan(static_cast<float>(v)));
            continue;
        }
        REQUIRE(v.bits == eigen_half(f));
#ifdef MMALIGN_TEST_F16C
        if (hw) REQUIRE(v.bits == hw_half(f));
#endif
        ++checked;
    }
    CHECK(checked > 250000);
    CHECK(float16(65504.0f).bits == 0x7bff);
    CHECK(float16(65519.99f).bits == 0x7bff);
    CHECK(float16(65520.0f).bits == 0x7c00);          // the tie above the largest finite → inf
    CHECK(float16(std::ldexp(1.0f, -25)).bits == 0);   // tie at half the smallest subnormal → 0 (even)
    CHECK(float16(std::ldexp(1.5f, -25)).bits == 1);
    CHECK(float16(-0.0f).bits == 0x8000);
}

TEST_CASE("the storage types compute in float and round once on assignment") {
    const mmalign::bfloat16 a(1.5f), b(2.25f);
    const float p = a * b;  // a float product
    CHECK(p == 3.375f);
    mmalign::bfloat16 c = p;
    CHECK(static_cast<float>(c) == 3.375f);
    c = 1.0f / 3.0f;
    CHECK(static_cast<float>(c) == 0.333984375f);
    const float16 h = 0.1;  // from double, through float
    CHECK(h.bits == 0x2e66);
    static_assert(std::is_same_v<compute_type_t<mmalign::bfloat16>, float> && std::is_same_v<compute_type_t<double>, double>);
    CHECK(static_cast<float>(std::numeric_limits<mmalign::bfloat16>::lowest()) == -std::numeric_limits<mmalign::bfloat16>::max());
    CHECK(static_cast<float>(std::numeric_limits<float16>::max()) == 65504.0f);
    CHECK(static_cast<float>(std::numeric_limits<float16>::epsilon()) == std::ldexp(1.0f, -10));
    CHECK(static_cast<float>(std::numeric_limits<mmalign::bfloat16>::epsilon()) == std::ldexp(1.0f, -7));
}
