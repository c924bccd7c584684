// Token sampling on the host: penalties, then temperature, top-k, top-p, min-p, then a seeded draw.
// temperature 0 (or top_k 1) is greedy: the first maximum wins, as argmax on the device does.
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <vector>

struct SamplerParams {
    // Defaults follow the GLM-5.1 model card (temperature 0.5, top_p 0.95, repetition 1.05).
    float temperature = 0.5f;
    int top_k = 0;             // 0 = off
    float top_p = 0.95f;       // 1 = off
    float min_p = 0.0f;        // 0 = off
    float repeat_penalty = 1.05f;  // 1 = off
    int repeat_last_n = 64;    // window of recent tokens the penalties look at (-1 = whole history)
    float frequency_penalty = 0.0f;
    float presence_penalty = 0.0f;
    uint64_t seed = 0;
};

class Sampler {
public:
    explicit Sampler(const SamplerParams& params);
    // Choose the next token from logits [n_vocab] (modified in place by the penalties).
    int32_t sample(std::vector<float>& logits);
    // The distribution sample() draws from, as n_vocab probabilities (zero outside the kept candidates;
    // one-hot at the argmax when greedy). logits are modified in place by the penalties. Speculative
    // decoding compares target and draft through it, so it must stay exactly what sample() uses.
    std::vector<float> distribution(std::vector<float>& logits) const;
    // Record a token (prompt or generated) for the penalties.
    void accept(int32_t token);
    void reset();
    bool is_greedy() const;
    // Greedy with no penalties: the choice is the argmax of the raw logits, which the device can make
    // (Session::eval_greedy) without sending the logits back.
    bool is_plain_greedy() const;
    const SamplerParams& params() const { return params_; }

private:
    void apply_penalties(std::vector<float>& logits) const;
    // The kept candidates after temperature, top-k, min-p and top-p: ids in descending logit order and
    // their unnormalised probabilities (p[i] belongs to ids[i]); the sum of p is returned.
    double candidates(const std::vector<float>& logits, std::vector<int32_t>& ids, std::vector<double>& p) const;
    SamplerParams params_;
    std::mt19937_64 rng_;
    std::deque<int32_t> history_;
};

int32_t argmax(const float* logits, int64_t n);
