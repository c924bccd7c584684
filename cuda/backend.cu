// The CUDA backend: device buffers made once at start-up, uploads/downloads, and the one dispatch
// switch from graph nodes to the op launchers in cuda/*.cu.
#include <atomic>
#include <vector>

#include "cuda/backend.h"
#include "cuda/fusion.cuh"
#include "cuda/gemm-blas.cuh"
#include "cuda/gemm-mma.cuh"
#include "cuda/ops.cuh"

void glm_cuda_set_precise_prefill(bool precise) {
    cuda_mma_set_activations(precise ? MmaActivations::bf16x2 : MmaActivations::bf16);
}

namespace {
std::atomic<bool> g_fusion{true};  // process-wide, read when a graph runs or is recorded
}  // namespace

void glm_cuda_set_fusion(bool on) { g_fusion.store(on, std::memory_order_relaxed); }

std::atomic<bool> g_programmatic_launch{true};  // common.cuh, cuda_launch

void glm_cuda_set_programmatic_launch(bool on) { g_programmatic_launch.store(on, std::memory_order_relaxed); }

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
        destroy_recordings();
        for (glm_buffer* b : buffers_) {
            cudaFree(b->base);
            delete b;
        }
        cuda_blas_destroy(ctx_.blas);
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

    Status graph_compute_range(const glm_graph& graph, size_t begin, size_t end) override {
        GLM_ASSERT(begin <= end && end <= graph.nodes.size());
        CUDA_CHECK(cudaSetDevice(ctx_.device));
        if (profiling_) return compute_profiled(graph, begin, end);
        const bool fuse = g_fusion.load(std::memory_order_relaxed);
        if (fuse) readers_.refresh(graph);
        for (size_t i = begin; i < end;) i += fuse ? run_node(graph, i, end) : (compute(graph.nodes[i]), 1);
        return {};
    }

    void tensor_fill_random(glm_tensor* t, uint64_t seed, float mean, float scale,
                            const glm_fill_slice& slice) override {
        CUDA_CHECK(cudaSetDevice(ctx_.device));
        cuda_fill_random(ctx_, t, seed, mean, scale, slice);
        CUDA_CHECK_LAUNCH();
    }

    void synchronize() override { CUDA_CHECK(cudaStreamSynchronize(ctx_.stream)); }

    // ---- recording (CUDA graphs) -------------------------------------------------------------
    // Stream capture of this backend's stream. Launchers may call cudaFuncSetAttribute and other
    // non-stream APIs while capturing; anything that synchronises or allocates breaks the capture,
    // which capture_end then reports. Inputs are written (tensor_set) outside the capture.
    bool supports_capture() const override { return true; }

    Status capture_begin() override {
        if (capturing_) return Status::device("{}: capture_begin while a capture is already open", name_);
        if (profiling_)
            return Status::device("{}: cannot capture with profiling on (per-node timing is for eager runs)", name_);
        cudaError_t err = cudaSetDevice(ctx_.device);
        // Relaxed mode: one host thread records every rank's stream at once (tensor parallelism), and
        // the other modes refuse to instantiate one rank's graph while another rank still records.
        if (err == cudaSuccess) err = cudaStreamBeginCapture(ctx_.stream, cudaStreamCaptureModeRelaxed);
        if (err != cudaSuccess) return device_error("cudaStreamBeginCapture", err);
        capturing_ = true;
        return {};
    }

    Status capture_end(int* id) override {
        if (!id) return Status::device("{}: capture_end needs somewhere to put the id", name_);
        if (!capturing_) return Status::device("{}: capture_end without capture_begin", name_);
        capturing_ = false;
        cudaGraph_t graph = nullptr;
        cudaError_t err = cudaSetDevice(ctx_.device);
        if (err == cudaSuccess) err = cudaStreamEndCapture(ctx_.stream, &graph);
        if (err != cudaSuccess) {
            if (graph) cudaGraphDestroy(graph);
            return device_error("graph capture (an operation illegal while capturing was issued, e.g. a "
                                "synchronous copy, an allocation or a stream synchronisation)",
                                err);
        }
        cudaGraphExec_t exec = nullptr;
        err = cudaGraphInstantiate(&exec, graph, 0);
        cudaGraphDestroy(graph);  // the executable graph does not need it
        if (err != cudaSuccess) return device_error("cudaGraphInstantiate", err);
        // Upload now, so the first replay costs what every other one does.
        err = cudaGraphUpload(exec, ctx_.stream);
        if (err != cudaSuccess) {
            cudaGraphExecDestroy(exec);
            return device_error("cudaGraphUpload", err);
        }
        execs_.push_back(exec);
        *id = int(execs_.size()) - 1;
        return {};
    }

    Status replay(int id) override {
        if (id < 0 || id >= int(execs_.size())) return Status::device("{}: no recorded graph with id {}", name_, id);
        if (capturing_) return Status::device("{}: replay while a capture is open", name_);
        cudaError_t err = cudaSetDevice(ctx_.device);
        if (err == cudaSuccess) err = cudaGraphLaunch(execs_[size_t(id)], ctx_.stream);
        if (err != cudaSuccess) return device_error("cudaGraphLaunch", err);
        return {};
    }

    // ---- profiling -----------------------------------------------------------------------------
    void set_profiling(bool on) override { profiling_ = on; }

    // Per-node times of the profiled runs since the last call, in order; waits for the last of them.
    std::vector<glm_node_time> take_profile() override {
        std::vector<glm_node_time> out;
        if (profile_.empty()) return out;
        CUDA_CHECK(cudaSetDevice(ctx_.device));
        CUDA_CHECK(cudaEventSynchronize(events_[2 * profile_.size() - 1]));
        out.reserve(profile_.size());
        for (size_t i = 0; i < profile_.size(); ++i) {
            float ms = 0;
            CUDA_CHECK(cudaEventElapsedTime(&ms, events_[2 * i], events_[2 * i + 1]));
            out.push_back({profile_[i].name, profile_[i].op, double(ms) * 1000.0});
        }
        profile_.clear();
        return out;
    }

    CudaContext& context() { return ctx_; }

    size_t enable_blas() {
        if (ctx_.blas) return 0;
        CUDA_CHECK(cudaSetDevice(ctx_.device));
        size_t before = 0, after = 0, total = 0;
        cudaMemGetInfo(&before, &total);
        ctx_.blas = cuda_blas_create(ctx_);
        cudaMemGetInfo(&after, &total);
        cudaGetLastError();
        return before > after ? before - after : 0;
    }

private:
    Status device_error(const char* what, cudaError_t err) {
        cudaGetLastError();  // clear a non-sticky error so later calls start clean
        return Status::device("{}: {} failed: {} ({})", name_, what, cudaGetErrorString(err), int(err));
    }

    // Eager run with an event pair around every node (events are pooled across runs: made once,
    // reused after take_profile).
    // Node i, or the fused pattern starting there: the number of nodes done.
    size_t run_node(const glm_graph& graph, size_t i, size_t end) {
        const size_t fused = cuda_run_fused(ctx_, graph, i, end, readers_);
        if (fused) {
            CUDA_CHECK_LAUNCH();
            return fused;
        }
        compute(graph.nodes[i]);
        return 1;
    }

    // A fused pattern is timed as one entry under its first node's name and op.
    Status compute_profiled(const glm_graph& graph, size_t begin, size_t end) {
        if (capturing_) return Status::device("{}: profiling is on during a capture (eager runs only)", name_);
        const bool fuse = g_fusion.load(std::memory_order_relaxed);
        if (fuse) readers_.refresh(graph);
        for (size_t i = begin; i < end;) {
            glm_tensor* node = graph.nodes[i];
            const size_t e = 2 * profile_.size();
            while (events_.size() < e + 2) {
                cudaEvent_t ev = nullptr;
                CUDA_CHECK(cudaEventCreate(&ev));
                events_.push_back(ev);
            }
            CUDA_CHECK(cudaEventRecord(events_[e], ctx_.stream));
            i += fuse ? run_node(graph, i, end) : (compute(node), 1);
            CUDA_CHECK(cudaEventRecord(events_[e + 1], ctx_.stream));
            profile_.push_back({node->name, node->op, 0.0});
        }
        return {};
    }

    // Graphs, events and an open capture go before the stream does (destructor only).
    void destroy_recordings() {
        if (capturing_) {
            cudaGraph_t graph = nullptr;
            if (cudaStreamEndCapture(ctx_.stream, &graph) == cudaSuccess && graph) cudaGraphDestroy(graph);
            capturing_ = false;
        } else if (ctx_.stream) {
            cudaStreamSynchronize(ctx_.stream);  // no replay may still be running
        }
        for (cudaGraphExec_t exec : execs_) cudaGraphExecDestroy(exec);
        execs_.clear();
        for (cudaEvent_t ev : events_) cudaEventDestroy(ev);
        events_.clear();
        cudaGetLastError();
    }

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
            case GLM_OP_ARGMAX: case GLM_OP_MAX_ARG: cuda_op_argmax(ctx_, t); break;
            case GLM_OP_PAD_BLOCK: cuda_op_pad_block(ctx_, t); break;
            case GLM_OP_TOPK_CANDIDATES: cuda_op_topk_candidates(ctx_, t); break;
            case GLM_OP_TOPK_MERGE: cuda_op_topk_merge(ctx_, t); break;
            case GLM_OP_ATTN_MERGE: cuda_op_attn_merge(ctx_, t); break;
            default: GLM_ABORT("cuda backend: op {} not implemented", glm_op_name(t->op));
        }
        CUDA_CHECK_LAUNCH();
    }

    CudaContext ctx_;
    std::string name_;
    std::vector<glm_buffer*> buffers_;
    bool capturing_ = false;
    std::vector<cudaGraphExec_t> execs_;  // recorded graphs; the id is the index
    bool profiling_ = false;
    std::vector<cudaEvent_t> events_;     // pool: 2 per profiled node (begin, end)
    std::vector<glm_node_time> profile_;  // profiled nodes since take_profile (us filled there)
    NodeReaders readers_;                 // of the graph being run (fusion needs them)
};

}  // namespace

void glm_cuda_enable_blas(glm_backend* backend, size_t* device_bytes) {
    auto* cuda = dynamic_cast<CudaBackend*>(backend);
    if (!cuda) GLM_ABORT("glm_cuda_enable_blas: '{}' is not a CUDA backend", backend ? backend->name() : "null");
    const size_t bytes = cuda->enable_blas();
    if (device_bytes) *device_bytes = bytes;
}

CudaContext& cuda_backend_context(glm_backend* backend) {
    auto* cuda = dynamic_cast<CudaBackend*>(backend);
    if (!cuda) GLM_ABORT("cuda_backend_context: '{}' is not a CUDA backend", backend ? backend->name() : "null");
    return cuda->context();
}

Status glm_backend_cuda_create(int device, std::unique_ptr<glm_backend>& out, bool with_blas) {
    auto backend = std::make_unique<CudaBackend>(device);
    GLM_TRY(backend->init());
    if (with_blas) backend->enable_blas();
    out = std::move(backend);
    return {};
}
