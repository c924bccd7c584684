// GLM-5 / GLM-5.1 (GlmMoeDsaForCausalLM) model configuration: config.json (+ generation_config.json,
// + hf_quant_config.json or config.json "quantization_config") parsed into one validated struct.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ggml-like/common.h"

enum class IndexerKind : uint8_t {
    full,    // the layer runs its own lightning indexer
    shared,  // the layer reuses the top-k of the closest full layer before it (IndexCache)
};

// ModelOpt quantisation settings, from either format (nvfp4.md §1). What is on disk still decides
// per tensor; these are cross-checks and logging.
struct QuantConfig {
    bool present = false;          // some quantisation config was found
    std::string quant_method;      // "modelopt"
    std::string quant_algo;        // "NVFP4" or "MIXED_PRECISION"
    int group_size = 16;
    std::string kv_cache_quant_algo;  // empty when null / absent
    std::vector<std::string> exclude_modules;  // globs on module names ('*' = any run of chars)
    std::string source;            // which file/key it came from

    // True when `module` (a Linear's name without ".weight") matches an exclude pattern, either in
    // full or on one dot-separated part (sglang's rule).
    bool is_excluded(const std::string& module) const;
};

struct ModelConfig {
    std::string architecture;  // "GlmMoeDsaForCausalLM"
    int64_t vocab_size = 0;
    int64_t hidden_size = 0;
    int64_t num_hidden_layers = 0;      // decoder layers; the MTP layers follow at this index
    int64_t first_k_dense_replace = 0;  // layers [0, k) are dense SwiGLU, the rest MoE
    int64_t moe_layer_freq = 1;
    int64_t intermediate_size = 0;      // dense MLP
    int64_t moe_intermediate_size = 0;  // one routed expert; shared expert = this x n_shared_experts
    int64_t n_routed_experts = 0;       // read from the file (160 for the REAP target, 256 base)
    int64_t n_shared_experts = 0;
    int64_t num_experts_per_tok = 0;    // top-k
    int64_t n_group = 1;
    int64_t topk_group = 1;
    float routed_scaling_factor = 1.0f;
    bool norm_topk_prob = true;
    std::string scoring_func = "sigmoid";
    int64_t num_attention_heads = 0;
    int64_t num_key_value_heads = 0;
    int64_t q_lora_rank = 0;
    int64_t kv_lora_rank = 0;
    int64_t qk_nope_head_dim = 0;
    int64_t qk_rope_head_dim = 0;
    int64_t v_head_dim = 0;
    int64_t qk_head_dim = 0;            // nope + rope
    double rope_theta = 0.0;
    std::string rope_type = "default";
    bool rope_interleave = true;          // MLA rope: interleaved pairs (x0,x1),(x2,x3)...
    bool indexer_rope_interleave = true;  // indexer rope: interleaved too (GLM-specific)
    int64_t index_n_heads = 0;
    int64_t index_head_dim = 0;
    int64_t index_topk = 0;
    std::vector<IndexerKind> indexer_types;  // one per decoder layer (MTP layers are always full)
    float rms_norm_eps = 1e-5f;
    // transformers builds q_a_layernorm / kv_a_layernorm without eps (1e-6) and the indexer's
    // k_norm LayerNorm with eps 1e-6; kept here so every engine reads the same numbers.
    float q_kv_norm_eps = 1e-6f;
    float indexer_norm_eps = 1e-6f;
    int64_t max_position_embeddings = 0;
    std::vector<int32_t> eos_token_ids;  // generation_config.json overrides config.json
    int32_t bos_token_id = -1;
    int32_t pad_token_id = -1;
    int64_t num_nextn_predict_layers = 0;
    bool tie_word_embeddings = false;
    std::string hidden_act = "silu";
    QuantConfig quant;

    bool is_moe_layer(int64_t layer) const;  // layer in [0, num_hidden_layers + num_nextn_predict_layers)
    bool is_mtp_layer(int64_t layer) const { return layer >= num_hidden_layers; }
    IndexerKind indexer_kind(int64_t layer) const;  // MTP layers: full
    std::string summary() const;                   // one line for logs
};

// Parse config.json text (`label` names the file in errors). Does not read other files.
Status parse_model_config(const std::string& json_text, const std::string& label, ModelConfig& out);
// Apply generation_config.json text (eos ids, bos, pad).
Status apply_generation_config(const std::string& json_text, const std::string& label, ModelConfig& out);
// Parse hf_quant_config.json text into `out` (the nested "quantization" block).
Status parse_hf_quant_config(const std::string& json_text, const std::string& label, QuantConfig& out);

// Read and validate DIR/config.json, DIR/generation_config.json (optional) and
// DIR/hf_quant_config.json (optional; config.json "quantization_config" wins when both exist).
Status load_config(const std::string& dir, ModelConfig& out);
