#include "ggml-like/tensor.h"

#include <unordered_set>

#include "ggml-like/common.h"

const char* glm_op_name(glm_op op) {
    static const char* names[GLM_OP_COUNT] = {
        "none", "view", "get_rows", "add", "mul", "scale", "silu", "sigmoid", "swiglu", "rms_norm",
        "layer_norm", "soft_max", "rope", "concat", "repeat", "cpy", "cont", "set_rows", "mul_mat", "mul_mat_id",
        "attn", "indexer", "top_k", "moe_select", "moe_weights", "moe_combine", "argmax", "max_arg", "all_reduce",
        "pad_block", "topk_candidates", "topk_merge", "attn_merge",
    };
    return op >= 0 && op < GLM_OP_COUNT ? names[op] : "?";
}

int64_t glm_nelements(const glm_tensor* t) { return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]; }
int64_t glm_nrows(const glm_tensor* t) { return t->ne[1] * t->ne[2] * t->ne[3]; }

size_t glm_nbytes(const glm_tensor* t) {
    if (glm_nelements(t) == 0) return 0;
    // Span from the first to the last byte: a row is packed only when nb[0] is the block size
    // (permuted views step through rows with a larger nb[0]).
    const size_t block = glm_type_block_bytes(t->type);
    size_t bytes = t->nb[0] == block ? glm_row_bytes(t->type, t->ne[0])
                                     : size_t(t->ne[0] / glm_type_block_elements(t->type) - 1) * t->nb[0] + block;
    for (int i = 1; i < GLM_MAX_DIMS; ++i) bytes += size_t(t->ne[i] - 1) * t->nb[i];
    return bytes;
}

bool glm_is_contiguous(const glm_tensor* t) {
    size_t expected = glm_type_block_bytes(t->type);
    if (t->nb[0] != expected) return false;
    expected = glm_row_bytes(t->type, t->ne[0]);
    for (int i = 1; i < GLM_MAX_DIMS; ++i) {
        if (t->ne[i] != 1 && t->nb[i] != expected) return false;
        expected *= size_t(t->ne[i]);
    }
    return true;
}

bool glm_same_shape(const glm_tensor* a, const glm_tensor* b) {
    for (int i = 0; i < GLM_MAX_DIMS; ++i)
        if (a->ne[i] != b->ne[i]) return false;
    return true;
}

std::string glm_shape_string(const glm_tensor* t) {
    return fmt::format("[{}, {}, {}, {}] {}", t->ne[0], t->ne[1], t->ne[2], t->ne[3], glm_type_name(t->type));
}

glm_tensor* glm_view_root(glm_tensor* t) {
    while (t->view_src) t = t->view_src;
    return t;
}

static void set_contiguous_strides(glm_tensor* t) {
    t->nb[0] = glm_type_block_bytes(t->type);
    t->nb[1] = glm_row_bytes(t->type, t->ne[0]);
    for (int i = 2; i < GLM_MAX_DIMS; ++i) t->nb[i] = t->nb[i - 1] * size_t(t->ne[i - 1]);
}

// ---- context ----------------------------------------------------------------------------------
glm_tensor* glm_context::new_tensor(glm_type type, int n_dims, const int64_t* ne) {
    GLM_ASSERT(n_dims >= 1 && n_dims <= GLM_MAX_DIMS);
    tensors_.emplace_back();
    glm_tensor* t = &tensors_.back();
    t->type = type;
    for (int i = 0; i < n_dims; ++i) {
        GLM_ASSERT(ne[i] >= 0);
        t->ne[i] = ne[i];
    }
    GLM_ASSERT(t->ne[0] % glm_type_block_elements(type) == 0);
    set_contiguous_strides(t);
    return t;
}
glm_tensor* glm_context::new_tensor_1d(glm_type type, int64_t ne0) { return new_tensor(type, 1, &ne0); }
glm_tensor* glm_context::new_tensor_2d(glm_type type, int64_t ne0, int64_t ne1) {
    const int64_t ne[2] = {ne0, ne1};
    return new_tensor(type, 2, ne);
}
glm_tensor* glm_context::new_tensor_3d(glm_type type, int64_t ne0, int64_t ne1, int64_t ne2) {
    const int64_t ne[3] = {ne0, ne1, ne2};
    return new_tensor(type, 3, ne);
}
glm_tensor* glm_context::new_tensor_4d(glm_type type, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3) {
    const int64_t ne[4] = {ne0, ne1, ne2, ne3};
    return new_tensor(type, 4, ne);
}

glm_tensor* glm_context::new_nvfp4(int64_t ne0, int64_t ne1, int64_t ne2) {
    GLM_ASSERT(ne0 % GLM_NVFP4_BLOCK == 0);
    glm_tensor* w = new_tensor_3d(GLM_TYPE_NVFP4, ne0, ne1, ne2);
    w->block_scale = new_tensor_3d(GLM_TYPE_F8_E4M3, ne0 / GLM_NVFP4_BLOCK, ne1, ne2);
    w->global_scale = new_tensor_1d(GLM_TYPE_F32, ne2);
    return w;
}

glm_tensor* glm_context::find(const std::string& name) const {
    for (const glm_tensor& t : tensors_)
        if (t.name == name) return const_cast<glm_tensor*>(&t);
    return nullptr;
}

glm_tensor* glm_set_name(glm_tensor* t, std::string name) {
    t->name = std::move(name);
    if (t->block_scale) t->block_scale->name = t->name + ".block_scale";
    if (t->global_scale) t->global_scale->name = t->name + ".global_scale";
    return t;
}

// ---- views ------------------------------------------------------------------------------------
glm_tensor* glm_view(glm_context& ctx, glm_tensor* a, int n_dims, const int64_t* ne, const size_t* nb,
                     size_t offset) {
    glm_tensor* t = ctx.new_tensor(a->type, n_dims, ne);
    t->op = GLM_OP_VIEW;
    t->src[0] = a;
    t->view_src = glm_view_root(a);
    t->view_offset = (a->view_src ? a->view_offset : 0) + offset;
    t->nb[0] = a->nb[0];
    for (int i = 1; i < n_dims; ++i) t->nb[i] = nb[i - 1];
    for (int i = n_dims; i < GLM_MAX_DIMS; ++i) t->nb[i] = t->nb[i - 1] * size_t(t->ne[i - 1]);
    t->name = a->name + " (view)";
    GLM_ASSERT(a->type != GLM_TYPE_NVFP4 || offset == 0);  // NVFP4 views would lose their scales
    return t;
}

glm_tensor* glm_view_1d(glm_context& ctx, glm_tensor* a, int64_t ne0, size_t offset) {
    return glm_view(ctx, a, 1, &ne0, nullptr, offset);
}
glm_tensor* glm_view_2d(glm_context& ctx, glm_tensor* a, int64_t ne0, int64_t ne1, size_t nb1, size_t offset) {
    const int64_t ne[2] = {ne0, ne1};
    const size_t nb[1] = {nb1};
    return glm_view(ctx, a, 2, ne, nb, offset);
}
glm_tensor* glm_view_3d(glm_context& ctx, glm_tensor* a, int64_t ne0, int64_t ne1, int64_t ne2, size_t nb1,
                        size_t nb2, size_t offset) {
    const int64_t ne[3] = {ne0, ne1, ne2};
    const size_t nb[2] = {nb1, nb2};
    return glm_view(ctx, a, 3, ne, nb, offset);
}

glm_tensor* glm_reshape(glm_context& ctx, glm_tensor* a, int n_dims, const int64_t* ne) {
    GLM_ASSERT(glm_is_contiguous(a));
    // NVFP4 slices carry their own global scale: a reshape would re-slice the scales.
    GLM_ASSERT(a->type != GLM_TYPE_NVFP4);
    int64_t n = 1;
    for (int i = 0; i < n_dims; ++i) n *= ne[i];
    GLM_ASSERT(n == glm_nelements(a));
    glm_tensor* t = ctx.new_tensor(a->type, n_dims, ne);  // contiguous strides
    t->op = GLM_OP_VIEW;
    t->src[0] = a;
    t->view_src = glm_view_root(a);
    t->view_offset = a->view_src ? a->view_offset : 0;
    t->name = a->name + " (reshaped)";
    return t;
}
glm_tensor* glm_reshape_2d(glm_context& ctx, glm_tensor* a, int64_t ne0, int64_t ne1) {
    const int64_t ne[2] = {ne0, ne1};
    return glm_reshape(ctx, a, 2, ne);
}
glm_tensor* glm_reshape_3d(glm_context& ctx, glm_tensor* a, int64_t ne0, int64_t ne1, int64_t ne2) {
    const int64_t ne[3] = {ne0, ne1, ne2};
    return glm_reshape(ctx, a, 3, ne);
}

glm_tensor* glm_permute(glm_context& ctx, glm_tensor* a, int ax0, int ax1, int ax2, int ax3) {
    const int axes[4] = {ax0, ax1, ax2, ax3};
    int seen = 0;
    for (int i = 0; i < 4; ++i) {
        GLM_ASSERT(axes[i] >= 0 && axes[i] < 4);
        seen |= 1 << axes[i];
    }
    GLM_ASSERT(seen == 0xf);
    GLM_ASSERT(a->type != GLM_TYPE_NVFP4);
    int64_t ne[4];
    size_t nb[4];
    for (int i = 0; i < 4; ++i) {
        ne[axes[i]] = a->ne[i];
        nb[axes[i]] = a->nb[i];
    }
    glm_tensor* t = ctx.new_tensor(a->type, 4, ne);
    for (int i = 0; i < 4; ++i) t->nb[i] = nb[i];
    t->op = GLM_OP_VIEW;
    t->src[0] = a;
    t->view_src = glm_view_root(a);
    t->view_offset = a->view_src ? a->view_offset : 0;
    t->name = a->name + " (permuted)";
    return t;
}

glm_tensor* glm_transpose(glm_context& ctx, glm_tensor* a) { return glm_permute(ctx, a, 1, 0, 2, 3); }

// ---- op constructors --------------------------------------------------------------------------
static glm_tensor* new_op(glm_context& ctx, glm_op op, glm_type type, const int64_t ne[4], glm_tensor* s0,
                          glm_tensor* s1 = nullptr, glm_tensor* s2 = nullptr, glm_tensor* s3 = nullptr) {
    glm_tensor* t = ctx.new_tensor(type, 4, ne);
    t->op = op;
    t->src[0] = s0;
    t->src[1] = s1;
    t->src[2] = s2;
    t->src[3] = s3;
    t->name = glm_op_name(op);
    return t;
}

static bool can_broadcast(const glm_tensor* b, const glm_tensor* a) {
    for (int i = 0; i < 4; ++i)
        if (b->ne[i] != a->ne[i] && b->ne[i] != 1) return false;
    return true;
}

glm_tensor* glm_get_rows(glm_context& ctx, glm_tensor* table, glm_tensor* ids) {
    GLM_ASSERT(ids->type == GLM_TYPE_I32 && ids->ne[1] == 1 && ids->ne[2] == 1 && ids->ne[3] == 1);
    GLM_ASSERT(table->ne[2] == 1 && table->ne[3] == 1);
    const int64_t ne[4] = {table->ne[0], ids->ne[0], 1, 1};
    return new_op(ctx, GLM_OP_GET_ROWS, GLM_TYPE_F32, ne, table, ids);
}

glm_tensor* glm_get_rows_shard(glm_context& ctx, glm_tensor* table, glm_tensor* ids, int32_t first_row) {
    GLM_ASSERT(first_row >= 0);
    glm_tensor* t = glm_get_rows(ctx, table, ids);
    t->params[0].i = first_row;
    t->params[1].i = 1;
    return t;
}

static glm_tensor* binary(glm_context& ctx, glm_op op, glm_tensor* a, glm_tensor* b) {
    GLM_ASSERT(a->type == GLM_TYPE_F32 && glm_type_is_float(b->type));
    GLM_ASSERT(can_broadcast(b, a));
    return new_op(ctx, op, GLM_TYPE_F32, a->ne, a, b);
}
glm_tensor* glm_add(glm_context& ctx, glm_tensor* a, glm_tensor* b) { return binary(ctx, GLM_OP_ADD, a, b); }
glm_tensor* glm_mul(glm_context& ctx, glm_tensor* a, glm_tensor* b) { return binary(ctx, GLM_OP_MUL, a, b); }

glm_tensor* glm_scale(glm_context& ctx, glm_tensor* a, float s) {
    GLM_ASSERT(a->type == GLM_TYPE_F32);
    glm_tensor* t = new_op(ctx, GLM_OP_SCALE, GLM_TYPE_F32, a->ne, a);
    t->params[0].f = s;
    return t;
}

static glm_tensor* unary(glm_context& ctx, glm_op op, glm_tensor* a) {
    GLM_ASSERT(a->type == GLM_TYPE_F32);
    return new_op(ctx, op, GLM_TYPE_F32, a->ne, a);
}
glm_tensor* glm_silu(glm_context& ctx, glm_tensor* a) { return unary(ctx, GLM_OP_SILU, a); }
glm_tensor* glm_sigmoid(glm_context& ctx, glm_tensor* a) { return unary(ctx, GLM_OP_SIGMOID, a); }

glm_tensor* glm_swiglu(glm_context& ctx, glm_tensor* gate, glm_tensor* up) {
    GLM_ASSERT(gate->type == GLM_TYPE_F32 && up->type == GLM_TYPE_F32 && glm_same_shape(gate, up));
    return new_op(ctx, GLM_OP_SWIGLU, GLM_TYPE_F32, gate->ne, gate, up);
}

glm_tensor* glm_rms_norm(glm_context& ctx, glm_tensor* x, glm_tensor* weight, float eps) {
    GLM_ASSERT(x->type == GLM_TYPE_F32);
    GLM_ASSERT(!weight || (glm_type_is_float(weight->type) && weight->ne[0] == x->ne[0] && glm_nrows(weight) == 1));
    glm_tensor* t = new_op(ctx, GLM_OP_RMS_NORM, GLM_TYPE_F32, x->ne, x, weight);
    t->params[0].f = eps;
    return t;
}

glm_tensor* glm_layer_norm(glm_context& ctx, glm_tensor* x, glm_tensor* weight, glm_tensor* bias, float eps) {
    GLM_ASSERT(x->type == GLM_TYPE_F32);
    GLM_ASSERT(!weight || (weight->ne[0] == x->ne[0] && glm_nrows(weight) == 1));
    GLM_ASSERT(!bias || (bias->ne[0] == x->ne[0] && glm_nrows(bias) == 1));
    glm_tensor* t = new_op(ctx, GLM_OP_LAYER_NORM, GLM_TYPE_F32, x->ne, x, weight, bias);
    t->params[0].f = eps;
    return t;
}

glm_tensor* glm_soft_max(glm_context& ctx, glm_tensor* a, float scale) {
    GLM_ASSERT(a->type == GLM_TYPE_F32);
    glm_tensor* t = new_op(ctx, GLM_OP_SOFT_MAX, GLM_TYPE_F32, a->ne, a);
    t->params[0].f = scale;
    return t;
}

glm_tensor* glm_rope(glm_context& ctx, glm_tensor* x, glm_tensor* positions, int n_rot, float theta,
                     glm_rope_mode mode) {
    GLM_ASSERT(x->type == GLM_TYPE_F32 && positions->type == GLM_TYPE_I32);
    GLM_ASSERT(n_rot > 0 && n_rot % 2 == 0 && n_rot <= x->ne[0]);
    GLM_ASSERT(positions->ne[0] == x->ne[2] && x->ne[3] == 1);
    glm_tensor* t = new_op(ctx, GLM_OP_ROPE, GLM_TYPE_F32, x->ne, x, positions);
    t->params[0].i = n_rot;
    t->params[1].f = theta;
    t->params[2].i = mode;
    return t;
}

glm_tensor* glm_concat(glm_context& ctx, glm_tensor* a, glm_tensor* b, int dim) {
    GLM_ASSERT(dim >= 0 && dim < 4);
    GLM_ASSERT(glm_type_is_float(a->type) && glm_type_is_float(b->type));
    int64_t ne[4];
    for (int i = 0; i < 4; ++i) {
        if (i == dim) ne[i] = a->ne[i] + b->ne[i];
        else {
            GLM_ASSERT(a->ne[i] == b->ne[i]);
            ne[i] = a->ne[i];
        }
    }
    glm_tensor* t = new_op(ctx, GLM_OP_CONCAT, GLM_TYPE_F32, ne, a, b);
    t->params[0].i = dim;
    return t;
}

glm_tensor* glm_repeat(glm_context& ctx, glm_tensor* a, const int64_t ne[4]) {
    GLM_ASSERT(glm_type_is_float(a->type));
    for (int i = 0; i < 4; ++i) GLM_ASSERT(a->ne[i] > 0 && ne[i] % a->ne[i] == 0);
    return new_op(ctx, GLM_OP_REPEAT, GLM_TYPE_F32, ne, a);
}

glm_tensor* glm_cpy(glm_context& ctx, glm_tensor* a, glm_tensor* b) {
    GLM_ASSERT(glm_nelements(a) == glm_nelements(b));
    GLM_ASSERT(glm_type_is_float(a->type) && glm_type_is_float(b->type));
    glm_tensor* t = new_op(ctx, GLM_OP_CPY, b->type, b->ne, a, b);
    for (int i = 0; i < 4; ++i) t->nb[i] = b->nb[i];
    t->view_src = glm_view_root(b);
    t->view_offset = b->view_src ? b->view_offset : 0;
    return t;
}

glm_tensor* glm_cont(glm_context& ctx, glm_tensor* a) {
    GLM_ASSERT(glm_type_is_float(a->type));
    return new_op(ctx, GLM_OP_CONT, GLM_TYPE_F32, a->ne, a);
}

glm_tensor* glm_cast(glm_context& ctx, glm_tensor* a, glm_type type) {
    GLM_ASSERT((a->type == GLM_TYPE_I32 && type == GLM_TYPE_F32) || (a->type == GLM_TYPE_F32 && type == GLM_TYPE_I32));
    return new_op(ctx, GLM_OP_CONT, type, a->ne, a);
}

glm_tensor* glm_set_rows(glm_context& ctx, glm_tensor* cache, glm_tensor* rows, glm_tensor* slots) {
    GLM_ASSERT(glm_type_is_float(cache->type) && rows->type == GLM_TYPE_F32 && slots->type == GLM_TYPE_I32);
    GLM_ASSERT(cache->ne[0] == rows->ne[0] && cache->ne[2] == 1 && cache->ne[3] == 1);
    GLM_ASSERT(rows->ne[1] == slots->ne[0] && rows->ne[2] == 1 && rows->ne[3] == 1);
    glm_tensor* t = new_op(ctx, GLM_OP_SET_ROWS, cache->type, cache->ne, cache, rows, slots);
    for (int i = 0; i < 4; ++i) t->nb[i] = cache->nb[i];
    t->view_src = glm_view_root(cache);
    t->view_offset = cache->view_src ? cache->view_offset : 0;
    return t;
}

glm_tensor* glm_mul_mat(glm_context& ctx, glm_tensor* w, glm_tensor* x) {
    GLM_ASSERT(x->type == GLM_TYPE_F32);
    GLM_ASSERT(w->ne[0] == x->ne[0]);
    GLM_ASSERT(x->ne[2] % w->ne[2] == 0 && x->ne[3] % w->ne[3] == 0);
    GLM_ASSERT(w->type != GLM_TYPE_NVFP4 || (w->block_scale && w->global_scale && w->nb[0] == 1));
    const int64_t ne[4] = {w->ne[1], x->ne[1], x->ne[2], x->ne[3]};
    return new_op(ctx, GLM_OP_MUL_MAT, GLM_TYPE_F32, ne, w, x);
}

glm_tensor* glm_mul_mat_id(glm_context& ctx, glm_tensor* experts, glm_tensor* x, glm_tensor* ids) {
    GLM_ASSERT(x->type == GLM_TYPE_F32 && ids->type == GLM_TYPE_I32);
    GLM_ASSERT(experts->ne[0] == x->ne[0] && experts->ne[3] == 1);
    GLM_ASSERT(x->ne[2] == ids->ne[1] && (x->ne[1] == 1 || x->ne[1] == ids->ne[0]));
    GLM_ASSERT(experts->type != GLM_TYPE_NVFP4 || (experts->block_scale && experts->global_scale));
    const int64_t ne[4] = {experts->ne[1], ids->ne[0], ids->ne[1], 1};
    return new_op(ctx, GLM_OP_MUL_MAT_ID, GLM_TYPE_F32, ne, experts, x, ids);
}

glm_tensor* glm_attn(glm_context& ctx, glm_tensor* q, glm_tensor* k, glm_tensor* v, glm_tensor* q_pos,
                     glm_tensor* key_ids, float scale) {
    GLM_ASSERT(q->type == GLM_TYPE_F32 && glm_type_is_float(k->type) && glm_type_is_float(v->type));
    GLM_ASSERT(q->ne[0] == k->ne[0] && k->ne[1] == v->ne[1] && k->ne[2] == v->ne[2]);
    GLM_ASSERT(k->ne[1] == 1 || k->ne[1] == q->ne[1]);
    GLM_ASSERT(q_pos->type == GLM_TYPE_I32 && q_pos->ne[0] == q->ne[2]);
    GLM_ASSERT(!key_ids || (key_ids->type == GLM_TYPE_I32 && key_ids->ne[1] == q->ne[2]));
    const int64_t ne[4] = {v->ne[0], q->ne[1], q->ne[2], 1};
    glm_tensor* t = new_op(ctx, GLM_OP_ATTN, GLM_TYPE_F32, ne, q, k, v, q_pos);
    t->src[4] = key_ids;
    t->params[0].f = scale;
    return t;
}

glm_tensor* glm_attn_part(glm_context& ctx, glm_tensor* q, glm_tensor* k, glm_tensor* v, glm_tensor* q_pos,
                          glm_tensor* key_ids, float scale) {
    glm_tensor* t = glm_attn(ctx, q, k, v, q_pos, key_ids, scale);
    t->ne[0] += 1;  // the log-sum-exp after each row's Dv outputs
    for (int i = 1; i < GLM_MAX_DIMS; ++i) t->nb[i] = t->nb[i - 1] * size_t(t->ne[i - 1]);
    t->params[1].i = 1;
    return t;
}

glm_tensor* glm_indexer(glm_context& ctx, glm_tensor* q, glm_tensor* k, glm_tensor* w, glm_tensor* q_pos,
                        float scale, float weight_scale) {
    GLM_ASSERT(q->type == GLM_TYPE_F32 && glm_type_is_float(k->type) && w->type == GLM_TYPE_F32);
    GLM_ASSERT(q->ne[0] == k->ne[0] && w->ne[0] == q->ne[1] && w->ne[1] == q->ne[2]);
    GLM_ASSERT(q_pos->type == GLM_TYPE_I32 && q_pos->ne[0] == q->ne[2]);
    const int64_t ne[4] = {k->ne[1], q->ne[2], 1, 1};
    glm_tensor* t = new_op(ctx, GLM_OP_INDEXER, GLM_TYPE_F32, ne, q, k, w, q_pos);
    t->params[0].f = scale;
    t->params[1].f = weight_scale;
    return t;
}

glm_tensor* glm_top_k(glm_context& ctx, glm_tensor* a, int k, glm_tensor* q_pos) {
    GLM_ASSERT(a->type == GLM_TYPE_F32 && k >= 1 && k <= a->ne[0] && a->ne[2] == 1 && a->ne[3] == 1);
    GLM_ASSERT(!q_pos || (q_pos->type == GLM_TYPE_I32 && q_pos->ne[0] == a->ne[1]));
    const int64_t ne[4] = {k, a->ne[1], 1, 1};
    glm_tensor* t = new_op(ctx, GLM_OP_TOP_K, GLM_TYPE_I32, ne, a, q_pos);
    t->params[0].i = k;
    return t;
}

glm_tensor* glm_top_k_by_index(glm_context& ctx, glm_tensor* a, int k, glm_tensor* q_pos) {
    glm_tensor* t = glm_top_k(ctx, a, k, q_pos);
    t->params[1].i = 1;
    return t;
}

glm_tensor* glm_moe_select(glm_context& ctx, glm_tensor* probs, glm_tensor* bias, int k, int n_group,
                           int topk_group) {
    GLM_ASSERT(probs->type == GLM_TYPE_F32 && probs->ne[2] == 1 && probs->ne[3] == 1);
    GLM_ASSERT(!bias || (bias->ne[0] == probs->ne[0] && glm_nrows(bias) == 1));
    GLM_ASSERT(n_group >= 1 && probs->ne[0] % n_group == 0 && topk_group >= 1 && topk_group <= n_group);
    GLM_ASSERT(k >= 1 && k <= (probs->ne[0] / n_group) * topk_group);
    const int64_t ne[4] = {k, probs->ne[1], 1, 1};
    glm_tensor* t = new_op(ctx, GLM_OP_MOE_SELECT, GLM_TYPE_I32, ne, probs, bias);
    t->params[0].i = k;
    t->params[1].i = n_group;
    t->params[2].i = topk_group;
    return t;
}

glm_tensor* glm_moe_weights(glm_context& ctx, glm_tensor* probs, glm_tensor* ids, bool normalize, float scaling) {
    GLM_ASSERT(probs->type == GLM_TYPE_F32 && ids->type == GLM_TYPE_I32 && ids->ne[1] == probs->ne[1]);
    const int64_t ne[4] = {ids->ne[0], ids->ne[1], 1, 1};
    glm_tensor* t = new_op(ctx, GLM_OP_MOE_WEIGHTS, GLM_TYPE_F32, ne, probs, ids);
    t->params[0].i = normalize ? 1 : 0;
    t->params[1].f = scaling;
    return t;
}

glm_tensor* glm_moe_combine(glm_context& ctx, glm_tensor* y, glm_tensor* w, glm_tensor* ids) {
    GLM_ASSERT(y->type == GLM_TYPE_F32 && w->type == GLM_TYPE_F32 && ids->type == GLM_TYPE_I32);
    GLM_ASSERT(y->ne[1] == w->ne[0] && y->ne[2] == w->ne[1] && glm_same_shape(w, ids));
    const int64_t ne[4] = {y->ne[0], y->ne[2], 1, 1};
    return new_op(ctx, GLM_OP_MOE_COMBINE, GLM_TYPE_F32, ne, y, w, ids);
}

glm_tensor* glm_argmax(glm_context& ctx, glm_tensor* a) {
    GLM_ASSERT(a->type == GLM_TYPE_F32 && a->ne[2] == 1 && a->ne[3] == 1);
    const int64_t ne[4] = {a->ne[1], 1, 1, 1};
    return new_op(ctx, GLM_OP_ARGMAX, GLM_TYPE_I32, ne, a);
}

glm_tensor* glm_max_arg(glm_context& ctx, glm_tensor* a, int32_t index_offset) {
    GLM_ASSERT(a->type == GLM_TYPE_F32 && a->ne[2] == 1 && a->ne[3] == 1 && index_offset >= 0);
    const int64_t ne[4] = {2, a->ne[1], 1, 1};
    glm_tensor* t = new_op(ctx, GLM_OP_MAX_ARG, GLM_TYPE_F32, ne, a);
    t->params[0].i = index_offset;
    return t;
}

glm_tensor* glm_all_reduce(glm_context& ctx, glm_tensor* a) {
    GLM_ASSERT(a->type == GLM_TYPE_F32);
    return new_op(ctx, GLM_OP_ALL_REDUCE, GLM_TYPE_F32, a->ne, a);
}

glm_tensor* glm_pad_block(glm_context& ctx, glm_tensor* a, int dim, int n_blocks, int block) {
    GLM_ASSERT(a->type == GLM_TYPE_F32 && dim >= 0 && dim < GLM_MAX_DIMS);
    GLM_ASSERT(n_blocks >= 1 && block >= 0 && block < n_blocks);
    int64_t ne[4] = {a->ne[0], a->ne[1], a->ne[2], a->ne[3]};
    ne[dim] *= n_blocks;
    glm_tensor* t = new_op(ctx, GLM_OP_PAD_BLOCK, GLM_TYPE_F32, ne, a);
    t->params[0].i = dim;
    t->params[1].i = n_blocks;
    t->params[2].i = block;
    return t;
}

glm_tensor* glm_topk_candidates(glm_context& ctx, glm_tensor* scores, glm_tensor* ids, int n_ranks, int rank) {
    GLM_ASSERT(scores->type == GLM_TYPE_F32 && ids->type == GLM_TYPE_I32 && n_ranks >= 1 && rank >= 0 && rank < n_ranks);
    GLM_ASSERT(scores->ne[2] == 1 && scores->ne[3] == 1 && ids->ne[2] == 1 && ids->ne[3] == 1 && ids->ne[1] == scores->ne[1]);
    const int64_t ne[4] = {ids->ne[0], 2, ids->ne[1], 1};
    glm_tensor* t = new_op(ctx, GLM_OP_TOPK_CANDIDATES, GLM_TYPE_F32, ne, scores, ids);
    t->params[0].i = n_ranks;
    t->params[1].i = rank;
    return t;
}

glm_tensor* glm_topk_merge(glm_context& ctx, glm_tensor* local_ids, glm_tensor* all, glm_tensor* best, int rank) {
    GLM_ASSERT(local_ids->type == GLM_TYPE_I32 && all->type == GLM_TYPE_F32 && best->type == GLM_TYPE_I32 && rank >= 0);
    GLM_ASSERT(glm_is_contiguous(local_ids) && local_ids->ne[2] == 1 && local_ids->ne[3] == 1);
    GLM_ASSERT(all->ne[1] == 2 && all->ne[2] == local_ids->ne[1] && all->ne[3] == 1);
    GLM_ASSERT(all->ne[0] >= local_ids->ne[0] * (rank + 1));
    GLM_ASSERT(best->ne[1] == local_ids->ne[1] && best->ne[0] >= 1 && best->ne[0] <= all->ne[0]);
    glm_tensor* t = new_op(ctx, GLM_OP_TOPK_MERGE, GLM_TYPE_I32, local_ids->ne, local_ids, all, best);
    t->params[0].i = rank;
    return t;
}

glm_tensor* glm_attn_merge(glm_context& ctx, glm_tensor* part, glm_tensor* lse_all) {
    GLM_ASSERT(part->type == GLM_TYPE_F32 && lse_all->type == GLM_TYPE_F32 && part->ne[0] >= 2);
    GLM_ASSERT(part->ne[1] == lse_all->ne[1] && part->ne[2] == lse_all->ne[2] && part->ne[3] == 1 && lse_all->ne[3] == 1);
    const int64_t ne[4] = {part->ne[0] - 1, part->ne[1], part->ne[2], 1};
    return new_op(ctx, GLM_OP_ATTN_MERGE, GLM_TYPE_F32, ne, part, lse_all);
}

// ---- graph ------------------------------------------------------------------------------------
static void visit(glm_graph& g, glm_tensor* t) {
    if (!t || !g.members.insert(t).second) return;
    for (glm_tensor* s : t->src) visit(g, s);
    if (t->op == GLM_OP_NONE) {
        g.leafs.push_back(t);
        for (glm_tensor* scale : {t->block_scale, t->global_scale})
            if (scale && g.members.insert(scale).second) g.leafs.push_back(scale);
    } else {
        g.nodes.push_back(t);
    }
}

void glm_graph_expand(glm_graph& graph, glm_tensor* t) { visit(graph, t); }
