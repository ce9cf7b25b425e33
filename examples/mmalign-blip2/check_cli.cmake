# mmalign-blip2's contract on the committed BLIP-2 fixtures (tests/fixtures/blip2, transformers'
# own outputs): `caption --json` / `vqa --json` ids and texts equal to the generate records'
# new tokens and their decode, `features --json` equal to get_qformer_features within 1e-5,
# `itm --json` scores equal to Blip2ForImageTextRetrieval's within 1e-5, and on bad usage exit 2,
# on bad input exit 1 with one line on stderr naming the file, field or option.
# -DEXE=<mmalign-blip2> -DFIX=<tests/fixtures> -DDIR=<scratch folder>
cmake_minimum_required(VERSION 3.20)
include(${CMAKE_CURRENT_LIST_DIR}/../common/check_cli.cmake)  # expect(), json_compact(), nano(), safetensors_f32_nano()
set(B2 ${FIX}/blip2)
# Folders holding part of a captioning folder: weights only (bench needs no more), and weights +
# image processor without the tokenizer; a config without architectures.
make_partial_folders(${B2}/opt_prenorm preprocessor_config.json)

set(astronaut ${FIX}/images/astronaut_420.jpg)
set(pre ${B2}/opt_prenorm)

# Usage errors: exit 2 with the usage text.
expect(2 "unknown command" frobnicate)
expect(2 "--model DIR is required" caption --image ${astronaut})
expect(2 "unknown option \"--labels\"" caption --model ${pre} --image ${astronaut} --labels a)
expect(2 "features needs --image" features --model ${B2}/model)
expect(2 "itm needs one --image and at least one --text" itm --model ${B2}/retrieval --image ${astronaut})
expect(2 "generation options apply to caption, vqa and bench --task caption"
       features --model ${B2}/model --image ${astronaut} --beams 3)
expect(2 "need --sample" caption --model ${pre} --image ${astronaut} --top-p 0.5)
expect(2 "--prompt-template is a vqa option" caption --model ${pre} --image ${astronaut} --prompt-template "{}")
expect(2 "vqa needs one --question, or one per --image"
       vqa --model ${pre} --image ${astronaut} --image ${astronaut} --question a --question b --question c)
expect(2 "bench needs --task features or caption" bench --model ${pre} --task itm --batch 1 --iters 1)
# Bad input: exit 1, one line naming the file, the field or the option.
expect(1 "no_such_dir/config.json.: no such file" caption --model ${DIR}/no_such_dir --image ${astronaut})
expect(1 "missing.jpg" features --model ${B2}/model --image ${DIR}/missing.jpg)
expect(1 "opt_prenorm/config.json.architectures: the folder holds Blip2ForConditionalGeneration; itm needs Blip2ForImageTextRetrieval"
       itm --model ${pre} --image ${astronaut} --text "a cat")
expect(1 "retrieval/config.json.architectures: the folder holds Blip2ForImageTextRetrieval; caption needs Blip2ForConditionalGeneration"
       caption --model ${B2}/retrieval --image ${astronaut})
expect(1 "model/config.json.architectures: the folder holds Blip2Model; vqa needs Blip2ForConditionalGeneration"
       vqa --model ${B2}/model --image ${astronaut} --question "what is it?")
expect(1 "retrieval/config.json.architectures: the folder holds Blip2ForImageTextRetrieval; features needs Blip2Model or Blip2ForConditionalGeneration"
       features --model ${B2}/retrieval --image ${astronaut})
expect(1 "holds Blip2ForImageTextRetrieval; bench --task features needs Blip2Model or Blip2ForConditionalGeneration"
       bench --model ${B2}/retrieval --task features --batch 1 --iters 1)
expect(1 "holds Blip2Model; bench --task caption needs Blip2ForConditionalGeneration"
       bench --model ${B2}/model --task caption --batch 1 --iters 1)
expect(1 "no_architectures/config.json.architectures: expected a list naming the model class, found nothing"
       caption --model ${DIR}/no_architectures --image ${astronaut})
set(cap caption --model ${pre} --image ${astronaut})
expect(1 "--beams: 0 is outside the allowed range \\[1, 1024\\]" ${cap} --beams 0)
expect(1 "--max-new-tokens: expected an integer, found 'ten'" ${cap} --max-new-tokens ten)
expect(1 "--length-penalty: expected a finite number, found 'inf'" ${cap} --length-penalty inf)
expect(1 "--top-p: expected a number in \\(0, 1\\], found '1.5'" ${cap} --sample --top-p 1.5)
expect(1 "--repetition-penalty: expected a positive number, found '0'" ${cap} --repetition-penalty 0)
expect(1 "--threads: 0 is outside the allowed range \\[1, 4096\\]" ${cap} --threads 0)
expect(1 "--prompt-template expects a text with \\{\\} where the question goes, found \"Question: Answer:\""
       vqa --model ${pre} --image ${astronaut} --question "what?" --prompt-template "Question: Answer:")
expect(1 "bad_generation_config.json: num_beams must be positive, found 0"
       ${cap} --generation-config ${DIR}/bad_generation_config.json)
# Each command reads only the files it needs: bench runs on weights alone; a missing image processor or
# tokenizer is named when a command needs it.
expect(1 "weights_only': no preprocessor_config.json or processor_config.json"
       features --model ${DIR}/weights_only --image ${astronaut})
expect(1 "no_tokenizer.*(tokenizer.json|vocab.json)" caption --model ${DIR}/no_tokenizer --image ${astronaut})
expect(0 "" features --model ${DIR}/no_tokenizer --image ${astronaut} --json)
expect(0 "" bench --model ${DIR}/weights_only --task features --batch 2 --iters 1 --threads 1)
if(NOT last_out MATCHES "^features batch=2 images_per_s=[0-9]")
  message(FATAL_ERROR "bench --task features printed: ${last_out}")
endif()
expect(0 "" bench --model ${DIR}/weights_only --task caption --batch 2 --iters 2 --beams 2 --min-new-tokens 3 --threads 1)
if(NOT last_out MATCHES "^caption batch=2 beams=2 images_per_s=[0-9.]+ new_tokens_per_s=[0-9]")
  message(FATAL_ERROR "bench --task caption printed: ${last_out}")
endif()

# The help lists the model classes, the files each command reads and the generation defaults.
execute_process(COMMAND ${EXE} --help RESULT_VARIABLE rc OUTPUT_VARIABLE out)
foreach(re "features +Blip2Model or Blip2ForConditionalGeneration" "itm +Blip2ForImageTextRetrieval"
           "caption, vqa +\\+ the same, processor_config.json's num_query_tokens" "bench +nothing more"
           "--beams N .*default 1" "--max-new-tokens N .*default 20" "--length-penalty X .*default 1.0"
           "transformers does not read the folder's generation_config.json")
  if(NOT rc EQUAL 0 OR NOT out MATCHES "${re}")
    message(FATAL_ERROR "mmalign-blip2 --help does not match '${re}':\n${out}")
  endif()
endforeach()

# --- features: the Q-Former's output against transformers' -----------------------------------------

# `features --json` on the case's two images equals the tensor `name` of its expected.safetensors
# within 1e-5; image_embeds_shape is the vision model's last_hidden_state shape.
function(check_features case name)
  file(READ ${B2}/${case}/expected.json expected)
  set(args features --model ${B2}/${case} --json)
  foreach(i 0 1)
    string(JSON img GET "${expected}" images ${i})
    list(APPEND args --image ${FIX}/${img})
  endforeach()
  expect(0 "" ${args})
  string(JSON embeds_shape GET "${expected}" tensor_shapes image_embeds)
  string(REGEX REPLACE "[ \t\r\n]" "" embeds_shape "${embeds_shape}")
  json_compact(got_shape "${last_out}" image_embeds_shape)
  if(NOT got_shape STREQUAL embeds_shape)
    message(FATAL_ERROR "features on ${case}: image_embeds_shape ${got_shape}, transformers ${embeds_shape}")
  endif()
  safetensors_f32_nano(want ${B2}/${case}/expected.safetensors ${name})  # also sets want_shape
  string(JSON got_b LENGTH "${last_out}" qformer_output)
  string(JSON got_q LENGTH "${last_out}" qformer_output 0)
  string(JSON got_d LENGTH "${last_out}" qformer_output 0 0)
  if(NOT "${got_b};${got_q};${got_d}" STREQUAL "${want_shape}")
    message(FATAL_ERROR "features on ${case}: qformer_output is [${got_b},${got_q},${got_d}], transformers [${want_shape}]")
  endif()
  set(k 0)
  set(worst 0)
  math(EXPR lb "${got_b} - 1")
  math(EXPR lq "${got_q} - 1")
  math(EXPR ld "${got_d} - 1")
  foreach(b RANGE ${lb})
    string(JSON rows GET "${last_out}" qformer_output ${b})
    foreach(q RANGE ${lq})
      string(JSON row GET "${rows}" ${q})
      foreach(d RANGE ${ld})
        string(JSON x GET "${row}" ${d})
        nano(g "${x}")
        list(GET want ${k} w)
        math(EXPR diff "${g} - (${w})")
        if(diff LESS 0)
          math(EXPR diff "-(${diff})")
        endif()
        if(diff GREATER worst)
          set(worst ${diff})
        endif()
        math(EXPR k "${k} + 1")
      endforeach()
    endforeach()
  endforeach()
  if(worst GREATER 10000)
    message(FATAL_ERROR "features on ${case}: qformer_output differs from transformers' ${name} by ${worst}e-9 (> 1e-5)")
  endif()
  message(STATUS "mmalign-blip2 features on ${case}: ${k} values within ${worst}e-9 of transformers' ${name}")
endfunction()
check_features(model get_qformer_features)                 # Blip2Model.get_qformer_features
check_features(opt_prenorm qformer.last_hidden_state)      # a Blip2ForConditionalGeneration folder

# --- caption / vqa: the generate records ---------------------------------------------------------

# Runs one generate record through the command line and compares the new tokens and their texts.
# Prompts: none → caption; one prompt for every image → caption --prompt, or vqa --question when it
# is "Question: {} Answer:"; different prompts → vqa with the template "{}" (each prompt as given).
function(check_record folder record)
  set(args "")
  string(JSON n_images LENGTH "${record}" images)
  math(EXPR last "${n_images} - 1")
  foreach(i RANGE ${last})
    string(JSON img GET "${record}" images ${i})
    list(APPEND args --image ${FIX}/${img})
  endforeach()
  string(JSON type TYPE "${record}" prompt)
  set(key captions)
  if(type STREQUAL "NULL")
    set(args caption ${args})
  else()
    string(JSON n LENGTH "${record}" prompt)
    math(EXPR last "${n} - 1")
    set(prompts "")
    set(same TRUE)
    string(JSON first GET "${record}" prompt 0)
    foreach(i RANGE ${last})
      string(JSON p GET "${record}" prompt ${i})
      list(APPEND prompts "${p}")
      if(NOT p STREQUAL first)
        set(same FALSE)
      endif()
    endforeach()
    if(same AND first MATCHES "^Question: (.*) Answer:$")
      set(key answers)
      set(args vqa ${args} --question "${CMAKE_MATCH_1}")
    elseif(same)
      set(args caption ${args} --prompt "${first}")
    else()
      set(key answers)
      set(args vqa ${args} --prompt-template "{}")
      foreach(p IN LISTS prompts)
        list(APPEND args --question "${p}")
      endforeach()
    endif()
  endif()
  list(APPEND args --model ${folder} --json)
  generation_options(options "${record}")  # kwargs: options, the rest through --generation-config
  list(APPEND args ${options})
  expect(0 "" ${args})
  check_generated("${record}" new_tokens ${key} new_texts ${args})
endfunction()

# opt_prenorm: 4 queries, left padding, every setting; opt_postnorm: 32 queries on a 6×6 grid,
# project_in/out, right padding.
foreach(case opt_prenorm opt_postnorm)
  file(READ ${B2}/${case}/expected.json expected)
  string(JSON n LENGTH "${expected}" generate)
  math(EXPR last "${n} - 1")
  set(checked "")
  foreach(i RANGE ${last})
    string(JSON record GET "${expected}" generate ${i})
    check_record(${B2}/${case} "${record}")
    string(JSON name GET "${record}" name)
    list(APPEND checked "${name}")
  endforeach()
  foreach(r "greedy|no_prompt" "greedy|prompt" "greedy|vqa" "greedy|prompt_pair" "beams3_lp0_6|prompt_pair" "min5_max8|vqa")
    if(NOT r IN_LIST checked)
      message(FATAL_ERROR "${case}: no generate record '${r}' was checked (checked: ${checked})")
    endif()
  endforeach()
  message(STATUS "mmalign-blip2 on ${case}: new tokens and texts of all ${n} transformers generate records equal")
endforeach()

# Sampling: reproducible per seed, and top_k 1 keeps only the best token, so it decodes greedily.
file(READ ${pre}/expected.json expected)
string(JSON greedy GET "${expected}" generate 1)
string(JSON name GET "${greedy}" name)
if(NOT name STREQUAL "greedy|prompt")
  message(FATAL_ERROR "opt_prenorm's second generate record is '${name}', expected greedy|prompt")
endif()
string(JSON greedy_ids GET "${greedy}" new_tokens)
check_sampling(3 "${greedy_ids}" caption --model ${pre} --image ${astronaut} --image ${FIX}/images/coffee_444.jpg
               --prompt "a photo of" --max-new-tokens 10 --json --sample)

# --- itm: one image against the retrieval case's four texts ------------------------------------------
# transformers' ITM pairs text t with itm_images[t]; its ITC scores every image against every text.
file(READ ${B2}/retrieval/expected.json expected)
string(JSON n LENGTH "${expected}" texts)
math(EXPR last "${n} - 1")
set(texts "")
foreach(t RANGE ${last})
  string(JSON text GET "${expected}" texts ${t})
  list(APPEND texts --text "${text}")
endforeach()
set(compared 0)
foreach(i 0 1)
  string(JSON img GET "${expected}" images ${i})
  expect(0 "" itm --model ${B2}/retrieval --image ${FIX}/${img} ${texts} --json)
  if(NOT last_out MATCHES "^{\"itm_scores\":\\[.*\\],\"itc_scores\":\\[")
    message(FATAL_ERROR "itm --json printed: ${last_out}")
  endif()
  foreach(t RANGE ${last})
    string(JSON got GET "${last_out}" itc_scores ${t})
    string(JSON want GET "${expected}" itc scores ${i} ${t})
    set(pairs "itc_scores|${got}|${want}")
    string(JSON paired GET "${expected}" itm_images ${t})
    if(paired STREQUAL img)
      string(JSON got GET "${last_out}" itm_scores ${t})
      string(JSON want GET "${expected}" itm scores ${t})
      list(APPEND pairs "itm_scores|${got}|${want}")
    endif()
    foreach(p IN LISTS pairs)
      string(REPLACE "|" ";" p "${p}")
      list(GET p 0 key)
      list(GET p 1 got)
      list(GET p 2 want)
      nano(g "${got}")
      nano(w "${want}")
      math(EXPR d "${g} - ${w}")
      if(d LESS -10000 OR d GREATER 10000)
        message(FATAL_ERROR "itm on ${img}: ${key}[${t}] = ${got}, transformers ${want} (more than 1e-5 apart)")
      endif()
      math(EXPR compared "${compared} + 1")
    endforeach()
  endforeach()
endforeach()
message(STATUS "mmalign-blip2 itm: ${compared} scores within 1e-5 of transformers'")
message(STATUS "mmalign-blip2: exit codes, messages, help and JSON outputs as documented")
