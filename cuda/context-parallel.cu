// The small ops of context-parallel caches (ggml-like/tensor.h): pad_block, take, select_own and
// attn_merge. Each rank attends over the cache positions it owns and the ranks exchange these
// tensors through all-reduces, so all of them are latency kernels over a few KiB: a thread per
// output element, except select_own (a block per column, which needs a barrier between its passes).
#include "cuda/context-parallel.cuh"

namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t n) { return int(std::min<int64_t>(ceil_div(std::max<int64_t>(n, 1), kThreads), 65535 * 8)); }

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

__device__ __forceinline__ int32_t load_i32_at(const TensorView& t, int64_t i0, int64_t i1) {
    return *reinterpret_cast<const int32_t*>(elem_ptr(t, i0, i1, 0, 0));
}

__device__ __forceinline__ void store_f32(const TensorView& t, int64_t i0, int64_t i1, int64_t i2, int64_t i3,
                                          float v) {
    *reinterpret_cast<float*>(const_cast<uint8_t*>(elem_ptr(t, i0, i1, i2, i3))) = v;
}

__global__ void pad_block_kernel(TensorView dst, TensorView a, int dim, int block) {
    const int64_t n = dst.ne[0] * dst.ne[1] * dst.ne[2] * dst.ne[3];
    const int64_t width = a.ne[dim];
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        int64_t idx[4], from[4];
        unflatten(dst, i, idx);
        for (int d = 0; d < 4; ++d) from[d] = idx[d];
        from[dim] -= int64_t(block) * width;
        const bool inside = from[dim] >= 0 && from[dim] < width;
        store_f32(dst, idx[0], idx[1], idx[2], idx[3], inside ? load_at(a, from[0], from[1], from[2], from[3]) : 0.0f);
    }
}

__global__ void take_kernel(TensorView dst, TensorView a, TensorView ids) {
    const int64_t k = ids.ne[0], n = k * ids.ne[1];
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t j = i % k, s = i / k;
        const int32_t id = load_i32_at(ids, j, s);
        if (id >= a.ne[0]) __trap();  // invariant: ids index the candidates of a (a top-k over them)
        store_f32(dst, j, s, 0, 0, id < 0 ? neg_inf() : load_at(a, id, s));
    }
}

// Block per column: blank the column, then copy back the entries the merged list names. The barrier
// orders the two passes (global writes of one block are visible to it after __syncthreads); a
// global list that names an entry twice writes the same value twice.
__global__ void select_own_kernel(TensorView dst, TensorView local, TensorView global, int64_t first) {
    const int64_t k = local.ne[0], n = global.ne[0];
    for (int64_t s = blockIdx.x; s < local.ne[1]; s += gridDim.x) {  // block-uniform
        for (int64_t i = threadIdx.x; i < k; i += blockDim.x)
            *reinterpret_cast<int32_t*>(const_cast<uint8_t*>(elem_ptr(dst, i, s, 0, 0))) = -1;
        __syncthreads();
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
            const int64_t i = int64_t(load_i32_at(global, j, s)) - first;
            if (i >= 0 && i < k)
                *reinterpret_cast<int32_t*>(const_cast<uint8_t*>(elem_ptr(dst, i, s, 0, 0))) = load_i32_at(local, i, s);
        }
    }
}

// dst[d, h, s] = part[d, h, s] * e^(part[Dv, h, s] - L), L = ln sum_r e^(lse_all[r, h, s]), as
// e^(lse - M) / sum_r e^(lse_r - M) with M the largest lse_r: no overflow, and a rank (or every rank)
// without a visible key weighs 0 rather than NaN. Each thread recomputes the sum over the N ranks
// (N is the tensor-parallel degree: a handful of loads next to a row of Dv).
__global__ void attn_merge_kernel(TensorView dst, TensorView part, TensorView lse_all) {
    const int64_t Dv = dst.ne[0], H = dst.ne[1], n = Dv * H * dst.ne[2], N = lse_all.ne[0];
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t d = i % Dv, h = (i / Dv) % H, s = i / (Dv * H);
        const float lse = load_at(part, Dv, h, s);
        float w = 0.0f;
        if (lse != neg_inf()) {
            float M = neg_inf();
            for (int64_t r = 0; r < N; ++r) M = fmaxf(M, load_at(lse_all, r, h, s));
            float sum = 0.0f;
            for (int64_t r = 0; r < N; ++r) sum += expf(load_at(lse_all, r, h, s) - M);
            w = expf(lse - M) / sum;
        }
        store_f32(dst, d, h, s, 0, w * load_at(part, d, h, s));
    }
}

}  // namespace

void cuda_op_pad_block(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* a = dst->src[0];
    const int dim = dst->params[0].i, n_blocks = dst->params[1].i, block = dst->params[2].i;
    GLM_ASSERT(a->type == GLM_TYPE_F32 && dst->type == GLM_TYPE_F32 && dim >= 0 && dim < GLM_MAX_DIMS);
    GLM_ASSERT(block >= 0 && block < n_blocks && dst->ne[dim] == a->ne[dim] * n_blocks);
    if (glm_nelements(dst) == 0) return;
    pad_block_kernel<<<blocks_for(glm_nelements(dst)), kThreads, 0, ctx.stream>>>(tensor_view(dst), tensor_view(a), dim,
                                                                                   block);
}

void cuda_op_take(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* a = dst->src[0];
    const glm_tensor* ids = dst->src[1];
    GLM_ASSERT(a->type == GLM_TYPE_F32 && ids->type == GLM_TYPE_I32 && ids->ne[1] == a->ne[1]);
    if (glm_nelements(dst) == 0) return;
    take_kernel<<<blocks_for(glm_nelements(dst)), kThreads, 0, ctx.stream>>>(tensor_view(dst), tensor_view(a),
                                                                              tensor_view(ids));
}

void cuda_op_select_own(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* local = dst->src[0];
    const glm_tensor* global = dst->src[1];
    GLM_ASSERT(local->type == GLM_TYPE_I32 && global->type == GLM_TYPE_I32 && dst->type == GLM_TYPE_I32);
    GLM_ASSERT(global->ne[1] == local->ne[1] && glm_same_shape(dst, local) && dst->params[0].i >= 0);
    const int64_t S = local->ne[1];
    if (S == 0 || local->ne[0] == 0) return;
    const int64_t first = int64_t(dst->params[0].i) * local->ne[0];
    select_own_kernel<<<unsigned(std::min<int64_t>(S, 65535 * 8)), kThreads, 0, ctx.stream>>>(
        tensor_view(dst), tensor_view(local), tensor_view(global), first);
}

void cuda_op_attn_merge(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* part = dst->src[0];
    const glm_tensor* lse_all = dst->src[1];
    GLM_ASSERT(part->type == GLM_TYPE_F32 && lse_all->type == GLM_TYPE_F32 && dst->type == GLM_TYPE_F32);
    GLM_ASSERT(part->ne[0] == dst->ne[0] + 1 && part->ne[1] == dst->ne[1] && part->ne[2] == dst->ne[2]);
    GLM_ASSERT(lse_all->ne[1] == dst->ne[1] && lse_all->ne[2] == dst->ne[2] && lse_all->ne[0] >= 1);
    if (glm_nelements(dst) == 0) return;
    attn_merge_kernel<<<blocks_for(glm_nelements(dst)), kThreads, 0, ctx.stream>>>(tensor_view(dst), tensor_view(part),
                                                                                    tensor_view(lse_all));
}
