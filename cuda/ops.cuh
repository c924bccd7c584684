// Every CUDA op launcher, by family (one .cu file each). Each takes the device context and the
// destination tensor, whose sources and op params describe the work (ggml-like/tensor.h defines
// the semantics); inputs are validated by the graph builders, and again here where a kernel relies
// on a layout (contiguity, alignment).
#pragma once

#include "cuda/common.cuh"

// elementwise.cu: data movement and pointwise math
void cuda_op_get_rows(CudaContext& ctx, glm_tensor* dst);
void cuda_op_binary(CudaContext& ctx, glm_tensor* dst);     // ADD, MUL
void cuda_op_unary(CudaContext& ctx, glm_tensor* dst);      // SCALE, SILU, SIGMOID
void cuda_op_swiglu(CudaContext& ctx, glm_tensor* dst);
void cuda_op_concat(CudaContext& ctx, glm_tensor* dst);
void cuda_op_repeat(CudaContext& ctx, glm_tensor* dst);
void cuda_op_copy(CudaContext& ctx, glm_tensor* dst);       // CPY, CONT, ALL_REDUCE on one device
void cuda_op_set_rows(CudaContext& ctx, glm_tensor* dst);
// norm.cu
void cuda_op_rms_norm(CudaContext& ctx, glm_tensor* dst);
void cuda_op_layer_norm(CudaContext& ctx, glm_tensor* dst);
void cuda_op_soft_max(CudaContext& ctx, glm_tensor* dst);
// rope.cu
void cuda_op_rope(CudaContext& ctx, glm_tensor* dst);
// mul-mat.cu (dense types) and nvfp4.cu (NVFP4 weights)
void cuda_op_mul_mat(CudaContext& ctx, glm_tensor* dst);
void cuda_op_mul_mat_id(CudaContext& ctx, glm_tensor* dst);
// attn.cu
void cuda_op_attn(CudaContext& ctx, glm_tensor* dst);
// indexer.cu
void cuda_op_indexer(CudaContext& ctx, glm_tensor* dst);
void cuda_op_top_k(CudaContext& ctx, glm_tensor* dst);
// moe.cu
void cuda_op_moe_select(CudaContext& ctx, glm_tensor* dst);
void cuda_op_moe_weights(CudaContext& ctx, glm_tensor* dst);
void cuda_op_moe_combine(CudaContext& ctx, glm_tensor* dst);
void cuda_op_argmax(CudaContext& ctx, glm_tensor* dst);    // ARGMAX, MAX_ARG
// fill.cu: seeded random contents (synthetic weights)
void cuda_fill_random(CudaContext& ctx, glm_tensor* t, uint64_t seed, float mean, float scale);
