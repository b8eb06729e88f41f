// GPU tests of the quantized GEMMs: cuBLASLt BF16 and FP8 (kernels/matmul_cublaslt.cuh) and the int8fb
// quantizer + Hopper INT8 GEMM (kernels/quantize_int8_tile128_fallback.cuh,
// kernels/sm90_int8_gemm_tile128_fallback.cuh).
// Every GEMM is compared with a CPU double-precision product of its DEQUANTIZED operands by the
// scale-invariant ||out - ref||_F / ||ref||_F; tolerances follow the accumulation and output format
// (FP32 output with exact int32 partial sums: ~K/128 FP32 roundings; BF16 output: 2^-9 per element).
// The quantization error (against the product of the unquantized operands) is printed per format.
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "kernels/cuda_common.h"
#include "kernels/formats.h"
#include "kernels/matmul_cublaslt.cuh"
#include "kernels/quantize_int8_tile128_fallback.cuh"
#include "kernels/sm90_int8_gemm_tile128_fallback.cuh"
#include "test/reference/int8_tile128_fallback_reference.h"
#include "test/testing.h"

// ---- host helpers

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint64_t rng_next() {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rng_uniform() { return ((double)(rng_next() >> 11) + 0.5) / 9007199254740992.0; }
static float rng_normal() { return (float)(sqrt(-2.0 * log(rng_uniform())) * cos(6.283185307179586 * rng_uniform())); }
static int rng_int(int lo, int hi) { return lo + (int)(rng_next() % (uint64_t)(hi - lo + 1)); }

// Random N(0, sd^2) values rounded to BF16: x (float, exact BF16 values) and its BF16 bits.
static void random_bf16(float *x, uint16_t *bits, size_t n, float sd) {
    for (size_t i = 0; i < n; i++) {
        bits[i] = bf16_bits_from_float_rne(sd * rng_normal());
        x[i] = bf16_bits_to_float(bits[i]);
    }
}

// ref[M,N] = a[M,K] . b[N,K]^T in double.
static void matmul_ref(double *ref, const double *a, const double *b, int M, int N, int K) {
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            const double *ar = a + (size_t)m * K, *br = b + (size_t)n * K;
            double s = 0.0;
            for (int k = 0; k < K; k++) s += ar[k] * br[k];
            ref[(size_t)m * N + n] = s;
        }
    }
}

static double *to_double(const float *x, size_t n) {
    double *d = (double *)malloc_check(n * sizeof(double));
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

// ||out - ref|| / ||ref||, with out given as float (NaN/Inf -> returns INFINITY).
static double rel_diff(const float *out, const double *ref, size_t n) {
    double e2 = 0.0, r2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(out[i])) return INFINITY;
        double d = (double)out[i] - ref[i];
        e2 += d * d;
        r2 += ref[i] * ref[i];
    }
    return sqrt(e2 / r2);
}

static double rel_diff_d(const double *x, const double *ref, size_t n) {
    double e2 = 0.0, r2 = 0.0;
    for (size_t i = 0; i < n; i++) { double d = x[i] - ref[i]; e2 += d * d; r2 += ref[i] * ref[i]; }
    return sqrt(e2 / r2);
}

// Copies a device output of type c_type ([n] floats or bf16) to host floats.
static void download_output(float *host, const void *dev, cudaDataType_t c_type, size_t n) {
    if (c_type == CUDA_R_32F) {
        cudaCheck(cudaMemcpy(host, dev, n * sizeof(float), cudaMemcpyDeviceToHost));
        return;
    }
    uint16_t *bits = (uint16_t *)malloc_check(n * sizeof(uint16_t));
    cudaCheck(cudaMemcpy(bits, dev, n * sizeof(uint16_t), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++) host[i] = bf16_bits_to_float(bits[i]);
    free(bits);
}

static void *upload(const void *host, size_t bytes) {
    void *dev;
    cudaCheck(cudaMalloc(&dev, bytes));
    cudaCheck(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice));
    return dev;
}

static MatmulContext g_ctx;

// ---- cuBLASLt BF16

static void check_bf16_gemm(int M, int N, int K, cudaDataType_t c_type) {
    size_t na = (size_t)M * K, nb = (size_t)N * K, nc = (size_t)M * N;
    float *a = (float *)malloc_check(na * sizeof(float)), *b = (float *)malloc_check(nb * sizeof(float));
    uint16_t *a_bits = (uint16_t *)malloc_check(na * 2), *b_bits = (uint16_t *)malloc_check(nb * 2);
    random_bf16(a, a_bits, na, 1.0f);
    random_bf16(b, b_bits, nb, 1.0f);
    double *ad = to_double(a, na), *bd = to_double(b, nb), *ref = (double *)malloc_check(nc * sizeof(double));
    matmul_ref(ref, ad, bd, M, N, K);
    void *a_dev = upload(a_bits, na * 2), *b_dev = upload(b_bits, nb * 2), *c_dev;
    size_t c_bytes = nc * (c_type == CUDA_R_32F ? 4 : 2);
    cudaCheck(cudaMalloc(&c_dev, c_bytes));
    cudaCheck(cudaMemset(c_dev, 0xFF, c_bytes));  // NaN poison: every element must be written
    MatmulArgs g;
    memset(&g, 0, sizeof(g));
    g.A = a_dev; g.B = b_dev; g.C = c_dev;
    g.a_type = CUDA_R_16BF; g.b_type = CUDA_R_16BF; g.c_type = c_type;
    g.M = M; g.N = N; g.K = K; g.alpha = 1.0f; g.beta = 0.0f;
    matmul_cublaslt(&g_ctx, &g, 0);
    cudaCheck(cudaDeviceSynchronize());
    float *out = (float *)malloc_check(nc * sizeof(float));
    download_output(out, c_dev, c_type, nc);
    double d = rel_diff(out, ref, nc);
    double tol = c_type == CUDA_R_32F ? 1e-5 : 4e-3;
    printf("  bf16 x bf16 -> %s  M=%d N=%d K=%d: rel diff %.2e (tol %.0e)\n", matmul_type_name(c_type), M, N, K, d, tol);
    CHECK(d < tol, "bf16 GEMM M=%d N=%d K=%d rel diff %g >= %g", M, N, K, d, tol);
    // beta = 1 accumulates: C = A.B^T + C doubles the result.
    if (c_type == CUDA_R_32F) {
        g.beta = 1.0f;
        matmul_cublaslt(&g_ctx, &g, 0);
        cudaCheck(cudaDeviceSynchronize());
        download_output(out, c_dev, c_type, nc);
        for (size_t i = 0; i < nc; i++) ref[i] *= 2.0;
        d = rel_diff(out, ref, nc);
        CHECK(d < tol, "beta=1 accumulation rel diff %g", d);
    }
    cudaCheck(cudaFree(a_dev)); cudaCheck(cudaFree(b_dev)); cudaCheck(cudaFree(c_dev));
    free(a); free(b); free(a_bits); free(b_bits); free(ad); free(bd); free(ref); free(out);
}

static void test_cublaslt_bf16() {
    check_bf16_gemm(256, 384, 512, CUDA_R_32F);
    check_bf16_gemm(256, 384, 512, CUDA_R_16BF);
    for (int t = 0; t < 3; t++) check_bf16_gemm(rng_int(1, 300), rng_int(1, 40) * 8, rng_int(1, 60) * 8, t % 2 ? CUDA_R_32F : CUDA_R_16BF);
}

// ---- cuBLASLt FP8 (per-tensor current scaling, quantized on the CPU with formats.h)

// Quantizes x[n] to FP8 with s_enc = fp8_max/amax; returns s_dec, writes the codes and the dequantized values.
static float fp8cs_quantize_host(const float *x, size_t n, Fp8Format fmt, uint8_t *q, double *deq) {
    float amax = 0.0f;
    for (size_t i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    float s_enc = fp8cs_scale_from_amax(fmt, amax), s_dec = 1.0f / s_enc;
    for (size_t i = 0; i < n; i++) {
        q[i] = fp8_from_float_rne(fmt, x[i] * s_enc);
        deq[i] = (double)fp8_to_float(fmt, q[i]) * (double)s_dec;
    }
    return s_dec;
}

static void check_fp8_gemm(int M, int N, int K, Fp8Format fa, Fp8Format fb, int fast_accum, cudaDataType_t c_type) {
    size_t na = (size_t)M * K, nb = (size_t)N * K, nc = (size_t)M * N;
    float *a = (float *)malloc_check(na * sizeof(float)), *b = (float *)malloc_check(nb * sizeof(float));
    uint16_t *a_bits = (uint16_t *)malloc_check(na * 2), *b_bits = (uint16_t *)malloc_check(nb * 2);
    random_bf16(a, a_bits, na, 2.0f);
    random_bf16(b, b_bits, nb, 0.05f);  // a gradient-like small scale: the scales must carry it
    uint8_t *qa = (uint8_t *)malloc_check(na), *qb = (uint8_t *)malloc_check(nb);
    double *deq_a = (double *)malloc_check(na * sizeof(double)), *deq_b = (double *)malloc_check(nb * sizeof(double));
    float s_dec[5] = {0};  // A's s_dec at [0], B's at [4]: scale pointers must be 16-byte aligned
    s_dec[0] = fp8cs_quantize_host(a, na, fa, qa, deq_a);
    s_dec[4] = fp8cs_quantize_host(b, nb, fb, qb, deq_b);
    double *ref = (double *)malloc_check(nc * sizeof(double)), *exact = (double *)malloc_check(nc * sizeof(double));
    matmul_ref(ref, deq_a, deq_b, M, N, K);
    double *ad = to_double(a, na), *bd = to_double(b, nb);
    matmul_ref(exact, ad, bd, M, N, K);
    void *a_dev = upload(qa, na), *b_dev = upload(qb, nb), *s_dev = upload(s_dec, sizeof(s_dec)), *c_dev;
    size_t c_bytes = nc * (c_type == CUDA_R_32F ? 4 : 2);
    cudaCheck(cudaMalloc(&c_dev, c_bytes));
    cudaCheck(cudaMemset(c_dev, 0xFF, c_bytes));
    MatmulArgs g;
    memset(&g, 0, sizeof(g));
    g.A = a_dev; g.B = b_dev; g.C = c_dev;
    g.a_type = fa == FP8_E4M3 ? CUDA_R_8F_E4M3 : CUDA_R_8F_E5M2;
    g.b_type = fb == FP8_E4M3 ? CUDA_R_8F_E4M3 : CUDA_R_8F_E5M2;
    g.c_type = c_type;
    g.a_scale_dec = (const float *)s_dev; g.b_scale_dec = (const float *)s_dev + 4;
    g.M = M; g.N = N; g.K = K; g.alpha = 1.0f; g.beta = 0.0f; g.fast_accum = fast_accum;
    char err[256] = "";
    int rc = matmul_cublaslt_try(&g_ctx, &g, 0, err, sizeof(err));
    CHECK(rc == 0, "%s", err);
    cudaCheck(cudaDeviceSynchronize());
    float *out = (float *)malloc_check(nc * sizeof(float));
    download_output(out, c_dev, c_type, nc);
    double d = rel_diff(out, ref, nc);
    // Hopper's FP8 tensor cores add products in a narrower-than-FP32 accumulator (~2^-13 relative per
    // add, measured 1.0e-4..1.3e-4 with split accumulation at K = 512..1024, 5.4e-4 with fast
    // accumulation at K = 1024 on an H100); split accumulation promotes it to FP32 at short intervals.
    // Bounds: split 4 x 2^-13 = 5e-4, fast 6e-3 (K up to ~1000 here). BF16 output adds 2^-9 per element.
    double tol = (fast_accum ? 6e-3 : 5e-4) + (c_type == CUDA_R_16BF ? 4e-3 : 0.0);
    double qerr = rel_diff_d(ref, exact, nc);
    printf("  %s x %s -> %s %s M=%d N=%d K=%d: rel diff %.2e (tol %.0e); quantization error vs unquantized %.2e\n",
           matmul_type_name(g.a_type), matmul_type_name(g.b_type), matmul_type_name(c_type), fast_accum ? "fast " : "split",
           M, N, K, d, tol, qerr);
    CHECK(d < tol, "fp8 GEMM rel diff %g >= %g", d, tol);
    CHECK(qerr < (fa == FP8_E5M2 || fb == FP8_E5M2 ? 0.12 : 0.06), "fp8 quantization error %g too large", qerr);
    cudaCheck(cudaFree(a_dev)); cudaCheck(cudaFree(b_dev)); cudaCheck(cudaFree(c_dev)); cudaCheck(cudaFree(s_dev));
    free(a); free(b); free(a_bits); free(b_bits); free(qa); free(qb); free(deq_a); free(deq_b);
    free(ref); free(exact); free(ad); free(bd); free(out);
}

static void test_cublaslt_fp8() {
    check_fp8_gemm(256, 256, 1024, FP8_E4M3, FP8_E4M3, 1, CUDA_R_32F);   // Fprop recipe
    check_fp8_gemm(256, 256, 1024, FP8_E4M3, FP8_E4M3, 0, CUDA_R_32F);
    check_fp8_gemm(192, 320, 512, FP8_E5M2, FP8_E4M3, 0, CUDA_R_16BF);   // Dgrad: dY(E5M2) . W(E4M3)
    check_fp8_gemm(192, 320, 512, FP8_E4M3, FP8_E5M2, 0, CUDA_R_32F);
    for (int t = 0; t < 2; t++)
        check_fp8_gemm(rng_int(1, 300), rng_int(1, 20) * 16, rng_int(1, 40) * 16, FP8_E4M3, t ? FP8_E5M2 : FP8_E4M3, t, CUDA_R_16BF);
}

// Unsupported combinations are refused with a message, before anything is launched.
static void test_cublaslt_errors() {
    MatmulArgs g;
    memset(&g, 0, sizeof(g));
    static float dummy[64] __attribute__((aligned(16)));
    g.A = dummy; g.B = dummy; g.C = dummy; g.a_scale_dec = dummy; g.b_scale_dec = dummy;
    g.a_type = CUDA_R_8F_E4M3; g.b_type = CUDA_R_8F_E4M3; g.c_type = CUDA_R_16BF;
    g.M = 64; g.N = 64; g.K = 40;
    char err[256] = "";
    CHECK(matmul_cublaslt_validate(&g, err, sizeof(err)) != 0 && strstr(err, "K % 16") != NULL, "K=40 fp8: '%s'", err);
    g.K = 64; g.a_type = CUDA_R_8F_E5M2; g.b_type = CUDA_R_8F_E5M2;
    CHECK(matmul_cublaslt_validate(&g, err, sizeof(err)) != 0 && strstr(err, "e5m2 x fp8e5m2") != NULL, "e5m2 x e5m2: '%s'", err);
    g.a_type = CUDA_R_8F_E4M3; g.b_type = CUDA_R_16BF;
    CHECK(matmul_cublaslt_validate(&g, err, sizeof(err)) != 0 && strstr(err, "mixed") != NULL, "fp8 x bf16: '%s'", err);
    g.b_type = CUDA_R_8F_E4M3; g.b_scale_dec = NULL;
    CHECK(matmul_cublaslt_validate(&g, err, sizeof(err)) != 0 && strstr(err, "scale") != NULL, "missing scale: '%s'", err);
    g.b_scale_dec = dummy + 1;
    CHECK(matmul_cublaslt_validate(&g, err, sizeof(err)) != 0 && strstr(err, "aligned scale") != NULL, "misaligned scale: '%s'", err);
    g.b_scale_dec = dummy + 4;
    CHECK(matmul_cublaslt_validate(&g, err, sizeof(err)) == 0, "valid fp8 problem refused: '%s'", err);
}

// ---- int8fb quantizer and GEMM

// Random BF16 operand [rows, cols] ~ N(0,1) with a 300-sigma outlier in about `outlier_fraction` of its
// 128 x 128 tiles.
static void random_operand(float *x, uint16_t *bits, int rows, int cols, double outlier_fraction) {
    random_bf16(x, bits, (size_t)rows * cols, 1.0f);
    for (int tr = 0; tr < int8fb_row_tiles(rows); tr++)
        for (int kt = 0; kt < int8fb_k_tiles(cols); kt++) {
            if (rng_uniform() >= outlier_fraction) continue;
            int r = tr * 128 + rng_int(0, 127), c = kt * 128 + rng_int(0, 127);
            if (r >= rows || c >= cols) continue;
            size_t i = (size_t)r * cols + c;
            bits[i] = bf16_bits_from_float_rne(rng_uniform() < 0.5 ? 300.0f : -300.0f);
            x[i] = bf16_bits_to_float(bits[i]);
        }
}

// Downloads a device operand into host arrays of the same shape (q2 only inside fallback tiles).
static void download_operand(Int8fbOperand *host, const Int8fbOperand *dev) {
    size_t n = (size_t)dev->rows * dev->cols;
    size_t tiles = (size_t)int8fb_row_tiles(dev->rows) * int8fb_k_tiles(dev->cols);
    cudaCheck(cudaMemcpy(host->q1, dev->q1, n, cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(host->scale, dev->scale, int8fb_scale_count(dev->rows, dev->cols, dev->granularity) * sizeof(float),
                         cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(host->fallback, dev->fallback, tiles, cudaMemcpyDeviceToHost));
    if (dev->q2 != NULL) cudaCheck(cudaMemcpy(host->q2, dev->q2, n, cudaMemcpyDeviceToHost));
}

// Quantizes x on the GPU and checks every output bit against the CPU reference. Returns the number of
// fallback tiles; leaves the GPU operand in *dev and the CPU one in *ref.
static int quantize_and_compare(const float *x, const uint16_t *bits, int rows, int cols, Int8fbGranularity gran, float theta,
                                Int8fbOperand *dev, Int8fbOperand *ref, const char *what) {
    char err[256];
    *ref = int8fb_operand_alloc_host(rows, cols, gran);
    int nfb_ref = int8fb_quantize_reference(x, rows, cols, gran, theta, ref, err, sizeof(err));
    CHECK(nfb_ref >= 0, "reference quantizer: %s", err);
    *dev = int8fb_operand_alloc_device(rows, cols, gran, !isinf(theta));
    size_t n = (size_t)rows * cols;
    void *x_dev = upload(bits, n * 2);
    int *count_dev;
    cudaCheck(cudaMalloc(&count_dev, sizeof(int)));
    cudaCheck(cudaMemset(dev->q1, 0x55, n));
    cudaCheck(cudaMemset(dev->scale, 0xFF, int8fb_scale_count(rows, cols, gran) * sizeof(float)));
    quantize_int8fb((const bf16 *)x_dev, theta, dev, count_dev, 0);
    cudaCheck(cudaDeviceSynchronize());
    int nfb = -1;
    cudaCheck(cudaMemcpy(&nfb, count_dev, sizeof(int), cudaMemcpyDeviceToHost));
    Int8fbOperand got = int8fb_operand_alloc_host(rows, cols, gran);
    download_operand(&got, dev);
    size_t tiles = (size_t)int8fb_row_tiles(rows) * int8fb_k_tiles(cols);
    size_t bad_q1 = 0, bad_q2 = 0, bad_scale = 0, bad_flag = 0;
    for (size_t i = 0; i < n; i++) bad_q1 += got.q1[i] != ref->q1[i];
    size_t ns = int8fb_scale_count(rows, cols, gran);
    for (size_t i = 0; i < ns; i++) bad_scale += memcmp(&got.scale[i], &ref->scale[i], 4) != 0;
    for (size_t i = 0; i < tiles; i++) bad_flag += got.fallback[i] != ref->fallback[i];
    int k_tiles = int8fb_k_tiles(cols);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            if (ref->fallback[(size_t)(r / 128) * k_tiles + c / 128]) bad_q2 += got.q2[(size_t)r * cols + c] != ref->q2[(size_t)r * cols + c];
    printf("  quantizer %-9s %s [%d x %d]: %d/%zu tiles fall back (ref %d); mismatches q1 %zu, q2 %zu, scales %zu, flags %zu\n",
           gran == INT8FB_ROW_CHUNK ? "row-chunk" : "tile", what, rows, cols, nfb, tiles, nfb_ref, bad_q1, bad_q2, bad_scale, bad_flag);
    CHECK(nfb == nfb_ref && bad_q1 == 0 && bad_q2 == 0 && bad_scale == 0 && bad_flag == 0, "GPU quantizer differs from the reference");
    cudaCheck(cudaFree(x_dev)); cudaCheck(cudaFree(count_dev));
    int8fb_operand_free_host(&got);
    return nfb;
}

static void test_int8_quantizer_bits() {
    const int shapes[4][2] = {{256, 384}, {300, 400}, {1, 16}, {129, 4096}};
    for (int s = 0; s < 4; s++) {
        int rows = shapes[s][0], cols = shapes[s][1];
        size_t n = (size_t)rows * cols;
        float *x = (float *)malloc_check(n * sizeof(float));
        uint16_t *bits = (uint16_t *)malloc_check(n * 2);
        random_operand(x, bits, rows, cols, 0.3);
        for (int gran = 0; gran < 2; gran++) {
            Int8fbOperand dev, ref;
            quantize_and_compare(x, bits, rows, cols, (Int8fbGranularity)gran, INT8FB_DEFAULT_THETA, &dev, &ref, "theta default");
            int8fb_operand_free_device(&dev); int8fb_operand_free_host(&ref);
        }
        free(x); free(bits);
    }
}

// One int8fb GEMM check: A [M,K] with outliers in ~outlier_fraction of tiles at theta_a, B [N,K] (tile
// scales) at theta_b, output float or bf16; compared with the double product of the dequantized operands.
static void check_int8fb_gemm(int M, int N, int K, double outlier_fraction, float theta_a, float theta_b, bool bf16_out) {
    size_t na = (size_t)M * K, nb = (size_t)N * K, nc = (size_t)M * N;
    float *a = (float *)malloc_check(na * sizeof(float)), *b = (float *)malloc_check(nb * sizeof(float));
    uint16_t *a_bits = (uint16_t *)malloc_check(na * 2), *b_bits = (uint16_t *)malloc_check(nb * 2);
    random_operand(a, a_bits, M, K, outlier_fraction);
    random_bf16(b, b_bits, nb, 0.02f);
    Int8fbOperand a_dev, a_ref, b_dev, b_ref;
    int fa = quantize_and_compare(a, a_bits, M, K, INT8FB_ROW_CHUNK, theta_a, &a_dev, &a_ref, "A");
    int fb = quantize_and_compare(b, b_bits, N, K, INT8FB_PER_TILE, theta_b, &b_dev, &b_ref, "B");
    double *deq_a = (double *)malloc_check(na * sizeof(double)), *deq_b = (double *)malloc_check(nb * sizeof(double));
    int8fb_dequantize_reference(&a_ref, deq_a);
    int8fb_dequantize_reference(&b_ref, deq_b);
    double *ref = (double *)malloc_check(nc * sizeof(double)), *exact = (double *)malloc_check(nc * sizeof(double));
    matmul_ref(ref, deq_a, deq_b, M, N, K);
    double *ad = to_double(a, na), *bd = to_double(b, nb);
    matmul_ref(exact, ad, bd, M, N, K);
    // The unquantized-int8 error for comparison: the product of the s1*q1 parts alone.
    for (size_t i = 0; i < (size_t)int8fb_row_tiles(M) * int8fb_k_tiles(K); i++) a_ref.fallback[i] = 0;
    for (size_t i = 0; i < (size_t)int8fb_row_tiles(N) * int8fb_k_tiles(K); i++) b_ref.fallback[i] = 0;
    int8fb_dequantize_reference(&a_ref, deq_a);
    int8fb_dequantize_reference(&b_ref, deq_b);
    double *plain = (double *)malloc_check(nc * sizeof(double));
    matmul_ref(plain, deq_a, deq_b, M, N, K);

    void *c_dev;
    size_t c_bytes = nc * (bf16_out ? 2 : 4);
    cudaCheck(cudaMalloc(&c_dev, c_bytes));
    float *out = (float *)malloc_check(nc * sizeof(float));
    // FP32: exact int32 tile sums, ~K/128 FP32 roundings (< 1e-5); when both operands fall back the
    // dropped q2a.q2b term adds ~(0.007)^2. BF16 output: 2^-9 rounding per element.
    double tol = (bf16_out ? 4e-3 : 1e-5) + (fa > 0 && fb > 0 ? 2e-4 : 0.0);
    size_t tiles_a = (size_t)int8fb_row_tiles(M) * int8fb_k_tiles(K);
    // Both kernel shapes: clusters of 2 x 2 tiles sharing A and B through multicast, and lone blocks
    // (the default).
    for (int variant = 0; variant < 2; variant++) {
        cudaCheck(cudaMemset(c_dev, 0xFF, c_bytes));  // NaN poison: every element must be written
        if (variant == 0) {
            if (bf16_out) int8fb_gemm_clustered<bf16, 2, 2>(&a_dev, &b_dev, (bf16 *)c_dev, 0);
            else int8fb_gemm_clustered<float, 2, 2>(&a_dev, &b_dev, (float *)c_dev, 0);
        } else {
            if (bf16_out) int8fb_gemm_clustered<bf16, 1, 1>(&a_dev, &b_dev, (bf16 *)c_dev, 0);
            else int8fb_gemm_clustered<float, 1, 1>(&a_dev, &b_dev, (float *)c_dev, 0);
        }
        cudaCheck(cudaDeviceSynchronize());
        download_output(out, c_dev, bf16_out ? CUDA_R_16BF : CUDA_R_32F, nc);
        double d = rel_diff(out, ref, nc);
        printf("  int8fb %s M=%d N=%d K=%d -> %s: A fallback %d/%zu, B fallback %d: rel diff %.2e (tol %.0e); "
               "quantization error vs unquantized %.2e (int8 alone %.2e)\n", variant == 0 ? "2x2" : "1x1",
               M, N, K, bf16_out ? "bf16" : "fp32", fa, tiles_a, fb, d, tol, rel_diff_d(ref, exact, nc), rel_diff_d(plain, exact, nc));
        CHECK(d < tol, "int8fb GEMM (%s) M=%d N=%d K=%d rel diff %g >= %g", variant == 0 ? "2x2" : "1x1", M, N, K, d, tol);
    }
    cudaCheck(cudaFree(c_dev));
    int8fb_operand_free_device(&a_dev); int8fb_operand_free_device(&b_dev);
    int8fb_operand_free_host(&a_ref); int8fb_operand_free_host(&b_ref);
    free(a); free(b); free(a_bits); free(b_bits); free(deq_a); free(deq_b);
    free(ref); free(exact); free(ad); free(bd); free(plain); free(out);
}

static void test_int8fb_gemm_no_fallback() {
    check_int8fb_gemm(256, 256, 512, 0.0, INT8FB_DEFAULT_THETA, INT8FB_NO_FALLBACK, false);
    check_int8fb_gemm(512, 384, 1536, 0.0, INT8FB_DEFAULT_THETA, INT8FB_NO_FALLBACK, true);
    for (int t = 0; t < 3; t++)  // partial tiles in M, N and K
        check_int8fb_gemm(rng_int(1, 400), rng_int(1, 24) * 16, rng_int(1, 50) * 16, 0.0, INT8FB_DEFAULT_THETA, INT8FB_NO_FALLBACK, t == 1);
}

static void test_int8fb_gemm_some_fallback() {
    check_int8fb_gemm(1024, 256, 1536, 0.05, INT8FB_DEFAULT_THETA, INT8FB_NO_FALLBACK, false);
    check_int8fb_gemm(300, 208, 400, 0.3, INT8FB_DEFAULT_THETA, INT8FB_NO_FALLBACK, true);
    // More tiles (10 x 14) than the persistent grid has blocks (132 on an H100; 33 clusters of 2 x 2):
    // blocks run several tiles in turn, each with its own step list, partial in M and K.
    check_int8fb_gemm(1200, 1792, 272, 0.3, INT8FB_DEFAULT_THETA, INT8FB_NO_FALLBACK, false);
}

static void test_int8fb_gemm_all_fallback() {
    check_int8fb_gemm(256, 256, 512, 0.0, 0.0f, INT8FB_NO_FALLBACK, false);  // every A tile falls back
    check_int8fb_gemm(256, 384, 640, 0.0, INT8FB_DEFAULT_THETA, 0.0f, false); // every B tile (Wgrad operand)
    check_int8fb_gemm(200, 128, 384, 0.0, 0.0f, 0.0f, false);                // both
}

int main() {
    int device_count = 0;
    if (cudaGetDeviceCount(&device_count) != cudaSuccess || device_count == 0) {
        SKIP_TEST(all, "no CUDA device");
        return testing_finish();
    }
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
    matmul_context_init(&g_ctx);
    RUN_TEST(test_cublaslt_errors);
    RUN_TEST(test_cublaslt_bf16);
    RUN_TEST(test_cublaslt_fp8);
    RUN_TEST(test_int8_quantizer_bits);
    RUN_TEST(test_int8fb_gemm_no_fallback);
    RUN_TEST(test_int8fb_gemm_some_fallback);
    RUN_TEST(test_int8fb_gemm_all_fallback);
    matmul_context_free(&g_ctx);
    return testing_finish();
}
