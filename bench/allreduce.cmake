# All-reduce latency (the CUDA communicator's peer-to-peer path against NCCL, in CUDA graphs and
# eager). Run on a multi-GPU machine: build/bench/glmrun-bench-allreduce [--json FILE] [--sweep].
if(GLMRUN_HAVE_CUDA)
  find_package(CUDAToolkit REQUIRED)
  add_executable(glmrun-bench-allreduce ${CMAKE_CURRENT_SOURCE_DIR}/allreduce.cpp)
  target_link_libraries(glmrun-bench-allreduce PRIVATE glm_cuda glm_ggml glm_deps CUDA::cudart glm_warnings)
endif()
