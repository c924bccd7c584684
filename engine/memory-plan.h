// Memory plan before any allocation: bytes per device for weights, KV cache, indexer key cache and
// an activation estimate. A plan that does not fit is a Status carrying the table and what to change.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/config.h"
#include "ggml-like/types.h"

struct MemoryPlanParams {
    int n_devices = 1;
    int64_t context = 4096;           // -c
    glm_type kv_type = GLM_TYPE_BF16; // latent cache element type (F8_E4M3 for an fp8 cache)
    uint64_t device_capacity = 0;     // usable bytes per device (0: do not check)
    uint64_t reserve = 1ull << 30;    // headroom per device for the runtime / CUDA context
    bool kv_split = false;            // caches split by position over the devices (model.h, KvCache)
    bool mtp = true;                  // the MTP layers' caches too (not when their weights are skipped)
    uint64_t activations = 0;         // per device: the arena the session measures (Session::arena_estimate)
};

struct DeviceMemory {
    uint64_t weights = 0, kv_cache = 0, index_cache = 0, activations = 0;
    uint64_t total() const { return weights + kv_cache + index_cache + activations; }
};

struct MemoryPlan {
    std::vector<DeviceMemory> devices;
    MemoryPlanParams params;
    std::string table() const;  // printable, one row per device
    bool fits() const;
};

// weight_bytes: bytes of all tensors the runtime uploads (Checkpoint::total_bytes() or less).
// Weights are split evenly over tensor-parallel devices; the MLA latent cache and the indexer key
// cache are replicated on every device (each rank runs all layers on its share of the heads), or
// split by position when params.kv_split.
MemoryPlan plan_memory(const ModelConfig& config, uint64_t weight_bytes, const MemoryPlanParams& params);
// The same with each device's own weight bytes (tensor-parallel shares, engine/weights.h); the
// device count is the vector's size.
MemoryPlan plan_memory(const ModelConfig& config, const std::vector<uint64_t>& device_weights,
                       const MemoryPlanParams& params);
// ok when the plan fits; else ErrorKind::device with the table and the changes that would help.
Status check_memory_plan(const MemoryPlan& plan);
