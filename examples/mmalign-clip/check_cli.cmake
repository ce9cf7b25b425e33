# mmalign-clip's contract on good and bad input: exit codes, one clear line on stderr, JSON keys.
# -DEXE=<mmalign-clip> -DFIX=<tests/fixtures> -DDIR=<scratch folder>
file(REMOVE_RECURSE ${DIR})
file(MAKE_DIRECTORY ${DIR}/model ${DIR}/corrupt)
foreach(d model corrupt)
  file(COPY ${FIX}/clip/tiny_quick_gelu/config.json ${FIX}/clip_tokenizer/hf/vocab.json
            ${FIX}/clip_tokenizer/hf/merges.txt DESTINATION ${DIR}/${d})
  file(WRITE ${DIR}/${d}/preprocessor_config.json
       "{\"size\": 32, \"crop_size\": 32, \"image_mean\": [0.5, 0.5, 0.5], \"image_std\": [0.5, 0.5, 0.5]}")
endforeach()
file(COPY ${FIX}/clip/tiny_quick_gelu/model.safetensors DESTINATION ${DIR}/model)
file(COPY_FILE ${FIX}/safetensors_bad/overlapping_ranges.safetensors ${DIR}/corrupt/model.safetensors)
# Folders holding only what one kind of input needs: weights + image processor, weights + tokenizer.
file(MAKE_DIRECTORY ${DIR}/image_only ${DIR}/text_only)
file(COPY ${FIX}/clip/tiny_quick_gelu/config.json ${FIX}/clip/tiny_quick_gelu/model.safetensors
          ${DIR}/model/preprocessor_config.json DESTINATION ${DIR}/image_only)
file(COPY ${FIX}/clip/tiny_quick_gelu/config.json ${FIX}/clip/tiny_quick_gelu/model.safetensors DESTINATION ${DIR}/text_only)
# A vocabulary that fits the tiny model's 99-row embedding table (the real one has 49,408 ids).
file(WRITE ${DIR}/text_only/vocab.json
     "{\"a\": 0, \"c\": 1, \"t\": 2, \"a</w>\": 3, \"t</w>\": 4, \"ca\": 5, \"cat</w>\": 6, \"<|startoftext|>\": 97, \"<|endoftext|>\": 98}")
file(WRITE ${DIR}/text_only/merges.txt "#version: 0.2\nc a\nca t</w>\n")

include(${CMAKE_CURRENT_LIST_DIR}/../common/check_cli.cmake)  # expect()

expect(2 "unknown command" frobnicate)
expect(2 "--model DIR is required" embed --text hi)
expect(1 "no_such_dir/config.json.: no such file" embed --model ${DIR}/no_such_dir --text hi)
expect(1 "corrupt/model.safetensors.*overlap" embed --model ${DIR}/corrupt --image ${FIX}/images/cat_crop.png)
expect(1 "missing.jpg" embed --model ${DIR}/model --image ${DIR}/missing.jpg)
expect(1 "vocab.json" embed --model ${DIR}/model --image ${DIR}/model/vocab.json)
expect(0 "" embed --model ${DIR}/model --image ${FIX}/images/cat_crop.png --image ${FIX}/images/coffee_444.jpg --json)
if(NOT last_out MATCHES "^{\"image_embeds\":\\[\\[" OR last_out MATCHES "text_embeds")
  message(FATAL_ERROR "embed --json printed: ${last_out}")
endif()
# Each command reads only the files its inputs use.
expect(0 "" embed --model ${DIR}/image_only --image ${FIX}/images/cat_crop.png --json)
if(NOT last_out MATCHES "^{\"image_embeds\":\\[\\[")
  message(FATAL_ERROR "image-only embed printed: ${last_out}")
endif()
expect(0 "" embed --model ${DIR}/text_only --text "a cat" --text "cat" --json)
if(NOT last_out MATCHES "^{\"text_embeds\":\\[\\[")
  message(FATAL_ERROR "text-only embed printed: ${last_out}")
endif()
expect(0 "" bench --model ${DIR}/image_only --batch 1 --iters 1)
# Numeric options: one line naming the option and the range, exit 1, before the model is read.
expect(1 "^mmalign-clip: --batch: expected an integer, found 'abc'\n$" bench --model ${DIR}/image_only --batch abc)
expect(1 "^mmalign-clip: --threads: 3000000000 is outside the allowed range \\[1, 4096\\]\n$"
       embed --model ${DIR}/model --text hi --threads 3000000000)
expect(1 "^mmalign-clip: --batch: 1000000000000 is outside the allowed range \\[1, 65536\\]\n$"
       bench --model ${DIR}/image_only --batch 1000000000000 --iters 1)
expect(1 "^mmalign-clip: --iters: 0 is outside the allowed range \\[1, 1048576\\]\n$" bench --model ${DIR}/image_only --iters 0)
expect(1 "^mmalign-clip: --batch: expected an integer, found '2.5'\n$" bench --model ${DIR}/image_only --batch 2.5)
# A batch in range that the memory cannot hold is refused naming --batch, not std::bad_alloc: the
# tiny model's 65,536 random images are 768 MiB (3 x 32 x 32 floats each) and one layer's activations
# 1.1 GiB more: over a 1 GiB address-space limit.
# (Skipped where AddressSanitizer is built in: its shadow memory cannot start under ulimit -v.)
if(NOT NO_ULIMIT)
execute_process(COMMAND sh -c "ulimit -v 1048576 && exec \"$0\" \"$@\"" ${EXE} bench --model ${DIR}/image_only --batch 65536 --iters 1
                RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_QUIET)
if(NOT rc EQUAL 1 OR NOT err MATCHES "^mmalign-clip: --batch: 65536 needs at least [0-9.]+ GiB for the bench's inputs and one layer's activations, more than the 1.00 GiB this process may map \\(ulimit -v\\); give a smaller value\n$")
  message(FATAL_ERROR "bench --batch 65536 under ulimit -v 1048576: exit ${rc}, stderr:\n${err}")
endif()
endif()
expect(1 "image_only/tokenizer.json.: no such file, nor vocab.json \\+ merges.txt beside it" embed --model ${DIR}/image_only --text hi)
expect(1 "text_only/preprocessor_config.json" embed --model ${DIR}/text_only --image ${FIX}/images/cat_crop.png)
expect(1 "image_only/tokenizer.json.: no such file, nor vocab.json \\+ merges.txt beside it" classify --model ${DIR}/image_only --image ${FIX}/images/cat_crop.png --labels "cat,dog")
execute_process(COMMAND ${EXE} --help RESULT_VARIABLE rc OUTPUT_VARIABLE out)
if(NOT rc EQUAL 0 OR NOT out MATCHES "embed --image +\\+ preprocessor_config.json" OR NOT out MATCHES "embed --text +\\+ vocab.json, merges.txt")
  message(FATAL_ERROR "mmalign-clip --help does not list the files each command reads:\n${out}")
endif()
message(STATUS "mmalign-clip: exit codes, messages and JSON as documented")
