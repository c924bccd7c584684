// The backend interface every device implements (the scalar CPU reference here, CUDA in cuda/),
// and buffers: fixed allocations made at start-up into which tensors are placed.
#pragma once

#include <memory>
#include <string>

#include "ggml-like/common.h"
#include "ggml-like/tensor.h"

class glm_backend;

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
    virtual Status graph_compute(const glm_graph& graph) = 0;
    virtual void synchronize() = 0;

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

// Place a tensor (not a view) at offset in buffer.
void glm_place(glm_tensor* t, glm_buffer* buffer, size_t offset);
// Give every view in the graph the address of its root (call after placing the roots).
void glm_graph_resolve_views(const glm_graph& graph);
