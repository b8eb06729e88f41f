// CPU test of the block-scale swizzle mapping (kernels/scale_swizzle.h) that the Blackwell
// cuBLASLt path uses: padding sizes, the mapping against an independent construction of the layout
// (128 x 4 tiles in row-major tile order, row 32a + i, column c at byte 16i + 4a + c), bijectivity
// onto the padded array, and the inverse used by the swizzle kernel.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "core/utils.h"
#include "kernels/scale_swizzle.h"
#include "test/testing.h"

static uint32_t rng = 12345u;
static uint32_t rng_next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static void test_padding(void) {
    CHECK(scale_swizzle_padded_rows(1) == 128, "rows 1 -> %d", scale_swizzle_padded_rows(1));
    CHECK(scale_swizzle_padded_rows(128) == 128, "rows 128 -> %d", scale_swizzle_padded_rows(128));
    CHECK(scale_swizzle_padded_rows(129) == 256, "rows 129 -> %d", scale_swizzle_padded_rows(129));
    CHECK(scale_swizzle_padded_cols(1) == 4, "cols 1 -> %d", scale_swizzle_padded_cols(1));
    CHECK(scale_swizzle_padded_cols(4) == 4, "cols 4 -> %d", scale_swizzle_padded_cols(4));
    CHECK(scale_swizzle_padded_cols(130) == 132, "cols 130 -> %d", scale_swizzle_padded_cols(130));
    CHECK(scale_swizzle_bytes(300, 33) == (size_t)384 * 36, "bytes(300, 33) = %zu", scale_swizzle_bytes(300, 33));
}

// The first tile's byte order, written out: rows 0, 32, 64, 96 then 1, 33, 65, 97, ... (4 columns each).
static void test_tile_byte_order(void) {
    const int cols = 8;
    CHECK(scale_swizzle_offset(0, 0, cols) == 0, "(0,0)");
    CHECK(scale_swizzle_offset(0, 3, cols) == 3, "(0,3)");
    CHECK(scale_swizzle_offset(32, 0, cols) == 4, "(32,0) -> %zu", scale_swizzle_offset(32, 0, cols));
    CHECK(scale_swizzle_offset(64, 1, cols) == 9, "(64,1) -> %zu", scale_swizzle_offset(64, 1, cols));
    CHECK(scale_swizzle_offset(96, 3, cols) == 15, "(96,3) -> %zu", scale_swizzle_offset(96, 3, cols));
    CHECK(scale_swizzle_offset(1, 0, cols) == 16, "(1,0) -> %zu", scale_swizzle_offset(1, 0, cols));
    CHECK(scale_swizzle_offset(127, 3, cols) == 511, "(127,3) -> %zu", scale_swizzle_offset(127, 3, cols));
    // Column 4 starts the second tile of the first tile row; row 128 the first tile of the next.
    CHECK(scale_swizzle_offset(0, 4, cols) == 512, "(0,4) -> %zu", scale_swizzle_offset(0, 4, cols));
    CHECK(scale_swizzle_offset(128, 0, cols) == 1024, "(128,0) -> %zu", scale_swizzle_offset(128, 0, cols));
}

// Builds the swizzled array tile by tile from the layout's definition and compares it with the
// array built through scale_swizzle_offset, on random scales of awkward sizes.
static void test_against_tile_construction(void) {
    const int sizes[][2] = {{1, 1}, {127, 3}, {128, 4}, {300, 33}, {513, 130}, {1000, 7}};
    for (size_t t = 0; t < sizeof(sizes) / sizeof(sizes[0]); t++) {
        int rows = sizes[t][0], cols = sizes[t][1];
        int prow = scale_swizzle_padded_rows(rows), pcol = scale_swizzle_padded_cols(cols);
        size_t bytes = scale_swizzle_bytes(rows, cols);
        uint8_t *in = (uint8_t *)malloc_check((size_t)rows * cols);
        for (size_t i = 0; i < (size_t)rows * cols; i++) in[i] = (uint8_t)(rng_next() | 1u);
        uint8_t *want = (uint8_t *)calloc_check(bytes, 1), *got = (uint8_t *)calloc_check(bytes, 1);
        size_t o = 0;
        for (int tr = 0; tr < prow / 128; tr++)
            for (int tc = 0; tc < pcol / 4; tc++)
                for (int i = 0; i < 32; i++)
                    for (int a = 0; a < 4; a++)
                        for (int c = 0; c < 4; c++, o++) {
                            int r = tr * 128 + 32 * a + i, col = tc * 4 + c;
                            want[o] = (r < rows && col < cols) ? in[(size_t)r * cols + col] : 0;
                        }
        CHECK(o == bytes, "construction wrote %zu of %zu bytes", o, bytes);
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) got[scale_swizzle_offset(r, c, cols)] = in[(size_t)r * cols + c];
        CHECK(memcmp(want, got, bytes) == 0, "rows=%d cols=%d: swizzled arrays differ", rows, cols);
        free(in); free(want); free(got);
    }
}

// Over the padded matrix the mapping is a bijection onto [0, bytes), and scale_swizzle_source inverts it.
static void test_bijection_and_inverse(void) {
    const int sizes[][2] = {{1, 1}, {300, 33}, {513, 130}};
    for (size_t t = 0; t < sizeof(sizes) / sizeof(sizes[0]); t++) {
        int rows = sizes[t][0], cols = sizes[t][1];
        int prow = scale_swizzle_padded_rows(rows), pcol = scale_swizzle_padded_cols(cols);
        size_t bytes = scale_swizzle_bytes(rows, cols);
        uint8_t *seen = (uint8_t *)calloc_check(bytes, 1);
        size_t out_of_range = 0, inverse_wrong = 0;
        for (int r = 0; r < prow; r++) {
            for (int c = 0; c < pcol; c++) {
                size_t o = scale_swizzle_offset(r, c, cols);
                if (o >= bytes) { out_of_range++; continue; }
                seen[o]++;
                int r2, c2;
                scale_swizzle_source(o, cols, &r2, &c2);
                inverse_wrong += (r2 != r || c2 != c);
            }
        }
        size_t not_once = 0;
        for (size_t i = 0; i < bytes; i++) not_once += seen[i] != 1;
        CHECK(out_of_range == 0, "rows=%d cols=%d: %zu offsets past the array", rows, cols, out_of_range);
        CHECK(not_once == 0, "rows=%d cols=%d: %zu bytes not hit exactly once", rows, cols, not_once);
        CHECK(inverse_wrong == 0, "rows=%d cols=%d: inverse wrong for %zu positions", rows, cols, inverse_wrong);
        free(seen);
    }
}

int main(void) {
    RUN_TEST(test_padding);
    RUN_TEST(test_tile_byte_order);
    RUN_TEST(test_against_tile_construction);
    RUN_TEST(test_bijection_and_inverse);
    return testing_finish();
}
