// CUDA graph recording on the CUDA backend: a decode-shaped op graph (DSA indexer -> top_k bounded
// by q_pos -> MQA attention over the selected keys) built once over caches of T = 6000 rows is
// captured once and replayed at many positions, the position living in device memory (the I32
// input q_pos, written before each replay). Each replay must give exactly what an eager run of
// the same graph gives, and the CPU reference what it gives; then 1000 replays with a changing
// q_pos. Also: the capture API's misuse comes back as a Status, and profiling times every node.
//
// The indexer inputs are small integers (q, k in [-32, 32], weights 1..4, scale 1/4), so every
// score is exact in f32 on both backends (even on the tensor cores, whose q split into bf16 hi + lo
// then has lo = 0): scores and top-k ids are compared exactly, ties included (tensor.h defines
// them: the lower index first).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>

#include "cuda-test-util.h"
#include "ggml-like/arena.h"
#include "op-cases.h"

namespace {

constexpr int64_t kT = 6000;  // cache rows (the graph's n_ctx)
constexpr int64_t kS = 2;     // queries per step (q_pos = {p - 1, p})
constexpr int64_t kD = 128, kHi = 32;               // indexer
constexpr int64_t kDk = 576, kDv = 512, kH = 16;    // absorbed MLA
constexpr int kTopK = 2048;
// The CUDA tensor-core MQA path rounds q and P to bf16 (op-cases.cpp, TOL_ATTN_TC).
constexpr optest::Tolerance kAttnTol{3e-5, INFINITY};

// Host bytes of the graph's leaves, made once: every backend gets the same ones.
struct Inputs {
    std::vector<float> q_idx, w, q;
    std::vector<uint16_t> k_idx, cache;  // bf16
};

uint16_t to_bf16(float f) {  // round to nearest even (inputs are finite)
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

Inputs make_inputs() {
    Inputs in;
    std::mt19937_64 gen(20240611);
    std::uniform_int_distribution<int> small(-32, 32), weight(1, 4);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (int64_t i = 0; i < kD * kHi * kS; ++i) in.q_idx.push_back(float(small(gen)));
    for (int64_t i = 0; i < kD * kT; ++i) in.k_idx.push_back(to_bf16(float(small(gen))));
    for (int64_t i = 0; i < kHi * kS; ++i) in.w.push_back(float(weight(gen)));
    for (int64_t i = 0; i < kDk * kH * kS; ++i) in.q.push_back(normal(gen));
    for (int64_t i = 0; i < kDk * kT; ++i) in.cache.push_back(to_bf16(normal(gen)));
    return in;
}

// The graph on one backend: caches and the per-step activations that this test keeps fixed (q,
// indexer q and weights) in their own buffer, so the arena cannot reuse their bytes after their last
// reader; q_pos (the one input written before every run) and the intermediates in an arena sized
// by the planner.
struct DecodeGraph {
    glm_backend* backend = nullptr;
    glm_context ctx;
    glm_graph graph;
    glm_tensor *q_idx, *k_idx, *w, *q, *cache, *q_pos;
    glm_tensor *scores, *ids, *out;
    glm_buffer *fixed = nullptr, *arena = nullptr;

    DecodeGraph(glm_backend& b, const Inputs& in) : backend(&b) {
        q_idx = glm_set_name(ctx.new_tensor_3d(GLM_TYPE_F32, kD, kHi, kS), "q_idx");
        k_idx = glm_set_name(ctx.new_tensor_2d(GLM_TYPE_BF16, kD, kT), "k_idx_cache");
        w = glm_set_name(ctx.new_tensor_2d(GLM_TYPE_F32, kHi, kS), "idx_weights");
        q = glm_set_name(ctx.new_tensor_3d(GLM_TYPE_F32, kDk, kH, kS), "q_absorbed");
        cache = glm_set_name(ctx.new_tensor_2d(GLM_TYPE_BF16, kDk, kT), "latent_cache");
        q_pos = glm_set_name(ctx.new_tensor_1d(GLM_TYPE_I32, kS), "q_pos");
        q_pos->flags |= GLM_FLAG_INPUT;
        scores = glm_set_name(glm_indexer(ctx, q_idx, k_idx, w, q_pos, 0.25f), "idx_scores");
        ids = glm_set_name(glm_top_k_by_index(ctx, scores, kTopK, q_pos), "top_k");  // as the engine
        glm_tensor* k = glm_set_name(glm_view_3d(ctx, cache, kDk, 1, kT, cache->nb[1], cache->nb[1], 0), "k_view");
        glm_tensor* v = glm_set_name(glm_view_3d(ctx, cache, kDv, 1, kT, cache->nb[1], cache->nb[1], 0), "v_view");
        out = glm_set_name(glm_attn(ctx, q, k, v, q_pos, ids, float(1.0 / std::sqrt(double(kDk)))), "attn_out");
        for (glm_tensor* t : {scores, ids, out}) t->flags |= GLM_FLAG_OUTPUT;
        glm_graph_expand(graph, out);

        size_t fixed_bytes = 0;
        for (glm_tensor* t : {k_idx, cache, q_idx, w, q}) fixed_bytes += (glm_nbytes(t) + 255) / 256 * 256;
        REQUIRE(b.alloc_buffer(fixed_bytes, "fixed", &fixed).ok());
        size_t offset = 0;
        for (glm_tensor* t : {k_idx, cache, q_idx, w, q}) {
            glm_place(t, fixed, offset);
            offset += (glm_nbytes(t) + 255) / 256 * 256;
        }
        const glm_arena_plan plan = glm_arena_measure(graph);
        REQUIRE(b.alloc_buffer(std::max<size_t>(plan.size, 1), "activations", &arena).ok());
        glm_arena_allocate(graph, arena);
        glm_graph_resolve_views(graph);

        b.tensor_set(q_idx, in.q_idx.data(), 0, glm_nbytes(q_idx));
        b.tensor_set(k_idx, in.k_idx.data(), 0, glm_nbytes(k_idx));
        b.tensor_set(w, in.w.data(), 0, glm_nbytes(w));
        b.tensor_set(q, in.q.data(), 0, glm_nbytes(q));
        b.tensor_set(cache, in.cache.data(), 0, glm_nbytes(cache));
        set_pos(0);
        b.synchronize();
    }

    void set_pos(int32_t p) {
        const int32_t pos[kS] = {p - 1, p};
        backend->tensor_set(q_pos, pos, 0, sizeof(pos));
    }

    template <typename T>
    std::vector<T> read(const glm_tensor* t) const {
        std::vector<T> v(glm_nbytes(t) / sizeof(T));
        backend->tensor_get(t, v.data(), 0, glm_nbytes(t));
        return v;
    }
};

struct Outputs {
    std::vector<float> scores, out;
    std::vector<int32_t> ids;
};

Outputs read_outputs(const DecodeGraph& g) {
    return {g.read<float>(g.scores), g.read<float>(g.out), g.read<int32_t>(g.ids)};
}

bool same_bytes(const Outputs& a, const Outputs& b) {
    return a.scores.size() == b.scores.size() && a.out.size() == b.out.size() && a.ids == b.ids &&
           std::memcmp(a.scores.data(), b.scores.data(), a.scores.size() * 4) == 0 &&
           std::memcmp(a.out.data(), b.out.data(), a.out.size() * 4) == 0;
}

// glm_top_k_by_index of column s of the scores as tensor.h defines it (candidates 0..q_pos[s], the
// selection by position, -1 after).
std::vector<int32_t> expected_ids(const std::vector<float>& scores, int32_t p) {
    std::vector<int32_t> r;
    for (int64_t s = 0; s < kS; ++s) {
        const int32_t pos = s == 0 ? p - 1 : p;
        const int64_t n = std::clamp<int64_t>(int64_t(pos) + 1, 0, kT);
        std::vector<int32_t> idx(static_cast<size_t>(n));
        std::iota(idx.begin(), idx.end(), 0);
        const float* col = scores.data() + s * kT;
        std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return col[a] > col[b]; });
        idx.resize(size_t(std::min<int64_t>(kTopK, n)));
        std::sort(idx.begin(), idx.end());  // glm_top_k_by_index lists the selection by position
        for (int j = 0; j < kTopK; ++j) r.push_back(j < int64_t(idx.size()) ? idx[size_t(j)] : -1);
    }
    return r;
}

// One position: replay (captured graph) vs eager run on the GPU vs the CPU reference.
void check_position(DecodeGraph& gpu, DecodeGraph& cpu, int graph_id, int32_t p) {
    CAPTURE(p);
    gpu.set_pos(p);
    REQUIRE(gpu.backend->replay(graph_id).ok());
    gpu.backend->synchronize();
    const Outputs replayed = read_outputs(gpu);
    REQUIRE(gpu.backend->graph_compute(gpu.graph).ok());
    gpu.backend->synchronize();
    const Outputs eager = read_outputs(gpu);
    CHECK_MESSAGE(same_bytes(replayed, eager), "replay differs from an eager run of the same graph");

    cpu.set_pos(p);
    REQUIRE(cpu.backend->graph_compute(cpu.graph).ok());
    cpu.backend->synchronize();
    const Outputs ref = read_outputs(cpu);
    size_t score_diff = 0;
    for (size_t i = 0; i < ref.scores.size(); ++i) score_diff += replayed.scores[i] != ref.scores[i];
    CHECK_MESSAGE(score_diff == 0, score_diff << " indexer scores differ from the CPU (exact inputs)");
    CHECK_MESSAGE(replayed.ids == expected_ids(replayed.scores, p), "top_k ids differ from the definition");
    CHECK_MESSAGE(replayed.ids == ref.ids, "top_k ids differ from the CPU");
    const std::vector<double> got(replayed.out.begin(), replayed.out.end()), want(ref.out.begin(), ref.out.end());
    const optest::Comparison cmp = optest::compare_values(got, want, kAttnTol, false);
    CHECK_MESSAGE(cmp.ok, "attention vs CPU: " << cmp.message << " (nmse " << cmp.nmse << ")");
    if (p <= 0) {  // query 0 sees no key at all: zeros
        CHECK(std::all_of(replayed.out.begin(), replayed.out.begin() + kDv * kH, [](float x) { return x == 0.0f; }));
        CHECK(std::all_of(replayed.ids.begin(), replayed.ids.begin() + kTopK, [](int32_t x) { return x == -1; }));
    }
}

}  // namespace

TEST_CASE("cuda graph: one decode graph captured once, replayed at every position") {
    auto cuda = cuda_backend_or_skip();
    if (!cuda) return;
    REQUIRE(cuda->supports_capture());
    auto cpu = glm_backend_cpu_create(2);
    const Inputs in = make_inputs();
    DecodeGraph gpu(*cuda, in), ref(*cpu, in);

    // Poison the top-k output, then record: nothing may run during the capture.
    const std::vector<int32_t> poison(size_t(kTopK * kS), int32_t(0xA5A5A5A5));
    cuda->tensor_set(gpu.ids, poison.data(), 0, poison.size() * 4);
    cuda->synchronize();
    REQUIRE(cuda->capture_begin().ok());
    const Status computed = cuda->graph_compute(gpu.graph);
    int id = -1;
    const Status ended = cuda->capture_end(&id);
    REQUIRE_MESSAGE(computed.ok(), computed.message());
    REQUIRE_MESSAGE(ended.ok(), ended.message());
    REQUIRE(id >= 0);
    cuda->synchronize();
    CHECK(gpu.read<int32_t>(gpu.ids) == poison);

    // Positions around the top-k (2048), the single-block sort (4096 candidates) and the ends.
    for (int32_t p : {0, 1, 2, 100, 2046, 2047, 2048, 2049, 3000, 4095, 4096, 4097, 5000, 5998, 5999})
        check_position(gpu, ref, id, p);

    // 1000 replays with a changing position: no error, and the last one still right.
    int32_t p = 0;
    for (int i = 0; i < 1000; ++i) {
        p = int32_t((int64_t(i) * 7919 + 13) % kT);
        gpu.set_pos(p);
        const Status st = cuda->replay(id);
        if (!st.ok()) FAIL(st.message());
    }
    cuda->synchronize();
    const Outputs last = read_outputs(gpu);
    REQUIRE(cuda->graph_compute(gpu.graph).ok());
    cuda->synchronize();
    CHECK_MESSAGE(same_bytes(last, read_outputs(gpu)), "replay " << 999 << " (p = " << p << ") differs from eager");
    check_position(gpu, ref, id, p);
}

TEST_CASE("cuda graph: misuse of the capture API comes back as a Status") {
    auto cuda = cuda_backend_or_skip();
    if (!cuda) return;
    int id = -1;
    CHECK_FALSE(cuda->replay(0).ok());
    CHECK_FALSE(cuda->replay(-1).ok());
    CHECK_FALSE(cuda->capture_end(&id).ok());  // no capture open

    glm_context ctx;
    glm_tensor* x = ctx.new_tensor_1d(GLM_TYPE_F32, 1000);
    x->flags |= GLM_FLAG_INPUT;
    glm_tensor* y = glm_scale(ctx, x, 3.0f);
    y->flags |= GLM_FLAG_OUTPUT;
    glm_graph graph;
    glm_graph_expand(graph, y);
    glm_buffer* buf = nullptr;
    REQUIRE(cuda->alloc_buffer(glm_arena_measure(graph).size, "activations", &buf).ok());
    glm_arena_allocate(graph, buf);

    cuda->set_profiling(true);
    CHECK_FALSE(cuda->capture_begin().ok());  // profiling times eager runs only
    cuda->set_profiling(false);

    REQUIRE(cuda->capture_begin().ok());
    CHECK_FALSE(cuda->capture_begin().ok());  // already open
    CHECK_FALSE(cuda->replay(0).ok());        // nothing recorded yet
    REQUIRE(cuda->graph_compute(graph).ok());
    REQUIRE(cuda->capture_end(&id).ok());
    CHECK(id == 0);

    std::vector<float> xs(1000), ys(1000);
    for (int round = 0; round < 3; ++round) {
        for (size_t i = 0; i < xs.size(); ++i) xs[i] = float(int(i) * (round + 1));
        cuda->tensor_set(x, xs.data(), 0, xs.size() * 4);
        REQUIRE(cuda->replay(id).ok());
        cuda->tensor_get(y, ys.data(), 0, ys.size() * 4);
        for (size_t i = 0; i < xs.size(); ++i) REQUIRE(ys[i] == xs[i] * 3.0f);
    }
    CHECK_FALSE(cuda->replay(id + 1).ok());
}

TEST_CASE("cuda profiling: one entry per node, in order, with device times") {
    auto cuda = cuda_backend_or_skip();
    if (!cuda) return;
    const Inputs in = make_inputs();
    DecodeGraph gpu(*cuda, in);
    gpu.set_pos(4500);
    cuda->set_profiling(true);
    REQUIRE(cuda->graph_compute(gpu.graph).ok());
    const std::vector<glm_node_time> prof = cuda->take_profile();
    cuda->set_profiling(false);
    REQUIRE(prof.size() == gpu.graph.nodes.size());
    for (size_t i = 0; i < prof.size(); ++i) {
        const glm_tensor* node = gpu.graph.nodes[i];
        CAPTURE(node->name);
        CHECK(prof[i].name == node->name);
        CHECK(prof[i].op == node->op);
        CHECK(std::isfinite(prof[i].us));
        if (node->op == GLM_OP_VIEW) CHECK(prof[i].us >= 0);  // no kernel: ~0
        else CHECK(prof[i].us > 0);
        MESSAGE(node->name << " (" << std::string(glm_op_name(node->op)) << "): " << prof[i].us << " us");
    }
    CHECK(cuda->take_profile().empty());  // taken
    // profiling off: an eager run records nothing
    REQUIRE(cuda->graph_compute(gpu.graph).ok());
    CHECK(cuda->take_profile().empty());
}
