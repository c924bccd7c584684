// Pattern matching for the fused launches (see fusion.cuh). A pattern is a run of consecutive nodes
// (the graph builders put them next to each other) in which every intermediate the fused kernel does
// not write is read by no node but the pattern's own and is not a graph output. Whether an output
// lands on bytes the fused kernel still reads is each launcher's check (the arena's delayed reuse
// prevents it for graphs it plans).
#include "cuda/fusion.cuh"
#include "cuda/ops.cuh"

// Build knob for A/B runs (-DGLM_FUSE_ROPE_ROWS=0): the rows attention writes as separate launches.
#ifndef GLM_FUSE_ROPE_ROWS
#define GLM_FUSE_ROPE_ROWS 1
#endif

void NodeReaders::refresh(const glm_graph& graph) {
    const glm_tensor* first = graph.nodes.empty() ? nullptr : graph.nodes.front();
    if (&graph == graph_ && graph.nodes.size() == n_nodes_ && first == first_) return;
    graph_ = &graph;
    n_nodes_ = graph.nodes.size();
    first_ = first;
    readers_.clear();
    for (const glm_tensor* node : graph.nodes)
        for (const glm_tensor* src : node->src)
            if (src) ++readers_[src];
}

namespace {

// An intermediate that may stay unwritten: read only by the pattern's `own` readers.
bool private_to_pattern(const glm_tensor* t, int own, const NodeReaders& readers) {
    return !(t->flags & GLM_FLAG_OUTPUT) && readers.count(t) == own;
}

// Read by `reader` only, through views: each tensor from reader's operand down to t (views in between)
// is private. Views compute nothing, so a pattern may skip the ones between its nodes.
bool private_through_views(const glm_tensor* operand, const glm_tensor* t, const NodeReaders& readers) {
    for (const glm_tensor* v = operand; v; v = v->src[0]) {
        if (!private_to_pattern(v, 1, readers)) return false;
        if (v == t) return true;
        if (v->op != GLM_OP_VIEW) return false;
    }
    return false;
}

bool is_norm(const glm_tensor* t) { return t->op == GLM_OP_RMS_NORM || t->op == GLM_OP_LAYER_NORM; }

bool same_mul_mat_inputs(const glm_tensor* a, const glm_tensor* b) {
    return a->op == b->op && a->src[1] == b->src[1] && a->src[2] == b->src[2] && glm_same_shape(a, b);
}

// norm -> rope -> set_rows (the indexer key), or norm, rope -> concat -> set_rows (the latent row), from
// node i (a norm); views between the nodes are skipped (and counted). 0: no such pattern here.
size_t run_rope_row_patterns(CudaContext& ctx, const glm_graph& graph, size_t i, size_t end, const NodeReaders& readers) {
    auto next = [&](size_t k) {  // the first node after index k that is not a view
        for (++k; k < end && graph.nodes[k]->op == GLM_OP_VIEW; ++k) {}
        return k;
    };
    glm_tensor* norm = graph.nodes[i];
    const size_t r = next(i);
    glm_tensor* rope = r < end ? graph.nodes[r] : nullptr;
    if (!rope || rope->op != GLM_OP_ROPE) return 0;
    const size_t k = next(r);
    glm_tensor* after = k < end ? graph.nodes[k] : nullptr;
    if (!after) return 0;
    if (after->op == GLM_OP_SET_ROWS && private_through_views(rope->src[0], norm, readers) &&
        private_through_views(after->src[1], rope, readers))
        return cuda_fused_norm_rope_set_rows(ctx, norm, rope, after) ? k - i + 1 : 0;
    const size_t m = next(k);
    glm_tensor* store = m < end ? graph.nodes[m] : nullptr;
    if (after->op == GLM_OP_CONCAT && store && store->op == GLM_OP_SET_ROWS && store->src[1] == after &&
        after->src[0] == norm && private_to_pattern(norm, 1, readers) &&
        private_through_views(after->src[1], rope, readers) && private_to_pattern(after, 1, readers))
        return cuda_fused_norm_rope_concat_set_rows(ctx, norm, rope, after, store) ? m - i + 1 : 0;
    return 0;
}

}  // namespace

size_t cuda_run_fused(CudaContext& ctx, const glm_graph& graph, size_t i, size_t end, const NodeReaders& readers) {
    auto at = [&](size_t k) -> glm_tensor* { return i + k < end ? graph.nodes[i + k] : nullptr; };
    glm_tensor* n0 = at(0);
    glm_tensor* n1 = at(1);
    glm_tensor* n2 = at(2);
    if (!n0 || !n1) return 0;

    // The rows attention writes (norm.cu), patterns whose nodes have views between them.
    if (GLM_FUSE_ROPE_ROWS && is_norm(n0)) {
        const size_t covered = run_rope_row_patterns(ctx, graph, i, end, readers);
        if (covered) return covered;
    }
    // rope -> concat(A, rope): the absorbed query
    if (GLM_FUSE_ROPE_ROWS && n0->op == GLM_OP_ROPE && n1->op == GLM_OP_CONCAT && n1->src[1] == n0 && n1->src[0] != n0 &&
        private_to_pattern(n0, 1, readers))
        return cuda_fused_rope_concat(ctx, n0, n1) ? 2 : 0;

    // Residual add, then the norm of the new residual stream (twice per layer). Both are written.
    if (n0->op == GLM_OP_ADD && n1->op == GLM_OP_RMS_NORM && n1->src[0] == n0)
        return cuda_fused_add_rms_norm(ctx, n0, n1) ? 2 : 0;

    // The routed experts' combine, then the sum with the shared expert (MoE layers). Only the sum is
    // written.
    if (n0->op == GLM_OP_MOE_COMBINE && n1->op == GLM_OP_ADD && (n1->src[0] == n0 || n1->src[1] == n0) &&
        n1->src[0] != n1->src[1] && private_to_pattern(n0, 1, readers))
        return cuda_fused_moe_combine_add(ctx, n0, n1) ? 2 : 0;

    if (!n2) return 0;
    // The router's epilogue: sigmoid scores, expert choice, routing weights. All three are written.
    if (n0->op == GLM_OP_SIGMOID && n1->op == GLM_OP_MOE_SELECT && n1->src[0] == n0 &&
        n2->op == GLM_OP_MOE_WEIGHTS && n2->src[0] == n0 && n2->src[1] == n1)
        return cuda_fused_moe_route(ctx, n0, n1, n2) ? 3 : 0;

    // Gate and up projections of one token and their SwiGLU (experts, shared expert, dense MLP):
    // the two projections stay in registers.
    if ((n0->op == GLM_OP_MUL_MAT || n0->op == GLM_OP_MUL_MAT_ID) && same_mul_mat_inputs(n0, n1) &&
        n2->op == GLM_OP_SWIGLU && n2->src[0] == n0 && n2->src[1] == n1 && private_to_pattern(n0, 1, readers) &&
        private_to_pattern(n1, 1, readers))
        return cuda_fused_gate_up_swiglu(ctx, n0, n1, n2) ? 3 : 0;
    return 0;
}
