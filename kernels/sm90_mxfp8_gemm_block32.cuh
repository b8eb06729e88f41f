// MXFP8 GEMM for Hopper (sm_90a), numerics emulation: C[M,N] = alpha * A[M,K] . B[N,K]^T with
// A, B in MXFP8 (OCP MX v1.0): E4M3 elements [rows, K] (1 byte each, K-major) and one E8M0 scale
// byte per 32 elements along K, scales [rows, K/32] row-major, unswizzled (the layout of
// kernels/quantize_mxfp8_block32.cuh). Element value = E4M3(q) * 2^(x - 127); x = 0xFF is NaN.
//
// Each CTA decodes the operands in registers into BF16 shared-memory tiles and runs BF16 wgmma
// (see kernels/sm90_dequant_gemm.cuh): the product equals a BF16/FP32 GEMM of the dequantized
// operands up to FP32 accumulation order. Hopper has no MX tensor-core path, so this is emulation:
// BF16 tensor-core speed at best, with the memory traffic of FP8 (1 + 1/32 bytes per element read
// instead of 2).
//
// Exactness: E4M3 has 4 significant bits, so E4M3 * 2^k is exact in BF16 whenever the product lies
// in BF16's range: exact for every code when 3 <= x <= 246. Outside that, the largest codes of a
// block with x >= 247 (scale >= 2^120) overflow to inf, and with x <= 2 (scale <= 2^-125) the
// smallest codes have bits below 2^-133, BF16's smallest subnormal, and round. Real MXFP8 tensors
// (scales 2^ceil(log2(amax/448))) sit far inside these bounds.
//
// Decode of 2 elements (one BF16x2 word, 4 instructions): prmt places the two E4M3 bytes in the high
// bytes of the two halves and the sign of the low one in between, so one arithmetic shift right by
// 4 puts each sign at bit 15 / 31 and each magnitude e.mmm at BF16 bits 4..10 / 20..26, and a mask
// keeps those: that is the BF16 number E4M3 * 2^-120 (exponent fields align, and the E4M3
// subnormals land on BF16 subnormals). One BF16x2 multiply by 2^(x - 7) then gives E4M3 * 2^(x-127)
// exactly. 2^(x - 7) is a BF16 normal for x <= 134; larger scales take a second multiply by
// 2^(x - 134), and the NaN scale 0xFF makes the whole chunk NaN.
//
// E4M3 NaN codes (S.1111.111) are NOT decoded as NaN (checking every byte would cost a third of
// the decode): such a code reads as +-480 * 2^(x-127). The MXFP8 quantizer writes NaN codes only in
// blocks whose scale it sets to NaN (0xFF), and those decode as NaN; a producer that writes NaN
// codes under a finite scale must not feed this kernel.
#ifndef KERNELS_SM90_MXFP8_GEMM_BLOCK32_CUH
#define KERNELS_SM90_MXFP8_GEMM_BLOCK32_CUH

#include "kernels/sm90_dequant_gemm.cuh"

#define MXFP8_BLOCK 32

// BF16x2 multiply, round to nearest even (sm_90 instruction).
__device__ __forceinline__ uint32_t dq_mul_bf16x2(uint32_t a, uint32_t b) {
    uint32_t d;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm("mul.rn.bf16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
#else
    d = 0;  // never run: the GEMM runs on sm_90a only
#endif
    return d;
}

// prmt.b32 in its default mode: a selector nibble with bit 3 set replicates the sign of its byte.
__device__ __forceinline__ uint32_t dq_prmt(uint32_t a, uint32_t b, uint32_t selector) {
    uint32_t d;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(selector));
    return d;
}

// Two E4M3 bytes of w -> BF16x2 bits of E4M3 * 2^-120 (byte kFirst -> low half, kFirst+1 -> high).
// The prmt selector builds [0, w.kFirst, sign(w.kFirst) x 8, w.(kFirst+1)] (bytes 0..3).
template <uint32_t kFirst>
__device__ __forceinline__ uint32_t dq_e4m3x2_to_bf16x2_bits(uint32_t w) {
    const uint32_t selector = ((kFirst + 1u) << 12) | ((8u + kFirst) << 8) | (kFirst << 4) | 4u;
    int32_t p = (int32_t)dq_prmt(w, 0u, selector);
    return (uint32_t)(p >> 4) & 0x87F087F0u;
}

// Format policy of sm90_dequant_gemm for MXFP8: a chunk is 16 E4M3 bytes (one uint4) in one
// 32-element scale block.
struct Mxfp8Block32Format {
    typedef uint4 Raw;
    static constexpr const char *kName = "MXFP8 GEMM (sm90 emulation)";
    static constexpr int kBlock = MXFP8_BLOCK;
    static constexpr int kElemsPerByte = 1;
    static constexpr int kLoadBytes = 16;
    static constexpr bool kHalf = false;           // BF16 MMA
    static constexpr uint32_t kUnitScale = 127u;   // 2^0, used for padding chunks
    static constexpr float kAlphaCorrection = 1.0f;

    static __device__ __forceinline__ Raw load(const uint8_t *p) { return __ldg(reinterpret_cast<const uint4 *>(p)); }
    static __device__ __forceinline__ Raw zero() { return make_uint4(0u, 0u, 0u, 0u); }

    // 16 E4M3 codes and their E8M0 scale x -> 16 BF16 values E4M3 * 2^(x-127), elements 0..7 in lo.
    static __device__ __forceinline__ void decode(Raw raw, uint32_t x, uint4 &lo, uint4 &hi) {
        const uint32_t f1 = ((min(x, 134u) + 120u) << 7) * 0x10001u;  // BF16x2 2^(min(x,134) - 7)
        uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
        uint32_t out[8];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            out[2 * i] = dq_mul_bf16x2(dq_e4m3x2_to_bf16x2_bits<0u>(words[i]), f1);
            out[2 * i + 1] = dq_mul_bf16x2(dq_e4m3x2_to_bf16x2_bits<2u>(words[i]), f1);
        }
        if (x > 134u) {  // rare: scale above 2^7, or NaN
            const uint32_t f2 = x == 0xFFu ? 0x7FC07FC0u : ((x - 7u) << 7) * 0x10001u;  // BF16x2 2^(x - 134)
#pragma unroll
            for (int i = 0; i < 8; i++) out[i] = dq_mul_bf16x2(out[i], f2);
        }
        lo = make_uint4(out[0], out[1], out[2], out[3]);
        hi = make_uint4(out[4], out[5], out[6], out[7]);
    }
};

// C[M,N] (BF16 or FP32, row-major) = alpha * dequant(A) . dequant(B)^T. A: E4M3 [M,K] + E8M0
// scales [M,K/32]; B: E4M3 [N,K] + E8M0 scales [N,K/32]. K % 32 == 0; any M, N.
template <class OutT>
static inline void sm90_mxfp8_gemm_block32(OutT *C, const uint8_t *A, const uint8_t *a_scales, const uint8_t *B,
                                           const uint8_t *b_scales, int M, int N, int K, float alpha,
                                           cudaStream_t stream) {
    sm90_dequant_gemm<Mxfp8Block32Format, OutT>(C, A, a_scales, B, b_scales, M, N, K, alpha, NULL, NULL, stream);
}

#endif // KERNELS_SM90_MXFP8_GEMM_BLOCK32_CUH
