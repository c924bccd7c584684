// Shared by every CUDA op file: error checks that abort with file:line, the per-device context,
// and a strided tensor view kernels can read any float type from.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <utility>

#include "ggml-like/common.h"
#include "ggml-like/tensor.h"

#define CUDA_CHECK(call)                                                                              \
    do {                                                                                              \
        cudaError_t cuda_check_err_ = (call);                                                         \
        if (cuda_check_err_ != cudaSuccess)                                                           \
            glm_abort_impl(__FILE__, __LINE__,                                                        \
                           fmt::format("CUDA error {}: {} ({})", int(cuda_check_err_),                \
                                       cudaGetErrorString(cuda_check_err_), #call));                  \
    } while (0)

// After every launch: launch-configuration errors surface at once, at the launch site.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

struct CudaBlas;  // gemm-blas.cuh

struct CudaContext {
    int device = 0;
    cudaStream_t stream = nullptr;
    int n_sm = 0;
    CudaBlas* blas = nullptr;  // the stream's cuBLAS handle, or null (hand-written tiles only)
};

constexpr int kMaxDevices = 64;

// Programmatic dependent launch (sm_90 and later). Every kernel is launched with programmatic stream
// serialization allowed (cuda_launch), so the GPU may schedule its blocks while the kernel before it
// in the stream still runs: the launch latency of one short kernel hides behind the tail of the last
// one, which matters when a decode step is ~2,600 mostly short launches. For that to be safe every
// kernel starts with grid_dependency_wait(), before it reads or writes global memory: it returns once
// the previous kernel has completed and its writes are visible, so ordering is what it is without the
// attribute. It then lets the next kernel be scheduled (the next one waits the same way). On older
// devices, and without a programmatic predecessor, both instructions do nothing.
__device__ __forceinline__ void grid_dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// Inclusive prefix sum over a block of 1024 threads (32 warps), in thread order; *total (optional)
// receives the block's sum. warp_tot: 32 values of shared memory, free again on return. Called by
// every thread of the block.
template <typename T>
__device__ __forceinline__ T block_inclusive_scan(T x, T* warp_tot, T* total = nullptr) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const T y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o) x += y;
    }
    if (lane == 31) warp_tot[warp] = x;
    __syncthreads();
    if (warp == 0) {
        T w = warp_tot[lane];
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const T y = __shfl_up_sync(0xffffffffu, w, o);
            if (lane >= o) w += y;
        }
        warp_tot[lane] = w;
    }
    __syncthreads();
    const T r = x + (warp > 0 ? warp_tot[warp - 1] : T(0));
    if (total) *total = warp_tot[31];
    __syncthreads();  // warp_tot may be reused at once
    return r;
}

// Process-wide switch (--pdl as the engine resolves it; off: plain stream order), read at every launch.
extern std::atomic<bool> g_programmatic_launch;

template <typename... Params, typename... Args>
inline void cuda_launch(cudaStream_t stream, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                        Args&&... args) {
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = g_programmatic_launch.load(std::memory_order_relaxed) ? 1 : 0;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

// The shared memory a block may opt in to on a device, asked once per device (227 KiB on sm_90 and
// sm_100, ~99 KiB on sm_120): launchers pick tile shapes and stage counts that fit.
inline size_t cuda_smem_optin(int device) {
    static std::atomic<int> bytes[kMaxDevices];
    GLM_ASSERT(device >= 0 && device < kMaxDevices);
    int b = bytes[device].load(std::memory_order_relaxed);
    if (b == 0) {
        CUDA_CHECK(cudaDeviceGetAttribute(&b, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
        bytes[device].store(b, std::memory_order_relaxed);
    }
    return size_t(b);
}

// Kernels that need more than the default 48 KiB of dynamic shared memory opt in, per kernel and per
// device. Each launcher keeps one record per kernel (a static): the largest size set on each device.
struct SmemOptIn {
    std::atomic<int> bytes[kMaxDevices];
};
template <typename Kernel>
inline void cuda_allow_smem(Kernel kernel, size_t bytes, int device, SmemOptIn& record) {
    if (bytes <= 48 * 1024) return;
    GLM_ASSERT(device >= 0 && device < kMaxDevices);
    if (int(bytes) <= record.bytes[device].load(std::memory_order_relaxed)) return;
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
    record.bytes[device].store(int(bytes), std::memory_order_relaxed);
}

// Whether the bytes of a and b intersect (device addresses, views by their spanned bytes). Fused
// launches check it: the arena reuses an input's bytes for a later node's output once the input's
// last reader is placed, so a fused kernel's output may land on bytes it still reads.
inline bool bytes_overlap(const glm_tensor* a, const glm_tensor* b) {
    const uintptr_t a0 = reinterpret_cast<uintptr_t>(a->data), b0 = reinterpret_cast<uintptr_t>(b->data);
    return a0 < b0 + glm_nbytes(b) && b0 < a0 + glm_nbytes(a);
}

class glm_backend;
// The device context of a backend made by glm_backend_cuda_create (aborts on any other backend):
// the communicator launches its kernels and NCCL calls on the backend's stream.
CudaContext& cuda_backend_context(glm_backend* backend);

// A tensor as kernels see it: element type, shape and byte strides. Plain data, passed by value.
struct TensorView {
    const uint8_t* data;
    int32_t type;  // glm_type
    int64_t ne[4];
    int64_t nb[4];
};

inline TensorView tensor_view(const glm_tensor* t) {
    TensorView v;
    v.data = static_cast<const uint8_t*>(t->data);
    v.type = t->type;
    for (int i = 0; i < 4; ++i) {
        v.ne[i] = t->ne[i];
        v.nb[i] = int64_t(t->nb[i]);
    }
    return v;
}

__device__ __forceinline__ float e4m3_to_float(uint8_t v) {
    const int exp = (v >> 3) & 0xf, man = v & 0x7;
    if (exp == 15 && man == 7) return __int_as_float(0x7fc00000);
    const float mag = exp == 0 ? ldexpf(float(man), -9) : ldexpf(1.0f + float(man) * 0.125f, exp - 7);
    return (v & 0x80) ? -mag : mag;
}

__device__ __forceinline__ uint8_t float_to_e4m3(float f) {
    if (isnan(f)) return 0x7f;
    const uint8_t sign = signbit(f) ? 0x80 : 0;
    float a = fabsf(f);
    if (a >= 448.0f) return sign | 0x7e;
    int e;
    frexpf(a, &e);
    e -= 1;
    if (e < -6) e = -6;
    const float step = ldexpf(1.0f, e - 3);
    const float r = rintf(a / step) * step;  // round to nearest even
    if (r >= 448.0f) return sign | 0x7e;
    if (r == 0.0f) return sign;
    int re;
    frexpf(r, &re);
    re -= 1;
    if (re < -6) return sign | uint8_t(lrintf(r * 512.0f));
    const int man = int(lrintf(ldexpf(r, 3 - re))) - 8;
    return sign | uint8_t((re + 7) << 3) | uint8_t(man);
}

__device__ __forceinline__ float load_float(int32_t type, const uint8_t* p) {
    switch (type) {
        case GLM_TYPE_F32: return *reinterpret_cast<const float*>(p);
        case GLM_TYPE_F16: return __half2float(*reinterpret_cast<const __half*>(p));
        case GLM_TYPE_BF16: return __bfloat162float(*reinterpret_cast<const __nv_bfloat16*>(p));
        case GLM_TYPE_F8_E4M3: return e4m3_to_float(*p);
        case GLM_TYPE_I32: return float(*reinterpret_cast<const int32_t*>(p));
        default: return __int_as_float(0x7fc00000);
    }
}

__device__ __forceinline__ void store_float(int32_t type, uint8_t* p, float v) {
    switch (type) {
        case GLM_TYPE_F32: *reinterpret_cast<float*>(p) = v; break;
        case GLM_TYPE_F16: *reinterpret_cast<__half*>(p) = __float2half_rn(v); break;
        case GLM_TYPE_BF16: *reinterpret_cast<__nv_bfloat16*>(p) = __float2bfloat16_rn(v); break;
        case GLM_TYPE_F8_E4M3: *p = float_to_e4m3(v); break;
        case GLM_TYPE_I32: *reinterpret_cast<int32_t*>(p) = __float2int_rn(v); break;  // glm_cast
        default: break;
    }
}

__device__ __forceinline__ const uint8_t* elem_ptr(const TensorView& t, int64_t i0, int64_t i1, int64_t i2,
                                                   int64_t i3) {
    return t.data + i0 * t.nb[0] + i1 * t.nb[1] + i2 * t.nb[2] + i3 * t.nb[3];
}

__device__ __forceinline__ float load_at(const TensorView& t, int64_t i0, int64_t i1 = 0, int64_t i2 = 0,
                                         int64_t i3 = 0) {
    return load_float(t.type, elem_ptr(t, i0, i1, i2, i3));
}

__device__ __forceinline__ int32_t load_i32_at(const TensorView& t, int64_t i0, int64_t i1 = 0) {
    return *reinterpret_cast<const int32_t*>(elem_ptr(t, i0, i1, 0, 0));
}

// An F32 element of t (dst tensors: views are const in TensorView).
__device__ __forceinline__ void store_f32_at(const TensorView& t, float v, int64_t i0, int64_t i1 = 0, int64_t i2 = 0,
                                             int64_t i3 = 0) {
    *reinterpret_cast<float*>(const_cast<uint8_t*>(elem_ptr(t, i0, i1, i2, i3))) = v;
}

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

// Flat index (ne0 fastest) -> 4-d index of t's shape.
__device__ __forceinline__ void unflatten(const TensorView& t, int64_t i, int64_t idx[4]) {
    idx[0] = i % t.ne[0];
    i /= t.ne[0];
    idx[1] = i % t.ne[1];
    i /= t.ne[1];
    idx[2] = i % t.ne[2];
    idx[3] = i / t.ne[2];
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

__device__ __forceinline__ float e2m1_to_float(uint32_t code) {
    // magnitudes of codes 0..7; bit 3 is the sign
    const float mag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    const float v = mag[code & 7];
    return (code & 8) ? -v : v;
}

// An NVFP4 weight as kernels see it: packed codes (rows of ne0/2 bytes), E4M3 block scales (rows of
// ne0/16 bytes) and one F32 global scale per ne2 slice.
struct Nvfp4View {
    const uint8_t* codes;
    const uint8_t* scales;
    const float* global;
    int64_t ne[3];
    int64_t codes_nb[3];   // byte strides of the codes (nb0 = 1)
    int64_t scales_nb[3];  // byte strides of the block scales
};

inline Nvfp4View nvfp4_view(const glm_tensor* t) {
    GLM_ASSERT(t->type == GLM_TYPE_NVFP4 && t->block_scale && t->global_scale);
    Nvfp4View v;
    v.codes = static_cast<const uint8_t*>(t->data);
    v.scales = static_cast<const uint8_t*>(t->block_scale->data);
    v.global = static_cast<const float*>(t->global_scale->data);
    for (int i = 0; i < 3; ++i) {
        v.ne[i] = t->ne[i];
        v.codes_nb[i] = int64_t(t->nb[i]);
        v.scales_nb[i] = int64_t(t->block_scale->nb[i]);
    }
    return v;
}

// Element (i0, i1, i2) of an NVFP4 weight: e2m1(code) * e4m3(block scale) * global scale.
__device__ __forceinline__ float nvfp4_at(const Nvfp4View& w, int64_t i0, int64_t i1, int64_t i2) {
    const uint8_t byte = w.codes[i2 * w.codes_nb[2] + i1 * w.codes_nb[1] + i0 / 2];
    const uint8_t s = w.scales[i2 * w.scales_nb[2] + i1 * w.scales_nb[1] + i0 / 16];
    const uint32_t code = (i0 & 1) ? (byte >> 4) : (byte & 0xf);
    return e2m1_to_float(code) * e4m3_to_float(s) * w.global[i2];
}
