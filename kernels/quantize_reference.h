// CPU reference quantizers (whole tensors), bit-identical to the GPU quantizers of
// quantize_fp8_tensorwise.cuh, quantize_mxfp8_block32.cuh and quantize_nvfp4_block16.cuh
// (test/gpu/test_quantizers.cu checks it). Plain C, also compiled as C++ by nvcc.
//
// Input: x, BF16 bits, row-major [R, C]. Layouts (all K-major for the TN GEMMs C = A . B^T):
//   row-wise    keeps [R, C], blocks run along C;
//   column-wise stores the TRANSPOSE [C, R], blocks run along R, quantized from x (never from the
//               row-wise copy).
// Blocks past the end of a line (C or R not a multiple of the block) are zero-padded: their scale
// comes from the elements present, the data arrays hold exactly the line's elements (FP4: ceil(n/2)
// bytes, the unused high nibble of an odd line is 0) and the scale arrays have ceil(n/block) columns.
//   FP8 tensorwise: q [R, C] / [C, R] uint8, q = fp8(x * s_enc); one fp32 s_dec = 1/s_enc per tensor.
//   MXFP8:  q E4M3 [R, C], scales E8M0 [R, ceil(C/32)]; column-wise q [C, R], scales [C, ceil(R/32)].
//   NVFP4:  q packed E2M1 [R, ceil(C/2)] (element 2k in the low nibble of byte k), scales UE4M3
//           [R, ceil(C/16)], fp32 s_enc = nvfp4_tensor_scale(amax) per tensor (per copy: the RHT copy
//           has its own amax). Variants: 1x16 row-wise; 1x16 column-wise with an optional 16-point RHT
//           along R (then R % 16 == 0); 16x16 2-D tiles (weights) giving both copies.
//   Stochastic rounding (NVFP4): block j of line l of a copy (row-wise: line = row; column-wise:
//   line = column) has index l * ceil(n/16) + j and draws sr_random16(key, stream, index), stream
//   SR_STREAM_ROWWISE or SR_STREAM_COLWISE.
#ifndef KERNELS_QUANTIZE_REFERENCE_H
#define KERNELS_QUANTIZE_REFERENCE_H

#include <stddef.h>
#include <stdint.h>
#include "kernels/formats.h"

// max |x| over n BF16 values (NaN propagates).
static inline float ref_amax_bf16(const uint16_t *x, size_t n) {
    uint32_t m = 0;
    for (size_t i = 0; i < n; i++) m = fmt_amax_bits_update(m, bf16_bits_to_float(x[i]));
    return fmt_bits_to_float(m);
}

// FP8 with one scale per tensor (FP8-CS: s_enc = fp8cs_scale_from_amax; µS: the static scale).
// q_row [R, C] and/or q_col [C, R] (either may be NULL).
static inline void ref_quantize_fp8_tensorwise(const uint16_t *x, int R, int C, Fp8Format fmt, float s_enc,
                                               uint8_t *q_row, uint8_t *q_col) {
    for (int r = 0; r < R; r++) {
        for (int c = 0; c < C; c++) {
            uint8_t q = fp8_from_float_rne(fmt, bf16_bits_to_float(x[(size_t)r * C + c]) * s_enc);
            if (q_row) q_row[(size_t)r * C + c] = q;
            if (q_col) q_col[(size_t)c * R + r] = q;
        }
    }
}

// One MXFP8 line of n elements x[i * stride] into q[0..n) and scales s[0..ceil(n/32)).
static inline void ref_mxfp8_line(const uint16_t *x, size_t stride, int n, uint8_t *q, uint8_t *s) {
    for (int b = 0; b * 32 < n; b++) {
        int end = b * 32 + 32 < n ? b * 32 + 32 : n;
        uint32_t amax = 0;
        for (int i = b * 32; i < end; i++) amax = fmt_amax_bits_update(amax, bf16_bits_to_float(x[i * stride]));
        uint8_t scale = mxfp8_block_scale(fmt_bits_to_float(amax));
        float inv = e8m0_inverse(scale);
        s[b] = scale;
        for (int i = b * 32; i < end; i++) q[i] = fp8_e4m3_from_float_rne(bf16_bits_to_float(x[i * stride]) * inv);
    }
}

// MXFP8 (E4M3 elements, E8M0 scale per 32): row-wise (q_row, s_row) and/or column-wise (q_col, s_col).
static inline void ref_quantize_mxfp8(const uint16_t *x, int R, int C, uint8_t *q_row, uint8_t *s_row,
                                      uint8_t *q_col, uint8_t *s_col) {
    int nb_row = (C + 31) / 32, nb_col = (R + 31) / 32;
    if (q_row)
        for (int r = 0; r < R; r++) ref_mxfp8_line(x + (size_t)r * C, 1, C, q_row + (size_t)r * C, s_row + (size_t)r * nb_row);
    if (q_col)
        for (int c = 0; c < C; c++) ref_mxfp8_line(x + c, (size_t)C, R, q_col + (size_t)c * R, s_col + (size_t)c * nb_col);
}

// Reads block b (16 elements x[(16b + i) * stride], zero past n) of a line into v; returns the count.
static inline int ref_load_block16(const uint16_t *x, size_t stride, int n, int b, float v[16]) {
    int count = n - 16 * b < 16 ? n - 16 * b : 16;
    for (int i = 0; i < 16; i++) v[i] = i < count ? bf16_bits_to_float(x[(size_t)(16 * b + i) * stride]) : 0.0f;
    return count;
}

// Writes an encoded block's count elements (ceil(count/2) bytes) at packed position 8*b of a line.
static inline void ref_store_block16(uint8_t *q_line, int b, const uint32_t packed[2], int count) {
    for (int k = 0; k < (count + 1) / 2; k++) q_line[8 * b + k] = (uint8_t)(packed[k / 4] >> (8 * (k % 4)));
}

// One NVFP4 line of n elements (optionally RHT'd per block), 1x16 blocks, line index `line` for SR.
static inline void ref_nvfp4_line(const uint16_t *x, size_t stride, int n, int rht, float s_enc, const SrKey *sr,
                                  uint32_t stream, size_t line, uint8_t *q, uint8_t *s) {
    int nb = (n + 15) / 16;
    float s_dec = 1.0f / s_enc;
    for (int b = 0; b < nb; b++) {
        float v[16];
        uint32_t rnd[16], packed[2], amax = 0;
        int count = ref_load_block16(x, stride, n, b, v);
        if (rht) rht16_apply(v, RHT16_SIGN_MASK);
        for (int i = 0; i < 16; i++) amax = fmt_amax_bits_update(amax, v[i]);
        s[b] = nvfp4_block_scale(fmt_bits_to_float(amax), s_enc);
        if (sr) sr_random16(*sr, stream, (uint32_t)(line * nb + b), rnd);
        nvfp4_encode_block16(v, s[b], s_dec, sr ? rnd : NULL, packed);
        ref_store_block16(q, b, packed, count);
    }
}

// NVFP4 row-wise 1x16: q [R, ceil(C/2)], s [R, ceil(C/16)]; sr NULL -> RNE.
static inline void ref_quantize_nvfp4_rowwise(const uint16_t *x, int R, int C, float s_enc, const SrKey *sr,
                                              uint8_t *q, uint8_t *s) {
    for (int r = 0; r < R; r++)
        ref_nvfp4_line(x + (size_t)r * C, 1, C, 0, s_enc, sr, SR_STREAM_ROWWISE, (size_t)r,
                       q + (size_t)r * ((C + 1) / 2), s + (size_t)r * ((C + 15) / 16));
}

// NVFP4 column-wise 1x16 along R: q [C, ceil(R/2)], s [C, ceil(R/16)], optional RHT (R % 16 == 0).
static inline void ref_quantize_nvfp4_colwise(const uint16_t *x, int R, int C, int rht, float s_enc, const SrKey *sr,
                                              uint8_t *q, uint8_t *s) {
    for (int c = 0; c < C; c++)
        ref_nvfp4_line(x + c, (size_t)C, R, rht, s_enc, sr, SR_STREAM_COLWISE, (size_t)c,
                       q + (size_t)c * ((R + 1) / 2), s + (size_t)c * ((R + 15) / 16));
}

// max |RHT16(x)| over the column-wise 16-blocks (the amax that scales the RHT copy), R % 16 == 0.
static inline float ref_amax_colwise_rht16(const uint16_t *x, int R, int C) {
    uint32_t amax = 0;
    for (int c = 0; c < C; c++) {
        for (int b = 0; b < R / 16; b++) {
            float v[16];
            ref_load_block16(x + c, (size_t)C, R, b, v);
            rht16_apply(v, RHT16_SIGN_MASK);
            for (int i = 0; i < 16; i++) amax = fmt_amax_bits_update(amax, v[i]);
        }
    }
    return fmt_bits_to_float(amax);
}

// NVFP4 weights, 16x16 2-D tiles, RNE: one UE4M3 scale per tile (from the tile amax) replicated into
// both scale layouts; the column-wise copy is then exactly the transpose of the row-wise one.
// q_row [R, ceil(C/2)], s_row [R, ceil(C/16)], q_col [C, ceil(R/2)], s_col [C, ceil(R/16)].
static inline void ref_quantize_nvfp4_2d(const uint16_t *x, int R, int C, float s_enc, uint8_t *q_row, uint8_t *s_row,
                                         uint8_t *q_col, uint8_t *s_col) {
    int nbc = (C + 15) / 16, nbr = (R + 15) / 16;
    float s_dec = 1.0f / s_enc;
    for (int tr = 0; tr < nbr; tr++) {
        for (int tc = 0; tc < nbc; tc++) {
            float v[16];
            uint32_t packed[2], amax = 0;
            for (int r = 16 * tr; r < R && r < 16 * tr + 16; r++) {
                ref_load_block16(x + (size_t)r * C, 1, C, tc, v);
                for (int i = 0; i < 16; i++) amax = fmt_amax_bits_update(amax, v[i]);
            }
            uint8_t sb = nvfp4_block_scale(fmt_bits_to_float(amax), s_enc);
            for (int r = 16 * tr; r < R && r < 16 * tr + 16; r++) {
                int count = ref_load_block16(x + (size_t)r * C, 1, C, tc, v);
                nvfp4_encode_block16(v, sb, s_dec, NULL, packed);
                ref_store_block16(q_row + (size_t)r * ((C + 1) / 2), tc, packed, count);
                s_row[(size_t)r * nbc + tc] = sb;
            }
            for (int c = 16 * tc; c < C && c < 16 * tc + 16; c++) {
                int count = ref_load_block16(x + c, (size_t)C, R, tr, v);
                nvfp4_encode_block16(v, sb, s_dec, NULL, packed);
                ref_store_block16(q_col + (size_t)c * ((R + 1) / 2), tr, packed, count);
                s_col[(size_t)c * nbr + tr] = sb;
            }
        }
    }
}

#endif // KERNELS_QUANTIZE_REFERENCE_H
