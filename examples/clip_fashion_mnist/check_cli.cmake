# clip_fashion_mnist's numeric options: each bad value exits 1 with one line naming the option and
# what it takes (before the data is read where the value alone is wrong); a batch larger than the
# training set or than the memory allows is refused naming --batch; bad usage exits 2.
# -DEXE=<clip_fashion_mnist> -DDIR=<scratch folder>
cmake_minimum_required(VERSION 3.20)
include(${CMAKE_CURRENT_LIST_DIR}/../common/check_cli.cmake)  # expect()
file(REMOVE_RECURSE ${DIR})
set(out --out ${DIR}/out)

expect(1 "^clip_fashion_mnist: --batch: expected an integer, found 'abc'\n$" --batch abc ${out})
expect(1 "^clip_fashion_mnist: --batch: 0 is outside the allowed range \\[1, 60000\\]\n$" --quick --batch 0 ${out})
expect(1 "^clip_fashion_mnist: --batch: -5 is outside the allowed range \\[1, 60000\\]\n$" --batch -5 ${out})
expect(1 "^clip_fashion_mnist: --threads: 3000000000 is outside the allowed range \\[1, 4096\\]\n$" --threads 3000000000 ${out})
expect(1 "--threads: 99999999999999999999999 is outside the allowed range \\[1, 4096\\]" --threads 99999999999999999999999 ${out})
expect(1 "--epochs: expected an integer, found '1e3'" --epochs 1e3 ${out})
expect(1 "--epochs: expected an integer, found ' 3'" --epochs " 3" ${out})
expect(1 "--seed: 4294967296 is outside the allowed range \\[0, 4294967295\\]" --seed 4294967296 ${out})
expect(1 "--steps: 0 is outside the allowed range \\[1, 1099511627776\\]" --steps 0 ${out})
expect(1 "--stop-after: -3 is outside the allowed range \\[1, 1099511627776\\]" --stop-after -3 ${out})
expect(1 "--lr: expected a positive number, found 'nan'" --lr nan ${out})
expect(1 "--lr: expected a positive number, found 'inf'" --lr inf ${out})
expect(1 "--lr: expected a positive number, found '-0.1'" --lr -0.1 ${out})
expect(1 "--lr: expected a positive number, found '1e999'" --lr 1e999 ${out})
expect(1 "--lr: expected a number, found 'fast'" --lr fast ${out})
string(ASCII 27 esc)
expect(1 "--batch: expected an integer, found '\\\\x1bc'" --batch "${esc}c" ${out})  # a terminal reset, escaped
expect(2 "unknown option \"--learning-rate\"" --learning-rate 1 ${out})
expect(2 "--batch needs a value" ${out} --batch)
if(EXISTS ${DIR}/out/metrics.jsonl)
  message(FATAL_ERROR "a refused command line wrote ${DIR}/out/metrics.jsonl")
endif()
# Checked against the data: --quick trains on 12,000 images, so a batch of 12,001 gives no step.
expect(1 "^clip_fashion_mnist: --batch: 12001 is more than the 12000 training images of --quick; an epoch would hold no step \\(give at most 12000\\)\n$"
       --quick --batch 12001 ${out})
# And against the memory: the [B, B] matrices alone of a 12,000 batch are 3.2 GiB, above a 1 GiB
# address-space limit (ulimit -v), so the run is refused naming --batch instead of ending in
# std::bad_alloc.
# (Skipped where AddressSanitizer is built in: its shadow memory cannot start under ulimit -v.)
if(NOT NO_ULIMIT)
execute_process(COMMAND sh -c "ulimit -v 1048576 && exec \"$0\" \"$@\"" ${EXE} --quick --batch 12000 ${out}
                RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_QUIET)
if(NOT rc EQUAL 1 OR NOT err MATCHES "^clip_fashion_mnist: --batch: 12000 needs at least [0-9.]+ GiB for training's batch matrices and activations, more than the 1.00 GiB this process may map \\(ulimit -v\\); give a smaller value\n$")
  message(FATAL_ERROR "--batch 12000 under ulimit -v 1048576: exit ${rc}, stderr:\n${err}")
endif()
endif()
message(STATUS "clip_fashion_mnist: every bad numeric option refused with the option named")
