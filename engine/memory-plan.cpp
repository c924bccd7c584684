// Bytes per device by formula (weights given, caches from the config); the activation term is what the
// session measures for its graphs (engine.cpp passes Session::arena_estimate).
#include "engine/memory-plan.h"

#include <algorithm>

namespace {

std::string gib(uint64_t b) { return fmt::format("{:.2f} GiB", double(b) / double(1ull << 30)); }

size_t kv_elem_bytes(glm_type t) {
    switch (t) {
        case GLM_TYPE_F32: return 4;
        case GLM_TYPE_F16:
        case GLM_TYPE_BF16: return 2;
        case GLM_TYPE_F8_E4M3:
        case GLM_TYPE_U8: return 1;
        default: return 2;
    }
}

}  // namespace

MemoryPlan plan_memory(const ModelConfig& c, uint64_t weight_bytes, const MemoryPlanParams& p) {
    MemoryPlan plan;
    plan.params = p;
    const int n = std::max(1, p.n_devices);
    const uint64_t mtp_layers = p.mtp ? uint64_t(c.num_nextn_predict_layers) : 0;
    const uint64_t layers = uint64_t(c.num_hidden_layers) + mtp_layers;
    // A split cache holds ceil(context / n) positions per device.
    const uint64_t ctx = uint64_t(std::max<int64_t>(1, p.kv_split && n > 1 ? (p.context + n - 1) / n : p.context));
    // Absorbed MLA caches the latent (kv_lora_rank) plus the shared rope key per token and layer.
    const uint64_t kv = layers * ctx * uint64_t(c.kv_lora_rank + c.qk_rope_head_dim) * kv_elem_bytes(p.kv_type);
    // Indexer keys (index_head_dim per token) on full layers, in the cache's element type.
    uint64_t full_layers = mtp_layers;
    for (auto k : c.indexer_types) full_layers += k == IndexerKind::full;
    const uint64_t ikv = full_layers * ctx * uint64_t(c.index_head_dim) * kv_elem_bytes(p.kv_type);
    for (int d = 0; d < n; ++d) {
        DeviceMemory m;
        m.weights = weight_bytes / uint64_t(n) + (d == 0 ? weight_bytes % uint64_t(n) : 0);
        m.kv_cache = kv;
        m.index_cache = ikv;
        m.activations = p.activations;
        plan.devices.push_back(m);
    }
    return plan;
}

MemoryPlan plan_memory(const ModelConfig& c, const std::vector<uint64_t>& device_weights, const MemoryPlanParams& p) {
    MemoryPlanParams q = p;
    q.n_devices = int(device_weights.size());
    MemoryPlan plan = plan_memory(c, 0, q);
    for (size_t d = 0; d < device_weights.size(); ++d) plan.devices[d].weights = device_weights[d];
    return plan;
}

bool MemoryPlan::fits() const {
    if (params.device_capacity == 0) return true;
    for (const auto& d : devices)
        if (d.total() + params.reserve > params.device_capacity) return false;
    return true;
}

std::string MemoryPlan::table() const {
    std::string t = fmt::format("{:<8} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}\n", "device", "weights", "kv cache",
                                "index keys", "activations", "total", "capacity");
    for (size_t i = 0; i < devices.size(); ++i) {
        const auto& d = devices[i];
        t += fmt::format("{:<8} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}\n", i, gib(d.weights), gib(d.kv_cache),
                         gib(d.index_cache), gib(d.activations), gib(d.total() + params.reserve),
                         params.device_capacity ? gib(params.device_capacity) : std::string("-"));
    }
    return t;
}

Status check_memory_plan(const MemoryPlan& plan) {
    if (plan.fits()) return {};
    const auto& d = plan.devices.front();
    const uint64_t cap = plan.params.device_capacity;
    std::string advice;
    const uint64_t fixed = d.weights + plan.params.reserve;
    if (fixed >= cap) {
        const uint64_t all_weights = d.weights * plan.devices.size();
        const uint64_t per = cap > plan.params.reserve ? cap - plan.params.reserve : 1;
        advice = fmt::format("the weights alone need more than one device holds: use at least {} devices",
                             (all_weights + per - 1) / per + 1);
    } else {
        const int n = int(plan.devices.size());
        const int64_t ctx_here = plan.params.kv_split && n > 1 ? (plan.params.context + n - 1) / n : plan.params.context;
        const uint64_t per_token = (d.kv_cache + d.index_cache) / uint64_t(std::max<int64_t>(1, ctx_here));
        const uint64_t room = cap - fixed - std::min(cap - fixed, d.activations);
        const int64_t max_ctx = per_token ? int64_t(room / per_token) * (plan.params.kv_split ? n : 1) : 0;
        advice = fmt::format("lower the context with -c {} or less, use an fp8 KV cache{}, or add devices",
                             std::max<int64_t>(0, max_ctx / 256 * 256),
                             n > 1 && !plan.params.kv_split ? ", split the cache over the GPUs (--kv-split on)" : "");
    }
    return Status::device("model does not fit in device memory ({} devices, context {}): {}\n{}",
                          plan.devices.size(), plan.params.context, advice, plan.table());
}
