// Llama on the host, shared by the CPU reference and the GPU trainer: the configuration, the named
// presets, the parameter table (core/param_table.h) and this project's Llama model file.
//
// The model (Llama 3 style, no biases): token embedding; per layer x += attn_out(attention(rope(
// qkv(rmsnorm(x))))), x += down(silu(gate) * up) with [gate | up] = gate_up(rmsnorm(x)); a final
// RMSNorm and an untied LM head. Grouped-query attention: num_heads query heads share num_kv_heads
// key/value heads, query head h reading KV head h / (num_heads / num_kv_heads).
//
// Parameter tensors, in the order of model files and of the flat parameter buffer (HS = channels /
// num_heads, F = ffn_hidden, weights [out, in] as in y = x W^T):
//   wte        [Vp, C]                      token embedding (rows V..Vp are padding, kept 0)
//   attn_norm  [L, C]                       RMSNorm gain before attention
//   qkvw       [L, (NH + 2*NKV)*HS, C]      rows: the NH query heads, then the NKV key heads, then the
//                                           NKV value heads, HS rows per head
//   attn_outw  [L, C, C]                    attention output projection
//   ffn_norm   [L, C]                       RMSNorm gain before the MLP
//   gate_upw   [L, 2F, C]                   rows: the F gate rows, then the F up rows
//   downw      [L, C, F]                    MLP down projection
//   final_norm [C]
//   lm_head    [Vp, C]                      untied from wte (rows V..Vp kept 0)
// RoPE (applied to q and k, not stored): the Hugging Face "rotate_half" convention, channel i < HS/2 of
// a head paired with i + HS/2, inv_freq[i] = rope_theta^(-2i/HS) (test/reference/layers_cpu.h).
//
// Initialisation (as common Llama pretraining code, e.g. nanoGPT-style Llama ports): weights
// N(0, 0.02^2), the two projections that feed the residual stream (attn_out, down)
// N(0, (0.02 / sqrt(2L))^2), norm gains 1, the padded vocabulary rows of wte and lm_head 0. Weight
// decay on the 2-D weights (wte, qkvw, attn_outw, gate_upw, downw, lm_head), not on the norm gains.
//
// Tensor parallelism (Megatron's split kinds, checked by param_table_check_tp): wte and lm_head
// vocabulary-parallel; qkvw split by heads with the KV heads as the unit (tp must divide num_kv_heads;
// rank r holds query heads [r*NH/tp, (r+1)*NH/tp), which are exactly the ones that read its KV heads
// [r*NKV/tp, (r+1)*NKV/tp), and those KV heads' k and v rows); attn_outw and downw split by input
// columns (row-parallel); gate_upw split by output rows (column-parallel) in two parts (tp_parts = 2):
// rank r holds piece r of the gate rows AND piece r of the up rows, never a contiguous 2F/tp block
// (that would hand one rank gates and another their ups), so tp must divide F. Norm gains replicated.
//
// Model file (this project's format; not llm.c's Llama 3 files, whose header and tensor order differ):
// core/checkpoint.h's layout with int32 header words [0] magic 20261208, [1] version (3 fp32, 5 bf16),
// [2] max_seq_len, [3] vocab_size, [4] num_layers, [5] num_heads, [6] channels, [7] padded_vocab_size
// (words 2-7 mean what they mean in a GPT-2 file), [8] num_kv_heads, [9] ffn_hidden, [10] rope_theta
// and [11] norm_eps (the float's bits, copied with memcpy, so they round-trip exactly), [12..255] 0
// (llama_model_file_format lists the fields); then the tensors above in order.
// Plain C, also compiled as C++ by nvcc.
#ifndef LLAMA_MODEL_H
#define LLAMA_MODEL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/checkpoint.h"
#include "core/param_table.h"
#include "core/utils.h"

#define LLAMA_MODEL_MAGIC 20261208
// The magic of GPT-2 model files (gpt2_model.h's GPT2_MODEL_MAGIC; gpt2_model.h includes this file, so
// the value is repeated here and test_llama_cpu checks that the two agree). Used to name a GPT-2 file
// given to the Llama loader.
#define LLAMA_GPT2_MODEL_MAGIC 20240326
// Bounds of the configuration fields (far above any Llama; they keep every product well inside 64 bits).
#define LLAMA_MAX_SEQ_LEN (1 << 20)
#define LLAMA_MAX_VOCAB (1 << 24)
#define LLAMA_MAX_LAYERS 4096
#define LLAMA_MAX_CHANNELS (1 << 16)  // also bounds num_heads and num_kv_heads
#define LLAMA_MAX_FFN (1 << 18)
#define LLAMA_MAX_ROPE_THETA 1e12f

typedef struct {
    int max_seq_len;        // longest sequence (positions 0 .. max_seq_len-1 get RoPE angles)
    int vocab_size;         // V: real tokens
    int padded_vocab_size;  // Vp >= V: rows of wte and lm_head
    int num_layers;         // L
    int num_heads;          // NH: query heads
    int num_kv_heads;       // NKV: key/value heads, divides NH (NKV = NH: multi-head attention)
    int channels;           // C = NH * HS, HS (the head size) even for RoPE
    int ffn_hidden;         // F: width of the SwiGLU MLP
    float rope_theta;       // RoPE base, > 1
    float norm_eps;         // RMSNorm epsilon, in (0, 1)
} LlamaConfig;

// The model file's format (core/checkpoint.h): the configuration's fields with their header words and
// bounds (the two floats' bounds are llama_config_validate's), in the order of checks and messages; for
// writing, reading, validation and comparison.
static inline int llama_model_file_num_parameters(const void *config, size_t *n, char *err, size_t err_size);
static inline int llama_model_file_refuse_other_family(const char *path, char *err, size_t err_size);
static inline const ModelFileFormat *llama_model_file_format(void) {
    static const ModelFileField fields[] = {
        MODEL_FILE_INT(LlamaConfig, max_seq_len, 2, LLAMA_MAX_SEQ_LEN),
        MODEL_FILE_INT(LlamaConfig, vocab_size, 3, LLAMA_MAX_VOCAB),
        MODEL_FILE_INT(LlamaConfig, padded_vocab_size, 7, LLAMA_MAX_VOCAB),
        MODEL_FILE_INT(LlamaConfig, num_layers, 4, LLAMA_MAX_LAYERS),
        MODEL_FILE_INT(LlamaConfig, num_heads, 5, LLAMA_MAX_CHANNELS),
        MODEL_FILE_INT(LlamaConfig, num_kv_heads, 8, LLAMA_MAX_CHANNELS),
        MODEL_FILE_INT(LlamaConfig, channels, 6, LLAMA_MAX_CHANNELS),
        MODEL_FILE_INT(LlamaConfig, ffn_hidden, 9, LLAMA_MAX_FFN),
        MODEL_FILE_FLOAT(LlamaConfig, rope_theta, 10),
        MODEL_FILE_FLOAT(LlamaConfig, norm_eps, 11)};
    static const ModelFileFormat format = {"Llama", LLAMA_MODEL_MAGIC, 12, (int)(sizeof(fields) / sizeof(fields[0])), fields,
                                           llama_model_file_num_parameters, llama_model_file_refuse_other_family};
    return &format;
}

// The parameter tensors, in the order of the table (see the top of this file).
enum {
    LLAMA_WTE = 0,     // [Vp, C]
    LLAMA_ATTN_NORM,   // [L, C]
    LLAMA_QKVW,        // [L, (NH + 2*NKV)*HS, C]
    LLAMA_ATTN_OUTW,   // [L, C, C]
    LLAMA_FFN_NORM,    // [L, C]
    LLAMA_GATE_UPW,    // [L, 2F, C]
    LLAMA_DOWNW,       // [L, C, F]
    LLAMA_FINAL_NORM,  // [C]
    LLAMA_LM_HEAD,     // [Vp, C]
    LLAMA_NUM_PARAM_TENSORS
};

// A configuration from its numbers (tests and tools build small models with it).
static inline LlamaConfig llama_config_make(int max_seq_len, int vocab_size, int padded_vocab_size, int num_layers, int num_heads,
                                            int num_kv_heads, int channels, int ffn_hidden, float rope_theta, float norm_eps) {
    LlamaConfig cfg;
    cfg.max_seq_len = max_seq_len;
    cfg.vocab_size = vocab_size;
    cfg.padded_vocab_size = padded_vocab_size;
    cfg.num_layers = num_layers;
    cfg.num_heads = num_heads;
    cfg.num_kv_heads = num_kv_heads;
    cfg.channels = channels;
    cfg.ffn_hidden = ffn_hidden;
    cfg.rope_theta = rope_theta;
    cfg.norm_eps = norm_eps;
    return cfg;
}

// Fills *cfg with a named preset, all with the GPT-2 vocabulary (50257 padded to 50304), max_seq_len
// 1024, rope_theta 500000 and norm_eps 1e-5 (Llama 3's), head size 64:
//   l125m: 12 layers, 768 channels, 12 heads, 4 KV heads, FFN 2048: 152,783,616 parameters (38.6M
//          of them in the untied LM head)
//   l350m: 24 layers, 1024 channels, 16 heads, 8 KV heads, FFN 2816 (Llama's sizing rule: 8/3 C rounded
//          up to a multiple of 256, as 2048 = 8/3 * 768 for l125m; 2816 = 11 * 256 splits over tp 2, 4 and 8
//          in both gate/up halves): 386,188,288 parameters
//   l1b:   16 layers, 2048 channels, 32 heads, 8 KV heads, FFN 8192 (Llama 3.2 1B's shape):
//          1,179,191,296 parameters
// Returns 0, or -1 with a message naming the unknown preset.
static inline int llama_config_preset(const char *name, LlamaConfig *cfg, char *err, size_t err_size) {
    static const struct { const char *name; int layers, channels, heads, kv_heads, ffn; } presets[] = {
        {"l125m", 12, 768, 12, 4, 2048}, {"l350m", 24, 1024, 16, 8, 2816}, {"l1b", 16, 2048, 32, 8, 8192}};
    for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++) {
        if (strcmp(name, presets[i].name) == 0) {
            *cfg = llama_config_make(1024, 50257, 50304, presets[i].layers, presets[i].heads, presets[i].kv_heads, presets[i].channels,
                                     presets[i].ffn, 500000.0f, 1e-5f);
            return 0;
        }
    }
    return set_error(err, err_size, "unknown Llama model '%s' (expected l125m, l350m or l1b)", name);
}

// Checks that a configuration is usable: every field inside its bounds (checked before anything is
// multiplied), padded_vocab_size >= vocab_size, num_kv_heads <= num_heads dividing it, channels a
// multiple of num_heads, the head size even (RoPE turns channel pairs), rope_theta in (1, 1e12] and
// norm_eps in (0, 1) (NaN and infinity refused). Returns 0, or -1 with a message naming the field and
// the numbers.
static inline int llama_config_validate(const LlamaConfig *c, char *err, size_t err_size) {
    if (model_config_check_bounds(llama_model_file_format(), c, err, err_size) != 0) return -1;
    if (!(c->rope_theta > 1.0f && c->rope_theta <= LLAMA_MAX_ROPE_THETA))
        return set_error(err, err_size, "rope_theta %g is outside (1, %g]", (double)c->rope_theta, (double)LLAMA_MAX_ROPE_THETA);
    if (!(c->norm_eps > 0.0f && c->norm_eps < 1.0f)) return set_error(err, err_size, "norm_eps %g is outside (0, 1)", (double)c->norm_eps);
    if (c->padded_vocab_size < c->vocab_size)
        return set_error(err, err_size, "padded_vocab_size %d is smaller than vocab_size %d", c->padded_vocab_size, c->vocab_size);
    if (c->num_heads % c->num_kv_heads != 0)
        return set_error(err, err_size, "num_heads %d must be a multiple of num_kv_heads %d (grouped-query attention)", c->num_heads,
                         c->num_kv_heads);
    if (c->channels % c->num_heads != 0)
        return set_error(err, err_size, "channels %d must be a multiple of num_heads %d (channels = num_heads * head size)", c->channels,
                         c->num_heads);
    if ((c->channels / c->num_heads) % 2 != 0)
        return set_error(err, err_size, "head size %d (channels %d / num_heads %d) must be even for RoPE", c->channels / c->num_heads, c->channels,
                         c->num_heads);
    return 0;
}

// Returns 1 when two configurations are identical in every field (the floats bit for bit).
static inline int llama_config_equal(const LlamaConfig *a, const LlamaConfig *b) { return model_config_equal(llama_model_file_format(), a, b); }

// Fills the parameter table of a configuration (validated here). Returns 0, or -1 with a message.
static inline int llama_param_table(const LlamaConfig *cfg, ParamTable *t, char *err, size_t err_size) {
    if (llama_config_validate(cfg, err, err_size) != 0) return -1;
    memset(t, 0, sizeof(*t));
    const size_t Vp = (size_t)cfg->padded_vocab_size, L = (size_t)cfg->num_layers, C = (size_t)cfg->channels;
    const size_t HS = C / (size_t)cfg->num_heads, F = (size_t)cfg->ffn_hidden;
    const size_t QKV = ((size_t)cfg->num_heads + 2 * (size_t)cfg->num_kv_heads) * HS;
    const float std = 0.02f, resid_std = 0.02f / sqrtf(2.0f * (float)cfg->num_layers);
    const ParamInit N = PARAM_INIT_NORMAL, O = PARAM_INIT_ONE;
    // name, shape, per layer, init, std, weight decay (the 2-D weights), TP split
    param_table_add(t, "wte", Vp, C, 0, 0, N, std, 1, TP_SPLIT_VOCAB);
    param_table_add(t, "attn_norm", L, C, 0, 1, O, 0, 0, TP_REPLICATED);
    param_table_add(t, "qkvw", L, QKV, C, 1, N, std, 1, TP_SPLIT_QKV_HEADS);
    param_table_add(t, "attn_outw", L, C, C, 1, N, resid_std, 1, TP_SPLIT_COLS);
    param_table_add(t, "ffn_norm", L, C, 0, 1, O, 0, 0, TP_REPLICATED);
    param_table_add(t, "gate_upw", L, 2 * F, C, 1, N, std, 1, TP_SPLIT_ROWS);
    param_table_add(t, "downw", L, C, F, 1, N, resid_std, 1, TP_SPLIT_COLS);
    param_table_add(t, "final_norm", C, 0, 0, 0, O, 0, 0, TP_REPLICATED);
    param_table_add(t, "lm_head", Vp, C, 0, 0, N, std, 1, TP_SPLIT_VOCAB);
    t->specs[LLAMA_WTE].init_rows = (size_t)cfg->vocab_size;
    t->specs[LLAMA_LM_HEAD].init_rows = (size_t)cfg->vocab_size;
    t->specs[LLAMA_QKVW].tp_units = cfg->num_kv_heads;  // the unit of the head split under GQA
    t->specs[LLAMA_GATE_UPW].tp_parts = 2;              // gate | up: each half split on its own
    return param_table_finish(t, err, err_size);
}

// ----------------------------------------------------------------------------
// Model files (core/checkpoint.h's model_file_* on llama_model_file_format)

static inline int llama_model_file_num_parameters(const void *config, size_t *n, char *err, size_t err_size) {
    ParamTable table;
    if (llama_param_table((const LlamaConfig *)config, &table, err, err_size) != 0) return -1;
    *n = table.num_parameters;
    return 0;
}

// 1 when the file at `path` starts with the Llama model-file magic, else 0: for another family's loader
// (or a tool) to say "this is a Llama model file" instead of only "bad magic".
static inline int llama_model_file_is_llama(const char *path) {
    int32_t magic = 0;
    return model_file_peek_magic(path, &magic) == 0 && magic == LLAMA_MODEL_MAGIC;
}

// A GPT-2 model file given to the Llama loader is named as such.
static inline int llama_model_file_refuse_other_family(const char *path, char *err, size_t err_size) {
    int32_t magic = 0;
    if (model_file_peek_magic(path, &magic) == 0 && magic == LLAMA_GPT2_MODEL_MAGIC)
        return set_error(err, err_size, "'%s' is a GPT-2 model file (magic %d), not a Llama one (magic %d); use train_gpt", path,
                         LLAMA_GPT2_MODEL_MAGIC, LLAMA_MODEL_MAGIC);
    return 0;
}

// Writes cfg and its parameters (fp32, table order) as a Llama model file, version 3 (fp32) or 5 (bf16).
static inline int llama_model_file_write(const char *path, const LlamaConfig *cfg, const float *params, int version, char *err,
                                         size_t err_size) {
    return model_file_write_config(path, llama_model_file_format(), cfg, params, version, err, err_size);
}

// Loads a Llama model file (version 3 or 5) into a new fp32 buffer *params (the caller frees): the header
// (configuration validated, reserved words 12..255 zero, a GPT-2 file refused by name) and the file's
// length are checked first. When `want` is not NULL the file's configuration must equal it. Fills *cfg
// and *version. Returns 0, or -1 with a message naming the file (and the first field that differs from
// `want`).
static inline int llama_model_file_load(const char *path, const LlamaConfig *want, LlamaConfig *cfg, int *version, float **params, char *err,
                                        size_t err_size) {
    return model_file_load(path, llama_model_file_format(), want, cfg, version, params, err, err_size);
}

#endif // LLAMA_MODEL_H
