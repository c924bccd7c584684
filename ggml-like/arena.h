// The arena planner: one activation buffer per device, sized by a measure pass over the worst-case
// graph. Offsets come from liveness: a tensor's bytes are reserved from the node that produces it
// to the last node that reads it (directly or through a view), best-fit in a free list.
#pragma once

#include <vector>

#include "ggml-like/backend.h"

constexpr size_t GLM_ARENA_ALIGN = 256;

struct glm_arena_slot {
    glm_tensor* tensor;
    size_t offset;
    size_t size;
    int first_node;  // -1 for inputs: alive from the start
    int last_node;   // index of the last node that reads it (graph size for outputs)
};

struct glm_arena_plan {
    std::vector<glm_arena_slot> slots;
    size_t size = 0;  // peak bytes
};

// Which tensors need arena space: computed tensors that own their bytes, and leaves that no buffer
// holds yet (inputs). Weights and caches are placed in their own buffers beforehand.
glm_arena_plan glm_arena_measure(const glm_graph& graph);
// Plan the graph and place its tensors in buffer (which must be large enough: it was sized by the
// worst-case measure), then resolve views. Aborts if the plan outgrows the buffer.
void glm_arena_allocate(const glm_graph& graph, glm_buffer* buffer);
// Place graph's tensors where the plan of `reference` puts its own: the two graphs come from one
// builder with the same node list (node i of one matches node i of the other, same op), and each
// tensor of graph is no larger than its match. Best-fit packing is not monotonic in the tensor sizes
// (a graph with smaller tensors can peak higher: seen 15% over the largest measured graph), so a
// graph whose sizes vary with the context length is placed as the measured one at the end of it.
// reference_plan is glm_arena_measure(reference), kept by callers that place many graphs as one.
void glm_arena_allocate_as(const glm_graph& graph, const glm_graph& reference, const glm_arena_plan& reference_plan,
                           glm_buffer* buffer);
