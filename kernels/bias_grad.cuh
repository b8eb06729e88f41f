// Column sums of a BF16 gradient [N, OC] into an FP32 bias gradient [OC], deterministic in two stages:
// fixed row chunks into FP32 partials (bias_grad_partials_kernel), then column_partials_add of
// kernels/layer_common.cuh. The same kernel, with GELU_BACKWARD, also applies GELU's backward in place
// (dinp = bf16(dout * gelu'(x))) and leaves the 128-row partials that the Hopper GELU GEMM's epilogue
// leaves, for GPUs without that kernel (gelu_backward_tile_colsums). Used by core/linear.cuh.
#ifndef KERNELS_BIAS_GRAD_CUH
#define KERNELS_BIAS_GRAD_CUH

#include "kernels/layer_common.cuh"
#include "kernels/sm90_bf16_gemm_gelu.cuh"

#define BIAS_GRAD_ROWS 8             // warps (row lanes) per block of the column sum
#define BIAS_GRAD_MAX_CHUNKS 128     // row chunks (partial rows) at most
#define BIAS_GRAD_UNROLL 4           // rows each thread loads before it stores any

// ----------------------------------------------------------------------------------------------
// kernels

// partials[chunk, o] = sum over the rows of row chunk `blockIdx.y` of dout[row, o]. Thread (x, y) of a block
// owns 8 columns and the rows y, y + BIAS_GRAD_ROWS, ... of the chunk, which it loads BIAS_GRAD_UNROLL at a
// time before it adds any; the BIAS_GRAD_ROWS lanes are then added in y order. GELU_BACKWARD: first
// dinp[row, o] = bf16(dout[row, o] * gelu_grad[row, o]) (dinp may alias dout), and the sums are of dinp.
// bias_grad_rows_ does ROWS of a thread's rows, r, r + BIAS_GRAD_ROWS, ...: all loads first, then the sums
// in row order.
template <bool GELU_BACKWARD, int ROWS>
__device__ __forceinline__ void bias_grad_rows_(float (&acc)[8], const bf16 *dout, const bf16 *gelu_grad, bf16 *dinp, int r, int o,
                                                int OC) {
    Bf16x8 d[ROWS];
#pragma unroll
    for (int u = 0; u < ROWS; u++) d[u] = load_bf16x8(dout + (size_t)(r + u * BIAS_GRAD_ROWS) * OC, o, OC, true);
    if constexpr (GELU_BACKWARD) {
#pragma unroll
        for (int u = 0; u < ROWS; u++) {
            const size_t row = (size_t)(r + u * BIAS_GRAD_ROWS) * OC;
            const Bf16x8 g = load_bf16x8(gelu_grad + row, o, OC, true);
#pragma unroll
            for (int e = 0; e < 8; e++) d[u].v[e] = __float2bfloat16(__bfloat162float(d[u].v[e]) * __bfloat162float(g.v[e]));
            store_bf16x8(dinp + row, o, OC, true, d[u]);
        }
    }
#pragma unroll
    for (int u = 0; u < ROWS; u++)
#pragma unroll
        for (int e = 0; e < 8; e++) acc[e] += __bfloat162float(d[u].v[e]);
}

template <bool GELU_BACKWARD>
__global__ void __launch_bounds__(WARP_SIZE *BIAS_GRAD_ROWS)
bias_grad_partials_kernel(float *partials, const bf16 *dout, const bf16 *gelu_grad, bf16 *dinp, int N, int OC, int rows_per_chunk) {
    __shared__ float lanes[BIAS_GRAD_ROWS][WARP_SIZE * 8];
    const int o = (blockIdx.x * WARP_SIZE + threadIdx.x) * 8;
    const int row_begin = blockIdx.y * rows_per_chunk;
    const int row_end = min(N, row_begin + rows_per_chunk);
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (o < OC) {
        int r = row_begin + threadIdx.y;
        for (; r + (BIAS_GRAD_UNROLL - 1) * BIAS_GRAD_ROWS < row_end; r += BIAS_GRAD_UNROLL * BIAS_GRAD_ROWS)
            bias_grad_rows_<GELU_BACKWARD, BIAS_GRAD_UNROLL>(acc, dout, gelu_grad, dinp, r, o, OC);
        for (; r < row_end; r += BIAS_GRAD_ROWS) bias_grad_rows_<GELU_BACKWARD, 1>(acc, dout, gelu_grad, dinp, r, o, OC);
    }
#pragma unroll
    for (int e = 0; e < 8; e++) lanes[threadIdx.y][threadIdx.x * 8 + e] = acc[e];
    __syncthreads();
    if (threadIdx.y != 0 || o >= OC) return;
    for (int e = 0; e < 8; e++) {
        float sum = 0.0f;
        for (int y = 0; y < BIAS_GRAD_ROWS; y++) sum += lanes[y][threadIdx.x * 8 + e];
        partials[(size_t)blockIdx.y * OC + o + e] = sum;
    }
}

// ----------------------------------------------------------------------------------------------
// launchers

// dbias [OC] (FP32) += column sums of dout [N,OC]. partials: BIAS_GRAD_MAX_CHUNKS * OC floats.
// accumulate: 1 adds to dbias, 0 overwrites it (the same bits as adding to zeros).
// The row chunks depend only on N, so the result is bit-reproducible.
static inline void bias_grad(float *dbias, float *partials, const bf16 *dout, int N, int OC, bool accumulate, cudaStream_t stream) {
    shapeCheck(N > 0 && OC > 0 && OC % 8 == 0, "bias gradient needs OC %% 8 == 0, got N=%d OC=%d", N, OC);
    shapeCheck((uintptr_t)dout % 16 == 0, "dout must be 16-byte aligned");
    const int rows_per_chunk = ceil_div(N, BIAS_GRAD_MAX_CHUNKS) < 64 ? 64 : ceil_div(N, BIAS_GRAD_MAX_CHUNKS);
    const int chunks = ceil_div(N, rows_per_chunk);
    const dim3 grid(ceil_div(OC, WARP_SIZE * 8), chunks), block(WARP_SIZE, BIAS_GRAD_ROWS);
    bias_grad_partials_kernel<false><<<grid, block, 0, stream>>>(partials, dout, NULL, NULL, N, OC, rows_per_chunk);
    cudaCheckLaunch();
    column_partials_add(dbias, partials, chunks, OC, accumulate, stream);
}

// GELU's backward after a plain Dgrad (GPUs without the Hopper GELU GEMM): dinp [N,IC] = bf16(dinp *
// gelu_grad) in place, and partials[t, c] = the sum of dinp[128 t .. 128 t + 127, c]: the 128-row column
// partials that the Hopper kernel's GELU_BACKWARD epilogue leaves (partials: ceil(N / 128) * IC floats).
static inline void gelu_backward_tile_colsums(bf16 *dinp, const bf16 *gelu_grad, float *partials, int N, int IC, cudaStream_t stream) {
    shapeCheck(N > 0 && IC > 0 && IC % 8 == 0, "GELU backward needs IC %% 8 == 0, got N=%d IC=%d", N, IC);
    shapeCheck(((uintptr_t)dinp | (uintptr_t)gelu_grad) % 16 == 0, "dinp and gelu_grad must be 16-byte aligned");
    const dim3 grid(ceil_div(IC, WARP_SIZE * 8), ceil_div(N, BG_BM)), block(WARP_SIZE, BIAS_GRAD_ROWS);
    bias_grad_partials_kernel<true><<<grid, block, 0, stream>>>(partials, dinp, gelu_grad, dinp, N, IC, BG_BM);
    cudaCheckLaunch();
}

#endif // KERNELS_BIAS_GRAD_CUH
