// model_tool: small model files and their CPU-reference logits, for the Hugging Face checks
// (test/test_export_hf.py, dev/check_hf_logits.py) and by hand.
//
//   model_tool init [--seed S] [--version 3|5] [--weight-scale K] gpt2 MAXT V VP L NH C OUT_FILE
//   model_tool init [--seed S] [--version 3|5] [--weight-scale K] llama MAXT V VP L NH NKV C F ROPE_THETA NORM_EPS OUT_FILE
//       Writes a random model of that configuration (gpt2_model.h / llama_model.h field names: max_seq_len,
//       vocab_size, padded_vocab_size, num_layers, num_heads, [num_kv_heads,] channels, [ffn_hidden, rope_theta,
//       norm_eps]): param_table_init from the seed (default 1337), then every tensor initialised to 0 or 1 (biases,
//       LayerNorm / RMSNorm gains) gets N(0, 0.1^2) added, so that a tensor mapped to the wrong place changes the
//       results; with --weight-scale K (default 1) the randomly drawn weights are multiplied by K (larger weights
//       make attention far from uniform, so mistakes in q, k and RoPE show in the logits). The padded vocabulary
//       rows stay 0. Version 3 (fp32, default) or 5 (bf16).
//   model_tool logits MODEL_FILE TOKENS_FILE B T OUT_FILE
//       Runs the CPU reference forward (test/reference/gpt2_cpu.h or llama_cpu.h, chosen by the file's magic) on
//       the B*T tokens of TOKENS_FILE (int32 little-endian, exactly B*T values, each in [0, vocab_size), row b of
//       the batch = tokens [b*T, (b+1)*T)) and writes the logits of the real vocabulary: float32 little-endian
//       [B*T, V], row b*T + t = position t of sequence b (the padded columns V..Vp are left out). Atomic write.
//
// Every error exits with status 1 and one line "error: ..." naming the argument or file at fault.
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checkpoint.h"
#include "core/param_table.h"
#include "core/rng.h"
#include "core/utils.h"
#include "gpt2_model.h"
#include "llama_model.h"
#include "test/reference/gpt2_cpu.h"
#include "test/reference/llama_cpu.h"

#define PERTURB_STD 0.1f
#define MAX_BT (1 << 24)  // tokens per logits call (B*T), far above what a CPU reference run takes

static void usage(FILE *f) {
    fprintf(f,
            "usage: model_tool init [--seed S] [--version 3|5] [--weight-scale K] gpt2 MAXT V VP L NH C OUT_FILE\n"
            "       model_tool init [--seed S] [--version 3|5] [--weight-scale K] llama MAXT V VP L NH NKV C F ROPE_THETA NORM_EPS OUT_FILE\n"
            "       model_tool logits MODEL_FILE TOKENS_FILE B T OUT_FILE\n"
            "(see the top of dev/model_tool.c)\n");
}

// Adds N(0, PERTURB_STD^2) to every tensor initialised to a constant and scales the drawn ones by `scale`.
static void perturb(const ParamTable *t, float *params, uint64_t seed, float scale) {
    Rng rng;
    rng_seed(&rng, seed ^ 0x9E3779B97F4A7C15ull);
    for (int i = 0; i < t->count; i++) {
        const ParamSpec *s = &t->specs[i];
        float *p = params + s->offset;
        if (s->init == PARAM_INIT_NORMAL) {
            for (size_t j = 0; j < s->size; j++) p[j] *= scale;  // the padded rows stay 0
        } else {
            for (size_t j = 0; j < s->size; j++) p[j] += rng_normal(&rng, 0.0f, PERTURB_STD);
        }
    }
}

static int cmd_init(int argc, char **argv) {
    uint64_t seed = 1337;
    int version = MODEL_FILE_VERSION_FP32;
    float scale = 1.0f;
    int i = 0;
    while (i < argc && strncmp(argv[i], "--", 2) == 0) {
        const char *flag = argv[i];
        if (i + 1 >= argc) fatal("init: flag %s needs a value", flag);
        const char *v = argv[i + 1];
        if (strcmp(flag, "--seed") == 0) seed = (uint64_t)parse_int_check("init --seed", v, 0, INT64_MAX);
        else if (strcmp(flag, "--version") == 0) {
            version = (int)parse_int_check("init --version", v, 3, 5);
            if (version != MODEL_FILE_VERSION_FP32 && version != MODEL_FILE_VERSION_BF16) fatal("init --version: expected 3 (fp32) or 5 (bf16), got %d", version);
        } else if (strcmp(flag, "--weight-scale") == 0) {
            scale = parse_float_check("init --weight-scale", v);
            if (!(scale > 0.0f)) fatal("init --weight-scale: must be > 0, got '%s'", v);
        } else fatal("init: unknown flag '%s'", flag);
        i += 2;
    }
    if (i >= argc) {
        usage(stderr);
        fatal("init: the model family (gpt2 or llama) is missing");
    }
    const char *family = argv[i++];
    const int n = argc - i;  // configuration numbers + OUT_FILE
    char err[512];
    const int imax = 1 << 24;
    if (strcmp(family, "gpt2") == 0) {
        if (n != 7) {
            usage(stderr);
            fatal("init gpt2: expected 6 numbers (MAXT V VP L NH C) and OUT_FILE, got %d argument%s", n, n == 1 ? "" : "s");
        }
        const char *names[6] = {"MAXT", "V", "VP", "L", "NH", "C"};
        int v[6];
        for (int k = 0; k < 6; k++) {
            char what[64];
            snprintf(what, sizeof(what), "init gpt2 %s", names[k]);
            v[k] = (int)parse_int_check(what, argv[i + k], 1, imax);
        }
        const char *out = argv[i + 6];
        GPT2Config cfg = gpt2_config_make(v[0], v[1], v[2], v[3], v[4], v[5]);
        ParamTable table;
        if (gpt2_param_table(&cfg, &table, err, sizeof(err)) != 0) fatal("init gpt2: %s", err);
        float *params = (float *)malloc_check(table.num_parameters * sizeof(float));
        param_table_init(&table, params, seed);
        perturb(&table, params, seed, scale);
        if (gpt2_model_file_write(out, &cfg, params, version, err, sizeof(err)) != 0) fatal("%s", err);
        printf("model_tool: wrote GPT-2 maxT=%d V=%d Vp=%d L=%d NH=%d C=%d (%zu parameters, seed %llu, version %d) to %s\n", v[0], v[1], v[2],
               v[3], v[4], v[5], table.num_parameters, (unsigned long long)seed, version, out);
        free(params);
    } else if (strcmp(family, "llama") == 0) {
        if (n != 11) {
            usage(stderr);
            fatal("init llama: expected 10 values (MAXT V VP L NH NKV C F ROPE_THETA NORM_EPS) and OUT_FILE, got %d argument%s", n,
                  n == 1 ? "" : "s");
        }
        const char *names[8] = {"MAXT", "V", "VP", "L", "NH", "NKV", "C", "F"};
        int v[8];
        for (int k = 0; k < 8; k++) {
            char what[64];
            snprintf(what, sizeof(what), "init llama %s", names[k]);
            v[k] = (int)parse_int_check(what, argv[i + k], 1, imax);
        }
        const float theta = parse_float_check("init llama ROPE_THETA", argv[i + 8]);
        const float eps = parse_float_check("init llama NORM_EPS", argv[i + 9]);
        const char *out = argv[i + 10];
        LlamaConfig cfg = llama_config_make(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], theta, eps);
        ParamTable table;
        if (llama_param_table(&cfg, &table, err, sizeof(err)) != 0) fatal("init llama: %s", err);
        float *params = (float *)malloc_check(table.num_parameters * sizeof(float));
        param_table_init(&table, params, seed);
        perturb(&table, params, seed, scale);
        if (llama_model_file_write(out, &cfg, params, version, err, sizeof(err)) != 0) fatal("%s", err);
        printf("model_tool: wrote Llama maxT=%d V=%d Vp=%d L=%d NH=%d NKV=%d C=%d F=%d rope_theta=%.9g norm_eps=%.9g (%zu parameters, seed %llu, "
               "version %d) to %s\n",
               v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], (double)theta, (double)eps, table.num_parameters, (unsigned long long)seed, version,
               out);
        free(params);
    } else {
        usage(stderr);
        fatal("init: unknown model family '%s' (expected gpt2 or llama)", family);
    }
    return 0;
}

// Reads exactly n int32 tokens from path, each in [0, V).
static int *read_tokens(const char *path, size_t n, int V) {
    long long size;
    char err[512];
    FILE *f = checkpoint_open_read(path, &size, err, sizeof(err));
    if (f == NULL) fatal("%s", err);
    if (size != (long long)(n * sizeof(int32_t)))
        fatal("'%s': %lld bytes, but B*T = %zu int32 tokens need exactly %zu", path, size, n, n * sizeof(int32_t));
    int32_t *raw = (int32_t *)malloc_check(n * sizeof(int32_t));
    if (checkpoint_read(f, raw, n * sizeof(int32_t), path, "the tokens", err, sizeof(err)) != 0) fatal("%s", err);
    fclose(f);
    int *tokens = (int *)malloc_check(n * sizeof(int));
    for (size_t i = 0; i < n; i++) {
        if (raw[i] < 0 || raw[i] >= V) fatal("'%s': token %d at index %zu is outside [0, %d) (the model's vocab_size)", path, raw[i], i, V);
        tokens[i] = raw[i];
    }
    free(raw);
    return tokens;
}

// Writes rows [N] of the first V of Vp logits as float32 [N, V]. Atomic.
static void write_logits(const char *path, const float *logits, size_t N, int V, int Vp) {
    char err[512];
    AtomicWriter w;
    if (atomic_writer_open(&w, path, err, sizeof(err)) != 0) fatal("%s", err);
    for (size_t r = 0; r < N; r++)
        if (atomic_writer_write(&w, logits + r * (size_t)Vp, (size_t)V * sizeof(float), err, sizeof(err)) != 0) fatal("%s", err);
    if (atomic_writer_commit(&w, err, sizeof(err)) != 0) fatal("%s", err);
}

static int cmd_logits(int argc, char **argv) {
    if (argc != 5) {
        usage(stderr);
        fatal("logits: expected MODEL_FILE TOKENS_FILE B T OUT_FILE, got %d argument%s", argc, argc == 1 ? "" : "s");
    }
    const char *model_path = argv[0], *tokens_path = argv[1], *out = argv[4];
    const int B = (int)parse_int_check("logits B", argv[2], 1, MAX_BT);
    const int T = (int)parse_int_check("logits T", argv[3], 1, MAX_BT);
    if ((long long)B * T > MAX_BT) fatal("logits: B*T = %lld is above %d", (long long)B * T, MAX_BT);
    int32_t magic = 0;
    if (model_file_peek_magic(model_path, &magic) != 0) fatal("cannot read the first word of model file '%s'", model_path);
    char err[512];
    int version = 0;
    float *params;
    if (magic == GPT2_MODEL_MAGIC) {
        GPT2Config cfg;
        if (gpt2_model_file_load(model_path, NULL, &cfg, &version, &params, err, sizeof(err)) != 0) fatal("%s", err);
        if (T > cfg.max_seq_len) fatal("logits T: %d is above the model's max_seq_len %d", T, cfg.max_seq_len);
        int *tokens = read_tokens(tokens_path, (size_t)B * T, cfg.vocab_size);
        GPT2Cpu model;
        gpt2_cpu_build(&model, &cfg, B, T);
        memcpy(model.core.params, params, model.core.table.num_parameters * sizeof(float));
        gpt2_cpu_forward(&model, tokens, NULL);
        write_logits(out, model.core.act[ACT_LOGITS], (size_t)B * T, cfg.vocab_size, cfg.padded_vocab_size);
        printf("model_tool: GPT-2 logits [%d, %d] of %s (version %d) on %s -> %s\n", B * T, cfg.vocab_size, model_path, version, tokens_path, out);
        gpt2_cpu_free(&model);
        free(tokens);
    } else if (magic == LLAMA_MODEL_MAGIC) {
        LlamaConfig cfg;
        if (llama_model_file_load(model_path, NULL, &cfg, &version, &params, err, sizeof(err)) != 0) fatal("%s", err);
        if (T > cfg.max_seq_len) fatal("logits T: %d is above the model's max_seq_len %d", T, cfg.max_seq_len);
        int *tokens = read_tokens(tokens_path, (size_t)B * T, cfg.vocab_size);
        LlamaCpu model;
        llama_cpu_build(&model, &cfg, B, T);
        memcpy(model.core.params, params, model.core.table.num_parameters * sizeof(float));
        llama_cpu_forward(&model, tokens, NULL);
        write_logits(out, model.core.act[LLAMA_ACT_LOGITS], (size_t)B * T, cfg.vocab_size, cfg.padded_vocab_size);
        printf("model_tool: Llama logits [%d, %d] of %s (version %d) on %s -> %s\n", B * T, cfg.vocab_size, model_path, version, tokens_path, out);
        llama_cpu_free(&model);
        free(tokens);
    } else {
        fatal("'%s' is not a model file: magic %d, expected %d (GPT-2) or %d (Llama)", model_path, magic, GPT2_MODEL_MAGIC, LLAMA_MODEL_MAGIC);
    }
    free(params);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc < 2) {
        usage(stderr);
        fatal("a command is missing (init or logits)");
    }
    if (strcmp(argv[1], "init") == 0) return cmd_init(argc - 2, argv + 2);
    if (strcmp(argv[1], "logits") == 0) return cmd_logits(argc - 2, argv + 2);
    usage(stderr);
    fatal("unknown command '%s' (expected init or logits)", argv[1]);
}
