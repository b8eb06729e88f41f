// The device model core shared by the model families: what every family's model has, built from its
// parameter table (core/param_table.h), and the family's operations (ModelOps) that fill in the rest.
//
// The core owns: the tensor registry and its arenas (core/registry.h), one packed array each of BF16
// parameters, FP32 gradients, FP32 master weights and AdamW moments (registered from the table, in its
// order, so each is one flat array in the model file's order), the token inputs and targets, the logits
// and losses of each micro-batch slot, the global-norm scratch, the cuBLASLt context and the stream.
// A family registers its activations and workspace (ops->register_tensors), then resolves its per-layer
// views and its Linear objects once the arenas exist (ops->bind).
//
// A step: model_forward(slot) runs ops->embed_forward, ops->block_forward for every layer and
// ops->head_forward (which writes the logits), then the fused softmax + cross-entropy, which leaves
// dloss * dlogits in the slot's logits; model_backward(slot) runs the ops in reverse. A slot is one
// micro-batch in flight: its activations stay until its backward (the trainer keeps one; a pipeline
// schedule keeps several). The losses of every forward with targets are copied to pinned host memory
// without a host sync (a sync every MODEL_LOSS_RING micro-batches); model_take_loss reads them once per step.
#ifndef CORE_MODEL_CUH
#define CORE_MODEL_CUH

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/linear.cuh"
#include "core/optimizer.h"
#include "core/param_table.h"
#include "core/precision.h"
#include "core/registry.cuh"
#include "core/train_state.h"
#include "kernels/adamw.cuh"
#include "kernels/classifier.cuh"
#include "kernels/global_norm.cuh"
#include "kernels/layernorm.cuh"

typedef struct Model Model;

// A family's part of the device model. Every forward/backward function queues work on m->stream;
// `layer` is the global layer index, `slot` the micro-batch slot, B x T the slot's tokens.
typedef struct {
    void (*register_tensors)(Model *m);   // registers the family's activations (for m->num_slots slots) and workspace
    void (*bind)(Model *m);               // after allocation (and the activations' binding): workspace views, Linear objects
    void (*free)(Model *m);
    void (*embed_forward)(Model *m, int slot, int B, int T);
    void (*block_forward)(Model *m, int layer, int slot, int B, int T);
    void (*head_forward)(Model *m, int slot, int B, int T);   // writes model_logits(m, slot)
    void (*head_backward)(Model *m, int slot, int B, int T, bool accumulate);
    void (*block_backward)(Model *m, int layer, int slot, int B, int T, bool accumulate);
    void (*embed_backward)(Model *m, int slot, int B, int T, bool accumulate);
    double (*flops_per_token)(const Model *m, int T);   // training FLOPs per token at sequence length T
} ModelOps;

// What the core knows of the family's model shape.
typedef struct {
    int max_seq_len, vocab_size, padded_vocab_size, num_layers;
} ModelDims;

typedef struct {
    int inputs, targets, logits, losses;   // registry ids
    int B, T;                              // of the slot's last forward (its backward uses them)
} ModelSlot;

#define MODEL_MAX_SLOTS 8
#define MODEL_LOSS_RING 8
#define MODEL_MAX_ACT_GROUPS 4
#define MODEL_MAX_GROUP_ACTS 32

// A group of a family's activations registered by model_register_acts: `instances` copies of n tensors from
// registry id `first`, instance i's tensor j bound into the pointer at base + i * stride + field[j].
typedef struct {
    int first, n, instances;
    void *base;
    size_t stride;
    size_t field[MODEL_MAX_GROUP_ACTS];
} ModelActGroup;

struct Model {
    const ModelOps *ops;
    const void *config;            // the family's configuration (owned by the caller)
    void *family;                  // the family's device state (its register_tensors allocates it, free releases it)
    ParamTable table;
    ModelDims dims;
    Precision precision;
    int max_tokens;                // rows of every activation: a forward takes B*T <= max_tokens
    int num_slots;
    Registry reg;
    int param_id[PARAM_TABLE_MAX], grad_id[PARAM_TABLE_MAX], master_id[PARAM_TABLE_MAX], m_id[PARAM_TABLE_MAX], v_id[PARAM_TABLE_MAX];
    ModelSlot slot[MODEL_MAX_SLOTS];
    ModelActGroup act_groups[MODEL_MAX_ACT_GROUPS];  // the family's activations, bound by model_build
    int num_act_groups;
    int norm_scratch, norm_out, matmul_trial;
    // flat views of the packed arrays
    bf16 *params;
    float *grads, *master, *m, *v;
    MatmulContext matmul;
    LinearContext linear;          // set by the family's bind
    AdamWPlan adamw_plan;
    cudaStream_t stream;
    // losses of the forwards with targets: copied without a sync into a ring of MODEL_LOSS_RING pinned
    // buffers, folded into loss_total on the host when the ring is full and by model_take_loss
    float *losses_host;            // [MODEL_LOSS_RING * max_tokens] pinned
    int pending, pending_tokens[MODEL_LOSS_RING];
    double loss_total;             // sum of the folded micro-batch means
    int loss_count;                // micro-batches folded
};

// A model family: its host functions (presets, model files, parameter table, kernel limits) and its
// device operations. `config` points at config_bytes of the family's configuration struct. A trainer
// program is trainer_main (core/trainer.cuh) run on one of these.
typedef struct {
    const char *name;             // "GPT-2"
    const char *program;          // "train_gpt"
    const char *usage;            // the first lines of -h
    const char *default_model;    // -e's default (a preset)
    const char *model_help;       // -e's help line (names the presets)
    const char *presets;          // the presets, for messages: "d12, d24, d36, d48"
    size_t config_bytes;
    // 0 and *config filled when `name` is a preset; -1 otherwise (no message needed)
    int (*preset)(const char *name, void *config);
    // a model file: *config, *version, *params (fp32, the caller frees); want (may be NULL) must match.
    // -1 with a message naming the file.
    int (*model_file_load)(const char *path, const void *want, void *config, int *version, float **params, char *err, size_t err_size);
    int (*model_file_write)(const char *path, const void *config, const float *params, int version, char *err, size_t err_size);
    int (*param_table)(const void *config, ParamTable *table, char *err, size_t err_size);
    int (*check_kernels)(const void *config, char *err, size_t err_size);   // what the GPU kernels take
    void (*describe)(const void *config, char *text, size_t size);           // one line of the model's shape
    ModelDims (*dims)(const void *config);
    const ModelOps *ops;
} ModelFamily;

// The limits that the shared GPU kernels put on any family's model: head size 64 or 128 (flash attention),
// channels a multiple of 8 up to LAYERNORM_MAX_C (the norm kernels), a padded vocabulary that is a multiple
// of 8 (16-byte rows). -1 with a message naming the numbers.
static inline int model_check_shared_kernels(int channels, int num_heads, int padded_vocab_size, char *err, size_t err_size) {
    const int HS = channels / num_heads;
    if (HS != 64 && HS != 128)
        return set_error(err, err_size, "head size %d (channels %d / heads %d): the attention kernel takes 64 or 128", HS, channels, num_heads);
    if (channels % 8 != 0 || channels > LAYERNORM_MAX_C)
        return set_error(err, err_size, "channels %d must be a multiple of 8 and at most %d", channels, LAYERNORM_MAX_C);
    if (padded_vocab_size % 8 != 0) return set_error(err, err_size, "padded vocabulary %d must be a multiple of 8", padded_vocab_size);
    return 0;
}

// Device pointer of registry tensor `id`, typed.
#define MODEL_PTR(model, type, id) ((type *)(model)->reg.tensors[(id)].data)

static inline bf16 *model_param(const Model *m, int i) { return MODEL_PTR(m, bf16, m->param_id[i]); }
static inline float *model_grad(const Model *m, int i) { return MODEL_PTR(m, float, m->grad_id[i]); }
// Layer l's slice of a per-layer parameter tensor, and of its gradient.
static inline bf16 *model_layer_param(const Model *m, int i, int l) { return model_param(m, i) + (size_t)l * m->table.specs[i].layer_size; }
static inline float *model_layer_grad(const Model *m, int i, int l) { return model_grad(m, i) + (size_t)l * m->table.specs[i].layer_size; }
static inline const int *model_inputs(const Model *m, int slot) { return MODEL_PTR(m, int, m->slot[slot].inputs); }
static inline bf16 *model_logits(const Model *m, int slot) { return MODEL_PTR(m, bf16, m->slot[slot].logits); }

// ----------------------------------------------------------------------------------------------
// building

// A family's activation of max_tokens rows, registered by the core and bound into a pointer field of one of
// the family's structs (field: its byte offset, from MODEL_ACT).
typedef struct {
    const char *name;
    DType dtype;
    size_t cols;    // 1: one value per row
    size_t field;
} ModelActSpec;
#define MODEL_ACT(Struct, member, dtype, cols) {#member, dtype, (size_t)(cols), offsetof(Struct, member)}
#define MODEL_COUNT(array) ((int)(sizeof(array) / sizeof((array)[0])))

// Registers the n activations of `specs` for each instance: slot s and layer l of `slots` x `layers` (named
// "s<s>.<name>.<l>"), of each slot when layers is 0 ("s<s>.<name>"), or once when slots is 0 ("<name>"). Once
// allocated, model_build points instance i's fields at its tensors: the struct at base + i * stride (an array
// of slots x layers structs, slot-major; of slots structs; or one struct).
static inline void model_register_acts(Model *m, const ModelActSpec *specs, int n, int slots, int layers, void *base, size_t stride) {
    shapeCheck(m->num_act_groups < MODEL_MAX_ACT_GROUPS && n <= MODEL_MAX_GROUP_ACTS, "model_register_acts: more than %d groups or %d tensors",
               MODEL_MAX_ACT_GROUPS, MODEL_MAX_GROUP_ACTS);
    ModelActGroup *g = &m->act_groups[m->num_act_groups++];
    g->first = m->reg.count;
    g->n = n;
    g->instances = (slots > 0 ? slots : 1) * (layers > 0 ? layers : 1);
    g->base = base;
    g->stride = stride;
    const size_t N = (size_t)m->max_tokens;
    for (int j = 0; j < n; j++) g->field[j] = specs[j].field;
    for (int s = 0; s < (slots > 0 ? slots : 1); s++)
        for (int l = 0; l < (layers > 0 ? layers : 1); l++)
            for (int j = 0; j < n; j++) {
                char name[32];
                if (slots > 0) snprintf(name, sizeof(name), "s%d.%s", s, specs[j].name);
                else snprintf(name, sizeof(name), "%s", specs[j].name);
                const int layer = layers > 0 ? l : -1;
                if (specs[j].cols == 1) registry_add1(&m->reg, name, layer, MEM_ACTIVATIONS, specs[j].dtype, N);
                else registry_add2(&m->reg, name, layer, MEM_ACTIVATIONS, specs[j].dtype, N, specs[j].cols);
            }
}

// Points every registered activation group's fields at its tensors (after allocation).
static inline void model_bind_acts_(Model *m) {
    for (int k = 0; k < m->num_act_groups; k++) {
        const ModelActGroup *g = &m->act_groups[k];
        for (int i = 0; i < g->instances; i++)
            for (int j = 0; j < g->n; j++)
                *(void **)((char *)g->base + (size_t)i * g->stride + g->field[j]) = m->reg.tensors[g->first + i * g->n + j].data;
    }
}

// Registers the parameter-shaped arrays from the table, the slots' inputs, targets, logits and losses,
// and the core's workspace.
static inline void model_register_core(Model *m) {
    Registry *r = &m->reg;
    static const char *const prefixes[5] = {"param.", "grad.", "master.", "adam_m.", "adam_v."};
    int *ids[5] = {m->param_id, m->grad_id, m->master_id, m->m_id, m->v_id};
    const MemCategory cats[5] = {MEM_PARAMETERS, MEM_GRADIENTS, MEM_OPTIMIZER, MEM_OPTIMIZER, MEM_OPTIMIZER};
    size_t largest_matrix = 0;   // elements of the largest 2-D weight (of one layer): the largest Wgrad output
    for (int k = 0; k < 5; k++) {
        const DType dt = k == 0 ? DTYPE_BF16 : DTYPE_FP32;
        for (int i = 0; i < m->table.count; i++) {
            const ParamSpec *s = &m->table.specs[i];
            char name[REGISTRY_NAME_LEN];
            snprintf(name, sizeof(name), "%s%s", prefixes[k], s->name);
            // packed (element alignment), so each kind is one flat array in the table's order
            ids[k][i] = registry_add(r, name, -1, cats[k], dt, s->ndim, s->shape, dtype_size(dt));
            if (s->ndim - s->per_layer == 2 && s->layer_size > largest_matrix) largest_matrix = s->layer_size;
        }
    }
    const size_t N = (size_t)m->max_tokens;
    for (int s = 0; s < m->num_slots; s++) {
        ModelSlot *sl = &m->slot[s];
        sl->inputs = registry_add1(r, "inputs", s, MEM_ACTIVATIONS, DTYPE_INT32, N);
        sl->targets = registry_add1(r, "targets", s, MEM_ACTIVATIONS, DTYPE_INT32, N);
        sl->logits = registry_add2(r, "logits", s, MEM_ACTIVATIONS, DTYPE_BF16, N, (size_t)m->dims.padded_vocab_size);
        sl->losses = registry_add1(r, "losses", s, MEM_ACTIVATIONS, DTYPE_FP32, N);
    }
    m->norm_scratch = registry_add1(r, "norm_scratch", -1, MEM_WORKSPACE, DTYPE_FP32, (size_t)global_norm_num_blocks((long long)m->table.num_parameters));
    m->norm_out = registry_add1(r, "norm_out", -1, MEM_WORKSPACE, DTYPE_FP32, 1);
    // the cuBLASLt algorithm trials (first step) save the largest accumulated FP32 output here: a Wgrad
    m->matmul_trial = registry_add1(r, "matmul_trial", -1, MEM_WORKSPACE, DTYPE_FP32, largest_matrix);
    r->external_bytes[MEM_WORKSPACE] = MATMUL_CONTEXT_DEVICE_BYTES;
}

// Builds the device model of family f for configuration *config (kept by the caller while the model lives):
// its parameter table, the kernels' limits, activations for up to max_tokens = B*T rows in each of num_slots
// slots. Prints the memory report when `report` is set. Returns 0, or -1 with a message (nothing allocated
// but the cuBLASLt context) when the configuration is refused or the plan does not fit in device memory.
static inline int model_build(Model *m, const ModelFamily *f, const void *config, int max_tokens, int num_slots, Precision precision,
                              FILE *report, char *err, size_t err_size) {
    memset(m, 0, sizeof(*m));
    if (precision != PRECISION_BF16) return set_error(err, err_size, "precision '%s' has no model path built", PRECISION_NAMES[precision]);
    shapeCheck(num_slots >= 1 && num_slots <= MODEL_MAX_SLOTS && max_tokens >= 1, "model_build: %d slots (1..%d), %d tokens", num_slots,
               MODEL_MAX_SLOTS, max_tokens);
    if (f->param_table(config, &m->table, err, err_size) != 0 || f->check_kernels(config, err, err_size) != 0) return -1;
    const ModelOps *ops = f->ops;
    m->ops = ops;
    m->config = config;
    m->dims = f->dims(config);
    m->precision = precision;
    m->max_tokens = max_tokens;
    m->num_slots = num_slots;
    registry_init(&m->reg);
    model_register_core(m);
    ops->register_tensors(m);
    if (report != NULL) registry_print_report(&m->reg, report);
    cudaCheck(cudaStreamCreate(&m->stream));
    matmul_context_init(&m->matmul);
    if (registry_allocate(&m->reg, err, err_size) != 0) return -1;
    m->params = model_param(m, 0);
    m->grads = model_grad(m, 0);
    m->master = MODEL_PTR(m, float, m->master_id[0]);
    m->m = MODEL_PTR(m, float, m->m_id[0]);
    m->v = MODEL_PTR(m, float, m->v_id[0]);
    const RegTensor *trial = &m->reg.tensors[m->matmul_trial];
    matmul_context_set_trial_buffer(&m->matmul, trial->data, trial->numel * dtype_size(trial->dtype));
    model_bind_acts_(m);
    ops->bind(m);
    size_t sizes[PARAM_TABLE_MAX];
    int decay[PARAM_TABLE_MAX];
    float lr_mult[PARAM_TABLE_MAX];
    for (int i = 0; i < m->table.count; i++) {
        sizes[i] = m->table.specs[i].size;
        decay[i] = m->table.specs[i].decay;
        lr_mult[i] = m->table.specs[i].lr_mult;
    }
    adamw_plan_build(&m->adamw_plan, sizes, decay, lr_mult, m->table.count, 0, m->table.num_parameters);
    cudaCheck(cudaMallocHost((void **)&m->losses_host, (size_t)MODEL_LOSS_RING * max_tokens * sizeof(float)));
    return 0;
}

static inline void model_free(Model *m) {
    if (m->ops != NULL && m->family != NULL) m->ops->free(m);
    adamw_plan_free(&m->adamw_plan);
    cudaCheck(cudaFreeHost(m->losses_host));
    matmul_context_free(&m->matmul);
    registry_free(&m->reg);
    cudaCheck(cudaStreamDestroy(m->stream));
    memset(m, 0, sizeof(*m));
}

// Sets the FP32 master weights from params_host (num_parameters floats, table order) and the BF16
// weights to them rounded to nearest.
static inline void model_set_params(Model *m, const float *params_host) {
    const size_t n = m->table.num_parameters;
    cudaCheck(cudaMemcpy(m->master, params_host, n * sizeof(float), cudaMemcpyHostToDevice));
    adamw_params_from_master(m->params, m->master, n, m->stream);
    cudaCheck(cudaStreamSynchronize(m->stream));
}

// Copies the FP32 master weights to params_host (num_parameters floats).
static inline void model_get_master(const Model *m, float *params_host) {
    cudaCheck(cudaStreamSynchronize(m->stream));
    cudaCheck(cudaMemcpy(params_host, m->master, m->table.num_parameters * sizeof(float), cudaMemcpyDeviceToHost));
}

// Sets (from the host) or gets (to the host) the AdamW moments, num_parameters floats each.
static inline void model_set_moments(Model *m, const float *m_host, const float *v_host) {
    cudaCheck(cudaMemcpy(m->m, m_host, m->table.num_parameters * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(m->v, v_host, m->table.num_parameters * sizeof(float), cudaMemcpyHostToDevice));
}
static inline void model_get_moments(const Model *m, float *m_host, float *v_host) {
    cudaCheck(cudaStreamSynchronize(m->stream));
    cudaCheck(cudaMemcpy(m_host, m->m, m->table.num_parameters * sizeof(float), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(v_host, m->v, m->table.num_parameters * sizeof(float), cudaMemcpyDeviceToHost));
}

// ----------------------------------------------------------------------------------------------
// checkpoints: the family's model file with the FP32 master weights (version 3, so a resume restores them
// exactly and the BF16 weights are their rounding, as after every update) and a training-state file
// (core/train_state.h) with the AdamW moments; *st carries the rest (step, RNG, data position, run
// settings) and its parameter fields are filled here.

// A checkpoint read into host memory (before the GPU is touched).
typedef struct {
    TrainState state;
    float *params, *m, *v;   // num_parameters each
} HostCheckpoint;

// Reads a checkpoint of a model of configuration `config` (num_parameters parameters): the model file
// (whose configuration must equal it, fp32) and the state file (whose run settings must equal *run).
// Returns 0, or -1 with a message naming the file.
static inline int model_checkpoint_read(const ModelFamily *f, const void *config, size_t num_parameters, const char *model_path,
                                        const char *state_path, const TrainRunConfig *run, HostCheckpoint *ck, char *err, size_t err_size) {
    memset(ck, 0, sizeof(*ck));
    void *file_cfg = calloc_check(1, f->config_bytes);
    int version = 0;
    int rc = f->model_file_load(model_path, config, file_cfg, &version, &ck->params, err, err_size);
    free(file_cfg);
    if (rc != 0) return -1;
    if (version != MODEL_FILE_VERSION_FP32)
        return set_error(err, err_size, "'%s': version %d model file; a checkpoint holds fp32 master weights (version 3)", model_path, version);
    ck->m = (float *)malloc_check(2 * num_parameters * sizeof(float));
    ck->v = ck->m + num_parameters;
    return train_state_load(state_path, run, num_parameters, 0, num_parameters, &ck->state, ck->m, ck->v, NULL, err, err_size);
}

static inline void model_checkpoint_free(HostCheckpoint *ck) {
    free(ck->params);
    free(ck->m);
    memset(ck, 0, sizeof(*ck));
}

// Puts a checkpoint read by model_checkpoint_read into the device model.
static inline void model_checkpoint_restore(Model *m, const HostCheckpoint *ck) {
    model_set_params(m, ck->params);
    model_set_moments(m, ck->m, ck->v);
}

// Writes a checkpoint of the device model: the model file first, then the state file.
static inline int model_checkpoint_write(const ModelFamily *f, const Model *m, const char *model_path, const char *state_path, TrainState *st,
                                         char *err, size_t err_size) {
    const size_t n = m->table.num_parameters;
    float *host = (float *)malloc_check(3 * n * sizeof(float));
    model_get_master(m, host);
    model_get_moments(m, host + n, host + 2 * n);
    st->num_parameters = n;
    st->shard_offset = 0;
    st->shard_size = n;
    st->has_master = 0;
    int rc = f->model_file_write(model_path, m->config, host, MODEL_FILE_VERSION_FP32, err, err_size);
    if (rc == 0) rc = train_state_write(state_path, st, host + n, host + 2 * n, NULL, err, err_size);
    free(host);
    return rc;
}

// ----------------------------------------------------------------------------------------------
// forward / backward / update

// Waits for the stream and adds the pending micro-batches' mean losses to loss_total, in order.
static inline void model_fold_losses_(Model *m) {
    cudaCheck(cudaStreamSynchronize(m->stream));
    for (int k = 0; k < m->pending; k++) {
        const float *losses = m->losses_host + (size_t)k * m->max_tokens;
        double sum = 0.0;
        for (int i = 0; i < m->pending_tokens[k]; i++) sum += losses[i];
        m->loss_total += (float)(sum / m->pending_tokens[k]);
        m->loss_count++;
    }
    m->pending = 0;
}

// Forward of slot `slot` over inputs [B,T] (host, token ids < vocab_size), B*T <= max_tokens. With
// targets [B,T] (host) it runs the fused classifier, which leaves dloss * dlogits in the slot's logits
// for backward (dloss = 1/(B*T*grad_accum)), and queues the copy of the B*T losses to the host for
// model_take_loss. With targets NULL it stops at the logits (BF16 [B*T, Vp]). Nothing waits for the GPU.
static inline void model_forward(Model *m, int slot, const int *inputs, const int *targets, int B, int T, float dloss) {
    const int N = B * T;
    shapeCheck(slot >= 0 && slot < m->num_slots, "forward of slot %d: the model has %d", slot, m->num_slots);
    shapeCheck(B > 0 && T > 0 && T <= m->dims.max_seq_len && (long long)B * T <= m->max_tokens,
               "forward of B=%d T=%d: need T <= %d and B*T <= %d", B, T, m->dims.max_seq_len, m->max_tokens);
    cudaStream_t s = m->stream;
    ModelSlot *sl = &m->slot[slot];
    cudaCheck(cudaMemcpyAsync(MODEL_PTR(m, int, sl->inputs), inputs, (size_t)N * sizeof(int), cudaMemcpyHostToDevice, s));
    if (targets != NULL) cudaCheck(cudaMemcpyAsync(MODEL_PTR(m, int, sl->targets), targets, (size_t)N * sizeof(int), cudaMemcpyHostToDevice, s));
    sl->B = B;
    sl->T = T;
    m->ops->embed_forward(m, slot, B, T);
    for (int l = 0; l < m->dims.num_layers; l++) m->ops->block_forward(m, l, slot, B, T);
    m->ops->head_forward(m, slot, B, T);
    if (targets == NULL) return;
    if (m->pending == MODEL_LOSS_RING) model_fold_losses_(m);
    float *losses = MODEL_PTR(m, float, sl->losses);
    fused_classifier(model_logits(m, slot), losses, MODEL_PTR(m, int, sl->targets), dloss, N, m->dims.vocab_size, m->dims.padded_vocab_size, s);
    float *dst = m->losses_host + (size_t)m->pending * m->max_tokens;
    cudaCheck(cudaMemcpyAsync(dst, losses, (size_t)N * sizeof(float), cudaMemcpyDeviceToHost, s));
    m->pending_tokens[m->pending++] = N;
}

// Waits for the stream and returns the mean loss of the forwards with targets since the last call: each
// micro-batch's mean (summed in double in token order, rounded to float), then the mean of those in
// double. 0 when there were none.
static inline float model_take_loss(Model *m) {
    model_fold_losses_(m);
    const float loss = m->loss_count == 0 ? 0.0f : (float)(m->loss_total / m->loss_count);
    m->loss_total = 0.0;
    m->loss_count = 0;
    return loss;
}

// Backward of slot `slot`'s forward (which had targets) into the FP32 gradients. accumulate: 1 adds to
// them (the later micro-steps of an optimizer step), 0 writes every element (the first: no memset).
static inline void model_backward(Model *m, int slot, bool accumulate) {
    const ModelSlot *sl = &m->slot[slot];
    const int B = sl->B, T = sl->T;
    m->ops->head_backward(m, slot, B, T, accumulate);
    for (int l = m->dims.num_layers - 1; l >= 0; l--) m->ops->block_backward(m, l, slot, B, T, accumulate);
    m->ops->embed_backward(m, slot, B, T, accumulate);
}

// Global L2 norm of the gradients (FP32 sum of squares on the device, square root on the host).
static inline float model_grad_norm(Model *m) {
    float *out = MODEL_PTR(m, float, m->norm_out);
    global_norm_squared(out, MODEL_PTR(m, float, m->norm_scratch), m->grads, (long long)m->table.num_parameters, m->stream);
    float squared = 0.0f;
    cudaCheck(cudaMemcpyAsync(&squared, out, sizeof(float), cudaMemcpyDeviceToHost, m->stream));
    cudaCheck(cudaStreamSynchronize(m->stream));
    return sqrtf(squared);
}

// Optimizer step `step` (1-based) with learning rate lr: global-norm clipping to opt->grad_clip, then
// AdamW on the FP32 master weights (weight decay and learning-rate multiplier per tensor, from the
// table), BF16 weights rewritten. Returns the gradient norm before clipping.
static inline float model_update(Model *m, const AdamWConfig *opt, float lr, int step) {
    const float norm = model_grad_norm(m);
    const AdamWStepParams hp = adamw_step_params(lr, opt->beta1, opt->beta2, opt->eps, opt->weight_decay, step,
                                                 grad_clip_scale(norm, opt->grad_clip));
    adamw_update(m->params, m->master, m->m, m->v, m->grads, &m->adamw_plan, hp, m->stream);
    return norm;
}

#endif // CORE_MODEL_CUH
