// Grouping of MUL_MAT_ID's (token, slot) pairs by expert for the prefill GEMMs (included by
// gemm-mma.cu only: it defines the per-device scratch the grouped kernels read). group_kernel, one
// block of 1024 threads, counts the pairs per expert (warp-aggregated shared atomics: one hot expert
// does not serialise), takes exclusive prefix sums of the counts and of the token tiles per expert,
// and writes the tile table {expert, first pair, pair count} and the pairs in expert order -- all in
// static __device__ scratch of kMmaMaxPairs pairs, nothing allocated after start-up.
#pragma once

#include "cuda/common.cuh"
#include "cuda/gemm-mma.cuh"

namespace {

constexpr int kMinBN = 32;  // the narrowest token tile
constexpr int kMaxTiles = kMmaMaxPairs / kMinBN + kMmaMaxExperts;
constexpr int kGroupThreads = 1024;
static_assert(kMmaMaxExperts <= kGroupThreads, "group_kernel scans one expert per thread");
static_assert(kGroupThreads == 1024, "block_inclusive_scan scans 32 warps");

// ---- device scratch for MUL_MAT_ID grouping (one copy per device) ---------------------------------
__device__ int g_pairs[kMmaMaxPairs];  // pair indices s = j + t * n_used, in expert order
__device__ int4 g_tiles[kMaxTiles];    // {expert, first index into g_pairs, pairs (<= BN), 0}
__device__ int g_n_tiles;              // tiles written by the last group_kernel

// ---- grouping of (token, slot) pairs by expert -------------------------------------------------------

__device__ __forceinline__ int read_id(const uint8_t* ids, int64_t nb0, int64_t nb1, int n_used, int s) {
    return *reinterpret_cast<const int32_t*>(ids + int64_t(s % n_used) * nb0 + int64_t(s / n_used) * nb1);
}

// One block. ids: I32 [n_used, n_pairs / n_used]; writes g_pairs, g_tiles, g_n_tiles.
__global__ void __launch_bounds__(kGroupThreads) group_kernel(const uint8_t* ids, int64_t nb0, int64_t nb1, int n_used,
                                                             int n_pairs, int n_experts, int bn) {
    grid_dependency_wait();
    __shared__ int cnt[kMmaMaxExperts], first[kMmaMaxExperts], cursor[kMmaMaxExperts], tile0[kMmaMaxExperts + 1];
    __shared__ int warp_sums[32];
    const int tid = int(threadIdx.x), lane = tid & 31;
    for (int e = tid; e < n_experts; e += kGroupThreads) cnt[e] = 0;
    __syncthreads();
    // Warp-aggregated increments: lanes with the same expert add once (a hot expert would otherwise
    // serialise thousands of atomics on one address). Rank within the peers = lane order.
    auto add_pair = [&](int* counters, int s, bool valid, int* pos) {
        const unsigned active = __ballot_sync(0xffffffffu, valid);
        if (!valid) return;
        const int e = read_id(ids, nb0, nb1, n_used, s);
        if (e < 0 || e >= n_experts) __trap();  // the CPU backend asserts the same
        const unsigned peers = __match_any_sync(active, e);
        const int leader = __ffs(int(peers)) - 1;
        int base = 0;
        if (lane == leader) base = atomicAdd(&counters[e], __popc(peers));
        base = __shfl_sync(peers, base, leader);
        if (pos) *pos = base + __popc(peers & ((1u << lane) - 1u));
    };
    for (int s0 = 0; s0 < n_pairs; s0 += kGroupThreads) add_pair(cnt, s0 + tid, s0 + tid < n_pairs, nullptr);
    __syncthreads();

    const int c = tid < n_experts ? cnt[tid] : 0;
    int n_total = 0, tiles_total = 0;
    const int f = block_inclusive_scan(c, warp_sums, &n_total) - c;  // exclusive
    const int c_tiles = (c + bn - 1) / bn;
    const int t0 = block_inclusive_scan(c_tiles, warp_sums, &tiles_total) - c_tiles;
    if (tid < n_experts) {
        first[tid] = f;
        cursor[tid] = f;
        tile0[tid] = t0;
    }
    if (tid == 0) {
        tile0[n_experts] = tiles_total;
        g_n_tiles = tiles_total;
    }
    __syncthreads();
    for (int i = tid; i < tiles_total; i += kGroupThreads) {
        int lo = 0, hi = n_experts - 1;  // the last expert whose first tile is <= i (it owns tile i)
        while (lo < hi) {
            const int mid = (lo + hi + 1) >> 1;
            if (tile0[mid] <= i) lo = mid;
            else hi = mid - 1;
        }
        const int r = i - tile0[lo];
        g_tiles[i] = make_int4(lo, first[lo] + r * bn, min(bn, cnt[lo] - r * bn), 0);
    }
    for (int s0 = 0; s0 < n_pairs; s0 += kGroupThreads) {
        const int s = s0 + tid;
        int pos = 0;
        add_pair(cursor, s, s < n_pairs, &pos);
        if (s < n_pairs) g_pairs[pos] = s;
    }
}

}  // namespace
