// Naive causal multi-head attention, forward and backward, on the CPU in double precision: the reference
// that the GPU attention kernels (kernels/attention.cuh) are checked against. Same layouts as there:
//   qkv [B, T, 3, NH, HS], out [B, T, NH, HS], lse [B, NH, T], dout [B, T, NH, HS], dqkv [B, T, 3, NH, HS].
// Inputs are float (the tests pass bf16 values widened to float); all sums run in double.
// Plain C, also compiled as C++ by nvcc.
#ifndef TEST_REFERENCE_ATTENTION_CPU_H
#define TEST_REFERENCE_ATTENTION_CPU_H

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/utils.h"

// Scaled scores of query i against keys 0..i of one (b, h) into s[0..i], and their log-sum-exp.
static inline double attention_cpu_scores(double *s, const float *q, const float *kbase, long row_stride, int i, int HS) {
    double scale = 1.0 / sqrt((double)HS), mx = -INFINITY, sum = 0.0;
    for (int j = 0; j <= i; j++) {
        const float *k = kbase + (long)j * row_stride;
        double dot = 0.0;
        for (int c = 0; c < HS; c++) dot += (double)q[c] * (double)k[c];
        s[j] = dot * scale;
        if (s[j] > mx) mx = s[j];
    }
    for (int j = 0; j <= i; j++) sum += exp(s[j] - mx);
    return mx + log(sum);
}

// out = softmax(Q K^T / sqrt(HS), causal) V per head; lse = the natural log-sum-exp of each query's scores.
static inline void attention_forward_cpu(float *out, float *lse, const float *qkv, int B, int T, int NH, int HS) {
    const long row_stride = 3L * NH * HS;
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            double *s = (double *)malloc_check((size_t)T * sizeof(double));
            double *acc = (double *)malloc_check((size_t)HS * sizeof(double));
            const float *qb = qkv + (long)b * T * row_stride + (long)h * HS;
            const float *kb = qb + (long)NH * HS, *vb = qb + 2L * NH * HS;
            for (int i = 0; i < T; i++) {
                double L = attention_cpu_scores(s, qb + (long)i * row_stride, kb, row_stride, i, HS);
                for (int c = 0; c < HS; c++) acc[c] = 0.0;
                for (int j = 0; j <= i; j++) {
                    double p = exp(s[j] - L);
                    const float *v = vb + (long)j * row_stride;
                    for (int c = 0; c < HS; c++) acc[c] += p * (double)v[c];
                }
                float *o = out + ((long)(b * T + i) * NH + h) * HS;
                for (int c = 0; c < HS; c++) o[c] = (float)acc[c];
                lse[((long)b * NH + h) * T + i] = (float)L;
            }
            free(s);
            free(acc);
        }
    }
}

// dqkv (overwritten) from dout for the forward above: with P = softmax, dV = P^T dO, dP = dO V^T,
// dS = P (dP - rowsum(dO * O)), dQ = dS K / sqrt(HS), dK = dS^T Q / sqrt(HS).
static inline void attention_backward_cpu(float *dqkv, const float *dout, const float *qkv, int B, int T, int NH, int HS) {
    const long row_stride = 3L * NH * HS;
    const double scale = 1.0 / sqrt((double)HS);
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            double *s = (double *)malloc_check((size_t)T * sizeof(double));
            double *dp = (double *)malloc_check((size_t)T * sizeof(double));
            double *dq = (double *)malloc_check((size_t)HS * sizeof(double));
            double *dk = (double *)calloc_check((size_t)T * HS, sizeof(double));
            double *dv = (double *)calloc_check((size_t)T * HS, sizeof(double));
            const float *qb = qkv + (long)b * T * row_stride + (long)h * HS;
            const float *kb = qb + (long)NH * HS, *vb = qb + 2L * NH * HS;
            for (int i = 0; i < T; i++) {
                const float *q = qb + (long)i * row_stride;
                const float *go = dout + ((long)(b * T + i) * NH + h) * HS;
                double L = attention_cpu_scores(s, q, kb, row_stride, i, HS);
                double D = 0.0;   // rowsum(dO * O) = sum_j P_ij dP_ij
                for (int j = 0; j <= i; j++) {
                    s[j] = exp(s[j] - L);   // now P_ij
                    const float *v = vb + (long)j * row_stride;
                    double dot = 0.0;
                    for (int c = 0; c < HS; c++) dot += (double)go[c] * (double)v[c];
                    dp[j] = dot;
                    D += s[j] * dot;
                }
                for (int c = 0; c < HS; c++) dq[c] = 0.0;
                for (int j = 0; j <= i; j++) {
                    double ds = s[j] * (dp[j] - D) * scale;
                    const float *k = kb + (long)j * row_stride;
                    for (int c = 0; c < HS; c++) {
                        dq[c] += ds * (double)k[c];
                        dk[(long)j * HS + c] += ds * (double)q[c];
                        dv[(long)j * HS + c] += s[j] * (double)go[c];
                    }
                }
                float *dqo = dqkv + (long)b * T * row_stride + (long)i * row_stride + (long)h * HS;
                for (int c = 0; c < HS; c++) dqo[c] = (float)dq[c];
            }
            for (int j = 0; j < T; j++) {
                float *dko = dqkv + (long)b * T * row_stride + (long)j * row_stride + (long)(NH + h) * HS;
                float *dvo = dko + (long)NH * HS;
                for (int c = 0; c < HS; c++) {
                    dko[c] = (float)dk[(long)j * HS + c];
                    dvo[c] = (float)dv[(long)j * HS + c];
                }
            }
            free(s);
            free(dp);
            free(dq);
            free(dk);
            free(dv);
        }
    }
}

#endif // TEST_REFERENCE_ATTENTION_CPU_H
