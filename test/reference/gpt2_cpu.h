// CPU reference GPT-2 in fp32: the oracle that every GPU kernel and the GPU trainer are tested
// against. Plain C, also compiled as C++ by nvcc (the GPU tests include it).
//
// Determinism: every result is independent of the OpenMP thread count. Parallel loops only split
// work over disjoint outputs, and every sum runs in a fixed order (no atomics, no OpenMP
// reductions); the global gradient norm sums fixed-size chunks and then the chunk sums in order.
//
// Layouts (row-major): activations [B, T, C] with N = B*T rows; linear weights [OC, IC] (y = x W^T + b);
// qkv [B, T, 3C] holding q | k | v, head h at channels [h*hs, (h+1)*hs), hs = C/NH; attention
// probabilities [B, NH, T, T] (entries t2 > t are 0); logits and probs [B, T, Vp].
// Backward functions ACCUMULATE (+=) into their gradient outputs, like llm.c, so the caller
// zeroes them first (or accumulates over micro-batches on purpose).
#ifndef TEST_REFERENCE_GPT2_CPU_H
#define TEST_REFERENCE_GPT2_CPU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/gpt2_model.h"
#include "core/utils.h"

#define CPU_LAYERNORM_EPS 1e-5f
// Tile sizes of the matmuls (rows x columns of the output handled by one task).
#define CPU_MATMUL_ROW_TILE 8
#define CPU_MATMUL_COL_TILE 256

// ----------------------------------------------------------------------------
// Layers, forward and backward

// out[b,t,:] = wte[inp[b,t],:] + wpe[t,:].  inp [B,T] token ids, wte [Vp,C], wpe [maxT,C].
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
    // Token rows may repeat, so parallelize over channels, keeping the (b,t) order within each.
#pragma omp parallel for
    for (int c0 = 0; c0 < C; c0 += 16) {
        int c1 = c0 + 16 < C ? c0 + 16 : C;
        for (int bt = 0; bt < B * T; bt++) {
            const float *d = dout + (size_t)bt * C;
            float *w = dwte + (size_t)inp[bt] * C;
            for (int c = c0; c < c1; c++) w[c] += d[c];
        }
    }
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

// Causal multi-head self-attention. qkv [B,T,3C] (q | k | v), out [B,T,C] (heads side by side),
// att [B,NH,T,T] softmax probabilities saved for backward (0 above the diagonal).
// att[b,h,t,t2] = softmax_{t2<=t}(q_t . k_t2 / sqrt(hs)); out[b,t,h] = sum_t2 att * v_t2.
static inline void cpu_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(3)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                const float *q = qkv + ((size_t)b * T + t) * 3 * C + h * hs;
                float *a = att + (((size_t)b * NH + h) * T + t) * T;
                float maxval = -INFINITY;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *k = qkv + ((size_t)b * T + t2) * 3 * C + C + h * hs;
                    float dot = 0.0f;
                    for (int i = 0; i < hs; i++) dot += q[i] * k[i];
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
                float *o = out + ((size_t)b * T + t) * C + h * hs;
                for (int i = 0; i < hs; i++) o[i] = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *v = qkv + ((size_t)b * T + t2) * 3 * C + 2 * C + h * hs;
                    for (int i = 0; i < hs; i++) o[i] += a[t2] * v[i];
                }
            }
        }
    }
}

// Backward of cpu_attention_forward: dqkv [B,T,3C] += gradients of q, k, v from dout [B,T,C],
// using the saved probabilities att. Each (b, h) owns its slices of dqkv, processed in t order.
static inline void cpu_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att, int B, int T, int C, int NH) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            float *datt = (float *)malloc_check((size_t)T * sizeof(float));  // d loss / d att row
            for (int t = 0; t < T; t++) {
                const float *a = att + (((size_t)b * NH + h) * T + t) * T;
                const float *d = dout + ((size_t)b * T + t) * C + h * hs;
                const float *q = qkv + ((size_t)b * T + t) * 3 * C + h * hs;
                float *dq = dqkv + ((size_t)b * T + t) * 3 * C + h * hs;
                // through out = att . v
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *v = qkv + ((size_t)b * T + t2) * 3 * C + 2 * C + h * hs;
                    float *dv = dqkv + ((size_t)b * T + t2) * 3 * C + 2 * C + h * hs;
                    float dot = 0.0f;
                    for (int i = 0; i < hs; i++) {
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
                    const float *k = qkv + ((size_t)b * T + t2) * 3 * C + C + h * hs;
                    float *dk = dqkv + ((size_t)b * T + t2) * 3 * C + C + h * hs;
                    for (int i = 0; i < hs; i++) {
                        dq[i] += dpre * k[i];
                        dk[i] += dpre * q[i];
                    }
                }
            }
            free(datt);
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

typedef struct {
    float beta1;
    float beta2;
    float eps;
    float weight_decay;  // decoupled, applied to the 2-D weights only (GPT2ParamTensor.is_matrix)
    float grad_clip;     // clip the global gradient norm to this value; <= 0 disables
} AdamWConfig;

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

// ----------------------------------------------------------------------------
// The model

// Every activation kept from forward for backward, as pointers into one buffer. The gradient
// buffers of the backward pass use the same layout.
enum {
    ACT_ENCODED = 0,  // [B,T,C]
    ACT_LN1,          // [L,B,T,C]
    ACT_LN1_MEAN,     // [L,B,T]
    ACT_LN1_RSTD,     // [L,B,T]
    ACT_QKV,          // [L,B,T,3C]
    ACT_ATTY,         // [L,B,T,C]
    ACT_ATT,          // [L,B,NH,T,T]
    ACT_ATTPROJ,      // [L,B,T,C]
    ACT_RESIDUAL2,    // [L,B,T,C]
    ACT_LN2,          // [L,B,T,C]
    ACT_LN2_MEAN,     // [L,B,T]
    ACT_LN2_RSTD,     // [L,B,T]
    ACT_FCH,          // [L,B,T,4C]
    ACT_FCH_GELU,     // [L,B,T,4C]
    ACT_FCPROJ,       // [L,B,T,C]
    ACT_RESIDUAL3,    // [L,B,T,C]
    ACT_LNF,          // [B,T,C]
    ACT_LNF_MEAN,     // [B,T]
    ACT_LNF_RSTD,     // [B,T]
    ACT_LOGITS,       // [B,T,Vp]
    ACT_PROBS,        // [B,T,Vp]
    ACT_LOSSES,       // [B,T]
    ACT_COUNT
};

typedef struct {
    GPT2Config config;
    GPT2ParamLayout layout;
    int B, T;                    // batch shape the activations were sized for
    float *params;               // num_parameters, llm.c order
    float *grads;                // same layout
    float *m, *v;                // AdamW moments, same layout
    float *param[GPT2_NUM_PARAM_TENSORS];  // views into params
    float *grad[GPT2_NUM_PARAM_TENSORS];   // views into grads
    size_t act_size[ACT_COUNT];
    float *acts_memory, *grad_acts_memory;
    float *act[ACT_COUNT];       // views into acts_memory
    float *grad_act[ACT_COUNT];  // views into grad_acts_memory
    int *inputs, *targets;       // [B,T], copied by forward for backward
    float mean_loss;             // of the last forward with targets
} GPT2Cpu;

// Allocates a model for configuration *cfg and batches of B x T tokens (T <= max_seq_len), all
// parameters, gradients, moments and activations zeroed; fill params (e.g. gpt2_init_params) next.
static inline void gpt2_cpu_build(GPT2Cpu *model, const GPT2Config *cfg, int B, int T) {
    char err[256];
    if (gpt2_config_validate(cfg, err, sizeof(err)) != 0) fatal("gpt2_cpu_build: %s", err);
    if (B <= 0 || T <= 0 || T > cfg->max_seq_len) fatal("gpt2_cpu_build: need B > 0 and 0 < T <= %d, got B=%d T=%d", cfg->max_seq_len, B, T);
    memset(model, 0, sizeof(*model));
    model->config = *cfg;
    model->B = B;
    model->T = T;
    gpt2_param_layout(cfg, &model->layout);
    size_t np = model->layout.num_parameters;
    model->params = (float *)calloc_check(np, sizeof(float));
    model->grads = (float *)calloc_check(np, sizeof(float));
    model->m = (float *)calloc_check(np, sizeof(float));
    model->v = (float *)calloc_check(np, sizeof(float));
    for (int i = 0; i < GPT2_NUM_PARAM_TENSORS; i++) {
        model->param[i] = model->params + model->layout.tensors[i].offset;
        model->grad[i] = model->grads + model->layout.tensors[i].offset;
    }
    size_t L = (size_t)cfg->num_layers, C = (size_t)cfg->channels, NH = (size_t)cfg->num_heads, Vp = (size_t)cfg->padded_vocab_size;
    size_t BT = (size_t)B * T;
    size_t *s = model->act_size;
    s[ACT_ENCODED] = BT * C;
    s[ACT_LN1] = L * BT * C;
    s[ACT_LN1_MEAN] = L * BT;
    s[ACT_LN1_RSTD] = L * BT;
    s[ACT_QKV] = L * BT * 3 * C;
    s[ACT_ATTY] = L * BT * C;
    s[ACT_ATT] = L * (size_t)B * NH * T * T;
    s[ACT_ATTPROJ] = L * BT * C;
    s[ACT_RESIDUAL2] = L * BT * C;
    s[ACT_LN2] = L * BT * C;
    s[ACT_LN2_MEAN] = L * BT;
    s[ACT_LN2_RSTD] = L * BT;
    s[ACT_FCH] = L * BT * 4 * C;
    s[ACT_FCH_GELU] = L * BT * 4 * C;
    s[ACT_FCPROJ] = L * BT * C;
    s[ACT_RESIDUAL3] = L * BT * C;
    s[ACT_LNF] = BT * C;
    s[ACT_LNF_MEAN] = BT;
    s[ACT_LNF_RSTD] = BT;
    s[ACT_LOGITS] = BT * Vp;
    s[ACT_PROBS] = BT * Vp;
    s[ACT_LOSSES] = BT;
    size_t total = 0;
    for (int i = 0; i < ACT_COUNT; i++) total += s[i];
    model->acts_memory = (float *)calloc_check(total, sizeof(float));
    model->grad_acts_memory = (float *)calloc_check(total, sizeof(float));
    size_t offset = 0;
    for (int i = 0; i < ACT_COUNT; i++) {
        model->act[i] = model->acts_memory + offset;
        model->grad_act[i] = model->grad_acts_memory + offset;
        offset += s[i];
    }
    model->inputs = (int *)calloc_check(BT, sizeof(int));
    model->targets = (int *)calloc_check(BT, sizeof(int));
}

static inline void gpt2_cpu_free(GPT2Cpu *model) {
    free(model->params);
    free(model->grads);
    free(model->m);
    free(model->v);
    free(model->acts_memory);
    free(model->grad_acts_memory);
    free(model->inputs);
    free(model->targets);
    memset(model, 0, sizeof(*model));
}

// Forward pass over inputs [B,T] (ids < vocab_size). With targets [B,T], computes the per-token
// losses and returns their mean (also kept in model->mean_loss); with targets NULL stops at the
// logits and returns 0.
static inline float gpt2_cpu_forward(GPT2Cpu *model, const int *inputs, const int *targets) {
    const GPT2Config *cfg = &model->config;
    int B = model->B, T = model->T, C = cfg->channels, NH = cfg->num_heads, L = cfg->num_layers;
    int V = cfg->vocab_size, Vp = cfg->padded_vocab_size, BT = B * T;
    for (int i = 0; i < BT; i++) {
        if (inputs[i] < 0 || inputs[i] >= V) fatal("gpt2_cpu_forward: input token %d at position %d is outside [0, %d)", inputs[i], i, V);
        if (targets != NULL && (targets[i] < 0 || targets[i] >= V))
            fatal("gpt2_cpu_forward: target token %d at position %d is outside [0, %d)", targets[i], i, V);
    }
    memcpy(model->inputs, inputs, (size_t)BT * sizeof(int));
    if (targets != NULL) memcpy(model->targets, targets, (size_t)BT * sizeof(int));
    float **p = model->param, **a = model->act;
    size_t bc = (size_t)BT * C;
    cpu_encoder_forward(a[ACT_ENCODED], inputs, p[GPT2_WTE], p[GPT2_WPE], B, T, C);
    for (int l = 0; l < L; l++) {
        const float *residual = l == 0 ? a[ACT_ENCODED] : a[ACT_RESIDUAL3] + (size_t)(l - 1) * bc;
        float *ln1 = a[ACT_LN1] + l * bc, *qkv = a[ACT_QKV] + l * 3 * bc, *atty = a[ACT_ATTY] + l * bc;
        float *att = a[ACT_ATT] + (size_t)l * B * NH * T * T, *attproj = a[ACT_ATTPROJ] + l * bc;
        float *residual2 = a[ACT_RESIDUAL2] + l * bc, *ln2 = a[ACT_LN2] + l * bc;
        float *fch = a[ACT_FCH] + l * 4 * bc, *fch_gelu = a[ACT_FCH_GELU] + l * 4 * bc;
        float *fcproj = a[ACT_FCPROJ] + l * bc, *residual3 = a[ACT_RESIDUAL3] + l * bc;
        cpu_layernorm_forward(ln1, a[ACT_LN1_MEAN] + l * BT, a[ACT_LN1_RSTD] + l * BT, residual,
                              p[GPT2_LN1W] + l * C, p[GPT2_LN1B] + l * C, BT, C);
        cpu_matmul_forward(qkv, ln1, p[GPT2_QKVW] + (size_t)l * 3 * C * C, p[GPT2_QKVB] + l * 3 * C, BT, C, 3 * C);
        cpu_attention_forward(atty, att, qkv, B, T, C, NH);
        cpu_matmul_forward(attproj, atty, p[GPT2_ATTPROJW] + (size_t)l * C * C, p[GPT2_ATTPROJB] + l * C, BT, C, C);
        cpu_residual_forward(residual2, residual, attproj, bc);
        cpu_layernorm_forward(ln2, a[ACT_LN2_MEAN] + l * BT, a[ACT_LN2_RSTD] + l * BT, residual2,
                              p[GPT2_LN2W] + l * C, p[GPT2_LN2B] + l * C, BT, C);
        cpu_matmul_forward(fch, ln2, p[GPT2_FCW] + (size_t)l * 4 * C * C, p[GPT2_FCB] + l * 4 * C, BT, C, 4 * C);
        cpu_gelu_forward(fch_gelu, fch, 4 * bc);
        cpu_matmul_forward(fcproj, fch_gelu, p[GPT2_FCPROJW] + (size_t)l * 4 * C * C, p[GPT2_FCPROJB] + l * C, BT, 4 * C, C);
        cpu_residual_forward(residual3, residual2, fcproj, bc);
    }
    cpu_layernorm_forward(a[ACT_LNF], a[ACT_LNF_MEAN], a[ACT_LNF_RSTD], a[ACT_RESIDUAL3] + (size_t)(L - 1) * bc, p[GPT2_LNFW], p[GPT2_LNFB], BT, C);
    cpu_matmul_forward(a[ACT_LOGITS], a[ACT_LNF], p[GPT2_WTE], NULL, BT, C, Vp);
    if (targets == NULL) return 0.0f;
    cpu_softmax_crossentropy_forward(a[ACT_LOSSES], a[ACT_PROBS], a[ACT_LOGITS], targets, BT, V, Vp);
    double sum = 0.0;
    for (int i = 0; i < BT; i++) sum += a[ACT_LOSSES][i];
    model->mean_loss = (float)(sum / BT);
    return model->mean_loss;
}

// Sets every parameter gradient to zero.
static inline void gpt2_cpu_zero_grad(GPT2Cpu *model) {
    memset(model->grads, 0, model->layout.num_parameters * sizeof(float));
}

// Backward pass of the last forward (which must have had targets): ACCUMULATES into model->grads
// the gradient of mean_loss / grad_accum_steps, so that grad_accum_steps micro-batches sum to the
// gradient of their mean loss.
static inline void gpt2_cpu_backward(GPT2Cpu *model, int grad_accum_steps) {
    const GPT2Config *cfg = &model->config;
    int B = model->B, T = model->T, C = cfg->channels, NH = cfg->num_heads, L = cfg->num_layers;
    int V = cfg->vocab_size, Vp = cfg->padded_vocab_size, BT = B * T;
    size_t total = 0;
    for (int i = 0; i < ACT_COUNT; i++) total += model->act_size[i];
    memset(model->grad_acts_memory, 0, total * sizeof(float));
    float **p = model->param, **g = model->grad, **a = model->act, **ga = model->grad_act;
    size_t bc = (size_t)BT * C;
    float dloss = 1.0f / ((float)BT * (float)grad_accum_steps);
    for (int i = 0; i < BT; i++) ga[ACT_LOSSES][i] = dloss;
    cpu_softmax_crossentropy_backward(ga[ACT_LOGITS], ga[ACT_LOSSES], a[ACT_PROBS], model->targets, BT, V, Vp);
    cpu_matmul_backward(ga[ACT_LNF], g[GPT2_WTE], NULL, ga[ACT_LOGITS], a[ACT_LNF], p[GPT2_WTE], BT, C, Vp);
    cpu_layernorm_backward(ga[ACT_RESIDUAL3] + (size_t)(L - 1) * bc, g[GPT2_LNFW], g[GPT2_LNFB], ga[ACT_LNF],
                           a[ACT_RESIDUAL3] + (size_t)(L - 1) * bc, p[GPT2_LNFW], a[ACT_LNF_MEAN], a[ACT_LNF_RSTD], BT, C);
    for (int l = L - 1; l >= 0; l--) {
        const float *residual = l == 0 ? a[ACT_ENCODED] : a[ACT_RESIDUAL3] + (size_t)(l - 1) * bc;
        float *dresidual = l == 0 ? ga[ACT_ENCODED] : ga[ACT_RESIDUAL3] + (size_t)(l - 1) * bc;
        size_t att_off = (size_t)l * B * NH * T * T;
        cpu_residual_backward(ga[ACT_RESIDUAL2] + l * bc, ga[ACT_FCPROJ] + l * bc, ga[ACT_RESIDUAL3] + l * bc, bc);
        cpu_matmul_backward(ga[ACT_FCH_GELU] + l * 4 * bc, g[GPT2_FCPROJW] + (size_t)l * 4 * C * C, g[GPT2_FCPROJB] + l * C,
                            ga[ACT_FCPROJ] + l * bc, a[ACT_FCH_GELU] + l * 4 * bc, p[GPT2_FCPROJW] + (size_t)l * 4 * C * C, BT, 4 * C, C);
        cpu_gelu_backward(ga[ACT_FCH] + l * 4 * bc, a[ACT_FCH] + l * 4 * bc, ga[ACT_FCH_GELU] + l * 4 * bc, 4 * bc);
        cpu_matmul_backward(ga[ACT_LN2] + l * bc, g[GPT2_FCW] + (size_t)l * 4 * C * C, g[GPT2_FCB] + l * 4 * C,
                            ga[ACT_FCH] + l * 4 * bc, a[ACT_LN2] + l * bc, p[GPT2_FCW] + (size_t)l * 4 * C * C, BT, C, 4 * C);
        cpu_layernorm_backward(ga[ACT_RESIDUAL2] + l * bc, g[GPT2_LN2W] + l * C, g[GPT2_LN2B] + l * C, ga[ACT_LN2] + l * bc,
                               a[ACT_RESIDUAL2] + l * bc, p[GPT2_LN2W] + l * C, a[ACT_LN2_MEAN] + l * BT, a[ACT_LN2_RSTD] + l * BT, BT, C);
        cpu_residual_backward(dresidual, ga[ACT_ATTPROJ] + l * bc, ga[ACT_RESIDUAL2] + l * bc, bc);
        cpu_matmul_backward(ga[ACT_ATTY] + l * bc, g[GPT2_ATTPROJW] + (size_t)l * C * C, g[GPT2_ATTPROJB] + l * C,
                            ga[ACT_ATTPROJ] + l * bc, a[ACT_ATTY] + l * bc, p[GPT2_ATTPROJW] + (size_t)l * C * C, BT, C, C);
        cpu_attention_backward(ga[ACT_QKV] + l * 3 * bc, ga[ACT_ATTY] + l * bc, a[ACT_QKV] + l * 3 * bc, a[ACT_ATT] + att_off, B, T, C, NH);
        cpu_matmul_backward(ga[ACT_LN1] + l * bc, g[GPT2_QKVW] + (size_t)l * 3 * C * C, g[GPT2_QKVB] + l * 3 * C,
                            ga[ACT_QKV] + l * 3 * bc, a[ACT_LN1] + l * bc, p[GPT2_QKVW] + (size_t)l * 3 * C * C, BT, C, 3 * C);
        cpu_layernorm_backward(dresidual, g[GPT2_LN1W] + l * C, g[GPT2_LN1B] + l * C, ga[ACT_LN1] + l * bc,
                               residual, p[GPT2_LN1W] + l * C, a[ACT_LN1_MEAN] + l * BT, a[ACT_LN1_RSTD] + l * BT, BT, C);
    }
    cpu_encoder_backward(g[GPT2_WTE], g[GPT2_WPE], ga[ACT_ENCODED], model->inputs, B, T, C);
}

// Optimizer step `step` (1-based, for the bias corrections) with learning rate lr: clips the
// global gradient norm to opt->grad_clip, then AdamW on every tensor (weight decay on the 2-D
// weights only). Returns the gradient norm before clipping.
static inline float gpt2_cpu_update(GPT2Cpu *model, const AdamWConfig *opt, float lr, int step) {
    float norm = cpu_global_norm(model->grads, model->layout.num_parameters);
    float grad_scale = (opt->grad_clip > 0.0f && norm > opt->grad_clip) ? opt->grad_clip / norm : 1.0f;
    for (int i = 0; i < GPT2_NUM_PARAM_TENSORS; i++) {
        const GPT2ParamTensor *t = &model->layout.tensors[i];
        float wd = t->is_matrix ? opt->weight_decay : 0.0f;
        cpu_adamw_update(model->params + t->offset, model->grads + t->offset, model->m + t->offset, model->v + t->offset, t->size,
                         lr, opt->beta1, opt->beta2, opt->eps, wd, grad_scale, step);
    }
    return norm;
}

#endif // TEST_REFERENCE_GPT2_CPU_H
