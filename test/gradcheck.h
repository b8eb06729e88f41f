// Finite-difference gradient checks for the CPU reference tests (test_gpt2_cpu.c, test_llama_cpu.c).
//
// Method: every function under test is fp32, so the numeric gradient is a central difference
// (f(x+h) - f(x-h)) / (x+h - (x-h)) of a scalar objective summed in double, with the actual fp32 step
// in the denominator (h = FD_STEP). For a single layer the objective is sum(out * w) with a random
// upstream gradient w (the analytic side calls backward with dout = w); for a model it is the mean
// cross-entropy. Error of one entry:
//     |analytic - numeric| / max(|analytic|, |numeric|, FLOOR_FRAC * max_i |analytic_i|)
// i.e. relative, with an absolute floor at a fraction of the tensor's largest gradient (below it the
// fp32 rounding of the objective, ~1e-7 relative, divided by 2h dominates). The bounds are the
// tests' (LAYER_TOL, MODEL_TOL there). Besides single entries, the whole tensor is moved along its
// gradient direction (DIRECTION_STEP), where the change of the objective must match the analytic
// prediction to DIRECTION_TOL.
#ifndef TEST_GRADCHECK_H
#define TEST_GRADCHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/param_table.h"
#include "core/rng.h"
#include "core/utils.h"

#define FD_STEP 1e-2f
#define FLOOR_FRAC 1e-2
#define DIRECTION_TOL 1e-3
#define DIRECTION_STEP 3e-3

// One differentiable input of the function under test: its values and its analytic gradient.
typedef struct {
    const char *name;
    float *x;
    const float *grad;
    size_t n;
} GradTarget;

// The scalar objective in double, recomputed from the current inputs (runs the forward pass).
typedef double (*Objective)(void *ctx);

static float *random_array(Rng *rng, size_t n, float std) {
    float *x = (float *)malloc_check(n * sizeof(float));
    rng_fill_normal(rng, x, n, 0.0f, std);
    return x;
}

static float *zero_array(size_t n) { return (float *)calloc_check(n, sizeof(float)); }

static void random_tokens(Rng *rng, int *tokens, int n, int V) {
    for (int i = 0; i < n; i++) tokens[i] = (int)rng_below(rng, (uint64_t)V);
}

// One target per tensor of a model's parameter table (t has table->count entries): the tensor's values
// in params and its analytic gradient in grads, both laid out by the table.
static void param_table_targets(GradTarget *t, const ParamTable *table, float *params, const float *grads) {
    for (int i = 0; i < table->count; i++) {
        t[i].name = table->specs[i].name;
        t[i].x = params + table->specs[i].offset;
        t[i].grad = grads + table->specs[i].offset;
        t[i].n = table->specs[i].size;
    }
}

static double dot_double(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

// Checks the analytic gradient of each target against central differences, in two ways:
//  - entries: `samples` random entries (all when fewer), error |a - n| / max(|a|, |n|, floor) with
//    floor = FLOOR_FRAC * max_i |a_i|;
//  - direction: the whole tensor moved by +-DIRECTION_STEP along the unit vector g/|g|, where the change
//    of the objective must match sum_i g_i (x+_i - x-_i) (the actual fp32 steps) to DIRECTION_TOL
//    relative: the strongest signal, so systematic errors show far above the fp32 noise.
// Prints the worst errors per target; returns the worst entry error, or a value above every
// bound when a directional check fails.
static double check_gradients(const char *what, Objective f, void *ctx, GradTarget *targets, int ntargets, int samples, Rng *rng) {
    double worst_all = 0.0;
    for (int ti = 0; ti < ntargets; ti++) {
        GradTarget *t = &targets[ti];
        double gmax = 0.0, gsq = 0.0;
        for (size_t i = 0; i < t->n; i++) {
            gmax = fmax(gmax, fabs(t->grad[i]));
            gsq += (double)t->grad[i] * t->grad[i];
        }
        double floor = FLOOR_FRAC * gmax;
        double worst = 0.0;
        size_t worst_i = 0;
        double worst_a = 0.0, worst_num = 0.0;
        size_t count = (size_t)samples < t->n ? (size_t)samples : t->n;
        for (size_t s = 0; s < count; s++) {
            size_t i = count == t->n ? s : (size_t)rng_below(rng, t->n);
            float orig = t->x[i];
            float xp = orig + FD_STEP, xm = orig - FD_STEP;
            t->x[i] = xp;
            double fp = f(ctx);
            t->x[i] = xm;
            double fm = f(ctx);
            t->x[i] = orig;
            double numeric = (fp - fm) / ((double)xp - (double)xm);
            double analytic = t->grad[i];
            double denom = fmax(fmax(fabs(analytic), fabs(numeric)), floor);
            double err = denom > 0.0 ? fabs(analytic - numeric) / denom : 0.0;
            if (err > worst) {
                worst = err;
                worst_i = i;
                worst_a = analytic;
                worst_num = numeric;
            }
        }
        double dir_err = 0.0;
        if (gsq > 0.0) {
            float *orig = (float *)malloc_check(t->n * sizeof(float));
            float *xm = (float *)malloc_check(t->n * sizeof(float));
            memcpy(orig, t->x, t->n * sizeof(float));
            double inv_norm = 1.0 / sqrt(gsq), predicted = 0.0;
            for (size_t i = 0; i < t->n; i++) xm[i] = orig[i] - (float)(DIRECTION_STEP * t->grad[i] * inv_norm);
            for (size_t i = 0; i < t->n; i++) t->x[i] = orig[i] + (float)(DIRECTION_STEP * t->grad[i] * inv_norm);
            for (size_t i = 0; i < t->n; i++) predicted += (double)t->grad[i] * ((double)t->x[i] - (double)xm[i]);
            double fp = f(ctx);
            memcpy(t->x, xm, t->n * sizeof(float));
            double fm = f(ctx);
            memcpy(t->x, orig, t->n * sizeof(float));
            dir_err = fabs((fp - fm) - predicted) / fabs(predicted);
            free(orig);
            free(xm);
        }
        printf("  %-10s %-9s direction error %.1e; worst entry error %.1e over %zu (entry %zu: analytic %+.5e numeric %+.5e; max |g| %.2e)\n",
               what, t->name, dir_err, worst, count, worst_i, worst_a, worst_num, gmax);
        worst_all = fmax(worst_all, worst);
        if (dir_err > DIRECTION_TOL) worst_all = fmax(worst_all, 1.0 + dir_err);
    }
    return worst_all;
}

#endif // TEST_GRADCHECK_H
