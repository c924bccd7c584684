// The CUDA backend's public face: plain C++ (no CUDA types), so the engine can create it without
// compiling CUDA code. Everything else in cuda/ is private to the backend.
#pragma once

#include <memory>
#include <string>

#include <vector>

#include "ggml-like/backend.h"
#include "ggml-like/tp.h"

// Number of usable CUDA devices; 0 when there is no driver or GPU (never aborts).
int glm_cuda_device_count();
// Name and memory of a device ("NVIDIA H100 80GB HBM3", total bytes, free bytes).
struct CudaDeviceInfo {
    std::string name;
    size_t total_bytes = 0;
    size_t free_bytes = 0;
    int compute_capability = 0;  // 90, 100, 120 ...
};
Status glm_cuda_device_info(int device, CudaDeviceInfo& out);
// Prefill GEMMs (tensor cores, N > 8): f32-grade activations (bf16 hi + lo, about half the rate) when
// precise, else bf16-rounded (the default). Process-wide; set before graphs are recorded.
void glm_cuda_set_precise_prefill(bool precise);
// Fused launches of node patterns (cuda/fusion.cuh), on by default; off runs every node on its own
// (A/B measurements, bisecting a wrong result). Process-wide; set before graphs are recorded.
void glm_cuda_set_fusion(bool on);
// Programmatic dependent launch (cuda/common.cuh, cuda_launch): a kernel's blocks may be scheduled while
// the previous kernel finishes. On until set (the engine sets it from --pdl); off: plain stream order.
// Process-wide; set before graphs are recorded.
void glm_cuda_set_programmatic_launch(bool on);
// A backend on one device; fails with a Status when the device cannot be used. with_blas: the cuBLAS
// handle of its dense BF16 prefill products is made now (else see glm_cuda_enable_blas).
Status glm_backend_cuda_create(int device, std::unique_ptr<glm_backend>& out, bool with_blas = true);
// Makes the backend's cuBLAS handle and workspace (cuda/gemm-blas.cuh) if it has none: for the engine,
// which creates its backends without them and enables them once the memory plan leaves room
// (kCudaBlasBytes per device). *device_bytes (optional): device memory it took (0 if it had one).
// Without cuBLAS (-DGLM_CUBLAS=0, or a library that does not start) the backend keeps the
// hand-written tiles; that is not an error.
void glm_cuda_enable_blas(glm_backend* backend, size_t* device_bytes = nullptr);
// Room the engine's plan keeps for it: a handle with its 32 MiB workspace took ~100 MiB per H100 in a
// 4-GPU run (free memory 78.27 -> 78.17 GiB), rounded up for the kernels it loads on first use.
constexpr size_t kCudaBlasBytes = size_t(160) << 20;

// The communicator of CUDA ranks (ggml-like/tp.h), one backend per device, from one host thread:
// a one-shot peer-to-peer all-reduce (push writes into every peer's buffer, then flags) for messages
// up to p2p_max_bytes when every pair of devices has peer access, NCCL (ncclCommInitAll, group calls)
// otherwise. Which path is used, and why, goes to the log. Its buffers are made here, at start-up.
struct CudaCommOptions {
    bool allow_p2p = true;                 // false: NCCL only (tests force the fallback this way)
    // Measured on 4x H200 in CUDA graphs: the one-shot wins at 24 KiB (5.5 vs 15 us) and loses at
    // 1 MiB (24.5 vs 19.6 us), where every rank reads N full copies.
    size_t p2p_max_bytes = size_t(256) << 10;
};
Status glm_cuda_comm_create(const std::vector<glm_backend*>& ranks, const CudaCommOptions& options,
                            std::unique_ptr<glm_comm>& out);
