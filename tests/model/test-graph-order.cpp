// The node order the CUDA backend's fused launches rely on (cuda/fusion.cu matches consecutive nodes,
// views skipped): the graph builders put each pattern's nodes next to each other. A change of the
// build order would not change any result, only silently run the nodes one by one again, so it is
// held here, on the CPU, for decode and prefill graphs of one and two ranks.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/weights.h"

namespace {

std::string source(const std::string& rel) { return std::string(GLMRUN_SOURCE_DIR) + "/" + rel; }

struct PatternCounts {
    int index_key = 0;   // norm -> rope -> set_rows
    int latent_row = 0;  // rms_norm -> rope -> concat(norm, rope) -> set_rows
    int query = 0;       // rope -> concat(., rope)
};

PatternCounts count_patterns(const glm_graph& graph) {
    std::vector<const glm_tensor*> nodes;
    for (const glm_tensor* n : graph.nodes)
        if (n->op != GLM_OP_VIEW) nodes.push_back(n);
    // The tensor a view chain reads.
    auto root_of = [](const glm_tensor* t) {
        while (t && t->op == GLM_OP_VIEW) t = t->src[0];
        return t;
    };
    PatternCounts c;
    for (size_t i = 0; i + 1 < nodes.size(); ++i) {
        const glm_tensor *a = nodes[i], *b = nodes[i + 1];
        const glm_tensor* d = i + 2 < nodes.size() ? nodes[i + 2] : nullptr;
        const glm_tensor* e = i + 3 < nodes.size() ? nodes[i + 3] : nullptr;
        const bool norm = a->op == GLM_OP_RMS_NORM || a->op == GLM_OP_LAYER_NORM;
        if (norm && b->op == GLM_OP_ROPE && d && d->op == GLM_OP_SET_ROWS && root_of(b->src[0]) == a &&
            root_of(d->src[1]) == b)
            ++c.index_key;
        if (a->op == GLM_OP_RMS_NORM && b->op == GLM_OP_ROPE && d && d->op == GLM_OP_CONCAT && e &&
            e->op == GLM_OP_SET_ROWS && d->src[0] == a && root_of(d->src[1]) == b && e->src[1] == d)
            ++c.latent_row;
        if (a->op == GLM_OP_ROPE && b->op == GLM_OP_CONCAT && b->src[1] == a) ++c.query;
    }
    return c;
}

}  // namespace

TEST_CASE("graph order: the rows attention writes stay consecutive for the CUDA backend's fused launches") {
    for (const char* fixture : {"dense_moe", "index_cache"}) {
        LoadedModel m;
        std::unique_ptr<glm_backend> cpu = glm_backend_cpu_create(1);
        const Status st = load_model(source("tests/fixtures/") + fixture, "", cpu.get(), m);
        REQUIRE_MESSAGE(st.ok(), st.message());
        const ModelHparams& hp = m.hp;
        int indexer_layers = 0;
        for (int64_t il = 0; il < hp.n_layer; ++il) indexer_layers += hp.indexer_shared[size_t(il)] ? 0 : 1;
        for (const int64_t n_tokens : {int64_t(1), int64_t(12)})
            for (const int n_ranks : {1, 2}) {
                CAPTURE(fixture);
                CAPTURE(n_tokens);
                CAPTURE(n_ranks);
                glm_context ctx;
                KvCache kv;
                kv.n_ctx = 64;
                for (int64_t il = 0; il < hp.n_layer; ++il) {
                    kv.latent.push_back(ctx.new_tensor_2d(GLM_TYPE_F32, hp.kv_row(), kv.n_ctx));
                    kv.index.push_back(hp.indexer_shared[size_t(il)]
                                           ? nullptr
                                           : ctx.new_tensor_2d(GLM_TYPE_F32, hp.index_head_dim, kv.n_ctx));
                }
                ForwardOptions opt;
                opt.n_ranks = n_ranks;
                // past the top-k, so F layers run the indexer (and, at two ranks, a prompt chunk its
                // query blocks)
                const ForwardGraph fg = build_forward(ctx, hp, m.tensors(), kv, n_tokens, hp.index_topk + 5, opt);
                const PatternCounts c = count_patterns(fg.graph);
                CHECK(c.latent_row == hp.n_layer);
                CHECK(c.query == hp.n_layer);
                CHECK(c.index_key == indexer_layers);
            }
    }
}
