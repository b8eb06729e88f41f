/*
Where one GPT-2 BF16 training step's time goes (gpt2.cuh): builds a randomly initialized preset model,
runs WARMUP steps (the first one also chooses the cuBLASLt algorithms, kernels/matmul_cublaslt.cuh), then
times STEPS steps phase by phase between CUDA events on the model's stream: forward (with the fused
classifier), backward (one micro-step per step, so it writes the gradients: no memset), global norm +
AdamW. Then times every GEMM of one step on its own (same shapes, same linear dispatch point, random
operands) and prints their sum, and how the plan cache chose; then
every other kernel of the step on its own (on the model's tensors, layer 0 for every layer), so that the
two tables add up to about the step time.

Compile and run:
  make build/dev/gpt2_step && ./build/dev/gpt2_step d12 64 1024     # preset, B, T

MFU as in train_gpt: FLOPs/token = 6*N_params + 6*L*T*C against 989 TFLOP/s (H100 SXM dense BF16).
*/
#include <stdio.h>
#include <stdlib.h>
#include "gpt2.cuh"

#define WARMUP 2
#define STEPS 10
#define GEMM_REPS 5

// x[i] = a pseudo-random BF16 value in [-scale, scale) from the index (operands of the GEMM timing).
__global__ void fill_random_bf16_kernel(bf16 *x, size_t n, float scale) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned int h = (unsigned int)(i * 2654435761u) ^ (unsigned int)(i >> 32);
        h ^= h >> 15;
        h *= 0x2c1b3c6du;
        h ^= h >> 12;
        x[i] = __float2bfloat16(scale * ((float)(h & 0xffffu) / 32768.0f - 1.0f));
    }
}

static void fill_random_bf16(bf16 *x, size_t n, float scale, cudaStream_t stream) {
    fill_random_bf16_kernel<<<1024, 256, 0, stream>>>(x, n, scale);
    cudaCheckLaunch();
}

// Milliseconds between two recorded events (waits for the second).
static float elapsed_ms(cudaEvent_t a, cudaEvent_t b) {
    float ms;
    cudaCheck(cudaEventSynchronize(b));
    cudaCheck(cudaEventElapsedTime(&ms, a, b));
    return ms;
}

// One GEMM of the step: which pass, IC -> OC, with bias / GELU as the model runs it, times per step.
typedef struct {
    const char *name;
    LinearGemm which;
    int IC, OC;
    int bias, gelu;
    int per_step;
} StepGemm;

int main(int argc, char **argv) {
    const char *preset = argc > 1 ? argv[1] : "d12";
    const int B = argc > 2 ? atoi(argv[2]) : 64;
    const int T = argc > 3 ? atoi(argv[3]) : 1024;
    char err[512];
    GPT2Config cfg;
    if (gpt2_config_preset(preset, &cfg, err, sizeof(err)) != 0) fatal("%s", err);
    ParamTable table;
    if (gpt2_param_table(&cfg, &table, err, sizeof(err)) != 0) fatal("%s", err);
    float *params = (float *)malloc_check(table.num_parameters * sizeof(float));
    param_table_init(&table, params, 1337);
    Model m;
    if (model_build(&m, &GPT2_FAMILY, &cfg, B * T, 1, PRECISION_BF16, NULL, err, sizeof(err)) != 0) fatal("%s", err);
    model_set_params(&m, params);
    free(params);
    const GPT2 *g = gpt2_of(&m);

    int *inputs = (int *)malloc_check((size_t)(B * T + 1) * sizeof(int));
    uint64_t state = 42;
    for (int i = 0; i <= B * T; i++) {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        inputs[i] = (int)((state >> 33) % (uint64_t)cfg.vocab_size);
    }
    const AdamWConfig opt = {0.9f, 0.95f, 1e-8f, 0.1f, 1.0f};
    cudaEvent_t ev[4];
    for (int i = 0; i < 4; i++) cudaCheck(cudaEventCreate(&ev[i]));
    double sum_fwd = 0, sum_bwd = 0, sum_upd = 0;
    for (int step = 0; step < WARMUP + STEPS; step++) {
        cudaCheck(cudaEventRecord(ev[0], m.stream));
        model_forward(&m, 0, inputs, inputs + 1, B, T, 1.0f / ((float)B * T));
        cudaCheck(cudaEventRecord(ev[1], m.stream));
        model_backward(&m, 0, false);
        cudaCheck(cudaEventRecord(ev[2], m.stream));
        model_update(&m, &opt, 1e-4f, step + 1);
        cudaCheck(cudaEventRecord(ev[3], m.stream));
        model_take_loss(&m);
        float f = elapsed_ms(ev[0], ev[1]), b = elapsed_ms(ev[1], ev[2]), u = elapsed_ms(ev[2], ev[3]);
        if (step >= WARMUP) { sum_fwd += f; sum_bwd += b; sum_upd += u; }
    }
    const double step_ms = (sum_fwd + sum_bwd + sum_upd) / STEPS;
    const double tok_s = (double)B * T / (step_ms / 1e3);
    const double mfu = tok_s * gpt2_flops_per_token(&m, T) / 989e12;
    printf("%s B=%d T=%d: step %.2f ms = forward %.2f + backward %.2f + update %.2f (mean of %d); %.0f tok/s, MFU %.1f%%\n",
           preset, B, T, step_ms, sum_fwd / STEPS, sum_bwd / STEPS, sum_upd / STEPS, STEPS, tok_s, 100.0 * mfu);

    // the plan cache's choices (made on the first step)
    int switched = 0;
    for (int i = 0; i < m.matmul.num_plans; i++) {
        const MatmulPlan *p = &m.matmul.plans[i];
        printf("  plan M=%6d N=%6d K=%6d ta=%d tb=%d epi=%d: %d proposals, %d bit-identical, chose #%d\n", p->M, p->N, p->K,
               p->a_transposed, p->b_transposed, (int)p->epilogue, p->num_candidates, p->num_identical, p->algo_rank);
        switched += p->algo_rank != 0;
    }
    printf("  %d of %d plans use an algorithm other than the heuristic's first\n", switched, m.matmul.num_plans);

    // every GEMM of the step alone
    const int N = B * T, C = cfg.channels, L = cfg.num_layers, Vp = cfg.padded_vocab_size;
    const StepGemm gemms[] = {
        {"qkv fprop", LINEAR_FPROP, C, 3 * C, 1, 0, L},        {"attproj fprop", LINEAR_FPROP, C, C, 1, 0, L},
        {"fc fprop+gelu", LINEAR_FPROP, C, 4 * C, 1, 1, L},    {"fcproj fprop", LINEAR_FPROP, 4 * C, C, 1, 0, L},
        {"lm head fprop", LINEAR_FPROP, C, Vp, 0, 0, 1},       {"lm head dgrad", LINEAR_DGRAD, C, Vp, 0, 0, 1},
        {"lm head wgrad", LINEAR_WGRAD, C, Vp, 0, 0, 1},       {"fcproj dgrad+gelu", LINEAR_DGRAD, 4 * C, C, 0, 1, L},
        {"fcproj wgrad", LINEAR_WGRAD, 4 * C, C, 0, 0, L},     {"fc dgrad", LINEAR_DGRAD, C, 4 * C, 0, 0, L},
        {"fc wgrad", LINEAR_WGRAD, C, 4 * C, 0, 0, L},         {"attproj dgrad", LINEAR_DGRAD, C, C, 0, 0, L},
        {"attproj wgrad", LINEAR_WGRAD, C, C, 0, 0, L},        {"qkv dgrad", LINEAR_DGRAD, C, 3 * C, 0, 0, L},
        {"qkv wgrad", LINEAR_WGRAD, C, 3 * C, 0, 0, L},
    };
    const size_t max_act = (size_t)N * (Vp > 4 * C ? Vp : 4 * C);
    bf16 *x, *y, *out, *aux, *bias;
    float *dweight;
    cudaCheck(cudaMalloc(&x, max_act * sizeof(bf16)));
    cudaCheck(cudaMalloc(&y, (size_t)Vp * C * sizeof(bf16)));
    cudaCheck(cudaMalloc(&out, max_act * sizeof(bf16)));
    cudaCheck(cudaMalloc(&aux, (size_t)N * 4 * C * sizeof(bf16)));
    cudaCheck(cudaMalloc(&bias, (size_t)Vp * sizeof(bf16)));
    cudaCheck(cudaMalloc(&dweight, (size_t)Vp * C * sizeof(float)));
    fill_random_bf16(x, max_act, 1.0f, m.stream);
    fill_random_bf16(y, (size_t)Vp * C, 0.05f, m.stream);
    fill_random_bf16(aux, (size_t)N * 4 * C, 1.0f, m.stream);
    fill_random_bf16(bias, Vp, 0.1f, m.stream);
    cudaCheck(cudaMemsetAsync(dweight, 0, (size_t)Vp * C * sizeof(float), m.stream));
    double gemm_total = 0;
    for (size_t i = 0; i < sizeof(gemms) / sizeof(gemms[0]); i++) {
        const StepGemm *g = &gemms[i];
        // operands as linear_backward / linear_forward pass them: Fprop (out, inp, weight), Dgrad (dinp, dout,
        // weight), Wgrad (dweight, dout, inp; written, as in the step); x holds the activation-shaped operand, y the weight
        void *dst = g->which == LINEAR_WGRAD ? (void *)dweight : (void *)out;
        const bf16 *second = g->which == LINEAR_WGRAD ? out : y;
        bf16 *gelu_grad = g->gelu ? aux : NULL;
        const bf16 *b = g->bias ? bias : NULL;
        linear_gemm(&m.linear, g->which, dst, x, second, b, gelu_grad, N, g->IC, g->OC, false, m.stream);  // warm-up, plan
        cudaCheck(cudaEventRecord(ev[0], m.stream));
        for (int r = 0; r < GEMM_REPS; r++) linear_gemm(&m.linear, g->which, dst, x, second, b, gelu_grad, N, g->IC, g->OC, false, m.stream);
        cudaCheck(cudaEventRecord(ev[1], m.stream));
        const double ms = elapsed_ms(ev[0], ev[1]) / GEMM_REPS;
        const double tflops = 2.0 * N * g->IC * g->OC / (ms * 1e9);
        printf("  %-20s N=%6d IC=%5d OC=%6d: %7.3f ms x %2d = %7.2f ms/step (%.0f TFLOP/s)\n", g->name, N, g->IC, g->OC, ms,
               g->per_step, ms * g->per_step, tflops);
        gemm_total += ms * g->per_step;
    }
    printf("GEMMs alone: %.2f ms per step (%.1f%% of the step); the rest (attention, memory-bound passes): %.2f ms\n",
           gemm_total, 100.0 * gemm_total / step_ms, step_ms - gemm_total);

    // every other kernel of the step alone, on the model's own tensors (layer 0 stands for every layer)
    const int NH = cfg.num_heads, HS = C / NH;
    const GPT2LayerActs *a0 = gpt2_acts(g, 0, 0);
    bf16 *branch = g->branch, *dres = g->dresidual, *dbtc = g->dbtc;
    float *ln_scratch = g->ln_scratch;
    const ModelSlot *s0 = &m.slot[0];
    const AdamWStepParams hp = adamw_step_params(1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, 1.0f);
    double other_total = 0;
#define TIME_OP(name, per_step, call)                                                                            \
    do {                                                                                                         \
        call;                                                                                                    \
        cudaCheck(cudaEventRecord(ev[0], m.stream));                                                             \
        for (int r_ = 0; r_ < GEMM_REPS; r_++) { call; }                                                         \
        cudaCheck(cudaEventRecord(ev[1], m.stream));                                                             \
        const double ms_ = elapsed_ms(ev[0], ev[1]) / GEMM_REPS;                                                 \
        printf("  %-28s %8.3f ms x %3d = %7.2f ms/step\n", name, ms_, per_step, ms_ * (per_step));             \
        other_total += ms_ * (per_step);                                                                         \
    } while (0)
    TIME_OP("encoder forward", 1, encoder_forward(g->slot[0].encoded, model_inputs(&m, 0), model_param(&m, GPT2_WTE),
                                                  model_param(&m, GPT2_WPE), B, T, C, m.stream));
    TIME_OP("residual + layernorm fwd", 2 * L + 1,
            fused_residual_layernorm_forward(a0->residual2, a0->ln2, a0->ln2_mean, a0->ln2_rstd, g->slot[0].encoded, branch,
                                             model_param(&m, GPT2_LN2W), model_param(&m, GPT2_LN2B), N, C, m.stream));
    TIME_OP("attention forward", L, attention_forward(a0->atty, a0->lse, a0->qkv, B, T, NH, HS, m.stream));
    TIME_OP("classifier", 1, fused_classifier(model_logits(&m, 0), MODEL_PTR(&m, float, s0->losses), MODEL_PTR(&m, int, s0->targets),
                                              1.0f / N, N, cfg.vocab_size, Vp, m.stream));
    TIME_OP("layernorm bwd + next bias grad", 2 * L + 1,
            layernorm_backward(dres, model_grad(&m, GPT2_ATTPROJB), model_grad(&m, GPT2_LN2W), model_grad(&m, GPT2_LN2B), ln_scratch, dbtc,
                               a0->residual2, model_param(&m, GPT2_LN2W), a0->ln2_mean, a0->ln2_rstd, N, C, true, false, m.stream));
    // as the model runs it: with the qkv bias gradient (T >= 32; shorter sequences sum it in a pass not timed here)
    float *attn_qkv_dbias = gpt2_attention_sums_qkv_bias(&m, B, T) ? model_grad(&m, GPT2_QKVB) : NULL;
    TIME_OP("attention bwd + qkv bias grad", L, attention_backward(g->dqkv, attn_qkv_dbias, g->attn_delta, g->attn_bias_partials, dbtc, a0->qkv,
                                                                  a0->atty, a0->lse, B, T, NH, HS, false, m.stream));
    TIME_OP("fc bias grad (tile partials)", L, column_partials_add(model_grad(&m, GPT2_FCB), m.linear.bias_partials, ceil_div(N, BG_BM), 4 * C,
                                                                 false, m.stream));
    TIME_OP("encoder backward", 1, encoder_backward(model_grad(&m, GPT2_WTE), model_grad(&m, GPT2_WPE), g->encoder_scratch, dres,
                                                    model_inputs(&m, 0), B, T, C, Vp, cfg.max_seq_len, false, m.stream));
    TIME_OP("global norm", 1, global_norm_squared(MODEL_PTR(&m, float, m.norm_out), MODEL_PTR(&m, float, m.norm_scratch), m.grads,
                                                  (long long)m.table.num_parameters, m.stream));
    TIME_OP("adamw", 1, adamw_update(m.params, m.master, m.m, m.v, m.grads, &m.adamw_plan, hp, m.stream));
#undef TIME_OP
    printf("other kernels alone: %.2f ms per step; GEMMs + others = %.2f ms vs the step's %.2f ms\n", other_total,
           gemm_total + other_total, step_ms);

    cudaCheck(cudaFree(x));
    cudaCheck(cudaFree(y));
    cudaCheck(cudaFree(out));
    cudaCheck(cudaFree(aux));
    cudaCheck(cudaFree(bias));
    cudaCheck(cudaFree(dweight));
    for (int i = 0; i < 4; i++) cudaCheck(cudaEventDestroy(ev[i]));
    free(inputs);
    model_free(&m);
    return 0;
}
