// GPT-2 on one GPU: the device model (parameters, gradients, optimizer state, activations, all
// described in a tensor registry and allocated from its arenas), forward, backward and the AdamW
// update. Used by train_gpt.cu and test/gpu/test_gpt2_gpu.cu.
//
// Numerics (BF16 mode): BF16 weights and activations, FP32 accumulation in every GEMM and reduction,
// FP32 parameter gradients (written by the first micro-step of an optimizer step, added to by the
// others: no memset), FP32 master weights and AdamW moments; the BF16 weights are the master weights
// rounded to nearest after every update.
//
// Forward, per layer l (residual stream x, B*T rows of C channels):
//   ln1 = LN1(x)  [fused into the previous layer's residual add, or after the encoder for l = 0]
//   qkv = ln1 Wqkv^T + b     (linear; qkv laid out [B,T,3,NH,HS] as the attention kernel reads it)
//   atty, lse = causal flash attention(qkv)
//   x2 = x + (atty Wproj^T + b),  ln2 = LN2(x2)          (fused residual + LayerNorm)
//   x = bf16(ln2 Wfc^T + b), fch_gelu = GELU(x), fch_gelu_grad = GELU'(x)   (one GEMM with GELU in its epilogue;
//   the fcproj Dgrad multiplies by fch_gelu_grad in its epilogue and gives the fc bias gradient's partials)
//   x3 = x2 + (fch_gelu Wfcproj^T + b), then LN1 of layer l+1 (or the final LN) on x3 (fused)
// then logits = lnf wte^T (tied, padded vocabulary) and the fused softmax + cross-entropy, which
// leaves dloss * dlogits in the logits buffer. Backward runs the same steps in reverse; the residual
// gradient is one BF16 buffer that the final LayerNorm's backward writes and every other LayerNorm
// backward accumulates into.
//
// Determinism: every kernel sums in a fixed order (no floating-point atomics): cuBLASLt GEMMs (one
// algorithm per shape, fixed for the run by the plan cache: the fastest of the heuristic's candidates
// whose output is bit-identical to its first suggestion, so the bits do not depend on the timing), attention backward (separate dK/dV and
// dQ passes; the qkv bias gradient from per-chunk partials), LayerNorm parameter gradients (per-block partials), encoder backward (sorted tokens),
// the bias gradients (fixed row chunks), the global norm (fixed grid). Losses are summed on the host
// in double, in token order.
#ifndef GPT2_CUH
#define GPT2_CUH

#include <math.h>
#include <stdint.h>

#include "core/checkpoint.h"
#include "core/gpt2_model.h"
#include "core/linear.cuh"
#include "core/precision.h"
#include "core/registry.cuh"
#include "core/stash.cuh"
#include "kernels/adamw.cuh"
#include "kernels/attention.cuh"
#include "kernels/classifier.cuh"
#include "kernels/encoder.cuh"
#include "kernels/global_norm.cuh"
#include "kernels/layernorm.cuh"

// Registry ids of one layer's activations (index into GPT2::reg.tensors).
typedef struct {
    int ln1, ln1_mean, ln1_rstd;   // LN1 output [N,C] (stashed: input of the qkv linear) and its statistics [N]
    int qkv;                       // [N,3C] (stashed: attention input)
    int atty, lse;                 // attention output [N,C] (stashed: proj input), lse [B,NH,T]
    int residual2;                 // x2 [N,C]
    int ln2, ln2_mean, ln2_rstd;   // LN2 output (stashed: fc input)
    int fch_gelu_grad, fch_gelu;   // [N,4C] GELU'(pre-activation) and GELU output (stashed: fcproj input)
    int residual3;                 // x3 [N,C]
} GPT2LayerActs;

typedef struct {
    GPT2Config config;
    GPT2ParamLayout layout;
    Precision precision;
    int max_tokens;                // rows of every activation: forward and backward take B*T <= max_tokens
    Registry reg;
    // parameter-shaped tensors (registry ids), one per parameter tensor, packed in llm.c order
    int param_id[GPT2_NUM_PARAM_TENSORS], grad_id[GPT2_NUM_PARAM_TENSORS];
    int master_id[GPT2_NUM_PARAM_TENSORS], m_id[GPT2_NUM_PARAM_TENSORS], v_id[GPT2_NUM_PARAM_TENSORS];
    // activations
    GPT2LayerActs *layer;          // [L]
    int encoded, lnf, lnf_mean, lnf_rstd, logits, losses, inputs, targets, branch;
    // backward buffers
    int dresidual, dbtc, dqkv, dfch;
    // workspace
    int ln_scratch, encoder_scratch, norm_scratch, norm_out, attn_delta, attn_bias_partials, bias_partials, matmul_trial;
    // flat views of the packed arrays (the first tensor of each)
    bf16 *params;
    float *grads, *master, *m, *v;
    MatmulContext matmul;
    LinearContext linear;
    Stash stash;
    AdamWPlan adamw_plan;
    cudaStream_t stream;
    float *losses_host;            // [max_tokens] pinned
    int last_B, last_T;            // shape of the last forward (backward uses it)
} GPT2;

// Device pointer of registry tensor `id`, typed.
#define GPT2_PTR(model, type, id) ((type *)(model)->reg.tensors[(id)].data)

static inline bf16 *gpt2_param(const GPT2 *m, int i) { return GPT2_PTR(m, bf16, m->param_id[i]); }
static inline float *gpt2_grad(const GPT2 *m, int i) { return GPT2_PTR(m, float, m->grad_id[i]); }

// ----------------------------------------------------------------------------------------------
// kernels

// out[i] = bf16(inp[i]) (round to nearest), one thread per element.
__global__ void fp32_to_bf16_kernel(bf16 *out, const float *inp, size_t n) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __float2bfloat16(inp[i]);
}

// ----------------------------------------------------------------------------------------------
// building

// Registers every tensor of the model for activations of up to max_tokens rows (B*T).
static inline void gpt2_register(GPT2 *m) {
    Registry *r = &m->reg;
    const GPT2Config *c = &m->config;
    const size_t N = (size_t)m->max_tokens, C = (size_t)c->channels, L = (size_t)c->num_layers;
    const size_t NH = (size_t)c->num_heads, Vp = (size_t)c->padded_vocab_size;
    static const char *const prefixes[5] = {"param.", "grad.", "master.", "adam_m.", "adam_v."};
    int *ids[5] = {m->param_id, m->grad_id, m->master_id, m->m_id, m->v_id};
    const MemCategory cats[5] = {MEM_PARAMETERS, MEM_GRADIENTS, MEM_OPTIMIZER, MEM_OPTIMIZER, MEM_OPTIMIZER};
    for (int k = 0; k < 5; k++) {
        const DType dt = k == 0 ? DTYPE_BF16 : DTYPE_FP32;
        for (int i = 0; i < GPT2_NUM_PARAM_TENSORS; i++) {
            const GPT2ParamTensor *t = &m->layout.tensors[i];
            char name[REGISTRY_NAME_LEN];
            snprintf(name, sizeof(name), "%s%s", prefixes[k], t->name);
            // packed (element alignment), so each kind is one flat array in llm.c order
            ids[k][i] = registry_add(r, name, -1, cats[k], dt, t->ndim, t->shape, dtype_size(dt));
        }
    }
    m->layer = (GPT2LayerActs *)malloc_check(L * sizeof(GPT2LayerActs));
    const MemCategory A = MEM_ACTIVATIONS;
    m->encoded = registry_add2(r, "encoded", -1, A, DTYPE_BF16, N, C);
    for (int l = 0; l < (int)L; l++) {
        GPT2LayerActs *a = &m->layer[l];
        a->ln1 = registry_add2(r, "ln1", l, A, DTYPE_BF16, N, C);
        a->ln1_mean = registry_add1(r, "ln1_mean", l, A, DTYPE_FP32, N);
        a->ln1_rstd = registry_add1(r, "ln1_rstd", l, A, DTYPE_FP32, N);
        a->qkv = registry_add2(r, "qkv", l, A, DTYPE_BF16, N, 3 * C);
        a->atty = registry_add2(r, "atty", l, A, DTYPE_BF16, N, C);
        a->lse = registry_add2(r, "lse", l, A, DTYPE_FP32, N, NH);
        a->residual2 = registry_add2(r, "residual2", l, A, DTYPE_BF16, N, C);
        a->ln2 = registry_add2(r, "ln2", l, A, DTYPE_BF16, N, C);
        a->ln2_mean = registry_add1(r, "ln2_mean", l, A, DTYPE_FP32, N);
        a->ln2_rstd = registry_add1(r, "ln2_rstd", l, A, DTYPE_FP32, N);
        a->fch_gelu_grad = registry_add2(r, "fch_gelu_grad", l, A, DTYPE_BF16, N, 4 * C);
        a->fch_gelu = registry_add2(r, "fch_gelu", l, A, DTYPE_BF16, N, 4 * C);
        a->residual3 = registry_add2(r, "residual3", l, A, DTYPE_BF16, N, C);
    }
    m->lnf = registry_add2(r, "lnf", -1, A, DTYPE_BF16, N, C);
    m->lnf_mean = registry_add1(r, "lnf_mean", -1, A, DTYPE_FP32, N);
    m->lnf_rstd = registry_add1(r, "lnf_rstd", -1, A, DTYPE_FP32, N);
    m->logits = registry_add2(r, "logits", -1, A, DTYPE_BF16, N, Vp);
    m->losses = registry_add1(r, "losses", -1, A, DTYPE_FP32, N);
    m->inputs = registry_add1(r, "inputs", -1, A, DTYPE_INT32, N);
    m->targets = registry_add1(r, "targets", -1, A, DTYPE_INT32, N);
    m->branch = registry_add2(r, "branch", -1, A, DTYPE_BF16, N, C);
    m->dresidual = registry_add2(r, "dresidual", -1, A, DTYPE_BF16, N, C);
    m->dbtc = registry_add2(r, "dbtc", -1, A, DTYPE_BF16, N, C);
    m->dqkv = registry_add2(r, "dqkv", -1, A, DTYPE_BF16, N, 3 * C);
    m->dfch = registry_add2(r, "dfch", -1, A, DTYPE_BF16, N, 4 * C);
    const MemCategory W = MEM_WORKSPACE;
    m->ln_scratch = registry_add1(r, "layernorm_scratch", -1, W, DTYPE_FP32, layernorm_backward_scratch_floats((int)N, (int)C));
    m->encoder_scratch = registry_add1(r, "encoder_scratch", -1, W, DTYPE_INT32, ceil_div<size_t>(encoder_backward_scratch_bytes((int)N, (int)C), 4));
    m->norm_scratch = registry_add1(r, "norm_scratch", -1, W, DTYPE_FP32, (size_t)global_norm_num_blocks((long long)m->layout.num_parameters));
    m->norm_out = registry_add1(r, "norm_out", -1, W, DTYPE_FP32, 1);
    m->attn_delta = registry_add2(r, "attention_delta", -1, W, DTYPE_FP32, N, NH);
    // the attention backward's qkv bias partials: attention_bias_partial_rows(B, T) = B*ceil(T/64) rows of 3C,
    // at most N/32 rows for sequences of T >= 32 tokens (gpt2_backward sums shorter ones in the qkv linear)
    m->attn_bias_partials = registry_add2(r, "attention_bias_partials", -1, W, DTYPE_FP32, N / 32 > 0 ? N / 32 : 1, 3 * C);
    m->bias_partials = registry_add2(r, "bias_partials", -1, W, DTYPE_FP32, linear_bias_partial_rows((long)N), 4 * C);
    // the cuBLASLt algorithm trials (first step) save the largest accumulated FP32 output here: a Wgrad
    m->matmul_trial = registry_add2(r, "matmul_trial", -1, W, DTYPE_FP32, Vp > 4 * C ? Vp : 4 * C, C);
    r->external_bytes[MEM_WORKSPACE] = MATMUL_CONTEXT_DEVICE_BYTES;
}

// Builds the device model for configuration *cfg, activations of up to max_tokens = B*T rows, in
// precision `precision`. Prints the memory report when `report` is set. Fails (returns -1 with a
// message, nothing allocated but the cuBLASLt context) when the plan does not fit in device memory.
static inline int gpt2_build(GPT2 *m, const GPT2Config *cfg, int max_tokens, Precision precision, FILE *report,
                             char *err, size_t err_size) {
    memset(m, 0, sizeof(*m));
    if (gpt2_config_validate(cfg, err, err_size) != 0) return -1;
    const int HS = cfg->channels / cfg->num_heads;
    if (HS != 64 && HS != 128) return set_error(err, err_size, "model: head size %d (channels/heads); the attention kernel takes 64 or 128", HS);
    if (cfg->channels % 8 != 0 || cfg->channels > LAYERNORM_MAX_C)
        return set_error(err, err_size, "model: channels %d must be a multiple of 8 and at most %d", cfg->channels, LAYERNORM_MAX_C);
    if (cfg->padded_vocab_size % 8 != 0) return set_error(err, err_size, "model: padded vocabulary %d must be a multiple of 8", cfg->padded_vocab_size);
    m->config = *cfg;
    gpt2_param_layout(cfg, &m->layout);
    m->precision = precision;
    m->max_tokens = max_tokens;
    registry_init(&m->reg);
    gpt2_register(m);
    if (report != NULL) registry_print_report(&m->reg, report);
    cudaCheck(cudaStreamCreate(&m->stream));
    matmul_context_init(&m->matmul);
    if (registry_allocate(&m->reg, err, err_size) != 0) return -1;
    m->params = gpt2_param(m, 0);
    m->grads = gpt2_grad(m, 0);
    m->master = GPT2_PTR(m, float, m->master_id[0]);
    m->m = GPT2_PTR(m, float, m->m_id[0]);
    m->v = GPT2_PTR(m, float, m->v_id[0]);
    const RegTensor *trial = &m->reg.tensors[m->matmul_trial];
    matmul_context_set_trial_buffer(&m->matmul, trial->data, trial->numel * dtype_size(trial->dtype));
    m->linear = linear_context(precision, &m->matmul, GPT2_PTR(m, float, m->bias_partials), (int)m->reg.tensors[m->bias_partials].shape[0],
                               4 * cfg->channels);
    stash_init(&m->stash, precision);
    size_t sizes[GPT2_NUM_PARAM_TENSORS];
    int decay[GPT2_NUM_PARAM_TENSORS];
    for (int i = 0; i < GPT2_NUM_PARAM_TENSORS; i++) {
        sizes[i] = m->layout.tensors[i].size;
        decay[i] = m->layout.tensors[i].is_matrix;
    }
    adamw_plan_build(&m->adamw_plan, sizes, decay, GPT2_NUM_PARAM_TENSORS, 0, m->layout.num_parameters);
    cudaCheck(cudaMallocHost((void **)&m->losses_host, (size_t)max_tokens * sizeof(float)));
    return 0;
}

static inline void gpt2_free(GPT2 *m) {
    adamw_plan_free(&m->adamw_plan);
    cudaCheck(cudaFreeHost(m->losses_host));
    matmul_context_free(&m->matmul);
    registry_free(&m->reg);
    cudaCheck(cudaStreamDestroy(m->stream));
    free(m->layer);
    memset(m, 0, sizeof(*m));
}

// Sets the FP32 master weights from params_host (num_parameters floats, llm.c order) and the BF16
// weights to them rounded to nearest.
static inline void gpt2_set_params(GPT2 *m, const float *params_host) {
    const size_t n = m->layout.num_parameters;
    cudaCheck(cudaMemcpy(m->master, params_host, n * sizeof(float), cudaMemcpyHostToDevice));
    fp32_to_bf16_kernel<<<(unsigned)ceil_div<size_t>(n, 256), 256, 0, m->stream>>>(m->params, m->master, n);
    cudaCheckLaunch();
    cudaCheck(cudaStreamSynchronize(m->stream));
}

// Copies the FP32 master weights to params_host (num_parameters floats).
static inline void gpt2_get_master(const GPT2 *m, float *params_host) {
    cudaCheck(cudaStreamSynchronize(m->stream));
    cudaCheck(cudaMemcpy(params_host, m->master, m->layout.num_parameters * sizeof(float), cudaMemcpyDeviceToHost));
}

// ----------------------------------------------------------------------------------------------
// forward / backward / update

// Forward over inputs [B,T] (host, token ids < vocab_size), B*T <= max_tokens. With targets [B,T]
// (host), runs the fused classifier, which leaves dloss * dlogits in the logits buffer for backward
// (dloss = 1/(B*T*grad_accum)), and returns the mean loss (summed in double in token order). With
// targets NULL stops at the logits (BF16 [B*T, Vp] in the logits tensor) and returns 0.
static inline float gpt2_forward(GPT2 *m, const int *inputs, const int *targets, int B, int T, float dloss) {
    const GPT2Config *c = &m->config;
    const int N = B * T, C = c->channels, L = c->num_layers, NH = c->num_heads, HS = C / NH;
    const int V = c->vocab_size, Vp = c->padded_vocab_size;
    shapeCheck(B > 0 && T > 0 && T <= c->max_seq_len && (long long)B * T <= m->max_tokens,
               "forward of B=%d T=%d: need T <= %d and B*T <= %d", B, T, c->max_seq_len, m->max_tokens);
    cudaStream_t s = m->stream;
    const LinearContext *lin = &m->linear;
    Registry *r = &m->reg;
    int *d_inputs = GPT2_PTR(m, int, m->inputs), *d_targets = GPT2_PTR(m, int, m->targets);
    cudaCheck(cudaMemcpyAsync(d_inputs, inputs, (size_t)N * sizeof(int), cudaMemcpyHostToDevice, s));
    if (targets != NULL) cudaCheck(cudaMemcpyAsync(d_targets, targets, (size_t)N * sizeof(int), cudaMemcpyHostToDevice, s));
    bf16 *branch = GPT2_PTR(m, bf16, m->branch);

    encoder_forward(GPT2_PTR(m, bf16, m->encoded), d_inputs, gpt2_param(m, GPT2_WTE), gpt2_param(m, GPT2_WPE), B, T, C, s);
    layernorm_forward(GPT2_PTR(m, bf16, m->layer[0].ln1), GPT2_PTR(m, float, m->layer[0].ln1_mean),
                      GPT2_PTR(m, float, m->layer[0].ln1_rstd), GPT2_PTR(m, bf16, m->encoded), gpt2_param(m, GPT2_LN1W),
                      gpt2_param(m, GPT2_LN1B), N, C, s);
    for (int l = 0; l < L; l++) {
        const GPT2LayerActs *a = &m->layer[l];
        const bf16 *residual = l == 0 ? GPT2_PTR(m, bf16, m->encoded) : GPT2_PTR(m, bf16, m->layer[l - 1].residual3);
        const size_t lc = (size_t)l * C;
        stash_save(&m->stash, &r->tensors[a->ln1], s);
        linear_forward(lin, GPT2_PTR(m, bf16, a->qkv), NULL, GPT2_PTR(m, bf16, a->ln1), gpt2_param(m, GPT2_QKVW) + lc * 3 * C,
                       gpt2_param(m, GPT2_QKVB) + 3 * lc, N, C, 3 * C, s);
        stash_save(&m->stash, &r->tensors[a->qkv], s);
        attention_forward(GPT2_PTR(m, bf16, a->atty), GPT2_PTR(m, float, a->lse), GPT2_PTR(m, bf16, a->qkv), B, T, NH, HS, s);
        stash_save(&m->stash, &r->tensors[a->atty], s);
        linear_forward(lin, branch, NULL, GPT2_PTR(m, bf16, a->atty), gpt2_param(m, GPT2_ATTPROJW) + lc * C,
                       gpt2_param(m, GPT2_ATTPROJB) + lc, N, C, C, s);
        fused_residual_layernorm_forward(GPT2_PTR(m, bf16, a->residual2), GPT2_PTR(m, bf16, a->ln2), GPT2_PTR(m, float, a->ln2_mean),
                                         GPT2_PTR(m, float, a->ln2_rstd), residual, branch, gpt2_param(m, GPT2_LN2W) + lc,
                                         gpt2_param(m, GPT2_LN2B) + lc, N, C, s);
        stash_save(&m->stash, &r->tensors[a->ln2], s);
        linear_forward(lin, GPT2_PTR(m, bf16, a->fch_gelu), GPT2_PTR(m, bf16, a->fch_gelu_grad), GPT2_PTR(m, bf16, a->ln2),
                       gpt2_param(m, GPT2_FCW) + lc * 4 * C, gpt2_param(m, GPT2_FCB) + 4 * lc, N, C, 4 * C, s);
        stash_save(&m->stash, &r->tensors[a->fch_gelu], s);
        linear_forward(lin, branch, NULL, GPT2_PTR(m, bf16, a->fch_gelu), gpt2_param(m, GPT2_FCPROJW) + lc * 4 * C,
                       gpt2_param(m, GPT2_FCPROJB) + lc, N, 4 * C, C, s);
        // x3 = x2 + branch, then the next LayerNorm on it (LN1 of layer l+1, or the final LN)
        bf16 *ln_out = l + 1 < L ? GPT2_PTR(m, bf16, m->layer[l + 1].ln1) : GPT2_PTR(m, bf16, m->lnf);
        float *ln_mean = l + 1 < L ? GPT2_PTR(m, float, m->layer[l + 1].ln1_mean) : GPT2_PTR(m, float, m->lnf_mean);
        float *ln_rstd = l + 1 < L ? GPT2_PTR(m, float, m->layer[l + 1].ln1_rstd) : GPT2_PTR(m, float, m->lnf_rstd);
        const bf16 *ln_w = l + 1 < L ? gpt2_param(m, GPT2_LN1W) + lc + C : gpt2_param(m, GPT2_LNFW);
        const bf16 *ln_b = l + 1 < L ? gpt2_param(m, GPT2_LN1B) + lc + C : gpt2_param(m, GPT2_LNFB);
        fused_residual_layernorm_forward(GPT2_PTR(m, bf16, a->residual3), ln_out, ln_mean, ln_rstd, GPT2_PTR(m, bf16, a->residual2),
                                         branch, ln_w, ln_b, N, C, s);
    }
    stash_save(&m->stash, &r->tensors[m->lnf], s);
    bf16 *logits = GPT2_PTR(m, bf16, m->logits);
    linear_forward(lin, logits, NULL, GPT2_PTR(m, bf16, m->lnf), gpt2_param(m, GPT2_WTE), NULL, N, C, Vp, s);
    m->last_B = B;
    m->last_T = T;
    if (targets == NULL) return 0.0f;
    fused_classifier(logits, GPT2_PTR(m, float, m->losses), d_targets, dloss, N, V, Vp, s);
    cudaCheck(cudaMemcpyAsync(m->losses_host, GPT2_PTR(m, float, m->losses), (size_t)N * sizeof(float), cudaMemcpyDeviceToHost, s));
    cudaCheck(cudaStreamSynchronize(s));
    double sum = 0.0;
    for (int i = 0; i < N; i++) sum += m->losses_host[i];
    return (float)(sum / N);
}

// Whether the attention backward sums the qkv bias gradient for sequences of B x T (its partials fit the
// scratch: always when T >= 32); otherwise the qkv linear's backward does, in a pass over dqkv.
static inline bool gpt2_attention_sums_qkv_bias(const GPT2 *m, int B, int T) {
    return attention_bias_partial_rows(B, T) <= (long)m->reg.tensors[m->attn_bias_partials].shape[0];
}

// Backward of the last forward (which had targets) into the FP32 gradients. accumulate: 1 adds to them (the
// later micro-steps of an optimizer step), 0 writes every element (the first micro-step: no memset). Each
// gradient has one writer, which takes the flag, but wte: the LM head's Wgrad writes or adds, then the encoder
// adds. The bits are those of zeroed gradients plus accumulate, except that a Wgrad element whose products are
// all -0.0f may come out -0.0f instead of +0.0f (beta = 0 adds no +0.0f); the norm and AdamW treat both alike.
static inline void gpt2_backward(GPT2 *m, bool accumulate) {
    const GPT2Config *c = &m->config;
    const int B = m->last_B, T = m->last_T, N = B * T, C = c->channels, L = c->num_layers, NH = c->num_heads, HS = C / NH;
    const int Vp = c->padded_vocab_size;
    cudaStream_t s = m->stream;
    const LinearContext *lin = &m->linear;
    Registry *r = &m->reg;
    bf16 *dres = GPT2_PTR(m, bf16, m->dresidual), *dbtc = GPT2_PTR(m, bf16, m->dbtc);
    bf16 *dqkv = GPT2_PTR(m, bf16, m->dqkv), *dfch = GPT2_PTR(m, bf16, m->dfch);
    float *ln_scratch = GPT2_PTR(m, float, m->ln_scratch);
    const bool attn_bias_fused = gpt2_attention_sums_qkv_bias(m, B, T);

    // LM head (tied wte) and the final LayerNorm
    linear_backward(lin, dbtc, gpt2_grad(m, GPT2_WTE), NULL, GPT2_PTR(m, bf16, m->logits),
                    stash_restore(&m->stash, &r->tensors[m->lnf], s), gpt2_param(m, GPT2_WTE), NULL, NULL, N, C, Vp, accumulate, s);
    // every LayerNorm backward also sums the columns of the residual gradient it leaves in dres: the
    // dout of the next linear in backward order, so its bias gradient comes from that pass (fcproj
    // after the final LN and after LN1 of layer l+1, attproj after LN2). The final LN writes dres.
    layernorm_backward(dres, gpt2_grad(m, GPT2_FCPROJB) + (size_t)(L - 1) * C, gpt2_grad(m, GPT2_LNFW), gpt2_grad(m, GPT2_LNFB), ln_scratch, dbtc,
                       GPT2_PTR(m, bf16, m->layer[L - 1].residual3), gpt2_param(m, GPT2_LNFW), GPT2_PTR(m, float, m->lnf_mean),
                       GPT2_PTR(m, float, m->lnf_rstd), N, C, false, accumulate, s);
    for (int l = L - 1; l >= 0; l--) {
        const GPT2LayerActs *a = &m->layer[l];
        const bf16 *residual = l == 0 ? GPT2_PTR(m, bf16, m->encoded) : GPT2_PTR(m, bf16, m->layer[l - 1].residual3);
        const size_t lc = (size_t)l * C;
        // dres is the gradient of x3: the fcproj branch gets it unchanged; its Dgrad epilogue applies GELU's
        // backward and gives the fc bias gradient (so fc's own backward skips it)
        linear_backward(lin, dfch, gpt2_grad(m, GPT2_FCPROJW) + lc * 4 * C, NULL, dres,
                        stash_restore(&m->stash, &r->tensors[a->fch_gelu], s), gpt2_param(m, GPT2_FCPROJW) + lc * 4 * C,
                        GPT2_PTR(m, bf16, a->fch_gelu_grad), gpt2_grad(m, GPT2_FCB) + 4 * lc, N, 4 * C, C, accumulate, s);
        linear_backward(lin, dbtc, gpt2_grad(m, GPT2_FCW) + lc * 4 * C, NULL, dfch,
                        stash_restore(&m->stash, &r->tensors[a->ln2], s), gpt2_param(m, GPT2_FCW) + lc * 4 * C, NULL, NULL, N, C, 4 * C,
                        accumulate, s);
        layernorm_backward(dres, gpt2_grad(m, GPT2_ATTPROJB) + lc, gpt2_grad(m, GPT2_LN2W) + lc, gpt2_grad(m, GPT2_LN2B) + lc, ln_scratch, dbtc,
                           GPT2_PTR(m, bf16, a->residual2), gpt2_param(m, GPT2_LN2W) + lc, GPT2_PTR(m, float, a->ln2_mean),
                           GPT2_PTR(m, float, a->ln2_rstd), N, C, true, accumulate, s);
        // dres is now the gradient of x2: the attention branch gets it unchanged
        linear_backward(lin, dbtc, gpt2_grad(m, GPT2_ATTPROJW) + lc * C, NULL, dres,
                        stash_restore(&m->stash, &r->tensors[a->atty], s), gpt2_param(m, GPT2_ATTPROJW) + lc * C, NULL, NULL, N, C, C,
                        accumulate, s);
        // the qkv bias gradient comes from the attention backward, which sums the columns of dqkv as it
        // stores them, when its partials fit (T >= 32); else from the qkv linear's own pass over dqkv
        float *qkv_dbias = gpt2_grad(m, GPT2_QKVB) + 3 * lc;
        float *attn_dbias = attn_bias_fused ? qkv_dbias : NULL, *linear_dbias = attn_bias_fused ? NULL : qkv_dbias;
        attention_backward(dqkv, attn_dbias, GPT2_PTR(m, float, m->attn_delta), GPT2_PTR(m, float, m->attn_bias_partials), dbtc,
                           stash_restore(&m->stash, &r->tensors[a->qkv], s), GPT2_PTR(m, bf16, a->atty), GPT2_PTR(m, float, a->lse),
                           B, T, NH, HS, accumulate, s);
        linear_backward(lin, dbtc, gpt2_grad(m, GPT2_QKVW) + lc * 3 * C, linear_dbias, dqkv,
                        stash_restore(&m->stash, &r->tensors[a->ln1], s), gpt2_param(m, GPT2_QKVW) + lc * 3 * C, NULL, NULL, N, C, 3 * C,
                        accumulate, s);
        float *prev_fcproj_dbias = l > 0 ? gpt2_grad(m, GPT2_FCPROJB) + lc - C : NULL;
        layernorm_backward(dres, prev_fcproj_dbias, gpt2_grad(m, GPT2_LN1W) + lc, gpt2_grad(m, GPT2_LN1B) + lc, ln_scratch, dbtc, residual,
                           gpt2_param(m, GPT2_LN1W) + lc, GPT2_PTR(m, float, a->ln1_mean), GPT2_PTR(m, float, a->ln1_rstd), N, C, true,
                           accumulate, s);
    }
    encoder_backward(gpt2_grad(m, GPT2_WTE), gpt2_grad(m, GPT2_WPE), GPT2_PTR(m, void, m->encoder_scratch), dres,
                     GPT2_PTR(m, int, m->inputs), B, T, C, Vp, c->max_seq_len, accumulate, s);
}

// Global L2 norm of the gradients (FP32 sum of squares on the device, square root on the host).
static inline float gpt2_grad_norm(GPT2 *m) {
    float *out = GPT2_PTR(m, float, m->norm_out);
    global_norm_squared(out, GPT2_PTR(m, float, m->norm_scratch), m->grads, (long long)m->layout.num_parameters, m->stream);
    float squared = 0.0f;
    cudaCheck(cudaMemcpyAsync(&squared, out, sizeof(float), cudaMemcpyDeviceToHost, m->stream));
    cudaCheck(cudaStreamSynchronize(m->stream));
    return sqrtf(squared);
}

// AdamW settings of the run.
typedef struct {
    float beta1, beta2, eps, weight_decay, grad_clip;
} GPT2Optimizer;

// Optimizer step `step` (1-based) with learning rate lr: global-norm clipping to opt->grad_clip, then
// AdamW on the FP32 master weights (weight decay on the 2-D weights), BF16 weights rewritten.
// Returns the gradient norm before clipping.
static inline float gpt2_update(GPT2 *m, const GPT2Optimizer *opt, float lr, int step) {
    const float norm = gpt2_grad_norm(m);
    const AdamWStepParams hp = adamw_step_params(lr, opt->beta1, opt->beta2, opt->eps, opt->weight_decay, step,
                                                 grad_clip_scale(norm, opt->grad_clip));
    adamw_update(m->params, m->master, m->m, m->v, m->grads, &m->adamw_plan, hp, m->stream);
    return norm;
}

// Training FLOPs per token: 6 per parameter (forward 2, backward 4; includes the tied LM head) plus
// causal attention, 6*L*T*C (QK^T and PV: 2*2*T*C per layer forward at full length, halved by the
// causal mask, times 3 for forward + backward).
static inline double gpt2_flops_per_token(const GPT2 *m, int T) {
    const GPT2Config *c = &m->config;
    return 6.0 * (double)m->layout.num_parameters + 6.0 * c->num_layers * (double)T * c->channels;
}

// ----------------------------------------------------------------------------------------------
// checkpoints: an llm.c model file with the FP32 master weights (version 3, so a resume restores them
// exactly and the BF16 weights are their rounding, as after every update) and a training-state file
// with the AdamW moments (core/checkpoint.h). *st carries everything else (step, RNG, data position,
// run settings); its parameter fields are filled here.

static inline int gpt2_checkpoint_write(const GPT2 *m, const char *model_path, const char *state_path, TrainState *st,
                                        char *err, size_t err_size) {
    const size_t n = m->layout.num_parameters;
    float *host = (float *)malloc_check(3 * n * sizeof(float));
    gpt2_get_master(m, host);
    cudaCheck(cudaMemcpy(host + n, m->m, n * sizeof(float), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(host + 2 * n, m->v, n * sizeof(float), cudaMemcpyDeviceToHost));
    st->num_parameters = n;
    st->shard_offset = 0;
    st->shard_size = n;
    st->has_master = 0;
    int rc = model_file_write(model_path, &m->config, host, MODEL_FILE_VERSION_FP32, err, err_size);
    if (rc == 0) rc = train_state_write(state_path, st, host + n, host + 2 * n, NULL, err, err_size);
    free(host);
    return rc;
}

// Loads a checkpoint written by gpt2_checkpoint_write into the model; the saved run settings must
// equal *now. Fills *st. Returns 0, or -1 with a message naming the file.
static inline int gpt2_checkpoint_load(GPT2 *m, const char *model_path, const char *state_path, const TrainRunConfig *now,
                                       TrainState *st, char *err, size_t err_size) {
    const size_t n = m->layout.num_parameters;
    GPT2Config file_cfg;
    int version = 0;
    float *params = NULL;
    if (model_file_load(model_path, &m->config, &file_cfg, &version, &params, err, err_size) != 0) return -1;
    if (version != MODEL_FILE_VERSION_FP32) {
        free(params);
        return set_error(err, err_size, "'%s': version %d model file; a checkpoint needs the fp32 master weights (version 3)", model_path, version);
    }
    float *moments = (float *)malloc_check(2 * n * sizeof(float));
    int rc = train_state_load(state_path, now, n, 0, n, st, moments, moments + n, NULL, err, err_size);
    if (rc == 0) {
        gpt2_set_params(m, params);
        cudaCheck(cudaMemcpy(m->m, moments, n * sizeof(float), cudaMemcpyHostToDevice));
        cudaCheck(cudaMemcpy(m->v, moments + n, n * sizeof(float), cudaMemcpyHostToDevice));
    }
    free(params);
    free(moments);
    return rc;
}

#endif // GPT2_CUH
