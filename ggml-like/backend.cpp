#include "ggml-like/backend.h"

void glm_place(glm_tensor* t, glm_buffer* buffer, size_t offset) {
    GLM_ASSERT(!t->view_src);
    GLM_ASSERT(offset + glm_nbytes(t) <= buffer->size);
    t->buffer = buffer;
    t->offset = offset;
    t->data = buffer->base + offset;
}

static void resolve(glm_tensor* t) {
    if (!t || !t->view_src) return;
    glm_tensor* root = t->view_src;
    GLM_ASSERT(root->buffer);
    t->buffer = root->buffer;
    t->offset = root->offset + t->view_offset;
    t->data = root->buffer->base + t->offset;
}

void glm_graph_resolve_views(const glm_graph& graph) {
    for (glm_tensor* t : graph.leafs) resolve(t);
    for (glm_tensor* t : graph.nodes) {
        resolve(t);
        for (glm_tensor* s : t->src) resolve(s);
    }
}

glm_fill_map glm_fill_map_make(const glm_tensor* t, const glm_fill_slice& s) {
    GLM_ASSERT(glm_is_contiguous(t));
    const int64_t rows_total = s.rows_total ? s.rows_total : t->ne[1];
    const int64_t cols_total = s.cols_total ? s.cols_total : t->ne[0];
    if (s.row0 < 0 || s.col0 < 0 || s.row0 + t->ne[1] > rows_total || s.col0 + t->ne[0] > cols_total)
        GLM_ABORT("fill of '{}': rows [{}, +{}) of {}, columns [{}, +{}) of {} lie outside the whole tensor", t->name,
                  s.row0, t->ne[1], rows_total, s.col0, t->ne[0], cols_total);
    // Units: bytes for the byte fill (glm_row_bytes checks NVFP4 offsets are whole bytes), else elements.
    auto units = [&](int64_t n) { return uint64_t(glm_fill_is_bytes(t->type) ? glm_row_bytes(t->type, n) : size_t(n)); };
    glm_fill_map m;
    m.row_units = units(t->ne[0]);
    m.rows = uint64_t(t->ne[1]);
    m.row_units_total = units(cols_total);
    m.rows_total = uint64_t(rows_total);
    m.col0_units = units(s.col0);
    m.row0 = uint64_t(s.row0);
    return m;
}
