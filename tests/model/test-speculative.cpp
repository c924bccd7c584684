// MTP speculative decoding (engine/speculative.*) on the CPU backend:
//  - lossless: with temperature 0, with the default repetition penalty (the penalties' view of the
//    drafts is exercised too) and without it (the verify and draft steps return only the argmax of each
//    position), the ids generated with MTP equal those without it, 64 tokens, drafts 1..3,
//    on every fixture with an MTP layer (index_cache has none) and on the bundled tiny model, whose MTP
//    layer is trained so that drafts are really accepted (and rejected). The fixtures' random MTP layers
//    never guess right, so there the drafts also go through an oracle (the plain run's tokens, 3 positions in 11
//    position wrong) to exercise acceptance, truncation and the MTP rows' rewrite;
//  - exact in distribution: with temperature 1 the 2nd and 3rd generated tokens (the first ones decided
//    by the rejection rule; the 1st comes from the prompt's logits) follow the target's distribution:
//    2000 seeded trials against the exact distribution computed without speculation (enumerating the
//    1st token, top-k 20), a chi-square goodness-of-fit test at significance 0.001. (Accepting drafts
//    with 1.5x the rule's probability fails it: chi-square 135 against a critical value of 111.)
#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <sstream>

#include <doctest/doctest.h>

#include "engine/checkpoint.h"
#include "engine/engine.h"
#include "engine/speculative.h"
#include "engine/weights.h"
#include "model-fixture.h"
#include "spec-check.h"

namespace {

const std::string k_tiny_dir = std::string(GLMRUN_SOURCE_DIR) + "/models/glm-tiny";

// The bundled model on the CPU backend (the fixture loader needs reference .npy files it lacks).
struct Tiny : TestModel {
    std::unique_ptr<glm::Tokenizer> tok;

    explicit Tiny(int threads = 2) {
        load_dir(k_tiny_dir, glm_backend_cpu_create(threads));
        const Status st = load_tokenizer(k_tiny_dir, tok);
        REQUIRE_MESSAGE(st.ok(), st.message());
    }
    std::vector<int32_t> heldout(size_t n) const {
        std::ifstream in(std::string(GLMRUN_SOURCE_DIR) + "/tests/tiny/heldout.txt");
        std::stringstream ss;
        ss << in.rdbuf();
        std::vector<int32_t> ids = tok->encode(ss.str());
        REQUIRE(ids.size() >= n);
        ids.resize(n);
        return ids;
    }
};

}  // namespace

TEST_CASE("sampler distribution: what sample() draws from") {
    std::vector<float> logits = {0.1f, 2.0f, -1.0f, 2.0f, 0.5f, 1.0f};
    SamplerParams sp;
    sp.temperature = 0.7f;
    sp.top_k = 4;
    sp.top_p = 0.9f;
    sp.repeat_penalty = 1.0f;
    std::vector<float> l = logits;
    const std::vector<float> p = Sampler(sp).distribution(l);
    double sum = 0;
    for (float v : p) sum += v;
    CHECK(sum == doctest::Approx(1.0));
    CHECK(p[2] == 0.0f);  // outside top-k
    CHECK(p[1] == p[3]);
    // Empirical frequencies of sample() match it.
    Sampler s(sp);
    std::vector<int> count(logits.size(), 0);
    const int n = 20000;
    for (int i = 0; i < n; ++i) {
        l = logits;
        count[size_t(s.sample(l))]++;
    }
    for (size_t v = 0; v < p.size(); ++v) CHECK(double(count[v]) / n == doctest::Approx(p[v]).epsilon(0.05));
    // Greedy: one-hot at the (penalised) argmax.
    sp.temperature = 0.0f;
    l = logits;
    const std::vector<float> g = Sampler(sp).distribution(l);
    CHECK(g[1] == 1.0f);
    CHECK(std::count(g.begin(), g.end(), 0.0f) == long(g.size()) - 1);
}

TEST_CASE("MTP speculative decoding is lossless at temperature 0 on the fixtures") {
    int with_mtp = 0;
    for (const std::string& name : fixture_names()) {
        ModelFixture fx;
        fx.load(name);
        if (!fx.tensors().has_mtp) {
            MESSAGE(name, ": no MTP layer, skipped");
            continue;
        }
        ++with_mtp;
        const std::vector<int32_t> prompt = fx.prompt(1);
        // ubatch 512: one prefill chunk; ubatch 5: the MTP rows of the prompt go in chunks, the verify
        // batch is wider than a prefill chunk.
        for (int64_t ubatch : {int64_t(512), int64_t(5)})
            check_lossless([&](SessionParams p) { return fx.session(p); }, prompt, ubatch, 64,
                           name + " ubatch " + std::to_string(ubatch), true);
    }
    CHECK(with_mtp >= 2);  // dense_moe and groups
}

TEST_CASE("MTP speculative decoding is lossless at temperature 0 on the bundled model") {
    Tiny tiny;
    REQUIRE(tiny.tensors().has_mtp);
    const std::vector<int32_t> prompt = tiny.heldout(48);
    check_lossless([&](SessionParams p) { return tiny.session(p); }, prompt, 512, 64, "glm-tiny", false);
}

TEST_CASE("MTP speculative sampling keeps the target's distribution (chi-square, significance 0.001)") {
    Tiny tiny(1);  // thousands of tiny graphs: one thread spends less on synchronisation than it saves
    const std::vector<int32_t> prompt = tiny.heldout(6);
    const int64_t n_prompt = int64_t(prompt.size());
    SamplerParams sp;
    sp.temperature = 1.0f;
    sp.top_k = 20;        // keeps the exact enumeration below to 20 target evaluations
    sp.top_p = 1.0f;
    sp.repeat_penalty = 1.05f;
    SessionParams p;
    p.n_ctx = n_prompt + 8;
    p.n_verify = 3;
    auto s = tiny.session(p);
    const int64_t n_vocab = tiny.hp.n_vocab;

    std::vector<float> prompt_logits, prompt_hidden;
    REQUIRE(s->eval(prompt.data(), n_prompt, &prompt_logits, nullptr, &prompt_hidden).ok());
    Sampler base(sp);
    for (int32_t t : prompt) base.accept(t);

    // Exact target distributions without speculation: token 1 from the prompt's logits, token 2 given
    // token 1, token 3 given tokens 1 and 2 (every pair in the top-k support: 20 + 400 evaluations).
    std::vector<float> l = prompt_logits;
    const std::vector<float> p1 = base.distribution(l);
    std::vector<double> want2(size_t(n_vocab), 0.0), want3(size_t(n_vocab), 0.0);
    for (int32_t x = 0; x < n_vocab; ++x) {
        if (p1[size_t(x)] == 0.0f) continue;
        s->truncate(n_prompt);
        std::vector<float> lx;
        REQUIRE(s->eval(&x, 1, &lx).ok());
        Sampler sx = base;
        sx.accept(x);
        const std::vector<float> p2 = sx.distribution(lx);
        for (int32_t y = 0; y < n_vocab; ++y) {
            if (p2[size_t(y)] == 0.0f) continue;
            const double pxy = double(p1[size_t(x)]) * p2[size_t(y)];
            want2[size_t(y)] += pxy;
            s->truncate(n_prompt + 1);
            std::vector<float> ly;
            REQUIRE(s->eval(&y, 1, &ly).ok());
            Sampler sy = sx;
            sy.accept(y);
            const std::vector<float> p3 = sy.distribution(ly);
            for (int64_t v = 0; v < n_vocab; ++v) want3[size_t(v)] += pxy * p3[size_t(v)];
        }
    }

    // Speculative trials: a fresh decoder over the same prompt state each time, its own seed.
    const int trials = 2000;
    std::vector<int> got2(size_t(n_vocab), 0), got3(size_t(n_vocab), 0);
    int64_t tried = 0, hits = 0;
    for (int trial = 0; trial < trials; ++trial) {
        s->truncate(n_prompt);
        SpecParams spp;
        spp.n_draft = 2;
        spp.seed = uint64_t(trial) * 7919 + 1;
        SpeculativeDecoder spec(*s, spp);
        REQUIRE(spec.observe(prompt.data(), n_prompt, 0, prompt_hidden.data()).ok());
        SamplerParams tp = sp;
        tp.seed = uint64_t(trial) + 100000;
        Sampler sampler(tp);
        for (int32_t t : prompt) sampler.accept(t);
        l = prompt_logits;
        const int32_t first = sampler.sample(l);
        sampler.accept(first);
        std::vector<int32_t> more;
        // Both drafts are used (max_new 3): token 2 is d_1 or the residual draw, token 3 is d_2, the
        // residual draw at position 2 or (after a rejection at 1) the next round's.
        REQUIRE(spec.step(first, sampler, 3, [](int32_t) { return false; }, more).ok());
        while (more.size() < 2) {
            std::vector<int32_t> next;
            REQUIRE(spec.step(more.back(), sampler, 2, [](int32_t) { return false; }, next).ok());
            more.insert(more.end(), next.begin(), next.end());
        }
        got2[size_t(more[0])]++;
        got3[size_t(more[1])]++;
        tried += spec.stats().tried[0];
        hits += spec.stats().hits[0];
    }
    MESSAGE("first-draft acceptance at temperature 1: ", double(hits) / double(tried));
    CHECK(hits > 0);      // both branches of the rule were taken
    CHECK(hits < tried);

    // Pearson's chi-square, bins with an expected count below 5 pooled into one; the critical value at
    // significance 0.001 by the Wilson-Hilferty approximation (z = 3.0902).
    auto chi_square = [&](const std::vector<double>& want, const std::vector<int>& got, const std::string& what) {
        double stat = 0, pool_e = 0, pool_o = 0;
        int bins = 0;
        for (int64_t v = 0; v < n_vocab; ++v) {
            const double e = want[size_t(v)] * trials;
            if (e < 5) {
                pool_e += e;
                pool_o += got[size_t(v)];
                continue;
            }
            stat += (got[size_t(v)] - e) * (got[size_t(v)] - e) / e;
            ++bins;
        }
        if (pool_e > 0) {
            stat += (pool_o - pool_e) * (pool_o - pool_e) / std::max(pool_e, 1e-9);
            ++bins;
        }
        const double k = bins - 1, a = 2.0 / (9.0 * k);
        const double critical = k * std::pow(1.0 - a + 3.0902 * std::sqrt(a), 3.0);
        MESSAGE(what, ": chi-square ", stat, " with ", k, " degrees of freedom, critical value ", critical);
        CHECK(k >= 3);
        CHECK(stat < critical);
    };
    chi_square(want2, got2, "2nd token");
    chi_square(want3, got3, "3rd token");
}

// Not a check: the figures of bench/RESULTS.md (run with -tc="*acceptance and speed*" --no-skip).
// Greedy continuations of 128 tokens from prefixes of the held-out text, with and without MTP; and
// the step costs behind the expected speedup: one decode step, verify batches of 1..4, one draft step.
TEST_CASE("MTP acceptance and speed on held-out text" * doctest::skip()) {
    using clock = std::chrono::steady_clock;
    auto secs = [](clock::time_point a) { return std::chrono::duration<double>(clock::now() - a).count(); };
    Tiny tiny(1);  // one thread: the figures are less at the mercy of other load on the machine
    const size_t n_gen = 128;
    SessionParams p;
    p.n_ctx = 512;
    p.n_ubatch = 64;
    p.n_verify = 4;
    const std::vector<int32_t> all = tiny.heldout(256);
    for (int n_draft = 0; n_draft <= 3; ++n_draft) {
        SpecStats total;
        total.tried.assign(size_t(std::max(n_draft, 1)), 0);
        total.hits = total.tried;
        double best = 1e30;
        for (int rep = 0; rep < 3; ++rep) {
            double t_all = 0;
            for (size_t len : {64, 128, 192, 256}) {
                const std::vector<int32_t> prompt(all.begin(), all.begin() + long(len));
                auto s = tiny.session(p);
                Sampler sampler(greedy_params());
                for (int32_t t : prompt) sampler.accept(t);
                // Prefill (and the prompt's MTP rows, written by observe()) outside the clock.
                std::vector<float> logits, hidden;
                REQUIRE(s->eval(prompt.data(), int64_t(len), &logits, nullptr, &hidden).ok());
                int32_t id = sampler.sample(logits);
                sampler.accept(id);
                std::vector<int32_t> out = {id};
                if (n_draft == 0) {
                    const auto t0 = clock::now();
                    while (out.size() < n_gen) {
                        REQUIRE(s->eval(&id, 1, &logits).ok());
                        id = sampler.sample(logits);
                        sampler.accept(id);
                        out.push_back(id);
                    }
                    t_all += secs(t0);
                    continue;
                }
                SpecParams sp;
                sp.n_draft = n_draft;
                SpeculativeDecoder spec(*s, sp);
                REQUIRE(spec.observe(prompt.data(), int64_t(len), 0, hidden.data()).ok());
                const auto t0 = clock::now();
                while (out.size() < n_gen) {
                    std::vector<int32_t> more;
                    REQUIRE(spec.step(id, sampler, int64_t(n_gen - out.size()), [](int32_t) { return false; }, more).ok());
                    out.insert(out.end(), more.begin(), more.end());
                    id = more.back();
                }
                t_all += secs(t0);
                if (rep == 0) {
                    total.rounds += spec.stats().rounds;
                    total.tokens += spec.stats().tokens;
                    total.draft_s += spec.stats().draft_s;
                    total.verify_s += spec.stats().verify_s;
                    for (size_t i = 0; i < total.tried.size(); ++i) {
                        total.tried[i] += spec.stats().tried[i];
                        total.hits[i] += spec.stats().hits[i];
                    }
                }
            }
            best = std::min(best, t_all);
        }
        MESSAGE("drafts ", n_draft, ": ", 4 * n_gen, " tokens in ", best, " s (", 4 * n_gen / best, " tok/s)",
                n_draft ? ", " + total.summary() : std::string());
    }
    // Step costs at a context of 256 (min of 50).
    auto s = tiny.session(p);
    std::vector<float> logits, hidden;
    REQUIRE(s->eval(all.data(), 256, &logits, nullptr, &hidden).ok());
    auto cost = [&](const std::function<void()>& f) {
        double best = 1e30;
        for (int r = 0; r < 50; ++r) {
            const auto t0 = clock::now();
            f();
            best = std::min(best, secs(t0));
        }
        return best * 1e3;
    };
    const int32_t toks[4] = {all[10], all[11], all[12], all[13]};
    MESSAGE("decode step ", cost([&] { s->truncate(256); REQUIRE(s->eval(toks, 1, &logits).ok()); }), " ms");
    for (int n = 1; n <= 4; ++n)
        MESSAGE("verify of ", n, ": ", cost([&] { s->truncate(256); REQUIRE(s->eval_verify(toks, n, &logits, &hidden).ok()); }), " ms");
    std::vector<float> h(size_t(tiny.hp.n_embd), 0.1f);
    MESSAGE("draft step ", cost([&] { REQUIRE(s->eval_draft(toks, h.data(), 1, 256, &logits, &hidden).ok()); }), " ms");
}
