// Llama (3 architecture) on the GPU: the family's part of the device model (core/model.cuh) and what the
// trainer core sees of it (LLAMA_FAMILY: presets, model files and parameter table from llama_model.h, the
// kernels' limits, the device operations).
//
// Forward, per layer l (residual stream x, B*T rows of C channels; NH query heads, NKV key/value heads of HS):
//   h = RMSNorm_attn(x)  [fused into the previous block's residual add, or after the embedding for l = 0]
//   qkv = h Wqkv^T                       [N, (NH + 2 NKV) HS]: q heads, k heads, v heads (no biases anywhere)
//   qkv_mha = RoPE(q, k) with each KV head repeated for its query heads      (kernels/rope_gqa.cuh)
//   atty, lse = causal flash attention(qkv_mha)
//   x2 = x + atty Wo^T,  h2 = RMSNorm_ffn(x2)              (fused residual + RMSNorm)
//   gu = h2 Wgu^T [N, 2F],  s = silu(gate) * up [N, F]     (kernels/swiglu.cuh)
//   x3 = x2 + s Wdown^T, then the next norm on x3 (fused; an explicit argument of the block, as for GPT-2)
// then logits = RMSNorm_final(x) lm_head^T (untied) and the core's fused softmax + cross-entropy.
// Backward runs the same steps in reverse; the residual gradient is one BF16 buffer that the final norm's
// backward writes and every other norm backward adds to. Determinism as in gpt2.cuh (the KV-head gradients
// are summed over their query heads in increasing order, kernels/rope_gqa.cuh).
// This is the first, unfused form: RoPE and the KV-head repetition are a pass between the qkv GEMM and
// attention, and SwiGLU a pass beside its GEMMs. Not yet run on a GPU (test/gpu/test_llama_gpu.cu).
#ifndef LLAMA_CUH
#define LLAMA_CUH

#include <stdio.h>

#include "core/model.cuh"
#include "kernels/attention.cuh"
#include "kernels/encoder.cuh"
#include "kernels/layernorm.cuh"
#include "kernels/rope_gqa.cuh"
#include "kernels/swiglu.cuh"
#include "llama_model.h"

// One layer's activations in one slot.
typedef struct {
    bf16 *attn_norm;               // [N,C]: input of the qkv linear
    float *attn_rstd;              // [N]
    bf16 *qkv;                     // [N, (NH+2NKV) HS]: the qkv linear's output
    bf16 *qkv_mha;                 // [N, 3, NH, HS]: RoPE'd, KV heads repeated: attention's input
    bf16 *atty;                    // [N,C]: attention output, attn_out's input
    float *lse;                    // [B,NH,T]
    bf16 *residual2;               // [N,C]
    bf16 *ffn_norm;                // [N,C]: gate_up's input
    float *ffn_rstd;               // [N]
    bf16 *gate_up;                 // [N,2F]
    bf16 *swiglu;                  // [N,F]: down's input
    bf16 *residual3;               // [N,C]
} LlamaLayerActs;

typedef struct {
    Linear qkv, attn_out, gate_up, down;
    const bf16 *attn_norm_w, *ffn_norm_w;
    float *d_attn_norm_w, *d_ffn_norm_w;
} LlamaLayer;

// One application of an RMSNorm: its weight and where its output and statistics go.
typedef struct {
    const bf16 *weight;
    bf16 *out;
    float *rstd;
} LlamaNorm;

typedef struct {
    bf16 *encoded;                 // embedding output: the residual stream into layer 0
    bf16 *final_norm;              // the LM head's input
    float *final_rstd;
} LlamaSlotActs;

typedef struct {
    LlamaConfig config;
    LlamaLayerActs *acts;          // [num_slots * L]: slot s, layer l at s * L + l
    LlamaSlotActs slot[MODEL_MAX_SLOTS];
    LlamaLayer *layers;
    Linear lm_head;
    const bf16 *final_norm_w;
    float *d_final_norm_w;
    // backward buffers (shared by the slots)
    bf16 *branch, *dresidual, *dbtc, *dqkv_mha, *dqkv, *dgate_up, *dswiglu;
    int ln_scratch_id, encoder_scratch_id, attn_delta_id, rope_cos_id, rope_sin_id;
    float *ln_scratch, *attn_delta, *rope_cos, *rope_sin;
    void *encoder_scratch;
} Llama;

static inline Llama *llama_of(const Model *m) { return (Llama *)m->family; }
static inline const LlamaLayerActs *llama_acts(const Llama *g, int slot, int l) { return &g->acts[(size_t)slot * g->config.num_layers + l]; }

// The RMSNorm at the input of layer l, or the final norm for l = L, in slot `slot`.
static inline LlamaNorm llama_input_norm(const Llama *g, int l, int slot) {
    if (l < g->config.num_layers) {
        const LlamaLayerActs *a = llama_acts(g, slot, l);
        return LlamaNorm{g->layers[l].attn_norm_w, a->attn_norm, a->attn_rstd};
    }
    return LlamaNorm{g->final_norm_w, g->slot[slot].final_norm, g->slot[slot].final_rstd};
}

// ----------------------------------------------------------------------------------------------
// building

static inline void llama_register_tensors(Model *m) {
    Llama *g = (Llama *)calloc_check(1, sizeof(Llama));
    m->family = g;
    g->config = *(const LlamaConfig *)m->config;
    Registry *r = &m->reg;
    const LlamaConfig *c = &g->config;
    const size_t N = (size_t)m->max_tokens, C = (size_t)c->channels, NH = (size_t)c->num_heads, HS = C / NH;
    const size_t QKV = (NH + 2 * (size_t)c->num_kv_heads) * HS, F = (size_t)c->ffn_hidden;
    // the activations (N rows each) of one layer in one slot, of one slot, and the backward's buffers shared
    // by the slots; the core binds them into the structs' fields after allocation
    const DType H = DTYPE_BF16, S = DTYPE_FP32;
    const ModelActSpec layer[] = {
        MODEL_ACT(LlamaLayerActs, attn_norm, H, C),  MODEL_ACT(LlamaLayerActs, attn_rstd, S, 1),    MODEL_ACT(LlamaLayerActs, qkv, H, QKV),
        MODEL_ACT(LlamaLayerActs, qkv_mha, H, 3 * C), MODEL_ACT(LlamaLayerActs, atty, H, C),        MODEL_ACT(LlamaLayerActs, lse, S, NH),
        MODEL_ACT(LlamaLayerActs, residual2, H, C),  MODEL_ACT(LlamaLayerActs, ffn_norm, H, C),     MODEL_ACT(LlamaLayerActs, ffn_rstd, S, 1),
        MODEL_ACT(LlamaLayerActs, gate_up, H, 2 * F), MODEL_ACT(LlamaLayerActs, swiglu, H, F),      MODEL_ACT(LlamaLayerActs, residual3, H, C)};
    const ModelActSpec slot[] = {MODEL_ACT(LlamaSlotActs, encoded, H, C), MODEL_ACT(LlamaSlotActs, final_norm, H, C),
                                             MODEL_ACT(LlamaSlotActs, final_rstd, S, 1)};
    const ModelActSpec shared[] = {MODEL_ACT(Llama, branch, H, C),       MODEL_ACT(Llama, dresidual, H, C),   MODEL_ACT(Llama, dbtc, H, C),
                                               MODEL_ACT(Llama, dqkv_mha, H, 3 * C), MODEL_ACT(Llama, dqkv, H, QKV),      MODEL_ACT(Llama, dgate_up, H, 2 * F),
                                               MODEL_ACT(Llama, dswiglu, H, F)};
    g->acts = (LlamaLayerActs *)malloc_check((size_t)m->num_slots * c->num_layers * sizeof(LlamaLayerActs));
    model_register_acts(m, slot, MODEL_COUNT(slot), m->num_slots, 0, g->slot, sizeof(LlamaSlotActs));
    model_register_acts(m, layer, MODEL_COUNT(layer), m->num_slots, c->num_layers, g->acts, sizeof(LlamaLayerActs));
    model_register_acts(m, shared, MODEL_COUNT(shared), 0, 0, g, 0);
    const MemCategory W = MEM_WORKSPACE;
    g->ln_scratch_id = registry_add1(r, "rmsnorm_scratch", -1, W, DTYPE_FP32, layernorm_backward_scratch_floats((int)N, (int)C));
    g->encoder_scratch_id = registry_add1(r, "encoder_scratch", -1, W, DTYPE_INT32, ceil_div<size_t>(encoder_backward_scratch_bytes((int)N, (int)C), 4));
    g->attn_delta_id = registry_add2(r, "attention_delta", -1, W, DTYPE_FP32, N, NH);
    g->rope_cos_id = registry_add2(r, "rope_cos", -1, W, DTYPE_FP32, (size_t)c->max_seq_len, HS / 2);
    g->rope_sin_id = registry_add2(r, "rope_sin", -1, W, DTYPE_FP32, (size_t)c->max_seq_len, HS / 2);
}

static inline void llama_bind(Model *m) {
    Llama *g = llama_of(m);
    const LlamaConfig *c = &g->config;
    const int L = c->num_layers, C = c->channels, HS = C / c->num_heads, QKV = (c->num_heads + 2 * c->num_kv_heads) * HS, F = c->ffn_hidden;
    g->ln_scratch = MODEL_PTR(m, float, g->ln_scratch_id);
    g->encoder_scratch = MODEL_PTR(m, void, g->encoder_scratch_id);
    g->attn_delta = MODEL_PTR(m, float, g->attn_delta_id);
    g->rope_cos = MODEL_PTR(m, float, g->rope_cos_id);
    g->rope_sin = MODEL_PTR(m, float, g->rope_sin_id);
    const size_t table = (size_t)c->max_seq_len * (HS / 2);
    float *cos_host = (float *)malloc_check(2 * table * sizeof(float));
    rope_table_host(cos_host, cos_host + table, c->max_seq_len, HS, c->rope_theta);
    cudaCheck(cudaMemcpy(g->rope_cos, cos_host, table * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(g->rope_sin, cos_host + table, table * sizeof(float), cudaMemcpyHostToDevice));
    free(cos_host);
    m->linear = linear_context(m->precision, &m->matmul, NULL, 0, 0);  // no biases: no bias-gradient scratch
    g->layers = (LlamaLayer *)malloc_check((size_t)L * sizeof(LlamaLayer));
    for (int l = 0; l < L; l++) {
        LlamaLayer *y = &g->layers[l];
#define P(i) model_layer_param(m, i, l)
#define G(i) model_layer_grad(m, i, l)
        const LinearEpilogue none = LINEAR_EPILOGUE_NONE;
        linear_init(&y->qkv, LINEAR_QKV, l, C, QKV, none, false, P(LLAMA_QKVW), NULL, G(LLAMA_QKVW), NULL);
        linear_init(&y->attn_out, LINEAR_ATTN_OUT, l, C, C, none, false, P(LLAMA_ATTN_OUTW), NULL, G(LLAMA_ATTN_OUTW), NULL);
        linear_init(&y->gate_up, LINEAR_GATE_UP, l, C, 2 * F, none, false, P(LLAMA_GATE_UPW), NULL, G(LLAMA_GATE_UPW), NULL);
        linear_init(&y->down, LINEAR_DOWN, l, F, C, none, false, P(LLAMA_DOWNW), NULL, G(LLAMA_DOWNW), NULL);
        y->attn_norm_w = P(LLAMA_ATTN_NORM);
        y->ffn_norm_w = P(LLAMA_FFN_NORM);
        y->d_attn_norm_w = G(LLAMA_ATTN_NORM);
        y->d_ffn_norm_w = G(LLAMA_FFN_NORM);
#undef P
#undef G
    }
    linear_init(&g->lm_head, LINEAR_LM_HEAD, -1, C, c->padded_vocab_size, LINEAR_EPILOGUE_NONE, false, model_param(m, LLAMA_LM_HEAD), NULL,
                model_grad(m, LLAMA_LM_HEAD), NULL);
    g->final_norm_w = model_param(m, LLAMA_FINAL_NORM);
    g->d_final_norm_w = model_grad(m, LLAMA_FINAL_NORM);
}

static inline void llama_free_family(Model *m) {
    Llama *g = llama_of(m);
    free(g->acts);
    free(g->layers);
    free(g);
    m->family = NULL;
}

// ----------------------------------------------------------------------------------------------
// forward

// Embedding (no positions: RoPE carries them), then `first_norm` (the first layer's attention norm) on it.
static inline void llama_embed_forward(Model *m, int slot, int B, int T, const LlamaNorm *first_norm) {
    Llama *g = llama_of(m);
    const int C = g->config.channels, N = B * T;
    bf16 *encoded = g->slot[slot].encoded;
    encoder_forward(encoded, model_inputs(m, slot), model_param(m, LLAMA_WTE), NULL, B, T, C, m->stream);
    rmsnorm_forward(first_norm->out, first_norm->rstd, encoded, first_norm->weight, N, C, g->config.norm_eps, m->stream);
}

// Block l: reads its attention norm's output (written by whoever ran before it) and the residual stream,
// writes x3 and `next_norm` of x3 (the following layer's attention norm, or the final norm).
static inline void llama_block_forward(Model *m, int l, int slot, int B, int T, const LlamaNorm *next_norm) {
    Llama *g = llama_of(m);
    const LlamaConfig *c = &g->config;
    const int N = B * T, C = c->channels, NH = c->num_heads, HS = C / NH, F = c->ffn_hidden;
    const float eps = c->norm_eps;
    cudaStream_t s = m->stream;
    const LinearContext *ctx = &m->linear;
    const LlamaLayer *y = &g->layers[l];
    const LlamaLayerActs *a = llama_acts(g, slot, l);
    const bf16 *residual = l == 0 ? g->slot[slot].encoded : llama_acts(g, slot, l - 1)->residual3;
    linear_forward(ctx, &y->qkv, a->qkv, NULL, a->attn_norm, N, s);
    rope_gqa_forward(a->qkv_mha, a->qkv, g->rope_cos, g->rope_sin, B, T, NH, c->num_kv_heads, HS, s);
    attention_forward(a->atty, a->lse, a->qkv_mha, B, T, NH, HS, s);
    linear_forward(ctx, &y->attn_out, g->branch, NULL, a->atty, N, s);
    fused_residual_rmsnorm_forward(a->residual2, a->ffn_norm, a->ffn_rstd, residual, g->branch, y->ffn_norm_w, N, C, eps, s);
    linear_forward(ctx, &y->gate_up, a->gate_up, NULL, a->ffn_norm, N, s);
    swiglu_forward(a->swiglu, a->gate_up, N, F, s);
    linear_forward(ctx, &y->down, g->branch, NULL, a->swiglu, N, s);
    fused_residual_rmsnorm_forward(a->residual3, next_norm->out, next_norm->rstd, a->residual2, g->branch, next_norm->weight, N, C, eps, s);
}

// LM head: logits = final_norm . lm_head^T (untied).
static inline void llama_head_forward(Model *m, int slot, int B, int T) {
    Llama *g = llama_of(m);
    linear_forward(&m->linear, &g->lm_head, model_logits(m, slot), NULL, g->slot[slot].final_norm, B * T, m->stream);
}

// ----------------------------------------------------------------------------------------------
// backward (accumulate: 1 adds to the gradients, 0 writes them, as in gpt2.cuh)

// The LM head and the final norm, which writes the residual gradient (dresidual).
static inline void llama_head_backward(Model *m, int slot, int B, int T, bool accumulate) {
    Llama *g = llama_of(m);
    const int N = B * T, C = g->config.channels, L = g->config.num_layers;
    const LlamaSlotActs *sa = &g->slot[slot];
    linear_backward(&m->linear, &g->lm_head, g->dbtc, model_logits(m, slot), sa->final_norm, NULL, NULL, false, accumulate, N, m->stream);
    rmsnorm_backward(g->dresidual, (float *)NULL, g->d_final_norm_w, g->ln_scratch, g->dbtc, llama_acts(g, slot, L - 1)->residual3, g->final_norm_w,
                     sa->final_rstd, N, C, false, accumulate, m->stream);
}

// Block l, from the gradient of x3 in dresidual to the gradient of its input residual stream (added in place).
static inline void llama_block_backward(Model *m, int l, int slot, int B, int T, bool accumulate) {
    Llama *g = llama_of(m);
    const LlamaConfig *c = &g->config;
    const int N = B * T, C = c->channels, NH = c->num_heads, HS = C / NH, F = c->ffn_hidden;
    cudaStream_t s = m->stream;
    const LinearContext *ctx = &m->linear;
    const LlamaLayer *y = &g->layers[l];
    const LlamaLayerActs *a = llama_acts(g, slot, l);
    const bf16 *residual = l == 0 ? g->slot[slot].encoded : llama_acts(g, slot, l - 1)->residual3;
    bf16 *dres = g->dresidual;
    // dres is the gradient of x3: the MLP branch gets it unchanged
    linear_backward(ctx, &y->down, g->dswiglu, dres, a->swiglu, NULL, NULL, false, accumulate, N, s);
    swiglu_backward(g->dgate_up, g->dswiglu, a->gate_up, N, F, s);
    linear_backward(ctx, &y->gate_up, g->dbtc, g->dgate_up, a->ffn_norm, NULL, NULL, false, accumulate, N, s);
    rmsnorm_backward(dres, (float *)NULL, y->d_ffn_norm_w, g->ln_scratch, g->dbtc, a->residual2, y->ffn_norm_w, a->ffn_rstd, N, C, true, accumulate,
                     s);
    // dres is now the gradient of x2: the attention branch gets it unchanged
    linear_backward(ctx, &y->attn_out, g->dbtc, dres, a->atty, NULL, NULL, false, accumulate, N, s);
    attention_backward(g->dqkv_mha, NULL, g->attn_delta, NULL, g->dbtc, a->qkv_mha, a->atty, a->lse, B, T, NH, HS, accumulate, s);
    rope_gqa_backward(g->dqkv, g->dqkv_mha, g->rope_cos, g->rope_sin, B, T, NH, c->num_kv_heads, HS, s);
    linear_backward(ctx, &y->qkv, g->dbtc, g->dqkv, a->attn_norm, NULL, NULL, false, accumulate, N, s);
    rmsnorm_backward(dres, (float *)NULL, y->d_attn_norm_w, g->ln_scratch, g->dbtc, residual, y->attn_norm_w, a->attn_rstd, N, C, true, accumulate,
                     s);
}

// Embedding: dwte from the gradient of the residual stream. The embedding is dwte's only writer (the head is
// untied), and the scatter adds, so the first micro-step zeroes it first.
static inline void llama_embed_backward(Model *m, int slot, int B, int T, bool accumulate) {
    Llama *g = llama_of(m);
    const LlamaConfig *c = &g->config;
    float *dwte = model_grad(m, LLAMA_WTE);
    if (!accumulate) cudaCheck(cudaMemsetAsync(dwte, 0, m->table.specs[LLAMA_WTE].size * sizeof(float), m->stream));
    encoder_backward(dwte, (float *)NULL, g->encoder_scratch, g->dresidual, model_inputs(m, slot), B, T, c->channels, c->padded_vocab_size,
                     c->max_seq_len, accumulate, m->stream);
}

static inline void llama_ops_embed_forward(Model *m, int slot, int B, int T) {
    const LlamaNorm first = llama_input_norm(llama_of(m), 0, slot);
    llama_embed_forward(m, slot, B, T, &first);
}
static inline void llama_ops_block_forward(Model *m, int l, int slot, int B, int T) {
    const LlamaNorm next = llama_input_norm(llama_of(m), l + 1, slot);
    llama_block_forward(m, l, slot, B, T, &next);
}

// Training FLOPs per token: 6 per parameter (the embedding and the untied head counted) plus causal
// attention, 6*L*T*C, as for GPT-2.
static inline double llama_flops_per_token(const Model *m, int T) {
    const LlamaConfig *c = &llama_of(m)->config;
    return 6.0 * (double)m->table.num_parameters + 6.0 * c->num_layers * (double)T * c->channels;
}

static const ModelOps LLAMA_OPS = {llama_register_tensors, llama_bind,           llama_free_family,    llama_ops_embed_forward,
                                   llama_ops_block_forward, llama_head_forward,  llama_head_backward,  llama_block_backward,
                                   llama_embed_backward,    llama_flops_per_token};

// ----------------------------------------------------------------------------------------------
// host side

// Checks the limits of the GPU kernels (head size, channels, FFN width, padded vocabulary). -1 with a message.
static inline int llama_check_kernels(const LlamaConfig *cfg, char *err, size_t err_size) {
    if (model_check_shared_kernels(cfg->channels, cfg->num_heads, cfg->padded_vocab_size, err, err_size) != 0) return -1;
    if (cfg->ffn_hidden % 8 != 0) return set_error(err, err_size, "FFN width %d must be a multiple of 8", cfg->ffn_hidden);
    return 0;
}



static inline int llama_family_preset(const char *name, void *config) { return llama_config_preset(name, (LlamaConfig *)config, NULL, 0); }
static inline int llama_family_load(const char *path, const void *want, void *config, int *version, float **params, char *err,
                                    size_t err_size) {
    return llama_model_file_load(path, (const LlamaConfig *)want, (LlamaConfig *)config, version, params, err, err_size);
}
static inline int llama_family_write(const char *path, const void *config, const float *params, int version, char *err, size_t err_size) {
    return llama_model_file_write(path, (const LlamaConfig *)config, params, version, err, err_size);
}
static inline int llama_family_table(const void *config, ParamTable *table, char *err, size_t err_size) {
    return llama_param_table((const LlamaConfig *)config, table, err, err_size);
}
static inline int llama_family_check(const void *config, char *err, size_t err_size) {
    return llama_check_kernels((const LlamaConfig *)config, err, err_size);
}
static inline void llama_family_describe(const void *config, char *text, size_t size) {
    const LlamaConfig *c = (const LlamaConfig *)config;
    snprintf(text, size, "max_seq_len %d, vocab_size %d (padded %d), layers %d, heads %d (%d KV heads), channels %d, FFN %d, rope_theta %g, norm_eps %g",
             c->max_seq_len, c->vocab_size, c->padded_vocab_size, c->num_layers, c->num_heads, c->num_kv_heads, c->channels, c->ffn_hidden,
             (double)c->rope_theta, (double)c->norm_eps);
}
static inline ModelDims llama_family_dims(const void *config) {
    const LlamaConfig *c = (const LlamaConfig *)config;
    ModelDims d = {c->max_seq_len, c->vocab_size, c->padded_vocab_size, c->num_layers};
    return d;
}

static const ModelFamily LLAMA_FAMILY = {
    "Llama",
    "train_llama",
    "usage: train_llama [flags]      (several processes: mpirun -np N ./train_llama [flags])\n"
    "Trains a Llama 3 architecture model (RMSNorm, RoPE, grouped-query attention, SwiGLU, untied head) on llm.c token\n"
    "shards with the GPT-2 vocabulary (made by dev/data/prepare.py). Each step prints the loss, learning rate, gradient\n"
    "norm, time, tokens/s and MFU: FLOPs/token = 6 * parameters + 6 * layers * T * channels, against 989 TFLOP/s.\n"
    "With -o: log.txt and checkpoints model_S.bin + state_S.bin (S = steps done); -y 1 resumes from the largest S.",
    "l125m",
    "l125m|l350m|l1b for a fresh Llama (12 x 768, 24 x 1024, 16 x 2048), or a Llama model file (llama_model.h) to start from",
    "l125m, l350m, l1b",
    sizeof(LlamaConfig),
    llama_family_preset,
    llama_family_load,
    llama_family_write,
    llama_family_table,
    llama_family_check,
    llama_family_describe,
    llama_family_dims,
    &LLAMA_OPS,
};

#endif // LLAMA_CUH
