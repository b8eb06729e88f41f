// NVFP4 GEMM for Hopper (sm_90a), numerics emulation: C[M,N] = alpha * A[M,K] . B[N,K]^T with
// A, B in NVFP4 (arXiv 2509.25149): packed E2M1 elements [rows, K/2] (K-major, element 2i in the
// LOW nibble of byte i), one UE4M3 scale byte per 16 elements along K, scales [rows, K/16]
// row-major, unswizzled, and one FP32 per-tensor decode scale s_dec per operand (device pointer;
// the layout of kernels/quantize_nvfp4_block16.cuh). Element value = E2M1(q) * UE4M3(sb) * s_dec
// (the scale's sign bit is ignored, as cuBLAS does); the two s_dec go into alpha.
//
// Each CTA decodes the operands in registers into FP16 shared-memory tiles and runs FP16 wgmma
// (see kernels/sm90_dequant_gemm.cuh): the product equals an FP32 GEMM of the dequantized operands
// up to FP32 accumulation order. Hopper has no FP4 tensor-core path, so this is emulation: FP16
// tensor-core speed at best, with the memory traffic of FP4 (1/2 + 1/16 bytes per element read
// instead of 2 for BF16).
//
// Exactness: every E2M1 * UE4M3 product is exact in FP16 (and in BF16). E2M1 = i/2 with
// i in {0,1,2,3,4,6,8,12} and UE4M3 = j * 2^-9 with j an integer of at most 4 significant bits, so
// the product has at most 6 significant bits, lies in [2^-10, 6 * 448] and is a multiple of 2^-10.
// The tiles hold it times 2^-7 (FP16 values i*j * 2^-17 <= 21: normal or subnormal, always exact)
// and alpha carries 2^14 back, so nothing rounds before the FP32 accumulation. FP16 rather than BF16
// because the decode below is cheaper in FP16's bit layout; the MMA rate is the same.
//
// Decode of 2 elements (one FP16x2 word, 4 instructions): prmt gathers the byte holding elements
// 2j (low nibble) and 2j+1 (high nibble) twice, once shifted left by 4, so that element 2j's nibble
// sits at bits 12..15 with its sign replicated above it and element 2j+1's nibble at bits 28..31;
// an arithmetic shift right by 3 and a mask leave each sign at bit 15 / 31 and each magnitude e.em
// at FP16 bits 9..11 / 25..27: the FP16 number E2M1 * 2^-14 (E2M1's subnormal 0.5 lands on an FP16
// subnormal). One FP16x2 multiply by UE4M3 * 2^7 (<= 57344, a normal FP16) then gives
// E2M1 * UE4M3 * 2^-7 exactly.
#ifndef KERNELS_SM90_NVFP4_GEMM_BLOCK16_CUH
#define KERNELS_SM90_NVFP4_GEMM_BLOCK16_CUH

#include "kernels/sm90_dequant_gemm.cuh"
#include "kernels/sm90_mxfp8_gemm_block32.cuh"  // dq_prmt

#define NVFP4_BLOCK 16

// FP16x2 multiply, round to nearest even, subnormals kept (no .ftz).
__device__ __forceinline__ uint32_t dq_mul_f16x2(uint32_t a, uint32_t b) {
    uint32_t d;
    asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
    return d;
}

// FP16x2 word holding the UE4M3 scale byte sb (sign ignored) times 2^7 in both halves.
__device__ __forceinline__ uint32_t dq_ue4m3_times128_f16x2(uint32_t sb) {
    uint32_t pair = (sb & 0x7Fu) * 0x0101u;  // the same code in both bytes
    uint32_t scale = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    unsigned short pair16 = (unsigned short)pair;
    asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(scale) : "h"(pair16));  // exact: E4M3 is inside FP16
#endif
    return dq_mul_f16x2(scale, 0x58005800u);  // x 128 (FP16 0x5800), exact
}

// Format policy of sm90_dequant_gemm for NVFP4: a chunk is 16 E2M1 nibbles (one uint2), exactly
// one 16-element scale block.
struct Nvfp4Block16Format {
    typedef uint2 Raw;
    static constexpr const char *kName = "NVFP4 GEMM (sm90 emulation)";
    static constexpr int kBlock = NVFP4_BLOCK;
    static constexpr int kElemsPerByte = 2;
    static constexpr int kLoadBytes = 8;
    static constexpr bool kHalf = true;              // FP16 MMA
    static constexpr uint32_t kUnitScale = 0x38u;    // UE4M3 1.0, used for padding chunks
    static constexpr float kAlphaCorrection = 16384.0f;  // 2^7 per operand, see the exactness note

    static __device__ __forceinline__ Raw load(const uint8_t *p) { return __ldg(reinterpret_cast<const uint2 *>(p)); }
    static __device__ __forceinline__ Raw zero() { return make_uint2(0u, 0u); }

    // 16 E2M1 nibbles and their UE4M3 scale -> 16 FP16 values E2M1 * UE4M3 * 2^-7, elements 0..7 in lo.
    static __device__ __forceinline__ void decode(Raw raw, uint32_t sb, uint4 &lo, uint4 &hi) {
        const uint32_t factor = dq_ue4m3_times128_f16x2(sb);
        const uint32_t words[2] = {raw.x, raw.y};
        uint32_t out[8];
#pragma unroll
        for (int w = 0; w < 2; w++) {
            const uint32_t shifted = words[w] << 4;  // byte j: element 2j's nibble in the high half
#pragma unroll
            for (uint32_t j = 0; j < 4; j++) {
                // Bytes of p: [any, shifted.j, sign(shifted.j) x 8, words[w].j].
                const uint32_t selector = ((4u + j) << 12) | ((8u + j) << 8) | (j << 4) | j;
                int32_t p = (int32_t)dq_prmt(shifted, words[w], selector);
                out[4 * w + j] = dq_mul_f16x2((uint32_t)(p >> 3) & 0x8E008E00u, factor);
            }
        }
        lo = make_uint4(out[0], out[1], out[2], out[3]);
        hi = make_uint4(out[4], out[5], out[6], out[7]);
    }
};

// C[M,N] (BF16 or FP32, row-major) = alpha * (*a_s_dec) * (*b_s_dec) * dequant(A) . dequant(B)^T.
// A: packed E2M1 [M,K/2] + UE4M3 scales [M,K/16]; B: packed [N,K/2] + scales [N,K/16]; a_s_dec,
// b_s_dec: device pointers to the per-tensor decode scales. K % 16 == 0; any M, N.
template <class OutT>
static inline void sm90_nvfp4_gemm_block16(OutT *C, const uint8_t *A, const uint8_t *a_scales, const float *a_s_dec,
                                           const uint8_t *B, const uint8_t *b_scales, const float *b_s_dec, int M,
                                           int N, int K, float alpha, cudaStream_t stream) {
    shapeCheck(a_s_dec != NULL && b_s_dec != NULL, "NVFP4 GEMM needs both per-tensor s_dec pointers");
    sm90_dequant_gemm<Nvfp4Block16Format, OutT>(C, A, a_scales, B, b_scales, M, N, K, alpha, a_s_dec, b_s_dec, stream);
}

#endif // KERNELS_SM90_NVFP4_GEMM_BLOCK16_CUH
