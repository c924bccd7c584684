// MTP (NextN) speculative decoding over a Session (issue 12, model.md §4).
//
// A round starts when the target has sampled token x_p (from its logits at p-1), not yet evaluated:
//  - draft: the MTP layer proposes N tokens. Step 1 is the row (x_p, h_{p-1}) at position p, where
//    h_{p-1} is the target's final-norm hidden state; step i > 1 is (d_{i-1}, the draft's own output
//    hidden state of step i-1) at position p+i-1 (k_mtp_chain_draft_hidden);
//  - verify: the target evaluates [x_p, d_1..d_N] in one batch with every position's logits and accepts
//    the longest prefix it would have produced: greedy, d_i == argmax (without penalties the device's
//    argmax of each position, so no logits come back, for the drafts either); sampling, the standard rejection
//    rule (accept with min(1, p/q), else draw from norm(max(0, p - q)); a bonus draw when all pass), so
//    the output distribution is exactly the target's;
//  - the target's cache is truncated to the accepted positions (their rows are already right: the verify
//    computed them causally); the MTP layer's rows of the accepted positions were written with the
//    draft's hidden state, so they are queued again with the target's hidden states and rewritten by the
//    next round's first draft step (one batch, as sglang's draft-extend does). The MTP cache therefore
//    holds, for every accepted position q >= 1, the row of (x_q, h_{q-1}) — what the layer was trained
//    on; row 0 (no previous hidden state) is never written.
// The MTP state only ever changes what is drafted, never what is accepted: a stale or missing row costs
// acceptance, not correctness.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "engine/session.h"

// Draft steps after the first feed the MTP layer its own output hidden state (after shared_head norm)
// as h, as sglang's EAGLE/NEXTN worker and vLLM's deepseek_mtp do. false would reuse the target's
// h_{p-1} for every step (the target's later states do not exist yet); the tiny model was trained with
// target states only, so both are off-distribution beyond step 1 and we follow the serving stacks.
constexpr bool k_mtp_chain_draft_hidden = true;

struct SpecParams {
    int n_draft = 3;      // --draft N
    uint64_t seed = 0;    // draft draws and acceptance tests (a stream of their own, not the sampler's)
    // Test seam, greedy only: replaces the MTP layer's proposal for position pos (the random-weight
    // fixtures' MTP layers are never right, so their lossless tests force accepted drafts through it).
    std::function<int32_t(int64_t pos, int32_t proposed)> draft_override;
};

struct SpecStats {
    int64_t rounds = 0;               // verify steps
    int64_t tokens = 0;               // tokens the rounds produced (accepted drafts + the target's own)
    std::vector<int64_t> tried, hits; // per draft position: rounds that drafted it / that accepted it
                                      // (hits[i] counts only when 1..i-1 were accepted too)
    double draft_s = 0, verify_s = 0; // time in the MTP layer / in the target's verify graph
    // Tokens per verify step (1 + accepted drafts), as sglang reports "accept length".
    double mean_accepted_length() const { return rounds ? double(tokens) / double(rounds) : 0.0; }
    // hits / tried of draft position i (unconditional: position i passes only if 1..i-1 did).
    double acceptance(size_t i) const { return i < tried.size() && tried[i] ? double(hits[i]) / double(tried[i]) : 0.0; }
    // One line for stderr: "mtp: N drafts, R steps, accepted length L, per position a/b/c".
    std::string summary() const;
};

class SpeculativeDecoder {
public:
    // session must have an MTP layer and params.n_verify >= n_draft + 1.
    SpeculativeDecoder(Session& session, const SpecParams& params);

    // The target evaluated tokens at positions [start, start + n) with these final-norm hidden states
    // ([n_embd * n]): write the MTP layer's rows for them (row q: token q with the hidden state of q - 1).
    Status observe(const int32_t* tokens, int64_t n, int64_t start, const float* hidden);

    // One round. first is the token the caller sampled from the target's last logits and already passed
    // to sampler.accept(); it sits at position session.n_past(). out receives the next tokens
    // (1 .. n_draft + 1), each passed to sampler.accept(): at most max_new (>= 1), ending early after a
    // token for which is_stop is true. Afterwards the session holds first and every token of out but the
    // last (which, like first, the caller feeds back as the next round's first).
    Status step(int32_t first, Sampler& sampler, int64_t max_new, const std::function<bool(int32_t)>& is_stop,
                std::vector<int32_t>& out);

    const SpecStats& stats() const { return stats_; }
    void reset_stats();
    const SpecParams& params() const { return params_; }

private:
    // What an MTP evaluation hands the drafting loop about its last row.
    struct Proposal {
        std::vector<float> logits;  // [n_vocab] (empty when device_greedy)
        int32_t argmax = -1;        // the device's argmax of the logits (device_greedy only)
        std::vector<float> hidden;  // [n_embd], the MTP layer's output hidden state
    };
    // Evaluate n MTP rows at positions pos..; next (optional) receives the last row's proposal, with
    // device_greedy only its argmax instead of its logits.
    Status propose(const int32_t* tokens, const float* h, int64_t n, int64_t pos, bool device_greedy, Proposal* next);
    // Evaluate the pending rows through the MTP layer (ubatch chunks); next receives the last row's
    // proposal.
    Status flush_rows(bool device_greedy, Proposal* next);
    int32_t draw(const std::vector<float>& p);

    Session& session_;
    SpecParams params_;
    int64_t n_embd_ = 0;
    std::mt19937_64 rng_;
    // Pending MTP rows: positions [rows_pos_, rows_pos_ + rows_tok_.size()), token x_q with h_{q-1}.
    int64_t rows_pos_ = 0;
    std::vector<int32_t> rows_tok_;
    std::vector<float> rows_hid_;
    // The target's final-norm hidden state at tail_pos_ (-1: none), which pairs with the next token.
    std::vector<float> tail_;
    int64_t tail_pos_ = -1;
    SpecStats stats_;
};
