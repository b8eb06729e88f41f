// INT8 with block-level fallback ("int8fb", design in PRECISION_AND_PARALLELISM_REFERENCE.md sec. 9):
// the storage layout and the element rules shared by the GPU quantizer, the GPU GEMM and the CPU
// reference quantizer (test/reference/int8_tile128_fallback_reference.h). Plain C, also compiled as
// C++ by nvcc.
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
#ifndef KERNELS_INT8_TILE128_FALLBACK_H
#define KERNELS_INT8_TILE128_FALLBACK_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "core/utils.h"
#include "kernels/formats.h"

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
    INT8FB_PER_TILE = 1,   // s1 per 128 x 128 tile
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

// q = RNE(x / s) saturated to [-127, 127]; 0 when s == 0 (an all-zero chunk, or one whose scale underflows).
static inline INT8FB_HD int8_t int8fb_quantize_value(float x, float s) { return s > 0.0f ? int8_from_float_rne(x / s) : (int8_t)0; }

// The rounding residual x - s1 q1, with one rounding.
static inline INT8FB_HD float int8fb_residual(float x, float s1, int8_t q1) { return fmaf(-s1, (float)q1, x); }

// The residual's scale s2 = s1 / 127.
static inline INT8FB_HD float int8fb_residual_scale(float s1) { return s1 / 127.0f; }

// The fallback decision from the tile's squared error and squared norm.
static inline INT8FB_HD int int8fb_falls_back(double err2, double norm2, float theta) {
    return err2 > (double)theta * (double)theta * norm2;
}

#endif // KERNELS_INT8_TILE128_FALLBACK_H
