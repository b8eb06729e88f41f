// NVFP4 quantizers (arXiv 2509.25149): E2M1 elements, one UE4M3 scale per 16 elements along the
// GEMM's K axis, one fp32 scale per tensor. Two-level rule (formats.h): s_enc = 6*448/amax,
// sb = UE4M3((amax_block/6) * s_enc), q = E2M1(x / (sb * s_dec)); dequantized x = q * sb * s_dec.
//
// Layouts (x: BF16 row-major [R, C]; every call takes the tensor amax as a device value and writes
// s_dec = 1/s_enc as one device float):
//   row-wise 1x16 (activations, gradients; Fprop/Dgrad operands):
//       q [R, ceil(C/2)] bytes, element 2k in the LOW nibble of byte k; s [R, ceil(C/16)] UE4M3
//   column-wise 1x16 along R (Wgrad operands): the transpose, q [C, ceil(R/2)], s [C, ceil(R/16)];
//       optionally with the 16-point random Hadamard transform (rht16_apply) applied to each block
//       of 16 along R BEFORE the amax and the scales (then R % 16 == 0, and the amax must be the one
//       of the transformed tensor: amax_colwise_rht16)
//   2-D 16x16 (weights): one scale per 16x16 tile, replicated into both the row-wise layout and the
//       column-wise layout; the column-wise copy is exactly the transpose of the row-wise one.
// A block past the end of a line is zero-padded (scale from the elements present; a line of odd
// length ends with a byte whose high nibble is 0). Gradients may use stochastic rounding
// (SrKey, Philox; block j of line l uses sr_random16(key, stream, l * ceil(n/16) + j)). Weights and
// activations use RNE. Bit-identical to the ref_quantize_nvfp4_* functions of
// kernels/quantize_reference.h. Hopper has no FP4 MMA: the GEMM side dequantizes (q * sb is exact
// in BF16) and folds s_dec into alpha.
#ifndef KERNELS_QUANTIZE_NVFP4_BLOCK16_CUH
#define KERNELS_QUANTIZE_NVFP4_BLOCK16_CUH

#include "kernels/quantize_common.cuh"

// Loads 16 values x[r][c0 .. c0+16) (zero past C) into v; returns how many lie inside the row.
// Uses two 16-byte loads when the row is complete and C % 8 == 0.
__device__ __forceinline__ int nvfp4_load_row16(const bf16 *x, int C, int r, int c0, float v[16]) {
    int count = min(16, C - c0);
    const uint16_t *src = reinterpret_cast<const uint16_t *>(x) + (size_t)r * C + c0;
    if (count == 16 && (C % 8) == 0) {
        for (int half = 0; half < 2; half++) {
            uint4 w = reinterpret_cast<const uint4 *>(src)[half];
            uint32_t words[4] = {w.x, w.y, w.z, w.w};
            for (int k = 0; k < 4; k++) {
                v[8 * half + 2 * k] = __uint_as_float(words[k] << 16);
                v[8 * half + 2 * k + 1] = __uint_as_float(words[k] & 0xFFFF0000u);
            }
        }
    } else {
        for (int k = 0; k < 16; k++) v[k] = k < count ? bf16_bits_to_float(src[k]) : 0.0f;
    }
    return count;
}

// Loads 16 values x[r0 .. r0+16)[c] (zero past R) into v; returns how many lie inside the column.
__device__ __forceinline__ int nvfp4_load_col16(const bf16 *x, int R, int C, int r0, int c, float v[16]) {
    int count = min(16, R - r0);
    const uint16_t *src = reinterpret_cast<const uint16_t *>(x) + (size_t)r0 * C + c;
    for (int k = 0; k < 16; k++) v[k] = k < count ? bf16_bits_to_float(src[(size_t)k * C]) : 0.0f;
    return count;
}

// Writes an encoded block (packed[0..1], see nvfp4_encode_block16) of `count` elements at byte
// 8*b of a line: one 8-byte store when count == 16 and the line length n is a multiple of 16.
__device__ __forceinline__ void nvfp4_store_block16(uint8_t *q_line, int b, const uint32_t packed[2], int count, int n) {
    store_bytes8(q_line + 8 * b, make_uint2(packed[0], packed[1]), (count + 1) / 2, (n % 16) == 0);
}

// max |v_i| over 16 values, as fp32 bits.
__device__ __forceinline__ uint32_t nvfp4_amax16(const float v[16]) {
    uint32_t amax = 0;
    for (int i = 0; i < 16; i++) amax = fmt_amax_bits_update(amax, v[i]);
    return amax;
}

// Row-wise 1x16: one thread per block (row r, block b), flattened over R * ceil(C/16) with b fastest.
template <bool STOCHASTIC>
__global__ void nvfp4_quantize_rowwise_kernel(uint8_t *q, uint8_t *s, float *s_dec_out, const bf16 *x, int R, int C,
                                              const float *amax, SrKey key) {
    int nb = ceil_div(C, 16);
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    float s_enc = nvfp4_tensor_scale(*amax), s_dec = 1.0f / s_enc;
    if (idx == 0) *s_dec_out = s_dec;
    if (idx >= (size_t)R * nb) return;
    int r = (int)(idx / nb), b = (int)(idx % nb);
    float v[16];
    uint32_t rnd[16], packed[2];
    int count = nvfp4_load_row16(x, C, r, 16 * b, v);
    uint8_t sb = nvfp4_block_scale(__uint_as_float(nvfp4_amax16(v)), s_enc);
    if (STOCHASTIC) sr_random16(key, SR_STREAM_ROWWISE, (uint32_t)idx, rnd);
    nvfp4_encode_block16(v, sb, s_dec, STOCHASTIC ? rnd : nullptr, packed);
    nvfp4_store_block16(q + (size_t)r * ceil_div(C, 2), b, packed, count, C);
    s[idx] = sb;
}

// Quantizes column-wise block g of column c (values v, `count` of them inside R): optional RHT,
// block scale, encode (SR bits of block c * nb + g), store into q [C, ceil(R/2)], s [C, nb].
template <bool RHT, bool STOCHASTIC>
__device__ __forceinline__ void nvfp4_colwise_block(float v[16], int count, int c, int g, int R, float s_enc, float s_dec,
                                                    SrKey key, uint8_t *q, uint8_t *s) {
    int nb = ceil_div(R, 16);
    uint32_t rnd[16], packed[2];
    if (RHT) rht16_apply(v, RHT16_SIGN_MASK);
    uint8_t sb = nvfp4_block_scale(__uint_as_float(nvfp4_amax16(v)), s_enc);
    size_t block = (size_t)c * nb + g;
    if (STOCHASTIC) sr_random16(key, SR_STREAM_COLWISE, (uint32_t)block, rnd);
    nvfp4_encode_block16(v, sb, s_dec, STOCHASTIC ? rnd : nullptr, packed);
    nvfp4_store_block16(q + (size_t)c * ceil_div(R, 2), g, packed, count, R);
    s[block] = sb;
}

// Column-wise 1x16 along R, optional RHT: one thread per block (column c, block g), flattened
// over ceil(R/16) * C with c fastest (a warp reads 64 contiguous bytes of each row). Measured faster
// than 2 columns x 4 blocks per thread with 4-byte loads (dev/cuda/quantize.cu, version 2), which
// needs twice the registers.
template <bool RHT, bool STOCHASTIC>
__global__ void nvfp4_quantize_colwise_kernel(uint8_t *q, uint8_t *s, float *s_dec_out, const bf16 *x, int R, int C,
                                              const float *amax, SrKey key) {
    int nb = ceil_div(R, 16);
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    float s_enc = nvfp4_tensor_scale(*amax), s_dec = 1.0f / s_enc;
    if (idx == 0) *s_dec_out = s_dec;
    if (idx >= (size_t)nb * C) return;
    int c = (int)(idx % C), g = (int)(idx / C);
    float v[16];
    int count = nvfp4_load_col16(x, R, C, 16 * g, c, v);
    nvfp4_colwise_block<RHT, STOCHASTIC>(v, count, c, g, R, s_enc, s_dec, key, q, s);
}

// amax of the RHT'd column-wise blocks into *amax_bits (0 before the launch), R % 16 == 0; same
// thread mapping as nvfp4_quantize_colwise_kernel, block-wide reduction, one atomicMax per block.
__global__ void amax_colwise_rht16_kernel(unsigned int *amax_bits, const bf16 *x, int R, int C) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    uint32_t m = 0;
    if (idx < (size_t)(R / 16) * C) {
        float v[16];
        nvfp4_load_col16(x, R, C, 16 * (int)(idx / C), (int)(idx % C), v);
        rht16_apply(v, RHT16_SIGN_MASK);
        m = nvfp4_amax16(v);
    }
    block_atomic_max_u32(amax_bits, m);
}

// 2-D 16x16 tiles (weights, RNE): 16 threads per tile; thread i of a tile loads row i of the tile
// (16 values along C), the tile amax is reduced over the 16 lanes, then the thread encodes that row
// (row-wise copy) and column i of the tile (column-wise copy) with the tile's scale.
__global__ void nvfp4_quantize_2d_kernel(uint8_t *q_row, uint8_t *s_row, uint8_t *q_col, uint8_t *s_col, float *s_dec_out,
                                         const bf16 *x, int R, int C, const float *amax) {
    int nbc = ceil_div(C, 16), nbr = ceil_div(R, 16);
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t tile = idx / 16;
    int i = (int)(idx % 16);
    float s_enc = nvfp4_tensor_scale(*amax), s_dec = 1.0f / s_enc;
    if (idx == 0) *s_dec_out = s_dec;
    bool in_grid = tile < (size_t)nbr * nbc; // whole 16-lane groups are in or out together
    int tr = in_grid ? (int)(tile / nbc) : 0, tc = in_grid ? (int)(tile % nbc) : 0;
    int r = 16 * tr + i, c = 16 * tc + i;
    float v[16];
    uint32_t packed[2];
    int count = 0;
    uint32_t m = 0;
    if (in_grid && r < R) {
        count = nvfp4_load_row16(x, C, r, 16 * tc, v);
        m = nvfp4_amax16(v);
    }
    for (int offset = 8; offset > 0; offset >>= 1) m = max(m, __shfl_xor_sync(0xFFFFFFFFu, m, offset));
    if (!in_grid) return;
    uint8_t sb = nvfp4_block_scale(__uint_as_float(m), s_enc);
    if (r < R) {
        nvfp4_encode_block16(v, sb, s_dec, nullptr, packed);
        nvfp4_store_block16(q_row + (size_t)r * ceil_div(C, 2), tc, packed, count, C);
        s_row[(size_t)r * nbc + tc] = sb;
    }
    if (c < C) {
        count = nvfp4_load_col16(x, R, C, 16 * tr, c, v);
        nvfp4_encode_block16(v, sb, s_dec, nullptr, packed);
        nvfp4_store_block16(q_col + (size_t)c * ceil_div(R, 2), tr, packed, count, R);
        s_col[(size_t)c * nbr + tr] = sb;
    }
}

static inline void nvfp4_check_args(const bf16 *x, int R, int C, const float *amax) {
    shapeCheck(R >= 1 && C >= 1, "R=%d C=%d", R, C);
    shapeCheck(amax != nullptr, "NVFP4 needs the device amax");
    shapeCheck(((uintptr_t)x & 15) == 0, "x must be 16-byte aligned");
    shapeCheck((size_t)R * C / 16 + R + C < (1ull << 30), "R=%d C=%d: too many 16-blocks for the 32-bit SR block index", R, C);
}

// Row-wise 1x16 copy: q [R, ceil(C/2)], s [R, ceil(C/16)]; sr NULL -> RNE, else stochastic rounding.
static inline void nvfp4_quantize_rowwise(uint8_t *q, uint8_t *s, float *s_dec, const bf16 *x, int R, int C, const float *amax,
                                          const SrKey *sr, cudaStream_t stream) {
    nvfp4_check_args(x, R, C, amax);
    shapeCheck(((uintptr_t)q & 7) == 0, "q must be 8-byte aligned");
    const int block_size = 256;
    size_t threads = (size_t)R * ceil_div(C, 16);
    int grid = (int)ceil_div(threads, (size_t)block_size);
    SrKey key = sr ? *sr : SrKey{0, 0, 0};
    if (sr) nvfp4_quantize_rowwise_kernel<true><<<grid, block_size, 0, stream>>>(q, s, s_dec, x, R, C, amax, key);
    else nvfp4_quantize_rowwise_kernel<false><<<grid, block_size, 0, stream>>>(q, s, s_dec, x, R, C, amax, key);
    cudaCheckLaunch();
}

// Column-wise 1x16 copy along R: q [C, ceil(R/2)], s [C, ceil(R/16)]; rht: apply the 16-point RHT
// first (R % 16 == 0; amax must then come from amax_colwise_rht16); sr NULL -> RNE.
static inline void nvfp4_quantize_colwise(uint8_t *q, uint8_t *s, float *s_dec, const bf16 *x, int R, int C, bool rht,
                                          const float *amax, const SrKey *sr, cudaStream_t stream) {
    nvfp4_check_args(x, R, C, amax);
    shapeCheck(!rht || R % 16 == 0, "the RHT copy needs R %% 16 == 0 (R=%d)", R);
    shapeCheck(((uintptr_t)q & 7) == 0, "q must be 8-byte aligned");
    const int block_size = 256;
    size_t threads = (size_t)ceil_div(R, 16) * C;
    int grid = (int)ceil_div(threads, (size_t)block_size);
    SrKey key = sr ? *sr : SrKey{0, 0, 0};
    if (rht && sr) nvfp4_quantize_colwise_kernel<true, true><<<grid, block_size, 0, stream>>>(q, s, s_dec, x, R, C, amax, key);
    else if (rht) nvfp4_quantize_colwise_kernel<true, false><<<grid, block_size, 0, stream>>>(q, s, s_dec, x, R, C, amax, key);
    else if (sr) nvfp4_quantize_colwise_kernel<false, true><<<grid, block_size, 0, stream>>>(q, s, s_dec, x, R, C, amax, key);
    else nvfp4_quantize_colwise_kernel<false, false><<<grid, block_size, 0, stream>>>(q, s, s_dec, x, R, C, amax, key);
    cudaCheckLaunch();
}

// *amax = max |RHT16(x)| over the column-wise 16-blocks (R % 16 == 0).
static inline void amax_colwise_rht16(float *amax, const bf16 *x, int R, int C, cudaStream_t stream) {
    shapeCheck(R >= 16 && R % 16 == 0 && C >= 1, "R=%d must be a positive multiple of 16, C=%d", R, C);
    const int block_size = 256;
    int grid = (int)ceil_div((size_t)(R / 16) * C, (size_t)block_size);
    cudaCheck(cudaMemsetAsync(amax, 0, sizeof(float), stream));
    amax_colwise_rht16_kernel<<<grid, block_size, 0, stream>>>(reinterpret_cast<unsigned int *>(amax), x, R, C);
    cudaCheckLaunch();
}

// 2-D 16x16 weight copies (RNE): q_row [R, ceil(C/2)], s_row [R, ceil(C/16)], q_col [C, ceil(R/2)],
// s_col [C, ceil(R/16)].
static inline void nvfp4_quantize_2d(uint8_t *q_row, uint8_t *s_row, uint8_t *q_col, uint8_t *s_col, float *s_dec, const bf16 *x,
                                     int R, int C, const float *amax, cudaStream_t stream) {
    nvfp4_check_args(x, R, C, amax);
    shapeCheck(((uintptr_t)q_row & 7) == 0 && ((uintptr_t)q_col & 7) == 0, "q_row/q_col must be 8-byte aligned");
    const int block_size = 256;
    size_t threads = (size_t)ceil_div(R, 16) * ceil_div(C, 16) * 16;
    int grid = (int)ceil_div(threads, (size_t)block_size);
    nvfp4_quantize_2d_kernel<<<grid, block_size, 0, stream>>>(q_row, s_row, q_col, s_col, s_dec, x, R, C, amax);
    cudaCheckLaunch();
}

#endif // KERNELS_QUANTIZE_NVFP4_BLOCK16_CUH
