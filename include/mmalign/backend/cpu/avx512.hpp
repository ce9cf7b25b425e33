// mmalign/backend/cpu/avx512.hpp — whether this build compiles the AVX-512F kernels and whether
// the CPU runs them.
//
// The kernels (sgemm_avx512.hpp, vector_math_avx512.hpp) carry __attribute__((target("avx512f")))
// so the rest of the program keeps the user's -march, and callers choose them after
// `avx512::supported()`. MMALIGN_AVX512 is 1 on x86-64 with GCC or Clang (also as nvcc's host
// compiler, so .cu and .cpp files see one definition of every inline function), 0 elsewhere.
#pragma once

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#define MMALIGN_AVX512 1
#include <immintrin.h>
#else
#define MMALIGN_AVX512 0
#endif

namespace mmalign::cpu::avx512 {

/// True when this build has the kernels and the CPU executes AVX-512F (checked once).
inline bool supported() {
#if MMALIGN_AVX512
    static const bool ok = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") != 0;
    }();
    return ok;
#else
    return false;
#endif
}

}  // namespace mmalign::cpu::avx512

#if MMALIGN_AVX512
// Function attributes of the kernels: inlined helpers and out-of-line entry points.
#define MMALIGN_AVX512_INLINE __attribute__((target("avx512f"), always_inline)) inline
#define MMALIGN_AVX512_OUTLINE __attribute__((target("avx512f"))) inline
#endif
