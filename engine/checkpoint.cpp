// Checkpoint directory -> name-indexed tensor records -> the GLM-5 weight catalogue.
#include "engine/checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

using json = nlohmann::json;

namespace {

bool is_regular_file(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_dense_dtype(glm_type t) { return t == GLM_TYPE_BF16 || t == GLM_TYPE_F16 || t == GLM_TYPE_F32; }

std::string shape_string(const std::vector<int64_t>& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

std::string dtype_list(const std::vector<glm_type>& ts) {
    std::string out;
    for (size_t i = 0; i < ts.size(); ++i) out += (i ? "/" : "") + std::string(safetensors_dtype_name(ts[i]));
    return out;
}

float read_f32_scalar(const TensorRecord& r) {
    float v;
    std::memcpy(&v, r.data, 4);
    return v;
}

const std::vector<glm_type> k_norm_dtypes = {GLM_TYPE_BF16, GLM_TYPE_F32, GLM_TYPE_F16};

// Walks the catalogue and records every problem instead of stopping at the first one.
class Binder {
public:
    Binder(const Checkpoint& ckpt) : ck_(ckpt), cfg_(ckpt.config()) {}

    const TensorRecord* plain(const std::string& name, const std::vector<int64_t>& shape, bool required = true,
                              const std::vector<glm_type>& dtypes = k_norm_dtypes) {
        const TensorRecord* r = ck_.find(name);
        if (!r) {
            if (required) missing_.push_back(name);
            return nullptr;
        }
        used_.insert(name);
        if (std::find(dtypes.begin(), dtypes.end(), r->dtype) == dtypes.end()) {
            problems_.push_back(fmt::format("{} has dtype {} (expected {})", name, safetensors_dtype_name(r->dtype),
                                            dtype_list(dtypes)));
            return nullptr;
        }
        if (r->shape != shape) {
            problems_.push_back(fmt::format("{} has shape {} (expected {})", name, r->shape_str(), shape_string(shape)));
            return nullptr;
        }
        return r;
    }

    // A Linear [out, in]: dense weight, or NVFP4 weight + weight_scale + weight_scale_2 (+ input_scale).
    LinearWeight linear(const std::string& prefix, int64_t out, int64_t in, bool required = true) {
        LinearWeight lw;
        lw.name = prefix;
        lw.out = out;
        lw.in = in;
        const std::string wname = prefix + ".weight";
        const TensorRecord* w = ck_.find(wname);
        if (!w) {
            if (required) missing_.push_back(wname);
            return lw;
        }
        used_.insert(wname);
        lw.weight_record = w;
        const bool excluded = cfg_.quant.present && cfg_.quant.is_excluded(prefix);
        if (w->dtype == GLM_TYPE_U8) {
            const TensorRecord* s = ck_.find(prefix + ".weight_scale");
            const TensorRecord* s2 = ck_.find(prefix + ".weight_scale_2");
            if (!s) missing_.push_back(prefix + ".weight_scale");
            if (!s2) missing_.push_back(prefix + ".weight_scale_2");
            if (!s || !s2) return lw;
            used_.insert(s->name);
            used_.insert(s2->name);
            if (in % GLM_NVFP4_BLOCK != 0) {
                problems_.push_back(fmt::format("{} is NVFP4 but its input size {} is not a multiple of 16", wname, in));
                return lw;
            }
            if (w->shape != std::vector<int64_t>{out, in / 2}) {
                problems_.push_back(fmt::format("{} has shape {} (expected U8 [{}, {}] for NVFP4 [{}, {}])", wname,
                                                w->shape_str(), out, in / 2, out, in));
                return lw;
            }
            if (s->dtype != GLM_TYPE_F8_E4M3 || s->shape != std::vector<int64_t>{out, in / 16}) {
                problems_.push_back(fmt::format("{} is {} {} (expected F8_E4M3 [{}, {}])", s->name,
                                                safetensors_dtype_name(s->dtype), s->shape_str(), out, in / 16));
                return lw;
            }
            if (s2->dtype != GLM_TYPE_F32 || s2->numel() != 1) {
                problems_.push_back(fmt::format("{} is {} {} (expected an F32 scalar)", s2->name,
                                                safetensors_dtype_name(s2->dtype), s2->shape_str()));
                return lw;
            }
            const float g = read_f32_scalar(*s2);
            if (!std::isfinite(g) || g <= 0.0f) {
                problems_.push_back(fmt::format("{} = {} is not a finite positive scale", s2->name, g));
                return lw;
            }
            if (const TensorRecord* is = ck_.find(prefix + ".input_scale")) {
                used_.insert(is->name);
                if (is->dtype == GLM_TYPE_F32 && is->numel() == 1) lw.input_scale = read_f32_scalar(*is);
            }
            if (excluded) log_debug("{}: NVFP4 on disk although exclude_modules matches it; using what is on disk", prefix);
            lw.format = LinearFormat::nvfp4;
            lw.dtype = GLM_TYPE_U8;
            lw.data = w->data;
            lw.nbytes = w->nbytes;
            lw.scales = s->data;
            lw.scales_nbytes = s->nbytes;
            lw.weight_scale_2 = g;
            lw.scale_record = s;
            ++n_nvfp4_;
            return lw;
        }
        if (!is_dense_dtype(w->dtype)) {
            problems_.push_back(fmt::format("{} has dtype {} (expected BF16/F16/F32, or U8 with NVFP4 scales)", wname,
                                            safetensors_dtype_name(w->dtype)));
            return lw;
        }
        if (w->shape != std::vector<int64_t>{out, in}) {
            problems_.push_back(fmt::format("{} has shape {} (expected [{}, {}])", wname, w->shape_str(), out, in));
            return lw;
        }
        if (cfg_.quant.present && !excluded && prefix.find(".experts.") != std::string::npos)
            log_debug("{}: {} on disk where the quantization config expects NVFP4; using what is on disk", prefix,
                      safetensors_dtype_name(w->dtype));
        lw.format = LinearFormat::dense;
        lw.dtype = w->dtype;
        lw.data = w->data;
        lw.nbytes = w->nbytes;
        return lw;
    }

    // Experts: per-expert tensors (real checkpoints) or transformers' fused 3-D layout.
    void experts(LayerWeights& L, const std::string& p) {
        const int64_t E = cfg_.n_routed_experts, I = cfg_.moe_intermediate_size, D = cfg_.hidden_size;
        const TensorRecord* gu = ck_.find(p + "mlp.experts.gate_up_proj");
        if (gu) {
            const TensorRecord* dn = plain(p + "mlp.experts.down_proj", {E, D, I}, true, k_norm_dtypes);
            const TensorRecord* g = plain(p + "mlp.experts.gate_up_proj", {E, 2 * I, D}, true, k_norm_dtypes);
            L.experts_fused = true;
            if (!g || !dn) return;
            const size_t es = safetensors_dtype_size(g->dtype);
            for (int64_t e = 0; e < E; ++e) {
                ExpertWeights ew;
                auto slice = [&](LinearWeight& lw, const TensorRecord* r, const char* proj, int64_t out, int64_t in,
                                 size_t byte_off) {
                    lw.name = fmt::format("{}mlp.experts.{}.{}", p, e, proj);
                    lw.format = LinearFormat::dense;
                    lw.dtype = r->dtype;
                    lw.out = out;
                    lw.in = in;
                    lw.nbytes = size_t(out * in) * es;
                    lw.data = r->data + byte_off;
                    lw.weight_record = r;
                };
                const size_t expert_gu = size_t(2 * I * D) * es;
                slice(ew.gate, g, "gate_proj", I, D, size_t(e) * expert_gu);  // gate rows first
                slice(ew.up, g, "up_proj", I, D, size_t(e) * expert_gu + size_t(I * D) * es);
                slice(ew.down, dn, "down_proj", D, I, size_t(e) * size_t(D * I) * es);
                L.experts.push_back(ew);
            }
            return;
        }
        for (int64_t e = 0; e < E; ++e) {
            const std::string ep = fmt::format("{}mlp.experts.{}.", p, e);
            ExpertWeights ew;
            ew.gate = linear(ep + "gate_proj", I, D);
            ew.up = linear(ep + "up_proj", I, D);
            ew.down = linear(ep + "down_proj", D, I);
            if (ew.gate.is_nvfp4() && ew.up.is_nvfp4() && ew.gate.weight_scale_2 != ew.up.weight_scale_2)
                ++n_scale_mismatch_;
            L.experts.push_back(ew);
        }
    }

    void layer(LayerWeights& L, int64_t i, bool mtp) {
        const int64_t D = cfg_.hidden_size, H = cfg_.num_attention_heads;
        const std::string p = fmt::format("model.layers.{}.", i);
        L.index = i;
        L.is_mtp = mtp;
        L.is_moe = cfg_.is_moe_layer(i);
        L.indexer_kind = cfg_.indexer_kind(i);
        L.input_layernorm = plain(p + "input_layernorm.weight", {D});
        L.post_attention_layernorm = plain(p + "post_attention_layernorm.weight", {D});
        const std::string a = p + "self_attn.";
        L.q_a_proj = linear(a + "q_a_proj", cfg_.q_lora_rank, D);
        L.q_a_layernorm = plain(a + "q_a_layernorm.weight", {cfg_.q_lora_rank});
        L.q_b_proj = linear(a + "q_b_proj", H * cfg_.qk_head_dim, cfg_.q_lora_rank);
        L.kv_a_proj_with_mqa = linear(a + "kv_a_proj_with_mqa", cfg_.kv_lora_rank + cfg_.qk_rope_head_dim, D);
        L.kv_a_layernorm = plain(a + "kv_a_layernorm.weight", {cfg_.kv_lora_rank});
        L.kv_b_proj = linear(a + "kv_b_proj", H * (cfg_.qk_nope_head_dim + cfg_.v_head_dim), cfg_.kv_lora_rank);
        L.o_proj = linear(a + "o_proj", D, H * cfg_.v_head_dim);
        // Shared layers need no indexer (GLM-5.2 ships none there); GLM-5.1 with a pattern still has one.
        const bool need_indexer = L.indexer_kind == IndexerKind::full;
        const std::string x = a + "indexer.";
        const bool indexer_on_disk = ck_.find(x + "wk.weight") != nullptr;
        if (need_indexer || indexer_on_disk) {
            const int64_t IH = cfg_.index_n_heads, ID = cfg_.index_head_dim;
            L.indexer_wq_b = linear(x + "wq_b", IH * ID, cfg_.q_lora_rank);
            L.indexer_wk = linear(x + "wk", ID, D);
            L.indexer_weights_proj = linear(x + "weights_proj", IH, D);
            L.indexer_k_norm_weight = plain(x + "k_norm.weight", {ID});
            L.indexer_k_norm_bias = plain(x + "k_norm.bias", {ID});
            L.has_indexer = L.indexer_wq_b.present() && L.indexer_wk.present() && L.indexer_weights_proj.present() &&
                            L.indexer_k_norm_weight && L.indexer_k_norm_bias;
        }
        if (!L.is_moe) {
            L.mlp_gate = linear(p + "mlp.gate_proj", cfg_.intermediate_size, D);
            L.mlp_up = linear(p + "mlp.up_proj", cfg_.intermediate_size, D);
            L.mlp_down = linear(p + "mlp.down_proj", D, cfg_.intermediate_size);
        } else {
            const int64_t E = cfg_.n_routed_experts;
            L.router_weight = plain(p + "mlp.gate.weight", {E, D});
            L.router_bias = plain(p + "mlp.gate.e_score_correction_bias", {E});
            experts(L, p);
            if (cfg_.n_shared_experts > 0) {
                const int64_t SI = cfg_.moe_intermediate_size * cfg_.n_shared_experts;
                L.shared_gate = linear(p + "mlp.shared_experts.gate_proj", SI, D);
                L.shared_up = linear(p + "mlp.shared_experts.up_proj", SI, D);
                L.shared_down = linear(p + "mlp.shared_experts.down_proj", D, SI);
            }
        }
        if (mtp) {
            L.enorm = plain(p + "enorm.weight", {D});
            L.hnorm = plain(p + "hnorm.weight", {D});
            L.eh_proj = linear(p + "eh_proj", D, 2 * D);
            L.shared_head_norm = plain(p + "shared_head.norm.weight", {D});
            L.mtp_embed_tokens = plain(p + "embed_tokens.weight", {cfg_.vocab_size, D}, false);
            L.shared_head_head = plain(p + "shared_head.head.weight", {cfg_.vocab_size, D}, false);
        }
    }

    Status finish(ModelWeights& out) {
        out.n_nvfp4_linears = n_nvfp4_;
        out.n_scale_mismatch = n_scale_mismatch_;
        if (missing_.empty() && problems_.empty()) {
            size_t unused = 0;
            for (const auto& r : ck_.tensors()) unused += used_.count(r.name) == 0;
            if (unused) log_debug("{}: {} tensors on disk are not used by the model", ck_.dir(), unused);
            return {};
        }
        std::string msg = ck_.dir() + ": ";
        if (!missing_.empty()) {
            msg += fmt::format("{} required tensor{} missing: ", missing_.size(), missing_.size() == 1 ? " is" : "s are");
            for (size_t i = 0; i < missing_.size(); ++i) msg += (i ? ", " : "") + missing_[i];
            msg += problems_.empty() ? "" : "; ";
        }
        for (size_t i = 0; i < problems_.size(); ++i) msg += (i ? "; " : "") + problems_[i];
        msg += " -- the checkpoint does not match its config.json; re-download the shards listed in "
               "model.safetensors.index.json";
        return Status::error(ErrorKind::bad_input, msg);
    }

private:
    const Checkpoint& ck_;
    const ModelConfig& cfg_;
    std::vector<std::string> missing_;
    std::vector<std::string> problems_;
    std::set<std::string> used_;
    int64_t n_nvfp4_ = 0;
    int64_t n_scale_mismatch_ = 0;
};

}  // namespace

int64_t TensorRecord::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

std::string TensorRecord::shape_str() const { return shape_string(shape); }

void LinearWeight::row_to_f32(int64_t row, float* dst) const {
    GLM_ASSERT(data && row >= 0 && row < out);
    if (format == LinearFormat::nvfp4) {
        glm_nvfp4_row_to_f32(data + size_t(row) * size_t(in / 2), scales + size_t(row) * size_t(in / 16),
                             weight_scale_2, dst, in);
        return;
    }
    glm_row_to_f32(dtype, data + size_t(row) * size_t(in) * safetensors_dtype_size(dtype), dst, in);
}

std::vector<ExpectedTensor> weight_catalogue(const ModelConfig& c) {
    std::vector<ExpectedTensor> out;
    const int64_t D = c.hidden_size, H = c.num_attention_heads;
    auto plain = [&](std::string name, std::vector<int64_t> shape, bool required = true,
                     std::vector<glm_type> dt = k_norm_dtypes) {
        out.push_back({std::move(name), std::move(shape), false, required, std::move(dt)});
    };
    auto linear = [&](std::string name, int64_t o, int64_t i, bool required = true) {
        out.push_back({std::move(name), {o, i}, true, required, {GLM_TYPE_BF16, GLM_TYPE_F16, GLM_TYPE_F32}});
    };
    plain("model.embed_tokens.weight", {c.vocab_size, D});
    plain("model.norm.weight", {D});
    if (!c.tie_word_embeddings) linear("lm_head", c.vocab_size, D);
    for (int64_t i = 0; i < c.num_hidden_layers + c.num_nextn_predict_layers; ++i) {
        const bool mtp = c.is_mtp_layer(i), req = !mtp;
        const std::string p = fmt::format("model.layers.{}.", i), a = p + "self_attn.";
        plain(p + "input_layernorm.weight", {D}, req);
        plain(p + "post_attention_layernorm.weight", {D}, req);
        linear(a + "q_a_proj", c.q_lora_rank, D, req);
        plain(a + "q_a_layernorm.weight", {c.q_lora_rank}, req);
        linear(a + "q_b_proj", H * c.qk_head_dim, c.q_lora_rank, req);
        linear(a + "kv_a_proj_with_mqa", c.kv_lora_rank + c.qk_rope_head_dim, D, req);
        plain(a + "kv_a_layernorm.weight", {c.kv_lora_rank}, req);
        linear(a + "kv_b_proj", H * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank, req);
        linear(a + "o_proj", D, H * c.v_head_dim, req);
        const bool ireq = req && c.indexer_kind(i) == IndexerKind::full;
        linear(a + "indexer.wq_b", c.index_n_heads * c.index_head_dim, c.q_lora_rank, ireq);
        linear(a + "indexer.wk", c.index_head_dim, D, ireq);
        linear(a + "indexer.weights_proj", c.index_n_heads, D, ireq);
        plain(a + "indexer.k_norm.weight", {c.index_head_dim}, ireq);
        plain(a + "indexer.k_norm.bias", {c.index_head_dim}, ireq);
        if (!c.is_moe_layer(i)) {
            linear(p + "mlp.gate_proj", c.intermediate_size, D, req);
            linear(p + "mlp.up_proj", c.intermediate_size, D, req);
            linear(p + "mlp.down_proj", D, c.intermediate_size, req);
        } else {
            plain(p + "mlp.gate.weight", {c.n_routed_experts, D}, req);
            plain(p + "mlp.gate.e_score_correction_bias", {c.n_routed_experts}, req);
            for (int64_t e = 0; e < c.n_routed_experts; ++e) {
                const std::string ep = fmt::format("{}mlp.experts.{}.", p, e);
                linear(ep + "gate_proj", c.moe_intermediate_size, D, req);
                linear(ep + "up_proj", c.moe_intermediate_size, D, req);
                linear(ep + "down_proj", D, c.moe_intermediate_size, req);
            }
            const int64_t SI = c.moe_intermediate_size * c.n_shared_experts;
            if (SI > 0) {
                linear(p + "mlp.shared_experts.gate_proj", SI, D, req);
                linear(p + "mlp.shared_experts.up_proj", SI, D, req);
                linear(p + "mlp.shared_experts.down_proj", D, SI, req);
            }
        }
        if (mtp) {
            plain(p + "enorm.weight", {D}, false);
            plain(p + "hnorm.weight", {D}, false);
            linear(p + "eh_proj", D, 2 * D, false);
            plain(p + "shared_head.norm.weight", {D}, false);
            plain(p + "embed_tokens.weight", {c.vocab_size, D}, false);
            plain(p + "shared_head.head.weight", {c.vocab_size, D}, false);
        }
    }
    return out;
}

const TensorRecord* Checkpoint::find(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &records_[it->second];
}

size_t Checkpoint::total_bytes() const {
    size_t n = 0;
    for (const auto& r : records_) n += r.nbytes;
    return n;
}

Status Checkpoint::open(const std::string& dir_in, Checkpoint& out) {
    std::string dir = dir_in;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    Checkpoint ck;
    ck.dir_ = dir;
    GLM_TRY(load_config(dir, ck.config_));

    // Which files: the index's weight_map, else the single-file layout.
    std::vector<std::string> shard_names;
    std::unordered_map<std::string, std::string> expected_file;  // tensor -> shard, from the index
    const std::string index_path = dir + "/model.safetensors.index.json";
    if (is_regular_file(index_path)) {
        std::string text;
        GLM_TRY(read_text_file(index_path, text));
        json j = json::parse(text, nullptr, false);
        if (j.is_discarded() || !j.is_object())
            return Status::bad_input("{}: not valid JSON; re-download it", index_path);
        auto wm = j.find("weight_map");
        if (wm == j.end() || !wm->is_object())
            return Status::bad_input("{}: no 'weight_map' object; re-download it", index_path);
        std::set<std::string> seen;
        for (auto it = wm->begin(); it != wm->end(); ++it) {
            if (!it.value().is_string())
                return Status::bad_input("{}: weight_map entry '{}' is not a file name", index_path, it.key());
            const std::string f = it.value().get<std::string>();
            if (f.empty() || f.find("..") != std::string::npos || f[0] == '/')
                return Status::bad_input("{}: weight_map entry '{}' names an unsafe path '{}'", index_path, it.key(), f);
            expected_file[it.key()] = f;
            if (seen.insert(f).second) shard_names.push_back(f);
        }
        std::vector<std::string> absent;
        for (const auto& f : shard_names)
            if (!is_regular_file(dir + "/" + f)) absent.push_back(f);
        if (!absent.empty()) {
            std::string list;
            for (size_t i = 0; i < absent.size(); ++i) list += (i ? ", " : "") + absent[i];
            return Status::bad_input("{}: {} shard{} listed in model.safetensors.index.json {} missing: {}; download "
                                     "{} (e.g. hf download <repo> --local-dir {})", dir, absent.size(),
                                     absent.size() == 1 ? "" : "s", absent.size() == 1 ? "is" : "are", list,
                                     absent.size() == 1 ? "it" : "them", dir);
        }
    } else if (is_regular_file(dir + "/model.safetensors")) {
        shard_names.push_back("model.safetensors");
    } else {
        return Status::bad_input("{}: neither model.safetensors.index.json nor model.safetensors found; download the "
                                 "weights into this directory", dir);
    }

    for (const auto& f : shard_names) {
        auto sf = std::make_unique<SafetensorsFile>();
        GLM_TRY(sf->open(dir + "/" + f));
        ck.files_.push_back(std::move(sf));
    }
    size_t total = 0;
    for (const auto& sf : ck.files_) total += sf->entries().size();
    ck.records_.reserve(total);
    for (const auto& sf : ck.files_) {
        const std::string& fname = sf->path();
        for (const auto& e : sf->entries()) {
            TensorRecord r;
            r.name = e.name;
            r.dtype = e.dtype;
            r.shape = e.shape;
            r.data = sf->tensor_data(e);
            r.nbytes = size_t(e.end - e.begin);
            r.file = &fname;
            r.file_offset = sf->data_offset() + e.begin;
            auto [it, inserted] = ck.by_name_.emplace(r.name, ck.records_.size());
            if (!inserted)
                return Status::bad_input("{}: tensor '{}' appears in both {} and {}; remove the stale shard", dir, r.name,
                                         *ck.records_[it->second].file, fname);
            ck.records_.push_back(std::move(r));
        }
    }
    for (const auto& [name, f] : expected_file) {
        const TensorRecord* r = ck.find(name);
        if (!r)
            return Status::bad_input("{}/{}: tensor '{}' listed in model.safetensors.index.json is not in this shard; the "
                                     "shard is stale or truncated, re-download it", dir, f, name);
        if (*r->file != dir + "/" + f)
            return Status::bad_input("{}: tensor '{}' is in {} but the index says {}; re-download the index", dir, name,
                                     *r->file, f);
    }
    log_info("{}: {} tensors in {} shard{}, {:.2f} GB; {}", dir, ck.records_.size(), ck.files_.size(),
             ck.files_.size() == 1 ? "" : "s", double(ck.total_bytes()) / 1e9, ck.config_.summary());
    out = std::move(ck);
    return {};
}

Status Checkpoint::bind(ModelWeights& out) const {
    Binder b(*this);
    ModelWeights w;
    const ModelConfig& c = config_;
    w.embed_tokens = b.plain("model.embed_tokens.weight", {c.vocab_size, c.hidden_size});
    w.norm = b.plain("model.norm.weight", {c.hidden_size});
    if (c.tie_word_embeddings) {
        if (w.embed_tokens) {
            w.lm_head.name = "model.embed_tokens";
            w.lm_head.dtype = w.embed_tokens->dtype;
            w.lm_head.out = c.vocab_size;
            w.lm_head.in = c.hidden_size;
            w.lm_head.data = w.embed_tokens->data;
            w.lm_head.nbytes = w.embed_tokens->nbytes;
            w.lm_head.weight_record = w.embed_tokens;
        }
    } else {
        w.lm_head = b.linear("lm_head", c.vocab_size, c.hidden_size);
    }
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
        w.layers.emplace_back();
        b.layer(w.layers.back(), i, false);
    }
    for (int64_t m = 0; m < c.num_nextn_predict_layers; ++m) {
        const int64_t i = c.num_hidden_layers + m;
        if (!find(fmt::format("model.layers.{}.eh_proj.weight", i))) {
            log_info("{}: MTP layer model.layers.{} is absent; speculative decoding will be unavailable", dir_, i);
            break;
        }
        w.layers.emplace_back();
        b.layer(w.layers.back(), i, true);
        ++w.n_mtp_layers;
    }
    GLM_TRY(b.finish(w));
    if (w.n_scale_mismatch)
        log_info("{}: {} experts have different gate/up weight_scale_2 (each projection keeps its own)", dir_,
                 w.n_scale_mismatch);
    out = std::move(w);
    return {};
}
