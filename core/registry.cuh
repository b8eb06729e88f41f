// Device side of the tensor registry (core/registry.h): checks the memory plan against the free
// device memory BEFORE allocating anything, then allocates one arena per category and binds every
// tensor's pointer.
#ifndef CORE_REGISTRY_CUH
#define CORE_REGISTRY_CUH

#include "core/registry.h"
#include "kernels/cuda_common.h"

// Allocates the arenas of *r (zero-filled) when the whole plan fits in the free device memory.
// Returns 0, or -1 with registry_check_fit's message (nothing is allocated then).
static inline int registry_allocate(Registry *r, char *err, size_t err_size) {
    size_t free_bytes = 0, total_bytes = 0;
    cudaCheck(cudaMemGetInfo(&free_bytes, &total_bytes));
    // external memory (the cuBLASLt workspace) is allocated already, so it is no longer in free_bytes
    size_t external = 0;
    for (int c = 0; c < MEM_COUNT; c++) external += r->external_bytes[c];
    if (registry_check_fit(r, free_bytes + external, err, err_size) != 0) return -1;
    for (int c = 0; c < MEM_COUNT; c++) {
        r->arena[c] = NULL;
        if (r->arena_bytes[c] == 0) continue;
        cudaCheck(cudaMalloc(&r->arena[c], r->arena_bytes[c]));
        cudaCheck(cudaMemset(r->arena[c], 0, r->arena_bytes[c]));
    }
    registry_bind(r);
    return 0;
}

// Frees the arenas and the host table.
static inline void registry_free(Registry *r) {
    for (int c = 0; c < MEM_COUNT; c++) {
        if (r->arena[c] != NULL) cudaCheck(cudaFree(r->arena[c]));
    }
    registry_free_host(r);
}

#endif // CORE_REGISTRY_CUH
