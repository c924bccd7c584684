// Synthetic checkpoints (--synthetic): for every model whose shards are in the tree, the tensors
// open_synthetic lays out from the config alone are the ones Checkpoint::open + bind find on disk
// (names, shapes, dtypes, NVFP4 or not, experts per layer, bytes); for the full-size target, whose
// shards are not here, the byte total is the model card's.
#include <doctest/doctest.h>

#include <cstdio>
#include <map>
#include <set>

#include "engine/checkpoint.h"
#include "engine/synthetic.h"
#include "loader-test-util.h"

using namespace loader_test;

namespace {

std::string model_dir(const std::string& rel) { return std::string(GLMRUN_SOURCE_DIR) + "/" + rel; }

std::string shape_of(const std::vector<int64_t>& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
    return out + "]";
}

// The MTP layer's private copies of the embedding and the head: optional on disk, never read by
// glmrun, and deliberately absent from a synthetic checkpoint.
bool mtp_extra(const std::string& name) {
    return name.find("model.layers.") == 0 &&
           (name.find(".embed_tokens.weight") != std::string::npos ||
            name.find(".shared_head.head.weight") != std::string::npos);
}

std::string describe(const char* what, const LinearWeight& w) {
    if (!w.present()) return fmt::format("{}: absent", what);
    return fmt::format("{}: {} {} {} [{}, {}] {} bytes + {} scale bytes", what, w.name,
                       w.is_nvfp4() ? "nvfp4" : "dense", glm_type_name(w.dtype), w.out, w.in, w.nbytes,
                       w.scales_nbytes);
}

std::string describe(const char* what, const TensorRecord* r) {
    if (!r) return fmt::format("{}: absent", what);
    return fmt::format("{}: {} {} {} {} bytes", what, r->name, safetensors_dtype_name(r->dtype), shape_of(r->shape),
                       r->nbytes);
}

// Everything the runtime reads from a bound checkpoint, one line per slot.
std::vector<std::string> describe(const ModelWeights& w) {
    std::vector<std::string> out;
    out.push_back(describe("embed", w.embed_tokens));
    out.push_back(describe("norm", w.norm));
    out.push_back(describe("lm_head", w.lm_head));
    out.push_back(fmt::format("layers {} (mtp {}), nvfp4 linears {}", w.layers.size(), w.n_mtp_layers,
                              w.n_nvfp4_linears));
    for (const LayerWeights& L : w.layers) {
        out.push_back(fmt::format("layer {}: mtp {} moe {} indexer {} ({}) experts {} fused {}", L.index, L.is_mtp,
                                  L.is_moe, L.has_indexer, L.indexer_kind == IndexerKind::full ? "full" : "shared",
                                  L.experts.size(), L.experts_fused));
        for (auto [what, r] : std::initializer_list<std::pair<const char*, const TensorRecord*>>{
                 {"input_layernorm", L.input_layernorm},
                 {"post_attention_layernorm", L.post_attention_layernorm},
                 {"q_a_layernorm", L.q_a_layernorm},
                 {"kv_a_layernorm", L.kv_a_layernorm},
                 {"indexer_k_norm_weight", L.indexer_k_norm_weight},
                 {"indexer_k_norm_bias", L.indexer_k_norm_bias},
                 {"router_weight", L.router_weight},
                 {"router_bias", L.router_bias},
                 {"enorm", L.enorm},
                 {"hnorm", L.hnorm},
                 {"shared_head_norm", L.shared_head_norm}})
            out.push_back(describe(what, r));
        for (auto [what, lw] : std::initializer_list<std::pair<const char*, const LinearWeight*>>{
                 {"q_a", &L.q_a_proj}, {"q_b", &L.q_b_proj}, {"kv_a", &L.kv_a_proj_with_mqa},
                 {"kv_b", &L.kv_b_proj}, {"o", &L.o_proj}, {"idx_wq_b", &L.indexer_wq_b},
                 {"idx_wk", &L.indexer_wk}, {"idx_weights", &L.indexer_weights_proj}, {"mlp_gate", &L.mlp_gate},
                 {"mlp_up", &L.mlp_up}, {"mlp_down", &L.mlp_down}, {"shared_gate", &L.shared_gate},
                 {"shared_up", &L.shared_up}, {"shared_down", &L.shared_down}, {"eh_proj", &L.eh_proj}})
            out.push_back(describe(what, *lw));
        for (const ExpertWeights& e : L.experts) {
            out.push_back(describe("gate", e.gate));
            out.push_back(describe("up", e.up));
            out.push_back(describe("down", e.down));
        }
    }
    return out;
}

void check_same_lines(const std::vector<std::string>& real, const std::vector<std::string>& synth) {
    CHECK(real.size() == synth.size());
    for (size_t i = 0; i < std::min(real.size(), synth.size()); ++i)
        if (real[i] != synth[i]) {
            CAPTURE(real[i]);
            CAPTURE(synth[i]);
            FAIL_CHECK("first difference at line " << i);
            return;
        }
}

// Every slot of a synthetic checkpoint is marked synthetic and has no bytes behind it.
void check_no_data(const SyntheticCheckpoint& s) {
    size_t with_data = 0, unmarked = 0;
    for (const TensorRecord& r : s.records) {
        with_data += r.data != nullptr;
        unmarked += !r.synthetic;
    }
    auto linear = [&](const LinearWeight& w) {
        if (w.name.empty()) return;
        with_data += w.data != nullptr || w.scales != nullptr;
        unmarked += !w.synthetic;
    };
    linear(s.weights.lm_head);
    for (const LayerWeights& L : s.weights.layers) {
        for (const LinearWeight* w : {&L.q_a_proj, &L.q_b_proj, &L.kv_a_proj_with_mqa, &L.kv_b_proj, &L.o_proj,
                                      &L.indexer_wq_b, &L.indexer_wk, &L.indexer_weights_proj, &L.mlp_gate,
                                      &L.mlp_up, &L.mlp_down, &L.shared_gate, &L.shared_up, &L.shared_down,
                                      &L.eh_proj})
            linear(*w);
        for (const ExpertWeights& e : L.experts) {
            linear(e.gate);
            linear(e.up);
            linear(e.down);
        }
    }
    CHECK(with_data == 0);
    CHECK(unmarked == 0);
}

}  // namespace

TEST_CASE("synthetic: the same tensors as the checkpoint on disk, for every model in the tree") {
    for (const char* rel : {"tests/fixtures/dense_moe", "tests/fixtures/index_cache", "tests/fixtures/groups",
                            "models/glm-tiny"}) {
        CAPTURE(rel);
        const std::string dir = model_dir(rel);
        Checkpoint ck;
        Status st = Checkpoint::open(dir, ck);
        REQUIRE_MESSAGE(st.ok(), st.message());
        ModelWeights real;
        st = ck.bind(real);
        REQUIRE_MESSAGE(st.ok(), st.message());

        SyntheticCheckpoint s;
        st = open_synthetic(dir, s);
        REQUIRE_MESSAGE(st.ok(), st.message());
        CHECK(s.weights.layers.size() == real.layers.size());
        CHECK(s.weights.n_mtp_layers == real.n_mtp_layers);
        CHECK(s.weights.n_nvfp4_linears == real.n_nvfp4_linears);
        CHECK(s.weights.n_nvfp4_linears > 0);
        check_same_lines(describe(real), describe(s.weights));
        check_no_data(s);

        // The whole inventory, scale tensors included, and what it weighs.
        std::map<std::string, std::string> on_disk, synthetic;
        uint64_t disk_bytes = 0;
        for (const TensorRecord& r : ck.tensors()) {
            if (mtp_extra(r.name)) continue;
            on_disk[r.name] = std::string(safetensors_dtype_name(r.dtype)) + shape_of(r.shape);
            disk_bytes += r.nbytes;
        }
        for (const TensorRecord& r : s.records)
            synthetic[r.name] = std::string(safetensors_dtype_name(r.dtype)) + shape_of(r.shape);
        CHECK(synthetic.size() == s.records.size());  // no name twice
        for (const auto& [name, what] : on_disk) {
            auto it = synthetic.find(name);
            CHECK_MESSAGE(it != synthetic.end(), "missing from the synthetic checkpoint: " << name);
            if (it != synthetic.end()) CHECK_MESSAGE(it->second == what, name);
        }
        for (const auto& [name, what] : synthetic)
            CHECK_MESSAGE(on_disk.count(name) == 1, "not on disk: " << name);
        CHECK(synthetic_bytes(s) == disk_bytes);
    }
}

TEST_CASE("synthetic: the full-size GLM-5.1 REAP-160 config weighs what the model card says") {
    SyntheticCheckpoint s;
    Status st = open_synthetic(model_dir("models/glm-5.1-reap-160"), s);
    REQUIRE_MESSAGE(st.ok(), st.message());
    const ModelConfig& c = s.config;
    CHECK(s.weights.layers.size() == 79);  // 78 decoder layers + the MTP layer
    CHECK(s.weights.n_mtp_layers == 1);
    // Only the routed experts of the 75 MoE decoder layers are NVFP4 (hf_quant_config.json excludes
    // attention, router, shared experts, the dense layers and the MTP layer).
    CHECK(s.weights.n_nvfp4_linears == 75 * c.n_routed_experts * 3);
    const LayerWeights& moe = s.weights.layers[3];
    REQUIRE(moe.experts.size() == 160);
    CHECK(moe.experts[0].gate.is_nvfp4());
    CHECK(moe.experts[159].down.is_nvfp4());
    CHECK(!moe.q_b_proj.is_nvfp4());
    CHECK(!moe.shared_down.is_nvfp4());
    CHECK(moe.q_b_proj.dtype == GLM_TYPE_BF16);
    const LayerWeights& mtp = s.weights.layers[78];
    CHECK(mtp.is_mtp);
    CHECK(mtp.has_indexer);
    CHECK(mtp.eh_proj.present());
    CHECK(!mtp.experts[0].gate.is_nvfp4());
    CHECK(mtp.mtp_embed_tokens == nullptr);
    check_no_data(s);

    // performance.md §0: routed experts 75 x 160 x 37.75 M params at 4.5 bit = 254.8 GB, the rest of
    // the 78 layers + embedding + lm_head 19.1 B params in BF16 = 38.2 GB, the BF16 MTP layer
    // 12.7 GB: 305.6 GB = 284.7 GiB, the card's "285 GB".
    const uint64_t bytes = synthetic_bytes(s);
    const double gib = double(bytes) / 1073741824.0;
    std::printf("synthetic GLM-5.1 REAP-160: %zu tensors, %.2f GB = %.2f GiB (model card: 285 GiB)\n",
                s.records.size(), double(bytes) / 1e9, gib);
    CHECK(gib > 285.0 * 0.99);
    CHECK(gib < 285.0 * 1.01);
}

TEST_CASE("synthetic: the quantization config decides NVFP4 or BF16") {
    SUBCASE("attention un-excluded -> NVFP4 attention") {
        TempCopy copy("dense_moe");
        edit_json(copy.dir + "/config.json", [](nlohmann::json& j) {
            auto& ex = j["quantization_config"]["exclude_modules"];
            nlohmann::json kept = nlohmann::json::array();
            for (const auto& p : ex)
                if (p != "*self_attn*") kept.push_back(p);
            ex = kept;
        });
        SyntheticCheckpoint s;
        Status st = open_synthetic(copy.dir, s);
        REQUIRE_MESSAGE(st.ok(), st.message());
        CHECK(s.weights.layers[1].q_b_proj.is_nvfp4());
        CHECK(s.weights.layers[1].q_b_proj.scales_nbytes > 0);
        CHECK(!s.weights.layers[1].shared_gate.is_nvfp4());
    }
    SUBCASE("no quantization config -> everything BF16") {
        TempCopy copy("dense_moe");
        edit_json(copy.dir + "/config.json", [](nlohmann::json& j) { j.erase("quantization_config"); });
        std::remove((copy.dir + "/hf_quant_config.json").c_str());
        SyntheticCheckpoint s;
        Status st = open_synthetic(copy.dir, s);
        REQUIRE_MESSAGE(st.ok(), st.message());
        CHECK(s.weights.n_nvfp4_linears == 0);
        CHECK(s.weights.layers[1].experts[0].gate.dtype == GLM_TYPE_BF16);
    }
    SUBCASE("a directory without config.json is a user error naming the directory") {
        SyntheticCheckpoint s;
        Status st = open_synthetic("/nonexistent/glm", s);
        CHECK(st.kind() == ErrorKind::bad_input);
        CHECK(st.message().find("/nonexistent/glm") != std::string::npos);
    }
}

TEST_CASE("synthetic: records stay put when the checkpoint is moved") {
    SyntheticCheckpoint a;
    Status st = open_synthetic(loader_test::fixture("dense_moe"), a);
    REQUIRE_MESSAGE(st.ok(), st.message());
    const TensorRecord* first = &a.records.front();
    SyntheticCheckpoint b = std::move(a);
    CHECK(&b.records.front() == first);
    CHECK(b.weights.embed_tokens == first);
}
