// Tests of the CPU reference GPT-2 (test/reference/gpt2_cpu.h and the shared layers of
// test/reference/layers_cpu.h): finite-difference checks of every layer's backward and of the whole
// model, thread-count independence, AdamW and clipping, and that a tiny model learns real text.
//
// Gradient-check method: test/gradcheck.h (central differences of fp32 functions with the objective
// summed in double; entry error relative, floored at FLOOR_FRAC = 1e-2 of the tensor's largest
// gradient, plus a directional check). Bounds: 1e-2 for single layers (h = 1e-2 on unit-scale
// inputs) and 2e-2 for the whole model (h = 1e-2).
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/lr_schedule.h"
#include "core/rng.h"
#include "dataloader/dataloader.h"
#include "gpt2_model.h"
#include "test/gradcheck.h"
#include "test/reference/gpt2_cpu.h"
#include "test/testing.h"

#define LAYER_TOL 1e-2
#define MODEL_TOL 2e-2
#define SAMPLES_PER_TENSOR 24

// ----------------------------------------------------------------------------
// Single layers. Each context holds the inputs, the output and the random upstream gradient w.

typedef struct {
    int B, T, C, V, maxT;
    int *inp;
    float *wte, *wpe, *out, *w;
} EncoderCase;

static double encoder_objective(void *p) {
    EncoderCase *c = (EncoderCase *)p;
    cpu_encoder_forward(c->out, c->inp, c->wte, c->wpe, c->B, c->T, c->C);
    return dot_double(c->out, c->w, (size_t)c->B * c->T * c->C);
}

static void test_encoder_backward(void) {
    Rng rng;
    rng_seed(&rng, 101);
    EncoderCase c = {3, 7, 12, 5, 9, NULL, NULL, NULL, NULL, NULL};  // V=5 tokens, so rows repeat
    size_t n = (size_t)c.B * c.T * c.C;
    c.inp = (int *)malloc_check((size_t)c.B * c.T * sizeof(int));
    for (int i = 0; i < c.B * c.T; i++) c.inp[i] = (int)rng_below(&rng, (uint64_t)c.V);
    c.wte = random_array(&rng, (size_t)c.V * c.C, 1.0f);
    c.wpe = random_array(&rng, (size_t)c.maxT * c.C, 1.0f);
    c.out = zero_array(n);
    c.w = random_array(&rng, n, 1.0f);
    float *dwte = zero_array((size_t)c.V * c.C), *dwpe = zero_array((size_t)c.maxT * c.C);
    cpu_encoder_backward(dwte, dwpe, c.w, c.inp, c.B, c.T, c.C);
    GradTarget t[] = {{"wte", c.wte, dwte, (size_t)c.V * c.C}, {"wpe", c.wpe, dwpe, (size_t)c.maxT * c.C}};
    double worst = check_gradients("encoder", encoder_objective, &c, t, 2, 1000, &rng);
    CHECK(worst < LAYER_TOL, "encoder backward: worst error %.3e >= %.1e", worst, LAYER_TOL);
    free(c.inp); free(c.wte); free(c.wpe); free(c.out); free(c.w); free(dwte); free(dwpe);
}

typedef struct {
    int N, C;
    float *inp, *weight, *bias, *out, *mean, *rstd, *w;
} LayernormCase;

static double layernorm_objective(void *p) {
    LayernormCase *c = (LayernormCase *)p;
    cpu_layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->weight, c->bias, c->N, c->C);
    return dot_double(c->out, c->w, (size_t)c->N * c->C);
}

static void test_layernorm_backward(void) {
    Rng rng;
    rng_seed(&rng, 102);
    LayernormCase c;
    c.N = 6;
    c.C = 24;
    size_t n = (size_t)c.N * c.C;
    c.inp = random_array(&rng, n, 1.0f);
    for (size_t i = 0; i < n; i++) c.inp[i] += 0.5f;  // a nonzero mean
    c.weight = random_array(&rng, (size_t)c.C, 1.0f);
    c.bias = random_array(&rng, (size_t)c.C, 1.0f);
    c.out = zero_array(n);
    c.mean = zero_array((size_t)c.N);
    c.rstd = zero_array((size_t)c.N);
    c.w = random_array(&rng, n, 1.0f);
    float *dinp = zero_array(n), *dweight = zero_array((size_t)c.C), *dbias = zero_array((size_t)c.C);
    layernorm_objective(&c);
    cpu_layernorm_backward(dinp, dweight, dbias, c.w, c.inp, c.weight, c.mean, c.rstd, c.N, c.C);
    GradTarget t[] = {{"inp", c.inp, dinp, n}, {"weight", c.weight, dweight, (size_t)c.C}, {"bias", c.bias, dbias, (size_t)c.C}};
    double worst = check_gradients("layernorm", layernorm_objective, &c, t, 3, 1000, &rng);
    CHECK(worst < LAYER_TOL, "layernorm backward: worst error %.3e >= %.1e", worst, LAYER_TOL);
    free(c.inp); free(c.weight); free(c.bias); free(c.out); free(c.mean); free(c.rstd); free(c.w);
    free(dinp); free(dweight); free(dbias);
}

typedef struct {
    int N, IC, OC;
    float *inp, *weight, *bias, *out, *w;
} MatmulCase;

static double matmul_objective(void *p) {
    MatmulCase *c = (MatmulCase *)p;
    cpu_matmul_forward(c->out, c->inp, c->weight, c->bias, c->N, c->IC, c->OC);
    return dot_double(c->out, c->w, (size_t)c->N * c->OC);
}

static void test_matmul_backward(void) {
    Rng rng;
    rng_seed(&rng, 103);
    // Sizes that are not multiples of the tiles (8 rows, 256 columns), and OC > one column tile.
    MatmulCase c;
    c.N = 11;
    c.IC = 19;
    c.OC = 300;
    c.inp = random_array(&rng, (size_t)c.N * c.IC, 1.0f);
    c.weight = random_array(&rng, (size_t)c.OC * c.IC, 1.0f);
    c.bias = random_array(&rng, (size_t)c.OC, 1.0f);
    c.out = zero_array((size_t)c.N * c.OC);
    c.w = random_array(&rng, (size_t)c.N * c.OC, 1.0f);
    float *dinp = zero_array((size_t)c.N * c.IC), *dweight = zero_array((size_t)c.OC * c.IC), *dbias = zero_array((size_t)c.OC);
    cpu_matmul_backward(dinp, dweight, dbias, c.w, c.inp, c.weight, c.N, c.IC, c.OC);
    GradTarget t[] = {{"inp", c.inp, dinp, (size_t)c.N * c.IC}, {"weight", c.weight, dweight, (size_t)c.OC * c.IC}, {"bias", c.bias, dbias, (size_t)c.OC}};
    double worst = check_gradients("matmul", matmul_objective, &c, t, 3, 400, &rng);
    CHECK(worst < LAYER_TOL, "matmul backward: worst error %.3e >= %.1e", worst, LAYER_TOL);
    // forward against a plain double dot product
    matmul_objective(&c);
    double max_err = 0.0;
    for (int n = 0; n < c.N; n++) {
        for (int o = 0; o < c.OC; o++) {
            double ref = c.bias[o] + dot_double(c.inp + (size_t)n * c.IC, c.weight + (size_t)o * c.IC, (size_t)c.IC);
            max_err = fmax(max_err, fabs(ref - c.out[(size_t)n * c.OC + o]));
        }
    }
    CHECK(max_err < 1e-4, "matmul forward differs from a double dot product by %.3e (bound 1e-4 for |terms| ~ 1, K = 19)", max_err);
    free(c.inp); free(c.weight); free(c.bias); free(c.out); free(c.w); free(dinp); free(dweight); free(dbias);
}

typedef struct {
    int B, T, C, NH;
    float *qkv, *out, *att, *w;
} AttentionCase;

static double attention_objective(void *p) {
    AttentionCase *c = (AttentionCase *)p;
    cpu_attention_forward(c->out, c->att, c->qkv, c->B, c->T, c->C, c->NH);
    return dot_double(c->out, c->w, (size_t)c->B * c->T * c->C);
}

static void test_attention_backward(void) {
    Rng rng;
    rng_seed(&rng, 104);
    AttentionCase c;
    c.B = 2;
    c.T = 7;
    c.C = 12;
    c.NH = 3;
    size_t nqkv = (size_t)c.B * c.T * 3 * c.C, nout = (size_t)c.B * c.T * c.C;
    c.qkv = random_array(&rng, nqkv, 1.0f);
    c.out = zero_array(nout);
    c.att = zero_array((size_t)c.B * c.NH * c.T * c.T);
    c.w = random_array(&rng, nout, 1.0f);
    float *dqkv = zero_array(nqkv);
    attention_objective(&c);
    cpu_attention_backward(dqkv, c.w, c.qkv, c.att, c.B, c.T, c.C, c.NH);
    GradTarget t[] = {{"qkv", c.qkv, dqkv, nqkv}};
    double worst = check_gradients("attention", attention_objective, &c, t, 1, 1000, &rng);
    CHECK(worst < LAYER_TOL, "attention backward: worst error %.3e >= %.1e", worst, LAYER_TOL);
    attention_objective(&c);  // outputs of the unperturbed inputs
    // causality: the rows of att sum to 1 and vanish above the diagonal
    double worst_row = 0.0;
    int above = 0;
    for (int r = 0; r < c.B * c.NH * c.T; r++) {
        int t = r % c.T;
        double s = 0.0;
        for (int t2 = 0; t2 < c.T; t2++) {
            s += c.att[(size_t)r * c.T + t2];
            if (t2 > t && c.att[(size_t)r * c.T + t2] != 0.0f) above++;
        }
        worst_row = fmax(worst_row, fabs(s - 1.0));
    }
    CHECK(worst_row < 1e-6 && above == 0, "attention rows: worst |sum - 1| = %.3e, %d nonzero entries above the diagonal", worst_row, above);
    free(c.qkv); free(c.out); free(c.att); free(c.w); free(dqkv);
}

typedef struct {
    size_t n;
    float *inp, *out, *w;
} GeluCase;

static double gelu_objective(void *p) {
    GeluCase *c = (GeluCase *)p;
    cpu_gelu_forward(c->out, c->inp, c->n);
    return dot_double(c->out, c->w, c->n);
}

static void test_gelu_backward(void) {
    Rng rng;
    rng_seed(&rng, 105);
    GeluCase c;
    c.n = 200;
    c.inp = random_array(&rng, c.n, 2.0f);
    c.out = zero_array(c.n);
    c.w = random_array(&rng, c.n, 1.0f);
    float *dinp = zero_array(c.n);
    cpu_gelu_backward(dinp, c.inp, c.w, c.n);
    GradTarget t[] = {{"inp", c.inp, dinp, c.n}};
    double worst = check_gradients("gelu", gelu_objective, &c, t, 1, 1000, &rng);
    CHECK(worst < LAYER_TOL, "gelu backward: worst error %.3e >= %.1e", worst, LAYER_TOL);
    free(c.inp); free(c.out); free(c.w); free(dinp);
}

typedef struct {
    size_t n;
    float *a, *b, *out, *w;
} ResidualCase;

static double residual_objective(void *p) {
    ResidualCase *c = (ResidualCase *)p;
    cpu_residual_forward(c->out, c->a, c->b, c->n);
    return dot_double(c->out, c->w, c->n);
}

static void test_residual_backward(void) {
    Rng rng;
    rng_seed(&rng, 106);
    ResidualCase c;
    c.n = 100;
    c.a = random_array(&rng, c.n, 1.0f);
    c.b = random_array(&rng, c.n, 1.0f);
    c.out = zero_array(c.n);
    c.w = random_array(&rng, c.n, 1.0f);
    float *da = zero_array(c.n), *db = zero_array(c.n);
    cpu_residual_backward(da, db, c.w, c.n);
    GradTarget t[] = {{"a", c.a, da, c.n}, {"b", c.b, db, c.n}};
    double worst = check_gradients("residual", residual_objective, &c, t, 2, 1000, &rng);
    CHECK(worst < LAYER_TOL, "residual backward: worst error %.3e >= %.1e", worst, LAYER_TOL);
    free(c.a); free(c.b); free(c.out); free(c.w); free(da); free(db);
}

typedef struct {
    int N, V, Vp;
    int *targets;
    float *logits, *probs, *losses, *w;
} SoftmaxCase;

static double softmax_objective(void *p) {
    SoftmaxCase *c = (SoftmaxCase *)p;
    cpu_softmax_crossentropy_forward(c->losses, c->probs, c->logits, c->targets, c->N, c->V, c->Vp);
    return dot_double(c->losses, c->w, (size_t)c->N);
}

static void test_softmax_crossentropy_backward(void) {
    Rng rng;
    rng_seed(&rng, 107);
    SoftmaxCase c;
    c.N = 5;
    c.V = 29;
    c.Vp = 32;  // 3 padded columns that must get no probability and no gradient
    size_t n = (size_t)c.N * c.Vp;
    c.targets = (int *)malloc_check((size_t)c.N * sizeof(int));
    for (int i = 0; i < c.N; i++) c.targets[i] = (int)rng_below(&rng, (uint64_t)c.V);
    c.logits = random_array(&rng, n, 2.0f);
    c.probs = zero_array(n);
    c.losses = zero_array((size_t)c.N);
    c.w = random_array(&rng, (size_t)c.N, 1.0f);
    float *dlogits = zero_array(n);
    softmax_objective(&c);
    cpu_softmax_crossentropy_backward(dlogits, c.w, c.probs, c.targets, c.N, c.V, c.Vp);
    GradTarget t[] = {{"logits", c.logits, dlogits, n}};
    double worst = check_gradients("softmax-ce", softmax_objective, &c, t, 1, 1000, &rng);
    CHECK(worst < LAYER_TOL, "softmax-crossentropy backward: worst error %.3e >= %.1e", worst, LAYER_TOL);
    softmax_objective(&c);  // outputs of the unperturbed logits
    // the loss against a direct double log-sum-exp, and the padded columns
    double max_err = 0.0;
    int padded_nonzero = 0;
    for (int r = 0; r < c.N; r++) {
        const float *z = c.logits + (size_t)r * c.Vp;
        double s = 0.0;
        for (int i = 0; i < c.V; i++) s += exp((double)z[i]);
        max_err = fmax(max_err, fabs((log(s) - z[c.targets[r]]) - c.losses[r]));
        for (int i = c.V; i < c.Vp; i++) padded_nonzero += c.probs[(size_t)r * c.Vp + i] != 0.0f || dlogits[(size_t)r * c.Vp + i] != 0.0f;
    }
    CHECK(max_err < 1e-5, "cross-entropy differs from a double log-sum-exp by %.3e (bound 1e-5)", max_err);
    CHECK(padded_nonzero == 0, "%d padded probabilities/gradients are nonzero", padded_nonzero);
    free(c.targets); free(c.logits); free(c.probs); free(c.losses); free(c.w); free(dlogits);
}

// ----------------------------------------------------------------------------
// Whole model

// A tiny configuration with a padded vocabulary and maxT > T (so some rows get no gradient).
static GPT2Config tiny_config(void) { return gpt2_config_make(8, 37, 40, 2, 2, 8); }

typedef struct {
    GPT2Cpu *model;
    const int *inputs, *targets;
} ModelCase;

// Mean cross-entropy, summed in double from the per-token fp32 losses.
static double model_objective(void *p) {
    ModelCase *c = (ModelCase *)p;
    gpt2_cpu_forward(c->model, c->inputs, c->targets);
    int BT = c->model->core.B * c->model->core.T;
    double s = 0.0;
    for (int i = 0; i < BT; i++) s += c->model->core.act[ACT_LOSSES][i];
    return s / BT;
}

static void test_model_gradients(void) {
    GPT2Config cfg = tiny_config();
    int B = 2, T = 6;
    GPT2Cpu model;
    gpt2_cpu_build(&model, &cfg, B, T);
    Rng rng;
    rng_seed(&rng, 201);
    // Weights of scale 0.3 (LN gains 1 + 0.3 N) so every layer is far from linear and gradients are
    // large; the padded rows of wte stay zero, like a real model's.
    rng_fill_normal(&rng, model.core.params, model.core.table.num_parameters, 0.0f, 0.3f);
    for (int i = GPT2_LN1W; i <= GPT2_LNFW; i++) {
        if (i == GPT2_LN1W || i == GPT2_LN2W || i == GPT2_LNFW) {
            for (size_t j = 0; j < model.core.table.specs[i].size; j++) model.core.param[i][j] += 1.0f;
        }
    }
    memset(model.core.param[GPT2_WTE] + (size_t)cfg.vocab_size * cfg.channels, 0,
           (size_t)(cfg.padded_vocab_size - cfg.vocab_size) * cfg.channels * sizeof(float));
    int *inputs = (int *)malloc_check((size_t)B * T * sizeof(int)), *targets = (int *)malloc_check((size_t)B * T * sizeof(int));
    random_tokens(&rng, inputs, B * T, cfg.vocab_size);
    random_tokens(&rng, targets, B * T, cfg.vocab_size);
    gpt2_cpu_forward(&model, inputs, targets);
    gpt2_cpu_zero_grad(&model);
    gpt2_cpu_backward(&model, 1);
    float *grads = (float *)malloc_check(model.core.table.num_parameters * sizeof(float));
    memcpy(grads, model.core.grads, model.core.table.num_parameters * sizeof(float));
    GradTarget t[GPT2_NUM_PARAM_TENSORS];
    param_table_targets(t, &model.core.table, model.core.params, grads);
    ModelCase c = {&model, inputs, targets};
    double worst = check_gradients("model", model_objective, &c, t, GPT2_NUM_PARAM_TENSORS, SAMPLES_PER_TENSOR, &rng);
    CHECK(worst < MODEL_TOL, "model gradients: worst error %.3e >= %.1e", worst, MODEL_TOL);
    // rows that no token or position touches get exactly zero gradient
    int stray = 0;
    for (size_t j = (size_t)cfg.vocab_size * cfg.channels; j < model.core.table.specs[GPT2_WTE].size; j++) stray += grads[j] != 0.0f;
    for (size_t j = (size_t)T * cfg.channels; j < model.core.table.specs[GPT2_WPE].size; j++) stray += grads[model.core.table.specs[GPT2_WPE].offset + j] != 0.0f;
    CHECK(stray == 0, "%d gradient entries of padded vocabulary rows or unused positions are nonzero", stray);
    free(grads);
    free(inputs);
    free(targets);
    gpt2_cpu_free(&model);
}

// Loss, gradients and updated parameters are bit-identical for 1 and 3 OpenMP threads.
static void test_thread_count_independence(void) {
    GPT2Config cfg = {16, 50, 64, 2, 2, 16};
    int B = 3, T = 16;
    AdamWConfig opt = {0.9f, 0.95f, 1e-8f, 0.1f, 1.0f};
    Rng rng;
    rng_seed(&rng, 301);
    int *inputs = (int *)malloc_check((size_t)B * T * sizeof(int)), *targets = (int *)malloc_check((size_t)B * T * sizeof(int));
    random_tokens(&rng, inputs, B * T, cfg.vocab_size);
    random_tokens(&rng, targets, B * T, cfg.vocab_size);
    float losses[2];
    float *grads[2], *params[2];
    int threads[2] = {1, 3};
    int saved_threads = omp_get_max_threads();
    for (int r = 0; r < 2; r++) {
        omp_set_num_threads(threads[r]);
        GPT2Cpu model;
        gpt2_cpu_build(&model, &cfg, B, T);
        param_table_init(&model.core.table, model.core.params, 7);
        losses[r] = gpt2_cpu_forward(&model, inputs, targets);
        gpt2_cpu_zero_grad(&model);
        gpt2_cpu_backward(&model, 1);
        grads[r] = (float *)malloc_check(model.core.table.num_parameters * sizeof(float));
        memcpy(grads[r], model.core.grads, model.core.table.num_parameters * sizeof(float));
        gpt2_cpu_update(&model, &opt, 1e-3f, 1);
        params[r] = (float *)malloc_check(model.core.table.num_parameters * sizeof(float));
        memcpy(params[r], model.core.params, model.core.table.num_parameters * sizeof(float));
        gpt2_cpu_free(&model);
    }
    omp_set_num_threads(saved_threads);
    ParamTable table;
    char err[256];
    CHECK(gpt2_param_table(&cfg, &table, err, sizeof(err)) == 0, "%s", err);
    CHECK(memcmp(&losses[0], &losses[1], sizeof(float)) == 0, "loss differs: %.9g vs %.9g", losses[0], losses[1]);
    CHECK(memcmp(grads[0], grads[1], table.num_parameters * sizeof(float)) == 0, "gradients differ between 1 and 3 threads");
    CHECK(memcmp(params[0], params[1], table.num_parameters * sizeof(float)) == 0, "updated parameters differ between 1 and 3 threads");
    for (int r = 0; r < 2; r++) {
        free(grads[r]);
        free(params[r]);
    }
    free(inputs);
    free(targets);
}

// AdamW against the formula evaluated in double, gradient clipping, and decay on 2-D weights only.
static void test_adamw_and_clipping(void) {
    Rng rng;
    rng_seed(&rng, 401);
    size_t n = 1000;
    float *p = random_array(&rng, n, 1.0f), *g = random_array(&rng, n, 1.0f);
    float *m = random_array(&rng, n, 0.1f), *v = zero_array(n);
    for (size_t i = 0; i < n; i++) v[i] = 0.01f * rng_uniform(&rng);
    float *p0 = (float *)malloc_check(n * sizeof(float)), *m0 = (float *)malloc_check(n * sizeof(float)), *v0 = (float *)malloc_check(n * sizeof(float));
    memcpy(p0, p, n * sizeof(float));
    memcpy(m0, m, n * sizeof(float));
    memcpy(v0, v, n * sizeof(float));
    float lr = 3e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, scale = 0.5f;
    int t = 5;
    cpu_adamw_update(p, g, m, v, n, lr, b1, b2, eps, wd, scale, t);
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double gi = (double)g[i] * scale;
        double mi = b1 * (double)m0[i] + (1.0 - b1) * gi, vi = b2 * (double)v0[i] + (1.0 - b2) * gi * gi;
        double upd = (mi / (1.0 - pow(b1, t))) / (sqrt(vi / (1.0 - pow(b2, t))) + eps) + wd * (double)p0[i];
        double expect = p0[i] - lr * upd;
        // the fp32 result carries its own rounding (half an ulp of p) plus a few ulps of the update
        double ulp = (double)nextafterf(fabsf(p[i]), INFINITY) - fabsf(p[i]);
        worst = fmax(worst, (fabs(expect - p[i]) - ulp) / (lr * fabs(upd)));
    }
    CHECK(worst < 1e-5, "AdamW update differs from the double formula by %.3e of lr*|update| beyond one ulp of the parameter (bound 1e-5)", worst);
    free(p); free(g); free(m); free(v); free(p0); free(m0); free(v0);

    // Global norm against a plain double sum.
    GPT2Config cfg = tiny_config();
    GPT2Cpu model;
    gpt2_cpu_build(&model, &cfg, 2, 4);
    param_table_init(&model.core.table, model.core.params, 3);
    size_t np = model.core.table.num_parameters;
    rng_fill_normal(&rng, model.core.grads, np, 0.0f, 1.0f);
    double sq = 0.0;
    for (size_t i = 0; i < np; i++) sq += (double)model.core.grads[i] * model.core.grads[i];
    float norm = cpu_global_norm(model.core.grads, np);
    CHECK(fabs(norm - sqrt(sq)) <= 1e-6 * sqrt(sq), "global norm %.9g vs %.9g in double", norm, sqrt(sq));
    // Zero gradients (and zero moments): the step is pure weight decay, on the 2-D weights only.
    memset(model.core.grads, 0, np * sizeof(float));
    float *before = (float *)malloc_check(np * sizeof(float));
    memcpy(before, model.core.params, np * sizeof(float));
    AdamWConfig opt = {0.9f, 0.95f, 1e-8f, 0.1f, 1.0f};
    gpt2_cpu_update(&model, &opt, 0.5f, 1);
    int wrong = 0;
    for (int i = 0; i < GPT2_NUM_PARAM_TENSORS; i++) {
        const ParamSpec *pt = &model.core.table.specs[i];
        // the 2-D weights: the embeddings and the four linear weights
        int matrix = i == GPT2_WTE || i == GPT2_WPE || i == GPT2_QKVW || i == GPT2_ATTPROJW || i == GPT2_FCW || i == GPT2_FCPROJW;
        CHECK(pt->decay == matrix, "%s: decay flag %d", pt->name, pt->decay);
        float wd = matrix ? 0.1f : 0.0f;
        for (size_t j = 0; j < pt->size; j++) wrong += model.core.params[pt->offset + j] != before[pt->offset + j] - 0.5f * (wd * before[pt->offset + j]);
    }
    CHECK(wrong == 0, "%d parameters wrong after a decay-only step (decay must hit exactly the 2-D weights)", wrong);
    // Clipping: the update returns the unclipped norm, and the first moments (zero before the
    // step) see the gradient scaled by clip/norm: m = (1 - beta1) * g * clip / norm.
    rng_fill_normal(&rng, model.core.grads, np, 0.0f, 1.0f);
    norm = cpu_global_norm(model.core.grads, np);
    memset(model.core.m, 0, np * sizeof(float));
    AdamWConfig clip = {0.9f, 0.95f, 1e-8f, 0.0f, 0.25f};
    float returned = gpt2_cpu_update(&model, &clip, 1e-3f, 1);
    CHECK(returned == norm, "update returned norm %.9g, expected the unclipped %.9g", returned, norm);
    double worst_m = 0.0;
    for (size_t i = 0; i < np; i++) {
        double expect = 0.1 * model.core.grads[i] * (0.25 / norm);
        worst_m = fmax(worst_m, fabs(model.core.m[i] - expect) / fmax(fabs(expect), 1e-30));
    }
    CHECK(worst_m < 1e-6, "first moments after a clipped step differ from 0.1 * g * clip/norm by %.3e relative (bound 1e-6)", worst_m);
    free(before);
    gpt2_cpu_free(&model);
}

static void test_lr_schedule(void) {
    LRSchedule s = {6e-4f, 10, 110, 0.1f};
    char err[256];
    CHECK(lr_schedule_validate(&s, err, sizeof(err)) == 0, "valid schedule rejected: %s", err);
    CHECK(fabsf(lr_schedule_at(&s, 0) - 6e-5f) < 1e-10f, "warmup step 0: %g", lr_schedule_at(&s, 0));
    CHECK(lr_schedule_at(&s, 9) == 6e-4f, "end of warmup: %g", lr_schedule_at(&s, 9));
    CHECK(lr_schedule_at(&s, 10) == 6e-4f, "first decay step: %g", lr_schedule_at(&s, 10));
    CHECK(fabsf(lr_schedule_at(&s, 60) - 0.5f * (6e-4f + 6e-5f)) < 1e-9f, "halfway: %g", lr_schedule_at(&s, 60));
    CHECK(fabsf(lr_schedule_at(&s, 110) - 6e-5f) < 1e-10f && fabsf(lr_schedule_at(&s, 500) - 6e-5f) < 1e-10f, "end: %g", lr_schedule_at(&s, 110));
    for (int i = 10; i < 110; i++) CHECK(lr_schedule_at(&s, i + 1) <= lr_schedule_at(&s, i), "not monotone at %d", i);
    LRSchedule bad = {6e-4f, 200, 100, 0.1f};
    CHECK(lr_schedule_validate(&bad, err, sizeof(err)) != 0 && strstr(err, "warmup") != NULL, "warmup > steps accepted (%s)", err);
    LRSchedule bad2 = {6e-4f, 0, 100, 1.5f};
    CHECK(lr_schedule_validate(&bad2, err, sizeof(err)) != 0 && strstr(err, "fraction") != NULL, "final fraction 1.5 accepted (%s)", err);
}

// The GPT-2 parameter table: llm.c's 124M count, offsets contiguous, init statistics.
static void test_param_table_and_init(void) {
    GPT2Config cfg;
    char err[256];
    CHECK(gpt2_config_preset("d12", &cfg, err, sizeof(err)) == 0, "d12: %s", err);
    ParamTable table;
    CHECK(gpt2_param_table(&cfg, &table, err, sizeof(err)) == 0, "%s", err);
    CHECK(table.num_parameters == 124475904, "d12 has %zu parameters, llm.c's gpt2_124M has 124475904", table.num_parameters);
    size_t expect_offset = 0;
    for (int i = 0; i < GPT2_NUM_PARAM_TENSORS; i++) {
        CHECK(table.specs[i].offset == expect_offset, "%s offset", table.specs[i].name);
        expect_offset += table.specs[i].size;
    }
    CHECK(gpt2_config_preset("d48", &cfg, err, sizeof(err)) == 0, "d48: %s", err);
    CHECK(gpt2_param_table(&cfg, &table, err, sizeof(err)) == 0, "%s", err);
    CHECK(table.num_parameters == 1557686400, "d48 has %zu parameters, expected 1557686400", table.num_parameters);
    CHECK(gpt2_config_preset("d13", &cfg, err, sizeof(err)) != 0 && strstr(err, "d13") != NULL, "unknown preset accepted (%s)", err);

    GPT2Config small = {64, 1000, 1024, 4, 4, 64};
    CHECK(gpt2_param_table(&small, &table, err, sizeof(err)) == 0, "%s", err);
    float *p = (float *)malloc_check(table.num_parameters * sizeof(float));
    float *q = (float *)malloc_check(table.num_parameters * sizeof(float));
    param_table_init(&table, p, 42);
    param_table_init(&table, q, 42);
    CHECK(memcmp(p, q, table.num_parameters * sizeof(float)) == 0, "init is not deterministic");
    param_table_init(&table, q, 43);
    CHECK(memcmp(p, q, table.num_parameters * sizeof(float)) != 0, "seeds 42 and 43 give the same init");
    for (int i = 0; i < GPT2_NUM_PARAM_TENSORS; i++) {
        const ParamSpec *t = &table.specs[i];
        size_t n = i == GPT2_WTE ? (size_t)small.vocab_size * small.channels : t->size;
        double s = 0.0, s2 = 0.0;
        for (size_t j = 0; j < n; j++) {
            s += p[t->offset + j];
            s2 += (double)p[t->offset + j] * p[t->offset + j];
        }
        double mean = s / n, std = sqrt(s2 / n - mean * mean);
        if (t->init == PARAM_INIT_ONE) CHECK(mean == 1.0 && std == 0.0, "%s: LN gain not 1", t->name);
        if (t->init == PARAM_INIT_ZERO) CHECK(mean == 0.0 && std == 0.0, "%s: bias not 0", t->name);
        // GPT-2's rule: the two projections into the residual stream get 0.02 / sqrt(2L), other weights 0.02
        int resid = i == GPT2_ATTPROJW || i == GPT2_FCPROJW;
        double want = t->init != PARAM_INIT_NORMAL ? 0.0 : resid ? 0.02 / sqrt(2.0 * small.num_layers) : 0.02;
        if (want > 0.0) {
            // sample std of n >= 4096 normals: relative standard error <= 1/sqrt(2n) ~ 1.1%; allow 5%
            CHECK(fabs(std / want - 1.0) < 0.05 && fabs(mean) < 5.0 * want / sqrt((double)n), "%s: mean %.3g std %.4g, want std %.4g", t->name, mean, std, want);
        }
    }
    int pad_nonzero = 0;
    for (size_t j = (size_t)small.vocab_size * small.channels; j < table.specs[GPT2_WTE].size; j++) pad_nonzero += p[j] != 0.0f;
    CHECK(pad_nonzero == 0, "%d padded wte entries nonzero", pad_nonzero);
    free(p);
    free(q);
}

#define TINYSHAKESPEARE_TRAIN "build/data/tinyshakespeare/tiny_shakespeare_train.bin"

// A tiny GPT-2 (L=2, C=64, NH=4, T=32, B=4, real GPT-2 vocabulary) trained 20 steps (peak lr
// 6e-3) on tinyshakespeare: the mean loss of the last 5 steps must be below 0.8x the first step's
// loss (which starts near ln(50257) = 10.8; it reaches about 7.5 at step 19).
static void test_loss_falls_on_real_text(void) {
    GPT2Config cfg = {64, 50257, 50304, 2, 4, 64};
    int B = 4, T = 32, steps = 20;
    char err[512];
    DataLoader dl;
    if (dataloader_init(&dl, TINYSHAKESPEARE_TRAIN, B, T, 0, 1, cfg.vocab_size, 1, 1337, err, sizeof(err)) != 0) {
        CHECK(0, "%s", err);
        return;
    }
    GPT2Cpu model;
    gpt2_cpu_build(&model, &cfg, B, T);
    param_table_init(&model.core.table, model.core.params, 1337);
    AdamWConfig opt = {0.9f, 0.95f, 1e-8f, 0.0f, 1.0f};
    LRSchedule sched = {6e-3f, 3, steps, 0.1f};
    float first = 0.0f, last5 = 0.0f;
    for (int step = 0; step < steps; step++) {
        if (dataloader_next_batch(&dl, err, sizeof(err)) != 0) {
            CHECK(0, "%s", err);
            break;
        }
        float loss = gpt2_cpu_forward(&model, dl.inputs, dl.targets);
        gpt2_cpu_zero_grad(&model);
        gpt2_cpu_backward(&model, 1);
        gpt2_cpu_update(&model, &opt, lr_schedule_at(&sched, step), step + 1);
        if (step == 0) first = loss;
        if (step >= steps - 5) last5 += loss / 5.0f;
        if (step % 5 == 0 || step == steps - 1) printf("  step %2d loss %.4f\n", step, loss);
    }
    CHECK(fabsf(first - logf(50257.0f)) < 0.5f, "initial loss %.4f is not near ln(50257) = 10.82", first);
    CHECK(last5 < 0.8f * first, "loss did not fall: first %.4f, mean of the last 5 steps %.4f (want < %.4f)", first, last5, 0.8f * first);
    gpt2_cpu_free(&model);
    dataloader_free(&dl);
}

int main(void) {
    RUN_TEST(test_param_table_and_init);
    RUN_TEST(test_lr_schedule);
    RUN_TEST(test_encoder_backward);
    RUN_TEST(test_layernorm_backward);
    RUN_TEST(test_matmul_backward);
    RUN_TEST(test_attention_backward);
    RUN_TEST(test_gelu_backward);
    RUN_TEST(test_residual_backward);
    RUN_TEST(test_softmax_crossentropy_backward);
    RUN_TEST(test_model_gradients);
    RUN_TEST(test_thread_count_independence);
    RUN_TEST(test_adamw_and_clipping);
    FILE *data = fopen(TINYSHAKESPEARE_TRAIN, "rb");
    if (data != NULL) {
        fclose(data);
        RUN_TEST(test_loss_falls_on_real_text);
    } else {
        SKIP_TEST(test_loss_falls_on_real_text, TINYSHAKESPEARE_TRAIN " not found (run `make test-data`)");
    }
    return testing_finish();
}
