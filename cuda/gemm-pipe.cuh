// The streamed tile of the prefill GEMMs (included by gemm-mma.cu only): bf16 activations copied
// once per op, both operands fetched by cp.async into a ring of shared stages, NVFP4 weights decoded
// straight into mma fragments.
//
// Why. The register-staged tile of gemm-mma.cu converts f32 activations to bf16 in every block that
// reads them (once per M-tile) and can keep only two stages in flight, because every operand needs a
// conversion on its way to shared memory. Here the activations are rounded to bf16 once per op into a
// static device scratch (copy_to_bf16: 2 bytes per element for every M-tile instead of 4, and no
// conversion in the tile), so every operand byte can travel by cp.async and STAGES - 1 stages are in
// flight while the tensor cores work on one.
//
// NVFP4 fragments. A K stage is 64 wide; lane (g, tq) of a warp (g = lane / 4, tq = lane % 4) holds,
// for each of its rows, the 16 codes of NVFP4 block tq of the stage (8 bytes, one E4M3 scale). The
// e2m1 -> bf16 bit trick of gemm-mma.cu turns a 32-bit word of 8 codes into the pairs (0, 4), (1, 5),
// (2, 6), (3, 7); pair j = 0..7 of the block (words 0 and 1) becomes the lane's A register a0 (j even)
// or a2 (j odd) of k16 step j / 2, times the block scale. The activations are copied in the matching
// order (nvfp4_stage_source), so logical position l of a stage holds the x of physical k
// nvfp4_stage_source(l): a dot product does not care about the order of its terms. A weight row is
// thus read from shared memory as 8 bytes per lane and never stored back as bf16.
//
// Limits (the caller checks them, or keeps the register-staged tile): BF16 rows 16-byte aligned
// with K % 8 == 0; NVFP4 K % 16 == 0, rows 16-byte aligned, scales contiguous along K in rows
// 4-byte aligned. K past the end reads zeros on both sides (cp.async zero fill, and the copy is
// padded with zeros to a multiple of 64).
#pragma once

#include "cuda/common.cuh"

#include <cuda_fp8.h>

namespace gemm_pipe {

constexpr int kThreads = 256;  // 8 warps
constexpr int kBK = 64;        // K per stage: 128 B of bf16 per tile row = 8 chunks of 16 B
constexpr int kFp4Shift = 8;   // decoded NVFP4 holds e2m1 * block_scale * 2^-kFp4Shift (both tiles)

__host__ __device__ constexpr int64_t padded_k(int64_t K) { return (K + kBK - 1) / kBK * kBK; }

// Physical k (within a 64-wide stage) whose activation sits at logical position l: lane tq's
// register a0 / a2 of step s = l / 16 holds pair j = 2 s + (l % 16 >= 8) of block tq, element e = l % 2.
__host__ __device__ constexpr int nvfp4_stage_source(int l) {
    const int s = l >> 4, L = l & 15, tq = (L >> 1) & 3, e = L & 1, j = 2 * s + (L >> 3);
    return 16 * tq + (j >> 2) * 8 + (j & 3) + 4 * e;
}

// ---- the bf16 copy of the activations ------------------------------------------------------------
struct ConvertParams {
    const uint8_t* x;  // F32: element (k, c, i2, i3) at x + k * nb0 + c * nb1 + i2 * nb2 + i3 * nb3
    int64_t nb0, nb1, nb2, nb3;
    int64_t K, cols, ne2, ne3;  // row (c, i2, i3) of the copy is c + cols * (i2 + ne2 * i3)
    int permute;                // NVFP4 weights: stages in nvfp4_stage_source order
};

// out[rows][padded_k(K)] = bf16(x), zeros past K. One thread per 8 consecutive copy elements (one
// 16-byte store), grid-stride.
__device__ __forceinline__ void copy_to_bf16(const ConvertParams& p, __nv_bfloat16* out) {
    const int64_t kp = padded_k(p.K), chunks_per_row = kp / 8, n = chunks_per_row * p.cols * p.ne2 * p.ne3;
    for (int64_t id = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; id < n; id += int64_t(gridDim.x) * blockDim.x) {
        const int64_t row = id / chunks_per_row, k0 = (id % chunks_per_row) * 8;
        const int64_t c = row % p.cols, i2 = (row / p.cols) % p.ne2, i3 = row / (p.cols * p.ne2);
        const uint8_t* src = p.x + c * p.nb1 + i2 * p.nb2 + i3 * p.nb3;
        uint32_t w[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            float v[2];
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int64_t l = k0 + 2 * i + e;
                const int64_t k = p.permute ? (l & ~int64_t(kBK - 1)) + nvfp4_stage_source(int(l & (kBK - 1))) : l;
                v[e] = k < p.K ? *reinterpret_cast<const float*>(src + k * p.nb0) : 0.0f;
            }
            const __nv_bfloat162 b = __floats2bfloat162_rn(v[0], v[1]);
            memcpy(&w[i], &b, 4);
        }
        *reinterpret_cast<uint4*>(out + row * kp + k0) = make_uint4(w[0], w[1], w[2], w[3]);
    }
}

// ---- the tile ---------------------------------------------------------------------------------------
template <int WT, int BM, int BN, int WARPS_M, int STAGES>
struct PipeCfg {
    static constexpr bool kFp4 = WT == GLM_TYPE_NVFP4;
    static constexpr int kWarpsN = 8 / WARPS_M, kWM = BM / WARPS_M, kWN = BN / kWarpsN;
    static constexpr int kMI = kWM / 16, kNI = kWN / 8;  // m16 and n8 fragments per warp
    // Bytes of one stage: A (bf16 rows of 128 B, or NVFP4 rows of 32 B of codes + 4 scale bytes), B.
    static constexpr int kACodes = kFp4 ? BM * 32 : BM * 128, kAScales = kFp4 ? BM * 4 : 0;
    static constexpr int kStage = kACodes + kAScales + BN * 128;
    static constexpr size_t kSmem = size_t(STAGES) * kStage + size_t(BN) * 2 * sizeof(void*);
    // Two blocks per SM (<= 128 registers a thread) up to 64 accumulators a thread; one above.
    static constexpr int kBlocksPerSm = kMI * kNI * 4 > 64 ? 1 : 2;
    static_assert(WARPS_M * kWarpsN == 8 && kWM % 16 == 0 && kNI % 2 == 0 && kNI >= 2, "tile shape");
    static_assert(kStage % 16 == 0 && STAGES >= 2, "stage layout");
};

// 16-byte unit of (row, chunk) in a tile of 128-byte rows: chunk XOR (row % 8), so the 8 rows of an
// ldmatrix phase land on 8 distinct bank quads.
__device__ __forceinline__ int swz8(int row, int chunk) { return row * 8 + (chunk ^ (row & 7)); }

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

// cp.async of `bytes` (4 or 16) with the first `valid` of them from src and the rest zero.
template <int BYTES>
__device__ __forceinline__ void cp_async(void* dst, const void* src, int valid) {
    if constexpr (BYTES == 16)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(valid) : "memory");
    else
        asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(smem_u32(dst)), "l"(src), "n"(BYTES), "r"(valid)
                     : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p))
                 : "memory");
}

__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Pair J (0..3) of a word of 8 e2m1 codes -> bf16x2 (codes J, J + 4) holding code * 2^-126 (see
// gemm-mma.cu), then times the block's factor f: exact.
template <int J>
__device__ __forceinline__ uint32_t e2m1_pair(uint32_t u, __nv_bfloat162 f) {
    constexpr uint32_t kMag = 0x01C001C0u, kSign = 0x80008000u;
    uint32_t w;
    if constexpr (J == 0) w = ((u << 6) & kMag) | ((u << 12) & kSign);
    else if constexpr (J == 1) w = ((u << 2) & kMag) | ((u << 8) & kSign);
    else if constexpr (J == 2) w = ((u >> 2) & kMag) | ((u << 4) & kSign);
    else w = ((u >> 6) & kMag) | (u & kSign);
    __nv_bfloat162 b;
    memcpy(&b, &w, 4);
    b = __hmul2_rn(b, f);
    uint32_t o;
    memcpy(&o, &b, 4);
    return o;
}

// E4M3 block scale -> bf16x2 factor scale * 2^(126 - kFp4Shift) (exact; NaN stays NaN).
__device__ __forceinline__ __nv_bfloat162 fp4_factor(uint8_t s) {
    const __half_raw hs = __nv_cvt_fp8_to_halfraw(__nv_fp8_storage_t(s), __NV_E4M3);
    static_assert(126 - kFp4Shift == 118, "scale factor exponent");
    return __float2bfloat162_rn(__half2float(__half(hs)) * 0x1p118f);
}

// The weights of one tile: w / ws the slice's first row (codes, NVFP4 scales), scale the epilogue
// factor. PAIRED tiles (gate / up / SwiGLU) also have the up weights w2 / ws2 / scale2, with the same
// row strides: the tile's rows [0, BM / 2) are gate rows m0.., its rows [BM / 2, BM) the same up rows.
struct TileWeights {
    const uint8_t *w, *ws;
    float scale;
    const uint8_t *w2, *ws2;
    float scale2;
};

// One output tile of one weight slice: BM x BN, or (PAIRED) BM / 2 rows of silu(gate) * up. p: K, M
// and the row strides w_nb1 (weight rows) and s_nb1 (NVFP4 scale rows); xcol[n]: bf16 copy column n
// (padded_k(K) elements) or nullptr; dcol[n]: f32 output column or nullptr.
template <int WT, int BM, int BN, int WARPS_M, int STAGES, bool PAIRED, class P>
__device__ __forceinline__ void pipe_tile(const P& p, const TileWeights& tw, int64_t m0, uint8_t* smem,
                                          const __nv_bfloat16* const* xcol, uint8_t* const* dcol) {
    using C = PipeCfg<WT, BM, BN, WARPS_M, STAGES>;
    const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
    const int wm = warp % WARPS_M, wn = warp / WARPS_M;
    const int nk = int(padded_k(p.K) / kBK);
    const uint8_t* w = tw.w;  // any valid address: the source of zero-filled copies
    // Tile row -> weight row (clamped to M - 1: rows past M are computed, never stored).
    auto weight_row = [&](int row, bool& second) {
        second = PAIRED && row >= BM / 2;
        return min(m0 + (second ? row - BM / 2 : row), p.M - 1);
    };

    auto load_stage = [&](int slot, int kt) {
        uint8_t* st = smem + slot * C::kStage;
        const int64_t k0 = int64_t(kt) * kBK;
        if constexpr (C::kFp4) {
            // codes: BM rows x 2 chunks of 16 B (32 codes each); a chunk past K reads zeros
            for (int id = tid; id < BM * 2; id += kThreads) {
                const int row = id >> 1, c = id & 1;
                bool second;
                const int64_t m = weight_row(row, second), k = k0 + 32 * c;
                const int64_t left = (p.K - k) / 2;  // bytes of codes left in the row
                const int valid = left <= 0 ? 0 : left >= 16 ? 16 : int(left);
                cp_async<16>(st + row * 32 + c * 16, (second ? tw.w2 : tw.w) + m * p.w_nb1 + (valid ? k / 2 : 0), valid);
            }
            // scales: BM rows x 4 bytes
            for (int row = tid; row < BM; row += kThreads) {
                bool second;
                const int64_t m = weight_row(row, second);
                const int64_t left = (p.K - k0) / 16;  // scale bytes left in the row
                const int valid = left <= 0 ? 0 : left >= 4 ? 4 : int(left);
                cp_async<4>(st + C::kACodes + row * 4, (second ? tw.ws2 : tw.ws) + m * p.s_nb1 + (valid ? k0 / 16 : 0),
                            valid);
            }
        } else {
            for (int id = tid; id < BM * 8; id += kThreads) {
                const int row = id >> 3, c = id & 7;
                bool second;
                const int64_t m = weight_row(row, second), k = k0 + 8 * c;
                const int valid = k < p.K ? 16 : 0;  // K % 8 == 0
                cp_async<16>(st + swz8(row, c) * 16, (second ? tw.w2 : tw.w) + m * p.w_nb1 + (valid ? k * 2 : 0), valid);
            }
        }
        uint8_t* bs = st + C::kACodes + C::kAScales;
        for (int id = tid; id < BN * 8; id += kThreads) {
            const int n = id >> 3, c = id & 7;
            const __nv_bfloat16* col = xcol[n];
            cp_async<16>(bs + swz8(n, c) * 16, col ? static_cast<const void*>(col + k0 + 8 * c) : w, col ? 16 : 0);
        }
    };

    float acc[C::kMI][C::kNI][4];
#pragma unroll
    for (int i = 0; i < C::kMI; ++i)
#pragma unroll
        for (int j = 0; j < C::kNI; ++j)
#pragma unroll
            for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.0f;

#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < nk) load_stage(s, s);
        cp_async_commit();
    }
    const int g = lane >> 2, tq = lane & 3;
    for (int kt = 0; kt < nk; ++kt) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();  // stage kt is in; every warp is done with the slot refilled below
        if (kt + STAGES - 1 < nk) load_stage((kt + STAGES - 1) % STAGES, kt + STAGES - 1);
        cp_async_commit();

        const uint8_t* st = smem + (kt % STAGES) * C::kStage;
        const uint8_t* bs = st + C::kACodes + C::kAScales;
        // NVFP4: this lane's block tq of rows g and g + 8 of each m16 fragment (2 words each).
        [[maybe_unused]] uint2 codes[C::kMI][2];
        [[maybe_unused]] __nv_bfloat162 factor[C::kMI][2];
        if constexpr (C::kFp4) {
#pragma unroll
            for (int i = 0; i < C::kMI; ++i)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int row = wm * C::kWM + i * 16 + g + 8 * h;
                    codes[i][h] = *reinterpret_cast<const uint2*>(st + row * 32 + tq * 8);
                    factor[i][h] = fp4_factor(st[C::kACodes + row * 4 + tq]);
                }
        }
#pragma unroll
        for (int ks = 0; ks < kBK / 16; ++ks) {
            uint32_t af[C::kMI][4];
#pragma unroll
            for (int i = 0; i < C::kMI; ++i) {
                if constexpr (C::kFp4) {
                    // pairs j = 2 ks (a0, a1) and 2 ks + 1 (a2, a3) of the block: word ks / 2
                    const uint32_t u0 = ks < 2 ? codes[i][0].x : codes[i][0].y;
                    const uint32_t u1 = ks < 2 ? codes[i][1].x : codes[i][1].y;
                    if ((ks & 1) == 0) {
                        af[i][0] = e2m1_pair<0>(u0, factor[i][0]);
                        af[i][1] = e2m1_pair<0>(u1, factor[i][1]);
                        af[i][2] = e2m1_pair<1>(u0, factor[i][0]);
                        af[i][3] = e2m1_pair<1>(u1, factor[i][1]);
                    } else {
                        af[i][0] = e2m1_pair<2>(u0, factor[i][0]);
                        af[i][1] = e2m1_pair<2>(u1, factor[i][1]);
                        af[i][2] = e2m1_pair<3>(u0, factor[i][0]);
                        af[i][3] = e2m1_pair<3>(u1, factor[i][1]);
                    }
                } else {
                    ldsm_x4(af[i], st + swz8(wm * C::kWM + i * 16 + (lane & 15), ks * 2 + (lane >> 4)) * 16);
                }
            }
#pragma unroll
            for (int jp = 0; jp < C::kNI / 2; ++jp) {
                uint32_t r[4];
                const int n = wn * C::kWN + jp * 16 + (lane & 7) + ((lane >> 4) << 3);
                ldsm_x4(r, bs + swz8(n, ks * 2 + ((lane >> 3) & 1)) * 16);
#pragma unroll
                for (int i = 0; i < C::kMI; ++i) {
                    mma16816(acc[i][2 * jp], af[i], r[0], r[1]);
                    mma16816(acc[i][2 * jp + 1], af[i], r[2], r[3]);
                }
            }
        }
    }
    cp_async_wait<0>();
    __syncthreads();  // a next tile of this block may refill the stages

    // Epilogue: fragment (i, j) holds rows g and g + 8 of its m16 block, columns 2 tq and 2 tq + 1.
    // PAIRED: the up warps (the upper half of the warps along M) leave their products in shared
    // memory, the gate warps write silu(gate) * up (the formula of the SWIGLU op).
    constexpr int kUs = BN + 4;  // f32 row stride of the up products
    float* up_s = reinterpret_cast<float*>(smem);
    const bool up_warp = PAIRED && wm >= WARPS_M / 2;
    if constexpr (PAIRED) {
        static_assert(WARPS_M % 2 == 0 && size_t(BM / 2) * kUs * 4 <= size_t(STAGES) * C::kStage, "paired tile");
        if (up_warp) {
#pragma unroll
            for (int i = 0; i < C::kMI; ++i)
#pragma unroll
                for (int h = 0; h < 2; ++h)
#pragma unroll
                    for (int j = 0; j < C::kNI; ++j)
#pragma unroll
                        for (int e = 0; e < 2; ++e) {
                            const int r = (wm - WARPS_M / 2) * C::kWM + i * 16 + g + 8 * h;
                            up_s[r * kUs + wn * C::kWN + j * 8 + 2 * tq + e] = acc[i][j][2 * h + e] * tw.scale2;
                        }
        }
        __syncthreads();
    }
    if (up_warp) return;
#pragma unroll
    for (int i = 0; i < C::kMI; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int r = wm * C::kWM + i * 16 + g + 8 * h;
            const int64_t m = m0 + r;
            if (m >= p.M) continue;
#pragma unroll
            for (int j = 0; j < C::kNI; ++j)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int n = wn * C::kWN + j * 8 + 2 * tq + e;
                    uint8_t* d = dcol[n];
                    if (!d) continue;
                    float v = acc[i][j][2 * h + e] * tw.scale;
                    if constexpr (PAIRED) v = v / (1.0f + expf(-v)) * up_s[r * kUs + n];
                    *reinterpret_cast<float*>(d + m * 4) = v;
                }
        }
}

}  // namespace gemm_pipe
