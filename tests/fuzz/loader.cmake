# Loader fuzzer: safetensors header parser + config.json / hf_quant_config.json parsers.
# One command: make fuzz && ./build-fuzz/tests/fuzz/fuzz-loader -runs=1000000 tests/fuzz/loader-corpus
glm_add_fuzzer(fuzz-loader
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/loader-fuzz.cpp
          ${CMAKE_SOURCE_DIR}/engine/safetensors.cpp
          ${CMAKE_SOURCE_DIR}/engine/config.cpp
  LIBS glm_ggml glm_deps)
target_include_directories(fuzz-loader PRIVATE ${CMAKE_SOURCE_DIR})
