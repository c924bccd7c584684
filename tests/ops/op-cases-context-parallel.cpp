// Context-parallel caches (ggml-like/tensor.h, "context-parallel caches"): the latent cache split by
// position over N ranks (rank r holds positions r, r + N, ... at slots 0, 1, ...), each rank attending
// over its own keys and the ranks exchanging small tensors. Cases, on odd shapes:
//  - get_rows_shard (ids below, inside and above the shard) and set_rows with negative slots (the rows
//    they name are skipped: the rest of the cache keeps its bytes);
//  - attn_part on every CUDA attention path (the split-KV kernel with one split and with several,
//    separate K/V heads and MQA groups, dense, key_ids leaves (sorted on CUDA) and topk_merge over a
//    top-k (distinct: walked raw); the tensor-core MQA path on bf16 and e4m3 cache views, decode and
//    prefill shapes), queries without a visible key; the outputs and the log-sum-exp are separate
//    cases because the lse (~ln T) would dominate an NMSE taken over the whole row;
//  - pad_block on dims 0..2 of strided and transposed sources, topk_candidates with -1 ids,
//    topk_merge over several ranks with tied scores (positions decide) and -inf entries, attn_merge
//    with -inf and large log-sum-exps;
//  - the whole exchange as the engine runs it: keys split into N interleaved subsets (strided cache
//    views), attn_part per rank, each lse padded into its block and summed (the all-reduce), merged,
//    summed over ranks: equal to plain attention over all keys; with key_ids too, through each rank's
//    local top-k and the merge of every rank's gathered candidates (topk_merge).
// References are naive double precision, written from tensor.h.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include <fmt/ranges.h>

#include "tests/ops/format-ref.h"
#include "tests/ops/op-cases.h"

namespace optest {
namespace {

constexpr double INF = std::numeric_limits<double>::infinity();

// The tolerances of op-cases.cpp, for the same reasons (see there):
constexpr Tolerance TOL_EXACT{0, INF};       // data movement, indices
constexpr Tolerance TOL_ATTN{1e-10, INF};    // f32 dot products and softmax vs double
constexpr Tolerance TOL_ATTN_TC{3e-5, INF};  // CUDA MQA tensor-core path: bf16 q and P
// attn_merge: one f32 rescale per element (the CPU weighs in double, CUDA in f32: a few ulps).
constexpr Tolerance TOL_MERGE{1e-12, INF};



// Every rank's candidates as glm_topk_candidates lays them out, gathered: F32 [M, 2, S] of (score,
// position). n_valid entries per column carry a normal score and a distinct position (a few scores
// copied to other entries, so the k-th score ties and positions must decide), the rest -inf and -1.
glm_tensor* gathered_candidates(OpBuild& b, int64_t M, int64_t S, int64_t n_valid) {
    std::vector<double> v(static_cast<size_t>(M * 2 * S));
    for (int64_t s = 0; s < S; ++s) {
        const std::vector<int32_t> pos = b.rng.distinct(8 * M + 8, M);
        const std::vector<int32_t> valid = b.rng.distinct(M, std::min(M, n_valid));
        std::vector<bool> is_valid(static_cast<size_t>(M), false);
        for (int32_t e : valid) is_valid[size_t(e)] = true;
        for (int64_t e = 0; e < M; ++e) {
            v[size_t(e + M * 2 * s)] = is_valid[size_t(e)] ? b.rng.normal() : -INFINITY;
            v[size_t(e + M + M * 2 * s)] = is_valid[size_t(e)] ? double(pos[size_t(e)]) : -1.0;
        }
        for (int64_t copies = 0; copies < std::min<int64_t>(4, int64_t(valid.size()) - 1); ++copies)
            v[size_t(valid[size_t(copies + 1)] + M * 2 * s)] = v[size_t(valid[0] + M * 2 * s)];
    }
    return b.values(GLM_TYPE_F32, {M, 2, S}, [&](int64_t i) { return v[size_t(i)]; });
}

// This rank's share of the k best gathered candidates (the engine's merge).
glm_tensor* merge_of(OpBuild& b, glm_tensor* local, glm_tensor* all, int64_t k, int rank) {
    glm_tensor* scores = glm_view_2d(b.ctx, all, all->ne[0], all->ne[2], all->nb[2], 0);
    return glm_topk_merge(b.ctx, local, all, glm_top_k(b.ctx, scores, int(k)), rank);
}

// ---- host values of the I32 nodes the cases feed to attention ----------------------------------
// Column-major [ne0, ne1] values of t: a leaf's bytes, or a TOP_K / TOPK_MERGE node recomputed
// from its sources as tensor.h defines it.
std::vector<int32_t> host_ids(const OpBuild& b, const glm_tensor* t) {
    const int64_t n0 = t->ne[0], n1 = t->ne[1];
    std::vector<int32_t> r(static_cast<size_t>(n0 * n1));
    if (t->op == GLM_OP_TOP_K) {
        for (int64_t c = 0; c < n1; ++c) {
            const std::vector<int32_t> col = top_k_reference(b, t, c);
            std::copy(col.begin(), col.end(), r.begin() + n0 * c);
        }
    } else if (t->op == GLM_OP_TOPK_MERGE) {
        // The k best of `all` by score (descending), ties by the lower position; own entries kept.
        const std::vector<int32_t> local = host_ids(b, t->src[0]);
        const glm_tensor* all = t->src[1];
        const int64_t M = all->ne[0], k = t->src[2]->ne[0], first = int64_t(t->params[0].i) * n0;
        for (int64_t c = 0; c < n1; ++c) {
            std::vector<int64_t> order;  // candidates: finite scores (-inf / NaN are none)
            for (int64_t e = 0; e < M; ++e)
                if (b.get(all, e, 0, c) > -INF) order.push_back(e);
            std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) {
                const double sx = b.get(all, x, 0, c), sy = b.get(all, y, 0, c);
                if (sx != sy) return sx > sy;
                return b.get(all, x, 1, c) < b.get(all, y, 1, c);
            });
            std::vector<bool> own(static_cast<size_t>(n0), false);
            for (int64_t j = 0; j < std::min<int64_t>(k, int64_t(order.size())); ++j)
                if (order[size_t(j)] >= first && order[size_t(j)] < first + n0) own[size_t(order[size_t(j)] - first)] = true;
            for (int64_t i = 0; i < n0; ++i) r[size_t(i + n0 * c)] = own[size_t(i)] ? local[size_t(i + n0 * c)] : -1;
        }
    } else {
        GLM_ASSERT(t->op == GLM_OP_NONE && t->type == GLM_TYPE_I32);
        for (int64_t c = 0; c < n1; ++c)
            for (int64_t i = 0; i < n0; ++i) r[size_t(i + n0 * c)] = b.geti(t, i, c);
    }
    return r;
}

// ---- attention reference -----------------------------------------------------------------------
// [Dv (+ 1), H, S] in double: query s attends the slots keys_of(s) lists (each once) of k / v; softmax
// of scale * q.k; with_lse appends ln(sum_t e^(scale q.k_t)) to each row. No key: zeros (and -inf).
Ref attn_rows(const OpBuild& b, const glm_tensor* q, const glm_tensor* k, const glm_tensor* v, double scale,
              const std::function<std::vector<int64_t>(int64_t)>& keys_of, bool with_lse) {
    const int64_t Dk = q->ne[0], H = q->ne[1], S = q->ne[2], Hk = k->ne[1], T = k->ne[2], Dv = v->ne[0];
    const int64_t W = Dv + (with_lse ? 1 : 0);
    Ref r(size_t(W * H * S), 0.0);
    std::vector<std::vector<double>> kc(size_t(Hk * T)), vc(size_t(Hk * T));  // rows decoded once
    auto row = [&](std::vector<std::vector<double>>& c, const glm_tensor* t, int64_t n, int64_t kh, int64_t slot) {
        std::vector<double>& x = c[size_t(kh * T + slot)];
        if (x.empty())
            for (int64_t i = 0; i < n; ++i) x.push_back(b.get(t, i, kh, slot));
        return &x;
    };
    for (int64_t s = 0; s < S; ++s) {
        const std::vector<int64_t> keys = keys_of(s);
        for (int64_t h = 0; h < H; ++h) {
            double* out = r.data() + (h + H * s) * W;
            if (with_lse) out[Dv] = -INF;
            if (keys.empty()) continue;
            const int64_t kh = Hk == 1 ? 0 : h;
            std::vector<double> qh(static_cast<size_t>(Dk));
            for (int64_t c = 0; c < Dk; ++c) qh[size_t(c)] = b.get(q, c, h, s);
            std::vector<double> p(keys.size());
            double mx = -INF, sum = 0;
            for (size_t i = 0; i < keys.size(); ++i) {
                const std::vector<double>& kr = *row(kc, k, Dk, kh, keys[i]);
                double d = 0;
                for (int64_t c = 0; c < Dk; ++c) d += qh[size_t(c)] * kr[size_t(c)];
                p[i] = scale * d;
                mx = std::max(mx, p[i]);
            }
            for (double& x : p) sum += (x = std::exp(x - mx));
            for (size_t i = 0; i < keys.size(); ++i) {
                const std::vector<double>& vr = *row(vc, v, Dv, kh, keys[i]);
                for (int64_t d = 0; d < Dv; ++d) out[d] += p[i] / sum * vr[size_t(d)];
            }
            if (with_lse) out[Dv] = mx + std::log(sum);
        }
    }
    return r;
}

// The visible slots of query s at pos among T: all of [0, pos], or the listed ones (ids column s of
// n_sel entries, column-major) with 0 <= t <= pos, t < T, each once.
std::vector<int64_t> visible(int64_t pos, int64_t T, const std::vector<int32_t>* ids, int64_t n_sel, int64_t s) {
    std::vector<int64_t> keys;
    if (!ids) {
        for (int64_t t = 0; t <= pos && t < T; ++t) keys.push_back(t);
        return keys;
    }
    for (int64_t j = 0; j < n_sel; ++j) {
        const int64_t t = (*ids)[size_t(j + n_sel * s)];
        if (t >= 0 && t <= pos && t < T) keys.push_back(t);
    }
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    return keys;
}

// q, k, v of an attention case: f32 k / v leaves with their own heads (cache F32), or k = [Dk, 1, T]
// and v = [Dv, 1, T] views of the same rows of one bf16 / e4m3 cache (absorbed MLA; Hk must be 1).
struct Qkv { glm_tensor *q, *k, *v; };
Qkv make_qkv(OpBuild& b, int64_t Dk, int64_t Dv, int64_t H, int64_t Hk, int64_t S, int64_t T, glm_type cache_type) {
    Qkv r;
    r.q = b.rand(GLM_TYPE_F32, {Dk, H, S});
    if (cache_type == GLM_TYPE_F32) {
        r.k = b.rand(GLM_TYPE_F32, {Dk, Hk, T});
        r.v = b.rand(GLM_TYPE_F32, {Dv, Hk, T});
    } else {
        GLM_ASSERT(Hk == 1);
        glm_tensor* cache = b.rand(cache_type, {std::max(Dk, Dv), T});
        r.k = glm_view_3d(b.ctx, cache, Dk, 1, T, cache->nb[1], cache->nb[1], 0);
        r.v = glm_view_3d(b.ctx, cache, Dv, 1, T, cache->nb[1], cache->nb[1], 0);
    }
    return r;
}

// ---- attn_part on each attention path ----------------------------------------------------------
// ids: 0 dense causal; 1 a key_ids leaf of n_sel per query (distinct random slots, some past q_pos,
// one past the cache, -1 holes: sorted on CUDA); 2 topk_merge(top_k(scores, n_sel, q_pos), the n_ranks
// ranks' gathered candidates, the best n_glob of them, rank): distinct by construction, walked raw.
// Query s sits at last - (S - 1 - s) * step; blind: query 0 at -1 (no visible key).
struct Part {
    const char* path;
    int64_t Dk, Dv, H, Hk, S, T;
    glm_type cache;
    int ids;
    int64_t n_sel;
    int32_t last, step;
    bool blind;
    int n_ranks = 2, rank = 0;
    int64_t n_glob = 0;
};

std::vector<int32_t> positions(int64_t S, int32_t last, int32_t step, bool blind) {
    std::vector<int32_t> pos;
    for (int64_t s = 0; s < S; ++s) pos.push_back(int32_t(last - (S - 1 - s) * step));
    if (blind) pos[0] = -1;
    return pos;
}

void add_attn_part_cases(std::vector<OpCase>& cases) {
    const glm_type F32 = GLM_TYPE_F32, BF16 = GLM_TYPE_BF16, F8 = GLM_TYPE_F8_E4M3;
    const std::vector<Part> parts = {
        // split-KV kernel, separate K/V heads (one head per block)
        {"one split", 24, 7, 3, 3, 5, 13, F32, 0, 0, 12, 2, true},
        {"decode split-KV", 16, 33, 3, 3, 1, 300, F32, 0, 0, 299, 1, false},
        {"decode split-KV, most splits empty", 16, 33, 3, 3, 1, 300, F32, 0, 0, 40, 1, false},
        {"key_ids, one split", 16, 7, 3, 3, 5, 30, F32, 1, 9, 29, 4, true},
        {"topk_merge(top_k) decode split-KV", 16, 7, 3, 3, 1, 500, F32, 2, 130, 499, 1, false, 3, 0, 200},
        // split-KV kernel, MQA head groups (G = 8, 4, 16)
        {"MQA key_ids", 20, 33, 5, 1, 5, 40, F32, 1, 9, 39, 7, true},
        {"MQA key_ids decode split-KV", 20, 7, 3, 1, 1, 400, F32, 1, 150, 399, 1, false},
        {"MQA bf16 cache views topk_merge(top_k)", 20, 33, 5, 1, 5, 200, BF16, 2, 100, 199, 30, true, 2, 1, 120},
        {"MQA f8 cache views dense", 24, 17, 11, 1, 3, 150, F8, 0, 0, 149, 60, false},
        // tensor-core MQA path (Dk 576, Dv 512, H % 16 == 0, bf16 / e4m3 cache rows)
        {"MLA decode one split", 576, 512, 16, 1, 1, 100, BF16, 0, 0, 77, 1, false},
        {"MLA decode split-KV", 576, 512, 16, 1, 1, 1000, BF16, 0, 0, 999, 1, false},
        {"MLA decode key_ids[2048]", 576, 512, 16, 1, 2, 3000, F8, 1, 2048, 2999, 700, false},
        {"MLA decode topk_merge(top_k[2048])", 576, 512, 16, 1, 1, 3000, BF16, 2, 2048, 2999, 1, false, 2, 1, 2048},
        {"MLA prefill one split", 576, 512, 16, 1, 37, 120, F8, 0, 0, 119, 1, true},
        {"MLA prefill split-KV", 576, 512, 32, 1, 5, 700, BF16, 0, 0, 699, 1, true},
        // 280 queries: blocks for two per SM on 132 SMs, the one-stage prefill block
        {"MLA prefill one-stage blocks", 576, 512, 16, 1, 280, 300, BF16, 0, 0, 299, 1, true},
        {"MLA prefill one-stage blocks topk_merge(top_k[128])", 576, 512, 16, 1, 280, 400, F8, 2, 128, 399, 1, false, 2, 0,
         128},
    };
    for (const Part& g : parts) {
        auto build = [g](OpBuild& b) {
            const Qkv x = make_qkv(b, g.Dk, g.Dv, g.H, g.Hk, g.S, g.T, g.cache);
            const std::vector<int32_t> pos = positions(g.S, g.last, g.step, g.blind);
            glm_tensor* qp = b.i32({g.S}, pos);
            glm_tensor* kid = nullptr;
            if (g.ids == 1) {
                std::vector<int32_t> all;
                for (int64_t s = 0; s < g.S; ++s) {
                    std::vector<int32_t> col = holes(b.rng, g.T, g.n_sel * 3 / 4, g.n_sel - 1);
                    if (pos[size_t(s)] >= 0 && std::none_of(col.begin(), col.end(), [&](int32_t t) {
                            return t >= 0 && t <= pos[size_t(s)];
                        }))
                        col[0] = int32_t(b.rng.randint(0, pos[size_t(s)] + 1));
                    col.insert(col.begin() + b.rng.randint(0, g.n_sel), int32_t(g.T + 3));  // past the cache
                    all.insert(all.end(), col.begin(), col.end());
                }
                kid = b.i32({g.n_sel, g.S}, all);
            } else if (g.ids == 2) {
                glm_tensor* scores = b.rand(GLM_TYPE_F32, {g.T, g.S});
                glm_tensor* local = glm_top_k(b.ctx, scores, int(g.n_sel), qp);
                const int64_t M = g.n_ranks * g.n_sel;
                kid = merge_of(b, local, gathered_candidates(b, M, g.S, M * 7 / 8), g.n_glob, g.rank);
            }
            b.in = {x.q, x.k, x.v, qp, kid};
            return glm_attn_part(b.ctx, x.q, x.k, x.v, qp, kid, float(1.0 / std::sqrt(double(g.Dk))));
        };
        // Row (Dv + 1 entries) of query s, head h of the whole part, from b.in.
        auto full = [](const OpBuild& b, const glm_tensor* part) {
            const glm_tensor *qp = b.in[3], *kid = b.in[4];
            const int64_t T = b.in[1]->ne[2];
            std::vector<int32_t> ids;
            if (kid) ids = host_ids(b, kid);
            return attn_rows(b, b.in[0], b.in[1], b.in[2], double(part->params[0].f),
                             [&](int64_t s) {
                                 return visible(b.geti(qp, s), T, kid ? &ids : nullptr, kid ? kid->ne[0] : 0, s);
                             },
                             true);
        };
        const bool tc = g.Dk == 576;
        const char* ids_name[] = {"dense", "key_ids", "topk_merge"};
        for (bool lse : {false, true}) {
            OpCase c;
            c.name = fmt::format("attn_part {}: Dk={} Dv={} H={} Hk={} S={} T={} {} {}{} q_pos<={}{} -> {}", g.path, g.Dk,
                                 g.Dv, g.H, g.Hk, g.S, g.T, glm_type_name(g.cache), ids_name[g.ids],
                                 g.ids ? fmt::format("[{}]", g.n_sel) : "", g.last, g.blind ? " (query 0 blind)" : "",
                                 lse ? "lse" : "outputs");
            c.build = [build, lse, g](OpBuild& b) {
                glm_tensor* part = build(b);
                // The outputs [0, Dv) or the lse at Dv of each row, as a view of the part.
                return glm_view_3d(b.ctx, part, lse ? 1 : g.Dv, g.H, g.S, part->nb[1], part->nb[2],
                                   lse ? size_t(g.Dv) * 4 : 0);
            };
            c.reference = [full, lse](const OpBuild& b, const glm_tensor* out) {
                const Ref rows = full(b, out->src[0]);
                const int64_t W = out->src[0]->ne[0], Dv = W - 1;
                Ref r;
                for (size_t i = 0; i < rows.size(); ++i) {
                    const bool is_lse = int64_t(i % size_t(W)) == Dv;
                    if (is_lse == lse) r.push_back(rows[i]);
                }
                return r;
            };
            c.tol = TOL_ATTN;
            if (tc) c.gpu_tol = TOL_ATTN_TC;
            cases.push_back(std::move(c));
        }
    }
}

// ---- the exchange, end to end ------------------------------------------------------------------
// ids: 0 dense; 1 each rank's local list a leaf of kk local slots (distinct, -1 holes, some past its
// q_pos); 2 each rank's local list top_k(its scores, kk, its q_pos). Every rank merges the same
// gathered candidates (N * kk of them) keeping the best n_glob. Rank r's keys: slots j of the strided
// view (positions j * N + r), queries at floor((pos - r) / N) (-1 if pos < r).
struct Exchange {
    const char* what;
    int64_t Dk, Dv, H, Hk, T;
    glm_type cache;
    int N;
    std::vector<int32_t> pos;
    int ids = 0;
    int64_t kk = 0, n_glob = 0;
};

void add_exchange_cases(std::vector<OpCase>& cases) {
    const glm_type F32 = GLM_TYPE_F32, BF16 = GLM_TYPE_BF16, F8 = GLM_TYPE_F8_E4M3;
    const std::vector<Exchange> list = {
        {"MHA prefill", 16, 7, 3, 3, 23, F32, 3, {0, 1, 9, 15, 22}},
        {"MHA decode split-KV", 16, 7, 3, 3, 1001, F32, 4, {1000}},
        {"MQA local key_ids", 20, 33, 5, 1, 40, F32, 3, {1, 12, 25, 33, 39}, 1, 6, 8},
        {"MQA bf16 local top_k", 20, 9, 3, 1, 61, BF16, 2, {0, 30, 60}, 2, 9, 11},
        {"MLA decode", 576, 512, 16, 1, 1000, BF16, 2, {999}},
        {"MLA decode local top_k[256]", 576, 512, 16, 1, 2000, F8, 4, {1500, 1999}, 2, 256, 512},
        {"MLA prefill local key_ids[64]", 576, 512, 16, 1, 300, BF16, 3, {2, 150, 151, 299}, 1, 64, 96},
    };
    for (const Exchange& g : list) {
        const int64_t S = int64_t(g.pos.size());
        OpCase c;
        c.name = fmt::format("context-parallel attention {}: N={} Dk={} Dv={} H={} Hk={} T={} {} q_pos={}{} = attn",
                             g.what, g.N, g.Dk, g.Dv, g.H, g.Hk, g.T, glm_type_name(g.cache), fmt::join(g.pos, ","),
                             g.ids ? fmt::format(" key_ids local[{}] merged[{}]", g.kk, g.n_glob) : "");
        c.build = [g, S](OpBuild& b) {
            const Qkv x = make_qkv(b, g.Dk, g.Dv, g.H, g.Hk, S, g.T, g.cache);
            const float scale = float(1.0 / std::sqrt(double(g.Dk)));
            glm_tensor* all = g.ids ? gathered_candidates(b, g.N * g.kk, S, g.N * g.kk * 7 / 8) : nullptr;
            b.in = {x.q, x.k, x.v, all};
            std::vector<glm_tensor*> part(size_t(g.N));
            glm_tensor* lse_all = nullptr;
            for (int r = 0; r < g.N; ++r) {
                const int64_t Tr = (g.T - r + g.N - 1) / g.N;
                glm_tensor* k = glm_view_3d(b.ctx, x.k, g.Dk, g.Hk, Tr, x.k->nb[1], g.N * x.k->nb[2], r * x.k->nb[2]);
                glm_tensor* v = glm_view_3d(b.ctx, x.v, g.Dv, g.Hk, Tr, x.v->nb[1], g.N * x.v->nb[2], r * x.v->nb[2]);
                std::vector<int32_t> pr;
                for (int32_t p : g.pos) pr.push_back(p >= r ? (p - r) / g.N : -1);
                glm_tensor* qp = b.i32({S}, pr);
                glm_tensor* kid = nullptr;
                if (g.ids) {
                    glm_tensor* local;
                    if (g.ids == 1) {
                        std::vector<int32_t> all;
                        for (int64_t s = 0; s < S; ++s) {
                            const std::vector<int32_t> col = holes(b.rng, Tr, g.kk * 3 / 4, g.kk);
                            all.insert(all.end(), col.begin(), col.end());
                        }
                        local = b.i32({g.kk, S}, all);
                    } else {
                        local = glm_top_k(b.ctx, b.rand(GLM_TYPE_F32, {Tr, S}), int(g.kk), qp);
                    }
                    kid = merge_of(b, local, all, g.n_glob, r);
                    b.in.push_back(kid);
                }
                part[size_t(r)] = glm_attn_part(b.ctx, x.q, k, v, qp, kid, scale);
                // This rank's block of the all-gathered lse: its [1, H, S] column, zero-padded, summed.
                glm_tensor* lse = glm_view_3d(b.ctx, part[size_t(r)], 1, g.H, S, part[size_t(r)]->nb[1],
                                              part[size_t(r)]->nb[2], size_t(g.Dv) * 4);
                glm_tensor* block = glm_pad_block(b.ctx, lse, 0, g.N, r);
                lse_all = lse_all ? glm_add(b.ctx, lse_all, block) : block;
            }
            glm_tensor* sum = nullptr;
            for (int r = 0; r < g.N; ++r) {
                glm_tensor* merged = glm_attn_merge(b.ctx, part[size_t(r)], lse_all);
                sum = sum ? glm_add(b.ctx, sum, merged) : merged;
            }
            return sum;
        };
        // Plain attention over the positions the ranks' keys cover: all of [0, pos], or the merged
        // selection: rank q's kept slot j is position j * N + q.
        c.reference = [g](const OpBuild& b, const glm_tensor*) {
            std::vector<std::vector<int32_t>> kept;
            if (g.ids)
                for (int r = 0; r < g.N; ++r) kept.push_back(host_ids(b, b.in[size_t(4 + r)]));
            return attn_rows(b, b.in[0], b.in[1], b.in[2], double(float(1.0 / std::sqrt(double(g.Dk)))),
                             [&](int64_t s) {
                                 const int64_t pos = g.pos[size_t(s)];
                                 if (!g.ids) return visible(pos, g.T, nullptr, 0, s);
                                 std::vector<int64_t> keys;
                                 for (int r = 0; r < g.N; ++r)
                                     for (int64_t i = 0; i < g.kk; ++i) {
                                         const int32_t j = kept[size_t(r)][size_t(i + g.kk * s)];
                                         if (j < 0) continue;
                                         const int64_t t = int64_t(j) * g.N + r;
                                         if (t <= pos && t < g.T) keys.push_back(t);
                                     }
                                 std::sort(keys.begin(), keys.end());
                                 return keys;
                             },
                             false);
        };
        c.tol = TOL_ATTN;
        if (g.Dk == 576) c.gpu_tol = TOL_ATTN_TC;
        cases.push_back(std::move(c));
    }
}

// ---- the small ops -----------------------------------------------------------------------------
void add_small_cases(std::vector<OpCase>& cases) {
    // get_rows_shard: the shard holds rows [first, first + rows) of the whole table.
    struct Shard { glm_type type; int64_t ne0, rows; int32_t first; std::vector<int32_t> ids; };
    for (const Shard& g : {Shard{GLM_TYPE_F32, 7, 5, 10, {9, 10, 14, 15, 0, 12, 100, 11, 10, -1}},
                           Shard{GLM_TYPE_BF16, 33, 4, 0, {3, 4, 0, 7, 2}}, Shard{GLM_TYPE_F16, 9, 3, 3, {1}},
                           Shard{GLM_TYPE_NVFP4, 32, 6, 6, {5, 6, 11, 12, 8}}}) {
        cases.push_back(make_case(
            fmt::format("get_rows_shard {} [{}x{}] rows [{}, {}) ids={}", glm_type_name(g.type), g.ne0, g.rows, g.first,
                        g.first + g.rows, fmt::join(g.ids, ",")),
            [g](OpBuild& b) {
                glm_tensor* table =
                    g.type == GLM_TYPE_NVFP4 ? b.nvfp4(g.ne0, g.rows, 1) : b.rand(g.type, {g.ne0, g.rows});
                glm_tensor* id = b.i32({int64_t(g.ids.size())}, g.ids);
                b.in = {table, id};
                return glm_get_rows_shard(b.ctx, table, id, g.first);
            },
            [g](const OpBuild& b, const glm_tensor* out) {
                return map_out(out, [&](int64_t i0, int64_t i1, int64_t, int64_t) {
                    const int64_t row = int64_t(b.geti(b.in[1], i1)) - g.first;
                    if (row < 0 || row >= g.rows) return 0.0;
                    if (g.type == GLM_TYPE_NVFP4) return double(float(b.nvfp4_at(b.in[0], i0, row, 0)));
                    return b.get(b.in[0], i0, row);
                });
            },
            TOL_EXACT));
    }

    // set_rows: negative slots write nothing; every other row of the cache keeps its old bytes.
    struct SetRows { glm_type type; int64_t ne0, n_slots; std::vector<int32_t> slots; };
    for (const SetRows& g : {SetRows{GLM_TYPE_F32, 7, 9, {3, -1, 8, -5, 0}},
                             SetRows{GLM_TYPE_BF16, 33, 11, {-1, -1, 10, 2}},
                             SetRows{GLM_TYPE_F8_E4M3, 16, 6, {-1, 4, -3}}, SetRows{GLM_TYPE_F32, 5, 3, {-1, -2}}}) {
        cases.push_back(make_case(
            fmt::format("set_rows skip negative slots {} cache [{}x{}] slots={}", glm_type_name(g.type), g.ne0, g.n_slots,
                        fmt::join(g.slots, ",")),
            [g](OpBuild& b) {
                glm_tensor* cache = b.rand(g.type, {g.ne0, g.n_slots});
                glm_tensor* rows = b.rand(GLM_TYPE_F32, {g.ne0, int64_t(g.slots.size())});
                glm_tensor* slots = b.i32({int64_t(g.slots.size())}, g.slots);
                b.in = {cache, rows, slots};
                return glm_set_rows(b.ctx, cache, rows, slots);
            },
            [g](const OpBuild& b, const glm_tensor* out) {
                return map_out(out, [&](int64_t i0, int64_t i1, int64_t, int64_t) {
                    for (size_t i = 0; i < g.slots.size(); ++i)
                        if (g.slots[i] == i1) return stored(g.type, b.get(b.in[1], i0, int64_t(i)));
                    return b.get(b.in[0], i0, i1);
                });
            },
            TOL_EXACT));
    }

    // cast: selected slots (I32, -1 for none) to f32 for the float-only exchanges and back; every
    // integer below 2^24 survives both ways. Sources are views (every other column, offset).
    for (bool to_f32 : {true, false}) {
        cases.push_back(make_case(
            fmt::format("cast {} (slots up to 202751 and -1, strided view)", to_f32 ? "i32 -> f32" : "f32 -> i32"),
            [to_f32](OpBuild& b) {
                std::vector<int32_t> v;
                for (int i = 0; i < 9 * 6; ++i) v.push_back(i % 7 == 3 ? -1 : int32_t(b.rng.randint(0, 202752)));
                v[1] = 202751;    // the view below starts at element 1 and reads rows 0, 2, 4
                v[2] = 16777215;  // 2^24 - 1: every integer up to it is exact
                v[20] = -1;
                glm_tensor* a = to_f32 ? b.i32({9, 6}, v)
                                       : b.values(GLM_TYPE_F32, {9, 6}, [&](int64_t i) { return double(v[size_t(i)]); });
                glm_tensor* view = glm_view_2d(b.ctx, a, 4, 3, a->nb[1] * 2, a->nb[0]);
                b.in = {view};
                return glm_cast(b.ctx, view, to_f32 ? GLM_TYPE_F32 : GLM_TYPE_I32);
            },
            [](const OpBuild& b, const glm_tensor* out) {
                return map_out(out, [&](int64_t i0, int64_t i1, int64_t, int64_t) { return b.get(b.in[0], i0, i1); });
            },
            TOL_EXACT));
    }

    // pad_block: src a strided view (offset one element, every other row, two of three planes) or a
    // transposed one, or the lse column of an attn_part-shaped tensor (the engine's use).
    struct Pad { int src; int dim, n_blocks, block; };
    for (Pad g : {Pad{0, 0, 3, 2}, Pad{0, 1, 2, 0}, Pad{0, 2, 4, 1}, Pad{0, 1, 1, 0}, Pad{1, 1, 3, 1}, Pad{1, 0, 2, 0},
                  Pad{2, 0, 3, 1}, Pad{2, 2, 2, 1}}) {
        const char* src_name[] = {"strided [5x3x2] view", "transposed [4x6] view", "lse column [1x5x4] view"};
        cases.push_back(make_case(
            fmt::format("pad_block {} dim={} n_blocks={} block={}", src_name[g.src], g.dim, g.n_blocks, g.block),
            [g](OpBuild& b) {
                glm_tensor* a;
                if (g.src == 0) {
                    glm_tensor* src = b.rand(GLM_TYPE_F32, {9, 7, 3});
                    a = glm_view_3d(b.ctx, src, 5, 3, 2, src->nb[1] * 2, src->nb[2], 4);
                } else if (g.src == 1) {
                    a = glm_transpose(b.ctx, b.rand(GLM_TYPE_F32, {6, 4}));
                } else {
                    glm_tensor* src = b.rand(GLM_TYPE_F32, {6, 5, 4});
                    a = glm_view_3d(b.ctx, src, 1, 5, 4, src->nb[1], src->nb[2], 5 * 4);
                }
                b.in = {a};
                return glm_pad_block(b.ctx, a, g.dim, g.n_blocks, g.block);
            },
            [g](const OpBuild& b, const glm_tensor* out) {
                const glm_tensor* a = b.in[0];
                return map_out(out, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
                    int64_t idx[4] = {i0, i1, i2, i3};
                    if (idx[g.dim] / a->ne[g.dim] != g.block) return 0.0;
                    idx[g.dim] -= g.block * a->ne[g.dim];
                    return b.get(a, idx[0], idx[1], idx[2], idx[3]);
                });
            },
            TOL_EXACT));
    }

    // topk_candidates: scores [n, S] (strided columns, non-finite values planted), ids with -1 (a whole
    // column of them in one case); positions id * N + rank.
    struct Cand { int64_t n, S, k; int N, rank; bool strided, all_holes; };
    for (Cand g : {Cand{11, 5, 6, 3, 2, true, false}, Cand{9, 1, 9, 1, 0, false, false}, Cand{40, 3, 7, 8, 5, true, true}}) {
        cases.push_back(make_case(
            fmt::format("topk_candidates scores=[{}x{}]{} k={} N={} rank={}{}", g.n, g.S, g.strided ? " strided" : "",
                        g.k, g.N, g.rank, g.all_holes ? " (a column of -1)" : ""),
            [g](OpBuild& b) {
                glm_tensor* a = b.rand(GLM_TYPE_F32, {g.strided ? g.n + 2 : g.n, g.S});
                b.plant_nonfinite(a, 1);
                if (g.strided) a = glm_view_2d(b.ctx, a, g.n, g.S, a->nb[1], 8);
                std::vector<int32_t> ids;
                for (int64_t s = 0; s < g.S; ++s)
                    for (int64_t i = 0; i < g.k; ++i) {
                        const bool hole = (g.all_holes && s == 1) || b.rng.randint(0, 4) == 0;
                        ids.push_back(hole ? -1 : int32_t(b.rng.randint(0, g.n)));
                    }
                glm_tensor* id = b.i32({g.k, g.S}, ids);
                b.in = {a, id};
                return glm_topk_candidates(b.ctx, a, id, g.N, g.rank);
            },
            [g](const OpBuild& b, const glm_tensor* out) {
                return map_out(out, [&](int64_t i, int64_t which, int64_t s, int64_t) {
                    const int32_t id = b.geti(b.in[1], i, s);
                    if (which == 1) return id < 0 ? -1.0 : double(int64_t(id) * g.N + g.rank);
                    return id < 0 ? -INF : b.get(b.in[0], id, s);
                });
            },
            TOL_EXACT));
    }

    // topk_merge: local lists of distinct slots with -1 holes; the gathered candidates with tied scores
    // at random places (positions decide), -inf entries (a column of only -inf where n_valid is 0, and
    // fewer valid than k in another); k over M = N * k_l, every rank position.
    struct Merge2 { int N; int64_t k_l, k, S; int rank; int64_t n_valid; };
    for (Merge2 g : {Merge2{3, 5, 7, 4, 0, 15}, Merge2{3, 5, 7, 4, 2, 12}, Merge2{2, 9, 4, 1, 1, 18},
                     Merge2{4, 3, 12, 2, 3, 12}, Merge2{3, 6, 5, 3, 1, 0}, Merge2{4, 64, 100, 2, 1, 200},
                     Merge2{4, 8, 20, 3, 2, 13},
                     Merge2{2, 2048, 2048, 1, 0, 3500}}) {
        cases.push_back(make_case(
            fmt::format("topk_merge N={} k_l={} k={} S={} rank={} valid={}", g.N, g.k_l, g.k, g.S, g.rank, g.n_valid),
            [g](OpBuild& b) {
                std::vector<int32_t> local;
                for (int64_t s = 0; s < g.S; ++s) {
                    const std::vector<int32_t> l = holes(b.rng, 50 * g.k_l, g.k_l - 1, g.k_l);
                    local.insert(local.end(), l.begin(), l.end());
                }
                glm_tensor* lo = b.i32({g.k_l, g.S}, local);
                glm_tensor* all = gathered_candidates(b, g.N * g.k_l, g.S, g.n_valid);
                b.in = {lo, all};
                return merge_of(b, lo, all, g.k, g.rank);
            },
            [](const OpBuild& b, const glm_tensor* out) {
                const std::vector<int32_t> v = host_ids(b, out);
                return Ref(v.begin(), v.end());
            },
            TOL_EXACT));
    }

    // attn_merge: part's lse is lse_all[rank] (as the engine gathers it); rows where every rank's lse
    // is -inf, where only this rank's is, and lse values near 200 (e^200 overflows f32: the max shift
    // must happen first). lse_all may be a strided view.
    struct Merge { int64_t Dv, H, S; int N, rank; bool strided; };
    for (Merge g : {Merge{7, 3, 5, 3, 1, false}, Merge{33, 5, 1, 2, 0, true}, Merge{512, 16, 2, 4, 3, false},
                    Merge{9, 2, 3, 4, 0, true}}) {
        cases.push_back(make_case(
            fmt::format("attn_merge Dv={} H={} S={} N={} rank={}{}", g.Dv, g.H, g.S, g.N, g.rank,
                        g.strided ? " strided lse_all" : ""),
            [g](OpBuild& b) {
                const int64_t W = g.strided ? g.N + 2 : g.N;
                auto lse = std::make_shared<std::vector<double>>();
                for (int64_t s = 0; s < g.S; ++s)
                    for (int64_t h = 0; h < g.H; ++h) {
                        const int64_t row = h + g.H * s;
                        for (int64_t r = 0; r < W; ++r) {
                            double v = b.rng.uniform(-3, 8);
                            if (row == 0) v = -INF;                             // no rank sees a key
                            if (row == 1 && r == (g.strided ? 1 : 0) + g.rank) v = -INF;  // this rank sees none
                            if (row == g.H * g.S - 1) v += 200;                 // overflow without the shift
                            lse->push_back(v);
                        }
                    }
                glm_tensor* all = b.values(GLM_TYPE_F32, {W, g.H, g.S}, [lse](int64_t i) { return (*lse)[size_t(i)]; });
                if (g.strided) all = glm_view_3d(b.ctx, all, g.N, g.H, g.S, all->nb[1], all->nb[2], 4);
                const int64_t off = g.strided ? 1 : 0;
                glm_tensor* part = b.values(GLM_TYPE_F32, {g.Dv + 1, g.H, g.S}, [&, lse](int64_t i) {
                    const int64_t d = i % (g.Dv + 1), row = i / (g.Dv + 1);
                    return d == g.Dv ? (*lse)[size_t(row * W + off + g.rank)] : b.rng.normal();
                });
                b.in = {part, all};
                return glm_attn_merge(b.ctx, part, all);
            },
            [g](const OpBuild& b, const glm_tensor* out) {
                const glm_tensor *part = b.in[0], *all = b.in[1];
                return map_out(out, [&](int64_t d, int64_t h, int64_t s, int64_t) {
                    const double own = b.get(part, g.Dv, h, s);
                    if (own == -INF) return 0.0;
                    double mx = -INF, sum = 0;
                    for (int r = 0; r < g.N; ++r) mx = std::max(mx, b.get(all, r, h, s));
                    for (int r = 0; r < g.N; ++r) sum += std::exp(b.get(all, r, h, s) - mx);
                    return b.get(part, d, h, s) * std::exp(own - mx - std::log(sum));
                });
            },
            TOL_MERGE));
    }
}

}  // namespace

void add_context_parallel_cases(std::vector<OpCase>& cases) {
    add_small_cases(cases);
    add_attn_part_cases(cases);
    add_exchange_cases(cases);
}

}  // namespace optest
