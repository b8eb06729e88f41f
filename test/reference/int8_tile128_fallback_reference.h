// CPU reference of the int8fb quantizer (layout and element rules in kernels/int8_tile128_fallback.h):
// quantize, dequantize, host allocation. Used by test/test_int8_fallback.c and the GPU test, which
// checks the GPU quantizer bit for bit against it. Plain C, also compiled as C++ by nvcc.
#ifndef TEST_REFERENCE_INT8_TILE128_FALLBACK_REFERENCE_H
#define TEST_REFERENCE_INT8_TILE128_FALLBACK_REFERENCE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "core/utils.h"
#include "kernels/int8_tile128_fallback.h"

// CPU reference quantizer of x[rows][cols] into op (host arrays sized as documented above; q2 may be
// NULL when theta is INT8FB_NO_FALLBACK). Returns the number of fallback tiles, or -1 with the reason in
// err for a bad shape.
static inline int int8fb_quantize_reference(const float *x, int rows, int cols, Int8fbGranularity granularity,
                                            float theta, Int8fbOperand *op, char *err, size_t err_size) {
    if (int8fb_check_shape(rows, cols, err, err_size) != 0) return -1;
    if (op->q2 == NULL && !isinf(theta)) return set_error(err, err_size, "int8fb: q2 is NULL but theta=%g allows fallback", theta);
    op->rows = rows; op->cols = cols; op->granularity = granularity;
    int row_tiles = int8fb_row_tiles(rows), k_tiles = int8fb_k_tiles(cols);
    int rows_pad = row_tiles * INT8FB_TILE_SIZE;
    int num_fallback = 0;
    for (int tr = 0; tr < row_tiles; tr++) {
        for (int kt = 0; kt < k_tiles; kt++) {
            int r0 = tr * INT8FB_TILE_SIZE, r1 = r0 + INT8FB_TILE_SIZE < rows ? r0 + INT8FB_TILE_SIZE : rows;
            int c0 = kt * INT8FB_TILE_SIZE, c1 = c0 + INT8FB_TILE_SIZE < cols ? c0 + INT8FB_TILE_SIZE : cols;
            float tile_scale = 0.0f;
            if (granularity == INT8FB_PER_TILE) {
                float amax = 0.0f;
                for (int r = r0; r < r1; r++)
                    for (int c = c0; c < c1; c++) amax = fmaxf(amax, fabsf(x[(size_t)r * cols + c]));
                tile_scale = int8fb_scale(amax);
                op->scale[(size_t)tr * k_tiles + kt] = tile_scale;
            } else {
                for (int r = r1; r < r0 + INT8FB_TILE_SIZE; r++) op->scale[(size_t)kt * rows_pad + r] = 0.0f;
            }
            double err2 = 0.0, norm2 = 0.0;
            for (int r = r0; r < r1; r++) {
                const float *xr = x + (size_t)r * cols;
                float s1 = tile_scale;
                if (granularity == INT8FB_ROW_CHUNK) {
                    float amax = 0.0f;
                    for (int c = c0; c < c1; c++) amax = fmaxf(amax, fabsf(xr[c]));
                    s1 = int8fb_scale(amax);
                    op->scale[(size_t)kt * rows_pad + r] = s1;
                }
                for (int c = c0; c < c1; c++) {
                    int8_t q = int8fb_quantize_value(xr[c], s1);
                    op->q1[(size_t)r * cols + c] = q;
                    double e = (double)int8fb_residual(xr[c], s1, q);
                    err2 += e * e;
                    norm2 += (double)xr[c] * (double)xr[c];
                }
            }
            int fb = int8fb_falls_back(err2, norm2, theta);
            op->fallback[(size_t)tr * k_tiles + kt] = (uint8_t)fb;
            num_fallback += fb;
            if (!fb) continue;
            for (int r = r0; r < r1; r++) {
                float s1 = granularity == INT8FB_PER_TILE ? tile_scale : op->scale[(size_t)kt * rows_pad + r];
                float s2 = int8fb_residual_scale(s1);
                for (int c = c0; c < c1; c++) {
                    size_t i = (size_t)r * cols + c;
                    op->q2[i] = int8fb_quantize_value(int8fb_residual(x[i], s1, op->q1[i]), s2);
                }
            }
        }
    }
    return num_fallback;
}

// Host arrays for a quantized operand of this shape (q2 always allocated); free with int8fb_operand_free_host.
static inline Int8fbOperand int8fb_operand_alloc_host(int rows, int cols, Int8fbGranularity granularity) {
    Int8fbOperand op;
    size_t n = (size_t)rows * (size_t)cols;
    op.rows = rows; op.cols = cols; op.granularity = granularity;
    op.q1 = (int8_t *)calloc_check(n, 1);
    op.q2 = (int8_t *)calloc_check(n, 1);
    op.scale = (float *)calloc_check(int8fb_scale_count(rows, cols, granularity), sizeof(float));
    op.fallback = (uint8_t *)calloc_check((size_t)int8fb_row_tiles(rows) * int8fb_k_tiles(cols), 1);
    return op;
}

static inline void int8fb_operand_free_host(Int8fbOperand *op) {
    free(op->q1); free(op->q2); free(op->scale); free(op->fallback);
    memset(op, 0, sizeof(*op));
}

// The scale s1 of element (r, c) of a quantized operand (host arrays).
static inline float int8fb_element_scale(const Int8fbOperand *op, int r, int c) {
    int k_tiles = int8fb_k_tiles(op->cols), kt = c / INT8FB_TILE_SIZE;
    if (op->granularity == INT8FB_PER_TILE) return op->scale[(size_t)(r / INT8FB_TILE_SIZE) * k_tiles + kt];
    return op->scale[(size_t)kt * int8fb_row_tiles(op->rows) * INT8FB_TILE_SIZE + r];
}

// Dequantizes op (host arrays) into out[rows][cols] in double: s1 q1, plus s2 q2 inside fallback tiles.
static inline void int8fb_dequantize_reference(const Int8fbOperand *op, double *out) {
    int k_tiles = int8fb_k_tiles(op->cols);
    for (int r = 0; r < op->rows; r++) {
        for (int c = 0; c < op->cols; c++) {
            size_t i = (size_t)r * op->cols + c;
            float s1 = int8fb_element_scale(op, r, c);
            double v = (double)s1 * (double)op->q1[i];
            if (op->fallback[(size_t)(r / INT8FB_TILE_SIZE) * k_tiles + c / INT8FB_TILE_SIZE])
                v += (double)int8fb_residual_scale(s1) * (double)op->q2[i];
            out[i] = v;
        }
    }
}

#endif // TEST_REFERENCE_INT8_TILE128_FALLBACK_REFERENCE_H
