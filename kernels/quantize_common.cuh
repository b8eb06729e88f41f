// Pieces shared by the GPU quantizers: the per-tensor amax of a BF16 tensor, and FP8 casts of
// float pairs through the hardware convert (cvt.rn.satfinite.{e4m3,e5m2}x2.f32, sm_89+), which gives
// the same bits as the software codec of kernels/formats.h for every fp32 input
// (test_quantizers checks all 2^32 inputs on the device).
#ifndef KERNELS_QUANTIZE_COMMON_CUH
#define KERNELS_QUANTIZE_COMMON_CUH

#include <cuda_fp8.h>
#include "kernels/cuda_common.h"
#include "kernels/formats.h"

// Two FP8 codes of (a, b) in one 16-bit word, a in the low byte. RNE, saturating, NaN -> 0x7F.
template <Fp8Format F>
__device__ __forceinline__ uint16_t fp8x2_from_float2_rne(float a, float b) {
    return (uint16_t)__nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, F == FP8_E4M3 ? __NV_E4M3 : __NV_E5M2);
}

// Eight FP8 codes of v[0..8) * scale packed little-endian into a uint2 (v[0] in the lowest byte).
template <Fp8Format F>
__device__ __forceinline__ uint2 fp8x8_from_float8_rne(const float v[8], float scale) {
    uint32_t w[2];
    for (int k = 0; k < 2; k++) {
        uint32_t lo = fp8x2_from_float2_rne<F>(v[4 * k] * scale, v[4 * k + 1] * scale);
        uint32_t hi = fp8x2_from_float2_rne<F>(v[4 * k + 2] * scale, v[4 * k + 3] * scale);
        w[k] = lo | (hi << 16);
    }
    return make_uint2(w[0], w[1]);
}

// Merges each thread's value m into *dst with one atomicMax per block: a warp-shuffle maximum,
// then the first warp reduces the per-warp maxima from shared memory. All threads must call it.
__device__ __forceinline__ void block_atomic_max_u32(unsigned int *dst, uint32_t m) {
    for (int offset = 16; offset > 0; offset >>= 1) m = max(m, __shfl_xor_sync(0xFFFFFFFFu, m, offset));
    __shared__ uint32_t warp_max[32];
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) warp_max[warp] = m;
    __syncthreads();
    if (warp == 0) {
        m = lane < (int)(blockDim.x / 32) ? warp_max[lane] : 0u;
        for (int offset = 16; offset > 0; offset >>= 1) m = max(m, __shfl_xor_sync(0xFFFFFFFFu, m, offset));
        if (lane == 0) atomicMax(dst, m);
    }
}

// amax of n BF16 values as fp32 bits in *amax_bits (which must hold 0 before the launch): each
// thread reduces 8-element chunks (grid-stride), the block reduces through warp shuffles and shared
// memory, and one atomicMax per block merges. |bf16| bits order like the values and a NaN (bits
// above inf) wins, so a NaN input gives a NaN amax. Vector loads need x 16-byte aligned.
__global__ void amax_bf16_kernel(unsigned int *amax_bits, const bf16 *x, size_t n) {
    const uint16_t *xs = reinterpret_cast<const uint16_t *>(x);
    uint32_t m = 0;
    size_t n8 = n / 8;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n8; i += stride) {
        uint4 w = reinterpret_cast<const uint4 *>(xs)[i];
        uint32_t words[4] = {w.x, w.y, w.z, w.w};
        for (int k = 0; k < 4; k++) {
            uint32_t lo = words[k] & 0x7FFFu, hi = (words[k] >> 16) & 0x7FFFu;
            m = max(m, max(lo, hi));
        }
    }
    for (size_t i = n8 * 8 + (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) m = max(m, (uint32_t)(xs[i] & 0x7FFFu));
    block_atomic_max_u32(amax_bits, m << 16);
}

// *amax = max |x| over the n BF16 values of x (device pointers; amax is overwritten).
static inline void amax_bf16(float *amax, const bf16 *x, size_t n, cudaStream_t stream) {
    shapeCheck(((uintptr_t)x & 15) == 0, "x must be 16-byte aligned");
    const int block_size = 512;
    int num_sms;
    int device;
    cudaCheck(cudaGetDevice(&device));
    cudaCheck(cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, device));
    size_t blocks_needed = ceil_div(n / 8 + 1, (size_t)block_size);
    int grid = (int)(blocks_needed < (size_t)num_sms * 4 ? blocks_needed : (size_t)num_sms * 4);
    cudaCheck(cudaMemsetAsync(amax, 0, sizeof(float), stream));
    amax_bf16_kernel<<<grid, block_size, 0, stream>>>(reinterpret_cast<unsigned int *>(amax), x, n);
    cudaCheckLaunch();
}

// ----------------------------------------------------------------------------
// 64 x 64 tiles staged through shared memory, for the quantizers that write a row-wise copy and a
// transposed (column-wise) copy from one read of x. A block of QTILE_THREADS threads owns the tile
// at rows [r0, r0 + 64), columns [c0, c0 + 64) of x [R, C]; elements outside x read as 0. The tile
// is two halves of 32 rows, h = 0, 1:
//   row phase:    thread t holds row 32h + t / 8, columns 8 * (t % 8) .. + 8 (4 threads = 32 columns);
//   column phase: thread t holds column t / 4, rows 32h + 8 * (t % 4) .. + 8 (4 threads = 32 rows).
// Both halves' loads are issued before either is used (two 16-byte loads in flight per thread).
// The shared tile is float [64][65]: the odd pitch makes the column phase conflict-free.
#define QTILE_ROWS 64
#define QTILE_HALF_ROWS 32
#define QTILE_COLS 64
#define QTILE_PITCH (QTILE_COLS + 1)
#define QTILE_THREADS 256

// Row phase: loads the thread's 2 x 8 values into v[h] and into the shared tile; count[h] = how
// many of v[h] lie inside x (0 when the row is past R).
__device__ __forceinline__ void qtile_load_rows(const bf16 *x, int R, int C, int r0, int c0, float v[2][8], int count[2],
                                                float (*tile)[QTILE_PITCH]) {
    int tr = threadIdx.x / 8, tc = 8 * (threadIdx.x % 8), c = c0 + tc;
    const uint16_t *src[2];
    uint4 w[2];
    bool vector[2];
    for (int h = 0; h < 2; h++) {
        int r = r0 + QTILE_HALF_ROWS * h + tr;
        count[h] = r < R ? min(8, max(0, C - c)) : 0;
        src[h] = reinterpret_cast<const uint16_t *>(x) + (size_t)r * C + c;
        vector[h] = count[h] == 8 && (C % 8) == 0;
        if (vector[h]) w[h] = *reinterpret_cast<const uint4 *>(src[h]);
    }
    for (int h = 0; h < 2; h++) {
        if (vector[h]) {
            uint32_t words[4] = {w[h].x, w[h].y, w[h].z, w[h].w};
            for (int k = 0; k < 4; k++) {
                v[h][2 * k] = __uint_as_float(words[k] << 16);
                v[h][2 * k + 1] = __uint_as_float(words[k] & 0xFFFF0000u);
            }
        } else {
            for (int k = 0; k < 8; k++) v[h][k] = k < count[h] ? bf16_bits_to_float(src[h][k]) : 0.0f;
        }
        for (int k = 0; k < 8; k++) tile[QTILE_HALF_ROWS * h + tr][tc + k] = v[h][k];
    }
}

// Column phase of half h (after a __syncthreads): reads the thread's 8 values of its tile column
// into v; returns how many lie inside x.
__device__ __forceinline__ int qtile_read_col8(int R, int C, int r0, int c0, int h, float v[8], float (*tile)[QTILE_PITCH]) {
    int tc = threadIdx.x / 4, tr = QTILE_HALF_ROWS * h + 8 * (threadIdx.x % 4);
    for (int k = 0; k < 8; k++) v[k] = tile[tr + k][tc];
    return c0 + tc < C ? min(8, max(0, R - (r0 + tr))) : 0;
}

// Stores the first `count` bytes of w (little-endian) at dst, as one 8-byte store when count == 8
// and `aligned` (dst 8-byte aligned).
__device__ __forceinline__ void store_bytes8(uint8_t *dst, uint2 w, int count, bool aligned) {
    if (count == 8 && aligned) {
        *reinterpret_cast<uint2 *>(dst) = w;
        return;
    }
    for (int k = 0; k < count; k++) dst[k] = (uint8_t)((k < 4 ? w.x : w.y) >> (8 * (k % 4)));
}

// max over the 4 consecutive lanes that hold one 32-element block (row or column phase).
__device__ __forceinline__ uint32_t max_over_4_lanes(uint32_t m) {
    m = max(m, __shfl_xor_sync(0xFFFFFFFFu, m, 1));
    return max(m, __shfl_xor_sync(0xFFFFFFFFu, m, 2));
}

#endif // KERNELS_QUANTIZE_COMMON_CUH
