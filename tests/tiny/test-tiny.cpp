// The bundled tiny model (models/glm-tiny, trained by scripts/tiny/train.py) on the CPU backend against
// transformers 5.17 in float32 on the dequantised checkpoint (models/glm-tiny/reference.json):
//  - the tokenizer encodes tests/tiny/heldout.txt and the demo prompt to the recorded ids;
//  - the mean NLL of the held-out ids (teacher forcing, one prefill with every position's logits)
//    equals transformers' within 1e-3 relative; the held-out text is longer than index_topk, so the
//    DSA selection is active;
//  - the greedy continuation of the demo prompt (through the KV cache) equals the recorded ids, up to
//    the first step whose top-2 logit margin in the reference is below 1e-3 (a near-tie).
#include <cmath>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "../model/model-fixture.h"
#include "engine/sampler.h"
#include "tokenizer/tokenizer.h"

namespace {

const std::string k_dir = std::string(GLMRUN_SOURCE_DIR) + "/models/glm-tiny";

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE_MESSAGE(in.good(), "cannot open ", path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

struct TinyModel : TestModel {
    nlohmann::json ref;

    TinyModel() {
        ref = nlohmann::json::parse(read_file(k_dir + "/reference.json"));
        load_dir(k_dir);
    }

    std::unique_ptr<Session> session(int64_t n_ctx, bool logits_all) const {
        SessionParams p;
        p.n_ctx = n_ctx;
        p.n_ubatch = n_ctx;
        p.logits_all = logits_all;
        return TestModel::session(p);
    }
};

}  // namespace

TEST_CASE("tiny model: tokenizer reproduces the reference ids") {
    const nlohmann::json ref = nlohmann::json::parse(read_file(k_dir + "/reference.json"));
    std::string error;
    auto tok = glm::Tokenizer::load(k_dir + "/tokenizer.json", error);
    REQUIRE_MESSAGE(tok.has_value(), error);
    CHECK(tok->n_tokens() == 4096);
    CHECK(tok->token_to_id("<|endoftext|>") == 4060);
    CHECK(tok->token_to_id("[gMASK]") == 4062);
    CHECK(tok->token_to_id("</think>") == 4082);
    const std::string heldout = read_file(std::string(GLMRUN_SOURCE_DIR) + "/" + ref["heldout_file"].get<std::string>());
    CHECK(tok->encode(heldout) == ref["heldout_ids"].get<std::vector<int32_t>>());
    for (auto it = ref["greedy"].begin(); it != ref["greedy"].end(); ++it) {
        CAPTURE(it.key());
        CHECK(tok->encode(it.value()["prompt"].get<std::string>()) == it.value()["prompt_ids"].get<std::vector<int32_t>>());
        CHECK(tok->decode_text(it.value()["ids"].get<std::vector<int32_t>>()) == it.value()["text"].get<std::string>());
    }
}

TEST_CASE("tiny model: held-out NLL equals transformers (CPU, 1e-3 relative)") {
    TinyModel m;
    const std::vector<int32_t> ids = m.ref["heldout_ids"].get<std::vector<int32_t>>();
    REQUIRE(ids.size() > 64);  // longer than the config's index_topk (64): sparse attention is active
    auto s = m.session(int64_t(ids.size()), true);
    std::vector<float> logits;
    const Status st = s->eval(ids.data(), int64_t(ids.size()), &logits, nullptr);
    REQUIRE_MESSAGE(st.ok(), st.message());
    const int64_t V = m.hp.n_vocab;
    REQUIRE(logits.size() == ids.size() * size_t(V));
    const double nll = mean_next_token_nll(logits, ids, V);
    const double want = m.ref["nll"].get<double>();
    MESSAGE("held-out NLL: glmrun ", std::to_string(nll), ", transformers ", std::to_string(want), " (relative difference ",
            std::abs(nll - want) / want, ") over ", ids.size() - 1, " predictions");
    CHECK(std::abs(nll - want) / want <= 1e-3);
}

TEST_CASE("tiny model: greedy continuation of the demo prompt equals transformers") {
    TinyModel m;
    const int64_t V = m.hp.n_vocab;
    for (auto it = m.ref["greedy"].begin(); it != m.ref["greedy"].end(); ++it) {
        CAPTURE(it.key());
        const auto& g = it.value();
        const std::vector<int32_t> prompt = g["prompt_ids"].get<std::vector<int32_t>>();
        const std::vector<int32_t> want = g["ids"].get<std::vector<int32_t>>();
        const std::vector<double> margins = g["margins"].get<std::vector<double>>();
        auto s = m.session(int64_t(prompt.size() + want.size() + 1), false);
        std::vector<float> logits;
        Status st = s->eval(prompt.data(), int64_t(prompt.size()), &logits, nullptr);
        REQUIRE_MESSAGE(st.ok(), st.message());
        std::vector<int32_t> got;
        for (size_t i = 0; i < want.size(); ++i) {
            const int32_t next = argmax(logits.data(), V);
            got.push_back(next);
            if (next != want[i]) {
                // Only a reference near-tie may flip the choice.
                CHECK_MESSAGE(margins[i] < 1e-3, "step ", i, ": got ", next, ", want ", want[i], " (margin ", margins[i], ")");
                break;
            }
            st = s->eval(&next, 1, &logits, nullptr);
            REQUIRE_MESSAGE(st.ok(), st.message());
        }
        CHECK(got.size() == want.size());
    }
}
