// config.json -> the tensors a checkpoint of that config holds, without the checkpoint. The list
// comes from weight_catalogue (the same one Checkpoint::bind checks a real checkpoint against), so
// the two cannot drift apart; this file only decides each tensor's storage (what ModelOpt's export
// would have written) and puts the records where bind would have put them.
#include "engine/synthetic.h"

#include <algorithm>
#include <cstdlib>

namespace {

// Tensors real exports keep in F32 although the model is BF16: the router's score-correction bias
// (DeepSeek-V3 lineage) and the indexer key LayerNorm (a float32 LayerNorm in the reference code).
// Everything else that is not NVFP4 is BF16, the checkpoints' torch_dtype.
glm_type plain_dtype(const std::string& suffix) {
    if (suffix == "mlp.gate.e_score_correction_bias" || suffix == "self_attn.indexer.k_norm.weight" ||
        suffix == "self_attn.indexer.k_norm.bias")
        return GLM_TYPE_F32;
    return GLM_TYPE_BF16;
}

// The slots of LayerWeights a catalogue entry lands in, by the name after "model.layers.N.".
struct PlainSlot {
    const char* suffix;
    const TensorRecord* LayerWeights::*member;
};
struct LinearSlot {
    const char* suffix;
    LinearWeight LayerWeights::*member;
};

const PlainSlot k_plain_slots[] = {
    {"input_layernorm.weight", &LayerWeights::input_layernorm},
    {"post_attention_layernorm.weight", &LayerWeights::post_attention_layernorm},
    {"self_attn.q_a_layernorm.weight", &LayerWeights::q_a_layernorm},
    {"self_attn.kv_a_layernorm.weight", &LayerWeights::kv_a_layernorm},
    {"self_attn.indexer.k_norm.weight", &LayerWeights::indexer_k_norm_weight},
    {"self_attn.indexer.k_norm.bias", &LayerWeights::indexer_k_norm_bias},
    {"mlp.gate.weight", &LayerWeights::router_weight},
    {"mlp.gate.e_score_correction_bias", &LayerWeights::router_bias},
    {"enorm.weight", &LayerWeights::enorm},
    {"hnorm.weight", &LayerWeights::hnorm},
    {"shared_head.norm.weight", &LayerWeights::shared_head_norm},
    {"embed_tokens.weight", &LayerWeights::mtp_embed_tokens},
    {"shared_head.head.weight", &LayerWeights::shared_head_head},
};

const LinearSlot k_linear_slots[] = {
    {"self_attn.q_a_proj", &LayerWeights::q_a_proj},
    {"self_attn.q_b_proj", &LayerWeights::q_b_proj},
    {"self_attn.kv_a_proj_with_mqa", &LayerWeights::kv_a_proj_with_mqa},
    {"self_attn.kv_b_proj", &LayerWeights::kv_b_proj},
    {"self_attn.o_proj", &LayerWeights::o_proj},
    {"self_attn.indexer.wq_b", &LayerWeights::indexer_wq_b},
    {"self_attn.indexer.wk", &LayerWeights::indexer_wk},
    {"self_attn.indexer.weights_proj", &LayerWeights::indexer_weights_proj},
    {"mlp.gate_proj", &LayerWeights::mlp_gate},
    {"mlp.up_proj", &LayerWeights::mlp_up},
    {"mlp.down_proj", &LayerWeights::mlp_down},
    {"mlp.shared_experts.gate_proj", &LayerWeights::shared_gate},
    {"mlp.shared_experts.up_proj", &LayerWeights::shared_up},
    {"mlp.shared_experts.down_proj", &LayerWeights::shared_down},
    {"eh_proj", &LayerWeights::eh_proj},
};

// "model.layers.12.self_attn.o_proj" -> 12 and "self_attn.o_proj"; -1 for the model-level tensors.
int64_t split_layer(const std::string& name, std::string& suffix) {
    static const std::string prefix = "model.layers.";
    if (name.rfind(prefix, 0) != 0) {
        suffix = name;
        return -1;
    }
    const size_t dot = name.find('.', prefix.size());
    GLM_ASSERT(dot != std::string::npos);
    suffix = name.substr(dot + 1);
    return std::strtoll(name.c_str() + prefix.size(), nullptr, 10);
}

// "mlp.experts.7.up_proj" -> 7 and "up_proj"; false for anything else.
bool split_expert(const std::string& suffix, int64_t& expert, std::string& proj) {
    static const std::string prefix = "mlp.experts.";
    if (suffix.rfind(prefix, 0) != 0) return false;
    const size_t dot = suffix.find('.', prefix.size());
    if (dot == std::string::npos) return false;
    expert = std::strtoll(suffix.c_str() + prefix.size(), nullptr, 10);
    proj = suffix.substr(dot + 1);
    return true;
}

class Builder {
public:
    explicit Builder(SyntheticCheckpoint& s) : s_(s), c_(s.config) {}

    TensorRecord* record(const std::string& name, glm_type dtype, std::vector<int64_t> shape) {
        TensorRecord r;
        r.name = name;
        r.dtype = dtype;
        r.shape = std::move(shape);
        r.nbytes = size_t(r.numel()) * safetensors_dtype_size(dtype);
        r.synthetic = true;
        s_.records.push_back(std::move(r));
        return &s_.records.back();
    }

    // A Linear as ModelOpt writes it: NVFP4 (codes, block scales, the two F32 scalars) unless the
    // quantisation config excludes the module, BF16 otherwise. The same test Checkpoint::bind uses
    // to cross-check what it finds on disk.
    Status linear(const std::string& prefix, int64_t out, int64_t in, LinearWeight& lw) {
        lw = LinearWeight();
        lw.name = prefix;
        lw.out = out;
        lw.in = in;
        lw.synthetic = true;
        const bool nvfp4 = c_.quant.present && !c_.quant.is_excluded(prefix);
        if (!nvfp4) {
            lw.weight_record = record(prefix + ".weight", GLM_TYPE_BF16, {out, in});
            lw.format = LinearFormat::dense;
            lw.dtype = GLM_TYPE_BF16;
            lw.nbytes = lw.weight_record->nbytes;
            return {};
        }
        if (in % GLM_NVFP4_BLOCK != 0)
            return Status::bad_input("{}: {} would be NVFP4 (the quantization config does not exclude it) but its input "
                                     "size {} is not a multiple of {}; add it to exclude_modules in {}",
                                     s_.dir, prefix, in, GLM_NVFP4_BLOCK,
                                     c_.quant.source.empty() ? "hf_quant_config.json" : c_.quant.source);
        lw.weight_record = record(prefix + ".weight", GLM_TYPE_U8, {out, in / 2});
        lw.scale_record = record(prefix + ".weight_scale", GLM_TYPE_F8_E4M3, {out, in / GLM_NVFP4_BLOCK});
        record(prefix + ".weight_scale_2", GLM_TYPE_F32, {});
        record(prefix + ".input_scale", GLM_TYPE_F32, {});
        lw.format = LinearFormat::nvfp4;
        lw.dtype = GLM_TYPE_U8;
        lw.nbytes = lw.weight_record->nbytes;
        lw.scales_nbytes = lw.scale_record->nbytes;
        // The fill gives the block scales their magnitude; the global scale stays neutral.
        lw.weight_scale_2 = 1.0f;
        ++s_.weights.n_nvfp4_linears;
        return {};
    }

    Status entry(const ExpectedTensor& e) {
        std::string suffix;
        const int64_t il = split_layer(e.name, suffix);
        ModelWeights& w = s_.weights;
        if (il < 0) {
            if (e.name == "model.embed_tokens.weight") w.embed_tokens = plain(e, suffix);
            else if (e.name == "model.norm.weight") w.norm = plain(e, suffix);
            else if (e.name == "lm_head") return linear(e.name, e.shape[0], e.shape[1], w.lm_head);
            else GLM_ABORT("weight_catalogue entry '{}' has no place in open_synthetic; add it there", e.name);
            return {};
        }
        GLM_ASSERT(il < int64_t(w.layers.size()));
        LayerWeights& L = w.layers[size_t(il)];
        if (!wanted(e, L.is_mtp, suffix)) return {};
        if (!e.linear) {
            for (const PlainSlot& s : k_plain_slots)
                if (suffix == s.suffix) {
                    L.*s.member = plain(e, suffix);
                    return {};
                }
            GLM_ABORT("weight_catalogue entry '{}' has no place in open_synthetic; add it there", e.name);
        }
        int64_t expert = 0;
        std::string proj;
        if (split_expert(suffix, expert, proj)) {
            GLM_ASSERT(expert >= 0 && expert < int64_t(L.experts.size()));
            ExpertWeights& ew = L.experts[size_t(expert)];
            LinearWeight* dst = proj == "gate_proj" ? &ew.gate : proj == "up_proj" ? &ew.up
                              : proj == "down_proj" ? &ew.down : nullptr;
            if (!dst) GLM_ABORT("weight_catalogue entry '{}' has no place in open_synthetic; add it there", e.name);
            return linear(e.name, e.shape[0], e.shape[1], *dst);
        }
        for (const LinearSlot& s : k_linear_slots)
            if (suffix == s.suffix) return linear(e.name, e.shape[0], e.shape[1], L.*s.member);
        GLM_ABORT("weight_catalogue entry '{}' has no place in open_synthetic; add it there", e.name);
    }

private:
    const TensorRecord* plain(const ExpectedTensor& e, const std::string& suffix) {
        const glm_type dtype = plain_dtype(suffix);
        GLM_ASSERT(std::find(e.dtypes.begin(), e.dtypes.end(), dtype) != e.dtypes.end());
        return record(e.name, dtype, e.shape);
    }

    // The catalogue marks every tensor of an MTP layer optional (exports may drop the layer); the
    // synthetic checkpoint has the whole layer the config announces, as the GLM-5.1 exports do, but
    // not its private copies of the embedding and the head: glmrun (like sglang and vLLM) uses the
    // main ones, and the target's 285 GiB leaves them out.
    static bool wanted(const ExpectedTensor& e, bool mtp, const std::string& suffix) {
        if (e.required) return true;
        if (!mtp) return false;
        return suffix != "embed_tokens.weight" && suffix != "shared_head.head.weight";
    }

    SyntheticCheckpoint& s_;
    const ModelConfig& c_;
};

}  // namespace

Status open_synthetic(const std::string& dir_in, SyntheticCheckpoint& out) {
    SyntheticCheckpoint s;
    s.dir = dir_in;
    while (s.dir.size() > 1 && s.dir.back() == '/') s.dir.pop_back();
    GLM_TRY(load_config(s.dir, s.config));
    const ModelConfig& c = s.config;

    ModelWeights& w = s.weights;
    const int64_t n_layers = c.num_hidden_layers + c.num_nextn_predict_layers;
    w.layers.resize(size_t(n_layers));
    for (int64_t i = 0; i < n_layers; ++i) {
        LayerWeights& L = w.layers[size_t(i)];
        L.index = i;
        L.is_mtp = c.is_mtp_layer(i);
        L.is_moe = c.is_moe_layer(i);
        L.indexer_kind = c.indexer_kind(i);
        if (L.is_moe) L.experts.resize(size_t(c.n_routed_experts));
    }
    w.n_mtp_layers = c.num_nextn_predict_layers;

    Builder b(s);
    for (const ExpectedTensor& e : weight_catalogue(c)) GLM_TRY(b.entry(e));

    if (c.tie_word_embeddings && w.embed_tokens) {
        // Tied: the head is the embedding, as bind maps it.
        w.lm_head = LinearWeight();
        w.lm_head.name = "model.embed_tokens";
        w.lm_head.dtype = w.embed_tokens->dtype;
        w.lm_head.out = c.vocab_size;
        w.lm_head.in = c.hidden_size;
        w.lm_head.nbytes = w.embed_tokens->nbytes;
        w.lm_head.weight_record = w.embed_tokens;
        w.lm_head.synthetic = true;
    }
    for (LayerWeights& L : w.layers)
        L.has_indexer = L.indexer_wq_b.present() && L.indexer_wk.present() && L.indexer_weights_proj.present() &&
                        L.indexer_k_norm_weight && L.indexer_k_norm_bias;

    const uint64_t bytes = synthetic_bytes(s);
    log_info("{}: synthetic checkpoint (no shards read): {} tensors, {:.2f} GB ({:.1f} GiB), {} NVFP4 linears; {}",
             s.dir, s.records.size(), double(bytes) / 1e9, double(bytes) / 1073741824.0, w.n_nvfp4_linears,
             c.summary());
    out = std::move(s);
    return {};
}

uint64_t synthetic_bytes(const SyntheticCheckpoint& checkpoint) {
    uint64_t n = 0;
    for (const TensorRecord& r : checkpoint.records) n += r.nbytes;
    return n;
}
