# mmalign-blip2's training and evaluation commands end to end on tiny data
# (tests/fixtures/blip2_train: 8 training and 4 test Fashion-MNIST images, a random tiny BLIP-2 and
# OPT): stage 1 → stage 2 → caption fine-tuning → eval-caption → eval-vqa → predict, with every
# option of the commands given once. Checks: each stage's loss falls; a run stopped after its
# first epoch and resumed writes the same model.safetensors bytes as the uninterrupted run, and
# resumed with fewer steps than its checkpoint is refused;
# PaddleMIX's underscore option names are taken; the output folders hold what transformers'
# from_pretrained reads; a failed run leaves the folder it was pointed at as it was; bad usage
# exits 2 and bad input 1 with one line naming the file, entry or option.
# -DEXE=<mmalign-blip2> -DFIX=<tests/fixtures> -DDIR=<scratch folder>
cmake_minimum_required(VERSION 3.20)
include(${CMAKE_CURRENT_LIST_DIR}/../common/check_cli.cmake)  # expect()
set(T ${FIX}/blip2_train)
set(D ${T}/data)
file(REMOVE_RECURSE ${DIR})
file(MAKE_DIRECTORY ${DIR})

# First and last "loss" of a metrics.jsonl, as text, and whether the last is below the first.
function(check_loss_falls metrics what)
  file(STRINGS ${metrics} lines)
  list(GET lines 0 first)
  list(GET lines -1 last)
  string(JSON a GET "${first}" loss)
  string(JSON b GET "${last}" loss)
  # CMake has no floating point: compare as fixed-point integers (losses here are < 100).
  foreach(v a b)
    string(REGEX REPLACE "^([0-9]+)\\.?([0-9]*).*" "\\1;\\2" parts "${${v}}")
    list(GET parts 0 int)
    list(LENGTH parts n)
    set(frac "000000")
    if(n GREATER 1)
      list(GET parts 1 f)
      string(SUBSTRING "${f}000000" 0 6 frac)
    endif()
    math(EXPR ${v}_fixed "${int} * 1000000 + 1${frac} - 1000000")
  endforeach()
  if(NOT b_fixed LESS a_fixed)
    message(FATAL_ERROR "${what}: the loss did not fall (first ${a}, last ${b}) in ${metrics}")
  endif()
  message(STATUS "${what}: loss ${a} -> ${b}")
endfunction()

set(data --data ${D}/train.json --image-root ${D})
set(s1 pretrain-stage1 --model ${T}/stage1_init ${data} --threads 1)

# Usage errors: exit 2 with the usage text.
expect(2 "pretrain-stage1 needs --output-dir OUT" ${s1})
expect(2 "unknown option \"--labels\"" ${s1} --output-dir ${DIR}/x --labels 3)
expect(2 "--language-model is a pretrain-stage2 option" ${s1} --output-dir ${DIR}/x --language-model ${T}/opt_lm)
expect(2 "--train-vit is a finetune-caption option" ${s1} --output-dir ${DIR}/x --train-vit)
expect(2 "pretrain-stage2 needs --language-model LM_DIR" pretrain-stage2 --model ${T}/stage1_init ${data} --output-dir ${DIR}/x)
expect(2 "generation options apply to eval-caption and eval-vqa" ${s1} --output-dir ${DIR}/x --beams 2)
expect(2 "eval-vqa needs --questions Q.json" eval-vqa --results ${DIR}/r.json --annotations ${D}/vqa_annotations.json)
# Bad input: exit 1, one line.
expect(1 "--precision: these commands train in fp32 only so far, found \"bf16\"" ${s1} --output-dir ${DIR}/x --precision bf16)
expect(1 "--save-strategy: expected no, epoch or steps, found 'hourly'" ${s1} --output-dir ${DIR}/x --save-strategy hourly)
expect(1 "--save-strategy steps needs --save-steps N >= 1" ${s1} --output-dir ${DIR}/x --save-strategy steps)
expect(1 "--learning-rate: expected a positive number, found '-1'" ${s1} --output-dir ${DIR}/x --learning-rate -1)
expect(1 "missing.json" pretrain-stage1 --model ${T}/stage1_init --data ${DIR}/missing.json --image-root ${D} --output-dir ${DIR}/x)
file(WRITE ${DIR}/bad_entry.json "[{\"caption\": \"a cat\", \"image\": \"images/item_00.png\"}, {\"image\": \"images/item_01.png\"}]")
expect(1 "bad_entry.json.*1" pretrain-stage1 --model ${T}/stage1_init --data ${DIR}/bad_entry.json --image-root ${D} --output-dir ${DIR}/x)

file(WRITE ${DIR}/missing_image.json "[{\"caption\": \"a\", \"image\": \"images/item_00.png\"}, {\"caption\": \"b\", \"image\": \"images/nope.png\"}]")
expect(1 "missing_image.json': entry 1: image '.*nope.png': no such file"
       pretrain-stage1 --model ${T}/stage1_init --data ${DIR}/missing_image.json --image-root ${D} --output-dir ${DIR}/x
       --per-device-train-batch-size 2)
# Mismatched model folders are named before anything is allocated from their configs.
expect(1 "opt_lm/config.json.model_type: pretrain-stage1 --model expects a BLIP-2 folder \\(\"blip-2\"\\), found \"opt\""
       pretrain-stage1 --model ${T}/opt_lm ${data} --output-dir ${DIR}/x)
expect(1 "stage1_init/config.json: model_type: expected \"opt\" \\(an OPTForCausalLM folder\\)"
       pretrain-stage2 --model ${T}/stage1_init --language-model ${T}/stage1_init ${data} --output-dir ${DIR}/x)
expect(1 "the folder holds Blip2ForImageTextRetrieval; finetune-caption --model needs Blip2ForConditionalGeneration"
       finetune-caption --model ${T}/stage1_init ${data} --output-dir ${DIR}/x)

# Stage 1: every training option once, PaddleMIX's spellings for some.
set(train_opts --per_device_train_batch_size 4 --learning_rate 2e-3 --warmup-steps 2 --warmup-start-lr 1e-4
               --eta-min 1e-5 --weight-decay 0.05 --num_train_epochs 4 --logging-steps 1 --save-strategy epoch
               --gradient-accumulation-steps 1 --max-grad-norm 5 --seed 7 --workers 2 --max-txt-len 16 --precision fp32)
expect(0 ".*" ${s1} --output-dir ${DIR}/stage1 ${train_opts})
foreach(f config.json model.safetensors vocab.txt tokenizer_config.json preprocessor_config.json metrics.jsonl
          checkpoint-4/training_state.safetensors checkpoint-16/model.safetensors)
  if(NOT EXISTS ${DIR}/stage1/${f})
    message(FATAL_ERROR "pretrain-stage1 did not write ${f}")
  endif()
endforeach()
file(READ ${DIR}/stage1/config.json cfg)
string(JSON arch GET "${cfg}" architectures 0)
if(NOT arch STREQUAL "Blip2ForImageTextRetrieval")
  message(FATAL_ERROR "stage 1 wrote ${arch}")
endif()
check_loss_falls(${DIR}/stage1/metrics.jsonl "stage 1 (ITC + ITM + ITG)")
# A second run into the same folder while nothing holds it works; a failed one leaves it as it was.
file(SHA256 ${DIR}/stage1/model.safetensors before)
expect(1 "bad_entry.json" pretrain-stage1 --model ${T}/stage1_init --data ${DIR}/bad_entry.json --image-root ${D} --output-dir ${DIR}/stage1)
file(SHA256 ${DIR}/stage1/model.safetensors after)
if(NOT before STREQUAL after)
  message(FATAL_ERROR "a failed run changed the model it was pointed at")
endif()

# Resume: stop after the first epoch (2 steps of 4), resume, and get the same bytes.
expect(0 ".*" ${s1} --output-dir ${DIR}/stage1_resumed ${train_opts} --max-steps 4)
expect(0 ".*" ${s1} --output-dir ${DIR}/stage1_resumed ${train_opts} --resume)
file(SHA256 ${DIR}/stage1_resumed/model.safetensors resumed)
if(NOT resumed STREQUAL before)
  message(FATAL_ERROR "stage 1 stopped and resumed differs from the uninterrupted run")
endif()
# The finished 16-step run resumed with --max-steps 4 would rewind it: refused, nothing rewritten.
expect(1 "checkpoint-16/training_state.safetensors: the checkpoint is at step 16, past the 4 steps these arguments give; resuming would rewind it"
       ${s1} --output-dir ${DIR}/stage1_resumed ${train_opts} --resume --max-steps 4 --skip-nonfinite-steps)
file(SHA256 ${DIR}/stage1_resumed/model.safetensors after)
if(NOT after STREQUAL resumed)
  message(FATAL_ERROR "a refused resume changed the model")
endif()

# Stage 2 through the frozen OPT, with save strategy steps.
expect(0 ".*" pretrain-stage2 --model ${DIR}/stage1 --language-model ${T}/opt_lm ${data} --output-dir ${DIR}/stage2
       --per-device-train-batch-size 4 --learning-rate 3e-3 --num-train-epochs 4 --logging-steps 1
       --save-strategy steps --save-steps 3 --threads 1)
foreach(f config.json model.safetensors vocab.json merges.txt preprocessor_config.json processor_config.json
          checkpoint-3/training_state.safetensors checkpoint-16/config.json)
  if(NOT EXISTS ${DIR}/stage2/${f})
    message(FATAL_ERROR "pretrain-stage2 did not write ${f}")
  endif()
endforeach()
check_loss_falls(${DIR}/stage2/metrics.jsonl "stage 2 (captions through the frozen OPT)")

# Caption fine-tuning with the ViT unfrozen and a prompt.
expect(0 ".*" finetune-caption --model ${DIR}/stage2 ${data} --output-dir ${DIR}/caption --prompt "a picture of"
       --train-vit --per-device-train-batch-size 4 --learning-rate 1e-3 --num-train-epochs 2 --logging-steps 1
       --save-strategy no --threads 1)
check_loss_falls(${DIR}/caption/metrics.jsonl "caption fine-tuning")

# Evaluation with the model, then scoring the results files it wrote.
expect(0 ".*" eval-caption --model ${DIR}/stage2 --data ${D}/test.json --image-root ${D} --output-dir ${DIR}/eval
       --max-new-tokens 8 --per-device-eval-batch-size 3 --threads 1)
foreach(k Bleu_1 Bleu_4 ROUGE_L CIDEr)
  string(JSON v GET "${last_out}" ${k})
endforeach()
expect(0 ".*" eval-caption --results ${DIR}/eval/caption_results.json --annotations ${D}/test.json --json)
string(JSON again GET "${last_out}" CIDEr)
if(NOT again STREQUAL v)
  message(FATAL_ERROR "eval-caption --results gives CIDEr ${again}, the model run ${v}")
endif()
expect(0 ".*" eval-vqa --model ${DIR}/stage2 --questions ${D}/vqa_questions.json --annotations ${D}/vqa_annotations.json
       --image-root ${D} --output-dir ${DIR}/eval --prompt-template "Question: {} Answer:" --max-new-tokens 4 --threads 1)
string(JSON overall GET "${last_out}" overall)
expect(0 ".*" eval-vqa --results ${DIR}/eval/vqa_results.json --questions ${D}/vqa_questions.json
       --annotations ${D}/vqa_annotations.json --json)
string(JSON overall2 GET "${last_out}" overall)
if(NOT overall STREQUAL overall2)
  message(FATAL_ERROR "eval-vqa --results gives ${overall2}, the model run ${overall}")
endif()

# Hand-written results: every answer right (as 8 of the 10 annotators gave it) scores 100; the
# annotators' "a sneaker" normalises to "sneaker" (articles dropped), so one more right answer.
file(WRITE ${DIR}/right.json "[{\"question_id\": 1008, \"answer\": \"Sneaker.\"}, {\"question_id\": 1009, \"answer\": \"coat\"}, {\"question_id\": 1010, \"answer\": \"sandal\"}, {\"question_id\": 1011, \"answer\": \"a sneaker\"}]")
expect(0 ".*" eval-vqa --results ${DIR}/right.json --questions ${D}/vqa_questions.json --annotations ${D}/vqa_annotations.json --json)
string(JSON overall GET "${last_out}" overall)
if(NOT overall EQUAL 100)
  message(FATAL_ERROR "eval-vqa of right answers: ${overall}, expected 100")
endif()
# A caption results file that repeats a reference scores Bleu_1 1 on that image's n-grams.
file(WRITE ${DIR}/same.json "[{\"image_id\": 8, \"caption\": \"one sneaker\"}, {\"image_id\": 9, \"caption\": \"one coat\"}, {\"image_id\": 10, \"caption\": \"one sandal\"}, {\"image_id\": 11, \"caption\": \"one sneaker\"}]")
expect(0 ".*" eval-caption --results ${DIR}/same.json --annotations ${D}/test.json --json)
string(JSON b1 GET "${last_out}" Bleu_1)
if(NOT b1 MATCHES "^(1|1\\.0|0\\.99999999[0-9]*)$")
  message(FATAL_ERROR "eval-caption of captions equal to a reference: Bleu_1 ${b1}, expected 1")
endif()

# predict: the caption command under PaddleMIX's name.
expect(0 ".*" predict --model ${DIR}/stage2 --image ${D}/images/item_09.png --max-new-tokens 5 --json)
string(JSON cap GET "${last_out}" captions 0)
