// A GLM-5 checkpoint directory as `hf download` leaves it: config + shards, memory-mapped, looked up
// by tensor name, and bound to the model's weight catalogue (every expected tensor with its shape
// and allowed dtypes). No device buffers here: the runtime maps these records into its tensors.
//
//   Checkpoint ckpt;
//   GLM_TRY(Checkpoint::open(dir, ckpt));          // config.json, index + shards, headers validated
//   ModelWeights w;
//   GLM_TRY(ckpt.bind(w));                         // all missing / wrong tensors reported at once
//   const LinearWeight& g = w.layers[3].experts[7].gate;  // NVFP4 or BF16, as on disk
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/config.h"
#include "engine/safetensors.h"

// One tensor of the checkpoint: a zero-copy view into a mapped shard.
struct TensorRecord {
    std::string name;
    glm_type dtype = GLM_TYPE_F32;  // safetensors dtype (U8 for packed NVFP4 codes)
    std::vector<int64_t> shape;
    const uint8_t* data = nullptr;
    size_t nbytes = 0;
    const std::string* file = nullptr;  // shard path
    uint64_t file_offset = 0;           // absolute byte offset of the data in that file
    bool synthetic = false;             // no bytes anywhere (--synthetic): data == nullptr, nbytes as on disk

    int64_t numel() const;
    std::string shape_str() const;  // "[64, 32]"
};

enum class LinearFormat : uint8_t { dense, nvfp4 };

// One Linear y = x W^T with W logically [out, in], as stored on disk.
//   dense: data holds out x in elements of `dtype` (BF16, F16 or F32), row-major.
//   nvfp4: data holds out x in/2 bytes of E2M1 codes (low nibble = even element), scales holds
//          out x in/16 E4M3 block scales (linear layout), and
//          W[o,i] = (e2m1(code) * e4m3(scale[o, i/16])) * weight_scale_2.
// `data` may point inside a larger tensor (one expert of a fused [E, ...] tensor).
struct LinearWeight {
    std::string name;  // module prefix, e.g. model.layers.3.mlp.experts.7.gate_proj
    LinearFormat format = LinearFormat::dense;
    glm_type dtype = GLM_TYPE_BF16;  // dense element type; U8 for nvfp4
    int64_t out = 0, in = 0;
    const uint8_t* data = nullptr;
    size_t nbytes = 0;
    const uint8_t* scales = nullptr;  // nvfp4 only
    size_t scales_nbytes = 0;
    float weight_scale_2 = 1.0f;      // nvfp4 only; each projection keeps its own (gate != up allowed)
    float input_scale = 0.0f;         // nvfp4 only; 0 when absent (unused by W4A16)
    const TensorRecord* weight_record = nullptr;  // for messages / file offsets
    const TensorRecord* scale_record = nullptr;
    bool synthetic = false;  // shape and format only (--synthetic): data == nullptr, filled on the device

    bool present() const { return data != nullptr || synthetic; }
    bool is_nvfp4() const { return format == LinearFormat::nvfp4; }
    // Dequantise / convert one row to f32 (exactly the reference formula for NVFP4).
    void row_to_f32(int64_t row, float* dst) const;
};

struct ExpertWeights {
    LinearWeight gate, up, down;  // [I, D], [I, D], [D, I]
};

struct LayerWeights {
    int64_t index = 0;
    bool is_mtp = false;
    bool is_moe = false;
    IndexerKind indexer_kind = IndexerKind::full;

    const TensorRecord* input_layernorm = nullptr;
    const TensorRecord* post_attention_layernorm = nullptr;
    // MLA
    LinearWeight q_a_proj, q_b_proj, kv_a_proj_with_mqa, kv_b_proj, o_proj;
    const TensorRecord* q_a_layernorm = nullptr;   // RMSNorm eps config.q_kv_norm_eps
    const TensorRecord* kv_a_layernorm = nullptr;
    // Lightning indexer: present on full layers (and bound on shared layers when the file has it).
    bool has_indexer = false;
    LinearWeight indexer_wq_b, indexer_wk, indexer_weights_proj;
    const TensorRecord* indexer_k_norm_weight = nullptr;  // LayerNorm eps config.indexer_norm_eps
    const TensorRecord* indexer_k_norm_bias = nullptr;
    // Dense SwiGLU (layers < first_k_dense_replace)
    LinearWeight mlp_gate, mlp_up, mlp_down;
    // MoE
    const TensorRecord* router_weight = nullptr;  // mlp.gate.weight [E, D]
    const TensorRecord* router_bias = nullptr;    // mlp.gate.e_score_correction_bias [E] (F32 usually)
    std::vector<ExpertWeights> experts;           // n_routed_experts, id order
    bool experts_fused = false;                   // came from gate_up_proj / down_proj 3-D tensors
    LinearWeight shared_gate, shared_up, shared_down;
    // MTP extras (layer index >= num_hidden_layers)
    const TensorRecord* enorm = nullptr;
    const TensorRecord* hnorm = nullptr;
    LinearWeight eh_proj;                              // [D, 2D], input = [enorm(emb); hnorm(h)]
    const TensorRecord* shared_head_norm = nullptr;
    const TensorRecord* mtp_embed_tokens = nullptr;   // optional (the main embedding is used)
    const TensorRecord* shared_head_head = nullptr;   // optional (the main lm_head is used)
};

struct ModelWeights {
    const TensorRecord* embed_tokens = nullptr;  // [V, D]
    const TensorRecord* norm = nullptr;          // [D]
    LinearWeight lm_head;                        // [V, D] (embed_tokens when tied)
    std::vector<LayerWeights> layers;            // decoder layers, then the MTP layers that are present
    int64_t n_mtp_layers = 0;                    // MTP layers found on disk
    int64_t n_nvfp4_linears = 0;
    int64_t n_scale_mismatch = 0;                // experts whose gate and up weight_scale_2 differ
};

// One expected tensor of the catalogue.
struct ExpectedTensor {
    std::string name;             // full tensor name, or a Linear's module prefix when linear
    std::vector<int64_t> shape;   // logical shape ([out, in] for linears)
    bool linear = false;          // dense or NVFP4 (weight + weight_scale + weight_scale_2)
    bool required = true;
    std::vector<glm_type> dtypes; // allowed dtypes for plain tensors (dense dtypes for linears)
};

// Every tensor a GLM-5 config implies (per-expert layout for experts; MTP layer entries are
// optional). Used by bind() and for messages.
std::vector<ExpectedTensor> weight_catalogue(const ModelConfig& config);

class Checkpoint {
public:
    // Load the config, read the index (or the single model.safetensors), map and validate every shard.
    static Status open(const std::string& dir, Checkpoint& out);

    const std::string& dir() const { return dir_; }
    const ModelConfig& config() const { return config_; }
    const TensorRecord* find(const std::string& name) const;
    const std::vector<TensorRecord>& tensors() const { return records_; }
    size_t total_bytes() const;
    size_t shard_count() const { return files_.size(); }

    // Check the catalogue (presence, shape, dtype, finite NVFP4 scales) and fill `out`. Reports
    // every missing tensor in one message.
    Status bind(ModelWeights& out) const;

private:
    std::string dir_;
    ModelConfig config_;
    std::vector<std::unique_ptr<SafetensorsFile>> files_;
    std::vector<TensorRecord> records_;
    std::unordered_map<std::string, size_t> by_name_;
};
