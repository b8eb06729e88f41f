// Benchmark of the quantized GEMMs against cuBLASLt BF16 in the same run:
//   BF16 (cuBLASLt), FP8-CS E4M3 x E4M3 (cuBLASLt, fast accumulation) excluding / including the
//   quantization, int8fb with no fallback with lone blocks ("i8 1x1") and with the chosen cluster
//   shape (excluding / including the quantization), int8fb with ~5% of A's tiles falling back
//   (excluding the quantization); then a sweep of the cluster shapes and the int8fb quantizer's time.
// "Including the quantization" quantizes BOTH operands from BF16 inside the timed region (FP8-CS:
// amax_bf16 + fp8cs_quantize of kernels/quantize_fp8_tensorwise.cuh, row-wise copy only; int8fb:
// quantize_int8fb with row-chunk scales for A and tile scales for B), an upper bound for a trainer that
// caches the quantized weights across micro-batches.
// Method: random N(0,1) BF16 data (never zeros), L2 flushed (a 256 MiB memset) before every timed
// repetition, CUDA events around the timed work only, median of the repetitions. Sanity column: the
// relative difference of each quantized output from the BF16 output on the first rows.
//   ./build/dev/gemm_fp8_int8 [reps] [1x1|2x2]   (cluster shape of the int8fb columns, default 1x1)
//   ./build/dev/gemm_fp8_int8 ceiling            (tensor-core ceiling of the int8fb instruction mix)
//   ./build/dev/gemm_fp8_int8 one M N K          (3 int8fb GEMMs, for a profiler)
#include <algorithm>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <vector>
#include "kernels/cuda_common.h"
#include "kernels/matmul_cublaslt.cuh"
#include "kernels/quantize_common.cuh"
#include "kernels/quantize_fp8_tensorwise.cuh"
#include "kernels/quantize_int8_tile128_fallback.cuh"
#include "kernels/sm90_int8_gemm_tile128_fallback.cuh"

// x[i] ~ N(0, 1) from a hash of (seed, i), rounded to BF16.
__global__ void fill_normal_bf16_kernel(bf16 *x, size_t n, uint32_t seed) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h1 = (uint32_t)i * 0x9E3779B1u ^ seed, h2 = (uint32_t)(i >> 32) * 0x85EBCA77u ^ (seed * 0xC2B2AE3Du);
        h1 ^= h1 >> 16; h1 *= 0x7FEB352Du; h1 ^= h1 >> 15; h1 *= 0x846CA68Bu; h1 ^= h1 >> 16;
        h2 ^= h1; h2 ^= h2 >> 16; h2 *= 0x7FEB352Du; h2 ^= h2 >> 15; h2 *= 0x846CA68Bu; h2 ^= h2 >> 16;
        float u1 = ((h1 >> 8) + 0.5f) * (1.0f / 16777216.0f), u2 = (h2 >> 8) * (1.0f / 16777216.0f);
        x[i] = __float2bfloat16(sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2));
    }
}

// Puts a 300-sigma outlier at a hashed position of each 128 x 128 tile of x[rows, cols] whose hash
// falls under `fraction`.
__global__ void inject_outliers_kernel(bf16 *x, int rows, int cols, float fraction, uint32_t seed) {
    int kt = blockIdx.x * blockDim.x + threadIdx.x, tr = blockIdx.y;
    if (kt * 128 >= cols) return;
    uint32_t h = (uint32_t)(tr * 65537 + kt) * 0x9E3779B1u ^ seed;
    h ^= h >> 16; h *= 0x7FEB352Du; h ^= h >> 15; h *= 0x846CA68Bu; h ^= h >> 16;
    if ((h >> 8) * (1.0f / 16777216.0f) >= fraction) return;
    int r = min(tr * 128 + (int)(h & 127), rows - 1), c = min(kt * 128 + (int)((h >> 7) & 127), cols - 1);
    x[(size_t)r * cols + c] = __float2bfloat16(300.0f);
}

static void fill_normal(bf16 *x, size_t n, uint32_t seed) {
    fill_normal_bf16_kernel<<<1024, 256>>>(x, n, seed);
    cudaCheckLaunch();
}

// Tensor-core ceiling of the int8fb consumers' instruction mix, without tensor copies: each block's two
// warpgroups run `steps` steps of 4 wgmma s8 m64n128k32 (K = 128) on fixed shared-memory tiles filled
// with hashed bytes, through the kernel's two int32 accumulators in turn; with CONVERT each finished
// step is also converted, scaled and added into FP32 (i8g_promote). One FP32 sum per thread goes to sink.
template <bool CONVERT>
__global__ void __launch_bounds__(384, 1) igmma_ceiling_kernel(int steps, float *sink) {
    extern __shared__ uint8_t smem_raw[];
    uint8_t *tiles = (uint8_t *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    for (int i = threadIdx.x; i < 2 * I8G_TILE_BYTES / 4; i += blockDim.x) ((uint32_t *)tiles)[i] = (uint32_t)i * 0x9E3779B1u;
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    __syncthreads();
    const int warpgroup = threadIdx.x / 128;
    if (warpgroup == 0) {  // the GEMM's producer warpgroup has no work here
        asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(I8G_PRODUCER_REGS));
        return;
    }
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(I8G_CONSUMER_REGS));
    const uint32_t a = sm90_sw128_desc_lo(tiles + (warpgroup - 1) * 64 * I8G_BK), b = sm90_sw128_desc_lo(tiles + I8G_TILE_BYTES);
    float acc[64];
#pragma unroll
    for (int i = 0; i < 64; i++) acc[i] = 0.0f;
    int32_t part0[64], part1[64];
    I8gStep st;
    st.stage = 0; st.s_lo = 1e-3f; st.s_hi = 2e-3f;
    // The same loop shape as int8fb_gemm_kernel's consumers (ptxas keeps the wgmma asynchronous).
    int s = 0;
    i8g_issue_stage(part0, a, b);
    while (true) {
        if (++s == steps) {
            wgmma_wait<0>();
            wgmma_pin(part0);
            if (CONVERT) i8g_promote(acc, part0, st);
            break;
        }
        i8g_issue_stage(part1, a, b);
        wgmma_wait<1>();
        wgmma_pin(part0);
        if (CONVERT) i8g_promote(acc, part0, st);
        if (++s == steps) {
            wgmma_wait<0>();
            wgmma_pin(part1);
            if (CONVERT) i8g_promote(acc, part1, st);
            break;
        }
        i8g_issue_stage(part0, a, b);
        wgmma_wait<1>();
        wgmma_pin(part1);
        if (CONVERT) i8g_promote(acc, part1, st);
    }
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < 64; i++) sum += acc[i] + (float)(part0[i] ^ part1[i]);
    sink[blockIdx.x * blockDim.x + threadIdx.x] = sum;
}

// TOP/s of igmma_ceiling_kernel<CONVERT> on one block per SM, `steps` K-steps of 128 x 128 x 128 each.
template <bool CONVERT>
static double igmma_ceiling(int sms, int steps, float *sink) {
    const int smem = 2 * I8G_TILE_BYTES + 1024;
    cudaCheck(cudaFuncSetAttribute(igmma_ceiling_kernel<CONVERT>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    cudaEvent_t start, stop;
    cudaCheck(cudaEventCreate(&start));
    cudaCheck(cudaEventCreate(&stop));
    float best = 1e30f;
    for (int r = 0; r < 6; r++) {  // the first run loads the module; best of the rest
        cudaCheck(cudaEventRecord(start, 0));
        igmma_ceiling_kernel<CONVERT><<<sms, 384, smem>>>(steps, sink);
        cudaCheckLaunch();
        cudaCheck(cudaEventRecord(stop, 0));
        cudaCheck(cudaEventSynchronize(stop));
        float ms;
        cudaCheck(cudaEventElapsedTime(&ms, start, stop));
        if (r > 0) best = std::min(best, ms);
    }
    cudaCheck(cudaEventDestroy(start));
    cudaCheck(cudaEventDestroy(stop));
    return 2.0 * 128 * 128 * 128 * (double)steps * sms / (best * 1e-3) / 1e12;
}

struct Timer {
    cudaEvent_t start, stop;
    void *flush;
    size_t flush_bytes;
};

// Median time in ms of `reps` runs of fn(), each after an L2 flush, timed with events.
template <typename F>
static float time_median(Timer &t, int reps, F fn) {
    fn();  // warm-up: plan creation, module load
    cudaCheck(cudaDeviceSynchronize());
    std::vector<float> ms(reps);
    for (int r = 0; r < reps; r++) {
        cudaCheck(cudaMemsetAsync(t.flush, r & 0xFF, t.flush_bytes, 0));
        cudaCheck(cudaEventRecord(t.start, 0));
        fn();
        cudaCheck(cudaEventRecord(t.stop, 0));
        cudaCheck(cudaEventSynchronize(t.stop));
        cudaCheck(cudaEventElapsedTime(&ms[r], t.start, t.stop));
    }
    std::sort(ms.begin(), ms.end());
    return ms[reps / 2];
}

// ||x - ref|| / ||ref|| over the first `rows` rows of two BF16 device matrices with N columns.
static double rel_diff_rows(const bf16 *x, const bf16 *ref, int rows, int N) {
    size_t n = (size_t)rows * N;
    std::vector<bf16> hx(n), hr(n);
    cudaCheck(cudaMemcpy(hx.data(), x, n * sizeof(bf16), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(hr.data(), ref, n * sizeof(bf16), cudaMemcpyDeviceToHost));
    double e2 = 0.0, r2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        double a = __bfloat162float(hx[i]), b = __bfloat162float(hr[i]);
        if (!isfinite(a)) return INFINITY;
        e2 += (a - b) * (a - b);
        r2 += b * b;
    }
    return sqrt(e2 / r2);
}

struct Shape {
    const char *name;
    int M, N, K;
};

// Tensor-core ceilings (see igmma_ceiling_kernel) at 2048 steps per block, one block per SM.
static int run_ceiling() {
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    float *sink;
    cudaCheck(cudaMalloc(&sink, (size_t)prop.multiProcessorCount * 384 * sizeof(float)));
    const int steps = 2048;
    printf("wgmma s8 m64n128k32 ceiling, 2 warpgroups x %d steps of K = 128 per SM: %.0f TOP/s; with the int32 -> FP32 "
           "promotion of every step: %.0f TOP/s\n",
           steps, igmma_ceiling<false>(prop.multiProcessorCount, steps, sink), igmma_ceiling<true>(prop.multiProcessorCount, steps, sink));
    cudaCheck(cudaFree(sink));
    return 0;
}

// Runs the int8fb GEMM (lone blocks, no fallback, BF16 out) 3 times on random M x N x K operands: a
// short program for a profiler.
static int run_one(int M, int N, int K) {
    bf16 *a, *b, *c;
    cudaCheck(cudaMalloc(&a, (size_t)M * K * sizeof(bf16)));
    cudaCheck(cudaMalloc(&b, (size_t)N * K * sizeof(bf16)));
    cudaCheck(cudaMalloc(&c, (size_t)M * N * sizeof(bf16)));
    int *num_fallback;
    cudaCheck(cudaMalloc(&num_fallback, sizeof(int)));
    fill_normal(a, (size_t)M * K, 11u);
    fill_normal(b, (size_t)N * K, 12u);
    Int8fbOperand qa = int8fb_operand_alloc_device(M, K, INT8FB_ROW_CHUNK, 1);
    Int8fbOperand qb = int8fb_operand_alloc_device(N, K, INT8FB_PER_TILE, 0);
    quantize_int8fb(a, INT8FB_DEFAULT_THETA, &qa, num_fallback, 0);
    quantize_int8fb(b, INT8FB_NO_FALLBACK, &qb, num_fallback, 0);
    for (int r = 0; r < 3; r++) int8fb_gemm_clustered<bf16, 1, 1>(&qa, &qb, c, 0);
    cudaCheck(cudaDeviceSynchronize());
    printf("ran int8fb %d x %d x %d three times\n", M, N, K);
    int8fb_operand_free_device(&qa);
    int8fb_operand_free_device(&qb);
    cudaCheck(cudaFree(a)); cudaCheck(cudaFree(b)); cudaCheck(cudaFree(c)); cudaCheck(cudaFree(num_fallback));
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "ceiling") == 0) return run_ceiling();
    if (argc > 1 && strcmp(argv[1], "one") == 0) {
        if (argc != 5 || atoi(argv[2]) < 1 || atoi(argv[3]) < 16 || atoi(argv[4]) < 16) {
            fprintf(stderr, "error: usage: gemm_fp8_int8 one M N K (N, K multiples of 16)\n");
            return 1;
        }
        return run_one(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
    }
    int reps = argc > 1 ? atoi(argv[1]) : 20;
    if (reps < 1) { fprintf(stderr, "error: reps must be >= 1, got '%s'\n", argv[1]); return 1; }
    const char *cluster_name = argc > 2 ? argv[2] : "1x1";
    if (strcmp(cluster_name, "1x1") != 0 && strcmp(cluster_name, "2x2") != 0) {
        fprintf(stderr, "error: cluster shape must be 1x1 or 2x2, got '%s'\n", cluster_name);
        return 1;
    }
    const bool clustered = strcmp(cluster_name, "2x2") == 0;
    auto int8_gemm = [&](const Int8fbOperand *qa, const Int8fbOperand *qb, bf16 *c) {
        if (clustered) int8fb_gemm_clustered<bf16, 2, 2>(qa, qb, c, 0);
        else int8fb_gemm_clustered<bf16, 1, 1>(qa, qb, c, 0);
    };
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs, L2 %d MiB; median of %d reps, L2 flushed, BF16 output; int8fb clusters %s\n", prop.name,
           prop.multiProcessorCount, prop.l2CacheSize >> 20, reps, cluster_name);
    const int T = 8192;  // tokens per micro-batch
    const Shape shapes[] = {
        {"square 4096", 4096, 4096, 4096},
        {"square 8192", 8192, 8192, 8192},
        {"d12 qkv", T, 3 * 768, 768},
        {"d12 attproj", T, 768, 768},
        {"d12 fc", T, 4 * 768, 768},
        {"d12 fcproj", T, 768, 4 * 768},
        {"d12 fc wgrad", 4 * 768, 768, T},
        {"d48 qkv", T, 3 * 1600, 1600},
        {"d48 attproj", T, 1600, 1600},
        {"d48 fc", T, 4 * 1600, 1600},
        {"d48 fcproj", T, 1600, 4 * 1600},
        {"d48 fc wgrad", 4 * 1600, 1600, T},
        {"llama1b qkv", T, 2048 + 2 * 512, 2048},
        {"llama1b o", T, 2048, 2048},
        {"llama1b gate+up", T, 2 * 8192, 2048},
        {"llama1b down", T, 2048, 8192},
        {"llama1b down wgrad", 2048, 8192, T},
    };
    size_t max_a = 0, max_b = 0, max_c = 0;
    for (const Shape &s : shapes) {
        max_a = std::max(max_a, (size_t)s.M * s.K);
        max_b = std::max(max_b, (size_t)s.N * s.K);
        max_c = std::max(max_c, (size_t)s.M * s.N);
    }
    bf16 *a, *a_outl, *b, *c_bf16, *c_q;
    cudaCheck(cudaMalloc(&a, max_a * sizeof(bf16)));
    cudaCheck(cudaMalloc(&a_outl, max_a * sizeof(bf16)));
    cudaCheck(cudaMalloc(&b, max_b * sizeof(bf16)));
    cudaCheck(cudaMalloc(&c_bf16, max_c * sizeof(bf16)));
    cudaCheck(cudaMalloc(&c_q, max_c * sizeof(bf16)));
    uint8_t *qa8, *qb8;
    float *scales, *amax;  // s_dec of A at [0] and B at [4] (16-byte aligned, as cuBLASLt needs); amax scratch
    cudaCheck(cudaMalloc(&qa8, max_a));
    cudaCheck(cudaMalloc(&qb8, max_b));
    cudaCheck(cudaMalloc(&scales, 8 * sizeof(float)));
    cudaCheck(cudaMalloc(&amax, 2 * sizeof(float)));
    int *num_fallback;
    cudaCheck(cudaMalloc(&num_fallback, sizeof(int)));
    Timer t;
    t.flush_bytes = (size_t)256 << 20;
    cudaCheck(cudaMalloc(&t.flush, t.flush_bytes));
    cudaCheck(cudaEventCreate(&t.start));
    cudaCheck(cudaEventCreate(&t.stop));
    MatmulContext ctx;
    matmul_context_init(&ctx);

    printf("%-19s %5s %5s %5s | %7s | %7s %7s | %7s %7s %7s %7s %5s | %5s %5s %5s %5s %5s | %8s %8s\n", "shape", "M", "N", "K",
           "bf16", "fp8", "fp8+q", "i8 1x1", "i8", "i8+q", "i8fb5%", "fb%", "fp8", "fp8+q", "i8", "i8+q", "i8fb", "dfp8", "di8");
    printf("%-19s %5s %5s %5s | %7s | %7s %7s | %7s %7s %7s %7s %5s | %5s %5s %5s %5s %5s | %8s %8s\n", "", "", "", "", "TFLOP/s",
           "TFLOP/s", "TFLOP/s", "TOP/s", "TOP/s", "TOP/s", "TOP/s", "", "xbf16", "xbf16", "xbf16", "xbf16", "xbf16", "vs bf16", "vs bf16");
    for (const Shape &s : shapes) {
        const int M = s.M, N = s.N, K = s.K;
        const double flop = 2.0 * M * N * K;
        fill_normal(a, (size_t)M * K, 1234u + M);
        fill_normal(b, (size_t)N * K, 777u + N);
        cudaCheck(cudaMemcpy(a_outl, a, (size_t)M * K * sizeof(bf16), cudaMemcpyDeviceToDevice));
        dim3 og(ceil_div(int8fb_k_tiles(K), 32), int8fb_row_tiles(M));
        inject_outliers_kernel<<<og, 32>>>(a_outl, M, K, 0.05f, 99u);
        cudaCheckLaunch();

        // BF16
        MatmulArgs g;
        memset(&g, 0, sizeof(g));
        g.A = a; g.B = b; g.C = c_bf16; g.a_type = CUDA_R_16BF; g.b_type = CUDA_R_16BF; g.c_type = CUDA_R_16BF;
        g.M = M; g.N = N; g.K = K; g.alpha = 1.0f;
        float ms_bf16 = time_median(t, reps, [&] { matmul_cublaslt(&ctx, &g, 0); });

        // FP8-CS (E4M3 x E4M3, fast accumulation: the Fprop recipe)
        MatmulArgs g8 = g;
        g8.A = qa8; g8.B = qb8; g8.C = c_q; g8.a_type = CUDA_R_8F_E4M3; g8.b_type = CUDA_R_8F_E4M3;
        g8.a_scale_dec = scales; g8.b_scale_dec = scales + 4; g8.fast_accum = 1;
        auto fp8_quantize = [&] {
            amax_bf16(amax, a, (size_t)M * K, 0);
            fp8cs_quantize(qa8, NULL, scales, a, M, K, FP8_E4M3, amax, 0);
            amax_bf16(amax + 1, b, (size_t)N * K, 0);
            fp8cs_quantize(qb8, NULL, scales + 4, b, N, K, FP8_E4M3, amax + 1, 0);
        };
        fp8_quantize();
        // A problem cuBLASLt refuses is reported and its FP8 columns print as nan.
        char err[256];
        float ms_fp8 = NAN, ms_fp8_q = NAN;
        double d_fp8 = NAN;
        if (matmul_cublaslt_try(&ctx, &g8, 0, err, sizeof(err)) == 0) {
            ms_fp8 = time_median(t, reps, [&] { matmul_cublaslt(&ctx, &g8, 0); });
            d_fp8 = rel_diff_rows(c_q, c_bf16, std::min(M, 256), N);
            ms_fp8_q = time_median(t, reps, [&] { fp8_quantize(); matmul_cublaslt(&ctx, &g8, 0); });
        } else {
            printf("fp8 refused: %s\n", err);
        }

        // int8fb: A row-chunk scales (may fall back), B tile scales (never)
        Int8fbOperand qa = int8fb_operand_alloc_device(M, K, INT8FB_ROW_CHUNK, 1);
        Int8fbOperand qb = int8fb_operand_alloc_device(N, K, INT8FB_PER_TILE, 0);
        auto int8_quantize = [&](const bf16 *x_a) {
            quantize_int8fb(x_a, INT8FB_DEFAULT_THETA, &qa, num_fallback, 0);
            quantize_int8fb(b, INT8FB_NO_FALLBACK, &qb, num_fallback, 0);
        };
        int fb0 = 0;
        quantize_int8fb(b, INT8FB_NO_FALLBACK, &qb, num_fallback, 0);
        quantize_int8fb(a, INT8FB_DEFAULT_THETA, &qa, num_fallback, 0);
        cudaCheck(cudaMemcpy(&fb0, num_fallback, sizeof(int), cudaMemcpyDeviceToHost));
        float ms_i8_lone = time_median(t, reps, [&] { int8fb_gemm_clustered<bf16, 1, 1>(&qa, &qb, c_q, 0); });
        float ms_i8 = time_median(t, reps, [&] { int8_gemm(&qa, &qb, c_q); });
        double d_i8 = rel_diff_rows(c_q, c_bf16, std::min(M, 256), N);
        float ms_i8_q = time_median(t, reps, [&] { int8_quantize(a); int8_gemm(&qa, &qb, c_q); });
        int fb5 = 0;
        quantize_int8fb(a_outl, INT8FB_DEFAULT_THETA, &qa, num_fallback, 0);
        cudaCheck(cudaMemcpy(&fb5, num_fallback, sizeof(int), cudaMemcpyDeviceToHost));
        float ms_i8_fb = time_median(t, reps, [&] { int8_gemm(&qa, &qb, c_q); });
        const int tiles = int8fb_row_tiles(M) * int8fb_k_tiles(K);
        if (fb0 != 0) printf("warning: %d tiles of the Gaussian operand fell back\n", fb0);
        int8fb_operand_free_device(&qa);
        int8fb_operand_free_device(&qb);

        auto rate = [&](float ms) { return flop / (ms * 1e-3) / 1e12; };
        printf("%-19s %5d %5d %5d | %7.0f | %7.0f %7.0f | %7.0f %7.0f %7.0f %7.0f %5.1f | %5.2f %5.2f %5.2f %5.2f %5.2f | %8.1e %8.1e\n",
               s.name, M, N, K, rate(ms_bf16), rate(ms_fp8), rate(ms_fp8_q), rate(ms_i8_lone), rate(ms_i8), rate(ms_i8_q), rate(ms_i8_fb),
               100.0 * fb5 / tiles, ms_bf16 / ms_fp8, ms_bf16 / ms_fp8_q, ms_bf16 / ms_i8, ms_bf16 / ms_i8_q, ms_bf16 / ms_i8_fb,
               d_fp8, d_i8);
        fflush(stdout);
    }
    // Cluster shapes of the int8fb kernel (no fallback) and the quantizer alone, on two large shapes.
    printf("\nint8fb cluster shapes (TOP/s, no fallback) and quantizer time (A row-chunk + B tile, BF16 in):\n");
    printf("%-19s %7s %7s %7s %7s | %9s %9s\n", "shape", "1x1", "1x2", "2x1", "2x2", "quant us", "quant GB/s");
    const Shape sweep[] = {{"square 8192", 8192, 8192, 8192}, {"llama1b down", T, 2048, 8192}, {"d12 fc", T, 4 * 768, 768}};
    for (const Shape &s : sweep) {
        const int M = s.M, N = s.N, K = s.K;
        fill_normal(a, (size_t)M * K, 4321u + M);
        fill_normal(b, (size_t)N * K, 8765u + N);
        Int8fbOperand qa = int8fb_operand_alloc_device(M, K, INT8FB_ROW_CHUNK, 1);
        Int8fbOperand qb = int8fb_operand_alloc_device(N, K, INT8FB_PER_TILE, 0);
        auto quantize = [&] {
            quantize_int8fb(a, INT8FB_DEFAULT_THETA, &qa, num_fallback, 0);
            quantize_int8fb(b, INT8FB_NO_FALLBACK, &qb, num_fallback, 0);
        };
        float ms_q = time_median(t, reps, quantize);
        float ms[4];
        ms[0] = time_median(t, reps, [&] { int8fb_gemm_clustered<bf16, 1, 1>(&qa, &qb, c_q, 0); });
        ms[1] = time_median(t, reps, [&] { int8fb_gemm_clustered<bf16, 1, 2>(&qa, &qb, c_q, 0); });
        ms[2] = time_median(t, reps, [&] { int8fb_gemm_clustered<bf16, 2, 1>(&qa, &qb, c_q, 0); });
        ms[3] = time_median(t, reps, [&] { int8fb_gemm_clustered<bf16, 2, 2>(&qa, &qb, c_q, 0); });
        const double flop = 2.0 * M * N * K;
        // Bytes: BF16 in, int8 q1 out, scales and flags (q2 is written only for fallback tiles: none here).
        const double bytes = 3.0 * ((double)M * K + (double)N * K);
        printf("%-19s %7.0f %7.0f %7.0f %7.0f | %9.1f %9.0f\n", s.name, flop / (ms[0] * 1e9), flop / (ms[1] * 1e9),
               flop / (ms[2] * 1e9), flop / (ms[3] * 1e9), ms_q * 1e3, bytes / (ms_q * 1e6));
        int8fb_operand_free_device(&qa);
        int8fb_operand_free_device(&qb);
    }
    matmul_context_free(&ctx);
    cudaCheck(cudaFree(a)); cudaCheck(cudaFree(a_outl)); cudaCheck(cudaFree(b));
    cudaCheck(cudaFree(c_bf16)); cudaCheck(cudaFree(c_q)); cudaCheck(cudaFree(qa8)); cudaCheck(cudaFree(qb8));
    cudaCheck(cudaFree(scales)); cudaCheck(cudaFree(amax)); cudaCheck(cudaFree(num_fallback)); cudaCheck(cudaFree(t.flush));
    cudaCheck(cudaEventDestroy(t.start)); cudaCheck(cudaEventDestroy(t.stop));
    return 0;
}
