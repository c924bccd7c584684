// Loader on the transformers fixtures: config, catalogue binding, NVFP4 dequant bit-exactness,
// verify/manifest, npy and safetensors round trips, memory plan.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "engine/checkpoint.h"
#include "engine/memory-plan.h"
#include "engine/npy.h"
#include "engine/verify.h"
#include "loader-test-util.h"

using namespace loader_test;

namespace {

nlohmann::json reference(const std::string& name) {
    return nlohmann::json::parse(read_all(fixture(name) + "/reference.json"));
}

}  // namespace

TEST_CASE("loader: every fixture opens, binds and matches its reference.json") {
    for (const char* name : {"dense_moe", "index_cache", "groups"}) {
        CAPTURE(name);
        Checkpoint ck;
        Status st = Checkpoint::open(fixture(name), ck);
        REQUIRE_MESSAGE(st.ok(), st.message());
        ModelWeights w;
        st = ck.bind(w);
        REQUIRE_MESSAGE(st.ok(), st.message());
        const ModelConfig& c = ck.config();
        const nlohmann::json ref = reference(name);
        CHECK(c.num_hidden_layers == ref["num_hidden_layers"].get<int64_t>());
        CHECK(c.index_topk == ref["index_topk"].get<int64_t>());
        // Indexer kinds as transformers derived them (pattern / freq+offset).
        REQUIRE(c.indexer_types.size() == ref["indexer_types"].size());
        for (size_t i = 0; i < c.indexer_types.size(); ++i) {
            CHECK((c.indexer_types[i] == IndexerKind::full) == (ref["indexer_types"][i] == "full"));
            CHECK(w.layers[i].has_indexer == ref["layer_has_indexer"][i].get<bool>());
        }
        CHECK(c.eos_token_ids == std::vector<int32_t>{0, 7, 9});  // generation_config overrides config.json
        CHECK(c.rope_theta == 1e6);
        CHECK(c.quant.present);
        CHECK(c.quant.quant_algo == "NVFP4");
        const int64_t n_moe = c.num_hidden_layers - c.first_k_dense_replace;
        const bool has_mtp = std::string(name) != "index_cache";
        CHECK(w.n_mtp_layers == (has_mtp ? 1 : 0));
        CHECK(int64_t(w.layers.size()) == c.num_hidden_layers + w.n_mtp_layers);
        // Routed experts of the decoder layers are NVFP4; the MTP layer's are BF16 (excluded).
        CHECK(w.n_nvfp4_linears == n_moe * c.n_routed_experts * 3);
        CHECK(w.n_scale_mismatch == n_moe * c.n_routed_experts);  // the fixture makes gate != up on purpose
        const LayerWeights& L = w.layers[size_t(c.first_k_dense_replace)];
        REQUIRE(L.is_moe);
        REQUIRE(int64_t(L.experts.size()) == c.n_routed_experts);
        CHECK(L.experts[0].gate.is_nvfp4());
        CHECK(L.experts[0].gate.input_scale > 0.0f);
        CHECK(L.router_bias->dtype == GLM_TYPE_F32);
        CHECK(!L.shared_gate.is_nvfp4());
        CHECK(L.q_a_proj.dtype == GLM_TYPE_BF16);
        if (has_mtp) {
            const LayerWeights& M = w.layers.back();
            CHECK(M.is_mtp);
            CHECK(M.has_indexer);
            CHECK(M.eh_proj.in == 2 * c.hidden_size);
            CHECK(!M.experts[0].gate.is_nvfp4());  // "model.layers.N*" is excluded: BF16 on disk
            CHECK(M.enorm != nullptr);
            CHECK(M.shared_head_norm != nullptr);
            CHECK(c.quant.is_excluded(M.experts[0].gate.name));
        }
        CHECK(c.quant.is_excluded("model.layers.0.self_attn.q_a_proj"));
        CHECK(!c.quant.is_excluded(L.experts[0].gate.name));
    }
}

TEST_CASE("loader: NVFP4 dequant is bit-exact against the Python dequant of the same bytes") {
    for (const char* name : {"dense_moe", "index_cache", "groups"}) {
        CAPTURE(name);
        Checkpoint ck;
        REQUIRE(Checkpoint::open(fixture(name), ck).ok());
        ModelWeights w;
        REQUIRE(ck.bind(w).ok());
        const nlohmann::json dq = reference(name)["dequant"];
        const ExpertWeights& ex = w.layers[dq["layer"].get<size_t>()].experts[dq["expert"].get<size_t>()];
        CHECK(ex.gate.weight_scale_2 == dq["gate_weight_scale_2"].get<float>());
        CHECK(ex.up.weight_scale_2 == dq["up_weight_scale_2"].get<float>());
        CHECK(ex.gate.weight_scale_2 != ex.up.weight_scale_2);
        const std::pair<const LinearWeight*, const char*> projs[] = {
            {&ex.gate, "gate_proj"}, {&ex.up, "up_proj"}, {&ex.down, "down_proj"}};
        for (const auto& [lw, proj] : projs) {
            CAPTURE(proj);
            NpyArray ref;
            REQUIRE(npy_read(fixture(name) + "/" + dq["files"][proj].get<std::string>(), ref).ok());
            REQUIRE(ref.shape == std::vector<int64_t>{lw->out, lw->in});
            std::vector<float> row(size_t(lw->in));
            int64_t differ = 0;
            for (int64_t r = 0; r < lw->out; ++r) {
                lw->row_to_f32(r, row.data());
                differ += std::memcmp(row.data(), ref.f32.data() + r * lw->in, row.size() * 4) != 0;
            }
            CHECK(differ == 0);
        }
    }
}

TEST_CASE("loader: config of the real target checkpoint (shared/models/glm-5.1-reap-160)") {
    const std::string dir = std::string(GLMRUN_SOURCE_DIR) + "/../shared/models/glm-5.1-reap-160";
    std::string text;
    if (!read_text_file(dir + "/config.json", text).ok()) return;  // reference dir not present
    ModelConfig c;
    Status st = load_config(dir, c);
    REQUIRE_MESSAGE(st.ok(), st.message());
    CHECK(c.n_routed_experts == 160);
    CHECK(c.num_hidden_layers == 78);
    CHECK(c.num_nextn_predict_layers == 1);
    CHECK(c.qk_head_dim == 256);
    CHECK(c.eos_token_ids.size() == 3);
    for (auto k : c.indexer_types) CHECK(k == IndexerKind::full);
    CHECK(c.quant.is_excluded("model.layers.78.mlp.experts.0.gate_proj"));
    CHECK(c.quant.is_excluded("model.layers.5.mlp.shared_experts.gate_proj"));
    CHECK(c.quant.is_excluded("model.layers.5.mlp.gate"));
    CHECK(!c.quant.is_excluded("model.layers.5.mlp.experts.17.up_proj"));
    CHECK(weight_catalogue(c).size() > 78 * 160 * 3);
    // The full model on 4 x 80 GB at 32k context fits (at 128k the bf16 latent cache does not);
    // on one device it never does.
    MemoryPlanParams p;
    p.n_devices = 4;
    p.context = 32768;
    p.device_capacity = 79ull << 30;
    CHECK(check_memory_plan(plan_memory(c, 285ull * 1000 * 1000 * 1000, p)).ok());
    p.n_devices = 1;
    Status one = check_memory_plan(plan_memory(c, 285ull * 1000 * 1000 * 1000, p));
    CHECK(one.kind() == ErrorKind::device);
}

TEST_CASE("loader: the catalogue covers exactly what bind() uses on a fixture") {
    Checkpoint ck;
    REQUIRE(Checkpoint::open(fixture("dense_moe"), ck).ok());
    const auto cat = weight_catalogue(ck.config());
    for (const auto& e : cat) {
        if (!e.required) continue;
        CAPTURE(e.name);
        CHECK(ck.find(e.linear ? e.name + ".weight" : e.name) != nullptr);
    }
}

TEST_CASE("loader: verify hashes every tensor, writes the manifest and catches one changed byte") {
    TempCopy t("groups");
    VerifyReport rep;
    Status st = verify_model(t.dir, /*write_manifest=*/false, 2, &rep);
    REQUIRE_MESSAGE(st.ok(), st.message());
    CHECK(!rep.manifest_found);
    CHECK(rep.n_tensors > 100);
    st = verify_model(t.dir, true, 2, &rep);
    REQUIRE_MESSAGE(st.ok(), st.message());
    CHECK(rep.manifest_written);
    st = verify_model(t.dir, false, 2, &rep);
    REQUIRE_MESSAGE(st.ok(), st.message());
    CHECK(rep.manifest_found);
    CHECK(rep.n_mismatch == 0);

    // Flip one byte inside one tensor's data.
    Checkpoint ck;
    REQUIRE(Checkpoint::open(t.dir, ck).ok());
    const TensorRecord* r = ck.find("model.layers.1.mlp.experts.5.down_proj.weight");
    REQUIRE(r);
    const std::string file = *r->file;
    const uint64_t off = r->file_offset + 3;
    ck = Checkpoint();  // unmap before editing
    std::string bytes = read_all(file);
    bytes[off] = char(bytes[off] ^ 0x10);
    write_all(file, bytes);
    st = verify_model(t.dir, false, 2, &rep);
    CHECK(st.exit_code() == 2);
    CHECK(st.message().find("model.layers.1.mlp.experts.5.down_proj.weight") != std::string::npos);
    CHECK(rep.n_mismatch == 1);
}

TEST_CASE("loader: verify rejects a non-finite block scale") {
    TempCopy t("dense_moe");
    const std::string name = "model.layers.1.mlp.experts.2.up_proj.weight_scale";
    Checkpoint ck;
    REQUIRE(Checkpoint::open(t.dir, ck).ok());
    const std::string file = *ck.find(name)->file;
    const uint64_t off = ck.find(name)->file_offset;
    ck = Checkpoint();
    std::string bytes = read_all(file);
    bytes[off] = char(0x7f);  // E4M3 NaN
    write_all(file, bytes);
    Status st = verify_model(t.dir, false, 1);
    CHECK(st.exit_code() == 2);
    CHECK(st.message().find(name) != std::string::npos);
}

TEST_CASE("loader: npy round trip and reading the fixture logits") {
    TempCopy t("dense_moe");
    const std::vector<float> v = {1.5f, -2.0f, 0.0f, 3.25f, 1e-8f, -7.0f};
    REQUIRE(npy_write_f32(t.path("a.npy"), v.data(), {2, 3}).ok());
    NpyArray a;
    REQUIRE(npy_read(t.path("a.npy"), a).ok());
    CHECK(a.shape == std::vector<int64_t>{2, 3});
    CHECK(a.f32 == v);
    const std::vector<int32_t> iv = {1, -2, 3};
    REQUIRE(npy_write_i32(t.path("b.npy"), iv.data(), {3}).ok());
    REQUIRE(npy_read(t.path("b.npy"), a).ok());
    CHECK(a.is_int32);
    CHECK(a.i32 == iv);
    NpyArray logits;
    REQUIRE(npy_read(fixture("dense_moe") + "/reference_logits.npy", logits).ok());
    CHECK(logits.shape.size() == 2);
    CHECK(logits.shape[1] == 384);
    int64_t total = 0;
    const nlohmann::json ref = reference("dense_moe");
    for (const auto& p : ref["prompts"]) total += int64_t(p.size());
    CHECK(logits.shape[0] == total);
    Status bad = npy_read(fixture("dense_moe") + "/config.json", a);
    CHECK(bad.exit_code() == 2);
}

TEST_CASE("loader: safetensors writer output reads back") {
    TempCopy t("dense_moe");
    std::vector<SafetensorsTensorOut> ts(2);
    ts[0] = {"a", GLM_TYPE_F32, {2}, std::vector<uint8_t>(8, 1)};
    ts[1] = {"b.scale", GLM_TYPE_F32, {}, std::vector<uint8_t>(4, 2)};
    REQUIRE(write_safetensors(t.path("x.safetensors"), ts, {{"format", "pt"}}).ok());
    SafetensorsFile f;
    Status st = f.open(t.path("x.safetensors"));
    REQUIRE_MESSAGE(st.ok(), st.message());
    REQUIRE(f.entries().size() == 2);
    CHECK(f.entries()[1].shape.empty());
    CHECK(f.tensor_data(f.entries()[1])[0] == 2);
}

TEST_CASE("loader: fused transformers expert layout binds like the per-expert one") {
    // Build a fused-layout copy of dense_moe's MoE layer from BF16 experts: dequantise, store BF16
    // [E, 2I, D] / [E, D, I], drop the per-expert tensors.
    TempCopy t("dense_moe");
    Checkpoint ck;
    REQUIRE(Checkpoint::open(t.dir, ck).ok());
    ModelWeights w;
    REQUIRE(ck.bind(w).ok());
    const ModelConfig c = ck.config();
    const int64_t E = c.n_routed_experts, I = c.moe_intermediate_size, D = c.hidden_size;
    std::vector<uint8_t> gu(size_t(E * 2 * I * D) * 2), dn(size_t(E * D * I) * 2);
    std::vector<float> row(size_t(std::max(I, D)));
    auto put = [&](std::vector<uint8_t>& dst, size_t elem_off, const LinearWeight& lw) {
        for (int64_t r = 0; r < lw.out; ++r) {
            lw.row_to_f32(r, row.data());
            for (int64_t k = 0; k < lw.in; ++k) {
                const uint16_t h = glm_f32_to_bf16(row[size_t(k)]);
                std::memcpy(dst.data() + 2 * (elem_off + size_t(r * lw.in + k)), &h, 2);
            }
        }
    };
    const LayerWeights& L = w.layers[1];
    for (int64_t e = 0; e < E; ++e) {
        put(gu, size_t(e * 2 * I * D), L.experts[size_t(e)].gate);
        put(gu, size_t(e * 2 * I * D + I * D), L.experts[size_t(e)].up);
        put(dn, size_t(e * D * I), L.experts[size_t(e)].down);
    }
    std::vector<SafetensorsTensorOut> extra = {
        {"model.layers.1.mlp.experts.gate_up_proj", GLM_TYPE_BF16, {E, 2 * I, D}, gu},
        {"model.layers.1.mlp.experts.down_proj", GLM_TYPE_BF16, {E, D, I}, dn}};
    ck = Checkpoint();
    REQUIRE(write_safetensors(t.path("model-fused.safetensors"), extra).ok());
    edit_json(t.path("model.safetensors.index.json"), [&](nlohmann::json& j) {
        auto& wm = j["weight_map"];
        for (auto it = wm.begin(); it != wm.end();)
            it = it.key().rfind("model.layers.1.mlp.experts.", 0) == 0 ? wm.erase(it) : std::next(it);
        wm["model.layers.1.mlp.experts.gate_up_proj"] = "model-fused.safetensors";
        wm["model.layers.1.mlp.experts.down_proj"] = "model-fused.safetensors";
    });
    Checkpoint ck2;
    Status st = Checkpoint::open(t.dir, ck2);
    REQUIRE_MESSAGE(st.ok(), st.message());
    ModelWeights w2;
    st = ck2.bind(w2);
    REQUIRE_MESSAGE(st.ok(), st.message());
    const LayerWeights& F = w2.layers[1];
    CHECK(F.experts_fused);
    REQUIRE(int64_t(F.experts.size()) == E);
    // Expert 5's up row 3 equals the bf16 rounding of its NVFP4 dequant.
    Checkpoint ck3;
    REQUIRE(Checkpoint::open(fixture("dense_moe"), ck3).ok());
    ModelWeights w3;
    REQUIRE(ck3.bind(w3).ok());
    std::vector<float> a(static_cast<size_t>(D)), b(static_cast<size_t>(D));
    F.experts[5].up.row_to_f32(3, a.data());
    w3.layers[1].experts[5].up.row_to_f32(3, b.data());
    for (int64_t k = 0; k < D; ++k) CHECK(a[size_t(k)] == glm_bf16_to_f32(glm_f32_to_bf16(b[size_t(k)])));
}
