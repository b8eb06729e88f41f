// GEMMs through cuBLASLt: C[M,N] = alpha * A[M,K] . B[N,K]^T (+ beta * C), FP32 accumulation.
// Every operand is row-major with K contiguous ("TN": both operands K-major, the only FP8 layout
// Hopper's tensor cores take). Operand types: BF16 x BF16, and FP8 E4M3 x E4M3 / E4M3 x E5M2 /
// E5M2 x E4M3 with per-tensor FP32 decode scales (s_dec, device pointers) that cuBLASLt multiplies
// into the product. Output C is BF16 or FP32, row-major [M,N].
//
// One context per device holds the handle, the workspace and a cache of the chosen algorithm per
// problem (shape, types, accumulation mode, whether C is read (beta != 0), alignments), so repeated calls on one
// shape pay for the choice once.
// The choice is made on the first call of a problem, on its real operands: the heuristic proposes up to
// MATMUL_TUNE_CANDIDATES algorithms, each runs once and the checksum of its output (C, and aux for
// GELU_BIAS) is compared with that of the heuristic's first proposal; only the candidates whose output is
// bit-identical to it are timed (MATMUL_TUNE_REPEATS runs each, CUDA events), and the fastest is kept.
// So a different timing in another run may pick another kernel, but never other bits: the output is
// always the heuristic's first proposal's, and runs stay bit-reproducible. When beta != 0, C is saved
// before the trials and restored after them, in a trial buffer that the context's owner provides
// (matmul_context_set_trial_buffer; the trainer counts it in its memory plan): nothing is allocated
// after matmul_context_init. A beta != 0 problem whose C does not fit there is not tried: it keeps the
// heuristic's first proposal (num_identical = 0 in its plan says so).
// Epilogues are a field of MatmulArgs (BF16 operands and output only): BIAS adds a BF16 bias[N] to
// every row of C; GELU_BIAS also applies GELU (tanh approximation) and stores the pre-activation in
// aux. (cuBLASLt's DGELU epilogue is not offered: on the H100 it ran a GPT-2 Dgrad at less than half
// the plain GEMM's speed, slower than the plain GEMM plus a separate pass; see core/linear.cuh.)
//
// BF16 operands may also be stored the other way round (the backward GEMMs of a linear layer):
// a_transposed says A is stored as [K,M] row-major (M contiguous), b_transposed that B is stored as
// [K,N] row-major (N contiguous); the product is the same C = A . B^T. FP8 takes only the TN layout.
//
// Mapping to cuBLASLt's column-major view: row-major C[M,N] is column-major C^T[N,M], and
// C^T = B . A^T, so cuBLASLt's "A" is our B (op T, K x N, ld K; or op N, N x K, ld N when
// b_transposed) and its "B" is our A (op N, K x M, ld K; or op T, M x K, ld M when a_transposed).
// Hence our A's scale goes to CUBLASLT_MATMUL_DESC_B_SCALE_POINTER and vice versa.
#ifndef KERNELS_MATMUL_CUBLASLT_CUH
#define KERNELS_MATMUL_CUBLASLT_CUH

#include <assert.h>
#include <stdint.h>
#include <string.h>
#include "kernels/cuda_common.h"
#include "core/utils.h"

// Bytes of cuBLASLt workspace (32 MiB, what NVIDIA recommends for Hopper).
#define MATMUL_WORKSPACE_BYTES ((size_t)32 * 1024 * 1024)
#define MATMUL_PLAN_CACHE_SIZE 128
// How many of the heuristic's algorithms are tried on a problem's first call, and timed runs of each.
#define MATMUL_TUNE_CANDIDATES 8
#define MATMUL_TUNE_REPEATS 3
// Device bytes a context allocates: the workspace and the trials' checksums.
#define MATMUL_CONTEXT_DEVICE_BYTES (MATMUL_WORKSPACE_BYTES + MATMUL_TUNE_CANDIDATES * sizeof(unsigned long long))

// What runs after the product.
typedef enum {
    MATMUL_EPILOGUE_NONE = 0,
    MATMUL_EPILOGUE_BIAS,       // C[m, n] = product[m, n] + bias[n]; bias BF16 [N], 16-byte aligned
    MATMUL_EPILOGUE_GELU_BIAS,  // aux[m, n] = product[m, n] + bias[n], C[m, n] = gelu(aux[m, n])
} MatmulEpilogue;

typedef struct {
    const void *A;             // [M,K] row-major, element type a_type
    const void *B;             // [N,K] row-major, element type b_type
    void *C;                   // [M,N] row-major, element type c_type (read when beta != 0)
    cudaDataType_t a_type;     // CUDA_R_16BF, CUDA_R_8F_E4M3 or CUDA_R_8F_E5M2
    cudaDataType_t b_type;
    cudaDataType_t c_type;     // CUDA_R_16BF or CUDA_R_32F
    const float *a_scale_dec;  // FP8 only: device pointer to A's s_dec (NULL for BF16)
    const float *b_scale_dec;  // FP8 only: device pointer to B's s_dec
    int M, N, K;
    float alpha, beta;
    int fast_accum;            // FP8 only: 1 = fast accumulation (TE: Fprop), 0 = split (Dgrad, Wgrad)
    int a_transposed;          // BF16 only: A stored as [K,M] row-major (see the header comment)
    int b_transposed;          // BF16 only: B stored as [K,N] row-major
    MatmulEpilogue epilogue;
    const void *bias;          // BIAS, GELU_BIAS: device pointer to bias[N] (BF16)
    void *aux;                 // GELU_BIAS: pre-activation output, BF16 [M,N] row-major
} MatmulArgs;

// The heuristic's result for one problem, with the descriptors it was chosen for.
typedef struct {
    int M, N, K;
    cudaDataType_t a_type, b_type, c_type;
    int fast_accum;
    int a_transposed, b_transposed;
    MatmulEpilogue epilogue;
    int reads_c;                    // beta != 0: tuned with C read (bit-identity checked that way), so its own plan
    int align_a, align_b, align_c;  // bytes (power of two, at most 256) the chosen algorithm may assume
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t layout_a, layout_b, layout_c;  // in cuBLASLt's naming (a = our B)
    cublasLtMatmulAlgo_t algo;
    int algo_rank;       // index of the chosen algorithm in the heuristic's list (0 = its first proposal)
    int num_identical;   // candidates whose output was bit-identical to the first proposal's (incl. it);
                         // 0: not tried (beta != 0 and C larger than the trial buffer)
    int num_candidates;  // algorithms the heuristic proposed
} MatmulPlan;

typedef struct {
    cublasLtHandle_t handle;
    void *workspace;
    size_t workspace_bytes;
    unsigned long long *tune_sums;  // [MATMUL_TUNE_CANDIDATES] checksums of the trials' outputs
    void *trial_buffer;             // owner's device memory to save C during the trials of beta != 0 problems
    size_t trial_buffer_bytes;
    MatmulPlan plans[MATMUL_PLAN_CACHE_SIZE];
    int num_plans;
} MatmulContext;

static inline int matmul_type_is_fp8(cudaDataType_t t) { return t == CUDA_R_8F_E4M3 || t == CUDA_R_8F_E5M2; }

// Largest power of two, at most 256, that divides the address (cuBLASLt's alignment classes).
static inline int matmul_pointer_alignment(const void *ptr) {
    int align = 256;
    while (align > 1 && (uintptr_t)ptr % (uintptr_t)align != 0) align /= 2;
    return align;
}

static inline const char *matmul_type_name(cudaDataType_t t) {
    switch (t) {
        case CUDA_R_16BF: return "bf16";
        case CUDA_R_32F: return "fp32";
        case CUDA_R_8F_E4M3: return "fp8e4m3";
        case CUDA_R_8F_E5M2: return "fp8e5m2";
        default: return "unsupported type";
    }
}

// Adds an order-independent hash of n 16-bit words (any element type viewed as uint16) into *sum:
// sum over i of mix(i, word[i]), so two buffers give the same sum when their bits agree.
__global__ void matmul_checksum_kernel(unsigned long long *sum, const uint16_t *words, size_t n) {
    __shared__ unsigned long long block_sum[32];
    unsigned long long local = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned long long h = ((unsigned long long)i << 16) ^ words[i];  // splitmix64 finalizer
        h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
        h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
        local += h ^ (h >> 31);
    }
    for (int offset = 16; offset > 0; offset /= 2) local += __shfl_xor_sync(0xffffffffu, local, offset);
    if (threadIdx.x % 32 == 0) block_sum[threadIdx.x / 32] = local;
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned long long total = 0;
        for (int w = 0; w < (int)(blockDim.x / 32); w++) total += block_sum[w];
        atomicAdd(sum, total);
    }
}

// Adds the hash of `bytes` bytes (even) at `ptr` into the device counter *sum, on `stream`.
static inline void matmul_checksum(unsigned long long *sum, const void *ptr, size_t bytes, cudaStream_t stream) {
    assert(bytes % 2 == 0);
    const int block_size = 512;
    const int grid_size = 1024;
    matmul_checksum_kernel<<<grid_size, block_size, 0, stream>>>(sum, (const uint16_t *)ptr, bytes / 2);
    cudaCheckLaunch();
}

// Checks that cuBLASLt on Hopper can run this problem. Returns 0, or -1 with the reason in err.
// Rules: operands both BF16, or both FP8 and not both E5M2; output BF16 or FP32; FP8 needs
// K % 16 == 0 and N % 16 == 0 (16-byte leading dimensions of operands and output), both scale
// pointers, 16-byte aligned operand and scale pointers; fast_accum is for FP8 only; epilogues take BF16
// operands and output, and exactly the bias / aux pointers they use (16-byte aligned; aux needs N % 8 == 0).
static inline int matmul_cublaslt_validate(const MatmulArgs *g, char *err, size_t err_size) {
    if (g->M <= 0 || g->N <= 0 || g->K <= 0)
        return set_error(err, err_size, "matmul: M=%d N=%d K=%d must be positive", g->M, g->N, g->K);
    if (g->A == NULL || g->B == NULL || g->C == NULL) return set_error(err, err_size, "matmul: NULL operand pointer");
    if (g->c_type != CUDA_R_16BF && g->c_type != CUDA_R_32F)
        return set_error(err, err_size, "matmul: output type %s, want bf16 or fp32", matmul_type_name(g->c_type));
    if (g->epilogue < MATMUL_EPILOGUE_NONE || g->epilogue > MATMUL_EPILOGUE_GELU_BIAS)
        return set_error(err, err_size, "matmul: epilogue %d not implemented", (int)g->epilogue);
    const int wants_bias = g->epilogue == MATMUL_EPILOGUE_BIAS || g->epilogue == MATMUL_EPILOGUE_GELU_BIAS;
    const int wants_aux = g->epilogue == MATMUL_EPILOGUE_GELU_BIAS;
    if (g->epilogue != MATMUL_EPILOGUE_NONE && (g->a_type != CUDA_R_16BF || g->b_type != CUDA_R_16BF || g->c_type != CUDA_R_16BF))
        return set_error(err, err_size, "matmul: epilogue %d takes bf16 operands and a bf16 output", (int)g->epilogue);
    if (wants_bias != (g->bias != NULL) || (g->bias != NULL && (uintptr_t)g->bias % 16 != 0))
        return set_error(err, err_size, "matmul: epilogue %d %s", (int)g->epilogue, wants_bias ? "needs a 16-byte aligned bias pointer" : "takes no bias pointer");
    if (wants_aux != (g->aux != NULL) || (g->aux != NULL && ((uintptr_t)g->aux % 16 != 0 || g->N % 8 != 0)))
        return set_error(err, err_size, "matmul: epilogue %d %s", (int)g->epilogue,
                         wants_aux ? "needs a 16-byte aligned aux pointer and N %% 8 == 0" : "takes no aux pointer");
    int a8 = matmul_type_is_fp8(g->a_type), b8 = matmul_type_is_fp8(g->b_type);
    if (!a8 && !b8) {
        if (g->a_type != CUDA_R_16BF || g->b_type != CUDA_R_16BF)
            return set_error(err, err_size, "matmul: operand types %s x %s, want bf16 x bf16 or fp8 x fp8",
                             matmul_type_name(g->a_type), matmul_type_name(g->b_type));
        if (g->a_scale_dec != NULL || g->b_scale_dec != NULL) return set_error(err, err_size, "matmul: bf16 operands take no scale pointers");
        if (g->fast_accum) return set_error(err, err_size, "matmul: fast_accum applies to fp8 operands only");
        return 0;
    }
    if (g->a_transposed || g->b_transposed)
        return set_error(err, err_size, "matmul: fp8 operands must be K-major (a_transposed = b_transposed = 0)");
    if (!a8 || !b8)
        return set_error(err, err_size, "matmul: mixed operand types %s x %s, want both fp8 or both bf16",
                         matmul_type_name(g->a_type), matmul_type_name(g->b_type));
    if (g->a_type == CUDA_R_8F_E5M2 && g->b_type == CUDA_R_8F_E5M2)
        return set_error(err, err_size, "matmul: fp8e5m2 x fp8e5m2 has no Hopper kernel; one operand must be fp8e4m3");
    if (g->K % 16 != 0) return set_error(err, err_size, "matmul: fp8 needs K %% 16 == 0, got K=%d", g->K);
    if (g->N % 16 != 0) return set_error(err, err_size, "matmul: fp8 needs N %% 16 == 0 (output leading dimension), got N=%d", g->N);
    if (((uintptr_t)g->A | (uintptr_t)g->B | (uintptr_t)g->C) % 16 != 0)
        return set_error(err, err_size, "matmul: fp8 needs 16-byte aligned A, B, C pointers");
    if (g->a_scale_dec == NULL || g->b_scale_dec == NULL) return set_error(err, err_size, "matmul: fp8 needs both s_dec scale pointers");
    if (((uintptr_t)g->a_scale_dec | (uintptr_t)g->b_scale_dec) % 16 != 0)
        return set_error(err, err_size, "matmul: fp8 needs 16-byte aligned scale pointers (cuBLASLt refuses others at run time)");
    return 0;
}

static inline void matmul_context_init(MatmulContext *ctx) {
    memset(ctx, 0, sizeof(*ctx));
    cublasCheck(cublasLtCreate(&ctx->handle));
    ctx->workspace_bytes = MATMUL_WORKSPACE_BYTES;
    cudaCheck(cudaMalloc(&ctx->workspace, ctx->workspace_bytes));
    cudaCheck(cudaMalloc(&ctx->tune_sums, MATMUL_TUNE_CANDIDATES * sizeof(unsigned long long)));
}

// Gives the context `bytes` of device memory at `buffer` (owned by the caller, kept while the context
// lives) for saving C during the algorithm trials of beta != 0 problems.
static inline void matmul_context_set_trial_buffer(MatmulContext *ctx, void *buffer, size_t bytes) {
    ctx->trial_buffer = buffer;
    ctx->trial_buffer_bytes = bytes;
}

static inline void matmul_context_free(MatmulContext *ctx) {
    for (int i = 0; i < ctx->num_plans; i++) {
        MatmulPlan *p = &ctx->plans[i];
        cublasCheck(cublasLtMatrixLayoutDestroy(p->layout_a));
        cublasCheck(cublasLtMatrixLayoutDestroy(p->layout_b));
        cublasCheck(cublasLtMatrixLayoutDestroy(p->layout_c));
        cublasCheck(cublasLtMatmulDescDestroy(p->desc));
    }
    cudaCheck(cudaFree(ctx->workspace));
    cudaCheck(cudaFree(ctx->tune_sums));
    cublasCheck(cublasLtDestroy(ctx->handle));
    memset(ctx, 0, sizeof(*ctx));
}

// Sets the FP8 decode scales on the descriptor (cuBLASLt's A is our B, and vice versa).
static inline void matmul_set_scale_pointers(cublasLtMatmulDesc_t desc, const MatmulArgs *g) {
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &g->b_scale_dec, sizeof(g->b_scale_dec)));
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &g->a_scale_dec, sizeof(g->a_scale_dec)));
}

// Sets the epilogue's bias and aux pointers on the descriptor (those the epilogue uses).
static inline void matmul_set_epilogue_pointers(cublasLtMatmulDesc_t desc, const MatmulArgs *g) {
    if (g->bias != NULL) cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g->bias, sizeof(g->bias)));
    if (g->aux != NULL) cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &g->aux, sizeof(g->aux)));
}

// Launches the plan's product with `algo` on `stream` (the descriptor's pointers already set).
static inline cublasStatus_t matmul_launch(MatmulContext *ctx, const MatmulPlan *p, const MatmulArgs *g,
                                           const cublasLtMatmulAlgo_t *algo, cudaStream_t stream) {
    return cublasLtMatmul(ctx->handle, p->desc, &g->alpha, g->B, p->layout_a, g->A, p->layout_b, &g->beta, g->C,
                          p->layout_c, g->C, p->layout_c, algo, ctx->workspace, ctx->workspace_bytes, stream);
}

// Chooses the plan's algorithm among the heuristic's `found` proposals (see the header comment): runs
// each on g's operands, keeps those whose output hashes like proposal 0's, times them, takes the fastest.
// C (and aux) are left as before the trials when beta != 0, and overwritten by the caller's run anyway.
static inline void matmul_plan_tune(MatmulContext *ctx, MatmulPlan *p, const MatmulArgs *g,
                                    const cublasLtMatmulHeuristicResult_t *proposals, int found, cudaStream_t stream) {
    p->algo = proposals[0].algo;
    p->algo_rank = 0;
    p->num_identical = 1;
    p->num_candidates = found;
    if (found == 1) return;
    const size_t c_bytes = (size_t)g->M * g->N * (g->c_type == CUDA_R_32F ? 4 : 2);
    void *c_saved = NULL;
    if (g->beta != 0.0f) {
        if (c_bytes > ctx->trial_buffer_bytes) {
            p->num_identical = 0;
            return;
        }
        c_saved = ctx->trial_buffer;
        cudaCheck(cudaMemcpyAsync(c_saved, g->C, c_bytes, cudaMemcpyDeviceToDevice, stream));
    }
    unsigned long long *sums_d = ctx->tune_sums;
    unsigned long long sums[MATMUL_TUNE_CANDIDATES];
    int runs[MATMUL_TUNE_CANDIDATES];
    cudaCheck(cudaMemsetAsync(sums_d, 0, found * sizeof(unsigned long long), stream));
    for (int i = 0; i < found; i++) {
        if (c_saved != NULL) cudaCheck(cudaMemcpyAsync(g->C, c_saved, c_bytes, cudaMemcpyDeviceToDevice, stream));
        runs[i] = matmul_launch(ctx, p, g, &proposals[i].algo, stream) == CUBLAS_STATUS_SUCCESS;
        if (!runs[i]) continue;
        matmul_checksum(sums_d + i, g->C, c_bytes, stream);
        if (g->epilogue == MATMUL_EPILOGUE_GELU_BIAS) matmul_checksum(sums_d + i, g->aux, (size_t)g->M * g->N * 2, stream);
    }
    cudaCheck(cudaMemcpyAsync(sums, sums_d, found * sizeof(unsigned long long), cudaMemcpyDeviceToHost, stream));
    cudaCheck(cudaStreamSynchronize(stream));
    if (runs[0]) {  // a first proposal that fails to run is reported by the caller's own run
        cudaEvent_t start, stop;
        cudaCheck(cudaEventCreate(&start));
        cudaCheck(cudaEventCreate(&stop));
        float best_ms = 0.0f;
        p->num_identical = 0;
        for (int i = 0; i < found; i++) {
            if (!runs[i] || sums[i] != sums[0]) continue;
            p->num_identical++;
            cudaCheck(cudaEventRecord(start, stream));
            for (int r = 0; r < MATMUL_TUNE_REPEATS; r++) cublasCheck(matmul_launch(ctx, p, g, &proposals[i].algo, stream));
            cudaCheck(cudaEventRecord(stop, stream));
            cudaCheck(cudaEventSynchronize(stop));
            float ms;
            cudaCheck(cudaEventElapsedTime(&ms, start, stop));
            if (i == 0 || ms < best_ms) {
                best_ms = ms;
                p->algo = proposals[i].algo;
                p->algo_rank = i;
            }
        }
        cudaCheck(cudaEventDestroy(start));
        cudaCheck(cudaEventDestroy(stop));
    }
    if (c_saved != NULL) cudaCheck(cudaMemcpyAsync(g->C, c_saved, c_bytes, cudaMemcpyDeviceToDevice, stream));
}

// Returns the cached plan for this problem (shape, types, accumulation, pointer alignments), building
// it (descriptors, heuristic, matmul_plan_tune on g's operands) on first use.
// Returns NULL with the reason in err when the cache is full or the heuristic finds no algorithm.
static inline MatmulPlan *matmul_plan_get(MatmulContext *ctx, const MatmulArgs *g, cudaStream_t stream, char *err, size_t err_size) {
    int align_a = matmul_pointer_alignment(g->A), align_b = matmul_pointer_alignment(g->B);
    int align_c = matmul_pointer_alignment(g->C);
    for (int i = 0; i < ctx->num_plans; i++) {
        MatmulPlan *p = &ctx->plans[i];
        if (p->M == g->M && p->N == g->N && p->K == g->K && p->a_type == g->a_type && p->b_type == g->b_type &&
            p->c_type == g->c_type && p->fast_accum == g->fast_accum && p->a_transposed == g->a_transposed &&
            p->b_transposed == g->b_transposed && p->epilogue == g->epilogue && p->reads_c == (g->beta != 0.0f) &&
            p->align_a == align_a && p->align_b == align_b && p->align_c == align_c) return p;
    }
    if (ctx->num_plans == MATMUL_PLAN_CACHE_SIZE) {
        set_error(err, err_size, "matmul: plan cache full (%d problems)", MATMUL_PLAN_CACHE_SIZE);
        return NULL;
    }
    MatmulPlan *p = &ctx->plans[ctx->num_plans];
    memset(p, 0, sizeof(*p));
    p->M = g->M; p->N = g->N; p->K = g->K;
    p->a_type = g->a_type; p->b_type = g->b_type; p->c_type = g->c_type; p->fast_accum = g->fast_accum;
    p->a_transposed = g->a_transposed; p->b_transposed = g->b_transposed;
    p->epilogue = g->epilogue;
    p->reads_c = g->beta != 0.0f;
    p->align_a = align_a; p->align_b = align_b; p->align_c = align_c;

    cublasCheck(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t op_a = g->b_transposed ? CUBLAS_OP_N : CUBLAS_OP_T;
    cublasOperation_t op_b = g->a_transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
    if (matmul_type_is_fp8(g->a_type)) {
        int8_t fast = (int8_t)(g->fast_accum != 0);
        cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof(fast)));
        // The scale pointers must be set before the heuristic runs: it may otherwise pick a kernel
        // that cannot apply scales (cublasLtMatmul then returns NOT_SUPPORTED).
        matmul_set_scale_pointers(p->desc, g);
    }
    if (g->epilogue != MATMUL_EPILOGUE_NONE) {
        // cuBLASLt's rows are our columns: its per-row bias is our bias[N], and aux (our [M,N] row-major)
        // is its N x M column-major matrix with leading dimension N, like C
        const cublasLtEpilogue_t epilogues[] = {CUBLASLT_EPILOGUE_DEFAULT, CUBLASLT_EPILOGUE_BIAS, CUBLASLT_EPILOGUE_GELU_AUX_BIAS};
        cublasLtEpilogue_t epilogue = epilogues[g->epilogue];
        cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
        if (g->bias != NULL) {
            cudaDataType_t bias_type = CUDA_R_16BF;
            cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
        }
        if (g->aux != NULL) {
            int64_t aux_ld = g->N;
            cudaDataType_t aux_type = CUDA_R_16BF;
            cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld, sizeof(aux_ld)));
            cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE, &aux_type, sizeof(aux_type)));
        }
        matmul_set_epilogue_pointers(p->desc, g);
    }
    // cuBLASLt's A = our B (K x N column-major, ld K; N x K, ld N when b_transposed), its B = our A
    // (K x M, ld K; M x K, ld M when a_transposed), C = [N x M] ld N.
    if (g->b_transposed) cublasCheck(cublasLtMatrixLayoutCreate(&p->layout_a, g->b_type, g->N, g->K, g->N));
    else cublasCheck(cublasLtMatrixLayoutCreate(&p->layout_a, g->b_type, g->K, g->N, g->K));
    if (g->a_transposed) cublasCheck(cublasLtMatrixLayoutCreate(&p->layout_b, g->a_type, g->M, g->K, g->M));
    else cublasCheck(cublasLtMatrixLayoutCreate(&p->layout_b, g->a_type, g->K, g->M, g->K));
    cublasCheck(cublasLtMatrixLayoutCreate(&p->layout_c, g->c_type, g->N, g->M, g->N));

    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &ctx->workspace_bytes, sizeof(ctx->workspace_bytes)));
    uint32_t align_lt_a = (uint32_t)align_b, align_lt_b = (uint32_t)align_a, align_lt_c = (uint32_t)align_c;
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_lt_a, sizeof(align_lt_a)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_lt_b, sizeof(align_lt_b)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_lt_c, sizeof(align_lt_c)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_lt_c, sizeof(align_lt_c)));
    cublasLtMatmulHeuristicResult_t proposals[MATMUL_TUNE_CANDIDATES];
    int found = 0;
    cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(ctx->handle, p->desc, p->layout_a, p->layout_b, p->layout_c,
                                                           p->layout_c, pref, MATMUL_TUNE_CANDIDATES, proposals, &found);
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    if (status != CUBLAS_STATUS_SUCCESS || found == 0) {
        set_error(err, err_size, "matmul: cuBLASLt has no algorithm for M=%d N=%d K=%d %s x %s -> %s (status %d)",
                  g->M, g->N, g->K, matmul_type_name(g->a_type), matmul_type_name(g->b_type),
                  matmul_type_name(g->c_type), (int)status);
        cublasCheck(cublasLtMatrixLayoutDestroy(p->layout_a));
        cublasCheck(cublasLtMatrixLayoutDestroy(p->layout_b));
        cublasCheck(cublasLtMatrixLayoutDestroy(p->layout_c));
        cublasCheck(cublasLtMatmulDescDestroy(p->desc));
        return NULL;
    }
    matmul_plan_tune(ctx, p, g, proposals, found, stream);
    ctx->num_plans++;
    return p;
}

// Runs the GEMM on `stream`. Returns 0, or -1 with the reason in err (unsupported combination or
// no cuBLASLt algorithm); nothing is launched then.
static inline int matmul_cublaslt_try(MatmulContext *ctx, const MatmulArgs *g, cudaStream_t stream, char *err, size_t err_size) {
    if (matmul_cublaslt_validate(g, err, err_size) != 0) return -1;
    MatmulPlan *p = matmul_plan_get(ctx, g, stream, err, err_size);
    if (p == NULL) return -1;
    // The scale and bias pointers change from call to call: set them on the cached descriptor (host-only).
    if (matmul_type_is_fp8(g->a_type)) matmul_set_scale_pointers(p->desc, g);
    if (g->epilogue != MATMUL_EPILOGUE_NONE) matmul_set_epilogue_pointers(p->desc, g);
    cublasStatus_t status = matmul_launch(ctx, p, g, &p->algo, stream);
    if (status != CUBLAS_STATUS_SUCCESS)
        return set_error(err, err_size, "matmul: cublasLtMatmul failed for M=%d N=%d K=%d %s x %s -> %s: %s", g->M, g->N, g->K,
                         matmul_type_name(g->a_type), matmul_type_name(g->b_type), matmul_type_name(g->c_type),
                         cublasGetStatusString(status));
    return 0;
}

// Runs the GEMM on `stream`; exits with the reason when the problem is not supported.
static inline void matmul_cublaslt(MatmulContext *ctx, const MatmulArgs *g, cudaStream_t stream) {
    char err[256];
    if (matmul_cublaslt_try(ctx, g, stream, err, sizeof(err)) != 0) fatal("%s", err);
}

#endif // KERNELS_MATMUL_CUBLASLT_CUH
