// Device helpers of the all-reduce test (tp-test-kernels.cu), callable from host-compiled C++.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

// Element i of rank `rank`'s input at step `iter` of message `salt`: multiples of 1/8 below 2^7, so
// every sum over up to 8 ranks is exact and any stale value (another step, rank or message) differs.
#if defined(__CUDACC__)
__host__ __device__
#endif
inline float tp_test_value(int rank, uint32_t iter, int salt, int64_t i) {
    const int64_t v = (i * 7 + int64_t(iter % 997u) * 13 + rank * 101 + salt * 37) % 997;
    return float(v - 498) * 0.125f;
}

// dst[i] = tp_test_value(rank, *counter, salt, i) for i < n, reading the step from device memory (so a
// captured graph computes new inputs on every replay).
void tp_test_fill(float* dst, int64_t n, int rank, int salt, const uint32_t* counter, cudaStream_t stream);
// ++*counter
void tp_test_bump(uint32_t* counter, cudaStream_t stream);
