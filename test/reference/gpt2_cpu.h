// CPU reference GPT-2 in fp32, composed of the shared layers of layers_cpu.h: the oracle that the GPU
// trainer is tested against. Plain C, also compiled as C++ by nvcc (the GPU tests include it).
//
// Determinism: as layers_cpu.h (every result independent of the OpenMP thread count; no atomics, no
// OpenMP reductions, fixed summation orders).
//
// Layouts (row-major): activations [B, T, C] with N = B*T rows; linear weights [OC, IC] (y = x W^T + b);
// qkv [B, T, 3C] holding q | k | v, head h at channels [h*hs, (h+1)*hs), hs = C/NH; attention
// probabilities [B, NH, T, T] (entries t2 > t are 0); logits and probs [B, T, Vp]; the parameters
// in one flat buffer in the order of gpt2_model.h's parameter table.
// Backward functions ACCUMULATE (+=) into their gradient outputs, like llm.c, so the caller
// zeroes them first (or accumulates over micro-batches on purpose).
#ifndef TEST_REFERENCE_GPT2_CPU_H
#define TEST_REFERENCE_GPT2_CPU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/param_table.h"
#include "core/utils.h"
#include "gpt2_model.h"
#include "test/reference/layers_cpu.h"
#include "test/reference/model_cpu.h"

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
    CpuModel core;  // parameters (gpt2_model.h's table, llm.c order), gradients, moments, the ACT_* activations, tokens, mean loss
} GPT2Cpu;

// Allocates a model for configuration *cfg and batches of B x T tokens (T <= max_seq_len), all
// parameters, gradients, moments and activations zeroed; fill core.params next (e.g.
// param_table_init(&model->core.table, model->core.params, seed)).
static inline void gpt2_cpu_build(GPT2Cpu *model, const GPT2Config *cfg, int B, int T) {
    char err[256];
    ParamTable table;
    if (gpt2_param_table(cfg, &table, err, sizeof(err)) != 0) fatal("gpt2_cpu_build: %s", err);
    memset(model, 0, sizeof(*model));
    model->config = *cfg;
    cpu_model_build(&model->core, &table, B, T, cfg->max_seq_len, ACT_COUNT, "gpt2_cpu_build");
    size_t L = (size_t)cfg->num_layers, C = (size_t)cfg->channels, NH = (size_t)cfg->num_heads, Vp = (size_t)cfg->padded_vocab_size;
    size_t BT = (size_t)B * T;
    size_t *s = model->core.act_size;
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
    cpu_model_alloc_acts(&model->core);
}

static inline void gpt2_cpu_free(GPT2Cpu *model) {
    cpu_model_free(&model->core);
    memset(model, 0, sizeof(*model));
}

// Forward pass over inputs [B,T] (ids < vocab_size). With targets [B,T], computes the per-token
// losses and returns their mean (also kept in model->core.mean_loss); with targets NULL stops at the
// logits and returns 0.
static inline float gpt2_cpu_forward(GPT2Cpu *model, const int *inputs, const int *targets) {
    const GPT2Config *cfg = &model->config;
    int B = model->core.B, T = model->core.T, C = cfg->channels, NH = cfg->num_heads, L = cfg->num_layers;
    int V = cfg->vocab_size, Vp = cfg->padded_vocab_size, BT = B * T;
    cpu_model_set_batch(&model->core, inputs, targets, V, "gpt2_cpu_forward");
    float **p = model->core.param, **a = model->core.act;
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
    return cpu_model_mean_loss(&model->core, a[ACT_LOSSES]);
}

// Sets every parameter gradient to zero.
static inline void gpt2_cpu_zero_grad(GPT2Cpu *model) { cpu_model_zero_grad(&model->core); }

// Backward pass of the last forward (which must have had targets): ACCUMULATES into model->core.grads
// the gradient of mean_loss / grad_accum_steps, so that grad_accum_steps micro-batches sum to the
// gradient of their mean loss.
static inline void gpt2_cpu_backward(GPT2Cpu *model, int grad_accum_steps) {
    const GPT2Config *cfg = &model->config;
    int B = model->core.B, T = model->core.T, C = cfg->channels, NH = cfg->num_heads, L = cfg->num_layers;
    int V = cfg->vocab_size, Vp = cfg->padded_vocab_size, BT = B * T;
    float **p = model->core.param, **g = model->core.grad, **a = model->core.act, **ga = model->core.grad_act;
    size_t bc = (size_t)BT * C;
    cpu_model_backward_begin(&model->core, ga[ACT_LOSSES], grad_accum_steps);
    cpu_softmax_crossentropy_backward(ga[ACT_LOGITS], ga[ACT_LOSSES], a[ACT_PROBS], model->core.targets, BT, V, Vp);
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
    cpu_encoder_backward(g[GPT2_WTE], g[GPT2_WPE], ga[ACT_ENCODED], model->core.inputs, B, T, C);
}

// Optimizer step `step` (1-based, for the bias corrections) with learning rate lr: clips the
// global gradient norm to opt->grad_clip, then AdamW on every tensor (weight decay on the 2-D
// weights only: the table's decay flags). Returns the gradient norm before clipping.
static inline float gpt2_cpu_update(GPT2Cpu *model, const AdamWConfig *opt, float lr, int step) {
    return cpu_model_update(&model->core, opt, lr, step);
}

#endif // TEST_REFERENCE_GPT2_CPU_H
