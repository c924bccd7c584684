// The backend interface every device implements (the scalar CPU reference here, CUDA in cuda/),
// and buffers: fixed allocations made at start-up into which tensors are placed.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ggml-like/common.h"
#include "ggml-like/tensor.h"

class glm_backend;

// One node's device time from a profiling pass.
struct glm_node_time {
    std::string name;
    glm_op op = GLM_OP_NONE;
    double us = 0;
};

struct glm_buffer {
    glm_backend* backend = nullptr;
    uint8_t* base = nullptr;  // host or device address
    size_t size = 0;
    std::string name;         // "weights", "kv", "activations" ...
};

class glm_backend {
public:
    virtual ~glm_backend() = default;
    virtual const char* name() const = 0;
    // Buffers are made at start-up only; a failure is a user-visible out-of-memory error.
    virtual Status alloc_buffer(size_t size, const std::string& name, glm_buffer** out) = 0;
    virtual void tensor_set(glm_tensor* t, const void* data, size_t offset, size_t size) = 0;
    virtual void tensor_get(const glm_tensor* t, void* data, size_t offset, size_t size) = 0;
    virtual void buffer_clear(glm_buffer* buffer, uint8_t value) = 0;
    virtual bool supports_op(const glm_tensor* t) const = 0;
    // Run nodes [begin, end) of graph in order (tensor parallelism runs a graph in segments between
    // its all-reduces). Work may still be in flight on return: synchronize() waits for it.
    virtual Status graph_compute_range(const glm_graph& graph, size_t begin, size_t end) = 0;
    Status graph_compute(const glm_graph& graph) { return graph_compute_range(graph, 0, graph.nodes.size()); }
    virtual void synchronize() = 0;

    // Seeded pseudo-random contents generated where t lives (synthetic weights for speed runs: no host
    // copy). Float types get mean + scale * u with u uniform in [-1, 1); F8_E4M3 (NVFP4 block scales)
    // gets |mean + scale * u|; NVFP4 codes, U8 and I32 get uniform random bits. Element (or byte) i of
    // t gets glm_fill_value(seed, i) on every backend, so backends can be compared.
    virtual void tensor_fill_random(glm_tensor* t, uint64_t seed, float mean, float scale) = 0;

    // Profiling pass (eager runs only; costs a wait per node): every node's device time is measured
    // and kept until take_profile(). Backends without timers return nothing.
    virtual void set_profiling(bool on) { (void)on; }
    virtual std::vector<glm_node_time> take_profile() { return {}; }

    // Recording (CUDA graphs): between capture_begin and capture_end the work given to this backend
    // (graph_compute_range, all-reduces on its stream) is recorded, not run; replay(id) runs it again
    // with the same addresses, so inputs are written into the same tensors before each replay.
    virtual bool supports_capture() const { return false; }
    virtual Status capture_begin() { return Status::device("{}: graph capture is not supported", name()); }
    virtual Status capture_end(int* id) {
        (void)id;
        return Status::device("{}: graph capture is not supported", name());
    }
    virtual Status replay(int id) {
        (void)id;
        return Status::device("{}: graph replay is not supported", name());
    }

    // After start-up no buffer may be made (no allocation on the generation path): the engine
    // freezes its backend once the weights, caches and arena exist, and a later alloc_buffer aborts.
    void freeze_allocations() { frozen_ = true; }

protected:
    void check_not_frozen(const std::string& name) const {
        if (frozen_) GLM_ABORT("buffer '{}' requested after start-up: every buffer must be made before generation", name);
    }

private:
    bool frozen_ = false;
};

std::unique_ptr<glm_backend> glm_backend_cpu_create(int n_threads);

// The value tensor_fill_random gives element i: 64 random bits from (seed, i) (splitmix64 of a
// Weyl sequence), the same on the host and on devices (the CUDA fill kernel calls these).
#ifdef __CUDACC__
#define GLM_HOST_DEVICE __host__ __device__
#else
#define GLM_HOST_DEVICE
#endif
GLM_HOST_DEVICE inline uint64_t glm_fill_bits(uint64_t seed, uint64_t i) {
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
// u in [-1, 1) from the top 24 bits.
GLM_HOST_DEVICE inline float glm_fill_uniform(uint64_t bits) { return float(bits >> 40) * (2.0f / 16777216.0f) - 1.0f; }

// Place a tensor (not a view) at offset in buffer.
void glm_place(glm_tensor* t, glm_buffer* buffer, size_t offset);
// Give every view in the graph the address of its root (call after placing the roots).
void glm_graph_resolve_views(const glm_graph& graph);
