// The parameter table of a model family: one row per parameter tensor, in the order of the model file
// and of the flat parameter buffer. From it the trainer registers parameters, gradients, master weights
// and moments (one packed array each, same order), builds the AdamW plan (weight decay, learning-rate
// multiplier), initialises a fresh model and checks that a tensor-parallel degree divides the tensors.
//
// A row: name, global shape (up to 3 dims; a per-layer tensor has the layer count as its first dim),
// initialiser, weight decay, learning-rate multiplier and the axis tensor parallelism splits.
// Initialisation: each tensor has its own random stream, seeded from (seed, row index), so a tensor (or a
// shard of one) is initialised without generating the others; PARAM_INIT_NORMAL fills the first
// `init_rows` rows (all when 0) with N(0, std^2) and zeroes the rest (a padded vocabulary's extra rows).
// Plain C, also compiled as C++ by nvcc.
#ifndef CORE_PARAM_TABLE_H
#define CORE_PARAM_TABLE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/rng.h"
#include "core/utils.h"

#define PARAM_TABLE_MAX 32
// Largest model the tables accept (elements): far above any preset, far below where byte counts overflow.
#define PARAM_TABLE_MAX_ELEMENTS ((size_t)1 << 40)

typedef enum {
    PARAM_INIT_NORMAL = 0,  // N(0, std^2) on the first init_rows rows, zeros after
    PARAM_INIT_ZERO,
    PARAM_INIT_ONE
} ParamInit;

// How tensor parallelism splits a tensor over the TP ranks (Megatron's names).
typedef enum {
    TP_REPLICATED = 0,  // every rank holds all of it (norm gains, row-parallel biases, position embedding)
    TP_SPLIT_ROWS,      // output rows (column-parallel linear: its weight [.., out, in] and bias [.., out])
    TP_SPLIT_COLS,      // input columns (row-parallel linear: weight [.., out, in])
    TP_SPLIT_QKV_HEADS, // rows of a fused q,k,v weight or bias, split per head inside each of the 3 parts
    TP_SPLIT_VOCAB      // rows of an embedding / LM head [Vp, C] (vocabulary-parallel)
} TpSplit;

typedef struct {
    const char *name;
    int ndim;
    size_t shape[3];
    int per_layer;       // shape[0] is the layer count: layer l's slice starts at offset + l * layer_size
    ParamInit init;
    float std;           // PARAM_INIT_NORMAL
    size_t init_rows;    // PARAM_INIT_NORMAL: rows along shape[0] that are drawn (the rest are zero); 0 = all
    int decay;           // AdamW weight decay applies
    float lr_mult;       // the tensor's learning rate is lr * lr_mult
    TpSplit tp_split;
    int tp_units;        // TP_SPLIT_QKV_HEADS: heads per part (the rows split as heads, never inside a head); with
                         // grouped-query attention the KV heads (q's head count is a multiple of it); else 0
    int tp_parts;        // TP_SPLIT_ROWS / _COLS / _VOCAB: the split dimension is this many equal parts fused side
                         // by side (e.g. SwiGLU's gate | up rows): TP splits each part, rank r holding piece r of
                         // every part; 0 or 1 = one part
    // filled by param_table_finish
    size_t size;         // elements
    size_t layer_size;   // elements of one layer's slice (per_layer), else = size
    size_t offset;       // elements from the start of the flat buffer
} ParamSpec;

typedef struct {
    ParamSpec specs[PARAM_TABLE_MAX];
    int count;
    size_t num_parameters;
} ParamTable;

// Appends a row (shape dims of 0 end the shape). Returns its index.
static inline int param_table_add(ParamTable *t, const char *name, size_t d0, size_t d1, size_t d2, int per_layer, ParamInit init,
                                  float std, int decay, TpSplit tp_split) {
    if (t->count == PARAM_TABLE_MAX) fatal("parameter table: more than %d tensors", PARAM_TABLE_MAX);
    ParamSpec *s = &t->specs[t->count];
    memset(s, 0, sizeof(*s));
    s->name = name;
    s->shape[0] = d0;
    s->shape[1] = d1;
    s->shape[2] = d2;
    s->ndim = d0 == 0 ? 0 : d1 == 0 ? 1 : d2 == 0 ? 2 : 3;
    s->per_layer = per_layer;
    s->init = init;
    s->std = std;
    s->decay = decay;
    s->lr_mult = 1.0f;
    s->tp_split = tp_split;
    return t->count++;
}

// Computes sizes and offsets with overflow checks. Returns 0, or -1 with a message naming the tensor.
static inline int param_table_finish(ParamTable *t, char *err, size_t err_size) {
    size_t offset = 0;
    for (int i = 0; i < t->count; i++) {
        ParamSpec *s = &t->specs[i];
        if (s->ndim == 0) return set_error(err, err_size, "parameter '%s' has no shape", s->name);
        size_t n = 1;
        for (int d = 0; d < s->ndim; d++) {
            if (s->shape[d] == 0 || __builtin_mul_overflow(n, s->shape[d], &n) || n > PARAM_TABLE_MAX_ELEMENTS)
                return set_error(err, err_size, "parameter '%s': shape [%zu, %zu, %zu] is empty or above %zu elements", s->name,
                                 s->shape[0], s->shape[1], s->shape[2], PARAM_TABLE_MAX_ELEMENTS);
        }
        s->size = n;
        s->layer_size = s->per_layer ? n / s->shape[0] : n;
        s->offset = offset;
        offset += n;
        if (offset > PARAM_TABLE_MAX_ELEMENTS)
            return set_error(err, err_size, "the model has more than %zu parameters (at tensor '%s')", PARAM_TABLE_MAX_ELEMENTS, s->name);
    }
    t->num_parameters = offset;
    return 0;
}

// Seed of row `index`'s random stream.
static inline uint64_t param_tensor_seed(uint64_t seed, int index) {
    Rng mix;
    rng_seed(&mix, seed ^ (0xA0761D6478BD642Full * (uint64_t)(index + 1)));
    return rng_next_u64(&mix);
}

// Initialises the flat buffer params (num_parameters floats) from seed, row by row. Deterministic.
static inline void param_table_init(const ParamTable *t, float *params, uint64_t seed) {
    for (int i = 0; i < t->count; i++) {
        const ParamSpec *s = &t->specs[i];
        float *p = params + s->offset;
        switch (s->init) {
        case PARAM_INIT_NORMAL: {
            Rng rng;
            rng_seed(&rng, param_tensor_seed(seed, i));
            const size_t row = s->size / s->shape[0];
            const size_t drawn = s->init_rows == 0 ? s->size : s->init_rows * row;
            rng_fill_normal(&rng, p, drawn, 0.0f, s->std);
            memset(p + drawn, 0, (s->size - drawn) * sizeof(float));
            break;
        }
        case PARAM_INIT_ZERO: memset(p, 0, s->size * sizeof(float)); break;
        case PARAM_INIT_ONE:
            for (size_t j = 0; j < s->size; j++) p[j] = 1.0f;
            break;
        }
    }
}

// The dimension of row s that TP splits (-1 when replicated) and the number of units it splits into
// (heads for the qkv split, else the length of one part of the dimension: its length when tp_parts <= 1).
static inline int param_tp_dim(const ParamSpec *s, size_t *units) {
    const int first = s->per_layer ? 1 : 0;  // the layer dimension is never split
    int dim = -1;
    switch (s->tp_split) {
    case TP_REPLICATED: return -1;
    case TP_SPLIT_ROWS: case TP_SPLIT_QKV_HEADS: case TP_SPLIT_VOCAB: dim = first; break;
    case TP_SPLIT_COLS: dim = first + 1; break;
    }
    const size_t parts = s->tp_parts > 1 ? (size_t)s->tp_parts : 1;
    *units = s->tp_split == TP_SPLIT_QKV_HEADS ? (size_t)s->tp_units : dim < s->ndim ? s->shape[dim] / parts : 0;
    return dim;
}

// Checks that `tp` ranks can split every row as its tp_split says. Returns 0, or -1 with a message
// naming the tensor, the dimension and the numbers.
static inline int param_table_check_tp(const ParamTable *t, int tp, char *err, size_t err_size) {
    for (int i = 0; i < t->count; i++) {
        const ParamSpec *s = &t->specs[i];
        size_t units = 0;
        const int dim = param_tp_dim(s, &units);
        if (dim < 0) continue;
        if (s->tp_parts > 1 && s->tp_split != TP_SPLIT_QKV_HEADS && (dim >= s->ndim || s->shape[dim] % (size_t)s->tp_parts != 0))
            return set_error(err, err_size, "parameter '%s': its split dimension (%zu) is not %d equal parts", s->name,
                             dim < s->ndim ? s->shape[dim] : 0, s->tp_parts);
        if (s->tp_parts > 1 && s->tp_split != TP_SPLIT_QKV_HEADS && units % (size_t)tp != 0)
            return set_error(err, err_size, "--tp %d does not divide parameter '%s' (each of its %d parts of %zu)", tp, s->name, s->tp_parts,
                             units);
        if (dim >= s->ndim || units % (size_t)tp != 0)
            return set_error(err, err_size, "--tp %d does not divide parameter '%s' (%s %zu)", tp, s->name,
                             s->tp_split == TP_SPLIT_QKV_HEADS ? "heads" : "split dimension of", units);
    }
    return 0;
}

#endif // CORE_PARAM_TABLE_H
