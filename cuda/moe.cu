// Mixture-of-experts routing (select, weights, combine) and argmax / max_arg. Decode runs one token, so these
// are latency kernels: a warp per token for the selection, a thread per token for the weights, a
// thread per output element for the combine, a block per column for argmax.
#include <climits>

#include "cuda/moe.cuh"

namespace {

__device__ __forceinline__ int32_t load_i32_at(const TensorView& t, int64_t i0, int64_t i1) {
    return *reinterpret_cast<const int32_t*>(elem_ptr(t, i0, i1, 0, 0));
}

// The reference's ranking: larger first, NaN below every number, ties to the lower index.
__device__ __forceinline__ bool ranks_before(float va, int ia, float vb, int ib) {
    const bool na = isnan(va), nb = isnan(vb);
    if (na != nb) return nb;
    if (!na && va != vb) return va > vb;
    return ia < ib;
}

// ---- moe_select: one warp per token ------------------------------------------------------------
constexpr int kSelectWarps = 4;

// Shared memory per warp: choice[E], group_score[n_group], keep[n_group] (4-byte words).
__host__ __device__ inline int64_t select_words_per_warp(int64_t E, int n_group) { return E + 2 * int64_t(n_group); }

__global__ void moe_select_kernel(TensorView dst, TensorView probs, TensorView bias, bool has_bias, int k, int n_group,
                                  int topk_group) {
    extern __shared__ float select_smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t t = int64_t(blockIdx.x) * kSelectWarps + warp;
    const int E = int(probs.ne[0]);
    if (t >= probs.ne[1]) return;  // whole warps only; the kernel uses no block barrier
    float* choice = select_smem + select_words_per_warp(E, n_group) * warp;
    float* group_score = choice + E;
    int* keep = reinterpret_cast<int*>(group_score + n_group);

    for (int e = lane; e < E; e += 32) choice[e] = load_at(probs, e, t) + (has_bias ? load_at(bias, e) : 0.0f);
    __syncwarp();

    if (n_group > 1) {
        const int per = E / n_group;
        // Group score: the sum of its two best biased scores (one when the group has one expert).
        for (int g = lane; g < n_group; g += 32) {
            int b0 = -1, b1 = -1;
            float v0 = 0.0f, v1 = 0.0f;
            for (int e = g * per; e < (g + 1) * per; ++e) {
                const float v = choice[e];
                if (b0 < 0 || ranks_before(v, e, v0, b0)) {
                    b1 = b0, v1 = v0;
                    b0 = e, v0 = v;
                } else if (b1 < 0 || ranks_before(v, e, v1, b1)) {
                    b1 = e, v1 = v;
                }
            }
            float sum = 0.0f;
            sum += v0;
            if (per > 1) sum += v1;
            group_score[g] = sum;
        }
        __syncwarp();
        // A group stays eligible iff fewer than topk_group groups rank before it.
        for (int g = lane; g < n_group; g += 32) {
            int rank = 0;
            for (int o = 0; o < n_group; ++o) rank += ranks_before(group_score[o], o, group_score[g], g) ? 1 : 0;
            keep[g] = rank < topk_group ? 1 : 0;
        }
        __syncwarp();
        for (int e = lane; e < E; e += 32)
            if (!keep[e / per]) choice[e] = -INFINITY;
        __syncwarp();
    }

    // k passes: each takes the best expert ranking after the previous pick (a strict total order,
    // so no "taken" marks are needed).
    float last_v = 0.0f;
    int last_i = -1;
    for (int p = 0; p < k; ++p) {
        float bv = 0.0f;
        int bi = -1;
        for (int e = lane; e < E; e += 32) {
            const float v = choice[e];
            if (last_i >= 0 && !ranks_before(last_v, last_i, v, e)) continue;
            if (bi < 0 || ranks_before(v, e, bv, bi)) bv = v, bi = e;
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, bv, off);
            const int oi = __shfl_xor_sync(0xffffffffu, bi, off);
            if (oi >= 0 && (bi < 0 || ranks_before(ov, oi, bv, bi))) bv = ov, bi = oi;
        }
        if (lane == 0) *reinterpret_cast<int32_t*>(const_cast<uint8_t*>(elem_ptr(dst, p, t, 0, 0))) = bi;
        last_v = bv, last_i = bi;
    }
}

// ---- moe_weights: one thread per token -------------------------------------------------------------
__global__ void moe_weights_kernel(TensorView dst, TensorView probs, TensorView ids, bool normalize, float scaling) {
    const int64_t n = ids.ne[0], T = ids.ne[1];
    for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < T; t += int64_t(gridDim.x) * blockDim.x) {
        float sum = 0.0f;
        for (int64_t j = 0; j < n; ++j) {
            const int32_t e = load_i32_at(ids, j, t);
            if (e < 0 || e >= probs.ne[0]) __trap();  // invariant: ids come from moe_select
            sum += load_at(probs, e, t);
        }
        for (int64_t j = 0; j < n; ++j) {
            const float w = load_at(probs, load_i32_at(ids, j, t), t);
            const float v = normalize ? w / (sum + 1e-20f) : w;
            *reinterpret_cast<float*>(const_cast<uint8_t*>(elem_ptr(dst, j, t, 0, 0))) = v * scaling;
        }
    }
}

// ---- moe_combine: a thread per (d, t); slots summed in ascending expert id order ------------------
constexpr int kCombineThreads = 256;
constexpr int kMaxUsed = 64;

__global__ void moe_combine_kernel(TensorView dst, TensorView y, TensorView w, TensorView ids) {
    __shared__ int order[kMaxUsed];
    __shared__ float weight[kMaxUsed];
    const int n = int(ids.ne[0]);
    const int64_t D = y.ne[0], T = ids.ne[1];
    const int64_t d = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    for (int64_t t = blockIdx.y; t < T; t += gridDim.y) {  // uniform per block: barriers are safe
        if (int(threadIdx.x) < n) {
            // Stable rank of slot j by expert id (the CPU's stable_sort).
            const int j = threadIdx.x;
            const int32_t id = load_i32_at(ids, j, t);
            int rank = 0;
            for (int o = 0; o < n; ++o) {
                const int32_t other = load_i32_at(ids, o, t);
                rank += (other < id || (other == id && o < j)) ? 1 : 0;
            }
            order[rank] = j;
            weight[rank] = load_at(w, j, t);
        }
        __syncthreads();
        if (d < D) {
            float acc = 0.0f;
            for (int r = 0; r < n; ++r)  // no fma contraction: the CPU rounds the product, then the sum
                acc = __fadd_rn(acc, __fmul_rn(load_at(y, d, order[r], t), weight[r]));
            *reinterpret_cast<float*>(const_cast<uint8_t*>(elem_ptr(dst, d, t, 0, 0))) = acc;
        }
        __syncthreads();  // order/weight are rewritten for the next token
    }
}

// ---- argmax: one block per column ----------------------------------------------------------------
constexpr int kArgmaxMaxThreads = 1024;

// Keep (v, i) or take (ov, oi): the larger value, ties to the lower index. Entries never hold NaN;
// the empty entry is (-inf, INT_MAX), which every real entry beats.
__device__ __forceinline__ void argmax_merge(float& v, int& i, float ov, int oi) {
    if (ov > v || (ov == v && oi < i)) v = ov, i = oi;
}

__device__ __forceinline__ void argmax_warp(float& v, int& i) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, off);
        const int oi = __shfl_xor_sync(0xffffffffu, i, off);
        argmax_merge(v, i, ov, oi);
    }
}

// The CPU scan (best = 0; take i when a[i] > a[best]) never moves to a NaN and never leaves one at
// index 0: the result is the first maximum of the non-NaN entries, or 0 when a[0] is NaN.
// with_value: MAX_ARG's [2, ncols] F32 output (value, index_offset + index) instead of ARGMAX's I32.
template <bool with_value>
__global__ void argmax_kernel(TensorView dst, TensorView a, int index_offset) {
    __shared__ float sv[32];
    __shared__ int si[32];
    const int n = int(a.ne[0]);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    for (int64_t c = blockIdx.x; c < a.ne[1]; c += gridDim.x) {  // uniform per block
        float v = -INFINITY;
        int idx = INT_MAX;
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            const float x = load_at(a, i, c);
            if (x > v || (x == v && i < idx)) v = x, idx = i;  // NaN compares false: skipped
        }
        argmax_warp(v, idx);
        __syncthreads();  // the previous column's readers are done with sv/si
        if (lane == 0) sv[warp] = v, si[warp] = idx;
        __syncthreads();
        if (warp == 0) {
            v = lane < n_warps ? sv[lane] : -INFINITY;
            idx = lane < n_warps ? si[lane] : INT_MAX;
            argmax_warp(v, idx);
            if (lane == 0) {
                if (idx == INT_MAX || isnan(load_at(a, 0, c))) idx = 0;
                if constexpr (with_value) {
                    float* out = reinterpret_cast<float*>(const_cast<uint8_t*>(elem_ptr(dst, 0, c, 0, 0)));
                    out[0] = load_at(a, idx, c);
                    *reinterpret_cast<float*>(const_cast<uint8_t*>(elem_ptr(dst, 1, c, 0, 0))) = float(idx + index_offset);
                } else {
                    *reinterpret_cast<int32_t*>(const_cast<uint8_t*>(elem_ptr(dst, c, 0, 0, 0))) = idx;
                }
            }
        }
    }
}

inline int grid_cap(int64_t n, int64_t cap) { return int(std::max<int64_t>(1, std::min<int64_t>(n, cap))); }

}  // namespace

void cuda_op_moe_select(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* probs = dst->src[0];
    const glm_tensor* bias = dst->src[1];
    const int k = dst->params[0].i, n_group = dst->params[1].i, topk_group = dst->params[2].i;
    const int64_t E = probs->ne[0], T = probs->ne[1];
    GLM_ASSERT(n_group >= 1 && E % n_group == 0 && k >= 1 && k <= E && topk_group >= 1 && topk_group <= n_group);
    GLM_ASSERT(!bias || glm_type_is_float(bias->type));
    const size_t smem = size_t(select_words_per_warp(E, n_group)) * 4 * kSelectWarps;
    GLM_ASSERT(smem <= 48 * 1024);  // E up to ~3000 experts
    if (T == 0) return;
    TensorView bv{};
    bv.type = GLM_TYPE_F32;
    if (bias) bv = tensor_view(bias);
    moe_select_kernel<<<int(ceil_div(T, kSelectWarps)), 32 * kSelectWarps, smem, ctx.stream>>>(
        tensor_view(dst), tensor_view(probs), bv, bias != nullptr, k, n_group, topk_group);
}

void cuda_op_moe_weights(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* ids = dst->src[1];
    GLM_ASSERT(ids->type == GLM_TYPE_I32);
    const int64_t T = ids->ne[1];
    if (T == 0) return;
    moe_weights_kernel<<<grid_cap(ceil_div(T, 128), 65535), 128, 0, ctx.stream>>>(
        tensor_view(dst), tensor_view(dst->src[0]), tensor_view(ids), dst->params[0].i != 0, dst->params[1].f);
}

void cuda_op_moe_combine(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* y = dst->src[0];
    const glm_tensor* ids = dst->src[2];
    GLM_ASSERT(ids->type == GLM_TYPE_I32 && ids->ne[0] <= kMaxUsed);
    const int64_t D = y->ne[0], T = ids->ne[1];
    if (D == 0 || T == 0) return;
    const dim3 grid(unsigned(ceil_div(D, kCombineThreads)), unsigned(grid_cap(T, 65535)));
    moe_combine_kernel<<<grid, kCombineThreads, 0, ctx.stream>>>(tensor_view(dst), tensor_view(y),
                                                                tensor_view(dst->src[1]), tensor_view(ids));
}

void cuda_op_argmax(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* a = dst->src[0];
    GLM_ASSERT(a->ne[0] >= 1 && a->ne[0] < INT_MAX && a->ne[2] == 1 && a->ne[3] == 1);
    if (a->ne[1] == 0) return;
    const int threads = int(std::min<int64_t>(kArgmaxMaxThreads, ceil_div(a->ne[0], 32) * 32));
    const int grid = grid_cap(a->ne[1], int64_t(1) << 30);
    if (dst->op == GLM_OP_MAX_ARG)
        argmax_kernel<true><<<grid, threads, 0, ctx.stream>>>(tensor_view(dst), tensor_view(a), dst->params[0].i);
    else
        argmax_kernel<false><<<grid, threads, 0, ctx.stream>>>(tensor_view(dst), tensor_view(a), 0);
}
