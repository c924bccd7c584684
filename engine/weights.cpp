#include "engine/weights.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
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

// The part [first, first + count) of n that rank r of n_ranks holds: even shares, the remainder to
// the first ranks (only the vocabulary may be uneven; check_tp_split guarantees the rest divides).
void share(int64_t n, TpShard shard, int64_t& first, int64_t& count) {
    const int64_t base = n / shard.n_ranks, extra = n % shard.n_ranks;
    count = base + (shard.rank < extra ? 1 : 0);
    first = shard.rank * base + std::min<int64_t>(shard.rank, extra);
}

// Rows [r0, r0 + nr) and columns [c0, c0 + nc) of a row-major matrix of `row_bytes` per row, where a
// column block of `col_bytes_num / col_bytes_den` bytes per element (1/2 for E2M1 codes, 1/16 for
// NVFP4 block scales): gathered into one contiguous staging block.
void gather(const uint8_t* data, int64_t in, int64_t r0, int64_t nr, int64_t c0, int64_t nc, size_t num, size_t den,
            std::vector<uint8_t>& out) {
    const size_t row_bytes = size_t(in) * num / den, off = size_t(c0) * num / den, len = size_t(nc) * num / den;
    out.resize(size_t(nr) * len);
    for (int64_t r = 0; r < nr; ++r) std::memcpy(out.data() + size_t(r) * len, data + size_t(r0 + r) * row_bytes + off, len);
}

// The weight buffer is laid out in one pass that either measures (buffer == null) or places and
// uploads; both walk the same code so the sizes cannot disagree.
class WeightPlacer {
public:
    WeightPlacer(glm_backend* backend, glm_context& ctx, glm_buffer* buffer, TpShard shard, uint64_t synthetic_seed,
                 ProgressBar* progress = nullptr)
        : backend_(backend), ctx_(ctx), buffer_(buffer), shard_(shard), seed_(synthetic_seed), progress_(progress) {}
    size_t used() const { return offset_; }

    // A plain (replicated) tensor from a record; HF shape [a, b] becomes ne {b, a}.
    glm_tensor* record(const TensorRecord* r, float fill_mean = 0.0f, float fill_scale = 0.02f) {
        if (!r) return nullptr;
        int64_t ne[4] = {1, 1, 1, 1};
        const int n = int(r->shape.size());
        for (int i = 0; i < n; ++i) ne[i] = r->shape[size_t(n - 1 - i)];
        glm_tensor* t = ctx_.new_tensor(r->dtype, std::max(n, 1), ne);
        glm_set_name(t, r->name);
        place(t);
        upload(t, r->data, r->nbytes, fill_mean, fill_scale, glm_fill_slice{});
        return t;
    }

    // A 2-D record split by rows (HF dim 0) like lm_head's vocabulary: each rank holds share() rows.
    glm_tensor* record_rows(const TensorRecord* r, float fill_mean, float fill_scale) {
        if (!r || shard_.n_ranks == 1) return record(r, fill_mean, fill_scale);
        GLM_ASSERT(r->shape.size() == 2);
        int64_t first = 0, count = 0;
        share(r->shape[0], shard_, first, count);
        glm_tensor* t = ctx_.new_tensor_2d(r->dtype, r->shape[1], count);
        glm_set_name(t, r->name);
        t->split = GLM_SPLIT_ROWS;
        place(t);
        const size_t row_bytes = glm_nbytes(t) / size_t(std::max<int64_t>(count, 1));
        upload(t, r->data ? r->data + size_t(first) * row_bytes : nullptr, glm_nbytes(t), fill_mean, fill_scale,
               glm_fill_slice{first, r->shape[0], 0, 0});
        return t;
    }

    glm_tensor* linear(const LinearWeight& w, glm_split split) {
        if (!w.present()) return nullptr;
        int64_t r0 = 0, nr = w.out, c0 = 0, nc = w.in;
        if (split == GLM_SPLIT_ROWS) share(w.out, shard_, r0, nr);
        if (split == GLM_SPLIT_COLS) share(w.in, shard_, c0, nc);
        glm_tensor* t = w.is_nvfp4() ? ctx_.new_nvfp4(nc, nr, 1) : ctx_.new_tensor_2d(w.dtype, nc, nr);
        glm_set_name(t, w.name + ".weight");
        t->split = split;
        place(t);
        if (t->block_scale) place(t->block_scale);
        if (t->global_scale) place(t->global_scale);
        if (!buffer_) return t;
        upload_linear(t, w, r0, nr, c0, nc, 0);
        if (t->global_scale) upload_global(t, {w.weight_scale_2}, {float(w.in)});
        return t;
    }

    // Routed experts of one projection stacked into [in, out, E], each expert split like `split`.
    glm_tensor* experts(const std::vector<ExpertWeights>& experts, LinearWeight ExpertWeights::*which, glm_split split,
                        const std::string& name) {
        const LinearWeight& first = experts.front().*which;
        const int64_t E = int64_t(experts.size());
        int64_t r0 = 0, nr = first.out, c0 = 0, nc = first.in;
        if (split == GLM_SPLIT_ROWS) share(first.out, shard_, r0, nr);
        if (split == GLM_SPLIT_COLS) share(first.in, shard_, c0, nc);
        glm_tensor* t = first.is_nvfp4() ? ctx_.new_nvfp4(nc, nr, E) : ctx_.new_tensor_3d(first.dtype, nc, nr, E);
        glm_set_name(t, name);
        t->split = split;
        place(t);
        if (t->block_scale) place(t->block_scale);
        if (t->global_scale) place(t->global_scale);
        if (!buffer_) return t;
        if (seed_) {  // one fill per stacked tensor (fast): the window applies to each expert's matrix
            upload_linear(t, first, r0, nr, c0, nc, 0);
        } else {
            for (int64_t e = 0; e < E; ++e) {
                const LinearWeight& w = experts[size_t(e)].*which;
                GLM_ASSERT(w.is_nvfp4() == first.is_nvfp4() && w.in == first.in && w.out == first.out);
                upload_linear(t, w, r0, nr, c0, nc, e);
            }
        }
        if (t->global_scale) {
            std::vector<float> global(static_cast<size_t>(E)), fan_in(static_cast<size_t>(E), float(first.in));
            for (int64_t e = 0; e < E; ++e) global[size_t(e)] = (experts[size_t(e)].*which).weight_scale_2;
            upload_global(t, global, fan_in);
        }
        return t;
    }

    // One weight over the rows of `parts` (non-null, in order) when they sit back to back in the
    // buffer with one type and row length; null otherwise. It aliases their bytes (no copy).
    glm_tensor* stacked_rows(const std::string& name, std::initializer_list<glm_tensor*> list) {
        std::vector<glm_tensor*> parts;
        for (glm_tensor* t : list)
            if (t) parts.push_back(t);
        if (parts.size() < 2 || !buffer_) return nullptr;
        const glm_tensor* first = parts.front();
        int64_t rows = 0;
        for (size_t i = 0; i < parts.size(); ++i) {
            const glm_tensor* t = parts[i];
            if (t->type != first->type || t->type == GLM_TYPE_NVFP4 || t->ne[0] != first->ne[0] || t->ne[2] != 1 ||
                !glm_is_contiguous(t) || t->buffer != first->buffer)
                return nullptr;
            if (i > 0 && t->offset != parts[i - 1]->offset + glm_nbytes(parts[i - 1])) return nullptr;
            rows += t->ne[1];
        }
        glm_tensor* s = ctx_.new_tensor_2d(first->type, first->ne[0], rows);
        glm_set_name(s, name);
        glm_place(s, buffer_, first->offset);
        s->flags |= GLM_FLAG_WEIGHT;
        return s;
    }

private:
    void place(glm_tensor* t) {
        offset_ = (offset_ + 255) / 256 * 256;
        if (buffer_) glm_place(t, buffer_, offset_);
        t->flags |= GLM_FLAG_WEIGHT;
        offset_ += glm_nbytes(t);
    }

    // Synthetic values depend on (seed, name, index in the whole tensor) only, never on the rank: a
    // replicated tensor is the same on every rank and a split one is a slice of the one-rank tensor,
    // so every TP layout (ranks, cache copied or split) computes the same model.
    uint64_t seed_for(const glm_tensor* t) const {
        uint64_t h = seed_;
        for (char c : t->name) h = (h ^ uint8_t(c)) * 0x100000001B3ull;
        return h;
    }

    // A tensor (slice: where this rank's rows sit in the whole): host bytes, or generated values for a
    // synthetic model.
    void upload(glm_tensor* t, const void* data, size_t nbytes, float fill_mean, float fill_scale,
                const glm_fill_slice& slice) {
        if (!buffer_) return;
        if (seed_) {
            backend_->tensor_fill_random(t, seed_for(t), fill_mean, fill_scale, slice);
            if (progress_) progress_->add(glm_nbytes(t));
            return;
        }
        GLM_ASSERT(data && nbytes == glm_nbytes(t));
        backend_->tensor_set(t, data, 0, nbytes);
        if (progress_) progress_->add(nbytes);
    }

    // Rows [r0, r0+nr) x columns [c0, c0+nc) of w into slice e of t (codes and block scales for NVFP4).
    void upload_linear(glm_tensor* t, const LinearWeight& w, int64_t r0, int64_t nr, int64_t c0, int64_t nc, int64_t e) {
        if (seed_) {
            // Synthetic: uniform values with the variance of a fan-in-scaled init (activations keep
            // their size through 78 layers); NVFP4: random codes, block scales in [0.5, 1.5], and the
            // global scale (upload_global) brings elements to that variance. The window of this rank
            // in w (in every expert of a stacked t): values of the whole weight's elements. The block
            // scales are [in / 16, out] E4M3: the same rows, the columns in blocks of 16.
            const glm_fill_slice window{r0, w.out, c0, w.in};
            if (t->type == GLM_TYPE_NVFP4) {
                GLM_ASSERT(c0 % GLM_NVFP4_BLOCK == 0 && w.in % GLM_NVFP4_BLOCK == 0);
                GLM_ASSERT(t->block_scale->type == GLM_TYPE_F8_E4M3 && t->block_scale->ne[0] * GLM_NVFP4_BLOCK == nc);
                const glm_fill_slice blocks{r0, w.out, c0 / GLM_NVFP4_BLOCK, w.in / GLM_NVFP4_BLOCK};
                backend_->tensor_fill_random(t, seed_for(t), 0.0f, 1.0f, window);
                backend_->tensor_fill_random(t->block_scale, seed_for(t->block_scale), 1.0f, 0.5f, blocks);
            } else {
                backend_->tensor_fill_random(t, seed_for(t), 0.0f, std::sqrt(3.0f / float(w.in)), window);
            }
            if (progress_) progress_->add(glm_nbytes(t) + (t->block_scale ? glm_nbytes(t->block_scale) : 0));
            return;
        }
        const bool whole = r0 == 0 && nr == w.out && c0 == 0 && nc == w.in;
        if (w.is_nvfp4()) {
            GLM_ASSERT(c0 % 16 == 0 && nc % 16 == 0);
            const size_t codes_at = size_t(e) * t->nb[2], scales_at = size_t(e) * t->block_scale->nb[2];
            if (whole) {
                backend_->tensor_set(t, w.data, codes_at, w.nbytes);
                backend_->tensor_set(t->block_scale, w.scales, scales_at, w.scales_nbytes);
            } else {
                gather(w.data, w.in, r0, nr, c0, nc, 1, 2, staging_);
                backend_->tensor_set(t, staging_.data(), codes_at, staging_.size());
                gather(w.scales, w.in, r0, nr, c0, nc, 1, 16, staging_);
                backend_->tensor_set(t->block_scale, staging_.data(), scales_at, staging_.size());
            }
        } else {
            const size_t es = glm_type_block_bytes(w.dtype), at = size_t(e) * t->nb[2];
            if (whole) {
                backend_->tensor_set(t, w.data, at, w.nbytes);
            } else {
                gather(w.data, w.in, r0, nr, c0, nc, es, 1, staging_);
                backend_->tensor_set(t, staging_.data(), at, staging_.size());
            }
        }
        if (progress_) progress_->add(size_t(double(w.nbytes + w.scales_nbytes) * double(nr * nc) / double(w.out * w.in)));
    }

    void upload_global(glm_tensor* t, std::vector<float> global, const std::vector<float>& fan_in) {
        if (seed_)  // E2M1 codes uniform over the 16 values have RMS 2.93; block scales average ~1.08
            for (size_t i = 0; i < global.size(); ++i) global[i] = 1.0f / (2.93f * 1.08f * std::sqrt(fan_in[i]));
        backend_->tensor_set(t->global_scale, global.data(), 0, global.size() * sizeof(float));
    }

    glm_backend* backend_;
    glm_context& ctx_;
    glm_buffer* buffer_;
    TpShard shard_;
    uint64_t seed_;
    ProgressBar* progress_;
    size_t offset_ = 0;
    std::vector<uint8_t> staging_;
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

void map_all(WeightPlacer& p, const ModelWeights& ck, ModelTensors& out) {
    const glm_split R = GLM_SPLIT_NONE, ROWS = GLM_SPLIT_ROWS, COLS = GLM_SPLIT_COLS;
    // Synthetic fills: embeddings of unit scale, norm weights near 1, small biases.
    // The embedding by vocabulary rows, like lm_head (a lookup share per rank and one all-reduce: the
    // whole table on every rank would be 1.4 GiB more per rank at full size).
    out.tok_embd = p.record_rows(ck.embed_tokens, 0.0f, 1.0f);
    out.out_norm = p.record(ck.norm, 1.0f, 0.05f);
    out.lm_head = p.linear(ck.lm_head, ROWS);
    out.layers.clear();
    out.has_mtp = false;
    for (const LayerWeights& L : ck.layers) {
        LayerTensors t;
        t.attn_norm = p.record(L.input_layernorm, 1.0f, 0.05f);
        t.ffn_norm = p.record(L.post_attention_layernorm, 1.0f, 0.05f);
        // The projections of one input back to back (see LayerTensors::x_proj / q_proj).
        t.q_a = p.linear(L.q_a_proj, R);
        t.kv_a = p.linear(L.kv_a_proj_with_mqa, R);
        if (L.has_indexer) {
            t.idx_wk = p.linear(L.indexer_wk, R);
            t.idx_weights = p.linear(L.indexer_weights_proj, R);
        }
        t.q_b = p.linear(L.q_b_proj, ROWS);
        if (L.has_indexer) t.idx_wq_b = p.linear(L.indexer_wq_b, R);
        const std::string blk_name = fmt::format("blk.{}.", L.index);
        t.x_proj = p.stacked_rows(blk_name + "x_proj", {t.q_a, t.kv_a, t.idx_wk, t.idx_weights});
        t.q_proj = p.stacked_rows(blk_name + "q_proj", {t.q_b, t.idx_wq_b});
        t.q_a_norm = p.record(L.q_a_layernorm, 1.0f, 0.05f);
        t.kv_a_norm = p.record(L.kv_a_layernorm, 1.0f, 0.05f);
        t.kv_b = p.linear(L.kv_b_proj, ROWS);
        t.o = p.linear(L.o_proj, COLS);
        if (L.has_indexer) {
            t.idx_k_norm = p.record(L.indexer_k_norm_weight, 1.0f, 0.05f);
            t.idx_k_norm_bias = p.record(L.indexer_k_norm_bias, 0.0f, 0.01f);
        }
        if (!L.is_moe) {
            t.ffn_gate = p.linear(L.mlp_gate, ROWS);
            t.ffn_up = p.linear(L.mlp_up, ROWS);
            t.ffn_down = p.linear(L.mlp_down, COLS);
        } else {
            // The router's scores must spread tokens over many experts: a fan-in-scaled random matrix
            // with a small bias does (--bench reports the usage histogram).
            t.router = p.record(L.router_weight, 0.0f, std::sqrt(3.0f / float(std::max<int64_t>(1, L.router_weight->shape.back()))));
            t.router_bias = p.record(L.router_bias, 0.0f, 0.01f);
            t.exp_gate = p.experts(L.experts, &ExpertWeights::gate, ROWS, blk_name + "exp_gate");
            t.exp_up = p.experts(L.experts, &ExpertWeights::up, ROWS, blk_name + "exp_up");
            t.exp_down = p.experts(L.experts, &ExpertWeights::down, COLS, blk_name + "exp_down");
            t.shexp_gate = p.linear(L.shared_gate, ROWS);
            t.shexp_up = p.linear(L.shared_up, ROWS);
            t.shexp_down = p.linear(L.shared_down, COLS);
        }
        if (L.is_mtp) {
            t.mtp_enorm = p.record(L.enorm, 1.0f, 0.05f);
            t.mtp_hnorm = p.record(L.hnorm, 1.0f, 0.05f);
            t.mtp_eh_proj = p.linear(L.eh_proj, R);
            t.mtp_head_norm = p.record(L.shared_head_norm, 1.0f, 0.05f);
            if (!out.has_mtp) {
                out.has_mtp = true;
                out.mtp = t;
            }
            continue;
        }
        out.layers.push_back(t);
    }
}

}  // namespace

void vocab_share(int64_t n_vocab, TpShard shard, int64_t& first, int64_t& count) { share(n_vocab, shard, first, count); }

Status check_tp_split(const ModelConfig& c, const ModelWeights& ckpt, int n) {
    if (n < 1) return Status::usage("tensor parallelism needs at least one rank (got {})", n);
    if (n == 1) return {};
    auto need = [&](int64_t value, const char* what, int64_t block) -> Status {
        if (value % n != 0 || (value / n) % block != 0)
            return Status::usage("cannot split the model over {} ranks: {} = {} is not a multiple of {}{} (use a rank "
                                 "count that divides it: -tp 1, 2, 4 or 8 for GLM-5)",
                                 n, what, value, n, block > 1 ? fmt::format(" x {} (NVFP4 blocks)", block) : "");
        return {};
    };
    GLM_TRY(need(c.num_attention_heads, "num_attention_heads", 1));
    bool nvfp4_experts = false, nvfp4_dense = false;
    for (const LayerWeights& L : ckpt.layers) {
        if (!L.experts.empty()) nvfp4_experts |= L.experts.front().down.is_nvfp4();
        nvfp4_dense |= L.mlp_down.is_nvfp4() || L.shared_down.is_nvfp4();
    }
    const int64_t dense_block = nvfp4_dense ? 16 : 1;
    if (c.first_k_dense_replace > 0) GLM_TRY(need(c.intermediate_size, "intermediate_size", dense_block));
    GLM_TRY(need(c.moe_intermediate_size, "moe_intermediate_size", nvfp4_experts ? 16 : 1));
    GLM_TRY(need(c.moe_intermediate_size * c.n_shared_experts, "the shared expert's intermediate size", dense_block));
    if (c.vocab_size < n) return Status::usage("cannot split a vocabulary of {} over {} ranks", c.vocab_size, n);
    return {};
}

size_t weight_buffer_bytes(const ModelConfig& config, const ModelWeights& ckpt, TpShard shard) {
    (void)config;
    glm_context ctx;
    ModelTensors tensors;
    return map_weights_unplaced(ckpt, shard, ctx, tensors);
}

size_t map_weights_unplaced(const ModelWeights& ckpt, TpShard shard, glm_context& ctx, ModelTensors& out) {
    WeightPlacer measure(nullptr, ctx, nullptr, shard, 0);
    map_all(measure, ckpt, out);
    return measure.used();
}

Status upload_weights(const ModelConfig& config, const ModelWeights& ckpt, glm_backend* backend, glm_context& ctx,
                      ModelTensors& out, glm_buffer** buffer, bool show_progress, TpShard shard,
                      uint64_t synthetic_seed) {
    for (const LayerWeights& L : ckpt.layers)
        if (L.is_moe && !L.experts.empty()) GLM_TRY(check_experts(L));
    for (const LayerWeights& L : ckpt.layers)
        for (const LinearWeight* w : {&L.q_a_proj, &L.q_b_proj, &L.kv_a_proj_with_mqa, &L.kv_b_proj, &L.o_proj})
            if (w->is_nvfp4())
                return Status::bad_input("{}: NVFP4 attention projections are not supported yet (only routed experts "
                                         "may be NVFP4); use a checkpoint with BF16 attention", w->name);
    GLM_TRY(check_tp_split(config, ckpt, shard.n_ranks));
    const size_t bytes = weight_buffer_bytes(config, ckpt, shard);
    GLM_TRY(backend->alloc_buffer(bytes, "weights", buffer));
    ProgressBar progress(fmt::format("{} weights on {}", synthetic_seed ? "generating" : "loading", backend->name()),
                         bytes, show_progress);
    std::unique_ptr<Prefetcher> prefetch;
    if (!synthetic_seed) prefetch = std::make_unique<Prefetcher>(ckpt);
    WeightPlacer placer(backend, ctx, *buffer, shard, synthetic_seed, &progress);
    map_all(placer, ckpt, out);
    progress.finish();
    GLM_ASSERT(placer.used() == bytes);
    return {};
}

Status open_model(const std::string& dir, const std::string& index_pattern, LoadedModel& out) {
    GLM_TRY(Checkpoint::open(dir, out.checkpoint));
    GLM_TRY(out.checkpoint.bind(out.records));
    return make_hparams(out.checkpoint.config(), index_pattern, out.hp);
}

Status open_synthetic_model(const std::string& dir, const std::string& index_pattern, uint64_t seed, LoadedModel& out) {
    GLM_ASSERT(seed != 0);
    GLM_TRY(open_synthetic(dir, out.synthetic));
    out.records = out.synthetic.weights;  // points into out.synthetic.records, which stay in place
    out.synthetic_seed = seed;
    return make_hparams(out.synthetic.config, index_pattern, out.hp);
}

Status upload_model(const std::vector<glm_backend*>& backends, bool show_progress, LoadedModel& model) {
    const int n = int(backends.size());
    GLM_TRY(check_tp_split(model.config(), model.records, n));
    model.ranks.clear();
    for (int r = 0; r < n; ++r) {
        RankWeights& rw = model.ranks.emplace_back();
        rw.backend = backends[size_t(r)];
        GLM_TRY(upload_weights(model.config(), model.records, rw.backend, rw.ctx, rw.tensors, &rw.buffer, show_progress,
                               TpShard{r, n}, model.synthetic_seed));
    }
    return {};
}

Status upload_model(glm_backend* backend, bool show_progress, LoadedModel& model) {
    return upload_model(std::vector<glm_backend*>{backend}, show_progress, model);
}

Status load_model(const std::string& dir, const std::string& index_pattern, glm_backend* backend, LoadedModel& out) {
    GLM_TRY(open_model(dir, index_pattern, out));
    return upload_model(backend, /*show_progress=*/false, out);
}
