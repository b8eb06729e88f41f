// Global gradient norm: out = sum of g^2 over a flat gradient array g [n] (FP32 or BF16), in FP32.
// The squared norm is returned (not its square root) so that shards on several ranks can be summed
// before the root is taken; grad_clip_scale turns the norm into AdamW's grad_scale.
//
// Determinism: the grid size depends only on n (at most GLOBAL_NORM_BLOCKS blocks). Thread t of
// block b sums, in order, the 4-element groups b*blockDim + t, + gridDim*blockDim, ...; each block
// reduces its threads in a fixed tree and writes one partial; a single block then sums the
// partials in a fixed tree. No atomics.
#ifndef KERNELS_GLOBAL_NORM_CUH
#define KERNELS_GLOBAL_NORM_CUH

#include <math.h>
#include "kernels/layer_common.cuh"

#define GLOBAL_NORM_BLOCK 512
#define GLOBAL_NORM_BLOCKS 1024  // partial sums at most

// partials[b] = sum of squares of block b's elements (see the header comment); the last n % 4
// elements are taken by thread 0 of block 0.
template <typename GradT>
__global__ void __launch_bounds__(GLOBAL_NORM_BLOCK)
    global_norm_partials_kernel(float *partials, const GradT *grads, long long n) {
    __shared__ float scratch[WARP_SIZE];
    const long long groups = n / 4;
    float acc = 0.0f;
    for (long long q = (long long)blockIdx.x * blockDim.x + threadIdx.x; q < groups; q += (long long)gridDim.x * blockDim.x) {
        float g[4];
        load4_as_float(g, grads + 4 * q);
        acc += g[0] * g[0] + g[1] * g[1] + g[2] * g[2] + g[3] * g[3];
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        for (long long i = groups * 4; i < n; i++) {
            const float g = grad_to_float(grads[i]);
            acc += g * g;
        }
    }
    const float total = block_sum(acc, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

// *out = sum of partials[0..num_partials), one block, fixed order.
__global__ void __launch_bounds__(GLOBAL_NORM_BLOCK)
    global_norm_finish_kernel(float *out, const float *partials, int num_partials) {
    __shared__ float scratch[WARP_SIZE];
    float acc = 0.0f;
    for (int i = threadIdx.x; i < num_partials; i += blockDim.x) acc += partials[i];
    const float total = block_sum(acc, scratch);
    if (threadIdx.x == 0) *out = total;
}

// Number of partial sums (and floats of scratch) for n gradients.
static inline int global_norm_num_blocks(long long n) {
    const long long needed = ceil_div<long long>(n / 4 > 0 ? n / 4 : 1, GLOBAL_NORM_BLOCK);
    return needed < GLOBAL_NORM_BLOCKS ? (int)needed : GLOBAL_NORM_BLOCKS;
}

// *out (device, FP32) = sum over i of grads[i]^2. scratch: global_norm_num_blocks(n) floats.
template <typename GradT>
static inline void global_norm_squared(float *out, float *scratch, const GradT *grads, long long n, cudaStream_t stream) {
    shapeCheck(n > 0, "n=%lld", n);
    shapeCheck((uintptr_t)grads % (4 * sizeof(GradT)) == 0, "gradients must be aligned to 4 elements");
    const int blocks = global_norm_num_blocks(n);
    global_norm_partials_kernel<GradT><<<blocks, GLOBAL_NORM_BLOCK, 0, stream>>>(scratch, grads, n);
    cudaCheckLaunch();
    global_norm_finish_kernel<<<1, GLOBAL_NORM_BLOCK, 0, stream>>>(out, scratch, blocks);
    cudaCheckLaunch();
}

// AdamW's gradient multiplier for clipping to max_norm: max_norm / norm when the norm is larger,
// else 1. max_norm <= 0 disables clipping.
static inline float grad_clip_scale(float norm, float max_norm) {
    return (max_norm > 0.0f && norm > max_norm) ? max_norm / norm : 1.0f;
}

#endif // KERNELS_GLOBAL_NORM_CUH
