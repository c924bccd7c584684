# Tokenizer benchmark: load time of a tokenizer.json and single-thread encode throughput.
add_executable(tokenizer-bench ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer-bench.cpp)
target_link_libraries(tokenizer-bench PRIVATE glm_tokenizer glm_warnings)
target_compile_definitions(tokenizer-bench PRIVATE GLMRUN_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
