// Row reductions: RMS norm, layer norm and softmax along ne[0]. One block per row (rows of any
// stride, any ne[1..3]); per-thread partial sums in f32, combined by a warp-shuffle block reduction.
#include "cuda/norm.cuh"

namespace {

constexpr int kMaxThreads = 512;

// Threads for a row of n elements: a multiple of 32, at most kMaxThreads.
inline int threads_for_row(int64_t n) {
    return int(std::min<int64_t>(kMaxThreads, std::max<int64_t>(32, ceil_div(n, 32) * 32)));
}

inline int blocks_for_rows(int64_t rows) { return int(std::min<int64_t>(rows, int64_t(1) << 30)); }

struct SumOp {
    __device__ float operator()(float a, float b) const { return a + b; }
};
struct MaxOp {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }  // NaN-ignoring, as std::max
};

template <typename Op>
__device__ __forceinline__ float warp_reduce(float v, Op op) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

// Reduce v over the block (blockDim.x a multiple of 32); every thread gets the result. smem holds
// 32 floats; the leading barrier lets a block call this repeatedly with the same smem.
template <typename Op>
__device__ float block_reduce(float v, Op op, float identity, float* smem) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = warp_reduce(v, op);
    __syncthreads();
    if (lane == 0) smem[warp] = v;
    __syncthreads();
    return warp_reduce(lane < n_warps ? smem[lane] : identity, op);
}

__device__ __forceinline__ float* out_ptr(const TensorView& dst, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    return reinterpret_cast<float*>(const_cast<uint8_t*>(elem_ptr(dst, i0, i1, i2, i3)));
}

// Row r (flat over ne[1..3]) -> (i1, i2, i3).
__device__ __forceinline__ void row_index(const TensorView& t, int64_t r, int64_t& i1, int64_t& i2, int64_t& i3) {
    i1 = r % t.ne[1];
    r /= t.ne[1];
    i2 = r % t.ne[2];
    i3 = r / t.ne[2];
}

__global__ void rms_norm_kernel(TensorView dst, TensorView x, TensorView w, bool has_w, float eps) {
    __shared__ float smem[32];
    const int64_t n = x.ne[0], rows = x.ne[1] * x.ne[2] * x.ne[3];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {  // uniform per block: barriers are safe
        int64_t i1, i2, i3;
        row_index(x, r, i1, i2, i3);
        float ss = 0.0f;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            const float v = load_at(x, i, i1, i2, i3);
            ss += v * v;
        }
        ss = block_reduce(ss, SumOp{}, 0.0f, smem);
        const float inv = 1.0f / sqrtf(ss / float(n) + eps);
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            const float y = load_at(x, i, i1, i2, i3) * inv;
            *out_ptr(dst, i, i1, i2, i3) = has_w ? load_at(w, i) * y : y;
        }
    }
}

__global__ void layer_norm_kernel(TensorView dst, TensorView x, TensorView w, bool has_w, TensorView b, bool has_b,
                                  float eps) {
    __shared__ float smem[32];
    const int64_t n = x.ne[0], rows = x.ne[1] * x.ne[2] * x.ne[3];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        int64_t i1, i2, i3;
        row_index(x, r, i1, i2, i3);
        float s = 0.0f;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += load_at(x, i, i1, i2, i3);
        const float mean = block_reduce(s, SumOp{}, 0.0f, smem) / float(n);
        float var = 0.0f;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            const float d = load_at(x, i, i1, i2, i3) - mean;
            var += d * d;
        }
        var = block_reduce(var, SumOp{}, 0.0f, smem) / float(n);
        const float inv = 1.0f / sqrtf(var + eps);
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            float y = (load_at(x, i, i1, i2, i3) - mean) * inv;
            if (has_w) y = __fmul_rn(y, load_at(w, i));
            if (has_b) y = __fadd_rn(y, load_at(b, i));
            *out_ptr(dst, i, i1, i2, i3) = y;
        }
    }
}

// softmax(scale * x) along ne[0]: max, then exp(v - max) written to dst and summed, then dst / sum.
// NaN never wins the max (fmaxf) but poisons the sum, so a row with a NaN, a +inf, or only -inf
// entries comes out all NaN, as on the CPU.
__global__ void soft_max_kernel(TensorView dst, TensorView x, float scale) {
    __shared__ float smem[32];
    const int64_t n = x.ne[0], rows = x.ne[1] * x.ne[2] * x.ne[3];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        int64_t i1, i2, i3;
        row_index(x, r, i1, i2, i3);
        float mx = -INFINITY;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
            mx = fmaxf(mx, __fmul_rn(load_at(x, i, i1, i2, i3), scale));
        mx = block_reduce(mx, MaxOp{}, -INFINITY, smem);
        float sum = 0.0f;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            const float e = expf(__fmul_rn(load_at(x, i, i1, i2, i3), scale) - mx);  // no fma: as the CPU
            *out_ptr(dst, i, i1, i2, i3) = e;  // read back below by this same thread
            sum += e;
        }
        sum = block_reduce(sum, SumOp{}, 0.0f, smem);
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            float* o = out_ptr(dst, i, i1, i2, i3);
            *o = *o / sum;
        }
    }
}

// An optional row operand (weight, bias): a float type the loaders know, or absent.
TensorView optional_view(const glm_tensor* t) {
    if (!t) {
        TensorView v{};
        v.type = GLM_TYPE_F32;
        return v;
    }
    GLM_ASSERT(glm_type_is_float(t->type));
    return tensor_view(t);
}

}  // namespace

void cuda_op_rms_norm(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* x = dst->src[0];
    const glm_tensor* w = dst->src[1];
    const int64_t rows = glm_nrows(x);
    if (rows == 0 || x->ne[0] == 0) return;
    rms_norm_kernel<<<blocks_for_rows(rows), threads_for_row(x->ne[0]), 0, ctx.stream>>>(
        tensor_view(dst), tensor_view(x), optional_view(w), w != nullptr, dst->params[0].f);
}

void cuda_op_layer_norm(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* x = dst->src[0];
    const glm_tensor* w = dst->src[1];
    const glm_tensor* b = dst->src[2];
    const int64_t rows = glm_nrows(x);
    if (rows == 0 || x->ne[0] == 0) return;
    layer_norm_kernel<<<blocks_for_rows(rows), threads_for_row(x->ne[0]), 0, ctx.stream>>>(
        tensor_view(dst), tensor_view(x), optional_view(w), w != nullptr, optional_view(b), b != nullptr,
        dst->params[0].f);
}

void cuda_op_soft_max(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* x = dst->src[0];
    const int64_t rows = glm_nrows(x);
    if (rows == 0 || x->ne[0] == 0) return;
    soft_max_kernel<<<blocks_for_rows(rows), threads_for_row(x->ne[0]), 0, ctx.stream>>>(
        tensor_view(dst), tensor_view(x), dst->params[0].f);
}
