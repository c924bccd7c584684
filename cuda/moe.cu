// Mixture-of-experts routing (select, weights, combine) and argmax / max_arg. Decode runs one token, so these
// are latency kernels: a warp per token for the selection (candidates in registers; a shared-memory
// fallback for large E) and for the weights, a thread per output element for the combine, a block
// per column for argmax.
#include <climits>

#include "cuda/moe.cuh"

namespace {

// The reference's ranking: larger first, NaN below every number, ties to the lower index.
__device__ __forceinline__ bool ranks_before(float va, int ia, float vb, int ib) {
    const bool na = isnan(va), nb = isnan(vb);
    if (na != nb) return nb;
    if (!na && va != vb) return va > vb;
    return ia < ib;
}

// ---- moe_select fallback (any E, k, n_group, bias type): one warp per token, scores in shared memory
constexpr int kSelectWarps = 4;

// Shared memory per warp: choice[E], group_score[n_group], keep[n_group] (4-byte words).
__host__ __device__ inline int64_t select_words_per_warp(int64_t E, int n_group) { return E + 2 * int64_t(n_group); }

__global__ void moe_select_kernel(TensorView dst, TensorView probs, TensorView bias, bool has_bias, int k, int n_group,
                                  int topk_group) {
    grid_dependency_wait();
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

// ---- routing fast path: one warp per token, the candidates in registers --------------------------
// Lane l holds experts l, l + 32, ... (PER_LANE slots). Each of the k picks is one warp arg-max over
// rank keys, so the whole choice costs k * 5 shuffle rounds and no shared memory (except for the
// group stage). moe_select takes it for E <= 256, k <= 32, n_group <= 32, bias F32 or absent; the
// fused router epilogue (sigmoid, select, weights) is the same kernel with `fused` set.
constexpr int kRouteWarps = 4;  // tokens per block
constexpr int kRouteMaxPerLane = 8;
constexpr int kRouteMaxExperts = 32 * kRouteMaxPerLane;

// Plain data for route_kernel; the launcher has checked every layout rule stated here.
struct RouteParams {
    TensorView scores;     // F32 [E, T], any strides: the probabilities, or (fused) the router logits
    const float* bias;     // [E] F32 contiguous, or null
    float* probs;          // fused: sigmoid(logits), F32 [E, T] contiguous; else null
    int32_t* ids;          // I32 [k, T] contiguous
    float* weights;        // fused: F32 [k, T] contiguous; else null
    int E, k, n_group, topk_group;
    bool normalize;        // fused: moe_weights' params
    float scaling;
};

// ranks_before(a, b) as one unsigned comparison: key(a) > key(b). The high word orders the values
// (larger first, -0 tied with +0, NaN below -inf), the low word breaks ties to the lower index. Every
// entry's key is > 0, the key of an empty slot.
__device__ __forceinline__ unsigned long long rank_key(float v, int i) {
    uint32_t hi = 0;  // NaN
    if (!isnan(v)) {
        const uint32_t bits = __float_as_uint(v == 0.0f ? 0.0f : v);
        hi = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
    }
    return (static_cast<unsigned long long>(hi) << 32) | ~uint32_t(i);
}
__device__ __forceinline__ int rank_key_index(unsigned long long key) { return int(~uint32_t(key)); }

__device__ __forceinline__ float routing_weight(float w, float sum, bool normalize, float scaling) {
    return (normalize ? w / (sum + 1e-20f) : w) * scaling;  // the CPU's roundings
}

template <int PER_LANE, bool fused>
__global__ void __launch_bounds__(32 * kRouteWarps) route_kernel(RouteParams p) {
    grid_dependency_wait();
    __shared__ float group_smem[kRouteWarps][kRouteMaxExperts];  // the biased scores, for the group stage
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t t = int64_t(blockIdx.x) * kRouteWarps + warp;
    if (t >= p.scores.ne[1]) return;  // whole warps; no block barrier follows
    float prob[PER_LANE], choice[PER_LANE];
#pragma unroll
    for (int j = 0; j < PER_LANE; ++j) {
        const int e = lane + 32 * j;
        prob[j] = choice[j] = 0.0f;
        if (e >= p.E) continue;
        float v = *reinterpret_cast<const float*>(elem_ptr(p.scores, e, t, 0, 0));
        if constexpr (fused) {
            v = 1.0f / (1.0f + expf(-v));  // cuda_op_unary's sigmoid
            p.probs[t * p.E + e] = v;
        }
        prob[j] = v;
        choice[j] = v + (p.bias ? p.bias[e] : 0.0f);  // the bias steers the choice only
    }

    if (p.n_group > 1) {  // warp-uniform
        // Lane g scores group g: the sum of its two best biased scores (one when the group has one).
        float* sc = group_smem[warp];
#pragma unroll
        for (int j = 0; j < PER_LANE; ++j)
            if (lane + 32 * j < p.E) sc[lane + 32 * j] = choice[j];
        __syncwarp();
        const int per = p.E / p.n_group;
        unsigned long long group_key = 0;
        if (lane < p.n_group) {
            unsigned long long k0 = 0, k1 = 0;
            float v0 = 0.0f, v1 = 0.0f;
            for (int e = lane * per; e < (lane + 1) * per; ++e) {
                const unsigned long long key = rank_key(sc[e], e);
                if (key > k0) k1 = k0, v1 = v0, k0 = key, v0 = sc[e];
                else if (key > k1) k1 = key, v1 = sc[e];
            }
            float sum = 0.0f;
            sum += v0;
            if (per > 1) sum += v1;
            group_key = rank_key(sum, lane);
        }
        // A group stays eligible iff fewer than topk_group groups rank before it; the others' experts
        // are masked to -inf (transformers' masked_fill), which still ranks above NaN.
        int rank = 0;
        for (int o = 0; o < p.n_group; ++o) rank += __shfl_sync(0xffffffffu, group_key, o) > group_key ? 1 : 0;
        const uint32_t kept = __ballot_sync(0xffffffffu, lane < p.n_group && rank < p.topk_group);
#pragma unroll
        for (int j = 0; j < PER_LANE; ++j) {
            const int e = lane + 32 * j;
            if (e < p.E && !((kept >> (e / per)) & 1u)) choice[j] = -INFINITY;
        }
    }

    unsigned long long key[PER_LANE];
#pragma unroll
    for (int j = 0; j < PER_LANE; ++j) key[j] = lane + 32 * j < p.E ? rank_key(choice[j], lane + 32 * j) : 0ull;

    // k picks; pick r lands in lane r (k <= 32), with its unbiased probability when fused. The sum
    // of the picked probabilities runs in pick order, as the CPU's moe_weights sums them.
    int my_id = 0;
    float my_w = 0.0f, sum = 0.0f;
    for (int r = 0; r < p.k; ++r) {
        unsigned long long best = 0;
#pragma unroll
        for (int j = 0; j < PER_LANE; ++j) best = key[j] > best ? key[j] : best;
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            const unsigned long long other = __shfl_xor_sync(0xffffffffu, best, off);
            best = other > best ? other : best;
        }
        const int e = rank_key_index(best);  // a real expert: k <= E and every real key beats 0
        float w = 0.0f;
#pragma unroll
        for (int j = 0; j < PER_LANE; ++j)
            if (lane + 32 * j == e) key[j] = 0ull, w = prob[j];  // the owner retires the slot
        if (lane == r) my_id = e;
        if constexpr (fused) {
            w = __shfl_sync(0xffffffffu, w, e & 31);
            sum += w;
            if (lane == r) my_w = w;
        }
    }
    if (lane < p.k) {
        p.ids[t * p.k + lane] = my_id;
        if constexpr (fused) p.weights[t * p.k + lane] = routing_weight(my_w, sum, p.normalize, p.scaling);
    }
}

// Parameters of route_kernel for moe_select's node `select` reading scores (the probabilities, or the
// logits when fused); false when the fast path does not apply.
bool route_setup(const glm_tensor* scores, const glm_tensor* select, RouteParams& p) {
    const glm_tensor* bias = select->src[1];
    const int64_t E = scores->ne[0];
    const int k = select->params[0].i, n_group = select->params[1].i;
    GLM_ASSERT(n_group >= 1 && E % n_group == 0 && k >= 1 && k <= E && select->params[2].i >= 1 &&
               select->params[2].i <= n_group);
    if (scores->type != GLM_TYPE_F32 || E > kRouteMaxExperts || k > 32 || n_group > 32) return false;
    if (bias && (bias->type != GLM_TYPE_F32 || bias->nb[0] != 4)) return false;
    if (select->type != GLM_TYPE_I32 || !glm_is_contiguous(select)) return false;
    p = RouteParams{};
    p.scores = tensor_view(scores);
    p.bias = bias ? static_cast<const float*>(bias->data) : nullptr;
    p.ids = static_cast<int32_t*>(select->data);
    p.E = int(E);
    p.k = k;
    p.n_group = n_group;
    p.topk_group = select->params[2].i;
    return true;
}

template <bool fused>
void launch_route(const RouteParams& p, cudaStream_t stream) {
    const int64_t T = p.scores.ne[1];
    const int per_lane = int(ceil_div(p.E, 32));
    const dim3 grid(unsigned(ceil_div(T, kRouteWarps))), block(unsigned(32 * std::min<int64_t>(kRouteWarps, T)));
    if (per_lane <= 1) cuda_launch(stream, route_kernel<1, fused>, grid, block, 0, p);
    else if (per_lane <= 2) cuda_launch(stream, route_kernel<2, fused>, grid, block, 0, p);
    else if (per_lane <= 4) cuda_launch(stream, route_kernel<4, fused>, grid, block, 0, p);
    else cuda_launch(stream, route_kernel<8, fused>, grid, block, 0, p);
    CUDA_CHECK_LAUNCH();
}

// ---- moe_weights: one warp per token ---------------------------------------------------------------
// Lane j gathers w[j] (in chunks of 32 slots); every lane sums the chunk's weights in slot order by
// shuffles, the CPU's order.
__global__ void __launch_bounds__(32 * kRouteWarps) moe_weights_kernel(TensorView dst, TensorView probs, TensorView ids,
                                                                       bool normalize, float scaling) {
    grid_dependency_wait();
    const int lane = threadIdx.x & 31;
    const int64_t t = int64_t(blockIdx.x) * kRouteWarps + (threadIdx.x >> 5);
    if (t >= ids.ne[1]) return;  // whole warps
    const int n = int(ids.ne[0]);
    auto gather = [&](int j) {  // probs[ids[j, t], t]; probs is F32 (glm_moe_weights)
        const int32_t e = load_i32_at(ids, j, t);
        if (e < 0 || e >= probs.ne[0]) __trap();  // invariant: ids come from moe_select
        return *reinterpret_cast<const float*>(elem_ptr(probs, e, t, 0, 0));
    };
    float sum = 0.0f, first = 0.0f;
    for (int c = 0; c < n; c += 32) {  // warp-uniform
        const float w = c + lane < n ? gather(c + lane) : 0.0f;
        if (c == 0) first = w;
        for (int j = 0; j < 32 && c + j < n; ++j) sum += __shfl_sync(0xffffffffu, w, j);
    }
    for (int c = lane; c < n; c += 32)
        *reinterpret_cast<float*>(const_cast<uint8_t*>(elem_ptr(dst, c, t, 0, 0))) =
            routing_weight(c == lane ? first : gather(c), sum, normalize, scaling);
}

// ---- moe_combine: a thread per (d, t); slots summed in ascending expert id order ------------------
// With has_addend (the fused combine + add): dst = addend + the sum, the f32 add of the ADD node.
constexpr int kCombineThreads = 256;
constexpr int kMaxUsed = 64;

__global__ void moe_combine_kernel(TensorView dst, TensorView y, TensorView w, TensorView ids, TensorView addend,
                                   bool has_addend) {
    grid_dependency_wait();
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
            if (has_addend) acc = __fadd_rn(load_at(addend, d, t), acc);
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
    grid_dependency_wait();
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
    if (T == 0) return;
    RouteParams p;
    if (route_setup(probs, dst, p)) {
        launch_route<false>(p, ctx.stream);
        return;
    }
    const size_t smem = size_t(select_words_per_warp(E, n_group)) * 4 * kSelectWarps;
    GLM_ASSERT(smem <= 48 * 1024);  // E up to ~3000 experts
    TensorView bv{};
    bv.type = GLM_TYPE_F32;
    if (bias) bv = tensor_view(bias);
    cuda_launch(ctx.stream, moe_select_kernel, int(ceil_div(T, kSelectWarps)), 32 * kSelectWarps, smem,
        tensor_view(dst), tensor_view(probs), bv, bias != nullptr, k, n_group, topk_group);
    CUDA_CHECK_LAUNCH();
}

void cuda_op_moe_weights(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* probs = dst->src[0];
    const glm_tensor* ids = dst->src[1];
    GLM_ASSERT(probs->type == GLM_TYPE_F32 && ids->type == GLM_TYPE_I32 && dst->type == GLM_TYPE_F32);
    const int64_t T = ids->ne[1];
    if (T == 0 || ids->ne[0] == 0) return;
    const dim3 grid(unsigned(ceil_div(T, kRouteWarps))), block(unsigned(32 * std::min<int64_t>(kRouteWarps, T)));
    cuda_launch(ctx.stream, moe_weights_kernel, grid, block, 0, tensor_view(dst), tensor_view(probs), tensor_view(ids),
        dst->params[0].i != 0, dst->params[1].f);
    CUDA_CHECK_LAUNCH();
}

bool cuda_fused_moe_route(CudaContext& ctx, glm_tensor* sigmoid, glm_tensor* select, glm_tensor* weights) {
    GLM_ASSERT(sigmoid->op == GLM_OP_SIGMOID && select->op == GLM_OP_MOE_SELECT && weights->op == GLM_OP_MOE_WEIGHTS);
    GLM_ASSERT(select->src[0] == sigmoid && weights->src[0] == sigmoid && weights->src[1] == select);
    const glm_tensor* logits = sigmoid->src[0];
    const glm_tensor* bias = select->src[1];
    RouteParams p;
    if (!route_setup(logits, select, p)) return false;
    if (logits->ne[2] != 1 || logits->ne[3] != 1 || sigmoid->type != GLM_TYPE_F32 || !glm_is_contiguous(sigmoid) ||
        weights->type != GLM_TYPE_F32 || !glm_is_contiguous(weights) || weights->ne[0] != p.k)
        return false;
    const int64_t T = logits->ne[1];
    if (T == 0) return true;  // nothing to write
    // The planner may place ids / weights over the logits' freed bytes (they die at the SIGMOID): one
    // token is safe (its warp loads everything before it stores ids and weights), tokens of other
    // warps are not.
    const glm_tensor* outputs[2] = {select, weights};
    for (const glm_tensor* out : outputs)
        if (T > 1 && (bytes_overlap(out, logits) || (bias && bytes_overlap(out, bias)))) return false;
    p.probs = static_cast<float*>(sigmoid->data);
    p.weights = static_cast<float*>(weights->data);
    p.normalize = weights->params[0].i != 0;
    p.scaling = weights->params[1].f;
    launch_route<true>(p, ctx.stream);
    return true;
}

namespace {

// The combine of `combine`'s sources into out, plus addend when given.
void launch_combine(CudaContext& ctx, const glm_tensor* combine, glm_tensor* out, const glm_tensor* addend) {
    const glm_tensor* y = combine->src[0];
    const glm_tensor* ids = combine->src[2];
    GLM_ASSERT(ids->type == GLM_TYPE_I32 && ids->ne[0] <= kMaxUsed);
    const int64_t D = y->ne[0], T = ids->ne[1];
    if (D == 0 || T == 0) return;
    const dim3 grid(unsigned(ceil_div(D, kCombineThreads)), unsigned(grid_cap(T, 65535)));
    const TensorView a = addend ? tensor_view(addend) : tensor_view(out);
    cuda_launch(ctx.stream, moe_combine_kernel, grid, kCombineThreads, 0, tensor_view(out), tensor_view(y),
        tensor_view(combine->src[1]), tensor_view(ids), a, addend != nullptr);
}

}  // namespace

void cuda_op_moe_combine(CudaContext& ctx, glm_tensor* dst) { launch_combine(ctx, dst, dst, nullptr); }

bool cuda_fused_moe_combine_add(CudaContext& ctx, glm_tensor* combine, glm_tensor* add) {
    const glm_tensor* addend = add->src[0] == combine ? add->src[1] : add->src[0];
    if (add->type != GLM_TYPE_F32 || addend->type != GLM_TYPE_F32 || !glm_same_shape(addend, combine) ||
        !glm_same_shape(add, combine))
        return false;
    // Each thread reads the slots of its (d, t) and the addend's (d, t), then writes out (d, t): out may
    // be the addend's own bytes element for element, and must not touch anything else it reads.
    bool addend_in_place = add->data == addend->data;
    for (int i = 0; i < 4; ++i) addend_in_place = addend_in_place && add->nb[i] == addend->nb[i];
    if ((!addend_in_place && bytes_overlap(add, addend)) || bytes_overlap(add, combine->src[0]) ||
        bytes_overlap(add, combine->src[1]) || bytes_overlap(add, combine->src[2]))
        return false;
    launch_combine(ctx, combine, add, addend);
    return true;
}

void cuda_op_argmax(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* a = dst->src[0];
    GLM_ASSERT(a->ne[0] >= 1 && a->ne[0] < INT_MAX && a->ne[2] == 1 && a->ne[3] == 1);
    if (a->ne[1] == 0) return;
    const int threads = int(std::min<int64_t>(kArgmaxMaxThreads, ceil_div(a->ne[0], 32) * 32));
    const int grid = grid_cap(a->ne[1], int64_t(1) << 30);
    if (dst->op == GLM_OP_MAX_ARG)
        cuda_launch(ctx.stream, argmax_kernel<true>, grid, threads, 0, tensor_view(dst), tensor_view(a),
                    dst->params[0].i);
    else
        cuda_launch(ctx.stream, argmax_kernel<false>, grid, threads, 0, tensor_view(dst), tensor_view(a), 0);
}
