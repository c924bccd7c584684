// cuBLAS bf16 reference GEMMs (see cublas-ref.h). Timing: events on a private stream around each
// call, median of 15 after 3 warm-up calls. Operands are random bf16 (|x| in [2^-7, 2)); the
// activations are already bf16 and, for the experts, already gathered per expert, so the reference
// is given the cheaper problem.
#include "bench/cublas-ref.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>

namespace {

#define REF_CUDA(call)                                                                                 \
    do {                                                                                               \
        const cudaError_t ref_err_ = (call);                                                           \
        if (ref_err_ != cudaSuccess)                                                                   \
            return Status::device("{} failed at {}:{}: {}", #call, __FILE__, __LINE__, cudaGetErrorString(ref_err_)); \
    } while (0)

#define REF_CUBLAS(call)                                                                               \
    do {                                                                                               \
        const cublasStatus_t ref_st_ = (call);                                                         \
        if (ref_st_ != CUBLAS_STATUS_SUCCESS)                                                          \
            return Status::device("{} failed at {}:{}: cuBLAS status {}", #call, __FILE__, __LINE__, int(ref_st_)); \
    } while (0)

double median_of(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Random bf16 with a random sign and |x| in [2^-7, 2) (exponent 120..127), from xorshift64.
void fill_bf16(uint64_t seed, uint8_t* dst, size_t n) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    for (size_t i = 0; i + 2 <= n; i += 2) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        const uint16_t b = uint16_t(s);
        const uint16_t h = uint16_t((b & 0x807F) | ((0x78u + ((b >> 7) & 7u)) << 7));
        std::memcpy(dst + i, &h, 2);
    }
}

}  // namespace

struct CublasRef::Impl {
    cublasHandle_t handle = nullptr;
    cudaStream_t stream = nullptr;
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    std::vector<void*> bufs;

    // bytes of random bf16: one 32 MiB chunk uploaded, then copied on the device.
    Status alloc_random(size_t bytes, void** p) {
        REF_CUDA(cudaMalloc(p, bytes));
        bufs.push_back(*p);
        constexpr size_t kChunk = size_t(32) << 20;
        std::vector<uint8_t> host(std::min(bytes, kChunk));
        fill_bf16(bufs.size(), host.data(), host.size());
        REF_CUDA(cudaMemcpy(*p, host.data(), host.size(), cudaMemcpyHostToDevice));
        for (size_t off = host.size(); off < bytes; off += kChunk)
            REF_CUDA(cudaMemcpy(static_cast<uint8_t*>(*p) + off, *p, std::min(kChunk, bytes - off),
                                cudaMemcpyDeviceToDevice));
        return {};
    }

    void release() {
        for (void* q : bufs) cudaFree(q);
        bufs.clear();
    }

    Status time(const std::function<cublasStatus_t()>& fn, double* us) {
        for (int i = 0; i < 3; ++i) REF_CUBLAS(fn());
        std::vector<double> t;
        for (int i = 0; i < 15; ++i) {
            REF_CUDA(cudaEventRecord(e0, stream));
            REF_CUBLAS(fn());
            REF_CUDA(cudaEventRecord(e1, stream));
            REF_CUDA(cudaEventSynchronize(e1));
            float ms = 0;
            REF_CUDA(cudaEventElapsedTime(&ms, e0, e1));
            t.push_back(double(ms) * 1e3);
        }
        *us = median_of(t);
        return {};
    }
};

CublasRef::CublasRef() : impl_(std::make_unique<Impl>()) {}

CublasRef::~CublasRef() {
    impl_->release();
    if (impl_->handle) cublasDestroy(impl_->handle);
    if (impl_->e0) cudaEventDestroy(impl_->e0);
    if (impl_->e1) cudaEventDestroy(impl_->e1);
    if (impl_->stream) cudaStreamDestroy(impl_->stream);
}

Status CublasRef::init() {
    Impl& d = *impl_;
    REF_CUDA(cudaSetDevice(0));
    REF_CUDA(cudaStreamCreateWithFlags(&d.stream, cudaStreamNonBlocking));
    REF_CUDA(cudaEventCreate(&d.e0));
    REF_CUDA(cudaEventCreate(&d.e1));
    REF_CUBLAS(cublasCreate(&d.handle));
    REF_CUBLAS(cublasSetStream(d.handle, d.stream));
    return {};
}

// Column-major view: C [M x N] = op(A) B with A = W stored as K x M (transposed), B = x as K x N.
Status CublasRef::dense(int64_t M, int64_t N, int64_t K, int copies, double* us) {
    Impl& d = *impl_;
    std::vector<void*> w(static_cast<size_t>(copies));
    for (void*& p : w) GLM_TRY(d.alloc_random(size_t(M * K) * 2, &p));
    void* x = nullptr;
    void* c = nullptr;
    GLM_TRY(d.alloc_random(size_t(N * K) * 2, &x));
    GLM_TRY(d.alloc_random(size_t(M * N) * 2, &c));
    const float one = 1.0f, zero = 0.0f;
    int i = 0;
    const Status st = d.time([&]() {
        return cublasGemmEx(d.handle, CUBLAS_OP_T, CUBLAS_OP_N, int(M), int(N), int(K), &one, w[size_t(i++ % copies)],
                            CUDA_R_16BF, int(K), x, CUDA_R_16BF, int(K), &zero, c, CUDA_R_16BF, int(M),
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    }, us);
    d.release();
    return st;
}

// One group (of one problem) per expert with tokens; the pointer arrays live on the device.
Status CublasRef::grouped(int64_t M, int64_t K, const std::vector<int>& counts, double* us) {
    Impl& d = *impl_;
    int64_t total = 0;
    for (int c : counts) total += c;
    void* w = nullptr;
    void* x = nullptr;
    void* c = nullptr;
    GLM_TRY(d.alloc_random(counts.size() * size_t(M * K) * 2, &w));
    GLM_TRY(d.alloc_random(size_t(total * K) * 2, &x));
    GLM_TRY(d.alloc_random(size_t(total * M) * 2, &c));
    std::vector<cublasOperation_t> ta, tb;
    std::vector<int> m, n, k, lda, ldb, ldc, gsize;
    std::vector<float> alpha, beta;
    std::vector<void*> ptrs[3];  // A, B, C
    int64_t off = 0;
    for (size_t e = 0; e < counts.size(); ++e) {
        if (counts[e] == 0) continue;
        ta.push_back(CUBLAS_OP_T);
        tb.push_back(CUBLAS_OP_N);
        m.push_back(int(M));
        n.push_back(counts[e]);
        k.push_back(int(K));
        lda.push_back(int(K));
        ldb.push_back(int(K));
        ldc.push_back(int(M));
        gsize.push_back(1);
        alpha.push_back(1.0f);
        beta.push_back(0.0f);
        ptrs[0].push_back(static_cast<uint8_t*>(w) + e * size_t(M * K) * 2);
        ptrs[1].push_back(static_cast<uint8_t*>(x) + size_t(off * K) * 2);
        ptrs[2].push_back(static_cast<uint8_t*>(c) + size_t(off * M) * 2);
        off += counts[e];
    }
    const size_t G = ta.size();
    void* dptr = nullptr;
    REF_CUDA(cudaMalloc(&dptr, 3 * G * sizeof(void*)));
    d.bufs.push_back(dptr);
    void** dp = static_cast<void**>(dptr);
    for (int a = 0; a < 3; ++a)
        REF_CUDA(cudaMemcpy(dp + size_t(a) * G, ptrs[a].data(), G * sizeof(void*), cudaMemcpyHostToDevice));
    const void* const* da = dp;
    const void* const* db = dp + G;
    const Status st = d.time([&]() {
        return cublasGemmGroupedBatchedEx(d.handle, ta.data(), tb.data(), m.data(), n.data(), k.data(), alpha.data(), da,
                                          CUDA_R_16BF, lda.data(), db, CUDA_R_16BF, ldb.data(), beta.data(), dp + 2 * G,
                                          CUDA_R_16BF, ldc.data(), int(G), gsize.data(), CUBLAS_COMPUTE_32F);
    }, us);
    d.release();
    return st;
}
