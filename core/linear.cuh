// Linear layers: THE dispatch point of every linear layer's three GEMMs, keyed by the run-time
// precision (core/precision.h), and the Linear object of each call site of a model.
//   Fprop: out[N,OC]  = inp[N,IC] . weight[OC,IC]^T (+ bias[OC])          BF16 out
//          optionally followed by GELU: x = bf16(that sum), out = gelu(x), gelu_grad[N,OC] = gelu'(x)
//   Dgrad: dinp[N,IC] = dout[N,OC] . weight[OC,IC]                         BF16 out, overwritten
//          optionally times gelu_grad[N,IC] when inp was the output of a GELU (its backward)
//   Wgrad: dweight[OC,IC] += dout[N,OC]^T . inp[N,IC],  dbias[OC] += sum_n dout[n,:]   FP32, accumulated,
//          or written over (dweight = ..., dbias = ...) when `accumulate` is 0: the first micro-step of an
//          optimizer step, so that no memset of the gradients is needed (cuBLASLt beta = 0: C is not read)
// N = B*T tokens, row-major everywhere. Only PRECISION_BF16 is built; the other modes are rejected at flag
// parsing and fail here by name.
//
// BF16 GEMMs: cuBLASLt (FP32 accumulation), with the bias in its epilogue; on a Hopper GPU the two GEMMs next
// to a GELU run the kernel of kernels/sm90_bf16_gemm_gelu.cuh instead, whose epilogues keep GELU's
// element-wise work off device memory: the Fprop stores gelu(x) and gelu'(x) (not x), and the Dgrad
// multiplies by gelu'(x) and sums the 128-row column partials of its result, the bias gradient of the layer
// that produced x. On the H100 that pair beat cuBLASLt's GELU_AUX Fprop plus its Dgrad and a separate GELU
// pass (dev/RESULTS.md). Other GPUs get the same results through cuBLASLt and element-wise passes
// (gelu_forward writing both outputs; gelu_backward_tile_colsums): the same formulas and roundings, the
// products summed in cuBLASLt's order. Bias gradients sum columns in two deterministic stages (fixed row
// chunks into FP32 partials, then column_partials_add of kernels/layer_common.cuh; kernels/bias_grad.cuh).
#ifndef CORE_LINEAR_CUH
#define CORE_LINEAR_CUH

#include "core/precision.h"
#include "kernels/bias_grad.cuh"
#include "kernels/layer_common.cuh"
#include "kernels/gelu.cuh"
#include "kernels/matmul_cublaslt.cuh"
#include "kernels/sm90_bf16_gemm_gelu.cuh"

typedef enum { LINEAR_FPROP = 0, LINEAR_DGRAD, LINEAR_WGRAD } LinearGemm;

typedef struct {
    Precision precision;
    MatmulContext *matmul;
    float *bias_partials;   // [bias_partial_rows, max_out_channels] FP32 scratch of the bias gradients
    int max_out_channels;   // columns bias_partials was sized for
    int bias_partial_rows;  // rows bias_partials was sized for: linear_bias_partial_rows(tokens)
    bool gelu_gemm_sm90;    // the GELU Fprop / Dgrad run the Hopper kernel (an sm_90a build on a Hopper GPU)
} LinearContext;

// Rows of bias partials the bias gradients of up to N tokens need: bias_grad's row chunks, or the GELU
// Dgrad's 128-row tiles.
static inline int linear_bias_partial_rows(long N) {
    const long tiles = (N + BG_BM - 1) / BG_BM;
    return tiles > BIAS_GRAD_MAX_CHUNKS ? (int)tiles : BIAS_GRAD_MAX_CHUNKS;
}

// A context for `precision` on the current device whose bias gradients use bias_partials ([bias_partial_rows,
// max_out_channels] FP32; NULL with 0 rows when the caller takes no bias gradient).
static inline LinearContext linear_context(Precision precision, MatmulContext *matmul, float *bias_partials, int bias_partial_rows,
                                           int max_out_channels) {
    LinearContext ctx;
    ctx.precision = precision;
    ctx.matmul = matmul;
    ctx.bias_partials = bias_partials;
    ctx.max_out_channels = max_out_channels;
    ctx.bias_partial_rows = bias_partial_rows;
    ctx.gelu_gemm_sm90 = sm90_wgmma_compiled();
    return ctx;
}

// ----------------------------------------------------------------------------------------------
// the dispatch point

// Runs one of a linear layer's GEMMs in the context's precision. Operands as in the header comment:
// Fprop (out, inp, weight, bias or NULL, gelu_grad or NULL), Dgrad (dinp, dout, weight, NULL, gelu_grad or
// NULL), Wgrad (dweight, dout, inp, NULL, NULL). accumulate (Wgrad only): 1 adds the product to dweight, 0
// writes it. A Dgrad with gelu_grad also leaves the 128-row column sums of dinp in ctx->bias_partials
// ([ceil(N / 128), IC]).
static inline void linear_gemm(const LinearContext *ctx, LinearGemm which, void *out, const bf16 *x, const bf16 *y,
                               const bf16 *bias, bf16 *gelu_grad, int N, int IC, int OC, bool accumulate, cudaStream_t stream) {
    shapeCheck(bias == NULL || which == LINEAR_FPROP, "only Fprop takes a bias");
    shapeCheck(!accumulate || which == LINEAR_WGRAD, "only Wgrad accumulates");
    shapeCheck(gelu_grad == NULL || (which == LINEAR_FPROP && bias != NULL) || which == LINEAR_DGRAD,
               "GELU fuses into Fprop (with a bias) and Dgrad only");
    switch (ctx->precision) {
    case PRECISION_BF16: {
        if (gelu_grad != NULL && which == LINEAR_DGRAD)
            shapeCheck(ceil_div(N, BG_BM) <= ctx->bias_partial_rows && IC <= ctx->max_out_channels,
                       "GELU Dgrad of %d tokens x %d channels, bias scratch sized for %d rows x %d", N, IC, ctx->bias_partial_rows,
                       ctx->max_out_channels);
        if (gelu_grad != NULL && ctx->gelu_gemm_sm90) {
            if (which == LINEAR_FPROP)  // out[N,OC] = gelu(x), gelu_grad = gelu'(x)
                bf16_gemm_epilogue(BF16_GEMM_BIAS_GELU, BF16_GEMM_B_NK, (bf16 *)out, gelu_grad, x, y, bias, NULL, N, OC, IC, stream);
            else                        // dinp[N,IC] = (dout[N,OC] . weight[OC,IC]) * gelu_grad: weight is [K,N]
                bf16_gemm_epilogue(BF16_GEMM_GELU_BACKWARD, BF16_GEMM_B_KN, (bf16 *)out, gelu_grad, x, y, NULL, ctx->bias_partials, N, IC,
                                   OC, stream);
            break;
        }
        // elsewhere the GELU Fprop writes x into gelu_grad, then gelu_forward turns it into gelu'(x) beside
        // out = gelu(x); the GELU Dgrad multiplies by gelu_grad afterwards
        MatmulArgs g;
        memset(&g, 0, sizeof(g));
        g.a_type = CUDA_R_16BF;
        g.b_type = CUDA_R_16BF;
        g.alpha = 1.0f;
        g.C = out;
        g.A = x;
        g.B = y;
        if (which == LINEAR_FPROP) {         // out[N,OC] = inp[N,IC] . weight[OC,IC]^T
            if (gelu_grad != NULL) g.C = gelu_grad;
            g.M = N; g.N = OC; g.K = IC;
            g.c_type = CUDA_R_16BF;
            if (bias != NULL) {
                g.epilogue = MATMUL_EPILOGUE_BIAS;
                g.bias = bias;
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
        if (gelu_grad != NULL && which == LINEAR_FPROP) gelu_forward((bf16 *)out, gelu_grad, gelu_grad, (long long)N * OC, stream);
        if (gelu_grad != NULL && which == LINEAR_DGRAD)
            gelu_backward_tile_colsums((bf16 *)out, gelu_grad, ctx->bias_partials, N, IC, stream);
        break;
    }
    default: fatal("linear layer: precision '%s' has no GEMM path built", PRECISION_NAMES[ctx->precision]);
    }
}

// ----------------------------------------------------------------------------------------------
// one linear layer per call site

// What the Fprop does after the product.
typedef enum {
    LINEAR_EPILOGUE_NONE = 0,   // out = inp . W^T
    LINEAR_EPILOGUE_BIAS,       // out = inp . W^T + b
    LINEAR_EPILOGUE_BIAS_GELU   // x = bf16(inp . W^T + b), out = gelu(x), aux = gelu'(x)
} LinearEpilogue;

// The place of a linear layer in its model; with the layer index it names the linear ("fc.7").
typedef enum { LINEAR_QKV = 0, LINEAR_ATTN_OUT, LINEAR_FC, LINEAR_FC_PROJ, LINEAR_GATE_UP, LINEAR_DOWN, LINEAR_LM_HEAD, LINEAR_ROLE_COUNT } LinearRole;
static const char *const LINEAR_ROLE_NAMES[LINEAR_ROLE_COUNT] = {"qkv", "attn_out", "fc", "fc_proj", "gate_up", "down", "lm_head"};

// One linear layer Y = X W^T (+ b) of the model: its identity, shape, epilogues and tensors. Built once
// (linear_init); the forward and backward calls take only the activations.
typedef struct {
    char name[24];               // role, then ".layer" for the layers of the blocks: "qkv.0", "lm_head"
    int layer;                   // global layer index; -1 outside the blocks
    LinearRole role;
    int in, out;                 // IC, OC
    LinearEpilogue epilogue;     // of the Fprop
    bool input_from_gelu;        // X = gelu(x): the Dgrad applies GELU's backward with the producer's gelu'(x)
    const bf16 *weight;          // [OC, IC]
    const bf16 *bias;            // [OC], or NULL
    float *dweight;              // [OC, IC] FP32
    float *dbias;                // [OC] FP32, or NULL
} Linear;

static inline void linear_init(Linear *lin, LinearRole role, int layer, int in, int out, LinearEpilogue epilogue, bool input_from_gelu,
                               const bf16 *weight, const bf16 *bias, float *dweight, float *dbias) {
    memset(lin, 0, sizeof(*lin));
    if (layer >= 0) snprintf(lin->name, sizeof(lin->name), "%s.%d", LINEAR_ROLE_NAMES[role], layer);
    else snprintf(lin->name, sizeof(lin->name), "%s", LINEAR_ROLE_NAMES[role]);
    lin->layer = layer;
    lin->role = role;
    lin->in = in;
    lin->out = out;
    lin->epilogue = epilogue;
    lin->input_from_gelu = input_from_gelu;
    lin->weight = weight;
    lin->bias = bias;
    lin->dweight = dweight;
    lin->dbias = dbias;
    shapeCheck(weight != NULL && dweight != NULL && (epilogue == LINEAR_EPILOGUE_NONE) == (bias == NULL) && (bias == NULL) == (dbias == NULL),
               "linear %s: weight and its gradient always; bias and its gradient exactly when the epilogue adds a bias", lin->name);
}

// Fprop over N rows: out [N,OUT] = inp [N,IN] . W^T, then the linear's epilogue; aux [N,OUT] receives
// gelu'(x) with LINEAR_EPILOGUE_BIAS_GELU (NULL otherwise).
static inline void linear_forward(const LinearContext *ctx, const Linear *lin, bf16 *out, bf16 *aux, const bf16 *inp, int N,
                                  cudaStream_t stream) {
    shapeCheck((aux != NULL) == (lin->epilogue == LINEAR_EPILOGUE_BIAS_GELU), "linear %s: aux (gelu') exactly with the GELU epilogue", lin->name);
    linear_gemm(ctx, LINEAR_FPROP, out, inp, lin->weight, lin->bias, aux, N, lin->in, lin->out, false, stream);
}

// Backward over N rows, given dout [N,OUT] and the Fprop's input inp [N,IN]:
//   Dgrad (skipped when dinp is NULL): dinp [N,IN] = dout . W, overwritten. When the input came from
//     GELU (input_from_gelu), dinp is the gradient of GELU's input x instead: times gelu_aux [N,IN] =
//     gelu'(x), and gelu_dbias [IN] (may be NULL) gets its column sums: the bias gradient of the linear
//     that produced x.
//   Wgrad: dweight = dout^T . inp, and, when sum_dbias, dbias = the column sums of dout (pass false when
//     another pass already gives this linear's bias gradient).
// accumulate: 1 adds to dweight, dbias and gelu_dbias; 0 writes them (the first micro-step).
static inline void linear_backward(const LinearContext *ctx, const Linear *lin, bf16 *dinp, const bf16 *dout, const bf16 *inp,
                                   bf16 *gelu_aux, float *gelu_dbias, bool sum_dbias, bool accumulate, int N, cudaStream_t stream) {
    const int IC = lin->in, OC = lin->out;
    shapeCheck((gelu_aux != NULL) == (lin->input_from_gelu && dinp != NULL), "linear %s: gelu' exactly when the Dgrad applies GELU's backward",
               lin->name);
    shapeCheck(gelu_dbias == NULL || gelu_aux != NULL, "linear %s: gelu_dbias needs gelu'", lin->name);
    shapeCheck(!sum_dbias || (lin->dbias != NULL && OC <= ctx->max_out_channels), "linear %s: bias gradient of %d channels, scratch for %d",
               lin->name, OC, ctx->max_out_channels);
    if (dinp != NULL) {
        linear_gemm(ctx, LINEAR_DGRAD, dinp, dout, lin->weight, NULL, gelu_aux, N, IC, OC, false, stream);
        if (gelu_dbias != NULL) column_partials_add(gelu_dbias, ctx->bias_partials, ceil_div(N, BG_BM), IC, accumulate, stream);
    }
    linear_gemm(ctx, LINEAR_WGRAD, lin->dweight, dout, inp, NULL, NULL, N, IC, OC, accumulate, stream);
    if (sum_dbias) bias_grad(lin->dbias, ctx->bias_partials, dout, N, OC, accumulate, stream);
}

#endif // CORE_LINEAR_CUH
