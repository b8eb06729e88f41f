// Device helpers shared by the layer kernels (encoder, layernorm, gelu, classifier, adamw,
// global_norm, attention, linear): 8-wide BF16 vectors moved as one 16-byte access with a bounds-checked
// scalar path for rows whose length is not a multiple of 8, packing of FP32 values into BF16 words,
// warp/block reductions whose order of operations is fixed (so every kernel built on them is
// bit-reproducible run to run), the ordered sum of per-chunk column partials, and cp.async copies into
// shared memory.
#ifndef KERNELS_LAYER_COMMON_CUH
#define KERNELS_LAYER_COMMON_CUH

#include <stdint.h>
#include "kernels/cuda_common.h"

#define WARP_SIZE 32

// Eight BF16 values, aligned so that one 16-byte load or store moves them.
struct alignas(16) Bf16x8 {
    bf16 v[8];
};

// Loads elements [i, i+8) of `row` (of length n); elements at or past n read as zero. i must be a
// multiple of 8. `vec` says the row's base address is 16-byte aligned, so a group that lies wholly
// inside the row is one 16-byte load; otherwise (and for the row's last, partial group) each
// element is read on its own.
__device__ __forceinline__ Bf16x8 load_bf16x8(const bf16 *row, int i, int n, bool vec) {
    Bf16x8 out;
    if (vec && i + 8 <= n) {
        out = *reinterpret_cast<const Bf16x8 *>(row + i);
    } else {
#pragma unroll
        for (int e = 0; e < 8; e++) out.v[e] = (i + e < n) ? row[i + e] : __float2bfloat16(0.0f);
    }
    return out;
}

// Same as load_bf16x8 but marks the lines as read-once (evict first): for the last read of data
// that no later kernel needs from cache.
__device__ __forceinline__ Bf16x8 load_bf16x8_streaming(const bf16 *row, int i, int n, bool vec) {
    Bf16x8 out;
    if (vec && i + 8 <= n) {
        int4 raw = __ldcs(reinterpret_cast<const int4 *>(row + i));
        out = *reinterpret_cast<Bf16x8 *>(&raw);
    } else {
#pragma unroll
        for (int e = 0; e < 8; e++) out.v[e] = (i + e < n) ? row[i + e] : __float2bfloat16(0.0f);
    }
    return out;
}

// Stores the elements of `x` that fall inside [0, n) at row[i..i+8); `vec` as in load_bf16x8.
__device__ __forceinline__ void store_bf16x8(bf16 *row, int i, int n, bool vec, const Bf16x8 &x) {
    if (vec && i + 8 <= n) {
        *reinterpret_cast<Bf16x8 *>(row + i) = x;
    } else {
#pragma unroll
        for (int e = 0; e < 8; e++) {
            if (i + e < n) row[i + e] = x.v[e];
        }
    }
}

// Parameter gradients may be kept in FP32 or BF16; these read and write either as float.
__device__ __forceinline__ float grad_to_float(float g) { return g; }
__device__ __forceinline__ float grad_to_float(bf16 g) { return __bfloat162float(g); }
__device__ __forceinline__ void grad_from_float(float *dst, float g) { *dst = g; }
__device__ __forceinline__ void grad_from_float(bf16 *dst, float g) { *dst = __float2bfloat16(g); }

// The one store of a gradient sum: *dst += sum (accumulate), or *dst = +0.0f + sum without reading *dst (the
// first micro-step of an optimizer step overwrites), which has the bits of adding to a zeroed gradient,
// a -0.0f sum included (+0.0f + -0.0f = +0.0f; the compiler may not drop the addition).
template <typename GradT>
__device__ __forceinline__ void grad_store(GradT *dst, float sum, bool accumulate) {
    grad_from_float(dst, (accumulate ? grad_to_float(*dst) : 0.0f) + sum);
}

// Loads 4 consecutive FP32 or BF16 values (p aligned to 4 elements) as floats, in one access.
__device__ __forceinline__ void load4_as_float(float out[4], const float *p) {
    const float4 a = *reinterpret_cast<const float4 *>(p);
    out[0] = a.x; out[1] = a.y; out[2] = a.z; out[3] = a.w;
}
__device__ __forceinline__ void load4_as_float(float out[4], const bf16 *p) {
    const uint2 raw = *reinterpret_cast<const uint2 *>(p);
    const __nv_bfloat162 lo = *reinterpret_cast<const __nv_bfloat162 *>(&raw.x);
    const __nv_bfloat162 hi = *reinterpret_cast<const __nv_bfloat162 *>(&raw.y);
    out[0] = __low2float(lo); out[1] = __high2float(lo); out[2] = __low2float(hi); out[3] = __high2float(hi);
}

// Butterfly sum over the 32 lanes; every lane gets the same result, the order is fixed.
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
    return x;
}

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
    return x;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets the
// result. Warps reduce by butterfly, then warp 0 reduces the per-warp sums in warp order.
// `scratch` is 32 floats of shared memory; the function synchronizes the block, so all threads
// must call it.
__device__ __forceinline__ float block_sum(float x, float *scratch) {
    const int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    const int num_warps = blockDim.x / WARP_SIZE;
    x = warp_sum(x);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = x;
    __syncthreads();
    x = (lane < num_warps) ? scratch[lane] : 0.0f;
    return warp_sum(x);
}

// Maximum over the whole block; same contract as block_sum.
__device__ __forceinline__ float block_max(float x, float *scratch) {
    const int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    const int num_warps = blockDim.x / WARP_SIZE;
    x = warp_max(x);
    __syncthreads();
    if (lane == 0) scratch[warp] = x;
    __syncthreads();
    x = (lane < num_warps) ? scratch[lane] : -INFINITY;
    return warp_max(x);
}

// ----------------------------------------------------------------------------------------------
// asynchronous copies into shared memory (sm_80+) and packed BF16 access

// 16 (or 4) bytes from global to shared memory without passing through registers; src_ok false
// writes zeros and reads nothing (src must still be a valid address).
__device__ __forceinline__ void cp_async16(void *smem_dst, const void *src, bool src_ok) {
    const unsigned int dst = (unsigned int)__cvta_generic_to_shared(smem_dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_ok ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async4(void *smem_dst, const void *src, bool src_ok) {
    const unsigned int dst = (unsigned int)__cvta_generic_to_shared(smem_dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(src_ok ? 4 : 0) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most PENDING of this thread's most recent cp.async groups are still in flight.
template <int PENDING>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING) : "memory"); }

// Element e of 8 BF16 values packed in a 16-byte piece (element 2i in the low half of word i), exactly.
__device__ __forceinline__ float bf16x8_packed_get(const uint4 &v, int e) {
    const unsigned int w = e < 2 ? v.x : e < 4 ? v.y : e < 6 ? v.z : v.w;
    return __uint_as_float(e % 2 == 0 ? w << 16 : w & 0xffff0000u);
}

// Two floats rounded to nearest-even BF16 and packed into one word (lo in the low half), one instruction.
__device__ __forceinline__ uint32_t bf16x2_pack(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t *>(&v);
}

// Eight floats as one 16-byte piece of BF16 values (the layout bf16x8_packed_get reads).
__device__ __forceinline__ uint4 bf16x8_pack(const float v[8]) {
    return make_uint4(bf16x2_pack(v[0], v[1]), bf16x2_pack(v[2], v[3]), bf16x2_pack(v[4], v[5]), bf16x2_pack(v[6], v[7]));
}

#define COLUMN_PARTIALS_LANES 32  // rows of partials summed side by side per column

// dst[c] (+)= sum over the rows r < nrows of partials[r, c] (FP32 [nrows, ncols] row-major: per-chunk column
// sums), in a fixed order: thread (x, y) of a block sums rows y, y + COLUMN_PARTIALS_LANES, ... of column
// 32 * blockIdx.x + x in row order, then thread (x, 0) adds the lanes in y order and stores that total to
// dst[c] with grad_store (added, or written over).
__global__ void __launch_bounds__(WARP_SIZE *COLUMN_PARTIALS_LANES)
column_partials_add_kernel(float *dst, const float *partials, int nrows, int ncols, bool accumulate) {
    __shared__ float lanes[COLUMN_PARTIALS_LANES][WARP_SIZE + 1];
    const int c = blockIdx.x * WARP_SIZE + threadIdx.x;
    float sum = 0.f;
    if (c < ncols) {
#pragma unroll 4
        for (int r = threadIdx.y; r < nrows; r += COLUMN_PARTIALS_LANES) sum += partials[(long)r * ncols + c];
    }
    lanes[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y != 0 || c >= ncols) return;
    float total = 0.f;
    for (int y = 0; y < COLUMN_PARTIALS_LANES; y++) total += lanes[y][threadIdx.x];
    grad_store(&dst[c], total, accumulate);
}

// dst [ncols] (FP32) += the column sums of partials [nrows, ncols], bit-reproducibly (order above).
// accumulate: 1 adds to dst, 0 overwrites it (the same bits as adding to zeros).
static inline void column_partials_add(float *dst, const float *partials, long nrows, int ncols, bool accumulate, cudaStream_t stream) {
    shapeCheck(nrows > 0 && nrows <= 2147483647L && ncols > 0, "column partials: %ld rows x %d columns", nrows, ncols);
    const dim3 block(WARP_SIZE, COLUMN_PARTIALS_LANES);
    column_partials_add_kernel<<<ceil_div(ncols, WARP_SIZE), block, 0, stream>>>(dst, partials, (int)nrows, ncols, accumulate);
    cudaCheckLaunch();
}

#endif // KERNELS_LAYER_COMMON_CUH
