// GPU tests of the GPT-2 layer kernels (kernels/encoder, layernorm, gelu, classifier, adamw,
// global_norm, and core/linear.cuh's GEMMs with bias, GELU and bias gradients) against the CPU FP32
// reference (test/reference/layers_cpu.h), on random inputs of several shapes, including sizes that are
// not multiples of the 8-element vector width or of the kernels' tiles (C = 100, N = 1, 37, odd tensor
// sizes).
//
// The reference gets the same BF16-rounded inputs as the GPU, as floats. Tolerances, with
// eps = 2^-8 (the unit roundoff of BF16):
//   BF16 outputs        |gpu - ref| <= eps*|ref| + atol: one rounding of the result, plus an atol
//                       for FP32 differences (stated per test; 2^-14 * max|ref| where terms cancel).
//   FP32 sums           |gpu - ref| <= 2^-16 * sum|terms| (a different FP32 summation order).
// Every output is poisoned (NaN bytes) before each run, and a guard region after it must stay
// untouched; every test runs its kernels twice on the same inputs and requires identical bits.
// Gradient writers also run in overwrite mode (accumulate = 0, the first micro-step of an optimizer
// step): over outputs poisoned with NaN they must give the bits of accumulating into zeros.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/linear.cuh"
#include "core/utils.h"
#include "kernels/adamw.cuh"
#include "kernels/classifier.cuh"
#include "kernels/encoder.cuh"
#include "kernels/gelu.cuh"
#include "kernels/global_norm.cuh"
#include "kernels/layernorm.cuh"
#include "kernels/rope_gqa.cuh"
#include "kernels/swiglu.cuh"
#include "test/reference/layers_cpu.h"
#include "test/testing.h"

#define BF16_EPS (1.0f / 256.0f)
#define GUARD_BYTES 256
#define POISON_BYTE 0xFF  // all-ones: NaN as BF16 and as FP32

static Rng rng;

// ----------------------------------------------------------------------------------------------
// host helpers

static float bf16_round(float x) { return __bfloat162float(__float2bfloat16(x)); }

// n normal samples with the given mean and std, rounded to BF16 values (so BF16 and FP32 copies agree).
static float *random_bf16_values(size_t n, float mean, float std) {
    float *x = (float *)malloc_check(n * sizeof(float));
    rng_fill_normal(&rng, x, n, mean, std);
    for (size_t i = 0; i < n; i++) x[i] = bf16_round(x[i]);
    return x;
}

static float *copy_floats(const float *x, size_t n) {
    float *y = (float *)malloc_check(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

// Device allocation of `bytes` followed by a guard region; all of it poisoned.
static void *dev_alloc(size_t bytes) {
    void *p;
    cudaCheck(cudaMalloc(&p, bytes + GUARD_BYTES));
    cudaCheck(cudaMemset(p, POISON_BYTE, bytes + GUARD_BYTES));
    return p;
}

static void dev_poison(void *p, size_t bytes) { cudaCheck(cudaMemset(p, POISON_BYTE, bytes)); }

// 1 when the guard region after the first `bytes` bytes still holds the poison.
static int guard_intact(const void *p, size_t bytes) {
    unsigned char h[GUARD_BYTES];
    cudaCheck(cudaMemcpy(h, (const char *)p + bytes, GUARD_BYTES, cudaMemcpyDeviceToHost));
    for (int i = 0; i < GUARD_BYTES; i++) {
        if (h[i] != POISON_BYTE) return 0;
    }
    return 1;
}

// Element types of the device buffers: the helpers convert from/to host floats.
template <typename T> static T to_type(float x);
template <> float to_type<float>(float x) { return x; }
template <> bf16 to_type<bf16>(float x) { return __float2bfloat16(x); }
static float to_float(float x) { return x; }
static float to_float(bf16 x) { return __bfloat162float(x); }

template <typename T>
static void upload(T *d, const float *h, size_t n) {
    T *tmp = (T *)malloc_check(n * sizeof(T));
    for (size_t i = 0; i < n; i++) tmp[i] = to_type<T>(h[i]);
    cudaCheck(cudaMemcpy(d, tmp, n * sizeof(T), cudaMemcpyHostToDevice));
    free(tmp);
}

template <typename T>
static T *dev_from_host(const float *h, size_t n) {
    T *d = (T *)dev_alloc(n * sizeof(T));
    upload(d, h, n);
    return d;
}

template <typename T>
static float *download(const T *d, size_t n) {
    T *tmp = (T *)malloc_check(n * sizeof(T));
    cudaCheck(cudaMemcpy(tmp, d, n * sizeof(T), cudaMemcpyDeviceToHost));
    float *h = (float *)malloc_check(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = to_float(tmp[i]);
    free(tmp);
    return h;
}

static int *dev_ints(const int *h, int n) {
    int *d = (int *)dev_alloc((size_t)n * sizeof(int));
    cudaCheck(cudaMemcpy(d, h, (size_t)n * sizeof(int), cudaMemcpyHostToDevice));
    return d;
}

// Checks |got - want| <= rtol*|want| + atol element by element (a NaN fails); prints the first
// failure and the count.
static void check_close(const char *what, const float *got, const float *want, size_t n, float rtol, float atol) {
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++) {
        const double err = fabs((double)got[i] - (double)want[i]);
        if (!(err <= rtol * fabs((double)want[i]) + atol)) {
            if (bad == 0) first = i;
            bad++;
        }
    }
    CHECK(bad == 0, "%s: %zu of %zu elements out of tolerance (rtol %g, atol %g); e.g. [%zu] got %.9g want %.9g", what, bad,
          n, rtol, atol, first, got[first], want[first]);
}

// Same check with a per-element atol.
static void check_close_each(const char *what, const float *got, const float *want, const float *atol, size_t n, float rtol) {
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++) {
        const double err = fabs((double)got[i] - (double)want[i]);
        if (!(err <= rtol * fabs((double)want[i]) + atol[i])) {
            if (bad == 0) first = i;
            bad++;
        }
    }
    CHECK(bad == 0, "%s: %zu of %zu elements out of tolerance (rtol %g); e.g. [%zu] got %.9g want %.9g atol %.3g", what, bad,
          n, rtol, first, got[first], want[first], atol[first]);
}

// Checks got [C] = init [C] + the column sums of x [N, C] (values the GPU stored), summed here in double.
// The GPU sums in FP32 through fixed chains of at most a few hundred additions, so it is within
// 2^-16 * (sum of |terms|) of the exact sum (recursive summation: depth * 2^-24 relative).
static void check_column_sums(const char *what, const float *got, const float *init, const float *x, int N, int C) {
    float *want = (float *)malloc_check(C * sizeof(float)), *tol = (float *)malloc_check(C * sizeof(float));
    for (int c = 0; c < C; c++) {
        double sum = init[c], sum_abs = fabs(init[c]);
        for (int n = 0; n < N; n++) {
            sum += x[(size_t)n * C + c];
            sum_abs += fabs(x[(size_t)n * C + c]);
        }
        want[c] = (float)sum;
        tol[c] = (float)(sum_abs / 65536.0);
    }
    check_close_each(what, got, want, tol, C, 0.0f);
    free(want);
    free(tol);
}

static float max_abs(const float *x, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    return m;
}

// 1 when two device buffers hold the same bytes.
static int same_bits(const void *a, const void *b, size_t bytes) {
    unsigned char *ha = (unsigned char *)malloc_check(bytes), *hb = (unsigned char *)malloc_check(bytes);
    cudaCheck(cudaMemcpy(ha, a, bytes, cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(hb, b, bytes, cudaMemcpyDeviceToHost));
    const int same = memcmp(ha, hb, bytes) == 0;
    free(ha);
    free(hb);
    return same;
}

static void *dev_snapshot(const void *d, size_t bytes) {
    void *copy;
    cudaCheck(cudaMalloc(&copy, bytes));
    cudaCheck(cudaMemcpy(copy, d, bytes, cudaMemcpyDeviceToDevice));
    return copy;
}

#define MAX_WRITTEN 4

// The overwrite mode of a gradient writer: run(false) over the outputs bufs[0..n) poisoned with NaN must
// leave the same bits as run(true) over the same outputs zeroed (what a memset before accumulating gave).
// run sets any other buffer it reads or adds to itself, the same way in both modes.
template <typename Run>
static void check_overwrite_matches_zeroed(const char *what, Run run, void *const *bufs, const size_t *sizes, int n) {
    void *zeroed[MAX_WRITTEN];
    for (int k = 0; k < n; k++) cudaCheck(cudaMemset(bufs[k], 0, sizes[k]));
    run(true);
    for (int k = 0; k < n; k++) zeroed[k] = dev_snapshot(bufs[k], sizes[k]);
    for (int k = 0; k < n; k++) dev_poison(bufs[k], sizes[k]);
    run(false);
    cudaCheck(cudaDeviceSynchronize());
    for (int k = 0; k < n; k++) {
        CHECK(same_bits(zeroed[k], bufs[k], sizes[k]), "%s: output %d written over NaN differs from accumulating into zeros", what, k);
        cudaCheck(cudaFree(zeroed[k]));
    }
}

// ----------------------------------------------------------------------------------------------
// encoder

// dwpe has max_T >= T rows: accumulating leaves rows t >= T alone, overwriting writes zeros there.
template <typename GradT>
static void encoder_case(int B, int T, int max_T, int C, int Vp, int token_range) {
    const int N = B * T;
    const size_t act = (size_t)N * C, wpe_n = (size_t)max_T * C;
    float *wte = random_bf16_values((size_t)Vp * C, 0.0f, 0.5f);
    float *wpe = random_bf16_values((size_t)T * C, 0.0f, 0.5f);
    float *dout = random_bf16_values(act, 0.0f, 1.0f);
    int *tokens = (int *)malloc_check((size_t)N * sizeof(int));
    for (int i = 0; i < N; i++) tokens[i] = (int)rng_below(&rng, (uint64_t)token_range);
    tokens[0] = Vp - 1;  // the last row of the table
    // gradients start from random values (the kernels accumulate)
    float *dwte0 = random_bf16_values((size_t)Vp * C, 0.0f, 1.0f);
    float *dwpe0 = random_bf16_values(wpe_n, 0.0f, 1.0f);

    // reference
    float *out_ref = (float *)malloc_check(act * sizeof(float));
    cpu_encoder_forward(out_ref, tokens, wte, wpe, B, T, C);
    float *dwte_ref = copy_floats(dwte0, (size_t)Vp * C), *dwpe_ref = copy_floats(dwpe0, wpe_n);
    cpu_encoder_backward(dwte_ref, dwpe_ref, dout, tokens, B, T, C);
    // atol of the FP32 sums: 2^-16 * (sum of |terms|), terms are the initial value and the dout rows
    float *dwte_atol = (float *)malloc_check((size_t)Vp * C * sizeof(float));
    float *dwpe_atol = (float *)malloc_check(wpe_n * sizeof(float));
    for (size_t i = 0; i < (size_t)Vp * C; i++) dwte_atol[i] = fabsf(dwte0[i]);
    for (size_t i = 0; i < wpe_n; i++) dwpe_atol[i] = fabsf(dwpe0[i]);
    for (int i = 0; i < N; i++) {
        for (int c = 0; c < C; c++) {
            dwte_atol[(size_t)tokens[i] * C + c] += fabsf(dout[(size_t)i * C + c]);
            dwpe_atol[(size_t)(i % T) * C + c] += fabsf(dout[(size_t)i * C + c]);
        }
    }
    for (size_t i = 0; i < (size_t)Vp * C; i++) dwte_atol[i] *= 1.0f / 65536.0f;
    for (size_t i = 0; i < wpe_n; i++) dwpe_atol[i] *= 1.0f / 65536.0f;
    const float grad_rtol = sizeof(GradT) == 2 ? BF16_EPS : 0.0f;

    // GPU
    bf16 *d_wte = dev_from_host<bf16>(wte, (size_t)Vp * C), *d_wpe = dev_from_host<bf16>(wpe, (size_t)T * C);
    bf16 *d_dout = dev_from_host<bf16>(dout, act);
    int *d_tokens = dev_ints(tokens, N);
    bf16 *d_out = (bf16 *)dev_alloc(act * sizeof(bf16));
    GradT *d_dwte = (GradT *)dev_alloc((size_t)Vp * C * sizeof(GradT));
    GradT *d_dwpe = (GradT *)dev_alloc(wpe_n * sizeof(GradT));
    void *scratch = dev_alloc(encoder_backward_scratch_bytes(N, C));
    void *first_out = NULL, *first_dwte = NULL, *first_dwpe = NULL;
    for (int run = 0; run < 2; run++) {
        dev_poison(d_out, act * sizeof(bf16));
        upload(d_dwte, dwte0, (size_t)Vp * C);
        upload(d_dwpe, dwpe0, wpe_n);
        encoder_forward(d_out, d_tokens, d_wte, d_wpe, B, T, C, 0);
        encoder_backward<GradT>(d_dwte, d_dwpe, scratch, d_dout, d_tokens, B, T, C, Vp, max_T, true, 0);
        cudaCheck(cudaDeviceSynchronize());
        if (run == 0) {
            float *out = download(d_out, act), *dwte = download(d_dwte, (size_t)Vp * C), *dwpe = download(d_dwpe, wpe_n);
            // forward: one rounding of an FP32 sum of two BF16 values
            check_close("encoder forward", out, out_ref, act, BF16_EPS, 0.0f);
            check_close_each("encoder backward dwte", dwte, dwte_ref, dwte_atol, (size_t)Vp * C, grad_rtol);
            check_close_each("encoder backward dwpe", dwpe, dwpe_ref, dwpe_atol, wpe_n, grad_rtol);
            CHECK(guard_intact(d_out, act * sizeof(bf16)), "encoder forward wrote past its output");
            CHECK(guard_intact(d_dwte, (size_t)Vp * C * sizeof(GradT)), "encoder backward wrote past dwte");
            CHECK(guard_intact(d_dwpe, wpe_n * sizeof(GradT)), "encoder backward wrote past dwpe");
            free(out); free(dwte); free(dwpe);
            first_out = dev_snapshot(d_out, act * sizeof(bf16));
            first_dwte = dev_snapshot(d_dwte, (size_t)Vp * C * sizeof(GradT));
            first_dwpe = dev_snapshot(d_dwpe, wpe_n * sizeof(GradT));
        } else {
            CHECK(same_bits(first_out, d_out, act * sizeof(bf16)), "encoder forward not deterministic");
            CHECK(same_bits(first_dwte, d_dwte, (size_t)Vp * C * sizeof(GradT)), "encoder backward dwte not deterministic");
            CHECK(same_bits(first_dwpe, d_dwpe, wpe_n * sizeof(GradT)), "encoder backward dwpe not deterministic");
        }
    }
    // overwrite mode: dwpe written (all max_T rows); dwte is always added to, here from the same values in both modes
    void *written[1] = {d_dwpe};
    const size_t written_bytes[1] = {wpe_n * sizeof(GradT)};
    check_overwrite_matches_zeroed("encoder backward dwpe", [&](bool accumulate) {
        upload(d_dwte, dwte0, (size_t)Vp * C);
        encoder_backward<GradT>(d_dwte, d_dwpe, scratch, d_dout, d_tokens, B, T, C, Vp, max_T, accumulate, 0);
    }, written, written_bytes, 1);
    CHECK(guard_intact(d_dwpe, wpe_n * sizeof(GradT)), "encoder backward (overwrite) wrote past dwpe");
    CHECK(same_bits(first_dwte, d_dwte, (size_t)Vp * C * sizeof(GradT)), "encoder backward dwte depends on the dwpe mode");
    cudaCheck(cudaFree(d_wte)); cudaCheck(cudaFree(d_wpe)); cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_tokens));
    cudaCheck(cudaFree(d_out)); cudaCheck(cudaFree(d_dwte)); cudaCheck(cudaFree(d_dwpe)); cudaCheck(cudaFree(scratch));
    cudaCheck(cudaFree(first_out)); cudaCheck(cudaFree(first_dwte)); cudaCheck(cudaFree(first_dwpe));
    free(wte); free(wpe); free(dout); free(tokens); free(dwte0); free(dwpe0); free(out_ref); free(dwte_ref);
    free(dwpe_ref); free(dwte_atol); free(dwpe_atol);
}

static void test_encoder(void) {
    encoder_case<float>(1, 1, 1, 768, 64, 64);
    encoder_case<float>(1, 37, 64, 100, 50, 5);       // C not a multiple of 8; many repeated tokens; rows past T
    encoder_case<float>(4, 1024, 1024, 768, 1000, 1000);
    encoder_case<float>(2, 64, 1024, 768, 50304, 50257);
    encoder_case<bf16>(3, 37, 40, 1600, 300, 20);
    encoder_case<float>(4, 1024, 1024, 768, 1000, 3);    // runs of ~1365 equal tokens, as frequent tokens of real text
    encoder_case<float>(2, 999, 1024, 1600, 64, 2);     // long runs with 224-thread row slices, C = 1600
    encoder_case<float>(1, 300, 512, 2312, 40, 4);      // 1024-thread blocks (4 slices of 256), two column passes
}

// ----------------------------------------------------------------------------------------------
// layernorm

static void layernorm_forward_case(int N, int C, int fused) {
    const size_t act = (size_t)N * C;
    float *a = random_bf16_values(act, 0.3f, 2.0f);
    float *b = fused ? random_bf16_values(act, 0.0f, 1.0f) : NULL;
    float *w = random_bf16_values(C, 1.0f, 0.2f), *bias = random_bf16_values(C, 0.0f, 0.2f);
    // the normalized input: a, or the BF16-rounded residual a + b (what the GPU stores and normalizes)
    float *x = copy_floats(a, act);
    if (fused) {
        for (size_t i = 0; i < act; i++) x[i] = bf16_round(a[i] + b[i]);
    }
    float *out_ref = (float *)malloc_check(act * sizeof(float));
    float *mean_ref = (float *)malloc_check(N * sizeof(float)), *rstd_ref = (float *)malloc_check(N * sizeof(float));
    cpu_layernorm_forward(out_ref, mean_ref, rstd_ref, x, w, bias, N, C);

    bf16 *d_a = dev_from_host<bf16>(a, act), *d_b = fused ? dev_from_host<bf16>(b, act) : NULL;
    bf16 *d_w = dev_from_host<bf16>(w, C), *d_bias = dev_from_host<bf16>(bias, C);
    bf16 *d_out = (bf16 *)dev_alloc(act * sizeof(bf16)), *d_res = (bf16 *)dev_alloc(act * sizeof(bf16));
    float *d_mean = (float *)dev_alloc(N * sizeof(float)), *d_rstd = (float *)dev_alloc(N * sizeof(float));
    void *first[4] = {NULL, NULL, NULL, NULL};
    void *bufs[4] = {d_out, d_res, d_mean, d_rstd};
    const size_t sizes[4] = {act * sizeof(bf16), act * sizeof(bf16), N * sizeof(float), N * sizeof(float)};
    for (int run = 0; run < 2; run++) {
        for (int k = 0; k < 4; k++) dev_poison(bufs[k], sizes[k]);
        if (fused) {
            fused_residual_layernorm_forward(d_res, d_out, d_mean, d_rstd, d_a, d_b, d_w, d_bias, N, C, 0);
        } else {
            layernorm_forward(d_out, d_mean, d_rstd, d_a, d_w, d_bias, N, C, 0);
        }
        cudaCheck(cudaDeviceSynchronize());
        if (run == 0) {
            float *out = download(d_out, act), *mean = download(d_mean, N), *rstd = download(d_rstd, N);
            // out: one BF16 rounding; atol for the FP32 statistics (vs double) where n*w and b cancel
            check_close("layernorm forward out", out, out_ref, act, BF16_EPS, 1.0f / 16384.0f * max_abs(out_ref, act));
            // statistics: FP32 sums of C terms against double
            check_close("layernorm forward mean", mean, mean_ref, N, 1.0f / 65536.0f, 1e-5f);
            check_close("layernorm forward rstd", rstd, rstd_ref, N, 1.0f / 65536.0f, 0.0f);
            if (fused) {
                float *res = download(d_res, act);
                check_close("fused residual sum", res, x, act, 0.0f, 0.0f);  // exactly bf16(a + b)
                CHECK(guard_intact(d_res, act * sizeof(bf16)), "fused layernorm wrote past the residual");
                free(res);
            }
            for (int k = 0; k < 4; k++) {
                CHECK(guard_intact(bufs[k], sizes[k]), "layernorm forward wrote past output %d", k);
                first[k] = dev_snapshot(bufs[k], sizes[k]);
            }
            free(out); free(mean); free(rstd);
        } else {
            for (int k = 0; k < 4; k++) CHECK(same_bits(first[k], bufs[k], sizes[k]), "layernorm forward output %d not deterministic", k);
        }
    }
    if (!fused) CHECK(guard_intact(d_res, 0), "layernorm forward without residual wrote the residual");
    for (int k = 0; k < 4; k++) cudaCheck(cudaFree(first[k]));
    for (int k = 0; k < 4; k++) cudaCheck(cudaFree(bufs[k]));
    cudaCheck(cudaFree(d_a)); if (fused) cudaCheck(cudaFree(d_b)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_bias));
    free(a); free(b); free(w); free(bias); free(x); free(out_ref); free(mean_ref); free(rstd_ref);
}

// Shapes cover one row, C % 8 != 0 (element-wise loads: 100, 1001), partial last pieces (1600, 3000),
// and enough rows that every warp of the device-sized grid reuses its ring slots (20000, 9000).
static void test_layernorm_forward(void) {
    const int shapes[][2] = {{1, 768}, {37, 1600}, {4096, 768}, {37, 100}, {4096, 1600}, {5, 3000}, {3, 2304}, {20000, 1024}, {9000, 1001}};
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        layernorm_forward_case(shapes[i][0], shapes[i][1], 0);
        layernorm_forward_case(shapes[i][0], shapes[i][1], 1);
    }
}

// with_colsum: also the column sums of the updated dinp (dinp_colsum, FP32, accumulated), checked
// against a double-precision column sum of the dinp the GPU stored (the sum is defined on those BF16
// values); without it the kernel gets NULL and must run the same.
template <typename GradT>
static void layernorm_backward_case(int N, int C, int with_colsum) {
    const size_t act = (size_t)N * C;
    float *x = random_bf16_values(act, 0.3f, 2.0f), *dout = random_bf16_values(act, 0.0f, 1.0f);
    float *w = random_bf16_values(C, 1.0f, 0.2f), *bias = random_bf16_values(C, 0.0f, 0.2f);
    float *dinp0 = random_bf16_values(act, 0.0f, 0.5f);
    float *dw0 = random_bf16_values(C, 0.0f, 1.0f), *db0 = random_bf16_values(C, 0.0f, 1.0f);
    float *colsum0 = random_bf16_values(C, 0.0f, 1.0f);
    // mean/rstd from the reference forward feed both backward passes
    float *out = (float *)malloc_check(act * sizeof(float));
    float *mean = (float *)malloc_check(N * sizeof(float)), *rstd = (float *)malloc_check(N * sizeof(float));
    cpu_layernorm_forward(out, mean, rstd, x, w, bias, N, C);
    float *dinp_ref = copy_floats(dinp0, act), *dw_ref = copy_floats(dw0, C), *db_ref = copy_floats(db0, C);
    cpu_layernorm_backward(dinp_ref, dw_ref, db_ref, dout, x, w, mean, rstd, N, C);
    // dx alone (ref minus start), for the scale of dinp's atol
    float *dx = (float *)malloc_check(act * sizeof(float));
    for (size_t i = 0; i < act; i++) dx[i] = dinp_ref[i] - dinp0[i];
    // atol of the column sums: 2^-16 * sum of |terms|
    float *dw_atol = (float *)malloc_check(C * sizeof(float)), *db_atol = (float *)malloc_check(C * sizeof(float));
    for (int c = 0; c < C; c++) { dw_atol[c] = fabsf(dw0[c]); db_atol[c] = fabsf(db0[c]); }
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            const float d = dout[(size_t)n * C + c];
            db_atol[c] += fabsf(d);
            dw_atol[c] += fabsf(d * (x[(size_t)n * C + c] - mean[n]) * rstd[n]);
        }
    }
    for (int c = 0; c < C; c++) { dw_atol[c] *= 1.0f / 65536.0f; db_atol[c] *= 1.0f / 65536.0f; }
    const float grad_rtol = sizeof(GradT) == 2 ? BF16_EPS : 0.0f;

    bf16 *d_x = dev_from_host<bf16>(x, act), *d_dout = dev_from_host<bf16>(dout, act), *d_w = dev_from_host<bf16>(w, C);
    float *d_mean = dev_from_host<float>(mean, N), *d_rstd = dev_from_host<float>(rstd, N);
    bf16 *d_dinp = (bf16 *)dev_alloc(act * sizeof(bf16));
    GradT *d_dw = (GradT *)dev_alloc(C * sizeof(GradT)), *d_db = (GradT *)dev_alloc(C * sizeof(GradT));
    float *d_colsum = with_colsum ? (float *)dev_alloc(C * sizeof(float)) : NULL;
    const size_t scratch_floats = layernorm_backward_scratch_floats(N, C);
    float *scratch = (float *)dev_alloc(scratch_floats * sizeof(float));
    void *first_dinp = NULL, *first_dw = NULL, *first_db = NULL, *first_colsum = NULL;
    for (int run = 0; run < 2; run++) {
        upload(d_dinp, dinp0, act);
        upload(d_dw, dw0, C);
        upload(d_db, db0, C);
        if (with_colsum) upload(d_colsum, colsum0, C);
        dev_poison(scratch, scratch_floats * sizeof(float));
        layernorm_backward<GradT>(d_dinp, d_colsum, d_dw, d_db, scratch, d_dout, d_x, d_w, d_mean, d_rstd, N, C, true, true, 0);
        cudaCheck(cudaDeviceSynchronize());
        if (run == 0) {
            float *dinp = download(d_dinp, act), *dw = download(d_dw, C), *db = download(d_db, C);
            check_close("layernorm backward dinp", dinp, dinp_ref, act, BF16_EPS, 1.0f / 16384.0f * max_abs(dx, act));
            check_close_each("layernorm backward dweight", dw, dw_ref, dw_atol, C, grad_rtol);
            check_close_each("layernorm backward dbias", db, db_ref, db_atol, C, grad_rtol);
            CHECK(guard_intact(d_dinp, act * sizeof(bf16)), "layernorm backward wrote past dinp");
            CHECK(guard_intact(d_dw, C * sizeof(GradT)) && guard_intact(d_db, C * sizeof(GradT)),
                  "layernorm backward wrote past dweight/dbias");
            CHECK(guard_intact(scratch, scratch_floats * sizeof(float)), "layernorm backward wrote past its scratch");
            if (with_colsum) {
                // colsum0 + sum over rows of the stored dinp
                float *colsum = download(d_colsum, C);
                check_column_sums("layernorm backward dinp_colsum", colsum, colsum0, dinp, N, C);
                CHECK(guard_intact(d_colsum, C * sizeof(float)), "layernorm backward wrote past dinp_colsum");
                first_colsum = dev_snapshot(d_colsum, C * sizeof(float));
                free(colsum);
            }
            free(dinp); free(dw); free(db);
            first_dinp = dev_snapshot(d_dinp, act * sizeof(bf16));
            first_dw = dev_snapshot(d_dw, C * sizeof(GradT));
            first_db = dev_snapshot(d_db, C * sizeof(GradT));
        } else {
            CHECK(same_bits(first_dinp, d_dinp, act * sizeof(bf16)), "layernorm backward dinp not deterministic");
            CHECK(same_bits(first_dw, d_dw, C * sizeof(GradT)), "layernorm backward dweight not deterministic");
            CHECK(same_bits(first_db, d_db, C * sizeof(GradT)), "layernorm backward dbias not deterministic");
            if (with_colsum)
                CHECK(same_bits(first_colsum, d_colsum, C * sizeof(float)), "layernorm backward dinp_colsum not deterministic");
        }
    }
    // overwrite modes, one flag at a time (the other's outputs start from the random values in both runs)
    void *dinp_buf[1] = {d_dinp};
    const size_t dinp_bytes[1] = {act * sizeof(bf16)};
    check_overwrite_matches_zeroed("layernorm backward dinp", [&](bool accumulate_dinp) {
        upload(d_dw, dw0, C);
        upload(d_db, db0, C);
        if (with_colsum) upload(d_colsum, colsum0, C);
        layernorm_backward<GradT>(d_dinp, d_colsum, d_dw, d_db, scratch, d_dout, d_x, d_w, d_mean, d_rstd, N, C, accumulate_dinp, true, 0);
    }, dinp_buf, dinp_bytes, 1);
    void *param_bufs[3] = {d_dw, d_db, d_colsum};
    const size_t param_bytes[3] = {C * sizeof(GradT), C * sizeof(GradT), C * sizeof(float)};
    check_overwrite_matches_zeroed("layernorm backward dweight, dbias, dinp_colsum", [&](bool accumulate) {
        upload(d_dinp, dinp0, act);
        layernorm_backward<GradT>(d_dinp, d_colsum, d_dw, d_db, scratch, d_dout, d_x, d_w, d_mean, d_rstd, N, C, true, accumulate, 0);
    }, param_bufs, param_bytes, with_colsum ? 3 : 2);
    CHECK(guard_intact(d_dinp, act * sizeof(bf16)) && guard_intact(d_dw, C * sizeof(GradT)) && guard_intact(d_db, C * sizeof(GradT)),
          "layernorm backward (overwrite) wrote past an output");
    cudaCheck(cudaFree(d_x)); cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_mean));
    cudaCheck(cudaFree(d_rstd)); cudaCheck(cudaFree(d_dinp)); cudaCheck(cudaFree(d_dw)); cudaCheck(cudaFree(d_db));
    cudaCheck(cudaFree(scratch)); cudaCheck(cudaFree(first_dinp)); cudaCheck(cudaFree(first_dw)); cudaCheck(cudaFree(first_db));
    if (with_colsum) { cudaCheck(cudaFree(d_colsum)); cudaCheck(cudaFree(first_colsum)); }
    free(x); free(dout); free(w); free(bias); free(dinp0); free(dw0); free(db0); free(colsum0); free(out); free(mean); free(rstd);
    free(dinp_ref); free(dw_ref); free(db_ref); free(dx); free(dw_atol); free(db_atol);
}

// Shapes cover one row, a partial last block whose later row groups have no rows (2100 x 100: 8 row
// groups of 2 rows per batch), single-group blocks (C = 1600, 3000) and several batches per block.
static void test_layernorm_backward(void) {
    const int shapes[][2] = {{1, 768}, {37, 1600}, {4096, 768}, {37, 100}, {4096, 1600}, {5, 3000}, {2100, 100}, {3001, 1024}};
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        layernorm_backward_case<float>(shapes[i][0], shapes[i][1], 1);
        layernorm_backward_case<float>(shapes[i][0], shapes[i][1], 0);
    }
    layernorm_backward_case<bf16>(37, 1600, 1);
    layernorm_backward_case<bf16>(4096, 768, 0);
}

// RMSNorm (the same kernels with RMS): forward (plain and fused with the residual add) and backward with
// the input gradient's column sums, against cpu_rmsnorm_forward/backward; tolerances as for LayerNorm.
static void rmsnorm_case(int N, int C, int fused) {
    const size_t act = (size_t)N * C;
    const float eps = 1e-5f;
    float *a = random_bf16_values(act, 0.3f, 2.0f), *b = fused ? random_bf16_values(act, 0.0f, 1.0f) : NULL;
    float *w = random_bf16_values(C, 1.0f, 0.2f), *dout = random_bf16_values(act, 0.0f, 1.0f);
    float *dinp0 = random_bf16_values(act, 0.0f, 0.5f), *dw0 = random_bf16_values(C, 0.0f, 1.0f), *colsum0 = random_bf16_values(C, 0.0f, 1.0f);
    float *x = copy_floats(a, act);
    if (fused)
        for (size_t i = 0; i < act; i++) x[i] = bf16_round(a[i] + b[i]);
    float *out_ref = (float *)malloc_check(act * sizeof(float)), *rstd_ref = (float *)malloc_check(N * sizeof(float));
    cpu_rmsnorm_forward(out_ref, rstd_ref, x, w, N, C, eps);
    float *dinp_ref = copy_floats(dinp0, act), *dw_ref = copy_floats(dw0, C);
    cpu_rmsnorm_backward(dinp_ref, dw_ref, dout, x, w, rstd_ref, N, C);
    float *dx = (float *)malloc_check(act * sizeof(float)), *dw_atol = (float *)malloc_check(C * sizeof(float));
    for (size_t i = 0; i < act; i++) dx[i] = dinp_ref[i] - dinp0[i];
    for (int c = 0; c < C; c++) dw_atol[c] = fabsf(dw0[c]);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) dw_atol[c] += fabsf(dout[(size_t)n * C + c] * x[(size_t)n * C + c] * rstd_ref[n]);
    for (int c = 0; c < C; c++) dw_atol[c] *= 1.0f / 65536.0f;

    bf16 *d_a = dev_from_host<bf16>(a, act), *d_b = fused ? dev_from_host<bf16>(b, act) : NULL, *d_w = dev_from_host<bf16>(w, C);
    bf16 *d_out = (bf16 *)dev_alloc(act * sizeof(bf16)), *d_res = (bf16 *)dev_alloc(act * sizeof(bf16));
    float *d_rstd = (float *)dev_alloc(N * sizeof(float));
    if (fused) fused_residual_rmsnorm_forward(d_res, d_out, d_rstd, d_a, d_b, d_w, N, C, eps, 0);
    else rmsnorm_forward(d_out, d_rstd, d_a, d_w, N, C, eps, 0);
    cudaCheck(cudaDeviceSynchronize());
    float *out = download(d_out, act), *rstd = download(d_rstd, N);
    check_close("rmsnorm forward out", out, out_ref, act, BF16_EPS, 1.0f / 16384.0f * max_abs(out_ref, act));
    check_close("rmsnorm forward rstd", rstd, rstd_ref, N, 1.0f / 65536.0f, 0.0f);
    CHECK(guard_intact(d_out, act * sizeof(bf16)) && guard_intact(d_rstd, N * sizeof(float)), "rmsnorm forward wrote past an output");
    if (fused) {
        float *res = download(d_res, act);
        check_close("rmsnorm fused residual sum", res, x, act, 0.0f, 0.0f);
        free(res);
    }
    // backward from the GPU's input x (the stored residual when fused) and the reference rstd
    bf16 *d_x = dev_from_host<bf16>(x, act), *d_dout = dev_from_host<bf16>(dout, act), *d_dinp = (bf16 *)dev_alloc(act * sizeof(bf16));
    float *d_rstd_ref = dev_from_host<float>(rstd_ref, N), *d_dw = (float *)dev_alloc(C * sizeof(float));
    float *d_colsum = (float *)dev_alloc(C * sizeof(float));
    const size_t scratch_floats = layernorm_backward_scratch_floats(N, C);
    float *scratch = (float *)dev_alloc(scratch_floats * sizeof(float));
    upload(d_dinp, dinp0, act);
    upload(d_dw, dw0, C);
    upload(d_colsum, colsum0, C);
    rmsnorm_backward<float>(d_dinp, d_colsum, d_dw, scratch, d_dout, d_x, d_w, d_rstd_ref, N, C, true, true, 0);
    cudaCheck(cudaDeviceSynchronize());
    float *dinp = download(d_dinp, act), *dw = download(d_dw, C), *colsum = download(d_colsum, C);
    check_close("rmsnorm backward dinp", dinp, dinp_ref, act, BF16_EPS, 1.0f / 16384.0f * max_abs(dx, act));
    check_close_each("rmsnorm backward dweight", dw, dw_ref, dw_atol, C, 0.0f);
    check_column_sums("rmsnorm backward dinp_colsum", colsum, colsum0, dinp, N, C);
    CHECK(guard_intact(d_dinp, act * sizeof(bf16)) && guard_intact(d_dw, C * sizeof(float)) && guard_intact(d_colsum, C * sizeof(float)) &&
              guard_intact(scratch, scratch_floats * sizeof(float)),
          "rmsnorm backward wrote past an output");
    void *bufs[] = {d_a, d_b, d_w, d_out, d_res, d_rstd, d_x, d_dout, d_dinp, d_rstd_ref, d_dw, d_colsum, scratch};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
        if (bufs[i] != NULL) cudaCheck(cudaFree(bufs[i]));
    float *host[] = {a, b, w, dout, dinp0, dw0, colsum0, x, out_ref, rstd_ref, dinp_ref, dw_ref, dx, dw_atol, out, rstd, dinp, dw, colsum};
    for (size_t i = 0; i < sizeof(host) / sizeof(host[0]); i++) free(host[i]);
}

// Llama's widths (768, 2048) and the shapes of the LayerNorm tests that reach every code path.
static void test_rmsnorm(void) {
    const int shapes[][2] = {{1, 768}, {37, 100}, {4096, 768}, {513, 2048}, {5, 3000}, {2100, 100}};
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        rmsnorm_case(shapes[i][0], shapes[i][1], 0);
        rmsnorm_case(shapes[i][0], shapes[i][1], 1);
    }
}

// ----------------------------------------------------------------------------------------------
// Llama's passes: RoPE with the KV-head expansion, SwiGLU

// rope_gqa_forward against cpu_rope_forward on the GQA layout followed by the head expansion, and
// rope_gqa_backward against the group sums followed by cpu_rope_backward; one BF16 rounding each (the
// backward's group sums of G terms: G BF16 inputs added in FP32, so a few ulp of FP32 before the rounding).
static void rope_gqa_case(int B, int T, int NH, int NKV, int HS) {
    const int N = B * T, H = NH + 2 * NKV, G = NH / NKV, half = HS / 2;
    const size_t gqa_n = (size_t)N * H * HS, mha_n = (size_t)N * 3 * NH * HS;
    float *x = random_bf16_values(gqa_n, 0.0f, 1.0f), *dy = random_bf16_values(mha_n, 0.0f, 1.0f);
    float *cos_t = (float *)malloc_check((size_t)T * half * sizeof(float)), *sin_t = (float *)malloc_check((size_t)T * half * sizeof(float));
    float *cos_ref = (float *)malloc_check((size_t)T * half * sizeof(float)), *sin_ref = (float *)malloc_check((size_t)T * half * sizeof(float));
    rope_table_host(cos_t, sin_t, T, HS, 10000.0f);
    cpu_rope_table(cos_ref, sin_ref, T, HS, 10000.0f);
    CHECK(memcmp(cos_t, cos_ref, (size_t)T * half * sizeof(float)) == 0 && memcmp(sin_t, sin_ref, (size_t)T * half * sizeof(float)) == 0,
          "rope_table_host differs from cpu_rope_table");
    // reference forward: rotate q and k in the GQA layout, then expand
    float *rot = (float *)malloc_check(gqa_n * sizeof(float)), *y_ref = (float *)malloc_check(mha_n * sizeof(float));
    cpu_rope_forward(rot, x, cos_t, sin_t, B, T, H, NH + NKV, HS);
    for (int n = 0; n < N; n++)
        for (int s = 0; s < 3 * NH; s++) {
            const int part = s / NH, h = s % NH, src = part == 0 ? h : part == 1 ? NH + h / G : NH + NKV + h / G;
            memcpy(y_ref + ((size_t)n * 3 * NH + s) * HS, rot + ((size_t)n * H + src) * HS, (size_t)HS * sizeof(float));
        }
    // reference backward: sum each KV head's copies over its query heads (in order), then the transposed rotation
    float *dsum = (float *)calloc_check(gqa_n, sizeof(float)), *dx_ref = (float *)calloc_check(gqa_n, sizeof(float));
    for (int n = 0; n < N; n++)
        for (int s = 0; s < 3 * NH; s++) {
            const int part = s / NH, h = s % NH, dst = part == 0 ? h : part == 1 ? NH + h / G : NH + NKV + h / G;
            for (int i = 0; i < HS; i++) dsum[((size_t)n * H + dst) * HS + i] += dy[((size_t)n * 3 * NH + s) * HS + i];
        }
    cpu_rope_backward(dx_ref, dsum, cos_t, sin_t, B, T, H, NH + NKV, HS);
    bf16 *d_x = dev_from_host<bf16>(x, gqa_n), *d_dy = dev_from_host<bf16>(dy, mha_n);
    bf16 *d_y = (bf16 *)dev_alloc(mha_n * sizeof(bf16)), *d_dx = (bf16 *)dev_alloc(gqa_n * sizeof(bf16));
    float *d_cos = dev_from_host<float>(cos_t, (size_t)T * half), *d_sin = dev_from_host<float>(sin_t, (size_t)T * half);
    rope_gqa_forward(d_y, d_x, d_cos, d_sin, B, T, NH, NKV, HS, 0);
    rope_gqa_backward(d_dx, d_dy, d_cos, d_sin, B, T, NH, NKV, HS, 0);
    cudaCheck(cudaDeviceSynchronize());
    float *y = download(d_y, mha_n), *dx = download(d_dx, gqa_n);
    check_close("rope_gqa forward", y, y_ref, mha_n, BF16_EPS, 1e-6f);
    check_close("rope_gqa backward", dx, dx_ref, gqa_n, BF16_EPS, 1e-5f * G);
    CHECK(guard_intact(d_y, mha_n * sizeof(bf16)) && guard_intact(d_dx, gqa_n * sizeof(bf16)), "rope_gqa wrote past an output");
    void *bufs[] = {d_x, d_dy, d_y, d_dx, d_cos, d_sin};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) cudaCheck(cudaFree(bufs[i]));
    float *host[] = {x, dy, cos_t, sin_t, cos_ref, sin_ref, rot, y_ref, dsum, dx_ref, y, dx};
    for (size_t i = 0; i < sizeof(host) / sizeof(host[0]); i++) free(host[i]);
}

// GQA groups of 1 (multi-head), 2 and 4, one KV head (multi-query), head sizes 64 and 128.
static void test_rope_gqa(void) {
    rope_gqa_case(2, 64, 4, 4, 64);
    rope_gqa_case(3, 37, 8, 4, 64);
    rope_gqa_case(1, 100, 8, 2, 128);
    rope_gqa_case(2, 17, 4, 1, 64);
}

// swiglu_forward/backward against cpu_swiglu_forward/backward (gate in N(0, 3^2) for the tails).
static void swiglu_case(int N, int F) {
    const size_t in_n = (size_t)N * 2 * F, out_n = (size_t)N * F;
    float *gu = random_bf16_values(in_n, 0.0f, 3.0f), *dout = random_bf16_values(out_n, 0.0f, 1.0f);
    float *y_ref = (float *)malloc_check(out_n * sizeof(float)), *dgu_ref = (float *)calloc_check(in_n, sizeof(float));
    cpu_swiglu_forward(y_ref, gu, N, F);
    cpu_swiglu_backward(dgu_ref, dout, gu, N, F);
    bf16 *d_gu = dev_from_host<bf16>(gu, in_n), *d_dout = dev_from_host<bf16>(dout, out_n);
    bf16 *d_y = (bf16 *)dev_alloc(out_n * sizeof(bf16)), *d_dgu = (bf16 *)dev_alloc(in_n * sizeof(bf16));
    swiglu_forward(d_y, d_gu, N, F, 0);
    swiglu_backward(d_dgu, d_dout, d_gu, N, F, 0);
    cudaCheck(cudaDeviceSynchronize());
    float *y = download(d_y, out_n), *dgu = download(d_dgu, in_n);
    // one BF16 rounding of an FP32 result; expf may differ from the host's by a few ulp
    check_close("swiglu forward", y, y_ref, out_n, BF16_EPS, 1e-6f);
    check_close("swiglu backward", dgu, dgu_ref, in_n, BF16_EPS, 1e-6f);
    CHECK(guard_intact(d_y, out_n * sizeof(bf16)) && guard_intact(d_dgu, in_n * sizeof(bf16)), "swiglu wrote past an output");
    cudaCheck(cudaFree(d_gu)); cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_y)); cudaCheck(cudaFree(d_dgu));
    free(gu); free(dout); free(y_ref); free(dgu_ref); free(y); free(dgu);
}

static void test_swiglu(void) {
    swiglu_case(1, 8);
    swiglu_case(37, 2048);
    swiglu_case(513, 2816);
}

// ----------------------------------------------------------------------------------------------
// gelu

// gelu_forward's two outputs, gelu(x) and gelu'(x) (what the GELU Fprop stores on GPUs without the Hopper
// GEMM; its Dgrad's product with gelu' is checked in test_linear). in_place: gelu' overwrites x, as there.
// x ~ N(0, std^2): std 2 for the usual pre-activations, 20 for the tails (exp overflows below x = -10.5;
// gelu' = 1 in FP32 above x = 6.5).
static void gelu_case(long long n, int in_place, float std) {
    float *x = random_bf16_values((size_t)n, 0.0f, std);
    float *out_ref = (float *)malloc_check((size_t)n * sizeof(float));
    float *grad_ref = (float *)calloc_check((size_t)n, sizeof(float)), *ones = (float *)malloc_check((size_t)n * sizeof(float));
    for (long long i = 0; i < n; i++) ones[i] = 1.0f;
    cpu_gelu_forward(out_ref, x, (size_t)n);
    cpu_gelu_backward(grad_ref, x, ones, (size_t)n);  // accumulates gelu'(x) * 1 into zeros
    bf16 *d_x = dev_from_host<bf16>(x, (size_t)n), *d_out = (bf16 *)dev_alloc((size_t)n * sizeof(bf16));
    bf16 *d_grad = in_place ? d_x : (bf16 *)dev_alloc((size_t)n * sizeof(bf16));
    void *first_out = NULL, *first_grad = NULL;
    for (int run = 0; run < 2; run++) {
        upload(d_x, x, (size_t)n);
        dev_poison(d_out, (size_t)n * sizeof(bf16));
        if (!in_place) dev_poison(d_grad, (size_t)n * sizeof(bf16));
        gelu_forward(d_out, d_grad, d_x, n, 0);
        cudaCheck(cudaDeviceSynchronize());
        if (run == 0) {
            float *out = download(d_out, (size_t)n), *grad = download(d_grad, (size_t)n);
            // one BF16 rounding; atol covers 1-2 ulp differences of tanhf where 1 + tanh cancels
            check_close("gelu forward", out, out_ref, (size_t)n, BF16_EPS, 1.0f / (1 << 18));
            check_close("gelu forward's gelu'", grad, grad_ref, (size_t)n, BF16_EPS, 1.0f / (1 << 16));
            CHECK(guard_intact(d_out, (size_t)n * sizeof(bf16)) && guard_intact(d_grad, (size_t)n * sizeof(bf16)),
                  "gelu wrote past its output");
            free(out); free(grad);
            first_out = dev_snapshot(d_out, (size_t)n * sizeof(bf16));
            first_grad = dev_snapshot(d_grad, (size_t)n * sizeof(bf16));
        } else {
            CHECK(same_bits(first_out, d_out, (size_t)n * sizeof(bf16)) && same_bits(first_grad, d_grad, (size_t)n * sizeof(bf16)),
                  "gelu not deterministic");
        }
    }
    cudaCheck(cudaFree(d_x)); cudaCheck(cudaFree(d_out));
    if (!in_place) cudaCheck(cudaFree(d_grad));
    cudaCheck(cudaFree(first_out)); cudaCheck(cudaFree(first_grad));
    free(x); free(out_ref); free(grad_ref); free(ones);
}

static void test_gelu(void) {
    gelu_case(1, 0, 2.0f);
    gelu_case(37 * 100, 0, 2.0f);   // n % 8 == 4
    gelu_case(37 * 101, 1, 2.0f);   // odd n, in place
    gelu_case(4096LL * 768 * 4, 0, 2.0f);
    gelu_case(1 << 20, 0, 20.0f);
}

// ----------------------------------------------------------------------------------------------
// classifier

static void classifier_case(int N, int V, int Vp, float logit_std) {
    const size_t total = (size_t)N * Vp;
    float *logits = random_bf16_values(total, 0.0f, logit_std);
    for (int n = 0; n < N; n++) {
        for (int c = V; c < Vp; c++) logits[(size_t)n * Vp + c] = 100.0f;  // padding must not enter the softmax
    }
    int *targets = (int *)malloc_check(N * sizeof(int));
    for (int n = 0; n < N; n++) targets[n] = (int)rng_below(&rng, (uint64_t)V);
    targets[0] = V - 1;
    if (N > 1) targets[1] = 0;
    const float dloss = 1.0f / (float)(N * 3);  // 1/(B*T*grad_accum) with grad_accum = 3
    float *losses_ref = (float *)malloc_check(N * sizeof(float));
    float *probs = (float *)malloc_check(total * sizeof(float));
    float *dlogits_ref = (float *)calloc_check(total, sizeof(float));
    float *dlosses = (float *)malloc_check(N * sizeof(float));
    for (int n = 0; n < N; n++) dlosses[n] = dloss;
    cpu_softmax_crossentropy_forward(losses_ref, probs, logits, targets, N, V, Vp);
    cpu_softmax_crossentropy_backward(dlogits_ref, dlosses, probs, targets, N, V, Vp);

    bf16 *d_logits = (bf16 *)dev_alloc(total * sizeof(bf16));
    float *d_losses = (float *)dev_alloc(N * sizeof(float));
    int *d_targets = dev_ints(targets, N);
    void *first_logits = NULL, *first_losses = NULL;
    for (int run = 0; run < 2; run++) {
        upload(d_logits, logits, total);
        dev_poison(d_losses, N * sizeof(float));
        fused_classifier(d_logits, d_losses, d_targets, dloss, N, V, Vp, 0);
        cudaCheck(cudaDeviceSynchronize());
        if (run == 0) {
            float *losses = download(d_losses, N), *dlogits = download(d_logits, total);
            // loss: FP32 sum of V exponentials against double
            check_close("classifier loss", losses, losses_ref, N, 1e-5f, 1e-5f);
            // gradient: one BF16 rounding; atol for FP32 differences of the probabilities
            check_close("classifier dlogits", dlogits, dlogits_ref, total, BF16_EPS, dloss / (1 << 20));
            size_t nonzero_pad = 0;
            for (int n = 0; n < N; n++) {
                for (int c = V; c < Vp; c++) nonzero_pad += dlogits[(size_t)n * Vp + c] != 0.0f;
            }
            CHECK(nonzero_pad == 0, "classifier: %zu padded columns got a non-zero gradient", nonzero_pad);
            CHECK(guard_intact(d_logits, total * sizeof(bf16)) && guard_intact(d_losses, N * sizeof(float)),
                  "classifier wrote past its outputs");
            free(losses); free(dlogits);
            first_logits = dev_snapshot(d_logits, total * sizeof(bf16));
            first_losses = dev_snapshot(d_losses, N * sizeof(float));
        } else {
            CHECK(same_bits(first_logits, d_logits, total * sizeof(bf16)) && same_bits(first_losses, d_losses, N * sizeof(float)),
                  "classifier not deterministic");
        }
    }
    cudaCheck(cudaFree(d_logits)); cudaCheck(cudaFree(d_losses)); cudaCheck(cudaFree(d_targets));
    cudaCheck(cudaFree(first_logits)); cudaCheck(cudaFree(first_losses));
    free(logits); free(targets); free(losses_ref); free(probs); free(dlogits_ref); free(dlosses);
}

static void test_classifier(void) {
    classifier_case(1, 50257, 50304, 2.0f);
    classifier_case(37, 50257, 50304, 4.0f);
    classifier_case(256, 50257, 50304, 1.0f);
    classifier_case(4096, 1000, 1024, 3.0f);
    classifier_case(37, 100, 101, 2.0f);   // Vp not a multiple of 8: element-wise path
    classifier_case(5, 8, 8, 2.0f);        // no padding, one vector per row
    classifier_case(3, 60001, 60008, 2.0f); // Vp > CLASSIFIER_SMEM_MAX_VP: the two-pass kernel
}

// A target outside [0, V) must give a NaN loss, not a silently wrong number.
static void test_classifier_bad_target(void) {
    const int N = 3, V = 100, Vp = 104;
    float *logits = random_bf16_values((size_t)N * Vp, 0.0f, 1.0f);
    const int targets[3] = {5, V, -1};
    bf16 *d_logits = dev_from_host<bf16>(logits, (size_t)N * Vp);
    float *d_losses = (float *)dev_alloc(N * sizeof(float));
    int *d_targets = dev_ints(targets, N);
    fused_classifier(d_logits, d_losses, d_targets, 1.0f, N, V, Vp, 0);
    cudaCheck(cudaDeviceSynchronize());
    float *losses = download(d_losses, N);
    CHECK(isfinite(losses[0]) && losses[0] > 0.0f, "valid target: loss %g", losses[0]);
    CHECK(isnan(losses[1]) && isnan(losses[2]), "out-of-range targets: losses %g %g, want NaN", losses[1], losses[2]);
    cudaCheck(cudaFree(d_logits)); cudaCheck(cudaFree(d_losses)); cudaCheck(cudaFree(d_targets));
    free(logits); free(losses);
}

// ----------------------------------------------------------------------------------------------
// adamw

// Tensors of the given sizes (decay on every other one, like weights and biases; a learning-rate
// multiplier of 1 on every third, a random one in [0.25, 2) on the others), updated for two steps over
// the shard [shard_begin, shard_begin + shard_size), against cpu_adamw_update per tensor at lr * multiplier.
template <typename GradT>
static void adamw_case(const size_t *sizes, int num_tensors, size_t shard_begin, size_t shard_size) {
    int decay[16];
    float lr_mult[16];
    size_t total = 0;
    for (int t = 0; t < num_tensors; t++) {
        decay[t] = t % 2 == 0;
        lr_mult[t] = t % 3 == 0 ? 1.0f : 0.25f + 1.75f * rng_uniform(&rng);
        total += sizes[t];
    }
    if (shard_size == 0) shard_size = total - shard_begin;
    const size_t n = shard_size;
    float *master0 = random_bf16_values(n, 0.0f, 0.05f);  // (any FP32 value works; BF16 values are convenient)
    for (size_t i = 0; i < n; i++) master0[i] += 1e-4f * rng_uniform(&rng);  // make them not BF16-representable
    float *m0 = random_bf16_values(n, 0.0f, 0.01f), *v0 = (float *)malloc_check(n * sizeof(float));
    for (size_t i = 0; i < n; i++) v0[i] = 1e-5f + 9e-5f * rng_uniform(&rng);  // keeps sqrt(v) away from 0
    float *grads[2] = {random_bf16_values(n, 0.0f, 0.02f), random_bf16_values(n, 0.0f, 0.02f)};
    const float lr = 3e-4f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, wd = 0.1f;
    const float grad_scale[2] = {1.0f, 0.37f};
    // reference: per tensor piece inside the shard
    float *master_ref = copy_floats(master0, n), *m_ref = copy_floats(m0, n), *v_ref = copy_floats(v0, n);
    for (int step = 1; step <= 2; step++) {
        size_t begin = 0;
        for (int t = 0; t < num_tensors; t++) {
            const size_t lo = begin > shard_begin ? begin : shard_begin;
            const size_t hi = begin + sizes[t] < shard_begin + n ? begin + sizes[t] : shard_begin + n;
            if (lo < hi) {
                const size_t o = lo - shard_begin;
                cpu_adamw_update(master_ref + o, grads[step - 1] + o, m_ref + o, v_ref + o, hi - lo, lr * lr_mult[t], beta1, beta2, eps,
                                 decay[t] ? wd : 0.0f, grad_scale[step - 1], step);
            }
            begin += sizes[t];
        }
    }
    AdamWPlan plan;
    adamw_plan_build(&plan, sizes, decay, lr_mult, num_tensors, shard_begin, n);
    float *d_master = (float *)dev_alloc(n * sizeof(float)), *d_m = (float *)dev_alloc(n * sizeof(float));
    float *d_v = (float *)dev_alloc(n * sizeof(float));
    GradT *d_grads[2] = {dev_from_host<GradT>(grads[0], n), dev_from_host<GradT>(grads[1], n)};
    bf16 *d_params = (bf16 *)dev_alloc(n * sizeof(bf16));
    void *first_master = NULL, *first_params = NULL;
    for (int run = 0; run < 2; run++) {
        upload(d_master, master0, n);
        upload(d_m, m0, n);
        upload(d_v, v0, n);
        dev_poison(d_params, n * sizeof(bf16));
        for (int step = 1; step <= 2; step++) {
            const AdamWStepParams hp = adamw_step_params(lr, beta1, beta2, eps, wd, step, grad_scale[step - 1]);
            adamw_update<GradT>(d_params, d_master, d_m, d_v, d_grads[step - 1], &plan, hp, 0);
        }
        cudaCheck(cudaDeviceSynchronize());
        if (run == 0) {
            float *master = download(d_master, n), *m = download(d_m, n), *v = download(d_v, n);
            float *params = download(d_params, n);
            // FP32 arithmetic on both sides in the same order; FMA contraction may differ by a few ulp.
            // master moves by ~lr per step, so its atol is a few ulp of lr; m may cancel to ~0, so its
            // atol is a few ulp of its largest value.
            check_close("adamw master", master, master_ref, n, 1.0f / (1 << 21), lr / (1 << 16));
            check_close("adamw m", m, m_ref, n, 1.0f / (1 << 20), max_abs(m_ref, n) / (1 << 20));
            check_close("adamw v", v, v_ref, n, 1.0f / (1 << 20), 0.0f);
            // params: exactly the BF16 rounding of the GPU's master weights
            size_t mismatched = 0;
            for (size_t i = 0; i < n; i++) mismatched += params[i] != bf16_round(master[i]);
            CHECK(mismatched == 0, "adamw: %zu BF16 params differ from round(master)", mismatched);
            CHECK(guard_intact(d_master, n * sizeof(float)) && guard_intact(d_m, n * sizeof(float)) &&
                      guard_intact(d_v, n * sizeof(float)) && guard_intact(d_params, n * sizeof(bf16)),
                  "adamw wrote past its arrays");
            free(master); free(m); free(v); free(params);
            first_master = dev_snapshot(d_master, n * sizeof(float));
            first_params = dev_snapshot(d_params, n * sizeof(bf16));
        } else {
            CHECK(same_bits(first_master, d_master, n * sizeof(float)) && same_bits(first_params, d_params, n * sizeof(bf16)),
                  "adamw not deterministic");
        }
    }
    adamw_plan_free(&plan);
    cudaCheck(cudaFree(d_master)); cudaCheck(cudaFree(d_m)); cudaCheck(cudaFree(d_v)); cudaCheck(cudaFree(d_params));
    cudaCheck(cudaFree(d_grads[0])); cudaCheck(cudaFree(d_grads[1]));
    cudaCheck(cudaFree(first_master)); cudaCheck(cudaFree(first_params));
    free(master0); free(m0); free(v0); free(grads[0]); free(grads[1]); free(master_ref); free(m_ref); free(v_ref);
}

static void test_adamw(void) {
    const size_t gpt_like[] = {50304 * 64, 1024 * 64, 64, 64, 192 * 64, 192, 64 * 64, 64};
    adamw_case<float>(gpt_like, 8, 0, 0);
    const size_t odd[] = {1, 37, 8192 + 3, 100, 3 * 8192, 5};  // boundaries off the 4-element grid
    adamw_case<float>(odd, 6, 0, 0);
    adamw_case<float>(odd, 6, 13, 20000);                       // a ZeRO-1 shard cutting through tensors
    adamw_case<bf16>(gpt_like, 8, 0, 0);
    adamw_case<bf16>(odd, 6, 7, 0);
}

// ----------------------------------------------------------------------------------------------
// global norm

template <typename GradT>
static void global_norm_case(long long n) {
    float *g = random_bf16_values((size_t)n, 0.0f, 1e-2f);
    const float want = cpu_global_norm(g, (size_t)n);
    GradT *d_g = dev_from_host<GradT>(g, (size_t)n);
    const int blocks = global_norm_num_blocks(n);
    float *d_scratch = (float *)dev_alloc(blocks * sizeof(float)), *d_out = (float *)dev_alloc(sizeof(float));
    float got[2];
    for (int run = 0; run < 2; run++) {
        dev_poison(d_out, sizeof(float));
        dev_poison(d_scratch, blocks * sizeof(float));
        global_norm_squared<GradT>(d_out, d_scratch, d_g, n, 0);
        cudaCheck(cudaMemcpy(&got[run], d_out, sizeof(float), cudaMemcpyDeviceToHost));
    }
    const float norm = sqrtf(got[0]);
    // FP32 partial sums against double: relative 2^-17 on the norm
    CHECK(fabsf(norm - want) <= want / (1 << 17), "n=%lld: norm %.9g want %.9g", n, norm, want);
    CHECK(memcmp(&got[0], &got[1], sizeof(float)) == 0, "n=%lld: global norm not deterministic", n);
    CHECK(guard_intact(d_scratch, blocks * sizeof(float)) && guard_intact(d_out, sizeof(float)),
          "global norm wrote past its outputs");
    cudaCheck(cudaFree(d_g)); cudaCheck(cudaFree(d_scratch)); cudaCheck(cudaFree(d_out));
    free(g);
}

static void test_global_norm(void) {
    const long long sizes[] = {1, 3, 4097, 1000003, 30000000 + 3};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) global_norm_case<float>(sizes[i]);
    global_norm_case<bf16>(4097);
    global_norm_case<bf16>(10000001);
    CHECK(grad_clip_scale(2.0f, 1.0f) == 0.5f && grad_clip_scale(0.5f, 1.0f) == 1.0f && grad_clip_scale(5.0f, 0.0f) == 1.0f,
          "grad_clip_scale");
}

// ----------------------------------------------------------------------------------------------

// ----------------------------------------------------------------------------------------------
// linear layers (core/linear.cuh): the three GEMMs with bias, GELU and the bias gradients

// Elementwise |x| (for the sum of |terms| that bounds an FP32 sum's rounding).
static float *abs_copy(const float *x, size_t n) {
    float *y = (float *)malloc_check(n * sizeof(float));
    for (size_t i = 0; i < n; i++) y[i] = fabsf(x[i]);
    return y;
}

// One linear layer inp [N,IC] -> [N,OC] forward and backward. Forward with a bias, and with GELU when
// `gelu` (out = gelu(x), gelu_grad = gelu'(x), x = the BF16 pre-activation). Backward of a layer whose
// input came from a GELU when `gelu` (inp = gelu(pre), gelu_grad = bf16(gelu'(pre)); the Dgrad becomes the
// gradient of pre and gelu_dbias gets its column sums), else plain; Wgrad and dbias accumulate onto random
// values. Tolerances (eps = 2^-8, K = the summed dimension):
//   FP32 sums of K products in another order:     |err| <= 2^-14 * sum|terms|   (K*2^-24 for K <= 1024)
//   BF16 GEMM outputs:                             + eps*|ref| (one rounding)
//   GELU and GELU' of the pre-activation x:        x is off by its sum bound + eps |x| (its BF16 rounding);
//                                                  times 1.2 (|gelu'| <= 1.13) or 0.8 (|gelu''| <= 0.8), + eps*|ref|
//   GELU's backward after the BF16 Dgrad:          2*eps*|ref| (two roundings) + 1.2 * the Dgrad's bound
//   gelu_dbias: column sums of the GPU's own BF16 dinp, |err| <= 2^-16 * sum|terms| (FP32, N terms)
// portable: the GELU Fprop / Dgrad take the path of GPUs other than Hopper (cuBLASLt + element-wise passes)
// even on a Hopper GPU.
static void linear_case(int N, int IC, int OC, int gelu, int portable) {
    const size_t in_n = (size_t)N * IC, out_n = (size_t)N * OC, w_n = (size_t)OC * IC;
    const float sum_rtol = 1.0f / 16384.0f;
    float *inp = random_bf16_values(in_n, 0.0f, 1.0f);
    float *weight = random_bf16_values(w_n, 0.0f, 1.0f / sqrtf((float)IC));
    float *bias = random_bf16_values(OC, 0.0f, 0.1f);
    float *dout = random_bf16_values(out_n, 0.0f, 1.0f);
    float *pre = random_bf16_values(in_n, 0.0f, 1.5f);
    float *gelu_grad = (float *)calloc(in_n, sizeof(float)), *ones = (float *)malloc_check(in_n * sizeof(float));
    for (size_t i = 0; i < in_n; i++) ones[i] = 1.0f;
    cpu_gelu_backward(gelu_grad, pre, ones, in_n);
    for (size_t i = 0; i < in_n; i++) gelu_grad[i] = bf16_round(gelu_grad[i]);
    if (gelu) {  // the layer's input is gelu(pre) in BF16, as the model stores it, beside bf16(gelu'(pre))
        cpu_gelu_forward(inp, pre, in_n);
        for (size_t i = 0; i < in_n; i++) inp[i] = bf16_round(inp[i]);
    }
    float *dweight0 = random_bf16_values(w_n, 0.0f, 1.0f), *dbias0 = random_bf16_values(OC, 0.0f, 1.0f);
    float *pre_dbias0 = random_bf16_values(IC, 0.0f, 1.0f);

    MatmulContext matmul;
    matmul_context_init(&matmul);
    float *d_bias_partials;
    cudaCheck(cudaMalloc(&d_bias_partials, (size_t)linear_bias_partial_rows(N) * (IC > OC ? IC : OC) * sizeof(float)));
    LinearContext ctx = linear_context(PRECISION_BF16, &matmul, d_bias_partials, linear_bias_partial_rows(N), IC > OC ? IC : OC);
    if (portable) ctx.gelu_gemm_sm90 = false;
    bf16 *d_inp = dev_from_host<bf16>(inp, in_n), *d_weight = dev_from_host<bf16>(weight, w_n);
    bf16 *d_bias = dev_from_host<bf16>(bias, OC), *d_dout = dev_from_host<bf16>(dout, out_n);
    bf16 *d_gelu_grad = dev_from_host<bf16>(gelu_grad, in_n);
    bf16 *d_out = (bf16 *)dev_alloc(out_n * sizeof(bf16)), *d_gelu_grad_out = (bf16 *)dev_alloc(out_n * sizeof(bf16));
    bf16 *d_dinp = (bf16 *)dev_alloc(in_n * sizeof(bf16));
    float *d_dweight = (float *)dev_alloc(w_n * sizeof(float)), *d_dbias = (float *)dev_alloc(OC * sizeof(float));
    float *d_gelu_dbias = (float *)dev_alloc(IC * sizeof(float));

    // forward
    float *pre_ref = (float *)malloc_check(out_n * sizeof(float)), *out_ref = (float *)malloc_check(out_n * sizeof(float));
    float *atol = (float *)malloc_check(out_n * sizeof(float));
    float *abs_inp = abs_copy(inp, in_n), *abs_weight = abs_copy(weight, w_n), *abs_bias = abs_copy(bias, OC);
    cpu_matmul_forward(pre_ref, inp, weight, bias, N, IC, OC);
    cpu_matmul_forward(atol, abs_inp, abs_weight, abs_bias, N, IC, OC);
    for (size_t i = 0; i < out_n; i++) atol[i] *= sum_rtol;
    float *grad_ref = (float *)calloc(out_n, sizeof(float));
    if (gelu) {
        float *out_ones = (float *)malloc_check(out_n * sizeof(float));
        for (size_t i = 0; i < out_n; i++) out_ones[i] = 1.0f;
        cpu_gelu_forward(out_ref, pre_ref, out_n);
        cpu_gelu_backward(grad_ref, pre_ref, out_ones, out_n);
        free(out_ones);
    }
    // the layer as the forward sees it (GELU in its epilogue) and as the backward sees it (its input came from GELU)
    Linear fwd_lin, bwd_lin;
    linear_init(&fwd_lin, LINEAR_FC, 0, IC, OC, gelu ? LINEAR_EPILOGUE_BIAS_GELU : LINEAR_EPILOGUE_BIAS, false, d_weight, d_bias, d_dweight, d_dbias);
    linear_init(&bwd_lin, LINEAR_FC_PROJ, 0, IC, OC, LINEAR_EPILOGUE_BIAS, gelu, d_weight, d_bias, d_dweight, d_dbias);
    linear_forward(&ctx, &fwd_lin, d_out, gelu ? d_gelu_grad_out : NULL, d_inp, N, 0);
    cudaCheck(cudaDeviceSynchronize());
    float *out = download(d_out, out_n);
    CHECK(guard_intact(d_out, out_n * sizeof(bf16)), "linear forward N=%d IC=%d OC=%d: wrote past the output", N, IC, OC);
    if (gelu) {
        float *grad_out = download(d_gelu_grad_out, out_n);
        CHECK(guard_intact(d_gelu_grad_out, out_n * sizeof(bf16)), "linear forward N=%d IC=%d OC=%d: wrote past gelu_grad", N, IC, OC);
        float *x_atol = (float *)calloc_check(out_n, sizeof(float));
        for (size_t i = 0; i < out_n; i++) x_atol[i] = 1.2f * (atol[i] + fabsf(pre_ref[i]) * BF16_EPS) + 1e-6f;
        check_close_each("linear forward gelu output", out, out_ref, x_atol, out_n, BF16_EPS);
        for (size_t i = 0; i < out_n; i++) x_atol[i] = 0.8f * (atol[i] + fabsf(pre_ref[i]) * BF16_EPS) + 1e-6f;
        check_close_each("linear forward gelu' output", grad_out, grad_ref, x_atol, out_n, BF16_EPS);
        free(grad_out);
        free(x_atol);
    } else {
        check_close_each("linear forward", out, pre_ref, atol, out_n, BF16_EPS);
    }

    // backward, twice from the same state: the second run must give the same bits
    float *dinp_ref = (float *)calloc(in_n, sizeof(float)), *dinp_atol = (float *)calloc(in_n, sizeof(float));
    float *dweight_ref = copy_floats(dweight0, w_n), *dbias_ref = copy_floats(dbias0, OC);
    float *dweight_atol = abs_copy(dweight0, w_n), *dbias_atol = abs_copy(dbias0, OC);
    float *abs_dout = abs_copy(dout, out_n);
    cpu_matmul_backward(dinp_ref, dweight_ref, dbias_ref, dout, inp, weight, N, IC, OC);
    cpu_matmul_backward(dinp_atol, dweight_atol, dbias_atol, abs_dout, abs_inp, abs_weight, N, IC, OC);
    for (size_t i = 0; i < in_n; i++) dinp_atol[i] *= (gelu ? 1.2f : 1.0f) * sum_rtol;
    for (size_t i = 0; i < w_n; i++) dweight_atol[i] *= sum_rtol;
    for (int i = 0; i < OC; i++) dbias_atol[i] *= sum_rtol;
    if (gelu)  // the gradient of pre: (dout . weight) * the stored bf16(gelu'(pre))
        for (size_t i = 0; i < in_n; i++) dinp_ref[i] *= gelu_grad[i];
    void *first[4] = {NULL, NULL, NULL, NULL};
    for (int run = 0; run < 2; run++) {
        dev_poison(d_dinp, in_n * sizeof(bf16));
        upload(d_dweight, dweight0, w_n);
        upload(d_dbias, dbias0, OC);
        upload(d_gelu_dbias, pre_dbias0, IC);
        linear_backward(&ctx, &bwd_lin, d_dinp, d_dout, d_inp, gelu ? d_gelu_grad : NULL, gelu ? d_gelu_dbias : NULL, true, true, N, 0);
        cudaCheck(cudaDeviceSynchronize());
        if (run == 0) {
            first[0] = dev_snapshot(d_dinp, in_n * sizeof(bf16));
            first[1] = dev_snapshot(d_dweight, w_n * sizeof(float));
            first[2] = dev_snapshot(d_dbias, OC * sizeof(float));
            first[3] = dev_snapshot(d_gelu_dbias, IC * sizeof(float));
            continue;
        }
        CHECK(same_bits(first[0], d_dinp, in_n * sizeof(bf16)) && same_bits(first[1], d_dweight, w_n * sizeof(float)) &&
                  same_bits(first[2], d_dbias, OC * sizeof(float)) && same_bits(first[3], d_gelu_dbias, IC * sizeof(float)),
              "linear backward N=%d IC=%d OC=%d gelu=%d portable=%d: two runs differ", N, IC, OC, gelu, portable);
    }
    float *dinp = download(d_dinp, in_n), *dweight = download(d_dweight, w_n), *dbias = download(d_dbias, OC);
    CHECK(guard_intact(d_dinp, in_n * sizeof(bf16)) && guard_intact(d_dweight, w_n * sizeof(float)) &&
              guard_intact(d_dbias, OC * sizeof(float)) && guard_intact(d_gelu_dbias, IC * sizeof(float)),
          "linear backward N=%d IC=%d OC=%d: wrote past an output", N, IC, OC);
    check_close_each(gelu ? "linear dgrad + gelu backward" : "linear dgrad", dinp, dinp_ref, dinp_atol, in_n, gelu ? 2 * BF16_EPS : BF16_EPS);
    check_close_each("linear wgrad (accumulated)", dweight, dweight_ref, dweight_atol, w_n, 0.0f);
    check_close_each("linear bias gradient (accumulated)", dbias, dbias_ref, dbias_atol, OC, 0.0f);
    float *pre_dbias = download(d_gelu_dbias, IC);
    if (gelu) {  // pre_dbias0 + column sums of the BF16 dinp the GPU wrote
        check_column_sums("gelu backward's column sums (gelu_dbias)", pre_dbias, pre_dbias0, dinp, N, IC);
    } else {
        CHECK(memcmp(pre_dbias, pre_dbias0, IC * sizeof(float)) == 0, "gelu_dbias changed without gelu_grad");
    }
    // overwrite mode: dweight (cuBLASLt beta = 0), dbias and gelu_dbias written; dinp is written in both modes
    void *grad_bufs[3] = {d_dweight, d_dbias, d_gelu_dbias};
    const size_t grad_bytes[3] = {w_n * sizeof(float), OC * sizeof(float), IC * sizeof(float)};
    check_overwrite_matches_zeroed("linear backward", [&](bool accumulate) {
        linear_backward(&ctx, &bwd_lin, d_dinp, d_dout, d_inp, gelu ? d_gelu_grad : NULL, gelu ? d_gelu_dbias : NULL, true, accumulate, N, 0);
    }, grad_bufs, grad_bytes, gelu ? 3 : 2);
    CHECK(guard_intact(d_dweight, w_n * sizeof(float)) && guard_intact(d_dbias, OC * sizeof(float)) &&
              guard_intact(d_gelu_dbias, IC * sizeof(float)),
          "linear backward N=%d IC=%d OC=%d (overwrite): wrote past an output", N, IC, OC);

    for (int i = 0; i < 4; i++) cudaCheck(cudaFree(first[i]));
    void *dev[] = {d_inp, d_weight, d_bias, d_dout, d_gelu_grad, d_out, d_gelu_grad_out, d_dinp, d_dweight, d_dbias, d_gelu_dbias, d_bias_partials};
    for (size_t i = 0; i < sizeof(dev) / sizeof(dev[0]); i++) cudaCheck(cudaFree(dev[i]));
    matmul_context_free(&matmul);
    float *host[] = {inp, weight, bias, dout, pre, gelu_grad, ones, grad_ref, dweight0, dbias0, pre_dbias0, pre_ref, out_ref, atol, abs_inp, abs_weight, abs_bias,
                     dinp_ref, dinp_atol, dweight_ref, dbias_ref, dweight_atol, dbias_atol, abs_dout, out, dinp, dweight, dbias, pre_dbias};
    for (size_t i = 0; i < sizeof(host) / sizeof(host[0]); i++) free(host[i]);
}

// The one case where the Wgrad's overwrite mode may differ from accumulating into zeros: an element whose
// products are all -0.0f (here inp's column 0 is +0 and dout's column 0 negative in every row, so dweight[0, 0]
// sums N products -0.0f). Added to a zeroed +0.0f it is +0.0f; cuBLASLt with beta = 0 adds nothing and may
// leave -0.0f. Every element must have the same bits in both modes or be a zero in both; the test prints how
// many zeros differ in sign on this device (the norm and AdamW treat +0 and -0 alike: dev/RESULTS.md).
static void test_linear_wgrad_signed_zero(void) {
    const int N = 256, IC = 64, OC = 64;
    const size_t w_n = (size_t)OC * IC;
    float *inp = random_bf16_values((size_t)N * IC, 0.0f, 1.0f), *dout = random_bf16_values((size_t)N * OC, 0.0f, 1.0f);
    for (int n = 0; n < N; n++) {
        inp[(size_t)n * IC] = 0.0f;
        dout[(size_t)n * OC] = -0.5f - fabsf(dout[(size_t)n * OC]);
    }
    MatmulContext matmul;
    matmul_context_init(&matmul);
    const LinearContext ctx = linear_context(PRECISION_BF16, &matmul, NULL, 0, OC);  // no bias gradient here
    bf16 *d_inp = dev_from_host<bf16>(inp, (size_t)N * IC), *d_dout = dev_from_host<bf16>(dout, (size_t)N * OC);
    float *d_dweight = (float *)dev_alloc(w_n * sizeof(float));
    bf16 *d_weight = (bf16 *)dev_alloc(w_n * sizeof(bf16));  // not read: no Dgrad here
    Linear lin;
    linear_init(&lin, LINEAR_QKV, 0, IC, OC, LINEAR_EPILOGUE_NONE, false, d_weight, NULL, d_dweight, NULL);
    float *got[2];
    for (int accumulate = 1; accumulate >= 0; accumulate--) {  // into zeros, then over NaN
        cudaCheck(cudaMemset(d_dweight, accumulate ? 0 : POISON_BYTE, w_n * sizeof(float)));
        linear_backward(&ctx, &lin, NULL, d_dout, d_inp, NULL, NULL, false, accumulate, N, 0);
        cudaCheck(cudaDeviceSynchronize());
        got[accumulate] = download(d_dweight, w_n);
    }
    size_t differ = 0, signed_zeros = 0;
    for (size_t i = 0; i < w_n; i++) {
        if (memcmp(&got[0][i], &got[1][i], sizeof(float)) == 0) continue;
        differ++;
        signed_zeros += got[0][i] == 0.0f && got[1][i] == 0.0f;
    }
    printf("  dweight[0,0] (all products -0): %g accumulated into +0, %g written; %zu of %zu elements differ in the sign of a zero\n",
           got[1][0], got[0][0], signed_zeros, w_n);
    CHECK(got[1][0] == 0.0f && got[0][0] == 0.0f, "dweight[0,0] is not a zero");
    CHECK(differ == signed_zeros, "%zu elements differ in other than the sign of a zero", differ - signed_zeros);
    cudaCheck(cudaFree(d_inp)); cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_dweight)); cudaCheck(cudaFree(d_weight));
    matmul_context_free(&matmul);
    free(inp); free(dout); free(got[0]); free(got[1]);
}

static void test_linear(void) {
    linear_case(1, 8, 8, 0, 0);
    linear_case(257, 264, 776, 0, 0);
    for (int portable = 0; portable < 2; portable++) {  // the GELU pair: the Hopper kernel (on sm_90a), then other GPUs' path
        linear_case(37, 40, 24, 1, portable);      // N and the tile sizes share no factor
        linear_case(300, 776, 264, 1, portable);   // fcproj-like: IC > OC
        linear_case(1024, 768, 3072, 1, portable); // GPT-2 d12's fc/fcproj shapes, one micro-batch row block
    }
}

int main(void) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        SKIP_TEST(test_layers, "no CUDA device");
        return testing_finish();
    }
    rng_seed(&rng, 20261122);
    RUN_TEST(test_encoder);
    RUN_TEST(test_layernorm_forward);
    RUN_TEST(test_layernorm_backward);
    RUN_TEST(test_rmsnorm);
    RUN_TEST(test_rope_gqa);
    RUN_TEST(test_swiglu);
    RUN_TEST(test_gelu);
    RUN_TEST(test_classifier);
    RUN_TEST(test_classifier_bad_target);
    RUN_TEST(test_adamw);
    RUN_TEST(test_global_norm);
    RUN_TEST(test_linear);
    RUN_TEST(test_linear_wgrad_signed_zero);
    return testing_finish();
}
