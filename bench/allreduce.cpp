// All-reduce latency: the CUDA communicator's peer-to-peer one-shot path against NCCL (the same
// communicator with allow_p2p = false) at decode message sizes, inside CUDA graphs and eager, on 2
// GPUs and on every visible GPU.
//
//   glmrun-bench-allreduce [--json FILE] [--ops N] [--replays N] [--sweep]
//
// Graph: each rank captures N all-reduces back to back on its stream (default 200); the host launches
// every rank's graph in turn and waits for all; per op = wall time / N, median over the replays
// (default 20). Eager: the same N calls launched from the host thread, the launch cost included (that
// is what an uncaptured decode step pays). --sweep adds the peer-to-peer kernel's block layouts
// (cuda/all-reduce.cuh CudaCommTuning) in graphs, to choose its defaults.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cuda/all-reduce.cuh"
#include "cuda/backend.h"
#include "ggml-like/tp.h"

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Ranks {
    std::vector<std::unique_ptr<glm_backend>> owned;
    std::vector<glm_backend*> ptrs;
};

// Every rank's stream idle, or an error after `seconds` (a broken all-reduce must not hang the run).
Status wait_idle(const Ranks& ranks, double seconds = 60.0) {
    const auto t0 = Clock::now();
    for (glm_backend* b : ranks.ptrs) {
        while (true) {
            const cudaError_t err = cudaStreamQuery(cuda_backend_stream(b));
            if (err == cudaSuccess) break;
            if (err != cudaErrorNotReady) return Status::device("{}: {}", b->name(), cudaGetErrorString(err));
            if (std::chrono::duration<double>(Clock::now() - t0).count() > seconds)
                return Status::device("{} still busy after {:.0f} s", b->name(), seconds);
            std::this_thread::yield();
        }
    }
    return {};
}

struct Message {
    glm_context ctx;
    std::vector<glm_tensor*> node;
};

Status make_message(Ranks& ranks, int64_t n, Message& m) {
    std::vector<float> x(static_cast<size_t>(n));
    for (size_t r = 0; r < ranks.ptrs.size(); ++r) {
        glm_backend* b = ranks.ptrs[r];
        glm_buffer* buf = nullptr;
        const size_t bytes = size_t(n) * sizeof(float), stride = (bytes + 255) / 256 * 256;
        GLM_TRY(b->alloc_buffer(2 * stride, "all-reduce bench", &buf));
        glm_tensor* src = m.ctx.new_tensor_1d(GLM_TYPE_F32, n);
        glm_tensor* node = glm_all_reduce(m.ctx, src);
        glm_place(src, buf, 0);
        glm_place(node, buf, stride);
        for (int64_t i = 0; i < n; ++i) x[size_t(i)] = float((i * 7 + int64_t(r) * 3) % 17) - 8.0f;
        b->tensor_set(src, x.data(), 0, bytes);
        m.node.push_back(node);
    }
    return wait_idle(ranks);
}

Status calls(glm_comm& comm, Message& m, int ops) {
    for (int i = 0; i < ops; ++i) GLM_TRY(comm.all_reduce(m.node));
    return {};
}

// Median microseconds per all-reduce over `replays` runs of `ops` calls launched eagerly.
Status time_eager(Ranks& ranks, glm_comm& comm, Message& m, int ops, int replays, double& us) {
    GLM_TRY(calls(comm, m, std::min(ops, 20)));  // warm-up: modules, NCCL channels
    GLM_TRY(wait_idle(ranks));
    std::vector<double> t;
    for (int k = 0; k < replays; ++k) {
        const auto t0 = Clock::now();
        GLM_TRY(calls(comm, m, ops));
        GLM_TRY(wait_idle(ranks));
        t.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / ops);
    }
    us = median(t);
    return {};
}

// The same inside one CUDA graph per rank holding `ops` all-reduces.
Status time_graph(Ranks& ranks, glm_comm& comm, Message& m, int ops, int replays, double& us) {
    const size_t n = ranks.ptrs.size();
    std::vector<cudaGraphExec_t> execs(n, nullptr);
    for (glm_backend* b : ranks.ptrs) {
        cudaSetDevice(cuda_backend_device(b));
        const cudaError_t err = cudaStreamBeginCapture(cuda_backend_stream(b), cudaStreamCaptureModeRelaxed);
        if (err != cudaSuccess) return Status::device("begin capture: {}", cudaGetErrorString(err));
    }
    const Status captured = calls(comm, m, ops);
    std::string error = captured.ok() ? "" : captured.message();
    for (size_t r = 0; r < n; ++r) {  // end every capture, even after a failure
        cudaSetDevice(cuda_backend_device(ranks.ptrs[r]));
        cudaGraph_t graph = nullptr;
        cudaError_t err = cudaStreamEndCapture(cuda_backend_stream(ranks.ptrs[r]), &graph);
        if (err == cudaSuccess && error.empty()) err = cudaGraphInstantiate(&execs[r], graph, 0);
        if (graph) cudaGraphDestroy(graph);
        if (err != cudaSuccess && error.empty()) error = fmt::format("capture: {}", cudaGetErrorString(err));
    }
    cudaGetLastError();
    auto destroy = [&] {
        for (size_t r = 0; r < n; ++r)
            if (execs[r]) {
                cudaSetDevice(cuda_backend_device(ranks.ptrs[r]));
                cudaGraphExecDestroy(execs[r]);
            }
    };
    if (!error.empty()) {
        destroy();
        return Status::device("{}", error);
    }
    auto replay = [&]() -> Status {
        for (size_t r = 0; r < n; ++r) {
            cudaSetDevice(cuda_backend_device(ranks.ptrs[r]));
            const cudaError_t err = cudaGraphLaunch(execs[r], cuda_backend_stream(ranks.ptrs[r]));
            if (err != cudaSuccess) return Status::device("graph launch: {}", cudaGetErrorString(err));
        }
        return wait_idle(ranks);
    };
    std::vector<double> t;
    Status st = replay();  // warm-up: graph upload
    for (int k = 0; st.ok() && k < replays; ++k) {
        const auto t0 = Clock::now();
        st = replay();
        t.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / ops);
    }
    destroy();
    GLM_TRY(st);
    us = median(t);
    return {};
}

std::string machine_name(int n_gpus) {
    std::map<std::string, int> count;
    for (int d = 0; d < n_gpus; ++d) {
        CudaDeviceInfo info;
        count[glm_cuda_device_info(d, info).ok() ? info.name : "unknown"]++;
    }
    std::string s;
    for (const auto& [name, k] : count) s += fmt::format("{}{}x {}", s.empty() ? "" : " + ", k, name);
    return s;
}

std::string size_label(size_t bytes) {
    return bytes >= (size_t(1) << 20) ? fmt::format("{} MiB", bytes >> 20) : fmt::format("{} KiB", bytes >> 10);
}

struct Row {
    int gpus;
    size_t bytes;
    std::string path;  // "p2p", "nccl", or "p2p <tuning>" (--sweep)
    std::string mode;  // "graph" / "eager"
    double us;         // < 0: failed (error says why)
    std::string error;
};

}  // namespace

int main(int argc, char** argv) {
    std::string json_path;
    int ops = 200, replays = 20;
    bool sweep = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--json" && i + 1 < argc) json_path = argv[++i];
        else if (a == "--ops" && i + 1 < argc) ops = std::max(1, std::atoi(argv[++i]));
        else if (a == "--replays" && i + 1 < argc) replays = std::max(1, std::atoi(argv[++i]));
        else if (a == "--sweep") sweep = true;
        else {
            std::fprintf(stderr, "usage: %s [--json FILE] [--ops N] [--replays N] [--sweep]\n", argv[0]);
            return a == "--help" || a == "-h" ? 0 : 1;
        }
    }
    glm_set_log_level(LogLevel::info);  // the communicators say which path they took and why
    const int n_dev = glm_cuda_device_count();
    if (n_dev < 2) {
        std::fprintf(stderr, "glmrun-bench-allreduce: needs at least 2 CUDA devices, found %d\n", n_dev);
        return 1;
    }
    const std::string machine = machine_name(n_dev);
    const std::vector<size_t> sizes = {12 << 10, 24 << 10, 1 << 20};
    std::vector<Row> rows;
    std::vector<int> counts = {2};
    if (n_dev > 2) counts.push_back(n_dev);
    for (int n_gpus : counts) {
        Ranks ranks;
        for (int d = 0; d < n_gpus; ++d) {
            std::unique_ptr<glm_backend> b;
            const Status st = glm_backend_cuda_create(d, b);
            if (!st.ok()) {
                std::fprintf(stderr, "%s\n", st.message().c_str());
                return 3;
            }
            ranks.ptrs.push_back(b.get());
            ranks.owned.push_back(std::move(b));
        }
        std::vector<std::pair<std::string, std::unique_ptr<glm_comm>>> comms;
        for (bool p2p : {true, false}) {
            CudaCommOptions opt;
            opt.allow_p2p = p2p;
            std::unique_ptr<glm_comm> c;
            const Status st = glm_cuda_comm_create(ranks.ptrs, opt, c);
            if (!st.ok()) {
                std::fprintf(stderr, "%d GPUs, allow_p2p=%d: %s\n", n_gpus, int(p2p), st.message().c_str());
                continue;
            }
            comms.emplace_back(p2p ? "p2p" : "nccl", std::move(c));
        }
        for (size_t bytes : sizes) {
            Message m;
            const Status made = make_message(ranks, int64_t(bytes / sizeof(float)), m);
            if (!made.ok()) {
                std::fprintf(stderr, "%s\n", made.message().c_str());
                return 3;
            }
            for (auto& [label, comm] : comms) {
                // A p2p communicator that falls back (no peer access) is NCCL: say so.
                const std::string path = label == "p2p" && !cuda_comm_uses_p2p(*comm, bytes) ? "p2p->nccl" : label;
                for (const char* mode : {"eager", "graph"}) {
                    double us = -1;
                    const Status st = std::strcmp(mode, "graph") == 0 ? time_graph(ranks, *comm, m, ops, replays, us)
                                                                      : time_eager(ranks, *comm, m, ops, replays, us);
                    rows.push_back({n_gpus, bytes, path, mode, st.ok() ? us : -1.0, st.ok() ? "" : st.message()});
                    if (!st.ok()) std::fprintf(stderr, "%d GPUs, %s, %s %s: %s\n", n_gpus, size_label(bytes).c_str(),
                                               path.c_str(), mode, st.message().c_str());
                    const Status health = wait_idle(ranks);
                    if (!health.ok()) {  // a GPU that does not come back: stop rather than hang
                        std::fprintf(stderr, "giving up: %s\n", health.message().c_str());
                        return 3;
                    }
                }
                if (sweep && label == "p2p" && cuda_comm_uses_p2p(*comm, bytes)) {
                    const CudaCommTuning base = cuda_comm_tuning(*comm);
                    const CudaCommTuning variants[] = {{256, 256, 32},  {256, 512, 32},   {512, 512, 32},
                                                       {512, 2048, 32}, {512, 1024, 64},  {1024, 1024, 32},
                                                       {512, 4096, 16}, {1024, 2048, 64}, {512, 1024, 128}};
                    for (const CudaCommTuning& t : variants) {
                        cuda_comm_set_tuning(*comm, t);
                        const CudaCommTuning got = cuda_comm_tuning(*comm);
                        double us = -1;
                        const Status st = time_graph(ranks, *comm, m, ops, replays, us);
                        rows.push_back({n_gpus, bytes,
                                        fmt::format("p2p threads={} chunk>={} blocks<={}", got.threads,
                                                    got.min_chunk_floats, got.max_blocks),
                                        "graph", st.ok() ? us : -1.0, st.ok() ? "" : st.message()});
                    }
                    cuda_comm_set_tuning(*comm, base);
                }
            }
            const Status st = comms.empty() ? Status{} : cuda_comm_check(*comms[0].second);
            if (!st.ok()) {
                std::fprintf(stderr, "%s\n", st.message().c_str());
                return 3;
            }
        }
    }

    auto find = [&](int g, size_t bytes, const std::string& path_prefix, const std::string& mode) -> std::string {
        for (const Row& r : rows)
            if (r.gpus == g && r.bytes == bytes && r.mode == mode && r.path.rfind(path_prefix, 0) == 0 &&
                r.path.find(' ') == std::string::npos)
                return r.us < 0 ? "failed" : fmt::format("{:.2f}{}", r.us, r.path == "p2p->nccl" ? " (nccl)" : "");
        return "n/a";
    };
    std::printf("machine: %s; %d all-reduces per graph, median of %d replays; microseconds per all-reduce\n\n",
                machine.c_str(), ops, replays);
    std::printf("| GPUs | size | p2p graph | NCCL graph | p2p eager | NCCL eager |\n|---|---|---|---|---|---|\n");
    for (int g : counts)
        for (size_t bytes : sizes)
            std::printf("| %d | %s | %s | %s | %s | %s |\n", g, size_label(bytes).c_str(),
                        find(g, bytes, "p2p", "graph").c_str(), find(g, bytes, "nccl", "graph").c_str(),
                        find(g, bytes, "p2p", "eager").c_str(), find(g, bytes, "nccl", "eager").c_str());
    if (sweep) {
        std::printf("\n| GPUs | size | p2p layout | graph us |\n|---|---|---|---|\n");
        for (const Row& r : rows)
            if (r.path.find(' ') != std::string::npos) {
                const std::string us = r.us < 0 ? "failed" : fmt::format("{:.2f}", r.us);
                std::printf("| %d | %s | %s | %s |\n", r.gpus, size_label(r.bytes).c_str(), r.path.c_str(), us.c_str());
            }
    }
    if (!json_path.empty()) {
        nlohmann::json j;
        j["machine"] = machine;
        j["ops_per_graph"] = ops;
        j["replays"] = replays;
        j["results"] = nlohmann::json::array();
        for (const Row& r : rows) {
            nlohmann::json e = {{"gpus", r.gpus}, {"bytes", r.bytes}, {"path", r.path}, {"mode", r.mode}};
            if (r.us >= 0) e["us_per_op"] = r.us;
            else e["error"] = r.error;
            j["results"].push_back(e);
        }
        std::ofstream f(json_path);
        f << j.dump(2) << "\n";
        if (!f) {
            std::fprintf(stderr, "cannot write %s\n", json_path.c_str());
            return 1;
        }
    }
    return 0;
}
