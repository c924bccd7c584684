// GLM_OP_INDEXER (DSA lightning-indexer scores) and GLM_OP_TOP_K (per-column radix select).
//
// indexer: one block per (tile of kIdxKeys keys, query s). q[:, :, s] and the key tile (read
// once, coalesced, converted to f32) sit in shared memory; warp w scores keys w * kKeysPerWarp ..
// + kKeysPerWarp - 1 with lane h taking heads h, h + 32, .. (q rows padded so lanes reading
// different heads hit different banks; float4 reads when D % 4 == 0), then relu, weight and a
// warp sum over heads. Tiles wholly after q_pos[s] only write -inf.
//
// top_k: one block of kTopkThreads per column. Values map to order-preserving uint32 keys (-0 ->
// +0, NaN -> 0 below -inf's key); a (key, ~index) pair in 64 bits orders exactly as the reference
// (descending value, ties by lower index). Columns of n <= kMaxCand are sorted whole (bitonic
// in shared memory). Longer ones: three histogram passes (11-bit digits) find the k-th largest
// key K*; one more pass collects every key > K* (atomics, any order) and the needed number of
// keys == K* in index order (a block scan per chunk, skipped when all of them are needed), then
// the k candidates are sorted. Every pass gives each thread kPer loads in flight.
// Limit: k <= kMaxCand when n > kMaxCand (GLM-5.1 uses k = 2048).
#include <algorithm>
#include <climits>

#include "cuda/indexer.cuh"

namespace {

constexpr int kMaxDevices = 64;

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// ---- indexer ----------------------------------------------------------------------------------
constexpr int kIdxThreads = 256;
constexpr int kIdxWarps = kIdxThreads / 32;
constexpr int kKeysPerWarp = 8;
constexpr int kIdxKeys = kIdxWarps * kKeysPerWarp;  // keys per block

struct IndexerParams {
    TensorView q;      // F32 [D, Hi, S]
    TensorView k;      // [D, T] any float type
    TensorView w;      // F32 [Hi, S]
    TensorView q_pos;  // I32 [S]
    TensorView dst;    // F32 [T, S]
    int D, Hi, S, T, n_tiles;
    float scale;
};

// kVec: D % 4 == 0, the dot products read float4s (q rows padded to D + 4, conflict-free for
// the 8 lanes of a 128-bit phase); otherwise scalar reads with q rows padded to D + 1.
template <bool kVec>
__global__ void __launch_bounds__(kIdxThreads) indexer_kernel(IndexerParams p) {
    extern __shared__ float4 smem4[];
    float* smem = reinterpret_cast<float*>(smem4);
    const int D = p.D, Hi = p.Hi, QS = kVec ? D + 4 : D + 1;
    float* q_s = smem;                      // [Hi][QS]
    float* k_s = q_s + Hi * QS;             // [kIdxKeys][D]
    float* w_s = k_s + kIdxKeys * D;        // [Hi]

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int tile = int(blockIdx.x % p.n_tiles), s = int(blockIdx.x / p.n_tiles);
    const int t0 = tile * kIdxKeys;
    const int pos = *reinterpret_cast<const int32_t*>(elem_ptr(p.q_pos, s, 0, 0, 0));
    const int t_end = min(p.T, t0 + kIdxKeys);
    if (t0 > pos) {  // block-uniform: the whole tile is masked
        for (int t = t0 + tid; t < t_end; t += kIdxThreads)
            *reinterpret_cast<float*>(const_cast<uint8_t*>(elem_ptr(p.dst, t, s, 0, 0))) = neg_inf();
        return;
    }
    for (int i = tid; i < Hi * D; i += kIdxThreads) {
        const int h = i / D, c = i - h * D;
        q_s[h * QS + c] = load_at(p.q, c, h, s);
    }
    for (int h = tid; h < Hi; h += kIdxThreads) w_s[h] = load_at(p.w, h, s);
    for (int i = tid; i < kIdxKeys * D; i += kIdxThreads) {
        const int kk = i / D, c = i - kk * D, t = t0 + kk;
        k_s[i] = (t < t_end && t <= pos) ? load_at(p.k, c, t) : 0.0f;
    }
    __syncthreads();

    const float* kw = k_s + warp * kKeysPerWarp * D;
    float tot[kKeysPerWarp];
#pragma unroll
    for (int kk = 0; kk < kKeysPerWarp; ++kk) tot[kk] = 0.0f;
    for (int h = lane; h < Hi; h += 32) {
        const float* qh = q_s + h * QS;
        float d[kKeysPerWarp];
#pragma unroll
        for (int kk = 0; kk < kKeysPerWarp; ++kk) d[kk] = 0.0f;
        if constexpr (kVec) {
            for (int c = 0; c < D; c += 4) {
                const float4 qv = *reinterpret_cast<const float4*>(qh + c);
#pragma unroll
                for (int kk = 0; kk < kKeysPerWarp; ++kk) {
                    const float4 kv = *reinterpret_cast<const float4*>(kw + kk * D + c);
                    d[kk] = fmaf(qv.x, kv.x, d[kk]);
                    d[kk] = fmaf(qv.y, kv.y, d[kk]);
                    d[kk] = fmaf(qv.z, kv.z, d[kk]);
                    d[kk] = fmaf(qv.w, kv.w, d[kk]);
                }
            }
        } else {
            for (int c = 0; c < D; ++c) {
                const float qv = qh[c];
#pragma unroll
                for (int kk = 0; kk < kKeysPerWarp; ++kk) d[kk] = fmaf(qv, kw[kk * D + c], d[kk]);
            }
        }
        const float wh = w_s[h];
#pragma unroll
        for (int kk = 0; kk < kKeysPerWarp; ++kk) tot[kk] = fmaf(wh, fmaxf(d[kk] * p.scale, 0.0f), tot[kk]);
    }
#pragma unroll
    for (int kk = 0; kk < kKeysPerWarp; ++kk) {
        const float total = warp_sum(tot[kk]);
        const int t = t0 + warp * kKeysPerWarp + kk;
        if (lane == kk && t < t_end)
            *reinterpret_cast<float*>(const_cast<uint8_t*>(elem_ptr(p.dst, t, s, 0, 0))) = t <= pos ? total : neg_inf();
    }
}

// ---- top_k ------------------------------------------------------------------------------------
constexpr int kTopkThreads = 1024;
constexpr int kTopkWarps = kTopkThreads / 32;
constexpr int kMaxCand = 4096;   // candidates sorted in shared memory (32 KiB of 64-bit pairs)
constexpr int kBins = 2048;      // 11-bit digits
constexpr int kPer = 8;          // consecutive elements per thread per chunk
constexpr int kChunk = kTopkThreads * kPer;
static_assert(kTopkWarps == 32 && kBins == 2 * kTopkThreads, "block scan and bin ownership");

struct TopkParams {
    TensorView a;    // F32 [n, ncols]
    TensorView dst;  // I32 [k, ncols]
    int n, k;
    int pow2;        // sort length: next power of two >= (n <= kMaxCand ? n : k)
};

// Order-preserving key: larger float -> larger key; -0 == +0; NaN -> 0 (below -inf's 0x007fffff).
__device__ __forceinline__ uint32_t float_key(float f) {
    if (isnan(f)) return 0u;
    uint32_t u = __float_as_uint(f);
    if (u == 0x80000000u) u = 0u;
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ unsigned long long pair_of(uint32_t key, int idx) {
    return (static_cast<unsigned long long>(key) << 32) | static_cast<unsigned long long>(0xffffffffu - uint32_t(idx));
}

// Inclusive prefix sum over the block (kTopkThreads threads, in thread order).
// *total (optional) receives the block's sum.
__device__ __forceinline__ uint32_t block_inclusive_scan(uint32_t x, uint32_t* warp_tot, uint32_t* total = nullptr) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const uint32_t y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o) x += y;
    }
    if (lane == 31) warp_tot[warp] = x;
    __syncthreads();
    if (warp == 0) {
        uint32_t w = warp_tot[lane];  // kTopkWarps == 32
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const uint32_t y = __shfl_up_sync(0xffffffffu, w, o);
            if (lane >= o) w += y;
        }
        warp_tot[lane] = w;
    }
    __syncthreads();
    const uint32_t r = x + (warp > 0 ? warp_tot[warp - 1] : 0u);
    if (total) *total = warp_tot[31];
    __syncthreads();  // warp_tot may be reused at once
    return r;
}

// Descending bitonic sort of c[0, len), len a power of two.
__device__ void bitonic_sort_desc(unsigned long long* c, int len) {
    for (int size = 2; size <= len; size <<= 1)
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = threadIdx.x; i < len; i += blockDim.x) {
                const int l = i ^ stride;
                if (l > i) {
                    const unsigned long long a = c[i], b = c[l];
                    if (((i & size) == 0) == (a < b)) {
                        c[i] = b;
                        c[l] = a;
                    }
                }
            }
            __syncthreads();
        }
}

__global__ void __launch_bounds__(kTopkThreads) top_k_kernel(TopkParams p) {
    __shared__ unsigned long long cand[kMaxCand];
    __shared__ uint32_t hist[kBins];
    __shared__ uint32_t warp_tot[kTopkWarps];
    __shared__ uint32_t found[4];  // digit, remaining after it, count in its bin, counter

    const int tid = threadIdx.x;
    const int col = blockIdx.x;
    const uint8_t* base = p.a.data + int64_t(col) * p.a.nb[1];
    const int64_t nb0 = p.a.nb[0];
    auto key_at = [&](int i) { return float_key(load_float(p.a.type, base + int64_t(i) * nb0)); };

    if (p.n <= kMaxCand) {
        for (int i = tid; i < p.pow2; i += kTopkThreads) cand[i] = i < p.n ? pair_of(key_at(i), i) : 0ull;
        __syncthreads();
        bitonic_sort_desc(cand, p.pow2);
    } else {
        // Every pass reads the column in chunks of kChunk: thread tid takes the kPer consecutive
        // elements i0 + tid * kPer + u (loads first, so each thread has kPer of them in flight).
        uint32_t keys[kPer];
        auto load_batch = [&](int i0) {
#pragma unroll
            for (int u = 0; u < kPer; ++u) {
                const int i = i0 + tid * kPer + u;
                keys[u] = i < p.n ? key_at(i) : 0u;
            }
        };
        // 1. radix select of the k-th largest key K*
        uint32_t prefix = 0, mask = 0, remaining = uint32_t(p.k), n_eq = 0;
        const int shifts[3] = {21, 10, 0};  // 11-bit digits; the last overlaps bit 10 (harmless)
        for (int pass = 0; pass < 3; ++pass) {
            const int sh = shifts[pass];
            for (int i = tid; i < kBins; i += kTopkThreads) hist[i] = 0;
            __syncthreads();
            for (int i0 = 0; i0 < p.n; i0 += kChunk) {
                load_batch(i0);
#pragma unroll
                for (int u = 0; u < kPer; ++u)
                    if (i0 + tid * kPer + u < p.n && (keys[u] & mask) == prefix)
                        atomicAdd(&hist[(keys[u] >> sh) & (kBins - 1)], 1u);
            }
            __syncthreads();
            // thread tid owns bins 2c, 2c + 1 of chunk c = kTopkThreads - 1 - tid, so the scan in
            // thread order counts keys in chunks at and above c
            const int c = kTopkThreads - 1 - tid;
            const uint32_t lo = hist[2 * c], hi = hist[2 * c + 1];
            const uint32_t incl = block_inclusive_scan(lo + hi, warp_tot);
            const uint32_t above = incl - lo - hi;  // keys in higher bins
            if (above < remaining && above + hi >= remaining) {
                found[0] = uint32_t(2 * c + 1);
                found[1] = remaining - above;
                found[2] = hi;
            } else if (above + hi < remaining && above + hi + lo >= remaining) {
                found[0] = uint32_t(2 * c);
                found[1] = remaining - above - hi;
                found[2] = lo;
            }
            __syncthreads();
            prefix |= found[0] << sh;
            mask |= uint32_t(kBins - 1) << sh;
            remaining = found[1];
            n_eq = found[2];  // after the last pass: the number of keys == K*
            __syncthreads();  // found is rewritten by the next pass
        }
        // 2. collect every key > K* (slots [0, n_greater), any order) and the first `remaining`
        //    keys == K* by index (slots [n_greater, k))
        const uint32_t kstar = prefix;
        const uint32_t n_greater = uint32_t(p.k) - remaining;
        if (tid == 0) {
            found[3] = 0;  // keys > K* placed so far
            found[0] = 0;  // keys == K* placed so far (fast path)
        }
        __syncthreads();
        const bool all_ties = n_eq == remaining;  // the usual case: no index order needed
        uint32_t ties_before = 0;
        for (int i0 = 0; i0 < p.n; i0 += kChunk) {  // block-uniform trip count
            load_batch(i0);
            uint32_t my_eq = 0;
#pragma unroll
            for (int u = 0; u < kPer; ++u) {
                const int i = i0 + tid * kPer + u;
                if (i >= p.n) continue;
                if (keys[u] > kstar) {
                    cand[atomicAdd(&found[3], 1u)] = pair_of(keys[u], i);
                } else if (keys[u] == kstar) {
                    if (all_ties) cand[n_greater + atomicAdd(&found[0], 1u)] = pair_of(keys[u], i);
                    ++my_eq;
                }
            }
            if (all_ties) continue;  // block-uniform
            uint32_t total = 0;
            uint32_t offset = ties_before + block_inclusive_scan(my_eq, warp_tot, &total) - my_eq;
#pragma unroll
            for (int u = 0; u < kPer; ++u) {
                const int i = i0 + tid * kPer + u;
                if (i < p.n && keys[u] == kstar) {
                    if (offset < remaining) cand[n_greater + offset] = pair_of(keys[u], i);
                    ++offset;
                }
            }
            ties_before += total;
        }
        for (int i = p.k + tid; i < p.pow2; i += kTopkThreads) cand[i] = 0ull;
        __syncthreads();
        bitonic_sort_desc(cand, p.pow2);
    }
    for (int j = tid; j < p.k; j += kTopkThreads)
        *reinterpret_cast<int32_t*>(const_cast<uint8_t*>(elem_ptr(p.dst, j, col, 0, 0))) =
            int32_t(0xffffffffu - uint32_t(cand[j] & 0xffffffffull));
}

template <bool kVec>
void launch_indexer(CudaContext& ctx, const IndexerParams& p, size_t smem, int64_t blocks) {
    static int opted_in[kMaxDevices] = {};  // largest dynamic smem size set per device
    GLM_ASSERT(ctx.device >= 0 && ctx.device < kMaxDevices);
    if (smem > 48 * 1024 && int(smem) > opted_in[ctx.device]) {
        CUDA_CHECK(cudaFuncSetAttribute(indexer_kernel<kVec>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
        opted_in[ctx.device] = int(smem);
    }
    indexer_kernel<kVec><<<unsigned(blocks), kIdxThreads, smem, ctx.stream>>>(p);
}

}  // namespace

void cuda_op_indexer(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* q = dst->src[0];
    const glm_tensor* k = dst->src[1];
    const glm_tensor* w = dst->src[2];
    const glm_tensor* q_pos = dst->src[3];
    const int64_t D = q->ne[0], Hi = q->ne[1], S = q->ne[2], T = k->ne[1];
    GLM_ASSERT(q->type == GLM_TYPE_F32 && w->type == GLM_TYPE_F32 && q_pos->type == GLM_TYPE_I32 &&
               dst->type == GLM_TYPE_F32);
    GLM_ASSERT(k->ne[0] == D && w->ne[0] == Hi && w->ne[1] == S && dst->ne[0] == T && dst->ne[1] == S);
    GLM_ASSERT(T < INT_MAX && D > 0 && Hi > 0);
    if (T == 0 || S == 0) return;
    IndexerParams p;
    p.q = tensor_view(q);
    p.k = tensor_view(k);
    p.w = tensor_view(w);
    p.q_pos = tensor_view(q_pos);
    p.dst = tensor_view(dst);
    p.D = int(D);
    p.Hi = int(Hi);
    p.S = int(S);
    p.T = int(T);
    p.n_tiles = int(ceil_div(T, kIdxKeys));
    p.scale = dst->params[0].f;
    const bool vec = D % 4 == 0;
    const size_t smem =
        (size_t(Hi) * size_t(D + (vec ? 4 : 1)) + size_t(kIdxKeys) * size_t(D) + size_t(Hi)) * sizeof(float);
    if (smem > 96 * 1024) GLM_ABORT("cuda indexer: D = {}, Hi = {} need {} B of shared memory (limit 96 KiB)", D, Hi, smem);
    const int64_t blocks = int64_t(p.n_tiles) * S;
    GLM_ASSERT(blocks < int64_t(UINT_MAX));
    if (vec)
        launch_indexer<true>(ctx, p, smem, blocks);
    else
        launch_indexer<false>(ctx, p, smem, blocks);
}

void cuda_op_top_k(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* a = dst->src[0];
    const int64_t n = a->ne[0], ncols = a->ne[1];
    const int k = dst->params[0].i;
    GLM_ASSERT(dst->type == GLM_TYPE_I32 && dst->ne[0] == k && dst->ne[1] == ncols);
    GLM_ASSERT(k >= 1 && k <= n && n < INT_MAX && ncols < INT_MAX);
    if (n > kMaxCand && k > kMaxCand) GLM_ABORT("cuda top_k: k = {} > {} is not supported (n = {})", k, kMaxCand, n);
    if (ncols == 0) return;
    TopkParams p;
    p.a = tensor_view(a);
    p.dst = tensor_view(dst);
    p.n = int(n);
    p.k = k;
    const int len = n <= kMaxCand ? int(n) : k;
    p.pow2 = 1;
    while (p.pow2 < len) p.pow2 <<= 1;
    top_k_kernel<<<unsigned(ncols), kTopkThreads, 0, ctx.stream>>>(p);
}
