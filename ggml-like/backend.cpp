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
