// Node patterns the CUDA backend runs as one launch (ggml-cuda's habit: the graph stays the plain
// op-by-op description that the CPU reference runs; the backend looks ahead). The launchers are in
// the op files (cuda/ops.cuh, "fused launches"); this file only decides when they apply.
#pragma once

#include <unordered_map>

#include "cuda/common.cuh"

// How many nodes of a graph read each tensor (its src references), computed once per graph.
class NodeReaders {
public:
    void refresh(const glm_graph& graph);
    int count(const glm_tensor* t) const {
        const auto it = readers_.find(t);
        return it == readers_.end() ? 0 : it->second;
    }

private:
    const glm_graph* graph_ = nullptr;
    size_t n_nodes_ = 0;
    const glm_tensor* first_ = nullptr;
    std::unordered_map<const glm_tensor*, int> readers_;
};

// If graph.nodes[i..] (stopping before end) starts a known pattern whose launcher accepts it, run it
// and return how many nodes it covered; 0: run node i on its own.
size_t cuda_run_fused(CudaContext& ctx, const glm_graph& graph, size_t i, size_t end, const NodeReaders& readers);
