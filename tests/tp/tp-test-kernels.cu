// The two tiny kernels of the all-reduce replay test: inputs derived from a device-side step counter,
// and the counter's increment.
#include "tp-test-kernels.h"

namespace {

__global__ void fill_kernel(float* dst, int64_t n, int rank, int salt, const uint32_t* counter) {
    const uint32_t iter = *counter;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        dst[i] = tp_test_value(rank, iter, salt, i);
}

__global__ void bump_kernel(uint32_t* counter) { *counter += 1; }

}  // namespace

void tp_test_fill(float* dst, int64_t n, int rank, int salt, const uint32_t* counter, cudaStream_t stream) {
    const int threads = 256;
    const int64_t blocks = (n + threads - 1) / threads;
    fill_kernel<<<unsigned(blocks < 1024 ? blocks : 1024), threads, 0, stream>>>(dst, n, rank, salt, counter);
}

void tp_test_bump(uint32_t* counter, cudaStream_t stream) { bump_kernel<<<1, 1, 0, stream>>>(counter); }
