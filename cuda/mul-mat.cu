// Matrix products: MUL_MAT (dense or NVFP4 weights, broadcast over ne2/ne3) and MUL_MAT_ID (routed
// experts). All arithmetic here is f32 (products and sums), as in the CPU reference; NVFP4 factors
// the per-slice global scale out of the sum (sum(e2m1 * block_scale * x) * global, exact algebra).
// The prefill GEMMs of gemm-mma.cu stage activations as bf16 (or bf16 hi + lo, see MmaActivations).
//
// Paths, by shape and layout (this file's dispatch; kernels of other files named):
//  - N <= 8 columns (decode, MTP verify) with weight rows contiguous along K, 16-byte aligned:
//    gemv.cu's gemv1_kernel (N = 1, and 2..8 columns staged per block; mul_mat_id with <= 8
//    tokens, pairs that share an expert grouped).
//  - N > 8 (prefill, MTP verify beyond 8 tokens) and MUL_MAT_ID with T > 8 tokens: the
//    tensor-core GEMMs of gemm-mma.cu (BF16 / F16 / NVFP4 weights with rows contiguous along K;
//    routed experts grouped by expert on the device; dense BF16 products through cuBLAS when the
//    backend has a handle, gemm-blas.cu). What they do not take comes here:
//  - transposed_gemv_kernel (N <= 8, BF16 weight views whose elements run contiguously along M,
//    nb1 == 2: the absorbed-MLA q_lat = W_UK^T q_nope product over a transposed view of kv_b):
//    16-byte loads along M, K split over the block's K-lanes (see the kernel).
//  - tiled_kernel (N > 8 with F32 / F8_E4M3 weights, kept f32-exact: routers, indexer weights; or
//    transposed / permuted weight views): 64x64 output tile per 256-thread block, K in steps of 16,
//    weights dequantised to f32 tiles through the generic element loaders (any strides and types),
//    4x4 outputs per thread. Correct for every layout; SIMT f32.
//  - generic_kernel (N <= 8 with any other layout: permuted weight views, K not a multiple of the
//    chunk, misaligned views, x too long for shared memory): 256 threads = 32 rows (m fastest, so a
//    transposed weight with nb1 == element size reads coalesced) x 8 warps splitting K, partial
//    sums combined in shared memory.
#include "cuda/mul-mat.cuh"

#include "cuda/gemm-mma.cuh"
#include "cuda/gemv.cuh"

namespace {

using namespace mul_mat;

// ---- scalar element loaders (generic, tiled and transposed kernels) -----------------------------

// E2M1 code s e1 e0 m -> fp16 bits s 000 e1 e0 m 000000000 is the same value times 2^-14 (the
// subnormal code 1 lands on the fp16 subnormal 2^-15); exact, no table in local memory.
__device__ __forceinline__ float e2m1_fast(uint32_t code) {
    return half_bits_to_float(((code & 0x7u) << 9) | ((code & 0x8u) << 12)) * 16384.0f;
}

template <int WT>
__device__ __forceinline__ float load_typed(const uint8_t* p) {
    if constexpr (WT == GLM_TYPE_F32) return *reinterpret_cast<const float*>(p);
    else if constexpr (WT == GLM_TYPE_F16) return __half2float(*reinterpret_cast<const __half*>(p));
    else if constexpr (WT == GLM_TYPE_BF16) return __bfloat162float(*reinterpret_cast<const __nv_bfloat16*>(p));
    else return e4m3_fast(*p);  // F8_E4M3
}

// Weight element (k, m) of a slice without the global scale (NVFP4: e2m1 * block scale, exact).
template <int WT>
__device__ __forceinline__ float weight_elem(const WeightArg& w, const Slice& s, int64_t k, int64_t m) {
    if constexpr (WT == GLM_TYPE_NVFP4) {
        const uint8_t byte = s.w[m * w.nb[1] + (k >> 1)];
        const uint8_t sc = s.ws[m * w.snb[1] + (k >> 4) * w.snb[0]];
        return e2m1_fast((k & 1) ? (byte >> 4) : (byte & 0xf)) * e4m3_fast(sc);
    } else {
        return load_typed<WT>(s.w + k * w.nb[0] + m * w.nb[1]);
    }
}

__device__ __forceinline__ float x_elem(const MmArgs& a, const Slice& s, int64_t k, int64_t n) {
    return *reinterpret_cast<const float*>(s.x + k * a.x_nb[0] + n * a.x_nb[1]);
}

// ---- generic kernel: any layout, N <= kMaxCols ----------------------------------------------------
// Block = 32 rows (lanes, m fastest: a transposed weight view with nb1 == element size reads
// coalesced) x 8 warps splitting K; the 8 partial sums of each output meet in shared memory.
// Each weight element is read once for all N columns.

constexpr int kGenRows = 32, kGenSplitK = 8, kGenericThreads = kGenRows * kGenSplitK;

template <int WT, bool IDS>
__global__ void __launch_bounds__(kGenericThreads, 2) generic_kernel(MmArgs a) {
    grid_dependency_wait();
    __shared__ float red[kGenSplitK][kMaxCols][kGenRows + 1];
    const int tm = threadIdx.x & (kGenRows - 1), tk = threadIdx.x / kGenRows;
    const int64_t m = int64_t(blockIdx.x) * kGenRows + tm;
    const int64_t mr = m < a.M ? m : a.M - 1;  // rows past M compute a duplicate, never stored
    for (int64_t s = blockIdx.y; s < a.n_slices; s += gridDim.y) {
        const Slice sl = resolve_slice<WT, IDS>(a, s);
        float acc[kMaxCols];
#pragma unroll
        for (int n = 0; n < kMaxCols; ++n) acc[n] = 0.0f;
        for (int64_t k = tk; k < a.K; k += kGenSplitK) {
            float wv = weight_elem<WT>(a.w, sl, k, mr);
            if constexpr (WT == GLM_TYPE_NVFP4) wv *= sl.g;  // the CPU's rounding: e2m1 * block * global
#pragma unroll
            for (int n = 0; n < kMaxCols; ++n)
                if (n < a.N) acc[n] = fmaf(wv, x_elem(a, sl, k, n), acc[n]);
        }
        __syncthreads();  // the previous slice's readers of red are done
#pragma unroll
        for (int n = 0; n < kMaxCols; ++n) red[tk][n][tm] = acc[n];
        __syncthreads();
        if (tk == 0 && m < a.M) {
            for (int n = 0; n < a.N; ++n) {
                float v = 0.0f;
#pragma unroll
                for (int j = 0; j < kGenSplitK; ++j) v += red[j][n][tm];
                store_dst(a, sl, m, n, v);
            }
        }
    }
}

// ---- tiled kernel: 64x64 outputs per block, f32 SIMT ---------------------------------------------

constexpr int kTileM = 64, kTileN = 64, kTileK = 16, kTiledThreads = 256;

template <int WT>
__global__ void __launch_bounds__(kTiledThreads) tiled_kernel(MmArgs a) {
    grid_dependency_wait();
    __shared__ float ws[kTileK][kTileM + 1];
    __shared__ float xs[kTileK][kTileN + 1];
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int64_t m0 = int64_t(blockIdx.x) * kTileM, n0 = int64_t(blockIdx.y) * kTileN;
    for (int64_t s = blockIdx.z; s < a.n_slices; s += gridDim.z) {
        const Slice sl = resolve_slice<WT, false>(a, s);
        float acc[4][4] = {};
        for (int64_t k0 = 0; k0 < a.K; k0 += kTileK) {
            __syncthreads();  // the previous step's (or slice's) readers are done
#pragma unroll
            for (int i = 0; i < kTileK * kTileM / kTiledThreads; ++i) {
                const int e = tid + i * kTiledThreads, kk = e & (kTileK - 1), mm = e / kTileK;
                const int64_t k = k0 + kk, m = m0 + mm;
                ws[kk][mm] = (k < a.K && m < a.M) ? weight_elem<WT>(a.w, sl, k, m) : 0.0f;
            }
#pragma unroll
            for (int i = 0; i < kTileK * kTileN / kTiledThreads; ++i) {
                const int e = tid + i * kTiledThreads, kk = e & (kTileK - 1), nn = e / kTileK;
                const int64_t k = k0 + kk, n = n0 + nn;
                xs[kk][nn] = (k < a.K && n < a.N) ? x_elem(a, sl, k, n) : 0.0f;
            }
            __syncthreads();
#pragma unroll
            for (int kk = 0; kk < kTileK; ++kk) {
                float wv[4], xv[4];
#pragma unroll
                for (int i = 0; i < 4; ++i) wv[i] = ws[kk][tx + 16 * i];
#pragma unroll
                for (int j = 0; j < 4; ++j) xv[j] = xs[kk][ty + 16 * j];
#pragma unroll
                for (int i = 0; i < 4; ++i)
#pragma unroll
                    for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(wv[i], xv[j], acc[i][j]);
            }
        }
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int64_t m = m0 + tx + 16 * i, n = n0 + ty + 16 * j;
                if (m < a.M && n < a.N) store_dst(a, sl, m, n, acc[i][j] * sl.g);
            }
    }
}

// ---- transposed GEMV: BF16 weight elements contiguous along M, N <= kMaxCols ---------------------
// The absorbed-MLA product q_lat[h] = W_UK[h]^T q_nope[h]: W_UK is a transposed view of kv_b, so
// weight element (k, m) of a slice sits at k * nb0 + m * 2 -- for each k a run of M contiguous bf16
// (one kv_b row). Block = kTrM thread columns x kTrK K-lanes (m fastest: 8 neighbours read 128
// contiguous bytes); a thread owns 8 consecutive outputs (one 16-byte load per k) for NC columns of
// x, takes k = lane, lane + kTrK, ... with kTrUnroll loads in flight, and its partial sums meet
// the other K-lanes' in shared memory, added in K-lane order (deterministic). Grid: (ceil(M /
// kTrOut), slices (grid-stride), column groups of NC). Decode at TP 4, 16 heads x K 192 x M 512
// (3 MB): 128 blocks of 256 threads, 6 loads per thread.
constexpr int kTrM = 8, kTrK = 32, kTrThreads = kTrM * kTrK, kTrOut = 8 * kTrM, kTrUnroll = 4;
constexpr int kTrMaxCols = 4;  // columns per block (smem: kTrK x NC x kTrOut floats, 32 KB at 4)

template <int NC>
__global__ void __launch_bounds__(kTrThreads) transposed_gemv_kernel(MmArgs a) {
    grid_dependency_wait();
    __shared__ float4 red[kTrK][NC][kTrOut / 4];
    const int tm = int(threadIdx.x) % kTrM, tk = int(threadIdx.x) / kTrM;
    const int64_t m_block = int64_t(blockIdx.x) * kTrOut;
    const int64_t m = m_block + 8 * tm;  // first of this thread's outputs
    const bool active = m < a.M;         // M % 8 == 0: all 8 in range
    const int64_t n0 = int64_t(blockIdx.z) * NC;
    for (int64_t s = blockIdx.y; s < a.n_slices; s += gridDim.y) {
        const Slice sl = resolve_slice<GLM_TYPE_BF16, false>(a, s);
        const uint8_t* w_m = sl.w + m * 2;  // element (k, m) at w_m + k * nb0
        float acc[NC][8];
#pragma unroll
        for (int n = 0; n < NC; ++n)
#pragma unroll
            for (int i = 0; i < 8; ++i) acc[n][i] = 0.0f;
        for (int64_t k0 = tk; k0 < a.K; k0 += kTrUnroll * kTrK) {
            uint4 v[kTrUnroll];
            float xv[kTrUnroll][NC];
#pragma unroll
            for (int u = 0; u < kTrUnroll; ++u) {
                const int64_t k = k0 + u * kTrK;
                const bool ok = active && k < a.K;
                v[u] = ok ? __ldg(reinterpret_cast<const uint4*>(w_m + k * a.w.nb[0])) : make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
                for (int n = 0; n < NC; ++n) xv[u][n] = ok && n0 + n < a.N ? x_elem(a, sl, k, n0 + n) : 0.0f;
            }
#pragma unroll
            for (int u = 0; u < kTrUnroll; ++u) {
                float f[8];
                bf16x8_to_float(v[u], f);
#pragma unroll
                for (int n = 0; n < NC; ++n)
#pragma unroll
                    for (int i = 0; i < 8; ++i) acc[n][i] = fmaf(f[i], xv[u][n], acc[n][i]);
            }
        }
        __syncthreads();  // the previous slice's readers of red are done
#pragma unroll
        for (int n = 0; n < NC; ++n) {
            red[tk][n][2 * tm] = make_float4(acc[n][0], acc[n][1], acc[n][2], acc[n][3]);
            red[tk][n][2 * tm + 1] = make_float4(acc[n][4], acc[n][5], acc[n][6], acc[n][7]);
        }
        __syncthreads();
        for (int o = int(threadIdx.x); o < NC * kTrOut; o += kTrThreads) {
            const int n = o / kTrOut, mo = o - n * kTrOut;
            float sum = 0.0f;
            for (int j = 0; j < kTrK; ++j) sum += reinterpret_cast<const float*>(red[j][n])[mo];
            if (m_block + mo < a.M && n0 + n < a.N) store_dst(a, sl, m_block + mo, n0 + n, sum);
        }
    }
}

// ---- launchers --------------------------------------------------------------------------------

template <int WT, bool IDS>
void launch_generic(CudaContext& ctx, const MmArgs& a) {
    GLM_ASSERT(a.N <= kMaxCols);
    const dim3 grid(unsigned(ceil_div(a.M, kGenRows)), grid_dim(a.n_slices));
    cuda_launch(ctx.stream, generic_kernel<WT, IDS>, grid, kGenericThreads, 0, a);
    CUDA_CHECK_LAUNCH();
}

template <int WT>
void launch_tiled(CudaContext& ctx, const MmArgs& a) {
    GLM_ASSERT(ceil_div(a.N, kTileN) <= 65535);
    const dim3 grid(unsigned(ceil_div(a.M, kTileM)), unsigned(ceil_div(a.N, kTileN)), grid_dim(a.n_slices));
    cuda_launch(ctx.stream, tiled_kernel<WT>, grid, kTiledThreads, 0, a);
    CUDA_CHECK_LAUNCH();
}

// What transposed_gemv_kernel reads: BF16 elements contiguous along M (nb1 == 2) in whole 16-byte
// groups (M % 8 == 0), each k run and each slice 16-byte aligned.
bool transposed_gemv_ok(const glm_tensor* w) {
    if (w->type != GLM_TYPE_BF16 || w->nb[1] != 2 || w->ne[1] % 8 != 0) return false;
    if (!aligned(w->data, 16) || w->nb[0] % 16 != 0) return false;
    for (int i = 2; i < 4; ++i)
        if (w->ne[i] > 1 && w->nb[i] % 16 != 0) return false;
    return true;
}

template <int NC>
void launch_transposed_nc(CudaContext& ctx, const MmArgs& a) {
    const dim3 grid(unsigned(ceil_div(a.M, kTrOut)), grid_dim(a.n_slices), unsigned(ceil_div(a.N, NC)));
    cuda_launch(ctx.stream, transposed_gemv_kernel<NC>, grid, kTrThreads, 0, a);
    CUDA_CHECK_LAUNCH();
}

void launch_transposed(CudaContext& ctx, const MmArgs& a) {
    GLM_ASSERT(a.N <= kMaxCols && ceil_div(a.M, kTrOut) <= 0x7fffffff);
    switch (std::min<int64_t>(a.N, kTrMaxCols)) {
        case 1: launch_transposed_nc<1>(ctx, a); break;
        case 2: launch_transposed_nc<2>(ctx, a); break;
        case 3: launch_transposed_nc<3>(ctx, a); break;
        default: launch_transposed_nc<4>(ctx, a); break;
    }
}

enum class Path { Gemv, Transposed, Tiled, Generic };

template <bool IDS>
void dispatch(CudaContext& ctx, glm_type wt, const MmArgs& a, Path path, int nc) {
    if (path == Path::Gemv) return launch_gemv(ctx, a, wt, IDS, nc);
    if (path == Path::Transposed) return launch_transposed(ctx, a);
    with_weight_type(wt, [&](auto wt_tag) {
        constexpr int WT = decltype(wt_tag)::value;
        if (path == Path::Generic) {
            launch_generic<WT, IDS>(ctx, a);
        } else {
            if constexpr (!IDS) launch_tiled<WT>(ctx, a);
            else GLM_ABORT("mul_mat_id: no tiled path");
        }
    });
}

}  // namespace

mul_mat::WeightArg mul_mat::weight_arg(const glm_tensor* w) {
    WeightArg a{};
    a.data = static_cast<const uint8_t*>(w->data);
    for (int i = 0; i < 4; ++i) a.nb[i] = int64_t(w->nb[i]);
    a.ne2 = w->ne[2];
    if (w->type == GLM_TYPE_NVFP4) {
        GLM_ASSERT(w->block_scale && w->global_scale && w->block_scale->type == GLM_TYPE_F8_E4M3);
        GLM_ASSERT(w->block_scale->ne[0] * GLM_NVFP4_BLOCK == w->ne[0] && w->block_scale->ne[1] == w->ne[1] &&
                   w->block_scale->ne[2] == w->ne[2] && w->block_scale->ne[3] == w->ne[3]);
        GLM_ASSERT(w->global_scale->type == GLM_TYPE_F32 && glm_is_contiguous(w->global_scale) &&
                   glm_nelements(w->global_scale) == w->ne[2] * w->ne[3]);
        GLM_ASSERT(w->nb[0] == 1 && w->ne[0] % GLM_NVFP4_BLOCK == 0);
        a.scales = static_cast<const uint8_t*>(w->block_scale->data);
        for (int i = 0; i < 4; ++i) a.snb[i] = int64_t(w->block_scale->nb[i]);
        a.global = static_cast<const float*>(w->global_scale->data);
    }
    return a;
}

mul_mat::MmArgs mul_mat::node_args(const glm_tensor* node, glm_tensor* out) {
    const glm_tensor* w = node->src[0];
    const glm_tensor* x = node->src[1];
    GLM_ASSERT(x->type == GLM_TYPE_F32 && out->type == GLM_TYPE_F32 && w->ne[0] == x->ne[0]);
    GLM_ASSERT(glm_same_shape(out, node));
    MmArgs a{};
    a.w = weight_arg(w);
    a.x = static_cast<const uint8_t*>(x->data);
    a.dst = static_cast<uint8_t*>(out->data);
    for (int i = 0; i < 4; ++i) {
        a.x_nb[i] = int64_t(x->nb[i]);
        a.d_nb[i] = int64_t(out->nb[i]);
    }
    a.K = w->ne[0];
    a.M = w->ne[1];
    if (node->op == GLM_OP_MUL_MAT) {
        GLM_ASSERT(x->ne[2] % w->ne[2] == 0 && x->ne[3] % w->ne[3] == 0);
        GLM_ASSERT(node->ne[0] == w->ne[1] && node->ne[1] == x->ne[1] && node->ne[2] == x->ne[2] &&
                   node->ne[3] == x->ne[3]);
        a.N = x->ne[1];
        a.ne2 = x->ne[2];
        a.r2 = x->ne[2] / w->ne[2];
        a.r3 = x->ne[3] / w->ne[3];
        a.n_slices = x->ne[2] * x->ne[3];
    } else {
        const glm_tensor* ids = node->src[2];
        GLM_ASSERT(node->op == GLM_OP_MUL_MAT_ID && ids->type == GLM_TYPE_I32 && w->ne[3] == 1);
        GLM_ASSERT(x->ne[2] == ids->ne[1] && (x->ne[1] == 1 || x->ne[1] == ids->ne[0]));
        GLM_ASSERT(node->ne[0] == w->ne[1] && node->ne[1] == ids->ne[0] && node->ne[2] == ids->ne[1]);
        a.N = 1;
        a.ids = static_cast<const uint8_t*>(ids->data);
        a.ids_nb0 = int64_t(ids->nb[0]);
        a.ids_nb1 = int64_t(ids->nb[1]);
        a.n_used = ids->ne[0];
        a.x_bcast = x->ne[1] == 1 ? 1 : 0;
        a.n_slices = ids->ne[0] * ids->ne[1];
    }
    return a;
}

void cuda_op_mul_mat(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* w = dst->src[0];
    const MmArgs a = node_args(dst, dst);
    if (a.M == 0 || a.N == 0 || a.n_slices == 0) return;

    Path path = Path::Generic;
    int nc = 0;
    if (a.N <= kMaxCols) {
        nc = gemv_layout_ok(w) ? gemv_cols_that_fit(a.K, a.N) : 0;
        if (nc > 0) path = Path::Gemv;
        else if (transposed_gemv_ok(w)) path = Path::Transposed;
    } else {
        if (cuda_mma_mul_mat(ctx, dst)) return;  // tensor cores (gemm-mma.cu) where type and layout allow
        path = Path::Tiled;
    }
    dispatch<false>(ctx, w->type, a, path, nc);
}

void cuda_op_mul_mat_id(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* w = dst->src[0];
    const glm_tensor* ids = dst->src[2];
    const MmArgs a = node_args(dst, dst);
    if (a.M == 0 || a.n_slices == 0) return;
    // Prefill: pairs grouped by expert, one tensor-core GEMM (gemm-mma.cu) where type and layout allow.
    if (ids->ne[1] > kMaxCols && cuda_mma_mul_mat_id(ctx, dst)) return;

    const bool gemv = gemv_layout_ok(w) && gemv_cols_that_fit(a.K, 1) == 1;
    dispatch<true>(ctx, w->type, a, gemv ? Path::Gemv : Path::Generic, 1);
}
