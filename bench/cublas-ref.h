// cuBLAS bf16 reference GEMMs for the prefill group of the kernel benchmark (kernels.cpp): what
// torch.matmul runs for bf16 tensors (bf16 in, bf16 out, f32 compute), at the same shapes and in
// the same process as the glmrun kernels.
#pragma once

#include <memory>
#include <vector>

#include "ggml-like/common.h"

class CublasRef {
public:
    CublasRef();
    ~CublasRef();
    CublasRef(const CublasRef&) = delete;
    CublasRef& operator=(const CublasRef&) = delete;

    // Handle, stream and events on device 0.
    Status init();
    // Median us of dst[N, M] = x[N, K] W[M, K]^T, W rotating over `copies` buffers.
    Status dense(int64_t M, int64_t N, int64_t K, int copies, double* us);
    // Median us of one grouped call (cublasGemmGroupedBatchedEx): for each expert e with tokens,
    // C_e[counts[e], M] = x_e[counts[e], K] W_e[M, K]^T (x already gathered per expert).
    Status grouped(int64_t M, int64_t K, const std::vector<int>& counts, double* us);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};
