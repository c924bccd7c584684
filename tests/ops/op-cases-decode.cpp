// The decode step's op patterns on odd shapes, built as engine/graph.cpp builds them:
//  - attention whose key_ids come from a real glm_top_k node over indexer-like scores (the CUDA
//    backend walks such columns raw, without sorting: top-k indices are distinct by contract), with
//    q_pos below 2048 so the columns end in -1, T below the score length so some ids fall past the
//    cache, views of the top-k result that keep its columns (still distinct) and a reshape that joins
//    two columns (duplicates: the sorted path must still de-duplicate);
//  - the absorbed-MLA q_lat = W_UK^T q_nope product: a transposed bf16 view of kv_b, batched over
//    heads, times permuted q_nope (the CUDA transposed GEMV);
//  - swiglu(gate x, up x) with MUL_MAT (bf16, nvfp4) and MUL_MAT_ID (nvfp4, bf16) projections of one
//    token (the CUDA fused gate/up/SwiGLU kernel), and shapes it declines (two tokens);
//  - the MTP verify step's products of N = 2..8 token columns (the CUDA multi-column GEMV): bf16
//    MUL_MAT on odd M and K (K = 1000: a partial last step; K = 6144 at N = 8: the largest staged
//    x), strided and misaligned x views, broadcast slices, other weight types at the NC where their
//    register budget changes; NVFP4 MUL_MAT_ID of 24 experts at the routed gate/up and down shapes
//    with 2..8 tokens, x shared by the slots or per slot, experts shared by tokens (grouped by
//    expert on CUDA: passes of two pairs, a lone pair, the 64-pair limit) or not.
// References are naive double precision, written from ggml-like/tensor.h.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include <fmt/ranges.h>

#include "tests/ops/op-cases.h"

namespace optest {
namespace {

constexpr double INF = std::numeric_limits<double>::infinity();

// The tolerances of op-cases.cpp, for the same reasons (see there):
constexpr Tolerance TOL_MATMUL{1e-11, INF};   // f32 dot products (the CPU accumulates in double)
constexpr Tolerance TOL_ATTN{1e-10, INF};     // f32 dot products and softmax vs double
constexpr Tolerance TOL_ATTN_TC{3e-5, INF};   // CUDA MQA tensor-core path: bf16 q and P

// ---- attention over top-k key_ids --------------------------------------------------------------

// The bytes of a GLM_OP_TOP_K result computed on the host from its leaves (top_k_reference), laid
// out like the node's own bytes, so any view of it reads through read_element.
std::vector<uint8_t> top_k_bytes(const OpBuild& b, const glm_tensor* top_k) {
    std::vector<int32_t> ids;
    for (int64_t c = 0; c < top_k->ne[1]; ++c) {
        const std::vector<int32_t> col = top_k_reference(b, top_k, c);
        ids.insert(ids.end(), col.begin(), col.end());
    }
    std::vector<uint8_t> bytes(ids.size() * sizeof(int32_t));
    std::memcpy(bytes.data(), ids.data(), bytes.size());
    return bytes;
}

// in = {q, k, v, q_pos, key_ids}; key_ids is the top-k node or a view of it. Query s attends the
// distinct slots its column lists with 0 <= t <= q_pos[s] and t < T; softmax of scale * q.k in
// double, no visible key gives zeros.
Ref attn_over_top_k(const OpBuild& b, const glm_tensor* out) {
    const glm_tensor *qp = b.in[3], *kid = b.in[4];
    const int64_t T = b.in[1]->ne[2];
    const std::vector<uint8_t> ids = top_k_bytes(b, glm_view_root(const_cast<glm_tensor*>(kid)));
    return attn_reference_over(b, out, [&](int64_t s) {
        const int64_t pos = b.geti(qp, s);
        std::vector<int64_t> keys;
        for (int64_t j = 0; j < kid->ne[0]; ++j) {
            const int64_t t = int64_t(read_element(kid, ids, j, s, 0, 0));
            if (t >= 0 && t <= pos && t < T) keys.push_back(t);
        }
        std::sort(keys.begin(), keys.end());
        keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
        return keys;
    });
}

// Scores without ties (a random permutation, scaled, plus noise below the spacing): the top-k set
// does not depend on how a backend breaks them.
glm_tensor* distinct_scores(OpBuild& b, int64_t n, int64_t cols) {
    auto perm = std::make_shared<std::vector<int32_t>>(b.rng.distinct(n * cols, n * cols));
    return b.values(GLM_TYPE_F32, {n, cols},
                    [&b, perm](int64_t i) { return 0.25 * (*perm)[size_t(i)] + b.rng.uniform(0, 0.01); });
}

void add_top_k_attn_cases(std::vector<OpCase>& cases) {
    // view: 0 the top-k node itself; 1 entries [24, 1024) of each column (still distinct); 2 the two
    // columns of a 2-column top-k joined into one of 4096 (may repeat a slot; S must be 1).
    struct TkAttn {
        int64_t Dk, Dv, H, Hk, T, n_scores;
        glm_type cache;  // BF16 / F8_E4M3: one [Dk, T] cache viewed as k and v (absorbed MLA); F32: own k, v
        std::vector<int32_t> pos;
        int view = 0;
    };
    const int64_t kTopK = 2048;
    for (const TkAttn& g : {
             // absorbed-MLA decode shapes (the CUDA tensor-core path)
             TkAttn{576, 512, 16, 1, 5000, 5000, GLM_TYPE_BF16, {4999}},
             TkAttn{576, 512, 16, 1, 5000, 5000, GLM_TYPE_BF16, {1000, 4000, 4999}},
             TkAttn{576, 512, 16, 1, 300, 2100, GLM_TYPE_BF16, {250}},
             TkAttn{576, 512, 16, 1, 300, 2100, GLM_TYPE_BF16, {5, 299, 1500}},
             TkAttn{576, 512, 32, 1, 5000, 5000, GLM_TYPE_F8_E4M3, {1500, 4999}},
             TkAttn{576, 512, 16, 1, 5000, 5000, GLM_TYPE_BF16, {700, 4999}, 1},
             TkAttn{576, 512, 16, 1, 5000, 5000, GLM_TYPE_BF16, {4999}, 2},
             // the split-KV kernel: MQA groups and separate K/V heads
             TkAttn{40, 24, 3, 1, 5000, 5000, GLM_TYPE_F32, {4999}},
             TkAttn{40, 24, 3, 3, 5000, 5000, GLM_TYPE_F32, {100, 2047, 4999}},
             TkAttn{40, 24, 4, 1, 300, 2100, GLM_TYPE_F32, {5, 299, 1500}},
             TkAttn{40, 24, 5, 1, 5000, 5000, GLM_TYPE_F32, {30, 4999}, 1},
         }) {
        const int64_t S = int64_t(g.pos.size());
        const bool mla = g.cache != GLM_TYPE_F32;
        const char* vname[] = {"", " (view of columns)", " (two columns joined)"};
        OpCase c;
        c.name = fmt::format("attn top_k ids Dk={} Dv={} H={} Hk={} T={} {} scores={} q_pos={}{}", g.Dk, g.Dv, g.H,
                             g.Hk, g.T, glm_type_name(g.cache), g.n_scores, fmt::join(g.pos, ","), vname[g.view]);
        c.build = [g, S, mla, kTopK](OpBuild& b) {
            glm_tensor* q = b.rand(GLM_TYPE_F32, {g.Dk, g.H, S});
            glm_tensor *k, *v;
            if (mla) {
                glm_tensor* cache = b.rand(g.cache, {g.Dk, g.T});
                k = glm_view_3d(b.ctx, cache, g.Dk, 1, g.T, cache->nb[1], cache->nb[1], 0);
                v = glm_view_3d(b.ctx, cache, g.Dv, 1, g.T, cache->nb[1], cache->nb[1], 0);
            } else {
                k = b.rand(GLM_TYPE_F32, {g.Dk, g.Hk, g.T});
                v = b.rand(GLM_TYPE_F32, {g.Dv, g.Hk, g.T});
            }
            glm_tensor* qp = b.i32({S}, g.pos);
            glm_tensor* kid;
            if (g.view == 2) {  // S == 1: the joined column of two top-k columns with their own q_pos
                glm_tensor* scores = distinct_scores(b, g.n_scores, 2);
                glm_tensor* top_k = glm_top_k(b.ctx, scores, int(kTopK), b.i32({2}, {g.pos[0], g.pos[0] - 300}));
                kid = glm_reshape_2d(b.ctx, top_k, 2 * kTopK, 1);
            } else {
                // the engine's selection (by index); the joined columns above keep the sorted one
                glm_tensor* top_k = glm_top_k_by_index(b.ctx, distinct_scores(b, g.n_scores, S), int(kTopK), qp);
                kid = g.view == 1 ? glm_view_2d(b.ctx, top_k, 1000, S, top_k->nb[1], 24 * sizeof(int32_t)) : top_k;
            }
            b.in = {q, k, v, qp, kid};
            return glm_attn(b.ctx, q, k, v, qp, kid, float(1.0 / std::sqrt(double(g.Dk))));
        };
        c.reference = attn_over_top_k;
        c.tol = mla ? TOL_ATTN_TC : TOL_ATTN;
        c.check_cosine = !mla;
        cases.push_back(std::move(c));
    }
}

// ---- products ----------------------------------------------------------------------------------

// sum_k w[k, m, slice of (b2, b3)] * x[k, n, b2, b3] (ggml's broadcast rule; NVFP4 or float weights).
double dot_ref(const OpBuild& b, const glm_tensor* w, const glm_tensor* x, int64_t m, int64_t n, int64_t b2,
               int64_t b3) {
    const int64_t r2 = x->ne[2] / w->ne[2], r3 = x->ne[3] / w->ne[3];
    double s = 0;
    for (int64_t k = 0; k < w->ne[0]; ++k) {
        const double wv = w->type == GLM_TYPE_NVFP4 ? b.nvfp4_at(w, k, m, b2 / r2) : b.get(w, k, m, b2 / r2, b3 / r3);
        s += wv * b.get(x, k, n, b2, b3);
    }
    return s;
}

double silu(double x) { return x / (1.0 + std::exp(-x)); }

// q_lat = W_UK^T q_nope as graph.cpp builds it: kv_b [M = r_kv, (K + dv) * H] bf16, W_UK = the
// transposed [M, K, H] view of its first K rows per head, times q_nope [K, H, S] permuted to
// [K, S, H]. in = {w, x}.
void add_transposed_gemv_cases(std::vector<OpCase>& cases) {
    struct Tr { int64_t H, K, M, S, dv; };
    for (const Tr& g : {Tr{16, 192, 512, 1, 256}, Tr{16, 192, 512, 3, 256}, Tr{3, 40, 72, 1, 24}, Tr{3, 40, 72, 2, 24},
                        Tr{3, 40, 72, 6, 24}, Tr{3, 40, 36, 1, 24}}) {
        OpCase c;
        c.name = fmt::format("mul_mat absorbed W_UK^T (transposed bf16 view) H={} K={} M={} S={}", g.H, g.K, g.M, g.S);
        c.build = [g](OpBuild& b) {
            glm_tensor* kv_b = b.rand(GLM_TYPE_BF16, {g.M, (g.K + g.dv) * g.H});
            const size_t row = kv_b->nb[1];
            // [M, K, H]: the first K rows of each head's K + dv, transposed to [K, M, H]
            glm_tensor* uk_rows = glm_view_3d(b.ctx, kv_b, g.M, g.K, g.H, row, size_t(g.K + g.dv) * row, 0);
            glm_tensor* w_uk = glm_transpose(b.ctx, uk_rows);
            glm_tensor* q = b.rand(GLM_TYPE_F32, {g.K + 16, g.H, g.S});  // q_nope, then the rope part
            glm_tensor* x = glm_permute(b.ctx, glm_view_3d(b.ctx, q, g.K, g.H, g.S, q->nb[1], q->nb[2], 0), 0, 2, 1, 3);
            b.in = {w_uk, x};
            return glm_mul_mat(b.ctx, w_uk, x);
        };
        c.reference = [](const OpBuild& b, const glm_tensor* out) {
            return map_out(out, [&](int64_t m, int64_t n, int64_t b2, int64_t b3) {
                return dot_ref(b, b.in[0], b.in[1], m, n, b2, b3);
            });
        };
        c.tol = TOL_MATMUL;
        cases.push_back(std::move(c));
    }
}

// swiglu(mul_mat(w_gate, x), mul_mat(w_up, x)): the dense MLP / shared expert. in = {w_gate, w_up, x}.
void add_gate_up_cases(std::vector<OpCase>& cases) {
    struct GateUp { glm_type wt; int64_t K, M, N; };
    for (const GateUp& g : {GateUp{GLM_TYPE_BF16, 6144, 512, 1}, GateUp{GLM_TYPE_BF16, 1000, 3072, 1},
                            GateUp{GLM_TYPE_BF16, 1000, 77, 1}, GateUp{GLM_TYPE_BF16, 6144, 77, 1},
                            GateUp{GLM_TYPE_NVFP4, 1024, 77, 1}, GateUp{GLM_TYPE_BF16, 1000, 77, 2}}) {
        OpCase c;
        c.name = fmt::format("swiglu(gate x, up x) mul_mat {} K={} M={} N={}", glm_type_name(g.wt), g.K, g.M, g.N);
        c.build = [g](OpBuild& b) {
            auto weight = [&] { return g.wt == GLM_TYPE_NVFP4 ? b.nvfp4(g.K, g.M, 1) : b.rand(g.wt, {g.K, g.M}); };
            glm_tensor* w_gate = weight();
            glm_tensor* w_up = weight();
            glm_tensor* x = b.rand(GLM_TYPE_F32, {g.K, g.N});
            b.in = {w_gate, w_up, x};
            return glm_swiglu(b.ctx, glm_mul_mat(b.ctx, w_gate, x), glm_mul_mat(b.ctx, w_up, x));
        };
        c.reference = [](const OpBuild& b, const glm_tensor* out) {
            return map_out(out, [&](int64_t m, int64_t n, int64_t b2, int64_t b3) {
                return silu(dot_ref(b, b.in[0], b.in[2], m, n, b2, b3)) * dot_ref(b, b.in[1], b.in[2], m, n, b2, b3);
            });
        };
        c.tol = TOL_MATMUL;
        cases.push_back(std::move(c));
    }
}

// swiglu(mul_mat_id(gate_exps, x, ids), mul_mat_id(up_exps, x, ids)): the routed experts.
// in = {gate_exps, up_exps, x, ids}.
void add_gate_up_id_cases(std::vector<OpCase>& cases) {
    struct GateUpId { glm_type wt; int64_t K, M, E, n_used, T; bool bcast; };
    for (const GateUpId& g : {GateUpId{GLM_TYPE_NVFP4, 6144, 512, 24, 8, 1, true},
                              GateUpId{GLM_TYPE_NVFP4, 512, 77, 6, 3, 2, false},
                              GateUpId{GLM_TYPE_BF16, 1000, 40, 5, 2, 1, true}}) {
        OpCase c;
        c.name = fmt::format("swiglu(gate x, up x) mul_mat_id {} experts=[{}x{}x{}] n_used={} T={} x ne1={}",
                             glm_type_name(g.wt), g.K, g.M, g.E, g.n_used, g.T, g.bcast ? 1 : g.n_used);
        c.build = [g](OpBuild& b) {
            auto experts = [&] {
                return g.wt == GLM_TYPE_NVFP4 ? b.nvfp4(g.K, g.M, g.E) : b.rand(g.wt, {g.K, g.M, g.E});
            };
            glm_tensor* gate_exps = experts();
            glm_tensor* up_exps = experts();
            glm_tensor* x = b.rand(GLM_TYPE_F32, {g.K, g.bcast ? 1 : g.n_used, g.T});
            std::vector<int32_t> ids;
            for (int64_t t = 0; t < g.T; ++t)
                for (int32_t e : b.rng.distinct(g.E, g.n_used)) ids.push_back(e);
            glm_tensor* id = b.i32({g.n_used, g.T}, ids);
            b.in = {gate_exps, up_exps, x, id};
            return glm_swiglu(b.ctx, glm_mul_mat_id(b.ctx, gate_exps, x, id), glm_mul_mat_id(b.ctx, up_exps, x, id));
        };
        c.reference = [](const OpBuild& b, const glm_tensor* out) {
            const glm_tensor *gate_exps = b.in[0], *up_exps = b.in[1], *x = b.in[2], *ids = b.in[3];
            return map_out(out, [&](int64_t m, int64_t j, int64_t t, int64_t) {
                const int32_t e = b.geti(ids, j, t);
                double gate = 0, up = 0;
                for (int64_t k = 0; k < gate_exps->ne[0]; ++k) {
                    const double xv = b.get(x, k, x->ne[1] == 1 ? 0 : j, t);
                    gate += b.weight_at(gate_exps, k, m, e) * xv;
                    up += b.weight_at(up_exps, k, m, e) * xv;
                }
                return silu(gate) * up;
            });
        };
        c.tol = TOL_MATMUL;
        cases.push_back(std::move(c));
    }
}

// ---- multi-column products (MTP verify: N = 2..8 tokens) ------------------------------------------

// mul_mat(w [K, M, E], x [K, N, B]) with B / E slices per weight slice. view: 0 plain x; 1 x columns
// every other row of a wider buffer (strided, 16-byte aligned); 2 the same one float in (misaligned:
// scalar staging). in = {w, x}.
void add_multi_column_cases(std::vector<OpCase>& cases) {
    struct MC { glm_type wt; int64_t K, M, N, E, B; int view; };
    for (const MC& g : {MC{GLM_TYPE_BF16, 6144, 77, 2, 1, 1, 0}, MC{GLM_TYPE_BF16, 6144, 512, 4, 1, 1, 0},
                        MC{GLM_TYPE_BF16, 2048, 4096, 3, 1, 1, 0}, MC{GLM_TYPE_BF16, 1000, 77, 5, 1, 1, 0},
                        MC{GLM_TYPE_BF16, 1000, 512, 8, 1, 1, 0}, MC{GLM_TYPE_BF16, 6144, 77, 8, 1, 1, 0},
                        MC{GLM_TYPE_BF16, 2048, 512, 4, 1, 1, 1}, MC{GLM_TYPE_BF16, 1000, 77, 3, 1, 1, 2},
                        MC{GLM_TYPE_BF16, 1000, 77, 4, 2, 4, 0}, MC{GLM_TYPE_BF16, 1001, 77, 4, 1, 1, 0},
                        MC{GLM_TYPE_F8_E4M3, 2048, 77, 8, 1, 1, 0}, MC{GLM_TYPE_F16, 1000, 77, 6, 1, 1, 1},
                        MC{GLM_TYPE_NVFP4, 6144, 77, 4, 1, 1, 0}, MC{GLM_TYPE_NVFP4, 512, 300, 8, 2, 2, 2}}) {
        const char* vname[] = {"", " (strided x)", " (misaligned strided x)"};
        OpCase c;
        c.name = fmt::format("mul_mat verify {} w=[{}x{}x{}] x=[{}x{}x{}]{}", glm_type_name(g.wt), g.K, g.M, g.E, g.K,
                             g.N, g.B, vname[g.view]);
        c.build = [g](OpBuild& b) {
            glm_tensor* w = g.wt == GLM_TYPE_NVFP4 ? b.nvfp4(g.K, g.M, g.E) : b.rand(g.wt, {g.K, g.M, g.E});
            glm_tensor* x;
            if (g.view == 0) {
                x = b.rand(GLM_TYPE_F32, {g.K, g.N, g.B});
            } else {
                glm_tensor* buf = b.rand(GLM_TYPE_F32, {g.K + 4, 2 * g.N, g.B});
                x = glm_view_3d(b.ctx, buf, g.K, g.N, g.B, 2 * buf->nb[1], buf->nb[2], g.view == 2 ? sizeof(float) : 0);
            }
            b.in = {w, x};
            return glm_mul_mat(b.ctx, w, x);
        };
        c.reference = [](const OpBuild& b, const glm_tensor* out) {
            return map_out(out, [&](int64_t m, int64_t n, int64_t b2, int64_t b3) {
                return dot_ref(b, b.in[0], b.in[1], m, n, b2, b3);
            });
        };
        c.tol = TOL_MATMUL;
        cases.push_back(std::move(c));
    }
}

// mul_mat_id(experts [K, M, E], x, ids [n_used, T]). experts: 0 each token draws its own distinct
// set (tokens overlap by chance); 1 every token the same set in its own order (each expert shared by
// all T tokens). in = {w, x, ids}.
void add_multi_token_id_cases(std::vector<OpCase>& cases) {
    struct MT { glm_type wt; int64_t K, M, E, n_used, T; bool bcast; int experts; };
    for (const MT& g : {MT{GLM_TYPE_NVFP4, 6144, 512, 24, 8, 2, true, 0}, MT{GLM_TYPE_NVFP4, 6144, 512, 24, 8, 4, false, 0},
                        MT{GLM_TYPE_NVFP4, 512, 6144, 24, 8, 2, false, 0}, MT{GLM_TYPE_NVFP4, 512, 6144, 24, 8, 4, true, 0},
                        MT{GLM_TYPE_NVFP4, 6144, 512, 24, 8, 4, true, 1}, MT{GLM_TYPE_NVFP4, 512, 6144, 24, 8, 3, false, 1},
                        MT{GLM_TYPE_NVFP4, 512, 77, 24, 8, 8, false, 1}, MT{GLM_TYPE_BF16, 1000, 77, 6, 3, 5, true, 1}}) {
        OpCase c;
        c.name = fmt::format("mul_mat_id verify {} experts=[{}x{}x{}] n_used={} T={} x ne1={}{}", glm_type_name(g.wt), g.K,
                             g.M, g.E, g.n_used, g.T, g.bcast ? 1 : g.n_used, g.experts ? " (same experts)" : "");
        c.build = [g](OpBuild& b) {
            glm_tensor* w = g.wt == GLM_TYPE_NVFP4 ? b.nvfp4(g.K, g.M, g.E) : b.rand(g.wt, {g.K, g.M, g.E});
            glm_tensor* x = b.rand(GLM_TYPE_F32, {g.K, g.bcast ? 1 : g.n_used, g.T});
            const std::vector<int32_t> set = b.rng.distinct(g.E, g.n_used);
            std::vector<int32_t> ids;
            for (int64_t t = 0; t < g.T; ++t) {
                if (g.experts == 0) {
                    for (int32_t e : b.rng.distinct(g.E, g.n_used)) ids.push_back(e);
                } else {
                    for (int32_t j : b.rng.distinct(g.n_used, g.n_used)) ids.push_back(set[size_t(j)]);
                }
            }
            glm_tensor* id = b.i32({g.n_used, g.T}, ids);
            b.in = {w, x, id};
            return glm_mul_mat_id(b.ctx, w, x, id);
        };
        c.reference = mul_mat_id_reference;
        c.tol = TOL_MATMUL;
        cases.push_back(std::move(c));
    }
}

}  // namespace

void add_decode_cases(std::vector<OpCase>& cases) {
    add_top_k_attn_cases(cases);
    add_transposed_gemv_cases(cases);
    add_gate_up_cases(cases);
    add_gate_up_id_cases(cases);
    add_multi_column_cases(cases);
    add_multi_token_id_cases(cases);
}

}  // namespace optest
