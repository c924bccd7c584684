// config.json -> ModelConfig. Every field the forward pass needs is read with a type check and a
// consistency check; errors name the file and the field so the user can fix or re-download it.
#include "engine/config.h"

#include <sys/stat.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "engine/safetensors.h"

using json = nlohmann::json;

namespace {

const char* json_type_name(const json& v) {
    if (v.is_null()) return "null";
    if (v.is_boolean()) return "a boolean";
    if (v.is_number_integer() || v.is_number_unsigned()) return "an integer";
    if (v.is_number_float()) return "a float";
    if (v.is_string()) return "a string";
    if (v.is_array()) return "an array";
    return "an object";
}

// Field readers: missing required field or wrong type -> Status naming the field.
struct Reader {
    const json& j;
    const std::string& label;

    Status wrong(const std::string& key, const char* want, const json& v) const {
        return Status::bad_input("{}: field '{}' must be {} (found {}); fix the file or re-download it", label, key,
                                 want, json_type_name(v));
    }
    Status missing(const std::string& key) const {
        return Status::bad_input("{}: required field '{}' is missing; fix the file or re-download it", label, key);
    }
    Status get_int(const std::string& key, int64_t& out, bool required) const {
        auto it = j.find(key);
        if (it == j.end() || (!required && it->is_null())) return required ? missing(key) : Status();
        if (!it->is_number_integer() && !it->is_number_unsigned()) {
            // 3.0 is a valid integer written as a float by some exporters.
            if (it->is_number_float() && double(int64_t(it->get<double>())) == it->get<double>()) {
                out = int64_t(it->get<double>());
                return {};
            }
            return wrong(key, "an integer", *it);
        }
        if (it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(INT64_MAX)) return wrong(key, "an integer", *it);
        out = it->get<int64_t>();
        return {};
    }
    Status get_double(const std::string& key, double& out, bool required) const {
        auto it = j.find(key);
        if (it == j.end() || (!required && it->is_null())) return required ? missing(key) : Status();
        if (!it->is_number()) return wrong(key, "a number", *it);
        out = it->get<double>();
        return {};
    }
    Status get_float(const std::string& key, float& out, bool required) const {
        double d = out;
        GLM_TRY(get_double(key, d, required));
        out = float(d);
        return {};
    }
    Status get_bool(const std::string& key, bool& out, bool required) const {
        auto it = j.find(key);
        if (it == j.end() || (!required && it->is_null())) return required ? missing(key) : Status();
        if (!it->is_boolean()) return wrong(key, "true or false", *it);
        out = it->get<bool>();
        return {};
    }
    Status get_string(const std::string& key, std::string& out, bool required) const {
        auto it = j.find(key);
        if (it == j.end() || (!required && it->is_null())) return required ? missing(key) : Status();
        if (!it->is_string()) return wrong(key, "a string", *it);
        out = it->get<std::string>();
        return {};
    }
    // An int or a list of ints (eos_token_id).
    Status get_id_list(const std::string& key, std::vector<int32_t>& out) const {
        auto it = j.find(key);
        if (it == j.end() || it->is_null()) return {};
        std::vector<int32_t> ids;
        auto one = [&](const json& v) -> bool {
            if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX) return false;
            ids.push_back(int32_t(v.get<int64_t>()));
            return true;
        };
        if (it->is_array()) {
            for (const json& v : *it)
                if (!one(v)) return wrong(key, "a token id or a list of token ids", v);
        } else if (!one(*it)) {
            return wrong(key, "a token id or a list of token ids", *it);
        }
        out = ids;
        return {};
    }
};

bool glob_match(const char* p, const char* s) {
    // Iterative '*' matcher with backtracking to the last star (no recursion, linear-ish).
    const char* star = nullptr;
    const char* resume = nullptr;
    while (*s) {
        if (*p == '*') {
            star = p++;
            resume = s;
        } else if (*p == *s) {
            ++p;
            ++s;
        } else if (star) {
            p = star + 1;
            s = ++resume;
        } else {
            return false;
        }
    }
    while (*p == '*') ++p;
    return *p == 0;
}

Status read_string_list(const json& j, const std::string& key, const std::string& label, std::vector<std::string>& out) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return {};
    if (!it->is_array())
        return Status::bad_input("{}: field '{}' must be a list of strings (found {})", label, key, json_type_name(*it));
    for (const json& v : *it) {
        if (!v.is_string())
            return Status::bad_input("{}: field '{}' must be a list of strings (found {} inside)", label, key,
                                     json_type_name(v));
        out.push_back(v.get<std::string>());
    }
    return {};
}

// Both ModelOpt formats: flat (config.json quantization_config) and nested ({"quantization": {...}}).
Status parse_quant_object(const json& q, const std::string& label, QuantConfig& out) {
    if (!q.is_object()) return Status::bad_input("{}: quantization config must be an object", label);
    const json* body = &q;
    auto nested = q.find("quantization");
    if (nested != q.end()) {
        if (!nested->is_object()) return Status::bad_input("{}: field 'quantization' must be an object", label);
        body = &*nested;
    }
    Reader r{*body, label};
    QuantConfig qc;
    qc.present = true;
    qc.source = label;
    GLM_TRY(Reader{q, label}.get_string("quant_method", qc.quant_method, false));
    GLM_TRY(r.get_string("quant_algo", qc.quant_algo, false));
    if (qc.quant_algo.empty())
        return Status::bad_input("{}: field 'quant_algo' is missing; expected \"NVFP4\" (ModelOpt)", label);
    if (!qc.quant_method.empty() && qc.quant_method != "modelopt")
        return Status::bad_input("{}: quant_method '{}' is not supported (glmrun loads ModelOpt NVFP4 checkpoints)", label,
                                 qc.quant_method);
    if (qc.quant_algo != "NVFP4" && qc.quant_algo != "MIXED_PRECISION")
        return Status::bad_input("{}: quant_algo '{}' is not supported (expected NVFP4)", label, qc.quant_algo);
    int64_t gs = 0;
    GLM_TRY(r.get_int("group_size", gs, false));
    if (gs == 0) {
        // Flat format: config_groups.*.weights.group_size.
        auto groups = body->find("config_groups");
        if (groups != body->end() && groups->is_object())
            for (auto g = groups->begin(); g != groups->end(); ++g) {
                if (!g.value().is_object()) continue;
                auto w = g.value().find("weights");
                if (w != g.value().end() && w->is_object()) GLM_TRY((Reader{*w, label}.get_int("group_size", gs, false)));
            }
    }
    if (gs == 0) gs = 16;
    if (gs != 16) return Status::bad_input("{}: NVFP4 group_size {} is not supported (expected 16)", label, gs);
    qc.group_size = int(gs);
    auto kv = body->find("kv_cache_quant_algo");
    if (kv != body->end() && kv->is_string()) qc.kv_cache_quant_algo = kv->get<std::string>();
    GLM_TRY(read_string_list(*body, "exclude_modules", label, qc.exclude_modules));
    GLM_TRY(read_string_list(*body, "ignore", label, qc.exclude_modules));
    out = std::move(qc);
    return {};
}

bool file_exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

bool QuantConfig::is_excluded(const std::string& module) const {
    for (const auto& pat : exclude_modules) {
        if (glob_match(pat.c_str(), module.c_str())) return true;
        size_t start = 0;
        while (start <= module.size()) {
            size_t dot = module.find('.', start);
            if (dot == std::string::npos) dot = module.size();
            if (glob_match(pat.c_str(), module.substr(start, dot - start).c_str())) return true;
            start = dot + 1;
        }
    }
    return false;
}

bool ModelConfig::is_moe_layer(int64_t layer) const {
    if (layer >= num_hidden_layers) return true;  // MTP layers are MoE layers
    return layer >= first_k_dense_replace && (layer - first_k_dense_replace) % moe_layer_freq == 0;
}

IndexerKind ModelConfig::indexer_kind(int64_t layer) const {
    if (layer < 0 || layer >= int64_t(indexer_types.size())) return IndexerKind::full;
    return indexer_types[size_t(layer)];
}

std::string ModelConfig::summary() const {
    int64_t shared = 0;
    for (auto k : indexer_types) shared += k == IndexerKind::shared;
    return fmt::format("{}: vocab {}, hidden {}, {} layers ({} dense) + {} MTP, {} heads, {}/{} experts (+{} shared), "
                       "groups {}/{}, index top-k {} ({} heads x {}, {} shared layers), rope theta {:g}",
                       architecture, vocab_size, hidden_size, num_hidden_layers, first_k_dense_replace,
                       num_nextn_predict_layers, num_attention_heads, num_experts_per_tok, n_routed_experts,
                       n_shared_experts, topk_group, n_group, index_topk, index_n_heads, index_head_dim, shared,
                       rope_theta);
}

Status parse_model_config(const std::string& text, const std::string& label, ModelConfig& out) {
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded()) return Status::bad_input("{}: not valid JSON; fix the file or re-download it", label);
    if (!j.is_object()) return Status::bad_input("{}: top level is not a JSON object", label);
    Reader r{j, label};
    ModelConfig c;

    // Architecture first: anything else is a different model, whatever its other fields say.
    std::string model_type;
    GLM_TRY(r.get_string("model_type", model_type, false));
    auto arch = j.find("architectures");
    if (arch != j.end() && !arch->is_null()) {
        if (!arch->is_array() || arch->empty() || !(*arch)[0].is_string())
            return r.wrong("architectures", "a list of strings", *arch);
        c.architecture = (*arch)[0].get<std::string>();
    }
    if (c.architecture.empty() && model_type == "glm_moe_dsa") c.architecture = "GlmMoeDsaForCausalLM";
    if (c.architecture != "GlmMoeDsaForCausalLM")
        return Status::bad_input("{}: unsupported architecture '{}' (model_type '{}'); glmrun runs GLM-5/5.1 "
                                 "(GlmMoeDsaForCausalLM) checkpoints only", label,
                                 c.architecture.empty() ? "none" : c.architecture, model_type);
    if (!model_type.empty() && model_type != "glm_moe_dsa")
        return Status::bad_input("{}: model_type '{}' does not match architecture GlmMoeDsaForCausalLM (expected "
                                 "glm_moe_dsa)", label, model_type);

    GLM_TRY(r.get_int("vocab_size", c.vocab_size, true));
    GLM_TRY(r.get_int("hidden_size", c.hidden_size, true));
    GLM_TRY(r.get_int("num_hidden_layers", c.num_hidden_layers, true));
    GLM_TRY(r.get_int("first_k_dense_replace", c.first_k_dense_replace, true));
    GLM_TRY(r.get_int("moe_layer_freq", c.moe_layer_freq, false));
    GLM_TRY(r.get_int("intermediate_size", c.intermediate_size, true));
    GLM_TRY(r.get_int("moe_intermediate_size", c.moe_intermediate_size, true));
    GLM_TRY(r.get_int("n_routed_experts", c.n_routed_experts, true));
    GLM_TRY(r.get_int("n_shared_experts", c.n_shared_experts, true));
    GLM_TRY(r.get_int("num_experts_per_tok", c.num_experts_per_tok, true));
    GLM_TRY(r.get_int("n_group", c.n_group, false));
    GLM_TRY(r.get_int("topk_group", c.topk_group, false));
    GLM_TRY(r.get_float("routed_scaling_factor", c.routed_scaling_factor, true));
    GLM_TRY(r.get_bool("norm_topk_prob", c.norm_topk_prob, true));
    GLM_TRY(r.get_string("scoring_func", c.scoring_func, false));
    GLM_TRY(r.get_int("num_attention_heads", c.num_attention_heads, true));
    c.num_key_value_heads = c.num_attention_heads;
    GLM_TRY(r.get_int("num_key_value_heads", c.num_key_value_heads, false));
    GLM_TRY(r.get_int("q_lora_rank", c.q_lora_rank, true));
    GLM_TRY(r.get_int("kv_lora_rank", c.kv_lora_rank, true));
    GLM_TRY(r.get_int("qk_nope_head_dim", c.qk_nope_head_dim, true));
    GLM_TRY(r.get_int("qk_rope_head_dim", c.qk_rope_head_dim, true));
    GLM_TRY(r.get_int("v_head_dim", c.v_head_dim, true));
    GLM_TRY(r.get_bool("rope_interleave", c.rope_interleave, false));
    GLM_TRY(r.get_bool("indexer_rope_interleave", c.indexer_rope_interleave, false));
    GLM_TRY(r.get_int("index_n_heads", c.index_n_heads, true));
    GLM_TRY(r.get_int("index_head_dim", c.index_head_dim, true));
    GLM_TRY(r.get_int("index_topk", c.index_topk, true));
    GLM_TRY(r.get_float("rms_norm_eps", c.rms_norm_eps, true));
    GLM_TRY(r.get_int("max_position_embeddings", c.max_position_embeddings, true));
    GLM_TRY(r.get_int("num_nextn_predict_layers", c.num_nextn_predict_layers, false));
    GLM_TRY(r.get_bool("tie_word_embeddings", c.tie_word_embeddings, false));
    GLM_TRY(r.get_string("hidden_act", c.hidden_act, false));
    GLM_TRY(r.get_id_list("eos_token_id", c.eos_token_ids));
    {
        int64_t v = -1;
        GLM_TRY(r.get_int("bos_token_id", v, false));
        c.bos_token_id = int32_t(v);
        v = -1;
        GLM_TRY(r.get_int("pad_token_id", v, false));
        c.pad_token_id = int32_t(v);
    }

    // RoPE: rope_parameters (transformers >= 5) or the legacy rope_theta / rope_scaling pair.
    auto rp = j.find("rope_parameters");
    if (rp != j.end() && !rp->is_null()) {
        if (!rp->is_object()) return r.wrong("rope_parameters", "an object", *rp);
        Reader rr{*rp, label};
        Status st = rr.get_double("rope_theta", c.rope_theta, true);
        if (!st.ok())
            return Status::bad_input("{}: field 'rope_parameters.rope_theta' is missing or not a number", label);
        GLM_TRY(rr.get_string("rope_type", c.rope_type, false));
    } else {
        auto rt = j.find("rope_theta");
        if (rt == j.end())
            return Status::bad_input("{}: neither 'rope_parameters.rope_theta' nor 'rope_theta' is present; add "
                                     "\"rope_parameters\": {{\"rope_type\": \"default\", \"rope_theta\": 1000000}}", label);
        GLM_TRY(r.get_double("rope_theta", c.rope_theta, true));
        auto rs = j.find("rope_scaling");
        if (rs != j.end() && !rs->is_null()) {
            if (!rs->is_object()) return r.wrong("rope_scaling", "an object or null", *rs);
            Reader rr{*rs, label};
            std::string type;
            GLM_TRY(rr.get_string("rope_type", type, false));
            if (type.empty()) GLM_TRY(rr.get_string("type", type, false));
            if (!type.empty()) c.rope_type = type;
        }
    }
    if (c.rope_type != "default")
        return Status::bad_input("{}: rope type '{}' is not supported (GLM-5/5.1 use \"default\")", label, c.rope_type);
    if (!(c.rope_theta > 0.0)) return Status::bad_input("{}: field 'rope_theta' must be positive", label);

    // Per-layer indexer kinds: explicit list > F/S pattern > freq/offset schedule (model.md §1.3, §5.4).
    c.indexer_types.clear();
    auto it_types = j.find("indexer_types");
    auto it_pat = j.find("index_topk_pattern");
    if (it_types != j.end() && !it_types->is_null()) {
        if (!it_types->is_array()) return r.wrong("indexer_types", "a list of \"full\"/\"shared\"", *it_types);
        for (const json& v : *it_types) {
            if (!v.is_string() || (v != "full" && v != "shared"))
                return r.wrong("indexer_types", "a list of \"full\"/\"shared\"", v);
            c.indexer_types.push_back(v == "full" ? IndexerKind::full : IndexerKind::shared);
        }
        if (int64_t(c.indexer_types.size()) != c.num_hidden_layers)
            return Status::bad_input("{}: field 'indexer_types' has {} entries but num_hidden_layers is {}", label,
                                     c.indexer_types.size(), c.num_hidden_layers);
    } else if (it_pat != j.end() && !it_pat->is_null()) {
        if (!it_pat->is_string()) return r.wrong("index_topk_pattern", "a string of F/S", *it_pat);
        const std::string p = it_pat->get<std::string>();
        if (int64_t(p.size()) != c.num_hidden_layers)
            return Status::bad_input("{}: field 'index_topk_pattern' has {} characters but num_hidden_layers is {}",
                                     label, p.size(), c.num_hidden_layers);
        for (char ch : p) {
            if (ch != 'F' && ch != 'S')
                return Status::bad_input("{}: field 'index_topk_pattern' may only contain 'F' and 'S' (found '{}')",
                                         label, ch);
            c.indexer_types.push_back(ch == 'F' ? IndexerKind::full : IndexerKind::shared);
        }
    } else {
        int64_t freq = 1, offset = 2;
        GLM_TRY(r.get_int("index_topk_freq", freq, false));
        GLM_TRY(r.get_int("index_skip_topk_offset", offset, false));
        if (freq < 1) freq = 1;  // transformers clamps the same way
        for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
            const int64_t k = std::max<int64_t>(i - offset + 1, 0);
            c.indexer_types.push_back(k % freq == 0 ? IndexerKind::full : IndexerKind::shared);
        }
    }

    // Consistency.
    auto positive = [&](const char* name, int64_t v) -> Status {
        if (v <= 0) return Status::bad_input("{}: field '{}' must be positive (found {})", label, name, v);
        return {};
    };
    GLM_TRY(positive("vocab_size", c.vocab_size));
    GLM_TRY(positive("hidden_size", c.hidden_size));
    GLM_TRY(positive("num_hidden_layers", c.num_hidden_layers));
    GLM_TRY(positive("intermediate_size", c.intermediate_size));
    GLM_TRY(positive("moe_intermediate_size", c.moe_intermediate_size));
    GLM_TRY(positive("n_routed_experts", c.n_routed_experts));
    GLM_TRY(positive("num_experts_per_tok", c.num_experts_per_tok));
    GLM_TRY(positive("n_group", c.n_group));
    GLM_TRY(positive("topk_group", c.topk_group));
    GLM_TRY(positive("num_attention_heads", c.num_attention_heads));
    GLM_TRY(positive("q_lora_rank", c.q_lora_rank));
    GLM_TRY(positive("kv_lora_rank", c.kv_lora_rank));
    GLM_TRY(positive("qk_nope_head_dim", c.qk_nope_head_dim));
    GLM_TRY(positive("qk_rope_head_dim", c.qk_rope_head_dim));
    GLM_TRY(positive("v_head_dim", c.v_head_dim));
    GLM_TRY(positive("index_n_heads", c.index_n_heads));
    GLM_TRY(positive("index_head_dim", c.index_head_dim));
    GLM_TRY(positive("index_topk", c.index_topk));
    GLM_TRY(positive("max_position_embeddings", c.max_position_embeddings));
    GLM_TRY(positive("moe_layer_freq", c.moe_layer_freq));
    if (c.n_shared_experts < 0) return Status::bad_input("{}: field 'n_shared_experts' must be >= 0", label);
    if (c.num_nextn_predict_layers < 0)
        return Status::bad_input("{}: field 'num_nextn_predict_layers' must be >= 0", label);
    if (c.first_k_dense_replace < 0 || c.first_k_dense_replace > c.num_hidden_layers)
        return Status::bad_input("{}: field 'first_k_dense_replace' ({}) must lie in [0, num_hidden_layers = {}]",
                                 label, c.first_k_dense_replace, c.num_hidden_layers);
    if (c.num_key_value_heads != c.num_attention_heads)
        return Status::bad_input("{}: field 'num_key_value_heads' ({}) must equal num_attention_heads ({}) for MLA",
                                 label, c.num_key_value_heads, c.num_attention_heads);
    if (c.qk_rope_head_dim % 2 != 0)
        return Status::bad_input("{}: field 'qk_rope_head_dim' ({}) must be even", label, c.qk_rope_head_dim);
    if (c.index_head_dim < c.qk_rope_head_dim)
        return Status::bad_input("{}: field 'index_head_dim' ({}) must be >= qk_rope_head_dim ({})", label,
                                 c.index_head_dim, c.qk_rope_head_dim);
    if (c.n_routed_experts % c.n_group != 0)
        return Status::bad_input("{}: n_routed_experts ({}) must be divisible by n_group ({})", label,
                                 c.n_routed_experts, c.n_group);
    if (c.topk_group > c.n_group)
        return Status::bad_input("{}: field 'topk_group' ({}) must be <= n_group ({})", label, c.topk_group, c.n_group);
    if (c.n_group > 1 && c.n_routed_experts / c.n_group < 2)
        return Status::bad_input("{}: group routing needs >= 2 experts per group (n_routed_experts {}, n_group {})",
                                 label, c.n_routed_experts, c.n_group);
    if (c.num_experts_per_tok > c.topk_group * (c.n_routed_experts / c.n_group))
        return Status::bad_input("{}: field 'num_experts_per_tok' ({}) exceeds the experts of the topk_group groups "
                                 "({})", label, c.num_experts_per_tok, c.topk_group * (c.n_routed_experts / c.n_group));
    if (c.scoring_func != "sigmoid")
        return Status::bad_input("{}: field 'scoring_func' is '{}'; only \"sigmoid\" is supported", label,
                                 c.scoring_func);
    if (c.hidden_act != "silu")
        return Status::bad_input("{}: field 'hidden_act' is '{}'; only \"silu\" is supported", label, c.hidden_act);
    if (!(c.rms_norm_eps > 0.0f)) return Status::bad_input("{}: field 'rms_norm_eps' must be positive", label);
    if (c.indexer_types.empty() || c.indexer_types[0] != IndexerKind::full)
        return Status::bad_input("{}: layer 0 must run its own indexer (a shared layer reuses an earlier full layer's "
                                 "top-k); fix indexer_types / index_topk_pattern", label);
    c.qk_head_dim = c.qk_nope_head_dim + c.qk_rope_head_dim;
    int64_t qk_head_dim_json = c.qk_head_dim;
    GLM_TRY(r.get_int("qk_head_dim", qk_head_dim_json, false));
    if (qk_head_dim_json != c.qk_head_dim)
        return Status::bad_input("{}: field 'qk_head_dim' ({}) != qk_nope_head_dim + qk_rope_head_dim ({})", label,
                                 qk_head_dim_json, c.qk_head_dim);
    int64_t head_dim_json = c.qk_rope_head_dim;
    GLM_TRY(r.get_int("head_dim", head_dim_json, false));
    if (head_dim_json != c.qk_rope_head_dim)
        log_debug("{}: 'head_dim' {} ignored (transformers forces head_dim = qk_rope_head_dim = {})", label,
                  head_dim_json, c.qk_rope_head_dim);
    if (c.moe_layer_freq != 1)
        return Status::bad_input("{}: field 'moe_layer_freq' ({}) is not supported (GLM-5 uses 1)", label,
                                 c.moe_layer_freq);

    auto qc = j.find("quantization_config");
    if (qc != j.end() && !qc->is_null()) GLM_TRY(parse_quant_object(*qc, label + " quantization_config", c.quant));
    out = std::move(c);
    return {};
}

Status apply_generation_config(const std::string& text, const std::string& label, ModelConfig& out) {
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        return Status::bad_input("{}: not a valid JSON object; fix or delete the file", label);
    Reader r{j, label};
    GLM_TRY(r.get_id_list("eos_token_id", out.eos_token_ids));
    int64_t v = out.bos_token_id;
    GLM_TRY(r.get_int("bos_token_id", v, false));
    out.bos_token_id = int32_t(v);
    v = out.pad_token_id;
    GLM_TRY(r.get_int("pad_token_id", v, false));
    out.pad_token_id = int32_t(v);
    return {};
}

Status parse_hf_quant_config(const std::string& text, const std::string& label, QuantConfig& out) {
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded()) return Status::bad_input("{}: not valid JSON; fix or re-download the file", label);
    return parse_quant_object(j, label, out);
}

Status load_config(const std::string& dir, ModelConfig& out) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        return Status::bad_input("{}: model directory not found; pass the directory that holds config.json "
                                 "(e.g. as left by `hf download`)", dir);
    const std::string cfg_path = dir + "/config.json";
    if (!file_exists(cfg_path))
        return Status::bad_input("{}: config.json not found; is this a Hugging Face model directory?", dir);
    std::string text;
    GLM_TRY(read_text_file(cfg_path, text));
    ModelConfig c;
    GLM_TRY(parse_model_config(text, cfg_path, c));
    const std::string gen_path = dir + "/generation_config.json";
    if (file_exists(gen_path)) {
        GLM_TRY(read_text_file(gen_path, text));
        GLM_TRY(apply_generation_config(text, gen_path, c));
    }
    const std::string hq_path = dir + "/hf_quant_config.json";
    if (file_exists(hq_path)) {
        GLM_TRY(read_text_file(hq_path, text));
        QuantConfig hq;
        GLM_TRY(parse_hf_quant_config(text, hq_path, hq));
        // config.json's flat copy is the newer format; the legacy file only fills in when it is absent.
        if (!c.quant.present) c.quant = std::move(hq);
    }
    if (c.eos_token_ids.empty())
        return Status::bad_input("{}: no eos_token_id in config.json or generation_config.json; add one", dir);
    for (int32_t id : c.eos_token_ids)
        if (id >= c.vocab_size)
            return Status::bad_input("{}: eos token id {} is outside the vocabulary ({})", dir, id, c.vocab_size);
    out = std::move(c);
    return {};
}
