// The GLM-5 forward pass as a ggml-like graph: weights, KV cache and the graph builder.
// Semantics follow transformers 5.17 GlmMoeDsaForCausalLM (see ../shared/reference/model.md).
#pragma once

#include <string>
#include <vector>

#include "ggml-like/backend.h"

// Hyperparameters the graph needs, taken from the validated config.
struct ModelHparams {
    int64_t n_vocab = 0, n_embd = 0, n_layer = 0, n_dense_layers = 0;
    int64_t n_ff_dense = 0, n_ff_expert = 0, n_ff_shared = 0;
    int64_t n_expert = 0, n_expert_used = 0, n_group = 1, topk_group = 1;
    float expert_scale = 1.0f;
    bool expert_norm = true;
    int64_t n_head = 0, q_lora_rank = 0, kv_lora_rank = 0;
    int64_t head_dim_nope = 0, head_dim_rope = 0, head_dim_v = 0;
    float rope_theta = 10000.0f;
    bool rope_interleave = true, indexer_rope_interleave = true;
    int64_t index_n_head = 0, index_head_dim = 0, index_topk = 0;
    std::vector<bool> indexer_shared;  // per layer: true = reuse the previous layer's top-k
    float norm_eps = 1e-5f;
    float lora_norm_eps = 1e-6f;   // q_a_layernorm / kv_a_layernorm: the reference's class default
    float index_norm_eps = 1e-6f;  // indexer k_norm (a LayerNorm)
    int64_t n_ctx_train = 0;

    int64_t head_dim_qk() const { return head_dim_nope + head_dim_rope; }
    int64_t kv_row() const { return kv_lora_rank + head_dim_rope; }  // latent cache row: c_kv ; k_rot
};

struct LayerTensors {
    glm_tensor* attn_norm = nullptr;
    glm_tensor* ffn_norm = nullptr;
    glm_tensor* q_a = nullptr;
    glm_tensor* q_a_norm = nullptr;
    glm_tensor* q_b = nullptr;
    glm_tensor* kv_a = nullptr;
    glm_tensor* kv_a_norm = nullptr;
    glm_tensor* kv_b = nullptr;
    glm_tensor* o = nullptr;
    // DSA indexer (absent on shared layers of checkpoints that drop it)
    glm_tensor* idx_wq_b = nullptr;
    glm_tensor* idx_wk = nullptr;
    glm_tensor* idx_k_norm = nullptr;
    glm_tensor* idx_k_norm_bias = nullptr;
    glm_tensor* idx_weights = nullptr;
    // dense SwiGLU
    glm_tensor* ffn_gate = nullptr;
    glm_tensor* ffn_up = nullptr;
    glm_tensor* ffn_down = nullptr;
    // MoE: router, stacked routed experts [in, out, E], shared expert
    glm_tensor* router = nullptr;
    glm_tensor* router_bias = nullptr;
    glm_tensor* exp_gate = nullptr;
    glm_tensor* exp_up = nullptr;
    glm_tensor* exp_down = nullptr;
    glm_tensor* shexp_gate = nullptr;
    glm_tensor* shexp_up = nullptr;
    glm_tensor* shexp_down = nullptr;
    // Projections that read the same input, placed back to back in the weight buffer so that one
    // product computes them all (one GEMV launch instead of four at decode); null when their types or
    // placement do not allow it (the graph then multiplies them one by one). Rows, in order:
    // x_proj = [q_a ; kv_a ; idx_wk ; idx_weights] (input: the attention-normed hidden state),
    // q_proj = [q_b ; idx_wq_b] (input: q_resid); without an indexer only the first two / one.
    glm_tensor* x_proj = nullptr;
    glm_tensor* q_proj = nullptr;
    // MTP (NextN) layer only
    glm_tensor* mtp_enorm = nullptr;
    glm_tensor* mtp_hnorm = nullptr;
    glm_tensor* mtp_eh_proj = nullptr;
    glm_tensor* mtp_head_norm = nullptr;

    bool is_moe() const { return router != nullptr; }
};

struct ModelTensors {
    glm_tensor* tok_embd = nullptr;
    glm_tensor* out_norm = nullptr;
    glm_tensor* lm_head = nullptr;
    std::vector<LayerTensors> layers;
    bool has_mtp = false;
    LayerTensors mtp;
};

enum class AttnMode { dsa, dense };

// Batches up to this size count as small (decode, a speculative verify step): they take the
// N <= 8 GEMV kernels and a recorded graph.
constexpr int64_t k_max_absorbed_batch = 8;

// Per-layer caches: the latent row [c_kv (normalised) ; k_rot (roped)] and the indexer key. Index
// n_layer (when present) belongs to the MTP layer.
//
// Context parallelism (split = true, tensor parallelism only): the caches are split by position over
// the ranks instead of copied to each: rank r holds positions r, r + N, r + 2N ... at slots 0, 1, 2 ...
// (a quarter of the bytes at N = 4: what lets the full context fit 80 GB cards). Each rank scores and
// attends over its own positions; the ranks merge the indexer's top-k and the attention partials
// (log-sum-exp weighted) through small all-reduces: four more per layer than the copied cache needs.
struct KvCache {
    glm_type type = GLM_TYPE_F32;
    int64_t n_ctx = 0;                // positions of the whole context
    int64_t n_slots = 0;              // rows per cache tensor: n_ctx, or ceil(n_ctx / N) when split
    bool split = false;
    std::vector<glm_tensor*> latent;  // [kv_row, n_slots] per layer (+1 for MTP)
    std::vector<glm_tensor*> index;   // [index_head_dim, n_slots] per layer (null where unused)
};

// The slot of position p on rank r of n when split (-1: another rank's), and the last slot of rank r
// that a query at position p sees (-1: none).
inline int32_t kv_split_slot(int64_t p, int r, int n) { return p % n == r ? int32_t(p / n) : -1; }
inline int32_t kv_split_last(int64_t p, int r, int n) { return p >= r ? int32_t((p - r) / n) : -1; }

struct ForwardOptions {
    AttnMode attn = AttnMode::dsa;
    bool all_logits = false;      // logits for every token of the batch (tests), else the last one
    bool keep_intermediates = false;  // mark per-layer tensors as outputs so the host can read them
    // Tensor parallelism: the graph of one rank (hparams carry the rank's head count, the weights its
    // shares); the partial sums after o_proj and after the feed-forward are all-reduced.
    int n_ranks = 1;
    int rank = 0;                 // this graph's rank (context-parallel merges, embedding share)
    int32_t vocab_offset = 0;     // first vocabulary row of this rank's lm_head and embedding shares
    bool max_arg = false;         // also output (max logit, its vocabulary id) per position: greedy decoding
};

// What a built forward graph exposes.
struct ForwardGraph {
    glm_graph graph;
    glm_tensor* tokens = nullptr;     // I32 [S] input
    glm_tensor* positions = nullptr;  // I32 [S] input
    glm_tensor* prev_hidden = nullptr;  // F32 [n_embd, S] input of the MTP graph
    // Split caches only (KvCache::split), I32 [S] inputs: each new row's slot on this rank
    // (kv_split_slot) and the last slot each query sees (kv_split_last).
    glm_tensor* kv_slots = nullptr;
    glm_tensor* kv_last = nullptr;
    glm_tensor* logits = nullptr;     // F32 [n_vocab (this rank's share), S or 1]
    glm_tensor* max_arg = nullptr;    // F32 [2, S or 1] when ForwardOptions::max_arg
    glm_tensor* hidden = nullptr;     // F32 [n_embd, S] after the final norm
    std::vector<glm_tensor*> layer_out;    // per layer residual stream after the layer
    std::vector<glm_tensor*> layer_topk;   // per layer I32 [k, S] key slots (null when dense)
    std::vector<glm_tensor*> layer_experts;  // per MoE layer I32 [n_used, S] (null for dense layers)
};

// Build the graph for n_tokens new tokens at positions n_past .. n_past+n_tokens-1.
ForwardGraph build_forward(glm_context& ctx, const ModelHparams& hp, const ModelTensors& w, KvCache& kv,
                           int64_t n_tokens, int64_t n_past, const ForwardOptions& opt);

// The MTP (NextN) draft step for n_tokens tokens at positions n_past..: input token ids, and the
// target's hidden state (after its final norm, as sglang/vLLM feed it) of the position before each.
// Its logits predict the token after each input token. Uses the cache slot n_layer of kv.
ForwardGraph build_mtp(glm_context& ctx, const ModelHparams& hp, const ModelTensors& w, KvCache& kv,
                       int64_t n_tokens, int64_t n_past, const ForwardOptions& opt);
