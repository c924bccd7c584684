// Seeded random contents for synthetic weights: every element computed on the device from
// (seed, index in the whole tensor) with the same generator and index map as the CPU backend, so the
// two can be compared, every tensor-parallel share holds its part of one model, and no host copy of a
// full-size model is ever made.
#include "cuda/ops.cuh"
#include "ggml-like/backend.h"

namespace {

__global__ void fill_bytes_kernel(uint8_t* p, uint64_t n, uint64_t seed, glm_fill_map map) {
    grid_dependency_wait();
    for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < n; i += uint64_t(gridDim.x) * blockDim.x)
        p[i] = uint8_t(glm_fill_bits(seed, glm_fill_global_index(map, i)) >> 56);
}

__global__ void fill_float_kernel(uint8_t* p, int32_t type, size_t elem_bytes, uint64_t n, uint64_t seed,
                                  glm_fill_map map, float mean, float scale, bool positive) {
    grid_dependency_wait();
    for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < n; i += uint64_t(gridDim.x) * blockDim.x) {
        float v = glm_fill_value(glm_fill_bits(seed, glm_fill_global_index(map, i)), mean, scale);
        if (positive) v = fabsf(v);
        store_float(type, p + i * elem_bytes, v);
    }
}

}  // namespace

void cuda_fill_random(CudaContext& ctx, glm_tensor* t, uint64_t seed, float mean, float scale,
                      const glm_fill_slice& slice) {
    GLM_ASSERT(t->data);
    const glm_fill_map map = glm_fill_map_make(t, slice);
    uint8_t* p = static_cast<uint8_t*>(t->data);
    const int threads = 256, blocks = ctx.n_sm * 8;
    if (glm_fill_is_bytes(t->type)) {
        cuda_launch(ctx.stream, fill_bytes_kernel, blocks, threads, 0, p, uint64_t(glm_nbytes(t)), seed, map);
        return;
    }
    GLM_ASSERT(glm_type_is_float(t->type));
    cuda_launch(ctx.stream, fill_float_kernel, blocks, threads, 0, p, t->type, glm_type_block_bytes(t->type),
        uint64_t(glm_nelements(t)), seed, map, mean, scale, t->type == GLM_TYPE_F8_E4M3);
}
