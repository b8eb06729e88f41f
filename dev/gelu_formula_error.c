/*
CPU check of the two FP32 forms of GELU (tanh approximation) and its derivative that kernels/gelu.cuh has used, on
every finite BF16 x with |x| <= LIMIT (default 30), against double-precision tanh formulas:
  exp(+2u) form (main up to 2cb4a76): t = min(2u log2e, 64), e = 2^t, s = 1/(e + 1): gelu = x e s,
                                      gelu' = e s + gelu s (2k + 6k 0.044715 x^2)
  sigmoid form (kernels/gelu.cuh):    e = 2^(-2u log2e), s = 1/(1 + e): gelu = x s, q = fma(-gelu, s, gelu),
                                      gelu' = fma(q, 2k + 6k 0.044715 x^2, s)
The GPU takes 2^t from ex2.approx (relative error ~2^-22) and 1/y from rcp.approx (1 ulp): each form is evaluated
with exp2f and 1/y scaled by 1, 1 +- 1.5e-7 and 1, 1 +- 6e-8 (but 1/1 = 1 exactly: the sigmoid form needs
rcp.approx(1.0) = 1.0 for x > 6.5, which test_gelu's std-20 case checks), and the worst error is printed as a fraction of
test_gelu's bound 2^-8 |ref| + 1e-6 (test/gpu/test_layers.cu), with how many BF16-rounded outputs of the sigmoid
form differ from the exp(+2u) form's (unscaled).
  gcc -O2 -I. -o build/gelu_formula_error dev/gelu_formula_error.c -lm && ./build/gelu_formula_error [LIMIT]
*/
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/formats.h"

#define K 0.7978845608028654f  // sqrt(2/pi)
#define LOG2E 1.4426950408889634f

// x rounded to BF16, as a value (so -0 and +0 compare equal)
static float bf16_value(float x) { return bf16_bits_to_float(bf16_bits_from_float_rne(x)); }

static void gelu_exp_form(float x, float ex2_scale, float rcp_scale, float *gelu, float *grad) {
    const float x2 = x * x;
    const float t = fminf(x * fmaf(x2, 2.0f * 0.044715f * K * LOG2E, 2.0f * K * LOG2E), 64.0f);
    const float e = exp2f(t) * ex2_scale, s = (1.0f / (e + 1.0f)) * rcp_scale, es = e * s;
    *gelu = x * es;
    *grad = fmaf(*gelu * s, fmaf(x2, 6.0f * 0.044715f * K, 2.0f * K), es);
}

static void gelu_sigmoid_form(float x, float ex2_scale, float rcp_scale, float *gelu, float *grad) {
    const float x2 = x * x;
    const float t = x * fmaf(x2, -2.0f * 0.044715f * K * LOG2E, -2.0f * K * LOG2E);
    const float e = exp2f(t) * ex2_scale, s = e + 1.0f == 1.0f ? 1.0f : (1.0f / (e + 1.0f)) * rcp_scale;
    *gelu = x * s;
    const float q = fmaf(-*gelu, s, *gelu);
    *grad = fmaf(q, fmaf(x2, 6.0f * 0.044715f * K, 2.0f * K), s);
}

static double gelu_ref(double x) { return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
static double gelu_grad_ref(double x) {
    const double k = 0.7978845608028654, th = tanh(k * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * k * (1.0 + 3.0 * 0.044715 * x * x);
}

int main(int argc, char **argv) {
    const double limit = argc > 1 ? atof(argv[1]) : 30.0;
    const float ex2_scales[3] = {1.0f, 1.0f + 1.5e-7f, 1.0f - 1.5e-7f}, rcp_scales[3] = {1.0f, 1.0f + 6e-8f, 1.0f - 6e-8f};
    for (int form = 0; form < 2; form++) {
        double worst_gelu = 0.0, worst_grad = 0.0;
        long inputs = 0, nonfinite = 0, differ_gelu = 0, differ_grad = 0;
        for (uint32_t bits = 0; bits < 65536; bits++) {
            const uint32_t w = bits << 16;
            float x;
            memcpy(&x, &w, 4);
            if (!isfinite(x) || fabs(x) > limit) continue;
            inputs++;
            const double g_ref = gelu_ref(x), d_ref = gelu_grad_ref(x);
            for (int a = 0; a < 3; a++)
                for (int b = 0; b < 3; b++) {
                    float g, d;
                    if (form == 0) gelu_exp_form(x, ex2_scales[a], rcp_scales[b], &g, &d);
                    else gelu_sigmoid_form(x, ex2_scales[a], rcp_scales[b], &g, &d);
                    if (!isfinite(g) || !isfinite(d)) {
                        nonfinite++;
                        continue;
                    }
                    const double eg = fabs(g - g_ref) / (ldexp(fabs(g_ref), -8) + 1e-6);
                    const double ed = fabs(d - d_ref) / (ldexp(fabs(d_ref), -8) + 1e-6);
                    if (eg > worst_gelu) worst_gelu = eg;
                    if (ed > worst_grad) worst_grad = ed;
                    if (form == 1 && a == 0 && b == 0) {
                        float g0, d0;
                        gelu_exp_form(x, 1.0f, 1.0f, &g0, &d0);
                        differ_gelu += bf16_value(g) != bf16_value(g0);
                        differ_grad += bf16_value(d) != bf16_value(d0);
                    }
                }
        }
        printf("%-14s %ld inputs |x| <= %g: worst error / bound: gelu %.3g, gelu' %.3g; non-finite %ld", form ? "sigmoid form" : "exp(+2u) form",
               inputs, limit, worst_gelu, worst_grad, nonfinite);
        if (form == 1) printf("; BF16 outputs differing from the exp(+2u) form: gelu %ld, gelu' %ld", differ_gelu, differ_grad);
        printf("\n");
    }
    return 0;
}
