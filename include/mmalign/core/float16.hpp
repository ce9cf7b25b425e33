// mmalign/core/float16.hpp — the two 16-bit storage formats: bfloat16 and IEEE float16.
//
// Both are storage types: a value is converted to float, computed on in float, and rounded back
// (round to nearest, ties to even, as torch's .to(torch.bfloat16) / .half() and CUDA's
// __float2bfloat16_rn / __float2half_rn do). So the types convert implicitly both ways and have
// no operators of their own: `a * b` on two bfloat16 values is a float product, and assigning a
// float to a bfloat16 rounds once. The same bit-level conversion runs on the host and, under
// nvcc, on the device, so both sides of a test round identically.
//   bfloat16: 1 sign, 8 exponent, 7 mantissa bits — float's range, about 3 significant digits.
//   float16 : 1 sign, 5 exponent, 10 mantissa bits — largest finite 65504, subnormals down to 2^-24.
// Doubles convert through float (double rounding, as torch's double → bfloat16 also does).
#pragma once

#include <bit>
#include <cstdint>
#include <limits>
#include <type_traits>

#if defined(__CUDACC__)
#define MMALIGN_HD __host__ __device__
#else
#define MMALIGN_HD
#endif

namespace mmalign {

namespace detail {

MMALIGN_HD constexpr std::uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    return std::bit_cast<std::uint32_t>(f);
#endif
}
MMALIGN_HD constexpr float bits_float(std::uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    return std::bit_cast<float>(u);
#endif
}

MMALIGN_HD constexpr std::uint16_t float_to_bfloat16_bits(float f) {
    const std::uint32_t u = float_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
    return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);  // overflow carries into inf
}

MMALIGN_HD constexpr std::uint16_t float_to_float16_bits(float f) {
    const std::uint32_t u = float_bits(f);
    const std::uint32_t sign = (u >> 16) & 0x8000u, x = u & 0x7fffffffu;
    if (x > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u | ((x >> 13) & 0x3ffu));  // quiet NaN
    if (x >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // ≥ 65520 (and inf) → inf
    if (x >= 0x38800000u) {  // normal in float16: |f| ≥ 2^-14
        std::uint32_t h = (x - 0x38000000u) >> 13;  // rebias the exponent 127 → 15, keep 10 mantissa bits
        const std::uint32_t rest = x & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry moves into the exponent
        return static_cast<std::uint16_t>(sign | h);
    }
    if (x < 0x33000000u) return static_cast<std::uint16_t>(sign);  // below 2^-25: rounds to zero
    // Subnormal in float16: value = m · 2^-24 with m = significand · 2^(e − 126).
    const std::uint32_t e = x >> 23, sig = (x & 0x7fffffu) | 0x800000u, shift = 126u - e;
    std::uint32_t m = sig >> shift;
    const std::uint32_t rest = sig & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rest > half || (rest == half && (m & 1u))) ++m;  // m = 1024 is the smallest normal's encoding
    return static_cast<std::uint16_t>(sign | m);
}

MMALIGN_HD constexpr float float16_bits_to_float(std::uint16_t h) {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    std::uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1fu) return bits_float(sign | 0x7f800000u | (m << 13));
    if (e == 0) {
        if (m == 0) return bits_float(sign);
        e = 113;  // 2^-14, the subnormals' scale; normalise the significand
        while (!(m & 0x400u)) {
            m <<= 1;
            --e;
        }
        return bits_float(sign | (e << 23) | ((m & 0x3ffu) << 13));
    }
    return bits_float(sign | ((e + 112u) << 23) | (m << 13));
}

}  // namespace detail

/// bfloat16 storage (Google Brain's format): float's upper 16 bits, rounded to nearest even.
struct bfloat16 {
    std::uint16_t bits = 0;

    bfloat16() = default;
    MMALIGN_HD constexpr bfloat16(float f) : bits(detail::float_to_bfloat16_bits(f)) {}
    template <class A>
        requires(std::is_arithmetic_v<A> && !std::is_same_v<A, float>)
    MMALIGN_HD constexpr bfloat16(A v) : bfloat16(static_cast<float>(v)) {}
    MMALIGN_HD constexpr operator float() const { return detail::bits_float(static_cast<std::uint32_t>(bits) << 16); }
    MMALIGN_HD static constexpr bfloat16 from_bits(std::uint16_t b) {
        bfloat16 v;
        v.bits = b;
        return v;
    }
};

/// IEEE 754 binary16 storage, rounded to nearest even, with subnormals, infinities and NaN.
struct float16 {
    std::uint16_t bits = 0;

    float16() = default;
    MMALIGN_HD constexpr float16(float f) : bits(detail::float_to_float16_bits(f)) {}
    template <class A>
        requires(std::is_arithmetic_v<A> && !std::is_same_v<A, float>)
    MMALIGN_HD constexpr float16(A v) : float16(static_cast<float>(v)) {}
    MMALIGN_HD constexpr operator float() const { return detail::float16_bits_to_float(bits); }
    MMALIGN_HD static constexpr float16 from_bits(std::uint16_t b) {
        float16 v;
        v.bits = b;
        return v;
    }
};

static_assert(sizeof(bfloat16) == 2 && sizeof(float16) == 2 && std::is_trivially_copyable_v<bfloat16> &&
                  std::is_trivially_copyable_v<float16>,
              "mmalign: the 16-bit storage types must be two plain bytes, like the formats on disk and on the GPU.");

/// True for the 16-bit storage types, which compute in float.
template <class T>
inline constexpr bool is_16bit_float_v = std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>;

/// The type a value of storage type T is computed in: float for the 16-bit formats, T otherwise.
template <class T>
using compute_type_t = std::conditional_t<is_16bit_float_v<T>, float, T>;

}  // namespace mmalign

// numeric_limits, so that generic code (masks of the type's lowest value, infinities) works on
// the storage types as on float.
template <>
struct std::numeric_limits<mmalign::bfloat16> {
    using T = mmalign::bfloat16;
    static constexpr bool is_specialized = true, is_signed = true, is_integer = false, is_exact = false,
                          has_infinity = true, has_quiet_NaN = true, is_iec559 = false;
    static constexpr int digits = 8, radix = 2, min_exponent = -125, max_exponent = 128;
    static constexpr T min() noexcept { return T::from_bits(0x0080); }       // 2^-126
    static constexpr T max() noexcept { return T::from_bits(0x7f7f); }       // ≈ 3.39e38
    static constexpr T lowest() noexcept { return T::from_bits(0xff7f); }
    static constexpr T epsilon() noexcept { return T::from_bits(0x3c00); }   // 2^-7
    static constexpr T infinity() noexcept { return T::from_bits(0x7f80); }
    static constexpr T quiet_NaN() noexcept { return T::from_bits(0x7fc0); }
    static constexpr T denorm_min() noexcept { return T::from_bits(0x0001); }
};

template <>
struct std::numeric_limits<mmalign::float16> {
    using T = mmalign::float16;
    static constexpr bool is_specialized = true, is_signed = true, is_integer = false, is_exact = false,
                          has_infinity = true, has_quiet_NaN = true, is_iec559 = true;
    static constexpr int digits = 11, radix = 2, min_exponent = -13, max_exponent = 16;
    static constexpr T min() noexcept { return T::from_bits(0x0400); }       // 2^-14
    static constexpr T max() noexcept { return T::from_bits(0x7bff); }       // 65504
    static constexpr T lowest() noexcept { return T::from_bits(0xfbff); }
    static constexpr T epsilon() noexcept { return T::from_bits(0x1400); }   // 2^-10
    static constexpr T infinity() noexcept { return T::from_bits(0x7c00); }
    static constexpr T quiet_NaN() noexcept { return T::from_bits(0x7e00); }
    static constexpr T denorm_min() noexcept { return T::from_bits(0x0001); }
};
