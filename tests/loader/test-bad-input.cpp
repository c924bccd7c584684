// The bad-input table of issue 3: each broken copy of a fixture gives one clear error (exit code 2,
// or 3 for memory), naming the file / tensor / field, and never crashes.
#include <doctest/doctest.h>

#include "engine/checkpoint.h"
#include "engine/memory-plan.h"
#include "engine/verify.h"
#include "loader-test-util.h"

using namespace loader_test;

namespace {

// Open + bind, as model loading does.
Status load(const std::string& dir) {
    Checkpoint ck;
    GLM_TRY(Checkpoint::open(dir, ck));
    ModelWeights w;
    return ck.bind(w);
}

void expect_error(const Status& st, const std::string& needle, int code = 2) {
    CHECK(!st.ok());
    CHECK(st.exit_code() == code);
    CHECK_MESSAGE(st.message().find(needle) != std::string::npos, st.message());
    CHECK_MESSAGE(st.message().find('\n') == std::string::npos, "error must be one line: ", st.message());
}

const char* k_shard1 = "model-00001-of-00002.safetensors";
const char* k_shard2 = "model-00002-of-00002.safetensors";

}  // namespace

TEST_CASE("bad input: missing directory") {
    expect_error(load("/nonexistent/glmrun-model"), "/nonexistent/glmrun-model");
    expect_error(verify_model("/nonexistent/glmrun-model", false), "model directory not found");
}

TEST_CASE("bad input: missing shard listed in the index") {
    TempCopy t("dense_moe");
    fs::remove(t.path(k_shard2));
    expect_error(load(t.dir), k_shard2);
}

TEST_CASE("bad input: truncated shard") {
    TempCopy t("dense_moe");
    const std::string s = read_all(t.path(k_shard1));
    write_all(t.path(k_shard1), s.substr(0, s.size() / 2));
    Status st = load(t.dir);
    expect_error(st, k_shard1);
    CHECK(st.message().find("truncated") != std::string::npos);
}

TEST_CASE("bad input: header length beyond the end of the file") {
    TempCopy t("dense_moe");
    std::string s = read_all(t.path(k_shard1));
    s[6] = char(0x01);  // length ~2^48
    write_all(t.path(k_shard1), s);
    Status st = load(t.dir);
    expect_error(st, k_shard1);
    CHECK(st.message().find("header length") != std::string::npos);
    write_all(t.path(k_shard1), s.substr(0, 5));  // shorter than the length field itself
    expect_error(load(t.dir), "too short");
}

TEST_CASE("bad input: corrupt header JSON") {
    TempCopy t("dense_moe");
    std::string s = read_all(t.path(k_shard1));
    s[8 + 10] = '\x01';
    write_all(t.path(k_shard1), s);
    expect_error(load(t.dir), "not valid JSON");
}

TEST_CASE("bad input: tensor offsets outside the data section, overlaps, size mismatch") {
    TempCopy t("dense_moe");
    const std::string name = "model.norm.weight";
    const std::string shard = t.path(shard_of(t.dir, name));
    const std::string orig = read_all(shard);
    edit_header(shard, [&](nlohmann::json& h) { h[name]["data_offsets"][1] = 1ull << 40; });
    expect_error(load(t.dir), "outside the data section");
    write_all(shard, orig);
    edit_header(shard, [&](nlohmann::json& h) {
        for (auto it = h.begin(); it != h.end(); ++it)
            if (it.key() != name && it.key() != "__metadata__") {
                h[name]["data_offsets"] = it.value()["data_offsets"];
                h[name]["shape"] = it.value()["shape"];
                h[name]["dtype"] = it.value()["dtype"];
                break;
            }
    });
    expect_error(load(t.dir), "overlap");
    write_all(shard, orig);
    edit_header(shard, [&](nlohmann::json& h) { h[name]["shape"] = {65}; });
    expect_error(load(t.dir), "needs");
}

TEST_CASE("bad input: unsupported dtype string") {
    TempCopy t("dense_moe");
    const std::string name = "model.layers.1.mlp.gate.e_score_correction_bias";
    edit_header(t.path(shard_of(t.dir, name)), [&](nlohmann::json& h) { h[name]["dtype"] = "F64"; });
    Status st = load(t.dir);
    expect_error(st, "F64");
    CHECK(st.message().find(name) != std::string::npos);
}

TEST_CASE("bad input: wrong dtype for a known tensor") {
    TempCopy t("dense_moe");
    const std::string name = "model.layers.1.mlp.experts.0.gate_proj.weight_scale";
    edit_header(t.path(shard_of(t.dir, name)), [&](nlohmann::json& h) { h[name]["dtype"] = "U8"; });
    expect_error(load(t.dir), name);
    TempCopy t2("dense_moe");
    const std::string n2 = "model.layers.0.self_attn.o_proj.weight";  // BF16 -> I32 with half the columns
    edit_header(t2.path(shard_of(t2.dir, n2)), [&](nlohmann::json& h) {
        h[n2]["dtype"] = "I32";
        h[n2]["shape"][1] = h[n2]["shape"][1].get<int64_t>() / 2;
    });
    Status st = load(t2.dir);
    expect_error(st, n2);
    CHECK(st.message().find("I32") != std::string::npos);
}

TEST_CASE("bad input: wrong shape for a known tensor") {
    TempCopy t("dense_moe");
    const std::string name = "model.norm.weight";
    edit_header(t.path(shard_of(t.dir, name)), [&](nlohmann::json& h) { h[name]["shape"] = {32, 2}; });
    Status st = load(t.dir);
    expect_error(st, name);
    CHECK(st.message().find("[32, 2]") != std::string::npos);
}

TEST_CASE("bad input: missing required tensors are all listed") {
    TempCopy t("dense_moe");
    const std::vector<std::string> gone = {"model.layers.0.self_attn.kv_b_proj.weight",
                                           "model.layers.2.mlp.experts.6.down_proj.weight_scale_2",
                                           "model.layers.1.self_attn.indexer.k_norm.bias"};
    for (const auto& g : gone) {
        edit_header(t.path(shard_of(t.dir, g)), [&](nlohmann::json& h) { h.erase(g); });
    }
    edit_json(t.path("model.safetensors.index.json"), [&](nlohmann::json& j) {
        for (const auto& g : gone) j["weight_map"].erase(g);
    });
    Status st = load(t.dir);
    expect_error(st, "3 required tensors are missing");
    for (const auto& g : gone) CHECK_MESSAGE(st.message().find(g) != std::string::npos, g);
}

TEST_CASE("bad input: index names a tensor its shard does not hold") {
    TempCopy t("dense_moe");
    const std::string name = "lm_head.weight";
    edit_header(t.path(shard_of(t.dir, name)), [&](nlohmann::json& h) { h.erase(name); });
    expect_error(load(t.dir), name);
}

TEST_CASE("bad input: unsupported architecture") {
    TempCopy t("dense_moe");
    edit_json(t.path("config.json"), [](nlohmann::json& j) {
        j["architectures"] = {"LlamaForCausalLM"};
        j["model_type"] = "llama";
    });
    expect_error(load(t.dir), "unsupported architecture 'LlamaForCausalLM'");
}

TEST_CASE("bad input: config field of the wrong type or inconsistent") {
    struct Case {
        const char* field;
        nlohmann::json value;
        const char* needle;
    };
    const Case cases[] = {
        {"hidden_size", "64", "'hidden_size' must be an integer"},
        {"norm_topk_prob", 1, "'norm_topk_prob' must be true or false"},
        {"rope_parameters", nlohmann::json::array(), "'rope_parameters' must be an object"},
        {"eos_token_id", "x", "'eos_token_id'"},
        {"n_group", 3, "divisible by n_group"},
        {"scoring_func", "softmax", "scoring_func"},
        {"num_key_value_heads", 1, "num_key_value_heads"},
        {"index_topk_pattern", "FSX", "index_topk_pattern"},
        {"n_routed_experts", nullptr, "'n_routed_experts' is missing"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.field);
        TempCopy t("dense_moe");
        edit_json(t.path("config.json"), [&](nlohmann::json& j) {
            if (c.value.is_null()) j.erase(c.field);
            else j[c.field] = c.value;
        });
        expect_error(load(t.dir), c.needle);
    }
    TempCopy t("dense_moe");
    write_all(t.path("config.json"), "{\"architectures\": [\"GlmMoeDsaForCausalLM\"], ");
    expect_error(load(t.dir), "config.json: not valid JSON");
    TempCopy t2("dense_moe");
    edit_json(t2.path("config.json"), [](nlohmann::json& j) { j["quantization_config"]["quant_algo"] = "FP8"; });
    expect_error(load(t2.dir), "quant_algo 'FP8'");
}

TEST_CASE("bad input: no weights at all / config.json missing") {
    TempCopy t("dense_moe");
    fs::remove(t.path("model.safetensors.index.json"));
    expect_error(load(t.dir), "model.safetensors");
    fs::remove(t.path("config.json"));
    expect_error(load(t.dir), "config.json not found");
}

TEST_CASE("bad input: plan does not fit in memory") {
    ModelConfig c;
    REQUIRE(load_config(fixture("dense_moe"), c).ok());
    MemoryPlanParams p;
    p.n_devices = 2;
    p.context = 200000;
    p.device_capacity = 64ull << 20;
    p.reserve = 0;
    MemoryPlan plan = plan_memory(c, 10ull << 20, p);
    Status st = check_memory_plan(plan);
    CHECK(st.exit_code() == 3);
    CHECK(st.message().find("-c ") != std::string::npos);
    CHECK(st.message().find("weights") != std::string::npos);  // the table is attached
    p.device_capacity = 4ull << 20;                               // weights alone do not fit
    st = check_memory_plan(plan_memory(c, 10ull << 20, p));
    CHECK(st.exit_code() == 3);
    CHECK(st.message().find("devices") != std::string::npos);
    p.device_capacity = 8ull << 30;
    CHECK(check_memory_plan(plan_memory(c, 10ull << 20, p)).ok());
}

TEST_CASE("bad input: write_manifest does not leave partial files behind") {
    TempCopy t("groups");
    REQUIRE(verify_model(t.dir, true, 2).ok());
    for (const auto& e : fs::directory_iterator(t.dir))
        CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);
}
