// The node order the CUDA backend's fused launches rely on (cuda/fusion.cu matches consecutive nodes,
// views skipped for the attention rows): the graph builders put each pattern's nodes next to each other. A change of the
// build order would not change any result, only silently run the nodes one by one again, so it is
// held here, on the CPU, for decode and prefill graphs of one and two ranks.
#include <doctest/doctest.h>

#include <memory>
#include <utility>
#include <string>
#include <vector>

#include "engine/weights.h"

namespace {

std::string source(const std::string& rel) { return std::string(GLMRUN_SOURCE_DIR) + "/" + rel; }

struct PatternCounts {
    int index_key = 0;    // norm -> rope -> set_rows
    int latent_row = 0;   // rms_norm -> rope -> concat(norm, rope) -> set_rows
    int query = 0;        // rope -> concat(., rope)
    int add_norm = 0;     // add -> rms_norm(add)
    int route = 0;        // sigmoid -> moe_select -> moe_weights
    int gate_up = 0;      // mul_mat(_id) gate, up (same input) -> swiglu(gate, up)
    int combine_add = 0;  // moe_combine -> add(., combine)
};

// The attention rows' patterns are matched over the nodes with views left out (fusion.cu steps over
// them); the others over the nodes as they are.
PatternCounts count_patterns(const glm_graph& graph) {
    std::vector<const glm_tensor*> no_views;
    for (const glm_tensor* n : graph.nodes)
        if (n->op != GLM_OP_VIEW) no_views.push_back(n);
    auto root_of = [](const glm_tensor* t) {  // the tensor a view chain reads
        while (t && t->op == GLM_OP_VIEW) t = t->src[0];
        return t;
    };
    auto at = [](const std::vector<const glm_tensor*>& v, size_t i) { return i < v.size() ? v[i] : nullptr; };
    PatternCounts c;
    for (size_t i = 0; i < no_views.size(); ++i) {
        const glm_tensor *a = no_views[i], *b = at(no_views, i + 1), *d = at(no_views, i + 2), *e = at(no_views, i + 3);
        const bool norm = a->op == GLM_OP_RMS_NORM || a->op == GLM_OP_LAYER_NORM;
        if (norm && b && b->op == GLM_OP_ROPE && d && d->op == GLM_OP_SET_ROWS && root_of(b->src[0]) == a &&
            root_of(d->src[1]) == b)
            ++c.index_key;
        if (a->op == GLM_OP_RMS_NORM && b && b->op == GLM_OP_ROPE && d && d->op == GLM_OP_CONCAT && e &&
            e->op == GLM_OP_SET_ROWS && d->src[0] == a && root_of(d->src[1]) == b && e->src[1] == d)
            ++c.latent_row;
    }
    const std::vector<const glm_tensor*> nodes(graph.nodes.begin(), graph.nodes.end());
    for (size_t i = 0; i < nodes.size(); ++i) {
        const glm_tensor *a = nodes[i], *b = at(nodes, i + 1), *d = at(nodes, i + 2);
        if (!b) break;
        if (a->op == GLM_OP_ROPE && b->op == GLM_OP_CONCAT && b->src[1] == a) ++c.query;
        if (a->op == GLM_OP_ADD && b->op == GLM_OP_RMS_NORM && b->src[0] == a) ++c.add_norm;
        if (a->op == GLM_OP_SIGMOID && b->op == GLM_OP_MOE_SELECT && d && d->op == GLM_OP_MOE_WEIGHTS &&
            b->src[0] == a && d->src[0] == a && d->src[1] == b)
            ++c.route;
        if ((a->op == GLM_OP_MUL_MAT || a->op == GLM_OP_MUL_MAT_ID) && b->op == a->op && b->src[1] == a->src[1] && d &&
            d->op == GLM_OP_SWIGLU && d->src[0] == a && d->src[1] == b)
            ++c.gate_up;
        if (a->op == GLM_OP_MOE_COMBINE && b->op == GLM_OP_ADD && b->src[1] == a) ++c.combine_add;
    }
    return c;
}

}  // namespace

TEST_CASE("graph order: every pattern the CUDA backend fuses stays consecutive") {
    for (const char* fixture : {"dense_moe", "index_cache"}) {
        LoadedModel m;
        std::unique_ptr<glm_backend> cpu = glm_backend_cpu_create(1);
        const Status st = load_model(source("tests/fixtures/") + fixture, "", cpu.get(), m);
        REQUIRE_MESSAGE(st.ok(), st.message());
        const ModelHparams& hp = m.hp;
        int indexer_layers = 0, moe_layers = 0;
        for (int64_t il = 0; il < hp.n_layer; ++il) {
            indexer_layers += hp.indexer_shared[size_t(il)] ? 0 : 1;
            moe_layers += m.tensors().layers[size_t(il)].is_moe() ? 1 : 0;
        }
        REQUIRE(moe_layers > 0);
        // one rank; two with copied caches; two with the cache split by position
        for (const int64_t n_tokens : {int64_t(1), int64_t(12)})
            for (const auto& [n_ranks, split] : {std::pair{1, false}, std::pair{2, false}, std::pair{2, true}}) {
                CAPTURE(fixture);
                CAPTURE(n_tokens);
                CAPTURE(n_ranks);
                CAPTURE(split);
                glm_context ctx;
                KvCache kv;
                kv.n_ctx = 64;
                kv.split = split;
                kv.n_slots = split ? kv.n_ctx / n_ranks : kv.n_ctx;
                for (int64_t il = 0; il <= hp.n_layer; ++il) {  // the MTP layer's cache at n_layer
                    kv.latent.push_back(ctx.new_tensor_2d(GLM_TYPE_F32, hp.kv_row(), kv.n_slots));
                    const bool shared = il < hp.n_layer && hp.indexer_shared[size_t(il)];
                    kv.index.push_back(shared ? nullptr : ctx.new_tensor_2d(GLM_TYPE_F32, hp.index_head_dim, kv.n_slots));
                }
                ForwardOptions opt;
                opt.n_ranks = n_ranks;
                // past the top-k, so F layers run the indexer (and, at two ranks with copied caches, a
                // prompt chunk its query blocks)
                const ForwardGraph fg = build_forward(ctx, hp, m.tensors(), kv, n_tokens, hp.index_topk + 5, opt);
                const PatternCounts c = count_patterns(fg.graph);
                CHECK(c.latent_row == hp.n_layer);
                CHECK(c.query == hp.n_layer);
                CHECK(c.index_key == indexer_layers);
                // every layer's two residual adds feed a norm (the next layer's, or the output norm)
                CHECK(c.add_norm == 2 * hp.n_layer);
                CHECK(c.route == moe_layers);
                CHECK(c.gate_up == (hp.n_layer - moe_layers) + 2 * moe_layers);  // dense MLP; experts + shared
                CHECK(c.combine_add == moe_layers);
                if (m.tensors().has_mtp) {  // the draft layer: one more layer's attention rows
                    glm_context mtp_ctx;
                    const ForwardGraph mtp = build_mtp(mtp_ctx, hp, m.tensors(), kv, n_tokens, hp.index_topk + 5, opt);
                    const PatternCounts cm = count_patterns(mtp.graph);
                    CHECK(cm.latent_row == 1);
                    CHECK(cm.query == 1);
                    CHECK(cm.index_key == 1);
                }
            }
    }
}
