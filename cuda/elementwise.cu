// Data movement and pointwise math: one thread per output element, any strides, any float type.
// These ops are small next to the matrix products; clarity first.
#include "cuda/elementwise.cuh"

namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t n) { return int(std::min<int64_t>(ceil_div(std::max<int64_t>(n, 1), kThreads), 65535 * 8)); }

// Row of the table for entry r of ids, or -1: a sharded table (glm_get_rows_shard) holds rows
// [first_row, first_row + n_rows) of the whole, and the other ids are another rank's (zero columns).
__device__ __forceinline__ int64_t table_row(const TensorView& ids, int64_t r, int shard, int64_t first_row,
                                             int64_t n_rows) {
    const int64_t row = int64_t(load_i32_at(ids, r)) - first_row;
    return shard && (row < 0 || row >= n_rows) ? -1 : row;
}

__global__ void get_rows_kernel(TensorView dst, TensorView table, TensorView ids, int shard, int64_t first_row) {
    grid_dependency_wait();
    const int64_t n = dst.ne[0] * dst.ne[1];
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t col = i % dst.ne[0], r = i / dst.ne[0];
        const int64_t row = table_row(ids, r, shard, first_row, table.ne[1]);
        *reinterpret_cast<float*>(const_cast<uint8_t*>(elem_ptr(dst, col, r, 0, 0))) =
            row < 0 ? 0.0f : load_at(table, col, row);
    }
}

__global__ void get_rows_nvfp4_kernel(TensorView dst, Nvfp4View table, TensorView ids, int shard, int64_t first_row) {
    grid_dependency_wait();
    const int64_t n = dst.ne[0] * dst.ne[1];
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t col = i % dst.ne[0], r = i / dst.ne[0];
        const int64_t row = table_row(ids, r, shard, first_row, table.ne[1]);
        *reinterpret_cast<float*>(const_cast<uint8_t*>(elem_ptr(dst, col, r, 0, 0))) =
            row < 0 ? 0.0f : nvfp4_at(table, col, row, 0);
    }
}

template <typename F>
__global__ void map_kernel(TensorView dst, F f) {
    grid_dependency_wait();
    const int64_t n = dst.ne[0] * dst.ne[1] * dst.ne[2] * dst.ne[3];
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        int64_t idx[4];
        unflatten(dst, i, idx);
        store_float(dst.type, const_cast<uint8_t*>(elem_ptr(dst, idx[0], idx[1], idx[2], idx[3])), f(idx));
    }
}

template <typename F>
void launch_map(CudaContext& ctx, glm_tensor* dst, F f) {
    const TensorView d = tensor_view(dst);
    cuda_launch(ctx.stream, map_kernel<F>, blocks_for(glm_nelements(dst)), kThreads, 0, d, f);
}

struct BinaryOp {
    TensorView a, b;
    bool add;
    __device__ float operator()(const int64_t* i) const {
        const float x = load_at(a, i[0], i[1], i[2], i[3]);
        const float y = load_at(b, i[0] % b.ne[0], i[1] % b.ne[1], i[2] % b.ne[2], i[3] % b.ne[3]);
        return add ? x + y : x * y;
    }
};

struct UnaryOp {
    TensorView a;
    int op;
    float s;
    __device__ float operator()(const int64_t* i) const {
        const float x = load_at(a, i[0], i[1], i[2], i[3]);
        switch (op) {
            case GLM_OP_SCALE: return x * s;
            case GLM_OP_SILU: return x / (1.0f + expf(-x));
            default: return 1.0f / (1.0f + expf(-x));
        }
    }
};

struct SwigluOp {
    TensorView gate, up;
    __device__ float operator()(const int64_t* i) const {
        const float g = load_at(gate, i[0], i[1], i[2], i[3]);
        return g / (1.0f + expf(-g)) * load_at(up, i[0], i[1], i[2], i[3]);
    }
};

struct ConcatOp {
    TensorView a, b;
    int dim;
    __device__ float operator()(const int64_t* i) const {
        int64_t j[4] = {i[0], i[1], i[2], i[3]};
        if (j[dim] < a.ne[dim]) return load_at(a, j[0], j[1], j[2], j[3]);
        j[dim] -= a.ne[dim];
        return load_at(b, j[0], j[1], j[2], j[3]);
    }
};

struct RepeatOp {
    TensorView a;
    __device__ float operator()(const int64_t* i) const {
        return load_at(a, i[0] % a.ne[0], i[1] % a.ne[1], i[2] % a.ne[2], i[3] % a.ne[3]);
    }
};

// Copy in row-major element order of dst's shape from src's (element counts agree, shapes may not).
struct CopyOp {
    TensorView src, dst;
    __device__ float operator()(const int64_t* i) const {
        const int64_t flat = ((i[3] * dst.ne[2] + i[2]) * dst.ne[1] + i[1]) * dst.ne[0] + i[0];
        int64_t s[4];
        unflatten(src, flat, s);
        return load_at(src, s[0], s[1], s[2], s[3]);
    }
};

__global__ void set_rows_kernel(TensorView cache, TensorView rows, TensorView slots) {
    grid_dependency_wait();
    const int64_t n = rows.ne[0] * rows.ne[1];
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t col = i % rows.ne[0], r = i / rows.ne[0];
        const int32_t slot = *reinterpret_cast<const int32_t*>(elem_ptr(slots, r, 0, 0, 0));
        if (slot < 0) continue;  // a position another context-parallel rank stores
        if (slot >= cache.ne[1]) __trap();  // invariant: slots come from positions < n_ctx
        store_float(cache.type, const_cast<uint8_t*>(elem_ptr(cache, col, slot, 0, 0)), load_at(rows, col, r));
    }
}

}  // namespace

void cuda_op_get_rows(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* table = dst->src[0];
    const TensorView d = tensor_view(dst), ids = tensor_view(dst->src[1]);
    const int shard = dst->params[1].i == 1 ? 1 : 0;  // glm_get_rows_shard
    const int64_t first_row = shard ? dst->params[0].i : 0;
    if (table->type == GLM_TYPE_NVFP4)
        cuda_launch(ctx.stream, get_rows_nvfp4_kernel, blocks_for(glm_nelements(dst)), kThreads, 0, d,
            nvfp4_view(table), ids, shard, first_row);
    else
        cuda_launch(ctx.stream, get_rows_kernel, blocks_for(glm_nelements(dst)), kThreads, 0, d, tensor_view(table),
            ids, shard, first_row);
}

void cuda_op_binary(CudaContext& ctx, glm_tensor* dst) {
    launch_map(ctx, dst, BinaryOp{tensor_view(dst->src[0]), tensor_view(dst->src[1]), dst->op == GLM_OP_ADD});
}

void cuda_op_unary(CudaContext& ctx, glm_tensor* dst) {
    launch_map(ctx, dst, UnaryOp{tensor_view(dst->src[0]), int(dst->op), dst->params[0].f});
}

void cuda_op_swiglu(CudaContext& ctx, glm_tensor* dst) {
    launch_map(ctx, dst, SwigluOp{tensor_view(dst->src[0]), tensor_view(dst->src[1])});
}

void cuda_op_concat(CudaContext& ctx, glm_tensor* dst) {
    launch_map(ctx, dst, ConcatOp{tensor_view(dst->src[0]), tensor_view(dst->src[1]), dst->params[0].i});
}

void cuda_op_repeat(CudaContext& ctx, glm_tensor* dst) { launch_map(ctx, dst, RepeatOp{tensor_view(dst->src[0])}); }

void cuda_op_copy(CudaContext& ctx, glm_tensor* dst) {
    launch_map(ctx, dst, CopyOp{tensor_view(dst->src[0]), tensor_view(dst)});
}

void cuda_op_set_rows(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* rows = dst->src[1];
    cuda_launch(ctx.stream, set_rows_kernel, blocks_for(glm_nelements(rows)), kThreads, 0, tensor_view(dst),
        tensor_view(rows), tensor_view(dst->src[2]));
}
