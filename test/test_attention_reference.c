// CPU test of the attention reference (test/reference/attention_cpu.h) that the GPU attention test trusts:
// the backward equals central finite differences of the forward, rows of softmax weights sum to one
// (exp(score - lse) reproduces out as a weighted mean of V), and the mask is causal (changing a later
// token's K and V leaves earlier outputs unchanged, bit for bit).
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "test/reference/attention_cpu.h"
#include "test/testing.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static double uniform01(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return ((rng * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}
static float normal(void) {
    double u1 = uniform01(), u2 = uniform01();
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

enum { B = 2, T = 7, NH = 2, HS = 8 };
#define N_QKV (B * T * 3 * NH * HS)
#define N_OUT (B * T * NH * HS)

// loss = sum(dout * out) in double, the scalar whose gradient the backward returns.
static double loss(const float *qkv, const float *dout) {
    static float out[N_OUT], lse[B * NH * T];
    attention_forward_cpu(out, lse, qkv, B, T, NH, HS);
    double l = 0;
    for (int i = 0; i < N_OUT; i++) l += (double)dout[i] * out[i];
    return l;
}

// Every entry of dqkv against a central difference with step h = 1e-2: truncation error ~h^2 * f''' and
// the float rounding of out (~6e-8 * sum|dout*out| / h) stay near 1e-5 for these O(1) inputs; we allow 2e-4.
static void test_backward_matches_finite_differences(void) {
    static float qkv[N_QKV], dout[N_OUT], dqkv[N_QKV];
    for (int i = 0; i < N_QKV; i++) qkv[i] = normal();
    for (int i = 0; i < N_OUT; i++) dout[i] = normal();
    attention_backward_cpu(dqkv, dout, qkv, B, T, NH, HS);
    const float h = 1e-2f;
    double max_err = 0, max_grad = 0;
    for (int i = 0; i < N_QKV; i++) {
        float x = qkv[i];
        qkv[i] = x + h;
        double lp = loss(qkv, dout);
        qkv[i] = x - h;
        double lm = loss(qkv, dout);
        qkv[i] = x;
        double fd = (lp - lm) / (2.0 * h);
        double err = fabs(fd - dqkv[i]);
        if (!(err <= max_err)) max_err = err;
        if (fabs(fd) > max_grad) max_grad = fabs(fd);
    }
    printf("  max |fd - grad| %.2e (max |grad| %.2e)\n", max_err, max_grad);
    CHECK(max_grad > 0.1, "gradients unexpectedly small: %.3e", max_grad);
    CHECK(max_err < 2e-4, "backward differs from finite differences by %.3e", max_err);
}

// out[i] = sum_j exp(score_ij - lse_i) v_j over j <= i, recomputed here in double from lse alone.
static void test_lse_normalizes_the_weights(void) {
    static float qkv[N_QKV], out[N_OUT], lse[B * NH * T];
    for (int i = 0; i < N_QKV; i++) qkv[i] = 3.0f * normal();   // sharp softmax
    attention_forward_cpu(out, lse, qkv, B, T, NH, HS);
    double max_err = 0;
    const long stride = 3L * NH * HS;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < T; i++) {
                const float *q = qkv + (long)(b * T + i) * stride + h * HS;
                double wsum = 0, acc[HS] = {0};
                for (int j = 0; j <= i; j++) {
                    const float *k = qkv + (long)(b * T + j) * stride + (NH + h) * HS, *v = k + NH * HS;
                    double dot = 0;
                    for (int c = 0; c < HS; c++) dot += (double)q[c] * k[c];
                    double w = exp(dot / sqrt((double)HS) - lse[(b * NH + h) * T + i]);
                    wsum += w;
                    for (int c = 0; c < HS; c++) acc[c] += w * v[c];
                }
                max_err = fmax(max_err, fabs(wsum - 1.0));   // lse is stored as float: ~1e-7 relative
                for (int c = 0; c < HS; c++) max_err = fmax(max_err, fabs(acc[c] - out[((b * T + i) * NH + h) * HS + c]));
            }
    printf("  max error %.2e\n", max_err);
    CHECK(max_err < 1e-5, "softmax weights from lse do not reproduce out: %.3e", max_err);
}

// Changing K and V of the last token changes only the last query's output.
static void test_mask_is_causal(void) {
    static float qkv[N_QKV], out1[N_OUT], out2[N_OUT], lse[B * NH * T];
    for (int i = 0; i < N_QKV; i++) qkv[i] = normal();
    attention_forward_cpu(out1, lse, qkv, B, T, NH, HS);
    for (int b = 0; b < B; b++) {
        float *kv_last = qkv + ((long)(b * T + T - 1) * 3 + 1) * NH * HS;
        for (int c = 0; c < 2 * NH * HS; c++) kv_last[c] += 1.0f + normal();
    }
    attention_forward_cpu(out2, lse, qkv, B, T, NH, HS);
    int earlier_changed = 0, last_changed = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const size_t off = (size_t)(b * T + t) * NH * HS;
            int same = memcmp(out1 + off, out2 + off, NH * HS * sizeof(float)) == 0;
            if (t < T - 1 && !same) earlier_changed++;
            if (t == T - 1 && !same) last_changed++;
        }
    CHECK(earlier_changed == 0, "%d earlier rows changed", earlier_changed);
    CHECK(last_changed == B, "only %d of %d last rows changed", last_changed, B);
}

int main(void) {
    RUN_TEST(test_backward_matches_finite_differences);
    RUN_TEST(test_lse_normalizes_the_weights);
    RUN_TEST(test_mask_is_causal);
    return testing_finish();
}
