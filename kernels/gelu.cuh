// GELU with the tanh approximation (GPT-2): the formulas the GEMM epilogues use (kernels/sm90_bf16_gemm_gelu.cuh)
// and an elementwise forward for where no GEMM epilogue applies it (the GELU Fprop on GPUs other than Hopper,
// whose GELU Dgrad multiplies by the stored gelu' in core/linear.cuh).
//   gelu(x)  = 0.5 x (1 + tanh(k (x + 0.044715 x^3))),  k = sqrt(2/pi)
//   gelu'(x) = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) k (1 + 3*0.044715 x^2),  u = k (x + 0.044715 x^3)
// Operands are flat BF16 arrays of n elements (any layout); math in FP32, one rounding per output.
// Elementwise, so deterministic.
#ifndef KERNELS_GELU_CUH
#define KERNELS_GELU_CUH

#include "kernels/layer_common.cuh"

#define GELU_SCALING_FACTOR 0.7978845608028654f  // sqrt(2/pi)

// gelu(x) and gelu'(x) together. 1 + tanh(u) = 2 s with s = sigmoid(2u) = 1 / (1 + e), e = exp(-2u), and
// 1 - tanh(u)^2 = 4 s (1 - s), so
//   gelu(x) = x s,   gelu'(x) = s + x s (1 - s) k (2 + 6 * 0.044715 x^2) = s + q (2k + 6k * 0.044715 x^2),
//   q = gelu - gelu s (one FMA)
// one ex2.approx and one rcp.approx (relative errors ~2^-22 and 1 ulp), ten instructions in all (the form
// with exp(+2u) needed a clamp and two more products). No cancellation in gelu for x << 0, where tanhf's
// 1 + tanh loses bits. The FMA gives q exactly but for s's own rounding, which puts an absolute error of
// about x (2k + 0.21 x^2) 2^-24 on gelu' (under 2^-17 while 1 + e > 1, i.e. x < 6.5; BF16 rounds gelu' at
// 2^-9); beyond that s = rcp(1) = 1 and q = 0 exactly. For x < -10.5 exp overflows to +inf: s = 0,
// gelu = -0, q = 0, gelu' = 0, no NaN.
__device__ __forceinline__ void gelu_tanh_and_grad(float x, float &gelu, float &grad) {
    const float x2 = x * x;
    // -2u log2(e) = x (-2k log2e - 2k 0.044715 log2e x^2)
    const float t = x * fmaf(x2, -2.0f * 0.044715f * GELU_SCALING_FACTOR * 1.4426950408889634f,
                             -2.0f * GELU_SCALING_FACTOR * 1.4426950408889634f);
    float e, s;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(e) : "f"(t));
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(s) : "f"(e + 1.0f));
    gelu = x * s;
    const float q = fmaf(-gelu, s, gelu);
    grad = fmaf(q, fmaf(x2, 6.0f * 0.044715f * GELU_SCALING_FACTOR, 2.0f * GELU_SCALING_FACTOR), s);
}

// One thread per 8 elements: out[i] = gelu(inp[i]), and grad[i] = gelu'(inp[i]) when grad is not NULL.
// out or grad may alias inp.
__global__ void gelu_forward_kernel(bf16 *out, bf16 *grad, const bf16 *inp, long long n) {
    const long long i = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * 8;
    if (i >= n) return;
    const int left = n - i < 8 ? (int)(n - i) : 8;
    const Bf16x8 x = load_bf16x8(inp + i, 0, left, true);
    Bf16x8 g, d;
#pragma unroll
    for (int e = 0; e < 8; e++) {
        float gelu, gelu_grad;
        gelu_tanh_and_grad(__bfloat162float(x.v[e]), gelu, gelu_grad);
        g.v[e] = __float2bfloat16(gelu);
        d.v[e] = __float2bfloat16(gelu_grad);
    }
    store_bf16x8(out + i, 0, left, true, g);
    if (grad != NULL) store_bf16x8(grad + i, 0, left, true, d);
}

// out [n] = gelu(inp [n]); grad [n] = gelu'(inp [n]) unless grad is NULL (the GELU Fprop's epilogue on GPUs
// without the Hopper GEMM of core/linear.cuh).
static inline void gelu_forward(bf16 *out, bf16 *grad, const bf16 *inp, long long n, cudaStream_t stream) {
    shapeCheck(n > 0, "n=%lld", n);
    shapeCheck(((uintptr_t)out | (uintptr_t)grad | (uintptr_t)inp) % 16 == 0, "GELU operands must be 16-byte aligned");
    const int block = 256;
    gelu_forward_kernel<<<(unsigned)ceil_div<long long>(n, 8LL * block), block, 0, stream>>>(out, grad, inp, n);
    cudaCheckLaunch();
}

#endif // KERNELS_GELU_CUH
