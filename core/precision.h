// Run-time precision modes of the linear layers (the -p/--precision flag). Every linear layer's
// three GEMMs (Fprop, Dgrad, Wgrad) dispatch on this enum; see the README for what each mode does.
#ifndef CORE_PRECISION_H
#define CORE_PRECISION_H

#include <string.h>

typedef enum {
    PRECISION_BF16 = 0,   // BF16 operands, FP32 accumulation
    PRECISION_FP8CS,      // FP8 with per-tensor current scaling (E4M3 forward, E5M2 gradients)
    PRECISION_MUS,        // µnit Scaling: FP8 with static scales on a unit-variance model
    PRECISION_MXFP8,      // MX FP8: E4M3 elements, E8M0 scale per 32 along K
    PRECISION_NVFP4,      // NVFP4: E2M1 elements, UE4M3 scale per 16 along K, FP32 tensor scale
    PRECISION_INT8FB,     // INT8 per-tile scales with block-level fallback to ~16-bit
    PRECISION_COUNT
} Precision;

static const char *const PRECISION_NAMES[PRECISION_COUNT] = {"bf16", "fp8cs", "mus", "mxfp8", "nvfp4", "int8fb"};

// Returns the mode named `name`, or -1 when no mode has that name.
static inline int precision_from_name(const char *name) {
    for (int i = 0; i < PRECISION_COUNT; i++) {
        if (strcmp(name, PRECISION_NAMES[i]) == 0) return i;
    }
    return -1;
}

#endif // CORE_PRECISION_H
