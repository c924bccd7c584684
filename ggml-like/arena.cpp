#include "ggml-like/arena.h"

#include <algorithm>
#include <unordered_map>

namespace {

// A tensor's bytes are reused only k_release_delay nodes after its last reader: a backend that runs a
// few consecutive nodes as one kernel (CUDA's fused launches) then never writes an output over bytes
// the same kernel still reads. Costs a little peak memory.
constexpr int k_release_delay = 2;

size_t align_up(size_t n) { return (n + GLM_ARENA_ALIGN - 1) / GLM_ARENA_ALIGN * GLM_ARENA_ALIGN; }

bool needs_arena(const glm_tensor* t) {
    if (t->view_src || t->op == GLM_OP_VIEW) return false;
    if (t->buffer) return false;  // already placed (weights, caches)
    if (t->flags & (GLM_FLAG_WEIGHT | GLM_FLAG_CACHE)) return false;  // to be placed in buffers of their own
    return true;
}

// Best-fit free list over [0, end); blocks merge with their neighbours when freed.
class FreeList {
public:
    size_t alloc(size_t size) {
        size_t best = blocks_.size();
        for (size_t i = 0; i < blocks_.size(); ++i)
            if (blocks_[i].size >= size && (best == blocks_.size() || blocks_[i].size < blocks_[best].size)) best = i;
        if (best < blocks_.size()) {
            const size_t offset = blocks_[best].offset;
            blocks_[best].offset += size;
            blocks_[best].size -= size;
            if (blocks_[best].size == 0) blocks_.erase(blocks_.begin() + long(best));
            return offset;
        }
        // Grow: a free block touching the end is extended rather than wasted.
        if (!blocks_.empty() && blocks_.back().offset + blocks_.back().size == end_) {
            const size_t offset = blocks_.back().offset;
            end_ = offset + size;
            blocks_.pop_back();
            peak_ = std::max(peak_, end_);
            return offset;
        }
        const size_t offset = end_;
        end_ += size;
        peak_ = std::max(peak_, end_);
        return offset;
    }
    void release(size_t offset, size_t size) {
        auto it = std::lower_bound(blocks_.begin(), blocks_.end(), offset,
                                   [](const Block& b, size_t o) { return b.offset < o; });
        it = blocks_.insert(it, Block{offset, size});
        // merge with next, then previous
        if (it + 1 != blocks_.end() && it->offset + it->size == (it + 1)->offset) {
            it->size += (it + 1)->size;
            blocks_.erase(it + 1);
        }
        if (it != blocks_.begin() && (it - 1)->offset + (it - 1)->size == it->offset) {
            (it - 1)->size += it->size;
            blocks_.erase(it);
        }
    }
    size_t peak() const { return peak_; }

private:
    struct Block {
        size_t offset, size;
    };
    std::vector<Block> blocks_;
    size_t end_ = 0, peak_ = 0;
};

}  // namespace

glm_arena_plan glm_arena_measure(const glm_graph& graph) {
    const int n_nodes = int(graph.nodes.size());
    std::unordered_map<const glm_tensor*, int> last_use;
    auto touch = [&](glm_tensor* t, int node) {
        if (!t) return;
        glm_tensor* root = glm_view_root(t);
        int& last = last_use[root];
        last = std::max(last, node);
        // A view that is itself an output keeps its root alive to the end.
        if (t->flags & GLM_FLAG_OUTPUT) last = n_nodes;
    };
    for (int i = 0; i < n_nodes; ++i) {
        glm_tensor* node = graph.nodes[size_t(i)];
        touch(node, i);
        for (glm_tensor* s : node->src) {
            touch(s, i);
            if (s && s->block_scale) touch(s->block_scale, i);
            if (s && s->global_scale) touch(s->global_scale, i);
        }
    }

    glm_arena_plan plan;
    FreeList free_list;
    std::unordered_map<const glm_tensor*, size_t> slot_of;
    std::vector<std::vector<size_t>> release_after(static_cast<size_t>(n_nodes));  // slots whose last reader is node i
    auto allocate = [&](glm_tensor* t, int first) {
        if (!needs_arena(t) || slot_of.count(t)) return;
        const size_t size = align_up(std::max<size_t>(glm_nbytes(t), 1));
        const int last = (t->flags & GLM_FLAG_OUTPUT) ? n_nodes : std::max(last_use[t], first);
        slot_of[t] = plan.slots.size();
        if (last < n_nodes) release_after[size_t(std::min(last + k_release_delay, n_nodes - 1))].push_back(plan.slots.size());
        plan.slots.push_back({t, free_list.alloc(size), size, first, last});
    };
    for (glm_tensor* leaf : graph.leafs) allocate(leaf, -1);
    for (int i = 0; i < n_nodes; ++i) {
        allocate(graph.nodes[size_t(i)], i);
        // Free what was last read k_release_delay nodes ago (or by this node, at the end), after this
        // node's output was placed: ops are not in-place, so an output never shares bytes with its inputs.
        for (size_t slot : release_after[size_t(i)]) free_list.release(plan.slots[slot].offset, plan.slots[slot].size);
    }
    plan.size = free_list.peak();
    return plan;
}

void glm_arena_allocate(const glm_graph& graph, glm_buffer* buffer) {
    const glm_arena_plan plan = glm_arena_measure(graph);
    if (plan.size > buffer->size)
        GLM_ABORT("activation arena '{}' too small: graph needs {} bytes, buffer has {} (the worst-case measure "
                  "must cover every graph)", buffer->name, plan.size, buffer->size);
    for (const glm_arena_slot& slot : plan.slots) glm_place(slot.tensor, buffer, slot.offset);
    glm_graph_resolve_views(graph);
}

void glm_arena_allocate_as(const glm_graph& graph, const glm_graph& reference, const glm_arena_plan& plan,
                           glm_buffer* buffer) {
    GLM_ASSERT(graph.nodes.size() == reference.nodes.size() && graph.leafs.size() == reference.leafs.size());
    if (plan.size > buffer->size)
        GLM_ABORT("activation arena '{}' too small: the reference graph needs {} bytes, buffer has {}", buffer->name,
                  plan.size, buffer->size);
    std::unordered_map<const glm_tensor*, const glm_arena_slot*> slot_of;
    for (const glm_arena_slot& slot : plan.slots) slot_of[slot.tensor] = &slot;
    auto place = [&](glm_tensor* t, const glm_tensor* ref) {
        GLM_ASSERT(t->op == ref->op && needs_arena(t) == needs_arena(ref));
        const auto it = slot_of.find(ref);
        if (it == slot_of.end()) return;
        GLM_ASSERT(glm_nbytes(t) <= it->second->size);
        glm_place(t, buffer, it->second->offset);
    };
    for (size_t i = 0; i < graph.leafs.size(); ++i) place(graph.leafs[i], reference.leafs[i]);
    for (size_t i = 0; i < graph.nodes.size(); ++i) place(graph.nodes[i], reference.nodes[i]);
    glm_graph_resolve_views(graph);
}
