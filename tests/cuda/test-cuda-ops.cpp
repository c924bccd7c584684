// Every case of the op table on the CUDA backend against the CPU reference backend
// (test-backend-ops style): same seeded inputs, guard zones, NaN/Inf placement, tolerance by op.
#include <cmath>
#include <cstdlib>
#include <string>

#include "cuda-test-util.h"
#include "op-cases.h"

using namespace optest;

namespace {

// GPU arithmetic differs from the CPU's in order and in fused multiply-adds: allow f32 rounding
// noise on top of each case's own tolerance, but keep discrete outputs exact.
Tolerance gpu_tolerance(const OpCase& c) {
    if (c.gpu_tol) return *c.gpu_tol;
    const Tolerance& t = c.tol;
    if (t.nmse == 0) return t;
    return {std::max(t.nmse, 1e-9), t.max_abs};
}

}  // namespace

TEST_CASE("every op on CUDA matches the CPU reference") {
    auto cuda = cuda_backend_or_skip();
    if (!cuda) return;
    auto cpu = glm_backend_cpu_create(2);
    int n = 0, failed = 0;
    // GLM_OPTEST_FILTER=TEXT: only the cases whose name contains TEXT (a compute-sanitizer pass over
    // what a change touched; the whole table takes minutes under the sanitizer).
    const char* filter = std::getenv("GLM_OPTEST_FILTER");
    for (const OpCase& c : op_cases()) {
        if (filter && c.name.find(filter) == std::string::npos) continue;
        CAPTURE(c.name);
        const RunResult on_cpu = run_op_case(c, *cpu);
        const RunResult on_gpu = run_op_case(c, *cuda);
        REQUIRE(on_gpu.ran);
        for (const std::string& problem : on_gpu.integrity) FAIL_CHECK(problem);
        const Comparison cmp = compare_values(on_gpu.out, on_cpu.out, gpu_tolerance(c), c.check_cosine);
        if (!cmp.ok) {
            ++failed;
            FAIL_CHECK(c.name << ": " << cmp.message << " (nmse " << cmp.nmse << ", max abs " << cmp.max_abs << ")");
        }
        // and against the naive double reference, like the CPU test
        const Comparison ref = compare_values(on_gpu.out, on_gpu.expected, gpu_tolerance(c), c.check_cosine);
        CHECK_MESSAGE(ref.ok, c.name << " vs reference: " << ref.message);
        ++n;
    }
    MESSAGE(n << " op cases on CUDA, " << failed << " differ from the CPU");
}
