#include "engine/speculative.h"

#include <algorithm>
#include <chrono>

namespace {
double now_s() {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}
// Keeps the draft/acceptance stream apart from the sampler's own (seeded with the same --seed): the
// acceptance test must be independent of how the draft token was drawn.
constexpr uint64_t k_spec_seed_salt = 0x9e3779b97f4a7c15ull;
}  // namespace

std::string SpecStats::summary() const {
    std::string per;
    for (size_t i = 0; i < tried.size(); ++i) per += fmt::format("{}{:.2f}", i ? "/" : "", acceptance(i));
    return fmt::format("mtp: {} drafts, {} steps, mean accepted length {:.2f} tokens/step, acceptance per "
                       "position {} (draft {:.2f} s, verify {:.2f} s)",
                       tried.size(), rounds, mean_accepted_length(), per.empty() ? "-" : per, draft_s, verify_s);
}

SpeculativeDecoder::SpeculativeDecoder(Session& session, const SpecParams& params)
    : session_(session), params_(params), n_embd_(session.hparams().n_embd),
      rng_(params.seed ^ k_spec_seed_salt) {
    GLM_ASSERT(session.has_draft());
    GLM_ASSERT(params.n_draft >= 1 && session.params().n_verify >= params.n_draft + 1);
    reset_stats();
}

void SpeculativeDecoder::reset_stats() {
    stats_ = SpecStats{};
    stats_.tried.assign(size_t(params_.n_draft), 0);
    stats_.hits.assign(size_t(params_.n_draft), 0);
}

Status SpeculativeDecoder::observe(const int32_t* tokens, int64_t n, int64_t start, const float* hidden) {
    if (n <= 0) return {};
    // Rows continue only when the queue ends right before start with the hidden state of start - 1; else
    // (a truncated or new history) start over: row `start` keeps whatever it held (a draft-quality loss).
    const bool continues = tail_pos_ >= 0 && tail_pos_ == start - 1 &&
                           rows_pos_ + int64_t(rows_tok_.size()) == start;
    if (continues) {
        rows_tok_.push_back(tokens[0]);
        rows_hid_.insert(rows_hid_.end(), tail_.begin(), tail_.end());
    } else {
        rows_tok_.clear();
        rows_hid_.clear();
        rows_pos_ = start + 1;
    }
    for (int64_t i = 1; i < n; ++i) {
        rows_tok_.push_back(tokens[i]);
        rows_hid_.insert(rows_hid_.end(), hidden + (i - 1) * n_embd_, hidden + i * n_embd_);
    }
    tail_.assign(hidden + (n - 1) * n_embd_, hidden + n * n_embd_);
    tail_pos_ = start + n - 1;
    // Write the rows now (rather than with the first draft step) so the prompt's MTP cost counts as
    // prefill, and a long prompt does not queue its hidden states.
    const double t0 = now_s();
    GLM_TRY(flush_rows(/*device_greedy=*/false, nullptr));
    stats_.draft_s += now_s() - t0;
    return {};
}

Status SpeculativeDecoder::propose(const int32_t* tokens, const float* h, int64_t n, int64_t pos, bool device_greedy,
                                   Proposal* next) {
    if (!next) return session_.eval_draft(tokens, h, n, pos, nullptr, nullptr);
    if (device_greedy) {
        std::vector<int32_t> ids;
        GLM_TRY(session_.eval_draft_greedy(tokens, h, n, pos, &ids, &next->hidden));
        next->argmax = ids.back();
        next->logits.clear();
    } else {
        GLM_TRY(session_.eval_draft(tokens, h, n, pos, &next->logits, &next->hidden));
        next->logits.erase(next->logits.begin(), next->logits.end() - long(session_.hparams().n_vocab));
    }
    next->hidden.erase(next->hidden.begin(), next->hidden.end() - long(n_embd_));
    return {};
}

Status SpeculativeDecoder::flush_rows(bool device_greedy, Proposal* next) {
    const int64_t ubatch = session_.params().n_ubatch;
    int64_t done = 0;
    const int64_t total = int64_t(rows_tok_.size());
    while (done < total) {
        const int64_t chunk = std::min(ubatch, total - done);
        const bool last = done + chunk == total;
        GLM_TRY(propose(rows_tok_.data() + done, rows_hid_.data() + done * n_embd_, chunk, rows_pos_ + done,
                        device_greedy, last ? next : nullptr));
        done += chunk;
    }
    rows_tok_.erase(rows_tok_.begin(), rows_tok_.begin() + done);
    rows_hid_.erase(rows_hid_.begin(), rows_hid_.begin() + done * n_embd_);
    rows_pos_ += done;
    return {};
}

int32_t SpeculativeDecoder::draw(const std::vector<float>& p) {
    double total = 0;
    for (float v : p) total += v;
    std::uniform_real_distribution<double> uniform(0.0, total);
    const double r = uniform(rng_);
    double acc = 0;
    int32_t last = 0;
    for (size_t i = 0; i < p.size(); ++i) {
        if (p[i] <= 0.0f) continue;
        acc += p[i];
        last = int32_t(i);
        if (r < acc) return last;
    }
    return last;  // rounding at the very top of the range
}

Status SpeculativeDecoder::step(int32_t first, Sampler& sampler, int64_t max_new,
                                const std::function<bool(int32_t)>& is_stop, std::vector<int32_t>& out) {
    GLM_ASSERT(max_new >= 1);
    GLM_ASSERT(!params_.draft_override || sampler.is_greedy());
    out.clear();
    const int64_t p = session_.n_past();
    const int64_t n_vocab = session_.hparams().n_vocab;
    const bool greedy = sampler.is_greedy();
    // Greedy without penalties: every choice is the argmax of raw logits, which the device makes; only
    // (max, id) pairs come back from the verify and draft steps, not n_vocab floats per position.
    const bool device_greedy = sampler.is_plain_greedy();
    // Drafts that can be used: the verify batch p..p+n must fit the context, and the round yields up to
    // n + 1 tokens. Without the target's state at p - 1 (a new or rewritten history) there is nothing to
    // draft from: a plain decode step, which also re-establishes it.
    int64_t n = std::min<int64_t>({params_.n_draft, session_.n_ctx() - p - 1, max_new - 1});
    const bool have_h = tail_pos_ == p - 1 && tail_pos_ >= 0 && rows_pos_ + int64_t(rows_tok_.size()) == p;
    if (!have_h) {
        n = 0;
        rows_tok_.clear();
        rows_hid_.clear();
        rows_pos_ = p + 1;
    } else {
        // Row p: (x_p, h_{p-1}); it pairs with the previous round's accepted rows in the flush below.
        rows_tok_.push_back(first);
        rows_hid_.insert(rows_hid_.end(), tail_.begin(), tail_.end());
    }
    n = std::max<int64_t>(n, 0);

    // ---- draft
    std::vector<int32_t> draft;
    std::vector<std::vector<float>> q;  // draft distributions (sampling only)
    if (n > 0) {
        const double t0 = now_s();
        Proposal next;
        GLM_TRY(flush_rows(device_greedy, &next));
        // Penalties see the drafts as history, as the target's sampler will when it checks them.
        Sampler ds = sampler;
        for (int64_t i = 0; i < n; ++i) {
            int32_t d;
            if (device_greedy) {
                d = next.argmax;
            } else if (greedy) {
                d = ds.sample(next.logits);  // penalties, then the first maximum: no random draw
            } else {
                q.push_back(ds.distribution(next.logits));
                d = draw(q.back());
            }
            if (greedy && params_.draft_override) d = params_.draft_override(p + i + 1, d);
            draft.push_back(d);
            ds.accept(d);
            if (i + 1 < n) {
                const std::vector<float> h_in = k_mtp_chain_draft_hidden ? next.hidden : tail_;
                GLM_TRY(propose(&d, h_in.data(), 1, p + i + 1, device_greedy, &next));
            }
        }
        stats_.draft_s += now_s() - t0;
    }

    // ---- verify: [x_p, d_1..d_n] in one batch
    const double t0 = now_s();
    std::vector<int32_t> batch = {first};
    batch.insert(batch.end(), draft.begin(), draft.end());
    std::vector<float> tl, th;
    std::vector<int32_t> target_ids;  // device_greedy: the target's argmax at each position
    if (device_greedy) GLM_TRY(session_.eval_verify_greedy(batch.data(), n + 1, &target_ids, &th));
    else GLM_TRY(session_.eval_verify(batch.data(), n + 1, &tl, &th));
    GLM_ASSERT(int64_t(th.size()) == (n + 1) * n_embd_);
    GLM_ASSERT(device_greedy ? int64_t(target_ids.size()) == n + 1 : int64_t(tl.size()) == (n + 1) * n_vocab);
    auto row = [&](int64_t i) { return std::vector<float>(tl.begin() + i * n_vocab, tl.begin() + (i + 1) * n_vocab); };
    // What decoding without speculation would pick at position i (greedy: penalties, then argmax).
    auto target_sample = [&](int64_t i) {
        if (device_greedy) return target_ids[size_t(i)];
        std::vector<float> logits = row(i);
        return sampler.sample(logits);
    };
    bool stopped = false;  // a stop token or max_new ended the round inside the drafts
    int64_t accepted = 0;
    for (int64_t i = 0; i < n; ++i) stats_.tried[size_t(i)]++;
    for (int64_t i = 0; i < n; ++i) {
        const int32_t d = draft[size_t(i)];
        int32_t next = -1;
        if (greedy) {
            const int32_t t = target_sample(i);
            if (t != d) next = t;
        } else {
            std::vector<float> logits = row(i);
            const std::vector<float> pt = sampler.distribution(logits);
            const std::vector<float>& qd = q[size_t(i)];
            std::uniform_real_distribution<double> uniform(0.0, 1.0);
            // accept with probability min(1, pt/qd); qd[d] > 0 since d was drawn from it
            if (!(uniform(rng_) * double(qd[size_t(d)]) < double(pt[size_t(d)]))) {
                std::vector<float> residual(pt.size());
                double sum = 0;
                for (size_t v = 0; v < pt.size(); ++v) sum += residual[v] = std::max(0.0f, pt[v] - qd[v]);
                // Exactly zero only through rounding (pt == qd would have accepted): draw from the target.
                next = draw(sum > 0 ? residual : pt);
            }
        }
        if (next >= 0) {
            sampler.accept(next);
            out.push_back(next);
            break;
        }
        stats_.hits[size_t(i)]++;
        ++accepted;
        sampler.accept(d);
        out.push_back(d);
        if (is_stop(d) || int64_t(out.size()) >= max_new) {
            stopped = true;
            break;
        }
    }
    if (!stopped && int64_t(out.size()) == accepted) {
        // Every draft passed: the bonus token from the target's last position.
        const int32_t t = target_sample(n);
        sampler.accept(t);
        out.push_back(t);
    }
    stats_.verify_s += now_s() - t0;
    stats_.rounds++;
    stats_.tokens += int64_t(out.size());

    // The session keeps x_p and every output token but the last: positions p .. p+m-1. Their cache rows
    // are the verify's; the rows past them are overwritten later.
    const int64_t m = int64_t(out.size());
    session_.truncate(p + m);
    // MTP rows for p+1 .. p+m-1 (they hold draft-state rows now): (out[j-1], h_{p+j-1}) from the verify.
    GLM_ASSERT(n == 0 || (rows_tok_.empty() && rows_pos_ == p + 1));  // the draft flush wrote rows .. p
    for (int64_t j = 1; j < m; ++j) {
        rows_tok_.push_back(out[size_t(j - 1)]);
        rows_hid_.insert(rows_hid_.end(), th.begin() + (j - 1) * n_embd_, th.begin() + j * n_embd_);
    }
    tail_.assign(th.begin() + (m - 1) * n_embd_, th.begin() + m * n_embd_);
    tail_pos_ = p + m - 1;
    return {};
}
