# Trains 16 steps straight, then 8 steps + a checkpoint + a resumed 8 steps, and requires the
# logged losses of steps 10 and 15 to be identical (bit for bit: the JSON text of each record).
# -DEXE=<clip_fashion_mnist> -DDIR=<scratch folder>
file(REMOVE_RECURSE ${DIR})
set(common --quick --steps 16 --threads 2 --seed 5)
execute_process(COMMAND ${EXE} ${common} --out ${DIR}/straight RESULT_VARIABLE r1 OUTPUT_QUIET)
execute_process(COMMAND ${EXE} ${common} --out ${DIR}/split --stop-after 8 RESULT_VARIABLE r2 OUTPUT_QUIET)
execute_process(COMMAND ${EXE} ${common} --out ${DIR}/split --resume ${DIR}/split/checkpoint.safetensors
                RESULT_VARIABLE r3 OUTPUT_QUIET)
if(NOT r1 EQUAL 0 OR NOT r2 EQUAL 0 OR NOT r3 EQUAL 0)
  message(FATAL_ERROR "a training run failed: ${r1} ${r2} ${r3}")
endif()
foreach(run straight split)
  file(STRINGS ${DIR}/${run}/metrics.jsonl lines_${run} REGEX "\"step\":(10|15)[,}]")
  list(FILTER lines_${run} INCLUDE REGEX "\"loss\"")
endforeach()
list(LENGTH lines_straight n)
if(NOT n EQUAL 2)
  message(FATAL_ERROR "expected the records of steps 10 and 15, found ${n}: ${lines_straight}")
endif()
if(NOT lines_straight STREQUAL lines_split)
  message(FATAL_ERROR "resumed run differs:\n straight: ${lines_straight}\n resumed:  ${lines_split}")
endif()
message(STATUS "resumed training matches the uninterrupted run: ${lines_split}")
