// Rotary position embedding and grouped-query head expansion in one pass, between the Llama qkv linear and
// the multi-head flash attention (kernels/attention.cuh), and its backward. The first, unfused form: the
// attention kernels read the expanded tensor as they read GPT-2's qkv; folding RoPE and the KV-head index
// into the attention kernels (no expanded copy) is the next step.
// Layouts (row-major, BF16), NH query heads, NKV key/value heads (NH = G * NKV), HS = head size (even):
//   qkv_gqa [B*T, (NH + 2*NKV) * HS]   per token: the NH q heads, then the NKV k heads, then the NKV v heads
//   qkv_mha [B*T, 3, NH, HS]           per token: q of every head, then k, then v, as attention reads them;
//                                      query head h uses KV head h / G
//   rope cos, sin [max_T, HS/2] FP32   angle t * inv_freq[i], inv_freq[i] = theta^(-2i/HS) (rope_table_host)
// Forward (rotate_half convention, position t = row % T), for i < HS/2 and x a q or k head:
//   out[i] = x[i] cos - x[i + HS/2] sin,  out[i + HS/2] = x[i + HS/2] cos + x[i] sin;  v is copied.
// Backward: dq = R^T dq_mha; dk[g] = R^T (sum over the G query heads of group g, in increasing order, of
//   dk_mha[h]); dv[g] = the same sum of dv_mha[h]; all in FP32, one rounding to BF16. Deterministic.
#ifndef KERNELS_ROPE_GQA_CUH
#define KERNELS_ROPE_GQA_CUH

#include <math.h>
#include "kernels/layer_common.cuh"

// cos_t, sin_t [T, HS/2] on the host: angle = (float)t * inv_freq[i] with inv_freq[i] = (float)theta^(-2i/HS)
// computed in double; cos and sin of the float angle computed in double and rounded to float.
static inline void rope_table_host(float *cos_t, float *sin_t, int T, int HS, float theta) {
    const int half = HS / 2;
    for (int i = 0; i < half; i++) {
        const float inv_freq = (float)pow((double)theta, -2.0 * i / HS);
        for (int t = 0; t < T; t++) {
            const float angle = (float)t * inv_freq;
            cos_t[(size_t)t * half + i] = (float)cos((double)angle);
            sin_t[(size_t)t * half + i] = (float)sin((double)angle);
        }
    }
}

// One thread per (row, output head slot s of 3*NH, 8-channel piece p of the first half): slot s < NH is q head
// s, s < 2NH the k of query head s - NH, else the v of query head s - 2NH. Handles channels [8p, 8p+8) and
// [HS/2 + 8p, ...). HS/2 must be a multiple of 8.
__global__ void rope_gqa_expand_kernel(bf16 *qkv_mha, const bf16 *qkv_gqa, const float *cos_t, const float *sin_t, int N, int T, int NH, int NKV,
                                       int HS) {
    const int half = HS / 2, pieces = half / 8;
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)N * 3 * NH * pieces) return;
    const int p = (int)(idx % pieces);
    const int s = (int)((idx / pieces) % (3 * NH));
    const int row = (int)(idx / ((long long)pieces * 3 * NH));
    const int part = s / NH, h = s % NH, group = NH / NKV;
    const int src_head = part == 0 ? h : part == 1 ? NH + h / group : NH + NKV + h / group;
    const bf16 *src = qkv_gqa + (size_t)row * (NH + 2 * NKV) * HS + (size_t)src_head * HS;
    bf16 *dst = qkv_mha + ((size_t)row * 3 * NH + s) * HS;
    const int c = 8 * p;
    const Bf16x8 x1 = load_bf16x8(src, c, HS, true), x2 = load_bf16x8(src + half, c, HS, true);
    if (part == 2) {
        store_bf16x8(dst, c, HS, true, x1);
        store_bf16x8(dst + half, c, HS, true, x2);
        return;
    }
    const int t = row % T;
    const float *cs = cos_t + (size_t)t * half + c, *sn = sin_t + (size_t)t * half + c;
    Bf16x8 o1, o2;
#pragma unroll
    for (int e = 0; e < 8; e++) {
        const float a = __bfloat162float(x1.v[e]), b = __bfloat162float(x2.v[e]);
        o1.v[e] = __float2bfloat16(a * cs[e] - b * sn[e]);
        o2.v[e] = __float2bfloat16(b * cs[e] + a * sn[e]);
    }
    store_bf16x8(dst, c, HS, true, o1);
    store_bf16x8(dst + half, c, HS, true, o2);
}

// One thread per (row, output head o of NH + 2*NKV, 8-channel piece p of the first half): the backward above.
__global__ void rope_gqa_reduce_kernel(bf16 *dqkv_gqa, const bf16 *dqkv_mha, const float *cos_t, const float *sin_t, int N, int T, int NH,
                                       int NKV, int HS) {
    const int half = HS / 2, pieces = half / 8, heads = NH + 2 * NKV;
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)N * heads * pieces) return;
    const int p = (int)(idx % pieces);
    const int o = (int)((idx / pieces) % heads);
    const int row = (int)(idx / ((long long)pieces * heads));
    const int group = NH / NKV, c = 8 * p;
    // the MHA slots that feed output head o, and whether it turns
    int first_slot, count;
    bool rotate;
    if (o < NH) { first_slot = o; count = 1; rotate = true; }
    else if (o < NH + NKV) { first_slot = NH + (o - NH) * group; count = group; rotate = true; }
    else { first_slot = 2 * NH + (o - NH - NKV) * group; count = group; rotate = false; }
    float d1[8], d2[8];
#pragma unroll
    for (int e = 0; e < 8; e++) d1[e] = d2[e] = 0.0f;
    for (int k = 0; k < count; k++) {
        const bf16 *src = dqkv_mha + ((size_t)row * 3 * NH + first_slot + k) * HS;
        const Bf16x8 a = load_bf16x8(src, c, HS, true), b = load_bf16x8(src + half, c, HS, true);
#pragma unroll
        for (int e = 0; e < 8; e++) {
            d1[e] += __bfloat162float(a.v[e]);
            d2[e] += __bfloat162float(b.v[e]);
        }
    }
    bf16 *dst = dqkv_gqa + (size_t)row * heads * HS + (size_t)o * HS;
    Bf16x8 o1, o2;
    if (rotate) {
        const int t = row % T;
        const float *cs = cos_t + (size_t)t * half + c, *sn = sin_t + (size_t)t * half + c;
#pragma unroll
        for (int e = 0; e < 8; e++) {
            o1.v[e] = __float2bfloat16(d1[e] * cs[e] + d2[e] * sn[e]);
            o2.v[e] = __float2bfloat16(d2[e] * cs[e] - d1[e] * sn[e]);
        }
    } else {
#pragma unroll
        for (int e = 0; e < 8; e++) {
            o1.v[e] = __float2bfloat16(d1[e]);
            o2.v[e] = __float2bfloat16(d2[e]);
        }
    }
    store_bf16x8(dst, c, HS, true, o1);
    store_bf16x8(dst + half, c, HS, true, o2);
}

static inline void rope_gqa_check_(const void *a, const void *b, int B, int T, int NH, int NKV, int HS) {
    shapeCheck(B > 0 && T > 0 && NKV > 0 && NH % NKV == 0 && HS % 16 == 0, "RoPE/GQA: B=%d T=%d NH=%d NKV=%d HS=%d (NKV | NH, HS %% 16 == 0)", B,
               T, NH, NKV, HS);
    shapeCheck(((uintptr_t)a | (uintptr_t)b) % 16 == 0, "RoPE/GQA tensors must be 16-byte aligned");
}

// qkv_mha [B*T, 3, NH, HS] = RoPE + head expansion of qkv_gqa [B*T, (NH+2NKV)*HS]; cos_t, sin_t [>= T, HS/2].
static inline void rope_gqa_forward(bf16 *qkv_mha, const bf16 *qkv_gqa, const float *cos_t, const float *sin_t, int B, int T, int NH, int NKV,
                                    int HS, cudaStream_t stream) {
    rope_gqa_check_(qkv_mha, qkv_gqa, B, T, NH, NKV, HS);
    const long long threads = (long long)B * T * 3 * NH * (HS / 16);
    rope_gqa_expand_kernel<<<(unsigned)ceil_div<long long>(threads, 256), 256, 0, stream>>>(qkv_mha, qkv_gqa, cos_t, sin_t, B * T, T, NH, NKV,
                                                                                           HS);
    cudaCheckLaunch();
}

// dqkv_gqa [B*T, (NH+2NKV)*HS] (written) from dqkv_mha [B*T, 3, NH, HS]: the backward of rope_gqa_forward.
static inline void rope_gqa_backward(bf16 *dqkv_gqa, const bf16 *dqkv_mha, const float *cos_t, const float *sin_t, int B, int T, int NH,
                                     int NKV, int HS, cudaStream_t stream) {
    rope_gqa_check_(dqkv_gqa, dqkv_mha, B, T, NH, NKV, HS);
    const long long threads = (long long)B * T * (NH + 2 * NKV) * (HS / 16);
    rope_gqa_reduce_kernel<<<(unsigned)ceil_div<long long>(threads, 256), 256, 0, stream>>>(dqkv_gqa, dqkv_mha, cos_t, sin_t, B * T, T, NH, NKV,
                                                                                           HS);
    cudaCheckLaunch();
}

#endif // KERNELS_ROPE_GQA_CUH
