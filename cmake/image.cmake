# mmalign::image — image decoding behind include/mmalign/io/image.hpp: JPEG through libjpeg-turbo
# (JPEG::JPEG, Debian libjpeg62-turbo-dev), PNG and BMP through stb_image (header only, Debian
# libstb-dev; mmalign/io/detail/stb_image.hpp compiles it into the including translation unit, so
# no stb library is linked). The target exists only when both are found; the core target
# mmalign::mmalign never depends on it, and a machine without them still configures and builds.
option(MMALIGN_ENABLE_IMAGE "Create mmalign::image when libjpeg and stb_image.h are found" ON)
set(MMALIGN_WITH_IMAGE OFF)
if(MMALIGN_ENABLE_IMAGE)
  find_package(JPEG QUIET)
  find_path(MMALIGN_STB_INCLUDE_DIR stb_image.h PATH_SUFFIXES stb DOC "Directory that holds stb_image.h")
  if(JPEG_FOUND AND MMALIGN_STB_INCLUDE_DIR)
    add_library(mmalign_image INTERFACE)
    add_library(mmalign::image ALIAS mmalign_image)
    set_target_properties(mmalign_image PROPERTIES EXPORT_NAME image)
    target_link_libraries(mmalign_image INTERFACE mmalign JPEG::JPEG)
    # Lets code (and tests/io/test_image.cpp) that may be built without the target test for it.
    target_compile_definitions(mmalign_image INTERFACE MMALIGN_WITH_IMAGE=1)
    # SYSTEM: stb_image.h is third-party C; its warnings are not the consumer's.
    target_include_directories(mmalign_image SYSTEM INTERFACE ${MMALIGN_STB_INCLUDE_DIR})
    install(TARGETS mmalign_image EXPORT mmalignTargets)
    set(MMALIGN_WITH_IMAGE ON)
    message(STATUS "mmalign: mmalign::image enabled (libjpeg ${JPEG_VERSION}, stb_image.h in ${MMALIGN_STB_INCLUDE_DIR})")
  else()
    message(STATUS "mmalign: mmalign::image disabled: needs libjpeg(-turbo) and stb_image.h "
                   "(Debian: libjpeg62-turbo-dev libstb-dev)")
  endif()
endif()
