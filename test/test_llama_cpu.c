// Tests of the CPU reference Llama (test/reference/llama_cpu.h), its new layers (RMSNorm, RoPE,
// grouped-query attention, SwiGLU in test/reference/layers_cpu.h) and llama_model.h (configuration,
// presets, parameter table, tensor-parallel checks, model file, refusal of the other family's files):
// finite-difference checks of every new layer's backward and of every parameter tensor of a tiny
// Llama, the RoPE convention against hand-computed values, GQA against the independent double-precision
// multi-head reference (attention_cpu.h) with K/V heads repeated, thread-count independence, weight
// decay on the flagged tensors only, and that AdamW lowers the loss on a repeated batch.
//
// Gradient-check method and bounds as test_gpt2_cpu.c (test/gradcheck.h): central differences of fp32
// functions with the objective summed in double; 1e-2 for single layers, 2e-2 for the whole model.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  // nftw, mkdtemp (test/testing_files.h)
#endif
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/param_table.h"
#include "core/rng.h"
#include "gpt2_model.h"
#include "llama_model.h"
#include "test/gradcheck.h"
#include "test/reference/attention_cpu.h"
#include "test/reference/llama_cpu.h"
#include "test/testing.h"
#include "test/testing_files.h"

#define LAYER_TOL 1e-2
#define MODEL_TOL 2e-2
#define SAMPLES_PER_TENSOR 24

static char tmp_dir[256];

// The tiny Llama of the model tests: 2 layers, C 32, 4 query heads sharing 2 KV heads (HS 8), FFN 48,
// vocabulary 67 padded to 72, maxT 16 > T so RoPE tables are cut, rope_theta 10000 so that at T = 8
// the four frequencies (1, 0.1, 0.01, 0.001 rad per position) all turn.
static LlamaConfig tiny_config(void) { return llama_config_make(16, 67, 72, 2, 4, 2, 32, 48, 10000.0f, 1e-5f); }

// ----------------------------------------------------------------------------
// Configuration, presets and the parameter table

// The message of validating cfg ("" when it is valid).
static const char *validate_message(LlamaConfig cfg) {
    static char err[256];
    err[0] = '\0';
    if (llama_config_validate(&cfg, err, sizeof(err)) == 0) err[0] = '\0';
    return err;
}

static void test_config_validation(void) {
    LlamaConfig ok = tiny_config(), c;
    CHECK(strcmp(validate_message(ok), "") == 0, "tiny config rejected: %s", validate_message(ok));
    const char *presets[3] = {"l125m", "l350m", "l1b"};
    char err[256];
    for (int i = 0; i < 3; i++) {
        CHECK(llama_config_preset(presets[i], &c, err, sizeof(err)) == 0, "%s: %s", presets[i], err);
        CHECK(strcmp(validate_message(c), "") == 0, "%s rejected: %s", presets[i], validate_message(c));
    }
    CHECK(llama_config_preset("l7b", &c, err, sizeof(err)) != 0 && strcmp(err, "unknown Llama model 'l7b' (expected l125m, l350m or l1b)") == 0,
          "unknown preset: %s", err);
    // pinned messages
    struct { LlamaConfig cfg; const char *message; } cases[] = {
        {llama_config_make(16, 67, 72, 2, 12, 5, 96, 48, 1e4f, 1e-5f), "num_heads 12 must be a multiple of num_kv_heads 5 (grouped-query attention)"},
        {llama_config_make(16, 67, 72, 2, 4, 8, 32, 48, 1e4f, 1e-5f), "num_heads 4 must be a multiple of num_kv_heads 8 (grouped-query attention)"},
        {llama_config_make(16, 67, 72, 2, 12, 4, 100, 48, 1e4f, 1e-5f), "channels 100 must be a multiple of num_heads 12 (channels = num_heads * head size)"},
        {llama_config_make(16, 67, 72, 2, 4, 2, 36, 48, 1e4f, 1e-5f), "head size 9 (channels 36 / num_heads 4) must be even for RoPE"},
        {llama_config_make(16, 67, 72, 2, 4, 2, 1 << 20, 48, 1e4f, 1e-5f), "channels 1048576 is outside 1..65536"},
        {llama_config_make(16, 67, 72, 2, 4, 2, 32, 2147483647, 1e4f, 1e-5f), "ffn_hidden 2147483647 is outside 1..262144"},
        {llama_config_make(16, -67, 72, 2, 4, 2, 32, 48, 1e4f, 1e-5f), "vocab_size -67 is outside 1..16777216"},
        {llama_config_make(16, 67, 72, 0, 4, 2, 32, 48, 1e4f, 1e-5f), "num_layers 0 is outside 1..4096"},
        {llama_config_make(16, 67, 72, 2, 4, 0, 32, 48, 1e4f, 1e-5f), "num_kv_heads 0 is outside 1..65536"},
        {llama_config_make(2000000, 67, 72, 2, 4, 2, 32, 48, 1e4f, 1e-5f), "max_seq_len 2000000 is outside 1..1048576"},
        {llama_config_make(16, 67, 64, 2, 4, 2, 32, 48, 1e4f, 1e-5f), "padded_vocab_size 64 is smaller than vocab_size 67"},
        {llama_config_make(16, 67, 72, 2, 4, 2, 32, 48, NAN, 1e-5f), "rope_theta nan is outside (1, 1e+12]"},
        {llama_config_make(16, 67, 72, 2, 4, 2, 32, 48, 1.0f, 1e-5f), "rope_theta 1 is outside (1, 1e+12]"},
        {llama_config_make(16, 67, 72, 2, 4, 2, 32, 48, INFINITY, 1e-5f), "rope_theta inf is outside (1, 1e+12]"},
        {llama_config_make(16, 67, 72, 2, 4, 2, 32, 48, 1e4f, 0.0f), "norm_eps 0 is outside (0, 1)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *got = validate_message(cases[i].cfg);
        CHECK(strcmp(got, cases[i].message) == 0, "case %zu: got '%s', want '%s'", i, got, cases[i].message);
    }
    // Every field inside its bounds but a model too large for the table: refused by the table, not overflowed.
    LlamaConfig huge = llama_config_make(1024, 1 << 24, 1 << 24, 4096, 1024, 1024, 1 << 16, 1 << 18, 1e4f, 1e-5f);
    CHECK(strcmp(validate_message(huge), "") == 0, "huge config should pass the field checks: %s", validate_message(huge));
    ParamTable t;
    CHECK(llama_param_table(&huge, &t, err, sizeof(err)) != 0 && strstr(err, "1099511627776") != NULL, "huge table: %s", err);
    // The table validates the configuration first.
    LlamaConfig bad = llama_config_make(16, 67, 72, 2, 12, 5, 96, 48, 1e4f, 1e-5f);
    CHECK(llama_param_table(&bad, &t, err, sizeof(err)) != 0 && strstr(err, "num_kv_heads 5") != NULL, "bad table: %s", err);
}

// Parameter count of a configuration, from the architecture (independent of the table code).
static size_t expected_parameters(const LlamaConfig *c) {
    size_t C = (size_t)c->channels, HS = C / (size_t)c->num_heads, F = (size_t)c->ffn_hidden, Vp = (size_t)c->padded_vocab_size;
    size_t per_layer = C + ((size_t)c->num_heads + 2 * (size_t)c->num_kv_heads) * HS * C + C * C + C + 2 * F * C + C * F;
    return 2 * Vp * C + (size_t)c->num_layers * per_layer + C;
}

static void test_param_table(void) {
    char err[256];
    LlamaConfig c;
    ParamTable t;
    const char *presets[3] = {"l125m", "l350m", "l1b"};
    const size_t counts[3] = {152783616, 386188288, 1179191296};  // as documented in llama_model.h
    for (int i = 0; i < 3; i++) {
        llama_config_preset(presets[i], &c, err, sizeof(err));
        CHECK(llama_param_table(&c, &t, err, sizeof(err)) == 0, "%s: %s", presets[i], err);
        CHECK(t.num_parameters == expected_parameters(&c) && t.num_parameters == counts[i], "%s has %zu parameters, expected %zu (%zu documented)",
              presets[i], t.num_parameters, expected_parameters(&c), counts[i]);
    }
    llama_config_preset("l125m", &c, err, sizeof(err));
    CHECK(c.num_layers == 12 && c.channels == 768 && c.num_heads == 12 && c.num_kv_heads == 4 && c.ffn_hidden == 2048 && c.vocab_size == 50257 &&
              c.padded_vocab_size == 50304 && c.max_seq_len == 1024 && c.rope_theta == 500000.0f && c.norm_eps == 1e-5f,
          "l125m fields");
    // Shapes, order, offsets, decay and TP kinds of the tiny model.
    c = tiny_config();
    CHECK(llama_param_table(&c, &t, err, sizeof(err)) == 0, "%s", err);
    const size_t L = 2, C = 32, QKV = (4 + 2 * 2) * 8, F = 48, Vp = 72;
    struct { const char *name; size_t d0, d1, d2; int per_layer, decay; TpSplit tp; } want[LLAMA_NUM_PARAM_TENSORS] = {
        {"wte", Vp, C, 0, 0, 1, TP_SPLIT_VOCAB},        {"attn_norm", L, C, 0, 1, 0, TP_REPLICATED},
        {"qkvw", L, QKV, C, 1, 1, TP_SPLIT_QKV_HEADS},  {"attn_outw", L, C, C, 1, 1, TP_SPLIT_COLS},
        {"ffn_norm", L, C, 0, 1, 0, TP_REPLICATED},     {"gate_upw", L, 2 * F, C, 1, 1, TP_SPLIT_ROWS},
        {"downw", L, C, F, 1, 1, TP_SPLIT_COLS},        {"final_norm", C, 0, 0, 0, 0, TP_REPLICATED},
        {"lm_head", Vp, C, 0, 0, 1, TP_SPLIT_VOCAB}};
    CHECK(t.count == LLAMA_NUM_PARAM_TENSORS, "%d tensors", t.count);
    size_t offset = 0;
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS && i < t.count; i++) {
        const ParamSpec *s = &t.specs[i];
        CHECK(strcmp(s->name, want[i].name) == 0 && s->shape[0] == want[i].d0 && s->shape[1] == want[i].d1 && s->shape[2] == want[i].d2,
              "tensor %d: %s [%zu, %zu, %zu], want %s [%zu, %zu, %zu]", i, s->name, s->shape[0], s->shape[1], s->shape[2], want[i].name, want[i].d0,
              want[i].d1, want[i].d2);
        CHECK(s->per_layer == want[i].per_layer && s->decay == want[i].decay && s->tp_split == want[i].tp, "%s: per_layer %d decay %d tp %d", s->name,
              s->per_layer, s->decay, (int)s->tp_split);
        CHECK(s->decay == (s->ndim - s->per_layer == 2), "%s: decay must be on the 2-D weights only", s->name);
        CHECK(s->offset == offset, "%s offset %zu, expected %zu", s->name, s->offset, offset);
        offset += s->size;
    }
    CHECK(t.num_parameters == offset && offset == expected_parameters(&c), "tiny count %zu", t.num_parameters);
    CHECK(t.specs[LLAMA_QKVW].tp_units == 2 && t.specs[LLAMA_GATE_UPW].tp_parts == 2, "qkv units %d, gate_up parts %d", t.specs[LLAMA_QKVW].tp_units,
          t.specs[LLAMA_GATE_UPW].tp_parts);
}

// Tensor-parallel checks: KV heads are the unit of the qkv split, and gate_up splits each of its halves.
static void test_tensor_parallel_checks(void) {
    char err[256];
    LlamaConfig c;
    ParamTable t;
    llama_config_preset("l125m", &c, err, sizeof(err));
    llama_param_table(&c, &t, err, sizeof(err));
    CHECK(param_table_check_tp(&t, 4, err, sizeof(err)) == 0, "l125m --tp 4: %s", err);
    CHECK(param_table_check_tp(&t, 8, err, sizeof(err)) != 0 && strcmp(err, "--tp 8 does not divide parameter 'qkvw' (heads 4)") == 0,
          "l125m --tp 8 (4 KV heads): %s", err);
    llama_config_preset("l350m", &c, err, sizeof(err));
    llama_param_table(&c, &t, err, sizeof(err));
    CHECK(param_table_check_tp(&t, 8, err, sizeof(err)) == 0, "l350m --tp 8: %s", err);
    // F = 36: 2F = 72 is a multiple of 8 but a half of 36 rows is not; 36 is a multiple of 4.
    c = llama_config_make(16, 64, 64, 1, 8, 8, 64, 36, 1e4f, 1e-5f);
    CHECK(llama_param_table(&c, &t, err, sizeof(err)) == 0, "%s", err);
    CHECK(param_table_check_tp(&t, 4, err, sizeof(err)) == 0, "F 36 --tp 4: %s", err);
    CHECK(param_table_check_tp(&t, 8, err, sizeof(err)) != 0 && strcmp(err, "--tp 8 does not divide parameter 'gate_upw' (each of its 2 parts of 36)") == 0,
          "F 36 --tp 8: %s", err);
    // Without the parts gate_upw's contiguous 72 rows would pass (downw's F columns catch it later).
    t.specs[LLAMA_GATE_UPW].tp_parts = 0;
    CHECK(param_table_check_tp(&t, 8, err, sizeof(err)) != 0 && strstr(err, "'downw'") != NULL, "F 36 --tp 8 without parts: %s", err);
    // The general mechanism: a dimension that is not tp_parts equal parts is refused.
    ParamTable g;
    memset(&g, 0, sizeof(g));
    param_table_add(&g, "fused", 10, 4, 0, 0, PARAM_INIT_ZERO, 0, 0, TP_SPLIT_ROWS);
    param_table_add(&g, "cols", 4, 12, 0, 0, PARAM_INIT_ZERO, 0, 0, TP_SPLIT_COLS);
    g.specs[0].tp_parts = 3;
    CHECK(param_table_finish(&g, err, sizeof(err)) == 0, "%s", err);
    CHECK(param_table_check_tp(&g, 1, err, sizeof(err)) != 0 && strcmp(err, "parameter 'fused': its split dimension (10) is not 3 equal parts") == 0,
          "10 rows in 3 parts: %s", err);
    g.specs[0].shape[0] = 12;
    g.specs[1].tp_parts = 2;  // columns [6 | 6]
    CHECK(param_table_check_tp(&g, 2, err, sizeof(err)) == 0, "12 rows in 3 parts, 12 columns in 2, --tp 2: %s", err);
    CHECK(param_table_check_tp(&g, 4, err, sizeof(err)) != 0 && strcmp(err, "--tp 4 does not divide parameter 'cols' (each of its 2 parts of 6)") == 0,
          "--tp 4 (rows: 3 parts of 4, columns: 2 parts of 6): %s", err);
}

// Initialisation: N(0, 0.02^2) weights, 0.02/sqrt(2L) for attn_out and down, norm gains 1, padded rows 0.
static void test_init(void) {
    LlamaConfig c = llama_config_make(64, 1000, 1024, 4, 8, 2, 64, 160, 5e5f, 1e-5f);
    char err[256];
    ParamTable t;
    CHECK(llama_param_table(&c, &t, err, sizeof(err)) == 0, "%s", err);
    float *p = (float *)malloc_check(t.num_parameters * sizeof(float)), *q = (float *)malloc_check(t.num_parameters * sizeof(float));
    param_table_init(&t, p, 42);
    param_table_init(&t, q, 42);
    CHECK(memcmp(p, q, t.num_parameters * sizeof(float)) == 0, "init is not deterministic");
    param_table_init(&t, q, 43);
    CHECK(memcmp(p, q, t.num_parameters * sizeof(float)) != 0, "seeds 42 and 43 give the same init");
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        const ParamSpec *s = &t.specs[i];
        const float *x = p + s->offset;
        int vocab = i == LLAMA_WTE || i == LLAMA_LM_HEAD;
        size_t n = vocab ? (size_t)c.vocab_size * c.channels : s->size;
        double sum = 0.0, sum2 = 0.0;
        for (size_t j = 0; j < n; j++) {
            sum += x[j];
            sum2 += (double)x[j] * x[j];
        }
        double mean = sum / n, std = sqrt(sum2 / n - mean * mean);
        int norm = i == LLAMA_ATTN_NORM || i == LLAMA_FFN_NORM || i == LLAMA_FINAL_NORM;
        if (norm) {
            CHECK(mean == 1.0 && std == 0.0, "%s: norm gains not all 1", s->name);
            continue;
        }
        double want = (i == LLAMA_ATTN_OUTW || i == LLAMA_DOWNW) ? 0.02 / sqrt(2.0 * c.num_layers) : 0.02;
        // sample std of n >= 16384 normals: relative standard error <= 0.6%; allow 5%
        CHECK(fabs(std / want - 1.0) < 0.05 && fabs(mean) < 5.0 * want / sqrt((double)n), "%s: mean %.3g std %.4g, want std %.4g", s->name, mean, std,
              want);
        if (vocab) {
            int pad = 0;
            for (size_t j = n; j < s->size; j++) pad += x[j] != 0.0f;
            CHECK(pad == 0, "%s: %d padded entries nonzero", s->name, pad);
        }
    }
    free(p);
    free(q);
}

// ----------------------------------------------------------------------------
// New layers

typedef struct {
    int N, C;
    float eps;
    float *inp, *weight, *out, *rstd, *w;
} RmsNormCase;

static double rmsnorm_objective(void *p) {
    RmsNormCase *c = (RmsNormCase *)p;
    cpu_rmsnorm_forward(c->out, c->rstd, c->inp, c->weight, c->N, c->C, c->eps);
    return dot_double(c->out, c->w, (size_t)c->N * c->C);
}

static void test_rmsnorm(void) {
    Rng rng;
    rng_seed(&rng, 501);
    RmsNormCase c;
    c.N = 6;
    c.C = 24;
    c.eps = 1e-5f;
    size_t n = (size_t)c.N * c.C;
    c.inp = random_array(&rng, n, 1.0f);
    for (size_t i = 0; i < n; i++) c.inp[i] += 0.5f;  // a nonzero mean: RMSNorm does not subtract it
    c.weight = random_array(&rng, (size_t)c.C, 0.5f);
    for (int i = 0; i < c.C; i++) c.weight[i] += 1.0f;
    c.out = zero_array(n);
    c.rstd = zero_array((size_t)c.N);
    c.w = random_array(&rng, n, 1.0f);
    rmsnorm_objective(&c);
    // forward against the formula in double
    double worst = 0.0;
    for (int r = 0; r < c.N; r++) {
        double ss = 0.0;
        for (int i = 0; i < c.C; i++) ss += (double)c.inp[r * c.C + i] * c.inp[r * c.C + i];
        double s = 1.0 / sqrt(ss / c.C + 1e-5);
        for (int i = 0; i < c.C; i++) {
            double want = c.inp[r * c.C + i] * s * c.weight[i];
            worst = fmax(worst, fabs(want - c.out[r * c.C + i]) / fmax(fabs(want), 1e-3));
        }
    }
    CHECK(worst < 1e-6, "RMSNorm forward differs from the double formula by %.3e relative (bound 1e-6)", worst);
    float *dinp = zero_array(n), *dweight = zero_array((size_t)c.C);
    cpu_rmsnorm_backward(dinp, dweight, c.w, c.inp, c.weight, c.rstd, c.N, c.C);
    GradTarget t[] = {{"inp", c.inp, dinp, n}, {"weight", c.weight, dweight, (size_t)c.C}};
    double err = check_gradients("rmsnorm", rmsnorm_objective, &c, t, 2, 1000, &rng);
    CHECK(err < LAYER_TOL, "rmsnorm backward: worst error %.3e >= %.1e", err, LAYER_TOL);
    free(c.inp); free(c.weight); free(c.out); free(c.rstd); free(c.w); free(dinp); free(dweight);
}

typedef struct {
    int B, T, H, rot, HS;
    float *cos_t, *sin_t, *inp, *out, *w;
} RopeCase;

static double rope_objective(void *p) {
    RopeCase *c = (RopeCase *)p;
    cpu_rope_forward(c->out, c->inp, c->cos_t, c->sin_t, c->B, c->T, c->H, c->rot, c->HS);
    return dot_double(c->out, c->w, (size_t)c->B * c->T * c->H * c->HS);
}

static void test_rope(void) {
    // The convention, by hand: HS = 4, theta = 100, so inv_freq = {1, 0.1}; at position 1 channel 0
    // pairs with channel 2 (rotate_half), not channel 1 (interleaved).
    float cos_t[2 * 2], sin_t[2 * 2], out[2 * 4];
    cpu_rope_table(cos_t, sin_t, 2, 4, 100.0f);
    const float x[2 * 4] = {0, 0, 0, 0, 1, 0, 0, 0};  // [b=0, t=0..1, 1 head, HS 4]
    cpu_rope_forward(out, x, cos_t, sin_t, 1, 2, 1, 1, 4);
    CHECK(fabsf(out[4] - cosf(1.0f)) < 1e-7f && out[5] == 0.0f && fabsf(out[6] - sinf(1.0f)) < 1e-7f && out[7] == 0.0f,
          "e0 at t=1 -> [%g %g %g %g], want [cos 1, 0, sin 1, 0]", out[4], out[5], out[6], out[7]);
    const float y[2 * 4] = {0, 0, 0, 0, 0, 1, 0, 0};
    cpu_rope_forward(out, y, cos_t, sin_t, 1, 2, 1, 1, 4);
    CHECK(out[4] == 0.0f && fabsf(out[5] - cosf(0.1f)) < 1e-7f && out[6] == 0.0f && fabsf(out[7] - sinf(0.1f)) < 1e-7f,
          "e1 at t=1 -> [%g %g %g %g], want [0, cos 0.1, 0, sin 0.1]", out[4], out[5], out[6], out[7]);
    const float z[2 * 4] = {0, 0, 0, 0, 0, 0, 1, 0};
    cpu_rope_forward(out, z, cos_t, sin_t, 1, 2, 1, 1, 4);
    CHECK(fabsf(out[4] + sinf(1.0f)) < 1e-7f && out[5] == 0.0f && fabsf(out[6] - cosf(1.0f)) < 1e-7f && out[7] == 0.0f,
          "e2 at t=1 -> [%g %g %g %g], want [-sin 1, 0, cos 1, 0]", out[4], out[5], out[6], out[7]);

    Rng rng;
    rng_seed(&rng, 502);
    RopeCase c = {2, 9, 3, 2, 16, NULL, NULL, NULL, NULL, NULL};  // 3 heads per row: 2 turned, 1 copied
    const float theta = 10000.0f;
    size_t n = (size_t)c.B * c.T * c.H * c.HS;
    c.cos_t = zero_array((size_t)c.T * c.HS / 2);
    c.sin_t = zero_array((size_t)c.T * c.HS / 2);
    cpu_rope_table(c.cos_t, c.sin_t, c.T, c.HS, theta);
    c.inp = random_array(&rng, n, 1.0f);
    c.out = zero_array(n);
    c.w = random_array(&rng, n, 1.0f);
    rope_objective(&c);
    // against the formula in double (angles from inv_freq rounded to float, as documented)
    double worst = 0.0;
    int copied_wrong = 0, t0_wrong = 0;
    for (int b = 0; b < c.B; b++) {
        for (int t = 0; t < c.T; t++) {
            for (int h = 0; h < c.H; h++) {
                const float *xi = c.inp + (((size_t)b * c.T + t) * c.H + h) * c.HS;
                const float *o = c.out + (((size_t)b * c.T + t) * c.H + h) * c.HS;
                if (h >= c.rot || t == 0) {  // copied heads and position 0: exactly the input
                    int wrong = memcmp(o, xi, (size_t)c.HS * sizeof(float)) != 0;
                    if (h >= c.rot) copied_wrong += wrong;
                    else t0_wrong += wrong;
                    continue;
                }
                for (int i = 0; i < c.HS / 2; i++) {
                    double ang = (double)((float)t * (float)pow(theta, -2.0 * i / c.HS));
                    double w1 = xi[i] * cos(ang) - xi[i + c.HS / 2] * sin(ang), w2 = xi[i + c.HS / 2] * cos(ang) + xi[i] * sin(ang);
                    worst = fmax(worst, fmax(fabs(w1 - o[i]), fabs(w2 - o[i + c.HS / 2])));
                }
            }
        }
    }
    CHECK(worst < 1e-6, "RoPE forward differs from the double formula by %.3e (bound 1e-6 on unit inputs)", worst);
    CHECK(copied_wrong == 0 && t0_wrong == 0, "%d copied heads and %d position-0 heads are not the input", copied_wrong, t0_wrong);
    // relative positions: q(t1) . k(t2) after RoPE depends only on t1 - t2
    double rel_worst = 0.0;
    for (int s = 1; s + 3 < c.T; s++) {
        float *q = random_array(&rng, (size_t)c.T * c.HS, 1.0f), *k = random_array(&rng, (size_t)c.T * c.HS, 1.0f);
        for (int t = 1; t < c.T; t++) {  // the same q at every position, the same k at every position
            memcpy(q + (size_t)t * c.HS, q, (size_t)c.HS * sizeof(float));
            memcpy(k + (size_t)t * c.HS, k, (size_t)c.HS * sizeof(float));
        }
        float *qr = zero_array((size_t)c.T * c.HS), *kr = zero_array((size_t)c.T * c.HS);
        cpu_rope_forward(qr, q, c.cos_t, c.sin_t, 1, c.T, 1, 1, c.HS);
        cpu_rope_forward(kr, k, c.cos_t, c.sin_t, 1, c.T, 1, 1, c.HS);
        double d0 = dot_double(qr + 3 * c.HS, kr, (size_t)c.HS), d1 = dot_double(qr + (size_t)(3 + s) * c.HS, kr + (size_t)s * c.HS, (size_t)c.HS);
        rel_worst = fmax(rel_worst, fabs(d0 - d1));
        free(q); free(k); free(qr); free(kr);
    }
    CHECK(rel_worst < 1e-4, "q(t+3).k(t) changes with t by %.3e (bound 1e-4)", rel_worst);
    float *dinp = zero_array(n);
    cpu_rope_backward(dinp, c.w, c.cos_t, c.sin_t, c.B, c.T, c.H, c.rot, c.HS);
    GradTarget t[] = {{"inp", c.inp, dinp, n}};
    double err = check_gradients("rope", rope_objective, &c, t, 1, 1000, &rng);
    CHECK(err < LAYER_TOL, "rope backward: worst error %.3e >= %.1e", err, LAYER_TOL);
    free(c.cos_t); free(c.sin_t); free(c.inp); free(c.out); free(c.w); free(dinp);
}

typedef struct {
    int B, T, NH, NKV, HS;
    float *qkv, *out, *att, *w;
} GqaCase;

static double gqa_objective(void *p) {
    GqaCase *c = (GqaCase *)p;
    cpu_gqa_attention_forward(c->out, c->att, c->qkv, c->B, c->T, c->NH, c->NKV, c->HS);
    return dot_double(c->out, c->w, (size_t)c->B * c->T * c->NH * c->HS);
}

static void test_gqa_attention(void) {
    Rng rng;
    rng_seed(&rng, 503);
    GqaCase c = {2, 7, 4, 2, 8, NULL, NULL, NULL, NULL};
    const int NH = c.NH, NKV = c.NKV, HS = c.HS, BT = c.B * c.T, group = NH / NKV;
    const size_t row = (size_t)(NH + 2 * NKV) * HS, n = (size_t)BT * row, nout = (size_t)BT * NH * HS;
    c.qkv = random_array(&rng, n, 1.0f);
    c.out = zero_array(nout);
    c.att = zero_array((size_t)c.B * NH * c.T * c.T);
    c.w = random_array(&rng, nout, 1.0f);
    gqa_objective(&c);
    float *dqkv = zero_array(n);
    cpu_gqa_attention_backward(dqkv, c.w, c.qkv, c.att, c.B, c.T, NH, NKV, HS);
    // Against the double-precision multi-head reference on qkv with each KV head repeated for its query
    // heads; the KV gradients are the sums over each group of the repeated heads' gradients.
    const size_t row3 = (size_t)3 * NH * HS;
    float *qkv3 = zero_array((size_t)BT * row3), *out3 = zero_array(nout), *lse = zero_array((size_t)c.B * NH * c.T);
    float *dqkv3 = zero_array((size_t)BT * row3);
    for (int r = 0; r < BT; r++) {
        for (int h = 0; h < NH; h++) {
            for (int part = 0; part < 3; part++) {
                size_t src = part == 0 ? (size_t)h * HS : (size_t)(NH + (part - 1) * NKV + h / group) * HS;
                memcpy(qkv3 + r * row3 + ((size_t)part * NH + h) * HS, c.qkv + r * row + src, (size_t)HS * sizeof(float));
            }
        }
    }
    attention_forward_cpu(out3, lse, qkv3, c.B, c.T, NH, HS);
    attention_backward_cpu(dqkv3, c.w, qkv3, c.B, c.T, NH, HS);
    double fwd = 0.0, bwd = 0.0;
    for (size_t i = 0; i < nout; i++) fwd = fmax(fwd, fabs(c.out[i] - out3[i]));
    for (int r = 0; r < BT; r++) {
        for (int h = 0; h < NH; h++) bwd = fmax(bwd, fabs(dqkv[r * row + (size_t)h * HS] - dqkv3[r * row3 + (size_t)h * HS]));
        for (int g = 0; g < NKV; g++) {
            for (int part = 1; part < 3; part++) {
                for (int i = 0; i < HS; i++) {
                    double sum = 0.0;
                    for (int h = g * group; h < (g + 1) * group; h++) sum += dqkv3[r * row3 + ((size_t)part * NH + h) * HS + i];
                    bwd = fmax(bwd, fabs(dqkv[r * row + (size_t)(NH + (part - 1) * NKV + g) * HS + i] - sum));
                }
            }
        }
    }
    CHECK(fwd < 1e-5, "GQA forward differs from the repeated-KV multi-head reference by %.3e (bound 1e-5 on unit inputs)", fwd);
    CHECK(bwd < 1e-5, "GQA backward differs from the group sums of the multi-head reference by %.3e (bound 1e-5)", bwd);
    GradTarget t[] = {{"qkv", c.qkv, dqkv, n}};
    double err = check_gradients("gqa", gqa_objective, &c, t, 1, 1000, &rng);
    CHECK(err < LAYER_TOL, "gqa attention backward: worst error %.3e >= %.1e", err, LAYER_TOL);
    free(c.qkv); free(c.out); free(c.att); free(c.w); free(dqkv); free(qkv3); free(out3); free(lse); free(dqkv3);
}

typedef struct {
    int N, F;
    float *inp, *out, *w;
} SwigluCase;

static double swiglu_objective(void *p) {
    SwigluCase *c = (SwigluCase *)p;
    cpu_swiglu_forward(c->out, c->inp, c->N, c->F);
    return dot_double(c->out, c->w, (size_t)c->N * c->F);
}

static void test_swiglu(void) {
    Rng rng;
    rng_seed(&rng, 504);
    SwigluCase c;
    c.N = 5;
    c.F = 20;
    size_t n = (size_t)c.N * 2 * c.F, nout = (size_t)c.N * c.F;
    c.inp = random_array(&rng, n, 2.0f);
    c.out = zero_array(nout);
    c.w = random_array(&rng, nout, 1.0f);
    swiglu_objective(&c);
    double worst = 0.0;
    for (int r = 0; r < c.N; r++) {
        for (int i = 0; i < c.F; i++) {
            double g = c.inp[(size_t)r * 2 * c.F + i], u = c.inp[(size_t)r * 2 * c.F + c.F + i];
            double want = g / (1.0 + exp(-g)) * u;
            worst = fmax(worst, fabs(want - c.out[(size_t)r * c.F + i]) / fmax(fabs(want), 1e-3));
        }
    }
    CHECK(worst < 1e-6, "SwiGLU forward differs from silu(gate) * up in double by %.3e relative (bound 1e-6)", worst);
    float *dinp = zero_array(n);
    cpu_swiglu_backward(dinp, c.w, c.inp, c.N, c.F);
    GradTarget t[] = {{"inp", c.inp, dinp, n}};
    double err = check_gradients("swiglu", swiglu_objective, &c, t, 1, 1000, &rng);
    CHECK(err < LAYER_TOL, "swiglu backward: worst error %.3e >= %.1e", err, LAYER_TOL);
    free(c.inp); free(c.out); free(c.w); free(dinp);
}

// ----------------------------------------------------------------------------
// Whole model

typedef struct {
    LlamaCpu *model;
    const int *inputs, *targets;
} ModelCase;

// Mean cross-entropy, summed in double from the per-token fp32 losses.
static double model_objective(void *p) {
    ModelCase *c = (ModelCase *)p;
    llama_cpu_forward(c->model, c->inputs, c->targets);
    int BT = c->model->core.B * c->model->core.T;
    double s = 0.0;
    for (int i = 0; i < BT; i++) s += c->model->core.act[LLAMA_ACT_LOSSES][i];
    return s / BT;
}

// Weights of scale 0.15 (norm gains 1 + 0.15 N) so every layer is far from linear and gradients are
// large: 0.3 * sqrt(8 / C), the pre-activation scale of test_gpt2_cpu's model (C = 8, scale 0.3). At 0.3
// the attention scores of C = 32 are so peaked that the curvature over the directional step
// (DIRECTION_STEP) reaches 2e-3 for wte and qkvw (measured: 0.3 -> 2.1e-3, 0.2 -> 5e-4, 0.15 -> 1.2e-4,
// falling as the square of the scale, as curvature does). The padded rows of wte and lm_head stay zero,
// like a real model's.
static void perturbed_params(LlamaCpu *model, Rng *rng) {
    const LlamaConfig *cfg = &model->config;
    const float scale = 0.15f;
    rng_fill_normal(rng, model->core.params, model->core.table.num_parameters, 0.0f, scale);
    const int norms[3] = {LLAMA_ATTN_NORM, LLAMA_FFN_NORM, LLAMA_FINAL_NORM};
    for (int k = 0; k < 3; k++)
        for (size_t j = 0; j < model->core.table.specs[norms[k]].size; j++) model->core.param[norms[k]][j] += 1.0f;  // gains 1 + scale * N(0, 1)
    const int vocab[2] = {LLAMA_WTE, LLAMA_LM_HEAD};
    for (int k = 0; k < 2; k++)
        memset(model->core.param[vocab[k]] + (size_t)cfg->vocab_size * cfg->channels, 0,
               (size_t)(cfg->padded_vocab_size - cfg->vocab_size) * cfg->channels * sizeof(float));
}

static void test_model_gradients(void) {
    LlamaConfig cfg = tiny_config();
    int B = 2, T = 8;
    LlamaCpu model;
    llama_cpu_build(&model, &cfg, B, T);
    Rng rng;
    rng_seed(&rng, 601);
    perturbed_params(&model, &rng);
    int *inputs = (int *)malloc_check((size_t)B * T * sizeof(int)), *targets = (int *)malloc_check((size_t)B * T * sizeof(int));
    random_tokens(&rng, inputs, B * T, cfg.vocab_size);
    random_tokens(&rng, targets, B * T, cfg.vocab_size);
    llama_cpu_forward(&model, inputs, targets);
    llama_cpu_zero_grad(&model);
    llama_cpu_backward(&model, 1);
    size_t np = model.core.table.num_parameters;
    float *grads = (float *)malloc_check(np * sizeof(float));
    memcpy(grads, model.core.grads, np * sizeof(float));
    GradTarget t[LLAMA_NUM_PARAM_TENSORS];
    param_table_targets(t, &model.core.table, model.core.params, grads);
    ModelCase c = {&model, inputs, targets};
    double worst = check_gradients("model", model_objective, &c, t, LLAMA_NUM_PARAM_TENSORS, SAMPLES_PER_TENSOR, &rng);
    CHECK(worst < MODEL_TOL, "model gradients: worst error %.3e >= %.1e", worst, MODEL_TOL);
    // Every tensor has a gradient, and the padded vocabulary rows of wte and lm_head get exactly zero.
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        double sq = 0.0;
        for (size_t j = 0; j < t[i].n; j++) sq += (double)t[i].grad[j] * t[i].grad[j];
        CHECK(sq > 0.0, "%s has an all-zero gradient", t[i].name);
    }
    int stray = 0;
    const int vocab[2] = {LLAMA_WTE, LLAMA_LM_HEAD};
    for (int k = 0; k < 2; k++)
        for (size_t j = (size_t)cfg.vocab_size * cfg.channels; j < t[vocab[k]].n; j++) stray += t[vocab[k]].grad[j] != 0.0f;
    CHECK(stray == 0, "%d gradient entries of padded vocabulary rows are nonzero", stray);
    free(grads);
    free(inputs);
    free(targets);
    llama_cpu_free(&model);
}

// Positions reach the model through RoPE: in one layer, the last position's output is a softmax-
// weighted sum over the keys, blind to their order without RoPE (two or more layers would also see the
// order through the causal mask), so swapping the first two tokens must change the last position's
// logits. And changing the last token leaves the earlier positions' logits unchanged bit for bit (the
// causal mask).
static void test_model_positions_and_causality(void) {
    LlamaConfig cfg = tiny_config();
    cfg.num_layers = 1;
    int B = 1, T = 8;
    LlamaCpu model;
    llama_cpu_build(&model, &cfg, B, T);
    Rng rng;
    rng_seed(&rng, 602);
    perturbed_params(&model, &rng);
    int inputs[8] = {3, 11, 5, 40, 7, 66, 20, 1};
    const int Vp = cfg.padded_vocab_size;
    float *logits = (float *)malloc_check((size_t)T * Vp * sizeof(float));
    llama_cpu_forward(&model, inputs, NULL);
    memcpy(logits, model.core.act[LLAMA_ACT_LOGITS], (size_t)T * Vp * sizeof(float));
    int swapped[8];
    memcpy(swapped, inputs, sizeof(swapped));
    swapped[0] = inputs[1];
    swapped[1] = inputs[0];
    llama_cpu_forward(&model, swapped, NULL);
    double diff = 0.0, scale = 0.0;
    for (int v = 0; v < cfg.vocab_size; v++) {
        diff = fmax(diff, fabs(model.core.act[LLAMA_ACT_LOGITS][(size_t)(T - 1) * Vp + v] - logits[(size_t)(T - 1) * Vp + v]));
        scale = fmax(scale, fabs(logits[(size_t)(T - 1) * Vp + v]));
    }
    CHECK(diff > 1e-3 * scale, "swapping tokens 0 and 1 changed the last logits by only %.3e (max |logit| %.3e): RoPE has no effect", diff, scale);
    int last[8];
    memcpy(last, inputs, sizeof(last));
    last[T - 1] = 33;
    llama_cpu_forward(&model, last, NULL);
    CHECK(memcmp(model.core.act[LLAMA_ACT_LOGITS], logits, (size_t)(T - 1) * Vp * sizeof(float)) == 0, "changing the last token changed earlier logits");
    free(logits);
    llama_cpu_free(&model);
}

// Loss, gradients and updated parameters are bit-identical for 1 and 3 OpenMP threads.
static void test_thread_count_independence(void) {
    LlamaConfig cfg = tiny_config();
    int B = 3, T = 16;
    AdamWConfig opt = {0.9f, 0.95f, 1e-8f, 0.1f, 1.0f};
    Rng rng;
    rng_seed(&rng, 603);
    int *inputs = (int *)malloc_check((size_t)B * T * sizeof(int)), *targets = (int *)malloc_check((size_t)B * T * sizeof(int));
    random_tokens(&rng, inputs, B * T, cfg.vocab_size);
    random_tokens(&rng, targets, B * T, cfg.vocab_size);
    float losses[2];
    float *grads[2], *params[2];
    size_t np = 0;
    int threads[2] = {1, 3};
    int saved_threads = omp_get_max_threads();
    for (int r = 0; r < 2; r++) {
        omp_set_num_threads(threads[r]);
        LlamaCpu model;
        llama_cpu_build(&model, &cfg, B, T);
        np = model.core.table.num_parameters;
        param_table_init(&model.core.table, model.core.params, 7);
        losses[r] = llama_cpu_forward(&model, inputs, targets);
        llama_cpu_zero_grad(&model);
        llama_cpu_backward(&model, 1);
        grads[r] = (float *)malloc_check(np * sizeof(float));
        memcpy(grads[r], model.core.grads, np * sizeof(float));
        llama_cpu_update(&model, &opt, 1e-3f, 1);
        params[r] = (float *)malloc_check(np * sizeof(float));
        memcpy(params[r], model.core.params, np * sizeof(float));
        llama_cpu_free(&model);
    }
    omp_set_num_threads(saved_threads);
    CHECK(memcmp(&losses[0], &losses[1], sizeof(float)) == 0, "loss differs: %.9g vs %.9g", losses[0], losses[1]);
    CHECK(memcmp(grads[0], grads[1], np * sizeof(float)) == 0, "gradients differ between 1 and 3 threads");
    CHECK(memcmp(params[0], params[1], np * sizeof(float)) == 0, "updated parameters differ between 1 and 3 threads");
    for (int r = 0; r < 2; r++) {
        free(grads[r]);
        free(params[r]);
    }
    free(inputs);
    free(targets);
}

// With zero gradients (and zero moments) a step is pure weight decay, on the flagged 2-D weights only;
// the update returns the (zero) gradient norm.
static void test_weight_decay_flags(void) {
    LlamaConfig cfg = tiny_config();
    LlamaCpu model;
    llama_cpu_build(&model, &cfg, 1, 4);
    param_table_init(&model.core.table, model.core.params, 5);
    size_t np = model.core.table.num_parameters;
    float *before = (float *)malloc_check(np * sizeof(float));
    memcpy(before, model.core.params, np * sizeof(float));
    AdamWConfig opt = {0.9f, 0.95f, 1e-8f, 0.1f, 1.0f};
    float norm = llama_cpu_update(&model, &opt, 0.5f, 1);
    CHECK(norm == 0.0f, "norm of zero gradients %g", norm);
    int wrong = 0;
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        const ParamSpec *s = &model.core.table.specs[i];
        int matrix = i == LLAMA_WTE || i == LLAMA_QKVW || i == LLAMA_ATTN_OUTW || i == LLAMA_GATE_UPW || i == LLAMA_DOWNW || i == LLAMA_LM_HEAD;
        float wd = matrix ? 0.1f : 0.0f;
        for (size_t j = 0; j < s->size; j++) wrong += model.core.params[s->offset + j] != before[s->offset + j] - 0.5f * (wd * before[s->offset + j]);
    }
    CHECK(wrong == 0, "%d parameters wrong after a decay-only step (decay must hit exactly the 2-D weights)", wrong);
    free(before);
    llama_cpu_free(&model);
}

// A few AdamW steps on one repeated batch lower the loss (the model memorises it): from about
// ln(67) = 4.2 at init, 20 steps at lr 1e-2 must at least halve it, the loss falling at every step.
static void test_adamw_lowers_loss(void) {
    LlamaConfig cfg = tiny_config();
    int B = 4, T = 16, steps = 20;
    LlamaCpu model;
    llama_cpu_build(&model, &cfg, B, T);
    param_table_init(&model.core.table, model.core.params, 1337);
    Rng rng;
    rng_seed(&rng, 604);
    int *inputs = (int *)malloc_check((size_t)B * T * sizeof(int)), *targets = (int *)malloc_check((size_t)B * T * sizeof(int));
    random_tokens(&rng, inputs, B * T, cfg.vocab_size);
    random_tokens(&rng, targets, B * T, cfg.vocab_size);
    AdamWConfig opt = {0.9f, 0.95f, 1e-8f, 0.1f, 1.0f};
    float first = 0.0f, prev = INFINITY, loss = 0.0f;
    int rises = 0;
    for (int step = 0; step < steps; step++) {
        loss = llama_cpu_forward(&model, inputs, targets);
        llama_cpu_zero_grad(&model);
        llama_cpu_backward(&model, 1);
        llama_cpu_update(&model, &opt, 1e-2f, step + 1);
        if (step == 0) first = loss;
        rises += loss >= prev;
        prev = loss;
        if (step % 5 == 0 || step == steps - 1) printf("  step %2d loss %.4f\n", step, loss);
    }
    CHECK(fabsf(first - logf((float)cfg.vocab_size)) < 0.1f, "initial loss %.4f is not near ln(%d) = %.4f", first, cfg.vocab_size,
          logf((float)cfg.vocab_size));
    CHECK(loss < 0.5f * first && rises == 0, "loss %.4f -> %.4f after %d steps (%d rises); want below %.4f and falling", first, loss, steps, rises,
          0.5f * first);
    free(inputs);
    free(targets);
    llama_cpu_free(&model);
}

// ----------------------------------------------------------------------------
// Model files

static float *random_params(const LlamaConfig *cfg, size_t *n, uint64_t seed) {
    ParamTable t;
    char err[256];
    if (llama_param_table(cfg, &t, err, sizeof(err)) != 0) fatal("%s", err);
    Rng rng;
    rng_seed(&rng, seed);
    float *p = (float *)malloc_check(t.num_parameters * sizeof(float));
    rng_fill_normal(&rng, p, t.num_parameters, 0.0f, 1.0f);
    for (size_t i = 0; i < t.num_parameters; i += 7) p[i] = ldexpf(p[i], (int)rng_below(&rng, 60) - 30);  // wide exponents
    *n = t.num_parameters;
    return p;
}

static void test_model_file_roundtrip(void) {
    LlamaConfig cfg = llama_config_make(16, 67, 72, 2, 4, 2, 32, 48, 123456.789f, 1e-6f);
    size_t n;
    float *p = random_params(&cfg, &n, 11);
    char err[512];
    LlamaConfig got;
    int version = 0;
    float *q = NULL;
    // fp32: bit-exact, every config field (the floats bit for bit) and the header words as documented
    const char *path = testing_path(tmp_dir, "llama_fp32.bin");
    CHECK(llama_model_file_write(path, &cfg, p, MODEL_FILE_VERSION_FP32, err, sizeof(err)) == 0, "write: %s", err);
    CHECK(llama_model_file_load(path, &cfg, &got, &version, &q, err, sizeof(err)) == 0, "load: %s", err);
    if (q != NULL) {
        CHECK(version == 3 && llama_config_equal(&got, &cfg), "version %d or config differs", version);
        CHECK(memcmp(p, q, n * sizeof(float)) == 0, "fp32 parameters are not bit-identical after the round trip");
        free(q);
        q = NULL;
    }
    FILE *f = fopen(path, "rb");
    int32_t header[MODEL_FILE_HEADER_INTS];
    CHECK(f != NULL && fread(header, sizeof(header), 1, f) == 1, "cannot read the header back");
    if (f != NULL) fclose(f);
    float theta, eps;
    memcpy(&theta, &header[10], 4);
    memcpy(&eps, &header[11], 4);
    CHECK(header[0] == 20261208 && header[1] == 3 && header[2] == 16 && header[3] == 67 && header[4] == 2 && header[5] == 4 && header[6] == 32 &&
              header[7] == 72 && header[8] == 2 && header[9] == 48 && theta == 123456.789f && eps == 1e-6f,
          "header words [%d %d %d %d %d %d %d %d %d %d %g %g]", header[0], header[1], header[2], header[3], header[4], header[5], header[6], header[7],
          header[8], header[9], theta, eps);
    // bf16: every value is the round-to-nearest-even bf16 of the original
    const char *path16 = testing_path(tmp_dir, "llama_bf16.bin");
    CHECK(llama_model_file_write(path16, &cfg, p, MODEL_FILE_VERSION_BF16, err, sizeof(err)) == 0, "write: %s", err);
    CHECK(llama_model_file_load(path16, NULL, &got, &version, &q, err, sizeof(err)) == 0, "load: %s", err);
    if (q != NULL) {
        CHECK(version == 5 && llama_config_equal(&got, &cfg), "version %d or config differs", version);
        size_t wrong = 0;
        for (size_t i = 0; i < n; i++) {
            float want = bf16_bits_to_float(bf16_bits_from_float_rne(p[i]));
            wrong += memcmp(&want, &q[i], sizeof(float)) != 0;
        }
        CHECK(wrong == 0, "%zu of %zu bf16 values differ from the rounded originals", wrong, n);
        free(q);
        q = NULL;
    }
    // a different expected configuration is named
    LlamaConfig other = cfg;
    other.num_kv_heads = 4;
    CHECK(llama_model_file_load(path, &other, &got, &version, &q, err, sizeof(err)) != 0 &&
              strstr(err, "num_kv_heads is 2 in the file, 4 expected") != NULL && q == NULL,
          "kv-head mismatch: %s", err);
    other = cfg;
    other.rope_theta = 500000.0f;
    CHECK(llama_model_file_load(path, &other, &got, &version, &q, err, sizeof(err)) != 0 &&
              strstr(err, "rope_theta is 123456.789 in the file, 500000 expected") != NULL,
          "rope_theta mismatch: %s", err);
    // a truncated file and a nonzero reserved word are refused
    const char *cut = testing_path(tmp_dir, "llama_cut.bin");
    CHECK(llama_model_file_write(cut, &cfg, p, MODEL_FILE_VERSION_FP32, err, sizeof(err)) == 0, "write: %s", err);
    CHECK(truncate(cut, (off_t)(1024 + n * 4 - 2)) == 0, "truncate");
    CHECK(llama_model_file_load(cut, NULL, &got, &version, &q, err, sizeof(err)) != 0 && strstr(err, "truncated") != NULL, "truncated: %s", err);
    const char *bad = testing_path(tmp_dir, "llama_reserved.bin");
    CHECK(llama_model_file_write(bad, &cfg, p, MODEL_FILE_VERSION_FP32, err, sizeof(err)) == 0, "write: %s", err);
    f = fopen(bad, "r+b");
    int32_t word = 7;
    CHECK(f != NULL && fseek(f, 100 * 4, SEEK_SET) == 0 && fwrite(&word, 4, 1, f) == 1, "patch");
    if (f != NULL) fclose(f);
    CHECK(llama_model_file_load(bad, NULL, &got, &version, &q, err, sizeof(err)) != 0 && strstr(err, "reserved word 100 is 7") != NULL,
          "reserved word: %s", err);
    // an invalid configuration is not written
    LlamaConfig invalid = cfg;
    invalid.num_kv_heads = 3;
    CHECK(llama_model_file_write(testing_path(tmp_dir, "never.bin"), &invalid, p, MODEL_FILE_VERSION_FP32, err, sizeof(err)) != 0 &&
              strstr(err, "num_kv_heads 3") != NULL,
          "invalid config written: %s", err);
    free(p);
}

// Each family's loader refuses the other's files by name and points to the right trainer.
static void test_cross_family_refusal(void) {
    CHECK(LLAMA_GPT2_MODEL_MAGIC == GPT2_MODEL_MAGIC, "llama_model.h's copy of the GPT-2 magic %d differs from gpt2_model.h's %d",
          LLAMA_GPT2_MODEL_MAGIC, GPT2_MODEL_MAGIC);
    char err[512], want[1024];
    GPT2Config g = gpt2_config_make(8, 37, 40, 2, 2, 8);
    ParamTable gt;
    CHECK(gpt2_param_table(&g, &gt, err, sizeof(err)) == 0, "%s", err);
    float *gp = (float *)calloc_check(gt.num_parameters, sizeof(float));
    const char *gpath = testing_path(tmp_dir, "gpt2.bin");
    CHECK(gpt2_model_file_write(gpath, &g, gp, MODEL_FILE_VERSION_FP32, err, sizeof(err)) == 0, "%s", err);
    LlamaConfig lc;
    int version;
    float *q = NULL;
    CHECK(llama_model_file_load(gpath, NULL, &lc, &version, &q, err, sizeof(err)) != 0 && q == NULL, "GPT-2 file loaded as Llama");
    snprintf(want, sizeof(want), "'%s' is a GPT-2 model file (magic 20240326), not a Llama one (magic 20261208); use train_gpt", gpath);
    CHECK(strcmp(err, want) == 0, "GPT-2 file given to the Llama loader: '%s'", err);
    LlamaConfig l = tiny_config();
    size_t n;
    float *lp = random_params(&l, &n, 3);
    const char *lpath = testing_path(tmp_dir, "llama.bin");
    CHECK(llama_model_file_write(lpath, &l, lp, MODEL_FILE_VERSION_BF16, err, sizeof(err)) == 0, "%s", err);
    GPT2Config gc;
    CHECK(gpt2_model_file_load(lpath, NULL, &gc, &version, &q, err, sizeof(err)) != 0 && q == NULL, "Llama file loaded as GPT-2");
    snprintf(want, sizeof(want), "'%s': this is a Llama model file (magic 20261208), not a GPT-2 one; use train_llama", lpath);
    CHECK(strcmp(err, want) == 0, "Llama file given to the GPT-2 loader: '%s'", err);
    // neither family: the plain bad-magic message of core/checkpoint.h
    const char *other = testing_path(tmp_dir, "other.bin");
    FILE *f = fopen(other, "wb");
    int32_t header[MODEL_FILE_HEADER_INTS] = {12345};
    CHECK(f != NULL && fwrite(header, sizeof(header), 1, f) == 1, "write");
    if (f != NULL) fclose(f);
    CHECK(llama_model_file_load(other, NULL, &lc, &version, &q, err, sizeof(err)) != 0 && strstr(err, "is not a Llama model file: magic 12345") != NULL,
          "unknown magic: %s", err);
    free(gp);
    free(lp);
}

int main(void) {
    testing_tmpdir_create(tmp_dir, sizeof(tmp_dir), "test_llama_cpu");
    RUN_TEST(test_config_validation);
    RUN_TEST(test_param_table);
    RUN_TEST(test_tensor_parallel_checks);
    RUN_TEST(test_init);
    RUN_TEST(test_rmsnorm);
    RUN_TEST(test_rope);
    RUN_TEST(test_gqa_attention);
    RUN_TEST(test_swiglu);
    RUN_TEST(test_model_gradients);
    RUN_TEST(test_model_positions_and_causality);
    RUN_TEST(test_thread_count_independence);
    RUN_TEST(test_weight_decay_flags);
    RUN_TEST(test_adamw_lowers_loss);
    RUN_TEST(test_model_file_roundtrip);
    RUN_TEST(test_cross_family_refusal);
    testing_tmpdir_remove(tmp_dir);
    return testing_finish();
}
