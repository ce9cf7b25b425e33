# clip_fashion_mnist's training guards, on short --quick runs of batch 32:
#  - one run per --out: a second run while the first trains exits 1 naming the holder's pid;
#  - kill -9 during training, then resume: the temporary file a writer killed mid-save leaves is
#    removed, a metrics line torn mid-write is dropped, and every step is logged once;
#  - --steps below the resumed checkpoint's step is refused, and the checkpoint is left as it was;
#  - a non-finite loss stops the run naming the step and a parameter (after one step at a learning
#    rate of 1e30 the weights are ~1e30, whose squares overflow float in the layer norms), and
#    --skip-nonfinite-steps skips and counts such steps instead;
#  - a checkpoint holding a NaN is refused unless --allow-nonfinite-checkpoint.
# Needs sh, kill, printf and dd (POSIX) for the background run and the byte patch.
# -DEXE=<clip_fashion_mnist> -DDIR=<scratch folder>
cmake_minimum_required(VERSION 3.20)
set(q --quick --batch 32 --threads 2 --seed 3)

if(DEFINED WATCH)
  # The watcher, run beside the background training (see below): waits for its pid and lock,
  # races a second run against it, waits until it has logged step 20 (past the checkpoint at 12)
  # and kills it with SIGKILL.
  macro(stop_and_fail msg)
    if(pid)
      execute_process(COMMAND kill -9 ${pid})
    endif()
    message(FATAL_ERROR "${msg}")
  endmacro()
  set(pid "")
  foreach(i RANGE 1200)
    if(EXISTS ${DIR}/a.pid AND EXISTS ${DIR}/k/.lock)
      file(READ ${DIR}/a.pid pid)
      string(STRIP "${pid}" pid)
      file(READ ${DIR}/k/.lock holder)
      if(pid AND holder STREQUAL pid)
        break()
      endif()
    endif()
    execute_process(COMMAND ${CMAKE_COMMAND} -E sleep 0.05)
  endforeach()
  if(NOT pid OR NOT holder STREQUAL pid)
    stop_and_fail("the background run did not take ${DIR}/k/.lock (pid '${pid}', lock '${holder}')")
  endif()
  execute_process(COMMAND ${EXE} ${q} --steps 8 --out ${DIR}/k RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
  if(NOT rc EQUAL 1 OR NOT err MATCHES "^clip_fashion_mnist: [^\n]*/k: another run writes this output directory \\(pid ${pid}, [^\n]*/k/.lock\\)\n$")
    stop_and_fail("a second run on the same --out: exit ${rc}, expected 1 naming pid ${pid}:\n${err}")
  endif()
  foreach(i RANGE 3000)
    file(STRINGS ${DIR}/k/metrics.jsonl logged REGEX "\"step\":20[,}]")
    if(logged)
      break()
    endif()
    execute_process(COMMAND ${CMAKE_COMMAND} -E sleep 0.05)
  endforeach()
  if(NOT logged)
    stop_and_fail("the background run never logged step 20")
  endif()
  execute_process(COMMAND kill -9 ${pid} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "kill -9 ${pid} failed")
  endif()
  return()
endif()

include(${CMAKE_CURRENT_LIST_DIR}/../common/check_cli.cmake)  # expect()
file(REMOVE_RECURSE ${DIR})
file(MAKE_DIRECTORY ${DIR})
set(ckpt ${DIR}/k/checkpoint.safetensors)

# A run of 400 steps stopped with a checkpoint at step 12 (it logs steps 0 and 10).
expect(0 "" ${q} --steps 400 --stop-after 12 --out ${DIR}/k)
# Resumed in the background under sh, which reaps it when the watcher kills it (so its pid is
# then a dead writer's), while the watcher races a second run and kills this one.
execute_process(
  COMMAND sh -c "\"$0\" \"$@\" >\"${DIR}/a.log\" 2>&1 & echo $! >\"${DIR}/a.pid\"; wait $!; echo $? >\"${DIR}/a.rc\""
          ${EXE} ${q} --steps 400 --out ${DIR}/k --resume ${ckpt}
  COMMAND ${CMAKE_COMMAND} -DWATCH=1 -DEXE=${EXE} -DDIR=${DIR} -P ${CMAKE_CURRENT_LIST_FILE}
  RESULTS_VARIABLE rcs ERROR_VARIABLE watch_err)
list(GET rcs 1 watch_rc)
file(READ ${DIR}/a.rc killed_rc)
string(STRIP "${killed_rc}" killed_rc)
if(NOT watch_rc EQUAL 0 OR NOT killed_rc EQUAL 137)
  message(FATAL_ERROR "race and kill: watcher exit ${watch_rc}, background run exit ${killed_rc}:\n${watch_err}")
endif()
file(READ ${DIR}/a.pid dead)
string(STRIP "${dead}" dead)
# What a kill mid-save leaves (io/atomic_file.hpp's temporary name) and a record torn mid-write.
file(WRITE ${ckpt}.tmp.${dead}.0 "partial")
file(APPEND ${DIR}/k/metrics.jsonl "{\"step\": 21, \"lo")
file(SHA256 ${ckpt} at_12)
expect(0 "" ${q} --steps 24 --out ${DIR}/k --resume ${ckpt})
if(EXISTS ${ckpt}.tmp.${dead}.0)
  message(FATAL_ERROR "the dead writer's ${ckpt}.tmp.${dead}.0 was not removed")
endif()
file(STRINGS ${DIR}/k/metrics.jsonl lines)
set(loss_steps "")
set(final_records 0)
foreach(line IN LISTS lines)
  string(JSON step ERROR_VARIABLE bad GET "${line}" step)
  if(bad)
    message(FATAL_ERROR "metrics.jsonl holds a line that is not a record: ${line}")
  endif()
  string(JSON loss ERROR_VARIABLE no_loss GET "${line}" loss)
  if(NOT no_loss)
    list(APPEND loss_steps ${step})
  endif()
  if(line MATCHES "\"zero_shot_top1\"")
    math(EXPR final_records "${final_records} + 1")
  endif()
endforeach()
# Logged: every 10th step index and the last (23), each once, and one final evaluation.
if(NOT loss_steps STREQUAL "0;10;20;23" OR NOT final_records EQUAL 1)
  message(FATAL_ERROR "after kill -9 and resume, loss records at steps '${loss_steps}' (expected 0;10;20;23) and "
                      "${final_records} final records (expected 1):\n${lines}")
endif()
file(SHA256 ${ckpt} at_24)
if(at_24 STREQUAL at_12)
  message(FATAL_ERROR "the resumed run did not save its checkpoint")
endif()

# A finished 24-step run resumed with --steps 8 would rewind it: refused, checkpoint untouched.
expect(1 "^clip_fashion_mnist: --steps: the run would end at step 8, before step 24 where [^\n]*checkpoint.safetensors is; give --steps 24 or more\n$"
       ${q} --steps 8 --out ${DIR}/k --resume ${ckpt})
file(SHA256 ${ckpt} after)
if(NOT after STREQUAL at_24)
  message(FATAL_ERROR "a refused resume changed ${ckpt}")
endif()

# A non-finite loss stops the run at step 2, naming a parameter; skipped instead, steps 2 and 3
# (the same weights, so both non-finite) are counted.
expect(1 "^clip_fashion_mnist: step 2: the loss is nan and the gradient norm nan; first non-finite (gradient|weight): '[a-z_.0-9]+'\\[[0-9]+\\] = (nan|inf|-inf); the run stops before this step's update"
       ${q} --steps 3 --lr 1e30 --out ${DIR}/nan)
expect(0 "" ${q} --steps 3 --lr 1e30 --out ${DIR}/nan --skip-nonfinite-steps)
file(STRINGS ${DIR}/nan/metrics.jsonl final REGEX "zero_shot_top1")
string(JSON skipped GET "${final}" skipped_steps)
if(NOT skipped EQUAL 2)
  message(FATAL_ERROR "--skip-nonfinite-steps: skipped_steps ${skipped}, expected 2: ${final}")
endif()

# One NaN written into the checkpoint's logit scale (0x7FFFFFFF, a quiet NaN, little-endian).
file(READ ${ckpt} len_hex LIMIT 8 HEX)
set(header_len 0)
foreach(i RANGE 7 0 -1)  # little-endian u64
  math(EXPR at "${i} * 2")
  string(SUBSTRING "${len_hex}" ${at} 2 byte)
  math(EXPR header_len "${header_len} * 256 + 0x${byte}")
endforeach()
file(READ ${ckpt} header OFFSET 8 LIMIT ${header_len})
string(JSON begin GET "${header}" model.logit_scale data_offsets 0)
math(EXPR offset "8 + ${header_len} + ${begin}")
execute_process(COMMAND sh -c "printf '\\377\\377\\377\\177' | dd of=\"$0\" bs=1 seek=${offset} conv=notrunc 2>/dev/null" ${ckpt}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "patching ${ckpt} failed")
endif()
expect(1 "^clip_fashion_mnist: checkpoint '[^\n]*checkpoint.safetensors': tensor 'model.logit_scale'\\[0\\] = nan: the checkpoint holds a non-finite value"
       ${q} --steps 26 --out ${DIR}/k --resume ${ckpt})
expect(1 "^clip_fashion_mnist: step 25: the loss is nan"
       ${q} --steps 26 --out ${DIR}/k --resume ${ckpt} --allow-nonfinite-checkpoint)
message(STATUS "clip_fashion_mnist: lock, kill -9 and resume, --steps, non-finite steps and checkpoints guarded")
