// mmalign/io/detail/stb_image.hpp — stb_image's PNG and BMP decoders compiled into the including
// translation unit as `static` functions, so the header-only library needs no .c file and no
// stb library (Debian's libstb.so exists, but most platforms ship stb as a bare header).
//
// With STB_IMAGE_STATIC every stb function has internal linkage: each TU that includes this
// header gets a private copy, which clashes neither with other TUs nor with a program that
// compiles stb_image itself elsewhere; unused functions are dropped. Only PNG and BMP are
// compiled (JPEG goes through libjpeg-turbo). If the TU already included <stb_image.h>, its
// extern declarations are used instead and the program must compile stb_image's implementation
// once, as any stb_image user does. A TU that includes this header must not compile stb_image's
// implementation after it.
#pragma once

#if !defined(STBI_INCLUDE_STB_IMAGE_H)
#define MMALIGN_STB_IMAGE_PRIVATE 1
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_NO_STDIO  // files are read by mmalign (for error messages and format sniffing)
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_MAX_DIMENSIONS (1 << 24)

// stb_image is C-style code that trips -Wextra/-Wconversion style warnings and leaves static
// functions unused; silence them for its body only.
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wall"
#pragma clang diagnostic ignored "-Wextra"
#pragma clang diagnostic ignored "-Wunused-function"
#pragma clang diagnostic ignored "-Wmissing-field-initializers"
#pragma clang diagnostic ignored "-Wsign-compare"
#pragma clang diagnostic ignored "-Wimplicit-fallthrough"
#pragma clang diagnostic ignored "-Wconversion"
#pragma clang diagnostic ignored "-Wsign-conversion"
#pragma clang diagnostic ignored "-Wdouble-promotion"
#pragma clang diagnostic ignored "-Wcast-align"
#pragma clang diagnostic ignored "-Wold-style-cast"
#pragma clang diagnostic ignored "-Wunused-but-set-variable"
#elif defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wsign-conversion"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wcast-align"
#pragma GCC diagnostic ignored "-Wold-style-cast"
#pragma GCC diagnostic ignored "-Wuseless-cast"
#pragma GCC diagnostic ignored "-Wduplicated-branches"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#elif defined(_MSC_VER)
#pragma warning(push, 0)
#endif

#include <stb_image.h>

#if defined(__clang__)
#pragma clang diagnostic pop
#elif defined(__GNUC__)
#pragma GCC diagnostic pop
#elif defined(_MSC_VER)
#pragma warning(pop)
#endif

#undef STB_IMAGE_IMPLEMENTATION
#endif  // !STBI_INCLUDE_STB_IMAGE_H
