// The scalar CPU reference backend: plain loops, f32 storage, f32-or-wider accumulation. It is the
// definition every other backend is compared with, so clarity beats speed; the only concessions to
// speed are converting a whole row before a dot product and splitting rows across threads.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <thread>
#include <vector>

#include "ggml-like/backend.h"

namespace {

// ---- element access ---------------------------------------------------------------------------
const uint8_t* elem_ptr(const glm_tensor* t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    return static_cast<const uint8_t*>(t->data) + i0 * t->nb[0] + i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3];
}

float load(const glm_tensor* t, int64_t i0, int64_t i1 = 0, int64_t i2 = 0, int64_t i3 = 0) {
    const uint8_t* p = elem_ptr(t, i0, i1, i2, i3);
    switch (t->type) {
        case GLM_TYPE_F32: { float v; std::memcpy(&v, p, 4); return v; }
        case GLM_TYPE_F16: { uint16_t v; std::memcpy(&v, p, 2); return glm_f16_to_f32(v); }
        case GLM_TYPE_BF16: { uint16_t v; std::memcpy(&v, p, 2); return glm_bf16_to_f32(v); }
        case GLM_TYPE_F8_E4M3: return glm_e4m3_to_f32(*p);
        case GLM_TYPE_I32: { int32_t v; std::memcpy(&v, p, 4); return float(v); }
        default: GLM_ABORT("cpu: element load of type {}", glm_type_name(t->type));
    }
}

void store(glm_tensor* t, float v, int64_t i0, int64_t i1 = 0, int64_t i2 = 0, int64_t i3 = 0) {
    uint8_t* p = const_cast<uint8_t*>(elem_ptr(t, i0, i1, i2, i3));
    glm_row_from_f32(t->type, &v, p, 1);
}

int32_t load_i32(const glm_tensor* t, int64_t i0, int64_t i1 = 0) {
    GLM_ASSERT(t->type == GLM_TYPE_I32);
    int32_t v;
    std::memcpy(&v, elem_ptr(t, i0, i1, 0, 0), 4);
    return v;
}

void store_i32(glm_tensor* t, int32_t v, int64_t i0, int64_t i1 = 0) {
    std::memcpy(const_cast<uint8_t*>(elem_ptr(t, i0, i1, 0, 0)), &v, 4);
}

float* f32_ptr(glm_tensor* t, int64_t i0, int64_t i1 = 0, int64_t i2 = 0, int64_t i3 = 0) {
    GLM_ASSERT(t->type == GLM_TYPE_F32);
    return reinterpret_cast<float*>(const_cast<uint8_t*>(elem_ptr(t, i0, i1, i2, i3)));
}

// Row i1,i2,i3 of t as f32 (any type, any stride; NVFP4 with its scales).
void load_row(const glm_tensor* t, int64_t i1, int64_t i2, int64_t i3, float* dst) {
    const int64_t n = t->ne[0];
    if (t->type == GLM_TYPE_NVFP4) {
        const uint8_t* codes = elem_ptr(t, 0, i1, i2, i3);
        const glm_tensor* bs = t->block_scale;
        const uint8_t* scales = elem_ptr(bs, 0, i1, i2, i3);
        const float global = load(t->global_scale, i2 + i3 * t->ne[2]);
        glm_nvfp4_row_to_f32(codes, scales, global, dst, n);
        return;
    }
    if (t->nb[0] == glm_type_block_bytes(t->type)) {
        glm_row_to_f32(t->type, elem_ptr(t, 0, i1, i2, i3), dst, n);
        return;
    }
    for (int64_t i = 0; i < n; ++i) dst[i] = load(t, i, i1, i2, i3);
}

float dot(const float* a, const float* b, int64_t n) {
    // Eight independent f32 lanes (vectorisable), summed pairwise at the end.
    float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; ++l) lane[l] += a[i + l] * b[i + l];
    float tail = 0;
    for (; i < n; ++i) tail += a[i] * b[i];
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7])) + tail;
}

double dot_f64(const float* a, const float* b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += double(a[i]) * double(b[i]);
    return s;
}

// ---- threading --------------------------------------------------------------------------------
// fn(begin, end) on contiguous ranges of [0, n), one per worker, so each worker sets up its row
// scratch once rather than once per row.
template <typename F>
void parallel_for(int n_threads, int64_t n, F&& fn) {
    const int workers = int(std::max<int64_t>(1, std::min<int64_t>(n_threads, n)));
    if (workers == 1) {
        if (n > 0) fn(int64_t(0), n);
        return;
    }
    const int64_t chunk = (n + workers - 1) / workers;
    auto run = [&](int w) { fn(w * chunk, std::min(n, (w + 1) * chunk)); };
    std::vector<std::thread> threads;
    threads.reserve(size_t(workers - 1));
    for (int w = 1; w < workers; ++w) threads.emplace_back(run, w);
    run(0);
    for (std::thread& t : threads) t.join();
}

// ---- ops --------------------------------------------------------------------------------------
template <typename F>
void for_each_index(const glm_tensor* t, F&& fn) {
    for (int64_t i3 = 0; i3 < t->ne[3]; ++i3)
        for (int64_t i2 = 0; i2 < t->ne[2]; ++i2)
            for (int64_t i1 = 0; i1 < t->ne[1]; ++i1)
                for (int64_t i0 = 0; i0 < t->ne[0]; ++i0) fn(i0, i1, i2, i3);
}

void op_get_rows(glm_tensor* dst) {
    const glm_tensor* table = dst->src[0];
    const glm_tensor* ids = dst->src[1];
    // A shard holds rows [first, first + ne1) of the whole table; other ids are another rank's.
    const bool shard = dst->params[1].i == 1;
    const int64_t first = shard ? dst->params[0].i : 0;
    for (int64_t i = 0; i < ids->ne[0]; ++i) {
        const int64_t row = int64_t(load_i32(ids, i)) - first;
        float* out = f32_ptr(dst, 0, i);
        if (shard && (row < 0 || row >= table->ne[1])) {
            std::fill(out, out + dst->ne[0], 0.0f);
            continue;
        }
        GLM_ASSERT(row >= 0 && row < table->ne[1]);
        load_row(table, row, 0, 0, out);
    }
}

void op_binary(glm_tensor* dst) {
    const glm_tensor* a = dst->src[0];
    const glm_tensor* b = dst->src[1];
    const bool is_add = dst->op == GLM_OP_ADD;
    for_each_index(dst, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        const float x = load(a, i0, i1, i2, i3);
        const float y = load(b, i0 % b->ne[0], i1 % b->ne[1], i2 % b->ne[2], i3 % b->ne[3]);
        *f32_ptr(dst, i0, i1, i2, i3) = is_add ? x + y : x * y;
    });
}

void op_unary(glm_tensor* dst) {
    const glm_tensor* a = dst->src[0];
    const float s = dst->params[0].f;
    for_each_index(dst, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        const float x = load(a, i0, i1, i2, i3);
        float y;
        switch (dst->op) {
            case GLM_OP_SCALE: y = x * s; break;
            case GLM_OP_SILU: y = x / (1.0f + std::exp(-x)); break;
            case GLM_OP_SIGMOID: y = 1.0f / (1.0f + std::exp(-x)); break;
            default: GLM_ABORT("not unary: {}", glm_op_name(dst->op));
        }
        *f32_ptr(dst, i0, i1, i2, i3) = y;
    });
}

void op_swiglu(glm_tensor* dst) {
    const glm_tensor* gate = dst->src[0];
    const glm_tensor* up = dst->src[1];
    for_each_index(dst, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        const float g = load(gate, i0, i1, i2, i3);
        const float silu = g / (1.0f + std::exp(-g));
        *f32_ptr(dst, i0, i1, i2, i3) = silu * load(up, i0, i1, i2, i3);
    });
}

void op_norm(glm_tensor* dst) {
    const glm_tensor* x = dst->src[0];
    const glm_tensor* w = dst->src[1];
    const glm_tensor* bias = dst->src[2];
    const float eps = dst->params[0].f;
    const int64_t n = x->ne[0];
    std::vector<float> row(static_cast<size_t>(n)), weight(size_t(n), 1.0f), shift(size_t(n), 0.0f);
    if (w) load_row(w, 0, 0, 0, weight.data());
    if (bias) load_row(bias, 0, 0, 0, shift.data());
    for (int64_t i3 = 0; i3 < x->ne[3]; ++i3)
        for (int64_t i2 = 0; i2 < x->ne[2]; ++i2)
            for (int64_t i1 = 0; i1 < x->ne[1]; ++i1) {
                load_row(x, i1, i2, i3, row.data());
                float* out = f32_ptr(dst, 0, i1, i2, i3);
                if (dst->op == GLM_OP_RMS_NORM) {
                    double sum_sq = 0;
                    for (int64_t i = 0; i < n; ++i) sum_sq += double(row[size_t(i)]) * row[size_t(i)];
                    const float inv = 1.0f / std::sqrt(float(sum_sq / double(n)) + eps);
                    for (int64_t i = 0; i < n; ++i) out[i] = weight[size_t(i)] * (row[size_t(i)] * inv);
                } else {
                    double sum = 0;
                    for (int64_t i = 0; i < n; ++i) sum += row[size_t(i)];
                    const double mean = sum / double(n);
                    double var = 0;
                    for (int64_t i = 0; i < n; ++i) var += (row[size_t(i)] - mean) * (row[size_t(i)] - mean);
                    const float inv = float(1.0 / std::sqrt(var / double(n) + eps));
                    for (int64_t i = 0; i < n; ++i)
                        out[i] = (float(row[size_t(i)] - mean) * inv) * weight[size_t(i)] + shift[size_t(i)];
                }
            }
}

void op_soft_max(glm_tensor* dst) {
    const glm_tensor* a = dst->src[0];
    const float scale = dst->params[0].f;
    const int64_t n = a->ne[0];
    std::vector<float> row(static_cast<size_t>(n));
    for (int64_t i3 = 0; i3 < a->ne[3]; ++i3)
        for (int64_t i2 = 0; i2 < a->ne[2]; ++i2)
            for (int64_t i1 = 0; i1 < a->ne[1]; ++i1) {
                load_row(a, i1, i2, i3, row.data());
                float mx = -std::numeric_limits<float>::infinity();
                for (float& v : row) {
                    v *= scale;
                    mx = std::max(mx, v);
                }
                double sum = 0;
                for (float& v : row) {
                    v = std::exp(v - mx);
                    sum += v;
                }
                float* out = f32_ptr(dst, 0, i1, i2, i3);
                for (int64_t i = 0; i < n; ++i) out[i] = float(row[size_t(i)] / sum);
            }
}

void op_rope(glm_tensor* dst) {
    const glm_tensor* x = dst->src[0];
    const glm_tensor* pos = dst->src[1];
    const int n_rot = dst->params[0].i;
    const float theta = dst->params[1].f;
    const bool neox = dst->params[2].i == GLM_ROPE_NEOX;
    const int half = n_rot / 2;
    // Frequencies exactly as the reference computes them: f32 pow, f32 reciprocal, f32 product.
    std::vector<float> inv_freq(static_cast<size_t>(half));
    for (int j = 0; j < half; ++j) inv_freq[size_t(j)] = 1.0f / std::pow(theta, float(2 * j) / float(n_rot));
    for (int64_t s = 0; s < x->ne[2]; ++s) {
        const float p = float(load_i32(pos, s));
        for (int64_t h = 0; h < x->ne[1]; ++h) {
            float* out = f32_ptr(dst, 0, h, s);
            for (int64_t i = n_rot; i < x->ne[0]; ++i) out[i] = load(x, i, h, s);
            for (int j = 0; j < half; ++j) {
                const float angle = p * inv_freq[size_t(j)];
                const float c = std::cos(angle), sn = std::sin(angle);
                const int64_t i_a = neox ? j : 2 * j;
                const int64_t i_b = neox ? j + half : 2 * j + 1;
                const float a = load(x, i_a, h, s), b = load(x, i_b, h, s);
                out[i_a] = a * c - b * sn;
                out[i_b] = b * c + a * sn;
            }
        }
    }
}

void op_concat(glm_tensor* dst) {
    const glm_tensor* a = dst->src[0];
    const glm_tensor* b = dst->src[1];
    const int dim = dst->params[0].i;
    for_each_index(dst, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        int64_t idx[4] = {i0, i1, i2, i3};
        const glm_tensor* from = a;
        if (idx[dim] >= a->ne[dim]) {
            idx[dim] -= a->ne[dim];
            from = b;
        }
        *f32_ptr(dst, i0, i1, i2, i3) = load(from, idx[0], idx[1], idx[2], idx[3]);
    });
}

void op_repeat(glm_tensor* dst) {
    const glm_tensor* a = dst->src[0];
    for_each_index(dst, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        *f32_ptr(dst, i0, i1, i2, i3) = load(a, i0 % a->ne[0], i1 % a->ne[1], i2 % a->ne[2], i3 % a->ne[3]);
    });
}

// Copy src into dst element by element in row-major order of dst's shape (shapes may differ as
// long as the element counts agree, as ggml's cpy allows).
void copy_elements(const glm_tensor* src, glm_tensor* dst) {
    int64_t s[4] = {0, 0, 0, 0};
    for_each_index(dst, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        store(dst, load(src, s[0], s[1], s[2], s[3]), i0, i1, i2, i3);
        for (int d = 0; d < 4; ++d) {
            if (++s[d] < src->ne[d]) break;
            s[d] = 0;
        }
    });
}

void op_set_rows(glm_tensor* dst) {
    const glm_tensor* rows = dst->src[1];
    const glm_tensor* slots = dst->src[2];
    std::vector<float> row(static_cast<size_t>(rows->ne[0]));
    for (int64_t i = 0; i < rows->ne[1]; ++i) {
        const int32_t slot = load_i32(slots, i);
        if (slot < 0) continue;  // a position another context-parallel rank stores
        GLM_ASSERT(slot < dst->ne[1]);
        load_row(rows, i, 0, 0, row.data());
        for (int64_t j = 0; j < rows->ne[0]; ++j) store(dst, row[size_t(j)], j, slot);
    }
}

void op_mul_mat(glm_tensor* dst, int n_threads) {
    const glm_tensor* w = dst->src[0];
    const glm_tensor* x = dst->src[1];
    const int64_t K = w->ne[0], M = w->ne[1], N = x->ne[1];
    const int64_t r2 = x->ne[2] / w->ne[2], r3 = x->ne[3] / w->ne[3];
    for (int64_t b3 = 0; b3 < x->ne[3]; ++b3)
        for (int64_t b2 = 0; b2 < x->ne[2]; ++b2) {
            std::vector<float> xs(static_cast<size_t>(N * K));
            for (int64_t n = 0; n < N; ++n) load_row(x, n, b2, b3, xs.data() + n * K);
            parallel_for(n_threads, M, [&](int64_t m0, int64_t m1) {
                std::vector<float> wrow(static_cast<size_t>(K));
                for (int64_t m = m0; m < m1; ++m) {
                    load_row(w, m, b2 / r2, b3 / r3, wrow.data());
                    for (int64_t n = 0; n < N; ++n) *f32_ptr(dst, m, n, b2, b3) = dot(wrow.data(), xs.data() + n * K, K);
                }
            });
        }
}

void op_mul_mat_id(glm_tensor* dst, int n_threads) {
    const glm_tensor* experts = dst->src[0];
    const glm_tensor* x = dst->src[1];
    const glm_tensor* ids = dst->src[2];
    const int64_t K = experts->ne[0], M = experts->ne[1], n_used = ids->ne[0];
    const int64_t pairs = n_used * ids->ne[1];  // (slot, token) pairs, slot fastest
    std::vector<float> xs(static_cast<size_t>(pairs * K));
    for (int64_t pr = 0; pr < pairs; ++pr) {
        const int64_t j = pr % n_used, t = pr / n_used;
        GLM_ASSERT(load_i32(ids, j, t) >= 0 && load_i32(ids, j, t) < experts->ne[2]);
        load_row(x, x->ne[1] == 1 ? 0 : j, t, 0, xs.data() + pr * K);
    }
    parallel_for(n_threads, pairs * M, [&](int64_t i0, int64_t i1) {
        std::vector<float> wrow(static_cast<size_t>(K));
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t pr = i / M, m = i % M, j = pr % n_used, t = pr / n_used;
            load_row(experts, m, load_i32(ids, j, t), 0, wrow.data());
            *f32_ptr(dst, m, j, t) = dot(wrow.data(), xs.data() + pr * K, K);
        }
    });
}

void op_attn(glm_tensor* dst, int n_threads) {
    const glm_tensor* q = dst->src[0];
    const glm_tensor* k = dst->src[1];
    const glm_tensor* v = dst->src[2];
    const glm_tensor* q_pos = dst->src[3];
    const glm_tensor* key_ids = dst->src[4];
    const float scale = dst->params[0].f;
    const bool part = dst->params[1].i == 1;  // glm_attn_part: the log-sum-exp follows each row
    const int64_t Dk = q->ne[0], Dv = v->ne[0], H = q->ne[1], S = q->ne[2], T = k->ne[2];
    GLM_ASSERT(dst->ne[0] == Dv + (part ? 1 : 0));
    parallel_for(n_threads, S * H, [&](int64_t job0, int64_t job1) {
        std::vector<float> qrow(static_cast<size_t>(Dk)), krow(static_cast<size_t>(Dk)), vrow(static_cast<size_t>(Dv));
        for (int64_t job = job0; job < job1; ++job) {
            const int64_t s = job / H, h = job % H;
            const int64_t kh = k->ne[1] == 1 ? 0 : h;
            const int32_t pos = load_i32(q_pos, s);
            std::vector<int64_t> keys;
            if (key_ids) {
                for (int64_t j = 0; j < key_ids->ne[0]; ++j) {
                    const int32_t t = load_i32(key_ids, j, s);
                    if (t >= 0 && t <= pos && t < T) keys.push_back(t);
                }
                std::sort(keys.begin(), keys.end());
                keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
            } else {
                for (int64_t t = 0; t <= std::min<int64_t>(pos, T - 1); ++t) keys.push_back(t);
            }
            load_row(q, h, s, 0, qrow.data());
            std::vector<double> score(keys.size());
            double mx = -std::numeric_limits<double>::infinity();
            for (size_t i = 0; i < keys.size(); ++i) {
                load_row(k, kh, keys[i], 0, krow.data());
                score[i] = double(float(dot_f64(qrow.data(), krow.data(), Dk)) * scale);
                mx = std::max(mx, score[i]);
            }
            double sum = 0;
            for (double& sc : score) {
                sc = std::exp(sc - mx);
                sum += sc;
            }
            std::vector<double> acc(static_cast<size_t>(Dv), 0.0);
            for (size_t i = 0; i < keys.size(); ++i) {
                load_row(v, kh, keys[i], 0, vrow.data());
                const double p = score[i] / sum;
                for (int64_t d = 0; d < Dv; ++d) acc[size_t(d)] += p * vrow[size_t(d)];
            }
            float* out = f32_ptr(dst, 0, h, s);
            for (int64_t d = 0; d < Dv; ++d) out[d] = float(acc[size_t(d)]);
            if (part) out[Dv] = keys.empty() ? -std::numeric_limits<float>::infinity() : float(mx + std::log(sum));
        }
    });
}

void op_indexer(glm_tensor* dst, int n_threads) {
    const glm_tensor* q = dst->src[0];
    const glm_tensor* k = dst->src[1];
    const glm_tensor* w = dst->src[2];
    const glm_tensor* q_pos = dst->src[3];
    const float scale = dst->params[0].f, weight_scale = dst->params[1].f;
    const int64_t D = q->ne[0], Hi = q->ne[1], S = q->ne[2], T = k->ne[1];
    std::vector<float> qs(static_cast<size_t>(D * Hi * S));
    for (int64_t s = 0; s < S; ++s)
        for (int64_t h = 0; h < Hi; ++h) load_row(q, h, s, 0, qs.data() + (s * Hi + h) * D);
    parallel_for(n_threads, T, [&](int64_t t0, int64_t t1) {
        std::vector<float> krow(static_cast<size_t>(D));
        for (int64_t t = t0; t < t1; ++t) {
            load_row(k, t, 0, 0, krow.data());
            for (int64_t s = 0; s < S; ++s) {
                float* out = f32_ptr(dst, t, s);
                if (t > load_i32(q_pos, s)) {
                    *out = -std::numeric_limits<float>::infinity();
                    continue;
                }
                double total = 0;
                for (int64_t h = 0; h < Hi; ++h) {
                    const float logit = float(dot_f64(qs.data() + (s * Hi + h) * D, krow.data(), D)) * scale;
                    total += double(load(w, h, s) * weight_scale) * double(std::max(logit, 0.0f));
                }
                *out = float(total);
            }
        }
    });
}

// Indices of the k largest of v (descending; ties: lower index first).
std::vector<int32_t> top_k_indices(const std::vector<float>& v, int k) {
    std::vector<int32_t> idx(v.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
        const float va = v[size_t(a)], vb = v[size_t(b)];
        const bool na = std::isnan(va), nb = std::isnan(vb);
        if (na != nb) return nb;  // NaN last: keeps the ordering strict and weak
        if (!na && va != vb) return va > vb;
        return a < b;
    });
    idx.resize(size_t(k));
    return idx;
}

void op_top_k(glm_tensor* dst) {
    const glm_tensor* a = dst->src[0];
    const glm_tensor* q_pos = dst->src[1];
    const int k = dst->params[0].i;
    std::vector<float> col(static_cast<size_t>(a->ne[0]));
    for (int64_t c = 0; c < a->ne[1]; ++c) {
        load_row(a, c, 0, 0, col.data());
        // With q_pos only entries 0..q_pos[c] are candidates (clamped to the column).
        const int64_t n = q_pos ? std::clamp<int64_t>(int64_t(load_i32(q_pos, c)) + 1, 0, a->ne[0]) : a->ne[0];
        col.resize(size_t(n));
        std::vector<int32_t> best = top_k_indices(col, int(std::min<int64_t>(k, n)));
        if (dst->params[1].i) std::sort(best.begin(), best.end());  // glm_top_k_by_index
        for (int j = 0; j < k; ++j) store_i32(dst, j < int(best.size()) ? best[size_t(j)] : -1, j, c);
        col.resize(size_t(a->ne[0]));
    }
}

void op_moe_select(glm_tensor* dst) {
    const glm_tensor* probs = dst->src[0];
    const glm_tensor* bias = dst->src[1];
    const int k = dst->params[0].i, n_group = dst->params[1].i, topk_group = dst->params[2].i;
    const int64_t E = probs->ne[0], per_group = E / n_group;
    std::vector<float> choice(static_cast<size_t>(E));
    for (int64_t t = 0; t < probs->ne[1]; ++t) {
        for (int64_t e = 0; e < E; ++e) choice[size_t(e)] = load(probs, e, t) + (bias ? load(bias, e) : 0.0f);
        if (n_group > 1) {
            std::vector<float> group_score(static_cast<size_t>(n_group));
            for (int g = 0; g < n_group; ++g) {
                std::vector<float> members(choice.begin() + g * per_group, choice.begin() + (g + 1) * per_group);
                const std::vector<int32_t> best = top_k_indices(members, int(std::min<int64_t>(2, per_group)));
                float sum = 0;
                for (int32_t b : best) sum += members[size_t(b)];
                group_score[size_t(g)] = sum;
            }
            const std::vector<int32_t> kept = top_k_indices(group_score, topk_group);
            std::vector<bool> keep(static_cast<size_t>(n_group), false);
            for (int32_t g : kept) keep[size_t(g)] = true;
            // Experts of dropped groups are masked out (-inf), as the reference's masked_fill does.
            for (int64_t e = 0; e < E; ++e)
                if (!keep[size_t(e / per_group)]) choice[size_t(e)] = -std::numeric_limits<float>::infinity();
        }
        const std::vector<int32_t> best = top_k_indices(choice, k);
        for (int j = 0; j < k; ++j) store_i32(dst, best[size_t(j)], j, t);
    }
}

void op_moe_weights(glm_tensor* dst) {
    const glm_tensor* probs = dst->src[0];
    const glm_tensor* ids = dst->src[1];
    const bool normalize = dst->params[0].i != 0;
    const float scaling = dst->params[1].f;
    const int64_t n = ids->ne[0];
    for (int64_t t = 0; t < ids->ne[1]; ++t) {
        std::vector<float> w(static_cast<size_t>(n));
        float sum = 0;
        for (int64_t j = 0; j < n; ++j) {
            w[size_t(j)] = load(probs, load_i32(ids, j, t), t);
            sum += w[size_t(j)];
        }
        for (int64_t j = 0; j < n; ++j) {
            float v = normalize ? w[size_t(j)] / (sum + 1e-20f) : w[size_t(j)];
            *f32_ptr(dst, j, t) = v * scaling;
        }
    }
}

void op_moe_combine(glm_tensor* dst) {
    const glm_tensor* y = dst->src[0];
    const glm_tensor* w = dst->src[1];
    const glm_tensor* ids = dst->src[2];
    const int64_t D = y->ne[0], n = ids->ne[0];
    for (int64_t t = 0; t < ids->ne[1]; ++t) {
        std::vector<int64_t> order(static_cast<size_t>(n));
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(),
                         [&](int64_t a, int64_t b) { return load_i32(ids, a, t) < load_i32(ids, b, t); });
        float* out = f32_ptr(dst, 0, t);
        for (int64_t d = 0; d < D; ++d) out[d] = 0.0f;
        for (int64_t j : order) {
            const float wj = load(w, j, t);
            for (int64_t d = 0; d < D; ++d) out[d] += load(y, d, j, t) * wj;
        }
    }
}

// ARGMAX (I32 index) and MAX_ARG (value, index + offset): the first maximum of each column.
void op_argmax(glm_tensor* dst) {
    const glm_tensor* a = dst->src[0];
    std::vector<float> col(static_cast<size_t>(a->ne[0]));
    for (int64_t c = 0; c < a->ne[1]; ++c) {
        load_row(a, c, 0, 0, col.data());
        int32_t best = 0;
        for (int64_t i = 1; i < a->ne[0]; ++i)
            if (col[size_t(i)] > col[size_t(best)]) best = int32_t(i);
        if (dst->op == GLM_OP_MAX_ARG) {
            store(dst, col[size_t(best)], 0, c);
            store(dst, float(best + dst->params[0].i), 1, c);
        } else {
            store_i32(dst, best, c);
        }
    }
}

// ---- context-parallel caches (see tensor.h) -----------------------------------------------------
void op_pad_block(glm_tensor* dst) {
    const glm_tensor* a = dst->src[0];
    const int dim = dst->params[0].i, block = dst->params[2].i;
    const int64_t width = a->ne[dim];
    for_each_index(dst, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
        int64_t idx[4] = {i0, i1, i2, i3};
        float v = 0.0f;
        if (idx[dim] / width == block) {
            idx[dim] -= block * width;
            v = load(a, idx[0], idx[1], idx[2], idx[3]);
        }
        *f32_ptr(dst, i0, i1, i2, i3) = v;
    });
}

void op_topk_candidates(glm_tensor* dst) {
    const glm_tensor* scores = dst->src[0];
    const glm_tensor* ids = dst->src[1];
    const int64_t n_ranks = dst->params[0].i, rank = dst->params[1].i;
    for (int64_t s = 0; s < ids->ne[1]; ++s)
        for (int64_t i = 0; i < ids->ne[0]; ++i) {
            const int32_t id = load_i32(ids, i, s);
            GLM_ASSERT(id < scores->ne[0]);
            *f32_ptr(dst, i, 0, s) = id < 0 ? -std::numeric_limits<float>::infinity() : load(scores, id, s);
            *f32_ptr(dst, i, 1, s) = id < 0 ? -1.0f : float(int64_t(id) * n_ranks + rank);
        }
}

// The definition (tensor.h) directly: the candidates with a finite score sorted by (score descending,
// position ascending), the first k selected. `best` only sizes k here (the CUDA kernel reads its
// threshold from it).
void op_topk_merge(glm_tensor* dst) {
    const glm_tensor* local = dst->src[0];
    const glm_tensor* all = dst->src[1];
    const int64_t k_l = local->ne[0], M = all->ne[0], k = dst->src[2]->ne[0], first = int64_t(dst->params[0].i) * k_l;
    std::vector<int64_t> order;
    for (int64_t s = 0; s < local->ne[1]; ++s) {
        order.clear();
        for (int64_t e = 0; e < M; ++e)
            if (load(all, e, 0, s) > -std::numeric_limits<float>::infinity()) order.push_back(e);  // NaN fails too
        auto better = [&](int64_t a, int64_t b) {
            const float sa = load(all, a, 0, s), sb = load(all, b, 0, s);
            if (sa != sb) return sa > sb;
            return load(all, a, 1, s) < load(all, b, 1, s);
        };
        std::stable_sort(order.begin(), order.end(), better);
        std::vector<bool> chosen(static_cast<size_t>(k_l), false);
        for (int64_t j = 0; j < std::min(k, int64_t(order.size())); ++j)
            if (order[size_t(j)] >= first && order[size_t(j)] < first + k_l) chosen[size_t(order[size_t(j)] - first)] = true;
        for (int64_t i = 0; i < k_l; ++i) store_i32(dst, chosen[size_t(i)] ? load_i32(local, i, s) : -1, i, s);
    }
}

void op_attn_merge(glm_tensor* dst) {
    const glm_tensor* part = dst->src[0];
    const glm_tensor* lse_all = dst->src[1];
    const int64_t Dv = dst->ne[0], N = lse_all->ne[0];
    for (int64_t s = 0; s < dst->ne[2]; ++s)
        for (int64_t h = 0; h < dst->ne[1]; ++h) {
            double mx = -std::numeric_limits<double>::infinity();
            for (int64_t r = 0; r < N; ++r) mx = std::max(mx, double(load(lse_all, r, h, s)));
            double sum = 0;
            if (mx != -std::numeric_limits<double>::infinity())
                for (int64_t r = 0; r < N; ++r) sum += std::exp(double(load(lse_all, r, h, s)) - mx);
            const double lse = double(load(part, Dv, h, s));
            // A rank without a visible key contributes nothing (and L may be -inf too: no NaN).
            const double w =
                lse == -std::numeric_limits<double>::infinity() ? 0.0 : std::exp(lse - (mx + std::log(sum)));
            for (int64_t d = 0; d < Dv; ++d) *f32_ptr(dst, d, h, s) = float(w * double(load(part, d, h, s)));
        }
}

// The same values as cuda/fill.cu: unit i of t gets the bits of its index in the whole tensor.
void fill_random(glm_tensor* t, uint64_t seed, float mean, float scale, const glm_fill_slice& slice) {
    GLM_ASSERT(t->data);
    const glm_fill_map map = glm_fill_map_make(t, slice);
    uint8_t* p = static_cast<uint8_t*>(t->data);
    if (glm_fill_is_bytes(t->type)) {
        for (size_t i = 0; i < glm_nbytes(t); ++i) p[i] = uint8_t(glm_fill_bits(seed, glm_fill_global_index(map, i)) >> 56);
        return;
    }
    GLM_ASSERT(glm_type_is_float(t->type));
    const bool positive = t->type == GLM_TYPE_F8_E4M3;
    const int64_t n = glm_nelements(t);
    const size_t es = glm_type_block_bytes(t->type);
    for (int64_t i = 0; i < n; ++i) {
        float v = glm_fill_value(glm_fill_bits(seed, glm_fill_global_index(map, uint64_t(i))), mean, scale);
        if (positive) v = std::fabs(v);
        glm_row_from_f32(t->type, &v, p + size_t(i) * es, 1);
    }
}

class CpuBackend final : public glm_backend {
public:
    explicit CpuBackend(int n_threads) : n_threads_(std::max(1, n_threads)) {}
    ~CpuBackend() override {
        for (glm_buffer* b : buffers_) {
            std::free(b->base);
            delete b;
        }
    }
    const char* name() const override { return "cpu"; }

    Status alloc_buffer(size_t size, const std::string& name, glm_buffer** out) override {
        check_not_frozen(name);
        void* p = std::aligned_alloc(GLM_CPU_ALIGN, (std::max<size_t>(size, 1) + GLM_CPU_ALIGN - 1) / GLM_CPU_ALIGN *
                                                        GLM_CPU_ALIGN);
        if (!p) return Status::device("cannot allocate {} MiB of host memory for the {} buffer", size >> 20, name);
        glm_buffer* b = new glm_buffer{this, static_cast<uint8_t*>(p), size, name};
        buffers_.push_back(b);
        *out = b;
        return {};
    }
    void tensor_set(glm_tensor* t, const void* data, size_t offset, size_t size) override {
        GLM_ASSERT(t->data && offset + size <= glm_nbytes(t));
        std::memcpy(static_cast<uint8_t*>(t->data) + offset, data, size);
    }
    void tensor_get(const glm_tensor* t, void* data, size_t offset, size_t size) override {
        GLM_ASSERT(t->data && offset + size <= glm_nbytes(t));
        std::memcpy(data, static_cast<const uint8_t*>(t->data) + offset, size);
    }
    void buffer_clear(glm_buffer* buffer, uint8_t value) override { std::memset(buffer->base, value, buffer->size); }
    bool supports_op(const glm_tensor* t) const override { return t->op >= 0 && t->op < GLM_OP_COUNT; }
    Status graph_compute_range(const glm_graph& graph, size_t begin, size_t end) override {
        GLM_ASSERT(begin <= end && end <= graph.nodes.size());
        for (size_t i = begin; i < end; ++i) compute(graph.nodes[i]);
        return {};
    }
    void synchronize() override {}
    void tensor_fill_random(glm_tensor* t, uint64_t seed, float mean, float scale,
                            const glm_fill_slice& slice) override {
        fill_random(t, seed, mean, scale, slice);
    }

private:
    static constexpr size_t GLM_CPU_ALIGN = 64;

    void compute(glm_tensor* t) {
        GLM_ASSERT(t->data);
        for (const glm_tensor* s : t->src) GLM_ASSERT(!s || s->data);
        switch (t->op) {
            case GLM_OP_NONE: case GLM_OP_VIEW: return;
            case GLM_OP_GET_ROWS: op_get_rows(t); return;
            case GLM_OP_ADD: case GLM_OP_MUL: op_binary(t); return;
            case GLM_OP_SCALE: case GLM_OP_SILU: case GLM_OP_SIGMOID: op_unary(t); return;
            case GLM_OP_SWIGLU: op_swiglu(t); return;
            case GLM_OP_RMS_NORM: case GLM_OP_LAYER_NORM: op_norm(t); return;
            case GLM_OP_SOFT_MAX: op_soft_max(t); return;
            case GLM_OP_ROPE: op_rope(t); return;
            case GLM_OP_CONCAT: op_concat(t); return;
            case GLM_OP_REPEAT: op_repeat(t); return;
            case GLM_OP_CPY: copy_elements(t->src[0], t); return;
            case GLM_OP_CONT: case GLM_OP_ALL_REDUCE: copy_elements(t->src[0], t); return;
            case GLM_OP_SET_ROWS: op_set_rows(t); return;
            case GLM_OP_MUL_MAT: op_mul_mat(t, n_threads_); return;
            case GLM_OP_MUL_MAT_ID: op_mul_mat_id(t, n_threads_); return;
            case GLM_OP_ATTN: op_attn(t, n_threads_); return;
            case GLM_OP_INDEXER: op_indexer(t, n_threads_); return;
            case GLM_OP_TOP_K: op_top_k(t); return;
            case GLM_OP_MOE_SELECT: op_moe_select(t); return;
            case GLM_OP_MOE_WEIGHTS: op_moe_weights(t); return;
            case GLM_OP_MOE_COMBINE: op_moe_combine(t); return;
            case GLM_OP_ARGMAX: case GLM_OP_MAX_ARG: op_argmax(t); return;
            case GLM_OP_PAD_BLOCK: op_pad_block(t); return;
            case GLM_OP_TOPK_CANDIDATES: op_topk_candidates(t); return;
            case GLM_OP_TOPK_MERGE: op_topk_merge(t); return;
            case GLM_OP_ATTN_MERGE: op_attn_merge(t); return;
            default: GLM_ABORT("cpu backend: op {} not implemented", glm_op_name(t->op));
        }
    }

    int n_threads_;
    std::vector<glm_buffer*> buffers_;
};

}  // namespace

std::unique_ptr<glm_backend> glm_backend_cpu_create(int n_threads) { return std::make_unique<CpuBackend>(n_threads); }
