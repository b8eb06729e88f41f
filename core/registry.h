// Tensor registry: every parameter, gradient, optimizer-state, activation and workspace tensor of a
// trainer is described here (name, dtype, shape, owner layer, category) BEFORE any device memory is
// taken. The registry then sizes one arena per category, prints a
// memory report, and refuses a run whose arenas do not fit in the free device memory with a message
// that names the sizes and the flags to lower. Allocation itself (cudaMalloc of the arenas and
// binding of each tensor's pointer) is done by the CUDA side (registry_allocate in core/registry.cuh).
//
// Layout inside an arena: tensors in registration order; each starts at a multiple of its `align`
// bytes (REGISTRY_ALIGN for activations and workspace; the element size for the packed parameter-
// shaped arrays, so that those stay one contiguous flat array in llm.c order).
// Plain C, also compiled as C++ by nvcc.
#ifndef CORE_REGISTRY_H
#define CORE_REGISTRY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/utils.h"

#define REGISTRY_ALIGN 256        // bytes: start of every activation / workspace tensor
#define REGISTRY_NAME_LEN 48
#define REGISTRY_MAX_DIMS 4

typedef enum { DTYPE_BF16 = 0, DTYPE_FP32, DTYPE_INT32, DTYPE_COUNT } DType;

static inline size_t dtype_size(DType t) { return t == DTYPE_BF16 ? 2 : 4; }

// Memory categories of the report; each is one arena.
typedef enum {
    MEM_PARAMETERS = 0,  // working (BF16) weights
    MEM_GRADIENTS,       // parameter gradients
    MEM_OPTIMIZER,       // FP32 master weights and AdamW moments
    MEM_ACTIVATIONS,     // tensors kept from forward for backward, and the backward's buffers
    MEM_WORKSPACE,       // scratch of the kernels (reductions, sort buffers, GEMM workspace)
    MEM_COUNT
} MemCategory;

static inline const char *mem_category_name(MemCategory c) {
    static const char *const names[MEM_COUNT] = {"parameters", "gradients", "optimizer state", "activations", "workspace"};
    return names[c];
}

typedef struct {
    char name[REGISTRY_NAME_LEN];
    DType dtype;
    int ndim;
    size_t shape[REGISTRY_MAX_DIMS];
    size_t numel;
    int layer;             // owner layer, -1 for tensors of the whole model (embeddings, stacked [L, ...] weights)
    MemCategory category;
    size_t align;          // bytes
    size_t offset;         // bytes from the start of the category's arena
    void *data;            // device pointer once allocated
} RegTensor;

typedef struct {
    RegTensor *tensors;
    int count, capacity;
    size_t arena_bytes[MEM_COUNT];
    void *arena[MEM_COUNT];       // device base pointers once allocated
    size_t external_bytes[MEM_COUNT];  // memory the registry does not allocate but reports (cuBLASLt workspace)
} Registry;

static inline void registry_init(Registry *r) { memset(r, 0, sizeof(*r)); }

static inline void registry_free_host(Registry *r) {
    free(r->tensors);
    memset(r, 0, sizeof(*r));
}

// Registers a tensor of `ndim` dimensions (shape[0..ndim)) and returns its id. `align` 0 means
// REGISTRY_ALIGN. The name is printf-formatted from `name` and `layer` when layer >= 0 ("%s.%d").
static inline int registry_add(Registry *r, const char *name, int layer, MemCategory category, DType dtype, int ndim,
                               const size_t *shape, size_t align) {
    if (ndim < 1 || ndim > REGISTRY_MAX_DIMS) fatal("registry: tensor '%s' has %d dimensions (1..%d)", name, ndim, REGISTRY_MAX_DIMS);
    if (r->count == r->capacity) {
        r->capacity = r->capacity == 0 ? 64 : 2 * r->capacity;
        RegTensor *grown = (RegTensor *)realloc(r->tensors, (size_t)r->capacity * sizeof(RegTensor));
        if (grown == NULL) fatal("registry: out of host memory for %d tensors", r->capacity);
        r->tensors = grown;
    }
    RegTensor *t = &r->tensors[r->count];
    memset(t, 0, sizeof(*t));
    if (layer >= 0) snprintf(t->name, sizeof(t->name), "%s.%d", name, layer);
    else snprintf(t->name, sizeof(t->name), "%s", name);
    t->dtype = dtype;
    t->ndim = ndim;
    t->numel = 1;
    for (int d = 0; d < ndim; d++) {
        t->shape[d] = shape[d];
        t->numel *= shape[d];
    }
    t->layer = layer;
    t->category = category;
    t->align = align == 0 ? REGISTRY_ALIGN : align;
    size_t start = (r->arena_bytes[category] + t->align - 1) / t->align * t->align;
    t->offset = start;
    r->arena_bytes[category] = start + t->numel * dtype_size(dtype);
    return r->count++;
}

// Shorthands for 1-, 2- and 3-dimensional tensors.
static inline int registry_add1(Registry *r, const char *name, int layer, MemCategory c, DType t, size_t d0) {
    size_t s[1] = {d0};
    return registry_add(r, name, layer, c, t, 1, s, 0);
}
static inline int registry_add2(Registry *r, const char *name, int layer, MemCategory c, DType t, size_t d0, size_t d1) {
    size_t s[2] = {d0, d1};
    return registry_add(r, name, layer, c, t, 2, s, 0);
}

// Bytes the registry will allocate plus the external memory it reports, over all categories.
static inline size_t registry_total_bytes(const Registry *r) {
    size_t total = 0;
    for (int c = 0; c < MEM_COUNT; c++) total += r->arena_bytes[c] + r->external_bytes[c];
    return total;
}

// Prints the memory report: bytes per category and the total, and the largest activation tensor.
static inline void registry_print_report(const Registry *r, FILE *f) {
    const double gib = 1024.0 * 1024.0 * 1024.0;
    fprintf(f, "device memory plan (%d tensors):\n", r->count);
    for (int c = 0; c < MEM_COUNT; c++) {
        int n = 0;
        for (int i = 0; i < r->count; i++) n += r->tensors[i].category == (MemCategory)c;
        fprintf(f, "  %-16s %9.3f GiB  (%d tensors%s)\n", mem_category_name((MemCategory)c),
                (double)(r->arena_bytes[c] + r->external_bytes[c]) / gib, n,
                r->external_bytes[c] > 0 ? ", incl. the cuBLASLt workspace" : "");
    }
    fprintf(f, "  %-16s %9.3f GiB\n", "total", (double)registry_total_bytes(r) / gib);
}

// Checks that the plan fits in `free_bytes` of device memory. Returns 0, or -1 with a message that
// says what was asked, what is free, and which flags lower the activation memory.
static inline int registry_check_fit(const Registry *r, size_t free_bytes, char *err, size_t err_size) {
    const double gib = 1024.0 * 1024.0 * 1024.0;
    size_t total = registry_total_bytes(r);
    if (total <= free_bytes) return 0;
    return set_error(err, err_size,
                     "out of device memory: the run needs %.2f GiB (parameters %.2f, gradients %.2f, optimizer %.2f, "
                     "activations %.2f, workspace %.2f) but only %.2f GiB are free; lower the micro-batch -b/--batch-size "
                     "or the sequence length -t/--seq-len (activations scale with B*T; keep -d with more accumulation steps)",
                     (double)total / gib, (double)(r->arena_bytes[MEM_PARAMETERS] + r->external_bytes[MEM_PARAMETERS]) / gib,
                     (double)(r->arena_bytes[MEM_GRADIENTS] + r->external_bytes[MEM_GRADIENTS]) / gib,
                     (double)(r->arena_bytes[MEM_OPTIMIZER] + r->external_bytes[MEM_OPTIMIZER]) / gib,
                     (double)(r->arena_bytes[MEM_ACTIVATIONS] + r->external_bytes[MEM_ACTIVATIONS]) / gib,
                     (double)(r->arena_bytes[MEM_WORKSPACE] + r->external_bytes[MEM_WORKSPACE]) / gib,
                     (double)free_bytes / gib);
}

// Sets every tensor's data pointer from its category's arena base (after the arenas are allocated).
static inline void registry_bind(Registry *r) {
    for (int i = 0; i < r->count; i++) {
        RegTensor *t = &r->tensors[i];
        t->data = (char *)r->arena[t->category] + t->offset;
    }
}

#endif // CORE_REGISTRY_H
