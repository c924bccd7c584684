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

// Greedy ids with and without MTP for drafts 1..3. oracle: replace the MTP layer's drafts by the
// plain run's tokens, 3 positions in 11 wrong, so that accepted and rejected drafts both occur.
void check_lossless(const std::function<std::unique_ptr<Session>(SessionParams)>& make,
                    const std::vector<int32_t>& prompt, int64_t ubatch, size_t n_gen, const std::string& what,
                    bool oracle) {
    SessionParams p;
    p.n_ctx = int64_t(prompt.size() + n_gen) + 8;
    p.n_ubatch = ubatch;
    p.n_verify = 4;
    Sampler plain_sampler(greedy_params());
    for (int32_t t : prompt) plain_sampler.accept(t);
    const std::vector<int32_t> want = generate_plain(*make(p), prompt, plain_sampler, n_gen);
    for (int n_draft = 1; n_draft <= 3; ++n_draft) {
        CAPTURE(what);
        CAPTURE(n_draft);
        auto s = make(p);
        SpecParams sp;
        sp.n_draft = n_draft;
        if (oracle)
            sp.draft_override = [&](int64_t pos, int32_t proposed) {
                const size_t i = size_t(pos) - prompt.size();  // generated token i sits at prompt + i
                if (i >= want.size()) return proposed;
                return pos * 37 % 11 < 3 ? (want[i] == 0 ? 1 : 0) : want[i];  // period 11: no round aligns
            };
        SpeculativeDecoder spec(*s, sp);
        Sampler sampler(greedy_params());
        for (int32_t t : prompt) sampler.accept(t);
        const std::vector<int32_t> got = generate_spec(*s, spec, prompt, sampler, n_gen);
        CHECK(got == want);
        MESSAGE(what, " drafts ", n_draft, ": ", spec.stats().summary());
        // Drafts were really accepted (several tokens per step) and rejected.
        CHECK(spec.stats().mean_accepted_length() > 1.2);
        const SpecStats& st = spec.stats();
        CHECK(std::accumulate(st.hits.begin(), st.hits.end(), int64_t(0)) <
              std::accumulate(st.tried.begin(), st.tried.end(), int64_t(0)));
    }
}

