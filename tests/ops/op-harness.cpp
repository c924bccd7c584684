// Builder, runner and comparison of the op test table (see op-cases.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <set>

#include "tests/ops/format-ref.h"
#include "ggml-like/arena.h"
#include "tests/ops/op-cases.h"

namespace optest {

double stored(glm_type t, double v) {
    switch (t) {
        case GLM_TYPE_F32: return double(float(v));
        case GLM_TYPE_BF16: return fmtref::round_to(fmtref::BF16, v);
        case GLM_TYPE_F16: return fmtref::round_to(fmtref::F16, v);
        case GLM_TYPE_F8_E4M3: return fmtref::round_to(fmtref::E4M3, v);
        default: GLM_ABORT("stored: type {}", glm_type_name(t));
    }
}

std::vector<int32_t> holes(Rng& rng, int64_t n, int64_t n_valid, int64_t len) {
    std::vector<int32_t> v = rng.distinct(n, std::min(n, n_valid));
    while (int64_t(v.size()) < len) v.insert(v.begin() + rng.randint(0, int64_t(v.size()) + 1), -1);
    return v;
}

double Rng::normal() {
    // Box-Muller; u1 in (0, 1].
    const double u1 = 1.0 - uniform(0.0, 1.0), u2 = uniform(0.0, 1.0);
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

std::vector<int32_t> Rng::distinct(int64_t n, int64_t k) {
    std::vector<int32_t> all(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) all[size_t(i)] = int32_t(i);
    for (int64_t i = 0; i < k; ++i) std::swap(all[size_t(i)], all[size_t(randint(i, n))]);
    all.resize(size_t(k));
    return all;
}

uint64_t seed_of(const std::string& name) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (unsigned char ch : name) h = (h ^ ch) * 1099511628211ull;
    return h;
}

// ---- builder ----------------------------------------------------------------------------------
static glm_tensor* new_leaf(glm_context& ctx, glm_type type, const std::vector<int64_t>& ne) {
    return ctx.new_tensor(type, int(ne.size()), ne.data());
}

glm_tensor* OpBuild::leaf(glm_type type, std::vector<int64_t> ne) {
    glm_tensor* t = new_leaf(ctx, type, ne);
    host[t].assign(glm_nbytes(t), 0);
    t->name = "leaf" + std::to_string(host.size());
    return t;
}

// Store v in a float type with the independent encoders (inputs only need to be valid values).
static void store_value(glm_type type, double v, uint8_t* p) {
    switch (type) {
        case GLM_TYPE_F32: { const float f = float(v); std::memcpy(p, &f, 4); return; }
        case GLM_TYPE_F16: { const uint16_t h = uint16_t(fmtref::encode(fmtref::F16, v)); std::memcpy(p, &h, 2); return; }
        case GLM_TYPE_BF16: { const uint16_t h = uint16_t(fmtref::encode(fmtref::BF16, v)); std::memcpy(p, &h, 2); return; }
        case GLM_TYPE_F8_E4M3: *p = uint8_t(fmtref::encode(fmtref::E4M3, v)); return;
        default: GLM_ABORT("store_value: type {}", glm_type_name(type));
    }
}

glm_tensor* OpBuild::values(glm_type type, std::vector<int64_t> ne, const std::function<double(int64_t)>& g) {
    glm_tensor* t = leaf(type, ne);
    std::vector<uint8_t>& bytes = host[t];
    const size_t es = glm_type_block_bytes(type);
    for (int64_t i = 0; i < glm_nelements(t); ++i) store_value(type, g(i), bytes.data() + size_t(i) * es);
    return t;
}

glm_tensor* OpBuild::rand(glm_type type, std::vector<int64_t> ne, double scale) {
    return values(type, ne, [&](int64_t) { return rng.normal() * scale; });
}

glm_tensor* OpBuild::i32(std::vector<int64_t> ne, const std::vector<int32_t>& v) {
    glm_tensor* t = leaf(GLM_TYPE_I32, ne);
    GLM_ASSERT(int64_t(v.size()) == glm_nelements(t));
    std::memcpy(host[t].data(), v.data(), v.size() * 4);
    return t;
}

glm_tensor* OpBuild::nvfp4(int64_t K, int64_t M, int64_t E) {
    glm_tensor* w = ctx.new_nvfp4(K, M, E);
    glm_set_name(w, "nvfp4." + std::to_string(host.size()));
    std::vector<uint8_t>& codes = host[w];
    codes.resize(glm_nbytes(w));
    for (uint8_t& c : codes) c = uint8_t(rng.randint(0, 256));
    std::vector<uint8_t>& scales = host[w->block_scale];
    scales.resize(glm_nbytes(w->block_scale));
    // Positive E4M3 scales across the exponent range (never NaN): exponent 1..14, any mantissa,
    // and some subnormals.
    for (uint8_t& s : scales) {
        const int64_t r = rng.randint(0, 16);
        s = r == 0 ? uint8_t(rng.randint(1, 8)) : uint8_t((rng.randint(4, 12) << 3) | rng.randint(0, 8));
    }
    std::vector<uint8_t>& global = host[w->global_scale];
    global.resize(glm_nbytes(w->global_scale));
    for (int64_t e = 0; e < E; ++e) {
        const float g = float(rng.uniform(0.5, 2.0) / 64.0);
        std::memcpy(global.data() + e * 4, &g, 4);
    }
    return w;
}

void OpBuild::plant_nonfinite(glm_tensor* t, int count) {
    GLM_ASSERT(t->type == GLM_TYPE_F32 && host.count(t) && glm_nelements(t) >= 3 * count);
    const std::vector<int32_t> pos = rng.distinct(glm_nelements(t), 3 * count);
    const float specials[3] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                               -std::numeric_limits<float>::infinity()};
    for (size_t i = 0; i < pos.size(); ++i) std::memcpy(host[t].data() + size_t(pos[i]) * 4, &specials[i % 3], 4);
}

static size_t element_offset(const glm_tensor* t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    return (t->view_src ? t->view_offset : 0) + size_t(i0) * t->nb[0] + size_t(i1) * t->nb[1] +
           size_t(i2) * t->nb[2] + size_t(i3) * t->nb[3];
}

double read_element(const glm_tensor* t, const std::vector<uint8_t>& bytes, int64_t i0, int64_t i1, int64_t i2,
                    int64_t i3) {
    const size_t off = element_offset(t, i0, i1, i2, i3);
    GLM_ASSERT(off + glm_type_block_bytes(t->type) <= bytes.size());
    const uint8_t* p = bytes.data() + off;
    switch (t->type) {
        case GLM_TYPE_F32: { float v; std::memcpy(&v, p, 4); return v; }
        case GLM_TYPE_F16: { uint16_t v; std::memcpy(&v, p, 2); return glm_f16_to_f32(v); }
        case GLM_TYPE_BF16: { uint16_t v; std::memcpy(&v, p, 2); return glm_bf16_to_f32(v); }
        case GLM_TYPE_F8_E4M3: return glm_e4m3_to_f32(*p);
        case GLM_TYPE_I32: { int32_t v; std::memcpy(&v, p, 4); return v; }
        default: GLM_ABORT("read_element: type {}", glm_type_name(t->type));
    }
}

double OpBuild::get(const glm_tensor* t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) const {
    const glm_tensor* root = glm_view_root(const_cast<glm_tensor*>(t));
    return read_element(t, host.at(root), i0, i1, i2, i3);
}

int32_t OpBuild::geti(const glm_tensor* t, int64_t i0, int64_t i1) const {
    GLM_ASSERT(t->type == GLM_TYPE_I32);
    return int32_t(get(t, i0, i1));
}

double OpBuild::nvfp4_at(const glm_tensor* w, int64_t k, int64_t m, int64_t e) const {
    // Contiguous layout from the format: rows of K/2 bytes, low nibble = even element; one scale per
    // 16 elements ([K/16, M, E]); one global scale per e.
    const int64_t K = w->ne[0], M = w->ne[1];
    const uint8_t byte = host.at(w)[size_t((e * M + m) * (K / 2) + k / 2)];
    const uint8_t code = (k & 1) ? uint8_t(byte >> 4) : uint8_t(byte & 0xf);
    const uint8_t scale = host.at(w->block_scale)[size_t((e * M + m) * (K / 16) + k / 16)];
    float global;
    std::memcpy(&global, host.at(w->global_scale).data() + e * 4, 4);
    return fmtref::decode(fmtref::E2M1, code) * fmtref::decode(fmtref::E4M3, scale) * double(global);
}

double OpBuild::weight_at(const glm_tensor* w, int64_t k, int64_t m, int64_t e) const {
    if (w->type == GLM_TYPE_NVFP4) return nvfp4_at(w, k, m, e);
    return get(w, k, m, e);
}

// ---- comparison -------------------------------------------------------------------------------
Comparison compare_values(const std::vector<double>& got, const std::vector<double>& expected, const Tolerance& tol,
                          bool check_cosine) {
    Comparison c;
    auto fail = [&](std::string m) {
        if (c.ok) c.message = std::move(m);
        c.ok = false;
    };
    if (got.size() != expected.size()) {
        fail(fmt::format("size {} != expected {}", got.size(), expected.size()));
        return c;
    }
    double err2 = 0, ref2 = 0, dot = 0, got2 = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        const double a = got[i], b = expected[i];
        if (std::isnan(b) || std::isinf(b) || std::isnan(a) || std::isinf(a)) {
            const bool same = (std::isnan(a) && std::isnan(b)) || (std::isinf(a) && std::isinf(b) && (a > 0) == (b > 0));
            if (!same) fail(fmt::format("element {}: got {} expected {} (non-finite mismatch)", i, a, b));
            continue;
        }
        const double d = std::fabs(a - b);
        if (tol.nmse == 0 && d != 0) fail(fmt::format("element {}: got {} expected {} (exact)", i, a, b));
        c.max_abs = std::max(c.max_abs, d);
        err2 += d * d;
        ref2 += b * b;
        dot += a * b;
        got2 += a * a;
    }
    c.nmse = ref2 > 0 ? err2 / ref2 : err2;
    if (tol.nmse > 0 && !(c.nmse <= tol.nmse)) fail(fmt::format("nmse {:.3e} > {:.1e}", c.nmse, tol.nmse));
    if (!(c.max_abs <= tol.max_abs)) fail(fmt::format("max abs {:.3e} > {:.1e}", c.max_abs, tol.max_abs));
    c.cosine = (ref2 > 0 && got2 > 0) ? dot / std::sqrt(ref2 * got2) : 1.0;
    if (check_cosine && !(c.cosine >= 1 - 1e-9)) fail(fmt::format("cosine {:.12f} < 1 - 1e-9", c.cosine));
    return c;
}

// ---- runner -----------------------------------------------------------------------------------
namespace {

constexpr size_t GUARD = 512;
constexpr uint8_t SENTINEL = 0xA5;

size_t align(size_t n) { return (n + 255) / 256 * 256; }

// A U8 tensor spanning a whole buffer: the backend-neutral way to set or read raw buffer bytes.
glm_tensor* whole_buffer_tensor(glm_context& ctx, glm_buffer* buf) {
    glm_tensor* t = ctx.new_tensor_1d(GLM_TYPE_U8, int64_t(buf->size));
    glm_place(t, buf, 0);
    return t;
}

}  // namespace

RunResult run_op_case(const OpCase& c, glm_backend& backend) {
    RunResult r;
    OpBuild b(seed_of(c.name));
    glm_tensor* out = c.build(b);
    out->flags |= GLM_FLAG_OUTPUT;
    glm_graph graph;
    glm_graph_expand(graph, out);
    for (glm_tensor* n : graph.nodes)
        if (!backend.supports_op(n)) return r;
    r.ran = true;

    glm_tensor* out_root = glm_view_root(out);
    const bool root_is_leaf = out_root->op == GLM_OP_NONE;

    // Inputs: every leaf except the output's root, in one buffer, at 256-aligned offsets.
    std::vector<glm_tensor*> inputs;
    size_t in_size = 0;
    std::vector<size_t> in_off;
    for (glm_tensor* leaf : graph.leafs) {
        GLM_ASSERT(b.host.count(leaf));  // every leaf must have been made by the builder
        if (leaf == out_root) continue;
        inputs.push_back(leaf);
        in_off.push_back(in_size);
        in_size += align(std::max<size_t>(glm_nbytes(leaf), 1));
    }
    glm_buffer* in_buf = nullptr;
    GLM_ASSERT(backend.alloc_buffer(std::max<size_t>(in_size, 1), "op-inputs", &in_buf).ok());
    std::vector<uint8_t> in_image(in_buf->size, SENTINEL);
    for (size_t i = 0; i < inputs.size(); ++i) {
        glm_place(inputs[i], in_buf, in_off[i]);
        const std::vector<uint8_t>& bytes = b.host.at(inputs[i]);
        std::copy(bytes.begin(), bytes.end(), in_image.begin() + long(in_off[i]));
    }
    glm_context scratch;
    glm_tensor* in_all = whole_buffer_tensor(scratch, in_buf);
    backend.tensor_set(in_all, in_image.data(), 0, in_image.size());

    // Output root in its own buffer between two guard zones.
    const size_t out_bytes = glm_nbytes(out_root);
    glm_buffer* out_buf = nullptr;
    GLM_ASSERT(backend.alloc_buffer(GUARD + out_bytes + GUARD, "op-output", &out_buf).ok());
    std::vector<uint8_t> out_image(out_buf->size, SENTINEL);
    if (root_is_leaf) {
        const std::vector<uint8_t>& bytes = b.host.at(out_root);
        std::copy(bytes.begin(), bytes.end(), out_image.begin() + long(GUARD));
    }
    glm_place(out_root, out_buf, GUARD);
    glm_tensor* out_all = whole_buffer_tensor(scratch, out_buf);
    backend.tensor_set(out_all, out_image.data(), 0, out_image.size());

    // Intermediates in an arena sized by the planner.
    const glm_arena_plan plan = glm_arena_measure(graph);
    r.arena_bytes = plan.size;
    glm_buffer* arena = nullptr;
    GLM_ASSERT(backend.alloc_buffer(std::max<size_t>(plan.size, 1), "op-arena", &arena).ok());
    glm_arena_allocate(graph, arena);
    glm_graph_resolve_views(graph);

    const Status st = backend.graph_compute(graph);
    backend.synchronize();
    if (!st.ok()) {
        r.integrity.push_back("graph_compute failed: " + st.message());
        return r;
    }

    // Read back and check the guard zones, the inputs, and (for outputs that are views of a leaf)
    // the bytes of the root that the output does not cover.
    std::vector<uint8_t> got_out(out_buf->size), got_in(in_buf->size);
    backend.tensor_get(out_all, got_out.data(), 0, got_out.size());
    backend.tensor_get(in_all, got_in.data(), 0, got_in.size());
    for (size_t i = 0; i < GUARD; ++i) {
        if (got_out[i] != SENTINEL) {
            r.integrity.push_back(fmt::format("guard before output overwritten at byte -{}", GUARD - i));
            break;
        }
    }
    for (size_t i = GUARD + out_bytes; i < got_out.size(); ++i) {
        if (got_out[i] != SENTINEL) {
            r.integrity.push_back(fmt::format("guard after output overwritten at byte +{}", i - GUARD - out_bytes));
            break;
        }
    }
    for (size_t i = 0; i < inputs.size(); ++i) {
        if (std::memcmp(got_in.data() + in_off[i], in_image.data() + in_off[i], glm_nbytes(inputs[i])) != 0)
            r.integrity.push_back("input '" + inputs[i]->name + "' modified by compute");
    }
    std::vector<uint8_t> root_bytes(got_out.begin() + long(GUARD), got_out.begin() + long(GUARD + out_bytes));
    if (root_is_leaf) {
        std::vector<bool> covered(out_bytes, false);
        const size_t es = glm_type_block_bytes(out->type);
        for (int64_t i3 = 0; i3 < out->ne[3]; ++i3)
            for (int64_t i2 = 0; i2 < out->ne[2]; ++i2)
                for (int64_t i1 = 0; i1 < out->ne[1]; ++i1)
                    for (int64_t i0 = 0; i0 < out->ne[0]; ++i0) {
                        const size_t off = element_offset(out, i0, i1, i2, i3);
                        for (size_t k = 0; k < es; ++k) covered[off + k] = true;
                    }
        const std::vector<uint8_t>& orig = b.host.at(out_root);
        for (size_t i = 0; i < out_bytes; ++i)
            if (!covered[i] && root_bytes[i] != orig[i]) {
                r.integrity.push_back(fmt::format("byte {} of '{}' outside the output view was modified", i,
                                                  out_root->name));
                break;
            }
    }

    for (int64_t i3 = 0; i3 < out->ne[3]; ++i3)
        for (int64_t i2 = 0; i2 < out->ne[2]; ++i2)
            for (int64_t i1 = 0; i1 < out->ne[1]; ++i1)
                for (int64_t i0 = 0; i0 < out->ne[0]; ++i0)
                    r.out.push_back(read_element(out, root_bytes, i0, i1, i2, i3));
    r.expected = c.reference(b, out);
    return r;
}

// ---- shared references (op-cases.h) -------------------------------------------------------------

void add_combine_inputs(OpBuild& b, int64_t D, int64_t n_used, int64_t T, int64_t n_experts) {
    glm_tensor* y = b.rand(GLM_TYPE_F32, {D, n_used, T});
    glm_tensor* w = b.values(GLM_TYPE_F32, {n_used, T}, [&](int64_t) { return b.rng.uniform(0, 1); });
    std::vector<int32_t> ids;
    for (int64_t t = 0; t < T; ++t)
        for (int32_t e : b.rng.distinct(n_experts, n_used)) ids.push_back(e);
    b.in.insert(b.in.end(), {y, w, b.i32({n_used, T}, ids)});
}

double combine_reference(const OpBuild& b, size_t first, int64_t d, int64_t t) {
    const glm_tensor *y = b.in[first], *w = b.in[first + 1];
    double s = 0;
    for (int64_t j = 0; j < y->ne[1]; ++j) s += b.get(w, j, t) * b.get(y, d, j, t);
    return s;
}

// experts: dst[m, j, t] = sum_k w[k, m, ids[j, t]] * x[k, j or 0, t] (tensor.h); each expert's weights
// are decoded once.
Ref mul_mat_id_reference(const OpBuild& b, const glm_tensor* out) {
    const glm_tensor *w = b.in[0], *x = b.in[1], *ids = b.in[2];
    const int64_t K = w->ne[0], M = w->ne[1], n_used = ids->ne[0], T = ids->ne[1];
    std::vector<std::vector<double>> ws(static_cast<size_t>(w->ne[2]));
    std::vector<double> xs(static_cast<size_t>(K));
    Ref r(static_cast<size_t>(glm_nelements(out)));
    for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j < n_used; ++j) {
            const int32_t e = b.geti(ids, j, t);
            std::vector<double>& we = ws[size_t(e)];
            if (we.empty()) {
                we.resize(size_t(M * K));
                for (int64_t m = 0; m < M; ++m)
                    for (int64_t k = 0; k < K; ++k) we[size_t(m * K + k)] = b.weight_at(w, k, m, e);
            }
            for (int64_t k = 0; k < K; ++k) xs[size_t(k)] = b.get(x, k, x->ne[1] == 1 ? 0 : j, t);
            for (int64_t m = 0; m < M; ++m) {
                double s = 0;
                for (int64_t k = 0; k < K; ++k) s += we[size_t(m * K + k)] * xs[size_t(k)];
                r[size_t((t * n_used + j) * M + m)] = s;
            }
        }
    return r;
}

std::vector<int32_t> top_k_reference(const OpBuild& b, const glm_tensor* top_k, int64_t col) {
    GLM_ASSERT(top_k->op == GLM_OP_TOP_K);
    const glm_tensor *scores = top_k->src[0], *q_pos = top_k->src[1];
    const int64_t n = scores->ne[0], k = top_k->ne[0];
    const int64_t n_cand = q_pos ? std::clamp<int64_t>(int64_t(b.geti(q_pos, col)) + 1, 0, n) : n;
    std::vector<double> val(static_cast<size_t>(n_cand));
    for (int64_t i = 0; i < n_cand; ++i) val[size_t(i)] = b.get(scores, i, col);
    std::vector<int32_t> idx(static_cast<size_t>(n_cand));
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int32_t x, int32_t y) { return val[size_t(x)] > val[size_t(y)]; });
    idx.resize(size_t(std::min(k, n_cand)));
    if (top_k->params[1].i) std::sort(idx.begin(), idx.end());  // glm_top_k_by_index
    idx.resize(size_t(k), -1);
    return idx;
}

}  // namespace optest
