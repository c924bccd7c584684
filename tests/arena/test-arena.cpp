// The arena planner (ggml-like/arena.h) on graphs of several shapes: a chain, a diamond, many
// parallel branches, views and in-place writes into caches that live in their own buffer, an
// output in the middle of the graph, and random DAGs. For each graph:
//  - tensors whose lifetimes overlap (computed here independently of the planner) get disjoint
//    byte ranges, every tensor that needs arena space has exactly one aligned slot of at least its
//    size, outputs stay alive to the end, and the peak equals max(offset + size);
//  - computing the graph in an arena of exactly plan.size (filled with NaN garbage first) gives
//    bit-identical outputs and caches to computing it with every tensor in its own buffer.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <unordered_map>
#include <vector>

#include "ggml-like/arena.h"
#include "ggml-like/backend.h"

namespace {

struct Net {
    explicit Net(uint32_t seed) : rng(seed) {}
    glm_context ctx;
    glm_graph graph;
    std::mt19937 rng;
    std::vector<glm_tensor*> weights, caches;       // placed in their own buffers before planning
    std::vector<glm_tensor*> outputs;               // GLM_FLAG_OUTPUT
    std::unordered_map<const glm_tensor*, std::vector<uint8_t>> host;  // every leaf's bytes

    glm_tensor* leaf(glm_type type, int64_t ne0, int64_t ne1, float scale = 1.0f) {
        glm_tensor* t = ctx.new_tensor_2d(type, ne0, ne1);
        t->name = "leaf" + std::to_string(host.size());
        std::vector<uint8_t>& b = host[t];
        b.resize(glm_nbytes(t));
        std::normal_distribution<float> nd(0.0f, scale);
        std::vector<float> v(size_t(ne0 * ne1));
        for (float& x : v) x = nd(rng);
        glm_row_from_f32(type, v.data(), b.data(), ne0 * ne1);  // input generation only
        return t;
    }
    glm_tensor* input(int64_t ne0, int64_t ne1) {
        glm_tensor* t = leaf(GLM_TYPE_F32, ne0, ne1);
        t->flags |= GLM_FLAG_INPUT;
        return t;
    }
    glm_tensor* weight(int64_t in, int64_t out) {
        glm_tensor* t = leaf(GLM_TYPE_BF16, in, out, 0.3f);
        t->flags |= GLM_FLAG_WEIGHT;
        weights.push_back(t);
        return t;
    }
    glm_tensor* cache(glm_type type, int64_t ne0, int64_t ne1) {
        glm_tensor* t = leaf(type, ne0, ne1);
        caches.push_back(t);
        return t;
    }
    glm_tensor* ids(const std::vector<int32_t>& v) {
        glm_tensor* t = ctx.new_tensor_1d(GLM_TYPE_I32, int64_t(v.size()));
        t->flags |= GLM_FLAG_INPUT;
        host[t].resize(v.size() * 4);
        std::memcpy(host[t].data(), v.data(), v.size() * 4);
        return t;
    }
    glm_tensor* output(glm_tensor* t) {
        t->flags |= GLM_FLAG_OUTPUT;
        outputs.push_back(t);
        return t;
    }
};

using Builder = std::function<void(Net&)>;

// ---- graphs ---------------------------------------------------------------------------------
void chain(Net& n) {
    const int64_t sizes[] = {24, 40, 8, 33, 16, 64, 5, 24, 12};
    glm_tensor* h = n.input(24, 3);
    for (int i = 0; i + 1 < 9; ++i) {
        h = glm_silu(n.ctx, glm_mul_mat(n.ctx, n.weight(sizes[i], sizes[i + 1]), h));
        if (i % 2) h = glm_add(n.ctx, h, glm_scale(n.ctx, h, 0.5f));
    }
    glm_graph_expand(n.graph, n.output(h));
}

void diamond(Net& n) {
    glm_tensor* x = n.input(30, 4);
    glm_tensor* a = glm_silu(n.ctx, x);
    glm_tensor* b = glm_sigmoid(n.ctx, x);
    glm_tensor* c = glm_mul(n.ctx, a, b);
    glm_tensor* d = glm_add(n.ctx, c, x);
    glm_tensor* e = glm_soft_max(n.ctx, d, 1.0f);
    glm_graph_expand(n.graph, n.output(glm_add(n.ctx, e, a)));  // a lives across the whole diamond
}

void parallel_branches(Net& n) {
    glm_tensor* x = n.input(20, 3);
    std::vector<glm_tensor*> branches;
    for (int i = 0; i < 8; ++i) {
        glm_tensor* up = glm_silu(n.ctx, glm_mul_mat(n.ctx, n.weight(20, 16 + 4 * i), x));
        glm_tensor* down = glm_mul_mat(n.ctx, n.weight(16 + 4 * i, 20), up);
        branches.push_back(down);
        glm_graph_expand(n.graph, down);  // every branch computed before any is summed
    }
    glm_tensor* sum = branches[0];
    for (int i = 1; i < 8; ++i) sum = glm_add(n.ctx, sum, branches[size_t(i)]);
    glm_graph_expand(n.graph, n.output(sum));
}

void views_and_caches(Net& n) {
    const int64_t T = 10, S = 3, H = 2, Dk = 16, Dv = 8, D = 12;
    glm_tensor* kcache = n.cache(GLM_TYPE_BF16, Dk, T);
    glm_tensor* vcache = n.cache(GLM_TYPE_F32, Dv, T);
    glm_tensor* x = n.input(D, S);
    // an output in the middle that nothing reads afterwards: its bytes must survive to the end
    glm_graph_expand(n.graph, n.output(glm_rms_norm(n.ctx, glm_silu(n.ctx, x), nullptr, 1e-6f)));
    glm_tensor* k = glm_mul_mat(n.ctx, n.weight(D, Dk), x);
    glm_tensor* kc = glm_set_rows(n.ctx, kcache, k, n.ids({7, 2, 9}));
    glm_graph_expand(n.graph, kc);
    glm_tensor* v = glm_mul_mat(n.ctx, n.weight(D, Dv), x);
    glm_tensor* vdst = glm_view_2d(n.ctx, vcache, Dv, S, vcache->nb[1], 7 * vcache->nb[1]);  // rows 7..9
    glm_graph_expand(n.graph, glm_cpy(n.ctx, v, vdst));
    glm_tensor* q = glm_reshape_3d(n.ctx, glm_mul_mat(n.ctx, n.weight(D, Dk * H), x), Dk, H, S);
    glm_tensor* kv = glm_view_3d(n.ctx, kc, Dk, 1, T, kcache->nb[1], kcache->nb[1], 0);
    glm_tensor* vv = glm_view_3d(n.ctx, vcache, Dv, 1, T, vcache->nb[1], vcache->nb[1], 0);
    glm_tensor* att = glm_attn(n.ctx, q, kv, vv, n.ids({7, 8, 9}), nullptr, 0.25f);
    glm_tensor* o = glm_mul_mat(n.ctx, n.weight(Dv * H, D), glm_reshape_2d(n.ctx, att, Dv * H, S));
    // a permuted view consumed by cont, then more work that could reuse freed bytes
    glm_tensor* p = glm_cont(n.ctx, glm_transpose(n.ctx, o));
    glm_tensor* r = glm_add(n.ctx, o, glm_scale(n.ctx, x, 2.0f));
    glm_graph_expand(n.graph, n.output(p));
    glm_graph_expand(n.graph, n.output(glm_swiglu(n.ctx, r, glm_sigmoid(n.ctx, r))));
}

Builder random_dag(uint32_t seed) {
    return [seed](Net& n) {
        std::mt19937 g(seed);
        const int64_t sizes[] = {5, 16, 33, 64, 100};
        struct Node { glm_tensor* t; int64_t m; };
        std::vector<Node> nodes;
        nodes.push_back({n.input(33, 3), 33});
        nodes.push_back({n.input(5, 3), 5});
        for (int i = 0; i < 40; ++i) {
            const Node& a = nodes[g() % nodes.size()];
            glm_tensor* t = nullptr;
            int64_t m = a.m;
            switch (g() % 4) {
                case 0: t = glm_silu(n.ctx, a.t); break;
                case 1: {
                    std::vector<const Node*> same;
                    for (const Node& b : nodes)
                        if (b.m == a.m) same.push_back(&b);
                    t = glm_add(n.ctx, a.t, same[g() % same.size()]->t);
                    break;
                }
                default:
                    m = sizes[g() % 5];
                    t = glm_mul_mat(n.ctx, n.weight(a.m, m), a.t);
            }
            if (g() % 8 == 0) n.output(t);
            glm_graph_expand(n.graph, t);  // creation order is execution order; some nodes are dead
            nodes.push_back({t, m});
        }
        glm_graph_expand(n.graph, n.output(nodes.back().t));
    };
}

// ---- placement helpers ------------------------------------------------------------------------
void upload(glm_backend& be, Net& n) {
    for (glm_tensor* leaf : n.graph.leafs) be.tensor_set(leaf, n.host.at(leaf).data(), 0, n.host.at(leaf).size());
}

void place_fixed(glm_backend& be, Net& n) {
    std::vector<glm_tensor*> fixed = n.weights;
    fixed.insert(fixed.end(), n.caches.begin(), n.caches.end());
    for (glm_tensor* t : fixed) {
        glm_buffer* buf = nullptr;
        REQUIRE(be.alloc_buffer(glm_nbytes(t), t->name, &buf).ok());
        glm_place(t, buf, 0);
    }
}

std::map<std::string, std::vector<uint8_t>> results(glm_backend& be, Net& n) {
    std::map<std::string, std::vector<uint8_t>> r;
    int i = 0;
    for (glm_tensor* t : n.outputs) {
        std::vector<uint8_t>& b = r["out" + std::to_string(i++)];
        b.resize(glm_nbytes(t));
        be.tensor_get(t, b.data(), 0, b.size());
    }
    for (glm_tensor* t : n.caches) {
        std::vector<uint8_t>& b = r[t->name];
        b.resize(glm_nbytes(t));
        be.tensor_get(t, b.data(), 0, b.size());
    }
    return r;
}

// Independent liveness: a tensor owning arena bytes is alive from its producer (-1 for leaves) to
// the last node that reads it or writes into it, directly or through a view; outputs (and roots of
// output views) to the end of the graph.
struct Life { int first, last; };
std::unordered_map<const glm_tensor*, Life> lifetimes(const glm_graph& g) {
    std::unordered_map<const glm_tensor*, Life> life;
    const int n = int(g.nodes.size());
    for (const glm_tensor* l : g.leafs) life[l] = {-1, -1};
    for (int i = 0; i < n; ++i) {
        glm_tensor* node = g.nodes[size_t(i)];
        if (!node->view_src) life[node] = {i, i};
    }
    auto use = [&](glm_tensor* t, int i) {
        glm_tensor* root = glm_view_root(t);
        auto it = life.find(root);
        REQUIRE(it != life.end());
        it->second.last = std::max(it->second.last, i);
        if (t->flags & GLM_FLAG_OUTPUT) it->second.last = n;
    };
    for (int i = 0; i < n; ++i) {
        glm_tensor* node = g.nodes[size_t(i)];
        use(node, i);
        for (glm_tensor* s : node->src)
            if (s) use(s, i);
    }
    return life;
}

void check_plan(const Net& n) {
    const glm_graph& g = n.graph;
    const glm_arena_plan plan = glm_arena_measure(g);
    const auto life = lifetimes(g);
    const int n_nodes = int(g.nodes.size());

    // Which tensors need a slot: unplaced leaves and computed tensors that own their bytes.
    std::vector<const glm_tensor*> need;
    for (const glm_tensor* l : g.leafs)
        if (!l->buffer) need.push_back(l);
    for (const glm_tensor* t : g.nodes)
        if (!t->view_src && t->op != GLM_OP_VIEW) need.push_back(t);
    std::map<const glm_tensor*, int> count;
    for (const glm_arena_slot& s : plan.slots) ++count[s.tensor];
    for (const glm_tensor* t : need) {
        CAPTURE(t->name);
        CHECK(count[t] == 1);
    }
    CHECK(plan.slots.size() == need.size());

    size_t peak = 0;
    for (const glm_arena_slot& s : plan.slots) {
        CAPTURE(s.tensor->name);
        CHECK(s.offset % GLM_ARENA_ALIGN == 0);
        CHECK(s.size >= glm_nbytes(s.tensor));
        peak = std::max(peak, s.offset + s.size);
        const Life l = life.at(s.tensor);
        CHECK(s.first_node <= std::max(l.first, -1));
        if (s.tensor->op != GLM_OP_NONE) CHECK(s.first_node == l.first);
        CHECK(s.last_node >= l.last);
        if (s.tensor->flags & GLM_FLAG_OUTPUT) CHECK(s.last_node == n_nodes);
    }
    CHECK(plan.size == peak);

    // Overlap: lifetimes (ours, and the planner's own) intersect => byte ranges are disjoint.
    int overlapping_pairs = 0;
    for (size_t i = 0; i < plan.slots.size(); ++i)
        for (size_t j = i + 1; j < plan.slots.size(); ++j) {
            const glm_arena_slot &a = plan.slots[i], &b = plan.slots[j];
            const Life la = life.at(a.tensor), lb = life.at(b.tensor);
            const bool ours = std::max(la.first, lb.first) <= std::min(la.last, lb.last);
            const bool theirs = std::max(a.first_node, b.first_node) <= std::min(a.last_node, b.last_node);
            if (!ours && !theirs) continue;
            ++overlapping_pairs;
            const bool disjoint = a.offset + a.size <= b.offset || b.offset + b.size <= a.offset;
            CAPTURE(a.tensor->name);
            CAPTURE(b.tensor->name);
            CHECK(disjoint);
        }
    CHECK(overlapping_pairs > 0);
}

void check_graph(const Builder& build, uint32_t seed) {
    auto be = glm_backend_cpu_create(2);

    // (1) the planned arena, exactly plan.size bytes, prefilled with 0xff (NaN) garbage.
    Net a(seed);
    build(a);
    place_fixed(*be, a);
    check_plan(a);
    const glm_arena_plan plan = glm_arena_measure(a.graph);
    glm_buffer* arena = nullptr;
    REQUIRE(be->alloc_buffer(plan.size, "activations", &arena).ok());
    be->buffer_clear(arena, 0xff);
    glm_arena_allocate(a.graph, arena);
    upload(*be, a);
    REQUIRE(be->graph_compute(a.graph).ok());
    const auto got = results(*be, a);

    // (2) the same graph with every tensor in its own buffer.
    Net b(seed);
    build(b);
    place_fixed(*be, b);
    for (glm_tensor* t : b.graph.leafs) {
        if (t->buffer) continue;
        glm_buffer* buf = nullptr;
        REQUIRE(be->alloc_buffer(glm_nbytes(t), t->name, &buf).ok());
        glm_place(t, buf, 0);
    }
    for (glm_tensor* t : b.graph.nodes) {
        if (t->view_src) continue;
        glm_buffer* buf = nullptr;
        REQUIRE(be->alloc_buffer(glm_nbytes(t), t->name, &buf).ok());
        glm_place(t, buf, 0);
    }
    glm_graph_resolve_views(b.graph);
    upload(*be, b);
    REQUIRE(be->graph_compute(b.graph).ok());
    const auto want = results(*be, b);

    REQUIRE(got.size() == want.size());
    for (const auto& [name, bytes] : want) {
        CAPTURE(name);
        CHECK(got.at(name) == bytes);
    }
}

}  // namespace

TEST_CASE("arena: chain") { check_graph(chain, 1); }
TEST_CASE("arena: diamond") { check_graph(diamond, 2); }
TEST_CASE("arena: parallel branches") { check_graph(parallel_branches, 3); }
TEST_CASE("arena: views, set_rows and cpy into caches, output in the middle") { check_graph(views_and_caches, 4); }
TEST_CASE("arena: random DAGs") {
    for (uint32_t seed = 10; seed < 16; ++seed) {
        CAPTURE(seed);
        check_graph(random_dag(seed * 7919u), seed);
    }
}

TEST_CASE("arena: a slot is reused only two nodes after its last reader") {
    // x -> a -> b -> c -> d -> e. A backend may run up to three consecutive nodes as one kernel, so
    // x (last read by a, node 0) must stay intact while b and c are written, and a (last read by b)
    // while c and d are; after that their bytes are reused.
    Net n(5);
    glm_tensor* x = n.input(64, 4);
    glm_tensor* a = glm_silu(n.ctx, x);
    glm_tensor* b = glm_sigmoid(n.ctx, a);
    glm_tensor* c = glm_scale(n.ctx, b, 2.0f);
    glm_tensor* d = glm_silu(n.ctx, c);
    glm_tensor* e = glm_sigmoid(n.ctx, d);
    glm_graph_expand(n.graph, n.output(e));
    const glm_arena_plan plan = glm_arena_measure(n.graph);
    std::map<const glm_tensor*, glm_arena_slot> by;
    for (const glm_arena_slot& s : plan.slots) by[s.tensor] = s;
    auto overlap = [&](const glm_tensor* p, const glm_tensor* q) {
        const glm_arena_slot &u = by.at(p), &v = by.at(q);
        return u.offset < v.offset + v.size && v.offset < u.offset + u.size;
    };
    CHECK(!overlap(x, a));
    CHECK(!overlap(x, b));
    CHECK(!overlap(x, c));
    CHECK(!overlap(a, c));
    CHECK(!overlap(a, d));
    CHECK(by.at(e).last_node == int(n.graph.nodes.size()));
    // d takes x's bytes and e takes a's: four slots at the peak, not six.
    CHECK(overlap(d, x));
    CHECK(plan.size <= 4 * by.at(a).size);
}

TEST_CASE("arena: a graph placed as its end-of-context reference fits and keeps live tensors apart") {
    // One builder, an intermediate whose size follows the context length T (like the indexer's
    // scores): every graph(T) placed by graph(T_max)'s plan fits that plan's size, each tensor at its
    // match's offset, and tensors alive at the same time (graph(T)'s own liveness) never share bytes.
    auto build = [](Net& n, int64_t T) {
        glm_tensor* x = n.input(64, 4);
        glm_tensor* a = glm_silu(n.ctx, x);
        glm_tensor* s = glm_mul_mat(n.ctx, n.weight(64, T), a);  // [T, 4]
        glm_tensor* y = glm_mul_mat(n.ctx, n.weight(T, 64), glm_sigmoid(n.ctx, s));
        glm_tensor* z = glm_add(n.ctx, glm_scale(n.ctx, y, 0.5f), a);
        glm_graph_expand(n.graph, n.output(glm_silu(n.ctx, z)));
    };
    auto be = glm_backend_cpu_create(1);
    Net ref(7);
    build(ref, 4096);
    place_fixed(*be, ref);
    const glm_arena_plan ref_plan = glm_arena_measure(ref.graph);
    glm_buffer* arena = nullptr;
    REQUIRE(be->alloc_buffer(ref_plan.size, "activations", &arena).ok());
    for (int64_t T : {1, 7, 100, 1000, 4095}) {
        CAPTURE(T);
        Net n(7);
        build(n, T);
        place_fixed(*be, n);
        glm_arena_allocate_as(n.graph, ref.graph, ref_plan, arena);
        const glm_arena_plan own = glm_arena_measure(n.graph);  // liveness of this graph
        for (size_t i = 0; i < own.slots.size(); ++i) {
            const glm_arena_slot& u = own.slots[i];
            CHECK(u.tensor->buffer == arena);
            CHECK(u.tensor->offset + glm_nbytes(u.tensor) <= arena->size);
            for (size_t j = i + 1; j < own.slots.size(); ++j) {
                const glm_arena_slot& v = own.slots[j];
                const bool live_together = u.first_node <= v.last_node + 2 && v.first_node <= u.last_node + 2;
                const bool disjoint = u.tensor->offset + glm_nbytes(u.tensor) <= v.tensor->offset ||
                                      v.tensor->offset + glm_nbytes(v.tensor) <= u.tensor->offset;
                if (live_together) CHECK(disjoint);
            }
        }
    }
}
