// The CUDA communicator (cuda/all-reduce.cu) on 2 GPUs and on every visible GPU: the peer-to-peer
// path must equal the host's rank-order sum bit for bit, NCCL must be within rounding of it; both
// survive 10,000 CUDA-graph replays with inputs that change on every replay; bad rank lists are
// refused with a message. Every wait is bounded: a broken barrier fails the test, it never hangs it.
#include <cuda_runtime_api.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "cuda/all-reduce.cuh"
#include "cuda/backend.h"
#include "ggml-like/tp.h"
#include "tp-test-kernels.h"

namespace {

struct Ranks {
    std::vector<std::unique_ptr<glm_backend>> owned;
    std::vector<glm_backend*> ptrs;
    int size() const { return int(ptrs.size()); }
};

Ranks make_ranks(int n) {
    Ranks ranks;
    for (int d = 0; d < n; ++d) {
        std::unique_ptr<glm_backend> b;
        const Status st = glm_backend_cuda_create(d, b);
        REQUIRE_MESSAGE(st.ok(), st.message());
        ranks.ptrs.push_back(b.get());
        ranks.owned.push_back(std::move(b));
    }
    return ranks;
}

// 2 and every visible GPU (once when that is 2); empty below 2 GPUs, with a message.
std::vector<int> rank_counts() {
    const int n = glm_cuda_device_count();
    if (n < 2) {
        MESSAGE("fewer than 2 CUDA devices (" << n << "): skipping (these tests run on a multi-GPU machine)");
        return {};
    }
    return n == 2 ? std::vector<int>{2} : std::vector<int>{2, n};
}

// Wait until every rank's stream is idle, for at most `seconds`: a kernel that never finishes fails
// the test instead of hanging it.
bool wait_idle(const Ranks& ranks, double seconds, std::string& error) {
    const auto t0 = std::chrono::steady_clock::now();
    for (glm_backend* b : ranks.ptrs) {
        cudaStream_t s = cuda_backend_stream(b);
        while (true) {
            const cudaError_t err = cudaStreamQuery(s);
            if (err == cudaSuccess) break;
            if (err != cudaErrorNotReady) {
                error = std::string(b->name()) + ": " + cudaGetErrorString(err);
                return false;
            }
            if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > seconds) {
                error = std::string(b->name()) + " still busy after " + std::to_string(int(seconds)) + " s";
                return false;
            }
            std::this_thread::sleep_for(std::chrono::microseconds(50));
        }
    }
    return true;
}

#define REQUIRE_IDLE(ranks)                                                  \
    do {                                                                     \
        std::string idle_error_;                                             \
        const bool idle_ok_ = wait_idle((ranks), 120.0, idle_error_);        \
        REQUIRE_MESSAGE(idle_ok_, "GPU work did not finish: " << idle_error_); \
    } while (0)

// One all-reduce's tensors on every rank: src[r] -> node[r] (an ALL_REDUCE node), each rank's pair
// in its own buffer. misalign shifts both by that many bytes (the kernel's scalar path); in_place
// puts the node on the bytes of its source.
struct Message {
    glm_context ctx;
    int64_t n = 0;
    std::vector<glm_tensor*> src, node;
};

std::unique_ptr<Message> make_message(Ranks& ranks, int64_t n, size_t misalign = 0, bool in_place = false) {
    auto m = std::make_unique<Message>();
    m->n = n;
    const size_t bytes = size_t(n) * sizeof(float);
    const size_t node_offset = in_place ? misalign : (misalign + bytes + 255) / 256 * 256 + misalign;
    for (glm_backend* b : ranks.ptrs) {
        glm_buffer* buf = nullptr;
        const Status st = b->alloc_buffer(node_offset + bytes + 256, "all-reduce test", &buf);
        REQUIRE_MESSAGE(st.ok(), st.message());
        glm_tensor* src = m->ctx.new_tensor_1d(GLM_TYPE_F32, n);
        glm_tensor* node = glm_all_reduce(m->ctx, src);
        glm_place(src, buf, misalign);
        glm_place(node, buf, node_offset);
        m->src.push_back(src);
        m->node.push_back(node);
    }
    return m;
}

std::vector<float> read(glm_backend* b, const glm_tensor* t) {
    std::vector<float> out(size_t(glm_nelements(t)));
    b->tensor_get(t, out.data(), 0, out.size() * sizeof(float));
    return out;
}

std::string first_difference(const std::vector<float>& got, const std::vector<float>& want) {
    for (size_t i = 0; i < want.size(); ++i)
        if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0)
            return "element " + std::to_string(i) + ": got " + std::to_string(got[i]) + ", want " +
                   std::to_string(want[i]);
    return "";
}

// Random inputs with magnitudes over 2^-10 .. 2^10, so the order of the additions shows in the
// rounding; the host reference sums in rank order from +0, as the communicator promises.
struct Inputs {
    std::vector<std::vector<float>> x;
    std::vector<float> sum, abs_sum;
};

Inputs random_inputs(int n_ranks, int64_t n, uint32_t seed) {
    Inputs in;
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::uniform_int_distribution<int> e(-10, 10);
    in.x.resize(size_t(n_ranks));
    in.sum.assign(size_t(n), 0.0f);
    in.abs_sum.assign(size_t(n), 0.0f);
    for (int r = 0; r < n_ranks; ++r) {
        in.x[size_t(r)].resize(size_t(n));
        for (int64_t i = 0; i < n; ++i) {
            const float v = std::ldexp(u(rng), e(rng));
            in.x[size_t(r)][size_t(i)] = v;
            in.sum[size_t(i)] += v;
            in.abs_sum[size_t(i)] += std::fabs(v);
        }
    }
    return in;
}

void upload(Ranks& ranks, Message& m, const Inputs& in) {
    for (int r = 0; r < ranks.size(); ++r)
        ranks.ptrs[size_t(r)]->tensor_set(m.src[size_t(r)], in.x[size_t(r)].data(), 0, size_t(m.n) * sizeof(float));
}

enum class Expect { exact, close };

void run_and_compare(Ranks& ranks, glm_comm& comm, Message& m, const Inputs& in, Expect expect) {
    upload(ranks, m, in);
    const Status st = comm.all_reduce(m.node);
    REQUIRE_MESSAGE(st.ok(), st.message());
    REQUIRE_IDLE(ranks);
    for (int r = 0; r < ranks.size(); ++r) {
        CAPTURE(r);
        const std::vector<float> got = read(ranks.ptrs[size_t(r)], m.node[size_t(r)]);
        if (expect == Expect::exact) {
            const std::string diff = first_difference(got, in.sum);
            CHECK_MESSAGE(diff.empty(), comm.name() << " differs from the host rank-order sum at " << diff);
        } else {
            // NCCL adds in its own order: each of the N - 1 additions may round once.
            const float rel = 1.2e-7f * float(ranks.size());
            int64_t bad = 0, first = -1;
            for (size_t i = 0; i < got.size(); ++i)
                if (!(std::fabs(got[i] - in.sum[i]) <= rel * in.abs_sum[i])) {
                    if (first < 0) first = int64_t(i);
                    ++bad;
                }
            CHECK_MESSAGE(bad == 0, comm.name() << ": " << bad << " elements outside the rounding bound, first at "
                                                << first << " (got " << got[size_t(std::max<int64_t>(first, 0))]
                                                << ", want " << in.sum[size_t(std::max<int64_t>(first, 0))] << ")");
        }
    }
}

std::unique_ptr<glm_comm> make_comm(Ranks& ranks, bool allow_p2p, size_t p2p_max_bytes = size_t(1) << 20) {
    CudaCommOptions opt;
    opt.allow_p2p = allow_p2p;
    opt.p2p_max_bytes = p2p_max_bytes;
    std::unique_ptr<glm_comm> comm;
    const Status st = glm_cuda_comm_create(ranks.ptrs, opt, comm);
    REQUIRE_MESSAGE(st.ok(), st.message());
    return comm;
}

// A step of the replay test: every rank fills each message's input from its step counter, the
// messages are all-reduced in turn, and every counter advances.
struct Stepper {
    Ranks& ranks;
    glm_comm& comm;
    std::vector<Message*> messages;
    std::vector<glm_tensor*> counters;  // one uint32 per rank

    Status launch() {
        for (size_t k = 0; k < messages.size(); ++k) {
            Message& m = *messages[k];
            for (int r = 0; r < ranks.size(); ++r) {
                glm_backend* b = ranks.ptrs[size_t(r)];
                cudaSetDevice(cuda_backend_device(b));
                tp_test_fill(static_cast<float*>(m.src[size_t(r)]->data), m.n, r, int(k),
                             static_cast<const uint32_t*>(counters[size_t(r)]->data), cuda_backend_stream(b));
            }
            GLM_TRY(comm.all_reduce(m.node));
        }
        for (int r = 0; r < ranks.size(); ++r) {
            glm_backend* b = ranks.ptrs[size_t(r)];
            cudaSetDevice(cuda_backend_device(b));
            tp_test_bump(static_cast<uint32_t*>(counters[size_t(r)]->data), cuda_backend_stream(b));
        }
        const cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess) return Status::device("test kernels: {}", cudaGetErrorString(err));
        return {};
    }

    // After `steps` completed steps: every rank holds, for every message, the sum of step steps - 1.
    void check(uint32_t steps) {
        REQUIRE_IDLE(ranks);
        for (int r = 0; r < ranks.size(); ++r) {
            glm_backend* b = ranks.ptrs[size_t(r)];
            uint32_t counter = 0;
            b->tensor_get(counters[size_t(r)], &counter, 0, sizeof(counter));
            REQUIRE(counter == steps);
            for (size_t k = 0; k < messages.size(); ++k) {
                const Message& m = *messages[k];
                std::vector<float> want(size_t(m.n), 0.0f);
                for (int q = 0; q < ranks.size(); ++q)
                    for (int64_t i = 0; i < m.n; ++i) want[size_t(i)] += tp_test_value(q, steps - 1, int(k), i);
                const std::string diff = first_difference(read(b, m.node[size_t(r)]), want);
                CHECK_MESSAGE(diff.empty(), comm.name() << " after step " << steps << ", rank " << r << ", message "
                                                        << k << " (" << m.n << " floats): " << diff);
            }
        }
        const Status st = cuda_comm_check(comm);
        CHECK_MESSAGE(st.ok(), st.message());
    }
};

std::vector<glm_tensor*> make_counters(Ranks& ranks, glm_context& ctx) {
    std::vector<glm_tensor*> counters;
    for (glm_backend* b : ranks.ptrs) {
        glm_buffer* buf = nullptr;
        const Status st = b->alloc_buffer(256, "step counter", &buf);
        REQUIRE_MESSAGE(st.ok(), st.message());
        glm_tensor* t = ctx.new_tensor_1d(GLM_TYPE_I32, 1);
        glm_place(t, buf, 0);
        const uint32_t zero = 0;
        b->tensor_set(t, &zero, 0, sizeof(zero));
        counters.push_back(t);
    }
    return counters;
}

// Capture one step on every rank through the backends' own recording (capture_begin / capture_end,
// what the engine uses): each rank's graph holds its fills, its all-reduce kernels and its counter
// bump. Every open capture is ended, even after a failure. Returns the graph id of each rank.
std::vector<int> capture_step(Stepper& stepper) {
    Ranks& ranks = stepper.ranks;
    std::vector<int> ids(size_t(ranks.size()), -1);
    std::string error;
    int begun = 0;
    for (; begun < ranks.size() && error.empty(); ++begun) {
        const Status st = ranks.ptrs[size_t(begun)]->capture_begin();
        if (!st.ok()) {
            error = st.message();
            break;
        }
    }
    if (error.empty()) {
        const Status st = stepper.launch();
        if (!st.ok()) error = st.message();
    }
    for (int r = 0; r < begun; ++r) {
        const Status st = ranks.ptrs[size_t(r)]->capture_end(&ids[size_t(r)]);
        if (!st.ok() && error.empty()) error = st.message();
    }
    REQUIRE_MESSAGE(error.empty(), error);
    return ids;
}

}  // namespace

TEST_CASE("all-reduce: peer-to-peer is bit-exact and NCCL close to the host rank-order sum") {
    for (int n_ranks : rank_counts()) {
        CAPTURE(n_ranks);
        Ranks ranks = make_ranks(n_ranks);
        auto custom = make_comm(ranks, true);
        const size_t max_bytes = size_t(1) << 20;
        const bool p2p = cuda_comm_uses_p2p(*custom, max_bytes);
        if (!p2p) MESSAGE("no peer access between these " << n_ranks << " GPUs: the custom path is NCCL here");
        auto host = glm_comm_host_create(ranks.ptrs);
#ifdef GLMRUN_HAVE_NCCL
        auto nccl = make_comm(ranks, false);
        CHECK(!cuda_comm_uses_p2p(*nccl, 4));
#endif
        struct Case {
            int64_t n;
            size_t misalign;
            bool in_place;
        };
        const int64_t max_floats = int64_t(max_bytes / sizeof(float));
        const std::vector<Case> cases = {{1, 0, false},     {7, 0, false},     {3072, 0, false},
                                         {3073, 0, false},  {6144, 0, false},  {12289, 0, false},
                                         {max_floats, 0, false}, {3073, 4, false}, {12289, 8, false},
                                         {6144, 0, true},   {max_floats, 4, true}};
        uint32_t seed = 1;
        for (const Case& c : cases) {
            CAPTURE(c.n);
            CAPTURE(c.misalign);
            CAPTURE(c.in_place);
            auto m = make_message(ranks, c.n, c.misalign, c.in_place);
            const Inputs in = random_inputs(n_ranks, c.n, seed++);
            run_and_compare(ranks, *host, *m, in, Expect::exact);
            run_and_compare(ranks, *custom, *m, in, p2p ? Expect::exact : Expect::close);
#ifdef GLMRUN_HAVE_NCCL
            run_and_compare(ranks, *nccl, *m, in, Expect::close);
#endif
        }
        // A receive slot that is not a multiple of 16 bytes, and a message of exactly that size.
        auto odd = make_comm(ranks, true, 12292);
        auto m = make_message(ranks, 3073);
        run_and_compare(ranks, *odd, *m, random_inputs(n_ranks, 3073, 99), p2p ? Expect::exact : Expect::close);
    }
}

TEST_CASE("all-reduce: eager calls of mixed sizes and block layouts keep every rank in step") {
    for (int n_ranks : rank_counts()) {
        CAPTURE(n_ranks);
        Ranks ranks = make_ranks(n_ranks);
        auto comm = make_comm(ranks, true);
        glm_context ctx;
        auto a = make_message(ranks, 3073), b = make_message(ranks, 262144), c = make_message(ranks, 7, 4);
        Stepper stepper{ranks, *comm, {a.get(), b.get(), c.get()}, make_counters(ranks, ctx)};
        // Layouts from 1 to 128 blocks between calls: the barrier's correctness must not depend on
        // consecutive calls cutting the message the same way.
        const CudaCommTuning base = cuda_comm_tuning(*comm);
        const CudaCommTuning layouts[] = {base, {128, 256, 128}, {512, 65536, 1}, {256, 64, 64}};
        uint32_t steps = 0;
        for (int i = 0; i < 2000; ++i) {
            if (cuda_comm_uses_p2p(*comm, 4)) cuda_comm_set_tuning(*comm, layouts[i % 4]);
            const Status st = stepper.launch();
            REQUIRE_MESSAGE(st.ok(), st.message());
            ++steps;
            if (steps == 1 || steps == 2 || steps == 3 || steps == 1000 || steps == 2000) stepper.check(steps);
        }
        if (cuda_comm_uses_p2p(*comm, 4)) cuda_comm_set_tuning(*comm, base);
    }
}

TEST_CASE("all-reduce: 10,000 CUDA-graph replays give each replay's own sum") {
    for (int n_ranks : rank_counts()) {
        CAPTURE(n_ranks);
        Ranks ranks = make_ranks(n_ranks);
        auto comm = make_comm(ranks, true);
        if (!cuda_comm_uses_p2p(*comm, 4)) MESSAGE("no peer access: replaying NCCL all-reduces instead");
        glm_context ctx;
        // 1 block, every block (1 MiB), and a misaligned one in between, in one graph.
        auto a = make_message(ranks, 3073), b = make_message(ranks, 262144), c = make_message(ranks, 12289, 4);
        Stepper stepper{ranks, *comm, {a.get(), b.get(), c.get()}, make_counters(ranks, ctx)};
        // One eager step first: modules loaded and buffers touched before capture.
        REQUIRE(stepper.launch().ok());
        stepper.check(1);
        REQUIRE(ranks.ptrs[0]->supports_capture());
        const std::vector<int> ids = capture_step(stepper);
        const uint32_t replays = 10000;
        const auto t0 = std::chrono::steady_clock::now();
        for (uint32_t i = 1; i <= replays; ++i) {
            for (int r = 0; r < n_ranks; ++r) {  // each rank's replay in turn, from this one thread
                const Status st = ranks.ptrs[size_t(r)]->replay(ids[size_t(r)]);
                REQUIRE_MESSAGE(st.ok(), st.message());
            }
            if (i == 1 || i == 2 || i == 3 || i == 100 || i == 5000 || i == replays) stepper.check(i + 1);
        }
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        MESSAGE(n_ranks << " GPUs: " << replays << " replays of 3 all-reduces in " << s << " s");
        // Eager calls after the replays still agree with the device-side call counters.
        REQUIRE(stepper.launch().ok());
        stepper.check(replays + 2);
    }
}

TEST_CASE("all-reduce: NCCL serves messages above the peer-to-peer maximum and allow_p2p=false") {
    for (int n_ranks : rank_counts()) {
        CAPTURE(n_ranks);
        Ranks ranks = make_ranks(n_ranks);
        CudaCommOptions opt;
        opt.allow_p2p = false;
        std::unique_ptr<glm_comm> off;
        const Status st = glm_cuda_comm_create(ranks.ptrs, opt, off);
#ifdef GLMRUN_HAVE_NCCL
        REQUIRE_MESSAGE(st.ok(), st.message());
        CHECK(!cuda_comm_uses_p2p(*off, 4));
        auto m = make_message(ranks, 3073);
        run_and_compare(ranks, *off, *m, random_inputs(n_ranks, 3073, 7), Expect::close);
        // 16 KiB peer-to-peer maximum: 4096 floats go peer-to-peer, 4097 through NCCL.
        auto small = make_comm(ranks, true, 16384);
        if (cuda_comm_uses_p2p(*small, 4)) {
            CHECK(cuda_comm_uses_p2p(*small, 16384));
            CHECK(!cuda_comm_uses_p2p(*small, 16388));
        }
        auto at = make_message(ranks, 4096), above = make_message(ranks, 4097);
        run_and_compare(ranks, *small, *at, random_inputs(n_ranks, 4096, 8),
                        cuda_comm_uses_p2p(*small, 4) ? Expect::exact : Expect::close);
        run_and_compare(ranks, *small, *above, random_inputs(n_ranks, 4097, 9), Expect::close);
#else
        REQUIRE(!st.ok());
        MESSAGE("built without NCCL: " << st.message());
        CHECK(st.message().find("NCCL") != std::string::npos);
        auto small = make_comm(ranks, true, 16384);
        auto above = make_message(ranks, 4097);
        const Status too_big = small->all_reduce(above->node);
        CHECK(!too_big.ok());
        CHECK(too_big.message().find("NCCL") != std::string::npos);
#endif
    }
}

TEST_CASE("all-reduce: rank lists it cannot serve are refused with a message") {
    if (glm_cuda_device_count() == 0) {
        MESSAGE("no CUDA device: skipping");
        return;
    }
    Ranks ranks = make_ranks(1);
    std::unique_ptr<glm_backend> again;
    REQUIRE(glm_backend_cuda_create(0, again).ok());
    std::unique_ptr<glm_comm> comm;
    Status st = glm_cuda_comm_create({ranks.ptrs[0], again.get()}, CudaCommOptions{}, comm);
    CHECK(!st.ok());
    CHECK(!comm);
    MESSAGE(st.message());
    CHECK(st.message().find("GPU 0") != std::string::npos);

    auto cpu = glm_backend_cpu_create(1);
    st = glm_cuda_comm_create({ranks.ptrs[0], cpu.get()}, CudaCommOptions{}, comm);
    CHECK(!st.ok());
    MESSAGE(st.message());
    CHECK(st.message().find("not a CUDA backend") != std::string::npos);

    st = glm_cuda_comm_create({}, CudaCommOptions{}, comm);
    CHECK(!st.ok());
}
