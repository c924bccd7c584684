// Every case of the op table on the CUDA backend against the CPU reference backend
// (test-backend-ops style): same seeded inputs, guard zones, NaN/Inf placement, tolerance by op.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

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

namespace {

struct FillCase {
    const char* what;
    glm_type type;
    int64_t ne0, ne1, ne2;
    glm_fill_slice slice;
    float mean, scale;
};

// The bytes tensor_fill_random writes into a fresh [ne0, ne1, ne2] tensor of backend b.
std::vector<uint8_t> fill_on(glm_backend& b, glm_type type, int64_t ne0, int64_t ne1, int64_t ne2,
                             const glm_fill_slice& slice, float mean, float scale, uint64_t seed) {
    glm_context ctx;
    glm_tensor* t = glm_set_name(ctx.new_tensor_3d(type, ne0, ne1, ne2), "fill");
    glm_buffer* buf = nullptr;
    REQUIRE(b.alloc_buffer(glm_nbytes(t), "fill", &buf).ok());
    glm_place(t, buf, 0);
    b.tensor_fill_random(t, seed, mean, scale, slice);
    b.synchronize();
    std::vector<uint8_t> out(glm_nbytes(t));
    b.tensor_get(t, out.data(), 0, out.size());
    return out;
}

}  // namespace

TEST_CASE("synthetic fill: CUDA writes the CPU's bytes, for whole tensors and tensor-parallel slices") {
    // Synthetic weights are generated on each rank's device; a TP layout is one model only if every
    // slice holds the whole tensor's values at its global indices, on CUDA as on the CPU.
    auto cuda = cuda_backend_or_skip();
    if (!cuda) return;
    auto cpu = glm_backend_cpu_create(2);
    const FillCase cases[] = {
        {"f32 whole", GLM_TYPE_F32, 48, 10, 1, {}, 0.0f, 0.02f},
        {"bf16 rows 10..50 of 80", GLM_TYPE_BF16, 4096, 40, 1, {10, 80, 0, 0}, 0.0f, 1.0f},
        {"f32 columns 32..64 of 128", GLM_TYPE_F32, 32, 24, 1, {0, 0, 32, 128}, 1.0f, 0.05f},
        {"e4m3 block scales, window of 3 experts", GLM_TYPE_F8_E4M3, 4, 12, 3, {12, 48, 4, 16}, 1.0f, 0.5f},
        {"nvfp4 codes whole", GLM_TYPE_NVFP4, 256, 64, 1, {}, 0.0f, 1.0f},
        {"nvfp4 expert stack, rows 12..24 of 48", GLM_TYPE_NVFP4, 64, 12, 3, {12, 48, 0, 0}, 0.0f, 1.0f},
        {"nvfp4 expert stack, columns 64..96 of 128", GLM_TYPE_NVFP4, 32, 24, 4, {0, 24, 64, 128}, 0.0f, 1.0f},
        {"i32 rows 3..8 of 9", GLM_TYPE_I32, 16, 5, 1, {3, 9, 0, 0}, 0.0f, 1.0f},
    };
    const uint64_t seed = 0x5eed;
    for (const FillCase& c : cases) {
        const std::string what = c.what;
        CAPTURE(what);
        const std::vector<uint8_t> on_gpu = fill_on(*cuda, c.type, c.ne0, c.ne1, c.ne2, c.slice, c.mean, c.scale, seed);
        const std::vector<uint8_t> on_cpu = fill_on(*cpu, c.type, c.ne0, c.ne1, c.ne2, c.slice, c.mean, c.scale, seed);
        REQUIRE(on_gpu.size() == on_cpu.size());
        size_t bytes_differ = 0;
        for (size_t i = 0; i < on_gpu.size(); ++i) bytes_differ += on_gpu[i] != on_cpu[i];
        CHECK(bytes_differ == 0);
        // And the slice is the window of the whole tensor filled at once (the GPU's bytes).
        const int64_t rows = c.slice.rows_total ? c.slice.rows_total : c.ne1;
        const int64_t cols = c.slice.cols_total ? c.slice.cols_total : c.ne0;
        const std::vector<uint8_t> whole = fill_on(*cuda, c.type, cols, rows, c.ne2, {}, c.mean, c.scale, seed);
        const size_t part_row = glm_row_bytes(c.type, c.ne0), whole_row = glm_row_bytes(c.type, cols);
        const size_t at = glm_row_bytes(c.type, c.slice.col0);
        size_t differ = 0;
        for (int64_t e = 0; e < c.ne2; ++e)
            for (int64_t r = 0; r < c.ne1; ++r)
                differ += std::memcmp(on_gpu.data() + size_t(e * c.ne1 + r) * part_row,
                                      whole.data() + size_t(e * rows + c.slice.row0 + r) * whole_row + at, part_row) != 0;
        CHECK(differ == 0);
    }
}
