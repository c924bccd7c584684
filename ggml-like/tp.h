// Tensor parallelism from one host thread: N ranks (one backend each) run their own copy of a graph
// whose ALL_REDUCE nodes are the only points where ranks meet. The executor runs each rank's nodes
// up to the next all-reduce (launches are asynchronous on devices, so the ranks overlap), then the
// communicator sums the all-reduce inputs over the ranks into every rank's all-reduce output.
#pragma once

#include <memory>
#include <vector>

#include "ggml-like/backend.h"

class glm_comm {
public:
    virtual ~glm_comm() = default;
    virtual const char* name() const = 0;
    virtual int n_ranks() const = 0;
    // nodes[r] is rank r's ALL_REDUCE node (F32, contiguous, same shape on every rank): write the sum
    // over ranks of nodes[*]->src[0] into every nodes[r]. Ordered after the work already given to
    // each rank's backend; may return before the sum is done (device streams).
    virtual Status all_reduce(const std::vector<glm_tensor*>& nodes) = 0;
    // Whether all-reduces of up to `bytes` may be recorded into replayable graphs (a kernel per rank
    // with no host step). NCCL is not recorded: its captured work pins the communicator, which then
    // cannot be torn down before the graphs are.
    virtual bool capturable(size_t bytes) const {
        (void)bytes;
        return false;
    }
};

// A communicator through the host (tensor_get / tensor_set): any backend, slow; the reference the
// device communicators are tested against, and what CPU ranks use.
std::unique_ptr<glm_comm> glm_comm_host_create(std::vector<glm_backend*> ranks);

// Run graphs[r] on ranks[r] for every rank. The graphs must have the same ALL_REDUCE nodes in the
// same order (they are built by one builder with per-rank shapes). With one rank the ALL_REDUCE
// nodes are plain copies and comm may be null.
Status glm_tp_compute(const std::vector<glm_backend*>& ranks, const std::vector<const glm_graph*>& graphs,
                      glm_comm* comm);
