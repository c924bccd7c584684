// The backend interface every device implements (the scalar CPU reference here, CUDA in cuda/),
// and buffers: fixed allocations made at start-up into which tensors are placed.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ggml-like/common.h"
#include "ggml-like/tensor.h"

class glm_backend;

// Where a tensor sits in the whole one it is a part of, for tensor_fill_random: its ne[1] rows start
// at row row0 of rows_total, its ne[0] columns at column col0 of cols_total (in elements of its type).
// A stacked tensor [ne0, ne1, E] (routed experts) has that window in each of its E matrices. A zero
// total means the tensor's own extent (no offset): the default is the whole tensor.
struct glm_fill_slice {
    int64_t row0 = 0, rows_total = 0;
    int64_t col0 = 0, cols_total = 0;
};

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
    // gets |mean + scale * u|; NVFP4 codes, U8 and I32 get uniform random bits. When t is the part
    // `slice` of a larger tensor (a tensor-parallel share), element (or byte) i of t gets
    // glm_fill_bits(seed, g) for its index g in the whole tensor (glm_fill_global_index): every
    // backend and every rank layout then holds pieces of the same values.
    virtual void tensor_fill_random(glm_tensor* t, uint64_t seed, float mean, float scale,
                                    const glm_fill_slice& slice) = 0;

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

// The value tensor_fill_random gives element (or byte) i of a whole tensor: 64 random bits from
// (seed, i) (splitmix64 of a Weyl sequence), the same on the host and on devices (the CUDA fill kernel
// calls these).
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
// glm_fill_slice in fill units (bytes for the byte fill of NVFP4 / U8 / I32, elements for float
// types: an NVFP4 row of n elements is n/2 units), made by glm_fill_map_make. Plain data: the CUDA
// fill kernel takes it by value.
struct glm_fill_map {
    uint64_t row_units = 0, rows = 1;              // the tensor's row length (units) and rows (ne[1])
    uint64_t row_units_total = 0, rows_total = 1;  // the same of the whole tensor
    uint64_t col0_units = 0, row0 = 0;             // where the tensor's first row and column sit in it
};
// The index in the whole tensor of fill unit i of the part: unit (c, r, e) of the part is unit
// (col0 + c, row0 + r) of matrix e of the whole, (e * rows_total + row0 + r) * row_units_total +
// col0_units + c. The CPU loop and the CUDA kernel both call this, so they write identical bytes.
GLM_HOST_DEVICE inline uint64_t glm_fill_global_index(const glm_fill_map& m, uint64_t i) {
    if (m.row_units == m.row_units_total && m.rows == m.rows_total) return i;  // the whole tensor: no divisions
    const uint64_t c = i % m.row_units, rows = i / m.row_units;
    const uint64_t r = rows % m.rows, e = rows / m.rows;
    return (e * m.rows_total + m.row0 + r) * m.row_units_total + m.col0_units + c;
}
// Checks slice against t (contiguous, window inside the whole, whole units) and converts it.
glm_fill_map glm_fill_map_make(const glm_tensor* t, const glm_fill_slice& slice);
// Whether tensor_fill_random gives t random bytes (NVFP4 codes, U8, I32) rather than float values.
inline bool glm_fill_is_bytes(glm_type type) {
    return type == GLM_TYPE_NVFP4 || type == GLM_TYPE_U8 || type == GLM_TYPE_I32;
}

// u in [-1, 1) from the top 24 bits (the product is exact: a contracted multiply-add rounds the same).
GLM_HOST_DEVICE inline float glm_fill_uniform(uint64_t bits) { return float(bits >> 40) * (2.0f / 16777216.0f) - 1.0f; }
// The float value of a fill, mean + scale * u, rounded after the multiply and after the add on every
// backend: nvcc would fuse them into one FMA (one rounding) and the F32 fills would differ from the
// CPU's in the last bit. Host builds have no FMA target flags, so the host never fuses.
GLM_HOST_DEVICE inline float glm_fill_value(uint64_t bits, float mean, float scale) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(mean, __fmul_rn(scale, glm_fill_uniform(bits)));
#else
    return mean + scale * glm_fill_uniform(bits);
#endif
}

// Place a tensor (not a view) at offset in buffer.
void glm_place(glm_tensor* t, glm_buffer* buffer, size_t offset);
// Give every view in the graph the address of its root (call after placing the roots).
void glm_graph_resolve_views(const glm_graph& graph);
