#include "engine/session.h"

#include <algorithm>
#include <chrono>
#include <set>
#include <unordered_set>

#include "engine/npy.h"

Session::Session(glm_backend* backend, const ModelHparams& hp, const ModelTensors& weights,
                 const SessionParams& params)
    : Session(std::vector<SessionRank>{{backend, &weights}}, nullptr, hp, params) {}

Session::Session(std::vector<SessionRank> ranks, glm_comm* comm, const ModelHparams& hp, const SessionParams& params)
    : comm_(comm), hp_(hp), params_(params) {
    // No communicator only for a memory estimate (no backends) or one rank.
    GLM_ASSERT(!ranks.empty() && (ranks.size() == 1 || comm || !ranks.front().backend));
    const int n = int(ranks.size());
    int32_t offset = 0;
    for (const SessionRank& sr : ranks) {
        Rank& r = ranks_.emplace_back();
        r.index = int(ranks_.size()) - 1;
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
    opt.rank = rank.index;
    opt.vocab_offset = rank.vocab_offset;
    opt.max_arg = max_arg;
    return opt;
}

// Every position's logits (a verify step's; the same graph as the last position's for one token), and
// the (max, id) pairs for greedy sampling: one recorded graph serves every caller of its size.
ForwardOptions Session::recorded_options(const Rank& rank) const {
    return options(rank, /*all_logits=*/true, /*keep=*/false, /*max_arg=*/true);
}

// The cache tensors of a rank (unplaced) and where each goes in its buffer; the buffer's size.
size_t Session::make_caches(Rank& rank, std::vector<std::pair<glm_tensor*, size_t>>& placement) {
    // One latent row and one indexer key per position and layer. Every rank computes the same latent
    // rows (q_a / kv_a are replicated): each keeps a full copy, or its positions' share when the
    // cache is split (model.h, KvCache).
    const int n = int(ranks_.size());
    rank.kv = KvCache{};
    rank.kv.type = params_.kv_type;
    rank.kv.n_ctx = params_.n_ctx;
    rank.kv.split = params_.kv_split && n > 1;
    rank.kv.n_slots = rank.kv.split ? (params_.n_ctx + n - 1) / n : params_.n_ctx;
    size_t offset = 0;
    placement.clear();
    auto add = [&](int64_t ne0, const std::string& name) {
        glm_tensor* t = glm_set_name(rank.cache_ctx.new_tensor_2d(params_.kv_type, ne0, rank.kv.n_slots), name);
        t->flags |= GLM_FLAG_CACHE;
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
    return offset;
}

// The activation arena a rank needs: the largest graph any step builds, each measured at the end of
// the context (the largest cache views): prefill chunks and the single-token step, each verify size
// with every position's logits, and the MTP layer at each of those sizes (the prompt's rows in chunks,
// a round's accepted rows, draft steps). The recorded graphs are measured as record() builds them
// (same options, same position), so each fits.
size_t Session::measure_arena(Rank& rank) const {
    glm_context ctx;
    size_t worst = 0;
    // Each size at both ends of the context: the graph's nodes differ with and without a DSA
    // selection (T > index_topk), and the best-fit packing of a different node list can peak
    // higher even when its tensors are smaller.
    auto measure_at = [&](int64_t n, int64_t pos, const ForwardOptions& opt) {
        ForwardGraph fg = build_forward(ctx, rank.hp, *rank.weights, rank.kv, n, pos, opt);
        worst = std::max(worst, glm_arena_measure(fg.graph).size);
        if (rank.weights->has_mtp) {
            ForwardGraph draft = build_mtp(ctx, rank.hp, *rank.weights, rank.kv, n, pos, opt);
            worst = std::max(worst, glm_arena_measure(draft.graph).size);
        }
    };
    auto measure = [&](int64_t n, const ForwardOptions& opt) {
        for (int64_t pos : {params_.n_ctx - n, int64_t(0)}) measure_at(n, pos, opt);
    };
    const int64_t n_chunk = std::min(params_.n_ubatch, params_.n_ctx);
    std::set<std::pair<int64_t, bool>> eager;  // (tokens, all_logits)
    for (int64_t n : {n_chunk, std::min(n_chunk, k_max_absorbed_batch), int64_t(1)})
        eager.emplace(n, params_.logits_all);
    for (int64_t n = 1; n <= std::min(params_.n_verify, params_.n_ctx); ++n) eager.emplace(n, true);
    // Dumped intermediates live to the end of the graph, as captured layer outputs do.
    const bool keep_all = !params_.dump_names.empty();
    for (const auto& [n, all_logits] : eager)
        measure(n, options(rank, all_logits, /*keep=*/keep_all, /*max_arg=*/true));
    if (params_.n_capture > 0)
        measure(std::min(params_.n_capture, n_chunk), options(rank, params_.logits_all, /*keep=*/true, /*max_arg=*/true));
    for (int64_t n = 1; n <= max_recorded(); ++n) {
        measure(n, recorded_options(rank));
        if (n <= hp_.index_topk && short_twin(hp_.index_topk)) measure_at(n, hp_.index_topk - n, recorded_options(rank));
    }
    // Best-fit packing is not monotonic in the batch size: a size between the measured ones can
    // peak a little higher (seen: 4% on a small fixture). An eighth more covers it.
    return worst + worst / 8 + (size_t(64) << 10);
}

size_t Session::arena_estimate() {
    std::vector<std::pair<glm_tensor*, size_t>> placement;
    make_caches(ranks_.front(), placement);
    return measure_arena(ranks_.front());
}

Status Session::init() {
    for (Rank& rank : ranks_) {
        std::vector<std::pair<glm_tensor*, size_t>> placement;
        rank.kv_bytes = make_caches(rank, placement);
        GLM_TRY(rank.backend->alloc_buffer(std::max<size_t>(rank.kv_bytes, 1), "kv", &rank.kv_buffer));
        for (auto& [t, off] : placement) glm_place(t, rank.kv_buffer, off);
        // Unwritten cache rows are never read (causal mask); zero them anyway so a bug reads zeros, not junk.
        rank.backend->buffer_clear(rank.kv_buffer, 0);
        GLM_TRY(rank.backend->alloc_buffer(measure_arena(rank), "activations", &rank.arena));
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
        std::vector<int32_t> ids;
        GLM_TRY(eval_chunk(tokens + done, chunk, nullptr, nullptr, nullptr, false, last ? &ids : nullptr));
        if (last) *next = ids.back();
        done += chunk;
    }
    return {};
}

Status Session::eval_verify(const int32_t* tokens, int64_t n, std::vector<float>* logits,
                            std::vector<float>* hidden) {
    return verify(tokens, n, logits, nullptr, hidden);
}

Status Session::eval_verify_greedy(const int32_t* tokens, int64_t n, std::vector<int32_t>* ids,
                                   std::vector<float>* hidden) {
    GLM_ASSERT(ids);
    return verify(tokens, n, nullptr, ids, hidden);
}

Status Session::verify(const int32_t* tokens, int64_t n, std::vector<float>* logits, std::vector<int32_t>* greedy,
                       std::vector<float>* hidden) {
    // The arena was measured for this batch size with every position's logits (init).
    GLM_ASSERT(n >= 1 && n <= params_.n_verify);
    GLM_TRY(check_tokens(tokens, n));
    if (hidden) hidden->clear();
    return eval_chunk(tokens, n, logits, nullptr, hidden, true, greedy);
}

void Session::build_graphs(std::deque<glm_context>& contexts, std::vector<ForwardGraph>& graphs, GraphKind kind,
                           int64_t n, int64_t pos, const ForwardOptions& base) {
    contexts.clear();
    graphs.clear();
    for (Rank& rank : ranks_) {
        ForwardOptions opt = base;
        opt.vocab_offset = rank.vocab_offset;
        opt.rank = rank.index;
        glm_context& ctx = contexts.emplace_back();
        graphs.push_back(kind == GraphKind::forward ? build_forward(ctx, rank.hp, *rank.weights, rank.kv, n, pos, opt)
                                                    : build_mtp(ctx, rank.hp, *rank.weights, rank.kv, n, pos, opt));
    }
    if (kind == GraphKind::forward && !params_.dump_names.empty()) {
        const std::unordered_set<std::string> wanted(params_.dump_names.begin(), params_.dump_names.end());
        for (glm_tensor* t : graphs.front().graph.nodes)
            if (wanted.count(t->name)) t->flags |= GLM_FLAG_OUTPUT;
    }
}

void Session::build(Step& step, GraphKind kind, int64_t n, int64_t pos, const ForwardOptions& base) {
    build_graphs(step.ctx, step.fg, kind, n, pos, base);
    // Only a DSA selection makes arena tensors grow with the context (the indexer's scores); the end
    // of the context has one whenever this step has one.
    const int64_t end = params_.n_ctx - n;
    step.reference = nullptr;
    if (params_.attn != AttnMode::dsa || pos + n <= hp_.index_topk || pos == end) return;
    const ReferenceKey key{int(kind), n, base.all_logits, base.keep_intermediates, base.max_arg};
    auto [it, added] = references_.try_emplace(key);
    Reference& ref = it->second;
    if (added) {
        build_graphs(ref.step.ctx, ref.step.fg, kind, n, end, base);
        for (const ForwardGraph& fg : ref.step.fg) ref.plans.push_back(glm_arena_measure(fg.graph));
    }
    step.reference = &ref;
}

// Steps of one token (decode, a draft step) and the small batches of a speculative round (verify, the
// MTP rows of the accepted drafts) up to n_verify: the batches whose launch overhead a recording
// removes (prefill chunks are few, large and launch-bound only in their small kernels).
int64_t Session::max_recorded() const {
    return std::min({std::max<int64_t>(params_.n_verify, 1), k_max_absorbed_batch, params_.n_ctx});
}

bool Session::can_replay(int64_t n) const {
    if (!params_.replay_decode || !params_.dump_names.empty() || n < 1 || n > max_recorded()) return false;
    for (const Rank& rank : ranks_)
        if (!rank.backend->supports_capture()) return false;
    // The step's all-reduces carry n hidden rows of f32 (one rank has none); with a split cache also
    // every head's absorbed query and attention partial, and the ranks' top-k (score, position) pairs;
    // with copied caches, a batch the indexer splits by queries gathers index_topk slots per query row
    // of ceil(n / ranks)-row blocks (at most 2n rows: graph.cpp, query_block).
    int64_t widest = hp_.n_embd;
    if (ranks_.front().kv.split)
        widest = std::max({widest, hp_.n_head * hp_.kv_row(), 2 * hp_.index_topk * int64_t(ranks_.size())});
    else if (ranks_.size() > 1)
        widest = std::max(widest, 2 * hp_.index_topk);
    return ranks_.size() == 1 || !comm_ || comm_->capturable(size_t(n * widest) * sizeof(float));
}

bool Session::short_twin(int64_t end) const {
    return params_.attn == AttnMode::dsa && params_.n_ctx > hp_.index_topk && end <= hp_.index_topk;
}

// Every recorded graph lives in the rank's one arena, as do the eager steps' graphs: glm_arena_allocate
// lays each graph out on its own from offset 0 (glm_arena_measure plans one graph's liveness and nothing
// else), so graph A's tensors share bytes with graph B's, inputs included. That is safe because a
// replay needs nothing the arena held before it: its only arena leaves are the inputs (tokens,
// positions, prev_hidden), which write_inputs rewrites before every replay, and every other arena tensor
// is written by one of the graph's own nodes before any node reads it (its slot is reserved from the
// node that produces it); weights and caches have buffers of their own. Steps run one at a time (each
// waits for every rank) and their outputs are read before the next step runs, so no two graphs use the
// arena at once. A graph is placed once, here: allocating another graph later places that graph's
// tensors, never these, so the addresses the capture recorded stay this graph's layout. init() measured
// each recorded shape at this position (the short twin's too), so the layout fits the arena.
Status Session::record(GraphKind kind, int64_t n, bool short_ctx, Recorded& rec) {
    // Shapes of the last n positions: cache views of every row, the DSA selection present whenever the
    // context can exceed index_topk (never in the short twin). Positions come from the input tensor at
    // each replay.
    const int64_t bound = short_ctx ? hp_.index_topk : params_.n_ctx;
    GLM_ASSERT(bound >= n);
    build(rec.step, kind, n, bound - n, recorded_options(ranks_.front()));
    std::vector<glm_backend*> backends;
    std::vector<const glm_graph*> graphs;
    for (size_t r = 0; r < ranks_.size(); ++r) {
        glm_arena_allocate(rec.step.fg[r].graph, ranks_[r].arena);
        backends.push_back(ranks_[r].backend);
        graphs.push_back(&rec.step.fg[r].graph);
    }
    for (glm_backend* b : backends) b->synchronize();
    Status st;
    size_t begun = 0;
    for (; begun < backends.size() && st.ok(); ++begun) st = backends[begun]->capture_begin();
    if (st.ok()) st = glm_tp_compute(backends, graphs, comm_);
    rec.ids.assign(backends.size(), -1);
    for (size_t r = 0; r < begun; ++r) {
        const Status end = backends[r]->capture_end(&rec.ids[r]);
        if (st.ok()) st = end;
    }
    return st;
}

Status Session::replay(GraphKind kind, const int32_t* tokens, int64_t n, int64_t pos, const float* prev_hidden,
                       const Step** replayed) {
    *replayed = nullptr;
    if (!can_replay(n)) return {};
    const bool short_ctx = short_twin(pos + n);
    auto it = recorded_.find({kind, n, short_ctx});
    if (it == recorded_.end()) {
        // After a refused capture the graphs recorded before it still replay; new shapes run eagerly.
        if (record_failed_) return {};
        it = recorded_.try_emplace({kind, n, short_ctx}).first;
        const Status st = record(kind, n, short_ctx, it->second);
        if (!st.ok()) {
            log_warn("recording the {}{} graph of {} token(s) failed ({}); running steps without replay",
                     short_ctx ? "short-context " : "", kind == GraphKind::forward ? "forward" : "MTP draft", n,
                     st.message());
            recorded_.erase(it);
            record_failed_ = true;
            return {};
        }
    }
    const Recorded& rec = it->second;
    using clock = std::chrono::steady_clock;
    const clock::time_point t0 = clock::now();
    write_inputs(rec.step, tokens, n, pos, prev_hidden);
    for (size_t r = 0; r < ranks_.size(); ++r) GLM_TRY(ranks_[r].backend->replay(rec.ids[r]));
    const clock::time_point t1 = clock::now();
    for (const Rank& rank : ranks_) rank.backend->synchronize();
    replay_time_.launch_s += std::chrono::duration<double>(t1 - t0).count();
    replay_time_.wait_s += std::chrono::duration<double>(clock::now() - t1).count();
    ++replay_time_.steps;
    *replayed = &rec.step;
    return {};
}

Status Session::eval_chunk(const int32_t* tokens, int64_t n, std::vector<float>* logits, EvalCapture* capture,
                           std::vector<float>* hidden, bool all_logits, std::vector<int32_t>* greedy) {
    // The recorded forward graphs give every position's logits (the same as the last one's for n = 1).
    if (capture && n > params_.n_capture)
        return Status::usage("a capture of {} tokens needs SessionParams::n_capture >= {} (the arena keeps room for "
                             "captures up to {} tokens)", n, n, params_.n_capture);
    const Step* step = nullptr;
    if (!capture && (n == 1 || all_logits)) GLM_TRY(replay(GraphKind::forward, tokens, n, n_past_, nullptr, &step));
    Step eager;
    if (!step) {
        build(eager, GraphKind::forward, n, n_past_,
              options(ranks_.front(), all_logits, capture != nullptr, greedy != nullptr));
        GLM_TRY(run(eager, tokens, n, n_past_, nullptr));
        step = &eager;
    }
    const ForwardGraph& fg0 = step->fg.front();
    const Rank& rank0 = ranks_.front();
    if (logits) read_logits(*step, *logits);
    if (greedy) read_greedy(*step, *greedy);
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
            auto topk = ranks_.front().kv.split ? std::vector<std::vector<int32_t>>{} : read_i32(fg0.layer_topk[size_t(il)]);
            // The selection may hold future (masked) slots for early positions; only causal ones count.
            for (size_t s = 0; s < topk.size(); ++s)
                topk[s].erase(std::remove_if(topk[s].begin(), topk[s].end(),
                                             [&](int32_t t) { return t < 0 || t > n_past_ + int64_t(s); }),
                              topk[s].end());
            if (topk.empty() && !ranks_.front().kv.split) {
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
    if (!params_.dump_names.empty()) GLM_TRY(dump(eager.ctx.front()));  // never replayed (can_replay)
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
    return draft(tokens, prev_hidden, n, pos, logits, nullptr, hidden);
}

Status Session::eval_draft_greedy(const int32_t* tokens, const float* prev_hidden, int64_t n, int64_t pos,
                                  std::vector<int32_t>* ids, std::vector<float>* hidden) {
    GLM_ASSERT(ids);
    return draft(tokens, prev_hidden, n, pos, nullptr, ids, hidden);
}

Status Session::draft(const int32_t* tokens, const float* prev_hidden, int64_t n, int64_t pos,
                      std::vector<float>* logits, std::vector<int32_t>* greedy, std::vector<float>* hidden) {
    if (!has_draft()) return Status::bad_input("this model has no MTP layer (model.layers.N with N = num_hidden_layers)");
    if (n < 1 || n > params_.n_ubatch || pos < 0 || pos + n > params_.n_ctx)
        return Status::bad_input("draft step of {} tokens at position {} does not fit the context ({})", n, pos, params_.n_ctx);
    const Step* step = nullptr;
    GLM_TRY(replay(GraphKind::draft, tokens, n, pos, prev_hidden, &step));
    Step eager;
    if (!step) {
        build(eager, GraphKind::draft, n, pos, options(ranks_.front(), false, false, greedy != nullptr));
        GLM_TRY(run(eager, tokens, n, pos, prev_hidden));
        step = &eager;
    }
    if (logits) read_logits(*step, *logits);
    if (greedy) read_greedy(*step, *greedy);
    if (hidden) read_f32(ranks_.front(), step->fg.front().hidden, *hidden, /*append=*/false);
    return {};
}

Status Session::run(Step& step, const int32_t* tokens, int64_t n, int64_t pos, const float* prev_hidden) {
    std::vector<glm_backend*> backends;
    std::vector<const glm_graph*> graphs;
    for (size_t r = 0; r < ranks_.size(); ++r) {
        if (!step.reference) glm_arena_allocate(step.fg[r].graph, ranks_[r].arena);
        else glm_arena_allocate_as(step.fg[r].graph, step.reference->step.fg[r].graph, step.reference->plans[r],
                                   ranks_[r].arena);
        backends.push_back(ranks_[r].backend);
        graphs.push_back(&step.fg[r].graph);
    }
    write_inputs(step, tokens, n, pos, prev_hidden);
    // No wait here: the host builds and plans the next step while the devices run this one (a prefill
    // chunk's graphs take the host tens of milliseconds per rank). Stream order keeps the next step's
    // input writes and kernels behind this step's; reading an output (tensor_get) waits for its rank.
    return glm_tp_compute(backends, graphs, comm_);
}

void Session::write_inputs(const Step& step, const int32_t* tokens, int64_t n, int64_t pos, const float* prev_hidden) {
    std::vector<int32_t> positions(static_cast<size_t>(n)), slots(positions.size()), last(positions.size());
    for (int64_t i = 0; i < n; ++i) positions[size_t(i)] = int32_t(pos + i);
    const int n_ranks = int(ranks_.size());
    for (size_t r = 0; r < ranks_.size(); ++r) {
        const ForwardGraph& fg = step.fg[r];
        glm_backend* b = ranks_[r].backend;
        b->tensor_set(fg.tokens, tokens, 0, size_t(n) * 4);
        b->tensor_set(fg.positions, positions.data(), 0, size_t(n) * 4);
        if (fg.kv_slots) {
            for (int64_t i = 0; i < n; ++i) {
                slots[size_t(i)] = kv_split_slot(pos + i, int(r), n_ranks);
                last[size_t(i)] = kv_split_last(pos + i, int(r), n_ranks);
            }
            b->tensor_set(fg.kv_slots, slots.data(), 0, size_t(n) * 4);
            b->tensor_set(fg.kv_last, last.data(), 0, size_t(n) * 4);
        }
        if (fg.prev_hidden) b->tensor_set(fg.prev_hidden, prev_hidden, 0, size_t(n * hp_.n_embd) * 4);
    }
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

void Session::read_greedy(const Step& step, std::vector<int32_t>& ids) const {
    // Per column, ranks hold ascending vocabulary ranges: keep the first rank's pair on ties (the first
    // maximum, as argmax()).
    const int64_t cols = step.fg.front().max_arg->ne[1];
    std::vector<float> best(static_cast<size_t>(cols), 0.0f), pairs;
    ids.assign(static_cast<size_t>(cols), -1);
    for (size_t r = 0; r < ranks_.size(); ++r) {
        const glm_tensor* t = step.fg[r].max_arg;
        GLM_ASSERT(t && t->ne[0] == 2 && t->ne[1] == cols && t->nb[1] == 2 * sizeof(float));
        read_f32(ranks_[r], t, pairs, /*append=*/false);
        for (size_t c = 0; c < size_t(cols); ++c)
            if (ids[c] < 0 || pairs[2 * c] > best[c]) best[c] = pairs[2 * c], ids[c] = int32_t(pairs[2 * c + 1]);
    }
}
