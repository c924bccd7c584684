// Prefill-size mul_mat / mul_mat_id: the shapes that take the CUDA tensor-core GEMMs of
// cuda/gemm-mma.cu (N > 8 columns, T > 8 tokens), with M, N, K off the tile sizes, every
// staging path (16-byte and element-wise weight rows, float4 and strided activations, the NVFP4
// dequant with a half-filled last K stage), batch broadcast, and routed experts with unused experts,
// one hot expert and both x layouts. References are naive double sums over operands decoded once
// per case (b.get and the independent NVFP4 decoder), so they share no code with either backend.
#include <algorithm>
#include <limits>
#include <map>
#include <memory>

#include <fmt/ranges.h>

#include "tests/ops/op-cases.h"

namespace optest {
namespace {

constexpr double INF = std::numeric_limits<double>::infinity();

// Tolerance of the tensor-core GEMMs, which round the F32 activations to bf16 when staged (and F16
// weights to bf16; BF16 weights and NVFP4's e2m1 * block_scale products are exact in bf16).
// Round-to-nearest to 8 significant bits: |x - bf16(x)| <= 2^-8 |x|; with the absolute error
// uniform over [-ulp/2, ulp/2] and mantissas spread over the binade, E[d^2] = 2^-15 / 12 ~ 2.6e-6
// for the relative error d of one element. An output y = sum_k w_k x_k gets the error
// e = sum_k w_k x_k d_k; with independent zero-mean terms E[e^2] / E[y^2] = E[d^2], so the expected
// NMSE is ~2.6e-6 (~5.2e-6 when F16 weights are rounded too); f32 accumulation adds ~1e-13. The
// limit is 6x the worst expectation (heavy-tailed NVFP4 block scales make few terms dominate some
// outputs, so the sample NMSE scatters). Failure modes it separates: a wrong fragment or column
// mapping (NMSE ~1), a dropped K tail (~K_tail / K), e2m1 code 1 (0.5) flushed to zero (~4e-3). The
// CPU backend is f32-exact (~1e-13); the bf16x2 activation mode is ~1e-11.
constexpr Tolerance TOL_MATMUL_TC{3e-5, INF};


// dst[m, n, b2, b3] = sum_k w[k, m, b2 / r2, b3 / r3] * x[k, n, b2, b3] (tensor.h), each weight
// slice and x slice decoded to double once.
Ref mul_mat_reference(const OpBuild& b, const glm_tensor* out) {
    const glm_tensor *w = b.in[0], *x = b.in[1];
    const int64_t K = w->ne[0], M = w->ne[1], N = x->ne[1];
    const int64_t r2 = x->ne[2] / w->ne[2], r3 = x->ne[3] / w->ne[3];
    Ref r(static_cast<size_t>(glm_nelements(out)));
    std::map<std::pair<int64_t, int64_t>, std::vector<double>> wcache;
    std::vector<double> xs(static_cast<size_t>(N * K));
    for (int64_t b3 = 0; b3 < x->ne[3]; ++b3)
        for (int64_t b2 = 0; b2 < x->ne[2]; ++b2) {
            const int64_t i2 = b2 / r2, i3 = b3 / r3;
            std::vector<double>& ws = wcache[{i2, i3}];
            if (ws.empty()) {
                ws.resize(size_t(M * K));
                for (int64_t m = 0; m < M; ++m)
                    for (int64_t k = 0; k < K; ++k)
                        ws[size_t(m * K + k)] = w->type == GLM_TYPE_NVFP4 ? b.nvfp4_at(w, k, m, i2) : b.get(w, k, m, i2, i3);
            }
            for (int64_t n = 0; n < N; ++n)
                for (int64_t k = 0; k < K; ++k) xs[size_t(n * K + k)] = b.get(x, k, n, b2, b3);
            for (int64_t n = 0; n < N; ++n)
                for (int64_t m = 0; m < M; ++m) {
                    double s = 0;
                    for (int64_t k = 0; k < K; ++k) s += ws[size_t(m * K + k)] * xs[size_t(n * K + k)];
                    r[size_t(((b3 * x->ne[2] + b2) * N + n) * M + m)] = s;
                }
        }
    return r;
}

// How x (and w) are laid out.
enum class View {
    none,
    permuted_x,    // x = permute(leaf [K, B, N]) -> [K, N, B] (absorbed-MLA q_nope layout)
    padded_x,      // columns of x K + 8 floats apart (16-byte aligned, not contiguous)
    misaligned_x,  // x 4 bytes into its buffer (element-wise activation loads)
    transposed_x,  // x = transpose(leaf [N, K]) (nb0 != 4: element-wise loads)
    padded_w,      // BF16 rows K + 1 elements apart (not 16-byte aligned: element-wise weight loads)
};

struct Dense {
    glm_type wt;
    int64_t K, M, N;
    std::vector<int64_t> wb, xb;  // dims 2, 3 of w and x (broadcast: x's are multiples of w's)
    View view;
};

const char* view_name(View v) {
    switch (v) {
        case View::none: return "";
        case View::permuted_x: return " (permuted 3-d x)";
        case View::padded_x: return " (x columns padded)";
        case View::misaligned_x: return " (misaligned x view)";
        case View::transposed_x: return " (transposed x)";
        case View::padded_w: return " (w rows not 16-byte aligned)";
    }
    return "";
}

glm_tensor* build_dense(OpBuild& b, const Dense& g) {
    glm_tensor* w;
    if (g.wt == GLM_TYPE_NVFP4) {
        w = b.nvfp4(g.K, g.M, g.wb[0]);
    } else if (g.view == View::padded_w) {
        glm_tensor* l = b.rand(g.wt, {g.K + 1, g.M});
        w = glm_view_2d(b.ctx, l, g.K, g.M, l->nb[1], 0);
    } else {
        w = b.rand(g.wt, {g.K, g.M, g.wb[0], g.wb[1]});
    }
    glm_tensor* x;
    switch (g.view) {
        case View::permuted_x: x = glm_permute(b.ctx, b.rand(GLM_TYPE_F32, {g.K, g.xb[0], g.N}), 0, 2, 1, 3); break;
        case View::padded_x: {
            glm_tensor* l = b.rand(GLM_TYPE_F32, {g.K + 8, g.N});
            x = glm_view_2d(b.ctx, l, g.K, g.N, l->nb[1], 0);
            break;
        }
        case View::misaligned_x: {
            glm_tensor* l = b.rand(GLM_TYPE_F32, {g.K * g.N + 1});
            x = glm_view_2d(b.ctx, l, g.K, g.N, size_t(g.K) * sizeof(float), sizeof(float));
            break;
        }
        case View::transposed_x: x = glm_transpose(b.ctx, b.rand(GLM_TYPE_F32, {g.N, g.K})); break;
        default: x = b.rand(GLM_TYPE_F32, {g.K, g.N, g.xb[0], g.xb[1]}); break;
    }
    b.in = {w, x};
    return glm_mul_mat(b.ctx, w, x);
}

struct Experts {
    bool nvfp4;
    int64_t K, M, E, n_used, T;
    bool bcast;  // x [K, 1, T] (gate/up: one input per token) or [K, n_used, T] (down)
};

// Routing with unused and hot experts: experts E - 4 .. E - 1 never chosen; expert 0 is in ~90% of
// the tokens (in a random slot); the other slots take distinct experts from 1 .. E - 5.
std::vector<int32_t> skewed_ids(Rng& rng, const Experts& g) {
    std::vector<int32_t> ids;
    ids.reserve(size_t(g.n_used * g.T));
    const int64_t pool = g.E - 5;  // experts 1 .. E - 5
    for (int64_t t = 0; t < g.T; ++t) {
        const bool hot = rng.uniform(0, 1) < 0.9;
        std::vector<int32_t> chosen;
        if (hot) chosen.push_back(0);
        for (int32_t e : rng.distinct(pool, g.n_used - int64_t(chosen.size()))) chosen.push_back(e + 1);
        const std::vector<int32_t> order = rng.distinct(g.n_used, g.n_used);
        for (int64_t j = 0; j < g.n_used; ++j) ids.push_back(chosen[size_t(order[size_t(j)])]);
    }
    return ids;
}

// swiglu(gate x, up x) over prefill-size x: the paired tensor-core tile (one GEMM whose tiles hold
// matching gate and up rows). b.in = {gate weights, up weights, x[, ids]}; with ids the weights are
// experts [K, M, E], else plain [K, M].
struct GateUp {
    glm_type wt;
    int64_t K, M, N;    // N: x columns (dense) or tokens (experts)
    int64_t E, n_used;  // experts: E > 0
    bool bcast;         // experts: x [K, 1, T] (else [K, n_used, T])
};

Ref gate_up_reference(const OpBuild& b, const glm_tensor* out) {
    const glm_tensor *wg = b.in[0], *wu = b.in[1], *x = b.in[2];
    const glm_tensor* ids = b.in.size() > 3 ? b.in[3] : nullptr;
    const int64_t K = wg->ne[0], M = wg->ne[1], E = wg->ne[2];
    std::vector<double> g(size_t(E * M * K)), u(g.size());
    for (int64_t e = 0; e < E; ++e)
        for (int64_t m = 0; m < M; ++m)
            for (int64_t k = 0; k < K; ++k) {
                g[size_t((e * M + m) * K + k)] = b.weight_at(wg, k, m, e);
                u[size_t((e * M + m) * K + k)] = b.weight_at(wu, k, m, e);
            }
    std::vector<double> xs(static_cast<size_t>(K));
    return map_out(out, [&](int64_t m, int64_t j, int64_t t, int64_t) {
        const int64_t e = ids ? b.geti(ids, j, t) : 0;
        if (m == 0)
            for (int64_t k = 0; k < K; ++k) xs[size_t(k)] = ids ? b.get(x, k, x->ne[1] == 1 ? 0 : j, t) : b.get(x, k, j);
        double gs = 0, us = 0;
        for (int64_t k = 0; k < K; ++k) {
            gs += g[size_t((e * M + m) * K + k)] * xs[size_t(k)];
            us += u[size_t((e * M + m) * K + k)] * xs[size_t(k)];
        }
        return gs / (1.0 + std::exp(-gs)) * us;
    });
}

glm_tensor* build_gate_up(OpBuild& b, const GateUp& g) {
    const int64_t E = std::max<int64_t>(g.E, 1);
    auto weights = [&] { return g.wt == GLM_TYPE_NVFP4 ? b.nvfp4(g.K, g.M, E) : b.rand(g.wt, {g.K, g.M, E}); };
    glm_tensor* wg = weights();
    glm_tensor* wu = weights();
    if (g.E == 0) {
        glm_tensor* x = b.rand(GLM_TYPE_F32, {g.K, g.N});
        b.in = {wg, wu, x};
        return glm_swiglu(b.ctx, glm_mul_mat(b.ctx, wg, x), glm_mul_mat(b.ctx, wu, x));
    }
    glm_tensor* x = b.rand(GLM_TYPE_F32, {g.K, g.bcast ? 1 : g.n_used, g.N});
    const Experts shape{g.wt == GLM_TYPE_NVFP4, g.K, g.M, g.E, g.n_used, g.N, g.bcast};
    glm_tensor* id = b.i32({g.n_used, g.N}, skewed_ids(b.rng, shape));
    b.in = {wg, wu, x, id};
    return glm_swiglu(b.ctx, glm_mul_mat_id(b.ctx, wg, x, id), glm_mul_mat_id(b.ctx, wu, x, id));
}

}  // namespace

void add_matmul_large_cases(std::vector<OpCase>& cases) {
    auto add = [&](std::string name, std::function<glm_tensor*(OpBuild&)> build,
                   std::function<Ref(const OpBuild&, const glm_tensor*)> ref) {
        OpCase c;
        c.name = std::move(name);
        c.build = std::move(build);
        c.reference = std::move(ref);
        c.tol = TOL_MATMUL_TC;
        cases.push_back(std::move(c));
    };

    const glm_type BF16 = GLM_TYPE_BF16, F16 = GLM_TYPE_F16, FP4 = GLM_TYPE_NVFP4;
    const std::vector<int64_t> one = {1, 1};
    const Dense dense[] = {
        // BF16: N against the 64 / 128 column tiles, M against the 128-row tile, K = 64 / 96 (a
        // half stage) / 2048 (a long pipeline), and K % 8 != 0 (element-wise weight rows).
        {BF16, 64, 97, 9, one, one, View::none},
        {BF16, 96, 250, 130, one, one, View::none},
        {BF16, 2048, 97, 33, one, one, View::none},
        {BF16, 2048, 250, 513, one, one, View::none},
        {BF16, 100, 97, 33, one, one, View::none},
        {BF16, 37, 97, 130, one, one, View::none},
        {F16, 96, 97, 130, one, one, View::none},
        // NVFP4 (256 x 64 tiles): K = 112 leaves a 16-wide last stage.
        {FP4, 64, 97, 513, one, one, View::none},
        {FP4, 2048, 250, 130, one, one, View::none},
        {FP4, 96, 250, 9, one, one, View::none},
        {FP4, 112, 97, 33, one, one, View::none},
        // Batched with broadcast: x slices (b2, b3) use weight slice (b2 / 2, b3 / 3).
        {BF16, 96, 97, 33, {2, 1}, {4, 3}, View::none},
        // Batched BF16 as cuBLAS takes it (one weight per slice, or one weight for all), and a group
        // broadcast it does not (two x slices per weight: the hand-written tiles).
        {BF16, 96, 97, 33, {4, 1}, {4, 1}, View::none},
        {BF16, 64, 250, 130, {1, 1}, {3, 1}, View::none},
        {BF16, 64, 97, 33, {2, 1}, {4, 1}, View::none},
        {FP4, 64, 97, 130, {3, 1}, {6, 1}, View::none},
        // Strided activations and weights.
        {BF16, 64, 97, 33, {3, 1}, {3, 1}, View::permuted_x},
        {BF16, 96, 97, 33, one, one, View::padded_x},
        {BF16, 96, 97, 33, one, one, View::misaligned_x},
        {FP4, 96, 97, 33, one, one, View::transposed_x},
        {BF16, 96, 97, 130, one, one, View::padded_w},
        // More columns than the bf16 copy of the activations holds (2^24 elements): two column chunks.
        {BF16, 2048, 9, 8200, one, one, View::none},
        // Enough 128 x 256 tiles to fill an H100 once (9 x 16 >= 132 SMs): the big BF16 tile.
        {BF16, 192, 1100, 3900, one, one, View::none},
    };
    for (const Dense& g : dense) {
        std::string batch = g.xb == one ? "" : fmt::format(" batch w={} x={}", fmt::join(g.wb, "x"), fmt::join(g.xb, "x"));
        add(fmt::format("mul_mat large {} K={} M={} N={}{}{}", glm_type_name(g.wt), g.K, g.M, g.N, batch, view_name(g.view)),
            [g](OpBuild& b) { return build_dense(b, g); }, mul_mat_reference);
    }

    const Experts experts[] = {
        // T = 9 and 37: about 2 and 9 pairs per expert (32-wide token tiles); T = 300: 64-wide,
        // and the hot expert spans 5 token tiles.
        {true, 2048, 97, 16, 4, 37, true},
        {true, 64, 250, 16, 4, 300, false},
        {true, 96, 97, 16, 4, 9, true},
        {true, 96, 97, 16, 4, 9, false},
        {true, 112, 97, 16, 4, 37, false},
        {false, 96, 97, 16, 4, 300, true},
        {false, 64, 250, 16, 4, 37, false},
        // 65,600 pairs: more than one grouped launch (kMmaMaxPairs = 65,536 pairs each).
        {true, 32, 24, 16, 4, 16400, false},
        // 100 pairs per expert on average (> 80): 128-wide token tiles.
        {true, 192, 250, 16, 4, 400, true},
        // 2,100 tokens x 4 columns of 2048: more than the bf16 copy holds, two token chunks.
        {true, 2048, 24, 16, 4, 2100, false},
    };
    const GateUp gate_ups[] = {
        // Experts: 128-wide token tiles (> 80 pairs per expert, K >= 2048), 64-wide, 32-wide, BF16.
        {FP4, 2048, 97, 400, 16, 4, true},
        {FP4, 192, 250, 300, 16, 4, false},
        {FP4, 96, 97, 37, 16, 4, true},
        {BF16, 64, 250, 37, 16, 4, false},
        // Dense: 128 x 64 and 128 x 128 tiles, the 128 x 256 tile (18 x 8 blocks >= 132 SMs), NVFP4 with
        // a half-filled last K stage.
        {BF16, 96, 97, 33, 0, 0, false},
        {BF16, 2048, 250, 513, 0, 0, false},
        {BF16, 64, 1100, 2000, 0, 0, false},
        {FP4, 112, 97, 130, 0, 0, false},
    };
    for (const GateUp& g : gate_ups) {
        const std::string shape = g.E ? fmt::format("mul_mat_id {} experts=[{}x{}x{}] n_used={} T={} x ne1={}",
                                                    glm_type_name(g.wt), g.K, g.M, g.E, g.n_used, g.N, g.bcast ? 1 : g.n_used)
                                      : fmt::format("mul_mat {} K={} M={} N={}", glm_type_name(g.wt), g.K, g.M, g.N);
        add("swiglu(gate x, up x) large " + shape, [g](OpBuild& b) { return build_gate_up(b, g); }, gate_up_reference);
    }

    for (const Experts& g : experts) {
        add(fmt::format("mul_mat_id large {} experts=[{}x{}x{}] n_used={} T={} x ne1={}", g.nvfp4 ? "nvfp4" : "bf16", g.K,
                        g.M, g.E, g.n_used, g.T, g.bcast ? 1 : g.n_used),
            [g](OpBuild& b) {
                glm_tensor* w = g.nvfp4 ? b.nvfp4(g.K, g.M, g.E) : b.rand(GLM_TYPE_BF16, {g.K, g.M, g.E});
                glm_tensor* x = b.rand(GLM_TYPE_F32, {g.K, g.bcast ? 1 : g.n_used, g.T});
                glm_tensor* id = b.i32({g.n_used, g.T}, skewed_ids(b.rng, g));
                b.in = {w, x, id};
                return glm_mul_mat_id(b.ctx, w, x, id);
            },
            mul_mat_id_reference);
    }
}

}  // namespace optest
