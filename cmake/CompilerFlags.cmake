# ccache when present: a rebuild after a branch switch costs seconds, not minutes.
find_program(MEDVLP_CCACHE ccache)
if(MEDVLP_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER "${MEDVLP_CCACHE}")
endif()

# Warnings apply to medvlp's own targets only (through this interface target), so
# third-party headers pulled in as SYSTEM do not trip -Werror.
add_library(medvlp_warnings INTERFACE)
target_compile_options(medvlp_warnings INTERFACE -Wall -Wextra -Wpedantic)
if(MEDVLP_WERROR)
  target_compile_options(medvlp_warnings INTERFACE -Werror)
endif()

# Sanitizers go on medvlp's own targets only: the sentencepiece plugin must stay
# uninstrumented, since ASan forbids the RTLD_DEEPBIND it is normally loaded with and it is
# then loaded into a separate link-map namespace instead (see sentencepiece_tokenizer.cpp).
set(MEDVLP_SANITIZE "" CACHE STRING "Sanitizers for medvlp's targets, e.g. address,undefined")
if(MEDVLP_SANITIZE)
  target_compile_options(medvlp_warnings INTERFACE -fsanitize=${MEDVLP_SANITIZE} -fno-omit-frame-pointer)
  target_link_options(medvlp_warnings INTERFACE -fsanitize=${MEDVLP_SANITIZE})
  target_compile_definitions(medvlp_warnings INTERFACE MEDVLP_SANITIZED=1)
endif()

# Precompiled header shared by medvlp's targets; each target gets its own copy
# (REUSE_FROM would require identical flags between the shared library and executables).
set(MEDVLP_PCH_HEADER "${PROJECT_SOURCE_DIR}/cmake/medvlp_pch.h")
function(medvlp_use_pch target)
  if(MEDVLP_USE_PCH)
    target_precompile_headers(${target} PRIVATE "${MEDVLP_PCH_HEADER}")
  endif()
endfunction()
