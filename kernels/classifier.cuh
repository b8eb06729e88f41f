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
// One block per row. Rows of up to CLASSIFIER_SMEM_MAX_VP columns (GPT-2's 50304: 100 KB) are copied
// once into shared memory by cp.async, two blocks per SM so that one block's copy overlaps the other's
// arithmetic; then the row max, the sum of exp(x - max) and the gradient are each a pass over shared
// memory, and the gradient is written over the row. Longer rows take two passes over device memory
// (classifier_l2_kernel: an online-rescaled max/sum, then the gradient from a re-read that mostly hits
// L2). DRAM traffic is one read and one write of the logits either way. Which kernel runs depends on
// Vp only. Deterministic: fixed per-thread element sets and fixed-order block reductions.
#ifndef KERNELS_CLASSIFIER_CUH
#define KERNELS_CLASSIFIER_CUH

#include <math.h>
#include "kernels/layer_common.cuh"

#define CLASSIFIER_BLOCK 1024        // threads per block at most (two blocks fit on an SM at <= 32 registers)
#define CLASSIFIER_SMEM_MAX_VP 57344 // longest row held in shared memory: 112 KB, two blocks per Hopper SM
#define CLASSIFIER_LOG2E 1.4426950408889634f

// exp(x - row_max) as 2^(x*log2(e) - row_max*log2(e)): one FFMA and the hardware exp2 (ex2.approx.ftz,
// relative error about 2^-22; results under 2^-126 flush to zero, which changes neither the row sum,
// at least 1, nor a BF16 gradient). max_log2e = row_max * log2(e).
__device__ __forceinline__ float classifier_exp(float x, float max_log2e) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(fmaf(x, CLASSIFIER_LOG2E, -max_log2e)));
    return y;
}

// The gradients of the 8 columns [c, c+8) of a row from their logits x: dloss * (p - onehot), zero in
// the padding (columns >= V). Only a piece that holds the target or padding takes the masked path.
__device__ __forceinline__ Bf16x8 classifier_grad8(const float x[8], int c, float max_log2e, float grad_scale, int target,
                                                   float dloss, int V) {
    float g[8];
#pragma unroll
    for (int e = 0; e < 8; e++) g[e] = classifier_exp(x[e], max_log2e) * grad_scale;
    if (c + 8 > V || (unsigned)(target - c) < 8u) {
#pragma unroll
        for (int e = 0; e < 8; e++) g[e] = (c + e < V) ? g[e] - (c + e == target ? dloss : 0.0f) : 0.0f;
    }
    Bf16x8 out;
#pragma unroll
    for (int e = 0; e < 8; e++) out.v[e] = __float2bfloat16(g[e]);
    return out;
}

// See the header comment; rows of Vp <= CLASSIFIER_SMEM_MAX_VP. Thread t owns the 8-column pieces
// t, t+blockDim.x, ... of its row, in shared memory (ceil(Vp/8) 16-byte pieces, dynamic). Each thread
// copies its own pieces and waits for them itself; the barriers inside block_max then make every
// piece visible to the whole block (thread 0 reads the target logit from shared memory).
__global__ void __launch_bounds__(CLASSIFIER_BLOCK, 2)
    classifier_smem_kernel(bf16 *logits, float *losses, const int *targets, float dloss, int V, int Vp) {
    extern __shared__ __align__(16) unsigned char classifier_smem[];
    __shared__ float scratch[WARP_SIZE];
    uint4 *pieces = reinterpret_cast<uint4 *>(classifier_smem);
    const int row = blockIdx.x, num_pieces = ceil_div(Vp, 8);
    bf16 *x = logits + (size_t)row * Vp;
    const bool vec = (Vp % 8 == 0);
    for (int p = threadIdx.x; p < num_pieces; p += blockDim.x) {
        if (vec) {
            cp_async16(pieces + p, x + 8 * p, true);
        } else {
            const Bf16x8 v = load_bf16x8(x, 8 * p, Vp, false);
            pieces[p] = *reinterpret_cast<const uint4 *>(&v);
        }
    }
    cp_async_commit();
    cp_async_wait<0>();
    // row max over the real columns
    float m = -INFINITY;
    for (int p = threadIdx.x; p < num_pieces; p += blockDim.x) {
        const uint4 v = pieces[p];
        const int c = 8 * p;
#pragma unroll
        for (int e = 0; e < 8; e++) {
            if (c + 8 <= V || c + e < V) m = fmaxf(m, bf16x8_packed_get(v, e));
        }
    }
    const float row_max = block_max(m, scratch), max_log2e = row_max * CLASSIFIER_LOG2E;
    float s = 0.0f;
    for (int p = threadIdx.x; p < num_pieces; p += blockDim.x) {
        const uint4 v = pieces[p];
        const int c = 8 * p;
#pragma unroll
        for (int e = 0; e < 8; e++) {
            if (c + 8 <= V || c + e < V) s += classifier_exp(bf16x8_packed_get(v, e), max_log2e);
        }
    }
    const float row_sum = block_sum(s, scratch);
    const float grad_scale = dloss / row_sum;
    const int target = targets[row];
    const bool target_ok = (target >= 0 && target < V);
    if (threadIdx.x == 0) {
        const float target_logit = target_ok ? __bfloat162float(reinterpret_cast<const bf16 *>(pieces)[target]) : 0.0f;
        losses[row] = target_ok ? logf(row_sum) + row_max - target_logit : NAN;
    }
    for (int p = threadIdx.x; p < num_pieces; p += blockDim.x) {
        const uint4 v = pieces[p];
        float xs[8];
#pragma unroll
        for (int e = 0; e < 8; e++) xs[e] = bf16x8_packed_get(v, e);
        store_bf16x8(x, 8 * p, Vp, vec, classifier_grad8(xs, 8 * p, max_log2e, grad_scale, target, dloss, V));
    }
}

// See the header comment; rows longer than CLASSIFIER_SMEM_MAX_VP. Thread t owns the 8-column groups
// t, t+blockDim.x, ... of its row. Pass 1 keeps a per-thread running max and sum of exp(x - max)
// (rescaled when the max grows), then block reductions give the row max and sum; pass 2 re-reads the
// row and overwrites it with the gradient.
__global__ void __launch_bounds__(CLASSIFIER_BLOCK, 2)
    classifier_l2_kernel(bf16 *logits, float *losses, const int *targets, float dloss, int V, int Vp) {
    __shared__ float scratch[WARP_SIZE];
    const int row = blockIdx.x;
    bf16 *x = logits + (size_t)row * Vp;
    const bool vec = (Vp % 8 == 0);
    float m = -INFINITY, s = 0.0f;
    for (int c = threadIdx.x * 8; c < V; c += blockDim.x * 8) {
        const Bf16x8 v = load_bf16x8(x, c, V, vec);
        float chunk_max = -INFINITY;
#pragma unroll
        for (int e = 0; e < 8; e++) {
            if (c + e < V) chunk_max = fmaxf(chunk_max, __bfloat162float(v.v[e]));
        }
        const float new_m = fmaxf(m, chunk_max);
        const float new_max_log2e = new_m * CLASSIFIER_LOG2E;
        s *= classifier_exp(m, new_max_log2e);  // m = -inf only while s = 0: exp2(-inf) = 0 keeps s at 0
#pragma unroll
        for (int e = 0; e < 8; e++) {
            if (c + e < V) s += classifier_exp(__bfloat162float(v.v[e]), new_max_log2e);
        }
        m = new_m;
    }
    const float row_max = block_max(m, scratch), max_log2e = row_max * CLASSIFIER_LOG2E;
    const float row_sum = block_sum(m == -INFINITY ? 0.0f : s * classifier_exp(m, max_log2e), scratch);
    const float grad_scale = dloss / row_sum;
    const int target = targets[row];
    const bool target_ok = (target >= 0 && target < V);
    if (threadIdx.x == 0) {
        losses[row] = target_ok ? logf(row_sum) + row_max - __bfloat162float(x[target]) : NAN;
    }
    // the target logit must be read before any thread overwrites it
    __syncthreads();
    for (int c = threadIdx.x * 8; c < Vp; c += blockDim.x * 8) {
        const Bf16x8 v = load_bf16x8_streaming(x, c, Vp, vec);
        float xs[8];
#pragma unroll
        for (int e = 0; e < 8; e++) xs[e] = __bfloat162float(v.v[e]);
        store_bf16x8(x, c, Vp, vec, classifier_grad8(xs, c, max_log2e, grad_scale, target, dloss, V));
    }
}

// The block size: the fewest warps that cover a row in as many steps as CLASSIFIER_BLOCK threads would
// (Vp = 50304: 928 threads, 7 steps), so that no step runs mostly idle.
static inline int classifier_block_threads(int Vp) {
    const int groups = ceil_div(Vp, 8);
    const int steps = ceil_div(groups, CLASSIFIER_BLOCK);
    return ceil_div(ceil_div(groups, steps), WARP_SIZE) * WARP_SIZE;
}

// Launches the kernel for Vp with `threads` per block (the dev harness times several).
static inline void fused_classifier_launch_(bf16 *logits, float *losses, const int *targets, float dloss, int N, int V, int Vp,
                                            int threads, cudaStream_t stream) {
    shapeCheck(N > 0 && V > 0 && V <= Vp, "N=%d V=%d Vp=%d", N, V, Vp);
    shapeCheck(Vp % 8 != 0 || (uintptr_t)logits % 16 == 0, "with Vp %% 8 == 0 logits must be 16-byte aligned");
    shapeCheck(threads % WARP_SIZE == 0 && threads > 0 && threads <= CLASSIFIER_BLOCK, "classifier block of %d threads", threads);
    if (Vp <= CLASSIFIER_SMEM_MAX_VP) {
        const int smem = ceil_div(Vp, 8) * 16;
        cudaCheck(cudaFuncSetAttribute(classifier_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        classifier_smem_kernel<<<N, threads, smem, stream>>>(logits, losses, targets, dloss, V, Vp);
    } else {
        classifier_l2_kernel<<<N, threads, 0, stream>>>(logits, losses, targets, dloss, V, Vp);
    }
    cudaCheckLaunch();
}

// logits [N, Vp] BF16 in, dlogits out (in place); losses [N] FP32; targets [N] in [0, V).
static inline void fused_classifier(bf16 *logits, float *losses, const int *targets, float dloss, int N, int V, int Vp,
                                    cudaStream_t stream) {
    fused_classifier_launch_(logits, losses, targets, dloss, N, V, Vp, classifier_block_threads(Vp), stream);
}

#endif // KERNELS_CLASSIFIER_CUH
