// Every CUDA op launcher, by family (one .cu file each). Each takes the device context and the
// destination tensor, whose sources and op params describe the work (ggml-like/tensor.h defines
// the semantics); inputs are validated by the graph builders, and again here where a kernel relies
// on a layout (contiguity, alignment).
#pragma once

#include "cuda/common.cuh"

// elementwise.cu: data movement and pointwise math
void cuda_op_get_rows(CudaContext& ctx, glm_tensor* dst);   // GET_ROWS, sharded or not
void cuda_op_binary(CudaContext& ctx, glm_tensor* dst);     // ADD, MUL
void cuda_op_unary(CudaContext& ctx, glm_tensor* dst);      // SCALE, SILU, SIGMOID
void cuda_op_swiglu(CudaContext& ctx, glm_tensor* dst);
void cuda_op_concat(CudaContext& ctx, glm_tensor* dst);
void cuda_op_repeat(CudaContext& ctx, glm_tensor* dst);
void cuda_op_copy(CudaContext& ctx, glm_tensor* dst);       // CPY, CONT, ALL_REDUCE on one device
void cuda_op_set_rows(CudaContext& ctx, glm_tensor* dst);   // negative slots skip their row
// norm.cu
void cuda_op_rms_norm(CudaContext& ctx, glm_tensor* dst);
void cuda_op_layer_norm(CudaContext& ctx, glm_tensor* dst);
void cuda_op_soft_max(CudaContext& ctx, glm_tensor* dst);
// rope.cu
void cuda_op_rope(CudaContext& ctx, glm_tensor* dst);
// mul-mat.cu (the dispatch, generic / tiled / transposed kernels), gemv.cu (contiguous-row GEMV,
// N <= 8), gemm-mma.cu (tensor-core GEMMs, N > 8)
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
// context-parallel.cu: the exchanges of caches split by position over ranks (see tensor.h)
void cuda_op_pad_block(CudaContext& ctx, glm_tensor* dst);
void cuda_op_topk_candidates(CudaContext& ctx, glm_tensor* dst);
void cuda_op_topk_merge(CudaContext& ctx, glm_tensor* dst);
void cuda_op_attn_merge(CudaContext& ctx, glm_tensor* dst);
// fill.cu: seeded random contents (synthetic weights)
struct glm_fill_slice;  // ggml-like/backend.h
void cuda_fill_random(CudaContext& ctx, glm_tensor* t, uint64_t seed, float mean, float scale,
                      const glm_fill_slice& slice);

// ---- fused launches ------------------------------------------------------------------------------
// backend.cu matches node patterns in the graph (consecutive nodes, intermediates read by nobody
// else) and hands the nodes to one of these. Each launcher checks the layouts its kernel needs and
// returns false without launching anything when they do not hold: the nodes then run one by one.
// Results equal the unfused ops' up to float rounding order.
//
// norm.cu: sum = a + b (the ADD node, written: the residual stream) and y = rms_norm(sum) * w (the
// RMS_NORM node reading that sum), one pass over the row.
bool cuda_fused_add_rms_norm(CudaContext& ctx, glm_tensor* add, glm_tensor* norm);
// norm.cu: the rows attention writes, one launch each (the nodes' views skipped; only the last node
// is written):
// - norm -> rope (all or the first n_rot of each row) -> set_rows: the indexer key;
bool cuda_fused_norm_rope_set_rows(CudaContext& ctx, glm_tensor* norm, glm_tensor* rope, glm_tensor* set_rows);
// - concat(norm(A), rope(B)) -> set_rows: the latent row (c normed, k_rot roped) into the cache;
bool cuda_fused_norm_rope_concat_set_rows(CudaContext& ctx, glm_tensor* norm, glm_tensor* rope, glm_tensor* concat,
                                          glm_tensor* set_rows);
// - concat(A, rope(B)): the absorbed query (q_lat, then the roped q_rot) of every head.
bool cuda_fused_rope_concat(CudaContext& ctx, glm_tensor* rope, glm_tensor* concat);
// moe.cu: probs = sigmoid(logits) (the SIGMOID node), ids = moe_select(probs, bias), w =
// moe_weights(probs, ids): the router's whole epilogue in one launch (all three outputs written).
bool cuda_fused_moe_route(CudaContext& ctx, glm_tensor* sigmoid, glm_tensor* select, glm_tensor* weights);
// gemv.cu: swiglu(gate x, up x) for one token: two MUL_MAT nodes (same x) or two MUL_MAT_ID
// nodes (same x and ids) and the SWIGLU node over their results; only the SWIGLU node is written.
bool cuda_fused_gate_up_swiglu(CudaContext& ctx, glm_tensor* gate, glm_tensor* up, glm_tensor* swiglu);
// MOE_COMBINE, then the ADD of its output and another tensor of its shape (the shared expert's):
// one launch writes the sum (the combine's own output stays unwritten).
bool cuda_fused_moe_combine_add(CudaContext& ctx, glm_tensor* combine, glm_tensor* add);
