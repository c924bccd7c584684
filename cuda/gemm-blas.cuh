// Dense BF16 products of prefill through cuBLAS (gemm-blas.cu). gemm-mma.cu rounds the activations to
// bf16 (its g_xcopy) and hands the product here when the backend has a handle; the NVFP4 experts,
// the paired gate / up / SwiGLU tiles and every other path stay on the hand-written kernels.
// Why: on an H100 cuBLAS ran the model's shapes 1.5-2.9x faster than the mma.sync tiles (its
// warpgroup kernels; bench/RESULTS.md, kernel benchmark), and the arithmetic is the same: bf16
// operands, f32 accumulation and f32 outputs.
#pragma once

#include <cstdint>

#include "cuda/common.cuh"

// One handle and its workspace per backend (stream). Made at start-up: nothing is allocated later, so
// products recorded into CUDA graphs never allocate.
struct CudaBlas;
// Made on ctx.device, which must be current. Null handle (and no error) when cuBLAS is left out
// (-DGLM_CUBLAS=0) or cannot start: the products then run on the hand-written tiles.
CudaBlas* cuda_blas_create(const CudaContext& ctx);
void cuda_blas_destroy(CudaBlas* blas);

// dst[b] (F32, M x N, column n at dst + n * ldd + b * dst_stride) = W[b] x[b] for b < batch, where
// row m of W[b] is the K bf16 at w + m * ldw + b * w_stride and column n of x[b] the K bf16 at
// x + n * ldx + b * x_stride (strides in elements; w_stride 0 broadcasts one weight).
struct BlasBf16Product {
    const __nv_bfloat16* w;
    int64_t ldw, w_stride;
    const __nv_bfloat16* x;
    int64_t ldx, x_stride;
    float* dst;
    int64_t ldd, dst_stride;
    int64_t M, N, K, batch;
};
// Launch only (graph-capture safe). False, having launched nothing, when ctx has no handle or the
// shape is outside what is passed to cuBLAS (int dimensions, ldw / ldx >= K, ldd >= M).
bool cuda_blas_bf16_product(const CudaContext& ctx, const BlasBf16Product& p);
