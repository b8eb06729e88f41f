// CUDA utilities shared by every kernel header, test and harness: error checking for the runtime,
// cuBLAS/cuBLASLt and launches, ceil-division, and the BF16 type.
#ifndef KERNELS_CUDA_COMMON_H
#define KERNELS_CUDA_COMMON_H

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublasLt.h>
#include <stdio.h>
#include <stdlib.h>

static inline void cuda_check_(cudaError_t err, const char *file, int line) {
    if (err != cudaSuccess) {
        fprintf(stderr, "error: CUDA: %s at %s:%d\n", cudaGetErrorString(err), file, line);
        exit(1);
    }
}
#define cudaCheck(call) cuda_check_((call), __FILE__, __LINE__)

// Checks the launch that precedes it (configuration errors surface at once; faults at the next sync).
#define cudaCheckLaunch() cuda_check_(cudaGetLastError(), __FILE__, __LINE__)

static inline void cublas_check_(cublasStatus_t status, const char *file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "error: cuBLAS status %d (%s) at %s:%d\n", (int)status, cublasGetStatusString(status), file, line);
        exit(1);
    }
}
#define cublasCheck(call) cublas_check_((call), __FILE__, __LINE__)

// Fails with a message when a kernel's shape precondition does not hold (host side, before launch).
#define shapeCheck(cond, ...)                                                                  \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "error: shape check failed at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fprintf(stderr, "\n");                                                             \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

template <class T>
__host__ __device__ constexpr T ceil_div(T a, T b) { return (a + b - 1) / b; }

typedef __nv_bfloat16 bf16;

#endif // KERNELS_CUDA_COMMON_H
