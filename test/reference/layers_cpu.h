// CPU reference layers in fp32, shared by the reference models (gpt2_cpu.h, llama_cpu.h): embeddings,
// LayerNorm, RMSNorm, matmul, causal (grouped-query) attention, RoPE, GELU, SwiGLU, residual add,
// softmax cross-entropy, global norm and AdamW. The oracle of the GPU kernels; every function knows
// nothing of a model. Plain C, also compiled as C++ by nvcc (the GPU tests include it).
//
// Determinism: every result is independent of the OpenMP thread count. Parallel loops only split
// work over disjoint outputs, and every sum runs in a fixed order (no atomics, no OpenMP
// reductions); the global gradient norm sums fixed-size chunks and then the chunk sums in order.
//
// Layouts (row-major): activations [B, T, C] with N = B*T rows; linear weights [OC, IC] (y = x W^T + b);
// fused qkv rows [(NH + 2*NKV) * HS]: the NH query heads, then the NKV key heads, then the NKV value
// heads, head h at [h*HS, (h+1)*HS) of its part (GPT-2: NKV = NH, so q | k | v with C = NH*HS each);
// attention probabilities [B, NH, T, T] (entries t2 > t are 0); logits and probs [B, T, Vp].
// Backward functions ACCUMULATE (+=) into their gradient outputs, like llm.c, so the caller
// zeroes them first (or accumulates over micro-batches on purpose).
#ifndef TEST_REFERENCE_LAYERS_CPU_H
#define TEST_REFERENCE_LAYERS_CPU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/optimizer.h"
#include "core/param_table.h"
#include "core/utils.h"

#define CPU_LAYERNORM_EPS 1e-5f
// Tile sizes of the matmuls (rows x columns of the output handled by one task).
#define CPU_MATMUL_ROW_TILE 8
#define CPU_MATMUL_COL_TILE 256

// ----------------------------------------------------------------------------
// Layers, forward and backward

// Token embedding: out[n,:] = wte[inp[n],:]. inp [N] token ids, wte [Vp,C], out [N,C].
static inline void cpu_embedding_forward(float *out, const int *inp, const float *wte, int N, int C) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * C, wte + (size_t)inp[n] * C, (size_t)C * sizeof(float));
}

// dwte[inp[n],:] += dout[n,:]. Token rows may repeat, so the work is split over channels, and each
// channel's sum runs over n in order.
static inline void cpu_embedding_backward(float *dwte, const float *dout, const int *inp, int N, int C) {
#pragma omp parallel for
    for (int c0 = 0; c0 < C; c0 += 16) {
        int c1 = c0 + 16 < C ? c0 + 16 : C;
        for (int n = 0; n < N; n++) {
            const float *d = dout + (size_t)n * C;
            float *w = dwte + (size_t)inp[n] * C;
            for (int c = c0; c < c1; c++) w[c] += d[c];
        }
    }
}

// GPT-2's encoder: out[b,t,:] = wte[inp[b,t],:] + wpe[t,:].  inp [B,T] token ids, wte [Vp,C], wpe [maxT,C].
static inline void cpu_encoder_forward(float *out, const int *inp, const float *wte, const float *wpe, int B, int T, int C) {
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *o = out + ((size_t)b * T + t) * C;
            const float *we = wte + (size_t)inp[b * T + t] * C;
            const float *pe = wpe + (size_t)t * C;
            for (int c = 0; c < C; c++) o[c] = we[c] + pe[c];
        }
    }
}

// dwte[inp[b,t],:] += dout[b,t,:]; dwpe[t,:] += dout[b,t,:]. Each channel's sums run over (b,t) in order.
static inline void cpu_encoder_backward(float *dwte, float *dwpe, const float *dout, const int *inp, int B, int T, int C) {
#pragma omp parallel for
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < B; b++) {
            const float *d = dout + ((size_t)b * T + t) * C;
            for (int c = 0; c < C; c++) dwpe[(size_t)t * C + c] += d[c];
        }
    }
    cpu_embedding_backward(dwte, dout, inp, B * T, C);
}

// out = (inp - mean) * rstd * weight + bias over the last dimension. inp/out [N,C]; mean, rstd [N]
// (saved for backward); statistics in double, eps = CPU_LAYERNORM_EPS.
static inline void cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight, const float *bias, int N, int C) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        double sum = 0.0;
        for (int c = 0; c < C; c++) sum += x[c];
        double m = sum / C;
        double var = 0.0;
        for (int c = 0; c < C; c++) var += (x[c] - m) * (x[c] - m);
        float s = (float)(1.0 / sqrt(var / C + (double)CPU_LAYERNORM_EPS));
        float mf = (float)m;
        float *o = out + (size_t)n * C;
        for (int c = 0; c < C; c++) o[c] = (x[c] - mf) * s * weight[c] + bias[c];
        mean[n] = mf;
        rstd[n] = s;
    }
}

// Backward of cpu_layernorm_forward: dinp += rstd * (g - mean(g) - xhat * mean(g * xhat)) with
// g = dout * weight, xhat = (inp - mean) * rstd; dweight += sum_n dout * xhat; dbias += sum_n dout.
static inline void cpu_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp, const float *weight,
                                          const float *mean, const float *rstd, int N, int C) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        const float *d = dout + (size_t)n * C;
        float m = mean[n], s = rstd[n];
        double g_mean = 0.0, gx_mean = 0.0;
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - m) * s;
            float g = d[c] * weight[c];
            g_mean += g;
            gx_mean += g * xhat;
        }
        float gm = (float)(g_mean / C), gxm = (float)(gx_mean / C);
        float *di = dinp + (size_t)n * C;
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - m) * s;
            di[c] += s * (d[c] * weight[c] - gm - xhat * gxm);
        }
    }
#pragma omp parallel for
    for (int c = 0; c < C; c++) {
        float dw = dweight[c], db = dbias[c];
        for (int n = 0; n < N; n++) {
            float d = dout[(size_t)n * C + c];
            dw += d * (inp[(size_t)n * C + c] - mean[n]) * rstd[n];
            db += d;
        }
        dweight[c] = dw;
        dbias[c] = db;
    }
}

// RMSNorm: out = inp * rstd * weight, rstd = 1 / sqrt(mean(inp^2) + eps) over the last dimension.
// inp/out [N,C]; rstd [N] (saved for backward); the mean of squares in double.
static inline void cpu_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += (double)x[c] * x[c];
        float s = (float)(1.0 / sqrt(ss / C + (double)eps));
        float *o = out + (size_t)n * C;
        for (int c = 0; c < C; c++) o[c] = x[c] * s * weight[c];
        rstd[n] = s;
    }
}

// Backward of cpu_rmsnorm_forward: dinp += rstd * (g - xhat * mean(g * xhat)) with g = dout * weight,
// xhat = inp * rstd; dweight += sum_n dout * xhat (over n in order).
static inline void cpu_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight, const float *rstd,
                                        int N, int C) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        const float *d = dout + (size_t)n * C;
        float s = rstd[n];
        double gx_mean = 0.0;
        for (int c = 0; c < C; c++) gx_mean += (double)(d[c] * weight[c]) * (x[c] * s);
        float gxm = (float)(gx_mean / C);
        float *di = dinp + (size_t)n * C;
        for (int c = 0; c < C; c++) di[c] += s * (d[c] * weight[c] - x[c] * s * gxm);
    }
#pragma omp parallel for
    for (int c = 0; c < C; c++) {
        float dw = dweight[c];
        for (int n = 0; n < N; n++) dw += dout[(size_t)n * C + c] * (inp[(size_t)n * C + c] * rstd[n]);
        dweight[c] = dw;
    }
}

// out[n,o] = bias[o] + sum_k inp[n,k] * weight[o,k], the sum over k in order. inp [N,IC],
// weight [OC,IC], bias [OC] or NULL, out [N,OC]. The weight is transposed once so the inner loop
// runs over contiguous outputs.
static inline void cpu_matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int IC, int OC) {
    float *wt = (float *)malloc_check((size_t)IC * OC * sizeof(float));  // [IC, OC]
#pragma omp parallel for
    for (int o = 0; o < OC; o++) {
        for (int k = 0; k < IC; k++) wt[(size_t)k * OC + o] = weight[(size_t)o * IC + k];
    }
    int row_tiles = (N + CPU_MATMUL_ROW_TILE - 1) / CPU_MATMUL_ROW_TILE;
    int col_tiles = (OC + CPU_MATMUL_COL_TILE - 1) / CPU_MATMUL_COL_TILE;
#pragma omp parallel for collapse(2)
    for (int rt = 0; rt < row_tiles; rt++) {
        for (int ct = 0; ct < col_tiles; ct++) {
            int n0 = rt * CPU_MATMUL_ROW_TILE, n1 = n0 + CPU_MATMUL_ROW_TILE < N ? n0 + CPU_MATMUL_ROW_TILE : N;
            int o0 = ct * CPU_MATMUL_COL_TILE, o1 = o0 + CPU_MATMUL_COL_TILE < OC ? o0 + CPU_MATMUL_COL_TILE : OC;
            for (int n = n0; n < n1; n++) {
                float *y = out + (size_t)n * OC;
                for (int o = o0; o < o1; o++) y[o] = bias != NULL ? bias[o] : 0.0f;
            }
            for (int k = 0; k < IC; k++) {
                const float *w = wt + (size_t)k * OC;
                for (int n = n0; n < n1; n++) {
                    float x = inp[(size_t)n * IC + k];
                    float *y = out + (size_t)n * OC;
#pragma omp simd
                    for (int o = o0; o < o1; o++) y[o] += x * w[o];
                }
            }
        }
    }
    free(wt);
}

// Backward of cpu_matmul_forward: dinp[n,k] += sum_o dout[n,o] weight[o,k];
// dweight[o,k] += sum_n dout[n,o] inp[n,k]; dbias[o] += sum_n dout[n,o] (dbias may be NULL when
// there is no bias). Sums run over o (resp. n) in order.
static inline void cpu_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp, const float *weight,
                                       int N, int IC, int OC) {
    int row_tiles = (N + CPU_MATMUL_ROW_TILE - 1) / CPU_MATMUL_ROW_TILE;
    int k_tiles = (IC + CPU_MATMUL_COL_TILE - 1) / CPU_MATMUL_COL_TILE;
#pragma omp parallel for collapse(2)
    for (int rt = 0; rt < row_tiles; rt++) {
        for (int kt = 0; kt < k_tiles; kt++) {
            int n0 = rt * CPU_MATMUL_ROW_TILE, n1 = n0 + CPU_MATMUL_ROW_TILE < N ? n0 + CPU_MATMUL_ROW_TILE : N;
            int k0 = kt * CPU_MATMUL_COL_TILE, k1 = k0 + CPU_MATMUL_COL_TILE < IC ? k0 + CPU_MATMUL_COL_TILE : IC;
            for (int o = 0; o < OC; o++) {
                const float *w = weight + (size_t)o * IC;
                for (int n = n0; n < n1; n++) {
                    float d = dout[(size_t)n * OC + o];
                    float *di = dinp + (size_t)n * IC;
#pragma omp simd
                    for (int k = k0; k < k1; k++) di[k] += d * w[k];
                }
            }
        }
    }
    int o_tiles = (OC + CPU_MATMUL_ROW_TILE - 1) / CPU_MATMUL_ROW_TILE;
#pragma omp parallel for collapse(2)
    for (int ot = 0; ot < o_tiles; ot++) {
        for (int kt = 0; kt < k_tiles; kt++) {
            int o0 = ot * CPU_MATMUL_ROW_TILE, o1 = o0 + CPU_MATMUL_ROW_TILE < OC ? o0 + CPU_MATMUL_ROW_TILE : OC;
            int k0 = kt * CPU_MATMUL_COL_TILE, k1 = k0 + CPU_MATMUL_COL_TILE < IC ? k0 + CPU_MATMUL_COL_TILE : IC;
            for (int n = 0; n < N; n++) {
                const float *x = inp + (size_t)n * IC;
                for (int o = o0; o < o1; o++) {
                    float d = dout[(size_t)n * OC + o];
                    float *dw = dweight + (size_t)o * IC;
#pragma omp simd
                    for (int k = k0; k < k1; k++) dw[k] += d * x[k];
                }
            }
            if (dbias != NULL && kt == 0) {
                for (int n = 0; n < N; n++) {
                    for (int o = o0; o < o1; o++) dbias[o] += dout[(size_t)n * OC + o];
                }
            }
        }
    }
}

// Causal grouped-query self-attention (multi-head when NKV = NH). qkv [B,T,(NH+2*NKV)*HS] (the fused
// layout above), out [B,T,NH*HS] (heads side by side), att [B,NH,T,T] softmax probabilities saved for
// backward (0 above the diagonal). NKV divides NH; query head h reads key/value head g = h / (NH/NKV):
// att[b,h,t,t2] = softmax_{t2<=t}(q_h,t . k_g,t2 / sqrt(HS)); out[b,t,h] = sum_t2 att * v_g,t2.
static inline void cpu_gqa_attention_forward(float *out, float *att, const float *qkv, int B, int T, int NH, int NKV, int HS) {
    const size_t row = (size_t)(NH + 2 * NKV) * HS, orow = (size_t)NH * HS;
    const int group = NH / NKV;
    float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel for collapse(3)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                const size_t koff = (size_t)(NH + h / group) * HS, voff = (size_t)(NH + NKV + h / group) * HS;
                const float *q = qkv + ((size_t)b * T + t) * row + (size_t)h * HS;
                float *a = att + (((size_t)b * NH + h) * T + t) * T;
                float maxval = -INFINITY;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *k = qkv + ((size_t)b * T + t2) * row + koff;
                    float dot = 0.0f;
                    for (int i = 0; i < HS; i++) dot += q[i] * k[i];
                    a[t2] = dot * scale;
                    if (a[t2] > maxval) maxval = a[t2];
                }
                double sum = 0.0;
                for (int t2 = 0; t2 <= t; t2++) {
                    a[t2] = expf(a[t2] - maxval);
                    sum += a[t2];
                }
                float inv = (float)(1.0 / sum);
                for (int t2 = 0; t2 <= t; t2++) a[t2] *= inv;
                for (int t2 = t + 1; t2 < T; t2++) a[t2] = 0.0f;
                float *o = out + ((size_t)b * T + t) * orow + (size_t)h * HS;
                for (int i = 0; i < HS; i++) o[i] = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *v = qkv + ((size_t)b * T + t2) * row + voff;
                    for (int i = 0; i < HS; i++) o[i] += a[t2] * v[i];
                }
            }
        }
    }
}

// Backward of cpu_gqa_attention_forward: dqkv [B,T,(NH+2*NKV)*HS] += gradients of q, k, v from dout
// [B,T,NH*HS], using the saved probabilities att. Each (b, g) owns the slices of dqkv of KV head g and
// of its query heads; the gradients of k_g and v_g sum over its query heads h = g*(NH/NKV) ... in
// increasing h, each in t order.
static inline void cpu_gqa_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att, int B, int T, int NH, int NKV,
                                              int HS) {
    const size_t row = (size_t)(NH + 2 * NKV) * HS, orow = (size_t)NH * HS;
    const int group = NH / NKV;
    float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int g = 0; g < NKV; g++) {
            float *datt = (float *)malloc_check((size_t)T * sizeof(float));  // d loss / d att row
            const size_t koff = (size_t)(NH + g) * HS, voff = (size_t)(NH + NKV + g) * HS;
            for (int h = g * group; h < (g + 1) * group; h++) {
                for (int t = 0; t < T; t++) {
                    const float *a = att + (((size_t)b * NH + h) * T + t) * T;
                    const float *d = dout + ((size_t)b * T + t) * orow + (size_t)h * HS;
                    const float *q = qkv + ((size_t)b * T + t) * row + (size_t)h * HS;
                    float *dq = dqkv + ((size_t)b * T + t) * row + (size_t)h * HS;
                    // through out = att . v
                    for (int t2 = 0; t2 <= t; t2++) {
                        const float *v = qkv + ((size_t)b * T + t2) * row + voff;
                        float *dv = dqkv + ((size_t)b * T + t2) * row + voff;
                        float dot = 0.0f;
                        for (int i = 0; i < HS; i++) {
                            dot += d[i] * v[i];
                            dv[i] += a[t2] * d[i];
                        }
                        datt[t2] = dot;
                    }
                    // through the softmax: dpre = att * (datt - sum(att * datt)), then the scaled q.k
                    double weighted = 0.0;
                    for (int t2 = 0; t2 <= t; t2++) weighted += a[t2] * datt[t2];
                    float wsum = (float)weighted;
                    for (int t2 = 0; t2 <= t; t2++) {
                        float dpre = a[t2] * (datt[t2] - wsum) * scale;
                        const float *k = qkv + ((size_t)b * T + t2) * row + koff;
                        float *dk = dqkv + ((size_t)b * T + t2) * row + koff;
                        for (int i = 0; i < HS; i++) {
                            dq[i] += dpre * k[i];
                            dk[i] += dpre * q[i];
                        }
                    }
                }
            }
            free(datt);
        }
    }
}

// GPT-2's causal multi-head self-attention: the grouped-query attention with NKV = NH. qkv [B,T,3C]
// (q | k | v, head h at channels [h*hs, (h+1)*hs), hs = C/NH), out [B,T,C], att [B,NH,T,T].
static inline void cpu_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH) {
    cpu_gqa_attention_forward(out, att, qkv, B, T, NH, NH, C / NH);
}

// Backward of cpu_attention_forward: dqkv [B,T,3C] += gradients of q, k, v from dout [B,T,C].
static inline void cpu_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att, int B, int T, int C, int NH) {
    cpu_gqa_attention_backward(dqkv, dout, qkv, att, B, T, NH, NH, C / NH);
}

// Rotary position embedding (RoPE) in the Hugging Face "rotate_half" convention: within a head of HS
// (even) channels, channel i < HS/2 pairs with i + HS/2 and the pair turns by the angle t * inv_freq[i]
// at position t, inv_freq[i] = theta^(-2i/HS) (computed in double, then rounded to float):
//   out[i]        = x[i] * cos - x[i + HS/2] * sin
//   out[i + HS/2] = x[i + HS/2] * cos + x[i] * sin
// (Llama checkpoints in Meta's layout pair interleaved channels (2i, 2i+1) instead; converting one
// permutes the q and k rows of the weights.) Tables cos_t, sin_t [T, HS/2]: the angle is the float
// product (float)t * inv_freq[i], as in Hugging Face's fp32 path; its cos and sin are evaluated in
// double and rounded to float.
static inline void cpu_rope_table(float *cos_t, float *sin_t, int T, int HS, float theta) {
    const int half = HS / 2;
    for (int i = 0; i < half; i++) {
        float inv_freq = (float)pow((double)theta, -2.0 * i / HS);
        for (int t = 0; t < T; t++) {
            float angle = (float)t * inv_freq;
            cos_t[(size_t)t * half + i] = (float)cos((double)angle);
            sin_t[(size_t)t * half + i] = (float)sin((double)angle);
        }
    }
}

// Applies RoPE at position t to rows of H heads: inp/out [B,T,H,HS]; heads [0, rot_heads) are
// rotated, heads [rot_heads, H) copied (for the fused qkv: H = NH + 2*NKV, rot_heads = NH + NKV, so
// q and k turn and v passes through). out must not alias inp.
static inline void cpu_rope_forward(float *out, const float *inp, const float *cos_t, const float *sin_t, int B, int T, int H, int rot_heads,
                                    int HS) {
    const int half = HS / 2;
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const size_t base = ((size_t)b * T + t) * H * HS;
            const float *c = cos_t + (size_t)t * half, *s = sin_t + (size_t)t * half;
            for (int h = 0; h < H; h++) {
                const float *x = inp + base + (size_t)h * HS;
                float *o = out + base + (size_t)h * HS;
                if (h >= rot_heads) {
                    memcpy(o, x, (size_t)HS * sizeof(float));
                    continue;
                }
                for (int i = 0; i < half; i++) {
                    float x1 = x[i], x2 = x[i + half];
                    o[i] = x1 * c[i] - x2 * s[i];
                    o[i + half] = x2 * c[i] + x1 * s[i];
                }
            }
        }
    }
}

// Backward of cpu_rope_forward (the transposed rotation): for rotated heads
//   dinp[i] += dout[i] * cos + dout[i + HS/2] * sin,  dinp[i + HS/2] += dout[i + HS/2] * cos - dout[i] * sin;
// copied heads: dinp += dout.
static inline void cpu_rope_backward(float *dinp, const float *dout, const float *cos_t, const float *sin_t, int B, int T, int H, int rot_heads,
                                     int HS) {
    const int half = HS / 2;
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const size_t base = ((size_t)b * T + t) * H * HS;
            const float *c = cos_t + (size_t)t * half, *s = sin_t + (size_t)t * half;
            for (int h = 0; h < H; h++) {
                const float *d = dout + base + (size_t)h * HS;
                float *di = dinp + base + (size_t)h * HS;
                if (h >= rot_heads) {
                    for (int i = 0; i < HS; i++) di[i] += d[i];
                    continue;
                }
                for (int i = 0; i < half; i++) {
                    float d1 = d[i], d2 = d[i + half];
                    di[i] += d1 * c[i] + d2 * s[i];
                    di[i + half] += d2 * c[i] - d1 * s[i];
                }
            }
        }
    }
}

#define CPU_GELU_SCALE 0.7978845608028654f  // sqrt(2/pi)

// out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), elementwise over n values.
static inline void cpu_gelu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanhf(CPU_GELU_SCALE * (x + 0.044715f * x * x * x)));
    }
}

// dinp += dout * gelu'(inp), elementwise.
static inline void cpu_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = CPU_GELU_SCALE * (x + 0.044715f * x * x * x);
        float th = tanhf(u);
        float sech2 = 1.0f - th * th;
        float grad = 0.5f * (1.0f + th) + 0.5f * x * sech2 * CPU_GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] += grad * dout[i];
    }
}

// SwiGLU: inp [N, 2F] holds the gate in columns [0, F) and the up projection in [F, 2F) of each row;
// out [N, F] = silu(gate) * up with silu(x) = x * sigmoid(x) = x / (1 + exp(-x)).
static inline void cpu_swiglu_forward(float *out, const float *inp, int N, int F) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *gate = inp + (size_t)n * 2 * F, *up = gate + F;
        float *o = out + (size_t)n * F;
        for (int i = 0; i < F; i++) {
            float x = gate[i];
            o[i] = x / (1.0f + expf(-x)) * up[i];
        }
    }
}

// Backward of cpu_swiglu_forward: dgate += dout * up * silu'(gate) with
// silu'(x) = sigmoid(x) * (1 + x * (1 - sigmoid(x))); dup += dout * silu(gate). dinp [N, 2F].
static inline void cpu_swiglu_backward(float *dinp, const float *dout, const float *inp, int N, int F) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *gate = inp + (size_t)n * 2 * F, *up = gate + F;
        const float *d = dout + (size_t)n * F;
        float *dgate = dinp + (size_t)n * 2 * F, *dup = dgate + F;
        for (int i = 0; i < F; i++) {
            float x = gate[i];
            float sig = 1.0f / (1.0f + expf(-x));
            dgate[i] += d[i] * up[i] * (sig * (1.0f + x * (1.0f - sig)));
            dup[i] += d[i] * (x * sig);
        }
    }
}

// out = a + b, elementwise over n values.
static inline void cpu_residual_forward(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

// da += dout; db += dout.
static inline void cpu_residual_backward(float *da, float *db, const float *dout, size_t n) {
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        da[i] += dout[i];
        db[i] += dout[i];
    }
}

// Softmax over the first V of Vp logits per row and the cross-entropy with the target:
// probs [N,Vp] (padded columns set to 0), losses[n] = -log probs[n, targets[n]]. logits [N,Vp].
static inline void cpu_softmax_crossentropy_forward(float *losses, float *probs, const float *logits, const int *targets, int N, int V, int Vp) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * Vp;
        float *p = probs + (size_t)n * Vp;
        float maxval = -INFINITY;
        for (int i = 0; i < V; i++) maxval = z[i] > maxval ? z[i] : maxval;
        double sum = 0.0;
        for (int i = 0; i < V; i++) {
            p[i] = expf(z[i] - maxval);
            sum += p[i];
        }
        float inv = (float)(1.0 / sum);
        for (int i = 0; i < V; i++) p[i] *= inv;
        for (int i = V; i < Vp; i++) p[i] = 0.0f;
        // -log p_target computed from the logits (exact even when p_target underflows)
        losses[n] = (float)(log(sum) - (double)(z[targets[n]] - maxval));
    }
}

// dlogits[n,i] += dlosses[n] * (probs[n,i] - [i == targets[n]]) for i < V; padded columns get nothing.
static inline void cpu_softmax_crossentropy_backward(float *dlogits, const float *dlosses, const float *probs, const int *targets, int N, int V, int Vp) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        float *dz = dlogits + (size_t)n * Vp;
        const float *p = probs + (size_t)n * Vp;
        float dl = dlosses[n];
        for (int i = 0; i < V; i++) dz[i] += dl * (p[i] - (i == targets[n] ? 1.0f : 0.0f));
    }
}

// ----------------------------------------------------------------------------
// Optimizer

// The settings (AdamWConfig) are core/optimizer.h's, the struct the trainer's model_update takes.

#define CPU_NORM_CHUNK 4096

// Global L2 norm of n values: sums of squares over fixed chunks of CPU_NORM_CHUNK (in double),
// then the chunk sums in order, so the result does not depend on the thread count.
static inline float cpu_global_norm(const float *x, size_t n) {
    size_t chunks = (n + CPU_NORM_CHUNK - 1) / CPU_NORM_CHUNK;
    double *partial = (double *)malloc_check((chunks > 0 ? chunks : 1) * sizeof(double));
#pragma omp parallel for
    for (size_t c = 0; c < chunks; c++) {
        size_t i1 = (c + 1) * CPU_NORM_CHUNK < n ? (c + 1) * CPU_NORM_CHUNK : n;
        double s = 0.0;
        for (size_t i = c * CPU_NORM_CHUNK; i < i1; i++) s += (double)x[i] * x[i];
        partial[c] = s;
    }
    double total = 0.0;
    for (size_t c = 0; c < chunks; c++) total += partial[c];
    free(partial);
    return (float)sqrt(total);
}

// One AdamW update of n parameters (step t >= 1 for the bias corrections):
// g = grad * grad_scale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// param -= lr * (m / (1-b1^t) / (sqrt(v / (1-b2^t)) + eps) + weight_decay * param).
static inline void cpu_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1, float beta2,
                                    float eps, float weight_decay, float grad_scale, int t) {
    float bc1 = 1.0f - powf(beta1, (float)t);
    float bc2 = 1.0f - powf(beta2, (float)t);
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * grad_scale;
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float mhat = mi / bc1;
        float vhat = vi / bc2;
        param[i] -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * param[i]);
    }
}

// One optimizer step `step` (1-based, for the bias corrections) over a model's flat buffers laid out by
// its parameter table: clips the global gradient norm to opt->grad_clip, then AdamW tensor by tensor
// with learning rate lr * lr_mult and weight decay where the row's decay flag is set. Returns the
// gradient norm before clipping.
static inline float cpu_adamw_step_table(const ParamTable *table, float *params, const float *grads, float *m, float *v, const AdamWConfig *opt,
                                         float lr, int step) {
    float norm = cpu_global_norm(grads, table->num_parameters);
    float grad_scale = (opt->grad_clip > 0.0f && norm > opt->grad_clip) ? opt->grad_clip / norm : 1.0f;
    for (int i = 0; i < table->count; i++) {
        const ParamSpec *t = &table->specs[i];
        float wd = t->decay ? opt->weight_decay : 0.0f;
        cpu_adamw_update(params + t->offset, grads + t->offset, m + t->offset, v + t->offset, t->size, lr * t->lr_mult, opt->beta1, opt->beta2,
                         opt->eps, wd, grad_scale, step);
    }
    return norm;
}

#endif // TEST_REFERENCE_LAYERS_CPU_H
