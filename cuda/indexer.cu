// GLM_OP_INDEXER (DSA lightning-indexer scores) and GLM_OP_TOP_K (per-column radix select).
//
// indexer: one block per (tile of kIdxKeys keys, query s). q[:, :, s] and the key tile (read
// once, coalesced, converted to f32) sit in shared memory; warp w scores keys w * kKeysPerWarp ..
// + kKeysPerWarp - 1 with lane h taking heads h, h + 32, .. (q rows padded so lanes reading
// different heads hit different banks; float4 reads when D % 4 == 0), then relu, weight and a
// warp sum over heads. Tiles wholly after q_pos[s] only write -inf.
//
// Both ops bound their work at run time by q_pos, read on the device, so one graph built for the
// whole context (T = n_ctx) costs what the filled part costs at every replay: the indexer scores
// only keys t < T_eff = min(q_pos[s] + 1, T) and writes -inf to [T_eff, T); top_k with its optional
// q_pos (src[1]) selects among entries 0..q_pos[c] of column c and writes -1 past them.
//
// top_k: one block of kTopkThreads per column. Values map to order-preserving uint32 keys (-0 ->
// +0, NaN -> 0 below -inf's key); a (key, ~index) pair in 64 bits orders exactly as the reference
// (descending value, ties by lower index). Columns of n <= kMaxCand are sorted whole (bitonic
// in shared memory). Longer ones: three histogram passes (11-bit digits) find the k-th largest
// key K*; one more pass collects every key > K* (atomics, any order) and the needed number of
// keys == K* in index order (a block scan per chunk, skipped when all of them are needed), then
// the k candidates are sorted. Every pass gives each thread kPer loads in flight.
// glm_top_k_by_index (params[1] = 1) selects the same entries but sorts nothing: the selection is
// marked in a bitmap over the column (in the pairs' shared memory) and one block scan writes it in
// index order; the multi-block passes below find its threshold the same way. Columns longer than
// the bitmap (262,144) take the sorted path and sort its k best again by index.
// With q_pos every pass stops at the column's candidate count n_c (a column with n_c <= kMaxCand is
// sorted whole, whatever the graph's n). Limit: k <= kMaxCand when n > kMaxCand (GLM-5.1 uses
// k = 2048).
//
// Fast paths (see the sections below): indexer_mma_kernel (tensor cores, D in {64, 128}, Hi in
// {16, 32, 64}, BF16 / F8 keys in 16-byte aligned rows; D < 64 models keep the kernel above) and
// a multi-block top_k for n > kMaxCand, <= 16 columns of contiguous F32 (histogram passes over
// many blocks, then one block sorts the candidates; exact, with the single-block select as
// the on-device fallback when the threshold bucket is too crowded).
#include <algorithm>
#include <climits>
#include <type_traits>

#include "cuda/indexer.cuh"

namespace {

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

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
    float weight_scale;  // applied to w as it is loaded (the f32 product a separate scale op gives)
};

// kVec: D % 4 == 0, the dot products read float4s (q rows padded to D + 4, conflict-free for
// the 8 lanes of a 128-bit phase); otherwise scalar reads with q rows padded to D + 1.
template <bool kVec>
__global__ void __launch_bounds__(kIdxThreads) indexer_kernel(IndexerParams p) {
    grid_dependency_wait();
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
    for (int h = tid; h < Hi; h += kIdxThreads) w_s[h] = load_at(p.w, h, s) * p.weight_scale;
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

// ---- indexer on tensor cores -------------------------------------------------------------------
// Taken when D in {64, 128}, Hi in {16, 32, 64}, keys BF16 or F8_E4M3 with contiguous 16-byte
// aligned rows (see cuda_op_indexer). Not taken for D < 64: the small test models (D = 16, 32) stay
// on the exact CUDA-core kernel above, so their near-tied top-k choices (greedy-id tests) cannot
// move.
//
// mma.sync m16n8k16 bf16 -> f32 with A = 16 keys x 16 dims (row-major: the key rows as stored) and
// B = 16 dims x 8 heads (q, "col" layout). The dot product is invariant under a permutation of the
// dims, so lane (g = lane / 4, t = lane % 4) loads the 8 contiguous dims c0 + 8t .. c0 + 8t + 7 of
// keys g and g + 8 of a 32-dim chunk with one 16-byte load each and feeds them to two mmas
// (dims +0..3, then +4..7); q fragments are staged in shared memory with the same permutation.
// q is split into bf16 hi + lo (q - hi), two mmas each: q keeps ~16 mantissa bits, products of
// bf16 keys are exact, sums are f32 (relative error ~1e-5 of |q|.|k|, vs 1e-7 on CUDA cores).
// Warp w of a block takes 32 keys (two m16 tiles) per step, the block 256. The host fixes the grid
// from T (gridDim.x blocks per query, blockIdx.y = the query); each block reads q_pos[s] and owns a
// contiguous range of whole steps of [0, T_eff), so a short context still spreads over every block.
// Keys >= T_eff are never read; all blocks of the query share the -inf writes of [T_eff, T).
constexpr int kMmaThreads = 256;
constexpr int kMmaWarps = kMmaThreads / 32;
constexpr int kMmaKeysPerWarp = 32;
constexpr int kMmaKeysPerStep = kMmaWarps * kMmaKeysPerWarp;

__device__ __forceinline__ void mma_bf16_16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                               uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (lower 16 bits) = lo
    return *reinterpret_cast<const uint32_t*>(&v);
}

// e4m3 byte -> float, exact; every e4m3 value is exact in bf16 too.
__device__ __forceinline__ float e4m3_exact(uint32_t b) {
    const uint32_t mag = b & 0x7fu;
    float f = mag < 8u ? float(mag) * 0x1p-9f : __uint_as_float((mag << 20) + (120u << 23));
    if (mag == 0x7fu) f = __int_as_float(0x7fc00000);
    return (b & 0x80u) ? -f : f;
}

__device__ __forceinline__ uint32_t e4m3x2_to_bf16x2(uint32_t v) {
    return pack_bf16x2(e4m3_exact(v & 0xffu), e4m3_exact((v >> 8) & 0xffu));
}

template <int kNT, int kNCH, bool kF8>  // kNT = Hi / 8 head tiles, kNCH = D / 32 dim chunks
__global__ void __launch_bounds__(kMmaThreads, kF8 ? 1 : 2) indexer_mma_kernel(IndexerParams p) {
    grid_dependency_wait();
    extern __shared__ uint4 qf[];  // [kNCH][kNT][2: hi, lo][32 lanes]
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, tg = lane & 3;
    const int s = int(blockIdx.y);
    const int pos = *reinterpret_cast<const int32_t*>(elem_ptr(p.q_pos, s, 0, 0, 0));
    const int t_eff = pos < 0 ? 0 : pos >= p.T ? p.T : pos + 1;
    for (int64_t t = t_eff + int64_t(blockIdx.x) * kMmaThreads + tid; t < p.T; t += int64_t(gridDim.x) * kMmaThreads)
        *reinterpret_cast<float*>(const_cast<uint8_t*>(elem_ptr(p.dst, t, s, 0, 0))) = neg_inf();
    // this block's keys [t_begin, t_read): whole steps of [0, t_eff)
    const int per_block = (t_eff + int(gridDim.x) - 1) / int(gridDim.x);
    const int keys_per_block = (per_block + kMmaKeysPerStep - 1) / kMmaKeysPerStep * kMmaKeysPerStep;
    const int t_begin = int(min64(int64_t(blockIdx.x) * keys_per_block, t_eff));
    const int t_read = int(min64(int64_t(t_begin) + keys_per_block, t_eff));
    if (t_read == t_begin) return;  // block-uniform

    // raw key bytes: BF16 16 B (8 dims) per row and chunk, F8 8 B (converted after arrival)
    using Raw = std::conditional_t<kF8, uint2, uint4>;
    Raw kr[2][2][kNCH];  // [m tile][row g / g + 8][chunk]
    auto load_keys = [&](int t0) {
#pragma unroll
        for (int mt = 0; mt < 2; ++mt)
#pragma unroll
            for (int hf = 0; hf < 2; ++hf) {
                const int t = t0 + mt * 16 + hf * 8 + g;
                const bool ok = t < t_read;
                const uint8_t* row = p.k.data + int64_t(ok ? t : t_begin) * p.k.nb[1];
#pragma unroll
                for (int ch = 0; ch < kNCH; ++ch) {
                    if constexpr (kF8)
                        kr[mt][hf][ch] = ok ? __ldg(reinterpret_cast<const uint2*>(row + ch * 32 + tg * 8)) : make_uint2(0, 0);
                    else
                        kr[mt][hf][ch] = ok ? __ldg(reinterpret_cast<const uint4*>(row + ch * 64 + tg * 16)) : make_uint4(0, 0, 0, 0);
                }
            }
    };
    // the first step's keys load while q is staged (a warp past t_read loads nothing)
    if (t_begin + warp * kMmaKeysPerWarp < t_read) load_keys(t_begin + warp * kMmaKeysPerWarp);

    // q fragments: entry (ch, nt, hl, ln) holds head nt * 8 + ln / 4, dims c0 .. c0 + 7 with
    // c0 = ch * 32 + (ln % 4) * 8, as 4 bf16 pairs (lower dim in the lower half).
    // f32 rows with 16-byte alignment (the graph's concat output): the 8 dims of an entry are two
    // float4 loads instead of 8 typed element loads.
    const bool q_vec = p.q.type == GLM_TYPE_F32 && p.q.nb[0] == 4 && p.q.nb[1] % 16 == 0 && p.q.nb[2] % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(p.q.data) % 16 == 0;
#pragma unroll 1
    for (int i = tid; i < kNCH * kNT * 64; i += kMmaThreads) {
        const int ln = i & 31, hl = (i >> 5) & 1, nt = (i >> 6) % kNT, ch = (i >> 6) / kNT;
        const int head = nt * 8 + (ln >> 2), c0 = ch * 32 + (ln & 3) * 8;
        float xq[8];
        if (q_vec) {
            const float4* src = reinterpret_cast<const float4*>(p.q.data + int64_t(s) * p.q.nb[2] +
                                                                int64_t(head) * p.q.nb[1] + int64_t(c0) * 4);
            const float4 lo = src[0], hi = src[1];
            xq[0] = lo.x, xq[1] = lo.y, xq[2] = lo.z, xq[3] = lo.w, xq[4] = hi.x, xq[5] = hi.y, xq[6] = hi.z, xq[7] = hi.w;
        } else {
#pragma unroll
            for (int j = 0; j < 8; ++j) xq[j] = load_at(p.q, c0 + j, head, s);
        }
        uint32_t r[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            float x0 = xq[2 * j], x1 = xq[2 * j + 1];
            if (hl) {
                x0 -= __bfloat162float(__float2bfloat16_rn(x0));
                x1 -= __bfloat162float(__float2bfloat16_rn(x1));
            }
            r[j] = pack_bf16x2(x0, x1);
        }
        qf[i] = make_uint4(r[0], r[1], r[2], r[3]);
    }
    float* w_s = reinterpret_cast<float*>(qf + kNCH * kNT * 64);  // [Hi]
    for (int h = tid; h < kNT * 8; h += kMmaThreads) w_s[h] = load_at(p.w, h, s) * p.weight_scale;
    __syncthreads();

    const float scale = p.scale;
    for (int t0 = t_begin + warp * kMmaKeysPerWarp; t0 < t_read; t0 += kMmaKeysPerStep) {  // warp-uniform
        uint4 a[2][2][kNCH];  // bf16 pairs of dims c0 + {0,1}, {2,3}, {4,5}, {6,7}
#pragma unroll
        for (int mt = 0; mt < 2; ++mt)
#pragma unroll
            for (int hf = 0; hf < 2; ++hf)
#pragma unroll
                for (int ch = 0; ch < kNCH; ++ch) {
                    if constexpr (kF8) {
                        const uint2 v = kr[mt][hf][ch];
                        a[mt][hf][ch] = make_uint4(e4m3x2_to_bf16x2(v.x), e4m3x2_to_bf16x2(v.x >> 16),
                                                   e4m3x2_to_bf16x2(v.y), e4m3x2_to_bf16x2(v.y >> 16));
                    } else {
                        a[mt][hf][ch] = kr[mt][hf][ch];
                    }
                }
        // one head tile at a time (few live accumulators): acc[mt] = {key g, heads 2tg, 2tg + 1},
        // {key g + 8, same heads} of key tile mt; relu, scale and weight fold into sc[mt][row]
        float sc[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) {
            float acc[2][4];
#pragma unroll
            for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[mt][j] = 0.0f;
#pragma unroll
            for (int ch = 0; ch < kNCH; ++ch)
#pragma unroll
                for (int hl = 0; hl < 2; ++hl) {
                    const uint4 b = qf[((ch * kNT + nt) * 2 + hl) * 32 + lane];
#pragma unroll
                    for (int mt = 0; mt < 2; ++mt) {
                        const uint4 &a_lo = a[mt][0][ch], &a_hi = a[mt][1][ch];
                        mma_bf16_16816(acc[mt], a_lo.x, a_hi.x, a_lo.y, a_hi.y, b.x, b.y);
                        mma_bf16_16816(acc[mt], a_lo.z, a_hi.z, a_lo.w, a_hi.w, b.z, b.w);
                    }
                }
            const float2 wv = *reinterpret_cast<const float2*>(w_s + nt * 8 + 2 * tg);  // heads of acc's columns
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) {
                sc[mt][0] = fmaf(wv.x, fmaxf(acc[mt][0] * scale, 0.0f), sc[mt][0]);
                sc[mt][0] = fmaf(wv.y, fmaxf(acc[mt][1] * scale, 0.0f), sc[mt][0]);
                sc[mt][1] = fmaf(wv.x, fmaxf(acc[mt][2] * scale, 0.0f), sc[mt][1]);
                sc[mt][1] = fmaf(wv.y, fmaxf(acc[mt][3] * scale, 0.0f), sc[mt][1]);
            }
        }
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
            float s0 = sc[mt][0], s1 = sc[mt][1];
            s0 += __shfl_xor_sync(0xffffffffu, s0, 1);
            s0 += __shfl_xor_sync(0xffffffffu, s0, 2);
            s1 += __shfl_xor_sync(0xffffffffu, s1, 1);
            s1 += __shfl_xor_sync(0xffffffffu, s1, 2);
            const int t = t0 + mt * 16 + g;
            if (tg == 0 && t < t_read) *reinterpret_cast<float*>(const_cast<uint8_t*>(elem_ptr(p.dst, t, s, 0, 0))) = s0;
            if (tg == 0 && t + 8 < t_read)
                *reinterpret_cast<float*>(const_cast<uint8_t*>(elem_ptr(p.dst, t + 8, s, 0, 0))) = s1;
        }
        if (t0 + kMmaKeysPerStep < t_read) load_keys(t0 + kMmaKeysPerStep);
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
    TensorView a;      // F32 [n, ncols]
    TensorView dst;    // I32 [k, ncols]
    TensorView q_pos;  // I32 [ncols] (has_qpos only)
    int n, k;
    int has_qpos;
    int pow2;          // sort length of k candidates: next power of two >= k
    int by_index;      // glm_top_k_by_index: the selection listed by ascending index
};

// The candidate count of column col: n, or min(q_pos[col] + 1, n) (0 for a negative position).
__device__ __forceinline__ int topk_len(const TopkParams& p, int col) {
    if (!p.has_qpos) return p.n;
    const int pos = *reinterpret_cast<const int32_t*>(elem_ptr(p.q_pos, col, 0, 0, 0));
    return pos < 0 ? 0 : pos >= p.n ? p.n : pos + 1;
}

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

// block_inclusive_scan (common.cuh) scans the top-k block's kTopkThreads = 1024 threads.

// Descending bitonic sort of c[0, len), len a power of two; called by all threads of the block.
// Thread tid compares pairs q = tid, tid + blockDim.x, ..: (i, i + stride) with i = q's bits
// below stride kept and the rest shifted up by one. For stride <= 32 the 32 pairs of a warp
// (q = 32w .. 32w + 31, + blockDim.x ..) touch only the same 64-element blocks in every such
// stage, so those stages need only __syncwarp; a stage before or after a longer stride has a
// __syncthreads.
__device__ void bitonic_sort_desc(unsigned long long* c, int len) {
    const int half = len >> 1;
    for (int size = 2; size <= len; size <<= 1)
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int q = threadIdx.x; q < half; q += blockDim.x) {
                const int i = ((q & ~(stride - 1)) << 1) | (q & (stride - 1)), l = i + stride;
                const unsigned long long a = c[i], b = c[l];
                if (((i & size) == 0) == (a < b)) {
                    c[i] = b;
                    c[l] = a;
                }
            }
            const int next = stride > 1 ? stride >> 1 : size;  // the next stage's stride
            if (stride > 32 || next > 32)
                __syncthreads();
            else
                __syncwarp();
        }
    __syncthreads();
}

// ---- multi-block top_k (n > kMaxCand, k <= kMaxCand, <= kMbMaxCols contiguous 16-byte aligned
// F32 columns) ----------------------------------------------------------------------------------
// 1. topk_mb_zero: clears the column's scratch (a kernel, so the sequence is graph-capturable).
// 2. topk_mb_hist<0>: NB blocks per column histogram bits 31..21 of the keys (shared memory, then
//    atomics into the global bins); the last block to finish (ticket counter) finds the digit d1
//    holding the k-th largest key and the count still needed inside it, then clears the bins.
// 3. topk_mb_hist<1>: the same over bits 20..10 of the keys whose top digit is d1 -> d2.
// 4. topk_mb_collect: every element with (key >> 10) >= (d1 << 11 | d2) -- all keys above the
//    22-bit bucket of the k-th largest and that whole bucket -- goes to the candidate list as a
//    (key, ~index) pair, in any order (warp-aggregated slot atomics). There are >= k of them.
// 5. top_k_kernel<true>: one block per column; when the list fits (<= kMaxCand) it is sorted whole
//    (the pairs order exactly as the reference, ties included) and its first k are the answer;
//    otherwise (masses of ties, e.g. a long -inf tail) the column is redone by the single-block
//    radix select. Exact in every case.
// Every pass covers the column's candidates [0, n_c) only (topk_len); a column with n_c <= kMaxCand
// skips steps 2-4 (block-uniform early return) and is sorted whole by step 5.
constexpr int kMbMaxCols = 16;
constexpr int kMbPerThread = 4;  // float4 loads in flight per thread and pass iteration

struct TopkScratch {
    uint32_t hist[kBins];
    uint32_t done;       // blocks finished (ticket)
    uint32_t remaining;  // after pass 0: keys still needed inside digit d1
    uint32_t d1;
    uint32_t thr;        // after pass 1: (d1 << 11) | d2, compared against key >> 10
    uint32_t n_cand;
};
__device__ TopkScratch g_topk_scratch[kMbMaxCols];
__device__ unsigned long long g_topk_cand[kMbMaxCols][kMaxCand];

__global__ void __launch_bounds__(kTopkThreads) topk_mb_zero() {
    grid_dependency_wait();
    TopkScratch& sc = g_topk_scratch[blockIdx.x];
    for (int i = threadIdx.x; i < kBins; i += kTopkThreads) sc.hist[i] = 0;
    if (threadIdx.x == 0) {
        sc.done = 0;
        sc.remaining = 0;
        sc.d1 = 0;
        sc.thr = 0;
        sc.n_cand = 0;
    }
}

// Calls f(key, index, valid) for every element of [0, n) of column col owned by this block, in
// float4 groups; the trip count is uniform over the block (so f may use warp collectives).
template <typename F>
__device__ __forceinline__ void topk_mb_for_each(const TopkParams& p, int col, int n, F&& f) {
    const float4* base = reinterpret_cast<const float4*>(p.a.data + int64_t(col) * p.a.nb[1]);
    const int n4 = (n + 3) >> 2;
    const int stride = int(gridDim.x) * kTopkThreads;
    for (int j0 = int(blockIdx.x) * kTopkThreads; j0 < n4; j0 += stride * kMbPerThread) {
        float4 v[kMbPerThread];
#pragma unroll
        for (int u = 0; u < kMbPerThread; ++u) {
            const int j = j0 + u * stride + int(threadIdx.x);
            // the last group may run past n: read it element-wise
            if (j < (n >> 2)) {
                v[u] = __ldg(base + j);
            } else if (j < n4) {
                const float* e = reinterpret_cast<const float*>(base + j);
                const int left = n - 4 * j;
                v[u] = make_float4(e[0], left > 1 ? e[1] : 0.0f, left > 2 ? e[2] : 0.0f, 0.0f);
            } else {
                v[u] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            }
        }
#pragma unroll
        for (int u = 0; u < kMbPerThread; ++u) {
            const int i = 4 * (j0 + u * stride + int(threadIdx.x));
            f(float_key(v[u].x), i, i < n);
            f(float_key(v[u].y), i + 1, i + 1 < n);
            f(float_key(v[u].z), i + 2, i + 2 < n);
            f(float_key(v[u].w), i + 3, i + 3 < n);
        }
    }
}

template <int kPass>
__global__ void __launch_bounds__(kTopkThreads) topk_mb_hist(TopkParams p) {
    grid_dependency_wait();
    __shared__ uint32_t hist[kBins];
    __shared__ uint32_t warp_tot[kTopkWarps];
    __shared__ uint32_t found[3];
    __shared__ bool last;
    const int tid = threadIdx.x, col = blockIdx.y;
    const int n = topk_len(p, col);
    if (n <= kMaxCand) return;  // block-uniform: top_k_kernel<true> sorts the column whole
    TopkScratch& sc = g_topk_scratch[col];
    for (int i = tid; i < kBins; i += kTopkThreads) hist[i] = 0;
    const uint32_t d1 = kPass == 0 ? 0u : sc.d1;
    __syncthreads();
    const int lane = tid & 31;
    topk_mb_for_each(p, col, n, [&](uint32_t key, int, bool valid) {
        // scores crowd into few bins: one atomic per distinct bin of the warp
        uint32_t bin = 0xffffffffu;
        if (valid && (kPass == 0 || (key >> 21) == d1)) bin = kPass == 0 ? key >> 21 : (key >> 10) & (kBins - 1);
        const uint32_t peers = __match_any_sync(0xffffffffu, bin);
        if (bin != 0xffffffffu && lane == __ffs(peers) - 1) atomicAdd(&hist[bin], uint32_t(__popc(peers)));
    });
    __syncthreads();
    for (int i = tid; i < kBins; i += kTopkThreads)
        if (hist[i]) atomicAdd(&sc.hist[i], hist[i]);
    __threadfence();
    __syncthreads();
    if (tid == 0) last = atomicAdd(&sc.done, 1u) == gridDim.x - 1;
    __syncthreads();
    if (!last) return;  // block-uniform
    __threadfence();
    // the last block: every other block's bins are in sc.hist (read from L2)
    const uint32_t remaining = kPass == 0 ? uint32_t(p.k) : __ldcg(&sc.remaining);
    const int c = kTopkThreads - 1 - tid;  // thread tid owns bins 2c, 2c + 1 (see top_k_kernel)
    const uint32_t lo = __ldcg(&sc.hist[2 * c]), hi = __ldcg(&sc.hist[2 * c + 1]);
    const uint32_t incl = block_inclusive_scan(lo + hi, warp_tot);
    const uint32_t above = incl - lo - hi;
    if (above < remaining && above + hi >= remaining) {
        found[0] = uint32_t(2 * c + 1);
        found[1] = remaining - above;
    } else if (above + hi < remaining && above + hi + lo >= remaining) {
        found[0] = uint32_t(2 * c);
        found[1] = remaining - above - hi;
    }
    __syncthreads();
    for (int i = tid; i < kBins; i += kTopkThreads) sc.hist[i] = 0;
    if (tid == 0) {
        sc.done = 0;
        if (kPass == 0) {
            sc.d1 = found[0];
            sc.remaining = found[1];
        } else {
            sc.thr = (d1 << 11) | found[0];
        }
    }
}

__global__ void __launch_bounds__(kTopkThreads) topk_mb_collect(TopkParams p) {
    grid_dependency_wait();
    const int col = blockIdx.y, lane = threadIdx.x & 31;
    const int n = topk_len(p, col);
    if (n <= kMaxCand) return;  // block-uniform, as in topk_mb_hist
    TopkScratch& sc = g_topk_scratch[col];
    const uint32_t thr = sc.thr;
    unsigned long long* out = g_topk_cand[col];
    topk_mb_for_each(p, col, n, [&](uint32_t key, int i, bool valid) {
        const bool take = valid && (key >> 10) >= thr;
        const uint32_t mask = __ballot_sync(0xffffffffu, take);
        if (mask == 0) return;  // warp-uniform
        uint32_t slot = 0;
        if (lane == __ffs(mask) - 1) slot = atomicAdd(&sc.n_cand, uint32_t(__popc(mask)));
        slot = __shfl_sync(0xffffffffu, slot, __ffs(mask) - 1) + uint32_t(__popc(mask & ((1u << lane) - 1u)));
        if (take && slot < uint32_t(kMaxCand)) out[slot] = pair_of(key, i);
    });
}

// Radix select over the keys key_of(0 .. m - 1) (m >= k, block-uniform): K*, the k-th largest key,
// how many keys == K* the selection still takes after every key > K* (`remaining`) and how many
// keys == K* there are (`n_eq`). Three histogram passes of 11-bit digits (the last overlaps bit 10,
// harmless); each pass reads the keys in chunks of kChunk, kPer consecutive ones per thread, loads
// first so each thread has kPer of them in flight.
struct Threshold {
    uint32_t kstar, remaining, n_eq;
};
template <typename KeyOf>
__device__ Threshold radix_select(KeyOf key_of, int m, uint32_t k, uint32_t* hist, uint32_t* warp_tot, uint32_t* found) {
    const int tid = threadIdx.x;
    uint32_t keys[kPer];
    uint32_t prefix = 0, mask = 0, remaining = k, n_eq = 0;
    const int shifts[3] = {21, 10, 0};
    for (int pass = 0; pass < 3; ++pass) {
        const int sh = shifts[pass];
        for (int i = tid; i < kBins; i += kTopkThreads) hist[i] = 0;
        __syncthreads();
        for (int i0 = 0; i0 < m; i0 += kChunk) {
#pragma unroll
            for (int u = 0; u < kPer; ++u) {
                const int i = i0 + tid * kPer + u;
                keys[u] = i < m ? key_of(i) : 0u;
            }
#pragma unroll
            for (int u = 0; u < kPer; ++u)
                if (i0 + tid * kPer + u < m && (keys[u] & mask) == prefix)
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
    return {prefix, remaining, n_eq};
}

// glm_top_k_by_index: bit i of `sel` (a bitmap over the column's n_c candidates, in the shared
// memory the sorted path uses for its pairs) marks entry i as selected; one block scan over the
// words then writes the selected indices in ascending order. No sort at all: at decode the 2,048 of
// GLM-5.1 cost ~80 stages of a bitonic sort, most of the top-k's time.
constexpr int kMaxBitmapN = kMaxCand * 64;  // positions the pair buffer's bits cover (262,144)

// Marks every key > th.kstar of the column and the first th.remaining keys == K* by index (a block
// scan per chunk, skipped when every key == K* is taken).
template <typename KeyAt>
__device__ void mark_column(KeyAt key_at, int n, const Threshold& th, uint32_t* sel, uint32_t* warp_tot) {
    const int tid = threadIdx.x;
    const bool all_ties = th.n_eq == th.remaining;
    uint32_t ties_before = 0;
    for (int i0 = 0; i0 < n; i0 += kChunk) {  // block-uniform trip count
        uint32_t keys[kPer];
#pragma unroll
        for (int u = 0; u < kPer; ++u) {
            const int i = i0 + tid * kPer + u;
            keys[u] = i < n ? key_at(i) : 0u;
        }
        uint32_t bits = 0, my_eq = 0;
#pragma unroll
        for (int u = 0; u < kPer; ++u) {
            const bool live = i0 + tid * kPer + u < n;
            if (live && (keys[u] > th.kstar || (all_ties && keys[u] == th.kstar))) bits |= 1u << u;
            my_eq += live && keys[u] == th.kstar;
        }
        if (!all_ties) {  // block-uniform
            uint32_t total = 0;
            uint32_t offset = ties_before + block_inclusive_scan(my_eq, warp_tot, &total) - my_eq;
#pragma unroll
            for (int u = 0; u < kPer; ++u)
                if (i0 + tid * kPer + u < n && keys[u] == th.kstar) {
                    if (offset < th.remaining) bits |= 1u << u;
                    ++offset;
                }
            ties_before += total;
        }
        // kChunk and kPer are multiples of 8: the thread's kPer bits lie inside one 32-bit word
        const int first = i0 + tid * kPer;
        if (bits) atomicOr(&sel[first >> 5], bits << (first & 31));
    }
}

// Writes the indices of sel's set bits (words [0, ceil(n / 32))) in ascending order to dst column
// col, then -1 up to k. Thread tid takes a contiguous run of words; a block scan of their bit counts
// gives each run its place.
__device__ void write_selected(const TopkParams& p, int col, int n, const uint32_t* sel, uint32_t* warp_tot) {
    const int tid = threadIdx.x;
    const int words = (n + 31) >> 5, per = (words + kTopkThreads - 1) / kTopkThreads;
    const int w0 = min(tid * per, words), w1 = min(w0 + per, words);
    uint32_t count = 0;
    for (int w = w0; w < w1; ++w) count += __popc(sel[w]);
    uint32_t total = 0;
    uint32_t at = block_inclusive_scan(count, warp_tot, &total) - count;
    auto out = [&](int j) { return reinterpret_cast<int32_t*>(const_cast<uint8_t*>(elem_ptr(p.dst, j, col, 0, 0))); };
    for (int w = w0; w < w1; ++w)
        for (uint32_t bits = sel[w]; bits && at < uint32_t(p.k); bits &= bits - 1) *out(int(at++)) = w * 32 + __ffs(bits) - 1;
    for (int j = int(min(total, uint32_t(p.k))) + tid; j < p.k; j += kTopkThreads) *out(j) = -1;
}

template <bool kMb>
__global__ void __launch_bounds__(kTopkThreads) top_k_kernel(TopkParams p) {
    grid_dependency_wait();
    __shared__ unsigned long long cand[kMaxCand];
    __shared__ uint32_t hist[kBins];
    __shared__ uint32_t warp_tot[kTopkWarps];
    __shared__ uint32_t found[4];  // digit, remaining after it, count in its bin, counter

    const int tid = threadIdx.x;
    const int col = blockIdx.x;
    const uint8_t* base = p.a.data + int64_t(col) * p.a.nb[1];
    const int64_t nb0 = p.a.nb[0];
    auto key_at = [&](int i) { return float_key(load_float(p.a.type, base + int64_t(i) * nb0)); };
    const int n = topk_len(p, col);        // candidates [0, n) (block-uniform)
    const int n_out = min(p.k, n);         // places [n_out, k) hold -1

    // kMb: the candidates of topk_mb_collect, when they fit (block-uniform; the multi-block
    // kernels skipped columns of n <= kMaxCand)
    const uint32_t n_cand = kMb && n > kMaxCand ? g_topk_scratch[col].n_cand : 0u;
    if (p.by_index && n <= kMaxBitmapN) {
        uint32_t* sel = reinterpret_cast<uint32_t*>(cand);
        const int words = (n + 31) >> 5;
        for (int w = tid; w < words; w += kTopkThreads) {  // n <= k: every candidate, else none yet
            const int left = n - 32 * w;
            sel[w] = n > p.k ? 0u : left >= 32 ? ~0u : (1u << left) - 1u;
        }
        if (n > p.k) {
            const unsigned long long* pairs = g_topk_cand[kMb ? col : 0];
            bool from_cand = false;
            Threshold th{};
            if (kMb && n > kMaxCand && n_cand <= uint32_t(kMaxCand)) {
                // K* among the candidates: every key of the column's bucket of the k-th largest is there
                th = radix_select([&](int i) { return uint32_t(pairs[i] >> 32); }, int(n_cand), uint32_t(p.k), hist,
                                  warp_tot, found);
                from_cand = th.n_eq == th.remaining;  // ties to take in index order: mark from the column
            }
            if (!from_cand) th = radix_select(key_at, n, uint32_t(p.k), hist, warp_tot, found);
            __syncthreads();
            if (from_cand) {
                for (int i = tid; i < int(n_cand); i += kTopkThreads) {
                    const unsigned long long pair = pairs[i];
                    const uint32_t key = uint32_t(pair >> 32), idx = 0xffffffffu - uint32_t(pair & 0xffffffffull);
                    if (key >= th.kstar) atomicOr(&sel[idx >> 5], 1u << (idx & 31));
                }
            } else {
                mark_column(key_at, n, th, sel, warp_tot);
            }
        }
        __syncthreads();
        write_selected(p, col, n, sel, warp_tot);
        return;
    }
    if (n <= kMaxCand) {
        int len = 1;
        while (len < n) len <<= 1;
        for (int i = tid; i < len; i += kTopkThreads) cand[i] = i < n ? pair_of(key_at(i), i) : 0ull;
        __syncthreads();
        bitonic_sort_desc(cand, len);
    } else if (kMb && n_cand <= uint32_t(kMaxCand)) {
        int len = 1;
        while (len < int(n_cand)) len <<= 1;
        for (int i = tid; i < len; i += kTopkThreads) cand[i] = i < int(n_cand) ? g_topk_cand[col][i] : 0ull;
        __syncthreads();
        bitonic_sort_desc(cand, len);
    } else {
        const Threshold th = radix_select(key_at, n, uint32_t(p.k), hist, warp_tot, found);
        // collect every key > K* (slots [0, n_greater), any order) and the first `remaining` keys
        // == K* by index (slots [n_greater, k)), then sort them
        const uint32_t kstar = th.kstar, remaining = th.remaining;
        const uint32_t n_greater = uint32_t(p.k) - remaining;
        if (tid == 0) {
            found[3] = 0;  // keys > K* placed so far
            found[0] = 0;  // keys == K* placed so far (fast path)
        }
        __syncthreads();
        const bool all_ties = th.n_eq == remaining;  // the usual case: no index order needed
        uint32_t ties_before = 0;
        uint32_t keys[kPer];
        for (int i0 = 0; i0 < n; i0 += kChunk) {  // block-uniform trip count
#pragma unroll
            for (int u = 0; u < kPer; ++u) {
                const int i = i0 + tid * kPer + u;
                keys[u] = i < n ? key_at(i) : 0u;
            }
            uint32_t my_eq = 0;
#pragma unroll
            for (int u = 0; u < kPer; ++u) {
                const int i = i0 + tid * kPer + u;
                if (i >= n) continue;
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
                if (i < n && keys[u] == kstar) {
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
    if (p.by_index) {
        // a column longer than the bitmap: the k best, sorted again by index alone (~index
        // descending), -1 places last
        for (int i = tid; i < p.pow2; i += kTopkThreads) cand[i] = i < n_out ? cand[i] & 0xffffffffull : 0ull;
        __syncthreads();
        bitonic_sort_desc(cand, p.pow2);
    }
    for (int j = tid; j < p.k; j += kTopkThreads)
        *reinterpret_cast<int32_t*>(const_cast<uint8_t*>(elem_ptr(p.dst, j, col, 0, 0))) =
            j < n_out ? int32_t(0xffffffffu - uint32_t(cand[j] & 0xffffffffull)) : -1;
}

template <bool kVec>
void launch_indexer(CudaContext& ctx, const IndexerParams& p, size_t smem, int64_t blocks) {
    static SmemOptIn opted_in;
    cuda_allow_smem(indexer_kernel<kVec>, smem, ctx.device, opted_in);
    cuda_launch(ctx.stream, indexer_kernel<kVec>, unsigned(blocks), kIdxThreads, smem, p);
}


template <int kNT, int kNCH>
void launch_indexer_mma_t(CudaContext& ctx, const IndexerParams& p, bool f8, dim3 grid) {
    const size_t smem = size_t(kNCH) * kNT * 64 * sizeof(uint4) + size_t(kNT) * 8 * sizeof(float);
    if (f8)
        cuda_launch(ctx.stream, indexer_mma_kernel<kNT, kNCH, true>, grid, kMmaThreads, smem, p);
    else
        cuda_launch(ctx.stream, indexer_mma_kernel<kNT, kNCH, false>, grid, kMmaThreads, smem, p);
}

template <int kNCH>
void launch_indexer_mma_d(CudaContext& ctx, const IndexerParams& p, bool f8, dim3 grid) {
    switch (p.Hi) {
        case 16: launch_indexer_mma_t<2, kNCH>(ctx, p, f8, grid); break;
        case 32: launch_indexer_mma_t<4, kNCH>(ctx, p, f8, grid); break;
        case 64: launch_indexer_mma_t<8, kNCH>(ctx, p, f8, grid); break;
        default: GLM_ABORT("cuda indexer: no tensor-core kernel for Hi = {}", p.Hi);
    }
}

// Tensor-core path (indexer_mma_kernel): D in {64, 128} (never the D < 64 test models),
// Hi in {16, 32, 64}, keys BF16 / F8_E4M3 with contiguous elements and 16-byte aligned rows.
bool indexer_mma_ok(const glm_tensor* q, const glm_tensor* k) {
    const int64_t D = q->ne[0], Hi = q->ne[1], S = q->ne[2];
    if (!(D == 64 || D == 128) || !(Hi == 16 || Hi == 32 || Hi == 64) || S > 65535) return false;
    if (k->type != GLM_TYPE_BF16 && k->type != GLM_TYPE_F8_E4M3) return false;
    if (int64_t(k->nb[0]) != (k->type == GLM_TYPE_BF16 ? 2 : 1)) return false;
    return reinterpret_cast<uintptr_t>(k->data) % 16 == 0 && int64_t(k->nb[1]) % 16 == 0;
}

void launch_indexer_mma(CudaContext& ctx, const IndexerParams& p, bool f8) {
    const int64_t n_sm = ctx.n_sm > 0 ? ctx.n_sm : 132;
    const int64_t steps = ceil_div(p.T, kMmaKeysPerStep);
    // Blocks per query from the graph's T: ~2 blocks per SM, at most 8 steps (2048 keys) per block
    // when every key is live; the kernel cuts the live keys [0, T_eff) into this many ranges.
    const int64_t per_block = std::min<int64_t>(8, std::max<int64_t>(1, ceil_div(steps * p.S, 2 * n_sm)));
    const dim3 grid(unsigned(ceil_div(steps, per_block)), unsigned(p.S));
    if (p.D == 128)
        launch_indexer_mma_d<4>(ctx, p, f8, grid);
    else
        launch_indexer_mma_d<2>(ctx, p, f8, grid);
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
    p.weight_scale = dst->params[1].f;
    if (indexer_mma_ok(q, k)) {
        launch_indexer_mma(ctx, p, k->type == GLM_TYPE_F8_E4M3);
        return;
    }
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
    const glm_tensor* q_pos = dst->src[1];  // optional: candidates 0..q_pos[c] of column c
    const int64_t n = a->ne[0], ncols = a->ne[1];
    const int k = dst->params[0].i;
    GLM_ASSERT(dst->type == GLM_TYPE_I32 && dst->ne[0] == k && dst->ne[1] == ncols);
    GLM_ASSERT(k >= 1 && k <= n && n < INT_MAX && ncols < INT_MAX);
    GLM_ASSERT(!q_pos || (q_pos->type == GLM_TYPE_I32 && q_pos->ne[0] >= ncols));
    if (n > kMaxCand && k > kMaxCand) GLM_ABORT("cuda top_k: k = {} > {} is not supported (n = {})", k, kMaxCand, n);
    if (ncols == 0) return;
    TopkParams p;
    p.a = tensor_view(a);
    p.dst = tensor_view(dst);
    p.q_pos = q_pos ? tensor_view(q_pos) : TensorView{};
    p.has_qpos = q_pos ? 1 : 0;
    p.n = int(n);
    p.k = k;
    p.pow2 = 1;
    while (p.pow2 < k) p.pow2 <<= 1;
    p.by_index = dst->params[1].i;
    const bool multi_block = n > kMaxCand && ncols <= kMbMaxCols && a->type == GLM_TYPE_F32 && a->nb[0] == 4 &&
                             reinterpret_cast<uintptr_t>(a->data) % 16 == 0 && (ncols == 1 || a->nb[1] % 16 == 0);
    if (!multi_block) {
        cuda_launch(ctx.stream, top_k_kernel<false>, unsigned(ncols), kTopkThreads, 0, p);
        return;
    }
    const int64_t n_sm = ctx.n_sm > 0 ? ctx.n_sm : 132;
    // ~8 elements per thread per pass, at most ~4 blocks per SM over all columns
    const int64_t nb = std::max<int64_t>(1, std::min<int64_t>(ceil_div(n, 8 * kTopkThreads), 4 * n_sm / ncols));
    const dim3 grid{unsigned(nb), unsigned(ncols)};
    cuda_launch(ctx.stream, topk_mb_zero, unsigned(ncols), kTopkThreads, 0);
    cuda_launch(ctx.stream, topk_mb_hist<0>, grid, kTopkThreads, 0, p);
    cuda_launch(ctx.stream, topk_mb_hist<1>, grid, kTopkThreads, 0, p);
    cuda_launch(ctx.stream, topk_mb_collect, grid, kTopkThreads, 0, p);
    cuda_launch(ctx.stream, top_k_kernel<true>, unsigned(ncols), kTopkThreads, 0, p);
}
