// The table of op cases. Each reference is written from the op's comment in ggml-like/tensor.h and
// computed in double; storage formats are decoded with the scalar decoders (bf16/f16/e4m3 via
// OpBuild::get, E2M1 and NVFP4 with an independent formula) and narrowing casts are computed with
// the enumeration encoder in format-ref.h.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>

#include <fmt/ranges.h>

#include "tests/ops/format-ref.h"
#include "tests/ops/op-cases.h"

namespace optest {
namespace {

constexpr double INF = std::numeric_limits<double>::infinity();

// ---- tolerances (per op family; why each is what it is) -----------------------------------------
// Data movement and format conversion: every value is representable, nothing is rounded twice.
constexpr Tolerance TOL_EXACT{0, INF};
// One or two f32 roundings per element against an unrounded double (f32 eps^2 ~ 3.6e-15 each).
constexpr Tolerance TOL_ELEMENTWISE{1e-13, INF};
// expf (<= 1-2 ulp in glibc) plus a division: a handful of f32 roundings.
constexpr Tolerance TOL_TRANSCENDENTAL{1e-12, INF};
// Row reductions (norms, softmax) with f32 normalisation factors: error ~ few ulp per element.
constexpr Tolerance TOL_ROW_REDUCE{1e-11, INF};
// Dot products in f32 over K <= 64 (8 lanes): rounding error grows ~ sqrt(K) * 2^-24 relative.
constexpr Tolerance TOL_MATMUL{1e-11, INF};
// RoPE: the backend computes angle = pos * inv_freq in f32 (like the PyTorch reference), so for
// positions < 600 the angle is off by up to ~600 * 2^-24 ~ 4e-5 rad, plus the f32 pow of the
// frequency; the double reference has neither. Observed NMSE ~1e-11 (max abs ~2e-5); limit 1e-8.
constexpr Tolerance TOL_ROPE{1e-8, 2e-4};
// Attention / indexer: f64 dot products cast to f32 before scaling, softmax in f64.
constexpr Tolerance TOL_ATTN{1e-10, INF};
// Indexer on CUDA tensor cores (D >= 64, BF16 / F8 keys): q is split into bf16 hi + lo, so it keeps
// ~16 mantissa bits (relative error <= 2^-16 per element) -> expected NMSE ~1e-10; dropping the lo
// half would give ~5e-6, a wrong fragment mapping ~1.
constexpr Tolerance TOL_INDEXER_TC{1e-7, INF};
// Attention on the CUDA tensor-core MQA path (Hk == 1, Dk 576, Dv 512, H % 16 == 0, bf16/f8 cache
// views): q and the softmax weights P are rounded to bf16 (relative error 2^-9 each) before the
// f32-accumulated products, so scores move by ~1e-3 and the output by NMSE ~3e-6 (unit-normal
// inputs). The CPU backend is exact to TOL_ATTN; the limit is for the GPU run. Cosine not checked.
constexpr Tolerance TOL_ATTN_TC{3e-5, INF};
// The CUDA prefill GEMMs (N > 8 tokens, mma.sync) round activations to bf16 (relative 2^-8, mean
// square 2^-15/12 ~ 2.6e-6 per element, which is the NMSE of a dot product of independent terms);
// 3e-5 leaves ~6x margin and still catches a wrong fragment or a dropped K tail.
constexpr Tolerance TOL_MATMUL_GPU_TC{3e-5, INF};



fmtref::Format format_of(glm_type t) {
    switch (t) {
        case GLM_TYPE_BF16: return fmtref::BF16;
        case GLM_TYPE_F16: return fmtref::F16;
        case GLM_TYPE_F8_E4M3: return fmtref::E4M3;
        default: GLM_ABORT("no narrow format for {}", glm_type_name(t));
    }
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// Values with no ties: a random permutation of 0..n-1, scaled, plus tiny noise.
std::function<double(int64_t)> distinct_values(Rng& rng, int64_t n) {
    auto perm = std::make_shared<std::vector<int32_t>>(rng.distinct(n, n));
    return [perm, &rng](int64_t i) { return 0.25 * (*perm)[size_t(i % int64_t(perm->size()))] + rng.uniform(0, 0.01) - 3; };
}

}  // namespace

OpCase make_case(std::string name, std::function<glm_tensor*(OpBuild&)> build,
                 std::function<std::vector<double>(const OpBuild&, const glm_tensor*)> ref, Tolerance tol) {
    OpCase c;
    c.name = std::move(name);
    c.build = std::move(build);
    c.reference = std::move(ref);
    c.tol = tol;
    return c;
}

namespace {

std::vector<OpCase> make_cases() {
    std::vector<OpCase> cs;
    auto add = [&](std::string name, std::function<glm_tensor*(OpBuild&)> build,
                   std::function<Ref(const OpBuild&, const glm_tensor*)> ref, Tolerance tol) {
        cs.push_back(make_case(std::move(name), std::move(build), std::move(ref), tol));
        return &cs.back();
    };

    // ---- get_rows ----------------------------------------------------------------------------
    struct GetRows { glm_type type; int64_t ne0, rows, n; bool nonfinite; };
    for (GetRows g : {GetRows{GLM_TYPE_F32, 37, 11, 5, false}, GetRows{GLM_TYPE_F32, 7, 4, 9, true},
                      GetRows{GLM_TYPE_BF16, 20, 7, 1, false}, GetRows{GLM_TYPE_F16, 9, 4, 6, false},
                      GetRows{GLM_TYPE_F32, 1, 1, 3, false}}) {
        add(fmt::format("get_rows {} [{}x{}] n={}{}", glm_type_name(g.type), g.ne0, g.rows, g.n,
                        g.nonfinite ? " nonfinite" : ""),
            [g](OpBuild& b) {
                glm_tensor* table = b.rand(g.type, {g.ne0, g.rows});
                if (g.nonfinite) b.plant_nonfinite(table, 2);
                std::vector<int32_t> ids;
                for (int64_t i = 0; i < g.n; ++i) ids.push_back(int32_t(b.rng.randint(0, g.rows)));
                glm_tensor* id = b.i32({g.n}, ids);
                b.in = {table, id};
                return glm_get_rows(b.ctx, table, id);
            },
            [](const OpBuild& b, const glm_tensor* out) {
                return map_out(out, [&](int64_t i0, int64_t i1, int64_t, int64_t) {
                    return b.get(b.in[0], i0, b.geti(b.in[1], i1));
                });
            },
            TOL_EXACT);
    }
    for (int64_t K : {16, 48}) {
        add(fmt::format("get_rows nvfp4 [{}x9] n=4", K),
            [K](OpBuild& b) {
                glm_tensor* table = b.nvfp4(K, 9, 1);
                glm_tensor* id = b.i32({4}, {3, 0, 8, 3});
                b.in = {table, id};
                return glm_get_rows(b.ctx, table, id);
            },
            [](const OpBuild& b, const glm_tensor* out) {
                // The f32 output holds the exact NVFP4 value rounded once to f32.
                return map_out(out, [&](int64_t i0, int64_t i1, int64_t, int64_t) {
                    return double(float(b.nvfp4_at(b.in[0], i0, b.geti(b.in[1], i1), 0)));
                });
            },
            TOL_EXACT);
    }

    // ---- add / mul ---------------------------------------------------------------------------
    auto binary_ref = [](bool is_add) {
        return [is_add](const OpBuild& b, const glm_tensor* out) {
            const glm_tensor *x = b.in[0], *y = b.in[1];
            return map_out(out, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
                const double u = b.get(x, i0, i1, i2, i3);
                const double v = b.get(y, y->ne[0] == 1 ? 0 : i0, y->ne[1] == 1 ? 0 : i1, y->ne[2] == 1 ? 0 : i2,
                                       y->ne[3] == 1 ? 0 : i3);
                return is_add ? u + v : u * v;
            });
        };
    };
    struct Bin { bool is_add; std::vector<int64_t> a, b; glm_type tb; bool nonfinite; };
    for (const Bin& g : {Bin{true, {7, 5, 3, 2}, {7, 5, 3, 2}, GLM_TYPE_F32, false},
                         Bin{true, {7, 5, 3, 2}, {7, 1, 3, 1}, GLM_TYPE_F32, false},
                         Bin{true, {9, 4}, {9, 1}, GLM_TYPE_BF16, true},
                         Bin{false, {7, 5, 3, 2}, {1, 5, 1, 2}, GLM_TYPE_F32, false},
                         Bin{false, {13, 3}, {1, 1}, GLM_TYPE_F32, false},
                         Bin{false, {11, 3, 2}, {11, 3, 2}, GLM_TYPE_F32, true},
                         Bin{true, {1}, {1}, GLM_TYPE_F32, false}}) {
        add(fmt::format("{} a={} b={} {}{}", g.is_add ? "add" : "mul", fmt::join(g.a, "x"), fmt::join(g.b, "x"),
                        glm_type_name(g.tb), g.nonfinite ? " nonfinite" : ""),
            [g](OpBuild& b) {
                glm_tensor* x = b.rand(GLM_TYPE_F32, g.a);
                glm_tensor* y = b.rand(g.tb, g.b);
                if (g.nonfinite) b.plant_nonfinite(x);
                b.in = {x, y};
                return g.is_add ? glm_add(b.ctx, x, y) : glm_mul(b.ctx, x, y);
            },
            binary_ref(g.is_add), TOL_ELEMENTWISE);
    }
    for (bool is_add : {true, false}) {
        add(fmt::format("{} permuted a, strided b, broadcast", is_add ? "add" : "mul"),
            [is_add](OpBuild& b) {
                glm_tensor* la = b.rand(GLM_TYPE_F32, {5, 7, 3});
                glm_tensor* x = glm_permute(b.ctx, la, 1, 0, 2, 3);  // [7, 5, 3]
                glm_tensor* lb = b.rand(GLM_TYPE_F32, {9, 1, 3});
                glm_tensor* y = glm_view_3d(b.ctx, lb, 7, 1, 3, lb->nb[1], lb->nb[2], 2 * 4);  // [7, 1, 3]
                b.in = {x, y};
                return is_add ? glm_add(b.ctx, x, y) : glm_mul(b.ctx, x, y);
            },
            binary_ref(is_add), TOL_ELEMENTWISE);
    }

    // ---- unary -------------------------------------------------------------------------------
    enum class Un { scale, silu, sigmoid };
    for (Un u : {Un::scale, Un::silu, Un::sigmoid})
        for (int variant = 0; variant < 3; ++variant) {
            const char* uname = u == Un::scale ? "scale" : u == Un::silu ? "silu" : "sigmoid";
            const std::vector<int64_t> ne = variant == 2 ? std::vector<int64_t>{1} : std::vector<int64_t>{31, 4, 3};
            add(fmt::format("{} {}{}", uname, fmt::join(ne, "x"), variant == 1 ? " nonfinite" : ""),
                [u, ne, variant](OpBuild& b) {
                    glm_tensor* x = b.rand(GLM_TYPE_F32, ne, 4.0);
                    if (variant == 1) b.plant_nonfinite(x, 2);
                    // a permuted view as input in the 3-d variants
                    glm_tensor* xi = variant == 2 ? x : glm_permute(b.ctx, x, 0, 2, 1, 3);
                    b.in = {xi};
                    if (u == Un::scale) return glm_scale(b.ctx, xi, -0.37f);
                    return u == Un::silu ? glm_silu(b.ctx, xi) : glm_sigmoid(b.ctx, xi);
                },
                [u](const OpBuild& b, const glm_tensor* out) {
                    return map_out(out, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
                        const double x = b.get(b.in[0], i0, i1, i2, i3);
                        if (u == Un::scale) return x * double(-0.37f);
                        return u == Un::silu ? x / (1.0 + std::exp(-x)) : sigmoid(x);
                    });
                },
                u == Un::scale ? TOL_ELEMENTWISE : TOL_TRANSCENDENTAL);
        }
    for (bool nonfinite : {false, true}) {
        add(fmt::format("swiglu 17x3x2{}", nonfinite ? " nonfinite" : ""),
            [nonfinite](OpBuild& b) {
                glm_tensor* g = b.rand(GLM_TYPE_F32, {17, 3, 2}, 3.0);
                glm_tensor* u = b.rand(GLM_TYPE_F32, {17, 3, 2});
                if (nonfinite) {
                    b.plant_nonfinite(g);
                    b.plant_nonfinite(u);
                }
                b.in = {g, u};
                return glm_swiglu(b.ctx, g, u);
            },
            [](const OpBuild& b, const glm_tensor* out) {
                return map_out(out, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
                    const double g = b.get(b.in[0], i0, i1, i2, i3);
                    return g / (1.0 + std::exp(-g)) * b.get(b.in[1], i0, i1, i2, i3);
                });
            },
            TOL_TRANSCENDENTAL);
    }

    // ---- norms -------------------------------------------------------------------------------
    struct Norm { int64_t n, rows; int weight; bool strided; };  // weight: 0 none, 1 f32, 2 bf16
    for (Norm g : {Norm{37, 5, 0, false}, Norm{37, 5, 1, false}, Norm{64, 6, 2, false}, Norm{1, 3, 1, false},
                   Norm{29, 4, 2, true}}) {
        add(fmt::format("rms_norm n={} rows={} weight={}{}", g.n, g.rows, g.weight == 0 ? "none" : g.weight == 1 ? "f32" : "bf16",
                        g.strided ? " strided" : ""),
            [g](OpBuild& b) {
                glm_tensor* x = b.rand(GLM_TYPE_F32, {g.strided ? g.n + 5 : g.n, g.rows}, 2.0);
                if (g.strided) x = glm_view_2d(b.ctx, x, g.n, g.rows, x->nb[1], 3 * 4);
                glm_tensor* w = g.weight == 0 ? nullptr : b.rand(g.weight == 1 ? GLM_TYPE_F32 : GLM_TYPE_BF16, {g.n});
                b.in = {x, w};
                return glm_rms_norm(b.ctx, x, w, 1e-6f);
            },
            [](const OpBuild& b, const glm_tensor* out) {
                const glm_tensor *x = b.in[0], *w = b.in[1];
                return map_out(out, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
                    double ss = 0;
                    for (int64_t i = 0; i < x->ne[0]; ++i) ss += std::pow(b.get(x, i, i1, i2, i3), 2);
                    const double y = b.get(x, i0, i1, i2, i3) / std::sqrt(ss / double(x->ne[0]) + double(1e-6f));
                    return w ? y * b.get(w, i0) : y;
                });
            },
            TOL_ROW_REDUCE);
    }
    struct LNorm { int64_t n, rows; bool affine; };
    for (LNorm g : {LNorm{45, 3, true}, LNorm{45, 3, false}, LNorm{1, 4, true}, LNorm{130, 2, true}}) {
        add(fmt::format("layer_norm n={} rows={}{}", g.n, g.rows, g.affine ? " weight+bias" : ""),
            [g](OpBuild& b) {
                glm_tensor* x = b.values(GLM_TYPE_F32, {g.n, g.rows}, [&](int64_t) { return 1.5 + b.rng.normal(); });
                glm_tensor* w = g.affine ? b.rand(GLM_TYPE_F32, {g.n}) : nullptr;
                glm_tensor* bias = g.affine ? b.rand(GLM_TYPE_F32, {g.n}) : nullptr;
                b.in = {x, w, bias};
                return glm_layer_norm(b.ctx, x, w, bias, 1e-5f);
            },
            [](const OpBuild& b, const glm_tensor* out) {
                const glm_tensor *x = b.in[0], *w = b.in[1], *bias = b.in[2];
                const int64_t n = x->ne[0];
                return map_out(out, [&](int64_t i0, int64_t i1, int64_t, int64_t) {
                    double mean = 0, var = 0;
                    for (int64_t i = 0; i < n; ++i) mean += b.get(x, i, i1);
                    mean /= double(n);
                    for (int64_t i = 0; i < n; ++i) var += std::pow(b.get(x, i, i1) - mean, 2);
                    var /= double(n);
                    double y = (b.get(x, i0, i1) - mean) / std::sqrt(var + double(1e-5f));
                    if (w) y *= b.get(w, i0);
                    if (bias) y += b.get(bias, i0);
                    return y;
                });
            },
            TOL_ROW_REDUCE);
    }

    // ---- soft_max ----------------------------------------------------------------------------
    struct Soft { std::vector<int64_t> ne; int special; };  // 1: -inf entries, 2: NaN/+Inf (rows become NaN)
    for (const Soft& g : {Soft{{33, 4, 2}, 0}, Soft{{1, 3}, 0}, Soft{{17, 5}, 1}, Soft{{12, 6}, 2}}) {
        add(fmt::format("soft_max {}{}", fmt::join(g.ne, "x"), g.special == 1 ? " masked -inf" : g.special == 2 ? " nonfinite" : ""),
            [g](OpBuild& b) {
                glm_tensor* x = b.rand(GLM_TYPE_F32, g.ne, 3.0);
                if (g.special == 1) {  // mask a few entries per row, never a whole row
                    for (int64_t r = 0; r < glm_nrows(x); ++r)
                        for (int32_t i : b.rng.distinct(x->ne[0], 4)) {
                            const float m = -std::numeric_limits<float>::infinity();
                            std::memcpy(b.host[x].data() + (r * x->ne[0] + i) * 4, &m, 4);
                        }
                }
                if (g.special == 2) b.plant_nonfinite(x);
                b.in = {x};
                return glm_soft_max(b.ctx, x, 0.7f);
            },
            [](const OpBuild& b, const glm_tensor* out) {
                const glm_tensor* x = b.in[0];
                return map_out(out, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
                    double mx = -INF;
                    bool nan = false;
                    for (int64_t i = 0; i < x->ne[0]; ++i) {
                        const double v = b.get(x, i, i1, i2, i3) * double(0.7f);
                        nan |= std::isnan(v);
                        mx = std::max(mx, v);
                    }
                    double sum = 0;
                    for (int64_t i = 0; i < x->ne[0]; ++i) sum += std::exp(b.get(x, i, i1, i2, i3) * double(0.7f) - mx);
                    // A NaN or +Inf in a row makes the whole row NaN (exp(inf - inf)), as in PyTorch.
                    if (nan || std::isinf(mx)) return std::numeric_limits<double>::quiet_NaN();
                    return std::exp(b.get(x, i0, i1, i2, i3) * double(0.7f) - mx) / sum;
                });
            },
            TOL_ROW_REDUCE);
    }

    // ---- rope --------------------------------------------------------------------------------
    struct Rope { int64_t n, heads, tokens; int n_rot; glm_rope_mode mode; int64_t wide; };  // wide > 0: a slice
    for (Rope g : {Rope{16, 3, 5, 16, GLM_ROPE_INTERLEAVED, 0}, Rope{24, 2, 7, 10, GLM_ROPE_INTERLEAVED, 0},
                   Rope{20, 3, 4, 12, GLM_ROPE_NEOX, 0}, Rope{22, 3, 5, 16, GLM_ROPE_INTERLEAVED, 40},
                   Rope{14, 1, 3, 14, GLM_ROPE_NEOX, 21}, Rope{2, 1, 1, 2, GLM_ROPE_INTERLEAVED, 0}}) {
        add(fmt::format("rope {} [{}x{}x{}] n_rot={}{}", g.mode == GLM_ROPE_NEOX ? "neox" : "interleaved", g.n, g.heads,
                        g.tokens, g.n_rot, g.wide ? " slice of wider row" : ""),
            [g](OpBuild& b) {
                glm_tensor* x = b.rand(GLM_TYPE_F32, {g.wide ? g.wide : g.n, g.heads, g.tokens});
                if (g.wide) x = glm_view_3d(b.ctx, x, g.n, g.heads, g.tokens, x->nb[1], x->nb[2], size_t(g.wide - g.n - 1) * 4);
                std::vector<int32_t> pos = b.rng.distinct(600, g.tokens);  // non-consecutive, unsorted
                glm_tensor* p = b.i32({g.tokens}, pos);
                b.in = {x, p};
                return glm_rope(b.ctx, x, p, g.n_rot, 10000.0f, g.mode);
            },
            [g](const OpBuild& b, const glm_tensor* out) {
                const glm_tensor *x = b.in[0], *p = b.in[1];
                const int half = g.n_rot / 2;
                return map_out(out, [&](int64_t i0, int64_t h, int64_t s, int64_t) {
                    if (i0 >= g.n_rot) return b.get(x, i0, h, s);
                    // pair (a, b) and j from the output index
                    int64_t j, ia, ib;
                    if (g.mode == GLM_ROPE_NEOX) {
                        j = i0 % half;
                        ia = j;
                        ib = j + half;
                    } else {
                        j = i0 / 2;
                        ia = 2 * j;
                        ib = 2 * j + 1;
                    }
                    const double angle = double(b.geti(p, s)) * std::pow(10000.0, -2.0 * double(j) / g.n_rot);
                    const double xa = b.get(x, ia, h, s), xb = b.get(x, ib, h, s);
                    return i0 == ia ? xa * std::cos(angle) - xb * std::sin(angle) : xb * std::cos(angle) + xa * std::sin(angle);
                });
            },
            TOL_ROPE);
    }

    // ---- concat ------------------------------------------------------------------------------
    struct Cat { int dim; std::vector<int64_t> a, b; bool permuted_bf16; };
    for (const Cat& g : {Cat{0, {5, 3, 2}, {4, 3, 2}, false}, Cat{1, {5, 3, 2}, {5, 1, 2}, false},
                         Cat{2, {5, 3, 2}, {5, 3, 3}, false}, Cat{0, {1, 1}, {1, 1}, false},
                         Cat{1, {6, 2, 3}, {6, 5, 3}, true}}) {
        add(fmt::format("concat dim{} {} + {}{}", g.dim, fmt::join(g.a, "x"), fmt::join(g.b, "x"),
                        g.permuted_bf16 ? " (permuted a, bf16 b)" : ""),
            [g](OpBuild& b) {
                glm_tensor* x;
                if (g.permuted_bf16) {
                    glm_tensor* l = b.rand(GLM_TYPE_F32, {g.a[1], g.a[0], g.a[2]});
                    x = glm_permute(b.ctx, l, 1, 0, 2, 3);
                } else {
                    x = b.rand(GLM_TYPE_F32, g.a);
                }
                glm_tensor* y = b.rand(g.permuted_bf16 ? GLM_TYPE_BF16 : GLM_TYPE_F32, g.b);
                b.in = {x, y};
                return glm_concat(b.ctx, x, y, g.dim);
            },
            [g](const OpBuild& b, const glm_tensor* out) {
                const glm_tensor *x = b.in[0], *y = b.in[1];
                return map_out(out, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
                    int64_t idx[4] = {i0, i1, i2, i3};
                    if (idx[g.dim] < x->ne[g.dim]) return b.get(x, idx[0], idx[1], idx[2], idx[3]);
                    idx[g.dim] -= x->ne[g.dim];
                    return b.get(y, idx[0], idx[1], idx[2], idx[3]);
                });
            },
            TOL_EXACT);
    }

    // ---- repeat ------------------------------------------------------------------------------
    struct Rep { std::vector<int64_t> a; std::array<int64_t, 4> to; int variant; };  // 1 nonfinite, 2 permuted bf16 a
    for (const Rep& g : {Rep{{3, 2, 1}, {6, 4, 3, 2}, 0}, Rep{{1}, {5, 3, 1, 1}, 0}, Rep{{5, 3}, {5, 6, 2, 1}, 1},
                         Rep{{4, 3}, {12, 6, 1, 1}, 2}, Rep{{7, 2, 3}, {7, 2, 3, 1}, 0}}) {
        add(fmt::format("repeat {} -> {}{}", fmt::join(g.a, "x"), fmt::join(g.to, "x"),
                        g.variant == 1 ? " nonfinite" : g.variant == 2 ? " (permuted bf16 a)" : ""),
            [g](OpBuild& b) {
                glm_tensor* a;
                if (g.variant == 2) {
                    a = glm_permute(b.ctx, b.rand(GLM_TYPE_BF16, {g.a[1], g.a[0]}), 1, 0, 2, 3);
                } else {
                    a = b.rand(GLM_TYPE_F32, g.a);
                    if (g.variant == 1) b.plant_nonfinite(a);
                }
                b.in = {a};
                return glm_repeat(b.ctx, a, g.to.data());
            },
            [](const OpBuild& b, const glm_tensor* out) {
                const glm_tensor* a = b.in[0];
                return map_out(out, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
                    return b.get(a, i0 % a->ne[0], i1 % a->ne[1], i2 % a->ne[2], i3 % a->ne[3]);
                });
            },
            TOL_EXACT);
    }

    // ---- cpy (f32 -> narrow types, into a strided view) ----------------------------------------
    for (glm_type dt : {GLM_TYPE_F32, GLM_TYPE_BF16, GLM_TYPE_F16, GLM_TYPE_F8_E4M3})
        for (bool nonfinite : {false, true}) {
            add(fmt::format("cpy f32 -> {} strided view{}", glm_type_name(dt), nonfinite ? " nonfinite" : ""),
                [dt, nonfinite](OpBuild& b) {
                    // Wide dynamic range; every third value an exact tie between two neighbours of
                    // the target format (random sign), to exercise round-to-nearest-even.
                    glm_tensor* src = b.values(GLM_TYPE_F32, {13, 6}, [&](int64_t i) {
                        if (dt != GLM_TYPE_F32 && i % 3 == 0) {
                            const auto& es = fmtref::table(format_of(dt)).entries;
                            const size_t n_finite = es.size() - (format_of(dt).has_inf ? 1 : 0);
                            const size_t k = size_t(b.rng.randint(0, int64_t(n_finite) - 1));
                            const double mid = 0.5 * (es[k].first + es[k + 1].first);
                            return b.rng.uniform(0, 1) < 0.5 ? -mid : mid;
                        }
                        return b.rng.normal() * std::ldexp(1.0, int(b.rng.randint(-14, 10)));
                    });
                    if (nonfinite) b.plant_nonfinite(src, 2);
                    glm_tensor* dst = b.rand(dt, {20, 7});
                    const size_t es = glm_type_block_bytes(dt);
                    glm_tensor* view = glm_view_2d(b.ctx, dst, 13, 6, dst->nb[1], 3 * es + dst->nb[1]);
                    b.in = {src};
                    return glm_cpy(b.ctx, src, view);
                },
                [dt](const OpBuild& b, const glm_tensor* out) {
                    return map_out(out, [&](int64_t i0, int64_t i1, int64_t, int64_t) {
                        return stored(dt, b.get(b.in[0], i0, i1));
                    });
                },
                TOL_EXACT);
        }
    add("cpy f32 -> f32 into a transposed view",
        [](OpBuild& b) {
            glm_tensor* src = b.rand(GLM_TYPE_F32, {13, 6});
            glm_tensor* dst = b.rand(GLM_TYPE_F32, {6, 13});
            b.in = {src};
            return glm_cpy(b.ctx, src, glm_transpose(b.ctx, dst));
        },
        [](const OpBuild& b, const glm_tensor* out) {
            return map_out(out, [&](int64_t i0, int64_t i1, int64_t, int64_t) { return b.get(b.in[0], i0, i1); });
        },
        TOL_EXACT);
    add("cpy bf16 permuted -> f16 contiguous (different shape, same count)",
        [](OpBuild& b) {
            glm_tensor* l = b.rand(GLM_TYPE_BF16, {4, 3, 5});
            glm_tensor* src = glm_permute(b.ctx, l, 2, 0, 1, 3);  // [3, 5, 4]
            glm_tensor* dst = b.rand(GLM_TYPE_F16, {15, 4});
            b.in = {src};
            return glm_cpy(b.ctx, src, dst);
        },
        [](const OpBuild& b, const glm_tensor* out) {
            // Elements are copied in row-major order of the source's shape into dst's order.
            const glm_tensor* src = b.in[0];
            Ref flat = map_out(src, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) { return b.get(src, i0, i1, i2, i3); });
            for (double& v : flat) v = stored(out->type, v);
            return flat;
        },
        TOL_EXACT);

    // ---- cont / views ------------------------------------------------------------------------
    // References index the contiguous leaf by hand (flat index), independent of view strides.
    struct Perm { std::vector<int64_t> ne; int ax[4]; glm_type type; bool nonfinite; };
    for (const Perm& g : {Perm{{3, 5, 7, 2}, {2, 0, 1, 3}, GLM_TYPE_F32, false}, Perm{{3, 5, 7, 2}, {3, 1, 0, 2}, GLM_TYPE_F32, true},
                          Perm{{7, 4, 1, 1}, {1, 0, 2, 3}, GLM_TYPE_BF16, false}, Perm{{1, 9, 1, 1}, {1, 0, 2, 3}, GLM_TYPE_F32, false}}) {
        add(fmt::format("cont of permute({},{},{},{}) of {} {}{}", g.ax[0], g.ax[1], g.ax[2], g.ax[3], fmt::join(g.ne, "x"),
                        glm_type_name(g.type), g.nonfinite ? " nonfinite" : ""),
            [g](OpBuild& b) {
                glm_tensor* l = b.rand(g.type, g.ne);
                if (g.nonfinite) b.plant_nonfinite(l);
                b.in = {l};
                return glm_cont(b.ctx, glm_permute(b.ctx, l, g.ax[0], g.ax[1], g.ax[2], g.ax[3]));
            },
            [g](const OpBuild& b, const glm_tensor* out) {
                const glm_tensor* l = b.in[0];
                const int64_t* n = g.ne.data();
                return map_out(out, [&](int64_t j0, int64_t j1, int64_t j2, int64_t j3) {
                    const int64_t j[4] = {j0, j1, j2, j3};
                    const int64_t i0 = j[g.ax[0]], i1 = j[g.ax[1]], i2 = j[g.ax[2]], i3 = j[g.ax[3]];
                    const int64_t flat = i0 + n[0] * (i1 + n[1] * (i2 + n[2] * i3));
                    return b.get(l, flat % n[0], flat / n[0] % n[1], flat / (n[0] * n[1]) % n[2], flat / (n[0] * n[1] * n[2]));
                });
            },
            TOL_EXACT);
    }
    // Flat element f of a contiguous leaf [ne...] as stored.
    auto flat_get = [](const OpBuild& b, const glm_tensor* l, int64_t f) {
        const int64_t n0 = l->ne[0], n1 = l->ne[1], n2 = l->ne[2];
        return b.get(l, f % n0, f / n0 % n1, f / (n0 * n1) % n2, f / (n0 * n1 * n2));
    };
    add("view_1d at offset then cont",
        [](OpBuild& b) {
            glm_tensor* l = b.rand(GLM_TYPE_F32, {10, 3});
            b.in = {l};
            return glm_cont(b.ctx, glm_view_1d(b.ctx, l, 17, 7 * 4));
        },
        [flat_get](const OpBuild& b, const glm_tensor* out) {
            return map_out(out, [&](int64_t i0, int64_t, int64_t, int64_t) { return flat_get(b, b.in[0], 7 + i0); });
        },
        TOL_EXACT);
    add("view_2d strided (every other row, skip 2) then cont",
        [](OpBuild& b) {
            glm_tensor* l = b.rand(GLM_TYPE_F32, {11, 8});
            b.in = {l};
            return glm_cont(b.ctx, glm_view_2d(b.ctx, l, 5, 4, 2 * l->nb[1], 2 * 4));
        },
        [flat_get](const OpBuild& b, const glm_tensor* out) {
            return map_out(out, [&](int64_t i0, int64_t i1, int64_t, int64_t) { return flat_get(b, b.in[0], 2 + i0 + 22 * i1); });
        },
        TOL_EXACT);
    add("view_3d of a view, then reshape-free cont",
        [](OpBuild& b) {
            glm_tensor* l = b.rand(GLM_TYPE_F32, {6, 5, 4});
            glm_tensor* v1 = glm_view_3d(b.ctx, l, 6, 4, 3, l->nb[1], l->nb[2], l->nb[1]);       // rows 1.., planes 0..2
            glm_tensor* v2 = glm_view_3d(b.ctx, v1, 3, 2, 2, v1->nb[1], v1->nb[2], v1->nb[2] + 8);  // nested view
            b.in = {l};
            return glm_cont(b.ctx, v2);
        },
        [flat_get](const OpBuild& b, const glm_tensor* out) {
            return map_out(out, [&](int64_t i0, int64_t i1, int64_t i2, int64_t) {
                // v1 starts at row 1; v2 starts at v1 plane 1, element 2.
                return flat_get(b, b.in[0], 6 + 30 + 2 + i0 + 6 * i1 + 30 * i2);
            });
        },
        TOL_EXACT);
    add("reshape then transpose then cont",
        [](OpBuild& b) {
            glm_tensor* l = b.rand(GLM_TYPE_F32, {12, 5});
            b.in = {l};
            glm_tensor* r = glm_reshape_3d(b.ctx, l, 4, 3, 5);
            return glm_cont(b.ctx, glm_transpose(b.ctx, r));  // [3, 4, 5]
        },
        [flat_get](const OpBuild& b, const glm_tensor* out) {
            return map_out(out, [&](int64_t i0, int64_t i1, int64_t i2, int64_t) { return flat_get(b, b.in[0], i1 + 4 * i0 + 12 * i2); });
        },
        TOL_EXACT);

    // ---- set_rows ----------------------------------------------------------------------------
    for (glm_type ct : {GLM_TYPE_F32, GLM_TYPE_BF16})
        for (bool nonfinite : {false, true}) {
            add(fmt::format("set_rows into {} cache [19x10] n=4{}", glm_type_name(ct), nonfinite ? " nonfinite" : ""),
                [ct, nonfinite](OpBuild& b) {
                    glm_tensor* cache = b.rand(ct, {19, 10});
                    glm_tensor* rows = b.rand(GLM_TYPE_F32, {19, 4});
                    if (nonfinite) b.plant_nonfinite(rows, 2);
                    glm_tensor* slots = b.i32({4}, b.rng.distinct(10, 4));
                    b.in = {cache, rows, slots};
                    return glm_set_rows(b.ctx, cache, rows, slots);
                },
                [ct](const OpBuild& b, const glm_tensor* out) {
                    const glm_tensor *cache = b.in[0], *rows = b.in[1], *slots = b.in[2];
                    return map_out(out, [&](int64_t i0, int64_t i1, int64_t, int64_t) {
                        for (int64_t i = 0; i < slots->ne[0]; ++i)
                            if (b.geti(slots, i) == i1) return stored(ct, b.get(rows, i0, i));
                        return b.get(cache, i0, i1);
                    });
                },
                TOL_EXACT);
        }

    // ---- mul_mat -----------------------------------------------------------------------------
    auto mul_mat_ref = [](const OpBuild& b, const glm_tensor* out) {
        const glm_tensor *w = b.in[0], *x = b.in[1];
        const int64_t r2 = x->ne[2] / w->ne[2], r3 = x->ne[3] / w->ne[3];
        return map_out(out, [&](int64_t m, int64_t n, int64_t b2, int64_t b3) {
            double s = 0;
            for (int64_t k = 0; k < w->ne[0]; ++k) {
                const double wv = w->type == GLM_TYPE_NVFP4 ? b.nvfp4_at(w, k, m, b2 / r2) : b.get(w, k, m, b2 / r2, b3 / r3);
                s += wv * b.get(x, k, n, b2, b3);
            }
            return s;
        });
    };
    struct MM { glm_type wt; std::vector<int64_t> w, x; int view; };  // view: 0 none, 1 transposed w, 2 permuted 3-d w, 3 transposed x
    for (const MM& g : {MM{GLM_TYPE_F32, {37, 13}, {37, 1}, 0}, MM{GLM_TYPE_F32, {37, 13}, {37, 5}, 0},
                        MM{GLM_TYPE_BF16, {64, 9}, {64, 3}, 0}, MM{GLM_TYPE_F16, {33, 7}, {33, 3}, 0},
                        MM{GLM_TYPE_F8_E4M3, {40, 6}, {40, 7}, 0}, MM{GLM_TYPE_F32, {19, 5, 2}, {19, 3, 4}, 0},
                        MM{GLM_TYPE_BF16, {19, 5, 2, 1}, {19, 3, 2, 3}, 0}, MM{GLM_TYPE_BF16, {29, 11}, {29, 3}, 1},
                        MM{GLM_TYPE_F32, {21, 6, 2}, {21, 4, 2}, 2}, MM{GLM_TYPE_F16, {23, 8}, {23, 3}, 3},
                        MM{GLM_TYPE_F32, {1, 1}, {1, 1}, 0},
                        // GPU paths: long rows (loads in flight, split K), every GEMV type, batched
                        // broadcast, the absorbed-MLA transposed view, and N > 8 (tiled prefill).
                        MM{GLM_TYPE_BF16, {4096, 37}, {4096, 1}, 0}, MM{GLM_TYPE_F8_E4M3, {2048, 67}, {2048, 5}, 0},
                        MM{GLM_TYPE_F32, {1040, 33, 2}, {1040, 8, 4}, 0}, MM{GLM_TYPE_F16, {512, 40}, {512, 2}, 0},
                        MM{GLM_TYPE_BF16, {192, 512}, {192, 1}, 1}, MM{GLM_TYPE_BF16, {37, 67}, {37, 70}, 0},
                        MM{GLM_TYPE_BF16, {37, 29}, {37, 70}, 1},
                        // N = 1 GEMV (gemv1_kernel): row groups of 8..256 threads, split K across warps,
                        // partial last step, broadcast slices.
                        MM{GLM_TYPE_F8_E4M3, {2048, 67}, {2048, 1}, 0}, MM{GLM_TYPE_F32, {1040, 33, 2}, {1040, 1, 4}, 0},
                        MM{GLM_TYPE_F16, {512, 40}, {512, 1}, 0}, MM{GLM_TYPE_BF16, {6144, 5}, {6144, 1}, 0},
                        MM{GLM_TYPE_BF16, {64, 700}, {64, 1}, 0}, MM{GLM_TYPE_BF16, {64, 9}, {64, 3}, 3},
                        MM{GLM_TYPE_BF16, {11264, 3}, {11264, 2}, 0}}) {  // one staged column fits: per-column N = 1
        const char* vname[] = {"", " (transposed w)", " (permuted w)", " (transposed x)"};
        add(fmt::format("mul_mat {} w={} x={}{}", glm_type_name(g.wt), fmt::join(g.w, "x"), fmt::join(g.x, "x"), vname[g.view]),
            [g](OpBuild& b) {
                glm_tensor* w;
                if (g.view == 1) w = glm_transpose(b.ctx, b.rand(g.wt, {g.w[1], g.w[0]}));
                else if (g.view == 2) w = glm_permute(b.ctx, b.rand(g.wt, {g.w[1], g.w[2], g.w[0]}), 1, 2, 0, 3);
                else w = b.rand(g.wt, g.w);
                glm_tensor* x = g.view == 3 ? glm_transpose(b.ctx, b.rand(GLM_TYPE_F32, {g.x[1], g.x[0]}))
                                            : b.rand(GLM_TYPE_F32, g.x);
                b.in = {w, x};
                return glm_mul_mat(b.ctx, w, x);
            },
            mul_mat_ref, TOL_MATMUL);
        if (g.x.size() > 1 && g.x[1] > 8) cs.back().gpu_tol = TOL_MATMUL_GPU_TC;
    }
    // N = 1 GEMV with x a view 4 bytes into its buffer: not 16-byte aligned (scalar x staging).
    add("mul_mat bf16 w=256x19 x=256 (misaligned x view)",
        [](OpBuild& b) {
            glm_tensor* w = b.rand(GLM_TYPE_BF16, {256, 19});
            glm_tensor* x = glm_view_1d(b.ctx, b.rand(GLM_TYPE_F32, {257}), 256, sizeof(float));
            b.in = {w, x};
            return glm_mul_mat(b.ctx, w, x);
        },
        mul_mat_ref, TOL_MATMUL);
    struct MM4 { int64_t K, M, E, N, B; };
    for (MM4 g : {MM4{48, 7, 1, 1, 1}, MM4{48, 7, 1, 5, 1}, MM4{16, 5, 3, 3, 6}, MM4{64, 9, 2, 4, 2},
                  MM4{2048, 19, 3, 3, 6}, MM4{64, 33, 1, 33, 1},
                  MM4{2048, 19, 3, 1, 6}, MM4{4096, 5, 2, 1, 2}, MM4{512, 131, 1, 1, 1}}) {
        add(fmt::format("mul_mat nvfp4 w=[{}x{}x{}] x=[{}x{}x{}]", g.K, g.M, g.E, g.K, g.N, g.B),
            [g](OpBuild& b) {
                glm_tensor* w = b.nvfp4(g.K, g.M, g.E);
                glm_tensor* x = b.rand(GLM_TYPE_F32, {g.K, g.N, g.B});
                b.in = {w, x};
                return glm_mul_mat(b.ctx, w, x);
            },
            mul_mat_ref, TOL_MATMUL);
        if (g.N > 8) cs.back().gpu_tol = TOL_MATMUL_GPU_TC;
    }

    // (NVFP4 cannot be reshaped: each ne2 slice owns a global scale; glm_reshape asserts.)

    // ---- mul_mat_id --------------------------------------------------------------------------
    struct MMID { bool nvfp4; int64_t K, M, E, n_used, T; bool bcast; };
    for (MMID g : {MMID{true, 32, 6, 5, 2, 3, true}, MMID{true, 32, 6, 5, 2, 3, false}, MMID{true, 16, 3, 7, 3, 1, false},
                   MMID{false, 24, 5, 4, 3, 2, false}, MMID{false, 23, 5, 6, 2, 3, true},
                   MMID{true, 6144, 40, 8, 3, 2, true}, MMID{true, 512, 64, 6, 2, 3, false},
                   // gemv1_kernel: partial row tiles (down-like K = 512, G = 8), several slices per
                   // block with x re-staged only when it changes (broadcast or not), BF16 experts.
                   MMID{true, 512, 67, 6, 2, 3, false}, MMID{true, 64, 16, 4, 3, 705, true},
                   MMID{true, 64, 16, 4, 3, 705, false}, MMID{false, 64, 9, 5, 3, 705, true},
                   MMID{false, 2048, 21, 4, 2, 2, true}}) {
        add(fmt::format("mul_mat_id {} experts=[{}x{}x{}] n_used={} T={} x ne1={}", g.nvfp4 ? "nvfp4" : "bf16", g.K, g.M, g.E,
                        g.n_used, g.T, g.bcast ? 1 : g.n_used),
            [g](OpBuild& b) {
                glm_tensor* w = g.nvfp4 ? b.nvfp4(g.K, g.M, g.E) : b.rand(GLM_TYPE_BF16, {g.K, g.M, g.E});
                glm_tensor* x = b.rand(GLM_TYPE_F32, {g.K, g.bcast ? 1 : g.n_used, g.T});
                std::vector<int32_t> ids;
                for (int64_t t = 0; t < g.T; ++t)
                    for (int32_t e : b.rng.distinct(g.E, g.n_used)) ids.push_back(e);  // some experts get 0 tokens
                glm_tensor* id = b.i32({g.n_used, g.T}, ids);
                b.in = {w, x, id};
                return glm_mul_mat_id(b.ctx, w, x, id);
            },
            mul_mat_id_reference, TOL_MATMUL);
        if (g.T > 8) cs.back().gpu_tol = TOL_MATMUL_GPU_TC;
    }

    // ---- attn --------------------------------------------------------------------------------
    const auto attn_ref = attn_reference;  // op-cases-length-bound.cpp
    // kind: 0 dense; 1 key_ids subset with -1 padding (and ids beyond q_pos); 2 absorbed-MLA bf16
    // views of one cache row (v = first Dv dims of k), dense; 3 absorbed with key_ids.
    struct Attn { int64_t Dk, Dv, H, Hk, S, T; int kind; };
    for (Attn g : {Attn{24, 16, 3, 3, 5, 9, 0}, Attn{20, 12, 4, 1, 3, 7, 0}, Attn{16, 16, 2, 2, 4, 13, 1},
                   Attn{20, 20, 3, 1, 5, 5, 1}, Attn{32, 24, 4, 1, 1, 11, 2}, Attn{32, 24, 4, 1, 3, 17, 3},
                   Attn{8, 8, 2, 2, 1, 1, 0}, Attn{12, 7, 5, 5, 1, 37, 0}, Attn{40, 32, 2, 1, 2, 300, 2},
                   Attn{24, 16, 3, 3, 3, 257, 1}}) {
        const char* kname[] = {"dense causal", "key_ids", "absorbed bf16 cache views", "absorbed bf16 cache views + key_ids"};
        add(fmt::format("attn Dk={} Dv={} H={} Hk={} S={} T={} {}", g.Dk, g.Dv, g.H, g.Hk, g.S, g.T, kname[g.kind]),
            [g](OpBuild& b) {
                glm_tensor* q = b.rand(GLM_TYPE_F32, {g.Dk, g.H, g.S});
                glm_tensor *k, *v;
                if (g.kind >= 2) {
                    glm_tensor* cache = b.rand(GLM_TYPE_BF16, {g.Dk + 5, g.T});
                    k = glm_view_3d(b.ctx, cache, g.Dk, 1, g.T, cache->nb[1], cache->nb[1], 0);
                    v = glm_view_3d(b.ctx, cache, g.Dv, 1, g.T, cache->nb[1], cache->nb[1], 0);
                } else {
                    k = b.rand(GLM_TYPE_F32, {g.Dk, g.Hk, g.T});
                    v = b.rand(GLM_TYPE_F32, {g.Dv, g.Hk, g.T});
                }
                std::vector<int32_t> pos;
                for (int64_t s = 0; s < g.S; ++s) pos.push_back(int32_t(g.T - g.S + s));
                glm_tensor* qp = b.i32({g.S}, pos);
                glm_tensor* kid = nullptr;
                if (g.kind == 1 || g.kind == 3) {
                    const int64_t n_sel = 6;
                    std::vector<int32_t> ids;
                    for (int64_t s = 0; s < g.S; ++s) {
                        // a duplicate-free random subset of all T slots (some beyond q_pos: ignored),
                        // at least one visible key, -1 padding in random places.
                        const int64_t n_valid = b.rng.randint(1, std::min<int64_t>(n_sel, g.T) + 1);
                        std::vector<int32_t> sel = b.rng.distinct(g.T, n_valid);
                        if (std::none_of(sel.begin(), sel.end(), [&](int32_t t) { return t <= pos[size_t(s)]; }))
                            sel[0] = int32_t(b.rng.randint(0, pos[size_t(s)] + 1));
                        while (int64_t(sel.size()) < n_sel) sel.insert(sel.begin() + b.rng.randint(0, int64_t(sel.size()) + 1), -1);
                        ids.insert(ids.end(), sel.begin(), sel.end());
                    }
                    kid = b.i32({n_sel, g.S}, ids);
                }
                b.in = {q, k, v, qp, kid};
                return glm_attn(b.ctx, q, k, v, qp, kid, float(1.0 / std::sqrt(double(g.Dk))));
            },
            attn_ref, TOL_ATTN)
            ->check_cosine = true;
    }

    // Absorbed-MLA decode shapes of the CUDA tensor-core path: k = [576, 1, T] and v = [512, 1, T]
    // views of the same rows of a [576, T] bf16 or e4m3 cache; T over several key tiles and splits;
    // q_pos = T-1 and earlier; key_ids of 2048 entries with -1 padding (and ids beyond q_pos).
    // Prefill chunks past the first take the same form: consecutive positions (pos_step 1), many queries.
    struct Mla { int64_t H, S, T; glm_type type; int last_pos; int n_valid_ids; int pos_step = 250; };
    for (Mla g : {Mla{16, 1, 1000, GLM_TYPE_BF16, 999, 0}, Mla{16, 1, 100, GLM_TYPE_BF16, 77, 0},
                  Mla{64, 2, 1000, GLM_TYPE_BF16, 999, 0}, Mla{16, 1, 5000, GLM_TYPE_BF16, 4999, 0},
                  Mla{16, 2, 5000, GLM_TYPE_BF16, 4999, 1900}, Mla{16, 1, 5000, GLM_TYPE_F8_E4M3, 3000, 0},
                  Mla{32, 2, 1000, GLM_TYPE_F8_E4M3, 999, 700}, Mla{16, 37, 3000, GLM_TYPE_BF16, 2999, 2000, 1},
                  Mla{16, 45, 600, GLM_TYPE_BF16, 599, 0, 1}}) {
        const int64_t Dk = 576, Dv = 512;
        add(fmt::format("attn MLA absorbed Dk={} Dv={} H={} S={} T={} {} cache q_pos<={}{}", Dk, Dv, g.H, g.S, g.T,
                        glm_type_name(g.type), g.last_pos, g.n_valid_ids ? " + key_ids[2048]" : ""),
            [g, Dk, Dv](OpBuild& b) {
                glm_tensor* q = b.rand(GLM_TYPE_F32, {Dk, g.H, g.S});
                glm_tensor* cache = b.rand(g.type, {Dk, g.T});
                glm_tensor* k = glm_view_3d(b.ctx, cache, Dk, 1, g.T, cache->nb[1], cache->nb[1], 0);
                glm_tensor* v = glm_view_3d(b.ctx, cache, Dv, 1, g.T, cache->nb[1], cache->nb[1], 0);
                std::vector<int32_t> pos;
                for (int64_t s = 0; s < g.S; ++s) pos.push_back(int32_t(g.last_pos - (g.S - 1 - s) * g.pos_step));
                glm_tensor* qp = b.i32({g.S}, pos);
                glm_tensor* kid = nullptr;
                if (g.n_valid_ids) {
                    const int64_t n_sel = 2048;
                    std::vector<int32_t> ids;
                    for (int64_t s = 0; s < g.S; ++s) {
                        std::vector<int32_t> sel = b.rng.distinct(g.T, g.n_valid_ids);
                        while (int64_t(sel.size()) < n_sel) sel.insert(sel.begin() + b.rng.randint(0, int64_t(sel.size()) + 1), -1);
                        ids.insert(ids.end(), sel.begin(), sel.end());
                    }
                    kid = b.i32({n_sel, g.S}, ids);
                }
                b.in = {q, k, v, qp, kid};
                return glm_attn(b.ctx, q, k, v, qp, kid, float(1.0 / std::sqrt(double(Dk))));
            },
            attn_ref, TOL_ATTN_TC);
    }

    // ---- indexer -----------------------------------------------------------------------------
    // ktype: 0 f32, 1 bf16, 2 bf16 slice of a wider row, 3 f8_e4m3. D in {64, 128} with Hi in
    // {16, 32, 64} and bf16 / f8 keys take the CUDA tensor-core path (TOL_INDEXER_TC).
    struct Idx { int64_t D, Hi, S, T; int ktype; };
    for (Idx g : {Idx{16, 3, 4, 9, 0}, Idx{16, 3, 4, 9, 1}, Idx{24, 5, 1, 13, 2}, Idx{7, 1, 3, 3, 0},
                  Idx{128, 32, 1, 20000, 1}, Idx{64, 16, 1, 70000, 1}, Idx{128, 32, 3, 5000, 1}, Idx{128, 32, 2, 5000, 3},
                  Idx{64, 16, 3, 1000, 3}, Idx{128, 64, 2, 700, 1}, Idx{128, 32, 2, 600, 2}}) {
        const bool tc = (g.D == 64 || g.D == 128) && (g.ktype == 1 || g.ktype == 3);
        add(fmt::format("indexer D={} Hi={} S={} T={} k={}", g.D, g.Hi, g.S, g.T,
                        g.ktype == 0 ? "f32" : g.ktype == 1 ? "bf16" : g.ktype == 2 ? "bf16 slice" : "f8"),
            [g](OpBuild& b) {
                glm_tensor* q = b.rand(GLM_TYPE_F32, {g.D, g.Hi, g.S});
                glm_tensor* k;
                if (g.ktype == 2) {
                    glm_tensor* cache = b.rand(GLM_TYPE_BF16, {g.D + 9, g.T});
                    k = glm_view_2d(b.ctx, cache, g.D, g.T, cache->nb[1], 4 * 2);
                } else {
                    k = b.rand(g.ktype == 0 ? GLM_TYPE_F32 : g.ktype == 1 ? GLM_TYPE_BF16 : GLM_TYPE_F8_E4M3, {g.D, g.T});
                }
                glm_tensor* w = b.rand(GLM_TYPE_F32, {g.Hi, g.S});
                std::vector<int32_t> pos;
                for (int64_t s = 0; s < g.S; ++s) pos.push_back(int32_t(g.T - g.S + s));
                glm_tensor* qp = b.i32({g.S}, pos);
                b.in = {q, k, w, qp};
                return glm_indexer(b.ctx, q, k, w, qp, 0.3f, 0.625f);  // the head weights' scale too
            },
            [](const OpBuild& b, const glm_tensor* out) {
                const glm_tensor *q = b.in[0], *k = b.in[1], *w = b.in[2], *qp = b.in[3];
                return map_out(out, [&](int64_t t, int64_t s, int64_t, int64_t) {
                    if (t > b.geti(qp, s)) return -INF;
                    double total = 0;
                    for (int64_t h = 0; h < q->ne[1]; ++h) {
                        double d = 0;
                        for (int64_t c = 0; c < q->ne[0]; ++c) d += b.get(q, c, h, s) * b.get(k, c, t);
                        total += b.get(w, h, s) * 0.625 * std::max(0.0, double(0.3f) * d);
                    }
                    return total;
                });
            },
            tc ? TOL_INDEXER_TC : TOL_ATTN);
    }

    // ---- top_k / argmax (exact; inputs without ties) -------------------------------------------
    auto sorted_desc = [](const OpBuild& b, const glm_tensor* a, int64_t col) {
        std::vector<int32_t> idx(size_t(a->ne[0]));
        std::iota(idx.begin(), idx.end(), 0);
        std::stable_sort(idx.begin(), idx.end(), [&](int32_t x, int32_t y) { return b.get(a, x, col) > b.get(a, y, col); });
        return idx;
    };
    struct TopK { int64_t n, cols; int k; bool strided; };
    for (TopK g : {TopK{23, 4, 5, false}, TopK{7, 2, 7, false}, TopK{1, 3, 1, false}, TopK{40, 3, 8, true}})
    for (bool by_index : {false, true}) {
        add(fmt::format("top_k{} n={} cols={} k={}{}", by_index ? "_by_index" : "", g.n, g.cols, g.k, g.strided ? " strided" : ""),
            [g, by_index](OpBuild& b) {
                glm_tensor* a = b.values(GLM_TYPE_F32, {g.strided ? g.n + 3 : g.n, g.cols}, distinct_values(b.rng, 1000));
                if (g.strided) a = glm_view_2d(b.ctx, a, g.n, g.cols, a->nb[1], 4);
                b.in = {a};
                return by_index ? glm_top_k_by_index(b.ctx, a, g.k) : glm_top_k(b.ctx, a, g.k);
            },
            [](const OpBuild& b, const glm_tensor* out) {
                return map_out(out, [&](int64_t j, int64_t c, int64_t, int64_t) { return double(top_k_reference(b, out, c)[size_t(j)]); });
            },
            TOL_EXACT);
    }
    // Long columns as the indexer produces them (decode over many keys): the radix-select path of
    // a GPU top-k. Ties (small integers) and a masked tail of -inf, as the causal mask leaves.
    // mode 0 distinct, 1 ties, 2 -inf tail, 3 a few ties per value (ties at the threshold that the
    // multi-block CUDA path resolves without its single-block fallback)
    struct TopKBig { int64_t n, cols; int k; int mode; };
    for (TopKBig g : {TopKBig{10000, 2, 2048, 0}, TopKBig{10000, 2, 2048, 1}, TopKBig{5000, 2, 2048, 2},
                      TopKBig{131072, 2, 2048, 0}, TopKBig{131072, 1, 2048, 1}, TopKBig{131072, 1, 2048, 2},
                      TopKBig{131072, 3, 2048, 3}, TopKBig{202753, 1, 2048, 0},
                      TopKBig{70000, 1, 2048, 0}, TopKBig{4096, 1, 2048, 1}, TopKBig{2050, 2, 2048, 0}})
    for (bool by_index : {false, true}) {
        add(fmt::format("top_k{} long n={} cols={} k={} {}", by_index ? "_by_index" : "", g.n, g.cols, g.k,
                        g.mode == 0 ? "distinct" : g.mode == 1 ? "ties" : g.mode == 2 ? "-inf tail" : "few ties"),
            [g, by_index](OpBuild& b) {
                std::function<double(int64_t)> gen = distinct_values(b.rng, g.n * g.cols);
                if (g.mode == 1) gen = [&b](int64_t) { return double(b.rng.randint(-50, 50)); };
                if (g.mode == 3) gen = [&b](int64_t) { return double(b.rng.randint(-5000, 5000)); };
                if (g.mode == 2) {
                    auto base = distinct_values(b.rng, g.n * g.cols);
                    const int64_t n = g.n;
                    gen = [base, n](int64_t i) { return (i % n) < 1000 ? base(i) : -INFINITY; };
                }
                glm_tensor* a = b.values(GLM_TYPE_F32, {g.n, g.cols}, gen);
                b.in = {a};
                return by_index ? glm_top_k_by_index(b.ctx, a, g.k) : glm_top_k(b.ctx, a, g.k);
            },
            [](const OpBuild& b, const glm_tensor* out) {
                std::vector<std::vector<int32_t>> cols;
                for (int64_t c = 0; c < out->ne[1]; ++c) cols.push_back(top_k_reference(b, out, c));
                return map_out(out, [&](int64_t j, int64_t c, int64_t, int64_t) { return double(cols[size_t(c)][size_t(j)]); });
            },
            TOL_EXACT);
    }
    struct Arg { int64_t n, cols; bool strided; };
    for (Arg g : {Arg{29, 5, false}, Arg{1, 3, false}, Arg{17, 4, true}}) {
        add(fmt::format("argmax n={} cols={}{}", g.n, g.cols, g.strided ? " strided" : ""),
            [g](OpBuild& b) {
                glm_tensor* a = b.values(GLM_TYPE_F32, {g.strided ? g.n + 2 : g.n, g.cols}, distinct_values(b.rng, 1000));
                // put the maximum at the first and the last position of two columns
                if (g.n > 1) {
                    const float big = 1e6f;
                    std::memcpy(b.host[a].data() + 0, &big, 4);
                    std::memcpy(b.host[a].data() + (a->ne[0] * 2 + g.n - 1) * 4, &big, 4);
                }
                if (g.strided) a = glm_view_2d(b.ctx, a, g.n, g.cols, a->nb[1], 0);
                b.in = {a};
                return glm_argmax(b.ctx, a);
            },
            [sorted_desc](const OpBuild& b, const glm_tensor* out) {
                return map_out(out, [&](int64_t c, int64_t, int64_t, int64_t) { return double(sorted_desc(b, b.in[0], c)[0]); });
            },
            TOL_EXACT);
    }

    // ---- moe ---------------------------------------------------------------------------------
    // Dropped groups are not eligible at all (transformers masks them to -inf): the negative-bias
    // case makes biased scores of kept experts negative, where masking to 0 would differ.
    struct Sel { int64_t E, T; int k, n_group, topk_group; bool bias; bool negative = false; };
    for (Sel g : {Sel{16, 5, 4, 1, 1, false}, Sel{16, 5, 4, 1, 1, true}, Sel{16, 6, 6, 4, 2, true},
                  Sel{24, 4, 5, 8, 3, false}, Sel{10, 3, 2, 5, 1, true}, Sel{7, 1, 7, 1, 1, true},
                  Sel{16, 4, 3, 4, 2, true, true}}) {
        add(fmt::format("moe_select E={} T={} k={} n_group={} topk_group={}{}{}", g.E, g.T, g.k, g.n_group, g.topk_group,
                        g.bias ? " bias" : "", g.negative ? " negative" : ""),
            [g](OpBuild& b) {
                glm_tensor* probs = b.values(GLM_TYPE_F32, {g.E, g.T}, [&](int64_t) { return b.rng.uniform(0.05, 1.0); });
                const double lo = g.negative ? -1.2 : -0.04, hi = g.negative ? -0.9 : 0.04;
                glm_tensor* bias = g.bias ? b.values(GLM_TYPE_F32, {g.E}, [&](int64_t) { return b.rng.uniform(lo, hi); }) : nullptr;
                b.in = {probs, bias};
                return glm_moe_select(b.ctx, probs, bias, g.k, g.n_group, g.topk_group);
            },
            [g](const OpBuild& b, const glm_tensor* out) {
                const glm_tensor *probs = b.in[0], *bias = b.in[1];
                Ref r;
                const int64_t per = g.E / g.n_group;
                for (int64_t t = 0; t < g.T; ++t) {
                    std::vector<double> sc(size_t(g.E));
                    // f32 addition, as the op adds bias to the f32 score
                    for (int64_t e = 0; e < g.E; ++e) sc[size_t(e)] = double(float(b.get(probs, e, t) + (bias ? b.get(bias, e) : 0.0)));
                    std::vector<std::pair<double, int64_t>> groups;
                    for (int64_t gi = 0; gi < g.n_group; ++gi) {
                        std::vector<double> m(sc.begin() + gi * per, sc.begin() + (gi + 1) * per);
                        std::sort(m.rbegin(), m.rend());
                        groups.push_back({m[0] + (per > 1 ? m[1] : 0.0), gi});
                    }
                    std::stable_sort(groups.begin(), groups.end(), [](auto& x, auto& y) { return x.first > y.first; });
                    std::vector<int64_t> cand;
                    for (int gi = 0; gi < g.topk_group; ++gi)
                        for (int64_t e = groups[size_t(gi)].second * per; e < (groups[size_t(gi)].second + 1) * per; ++e) cand.push_back(e);
                    std::sort(cand.begin(), cand.end());
                    std::stable_sort(cand.begin(), cand.end(), [&](int64_t x, int64_t y) { return sc[size_t(x)] > sc[size_t(y)]; });
                    for (int j = 0; j < g.k; ++j) r.push_back(double(cand[size_t(j)]));
                }
                (void)out;
                return r;
            },
            TOL_EXACT);
    }
    for (bool normalize : {true, false}) {
        add(fmt::format("moe_weights E=12 n_used=3 T=4 normalize={}", normalize),
            [normalize](OpBuild& b) {
                glm_tensor* probs = b.values(GLM_TYPE_F32, {12, 4}, [&](int64_t) { return b.rng.uniform(0.0, 1.0); });
                std::vector<int32_t> ids;
                for (int t = 0; t < 4; ++t)
                    for (int32_t e : b.rng.distinct(12, 3)) ids.push_back(e);
                glm_tensor* id = b.i32({3, 4}, ids);
                b.in = {probs, id};
                return glm_moe_weights(b.ctx, probs, id, normalize, normalize ? 2.5f : 1.0f);
            },
            [normalize](const OpBuild& b, const glm_tensor* out) {
                const glm_tensor *probs = b.in[0], *ids = b.in[1];
                return map_out(out, [&](int64_t j, int64_t t, int64_t, int64_t) {
                    double sum = 0;
                    for (int64_t i = 0; i < ids->ne[0]; ++i) sum += b.get(probs, b.geti(ids, i, t), t);
                    const double w = b.get(probs, b.geti(ids, j, t), t);
                    return normalize ? w / (sum + 1e-20) * 2.5 : w;
                });
            },
            TOL_ELEMENTWISE);
    }
    struct Comb { int64_t D, n_used, T; };
    for (Comb g : {Comb{10, 3, 4}, Comb{1, 2, 3}, Comb{33, 8, 1}}) {
        add(fmt::format("moe_combine D={} n_used={} T={}", g.D, g.n_used, g.T),
            [g](OpBuild& b) {
                add_combine_inputs(b, g.D, g.n_used, g.T, 16);
                return glm_moe_combine(b.ctx, b.in[0], b.in[1], b.in[2]);
            },
            [](const OpBuild& b, const glm_tensor* out) {
                return map_out(out, [&](int64_t d, int64_t t, int64_t, int64_t) { return combine_reference(b, 0, d, t); });
            },
            TOL_ELEMENTWISE);
    }

    // ---- all_reduce (identity on one device) -----------------------------------------------------
    add("all_reduce 7x3x2 nonfinite (identity)",
        [](OpBuild& b) {
            glm_tensor* x = b.rand(GLM_TYPE_F32, {7, 3, 2});
            b.plant_nonfinite(x);
            b.in = {x};
            return glm_all_reduce(b.ctx, x);
        },
        [](const OpBuild& b, const glm_tensor* out) {
            return map_out(out, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) { return b.get(b.in[0], i0, i1, i2, i3); });
        },
        TOL_EXACT);
    return cs;
}

}  // namespace

const std::vector<OpCase>& op_cases() {
    static const std::vector<OpCase> cases = [] {
        std::vector<OpCase> cs = make_cases();
        add_length_bound_cases(cs);
        add_matmul_large_cases(cs);
        add_max_arg_cases(cs);
        add_decode_cases(cs);
        add_fused_cases(cs);
        add_context_parallel_cases(cs);
        return cs;
    }();
    return cases;
}

}  // namespace optest
