# Fails unless the C++ block that README.md marks with
#   <!-- example: examples/quickstart/main.cpp -->
# is the text of that file, so the README's example is the one the tests compile and run.
file(READ ${README} readme)
file(READ ${EXAMPLE} example)
set(marker "<!-- example: examples/quickstart/main.cpp -->\n```cpp\n")
string(FIND "${readme}" "${marker}" start)
if(start EQUAL -1)
  message(FATAL_ERROR "README.md has no block marked '<!-- example: examples/quickstart/main.cpp -->'")
endif()
string(LENGTH "${marker}" mlen)
math(EXPR start "${start} + ${mlen}")
string(SUBSTRING "${readme}" ${start} -1 rest)
string(FIND "${rest}" "```" stop)
string(SUBSTRING "${rest}" 0 ${stop} block)
if(NOT block STREQUAL example)
  message(FATAL_ERROR "README.md's example differs from examples/quickstart/main.cpp; copy the file into the README")
endif()
message(STATUS "README example matches examples/quickstart/main.cpp")
