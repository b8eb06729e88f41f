// ref_dump: the C side of the independent PyTorch check (dev/torch_reference_check.py), and a writer
// of GPT-2 initializations for the PyTorch benchmark peer (dev/bench/torch_gpt2.py).
//
//   ref_dump --out DIR [--seed S] [-L layers] [--heads NH] [-C channels] [-V vocab] [--vp padded_vocab]
//            [--max-seq-len maxT] [-b B] [-t T]
//       Builds a small GPT-2 with the CPU reference (test/reference/gpt2_cpu.h), initialized from the
//       seed (gpt2_model.h's parameter table) and then perturbed (below), runs forward + backward on one batch of
//       random tokens and two AdamW steps on that gradient, and writes into DIR:
//         model.bin       the parameters before the steps, llm.c model file version 3 (fp32)
//         model_bf16.bin  the same parameters, version 5 (bf16, rounded to nearest even)
//         tokens.bin      the batch as a token shard (dev/data/README.md): B*T+1 tokens, inputs are
//                         the first B*T, targets the last B*T (the dataloader's window)
//         reference.bin   the results, format below
//   ref_dump --init PRESET --out FILE [--seed S] [--version 3|5]
//       Writes only the GPT-2 initialization of a preset (d12, d24, ...) from the seed: the same
//       parameters the trainers draw, so a PyTorch run can start from identical weights.
//
// reference.bin (little-endian):
//   int32 header[256]: [0] magic 20261125, [1] version 1, [2] B, [3] T, [4] num_parameters, rest 0
//   float32 scalars[8]: loss (mean cross-entropy over the B*T targets), gradient norm, lr, beta1,
//                       beta2, eps, weight_decay, grad_clip
//   float32 grads[num_parameters]        d loss / d params, llm.c order (gpt2_model.h)
//   float32 params_step1[num_parameters] after AdamW step 1 (gpt2_cpu_update: clip, then AdamW)
//   float32 params_step2[num_parameters] after AdamW step 2 with the same gradients
// grad_clip is set to half the gradient norm so that the clipping is exercised.
//
// Perturbation: every parameter gets N(0, 0.05^2) noise added after the GPT-2 init, so biases, LN
// gains and the padded vocabulary rows wte[V..Vp) are no longer at their special values (zero / one),
// which would hide a missing bias, gain or padded-logit mask on the other side.
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
#include "test/reference/gpt2_cpu.h"

#define REFERENCE_MAGIC 20261125
#define REFERENCE_VERSION 1
#define REFERENCE_HEADER_INTS 256
#define PERTURB_STD 0.05f

typedef struct {
    const char *out;     // directory (check mode) or model file (--init mode)
    const char *preset;  // --init: preset name, NULL in check mode
    uint64_t seed;
    int version;         // --init: model file version
    GPT2Config cfg;      // check mode: the small model
    int B, T;
} DumpArgs;

static void usage(void) {
    fprintf(stderr,
            "usage: ref_dump --out DIR [--seed S] [-L layers] [--heads NH] [-C channels] [-V vocab] [--vp padded_vocab]\n"
            "                [--max-seq-len maxT] [-b B] [-t T]\n"
            "       ref_dump --init PRESET --out FILE [--seed S] [--version 3|5]\n");
}

// Parses a decimal integer flag value in [lo, hi]; exits with a message naming the flag otherwise.
static long long parse_int_flag(const char *flag, const char *value, long long lo, long long hi) {
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || v < lo || v > hi)
        fatal("flag %s: expected an integer in [%lld, %lld], got '%s'", flag, lo, hi, value);
    return v;
}

static void parse_args(int argc, char **argv, DumpArgs *a) {
    memset(a, 0, sizeof(*a));
    a->seed = 1337;
    a->version = MODEL_FILE_VERSION_FP32;
    a->cfg.max_seq_len = 32;
    a->cfg.vocab_size = 211;
    a->cfg.padded_vocab_size = 256;
    a->cfg.num_layers = 2;
    a->cfg.num_heads = 4;
    a->cfg.channels = 48;
    a->B = 3;
    a->T = 20;
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
        else if (strcmp(f, "--seed") == 0) a->seed = (uint64_t)parse_int_flag(f, v, 0, INT64_MAX);
        else if (strcmp(f, "--version") == 0) a->version = (int)parse_int_flag(f, v, 3, 5);
        else if (strcmp(f, "-L") == 0) a->cfg.num_layers = (int)parse_int_flag(f, v, 1, 64);
        else if (strcmp(f, "--heads") == 0) a->cfg.num_heads = (int)parse_int_flag(f, v, 1, 64);
        else if (strcmp(f, "-C") == 0) a->cfg.channels = (int)parse_int_flag(f, v, 1, 4096);
        else if (strcmp(f, "-V") == 0) a->cfg.vocab_size = (int)parse_int_flag(f, v, 2, 65536);
        else if (strcmp(f, "--vp") == 0) a->cfg.padded_vocab_size = (int)parse_int_flag(f, v, 2, 65536);
        else if (strcmp(f, "--max-seq-len") == 0) a->cfg.max_seq_len = (int)parse_int_flag(f, v, 1, 4096);
        else if (strcmp(f, "-b") == 0) a->B = (int)parse_int_flag(f, v, 1, 1024);
        else if (strcmp(f, "-t") == 0) a->T = (int)parse_int_flag(f, v, 1, 4096);
        else {
            usage();
            fatal("unknown flag '%s'", f);
        }
    }
    if (a->out == NULL) {
        usage();
        fatal("--out is required");
    }
    if (a->version != MODEL_FILE_VERSION_FP32 && a->version != MODEL_FILE_VERSION_BF16)
        fatal("flag --version: expected 3 (fp32) or 5 (bf16), got %d", a->version);
    char err[256];
    if (a->preset == NULL) {
        if (gpt2_config_validate(&a->cfg, err, sizeof(err)) != 0) fatal("bad model flags: %s", err);
        if (a->T > a->cfg.max_seq_len) fatal("flag -t: T=%d exceeds --max-seq-len %d", a->T, a->cfg.max_seq_len);
        if ((long long)a->B * a->T + 1 > 0x7fffffffLL) fatal("flags -b/-t: batch of %d x %d tokens is too large", a->B, a->T);
    }
}

// --init mode: writes the seed's GPT-2 initialization of a preset.
static void write_init(const DumpArgs *a) {
    char err[512];
    GPT2Config cfg;
    if (gpt2_config_preset(a->preset, &cfg, err, sizeof(err)) != 0) fatal("flag --init: %s", err);
    ParamTable table;
    if (gpt2_param_table(&cfg, &table, err, sizeof(err)) != 0) fatal("flag --init: %s", err);
    float *params = (float *)malloc_check(table.num_parameters * sizeof(float));
    param_table_init(&table, params, a->seed);
    if (gpt2_model_file_write(a->out, &cfg, params, a->version, err, sizeof(err)) != 0) fatal("%s", err);
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

// Check mode: model, batch, forward/backward, two AdamW steps, and the four files.
static void write_check_files(const DumpArgs *a) {
    if (mkdir(a->out, 0755) != 0 && errno != EEXIST) fatal("cannot create directory '%s': %s", a->out, strerror(errno));
    GPT2Cpu model;
    gpt2_cpu_build(&model, &a->cfg, a->B, a->T);
    size_t np = model.core.table.num_parameters;
    if (np > 0x7fffffffu) fatal("model has %zu parameters; reference.bin stores the count as int32", np);
    param_table_init(&model.core.table, model.core.params, a->seed);
    Rng rng;
    rng_seed(&rng, a->seed ^ 0x5EEDF00Dull);
    float *noise = (float *)malloc_check(np * sizeof(float));
    rng_fill_normal(&rng, noise, np, 0.0f, PERTURB_STD);
    for (size_t i = 0; i < np; i++) model.core.params[i] += noise[i];
    free(noise);

    int BT = a->B * a->T;
    int *tokens = (int *)malloc_check((size_t)(BT + 1) * sizeof(int));
    for (int i = 0; i <= BT; i++) tokens[i] = (int)rng_below(&rng, (uint64_t)a->cfg.vocab_size);

    char path[4096], err[512];
    join_path(path, sizeof(path), a->out, "model.bin");
    if (gpt2_model_file_write(path, &a->cfg, model.core.params, MODEL_FILE_VERSION_FP32, err, sizeof(err)) != 0) fatal("%s", err);
    join_path(path, sizeof(path), a->out, "model_bf16.bin");
    if (gpt2_model_file_write(path, &a->cfg, model.core.params, MODEL_FILE_VERSION_BF16, err, sizeof(err)) != 0) fatal("%s", err);
    join_path(path, sizeof(path), a->out, "tokens.bin");
    write_shard(path, tokens, BT + 1);

    float loss = gpt2_cpu_forward(&model, tokens, tokens + 1);
    gpt2_cpu_zero_grad(&model);
    gpt2_cpu_backward(&model, 1);
    float *grads = (float *)malloc_check(np * sizeof(float));
    memcpy(grads, model.core.grads, np * sizeof(float));
    float norm = cpu_global_norm(model.core.grads, np);
    AdamWConfig opt;
    opt.beta1 = 0.9f;
    opt.beta2 = 0.95f;
    opt.eps = 1e-8f;
    opt.weight_decay = 0.1f;
    opt.grad_clip = 0.5f * norm;
    const float lr = 1e-3f;
    float *after = (float *)malloc_check(2 * np * sizeof(float));
    for (int step = 1; step <= 2; step++) {
        gpt2_cpu_update(&model, &opt, lr, step);
        memcpy(after + (size_t)(step - 1) * np, model.core.params, np * sizeof(float));
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
    printf("ref_dump: L=%d NH=%d C=%d V=%d Vp=%d maxT=%d B=%d T=%d, %zu parameters, loss %.6f, grad norm %.6f -> %s\n",
           a->cfg.num_layers, a->cfg.num_heads, a->cfg.channels, a->cfg.vocab_size, a->cfg.padded_vocab_size, a->cfg.max_seq_len,
           a->B, a->T, np, (double)loss, (double)norm, a->out);
    free(after);
    free(grads);
    free(tokens);
    gpt2_cpu_free(&model);
}

int main(int argc, char **argv) {
    DumpArgs a;
    parse_args(argc, argv, &a);
    if (a.preset != NULL) write_init(&a);
    else write_check_files(&a);
    return 0;
}
