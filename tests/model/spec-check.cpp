#include "spec-check.h"

#include <numeric>

#include <doctest/doctest.h>

// Plain decoding: prompt, then one token at a time.
std::vector<int32_t> generate_plain(Session& s, const std::vector<int32_t>& prompt, Sampler& sampler, size_t n) {
    std::vector<float> logits;
    REQUIRE(s.eval(prompt.data(), int64_t(prompt.size()), &logits).ok());
    std::vector<int32_t> out;
    for (;;) {
        const int32_t id = sampler.sample(logits);
        sampler.accept(id);
        out.push_back(id);
        if (out.size() == n) return out;
        REQUIRE(s.eval(&id, 1, &logits).ok());
    }
}

// Speculative decoding as cli/generate.cpp drives it.
std::vector<int32_t> generate_spec(Session& s, SpeculativeDecoder& spec, const std::vector<int32_t>& prompt,
                                   Sampler& sampler, size_t n) {
    std::vector<float> logits, hidden;
    REQUIRE(s.eval(prompt.data(), int64_t(prompt.size()), &logits, nullptr, &hidden).ok());
    REQUIRE(spec.observe(prompt.data(), int64_t(prompt.size()), 0, hidden.data()).ok());
    std::vector<int32_t> out;
    int32_t id = sampler.sample(logits);
    sampler.accept(id);
    out.push_back(id);
    while (out.size() < n) {
        std::vector<int32_t> more;
        const Status st = spec.step(id, sampler, int64_t(n - out.size()), [](int32_t) { return false; }, more);
        REQUIRE_MESSAGE(st.ok(), st.message());
        REQUIRE(!more.empty());
        out.insert(out.end(), more.begin(), more.end());
        id = more.back();
        // The session holds the prompt and every generated token but the newest.
        REQUIRE(s.n_past() == int64_t(prompt.size() + out.size()) - 1);
    }
    REQUIRE(out.size() == n);
    return out;
}

SamplerParams greedy_params() {
    SamplerParams sp;
    sp.temperature = 0.0f;  // repetition penalty stays at the default 1.05
    return sp;
}

std::vector<std::vector<int32_t>> check_lossless(const MakeSession& make, const std::vector<int32_t>& prompt,
                                                 SessionParams p, size_t n_gen, const std::string& what, bool oracle) {
    REQUIRE(p.n_ctx >= int64_t(prompt.size() + n_gen));
    p.n_verify = 4;
    SamplerParams plain_greedy = greedy_params();
    plain_greedy.repeat_penalty = 1.0f;
    std::vector<std::vector<int32_t>> plain_ids;
    for (const SamplerParams& sp : {greedy_params(), plain_greedy}) {
        const std::string run = what + (sp.repeat_penalty == 1.0f ? ", device argmax" : ", repeat penalty");
        Sampler plain_sampler(sp);
        REQUIRE(plain_sampler.is_plain_greedy() == (sp.repeat_penalty == 1.0f));
        for (int32_t t : prompt) plain_sampler.accept(t);
        const std::vector<int32_t> want = generate_plain(*make(p), prompt, plain_sampler, n_gen);
        for (int n_draft = 1; n_draft <= 3; ++n_draft) {
            CAPTURE(run);
            CAPTURE(n_draft);
            auto s = make(p);
            SpecParams spec_params;
            spec_params.n_draft = n_draft;
            if (oracle)
                spec_params.draft_override = [&](int64_t pos, int32_t proposed) {
                    const size_t i = size_t(pos) - prompt.size();  // generated token i sits at prompt + i
                    if (i >= want.size()) return proposed;
                    return pos * 37 % 11 < 3 ? (want[i] == 0 ? 1 : 0) : want[i];  // period 11: no round aligns
                };
            SpeculativeDecoder spec(*s, spec_params);
            Sampler sampler(sp);
            for (int32_t t : prompt) sampler.accept(t);
            const std::vector<int32_t> got = generate_spec(*s, spec, prompt, sampler, n_gen);
            CHECK(got == want);
            MESSAGE(run, " drafts ", n_draft, ": ", spec.stats().summary());
            // Drafts were really accepted (several tokens per step) and rejected.
            CHECK(spec.stats().mean_accepted_length() > 1.2);
            const SpecStats& st = spec.stats();
            CHECK(std::accumulate(st.hits.begin(), st.hits.end(), int64_t(0)) <
                  std::accumulate(st.tried.begin(), st.tried.end(), int64_t(0)));
        }
        plain_ids.push_back(want);
    }
    return plain_ids;
}

void check_lossless(const MakeSession& make, const std::vector<int32_t>& prompt, int64_t ubatch, size_t n_gen,
                    const std::string& what, bool oracle) {
    SessionParams p;
    p.n_ctx = int64_t(prompt.size() + n_gen) + 8;
    p.n_ubatch = ubatch;
    check_lossless(make, prompt, p, n_gen, what, oracle);
}
