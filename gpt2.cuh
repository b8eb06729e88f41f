// GPT-2 on the GPU: the family's part of the device model (core/model.cuh): its activations, its
// per-layer views and Linear objects, and embedding, block and head forward/backward. Used by
// train_gpt.cu (through GPT2_FAMILY, core/trainer.cuh), test/gpu/test_gpt2_gpu.cu and dev/cuda/gpt2_step.cu.
//
// Numerics (BF16 mode): BF16 weights and activations, FP32 accumulation in every GEMM and reduction,
// FP32 parameter gradients (written by the first micro-step of an optimizer step, added to by the
// others: no memset), FP32 master weights and AdamW moments; the BF16 weights are the master weights
// rounded to nearest after every update.
//
// Forward, per layer l (residual stream x, B*T rows of C channels):
//   ln1 = LN1(x)  [fused into the previous block's residual add, or into the embedding for l = 0]
//   qkv = ln1 Wqkv^T + b     (linear; qkv laid out [B,T,3,NH,HS] as the attention kernel reads it)
//   atty, lse = causal flash attention(qkv)
//   x2 = x + (atty Wproj^T + b),  ln2 = LN2(x2)          (fused residual + LayerNorm)
//   x = bf16(ln2 Wfc^T + b), fch_gelu = GELU(x), fch_gelu_grad = GELU'(x)   (one GEMM with GELU in its epilogue;
//   the fcproj Dgrad multiplies by fch_gelu_grad in its epilogue and gives the fc bias gradient's partials)
//   x3 = x2 + (fch_gelu Wfcproj^T + b), then the NEXT norm on x3 (fused): the block takes it as an explicit
//   argument (GPT2Norm), LN1 of layer l+1 or the final LN
// then logits = lnf wte^T (tied, padded vocabulary) and the core's fused softmax + cross-entropy. Backward
// runs the same steps in reverse; the residual gradient is one BF16 buffer that the final LayerNorm's
// backward writes and every other LayerNorm backward accumulates into. Every LayerNorm backward also sums
// the columns of the gradient it leaves: the bias gradient of the linear that wrote the residual branch
// before it (fcproj of the same layer for LN2... see gpt2_block_backward); for LN1 of layer l that is layer
// l-1's fcproj, passed to the block's backward as an explicit argument.
//
// Determinism: every kernel sums in a fixed order (no floating-point atomics): cuBLASLt GEMMs (one
// algorithm per shape, fixed for the run by the plan cache: the fastest of the heuristic's candidates
// whose output is bit-identical to its first suggestion, so the bits do not depend on the timing), attention
// backward (separate dK/dV and dQ passes; the qkv bias gradient from per-chunk partials), LayerNorm parameter
// gradients (per-block partials), encoder backward (sorted tokens), the bias gradients (fixed row chunks),
// the global norm (fixed grid). Losses are summed on the host in double, in token order.
#ifndef GPT2_CUH
#define GPT2_CUH

#include <math.h>
#include <stdint.h>

#include "core/model.cuh"
#include "gpt2_model.h"
#include "kernels/attention.cuh"
#include "kernels/encoder.cuh"
#include "kernels/layernorm.cuh"

// One layer's activations in one slot.
typedef struct {
    bf16 *ln1;                     // LN1 output [N,C]: input of the qkv linear
    float *ln1_mean, *ln1_rstd;    // [N]
    bf16 *qkv;                     // [N,3C]: attention input
    bf16 *atty;                    // attention output [N,C]: attn_out input
    float *lse;                    // [B,NH,T]
    bf16 *residual2;               // x2 [N,C]
    bf16 *ln2;                     // LN2 output [N,C]: fc input
    float *ln2_mean, *ln2_rstd;
    bf16 *fch_gelu_grad, *fch_gelu;  // [N,4C] GELU'(pre-activation) and GELU output (fc_proj input)
    bf16 *residual3;               // x3 [N,C]
} GPT2LayerActs;

// One layer's parameters: its four linears and its two LayerNorms.
typedef struct {
    Linear qkv, attn_out, fc, fc_proj;
    const bf16 *ln1w, *ln1b, *ln2w, *ln2b;
    float *dln1w, *dln1b, *dln2w, *dln2b;
} GPT2Layer;

// One application of a LayerNorm: its parameters and where its output and statistics go.
typedef struct {
    const bf16 *weight, *bias;
    bf16 *out;
    float *mean, *rstd;
} GPT2Norm;

typedef struct {
    bf16 *encoded;                 // embedding output [N,C]: the residual stream into layer 0
    bf16 *lnf;                     // final LN output [N,C]: the LM head's input
    float *lnf_mean, *lnf_rstd;
} GPT2SlotActs;

typedef struct {
    GPT2Config config;
    GPT2LayerActs *acts;           // [num_slots * L]: slot s, layer l at s * L + l
    GPT2SlotActs slot[MODEL_MAX_SLOTS];
    GPT2Layer *layers;             // [L]
    Linear lm_head;
    const bf16 *lnfw, *lnfb;
    float *dlnfw, *dlnfb;
    // backward buffers (shared by the slots)
    bf16 *branch, *dresidual, *dbtc, *dqkv, *dfch;
    // workspace
    int ln_scratch_id, encoder_scratch_id, attn_delta_id, attn_bias_partials_id, bias_partials_id;
    float *ln_scratch, *attn_delta, *attn_bias_partials;
    void *encoder_scratch;
} GPT2;

static inline GPT2 *gpt2_of(const Model *m) { return (GPT2 *)m->family; }
static inline const GPT2LayerActs *gpt2_acts(const GPT2 *g, int slot, int l) { return &g->acts[(size_t)slot * g->config.num_layers + l]; }

// The LayerNorm at the input of layer l (its LN1), or the final LN for l = L, in slot `slot`.
static inline GPT2Norm gpt2_input_norm(const GPT2 *g, int l, int slot) {
    GPT2Norm n;
    if (l < g->config.num_layers) {
        const GPT2LayerActs *a = gpt2_acts(g, slot, l);
        n = {g->layers[l].ln1w, g->layers[l].ln1b, a->ln1, a->ln1_mean, a->ln1_rstd};
    } else {
        const GPT2SlotActs *s = &g->slot[slot];
        n = {g->lnfw, g->lnfb, s->lnf, s->lnf_mean, s->lnf_rstd};
    }
    return n;
}

// ----------------------------------------------------------------------------------------------
// building

static inline void gpt2_register_tensors(Model *m) {
    GPT2 *g = (GPT2 *)calloc_check(1, sizeof(GPT2));
    m->family = g;
    g->config = *(const GPT2Config *)m->config;
    Registry *r = &m->reg;
    const GPT2Config *c = &g->config;
    const size_t N = (size_t)m->max_tokens, C = (size_t)c->channels, NH = (size_t)c->num_heads;
    // the activations (N rows each) of one layer in one slot, of one slot, and the backward's buffers shared
    // by the slots; the core binds them into the structs' fields after allocation
    const DType H = DTYPE_BF16, F = DTYPE_FP32;
    const ModelActSpec layer[] = {
        MODEL_ACT(GPT2LayerActs, ln1, H, C),           MODEL_ACT(GPT2LayerActs, ln1_mean, F, 1),      MODEL_ACT(GPT2LayerActs, ln1_rstd, F, 1),
        MODEL_ACT(GPT2LayerActs, qkv, H, 3 * C),       MODEL_ACT(GPT2LayerActs, atty, H, C),          MODEL_ACT(GPT2LayerActs, lse, F, NH),
        MODEL_ACT(GPT2LayerActs, residual2, H, C),     MODEL_ACT(GPT2LayerActs, ln2, H, C),           MODEL_ACT(GPT2LayerActs, ln2_mean, F, 1),
        MODEL_ACT(GPT2LayerActs, ln2_rstd, F, 1),      MODEL_ACT(GPT2LayerActs, fch_gelu_grad, H, 4 * C), MODEL_ACT(GPT2LayerActs, fch_gelu, H, 4 * C),
        MODEL_ACT(GPT2LayerActs, residual3, H, C)};
    const ModelActSpec slot[] = {MODEL_ACT(GPT2SlotActs, encoded, H, C), MODEL_ACT(GPT2SlotActs, lnf, H, C),
                                            MODEL_ACT(GPT2SlotActs, lnf_mean, F, 1), MODEL_ACT(GPT2SlotActs, lnf_rstd, F, 1)};
    const ModelActSpec shared[] = {MODEL_ACT(GPT2, branch, H, C), MODEL_ACT(GPT2, dresidual, H, C), MODEL_ACT(GPT2, dbtc, H, C),
                                              MODEL_ACT(GPT2, dqkv, H, 3 * C), MODEL_ACT(GPT2, dfch, H, 4 * C)};
    g->acts = (GPT2LayerActs *)malloc_check((size_t)m->num_slots * c->num_layers * sizeof(GPT2LayerActs));
    model_register_acts(m, slot, MODEL_COUNT(slot), m->num_slots, 0, g->slot, sizeof(GPT2SlotActs));
    model_register_acts(m, layer, MODEL_COUNT(layer), m->num_slots, c->num_layers, g->acts, sizeof(GPT2LayerActs));
    model_register_acts(m, shared, MODEL_COUNT(shared), 0, 0, g, 0);
    const MemCategory W = MEM_WORKSPACE;
    g->ln_scratch_id = registry_add1(r, "layernorm_scratch", -1, W, DTYPE_FP32, layernorm_backward_scratch_floats((int)N, (int)C));
    g->encoder_scratch_id = registry_add1(r, "encoder_scratch", -1, W, DTYPE_INT32, ceil_div<size_t>(encoder_backward_scratch_bytes((int)N, (int)C), 4));
    g->attn_delta_id = registry_add2(r, "attention_delta", -1, W, DTYPE_FP32, N, NH);
    // the attention backward's qkv bias partials: attention_bias_partial_rows(B, T) = B*ceil(T/64) rows of 3C,
    // at most N/32 rows for sequences of T >= 32 tokens (shorter ones sum it in the qkv linear)
    g->attn_bias_partials_id = registry_add2(r, "attention_bias_partials", -1, W, DTYPE_FP32, N / 32 > 0 ? N / 32 : 1, 3 * C);
    g->bias_partials_id = registry_add2(r, "bias_partials", -1, W, DTYPE_FP32, linear_bias_partial_rows((long)N), 4 * C);
}

static inline void gpt2_bind(Model *m) {
    GPT2 *g = gpt2_of(m);
    const GPT2Config *c = &g->config;
    const int L = c->num_layers, C = c->channels;
    g->ln_scratch = MODEL_PTR(m, float, g->ln_scratch_id);
    g->encoder_scratch = MODEL_PTR(m, void, g->encoder_scratch_id);
    g->attn_delta = MODEL_PTR(m, float, g->attn_delta_id);
    g->attn_bias_partials = MODEL_PTR(m, float, g->attn_bias_partials_id);
    const RegTensor *bp = &m->reg.tensors[g->bias_partials_id];
    m->linear = linear_context(m->precision, &m->matmul, (float *)bp->data, (int)bp->shape[0], 4 * C);
    g->layers = (GPT2Layer *)malloc_check((size_t)L * sizeof(GPT2Layer));
    for (int l = 0; l < L; l++) {
        GPT2Layer *y = &g->layers[l];
#define P(i) model_layer_param(m, i, l)
#define G(i) model_layer_grad(m, i, l)
        linear_init(&y->qkv, LINEAR_QKV, l, C, 3 * C, LINEAR_EPILOGUE_BIAS, false, P(GPT2_QKVW), P(GPT2_QKVB), G(GPT2_QKVW), G(GPT2_QKVB));
        linear_init(&y->attn_out, LINEAR_ATTN_OUT, l, C, C, LINEAR_EPILOGUE_BIAS, false, P(GPT2_ATTPROJW), P(GPT2_ATTPROJB), G(GPT2_ATTPROJW),
                    G(GPT2_ATTPROJB));
        linear_init(&y->fc, LINEAR_FC, l, C, 4 * C, LINEAR_EPILOGUE_BIAS_GELU, false, P(GPT2_FCW), P(GPT2_FCB), G(GPT2_FCW), G(GPT2_FCB));
        linear_init(&y->fc_proj, LINEAR_FC_PROJ, l, 4 * C, C, LINEAR_EPILOGUE_BIAS, true, P(GPT2_FCPROJW), P(GPT2_FCPROJB), G(GPT2_FCPROJW),
                    G(GPT2_FCPROJB));
        y->ln1w = P(GPT2_LN1W);
        y->ln1b = P(GPT2_LN1B);
        y->ln2w = P(GPT2_LN2W);
        y->ln2b = P(GPT2_LN2B);
        y->dln1w = G(GPT2_LN1W);
        y->dln1b = G(GPT2_LN1B);
        y->dln2w = G(GPT2_LN2W);
        y->dln2b = G(GPT2_LN2B);
#undef P
#undef G
    }
    linear_init(&g->lm_head, LINEAR_LM_HEAD, -1, C, c->padded_vocab_size, LINEAR_EPILOGUE_NONE, false, model_param(m, GPT2_WTE), NULL,
                model_grad(m, GPT2_WTE), NULL);
    g->lnfw = model_param(m, GPT2_LNFW);
    g->lnfb = model_param(m, GPT2_LNFB);
    g->dlnfw = model_grad(m, GPT2_LNFW);
    g->dlnfb = model_grad(m, GPT2_LNFB);
}

static inline void gpt2_free_family(Model *m) {
    GPT2 *g = gpt2_of(m);
    free(g->acts);
    free(g->layers);
    free(g);
    m->family = NULL;
}

// ----------------------------------------------------------------------------------------------
// forward

// Embedding: encoded = wte[tokens] + wpe[t], then `first_norm` (LN1 of the first layer) on it.
static inline void gpt2_embed_forward(Model *m, int slot, int B, int T, const GPT2Norm *first_norm) {
    GPT2 *g = gpt2_of(m);
    const int C = g->config.channels, N = B * T;
    bf16 *encoded = g->slot[slot].encoded;
    encoder_forward(encoded, model_inputs(m, slot), model_param(m, GPT2_WTE), model_param(m, GPT2_WPE), B, T, C, m->stream);
    layernorm_forward(first_norm->out, first_norm->mean, first_norm->rstd, encoded, first_norm->weight, first_norm->bias, N, C, m->stream);
}

// Block l: reads its LN1 output (written by whoever ran before it) and the residual stream, writes x3
// and `next_norm` of x3 (the following layer's LN1, or the final LN).
static inline void gpt2_block_forward(Model *m, int l, int slot, int B, int T, const GPT2Norm *next_norm) {
    GPT2 *g = gpt2_of(m);
    const int N = B * T, C = g->config.channels, NH = g->config.num_heads, HS = C / NH;
    cudaStream_t s = m->stream;
    const LinearContext *ctx = &m->linear;
    const GPT2Layer *y = &g->layers[l];
    const GPT2LayerActs *a = gpt2_acts(g, slot, l);
    const bf16 *residual = l == 0 ? g->slot[slot].encoded : gpt2_acts(g, slot, l - 1)->residual3;
    linear_forward(ctx, &y->qkv, a->qkv, NULL, a->ln1, N, s);
    attention_forward(a->atty, a->lse, a->qkv, B, T, NH, HS, s);
    linear_forward(ctx, &y->attn_out, g->branch, NULL, a->atty, N, s);
    fused_residual_layernorm_forward(a->residual2, a->ln2, a->ln2_mean, a->ln2_rstd, residual, g->branch, y->ln2w, y->ln2b, N, C, s);
    linear_forward(ctx, &y->fc, a->fch_gelu, a->fch_gelu_grad, a->ln2, N, s);
    linear_forward(ctx, &y->fc_proj, g->branch, NULL, a->fch_gelu, N, s);
    fused_residual_layernorm_forward(a->residual3, next_norm->out, next_norm->mean, next_norm->rstd, a->residual2, g->branch,
                                     next_norm->weight, next_norm->bias, N, C, s);
}

// LM head: logits = lnf . wte^T (tied).
static inline void gpt2_head_forward(Model *m, int slot, int B, int T) {
    GPT2 *g = gpt2_of(m);
    linear_forward(&m->linear, &g->lm_head, model_logits(m, slot), NULL, g->slot[slot].lnf, B * T, m->stream);
}

// ----------------------------------------------------------------------------------------------
// backward. accumulate: 1 adds to the gradients (later micro-steps), 0 writes them (the first; no memset).
// Each gradient has one writer, which takes the flag, but wte: the LM head's Wgrad writes or adds, then the
// encoder adds. The bits are those of zeroed gradients plus accumulate, except that a Wgrad element whose
// products are all -0.0f may come out -0.0f instead of +0.0f (beta = 0 adds no +0.0f); the norm and AdamW
// treat both alike.

// Whether the attention backward sums the qkv bias gradient for sequences of B x T (its partials fit the
// scratch: always when T >= 32); otherwise the qkv linear's backward does, in a pass over dqkv.
static inline bool gpt2_attention_sums_qkv_bias(const Model *m, int B, int T) {
    return attention_bias_partial_rows(B, T) <= (long)m->reg.tensors[gpt2_of(m)->attn_bias_partials_id].shape[0];
}

// The LM head and the final LayerNorm, which writes the residual gradient (dresidual) and sums its columns
// into `last_branch_dbias` (the bias gradient of the last block's fc_proj).
static inline void gpt2_head_backward(Model *m, int slot, int B, int T, bool accumulate, float *last_branch_dbias) {
    GPT2 *g = gpt2_of(m);
    const int N = B * T, C = g->config.channels, L = g->config.num_layers;
    const GPT2SlotActs *sa = &g->slot[slot];
    linear_backward(&m->linear, &g->lm_head, g->dbtc, model_logits(m, slot), sa->lnf, NULL, NULL, false, accumulate, N, m->stream);
    layernorm_backward(g->dresidual, last_branch_dbias, g->dlnfw, g->dlnfb, g->ln_scratch, g->dbtc, gpt2_acts(g, slot, L - 1)->residual3,
                       g->lnfw, sa->lnf_mean, sa->lnf_rstd, N, C, false, accumulate, m->stream);
}

// Block l, from the gradient of x3 in dresidual to the gradient of its input residual stream (added in
// place). Its LN1 backward sums the columns of that gradient into `prev_branch_dbias`: the bias gradient of
// the linear that wrote the residual branch before this block (the previous layer's fc_proj; NULL for the
// first layer, whose input is the embedding).
static inline void gpt2_block_backward(Model *m, int l, int slot, int B, int T, bool accumulate, float *prev_branch_dbias) {
    GPT2 *g = gpt2_of(m);
    const int N = B * T, C = g->config.channels, NH = g->config.num_heads, HS = C / NH;
    cudaStream_t s = m->stream;
    const LinearContext *ctx = &m->linear;
    const GPT2Layer *y = &g->layers[l];
    const GPT2LayerActs *a = gpt2_acts(g, slot, l);
    const bf16 *residual = l == 0 ? g->slot[slot].encoded : gpt2_acts(g, slot, l - 1)->residual3;
    bf16 *dres = g->dresidual;
    // dres is the gradient of x3: the fc_proj branch gets it unchanged; its Dgrad epilogue applies GELU's
    // backward and gives the fc bias gradient (so fc's own backward skips it). Its own bias gradient came
    // from the LayerNorm backward after it.
    linear_backward(ctx, &y->fc_proj, g->dfch, dres, a->fch_gelu, a->fch_gelu_grad, y->fc.dbias, false, accumulate, N, s);
    linear_backward(ctx, &y->fc, g->dbtc, g->dfch, a->ln2, NULL, NULL, false, accumulate, N, s);
    layernorm_backward(dres, y->attn_out.dbias, y->dln2w, y->dln2b, g->ln_scratch, g->dbtc, a->residual2, y->ln2w, a->ln2_mean, a->ln2_rstd,
                       N, C, true, accumulate, s);
    // dres is now the gradient of x2: the attention branch gets it unchanged
    linear_backward(ctx, &y->attn_out, g->dbtc, dres, a->atty, NULL, NULL, false, accumulate, N, s);
    // the qkv bias gradient comes from the attention backward, which sums the columns of dqkv as it
    // stores them, when its partials fit (T >= 32); else from the qkv linear's own pass over dqkv
    const bool attn_bias = gpt2_attention_sums_qkv_bias(m, B, T);
    attention_backward(g->dqkv, attn_bias ? y->qkv.dbias : NULL, g->attn_delta, g->attn_bias_partials, g->dbtc, a->qkv, a->atty, a->lse, B, T,
                       NH, HS, accumulate, s);
    linear_backward(ctx, &y->qkv, g->dbtc, g->dqkv, a->ln1, NULL, NULL, !attn_bias, accumulate, N, s);
    layernorm_backward(dres, prev_branch_dbias, y->dln1w, y->dln1b, g->ln_scratch, g->dbtc, residual, y->ln1w, a->ln1_mean, a->ln1_rstd,
                       N, C, true, accumulate, s);
}

// Embedding: dwte (after the LM head's part) and dwpe from the gradient of the residual stream.
static inline void gpt2_embed_backward(Model *m, int slot, int B, int T, bool accumulate) {
    GPT2 *g = gpt2_of(m);
    encoder_backward(model_grad(m, GPT2_WTE), model_grad(m, GPT2_WPE), g->encoder_scratch, g->dresidual, model_inputs(m, slot), B, T,
                     g->config.channels, g->config.padded_vocab_size, g->config.max_seq_len, accumulate, m->stream);
}

// ----------------------------------------------------------------------------------------------
// the family's operations: the explicit boundary arguments resolved for a whole model on one GPU

static inline void gpt2_ops_embed_forward(Model *m, int slot, int B, int T) {
    const GPT2Norm first = gpt2_input_norm(gpt2_of(m), 0, slot);
    gpt2_embed_forward(m, slot, B, T, &first);
}
static inline void gpt2_ops_block_forward(Model *m, int l, int slot, int B, int T) {
    const GPT2Norm next = gpt2_input_norm(gpt2_of(m), l + 1, slot);
    gpt2_block_forward(m, l, slot, B, T, &next);
}
static inline void gpt2_ops_head_backward(Model *m, int slot, int B, int T, bool accumulate) {
    GPT2 *g = gpt2_of(m);
    gpt2_head_backward(m, slot, B, T, accumulate, g->layers[g->config.num_layers - 1].fc_proj.dbias);
}
static inline void gpt2_ops_block_backward(Model *m, int l, int slot, int B, int T, bool accumulate) {
    GPT2 *g = gpt2_of(m);
    gpt2_block_backward(m, l, slot, B, T, accumulate, l > 0 ? g->layers[l - 1].fc_proj.dbias : NULL);
}

// Training FLOPs per token: 6 per parameter (forward 2, backward 4; includes the tied LM head) plus
// causal attention, 6*L*T*C (QK^T and PV: 2*2*T*C per layer forward at full length, halved by the
// causal mask, times 3 for forward + backward).
static inline double gpt2_flops_per_token(const Model *m, int T) {
    const GPT2Config *c = &gpt2_of(m)->config;
    return 6.0 * (double)m->table.num_parameters + 6.0 * c->num_layers * (double)T * c->channels;
}

static const ModelOps GPT2_OPS = {gpt2_register_tensors, gpt2_bind,           gpt2_free_family,         gpt2_ops_embed_forward,
                                  gpt2_ops_block_forward, gpt2_head_forward,  gpt2_ops_head_backward,   gpt2_ops_block_backward,
                                  gpt2_embed_backward,    gpt2_flops_per_token};

// ----------------------------------------------------------------------------------------------
// host side: what the kernels need of a configuration, and the model's dimensions

// Checks the limits of the GPU kernels (head size, channels, padded vocabulary). -1 with a message.
static inline int gpt2_check_kernels(const GPT2Config *cfg, char *err, size_t err_size) {
    return model_check_shared_kernels(cfg->channels, cfg->num_heads, cfg->padded_vocab_size, err, err_size);
}



// The GPT-2 family as the trainer core sees it (core/model.cuh's ModelFamily).
static inline int gpt2_family_preset(const char *name, void *config) {
    return gpt2_config_preset(name, (GPT2Config *)config, NULL, 0);
}
static inline int gpt2_family_load(const char *path, const void *want, void *config, int *version, float **params, char *err, size_t err_size) {
    return gpt2_model_file_load(path, (const GPT2Config *)want, (GPT2Config *)config, version, params, err, err_size);
}
static inline int gpt2_family_write(const char *path, const void *config, const float *params, int version, char *err, size_t err_size) {
    return gpt2_model_file_write(path, (const GPT2Config *)config, params, version, err, err_size);
}
static inline int gpt2_family_table(const void *config, ParamTable *table, char *err, size_t err_size) {
    return gpt2_param_table((const GPT2Config *)config, table, err, err_size);
}
static inline int gpt2_family_check(const void *config, char *err, size_t err_size) {
    return gpt2_check_kernels((const GPT2Config *)config, err, err_size);
}
static inline void gpt2_family_describe(const void *config, char *text, size_t size) {
    const GPT2Config *c = (const GPT2Config *)config;
    snprintf(text, size, "max_seq_len %d, vocab_size %d (padded %d), layers %d, heads %d, channels %d", c->max_seq_len, c->vocab_size,
             c->padded_vocab_size, c->num_layers, c->num_heads, c->channels);
}
static inline ModelDims gpt2_family_dims(const void *config) {
    const GPT2Config *c = (const GPT2Config *)config;
    ModelDims d = {c->max_seq_len, c->vocab_size, c->padded_vocab_size, c->num_layers};
    return d;
}

static const ModelFamily GPT2_FAMILY = {
    "GPT-2",
    "train_gpt",
    "usage: train_gpt [flags]      (several processes: mpirun -np N ./train_gpt [flags])\n"
    "Trains GPT-2 on llm.c token shards (made by dev/data/prepare.py). Each step prints the loss, learning rate,\n"
    "gradient norm, time, tokens/s and MFU: FLOPs/token = 6 * parameters + 6 * layers * T * channels, against\n"
    "989 TFLOP/s (H100 SXM dense BF16). With -o: log.txt and checkpoints model_S.bin + state_S.bin (S = steps done);\n"
    "-y 1 resumes from the largest S.",
    "d12",
    "d12|d24|d36|d48 for a fresh GPT-2 124M/350M/774M/1558M, or a GPT-2 model file (llm.c format) to start from",
    "d12, d24, d36, d48",
    sizeof(GPT2Config),
    gpt2_family_preset,
    gpt2_family_load,
    gpt2_family_write,
    gpt2_family_table,
    gpt2_family_check,
    gpt2_family_describe,
    gpt2_family_dims,
    &GPT2_OPS,
};

#endif // GPT2_CUH
