# mmalign::image — image decoding behind include/mmalign/io/image.hpp: JPEG through libjpeg-turbo
# (JPEG::JPEG, Debian libjpeg62-turbo-dev), PNG through libpng (PNG::PNG, which brings zlib;
# Debian libpng-dev). BMP needs no library. The target exists only when both are found; the core
# target mmalign::mmalign never depends on it, and a machine without them still configures and builds.
option(MMALIGN_ENABLE_IMAGE "Create mmalign::image when libjpeg and libpng are found" ON)
set(MMALIGN_WITH_IMAGE OFF)
if(MMALIGN_ENABLE_IMAGE)
  find_package(JPEG QUIET)
  find_package(PNG QUIET)
  if(JPEG_FOUND AND PNG_FOUND)
    add_library(mmalign_image INTERFACE)
    add_library(mmalign::image ALIAS mmalign_image)
    set_target_properties(mmalign_image PROPERTIES EXPORT_NAME image)
    target_link_libraries(mmalign_image INTERFACE mmalign JPEG::JPEG PNG::PNG)
    # Lets code (and tests/io/test_image.cpp) that may be built without the target test for it.
    target_compile_definitions(mmalign_image INTERFACE MMALIGN_WITH_IMAGE=1)
    install(TARGETS mmalign_image EXPORT mmalignTargets)
    set(MMALIGN_WITH_IMAGE ON)
    message(STATUS "mmalign: mmalign::image enabled (libjpeg ${JPEG_VERSION}, libpng ${PNG_VERSION_STRING})")
  else()
    message(STATUS "mmalign: mmalign::image disabled: needs libjpeg(-turbo) and libpng "
                   "(Debian: libjpeg62-turbo-dev libpng-dev)")
  endif()
endif()
