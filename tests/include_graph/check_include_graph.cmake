# Checks the layering of docs/design.md ("Layers") on every header under INCLUDE_DIR/mmalign:
#
#   cmake -DINCLUDE_DIR=<repo>/include -P check_include_graph.cmake
#
# Reads each header's #include lines (both "" and <> forms) and fails, naming file, line and the
# include, when
#  * a header includes a project header of a layer its own layer may not include (the table below),
#  * a project header is included by a relative path (the rules could not see it) or does not exist
#    (CUDA-only headers are not compiled in a CPU build, so a stale include would go unnoticed),
#  * a backend's library (OpenMP, Eigen, BLAS, intrinsics; the CUDA runtime, cuBLAS) is included
#    outside that backend: modules stay backend-neutral, and core's contract headers do not drag
#    OpenMP into a CUDA build,
#  * a header lies in a directory no rule covers (a new layer gets a rule here and a line in
#    docs/design.md first),
#  * project headers include each other in a cycle (within one layer too: a header read half-way
#    through another sees only part of it).
# The scan is textual: an #include inside #if or a block comment counts, which errs on the strict
# side. Run by ctest (tests/include_graph/CMakeLists.txt) with no tool other than CMake.

cmake_minimum_required(VERSION 3.21)  # the project's minimum; sets the policies (IN_LIST) this uses

if(NOT INCLUDE_DIR OR NOT IS_DIRECTORY "${INCLUDE_DIR}/mmalign")
  message(FATAL_ERROR "check_include_graph: pass -DINCLUDE_DIR=<dir holding mmalign/>, found '${INCLUDE_DIR}'")
endif()

# Which layers each layer may include (its own always among them). "umbrella" is a header directly
# in mmalign/ (mmalign.hpp), which gathers everything.
set(layers core backend/cpu backend/cuda nn testing objectives io eval encoders bridges decoders generation models train umbrella)
set(allow_core core)
set(allow_backend/cpu core backend/cpu)
set(allow_backend/cuda core backend/cuda)
set(allow_nn core nn)
set(allow_testing core nn testing)
set(allow_objectives core nn objectives)
set(allow_io core io)
set(allow_eval core io eval)
set(allow_encoders core nn io encoders bridges decoders)
set(allow_bridges ${allow_encoders})
set(allow_decoders ${allow_encoders})
set(allow_generation core io generation)
set(allow_models core nn io objectives encoders bridges decoders generation models)
set(allow_train core nn io objectives train)
set(allow_umbrella ${layers})

# Third-party headers that belong to one backend, as regular expressions on the <> path.
set(backend_library_cpu "^(omp\\.h|Eigen/|unsupported/Eigen/|cblas\\.h|openblas|immintrin\\.h|[a-z]*intrin\\.h)")
set(backend_library_cuda "^(cuda|cublas|cufft|curand|cusparse|nvrtc|mma\\.h|cub/|thrust/|cooperative_groups)")

# The layer of a path relative to mmalign/ ("nn/linear.hpp" → nn, "backend/cuda/x.hpp" →
# backend/cuda, "mmalign.hpp" → umbrella); empty when no layer has that directory.
function(layer_of rel out)
  string(REGEX MATCH "^([^/]+)/(([^/]+)/)?" m "${rel}")
  if(m STREQUAL "")
    set(layer umbrella)
  elseif(CMAKE_MATCH_1 STREQUAL "backend")
    set(layer "backend/${CMAKE_MATCH_3}")
  else()
    set(layer "${CMAKE_MATCH_1}")
  endif()
  if(NOT layer IN_LIST layers)
    set(layer "")
  endif()
  set(${out} "${layer}" PARENT_SCOPE)
endfunction()

file(GLOB_RECURSE headers RELATIVE "${INCLUDE_DIR}" "${INCLUDE_DIR}/mmalign/*")
list(FILTER headers INCLUDE REGEX "\\.(h|hpp|cuh|inl|ipp)$")
list(SORT headers)
list(LENGTH headers n_headers)
if(n_headers EQUAL 0)
  message(FATAL_ERROR "check_include_graph: no headers under ${INCLUDE_DIR}/mmalign")
endif()

set(violations "")
set(n_includes 0)
foreach(header IN LISTS headers)
  string(REGEX REPLACE "^mmalign/" "" rel "${header}")
  layer_of("${rel}" layer)
  if(layer STREQUAL "")
    get_filename_component(dir "${rel}" DIRECTORY)
    string(APPEND violations "${header}: lies in mmalign/${dir}/, which no layer rule covers (add one here and in docs/design.md)\n")
    continue()
  endif()
  file(READ "${INCLUDE_DIR}/${header}" text)
  # One list element per line: characters that CMake's list syntax would act on are neutralised
  # first (none of them can occur in an include path that passes the checks below).
  string(REPLACE "\\" "/" text "${text}")
  string(REPLACE ";" "," text "${text}")
  string(REPLACE "[" "(" text "${text}")
  string(REPLACE "]" ")" text "${text}")
  string(REPLACE "\n" ";" lines "${text}")
  set(line_no 0)
  foreach(line IN LISTS lines)
    math(EXPR line_no "${line_no} + 1")
    if(NOT line MATCHES "^[ \t]*#[ \t]*include[ \t]*([<\"])([^>\"]*)[>\"]")
      continue()
    endif()
    set(angle "${CMAKE_MATCH_1}")
    set(path "${CMAKE_MATCH_2}")
    if(angle STREQUAL "<")
      set(spelled "<${path}>")
    else()
      set(spelled "\"${path}\"")
    endif()
    set(where "${header}:${line_no}: ${spelled}")
    if(path MATCHES "^mmalign/")
      math(EXPR n_includes "${n_includes} + 1")
      string(REGEX REPLACE "^mmalign/" "" target "${path}")
      if(NOT EXISTS "${INCLUDE_DIR}/${path}")
        string(APPEND violations "${where}: no such header under include/\n")
        continue()
      endif()
      list(APPEND "edges_${header}" "${path}")
      layer_of("${target}" target_layer)
      if(target_layer STREQUAL "")
        continue()  # reported once, as the target header's own violation
      endif()
      if(NOT target_layer IN_LIST allow_${layer})
        string(REPLACE ";" ", " allowed "${allow_${layer}}")
        string(APPEND violations "${where}: ${layer} may include only ${allowed} (docs/design.md, Layers), not ${target_layer}\n")
      endif()
    elseif(angle STREQUAL "\"")
      string(APPEND violations "${where}: spell a project header \"mmalign/...\" so that its layer can be checked\n")
    else()
      foreach(backend cpu cuda)
        if(path MATCHES "${backend_library_${backend}}" AND NOT layer STREQUAL "backend/${backend}")
          string(APPEND violations "${where}: a library of backend/${backend}, included outside it (in ${layer})\n")
        endif()
      endforeach()
    endif()
  endforeach()
endforeach()

# Cycles: strip, round after round, the headers whose project includes have all been stripped
# already; what is left is on a cycle or leads into one. One cycle is then walked and named.
set(left ${headers})
set(changed TRUE)
while(changed)
  set(changed FALSE)
  set(next_left "")
  foreach(header IN LISTS left)
    set(blocked FALSE)
    foreach(target IN LISTS "edges_${header}")
      if(target IN_LIST left)
        set(blocked TRUE)
        break()
      endif()
    endforeach()
    if(blocked)
      list(APPEND next_left "${header}")
    else()
      set(changed TRUE)
    endif()
  endforeach()
  set(left ${next_left})
endwhile()
if(left)
  list(GET left 0 node)
  set(walk "")
  while(NOT node IN_LIST walk)
    list(APPEND walk "${node}")
    foreach(target IN LISTS "edges_${node}")
      if(target IN_LIST left)
        set(node "${target}")
        break()
      endif()
    endforeach()
  endwhile()
  list(FIND walk "${node}" start)
  list(SUBLIST walk ${start} -1 cycle)
  list(APPEND cycle "${node}")
  string(REPLACE ";" " -> " cycle "${cycle}")
  string(APPEND violations "include cycle: ${cycle}\n")
endif()

if(NOT violations STREQUAL "")
  string(REGEX MATCHALL "\n" count "${violations}")
  list(LENGTH count n_violations)
  message("${violations}")
  message(FATAL_ERROR "include graph: ${n_violations} violation(s) of the layering, listed above")
endif()
message(STATUS "include graph: ${n_headers} headers, ${n_includes} project includes, all within the layering")
