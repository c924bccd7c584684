// Bytes per decoded token and kernel classes. The byte count follows what engine/graph.cpp reads for
// one token (S = 1, absorbed MLA) so that measured tok/s over the bound is a fair "fraction of
// bandwidth"; performance.md §5a derives the same numbers by hand for the target (scenario A:
// q_a, kv_a and the indexer replicated, everything else split, 15.3 GB per rank at TP4).
#include "engine/roofline.h"

#include <cstring>

namespace {

constexpr double k_nvfp4_bytes_per_elem = 0.5 + 1.0 / 16.0;  // E2M1 code + one E4M3 scale per 16
constexpr double k_f32 = 4.0;                                 // router bias, indexer k_norm (F32 on disk)

bool contains(std::initializer_list<const char*> set, const std::string& key) {
    for (const char* s : set)
        if (key == s) return true;
    return false;
}

// "blk.12.q_resid" -> "q_resid"; "logits" and "mtp.eh_proj" stay whole. Views and reshapes carry
// their source's name plus " (view)" and friends: they say nothing new, so they have no key.
std::string node_key(const std::string& name) {
    if (name.find(" (") != std::string::npos) return "";
    if (name.rfind("blk.", 0) == 0) {
        const size_t dot = name.find('.', 4);
        return dot == std::string::npos ? "" : name.substr(dot + 1);
    }
    return name;
}

// The class a key names, or count when the key tells nothing about the kernel class.
KernelClass class_of_key(const std::string& key) {
    // x_proj / q_proj: the stacked products (q_a, kv_a + the indexer's key and weights; q_b + the
    // indexer's queries), mostly attention bytes.
    if (contains({"x_proj", "q_proj", "q_a", "q_b", "kv_a", "kv_b", "q_lat", "q_nope", "q_rot", "q_resid", "kv_latent", "k_rot",
                  "attn_lat", "attn_v", "attn_heads", "attn_out", "o"},
                 key))
        return KernelClass::attn_proj;
    if (contains({"index_q", "index_k", "index_w", "index_weights", "index_wq_b", "index_wk", "index_scores",
                  "index_topk"},
                 key))
        return KernelClass::indexer;
    if (contains({"router", "router_logits", "router_probs", "expert_ids", "expert_w", "exp_gate", "exp_up",
                  "exp_down", "moe_routed"},
                 key))
        return KernelClass::routed_experts;
    if (contains({"ffn_out", "ffn_gate", "ffn_up", "ffn_down", "shexp_gate", "shexp_up", "shexp_down", "shexp_out"},
                 key))
        return KernelClass::shared_mlp;
    if (contains({"logits", "mtp.logits", "lm_head", "sample", "argmax"}, key)) return KernelClass::lm_head;
    return KernelClass::count;
}

bool is_unnamed(const std::string& name, glm_op op) { return name.empty() || name == glm_op_name(op); }

}  // namespace

double DecodeBytes::weights() const {
    return attn_proj + indexer + router + routed_experts + shared_expert + dense_mlp + lm_head + embedding + norms;
}

std::vector<std::pair<std::string, double>> DecodeBytes::rows() const {
    return {{"attention projections", attn_proj},
            {"indexer weights", indexer},
            {"router", router},
            {"routed experts", routed_experts},
            {"shared expert", shared_expert},
            {"dense MLP", dense_mlp},
            {"lm_head", lm_head},
            {"embedding row", embedding},
            {"norm weights", norms},
            {"latent KV", kv_latent},
            {"indexer keys", kv_index}};
}

// Per layer, for one token at context T on one of R ranks (b = dense bytes per element, e = expert
// bytes per element, D = hidden, H = heads):
//   attention  (q_lora + kv_lora + rope) * D * b                      replicated q_a, kv_a
//            + (q_lora * H * (nope + rope) + kv_lora * H * (nope + v) + H * v * D) * b / R
//   indexer    F layers: index_dim * D * b (wk: keys are cached on every step), and when top-k runs
//              (DSA and T > top-k) also q_lora * Hi * index_dim * b (wq_b) + Hi * D * b (weights)
//   dense MLP  3 * D * ff_dense * b / R                                the first n_dense layers
//   MoE        E * D * b + E * 4 (router)  +  k_used * 3 * D * ff_expert * e / R
//            + 3 * D * ff_shared * b / R
//   latent KV  rows * (kv_lora + rope) * kv elem, rows = top-k when DSA selects (T > top-k), else T
//   index keys F layers, DSA and T > top-k: T * index_dim * kv elem
// plus lm_head V * D * b / R, one embedding row D * b and the norm weights. Copied caches are the
// same on every rank (the latent is shared by all heads), so they are not divided by R; split ones
// (kv_split) are, on average (a rank reads its positions' keys and its share of the selected rows).
DecodeBytes decode_bytes_per_rank(const ModelHparams& hp, const RooflineParams& p) {
    GLM_ASSERT(p.n_ranks >= 1 && p.n_ctx >= 1);
    DecodeBytes out;
    const double R = p.n_ranks, b = p.dense_weight_bytes;
    const double e = p.experts_nvfp4 ? k_nvfp4_bytes_per_elem : b;
    const double D = double(hp.n_embd), H = double(hp.n_head);
    const double q_lora = double(hp.q_lora_rank), kv_lora = double(hp.kv_lora_rank);
    const double dn = double(hp.head_dim_nope), dr = double(hp.head_dim_rope), dv = double(hp.head_dim_v);
    const double Hi = double(hp.index_n_head), Di = double(hp.index_head_dim);
    const int64_t T = p.n_ctx;
    const bool topk_runs = p.attn == AttnMode::dsa && T > hp.index_topk;
    const double cache_share = p.kv_split ? 1.0 / R : 1.0;
    const double latent_rows = double(topk_runs ? hp.index_topk : T) * cache_share;

    for (int64_t il = 0; il < hp.n_layer; ++il) {
        const bool full = il >= int64_t(hp.indexer_shared.size()) || !hp.indexer_shared[size_t(il)];
        out.attn_proj += (q_lora + kv_lora + dr) * D * b;
        out.attn_proj += (q_lora * H * (dn + dr) + kv_lora * H * (dn + dv) + H * dv * D) * b / R;
        out.norms += (2.0 * D + q_lora + kv_lora) * b;
        if (full) {
            out.indexer += Di * D * b;
            out.norms += 2.0 * Di * k_f32;
            if (topk_runs) {
                out.indexer += (q_lora * Hi * Di + Hi * D) * b;
                out.kv_index += double(T) * cache_share * double(glm_row_bytes(p.kv_type, hp.index_head_dim));
            }
        }
        out.kv_latent += latent_rows * double(glm_row_bytes(p.kv_type, hp.kv_row()));
        if (il < hp.n_dense_layers) {
            out.dense_mlp += 3.0 * D * double(hp.n_ff_dense) * b / R;
        } else {
            out.router += double(hp.n_expert) * (D * b + k_f32);
            out.routed_experts += double(hp.n_expert_used) * 3.0 * D * double(hp.n_ff_expert) * e / R;
            out.shared_expert += 3.0 * D * double(hp.n_ff_shared) * b / R;
        }
    }
    out.lm_head = double(hp.n_vocab) * D * b / R;
    out.embedding = D * b;
    out.norms += D * b;
    return out;
}

const char* kernel_class_name(KernelClass c) {
    switch (c) {
        case KernelClass::attn_proj: return "attention projections";
        case KernelClass::mla_core: return "MLA core";
        case KernelClass::indexer: return "indexer + top-k";
        case KernelClass::routed_experts: return "routed experts";
        case KernelClass::shared_mlp: return "shared / dense MLP";
        case KernelClass::all_reduce: return "all-reduce";
        case KernelClass::lm_head: return "lm_head + sampling";
        case KernelClass::elementwise: return "norms / elementwise";
        case KernelClass::other: return "other";
        case KernelClass::count: break;
    }
    return "?";
}

KernelClass classify_node(const std::string& name, glm_op op) {
    switch (op) {
        case GLM_OP_ATTN:
        case GLM_OP_ATTN_MERGE: return KernelClass::mla_core;
        case GLM_OP_INDEXER:
        case GLM_OP_TOP_K:
        case GLM_OP_TOPK_CANDIDATES:
        case GLM_OP_TOPK_MERGE: return KernelClass::indexer;
        // The zero-padded blocks of an all-gather (split caches) are communication.
        case GLM_OP_PAD_BLOCK: return KernelClass::all_reduce;
        case GLM_OP_MUL_MAT_ID:
        case GLM_OP_MOE_SELECT:
        case GLM_OP_MOE_WEIGHTS:
        case GLM_OP_MOE_COMBINE: return KernelClass::routed_experts;
        case GLM_OP_ALL_REDUCE: return KernelClass::all_reduce;
        case GLM_OP_ARGMAX:
        case GLM_OP_MAX_ARG: return KernelClass::lm_head;
        case GLM_OP_MUL_MAT: {
            const KernelClass c = class_of_key(node_key(name));
            return c == KernelClass::count ? KernelClass::other : c;
        }
        case GLM_OP_NONE:
        case GLM_OP_VIEW:
        case GLM_OP_COUNT: return KernelClass::other;
        default: return KernelClass::elementwise;
    }
}

std::vector<KernelClass> classify_profile(const std::vector<glm_node_time>& nodes) {
    // How far to look for a product's consumer: a few views, a norm or RoPE, a concat.
    constexpr size_t k_look_ahead = 16;
    std::vector<KernelClass> out(nodes.size());
    for (size_t i = 0; i < nodes.size(); ++i) {
        const glm_node_time& n = nodes[i];
        out[i] = classify_node(n.name, n.op);
        if (n.op != GLM_OP_MUL_MAT || out[i] != KernelClass::other || !is_unnamed(n.name, n.op)) continue;
        for (size_t j = i + 1; j < nodes.size() && j <= i + k_look_ahead; ++j) {
            const glm_node_time& m = nodes[j];
            const std::string key = node_key(m.name);
            if (!is_unnamed(m.name, m.op) && !key.empty()) {
                const KernelClass c = class_of_key(key);
                if (c != KernelClass::count) out[i] = c;
                break;  // the first named consumer decides, even when its name says nothing
            }
            // Unnamed consumers that only one part of the layer has.
            if (m.op == GLM_OP_LAYER_NORM || m.op == GLM_OP_INDEXER || m.op == GLM_OP_TOP_K) {
                out[i] = KernelClass::indexer;
                break;
            }
            if (m.op == GLM_OP_MOE_SELECT || m.op == GLM_OP_MUL_MAT_ID) {
                out[i] = KernelClass::routed_experts;
                break;
            }
        }
    }
    return out;
}

double KernelTimes::total_us() const {
    double t = 0;
    for (double v : us) t += v;
    return t;
}

KernelTimes sum_profile(const std::vector<glm_node_time>& nodes) {
    KernelTimes t;
    const std::vector<KernelClass> classes = classify_profile(nodes);
    for (size_t i = 0; i < nodes.size(); ++i) t.us[int(classes[i])] += nodes[i].us;
    return t;
}
