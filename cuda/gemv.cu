// Matrix-vector products over weights whose rows are contiguous along K (every decode mul_mat and
// every mul_mat_id; mul-mat.cu dispatches here), and the fused gate/up/SwiGLU of one token. All
// arithmetic is f32 (products and sums), as in the CPU reference; NVFP4 factors the per-slice global
// scale out of the sum (sum(e2m1 * block_scale * x) * global, exact algebra). Decode is batch 1 and
// memory-bound, so the layouts below count bytes, not FLOPs:
//  - gemv1_kernel (N = 1: every decode mul_mat and every mul_mat_id): a row pair is owned by a
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
//  - the same kernel in paired mode is the fused gate/up/SwiGLU (cuda_fused_gate_up_swiglu): a
//    group's two rows are row m of the gate weight and row m of the up weight, so x is staged
//    once for both products and the group writes silu(gate . x) * (up . x); the two projections
//    never reach memory. Same loads in flight per thread, half the output rows per block.
//  - gemv_kernel (2 <= N <= 8 columns, contiguous 16-byte-aligned weight rows, K a multiple of the
//    16-byte chunk, x fits 96 KiB of shared memory): 256 threads = 8 warps, each warp owns
//    kRowsPerWarp = 2 rows and walks them with 16-byte __ldg loads (lane i reads chunk i, i + 32,
//    ... of both rows; two chunks per row in flight), dequantises in registers, accumulates f32,
//    and ends with a warp-shuffle reduction. When M alone gives < 2 blocks per SM, ksplit (2, 4, 8)
//    warps share a row pair, each taking every ksplit-th 32-chunk stripe of K; their sums meet in
//    shared memory in a fixed order (deterministic). The block first stages its x columns in
//    shared memory as f32 (any x strides), padded by 4 floats every 32 so that the lane-strided
//    float4 reads are bank-conflict free for every chunk width (4, 8, 16, 32 elements per lane).
//    Weight rows are read once for all NC columns. MUL_MAT_ID uses the same kernel with one
//    (slot, token) pair per grid-y index: only the chosen experts' rows are read, and the
//    expert's global scale is applied after the reduction.
//
// Bandwidth notes. Every lane keeps 4 x 16 B of weights in flight (2 rows x 2 chunks), 2 KB per
// warp; at <= 64 registers (NC = 1) 4 blocks = 32 warps fit an SM: 64 KB in flight, well above what
// H100 HBM3 needs per SM (~3.35 TB/s x ~0.7 us / 132 SMs = ~18 KB). BF16 costs ~1 FMA + 1 integer
// op per weight: memory-bound. NVFP4 gives 32 weights per load; E2M1 is decoded by masking nibble
// pairs straight into fp16 bits (magnitude to bits 9..11, sign to bit 15: exact, times 2^-14,
// folded into the block scale) and widening to f32: ~2 integer ops + 1 widen + 1 FMA per weight
// and row, ~4 issue slots per 0.5 byte, i.e. ~13 B/clk/SM of issue capacity against ~14.5 B/clk/SM
// of H100 bandwidth: the NVFP4 GEMV sits near both limits. Staged x costs one L2 read of K floats
// per block of 16 / ksplit rows, a visible overhead at high ksplit.
//
// Next steps for speed (in order of value):
//  1. NVFP4: x split into bf16x3 (or f16 hi/lo) and mma.sync m16n8k16 with e2m1 -> f16 via lop3,
//     or re-lay the codes at upload so one lane's 8 nibbles map to an MMA fragment; removes the
//     ALU bound and gives prefill tensor cores in the same kernel.
//  2. Give gemv_kernel (N = 2..8, MTP verify) gemv1_kernel's row groups and split K; stage x once
//     per SM for MUL_MAT_ID (persistent blocks over (row, slot)) instead of once per block; the
//     NVFP4 decode (~3 integer/convert ops per weight) is near the issue limit at full bandwidth.
#include "cuda/gemv.cuh"

#include "cuda/mul-mat.cuh"

namespace mul_mat {
namespace {

// ---- GEMV kernel: contiguous rows, 16-byte chunks, x staged in shared memory ---------------------

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

__device__ __forceinline__ uint32_t word_of(const uint4& v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

__device__ __forceinline__ float2 half2_bits_to_float2(uint32_t bits) {
    __half2 h;
    memcpy(&h, &bits, 4);
    return __half22float2(h);
}

// Dequantise group g (G elements) of a chunk into f. NVFP4 values come out scaled by 2^-14.
template <int WT, int G>
__device__ __forceinline__ void dequant_group(const uint4& v, int g, float (&f)[G]) {
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
    } else if constexpr (WT == GLM_TYPE_F8_E4M3) {
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
    } else {  // NVFP4: group g = words 2g, 2g+1 (16 codes, one block)
        // Per 32-bit word (elements 0..7, low nibble = even element), four fp16 pairs as in
        // e2m1_fast (values times 2^-14), each built with two masks and two shifts:
        // (0, 4) from nibbles 0 and 4, (1, 5), (2, 6), (3, 7); magnitude bits to fp16 bits 9..11
        // (and 25..27), sign bits to 15 (and 31).
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const uint32_t u = word_of(v, 2 * g + i);
            const float2 p04 = half2_bits_to_float2(((u & 0x00070007u) << 9) | ((u & 0x00080008u) << 12));
            const float2 p15 = half2_bits_to_float2(((u & 0x00700070u) << 5) | ((u & 0x00800080u) << 8));
            const float2 p26 = half2_bits_to_float2(((u & 0x07000700u) << 1) | ((u & 0x08000800u) << 4));
            const float2 p37 = half2_bits_to_float2(((u & 0x70007000u) >> 3) | (u & 0x80008000u));
            f[8 * i + 0] = p04.x;
            f[8 * i + 4] = p04.y;
            f[8 * i + 1] = p15.x;
            f[8 * i + 5] = p15.y;
            f[8 * i + 2] = p26.x;
            f[8 * i + 6] = p26.y;
            f[8 * i + 3] = p37.x;
            f[8 * i + 7] = p37.y;
        }
    }
}

// acc[r][n] += dot(chunk of row r, x[k0 .. k0 + E) of column n).
template <int WT, int NC>
__device__ __forceinline__ void gemv_chunk(const uint4 (&v)[kRowsPerWarp], const uint32_t (&sc)[kRowsPerWarp],
                                           const float* xs, int64_t xstride, int64_t k0,
                                           float (&acc)[kRowsPerWarp][NC]) {
    constexpr int E = kChunkElems<WT>, G = E < 16 ? E : 16;
#pragma unroll
    for (int g = 0; g < E / G; ++g) {
        float f[kRowsPerWarp][G];
        float bs[kRowsPerWarp];
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
            dequant_group<WT, G>(v[r], g, f[r]);
            if constexpr (WT == GLM_TYPE_NVFP4) bs[r] = e4m3_fast((sc[r] >> (8 * g)) & 0xffu) * 16384.0f;
            else bs[r] = 1.0f;
        }
#pragma unroll
        for (int n = 0; n < NC; ++n) {
            const float* xc = xs + n * xstride + xs_index(k0 + g * G);
            float part[kRowsPerWarp];
#pragma unroll
            for (int r = 0; r < kRowsPerWarp; ++r) part[r] = 0.0f;
#pragma unroll
            for (int q = 0; q < G / 4; ++q) {
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
            for (int r = 0; r < kRowsPerWarp; ++r) {
                if constexpr (WT == GLM_TYPE_NVFP4) acc[r][n] = fmaf(part[r], bs[r], acc[r][n]);
                else acc[r][n] += part[r];
            }
        }
    }
}

// The K loop of one warp over rows m0, m0 + 1 (clamped to M - 1): chunks c0, c0 + step, ...
template <int WT, int NC>
__device__ __forceinline__ void gemv_rows(const MmArgs& a, const Slice& sl, const float* xs, int64_t xstride,
                                          int64_t m0, int64_t c0, int64_t step, int64_t nchunks,
                                          float (&acc)[kRowsPerWarp][NC]) {
    constexpr int E = kChunkElems<WT>;
    const uint4* wrow[kRowsPerWarp];
    const uint16_t* srow[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
        const int64_t m = m0 + r < a.M ? m0 + r : a.M - 1;  // rows past M compute a duplicate, never stored
        wrow[r] = reinterpret_cast<const uint4*>(sl.w + m * a.w.nb[1]);
        srow[r] = WT == GLM_TYPE_NVFP4 ? reinterpret_cast<const uint16_t*>(sl.ws + m * a.w.snb[1]) : nullptr;
    }
    int64_t c = c0;
    for (; c + step < nchunks; c += 2 * step) {  // two chunks per row in flight
        uint4 v0[kRowsPerWarp], v1[kRowsPerWarp];
        uint32_t s0[kRowsPerWarp], s1[kRowsPerWarp];
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
            v0[r] = __ldg(wrow[r] + c);
            v1[r] = __ldg(wrow[r] + c + step);
            if constexpr (WT == GLM_TYPE_NVFP4) {
                s0[r] = __ldg(srow[r] + c);
                s1[r] = __ldg(srow[r] + c + step);
            } else {
                s0[r] = s1[r] = 0;
            }
        }
        gemv_chunk<WT, NC>(v0, s0, xs, xstride, c * E, acc);
        gemv_chunk<WT, NC>(v1, s1, xs, xstride, (c + step) * E, acc);
    }
    if (c < nchunks) {
        uint4 v0[kRowsPerWarp];
        uint32_t s0[kRowsPerWarp];
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
            v0[r] = __ldg(wrow[r] + c);
            if constexpr (WT == GLM_TYPE_NVFP4) s0[r] = __ldg(srow[r] + c);
            else s0[r] = 0;
        }
        gemv_chunk<WT, NC>(v0, s0, xs, xstride, c * E, acc);
    }
}

// grid: x = row groups of kRowsPerWarp * kGemvWarps / ksplit rows, y = slices (grid-stride),
// z = column groups of NC. dynamic smem: NC * xs_stride(K) floats. With ksplit > 1, the ksplit
// warps of a row group take interleaved 32-chunk stripes of K and their sums meet in shared
// memory (fixed order: deterministic).
template <int WT, int NC, bool IDS>
__global__ void __launch_bounds__(kGemvThreads, NC == 1 ? 4 : NC <= 4 ? 2 : 1) gemv_kernel(MmArgs a) {
    extern __shared__ float4 smem_f4[];
    float* xs = reinterpret_cast<float*>(smem_f4);
    __shared__ float part_sums[kGemvWarps][kRowsPerWarp][NC];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int ksplit = a.ksplit, kpart = warp % ksplit, rgroup = warp / ksplit;
    const int64_t xstride = xs_stride(a.K);
    const int64_t n0 = int64_t(blockIdx.z) * NC;
    const int64_t m0 = int64_t(blockIdx.x) * (kRowsPerWarp * (kGemvWarps / ksplit)) + rgroup * kRowsPerWarp;
    const int64_t nchunks = a.K / kChunkElems<WT>, step = 32 * int64_t(ksplit);

    for (int64_t s = blockIdx.y; s < a.n_slices; s += gridDim.y) {
        const Slice sl = resolve_slice<WT, IDS>(a, s);
        __syncthreads();  // the previous slice's readers are done with xs
#pragma unroll
        for (int c = 0; c < NC; ++c) {
            const int64_t n = n0 + c;
            stage_column<1>(xs + c * xstride, n < a.N ? sl.x + n * a.x_nb[1] : nullptr, a.x_nb[0], a.K);
        }
        __syncthreads();

        float acc[kRowsPerWarp][NC];
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
            for (int n = 0; n < NC; ++n) acc[r][n] = 0.0f;
        if (m0 < a.M) gemv_rows<WT, NC>(a, sl, xs, xstride, m0, kpart * 32 + lane, step, nchunks, acc);

#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
            for (int n = 0; n < NC; ++n) {
#pragma unroll
                for (int off = 16; off > 0; off >>= 1) acc[r][n] += __shfl_xor_sync(0xffffffffu, acc[r][n], off);
            }
        if (ksplit > 1) {  // uniform over the block
            if (lane == 0)
#pragma unroll
                for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
                    for (int n = 0; n < NC; ++n) part_sums[warp][r][n] = acc[r][n];
            __syncthreads();
            if (kpart == 0)
#pragma unroll
                for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
                    for (int n = 0; n < NC; ++n) {
                        float v = part_sums[warp][r][n];
                        for (int p = 1; p < ksplit; ++p) v += part_sums[warp + p][r][n];
                        acc[r][n] = v;
                    }
        }
        if (kpart == 0)
#pragma unroll
            for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
                for (int n = 0; n < NC; ++n)
                    if (lane == r * NC + n && m0 + r < a.M && n0 + n < a.N)
                        store_dst(a, sl, m0 + r, n0 + n, acc[r][n] * sl.g);
    }
}
static_assert(kRowsPerWarp * kMaxCols <= 32, "one lane stores each (row, column) result");

// ---- single-column GEMV (N = 1: decode mul_mat and every mul_mat_id) ----------------------------
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
// weights: see gemv1_kernel.
constexpr int kGemv1Unroll = 2;

// NVFP4 chunk (32 codes = 2 blocks of 16) of each row against x, one 16-element block at a time:
// the block's 16 x values are read once for all rows, each row's codes are decoded 8 at a time
// (fp16 bit trick as in dequant_group, values times 2^-14) into a block partial sum, and the block
// scale (times 2^14) is applied once per block. Fewer live registers than dequant_group's 16 floats
// per row.
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
                const uint32_t u = word_of(v[r], 2 * g + i);
                const float2 p04 = half2_bits_to_float2(((u & 0x00070007u) << 9) | ((u & 0x00080008u) << 12));
                const float2 p15 = half2_bits_to_float2(((u & 0x00700070u) << 5) | ((u & 0x00800080u) << 8));
                const float2 p26 = half2_bits_to_float2(((u & 0x07000700u) << 1) | ((u & 0x08000800u) << 4));
                const float2 p37 = half2_bits_to_float2(((u & 0x70007000u) >> 3) | (u & 0x80008000u));
                p = fmaf(p04.x, x[8 * i + 0], p);
                p = fmaf(p15.x, x[8 * i + 1], p);
                p = fmaf(p26.x, x[8 * i + 2], p);
                p = fmaf(p37.x, x[8 * i + 3], p);
                p = fmaf(p04.y, x[8 * i + 4], p);
                p = fmaf(p15.y, x[8 * i + 5], p);
                p = fmaf(p26.y, x[8 * i + 6], p);
                p = fmaf(p37.y, x[8 * i + 7], p);
            }
            acc[r][0] = fmaf(p, e4m3_fast((sc[r] >> (8 * g)) & 0xffu) * 16384.0f, acc[r][0]);
        }
    }
}

// PAIR: the fused gate/up/SwiGLU. A row group owns one output row m; its kRowsPerWarp = 2 rows are
// row m of the gate weight (a.w) and row m of the up weight (a.w2), so the loads in flight, the x
// staging and the sums are those of the plain kernel, and the group stores silu(gate) * up.
template <int WT, bool IDS, bool PAIR>
__global__ void __launch_bounds__(kGemvThreads, WT == GLM_TYPE_NVFP4 ? 2 : 3) gemv1_kernel(MmArgs a) {
    extern __shared__ float4 smem_f4[];
    float* xs = reinterpret_cast<float*>(smem_f4);
    __shared__ float part_sums[kGemvWarps][kRowsPerWarp];
    constexpr int E = kChunkElems<WT>, U = kGemv1Unroll, R = kRowsPerWarp;
    constexpr int RM = PAIR ? 1 : R;  // output rows per group
    static_assert(!PAIR || R == 2, "paired mode: row 0 gate, row 1 up");
    const int G = a.ksplit;
    const int t = int(threadIdx.x) & (G - 1), grp = int(threadIdx.x) / G;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t rows_per_block = int64_t(RM) * (kGemvThreads / G);
    const int64_t m0 = int64_t(blockIdx.x) * rows_per_block + int64_t(grp) * RM;
    const bool active = m0 < a.M;
    const int nchunks = int(a.K / E), stride = U * G;  // K < 2^31 (checked by the launcher)
    const uint8_t* staged_x = nullptr;

    for (int64_t sb = blockIdx.y; sb * a.spb < a.n_slices; sb += gridDim.y) {
        const int64_t s_end = (sb + 1) * a.spb < a.n_slices ? (sb + 1) * a.spb : a.n_slices;
        for (int64_t s = sb * a.spb; s < s_end; ++s) {
            const Slice sl = resolve_slice<WT, IDS, PAIR>(a, s);
            const uint4* wrow[R];
            const uint16_t* srow[R];
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const int64_t mr = PAIR ? m0 : m0 + r;
                const int64_t m = mr < a.M ? mr : a.M - 1;  // rows past M: a duplicate, never stored
                const bool up = PAIR && r == 1;
                const int64_t nb1 = up ? a.w2.nb[1] : a.w.nb[1], snb1 = up ? a.w2.snb[1] : a.w.snb[1];
                wrow[r] = reinterpret_cast<const uint4*>((up ? sl.w2 : sl.w) + m * nb1);
                srow[r] = WT == GLM_TYPE_NVFP4 ? reinterpret_cast<const uint16_t*>((up ? sl.ws2 : sl.ws) + m * snb1)
                                               : nullptr;
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

            if (sl.x != staged_x) {  // uniform: every thread resolves the same slice
                __syncthreads();     // the previous slice's readers are done with xs
                stage_column<4>(xs, sl.x, a.x_nb[0], a.K);
                __syncthreads();
                staged_x = sl.x;
            }

            float acc[R][1];
#pragma unroll
            for (int r = 0; r < R; ++r) acc[r][0] = 0.0f;
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
                        if constexpr (WT == GLM_TYPE_NVFP4) nvfp4_chunk1(cv[u], cs[u], xs, c * E, acc);
                        else gemv_chunk<WT, 1>(cv[u], cs[u], xs, 0, c * E, acc);
                    }
                }
            }

            const int width = G < 32 ? G : 32;
#pragma unroll
            for (int r = 0; r < R; ++r)
                for (int off = width >> 1; off > 0; off >>= 1) acc[r][0] += __shfl_xor_sync(0xffffffffu, acc[r][0], off);
            if (G > 32) {  // uniform over the block
                if (lane == 0)
#pragma unroll
                    for (int r = 0; r < R; ++r) part_sums[warp][r] = acc[r][0];
                __syncthreads();
                if (t == 0) {
                    const int nw = G / 32;
#pragma unroll
                    for (int r = 0; r < R; ++r) {
                        float sum = part_sums[warp][r];
                        for (int p = 1; p < nw; ++p) sum += part_sums[warp + p][r];
                        acc[r][0] = sum;
                    }
                }
                __syncthreads();  // part_sums is free for the next slice
            }
            if (t == 0) {
                if constexpr (PAIR) {
                    // gate and up as their MUL_MAT nodes would store them, then SWIGLU's formula
                    const float gate = acc[0][0] * sl.g, up = acc[1][0] * sl.g2;
                    if (m0 < a.M) store_dst(a, sl, m0, 0, gate / (1.0f + expf(-gate)) * up);
                } else {
#pragma unroll
                    for (int r = 0; r < R; ++r)
                        if (m0 + r < a.M) store_dst(a, sl, m0 + r, 0, acc[r][0] * sl.g);
                }
            }
        }
    }
}
// ---- launchers --------------------------------------------------------------------------------

constexpr int64_t kMaxGemvSmem = 96 * 1024;  // bytes of staged x per block (opt-in above 48 KiB)

int64_t chunk_elems_host(glm_type t) {
    return t == GLM_TYPE_F32 ? 4 : t == GLM_TYPE_F8_E4M3 ? 16 : t == GLM_TYPE_NVFP4 ? 32 : 8;
}

template <int WT, int NC, bool IDS>
void launch_gemv_nc(CudaContext& ctx, const MmArgs& a) {
    const size_t smem = size_t(NC) * size_t(xs_stride(a.K)) * sizeof(float);
    auto kernel = gemv_kernel<WT, NC, IDS>;
    static SmemOptIn opted_in;
    cuda_allow_smem(kernel, smem, ctx.device, opted_in);
    const int64_t rows_per_block = kRowsPerWarp * (kGemvWarps / a.ksplit);
    const dim3 grid(unsigned(ceil_div(a.M, rows_per_block)), grid_dim(a.n_slices), unsigned(ceil_div(a.N, NC)));
    kernel<<<grid, kGemvThreads, smem, ctx.stream>>>(a);
    CUDA_CHECK_LAUNCH();
}

// Split K over 2, 4 or 8 warps when the row groups alone would leave the SMs short of loads in
// flight (< 2 blocks per SM: small M, e.g. kv_a's 576 rows, or 8 experts x 512 rows per rank),
// as long as every warp still gets >= 2 chunks per lane.
int choose_ksplit(const CudaContext& ctx, glm_type wt, const MmArgs& a, int nc) {
    const int64_t n_sm = ctx.n_sm > 0 ? ctx.n_sm : 132;
    const int64_t nchunks = a.K / chunk_elems_host(wt);
    const int64_t other = std::min<int64_t>(a.n_slices, 65535) * ceil_div(a.N, nc);
    int ksplit = 1;
    while (ksplit < kGemvWarps && ceil_div(a.M, kRowsPerWarp * (kGemvWarps / ksplit)) * other < 2 * n_sm &&
           nchunks >= 64 * 2 * ksplit)
        ksplit *= 2;
    return ksplit;
}

// gemv1_kernel's row-group width G: every thread gets >= kGemv1Unroll chunks of each row where K
// allows (G <= 32 rounds K's chunk count down: down_proj's 16 NVFP4 chunks give G = 8, four row
// groups per warp, no idle lanes); then G doubles (split K over more threads) while the grid has
// fewer than 12 warps per SM (each doubling re-stages x for half as many rows per block). A group
// owns rows_per_group output rows (2; 1 in paired mode). H100, N = 1: expert gate/up G = 32 (256
// blocks), down G = 8 (768 blocks), o_proj/q_b/lm_head 32, q_a 64, kv_a 256. Paired, at TP 4:
// routed experts (8 x 512 rows, NVFP4) G = 32 (512 blocks), shared expert (512 rows, BF16) G = 128
// (256 blocks), dense MLP (3072 rows) G = 32 (384 blocks).
int choose_group(const CudaContext& ctx, glm_type wt, const MmArgs& a, int64_t slices, int rows_per_group) {
    const int64_t n_sm = ctx.n_sm > 0 ? ctx.n_sm : 132;
    const int64_t nchunks = a.K / chunk_elems_host(wt);
    auto threads = [&](int64_t g) {
        return ceil_div(a.M, int64_t(rows_per_group) * (kGemvThreads / g)) * int64_t(kGemvThreads) * slices;
    };
    int64_t g = 1;
    while (g < 32 && 2 * g * kGemv1Unroll <= nchunks) g *= 2;
    while (g < kGemvThreads && 2 * g * kGemv1Unroll <= nchunks && threads(g) < 12 * 32 * n_sm)
        g *= 2;
    return int(g);
}

template <int WT, bool IDS, bool PAIR>
void launch_gemv1(CudaContext& ctx, const MmArgs& a0) {
    MmArgs a = a0;
    const int64_t n_sm = ctx.n_sm > 0 ? ctx.n_sm : 132;
    const int rows_per_group = PAIR ? 1 : kRowsPerWarp;
    a.ksplit = choose_group(ctx, glm_type(WT), a, std::min<int64_t>(a.n_slices, 65535), rows_per_group);
    const int64_t rows_per_block = int64_t(rows_per_group) * (kGemvThreads / a.ksplit);
    const int64_t bx = ceil_div(a.M, rows_per_block);
    GLM_ASSERT(bx <= 0x7fffffff && a.K < (int64_t(1) << 31));
    // Several slices per block only when the grid would be far beyond one resident wave
    // (prefill-sized MUL_MAT_ID); decode keeps one slice per block.
    a.spb = std::max<int64_t>(1, std::min<int64_t>(8, bx * a.n_slices / (8 * n_sm)));
    const size_t smem = size_t(xs_stride(a.K)) * sizeof(float);
    auto kernel = gemv1_kernel<WT, IDS, PAIR>;
    static SmemOptIn opted_in;
    cuda_allow_smem(kernel, smem, ctx.device, opted_in);
    const dim3 grid(unsigned(bx), grid_dim(ceil_div(a.n_slices, a.spb)));
    kernel<<<grid, kGemvThreads, smem, ctx.stream>>>(a);
    CUDA_CHECK_LAUNCH();
}

// N >= 2 (N = 1 and MUL_MAT_ID go to gemv1_kernel). When only one staged column fits shared
// memory, one gemv1_kernel launch per column (x and dst offset to that column).
template <int WT>
void launch_gemv_columns(CudaContext& ctx, const MmArgs& a, int nc) {
    switch (nc) {
        case 1:
            for (int64_t n = 0; n < a.N; ++n) {
                MmArgs c = a;
                c.N = 1;
                c.x += n * a.x_nb[1];
                c.dst += n * a.d_nb[1];
                launch_gemv1<WT, false, false>(ctx, c);
            }
            break;
        case 2: launch_gemv_nc<WT, 2, false>(ctx, a); break;
        case 3: launch_gemv_nc<WT, 3, false>(ctx, a); break;
        case 4: launch_gemv_nc<WT, 4, false>(ctx, a); break;
        case 5: launch_gemv_nc<WT, 5, false>(ctx, a); break;
        case 6: launch_gemv_nc<WT, 6, false>(ctx, a); break;
        case 7: launch_gemv_nc<WT, 7, false>(ctx, a); break;
        default: launch_gemv_nc<WT, 8, false>(ctx, a); break;
    }
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
        if (nc * xs_stride(K) * int64_t(sizeof(float)) <= kMaxGemvSmem) return int(nc);
    return 0;
}

void launch_gemv(CudaContext& ctx, const MmArgs& a, glm_type wt, bool ids, int nc) {
    with_weight_type(wt, [&](auto wt_tag) {
        constexpr int WT = decltype(wt_tag)::value;
        if (ids) {
            launch_gemv1<WT, true, false>(ctx, a);
        } else if (a.N == 1) {
            launch_gemv1<WT, false, false>(ctx, a);
        } else {
            MmArgs g = a;
            g.ksplit = choose_ksplit(ctx, wt, a, nc);
            launch_gemv_columns<WT>(ctx, g, nc);
        }
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
    // One token: MUL_MAT with one x column (more columns read each weight row once per column here,
    // where gemv_kernel reads it once for all); MUL_MAT_ID with the token counts gemv1_kernel serves
    // unfused (more go to the grouped tensor-core GEMM).
    if (op == GLM_OP_MUL_MAT ? x->ne[1] != 1 : gate->src[2]->ne[1] > kMaxCols) return false;
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
            if (ids) launch_gemv1<WT, true, true>(ctx, a);
            else launch_gemv1<WT, false, true>(ctx, a);
        }
    });
    return true;
}
