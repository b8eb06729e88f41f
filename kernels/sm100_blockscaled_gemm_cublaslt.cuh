// Block-scaled GEMMs on Blackwell (sm_100) through cuBLASLt: C[M,N] = alpha * A[M,K] . B[N,K]^T,
// FP32 accumulation, C row-major BF16 or FP32, both operands K-major ("TN", the only layout NVFP4
// takes). Formats (the layouts of the quantizers kernels/quantize_{mxfp8_block32,nvfp4_block16}.cuh):
//   MXFP8: E4M3 [rows, K] + E8M0 scales [rows, K/32]  -> CUBLASLT_MATMUL_MATRIX_SCALE_VEC32_UE8M0
//   NVFP4: packed E2M1 [rows, K/2] + UE4M3 scales [rows, K/16] + FP32 s_dec per tensor
//          -> CUBLASLT_MATMUL_MATRIX_SCALE_VEC16_UE4M3, with s_dec_A * s_dec_B folded into a
//          device-side alpha (CUBLASLT_POINTER_MODE_DEVICE), so nothing syncs with the host.
// The scales arrive row-major and unswizzled; each call swizzles them into the 128 x 4 tile layout
// cuBLASLt reads (kernels/scale_swizzle.h) in scratch memory owned by the context.
//
// NOT RUNNABLE ON HOPPER: this path is compiled and linked for sm_100a (the Makefile's SM100_SRCS),
// and on any device other than compute capability 10.x the launcher refuses with a message; it
// never falls back to another path. It has not been run on a Blackwell GPU in this project yet.
//
// Mapping to cuBLASLt's column-major view as in kernels/matmul_cublaslt.cuh: cuBLASLt's "A" is our
// B (op T, K x N, ld K) and its "B" is our A (op N, K x M, ld K), so our B's scales go to
// CUBLASLT_MATMUL_DESC_A_SCALE_POINTER and our A's to B_SCALE_POINTER.
#ifndef KERNELS_SM100_BLOCKSCALED_GEMM_CUBLASLT_CUH
#define KERNELS_SM100_BLOCKSCALED_GEMM_CUBLASLT_CUH

#include <stdint.h>
#include <string.h>
#include "kernels/cuda_common.h"
#include "kernels/scale_swizzle.h"
#include "core/utils.h"

#define BLOCKSCALED_WORKSPACE_BYTES ((size_t)32 * 1024 * 1024)

typedef enum { BLOCKSCALED_MXFP8 = 0, BLOCKSCALED_NVFP4 = 1 } BlockScaledFormat;

typedef struct {
    BlockScaledFormat format;
    const void *A;                // [M,K] E4M3, or [M,K/2] packed E2M1
    const void *B;                // [N,K] E4M3, or [N,K/2] packed E2M1
    const uint8_t *a_scales;      // [M, K/32] E8M0 or [M, K/16] UE4M3, row-major, unswizzled
    const uint8_t *b_scales;      // [N, K/32] or [N, K/16]
    const float *a_s_dec;         // NVFP4 only: device pointer to A's per-tensor decode scale
    const float *b_s_dec;         // NVFP4 only
    void *C;                      // [M,N] row-major
    cudaDataType_t c_type;        // CUDA_R_16BF or CUDA_R_32F
    int M, N, K;
    float alpha;
} BlockScaledGemmArgs;

typedef struct {
    cublasLtHandle_t handle;
    void *workspace;
    size_t workspace_bytes;
    uint8_t *swizzled;       // swizzled scales: B's (cuBLASLt's A) first, then A's
    size_t swizzled_bytes;   // capacity
    float *alpha_beta;       // device: [0] = alpha of the current call, [1] = beta = 0
} BlockScaledGemmContext;

// ----------------------------------------------------------------------------
// Kernels

// out = the swizzled, zero-padded layout of scales [rows, cols] (row-major): one thread per
// output byte, gathering its source through scale_swizzle_source.
__global__ void scale_swizzle_kernel(uint8_t *out, const uint8_t *scales, int rows, int cols, size_t out_bytes) {
    size_t o = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= out_bytes) return;
    int row, col;
    scale_swizzle_source(o, cols, &row, &col);
    out[o] = (row < rows && col < cols) ? scales[(size_t)row * cols + col] : (uint8_t)0;
}

// alpha_beta[0] = alpha * (*s_dec_a) * (*s_dec_b) (a NULL factor counts as 1), alpha_beta[1] = 0.
__global__ void blockscaled_alpha_kernel(float *alpha_beta, float alpha, const float *s_dec_a, const float *s_dec_b) {
    float a = alpha;
    if (s_dec_a != NULL) a *= *s_dec_a;
    if (s_dec_b != NULL) a *= *s_dec_b;
    alpha_beta[0] = a;
    alpha_beta[1] = 0.0f;
}

// Writes the swizzled layout of scales [rows, cols] to out (scale_swizzle_bytes(rows, cols) bytes).
static inline void scale_swizzle(uint8_t *out, const uint8_t *scales, int rows, int cols, cudaStream_t stream) {
    shapeCheck(rows > 0 && cols > 0, "scale matrix %d x %d must be non-empty", rows, cols);
    size_t out_bytes = scale_swizzle_bytes(rows, cols);
    const int block = 256;
    unsigned int grid = (unsigned int)((out_bytes + block - 1) / block);
    scale_swizzle_kernel<<<grid, block, 0, stream>>>(out, scales, rows, cols, out_bytes);
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------
// Host side

static inline const char *blockscaled_format_name(BlockScaledFormat f) { return f == BLOCKSCALED_NVFP4 ? "nvfp4" : "mxfp8"; }
static inline int blockscaled_block_size(BlockScaledFormat f) { return f == BLOCKSCALED_NVFP4 ? 16 : 32; }

// 1 when the current device has the block-scaled tensor cores cuBLASLt uses (compute capability 10.x).
static inline int blockscaled_gemm_device_supported(void) {
    int device = 0, major = 0;
    cudaCheck(cudaGetDevice(&device));
    cudaCheck(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    return major == 10;
}

// Checks the problem and the device. Returns 0, or -1 with the reason in err. Rules: a Blackwell
// datacenter GPU (sm_100/sm_103); K % 32 == 0 (16-byte rows of both formats); N % 16 == 0 (16-byte
// rows of C); 16-byte aligned operand, scale and output pointers; NVFP4 needs both s_dec pointers.
static inline int blockscaled_gemm_validate(const BlockScaledGemmArgs *g, char *err, size_t err_size) {
    const char *name = blockscaled_format_name(g->format);
    if (!blockscaled_gemm_device_supported()) {
        int device = 0, major = 0, minor = 0;
        cudaCheck(cudaGetDevice(&device));
        cudaCheck(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
        cudaCheck(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
        return set_error(err, err_size,
                         "%s block-scaled GEMM: cuBLASLt's block-scaled modes need a Blackwell GPU (sm_100/sm_103); "
                         "this device is sm_%d%d (on Hopper use the sm90 emulation kernels)", name, major, minor);
    }
    if (g->format != BLOCKSCALED_MXFP8 && g->format != BLOCKSCALED_NVFP4)
        return set_error(err, err_size, "block-scaled GEMM: unknown format %d", (int)g->format);
    if (g->M <= 0 || g->N <= 0 || g->K <= 0)
        return set_error(err, err_size, "%s GEMM: M=%d N=%d K=%d must be positive", name, g->M, g->N, g->K);
    if (g->K % 32 != 0) return set_error(err, err_size, "%s GEMM: needs K %% 32 == 0, got K=%d", name, g->K);
    if (g->N % 16 != 0) return set_error(err, err_size, "%s GEMM: needs N %% 16 == 0 (output rows), got N=%d", name, g->N);
    if (g->c_type != CUDA_R_16BF && g->c_type != CUDA_R_32F)
        return set_error(err, err_size, "%s GEMM: output must be bf16 or fp32", name);
    if (g->A == NULL || g->B == NULL || g->a_scales == NULL || g->b_scales == NULL || g->C == NULL)
        return set_error(err, err_size, "%s GEMM: NULL operand or scale pointer", name);
    if (((uintptr_t)g->A | (uintptr_t)g->B | (uintptr_t)g->C) % 16 != 0)
        return set_error(err, err_size, "%s GEMM: operand and output pointers must be 16-byte aligned", name);
    if (g->format == BLOCKSCALED_NVFP4 && (g->a_s_dec == NULL || g->b_s_dec == NULL))
        return set_error(err, err_size, "nvfp4 GEMM: needs both per-tensor s_dec pointers");
    if (g->format == BLOCKSCALED_MXFP8 && (g->a_s_dec != NULL || g->b_s_dec != NULL))
        return set_error(err, err_size, "mxfp8 GEMM: takes no per-tensor scales (fold them into alpha)");
    return 0;
}

static inline void blockscaled_gemm_context_init(BlockScaledGemmContext *ctx) {
    memset(ctx, 0, sizeof(*ctx));
    cublasCheck(cublasLtCreate(&ctx->handle));
    ctx->workspace_bytes = BLOCKSCALED_WORKSPACE_BYTES;
    cudaCheck(cudaMalloc(&ctx->workspace, ctx->workspace_bytes));
    cudaCheck(cudaMalloc(&ctx->alpha_beta, 2 * sizeof(float)));
}

static inline void blockscaled_gemm_context_free(BlockScaledGemmContext *ctx) {
    cudaCheck(cudaFree(ctx->swizzled));
    cudaCheck(cudaFree(ctx->alpha_beta));
    cudaCheck(cudaFree(ctx->workspace));
    cublasCheck(cublasLtDestroy(ctx->handle));
    memset(ctx, 0, sizeof(*ctx));
}

// Runs the GEMM on `stream`: swizzles both scale matrices into the context's scratch, computes the
// device-side alpha, and calls cuBLASLt. Returns 0, or -1 with the reason in err (wrong device,
// shape rule, or no cuBLASLt algorithm); nothing is launched then.
static inline int blockscaled_gemm_try(BlockScaledGemmContext *ctx, const BlockScaledGemmArgs *g, cudaStream_t stream,
                                       char *err, size_t err_size) {
    if (blockscaled_gemm_validate(g, err, err_size) != 0) return -1;
    const int nvfp4 = g->format == BLOCKSCALED_NVFP4;
    const int scale_cols = g->K / blockscaled_block_size(g->format);
    const cudaDataType_t elem_type = nvfp4 ? CUDA_R_4F_E2M1 : CUDA_R_8F_E4M3;
    const int32_t scale_mode = nvfp4 ? CUBLASLT_MATMUL_MATRIX_SCALE_VEC16_UE4M3 : CUBLASLT_MATMUL_MATRIX_SCALE_VEC32_UE8M0;

    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t layout_a, layout_b, layout_c;
    cublasCheck(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
    int32_t pointer_mode = CUBLASLT_POINTER_MODE_DEVICE;
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof(op_t)));
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof(op_n)));
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &scale_mode, sizeof(scale_mode)));
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &scale_mode, sizeof(scale_mode)));
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_POINTER_MODE, &pointer_mode, sizeof(pointer_mode)));
    cublasCheck(cublasLtMatrixLayoutCreate(&layout_a, elem_type, g->K, g->N, g->K));
    cublasCheck(cublasLtMatrixLayoutCreate(&layout_b, elem_type, g->K, g->M, g->K));
    cublasCheck(cublasLtMatrixLayoutCreate(&layout_c, g->c_type, g->N, g->M, g->N));

    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &ctx->workspace_bytes, sizeof(ctx->workspace_bytes)));
    cublasLtMatmulHeuristicResult_t heuristic;
    int found = 0;
    cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(ctx->handle, desc, layout_a, layout_b, layout_c, layout_c,
                                                           pref, 1, &heuristic, &found);
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    int rc = 0;
    if (status != CUBLAS_STATUS_SUCCESS || found == 0) {
        rc = set_error(err, err_size, "%s GEMM: cuBLASLt has no block-scaled algorithm for M=%d N=%d K=%d (status %d)",
                       blockscaled_format_name(g->format), g->M, g->N, g->K, (int)status);
    } else {
        // Scratch: cuBLASLt's A scales (our B, N rows) then its B scales (our A, M rows), each
        // starting 256-byte aligned.
        size_t bytes_b = (scale_swizzle_bytes(g->N, scale_cols) + 255) / 256 * 256;
        size_t bytes_a = scale_swizzle_bytes(g->M, scale_cols);
        if (bytes_b + bytes_a > ctx->swizzled_bytes) {
            cudaCheck(cudaFree(ctx->swizzled));
            cudaCheck(cudaMalloc(&ctx->swizzled, bytes_b + bytes_a));
            ctx->swizzled_bytes = bytes_b + bytes_a;
        }
        uint8_t *lt_a_scales = ctx->swizzled, *lt_b_scales = ctx->swizzled + bytes_b;
        scale_swizzle(lt_a_scales, g->b_scales, g->N, scale_cols, stream);
        scale_swizzle(lt_b_scales, g->a_scales, g->M, scale_cols, stream);
        blockscaled_alpha_kernel<<<1, 1, 0, stream>>>(ctx->alpha_beta, g->alpha, g->a_s_dec, g->b_s_dec);
        cudaCheckLaunch();
        cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &lt_a_scales, sizeof(lt_a_scales)));
        cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &lt_b_scales, sizeof(lt_b_scales)));
        cublasCheck(cublasLtMatmul(ctx->handle, desc, ctx->alpha_beta, g->B, layout_a, g->A, layout_b, ctx->alpha_beta + 1,
                                   g->C, layout_c, g->C, layout_c, &heuristic.algo, ctx->workspace, ctx->workspace_bytes,
                                   stream));
    }
    cublasCheck(cublasLtMatrixLayoutDestroy(layout_a));
    cublasCheck(cublasLtMatrixLayoutDestroy(layout_b));
    cublasCheck(cublasLtMatrixLayoutDestroy(layout_c));
    cublasCheck(cublasLtMatmulDescDestroy(desc));
    return rc;
}

// Runs the GEMM on `stream`; exits with the reason when the device or the problem is not supported.
static inline void blockscaled_gemm(BlockScaledGemmContext *ctx, const BlockScaledGemmArgs *g, cudaStream_t stream) {
    char err[256];
    if (blockscaled_gemm_try(ctx, g, stream, err, sizeof(err)) != 0) fatal("%s", err);
}

#endif // KERNELS_SM100_BLOCKSCALED_GEMM_CUBLASLT_CUH
