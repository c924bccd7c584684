// What one decoded token has to read, and where the time of a profiled step went: the bandwidth
// roofline of batch-1 decode (performance.md §5) for a model's shapes, its tensor-parallel split and
// the context, and the grouping of profiled graph nodes into kernel classes for --bench.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "engine/model.h"
#include "ggml-like/backend.h"

struct RooflineParams {
    int n_ranks = 1;                    // tensor-parallel ranks
    int64_t n_ctx = 1;                  // positions the decoded token attends to (its own included)
    glm_type kv_type = GLM_TYPE_F32;    // latent and indexer-key cache element type
    AttnMode attn = AttnMode::dsa;
    bool kv_split = false;              // caches split by position over the ranks (model.h, KvCache)
    // Storage of the weights, as the target checkpoint ships: BF16 except the NVFP4 routed experts.
    double dense_weight_bytes = 2.0;    // bytes per element of every non-expert weight
    bool experts_nvfp4 = true;          // routed experts: 0.5 B codes + 1/16 B E4M3 scale per element
};

// Bytes one rank reads from memory to decode one token, by class. Replicated tensors (q_a, kv_a,
// the indexer, the router, norms, the caches) count in full on every rank; q_b, kv_b, o, the
// experts, the shared expert, the dense MLP and lm_head are split over the ranks.
struct DecodeBytes {
    double attn_proj = 0;       // q_a + kv_a (replicated), q_b + kv_b + o (split by heads)
    double indexer = 0;         // wk on F layers; wq_b + weights_proj too when top-k is computed
    double router = 0;          // mlp.gate weight + score bias (replicated)
    double routed_experts = 0;  // n_expert_used experts x gate/up/down (split on the intermediate dim)
    double shared_expert = 0;
    double dense_mlp = 0;       // the first n_dense_layers
    double lm_head = 0;         // split by vocabulary
    double embedding = 0;       // one row
    double norms = 0;           // RMSNorm / LayerNorm weights
    double kv_latent = 0;       // cached latent rows [c_kv ; k_rot] read by attention
    double kv_index = 0;        // cached indexer keys read by the indexer (F layers, DSA only)

    double weights() const;
    double cache() const { return kv_latent + kv_index; }
    double total() const { return weights() + cache(); }
    // (label, bytes) for tables, in the order above.
    std::vector<std::pair<std::string, double>> rows() const;
};

DecodeBytes decode_bytes_per_rank(const ModelHparams& hp, const RooflineParams& params);
// The bandwidth bound: every rank streams its bytes in parallel at bytes_per_s.
inline double roofline_tok_s(const DecodeBytes& bytes, double bytes_per_s) {
    return bytes.total() > 0 ? bytes_per_s / bytes.total() : 0.0;
}

// Kernel classes of a profiled decode step.
enum class KernelClass : int {
    attn_proj,       // q_a, q_b, kv_a, kv_b (absorbed W_UK / W_UV), o
    mla_core,        // the attention op over the latent cache
    indexer,         // indexer projections, scores and top-k
    routed_experts,  // router GEMV, expert choice and weights, the expert GEMVs, combine
    shared_mlp,      // shared expert and dense SwiGLU MLP
    all_reduce,
    lm_head,         // lm_head GEMV, argmax / sampling
    elementwise,     // norms, RoPE, adds, SwiGLU, copies, cache writes, embedding rows
    other,
    count,
};
const char* kernel_class_name(KernelClass c);

// One node by itself: its name (graph.cpp's "blk.N.xxx", "logits" ...) and op. Unnamed matrix
// products (named after their op, "mul_mat") cannot be told apart alone and come back as other.
KernelClass classify_node(const std::string& name, glm_op op);
// A profile in execution order: unnamed matrix products take the class of the first named or
// telling node after them (graph order is a post-order walk, so a product's consumer follows it:
// q_a's product is followed by "blk.N.q_resid", the shared expert's by "blk.N.ffn_out", the
// indexer key projection by its LayerNorm).
std::vector<KernelClass> classify_profile(const std::vector<glm_node_time>& nodes);

// Device time per class, summed over a profile (microseconds).
struct KernelTimes {
    double us[int(KernelClass::count)] = {};
    double total_us() const;
};
KernelTimes sum_profile(const std::vector<glm_node_time>& nodes);
