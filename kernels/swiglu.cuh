// SwiGLU of the Llama MLP, element-wise: the first, unfused form (the gate/up GEMM's epilogue and the
// down projection's Dgrad epilogue are where it belongs, as GELU is for GPT-2: the next step).
// Layouts (row-major, BF16): gate_up [N, 2F] = the gate/up linear's output, gate columns [0, F), up
// columns [F, 2F); out [N, F].
// Forward:  out = bf16(silu(g) * u), silu(g) = g * sigmoid(g), sigmoid(g) = 1 / (1 + exp(-g)), in FP32.
// Backward: dg = bf16(dout * u * sigmoid(g) * (1 + g * (1 - sigmoid(g)))), du = bf16(dout * silu(g)), into
// dgate_up [N, 2F] (written).
#ifndef KERNELS_SWIGLU_CUH
#define KERNELS_SWIGLU_CUH

#include "kernels/layer_common.cuh"

// One thread per (row, 8 columns of F).
__global__ void swiglu_forward_kernel(bf16 *out, const bf16 *gate_up, int N, int F) {
    const int pieces = F / 8;
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)N * pieces) return;
    const int row = (int)(idx / pieces), c = (int)(idx % pieces) * 8;
    const bf16 *g_row = gate_up + (size_t)row * 2 * F;
    const Bf16x8 g = load_bf16x8(g_row, c, F, true), u = load_bf16x8(g_row + F, c, F, true);
    Bf16x8 o;
#pragma unroll
    for (int e = 0; e < 8; e++) {
        const float x = __bfloat162float(g.v[e]);
        o.v[e] = __float2bfloat16(x / (1.0f + expf(-x)) * __bfloat162float(u.v[e]));
    }
    store_bf16x8(out + (size_t)row * F, c, F, true, o);
}

__global__ void swiglu_backward_kernel(bf16 *dgate_up, const bf16 *dout, const bf16 *gate_up, int N, int F) {
    const int pieces = F / 8;
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)N * pieces) return;
    const int row = (int)(idx / pieces), c = (int)(idx % pieces) * 8;
    const bf16 *g_row = gate_up + (size_t)row * 2 * F;
    const Bf16x8 g = load_bf16x8(g_row, c, F, true), u = load_bf16x8(g_row + F, c, F, true);
    const Bf16x8 d = load_bf16x8(dout + (size_t)row * F, c, F, true);
    Bf16x8 dg, du;
#pragma unroll
    for (int e = 0; e < 8; e++) {
        const float x = __bfloat162float(g.v[e]), up = __bfloat162float(u.v[e]), dv = __bfloat162float(d.v[e]);
        const float sig = 1.0f / (1.0f + expf(-x));
        dg.v[e] = __float2bfloat16(dv * up * (sig * (1.0f + x * (1.0f - sig))));
        du.v[e] = __float2bfloat16(dv * (x * sig));
    }
    bf16 *d_row = dgate_up + (size_t)row * 2 * F;
    store_bf16x8(d_row, c, F, true, dg);
    store_bf16x8(d_row + F, c, F, true, du);
}

static inline void swiglu_check_(const void *a, const void *b, int N, int F) {
    shapeCheck(N > 0 && F > 0 && F % 8 == 0, "SwiGLU: N=%d F=%d (F %% 8 == 0)", N, F);
    shapeCheck(((uintptr_t)a | (uintptr_t)b) % 16 == 0, "SwiGLU tensors must be 16-byte aligned");
}

// out [N, F] = silu(gate) * up of gate_up [N, 2F].
static inline void swiglu_forward(bf16 *out, const bf16 *gate_up, int N, int F, cudaStream_t stream) {
    swiglu_check_(out, gate_up, N, F);
    const long long threads = (long long)N * (F / 8);
    swiglu_forward_kernel<<<(unsigned)ceil_div<long long>(threads, 256), 256, 0, stream>>>(out, gate_up, N, F);
    cudaCheckLaunch();
}

// dgate_up [N, 2F] (written) from dout [N, F] and the forward's gate_up [N, 2F].
static inline void swiglu_backward(bf16 *dgate_up, const bf16 *dout, const bf16 *gate_up, int N, int F, cudaStream_t stream) {
    swiglu_check_(dgate_up, gate_up, N, F);
    const long long threads = (long long)N * (F / 8);
    swiglu_backward_kernel<<<(unsigned)ceil_div<long long>(threads, 256), 256, 0, stream>>>(dgate_up, dout, gate_up, N, F);
    cudaCheckLaunch();
}

#endif // KERNELS_SWIGLU_CUH
