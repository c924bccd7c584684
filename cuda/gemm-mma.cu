// Tensor-core GEMMs for prefill: MUL_MAT with N > 8 columns (BF16 / F16 / NVFP4 weights) and
// MUL_MAT_ID with T > 8 tokens (BF16 / NVFP4 experts), on warp-level mma.sync m16n8k16 bf16 with f32
// accumulation (portable to sm_90, sm_100 and sm_120: no wgmma, no TMA).
//
// Operands. dst[m, n] = sum_k W[m, k] * X[n, k]: W rows and X columns are both contiguous along K,
// which is exactly the "row.col" operand order of mma.sync, so both tiles sit in shared memory as
// [row][k] bf16 and are read with ldmatrix (no transposes). Shared tiles are rows of 64 bytes
// (kBK = 32 elements = 4 chunks of 16 B) with the chunk index XOR-swizzled by (row >> 1) & 3, so the
// 8 row addresses of an ldmatrix phase and the 16-byte stores of the staging code both hit 8
// distinct bank quads without padding.
//  - BF16 weights are copied as they are; F16 weights are rounded to bf16 (11 -> 8 significant
//    bits) while staged.
//  - NVFP4 weights are dequantised into bf16 while staged: the 3 magnitude bits of an E2M1 code go
//    to bf16 bits 6..8 and its sign to bit 15, which is the code's value times 2^-126 (code 1 lands
//    on the bf16 subnormal 0.5 * 2^-126, exactly); one bf16x2 multiply by block_scale * 2^(126 - 8)
//    makes it e2m1 * block_scale * 2^-8, exact in bf16 (<= 6 significant bits, exponent in range;
//    PTX bf16 arithmetic keeps subnormals). The 2^8 and the per-expert global scale are applied in
//    the f32 epilogue. The bit trick pairs nibbles (i, i + 4) of a 32-bit word, so within every 8
//    consecutive k the shared tile holds the order 0 4 1 5 2 6 3 7; the activations are staged in
//    the same order, and a dot product does not care about the order of its terms.
//  - Activations (F32, any strides) are rounded to bf16 when staged (MmaActivations::bf16), or split
//    into bf16 hi + lo with a second MMA per fragment (bf16x2) for f32-grade results.
//
// Pipeline. 256 threads (8 warps, each a 64 x (BN / warps_n) sub-tile of m16n8 fragments), two
// shared stages: the global loads of stage k + 1 are issued into registers before the MMAs of stage
// k, then converted and stored to the other stage, one __syncthreads per stage. Register staging
// (rather than cp.async) because every operand but BF16 weights needs a conversion on the way.
// Rows past M read row M - 1 and columns past N read zeros; neither is stored. K past the end reads
// zeros on both sides (a NaN weight times a zero x would still poison the sum).
//
// Tile shapes. Per 32-wide K step a 128 x 128 tile reads 8 KB of bf16 weights + 16 KB of f32 x for
// 1 MFLOP (43 FLOP/B from L2); NVFP4 weights are 4x smaller, so NVFP4 uses 256 x 64 (4.5 + 8 KB per
// MFLOP, 80 FLOP/B). Dense BF16/F16: 128 x 128 for N > 64, 128 x 64 otherwise. Routed experts
// (NVFP4): 256 x 64, or 256 x 32 when the average expert gets <= 40 (token, slot) pairs.
//
// MUL_MAT_ID grouping (gemm-group.cuh: group_kernel, one block of 1024 threads): count the pairs per expert
// (warp-aggregated shared atomics: one hot expert does not serialise), exclusive prefix sums of the
// counts and of the token tiles per expert, the tile table {expert, first pair, pair count} and the
// pairs scattered into expert order, all in static __device__ scratch (kMmaMaxPairs pairs, no
// allocation after start-up). The grouped GEMM's grid has an upper bound of tiles
// (ceil(P / BN) + min(E, P)); blocks past the real count exit at once. Within an expert the pair
// order depends on atomics, but every output column is an independent dot product computed in the
// same k order wherever it sits in a tile, so results are bitwise reproducible.
//
// The tile above is the fallback. In the default bf16 activation mode, BF16 weights with 16-byte rows
// and NVFP4 weights with contiguous scales take the streamed tiles of gemm-pipe.cuh instead: x
// rounded to bf16 once per op (g_xcopy), cp.async stages, NVFP4 decoded straight into fragments
// (1.3-1.4x this tile on one H100; bench/RESULTS.md). Unpaired BF16 products then go to cuBLAS when
// the backend has a handle (gemm-blas.cuh), reading the same bf16 copy. Next steps for speed: block
// rasterisation for L2 reuse of the weight panels, and grouping the ids once per layer instead of
// once per expert projection.
#include "cuda/gemm-mma.cuh"

#include "cuda/common.cuh"
#include "cuda/gemm-blas.cuh"
#include "cuda/gemm-group.cuh"
#include "cuda/gemm-pipe.cuh"

#include <cuda_fp8.h>

#include <algorithm>
#include <atomic>
#include <type_traits>

namespace {

constexpr int kThreads = 256;  // 8 warps
constexpr int kBK = 32;        // K per stage: 64 B of bf16 per tile row = 4 chunks of 16 B

std::atomic<int> g_activation_mode{int(MmaActivations::bf16)};

// ---- the bf16 copy of the activations that the streamed tiles read (gemm-pipe.cuh) ---------------
constexpr int64_t kCopyElems = int64_t(1) << 24;  // 32 MiB per device: a 2048-token chunk of 6144-wide x
__device__ __nv_bfloat16 g_xcopy[kCopyElems];

// ---- kernel parameters (validated by the launchers; kernels trust them) --------------------------
struct MmaParams {
    // Weight element (k, m) of slice (i2, i3): w + k * 2 + m * w_nb1 + i2 * w_nb2 + i3 * w_nb3 for
    // BF16/F16 with a_vec (w_nb0 == 2 otherwise any); NVFP4: codes byte k / 2 of the row, block
    // scale at ws + (k / 16) * s_nb0 + m * s_nb1 + i2 * s_nb2 + i3 * s_nb3, global[i2 + i3 * w_ne2].
    const uint8_t* w;
    int64_t w_nb0, w_nb1, w_nb2, w_nb3;
    const uint8_t* ws;
    int64_t s_nb0, s_nb1, s_nb2, s_nb3;
    const float* global;
    int64_t w_ne2;
    const uint8_t* x;  // F32 [K, N, ...]: element (k, n, b2, b3) at x + k*x_nb0 + n*x_nb1 + ...
    int64_t x_nb0, x_nb1, x_nb2, x_nb3;
    uint8_t* dst;  // F32, nb0 == 4
    int64_t d_nb1, d_nb2, d_nb3;
    int64_t K, M, N;
    // MUL_MAT: slice s = b2 + b3 * ne2 uses weight slice (b2 / r2, b3 / r3)
    int64_t n_slices, ne2, r2, r3;
    // MUL_MAT_ID: pair s = j + t * n_used reads x column (x_bcast ? 0 : j) of token t
    int n_used, x_bcast;
    int a_vec;  // BF16/F16: 16-byte aligned rows, K % 8 == 0 -> uint4 loads
    int x_vec;  // x_nb0 == 4, 16-byte aligned columns, K % 4 == 0 -> float4 loads
    // Paired streamed tiles (gate / up / SwiGLU): the up weights, with w's and ws's strides.
    const uint8_t* w2;
    const uint8_t* ws2;
    const float* global2;
};

template <int BM, int BN, int XS>
struct TileCfg {
    static constexpr int kWarpsM = BM / 64, kWarpsN = 8 / kWarpsM;
    static constexpr int kWN = BN / kWarpsN, kNI = kWN / 8;  // warp tile 64 x kWN, kNI n8 fragments
    static constexpr int kAUnits = BM * 4, kBUnits = BN * 4;  // 16-byte units per stage
    static constexpr size_t kSmem = size_t(2 * kAUnits + 2 * XS * kBUnits) * 16 + size_t(BN) * 2 * sizeof(void*);
    static_assert(BM % 128 == 0 && kWarpsM * kWarpsN == 8 && kNI % 2 == 0 && kNI >= 2, "tile shape");
};

// 16-byte unit of (row, chunk) in a stage: the chunk is XOR-swizzled so that the rows 0..7 of an
// ldmatrix phase (row stride 64 B) land on 8 distinct bank quads.
__device__ __forceinline__ int swz(int row, int chunk) { return row * 4 + (chunk ^ ((row >> 1) & 3)); }

// Shared with the streamed tiles (gemm-pipe.cuh): ldmatrix, the MMA (not volatile: a pure function
// of its registers, free for the scheduler to interleave), the e2m1 pair decode and the scale factor.
using gemm_pipe::e2m1_pair;
using gemm_pipe::fp4_factor;
using gemm_pipe::kFp4Shift;
using gemm_pipe::ldsm_x4;
using gemm_pipe::mma16816;

__device__ __forceinline__ uint32_t bf16x2_bits(float lo, float hi) {
    const __nv_bfloat162 b = __floats2bfloat162_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &b, 4);
    return u;
}

// ---- weight staging --------------------------------------------------------------------------------
// BF16 / F16: a thread owns BM / 64 chunks of 8 elements (chunk id = tid + r * 256: row = id / 4,
// chunk = id % 4, so 4 neighbouring lanes read one row's 64 contiguous bytes).
template <int WT, int BM>
struct DenseA {
    static constexpr int R = BM * 4 / kThreads;
    uint4 v[R];

    __device__ __forceinline__ void load(const MmaParams& p, const uint8_t* w, const uint8_t*, int64_t m0, int64_t k0) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int id = int(threadIdx.x) + r * kThreads, row = id >> 2, c = id & 3;
            const int64_t m = min(m0 + row, p.M - 1), k = k0 + c * 8;
            const uint8_t* rp = w + m * p.w_nb1;
            if (p.a_vec) {
                v[r] = k < p.K ? __ldg(reinterpret_cast<const uint4*>(rp + k * 2)) : make_uint4(0, 0, 0, 0);
            } else {
                uint32_t h[8];
#pragma unroll
                for (int i = 0; i < 8; ++i)
                    h[i] = k + i < p.K ? uint32_t(*reinterpret_cast<const uint16_t*>(rp + (k + i) * p.w_nb0)) : 0u;
                v[r] = make_uint4(h[0] | (h[1] << 16), h[2] | (h[3] << 16), h[4] | (h[5] << 16), h[6] | (h[7] << 16));
            }
        }
    }

    __device__ __forceinline__ void store(uint4* stage) const {
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int id = int(threadIdx.x) + r * kThreads;
            uint4 u = v[r];
            if constexpr (WT == GLM_TYPE_F16) {
                uint32_t* words = reinterpret_cast<uint32_t*>(&u);
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    __half2 h;
                    memcpy(&h, &words[i], 4);
                    const float2 f = __half22float2(h);
                    words[i] = bf16x2_bits(f.x, f.y);
                }
            }
            stage[swz(id >> 2, id & 3)] = u;
        }
    }
};

// NVFP4: a thread owns BM / 128 blocks of 16 codes (8 bytes) and their E4M3 scale (block id =
// tid + r * 256: row = id / 2, block = id % 2 of the 32-wide stage).
template <int BM>
struct Nvfp4A {
    static constexpr int R = BM * 2 / kThreads;
    uint2 v[R];
    uint32_t sc[R];

    __device__ __forceinline__ void load(const MmaParams& p, const uint8_t* w, const uint8_t* ws, int64_t m0, int64_t k0) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int id = int(threadIdx.x) + r * kThreads, row = id >> 1, b = id & 1;
            const int64_t m = min(m0 + row, p.M - 1), k = k0 + b * 16;
            if (k < p.K) {  // K % 16 == 0: a block is all in or all out
                v[r] = __ldg(reinterpret_cast<const uint2*>(w + m * p.w_nb1 + k / 2));
                sc[r] = __ldg(ws + m * p.s_nb1 + (k / 16) * p.s_nb0);
            } else {
                v[r] = make_uint2(0, 0);
                sc[r] = 0;  // code 0 times scale 0: a zero weight
            }
        }
    }

    // 8 codes of one 32-bit word -> 8 bf16 in the order 0 4 1 5 2 6 3 7, times the scale factor.
    static __device__ __forceinline__ uint4 decode8(uint32_t u, __nv_bfloat162 f) {
        return make_uint4(e2m1_pair<0>(u, f), e2m1_pair<1>(u, f), e2m1_pair<2>(u, f), e2m1_pair<3>(u, f));
    }

    __device__ __forceinline__ void store(uint4* stage) const {
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int id = int(threadIdx.x) + r * kThreads, row = id >> 1, b = id & 1;
            const __nv_bfloat162 f = fp4_factor(uint8_t(sc[r]));
            stage[swz(row, 2 * b)] = decode8(v[r].x, f);
            stage[swz(row, 2 * b + 1)] = decode8(v[r].y, f);
        }
    }
};

template <int WT, int BM>
using ALoader = std::conditional_t<WT == GLM_TYPE_NVFP4, Nvfp4A<BM>, DenseA<WT, BM>>;

// ---- activation staging ----------------------------------------------------------------------------
// A thread owns groups of 8 consecutive k of one column (group id = tid + r * 256: column = id / 4,
// group = id % 4). PERM: store in the NVFP4 tile order 0 4 1 5 2 6 3 7. XS == 2: also the bf16
// remainder x - bf16(x) into the second plane.
template <int BN, int XS, bool PERM>
struct XLoader {
    static constexpr int G = BN * 4, R = (G + kThreads - 1) / kThreads;
    float f[R][8];

    __device__ __forceinline__ void load(const MmaParams& p, const uint8_t* const* xcol, int64_t k0) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int id = int(threadIdx.x) + r * kThreads;
            if (G % kThreads != 0 && id >= G) break;
            const uint8_t* col = xcol[id >> 2];
            const int64_t k = k0 + (id & 3) * 8;
            if (p.x_vec) {  // K % 4 == 0: each float4 is all in or all out
                const float4 z = make_float4(0.f, 0.f, 0.f, 0.f);
                const float4 a = col && k < p.K ? __ldg(reinterpret_cast<const float4*>(col + k * 4)) : z;
                const float4 b = col && k + 4 < p.K ? __ldg(reinterpret_cast<const float4*>(col + k * 4 + 16)) : z;
                f[r][0] = a.x, f[r][1] = a.y, f[r][2] = a.z, f[r][3] = a.w;
                f[r][4] = b.x, f[r][5] = b.y, f[r][6] = b.z, f[r][7] = b.w;
            } else {
#pragma unroll
                for (int i = 0; i < 8; ++i)
                    f[r][i] = col && k + i < p.K ? *reinterpret_cast<const float*>(col + (k + i) * p.x_nb0) : 0.0f;
            }
        }
    }

    __device__ __forceinline__ void store(uint4* stage, int plane_units) const {
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int id = int(threadIdx.x) + r * kThreads;
            if (G % kThreads != 0 && id >= G) break;
            float v[8];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                v[2 * i] = f[r][PERM ? i : 2 * i];
                v[2 * i + 1] = f[r][PERM ? i + 4 : 2 * i + 1];
            }
            uint32_t hi[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) hi[i] = bf16x2_bits(v[2 * i], v[2 * i + 1]);
            const int u = swz(id >> 2, id & 3);
            stage[u] = make_uint4(hi[0], hi[1], hi[2], hi[3]);
            if constexpr (XS == 2) {
                uint32_t lo[4];
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const float a = __uint_as_float(hi[i] << 16), b = __uint_as_float(hi[i] & 0xffff0000u);
                    // exact differences; an infinite x keeps hi = inf, lo = 0 (inf - inf would be NaN)
                    lo[i] = bf16x2_bits(isinf(a) ? 0.0f : v[2 * i] - a, isinf(b) ? 0.0f : v[2 * i + 1] - b);
                }
                stage[plane_units + u] = make_uint4(lo[0], lo[1], lo[2], lo[3]);
            }
        }
    }
};

// ---- the tile GEMM ---------------------------------------------------------------------------------
// One BM x BN output tile of one weight slice: xcol[n] / dcol[n] are the column pointers (nullptr:
// column not present), scale the f32 epilogue factor.
template <int WT, int BM, int BN, int XS>
__device__ __forceinline__ void gemm_tile(const MmaParams& p, const uint8_t* w, const uint8_t* ws, float scale,
                                          int64_t m0, uint4* a_s, uint4* b_s, const uint8_t* const* xcol,
                                          uint8_t* const* dcol) {
    using C = TileCfg<BM, BN, XS>;
    constexpr int NI = C::kNI;
    const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
    const int wm = warp % C::kWarpsM, wn = warp / C::kWarpsM;
    ALoader<WT, BM> al;
    XLoader<BN, XS, WT == GLM_TYPE_NVFP4> xl;
    const int64_t nk = (p.K + kBK - 1) / kBK;

    al.load(p, w, ws, m0, 0);
    xl.load(p, xcol, 0);
    al.store(a_s);
    xl.store(b_s, C::kBUnits);
    __syncthreads();

    float acc[4][NI][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j)
#pragma unroll
            for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.0f;

    for (int64_t kt = 0; kt < nk; ++kt) {
        const int st = int(kt & 1);
        const bool more = kt + 1 < nk;
        if (more) {  // next stage's global loads in flight during this stage's MMAs
            al.load(p, w, ws, m0, (kt + 1) * kBK);
            xl.load(p, xcol, (kt + 1) * kBK);
        }
        const uint4* as = a_s + st * C::kAUnits;
        const uint4* bs = b_s + st * XS * C::kBUnits;
#pragma unroll
        for (int ks = 0; ks < kBK / 16; ++ks) {
            uint32_t af[4][4];
#pragma unroll
            for (int i = 0; i < 4; ++i)
                ldsm_x4(af[i], as + swz(wm * 64 + i * 16 + (lane & 15), ks * 2 + (lane >> 4)));
#pragma unroll
            for (int x = 0; x < XS; ++x) {
                uint32_t bf[NI][2];
#pragma unroll
                for (int jp = 0; jp < NI / 2; ++jp) {
                    uint32_t r[4];
                    const int n = wn * C::kWN + jp * 16 + (lane & 7) + ((lane >> 4) << 3);
                    ldsm_x4(r, bs + x * C::kBUnits + swz(n, ks * 2 + ((lane >> 3) & 1)));
                    bf[2 * jp][0] = r[0];
                    bf[2 * jp][1] = r[1];
                    bf[2 * jp + 1][0] = r[2];
                    bf[2 * jp + 1][1] = r[3];
                }
#pragma unroll
                for (int i = 0; i < 4; ++i)
#pragma unroll
                    for (int j = 0; j < NI; ++j) mma16816(acc[i][j], af[i], bf[j][0], bf[j][1]);
            }
        }
        if (more) {
            al.store(a_s + (st ^ 1) * C::kAUnits);
            xl.store(b_s + (st ^ 1) * XS * C::kBUnits, C::kBUnits);
        }
        __syncthreads();
    }

    // Epilogue: fragment (i, j) holds rows g and g + 8 of its m16 block, columns 2 * tq, 2 * tq + 1.
    const int g = lane >> 2, tq = lane & 3;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int64_t m = m0 + wm * 64 + i * 16 + g + 8 * h;
            if (m >= p.M) continue;
#pragma unroll
            for (int j = 0; j < NI; ++j)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    uint8_t* d = dcol[wn * C::kWN + j * 8 + 2 * tq + e];
                    if (d) *reinterpret_cast<float*>(d + m * 4) = acc[i][j][2 * h + e] * scale;
                }
        }
}

template <int WT>
__device__ __forceinline__ float slice_scale(const MmaParams& p, int64_t i2, int64_t i3, bool up = false) {
    if constexpr (WT == GLM_TYPE_NVFP4) return (up ? p.global2 : p.global)[i2 + i3 * p.w_ne2] * float(1 << kFp4Shift);
    else return 1.0f;
}

// Two blocks per SM (<= 128 registers) except where the 64 x 32 warp tiles of the big tiles would
// spill: with hi/lo fragments (XS == 2), and on sm_100 / sm_120, whose ptxas spills ~350 bytes for
// the 128 x 128 bf16 tile at 128 registers.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 1000
constexpr bool kWideRegs = true;
#else
constexpr bool kWideRegs = false;
#endif
template <int BM, int BN, int XS>
constexpr int kMinBlocks = BM * BN >= 128 * 128 && (XS == 2 || (kWideRegs && BN == 128)) ? 1 : 2;

// grid: x = M tiles, y = tiles of BN columns, z = slices (grid-stride). dynamic smem: TileCfg::kSmem.
template <int WT, int BM, int BN, int XS>
__global__ void __launch_bounds__(kThreads, kMinBlocks<BM, BN, XS>) mma_mul_mat_kernel(const MmaParams p) {
    grid_dependency_wait();
    using C = TileCfg<BM, BN, XS>;
    extern __shared__ uint4 smem[];
    uint4* a_s = smem;
    uint4* b_s = smem + 2 * C::kAUnits;
    uint8_t** dcol = reinterpret_cast<uint8_t**>(b_s + 2 * XS * C::kBUnits);
    const uint8_t** xcol = const_cast<const uint8_t**>(dcol + BN);
    const int64_t m0 = int64_t(blockIdx.x) * BM, n0 = int64_t(blockIdx.y) * BN;
    for (int64_t s = blockIdx.z; s < p.n_slices; s += gridDim.z) {
        const int64_t b2 = s % p.ne2, b3 = s / p.ne2, i2 = b2 / p.r2, i3 = b3 / p.r3;
        __syncthreads();  // the previous slice's epilogue is done with dcol
        for (int n = int(threadIdx.x); n < BN; n += kThreads) {
            const bool in = n0 + n < p.N;
            xcol[n] = in ? p.x + (n0 + n) * p.x_nb1 + b2 * p.x_nb2 + b3 * p.x_nb3 : nullptr;
            dcol[n] = in ? p.dst + (n0 + n) * p.d_nb1 + b2 * p.d_nb2 + b3 * p.d_nb3 : nullptr;
        }
        __syncthreads();
        const uint8_t* w = p.w + i2 * p.w_nb2 + i3 * p.w_nb3;
        const uint8_t* ws = WT == GLM_TYPE_NVFP4 ? p.ws + i2 * p.s_nb2 + i3 * p.s_nb3 : nullptr;
        gemm_tile<WT, BM, BN, XS>(p, w, ws, slice_scale<WT>(p, i2, i3), m0, a_s, b_s, xcol, dcol);
    }
}

// grid: x = M tiles, y = an upper bound of the expert token tiles (g_tiles; blocks past g_n_tiles
// exit). dynamic smem: TileCfg::kSmem.
template <int WT, int BM, int BN, int XS>
__global__ void __launch_bounds__(kThreads, kMinBlocks<BM, BN, XS>) mma_mul_mat_id_kernel(const MmaParams p) {
    grid_dependency_wait();
    using C = TileCfg<BM, BN, XS>;
    if (int(blockIdx.y) >= g_n_tiles) return;
    extern __shared__ uint4 smem[];
    uint4* a_s = smem;
    uint4* b_s = smem + 2 * C::kAUnits;
    uint8_t** dcol = reinterpret_cast<uint8_t**>(b_s + 2 * XS * C::kBUnits);
    const uint8_t** xcol = const_cast<const uint8_t**>(dcol + BN);
    const int4 tile = g_tiles[blockIdx.y];
    const int64_t e = tile.x;
    for (int n = int(threadIdx.x); n < BN; n += kThreads) {
        if (n < tile.z) {
            const int s = g_pairs[tile.y + n];
            const int64_t j = s % p.n_used, t = s / p.n_used;
            xcol[n] = p.x + (p.x_bcast ? 0 : j) * p.x_nb1 + t * p.x_nb2;
            dcol[n] = p.dst + j * p.d_nb1 + t * p.d_nb2;
        } else {
            xcol[n] = nullptr;
            dcol[n] = nullptr;
        }
    }
    __syncthreads();
    const uint8_t* w = p.w + e * p.w_nb2;
    const uint8_t* ws = WT == GLM_TYPE_NVFP4 ? p.ws + e * p.s_nb2 : nullptr;
    gemm_tile<WT, BM, BN, XS>(p, w, ws, slice_scale<WT>(p, e, 0), int64_t(blockIdx.x) * BM, a_s, b_s, xcol, dcol);
}

// ---- streamed tiles over the bf16 copy (gemm-pipe.cuh) ------------------------------------------------

__global__ void __launch_bounds__(256) xcopy_kernel(const gemm_pipe::ConvertParams p) {
    grid_dependency_wait();
    gemm_pipe::copy_to_bf16(p, g_xcopy);
}

template <int WT, int BM, int BN, int WM, int ST>
using PipeCfg = gemm_pipe::PipeCfg<WT, BM, BN, WM, ST>;

// The weights of slice (i2, i3) of p (and of p's up weights when PAIRED).
template <int WT, bool PAIRED>
__device__ __forceinline__ gemm_pipe::TileWeights tile_weights(const MmaParams& p, int64_t i2, int64_t i3) {
    const int64_t wo = i2 * p.w_nb2 + i3 * p.w_nb3, so = i2 * p.s_nb2 + i3 * p.s_nb3;
    const bool fp4 = WT == GLM_TYPE_NVFP4;
    gemm_pipe::TileWeights tw{p.w + wo, fp4 ? p.ws + so : nullptr, slice_scale<WT>(p, i2, i3), nullptr, nullptr, 0.0f};
    if constexpr (PAIRED) {
        tw.w2 = p.w2 + wo;
        tw.ws2 = fp4 ? p.ws2 + so : nullptr;
        tw.scale2 = slice_scale<WT>(p, i2, i3, true);
    }
    return tw;
}

// As mma_mul_mat_kernel; x column n of slice s is row n + N * s of g_xcopy. PAIRED: BM / 2 output
// rows per tile.
template <int WT, int BM, int BN, int WM, int ST, bool PAIRED>
__global__ void __launch_bounds__(kThreads, PipeCfg<WT, BM, BN, WM, ST>::kBlocksPerSm) pipe_mul_mat_kernel(const MmaParams p) {
    grid_dependency_wait();
    using C = PipeCfg<WT, BM, BN, WM, ST>;
    extern __shared__ uint4 smem[];
    uint8_t* stages = reinterpret_cast<uint8_t*>(smem);
    uint8_t** dcol = reinterpret_cast<uint8_t**>(stages + ST * C::kStage);
    const __nv_bfloat16** xcol = static_cast<const __nv_bfloat16**>(static_cast<void*>(dcol + BN));
    const int64_t kp = gemm_pipe::padded_k(p.K), m0 = int64_t(blockIdx.x) * (PAIRED ? BM / 2 : BM);
    const int64_t n0 = int64_t(blockIdx.y) * BN;
    for (int64_t s = blockIdx.z; s < p.n_slices; s += gridDim.z) {
        const int64_t b2 = s % p.ne2, b3 = s / p.ne2, i2 = b2 / p.r2, i3 = b3 / p.r3;
        __syncthreads();  // the previous slice's epilogue is done with dcol
        for (int n = int(threadIdx.x); n < BN; n += kThreads) {
            const bool in = n0 + n < p.N;
            xcol[n] = in ? g_xcopy + (s * p.N + n0 + n) * kp : nullptr;
            dcol[n] = in ? p.dst + (n0 + n) * p.d_nb1 + b2 * p.d_nb2 + b3 * p.d_nb3 : nullptr;
        }
        __syncthreads();
        gemm_pipe::pipe_tile<WT, BM, BN, WM, ST, PAIRED>(p, tile_weights<WT, PAIRED>(p, i2, i3), m0, stages, xcol, dcol);
    }
}

// As mma_mul_mat_id_kernel; x column j of token t (of the chunk) is row (x_bcast ? 0 : j) + x_cols * t
// of g_xcopy.
template <int WT, int BM, int BN, int WM, int ST, bool PAIRED>
__global__ void __launch_bounds__(kThreads, PipeCfg<WT, BM, BN, WM, ST>::kBlocksPerSm) pipe_mul_mat_id_kernel(const MmaParams p) {
    grid_dependency_wait();
    using C = PipeCfg<WT, BM, BN, WM, ST>;
    if (int(blockIdx.y) >= g_n_tiles) return;
    extern __shared__ uint4 smem[];
    uint8_t* stages = reinterpret_cast<uint8_t*>(smem);
    uint8_t** dcol = reinterpret_cast<uint8_t**>(stages + ST * C::kStage);
    const __nv_bfloat16** xcol = static_cast<const __nv_bfloat16**>(static_cast<void*>(dcol + BN));
    const int64_t kp = gemm_pipe::padded_k(p.K), x_cols = p.x_bcast ? 1 : p.n_used;
    const int4 tile = g_tiles[blockIdx.y];
    for (int n = int(threadIdx.x); n < BN; n += kThreads) {
        if (n < tile.z) {
            const int s = g_pairs[tile.y + n];
            const int64_t j = s % p.n_used, t = s / p.n_used;
            xcol[n] = g_xcopy + ((p.x_bcast ? 0 : j) + x_cols * t) * kp;
            dcol[n] = p.dst + j * p.d_nb1 + t * p.d_nb2;
        } else {
            xcol[n] = nullptr;
            dcol[n] = nullptr;
        }
    }
    __syncthreads();
    const int64_t m0 = int64_t(blockIdx.x) * (PAIRED ? BM / 2 : BM);
    gemm_pipe::pipe_tile<WT, BM, BN, WM, ST, PAIRED>(p, tile_weights<WT, PAIRED>(p, tile.x, 0), m0, stages, xcol, dcol);
}

// ---- launchers -------------------------------------------------------------------------------------

bool aligned(const void* p, int64_t a) { return reinterpret_cast<uintptr_t>(p) % uintptr_t(a) == 0; }

// Every stride of a dimension with more than one element is a multiple of a.
bool strides_aligned(const glm_tensor* t, int first_dim, int64_t a) {
    for (int i = first_dim; i < 4; ++i)
        if (t->ne[i] > 1 && int64_t(t->nb[i]) % a != 0) return false;
    return true;
}

// Can the MMA path read w? Sets a_vec (BF16/F16 rows as 16-byte chunks).
bool weight_ok(const glm_tensor* w, MmaActivations mode, int* a_vec) {
    const int64_t K = w->ne[0];
    switch (w->type) {
        case GLM_TYPE_F16:
            if (mode == MmaActivations::bf16x2) return false;  // f32-grade mode: F16 -> bf16 would not be
            [[fallthrough]];
        case GLM_TYPE_BF16:
            if (w->nb[0] != 2) return false;  // transposed / permuted views: the f32 tiled path
            *a_vec = aligned(w->data, 16) && strides_aligned(w, 1, 16) && K % 8 == 0;
            return true;
        case GLM_TYPE_NVFP4: {
            const glm_tensor* s = w->block_scale;
            const glm_tensor* g = w->global_scale;
            if (!s || !g || s->type != GLM_TYPE_F8_E4M3 || g->type != GLM_TYPE_F32 || !glm_is_contiguous(g)) return false;
            if (w->nb[0] != 1 || K % 16 != 0 || !aligned(w->data, 8) || !strides_aligned(w, 1, 8)) return false;
            *a_vec = 1;
            return true;
        }
        default: return false;  // F32 (routers, indexer weights: kept exact) and F8_E4M3: the f32 tiled path
    }
}

bool x_vec_ok(const glm_tensor* x) {
    return x->nb[0] == sizeof(float) && x->ne[0] % 4 == 0 && aligned(x->data, 16) && strides_aligned(x, 1, 16);
}

MmaParams base_params(const glm_tensor* w, const glm_tensor* x, glm_tensor* dst, int a_vec) {
    MmaParams p{};
    p.w = static_cast<const uint8_t*>(w->data);
    p.w_nb0 = int64_t(w->nb[0]);
    p.w_nb1 = int64_t(w->nb[1]);
    p.w_nb2 = int64_t(w->nb[2]);
    p.w_nb3 = int64_t(w->nb[3]);
    p.w_ne2 = w->ne[2];
    if (w->type == GLM_TYPE_NVFP4) {
        const glm_tensor* s = w->block_scale;
        GLM_ASSERT(s->ne[0] * GLM_NVFP4_BLOCK == w->ne[0] && s->ne[1] == w->ne[1] && s->ne[2] == w->ne[2] &&
                   s->ne[3] == w->ne[3] && glm_nelements(w->global_scale) == w->ne[2] * w->ne[3]);
        p.ws = static_cast<const uint8_t*>(s->data);
        p.s_nb0 = int64_t(s->nb[0]);
        p.s_nb1 = int64_t(s->nb[1]);
        p.s_nb2 = int64_t(s->nb[2]);
        p.s_nb3 = int64_t(s->nb[3]);
        p.global = static_cast<const float*>(w->global_scale->data);
    }
    p.x = static_cast<const uint8_t*>(x->data);
    p.x_nb0 = int64_t(x->nb[0]);
    p.x_nb1 = int64_t(x->nb[1]);
    p.x_nb2 = int64_t(x->nb[2]);
    p.x_nb3 = int64_t(x->nb[3]);
    p.dst = static_cast<uint8_t*>(dst->data);
    p.d_nb1 = int64_t(dst->nb[1]);
    p.d_nb2 = int64_t(dst->nb[2]);
    p.d_nb3 = int64_t(dst->nb[3]);
    p.K = w->ne[0];
    p.M = w->ne[1];
    p.a_vec = a_vec;
    p.x_vec = x_vec_ok(x) ? 1 : 0;
    return p;
}

template <int WT, int BM, int BN, int XS>
void launch_dense(CudaContext& ctx, const MmaParams& p) {
    constexpr size_t smem = TileCfg<BM, BN, XS>::kSmem;
    auto kernel = mma_mul_mat_kernel<WT, BM, BN, XS>;
    static SmemOptIn opted_in;
    cuda_allow_smem(kernel, smem, ctx.device, opted_in);
    const int64_t gy = ceil_div(p.N, BN);
    GLM_ASSERT(gy <= 65535);
    const dim3 grid(unsigned(ceil_div(p.M, BM)), unsigned(gy), unsigned(std::min<int64_t>(p.n_slices, 65535)));
    cuda_launch(ctx.stream, kernel, grid, kThreads, smem, p);
    CUDA_CHECK_LAUNCH();
}

template <int WT, int BM, int BN, int XS>
void launch_grouped(CudaContext& ctx, const MmaParams& p, int64_t n_pairs, int64_t n_experts) {
    constexpr size_t smem = TileCfg<BM, BN, XS>::kSmem;
    auto kernel = mma_mul_mat_id_kernel<WT, BM, BN, XS>;
    static SmemOptIn opted_in;
    cuda_allow_smem(kernel, smem, ctx.device, opted_in);
    const int64_t tile_bound = ceil_div(n_pairs, BN) + std::min(n_experts, n_pairs);
    GLM_ASSERT(tile_bound <= kMaxTiles);
    const dim3 grid(unsigned(ceil_div(p.M, BM)), unsigned(tile_bound));
    cuda_launch(ctx.stream, kernel, grid, kThreads, smem, p);
    CUDA_CHECK_LAUNCH();
}

template <int WT, int BM, int BN>
void launch_dense_mode(CudaContext& ctx, const MmaParams& p, MmaActivations mode) {
    if (mode == MmaActivations::bf16x2) launch_dense<WT, BM, BN, 2>(ctx, p);
    else launch_dense<WT, BM, BN, 1>(ctx, p);
}

template <int WT, int BM, int BN>
void launch_grouped_mode(CudaContext& ctx, const MmaParams& p, int64_t n_pairs, int64_t n_experts, MmaActivations mode) {
    if (mode == MmaActivations::bf16x2) launch_grouped<WT, BM, BN, 2>(ctx, p, n_pairs, n_experts);
    else launch_grouped<WT, BM, BN, 1>(ctx, p, n_pairs, n_experts);
}

MmaParams dense_params(const glm_tensor* w, const glm_tensor* x, glm_tensor* dst, int a_vec) {
    GLM_ASSERT(dst->ne[0] == w->ne[1] && dst->ne[1] == x->ne[1] && dst->ne[2] == x->ne[2] && dst->ne[3] == x->ne[3]);
    MmaParams p = base_params(w, x, dst, a_vec);
    p.N = x->ne[1];
    p.ne2 = x->ne[2];
    p.r2 = x->ne[2] / w->ne[2];
    p.r3 = x->ne[3] / w->ne[3];
    p.n_slices = x->ne[2] * x->ne[3];
    return p;
}

// ---- streamed tiles: where they apply, and their launches ------------------------------------------

// Build knob for A/B runs: -DGLM_GEMM_PIPE=0 keeps every product on the register-staged tile.
#ifndef GLM_GEMM_PIPE
#define GLM_GEMM_PIPE 1
#endif

// gemm-pipe.cuh's limits on w, beyond weight_ok's. F16 weights are rounded while staged: the register tile.
bool pipe_weight_ok(const glm_tensor* w, int a_vec) {
    if (!GLM_GEMM_PIPE) return false;
    if (w->type == GLM_TYPE_BF16) return a_vec != 0;
    if (w->type != GLM_TYPE_NVFP4) return false;
    const glm_tensor* s = w->block_scale;
    return aligned(w->data, 16) && strides_aligned(w, 1, 16) && s->nb[0] == 1 && aligned(s->data, 4) &&
           strides_aligned(s, 1, 4);
}

// The tile shapes: BM x BN, warps along M, stages in flight.
template <int WT, int BM, int BN, int WM, int ST>
struct Pipe {
    static constexpr size_t kSmem = PipeCfg<WT, BM, BN, WM, ST>::kSmem;
    static bool fits(const CudaContext& ctx) { return kSmem <= cuda_smem_optin(ctx.device); }

    // PAIRED (p.w2 set): silu(gate) * up, BM / 2 output rows per tile.
    template <bool PAIRED = false>
    static void dense(CudaContext& ctx, const MmaParams& p) {
        auto kernel = pipe_mul_mat_kernel<WT, BM, BN, WM, ST, PAIRED>;
        static SmemOptIn opted_in;
        cuda_allow_smem(kernel, kSmem, ctx.device, opted_in);
        const int64_t gy = ceil_div(p.N, BN);
        GLM_ASSERT(gy <= 65535);
        const dim3 grid(unsigned(ceil_div(p.M, PAIRED ? BM / 2 : BM)), unsigned(gy),
                        unsigned(std::min<int64_t>(p.n_slices, 65535)));
        cuda_launch(ctx.stream, kernel, grid, kThreads, kSmem, p);
        CUDA_CHECK_LAUNCH();
    }

    template <bool PAIRED = false>
    static void grouped(CudaContext& ctx, const MmaParams& p, int64_t n_pairs, int64_t n_experts) {
        auto kernel = pipe_mul_mat_id_kernel<WT, BM, BN, WM, ST, PAIRED>;
        static SmemOptIn opted_in;
        cuda_allow_smem(kernel, kSmem, ctx.device, opted_in);
        const int64_t tile_bound = ceil_div(n_pairs, BN) + std::min(n_experts, n_pairs);
        GLM_ASSERT(tile_bound <= kMaxTiles);
        const dim3 grid(unsigned(ceil_div(p.M, PAIRED ? BM / 2 : BM)), unsigned(tile_bound));
        cuda_launch(ctx.stream, kernel, grid, kThreads, kSmem, p);
        CUDA_CHECK_LAUNCH();
    }
};
// NVFP4: 8 warps along M, each 32 rows x all BN columns: a lane decodes its rows' codes once per
// stage for BN / 8 n8 fragments, so the wider the token tile, the fewer ALU instructions per MMA.
using PipeFp4Narrow = Pipe<GLM_TYPE_NVFP4, 256, 32, 8, 4>;  // <= 40 pairs per expert on average
using PipeFp4 = Pipe<GLM_TYPE_NVFP4, 256, 64, 8, 4>;
using PipeFp4Wide = Pipe<GLM_TYPE_NVFP4, 256, 128, 8, 4>;  // > 80 pairs per expert; one block per SM
// BF16: 2 x 4 warps. The big tile's 64 x 64 warp tiles read half the shared bytes per MMA of the
// 64 x 32 ones, at one block per SM; used where its blocks fill the GPU at least once.
using PipeBf16 = Pipe<GLM_TYPE_BF16, 128, 64, 2, 4>;
using PipeBf16Wide = Pipe<GLM_TYPE_BF16, 128, 128, 2, 3>;  // N > 64
using PipeBf16Big = Pipe<GLM_TYPE_BF16, 128, 256, 2, 3>;

// Build knob for A/B runs: -DGLM_PIPE_WIDE=0 keeps the 64-column NVFP4 and 128-column BF16 tiles.
#ifndef GLM_PIPE_WIDE
#define GLM_PIPE_WIDE 1
#endif

// x columns [c, c + cols) of every (i2, i3) slice (x shifted to column c by the caller) -> g_xcopy.
void launch_xcopy(CudaContext& ctx, const uint8_t* x, const MmaParams& p, int64_t cols, int64_t ne2, int64_t ne3,
                  bool permute) {
    gemm_pipe::ConvertParams c{};
    c.x = x;
    c.nb0 = p.x_nb0;
    c.nb1 = p.x_nb1;
    c.nb2 = p.x_nb2;
    c.nb3 = p.x_nb3;
    c.K = p.K;
    c.cols = cols;
    c.ne2 = ne2;
    c.ne3 = ne3;
    c.permute = permute ? 1 : 0;
    const int64_t chunks = gemm_pipe::padded_k(p.K) / 8 * cols * ne2 * ne3;
    GLM_ASSERT(chunks * 8 <= kCopyElems);
    const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(ceil_div(chunks, 256), int64_t(ctx.n_sm) * 8));
    cuda_launch(ctx.stream, xcopy_kernel, unsigned(blocks), 256, 0, c);
    CUDA_CHECK_LAUNCH();
}

// The BF16 product of c (its x already in g_xcopy) through cuBLAS; false, having launched nothing, where
// the backend has no handle or the slices are not evenly strided (a weight broadcast over groups).
bool blas_product(CudaContext& ctx, const glm_tensor* w, const glm_tensor* x, const MmaParams& c) {
    if (!ctx.blas) return false;
    const bool one_weight = w->ne[2] == 1;
    if (c.n_slices > 1 && (x->ne[3] != 1 || w->ne[3] != 1 || (c.r2 != 1 && !one_weight))) return false;
    if (c.d_nb1 % 4 != 0 || c.d_nb2 % 4 != 0) return false;
    static void* xcopy[kMaxDevices] = {};  // g_xcopy's address on each device
    GLM_ASSERT(ctx.device >= 0 && ctx.device < kMaxDevices);
    if (!xcopy[ctx.device]) CUDA_CHECK(cudaGetSymbolAddress(&xcopy[ctx.device], g_xcopy));
    const int64_t kp = gemm_pipe::padded_k(c.K);
    BlasBf16Product b{};
    b.w = reinterpret_cast<const __nv_bfloat16*>(c.w);
    b.ldw = c.w_nb1 / 2;
    b.w_stride = one_weight ? 0 : c.w_nb2 / 2;
    b.x = static_cast<const __nv_bfloat16*>(xcopy[ctx.device]);
    b.ldx = kp;
    b.x_stride = c.N * kp;
    b.dst = reinterpret_cast<float*>(c.dst);
    b.ldd = c.d_nb1 / 4;
    b.dst_stride = c.d_nb2 / 4;
    b.M = c.M;
    b.N = c.N;
    b.K = c.K;
    b.batch = c.n_slices;
    return cuda_blas_bf16_product(ctx, b);
}

// MUL_MAT through the streamed tiles; false (nothing launched) where they do not apply. Columns run in
// chunks that fit the copy; batched products (several slices) must fit it whole.
bool pipe_mul_mat(CudaContext& ctx, const glm_tensor* w, const glm_tensor* x, const MmaParams& p, bool paired) {
    if (!pipe_weight_ok(w, p.a_vec)) return false;
    const bool fp4 = w->type == GLM_TYPE_NVFP4;
    if (fp4 ? !PipeFp4::fits(ctx) : !PipeBf16::fits(ctx) || !PipeBf16Wide::fits(ctx)) return false;
    const int64_t cols_fit = kCopyElems / gemm_pipe::padded_k(p.K);
    if (cols_fit < 64 || (p.n_slices > 1 && p.N * p.n_slices > cols_fit)) return false;
    const int64_t step = p.n_slices > 1 ? p.N : std::min(p.N, cols_fit);
    for (int64_t n0 = 0; n0 < p.N; n0 += step) {
        MmaParams c = p;
        c.N = std::min(step, p.N - n0);
        c.dst += n0 * p.d_nb1;
        launch_xcopy(ctx, p.x + n0 * p.x_nb1, p, c.N, x->ne[2], x->ne[3], fp4);
        if (!fp4 && !paired && blas_product(ctx, w, x, c)) continue;
        const int64_t big_blocks = ceil_div(c.M, paired ? 64 : 128) * ceil_div(c.N, 256);
        const bool big = GLM_PIPE_WIDE && big_blocks >= ctx.n_sm && PipeBf16Big::fits(ctx);
        auto run = [&](auto tag) {
            constexpr bool kPaired = decltype(tag)::value;
            if (fp4) PipeFp4::dense<kPaired>(ctx, c);
            else if (big) PipeBf16Big::dense<kPaired>(ctx, c);
            else if (c.N > 64) PipeBf16Wide::dense<kPaired>(ctx, c);
            else PipeBf16::dense<kPaired>(ctx, c);
        };
        if (paired) run(std::true_type{});
        else run(std::false_type{});
    }
    return true;
}

// MUL_MAT_ID of w (and, paired, of p.w2: only through the streamed tiles, else nothing is launched
// and the result is false) over (token, slot) pairs grouped by expert.
bool mul_mat_id(CudaContext& ctx, const glm_tensor* w, const glm_tensor* ids, const MmaParams& p, bool paired) {
    const MmaActivations mode = cuda_mma_activations();
    const int64_t n_used = ids->ne[0], T = ids->ne[1], E = w->ne[2];
    // Token chunks of at most kMmaMaxPairs pairs (and, streamed, of an x copy that fits g_xcopy) share
    // the scratch one after another (same stream).
    const bool fp4 = w->type == GLM_TYPE_NVFP4;
    const int64_t x_cols = p.x_bcast ? 1 : n_used, copy_tokens = kCopyElems / (x_cols * gemm_pipe::padded_k(p.K));
    const bool pipe = mode == MmaActivations::bf16 && pipe_weight_ok(w, p.a_vec) && copy_tokens > 0 &&
                      (fp4 ? PipeFp4::fits(ctx) && PipeFp4Narrow::fits(ctx) : PipeBf16::fits(ctx));
    if (paired && !pipe) return false;
    if (p.M == 0 || n_used * T == 0) return true;
    const int64_t chunk = pipe ? std::min(kMmaMaxPairs / n_used, copy_tokens) : kMmaMaxPairs / n_used;
    // Token tile width from the average pairs per expert (of the first chunk). The 128-wide NVFP4 tile
    // pays for its one block per SM only over long K (measured: gate / up K = 6144 1.13x, down K = 512
    // 0.95x).
    const int64_t pairs = std::min(chunk, T) * n_used;
    const bool wide = GLM_PIPE_WIDE && pipe && fp4 && pairs > 80 * E && p.K >= 2048 && PipeFp4Wide::fits(ctx);
    const int bn = !fp4 ? 64 : pairs <= 40 * E ? 32 : wide ? 128 : 64;
    for (int64_t t0 = 0; t0 < T; t0 += chunk) {
        const int64_t tc = std::min(chunk, T - t0), n_pairs = tc * n_used;
        const uint8_t* ids_c = static_cast<const uint8_t*>(ids->data) + t0 * int64_t(ids->nb[1]);
        cuda_launch(ctx.stream, group_kernel, 1, kGroupThreads, 0, ids_c, int64_t(ids->nb[0]), int64_t(ids->nb[1]),
            int(n_used), int(n_pairs), int(E), bn);
        CUDA_CHECK_LAUNCH();
        MmaParams c = p;
        c.x += t0 * p.x_nb2;
        c.dst += t0 * p.d_nb2;
        if (pipe) {
            launch_xcopy(ctx, c.x, c, x_cols, tc, 1, fp4);
            auto run = [&](auto tag) {
                constexpr bool kPaired = decltype(tag)::value;
                if (!fp4) PipeBf16::grouped<kPaired>(ctx, c, n_pairs, E);
                else if (bn == 32) PipeFp4Narrow::grouped<kPaired>(ctx, c, n_pairs, E);
                else if (bn == 128) PipeFp4Wide::grouped<kPaired>(ctx, c, n_pairs, E);
                else PipeFp4::grouped<kPaired>(ctx, c, n_pairs, E);
            };
            if (paired) run(std::true_type{});
            else run(std::false_type{});
        } else if (!fp4) {
            launch_grouped_mode<GLM_TYPE_BF16, 128, 64>(ctx, c, n_pairs, E, mode);
        } else if (bn == 32) {
            launch_grouped_mode<GLM_TYPE_NVFP4, 256, 32>(ctx, c, n_pairs, E, mode);
        } else {
            launch_grouped_mode<GLM_TYPE_NVFP4, 256, 64>(ctx, c, n_pairs, E, mode);
        }
    }
    return true;
}

// The MUL_MAT_ID node checks shared by the plain and the paired launch; false: not handled here.
bool mul_mat_id_ok(const glm_tensor* w, const glm_tensor* x, const glm_tensor* ids, const glm_tensor* dst, int* a_vec) {
    if (w->type != GLM_TYPE_BF16 && w->type != GLM_TYPE_NVFP4) return false;
    if (x->type != GLM_TYPE_F32 || dst->type != GLM_TYPE_F32 || dst->nb[0] != sizeof(float)) return false;
    if (ids->type != GLM_TYPE_I32 || w->ne[3] != 1 || w->ne[2] > kMmaMaxExperts) return false;
    if (!weight_ok(w, cuda_mma_activations(), a_vec)) return false;
    GLM_ASSERT(x->ne[2] == ids->ne[1] && (x->ne[1] == 1 || x->ne[1] == ids->ne[0]) && w->ne[0] == x->ne[0]);
    GLM_ASSERT(dst->ne[0] == w->ne[1] && dst->ne[1] == ids->ne[0] && dst->ne[2] == ids->ne[1]);
    return ids->ne[0] <= kMmaMaxPairs;
}

MmaParams mul_mat_id_params(const glm_tensor* w, const glm_tensor* x, const glm_tensor* ids, glm_tensor* dst, int a_vec) {
    MmaParams p = base_params(w, x, dst, a_vec);
    p.N = 0;  // columns come from the tile table
    p.n_used = int(ids->ne[0]);
    p.x_bcast = x->ne[1] == 1 ? 1 : 0;
    return p;
}

}  // namespace

void cuda_mma_set_activations(MmaActivations mode) { g_activation_mode.store(int(mode)); }
MmaActivations cuda_mma_activations() { return MmaActivations(g_activation_mode.load()); }

bool cuda_mma_mul_mat(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* w = dst->src[0];
    const glm_tensor* x = dst->src[1];
    const MmaActivations mode = cuda_mma_activations();
    int a_vec = 0;
    if (x->type != GLM_TYPE_F32 || dst->type != GLM_TYPE_F32 || dst->nb[0] != sizeof(float)) return false;
    if (!weight_ok(w, mode, &a_vec)) return false;
    GLM_ASSERT(w->ne[0] == x->ne[0] && x->ne[2] % w->ne[2] == 0 && x->ne[3] % w->ne[3] == 0);
    MmaParams p = dense_params(w, x, dst, a_vec);
    if (p.M == 0 || p.N == 0 || p.n_slices == 0) return true;
    if (ceil_div(p.N, 64) > 65535) return false;
    if (mode == MmaActivations::bf16 && pipe_mul_mat(ctx, w, x, p, false)) return true;
    switch (w->type) {
        case GLM_TYPE_NVFP4: launch_dense_mode<GLM_TYPE_NVFP4, 256, 64>(ctx, p, mode); break;
        case GLM_TYPE_BF16:
            if (p.N > 64) launch_dense_mode<GLM_TYPE_BF16, 128, 128>(ctx, p, mode);
            else launch_dense_mode<GLM_TYPE_BF16, 128, 64>(ctx, p, mode);
            break;
        default:  // F16
            if (p.N > 64) launch_dense_mode<GLM_TYPE_F16, 128, 128>(ctx, p, mode);
            else launch_dense_mode<GLM_TYPE_F16, 128, 64>(ctx, p, mode);
            break;
    }
    return true;
}

bool cuda_mma_mul_mat_id(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* w = dst->src[0];
    const glm_tensor* x = dst->src[1];
    const glm_tensor* ids = dst->src[2];
    int a_vec = 0;
    if (!mul_mat_id_ok(w, x, ids, dst, &a_vec)) return false;
    return mul_mat_id(ctx, w, ids, mul_mat_id_params(w, x, ids, dst, a_vec), false);
}

bool cuda_mma_gate_up_swiglu(CudaContext& ctx, glm_tensor* gate, glm_tensor* up, glm_tensor* swiglu) {
    const glm_tensor* w = gate->src[0];
    const glm_tensor* w2 = up->src[0];
    const glm_tensor* x = gate->src[1];
    const glm_op op = gate->op;
    if (cuda_mma_activations() != MmaActivations::bf16) return false;  // the streamed tiles' mode
    if ((op != GLM_OP_MUL_MAT && op != GLM_OP_MUL_MAT_ID) || up->op != op || up->src[1] != x || up->src[2] != gate->src[2])
        return false;
    if (swiglu->op != GLM_OP_SWIGLU || swiglu->src[0] != gate || swiglu->src[1] != up) return false;
    if (!glm_same_shape(swiglu, gate) || !glm_same_shape(up, gate) || gate->type != GLM_TYPE_F32 || up->type != GLM_TYPE_F32)
        return false;
    // Unfused, x and ids may be dead once up has read them, so the arena may put the SWIGLU result over
    // their bytes; a later chunk of this launch would read them after an earlier one wrote it.
    if (bytes_overlap(swiglu, x) || (gate->src[2] && bytes_overlap(swiglu, gate->src[2]))) return false;
    // One set of strides serves both weights (and both scale tensors).
    if (w->type != w2->type || !glm_same_shape(w, w2)) return false;
    for (int i = 0; i < 4; ++i) {
        if (w->nb[i] != w2->nb[i]) return false;
        if (w->type == GLM_TYPE_NVFP4 && (!w2->block_scale || w->block_scale->nb[i] != w2->block_scale->nb[i])) return false;
    }
    int a_vec = 0, a_vec2 = 0;
    if (!weight_ok(w2, MmaActivations::bf16, &a_vec2) || !pipe_weight_ok(w2, a_vec2)) return false;
    MmaParams p;
    if (op == GLM_OP_MUL_MAT_ID) {
        if (!mul_mat_id_ok(w, x, gate->src[2], swiglu, &a_vec) || !pipe_weight_ok(w, a_vec)) return false;
        p = mul_mat_id_params(w, x, gate->src[2], swiglu, a_vec);
    } else {
        if (x->type != GLM_TYPE_F32 || swiglu->type != GLM_TYPE_F32 || swiglu->nb[0] != sizeof(float)) return false;
        if (!weight_ok(w, MmaActivations::bf16, &a_vec) || !pipe_weight_ok(w, a_vec)) return false;
        GLM_ASSERT(w->ne[0] == x->ne[0] && x->ne[2] % w->ne[2] == 0 && x->ne[3] % w->ne[3] == 0);
        p = dense_params(w, x, swiglu, a_vec);
        if (ceil_div(p.N, 64) > 65535) return false;
    }
    p.w2 = static_cast<const uint8_t*>(w2->data);
    if (w2->type == GLM_TYPE_NVFP4) {
        GLM_ASSERT(w2->global_scale && glm_nelements(w2->global_scale) == glm_nelements(w->global_scale));
        p.ws2 = static_cast<const uint8_t*>(w2->block_scale->data);
        p.global2 = static_cast<const float*>(w2->global_scale->data);
    }
    if (op == GLM_OP_MUL_MAT_ID) return mul_mat_id(ctx, w, gate->src[2], p, true);
    if (p.M == 0 || p.N == 0 || p.n_slices == 0) return true;
    return pipe_mul_mat(ctx, w, x, p, true);
}
