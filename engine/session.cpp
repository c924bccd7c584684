#include "engine/session.h"

#include <algorithm>
#include <unordered_set>

#include "engine/npy.h"
#include "ggml-like/arena.h"

Session::Session(glm_backend* backend, const ModelHparams& hp, const ModelTensors& weights,
                 const SessionParams& params)
    : backend_(backend), hp_(hp), weights_(weights), params_(params) {}

Status Session::init() {
    // ---- KV cache: one latent row and one indexer key per position and layer
    kv_.type = params_.kv_type;
    kv_.n_ctx = params_.n_ctx;
    size_t offset = 0;
    std::vector<std::pair<glm_tensor*, size_t>> placement;
    auto add = [&](int64_t ne0, const std::string& name) {
        glm_tensor* t = glm_set_name(cache_ctx_.new_tensor_2d(params_.kv_type, ne0, params_.n_ctx), name);
        offset = (offset + 255) / 256 * 256;
        placement.emplace_back(t, offset);
        offset += glm_nbytes(t);
        return t;
    };
    for (int64_t il = 0; il < hp_.n_layer; ++il) {
        kv_.latent.push_back(add(hp_.kv_row(), fmt::format("cache.{}.latent", il)));
        kv_.index.push_back(hp_.indexer_shared[size_t(il)] ? nullptr
                                                           : add(hp_.index_head_dim, fmt::format("cache.{}.index", il)));
    }
    if (weights_.has_mtp) {
        kv_.latent.push_back(add(hp_.kv_row(), "cache.mtp.latent"));
        kv_.index.push_back(add(hp_.index_head_dim, "cache.mtp.index"));
    }
    kv_bytes_ = offset;
    GLM_TRY(backend_->alloc_buffer(std::max<size_t>(offset, 1), "kv", &kv_buffer_));
    for (auto& [t, off] : placement) glm_place(t, kv_buffer_, off);
    // Unwritten cache rows are never read (causal mask); zero them anyway so a bug reads zeros, not junk.
    backend_->buffer_clear(kv_buffer_, 0);

    // ---- activation arena: the worst case is the largest chunk at the end of the context
    const int64_t n_tokens = std::min(params_.n_ubatch, params_.n_ctx);
    glm_context ctx;
    ForwardOptions opt;
    opt.attn = params_.attn;
    opt.all_logits = params_.logits_all;
    opt.keep_intermediates = true;
    size_t worst = 0;
    // Both the full-chunk prefill and a single-token decode graph (different attention forms).
    for (int64_t n : {n_tokens, std::min(n_tokens, k_max_absorbed_batch), int64_t(1)}) {
        ForwardGraph fg = build_forward(ctx, hp_, weights_, kv_, n, params_.n_ctx - n, opt);
        worst = std::max(worst, glm_arena_measure(fg.graph).size);
        if (weights_.has_mtp) {
            ForwardGraph draft = build_mtp(ctx, hp_, weights_, kv_, n, params_.n_ctx - n, opt);
            worst = std::max(worst, glm_arena_measure(draft.graph).size);
        }
    }
    // The speculative verify graph: a few positions, each with its logits.
    if (params_.n_verify > 0) {
        const int64_t n = std::min(params_.n_verify, params_.n_ctx);
        opt.all_logits = true;
        ForwardGraph fg = build_forward(ctx, hp_, weights_, kv_, n, params_.n_ctx - n, opt);
        worst = std::max(worst, glm_arena_measure(fg.graph).size);
    }
    return backend_->alloc_buffer(worst, "activations", &arena_);
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

Status Session::eval_verify(const int32_t* tokens, int64_t n, std::vector<float>* logits,
                            std::vector<float>* hidden) {
    // The arena was measured for this batch size with every position's logits (init).
    GLM_ASSERT(n >= 1 && n <= params_.n_verify);
    GLM_TRY(check_tokens(tokens, n));
    if (hidden) hidden->clear();
    return eval_chunk(tokens, n, logits, nullptr, hidden, true);
}

Status Session::eval_chunk(const int32_t* tokens, int64_t n, std::vector<float>* logits, EvalCapture* capture,
                           std::vector<float>* hidden, bool all_logits) {
    glm_context ctx;
    ForwardOptions opt;
    opt.attn = params_.attn;
    opt.all_logits = all_logits;
    opt.keep_intermediates = capture != nullptr;
    ForwardGraph fg = build_forward(ctx, hp_, weights_, kv_, n, n_past_, opt);
    if (!params_.dump_names.empty()) {
        const std::unordered_set<std::string> wanted(params_.dump_names.begin(), params_.dump_names.end());
        for (glm_tensor* t : fg.graph.nodes)
            if (wanted.count(t->name)) t->flags |= GLM_FLAG_OUTPUT;
    }
    GLM_TRY(run(fg, tokens, n, n_past_, nullptr));
    if (logits) read_f32(fg.logits, *logits, /*append=*/false);
    // fg.hidden is always a graph output (the MTP draft consumes it): reading it costs one copy.
    if (hidden) read_f32(fg.hidden, *hidden, /*append=*/true);
    if (capture) {
        auto read_i32 = [&](glm_tensor* t) {
            std::vector<std::vector<int32_t>> rows;
            if (!t) return rows;
            std::vector<int32_t> all(static_cast<size_t>(glm_nelements(t)));
            backend_->tensor_get(t, all.data(), 0, all.size() * 4);
            for (int64_t c = 0; c < t->ne[1]; ++c)
                rows.emplace_back(all.begin() + c * t->ne[0], all.begin() + (c + 1) * t->ne[0]);
            return rows;
        };
        for (int64_t il = 0; il < hp_.n_layer; ++il) {
            auto topk = read_i32(fg.layer_topk[size_t(il)]);
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
            capture->experts.push_back(read_i32(fg.layer_experts[size_t(il)]));
            capture->layer_out.emplace_back();
            read_f32(fg.layer_out[size_t(il)], capture->layer_out.back(), /*append=*/false);
        }
        read_f32(fg.hidden, capture->hidden, /*append=*/true);
    }
    if (!params_.dump_names.empty()) GLM_TRY(dump(ctx));
    n_past_ += n;
    return {};
}

Status Session::dump(const glm_context& ctx) {
    for (const glm_tensor& t : ctx.tensors()) {
        if (!(t.flags & GLM_FLAG_OUTPUT) || t.type != GLM_TYPE_F32 || !t.data) continue;
        if (std::find(params_.dump_names.begin(), params_.dump_names.end(), t.name) == params_.dump_names.end())
            continue;
        std::vector<float> data;
        read_f32(&t, data, /*append=*/false);
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
    if (!weights_.has_mtp) return Status::bad_input("this model has no MTP layer (model.layers.N with N = num_hidden_layers)");
    if (n < 1 || n > params_.n_ubatch || pos < 0 || pos + n > params_.n_ctx)
        return Status::bad_input("draft step of {} tokens at position {} does not fit the context ({})", n, pos, params_.n_ctx);
    glm_context ctx;
    ForwardOptions opt;
    opt.attn = params_.attn;
    ForwardGraph fg = build_mtp(ctx, hp_, weights_, kv_, n, pos, opt);
    GLM_TRY(run(fg, tokens, n, pos, prev_hidden));
    if (logits) read_f32(fg.logits, *logits, /*append=*/false);
    if (hidden) read_f32(fg.hidden, *hidden, /*append=*/false);
    return {};
}

Status Session::run(const ForwardGraph& fg, const int32_t* tokens, int64_t n, int64_t pos, const float* prev_hidden) {
    glm_arena_allocate(fg.graph, arena_);
    std::vector<int32_t> positions(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) positions[size_t(i)] = int32_t(pos + i);
    backend_->tensor_set(fg.tokens, tokens, 0, size_t(n) * 4);
    backend_->tensor_set(fg.positions, positions.data(), 0, size_t(n) * 4);
    if (fg.prev_hidden) backend_->tensor_set(fg.prev_hidden, prev_hidden, 0, size_t(n * hp_.n_embd) * 4);
    GLM_TRY(backend_->graph_compute(fg.graph));
    backend_->synchronize();
    return {};
}

void Session::read_f32(const glm_tensor* t, std::vector<float>& out, bool append) const {
    const size_t at = append ? out.size() : 0, n = size_t(glm_nelements(t));
    out.resize(at + n);
    backend_->tensor_get(t, out.data() + at, 0, n * sizeof(float));
}
