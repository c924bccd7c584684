// cuBLAS for the dense BF16 products of prefill (see gemm-blas.cuh).
#include "cuda/gemm-blas.cuh"

#include <cublas_v2.h>

#include <climits>

// Build knob for A/B runs: -DGLM_CUBLAS=0 keeps every product on the hand-written tiles.
#ifndef GLM_CUBLAS
#define GLM_CUBLAS 1
#endif

struct CudaBlas {
    cublasHandle_t handle = nullptr;
    void* workspace = nullptr;  // kWorkspaceBytes
};

namespace {

// What cuBLAS asks for on Hopper and Blackwell; with it given, no call allocates.
constexpr size_t kWorkspaceBytes = size_t(32) << 20;

#define BLAS_CHECK(call)                                                                              \
    do {                                                                                              \
        const cublasStatus_t blas_check_st_ = (call);                                                 \
        if (blas_check_st_ != CUBLAS_STATUS_SUCCESS)                                                  \
            glm_abort_impl(__FILE__, __LINE__,                                                        \
                           fmt::format("cuBLAS error {}: {} ({})", int(blas_check_st_),               \
                                       cublasGetStatusString(blas_check_st_), #call));                \
    } while (0)

bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

}  // namespace

CudaBlas* cuda_blas_create(const CudaContext& ctx) {
    if (!GLM_CUBLAS) return nullptr;
    auto* blas = new CudaBlas;
    // A library that cannot start (missing or broken install) leaves the hand-written tiles in charge.
    if (cublasCreate(&blas->handle) != CUBLAS_STATUS_SUCCESS) {
        delete blas;
        cudaGetLastError();
        return nullptr;
    }
    if (cudaMalloc(&blas->workspace, kWorkspaceBytes) != cudaSuccess) {
        cudaGetLastError();
        cuda_blas_destroy(blas);
        return nullptr;
    }
    // cublasSetStream resets the workspace to the library's pool, so the workspace is set after it.
    BLAS_CHECK(cublasSetStream(blas->handle, ctx.stream));
    BLAS_CHECK(cublasSetWorkspace(blas->handle, blas->workspace, kWorkspaceBytes));
    // The f32 compute type as written: no reduced-precision shortcuts (e.g. tf32 or bf16x9 emulation).
    BLAS_CHECK(cublasSetMathMode(blas->handle, CUBLAS_DEFAULT_MATH));
    return blas;
}

void cuda_blas_destroy(CudaBlas* blas) {
    if (!blas) return;
    if (blas->handle) cublasDestroy(blas->handle);
    if (blas->workspace) cudaFree(blas->workspace);
    delete blas;
}

bool cuda_blas_bf16_product(const CudaContext& ctx, const BlasBf16Product& p) {
    if (!ctx.blas) return false;
    if (!fits_int(p.M) || !fits_int(p.N) || !fits_int(p.K) || !fits_int(p.batch) || !fits_int(p.ldw) ||
        !fits_int(p.ldx) || !fits_int(p.ldd))
        return false;
    if (p.ldw < p.K || p.ldx < p.K || p.ldd < p.M || p.M == 0 || p.N == 0 || p.K == 0 || p.batch == 0) return false;
    // Column-major, as cuBLAS sees it: W is K x M (ldw), so dst (M x N) = W^T x.
    const float one = 1.0f, zero = 0.0f;
    cublasHandle_t h = ctx.blas->handle;
    if (p.batch == 1) {
        BLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(p.M), int(p.N), int(p.K), &one, p.w, CUDA_R_16BF,
                                int(p.ldw), p.x, CUDA_R_16BF, int(p.ldx), &zero, p.dst, CUDA_R_32F, int(p.ldd),
                                CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    } else {
        BLAS_CHECK(cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(p.M), int(p.N), int(p.K), &one, p.w,
                                              CUDA_R_16BF, int(p.ldw), p.w_stride, p.x, CUDA_R_16BF, int(p.ldx),
                                              p.x_stride, &zero, p.dst, CUDA_R_32F, int(p.ldd), p.dst_stride,
                                              int(p.batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    return true;
}
