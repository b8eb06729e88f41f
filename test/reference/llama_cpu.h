// CPU reference Llama in fp32, composed of the shared layers of layers_cpu.h: the oracle of the Llama
// GPU trainer. The model, its parameter table and layouts are llama_model.h's. Plain C, also compiled
// as C++ by nvcc.
//
// Per layer: RMSNorm -> qkv matmul -> RoPE on q and k (Hugging Face rotate_half convention, position
// t = index in the sequence) -> causal grouped-query attention -> output matmul -> residual add;
// RMSNorm -> gate_up matmul -> SwiGLU (silu(gate) * up) -> down matmul -> residual add. Then the final
// RMSNorm, the untied LM head and the softmax cross-entropy over the real vocabulary (padded logits get
// no probability and no gradient). No biases. Optimizer: layers_cpu.h's clipping and AdamW, weight
// decay on the tensors the table flags.
//
// Determinism: as layers_cpu.h (every result independent of the OpenMP thread count).
// Layouts (row-major): activations [B, T, .] with N = B*T rows; qkv [B, T, (NH + 2*NKV)*HS] (q heads,
// k heads, v heads); gate_up [B, T, 2F] (gate | up); attention probabilities [B, NH, T, T].
// Backward ACCUMULATES into the parameter gradients, like llm.c, so the caller zeroes them first (or
// accumulates over micro-batches on purpose).
#ifndef TEST_REFERENCE_LLAMA_CPU_H
#define TEST_REFERENCE_LLAMA_CPU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/param_table.h"
#include "core/utils.h"
#include "llama_model.h"
#include "test/reference/layers_cpu.h"
#include "test/reference/model_cpu.h"

// Every activation kept from forward for backward, as pointers into one buffer. The gradient
// buffers of the backward pass use the same layout. QKV = (NH + 2*NKV)*HS.
enum {
    LLAMA_ACT_ENCODED = 0,      // [B,T,C] token embeddings: the residual stream entering layer 0
    LLAMA_ACT_ATTN_NORM,        // [L,B,T,C]
    LLAMA_ACT_ATTN_NORM_RSTD,   // [L,B,T]
    LLAMA_ACT_QKV,              // [L,B,T,QKV] qkv matmul output
    LLAMA_ACT_QKV_ROPE,         // [L,B,T,QKV] q and k turned by RoPE, v copied
    LLAMA_ACT_ATTY,             // [L,B,T,C]
    LLAMA_ACT_ATT,              // [L,B,NH,T,T]
    LLAMA_ACT_ATTN_OUT,         // [L,B,T,C]
    LLAMA_ACT_RESIDUAL2,        // [L,B,T,C]
    LLAMA_ACT_FFN_NORM,         // [L,B,T,C]
    LLAMA_ACT_FFN_NORM_RSTD,    // [L,B,T]
    LLAMA_ACT_GATE_UP,          // [L,B,T,2F]
    LLAMA_ACT_SWIGLU,           // [L,B,T,F]
    LLAMA_ACT_DOWN,             // [L,B,T,C]
    LLAMA_ACT_RESIDUAL3,        // [L,B,T,C]
    LLAMA_ACT_FINAL_NORM,       // [B,T,C]
    LLAMA_ACT_FINAL_NORM_RSTD,  // [B,T]
    LLAMA_ACT_LOGITS,           // [B,T,Vp]
    LLAMA_ACT_PROBS,            // [B,T,Vp]
    LLAMA_ACT_LOSSES,           // [B,T]
    LLAMA_ACT_COUNT
};

typedef struct {
    LlamaConfig config;
    CpuModel core;               // parameters (llama_model.h's table), gradients, moments, the LLAMA_ACT_* activations, tokens, mean loss
    float *rope_cos, *rope_sin;  // [T, HS/2] (cpu_rope_table)
} LlamaCpu;

// Allocates a model for configuration *cfg and batches of B x T tokens (T <= max_seq_len), all
// parameters, gradients, moments and activations zeroed; fill core.params next (e.g.
// param_table_init(&model->core.table, model->core.params, seed)).
static inline void llama_cpu_build(LlamaCpu *model, const LlamaConfig *cfg, int B, int T) {
    char err[256];
    ParamTable table;
    if (llama_param_table(cfg, &table, err, sizeof(err)) != 0) fatal("llama_cpu_build: %s", err);
    memset(model, 0, sizeof(*model));
    model->config = *cfg;
    cpu_model_build(&model->core, &table, B, T, cfg->max_seq_len, LLAMA_ACT_COUNT, "llama_cpu_build");
    size_t L = (size_t)cfg->num_layers, C = (size_t)cfg->channels, NH = (size_t)cfg->num_heads, Vp = (size_t)cfg->padded_vocab_size;
    size_t HS = C / NH, QKV = (NH + 2 * (size_t)cfg->num_kv_heads) * HS, F = (size_t)cfg->ffn_hidden;
    size_t BT = (size_t)B * T;
    size_t *s = model->core.act_size;
    s[LLAMA_ACT_ENCODED] = BT * C;
    s[LLAMA_ACT_ATTN_NORM] = L * BT * C;
    s[LLAMA_ACT_ATTN_NORM_RSTD] = L * BT;
    s[LLAMA_ACT_QKV] = L * BT * QKV;
    s[LLAMA_ACT_QKV_ROPE] = L * BT * QKV;
    s[LLAMA_ACT_ATTY] = L * BT * C;
    s[LLAMA_ACT_ATT] = L * (size_t)B * NH * T * T;
    s[LLAMA_ACT_ATTN_OUT] = L * BT * C;
    s[LLAMA_ACT_RESIDUAL2] = L * BT * C;
    s[LLAMA_ACT_FFN_NORM] = L * BT * C;
    s[LLAMA_ACT_FFN_NORM_RSTD] = L * BT;
    s[LLAMA_ACT_GATE_UP] = L * BT * 2 * F;
    s[LLAMA_ACT_SWIGLU] = L * BT * F;
    s[LLAMA_ACT_DOWN] = L * BT * C;
    s[LLAMA_ACT_RESIDUAL3] = L * BT * C;
    s[LLAMA_ACT_FINAL_NORM] = BT * C;
    s[LLAMA_ACT_FINAL_NORM_RSTD] = BT;
    s[LLAMA_ACT_LOGITS] = BT * Vp;
    s[LLAMA_ACT_PROBS] = BT * Vp;
    s[LLAMA_ACT_LOSSES] = BT;
    cpu_model_alloc_acts(&model->core);
    model->rope_cos = (float *)malloc_check((size_t)T * (HS / 2) * sizeof(float));
    model->rope_sin = (float *)malloc_check((size_t)T * (HS / 2) * sizeof(float));
    cpu_rope_table(model->rope_cos, model->rope_sin, T, (int)HS, cfg->rope_theta);
}

static inline void llama_cpu_free(LlamaCpu *model) {
    cpu_model_free(&model->core);
    free(model->rope_cos);
    free(model->rope_sin);
    memset(model, 0, sizeof(*model));
}

// Forward pass over inputs [B,T] (ids < vocab_size). With targets [B,T], computes the per-token
// losses and returns their mean (also kept in model->core.mean_loss); with targets NULL stops at the
// logits and returns 0.
static inline float llama_cpu_forward(LlamaCpu *model, const int *inputs, const int *targets) {
    const LlamaConfig *cfg = &model->config;
    const int B = model->core.B, T = model->core.T, C = cfg->channels, NH = cfg->num_heads, NKV = cfg->num_kv_heads, L = cfg->num_layers;
    const int V = cfg->vocab_size, Vp = cfg->padded_vocab_size, F = cfg->ffn_hidden, BT = B * T;
    const int HS = C / NH, QKV = (NH + 2 * NKV) * HS;
    const float eps = cfg->norm_eps;
    cpu_model_set_batch(&model->core, inputs, targets, V, "llama_cpu_forward");
    float **p = model->core.param, **a = model->core.act;
    const size_t bc = (size_t)BT * C, bq = (size_t)BT * QKV, bf = (size_t)BT * F;
    cpu_embedding_forward(a[LLAMA_ACT_ENCODED], inputs, p[LLAMA_WTE], BT, C);
    for (int l = 0; l < L; l++) {
        const float *residual = l == 0 ? a[LLAMA_ACT_ENCODED] : a[LLAMA_ACT_RESIDUAL3] + (size_t)(l - 1) * bc;
        float *attn_norm = a[LLAMA_ACT_ATTN_NORM] + l * bc, *qkv = a[LLAMA_ACT_QKV] + l * bq, *qkvr = a[LLAMA_ACT_QKV_ROPE] + l * bq;
        float *atty = a[LLAMA_ACT_ATTY] + l * bc, *att = a[LLAMA_ACT_ATT] + (size_t)l * B * NH * T * T;
        float *attn_out = a[LLAMA_ACT_ATTN_OUT] + l * bc, *residual2 = a[LLAMA_ACT_RESIDUAL2] + l * bc;
        float *ffn_norm = a[LLAMA_ACT_FFN_NORM] + l * bc, *gate_up = a[LLAMA_ACT_GATE_UP] + l * 2 * bf;
        float *swiglu = a[LLAMA_ACT_SWIGLU] + l * bf, *down = a[LLAMA_ACT_DOWN] + l * bc, *residual3 = a[LLAMA_ACT_RESIDUAL3] + l * bc;
        cpu_rmsnorm_forward(attn_norm, a[LLAMA_ACT_ATTN_NORM_RSTD] + l * BT, residual, p[LLAMA_ATTN_NORM] + (size_t)l * C, BT, C, eps);
        cpu_matmul_forward(qkv, attn_norm, p[LLAMA_QKVW] + (size_t)l * QKV * C, NULL, BT, C, QKV);
        cpu_rope_forward(qkvr, qkv, model->rope_cos, model->rope_sin, B, T, NH + 2 * NKV, NH + NKV, HS);
        cpu_gqa_attention_forward(atty, att, qkvr, B, T, NH, NKV, HS);
        cpu_matmul_forward(attn_out, atty, p[LLAMA_ATTN_OUTW] + (size_t)l * C * C, NULL, BT, C, C);
        cpu_residual_forward(residual2, residual, attn_out, bc);
        cpu_rmsnorm_forward(ffn_norm, a[LLAMA_ACT_FFN_NORM_RSTD] + l * BT, residual2, p[LLAMA_FFN_NORM] + (size_t)l * C, BT, C, eps);
        cpu_matmul_forward(gate_up, ffn_norm, p[LLAMA_GATE_UPW] + (size_t)l * 2 * F * C, NULL, BT, C, 2 * F);
        cpu_swiglu_forward(swiglu, gate_up, BT, F);
        cpu_matmul_forward(down, swiglu, p[LLAMA_DOWNW] + (size_t)l * C * F, NULL, BT, F, C);
        cpu_residual_forward(residual3, residual2, down, bc);
    }
    cpu_rmsnorm_forward(a[LLAMA_ACT_FINAL_NORM], a[LLAMA_ACT_FINAL_NORM_RSTD], a[LLAMA_ACT_RESIDUAL3] + (size_t)(L - 1) * bc,
                        p[LLAMA_FINAL_NORM], BT, C, eps);
    cpu_matmul_forward(a[LLAMA_ACT_LOGITS], a[LLAMA_ACT_FINAL_NORM], p[LLAMA_LM_HEAD], NULL, BT, C, Vp);
    if (targets == NULL) return 0.0f;
    cpu_softmax_crossentropy_forward(a[LLAMA_ACT_LOSSES], a[LLAMA_ACT_PROBS], a[LLAMA_ACT_LOGITS], targets, BT, V, Vp);
    return cpu_model_mean_loss(&model->core, a[LLAMA_ACT_LOSSES]);
}

// Sets every parameter gradient to zero.
static inline void llama_cpu_zero_grad(LlamaCpu *model) { cpu_model_zero_grad(&model->core); }

// Backward pass of the last forward (which must have had targets): ACCUMULATES into model->core.grads
// the gradient of mean_loss / grad_accum_steps, so that grad_accum_steps micro-batches sum to the
// gradient of their mean loss.
static inline void llama_cpu_backward(LlamaCpu *model, int grad_accum_steps) {
    const LlamaConfig *cfg = &model->config;
    const int B = model->core.B, T = model->core.T, C = cfg->channels, NH = cfg->num_heads, NKV = cfg->num_kv_heads, L = cfg->num_layers;
    const int V = cfg->vocab_size, Vp = cfg->padded_vocab_size, F = cfg->ffn_hidden, BT = B * T;
    const int HS = C / NH, QKV = (NH + 2 * NKV) * HS;
    float **p = model->core.param, **g = model->core.grad, **a = model->core.act, **ga = model->core.grad_act;
    const size_t bc = (size_t)BT * C, bq = (size_t)BT * QKV, bf = (size_t)BT * F;
    cpu_model_backward_begin(&model->core, ga[LLAMA_ACT_LOSSES], grad_accum_steps);
    cpu_softmax_crossentropy_backward(ga[LLAMA_ACT_LOGITS], ga[LLAMA_ACT_LOSSES], a[LLAMA_ACT_PROBS], model->core.targets, BT, V, Vp);
    cpu_matmul_backward(ga[LLAMA_ACT_FINAL_NORM], g[LLAMA_LM_HEAD], NULL, ga[LLAMA_ACT_LOGITS], a[LLAMA_ACT_FINAL_NORM], p[LLAMA_LM_HEAD], BT, C,
                        Vp);
    cpu_rmsnorm_backward(ga[LLAMA_ACT_RESIDUAL3] + (size_t)(L - 1) * bc, g[LLAMA_FINAL_NORM], ga[LLAMA_ACT_FINAL_NORM],
                         a[LLAMA_ACT_RESIDUAL3] + (size_t)(L - 1) * bc, p[LLAMA_FINAL_NORM], a[LLAMA_ACT_FINAL_NORM_RSTD], BT, C);
    for (int l = L - 1; l >= 0; l--) {
        const float *residual = l == 0 ? a[LLAMA_ACT_ENCODED] : a[LLAMA_ACT_RESIDUAL3] + (size_t)(l - 1) * bc;
        float *dresidual = l == 0 ? ga[LLAMA_ACT_ENCODED] : ga[LLAMA_ACT_RESIDUAL3] + (size_t)(l - 1) * bc;
        const size_t att_off = (size_t)l * B * NH * T * T;
        const float *qkvw = p[LLAMA_QKVW] + (size_t)l * QKV * C, *attn_outw = p[LLAMA_ATTN_OUTW] + (size_t)l * C * C;
        const float *gate_upw = p[LLAMA_GATE_UPW] + (size_t)l * 2 * F * C, *downw = p[LLAMA_DOWNW] + (size_t)l * C * F;
        // MLP: residual3 = residual2 + down(swiglu(gate_up(ffn_norm(residual2))))
        cpu_residual_backward(ga[LLAMA_ACT_RESIDUAL2] + l * bc, ga[LLAMA_ACT_DOWN] + l * bc, ga[LLAMA_ACT_RESIDUAL3] + l * bc, bc);
        cpu_matmul_backward(ga[LLAMA_ACT_SWIGLU] + l * bf, g[LLAMA_DOWNW] + (size_t)l * C * F, NULL, ga[LLAMA_ACT_DOWN] + l * bc,
                            a[LLAMA_ACT_SWIGLU] + l * bf, downw, BT, F, C);
        cpu_swiglu_backward(ga[LLAMA_ACT_GATE_UP] + l * 2 * bf, ga[LLAMA_ACT_SWIGLU] + l * bf, a[LLAMA_ACT_GATE_UP] + l * 2 * bf, BT, F);
        cpu_matmul_backward(ga[LLAMA_ACT_FFN_NORM] + l * bc, g[LLAMA_GATE_UPW] + (size_t)l * 2 * F * C, NULL, ga[LLAMA_ACT_GATE_UP] + l * 2 * bf,
                            a[LLAMA_ACT_FFN_NORM] + l * bc, gate_upw, BT, C, 2 * F);
        cpu_rmsnorm_backward(ga[LLAMA_ACT_RESIDUAL2] + l * bc, g[LLAMA_FFN_NORM] + (size_t)l * C, ga[LLAMA_ACT_FFN_NORM] + l * bc,
                             a[LLAMA_ACT_RESIDUAL2] + l * bc, p[LLAMA_FFN_NORM] + (size_t)l * C, a[LLAMA_ACT_FFN_NORM_RSTD] + l * BT, BT, C);
        // attention: residual2 = residual + attn_out(attention(rope(qkv(attn_norm(residual)))))
        cpu_residual_backward(dresidual, ga[LLAMA_ACT_ATTN_OUT] + l * bc, ga[LLAMA_ACT_RESIDUAL2] + l * bc, bc);
        cpu_matmul_backward(ga[LLAMA_ACT_ATTY] + l * bc, g[LLAMA_ATTN_OUTW] + (size_t)l * C * C, NULL, ga[LLAMA_ACT_ATTN_OUT] + l * bc,
                            a[LLAMA_ACT_ATTY] + l * bc, attn_outw, BT, C, C);
        cpu_gqa_attention_backward(ga[LLAMA_ACT_QKV_ROPE] + l * bq, ga[LLAMA_ACT_ATTY] + l * bc, a[LLAMA_ACT_QKV_ROPE] + l * bq,
                                   a[LLAMA_ACT_ATT] + att_off, B, T, NH, NKV, HS);
        cpu_rope_backward(ga[LLAMA_ACT_QKV] + l * bq, ga[LLAMA_ACT_QKV_ROPE] + l * bq, model->rope_cos, model->rope_sin, B, T, NH + 2 * NKV,
                          NH + NKV, HS);
        cpu_matmul_backward(ga[LLAMA_ACT_ATTN_NORM] + l * bc, g[LLAMA_QKVW] + (size_t)l * QKV * C, NULL, ga[LLAMA_ACT_QKV] + l * bq,
                            a[LLAMA_ACT_ATTN_NORM] + l * bc, qkvw, BT, C, QKV);
        cpu_rmsnorm_backward(dresidual, g[LLAMA_ATTN_NORM] + (size_t)l * C, ga[LLAMA_ACT_ATTN_NORM] + l * bc, residual,
                             p[LLAMA_ATTN_NORM] + (size_t)l * C, a[LLAMA_ACT_ATTN_NORM_RSTD] + l * BT, BT, C);
    }
    cpu_embedding_backward(g[LLAMA_WTE], ga[LLAMA_ACT_ENCODED], model->core.inputs, BT, C);
}

// Optimizer step `step` (1-based, for the bias corrections) with learning rate lr: clips the
// global gradient norm to opt->grad_clip, then AdamW on every tensor (weight decay where the table's
// decay flag is set: the 2-D weights). Returns the gradient norm before clipping.
static inline float llama_cpu_update(LlamaCpu *model, const AdamWConfig *opt, float lr, int step) {
    return cpu_model_update(&model->core, opt, lr, step);
}

#endif // TEST_REFERENCE_LLAMA_CPU_H
