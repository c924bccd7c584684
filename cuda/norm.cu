// Row reductions: RMS norm, layer norm and softmax along ne[0]; per-thread partial sums in f32,
// combined by warp shuffles (and shared memory across warps).
//
// Two kinds of kernel. The row kernels (the fast paths, and the fused residual add + RMS norm) take
// f32 rows with unit element stride, a contiguous f32 output and weight / bias absent or contiguous
// F32 / BF16: each thread loads its share of the row into registers once (float4 when everything is
// 16-byte aligned), a warp handles a row of up to 1024 floats and a block a longer one. Decode runs
// one row, so these are latency kernels: one memory round trip, one reduction. The generic kernels
// (one block per row, any stride, any float type, x read twice) cover every other layout.
#include <cstdint>

#include "cuda/norm.cuh"
#include "cuda/rope.cuh"

namespace {

constexpr int kMaxThreads = 512;

// Threads for a row of n elements: a multiple of 32, at most kMaxThreads.
inline int threads_for_row(int64_t n) {
    return int(std::min<int64_t>(kMaxThreads, std::max<int64_t>(32, ceil_div(n, 32) * 32)));
}

inline int blocks_for_rows(int64_t rows) { return int(std::min<int64_t>(rows, int64_t(1) << 30)); }

struct SumOp {
    __device__ float operator()(float a, float b) const { return a + b; }
};
struct MaxOp {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }  // NaN-ignoring, as std::max
};

template <typename Op>
__device__ __forceinline__ float warp_reduce(float v, Op op) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

// Reduce v over the block (blockDim.x a multiple of 32); every thread gets the result. smem holds
// 32 floats; the leading barrier lets a block call this repeatedly with the same smem.
template <typename Op>
__device__ float block_reduce(float v, Op op, float identity, float* smem) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = warp_reduce(v, op);
    __syncthreads();
    if (lane == 0) smem[warp] = v;
    __syncthreads();
    return warp_reduce(lane < n_warps ? smem[lane] : identity, op);
}

__device__ __forceinline__ float* out_ptr(const TensorView& dst, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    return reinterpret_cast<float*>(const_cast<uint8_t*>(elem_ptr(dst, i0, i1, i2, i3)));
}

// Row r (flat over ne[1..3]) -> (i1, i2, i3).
__device__ __forceinline__ void row_index(const TensorView& t, int64_t r, int64_t& i1, int64_t& i2, int64_t& i3) {
    i1 = r % t.ne[1];
    r /= t.ne[1];
    i2 = r % t.ne[2];
    i3 = r / t.ne[2];
}

__global__ void rms_norm_kernel(TensorView dst, TensorView x, TensorView w, bool has_w, float eps) {
    grid_dependency_wait();
    __shared__ float smem[32];
    const int64_t n = x.ne[0], rows = x.ne[1] * x.ne[2] * x.ne[3];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {  // uniform per block: barriers are safe
        int64_t i1, i2, i3;
        row_index(x, r, i1, i2, i3);
        float ss = 0.0f;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            const float v = load_at(x, i, i1, i2, i3);
            ss += v * v;
        }
        ss = block_reduce(ss, SumOp{}, 0.0f, smem);
        const float inv = 1.0f / sqrtf(ss / float(n) + eps);
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            const float y = load_at(x, i, i1, i2, i3) * inv;
            *out_ptr(dst, i, i1, i2, i3) = has_w ? load_at(w, i) * y : y;
        }
    }
}

__global__ void layer_norm_kernel(TensorView dst, TensorView x, TensorView w, bool has_w, TensorView b, bool has_b,
                                  float eps) {
    grid_dependency_wait();
    __shared__ float smem[32];
    const int64_t n = x.ne[0], rows = x.ne[1] * x.ne[2] * x.ne[3];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        int64_t i1, i2, i3;
        row_index(x, r, i1, i2, i3);
        float s = 0.0f;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += load_at(x, i, i1, i2, i3);
        const float mean = block_reduce(s, SumOp{}, 0.0f, smem) / float(n);
        float var = 0.0f;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            const float d = load_at(x, i, i1, i2, i3) - mean;
            var += d * d;
        }
        var = block_reduce(var, SumOp{}, 0.0f, smem) / float(n);
        const float inv = 1.0f / sqrtf(var + eps);
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            float y = (load_at(x, i, i1, i2, i3) - mean) * inv;
            if (has_w) y = __fmul_rn(y, load_at(w, i));
            if (has_b) y = __fadd_rn(y, load_at(b, i));
            *out_ptr(dst, i, i1, i2, i3) = y;
        }
    }
}

// softmax(scale * x) along ne[0]: max, then exp(v - max) written to dst and summed, then dst / sum.
// NaN never wins the max (fmaxf) but poisons the sum, so a row with a NaN, a +inf, or only -inf
// entries comes out all NaN, as on the CPU.
__global__ void soft_max_kernel(TensorView dst, TensorView x, float scale) {
    grid_dependency_wait();
    __shared__ float smem[32];
    const int64_t n = x.ne[0], rows = x.ne[1] * x.ne[2] * x.ne[3];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        int64_t i1, i2, i3;
        row_index(x, r, i1, i2, i3);
        float mx = -INFINITY;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
            mx = fmaxf(mx, __fmul_rn(load_at(x, i, i1, i2, i3), scale));
        mx = block_reduce(mx, MaxOp{}, -INFINITY, smem);
        float sum = 0.0f;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            const float e = expf(__fmul_rn(load_at(x, i, i1, i2, i3), scale) - mx);  // no fma: as the CPU
            *out_ptr(dst, i, i1, i2, i3) = e;  // read back below by this same thread
            sum += e;
        }
        sum = block_reduce(sum, SumOp{}, 0.0f, smem);
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            float* o = out_ptr(dst, i, i1, i2, i3);
            *o = *o / sum;
        }
    }
}

// ---- row kernels: the row in registers ------------------------------------------------------------
enum class RowNorm { rms, layer };

// Plain data for row_norm_kernel; the launcher has checked every layout rule stated here.
struct RowParams {
    const uint8_t* x;        // F32 [n, ne1, ne2, ne3], element stride 4; row (i1, i2, i3) at x + i1*nb1 + i2*nb2 + i3*nb3
    int64_t ne1, ne2;        // x's row shape (ne3 follows from rows)
    int64_t nb1, nb2, nb3;   // x's row strides in bytes
    const float* addend;     // fused add: F32 [n, rows] contiguous, added to x before the norm; or null
    float* sum;              // fused add: x + addend, F32 [n, rows] contiguous; null iff addend is
    float* y;                // F32 [n, rows] contiguous
    const void* w;           // [n] F32 or BF16 contiguous, or null
    const void* b;           // layer norm bias: [n] F32 or BF16 contiguous, or null
    int32_t w_type, b_type;
    int64_t n, rows;
    float eps;
};

template <int VEC>
__device__ __forceinline__ void load_vec(const float* p, float (&v)[VEC]) {
    if constexpr (VEC == 4) {
        const float4 q = *reinterpret_cast<const float4*>(p);
        v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
    } else {
        v[0] = *p;
    }
}

template <int VEC>
__device__ __forceinline__ void store_vec(float* p, const float (&v)[VEC]) {
    if constexpr (VEC == 4)
        *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
    else
        *p = v[0];
}

// Elements i .. i+VEC-1 of a weight or bias (F32 or BF16; BF16 widens exactly by a 16-bit shift).
template <int VEC>
__device__ __forceinline__ void load_operand(const void* p, int32_t type, int64_t i, float (&v)[VEC]) {
    if (type != GLM_TYPE_BF16) {
        load_vec<VEC>(static_cast<const float*>(p) + i, v);
    } else if constexpr (VEC == 4) {
        const uint2 q = *reinterpret_cast<const uint2*>(static_cast<const __nv_bfloat16*>(p) + i);
        v[0] = __uint_as_float(q.x << 16), v[1] = __uint_as_float(q.x & 0xffff0000u);
        v[2] = __uint_as_float(q.y << 16), v[3] = __uint_as_float(q.y & 0xffff0000u);
    } else {
        v[0] = __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    }
}

// Normalises in place the row a group of threads holds -- thread `tid` holds vectors tid, tid + group,
// ... (ITEMS of VEC floats; entries at or past n hold 0 and are left as they are) -- then applies the
// weight w and bias b (either may be null). row_sum reduces a float over the group; emit(j, i) runs
// once vector j (elements i ..) is final. One copy for row_norm_kernel and rope_row_kernel, so the
// fused rows equal the unfused nodes bit for bit.
template <RowNorm kind, int VEC, int ITEMS, class RowSum, class Emit>
__device__ __forceinline__ void normalize_row(float (&v)[ITEMS][VEC], int64_t n, int group, int tid, float eps,
                                              const void* w_ptr, int32_t w_type, const void* b_ptr, int32_t b_type,
                                              RowSum row_sum, Emit emit) {
    float scale, shift = 0.0f;  // y = (v - shift) * scale, before weight and bias
    if constexpr (kind == RowNorm::rms) {
        float ss = 0.0f;
#pragma unroll
        for (int j = 0; j < ITEMS; ++j)
#pragma unroll
            for (int k = 0; k < VEC; ++k) ss += v[j][k] * v[j][k];
        scale = 1.0f / sqrtf(row_sum(ss) / float(n) + eps);
    } else {
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < ITEMS; ++j)
#pragma unroll
            for (int k = 0; k < VEC; ++k) s += v[j][k];
        shift = row_sum(s) / float(n);
        float var = 0.0f;
#pragma unroll
        for (int j = 0; j < ITEMS; ++j) {
            if ((int64_t(j) * group + tid) * VEC >= n) continue;  // padding would add shift^2
#pragma unroll
            for (int k = 0; k < VEC; ++k) var += (v[j][k] - shift) * (v[j][k] - shift);
        }
        scale = 1.0f / sqrtf(row_sum(var) / float(n) + eps);
    }
#pragma unroll
    for (int j = 0; j < ITEMS; ++j) {
        const int64_t i = (int64_t(j) * group + tid) * VEC;
        if (i >= n) continue;
        float w[VEC] = {}, b[VEC] = {};
        if (w_ptr) load_operand<VEC>(w_ptr, w_type, i, w);
        if (b_ptr) load_operand<VEC>(b_ptr, b_type, i, b);
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
            // the generic kernels' (and the CPU's) rounding order, without fma contraction
            if constexpr (kind == RowNorm::rms) {
                const float yk = v[j][k] * scale;
                v[j][k] = w_ptr ? w[k] * yk : yk;
            } else {
                float yk = (v[j][k] - shift) * scale;
                if (w_ptr) yk = __fmul_rn(yk, w[k]);
                if (b_ptr) yk = __fadd_rn(yk, b[k]);
                v[j][k] = yk;
            }
        }
        emit(j, i);
    }
}

// A group of threads (one warp, or the whole block) normalises a row: thread `tid` holds vectors
// tid, tid + group, ... (ITEMS of VEC floats; entries past the row hold 0 and are never stored).
// warp_rows: blockDim.x / 32 rows per block, no block barrier, so a warp past the last row may
// leave; otherwise one row per block at a time and the row loop is uniform per block.
template <RowNorm kind, int VEC, int ITEMS, bool warp_rows>
__global__ void __launch_bounds__(kMaxThreads) row_norm_kernel(RowParams p) {
    grid_dependency_wait();
    __shared__ float smem[32];
    const int group = warp_rows ? 32 : int(blockDim.x);
    const int tid = warp_rows ? int(threadIdx.x & 31) : int(threadIdx.x);
    const int rows_per_block = warp_rows ? int(blockDim.x >> 5) : 1;
    const int64_t first = int64_t(blockIdx.x) * rows_per_block + (warp_rows ? threadIdx.x >> 5 : 0);
    auto row_sum = [&](float v) {
        if constexpr (warp_rows) return warp_reduce(v, SumOp{});
        else return block_reduce(v, SumOp{}, 0.0f, smem);
    };
    for (int64_t r = first; r < p.rows; r += int64_t(gridDim.x) * rows_per_block) {
        const int64_t i1 = r % p.ne1, i2 = r / p.ne1 % p.ne2, i3 = r / p.ne1 / p.ne2;
        const float* x = reinterpret_cast<const float*>(p.x + i1 * p.nb1 + i2 * p.nb2 + i3 * p.nb3);
        const int64_t out0 = r * p.n;  // the row's start in the contiguous tensors
        float v[ITEMS][VEC];
#pragma unroll
        for (int j = 0; j < ITEMS; ++j) {
            const int64_t i = (int64_t(j) * group + tid) * VEC;
#pragma unroll
            for (int k = 0; k < VEC; ++k) v[j][k] = 0.0f;
            if (i >= p.n) continue;  // VEC divides n: a vector is wholly inside or outside
            load_vec<VEC>(x + i, v[j]);
            if (p.addend) {  // the ADD node's result, written as the residual stream
                float a[VEC];
                load_vec<VEC>(p.addend + out0 + i, a);
#pragma unroll
                for (int k = 0; k < VEC; ++k) v[j][k] += a[k];
                store_vec<VEC>(p.sum + out0 + i, v[j]);
            }
        }
        normalize_row<kind, VEC, ITEMS>(v, p.n, group, tid, p.eps, p.w, p.w_type, p.b, p.b_type, row_sum,
                                        [&](int j, int64_t i) { store_vec<VEC>(p.y + out0 + i, v[j]); });
    }
}

// Threads and items per thread for rows of n floats read VEC at a time.
struct RowPlan {
    int vec, items, threads;
    bool warp_rows;
    int64_t blocks;
};
constexpr int kMaxItems = 8;           // vectors per thread: 32 floats of registers at VEC 4
constexpr int kWarpRowsPerBlock = 4;

// A warp per row up to 32 * kMaxItems vectors, else a block of up to kMaxThreads threads with 4 (or,
// for the longest rows, 8) vectors each; false: the row is too long to keep in registers.
bool plan_rows(int64_t n, int64_t rows, int vec, RowPlan& plan) {
    const int64_t nv = n / vec;
    plan.vec = vec;
    if (nv <= 32 * kMaxItems) {
        const int64_t per_lane = ceil_div(nv, 32);
        plan.warp_rows = true;
        plan.items = per_lane <= 1 ? 1 : per_lane <= 2 ? 2 : per_lane <= 4 ? 4 : 8;
        const int64_t warps = std::min<int64_t>(kWarpRowsPerBlock, rows);
        plan.threads = int(32 * warps);
        plan.blocks = std::min<int64_t>(ceil_div(rows, warps), int64_t(1) << 30);
        return true;
    }
    if (nv > int64_t(kMaxThreads) * kMaxItems) return false;
    plan.warp_rows = false;
    plan.items = nv <= int64_t(kMaxThreads) * 4 ? 4 : 8;
    plan.threads = int(ceil_div(ceil_div(nv, plan.items), 32) * 32);
    plan.blocks = blocks_for_rows(rows);
    return true;
}

template <RowNorm kind, int VEC, bool warp_rows>
void launch_row_norm_as(const RowPlan& plan, const RowParams& p, cudaStream_t stream) {
    void (*kernel)(RowParams) = nullptr;
    if constexpr (warp_rows) {
        switch (plan.items) {
            case 1: kernel = row_norm_kernel<kind, VEC, 1, true>; break;
            case 2: kernel = row_norm_kernel<kind, VEC, 2, true>; break;
            case 4: kernel = row_norm_kernel<kind, VEC, 4, true>; break;
            default: kernel = row_norm_kernel<kind, VEC, 8, true>; break;
        }
    } else {
        kernel = plan.items == 4 ? row_norm_kernel<kind, VEC, 4, false> : row_norm_kernel<kind, VEC, 8, false>;
    }
    cuda_launch(stream, kernel, unsigned(plan.blocks), plan.threads, 0, p);
    CUDA_CHECK_LAUNCH();
}

template <RowNorm kind>
void launch_row_norm(const RowPlan& plan, const RowParams& p, cudaStream_t stream) {
    if (plan.vec == 4)
        plan.warp_rows ? launch_row_norm_as<kind, 4, true>(plan, p, stream) : launch_row_norm_as<kind, 4, false>(plan, p, stream);
    else
        plan.warp_rows ? launch_row_norm_as<kind, 1, true>(plan, p, stream) : launch_row_norm_as<kind, 1, false>(plan, p, stream);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// A weight or bias the row kernels read: absent, or F32 / BF16 with unit element stride.
bool row_operand_ok(const glm_tensor* t) {
    return !t || ((t->type == GLM_TYPE_F32 || t->type == GLM_TYPE_BF16) && t->nb[0] == glm_type_block_bytes(t->type));
}
// ... and aligned for reads of 4 elements.
bool row_operand_aligned(const glm_tensor* t) {
    return !t || (reinterpret_cast<uintptr_t>(t->data) & (t->type == GLM_TYPE_BF16 ? 7 : 15)) == 0;
}

bool contiguous_f32(const glm_tensor* t) { return t->type == GLM_TYPE_F32 && glm_is_contiguous(t); }

// Parameters and plan of a row kernel over x (and, fused, x + addend written to sum) into y; false
// when the layouts are not the row kernels' (the caller then takes the generic path).
bool row_norm_setup(const glm_tensor* x, const glm_tensor* addend, glm_tensor* sum, glm_tensor* y, const glm_tensor* w,
                    const glm_tensor* b, float eps, RowParams& p, RowPlan& plan) {
    if (x->type != GLM_TYPE_F32 || x->nb[0] != 4 || !contiguous_f32(y) || !glm_same_shape(x, y)) return false;
    if (!row_operand_ok(w) || !row_operand_ok(b)) return false;
    const int64_t n = x->ne[0];
    bool vec4 = n % 4 == 0 && aligned16(x->data) && aligned16(y->data) && row_operand_aligned(w) && row_operand_aligned(b);
    for (int d = 1; d < 4; ++d) vec4 = vec4 && (x->ne[d] == 1 || x->nb[d] % 16 == 0);
    if (addend) vec4 = vec4 && aligned16(addend->data) && aligned16(sum->data);
    if (!plan_rows(n, glm_nrows(x), vec4 ? 4 : 1, plan)) return false;
    p.x = static_cast<const uint8_t*>(x->data);
    p.ne1 = x->ne[1], p.ne2 = x->ne[2];
    p.nb1 = int64_t(x->nb[1]), p.nb2 = int64_t(x->nb[2]), p.nb3 = int64_t(x->nb[3]);
    p.addend = addend ? static_cast<const float*>(addend->data) : nullptr;
    p.sum = addend ? static_cast<float*>(sum->data) : nullptr;
    p.y = static_cast<float*>(y->data);
    p.w = w ? w->data : nullptr;
    p.b = b ? b->data : nullptr;
    p.w_type = w ? w->type : GLM_TYPE_F32;
    p.b_type = b ? b->type : GLM_TYPE_F32;
    p.n = n;
    p.rows = glm_nrows(x);
    p.eps = eps;
    return true;
}

// ---- fused row epilogues: norm, rope, concat and the store into a cache row ---------------------------
// The rows attention writes per token are short chains of element-wise launches: the latent row
// (rms_norm of c, rope of k_rot, their concat, set_rows into the cache), the indexer key (layer_norm,
// rope, set_rows) and the absorbed query (q_lat and the roped q_rot, concatenated). One warp builds
// one output row [A; B] in shared memory: A normed (or copied), B copied, then a rope over a range of
// it, and stores it (any float type; into a cache slot or a plain row). The norm stage is the row
// kernel's warp path (same layout, same rounding order), rope the rope kernel's arithmetic, so the
// fused row equals the unfused nodes' bit for bit.
constexpr int kRopeRowWarps = 4;
constexpr int kRopeRowMax = 1024;  // floats of one output row
constexpr int kRopeRowMaxHalf = 64;  // n_rot <= 128

struct RopeRowParams {
    const uint8_t* a;  // A: n_a F32 (unit stride) of row (i1, i2) at a + i1 * a_nb1 + i2 * a_nb2
    int64_t a_nb1, a_nb2, n_a;
    const uint8_t* b;  // B: n_b F32 (unit stride) at b + i1 * b_nb1 + i2 * b_nb2; n_b = 0: none
    int64_t b_nb1, b_nb2, n_b;
    const void* w;     // norm weight / bias: [n_a] F32 or BF16 contiguous, or null
    const void* bias;
    int32_t w_type, b_type;
    float eps;
    int64_t rope_off;  // rope over elements [rope_off, rope_off + n_rot) of [A; B] at position pos[i2]
    int n_rot;
    bool neox;
    const uint8_t* pos;
    int64_t pos_nb0;
    float inv_freq[kRopeRowMaxHalf];
    uint8_t* out;      // row (i1, i2) at out + i1 * out_nb1 + i2 * out_nb2, or with slots: out + slots[i2] * out_nb1
    int32_t out_type;
    int64_t out_nb0, out_nb1, out_nb2;
    const int32_t* slots;  // set_rows: negative slots skip their row (another rank stores it)
    int64_t n_slots;
    int64_t ne1, rows;     // rows = ne1 * tokens
};

template <RowNorm kind, bool normed, int VEC, int ITEMS>
__global__ void __launch_bounds__(32 * kRopeRowWarps) rope_row_kernel(RopeRowParams p) {
    grid_dependency_wait();
    __shared__ float staged[kRopeRowWarps][kRopeRowMax];
    const int lane = int(threadIdx.x & 31), warp = int(threadIdx.x >> 5);
    float* row = staged[warp];
    const int64_t width = p.n_a + p.n_b;
    // One warp per row, no block barrier: a warp past the last row, or on a skipped slot, may leave.
    for (int64_t r = int64_t(blockIdx.x) * kRopeRowWarps + warp; r < p.rows; r += int64_t(gridDim.x) * kRopeRowWarps) {
        const int64_t i1 = r % p.ne1, i2 = r / p.ne1;
        uint8_t* out = p.out + i1 * p.out_nb1 + i2 * p.out_nb2;
        if (p.slots) {
            const int32_t slot = p.slots[i2];
            if (slot < 0) continue;
            if (slot >= p.n_slots) __trap();  // invariant: slots come from positions < n_ctx
            out = p.out + int64_t(slot) * p.out_nb1;
        }
        const float* a = reinterpret_cast<const float*>(p.a + i1 * p.a_nb1 + i2 * p.a_nb2);
        float v[ITEMS][VEC];
#pragma unroll
        for (int j = 0; j < ITEMS; ++j) {
            const int64_t i = (int64_t(j) * 32 + lane) * VEC;
#pragma unroll
            for (int k = 0; k < VEC; ++k) v[j][k] = 0.0f;
            if (i < p.n_a) load_vec<VEC>(a + i, v[j]);
        }
        if constexpr (normed)
            normalize_row<kind, VEC, ITEMS>(v, p.n_a, 32, lane, p.eps, p.w, p.w_type, p.bias, p.b_type,
                                            [](float x) { return warp_reduce(x, SumOp{}); }, [](int, int64_t) {});
#pragma unroll
        for (int j = 0; j < ITEMS; ++j) {
            const int64_t i = (int64_t(j) * 32 + lane) * VEC;
            if (i >= p.n_a) continue;
#pragma unroll
            for (int k = 0; k < VEC; ++k) row[i + k] = v[j][k];
        }
        const float* b = reinterpret_cast<const float*>(p.b + i1 * p.b_nb1 + i2 * p.b_nb2);
        for (int64_t i = lane; i < p.n_b; i += 32) row[p.n_a + i] = b[i];
        __syncwarp();
        const int32_t position = *reinterpret_cast<const int32_t*>(p.pos + i2 * p.pos_nb0);
        const int half = p.n_rot / 2;
        for (int64_t i = lane; i < width; i += 32) {
            float y = row[i];
            const int64_t i0 = i - p.rope_off;
            if (i0 >= 0 && i0 < p.n_rot) {  // the rope kernel's pairs and roundings
                const int jj = p.neox ? int(i0 % half) : int(i0 / 2);
                const bool second = p.neox ? i0 >= half : (i0 & 1) != 0;
                const int64_t ia = p.rope_off + (p.neox ? jj : 2 * jj), ib = p.rope_off + (p.neox ? jj + half : 2 * jj + 1);
                float sn, c;
                sincosf(float(position) * p.inv_freq[jj], &sn, &c);
                const float xa = row[ia], xb = row[ib];
                y = second ? __fadd_rn(__fmul_rn(xb, c), __fmul_rn(xa, sn)) : __fsub_rn(__fmul_rn(xa, c), __fmul_rn(xb, sn));
            }
            store_float(p.out_type, out + i * p.out_nb0, y);
        }
        __syncwarp();  // the staged row is rewritten for the warp's next row
    }
}

template <RowNorm kind, bool normed, int VEC>
void launch_rope_row_as(int items, const RopeRowParams& p, cudaStream_t stream) {
    void (*kernel)(RopeRowParams) = items <= 1   ? rope_row_kernel<kind, normed, VEC, 1>
                                    : items <= 2 ? rope_row_kernel<kind, normed, VEC, 2>
                                    : items <= 4 ? rope_row_kernel<kind, normed, VEC, 4>
                                                 : rope_row_kernel<kind, normed, VEC, 8>;
    const int64_t blocks = std::min<int64_t>(ceil_div(p.rows, kRopeRowWarps), int64_t(1) << 30);
    cuda_launch(stream, kernel, unsigned(blocks), 32 * int(std::min<int64_t>(kRopeRowWarps, p.rows)), 0, p);
    CUDA_CHECK_LAUNCH();
}

// What the fused launchers know of the nodes, before the layout checks.
struct RopeRowJob {
    const glm_tensor* a;      // A's source: [n_a, ne1, tokens] (or [n_a, tokens] with ne1 = 1)
    const glm_tensor* norm;   // RMS_NORM / LAYER_NORM node over a, or null (A copied)
    const glm_tensor* b;      // B's source [n_b, ne1, tokens], or null
    const glm_tensor* rope;   // ROPE node; its range of [A; B] starts at rope_off
    int64_t rope_off;
    glm_tensor* out;          // CONCAT / ROPE output [width, ne1, tokens] F32, or the SET_ROWS node (cache)
    const glm_tensor* slots;  // SET_ROWS' slots, or null
    int64_t ne1, tokens;
};

// A's or B's source as a row source: F32, unit element stride, [n, ne1, tokens] (2-d: ne1 = 1).
bool row_source(const glm_tensor* t, int64_t ne1, int64_t tokens, const uint8_t*& data, int64_t& nb1, int64_t& nb2) {
    if (t->type != GLM_TYPE_F32 || t->nb[0] != 4 || t->ne[3] != 1) return false;
    if (t->ne[1] == ne1 && t->ne[2] == tokens) {
        nb1 = int64_t(t->nb[1]), nb2 = int64_t(t->nb[2]);
    } else if (ne1 == 1 && t->ne[1] == tokens && t->ne[2] == 1) {
        nb1 = 0, nb2 = int64_t(t->nb[1]);
    } else {
        return false;
    }
    data = static_cast<const uint8_t*>(t->data);
    return true;
}

bool launch_rope_row(CudaContext& ctx, const RopeRowJob& job) {
    RopeRowParams p{};
    if (!row_source(job.a, job.ne1, job.tokens, p.a, p.a_nb1, p.a_nb2)) return false;
    p.n_a = job.a->ne[0];
    if (job.b) {
        if (!row_source(job.b, job.ne1, job.tokens, p.b, p.b_nb1, p.b_nb2)) return false;
        p.n_b = job.b->ne[0];
    } else {
        p.b = p.a;  // never read
    }
    const int64_t width = p.n_a + p.n_b;
    const glm_tensor* rope = job.rope;
    p.n_rot = rope->params[0].i;
    if (width > kRopeRowMax || p.n_rot / 2 > kRopeRowMaxHalf || job.rope_off + rope->ne[0] > width) return false;
    const glm_tensor* pos = rope->src[1];
    if (pos->type != GLM_TYPE_I32 || pos->ne[0] < job.tokens) return false;
    p.rope_off = job.rope_off;
    p.neox = rope->params[2].i == GLM_ROPE_NEOX;
    p.pos = static_cast<const uint8_t*>(pos->data);
    p.pos_nb0 = int64_t(pos->nb[0]);
    rope_inv_freq(rope->params[1].f, p.n_rot, p.inv_freq);

    // A in the row kernel's warp layout: float4s when n_a and every row start allow it.
    const glm_tensor* w = job.norm ? job.norm->src[1] : nullptr;
    const glm_tensor* bias = job.norm && job.norm->op == GLM_OP_LAYER_NORM ? job.norm->src[2] : nullptr;
    if (!row_operand_ok(w) || !row_operand_ok(bias)) return false;
    const bool vec4 = p.n_a % 4 == 0 && aligned16(p.a) && p.a_nb1 % 16 == 0 && p.a_nb2 % 16 == 0 &&
                      row_operand_aligned(w) && row_operand_aligned(bias);
    const int vec = vec4 ? 4 : 1;
    const int64_t items = ceil_div(ceil_div(p.n_a, vec), 32);
    if (items > kMaxItems) return false;
    p.w = w ? w->data : nullptr;
    p.bias = bias ? bias->data : nullptr;
    p.w_type = w ? w->type : GLM_TYPE_F32;
    p.b_type = bias ? bias->type : GLM_TYPE_F32;
    p.eps = job.norm ? job.norm->params[0].f : 0.0f;

    glm_tensor* out = job.out;
    if (!glm_type_is_float(out->type) || out->nb[0] != glm_type_block_bytes(out->type) || out->ne[0] != width) return false;
    p.out = static_cast<uint8_t*>(out->data);
    p.out_type = out->type;
    p.out_nb0 = int64_t(out->nb[0]);
    if (job.slots) {
        const glm_tensor* slots = job.slots;
        if (job.ne1 != 1 || slots->type != GLM_TYPE_I32 || slots->nb[0] != 4 || slots->ne[0] != job.tokens) return false;
        p.slots = static_cast<const int32_t*>(slots->data);
        p.n_slots = out->ne[1];
        p.out_nb1 = int64_t(out->nb[1]);
    } else {
        if (out->ne[1] != job.ne1 || out->ne[2] != job.tokens || out->ne[3] != 1) return false;
        p.out_nb1 = int64_t(out->nb[1]);
        p.out_nb2 = int64_t(out->nb[2]);
        // Different warps write and read different rows: the output must not share bytes with a source.
        if (bytes_overlap(out, job.a) || (job.b && bytes_overlap(out, job.b))) return false;
    }
    p.ne1 = job.ne1;
    p.rows = job.ne1 * job.tokens;
    if (p.rows == 0) return true;

    if (!job.norm) {
        vec4 ? launch_rope_row_as<RowNorm::rms, false, 4>(int(items), p, ctx.stream)
             : launch_rope_row_as<RowNorm::rms, false, 1>(int(items), p, ctx.stream);
    } else if (job.norm->op == GLM_OP_RMS_NORM) {
        vec4 ? launch_rope_row_as<RowNorm::rms, true, 4>(int(items), p, ctx.stream)
             : launch_rope_row_as<RowNorm::rms, true, 1>(int(items), p, ctx.stream);
    } else {
        vec4 ? launch_rope_row_as<RowNorm::layer, true, 4>(int(items), p, ctx.stream)
             : launch_rope_row_as<RowNorm::layer, true, 1>(int(items), p, ctx.stream);
    }
    return true;
}

// An optional row operand (weight, bias): a float type the loaders know, or absent.
TensorView optional_view(const glm_tensor* t) {
    if (!t) {
        TensorView v{};
        v.type = GLM_TYPE_F32;
        return v;
    }
    GLM_ASSERT(glm_type_is_float(t->type));
    return tensor_view(t);
}

}  // namespace

void cuda_op_rms_norm(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* x = dst->src[0];
    const glm_tensor* w = dst->src[1];
    const int64_t rows = glm_nrows(x);
    if (rows == 0 || x->ne[0] == 0) return;
    RowParams p;
    RowPlan plan;
    if (row_norm_setup(x, nullptr, nullptr, dst, w, nullptr, dst->params[0].f, p, plan)) {
        launch_row_norm<RowNorm::rms>(plan, p, ctx.stream);
        return;
    }
    cuda_launch(ctx.stream, rms_norm_kernel, blocks_for_rows(rows), threads_for_row(x->ne[0]), 0, tensor_view(dst),
        tensor_view(x), optional_view(w), w != nullptr, dst->params[0].f);
    CUDA_CHECK_LAUNCH();
}

void cuda_op_layer_norm(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* x = dst->src[0];
    const glm_tensor* w = dst->src[1];
    const glm_tensor* b = dst->src[2];
    const int64_t rows = glm_nrows(x);
    if (rows == 0 || x->ne[0] == 0) return;
    RowParams p;
    RowPlan plan;
    if (row_norm_setup(x, nullptr, nullptr, dst, w, b, dst->params[0].f, p, plan)) {
        launch_row_norm<RowNorm::layer>(plan, p, ctx.stream);
        return;
    }
    cuda_launch(ctx.stream, layer_norm_kernel, blocks_for_rows(rows), threads_for_row(x->ne[0]), 0, tensor_view(dst),
        tensor_view(x), optional_view(w), w != nullptr, optional_view(b), b != nullptr, dst->params[0].f);
    CUDA_CHECK_LAUNCH();
}

void cuda_op_soft_max(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* x = dst->src[0];
    const int64_t rows = glm_nrows(x);
    if (rows == 0 || x->ne[0] == 0) return;
    cuda_launch(ctx.stream, soft_max_kernel, blocks_for_rows(rows), threads_for_row(x->ne[0]), 0, tensor_view(dst),
        tensor_view(x), dst->params[0].f);
    CUDA_CHECK_LAUNCH();
}

bool cuda_fused_add_rms_norm(CudaContext& ctx, glm_tensor* add, glm_tensor* norm) {
    GLM_ASSERT(add->op == GLM_OP_ADD && norm->op == GLM_OP_RMS_NORM && norm->src[0] == add);
    const glm_tensor* a = add->src[0];
    const glm_tensor* b = add->src[1];
    // No broadcast: both addends have the sum's shape, and the three are contiguous f32.
    if (!contiguous_f32(a) || !contiguous_f32(b) || !contiguous_f32(add)) return false;
    if (!glm_same_shape(a, add) || !glm_same_shape(b, add)) return false;
    const int64_t rows = glm_nrows(add);
    if (rows == 0 || add->ne[0] == 0) return true;  // nothing to write
    // The planner may place the norm's output over the addends' freed bytes (they die at the ADD);
    // one row is safe (every load of a row precedes its reduction, every store follows it), several
    // rows handled by different blocks are not.
    if (rows > 1 && (bytes_overlap(norm, a) || bytes_overlap(norm, b))) return false;
    RowParams p;
    RowPlan plan;
    if (!row_norm_setup(a, b, add, norm, norm->src[1], nullptr, norm->params[0].f, p, plan)) return false;
    launch_row_norm<RowNorm::rms>(plan, p, ctx.stream);
    return true;
}

namespace {

// A view of t's bytes in t's element order (a reshape of a contiguous tensor): the fused kernels read
// the view's elements where the pattern's nodes would.
bool reshape_of(const glm_tensor* view, const glm_tensor* t) {
    return view->data == t->data && glm_is_contiguous(view) && glm_is_contiguous(t) &&
           glm_nelements(view) == glm_nelements(t);
}

// The ROPE node's shape as the fused rows see it: [n, ne1, tokens], all n of a row or its first n_rot.
bool rope_shape(const glm_tensor* rope, int64_t ne1, int64_t tokens) {
    return rope->type == GLM_TYPE_F32 && rope->ne[1] == ne1 && rope->ne[2] == tokens && rope->ne[3] == 1;
}

}  // namespace

bool cuda_fused_norm_rope_set_rows(CudaContext& ctx, glm_tensor* norm, glm_tensor* rope, glm_tensor* set_rows) {
    GLM_ASSERT((norm->op == GLM_OP_RMS_NORM || norm->op == GLM_OP_LAYER_NORM) && rope->op == GLM_OP_ROPE &&
               set_rows->op == GLM_OP_SET_ROWS);
    const glm_tensor* x = norm->src[0];
    if (x->ne[2] != 1 || x->ne[3] != 1) return false;
    const int64_t tokens = x->ne[1];
    if (!reshape_of(rope->src[0], norm) || !rope_shape(rope, 1, tokens) || rope->ne[0] != x->ne[0]) return false;
    if (!reshape_of(set_rows->src[1], rope)) return false;
    return launch_rope_row(ctx, RopeRowJob{x, norm, nullptr, rope, 0, set_rows, set_rows->src[2], 1, tokens});
}

bool cuda_fused_norm_rope_concat_set_rows(CudaContext& ctx, glm_tensor* norm, glm_tensor* rope, glm_tensor* concat,
                                          glm_tensor* set_rows) {
    GLM_ASSERT((norm->op == GLM_OP_RMS_NORM || norm->op == GLM_OP_LAYER_NORM) && rope->op == GLM_OP_ROPE &&
               concat->op == GLM_OP_CONCAT && set_rows->op == GLM_OP_SET_ROWS && set_rows->src[1] == concat);
    const glm_tensor* x = norm->src[0];
    if (x->ne[2] != 1 || x->ne[3] != 1 || concat->params[0].i != 0 || concat->src[0] != norm) return false;
    const int64_t tokens = x->ne[1];
    if (!rope_shape(rope, 1, tokens) || !reshape_of(concat->src[1], rope) || concat->src[1]->ne[0] != rope->ne[0])
        return false;
    return launch_rope_row(ctx, RopeRowJob{x, norm, rope->src[0], rope, x->ne[0], set_rows, set_rows->src[2], 1, tokens});
}

bool cuda_fused_rope_concat(CudaContext& ctx, glm_tensor* rope, glm_tensor* concat) {
    GLM_ASSERT(rope->op == GLM_OP_ROPE && concat->op == GLM_OP_CONCAT && concat->src[1] == rope);
    const glm_tensor* a = concat->src[0];
    if (concat->params[0].i != 0 || concat->type != GLM_TYPE_F32 || !glm_is_contiguous(concat)) return false;
    const int64_t ne1 = rope->ne[1], tokens = rope->ne[2];
    if (!rope_shape(rope, ne1, tokens)) return false;
    return launch_rope_row(ctx, RopeRowJob{a, nullptr, rope->src[0], rope, a->ne[0], concat, nullptr, ne1, tokens});
}
