// The small ops of context-parallel caches (ggml-like/tensor.h): pad_block, topk_candidates,
// topk_merge and attn_merge. Each rank attends over the cache positions it owns and the ranks
// exchange these tensors through all-reduces, so all of them are latency kernels over a few KiB: a
// thread per output element, except topk_merge (a block per column: a count over the column, then
// the selection).
#include "cuda/context-parallel.cuh"

namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t n) { return int(std::min<int64_t>(ceil_div(std::max<int64_t>(n, 1), kThreads), 65535 * 8)); }

__global__ void pad_block_kernel(TensorView dst, TensorView a, int dim, int block) {
    grid_dependency_wait();
    const int64_t n = dst.ne[0] * dst.ne[1] * dst.ne[2] * dst.ne[3];
    const int64_t width = a.ne[dim];
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        int64_t idx[4], from[4];
        unflatten(dst, i, idx);
        for (int d = 0; d < 4; ++d) from[d] = idx[d];
        from[dim] -= int64_t(block) * width;
        const bool inside = from[dim] >= 0 && from[dim] < width;
        store_f32_at(dst, inside ? load_at(a, from[0], from[1], from[2], from[3]) : 0.0f, idx[0], idx[1], idx[2], idx[3]);
    }
}

__global__ void topk_candidates_kernel(TensorView dst, TensorView scores, TensorView ids, int n_ranks, int rank) {
    grid_dependency_wait();
    const int64_t k = ids.ne[0], n = k * ids.ne[1];
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t j = i % k, s = i / k;
        const int32_t id = load_i32_at(ids, j, s);
        if (id >= scores.ne[0]) __trap();  // invariant: ids index the slots scored (a top-k over them)
        store_f32_at(dst, id < 0 ? neg_inf() : load_at(scores, id, s), j, 0, s);
        store_f32_at(dst, id < 0 ? -1.0f : float(int64_t(id) * n_ranks + rank), j, 1, s);
    }
}

// Block per column. t = the k-th largest score (best's last entry: top_k lists in descending order);
// every entry above t is selected, and of those equal to t the lowest positions fill the rest. Usually
// t is one entry's score (all entries equal to t are needed): the positions are compared only when
// more entries tie than the selection has room for, and then each tied own entry scans the list --
// real indexer scores tie only where every head's relu is zero for several keys.
__global__ void topk_merge_kernel(TensorView dst, TensorView local, TensorView all, TensorView best, int64_t first) {
    grid_dependency_wait();
    const int64_t k_l = local.ne[0], M = all.ne[0], k = best.ne[0];
    __shared__ float threshold;
    __shared__ unsigned int n_above, n_equal;
    for (int64_t s = blockIdx.x; s < local.ne[1]; s += gridDim.x) {  // block-uniform
        if (threadIdx.x == 0) {
            const int32_t b = load_i32_at(best, k - 1, s);
            threshold = b >= 0 ? load_at(all, b, 0, s) : neg_inf();
            n_above = 0;
            n_equal = 0;
        }
        __syncthreads();
        const float t = threshold;
        unsigned int above = 0, equal = 0;
        for (int64_t e = threadIdx.x; e < M; e += blockDim.x) {
            const float score = load_at(all, e, 0, s);
            above += score > t ? 1u : 0u;
            equal += score == t ? 1u : 0u;
        }
        atomicAdd(&n_above, above);
        atomicAdd(&n_equal, equal);
        __syncthreads();
        const int64_t ties_taken = k - int64_t(n_above);
        const bool all_ties_taken = int64_t(n_equal) <= ties_taken;
        // A k-th score of -inf (or NaN) means fewer than k candidates: every scored entry is selected.
        const bool take_all = !(t > neg_inf());
        for (int64_t i = threadIdx.x; i < k_l; i += blockDim.x) {
            const float score = load_at(all, first + i, 0, s);
            bool selected = take_all ? score > neg_inf() : score > t || (score == t && all_ties_taken);
            if (!take_all && score == t && !all_ties_taken) {
                const float pos = load_at(all, first + i, 1, s);
                int64_t before = 0;
                for (int64_t e = 0; e < M; ++e)
                    before += load_at(all, e, 0, s) == t && load_at(all, e, 1, s) < pos ? 1 : 0;
                selected = before < ties_taken;
            }
            *reinterpret_cast<int32_t*>(const_cast<uint8_t*>(elem_ptr(dst, i, s, 0, 0))) =
                selected ? load_i32_at(local, i, s) : -1;
        }
        __syncthreads();  // the threshold and the counts are rewritten for the next column
    }
}

// dst[d, h, s] = part[d, h, s] * e^(part[Dv, h, s] - L), L = ln sum_r e^(lse_all[r, h, s]), as
// e^(lse - M) / sum_r e^(lse_r - M) with M the largest lse_r: no overflow, and a rank (or every rank)
// without a visible key weighs 0 rather than NaN. Each thread recomputes the sum over the N ranks
// (N is the tensor-parallel degree: a handful of loads next to a row of Dv).
__global__ void attn_merge_kernel(TensorView dst, TensorView part, TensorView lse_all) {
    grid_dependency_wait();
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
        store_f32_at(dst, w * load_at(part, d, h, s), d, h, s);
    }
}

}  // namespace

void cuda_op_pad_block(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* a = dst->src[0];
    const int dim = dst->params[0].i, n_blocks = dst->params[1].i, block = dst->params[2].i;
    GLM_ASSERT(a->type == GLM_TYPE_F32 && dst->type == GLM_TYPE_F32 && dim >= 0 && dim < GLM_MAX_DIMS);
    GLM_ASSERT(block >= 0 && block < n_blocks && dst->ne[dim] == a->ne[dim] * n_blocks);
    if (glm_nelements(dst) == 0) return;
    cuda_launch(ctx.stream, pad_block_kernel, blocks_for(glm_nelements(dst)), kThreads, 0, tensor_view(dst),
        tensor_view(a), dim, block);
}

void cuda_op_topk_candidates(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* scores = dst->src[0];
    const glm_tensor* ids = dst->src[1];
    GLM_ASSERT(scores->type == GLM_TYPE_F32 && ids->type == GLM_TYPE_I32 && ids->ne[1] == scores->ne[1]);
    GLM_ASSERT(dst->type == GLM_TYPE_F32 && dst->ne[0] == ids->ne[0] && dst->ne[1] == 2 && dst->ne[2] == ids->ne[1]);
    if (glm_nelements(ids) == 0) return;
    cuda_launch(ctx.stream, topk_candidates_kernel, blocks_for(glm_nelements(ids)), kThreads, 0, tensor_view(dst),
        tensor_view(scores), tensor_view(ids), dst->params[0].i, dst->params[1].i);
}

void cuda_op_topk_merge(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* local = dst->src[0];
    const glm_tensor* all = dst->src[1];
    const glm_tensor* best = dst->src[2];
    GLM_ASSERT(local->type == GLM_TYPE_I32 && all->type == GLM_TYPE_F32 && best->type == GLM_TYPE_I32);
    GLM_ASSERT(dst->type == GLM_TYPE_I32 && glm_same_shape(dst, local) && dst->params[0].i >= 0);
    GLM_ASSERT(all->ne[1] == 2 && all->ne[2] == local->ne[1] && best->ne[1] == local->ne[1] && best->ne[0] >= 1);
    const int64_t S = local->ne[1], first = int64_t(dst->params[0].i) * local->ne[0];
    GLM_ASSERT(first + local->ne[0] <= all->ne[0]);
    if (S == 0 || local->ne[0] == 0) return;
    cuda_launch(ctx.stream, topk_merge_kernel, unsigned(std::min<int64_t>(S, 65535 * 8)), kThreads, 0, tensor_view(dst),
        tensor_view(local), tensor_view(all), tensor_view(best), first);
}

void cuda_op_attn_merge(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* part = dst->src[0];
    const glm_tensor* lse_all = dst->src[1];
    GLM_ASSERT(part->type == GLM_TYPE_F32 && lse_all->type == GLM_TYPE_F32 && dst->type == GLM_TYPE_F32);
    GLM_ASSERT(part->ne[0] == dst->ne[0] + 1 && part->ne[1] == dst->ne[1] && part->ne[2] == dst->ne[2]);
    GLM_ASSERT(lse_all->ne[1] == dst->ne[1] && lse_all->ne[2] == dst->ne[2] && lse_all->ne[0] >= 1);
    if (glm_nelements(dst) == 0) return;
    cuda_launch(ctx.stream, attn_merge_kernel, blocks_for(glm_nelements(dst)), kThreads, 0, tensor_view(dst),
        tensor_view(part), tensor_view(lse_all));
}
