// Number formats of the low-precision modes, one header for the CPU (gcc, C) and the GPU (nvcc):
//   BF16 bits <-> float; FP8 E4M3 (OCP "fn") and E5M2; FP4 E2M1; the E8M0 (MX) and UE4M3 (NVFP4)
//   block scales; symmetric INT8/INT16; the scale rules of FP8-CS, MXFP8 and NVFP4; the 16-point
//   random Hadamard transform; the Philox4x32-10 counter-based RNG used for stochastic rounding.
// Everything is integer / IEEE-float bit manipulation with no hardware format converts, so the
// host and the device produce identical bits (the tests check this). The only float operations
// are single IEEE multiplies, divides, adds and rintf, none of which is contracted into an FMA.
//
// Rounding rules (all encoders):
//   *_rne: round to nearest, ties to even, then SATURATE to the largest finite value (PTX
//          cvt.rn.satfinite): |x| above max (including +-inf) -> +-max.
//   *_sr:  stochastic rounding with 32 random bits `rnd`: with lo <= |x| < hi the neighbouring
//          grid points, round to hi iff rnd < floor(2^32 * (|x| - lo) / (hi - lo)) (the fraction
//          is exact whenever |x| is at least 2^-32 of a grid step), then saturate as above.
//   Signs are kept, so a negative value that rounds to zero gives negative zero.
//   NaN: FP8 E4M3 and E5M2 -> 0x7F (canonical positive NaN, as the CUDA converts);
//        E2M1 has no NaN -> +6 (0x7, as the CUDA converts); INT8/INT16 -> 0.
#ifndef KERNELS_FORMATS_H
#define KERNELS_FORMATS_H

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define FMT_HD __host__ __device__
#else
#define FMT_HD
#endif

// ----------------------------------------------------------------------------
// float <-> bits

static inline FMT_HD uint32_t fmt_float_to_bits(float x) {
#ifdef __CUDA_ARCH__
    return __float_as_uint(x);
#else
    uint32_t u;
    memcpy(&u, &x, sizeof(u));
    return u;
#endif
}

static inline FMT_HD float fmt_bits_to_float(uint32_t u) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float x;
    memcpy(&x, &u, sizeof(x));
    return x;
#endif
}

static inline FMT_HD int fmt_isnan(float x) { return (fmt_float_to_bits(x) & 0x7FFFFFFFu) > 0x7F800000u; }

// 2^e as a float, exact for -149 <= e <= 127 (subnormal powers included).
static inline FMT_HD float fmt_exp2i(int e) {
    if (e >= -126) return fmt_bits_to_float((uint32_t)(e + 127) << 23);
    return fmt_bits_to_float(1u << (e + 149));
}

// ----------------------------------------------------------------------------
// BF16 (raw uint16_t bits, the upper half of an fp32)

static inline FMT_HD float bf16_bits_to_float(uint16_t b) { return fmt_bits_to_float((uint32_t)b << 16); }

// Round-to-nearest-even float -> bf16 bits (NaN -> quiet NaN with the sign kept; overflow -> inf).
static inline FMT_HD uint16_t bf16_bits_from_float_rne(float x) {
    uint32_t u = fmt_float_to_bits(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

// ----------------------------------------------------------------------------
// Generic minifloat codec (sign handled by the callers)

// Encodes a magnitude (fp32 bits `abs_bits`, sign bit clear, not NaN; +inf allowed) into a
// minifloat with `mbits` mantissa bits and exponent bias `bias` whose largest finite magnitude
// code is `max_code`. Returns the magnitude code (exponent field << mbits | mantissa field).
// stochastic = 0: RNE; stochastic = 1: round up iff rnd < the 32-bit truncated fraction.
static inline FMT_HD uint32_t fmt_minifloat_encode_abs(uint32_t abs_bits, int mbits, int bias, uint32_t max_code,
                                                       int stochastic, uint32_t rnd) {
    int exp_field = (int)(abs_bits >> 23);
    int emin = 1 - bias; // unbiased exponent of the target's smallest normal
    uint64_t sig;        // value in units of 2^-shift of the result's last place
    int shift;
    uint32_t rebias;     // subtracted from the truncated word to move the exponent to the target bias
    if (exp_field - 127 >= emin) {
        // Target normal range: drop the low 23 - mbits bits of the whole word; a carry out of the
        // mantissa moves into the exponent field, which is exactly rounding up to the next binade.
        sig = abs_bits;
        shift = 23 - mbits;
        rebias = (uint32_t)(127 - bias) << mbits;
    } else {
        // Target subnormal range: the significand (implicit bit included for fp32 normals) in
        // units of the target's smallest subnormal 2^(emin - mbits).
        int e = exp_field ? exp_field - 127 : -126;
        sig = (abs_bits & 0x7FFFFFu) | (exp_field ? 0x800000u : 0u);
        shift = (23 - mbits) + (emin - e);
        if (shift > 63) shift = 63;
        rebias = 0;
    }
    uint64_t rem = sig & ((1ull << shift) - 1ull);
    uint32_t code = (uint32_t)(sig >> shift) - rebias;
    int up;
    if (stochastic) {
        up = rnd < (uint32_t)((rem << 32) >> shift);
    } else {
        uint64_t half = 1ull << (shift - 1);
        up = rem > half || (rem == half && (code & 1u));
    }
    code += (uint32_t)up;
    return code > max_code ? max_code : code;
}

// Decodes a finite magnitude code of a minifloat with `mbits` mantissa bits and bias `bias`.
static inline FMT_HD float fmt_minifloat_decode_abs(uint32_t code, int mbits, int bias) {
    uint32_t exp_field = code >> mbits, mant = code & ((1u << mbits) - 1u);
    if (exp_field == 0) return (float)mant * fmt_exp2i(1 - bias - mbits);
    return fmt_bits_to_float(((exp_field - (uint32_t)bias + 127u) << 23) | (mant << (23 - mbits)));
}

// ----------------------------------------------------------------------------
// FP8: E4M3 (1-4-3, bias 7, max 448, NaN = S.1111.111, no inf), E5M2 (1-5-2, bias 15, max 57344)

typedef enum { FP8_E4M3 = 0, FP8_E5M2 = 1 } Fp8Format;

#define FP8_E4M3_MAX 448.0f
#define FP8_E5M2_MAX 57344.0f
#define FP8_E4M3_MAX_CODE 0x7Eu
#define FP8_E5M2_MAX_CODE 0x7Bu
#define FP8_NAN_CODE 0x7Fu

static inline FMT_HD uint8_t fp8_encode_(float x, int mbits, int bias, uint32_t max_code, int stochastic, uint32_t rnd) {
    uint32_t u = fmt_float_to_bits(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint8_t)FP8_NAN_CODE;
    uint32_t mag = fmt_minifloat_encode_abs(u & 0x7FFFFFFFu, mbits, bias, max_code, stochastic, rnd);
    return (uint8_t)(((u >> 24) & 0x80u) | mag);
}

static inline FMT_HD uint8_t fp8_e4m3_from_float_rne(float x) { return fp8_encode_(x, 3, 7, FP8_E4M3_MAX_CODE, 0, 0); }
static inline FMT_HD uint8_t fp8_e5m2_from_float_rne(float x) { return fp8_encode_(x, 2, 15, FP8_E5M2_MAX_CODE, 0, 0); }
static inline FMT_HD uint8_t fp8_e4m3_from_float_sr(float x, uint32_t rnd) { return fp8_encode_(x, 3, 7, FP8_E4M3_MAX_CODE, 1, rnd); }
static inline FMT_HD uint8_t fp8_e5m2_from_float_sr(float x, uint32_t rnd) { return fp8_encode_(x, 2, 15, FP8_E5M2_MAX_CODE, 1, rnd); }

static inline FMT_HD float fp8_e4m3_to_float(uint8_t c) {
    uint32_t sign = (uint32_t)(c & 0x80u) << 24;
    if ((c & 0x7Fu) == 0x7Fu) return fmt_bits_to_float(sign | 0x7FC00000u);
    return fmt_bits_to_float(sign | fmt_float_to_bits(fmt_minifloat_decode_abs(c & 0x7Fu, 3, 7)));
}

static inline FMT_HD float fp8_e5m2_to_float(uint8_t c) {
    uint32_t sign = (uint32_t)(c & 0x80u) << 24;
    if ((c & 0x7Cu) == 0x7Cu) return fmt_bits_to_float(sign | ((c & 0x03u) ? 0x7FC00000u : 0x7F800000u));
    return fmt_bits_to_float(sign | fmt_float_to_bits(fmt_minifloat_decode_abs(c & 0x7Fu, 2, 15)));
}

static inline FMT_HD float fp8_max(Fp8Format f) { return f == FP8_E4M3 ? FP8_E4M3_MAX : FP8_E5M2_MAX; }
static inline FMT_HD uint8_t fp8_from_float_rne(Fp8Format f, float x) {
    return f == FP8_E4M3 ? fp8_e4m3_from_float_rne(x) : fp8_e5m2_from_float_rne(x);
}
static inline FMT_HD float fp8_to_float(Fp8Format f, uint8_t c) {
    return f == FP8_E4M3 ? fp8_e4m3_to_float(c) : fp8_e5m2_to_float(c);
}

// ----------------------------------------------------------------------------
// FP4 E2M1 (1-2-1, bias 1): magnitudes {0, 0.5, 1, 1.5, 2, 3, 4, 6}, no inf/NaN.
// A nibble holds sign << 3 | magnitude code. Packing: element 2i in the LOW nibble of byte i.

#define FP4_E2M1_MAX 6.0f
#define FP4_E2M1_MAX_CODE 0x7u

// The E2M1 RNE encoder is written out for the 8-point grid (it runs once per element in the NVFP4
// quantizers, where the generic codec's 64-bit shifts dominated the time): the number of midpoints
// between neighbouring grid values below |x|, compared on the fp32 bits (non-negative floats order
// like their bits), with ">" at the midpoints whose lower neighbour has the even code (0.25, 1.25,
// 2.5, 5) and ">=" at the others (0.75, 1.75, 3.5). test_formats checks it against the generic codec
// fmt_minifloat_encode_abs(a, 1, 1, 7, 0, 0) and a nearest-value search. (A written-out SR encoder
// was slower than the generic one on the GPU: dev/RESULTS.md.) NaN encodes to 7 (+6, the sign
// dropped, as the CUDA converts).
static inline FMT_HD uint32_t fp4_e2m1_rne_abs_(uint32_t a) {
    return (uint32_t)(a > 0x3E800000u) + (uint32_t)(a >= 0x3F400000u) + (uint32_t)(a > 0x3FA00000u) +
           (uint32_t)(a >= 0x3FE00000u) + (uint32_t)(a > 0x40200000u) + (uint32_t)(a >= 0x40600000u) +
           (uint32_t)(a > 0x40A00000u);
}

static inline FMT_HD uint8_t fp4_e2m1_from_float_rne(float x) {
    uint32_t u = fmt_float_to_bits(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint8_t)FP4_E2M1_MAX_CODE;
    return (uint8_t)(((u >> 28) & 0x8u) | fp4_e2m1_rne_abs_(u & 0x7FFFFFFFu));
}
static inline FMT_HD uint8_t fp4_e2m1_from_float_sr(float x, uint32_t rnd) {
    uint32_t u = fmt_float_to_bits(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint8_t)FP4_E2M1_MAX_CODE;
    return (uint8_t)(((u >> 28) & 0x8u) | fmt_minifloat_encode_abs(u & 0x7FFFFFFFu, 1, 1, FP4_E2M1_MAX_CODE, 1, rnd));
}

static inline FMT_HD float fp4_e2m1_to_float(uint8_t nibble) {
    float mag = fmt_minifloat_decode_abs(nibble & 0x7u, 1, 1);
    return (nibble & 0x8u) ? -mag : mag;
}

static inline FMT_HD uint8_t fp4_pack2(uint8_t even, uint8_t odd) { return (uint8_t)((even & 0xFu) | ((odd & 0xFu) << 4)); }

// ----------------------------------------------------------------------------
// E8M0 (MX block scale): byte x means 2^(x - 127); 0xFF is NaN; no zero, no sign.

#define E8M0_NAN_CODE 0xFFu

// 2^ceil(log2(v)) as E8M0 (MXFP8 recipe of arXiv 2506.08027: the scale is rounded UP so the block
// maximum never exceeds the element maximum): v = amax / element max, sign ignored.
// NaN -> 0xFF; results clamp to [2^-127, 2^127] (0x00..0xFE), so +inf -> 0xFE and v = 0
// (an all-zero block) -> 0x00, the smallest scale (all its elements encode to zero anyway).
static inline FMT_HD uint8_t e8m0_scale_round_up(float v) {
    uint32_t u = fmt_float_to_bits(v) & 0x7FFFFFFFu;
    if (u > 0x7F800000u) return (uint8_t)E8M0_NAN_CODE;
    uint32_t exp_field = u >> 23, mant = u & 0x7FFFFFu;
    uint32_t code;
    if (exp_field == 0) code = mant > 0x400000u ? 1u : 0u; // subnormal v: 2^-126 or clamped to 2^-127
    else code = exp_field + (mant != 0u);
    return (uint8_t)(code > 0xFEu ? 0xFEu : code);
}

static inline FMT_HD float e8m0_to_float(uint8_t x) {
    if (x == E8M0_NAN_CODE) return fmt_bits_to_float(0x7FC00000u);
    return fmt_exp2i((int)x - 127);
}

// 1 / e8m0_to_float(x) = 2^(127 - x), exact (NaN for 0xFF).
static inline FMT_HD float e8m0_inverse(uint8_t x) {
    if (x == E8M0_NAN_CODE) return fmt_bits_to_float(0x7FC00000u);
    return fmt_exp2i(127 - (int)x);
}

// ----------------------------------------------------------------------------
// UE4M3 (NVFP4 block scale): E4M3 RNE saturating to 448 of |v| (the sign is ignored; NaN -> 0x7F).

static inline FMT_HD uint8_t ue4m3_from_float_rne(float v) {
    return fp8_e4m3_from_float_rne(fmt_bits_to_float(fmt_float_to_bits(v) & 0x7FFFFFFFu));
}
static inline FMT_HD float ue4m3_to_float(uint8_t x) { return fp8_e4m3_to_float((uint8_t)(x & 0x7Fu)); }

// ----------------------------------------------------------------------------
// Symmetric integers: RNE (rintf, IEEE ties-to-even) with saturation to +-127 / +-32767; NaN -> 0.

static inline FMT_HD int32_t fmt_int_rne_sat_(float x, float limit) {
    if (fmt_isnan(x)) return 0;
    if (x > limit) x = limit;
    if (x < -limit) x = -limit;
    return (int32_t)rintf(x);
}
static inline FMT_HD int8_t int8_from_float_rne(float x) { return (int8_t)fmt_int_rne_sat_(x, 127.0f); }
static inline FMT_HD int16_t int16_from_float_rne(float x) { return (int16_t)fmt_int_rne_sat_(x, 32767.0f); }

// ----------------------------------------------------------------------------
// Scale rules. s_enc multiplies before the cast; s_dec = 1/s_enc is what the GEMM consumes.

// Per-tensor encode scale `numerator / amax` (IEEE divide), with TE's guards: amax 0, negative,
// inf or NaN -> 1; a quotient that overflows -> FLT_MAX.
static inline FMT_HD float fmt_tensor_scale_from_amax(float numerator, float amax) {
    if (!(amax > 0.0f) || amax > FLT_MAX) return 1.0f;
    float s = numerator / amax;
    return s > FLT_MAX ? FLT_MAX : s;
}

// FP8 current scaling: s_enc = fp8_max / amax.
static inline FMT_HD float fp8cs_scale_from_amax(Fp8Format f, float amax) { return fmt_tensor_scale_from_amax(fp8_max(f), amax); }

// MXFP8 block scale of a block with maximum magnitude `block_amax`: E8M0 2^ceil(log2(amax/448)).
// Elements then encode as fp8_e4m3_from_float_rne(x * e8m0_inverse(scale)).
static inline FMT_HD uint8_t mxfp8_block_scale(float block_amax) { return e8m0_scale_round_up(block_amax / FP8_E4M3_MAX); }

// NVFP4 two-level scaling (arXiv 2509.25149 App. B):
//   tensor: s_enc = (6 * 448) / amax_tensor (guards as above), s_dec = 1 / s_enc;
//   block:  sb = UE4M3((amax_block / 6) * s_enc);
//   element encode factor e = 1 / (float(sb) * s_dec), clamped to FLT_MAX; for sb == 0 (a block
//   far below the tensor amax, it dequantizes to zero whatever its codes) e = 0, so its codes are 0.
//   Dequantized value: E2M1(q) * float(sb) * s_dec.
#define NVFP4_TENSOR_SCALE_NUMERATOR (FP4_E2M1_MAX * FP8_E4M3_MAX)
static inline FMT_HD float nvfp4_tensor_scale(float amax) { return fmt_tensor_scale_from_amax(NVFP4_TENSOR_SCALE_NUMERATOR, amax); }
static inline FMT_HD uint8_t nvfp4_block_scale(float block_amax, float s_enc) {
    return ue4m3_from_float_rne((block_amax / FP4_E2M1_MAX) * s_enc);
}
static inline FMT_HD float nvfp4_encode_factor(uint8_t sb, float s_dec) {
    if ((sb & 0x7Fu) == 0) return 0.0f;
    float e = 1.0f / (ue4m3_to_float(sb) * s_dec);
    return e > FLT_MAX ? FLT_MAX : e;
}

// Largest magnitude seen so far, kept as fp32 bits with the sign cleared: non-negative floats order
// like their bits, and a NaN (bits above inf) wins every comparison, so it propagates to the amax.
static inline FMT_HD uint32_t fmt_amax_bits_update(uint32_t amax_bits, float x) {
    uint32_t a = fmt_float_to_bits(x) & 0x7FFFFFFFu;
    return a > amax_bits ? a : amax_bits;
}

// Encodes one NVFP4 block of 16 values v (padding positions hold 0) with block scale sb and tensor
// s_dec: q_i = E2M1(v_i * nvfp4_encode_factor(sb, s_dec)), RNE when rnd is NULL, else stochastic
// with the 16 random words rnd[i]. Nibble i goes to bits 4*(i % 8) of packed[i / 8], so the bytes of
// packed[0], packed[1] (little-endian) are the block's 8 packed bytes, element 2k in the low nibble.
static inline FMT_HD void nvfp4_encode_block16(const float v[16], uint8_t sb, float s_dec, const uint32_t *rnd,
                                               uint32_t packed[2]) {
    float e = nvfp4_encode_factor(sb, s_dec);
    packed[0] = 0;
    packed[1] = 0;
    for (int i = 0; i < 16; i++) {
        float y = v[i] * e;
        uint32_t nib = rnd ? fp4_e2m1_from_float_sr(y, rnd[i]) : fp4_e2m1_from_float_rne(y);
        packed[i / 8] |= nib << (4 * (i % 8));
    }
}

// ----------------------------------------------------------------------------
// Philox4x32-10 (Salmon et al., SC'11; Random123): a counter-based RNG, 128-bit counter,
// 64-bit key, 10 rounds; out = philox4x32_10(counter, key).

typedef struct { uint32_t v[4]; } Philox4x32;

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline FMT_HD Philox4x32 philox4x32_10(Philox4x32 ctr, uint32_t key0, uint32_t key1) {
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * ctr.v[0];
        uint64_t p1 = (uint64_t)PHILOX_M1 * ctr.v[2];
        Philox4x32 next;
        next.v[0] = (uint32_t)(p1 >> 32) ^ ctr.v[1] ^ key0;
        next.v[1] = (uint32_t)p1;
        next.v[2] = (uint32_t)(p0 >> 32) ^ ctr.v[3] ^ key1;
        next.v[3] = (uint32_t)p0;
        ctr = next;
        key0 += PHILOX_W0;
        key1 += PHILOX_W1;
    }
    return ctr;
}

// Random bits for stochastic rounding. Element i of a quantized output uses word i % 4 of
// philox4x32_10(counter = {i / 4, stream, step, tensor_id}, key = seed); `stream` tells apart
// the copies of one tensor (SR_STREAM_ROWWISE / SR_STREAM_COLWISE). Every (seed, step, tensor,
// copy, element) gets its own bits, identical on the CPU and the GPU.
typedef struct {
    uint64_t seed;      // run seed
    uint32_t step;      // optimizer step (or any per-call counter: SR needs fresh bits per call)
    uint32_t tensor_id; // which tensor of the step
} SrKey;

#define SR_STREAM_ROWWISE 0u
#define SR_STREAM_COLWISE 1u

static inline FMT_HD Philox4x32 sr_random4(SrKey key, uint32_t stream, uint32_t group) {
    Philox4x32 ctr;
    ctr.v[0] = group;
    ctr.v[1] = stream;
    ctr.v[2] = key.step;
    ctr.v[3] = key.tensor_id;
    return philox4x32_10(ctr, (uint32_t)key.seed, (uint32_t)(key.seed >> 32));
}

// The 16 random words of one 16-element block: elements [16*block, 16*block + 16) of the stream,
// i.e. groups 4*block .. 4*block + 3 (blocks are numbered over the padded layout, see the quantizers).
static inline FMT_HD void sr_random16(SrKey key, uint32_t stream, uint32_t block, uint32_t out[16]) {
    for (int k = 0; k < 4; k++) {
        Philox4x32 r = sr_random4(key, stream, 4u * block + (uint32_t)k);
        for (int j = 0; j < 4; j++) out[4 * k + j] = r.v[j];
    }
}

// ----------------------------------------------------------------------------
// 16-point random Hadamard transform: y = H x with H = (1/4) * diag(s) * H16, H16 the Sylvester
// Hadamard matrix (H16[i][j] = (-1)^popcount(i & j)) and s_i = -1 where bit i of the sign mask is set.
// H is orthogonal (H H^T = I). One fixed sign vector is used for every layer and step: the low 16
// bits of word 0 of philox4x32_10(counter 0, key RHT16_SIGN_SEED) (test_formats checks the constant).

#define RHT16_SIGN_SEED 0x5248543136ull // "RHT16"
#define RHT16_SIGN_MASK 0x09A8u

// Applies H in place to 16 floats: four butterfly stages (v[j], v[j+h]) -> (v[j]+v[j+h], v[j]-v[j+h])
// for h = 1, 2, 4, 8 (this order of fp32 adds is THE definition: CPU and GPU run the same code),
// then multiplies by +-1/4 (exact).
static inline FMT_HD void rht16_apply(float v[16], uint32_t sign_mask) {
    for (int h = 1; h < 16; h <<= 1) {
        for (int j = 0; j < 16; j++) {
            if (j & h) continue;
            float a = v[j], b = v[j + h];
            v[j] = a + b;
            v[j + h] = a - b;
        }
    }
    for (int i = 0; i < 16; i++) v[i] *= ((sign_mask >> i) & 1u) ? -0.25f : 0.25f;
}

#endif // KERNELS_FORMATS_H
