# Kernel benchmark (issue 7): one-op graphs at GLM-5.1 TP4-rank shapes on the CUDA backend.
# Run on the GPU machine: build/bench/glmrun-bench-kernels [--json FILE] [--reps N] [--torch FILE]
# [--only GROUPS] [--mma bf16|bf16x2]. cuBLAS: the bf16 reference GEMMs of the prefill group.
if(GLMRUN_HAVE_CUDA)
  find_package(CUDAToolkit REQUIRED)
  add_executable(glmrun-bench-kernels ${CMAKE_CURRENT_SOURCE_DIR}/kernels.cpp ${CMAKE_CURRENT_SOURCE_DIR}/cublas-ref.cpp)
  target_link_libraries(glmrun-bench-kernels PRIVATE glm_cuda glm_ggml glm_deps CUDA::cudart CUDA::cublas glm_warnings)
endif()
