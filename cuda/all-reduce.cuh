// The CUDA communicator's extra face for tests and benchmarks (glm_cuda_comm_create in
// cuda/backend.h is the one the engine needs). Plain C++ with CUDA runtime types only, so .cpp files
// compiled by the host compiler (tests/tp, bench/allreduce.cpp) can include it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "ggml-like/backend.h"
#include "ggml-like/tp.h"

// How the one-shot peer-to-peer kernel is cut into blocks. A message of n floats gets
// grid = ceil(n / chunk) blocks with chunk = max(min_chunk_floats, ceil(n / max_blocks)) rounded up
// to 4 floats: tiny messages get one block (least latency), large ones up to max_blocks (enough
// SMs pushing to saturate NVLink). The defaults are a first guess; bench/allreduce.cpp --sweep
// measures the alternatives.
struct CudaCommTuning {
    int threads = 512;             // per block, a multiple of 32 in [32, 1024]
    int min_chunk_floats = 1024;   // 4 KiB per block at least
    int max_blocks = 32;           // clamped to 128 and to the smallest SM count of the ranks
};

// The stream and device a CUDA backend runs on (the communicator launches there too). Aborts on a
// backend that is not CUDA, like cuda_backend_context.
cudaStream_t cuda_backend_stream(glm_backend* backend);
int cuda_backend_device(glm_backend* backend);

// These take a communicator made by glm_cuda_comm_create (abort on any other).
// Whether a message of `bytes` goes through the peer-to-peer kernel (false: NCCL).
bool cuda_comm_uses_p2p(const glm_comm& comm, size_t bytes);
// The device side's state: a peer-to-peer barrier that timed out (a rank that never arrived) is
// recorded by the kernel and reported here and by every later all_reduce. Replayed CUDA graphs do not
// call all_reduce, so whoever replays them should call this after synchronizing.
Status cuda_comm_check(const glm_comm& comm);
CudaCommTuning cuda_comm_tuning(const glm_comm& comm);
// threads is checked (aborts when out of range), max_blocks clamped. Every rank uses the same tuning, so the ranks always agree
// on the block layout; already captured graphs keep the layout they were captured with.
void cuda_comm_set_tuning(glm_comm& comm, const CudaCommTuning& tuning);
