// The GLM-5 forward graph. Names follow llama.cpp's habit (blk.N.xxx) so --dump-tensors can find
// any intermediate. Semantics: transformers 5.17 modeling_glm_moe_dsa.py (model.md §3).
#include <cmath>

#include "engine/model.h"

namespace {

glm_tensor* named(glm_tensor* t, const std::string& name) { return glm_set_name(t, name); }
std::string blk(int64_t il, const char* what) { return fmt::format("blk.{}.{}", il, what); }

glm_rope_mode rope_mode(bool interleave) { return interleave ? GLM_ROPE_INTERLEAVED : GLM_ROPE_NEOX; }

// The products are named (prefix + "_gate" / "_up" / "_down"): node profiles class them by name, and a
// backend that fuses or reorders the nodes around them leaves no unnamed neighbour to guess from.
glm_tensor* swiglu_mlp(glm_context& ctx, glm_tensor* x, glm_tensor* gate, glm_tensor* up, glm_tensor* down,
                       const std::string& prefix) {
    glm_tensor* g = named(glm_mul_mat(ctx, gate, x), prefix + "_gate");
    glm_tensor* u = named(glm_mul_mat(ctx, up, x), prefix + "_up");
    return named(glm_mul_mat(ctx, down, glm_swiglu(ctx, g, u)), prefix + "_down");
}

// The products of one input with several weights: one product with their stacked rows when the
// loader placed them back to back (`stacked`, rows in the order of `parts`), each output a view of its
// rows; one product each otherwise. Null parts (and any rows past `n_used` parts) are skipped.
std::vector<glm_tensor*> project(glm_context& ctx, glm_tensor* stacked, const std::vector<glm_tensor*>& parts,
                                 size_t n_used, glm_tensor* x, const std::string& name) {
    std::vector<glm_tensor*> out(parts.size(), nullptr);
    if (!stacked) {
        for (size_t i = 0; i < n_used; ++i)
            if (parts[i]) out[i] = glm_mul_mat(ctx, parts[i], x);
        return out;
    }
    int64_t rows = 0;
    for (size_t i = 0; i < n_used; ++i) rows += parts[i] ? parts[i]->ne[1] : 0;
    glm_tensor* w = rows == stacked->ne[1] ? stacked : glm_view_2d(ctx, stacked, stacked->ne[0], rows, stacked->nb[1], 0);
    glm_tensor* y = named(glm_mul_mat(ctx, w, x), name);
    int64_t first = 0;
    for (size_t i = 0; i < n_used; ++i) {
        if (!parts[i]) continue;
        out[i] = glm_view_2d(ctx, y, parts[i]->ne[1], y->ne[1], y->nb[1], size_t(first) * sizeof(float));
        first += parts[i]->ne[1];
    }
    return out;
}

struct LayerState {
    glm_tensor* prev_topk = nullptr;  // threaded from F layers to the S layers after them
};

// Where a step's new cache rows go and which rows each query sees (model.h, KvCache).
struct CacheIndex {
    glm_tensor* pos = nullptr;    // I32 [S] positions (rope; the causal bound when not split)
    glm_tensor* slots = nullptr;  // I32 [S] slot of each new row on this rank
    glm_tensor* last = nullptr;   // I32 [S] last slot each query sees
    int64_t n_used = 0;           // slots in use after this step on this rank (an upper bound when split)
    bool split = false;
};

CacheIndex cache_index(const KvCache& kv, glm_tensor* pos, const ForwardGraph& fg, int64_t T, int n_ranks) {
    if (!kv.split) return {pos, pos, pos, T, false};
    return {pos, fg.kv_slots, fg.kv_last, (T + n_ranks - 1) / n_ranks, true};
}

// The all-gather of split caches: every rank's block of `a` along `dim`, through a sum of zero-padded
// copies (exact: each element is one rank's value plus zeros).
glm_tensor* gather_blocks(glm_context& ctx, glm_tensor* a, int dim, const ForwardOptions& opt) {
    return glm_all_reduce(ctx, glm_pad_block(ctx, a, dim, opt.n_ranks, opt.rank));
}

// The queries whose indexer scores this rank computes: all of them, or, for a prompt chunk with
// copied caches over several ranks, a block of rows = ceil(S / n_ranks). Blocks start at rank * rows,
// the last ones moved back to end at S (the ranks past ceil(S / rows) - 1 repeat the last block), so
// every rank runs the same shapes.
struct QueryBlock {
    int64_t first = 0, rows = 0;
};

// Chunks shorter than this keep every query on every rank: an MTP verify step (a few queries) reads
// every key per query either way, and the gather would only add an exchange.
constexpr int64_t kMinSplitQueries = 9;

QueryBlock query_block(int64_t S, const CacheIndex& ci, const ForwardOptions& opt) {
    if (ci.split || opt.n_ranks < 2 || S < kMinSplitQueries) return {0, S};
    const int64_t rows = (S + opt.n_ranks - 1) / opt.n_ranks;
    return {std::min(int64_t(opt.rank) * rows, S - rows), rows};
}

// Every query's selection from the ranks' blocks (I32 [k, rows] each): gathered as f32 (exact for
// slots < 2^24), then rows [0, (m-1) rows) from blocks 0 .. m-2 and the rest from block m-1, which
// starts at S - rows (m = ceil(S / rows) blocks cover the chunk).
glm_tensor* gather_query_blocks(glm_context& ctx, glm_tensor* mine, int64_t S, const QueryBlock& qb,
                                const ForwardOptions& opt) {
    const int64_t rows = qb.rows, m = (S + rows - 1) / rows, k = mine->ne[0];
    glm_tensor* all = gather_blocks(ctx, glm_cast(ctx, mine, GLM_TYPE_F32), 1, opt);  // F32 [k, n_ranks * rows]
    const int64_t head = (m - 1) * rows;                // rows taken from the full blocks
    const int64_t tail_col = head + (head - (S - rows));  // row `head` inside block m-1
    GLM_ASSERT(head > 0);  // blocked: rows < S, so m >= 2
    glm_tensor* tail = glm_view_2d(ctx, all, k, S - head, all->nb[1], size_t(tail_col) * all->nb[1]);
    return glm_cast(ctx, glm_concat(ctx, glm_view_2d(ctx, all, k, head, all->nb[1], 0), tail, 1), GLM_TYPE_I32);
}

struct LayerOutputs {
    glm_tensor* out = nullptr;      // residual stream after the layer
    glm_tensor* topk = nullptr;     // selected key slots, null when attention was dense
    glm_tensor* experts = nullptr;  // routed expert ids, null for dense layers
};

// One decoder layer (model.md §3.4-3.8): MLA with the DSA indexer, then dense SwiGLU or MoE.
LayerOutputs build_layer(glm_context& ctx, glm_graph& graph, const ModelHparams& hp, const LayerTensors& L,
                         int64_t il, glm_tensor* latent_cache, glm_tensor* index_cache, bool shared_indexer,
                         glm_tensor* h, const CacheIndex& ci, int64_t n_past, const ForwardOptions& opt,
                         LayerState& state) {
    glm_tensor* pos = ci.pos;
    const int64_t S = pos->ne[0], T = n_past + S;
    const int64_t H = hp.n_head, dn = hp.head_dim_nope, dr = hp.head_dim_rope, dv = hp.head_dim_v;
    const int64_t r_kv = hp.kv_lora_rank, kv_row = hp.kv_row();
    const float attn_scale = 1.0f / std::sqrt(float(hp.head_dim_qk()));

    glm_tensor* x = named(glm_rms_norm(ctx, h, L.attn_norm, hp.norm_eps), blk(il, "attn_norm"));
    // Placed now, right after the residual add that made h: a backend runs the two as one launch. Left
    // to the final expansion, a layer without its own indexer would get views of its weights between them.
    glm_graph_expand(graph, x);

    // ---- the products of x (q_a, kv_a, the indexer's key and head weights), of q_resid (q_b, the
    // indexer's queries); the indexer's keys where this layer has its own indexer (they are stored for
    // later steps), its queries and head weights only where it scores: with DSA, once the context can
    // exceed index_topk (below it the selection keeps every key). Left out, their rows are not read.
    const bool scoring = !shared_indexer && opt.attn == AttnMode::dsa && T > hp.index_topk;
    const size_t n_x = shared_indexer ? 2 : scoring ? 4 : 3;
    const std::vector<glm_tensor*> xp = project(ctx, L.x_proj, {L.q_a, L.kv_a, L.idx_wk, L.idx_weights}, n_x, x,
                                                 blk(il, "x_proj"));

    // ---- queries: q_resid = norm(q_a x) feeds both MLA and the indexer
    glm_tensor* q_resid = named(glm_rms_norm(ctx, xp[0], L.q_a_norm, hp.lora_norm_eps), blk(il, "q_resid"));
    const std::vector<glm_tensor*> qp = project(ctx, L.q_proj, {L.q_b, L.idx_wq_b}, scoring ? 2 : 1, q_resid,
                                                 blk(il, "q_proj"));
    glm_tensor* q = glm_view_3d(ctx, qp[0], hp.head_dim_qk(), H, S, size_t(hp.head_dim_qk()) * sizeof(float),
                                qp[0]->nb[1], 0);
    glm_tensor* q_nope = glm_view_3d(ctx, q, dn, H, S, q->nb[1], q->nb[2], 0);
    glm_tensor* q_rot = glm_view_3d(ctx, q, dr, H, S, q->nb[1], q->nb[2], size_t(dn) * sizeof(float));
    q_rot = named(glm_rope(ctx, q_rot, pos, int(dr), hp.rope_theta, rope_mode(hp.rope_interleave)),
                  blk(il, "q_rot"));

    // ---- latent KV: c = norm(kv_a x)[:r_kv], k_rot = rope(kv_a x)[r_kv:], stored as one row
    glm_tensor* ckv = xp[1];
    glm_tensor* c = glm_rms_norm(ctx, glm_view_2d(ctx, ckv, r_kv, S, ckv->nb[1], 0), L.kv_a_norm,
                                 hp.lora_norm_eps);
    glm_tensor* k_rot = glm_view_3d(ctx, ckv, dr, 1, S, ckv->nb[1], ckv->nb[1], size_t(r_kv) * sizeof(float));
    k_rot = glm_rope(ctx, k_rot, pos, int(dr), hp.rope_theta, rope_mode(hp.rope_interleave));
    glm_tensor* latent = named(glm_concat(ctx, c, glm_reshape_2d(ctx, k_rot, dr, S), 0), blk(il, "kv_latent"));
    glm_tensor* cache = glm_set_rows(ctx, latent_cache, latent, ci.slots);
    glm_tensor* cache_T = glm_view_2d(ctx, cache, kv_row, ci.n_used, cache->nb[1], 0);

    // ---- DSA indexer (F layers) or reuse of the previous layer's selection (S layers)
    glm_tensor* topk = nullptr;
    if (!shared_indexer) {
        const int64_t Hi = hp.index_n_head, Di = hp.index_head_dim;
        const glm_rope_mode imode = rope_mode(hp.indexer_rope_interleave);
        glm_tensor* ki = glm_layer_norm(ctx, xp[2], L.idx_k_norm, L.idx_k_norm_bias, hp.index_norm_eps);
        ki = glm_rope(ctx, glm_reshape_3d(ctx, ki, Di, 1, S), pos, int(dr), hp.rope_theta, imode);
        ki = named(glm_reshape_2d(ctx, ki, Di, S), blk(il, "index_k"));
        glm_tensor* icache = glm_set_rows(ctx, index_cache, ki, ci.slots);
        glm_graph_expand(graph, icache);  // the keys are stored even when this step needs no top-k

        // With T <= index_topk every key is selected: dense causal attention, exactly.
        if (scoring) {
            // The indexer ropes the first dr dims of each head and passes the rest (rope with n_rot < ne0).
            glm_tensor* qi = glm_view_3d(ctx, qp[1], Di, Hi, S, size_t(Di) * sizeof(float), qp[1]->nb[1], 0);
            qi = named(glm_rope(ctx, qi, pos, int(dr), hp.rope_theta, imode), blk(il, "index_q"));
            glm_tensor* icache_T = glm_view_2d(ctx, icache, Di, ci.n_used, icache->nb[1], 0);
            // A prompt chunk with copied caches: every rank holds every key and the indexer's weights,
            // so each scores a block of the queries and the blocks' selections are gathered (the
            // scoring, quadratic in the prompt, is split over ranks; a query's selection is the same).
            const QueryBlock qb = query_block(S, ci, opt);
            const bool blocked = qb.rows < S;
            glm_tensor* q_mine = !blocked ? qi : glm_view_3d(ctx, qi, Di, Hi, qb.rows, qi->nb[1], qi->nb[2],
                                                             size_t(qb.first) * qi->nb[2]);
            glm_tensor* w_mine = !blocked ? xp[3] : glm_view_2d(ctx, xp[3], Hi, qb.rows, xp[3]->nb[1],
                                                                size_t(qb.first) * xp[3]->nb[1]);
            glm_tensor* last_mine = !blocked ? ci.last : glm_view_1d(ctx, ci.last, qb.rows, size_t(qb.first) * ci.last->nb[0]);
            // The head weights' 1/sqrt(Hi) is applied as the indexer loads them (one launch fewer).
            glm_tensor* scores = named(glm_indexer(ctx, q_mine, icache_T, w_mine, last_mine, 1.0f / std::sqrt(float(Di)),
                                                   1.0f / std::sqrt(float(Hi))),
                                       blk(il, "index_scores"));
            // Candidates bounded by each query's position: a decode graph built for the whole context
            // (replayed at every length) costs what the filled part costs.
            const int64_t k_local = std::min(hp.index_topk, ci.n_used);
            // Attention needs the selection as a set: listed by position, no sort by score. Except with
            // the split cache: the merge below blanks the rank's entries outside the global top-k, and
            // in score order those blanks form the column's tail, whose tiles attention skips (in
            // position order they scatter: split prefill's MLA core measured 346 -> 605 ms per chunk).
            topk = named(ci.split ? glm_top_k(ctx, scores, int(k_local), last_mine)
                                  : glm_top_k_by_index(ctx, scores, int(k_local), last_mine),
                         blk(il, "index_topk"));
            if (blocked) topk = named(gather_query_blocks(ctx, topk, S, qb, opt), blk(il, "index_topk_all"));
            if (ci.split) {
                // The global top-k is within the union of the ranks' own top-k: gather their (score,
                // position) pairs, pick the best index_topk (ties by position, as the copied cache's
                // top-k over every position), keep the ones this rank holds.
                glm_tensor* mine = glm_topk_candidates(ctx, scores, topk, opt.n_ranks, opt.rank);
                glm_tensor* all = named(gather_blocks(ctx, mine, 0, opt), blk(il, "index_topk_all"));
                glm_tensor* all_scores = glm_view_2d(ctx, all, all->ne[0], S, all->nb[2], 0);
                glm_tensor* best = glm_top_k(ctx, all_scores, int(hp.index_topk));
                topk = named(glm_topk_merge(ctx, topk, all, best, opt.rank), blk(il, "index_topk_own"));
            }
        }
        state.prev_topk = topk;
    } else {
        topk = state.prev_topk;
    }

    // ---- attention, in the absorbed MLA form for every batch: q_lat[h] = q_nope[h] W_UK[h]; attention
    // over the latent rows (one shared 576-wide key head); o[h] = o_lat[h] W_UV[h]^T. The reference's
    // expanded form (K/V per head through kv_b for every cached row) would re-expand the whole cache for
    // each prefill chunk -- quadratic over a chunked prompt, gigabytes of activations at long context --
    // while a DSA selection reads 2,048 latent rows per query however long the context is. The two
    // forms are equal in exact arithmetic; the fixture tests hold the absorbed one to transformers.
    const size_t row = L.kv_b->nb[1];
    glm_tensor* w_uk = glm_transpose(ctx, glm_view_3d(ctx, L.kv_b, r_kv, dn, H, row, (dn + dv) * row, 0));
    glm_tensor* q_lat = glm_mul_mat(ctx, w_uk, glm_permute(ctx, q_nope, 0, 2, 1, 3));  // [r_kv, S, H]
    glm_tensor* q_abs = glm_concat(ctx, glm_permute(ctx, q_lat, 0, 2, 1, 3), q_rot, 0);  // [kv_row, H, S]
    glm_tensor* k_lat = glm_view_3d(ctx, cache_T, kv_row, 1, ci.n_used, cache_T->nb[1], cache_T->nb[1], 0);
    glm_tensor* v_lat = glm_view_3d(ctx, cache_T, r_kv, 1, ci.n_used, cache_T->nb[1], cache_T->nb[1], 0);
    glm_tensor* o_lat;
    if (!ci.split) {
        o_lat = named(glm_attn(ctx, q_abs, k_lat, v_lat, pos, topk, attn_scale), blk(il, "attn_lat"));
    } else {
        // Every head's query over this rank's positions; the partials weighted by their share of the
        // softmax mass (log-sum-exp over ranks) sum to the attention over every position.
        const int64_t H_all = H * opt.n_ranks;
        glm_tensor* q_all = named(gather_blocks(ctx, q_abs, 1, opt), blk(il, "q_abs_all"));
        glm_tensor* part = named(glm_attn_part(ctx, q_all, k_lat, v_lat, ci.last, topk, attn_scale), blk(il, "attn_lat"));
        glm_tensor* lse = glm_view_3d(ctx, part, 1, H_all, S, part->nb[1], part->nb[2], size_t(r_kv) * sizeof(float));
        glm_tensor* lse_all = named(gather_blocks(ctx, lse, 0, opt), blk(il, "attn_lse_all"));
        glm_tensor* merged = named(glm_all_reduce(ctx, glm_attn_merge(ctx, part, lse_all)), blk(il, "attn_lat_all"));
        o_lat = glm_view_3d(ctx, merged, r_kv, H, S, merged->nb[1], merged->nb[2], size_t(opt.rank * H) * merged->nb[1]);
    }
    glm_tensor* w_uv = glm_view_3d(ctx, L.kv_b, r_kv, dv, H, row, (dn + dv) * row, dn * row);
    glm_tensor* o_h = glm_mul_mat(ctx, w_uv, glm_permute(ctx, o_lat, 0, 2, 1, 3));  // [dv, S, H]
    glm_tensor* o = glm_permute(ctx, o_h, 0, 2, 1, 3);
    if (!glm_is_contiguous(o)) o = glm_cont(ctx, o);  // one token: [dv, 1, H] is already [dv, H, 1]
    named(o, blk(il, "attn_heads"));
    glm_tensor* attn_out = named(glm_mul_mat(ctx, L.o, glm_reshape_2d(ctx, o, dv * H, S)), blk(il, "o"));
    if (opt.n_ranks > 1) attn_out = glm_all_reduce(ctx, attn_out);  // each rank holds its heads' share
    named(attn_out, blk(il, "attn_out"));
    h = named(glm_add(ctx, h, attn_out), blk(il, "attn_resid"));

    // ---- feed-forward: dense SwiGLU, or routed experts + shared expert
    glm_tensor* x2 = named(glm_rms_norm(ctx, h, L.ffn_norm, hp.norm_eps), blk(il, "ffn_norm"));
    glm_tensor* ffn;
    glm_tensor* expert_ids = nullptr;
    if (!L.is_moe()) {
        ffn = swiglu_mlp(ctx, x2, L.ffn_gate, L.ffn_up, L.ffn_down, blk(il, "ffn"));
    } else {
        glm_tensor* probs = named(glm_sigmoid(ctx, glm_mul_mat(ctx, L.router, x2)), blk(il, "router_probs"));
        expert_ids = named(glm_moe_select(ctx, probs, L.router_bias, int(hp.n_expert_used), int(hp.n_group),
                                          int(hp.topk_group)),
                           blk(il, "expert_ids"));
        glm_tensor* weights =
            named(glm_moe_weights(ctx, probs, expert_ids, hp.expert_norm, hp.expert_scale), blk(il, "expert_w"));
        // Router, scores, choice and weights as consecutive nodes: a backend may run them as one launch.
        glm_graph_expand(graph, weights);
        glm_tensor* x3 = glm_reshape_3d(ctx, x2, hp.n_embd, 1, S);
        glm_tensor* g = glm_mul_mat_id(ctx, L.exp_gate, x3, expert_ids);
        glm_tensor* u = glm_mul_mat_id(ctx, L.exp_up, x3, expert_ids);
        glm_tensor* y = glm_mul_mat_id(ctx, L.exp_down, glm_swiglu(ctx, g, u), expert_ids);
        glm_tensor* routed = named(glm_moe_combine(ctx, y, weights, expert_ids), blk(il, "moe_routed"));
        // shared + routed (not routed + shared): the graph then runs the shared expert first and the
        // routed combine right before this add, so a backend can run the two as one launch.
        ffn = glm_add(ctx, swiglu_mlp(ctx, x2, L.shexp_gate, L.shexp_up, L.shexp_down, blk(il, "shexp")), routed);
    }
    if (opt.n_ranks > 1) ffn = glm_all_reduce(ctx, ffn);  // each rank holds its intermediate share
    named(ffn, blk(il, "ffn_out"));
    h = named(glm_add(ctx, h, ffn), blk(il, "out"));
    if (opt.keep_intermediates) {
        h->flags |= GLM_FLAG_OUTPUT;
        if (topk) topk->flags |= GLM_FLAG_OUTPUT;
        if (expert_ids) expert_ids->flags |= GLM_FLAG_OUTPUT;
    }
    return {h, topk, expert_ids};
}

// The embedding rows of the tokens; a table split by vocabulary over ranks gives each rank its rows'
// share, summed by an all-reduce.
glm_tensor* embed(glm_context& ctx, const ModelTensors& w, glm_tensor* tokens, const ForwardOptions& opt) {
    if (w.tok_embd->split != GLM_SPLIT_ROWS) return glm_get_rows(ctx, w.tok_embd, tokens);
    return glm_all_reduce(ctx, glm_get_rows_shard(ctx, w.tok_embd, tokens, opt.vocab_offset));
}

void add_cache_inputs(glm_context& ctx, const KvCache& kv, int64_t S, ForwardGraph& fg) {
    if (!kv.split) return;
    fg.kv_slots = named(ctx.new_tensor_1d(GLM_TYPE_I32, S), "inp_kv_slots");
    fg.kv_last = named(ctx.new_tensor_1d(GLM_TYPE_I32, S), "inp_kv_last");
    fg.kv_slots->flags |= GLM_FLAG_INPUT;
    fg.kv_last->flags |= GLM_FLAG_INPUT;
}

// Logits (this rank's vocabulary share), the final hidden state and, for greedy decoding, the
// (max, id) pair of each position are what the host reads.
void finish_outputs(glm_context& ctx, ForwardGraph& fg, const ForwardOptions& opt) {
    fg.logits->flags |= GLM_FLAG_OUTPUT;
    fg.hidden->flags |= GLM_FLAG_OUTPUT;
    glm_graph_expand(fg.graph, fg.logits);
    glm_graph_expand(fg.graph, fg.hidden);
    if (opt.max_arg) {
        fg.max_arg = named(glm_max_arg(ctx, fg.logits, opt.vocab_offset), "logits_max_arg");
        fg.max_arg->flags |= GLM_FLAG_OUTPUT;
        glm_graph_expand(fg.graph, fg.max_arg);
    }
}

}  // namespace

ForwardGraph build_forward(glm_context& ctx, const ModelHparams& hp, const ModelTensors& w, KvCache& kv,
                           int64_t n_tokens, int64_t n_past, const ForwardOptions& opt) {
    GLM_ASSERT(n_tokens >= 1 && n_past >= 0 && n_past + n_tokens <= kv.n_ctx);
    const int64_t S = n_tokens;

    ForwardGraph fg;
    fg.tokens = named(ctx.new_tensor_1d(GLM_TYPE_I32, S), "inp_tokens");
    fg.positions = named(ctx.new_tensor_1d(GLM_TYPE_I32, S), "inp_pos");
    fg.tokens->flags |= GLM_FLAG_INPUT;
    fg.positions->flags |= GLM_FLAG_INPUT;
    glm_tensor* pos = fg.positions;

    glm_tensor* h = named(embed(ctx, w, fg.tokens, opt), "tok_embd_out");
    LayerState state;
    add_cache_inputs(ctx, kv, S, fg);
    const CacheIndex ci = cache_index(kv, pos, fg, n_past + S, opt.n_ranks);

    for (int64_t il = 0; il < hp.n_layer; ++il) {
        LayerOutputs lo = build_layer(ctx, fg.graph, hp, w.layers[size_t(il)], il, kv.latent[size_t(il)],
                                      kv.index[size_t(il)], hp.indexer_shared[size_t(il)], h, ci, n_past, opt, state);
        h = lo.out;
        fg.layer_out.push_back(lo.out);
        fg.layer_topk.push_back(lo.topk);
        fg.layer_experts.push_back(lo.experts);
    }

    fg.hidden = named(glm_rms_norm(ctx, h, w.out_norm, hp.norm_eps), "output_norm");
    glm_tensor* head_in = fg.hidden;
    if (!opt.all_logits && S > 1) head_in = glm_view_2d(ctx, fg.hidden, hp.n_embd, 1, fg.hidden->nb[1], size_t(S - 1) * fg.hidden->nb[1]);
    fg.logits = named(glm_mul_mat(ctx, w.lm_head, head_in), "logits");
    finish_outputs(ctx, fg, opt);
    return fg;
}

ForwardGraph build_mtp(glm_context& ctx, const ModelHparams& hp, const ModelTensors& w, KvCache& kv,
                       int64_t n_tokens, int64_t n_past, const ForwardOptions& opt) {
    GLM_ASSERT(w.has_mtp && int64_t(kv.latent.size()) > hp.n_layer);
    GLM_ASSERT(n_tokens >= 1 && n_past >= 0 && n_past + n_tokens <= kv.n_ctx);
    const LayerTensors& L = w.mtp;
    ForwardGraph fg;
    fg.tokens = named(ctx.new_tensor_1d(GLM_TYPE_I32, n_tokens), "mtp.inp_tokens");
    fg.positions = named(ctx.new_tensor_1d(GLM_TYPE_I32, n_tokens), "mtp.inp_pos");
    fg.prev_hidden = named(ctx.new_tensor_2d(GLM_TYPE_F32, hp.n_embd, n_tokens), "mtp.inp_hidden");
    for (glm_tensor* t : {fg.tokens, fg.positions, fg.prev_hidden}) t->flags |= GLM_FLAG_INPUT;

    // u = [enorm(embed(token)) ; hnorm(h_prev)], z = eh_proj u, then a full decoder layer of its own.
    glm_tensor* e = glm_rms_norm(ctx, embed(ctx, w, fg.tokens, opt), L.mtp_enorm, hp.norm_eps);
    glm_tensor* hn = glm_rms_norm(ctx, fg.prev_hidden, L.mtp_hnorm, hp.norm_eps);
    glm_tensor* z = named(glm_mul_mat(ctx, L.mtp_eh_proj, glm_concat(ctx, e, hn, 0)), "mtp.eh_proj");
    LayerState state;
    const int64_t il = hp.n_layer;
    add_cache_inputs(ctx, kv, n_tokens, fg);
    const CacheIndex ci = cache_index(kv, fg.positions, fg, n_past + n_tokens, opt.n_ranks);
    LayerOutputs lo = build_layer(ctx, fg.graph, hp, L, il, kv.latent[size_t(il)], kv.index[size_t(il)],
                                  /*shared_indexer=*/false, z, ci, n_past, opt, state);
    fg.layer_out.push_back(lo.out);
    fg.layer_topk.push_back(lo.topk);
    fg.layer_experts.push_back(lo.experts);
    fg.hidden = named(glm_rms_norm(ctx, lo.out, L.mtp_head_norm, hp.norm_eps), "mtp.head_norm");
    // The draft head is the target's lm_head (sglang and vLLM do the same; the checkpoint's
    // shared_head.head is a copy of it).
    fg.logits = named(glm_mul_mat(ctx, w.lm_head, fg.hidden), "mtp.logits");
    finish_outputs(ctx, fg, opt);
    return fg;
}
