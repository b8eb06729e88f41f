// Timing helpers shared by the layer-kernel harnesses (dev/cuda/layernorm.cu, classifier.cu, adamw.cu,
// encoder.cu): random device fills, an L2 flush, and the median of CUDA-event timings.
#ifndef DEV_CUDA_LAYER_BENCH_CUH
#define DEV_CUDA_LAYER_BENCH_CUH

#include <algorithm>
#include <stdint.h>
#include <stdio.h>
#include <vector>
#include "kernels/cuda_common.h"

#define BENCH_FLUSH_BYTES ((size_t)256 * 1024 * 1024)  // > 5x the H100's 50 MB L2

// Uniform value in [-scale, scale) from a hash of (seed, i).
__device__ __forceinline__ float bench_hash_uniform(uint64_t seed, size_t i, float scale) {
    uint64_t z = seed + 0x9E3779B97F4A7C15ull * (i + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return scale * ((float)(z >> 40) * (2.0f / 16777216.0f) - 1.0f);
}

template <typename T>
__global__ void bench_fill_kernel(T *x, size_t n, uint64_t seed, float offset, float scale) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] = (T)(offset + bench_hash_uniform(seed, i, scale));
}

// x[i] = offset + uniform[-scale, scale), on the device.
template <typename T>
static void bench_fill(T *x, size_t n, uint64_t seed, float offset, float scale) {
    bench_fill_kernel<T><<<1024, 256>>>(x, n, seed, offset, scale);
    cudaCheckLaunch();
}

template <typename T>
static T *bench_alloc_random(size_t n, uint64_t seed, float offset, float scale) {
    T *x;
    cudaCheck(cudaMalloc(&x, n * sizeof(T)));
    bench_fill(x, n, seed, offset, scale);
    return x;
}

// Reads the flush buffer through L2 (and writes *sink only if an impossible sum appears, so the
// loads are kept). Reading rather than writing leaves clean lines in L2: a memset flush would leave
// them dirty, and the timed kernel would then pay for their write-back.
__global__ void bench_flush_kernel(const int4 *buf, size_t n, int *sink) {
    int acc = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const int4 v = __ldcg(buf + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x7fffffff) *sink = acc;
}

// Median in microseconds of `reps` timings of run(), each after reading BENCH_FLUSH_BYTES so that the
// kernel's inputs come from device memory rather than the L2 cache. `setup` (may be empty) runs
// before each flush, untimed, to restore inputs that run() modifies.
// How the L2 is emptied before a timed run: by reading a large buffer (clean lines, the default), or
// by a memset (dirty lines, whose write-back the timed kernel then pays; for comparison only).
enum BenchFlush { BENCH_FLUSH_READ, BENCH_FLUSH_MEMSET };

template <typename Setup, typename Run>
static float bench_median_us(int reps, Setup setup, Run run, BenchFlush mode = BENCH_FLUSH_READ) {
    static int4 *flush = NULL;
    static int *sink = NULL;
    if (flush == NULL) {
        cudaCheck(cudaMalloc(&flush, BENCH_FLUSH_BYTES));
        cudaCheck(cudaMemset(flush, 0, BENCH_FLUSH_BYTES));
        cudaCheck(cudaMalloc(&sink, sizeof(int)));
    }
    cudaEvent_t start, stop;
    cudaCheck(cudaEventCreate(&start));
    cudaCheck(cudaEventCreate(&stop));
    setup();
    run();  // warm-up: module load, attribute setting
    std::vector<float> times;
    for (int r = 0; r < reps; r++) {
        setup();
        if (mode == BENCH_FLUSH_READ) {
            bench_flush_kernel<<<1024, 256>>>(flush, BENCH_FLUSH_BYTES / sizeof(int4), sink);
            cudaCheckLaunch();
        } else {
            cudaCheck(cudaMemsetAsync(flush, 0, BENCH_FLUSH_BYTES, 0));
        }
        cudaCheck(cudaEventRecord(start, 0));
        run();
        cudaCheck(cudaEventRecord(stop, 0));
        cudaCheck(cudaEventSynchronize(stop));
        float ms;
        cudaCheck(cudaEventElapsedTime(&ms, start, stop));
        times.push_back(ms * 1000.0f);
    }
    cudaCheck(cudaEventDestroy(start));
    cudaCheck(cudaEventDestroy(stop));
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

// One result line: name, time, bytes moved (each input read once, each output written once), and
// the bandwidth that implies.
static void bench_report(const char *name, float us, double bytes) {
    printf("%-44s %10.1f us %10.1f MB %8.0f GB/s\n", name, us, bytes / 1e6, bytes / (us * 1e-6) / 1e9);
    fflush(stdout);
}

#endif // DEV_CUDA_LAYER_BENCH_CUH
