// ref_dump: the C side of the independent PyTorch checks (dev/torch_reference_check.py for GPT-2,
// dev/torch_llama_reference_check.py for Llama), and a writer of initializations for the PyTorch
// benchmark peers (dev/bench/torch_gpt2.py, dev/bench/torch_llama.py).
//
//   ref_dump --out DIR [--family gpt2|llama] [--seed S] [-L layers] [--heads NH] [-C channels] [-V vocab]
//            [--vp padded_vocab] [--max-seq-len maxT] [-b B] [-t T]
//            [--kv-heads NKV] [--ffn F] [--rope-theta THETA] [--norm-eps EPS]     (the last four: llama only)
//       Builds a small model with the CPU reference (test/reference/gpt2_cpu.h, or llama_cpu.h with
//       --family llama), initialized from the seed (the family's parameter table) and then perturbed
//       (below), runs forward + backward on one batch of random tokens and two AdamW steps on that
//       gradient, and writes into DIR:
//         model.bin       the parameters before the steps, the family's model file version 3 (fp32): llm.c's
//                         GPT-2 file, or llama_model.h's Llama file (magic 20261208)
//         model_bf16.bin  the same parameters, version 5 (bf16, rounded to nearest even)
//         tokens.bin      the batch as a token shard (dev/data/README.md): B*T+1 tokens, inputs are
//                         the first B*T, targets the last B*T (the dataloader's window)
//         reference.bin   the results, format below
//       Defaults: GPT-2 L=2 NH=4 C=48 V=211 Vp=256 maxT=32 B=3 T=20; Llama the same but C=64, NKV=2, F=96,
//       rope_theta 10000 (with head size 16, a theta of 10000 turns every channel pair by a visible angle
//       within T=20 positions; Llama 3's 500000 leaves the last pairs almost still) and norm_eps 1e-5.
//   ref_dump --init PRESET --out FILE [--seed S] [--version 3|5]
//       Writes only the initialization of a preset (GPT-2: d12, d24, ...; Llama: l125m, l350m, l1b) from
//       the seed: the same parameters the trainers draw, so a PyTorch run can start from identical weights.
//
// reference.bin (little-endian), the same for both families:
//   int32 header[256]: [0] magic 20261125, [1] version 1, [2] B, [3] T, [4] num_parameters, rest 0
//   float32 scalars[8]: loss (mean cross-entropy over the B*T targets), gradient norm, lr, beta1,
//                       beta2, eps, weight_decay, grad_clip
//   float32 grads[num_parameters]        d loss / d params, in the order of the family's parameter table
//   float32 params_step1[num_parameters] after AdamW step 1 (gpt2_cpu_update / llama_cpu_update: clip, then AdamW)
//   float32 params_step2[num_parameters] after AdamW step 2 with the same gradients
// grad_clip is set to half the gradient norm so that the clipping is exercised.
//
// Perturbation: every parameter gets N(0, 0.05^2) noise added after the init, so biases, norm gains and
// the padded vocabulary rows (wte[V..Vp), and Llama's lm_head[V..Vp)) are no longer at their special
// values (zero / one), which would hide a missing bias, gain or padded-logit mask on the other side.
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/checkpoint.h"
#include "core/param_table.h"
#include "core/rng.h"
#include "core/utils.h"
#include "dataloader/dataloader.h"
#include "gpt2_model.h"
#include "llama_model.h"
#include "test/reference/gpt2_cpu.h"
#include "test/reference/llama_cpu.h"

#define REFERENCE_MAGIC 20261125
#define REFERENCE_VERSION 1
#define REFERENCE_HEADER_INTS 256
#define PERTURB_STD 0.05f

typedef struct {
    const char *out;     // directory (check mode) or model file (--init mode)
    const char *preset;  // --init: preset name, NULL in check mode
    uint64_t seed;
    int version;         // --init: model file version
    int llama;           // check mode: 1 for --family llama
    GPT2Config cfg;      // check mode, GPT-2: the small model
    LlamaConfig lcfg;    // check mode, Llama: the small model
    int B, T;
} DumpArgs;

static void usage(void) {
    fprintf(stderr,
            "usage: ref_dump --out DIR [--family gpt2|llama] [--seed S] [-L layers] [--heads NH] [-C channels] [-V vocab]\n"
            "                [--vp padded_vocab] [--max-seq-len maxT] [-b B] [-t T]\n"
            "                [--kv-heads NKV] [--ffn F] [--rope-theta THETA] [--norm-eps EPS]   (llama only)\n"
            "       ref_dump --init PRESET --out FILE [--seed S] [--version 3|5]   (PRESET: d12|d24|d36|d48|l125m|l350m|l1b)\n");
}

// "flag <flag>": how the value parsers (core/utils.h) name a flag in their messages.
static const char *flag_label(const char *flag) {
    static char label[64];
    snprintf(label, sizeof(label), "flag %s", flag);
    return label;
}

// A decimal integer flag value in [lo, hi]; exits with a message naming the flag otherwise.
static long long parse_int_flag(const char *flag, const char *value, long long lo, long long hi) {
    return parse_int_check(flag_label(flag), value, lo, hi);
}

// A finite float flag value (rounded to float by strtof); exits with a message naming the flag otherwise.
static float parse_float_flag(const char *flag, const char *value) { return parse_float_check(flag_label(flag), value); }

static void parse_args(int argc, char **argv, DumpArgs *a) {
    memset(a, 0, sizeof(*a));
    a->seed = 1337;
    a->version = MODEL_FILE_VERSION_FP32;
    a->B = 3;
    a->T = 20;
    // -1: not given, the family's default below
    int maxT = 32, V = 211, Vp = 256, L = 2, NH = 4, C = -1, NKV = -1, F = -1;
    float theta = 10000.0f, eps = 1e-5f;
    const char *llama_only = NULL;  // the first Llama-only flag given
    const char *family = "gpt2";
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "-h") == 0 || strcmp(f, "--help") == 0) {
            usage();
            exit(0);
        }
        if (i + 1 >= argc) {
            usage();
            fatal("flag %s needs a value", f);
        }
        const char *v = argv[++i];
        if (strcmp(f, "--out") == 0) a->out = v;
        else if (strcmp(f, "--init") == 0) a->preset = v;
        else if (strcmp(f, "--family") == 0) family = v;
        else if (strcmp(f, "--seed") == 0) a->seed = (uint64_t)parse_int_flag(f, v, 0, INT64_MAX);
        else if (strcmp(f, "--version") == 0) a->version = (int)parse_int_flag(f, v, 3, 5);
        else if (strcmp(f, "-L") == 0) L = (int)parse_int_flag(f, v, 1, 64);
        else if (strcmp(f, "--heads") == 0) NH = (int)parse_int_flag(f, v, 1, 64);
        else if (strcmp(f, "-C") == 0) C = (int)parse_int_flag(f, v, 1, 4096);
        else if (strcmp(f, "-V") == 0) V = (int)parse_int_flag(f, v, 2, 65536);
        else if (strcmp(f, "--vp") == 0) Vp = (int)parse_int_flag(f, v, 2, 65536);
        else if (strcmp(f, "--max-seq-len") == 0) maxT = (int)parse_int_flag(f, v, 1, 4096);
        else if (strcmp(f, "-b") == 0) a->B = (int)parse_int_flag(f, v, 1, 1024);
        else if (strcmp(f, "-t") == 0) a->T = (int)parse_int_flag(f, v, 1, 4096);
        else if (strcmp(f, "--kv-heads") == 0) NKV = (int)parse_int_flag(f, v, 1, 64);
        else if (strcmp(f, "--ffn") == 0) F = (int)parse_int_flag(f, v, 1, 16384);
        else if (strcmp(f, "--rope-theta") == 0) theta = parse_float_flag(f, v);
        else if (strcmp(f, "--norm-eps") == 0) eps = parse_float_flag(f, v);
        else {
            usage();
            fatal("unknown flag '%s'", f);
        }
        if (llama_only == NULL && (strcmp(f, "--kv-heads") == 0 || strcmp(f, "--ffn") == 0 || strcmp(f, "--rope-theta") == 0 ||
                                   strcmp(f, "--norm-eps") == 0))
            llama_only = f;
    }
    if (a->out == NULL) {
        usage();
        fatal("--out is required");
    }
    if (a->version != MODEL_FILE_VERSION_FP32 && a->version != MODEL_FILE_VERSION_BF16)
        fatal("flag --version: expected 3 (fp32) or 5 (bf16), got %d", a->version);
    if (strcmp(family, "gpt2") == 0) a->llama = 0;
    else if (strcmp(family, "llama") == 0) a->llama = 1;
    else fatal("flag --family: expected gpt2 or llama, got '%s'", family);
    if (a->preset != NULL) return;  // --init: the preset names the family and the configuration
    if (!a->llama && llama_only != NULL) fatal("flag %s is for --family llama only", llama_only);
    char err[256];
    if (a->llama) {
        a->lcfg = llama_config_make(maxT, V, Vp, L, NH, NKV > 0 ? NKV : 2, C > 0 ? C : 64, F > 0 ? F : 96, theta, eps);
        if (llama_config_validate(&a->lcfg, err, sizeof(err)) != 0) fatal("bad model flags: %s", err);
    } else {
        a->cfg = gpt2_config_make(maxT, V, Vp, L, NH, C > 0 ? C : 48);
        if (gpt2_config_validate(&a->cfg, err, sizeof(err)) != 0) fatal("bad model flags: %s", err);
    }
    if (a->T > maxT) fatal("flag -t: T=%d exceeds --max-seq-len %d", a->T, maxT);
    if ((long long)a->B * a->T + 1 > 0x7fffffffLL) fatal("flags -b/-t: batch of %d x %d tokens is too large", a->B, a->T);
}

// --init mode: writes the seed's initialization of a preset (GPT-2 or Llama, found by its name).
static void write_init(const DumpArgs *a) {
    char err[512], lerr[512];
    GPT2Config cfg;
    LlamaConfig lcfg;
    ParamTable table;
    int llama = 0;
    if (gpt2_config_preset(a->preset, &cfg, err, sizeof(err)) != 0) {
        if (llama_config_preset(a->preset, &lcfg, lerr, sizeof(lerr)) != 0) fatal("flag --init: %s; %s", err, lerr);
        llama = 1;
    }
    if (llama ? llama_param_table(&lcfg, &table, err, sizeof(err)) : gpt2_param_table(&cfg, &table, err, sizeof(err)))
        fatal("flag --init: %s", err);
    float *params = (float *)malloc_check(table.num_parameters * sizeof(float));
    param_table_init(&table, params, a->seed);
    if (llama ? llama_model_file_write(a->out, &lcfg, params, a->version, err, sizeof(err))
              : gpt2_model_file_write(a->out, &cfg, params, a->version, err, sizeof(err)))
        fatal("%s", err);
    printf("ref_dump: wrote %s init (seed %llu, %zu parameters, version %d) to %s\n", a->preset, (unsigned long long)a->seed,
           table.num_parameters, a->version, a->out);
    free(params);
}

// Writes `tokens` (num_tokens ids < 65536) as a token shard: int32 header [20240520, 1, N], uint16 tokens.
static void write_shard(const char *path, const int *tokens, int num_tokens) {
    int32_t header[SHARD_HEADER_INTS];
    memset(header, 0, sizeof(header));
    header[0] = SHARD_MAGIC;
    header[1] = SHARD_VERSION;
    header[2] = num_tokens;
    uint16_t *ids = (uint16_t *)malloc_check((size_t)num_tokens * sizeof(uint16_t));
    for (int i = 0; i < num_tokens; i++) ids[i] = (uint16_t)tokens[i];
    FILE *f = fopen_check(path, "wb");
    fwrite_check(header, sizeof(header), 1, f);
    fwrite_check(ids, sizeof(uint16_t), (size_t)num_tokens, f);
    if (fclose(f) != 0) fatal("closing '%s' failed", path);
    free(ids);
}

// Builds "<dir>/<name>" into a fixed buffer.
static void join_path(char *out, size_t size, const char *dir, const char *name) {
    if ((size_t)snprintf(out, size, "%s/%s", dir, name) >= size) fatal("path '%s/%s' is too long", dir, name);
}

// The CPU reference model of either family, behind the few calls check mode makes.
typedef struct {
    int llama;
    GPT2Cpu gpt2;
    LlamaCpu lm;
    const ParamTable *table;  // the family's parameter table (inside gpt2 or lm)
    float *params;            // table->num_parameters, table order
} RefModel;

static void ref_model_build(RefModel *r, const DumpArgs *a) {
    memset(r, 0, sizeof(*r));
    r->llama = a->llama;
    if (r->llama) {
        llama_cpu_build(&r->lm, &a->lcfg, a->B, a->T);
        r->table = &r->lm.core.table;
        r->params = r->lm.core.params;
    } else {
        gpt2_cpu_build(&r->gpt2, &a->cfg, a->B, a->T);
        r->table = &r->gpt2.core.table;
        r->params = r->gpt2.core.params;
    }
}

static int ref_model_vocab_size(const RefModel *r) { return r->llama ? r->lm.config.vocab_size : r->gpt2.config.vocab_size; }

// Writes the parameters as the family's model file, version 3 or 5.
static void ref_model_write(const RefModel *r, const char *path, int version) {
    char err[512];
    if (r->llama ? llama_model_file_write(path, &r->lm.config, r->params, version, err, sizeof(err))
                 : gpt2_model_file_write(path, &r->gpt2.config, r->params, version, err, sizeof(err)))
        fatal("%s", err);
}

// Forward with targets, zeroed gradients, backward of the mean loss. Returns the loss; the gradients are
// then in ref_model_grads(r).
static float ref_model_forward_backward(RefModel *r, const int *inputs, const int *targets) {
    if (r->llama) {
        float loss = llama_cpu_forward(&r->lm, inputs, targets);
        llama_cpu_zero_grad(&r->lm);
        llama_cpu_backward(&r->lm, 1);
        return loss;
    }
    float loss = gpt2_cpu_forward(&r->gpt2, inputs, targets);
    gpt2_cpu_zero_grad(&r->gpt2);
    gpt2_cpu_backward(&r->gpt2, 1);
    return loss;
}

static const float *ref_model_grads(const RefModel *r) { return r->llama ? r->lm.core.grads : r->gpt2.core.grads; }

static void ref_model_update(RefModel *r, const AdamWConfig *opt, float lr, int step) {
    if (r->llama) llama_cpu_update(&r->lm, opt, lr, step);
    else gpt2_cpu_update(&r->gpt2, opt, lr, step);
}

static void ref_model_describe(const RefModel *r, char *out, size_t size) {
    if (r->llama) {
        const LlamaConfig *c = &r->lm.config;
        snprintf(out, size, "Llama L=%d NH=%d NKV=%d C=%d F=%d V=%d Vp=%d maxT=%d rope_theta=%.9g norm_eps=%.9g", c->num_layers, c->num_heads,
                 c->num_kv_heads, c->channels, c->ffn_hidden, c->vocab_size, c->padded_vocab_size, c->max_seq_len, (double)c->rope_theta,
                 (double)c->norm_eps);
    } else {
        const GPT2Config *c = &r->gpt2.config;
        snprintf(out, size, "L=%d NH=%d C=%d V=%d Vp=%d maxT=%d", c->num_layers, c->num_heads, c->channels, c->vocab_size,
                 c->padded_vocab_size, c->max_seq_len);
    }
}

static void ref_model_free(RefModel *r) {
    if (r->llama) llama_cpu_free(&r->lm);
    else gpt2_cpu_free(&r->gpt2);
}

// Check mode: model, batch, forward/backward, two AdamW steps, and the four files.
static void write_check_files(const DumpArgs *a) {
    if (mkdir(a->out, 0755) != 0 && errno != EEXIST) fatal("cannot create directory '%s': %s", a->out, strerror(errno));
    RefModel model;
    ref_model_build(&model, a);
    size_t np = model.table->num_parameters;
    if (np > 0x7fffffffu) fatal("model has %zu parameters; reference.bin stores the count as int32", np);
    param_table_init(model.table, model.params, a->seed);
    Rng rng;
    rng_seed(&rng, a->seed ^ 0x5EEDF00Dull);
    float *noise = (float *)malloc_check(np * sizeof(float));
    rng_fill_normal(&rng, noise, np, 0.0f, PERTURB_STD);
    for (size_t i = 0; i < np; i++) model.params[i] += noise[i];
    free(noise);

    int BT = a->B * a->T;
    int *tokens = (int *)malloc_check((size_t)(BT + 1) * sizeof(int));
    for (int i = 0; i <= BT; i++) tokens[i] = (int)rng_below(&rng, (uint64_t)ref_model_vocab_size(&model));

    char path[4096];
    join_path(path, sizeof(path), a->out, "model.bin");
    ref_model_write(&model, path, MODEL_FILE_VERSION_FP32);
    join_path(path, sizeof(path), a->out, "model_bf16.bin");
    ref_model_write(&model, path, MODEL_FILE_VERSION_BF16);
    join_path(path, sizeof(path), a->out, "tokens.bin");
    write_shard(path, tokens, BT + 1);

    float loss = ref_model_forward_backward(&model, tokens, tokens + 1);
    float *grads = (float *)malloc_check(np * sizeof(float));
    memcpy(grads, ref_model_grads(&model), np * sizeof(float));
    float norm = cpu_global_norm(grads, np);
    AdamWConfig opt;
    opt.beta1 = 0.9f;
    opt.beta2 = 0.95f;
    opt.eps = 1e-8f;
    opt.weight_decay = 0.1f;
    opt.grad_clip = 0.5f * norm;
    const float lr = 1e-3f;
    float *after = (float *)malloc_check(2 * np * sizeof(float));
    for (int step = 1; step <= 2; step++) {
        ref_model_update(&model, &opt, lr, step);
        memcpy(after + (size_t)(step - 1) * np, model.params, np * sizeof(float));
    }

    int32_t header[REFERENCE_HEADER_INTS];
    memset(header, 0, sizeof(header));
    header[0] = REFERENCE_MAGIC;
    header[1] = REFERENCE_VERSION;
    header[2] = a->B;
    header[3] = a->T;
    header[4] = (int32_t)np;
    float scalars[8] = {loss, norm, lr, opt.beta1, opt.beta2, opt.eps, opt.weight_decay, opt.grad_clip};
    join_path(path, sizeof(path), a->out, "reference.bin");
    FILE *f = fopen_check(path, "wb");
    fwrite_check(header, sizeof(header), 1, f);
    fwrite_check(scalars, sizeof(float), 8, f);
    fwrite_check(grads, sizeof(float), np, f);
    fwrite_check(after, sizeof(float), 2 * np, f);
    if (fclose(f) != 0) fatal("closing '%s' failed", path);
    char desc[256];
    ref_model_describe(&model, desc, sizeof(desc));
    printf("ref_dump: %s B=%d T=%d, %zu parameters, loss %.6f, grad norm %.6f -> %s\n", desc, a->B, a->T, np, (double)loss, (double)norm,
           a->out);
    free(after);
    free(grads);
    free(tokens);
    ref_model_free(&model);
}

int main(int argc, char **argv) {
    DumpArgs a;
    parse_args(argc, argv, &a);
    if (a.preset != NULL) write_init(&a);
    else write_check_files(&a);
    return 0;
}
