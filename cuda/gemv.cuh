// The matrix-product kernels' shared vocabulary (mul-mat.cu and gemv.cu): the plain-data kernel
// arguments, how a kernel finds the weight / x / dst slice of a batch index, and the GEMV
// launchers that mul-mat.cu's dispatch calls. gemv.cu holds the GEMVs over weights with contiguous
// rows (every decode mul_mat and mul_mat_id, and the fused gate/up/SwiGLU); mul-mat.cu the op
// entry points and the kernels for every other layout.
#pragma once

#include <cuda_fp8.h>

#include <algorithm>
#include <type_traits>

#include "cuda/common.cuh"

namespace mul_mat {

// ---- kernel parameters (validated by the launchers; kernels trust them) -------------------------

struct WeightArg {
    const uint8_t* data;    // elements; NVFP4: packed E2M1 codes, rows of K/2 bytes
    int64_t nb[4];          // byte strides of data
    const uint8_t* scales;  // NVFP4 only: E4M3 block scales [K/16, M, ne2, ne3]
    int64_t snb[4];         // byte strides of scales
    const float* global;    // NVFP4 only: F32 [ne2, ne3], index i2 + i3 * ne2
    int64_t ne2;            // weight slices along dim 2 (expert count for MUL_MAT_ID)
};

struct MmArgs {
    WeightArg w;
    WeightArg w2;      // paired gemv1_kernel only: the up weight (w is the gate), same type and shape
    const uint8_t* x;  // F32 [K, N, ...], any strides
    int64_t x_nb[4];
    uint8_t* dst;      // F32 [M, N, ...]
    int64_t d_nb[4];
    int64_t K, M, N;   // N: columns of x per slice (1 for MUL_MAT_ID)
    int64_t n_slices;  // MUL_MAT: dst ne2 * ne3; MUL_MAT_ID: n_used * T
    // MUL_MAT: slice s = b2 + b3 * ne2 uses weight slice (b2 / r2, b3 / r3)
    int64_t ne2, r2, r3;
    // MUL_MAT_ID: slice s = j + t * n_used uses expert ids[j, t] and x column (x_bcast ? 0 : j) of token t
    const uint8_t* ids;  // I32 [n_used, T]
    int64_t ids_nb0, ids_nb1, n_used;
    int x_bcast;
    int ksplit;   // gemv1_kernel: threads per row group (power of two, 1..256)
    int64_t spb;  // gemv1_kernel: consecutive slices per grid-y index
};

// One slice's base pointers.
struct Slice {
    const uint8_t* w;   // weight slice (row 0)
    const uint8_t* ws;  // its block scales (NVFP4)
    float g;            // its global scale (NVFP4), 1 otherwise
    const uint8_t* x;   // column 0 of x
    uint8_t* d;         // column 0 of dst
    // paired mode: the same slice of the up weight
    const uint8_t* w2;
    const uint8_t* ws2;
    float g2;
};

// Weight slice (i2, i3) of w: its row 0, block scales and global scale (1 unless NVFP4).
template <int WT>
__device__ __forceinline__ void weight_slice(const WeightArg& w, int64_t i2, int64_t i3, const uint8_t*& data,
                                             const uint8_t*& scales, float& g) {
    data = w.data + i2 * w.nb[2] + i3 * w.nb[3];
    if constexpr (WT == GLM_TYPE_NVFP4) {
        scales = w.scales + i2 * w.snb[2] + i3 * w.snb[3];
        g = w.global[i2 + i3 * w.ne2];
    } else {
        scales = nullptr;
        g = 1.0f;
    }
}

// MUL_MAT_ID pair s = j + t * n_used (slot j, token t): its expert, its x column, its dst column.
__device__ __forceinline__ int32_t pair_expert(const MmArgs& a, int64_t s) {
    const int64_t j = s % a.n_used, t = s / a.n_used;
    return *reinterpret_cast<const int32_t*>(a.ids + j * a.ids_nb0 + t * a.ids_nb1);
}
__device__ __forceinline__ const uint8_t* pair_x(const MmArgs& a, int64_t s) {
    const int64_t j = s % a.n_used, t = s / a.n_used;
    return a.x + (a.x_bcast ? 0 : j) * a.x_nb[1] + t * a.x_nb[2];
}
__device__ __forceinline__ uint8_t* pair_dst(const MmArgs& a, int64_t s) {
    const int64_t j = s % a.n_used, t = s / a.n_used;
    return a.dst + j * a.d_nb[1] + t * a.d_nb[2];
}

template <int WT, bool IDS, bool PAIR = false>
__device__ __forceinline__ Slice resolve_slice(const MmArgs& a, int64_t s) {
    int64_t i2, i3;
    Slice r;
    if constexpr (IDS) {
        const int32_t e = pair_expert(a, s);
        if (e < 0 || e >= a.w.ne2) __trap();  // the CPU backend asserts the same
        i2 = e;
        i3 = 0;
        r.x = pair_x(a, s);
        r.d = pair_dst(a, s);
    } else {
        const int64_t b2 = s % a.ne2, b3 = s / a.ne2;
        i2 = b2 / a.r2;
        i3 = b3 / a.r3;
        r.x = a.x + b2 * a.x_nb[2] + b3 * a.x_nb[3];
        r.d = a.dst + b2 * a.d_nb[2] + b3 * a.d_nb[3];
    }
    weight_slice<WT>(a.w, i2, i3, r.w, r.ws, r.g);
    if constexpr (PAIR) {
        weight_slice<WT>(a.w2, i2, i3, r.w2, r.ws2, r.g2);
    } else {
        r.w2 = r.ws2 = nullptr;
        r.g2 = 1.0f;
    }
    return r;
}

__device__ __forceinline__ void store_dst(const MmArgs& a, const Slice& s, int64_t m, int64_t n, float v) {
    *reinterpret_cast<float*>(s.d + m * a.d_nb[0] + n * a.d_nb[1]) = v;
}

__device__ __forceinline__ float half_bits_to_float(uint32_t bits) {
    const __half_raw r{uint16_t(bits)};
    return __half2float(__half(r));
}

// E4M3 -> f32 through the exact E4M3 -> f16 conversion (hardware on sm_89+); NaN stays NaN.
__device__ __forceinline__ float e4m3_fast(uint32_t byte) {
    return half_bits_to_float(__nv_cvt_fp8_to_halfraw(__nv_fp8_storage_t(byte), __NV_E4M3).x);
}

// The 8 bf16 of a 16-byte chunk as f32 (exact: a bf16 is the top half of an f32).
__device__ __forceinline__ void bf16x8_to_float(const uint4& v, float (&f)[8]) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        f[2 * i] = __uint_as_float(w[i] << 16);
        f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}

constexpr int kMaxCols = 8;  // x columns per slice that the GEMVs and generic_kernel take

inline unsigned grid_dim(int64_t n) { return unsigned(std::min<int64_t>(std::max<int64_t>(n, 1), 65535)); }
inline bool aligned(const void* p, int64_t a) { return reinterpret_cast<uintptr_t>(p) % uintptr_t(a) == 0; }

// f(std::integral_constant<int, WT>{}) for the weight type wt: where a run-time weight type becomes
// the kernels' template argument.
template <typename F>
void with_weight_type(glm_type wt, F&& f) {
    switch (wt) {
        case GLM_TYPE_F32: f(std::integral_constant<int, GLM_TYPE_F32>{}); break;
        case GLM_TYPE_F16: f(std::integral_constant<int, GLM_TYPE_F16>{}); break;
        case GLM_TYPE_BF16: f(std::integral_constant<int, GLM_TYPE_BF16>{}); break;
        case GLM_TYPE_F8_E4M3: f(std::integral_constant<int, GLM_TYPE_F8_E4M3>{}); break;
        case GLM_TYPE_NVFP4: f(std::integral_constant<int, GLM_TYPE_NVFP4>{}); break;
        default: GLM_ABORT("mul_mat: unsupported weight type {}", glm_type_name(wt));
    }
}

// ---- mul-mat.cu ---------------------------------------------------------------------------------
WeightArg weight_arg(const glm_tensor* w);  // validates NVFP4 companions
// The kernel arguments of a MUL_MAT or MUL_MAT_ID node (shapes validated), with the products
// written to out: the node itself, or the tensor a fused launch writes instead (same shape).
MmArgs node_args(const glm_tensor* node, glm_tensor* out);

// ---- gemv.cu ------------------------------------------------------------------------------------
// Can the GEMVs read w's rows as 16-byte chunks?
bool gemv_layout_ok(const glm_tensor* w);
// Largest column count (<= want) whose staged x fits the shared-memory budget; 0 if none.
int gemv_cols_that_fit(int64_t K, int64_t want);
// gemv1_kernel. MUL_MAT: nc staged columns per block (nc from gemv_cols_that_fit(K, N); nc == 1
// with N > 1: one launch per column). MUL_MAT_ID (ids): pairs that share an expert in one block
// when several tokens allow it, one pair per block otherwise.
void launch_gemv(CudaContext& ctx, const MmArgs& a, glm_type wt, bool ids, int nc);

}  // namespace mul_mat
