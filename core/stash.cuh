// The one interface through which a layer keeps a tensor from forward for its backward.
// stash_save is called by forward right after the tensor is produced; stash_restore by backward to
// get it back as BF16. In BF16 mode the stash is a passthrough: the registered activation buffer
// itself is kept and restore returns it. A quantizing stash (FP8 / MX activations kept for Wgrad)
// plugs in here: save would quantize into the tensor's stash storage and set its scale slots in the
// registry, restore would dequantize (or hand the quantized operand to the linear dispatch).
#ifndef CORE_STASH_CUH
#define CORE_STASH_CUH

#include "core/precision.h"
#include "core/registry.h"
#include "kernels/cuda_common.h"

typedef struct {
    Precision precision;  // decides how stashed tensors are stored
} Stash;

static inline void stash_init(Stash *s, Precision precision) {
    if (precision != PRECISION_BF16) fatal("stash: precision '%s' has no stash path built", PRECISION_NAMES[precision]);
    s->precision = precision;
}

// Keeps tensor t (BF16, already written by its producer on `stream`) for backward.
static inline void stash_save(const Stash *s, const RegTensor *t, cudaStream_t stream) {
    (void)stream;
    shapeCheck(s->precision == PRECISION_BF16 && t->dtype == DTYPE_BF16, "stash of '%s': only BF16 passthrough is built", t->name);
}

// Returns tensor t as BF16 for backward (the passthrough: its own buffer).
static inline const bf16 *stash_restore(const Stash *s, const RegTensor *t, cudaStream_t stream) {
    (void)stream;
    shapeCheck(s->precision == PRECISION_BF16 && t->dtype == DTYPE_BF16, "stash of '%s': only BF16 passthrough is built", t->name);
    return (const bf16 *)t->data;
}

#endif // CORE_STASH_CUH
