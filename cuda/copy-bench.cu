// glm_cuda_copy_bandwidth: the practical bandwidth ceiling of one device for the --bench roofline.
// cudaMemcpyAsync device-to-device runs as a copy kernel, streaming every byte in once and out once
// like the weight and cache reads of a decode step; buffers far larger than L2 keep caches out of it.
#include "cuda/copy-bench.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

namespace {

// Releases whatever was made, on every path, and puts the caller's current device back.
struct CopyBenchResources {
    int previous_device = 0;
    void* src = nullptr;
    void* dst = nullptr;
    cudaStream_t stream = nullptr;
    cudaEvent_t start = nullptr, stop = nullptr;

    ~CopyBenchResources() {
        if (start) cudaEventDestroy(start);
        if (stop) cudaEventDestroy(stop);
        if (stream) cudaStreamDestroy(stream);
        if (src) cudaFree(src);
        if (dst) cudaFree(dst);
        cudaGetLastError();  // leave no sticky error for the backend that comes next
        cudaSetDevice(previous_device);
    }
};

Status cuda_failure(int device, const char* what, cudaError_t err) {
    cudaGetLastError();
    return Status::device("copy bandwidth on CUDA device {}: {} failed ({}); check that the GPU is free and healthy (nvidia-smi)",
                          device, what, cudaGetErrorString(err));
}

}  // namespace

Status glm_cuda_copy_bandwidth(int device, double& bytes_per_s) {
    constexpr size_t k_largest = size_t(1) << 30;      // per buffer; H100/H200 L2 is 50-60 MB
    constexpr size_t k_smallest = size_t(64) << 20;    // still > L2 on every supported GPU
    constexpr int k_warmup = 2, k_reps = 9;
    CopyBenchResources r;
    cudaGetDevice(&r.previous_device);
    cudaError_t err = cudaSetDevice(device);
    if (err != cudaSuccess) return cuda_failure(device, "selecting the device", err);

    // The largest pair of buffers that fits, halving from 1 GiB: a loaded device may be nearly full.
    size_t bytes = k_largest;
    for (;; bytes /= 2) {
        if (cudaMalloc(&r.src, bytes) == cudaSuccess && cudaMalloc(&r.dst, bytes) == cudaSuccess) break;
        cudaGetLastError();
        if (r.src) cudaFree(r.src);
        r.src = nullptr;
        if (bytes / 2 < k_smallest)
            return Status::device("copy bandwidth on CUDA device {}: not even two {} MiB buffers fit; free the GPU",
                                  device, k_smallest >> 20);
    }
    if ((err = cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking)) != cudaSuccess)
        return cuda_failure(device, "creating a stream", err);
    if ((err = cudaEventCreate(&r.start)) != cudaSuccess || (err = cudaEventCreate(&r.stop)) != cudaSuccess)
        return cuda_failure(device, "creating events", err);
    // Touch both buffers first so the timed copies pay no first-use page mapping.
    if ((err = cudaMemsetAsync(r.src, 1, bytes, r.stream)) != cudaSuccess ||
        (err = cudaMemsetAsync(r.dst, 0, bytes, r.stream)) != cudaSuccess)
        return cuda_failure(device, "clearing the buffers", err);

    std::vector<double> rates;
    for (int i = 0; i < k_warmup + k_reps; ++i) {
        if ((err = cudaEventRecord(r.start, r.stream)) != cudaSuccess ||
            (err = cudaMemcpyAsync(r.dst, r.src, bytes, cudaMemcpyDeviceToDevice, r.stream)) != cudaSuccess ||
            (err = cudaEventRecord(r.stop, r.stream)) != cudaSuccess ||
            (err = cudaEventSynchronize(r.stop)) != cudaSuccess)
            return cuda_failure(device, "the timed copy", err);
        float ms = 0;
        if ((err = cudaEventElapsedTime(&ms, r.start, r.stop)) != cudaSuccess)
            return cuda_failure(device, "reading the timer", err);
        if (i >= k_warmup && ms > 0) rates.push_back(2.0 * double(bytes) / (double(ms) * 1e-3));  // read + write
    }
    if (rates.empty()) return Status::device("copy bandwidth on CUDA device {}: the timer read zero", device);
    std::sort(rates.begin(), rates.end());
    bytes_per_s = rates[rates.size() / 2];
    return {};
}
