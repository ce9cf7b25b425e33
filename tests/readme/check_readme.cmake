# Fails unless the C++ block that a document (DOC; README.md by default: -DREADME) marks with
#   <!-- example: <NAME> -->
# is the text of the file EXAMPLE, whose path in the repository is NAME
# (examples/quickstart/main.cpp by default), so the document's example is the one the tests
# compile and run.
if(NOT DOC)
  set(DOC ${README})
endif()
if(NOT NAME)
  set(NAME examples/quickstart/main.cpp)
endif()
get_filename_component(doc_name ${DOC} NAME)
file(READ ${DOC} doc)
file(READ ${EXAMPLE} example)
set(marker "<!-- example: ${NAME} -->\n```cpp\n")
string(FIND "${doc}" "${marker}" start)
if(start EQUAL -1)
  message(FATAL_ERROR "${doc_name} has no block marked '<!-- example: ${NAME} -->'")
endif()
string(LENGTH "${marker}" mlen)
math(EXPR start "${start} + ${mlen}")
string(SUBSTRING "${doc}" ${start} -1 rest)
string(FIND "${rest}" "```" stop)
string(SUBSTRING "${rest}" 0 ${stop} block)
if(NOT block STREQUAL example)
  message(FATAL_ERROR "${doc_name}'s example differs from ${NAME}; copy the file into ${doc_name}")
endif()
message(STATUS "${doc_name} example matches ${NAME}")
