// The decode hot path's row and routing ops at GLM-5.1's per-rank shapes, and the node patterns the
// CUDA backend fuses (cuda/fusion.cu). The shapes pick the CUDA kernels' paths: norm rows of 6144,
// 2048 (a block per row), 512 as a strided view of 576-wide rows, 128 (a warp per row), 7 and
// misaligned views (scalar loads), a row too long for registers (the generic kernel), many rows
// (prefill); moe routing with E = 160 (n_group 1), E = 64 (8 groups, 4 kept) and E = 256 (the most
// the register path holds), E = 288 (the shared-memory fallback), T = 1 and T = 37. The fused cases'
// graphs are the patterns themselves, with every output the fused kernel writes in the case output;
// variants the launchers must refuse (broadcast, strided addends) check the unfused fallback.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include "tests/ops/op-cases.h"

namespace optest {
namespace {

constexpr double INF = std::numeric_limits<double>::infinity();

// The tolerances of op-cases.cpp, for the same reasons (see there):
constexpr Tolerance TOL_EXACT{0, INF};             // expert ids
constexpr Tolerance TOL_ELEMENTWISE{1e-13, INF};   // routing weights: a division and a product
constexpr Tolerance TOL_ROW_REDUCE{1e-11, INF};    // norms: f32 normalisation factors
// The fused router's output holds ids, weights and probabilities side by side: NMSE over the ids'
// large squares would hide a wrong weight, so the absolute limit decides (a wrong id is off by >= 1,
// f32 sigmoid and weights by ~1e-7).
constexpr Tolerance TOL_ROUTE{1e-12, 1e-5};
// Rows through a norm and a rope: the rope's limit (op-cases.cpp: f32 angles at positions < 600).
constexpr Tolerance TOL_ROPE_ROW{1e-8, 2e-4};

enum class W { none, f32, bf16 };
glm_type type_of(W w) { return w == W::bf16 ? GLM_TYPE_BF16 : GLM_TYPE_F32; }
const char* name_of(W w) { return w == W::none ? "none" : w == W::f32 ? "f32" : "bf16"; }

// ---- references -----------------------------------------------------------------------------------
// Norm of every row of x (x(i0, r) gives element i0 of flat row r), ne0 fastest; w and bias may be
// null. RMS: x / sqrt(mean(x^2) + eps) * w; layer: (x - mean) / sqrt(var + eps) * w + bias.
Ref norm_reference(const OpBuild& b, bool rms, int64_t n, int64_t rows, const std::function<double(int64_t, int64_t)>& x,
                   const glm_tensor* w, const glm_tensor* bias, float eps) {
    Ref r;
    r.reserve(size_t(n * rows));
    std::vector<double> row(static_cast<size_t>(n));
    for (int64_t i1 = 0; i1 < rows; ++i1) {
        double s = 0, ss = 0;
        for (int64_t i = 0; i < n; ++i) {
            row[size_t(i)] = x(i, i1);
            s += row[size_t(i)];
            ss += row[size_t(i)] * row[size_t(i)];
        }
        const double mean = rms ? 0.0 : s / double(n);
        double var = ss / double(n);
        if (!rms) {
            var = 0;
            for (double v : row) var += (v - mean) * (v - mean);
            var /= double(n);
        }
        const double inv = 1.0 / std::sqrt(var + double(eps));
        for (int64_t i = 0; i < n; ++i) {
            double y = (row[size_t(i)] - mean) * inv;
            if (w) y *= b.get(w, i);
            if (bias) y += b.get(bias, i);
            r.push_back(y);
        }
    }
    return r;
}

// tensor.h's ranking: larger first, NaN below every number, ties to the lower index.
bool ranks_before(double va, int64_t ia, double vb, int64_t ib) {
    const bool na = std::isnan(va), nb = std::isnan(vb);
    if (na != nb) return nb;
    if (!na && va != vb) return va > vb;
    return ia < ib;
}

// Indices of v in ranking order; with margin > 0, asserts the first `check` + 1 entries are apart by
// more than margin (inputs chosen so that a last-ulp difference cannot reorder them).
std::vector<int64_t> ranked(const std::vector<double>& v, int64_t check = 0, double margin = 0) {
    std::vector<int64_t> idx(v.size());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = int64_t(i);
    std::sort(idx.begin(), idx.end(), [&](int64_t a, int64_t c) { return ranks_before(v[size_t(a)], a, v[size_t(c)], c); });
    for (int64_t j = 0; margin > 0 && j < check && j + 1 < int64_t(v.size()); ++j)
        GLM_ASSERT(v[size_t(idx[size_t(j)])] - v[size_t(idx[size_t(j + 1)])] > margin);
    return idx;
}

// moe_select for one token from its biased f32 scores (tensor.h): groups scored by the f32 sum of
// their two best members, experts of all but the topk_group best groups masked to -inf, then the k
// best experts in ranking order.
std::vector<int64_t> select_reference(std::vector<double> choice, int k, int n_group, int topk_group, double margin = 0) {
    const int64_t E = int64_t(choice.size()), per = E / n_group;
    if (n_group > 1) {
        std::vector<double> score(static_cast<size_t>(n_group));
        for (int g = 0; g < n_group; ++g) {
            const std::vector<double> members(choice.begin() + g * per, choice.begin() + (g + 1) * per);
            const std::vector<int64_t> best = ranked(members);
            const float top = float(members[size_t(best[0])]);  // 0 + v0 in f32 is v0 (or +0 for -0: a tie)
            score[size_t(g)] = per > 1 ? double(top + float(members[size_t(best[1])])) : double(top);
        }
        const std::vector<int64_t> groups = ranked(score, topk_group, margin);
        std::vector<bool> keep(static_cast<size_t>(n_group), false);
        for (int g = 0; g < topk_group; ++g) keep[size_t(groups[size_t(g)])] = true;
        for (int64_t e = 0; e < E; ++e)
            if (!keep[size_t(e / per)]) choice[size_t(e)] = -INF;
    }
    std::vector<int64_t> order = ranked(choice, k, margin);
    order.resize(size_t(k));
    return order;
}

// moe_weights for one token: probs of the chosen experts, normalised by their sum (+1e-20), scaled.
std::vector<double> weights_reference(const std::vector<double>& chosen_probs, bool normalize, double scaling) {
    double sum = 0;
    for (double p : chosen_probs) sum += p;
    std::vector<double> w;
    for (double p : chosen_probs) w.push_back(normalize ? p / (sum + 1e-20) * scaling : p);
    return w;
}

// Distinct values spaced `step` apart (a random permutation of 0..n-1, scaled and shifted).
std::function<double(int64_t)> spaced(Rng& rng, int64_t n, double step, double lo) {
    auto perm = std::make_shared<std::vector<int32_t>>(rng.distinct(n, n));
    return [perm, n, step, lo](int64_t i) { return lo + step * (*perm)[size_t(i % n)]; };
}

// ---- rms_norm / layer_norm ------------------------------------------------------------------------
// x: [n, rows] (or [n, 4, rows / 4] with three_d), a view at element `offset` of rows `wide` floats
// apart when wide > n.
struct NormShape { int64_t n, rows; W w; int64_t wide = 0, offset = 0; bool three_d = false; };

glm_tensor* norm_input(OpBuild& b, const NormShape& g) {
    const int64_t wide = std::max(g.wide, g.n);
    if (g.three_d) {
        glm_tensor* x = b.rand(GLM_TYPE_F32, {wide, 4, g.rows / 4}, 2.0);
        return wide == g.n ? x : glm_view_3d(b.ctx, x, g.n, 4, g.rows / 4, x->nb[1], x->nb[2], size_t(g.offset) * 4);
    }
    glm_tensor* x = b.rand(GLM_TYPE_F32, {wide, g.rows}, 2.0);
    return wide == g.n ? x : glm_view_2d(b.ctx, x, g.n, g.rows, x->nb[1], size_t(g.offset) * 4);
}

std::string norm_shape_name(const NormShape& g) {
    std::string s = fmt::format("n={} rows={}", g.n, g.rows);
    if (g.wide > g.n) s += fmt::format(" view of {}-wide rows at {}", g.wide, g.offset);
    if (g.three_d) s += " 3-d";
    return s;
}

// Element i0 of flat row r of a 2-d or [n, 4, rows/4] x.
double x_at(const OpBuild& b, const glm_tensor* x, int64_t i0, int64_t r) { return b.get(x, i0, r % x->ne[1], r / x->ne[1]); }

void add_norm_cases(std::vector<OpCase>& cases) {
    for (const NormShape& g : {NormShape{6144, 1, W::bf16}, NormShape{6144, 3, W::f32}, NormShape{2048, 1, W::bf16},
                               NormShape{2048, 64, W::none}, NormShape{512, 1, W::bf16, 576, 0},
                               NormShape{512, 37, W::f32, 576, 0}, NormShape{512, 5, W::bf16, 576, 1},
                               NormShape{512, 300, W::bf16}, NormShape{128, 1, W::f32}, NormShape{7, 5, W::f32},
                               NormShape{7, 1, W::none}, NormShape{3001, 2, W::bf16}, NormShape{6144, 2, W::f32, 6145, 1},
                               NormShape{128, 12, W::bf16, 192, 64, true}, NormShape{16384, 1, W::f32},
                               NormShape{16388, 2, W::none}}) {
        cases.push_back(make_case(
            fmt::format("rms_norm {} weight={}", norm_shape_name(g), name_of(g.w)),
            [g](OpBuild& b) {
                glm_tensor* x = norm_input(b, g);
                glm_tensor* w = g.w == W::none ? nullptr : b.rand(type_of(g.w), {g.n});
                b.in = {x, w};
                return glm_rms_norm(b.ctx, x, w, 1e-5f);
            },
            [g](const OpBuild& b, const glm_tensor*) {
                const glm_tensor* x = b.in[0];
                return norm_reference(b, true, g.n, g.rows, [&](int64_t i, int64_t r) { return x_at(b, x, i, r); }, b.in[1],
                                      nullptr, 1e-5f);
            },
            TOL_ROW_REDUCE));
    }
    struct LNorm { NormShape s; bool bias; };
    for (const LNorm& g : {LNorm{{128, 1, W::f32}, true}, LNorm{{128, 37, W::bf16}, true}, LNorm{{128, 3, W::none}, false},
                           LNorm{{7, 4, W::f32}, true}, LNorm{{2048, 2, W::f32}, false},
                           LNorm{{128, 5, W::f32, 130, 1}, true}}) {
        cases.push_back(make_case(
            fmt::format("layer_norm {} weight={}{}", norm_shape_name(g.s), name_of(g.s.w), g.bias ? " bias" : ""),
            [g](OpBuild& b) {
                // a mean far from 0 and a small spread: a one-pass variance would cancel badly
                glm_tensor* x = norm_input(b, g.s);
                for (int64_t i = 0; i < glm_nelements(glm_view_root(x)); ++i) {
                    float v;
                    std::memcpy(&v, b.host[glm_view_root(x)].data() + i * 4, 4);
                    v = 3.0f + 0.25f * v;
                    std::memcpy(b.host[glm_view_root(x)].data() + i * 4, &v, 4);
                }
                glm_tensor* w = g.s.w == W::none ? nullptr : b.rand(type_of(g.s.w), {g.s.n});
                glm_tensor* bias = g.bias ? b.rand(type_of(g.s.w), {g.s.n}) : nullptr;
                b.in = {x, w, bias};
                return glm_layer_norm(b.ctx, x, w, bias, 1e-6f);
            },
            [g](const OpBuild& b, const glm_tensor*) {
                const glm_tensor* x = b.in[0];
                return norm_reference(b, false, g.s.n, g.s.rows, [&](int64_t i, int64_t r) { return x_at(b, x, i, r); },
                                      b.in[1], b.in[2], 1e-6f);
            },
            TOL_ROW_REDUCE));
    }
}

// ---- fused residual add + rms_norm ------------------------------------------------------------------
// out = concat(rms_norm(a + b, w), a + b) along ne0: both outputs of the fused kernel. broadcast (b
// one row) and strided (a a view) are layouts the launcher refuses; sum_output marks the sum as a
// graph output and returns the norm alone.
struct AddNorm { int64_t n, rows; W w; bool broadcast = false, strided = false, sum_output = false; };

void add_add_norm_cases(std::vector<OpCase>& cases) {
    for (const AddNorm& g : {AddNorm{6144, 1, W::bf16}, AddNorm{6144, 37, W::bf16}, AddNorm{2048, 1, W::f32},
                             AddNorm{512, 4, W::none}, AddNorm{7, 3, W::f32}, AddNorm{2048, 5, W::bf16, false, false, true},
                             AddNorm{64, 3, W::f32, true}, AddNorm{64, 3, W::f32, false, true}}) {
        std::string name = fmt::format("fused add+rms_norm n={} rows={} weight={}", g.n, g.rows, name_of(g.w));
        if (g.broadcast) name += " broadcast (unfused)";
        if (g.strided) name += " strided addend (unfused)";
        if (g.sum_output) name += " sum marked output";
        cases.push_back(make_case(
            name,
            [g](OpBuild& b) {
                glm_tensor* x = b.rand(GLM_TYPE_F32, {g.strided ? g.n + 3 : g.n, g.rows});
                if (g.strided) x = glm_view_2d(b.ctx, x, g.n, g.rows, x->nb[1], 4);
                glm_tensor* y = b.rand(GLM_TYPE_F32, {g.n, g.broadcast ? 1 : g.rows});
                glm_tensor* w = g.w == W::none ? nullptr : b.rand(type_of(g.w), {g.n});
                b.in = {x, y, w};
                glm_tensor* sum = glm_add(b.ctx, x, y);
                glm_tensor* norm = glm_rms_norm(b.ctx, sum, w, 1e-6f);
                if (!g.sum_output) return glm_concat(b.ctx, norm, sum, 0);
                sum->flags |= GLM_FLAG_OUTPUT;
                return norm;
            },
            [g](const OpBuild& b, const glm_tensor*) {
                const glm_tensor *x = b.in[0], *y = b.in[1];
                auto sum = [&](int64_t i, int64_t r) {  // the ADD node's f32 result
                    return double(float(b.get(x, i, r) + b.get(y, i, g.broadcast ? 0 : r)));
                };
                const Ref norm = norm_reference(b, true, g.n, g.rows, sum, b.in[2], nullptr, 1e-6f);
                if (g.sum_output) return norm;
                Ref r;
                for (int64_t row = 0; row < g.rows; ++row) {
                    r.insert(r.end(), norm.begin() + row * g.n, norm.begin() + (row + 1) * g.n);
                    for (int64_t i = 0; i < g.n; ++i) r.push_back(sum(i, row));
                }
                return r;
            },
            TOL_ROW_REDUCE));
    }
}

// ---- moe_select / moe_weights -----------------------------------------------------------------------
struct Route { int64_t E, T; int k, n_group, topk_group; bool nonfinite = false; };

std::string route_name(const Route& g) {
    return fmt::format("E={} T={} k={} n_group={} topk_group={}{}", g.E, g.T, g.k, g.n_group, g.topk_group,
                       g.nonfinite ? " nonfinite" : "");
}

void add_moe_cases(std::vector<OpCase>& cases) {
    for (const Route& g : {Route{160, 1, 8, 1, 1}, Route{160, 37, 8, 1, 1}, Route{64, 1, 8, 8, 4}, Route{64, 37, 8, 8, 4},
                           Route{256, 5, 8, 8, 4}, Route{288, 3, 8, 1, 1}, Route{160, 6, 8, 1, 1, true},
                           Route{64, 6, 8, 8, 4, true}, Route{40, 2, 40, 1, 1}}) {
        cases.push_back(make_case(
            "moe_select " + route_name(g),
            [g](OpBuild& b) {
                // probs as a view of wider rows; scores with exact ties (multiples of 1/64) test the
                // index rule, planted NaN / +-inf the value order
                glm_tensor* probs = b.values(GLM_TYPE_F32, {g.E + 3, g.T}, [&](int64_t) { return double(b.rng.randint(0, 64)) / 64; });
                if (g.nonfinite) b.plant_nonfinite(probs, 3);
                glm_tensor* view = glm_view_2d(b.ctx, probs, g.E, g.T, probs->nb[1], 0);
                glm_tensor* bias = b.values(GLM_TYPE_F32, {g.E}, [&](int64_t) { return double(b.rng.randint(-2, 3)) / 64; });
                b.in = {view, bias};
                return glm_moe_select(b.ctx, view, bias, g.k, g.n_group, g.topk_group);
            },
            [g](const OpBuild& b, const glm_tensor*) {
                Ref r;
                for (int64_t t = 0; t < g.T; ++t) {
                    std::vector<double> choice(static_cast<size_t>(g.E));
                    for (int64_t e = 0; e < g.E; ++e) choice[size_t(e)] = double(float(b.get(b.in[0], e, t) + b.get(b.in[1], e)));
                    for (int64_t e : select_reference(choice, g.k, g.n_group, g.topk_group)) r.push_back(double(e));
                }
                return r;
            },
            TOL_EXACT));
    }
    struct Weights { int64_t E, n_used, T; bool normalize; };
    for (const Weights& g : {Weights{160, 8, 1, true}, Weights{160, 8, 37, true}, Weights{160, 8, 3, false},
                             Weights{64, 40, 3, true}}) {
        cases.push_back(make_case(
            fmt::format("moe_weights E={} n_used={} T={} normalize={} (strided probs and ids)", g.E, g.n_used, g.T, g.normalize),
            [g](OpBuild& b) {
                glm_tensor* probs = b.values(GLM_TYPE_F32, {g.E + 1, g.T}, [&](int64_t) { return b.rng.uniform(0.0, 1.0); });
                std::vector<int32_t> ids;
                for (int64_t t = 0; t < g.T; ++t) {
                    for (int32_t e : b.rng.distinct(g.E, g.n_used)) ids.push_back(e);
                    ids.push_back(-1);  // the column past the view
                }
                glm_tensor* id = b.i32({g.n_used + 1, g.T}, ids);
                glm_tensor* pv = glm_view_2d(b.ctx, probs, g.E, g.T, probs->nb[1], 4);
                glm_tensor* iv = glm_view_2d(b.ctx, id, g.n_used, g.T, id->nb[1], 0);
                b.in = {pv, iv};
                return glm_moe_weights(b.ctx, pv, iv, g.normalize, g.normalize ? 2.5f : 1.0f);
            },
            [g](const OpBuild& b, const glm_tensor*) {
                Ref r;
                for (int64_t t = 0; t < g.T; ++t) {
                    std::vector<double> chosen;
                    for (int64_t j = 0; j < g.n_used; ++j) chosen.push_back(b.get(b.in[0], b.geti(b.in[1], j, t), t));
                    for (double w : weights_reference(chosen, g.normalize, g.normalize ? 2.5 : 1.0)) r.push_back(w);
                }
                return r;
            },
            TOL_ELEMENTWISE));
    }
}

// ---- fused router epilogue: sigmoid -> moe_select -> moe_weights --------------------------------------
// out = concat(weights, ids as f32, probs) along ne0, [2k + E, T]: the three outputs of the fused
// kernel. The ids come out through get_rows of a table holding e at row e (after the pattern, so the
// three nodes stay consecutive). Logits are spaced so that the choice is apart by more than an ulp of
// expf everywhere it matters (the reference asserts it).
void add_route_cases(std::vector<OpCase>& cases) {
    for (const Route& g : {Route{160, 1, 8, 1, 1}, Route{160, 37, 8, 1, 1}, Route{64, 1, 8, 8, 4}, Route{64, 37, 8, 8, 4},
                           Route{256, 3, 8, 8, 4}, Route{288, 2, 8, 1, 1}}) {
        cases.push_back(make_case(
            "fused sigmoid+moe_select+moe_weights " + route_name(g) + (g.E > 256 ? " (unfused)" : ""),
            [g](OpBuild& b) {
                glm_tensor* logits = b.values(GLM_TYPE_F32, {g.E, g.T}, spaced(b.rng, g.E * g.T, 6.0 / double(g.E * g.T), -3.0));
                glm_tensor* bias = b.values(GLM_TYPE_F32, {g.E}, [&](int64_t) { return b.rng.uniform(-0.05, 0.05); });
                glm_tensor* table = b.values(GLM_TYPE_F32, {1, g.E}, [](int64_t i) { return double(i); });
                b.in = {logits, bias};
                glm_tensor* probs = glm_sigmoid(b.ctx, logits);
                glm_tensor* ids = glm_moe_select(b.ctx, probs, bias, g.k, g.n_group, g.topk_group);
                glm_tensor* weights = glm_moe_weights(b.ctx, probs, ids, true, 2.5f);
                glm_tensor* flat_ids = glm_reshape(b.ctx, ids, 1, std::vector<int64_t>{g.k * g.T}.data());
                glm_tensor* ids_f32 = glm_reshape_2d(b.ctx, glm_get_rows(b.ctx, table, flat_ids), g.k, g.T);
                return glm_concat(b.ctx, glm_concat(b.ctx, weights, ids_f32, 0), probs, 0);
            },
            [g](const OpBuild& b, const glm_tensor*) {
                Ref r;
                for (int64_t t = 0; t < g.T; ++t) {
                    std::vector<double> probs(static_cast<size_t>(g.E)), choice(static_cast<size_t>(g.E));
                    for (int64_t e = 0; e < g.E; ++e) {
                        probs[size_t(e)] = double(float(1.0 / (1.0 + std::exp(-b.get(b.in[0], e, t)))));
                        choice[size_t(e)] = double(float(probs[size_t(e)] + b.get(b.in[1], e)));
                    }
                    const std::vector<int64_t> ids = select_reference(choice, g.k, g.n_group, g.topk_group, 1e-6);
                    std::vector<double> chosen;
                    for (int64_t e : ids) chosen.push_back(probs[size_t(e)]);
                    for (double w : weights_reference(chosen, true, 2.5)) r.push_back(w);
                    for (int64_t e : ids) r.push_back(double(e));
                    r.insert(r.end(), probs.begin(), probs.end());
                }
                return r;
            },
            TOL_ROUTE));
    }
}

// ---- fused routed combine + shared-expert add ----------------------------------------------------------
// out = shared + combine(y, w, ids) (or combine + shared: the launcher takes either operand order).
// combine_output marks the combine's own result as a graph output: the pattern must not leave it
// unwritten, so the nodes run unfused and out is the concat of both.
struct CombineAdd { int64_t D, n_used, T; bool combine_first = false, combine_output = false; };

void add_combine_add_cases(std::vector<OpCase>& cases) {
    for (const CombineAdd& g : {CombineAdd{6144, 8, 1}, CombineAdd{37, 8, 5, true}, CombineAdd{300, 3, 2},
                                CombineAdd{64, 8, 3, false, true}}) {
        std::string name = fmt::format("fused moe_combine+add D={} n_used={} T={}{}", g.D, g.n_used, g.T,
                                       g.combine_first ? " combine first" : "");
        if (g.combine_output) name += " combine marked output (unfused)";
        cases.push_back(make_case(
            name,
            [g](OpBuild& b) {
                add_combine_inputs(b, g.D, g.n_used, g.T, 160);
                glm_tensor* shared = b.rand(GLM_TYPE_F32, {g.D, g.T});
                b.in.push_back(shared);
                glm_tensor* routed = glm_moe_combine(b.ctx, b.in[0], b.in[1], b.in[2]);
                glm_tensor* sum = g.combine_first ? glm_add(b.ctx, routed, shared) : glm_add(b.ctx, shared, routed);
                if (!g.combine_output) return sum;
                routed->flags |= GLM_FLAG_OUTPUT;
                return glm_concat(b.ctx, sum, routed, 0);
            },
            [g](const OpBuild& b, const glm_tensor*) {
                const glm_tensor* shared = b.in[3];
                auto routed = [&](int64_t d, int64_t t) { return combine_reference(b, 0, d, t); };
                Ref r;
                for (int64_t t = 0; t < g.T; ++t) {
                    for (int64_t d = 0; d < g.D; ++d) r.push_back(b.get(shared, d, t) + routed(d, t));
                    if (g.combine_output)
                        for (int64_t d = 0; d < g.D; ++d) r.push_back(routed(d, t));
                }
                return r;
            },
            TOL_ELEMENTWISE));
    }
}

// ---- fused rows attention writes: norm -> rope -> [concat] -> set_rows, rope -> concat ---------------
// Each output row is [A; B] with A = norm(x_a) (or x_a as is) and B = x_b, roped over
// [rope_off, rope_off + n_rot) at the token's position. The reference builds the row in double.
enum class RowNormKind { none, rms, layer };

struct RowRef {
    RowNormKind norm;
    int n_rot;
    glm_rope_mode mode;
    int64_t rope_off;
};

// Row s (head h) of the fused pattern, in double. a(i) / x_b(i) read the sources of that row.
std::vector<double> row_reference(const OpBuild& b, const RowRef& g, int64_t n_a, int64_t n_b,
                                  const std::function<double(int64_t)>& a, const std::function<double(int64_t)>& x_b,
                                  const glm_tensor* w, const glm_tensor* bias, float eps, int32_t pos, double theta) {
    std::vector<double> row;
    if (g.norm == RowNormKind::none) {
        for (int64_t i = 0; i < n_a; ++i) row.push_back(a(i));
    } else {
        row = norm_reference(b, g.norm == RowNormKind::rms, n_a, 1, [&](int64_t i, int64_t) { return a(i); }, w, bias, eps);
    }
    for (int64_t i = 0; i < n_b; ++i) row.push_back(x_b(i));
    const std::vector<double> in = row;
    const int half = g.n_rot / 2;
    for (int64_t i0 = 0; i0 < g.n_rot; ++i0) {
        const int64_t j = g.mode == GLM_ROPE_NEOX ? i0 % half : i0 / 2;
        const int64_t ia = g.mode == GLM_ROPE_NEOX ? j : 2 * j, ib = g.mode == GLM_ROPE_NEOX ? j + half : 2 * j + 1;
        const double angle = double(pos) * std::pow(theta, -2.0 * double(j) / g.n_rot);
        const double xa = in[size_t(g.rope_off + ia)], xb = in[size_t(g.rope_off + ib)];
        row[size_t(g.rope_off + i0)] =
            i0 == ia ? xa * std::cos(angle) - xb * std::sin(angle) : xb * std::cos(angle) + xa * std::sin(angle);
    }
    return row;
}

// Rounding a row element to a bf16 / e4m3 cache may go the other way than the double reference's
// when the f32 result is within an ulp of a boundary (the rope's f32 angle moves values by ~4e-5 at
// position 600): a 1-ulp step in a few elements, far below a wrong element (NMSE ~1 / row width).
Tolerance stored_tolerance(glm_type t) {
    if (t == GLM_TYPE_F32) return TOL_ROPE_ROW;
    return t == GLM_TYPE_BF16 ? Tolerance{1e-6, INF} : Tolerance{3e-5, INF};
}

// The cache after set_rows of reference rows: row s lands in slot slots[s] (negative: skipped).
Ref cache_reference(const OpBuild& b, const glm_tensor* out, const glm_tensor* cache, const glm_tensor* slots,
                    const std::function<std::vector<double>(int64_t)>& row_of) {
    std::vector<std::vector<double>> rows;
    for (int64_t s = 0; s < slots->ne[0]; ++s) rows.push_back(row_of(s));
    return map_out(out, [&](int64_t i0, int64_t i1, int64_t, int64_t) {
        for (int64_t s = 0; s < slots->ne[0]; ++s)
            if (b.geti(slots, s) == i1) return stored(cache->type, rows[size_t(s)][size_t(i0)]);
        return b.get(cache, i0, i1);
    });
}

// The latent row: set_rows(cache, concat(rms_norm(c), rope(k_rot)), slots), c and k_rot views of one
// projection row `wide` floats long at element `offset`. The indexer key: set_rows(cache,
// rope(norm(k)) over its first n_rot, slots).
struct CacheRow {
    int64_t n_a, n_b;  // n_b = 0: the indexer key's pattern (rope inside the normed row)
    int n_rot;
    int64_t tokens, wide, offset;
    glm_type cache;
    RowNormKind norm;
    glm_rope_mode mode;
    bool with_holes = false, row_output = false;
};

void add_rope_row_cases(std::vector<OpCase>& cases) {
    constexpr float kTheta = 10000.0f;
    for (const CacheRow& g : {CacheRow{512, 64, 64, 1, 2784, 2048, GLM_TYPE_BF16, RowNormKind::rms, GLM_ROPE_INTERLEAVED},
                              CacheRow{512, 64, 64, 37, 2784, 2048, GLM_TYPE_F32, RowNormKind::rms, GLM_ROPE_NEOX, true},
                              CacheRow{512, 64, 64, 5, 2784, 2048, GLM_TYPE_F8_E4M3, RowNormKind::rms, GLM_ROPE_INTERLEAVED},
                              CacheRow{512, 64, 64, 3, 2785, 2049, GLM_TYPE_F32, RowNormKind::rms, GLM_ROPE_INTERLEAVED},
                              CacheRow{7, 6, 6, 4, 20, 3, GLM_TYPE_F32, RowNormKind::rms, GLM_ROPE_NEOX},
                              CacheRow{512, 64, 64, 2, 2784, 2048, GLM_TYPE_F32, RowNormKind::rms, GLM_ROPE_INTERLEAVED,
                                       false, true},
                              CacheRow{128, 0, 64, 1, 2784, 2624, GLM_TYPE_BF16, RowNormKind::layer, GLM_ROPE_INTERLEAVED},
                              CacheRow{128, 0, 64, 37, 2784, 2624, GLM_TYPE_F32, RowNormKind::layer, GLM_ROPE_INTERLEAVED,
                                       true},
                              CacheRow{128, 0, 64, 4, 2784, 2624, GLM_TYPE_F8_E4M3, RowNormKind::layer, GLM_ROPE_NEOX},
                              CacheRow{96, 0, 32, 3, 101, 5, GLM_TYPE_F32, RowNormKind::rms, GLM_ROPE_NEOX},
                              CacheRow{128, 0, 64, 2, 2784, 2624, GLM_TYPE_F32, RowNormKind::layer, GLM_ROPE_INTERLEAVED,
                                       false, true}}) {
        const bool latent = g.n_b > 0;
        std::string name = fmt::format("fused {}+rope{} [{}{}] n_rot={} tokens={} into {} cache{}",
                                       g.norm == RowNormKind::rms ? "rms_norm" : "layer_norm",
                                       latent ? "+concat+set_rows" : "+set_rows", g.n_a, latent ? fmt::format("+{}", g.n_b) : "",
                                       g.n_rot, g.tokens, glm_type_name(g.cache), g.mode == GLM_ROPE_NEOX ? " neox" : "");
        if (g.offset % 4) name += " misaligned";
        if (g.with_holes) name += " slots with holes";
        if (g.row_output) name += " row marked output (unfused)";
        const int32_t max_pos = g.cache == GLM_TYPE_F8_E4M3 ? 50 : 600;
        cases.push_back(make_case(
            name,
            [g, latent, max_pos](OpBuild& b) {
                glm_tensor* x = b.rand(GLM_TYPE_F32, {g.wide, g.tokens}, 2.0);
                glm_tensor* xa = glm_view_2d(b.ctx, x, g.n_a, g.tokens, x->nb[1], size_t(g.offset) * 4);
                glm_tensor* w = b.rand(GLM_TYPE_BF16, {g.n_a});
                glm_tensor* bias = g.norm == RowNormKind::layer ? b.rand(GLM_TYPE_F32, {g.n_a}) : nullptr;
                glm_tensor* pos = b.i32({g.tokens}, b.rng.distinct(max_pos, g.tokens));
                const int64_t n_slots = g.tokens + 3;
                glm_tensor* cache = b.rand(g.cache, {g.n_a + g.n_b, n_slots});
                glm_tensor* slots = b.i32({g.tokens}, g.with_holes ? holes(b.rng, n_slots, g.tokens * 2 / 3, g.tokens)
                                                                   : b.rng.distinct(n_slots, g.tokens));
                b.in = {x, w, bias, pos, cache, slots};
                glm_tensor* normed = g.norm == RowNormKind::rms ? glm_rms_norm(b.ctx, xa, w, 1e-5f)
                                                                : glm_layer_norm(b.ctx, xa, w, bias, 1e-6f);
                glm_tensor* row;
                if (latent) {
                    glm_tensor* xb = glm_view_3d(b.ctx, x, g.n_b, 1, g.tokens, x->nb[1], x->nb[1], size_t(g.offset + g.n_a) * 4);
                    glm_tensor* roped = glm_rope(b.ctx, xb, pos, g.n_rot, kTheta, g.mode);
                    row = glm_concat(b.ctx, normed, glm_reshape_2d(b.ctx, roped, g.n_b, g.tokens), 0);
                } else {
                    glm_tensor* roped = glm_rope(b.ctx, glm_reshape_3d(b.ctx, normed, g.n_a, 1, g.tokens), pos, g.n_rot, kTheta, g.mode);
                    row = glm_reshape_2d(b.ctx, roped, g.n_a, g.tokens);
                }
                if (g.row_output) row->flags |= GLM_FLAG_OUTPUT;
                return glm_set_rows(b.ctx, cache, row, slots);
            },
            [g, latent](const OpBuild& b, const glm_tensor* out) {
                const glm_tensor *x = b.in[0], *w = b.in[1], *bias = b.in[2], *pos = b.in[3];
                const RowRef ref{g.norm, g.n_rot, g.mode, latent ? g.n_a : 0};
                return cache_reference(b, out, b.in[4], b.in[5], [&](int64_t s) {
                    return row_reference(
                        b, ref, g.n_a, g.n_b, [&](int64_t i) { return b.get(x, g.offset + i, s); },
                        [&](int64_t i) { return b.get(x, g.offset + g.n_a + i, s); }, w, bias,
                        g.norm == RowNormKind::rms ? 1e-5f : 1e-6f, b.geti(pos, s), double(kTheta));
                });
            },
            stored_tolerance(g.cache)));
    }

    // The absorbed query: concat(q_lat as [r, H, S] (a permuted [r, S, H] product), rope(q_rot)), q_rot
    // the last dr floats of each head's dh-wide query.
    struct Query { int64_t r, dh, dr, heads, tokens; glm_rope_mode mode; bool misaligned = false; };
    for (const Query& g : {Query{512, 256, 64, 16, 1, GLM_ROPE_INTERLEAVED}, Query{512, 256, 64, 16, 7, GLM_ROPE_INTERLEAVED},
                           Query{20, 9, 6, 3, 5, GLM_ROPE_NEOX}, Query{64, 40, 8, 2, 3, GLM_ROPE_INTERLEAVED, true}}) {
        cases.push_back(make_case(
            fmt::format("fused rope+concat (absorbed query) [{}+{}] heads={} tokens={}{}{}", g.r, g.dr, g.heads, g.tokens,
                        g.mode == GLM_ROPE_NEOX ? " neox" : "", g.misaligned ? " misaligned" : ""),
            [g](OpBuild& b) {
                glm_tensor* lat = b.rand(GLM_TYPE_F32, {g.r + (g.misaligned ? 1 : 0), g.tokens, g.heads});
                if (g.misaligned) lat = glm_view_3d(b.ctx, lat, g.r, g.tokens, g.heads, lat->nb[1], lat->nb[2], 4);
                glm_tensor* q = b.rand(GLM_TYPE_F32, {g.dh * g.heads, g.tokens});
                glm_tensor* pos = b.i32({g.tokens}, b.rng.distinct(600, g.tokens));
                b.in = {lat, q, pos};
                glm_tensor* q_rot = glm_view_3d(b.ctx, q, g.dr, g.heads, g.tokens, size_t(g.dh) * 4, q->nb[1],
                                                size_t(g.dh - g.dr) * 4);
                glm_tensor* roped = glm_rope(b.ctx, q_rot, pos, int(g.dr), kTheta, g.mode);
                return glm_concat(b.ctx, glm_permute(b.ctx, lat, 0, 2, 1, 3), roped, 0);
            },
            [g](const OpBuild& b, const glm_tensor*) {
                const glm_tensor *lat = b.in[0], *q = b.in[1], *pos = b.in[2];
                const RowRef ref{RowNormKind::none, int(g.dr), g.mode, g.r};
                Ref r;
                for (int64_t s = 0; s < g.tokens; ++s)
                    for (int64_t h = 0; h < g.heads; ++h) {
                        const std::vector<double> row = row_reference(
                            b, ref, g.r, g.dr, [&](int64_t i) { return b.get(lat, i, s, h); },
                            [&](int64_t i) { return b.get(q, h * g.dh + g.dh - g.dr + i, s); }, nullptr, nullptr, 0.0f,
                            b.geti(pos, s), double(kTheta));
                        r.insert(r.end(), row.begin(), row.end());
                    }
                return r;
            },
            TOL_ROPE_ROW));
    }
}

}  // namespace

void add_fused_cases(std::vector<OpCase>& cases) {
    add_norm_cases(cases);
    add_add_norm_cases(cases);
    add_moe_cases(cases);
    add_route_cases(cases);
    add_combine_add_cases(cases);
    add_rope_row_cases(cases);
}

}  // namespace optest
