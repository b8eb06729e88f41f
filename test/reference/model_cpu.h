// The scaffolding every CPU reference model shares (gpt2_cpu.h, llama_cpu.h): CpuModel holds the flat
// parameter, gradient and AdamW-moment buffers laid out by the family's parameter table (one view per
// table row), the activation arena (one buffer for the activations kept from forward and one of the same
// layout for their gradients, one view per activation of the family's list), the batch's tokens (checked
// against the vocabulary and kept for backward) and the mean loss of the last forward. A family's model
// struct holds its configuration and a CpuModel `core`; its build fills core.act_size between
// cpu_model_build and cpu_model_alloc_acts, and its forward and backward compose layers_cpu.h's layers on
// the views. Plain C, also compiled as C++ by nvcc (the GPU tests include it).
//
// Determinism: as layers_cpu.h (every result independent of the OpenMP thread count); the mean loss sums
// the per-token losses in double, in token order.
#ifndef TEST_REFERENCE_MODEL_CPU_H
#define TEST_REFERENCE_MODEL_CPU_H

#include <stddef.h>
#include <string.h>

#include "core/optimizer.h"
#include "core/param_table.h"
#include "core/utils.h"
#include "test/reference/layers_cpu.h"

#define CPU_MODEL_MAX_ACTS 32

typedef struct {
    ParamTable table;                     // the family's parameter table of its configuration
    int B, T;                             // batch shape the activations were sized for
    float *params;                        // table.num_parameters, table order (the model file's order)
    float *grads;                         // same layout
    float *m, *v;                         // AdamW moments, same layout
    float *param[PARAM_TABLE_MAX];        // views into params, one per table row
    float *grad[PARAM_TABLE_MAX];         // views into grads
    int num_acts;                         // activations in the family's list
    size_t act_size[CPU_MODEL_MAX_ACTS];  // elements of each (filled by the family before cpu_model_alloc_acts)
    size_t acts_total;                    // their sum
    float *acts_memory, *grad_acts_memory;
    float *act[CPU_MODEL_MAX_ACTS];       // views into acts_memory
    float *grad_act[CPU_MODEL_MAX_ACTS];  // views into grad_acts_memory (same layout)
    int *inputs, *targets;                // [B,T], copied by forward for backward
    float mean_loss;                      // of the last forward with targets
} CpuModel;

// Starts a model of parameter table *table for batches of B x T tokens (T <= max_seq_len; otherwise a
// fatal error naming `who`): parameters, gradients, moments and token buffers zeroed, the per-tensor views
// set, num_acts activations to be sized next (core->act_size, then cpu_model_alloc_acts).
static inline void cpu_model_build(CpuModel *core, const ParamTable *table, int B, int T, int max_seq_len, int num_acts, const char *who) {
    if (B <= 0 || T <= 0 || T > max_seq_len) fatal("%s: need B > 0 and 0 < T <= %d, got B=%d T=%d", who, max_seq_len, B, T);
    if (num_acts <= 0 || num_acts > CPU_MODEL_MAX_ACTS) fatal("%s: %d activations (1..%d supported)", who, num_acts, CPU_MODEL_MAX_ACTS);
    memset(core, 0, sizeof(*core));
    core->table = *table;
    core->B = B;
    core->T = T;
    const size_t np = table->num_parameters, BT = (size_t)B * T;
    core->params = (float *)calloc_check(np, sizeof(float));
    core->grads = (float *)calloc_check(np, sizeof(float));
    core->m = (float *)calloc_check(np, sizeof(float));
    core->v = (float *)calloc_check(np, sizeof(float));
    for (int i = 0; i < table->count; i++) {
        core->param[i] = core->params + table->specs[i].offset;
        core->grad[i] = core->grads + table->specs[i].offset;
    }
    core->num_acts = num_acts;
    core->inputs = (int *)calloc_check(BT, sizeof(int));
    core->targets = (int *)calloc_check(BT, sizeof(int));
}

// Allocates the activation arena and its gradient (zeroed) from core->act_size and sets the views.
static inline void cpu_model_alloc_acts(CpuModel *core) {
    size_t total = 0;
    for (int i = 0; i < core->num_acts; i++) total += core->act_size[i];
    core->acts_total = total;
    core->acts_memory = (float *)calloc_check(total, sizeof(float));
    core->grad_acts_memory = (float *)calloc_check(total, sizeof(float));
    size_t offset = 0;
    for (int i = 0; i < core->num_acts; i++) {
        core->act[i] = core->acts_memory + offset;
        core->grad_act[i] = core->grad_acts_memory + offset;
        offset += core->act_size[i];
    }
}

static inline void cpu_model_free(CpuModel *core) {
    free(core->params);
    free(core->grads);
    free(core->m);
    free(core->v);
    free(core->acts_memory);
    free(core->grad_acts_memory);
    free(core->inputs);
    free(core->targets);
    memset(core, 0, sizeof(*core));
}

// The start of a forward: checks inputs [B,T] (and targets [B,T] unless NULL) against [0, V) (a fatal
// error naming `who`, the token and its position otherwise) and keeps them for backward.
static inline void cpu_model_set_batch(CpuModel *core, const int *inputs, const int *targets, int V, const char *who) {
    const int BT = core->B * core->T;
    for (int i = 0; i < BT; i++) {
        if (inputs[i] < 0 || inputs[i] >= V) fatal("%s: input token %d at position %d is outside [0, %d)", who, inputs[i], i, V);
        if (targets != NULL && (targets[i] < 0 || targets[i] >= V))
            fatal("%s: target token %d at position %d is outside [0, %d)", who, targets[i], i, V);
    }
    memcpy(core->inputs, inputs, (size_t)BT * sizeof(int));
    if (targets != NULL) memcpy(core->targets, targets, (size_t)BT * sizeof(int));
}

// The end of a forward with targets: the mean of the B*T per-token losses (summed in double, in order),
// kept in core->mean_loss and returned.
static inline float cpu_model_mean_loss(CpuModel *core, const float *losses) {
    const int BT = core->B * core->T;
    double sum = 0.0;
    for (int i = 0; i < BT; i++) sum += losses[i];
    core->mean_loss = (float)(sum / BT);
    return core->mean_loss;
}

// The start of a backward: zeroes the activation gradients and sets dlosses [B,T] (the gradient of the
// per-token losses) to 1 / (B*T*grad_accum_steps), the gradient of mean_loss / grad_accum_steps.
static inline void cpu_model_backward_begin(CpuModel *core, float *dlosses, int grad_accum_steps) {
    const int BT = core->B * core->T;
    memset(core->grad_acts_memory, 0, core->acts_total * sizeof(float));
    const float dloss = 1.0f / ((float)BT * (float)grad_accum_steps);
    for (int i = 0; i < BT; i++) dlosses[i] = dloss;
}

// Sets every parameter gradient to zero.
static inline void cpu_model_zero_grad(CpuModel *core) {
    memset(core->grads, 0, core->table.num_parameters * sizeof(float));
}

// Optimizer step `step` (1-based, for the bias corrections) with learning rate lr: clips the global
// gradient norm to opt->grad_clip, then AdamW on every tensor (weight decay where the table's decay flag
// is set). Returns the gradient norm before clipping.
static inline float cpu_model_update(CpuModel *core, const AdamWConfig *opt, float lr, int step) {
    return cpu_adamw_step_table(&core->table, core->params, core->grads, core->m, core->v, opt, lr, step);
}

#endif // TEST_REFERENCE_MODEL_CPU_H
