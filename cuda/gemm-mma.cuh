// Tensor-core GEMMs for prefill-sized matrix products (gemm-mma.cu): MUL_MAT with N > 8 columns
// and MUL_MAT_ID with T > 8 tokens. mul-mat.cu decides when to call. Plain C++ (no CUDA types), so
// host-only code (the kernel benchmark) can choose the activation mode.
#pragma once

struct CudaContext;
struct glm_tensor;

// How F32 activations enter the bf16 tensor cores.
enum class MmaActivations : int {
    // Rounded to bf16 (relative error <= 2^-8 per element, NMSE of a product ~2.5e-6).
    bf16 = 0,
    // Split into bf16 hi + lo (two MMAs per tile; relative error <= 2^-16, NMSE ~1e-11): f32-grade
    // results at about half the tensor-core rate. F16 weights take the exact f32 path in this mode.
    bf16x2 = 1,
};
// Process-wide choice (default bf16); read at each launch, so set it before building graphs that
// are captured.
void cuda_mma_set_activations(MmaActivations mode);
MmaActivations cuda_mma_activations();

// dst = MUL_MAT with BF16 / F16 / NVFP4 weights whose rows are contiguous along K. Returns false,
// having launched nothing, when the layout or type is not handled here (the caller falls back).
// Launch only: never synchronises, never reads device data on the host (graph-capture safe).
bool cuda_mma_mul_mat(CudaContext& ctx, glm_tensor* dst);

// dst = MUL_MAT_ID with BF16 / NVFP4 experts: (token, slot) pairs are grouped by expert on the
// device (count, prefix sum, scatter into a static scratch of kMmaMaxPairs pairs; longer batches
// run in token chunks), then one grouped GEMM reads each expert's weights once per M-tile for all
// of its tokens. Returns false, having launched nothing, when the layout or type is not handled.
// The scratch is per device: at most one stream per device may run this op at a time.
bool cuda_mma_mul_mat_id(CudaContext& ctx, glm_tensor* dst);

// gate (MUL_MAT or MUL_MAT_ID), up (the same op over the same x and ids) and swiglu = SWIGLU(gate, up)
// in one GEMM whose tiles hold matching gate and up rows: x is copied and the ids grouped once, and
// neither product is written. Only through the streamed tiles (bf16 activations); for more columns /
// tokens than the GEMVs take. Returns false, having launched nothing, when it does not apply.
bool cuda_mma_gate_up_swiglu(CudaContext& ctx, glm_tensor* gate, glm_tensor* up, glm_tensor* swiglu);

constexpr int kMmaMaxPairs = 65536;   // (token, slot) pairs per grouped launch (8192 tokens x 8)
constexpr int kMmaMaxExperts = 1024;  // experts per weight tensor (GLM-5.1: 160; 256 before REAP)
