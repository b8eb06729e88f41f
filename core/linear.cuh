// Linear layers: THE dispatch point of every linear layer's three GEMMs, keyed by the run-time
// precision (core/precision.h), plus the bias-gradient kernels.
//   Fprop: out[N,OC]  = inp[N,IC] . weight[OC,IC]^T (+ bias[OC])          BF16 out
//          optionally followed by GELU: pre_gelu[N,OC] = that sum, out = gelu(pre_gelu)
//   Dgrad: dinp[N,IC] = dout[N,OC] . weight[OC,IC]                         BF16 out, overwritten
//          optionally times gelu'(pre_gelu[N,IC]) when inp was the output of a GELU (its backward)
//   Wgrad: dweight[OC,IC] += dout[N,OC]^T . inp[N,IC],  dbias[OC] += sum_n dout[n,:]   FP32, accumulated,
//          or written over (dweight = ..., dbias = ...) when `accumulate` is 0: the first micro-step of an
//          optimizer step, so that no memset of the gradients is needed (cuBLASLt beta = 0: C is not read)
// N = B*T tokens, row-major everywhere. Only PRECISION_BF16 is built (cuBLASLt BF16 GEMMs with FP32
// accumulation); the other modes are rejected at flag parsing and fail here by name.
//
// Bias and GELU: forward adds the bias (and applies GELU) in the GEMM's epilogue (cuBLASLt BIAS,
// GELU_AUX_BIAS). GELU's backward is NOT cuBLASLt's DGELU epilogue: on the H100 that ran the fcproj
// Dgrad of GPT-2 d24 at 0.99 ms against 0.44 ms for the plain GEMM (dev/RESULTS.md), so it is one pass
// after the plain Dgrad (0.25 ms) that also sums the columns of its result, which are the bias gradient
// of the layer that produced pre_gelu. Bias gradients sum columns in two deterministic stages (fixed
// row chunks into FP32 partials, then column_partials_add of kernels/layer_common.cuh).
#ifndef CORE_LINEAR_CUH
#define CORE_LINEAR_CUH

#include "core/precision.h"
#include "kernels/gelu.cuh"
#include "kernels/layer_common.cuh"
#include "kernels/matmul_cublaslt.cuh"

#define BIAS_GRAD_ROWS 8             // warps (row lanes) per block of the column sum
#define BIAS_GRAD_MAX_CHUNKS 128     // row chunks (partial rows) at most
#define BIAS_GRAD_UNROLL 4           // rows each thread loads before it stores any

typedef enum { LINEAR_FPROP = 0, LINEAR_DGRAD, LINEAR_WGRAD } LinearGemm;

typedef struct {
    Precision precision;
    MatmulContext *matmul;
    float *bias_partials;  // [BIAS_GRAD_MAX_CHUNKS, max OC] FP32 scratch of the bias gradient
    int max_out_channels;  // columns bias_partials was sized for
} LinearContext;

// ----------------------------------------------------------------------------------------------
// kernels

// partials[chunk, o] = sum over the rows of row chunk `blockIdx.y` of d[row, o], where d = dout, or with
// GELU_BACKWARD d = bf16(dout * gelu'(pre_gelu)), which is also written back over dout (GELU's backward in
// place; dout [N,OC] was the gradient of gelu(pre_gelu), pre_gelu [N,OC]). Thread (x, y) of a block owns 8
// columns and the rows y, y + BIAS_GRAD_ROWS, ... of the chunk, which it loads BIAS_GRAD_UNROLL at a time
// before it stores any (the in-place stores would otherwise keep the compiler from issuing the next rows'
// loads early); the BIAS_GRAD_ROWS lanes are then added in y order. bias_grad_rows_ does ROWS of a thread's
// rows, r, r + BIAS_GRAD_ROWS, ...: all loads first, then the products, stores and sums in row order.
template <bool GELU_BACKWARD, int ROWS>
__device__ __forceinline__ void bias_grad_rows_(float (&acc)[8], bf16 *dout, const bf16 *pre_gelu, int r, int o, int OC) {
    Bf16x8 d[ROWS], x[ROWS];
#pragma unroll
    for (int u = 0; u < ROWS; u++) {
        d[u] = load_bf16x8(dout + (size_t)(r + u * BIAS_GRAD_ROWS) * OC, o, OC, true);
        if (GELU_BACKWARD) x[u] = load_bf16x8(pre_gelu + (size_t)(r + u * BIAS_GRAD_ROWS) * OC, o, OC, true);
    }
#pragma unroll
    for (int u = 0; u < ROWS; u++) {
        if (GELU_BACKWARD) {
#pragma unroll
            for (int e = 0; e < 8; e++)
                d[u].v[e] = __float2bfloat16(__bfloat162float(d[u].v[e]) * gelu_tanh_grad(__bfloat162float(x[u].v[e])));
            store_bf16x8(dout + (size_t)(r + u * BIAS_GRAD_ROWS) * OC, o, OC, true, d[u]);
        }
#pragma unroll
        for (int e = 0; e < 8; e++) acc[e] += __bfloat162float(d[u].v[e]);
    }
}

template <bool GELU_BACKWARD>
__global__ void __launch_bounds__(WARP_SIZE *BIAS_GRAD_ROWS)
bias_grad_partials_kernel(float *partials, bf16 *dout, const bf16 *pre_gelu, int N, int OC, int rows_per_chunk) {
    __shared__ float lanes[BIAS_GRAD_ROWS][WARP_SIZE * 8];
    const int o = (blockIdx.x * WARP_SIZE + threadIdx.x) * 8;
    const int row_begin = blockIdx.y * rows_per_chunk;
    const int row_end = min(N, row_begin + rows_per_chunk);
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (o < OC) {
        int r = row_begin + threadIdx.y;
        for (; r + (BIAS_GRAD_UNROLL - 1) * BIAS_GRAD_ROWS < row_end; r += BIAS_GRAD_UNROLL * BIAS_GRAD_ROWS)
            bias_grad_rows_<GELU_BACKWARD, BIAS_GRAD_UNROLL>(acc, dout, pre_gelu, r, o, OC);
        for (; r < row_end; r += BIAS_GRAD_ROWS) bias_grad_rows_<GELU_BACKWARD, 1>(acc, dout, pre_gelu, r, o, OC);
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

// dbias [OC] (FP32) += column sums of dout [N,OC]. With pre_gelu [N,OC] (dout is the gradient of
// gelu(pre_gelu)), dout is first replaced in place by dout * gelu'(pre_gelu) (BF16) and that is summed;
// dbias may then be NULL (GELU's backward alone). partials: BIAS_GRAD_MAX_CHUNKS * OC floats.
// accumulate: 1 adds to dbias, 0 overwrites it (the same bits as adding to zeros).
// The row chunks depend only on N, so the result is bit-reproducible.
static inline void bias_grad(float *dbias, float *partials, bf16 *dout, const bf16 *pre_gelu, int N, int OC, bool accumulate,
                             cudaStream_t stream) {
    shapeCheck(N > 0 && OC > 0 && OC % 8 == 0, "bias gradient needs OC %% 8 == 0, got N=%d OC=%d", N, OC);
    shapeCheck((uintptr_t)dout % 16 == 0 && (uintptr_t)pre_gelu % 16 == 0, "dout and pre_gelu must be 16-byte aligned");
    shapeCheck(dbias != NULL || pre_gelu != NULL, "bias gradient: nothing to compute");
    const int rows_per_chunk = ceil_div(N, BIAS_GRAD_MAX_CHUNKS) < 64 ? 64 : ceil_div(N, BIAS_GRAD_MAX_CHUNKS);
    const int chunks = ceil_div(N, rows_per_chunk);
    const dim3 grid(ceil_div(OC, WARP_SIZE * 8), chunks), block(WARP_SIZE, BIAS_GRAD_ROWS);
    if (pre_gelu != NULL) bias_grad_partials_kernel<true><<<grid, block, 0, stream>>>(partials, dout, pre_gelu, N, OC, rows_per_chunk);
    else bias_grad_partials_kernel<false><<<grid, block, 0, stream>>>(partials, dout, NULL, N, OC, rows_per_chunk);
    cudaCheckLaunch();
    if (dbias == NULL) return;
    column_partials_add(dbias, partials, chunks, OC, accumulate, stream);
}

// ----------------------------------------------------------------------------------------------
// the dispatch point

// Runs one of a linear layer's GEMMs in the context's precision. Operands as in the header comment:
// Fprop (out, inp, weight, bias or NULL, pre_gelu or NULL), Dgrad (dinp, dout, weight, NULL, NULL),
// Wgrad (dweight, dout, inp, NULL, NULL). accumulate (Wgrad only): 1 adds the product to dweight, 0 writes it.
static inline void linear_gemm(const LinearContext *ctx, LinearGemm which, void *out, const bf16 *x, const bf16 *y,
                               const bf16 *bias, bf16 *pre_gelu, int N, int IC, int OC, bool accumulate, cudaStream_t stream) {
    shapeCheck(bias == NULL || which == LINEAR_FPROP, "only Fprop takes a bias");
    shapeCheck(!accumulate || which == LINEAR_WGRAD, "only Wgrad accumulates");
    shapeCheck(pre_gelu == NULL || (which == LINEAR_FPROP && bias != NULL), "GELU fuses into Fprop (with a bias) only");
    switch (ctx->precision) {
    case PRECISION_BF16: {
        MatmulArgs g;
        memset(&g, 0, sizeof(g));
        g.a_type = CUDA_R_16BF;
        g.b_type = CUDA_R_16BF;
        g.alpha = 1.0f;
        g.C = out;
        g.A = x;
        g.B = y;
        if (which == LINEAR_FPROP) {         // out[N,OC] = inp[N,IC] . weight[OC,IC]^T
            g.M = N; g.N = OC; g.K = IC;
            g.c_type = CUDA_R_16BF;
            if (bias != NULL) {
                g.epilogue = pre_gelu != NULL ? MATMUL_EPILOGUE_GELU_BIAS : MATMUL_EPILOGUE_BIAS;
                g.bias = bias;
                g.aux = pre_gelu;
            }
        } else if (which == LINEAR_DGRAD) {  // dinp[N,IC] = dout[N,OC] . weight[OC,IC]: weight is [K,N]
            g.M = N; g.N = IC; g.K = OC;
            g.c_type = CUDA_R_16BF;
            g.b_transposed = 1;
        } else {                             // dweight[OC,IC] (+)= dout[N,OC]^T . inp[N,IC]: both [K, .]
            g.M = OC; g.N = IC; g.K = N;
            g.c_type = CUDA_R_32F;
            g.beta = accumulate ? 1.0f : 0.0f;
            g.a_transposed = 1;
            g.b_transposed = 1;
        }
        matmul_cublaslt(ctx->matmul, &g, stream);
        break;
    }
    default: fatal("linear layer: precision '%s' has no GEMM path built", PRECISION_NAMES[ctx->precision]);
    }
}

// Fprop: out [N,OC] = inp [N,IC] . weight [OC,IC]^T + bias [OC] (bias may be NULL). With pre_gelu
// [N,OC] (needs a bias): pre_gelu = that result and out = gelu(pre_gelu).
static inline void linear_forward(const LinearContext *ctx, bf16 *out, bf16 *pre_gelu, const bf16 *inp, const bf16 *weight,
                                  const bf16 *bias, int N, int IC, int OC, cudaStream_t stream) {
    linear_gemm(ctx, LINEAR_FPROP, out, inp, weight, bias, pre_gelu, N, IC, OC, false, stream);
}

// Dgrad into dinp [N,IC] (overwritten; skipped when dinp is NULL), Wgrad into dweight [OC,IC] and
// dbias [OC] (FP32; dbias NULL when the caller takes the bias gradient from another pass).
// dout [N,OC], inp [N,IC], weight [OC,IC]. With pre_gelu [N,IC] (inp = gelu(pre_gelu)), dinp is the
// gradient of pre_gelu instead, and pre_gelu_dbias [IC] (FP32; may be NULL) += its column sums: the
// bias gradient of the linear layer whose output was pre_gelu.
// accumulate: 1 adds to dweight, dbias and pre_gelu_dbias; 0 overwrites them (first micro-step).
static inline void linear_backward(const LinearContext *ctx, bf16 *dinp, float *dweight, float *dbias, const bf16 *dout,
                                   const bf16 *inp, const bf16 *weight, const bf16 *pre_gelu, float *pre_gelu_dbias,
                                   int N, int IC, int OC, bool accumulate, cudaStream_t stream) {
    shapeCheck(pre_gelu == NULL || dinp != NULL, "GELU's backward needs dinp");
    shapeCheck(pre_gelu_dbias == NULL || pre_gelu != NULL, "pre_gelu_dbias needs pre_gelu");
    shapeCheck((dbias == NULL || OC <= ctx->max_out_channels) && (pre_gelu == NULL || IC <= ctx->max_out_channels),
               "bias gradient of %d / %d channels, scratch sized for %d", OC, IC, ctx->max_out_channels);
    if (dinp != NULL) {
        linear_gemm(ctx, LINEAR_DGRAD, dinp, dout, weight, NULL, NULL, N, IC, OC, false, stream);
        if (pre_gelu != NULL) bias_grad(pre_gelu_dbias, ctx->bias_partials, dinp, pre_gelu, N, IC, accumulate, stream);
    }
    linear_gemm(ctx, LINEAR_WGRAD, dweight, dout, inp, NULL, NULL, N, IC, OC, accumulate, stream);
    if (dbias != NULL) bias_grad(dbias, ctx->bias_partials, (bf16 *)dout, NULL, N, OC, accumulate, stream);
}

#endif // CORE_LINEAR_CUH
