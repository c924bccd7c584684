// The CUDA backend: device buffers made once at start-up, uploads/downloads, and the one dispatch
// switch from graph nodes to the op launchers in cuda/*.cu.
#include <vector>

#include "cuda/backend.h"
#include "cuda/ops.cuh"

int glm_cuda_device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the "no device" error so later probes start clean
        return 0;
    }
    return n;
}

Status glm_cuda_device_info(int device, CudaDeviceInfo& out) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
        cudaGetLastError();
        return Status::device("CUDA device {} is not available ({} found)", device, glm_cuda_device_count());
    }
    out.name = prop.name;
    out.compute_capability = prop.major * 10 + prop.minor;
    out.total_bytes = prop.totalGlobalMem;
    int current = 0;
    cudaGetDevice(&current);
    cudaSetDevice(device);
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) out.free_bytes = free_b;
    cudaGetLastError();
    cudaSetDevice(current);
    return {};
}

namespace {

class CudaBackend final : public glm_backend {
public:
    explicit CudaBackend(int device) { ctx_.device = device; }
    ~CudaBackend() override {
        cudaSetDevice(ctx_.device);
        for (glm_buffer* b : buffers_) {
            cudaFree(b->base);
            delete b;
        }
        if (ctx_.stream) cudaStreamDestroy(ctx_.stream);
    }

    Status init() {
        if (cudaSetDevice(ctx_.device) != cudaSuccess) {
            cudaGetLastError();
            return Status::device("cannot use CUDA device {} ({} devices found)", ctx_.device, glm_cuda_device_count());
        }
        CUDA_CHECK(cudaStreamCreateWithFlags(&ctx_.stream, cudaStreamNonBlocking));
        CUDA_CHECK(cudaDeviceGetAttribute(&ctx_.n_sm, cudaDevAttrMultiProcessorCount, ctx_.device));
        name_ = fmt::format("cuda:{}", ctx_.device);
        return {};
    }

    const char* name() const override { return name_.c_str(); }

    Status alloc_buffer(size_t size, const std::string& name, glm_buffer** out) override {
        check_not_frozen(name);
        CUDA_CHECK(cudaSetDevice(ctx_.device));
        void* p = nullptr;
        const cudaError_t err = cudaMalloc(&p, std::max<size_t>(size, 256));
        if (err != cudaSuccess) {
            cudaGetLastError();
            size_t free_b = 0, total_b = 0;
            cudaMemGetInfo(&free_b, &total_b);
            return Status::device("out of GPU memory on {}: the {} buffer needs {:.2f} GiB, {:.2f} GiB free (lower -c, "
                                  "use --kv-type fp8, or add GPUs)",
                                  name_, name, double(size) / (1u << 30), double(free_b) / (1u << 30));
        }
        glm_buffer* b = new glm_buffer{this, static_cast<uint8_t*>(p), size, name};
        buffers_.push_back(b);
        *out = b;
        return {};
    }

    void tensor_set(glm_tensor* t, const void* data, size_t offset, size_t size) override {
        GLM_ASSERT(t->data && offset + size <= glm_nbytes(t));
        // From pageable host memory (all glmrun passes) the call returns once the bytes are staged, so
        // the caller may reuse its buffer at once: no stream sync on the per-token input path.
        CUDA_CHECK(cudaMemcpyAsync(static_cast<uint8_t*>(t->data) + offset, data, size, cudaMemcpyHostToDevice,
                                   ctx_.stream));
    }

    void tensor_get(const glm_tensor* t, void* data, size_t offset, size_t size) override {
        GLM_ASSERT(t->data && offset + size <= glm_nbytes(t));
        CUDA_CHECK(cudaMemcpyAsync(data, static_cast<const uint8_t*>(t->data) + offset, size, cudaMemcpyDeviceToHost,
                                   ctx_.stream));
        CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
    }

    void buffer_clear(glm_buffer* buffer, uint8_t value) override {
        CUDA_CHECK(cudaMemsetAsync(buffer->base, value, buffer->size, ctx_.stream));
        CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
    }

    bool supports_op(const glm_tensor* t) const override { return t->op >= 0 && t->op < GLM_OP_COUNT; }

    Status graph_compute(const glm_graph& graph) override {
        CUDA_CHECK(cudaSetDevice(ctx_.device));
        for (glm_tensor* node : graph.nodes) compute(node);
        return {};
    }

    void synchronize() override { CUDA_CHECK(cudaStreamSynchronize(ctx_.stream)); }

private:
    void compute(glm_tensor* t) {
        switch (t->op) {
            case GLM_OP_NONE: case GLM_OP_VIEW: return;
            case GLM_OP_GET_ROWS: cuda_op_get_rows(ctx_, t); break;
            case GLM_OP_ADD: case GLM_OP_MUL: cuda_op_binary(ctx_, t); break;
            case GLM_OP_SCALE: case GLM_OP_SILU: case GLM_OP_SIGMOID: cuda_op_unary(ctx_, t); break;
            case GLM_OP_SWIGLU: cuda_op_swiglu(ctx_, t); break;
            case GLM_OP_RMS_NORM: cuda_op_rms_norm(ctx_, t); break;
            case GLM_OP_LAYER_NORM: cuda_op_layer_norm(ctx_, t); break;
            case GLM_OP_SOFT_MAX: cuda_op_soft_max(ctx_, t); break;
            case GLM_OP_ROPE: cuda_op_rope(ctx_, t); break;
            case GLM_OP_CONCAT: cuda_op_concat(ctx_, t); break;
            case GLM_OP_REPEAT: cuda_op_repeat(ctx_, t); break;
            case GLM_OP_CPY: case GLM_OP_CONT: case GLM_OP_ALL_REDUCE: cuda_op_copy(ctx_, t); break;
            case GLM_OP_SET_ROWS: cuda_op_set_rows(ctx_, t); break;
            case GLM_OP_MUL_MAT: cuda_op_mul_mat(ctx_, t); break;
            case GLM_OP_MUL_MAT_ID: cuda_op_mul_mat_id(ctx_, t); break;
            case GLM_OP_ATTN: cuda_op_attn(ctx_, t); break;
            case GLM_OP_INDEXER: cuda_op_indexer(ctx_, t); break;
            case GLM_OP_TOP_K: cuda_op_top_k(ctx_, t); break;
            case GLM_OP_MOE_SELECT: cuda_op_moe_select(ctx_, t); break;
            case GLM_OP_MOE_WEIGHTS: cuda_op_moe_weights(ctx_, t); break;
            case GLM_OP_MOE_COMBINE: cuda_op_moe_combine(ctx_, t); break;
            case GLM_OP_ARGMAX: cuda_op_argmax(ctx_, t); break;
            default: GLM_ABORT("cuda backend: op {} not implemented", glm_op_name(t->op));
        }
        CUDA_CHECK_LAUNCH();
    }

    CudaContext ctx_;
    std::string name_;
    std::vector<glm_buffer*> buffers_;
};

}  // namespace

Status glm_backend_cuda_create(int device, std::unique_ptr<glm_backend>& out) {
    auto backend = std::make_unique<CudaBackend>(device);
    GLM_TRY(backend->init());
    out = std::move(backend);
    return {};
}
