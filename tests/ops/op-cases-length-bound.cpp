// Ops bounded at run time by q_pos: the decode graph is built once for the whole context (caches
// and score columns span every slot) and replayed at each position, so these cases make tensors far
// longer than their filled part -- attention over 9000 cache rows with q_pos = 700, top_k over a
// 202,753-row column with q_pos = 100 -- and check that nothing past q_pos leaks in (the rows past
// it hold ordinary random values, larger ones included, so a kernel that reads them gets a wrong
// answer). Edge positions too: q_pos = -1 (no visible key: zeros, all -inf, all -1) and q_pos past
// the end of the tensor. References are naive double precision, written from tensor.h; they decode
// only the rows they need, so they cost what the filled part costs.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include <fmt/ranges.h>

#include "tests/ops/op-cases.h"

namespace optest {
namespace {

constexpr double INF = std::numeric_limits<double>::infinity();

// The tolerances of op-cases.cpp, for the same reasons (see there):
constexpr Tolerance TOL_EXACT{0, INF};            // indices
constexpr Tolerance TOL_ATTN{1e-10, INF};         // f32 dot products and softmax vs double
constexpr Tolerance TOL_ATTN_TC{3e-5, INF};       // CUDA MQA tensor-core path: bf16 q and P
constexpr Tolerance TOL_INDEXER_TC{1e-7, INF};    // CUDA indexer tensor-core path: q as bf16 hi + lo

// Elements [0, n0) of t[:, i1, i2] as doubles.
std::vector<double> row_of(const OpBuild& b, const glm_tensor* t, int64_t n0, int64_t i1, int64_t i2 = 0) {
    std::vector<double> r(static_cast<size_t>(n0));
    for (int64_t i = 0; i < n0; ++i) r[size_t(i)] = b.get(t, i, i1, i2);
    return r;
}

// ---- attention ---------------------------------------------------------------------------------
}  // namespace

Ref attn_reference_over(const OpBuild& b, const glm_tensor* out, const std::function<std::vector<int64_t>(int64_t)>& keys_of) {
    const glm_tensor *q = b.in[0], *k = b.in[1], *v = b.in[2];
    const int64_t Dk = q->ne[0], H = q->ne[1], S = q->ne[2], Hk = k->ne[1], Dv = v->ne[0];
    const double scale = double(out->params[0].f);
    Ref r(size_t(Dv * H * S), 0.0);
    for (int64_t s = 0; s < S; ++s) {
        const std::vector<int64_t> keys = keys_of(s);
        if (keys.empty()) continue;  // zeros
        for (int64_t kh = 0; kh < Hk; ++kh) {
            std::vector<std::vector<double>> krows, vrows;  // decoded once per (query, K/V head)
            for (int64_t t : keys) {
                krows.push_back(row_of(b, k, Dk, kh, t));
                vrows.push_back(row_of(b, v, Dv, kh, t));
            }
            for (int64_t h = 0; h < H; ++h) {
                if ((Hk == 1 ? 0 : h) != kh) continue;
                const std::vector<double> qh = row_of(b, q, Dk, h, s);
                std::vector<double> p(keys.size());
                double mx = -INF, sum = 0;
                for (size_t i = 0; i < keys.size(); ++i) {
                    double d = 0;
                    for (int64_t c = 0; c < Dk; ++c) d += qh[size_t(c)] * krows[i][size_t(c)];
                    p[i] = scale * d;
                    mx = std::max(mx, p[i]);
                }
                for (double& x : p) sum += (x = std::exp(x - mx));
                for (int64_t d = 0; d < Dv; ++d) {
                    double acc = 0;
                    for (size_t i = 0; i < keys.size(); ++i) acc += p[i] * vrows[i][size_t(d)];
                    r[size_t(d + Dv * (h + H * s))] = acc / sum;
                }
            }
        }
    }
    return r;
}

// in = {q, k, v, q_pos, key_ids or null}. Query s attends key slots t <= q_pos[s] (t < T), or with
// key_ids the listed slots among those (entries < 0 or > q_pos[s] ignored; the cases list no slot
// twice). Softmax of scale * q.k in double; no visible key gives zeros.
Ref attn_reference(const OpBuild& b, const glm_tensor* out) {
    const glm_tensor *qp = b.in[3], *kid = b.in[4];
    const int64_t T = b.in[1]->ne[2];
    return attn_reference_over(b, out, [&](int64_t s) {
        const int64_t pos = b.geti(qp, s);
        std::vector<int64_t> keys;
        if (kid) {
            for (int64_t j = 0; j < kid->ne[0]; ++j) {
                const int64_t t = b.geti(kid, j, s);
                if (t >= 0 && t <= pos && t < T) keys.push_back(t);
            }
        } else {
            for (int64_t t = 0; t <= pos && t < T; ++t) keys.push_back(t);
        }
        return keys;
    });
}

namespace {

// key_ids column of n_sel entries for a query at pos over T slots: n_valid distinct slots of [0, T)
// (most past pos when pos is small: ignored), at least one visible, two slots past the tensor's end
// (T + 3, T + 1000: past pos, ignored), -1 padding at random places.
std::vector<int32_t> key_ids_column(Rng& rng, int64_t T, int64_t pos, int64_t n_sel, int64_t n_valid) {
    std::vector<int32_t> sel = rng.distinct(T, n_valid);
    if (pos >= 0 && std::none_of(sel.begin(), sel.end(), [&](int32_t t) { return t <= pos; }))
        sel[0] = int32_t(rng.randint(0, std::min(pos, T - 1) + 1));
    for (int32_t past : {int32_t(T + 3), int32_t(T + 1000)})
        if (int64_t(sel.size()) < n_sel) sel.insert(sel.begin() + rng.randint(0, int64_t(sel.size()) + 1), past);
    while (int64_t(sel.size()) < n_sel) sel.insert(sel.begin() + rng.randint(0, int64_t(sel.size()) + 1), -1);
    return sel;
}

void add_attn_cases(std::vector<OpCase>& cases) {
    // Absorbed-MLA decode form (the CUDA tensor-core path): q [576, 16, 1]; k = [576, 1, T] and
    // v = [512, 1, T] views of the same rows of a bf16 cache of T = 9000 slots; key_ids of 2048.
    const int64_t Dk = 576, Dv = 512, H = 16, T = 9000;
    for (int32_t pos : {700, 4100})
        for (bool ids : {false, true}) {
            OpCase c;
            c.name = fmt::format("attn length-bound MLA decode Dk={} Dv={} H={} T={} bf16 cache q_pos={}{}", Dk, Dv, H, T,
                                 pos, ids ? " + key_ids[2048]" : "");
            c.build = [=](OpBuild& b) {
                glm_tensor* q = b.rand(GLM_TYPE_F32, {Dk, H, 1});
                glm_tensor* cache = b.rand(GLM_TYPE_BF16, {Dk, T});
                glm_tensor* k = glm_view_3d(b.ctx, cache, Dk, 1, T, cache->nb[1], cache->nb[1], 0);
                glm_tensor* v = glm_view_3d(b.ctx, cache, Dv, 1, T, cache->nb[1], cache->nb[1], 0);
                glm_tensor* qp = b.i32({1}, {pos});
                glm_tensor* kid = ids ? b.i32({2048, 1}, key_ids_column(b.rng, T, pos, 2048, 1500)) : nullptr;
                b.in = {q, k, v, qp, kid};
                return glm_attn(b.ctx, q, k, v, qp, kid, float(1.0 / std::sqrt(double(Dk))));
            };
            c.reference = attn_reference;
            c.tol = TOL_ATTN_TC;
            cases.push_back(std::move(c));
        }

    // Generic attention (the CUDA split-KV kernel): separate K/V heads, then MQA over a long cache
    // with a short visible part (most splits get no key); ids: key_ids columns of 8.
    struct Gen { int64_t Dk, Dv, H, Hk, T; std::vector<int32_t> pos; bool ids; };
    for (const Gen& g : {Gen{24, 16, 3, 3, 300, {40, 41}, false}, Gen{24, 16, 3, 3, 300, {40, 41}, true},
                         Gen{24, 16, 3, 3, 300, {-1, 0}, false}, Gen{32, 24, 4, 1, 3000, {100}, false},
                         Gen{32, 24, 4, 1, 3000, {2, 2999}, true}}) {
        const int64_t S = int64_t(g.pos.size());
        OpCase c;
        c.name = fmt::format("attn length-bound Dk={} Dv={} H={} Hk={} S={} T={} f32 q_pos={}{}", g.Dk, g.Dv, g.H, g.Hk,
                             S, g.T, fmt::join(g.pos, ","), g.ids ? " + key_ids[8]" : "");
        c.build = [g, S](OpBuild& b) {
            glm_tensor* q = b.rand(GLM_TYPE_F32, {g.Dk, g.H, S});
            glm_tensor* k = b.rand(GLM_TYPE_F32, {g.Dk, g.Hk, g.T});
            glm_tensor* v = b.rand(GLM_TYPE_F32, {g.Dv, g.Hk, g.T});
            glm_tensor* qp = b.i32({S}, g.pos);
            glm_tensor* kid = nullptr;
            if (g.ids) {
                std::vector<int32_t> all;
                for (int64_t s = 0; s < S; ++s) {
                    const std::vector<int32_t> col = key_ids_column(b.rng, g.T, g.pos[size_t(s)], 8, 4);
                    all.insert(all.end(), col.begin(), col.end());
                }
                kid = b.i32({8, S}, all);
            }
            b.in = {q, k, v, qp, kid};
            return glm_attn(b.ctx, q, k, v, qp, kid, float(1.0 / std::sqrt(double(g.Dk))));
        };
        c.reference = attn_reference;
        c.tol = TOL_ATTN;
        c.check_cosine = true;
        cases.push_back(std::move(c));
    }
}

// ---- indexer -----------------------------------------------------------------------------------
// in = {q, k, w, q_pos}: dst[t, s] = sum_h w[h, s] * relu(scale * q[:, h, s].k[:, t]) for
// t <= q_pos[s], -inf after.
void add_indexer_cases(std::vector<OpCase>& cases) {
    // ktype: 0 f32 (CUDA-core kernel), 1 bf16, 2 f8_e4m3 (D = 128, Hi = 32: tensor-core kernel)
    struct Idx { int64_t D, Hi, T; std::vector<int32_t> pos; int ktype; };
    for (const Idx& g : {Idx{128, 32, 9000, {130, 1000}, 1}, Idx{128, 32, 9000, {-1, 5}, 2},
                         Idx{16, 3, 9000, {-1, 77}, 0}}) {
        const int64_t S = int64_t(g.pos.size());
        const char* kname[] = {"f32", "bf16", "f8"};
        OpCase c;
        c.name = fmt::format("indexer length-bound D={} Hi={} S={} T={} k={} q_pos={}", g.D, g.Hi, S, g.T,
                             kname[g.ktype], fmt::join(g.pos, ","));
        c.build = [g, S](OpBuild& b) {
            glm_tensor* q = b.rand(GLM_TYPE_F32, {g.D, g.Hi, S});
            const glm_type kt = g.ktype == 0 ? GLM_TYPE_F32 : g.ktype == 1 ? GLM_TYPE_BF16 : GLM_TYPE_F8_E4M3;
            glm_tensor* k = b.rand(kt, {g.D, g.T});
            glm_tensor* w = b.rand(GLM_TYPE_F32, {g.Hi, S});
            glm_tensor* qp = b.i32({S}, g.pos);
            b.in = {q, k, w, qp};
            return glm_indexer(b.ctx, q, k, w, qp, 0.3f);
        };
        c.reference = [](const OpBuild& b, const glm_tensor* out) {
            const glm_tensor *q = b.in[0], *k = b.in[1], *w = b.in[2], *qp = b.in[3];
            const int64_t D = q->ne[0], Hi = q->ne[1], S = q->ne[2], T = k->ne[1];
            Ref r(size_t(T * S), -INF);
            for (int64_t s = 0; s < S; ++s) {
                std::vector<std::vector<double>> qs;
                for (int64_t h = 0; h < Hi; ++h) qs.push_back(row_of(b, q, D, h, s));
                const int64_t pos = b.geti(qp, s);
                for (int64_t t = 0; t <= pos && t < T; ++t) {
                    const std::vector<double> kt = row_of(b, k, D, t);
                    double total = 0;
                    for (int64_t h = 0; h < Hi; ++h) {
                        double d = 0;
                        for (int64_t c = 0; c < D; ++c) d += qs[size_t(h)][size_t(c)] * kt[size_t(c)];
                        total += b.get(w, h, s) * std::max(0.0, double(out->params[0].f) * d);
                    }
                    r[size_t(t + T * s)] = total;
                }
            }
            return r;
        };
        c.tol = g.ktype == 0 ? TOL_ATTN : TOL_INDEXER_TC;
        cases.push_back(std::move(c));
    }
}

// ---- top_k with q_pos --------------------------------------------------------------------------
// in = {a, q_pos}: column c's candidates are entries 0..q_pos[c] (clamped to the column); the k
// largest of them in descending order (ties: lower index first), -1 past the candidates.
// Contiguous columns take the CUDA multi-block select (or, for <= 4096 candidates, a whole-column
// sort); strided ones the single-block radix select; ties crowd the threshold bucket, so the
// multi-block path falls back to the single-block one.
void add_top_k_cases(std::vector<OpCase>& cases) {
    struct TopK { int64_t n; int k; std::vector<int32_t> pos; bool strided = false; bool ties = false; };
    for (const TopK& g : {TopK{202753, 2048, {3000}}, TopK{202753, 2048, {100}}, TopK{202753, 2048, {250000}},
                          TopK{202753, 2048, {202752}}, TopK{202753, 2048, {5000, 100, 202752}},
                          TopK{202753, 2048, {-1, 4095, 4096}}, TopK{3000, 64, {10, 2000}},
                          TopK{20000, 2048, {5000, 19999}, true}, TopK{131072, 2048, {70000}, false, true},
                          TopK{300000, 2048, {299999, 280000}}})
    for (bool by_index : {false, true}) {  // glm_top_k and glm_top_k_by_index (the same set, by index)
        const int64_t cols = int64_t(g.pos.size());
        OpCase c;
        c.name = fmt::format("top_k{} length-bound n={} cols={} k={} q_pos={}{}{}", by_index ? "_by_index" : "", g.n, cols,
                             g.k, fmt::join(g.pos, ","), g.strided ? " strided" : "", g.ties ? " ties" : "");
        c.build = [g, cols, by_index](OpBuild& b) {
            // distinct values: a random permutation (times 1/4) plus noise below the spacing
            const int64_t rows = g.strided ? g.n + 3 : g.n;
            auto perm = std::make_shared<std::vector<int32_t>>(b.rng.distinct(rows * cols, rows * cols));
            std::function<double(int64_t)> gen = [&b, perm](int64_t i) {
                return 0.25 * (*perm)[size_t(i)] + b.rng.uniform(0, 0.01) - 7;
            };
            if (g.ties) gen = [&b](int64_t) { return double(b.rng.randint(-50, 50)); };
            glm_tensor* a = b.values(GLM_TYPE_F32, {rows, cols}, gen);
            if (g.strided) a = glm_view_2d(b.ctx, a, g.n, cols, a->nb[1], 4);
            glm_tensor* qp = b.i32({cols}, g.pos);
            b.in = {a, qp};
            return by_index ? glm_top_k_by_index(b.ctx, a, g.k, qp) : glm_top_k(b.ctx, a, g.k, qp);
        };
        c.reference = [](const OpBuild& b, const glm_tensor* out) {
            Ref r;
            for (int64_t col = 0; col < out->ne[1]; ++col)
                for (int32_t id : top_k_reference(b, out, col)) r.push_back(double(id));
            return r;
        };
        c.tol = TOL_EXACT;
        cases.push_back(std::move(c));
    }
}

}  // namespace

void add_length_bound_cases(std::vector<OpCase>& cases) {
    add_attn_cases(cases);
    add_indexer_cases(cases);
    add_top_k_cases(cases);
}

}  // namespace optest
