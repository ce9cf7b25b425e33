# Shows that check_include_graph.cmake can fail: copies the real include tree to WORK_DIR, plants
# one header per kind of violation (each layer rule, a backend library outside its backend, a
# relative include, a missing header, an uncovered directory, a cycle) next to includes that the
# rules allow, runs the checker on the copy and fails unless every planted violation is reported
# with its file, line and include, and no allowed include is.
#
#   cmake -DINCLUDE_DIR=<repo>/include -DCHECKER=<.../check_include_graph.cmake> -DWORK_DIR=<tmp> -P <this>
cmake_minimum_required(VERSION 3.21)
foreach(var INCLUDE_DIR CHECKER WORK_DIR)
  if(NOT ${var})
    message(FATAL_ERROR "check_include_graph_selftest: -D${var}=... is required")
  endif()
endforeach()

set(copy "${WORK_DIR}/include")
file(REMOVE_RECURSE "${copy}")
file(COPY "${INCLUDE_DIR}/mmalign" DESTINATION "${copy}")

# The planted includes point at planted empty headers, one per layer, so that the test does not
# depend on which real headers exist.
foreach(layer core backend/cpu backend/cuda nn testing objectives io eval encoders generation models train)
  file(WRITE "${copy}/mmalign/${layer}/planted_target.hpp" "#pragma once\n")
endforeach()

set(expected "")  # "file:line: include" that must be reported
set(allowed "")   # "file:line: " that must not be
# plant(<header> <bad|ok> <include line>...): appends the lines to a planted header, one per line.
function(plant header verdict)
  set(path "${copy}/mmalign/${header}")
  if(NOT EXISTS "${path}")
    file(WRITE "${path}" "// planted by check_include_graph_selftest.cmake\n#pragma once\n")
  endif()
  foreach(inc IN LISTS ARGN)
    file(STRINGS "${path}" lines)
    list(LENGTH lines n)
    math(EXPR line "${n} + 1")
    file(APPEND "${path}" "#include ${inc}\n")
    if(verdict STREQUAL "bad")
      list(APPEND expected "mmalign/${header}:${line}: ${inc}")
    else()
      list(APPEND allowed "mmalign/${header}:${line}: ")
    endif()
  endforeach()
  set(expected "${expected}" PARENT_SCOPE)
  set(allowed "${allowed}" PARENT_SCOPE)
endfunction()

# core includes only core.
plant(core/planted.hpp ok [["mmalign/core/planted_target.hpp"]])
plant(core/planted.hpp bad [["mmalign/nn/planted_target.hpp"]] [["mmalign/backend/cpu/planted_target.hpp"]])
# Backends never include each other; each keeps its libraries to itself.
plant(backend/cuda/planted.hpp ok [["mmalign/core/planted_target.hpp"]] [[<cuda_runtime.h>]])
plant(backend/cuda/planted.hpp bad [["mmalign/backend/cpu/planted_target.hpp"]] [[<omp.h>]])
plant(backend/cpu/planted.hpp ok [[<omp.h>]] [[<Eigen/Core>]])
plant(backend/cpu/planted.hpp bad [["mmalign/backend/cuda/planted_target.hpp"]] [[<cublas_v2.h>]])
# nn never includes a backend, by path or through its libraries.
plant(nn/planted.hpp ok [["mmalign/core/planted_target.hpp"]] [[<vector>]])
plant(nn/planted.hpp bad [["mmalign/backend/cpu/planted_target.hpp"]] [[<omp.h>]] [[<Eigen/Core>]]
      [["../core/planted_target.hpp"]] [["mmalign/core/no_such_header.hpp"]])
# testing over core and nn.
plant(testing/planted.hpp ok [["mmalign/nn/planted_target.hpp"]])
plant(testing/planted.hpp bad [["mmalign/backend/cpu/planted_target.hpp"]])
# objectives over core and nn.
plant(objectives/planted.hpp ok [["mmalign/nn/planted_target.hpp"]])
plant(objectives/planted.hpp bad [["mmalign/io/planted_target.hpp"]] [["mmalign/train/planted_target.hpp"]])
# io over core only (the <> spelling is checked too).
plant(io/planted.hpp ok [["mmalign/core/planted_target.hpp"]])
plant(io/planted.hpp bad [[<mmalign/models/planted_target.hpp>]] [["mmalign/nn/planted_target.hpp"]])
# encoders never include models or train.
plant(encoders/planted.hpp ok [["mmalign/nn/planted_target.hpp"]])
plant(encoders/planted.hpp bad [["mmalign/models/planted_target.hpp"]] [["mmalign/train/planted_target.hpp"]])
# models compose encoders, objectives and io, never train or a backend.
plant(models/planted.hpp ok [["mmalign/encoders/planted_target.hpp"]] [["mmalign/io/planted_target.hpp"]]
      [["mmalign/objectives/planted_target.hpp"]])
plant(models/planted.hpp bad [["mmalign/train/planted_target.hpp"]] [["mmalign/backend/cuda/planted_target.hpp"]])
# train over objectives and io, never models.
plant(train/planted.hpp ok [["mmalign/objectives/planted_target.hpp"]] [["mmalign/io/planted_target.hpp"]])
plant(train/planted.hpp bad [["mmalign/models/planted_target.hpp"]])
# generation over core and io only; models may use it.
plant(generation/planted.hpp ok [["mmalign/core/planted_target.hpp"]] [["mmalign/io/planted_target.hpp"]])
plant(generation/planted.hpp bad [["mmalign/nn/planted_target.hpp"]] [["mmalign/models/planted_target.hpp"]])
plant(models/planted.hpp ok [["mmalign/generation/planted_target.hpp"]])
# eval over core and io, never nn or models.
plant(eval/planted.hpp ok [["mmalign/io/planted_target.hpp"]] [["mmalign/core/planted_target.hpp"]])
plant(eval/planted.hpp bad [["mmalign/nn/planted_target.hpp"]] [["mmalign/models/planted_target.hpp"]])
# A directory no rule covers.
file(WRITE "${copy}/mmalign/planted_layer/x.hpp" "#pragma once\n")
list(APPEND expected "mmalign/planted_layer/x.hpp: lies in mmalign/planted_layer/")
# A cycle inside one layer.
file(WRITE "${copy}/mmalign/core/planted_cycle_a.hpp" "#pragma once\n#include \"mmalign/core/planted_cycle_b.hpp\"\n")
file(WRITE "${copy}/mmalign/core/planted_cycle_b.hpp" "#pragma once\n#include \"mmalign/core/planted_cycle_a.hpp\"\n")
list(APPEND expected "include cycle: mmalign/core/planted_cycle_a.hpp -> mmalign/core/planted_cycle_b.hpp -> mmalign/core/planted_cycle_a.hpp")

execute_process(COMMAND "${CMAKE_COMMAND}" -DINCLUDE_DIR=${copy} -P "${CHECKER}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(report "${out}${err}")
set(problems "")
if(rc EQUAL 0)
  string(APPEND problems "the checker passed a tree with planted violations\n")
endif()
foreach(want IN LISTS expected)
  string(FIND "${report}" "${want}" at)
  if(at EQUAL -1)
    string(APPEND problems "not reported: ${want}\n")
  endif()
endforeach()
foreach(ok IN LISTS allowed)
  string(FIND "${report}" "${ok}" at)
  if(NOT at EQUAL -1)
    string(APPEND problems "an allowed include was reported: ${ok}\n")
  endif()
endforeach()
if(NOT problems STREQUAL "")
  message(FATAL_ERROR "check_include_graph self-test:\n${problems}\nchecker output:\n${report}")
endif()
list(LENGTH expected n)
message(STATUS "include graph self-test: all ${n} planted violations reported, no allowed include flagged")
