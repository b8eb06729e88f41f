// Llama (3 architecture) as the trainer core sees it (core/model.cuh's ModelFamily): presets, model files,
// parameter table (llama_model.h) and the limits of the GPU kernels. Its device operations (RMSNorm fused
// with the residual add, RoPE inside attention, grouped-query flash attention, SwiGLU epilogues) are not
// built yet: LLAMA_FAMILY.ops is NULL, and the training program stops after its host checks, saying so.
#ifndef LLAMA_CUH
#define LLAMA_CUH

#include <stdio.h>

#include "core/model.cuh"
#include "llama_model.h"

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
    "shards with the GPT-2 vocabulary (made by dev/data/prepare.py). Not built yet: its GPU kernels; the program checks\n"
    "the flags, the model and the data, then says so and exits 2.",
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
    NULL,  // the device operations: not built yet
};

#endif // LLAMA_CUH
