#include "engine/session.h"

#include <algorithm>
#include <unordered_set>

#include "engine/npy.h"
#include "ggml-like/arena.h"

Session::Session(glm_backend* backend, const ModelHparams& hp, const ModelTensors& weights,
                 const SessionParams& params)
    : Session(std::vector<SessionRank>{{backend, &weights}}, nullptr, hp, params) {}

Session::Session(std::vector<SessionRank> ranks, glm_comm* comm, const ModelHparams& hp, const SessionParams& params)
    : comm_(comm), hp_(hp), params_(params) {
    GLM_ASSERT(!ranks.empty() && (ranks.size() == 1 || comm));
    const int n = int(ranks.size());
    int32_t offset = 0;
    for (const SessionRank& sr : ranks) {
        Rank& r = ranks_.emplace_back();
        r.backend = sr.backend;
        r.weights = sr.weights;
        r.hp = hp;
        r.hp.n_head = hp.n_head / n;  // the weights hold this rank's heads (check_tp_split)
        r.vocab_offset = offset;
        offset += int32_t(sr.weights->lm_head->ne[1]);
    }
    GLM_ASSERT(offset == hp.n_vocab);
}

ForwardOptions Session::options(const Rank& rank, bool all_logits, bool keep, bool max_arg) const {
    ForwardOptions opt;
    opt.attn = params_.attn;
    opt.all_logits = all_logits;
    opt.keep_intermediates = keep;
    opt.n_ranks = int(ranks_.size());
    opt.vocab_offset = rank.vocab_offset;
    opt.max_arg = max_arg;
    return opt;
}

Status Session::init() {
    for (Rank& rank : ranks_) {
        // ---- KV cache: one latent row and one indexer key per position and layer. Every rank computes
        // the same latent rows (q_a / kv_a are replicated), so each keeps a full copy.
        rank.kv.type = params_.kv_type;
        rank.kv.n_ctx = params_.n_ctx;
        size_t offset = 0;
        std::vector<std::pair<glm_tensor*, size_t>> placement;
        auto add = [&](int64_t ne0, const std::string& name) {
            glm_tensor* t = glm_set_name(rank.cache_ctx.new_tensor_2d(params_.kv_type, ne0, params_.n_ctx), name);
            offset = (offset + 255) / 256 * 256;
            placement.emplace_back(t, offset);
            offset += glm_nbytes(t);
            return t;
        };
        for (int64_t il = 0; il < hp_.n_layer; ++il) {
            rank.kv.latent.push_back(add(hp_.kv_row(), fmt::format("cache.{}.latent", il)));
            rank.kv.index.push_back(hp_.indexer_shared[size_t(il)] ? nullptr
                                                                   : add(hp_.index_head_dim, fmt::format("cache.{}.index", il)));
        }
        if (rank.weights->has_mtp) {
            rank.kv.latent.push_back(add(hp_.kv_row(), "cache.mtp.latent"));
            rank.kv.index.push_back(add(hp_.index_head_dim, "cache.mtp.index"));
        }
        rank.kv_bytes = offset;
        GLM_TRY(rank.backend->alloc_buffer(std::max<size_t>(offset, 1), "kv", &rank.kv_buffer));
        for (auto& [t, off] : placement) glm_place(t, rank.kv_buffer, off);
        // Unwritten cache rows are never read (causal mask); zero them anyway so a bug reads zeros, not junk.
        rank.backend->buffer_clear(rank.kv_buffer, 0);

        // ---- activation arena: the worst case is the largest chunk at the end of the context
        const int64_t n_tokens = std::min(params_.n_ubatch, params_.n_ctx);
        glm_context ctx;
        ForwardOptions opt = options(rank, params_.logits_all, /*keep=*/true, /*max_arg=*/true);
        size_t worst = 0;
        // Both the full-chunk prefill and a single-token decode graph (different attention forms).
        for (int64_t n : {n_tokens, std::min(n_tokens, k_max_absorbed_batch), int64_t(1)}) {
            ForwardGraph fg = build_forward(ctx, rank.hp, *rank.weights, rank.kv, n, params_.n_ctx - n, opt);
            worst = std::max(worst, glm_arena_measure(fg.graph).size);
            if (rank.weights->has_mtp) {
                ForwardGraph draft = build_mtp(ctx, rank.hp, *rank.weights, rank.kv, n, params_.n_ctx - n, opt);
                worst = std::max(worst, glm_arena_measure(draft.graph).size);
            }
        }
        // The speculative verify graph: a few positions, each with its logits.
        if (params_.n_verify > 0) {
            const int64_t n = std::min(params_.n_verify, params_.n_ctx);
            opt.all_logits = true;
            ForwardGraph fg = build_forward(ctx, rank.hp, *rank.weights, rank.kv, n, params_.n_ctx - n, opt);
            worst = std::max(worst, glm_arena_measure(fg.graph).size);
        }
        GLM_TRY(rank.backend->alloc_buffer(worst, "activations", &rank.arena));
    }
    return {};
}

Status Session::check_tokens(const int32_t* tokens, int64_t n) const {
    if (n_past_ + n > params_.n_ctx)
        return Status::bad_input("the context is full: {} tokens in use + {} new > context size {} (raise -c, or "
                                 "start over)", n_past_, n, params_.n_ctx);
    for (int64_t i = 0; i < n; ++i)
        if (tokens[i] < 0 || tokens[i] >= hp_.n_vocab)
            return Status::bad_input("token id {} is outside the vocabulary (0..{})", tokens[i], hp_.n_vocab - 1);
    return {};
}

Status Session::eval(const int32_t* tokens, int64_t n, std::vector<float>* logits, EvalCapture* capture,
                     std::vector<float>* hidden) {
    if (n <= 0) return {};
    GLM_TRY(check_tokens(tokens, n));
    if (logits) logits->clear();
    if (capture) *capture = EvalCapture{};
    if (hidden) hidden->clear();
    for (int64_t done = 0; done < n;) {
        const int64_t chunk = std::min(params_.n_ubatch, n - done);
        std::vector<float> part;
        GLM_TRY(eval_chunk(tokens + done, chunk, logits ? &part : nullptr, capture, hidden, params_.logits_all));
        if (logits) {
            if (params_.logits_all) logits->insert(logits->end(), part.begin(), part.end());
            else *logits = std::move(part);
        }
        done += chunk;
    }
    return {};
}

Status Session::eval_greedy(const int32_t* tokens, int64_t n, int32_t* next) {
    GLM_ASSERT(n >= 1 && next);
    GLM_TRY(check_tokens(tokens, n));
    for (int64_t done = 0; done < n;) {
        const int64_t chunk = std::min(params_.n_ubatch, n - done);
        const bool last = done + chunk == n;
        GLM_TRY(eval_chunk(tokens + done, chunk, nullptr, nullptr, nullptr, false, last ? next : nullptr));
        done += chunk;
    }
    return {};
}

Status Session::eval_verify(const int32_t* tokens, int64_t n, std::vector<float>* logits,
                            std::vector<float>* hidden) {
    // The arena was measured for this batch size with every position's logits (init).
    GLM_ASSERT(n >= 1 && n <= params_.n_verify);
    GLM_TRY(check_tokens(tokens, n));
    if (hidden) hidden->clear();
    return eval_chunk(tokens, n, logits, nullptr, hidden, true);
}

void Session::build(Step& step, GraphKind kind, int64_t n, int64_t pos, const ForwardOptions& base) {
    step.ctx.clear();
    step.fg.clear();
    for (Rank& rank : ranks_) {
        ForwardOptions opt = base;
        opt.vocab_offset = rank.vocab_offset;
        glm_context& ctx = step.ctx.emplace_back();
        step.fg.push_back(kind == GraphKind::forward ? build_forward(ctx, rank.hp, *rank.weights, rank.kv, n, pos, opt)
                                                     : build_mtp(ctx, rank.hp, *rank.weights, rank.kv, n, pos, opt));
    }
}

bool Session::can_replay() const {
    if (!params_.replay_decode || replay_.failed || !params_.dump_names.empty()) return false;
    for (const Rank& rank : ranks_)
        if (!rank.backend->supports_capture()) return false;
    // The decode step's all-reduces carry one hidden row of f32.
    return !comm_ || comm_->capturable(size_t(hp_.n_embd) * sizeof(float));
}

Status Session::decode_replay(int32_t token, std::vector<float>* logits, std::vector<float>* hidden, int32_t* greedy) {
    std::vector<glm_backend*> backends;
    std::vector<const glm_graph*> graphs;
    if (!replay_.ready) {
        // Shapes of the last position: cache views of every row, the DSA selection present whenever
        // the context can exceed index_topk. Positions come from the input tensor at each replay.
        build(replay_.step, GraphKind::forward, 1, params_.n_ctx - 1,
              options(ranks_.front(), false, /*keep=*/false, /*max_arg=*/true));
        for (size_t r = 0; r < ranks_.size(); ++r) {
            glm_arena_allocate(replay_.step.fg[r].graph, ranks_[r].arena);
            backends.push_back(ranks_[r].backend);
            graphs.push_back(&replay_.step.fg[r].graph);
        }
        for (glm_backend* b : backends) b->synchronize();
        Status st;
        size_t begun = 0;
        for (; begun < backends.size() && st.ok(); ++begun) st = backends[begun]->capture_begin();
        if (st.ok()) st = glm_tp_compute(backends, graphs, comm_);
        replay_.ids.assign(backends.size(), -1);
        for (size_t r = 0; r < begun; ++r) {
            const Status end = backends[r]->capture_end(&replay_.ids[r]);
            if (st.ok()) st = end;
        }
        if (!st.ok()) {
            log_warn("decode graph recording failed ({}); decoding without replay", st.message());
            replay_.failed = true;
            return Status::device("{}", st.message());
        }
        replay_.ready = true;
        backends.clear();
    }
    const int32_t pos = int32_t(n_past_);
    for (size_t r = 0; r < ranks_.size(); ++r) {
        const ForwardGraph& fg = replay_.step.fg[r];
        ranks_[r].backend->tensor_set(fg.tokens, &token, 0, 4);
        ranks_[r].backend->tensor_set(fg.positions, &pos, 0, 4);
    }
    for (size_t r = 0; r < ranks_.size(); ++r) GLM_TRY(ranks_[r].backend->replay(replay_.ids[r]));
    for (const Rank& rank : ranks_) rank.backend->synchronize();
    if (logits) read_logits(replay_.step, *logits);
    if (greedy) *greedy = read_greedy(replay_.step);
    if (hidden) read_f32(ranks_.front(), replay_.step.fg.front().hidden, *hidden, /*append=*/true);
    n_past_ += 1;
    return {};
}

Status Session::eval_chunk(const int32_t* tokens, int64_t n, std::vector<float>* logits, EvalCapture* capture,
                           std::vector<float>* hidden, bool all_logits, int32_t* greedy) {
    if (n == 1 && !capture && can_replay()) {
        const Status st = decode_replay(tokens[0], logits, hidden, greedy);
        if (st.ok() || !replay_.failed) return st;
        // recording was refused: fall through to the eager path for this and every later step
    }
    Step step;
    build(step, GraphKind::forward, n, n_past_, options(ranks_.front(), all_logits, capture != nullptr, greedy != nullptr));
    const ForwardGraph& fg0 = step.fg.front();
    if (!params_.dump_names.empty()) {
        const std::unordered_set<std::string> wanted(params_.dump_names.begin(), params_.dump_names.end());
        for (glm_tensor* t : fg0.graph.nodes)
            if (wanted.count(t->name)) t->flags |= GLM_FLAG_OUTPUT;
    }
    GLM_TRY(run(step, tokens, n, n_past_, nullptr));
    const Rank& rank0 = ranks_.front();
    if (logits) read_logits(step, *logits);
    if (greedy) *greedy = read_greedy(step);
    // fg.hidden is always a graph output (the MTP draft consumes it): reading it costs one copy.
    if (hidden) read_f32(rank0, fg0.hidden, *hidden, /*append=*/true);
    if (capture) {
        auto read_i32 = [&](glm_tensor* t) {
            std::vector<std::vector<int32_t>> rows;
            if (!t) return rows;
            std::vector<int32_t> all(static_cast<size_t>(glm_nelements(t)));
            rank0.backend->tensor_get(t, all.data(), 0, all.size() * 4);
            for (int64_t c = 0; c < t->ne[1]; ++c)
                rows.emplace_back(all.begin() + c * t->ne[0], all.begin() + (c + 1) * t->ne[0]);
            return rows;
        };
        for (int64_t il = 0; il < hp_.n_layer; ++il) {
            auto topk = read_i32(fg0.layer_topk[size_t(il)]);
            // The selection may hold future (masked) slots for early positions; only causal ones count.
            for (size_t s = 0; s < topk.size(); ++s)
                topk[s].erase(std::remove_if(topk[s].begin(), topk[s].end(),
                                             [&](int32_t t) { return t < 0 || t > n_past_ + int64_t(s); }),
                              topk[s].end());
            if (topk.empty()) {
                // Dense step: every causal key of each position, as the reference's top-k returns.
                for (int64_t s = 0; s < n; ++s) {
                    std::vector<int32_t> all_keys(static_cast<size_t>(n_past_ + s + 1));
                    for (size_t t = 0; t < all_keys.size(); ++t) all_keys[t] = int32_t(t);
                    topk.push_back(std::move(all_keys));
                }
            }
            capture->topk.push_back(std::move(topk));
            capture->experts.push_back(read_i32(fg0.layer_experts[size_t(il)]));
            capture->layer_out.emplace_back();
            read_f32(rank0, fg0.layer_out[size_t(il)], capture->layer_out.back(), /*append=*/false);
        }
        read_f32(rank0, fg0.hidden, capture->hidden, /*append=*/true);
    }
    if (!params_.dump_names.empty()) GLM_TRY(dump(step.ctx.front()));
    n_past_ += n;
    return {};
}

Status Session::dump(const glm_context& ctx) {
    for (const glm_tensor& t : ctx.tensors()) {
        if (!(t.flags & GLM_FLAG_OUTPUT) || t.type != GLM_TYPE_F32 || !t.data) continue;
        if (std::find(params_.dump_names.begin(), params_.dump_names.end(), t.name) == params_.dump_names.end())
            continue;
        std::vector<float> data;
        read_f32(ranks_.front(), &t, data, /*append=*/false);
        std::vector<int64_t> shape;
        for (int i = 3; i >= 0; --i)
            if (t.ne[i] > 1 || !shape.empty() || i == 0) shape.push_back(t.ne[i]);
        const std::string path = fmt::format("{}/{}.pos{}.npy", params_.dump_dir, t.name, n_past_);
        GLM_TRY(npy_write_f32(path, data.data(), shape));
    }
    return {};
}

Status Session::eval_draft(const int32_t* tokens, const float* prev_hidden, int64_t n, int64_t pos,
                           std::vector<float>* logits, std::vector<float>* hidden) {
    if (!has_draft()) return Status::bad_input("this model has no MTP layer (model.layers.N with N = num_hidden_layers)");
    if (n < 1 || n > params_.n_ubatch || pos < 0 || pos + n > params_.n_ctx)
        return Status::bad_input("draft step of {} tokens at position {} does not fit the context ({})", n, pos, params_.n_ctx);
    Step step;
    build(step, GraphKind::draft, n, pos, options(ranks_.front(), false, false, false));
    GLM_TRY(run(step, tokens, n, pos, prev_hidden));
    if (logits) read_logits(step, *logits);
    if (hidden) read_f32(ranks_.front(), step.fg.front().hidden, *hidden, /*append=*/false);
    return {};
}

Status Session::run(Step& step, const int32_t* tokens, int64_t n, int64_t pos, const float* prev_hidden) {
    std::vector<int32_t> positions(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) positions[size_t(i)] = int32_t(pos + i);
    std::vector<glm_backend*> backends;
    std::vector<const glm_graph*> graphs;
    for (size_t r = 0; r < ranks_.size(); ++r) {
        const Rank& rank = ranks_[r];
        const ForwardGraph& fg = step.fg[r];
        glm_arena_allocate(fg.graph, rank.arena);
        rank.backend->tensor_set(fg.tokens, tokens, 0, size_t(n) * 4);
        rank.backend->tensor_set(fg.positions, positions.data(), 0, size_t(n) * 4);
        if (fg.prev_hidden) rank.backend->tensor_set(fg.prev_hidden, prev_hidden, 0, size_t(n * hp_.n_embd) * 4);
        backends.push_back(rank.backend);
        graphs.push_back(&fg.graph);
    }
    GLM_TRY(glm_tp_compute(backends, graphs, comm_));
    for (const Rank& rank : ranks_) rank.backend->synchronize();
    return {};
}

void Session::read_f32(const Rank& rank, const glm_tensor* t, std::vector<float>& out, bool append) const {
    const size_t at = append ? out.size() : 0, n = size_t(glm_nelements(t));
    out.resize(at + n);
    rank.backend->tensor_get(t, out.data() + at, 0, n * sizeof(float));
}

void Session::read_logits(const Step& step, std::vector<float>& out) const {
    if (ranks_.size() == 1) return read_f32(ranks_.front(), step.fg.front().logits, out, /*append=*/false);
    const int64_t cols = step.fg.front().logits->ne[1];
    out.assign(size_t(hp_.n_vocab * cols), 0.0f);
    std::vector<float> part;
    for (size_t r = 0; r < ranks_.size(); ++r) {
        const glm_tensor* t = step.fg[r].logits;
        read_f32(ranks_[r], t, part, /*append=*/false);
        for (int64_t c = 0; c < cols; ++c)
            std::copy_n(part.data() + c * t->ne[0], t->ne[0], out.data() + c * hp_.n_vocab + ranks_[r].vocab_offset);
    }
}

int32_t Session::read_greedy(const Step& step) const {
    // Ranks hold ascending vocabulary ranges: keep the first rank's pair on ties (the first maximum).
    float best = 0.0f;
    int32_t id = -1;
    for (size_t r = 0; r < ranks_.size(); ++r) {
        const glm_tensor* t = step.fg[r].max_arg;
        GLM_ASSERT(t);
        float pair[2];
        ranks_[r].backend->tensor_get(t, pair, size_t(t->ne[1] - 1) * t->nb[1], sizeof(pair));
        if (id < 0 || pair[0] > best) best = pair[0], id = int32_t(pair[1]);
    }
    return id;
}
