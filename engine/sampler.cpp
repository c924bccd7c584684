#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

int32_t argmax(const float* logits, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; ++i)
        if (logits[i] > logits[best]) best = i;
    return int32_t(best);
}

Sampler::Sampler(const SamplerParams& params) : params_(params), rng_(params.seed) {}

void Sampler::reset() {
    history_.clear();
    rng_.seed(params_.seed);
}

bool Sampler::is_plain_greedy() const {
    return is_greedy() && params_.repeat_penalty == 1.0f && params_.frequency_penalty == 0.0f &&
           params_.presence_penalty == 0.0f;
}

bool Sampler::is_greedy() const { return params_.temperature <= 0.0f || params_.top_k == 1; }

void Sampler::accept(int32_t token) {
    history_.push_back(token);
    // Keep a bounded window; -1 keeps everything (the REPL resets per conversation anyway).
    if (params_.repeat_last_n >= 0)
        while (int64_t(history_.size()) > std::max(params_.repeat_last_n, 0)) history_.pop_front();
}

void Sampler::apply_penalties(std::vector<float>& logits) const {
    if (history_.empty()) return;
    const bool any = params_.repeat_penalty != 1.0f || params_.frequency_penalty != 0.0f ||
                     params_.presence_penalty != 0.0f;
    if (!any) return;
    std::unordered_map<int32_t, int> count;
    for (int32_t t : history_) ++count[t];
    for (const auto& [token, n] : count) {
        if (token < 0 || size_t(token) >= logits.size()) continue;
        float& l = logits[size_t(token)];
        // CTRL-style repetition penalty (as llama.cpp and HF apply it): shrink towards "less likely".
        if (params_.repeat_penalty != 1.0f) l = l > 0 ? l / params_.repeat_penalty : l * params_.repeat_penalty;
        l -= float(n) * params_.frequency_penalty + params_.presence_penalty;
    }
}

double Sampler::candidates(const std::vector<float>& logits, std::vector<int32_t>& ids, std::vector<double>& p) const {
    const int64_t n = int64_t(logits.size());
    // Candidates sorted by logit (stable: lower id first among equals).
    ids.resize(static_cast<size_t>(n));
    std::iota(ids.begin(), ids.end(), 0);
    int64_t keep = n;
    if (params_.top_k > 0) keep = std::min<int64_t>(keep, params_.top_k);
    std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(), [&](int32_t a, int32_t b) {
        return logits[size_t(a)] != logits[size_t(b)] ? logits[size_t(a)] > logits[size_t(b)] : a < b;
    });
    ids.resize(size_t(keep));

    p.resize(ids.size());
    const double mx = logits[size_t(ids[0])];
    double sum = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
        p[i] = std::exp((double(logits[size_t(ids[i])]) - mx) / params_.temperature);
        sum += p[i];
    }
    for (double& v : p) v /= sum;

    size_t cut = p.size();
    if (params_.min_p > 0.0f) {
        const double floor = p[0] * params_.min_p;
        for (size_t i = 1; i < cut; ++i)
            if (p[i] < floor) {
                cut = i;
                break;
            }
    }
    if (params_.top_p < 1.0f) {
        double acc = 0;
        for (size_t i = 0; i < cut; ++i) {
            acc += p[i];
            if (acc >= params_.top_p) {
                cut = i + 1;
                break;
            }
        }
    }
    ids.resize(cut);
    p.resize(cut);
    double total = 0;
    for (size_t i = 0; i < cut; ++i) total += p[i];
    return total;
}

int32_t Sampler::sample(std::vector<float>& logits) {
    apply_penalties(logits);
    const int64_t n = int64_t(logits.size());
    if (is_greedy()) return argmax(logits.data(), n);

    std::vector<int32_t> ids;
    std::vector<double> p;
    const double total = candidates(logits, ids, p);
    std::uniform_real_distribution<double> uniform(0.0, total);
    const double r = uniform(rng_);
    double acc = 0;
    for (size_t i = 0; i < p.size(); ++i) {
        acc += p[i];
        if (r < acc) return ids[i];
    }
    return ids.back();
}

std::vector<float> Sampler::distribution(std::vector<float>& logits) const {
    apply_penalties(logits);
    std::vector<float> out(logits.size(), 0.0f);
    if (is_greedy()) {
        out[size_t(argmax(logits.data(), int64_t(logits.size())))] = 1.0f;
        return out;
    }
    std::vector<int32_t> ids;
    std::vector<double> p;
    const double total = candidates(logits, ids, p);
    for (size_t i = 0; i < ids.size(); ++i) out[size_t(ids[i])] = float(p[i] / total);
    return out;
}
