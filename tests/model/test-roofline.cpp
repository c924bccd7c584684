// The decode roofline (bytes per token per rank) against performance.md's hand derivation for the
// full-size target, and the kernel-class grouping of profiled nodes, checked on real decode graphs
// where the weight each matrix product reads tells the right answer.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <memory>

#include "engine/config.h"
#include "engine/roofline.h"
#include "engine/weights.h"

namespace {

std::string source(const std::string& rel) { return std::string(GLMRUN_SOURCE_DIR) + "/" + rel; }

ModelHparams target_hparams(const std::string& index_pattern = "") {
    ModelConfig c;
    Status st = load_config(source("models/glm-5.1-reap-160"), c);
    REQUIRE_MESSAGE(st.ok(), st.message());
    ModelHparams hp;
    st = make_hparams(c, index_pattern, hp);
    REQUIRE_MESSAGE(st.ok(), st.message());
    return hp;
}

bool near(double got, double want, double rel) { return std::abs(got - want) <= rel * std::abs(want); }

}  // namespace

TEST_CASE("roofline: GLM-5.1 REAP-160 at TP4 reads performance.md's 15.3 GB of weights per rank") {
    const ModelHparams hp = target_hparams();
    RooflineParams p;
    p.n_ranks = 4;
    p.n_ctx = 4096;  // past top-k 2048: the whole indexer runs
    p.kv_type = GLM_TYPE_F8_E4M3;
    p.attn = AttnMode::dsa;
    const DecodeBytes b = decode_bytes_per_rank(hp, p);
    MESSAGE(fmt::format("TP4, 4k, DSA: weights {:.2f} GB (attention {:.2f} + indexer {:.2f}, MoE {:.2f}, dense {:.2f}, "
                        "lm_head {:.2f}), caches {:.3f} GB",
                        b.weights() / 1e9, b.attn_proj / 1e9, b.indexer / 1e9,
                        (b.router + b.routed_experts + b.shared_expert) / 1e9, b.dense_mlp / 1e9, b.lm_head / 1e9,
                        b.cache() / 1e9));
    // §5a scenario A ("as shipped": BF16 non-expert weights, q_a / kv_a / indexer replicated):
    //   attention 78 x [(12.6 + 3.5 + 9.4) M replicated + (33.6 + 14.7 + 100.7) M / 4] x 2 B = 9.78 GB
    //   MoE 75 x [8 x 37.7 M x 0.5625 B / 4 + 37.7 M x 2 B / 4 + router 6144 x 160 x 2 B] = 4.75 GB
    //   dense 3 x 226.5 M x 2 B / 4 = 0.34 GB, lm_head 951.6 M x 2 B / 4 = 0.48 GB; total 15.3 GB.
    CHECK(near(b.weights(), 15.3e9, 0.03));
    CHECK(near(b.attn_proj + b.indexer, 9.78e9, 0.02));
    CHECK(near(b.router + b.routed_experts + b.shared_expert, 4.75e9, 0.02));
    CHECK(near(b.dense_mlp, 0.34e9, 0.02));
    CHECK(near(b.lm_head, 0.476e9, 0.01));
    CHECK(b.embedding == 6144 * 2);
    // DSA past top-k: 2048 latent rows of 576 FP8 bytes on all 78 layers, plus every indexer key.
    CHECK(b.kv_latent == doctest::Approx(78.0 * 2048 * 576));
    CHECK(b.kv_index == doctest::Approx(78.0 * 4096 * 128));
    CHECK(roofline_tok_s(b, 3.35e12) == doctest::Approx(3.35e12 / b.total()));

    // One rank holds everything split four ways on four ranks: more bytes, never fewer.
    p.n_ranks = 1;
    CHECK(decode_bytes_per_rank(hp, p).weights() > 2.5 * b.weights());
}

TEST_CASE("roofline: context, attention mode and the index pattern move the cache bytes") {
    RooflineParams p;
    p.n_ranks = 4;
    p.kv_type = GLM_TYPE_F8_E4M3;
    const ModelHparams hp = target_hparams();

    // Dense MLA reads every row: 128k x 576 B x 78 layers = 5.89 GB (performance.md §3a).
    p.attn = AttnMode::dense;
    p.n_ctx = 131072;
    const DecodeBytes dense = decode_bytes_per_rank(hp, p);
    CHECK(near(dense.kv_latent, 5.89e9, 0.01));
    CHECK(dense.kv_index == 0);

    // DSA: 2048 rows + 128k indexer keys (§3a: 1.45 GB with FP8 scales, 1.40 GB without).
    p.attn = AttnMode::dsa;
    const DecodeBytes dsa = decode_bytes_per_rank(hp, p);
    CHECK(near(dsa.cache(), 1.40e9, 0.02));
    CHECK(dsa.indexer > dense.indexer);  // the query side of the indexer runs only with top-k

    // Short context: everything is selected, no top-k, no key scan.
    p.n_ctx = 256;
    const DecodeBytes short_ctx = decode_bytes_per_rank(hp, p);
    CHECK(short_ctx.kv_index == 0);
    CHECK(short_ctx.kv_latent == doctest::Approx(78.0 * 256 * 576));
    CHECK(short_ctx.indexer == doctest::Approx(78.0 * 128 * 6144 * 2));  // wk only: keys are stored

    // IndexCache: the published GLM-5 greedy pattern keeps 45 of 78 indexers.
    const std::string pattern = "FFSFSSSFSSFFFSSSFFFSFSSSSSSFFSFFSFFSSFFFFFFSFFFFFSFFSSSSSSFSFFFSFSSSFSFFSFFSSS";
    const ModelHparams ic = target_hparams(pattern);
    int64_t n_full = 0;
    for (bool s : ic.indexer_shared) n_full += !s;
    p.n_ctx = 131072;
    const DecodeBytes with_ic = decode_bytes_per_rank(ic, p);
    CHECK(with_ic.kv_index == doctest::Approx(double(n_full) * 131072 * 128));
    CHECK(with_ic.kv_latent == dsa.kv_latent);
    CHECK(with_ic.indexer < dsa.indexer);
}

TEST_CASE("kernel classes: representative node names and ops") {
    struct Case {
        const char* name;
        glm_op op;
        KernelClass want;
    };
    const Case cases[] = {
        {"blk.5.attn_out", GLM_OP_MUL_MAT, KernelClass::attn_proj},
        {"blk.5.q_a", GLM_OP_MUL_MAT, KernelClass::attn_proj},
        {"blk.5.attn_lat", GLM_OP_ATTN, KernelClass::mla_core},
        {"blk.5.index_scores", GLM_OP_INDEXER, KernelClass::indexer},
        {"blk.5.index_topk", GLM_OP_TOP_K, KernelClass::indexer},
        {"mul_mat_id", GLM_OP_MUL_MAT_ID, KernelClass::routed_experts},
        {"blk.5.expert_ids", GLM_OP_MOE_SELECT, KernelClass::routed_experts},
        {"blk.5.moe_routed", GLM_OP_MOE_COMBINE, KernelClass::routed_experts},
        {"blk.2.ffn_out", GLM_OP_MUL_MAT, KernelClass::shared_mlp},
        {"blk.5.shexp_down", GLM_OP_MUL_MAT, KernelClass::shared_mlp},
        {"all_reduce", GLM_OP_ALL_REDUCE, KernelClass::all_reduce},
        {"logits", GLM_OP_MUL_MAT, KernelClass::lm_head},
        {"argmax", GLM_OP_ARGMAX, KernelClass::lm_head},
        {"blk.5.attn_norm", GLM_OP_RMS_NORM, KernelClass::elementwise},
        {"blk.5.q_rot", GLM_OP_ROPE, KernelClass::elementwise},
        {"blk.5.out", GLM_OP_ADD, KernelClass::elementwise},
        {"tok_embd_out", GLM_OP_GET_ROWS, KernelClass::elementwise},
        {"mul_mat", GLM_OP_MUL_MAT, KernelClass::other},  // alone, an unnamed product says nothing
        {"x (view)", GLM_OP_VIEW, KernelClass::other},
    };
    for (const Case& c : cases) {
        CAPTURE(c.name);
        CHECK(std::string(kernel_class_name(classify_node(c.name, c.op))) == kernel_class_name(c.want));
    }
    // In a sequence the consumer names the product.
    const std::vector<glm_node_time> seq = {
        {"mul_mat", GLM_OP_MUL_MAT, 10}, {"blk.1.q_resid", GLM_OP_RMS_NORM, 1},
        {"mul_mat", GLM_OP_MUL_MAT, 20}, {"layer_norm", GLM_OP_LAYER_NORM, 1},
        {"mul_mat", GLM_OP_MUL_MAT, 30}, {"swiglu", GLM_OP_SWIGLU, 1}, {"mul_mat", GLM_OP_MUL_MAT, 40},
        {"blk.1.ffn_out", GLM_OP_ADD, 1},
    };
    const KernelTimes t = sum_profile(seq);
    CHECK(t.us[int(KernelClass::attn_proj)] == 10);
    CHECK(t.us[int(KernelClass::indexer)] == 20);
    CHECK(t.us[int(KernelClass::shared_mlp)] == 70);
    CHECK(t.us[int(KernelClass::elementwise)] == 4);
    CHECK(t.total_us() == 104);
}

TEST_CASE("kernel classes: every matrix product of real decode graphs lands in its weight's class") {
    for (const char* fixture : {"dense_moe", "index_cache"}) {
        for (const int combo : {0, 1, 2, 3, 4, 5, 6, 7, 12, 13}) {
            // past top-k or not, every node or kernels only, one rank or a rank of two (the graph
            // then all-reduces the o_proj and feed-forward partial sums and ends in max_arg), and
            // the profile a fusing tensor-parallel CUDA run gives: no all-reduce entries (the
            // communicator runs outside the node loop), a fused group timed under its first node.
            const bool past_topk = combo & 1, drop_views = combo & 2, two_ranks = combo & 4, fused = combo & 8;
            CAPTURE(fused);
            CAPTURE(fixture);
            CAPTURE(past_topk);
            CAPTURE(drop_views);
            CAPTURE(two_ranks);
            LoadedModel m;
            std::unique_ptr<glm_backend> cpu = glm_backend_cpu_create(1);
            Status st = load_model(source("tests/fixtures/") + fixture, "", cpu.get(), m);
            REQUIRE_MESSAGE(st.ok(), st.message());
            const ModelHparams& hp = m.hp;

            // What each weight is, from the model's own tensors.
            std::map<const glm_tensor*, KernelClass> truth;
            truth[m.tensors().lm_head] = KernelClass::lm_head;
            for (const LayerTensors& L : m.tensors().layers) {
                for (glm_tensor* w : {L.q_a, L.q_b, L.kv_a, L.kv_b, L.o}) truth[w] = KernelClass::attn_proj;
                for (glm_tensor* w : {L.x_proj, L.q_proj})  // stacked products: mostly attention bytes
                    if (w) truth[w] = KernelClass::attn_proj;
                for (glm_tensor* w : {L.idx_wq_b, L.idx_wk, L.idx_weights})
                    if (w) truth[w] = KernelClass::indexer;
                for (glm_tensor* w : {L.ffn_gate, L.ffn_up, L.ffn_down, L.shexp_gate, L.shexp_up, L.shexp_down})
                    if (w) truth[w] = KernelClass::shared_mlp;
                if (L.router) truth[L.router] = KernelClass::routed_experts;
            }

            glm_context ctx;
            KvCache kv;
            kv.n_ctx = 64;
            for (int64_t il = 0; il < hp.n_layer; ++il) {
                kv.latent.push_back(ctx.new_tensor_2d(GLM_TYPE_F32, hp.kv_row(), kv.n_ctx));
                kv.index.push_back(hp.indexer_shared[size_t(il)]
                                       ? nullptr
                                       : ctx.new_tensor_2d(GLM_TYPE_F32, hp.index_head_dim, kv.n_ctx));
            }
            const int64_t n_past = past_topk ? hp.index_topk + 5 : 2;
            ForwardOptions opt;
            opt.n_ranks = two_ranks ? 2 : 1;
            opt.max_arg = two_ranks;
            ForwardGraph fg = build_forward(ctx, hp, m.tensors(), kv, 1, n_past, opt);

            std::vector<glm_node_time> profile;
            std::vector<const glm_tensor*> node_of;
            const std::vector<glm_tensor*>& nodes = fg.graph.nodes;
            for (size_t j = 0; j < nodes.size(); ++j) {
                const glm_tensor* n = nodes[j];
                if (drop_views && n->op == GLM_OP_VIEW) continue;  // a backend may time kernels only
                if (fused) {
                    const glm_tensor* next = j + 1 < nodes.size() ? nodes[j + 1] : nullptr;
                    const bool inner = n->op == GLM_OP_SWIGLU || n->op == GLM_OP_MOE_SELECT ||
                                       n->op == GLM_OP_MOE_WEIGHTS || n->op == GLM_OP_ALL_REDUCE ||
                                       (n->op == GLM_OP_RMS_NORM && j > 0 && nodes[j - 1]->op == GLM_OP_ADD) ||
                                       (next && next->op == GLM_OP_SWIGLU && next->src[1] == n);
                    if (inner) continue;
                }
                profile.push_back({n->name, n->op, 1.0});
                node_of.push_back(n);
            }
            const std::vector<KernelClass> got = classify_profile(profile);
            int products = 0, indexer_products = 0, reduces = 0;
            for (size_t i = 0; i < profile.size(); ++i) {
                if (profile[i].op == GLM_OP_ALL_REDUCE) {
                    CHECK(got[i] == KernelClass::all_reduce);
                    ++reduces;
                }
                if (profile[i].op == GLM_OP_MAX_ARG) CHECK(got[i] == KernelClass::lm_head);
                if (profile[i].op != GLM_OP_MUL_MAT) continue;
                const glm_tensor* w = node_of[i]->src[0];
                while (w->op == GLM_OP_VIEW) w = w->src[0];
                auto it = truth.find(w);
                REQUIRE_MESSAGE(it != truth.end(), "product of an unknown weight: " << w->name);
                CAPTURE(w->name);
                CHECK(std::string(kernel_class_name(got[i])) == kernel_class_name(it->second));
                ++products;
                indexer_products += it->second == KernelClass::indexer;
            }
            CHECK(products > 0);
            // The indexer's products are separate only where the loader could not stack them with q_a / q_b.
            const bool stacked = m.tensors().layers.front().x_proj != nullptr;
            CHECK(stacked == (indexer_products == 0));
            CHECK(reduces == (two_ranks && !fused ? 2 * hp.n_layer : 0));
        }
    }
}
