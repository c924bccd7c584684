// Seeded random contents for synthetic weights: every element computed on the device from
// (seed, index) with the same generator as the CPU backend, so the two can be compared and no host
// copy of a full-size model is ever made.
#include "cuda/ops.cuh"

namespace {

__device__ __forceinline__ uint64_t fill_bits(uint64_t seed, uint64_t i) {
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

__global__ void fill_bytes_kernel(uint8_t* p, uint64_t n, uint64_t seed) {
    for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < n; i += uint64_t(gridDim.x) * blockDim.x)
        p[i] = uint8_t(fill_bits(seed, i) >> 56);
}

__global__ void fill_float_kernel(uint8_t* p, int32_t type, size_t elem_bytes, uint64_t n, uint64_t seed, float mean,
                                  float scale, bool positive) {
    for (uint64_t i = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; i < n; i += uint64_t(gridDim.x) * blockDim.x) {
        const float u = float(fill_bits(seed, i) >> 40) * (2.0f / 16777216.0f) - 1.0f;
        float v = mean + scale * u;
        if (positive) v = fabsf(v);
        store_float(type, p + i * elem_bytes, v);
    }
}

}  // namespace

void cuda_fill_random(CudaContext& ctx, glm_tensor* t, uint64_t seed, float mean, float scale) {
    GLM_ASSERT(t->data && glm_is_contiguous(t));
    uint8_t* p = static_cast<uint8_t*>(t->data);
    const int threads = 256, blocks = ctx.n_sm * 8;
    if (t->type == GLM_TYPE_NVFP4 || t->type == GLM_TYPE_U8 || t->type == GLM_TYPE_I32) {
        fill_bytes_kernel<<<blocks, threads, 0, ctx.stream>>>(p, glm_nbytes(t), seed);
        return;
    }
    GLM_ASSERT(glm_type_is_float(t->type));
    fill_float_kernel<<<blocks, threads, 0, ctx.stream>>>(p, t->type, glm_type_block_bytes(t->type),
                                                          uint64_t(glm_nelements(t)), seed, mean, scale,
                                                          t->type == GLM_TYPE_F8_E4M3);
}
