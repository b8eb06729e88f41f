// INT8 with block-level fallback ("int8fb", design in PRECISION_AND_PARALLELISM_REFERENCE.md sec. 9):
// the element rules shared by the GPU quantizer and GEMM, and the CPU reference quantizer that the
// CPU and GPU tests compare against. Plain C, also compiled as C++ by nvcc.
//
// An operand X[rows, cols] (cols = the GEMM's K axis, row-major) is cut into 128 x 128 tiles
// (tile row tr = r / 128, K-tile kt = c / 128; the last tiles may be partial). Two granularities:
//   INT8FB_ROW_CHUNK (activations, gradients): one FP32 scale s1 = absmax / 127 per 1 x 128 row chunk;
//   INT8FB_PER_TILE  (weights, and the second operand of Wgrad): one s1 per 128 x 128 tile.
// q1 = RNE(x / s1) saturated to [-127, 127]. A tile falls back when ||x - s1 q1||_2 > theta ||x||_2
// (sums over the tile, in double); it then also stores the residual q2 = RNE((x - s1 q1) / s2) with
// s2 = s1 / 127 (|q2| <= 64), so x ~= s1 q1 + s2 q2. theta = INT8FB_NO_FALLBACK (weights) never falls back.
//
// Storage of a quantized operand (Int8fbOperand; host or device pointers):
//   q1        int8 [rows][cols]                 row-major like X
//   q2        int8 [rows][cols]                 written only inside fallback tiles, elsewhere untouched
//   scale     ROW_CHUNK: float [K_tiles][rows_pad] s1 of row r in K-tile kt at scale[kt * rows_pad + r]
//                        (K-tile-major, so a GEMM block reads its 128 row scales of one K-step at once;
//                        rows_pad = 128 * row_tiles, the padding rows hold 0)
//             PER_TILE:  float [row_tiles][K_tiles]
//   fallback  uint8 [row_tiles][K_tiles]        1 = the tile falls back
// Shape rules: rows >= 1, cols >= 16 and cols % 16 == 0 (16-byte rows for the GEMM's tensor copies).
#ifndef TEST_REFERENCE_INT8_TILE128_FALLBACK_REFERENCE_H
#define TEST_REFERENCE_INT8_TILE128_FALLBACK_REFERENCE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "core/utils.h"

#ifdef __CUDACC__
#define INT8FB_HD __host__ __device__
#else
#define INT8FB_HD
#endif

#define INT8FB_TILE_SIZE 128
// Default fallback threshold on the tile's relative quantization error. Measured by
// build/test/test_int8_fallback (dev/RESULTS.md): with 1 x 128 row scales, Gaussian tiles have
// 0.0063-0.0067, GELU(Gaussian) ~0.009, SwiGLU of Gaussians 0.012-0.014 (none fall back), a Gaussian
// tile with one outlier of 300 sigma 0.022-0.025 (falls back), of 100 sigma 0.015-0.018 (borderline), of
// 1000 sigma 0.010-0.013 (does not: the outlier dominates the tile's norm), an outlier channel x20 ~0.022.
#define INT8FB_DEFAULT_THETA 0.015f
#define INT8FB_NO_FALLBACK INFINITY

typedef enum {
    INT8FB_ROW_CHUNK = 0,  // s1 per 1 x 128 row chunk
    INT8FB_PER_TILE = 1,     // s1 per 128 x 128 tile
} Int8fbGranularity;

typedef struct {
    int rows, cols;
    Int8fbGranularity granularity;
    int8_t *q1;
    int8_t *q2;
    float *scale;
    uint8_t *fallback;
} Int8fbOperand;

static inline INT8FB_HD int int8fb_row_tiles(int rows) { return (rows + INT8FB_TILE_SIZE - 1) / INT8FB_TILE_SIZE; }
static inline INT8FB_HD int int8fb_k_tiles(int cols) { return (cols + INT8FB_TILE_SIZE - 1) / INT8FB_TILE_SIZE; }

// Number of floats in the scale array of an operand.
static inline size_t int8fb_scale_count(int rows, int cols, Int8fbGranularity granularity) {
    size_t tiles = (size_t)int8fb_row_tiles(rows) * (size_t)int8fb_k_tiles(cols);
    return granularity == INT8FB_ROW_CHUNK ? tiles * INT8FB_TILE_SIZE : tiles;
}

// Checks the shape rules above; returns 0, or -1 with the reason in err.
static inline int int8fb_check_shape(int rows, int cols, char *err, size_t err_size) {
    if (rows < 1) return set_error(err, err_size, "int8fb: rows=%d must be positive", rows);
    if (cols < 16 || cols % 16 != 0) return set_error(err, err_size, "int8fb: cols=%d must be a positive multiple of 16", cols);
    return 0;
}

// The scale s1 of a chunk or tile with absolute maximum amax.
static inline INT8FB_HD float int8fb_scale(float amax) { return amax / 127.0f; }

// RNE of v to an integer, saturated to [-127, 127].
static inline INT8FB_HD int8_t int8fb_round_sat(float v) {
    float r = rintf(v);
    r = fminf(fmaxf(r, -127.0f), 127.0f);
    return (int8_t)r;
}

// q = RNE(x / s) saturated; 0 when s == 0 (an all-zero chunk, or one whose scale underflows).
static inline INT8FB_HD int8_t int8fb_quantize_value(float x, float s) { return s > 0.0f ? int8fb_round_sat(x / s) : (int8_t)0; }

// The rounding residual x - s1 q1, with one rounding.
static inline INT8FB_HD float int8fb_residual(float x, float s1, int8_t q1) { return fmaf(-s1, (float)q1, x); }

// The residual's scale s2 = s1 / 127.
static inline INT8FB_HD float int8fb_residual_scale(float s1) { return s1 / 127.0f; }

// The fallback decision from the tile's squared error and squared norm.
static inline INT8FB_HD int int8fb_falls_back(double err2, double norm2, float theta) {
    return err2 > (double)theta * (double)theta * norm2;
}

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
