// Fused AdamW over all parameters (or over this rank's ZeRO-1 shard of them) in one launch.
// Operands are flat arrays over the shard, all indexed from the shard's first parameter:
//   master, m, v [n] FP32 (master weights and moments), grads [n] FP32 or BF16 (GradT),
//   params [n] BF16 (the working copy, written from the updated master weights, round to nearest).
// Per element, with step t >= 1 and grad_scale = 1/clip factor:
//   g = grad * grad_scale,  m = beta1 m + (1-beta1) g,  v = beta2 v + (1-beta2) g^2,
//   master -= lr_t * ( (m / (1-beta1^t)) / (sqrt(v / (1-beta2^t)) + eps) + wd * master ),
// where wd is the weight decay for tensors flagged for it (a parameter table's `decay`, the 2-D weights)
// and 0 for the others (biases, norm gains), and lr_t = lr * the tensor's learning-rate multiplier (the
// table's `lr_mult`; lr_t is lr itself, bit for bit, for a multiplier of 1).
//
// The per-tensor settings are resolved once, on the host: an AdamWPlan cuts the shard into chunks of at
// most ADAMW_CHUNK elements that never straddle a tensor boundary, and block b updates chunk b.
// Elementwise, so deterministic.
#ifndef KERNELS_ADAMW_CUH
#define KERNELS_ADAMW_CUH

#include <math.h>
#include "core/utils.h"
#include "kernels/layer_common.cuh"

#define ADAMW_BLOCK 256
#define ADAMW_CHUNK (ADAMW_BLOCK * 4 * 8)  // elements per block: 4 per thread per step, 8 steps

// A run of parameters inside one tensor, updated by one block. begin is counted from the shard start.
typedef struct {
    long long begin;
    int count;
    int weight_decay;  // 1: apply weight decay to this chunk
    float lr_mult;     // the chunk's learning rate is lr * lr_mult
} AdamWChunk;

// The chunks of one shard, in device memory (built once, reused every step).
typedef struct {
    AdamWChunk *chunks;
    int num_chunks;
} AdamWPlan;

// Hyperparameters of one step; build with adamw_step_params.
typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    float beta1_correction;  // 1 - beta1^t
    float beta2_correction;  // 1 - beta2^t
    float grad_scale;        // multiplies every gradient (1/clip factor)
} AdamWStepParams;

// ----------------------------------------------------------------------------------------------
// kernel

// The update of the header comment on 4 elements held in registers (master, m, v in place).
__device__ __forceinline__ void adamw_update4_(float mw[4], float mm[4], float vv[4], const float g[4],
                                               float decay, float lr, const AdamWStepParams &hp) {
#pragma unroll
    for (int e = 0; e < 4; e++) {
        const float grad = g[e] * hp.grad_scale;
        mm[e] = hp.beta1 * mm[e] + (1.0f - hp.beta1) * grad;
        vv[e] = hp.beta2 * vv[e] + (1.0f - hp.beta2) * grad * grad;
        const float m_hat = mm[e] / hp.beta1_correction;
        const float v_hat = vv[e] / hp.beta2_correction;
        mw[e] -= lr * (m_hat / (sqrtf(v_hat) + hp.eps) + decay * mw[e]);
    }
}

// Block b updates chunks[b]; each thread takes 4 consecutive elements per step (16-byte loads of
// the FP32 arrays when the chunk starts on a multiple of 4, element by element otherwise and for a
// chunk's last partial group).
template <typename GradT>
__global__ void __launch_bounds__(ADAMW_BLOCK)
    adamw_kernel(bf16 *params, float *master, float *m, float *v, const GradT *grads, const AdamWChunk *chunks,
                 AdamWStepParams hp) {
    const AdamWChunk chunk = chunks[blockIdx.x];
    const float decay = chunk.weight_decay ? hp.weight_decay : 0.0f;
    const float lr = hp.lr * chunk.lr_mult;
    const bool vec = (chunk.begin % 4 == 0);
    for (int j = threadIdx.x * 4; j < chunk.count; j += blockDim.x * 4) {
        const long long i = chunk.begin + j;
        float mw[4], mm[4], vv[4], g[4];
        if (vec && j + 4 <= chunk.count) {
            load4_as_float(mw, master + i);
            load4_as_float(mm, m + i);
            load4_as_float(vv, v + i);
            load4_as_float(g, grads + i);
            adamw_update4_(mw, mm, vv, g, decay, lr, hp);
            *reinterpret_cast<float4 *>(master + i) = make_float4(mw[0], mw[1], mw[2], mw[3]);
            *reinterpret_cast<float4 *>(m + i) = make_float4(mm[0], mm[1], mm[2], mm[3]);
            *reinterpret_cast<float4 *>(v + i) = make_float4(vv[0], vv[1], vv[2], vv[3]);
            __nv_bfloat162 lo = __floats2bfloat162_rn(mw[0], mw[1]), hi = __floats2bfloat162_rn(mw[2], mw[3]);
            uint2 packed;
            packed.x = *reinterpret_cast<unsigned int *>(&lo);
            packed.y = *reinterpret_cast<unsigned int *>(&hi);
            *reinterpret_cast<uint2 *>(params + i) = packed;
        } else {
            const int left = chunk.count - j < 4 ? chunk.count - j : 4;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                mw[e] = e < left ? master[i + e] : 0.0f;
                mm[e] = e < left ? m[i + e] : 0.0f;
                vv[e] = e < left ? v[i + e] : 0.0f;
                g[e] = e < left ? grad_to_float(grads[i + e]) : 0.0f;
            }
            adamw_update4_(mw, mm, vv, g, decay, lr, hp);
#pragma unroll
            for (int e = 0; e < 4; e++) {
                if (e < left) {
                    master[i + e] = mw[e];
                    m[i + e] = mm[e];
                    v[i + e] = vv[e];
                    params[i + e] = __float2bfloat16(mw[e]);
                }
            }
        }
    }
}

// params[i] = bf16(master[i]) (round to nearest, as the update writes them), one thread per element.
__global__ void bf16_from_master_kernel(bf16 *params, const float *master, size_t n) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) params[i] = __float2bfloat16(master[i]);
}

// ----------------------------------------------------------------------------------------------
// host side

// The BF16 working weights from the FP32 master weights (n of each), as after an update: when the master
// weights are set (a fresh model or a resume).
static inline void adamw_params_from_master(bf16 *params, const float *master, size_t n, cudaStream_t stream) {
    bf16_from_master_kernel<<<(unsigned)ceil_div<size_t>(n, 256), 256, 0, stream>>>(params, master, n);
    cudaCheckLaunch();
}

// Builds the plan for the shard [shard_begin, shard_begin + shard_size) of a parameter buffer made
// of num_tensors consecutive tensors of tensor_sizes[i] elements; decay[i] != 0 marks the tensors
// that get weight decay, lr_mult[i] is tensor i's learning-rate multiplier. Allocates the chunk table on
// the device (free with adamw_plan_free).
static inline void adamw_plan_build(AdamWPlan *plan, const size_t *tensor_sizes, const int *decay, const float *lr_mult, int num_tensors,
                                    size_t shard_begin, size_t shard_size) {
    size_t total = 0;
    for (int i = 0; i < num_tensors; i++) total += tensor_sizes[i];
    shapeCheck(num_tensors > 0 && shard_size > 0 && shard_begin + shard_size <= total,
               "AdamW shard [%zu, %zu) must be non-empty and inside the %zu parameters", shard_begin,
               shard_begin + shard_size, total);
    const size_t shard_end = shard_begin + shard_size;
    // first count, then fill
    int count = 0;
    AdamWChunk *host = NULL;
    for (int pass = 0; pass < 2; pass++) {
        int n = 0;
        size_t tensor_begin = 0;
        for (int t = 0; t < num_tensors; t++) {
            const size_t lo = tensor_begin > shard_begin ? tensor_begin : shard_begin;
            const size_t tensor_end = tensor_begin + tensor_sizes[t];
            const size_t hi = tensor_end < shard_end ? tensor_end : shard_end;
            for (size_t s = lo; s < hi; s += ADAMW_CHUNK) {
                if (pass == 1) {
                    host[n].begin = (long long)(s - shard_begin);
                    host[n].count = (int)(hi - s < (size_t)ADAMW_CHUNK ? hi - s : (size_t)ADAMW_CHUNK);
                    host[n].weight_decay = decay[t] != 0;
                    host[n].lr_mult = lr_mult[t];
                }
                n++;
            }
            tensor_begin = tensor_end;
        }
        if (pass == 0) {
            count = n;
            host = (AdamWChunk *)malloc_check((size_t)count * sizeof(AdamWChunk));
        }
    }
    cudaCheck(cudaMalloc((void **)&plan->chunks, (size_t)count * sizeof(AdamWChunk)));
    cudaCheck(cudaMemcpy(plan->chunks, host, (size_t)count * sizeof(AdamWChunk), cudaMemcpyHostToDevice));
    free(host);
    plan->num_chunks = count;
}

static inline void adamw_plan_free(AdamWPlan *plan) {
    cudaCheck(cudaFree(plan->chunks));
    plan->chunks = NULL;
    plan->num_chunks = 0;
}

// Hyperparameters for optimizer step `step` (1 for the first update).
static inline AdamWStepParams adamw_step_params(float lr, float beta1, float beta2, float eps, float weight_decay,
                                                int step, float grad_scale) {
    shapeCheck(step >= 1, "AdamW step must be >= 1, got %d", step);
    AdamWStepParams hp;
    hp.lr = lr;
    hp.beta1 = beta1;
    hp.beta2 = beta2;
    hp.eps = eps;
    hp.weight_decay = weight_decay;
    hp.beta1_correction = 1.0f - powf(beta1, (float)step);
    hp.beta2_correction = 1.0f - powf(beta2, (float)step);
    hp.grad_scale = grad_scale;
    return hp;
}

// One AdamW step over the shard described by plan; all pointers point at the shard's first element.
template <typename GradT>
static inline void adamw_update(bf16 *params, float *master, float *m, float *v, const GradT *grads,
                                const AdamWPlan *plan, AdamWStepParams hp, cudaStream_t stream) {
    shapeCheck(plan->num_chunks > 0, "AdamW plan is empty");
    shapeCheck((uintptr_t)master % 16 == 0 && (uintptr_t)m % 16 == 0 && (uintptr_t)v % 16 == 0 &&
                   (uintptr_t)params % 8 == 0 && (uintptr_t)grads % (4 * sizeof(GradT)) == 0,
               "AdamW arrays must be aligned to 4 elements");
    adamw_kernel<GradT><<<plan->num_chunks, ADAMW_BLOCK, 0, stream>>>(params, master, m, v, grads, plan->chunks, hp);
    cudaCheckLaunch();
}

#endif // KERNELS_ADAMW_CUH
