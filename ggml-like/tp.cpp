#include "ggml-like/tp.h"

#include <algorithm>

namespace {

class HostComm final : public glm_comm {
public:
    explicit HostComm(std::vector<glm_backend*> ranks) : ranks_(std::move(ranks)) {}
    const char* name() const override { return "host"; }
    int n_ranks() const override { return int(ranks_.size()); }

    Status all_reduce(const std::vector<glm_tensor*>& nodes) override {
        GLM_ASSERT(nodes.size() == ranks_.size());
        const size_t n = size_t(glm_nelements(nodes[0]));
        sum_.assign(n, 0.0f);
        part_.resize(n);
        // Summed in rank order on every call: every rank gets bit-identical results.
        for (size_t r = 0; r < ranks_.size(); ++r) {
            const glm_tensor* src = nodes[r]->src[0];
            GLM_ASSERT(size_t(glm_nelements(src)) == n && glm_is_contiguous(src) && glm_is_contiguous(nodes[r]));
            ranks_[r]->synchronize();
            ranks_[r]->tensor_get(src, part_.data(), 0, n * sizeof(float));
            for (size_t i = 0; i < n; ++i) sum_[i] += part_[i];
        }
        for (size_t r = 0; r < ranks_.size(); ++r) ranks_[r]->tensor_set(nodes[r], sum_.data(), 0, n * sizeof(float));
        return {};
    }

private:
    std::vector<glm_backend*> ranks_;
    std::vector<float> sum_, part_;
};

}  // namespace

std::unique_ptr<glm_comm> glm_comm_host_create(std::vector<glm_backend*> ranks) {
    return std::make_unique<HostComm>(std::move(ranks));
}

Status glm_tp_compute(const std::vector<glm_backend*>& ranks, const std::vector<const glm_graph*>& graphs,
                      glm_comm* comm) {
    GLM_ASSERT(!ranks.empty() && ranks.size() == graphs.size());
    if (ranks.size() == 1) return ranks[0]->graph_compute(*graphs[0]);
    GLM_ASSERT(comm && comm->n_ranks() == int(ranks.size()));
    std::vector<size_t> at(ranks.size(), 0);
    while (true) {
        // Each rank: its nodes up to (not including) the next all-reduce.
        std::vector<glm_tensor*> reduce(ranks.size(), nullptr);
        for (size_t r = 0; r < ranks.size(); ++r) {
            const std::vector<glm_tensor*>& nodes = graphs[r]->nodes;
            size_t end = at[r];
            while (end < nodes.size() && nodes[end]->op != GLM_OP_ALL_REDUCE) ++end;
            GLM_TRY(ranks[r]->graph_compute_range(*graphs[r], at[r], end));
            if (end < nodes.size()) reduce[r] = nodes[end];
            at[r] = end + (end < nodes.size() ? 1 : 0);
        }
        const size_t n_reduce = size_t(std::count_if(reduce.begin(), reduce.end(), [](glm_tensor* t) { return t; }));
        if (n_reduce == 0) return {};
        // The graphs disagree on their all-reduces: a builder bug, not a user error.
        if (n_reduce != ranks.size()) GLM_ABORT("tensor-parallel graphs have different all-reduce counts");
        for (size_t r = 1; r < ranks.size(); ++r)
            GLM_ASSERT(glm_nelements(reduce[r]) == glm_nelements(reduce[0]));
        GLM_TRY(comm->all_reduce(reduce));
    }
}
