// GPU quantizer of int8fb operands: BF16 X[rows, cols] (cols = the GEMM's K axis) -> q1, scales,
// per-tile fallback flags and, for fallback tiles, the residual q2 (layout and rules in
// kernels/int8_tile128_fallback.h). Bit-identical to int8fb_quantize_reference (the element rules are
// the same functions; only the order of the double sums of the fallback test differs, which can flip
// a flag only when the tile's error equals theta to ~1e-15).
#ifndef KERNELS_QUANTIZE_INT8_TILE128_FALLBACK_CUH
#define KERNELS_QUANTIZE_INT8_TILE128_FALLBACK_CUH

#include <math.h>
#include "kernels/cuda_common.h"
#include "kernels/int8_tile128_fallback.h"

#define INT8FB_QUANT_THREADS 256
#define INT8FB_QUANT_WARPS (INT8FB_QUANT_THREADS / 32)
#define INT8FB_QUANT_ROWS_PER_WARP (INT8FB_TILE_SIZE / INT8FB_QUANT_WARPS)
static_assert(INT8FB_TILE_SIZE == 32 * 4, "each lane holds 4 consecutive columns of a 128-column tile row");
static_assert(INT8FB_TILE_SIZE % INT8FB_QUANT_WARPS == 0, "the tile's rows split evenly over the warps");

// One block per 128 x 128 tile (blockIdx.x = K-tile, blockIdx.y = tile row). Warp w holds rows
// [16w, 16w+16) of the tile, lane l columns [4l, 4l+4): 64 values in registers, read once. Elements
// outside X (partial tiles) count as zero. Writes q1 of the tile, its scales, its flag, q2 when the
// tile falls back, and adds the flag to *num_fallback.
template <Int8fbGranularity GRANULARITY>
__global__ void __launch_bounds__(INT8FB_QUANT_THREADS)
quantize_int8fb_kernel(const bf16 *x, int rows, int cols, float theta, int8_t *q1, int8_t *q2, float *scale,
                       uint8_t *fallback, int *num_fallback) {
    __shared__ float warp_amax[INT8FB_QUANT_WARPS];
    __shared__ double warp_err2[INT8FB_QUANT_WARPS], warp_norm2[INT8FB_QUANT_WARPS];
    __shared__ int tile_falls_back;
    const int kt = blockIdx.x, tr = blockIdx.y, k_tiles = gridDim.x;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int col = kt * INT8FB_TILE_SIZE + lane * 4;
    const int row0 = tr * INT8FB_TILE_SIZE + warp * INT8FB_QUANT_ROWS_PER_WARP;
    const bool col_in = col < cols;  // cols % 16 == 0: a lane's 4 columns are all inside or all outside

    float v[INT8FB_QUANT_ROWS_PER_WARP][4];
    float s1[INT8FB_QUANT_ROWS_PER_WARP];
    float thread_amax = 0.0f;
#pragma unroll
    for (int i = 0; i < INT8FB_QUANT_ROWS_PER_WARP; i++) {
        int r = row0 + i;
        if (r < rows && col_in) {
            uint2 raw = *reinterpret_cast<const uint2 *>(x + (size_t)r * cols + col);
            __nv_bfloat162 lo = *reinterpret_cast<__nv_bfloat162 *>(&raw.x), hi = *reinterpret_cast<__nv_bfloat162 *>(&raw.y);
            v[i][0] = __low2float(lo); v[i][1] = __high2float(lo); v[i][2] = __low2float(hi); v[i][3] = __high2float(hi);
        } else {
            v[i][0] = v[i][1] = v[i][2] = v[i][3] = 0.0f;
        }
        float m = fmaxf(fmaxf(fabsf(v[i][0]), fabsf(v[i][1])), fmaxf(fabsf(v[i][2]), fabsf(v[i][3])));
        if (GRANULARITY == INT8FB_ROW_CHUNK) {
            for (int off = 16; off > 0; off /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
            s1[i] = int8fb_scale(m);
        }
        thread_amax = fmaxf(thread_amax, m);
    }
    if (GRANULARITY == INT8FB_PER_TILE) {
        for (int off = 16; off > 0; off /= 2) thread_amax = fmaxf(thread_amax, __shfl_xor_sync(0xffffffffu, thread_amax, off));
        if (lane == 0) warp_amax[warp] = thread_amax;
        __syncthreads();
        float amax = 0.0f;
        for (int w = 0; w < INT8FB_QUANT_WARPS; w++) amax = fmaxf(amax, warp_amax[w]);
        for (int i = 0; i < INT8FB_QUANT_ROWS_PER_WARP; i++) s1[i] = int8fb_scale(amax);
    }

    // q1, and the tile's squared error and norm.
    double err2 = 0.0, norm2 = 0.0;
#pragma unroll
    for (int i = 0; i < INT8FB_QUANT_ROWS_PER_WARP; i++) {
        char4 q;
        q.x = int8fb_quantize_value(v[i][0], s1[i]);
        q.y = int8fb_quantize_value(v[i][1], s1[i]);
        q.z = int8fb_quantize_value(v[i][2], s1[i]);
        q.w = int8fb_quantize_value(v[i][3], s1[i]);
        const int8_t qs[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
        for (int j = 0; j < 4; j++) {
            double e = (double)int8fb_residual(v[i][j], s1[i], qs[j]);
            err2 += e * e;
            norm2 += (double)v[i][j] * (double)v[i][j];
        }
        int r = row0 + i;
        if (r < rows && col_in) *reinterpret_cast<char4 *>(q1 + (size_t)r * cols + col) = q;
    }
    for (int off = 16; off > 0; off /= 2) {
        err2 += __shfl_xor_sync(0xffffffffu, err2, off);
        norm2 += __shfl_xor_sync(0xffffffffu, norm2, off);
    }
    if (lane == 0) { warp_err2[warp] = err2; warp_norm2[warp] = norm2; }
    if (GRANULARITY == INT8FB_ROW_CHUNK && lane < INT8FB_QUANT_ROWS_PER_WARP) {
        // Padding rows (past `rows`) hold zeros, so their scale is 0 as the layout requires.
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < INT8FB_QUANT_ROWS_PER_WARP; i++) s = lane == i ? s1[i] : s;
        scale[(size_t)kt * int8fb_row_tiles(rows) * INT8FB_TILE_SIZE + row0 + lane] = s;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double tile_err2 = 0.0, tile_norm2 = 0.0;
        for (int w = 0; w < INT8FB_QUANT_WARPS; w++) { tile_err2 += warp_err2[w]; tile_norm2 += warp_norm2[w]; }
        int fb = int8fb_falls_back(tile_err2, tile_norm2, theta);
        fallback[(size_t)tr * k_tiles + kt] = (uint8_t)fb;
        if (GRANULARITY == INT8FB_PER_TILE) scale[(size_t)tr * k_tiles + kt] = s1[0];
        if (fb) atomicAdd(num_fallback, 1);
        tile_falls_back = fb;
    }
    __syncthreads();
    if (!tile_falls_back) return;
#pragma unroll
    for (int i = 0; i < INT8FB_QUANT_ROWS_PER_WARP; i++) {
        int r = row0 + i;
        if (r >= rows || !col_in) continue;
        float s2 = int8fb_residual_scale(s1[i]);
        char4 q_res;
        q_res.x = int8fb_quantize_value(int8fb_residual(v[i][0], s1[i], int8fb_quantize_value(v[i][0], s1[i])), s2);
        q_res.y = int8fb_quantize_value(int8fb_residual(v[i][1], s1[i], int8fb_quantize_value(v[i][1], s1[i])), s2);
        q_res.z = int8fb_quantize_value(int8fb_residual(v[i][2], s1[i], int8fb_quantize_value(v[i][2], s1[i])), s2);
        q_res.w = int8fb_quantize_value(int8fb_residual(v[i][3], s1[i], int8fb_quantize_value(v[i][3], s1[i])), s2);
        *reinterpret_cast<char4 *>(q2 + (size_t)r * cols + col) = q_res;
    }
}

// Device arrays for a quantized operand of this shape; q2 only when with_residual (operands that may
// fall back). Free with int8fb_operand_free_device.
static inline Int8fbOperand int8fb_operand_alloc_device(int rows, int cols, Int8fbGranularity granularity, int with_residual) {
    Int8fbOperand op;
    size_t n = (size_t)rows * (size_t)cols;
    op.rows = rows; op.cols = cols; op.granularity = granularity;
    cudaCheck(cudaMalloc(&op.q1, n));
    op.q2 = NULL;
    if (with_residual) cudaCheck(cudaMalloc(&op.q2, n));
    cudaCheck(cudaMalloc(&op.scale, int8fb_scale_count(rows, cols, granularity) * sizeof(float)));
    cudaCheck(cudaMalloc(&op.fallback, (size_t)int8fb_row_tiles(rows) * int8fb_k_tiles(cols)));
    return op;
}

static inline void int8fb_operand_free_device(Int8fbOperand *op) {
    cudaCheck(cudaFree(op->q1));
    if (op->q2 != NULL) cudaCheck(cudaFree(op->q2));
    cudaCheck(cudaFree(op->scale));
    cudaCheck(cudaFree(op->fallback));
    memset(op, 0, sizeof(*op));
}

// Quantizes x[op->rows, op->cols] (device, BF16) into op (device arrays from int8fb_operand_alloc_device,
// granularity op->granularity; op->q2 may be NULL only with theta = INT8FB_NO_FALLBACK) and writes the
// number of fallback tiles to *num_fallback (device int). Shape rules: rows >= 1, cols % 16 == 0; x
// 8-byte aligned.
static inline void quantize_int8fb(const bf16 *x, float theta, Int8fbOperand *op, int *num_fallback, cudaStream_t stream) {
    char err[256];
    const int rows = op->rows, cols = op->cols;
    shapeCheck(int8fb_check_shape(rows, cols, err, sizeof(err)) == 0, "%s", err);
    shapeCheck(op->q2 != NULL || isinf(theta), "q2 is NULL but theta=%g allows fallback", theta);
    shapeCheck((uintptr_t)x % 8 == 0, "x must be 8-byte aligned");
    shapeCheck(int8fb_row_tiles(rows) <= 65535, "rows=%d: too many tile rows for the grid", rows);
    cudaCheck(cudaMemsetAsync(num_fallback, 0, sizeof(int), stream));
    dim3 grid(int8fb_k_tiles(cols), int8fb_row_tiles(rows));
    if (op->granularity == INT8FB_ROW_CHUNK) {
        quantize_int8fb_kernel<INT8FB_ROW_CHUNK><<<grid, INT8FB_QUANT_THREADS, 0, stream>>>(
            x, rows, cols, theta, op->q1, op->q2, op->scale, op->fallback, num_fallback);
    } else {
        quantize_int8fb_kernel<INT8FB_PER_TILE><<<grid, INT8FB_QUANT_THREADS, 0, stream>>>(
            x, rows, cols, theta, op->q1, op->q2, op->scale, op->fallback, num_fallback);
    }
    cudaCheckLaunch();
}

#endif // KERNELS_QUANTIZE_INT8_TILE128_FALLBACK_CUH
