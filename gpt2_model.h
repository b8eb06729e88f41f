// GPT-2 on the host, shared by the CPU reference and the GPU trainer: the configuration, the named
// presets, the parameter table (llm.c's order; core/param_table.h) and the llm.c GPT-2 model file.
//
// Model file header (int32, core/checkpoint.h's layout): [0] magic 20240326, [1] version (3 fp32, 5 bf16),
// [2] max_seq_len, [3] vocab_size, [4] num_layers, [5] num_heads, [6] channels, [7] padded_vocab_size,
// [8..255] 0 (gpt2_model_file_format).
// GPT-2 weights converted for llm.c load here.
//
// Initialisation (GPT-2 / nanoGPT): weights N(0, 0.02^2), the two projections that feed the residual
// stream (attproj, fcproj) N(0, (0.02 / sqrt(2L))^2), biases 0, LayerNorm gains 1, the padded
// vocabulary's rows of wte 0.
// Plain C, also compiled as C++ by nvcc.
#ifndef GPT2_MODEL_H
#define GPT2_MODEL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/checkpoint.h"
#include "core/param_table.h"
#include "core/utils.h"
#include "llama_model.h"  // llama_model_file_is_llama: to name a Llama file given to the GPT-2 loader

#define GPT2_MODEL_MAGIC 20240326
// Bounds of the configuration fields (far above any GPT-2; they keep every product well inside 64 bits).
#define GPT2_MAX_SEQ_LEN (1 << 20)
#define GPT2_MAX_VOCAB (1 << 24)
#define GPT2_MAX_LAYERS 4096
#define GPT2_MAX_CHANNELS (1 << 16)

typedef struct {
    int max_seq_len;        // maxT: rows of the position embedding
    int vocab_size;         // V: real tokens (50257 for GPT-2)
    int padded_vocab_size;  // Vp: rows of the token embedding / classifier, >= V (50304 for GPT-2)
    int num_layers;         // L
    int num_heads;          // NH
    int channels;           // C, divisible by NH
} GPT2Config;

// The model file's format (core/checkpoint.h): the configuration's fields with their header words and
// bounds, in the order of checks and messages; for writing, reading, validation and comparison.
static inline int gpt2_model_file_num_parameters(const void *config, size_t *n, char *err, size_t err_size);
static inline int gpt2_model_file_refuse_other_family(const char *path, char *err, size_t err_size);
static inline const ModelFileFormat *gpt2_model_file_format(void) {
    static const ModelFileField fields[] = {
        MODEL_FILE_INT(GPT2Config, max_seq_len, 2, GPT2_MAX_SEQ_LEN),
        MODEL_FILE_INT(GPT2Config, vocab_size, 3, GPT2_MAX_VOCAB),
        MODEL_FILE_INT(GPT2Config, padded_vocab_size, 7, GPT2_MAX_VOCAB),
        MODEL_FILE_INT(GPT2Config, num_layers, 4, GPT2_MAX_LAYERS),
        MODEL_FILE_INT(GPT2Config, num_heads, 5, GPT2_MAX_CHANNELS),
        MODEL_FILE_INT(GPT2Config, channels, 6, GPT2_MAX_CHANNELS)};
    static const ModelFileFormat format = {"GPT-2", GPT2_MODEL_MAGIC, 8, (int)(sizeof(fields) / sizeof(fields[0])), fields,
                                           gpt2_model_file_num_parameters, gpt2_model_file_refuse_other_family};
    return &format;
}

// The parameter tensors, in llm.c's order (the order of model files and of the parameter buffer).
enum {
    GPT2_WTE = 0,   // [Vp, C]   token embedding, also the classifier (weight tying)
    GPT2_WPE,       // [maxT, C] position embedding
    GPT2_LN1W,      // [L, C]
    GPT2_LN1B,      // [L, C]
    GPT2_QKVW,      // [L, 3C, C]
    GPT2_QKVB,      // [L, 3C]
    GPT2_ATTPROJW,  // [L, C, C]
    GPT2_ATTPROJB,  // [L, C]
    GPT2_LN2W,      // [L, C]
    GPT2_LN2B,      // [L, C]
    GPT2_FCW,       // [L, 4C, C]
    GPT2_FCB,       // [L, 4C]
    GPT2_FCPROJW,   // [L, C, 4C]
    GPT2_FCPROJB,   // [L, C]
    GPT2_LNFW,      // [C]
    GPT2_LNFB,      // [C]
    GPT2_NUM_PARAM_TENSORS
};

// A configuration from its six numbers (tests and tools build small models with it).
static inline GPT2Config gpt2_config_make(int max_seq_len, int vocab_size, int padded_vocab_size, int num_layers,
                                          int num_heads, int channels) {
    GPT2Config cfg;
    cfg.max_seq_len = max_seq_len;
    cfg.vocab_size = vocab_size;
    cfg.padded_vocab_size = padded_vocab_size;
    cfg.num_layers = num_layers;
    cfg.num_heads = num_heads;
    cfg.channels = channels;
    return cfg;
}

// Fills *cfg with a named preset: d12, d24, d36, d48 are GPT-2 124M, 350M, 774M, 1558M.
// Returns 0, or -1 with a message naming the unknown preset.
static inline int gpt2_config_preset(const char *name, GPT2Config *cfg, char *err, size_t err_size) {
    static const struct { const char *name; int layers, heads, channels; } presets[] = {
        {"d12", 12, 12, 768}, {"d24", 24, 16, 1024}, {"d36", 36, 20, 1280}, {"d48", 48, 25, 1600}};
    for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++) {
        if (strcmp(name, presets[i].name) == 0) {
            *cfg = gpt2_config_make(1024, 50257, 50304, presets[i].layers, presets[i].heads, presets[i].channels);
            return 0;
        }
    }
    return set_error(err, err_size, "unknown GPT-2 model '%s' (expected d12, d24, d36 or d48)", name);
}

// Checks that a configuration is usable: every field inside its bounds (checked before anything is
// multiplied), channels divisible by heads. Returns 0, or -1 with a message naming the field and value.
static inline int gpt2_config_validate(const GPT2Config *c, char *err, size_t err_size) {
    if (model_config_check_bounds(gpt2_model_file_format(), c, err, err_size) != 0) return -1;
    if (c->padded_vocab_size < c->vocab_size)
        return set_error(err, err_size, "padded_vocab_size %d is smaller than vocab_size %d", c->padded_vocab_size, c->vocab_size);
    if (c->channels % c->num_heads != 0)
        return set_error(err, err_size, "channels %d must be a multiple of num_heads %d", c->channels, c->num_heads);
    return 0;
}

// Returns 1 when two configurations are identical in every field.
static inline int gpt2_config_equal(const GPT2Config *a, const GPT2Config *b) { return model_config_equal(gpt2_model_file_format(), a, b); }

// Fills the parameter table of a configuration (validated here). Returns 0, or -1 with a message.
static inline int gpt2_param_table(const GPT2Config *cfg, ParamTable *t, char *err, size_t err_size) {
    if (gpt2_config_validate(cfg, err, err_size) != 0) return -1;
    memset(t, 0, sizeof(*t));
    const size_t Vp = (size_t)cfg->padded_vocab_size, maxT = (size_t)cfg->max_seq_len;
    const size_t L = (size_t)cfg->num_layers, C = (size_t)cfg->channels;
    const float std = 0.02f, resid_std = 0.02f / sqrtf(2.0f * (float)cfg->num_layers);
    const ParamInit N = PARAM_INIT_NORMAL, Z = PARAM_INIT_ZERO, O = PARAM_INIT_ONE;
    // name, shape, per layer, init, std, weight decay (the embeddings and the four linear weights), TP split
    param_table_add(t, "wte", Vp, C, 0, 0, N, std, 1, TP_SPLIT_VOCAB);
    t->specs[GPT2_WTE].init_rows = (size_t)cfg->vocab_size;
    param_table_add(t, "wpe", maxT, C, 0, 0, N, std, 1, TP_REPLICATED);
    param_table_add(t, "ln1w", L, C, 0, 1, O, 0, 0, TP_REPLICATED);
    param_table_add(t, "ln1b", L, C, 0, 1, Z, 0, 0, TP_REPLICATED);
    param_table_add(t, "qkvw", L, 3 * C, C, 1, N, std, 1, TP_SPLIT_QKV_HEADS);
    param_table_add(t, "qkvb", L, 3 * C, 0, 1, Z, 0, 0, TP_SPLIT_QKV_HEADS);
    param_table_add(t, "attprojw", L, C, C, 1, N, resid_std, 1, TP_SPLIT_COLS);
    param_table_add(t, "attprojb", L, C, 0, 1, Z, 0, 0, TP_REPLICATED);
    param_table_add(t, "ln2w", L, C, 0, 1, O, 0, 0, TP_REPLICATED);
    param_table_add(t, "ln2b", L, C, 0, 1, Z, 0, 0, TP_REPLICATED);
    param_table_add(t, "fcw", L, 4 * C, C, 1, N, std, 1, TP_SPLIT_ROWS);
    param_table_add(t, "fcb", L, 4 * C, 0, 1, Z, 0, 0, TP_SPLIT_ROWS);
    param_table_add(t, "fcprojw", L, C, 4 * C, 1, N, resid_std, 1, TP_SPLIT_COLS);
    param_table_add(t, "fcprojb", L, C, 0, 1, Z, 0, 0, TP_REPLICATED);
    param_table_add(t, "lnfw", C, 0, 0, 0, O, 0, 0, TP_REPLICATED);
    param_table_add(t, "lnfb", C, 0, 0, 0, Z, 0, 0, TP_REPLICATED);
    t->specs[GPT2_QKVW].tp_units = cfg->num_heads;
    t->specs[GPT2_QKVB].tp_units = cfg->num_heads;
    return param_table_finish(t, err, err_size);
}

// ----------------------------------------------------------------------------
// Model files (core/checkpoint.h's model_file_* on gpt2_model_file_format)

static inline int gpt2_model_file_num_parameters(const void *config, size_t *n, char *err, size_t err_size) {
    ParamTable table;
    if (gpt2_param_table((const GPT2Config *)config, &table, err, err_size) != 0) return -1;
    *n = table.num_parameters;
    return 0;
}

// A Llama model file given to the GPT-2 loader is named as such.
static inline int gpt2_model_file_refuse_other_family(const char *path, char *err, size_t err_size) {
    if (llama_model_file_is_llama(path))
        return set_error(err, err_size, "'%s': this is a Llama model file (magic %d), not a GPT-2 one; use train_llama", path, LLAMA_MODEL_MAGIC);
    return 0;
}

// Writes cfg and its parameters (fp32, llm.c order) as a GPT-2 model file, version 3 (fp32) or 5 (bf16).
static inline int gpt2_model_file_write(const char *path, const GPT2Config *cfg, const float *params, int version, char *err,
                                        size_t err_size) {
    return model_file_write_config(path, gpt2_model_file_format(), cfg, params, version, err, err_size);
}

// Loads a GPT-2 model file (version 3 or 5) into a new fp32 buffer *params (the caller frees): the header
// (configuration validated, reserved words 8..255 zero as in llm.c's files, a Llama file refused by name)
// and the file's length are checked first. When `want` is not NULL the file's configuration must equal
// it. Fills *cfg and *version. Returns 0, or -1 with a message naming the file (and the first field that
// differs from `want`).
static inline int gpt2_model_file_load(const char *path, const GPT2Config *want, GPT2Config *cfg, int *version, float **params,
                                       char *err, size_t err_size) {
    return model_file_load(path, gpt2_model_file_format(), want, cfg, version, params, err, err_size);
}

#endif // GPT2_MODEL_H
