// GPT-2 model description shared by the CPU reference and the GPU trainer: the configuration,
// the named presets, the table of parameter tensors (llm.c's order, shapes and offsets in one
// contiguous buffer) and the deterministic GPT-2 style random initialization.
// Plain C, also compiled as C++ by nvcc.
#ifndef CORE_GPT2_MODEL_H
#define CORE_GPT2_MODEL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/rng.h"
#include "core/utils.h"

typedef struct {
    int max_seq_len;        // maxT: rows of the position embedding
    int vocab_size;         // V: real tokens (50257 for GPT-2)
    int padded_vocab_size;  // Vp: rows of the token embedding / classifier, >= V (50304 for GPT-2)
    int num_layers;         // L
    int num_heads;          // NH
    int channels;           // C, divisible by NH
} GPT2Config;

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

// How a parameter tensor is initialized (GPT-2 / nanoGPT rules).
typedef enum {
    GPT2_INIT_NORMAL = 0,     // N(0, 0.02^2)
    GPT2_INIT_NORMAL_RESID,   // N(0, (0.02 / sqrt(2L))^2): the projections that feed the residual stream
    GPT2_INIT_ZERO,           // biases
    GPT2_INIT_ONE             // LayerNorm gains
} GPT2Init;

typedef struct {
    const char *name;
    int ndim;
    size_t shape[3];
    size_t size;       // number of elements
    size_t offset;     // elements from the start of the parameter buffer
    int is_matrix;     // a (per-layer) 2-D weight: gets weight decay
    GPT2Init init;
} GPT2ParamTensor;

typedef struct {
    GPT2ParamTensor tensors[GPT2_NUM_PARAM_TENSORS];
    size_t num_parameters;   // total elements over all tensors
} GPT2ParamLayout;

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

// Checks that a configuration is usable; returns 0, or -1 with a message naming the bad field.
static inline int gpt2_config_validate(const GPT2Config *c, char *err, size_t err_size) {
    if (c->max_seq_len <= 0) return set_error(err, err_size, "max_seq_len must be positive, got %d", c->max_seq_len);
    if (c->vocab_size <= 0) return set_error(err, err_size, "vocab_size must be positive, got %d", c->vocab_size);
    if (c->padded_vocab_size < c->vocab_size)
        return set_error(err, err_size, "padded_vocab_size %d is smaller than vocab_size %d", c->padded_vocab_size, c->vocab_size);
    if (c->num_layers <= 0) return set_error(err, err_size, "num_layers must be positive, got %d", c->num_layers);
    if (c->num_heads <= 0) return set_error(err, err_size, "num_heads must be positive, got %d", c->num_heads);
    if (c->channels <= 0 || c->channels % c->num_heads != 0)
        return set_error(err, err_size, "channels %d must be a positive multiple of num_heads %d", c->channels, c->num_heads);
    return 0;
}

// Returns 1 when two configurations are identical in every field.
static inline int gpt2_config_equal(const GPT2Config *a, const GPT2Config *b) {
    return a->max_seq_len == b->max_seq_len && a->vocab_size == b->vocab_size &&
           a->padded_vocab_size == b->padded_vocab_size && a->num_layers == b->num_layers &&
           a->num_heads == b->num_heads && a->channels == b->channels;
}

// Fills the table of parameter tensors for a (valid) configuration.
static inline void gpt2_param_layout(const GPT2Config *cfg, GPT2ParamLayout *layout) {
    size_t Vp = (size_t)cfg->padded_vocab_size, maxT = (size_t)cfg->max_seq_len;
    size_t L = (size_t)cfg->num_layers, C = (size_t)cfg->channels;
    // name, ndim, shape, is_matrix, init -- in llm.c's order
    static const char *const names[GPT2_NUM_PARAM_TENSORS] = {
        "wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
        "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb"};
    const size_t shapes[GPT2_NUM_PARAM_TENSORS][3] = {
        {Vp, C, 0}, {maxT, C, 0}, {L, C, 0}, {L, C, 0}, {L, 3 * C, C}, {L, 3 * C, 0}, {L, C, C}, {L, C, 0},
        {L, C, 0}, {L, C, 0}, {L, 4 * C, C}, {L, 4 * C, 0}, {L, C, 4 * C}, {L, C, 0}, {C, 0, 0}, {C, 0, 0}};
    static const GPT2Init inits[GPT2_NUM_PARAM_TENSORS] = {
        GPT2_INIT_NORMAL, GPT2_INIT_NORMAL, GPT2_INIT_ONE, GPT2_INIT_ZERO, GPT2_INIT_NORMAL, GPT2_INIT_ZERO,
        GPT2_INIT_NORMAL_RESID, GPT2_INIT_ZERO, GPT2_INIT_ONE, GPT2_INIT_ZERO, GPT2_INIT_NORMAL, GPT2_INIT_ZERO,
        GPT2_INIT_NORMAL_RESID, GPT2_INIT_ZERO, GPT2_INIT_ONE, GPT2_INIT_ZERO};
    size_t offset = 0;
    for (int i = 0; i < GPT2_NUM_PARAM_TENSORS; i++) {
        GPT2ParamTensor *t = &layout->tensors[i];
        t->name = names[i];
        t->ndim = 0;
        t->size = 1;
        for (int d = 0; d < 3; d++) {
            t->shape[d] = shapes[i][d];
            if (shapes[i][d] != 0) { t->ndim++; t->size *= shapes[i][d]; }
        }
        t->offset = offset;
        // The 2-D weights (per layer) are the embeddings and the four linear weights.
        t->is_matrix = (i == GPT2_WTE || i == GPT2_WPE || i == GPT2_QKVW || i == GPT2_ATTPROJW || i == GPT2_FCW || i == GPT2_FCPROJW);
        t->init = inits[i];
        offset += t->size;
    }
    layout->num_parameters = offset;
}

// Seed of tensor `index`'s random stream: each tensor has its own stream, so a tensor (or a
// shard of one) can be initialized without generating the others.
static inline uint64_t gpt2_tensor_seed(uint64_t seed, int index) {
    Rng mix;
    rng_seed(&mix, seed ^ (0xA0761D6478BD642Full * (uint64_t)(index + 1)));
    return rng_next_u64(&mix);
}

// GPT-2 style initialization of the whole parameter buffer `params` (num_parameters floats) from
// `seed`: N(0, 0.02) weights, residual projections scaled by 1/sqrt(2L), zero biases, unit LN
// gains, and zero rows wte[V..Vp) for the padded vocabulary. Deterministic for a given seed.
static inline void gpt2_init_params(const GPT2Config *cfg, float *params, uint64_t seed) {
    GPT2ParamLayout layout;
    gpt2_param_layout(cfg, &layout);
    const float std = 0.02f;
    const float resid_std = 0.02f / sqrtf(2.0f * (float)cfg->num_layers);
    for (int i = 0; i < GPT2_NUM_PARAM_TENSORS; i++) {
        const GPT2ParamTensor *t = &layout.tensors[i];
        float *p = params + t->offset;
        Rng rng;
        rng_seed(&rng, gpt2_tensor_seed(seed, i));
        switch (t->init) {
        case GPT2_INIT_NORMAL:
            if (i == GPT2_WTE) {
                size_t real = (size_t)cfg->vocab_size * (size_t)cfg->channels;
                rng_fill_normal(&rng, p, real, 0.0f, std);
                memset(p + real, 0, (t->size - real) * sizeof(float));
            } else {
                rng_fill_normal(&rng, p, t->size, 0.0f, std);
            }
            break;
        case GPT2_INIT_NORMAL_RESID: rng_fill_normal(&rng, p, t->size, 0.0f, resid_std); break;
        case GPT2_INIT_ZERO: memset(p, 0, t->size * sizeof(float)); break;
        case GPT2_INIT_ONE:
            for (size_t j = 0; j < t->size; j++) p[j] = 1.0f;
            break;
        }
    }
}

#endif // CORE_GPT2_MODEL_H
