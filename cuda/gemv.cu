// Matrix-vector products over weights whose rows are contiguous along K (every decode mul_mat and
// every mul_mat_id; mul-mat.cu dispatches here), and the fused gate/up/SwiGLU of one token. All
// arithmetic is f32 (products and sums), as in the CPU reference; NVFP4 factors the per-slice global
// scale out of the sum (sum(e2m1 * block_scale * x) * global, exact algebra). Decode is batch 1 and
// memory-bound, so the layouts below count bytes, not FLOPs. One kernel, gemv1_kernel<WT, NC, IDS,
// PAIR>, serves every case; NC is the number of x columns a block stages and multiplies:
//  - NC = 1 (every decode mul_mat and every single-token mul_mat_id): a row pair is owned by a
//    group of G threads (G = 1 .. 256, a power of two chosen per shape by choose_group): G < 32
//    packs several row pairs into a warp so short rows (routed down_proj, K = 512 = 16 NVFP4
//    chunks -> G = 8) leave no lane idle; G > 32 splits K over several warps for small M (kv_a:
//    G = 256). Each thread keeps 2 rows x 2 chunks of 16 B loading for the next step while it
//    computes the current one, and the first step is issued before x is staged (float4 copies),
//    so the staging latency hides under the weight fetch. NVFP4: one 16-element block at a time,
//    x read once for both rows, block scale applied once per block partial sum. Sums: shuffles
//    within the group, then (G > 32) per-warp sums added in warp order in shared memory:
//    deterministic. MUL_MAT_ID: one (slot, token) per grid-y index (several per block for
//    prefill-sized grids, x re-staged only when it changes); only chosen experts are read.
//  - NC = 2..8 (MTP verify: N token columns): the same row groups, pipeline and sums with NC
//    accumulators per row; the block stages its NC columns once (all columns' loads in flight
//    together) and every weight chunk is read once and multiplied into all of them, so a block
//    moves the weight bytes of N = 1 plus NC staged columns. MUL_MAT: grid z = column groups of NC
//    (one group whenever N columns fit shared memory, up to 227 KiB: K = 6144, N = 8 uses 221 KB).
//    MUL_MAT_ID with 2..8 tokens (NC = kGroupCols = 2): the block of pair s serves every pair that
//    chose s's expert when s is the first of them (the others' blocks return at once), 2 pairs
//    per pass (a lone pair: a pass instantiated for 1 column), so pairs with an expert of their
//    own cost what they cost at N = 1, and an expert shared by n tokens is read ceil(n / 2) times.
//    choose_group caps G so a block's staged columns stay within twice its weight bytes.
//  - the same kernel in paired mode is the fused gate/up/SwiGLU (cuda_fused_gate_up_swiglu, NC =
//    1): a group's two rows are row m of the gate weight and row m of the up weight, so x is staged
//    once for both products and the group writes silu(gate . x) * (up . x); the two projections
//    never reach memory. Same loads in flight per thread, half the output rows per block.
//
// Bandwidth notes. Every lane keeps 4 x 16 B of weights in flight (2 rows x 2 chunks), 2 KB per
// warp; at <= 80 registers 3 blocks = 24 warps fit an SM: 48 KB in flight, well above what H100
// HBM3 needs per SM (~3.35 TB/s x ~0.7 us / 132 SMs = ~18 KB). BF16 costs ~1 FMA + 1 integer op
// per weight and column: memory-bound up to NC = 8 (x from shared memory: 32 B per column per
// 2 x 16 B of weights, ~116 B/clk/SM at NC = 8 against 128). NVFP4 gives 32 weights per load;
// E2M1 is decoded by masking nibble pairs straight into fp16 bits (magnitude to bits 9..11, sign to
// bit 15: exact, times 2^-14, folded into the block scale) and widening to f32: ~2 integer ops +
// 1 widen + 1 FMA per weight and row, ~4 issue slots per 0.5 byte, i.e. ~13 B/clk/SM of issue
// capacity against ~14.5 B/clk/SM of H100 bandwidth: the NVFP4 GEMV sits near both limits, and
// each extra column adds an FMA per weight (a shared expert at NC = 4 is ALU-bound, still ~2x
// cheaper than reading it twice). Staged x costs one L2 read of NC x K floats per block of
// 2 x 256 / G rows, a visible overhead at large G.
//
// Next steps for speed (in order of value):
//  1. NVFP4: x split into bf16x3 (or f16 hi/lo) and mma.sync m16n8k16 with e2m1 -> f16 via lop3,
//     or re-lay the codes at upload so one lane's 8 nibbles map to an MMA fragment; removes the
//     ALU bound (which several columns make worse) and gives prefill tensor cores in the same
//     kernel.
//  2. Stage x once per SM for MUL_MAT_ID (persistent blocks over (row, slot)) instead of once per
//     block; for NC > 1 at small M (kv_a) read x through L1 rather than per-block staging.
#include "cuda/gemm-mma.cuh"
#include "cuda/gemv.cuh"

#include "cuda/mul-mat.cuh"

namespace mul_mat {
namespace {

// ---- shared pieces: contiguous rows, 16-byte chunks, x staged in shared memory -------------------

constexpr int kGemvWarps = 8, kGemvThreads = kGemvWarps * 32;
constexpr int kRowsPerWarp = 2;

// Elements of one 16-byte chunk.
template <int WT>
constexpr int kChunkElems = WT == GLM_TYPE_F32 ? 4 : WT == GLM_TYPE_F8_E4M3 ? 16 : WT == GLM_TYPE_NVFP4 ? 32 : 8;

// Staged x: 4 floats of padding after every 32, so lane-strided float4 reads hit distinct banks.
__device__ __forceinline__ int64_t xs_index(int64_t k) { return k + (k >> 5) * 4; }
__host__ __device__ inline int64_t xs_stride(int64_t K) { return K + (K >> 5) * 4 + 4; }  // K % 4 == 0: a multiple of 4

// Stage one x column (K floats, element stride nb0 bytes; zeros if col is null) into xs at the
// padded positions xs_index(k), by all kGemvThreads threads of the block. Contiguous, 16-byte-
// aligned columns use float4 copies, UNR in flight per thread (K % 4 == 0 for every GEMV type:
// xs_index keeps each aligned quad contiguous and 16-byte aligned).
template <int UNR>
__device__ __forceinline__ void stage_column(float* xs, const uint8_t* col, int64_t nb0, int64_t K) {
    if (col == nullptr) {
        for (int64_t k = threadIdx.x; k < K; k += blockDim.x) xs[xs_index(k)] = 0.0f;
    } else if (nb0 == int64_t(sizeof(float)) && (reinterpret_cast<uintptr_t>(col) & 15u) == 0) {
        const int64_t K4 = K / 4;
        const float4* x4 = reinterpret_cast<const float4*>(col);
        for (int64_t i0 = threadIdx.x; i0 < K4; i0 += UNR * int64_t(blockDim.x)) {
            float4 tmp[UNR];
#pragma unroll
            for (int j = 0; j < UNR; ++j) {
                const int64_t i = i0 + int64_t(j) * blockDim.x;
                if (i < K4) tmp[j] = __ldg(x4 + i);
            }
#pragma unroll
            for (int j = 0; j < UNR; ++j) {
                const int64_t i = i0 + int64_t(j) * blockDim.x;
                if (i < K4) *reinterpret_cast<float4*>(xs + xs_index(4 * i)) = tmp[j];
            }
        }
    } else {
        for (int64_t k = threadIdx.x; k < K; k += blockDim.x)
            xs[xs_index(k)] = *reinterpret_cast<const float*>(col + k * nb0);
    }
}

// Stage C x columns into xs + c * xstride (cols[c]: column c's first element; null: zeros). One
// column: stage_column<4>. Several contiguous, 16-byte-aligned columns: float4 copies with every
// column's loads in flight together (~8 per thread), so the staging takes about one column's
// round trips; any other layout (strided x views) column by column through stage_column.
template <int C>
__device__ __forceinline__ void stage_columns(float* xs, int64_t xstride, const uint8_t* const (&cols)[C], int64_t nb0,
                                              int64_t K) {
    if constexpr (C == 1) {
        stage_column<4>(xs, cols[0], nb0, K);
    } else {
        bool vec = nb0 == int64_t(sizeof(float));
#pragma unroll
        for (int c = 0; c < C; ++c) vec = vec && (reinterpret_cast<uintptr_t>(cols[c]) & 15u) == 0;  // null: aligned
        if (!vec) {
#pragma unroll
            for (int c = 0; c < C; ++c) stage_column<1>(xs + c * xstride, cols[c], nb0, K);
            return;
        }
        constexpr int UNR = C >= 8 ? 1 : 8 / C;
        const int64_t K4 = K / 4;
        for (int64_t i0 = threadIdx.x; i0 < K4; i0 += UNR * int64_t(blockDim.x)) {
            float4 tmp[C][UNR];
#pragma unroll
            for (int c = 0; c < C; ++c)
#pragma unroll
                for (int j = 0; j < UNR; ++j) {
                    const int64_t i = i0 + int64_t(j) * blockDim.x;
                    tmp[c][j] = cols[c] != nullptr && i < K4 ? __ldg(reinterpret_cast<const float4*>(cols[c]) + i)
                                                             : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                }
#pragma unroll
            for (int c = 0; c < C; ++c)
#pragma unroll
                for (int j = 0; j < UNR; ++j) {
                    const int64_t i = i0 + int64_t(j) * blockDim.x;
                    if (i < K4) *reinterpret_cast<float4*>(xs + c * xstride + xs_index(4 * i)) = tmp[c][j];
                }
        }
    }
}

__device__ __forceinline__ uint32_t word_of(const uint4& v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

__device__ __forceinline__ float2 half2_bits_to_float2(uint32_t bits) {
    __half2 h;
    memcpy(&h, &bits, 4);
    return __half22float2(h);
}

// The 8 E2M1 codes of a 32-bit word (elements 0..7, low nibble = even element) as f32 times 2^-14:
// four fp16 pairs as in e2m1_fast, each built with two masks and two shifts: (0, 4) from nibbles 0
// and 4, (1, 5), (2, 6), (3, 7); magnitude bits to fp16 bits 9..11 (and 25..27), sign bits to 15
// (and 31).
__device__ __forceinline__ void e2m1x8_to_float(uint32_t u, float (&f)[8]) {
    const float2 p04 = half2_bits_to_float2(((u & 0x00070007u) << 9) | ((u & 0x00080008u) << 12));
    const float2 p15 = half2_bits_to_float2(((u & 0x00700070u) << 5) | ((u & 0x00800080u) << 8));
    const float2 p26 = half2_bits_to_float2(((u & 0x07000700u) << 1) | ((u & 0x08000800u) << 4));
    const float2 p37 = half2_bits_to_float2(((u & 0x70007000u) >> 3) | (u & 0x80008000u));
    f[0] = p04.x;
    f[4] = p04.y;
    f[1] = p15.x;
    f[5] = p15.y;
    f[2] = p26.x;
    f[6] = p26.y;
    f[3] = p37.x;
    f[7] = p37.y;
}

// Dequantise a 16-byte chunk of a float-type weight (F32, F16, BF16, F8_E4M3: E elements) into f.
template <int WT, int E>
__device__ __forceinline__ void dequant_chunk(const uint4& v, float (&f)[E]) {
    static_assert(WT != GLM_TYPE_NVFP4, "NVFP4 chunks: nvfp4_chunk1 / nvfp4_chunk");
    if constexpr (WT == GLM_TYPE_F32) {
#pragma unroll
        for (int i = 0; i < 4; ++i) f[i] = __uint_as_float(word_of(v, i));
    } else if constexpr (WT == GLM_TYPE_BF16) {
        bf16x8_to_float(v, f);
    } else if constexpr (WT == GLM_TYPE_F16) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 p = half2_bits_to_float2(word_of(v, i));
            f[2 * i] = p.x;
            f[2 * i + 1] = p.y;
        }
    } else {
        // E4M3 -> f16 is exact (hardware cvt on sm_89+), NaN stays NaN.
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const uint32_t u = word_of(v, i);
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const __nv_fp8x2_storage_t pair = __nv_fp8x2_storage_t((u >> (16 * h)) & 0xffffu);
                const __half2_raw r = __nv_cvt_fp8x2_to_halfraw2(pair, __NV_E4M3);
                const float2 p = half2_bits_to_float2(uint32_t(r.x) | (uint32_t(r.y) << 16));
                f[4 * i + 2 * h] = p.x;
                f[4 * i + 2 * h + 1] = p.y;
            }
        }
    }
}

// acc[r][n] += dot(chunk of row r, x[k0 .. k0 + E) of column n), float-type weights: both rows
// dequantised, then each column's x read once for both rows.
template <int WT, int NC>
__device__ __forceinline__ void gemv_chunk(const uint4 (&v)[kRowsPerWarp], const float* xs, int64_t xstride,
                                           int64_t k0, float (&acc)[kRowsPerWarp][NC]) {
    constexpr int E = kChunkElems<WT>;
    float f[kRowsPerWarp][E];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) dequant_chunk<WT, E>(v[r], f[r]);
#pragma unroll
    for (int n = 0; n < NC; ++n) {
        const float* xc = xs + n * xstride + xs_index(k0);
        float part[kRowsPerWarp];
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) part[r] = 0.0f;
#pragma unroll
        for (int q = 0; q < E / 4; ++q) {
            const float4 x4 = *reinterpret_cast<const float4*>(xc + 4 * q);
#pragma unroll
            for (int r = 0; r < kRowsPerWarp; ++r) {
                part[r] = fmaf(f[r][4 * q + 0], x4.x, part[r]);
                part[r] = fmaf(f[r][4 * q + 1], x4.y, part[r]);
                part[r] = fmaf(f[r][4 * q + 2], x4.z, part[r]);
                part[r] = fmaf(f[r][4 * q + 3], x4.w, part[r]);
            }
        }
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) acc[r][n] += part[r];
    }
}

// ---- gemv1_kernel ---------------------------------------------------------------------------------
// 256 threads; a row group of G threads (G = a.ksplit, a power of two in [1, 256]) owns
// kRowsPerWarp rows; its threads take the row's 16-byte chunks t, t + G, t + 2G, ... (split K
// inside the group: G < 32 packs several row groups into one warp, G > 32 spans several warps).
// Weights are software-pipelined: kGemv1Unroll chunks of every row are loaded for the next step
// before the current step is computed, and the first step's loads are issued before x is staged,
// so the staging latency hides under the weight fetch. Sums: shuffles inside the group (fixed
// xor tree), then, for G > 32, the warps' sums in shared memory added in warp order (deterministic).
// A block handles a.spb consecutive slices of its grid-y index and re-stages x only when the
// slice's x column changes (MUL_MAT_ID with one broadcast x: the slots of a token share it).
// Paired mode (the fused gate/up/SwiGLU) is the same kernel with a group's two rows taken from two
// weights: see gemv1_block.
constexpr int kGemv1Unroll = 2;

// NVFP4 chunk (32 codes = 2 blocks of 16) of each row against x, one 16-element block at a time:
// the block's 16 x values are read once for all rows, each row's codes are decoded 8 at a time
// (e2m1x8_to_float, values times 2^-14) into a block partial sum, and the block scale (times 2^14)
// is applied once per block. Fewer live registers than decoding both rows' 16 floats first.
__device__ __forceinline__ void nvfp4_chunk1(const uint4 (&v)[kRowsPerWarp], const uint32_t (&sc)[kRowsPerWarp],
                                             const float* xs, int64_t k0, float (&acc)[kRowsPerWarp][1]) {
#pragma unroll
    for (int g = 0; g < 2; ++g) {
        const float* xc = xs + xs_index(k0 + 16 * g);
        float x[16];
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            const float4 x4 = *reinterpret_cast<const float4*>(xc + 4 * q);
            x[4 * q + 0] = x4.x;
            x[4 * q + 1] = x4.y;
            x[4 * q + 2] = x4.z;
            x[4 * q + 3] = x4.w;
        }
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
            float p = 0.0f;
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                float w[8];
                e2m1x8_to_float(word_of(v[r], 2 * g + i), w);
#pragma unroll
                for (int e = 0; e < 8; ++e) p = fmaf(w[e], x[8 * i + e], p);
            }
            acc[r][0] = fmaf(p, e4m3_fast((sc[r] >> (8 * g)) & 0xffu) * 16384.0f, acc[r][0]);
        }
    }
}

// The same for C > 1 columns: per 8-code word, both rows' codes decoded once (16 floats live, not
// 32) and each column's 8 x values read once for both rows; a partial sum per (row, column) and
// block, scaled once per block. Summation order as nvfp4_chunk1's.
template <int C>
__device__ __forceinline__ void nvfp4_chunk(const uint4 (&v)[kRowsPerWarp], const uint32_t (&sc)[kRowsPerWarp],
                                            const float* xs, int64_t xstride, int64_t k0,
                                            float (&acc)[kRowsPerWarp][C]) {
    constexpr int R = kRowsPerWarp;
#pragma unroll
    for (int g = 0; g < 2; ++g) {
        float p[R][C];
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int n = 0; n < C; ++n) p[r][n] = 0.0f;
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            float w[R][8];
#pragma unroll
            for (int r = 0; r < R; ++r) e2m1x8_to_float(word_of(v[r], 2 * g + i), w[r]);
#pragma unroll
            for (int n = 0; n < C; ++n) {
                const float* xc = xs + n * xstride + xs_index(k0 + 16 * g + 8 * i);  // 8 contiguous floats
                const float4 xa = *reinterpret_cast<const float4*>(xc), xb = *reinterpret_cast<const float4*>(xc + 4);
                const float x[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
#pragma unroll
                for (int r = 0; r < R; ++r)
#pragma unroll
                    for (int e = 0; e < 8; ++e) p[r][n] = fmaf(w[r][e], x[e], p[r][n]);
            }
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const float bs = e4m3_fast((sc[r] >> (8 * g)) & 0xffu) * 16384.0f;
#pragma unroll
            for (int n = 0; n < C; ++n) acc[r][n] = fmaf(p[r][n], bs, acc[r][n]);
        }
    }
}


// One slice times C staged columns, for the block's row range: the first step's weight loads, the
// staging of cols (when restage; cols[c] null: zeros), the pipelined K loop, the sums, and
// store(m, n, value) for each row m < M and column n < C (the caller drops columns it does not
// own). NVFP4 takes nvfp4_chunk1 / nvfp4_chunk; other types gemv_chunk (x read once for both rows).
// PAIR: a group's two rows are row m of the gate weight (a.w) and row m of the up weight (a.w2), so
// the loads in flight, the x staging and the sums are those of the plain kernel, and the group
// stores silu(gate) * up.
// A thread's place in its block, the same for every slice the block visits: its row group's G
// threads (t: its index there) own rows m0 (.. m0 + 1 unless PAIR).
struct Gemv1Thread {
    int G, t, lane, warp, nchunks, stride;
    int64_t m0;
    bool active;  // m0 < M
};

template <int WT, bool PAIR>
__device__ __forceinline__ Gemv1Thread gemv1_thread(const MmArgs& a) {
    constexpr int RM = PAIR ? 1 : kRowsPerWarp;  // output rows per group
    Gemv1Thread th;
    th.G = a.ksplit;
    th.t = int(threadIdx.x) & (th.G - 1);
    th.lane = threadIdx.x & 31;
    th.warp = threadIdx.x >> 5;
    const int64_t rows_per_block = int64_t(RM) * (kGemvThreads / th.G);
    th.m0 = int64_t(blockIdx.x) * rows_per_block + int64_t(int(threadIdx.x) / th.G) * RM;
    th.active = th.m0 < a.M;
    th.nchunks = int(a.K / kChunkElems<WT>);  // K < 2^31 (checked by the launcher)
    th.stride = kGemv1Unroll * th.G;
    return th;
}

template <int WT, int C, bool PAIR, typename Store>
__device__ __forceinline__ void gemv1_block(const MmArgs& a, const Gemv1Thread& th, const Slice& sl, float* xs,
                                            float* part_sums, const uint8_t* const (&cols)[C], bool restage,
                                            Store&& store) {
    constexpr int E = kChunkElems<WT>, U = kGemv1Unroll, R = kRowsPerWarp;
    static_assert(!PAIR || (R == 2 && C == 1), "paired mode: row 0 gate, row 1 up, one column");
    const int G = th.G, t = th.t, lane = th.lane, warp = th.warp, nchunks = th.nchunks, stride = th.stride;
    const int64_t m0 = th.m0;
    const bool active = th.active;
    const int64_t xstride = C == 1 ? 0 : xs_stride(a.K);

    const uint4* wrow[R];
    const uint16_t* srow[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int64_t mr = PAIR ? m0 : m0 + r;
        const int64_t m = mr < a.M ? mr : a.M - 1;  // rows past M: a duplicate, never stored
        const bool up = PAIR && r == 1;
        const int64_t nb1 = up ? a.w2.nb[1] : a.w.nb[1], snb1 = up ? a.w2.snb[1] : a.w.snb[1];
        wrow[r] = reinterpret_cast<const uint4*>((up ? sl.w2 : sl.w) + m * nb1);
        srow[r] = WT == GLM_TYPE_NVFP4 ? reinterpret_cast<const uint16_t*>((up ? sl.ws2 : sl.ws) + m * snb1) : nullptr;
    }
    uint4 v[U][R];
    uint32_t sv[U][R];
    auto load_step = [&](int c0) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int c = c0 + u * G;
            const bool ok = active && c < nchunks;
#pragma unroll
            for (int r = 0; r < R; ++r) {
                v[u][r] = ok ? __ldg(wrow[r] + c) : make_uint4(0u, 0u, 0u, 0u);
                if constexpr (WT == GLM_TYPE_NVFP4) sv[u][r] = ok ? uint32_t(__ldg(srow[r] + c)) : 0u;
                else sv[u][r] = 0u;
            }
        }
    };
    load_step(t);  // in flight while x is staged

    if (restage) {        // uniform over the block
        __syncthreads();  // the previous slice's readers are done with xs
        stage_columns<C>(xs, xstride, cols, a.x_nb[0], a.K);
        __syncthreads();
    }

    float acc[R][C];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int n = 0; n < C; ++n) acc[r][n] = 0.0f;
    for (int c0 = t; c0 < nchunks; c0 += stride) {
        uint4 cv[U][R];
        uint32_t cs[U][R];
#pragma unroll
        for (int u = 0; u < U; ++u)
#pragma unroll
            for (int r = 0; r < R; ++r) {
                cv[u][r] = v[u][r];
                cs[u][r] = sv[u][r];
            }
        if (c0 + stride < nchunks) load_step(c0 + stride);  // next step in flight
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int c = c0 + u * G;
            if (active && c < nchunks) {
                if constexpr (WT == GLM_TYPE_NVFP4 && C == 1) nvfp4_chunk1(cv[u], cs[u], xs, c * E, acc);
                else if constexpr (WT == GLM_TYPE_NVFP4) nvfp4_chunk<C>(cv[u], cs[u], xs, xstride, c * E, acc);
                else gemv_chunk<WT, C>(cv[u], xs, xstride, c * E, acc);
            }
        }
    }

    const int width = G < 32 ? G : 32;
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int n = 0; n < C; ++n)
            for (int off = width >> 1; off > 0; off >>= 1) acc[r][n] += __shfl_xor_sync(0xffffffffu, acc[r][n], off);
    if (G > 32) {  // uniform over the block
        float(*ps)[R][C] = reinterpret_cast<float(*)[R][C]>(part_sums);  // [warp][row][column]
        if (lane == 0)
#pragma unroll
            for (int r = 0; r < R; ++r)
#pragma unroll
                for (int n = 0; n < C; ++n) ps[warp][r][n] = acc[r][n];
        __syncthreads();
        if (t == 0) {
            const int nw = G / 32;
#pragma unroll
            for (int r = 0; r < R; ++r)
#pragma unroll
                for (int n = 0; n < C; ++n) {
                    float sum = ps[warp][r][n];
                    for (int p = 1; p < nw; ++p) sum += ps[warp + p][r][n];
                    acc[r][n] = sum;
                }
        }
        __syncthreads();  // part_sums is free for the next slice
    }
    if (t == 0) {
        if constexpr (PAIR) {
            // gate and up as their MUL_MAT nodes would store them, then SWIGLU's formula
            const float gate = acc[0][0] * sl.g, up = acc[1][0] * sl.g2;
            if (m0 < a.M) store(m0, 0, gate / (1.0f + expf(-gate)) * up);
        } else {
#pragma unroll
            for (int r = 0; r < R; ++r)
#pragma unroll
                for (int n = 0; n < C; ++n)
                    if (m0 + r < a.M) store(m0 + r, n, acc[r][n] * sl.g);
        }
    }
}

// MUL_MAT_ID, several tokens: the pairs (bit p: pair p; n_slices <= 64) that chose pair s's expert,
// if s is the first of them; 0 otherwise (their leader's block computes them). Uniform over the
// block: every warp reads the same ids.
__device__ __forceinline__ uint64_t expert_members(const MmArgs& a, int64_t s) {
    const int32_t e = pair_expert(a, s);
    const int lane = threadIdx.x & 31;
    uint64_t m = 0;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int64_t p = lane + 32 * h;
        const bool same = p < a.n_slices && pair_expert(a, p) == e;
        m |= uint64_t(__ballot_sync(0xffffffffu, same)) << (32 * h);
    }
    return (m & ((uint64_t(1) << s) - 1)) != 0 ? 0 : m;
}

// The lowest C pairs of rest (the caller leaves at least C) as one gemv1_block pass; they leave rest.
template <int WT, int C>
__device__ __forceinline__ void gemv1_pairs(const MmArgs& a, const Gemv1Thread& th, const Slice& sl, uint64_t& rest,
                                            float* xs, float* part_sums) {
    int pair[C];
    const uint8_t* cols[C];
#pragma unroll
    for (int c = 0; c < C; ++c) {
        pair[c] = __ffsll((long long)rest) - 1;
        rest &= rest - 1;
        cols[c] = pair_x(a, pair[c]);
    }
    gemv1_block<WT, C, false>(a, th, sl, xs, part_sums, cols, true, [&](int64_t m, int n, float v) {
        *reinterpret_cast<float*>(pair_dst(a, pair[n]) + m * a.d_nb[0]) = v;
    });
}

// Registers for N = 1 as tuned (3 blocks per SM; NVFP4 needs ~125 registers: 2). Several columns:
// 2 blocks (at K = 6144 their staged x, 110 KB at NC = 4, allows no more anyway), 128 registers,
// except where that spills (ptxas, sm_90): E4M3 at NC >= 6 (16 dequantised floats per row) and
// NVFP4 MUL_MAT at NC >= 4 (no GLM-5.1 product; the expert-grouped NVFP4 kernel has NC = 2).
constexpr int gemv1_min_blocks(int wt, int nc) {
    if (nc == 1) return wt == GLM_TYPE_NVFP4 ? 2 : 3;
    return (wt == GLM_TYPE_F8_E4M3 && nc >= 6) || (wt == GLM_TYPE_NVFP4 && nc >= 4) ? 1 : 2;
}

// Pairs per pass of the expert-grouped MUL_MAT_ID kernel. 2: a pass of 4 would read a shared
// expert once for up to 4 tokens, but its NVFP4 and BF16 bodies spill at 128 registers, and a
// looser budget would cost every block (most experts serve one token) the occupancy of N = 1.
constexpr int kGroupCols = 2;

// grid: x = row groups, y = slices (a.spb per index, grid-stride), z = column groups of NC
// (MUL_MAT); dynamic smem: NC * xs_stride(K) floats. IDS && NC > 1: y = pairs, grouped by expert.
template <int WT, int NC, bool IDS, bool PAIR>
__global__ void __launch_bounds__(kGemvThreads, gemv1_min_blocks(WT, NC)) gemv1_kernel(MmArgs a) {
    grid_dependency_wait();
    extern __shared__ float4 smem_f4[];
    float* xs = reinterpret_cast<float*>(smem_f4);
    __shared__ float part_sums[kGemvWarps * kRowsPerWarp * NC];
    const Gemv1Thread th = gemv1_thread<WT, PAIR>(a);
    const int64_t n0 = NC == 1 ? 0 : int64_t(blockIdx.z) * NC;  // MUL_MAT: the block's first x column
    const uint8_t* staged_x = nullptr;

    for (int64_t sb = blockIdx.y; sb * a.spb < a.n_slices; sb += gridDim.y) {
        const int64_t s_end = (sb + 1) * a.spb < a.n_slices ? (sb + 1) * a.spb : a.n_slices;
        for (int64_t s = sb * a.spb; s < s_end; ++s) {
            const Slice sl = resolve_slice<WT, IDS, PAIR>(a, s);
            if constexpr (IDS && NC > 1) {
                // passes of NC pairs, the last one instantiated for one pair if one is left
                uint64_t rest = expert_members(a, s);
                while (rest != 0) {  // uniform
                    if (__popcll(rest) == 1) gemv1_pairs<WT, 1>(a, th, sl, rest, xs, part_sums);
                    else gemv1_pairs<WT, NC>(a, th, sl, rest, xs, part_sums);
                }
            } else {
                // MUL_MAT columns n0 .. n0 + NC - 1 of the slice (past N: zeros, not stored)
                const uint8_t* cols[NC];
#pragma unroll
                for (int c = 0; c < NC; ++c)
                    cols[c] = NC == 1 || n0 + c < a.N ? sl.x + (n0 + c) * a.x_nb[1] : nullptr;
                const bool restage = sl.x != staged_x;  // uniform: every thread resolves the same slice
                staged_x = sl.x;
                gemv1_block<WT, NC, PAIR>(a, th, sl, xs, part_sums, cols, restage, [&](int64_t m, int n, float v) {
                    if (NC == 1 || n0 + n < a.N) store_dst(a, sl, m, n0 + n, v);
                });
            }
        }
    }
}

// ---- launchers --------------------------------------------------------------------------------

// Bytes of staged x per block (opt-in above 48 KiB). One column: 96 KiB, as tuned for N = 1.
// Several: what one sm_90 block may opt into (227 KiB) less the static part sums; reading the
// weights once for all columns outweighs the lower occupancy (K = 6144: 2 blocks per SM at 4
// columns, 1 at 8).
constexpr int64_t kMaxGemvSmem = 96 * 1024;
constexpr int64_t kMaxGemvSmemCols = 227 * 1024 - int64_t(sizeof(float)) * kGemvWarps * kRowsPerWarp * kMaxCols;

int64_t chunk_elems_host(glm_type t) {
    return t == GLM_TYPE_F32 ? 4 : t == GLM_TYPE_F8_E4M3 ? 16 : t == GLM_TYPE_NVFP4 ? 32 : 8;
}

// Sixteenths of a byte of weights (NVFP4: codes and block scales) per element.
int64_t weight_bytes16(glm_type t) {
    return t == GLM_TYPE_F32 ? 64 : t == GLM_TYPE_F8_E4M3 ? 16 : t == GLM_TYPE_NVFP4 ? 9 : 32;
}

// gemv1_kernel's row-group width G: every thread gets >= kGemv1Unroll chunks of each row where K
// allows (G <= 32 rounds K's chunk count down: down_proj's 16 NVFP4 chunks give G = 8, four row
// groups per warp, no idle lanes); then G doubles (split K over more threads) while the grid has
// fewer than 12 warps per SM (each doubling re-stages x for half as many rows per block). A group
// owns rows_per_group output rows (2; 1 in paired mode). H100, N = 1: expert gate/up G = 32 (256
// blocks), down G = 8 (768 blocks), o_proj/q_b/lm_head 32, q_a 64, kv_a 256. Paired, at TP 4:
// routed experts (8 x 512 rows, NVFP4) G = 32 (512 blocks), shared expert (512 rows, BF16) G = 128
// (256 blocks), dense MLP (3072 rows) G = 32 (384 blocks). With nc > 1 staged columns G is capped
// so a block's staged x (nc x K floats, from L2) stays within twice its weight bytes: BF16 G <= 256
// / 128 / 64 at nc = 2 / 4 / 8 (kv_a at nc = 4: G = 128, 144 blocks), NVFP4 G <= 64 / 32.
// GLM_GEMV_TARGET_WARPS overrides the 12 warps per SM at build time (A/B runs: scripts/gpu-rank4.sh
// --variant).
#ifndef GLM_GEMV_TARGET_WARPS
#define GLM_GEMV_TARGET_WARPS 12
#endif
int choose_group(const CudaContext& ctx, glm_type wt, const MmArgs& a, int64_t slices, int rows_per_group, int nc) {
    const int64_t n_sm = ctx.n_sm > 0 ? ctx.n_sm : 132;
    const int64_t nchunks = a.K / chunk_elems_host(wt);
    auto threads = [&](int64_t g) {
        return ceil_div(a.M, int64_t(rows_per_group) * (kGemvThreads / g)) * int64_t(kGemvThreads) * slices;
    };
    int64_t g_max = kGemvThreads;  // nc > 1: staged nc * 4 * K bytes <= 2 * (rows_per_group * 256 / G) * K * bytes
    while (nc > 1 && g_max > 1 && nc * 4 * 16 * g_max > 2 * rows_per_group * kGemvThreads * weight_bytes16(wt))
        g_max /= 2;
    int64_t g = 1;
    while (g < 32 && g < g_max && 2 * g * kGemv1Unroll <= nchunks) g *= 2;
    while (g < g_max && 2 * g * kGemv1Unroll <= nchunks && threads(g) < GLM_GEMV_TARGET_WARPS * 32 * n_sm) g *= 2;
    return int(g);
}

template <int WT, int NC, bool IDS, bool PAIR>
void launch_gemv1(CudaContext& ctx, const MmArgs& a0) {
    MmArgs a = a0;
    const int64_t n_sm = ctx.n_sm > 0 ? ctx.n_sm : 132;
    const int rows_per_group = PAIR ? 1 : kRowsPerWarp;
    a.ksplit = choose_group(ctx, glm_type(WT), a, std::min<int64_t>(a.n_slices, 65535), rows_per_group, NC);
    const int64_t rows_per_block = int64_t(rows_per_group) * (kGemvThreads / a.ksplit);
    const int64_t bx = ceil_div(a.M, rows_per_block);
    GLM_ASSERT(bx <= 0x7fffffff && a.K < (int64_t(1) << 31));
    // Several slices per block only when the grid would be far beyond one resident wave
    // (prefill-sized MUL_MAT_ID); decode keeps one slice per block, and so does the expert-grouped
    // mode (one pair per grid-y index).
    constexpr bool grouped = IDS && NC > 1;
    GLM_ASSERT(!grouped || a.n_slices <= 64);
    a.spb = grouped ? 1 : std::max<int64_t>(1, std::min<int64_t>(8, bx * a.n_slices / (8 * n_sm)));
    const int64_t bz = IDS ? 1 : ceil_div(a.N, NC);
    GLM_ASSERT(bz <= 65535);
    const size_t smem = size_t(NC) * size_t(xs_stride(a.K)) * sizeof(float);
    auto kernel = gemv1_kernel<WT, NC, IDS, PAIR>;
    static SmemOptIn opted_in;
    cuda_allow_smem(kernel, smem, ctx.device, opted_in);
    const dim3 grid(unsigned(bx), grid_dim(ceil_div(a.n_slices, a.spb)), unsigned(bz));
    cuda_launch(ctx.stream, kernel, grid, kGemvThreads, smem, a);
    CUDA_CHECK_LAUNCH();
}

// MUL_MAT with N >= 2 columns, nc per block. When only one staged column fits shared memory, one
// N = 1 launch per column (x and dst offset to that column).
template <int WT>
void launch_gemv_columns(CudaContext& ctx, const MmArgs& a, int nc) {
    switch (nc) {
        case 1:
            for (int64_t n = 0; n < a.N; ++n) {
                MmArgs c = a;
                c.N = 1;
                c.x += n * a.x_nb[1];
                c.dst += n * a.d_nb[1];
                launch_gemv1<WT, 1, false, false>(ctx, c);
            }
            break;
        case 2: launch_gemv1<WT, 2, false, false>(ctx, a); break;
        case 3: launch_gemv1<WT, 3, false, false>(ctx, a); break;
        case 4: launch_gemv1<WT, 4, false, false>(ctx, a); break;
        case 5: launch_gemv1<WT, 5, false, false>(ctx, a); break;
        case 6: launch_gemv1<WT, 6, false, false>(ctx, a); break;
        case 7: launch_gemv1<WT, 7, false, false>(ctx, a); break;
        default: launch_gemv1<WT, 8, false, false>(ctx, a); break;
    }
}

// MUL_MAT_ID. Expert-grouped (BF16 and NVFP4 experts, 2..8 tokens, at most 64 pairs: one bit each
// in a block's member mask) where kGroupCols columns fit the staging budget; otherwise one pair per
// grid-y index.
template <int WT>
void launch_gemv_ids(CudaContext& ctx, const MmArgs& a) {
    if constexpr (WT == GLM_TYPE_BF16 || WT == GLM_TYPE_NVFP4) {
        const int64_t T = a.n_used > 0 ? a.n_slices / a.n_used : 0;
        if (T >= 2 && a.n_slices <= 64 && gemv_cols_that_fit(a.K, kGroupCols) == kGroupCols) {
            launch_gemv1<WT, kGroupCols, true, false>(ctx, a);
            return;
        }
    }
    launch_gemv1<WT, 1, true, false>(ctx, a);
}

}  // namespace

bool gemv_layout_ok(const glm_tensor* w) {
    const glm_type t = w->type;
    if (t != GLM_TYPE_F32 && t != GLM_TYPE_F16 && t != GLM_TYPE_BF16 && t != GLM_TYPE_F8_E4M3 && t != GLM_TYPE_NVFP4)
        return false;
    if (int64_t(w->nb[0]) != int64_t(glm_type_block_bytes(t)) || w->ne[0] % chunk_elems_host(t) != 0) return false;
    if (!aligned(w->data, 16)) return false;
    for (int i = 1; i < 4; ++i)
        if (w->ne[i] > 1 && w->nb[i] % 16 != 0) return false;
    if (t == GLM_TYPE_NVFP4) {
        const glm_tensor* s = w->block_scale;
        if (s->nb[0] != 1 || !aligned(s->data, 2)) return false;
        for (int i = 1; i < 4; ++i)
            if (s->ne[i] > 1 && s->nb[i] % 2 != 0) return false;
    }
    return true;
}

int gemv_cols_that_fit(int64_t K, int64_t want) {
    for (int64_t nc = std::min<int64_t>(want, kMaxCols); nc >= 1; --nc)
        if (nc * xs_stride(K) * int64_t(sizeof(float)) <= (nc == 1 ? kMaxGemvSmem : kMaxGemvSmemCols)) return int(nc);
    return 0;
}

void launch_gemv(CudaContext& ctx, const MmArgs& a, glm_type wt, bool ids, int nc) {
    with_weight_type(wt, [&](auto wt_tag) {
        constexpr int WT = decltype(wt_tag)::value;
        if (ids) launch_gemv_ids<WT>(ctx, a);
        else if (a.N == 1) launch_gemv1<WT, 1, false, false>(ctx, a);
        else launch_gemv_columns<WT>(ctx, a, nc);
    });
}

}  // namespace mul_mat

bool cuda_fused_gate_up_swiglu(CudaContext& ctx, glm_tensor* gate, glm_tensor* up, glm_tensor* swiglu) {
    using namespace mul_mat;
    const glm_op op = gate->op;
    if (op != GLM_OP_MUL_MAT && op != GLM_OP_MUL_MAT_ID) return false;
    if (up->op != op || swiglu->op != GLM_OP_SWIGLU || swiglu->src[0] != gate || swiglu->src[1] != up) return false;
    const glm_tensor* w_gate = gate->src[0];
    const glm_tensor* w_up = up->src[0];
    const glm_tensor* x = gate->src[1];
    if (up->src[1] != x || up->src[2] != gate->src[2]) return false;
    // Prefill-sized products (more columns / tokens than the GEMVs take): the tensor-core GEMMs' paired
    // tile (gemm-mma.cu). Here: MUL_MAT with one x column (more columns would read each weight row once
    // per column here, where gemv1_kernel with NC columns reads it once for all) and MUL_MAT_ID with the
    // token counts gemv1_kernel serves unfused.
    if ((op == GLM_OP_MUL_MAT ? x->ne[1] : gate->src[2]->ne[1]) > kMaxCols) return cuda_mma_gate_up_swiglu(ctx, gate, up, swiglu);
    if (op == GLM_OP_MUL_MAT && x->ne[1] != 1) return false;
    // The types the paired kernel is built for: BF16 (dense MLP, shared expert) and NVFP4 (experts).
    if (w_gate->type != w_up->type || (w_gate->type != GLM_TYPE_BF16 && w_gate->type != GLM_TYPE_NVFP4)) return false;
    if (!glm_same_shape(w_gate, w_up) || !gemv_layout_ok(w_gate) || !gemv_layout_ok(w_up)) return false;
    if (gemv_cols_that_fit(w_gate->ne[0], 1) != 1) return false;
    if (swiglu->type != GLM_TYPE_F32 || !glm_same_shape(swiglu, gate) || !glm_same_shape(up, gate)) return false;
    // Unfused, x (and ids) may be dead once the up node has read them, so the arena planner may put
    // the SWIGLU result over their bytes; one kernel that still reads them while writing it would race.
    if (bytes_overlap(swiglu, x) || (gate->src[2] && bytes_overlap(swiglu, gate->src[2]))) return false;

    MmArgs a = node_args(gate, swiglu);  // gate's product, written where the SWIGLU node's result goes
    a.w2 = weight_arg(w_up);
    if (a.M == 0 || a.n_slices == 0) return true;
    const bool ids = op == GLM_OP_MUL_MAT_ID;
    with_weight_type(w_gate->type, [&](auto wt_tag) {
        constexpr int WT = decltype(wt_tag)::value;
        if constexpr (WT == GLM_TYPE_BF16 || WT == GLM_TYPE_NVFP4) {
            if (ids) launch_gemv1<WT, 1, true, true>(ctx, a);
            else launch_gemv1<WT, 1, false, true>(ctx, a);
        }
    });
    return true;
}
