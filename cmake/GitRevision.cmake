# Writes ${PROJECT_BINARY_DIR}/generated/ra/git_revision.hpp at every build,
# so the revision recorded in run files is the one the binary was built from
# along with the build type ("<sha>" or "<sha>-dirty", "unknown" outside a git checkout).
set(_ra_gen "${PROJECT_BINARY_DIR}/generated/ra")
file(MAKE_DIRECTORY "${_ra_gen}")
file(WRITE "${PROJECT_BINARY_DIR}/git_revision.cmake" [=[
execute_process(COMMAND git rev-parse --short=12 HEAD WORKING_DIRECTORY "${SRC}"
                OUTPUT_VARIABLE rev OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc ERROR_QUIET)
if(NOT rc EQUAL 0)
  set(rev "unknown")
else()
  execute_process(COMMAND git status --porcelain --untracked-files=no WORKING_DIRECTORY "${SRC}"
                  OUTPUT_VARIABLE dirty OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(dirty)
    set(rev "${rev}-dirty")
  endif()
endif()
set(text "#pragma once\n#define RA_GIT_REVISION \"${rev}\"\n#define RA_BUILD_TYPE \"${BUILD_TYPE}\"\n")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUT}" "${text}")
endif()
]=])
add_custom_target(ra_git_revision ALL
  COMMAND ${CMAKE_COMMAND} -DSRC=${PROJECT_SOURCE_DIR} -DBUILD_TYPE=${CMAKE_BUILD_TYPE} -DOUT=${_ra_gen}/git_revision.hpp
          -P ${PROJECT_BINARY_DIR}/git_revision.cmake
  BYPRODUCTS ${_ra_gen}/git_revision.hpp
  COMMENT "Recording git revision")
