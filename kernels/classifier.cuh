// Fused softmax + cross-entropy + its gradient, for the LM head's output.
// logits [N, Vp] BF16 row-major (N = B*T tokens; columns >= V are vocabulary padding), targets [N]
// int32 in [0, V). For each row, over the V real columns:
//   loss[row]       = logsumexp(logits[row, :V]) - logits[row, target]            (FP32)
//   logits[row, c] <- dloss * (softmax(logits[row, :V])[c] - (c == target))       (BF16, in place)
//   logits[row, c] <- 0 for V <= c < Vp
// dloss is the gradient of the mean loss per token, 1/(B*T*grad_accum). A target outside [0, V)
// gives loss NaN (so a bad token cannot pass silently). No FP32 copy of the logits or their
// gradient is ever stored.
//
// One block per row, two passes: pass 1 reads the row and keeps a per-thread running max and sum
// of exp (rescaled when the max grows), then block reductions give the row max and sum; pass 2
// re-reads the row (mostly from L2: a row is Vp*2 bytes) and overwrites it with the gradient. DRAM
// traffic is about one read and one write of the logits. Deterministic: fixed per-thread element
// sets and fixed-order block reductions.
#ifndef KERNELS_CLASSIFIER_CUH
#define KERNELS_CLASSIFIER_CUH

#include <math.h>
#include "kernels/layer_common.cuh"

#define CLASSIFIER_BLOCK 1024  // threads per block at most (two blocks fit on an SM at <= 32 registers)
#define CLASSIFIER_LOG2E 1.4426950408889634f

// See the header comment. Thread t owns the 8-column groups t, t+blockDim.x, ... of its row.
// Exponentials are exp2f((x - max) * log2(e)): the kernel is bound by instruction issue more than by
// memory, and exp2f is a few instructions where expf is about ten. x - max is exact (both are BF16
// values), so the row maximum's term is exactly 1.
__global__ void __launch_bounds__(CLASSIFIER_BLOCK, 2)
    classifier_kernel(bf16 *logits, float *losses, const int *targets, float dloss, int V, int Vp) {
    __shared__ float scratch[WARP_SIZE];
    const int row = blockIdx.x;
    bf16 *x = logits + (size_t)row * Vp;
    const bool vec = (Vp % 8 == 0);
    // pass 1: per-thread running max and sum of exp(x - max) over the real columns
    float m = -INFINITY, s = 0.0f;
    for (int c = threadIdx.x * 8; c < V; c += blockDim.x * 8) {
        const Bf16x8 v = load_bf16x8(x, c, V, vec);
        float chunk_max = -INFINITY;
#pragma unroll
        for (int e = 0; e < 8; e++) {
            if (c + e < V) chunk_max = fmaxf(chunk_max, __bfloat162float(v.v[e]));
        }
        const float new_m = fmaxf(m, chunk_max);
        s *= exp2f((m - new_m) * CLASSIFIER_LOG2E);  // m = -inf only while s = 0: exp2(-inf) = 0 keeps s at 0
#pragma unroll
        for (int e = 0; e < 8; e++) {
            if (c + e < V) s += exp2f((__bfloat162float(v.v[e]) - new_m) * CLASSIFIER_LOG2E);
        }
        m = new_m;
    }
    const float row_max = block_max(m, scratch);
    const float row_sum = block_sum(m == -INFINITY ? 0.0f : s * exp2f((m - row_max) * CLASSIFIER_LOG2E), scratch);
    const float grad_scale = dloss / row_sum;
    const int target = targets[row];
    const bool target_ok = (target >= 0 && target < V);
    if (threadIdx.x == 0) {
        losses[row] = target_ok ? logf(row_sum) + row_max - __bfloat162float(x[target]) : NAN;
    }
    // the target logit must be read before any thread overwrites it
    __syncthreads();
    // pass 2: gradient dloss * (p - onehot), in place; padded columns get zero
    for (int c = threadIdx.x * 8; c < Vp; c += blockDim.x * 8) {
        const Bf16x8 v = load_bf16x8_streaming(x, c, Vp, vec);
        Bf16x8 g;
#pragma unroll
        for (int e = 0; e < 8; e++) {
            const int col = c + e;
            const float p_scaled = exp2f((__bfloat162float(v.v[e]) - row_max) * CLASSIFIER_LOG2E) * grad_scale;
            const float grad = (col < V) ? p_scaled - (col == target ? dloss : 0.0f) : 0.0f;
            g.v[e] = __float2bfloat16(grad);
        }
        store_bf16x8(x, c, Vp, vec, g);
    }
}

// logits [N, Vp] BF16 in, dlogits out (in place); losses [N] FP32; targets [N] in [0, V).
// The block size is the fewest warps that cover a row in as many steps as CLASSIFIER_BLOCK threads
// would (Vp = 50304: 928 threads, 7 steps), so that no step runs mostly idle.
static inline void fused_classifier(bf16 *logits, float *losses, const int *targets, float dloss, int N, int V, int Vp,
                                    cudaStream_t stream) {
    shapeCheck(N > 0 && V > 0 && V <= Vp, "N=%d V=%d Vp=%d", N, V, Vp);
    shapeCheck(Vp % 8 != 0 || (uintptr_t)logits % 16 == 0, "with Vp %% 8 == 0 logits must be 16-byte aligned");
    const int groups = ceil_div(Vp, 8);
    const int steps = ceil_div(groups, CLASSIFIER_BLOCK);
    const int block = ceil_div(ceil_div(groups, steps), WARP_SIZE) * WARP_SIZE;
    classifier_kernel<<<N, block, 0, stream>>>(logits, losses, targets, dloss, V, Vp);
    cudaCheckLaunch();
}

#endif // KERNELS_CLASSIFIER_CUH
