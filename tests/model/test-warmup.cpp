// The load-time warm-up (EngineParams::warmup) leaves nothing behind: after its placeholder chunk
// and decode step the session is empty, and a prompt gives the logits and greedy tokens of an
// engine that never warmed up. On the CPU the warm-up runs only when a test asks (warmup_cpu), so
// this is the same code path a GPU runs at load, checked against the reference backend.
#include <doctest/doctest.h>

#include <algorithm>

#include "engine/engine.h"
#include "engine/sampler.h"

namespace {

struct Run {
    std::vector<float> logits;     // of the prompt's last position, then of each greedy step
    std::vector<int32_t> tokens;   // greedy continuation
};

Run run_prompt(bool warmup) {
    EngineParams p;
    p.model_dir = std::string(GLMRUN_SOURCE_DIR) + "/models/glm-tiny";
    p.use_cpu = true;
    p.show_progress = false;
    p.warmup = warmup;
    p.warmup_cpu = warmup;
    p.session.n_ctx = 96;
    p.session.n_ubatch = 32;  // the warm-up fills a whole chunk; the prompt below spans two
    std::unique_ptr<Engine> engine;
    const Status st = Engine::load(p, engine);
    REQUIRE_MESSAGE(st.ok(), st.message());
    Session& s = engine->session();
    CHECK(s.n_past() == 0);
    std::vector<int32_t> prompt;
    for (int i = 0; i < 45; ++i) prompt.push_back(int32_t((i * 131 + 7) % 4000));
    Run out;
    std::vector<float> logits;
    const Status ev = s.eval(prompt.data(), int64_t(prompt.size()), &logits);
    REQUIRE_MESSAGE(ev.ok(), ev.message());
    for (int step = 0; step < 6; ++step) {
        out.logits.insert(out.logits.end(), logits.begin(), logits.end());
        const int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
        out.tokens.push_back(next);
        REQUIRE(s.eval(&next, 1, &logits).ok());
    }
    CHECK(s.n_past() == int64_t(prompt.size()) + 6);
    return out;
}

}  // namespace

TEST_CASE("warm-up at load: the session starts empty and gives what an engine without it gives") {
    const Run cold = run_prompt(false);
    const Run warm = run_prompt(true);
    CHECK(warm.tokens == cold.tokens);
    REQUIRE(warm.logits.size() == cold.logits.size());
    // Same backend, same graphs, same order of operations: bit for bit.
    CHECK(warm.logits == cold.logits);
}
