// GLM_OP_ATTN: causal attention with an optional key subset, flash-decoding style.
//
// One block of kThreads handles (a group of G heads, one query s, one split of the key list).
// The key list of query s is the causal range [0, T_eff) with T_eff = min(q_pos[s] + 1, T) or, with
// key_ids, the column key_ids[:, s]; entries < 0, > q_pos[s] or >= T are skipped. A column may list
// a slot twice, so arbitrary key_ids are sorted and de-duplicated in shared memory -- except when
// the column is distinct by construction (key_ids made by GLM_OP_TOP_K or by GLM_OP_TOPK_MERGE over a
// top-k list, or a view of either that keeps each column inside one of its columns: the decode
// graph's case): then the raw column is walked
// as it is, with no sort and no duplicate check, which is what makes a 2048-entry decode column cheap.
// The work is bounded at run time: the host fixes only the number of splits (from T or n_sel and
// the SM count, so a graph built once for the whole context can be replayed at every position).
// Dense and sorted lists are cut on the device: each block reads q_pos[s] and cuts the live part
// -- [0, T_eff), or the sorted ids in [0, q_pos[s]] -- into n_split equal ranges, so a short context
// still spreads over every split and no row at or past T_eff is read. Raw key_ids columns are cut
// into equal ranges by the host (split_len). A split left without keys writes an empty partial
// (max -inf, sum 0); skipped entries cost no K/V reads (and attn_fast_kernel skips whole tiles of
// them: the -1 tail of a top-k column).
// Each block walks its range in tiles of kTile keys with an online softmax per head (f32, max
// subtraction):
//   1. scores: each warp takes tile keys, its lanes stride over Dk (K read once per group) and
//      the G dot products with q (kept in shared memory) are warp-reduced;
//   2. softmax update: one warp per head rescales the running (max, sum);
//   3. values: each thread owns output dims d = tid, tid + kThreads and all G heads.
// G > 1 only for MQA (Hk == 1, the absorbed-MLA decode form): the heads of a group share every K
// and V row they read. With n_split == 1 the block writes the normalised output; otherwise it
// writes a partial (max, sum, acc[Dv]) and attn_combine_kernel merges the splits by log-sum-exp.
//
// Scratch: the partials live in a static __device__ array (kScratchFloats floats, 8 MiB, made
// when the module loads, never at run time), addressed by the kernels directly (no host symbol
// lookup: launches stay legal inside stream capture). n_split is capped so that
// S * H * n_split * (Dv + 2) fits: e.g. H = 64, Dv = 512, S = 1 allows 63 splits, S = 16 allows 3;
// big prefill batches get n_split = 1 (no partials at all). Limits: Dv <= 512; key_ids columns of
// more than kSortIds entries that are not distinct by construction fall back to an O(n_sel)
// duplicate scan per key (correct, slow).
//
// Absorbed-MLA decode (Hk == 1, Dk 576, Dv 512, H % 16 == 0, bf16 or e4m3 cache rows shared by k and
// v) takes the tensor-core path attn_fast_kernel instead (see its comment; bf16 q and P).
//
// glm_attn_part (p.i[1] == 1) also writes, after each row's Dv outputs, ln(sum_t e^(scale q.k_t)) over
// the visible keys: m + ln(l) of the final running pair, by the single-split writers of both kernels
// and by the combine (M + ln(L) of the merged pair); -inf for a query with no visible key. The rows
// of dst are then Dv + 1 floats apart: every writer addresses dst through its strides.
#include <algorithm>
#include <climits>

#include <cuda_fp8.h>

#include "cuda/attn.cuh"

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kTile = 32;                        // keys per tile: one per lane in the softmax step
constexpr int kMaxDv = 512;
constexpr int kDPerThread = kMaxDv / kThreads;   // output dims per thread
constexpr int kSortIds = 4096;                   // key_ids columns up to this long are sorted in smem
constexpr int kMaxSplit = 256;                   // combine kernel: one weight per split in smem
constexpr int kMinKeysPerSplit = 64;
constexpr int64_t kScratchFloats = int64_t(2) << 20;  // 8 MiB of partials

static_assert(kMaxDv % kThreads == 0 && kTile == 32, "tile and output layout");

__device__ float g_attn_partials[kScratchFloats];


__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

struct AttnParams {
    TensorView q;        // F32 [Dk, H, S]
    TensorView k;        // [Dk, Hk, T] any float type
    TensorView v;        // [Dv, Hk, T] any float type
    TensorView q_pos;    // I32 [S]
    TensorView key_ids;  // I32 [n_sel, S] (n_sel == 0: dense causal)
    TensorView dst;      // F32 [Dv, H, S], or [Dv + 1, H, S] with with_lse
    int Dk, Dv, H, S, T, n_sel;
    int k_shared;        // Hk == 1
    int n_groups;        // ceil(H / G)
    int n_split;         // splits per (head group, query): fixed by the host from T / n_sel
    int split_len;       // raw key_ids walk only: list positions per split (the rest size it on device)
    int ids_pow2;        // sorted key_ids path: padded length of the smem id array (0: not sorted)
    int ids_distinct;    // key_ids columns list each slot at most once (TOP_K): raw walk, no duplicate scan
    int with_lse;        // glm_attn_part: dst[Dv, h, s] = ln(sum of e^score) over the visible keys
    float scale;
};

// The log-sum-exp of a (max m, sum l of e^(x - m)) pair; a query with no visible key gets -inf.
// Every kernel here keeps its running max in natural-log units (expf of scaled logits).
__device__ __forceinline__ float lse_of(float m, float l) { return l > 0.0f ? m + logf(l) : neg_inf(); }

// Partials of split sp of (h, s): (max, sum) at part_ml[2 * i], acc[Dv] at part_acc[i * Dv] with
// i = (s * H + h) * n_split + sp.
__device__ __forceinline__ float* part_ml(const AttnParams&) { return g_attn_partials; }
__device__ __forceinline__ float* part_acc(const AttnParams& p) {
    return g_attn_partials + 2 * int64_t(p.H) * p.S * p.n_split;
}

// First index of the ascending a[0, n) holding a value > x (n if none).
__device__ __forceinline__ int upper_bound_sorted(const int* a, int n, int x) {
    int lo = 0, hi = n;
    while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if (a[mid] <= x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

// The list positions [x, y) that split sp of query s walks (block-uniform; call after the sorted
// ids are in shared memory). The live list is [0, T_eff) (dense), the ids in [0, pos]
// (sorted key_ids: after sorting they sit together, after the negative ones), or all n_sel entries
// (raw key_ids walk: the host's split_len). Live ranges are cut into n_split pieces of a multiple of
// `granule` positions and at least min_len, so a short live list uses fewer, fuller splits.
__device__ __forceinline__ int2 split_range(const AttnParams& p, const int* ids_s, int pos, int sp, int granule,
                                            int min_len) {
    // int arithmetic: n_split * (a range) <= list length + n_split * granule < INT_MAX (host check)
    if (p.n_sel && !p.ids_pow2) {
        const int b = sp * p.split_len;
        return make_int2(min(b, p.n_sel), min(b + p.split_len, p.n_sel));
    }
    int lo = 0, hi = pos < 0 ? 0 : pos >= p.T ? p.T : pos + 1;  // dense: T_eff of this query
    if (p.n_sel) {
        lo = upper_bound_sorted(ids_s, p.n_sel, -1);
        hi = upper_bound_sorted(ids_s, p.n_sel, pos);
    }
    int per = (hi - lo + p.n_split - 1) / p.n_split;
    per = max((per + granule - 1) / granule * granule, min_len);
    const int b = lo + sp * per;
    return make_int2(min(b, hi), min(b + per, hi));
}

// Slot of list position j of query s, or -1 if the entry is skipped.
__device__ __forceinline__ int list_key(const AttnParams& p, const int* ids_s, int j, int s, int pos) {
    if (p.n_sel == 0) return j;  // dense: j < T_eff by split_range
    if (p.ids_pow2) {
        const int t = ids_s[j];
        if (t < 0 || t > pos || t >= p.T) return -1;
        return (j > 0 && ids_s[j - 1] == t) ? -1 : t;
    }
    const int t = load_i32_at(p.key_ids, j, s);
    if (t < 0 || t > pos || t >= p.T) return -1;
    if (!p.ids_distinct)
        for (int i = 0; i < j; ++i)
            if (load_i32_at(p.key_ids, i, s) == t) return -1;
    return t;
}

// Column s of key_ids into shared memory, padded with INT_MAX to ids_pow2 and sorted ascending by a
// block-wide bitonic sort, so duplicates become neighbours and list_key can skip them.
__device__ void sort_key_ids(const AttnParams& p, int s, int tid, int* ids_s) {
    for (int i = tid; i < p.ids_pow2; i += kThreads) ids_s[i] = i < p.n_sel ? load_i32_at(p.key_ids, i, s) : INT_MAX;
    __syncthreads();
    for (int size = 2; size <= p.ids_pow2; size <<= 1)
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = tid; i < p.ids_pow2; i += kThreads) {
                const int l = i ^ stride;
                if (l > i) {
                    const int a = ids_s[i], c = ids_s[l];
                    if (((i & size) == 0) == (a > c)) {
                        ids_s[i] = c;
                        ids_s[l] = a;
                    }
                }
            }
            __syncthreads();
        }
}

template <int G>
__global__ void __launch_bounds__(kThreads) attn_kernel(AttnParams p) {
    grid_dependency_wait();
    extern __shared__ float smem[];
    float* q_s = smem;                 // [G][Dk]
    float* sc_s = q_s + G * p.Dk;      // [G][kTile] scores, then probabilities
    float* m_s = sc_s + G * kTile;     // [G] running max
    float* l_s = m_s + G;              // [G] running sum
    float* alpha_s = l_s + G;          // [G] rescale of this tile
    int* keys_s = reinterpret_cast<int*>(alpha_s + G);  // [kTile] slots of this tile (-1: skip)
    int* ids_s = keys_s + kTile;       // [ids_pow2] sorted key_ids column

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    int64_t b = blockIdx.x;
    const int sp = int(b % p.n_split);
    b /= p.n_split;
    const int gi = int(b % p.n_groups);
    const int s = int(b / p.n_groups);
    const int h0 = gi * G;
    const int kh = p.k_shared ? 0 : h0;  // G == 1 when heads have their own K/V
    const int pos = load_i32_at(p.q_pos, s);

    for (int i = tid; i < G * p.Dk; i += kThreads) {
        const int g = i / p.Dk, c = i - g * p.Dk;
        q_s[i] = h0 + g < p.H ? load_at(p.q, c, h0 + g, s) : 0.0f;
    }
    if (tid < G) {
        m_s[tid] = neg_inf();
        l_s[tid] = 0.0f;
    }
    if (p.ids_pow2) sort_key_ids(p, s, tid, ids_s);
    __syncthreads();
    // One thread finds the range and shares it: computed by every thread it costs G = 1 a spill.
    __shared__ int2 range_s;
    if (tid == 0) range_s = split_range(p, ids_s, pos, sp, 1, kMinKeysPerSplit);
    __syncthreads();
    const int j_begin = range_s.x, j_end = range_s.y;

    float acc[G][kDPerThread];
#pragma unroll
    for (int g = 0; g < G; ++g)
#pragma unroll
        for (int i = 0; i < kDPerThread; ++i) acc[g][i] = 0.0f;

    for (int j0 = j_begin; j0 < j_end; j0 += kTile) {  // block-uniform trip count
        if (tid < kTile) keys_s[tid] = j0 + tid < j_end ? list_key(p, ids_s, j0 + tid, s, pos) : -1;
        __syncthreads();

        // 1. scores
        for (int jj = warp; jj < kTile; jj += kWarps) {
            const int t = keys_s[jj];  // warp-uniform
            if (t < 0) {
                if (lane < G) sc_s[lane * kTile + jj] = neg_inf();
                continue;
            }
            const uint8_t* krow = p.k.data + int64_t(t) * p.k.nb[2] + int64_t(kh) * p.k.nb[1];
            float part[G];
#pragma unroll
            for (int g = 0; g < G; ++g) part[g] = 0.0f;
            for (int c = lane; c < p.Dk; c += 32) {
                const float kv = load_float(p.k.type, krow + int64_t(c) * p.k.nb[0]);
#pragma unroll
                for (int g = 0; g < G; ++g) part[g] = fmaf(q_s[g * p.Dk + c], kv, part[g]);
            }
#pragma unroll
            for (int g = 0; g < G; ++g) {
                const float d = warp_sum(part[g]);
                if (lane == g) sc_s[g * kTile + jj] = d * p.scale;
            }
        }
        __syncthreads();

        // 2. online softmax: one warp per head, one lane per tile key
        for (int g = warp; g < G; g += kWarps) {
            const float x = sc_s[g * kTile + lane];
            const float m_old = m_s[g];
            const float m_new = fmaxf(m_old, warp_max(x));
            float pj = 0.0f, alpha = 1.0f;
            if (m_new != neg_inf()) {
                pj = expf(x - m_new);
                alpha = expf(m_old - m_new);
            }
            sc_s[g * kTile + lane] = pj;
            const float ps = warp_sum(pj);
            __syncwarp();  // every lane has read m_s[g] before lane 0 replaces it
            if (lane == 0) {
                m_s[g] = m_new;
                l_s[g] = l_s[g] * alpha + ps;
                alpha_s[g] = alpha;
            }
        }
        __syncthreads();

        // 3. values
#pragma unroll
        for (int g = 0; g < G; ++g) {
            const float a = alpha_s[g];
#pragma unroll
            for (int i = 0; i < kDPerThread; ++i) acc[g][i] *= a;
        }
        for (int jj = 0; jj < kTile; ++jj) {
            const int t = keys_s[jj];  // block-uniform
            if (t < 0) continue;
            const uint8_t* vrow = p.v.data + int64_t(t) * p.v.nb[2] + int64_t(kh) * p.v.nb[1];
#pragma unroll
            for (int i = 0; i < kDPerThread; ++i) {
                const int d = tid + i * kThreads;
                if (d < p.Dv) {
                    const float vv = load_float(p.v.type, vrow + int64_t(d) * p.v.nb[0]);
#pragma unroll
                    for (int g = 0; g < G; ++g) acc[g][i] = fmaf(sc_s[g * kTile + jj], vv, acc[g][i]);
                }
            }
        }
        __syncthreads();  // keys_s / sc_s are rewritten by the next tile
    }

#pragma unroll
    for (int g = 0; g < G; ++g) {
        const int h = h0 + g;
        if (h >= p.H) break;
        const float l = l_s[g];
        if (p.n_split == 1) {
#pragma unroll
            for (int i = 0; i < kDPerThread; ++i) {
                const int d = tid + i * kThreads;
                if (d < p.Dv)
                    *reinterpret_cast<float*>(const_cast<uint8_t*>(elem_ptr(p.dst, d, h, s, 0))) =
                        l > 0.0f ? acc[g][i] / l : 0.0f;
            }
            if (p.with_lse && tid == 0) store_f32_at(p.dst, lse_of(m_s[g], l), p.Dv, h, s);
        } else {
            const int64_t pi = (int64_t(s) * p.H + h) * p.n_split + sp;
            if (tid == 0) {
                part_ml(p)[2 * pi] = m_s[g];
                part_ml(p)[2 * pi + 1] = l;
            }
            float* pa = part_acc(p) + pi * p.Dv;
            const bool empty = m_s[g] == neg_inf();  // an empty split: the combine never reads its acc
#pragma unroll
            for (int i = 0; i < kDPerThread; ++i) {
                const int d = tid + i * kThreads;
                if (d < p.Dv && !empty) pa[d] = acc[g][i];
            }
        }
    }
}

// ---- Tensor-core MQA decode path (absorbed MLA: Hk == 1, Dk = 576, Dv = 512, V = first Dv dims of
// the K rows) -----------------------------------------------------------------------------------
// One block of 256 threads = (16 heads, one query s, one split of the key list). q is rounded to
// bf16 in shared memory once, while the first key tile is in flight; key tiles of kFKeys rows are
// streamed by cp.async into a 2-stage ring (f8 rows are fetched raw and widened to bf16 in place).
// Per tile with at least one live key:
//   S = Q K^T   warp w: keys [8w, 8w+8) x 16 heads, mma.m16n8k16 over Dk (K tile is the B operand);
//   softmax     warp w: heads 2w, 2w+1 (f32 running max / sum; P rounded to bf16, and the sum
//               is taken over the rounded P so the weights stay normalised);
//   O += P V    warp w: output dims [64w, 64w+64) x 16 heads (V fragments by ldmatrix.trans).
// Partials go to the same scratch layout as attn_kernel; attn_combine_kernel merges them.
constexpr int kFHeads = 16;
constexpr int kFKeys = 64;
// Key tiles per split at least (a split also pays for staging q). One tile: decode at TP 4 (16 heads,
// 2,048 selected keys) runs 32 splits instead of 16; the block's serial chain (stage q, fetch the tile,
// scores, softmax, P V) is latency-bound, so halving it paid more than the extra partials cost (one
// TP = 4 rank on an H100: decode 622 -> 653 tok/s at 256, 537 -> 562 at 4k). GLM_ATTN_MIN_TILES
// overrides it at build time, for A/B runs (scripts/gpu-rank4.sh --variant).
#ifndef GLM_ATTN_MIN_TILES
#define GLM_ATTN_MIN_TILES 1
#endif
constexpr int kFMinTiles = GLM_ATTN_MIN_TILES;
// Build knob for A/B runs: -DGLM_ATTN_ONE_STAGE=0 keeps prefill on the two-stage block.
#ifndef GLM_ATTN_ONE_STAGE
#define GLM_ATTN_ONE_STAGE 1
#endif
constexpr int kFDk = 576;
constexpr int kFDv = 512;
constexpr int kFKs = kFDk + 8;  // smem row stride (bf16): 1168 B, ldmatrix conflict-free
constexpr int kFSs = kFKeys + 4;
constexpr int kFPs = kFKeys + 8;
// Shared memory of a block with ST key stages: K tiles, q, scores, P, softmax stats, tile keys, ids.
template <int ST>
struct FastSmem {
    static constexpr size_t kOffQ = size_t(ST) * kFKeys * kFKs * 2;
    static constexpr size_t kOffS = kOffQ + size_t(kFHeads) * kFKs * 2;
    static constexpr size_t kOffP = kOffS + size_t(kFHeads) * kFSs * 4;
    static constexpr size_t kOffStat = kOffP + size_t(kFHeads) * kFPs * 2;  // alpha, m, l: 3 x 16 floats
    static constexpr size_t kOffKeys = kOffStat + 3 * kFHeads * 4;
    static constexpr size_t kOffIds = kOffKeys + size_t(ST) * kFKeys * 4;
    static_assert(kOffQ % 16 == 0 && kOffS % 16 == 0 && kOffP % 16 == 0 && kOffKeys % 16 == 0 && kOffIds % 16 == 0,
                  "smem alignment");
};
static_assert(kThreads == 256 && kFDv == 64 * kWarps && kFKeys == 8 * kWarps && kFHeads == 2 * kWarps, "fast layout");

__device__ __forceinline__ uint32_t smem_addr(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr)
                 : "memory");
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr)
                 : "memory");
}
__device__ __forceinline__ void mma_bf16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Two e4m3 bytes -> packed bf16x2 (exact: every e4m3 value is a bf16 value).
__device__ __forceinline__ uint32_t e4m3x2_to_bf16x2(uint16_t v) {
    const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(v), __NV_E4M3);
    const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&h));
    const __nv_bfloat162 b = __float22bfloat162_rn(f);
    return *reinterpret_cast<const uint32_t*>(&b);
}

// kStages = 2: the next key tile is fetched while this one is computed, one block per SM (~175 KB) --
// decode, where a few blocks per SM is all there is. kStages = 1 (~101 KB): two blocks per SM, each
// fetching its next tile only after computing this one -- prefill chunks, thousands of blocks: the
// block is bound by the latency of its shared-memory and MMA chains (2 warps per scheduler left
// 69% of issue cycles without an eligible warp, Nsight Compute on an H100), and the second block's
// warps fill those cycles.
template <bool kF8, int kStages>
__global__ void __launch_bounds__(kThreads, kStages == 1 ? 2 : 1) attn_fast_kernel(AttnParams p) {
    grid_dependency_wait();
    using L = FastSmem<kStages>;
    extern __shared__ __align__(16) uint8_t fsm[];
    __nv_bfloat16* k_s = reinterpret_cast<__nv_bfloat16*>(fsm);  // [kStages][kFKeys][kFKs]
    __nv_bfloat16* q_s = reinterpret_cast<__nv_bfloat16*>(fsm + L::kOffQ);  // [16][kFKs]
    float* sc_s = reinterpret_cast<float*>(fsm + L::kOffS);  // [16][kFSs]
    __nv_bfloat16* p_s = reinterpret_cast<__nv_bfloat16*>(fsm + L::kOffP);  // [16][kFPs]
    float* alpha_s = reinterpret_cast<float*>(fsm + L::kOffStat);
    float* m_s = alpha_s + kFHeads;
    float* l_s = m_s + kFHeads;
    int* keys_s = reinterpret_cast<int*>(fsm + L::kOffKeys);  // [kStages][kFKeys]
    int* ids_s = reinterpret_cast<int*>(fsm + L::kOffIds);

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    int64_t b = blockIdx.x;
    const int gi = int(b % p.n_groups);  // head tile fastest: the tiles of one split share K rows in L2
    b /= p.n_groups;
    const int sp = int(b % p.n_split);
    const int s = int(b / p.n_split);
    const int h0 = gi * kFHeads;
    const int pos = load_i32_at(p.q_pos, s);

    if (p.ids_pow2) sort_key_ids(p, s, tid, ids_s);  // ends with a barrier: ids_s is visible
    const int2 range = split_range(p, ids_s, pos, sp, kFKeys, kFMinTiles * kFKeys);  // whole key tiles
    const int j_begin = range.x, j_end = range.y;
    const int n_tiles = j_end > j_begin ? (j_end - j_begin + kFKeys - 1) / kFKeys : 0;

    // Issue the copies of tile `it` into stage it % kStages (rows of skipped slots are zero-filled).
    auto load_tile = [&](int it) {
        const int st = it % kStages, j0 = j_begin + it * kFKeys;
        if (tid < kFKeys) keys_s[st * kFKeys + tid] = j0 + tid < j_end ? list_key(p, ids_s, j0 + tid, s, pos) : -1;
        const uint32_t base = smem_addr(k_s + size_t(st) * kFKeys * kFKs);
        constexpr int kChunks = kF8 ? kFDk / 16 : kFDk * 2 / 16;  // 16-byte chunks per row
        constexpr int kPer = kFKeys * kChunks / kThreads;
        static_assert(kFKeys * kChunks % kThreads == 0, "chunks per thread");
#pragma unroll
        for (int i = 0; i < kPer; ++i) {
            const int c = tid + i * kThreads, r = c / kChunks, cc = c - r * kChunks;
            const int t = j0 + r < j_end ? list_key(p, ids_s, j0 + r, s, pos) : -1;
            const uint8_t* src = t >= 0 ? p.k.data + int64_t(t) * p.k.nb[2] + cc * 16 : p.k.data;
            const uint32_t dst = base + uint32_t(r * kFKs * 2 + (kF8 ? kFDk : 0) + cc * 16);
            cp_async16(dst, src, t >= 0);
        }
        cp_async_commit();
    };

    float acc[8][4];
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[j][i] = 0.0f;
    float m_r[2] = {neg_inf(), neg_inf()}, l_r[2] = {0.0f, 0.0f};  // heads 2w, 2w+1 (softmax warps)

    const int g = lane >> 2, tig = lane & 3;
    const int a_row = (lane & 7) + ((lane >> 3) & 1) * 8, a_col = (lane >> 4) * 8;  // ldmatrix A lanes
    const uint32_t q_base = smem_addr(q_s);
    const uint32_t p_base = smem_addr(p_s);

    if (n_tiles > 0) load_tile(0);  // in flight while q is staged
    // q of the 16 heads (36 KB of f32): float4 loads when the rows allow them, 9 independent loads
    // per thread in flight at once (element by element through load_at, each of 36 loads waits on a
    // type switch and index arithmetic; the kernel measured ~30 us per decode step even with no key).
    const bool q_vec = p.q.type == GLM_TYPE_F32 && p.q.nb[0] == 4 && p.q.nb[1] % 16 == 0 && p.q.nb[2] % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(p.q.data) % 16 == 0;
    if (q_vec) {
        constexpr int kVecs = kFDk / 4;
        const uint8_t* q_row0 = p.q.data + int64_t(s) * p.q.nb[2] + int64_t(h0) * p.q.nb[1];
        for (int i = tid; i < kFHeads * kVecs; i += kThreads) {
            const int hi = i / kVecs, c4 = i - hi * kVecs;
            const float4 v = *reinterpret_cast<const float4*>(q_row0 + int64_t(hi) * p.q.nb[1] + c4 * 16);
            __nv_bfloat162* dst = reinterpret_cast<__nv_bfloat162*>(q_s + hi * kFKs + 4 * c4);
            dst[0] = __floats2bfloat162_rn(v.x, v.y);
            dst[1] = __floats2bfloat162_rn(v.z, v.w);
        }
    } else {
        for (int i = tid; i < kFHeads * kFDk; i += kThreads) {
            const int hi = i / kFDk, c = i - hi * kFDk;
            q_s[hi * kFKs + c] = __float2bfloat16_rn(load_at(p.q, c, h0 + hi, s));
        }
    }
    for (int it = 0; it < n_tiles; ++it) {
        const int st = it % kStages;
        if (kStages == 1) {
            if (it > 0) load_tile(it);  // the last iteration's barrier freed the stage; tile 0 went out first
            cp_async_wait<0>();
        } else if (it + 1 < n_tiles) {
            load_tile(it + 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        // The barrier publishes tile `it` (and, the first time, q_s). A tile without a live key (the
        // -1 tail of a top-k column, ids past q_pos) leaves the running sums as they are: skip it.
        // keys_s[st] was written by these same threads in load_tile(it).
        if (!__syncthreads_or(tid < kFKeys && keys_s[st * kFKeys + tid] >= 0)) continue;
        __nv_bfloat16* kt = k_s + size_t(st) * kFKeys * kFKs;
        if (kF8) {  // widen the raw e4m3 bytes (at byte 576 of each row) to bf16 in place
            constexpr int kPer = kFKeys * (kFDk / 16) / kThreads;
            uint4 raw[kPer];
#pragma unroll
            for (int i = 0; i < kPer; ++i) {
                const int c = tid + i * kThreads, r = c / (kFDk / 16), cc = c - r * (kFDk / 16);
                raw[i] = *reinterpret_cast<const uint4*>(reinterpret_cast<const uint8_t*>(kt + r * kFKs) + kFDk + cc * 16);
            }
            __syncthreads();
#pragma unroll
            for (int i = 0; i < kPer; ++i) {
                const int c = tid + i * kThreads, r = c / (kFDk / 16), cc = c - r * (kFDk / 16);
                const uint32_t w[4] = {raw[i].x, raw[i].y, raw[i].z, raw[i].w};
                uint32_t o[8];
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    o[2 * e] = e4m3x2_to_bf16x2(uint16_t(w[e] & 0xffffu));
                    o[2 * e + 1] = e4m3x2_to_bf16x2(uint16_t(w[e] >> 16));
                }
                uint4* dst = reinterpret_cast<uint4*>(kt + r * kFKs + cc * 16);
                dst[0] = make_uint4(o[0], o[1], o[2], o[3]);
                dst[1] = make_uint4(o[4], o[5], o[6], o[7]);
            }
            __syncthreads();
        }
        const uint32_t k_base = smem_addr(kt);

        // 1. scores: this warp's 8 keys x 16 heads
        {
            float sacc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            const int kb = warp * 8;
            const uint32_t b_addr = k_base + uint32_t(((kb + (lane & 7)) * kFKs + (lane >> 3) * 8) * 2);
            const uint32_t a_addr = q_base + uint32_t((a_row * kFKs + a_col) * 2);
#pragma unroll 6
            for (int kk = 0; kk < kFDk / 32; ++kk) {
                uint32_t b0, b1, b2, b3, a0, a1, a2, a3;
                ldsm_x4(b_addr + kk * 64, b0, b1, b2, b3);
                ldsm_x4(a_addr + kk * 64, a0, a1, a2, a3);
                mma_bf16(sacc, a0, a1, a2, a3, b0, b1);
                ldsm_x4(a_addr + kk * 64 + 32, a0, a1, a2, a3);
                mma_bf16(sacc, a0, a1, a2, a3, b2, b3);
            }
            const int c0 = kb + tig * 2;
            const bool v0 = keys_s[st * kFKeys + c0] >= 0, v1 = keys_s[st * kFKeys + c0 + 1] >= 0;
            sc_s[g * kFSs + c0] = v0 ? sacc[0] * p.scale : neg_inf();
            sc_s[g * kFSs + c0 + 1] = v1 ? sacc[1] * p.scale : neg_inf();
            sc_s[(g + 8) * kFSs + c0] = v0 ? sacc[2] * p.scale : neg_inf();
            sc_s[(g + 8) * kFSs + c0 + 1] = v1 ? sacc[3] * p.scale : neg_inf();
        }
        __syncthreads();

        // 2. online softmax: warp w owns heads 2w, 2w+1; lane owns keys lane, lane + 32
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
            const int h = 2 * warp + hh;
            const float x0 = sc_s[h * kFSs + lane], x1 = sc_s[h * kFSs + lane + 32];
            const float m_new = fmaxf(m_r[hh], warp_max(fmaxf(x0, x1)));
            float alpha = 1.0f;
            __nv_bfloat16 p0 = __float2bfloat16_rn(0.0f), p1 = p0;
            if (m_new != neg_inf()) {
                alpha = expf(m_r[hh] - m_new);
                p0 = __float2bfloat16_rn(expf(x0 - m_new));
                p1 = __float2bfloat16_rn(expf(x1 - m_new));
            }
            p_s[h * kFPs + lane] = p0;
            p_s[h * kFPs + lane + 32] = p1;
            const float ps = warp_sum(__bfloat162float(p0) + __bfloat162float(p1));
            m_r[hh] = m_new;
            l_r[hh] = l_r[hh] * alpha + ps;
            if (lane == 0) alpha_s[h] = alpha;
        }
        __syncthreads();

        // 3. O += P V: this warp's 64 output dims x 16 heads
        {
            const float al0 = alpha_s[g], al1 = alpha_s[g + 8];
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                acc[j][0] *= al0;
                acc[j][1] *= al0;
                acc[j][2] *= al1;
                acc[j][3] *= al1;
            }
            const uint32_t v_addr =
                k_base + uint32_t((((lane & 7) + ((lane >> 3) & 1) * 8) * kFKs + warp * 64 + (lane >> 4) * 8) * 2);
#pragma unroll
            for (int ks = 0; ks < kFKeys / 16; ++ks) {
                uint32_t a0, a1, a2, a3;
                ldsm_x4(p_base + uint32_t((a_row * kFPs + ks * 16 + a_col) * 2), a0, a1, a2, a3);
#pragma unroll
                for (int np = 0; np < 4; ++np) {
                    uint32_t b0, b1, b2, b3;
                    ldsm_x4_t(v_addr + uint32_t((ks * 16 * kFKs + np * 16) * 2), b0, b1, b2, b3);
                    mma_bf16(acc[2 * np], a0, a1, a2, a3, b0, b1);
                    mma_bf16(acc[2 * np + 1], a0, a1, a2, a3, b2, b3);
                }
            }
        }
        __syncthreads();  // stage st, sc_s, p_s and alpha_s are rewritten next
    }

    if (lane == 0) {
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
            m_s[2 * warp + hh] = m_r[hh];
            l_s[2 * warp + hh] = l_r[hh];
        }
    }
    __syncthreads();
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        const int row = g + half * 8, h = h0 + row;
        const float l = l_s[row];
        if (p.n_split == 1) {
            const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
            for (int j = 0; j < 8; ++j)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int d = warp * 64 + j * 8 + tig * 2 + e;
                    *reinterpret_cast<float*>(const_cast<uint8_t*>(elem_ptr(p.dst, d, h, s, 0))) =
                        l > 0.0f ? acc[j][half * 2 + e] * inv : 0.0f;
                }
            // l sums the bf16-rounded P that weighed V: the lse matches the output's normalisation.
            if (p.with_lse && warp == 0 && tig == 0) store_f32_at(p.dst, lse_of(m_s[row], l), kFDv, h, s);
        } else {
            const int64_t pi = (int64_t(s) * p.H + h) * p.n_split + sp;
            if (warp == 0 && tig == 0) {
                part_ml(p)[2 * pi] = m_s[row];
                part_ml(p)[2 * pi + 1] = l;
            }
            if (m_s[row] == neg_inf()) continue;  // an empty split: the combine never reads its acc
            float* pa = part_acc(p) + pi * kFDv;
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                const int d = warp * 64 + j * 8 + tig * 2;
                *reinterpret_cast<float2*>(pa + d) = make_float2(acc[j][half * 2], acc[j][half * 2 + 1]);
            }
        }
    }
}

// Split merge for both paths: out = sum_sp e^(m_sp - M) acc_sp / sum_sp e^(m_sp - M) l_sp.
// Block (h, s) x 32 output dims; warps stride over the splits. Empty splits (m = -inf) weigh 0 and
// their acc is never read; a query with no visible key at all (M = -inf) gets zeros.
__global__ void __launch_bounds__(kThreads) attn_combine_kernel(AttnParams p) {
    grid_dependency_wait();
    __shared__ float w_s[kMaxSplit];
    __shared__ float red_s[kWarps][32];
    __shared__ float L_s, M_s;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int h = int(blockIdx.x % p.H), s = int(blockIdx.x / p.H);
    const int64_t base = (int64_t(s) * p.H + h) * p.n_split;
    const float* ml = part_ml(p);
    if (warp == 0) {
        float M = neg_inf();
        for (int sp = lane; sp < p.n_split; sp += 32) M = fmaxf(M, ml[2 * (base + sp)]);
        M = warp_max(M);
        float L = 0.0f;
        for (int sp = lane; sp < p.n_split; sp += 32) {
            const float m = ml[2 * (base + sp)];
            const float w = (M == neg_inf() || m == neg_inf()) ? 0.0f : expf(m - M);
            w_s[sp] = w;
            L += w * ml[2 * (base + sp) + 1];
        }
        L = warp_sum(L);
        if (lane == 0) {
            L_s = L;
            M_s = M;
        }
    }
    __syncthreads();
    const int d = blockIdx.y * 32 + lane;
    float a = 0.0f;
    if (d < p.Dv)
        for (int sp = warp; sp < p.n_split; sp += kWarps) {
            const float w = w_s[sp];
            if (w != 0.0f) a = fmaf(w, part_acc(p)[(base + sp) * p.Dv + d], a);
        }
    red_s[warp][lane] = a;
    __syncthreads();
    if (warp == 0 && d < p.Dv) {
        float t = 0.0f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) t += red_s[w][lane];
        const float L = L_s;
        *reinterpret_cast<float*>(const_cast<uint8_t*>(elem_ptr(p.dst, d, h, s, 0))) = L > 0.0f ? t / L : 0.0f;
    }
    if (p.with_lse && blockIdx.y == 0 && tid == 0) store_f32_at(p.dst, lse_of(M_s, L_s), p.Dv, h, s);
}

template <int G>
void launch_attn(CudaContext& ctx, const AttnParams& p, size_t smem) {
    static SmemOptIn opted_in;
    cuda_allow_smem(attn_kernel<G>, smem, ctx.device, opted_in);
    const int64_t blocks = int64_t(p.n_split) * p.n_groups * p.S;
    cuda_launch(ctx.stream, attn_kernel<G>, unsigned(blocks), kThreads, smem, p);
    CUDA_CHECK_LAUNCH();
    if (p.n_split > 1) {
        const dim3 combine_grid(unsigned(int64_t(p.H) * p.S), unsigned(ceil_div(p.Dv, 32)));
        cuda_launch(ctx.stream, attn_combine_kernel, combine_grid, kThreads, 0, p);
        CUDA_CHECK_LAUNCH();
    }
}


// The tensor-core path, when the operands fit it (see attn_fast_kernel); false: use attn_kernel.
bool try_attn_fast(CudaContext& ctx, AttnParams p, const glm_tensor* k, const glm_tensor* v, bool has_ids) {
    const bool f8 = k->type == GLM_TYPE_F8_E4M3;
    const size_t esize = f8 ? 1 : 2;
    if (!(k->type == GLM_TYPE_BF16 || f8) || v->type != k->type) return false;
    if (!p.k_shared || p.H % kFHeads != 0 || p.Dk != kFDk || p.Dv != kFDv) return false;
    if (p.k.nb[0] != int64_t(esize) || p.v.nb[0] != int64_t(esize)) return false;
    if (p.v.data != p.k.data || p.v.nb[2] != p.k.nb[2] || p.k.nb[2] % 16 != 0) return false;
    if (reinterpret_cast<uintptr_t>(p.k.data) % 16 != 0) return false;
    if (has_ids && !p.ids_pow2 && !p.ids_distinct) return false;  // long columns that need a duplicate scan
    const size_t ids_bytes = size_t(p.ids_pow2) * sizeof(int);
    const size_t smem2 = FastSmem<2>::kOffIds + ids_bytes, smem1 = FastSmem<1>::kOffIds + ids_bytes;
    static SmemOptIn opted_in[2][2];
    const size_t max_optin = cuda_smem_optin(ctx.device);
    if (smem1 > max_optin) return false;

    // One block per SM (~175 KB of smem): about n_sm blocks in all, as many splits as the longest
    // list (T or n_sel: the graph's shape, not the run-time length) fills with kFMinTiles key tiles
    // each, partials within the scratch. Bounded by kMaxSplit whatever T is. Dense and sorted lists:
    // split_range sizes the ranges from q_pos on the device. Raw (distinct) key_ids columns: cut
    // here into whole tiles. Decode at TP 4 (16 heads, S = 1, n_sel = 2048): 32 splits of 1 tile,
    // and the combine reads 32 partials per (head, query).
    p.n_groups = p.H / kFHeads;
    const int64_t n_list = std::max<int64_t>(has_ids ? p.n_sel : p.T, 1);
    const int64_t base_blocks = int64_t(p.n_groups) * p.S;
    int64_t n_split = std::max<int64_t>(std::max(ctx.n_sm, 1) / base_blocks, 1);
    n_split = std::min(n_split, ceil_div(n_list, kFMinTiles * kFKeys));
    n_split = std::min<int64_t>(n_split, kMaxSplit);
    n_split = std::min<int64_t>(n_split, kScratchFloats / (int64_t(p.H) * p.S * (p.Dv + 2)));
    n_split = std::max<int64_t>(n_split, 1);
    p.split_len = 0;
    if (has_ids && !p.ids_pow2) {
        p.split_len = int(ceil_div(ceil_div(n_list, n_split), kFKeys) * kFKeys);
        n_split = ceil_div(n_list, p.split_len);
    }
    p.n_split = int(n_split);
    const int64_t blocks = int64_t(p.n_split) * base_blocks;
    if (blocks >= int64_t(INT_MAX)) return false;

    // Enough blocks to give every SM two: one key stage each (see attn_fast_kernel).
    const bool one_stage = GLM_ATTN_ONE_STAGE && (blocks >= 2 * int64_t(ctx.n_sm) || smem2 > max_optin);
    const size_t smem = one_stage ? smem1 : smem2;
    auto kernel = one_stage ? (f8 ? attn_fast_kernel<true, 1> : attn_fast_kernel<false, 1>)
                            : (f8 ? attn_fast_kernel<true, 2> : attn_fast_kernel<false, 2>);
    cuda_allow_smem(kernel, smem, ctx.device, opted_in[f8][one_stage]);
    cuda_launch(ctx.stream, kernel, unsigned(blocks), kThreads, smem, p);
    CUDA_CHECK_LAUNCH();
    if (p.n_split > 1) {
        const dim3 combine_grid(unsigned(int64_t(p.H) * p.S), unsigned(ceil_div(p.Dv, 32)));
        cuda_launch(ctx.stream, attn_combine_kernel, combine_grid, kThreads, 0, p);
        CUDA_CHECK_LAUNCH();
    }
    return true;
}

// Does every column of key_ids list each slot at most once, by construction? True for the output of
// GLM_OP_TOP_K (indices of the k largest, -1 past the candidates), for the output of
// GLM_OP_TOPK_MERGE over such a list (it keeps some entries of each column in place and blanks the
// others with -1: a context-parallel rank's share of a merged top-k), and for a view of either whose
// every column lies inside one column of that output; false for anything else (a reshape that joins
// two top-k columns may repeat a slot, and topk_merge of an arbitrary list is as distinct as it).
bool key_ids_distinct(glm_tensor* key_ids) {
    const glm_tensor* root = glm_view_root(key_ids);
    if (root->op == GLM_OP_TOPK_MERGE) {
        if (!key_ids_distinct(root->src[0])) return false;
    } else if (root->op != GLM_OP_TOP_K) {
        return false;
    }
    if (root == key_ids) return true;
    const size_t col = root->nb[1], first = key_ids->view_offset % col;
    return key_ids->nb[0] == root->nb[0] && (key_ids->ne[1] == 1 || key_ids->nb[1] % col == 0) &&
           first + size_t(key_ids->ne[0]) * key_ids->nb[0] <= col;
}
}  // namespace

void cuda_op_attn(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* q = dst->src[0];
    const glm_tensor* k = dst->src[1];
    const glm_tensor* v = dst->src[2];
    const glm_tensor* q_pos = dst->src[3];
    glm_tensor* key_ids = dst->src[4];
    const int64_t Dk = q->ne[0], H = q->ne[1], S = q->ne[2], Hk = k->ne[1], T = k->ne[2], Dv = v->ne[0];
    GLM_ASSERT(q->type == GLM_TYPE_F32 && dst->type == GLM_TYPE_F32 && q_pos->type == GLM_TYPE_I32);
    GLM_ASSERT(k->ne[0] == Dk && v->ne[1] == Hk && v->ne[2] == T && (Hk == 1 || Hk == H));
    const int with_lse = dst->params[1].i == 1 ? 1 : 0;  // glm_attn_part
    GLM_ASSERT(dst->ne[0] == Dv + with_lse && dst->ne[1] == H && dst->ne[2] == S && q_pos->ne[0] >= S);
    if (Dv > kMaxDv) GLM_ABORT("cuda attn: Dv = {} > {} is not supported", Dv, kMaxDv);
    // split_range works in int: list lengths leave room for n_split rounded-up ranges
    GLM_ASSERT(T < INT_MAX - (1 << 20) && S < INT_MAX && H * S < INT_MAX && Dk > 0 && Dv > 0);
    const int64_t n_sel = key_ids ? key_ids->ne[0] : 0;
    if (key_ids)
        GLM_ASSERT(key_ids->type == GLM_TYPE_I32 && key_ids->ne[1] == S && n_sel > 0 && n_sel < INT_MAX - (1 << 20));
    if (H == 0 || S == 0 || Dv == 0) return;

    AttnParams p;
    p.q = tensor_view(q);
    p.k = tensor_view(k);
    p.v = tensor_view(v);
    p.q_pos = tensor_view(q_pos);
    p.key_ids = key_ids ? tensor_view(key_ids) : TensorView{};
    p.dst = tensor_view(dst);
    p.Dk = int(Dk);
    p.Dv = int(Dv);
    p.H = int(H);
    p.S = int(S);
    p.T = int(T);
    p.n_sel = int(n_sel);
    p.k_shared = Hk == 1 ? 1 : 0;
    p.with_lse = with_lse;
    p.scale = dst->params[0].f;

    // Heads per block: MQA groups share K/V reads; separate K/V heads get a block each.
    int G = 1;
    if (Hk == 1 && H > 1) G = H <= 4 ? 4 : H <= 8 ? 8 : 16;
    p.n_groups = int(ceil_div(H, G));

    p.ids_distinct = key_ids && key_ids_distinct(key_ids) ? 1 : 0;
    p.ids_pow2 = 0;
    if (key_ids && !p.ids_distinct && n_sel <= kSortIds) {
        p.ids_pow2 = 1;
        while (p.ids_pow2 < n_sel) p.ids_pow2 <<= 1;
    }
    if (try_attn_fast(ctx, p, k, v, key_ids != nullptr)) return;

    const size_t smem = (size_t(G) * size_t(Dk) + size_t(G) * kTile + 3 * size_t(G)) * sizeof(float) +
                        kTile * sizeof(int) + size_t(p.ids_pow2) * sizeof(int);
    if (smem > 96 * 1024) GLM_ABORT("cuda attn: Dk = {} needs {} B of shared memory (limit 96 KiB)", Dk, smem);

    // Splits: enough blocks to fill the GPU twice over, as many as the longest list (T or n_sel, the
    // graph's shape) fills with kMinKeysPerSplit keys each, partials that fit the static scratch;
    // bounded by kMaxSplit whatever T is. The ranges are sized on the device (split_range) except
    // for raw key_ids columns (distinct or unsorted), whose list is cut here.
    const int64_t n_list = std::max<int64_t>(key_ids ? n_sel : T, 1);
    const int64_t base_blocks = int64_t(p.n_groups) * S;
    int64_t n_split = ceil_div(2 * int64_t(std::max(ctx.n_sm, 1)), base_blocks);
    n_split = std::min(n_split, ceil_div(n_list, kMinKeysPerSplit));
    n_split = std::min<int64_t>(n_split, kMaxSplit);
    n_split = std::min<int64_t>(n_split, kScratchFloats / (H * S * (Dv + 2)));
    n_split = std::max<int64_t>(n_split, 1);
    p.split_len = int(ceil_div(n_list, n_split));
    p.n_split = int(ceil_div(n_list, p.split_len));
    GLM_ASSERT(int64_t(p.n_split) * p.n_groups * S < int64_t(UINT_MAX));
    // One split writes the output directly: only several splits need the partials scratch.
    GLM_ASSERT(p.n_split == 1 || int64_t(p.n_split) * H * S * (Dv + 2) <= kScratchFloats);

    switch (G) {
        case 1: launch_attn<1>(ctx, p, smem); break;
        case 4: launch_attn<4>(ctx, p, smem); break;
        case 8: launch_attn<8>(ctx, p, smem); break;
        default: launch_attn<16>(ctx, p, smem); break;
    }
}
