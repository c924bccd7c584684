// Rotary embedding: one thread per output element. The frequencies are computed on the host with
// the same f32 expression as the CPU reference (bit-identical inv_freq), the angle as an f32
// product, and cos/sin with the full-range sincosf (never the fast intrinsics: angles reach 1e5).
#include <cmath>

#include "cuda/rope.cuh"

namespace {

constexpr int kThreads = 256;
constexpr int kMaxHalf = 256;  // n_rot <= 512

struct InvFreq {
    float v[kMaxHalf];
};

__global__ void rope_kernel(TensorView dst, TensorView x, TensorView pos, int n_rot, bool neox, InvFreq freq) {
    grid_dependency_wait();
    const int64_t n = x.ne[0] * x.ne[1] * x.ne[2] * x.ne[3];
    const int half = n_rot / 2;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        int64_t idx[4];
        unflatten(x, i, idx);
        const int64_t i0 = idx[0], h = idx[1], s = idx[2], i3 = idx[3];
        float* out = reinterpret_cast<float*>(const_cast<uint8_t*>(elem_ptr(dst, i0, h, s, i3)));
        if (i0 >= n_rot) {
            *out = load_at(x, i0, h, s, i3);
            continue;
        }
        const int j = neox ? int(i0 % half) : int(i0 / 2);
        const bool second = neox ? i0 >= half : (i0 & 1) != 0;
        const int64_t ia = neox ? j : 2 * j, ib = neox ? j + half : 2 * j + 1;
        const int32_t p = *reinterpret_cast<const int32_t*>(elem_ptr(pos, s, 0, 0, 0));
        const float angle = float(p) * freq.v[j];
        float sn, c;
        sincosf(angle, &sn, &c);
        const float a = load_at(x, ia, h, s, i3), b = load_at(x, ib, h, s, i3);
        // Explicit roundings (no fma contraction), as the CPU's a * c - b * s and b * c + a * s.
        *out = second ? __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, sn)) : __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, sn));
    }
}

}  // namespace

void cuda_op_rope(CudaContext& ctx, glm_tensor* dst) {
    const glm_tensor* x = dst->src[0];
    const glm_tensor* pos = dst->src[1];
    const int n_rot = dst->params[0].i;
    const float theta = dst->params[1].f;
    const bool neox = dst->params[2].i == GLM_ROPE_NEOX;
    GLM_ASSERT(n_rot > 0 && n_rot % 2 == 0 && n_rot <= x->ne[0] && n_rot / 2 <= kMaxHalf);
    GLM_ASSERT(pos->type == GLM_TYPE_I32 && pos->ne[0] >= x->ne[2]);
    const int64_t n = glm_nelements(x);
    if (n == 0) return;
    InvFreq freq{};
    rope_inv_freq(theta, n_rot, freq.v);
    const int blocks = int(std::min<int64_t>(ceil_div(n, kThreads), 65535 * 8));
    cuda_launch(ctx.stream, rope_kernel, blocks, kThreads, 0, tensor_view(dst), tensor_view(x), tensor_view(pos), n_rot,
        neox, freq);
}
