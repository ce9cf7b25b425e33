# blip_caption on the tiny HF fixtures (tests/fixtures/blip, made by tools/make_blip_fixtures.py):
# its caption and answer are the texts transformers generated and decoded for the same image and
# question (expected.json), and the search re-ranks CLIP's top 3 with BLIP ITM scores equal to
# transformers' BlipForImageTextRetrieval (to the 4 printed decimals).
# -DEXE=<blip_caption> -DFIX=<tests/fixtures> -DDIR=<scratch folder>
cmake_minimum_required(VERSION 3.21)
include(${CMAKE_CURRENT_LIST_DIR}/../clip_zero_shot/tiny_clip_folder.cmake)  # the tiny CLIP folder in DIR

function(run)
  execute_process(COMMAND ${EXE} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "blip_caption ${ARGN} exited ${rc}: ${err}")
  endif()
  message(STATUS "${out}")
  set(out "${out}" PARENT_SCOPE)
endfunction()
function(expect text)
  string(FIND "${out}" "${text}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "expected '${text}' in:\n${out}")
  endif()
endfunction()

# The text transformers decoded in record `name` of <case>/expected.json (its first row), and
# the record's question when it has one.
function(expected_record case name out_text out_question)
  file(READ ${FIX}/blip/${case}/expected.json json)
  string(JSON n LENGTH "${json}" generate)
  math(EXPR last "${n} - 1")
  foreach(i RANGE ${last})
    string(JSON record_name GET "${json}" generate ${i} name)
    if(record_name STREQUAL name)
      string(JSON text GET "${json}" generate ${i} texts 0)
      string(JSON question ERROR_VARIABLE no_question GET "${json}" generate ${i} question)
      set(${out_text} "${text}" PARENT_SCOPE)
      set(${out_question} "${question}" PARENT_SCOPE)
      return()
    endif()
  endforeach()
  message(FATAL_ERROR "${case}/expected.json has no generate record '${name}'")
endfunction()

expected_record(caption_a "defaults|single_image" caption unused)
run(--caption ${FIX}/blip/caption_a ${FIX}/images/astronaut_420.jpg)
expect("caption  astronaut_420.jpg: ${caption}\n")
expected_record(vqa "defaults|single" answer question)
run(--vqa ${FIX}/blip/vqa --question "${question}" ${FIX}/images/coffee_444.jpg)
expect("answer   coffee_444.jpg: ${question} -> ${answer}\n")

# Search over three images; the retrieval fixture's "single" record scores astronaut_420.jpg against
# its second text (itm_scores[1]).
file(MAKE_DIRECTORY ${DIR}/images)
file(COPY ${FIX}/images/astronaut_420.jpg ${FIX}/images/cat_crop.png ${FIX}/images/coffee_444.jpg DESTINATION ${DIR}/images)
file(READ ${FIX}/blip/retrieval/expected.json json)
string(JSON query GET "${json}" single texts 1)
string(JSON score GET "${json}" single itm_scores 1)
# %.4f of a score in [0, 1): its first five decimals, rounded (the sixth onward cannot carry past
# a half here unless the fifth is exactly 5 with nothing after, which a float score never is).
if(NOT score MATCHES "^0\\.([0-9][0-9][0-9][0-9][0-9])")
  message(FATAL_ERROR "unexpected itm score '${score}'")
endif()
string(REGEX REPLACE "^0+([0-9])" "\\1" five "${CMAKE_MATCH_1}")
math(EXPR four "(${five} + 5) / 10")
string(LENGTH "${four}" len)
while(len LESS 4)
  set(four "0${four}")
  string(LENGTH "${four}" len)
endwhile()
run(--clip ${DIR} --itm ${FIX}/blip/retrieval --query "${query}" --top-k 3 ${DIR}/images)
expect("search   \"${query}\": CLIP top 3, re-ranked by BLIP ITM\n")

string(REGEX MATCHALL "\n  [123]\\. [a-z_0-9]+\\.(jpg|png)  itm [01]\\.[0-9]+" lines "${out}")
list(LENGTH lines n)
if(NOT n EQUAL 3)
  message(FATAL_ERROR "expected three ranked lines, found ${n}:\n${out}")
endif()
expect("astronaut_420.jpg  itm 0.${four}")
