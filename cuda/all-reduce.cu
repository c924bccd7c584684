// The CUDA communicator (ggml-like/tp.h): N CUDA backends of one process, driven from one host
// thread. Two paths:
//
// - One-shot peer-to-peer (messages up to p2p_max_bytes, every pair of devices with peer access):
//   one kernel per rank on its backend's stream. Each rank PUSHES its input into slot `rank` of every
//   peer's receive area, then raises its flag on every peer; each rank waits for all flags in its
//   own memory and sums the N slots in rank order. Only local memory is polled and only stores cross
//   the link (pull-style one-shot, where ranks read each other's buffers, is known to hang over PCIe
//   peer-to-peer). Two launches and one flag round trip are the whole latency, against NCCL's
//   group launch machinery, which is what decode's small all-reduces pay for.
// - NCCL (larger messages, no peer access, or the caller's choice): ncclCommInitAll once, then
//   ncclGroupStart / ncclAllReduce per rank / ncclGroupEnd per call.
//
// Everything is allocated in glm_cuda_comm_create: no cudaMalloc on the generation path. The kernels
// keep their own call counter (the epoch) in device memory, so their launches can be captured into
// CUDA graphs and replayed any number of times: no host value changes between calls.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/all-reduce.cuh"
#include "cuda/backend.h"
#include "cuda/common.cuh"

#ifdef GLMRUN_HAVE_NCCL
#include <nccl.h>
#endif

namespace {

constexpr int kMaxRanks = 8;     // flags of one block fill one 32-byte sector
constexpr int kMaxBlocks = 128;  // flag rows and epoch copies per rank
// A rank waiting this long for a peer gives up and records an error instead of hanging the machine.
// Generous: a peer may legitimately still be running a long segment of its graph, or the host may
// still be launching its work (one host thread launches all ranks in turn).
constexpr uint64_t kTimeoutNs = 10ull * 1000 * 1000 * 1000;

// What the host learns of a timeout: mapped pinned memory, one record per rank, so the host reads it
// without synchronizing anything and no two devices write the same record.
struct ErrorRecord {
    uint32_t failed;
    uint32_t block;
    uint32_t peer;
    uint32_t epoch;
};

// Per-rank control words in device memory (peers write the flags and the abort word remotely).
struct Control {
    uint32_t epoch[kMaxBlocks];            // the call counter, one copy per block (see the kernel)
    uint32_t abort[8];                     // [0] != 0: some rank timed out; every launch returns at once
    uint32_t flags[kMaxBlocks][kMaxRanks]; // flags[b][q]: the last epoch rank q's block b announced
};

// Everything rank `rank`'s kernel needs, by value (a kernel parameter: nothing for a graph to go
// stale on). Peer addresses are plain device pointers: one process, unified addressing, peer access.
struct P2pArgs {
    float* area[kMaxRanks];       // receive areas: [2 parities][n_ranks slots][slot_floats]
    Control* control[kMaxRanks];
    ErrorRecord* error;           // this rank's record (mapped host memory)
    int64_t slot_floats;          // a multiple of 4: every slot starts 16-byte aligned
    int rank;
    int n_ranks;
};

__device__ __forceinline__ uint32_t ld_acquire_sys(const uint32_t* p) {
    uint32_t v;
    asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ void st_relaxed_sys(uint32_t* p, uint32_t v) {
    asm volatile("st.relaxed.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

__device__ __forceinline__ uint64_t globaltimer_ns() {
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

__device__ __forceinline__ float4 load4(const float* p, bool aligned) {
    if (aligned) return *reinterpret_cast<const float4*>(p);
    return make_float4(p[0], p[1], p[2], p[3]);
}

__device__ __forceinline__ void store4(float* p, float4 v, bool aligned) {
    if (aligned) {
        *reinterpret_cast<float4*>(p) = v;
    } else {
        p[0] = v.x;
        p[1] = v.y;
        p[2] = v.z;
        p[3] = v.w;
    }
}

// One-shot all-reduce, one launch per rank with the same grid on every rank. Block b owns elements
// [b * chunk, min(n, (b + 1) * chunk)) on every rank (chunk is a multiple of 4, so its float4s are
// 16-byte aligned in the receive areas); the barrier is per block: block b only waits for block b of
// the other ranks, because it only reads what they pushed. No block waits for another block of its
// own grid, so nothing depends on the blocks being co-resident.
//
// Epoch e = the number of peer-to-peer calls so far on this rank, the same on every rank because
// every rank makes the same calls in the same order. Every block keeps its own copy of the counter
// (block 0 also advances the copies of blocks beyond this grid), so no block reads a word another
// block of the same launch writes; kernels on one stream never overlap, so the copies stay equal.
//
// Why two parities suffice. Call e writes parity e % 2. Rank r can push epoch e + 2 into parity
// e % 2 only from its launch e + 2, which starts after its launch e + 1 finished, and launch e + 1
// contains at least block 0's barrier: it saw a flag e + 1 from every peer p. Peer p raised it from
// its own launch e + 1, which started only after p's launch e finished, including every read of
// epoch e (whatever the block layout of either call). Flags only grow; a peer can be at most one call
// ahead (it cannot pass barrier e + 1 before we raise our flag e + 1), hence the wait for >= e, and
// its early pushes go to the other parity.
__global__ void __launch_bounds__(1024) p2p_all_reduce_kernel(const float* src, float* dst, int64_t n,
                                                              int64_t chunk, bool src_vec, bool dst_vec,
                                                              P2pArgs a) {
    grid_dependency_wait();
    __shared__ uint32_t s_epoch;
    __shared__ int s_stop;
    const int b = blockIdx.x, tid = threadIdx.x, nt = blockDim.x;
    const int me = a.rank, N = a.n_ranks;
    Control* mine = a.control[me];
    const int64_t lo = int64_t(b) * chunk, hi = min(n, lo + chunk);
    const int64_t n4 = (hi - lo) / 4;
    // This thread's first float4s are loaded before the epoch is known (they do not depend on it),
    // so the two memory latencies overlap.
    constexpr int kUnroll = 4;
    float4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
        const int64_t i = tid + int64_t(u) * nt;
        if (i < n4) v[u] = load4(src + lo + 4 * i, src_vec);
    }
    if (tid == 0) {
        const uint32_t stop = *reinterpret_cast<volatile uint32_t*>(&mine->abort[0]);
        const uint32_t e = mine->epoch[b] + 1;
        mine->epoch[b] = e;
        if (b == 0)
            for (int i = gridDim.x; i < kMaxBlocks; ++i) mine->epoch[i] = e;
        s_epoch = e;
        s_stop = stop != 0;
    }
    __syncthreads();
    if (s_stop) return;  // a barrier already timed out: the communicator is dead, fail fast
    const uint32_t e = s_epoch;
    const int64_t parity = int64_t(e & 1) * N * a.slot_floats;
    const int64_t my_slot = parity + int64_t(me) * a.slot_floats;

    // 1. push this rank's elements into slot `me` of every peer (its own slot is never written: the
    //    sum reads src directly). Loads first, then stores, so several are in flight per thread.
    for (int64_t base = tid; base < n4; base += int64_t(kUnroll) * nt) {
        if (base != tid) {
#pragma unroll
            for (int u = 0; u < kUnroll; ++u) {
                const int64_t i = base + int64_t(u) * nt;
                if (i < n4) v[u] = load4(src + lo + 4 * i, src_vec);
            }
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int64_t i = base + int64_t(u) * nt;
            if (i >= n4) break;
#pragma unroll
            for (int p = 0; p < kMaxRanks; ++p)
                if (p < N && p != me) *reinterpret_cast<float4*>(a.area[p] + my_slot + lo + 4 * i) = v[u];
        }
    }
    for (int64_t i = lo + 4 * n4 + tid; i < hi; i += nt) {  // the last block's 1..3 odd elements
        const float x = src[i];
        for (int p = 0; p < N; ++p)
            if (p != me) a.area[p][my_slot + i] = x;
    }

    // 2. barrier. Thread q < N raises this block's flag on peer q, then waits for peer q's flag here.
    //    The fence after __syncthreads orders every thread's pushes (cumulatively, through the
    //    barrier) before the flag store, at system scope: a peer that sees the flag sees the data.
    __syncthreads();
    if (tid < N && tid != me) {
        __threadfence_system();
        st_relaxed_sys(&a.control[tid]->flags[b][me], e);
        const uint32_t* flag = &mine->flags[b][tid];
        uint64_t t0 = 0;
        for (uint32_t spins = 1; int32_t(ld_acquire_sys(flag) - e) < 0; ++spins) {
            if (spins % 1024) continue;
            const uint64_t now = globaltimer_ns();
            if (t0 == 0) t0 = now;
            if (*reinterpret_cast<volatile uint32_t*>(&mine->abort[0]) != 0) {  // another rank gave up
                s_stop = 1;
                break;
            }
            if (now - t0 > kTimeoutNs) {
                a.error->block = uint32_t(b);
                a.error->peer = uint32_t(tid);
                a.error->epoch = e;
                __threadfence_system();
                *reinterpret_cast<volatile uint32_t*>(&a.error->failed) = 1;
                for (int p = 0; p < N; ++p) *reinterpret_cast<volatile uint32_t*>(&a.control[p]->abort[0]) = 1;
                printf("glmrun all-reduce: rank %d block %d waited %.0f s for rank %d (call %u): giving up\n", me, b,
                       double(kTimeoutNs) * 1e-9, tid, e);
                s_stop = 1;
                break;
            }
        }
    }
    __syncthreads();
    if (s_stop) return;

    // 3. sum the slots in rank order 0..N-1, starting from +0 like the host reference, so every rank
    //    gets bit-identical results equal to a host sum in rank order. The slots were written by
    //    peers during this kernel: read them through L2 (.cg), never from a possibly stale L1 line.
    const float* area = a.area[me] + parity;
    for (int64_t i = tid; i < n4; i += nt) {
        const int64_t off = lo + 4 * i;
        float4 v[kMaxRanks];
#pragma unroll
        for (int p = 0; p < kMaxRanks; ++p)
            if (p < N) v[p] = p == me ? load4(src + off, src_vec)
                                      : __ldcg(reinterpret_cast<const float4*>(area + p * a.slot_floats + off));
        float4 s = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
        for (int p = 0; p < kMaxRanks; ++p) {
            if (p < N) {
                s.x += v[p].x;
                s.y += v[p].y;
                s.z += v[p].z;
                s.w += v[p].w;
            }
        }
        store4(dst + off, s, dst_vec);
    }
    for (int64_t i = lo + 4 * n4 + tid; i < hi; i += nt) {
        float s = 0.0f;
        for (int p = 0; p < N; ++p) s += p == me ? src[i] : __ldcg(area + p * a.slot_floats + i);
        dst[i] = s;
    }
}

std::string format_bytes(size_t bytes) {
    if (bytes >= (size_t(1) << 20) && bytes % (size_t(1) << 20) == 0) return fmt::format("{} MiB", bytes >> 20);
    if (bytes >= 1024 && bytes % 1024 == 0) return fmt::format("{} KiB", bytes >> 10);
    return fmt::format("{} bytes", bytes);
}

// Restores the caller's current device on every exit path.
struct DeviceGuard {
    int saved = 0;
    DeviceGuard() { cudaGetDevice(&saved); }
    ~DeviceGuard() { cudaSetDevice(saved); }
};

#define COMM_CUDA(call)                                                                                 \
    do {                                                                                                \
        const cudaError_t comm_err_ = (call);                                                           \
        if (comm_err_ != cudaSuccess) {                                                                 \
            cudaGetLastError();                                                                         \
            return Status::device("all-reduce: {} failed: {}", #call, cudaGetErrorString(comm_err_));   \
        }                                                                                               \
    } while (0)

#ifdef GLMRUN_HAVE_NCCL
#define COMM_NCCL(call)                                                                                 \
    do {                                                                                                \
        const ncclResult_t comm_res_ = (call);                                                          \
        if (comm_res_ != ncclSuccess) {                                                                 \
            const char* last_ = ncclGetLastError(nullptr);                                              \
            return Status::device("all-reduce: {} failed: {}{}{}", #call, ncclGetErrorString(comm_res_), \
                                  last_ && *last_ ? " - " : "", last_ ? last_ : "");                    \
        }                                                                                               \
    } while (0)
#endif

class CudaComm final : public glm_comm {
public:
    ~CudaComm() override {
        DeviceGuard guard;
        const Status st = check();
        if (!st.ok()) log_error("{}", st.message());
        // Every device idle first: a peer's kernel still pushing into an area freed here would fault.
        // (The peer-to-peer kernels' waits are bounded, so this is too.)
        for (int d : devices_) {
            cudaSetDevice(d);
            cudaDeviceSynchronize();
        }
#ifdef GLMRUN_HAVE_NCCL
        for (ncclComm_t c : nccl_)
            if (c) ncclCommDestroy(c);
#endif
        for (size_t r = 0; r < areas_.size(); ++r) {
            cudaSetDevice(devices_[r]);
            if (areas_[r]) cudaFree(areas_[r]);
            if (controls_[r]) cudaFree(controls_[r]);
        }
        if (errors_) cudaFreeHost(errors_);
        cudaGetLastError();
    }

    const char* name() const override { return name_.c_str(); }
    int n_ranks() const override { return int(devices_.size()); }

    Status all_reduce(const std::vector<glm_tensor*>& nodes) override {
        GLM_TRY(check());
        GLM_ASSERT(nodes.size() == devices_.size());
        const int64_t n = glm_nelements(nodes[0]);
        bool src_vec = true, dst_vec = true;
        for (const glm_tensor* node : nodes) {
            const glm_tensor* src = node->src[0];
            GLM_ASSERT(node->op == GLM_OP_ALL_REDUCE && src && node->data && src->data);
            GLM_ASSERT(node->type == GLM_TYPE_F32 && src->type == GLM_TYPE_F32);
            GLM_ASSERT(glm_nelements(node) == n && glm_nelements(src) == n);
            GLM_ASSERT(glm_is_contiguous(node) && glm_is_contiguous(src));
            src_vec = src_vec && reinterpret_cast<uintptr_t>(src->data) % 16 == 0;
            dst_vec = dst_vec && reinterpret_cast<uintptr_t>(node->data) % 16 == 0;
        }
        if (n == 0) return {};
        const size_t bytes = size_t(n) * sizeof(float);
        DeviceGuard guard;
        if (uses_p2p(bytes)) return p2p_all_reduce(nodes, n, src_vec, dst_vec);
        return nccl_all_reduce(nodes, n, bytes);
    }

    bool uses_p2p(size_t bytes) const { return p2p_ && bytes <= p2p_max_bytes_; }
    bool capturable(size_t bytes) const override { return uses_p2p(bytes); }

    Status check() const {
#ifdef GLMRUN_HAVE_NCCL
        for (size_t r = 0; r < nccl_.size(); ++r) {
            ncclResult_t async = ncclSuccess;
            if (nccl_[r] && ncclCommGetAsyncError(nccl_[r], &async) == ncclSuccess && async != ncclSuccess &&
                async != ncclInProgress)
                return Status::device("all-reduce: NCCL failed on GPU {} (rank {}): {}", devices_[r], r,
                                      ncclGetErrorString(async));
        }
#endif
        if (!errors_) return {};
        for (size_t r = 0; r < devices_.size(); ++r) {
            const volatile ErrorRecord* rec = &errors_[r];
            if (!rec->failed) continue;
            return Status::device(
                "all-reduce: GPU {} (rank {}) waited {:.0f} s at call {} for GPU {} (rank {}), block {}, and gave up: "
                "the ranks no longer run the same all-reduces (a rank's work was never launched or failed). The "
                "communicator is unusable",
                devices_[r], r, double(kTimeoutNs) * 1e-9, rec->epoch, devices_[rec->peer], rec->peer, rec->block);
        }
        return {};
    }

    CudaCommTuning tuning() const { return tuning_; }
    void set_tuning(const CudaCommTuning& t) {
        GLM_ASSERT(t.threads >= 32 && t.threads <= max_threads_ && t.threads % 32 == 0);
        GLM_ASSERT(t.min_chunk_floats >= 1 && t.max_blocks >= 1);
        tuning_ = t;
        tuning_.max_blocks = std::min(t.max_blocks, std::min(kMaxBlocks, min_sm_));
    }

    Status init(const std::vector<glm_backend*>& ranks, const CudaCommOptions& options);

private:
    Status p2p_all_reduce(const std::vector<glm_tensor*>& nodes, int64_t n, bool src_vec, bool dst_vec) {
        // The same layout on every rank (it depends on n and the tuning only): block b of every rank
        // owns the same elements, which the per-block barrier relies on.
        const int64_t per_block = ceil_div(ceil_div(n, tuning_.max_blocks), 4) * 4;
        const int64_t chunk = std::max<int64_t>(ceil_div(tuning_.min_chunk_floats, 4) * 4, per_block);
        const int grid = int(ceil_div(n, chunk));
        GLM_ASSERT(grid >= 1 && grid <= kMaxBlocks);
        for (size_t r = 0; r < nodes.size(); ++r) {
            COMM_CUDA(cudaSetDevice(devices_[r]));
            cuda_launch(streams_[r], p2p_all_reduce_kernel, grid, tuning_.threads, 0,
                static_cast<const float*>(nodes[r]->src[0]->data), static_cast<float*>(nodes[r]->data), n, chunk,
                src_vec, dst_vec, args_[r]);
            COMM_CUDA(cudaGetLastError());
        }
        return {};
    }

    Status nccl_all_reduce(const std::vector<glm_tensor*>& nodes, int64_t n, size_t bytes) {
#ifdef GLMRUN_HAVE_NCCL
        COMM_NCCL(ncclGroupStart());
        for (size_t r = 0; r < nodes.size(); ++r) {
            const ncclResult_t res = ncclAllReduce(nodes[r]->src[0]->data, nodes[r]->data, size_t(n), ncclFloat,
                                                   ncclSum, nccl_[r], streams_[r]);
            if (res != ncclSuccess) {
                ncclGroupEnd();  // close the group before reporting, or NCCL stays inside it
                COMM_NCCL(res);
            }
        }
        COMM_NCCL(ncclGroupEnd());
        (void)bytes;
        return {};
#else
        (void)nodes;
        (void)n;
        (void)bytes;
        return Status::device("all-reduce: a {} message needs NCCL (the peer-to-peer path takes {}), and glmrun was "
                              "built without NCCL (configure with -DGLMRUN_NCCL_ROOT=/path/to/nccl)",
                              format_bytes(bytes), p2p_ ? "up to " + format_bytes(p2p_max_bytes_) : "nothing here");
#endif
    }

    Status init_p2p(size_t max_bytes);

    std::vector<int> devices_;
    std::vector<cudaStream_t> streams_;
    std::string name_ = "cuda";
    bool p2p_ = false;
    size_t p2p_max_bytes_ = 0;
    int min_sm_ = kMaxBlocks;
    int max_threads_ = 1024;  // of the kernel, as compiled (registers permitting)
    CudaCommTuning tuning_;
    std::vector<float*> areas_;
    std::vector<Control*> controls_;
    std::vector<P2pArgs> args_;
    ErrorRecord* errors_ = nullptr;  // n_ranks records, mapped pinned host memory
#ifdef GLMRUN_HAVE_NCCL
    std::vector<ncclComm_t> nccl_;
#endif
};

// Why peer-to-peer cannot be used between these devices ("" when it can).
std::string p2p_obstacle(const std::vector<int>& devices, const CudaCommOptions& options) {
    if (!options.allow_p2p) return "peer-to-peer path disabled by the caller";
    if (options.p2p_max_bytes < sizeof(float)) return "peer-to-peer maximum message size is 0";
    if (devices.size() > size_t(kMaxRanks)) return fmt::format("more than {} GPUs", kMaxRanks);
    for (int a : devices)
        for (int b : devices) {
            if (a == b) continue;
            int can = 0;
            if (cudaDeviceCanAccessPeer(&can, a, b) != cudaSuccess) {
                cudaGetLastError();
                can = 0;
            }
            if (!can) return fmt::format("no peer access from GPU {} to GPU {}", a, b);
        }
    return "";
}

Status CudaComm::init(const std::vector<glm_backend*>& ranks, const CudaCommOptions& options) {
    DeviceGuard guard;
    if (ranks.empty()) return Status::usage("all-reduce: no ranks");
    for (size_t r = 0; r < ranks.size(); ++r) {
        // cuda_backend_context aborts on other backends: tell the caller instead. CUDA backends are
        // the only ones named "cuda:<device>" (cuda/backend.cu).
        const char* name = ranks[r] ? ranks[r]->name() : "null";
        if (std::strncmp(name, "cuda:", 5) != 0)
            return Status::usage("all-reduce: rank {} runs on '{}', not a CUDA backend: every rank of the CUDA "
                                 "communicator must be a CUDA GPU",
                                 r, name);
        const CudaContext& ctx = cuda_backend_context(ranks[r]);
        for (size_t q = 0; q < r; ++q)
            if (devices_[q] == ctx.device)
                return Status::usage("all-reduce: ranks {} and {} are both on GPU {}: each rank needs its own GPU",
                                     q, r, ctx.device);
        devices_.push_back(ctx.device);
        streams_.push_back(ctx.stream);
        min_sm_ = std::min(min_sm_, ctx.n_sm);
    }
    const int n = int(devices_.size());
    tuning_.max_blocks = std::min(tuning_.max_blocks, min_sm_);

    const std::string obstacle = p2p_obstacle(devices_, options);
    if (obstacle.empty()) GLM_TRY(init_p2p(options.p2p_max_bytes));

#ifdef GLMRUN_HAVE_NCCL
    nccl_.assign(size_t(n), nullptr);
    const ncclResult_t init = ncclCommInitAll(nccl_.data(), n, devices_.data());
    if (init != ncclSuccess) {
        nccl_.assign(size_t(n), nullptr);  // what a failed init leaves there is not ours to destroy
        COMM_NCCL(init);
    }
    int version = 0;
    ncclGetVersion(&version);
    const std::string nccl_name = fmt::format("NCCL {}.{}.{}", version / 10000, version / 100 % 100, version % 100);
    if (p2p_) {
        name_ = "cuda-p2p+nccl";
        log_info("all-reduce: peer-to-peer one-shot for <= {} between {} GPUs (peer access on every pair), {} above",
                 format_bytes(p2p_max_bytes_), n, nccl_name);
    } else {
        name_ = "nccl";
        log_info("all-reduce: {} for every message between {} GPUs ({})", nccl_name, n, obstacle);
    }
#else
    if (!p2p_) {
        std::string list;
        for (int d : devices_) list += (list.empty() ? "" : ", ") + std::to_string(d);
        return Status::device("all-reduce: the peer-to-peer path cannot be used between GPUs {} ({}) and glmrun was "
                              "built without NCCL, its fallback (configure with -DGLMRUN_NCCL_ROOT=/path/to/nccl)",
                              list, obstacle);
    }
    name_ = "cuda-p2p";
    log_info("all-reduce: peer-to-peer one-shot for <= {} between {} GPUs (peer access on every pair); larger "
             "messages fail: glmrun was built without NCCL",
             format_bytes(p2p_max_bytes_), n);
#endif
    return {};
}

Status CudaComm::init_p2p(size_t max_bytes) {
    const int n = int(devices_.size());
    // Peer access is per (context, peer) and stays on for the process; "already enabled" (another
    // communicator, or the engine) is fine.
    for (int a : devices_) {
        COMM_CUDA(cudaSetDevice(a));
        for (int b : devices_) {
            if (a == b) continue;
            const cudaError_t err = cudaDeviceEnablePeerAccess(b, 0);
            if (err != cudaSuccess && err != cudaErrorPeerAccessAlreadyEnabled) {
                cudaGetLastError();
                return Status::device("all-reduce: enabling peer access from GPU {} to GPU {} failed: {}", a, b,
                                      cudaGetErrorString(err));
            }
            cudaGetLastError();  // clear a sticky "already enabled"
        }
    }
    const int64_t slot_floats = ceil_div(ceil_div(int64_t(max_bytes), int64_t(sizeof(float))), 4) * 4;
    const size_t area_bytes = 2 * size_t(n) * size_t(slot_floats) * sizeof(float);
    areas_.assign(size_t(n), nullptr);
    controls_.assign(size_t(n), nullptr);
    COMM_CUDA(cudaHostAlloc(reinterpret_cast<void**>(&errors_), sizeof(ErrorRecord) * size_t(n),
                            cudaHostAllocMapped | cudaHostAllocPortable));
    std::memset(errors_, 0, sizeof(ErrorRecord) * size_t(n));
    for (int r = 0; r < n; ++r) {
        COMM_CUDA(cudaSetDevice(devices_[r]));
        if (cudaMalloc(reinterpret_cast<void**>(&areas_[r]), area_bytes) != cudaSuccess) {
            cudaGetLastError();
            return Status::device("out of GPU memory on GPU {}: the all-reduce receive area needs {:.1f} MiB", devices_[r],
                                  double(area_bytes) / (1 << 20));
        }
        COMM_CUDA(cudaMalloc(reinterpret_cast<void**>(&controls_[r]), sizeof(Control)));
        COMM_CUDA(cudaMemset(controls_[r], 0, sizeof(Control)));
        // Load the kernel on this device now: under lazy module loading, a first launch that loads it
        // could wait for work already running there, such as a peer-to-peer kernel spinning for this
        // very rank (the CUDA guide's lazy-loading hazard for kernels that wait on each other).
        cudaFuncAttributes attr;
        COMM_CUDA(cudaFuncGetAttributes(&attr, p2p_all_reduce_kernel));
        max_threads_ = std::min(max_threads_, attr.maxThreadsPerBlock / 32 * 32);
        tuning_.threads = std::min(tuning_.threads, max_threads_);
    }
    for (int r = 0; r < n; ++r) {
        COMM_CUDA(cudaSetDevice(devices_[r]));
        COMM_CUDA(cudaDeviceSynchronize());  // the zeroed flags are in place before any launch
        P2pArgs a{};
        for (int p = 0; p < n; ++p) {
            a.area[p] = areas_[p];
            a.control[p] = controls_[p];
        }
        ErrorRecord* dev_error = nullptr;
        COMM_CUDA(cudaHostGetDevicePointer(reinterpret_cast<void**>(&dev_error), errors_ + r, 0));
        a.error = dev_error;
        a.slot_floats = slot_floats;
        a.rank = r;
        a.n_ranks = n;
        args_.push_back(a);
    }
    p2p_ = true;
    p2p_max_bytes_ = max_bytes;
    return {};
}

const CudaComm& as_cuda_comm(const glm_comm& comm) {
    const auto* c = dynamic_cast<const CudaComm*>(&comm);
    if (!c) GLM_ABORT("'{}' is not a communicator made by glm_cuda_comm_create", comm.name());
    return *c;
}

}  // namespace

Status glm_cuda_comm_create(const std::vector<glm_backend*>& ranks, const CudaCommOptions& options,
                            std::unique_ptr<glm_comm>& out) {
    auto comm = std::make_unique<CudaComm>();
    GLM_TRY(comm->init(ranks, options));
    out = std::move(comm);
    return {};
}

cudaStream_t cuda_backend_stream(glm_backend* backend) { return cuda_backend_context(backend).stream; }
int cuda_backend_device(glm_backend* backend) { return cuda_backend_context(backend).device; }

bool cuda_comm_uses_p2p(const glm_comm& comm, size_t bytes) { return as_cuda_comm(comm).uses_p2p(bytes); }
Status cuda_comm_check(const glm_comm& comm) { return as_cuda_comm(comm).check(); }
CudaCommTuning cuda_comm_tuning(const glm_comm& comm) { return as_cuda_comm(comm).tuning(); }
void cuda_comm_set_tuning(glm_comm& comm, const CudaCommTuning& tuning) {
    const_cast<CudaComm&>(as_cuda_comm(comm)).set_tuning(tuning);
}
