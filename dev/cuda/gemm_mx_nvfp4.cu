/*
Kernel harness for the MXFP8 / NVFP4 GEMMs: C[M,N] = A[M,K] . B[N,K]^T (K-major operands, BF16 out).
  - Hopper: kernels/sm90_mxfp8_gemm_block32.cuh and kernels/sm90_nvfp4_gemm_block16.cuh, NUMERICS
    EMULATION (the packed operands are decoded in the CTA and multiplied on BF16/FP16 tensor cores);
  - Blackwell: kernels/sm100_blockscaled_gemm_cublaslt.cuh (cuBLASLt block-scaled modes), run only
    on an sm_100 device (on any other the line says "not run");
  - baseline: cuBLASLt BF16 through kernels/matmul_cublaslt.cuh.

Compile and run:
  make build/dev/gemm_mx_nvfp4 && ./build/dev/gemm_mx_nvfp4

Shapes: M = N = K = 4096 and 8192, and the Fprop GEMMs of GPT-2 d12 (C=768), GPT-2 d48 (C=1600) and a
1B Llama (C=2048, FFN 8192 with gate and up fused, 32 query / 8 KV heads of 64) at 8192 tokens, plus
two Wgrad shapes (K = 8192 tokens). Inputs are random BF16; the formats are made by the quantizers
kernels/quantize_mxfp8_block32.cuh and kernels/quantize_nvfp4_block16.cuh (row-wise, RNE). For each
format: TFLOP/s of the GEMM alone, and of quantize(A) + quantize(B) + GEMM (both operands quantized
each call: an upper bound, since training quantizes a weight once per optimizer step), the ratio to
BF16, and the operand bytes read at least once per GEMM against BF16 ((M+N)K x 2 bytes; MXFP8
(M+N)K x (1 + 1/32), NVFP4 (M+N)K x (1/2 + 1/16)). The C write (M N x 2 bytes) is the same for all.
"diff" is ||C_fmt - C_bf16|| / ||C_bf16||: the quantization error on this data, a sanity check.
Timing: median of 20 runs, each after an L2 flush (dev/cuda/layer_bench.cuh).
*/
#include <math.h>
#include <string.h>
#include "dev/cuda/layer_bench.cuh"
#include "kernels/matmul_cublaslt.cuh"
#include "kernels/quantize_mxfp8_block32.cuh"
#include "kernels/quantize_nvfp4_block16.cuh"
#include "kernels/sm90_mxfp8_gemm_block32.cuh"
#include "kernels/sm90_nvfp4_gemm_block16.cuh"
#include "kernels/sm100_blockscaled_gemm_cublaslt.cuh"

typedef struct {
    const char *name;
    int M, N, K;
} GemmShape;

// One operand quantized in both formats.
typedef struct {
    uint8_t *mx, *mx_scales;            // E4M3 [rows, K], E8M0 [rows, K/32]
    uint8_t *nv, *nv_scales;            // E2M1 [rows, K/2], UE4M3 [rows, K/16]
    float *nv_amax, *nv_s_dec;          // device scalars
} QuantOperand;

static void quant_operand_alloc(QuantOperand *q, int rows, int K) {
    cudaCheck(cudaMalloc(&q->mx, (size_t)rows * K));
    cudaCheck(cudaMalloc(&q->mx_scales, (size_t)rows * K / 32));
    cudaCheck(cudaMalloc(&q->nv, (size_t)rows * K / 2));
    cudaCheck(cudaMalloc(&q->nv_scales, (size_t)rows * K / 16));
    cudaCheck(cudaMalloc(&q->nv_amax, sizeof(float)));
    cudaCheck(cudaMalloc(&q->nv_s_dec, sizeof(float)));
}

static void quant_operand_free(QuantOperand *q) {
    cudaCheck(cudaFree(q->mx)); cudaCheck(cudaFree(q->mx_scales));
    cudaCheck(cudaFree(q->nv)); cudaCheck(cudaFree(q->nv_scales));
    cudaCheck(cudaFree(q->nv_amax)); cudaCheck(cudaFree(q->nv_s_dec));
}

static void quantize_mx(QuantOperand *q, const bf16 *x, int rows, int K) {
    mxfp8_quantize(q->mx, q->mx_scales, NULL, NULL, x, rows, K, 0);
}

static void quantize_nv(QuantOperand *q, const bf16 *x, int rows, int K) {
    amax_bf16(q->nv_amax, x, (size_t)rows * K, 0);
    nvfp4_quantize_rowwise(q->nv, q->nv_scales, q->nv_s_dec, x, rows, K, q->nv_amax, NULL, 0);
}

// ||c - ref|| / ||ref|| over n BF16 values (device arrays, copied back).
static double rel_diff_bf16(const bf16 *c, const bf16 *ref, size_t n) {
    uint16_t *hc = (uint16_t *)malloc_check(n * 2), *hr = (uint16_t *)malloc_check(n * 2);
    cudaCheck(cudaMemcpy(hc, c, n * 2, cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(hr, ref, n * 2, cudaMemcpyDeviceToHost));
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        float a, b;
        uint32_t ua = (uint32_t)hc[i] << 16, ub = (uint32_t)hr[i] << 16;
        memcpy(&a, &ua, 4);
        memcpy(&b, &ub, 4);
        num += ((double)a - b) * ((double)a - b);
        den += (double)b * b;
    }
    free(hc);
    free(hr);
    return sqrt(num / den);
}

static double tflops(const GemmShape *s, float us) { return 2.0 * s->M * s->N * (double)s->K / (us * 1e-6) / 1e12; }

int main(void) {
    const GemmShape shapes[] = {
        {"square 4096", 4096, 4096, 4096},
        {"square 8192", 8192, 8192, 8192},
        {"d12 qkv", 8192, 2304, 768},
        {"d12 attn proj", 8192, 768, 768},
        {"d12 fc", 8192, 3072, 768},
        {"d12 fc proj", 8192, 768, 3072},
        {"d12 fc wgrad", 3072, 768, 8192},
        {"d48 qkv", 8192, 4800, 1600},
        {"d48 attn proj", 8192, 1600, 1600},
        {"d48 fc", 8192, 6400, 1600},
        {"d48 fc proj", 8192, 1600, 6400},
        {"llama1b qkv", 8192, 3072, 2048},
        {"llama1b o proj", 8192, 2048, 2048},
        {"llama1b gate+up", 8192, 16384, 2048},
        {"llama1b down", 8192, 2048, 8192},
        {"llama1b down wgrad", 2048, 8192, 8192},
    };
    const int num_shapes = (int)(sizeof(shapes) / sizeof(shapes[0]));
    const int reps = 20;
    int device = 0, major = 0, minor = 0;
    cudaCheck(cudaGetDevice(&device));
    cudaCheck(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    cudaCheck(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    const int run_sm90 = major == 9 && minor == 0, run_sm100 = blockscaled_gemm_device_supported();
    printf("device sm_%d%d: Hopper emulation kernels %s, Blackwell cuBLASLt block-scaled path %s\n", major, minor,
           run_sm90 ? "run" : "not run (need sm_90)", run_sm100 ? "run" : "not run (needs sm_100)");

    MatmulContext mm;
    matmul_context_init(&mm);
    BlockScaledGemmContext bs;
    if (run_sm100) blockscaled_gemm_context_init(&bs);

    printf("%-20s %5s %5s %5s | %7s | %7s %5s %7s %7s | %7s %5s %7s %7s | %5s %5s | %7s %7s\n", "shape", "M", "N", "K",
           "bf16", "mxfp8", "x", "+quant", "diff", "nvfp4", "x", "+quant", "diff", "B mx", "B nv", "sm100mx", "sm100nv");
    printf("%-20s %5s %5s %5s | %7s | %7s %5s %7s %7s | %7s %5s %7s %7s | %5s %5s | %7s %7s\n", "", "", "", "", "TFLOP/s",
           "TFLOP/s", "bf16", "TFLOP/s", "vs bf16", "TFLOP/s", "bf16", "TFLOP/s", "vs bf16", "/bf16", "/bf16", "TFLOP/s",
           "TFLOP/s");
    for (int s = 0; s < num_shapes; s++) {
        const GemmShape *sh = &shapes[s];
        const int M = sh->M, N = sh->N, K = sh->K;
        bf16 *A = bench_alloc_random<bf16>((size_t)M * K, 100 + s, 0.0f, 1.0f);
        bf16 *B = bench_alloc_random<bf16>((size_t)N * K, 200 + s, 0.0f, 0.05f);
        bf16 *C_ref, *C;
        cudaCheck(cudaMalloc(&C_ref, (size_t)M * N * sizeof(bf16)));
        cudaCheck(cudaMalloc(&C, (size_t)M * N * sizeof(bf16)));
        QuantOperand qa, qb;
        quant_operand_alloc(&qa, M, K);
        quant_operand_alloc(&qb, N, K);
        quantize_mx(&qa, A, M, K); quantize_mx(&qb, B, N, K);
        quantize_nv(&qa, A, M, K); quantize_nv(&qb, B, N, K);

        MatmulArgs g;
        memset(&g, 0, sizeof(g));
        g.A = A; g.B = B; g.C = C_ref;
        g.a_type = CUDA_R_16BF; g.b_type = CUDA_R_16BF; g.c_type = CUDA_R_16BF;
        g.M = M; g.N = N; g.K = K; g.alpha = 1.0f; g.beta = 0.0f;
        float us_bf16 = bench_median_us(reps, [] {}, [&] { matmul_cublaslt(&mm, &g, 0); });

        float us_mx = NAN, us_mx_q = NAN, us_nv = NAN, us_nv_q = NAN, us_bs_mx = NAN, us_bs_nv = NAN;
        double diff_mx = NAN, diff_nv = NAN;
        if (run_sm90) {
            auto mx_gemm = [&] { sm90_mxfp8_gemm_block32<bf16>(C, qa.mx, qa.mx_scales, qb.mx, qb.mx_scales, M, N, K, 1.0f, 0); };
            auto nv_gemm = [&] {
                sm90_nvfp4_gemm_block16<bf16>(C, qa.nv, qa.nv_scales, qa.nv_s_dec, qb.nv, qb.nv_scales, qb.nv_s_dec, M, N, K,
                                              1.0f, 0);
            };
            us_mx = bench_median_us(reps, [] {}, mx_gemm);
            diff_mx = rel_diff_bf16(C, C_ref, (size_t)M * N);
            us_mx_q = bench_median_us(reps, [] {}, [&] { quantize_mx(&qa, A, M, K); quantize_mx(&qb, B, N, K); mx_gemm(); });
            us_nv = bench_median_us(reps, [] {}, nv_gemm);
            diff_nv = rel_diff_bf16(C, C_ref, (size_t)M * N);
            us_nv_q = bench_median_us(reps, [] {}, [&] { quantize_nv(&qa, A, M, K); quantize_nv(&qb, B, N, K); nv_gemm(); });
        }
        if (run_sm100) {
            BlockScaledGemmArgs b;
            memset(&b, 0, sizeof(b));
            b.format = BLOCKSCALED_MXFP8;
            b.A = qa.mx; b.a_scales = qa.mx_scales; b.B = qb.mx; b.b_scales = qb.mx_scales;
            b.C = C; b.c_type = CUDA_R_16BF; b.M = M; b.N = N; b.K = K; b.alpha = 1.0f;
            us_bs_mx = bench_median_us(reps, [] {}, [&] { blockscaled_gemm(&bs, &b, 0); });
            b.format = BLOCKSCALED_NVFP4;
            b.A = qa.nv; b.a_scales = qa.nv_scales; b.a_s_dec = qa.nv_s_dec;
            b.B = qb.nv; b.b_scales = qb.nv_scales; b.b_s_dec = qb.nv_s_dec;
            us_bs_nv = bench_median_us(reps, [] {}, [&] { blockscaled_gemm(&bs, &b, 0); });
        }
        double bytes_bf16 = (double)(M + N) * K * 2.0;
        double bytes_mx = (double)(M + N) * K * (1.0 + 1.0 / 32.0), bytes_nv = (double)(M + N) * K * (0.5 + 1.0 / 16.0);
        double tf_bf16 = tflops(sh, us_bf16);
        printf("%-20s %5d %5d %5d | %7.1f | %7.1f %5.2f %7.1f %7.4f | %7.1f %5.2f %7.1f %7.4f | %5.3f %5.3f | %7.1f %7.1f\n",
               sh->name, M, N, K, tf_bf16, tflops(sh, us_mx), tflops(sh, us_mx) / tf_bf16, tflops(sh, us_mx_q), diff_mx,
               tflops(sh, us_nv), tflops(sh, us_nv) / tf_bf16, tflops(sh, us_nv_q), diff_nv, bytes_mx / bytes_bf16,
               bytes_nv / bytes_bf16, tflops(sh, us_bs_mx), tflops(sh, us_bs_nv));
        fflush(stdout);
        quant_operand_free(&qa);
        quant_operand_free(&qb);
        cudaCheck(cudaFree(A)); cudaCheck(cudaFree(B)); cudaCheck(cudaFree(C)); cudaCheck(cudaFree(C_ref));
    }
    if (run_sm100) blockscaled_gemm_context_free(&bs);
    matmul_context_free(&mm);
    return 0;
}
