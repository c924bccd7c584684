// Every ggml-like op on the scalar CPU backend against the naive double-precision references of
// op-cases.cpp, with guard zones around each output and untouched-input checks.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <set>

#include "tests/ops/op-cases.h"

using namespace optest;

namespace {

void run_and_check(const OpCase& c, glm_backend& backend) {
    CAPTURE(c.name);
    const RunResult r = run_op_case(c, backend);
    REQUIRE(r.ran);
    for (const std::string& problem : r.integrity) FAIL_CHECK(c.name << ": " << problem);
    const Comparison cmp = compare_values(r.out, r.expected, c.tol, c.check_cosine);
    if (std::getenv("GLM_OPTEST_VERBOSE"))
        fmt::print(stderr, "{:<70} n={:<5} nmse={:.2e} max_abs={:.2e} arena={}\n", c.name, r.out.size(), cmp.nmse,
                   cmp.max_abs, r.arena_bytes);
    CHECK_MESSAGE(cmp.ok, c.name << ": " << cmp.message << " (nmse " << cmp.nmse << ", max abs " << cmp.max_abs << ")");
}

}  // namespace

TEST_CASE("op table covers every op in tensor.h") {
    std::set<int> seen;
    for (const OpCase& c : op_cases()) {
        OpBuild b(seed_of(c.name));
        glm_graph g;
        glm_graph_expand(g, c.build(b));
        for (const glm_tensor* n : g.nodes) seen.insert(n->op);
    }
    for (int op = GLM_OP_VIEW; op < GLM_OP_COUNT; ++op) {
        const std::string name = glm_op_name(glm_op(op));
        CAPTURE(name);
        CHECK(seen.count(op) == 1);
    }
}

TEST_CASE("ops on the cpu backend match the naive reference") {
    auto backend = glm_backend_cpu_create(2);
    const auto t0 = std::chrono::steady_clock::now();
    int n = 0;
    for (const OpCase& c : op_cases()) {
        run_and_check(c, *backend);
        ++n;
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE(n << " op cases in " << secs << " s");
}

TEST_CASE("harness: compare_values catches what it must") {
    const double nan = std::nan(""), inf = INFINITY;
    CHECK(compare_values({1, 2, nan, inf}, {1, 2, nan, inf}, {0, INFINITY}, false).ok);
    CHECK_FALSE(compare_values({1, 2, 0, inf}, {1, 2, nan, inf}, {1, INFINITY}, false).ok);   // NaN lost
    CHECK_FALSE(compare_values({1, 2, nan, -inf}, {1, 2, nan, inf}, {1, INFINITY}, false).ok);  // Inf sign
    CHECK_FALSE(compare_values({1, 2.0000001}, {1, 2}, {0, INFINITY}, false).ok);              // exact
    CHECK(compare_values({1, 2.0000001}, {1, 2}, {1e-12, INFINITY}, false).ok);
    CHECK_FALSE(compare_values({1, 2.1}, {1, 2}, {1e-6, INFINITY}, false).ok);
    CHECK_FALSE(compare_values({1}, {1, 2}, {1, INFINITY}, false).ok);  // size
}

// A backend that forwards to the CPU one and then writes one element past the last node's output:
// the runner's guard zone must catch it.
namespace {
class OutOfBoundsBackend final : public glm_backend {
public:
    explicit OutOfBoundsBackend(std::unique_ptr<glm_backend> inner) : inner_(std::move(inner)) {}
    const char* name() const override { return "oob"; }
    Status alloc_buffer(size_t size, const std::string& n, glm_buffer** out) override { return inner_->alloc_buffer(size, n, out); }
    void tensor_set(glm_tensor* t, const void* d, size_t o, size_t s) override { inner_->tensor_set(t, d, o, s); }
    void tensor_get(const glm_tensor* t, void* d, size_t o, size_t s) override { inner_->tensor_get(t, d, o, s); }
    void buffer_clear(glm_buffer* b, uint8_t v) override { inner_->buffer_clear(b, v); }
    bool supports_op(const glm_tensor* t) const override { return inner_->supports_op(t); }
    Status graph_compute_range(const glm_graph& g, size_t begin, size_t end) override {
        Status st = inner_->graph_compute_range(g, begin, end);
        glm_tensor* last = g.nodes[end - 1];
        static_cast<uint8_t*>(last->data)[glm_nbytes(last)] ^= 0xff;  // CPU buffers are host memory
        return st;
    }
    void synchronize() override { inner_->synchronize(); }
    void tensor_fill_random(glm_tensor* t, uint64_t seed, float mean, float scale,
                            const glm_fill_slice& slice) override {
        inner_->tensor_fill_random(t, seed, mean, scale, slice);
    }

private:
    std::unique_ptr<glm_backend> inner_;
};
}  // namespace

TEST_CASE("harness: guard zones catch an out-of-bounds write") {
    OutOfBoundsBackend backend(glm_backend_cpu_create(1));
    const OpCase& c = op_cases().front();
    const RunResult r = run_op_case(c, backend);
    REQUIRE(r.ran);
    REQUIRE(r.integrity.size() == 1);
    CHECK(r.integrity[0].find("guard after output") != std::string::npos);
}

// glm_nbytes: "bytes spanned (for views: from first to last element)".
TEST_CASE("glm_nbytes spans a transposed view") {
    // BUG (see NOTES-for-lead.md): glm_nbytes uses glm_row_bytes(ne0) for dim 0 even when nb0 is
    // not the element size, so a transposed [5, 7] f32 view ([7, 5], nb = {20, 4}) reports 44 bytes
    // instead of 6*20 + 4*4 + 4 = 140.
    glm_context ctx;
    glm_tensor* l = ctx.new_tensor_2d(GLM_TYPE_F32, 5, 7);
    glm_tensor* t = glm_transpose(ctx, l);
    CHECK(glm_nbytes(t) == size_t((t->ne[0] - 1) * int64_t(t->nb[0]) + (t->ne[1] - 1) * int64_t(t->nb[1]) + 4));
}
