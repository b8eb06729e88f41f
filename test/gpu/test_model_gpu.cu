// GPU test of whole models of both families (gpt2.cuh and llama.cuh on core/model.cuh) against their FP32 CPU
// references (test/reference/gpt2_cpu.h, llama_cpu.h), every check run for each family (a traits struct per
// family below). GPT-2:
// a small model (L=4, C=256, 4 heads of 64, V=509 padded to 512, T=64, B=4) with the same initial
// weights on both sides (Llama: the same with 2 KV heads, FFN 512, theta 10000); the forward/backward check also runs at B=16, T=16, where the qkv bias gradient
// comes from the qkv linear's pass instead of the attention backward (whose partials cover T >= 32).
// Gradients are taken over two micro-batches: the first backward writes them (over NaN: no memset), the
// second adds; the bits must be those of two accumulating backwards into zeroed gradients (up to the sign
// of zeros, see test_linear_wgrad_signed_zero in test_layers.cu).
//
// Tolerances. The GPU keeps weights and activations in BF16 (unit roundoff u = 2^-8) and accumulates
// in FP32; the CPU reference is FP32 throughout and gets the BF16-rounded weights. Each BF16 rounding
// adds a relative error of at most u, about u/sqrt(3) ~ 2.3e-3 RMS, and a forward/backward pass
// stacks a few dozen of them (per layer: LN, qkv, attention, proj, residual, LN, fc, GELU, fcproj,
// residual; and the same in backward), partly cancelling, so:
//   mean loss:          |gpu - cpu| <= 4u * |cpu|   (a mean over 256 tokens: the per-token errors average out)
//   logits:             relative L2 error <= 4u = 1.6e-2
//   every gradient:     relative L2 error <= 12u = 4.7e-2 per parameter tensor (backward stacks the
//                       forward's errors and its own; the LN gains/biases sum small differences)
//   20 training steps:  |loss_gpu - loss_cpu| <= 8u * loss_cpu at every step (the CPU trains FP32
//                       weights; the GPU's BF16 weights differ by <= u relative, AdamW normalizes the
//                       update so gradient errors change each step's size by about the same fraction).
// Measured on an H100 (dev/RESULTS.md): logits 6.8e-3, loss |diff| 4e-5, gradients 2.2e-3..7.3e-3, 20-step
// loss difference at most 1.9e-3 relative: every bound has a margin of 2x to 16x.
// Exactness checks need no tolerance: two GPU runs give bit-identical losses and master weights, a run
// saved after k steps and resumed gives the same bits as the uninterrupted run, and two micro-batches in
// two slots, forwarded one after the other and taken backward in reverse order (as a pipeline schedule
// does), give the gradients of the sequential order: bit-identical for every tensor with one writer per
// micro-batch (two terms add the same in either order), and within 1e-6 relative L2 for wte, whose four
// terms (LM head and embedding of each micro-batch) are added in another association.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "gpt2.cuh"
#include "llama.cuh"
#include "test/reference/gpt2_cpu.h"
#include "test/reference/llama_cpu.h"
#include "test/testing.h"
#include "test/testing_files.h"

#define BF16_U (1.0f / 256.0f)
#define TEST_B 4
#define TEST_T 64
#define TRAIN_STEPS 20
#define GRAD_ACCUM 2

// What the tests need of a family: its configuration, device model, CPU reference and checkpoint format.
// shared_gradient: a tensor with two writers per micro-batch (GPT-2's tied wte: the LM head and the
// embedding), whose sum over micro-batches in another order may differ in the last bits; -1 when none.
struct Gpt2Test {
    typedef GPT2Config Config;
    typedef GPT2Cpu Cpu;
    static Config config() { return gpt2_config_make(128, 509, 512, 4, 4, 256); }
    static void cpu_build(Cpu *cpu, const Config *c, int B, int T) { gpt2_cpu_build(cpu, c, B, T); }
    static float cpu_forward(Cpu *cpu, const int *inputs, const int *targets) { return gpt2_cpu_forward(cpu, inputs, targets); }
    static void cpu_zero_grad(Cpu *cpu) { gpt2_cpu_zero_grad(cpu); }
    static void cpu_backward(Cpu *cpu, int accum) { gpt2_cpu_backward(cpu, accum); }
    static void cpu_update(Cpu *cpu, const AdamWConfig *opt, float lr, int step) { gpt2_cpu_update(cpu, opt, lr, step); }
    static void cpu_free(Cpu *cpu) { gpt2_cpu_free(cpu); }
    static const int logits_act = ACT_LOGITS;
    static const int shared_gradient = GPT2_WTE;
    static const ModelFamily *family() { return &GPT2_FAMILY; }
    static bf16 *dresidual(const Model *m) { return gpt2_of(m)->dresidual; }
};

struct LlamaTest {
    typedef LlamaConfig Config;
    typedef LlamaCpu Cpu;
    static Config config() { return llama_config_make(128, 509, 512, 4, 4, 2, 256, 512, 10000.0f, 1e-5f); }
    static void cpu_build(Cpu *cpu, const Config *c, int B, int T) { llama_cpu_build(cpu, c, B, T); }
    static float cpu_forward(Cpu *cpu, const int *inputs, const int *targets) { return llama_cpu_forward(cpu, inputs, targets); }
    static void cpu_zero_grad(Cpu *cpu) { llama_cpu_zero_grad(cpu); }
    static void cpu_backward(Cpu *cpu, int accum) { llama_cpu_backward(cpu, accum); }
    static void cpu_update(Cpu *cpu, const AdamWConfig *opt, float lr, int step) { llama_cpu_update(cpu, opt, lr, step); }
    static void cpu_free(Cpu *cpu) { llama_cpu_free(cpu); }
    static const int logits_act = LLAMA_ACT_LOGITS;
    static const int shared_gradient = -1;
    static const ModelFamily *family() { return &LLAMA_FAMILY; }
    static bf16 *dresidual(const Model *m) { return llama_of(m)->dresidual; }
};

static const AdamWConfig TEST_OPT = {0.9f, 0.95f, 1e-8f, 0.1f, 1.0f};
static const float TEST_LR = 1e-3f;

// Relative L2 error ||a - b|| / ||b|| in double (0 when both are zero, inf when only b is).
static double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    if (den == 0.0) return num == 0.0 ? 0.0 : INFINITY;
    return sqrt(num / den);
}

static float bf16_round(float x) { return __bfloat162float(__float2bfloat16(x)); }

// Random tokens in [0, V) for `batches` micro-batches of inputs and targets (B*T each).
static void random_tokens(int *inputs, int *targets, int batches, int V, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < batches * TEST_B * TEST_T; i++) {
        inputs[i] = (int)rng_below(&rng, (uint64_t)V);
        targets[i] = (int)rng_below(&rng, (uint64_t)V);
    }
}

template <typename F>
static void build_gpu(Model *m, const typename F::Config *cfg, const float *params, int slots) {
    char err[1024];
    if (model_build(m, F::family(), cfg, TEST_B * TEST_T, slots, PRECISION_BF16, NULL, err, sizeof(err)) != 0) fatal("%s", err);
    model_set_params(m, params);
}

// Runs forward and backward of GRAD_ACCUM micro-batches of B x T tokens, the first backward with accumulate =
// first_accumulates (the others add); returns the mean loss.
static float gpu_micro_steps(Model *m, const int *inputs, const int *targets, int B, int T, bool first_accumulates) {
    for (int k = 0; k < GRAD_ACCUM; k++) {
        model_forward(m, 0, inputs + k * B * T, targets + k * B * T, B, T, 1.0f / (B * T * GRAD_ACCUM));
        model_backward(m, 0, k > 0 || first_accumulates);
    }
    return model_take_loss(m);
}

// One optimizer step on the GPU over GRAD_ACCUM micro-batches (the first backward writes the gradients);
// returns the mean loss.
static float gpu_step(Model *m, const int *inputs, const int *targets, int step) {
    const float loss = gpu_micro_steps(m, inputs, targets, TEST_B, TEST_T, false);
    model_update(m, &TEST_OPT, TEST_LR, step);
    return loss;
}

template <typename F>
static ParamTable test_table(const typename F::Config *cfg) {
    ParamTable table;
    char err[512];
    if (F::family()->param_table(cfg, &table, err, sizeof(err)) != 0) fatal("%s", err);
    return table;
}

template <typename F>
static float *init_params(const typename F::Config *cfg, size_t *n) {
    const ParamTable table = test_table<F>(cfg);
    *n = table.num_parameters;
    float *p = (float *)malloc_check(*n * sizeof(float));
    param_table_init(&table, p, 1234);
    return p;
}

// Loss, logits and every parameter gradient of forward/backward over GRAD_ACCUM micro-batches of B x T tokens
// (B*T = TEST_B*TEST_T) against the CPU. fused_qkv_bias says which pass must give the qkv bias gradient: the
// attention backward (sequences of T >= 32) or, for shorter ones, the qkv linear's own pass over dqkv.
// portable_gelu: the MLP's GELU Fprop / Dgrad take the path of GPUs other than Hopper (cuBLASLt and
// element-wise passes) even on a Hopper GPU. (Both flags are GPT-2's; Llama has no biases and no GELU.)
template <typename F>
static void forward_backward_matches_cpu(int B, int T, bool fused_qkv_bias, bool portable_gelu) {
    const typename F::Config cfg = F::config();
    size_t n;
    float *params = init_params<F>(&cfg, &n);
    const int BT = B * T, Vp = cfg.padded_vocab_size;
    printf("  B=%d T=%d%s\n", B, T, portable_gelu ? ", GELU GEMMs of other GPUs" : "");
    int *inputs = (int *)malloc_check(GRAD_ACCUM * BT * sizeof(int)), *targets = (int *)malloc_check(GRAD_ACCUM * BT * sizeof(int));
    random_tokens(inputs, targets, GRAD_ACCUM, cfg.vocab_size, 77);

    Model gpu;
    build_gpu<F>(&gpu, &cfg, params, 1);
    if (portable_gelu) gpu.linear.gelu_gemm_sm90 = false;
    typename F::Cpu cpu;
    F::cpu_build(&cpu, &cfg, B, T);
    for (size_t i = 0; i < n; i++) cpu.core.params[i] = bf16_round(params[i]);

    // logits (forward without targets)
    if (F::family() == &GPT2_FAMILY)
        CHECK(gpt2_attention_sums_qkv_bias(&gpu, B, T) == fused_qkv_bias, "B=%d T=%d: qkv bias gradient from the wrong pass", B, T);
    model_forward(&gpu, 0, inputs, NULL, B, T, 0.0f);
    bf16 *logits_bf16 = (bf16 *)malloc_check((size_t)BT * Vp * sizeof(bf16));
    cudaCheck(cudaStreamSynchronize(gpu.stream));
    cudaCheck(cudaMemcpy(logits_bf16, model_logits(&gpu, 0), (size_t)BT * Vp * sizeof(bf16), cudaMemcpyDeviceToHost));
    float *logits = (float *)malloc_check((size_t)BT * Vp * sizeof(float));
    for (size_t i = 0; i < (size_t)BT * Vp; i++) logits[i] = __bfloat162float(logits_bf16[i]);
    float cpu_loss = F::cpu_forward(&cpu, inputs, targets);
    double logits_err = rel_l2(logits, cpu.core.act[F::logits_act], (size_t)BT * Vp);
    printf("  logits relative L2 error %.3e (bound %.3e)\n", logits_err, 4 * BF16_U);
    CHECK(logits_err <= 4 * BF16_U, "logits relative L2 error %.3e", logits_err);

    // loss and gradients: the GPU's first backward writes over NaN gradients and a NaN residual gradient
    cudaCheck(cudaMemset(gpu.grads, 0xFF, n * sizeof(float)));
    cudaCheck(cudaMemset(F::dresidual(&gpu), 0xFF, (size_t)BT * cfg.channels * sizeof(bf16)));
    const float gpu_loss = gpu_micro_steps(&gpu, inputs, targets, B, T, false);
    F::cpu_zero_grad(&cpu);
    F::cpu_backward(&cpu, GRAD_ACCUM);  // of micro-batch 0, whose forward gave the logits above
    cpu_loss += F::cpu_forward(&cpu, inputs + BT, targets + BT);
    F::cpu_backward(&cpu, GRAD_ACCUM);
    cpu_loss /= GRAD_ACCUM;
    printf("  loss gpu %.6f cpu %.6f (|diff| %.2e, bound %.2e)\n", gpu_loss, cpu_loss, fabsf(gpu_loss - cpu_loss), 4 * BF16_U * cpu_loss);
    CHECK(fabsf(gpu_loss - cpu_loss) <= 4 * BF16_U * cpu_loss, "loss gpu %f cpu %f", gpu_loss, cpu_loss);
    float *grads = (float *)malloc_check(n * sizeof(float)), *grads_zeroed = (float *)malloc_check(n * sizeof(float));
    cudaCheck(cudaDeviceSynchronize());
    cudaCheck(cudaMemcpy(grads, gpu.grads, n * sizeof(float), cudaMemcpyDeviceToHost));
    // the same micro-steps into zeroed gradients, both accumulating (a memset, as before the overwrite mode)
    cudaCheck(cudaMemset(gpu.grads, 0, n * sizeof(float)));
    gpu_micro_steps(&gpu, inputs, targets, B, T, true);
    cudaCheck(cudaMemcpy(grads_zeroed, gpu.grads, n * sizeof(float), cudaMemcpyDeviceToHost));
    size_t differ = 0, signed_zeros = 0;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&grads[i], &grads_zeroed[i], sizeof(float)) == 0) continue;
        differ++;
        signed_zeros += grads[i] == 0.0f && grads_zeroed[i] == 0.0f;
    }
    printf("  written vs zeroed + accumulated: %zu of %zu gradients differ, %zu of them zeros of another sign\n", differ, n, signed_zeros);
    CHECK(differ == signed_zeros, "%zu gradients written over NaN differ from those accumulated into zeros", differ - signed_zeros);
    double worst = 0.0;
    const ParamTable table = test_table<F>(&cfg);
    for (int i = 0; i < table.count; i++) {
        const ParamSpec *t = &table.specs[i];
        double e = rel_l2(grads + t->offset, cpu.core.grads + t->offset, t->size);
        printf("  grad %-9s relative L2 error %.3e\n", t->name, e);
        CHECK(e <= 12 * BF16_U, "gradient of %s: relative L2 error %.3e > %.3e", t->name, e, 12 * BF16_U);
        if (e > worst) worst = e;
    }
    printf("  worst gradient relative L2 error %.3e (bound %.3e)\n", worst, 12 * BF16_U);
    F::cpu_free(&cpu);
    model_free(&gpu);
    free(params); free(inputs); free(targets); free(logits_bf16); free(logits); free(grads); free(grads_zeroed);
}

static void test_gpt2_forward_backward_matches_cpu(void) { forward_backward_matches_cpu<Gpt2Test>(TEST_B, TEST_T, true, false); }
static void test_gpt2_short_sequences_match_cpu(void) { forward_backward_matches_cpu<Gpt2Test>(TEST_B * TEST_T / 16, 16, false, false); }
static void test_gpt2_portable_gelu_matches_cpu(void) { forward_backward_matches_cpu<Gpt2Test>(TEST_B, TEST_T, true, true); }
static void test_llama_forward_backward_matches_cpu(void) { forward_backward_matches_cpu<LlamaTest>(TEST_B, TEST_T, true, false); }
static void test_llama_short_sequences_match_cpu(void) { forward_backward_matches_cpu<LlamaTest>(TEST_B * TEST_T / 16, 16, false, false); }

// 20 AdamW steps (2 micro-batches each) on the GPU and the CPU from the same weights.
template <typename F>
static void training_tracks_cpu(void) {
    const typename F::Config cfg = F::config();
    size_t n;
    float *params = init_params<F>(&cfg, &n);
    const int BT = TEST_B * TEST_T;
    // four fixed batches, two per step: the loss must fall as the model memorizes them
    int *inputs = (int *)malloc_check(4 * BT * sizeof(int)), *targets = (int *)malloc_check(4 * BT * sizeof(int));
    random_tokens(inputs, targets, 4, cfg.vocab_size, 99);
    Model gpu;
    build_gpu<F>(&gpu, &cfg, params, 1);
    typename F::Cpu cpu;
    F::cpu_build(&cpu, &cfg, TEST_B, TEST_T);
    memcpy(cpu.core.params, params, n * sizeof(float));
    double worst = 0.0;
    float first = 0.0f, last = 0.0f;
    for (int s = 0; s < TRAIN_STEPS; s++) {
        const int off = (s % 2) * GRAD_ACCUM * BT;
        float gl = gpu_step(&gpu, inputs + off, targets + off, s + 1);
        F::cpu_zero_grad(&cpu);
        double cl = 0.0;
        for (int k = 0; k < GRAD_ACCUM; k++) {
            cl += F::cpu_forward(&cpu, inputs + off + k * BT, targets + off + k * BT);
            F::cpu_backward(&cpu, GRAD_ACCUM);
        }
        cl /= GRAD_ACCUM;
        F::cpu_update(&cpu, &TEST_OPT, TEST_LR, s + 1);
        double rel = fabs(gl - cl) / cl;
        if (rel > worst) worst = rel;
        if (s == 0) first = gl;
        last = gl;
        CHECK(isfinite(gl) && rel <= 8 * BF16_U, "step %d: loss gpu %f cpu %f (relative %.2e)", s, gl, cl, rel);
    }
    printf("  %d steps: gpu loss %.4f -> %.4f, worst relative difference to the cpu %.3e (bound %.3e)\n", TRAIN_STEPS, first, last,
           worst, 8 * BF16_U);
    CHECK(last < 0.8f * first, "the loss did not fall: %f -> %f", first, last);
    F::cpu_free(&cpu);
    model_free(&gpu);
    free(params); free(inputs); free(targets);
}

// Runs `steps` GPU steps from `gpu`'s current state, step numbers first_step.., batches alternating.
static void run_steps(Model *gpu, const int *inputs, const int *targets, int first_step, int steps, float *losses) {
    const int BT = TEST_B * TEST_T;
    for (int s = first_step; s < first_step + steps; s++) {
        const int off = (s % 2) * GRAD_ACCUM * BT;
        losses[s] = gpu_step(gpu, inputs + off, targets + off, s + 1);
    }
}

// Two runs from the same weights give the same bits; a run saved after 4 steps and resumed in a
// fresh model gives the same bits as the uninterrupted one.
template <typename F>
static void deterministic_and_resume(void) {
    const typename F::Config cfg = F::config();
    size_t n;
    float *params = init_params<F>(&cfg, &n);
    const int BT = TEST_B * TEST_T, steps = 8, saved_at = 4;
    int *inputs = (int *)malloc_check(4 * BT * sizeof(int)), *targets = (int *)malloc_check(4 * BT * sizeof(int));
    random_tokens(inputs, targets, 4, cfg.vocab_size, 5);
    float losses[3][8];
    float *master[3];
    for (int run = 0; run < 2; run++) {
        Model gpu;
        build_gpu<F>(&gpu, &cfg, params, 1);
        run_steps(&gpu, inputs, targets, 0, steps, losses[run]);
        master[run] = (float *)malloc_check(n * sizeof(float));
        model_get_master(&gpu, master[run]);
        model_free(&gpu);
    }
    CHECK(memcmp(losses[0], losses[1], sizeof(losses[0])) == 0, "two runs gave different losses");
    CHECK(memcmp(master[0], master[1], n * sizeof(float)) == 0, "two runs gave different master weights");

    char dir[256], model_path[512], state_path[512], err[1024];
    testing_tmpdir_create(dir, sizeof(dir), "test_model_gpu");
    snprintf(model_path, sizeof(model_path), "%s/model.bin", dir);
    snprintf(state_path, sizeof(state_path), "%s/state.bin", dir);
    TrainRunConfig run_cfg = {TEST_B, TEST_T, (uint64_t)GRAD_ACCUM * BT, 1, 0};
    {
        Model gpu;
        build_gpu<F>(&gpu, &cfg, params, 1);
        run_steps(&gpu, inputs, targets, 0, saved_at, losses[2]);
        TrainState st;
        memset(&st, 0, sizeof(st));
        st.step = saved_at;
        st.run = run_cfg;
        CHECK(model_checkpoint_write(F::family(), &gpu, model_path, state_path, &st, err, sizeof(err)) == 0, "checkpoint write: %s", err);
        model_free(&gpu);
    }
    {
        Model gpu;
        build_gpu<F>(&gpu, &cfg, params, 1);  // different weights in the model until the load overwrites them
        HostCheckpoint ck;
        int rc = model_checkpoint_read(F::family(), &cfg, n, model_path, state_path, &run_cfg, &ck, err, sizeof(err));
        CHECK(rc == 0, "checkpoint load: %s", err);
        CHECK(ck.state.step == (uint64_t)saved_at, "resumed at step %llu", (unsigned long long)ck.state.step);
        model_checkpoint_restore(&gpu, &ck);
        model_checkpoint_free(&ck);
        run_steps(&gpu, inputs, targets, saved_at, steps - saved_at, losses[2]);
        master[2] = (float *)malloc_check(n * sizeof(float));
        model_get_master(&gpu, master[2]);
        model_free(&gpu);
    }
    CHECK(memcmp(losses[0], losses[2], sizeof(losses[0])) == 0, "resumed run's losses differ from the uninterrupted run");
    CHECK(memcmp(master[0], master[2], n * sizeof(float)) == 0, "resumed run's master weights differ");
    printf("  losses of %d steps (run 1): %.5f .. %.5f; run 2 and the resumed run bit-identical\n", steps, losses[0][0], losses[0][steps - 1]);
    testing_tmpdir_remove(dir);
    for (int i = 0; i < 3; i++) free(master[i]);
    free(params); free(inputs); free(targets);
}

// Gradients of two micro-batches: forward A, backward A (writes), forward B, backward B (adds), against
// forward A in slot 0, forward B in slot 1, backward B (writes), backward A (adds).
template <typename F>
static void slots_interleaved(void) {
    const typename F::Config cfg = F::config();
    size_t n;
    float *params = init_params<F>(&cfg, &n);
    const int BT = TEST_B * TEST_T;
    const float dloss = 1.0f / (2 * BT);
    int *inputs = (int *)malloc_check(2 * BT * sizeof(int)), *targets = (int *)malloc_check(2 * BT * sizeof(int));
    random_tokens(inputs, targets, 2, cfg.vocab_size, 31);
    float *grads[2], loss[2];
    for (int order = 0; order < 2; order++) {
        Model gpu;
        build_gpu<F>(&gpu, &cfg, params, 2);
        if (order == 0) {
            for (int k = 0; k < 2; k++) {
                model_forward(&gpu, 0, inputs + k * BT, targets + k * BT, TEST_B, TEST_T, dloss);
                model_backward(&gpu, 0, k > 0);
            }
        } else {
            for (int k = 0; k < 2; k++) model_forward(&gpu, k, inputs + k * BT, targets + k * BT, TEST_B, TEST_T, dloss);
            model_backward(&gpu, 1, false);
            model_backward(&gpu, 0, true);
        }
        loss[order] = model_take_loss(&gpu);
        grads[order] = (float *)malloc_check(n * sizeof(float));
        cudaCheck(cudaMemcpy(grads[order], gpu.grads, n * sizeof(float), cudaMemcpyDeviceToHost));
        model_free(&gpu);
    }
    CHECK(memcmp(&loss[0], &loss[1], sizeof(float)) == 0, "loss %.8f sequential, %.8f interleaved", loss[0], loss[1]);
    const ParamTable table = test_table<F>(&cfg);
    int identical = 0;
    for (int i = 0; i < table.count; i++) {
        const ParamSpec *t = &table.specs[i];
        if (i == F::shared_gradient) {
            const double e = rel_l2(grads[1] + t->offset, grads[0] + t->offset, t->size);
            printf("  %s: relative L2 difference %.3e (bound 1e-6)\n", t->name, e);
            CHECK(e <= 1e-6, "%s gradient: relative L2 difference %.3e between the orders", t->name, e);
        } else {
            CHECK(memcmp(grads[0] + t->offset, grads[1] + t->offset, t->size * sizeof(float)) == 0, "gradient of %s differs between the orders",
                  t->name);
            identical++;
        }
    }
    printf("  loss %.6f in both orders; %d of %d gradient tensors bit-identical\n", loss[0], identical, table.count);
    for (int k = 0; k < 2; k++) free(grads[k]);
    free(params); free(inputs); free(targets);
}

static void test_gpt2_training_tracks_cpu(void) { training_tracks_cpu<Gpt2Test>(); }
static void test_gpt2_deterministic_and_resume(void) { deterministic_and_resume<Gpt2Test>(); }
static void test_gpt2_slots_interleaved(void) { slots_interleaved<Gpt2Test>(); }
static void test_llama_training_tracks_cpu(void) { training_tracks_cpu<LlamaTest>(); }
static void test_llama_deterministic_and_resume(void) { deterministic_and_resume<LlamaTest>(); }
static void test_llama_slots_interleaved(void) { slots_interleaved<LlamaTest>(); }

int main(void) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        SKIP_TEST(test_model_gpu, "no CUDA device");
        return testing_finish();
    }
    RUN_TEST(test_gpt2_forward_backward_matches_cpu);
    RUN_TEST(test_gpt2_short_sequences_match_cpu);
    RUN_TEST(test_gpt2_portable_gelu_matches_cpu);
    RUN_TEST(test_gpt2_training_tracks_cpu);
    RUN_TEST(test_gpt2_deterministic_and_resume);
    RUN_TEST(test_gpt2_slots_interleaved);
    RUN_TEST(test_llama_forward_backward_matches_cpu);
    RUN_TEST(test_llama_short_sequences_match_cpu);
    RUN_TEST(test_llama_training_tracks_cpu);
    RUN_TEST(test_llama_deterministic_and_resume);
    RUN_TEST(test_llama_slots_interleaved);
    return testing_finish();
}
