# mmalign-blip's contract on the committed BLIP fixtures: `caption --json` / `vqa --json` ids and texts
# equal to the generate records of expected.json (transformers' model.generate and processor.decode),
# `itm --json` scores equal to the retrieval case's, and on bad input exit 1 with one line on stderr.
# -DEXE=<mmalign-blip> -DFIX=<tests/fixtures> -DDIR=<scratch folder>
cmake_minimum_required(VERSION 3.20)  # string(JSON), IN_LIST
set(BLIP ${FIX}/blip)
include(${CMAKE_CURRENT_LIST_DIR}/../common/check_cli.cmake)  # expect(), json_compact(), nano()
# Folders holding part of a captioning folder: weights only (bench needs no more), and weights +
# image processor (in transformers 5's processor_config.json form) without the tokenizer.
make_partial_folders(${BLIP}/caption_a processor_config.json)

set(astronaut ${FIX}/images/astronaut_420.jpg)
set(coffee ${FIX}/images/coffee_444.jpg)

# Usage errors: exit 2 with the usage text.
expect(2 "unknown command" frobnicate)
expect(2 "--model DIR is required" caption --image ${astronaut})
expect(2 "itm needs one --image and at least one --text" itm --model ${BLIP}/retrieval --image ${astronaut})
expect(2 "generation options apply to caption, vqa"
       itm --model ${BLIP}/retrieval --image ${astronaut} --text a --beams 3)
expect(2 "need --sample" caption --model ${BLIP}/caption_a --image ${astronaut} --top-p 0.5)
# Bad input: exit 1, one line naming the file, the field or the option.
expect(1 "no_such_dir/config.json.: no such file" caption --model ${DIR}/no_such_dir --image ${astronaut})
expect(1 "missing.jpg" caption --model ${BLIP}/caption_a --image ${DIR}/missing.jpg)
expect(1 "caption_a/config.json.architectures: the folder holds BlipForConditionalGeneration; itm needs BlipForImageTextRetrieval"
       itm --model ${BLIP}/caption_a --image ${astronaut} --text "a cat")
expect(1 "retrieval/config.json.architectures: the folder holds BlipForImageTextRetrieval; vqa needs BlipForQuestionAnswering"
       vqa --model ${BLIP}/retrieval --image ${astronaut} --question "what is it?")
expect(1 "vqa/config.json.architectures: the folder holds BlipForQuestionAnswering; caption needs BlipForConditionalGeneration"
       caption --model ${BLIP}/vqa --image ${astronaut})
expect(1 "holds BlipForImageTextRetrieval; bench --task caption needs BlipForConditionalGeneration"
       bench --model ${BLIP}/retrieval --task caption --batch 1 --iters 1)
expect(1 "no_architectures/config.json.architectures: expected a list naming the model class, found nothing"
       caption --model ${DIR}/no_architectures --image ${astronaut})
set(cap caption --model ${BLIP}/caption_a --image ${astronaut})
expect(1 "--beams: 0 is outside the allowed range \\[1, 1024\\]" ${cap} --beams 0)
expect(1 "--max-new-tokens: expected an integer, found 'ten'" ${cap} --max-new-tokens ten)
expect(1 "--top-p: expected a number in \\(0, 1\\], found '1.5'" ${cap} --sample --top-p 1.5)
expect(1 "--temperature: expected a positive number, found '-1'" ${cap} --sample --temperature -1)
expect(1 "--repetition-penalty: expected a positive number, found 'nan'" ${cap} --repetition-penalty nan)
expect(1 "--threads: 0 is outside the allowed range \\[1, 4096\\]" ${cap} --threads 0)
expect(1 "bad_generation_config.json: num_beams must be positive, found 0"
       caption --model ${BLIP}/caption_a --image ${astronaut} --generation-config ${DIR}/bad_generation_config.json)
# Each command reads only the files it needs: bench runs on weights alone; a missing image processor or
# tokenizer is named when a command needs it.
expect(1 "weights_only': no preprocessor_config.json or processor_config.json"
       caption --model ${DIR}/weights_only --image ${astronaut})
# (the images are processed first: this error comes after processor_config.json was read)
expect(1 "no_tokenizer/tokenizer.json': no such file, nor vocab.txt beside it"
       caption --model ${DIR}/no_tokenizer --image ${astronaut})
foreach(task caption vision)
  expect(0 "" bench --model ${DIR}/weights_only --task ${task} --batch 2 --iters 1 --threads 1)
  if(NOT last_out MATCHES "^${task} batch=2 .*images_per_s=[0-9]")
    message(FATAL_ERROR "bench --task ${task} printed: ${last_out}")
  endif()
endforeach()
expect(0 "" bench --model ${DIR}/weights_only --task caption --batch 1 --iters 2 --beams 2 --min-new-tokens 3
       --threads 1)
if(NOT last_out MATCHES "^caption batch=1 beams=2 images_per_s=[0-9.]+ new_tokens_per_s=[0-9]")
  message(FATAL_ERROR "bench --task caption printed: ${last_out}")
endif()
expect(0 "" bench --model ${BLIP}/retrieval --task itm --batch 4 --iters 1 --threads 1)
if(NOT last_out MATCHES "^itm images=1 texts=4 texts_per_s=[0-9]")
  message(FATAL_ERROR "bench --task itm printed: ${last_out}")
endif()
expect(0 "" bench --model ${BLIP}/vqa --task vqa --batch 2 --iters 1 --threads 1)
if(NOT last_out MATCHES "^vqa batch=2 beams=1 images_per_s=[0-9.]+ new_tokens_per_s=[0-9]")
  message(FATAL_ERROR "bench --task vqa printed: ${last_out}")
endif()

# The help lists the files each command reads and the generation defaults.
execute_process(COMMAND ${EXE} --help RESULT_VARIABLE rc OUTPUT_VARIABLE out)
foreach(re "itm, caption, vqa +\\+ preprocessor_config.json \\(or processor_config.json\\), tokenizer.json or vocab.txt"
           "bench +nothing more"
           "caption +BlipForConditionalGeneration" "--beams N .*default 1" "--max-new-tokens N .*default 20"
           "--top-k K .*default 50" "transformers does not read the folder's")
  if(NOT rc EQUAL 0 OR NOT out MATCHES "${re}")
    message(FATAL_ERROR "mmalign-blip --help does not match '${re}':\n${out}")
  endif()
endforeach()

# --- JSON outputs against transformers' records ------------------------------------------------------

# Runs the command of one generate record and compares ids and texts.
# kind: caption (record "prompt") or vqa (record "question").
function(check_record kind folder record)
  string(JSON name GET "${record}" name)
  set(args ${kind} --model ${folder} --json)
  string(JSON n_images LENGTH "${record}" images)
  math(EXPR last "${n_images} - 1")
  foreach(i RANGE ${last})
    string(JSON img GET "${record}" images ${i})
    list(APPEND args --image ${FIX}/${img})
  endforeach()
  if(kind STREQUAL "caption")
    string(JSON type TYPE "${record}" prompt)
    if(type STREQUAL "STRING")
      string(JSON prompt GET "${record}" prompt)
      list(APPEND args --prompt "${prompt}")
    elseif(NOT type STREQUAL "NULL")
      set(skipped TRUE PARENT_SCOPE)  # one prompt per image: not a command-line form
      return()
    endif()
  else()
    string(JSON type TYPE "${record}" question)
    if(type STREQUAL "STRING")
      string(JSON q GET "${record}" question)
      list(APPEND args --question "${q}")
    else()
      string(JSON n LENGTH "${record}" question)
      math(EXPR last "${n} - 1")
      foreach(i RANGE ${last})
        string(JSON q GET "${record}" question ${i})
        list(APPEND args --question "${q}")
      endforeach()
    endif()
  endif()
  generation_options(options "${record}")  # kwargs: options, the rest through --generation-config
  list(APPEND args ${options})
  expect(0 "" ${args})
  if(kind STREQUAL "caption")
    check_generated("${record}" ids captions texts ${args})
  else()
    check_generated("${record}" ids answers texts ${args})
  endif()
  set(skipped FALSE PARENT_SCOPE)
endfunction()

foreach(case caption_a vqa)
  if(case STREQUAL "vqa")
    set(kind vqa)
  else()
    set(kind caption)
  endif()
  file(READ ${BLIP}/${case}/expected.json expected)
  string(JSON n LENGTH "${expected}" generate)
  math(EXPR last "${n} - 1")
  set(checked "")
  foreach(i RANGE ${last})
    string(JSON record GET "${expected}" generate ${i})
    check_record(${kind} ${BLIP}/${case} "${record}")
    if(NOT skipped)
      string(JSON name GET "${record}" name)
      list(APPEND checked "${name}")
    endif()
  endforeach()
  # At least the defaults and a beam search, with and without a prompt for captions.
  if(kind STREQUAL "caption")
    set(required "defaults|no_prompt" "defaults|prompt" "beams3|no_prompt" "beams3|prompt")
  else()
    set(required "defaults|pair" "defaults|single" "beams3|pair")
  endif()
  foreach(r ${required})
    if(NOT r IN_LIST checked)
      message(FATAL_ERROR "${case}: no generate record '${r}' was checked (checked: ${checked})")
    endif()
  endforeach()
  list(LENGTH checked n_checked)
  message(STATUS "mmalign-blip ${kind}: ids and texts of ${n_checked} of ${n} transformers generate records equal")
endforeach()

# Sampling: reproducible per seed, and top_k 1 keeps only the best token, so it decodes greedily.
file(READ ${BLIP}/caption_a/expected.json expected)
string(JSON greedy GET "${expected}" generate 0)
string(JSON name GET "${greedy}" name)
string(JSON images LENGTH "${greedy}" images)
if(NOT name STREQUAL "defaults|no_prompt" OR NOT images EQUAL 2)
  message(FATAL_ERROR "caption_a's first generate record is '${name}' on ${images} images, expected the defaults on two")
endif()
string(JSON greedy_ids GET "${greedy}" ids)
check_sampling(1.7 "${greedy_ids}" caption --model ${BLIP}/caption_a --image ${astronaut} --image ${coffee} --json --sample)

# itm: one image against the retrieval case's three texts; scores within 1e-5 of transformers'.
file(READ ${BLIP}/retrieval/expected.json expected)
string(JSON single GET "${expected}" single)
string(JSON img GET "${single}" images 0)
set(args itm --model ${BLIP}/retrieval --image ${FIX}/${img} --json)
string(JSON n LENGTH "${single}" texts)
math(EXPR last "${n} - 1")
foreach(i RANGE ${last})
  string(JSON t GET "${single}" texts ${i})
  list(APPEND args --text "${t}")
endforeach()
expect(0 "" ${args})
if(NOT last_out MATCHES "^{\"itm_scores\":\\[.*\\],\"itc_scores\":\\[")
  message(FATAL_ERROR "itm --json printed: ${last_out}")
endif()
foreach(i RANGE ${last})
  foreach(key itm_scores itc_scores)
    string(JSON got GET "${last_out}" ${key} ${i})
    if(key STREQUAL "itc_scores")  # transformers' itc_scores are [images, texts]
      string(JSON want GET "${single}" ${key} 0 ${i})
    else()
      string(JSON want GET "${single}" ${key} ${i})
    endif()
    nano(g "${got}")
    nano(w "${want}")
    math(EXPR d "${g} - ${w}")
    if(d LESS -10000 OR d GREATER 10000)
      message(FATAL_ERROR "itm ${key}[${i}] = ${got}, transformers ${want} (more than 1e-5 apart)")
    endif()
  endforeach()
endforeach()
message(STATUS "mmalign-blip: exit codes, messages, help and JSON outputs as documented")
