# Helpers shared by every target of ours: warnings in one place, and one way to add a test.
include_guard(GLOBAL)

# Warnings and language level for a target of ours (never for third-party code).
function(parcae_target_defaults target)
  target_compile_features(${target} PUBLIC cxx_std_17)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow)
    if(PARCAE_WERROR)
      target_compile_options(${target} PRIVATE -Werror)
    endif()
  endif()
  parcae_target_sanitizers(${target})
endfunction()

# PARCAE_SANITIZE (a -fsanitize= list such as "address,undefined" or "thread") instruments every
# target of ours; the link option is PUBLIC so that each program linking one is linked with the
# sanitizer's runtime. A report aborts the program (-fno-sanitize-recover), so a test that
# triggers one fails. Third-party libraries (LibTorch, SQLite, Ceres) stay as Debian built them.
function(parcae_target_sanitizers target)
  if(NOT PARCAE_SANITIZE)
    return()
  endif()
  target_compile_options(${target} PRIVATE
    -fsanitize=${PARCAE_SANITIZE} -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(${target} PUBLIC -fsanitize=${PARCAE_SANITIZE})
endfunction()

# parcae_add_test(NAME SOURCES ... LIBRARIES ... [LABELS ...])
# One GoogleTest executable per library; each TEST becomes one CTest test.
function(parcae_add_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBRARIES;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  parcae_target_defaults(${name})
  target_link_libraries(${name} PRIVATE ${ARG_LIBRARIES} GTest::gmock GTest::gtest_main)
  target_compile_definitions(${name} PRIVATE
    PARCAE_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    PARCAE_SHARED_DIR="${PROJECT_SOURCE_DIR}/../shared"
    PARCAE_BINARY_DIR="${CMAKE_BINARY_DIR}")
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  gtest_discover_tests(${name}
    WORKING_DIRECTORY ${CMAKE_BINARY_DIR}
    PROPERTIES LABELS "${ARG_LABELS}"
    DISCOVERY_TIMEOUT 120)
endfunction()
