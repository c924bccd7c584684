// GLM_OP_ATTN: causal attention with an optional key subset, flash-decoding style.
//
// One block of kThreads handles (a group of G heads, one query s, one split of the key list).
// The key list of query s is the causal range [0, min(q_pos[s], T-1)] or, with key_ids, the
// column key_ids[:, s] (sorted and de-duplicated in shared memory; entries < 0, > q_pos[s] or
// >= T skipped). The list is cut into n_split equal ranges of positions; each block walks its range
// in tiles of kTile keys with an online softmax per head (f32, max subtraction):
//   1. scores: each warp takes tile keys, its lanes stride over Dk (K read once per group) and
//      the G dot products with q (kept in shared memory) are warp-reduced;
//   2. softmax update: one warp per head rescales the running (max, sum);
//   3. values: each thread owns output dims d = tid, tid + kThreads and all G heads.
// G > 1 only for MQA (Hk == 1, the absorbed-MLA decode form): the heads of a group share every K
// and V row they read. With n_split == 1 the block writes the normalised output; otherwise it
// writes a partial (max, sum, acc[Dv]) and attn_combine_kernel merges the splits by log-sum-exp.
//
// Scratch: the partials live in a static __device__ array (kScratchFloats floats, 8 MiB, made
// when the module loads, never at run time). n_split is capped so that S * H * n_split * (Dv + 2)
// fits: e.g. H = 64, Dv = 512, S = 1 allows 63 splits, S = 16 allows 3; big prefill batches get
// n_split = 1 (no partials at all). Limits: Dv <= 512; key_ids columns of more than kSortIds
// entries fall back to an O(n_sel) duplicate scan per key (correct, slow).
#include <algorithm>
#include <climits>

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

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

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
    TensorView dst;      // F32 [Dv, H, S]
    int Dk, Dv, H, S, T, n_sel;
    int k_shared;        // Hk == 1
    int n_groups;        // ceil(H / G)
    int n_split, split_len;  // list positions per split
    int ids_pow2;        // sorted key_ids path: padded length of the smem id array (0: not sorted)
    float scale;
    float* part_ml;      // [(s * H + h) * n_split + sp] x (max, sum)
    float* part_acc;     // same index x Dv
};

__device__ __forceinline__ int32_t load_i32(const TensorView& t, int64_t i0, int64_t i1 = 0) {
    return *reinterpret_cast<const int32_t*>(elem_ptr(t, i0, i1, 0, 0));
}

// Slot of list position j of query s, or -1 if the entry is skipped.
__device__ __forceinline__ int list_key(const AttnParams& p, const int* ids_s, int j, int s, int pos) {
    if (p.n_sel == 0) return j;  // dense: j < min(pos + 1, T) by the caller's range
    if (p.ids_pow2) {
        const int t = ids_s[j];
        if (t < 0 || t > pos || t >= p.T) return -1;
        return (j > 0 && ids_s[j - 1] == t) ? -1 : t;
    }
    const int t = load_i32(p.key_ids, j, s);
    if (t < 0 || t > pos || t >= p.T) return -1;
    for (int i = 0; i < j; ++i)
        if (load_i32(p.key_ids, i, s) == t) return -1;
    return t;
}

template <int G>
__global__ void __launch_bounds__(kThreads) attn_kernel(AttnParams p) {
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
    const int pos = load_i32(p.q_pos, s);

    for (int i = tid; i < G * p.Dk; i += kThreads) {
        const int g = i / p.Dk, c = i - g * p.Dk;
        q_s[i] = h0 + g < p.H ? load_at(p.q, c, h0 + g, s) : 0.0f;
    }
    if (tid < G) {
        m_s[tid] = neg_inf();
        l_s[tid] = 0.0f;
    }
    if (p.ids_pow2) {
        for (int i = tid; i < p.ids_pow2; i += kThreads) ids_s[i] = i < p.n_sel ? load_i32(p.key_ids, i, s) : INT_MAX;
        __syncthreads();
        // bitonic sort, ascending (duplicates become neighbours)
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
    __syncthreads();

    const int n_list = p.n_sel ? p.n_sel : max(0, min(pos + 1, p.T));
    const int j_begin = sp * p.split_len;
    const int j_end = min(n_list, j_begin + p.split_len);

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
        } else {
            const int64_t pi = (int64_t(s) * p.H + h) * p.n_split + sp;
            if (tid == 0) {
                p.part_ml[2 * pi] = m_s[g];
                p.part_ml[2 * pi + 1] = l;
            }
#pragma unroll
            for (int i = 0; i < kDPerThread; ++i) {
                const int d = tid + i * kThreads;
                if (d < p.Dv) p.part_acc[pi * p.Dv + d] = acc[g][i];
            }
        }
    }
}

// One block per (h, s): out = sum_sp e^(m_sp - M) acc_sp / sum_sp e^(m_sp - M) l_sp.
__global__ void __launch_bounds__(kThreads) attn_combine_kernel(AttnParams p) {
    __shared__ float w_s[kMaxSplit];
    const int h = int(blockIdx.x % p.H), s = int(blockIdx.x / p.H);
    const int64_t base = (int64_t(s) * p.H + h) * p.n_split;
    float M = neg_inf();
    for (int sp = 0; sp < p.n_split; ++sp) M = fmaxf(M, p.part_ml[2 * (base + sp)]);
    for (int sp = threadIdx.x; sp < p.n_split; sp += blockDim.x) {
        const float m = p.part_ml[2 * (base + sp)];
        w_s[sp] = (M == neg_inf() || m == neg_inf()) ? 0.0f : expf(m - M);
    }
    __syncthreads();
    float L = 0.0f;
    for (int sp = 0; sp < p.n_split; ++sp) L += w_s[sp] * p.part_ml[2 * (base + sp) + 1];
    for (int d = threadIdx.x; d < p.Dv; d += blockDim.x) {
        float a = 0.0f;
        for (int sp = 0; sp < p.n_split; ++sp) {
            const float w = w_s[sp];
            if (w != 0.0f) a = fmaf(w, p.part_acc[(base + sp) * p.Dv + d], a);
        }
        *reinterpret_cast<float*>(const_cast<uint8_t*>(elem_ptr(p.dst, d, h, s, 0))) = L > 0.0f ? a / L : 0.0f;
    }
}

constexpr int kMaxDevices = 64;

float* partials_ptr(int device) {
    static float* cached[kMaxDevices] = {};
    GLM_ASSERT(device >= 0 && device < kMaxDevices);
    if (!cached[device]) {
        void* ptr = nullptr;
        CUDA_CHECK(cudaGetSymbolAddress(&ptr, g_attn_partials));
        cached[device] = static_cast<float*>(ptr);
    }
    return cached[device];
}

template <int G>
void launch_attn(CudaContext& ctx, const AttnParams& p, size_t smem) {
    static int opted_in[kMaxDevices] = {};  // largest dynamic smem size set per device
    GLM_ASSERT(ctx.device >= 0 && ctx.device < kMaxDevices);
    if (smem > 48 * 1024 && int(smem) > opted_in[ctx.device]) {
        CUDA_CHECK(cudaFuncSetAttribute(attn_kernel<G>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
        opted_in[ctx.device] = int(smem);
    }
    const int64_t blocks = int64_t(p.n_split) * p.n_groups * p.S;
    attn_kernel<G><<<unsigned(blocks), kThreads, smem, ctx.stream>>>(p);
    CUDA_CHECK_LAUNCH();
    if (p.n_split > 1) {
        attn_combine_kernel<<<unsigned(int64_t(p.H) * p.S), kThreads, 0, ctx.stream>>>(p);
        CUDA_CHECK_LAUNCH();
    }
}

}  // namespace

void cuda_op_attn(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* q = dst->src[0];
    const glm_tensor* k = dst->src[1];
    const glm_tensor* v = dst->src[2];
    const glm_tensor* q_pos = dst->src[3];
    const glm_tensor* key_ids = dst->src[4];
    const int64_t Dk = q->ne[0], H = q->ne[1], S = q->ne[2], Hk = k->ne[1], T = k->ne[2], Dv = v->ne[0];
    GLM_ASSERT(q->type == GLM_TYPE_F32 && dst->type == GLM_TYPE_F32 && q_pos->type == GLM_TYPE_I32);
    GLM_ASSERT(k->ne[0] == Dk && v->ne[1] == Hk && v->ne[2] == T && (Hk == 1 || Hk == H));
    GLM_ASSERT(dst->ne[0] == Dv && dst->ne[1] == H && dst->ne[2] == S && q_pos->ne[0] >= S);
    if (Dv > kMaxDv) GLM_ABORT("cuda attn: Dv = {} > {} is not supported", Dv, kMaxDv);
    GLM_ASSERT(T < INT_MAX && S < INT_MAX && H * S < INT_MAX && Dk > 0 && Dv > 0);
    const int64_t n_sel = key_ids ? key_ids->ne[0] : 0;
    if (key_ids) GLM_ASSERT(key_ids->type == GLM_TYPE_I32 && key_ids->ne[1] == S && n_sel > 0 && n_sel < INT_MAX);
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
    p.scale = dst->params[0].f;

    // Heads per block: MQA groups share K/V reads; separate K/V heads get a block each.
    int G = 1;
    if (Hk == 1 && H > 1) G = H <= 4 ? 4 : H <= 8 ? 8 : 16;
    p.n_groups = int(ceil_div(H, G));

    p.ids_pow2 = 0;
    if (key_ids && n_sel <= kSortIds) {
        p.ids_pow2 = 1;
        while (p.ids_pow2 < n_sel) p.ids_pow2 <<= 1;
    }
    const size_t smem = (size_t(G) * size_t(Dk) + size_t(G) * kTile + 3 * size_t(G)) * sizeof(float) +
                        kTile * sizeof(int) + size_t(p.ids_pow2) * sizeof(int);
    if (smem > 96 * 1024) GLM_ABORT("cuda attn: Dk = {} needs {} B of shared memory (limit 96 KiB)", Dk, smem);

    // Splits: enough blocks to fill the GPU twice over, at least kMinKeysPerSplit keys each,
    // and partials that fit the static scratch.
    const int64_t n_list = key_ids ? n_sel : T;
    const int64_t base_blocks = int64_t(p.n_groups) * S;
    int64_t n_split = ceil_div(2 * int64_t(std::max(ctx.n_sm, 1)), base_blocks);
    n_split = std::min(n_split, ceil_div(std::max<int64_t>(n_list, 1), kMinKeysPerSplit));
    n_split = std::min<int64_t>(n_split, kMaxSplit);
    n_split = std::min<int64_t>(n_split, kScratchFloats / (H * S * (Dv + 2)));
    n_split = std::max<int64_t>(n_split, 1);
    p.split_len = int(ceil_div(std::max<int64_t>(n_list, 1), n_split));
    p.n_split = int(ceil_div(std::max<int64_t>(n_list, 1), p.split_len));
    GLM_ASSERT(int64_t(p.n_split) * p.n_groups * S < int64_t(UINT_MAX));
    float* scratch = partials_ptr(ctx.device);
    p.part_ml = scratch;
    p.part_acc = scratch + 2 * H * S * p.n_split;

    switch (G) {
        case 1: launch_attn<1>(ctx, p, smem); break;
        case 4: launch_attn<4>(ctx, p, smem); break;
        case 8: launch_attn<8>(ctx, p, smem); break;
        default: launch_attn<16>(ctx, p, smem); break;
    }
}
