// MXFP8 quantizer (OCP MX v1.0 with NVIDIA's round-up scale, arXiv 2506.08027): E4M3 elements,
// one E8M0 scale per 32 consecutive elements along the GEMM's K axis. One kernel reads the BF16
// tensor once and writes the row-wise copy and the column-wise copy (both quantized from BF16).
//
// Layouts (x: BF16 row-major [R, C], any R, C >= 1):
//   q_row  E4M3  [R, C]           s_row  E8M0 [R, ceil(C/32)]   blocks along C (row-major, unswizzled)
//   q_col  E4M3  [C, R]           s_col  E8M0 [C, ceil(R/32)]   the transpose, blocks along R
// A block that runs past the end of a line is zero-padded (its scale comes from the elements
// present); data arrays hold exactly C (or R) codes per line. Block rule (formats.h):
//   scale = e8m0(2^ceil(log2(amax_block / 448))), q = e4m3_rne_sat(x * 2^-(scale - 127));
// an all-zero block gets scale 0x00, a block holding a NaN gets 0xFF (NaN) and NaN codes.
// Bit-identical to ref_quantize_mxfp8 (kernels/quantize_reference.h). cuBLASLt (Blackwell) wants
// the scales swizzled into 128x4 tiles; that is the GEMM side's job. Hopper has no MX MMA: the GEMM
// side dequantizes (q * 2^(scale-127) is exact in BF16).
#ifndef KERNELS_QUANTIZE_MXFP8_BLOCK32_CUH
#define KERNELS_QUANTIZE_MXFP8_BLOCK32_CUH

#include "kernels/quantize_common.cuh"

// Encodes the thread's 8 values of a 32-element block spread over 4 consecutive lanes: the block
// amax is reduced over the lanes, the first lane of the 4 writes the scale to *scale_out.
__device__ __forceinline__ uint2 mxfp8_encode_8_of_32(const float v[8], uint8_t *scale_out, bool write_scale) {
    uint32_t amax = 0;
    for (int k = 0; k < 8; k++) amax = fmt_amax_bits_update(amax, v[k]);
    amax = max_over_4_lanes(amax);
    uint8_t scale = mxfp8_block_scale(__uint_as_float(amax));
    if (write_scale) *scale_out = scale;
    return fp8x8_from_float8_rne<FP8_E4M3>(v, e8m0_inverse(scale));
}

// One 64 x 64 tile per block of QTILE_THREADS threads: 2 row-wise blocks per tile row and two
// column-wise blocks (one per 32-row half) per tile column. Either output pair may be NULL.
__global__ void __launch_bounds__(QTILE_THREADS) mxfp8_quantize_kernel(uint8_t *q_row, uint8_t *s_row, uint8_t *q_col,
                                                                   uint8_t *s_col, const bf16 *x, int R, int C) {
    __shared__ float tile[QTILE_ROWS][QTILE_PITCH];
    int r0 = blockIdx.y * QTILE_ROWS, c0 = blockIdx.x * QTILE_COLS;
    float v[2][8];
    int count[2];
    qtile_load_rows(x, R, C, r0, c0, v, count, tile);
    if (q_row) {
        for (int h = 0; h < 2; h++) {
            int r = r0 + QTILE_HALF_ROWS * h + threadIdx.x / 8, c = c0 + 8 * (threadIdx.x % 8);
            bool first_of_block = (threadIdx.x % 4) == 0 && count[h] > 0;
            uint2 codes = mxfp8_encode_8_of_32(v[h], s_row + (size_t)r * ceil_div(C, 32) + c / 32, first_of_block);
            store_bytes8(q_row + (size_t)r * C + c, codes, count[h], (C % 8) == 0);
        }
    }
    if (q_col == nullptr) return;
    __syncthreads();
    for (int h = 0; h < 2; h++) {
        int n = qtile_read_col8(R, C, r0, c0, h, v[h], tile);
        int c = c0 + threadIdx.x / 4, r = r0 + QTILE_HALF_ROWS * h + 8 * (threadIdx.x % 4);
        bool first_of_block = (threadIdx.x % 4) == 0 && n > 0;
        uint2 codes = mxfp8_encode_8_of_32(v[h], s_col + (size_t)c * ceil_div(R, 32) + r / 32, first_of_block);
        store_bytes8(q_col + (size_t)c * R + r, codes, n, (R % 8) == 0);
    }
}

// Row-wise (q_row, s_row) and/or column-wise (q_col, s_col) MXFP8 copies of x [R, C].
static inline void mxfp8_quantize(uint8_t *q_row, uint8_t *s_row, uint8_t *q_col, uint8_t *s_col, const bf16 *x, int R, int C,
                                  cudaStream_t stream) {
    shapeCheck(R >= 1 && C >= 1, "R=%d C=%d", R, C);
    shapeCheck((q_row == nullptr) == (s_row == nullptr) && (q_col == nullptr) == (s_col == nullptr),
               "each copy needs both its data and its scales");
    shapeCheck(q_row != nullptr || q_col != nullptr, "no output requested");
    shapeCheck(((uintptr_t)x & 15) == 0 && ((uintptr_t)q_row & 7) == 0 && ((uintptr_t)q_col & 7) == 0,
               "x must be 16-byte and q_row/q_col 8-byte aligned");
    shapeCheck(ceil_div(R, QTILE_ROWS) <= 65535, "R=%d has too many 64-row tiles for the grid", R);
    dim3 grid(ceil_div(C, QTILE_COLS), ceil_div(R, QTILE_ROWS));
    mxfp8_quantize_kernel<<<grid, QTILE_THREADS, 0, stream>>>(q_row, s_row, q_col, s_col, x, R, C);
    cudaCheckLaunch();
}

#endif // KERNELS_QUANTIZE_MXFP8_BLOCK32_CUH
