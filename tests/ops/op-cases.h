// The op test table (test-backend-ops style): each case builds a small graph with fresh random
// inputs, has a naive double-precision reference written from tensor.h's documented semantics,
// and a tolerance with the reason for it. The runner executes a case on any glm_backend with
// guard zones around the output, and checks that inputs are left untouched. The same table runs
// on the CPU reference against the naive reference (tests/ops/test-ops.cpp) and, later, on CUDA
// against the CPU backend (run_op_case on both backends, compare_values on the two outputs).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "ggml-like/backend.h"

namespace optest {

// Deterministic generator (own Box-Muller, so values do not depend on the standard library).
class Rng {
public:
    explicit Rng(uint64_t seed) : gen_(seed) {}
    double uniform(double lo, double hi) { return lo + (hi - lo) * (double(gen_() >> 11) * 0x1.0p-53); }
    double normal();
    int64_t randint(int64_t lo, int64_t hi_exclusive) {
        return lo + int64_t(gen_() % uint64_t(hi_exclusive - lo));
    }
    // k distinct values from [0, n), in random order.
    std::vector<int32_t> distinct(int64_t n, int64_t k);

private:
    std::mt19937_64 gen_;
};

uint64_t seed_of(const std::string& name);

// Holds a case's graph, its leaves' host bytes and the inputs the reference reads.
struct OpBuild {
    explicit OpBuild(uint64_t seed) : rng(seed) {}
    glm_context ctx;
    Rng rng;
    std::unordered_map<const glm_tensor*, std::vector<uint8_t>> host;  // leaf bytes (what is uploaded)
    std::vector<glm_tensor*> in;  // tensors the reference reads, in the case's own order

    // ---- leaves ----
    // Random normal values (times scale) stored in `type` (F32, F16, BF16, F8_E4M3).
    glm_tensor* rand(glm_type type, std::vector<int64_t> ne, double scale = 1.0);
    // Values from a generator g(flat index).
    glm_tensor* values(glm_type type, std::vector<int64_t> ne, const std::function<double(int64_t)>& g);
    glm_tensor* i32(std::vector<int64_t> ne, const std::vector<int32_t>& v);
    // NVFP4 [K, M, E] with random codes, random E4M3 block scales and a random global scale per slice.
    glm_tensor* nvfp4(int64_t K, int64_t M, int64_t E);
    // Plant NaN, +Inf, -Inf at distinct random positions of an F32 leaf (count of each).
    void plant_nonfinite(glm_tensor* leaf, int count = 1);

    // ---- reading (for references): element of any tensor (views included) from the host bytes ----
    double get(const glm_tensor* t, int64_t i0, int64_t i1 = 0, int64_t i2 = 0, int64_t i3 = 0) const;
    int32_t geti(const glm_tensor* t, int64_t i0, int64_t i1 = 0) const;
    // NVFP4 weight element [k, m, e], decoded with an independent formula from codes and scales.
    double nvfp4_at(const glm_tensor* w, int64_t k, int64_t m, int64_t e) const;
    // Any weight element [k, m, e] (NVFP4 or float types, views allowed).
    double weight_at(const glm_tensor* w, int64_t k, int64_t m, int64_t e) const;

    glm_tensor* leaf(glm_type type, std::vector<int64_t> ne);  // zero-filled leaf with host bytes
};

// Decode element (i0..i3) of t, reading bytes of t's root from `root_bytes`.
double read_element(const glm_tensor* t, const std::vector<uint8_t>& root_bytes, int64_t i0, int64_t i1,
                    int64_t i2, int64_t i3);

struct Tolerance {
    double nmse;     // max sum (a-b)^2 / sum b^2 over finite positions; 0 = exact equality
    double max_abs;  // max |a-b| over finite positions (infinity: not checked)
};

using Ref = std::vector<double>;

// A reference output: f(i0, i1, i2, i3) for every element of out, in memory order of a contiguous out.
template <typename F>
Ref map_out(const glm_tensor* out, F&& f) {
    Ref r;
    r.reserve(size_t(glm_nelements(out)));
    for (int64_t i3 = 0; i3 < out->ne[3]; ++i3)
        for (int64_t i2 = 0; i2 < out->ne[2]; ++i2)
            for (int64_t i1 = 0; i1 < out->ne[1]; ++i1)
                for (int64_t i0 = 0; i0 < out->ne[0]; ++i0) r.push_back(f(i0, i1, i2, i3));
    return r;
}

// What storing a double into a tensor of type t gives (f32: correctly rounded; others: RNE).
double stored(glm_type t, double v);
// n_valid distinct values of [0, n), then -1 at random places up to len entries (slots another
// rank stores, selections with holes).
std::vector<int32_t> holes(Rng& rng, int64_t n, int64_t n_valid, int64_t len);

// The naive reference of a mul_mat_id case whose b.in is {experts, x, ids}.
Ref mul_mat_id_reference(const OpBuild& b, const glm_tensor* out);

// moe_combine inputs, appended to b.in: y F32 [D, n_used, T] random, routing weights F32 [n_used, T]
// in [0, 1), ids I32 [n_used, T] distinct per token from [0, n_experts).
void add_combine_inputs(OpBuild& b, int64_t D, int64_t n_used, int64_t T, int64_t n_experts);
// sum_j w[j, t] * y[d, j, t] for the inputs add_combine_inputs put at b.in[first ..].
double combine_reference(const OpBuild& b, size_t first, int64_t d, int64_t t);

struct OpCase {
    std::string name;
    std::function<glm_tensor*(OpBuild&)> build;  // makes leaves (b.in) and returns the op's output
    // Expected output values, ne0 fastest, computed in double from b.host through b.in.
    std::function<std::vector<double>(const OpBuild&, const glm_tensor* out)> reference;
    Tolerance tol;
    bool check_cosine = false;  // attention: also require cosine similarity >= 1 - 1e-9
    // The CUDA run's limit where its kernel legitimately rounds more than the CPU (tensor-core
    // GEMMs round activations to bf16 for N > 8 tokens); unset: tol.
    std::optional<Tolerance> gpu_tol;
};

// The whole table.
const std::vector<OpCase>& op_cases();

struct Comparison {
    bool ok = true;
    double nmse = 0, max_abs = 0, cosine = 1;
    std::string message;  // first problem found
};
// got vs expected: NaN/+Inf/-Inf positions must agree; finite positions by NMSE / max abs.
Comparison compare_values(const std::vector<double>& got, const std::vector<double>& expected, const Tolerance& tol,
                          bool check_cosine);

struct RunResult {
    bool ran = false;           // false: backend does not support an op
    std::vector<double> out;    // output elements, ne0 fastest
    std::vector<double> expected;
    std::vector<std::string> integrity;  // guard / input / untouched-bytes violations
    size_t arena_bytes = 0;
};
// Build the case (seeded by its name), run it on backend, compute the reference.
RunResult run_op_case(const OpCase& c, glm_backend& backend);

// Case families kept in their own files (op-cases-*.cpp), appended to the table by op_cases().
void add_length_bound_cases(std::vector<OpCase>& cases);  // ops bounded by q_pos (graph replay)
void add_matmul_large_cases(std::vector<OpCase>& cases);  // prefill-size mul_mat / mul_mat_id
void add_max_arg_cases(std::vector<OpCase>& cases);       // max_arg (tensor-parallel greedy)
void add_decode_cases(std::vector<OpCase>& cases);        // decode patterns: top-k attention, W_UK^T, gate/up
void add_fused_cases(std::vector<OpCase>& cases);         // decode-shape norms / routing, fused patterns
void add_context_parallel_cases(std::vector<OpCase>& cases);  // caches split by position over ranks

// One case from its parts (the case files' shorthand).
OpCase make_case(std::string name, std::function<glm_tensor*(OpBuild&)> build,
                 std::function<std::vector<double>(const OpBuild&, const glm_tensor*)> ref, Tolerance tol);
// Attention in double for in = {q, k, v, q_pos, key_ids or null}: query s attends slots t <= q_pos[s],
// t < T, restricted to its key_ids column when given (entries < 0 or past q_pos ignored).
std::vector<double> attn_reference(const OpBuild& b, const glm_tensor* out);
// Attention in double for in = {q, k, v, ...}: query s attends the key slots keys_of(s) lists (each
// once; none gives zeros), softmax of scale (out's param) * q.k; shared by the attention op cases.
std::vector<double> attn_reference_over(const OpBuild& b, const glm_tensor* out,
                                        const std::function<std::vector<int64_t>(int64_t)>& keys_of);
// Column col of a GLM_OP_TOP_K node as tensor.h defines it, from its sources' host bytes: the k largest
// of entries 0..q_pos[col] (all of them without q_pos) by descending value, ties by the lower index
// (by ascending index for glm_top_k_by_index), -1 past the candidates.
std::vector<int32_t> top_k_reference(const OpBuild& b, const glm_tensor* top_k, int64_t col);

}  // namespace optest
