// FP8 with one scale per tensor: FP8 current scaling (FP8-CS: amax pass, then cast) and µnit
// Scaling (µS: cast with a static scale, no amax), each optionally with the transposed copy that the
// TN-only Hopper FP8 GEMM needs.
//
// Layouts (x: BF16 row-major [R, C], any R, C >= 1):
//   q_row  uint8 [R, C]  row-wise copy, q_row[r*C + c] = fp8(x[r][c] * s_enc)
//   q_col  uint8 [C, R]  transposed copy, q_col[c*R + r] = the same code (per-tensor scaling makes
//                        the transpose of the FP8 data the FP8 of the transpose)
//   s_dec  fp32, 1 value on the device: 1 / s_enc, the GEMM's A/B scale
// FP8-CS: s_enc = fp8cs_scale_from_amax(fmt, amax) (fp8_max/amax, guards in formats.h). The amax is
// a device value written by amax_bf16 (quantize_common.cuh); in a distributed run all-reduce(max) it
// over the group between the two calls when the FP8 tensor is gathered. µS: s_enc is a host float
// (1 in the µS recipe, the 1/sqrt(fan_in) multiplier goes into the GEMM alpha).
// Encoding: RNE with saturation to +-fp8_max, NaN -> 0x7F (formats.h), bit-identical to
// ref_quantize_fp8_tensorwise (kernels/quantize_reference.h).
#ifndef KERNELS_QUANTIZE_FP8_TENSORWISE_CUH
#define KERNELS_QUANTIZE_FP8_TENSORWISE_CUH

#include "kernels/quantize_common.cuh"

// One 64 x 64 tile per block of QTILE_THREADS threads: reads x once, writes the row-wise codes
// directly and the transposed codes through the shared tile. s_enc comes from *amax when amax is
// not NULL, else from static_scale; block (0, 0) writes s_dec. Either output may be NULL.
template <Fp8Format F>
__global__ void __launch_bounds__(QTILE_THREADS) fp8_cast_transpose_kernel(uint8_t *q_row, uint8_t *q_col, float *s_dec,
                                                                       const bf16 *x, int R, int C, const float *amax,
                                                                       float static_scale) {
    __shared__ float tile[QTILE_ROWS][QTILE_PITCH];
    int r0 = blockIdx.y * QTILE_ROWS, c0 = blockIdx.x * QTILE_COLS;
    float s_enc = amax ? fmt_tensor_scale_from_amax(fp8_max(F), *amax) : static_scale;
    if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) *s_dec = 1.0f / s_enc;

    float v[2][8];
    int count[2];
    qtile_load_rows(x, R, C, r0, c0, v, count, tile);
    if (q_row) {
        for (int h = 0; h < 2; h++) {
            int r = r0 + QTILE_HALF_ROWS * h + threadIdx.x / 8, c = c0 + 8 * (threadIdx.x % 8);
            store_bytes8(q_row + (size_t)r * C + c, fp8x8_from_float8_rne<F>(v[h], s_enc), count[h], (C % 8) == 0);
        }
    }
    if (q_col == nullptr) return;
    __syncthreads();
    for (int h = 0; h < 2; h++) {
        int n = qtile_read_col8(R, C, r0, c0, h, v[h], tile);
        int c = c0 + threadIdx.x / 4, r = r0 + QTILE_HALF_ROWS * h + 8 * (threadIdx.x % 4);
        store_bytes8(q_col + (size_t)c * R + r, fp8x8_from_float8_rne<F>(v[h], s_enc), n, (R % 8) == 0);
    }
}

static inline void fp8_cast_transpose_launch(uint8_t *q_row, uint8_t *q_col, float *s_dec, const bf16 *x, int R, int C,
                                             Fp8Format fmt, const float *amax, float static_scale, cudaStream_t stream) {
    shapeCheck(R >= 1 && C >= 1, "R=%d C=%d", R, C);
    shapeCheck(((uintptr_t)x & 15) == 0 && ((uintptr_t)q_row & 7) == 0 && ((uintptr_t)q_col & 7) == 0,
               "x must be 16-byte and q_row/q_col 8-byte aligned");
    shapeCheck(q_row != nullptr || q_col != nullptr, "no output requested");
    shapeCheck(ceil_div(R, QTILE_ROWS) <= 65535, "R=%d has too many 64-row tiles for the grid", R);
    dim3 grid(ceil_div(C, QTILE_COLS), ceil_div(R, QTILE_ROWS));
    if (fmt == FP8_E4M3) {
        fp8_cast_transpose_kernel<FP8_E4M3><<<grid, QTILE_THREADS, 0, stream>>>(q_row, q_col, s_dec, x, R, C, amax, static_scale);
    } else {
        fp8_cast_transpose_kernel<FP8_E5M2><<<grid, QTILE_THREADS, 0, stream>>>(q_row, q_col, s_dec, x, R, C, amax, static_scale);
    }
    cudaCheckLaunch();
}

// FP8-CS cast: s_enc = fp8_max / *amax (amax: device value from amax_bf16, all-reduced if needed).
static inline void fp8cs_quantize(uint8_t *q_row, uint8_t *q_col, float *s_dec, const bf16 *x, int R, int C, Fp8Format fmt,
                                  const float *amax, cudaStream_t stream) {
    shapeCheck(amax != nullptr, "FP8-CS needs the device amax");
    fp8_cast_transpose_launch(q_row, q_col, s_dec, x, R, C, fmt, amax, 0.0f, stream);
}

// µS cast with a static encode scale (no amax pass).
static inline void mus_quantize(uint8_t *q_row, uint8_t *q_col, float *s_dec, const bf16 *x, int R, int C, Fp8Format fmt,
                                float static_scale, cudaStream_t stream) {
    shapeCheck(static_scale > 0.0f && static_scale <= FLT_MAX, "static scale %g must be positive and finite", static_scale);
    fp8_cast_transpose_launch(q_row, q_col, s_dec, x, R, C, fmt, nullptr, static_scale, stream);
}

#endif // KERNELS_QUANTIZE_FP8_TENSORWISE_CUH
