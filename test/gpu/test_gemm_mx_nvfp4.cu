// GPU tests of the MXFP8 / NVFP4 GEMMs:
//   - the Hopper emulation kernels (kernels/sm90_mxfp8_gemm_block32.cuh, sm90_nvfp4_gemm_block16.cuh):
//     their element decoders exhaustively against kernels/formats.h, and the GEMMs on random codes
//     and awkward shapes against a CPU double-precision product of the dequantized operands;
//   - the quantization error of both formats on random Gaussian data (printed, loosely bounded);
//   - the Blackwell cuBLASLt path (kernels/sm100_blockscaled_gemm_cublaslt.cuh): on a device that is
//     not sm_100 its launcher must refuse with a message; on sm_100 it is checked like the others.
// Outputs are poisoned with NaN before every run, so an unwritten element fails the check.
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "kernels/cuda_common.h"
#include "kernels/formats.h"
#include "kernels/sm90_mxfp8_gemm_block32.cuh"
#include "kernels/sm90_nvfp4_gemm_block16.cuh"
#include "kernels/sm100_blockscaled_gemm_cublaslt.cuh"
#include "test/testing.h"

// ----------------------------------------------------------------------------
// Host helpers

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rng_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rng_uniform(void) { return (rng_u32() >> 8) * (1.0f / 16777216.0f); }
static float rng_normal(void) {
    float u1 = rng_uniform() + 1e-7f, u2 = rng_uniform();
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

static int sm_version(void) {
    int device = 0, major = 0, minor = 0;
    cudaCheck(cudaGetDevice(&device));
    cudaCheck(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    cudaCheck(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    return major * 10 + minor;
}

static void *to_device(const void *host, size_t bytes) {
    void *d = NULL;
    cudaCheck(cudaMalloc(&d, bytes));
    cudaCheck(cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice));
    return d;
}

// One operand in either format: packed codes, scale bytes, per-tensor s_dec (NVFP4), and its
// dequantized values in double.
typedef struct {
    int rows, K;
    uint8_t *codes;   // MXFP8: [rows, K] E4M3; NVFP4: [rows, K/2] packed E2M1
    uint8_t *scales;  // [rows, K/32] E8M0 or [rows, K/16] UE4M3
    float s_dec;      // NVFP4 only
    double *values;   // [rows, K] dequantized
} HostOperand;

static void host_operand_free(HostOperand *op) {
    free(op->codes);
    free(op->scales);
    free(op->values);
}

static size_t code_bytes(int is_nvfp4, int rows, int K) { return (size_t)rows * K / (is_nvfp4 ? 2 : 1); }
static size_t scale_bytes(int is_nvfp4, int rows, int K) { return (size_t)rows * K / (is_nvfp4 ? 16 : 32); }

static void host_operand_alloc(HostOperand *op, int is_nvfp4, int rows, int K) {
    op->rows = rows;
    op->K = K;
    op->codes = (uint8_t *)malloc_check(code_bytes(is_nvfp4, rows, K));
    op->scales = (uint8_t *)malloc_check(scale_bytes(is_nvfp4, rows, K));
    op->values = (double *)malloc_check((size_t)rows * K * sizeof(double));
    op->s_dec = 1.0f;
}

// Fills op->values from the codes and scales with the formats.h decoders.
static void host_operand_dequantize(HostOperand *op, int is_nvfp4) {
    for (int r = 0; r < op->rows; r++) {
        for (int k = 0; k < op->K; k++) {
            double v;
            if (is_nvfp4) {
                uint8_t byte = op->codes[((size_t)r * op->K + k) / 2];
                uint8_t nib = (k % 2 == 0) ? (byte & 0xF) : (byte >> 4);
                v = (double)fp4_e2m1_to_float(nib) * ue4m3_to_float(op->scales[(size_t)r * (op->K / 16) + k / 16]) * op->s_dec;
            } else {
                v = (double)fp8_e4m3_to_float(op->codes[(size_t)r * op->K + k]) *
                    e8m0_to_float(op->scales[(size_t)r * (op->K / 32) + k / 32]);
            }
            op->values[(size_t)r * op->K + k] = v;
        }
    }
}

// Random valid codes over the whole code space (E4M3 subnormals included, NaN excluded), scales drawn
// from [scale_lo, scale_hi] (MXFP8: E8M0 bytes; NVFP4: UE4M3 codes, sign bit random: it is ignored).
static void host_operand_random_codes(HostOperand *op, int is_nvfp4, int scale_lo, int scale_hi, float s_dec) {
    size_t nc = code_bytes(is_nvfp4, op->rows, op->K), ns = scale_bytes(is_nvfp4, op->rows, op->K);
    for (size_t i = 0; i < nc; i++) {
        uint8_t c = (uint8_t)rng_u32();
        if (!is_nvfp4 && (c & 0x7F) == 0x7F) c ^= 0x01;  // E4M3 NaN -> 448
        op->codes[i] = c;
    }
    for (size_t i = 0; i < ns; i++) {
        uint8_t s = (uint8_t)(scale_lo + (int)(rng_u32() % (uint32_t)(scale_hi - scale_lo + 1)));
        if (is_nvfp4 && (rng_u32() & 1)) s |= 0x80;
        op->scales[i] = s;
    }
    op->s_dec = s_dec;
    host_operand_dequantize(op, is_nvfp4);
}

// Quantizes x [rows, K] with the formats.h rules (MXFP8: E8M0 rounded up, E4M3 RNE; NVFP4: tensor
// scale from amax, UE4M3 block scales, E2M1 RNE).
static void host_operand_quantize(HostOperand *op, int is_nvfp4, const float *x) {
    int rows = op->rows, K = op->K;
    if (!is_nvfp4) {
        for (int r = 0; r < rows; r++) {
            for (int b = 0; b < K / 32; b++) {
                const float *blk = x + (size_t)r * K + b * 32;
                float amax = 0.0f;
                for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(blk[i]));
                uint8_t s = mxfp8_block_scale(amax);
                op->scales[(size_t)r * (K / 32) + b] = s;
                float inv = e8m0_inverse(s);
                for (int i = 0; i < 32; i++) op->codes[(size_t)r * K + b * 32 + i] = fp8_e4m3_from_float_rne(blk[i] * inv);
            }
        }
    } else {
        float amax = 0.0f;
        for (size_t i = 0; i < (size_t)rows * K; i++) amax = fmaxf(amax, fabsf(x[i]));
        float s_enc = nvfp4_tensor_scale(amax);
        op->s_dec = 1.0f / s_enc;
        for (int r = 0; r < rows; r++) {
            for (int b = 0; b < K / 16; b++) {
                const float *blk = x + (size_t)r * K + b * 16;
                float bmax = 0.0f;
                for (int i = 0; i < 16; i++) bmax = fmaxf(bmax, fabsf(blk[i]));
                uint8_t sb = nvfp4_block_scale(bmax, s_enc);
                op->scales[(size_t)r * (K / 16) + b] = sb;
                uint32_t packed[2];
                nvfp4_encode_block16(blk, sb, op->s_dec, NULL, packed);
                memcpy(op->codes + ((size_t)r * K + b * 16) / 2, packed, 8);
            }
        }
    }
    host_operand_dequantize(op, is_nvfp4);
}

// ref[M,N] = A . B^T in double (A [M,K], B [N,K] row-major).
static void host_gemm_double(double *ref, const double *A, const double *B, int M, int N, int K) {
#pragma omp parallel for schedule(dynamic, 4)
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            double s = 0.0;
            for (int k = 0; k < K; k++) s += A[(size_t)m * K + k] * B[(size_t)n * K + k];
            ref[(size_t)m * N + n] = s;
        }
    }
}

// ||out - ref||_F / ||ref||_F (scale-invariant); counts the non-finite outputs.
static double rel_frobenius(const float *out, const double *ref, size_t n, size_t *non_finite) {
    double num = 0.0, den = 0.0;
    *non_finite = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(out[i])) { (*non_finite)++; continue; }
        double d = out[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return sqrt(num) / (sqrt(den) + 1e-300);
}

// Which GEMM runs: the Hopper kernels or the Blackwell cuBLASLt path.
typedef enum { PATH_SM90 = 0, PATH_SM100 = 1 } GemmPath;

// Runs the GEMM of (a, b) in the given format and output type on the device and returns C as floats
// [M,N] (C poisoned with NaN bytes before the run). Returns 0, or -1 with a message in err
// (only the Blackwell path refuses).
static int device_gemm(float *out, const HostOperand *a, const HostOperand *b, int is_nvfp4, int out_fp32,
                       GemmPath path, char *err, size_t err_size) {
    int M = a->rows, N = b->rows, K = a->K;
    uint8_t *dA = (uint8_t *)to_device(a->codes, code_bytes(is_nvfp4, M, K));
    uint8_t *dB = (uint8_t *)to_device(b->codes, code_bytes(is_nvfp4, N, K));
    uint8_t *dAs = (uint8_t *)to_device(a->scales, scale_bytes(is_nvfp4, M, K));
    uint8_t *dBs = (uint8_t *)to_device(b->scales, scale_bytes(is_nvfp4, N, K));
    float *dsa = (float *)to_device(&a->s_dec, sizeof(float)), *dsb = (float *)to_device(&b->s_dec, sizeof(float));
    size_t out_bytes = (size_t)M * N * (out_fp32 ? 4 : 2);
    void *dC = NULL;
    cudaCheck(cudaMalloc(&dC, out_bytes));
    cudaCheck(cudaMemset(dC, 0xFF, out_bytes));  // NaN in FP32 and BF16
    int rc = 0;
    if (path == PATH_SM90) {
        if (!is_nvfp4) {
            if (out_fp32) sm90_mxfp8_gemm_block32<float>((float *)dC, dA, dAs, dB, dBs, M, N, K, 1.0f, 0);
            else sm90_mxfp8_gemm_block32<bf16>((bf16 *)dC, dA, dAs, dB, dBs, M, N, K, 1.0f, 0);
        } else {
            if (out_fp32) sm90_nvfp4_gemm_block16<float>((float *)dC, dA, dAs, dsa, dB, dBs, dsb, M, N, K, 1.0f, 0);
            else sm90_nvfp4_gemm_block16<bf16>((bf16 *)dC, dA, dAs, dsa, dB, dBs, dsb, M, N, K, 1.0f, 0);
        }
    } else {
        BlockScaledGemmContext ctx;
        blockscaled_gemm_context_init(&ctx);
        BlockScaledGemmArgs g;
        memset(&g, 0, sizeof(g));
        g.format = is_nvfp4 ? BLOCKSCALED_NVFP4 : BLOCKSCALED_MXFP8;
        g.A = dA; g.a_scales = dAs; g.a_s_dec = is_nvfp4 ? dsa : NULL;
        g.B = dB; g.b_scales = dBs; g.b_s_dec = is_nvfp4 ? dsb : NULL;
        g.C = dC; g.c_type = out_fp32 ? CUDA_R_32F : CUDA_R_16BF;
        g.M = M; g.N = N; g.K = K; g.alpha = 1.0f;
        rc = blockscaled_gemm_try(&ctx, &g, 0, err, err_size);
        cudaCheck(cudaDeviceSynchronize());
        blockscaled_gemm_context_free(&ctx);
    }
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaDeviceSynchronize());
    if (rc == 0) {
        if (out_fp32) {
            cudaCheck(cudaMemcpy(out, dC, out_bytes, cudaMemcpyDeviceToHost));
        } else {
            uint16_t *h = (uint16_t *)malloc_check(out_bytes);
            cudaCheck(cudaMemcpy(h, dC, out_bytes, cudaMemcpyDeviceToHost));
            for (size_t i = 0; i < (size_t)M * N; i++) out[i] = bf16_bits_to_float(h[i]);
            free(h);
        }
    }
    cudaCheck(cudaFree(dA)); cudaCheck(cudaFree(dB)); cudaCheck(cudaFree(dAs)); cudaCheck(cudaFree(dBs));
    cudaCheck(cudaFree(dsa)); cudaCheck(cudaFree(dsb)); cudaCheck(cudaFree(dC));
    return rc;
}

// ----------------------------------------------------------------------------
// Decoder tests: every code against formats.h

// out[chunk][16]: decode of chunk i (raw codes raw[i], scale byte scales[i]) by the GEMM's decoder.
template <class Fmt>
__global__ void decode_chunks_kernel(uint16_t *out, const typename Fmt::Raw *raw, const uint8_t *scales, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    uint4 lo, hi;
    Fmt::decode(raw[i], scales[i], lo, hi);
    uint32_t w[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
    for (int j = 0; j < 8; j++) {
        out[16 * i + 2 * j] = (uint16_t)(w[j] & 0xFFFF);
        out[16 * i + 2 * j + 1] = (uint16_t)(w[j] >> 16);
    }
}

template <class Fmt>
static void run_decode(uint16_t *out, const typename Fmt::Raw *raw, const uint8_t *scales, int n) {
    typename Fmt::Raw *draw = (typename Fmt::Raw *)to_device(raw, n * sizeof(*raw));
    uint8_t *dscales = (uint8_t *)to_device(scales, n);
    uint16_t *dout = NULL;
    cudaCheck(cudaMalloc(&dout, (size_t)n * 16 * 2));
    cudaCheck(cudaMemset(dout, 0xFF, (size_t)n * 16 * 2));
    decode_chunks_kernel<Fmt><<<ceil_div(n, 256), 256>>>(dout, draw, dscales, n);
    cudaCheckLaunch();
    cudaCheck(cudaMemcpy(out, dout, (size_t)n * 16 * 2, cudaMemcpyDeviceToHost));
    cudaCheck(cudaFree(draw)); cudaCheck(cudaFree(dscales)); cudaCheck(cudaFree(dout));
}

static float half_bits_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1F, m = h & 0x3FF;
    if (e == 0x1F) return fmt_bits_to_float(sign | 0x7F800000u | (m << 13));
    float mag = e == 0 ? (float)m * fmt_exp2i(-24) : fmt_bits_to_float(((e + 112u) << 23) | (m << 13));
    return sign ? -mag : mag;
}

// MXFP8: all 256 E4M3 codes x all 256 E8M0 scales. The BF16 result must be the RNE of the exact
// product (formats.h decode, FP32 multiply: exact there) bit for bit; the NaN scale gives NaN. The
// E4M3 NaN codes under a finite scale are outside the kernel's contract (see its header) and skipped.
static void test_mxfp8_decode_all_codes(void) {
    const int n = 256 * 16;  // chunk (scale x, codes 16j .. 16j+15)
    uint4 *raw = (uint4 *)malloc_check(n * sizeof(uint4));
    uint8_t *scales = (uint8_t *)malloc_check(n);
    for (int x = 0; x < 256; x++) {
        for (int j = 0; j < 16; j++) {
            uint8_t b[16];
            for (int e = 0; e < 16; e++) b[e] = (uint8_t)(16 * j + e);
            memcpy(&raw[x * 16 + j], b, 16);
            scales[x * 16 + j] = (uint8_t)x;
        }
    }
    uint16_t *out = (uint16_t *)malloc_check((size_t)n * 16 * 2);
    run_decode<Mxfp8Block32Format>(out, raw, scales, n);
    int bad = 0;
    for (int x = 0; x < 256; x++) {
        for (int c = 0; c < 256; c++) {
            if (x != 0xFF && (c & 0x7F) == 0x7F) continue;
            uint16_t got = out[(size_t)x * 256 + c];
            float want_f = fp8_e4m3_to_float((uint8_t)c) * e8m0_to_float((uint8_t)x);
            uint16_t want = bf16_bits_from_float_rne(want_f);
            int ok = fmt_isnan(want_f) ? (got & 0x7FFF) > 0x7F80 : got == want;
            if (!ok && bad++ < 5) CHECK(0, "scale 0x%02X code 0x%02X: got bf16 0x%04X want 0x%04X", x, c, got, want);
        }
    }
    CHECK(bad == 0, "%d of 65536 MXFP8 decodes wrong", bad);
    free(raw); free(scales); free(out);
}

// NVFP4: all 256 bytes (two nibbles) x all 256 UE4M3 scale bytes. The FP16 result must equal
// E2M1 * UE4M3 * 2^-7 exactly (the scale's sign bit ignored; scale NaN 0x7F gives NaN).
static void test_nvfp4_decode_all_codes(void) {
    const int n = 256 * 32;  // chunk (scale sb, bytes 8j .. 8j+7)
    uint2 *raw = (uint2 *)malloc_check(n * sizeof(uint2));
    uint8_t *scales = (uint8_t *)malloc_check(n);
    for (int sb = 0; sb < 256; sb++) {
        for (int j = 0; j < 32; j++) {
            uint8_t b[8];
            for (int e = 0; e < 8; e++) b[e] = (uint8_t)(8 * j + e);
            memcpy(&raw[sb * 32 + j], b, 8);
            scales[sb * 32 + j] = (uint8_t)sb;
        }
    }
    uint16_t *out = (uint16_t *)malloc_check((size_t)n * 16 * 2);
    run_decode<Nvfp4Block16Format>(out, raw, scales, n);
    int bad = 0;
    for (int sb = 0; sb < 256; sb++) {
        for (int byte = 0; byte < 256; byte++) {
            for (int h = 0; h < 2; h++) {
                uint8_t nib = h ? (uint8_t)(byte >> 4) : (uint8_t)(byte & 0xF);
                float got = half_bits_to_float(out[(size_t)sb * 512 + 2 * byte + h]);
                float want = fp4_e2m1_to_float(nib) * ue4m3_to_float((uint8_t)sb) * (1.0f / 128.0f);
                int ok = fmt_isnan(want) ? fmt_isnan(got) : (got == want && signbit(got) == signbit(want));
                if (!ok && bad++ < 5) CHECK(0, "scale 0x%02X nibble 0x%X: got %g want %g", sb, nib, got, want);
            }
        }
    }
    CHECK(bad == 0, "%d of 131072 NVFP4 decodes wrong", bad);
    free(raw); free(scales); free(out);
}

// ----------------------------------------------------------------------------
// GEMM tests on random codes

// FP32 output: the kernels multiply exactly representable 16-bit values with FP32 accumulation,
// so the only difference to the double reference is the accumulation order and FP32 rounding:
// bounded by 2^-16 relative (Frobenius) for K <= 4096; a wrong element, scale or block is O(1).
#define GEMM_TOL_FP32 (1.0 / 65536.0)
// BF16 output adds one RNE rounding per element: at most 2^-9 relative each.
#define GEMM_TOL_BF16 (1.0 / 256.0)

typedef struct { int M, N, K; } Shape;

static void check_gemm_random(int is_nvfp4, GemmPath path) {
    // Awkward shapes: M, N not multiples of the 128 x 256 tile, K tails of 32 (MXFP8) / 16 (NVFP4).
    const Shape shapes[] = {{128, 256, 64}, {1, 1, 32}, {300, 520, 1024}, {77, 999, 96}, {515, 260, 2080}, {256, 768, 544}};
    const char *fmt = is_nvfp4 ? "nvfp4" : "mxfp8";
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        Shape sh = shapes[s];
        if (is_nvfp4 && s == 4) sh.K = 1040;  // K % 64 == 16
        if (path == PATH_SM100 && (sh.K % 32 != 0 || sh.N % 16 != 0)) {
            printf("  sm100 %s M=%d N=%d K=%d: outside cuBLASLt's shape rules, not run\n", fmt, sh.M, sh.N, sh.K);
            continue;
        }
        HostOperand a, b;
        host_operand_alloc(&a, is_nvfp4, sh.M, sh.K);
        host_operand_alloc(&b, is_nvfp4, sh.N, sh.K);
        // MXFP8 scales 2^-7 .. 2^13 (x > 134 takes the second multiply); NVFP4 all finite UE4M3 codes.
        if (is_nvfp4) {
            host_operand_random_codes(&a, 1, 0x01, 0x7E, 0.37f);
            host_operand_random_codes(&b, 1, 0x01, 0x7E, 1.9e-3f);
        } else {
            host_operand_random_codes(&a, 0, 120, 140, 1.0f);
            host_operand_random_codes(&b, 0, 120, 140, 1.0f);
        }
        double *ref = (double *)malloc_check((size_t)sh.M * sh.N * sizeof(double));
        host_gemm_double(ref, a.values, b.values, sh.M, sh.N, sh.K);
        float *out = (float *)malloc_check((size_t)sh.M * sh.N * sizeof(float));
        for (int out_fp32 = 1; out_fp32 >= 0; out_fp32--) {
            char err[256] = "";
            int rc = device_gemm(out, &a, &b, is_nvfp4, out_fp32, path, err, sizeof(err));
            CHECK(rc == 0, "%s launcher refused: %s", fmt, err);
            if (rc != 0) continue;
            size_t non_finite;
            double e = rel_frobenius(out, ref, (size_t)sh.M * sh.N, &non_finite);
            double tol = out_fp32 ? GEMM_TOL_FP32 : GEMM_TOL_BF16;
            printf("  %s %s M=%d N=%d K=%d out=%s: rel err %.3e (tol %.1e)\n", path == PATH_SM90 ? "sm90" : "sm100",
                   fmt, sh.M, sh.N, sh.K, out_fp32 ? "fp32" : "bf16", e, tol);
            CHECK(non_finite == 0, "%zu outputs not finite (unwritten or wrong)", non_finite);
            CHECK(e <= tol, "%s M=%d N=%d K=%d: relative error %.3e above %.1e", fmt, sh.M, sh.N, sh.K, e, tol);
        }
        free(out); free(ref);
        host_operand_free(&a); host_operand_free(&b);
    }
}

static void test_sm90_mxfp8_gemm_random(void) { check_gemm_random(0, PATH_SM90); }
static void test_sm90_nvfp4_gemm_random(void) { check_gemm_random(1, PATH_SM90); }
static void test_sm100_mxfp8_gemm_random(void) { check_gemm_random(0, PATH_SM100); }
static void test_sm100_nvfp4_gemm_random(void) { check_gemm_random(1, PATH_SM100); }

// Quantization error of each format on Gaussian data (Y = X W^T, X [M,K], W [N,K]): the GEMM of the
// quantized operands against the double product of the unquantized ones. Printed; the bounds only
// catch a broken quantize/GEMM pair (E4M3 rounds to 2^-4 relative, E2M1 to 2^-2 at worst).
static void test_quantization_error(void) {
    const int M = 512, N = 384, K = 1024;
    float *x = (float *)malloc_check((size_t)M * K * sizeof(float));
    float *w = (float *)malloc_check((size_t)N * K * sizeof(float));
    double *xd = (double *)malloc_check((size_t)M * K * sizeof(double));
    double *wd = (double *)malloc_check((size_t)N * K * sizeof(double));
    for (size_t i = 0; i < (size_t)M * K; i++) xd[i] = x[i] = rng_normal() * 3.0f;
    for (size_t i = 0; i < (size_t)N * K; i++) wd[i] = w[i] = rng_normal() * 0.02f;
    double *ref = (double *)malloc_check((size_t)M * N * sizeof(double));
    double *ref_deq = (double *)malloc_check((size_t)M * N * sizeof(double));
    host_gemm_double(ref, xd, wd, M, N, K);
    float *out = (float *)malloc_check((size_t)M * N * sizeof(float));
    const double bound[2] = {0.06, 0.25};
    for (int is_nvfp4 = 0; is_nvfp4 <= 1; is_nvfp4++) {
        HostOperand a, b;
        host_operand_alloc(&a, is_nvfp4, M, K);
        host_operand_alloc(&b, is_nvfp4, N, K);
        host_operand_quantize(&a, is_nvfp4, x);
        host_operand_quantize(&b, is_nvfp4, w);
        host_gemm_double(ref_deq, a.values, b.values, M, N, K);
        char err[256] = "";
        device_gemm(out, &a, &b, is_nvfp4, 1, PATH_SM90, err, sizeof(err));
        size_t non_finite;
        double e_kernel = rel_frobenius(out, ref_deq, (size_t)M * N, &non_finite);
        double e_quant = rel_frobenius(out, ref, (size_t)M * N, &non_finite);
        printf("  %s M=%d N=%d K=%d gaussian: vs dequantized product %.3e, quantization error vs unquantized %.3e\n",
               is_nvfp4 ? "nvfp4" : "mxfp8", M, N, K, e_kernel, e_quant);
        CHECK(non_finite == 0, "%zu outputs not finite", non_finite);
        CHECK(e_kernel <= GEMM_TOL_FP32, "kernel vs dequantized reference %.3e", e_kernel);
        CHECK(e_quant <= bound[is_nvfp4], "quantization error %.3e above %.2f", e_quant, bound[is_nvfp4]);
        host_operand_free(&a); host_operand_free(&b);
    }
    free(x); free(w); free(xd); free(wd); free(ref); free(ref_deq); free(out);
}

// The swizzle kernel against the CPU mapping of kernels/scale_swizzle.h on random scales of awkward
// sizes (padding rows and columns must come out zero).
static void test_scale_swizzle_kernel(void) {
    const int sizes[][2] = {{1, 1}, {128, 4}, {300, 33}, {257, 130}, {4096, 64}};
    for (size_t t = 0; t < sizeof(sizes) / sizeof(sizes[0]); t++) {
        int rows = sizes[t][0], cols = sizes[t][1];
        size_t in_bytes = (size_t)rows * cols, out_bytes = scale_swizzle_bytes(rows, cols);
        uint8_t *in = (uint8_t *)malloc_check(in_bytes);
        for (size_t i = 0; i < in_bytes; i++) in[i] = (uint8_t)(rng_u32() | 1u);  // nonzero: padding is told apart
        uint8_t *want = (uint8_t *)calloc_check(out_bytes, 1);
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) want[scale_swizzle_offset(r, c, cols)] = in[(size_t)r * cols + c];
        uint8_t *din = (uint8_t *)to_device(in, in_bytes), *dout = NULL;
        cudaCheck(cudaMalloc(&dout, out_bytes));
        cudaCheck(cudaMemset(dout, 0xAB, out_bytes));
        scale_swizzle(dout, din, rows, cols, 0);
        uint8_t *got = (uint8_t *)malloc_check(out_bytes);
        cudaCheck(cudaMemcpy(got, dout, out_bytes, cudaMemcpyDeviceToHost));
        size_t bad = 0;
        for (size_t i = 0; i < out_bytes; i++) bad += got[i] != want[i];
        CHECK(bad == 0, "rows=%d cols=%d: %zu of %zu swizzled bytes wrong", rows, cols, bad, out_bytes);
        cudaCheck(cudaFree(din)); cudaCheck(cudaFree(dout));
        free(in); free(want); free(got);
    }
}

// On a device that is not sm_100 the Blackwell launcher must refuse, naming the device and the need.
static void test_sm100_refuses_other_devices(void) {
    HostOperand a, b;
    host_operand_alloc(&a, 0, 64, 64);
    host_operand_alloc(&b, 0, 64, 64);
    host_operand_random_codes(&a, 0, 125, 129, 1.0f);
    host_operand_random_codes(&b, 0, 125, 129, 1.0f);
    float *out = (float *)malloc_check(64 * 64 * sizeof(float));
    char err[256] = "";
    int rc = device_gemm(out, &a, &b, 0, 1, PATH_SM100, err, sizeof(err));
    printf("  sm100 launcher on sm_%d: \"%s\"\n", sm_version(), err);
    CHECK(rc == -1, "the Blackwell launcher ran on sm_%d", sm_version());
    CHECK(strstr(err, "sm_100") != NULL, "message does not name sm_100: %s", err);
    free(out);
    host_operand_free(&a); host_operand_free(&b);
}

int main(void) {
    int sm = sm_version();
    printf("device sm_%d\n", sm);
    if (sm == 90) {
        RUN_TEST(test_mxfp8_decode_all_codes);
        RUN_TEST(test_nvfp4_decode_all_codes);
        RUN_TEST(test_sm90_mxfp8_gemm_random);
        RUN_TEST(test_sm90_nvfp4_gemm_random);
        RUN_TEST(test_quantization_error);
    } else {
        SKIP_TEST(test_mxfp8_decode_all_codes, "the Hopper kernels need sm_90");
        SKIP_TEST(test_nvfp4_decode_all_codes, "the Hopper kernels need sm_90");
        SKIP_TEST(test_sm90_mxfp8_gemm_random, "the Hopper kernels need sm_90");
        SKIP_TEST(test_sm90_nvfp4_gemm_random, "the Hopper kernels need sm_90");
        SKIP_TEST(test_quantization_error, "runs the Hopper kernels, needs sm_90");
    }
    RUN_TEST(test_scale_swizzle_kernel);
    if (blockscaled_gemm_device_supported()) {
        RUN_TEST(test_sm100_mxfp8_gemm_random);
        RUN_TEST(test_sm100_nvfp4_gemm_random);
    } else {
        RUN_TEST(test_sm100_refuses_other_devices);
        SKIP_TEST(test_sm100_mxfp8_gemm_random, "cuBLASLt block-scaled GEMMs need sm_100");
        SKIP_TEST(test_sm100_nvfp4_gemm_random, "cuBLASLt block-scaled GEMMs need sm_100");
    }
    return testing_finish();
}
