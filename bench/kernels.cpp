// Kernel benchmark (issue 7, "Kernel benchmark"): each kernel of a batch-1 decode step at the
// GLM-5.1 shapes of one TP4 rank, run as a ggml-like graph on the CUDA backend, against a
// device-to-device copy measured in the same run.
//
//   glmrun-bench-kernels [--json FILE] [--reps N] [--torch FILE] [--budget SECONDS] [--only GROUPS]
//                        [--mma bf16|bf16x2]
//
// The prefill group (bench_prefill) times the tensor-core GEMMs (cuda/gemm-mma.cu) at prompt sizes
// and reports TFLOP/s next to cuBLAS bf16 GEMMs of the same shapes measured in the same run (what
// torch.matmul calls; grouped for the routed experts).
//
// Timing: the backend's stream is private (no accessor), so each benchmark builds one graph of R
// independent copies of the op ("reps", rotating over weight copies / expert groups so the 50 MB L2
// never serves a repeated read) and times it with std::chrono around graph_compute + synchronize.
// Per-op time = (median T(R) - median T(1)) / (R - 1): the slope removes the fixed launch + sync
// cost and keeps the per-kernel gap of back-to-back launches on one stream (no CUDA graph), as the
// engine sees it. T(1) is the same graph cut after its first rep.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/cublas-ref.h"
#include "cuda/backend.h"
#include "cuda/gemm-mma.cuh"
#include "ggml-like/arena.h"
#include "ggml-like/backend.h"

namespace {

#define BENCH_CUDA(call)                                                                               \
    do {                                                                                               \
        const cudaError_t bench_err_ = (call);                                                         \
        if (bench_err_ != cudaSuccess)                                                                 \
            return Status::device("{} failed at {}:{}: {}", #call, __FILE__, __LINE__,                 \
                                  cudaGetErrorString(bench_err_));                                     \
    } while (0)

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull) {
        if (!s) s = 1;
    }
    uint64_t next() {  // xorshift64
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        return s;
    }
};

// What a leaf is filled with. Never zeros: values in realistic ranges.
enum class Fill {
    BF16,      // sign random, |x| in [2^-7, 2)
    F32,       // uniform in [-1, 1)
    Bytes,     // random bytes (NVFP4 codes: every nibble is a valid E2M1 value)
    E4M3,      // block scales: bytes 0x30..0x50 (0.125 .. 2.0)
    Explicit,  // Leaf::data
};

struct Leaf {
    glm_tensor* t;
    Fill fill;
    uint64_t seed;
    std::vector<uint8_t> data;
};

void fill_chunk(Fill fill, Rng& rng, uint8_t* dst, size_t n) {
    size_t i = 0;
    switch (fill) {
        case Fill::BF16:
            for (; i + 8 <= n; i += 8) {
                uint64_t r = rng.next();
                for (int j = 0; j < 4; ++j) {
                    const uint16_t b = uint16_t(r >> (16 * j));
                    const uint16_t h = uint16_t((b & 0x807F) | ((0x78u + ((b >> 7) & 7u)) << 7));
                    std::memcpy(dst + i + 2 * j, &h, 2);
                }
            }
            break;
        case Fill::F32:
            for (; i + 8 <= n; i += 8) {
                const uint64_t r = rng.next();
                const float f[2] = {float(int32_t(uint32_t(r))) * 0x1p-31f, float(int32_t(uint32_t(r >> 32))) * 0x1p-31f};
                std::memcpy(dst + i, f, 8);
            }
            break;
        case Fill::Bytes:
            for (; i + 8 <= n; i += 8) {
                const uint64_t r = rng.next();
                std::memcpy(dst + i, &r, 8);
            }
            break;
        case Fill::E4M3:
            for (; i + 8 <= n; i += 8) {
                uint64_t r = rng.next();
                for (int j = 0; j < 8; ++j) dst[i + j] = uint8_t(0x30 + (uint8_t(r >> (8 * j)) % 0x21));
            }
            break;
        case Fill::Explicit: break;
    }
    for (; i < n; ++i) dst[i] = fill == Fill::E4M3 ? uint8_t(0x38) : fill == Fill::BF16 ? uint8_t(0x3c) : uint8_t(0x3f);
}

// One benchmark: its own backend (so its buffers are freed with it), context, leaves and a graph
// of R independent reps of the op.
class Bench {
public:
    explicit Bench(std::unique_ptr<glm_backend> be) : be_(std::move(be)) {}

    glm_context& ctx() { return ctx_; }

    glm_tensor* leaf(glm_tensor* t, Fill fill) {
        leaves_.push_back({t, fill, ++seed_, {}});
        return t;
    }
    glm_tensor* leaf_data(glm_tensor* t, const void* data, size_t size) {
        GLM_ASSERT(size == glm_nbytes(t));
        Leaf l{t, Fill::Explicit, 0, {}};
        l.data.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + size);
        leaves_.push_back(std::move(l));
        return t;
    }
    glm_tensor* leaf_i32(glm_tensor* t, const std::vector<int32_t>& v) { return leaf_data(t, v.data(), v.size() * 4); }
    glm_tensor* nvfp4(int64_t K, int64_t M, int64_t E) {
        glm_tensor* w = ctx_.new_nvfp4(K, M, E);
        leaf(w, Fill::Bytes);
        leaf(w->block_scale, Fill::E4M3);
        std::vector<float> g(size_t(E), 1e-3f);
        leaf_data(w->global_scale, g.data(), g.size() * 4);
        return w;
    }

    void add_rep(glm_tensor* out) {
        glm_graph_expand(graph_, out);
        rep_end_.push_back(graph_.nodes.size());
        outs_.push_back(out);
    }
    int reps() const { return int(rep_end_.size()); }

    // Place the leaves in one buffer, upload them, plan the arena for the rest.
    Status place() {
        size_t total = 0;
        std::vector<size_t> offs;
        for (const Leaf& l : leaves_) {
            offs.push_back(total);
            total += (glm_nbytes(l.t) + GLM_ARENA_ALIGN - 1) / GLM_ARENA_ALIGN * GLM_ARENA_ALIGN;
        }
        glm_buffer* wbuf = nullptr;
        GLM_TRY(be_->alloc_buffer(total, "bench-leaves", &wbuf));
        for (size_t i = 0; i < leaves_.size(); ++i) glm_place(leaves_[i].t, wbuf, offs[i]);
        constexpr size_t kChunk = size_t(32) << 20;
        std::vector<uint8_t> host;
        for (Leaf& l : leaves_) {
            const size_t n = glm_nbytes(l.t);
            if (l.fill == Fill::Explicit) {
                be_->tensor_set(l.t, l.data.data(), 0, n);
                continue;
            }
            Rng rng(l.seed);
            for (size_t off = 0; off < n; off += kChunk) {
                const size_t len = std::min(kChunk, n - off);
                host.resize(len);
                fill_chunk(l.fill, rng, host.data(), len);
                be_->tensor_set(l.t, host.data(), off, len);
            }
        }
        const glm_arena_plan plan = glm_arena_measure(graph_);
        glm_buffer* abuf = nullptr;
        GLM_TRY(be_->alloc_buffer(plan.size + GLM_ARENA_ALIGN, "bench-arena", &abuf));
        glm_arena_allocate(graph_, abuf);
        first_ = graph_;
        first_.nodes.resize(rep_end_.at(0));
        return {};
    }

    Status run(const glm_graph& g, double* us) {
        const auto t0 = Clock::now();
        GLM_TRY(be_->graph_compute(g));
        be_->synchronize();
        *us = seconds_since(t0) * 1e6;
        return {};
    }

    struct Timing {
        double op_us = 0;       // slope per rep
        double amort_us = 0;    // median T(R) / R (upper bound: includes launch + sync once per graph)
        double t1_us = 0;       // median T(1)
        int samples = 0;
        int reps = 0;
    };

    Status time(double budget_s, int fixed_samples, Timing& out) {
        double us = 0;
        for (int i = 0; i < 2; ++i) GLM_TRY(run(graph_, &us));  // warm-up (module load, clocks, TLB)
        GLM_TRY(run(first_, &us));
        std::vector<double> tr, t1;
        const auto t0 = Clock::now();
        const int min_s = fixed_samples > 0 ? fixed_samples : 15;
        const int max_s = fixed_samples > 0 ? fixed_samples : 400;
        while (int(tr.size()) < max_s && (int(tr.size()) < min_s || seconds_since(t0) < budget_s)) {
            GLM_TRY(run(first_, &us));
            t1.push_back(us);
            GLM_TRY(run(graph_, &us));
            tr.push_back(us);
        }
        const int R = reps();
        out.reps = R;
        out.samples = int(tr.size());
        out.t1_us = median(t1);
        out.amort_us = median(tr) / R;
        out.op_us = R > 1 ? (median(tr) - median(t1)) / (R - 1) : median(t1);
        if (!(out.op_us > 0)) out.op_us = out.amort_us;  // noise swamped the slope
        return {};
    }

    // Sanity of the last rep's output: F32 all finite and not all zero; I32 within [0, bound).
    std::string check(int64_t i32_bound) {
        const glm_tensor* o = outs_.back();
        const int64_t n = glm_nelements(o);
        if (o->type == GLM_TYPE_F32) {
            std::vector<float> v(static_cast<size_t>(n));
            be_->tensor_get(o, v.data(), 0, size_t(n) * 4);
            int64_t bad = 0, nz = 0;
            for (float f : v) {
                bad += !std::isfinite(f);
                nz += f != 0.0f;
            }
            if (bad) return fmt::format("{} of {} outputs not finite", bad, n);
            if (!nz) return "all outputs zero";
        } else if (o->type == GLM_TYPE_I32) {
            std::vector<int32_t> v(static_cast<size_t>(n));
            be_->tensor_get(o, v.data(), 0, size_t(n) * 4);
            for (int32_t x : v)
                if (x < 0 || x >= i32_bound) return fmt::format("index {} out of [0, {})", x, i32_bound);
        }
        return "";
    }

private:
    std::unique_ptr<glm_backend> be_;
    glm_context ctx_;
    std::vector<Leaf> leaves_;
    glm_graph graph_, first_;
    std::vector<size_t> rep_end_;
    std::vector<glm_tensor*> outs_;
    uint64_t seed_ = 0;
};

struct Result {
    std::string id, kernel, shape;
    double us = 0, amort_us = 0, t1_us = 0;
    int reps = 0, samples = 0, copies = 0;
    double bytes = 0;
    double gbps = 0, pct = 0;
    std::string target;               // text
    std::optional<bool> met;          // evaluated target
    std::optional<double> torch_us;
    std::string sanity;               // "" = ok
    double flops = 0;                 // prefill GEMMs: 2 * M * N * K (0: a bandwidth benchmark)
    std::optional<double> cublas_us;  // prefill GEMMs: cuBLAS bf16 at the same shape, same run
};

struct Config {
    double budget_s = 0.8;  // timing loop per benchmark
    int fixed_samples = 0;
    double copy_gbps = 0;
    Clock::time_point start = Clock::now();
};

constexpr size_t kL2Rotate = size_t(64) << 20;   // rotate copies below this size
constexpr size_t kRotateSpan = size_t(256) << 20;  // bytes spanned by the rotation

// Reps so that one graph runs ~2 ms (estimate at 2.5 TB/s + 4 us per op), 8..200.
int choose_reps(double bytes) {
    const double est_us = bytes / 2.5e6 + 4.0;
    return int(std::clamp(2000.0 / est_us, 8.0, 200.0));
}
int choose_copies(size_t bytes_per_copy, int reps) {
    if (bytes_per_copy >= kL2Rotate) return 1;
    const size_t c = (kRotateSpan + bytes_per_copy - 1) / std::max<size_t>(bytes_per_copy, 1);
    return int(std::min<size_t>(std::clamp<size_t>(c, 2, 200), size_t(std::max(reps, 1))));
}

using Builder = std::function<void(Bench&, int reps)>;

Status run_bench(const Config& cfg, Result r, int reps, int copies, const Builder& build, int64_t i32_bound,
                 std::vector<Result>& results) {
    std::unique_ptr<glm_backend> be;
    GLM_TRY(glm_backend_cuda_create(0, be));
    Bench b(std::move(be));
    build(b, reps);
    GLM_TRY(b.place());
    Bench::Timing t;
    // Keep the whole run under a minute: past 40 s, time each remaining kernel for 0.15 s only.
    const double budget = seconds_since(cfg.start) > 40.0 ? std::min(cfg.budget_s, 0.15) : cfg.budget_s;
    GLM_TRY(b.time(budget, cfg.fixed_samples, t));
    r.sanity = b.check(i32_bound);
    r.us = t.op_us;
    r.amort_us = t.amort_us;
    r.t1_us = t.t1_us;
    r.reps = t.reps;
    r.samples = t.samples;
    r.copies = copies;
    r.gbps = r.bytes / (r.us * 1e-6) / 1e9;
    r.pct = cfg.copy_gbps > 0 ? 100.0 * r.gbps / cfg.copy_gbps : 0.0;
    fmt::print(stderr, "  {:<28} {:>9.2f} us  {:>7.0f} GB/s  (R={}, samples={}, T1={:.1f} us, T(R)/R={:.2f} us){}\n",
               r.id, r.us, r.gbps, r.reps, r.samples, r.t1_us, r.amort_us,
               r.sanity.empty() ? "" : "  SANITY: " + r.sanity);
    results.push_back(std::move(r));
    return {};
}

// ---- device copy ceiling ----------------------------------------------------------------------
Status measure_copy(double& gbps, double& us_out, size_t& bytes_out) {
    BENCH_CUDA(cudaSetDevice(0));
    void* a = nullptr;
    void* b = nullptr;
    size_t n = size_t(2) << 30;
    for (; n >= (size_t(256) << 20); n /= 2) {
        if (cudaMalloc(&a, n) == cudaSuccess) {
            if (cudaMalloc(&b, n) == cudaSuccess) break;
            cudaFree(a);
            a = nullptr;
        }
        cudaGetLastError();
    }
    if (!a || !b) return Status::device("cannot allocate the copy buffers");
    cudaStream_t s;
    cudaEvent_t e0, e1;
    BENCH_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    BENCH_CUDA(cudaEventCreate(&e0));
    BENCH_CUDA(cudaEventCreate(&e1));
    BENCH_CUDA(cudaMemsetAsync(a, 0x3c, n, s));
    std::vector<double> t;
    for (int i = 0; i < 12; ++i) {
        BENCH_CUDA(cudaEventRecord(e0, s));
        BENCH_CUDA(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, s));
        BENCH_CUDA(cudaEventRecord(e1, s));
        BENCH_CUDA(cudaEventSynchronize(e1));
        float ms = 0;
        BENCH_CUDA(cudaEventElapsedTime(&ms, e0, e1));
        if (i >= 2) t.push_back(ms * 1e3);
    }
    us_out = median(t);
    bytes_out = n;
    gbps = 2.0 * double(n) / (us_out * 1e-6) / 1e9;
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaStreamDestroy(s);
    cudaFree(a);
    cudaFree(b);
    return {};
}

std::string fmt_bytes(double b) {
    if (b >= 1e9) return fmt::format("{:.2f} GB", b / 1e9);
    if (b >= 1e6) return fmt::format("{:.2f} MB", b / 1e6);
    return fmt::format("{:.1f} KB", b / 1e3);
}

// ---- the benchmarks ---------------------------------------------------------------------------
constexpr int64_t kEmbd = 6144;
constexpr int64_t kExperts = 160;
constexpr int64_t kUsed = 8;
constexpr int64_t kFfRank = 512;  // moe_intermediate_size 2048 / TP4

double nvfp4_bytes(int64_t K, int64_t M, int64_t n) { return double(n) * double(M) * double(K) * 9.0 / 16.0; }

// 20 disjoint groups of 8 experts from a fixed shuffle of 0..159: consecutive reps read disjoint experts.
std::vector<std::vector<int32_t>> expert_groups() {
    std::vector<int32_t> perm(static_cast<size_t>(kExperts));
    std::iota(perm.begin(), perm.end(), 0);
    Rng rng(7);
    for (int64_t i = kExperts - 1; i > 0; --i) std::swap(perm[size_t(i)], perm[size_t(rng.next() % uint64_t(i + 1))]);
    std::vector<std::vector<int32_t>> g;
    for (int64_t i = 0; i + kUsed <= kExperts; i += kUsed) g.emplace_back(perm.begin() + i, perm.begin() + i + kUsed);
    return g;
}

Status bench_experts(const Config& cfg, std::vector<Result>& out) {
    const auto groups = expert_groups();
    struct Proj {
        const char* id;
        const char* kernel;
        int64_t K, M;
    };
    const Proj projs[] = {
        {"moe_gate", "NVFP4 expert gate (mul_mat_id)", kEmbd, kFfRank},
        {"moe_up", "NVFP4 expert up (mul_mat_id)", kEmbd, kFfRank},
        {"moe_gate_up_fused", "NVFP4 expert gate+up fused (ggml peer shape)", kEmbd, 2 * kFfRank},
        {"moe_down", "NVFP4 expert down (mul_mat_id)", kFfRank, kEmbd},
    };
    for (const Proj& p : projs) {
        Result r;
        r.id = p.id;
        r.kernel = p.kernel;
        r.shape = fmt::format("K={} M={}, 8/{} experts, 1 token", p.K, p.M, kExperts);
        const bool down = p.K == kFfRank;
        r.bytes = nvfp4_bytes(p.K, p.M, kUsed) + double(p.K) * 4 * (down ? kUsed : 1) + double(p.M) * kUsed * 4;
        r.target = ">= 70% of copy";
        const int reps = choose_reps(r.bytes);
        GLM_TRY(run_bench(cfg, r, reps, 1, [&](Bench& b, int R) {
            glm_tensor* w = b.nvfp4(p.K, p.M, kExperts);
            glm_tensor* x = b.leaf(b.ctx().new_tensor_3d(GLM_TYPE_F32, p.K, down ? kUsed : 1, 1), Fill::F32);
            std::vector<glm_tensor*> ids;
            for (const auto& g : groups) ids.push_back(b.leaf_i32(b.ctx().new_tensor_2d(GLM_TYPE_I32, kUsed, 1), g));
            for (int i = 0; i < R; ++i) b.add_rep(glm_mul_mat_id(b.ctx(), w, x, ids[size_t(i) % ids.size()]));
        }, 0, out));
    }
    // One MoE layer's routed experts as the engine runs them: gate, up, down (3 ops per rep).
    Result r;
    r.id = "moe_layer";
    r.kernel = "NVFP4 routed experts, one MoE layer (gate+up+down)";
    r.shape = fmt::format("2x K={} M={} + K={} M={}, 8/{}", kEmbd, kFfRank, kFfRank, kEmbd, kExperts);
    r.bytes = 3 * nvfp4_bytes(kEmbd, kFfRank, kUsed) + 2 * (kEmbd * 4.0 + kFfRank * kUsed * 4.0) +
              (kFfRank * kUsed * 4.0 + kEmbd * kUsed * 4.0);
    r.target = ">= 70% of copy";
    GLM_TRY(run_bench(cfg, r, choose_reps(r.bytes), 1, [&](Bench& b, int R) {
        glm_tensor* wg = b.nvfp4(kEmbd, kFfRank, kExperts);
        glm_tensor* wu = b.nvfp4(kEmbd, kFfRank, kExperts);
        glm_tensor* wd = b.nvfp4(kFfRank, kEmbd, kExperts);
        glm_tensor* x = b.leaf(b.ctx().new_tensor_3d(GLM_TYPE_F32, kEmbd, 1, 1), Fill::F32);
        glm_tensor* xd = b.leaf(b.ctx().new_tensor_3d(GLM_TYPE_F32, kFfRank, kUsed, 1), Fill::F32);
        std::vector<glm_tensor*> ids;
        for (const auto& g : groups) ids.push_back(b.leaf_i32(b.ctx().new_tensor_2d(GLM_TYPE_I32, kUsed, 1), g));
        for (int i = 0; i < R; ++i) {
            glm_tensor* id = ids[size_t(i) % ids.size()];
            // Three independent ops per rep (down reads its own input, so no swiglu kernel is timed).
            b.add_rep(glm_mul_mat_id(b.ctx(), wg, x, id));
            b.add_rep(glm_mul_mat_id(b.ctx(), wu, x, id));
            b.add_rep(glm_mul_mat_id(b.ctx(), wd, xd, id));
        }
    }, 0, out));
    // add_rep per op made the "rep" one op: scale back to one layer (3 ops).
    Result& L = out.back();
    L.us *= 3;
    L.amort_us *= 3;
    L.gbps = L.bytes / (L.us * 1e-6) / 1e9;
    L.pct = cfg.copy_gbps > 0 ? 100.0 * L.gbps / cfg.copy_gbps : 0.0;
    return {};
}

Status bench_bf16(const Config& cfg, std::vector<Result>& out) {
    struct G {
        const char* id;
        const char* name;
        int64_t M, K;
    };
    const G gs[] = {
        {"bf16_o_proj", "o_proj", 6144, 4096},   {"bf16_q_b", "q_b", 4096, 2048},
        {"bf16_q_a", "q_a", 2048, 6144},         {"bf16_kv_a", "kv_a", 576, 6144},
        {"bf16_lm_head", "lm_head", 38720, 6144},
    };
    for (const G& g : gs) {
        Result r;
        r.id = g.id;
        r.kernel = fmt::format("BF16 GEMV {} (mul_mat)", g.name);
        r.shape = fmt::format("{}x{} (M={} K={}), N=1", g.M, g.K, g.M, g.K);
        const size_t wbytes = size_t(g.M * g.K * 2);
        r.bytes = double(wbytes) + g.K * 4.0 + g.M * 4.0;
        r.target = ">= 85% of copy";
        const int reps = choose_reps(r.bytes);
        const int copies = choose_copies(wbytes, reps);
        GLM_TRY(run_bench(cfg, r, reps, copies, [&](Bench& b, int R) {
            std::vector<glm_tensor*> w;
            for (int c = 0; c < copies; ++c) w.push_back(b.leaf(b.ctx().new_tensor_2d(GLM_TYPE_BF16, g.K, g.M), Fill::BF16));
            glm_tensor* x = b.leaf(b.ctx().new_tensor_2d(GLM_TYPE_F32, g.K, 1), Fill::F32);
            for (int i = 0; i < R; ++i) b.add_rep(glm_mul_mat(b.ctx(), w[size_t(i % copies)], x));
        }, 0, out));
    }
    return {};
}

constexpr int64_t kLat = 576, kLatV = 512, kHeads = 16, kSel = 2048;

Status bench_mla(const Config& cfg, std::vector<Result>& out) {
    const int64_t Ts[] = {4096, 32768, 131072};
    for (int64_t T : Ts) {
        for (int sparse = 0; sparse < 2; ++sparse) {
            if (sparse && T != 131072) continue;
            Result r;
            r.id = sparse ? fmt::format("mla_sparse_T{}", T) : fmt::format("mla_dense_T{}", T);
            r.kernel = sparse ? "MLA decode attention, sparse 2048 keys (glm_attn)" : "MLA decode attention, dense (glm_attn)";
            r.shape = fmt::format("q [576,16,1] f32, bf16 latent cache T={}{}", T, sparse ? ", 2048 key_ids" : "");
            const size_t cache_bytes = size_t(T * kLat * 2);
            const double io = kLat * kHeads * 4.0 + kLatV * kHeads * 4.0;
            r.bytes = sparse ? double(kSel) * kLat * 2 + kSel * 4.0 + io : double(cache_bytes) + io;
            r.target = sparse ? "-" : T >= 32768 ? ">= 80% of copy" : "(>= 80% at 32k+)";
            const int reps = choose_reps(r.bytes);
            const int copies = choose_copies(cache_bytes, reps);
            GLM_TRY(run_bench(cfg, r, reps, copies, [&, T, sparse](Bench& b, int R) {
                glm_context& c = b.ctx();
                std::vector<glm_tensor*> cache;
                for (int i = 0; i < copies; ++i) cache.push_back(b.leaf(c.new_tensor_2d(GLM_TYPE_BF16, kLat, T), Fill::BF16));
                glm_tensor* q = b.leaf(c.new_tensor_3d(GLM_TYPE_F32, kLat, kHeads, 1), Fill::F32);
                glm_tensor* pos = b.leaf_i32(c.new_tensor_1d(GLM_TYPE_I32, 1), {int32_t(T - 1)});
                std::vector<glm_tensor*> kid;
                if (sparse) {
                    Rng rng(1000 + uint64_t(T));
                    for (int s = 0; s < 16; ++s) {  // 16 random key subsets (distinct ids, sorted)
                        std::vector<int32_t> all(static_cast<size_t>(T));
                        std::iota(all.begin(), all.end(), 0);
                        for (int64_t i = 0; i < kSel; ++i)
                            std::swap(all[size_t(i)], all[size_t(i + int64_t(rng.next() % uint64_t(T - i)))]);
                        std::vector<int32_t> sel(all.begin(), all.begin() + kSel);
                        std::sort(sel.begin(), sel.end());
                        kid.push_back(b.leaf_i32(c.new_tensor_2d(GLM_TYPE_I32, kSel, 1), sel));
                    }
                }
                const size_t row = size_t(kLat) * 2;
                for (int i = 0; i < R; ++i) {
                    glm_tensor* cc = cache[size_t(i % copies)];
                    glm_tensor* k = glm_view_3d(c, cc, kLat, 1, T, row, row, 0);
                    glm_tensor* v = glm_view_3d(c, cc, kLatV, 1, T, row, row, 0);
                    b.add_rep(glm_attn(c, q, k, v, pos, sparse ? kid[size_t(i) % kid.size()] : nullptr, 1.0f / 16.0f));
                }
            }, 0, out));
        }
    }
    return {};
}

constexpr int64_t kIdxD = 128, kIdxH = 32, kTopK = 2048;

Status bench_indexer(const Config& cfg, std::vector<Result>& out) {
    const int64_t Ts[] = {4096, 32768, 131072};
    for (int64_t T : Ts) {
        // 0: indexer + top-k (by index, as the engine), 1: indexer, 2: top-k by index, 3: top-k sorted
        for (int mode = 0; mode < 4; ++mode) {
            Result r;
            const char* ids[] = {"indexer_topk", "indexer", "topk", "topk_sorted"};
            const char* names[] = {"indexer + top-k 2048", "indexer alone (glm_indexer)",
                                   "top-k 2048 alone (glm_top_k_by_index)", "top-k 2048 sorted (glm_top_k)"};
            const bool topk_alone = mode >= 2;
            r.id = fmt::format("{}_T{}", ids[mode], T);
            r.kernel = names[mode];
            r.shape = topk_alone ? fmt::format("f32 scores [{}], k=2048", T)
                                : fmt::format("q [128,32,1], k bf16 [128,{}]", T);
            const double kbytes = double(T) * kIdxD * 2, sbytes = double(T) * 4, io = kIdxD * kIdxH * 4.0 + kIdxH * 4.0;
            r.bytes = mode == 0 ? kbytes + io + 2 * sbytes + kTopK * 4.0
                    : mode == 1 ? kbytes + io + sbytes
                                : sbytes + kTopK * 4.0;
            r.target = mode == 0 && T == 131072 ? "<= 40 us" : "-";
            const size_t per_copy = topk_alone ? size_t(sbytes) : size_t(kbytes);
            const int reps = choose_reps(r.bytes);
            const int copies = choose_copies(per_copy, reps);
            GLM_TRY(run_bench(cfg, r, reps, copies, [&, T, mode](Bench& b, int R) {
                glm_context& c = b.ctx();
                std::vector<glm_tensor*> src;
                for (int i = 0; i < copies; ++i)
                    src.push_back(topk_alone ? b.leaf(c.new_tensor_2d(GLM_TYPE_F32, T, 1), Fill::F32)
                                            : b.leaf(c.new_tensor_2d(GLM_TYPE_BF16, kIdxD, T), Fill::BF16));
                glm_tensor* q = b.leaf(c.new_tensor_3d(GLM_TYPE_F32, kIdxD, kIdxH, 1), Fill::F32);
                glm_tensor* w = b.leaf(c.new_tensor_2d(GLM_TYPE_F32, kIdxH, 1), Fill::F32);
                glm_tensor* pos = b.leaf_i32(c.new_tensor_1d(GLM_TYPE_I32, 1), {int32_t(T - 1)});
                const float scale = 1.0f / std::sqrt(float(kIdxD));
                for (int i = 0; i < R; ++i) {
                    glm_tensor* s = src[size_t(i % copies)];
                    if (topk_alone) {
                        b.add_rep(mode == 2 ? glm_top_k_by_index(c, s, int(kTopK)) : glm_top_k(c, s, int(kTopK)));
                    } else {
                        glm_tensor* sc = glm_indexer(c, q, s, w, pos, scale);
                        b.add_rep(mode == 0 ? glm_top_k_by_index(c, sc, int(kTopK)) : sc);
                    }
                }
            }, mode == 1 ? 0 : T, out));
            Result& x = out.back();
            if (mode == 0 && T == 131072) x.met = x.us <= 40.0;
        }
    }
    return {};
}

// ---- prefill GEMMs (tensor cores) against cuBLAS ----------------------------------------------
constexpr int64_t kVocabRank = 38720;            // vocab 154,880 / TP4
constexpr int64_t kKvbRows = 16 * (192 + 256);   // kv_b per rank: 16 heads x (qk_nope 192 + v 256)
constexpr int64_t kAttnRank = 16 * 256;          // o_proj input per rank: 16 heads x v_head 256
constexpr int64_t kQbRows = 16 * (192 + 64);     // q_b per rank: 16 heads x (qk_nope 192 + rope 64)
constexpr int64_t kQLora = 2048, kKvLora = 512;
constexpr int64_t kPrefillTokens = 2048;         // routed-expert prefill: 2048 tokens x 8 slots

// Reps so that one graph runs ~20 ms at ~300 TFLOP/s, 3..30.
int prefill_reps(double flops) {
    const double est_us = flops / 300e6 + 5.0;
    return int(std::clamp(20000.0 / est_us, 3.0, 30.0));
}

void print_tflops(const Result& r) {
    const double t = r.flops / (r.us * 1e6);
    fmt::print(stderr, "  {:<28} {:>9.1f} TFLOP/s{}\n", "", t,
               r.cublas_us ? fmt::format("   cuBLAS bf16 {:.2f} us = {:.1f} TFLOP/s", *r.cublas_us,
                                         r.flops / (*r.cublas_us * 1e6))
                           : std::string());
}

Status bench_prefill(const Config& cfg, std::vector<Result>& out) {
    CublasRef cublas;
    const Status cublas_ok = cublas.init();
    if (!cublas_ok) fmt::print(stderr, "  (no cuBLAS reference: {})\n", cublas_ok.message());
    auto reference = [&](Result& r, const std::function<Status(double*)>& fn) {
        double us = 0;
        if (!cublas_ok) return;
        if (Status st = fn(&us); st) r.cublas_us = us;
        else fmt::print(stderr, "  (cuBLAS reference failed: {})\n", st.message());
    };

    // Routed experts: each token picks 8 distinct experts of 160 uniformly at random (fixed seed).
    std::vector<int32_t> ids;
    std::vector<int> counts(static_cast<size_t>(kExperts), 0);
    Rng rng(11);
    for (int64_t t = 0; t < kPrefillTokens; ++t) {
        std::vector<int32_t> all(static_cast<size_t>(kExperts));
        std::iota(all.begin(), all.end(), 0);
        for (int64_t j = 0; j < kUsed; ++j) {
            std::swap(all[size_t(j)], all[size_t(j + int64_t(rng.next() % uint64_t(kExperts - j)))]);
            ids.push_back(all[size_t(j)]);
            ++counts[size_t(all[size_t(j)])];
        }
    }
    struct Moe {
        const char* id;
        const char* kernel;
        int64_t K, M;
        bool down;
    };
    const Moe moes[] = {
        {"prefill_moe_gate_up", "NVFP4 experts gate+up fused (mul_mat_id, grouped MMA)", kEmbd, 2 * kFfRank, false},
        {"prefill_moe_down", "NVFP4 experts down (mul_mat_id, grouped MMA)", kFfRank, kEmbd, true},
    };
    for (const Moe& g : moes) {
        Result r;
        r.id = g.id;
        r.kernel = g.kernel;
        r.shape = fmt::format("K={} M={}, {} tokens x 8 of {} experts", g.K, g.M, kPrefillTokens, kExperts);
        r.flops = 2.0 * double(g.K) * double(g.M) * double(kPrefillTokens * kUsed);
        r.bytes = nvfp4_bytes(g.K, g.M, kExperts) + double(g.K) * 4 * double(kPrefillTokens * (g.down ? kUsed : 1)) +
                  double(g.M) * 4 * double(kPrefillTokens * kUsed);
        r.target = "-";
        GLM_TRY(run_bench(cfg, r, prefill_reps(r.flops), 1, [&](Bench& b, int R) {
            glm_tensor* w = b.nvfp4(g.K, g.M, kExperts);
            glm_tensor* x = b.leaf(b.ctx().new_tensor_3d(GLM_TYPE_F32, g.K, g.down ? kUsed : 1, kPrefillTokens), Fill::F32);
            glm_tensor* id = b.leaf_i32(b.ctx().new_tensor_2d(GLM_TYPE_I32, kUsed, kPrefillTokens), ids);
            for (int i = 0; i < R; ++i) b.add_rep(glm_mul_mat_id(b.ctx(), w, x, id));
        }, 0, out));
        reference(out.back(), [&](double* us) { return cublas.grouped(g.M, g.K, counts, us); });
        print_tflops(out.back());
    }

    struct Dense {
        const char* id;
        const char* name;
        int64_t M, K;
    };
    const Dense dense[] = {
        {"prefill_o_proj", "o_proj", kEmbd, kAttnRank},
        {"prefill_q_b", "q_b", kQbRows, kQLora},
        {"prefill_kv_b", "kv_b (expanded K/V)", kKvbRows, kKvLora},
        {"prefill_lm_head", "lm_head slice", kVocabRank, kEmbd},
    };
    for (const Dense& g : dense) {
        for (int64_t N : {int64_t(512), int64_t(2048)}) {
            Result r;
            r.id = fmt::format("{}_N{}", g.id, N);
            r.kernel = fmt::format("BF16 GEMM {} (mul_mat, MMA)", g.name);
            r.shape = fmt::format("{}x{} (M={} K={}), N={}", g.M, g.K, g.M, g.K, N);
            r.flops = 2.0 * double(g.M) * double(g.K) * double(N);
            const size_t wbytes = size_t(g.M * g.K * 2);
            r.bytes = double(wbytes) + double(g.K * N) * 4 + double(g.M * N) * 4;
            r.target = "-";
            const int reps = prefill_reps(r.flops);
            const int copies = choose_copies(wbytes, reps);
            GLM_TRY(run_bench(cfg, r, reps, copies, [&](Bench& b, int R) {
                std::vector<glm_tensor*> w;
                for (int c = 0; c < copies; ++c) w.push_back(b.leaf(b.ctx().new_tensor_2d(GLM_TYPE_BF16, g.K, g.M), Fill::BF16));
                glm_tensor* x = b.leaf(b.ctx().new_tensor_2d(GLM_TYPE_F32, g.K, N), Fill::F32);
                for (int i = 0; i < R; ++i) b.add_rep(glm_mul_mat(b.ctx(), w[size_t(i % copies)], x));
            }, 0, out));
            reference(out.back(), [&](double* us) { return cublas.dense(g.M, N, g.K, copies, us); });
            print_tflops(out.back());
        }
    }
    return {};
}

void evaluate(std::vector<Result>& rs) {
    for (Result& r : rs) {
        if (r.met) continue;
        if (r.target.rfind(">= ", 0) == 0 && r.target.find("of copy") != std::string::npos)
            r.met = r.pct >= std::atof(r.target.c_str() + 3);
    }
}

Status read_torch(const std::string& path, std::vector<Result>& rs) {
    std::ifstream f(path);
    if (!f) return Status::usage("cannot open --torch file {}", path);
    nlohmann::json j;
    try {
        f >> j;
    } catch (const std::exception& e) {
        return Status::bad_input("--torch file {}: {}", path, e.what());
    }
    if (!j.contains("results") || !j["results"].is_object()) return Status::bad_input("--torch file {}: no results object", path);
    for (Result& r : rs) {
        auto it = j["results"].find(r.id);
        if (it != j["results"].end() && it->is_object() && it->contains("us") && (*it)["us"].is_number())
            r.torch_us = (*it)["us"].get<double>();
    }
    return {};
}

int usage(const char* argv0) {
    fmt::print(stderr, "usage: {} [--json FILE] [--reps N] [--torch FILE] [--budget SECONDS] [--only GROUPS] [--mma MODE]\n"
                       "  --json FILE     also write the results as JSON\n"
                       "  --reps N        timing samples per kernel (default: adaptive, ~{}s per kernel)\n"
                       "  --torch FILE    fill the torch column from scripts/bench-torch.py --json FILE\n"
                       "  --budget S      seconds of timing per kernel when --reps is not given\n"
                       "  --only GROUPS   comma-separated subset of: experts, bf16, mla, indexer, prefill\n"
                       "  --mma MODE      activations of the prefill tensor-core GEMMs: bf16 (default) or bf16x2\n",
               argv0, Config{}.budget_s);
    return 1;
}

int real_main(int argc, char** argv) {
    Config cfg;
    std::string json_path, torch_path, only;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto val = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
        if (a == "--json") {
            const char* v = val();
            if (!v) return usage(argv[0]);
            json_path = v;
        } else if (a == "--torch") {
            const char* v = val();
            if (!v) return usage(argv[0]);
            torch_path = v;
        } else if (a == "--reps") {
            const char* v = val();
            if (!v || std::atoi(v) < 1) return usage(argv[0]);
            cfg.fixed_samples = std::atoi(v);
        } else if (a == "--budget") {
            const char* v = val();
            if (!v || !(std::atof(v) > 0)) return usage(argv[0]);
            cfg.budget_s = std::atof(v);
        } else if (a == "--only") {
            const char* v = val();
            if (!v) return usage(argv[0]);
            only = std::string(",") + v + ",";
        } else if (a == "--mma") {
            const char* v = val();
            if (!v || (std::strcmp(v, "bf16") != 0 && std::strcmp(v, "bf16x2") != 0)) return usage(argv[0]);
            cuda_mma_set_activations(std::strcmp(v, "bf16x2") == 0 ? MmaActivations::bf16x2 : MmaActivations::bf16);
        } else {
            return usage(argv[0]);
        }
    }
    glm_set_log_level(LogLevel::warn);
    if (glm_cuda_device_count() == 0) {
        fmt::print("no CUDA device\n");
        return 0;
    }
    const auto t_start = Clock::now();
    cfg.start = t_start;
    CudaDeviceInfo info;
    if (Status st = glm_cuda_device_info(0, info); !st) {
        fmt::print(stderr, "error: {}\n", st.message());
        return st.exit_code();
    }
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    char date[32];
    const std::time_t now = std::time(nullptr);
    std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));

    double copy_us = 0;
    size_t copy_n = 0;
    auto fail = [](const Status& st) {
        fmt::print(stderr, "error: {}\n", st.message());
        return st.exit_code() ? st.exit_code() : 3;
    };
    if (Status st = measure_copy(cfg.copy_gbps, copy_us, copy_n); !st) return fail(st);
    fmt::print(stderr, "device: {} (sm_{}, {:.1f} GiB), driver {}, runtime {}\n", info.name, info.compute_capability,
               double(info.total_bytes) / (1u << 30), driver, runtime);
    fmt::print(stderr, "device copy {:.0f} MiB: {:.1f} us, {:.0f} GB/s (read + write)\n", double(copy_n) / (1 << 20),
               copy_us, cfg.copy_gbps);

    std::vector<Result> rs;
    struct Group {
        const char* key;
        const char* name;
        std::function<Status(const Config&, std::vector<Result>&)> fn;
    };
    const Group groups[] = {{"experts", "NVFP4 experts", bench_experts},
                            {"bf16", "BF16 GEMV", bench_bf16},
                            {"mla", "MLA decode", bench_mla},
                            {"indexer", "indexer", bench_indexer},
                            {"prefill", "Prefill GEMMs (tensor cores) vs cuBLAS bf16", bench_prefill}};
    int rc = 0;
    for (const auto& [key, name, fn] : groups) {
        if (!only.empty() && only.find(std::string(",") + key + ",") == std::string::npos) continue;
        fmt::print(stderr, "{}:\n", name);
        if (Status st = fn(cfg, rs); !st) {
            rc = fail(st);  // keep what was measured; report the failure
            fmt::print(stderr, "  ({} stopped)\n", name);
        }
    }
    evaluate(rs);
    if (!torch_path.empty())
        if (Status st = read_torch(torch_path, rs); !st) fmt::print(stderr, "warning: {}\n", st.message());

    // ---- Markdown table -------------------------------------------------------------------------
    fmt::print("## glmrun kernel benchmark ({})\n\n", date);
    fmt::print("Device: {} (sm_{}), driver {}, runtime {}. Device copy ({:.0f} MiB D2D, read + write): {:.1f} us = "
               "**{:.0f} GB/s** (the 100% of \"% of copy\").\n\n",
               info.name, info.compute_capability, driver, runtime, double(copy_n) / (1 << 20), copy_us, cfg.copy_gbps);
    fmt::print("| kernel | shape | median us | bytes | GB/s | % of copy | target | met | torch us |\n");
    fmt::print("|---|---|---:|---:|---:|---:|---|---|---:|\n");
    for (const Result& r : rs) {
        if (r.flops > 0) continue;  // prefill GEMMs: their own table below
        const std::string met = r.met ? (*r.met ? "yes" : "**no**") : "-";
        const std::string torch = r.torch_us ? fmt::format("{:.2f}", *r.torch_us) : "-";
        fmt::print("| {}{} | {} | {:.2f} | {} | {:.0f} | {:.1f}% | {} | {} | {} |\n", r.kernel,
                   r.sanity.empty() ? "" : " (SANITY: " + r.sanity + ")", r.shape, r.us, fmt_bytes(r.bytes), r.gbps,
                   r.pct, r.target, met, torch);
    }
    // Sum of the separately timed projections of one MoE layer, for comparison with moe_layer.
    double sum_layer = 0;
    int found = 0;
    for (const Result& r : rs)
        if (r.id == "moe_gate" || r.id == "moe_up" || r.id == "moe_down") sum_layer += r.us, ++found;
    if (found == 3) fmt::print("\nSum of separately timed gate + up + down: {:.2f} us.\n", sum_layer);
    // Prefill GEMMs: compute-bound, so TFLOP/s against cuBLAS bf16 at the same shapes.
    bool any_prefill = false;
    for (const Result& r : rs) any_prefill |= r.flops > 0;
    if (any_prefill) {
        fmt::print("\n### Prefill GEMMs (tensor cores, activations {})\n\n",
                   cuda_mma_activations() == MmaActivations::bf16x2 ? "bf16 hi + lo" : "bf16");
        fmt::print("| kernel | shape | median us | TFLOP/s | cuBLAS bf16 us | cuBLAS TFLOP/s | glmrun / cuBLAS time | torch us |\n");
        fmt::print("|---|---|---:|---:|---:|---:|---:|---:|\n");
        for (const Result& r : rs) {
            if (r.flops <= 0) continue;
            const std::string cb = r.cublas_us ? fmt::format("{:.2f}", *r.cublas_us) : "-";
            const std::string cbt = r.cublas_us ? fmt::format("{:.1f}", r.flops / (*r.cublas_us * 1e6)) : "-";
            const std::string ratio = r.cublas_us ? fmt::format("{:.2f}x", r.us / *r.cublas_us) : "-";
            const std::string torch = r.torch_us ? fmt::format("{:.2f}", *r.torch_us) : "-";
            fmt::print("| {}{} | {} | {:.2f} | {:.1f} | {} | {} | {} | {} |\n", r.kernel,
                       r.sanity.empty() ? "" : " (SANITY: " + r.sanity + ")", r.shape, r.us, r.flops / (r.us * 1e6), cb,
                       cbt, ratio, torch);
        }
        fmt::print("\ncuBLAS: cublasGemmEx / cublasGemmGroupedBatchedEx, bf16 in and out, f32 compute, events around "
                   "each call (median of 15), activations already bf16 and gathered per expert; the experts' cuBLAS "
                   "weights are bf16 (3.6x the NVFP4 bytes).\n");
    }
    fmt::print("\nmedian us = per-op slope (T(R) - T(1)) / (R - 1) of std::chrono around graph_compute + synchronize; "
               "bytes = weights/cache read once + activations in + outputs out; NVFP4 = 9/16 byte per weight "
               "(codes + E4M3 scale per 16). Total wall time {:.1f} s.\n",
               seconds_since(t_start));

    if (!json_path.empty()) {
        nlohmann::json j;
        j["date"] = date;
        j["device"] = {{"name", info.name}, {"sm", info.compute_capability}, {"total_bytes", info.total_bytes},
                       {"driver", driver}, {"runtime", runtime}};
        j["copy"] = {{"bytes_each_way", copy_n}, {"us", copy_us}, {"gbps", cfg.copy_gbps}};
        j["timing"] = "std::chrono around graph_compute + synchronize; per-op = (median T(R) - median T(1)) / (R - 1)";
        j["mma_activations"] = cuda_mma_activations() == MmaActivations::bf16x2 ? "bf16x2" : "bf16";
        nlohmann::json arr = nlohmann::json::array();
        for (const Result& r : rs) {
            nlohmann::json e = {{"id", r.id}, {"kernel", r.kernel}, {"shape", r.shape}, {"us", r.us},
                                {"amortised_us", r.amort_us}, {"t1_us", r.t1_us}, {"reps", r.reps},
                                {"samples", r.samples}, {"copies", r.copies}, {"bytes", r.bytes}, {"gbps", r.gbps},
                                {"pct_of_copy", r.pct}, {"target", r.target}, {"sanity", r.sanity.empty() ? "ok" : r.sanity}};
            e["met"] = r.met ? nlohmann::json(*r.met) : nlohmann::json(nullptr);
            e["torch_us"] = r.torch_us ? nlohmann::json(*r.torch_us) : nlohmann::json(nullptr);
            if (r.flops > 0) {
                e["flops"] = r.flops;
                e["tflops"] = r.flops / (r.us * 1e6);
                e["cublas_us"] = r.cublas_us ? nlohmann::json(*r.cublas_us) : nlohmann::json(nullptr);
            }
            arr.push_back(std::move(e));
        }
        j["results"] = std::move(arr);
        if (found == 3) j["moe_layer_sum_of_parts_us"] = sum_layer;
        std::ofstream f(json_path);
        if (!f) {
            fmt::print(stderr, "error: cannot write {}\n", json_path);
            return 1;
        }
        f << j.dump(2) << "\n";
    }
    return rc;
}

}  // namespace

int main(int argc, char** argv) { return real_main(argc, argv); }
