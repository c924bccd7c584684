#include "engine/weights.h"

#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "engine/progress.h"

Status make_hparams(const ModelConfig& c, const std::string& index_pattern, ModelHparams& hp) {
    hp.n_vocab = c.vocab_size;
    hp.n_embd = c.hidden_size;
    hp.n_layer = c.num_hidden_layers;
    hp.n_dense_layers = c.first_k_dense_replace;
    hp.n_ff_dense = c.intermediate_size;
    hp.n_ff_expert = c.moe_intermediate_size;
    hp.n_ff_shared = c.moe_intermediate_size * c.n_shared_experts;
    hp.n_expert = c.n_routed_experts;
    hp.n_expert_used = c.num_experts_per_tok;
    hp.n_group = c.n_group;
    hp.topk_group = c.topk_group;
    hp.expert_scale = c.routed_scaling_factor;
    hp.expert_norm = c.norm_topk_prob;
    hp.n_head = c.num_attention_heads;
    hp.q_lora_rank = c.q_lora_rank;
    hp.kv_lora_rank = c.kv_lora_rank;
    hp.head_dim_nope = c.qk_nope_head_dim;
    hp.head_dim_rope = c.qk_rope_head_dim;
    hp.head_dim_v = c.v_head_dim;
    hp.rope_theta = float(c.rope_theta);
    hp.rope_interleave = c.rope_interleave;
    hp.indexer_rope_interleave = c.indexer_rope_interleave;
    hp.index_n_head = c.index_n_heads;
    hp.index_head_dim = c.index_head_dim;
    hp.index_topk = c.index_topk;
    hp.norm_eps = c.rms_norm_eps;
    hp.lora_norm_eps = c.q_kv_norm_eps;
    hp.index_norm_eps = c.indexer_norm_eps;
    hp.n_ctx_train = c.max_position_embeddings;
    hp.indexer_shared.assign(size_t(c.num_hidden_layers), false);
    for (int64_t il = 0; il < c.num_hidden_layers; ++il)
        hp.indexer_shared[size_t(il)] = c.indexer_kind(il) == IndexerKind::shared;
    if (!index_pattern.empty()) {
        if (int64_t(index_pattern.size()) != c.num_hidden_layers)
            return Status::usage("--index-pattern has {} characters but the model has {} layers: give one F "
                                 "(own indexer) or S (reuse the previous layer's top-k) per layer",
                                 index_pattern.size(), c.num_hidden_layers);
        for (size_t i = 0; i < index_pattern.size(); ++i) {
            const char ch = index_pattern[i];
            if (ch != 'F' && ch != 'S')
                return Status::usage("--index-pattern: character {} is '{}'; only F and S are allowed", i + 1, ch);
            hp.indexer_shared[i] = ch == 'S';
        }
    }
    if (hp.n_layer > 0 && hp.indexer_shared[0])
        return Status::usage("index pattern: layer 0 cannot be S (shared): there is no earlier layer to reuse");
    if (c.scoring_func != "sigmoid")
        return Status::bad_input("config.json: scoring_func '{}' is not supported (only sigmoid)", c.scoring_func);
    return {};
}

namespace {

// The weight buffer is laid out in one pass that either measures (buffer == null) or places and
// uploads; both walk the same code so the sizes cannot disagree.
class WeightPlacer {
public:
    WeightPlacer(glm_backend* backend, glm_context& ctx, glm_buffer* buffer, ProgressBar* progress = nullptr)
        : backend_(backend), ctx_(ctx), buffer_(buffer), progress_(progress) {}
    size_t used() const { return offset_; }

    // A plain tensor from a record; HF shape [a, b] becomes ne {b, a}.
    glm_tensor* record(const TensorRecord* r) {
        if (!r) return nullptr;
        int64_t ne[4] = {1, 1, 1, 1};
        const int n = int(r->shape.size());
        for (int i = 0; i < n; ++i) ne[i] = r->shape[size_t(n - 1 - i)];
        glm_tensor* t = ctx_.new_tensor(r->dtype, std::max(n, 1), ne);
        glm_set_name(t, r->name);
        place(t, r->data, r->nbytes);
        return t;
    }

    glm_tensor* linear(const LinearWeight& w) {
        if (!w.present()) return nullptr;
        if (w.is_nvfp4()) {
            glm_tensor* t = ctx_.new_nvfp4(w.in, w.out, 1);
            glm_set_name(t, w.name + ".weight");
            place(t, w.data, w.nbytes);
            place(t->block_scale, w.scales, w.scales_nbytes);
            place(t->global_scale, &w.weight_scale_2, sizeof(float));
            return t;
        }
        glm_tensor* t = ctx_.new_tensor_2d(w.dtype, w.in, w.out);
        glm_set_name(t, w.name + ".weight");
        place(t, w.data, w.nbytes);
        return t;
    }

    // Routed experts of one projection stacked into [in, out, E].
    glm_tensor* experts(const std::vector<ExpertWeights>& experts, LinearWeight ExpertWeights::*which,
                        const std::string& name) {
        const LinearWeight& first = experts.front().*which;
        const int64_t E = int64_t(experts.size());
        glm_tensor* t = first.is_nvfp4() ? ctx_.new_nvfp4(first.in, first.out, E)
                                         : ctx_.new_tensor_3d(first.dtype, first.in, first.out, E);
        glm_set_name(t, name);
        place(t, nullptr, 0);
        if (t->block_scale) place(t->block_scale, nullptr, 0);
        if (t->global_scale) place(t->global_scale, nullptr, 0);
        if (!buffer_) return t;
        std::vector<float> global(static_cast<size_t>(E));
        for (int64_t e = 0; e < E; ++e) {
            const LinearWeight& w = experts[size_t(e)].*which;
            GLM_ASSERT(w.is_nvfp4() == first.is_nvfp4() && w.in == first.in && w.out == first.out);
            backend_->tensor_set(t, w.data, size_t(e) * t->nb[2], w.nbytes);
            if (t->block_scale) backend_->tensor_set(t->block_scale, w.scales, size_t(e) * t->block_scale->nb[2], w.scales_nbytes);
            global[size_t(e)] = w.weight_scale_2;
            if (progress_) progress_->add(w.nbytes + w.scales_nbytes);
        }
        if (t->global_scale) backend_->tensor_set(t->global_scale, global.data(), 0, global.size() * sizeof(float));
        return t;
    }

private:
    void place(glm_tensor* t, const void* data, size_t nbytes) {
        offset_ = (offset_ + 255) / 256 * 256;
        const size_t size = glm_nbytes(t);
        if (buffer_) {
            glm_place(t, buffer_, offset_);
            if (data) {
                GLM_ASSERT(nbytes == size);
                backend_->tensor_set(t, data, 0, nbytes);
                if (progress_) progress_->add(nbytes);
            }
        }
        t->flags |= GLM_FLAG_WEIGHT;
        offset_ += size;
    }

    glm_backend* backend_;
    glm_context& ctx_;
    glm_buffer* buffer_;
    ProgressBar* progress_;
    size_t offset_ = 0;
};

// Reading the shards is what a large load waits on: several threads touch the pages of every
// tensor (in upload order) so the page cache fills in parallel while the uploader copies.
class Prefetcher {
public:
    explicit Prefetcher(const ModelWeights& ck) {
        collect(ck);
        const unsigned n = std::max(2u, std::min(8u, std::thread::hardware_concurrency()));
        for (unsigned i = 0; i < n; ++i) threads_.emplace_back([this] { run(); });
    }
    ~Prefetcher() {
        stop_ = true;
        for (std::thread& t : threads_) t.join();
    }

private:
    void add(const uint8_t* p, size_t n) {
        if (p && n) ranges_.push_back({p, n});
    }
    void add(const LinearWeight& w) {
        add(w.data, w.nbytes);
        add(w.scales, w.scales_nbytes);
    }
    void collect(const ModelWeights& ck) {
        if (ck.embed_tokens) add(ck.embed_tokens->data, ck.embed_tokens->nbytes);
        add(ck.lm_head);
        for (const LayerWeights& L : ck.layers) {
            for (const LinearWeight* w : {&L.q_a_proj, &L.q_b_proj, &L.kv_a_proj_with_mqa, &L.kv_b_proj, &L.o_proj,
                                          &L.mlp_gate, &L.mlp_up, &L.mlp_down, &L.shared_gate, &L.shared_up,
                                          &L.shared_down, &L.indexer_wq_b, &L.indexer_wk, &L.indexer_weights_proj})
                add(*w);
            for (const ExpertWeights& e : L.experts) {
                add(e.gate);
                add(e.up);
                add(e.down);
            }
        }
    }
    void run() {
        const size_t page = size_t(sysconf(_SC_PAGESIZE));
        for (size_t i = next_++; i < ranges_.size() && !stop_; i = next_++) {
            volatile uint8_t sink = 0;
            for (size_t off = 0; off < ranges_[i].second && !stop_; off += page) sink = sink + ranges_[i].first[off];
            (void)sink;
        }
    }
    std::vector<std::pair<const uint8_t*, size_t>> ranges_;
    std::vector<std::thread> threads_;
    std::atomic<size_t> next_{0};
    std::atomic<bool> stop_{false};
};

Status check_experts(const LayerWeights& L) {
    const bool nvfp4 = L.experts.front().gate.is_nvfp4();
    for (const ExpertWeights& e : L.experts)
        for (const LinearWeight* w : {&e.gate, &e.up, &e.down})
            if (w->is_nvfp4() != nvfp4 || (!nvfp4 && w->dtype != L.experts.front().gate.dtype))
                return Status::bad_input("{}: experts of one layer mix storage formats ({}), which glmrun cannot "
                                         "stack; re-export the checkpoint with one format per layer",
                                         w->name, w->is_nvfp4() ? "nvfp4" : glm_type_name(w->dtype));
    return {};
}

void map_all(WeightPlacer& p, const ModelConfig& config, const ModelWeights& ck, ModelTensors& out) {
    out.tok_embd = p.record(ck.embed_tokens);
    out.out_norm = p.record(ck.norm);
    out.lm_head = p.linear(ck.lm_head);
    out.layers.clear();
    out.has_mtp = false;
    for (const LayerWeights& L : ck.layers) {
        LayerTensors t;
        t.attn_norm = p.record(L.input_layernorm);
        t.ffn_norm = p.record(L.post_attention_layernorm);
        t.q_a = p.linear(L.q_a_proj);
        t.q_a_norm = p.record(L.q_a_layernorm);
        t.q_b = p.linear(L.q_b_proj);
        t.kv_a = p.linear(L.kv_a_proj_with_mqa);
        t.kv_a_norm = p.record(L.kv_a_layernorm);
        t.kv_b = p.linear(L.kv_b_proj);
        t.o = p.linear(L.o_proj);
        if (L.has_indexer) {
            t.idx_wq_b = p.linear(L.indexer_wq_b);
            t.idx_wk = p.linear(L.indexer_wk);
            t.idx_weights = p.linear(L.indexer_weights_proj);
            t.idx_k_norm = p.record(L.indexer_k_norm_weight);
            t.idx_k_norm_bias = p.record(L.indexer_k_norm_bias);
        }
        if (!L.is_moe) {
            t.ffn_gate = p.linear(L.mlp_gate);
            t.ffn_up = p.linear(L.mlp_up);
            t.ffn_down = p.linear(L.mlp_down);
        } else {
            t.router = p.record(L.router_weight);
            t.router_bias = p.record(L.router_bias);
            const std::string prefix = fmt::format("blk.{}.", L.index);
            t.exp_gate = p.experts(L.experts, &ExpertWeights::gate, prefix + "exp_gate");
            t.exp_up = p.experts(L.experts, &ExpertWeights::up, prefix + "exp_up");
            t.exp_down = p.experts(L.experts, &ExpertWeights::down, prefix + "exp_down");
            t.shexp_gate = p.linear(L.shared_gate);
            t.shexp_up = p.linear(L.shared_up);
            t.shexp_down = p.linear(L.shared_down);
        }
        if (L.is_mtp) {
            t.mtp_enorm = p.record(L.enorm);
            t.mtp_hnorm = p.record(L.hnorm);
            t.mtp_eh_proj = p.linear(L.eh_proj);
            t.mtp_head_norm = p.record(L.shared_head_norm);
            if (!out.has_mtp) {
                out.has_mtp = true;
                out.mtp = t;
            }
            continue;
        }
        out.layers.push_back(t);
    }
    (void)config;
}

}  // namespace

size_t weight_buffer_bytes(const ModelConfig& config, const ModelWeights& ckpt) {
    glm_context ctx;
    ModelTensors tensors;
    WeightPlacer measure(nullptr, ctx, nullptr);
    map_all(measure, config, ckpt, tensors);
    return measure.used();
}

Status upload_weights(const ModelConfig& config, const ModelWeights& ckpt, glm_backend* backend, glm_context& ctx,
                      ModelTensors& out, glm_buffer** buffer, bool show_progress) {
    for (const LayerWeights& L : ckpt.layers)
        if (L.is_moe && !L.experts.empty()) GLM_TRY(check_experts(L));
    for (const LayerWeights& L : ckpt.layers)
        for (const LinearWeight* w : {&L.q_a_proj, &L.q_b_proj, &L.kv_a_proj_with_mqa, &L.kv_b_proj, &L.o_proj})
            if (w->is_nvfp4())
                return Status::bad_input("{}: NVFP4 attention projections are not supported yet (only routed experts "
                                         "may be NVFP4); use a checkpoint with BF16 attention", w->name);
    const size_t bytes = weight_buffer_bytes(config, ckpt);
    GLM_TRY(backend->alloc_buffer(bytes, "weights", buffer));
    ProgressBar progress(fmt::format("loading weights to {}", backend->name()), bytes, show_progress);
    Prefetcher prefetch(ckpt);
    WeightPlacer placer(backend, ctx, *buffer, &progress);
    map_all(placer, config, ckpt, out);
    progress.finish();
    GLM_ASSERT(placer.used() == bytes);
    return {};
}

Status open_model(const std::string& dir, const std::string& index_pattern, LoadedModel& out) {
    GLM_TRY(Checkpoint::open(dir, out.checkpoint));
    GLM_TRY(out.checkpoint.bind(out.records));
    return make_hparams(out.checkpoint.config(), index_pattern, out.hp);
}

Status upload_model(glm_backend* backend, bool show_progress, LoadedModel& model) {
    return upload_weights(model.checkpoint.config(), model.records, backend, model.ctx, model.tensors, &model.weights,
                          show_progress);
}

Status load_model(const std::string& dir, const std::string& index_pattern, glm_backend* backend, LoadedModel& out) {
    GLM_TRY(open_model(dir, index_pattern, out));
    return upload_model(backend, /*show_progress=*/false, out);
}
