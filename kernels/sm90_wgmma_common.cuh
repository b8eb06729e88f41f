// Warpgroup matrix-multiply (wgmma, sm_90a) ordering primitives shared by the Hopper kernels (attention,
// the dequantizing MX/NVFP4 GEMM, the INT8 GEMM). SM90_HAS_WGMMA is 1 in device code compiled for sm_90a
// and 0 elsewhere (host code, other architectures), where these primitives compile to nothing: callers keep
// their wgmma paths behind the same macro (and trap or take another path outside it).
//   wgmma_fence():   after writing registers that the warpgroup's next products read (A fragments,
//                    accumulators), before issuing them
//   wgmma_commit():  closes the products issued so far into a group
//   wgmma_wait<N>(): blocks until at most N of the most recent groups are still running
//   wgmma_fence_proxy_async(): after this thread's ordinary (or cp.async, once waited for) writes to shared
//                    memory that wgmma will read as operands, before the barrier that publishes them
//   wgmma_pin(acc):  after a wait, keeps the compiler from moving reads of the accumulator registers (a
//                    float or int32 array, any rank) that the products wrote above that wait
// Host side: sm90_wgmma_compiled() says whether the device code running on the current GPU has these paths
// (an sm_90a build on a Hopper GPU; not an sm_90 build, whose wgmma paths compile to nothing);
// sm90_require_wgmma(what) stops the program with a message unless it does (the Hopper GEMMs' launchers).
#ifndef KERNELS_SM90_WGMMA_COMMON_CUH
#define KERNELS_SM90_WGMMA_COMMON_CUH

#include <stdint.h>
#include "kernels/cuda_common.h"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define SM90_HAS_WGMMA 1
#else
#define SM90_HAS_WGMMA 0
#endif

__device__ __forceinline__ void wgmma_fence() {
#if SM90_HAS_WGMMA
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if SM90_HAS_WGMMA
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int PENDING>
__device__ __forceinline__ void wgmma_wait() {
#if SM90_HAS_WGMMA
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(PENDING) : "memory");
#endif
}
__device__ __forceinline__ void wgmma_fence_proxy_async() {
#if SM90_HAS_WGMMA
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void wgmma_pin(float &x) { asm volatile("" : "+f"(x)::"memory"); }
__device__ __forceinline__ void wgmma_pin(int32_t &x) { asm volatile("" : "+r"(x)::"memory"); }
template <typename T, int N>
__device__ __forceinline__ void wgmma_pin(T (&x)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) wgmma_pin(x[i]);
}

__global__ void sm90_wgmma_probe_kernel(int *has_wgmma) { *has_wgmma = SM90_HAS_WGMMA; }

static inline bool sm90_wgmma_compiled() {
    static int known = -1;  // one device per process
    if (known < 0) {
        int *d_has;
        cudaCheck(cudaMalloc(&d_has, sizeof(int)));
        sm90_wgmma_probe_kernel<<<1, 1>>>(d_has);
        cudaCheckLaunch();
        cudaCheck(cudaMemcpy(&known, d_has, sizeof(int), cudaMemcpyDeviceToHost));
        cudaCheck(cudaFree(d_has));
    }
    return known == 1;
}

static inline void sm90_require_wgmma(const char *what) {
    if (sm90_wgmma_compiled()) return;
    int device, major, minor;
    cudaCheck(cudaGetDevice(&device));
    cudaCheck(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    cudaCheck(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    fprintf(stderr, "error: %s needs device code built for sm_90a (wgmma) on a Hopper GPU; this device is sm_%d%d\n", what, major,
            minor);
    exit(1);
}

#endif // KERNELS_SM90_WGMMA_COMMON_CUH
