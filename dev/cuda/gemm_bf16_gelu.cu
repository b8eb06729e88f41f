/*
Kernel harness for kernels/sm90_bf16_gemm_gelu.cuh, the Hopper BF16 GEMM with GPT-2's MLP epilogues, against
cuBLASLt (the path core/linear.cuh took before it) in the same run.

Correctness (first): random BF16 operands on shapes that are and are not multiples of the 128 x 256 x 64 tile,
with several tiles per block (so the overlapped epilogue runs across tiles) and fewer K-steps than epilogue
chunks; every epilogue, both layouts of B and the cluster shapes 1x1, 2x1, 1x2, 2x2, against a double-precision CPU product.
Tolerances (eps = 2^-8, one BF16 rounding; S = sum over K of |a b|, FP32 accumulation in any order is within
2^-14 S for K <= 1024 and a bit above, which 2^-13 covers):
  plain (+ bias):  x = C + bias: |out - x| <= eps |x| + 2^-13 S
  bias + GELU:     x = C + bias: |out - gelu(x)| <= 1.13 (eps |x| + 2^-13 S) + eps |gelu(x)| + 1e-6,
                   |aux - gelu'(x)| <= 0.8 (eps |x| + 2^-13 S) + eps |gelu'(x)| + 1e-6   (|gelu'| <= 1.13, |gelu''| <= 0.8)
  GELU backward:   |out - C aux| <= |aux| (eps |C| + 2^-13 S) + eps |C aux|
                   col_partials: the 128-row sums of the GPU's own out, |err| <= 2^-16 sum |terms|
Outputs are filled with NaN first; a second run must give the same bits.

Speed: GPT-2 fc Fprop (bias + GELU) and fcproj Dgrad (+ GELU backward + fc bias gradient) at d24 (B=32, T=1024)
and d12 (B=64, T=1024), against cuBLASLt with the bias epilogue, cuBLASLt GELU_AUX_BIAS, and the path of
core/linear.cuh on GPUs other than Hopper (cuBLASLt, then gelu_forward / gelu_backward_tile_colsums). Median of
20 runs after an L2 flush (dev/cuda/layer_bench.cuh); TFLOP/s = 2 M N K / time.

Compile and run:
  make build/dev/gemm_bf16_gelu && ./build/dev/gemm_bf16_gelu          (correctness, then speed)
  ./build/dev/gemm_bf16_gelu check | speed | dgrad                     (one part; dgrad: the plain Dgrads)
*/
#include <math.h>
#include <string.h>
#include <vector>
#include "dev/cuda/layer_bench.cuh"
#include "core/linear.cuh"
#include "kernels/gelu.cuh"
#include "kernels/sm90_bf16_gemm_gelu.cuh"

static double gelu_ref(double x) {
    const double k = 0.7978845608028654;
    return 0.5 * x * (1.0 + tanh(k * (x + 0.044715 * x * x * x)));
}
static double gelu_grad_ref(double x) {
    const double k = 0.7978845608028654, u = k * (x + 0.044715 * x * x * x), th = tanh(u);
    return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * k * (1.0 + 3.0 * 0.044715 * x * x);
}

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static float uniform(float lo, float hi) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * (float)((rng_state >> 40) * (1.0 / 16777216.0));
}
static std::vector<bf16> random_bf16(size_t n, float lo, float hi) {
    std::vector<bf16> v(n);
    for (auto &x : v) x = __float2bfloat16(uniform(lo, hi));
    return v;
}
template <typename T>
static T *to_device(const std::vector<T> &v) {
    T *d;
    cudaCheck(cudaMalloc(&d, v.size() * sizeof(T)));
    cudaCheck(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}
template <typename T>
static std::vector<T> to_host(const T *d, size_t n) {
    std::vector<T> v(n);
    cudaCheck(cudaMemcpy(v.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
}

// Cluster shapes measured: cl = 0: 1x1, 1: 2x1 (tile rows sharing B), 2: 1x2 (tile columns sharing A), 3: 2x2.
static const char *CLUSTER_NAMES[] = {"1x1", "2x1", "1x2", "2x2"};
template <int EPI, bool B_KMAJOR>
static void run_cl(int cl, bf16 *out, bf16 *aux, const bf16 *a, const bf16 *b, const bf16 *bias, float *part, int M, int N, int K) {
    if (cl == 0) bf16_gemm_epilogue_clustered<EPI, B_KMAJOR, 1, 1>(out, aux, a, b, bias, part, M, N, K, 0);
    else if (cl == 1) bf16_gemm_epilogue_clustered<EPI, B_KMAJOR, 2, 1>(out, aux, a, b, bias, part, M, N, K, 0);
    else if (cl == 2) bf16_gemm_epilogue_clustered<EPI, B_KMAJOR, 1, 2>(out, aux, a, b, bias, part, M, N, K, 0);
    else bf16_gemm_epilogue_clustered<EPI, B_KMAJOR, 2, 2>(out, aux, a, b, bias, part, M, N, K, 0);
}
static void run_variant(int epi, bool b_nk, int cl, bf16 *out, bf16 *aux, const bf16 *a, const bf16 *b, const bf16 *bias, float *part,
                        int M, int N, int K) {
    if (epi == BF16_GEMM_PLAIN) b_nk ? run_cl<BF16_GEMM_PLAIN, true>(cl, out, aux, a, b, bias, part, M, N, K)
                                     : run_cl<BF16_GEMM_PLAIN, false>(cl, out, aux, a, b, bias, part, M, N, K);
    else if (epi == BF16_GEMM_BIAS_GELU) b_nk ? run_cl<BF16_GEMM_BIAS_GELU, true>(cl, out, aux, a, b, bias, part, M, N, K)
                                              : run_cl<BF16_GEMM_BIAS_GELU, false>(cl, out, aux, a, b, bias, part, M, N, K);
    else b_nk ? run_cl<BF16_GEMM_GELU_BACKWARD, true>(cl, out, aux, a, b, bias, part, M, N, K)
              : run_cl<BF16_GEMM_GELU_BACKWARD, false>(cl, out, aux, a, b, bias, part, M, N, K);
}

static const char *EPI_NAMES[] = {"plain", "bias+gelu", "gelu backward"};

// Checks every epilogue x B layout x cluster shape on one shape; returns the number of failed variants.
static int check_shape(int M, int N, int K) {
    const int m_tiles = ceil_div(M, BG_BM);
    std::vector<bf16> a = random_bf16((size_t)M * K, -1.0f, 1.0f), b_nk = random_bf16((size_t)N * K, -1.0f, 1.0f);
    std::vector<bf16> b_kn((size_t)K * N), bias = random_bf16(N, -0.5f, 0.5f), aux_in = random_bf16((size_t)M * N, -0.2f, 1.2f);
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) b_kn[(size_t)k * N + n] = b_nk[(size_t)n * K + k];
    // double-precision product and the sum of |terms|
    std::vector<double> C((size_t)M * N), S((size_t)M * N);
    std::vector<float> af(a.size()), bf(b_nk.size());
    for (size_t i = 0; i < a.size(); i++) af[i] = __bfloat162float(a[i]);
    for (size_t i = 0; i < b_nk.size(); i++) bf[i] = __bfloat162float(b_nk[i]);
#pragma omp parallel for schedule(dynamic, 4)
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double c = 0.0, s = 0.0;
            const float *ar = &af[(size_t)m * K], *br = &bf[(size_t)n * K];
            for (int k = 0; k < K; k++) {
                const double t = (double)ar[k] * br[k];
                c += t;
                s += fabs(t);
            }
            C[(size_t)m * N + n] = c;
            S[(size_t)m * N + n] = s;
        }
    bf16 *d_a = to_device(a), *d_bnk = to_device(b_nk), *d_bkn = to_device(b_kn), *d_bias = to_device(bias);
    bf16 *d_aux_in = to_device(aux_in), *d_out, *d_aux;
    float *d_part;
    cudaCheck(cudaMalloc(&d_out, (size_t)M * N * sizeof(bf16)));
    cudaCheck(cudaMalloc(&d_aux, (size_t)M * N * sizeof(bf16)));
    cudaCheck(cudaMalloc(&d_part, (size_t)m_tiles * N * sizeof(float)));
    const double eps = 1.0 / 256.0, acc_tol = 1.0 / 8192.0;
    int failed = 0;
    for (int epi = 0; epi < 3; epi++)
        for (int layout = 0; layout < 2; layout++)
            for (int cl = 0; cl < 4; cl++) {
                const bool nk = layout == 0;
                std::vector<unsigned char> first;
                double worst = 0.0;  // largest |err| / tolerance
                long bad = 0;
                for (int run = 0; run < 2; run++) {
                    cudaCheck(cudaMemset(d_out, 0xFF, (size_t)M * N * sizeof(bf16)));
                    cudaCheck(cudaMemset(d_part, 0xFF, (size_t)m_tiles * N * sizeof(float)));
                    bf16 *aux = d_aux;
                    if (epi == BF16_GEMM_GELU_BACKWARD) aux = d_aux_in;
                    else cudaCheck(cudaMemset(d_aux, 0xFF, (size_t)M * N * sizeof(bf16)));
                    run_variant(epi, nk, cl, d_out, aux, d_a, nk ? d_bnk : d_bkn, d_bias, d_part, M, N, K);
                    cudaCheck(cudaDeviceSynchronize());
                    std::vector<bf16> out = to_host(d_out, (size_t)M * N);
                    std::vector<bf16> auxo = to_host(d_aux, (size_t)M * N);
                    std::vector<float> part = to_host(d_part, (size_t)m_tiles * N);
                    std::vector<unsigned char> bits((unsigned char *)out.data(), (unsigned char *)(out.data() + out.size()));
                    if (epi == BF16_GEMM_BIAS_GELU) bits.insert(bits.end(), (unsigned char *)auxo.data(), (unsigned char *)(auxo.data() + auxo.size()));
                    if (epi == BF16_GEMM_GELU_BACKWARD) bits.insert(bits.end(), (unsigned char *)part.data(), (unsigned char *)(part.data() + part.size()));
                    if (run == 1) {
                        if (bits != first) {
                            printf("FAIL %dx%dx%d %s B=%s cluster %s: two runs differ\n", M, N, K, EPI_NAMES[epi], nk ? "NK" : "KN", CLUSTER_NAMES[cl]);
                            bad++;
                        }
                        break;
                    }
                    first = bits;
                    auto note = [&](double err, double tol) {
                        if (!(err <= tol)) bad++;
                        if (tol > 0 && err / tol > worst) worst = err / tol;
                        if (err != err) worst = INFINITY;
                    };
                    for (size_t i = 0; i < (size_t)M * N; i++) {
                        const double c = C[i], s = S[i], o = __bfloat162float(out[i]);
                        if (epi == BF16_GEMM_PLAIN) {
                            const double x = c + __bfloat162float(bias[i % N]);
                            note(fabs(o - x), eps * fabs(x) + acc_tol * s);
                        } else if (epi == BF16_GEMM_BIAS_GELU) {
                            const double x = c + __bfloat162float(bias[i % N]), xt = eps * fabs(x) + acc_tol * s;
                            note(fabs(o - gelu_ref(x)), 1.13 * xt + eps * fabs(gelu_ref(x)) + 1e-6);
                            note(fabs(__bfloat162float(auxo[i]) - gelu_grad_ref(x)), 0.8 * xt + eps * fabs(gelu_grad_ref(x)) + 1e-6);
                        } else {
                            const double g = __bfloat162float(aux_in[i]);
                            note(fabs(o - c * g), fabs(g) * (eps * fabs(c) + acc_tol * s) + eps * fabs(c * g));
                        }
                    }
                    if (epi == BF16_GEMM_GELU_BACKWARD) {
                        for (int t = 0; t < m_tiles; t++)
                            for (int n = 0; n < N; n++) {
                                double sum = 0.0, abs_sum = 0.0;
                                for (int r = t * BG_BM; r < M && r < (t + 1) * BG_BM; r++) {
                                    const double v = __bfloat162float(out[(size_t)r * N + n]);
                                    sum += v;
                                    abs_sum += fabs(v);
                                }
                                note(fabs(part[(size_t)t * N + n] - sum), abs_sum / 65536.0);
                            }
                    }
                }
                printf("%s %5dx%5dx%5d %-14s B=%s cluster %s  worst err/tol %.3f  bad %ld\n", bad ? "FAIL" : "ok  ", M, N, K, EPI_NAMES[epi],
                       nk ? "NK" : "KN", CLUSTER_NAMES[cl], worst, bad);
                failed += bad != 0;
            }
    cudaCheck(cudaFree(d_a)); cudaCheck(cudaFree(d_bnk)); cudaCheck(cudaFree(d_bkn)); cudaCheck(cudaFree(d_bias));
    cudaCheck(cudaFree(d_aux_in)); cudaCheck(cudaFree(d_out)); cudaCheck(cudaFree(d_aux)); cudaCheck(cudaFree(d_part));
    return failed;
}

// One line of the speed tables: the median time of a GEMM of M x N x K and its rate (2 M N K flops).
static void print_gemm_time(const char *name, int M, int N, int K, const char *what, float us) {
    printf("%-11s M=%d N=%d K=%d  %-44s %8.1f us %7.1f TFLOP/s\n", name, M, N, K, what, us, 2.0 * M * N * K / (us * 1e-6) / 1e12);
    fflush(stdout);
}

static void speed(const char *name, int M, int C) {
    const int N = 4 * C, K = C;  // fc Fprop: [M,C] . Wfc[4C,C]^T; fcproj Dgrad: dout[M,C] . Wfcproj[C,4C]
    bf16 *a = bench_alloc_random<bf16>((size_t)M * K, 1, 0.0f, 1.0f), *w_nk = bench_alloc_random<bf16>((size_t)N * K, 2, 0.0f, 0.03f);
    bf16 *w_kn = bench_alloc_random<bf16>((size_t)K * N, 3, 0.0f, 0.03f), *bias = bench_alloc_random<bf16>(N, 4, 0.0f, 0.1f);
    bf16 *pre = bench_alloc_random<bf16>((size_t)M * N, 5, 0.0f, 2.0f), *out, *aux;
    float *part, *dbias;
    cudaCheck(cudaMalloc(&out, (size_t)M * N * sizeof(bf16)));
    cudaCheck(cudaMalloc(&aux, (size_t)M * N * sizeof(bf16)));
    const int chunks = linear_bias_partial_rows(M);
    cudaCheck(cudaMalloc(&part, (size_t)chunks * N * sizeof(float)));
    cudaCheck(cudaMalloc(&dbias, N * sizeof(float)));
    MatmulContext matmul;
    matmul_context_init(&matmul);
    const LinearContext ctx = linear_context(PRECISION_BF16, &matmul, part, chunks, N);
    LinearContext portable = ctx;  // the GELU GEMMs of GPUs other than Hopper: cuBLASLt + element-wise passes
    portable.gelu_gemm_sm90 = false;
    auto none = [] {};
    auto report = [&](const char *what, float us) { print_gemm_time(name, M, N, K, what, us); };
    const int reps = 20;
    // cuBLASLt, called directly: the bias epilogue, and GELU_AUX_BIAS (stores the pre-activation and gelu of it)
    auto cublaslt_fprop = [&](bool gelu) {
        MatmulArgs g;
        memset(&g, 0, sizeof(g));
        g.a_type = g.b_type = g.c_type = CUDA_R_16BF;
        g.alpha = 1.0f;
        g.M = M; g.N = N; g.K = K;
        g.A = a; g.B = w_nk; g.C = out;
        g.epilogue = gelu ? MATMUL_EPILOGUE_GELU_BIAS : MATMUL_EPILOGUE_BIAS;
        g.bias = bias;
        g.aux = gelu ? aux : NULL;
        matmul_cublaslt(&matmul, &g, 0);
    };
    report("cuBLASLt Fprop + bias", bench_median_us(reps, none, [&] { cublaslt_fprop(false); }));
    report("cuBLASLt Fprop + bias + GELU_AUX", bench_median_us(reps, none, [&] { cublaslt_fprop(true); }));
    report("other GPUs: cuBLASLt Fprop + bias, gelu_forward", bench_median_us(reps, none, [&] {
               linear_gemm(&portable, LINEAR_FPROP, out, a, w_nk, bias, aux, M, K, N, false, 0);  // fc: IC = K, OC = N
           }));
    for (int cl = 0; cl < 4; cl++) {
        char what[96];
        snprintf(what, sizeof(what), "sm90 plain + bias, B [N,K], cluster %s", CLUSTER_NAMES[cl]);
        report(what, bench_median_us(reps, none, [&] { run_variant(BF16_GEMM_PLAIN, true, cl, out, aux, a, w_nk, bias, part, M, N, K); }));
        snprintf(what, sizeof(what), "sm90 bias + GELU (+ gelu'), cluster %s", CLUSTER_NAMES[cl]);
        report(what, bench_median_us(reps, none, [&] { run_variant(BF16_GEMM_BIAS_GELU, true, cl, out, aux, a, w_nk, bias, part, M, N, K); }));
    }
    // fcproj Dgrad: the layer's weight is [OC = C, IC = 4C]; dinp [M, 4C]
    report("cuBLASLt Dgrad", bench_median_us(reps, none, [&] { linear_gemm(&ctx, LINEAR_DGRAD, out, a, w_kn, NULL, NULL, M, N, K, false, 0); }));
    report("other GPUs: cuBLASLt Dgrad, GELU bwd + fc bias", bench_median_us(reps, none, [&] {
               linear_gemm(&portable, LINEAR_DGRAD, out, a, w_kn, NULL, pre, M, N, K, false, 0);
               column_partials_add(dbias, part, ceil_div(M, BG_BM), N, false, 0);
           }));
    for (int cl = 0; cl < 4; cl++) {
        char what[96];
        snprintf(what, sizeof(what), "sm90 plain, B [K,N], cluster %s", CLUSTER_NAMES[cl]);
        report(what, bench_median_us(reps, none, [&] { run_variant(BF16_GEMM_PLAIN, false, cl, out, aux, a, w_kn, NULL, part, M, N, K); }));
        snprintf(what, sizeof(what), "sm90 GELU backward + fc bias grad, cluster %s", CLUSTER_NAMES[cl]);
        report(what, bench_median_us(reps, none, [&] {
                   run_variant(BF16_GEMM_GELU_BACKWARD, false, cl, out, pre, a, w_kn, bias, part, M, N, K);
                   column_partials_add(dbias, part, ceil_div(M, BG_BM), N, false, 0);
               }));
    }
    matmul_context_free(&matmul);
    cudaCheck(cudaFree(a)); cudaCheck(cudaFree(w_nk)); cudaCheck(cudaFree(w_kn)); cudaCheck(cudaFree(bias)); cudaCheck(cudaFree(pre));
    cudaCheck(cudaFree(out)); cudaCheck(cudaFree(aux)); cudaCheck(cudaFree(part)); cudaCheck(cudaFree(dbias));
}

// The model's plain Dgrads, dinp[M,IC] = dout[M,OC] . W[OC,IC] (B N-major), which the trainer gives to cuBLASLt:
// cuBLASLt as the trainer calls it (tuned plan), cuBLASLt on a transposed copy of W (the Fprop layout, B K-major:
// what a stored W^T would allow), and this kernel's plain epilogue with B [K,N] and on W^T.
static void speed_dgrad(const char *name, int M, int IC, int OC) {
    const int N = IC, K = OC;
    bf16 *dout = bench_alloc_random<bf16>((size_t)M * K, 1, 0.0f, 1.0f), *w = bench_alloc_random<bf16>((size_t)K * N, 2, 0.0f, 0.03f);
    bf16 *w_t = bench_alloc_random<bf16>((size_t)N * K, 3, 0.0f, 0.03f), *out;
    cudaCheck(cudaMalloc(&out, (size_t)M * N * sizeof(bf16)));
    MatmulContext matmul;
    matmul_context_init(&matmul);
    const LinearContext ctx = linear_context(PRECISION_BF16, &matmul, NULL, 0, 0);
    auto none = [] {};
    auto report = [&](const char *what, float us) { print_gemm_time(name, M, N, K, what, us); };
    const int reps = 20;
    report("cuBLASLt Dgrad (B [K,N], trainer)", bench_median_us(reps, none, [&] {
               linear_gemm(&ctx, LINEAR_DGRAD, out, dout, w, NULL, NULL, M, IC, OC, false, 0);
           }));
    report("cuBLASLt on W^T (B [N,K])", bench_median_us(reps, none, [&] {
               linear_gemm(&ctx, LINEAR_FPROP, out, dout, w_t, NULL, NULL, M, K, N, false, 0);  // IC = K, OC = N
           }));
    for (int cl = 0; cl < 3; cl++) {
        char what[96];
        snprintf(what, sizeof(what), "sm90 plain, B [K,N], cluster %s", CLUSTER_NAMES[cl]);
        report(what, bench_median_us(reps, none, [&] { run_variant(BF16_GEMM_PLAIN, false, cl, out, NULL, dout, w, NULL, NULL, M, N, K); }));
    }
    report("sm90 plain on W^T, B [N,K], cluster 1x1",
           bench_median_us(reps, none, [&] { run_variant(BF16_GEMM_PLAIN, true, 0, out, NULL, dout, w_t, NULL, NULL, M, N, K); }));
    matmul_context_free(&matmul);
    cudaCheck(cudaFree(dout)); cudaCheck(cudaFree(w)); cudaCheck(cudaFree(w_t)); cudaCheck(cudaFree(out));
}

int main(int argc, char **argv) {
    const bool do_check = argc < 2 || strcmp(argv[1], "check") == 0, do_speed = argc < 2 || strcmp(argv[1], "speed") == 0;
    const bool do_dgrad = argc < 2 || strcmp(argv[1], "dgrad") == 0;
    int failed = 0;
    if (do_check) {
        const int shapes[][3] = {{128, 256, 64}, {1, 8, 8}, {300, 520, 192}, {257, 264, 1000}, {4096, 2048, 128}, {3000, 3072, 768}};
        for (const auto &s : shapes) failed += check_shape(s[0], s[1], s[2]);
        printf("RESULT check %s (%d variants failed)\n", failed ? "FAILED" : "passed", failed);
    }
    if (do_speed) {
        speed("d24", 32 * 1024, 1024);
        speed("d12", 64 * 1024, 768);
    }
    if (do_dgrad) {
        speed_dgrad("d24 qkv", 32 * 1024, 1024, 3072);
        speed_dgrad("d24 attproj", 32 * 1024, 1024, 1024);
        speed_dgrad("d24 fc", 32 * 1024, 1024, 4096);
        speed_dgrad("d12 qkv", 64 * 1024, 768, 2304);
        speed_dgrad("d12 attproj", 64 * 1024, 768, 768);
        speed_dgrad("d12 fc", 64 * 1024, 768, 3072);
    }
    return failed ? 1 : 0;
}
