// Index mapping of the block-scale layout that cuBLASLt's block-scaled GEMMs read on Blackwell
// (CUBLASLT_MATMUL_MATRIX_SCALE_VEC32_UE8M0 for MXFP8, VEC16_UE4M3 for NVFP4).
// Plain C, shared by the swizzle kernel (kernels/sm100_blockscaled_gemm_cublaslt.cuh) and its CPU
// test (test/test_scale_swizzle.c).
//
// Input: a row-major scale matrix [rows, cols] (rows = the operand's non-K dimension, cols = K/32
// or K/16 scale blocks). Output: the matrix padded to rows % 128 == 0 and cols % 4 == 0 (padding
// bytes are zero), cut into 128 x 4 tiles of 512 bytes stored one after another in row-major tile
// order; inside a tile, row r = 32a + i (a = 0..3, i = 0..31) and column c (0..3) sit at byte
// 16i + 4a + c. So the byte order of a tile is rows 0, 32, 64, 96 (4 bytes each), then rows 1, 33,
// 65, 97, and so on.
#ifndef KERNELS_SCALE_SWIZZLE_H
#define KERNELS_SCALE_SWIZZLE_H

#include <stddef.h>

#ifdef __CUDACC__
#define SWZ_HD __host__ __device__
#else
#define SWZ_HD
#endif

#define SCALE_TILE_ROWS 128
#define SCALE_TILE_COLS 4
#define SCALE_TILE_BYTES (SCALE_TILE_ROWS * SCALE_TILE_COLS)

static inline SWZ_HD int scale_swizzle_padded_rows(int rows) { return (rows + SCALE_TILE_ROWS - 1) / SCALE_TILE_ROWS * SCALE_TILE_ROWS; }
static inline SWZ_HD int scale_swizzle_padded_cols(int cols) { return (cols + SCALE_TILE_COLS - 1) / SCALE_TILE_COLS * SCALE_TILE_COLS; }

// Bytes of the swizzled (padded) scale array of a [rows, cols] scale matrix.
static inline SWZ_HD size_t scale_swizzle_bytes(int rows, int cols) {
    return (size_t)scale_swizzle_padded_rows(rows) * (size_t)scale_swizzle_padded_cols(cols);
}

// Byte offset in the swizzled array of scale (row, col) of a matrix with `cols` scale columns.
static inline SWZ_HD size_t scale_swizzle_offset(int row, int col, int cols) {
    size_t col_tiles = (size_t)(scale_swizzle_padded_cols(cols) / SCALE_TILE_COLS);
    size_t tile = (size_t)(row / SCALE_TILE_ROWS) * col_tiles + (size_t)(col / SCALE_TILE_COLS);
    int r = row % SCALE_TILE_ROWS;
    return tile * SCALE_TILE_BYTES + (size_t)(16 * (r % 32) + 4 * (r / 32) + col % SCALE_TILE_COLS);
}

// Inverse of scale_swizzle_offset: the (row, col) of the padded matrix stored at `offset`
// (row >= rows or col >= cols means a padding byte).
static inline SWZ_HD void scale_swizzle_source(size_t offset, int cols, int *row, int *col) {
    size_t col_tiles = (size_t)(scale_swizzle_padded_cols(cols) / SCALE_TILE_COLS);
    size_t tile = offset / SCALE_TILE_BYTES;
    int in_tile = (int)(offset % SCALE_TILE_BYTES);
    *row = (int)(tile / col_tiles) * SCALE_TILE_ROWS + 32 * ((in_tile % 16) / 4) + in_tile / 16;
    *col = (int)(tile % col_tiles) * SCALE_TILE_COLS + in_tile % 4;
}

#endif // KERNELS_SCALE_SWIZZLE_H
