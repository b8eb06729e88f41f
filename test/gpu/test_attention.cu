// GPU test of the causal flash attention kernels (kernels/attention.cuh) against the double-precision CPU
// reference (test/reference/attention_cpu.h): forward out and lse, backward dQ/dK/dV, on random inputs of
// several shapes (T = 1 and tails that are not a multiple of any tile, head sizes 64 and 128, several
// B*NH), plus sharply peaked softmaxes that exercise the online rescaling; and bit-identical results
// from repeated runs (the backward uses no atomics). The qkv bias gradient that the backward sums on the
// way (dbias += column sums of dqkv) is checked against the column sums of the GPU's own dqkv and of the
// reference dqkv, for accumulation (+=) and for overwriting (accumulate = 0: a second run, written over NaN,
// must give the bits of the first, accumulated into zeros); a run without it gives the same dqkv.
//
// Tolerances, with u = 2^-8 the unit roundoff of bf16:
//  - out: the kernel rounds P to bf16 before P*V (relative error <= u per term, so |error| <= u*max|V|)
//    and rounds out to bf16 (<= u*|out|), so |error| <= 2u * max(max|out|, max|V|); we allow relative
//    L2 error < 2.5u and max |error| <= 2u * max(max|ref|, max|V|). (Measured on an H100: relative L2
//    1.7e-3..2.0e-3, max |error| about 0.5u * max|V|.)
//  - lse: fp32 throughout (scores from exact bf16 products summed in fp32, ~HS * 2^-24 relative);
//    we allow |error| <= 1e-4 * (1 + |ref|).
//  - dQ, dK, dV: P and dS are rounded to bf16 before their products (<= u per term), delta comes from
//    the bf16 out (<= u*|out|), and the results are rounded to bf16; the terms of each sum have mixed
//    signs, so we bound the error against the largest entry: relative L2 error < 2.5u and
//    max |error| <= 4u * max|ref| + 1e-4 per tensor (measured: relative L2 2.5e-3..3.9e-3, max
//    |error| up to 1.8u * max|ref| in dK of the sharp-softmax cases). The 1e-4 covers the fp32 rounding
//    of dP - delta (~HS * 2^-24 * |dout||V|, both O(1) here) where the reference cancels to ~0 (at T = 1,
//    dS = 0).
//  - dbias (from zero) against the column sums S of the GPU's own dqkv (in double): the kernels add each
//    value through at most D = 16 (a lane's rows) + 2 (shuffles) + 4 (warps of a chunk) + ceil(rows/32)
//    (a finish lane's partial rows) + 32 (finish lanes) + 1 (the += itself) fp32 additions, so
//    |dbias - S| <= D * 2^-24 * sum|x| per column (the standard bound of recursive summation).
//    Against the reference column sums R: |dbias - R| <= sum|gpu - ref| over the column + that bound
//    (the K slot's R is ~0: softmax rows sum to 1, so the sums of dS over keys vanish).
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <vector>
#include "kernels/attention.cuh"
#include "test/reference/attention_cpu.h"
#include "test/testing.h"

static const double BF16_U = 1.0 / 256.0;

// xorshift64* generator with Box-Muller normals, so every run sees fresh but reproducible-by-seed inputs.
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double rng_uniform(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return ((rng_state * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}
static double rng_normal(void) {
    double u1 = rng_uniform(), u2 = rng_uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

// Fills a bf16 array with N(0, gain^2) values and its float copy with the same (rounded) values.
static void fill_normal(std::vector<bf16> &dst, std::vector<float> &as_float, double gain) {
    for (size_t i = 0; i < dst.size(); i++) {
        dst[i] = __float2bfloat16((float)(gain * rng_normal()));
        as_float[i] = __bfloat162float(dst[i]);
    }
}

// Error of a bf16 GPU tensor (gathered into floats) against its reference.
struct ErrorStats {
    double rel_l2, max_abs, max_ref;
    long nonfinite;
};
static ErrorStats compare(const std::vector<float> &got, const std::vector<float> &ref) {
    ErrorStats e = {0, 0, 0, 0};
    double num = 0, den = 0;
    for (size_t i = 0; i < got.size(); i++) {
        if (!isfinite(got[i])) { e.nonfinite++; continue; }
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
        if (fabs(d) > e.max_abs) e.max_abs = fabs(d);
        if (fabs(ref[i]) > e.max_ref) e.max_ref = fabs(ref[i]);
    }
    e.rel_l2 = den > 0 ? sqrt(num / den) : sqrt(num);
    return e;
}

// Gathers one of the Q, K, V slots (0, 1, 2) of a [B, T, 3, NH, HS] tensor as floats.
static std::vector<float> qkv_slot(const float *qkv, int B, int T, int NH, int HS, int slot) {
    std::vector<float> r((size_t)B * T * NH * HS);
    for (long bt = 0; bt < (long)B * T; bt++)
        memcpy(&r[bt * NH * HS], qkv + (bt * 3 + slot) * NH * HS, (size_t)NH * HS * sizeof(float));
    return r;
}

static std::vector<float> to_float(const std::vector<bf16> &x) {
    std::vector<float> r(x.size());
    for (size_t i = 0; i < x.size(); i++) r[i] = __bfloat162float(x[i]);
    return r;
}

struct AttentionCase {
    int B, T, NH, HS;
    double q_gain;   // standard deviation of Q; > 1 makes the softmax sharply peaked
};
static AttentionCase current;

static void test_attention_case(void) {
    const int B = current.B, T = current.T, NH = current.NH, HS = current.HS;
    const size_t n_qkv = (size_t)B * T * 3 * NH * HS, n_out = (size_t)B * T * NH * HS, n_lse = (size_t)B * NH * T;
    std::vector<bf16> h_qkv(n_qkv), h_dout(n_out);
    std::vector<float> f_qkv(n_qkv), f_dout(n_out);
    fill_normal(h_qkv, f_qkv, 1.0);
    fill_normal(h_dout, f_dout, 1.0);
    if (current.q_gain != 1.0) {
        for (long bt = 0; bt < (long)B * T; bt++) {
            for (int c = 0; c < NH * HS; c++) {
                size_t i = (size_t)bt * 3 * NH * HS + c;
                h_qkv[i] = __float2bfloat16((float)(current.q_gain * rng_normal()));
                f_qkv[i] = __bfloat162float(h_qkv[i]);
            }
        }
    }

    bf16 *d_qkv, *d_out, *d_dout, *d_dqkv, *d_dqkv2;
    float *d_lse, *d_delta, *d_partials, *d_dbias[3];
    const int n_bias = 3 * NH * HS;
    cudaCheck(cudaMalloc(&d_partials, attention_backward_bias_scratch_floats(B, T, NH, HS) * sizeof(float)));
    for (int i = 0; i < 3; i++) cudaCheck(cudaMalloc(&d_dbias[i], n_bias * sizeof(float)));
    cudaCheck(cudaMalloc(&d_qkv, n_qkv * sizeof(bf16)));
    cudaCheck(cudaMalloc(&d_dqkv, n_qkv * sizeof(bf16)));
    cudaCheck(cudaMalloc(&d_dqkv2, n_qkv * sizeof(bf16)));
    cudaCheck(cudaMalloc(&d_out, n_out * sizeof(bf16)));
    cudaCheck(cudaMalloc(&d_dout, n_out * sizeof(bf16)));
    cudaCheck(cudaMalloc(&d_lse, n_lse * sizeof(float)));
    cudaCheck(cudaMalloc(&d_delta, n_lse * sizeof(float)));
    cudaCheck(cudaMemcpy(d_qkv, h_qkv.data(), n_qkv * sizeof(bf16), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(d_dout, h_dout.data(), n_out * sizeof(bf16), cudaMemcpyHostToDevice));
    // poison every output (0xFF bytes are NaN in bf16 and fp32) so an unwritten element fails the check
    cudaCheck(cudaMemset(d_out, 0xFF, n_out * sizeof(bf16)));
    cudaCheck(cudaMemset(d_lse, 0xFF, n_lse * sizeof(float)));
    cudaCheck(cudaMemset(d_dqkv, 0xFF, n_qkv * sizeof(bf16)));
    cudaCheck(cudaMemset(d_dqkv2, 0xFF, n_qkv * sizeof(bf16)));

    // dbias 0 starts from zero (accumulated into), dbias 1 from NaN (written over: the same bits as dbias 0,
    // also from a second run), dbias 2 from random values (the sum is added)
    std::vector<float> h_dbias_init(n_bias);
    for (int i = 0; i < n_bias; i++) h_dbias_init[i] = (float)rng_normal();
    cudaCheck(cudaMemset(d_dbias[0], 0, n_bias * sizeof(float)));
    cudaCheck(cudaMemset(d_dbias[1], 0xFF, n_bias * sizeof(float)));
    cudaCheck(cudaMemcpy(d_dbias[2], h_dbias_init.data(), n_bias * sizeof(float), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemset(d_partials, 0xFF, attention_backward_bias_scratch_floats(B, T, NH, HS) * sizeof(float)));

    attention_forward(d_out, d_lse, d_qkv, B, T, NH, HS, 0);
    attention_backward(d_dqkv, d_dbias[0], d_delta, d_partials, d_dout, d_qkv, d_out, d_lse, B, T, NH, HS, true, 0);
    attention_backward(d_dqkv2, NULL, d_delta, NULL, d_dout, d_qkv, d_out, d_lse, B, T, NH, HS, true, 0);
    cudaCheck(cudaDeviceSynchronize());
    std::vector<bf16> h_dqkv_nobias(n_qkv);
    cudaCheck(cudaMemcpy(h_dqkv_nobias.data(), d_dqkv2, n_qkv * sizeof(bf16), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemset(d_dqkv2, 0xFF, n_qkv * sizeof(bf16)));
    attention_backward(d_dqkv2, d_dbias[1], d_delta, d_partials, d_dout, d_qkv, d_out, d_lse, B, T, NH, HS, false, 0);
    attention_backward(d_dqkv2, d_dbias[2], d_delta, d_partials, d_dout, d_qkv, d_out, d_lse, B, T, NH, HS, true, 0);
    cudaCheck(cudaDeviceSynchronize());

    std::vector<bf16> h_out(n_out), h_dqkv(n_qkv), h_dqkv2(n_qkv);
    std::vector<float> h_lse(n_lse);
    cudaCheck(cudaMemcpy(h_out.data(), d_out, n_out * sizeof(bf16), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(h_lse.data(), d_lse, n_lse * sizeof(float), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(h_dqkv.data(), d_dqkv, n_qkv * sizeof(bf16), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(h_dqkv2.data(), d_dqkv2, n_qkv * sizeof(bf16), cudaMemcpyDeviceToHost));

    std::vector<float> r_out(n_out), r_lse(n_lse), r_dqkv(n_qkv);
    attention_forward_cpu(r_out.data(), r_lse.data(), f_qkv.data(), B, T, NH, HS);
    attention_backward_cpu(r_dqkv.data(), f_dout.data(), f_qkv.data(), B, T, NH, HS);

    // forward
    ErrorStats eo = compare(to_float(h_out), r_out);
    double max_v = 0;
    for (float v : qkv_slot(f_qkv.data(), B, T, NH, HS, 2)) max_v = fmax(max_v, fabs(v));
    double out_bound = 2 * BF16_U * fmax(eo.max_ref, max_v);
    printf("  out: rel_l2 %.2e  max_abs %.2e (bound %.2e)\n", eo.rel_l2, eo.max_abs, out_bound);
    CHECK(eo.nonfinite == 0, "%ld non-finite (unwritten?) outputs", eo.nonfinite);
    CHECK(eo.rel_l2 < 2.5 * BF16_U, "out relative L2 error %.3e", eo.rel_l2);
    CHECK(eo.max_abs <= out_bound, "out max abs error %.3e > %.3e", eo.max_abs, out_bound);
    long bad_lse = 0;
    double lse_err = 0;
    for (size_t i = 0; i < n_lse; i++) {
        double d = fabs((double)h_lse[i] - r_lse[i]);
        if (!(d <= 1e-4 * (1 + fabs(r_lse[i])))) bad_lse++;
        if (d > lse_err || !isfinite(d)) lse_err = d;
    }
    printf("  lse: max_abs %.2e\n", lse_err);
    CHECK(bad_lse == 0, "%ld lse values off by more than 1e-4*(1+|ref|) (max error %.3e)", bad_lse, lse_err);

    // backward
    std::vector<float> g_dqkv = to_float(h_dqkv);
    const char *names[3] = {"dq", "dk", "dv"};
    for (int slot = 0; slot < 3; slot++) {
        ErrorStats e = compare(qkv_slot(g_dqkv.data(), B, T, NH, HS, slot), qkv_slot(r_dqkv.data(), B, T, NH, HS, slot));
        double bound = 4 * BF16_U * e.max_ref + 1e-4;
        printf("  %s: rel_l2 %.2e  max_abs %.2e (bound %.2e)\n", names[slot], e.rel_l2, e.max_abs, bound);
        CHECK(e.nonfinite == 0, "%s: %ld non-finite (unwritten?) values", names[slot], e.nonfinite);
        CHECK(e.rel_l2 < 2.5 * BF16_U, "%s relative L2 error %.3e", names[slot], e.rel_l2);
        CHECK(e.max_abs <= bound, "%s max abs error %.3e > %.3e", names[slot], e.max_abs, bound);
    }
    CHECK(memcmp(h_dqkv.data(), h_dqkv2.data(), n_qkv * sizeof(bf16)) == 0, "two backward runs differ");
    CHECK(memcmp(h_dqkv.data(), h_dqkv_nobias.data(), n_qkv * sizeof(bf16)) == 0, "the backward without dbias gives another dqkv");

    // qkv bias gradient
    std::vector<float> h_dbias[3];
    for (int i = 0; i < 3; i++) {
        h_dbias[i].resize(n_bias);
        cudaCheck(cudaMemcpy(h_dbias[i].data(), d_dbias[i], n_bias * sizeof(float), cudaMemcpyDeviceToHost));
    }
    const long N = (long)B * T, partial_rows = attention_bias_partial_rows(B, T);
    const double depth = 16 + 2 + 4 + ceil_div(partial_rows, 32L) + 32 + 1;
    long bad_own = 0, bad_ref = 0, nonfinite = 0, unequal_rerun = 0, unequal_add = 0;
    double worst_own = 0, worst_ref = 0, ref_l2 = 0, err_l2 = 0;   // worst: error / bound
    for (int c = 0; c < n_bias; c++) {
        double own = 0, own_abs = 0, ref = 0, diff_abs = 0;
        for (long n = 0; n < N; n++) {
            const double g = g_dqkv[n * n_bias + c], r = r_dqkv[n * n_bias + c];
            own += g;
            own_abs += fabs(g);
            ref += r;
            diff_abs += fabs(g - r);
        }
        const double got = h_dbias[0][c], fp32_bound = depth * ldexp(1.0, -24) * own_abs;
        if (!isfinite(got)) nonfinite++;
        if (!(fabs(got - own) <= fp32_bound)) bad_own++;
        if (!(fabs(got - ref) <= diff_abs + fp32_bound)) bad_ref++;
        worst_own = fmax(worst_own, fabs(got - own) / fmax(fp32_bound, 1e-30));
        worst_ref = fmax(worst_ref, fabs(got - ref) / (diff_abs + fp32_bound));
        ref_l2 += ref * ref;
        err_l2 += (got - ref) * (got - ref);
        if (memcmp(&h_dbias[0][c], &h_dbias[1][c], sizeof(float)) != 0) unequal_rerun++;
        const float added = h_dbias_init[c] + h_dbias[0][c];
        if (memcmp(&added, &h_dbias[2][c], sizeof(float)) != 0) unequal_add++;
    }
    printf("  dbias: vs own column sums %.2f of the fp32 bound, vs reference %.2f of its bound (rel_l2 %.2e)\n", worst_own, worst_ref,
           sqrt(err_l2 / fmax(ref_l2, 1e-300)));
    CHECK(nonfinite == 0, "dbias: %ld non-finite values", nonfinite);
    CHECK(bad_own == 0, "dbias: %ld of %d columns differ from the column sums of the GPU's dqkv by more than fp32 reassociation", bad_own, n_bias);
    CHECK(bad_ref == 0, "dbias: %ld of %d columns differ from the reference column sums by more than the dqkv error", bad_ref, n_bias);
    CHECK(unequal_rerun == 0, "dbias: %ld columns differ between a run into zeros and one written over NaN", unequal_rerun);
    CHECK(unequal_add == 0, "dbias: %ld columns are not init + sum (not accumulated?)", unequal_add);

    cudaCheck(cudaFree(d_qkv));
    cudaCheck(cudaFree(d_dqkv));
    cudaCheck(cudaFree(d_dqkv2));
    cudaCheck(cudaFree(d_out));
    cudaCheck(cudaFree(d_dout));
    cudaCheck(cudaFree(d_lse));
    cudaCheck(cudaFree(d_delta));
    cudaCheck(cudaFree(d_partials));
    for (int i = 0; i < 3; i++) cudaCheck(cudaFree(d_dbias[i]));
}

int main(void) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        SKIP_TEST(test_attention_case, "no CUDA device");
        return testing_finish();
    }
    const AttentionCase cases[] = {
        // B, T, NH, HS, q_gain
        {1, 1, 1, 64, 1.0},    {2, 37, 3, 64, 1.0},   {1, 128, 2, 128, 1.0}, {2, 257, 2, 64, 1.0},
        {1, 257, 3, 128, 1.0}, {1, 1000, 2, 64, 1.0}, {2, 1000, 1, 128, 1.0}, {3, 1, 2, 128, 1.0},
        {2, 200, 2, 64, 4.0},  {1, 300, 2, 128, 4.0}, {3, 64, 5, 64, 2.0},    {1, 16, 1, 128, 1.0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        current = cases[i];
        printf("case B=%d T=%d NH=%d HS=%d q_gain=%.1f\n", current.B, current.T, current.NH, current.HS, current.q_gain);
        RUN_TEST(test_attention_case);
    }
    return testing_finish();
}
