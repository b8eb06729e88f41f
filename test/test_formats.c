// CPU tests of kernels/formats.h (and the NVFP4/MX parts of kernels/quantize_reference.h): every
// code point of FP8 E4M3, E5M2 and FP4 E2M1 against values computed here from the bit fields,
// rounding at every boundary between neighbouring code points and on random inputs against a
// brute-force nearest-value search, saturation, subnormals, stochastic rounding (neighbours only,
// unbiased), E8M0/UE4M3 scale selection, the FP8-CS/NVFP4 scale guards, INT8/INT16, Philox KATs,
// and the orthogonality of the 16-point Hadamard transform.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/formats.h"
#include "kernels/quantize_reference.h"
#include "test/testing.h"

// ---------------------------------------------------------------------------- helpers

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint32_t rng_u32(void) { // xorshift64*
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

static int same_bits(float a, float b) { return fmt_float_to_bits(a) == fmt_float_to_bits(b); }

// A random float with a random sign, an exponent uniform in [emin, emax] and a random mantissa.
static float random_float(int emin, int emax) {
    int e = emin + (int)(rng_u32() % (uint32_t)(emax - emin + 1));
    float m = 1.0f + (float)(rng_u32() & 0x7FFFFF) / 8388608.0f;
    float x = ldexpf(m, e);
    return (rng_u32() & 1) ? -x : x;
}

// A minifloat format described independently of formats.h: field widths, bias, whether the
// all-ones exponent is reserved for inf/NaN (E5M2) or only S.1111.111 is NaN (E4M3) or there are
// no specials (E2M1), and the codec under test.
typedef struct {
    const char *name;
    int ebits, mbits, bias;
    int kind;          // 0: no specials (E2M1), 1: only all-ones is NaN (E4M3), 2: IEEE-like (E5M2)
    double max;        // largest finite value
    uint8_t (*encode)(float);
    uint8_t (*encode_sr)(float, uint32_t);
    float (*decode)(uint8_t);
} MiniFormat;

static float fp4_decode_(uint8_t c) { return fp4_e2m1_to_float(c); }
static const MiniFormat FORMATS[3] = {
    {"E4M3", 4, 3, 7, 1, 448.0, fp8_e4m3_from_float_rne, fp8_e4m3_from_float_sr, fp8_e4m3_to_float},
    {"E5M2", 5, 2, 15, 2, 57344.0, fp8_e5m2_from_float_rne, fp8_e5m2_from_float_sr, fp8_e5m2_to_float},
    {"E2M1", 2, 1, 1, 0, 6.0, fp4_e2m1_from_float_rne, fp4_e2m1_from_float_sr, fp4_decode_},
};

static int num_codes(const MiniFormat *f) { return 1 << (1 + f->ebits + f->mbits); }
static uint8_t sign_bit(const MiniFormat *f) { return (uint8_t)(1u << (f->ebits + f->mbits)); }

// Value of a code computed from its fields: 0 = finite (value in *v), 1 = inf, 2 = NaN.
static int field_value(const MiniFormat *f, int code, double *v) {
    int s = (code >> (f->ebits + f->mbits)) & 1;
    int e = (code >> f->mbits) & ((1 << f->ebits) - 1);
    int m = code & ((1 << f->mbits) - 1);
    int emax_field = (1 << f->ebits) - 1;
    if (f->kind == 1 && e == emax_field && m == (1 << f->mbits) - 1) return 2;
    if (f->kind == 2 && e == emax_field) return m == 0 ? 1 : 2;
    double mag = e == 0 ? ldexp((double)m, 1 - f->bias - f->mbits) : ldexp(1.0 + (double)m / (1 << f->mbits), e - f->bias);
    *v = s ? -mag : mag;
    return 0;
}

// The non-negative finite grid of a format in increasing order, with codes: returns the count.
static int positive_grid(const MiniFormat *f, double *values, uint8_t *codes) {
    int n = 0;
    for (int c = 0; c < num_codes(f) / 2; c++) {
        double v;
        if (field_value(f, c, &v) == 0) { values[n] = v; codes[n] = (uint8_t)c; n++; }
    }
    return n; // codes of non-negative finite values are increasing with the value
}

// Brute-force reference RNE-saturating encode: nearest grid value, ties to the even code.
static uint8_t reference_encode(const MiniFormat *f, const double *values, const uint8_t *codes, int n, float x) {
    if (isnan(x)) return f->kind == 0 ? (uint8_t)(num_codes(f) / 2 - 1) : 0x7F;
    uint8_t sign = signbit(x) ? sign_bit(f) : 0;
    double a = fabs((double)x);
    if (a >= values[n - 1]) return (uint8_t)(sign | codes[n - 1]);
    int i = 0;
    while (values[i + 1] <= a) i++;
    double dlo = a - values[i], dhi = values[i + 1] - a;
    int pick = dlo < dhi ? i : dhi < dlo ? i + 1 : ((codes[i] & 1) ? i + 1 : i);
    return (uint8_t)(sign | codes[pick]);
}

// ---------------------------------------------------------------------------- code points

static void test_every_code_decodes_and_reencodes(void) {
    for (int fi = 0; fi < 3; fi++) {
        const MiniFormat *f = &FORMATS[fi];
        int bad = 0;
        for (int c = 0; c < num_codes(f); c++) {
            double v = 0;
            int kind = field_value(f, c, &v);
            float got = f->decode((uint8_t)c);
            if (kind == 2) {
                // NaN codes decode to NaN; encoding a NaN gives the canonical 0x7F (FP8)
                if (!isnan(got) || f->encode(got) != 0x7F) { bad++; printf("  %s code 0x%02x: NaN rule\n", f->name, c); }
            } else if (kind == 1) {
                // E5M2 inf decodes to inf; encoding inf saturates to +-max (satfinite)
                uint8_t sat = (uint8_t)((c & 0x80) | 0x7B);
                if (!isinf(got) || (got > 0) != !(c & 0x80) || f->encode(got) != sat) { bad++; printf("  %s code 0x%02x: inf rule\n", f->name, c); }
            } else {
                // exact value (negative zero included) and the code back
                if (!same_bits(got, (float)v) || f->encode(got) != c) {
                    bad++;
                    printf("  %s code 0x%02x: decodes to %.9g (want %.9g), re-encodes to 0x%02x\n", f->name, c, got, v, f->encode(got));
                }
            }
        }
        CHECK(bad == 0, "%s: %d code points wrong", f->name, bad);
    }
    // anchor values from the OCP spec / reference table
    CHECK(fp8_e4m3_to_float(0x7E) == 448.0f && fp8_e4m3_to_float(0x01) == ldexpf(1, -9) && fp8_e4m3_to_float(0x08) == ldexpf(1, -6), "E4M3 anchors");
    CHECK(fp8_e5m2_to_float(0x7B) == 57344.0f && fp8_e5m2_to_float(0x01) == ldexpf(1, -16) && isinf(fp8_e5m2_to_float(0x7C)), "E5M2 anchors");
    const float e2m1[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
    for (int c = 0; c < 8; c++) CHECK(fp4_e2m1_to_float((uint8_t)c) == e2m1[c] && fp4_e2m1_to_float((uint8_t)(c | 8)) == -e2m1[c], "E2M1 code %d", c);
    CHECK(fp4_pack2(0x3, 0xA) == 0xA3, "even element must go to the low nibble");
}

// ---------------------------------------------------------------------------- rounding

static void test_rounding_at_every_boundary(void) {
    double values[256];
    uint8_t codes[256];
    for (int fi = 0; fi < 3; fi++) {
        const MiniFormat *f = &FORMATS[fi];
        int n = positive_grid(f, values, codes), bad = 0;
        for (int i = 0; i + 1 < n; i++) {
            // midpoint (exact in fp32) -> even code; one fp32 ulp either side -> the nearer value
            float mid = (float)((values[i] + values[i + 1]) / 2);
            uint8_t even = (codes[i] & 1) ? codes[i + 1] : codes[i];
            float below = nextafterf(mid, 0.0f), above = nextafterf(mid, INFINITY);
            for (int s = 0; s < 2; s++) {
                float sg = s ? -1.0f : 1.0f;
                uint8_t sb = s ? sign_bit(f) : 0;
                if (f->encode(sg * mid) != (sb | even)) { bad++; printf("  %s midpoint %.9g -> 0x%02x\n", f->name, sg * mid, f->encode(sg * mid)); }
                if (f->encode(sg * below) != (sb | codes[i])) { bad++; printf("  %s %.9g -> 0x%02x\n", f->name, sg * below, f->encode(sg * below)); }
                if (f->encode(sg * above) != (sb | codes[i + 1])) { bad++; printf("  %s %.9g -> 0x%02x\n", f->name, sg * above, f->encode(sg * above)); }
                if (f->encode(sg * (float)values[i]) != (sb | codes[i])) bad++;
            }
        }
        // saturation above max (the half-step beyond max, far beyond, inf)
        float mx = (float)f->max;
        float beyond[4] = {nextafterf(mx, INFINITY), mx * 1.0625f, mx * 1e6f, INFINITY};
        for (int k = 0; k < 4; k++) {
            if (f->encode(beyond[k]) != codes[n - 1]) { bad++; printf("  %s %.9g does not saturate\n", f->name, beyond[k]); }
            if (f->encode(-beyond[k]) != (sign_bit(f) | codes[n - 1])) bad++;
        }
        // below half the smallest subnormal -> signed zero; exactly half -> zero (even)
        float tiny = (float)values[1];
        if (f->encode(tiny / 2) != 0 || f->encode(-tiny / 2) != sign_bit(f) || f->encode(nextafterf(tiny / 2, 1.0f)) != codes[1]) bad++;
        if (f->encode(1e-30f) != 0 || f->encode(ldexpf(1.0f, -140)) != 0) bad++;
        CHECK(bad == 0, "%s: %d boundary cases wrong", f->name, bad);
    }
}

static void test_rounding_random_against_nearest_search(void) {
    double values[256];
    uint8_t codes[256];
    for (int fi = 0; fi < 3; fi++) {
        const MiniFormat *f = &FORMATS[fi];
        int n = positive_grid(f, values, codes), bad = 0;
        int emin = 1 - f->bias - f->mbits - 3, emax = (int)log2(f->max) + 2;
        for (int t = 0; t < 300000; t++) {
            float x = random_float(emin, emax);
            uint8_t want = reference_encode(f, values, codes, n, x), got = f->encode(x);
            if (got != want) {
                if (bad < 5) printf("  %s x=%.9g: 0x%02x want 0x%02x\n", f->name, x, got, want);
                bad++;
            }
        }
        // float subnormals and NaNs
        for (int t = 0; t < 1000; t++) {
            float x = fmt_bits_to_float(rng_u32() & 0x807FFFFFu);
            if (f->encode(x) != reference_encode(f, values, codes, n, x)) bad++;
            float q = fmt_bits_to_float(0x7F800001u | (rng_u32() & 0x807FFFFFu));
            if (f->encode(q) != reference_encode(f, values, codes, n, q)) bad++;
        }
        CHECK(bad == 0, "%s: %d random inputs round differently from the nearest-value search", f->name, bad);
    }
}

// The written-out E2M1 RNE encoder against the generic minifloat codec (which the FP8 formats and
// the E2M1 SR encoder use) on every fp32 input with |x| <= 8 whose low 8 mantissa bits are 0, 1 or
// 0xFF, 10^6 random bit patterns and every float near each grid point and midpoint.
static int e2m1_matches_generic(float x) {
    uint32_t u = fmt_float_to_bits(x), a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return fp4_e2m1_from_float_rne(x) == 7;
    uint8_t rne = (uint8_t)(((u >> 28) & 8u) | fmt_minifloat_encode_abs(a, 1, 1, FP4_E2M1_MAX_CODE, 0, 0));
    return fp4_e2m1_from_float_rne(x) == rne;
}

static void test_e2m1_rne_encoder_matches_generic_codec(void) {
    int bad = 0;
    for (uint32_t hi = 0; hi <= (0x41000000u >> 8); hi++) {
        const uint32_t lows[3] = {0x00, 0x01, 0xFF};
        for (int k = 0; k < 3; k++) {
            uint32_t u = (hi << 8) | lows[k];
            if (!e2m1_matches_generic(fmt_bits_to_float(u)) || !e2m1_matches_generic(-fmt_bits_to_float(u))) {
                if (bad < 5) printf("  x bits 0x%08x\n", u);
                bad++;
            }
        }
    }
    for (int t = 0; t < 1000000; t++) bad += !e2m1_matches_generic(fmt_bits_to_float(rng_u32()));
    const float points[] = {0, 0.25f, 0.5f, 0.75f, 1, 1.25f, 1.5f, 1.75f, 2, 2.5f, 3, 3.5f, 4, 5, 6, 8};
    for (int i = 0; i < 16; i++) {
        float x = points[i];
        for (int k = 0; k < 64; k++, x = nextafterf(x, INFINITY)) bad += !e2m1_matches_generic(x);
        x = points[i];
        for (int k = 0; k < 64; k++, x = nextafterf(x, 0.0f)) bad += !e2m1_matches_generic(x);
    }
    CHECK(bad == 0, "%d inputs where the E2M1 RNE encoder differs from the generic codec", bad);
}

// ---------------------------------------------------------------------------- stochastic rounding

static void test_stochastic_rounding_neighbours_and_threshold(void) {
    double values[256];
    uint8_t codes[256];
    for (int fi = 0; fi < 3; fi++) {
        const MiniFormat *f = &FORMATS[fi];
        int n = positive_grid(f, values, codes), bad = 0;
        for (int t = 0; t < 200000; t++) {
            int i = (int)(rng_u32() % (uint32_t)(n - 1));
            double lo = values[i], hi = values[i + 1];
            // x = lo + frac*(hi-lo) with frac = k / 2^20: exact in fp32, so the threshold is exact
            uint32_t k = rng_u32() % (1u << 20);
            float x = (float)(lo + (hi - lo) * ldexp((double)k, -20));
            uint32_t threshold = k << 12; // floor(2^32 * frac)
            uint32_t rnd = rng_u32();
            uint8_t want = rnd < threshold ? codes[i + 1] : codes[i];
            uint8_t got = f->encode_sr(x, rnd);
            if (got != want) { if (bad < 5) printf("  %s SR x=%.9g rnd=%u: 0x%02x want 0x%02x\n", f->name, x, rnd, got, want); bad++; }
            if (threshold > 0 && f->encode_sr(x, threshold - 1) != codes[i + 1]) bad++; // just below -> up
            if (f->encode_sr(x, threshold) != codes[i]) bad++;                           // at the threshold -> down
            if (f->encode_sr(-x, rnd) != (sign_bit(f) | want)) bad++;
        }
        // exact grid values never move; beyond max saturates; NaN as RNE
        for (int i = 0; i < n; i++) if (f->encode_sr((float)values[i], 0) != codes[i]) bad++;
        if (f->encode_sr((float)f->max * 1.01f, 0) != codes[n - 1] || f->encode_sr(NAN, 0) != f->encode(NAN)) bad++;
        CHECK(bad == 0, "%s: %d stochastic roundings wrong", f->name, bad);
    }
}

// Mean of N stochastic roundings of x (random bits from Philox) equals x: one draw has standard
// deviation <= (hi - lo)/2, so |mean - x| <= 5 (hi - lo) / (2 sqrt(N)) fails with probability < 1e-6.
static void test_stochastic_rounding_unbiased(void) {
    const int N = 200000;
    const float xs[3][4] = {{0.3f, 3.3f, 100.7f, 0.0029f}, {0.3f, 3.3f, 1000.7f, 0.0000191f}, {0.3f, 2.6f, 4.9f, -0.2f}};
    SrKey key = {99, 0, 0};
    for (int fi = 0; fi < 3; fi++) {
        const MiniFormat *f = &FORMATS[fi];
        for (int j = 0; j < 4; j++) {
            float x = xs[fi][j];
            double lo = f->decode(f->encode_sr(x, 0xFFFFFFFFu)), hi = f->decode(f->encode_sr(x, 0)); // down / up
            double sum = 0;
            for (int i = 0; i < N; i += 4) {
                Philox4x32 r = sr_random4(key, 0, (uint32_t)(i / 4));
                for (int w = 0; w < 4; w++) sum += f->decode(f->encode_sr(x, r.v[w]));
            }
            double mean = sum / N, bound = 5.0 * fabs(hi - lo) / (2.0 * sqrt((double)N));
            CHECK(fabs(mean - x) <= bound, "%s x=%g: mean of %d SR draws %.9g, |error| %.3g > bound %.3g", f->name, x, N, mean, fabs(mean - x), bound);
            CHECK(hi != lo, "%s x=%g: the test value must lie between two grid points", f->name, x);
        }
    }
}

// ---------------------------------------------------------------------------- scales

static void test_e8m0_scale_selection(void) {
    int bad = 0;
    for (int t = 0; t < 200000; t++) {
        float amax = fabsf(random_float(-140, 127));
        float v = amax / 448.0f;
        uint8_t code = e8m0_scale_round_up(v);
        // independent: ceil(log2 v) from frexp (v = m 2^e, m in [0.5, 1): ceil = e - (m == 0.5))
        int e;
        double m = frexp((double)v, &e);
        int want = (v == 0.0f) ? 0 : e - (m == 0.5) + 127;
        if (want < 0) want = 0;
        if (want > 254) want = 254;
        if (code != want) { if (bad < 5) printf("  v=%g: code %d want %d\n", v, code, want); bad++; }
        // the scale is >= v and the next smaller one is < v, unless clamped
        double scale = e8m0_to_float(code);
        if (code > 0 && code < 254 && !(scale >= v && scale / 2 < v)) bad++;
        // MX: amax / scale never exceeds 448 (up to the rounding of amax/448), and is > 224
        if (code > 0 && code < 254) {
            double r = (double)amax * e8m0_inverse(mxfp8_block_scale(amax));
            if (!(r <= 448.0 * (1 + 1e-6) && r > 224.0 * (1 - 1e-6))) { if (bad < 5) printf("  amax=%g: amax/scale=%g\n", amax, r); bad++; }
        }
    }
    CHECK(bad == 0, "%d E8M0 selections wrong", bad);
    CHECK(e8m0_scale_round_up(0.0f) == 0x00, "v=0 -> smallest scale");
    CHECK(e8m0_scale_round_up(NAN) == 0xFF, "NaN -> 0xFF");
    CHECK(e8m0_scale_round_up(INFINITY) == 0xFE && e8m0_scale_round_up(3e38f) == 0xFE, "inf/huge -> 2^127");
    CHECK(e8m0_scale_round_up(1.0f) == 127 && e8m0_scale_round_up(1.0000001f) == 128 && e8m0_scale_round_up(0.75f) == 127, "2^0 rules");
    CHECK(e8m0_scale_round_up(ldexpf(1, -126)) == 1 && e8m0_scale_round_up(ldexpf(1, -127)) == 0 && e8m0_scale_round_up(ldexpf(1.5f, -127)) == 1,
          "subnormal v");
    for (int c = 0; c < 255; c++) {
        CHECK(e8m0_to_float((uint8_t)c) == ldexpf(1.0f, c - 127), "code %d decodes to 2^%d", c, c - 127);
        CHECK((double)e8m0_to_float((uint8_t)c) * e8m0_inverse((uint8_t)c) == 1.0, "code %d: inverse not exact", c);
    }
    CHECK(isnan(e8m0_to_float(0xFF)), "0xFF decodes to NaN");
}

static void test_ue4m3_and_nvfp4_scales(void) {
    double values[256];
    uint8_t codes[256];
    int n = positive_grid(&FORMATS[0], values, codes), bad = 0;
    for (int t = 0; t < 100000; t++) {
        float amax = fabsf(random_float(-30, 30));
        float s_enc = nvfp4_tensor_scale(amax * (1.0f + (float)(rng_u32() % 100)));
        float block_amax = amax;
        float y = (block_amax / 6.0f) * s_enc;
        uint8_t sb = nvfp4_block_scale(block_amax, s_enc);
        if (sb != reference_encode(&FORMATS[0], values, codes, n, y)) bad++;
        if (ue4m3_from_float_rne(-y) != sb || ue4m3_to_float((uint8_t)(sb | 0x80)) != ue4m3_to_float(sb)) bad++; // sign ignored
        // the largest element of the block dequantizes to within E4M3/E2M1 precision of amax
        float s_dec = 1.0f / s_enc, e = nvfp4_encode_factor(sb, s_dec);
        if (sb != 0) {
            double deq = fp4_e2m1_to_float(fp4_e2m1_from_float_rne(block_amax * e)) * ue4m3_to_float(sb) * (double)s_dec;
            if (fabs(deq - block_amax) > 0.25 * block_amax) { if (bad < 5) printf("  amax %g deq %g\n", block_amax, deq); bad++; }
            if (!(e == 1.0f / (ue4m3_to_float(sb) * s_dec) || e == FLT_MAX)) bad++;
        } else if (e != 0.0f) {
            bad++;
        }
    }
    CHECK(bad == 0, "%d UE4M3 / NVFP4 scale selections wrong", bad);
    CHECK(nvfp4_tensor_scale(2688.0f) == 1.0f && nvfp4_tensor_scale(1.0f) == 2688.0f, "s_enc = 6*448/amax");
    CHECK(nvfp4_tensor_scale(0.0f) == 1.0f && nvfp4_tensor_scale(NAN) == 1.0f && nvfp4_tensor_scale(INFINITY) == 1.0f, "amax guards");
    CHECK(nvfp4_tensor_scale(1e-44f) == FLT_MAX, "overflowing s_enc -> FLT_MAX");
    CHECK(nvfp4_block_scale(1e9f, 1.0f) == 0x7E, "UE4M3 saturates at 448");
    CHECK(nvfp4_encode_factor(0, 1.0f) == 0.0f, "sb = 0 -> zero encode factor");
    CHECK(nvfp4_encode_factor(1, 1e-40f) == FLT_MAX, "overflowing encode factor -> FLT_MAX");
}

static void test_fp8cs_scale_rule(void) {
    int bad = 0;
    for (int t = 0; t < 100000; t++) {
        float amax = fabsf(random_float(-100, 100));
        if (!same_bits(fp8cs_scale_from_amax(FP8_E4M3, amax), 448.0f / amax)) bad++;
        if (!same_bits(fp8cs_scale_from_amax(FP8_E5M2, amax), 57344.0f / amax)) bad++;
    }
    CHECK(bad == 0, "%d FP8-CS scales differ from fp8_max/amax", bad);
    CHECK(fp8cs_scale_from_amax(FP8_E4M3, 0.0f) == 1.0f && fp8cs_scale_from_amax(FP8_E4M3, NAN) == 1.0f &&
              fp8cs_scale_from_amax(FP8_E4M3, INFINITY) == 1.0f, "amax 0/nan/inf -> 1");
    CHECK(fp8cs_scale_from_amax(FP8_E4M3, 1e-40f) == FLT_MAX, "overflow -> FLT_MAX");
}

// ---------------------------------------------------------------------------- integers, bf16

static void test_int8_int16_rounding(void) {
    const float in[] = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 126.5f, 127.4f, 127.6f, 200.0f, -200.0f, INFINITY, -INFINITY, NAN, 0.49999997f};
    const int want8[] = {0, 2, 2, 0, -2, -2, 126, 127, 127, 127, -127, 127, -127, 0, 0};
    for (int i = 0; i < (int)(sizeof(in) / sizeof(in[0])); i++)
        CHECK(int8_from_float_rne(in[i]) == want8[i], "int8(%g) = %d want %d", in[i], int8_from_float_rne(in[i]), want8[i]);
    CHECK(int16_from_float_rne(32766.5f) == 32766 && int16_from_float_rne(32767.5f) == 32767 && int16_from_float_rne(-40000.0f) == -32767 &&
              int16_from_float_rne(-3.5f) == -4 && int16_from_float_rne(NAN) == 0, "int16 rules");
    int bad = 0;
    for (int t = 0; t < 100000; t++) {
        float x = (float)((int32_t)rng_u32()) / 8388608.0f; // |x| < 256, 23 fraction bits
        double fl = floor((double)x), frac = (double)x - fl;
        double want = frac > 0.5 ? fl + 1 : frac < 0.5 ? fl : (fmod(fl, 2.0) == 0 ? fl : fl + 1);
        if (want > 127) want = 127;
        if (want < -127) want = -127;
        if (int8_from_float_rne(x) != (int)want) bad++;
    }
    CHECK(bad == 0, "%d random int8 roundings wrong", bad);
}

static void test_bf16_conversion(void) {
    CHECK(bf16_bits_from_float_rne(1.0f) == 0x3F80 && bf16_bits_to_float(0x3F80) == 1.0f, "1.0");
    CHECK(bf16_bits_from_float_rne(fmt_bits_to_float(0x3F808000u)) == 0x3F80, "tie to even (down)");
    CHECK(bf16_bits_from_float_rne(fmt_bits_to_float(0x3F818000u)) == 0x3F82, "tie to even (up)");
    CHECK(bf16_bits_from_float_rne(fmt_bits_to_float(0x3F808001u)) == 0x3F81, "above the tie");
    CHECK((bf16_bits_from_float_rne(NAN) & 0x7FC0) == 0x7FC0, "NaN stays NaN");
}

// ---------------------------------------------------------------------------- Philox, Hadamard

// Known-answer vectors of Random123 (kat_vectors, philox4x32 10 rounds).
static void test_philox_known_answers(void) {
    const uint32_t ctr[3][4] = {{0, 0, 0, 0}, {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}, {0x243F6A88u, 0x85A308D3u, 0x13198A2Eu, 0x03707344u}};
    const uint32_t key[3][2] = {{0, 0}, {0xFFFFFFFFu, 0xFFFFFFFFu}, {0xA4093822u, 0x299F31D0u}};
    const uint32_t want[3][4] = {{0x6627E8D5u, 0xE169C58Du, 0xBC57AC4Cu, 0x9B00DBD8u},
                                 {0x408F276Du, 0x41C83B0Eu, 0xA20BC7C6u, 0x6D5451FDu},
                                 {0xD16CFE09u, 0x94FDCCEBu, 0x5001E420u, 0x24126EA1u}};
    for (int t = 0; t < 3; t++) {
        Philox4x32 c;
        for (int i = 0; i < 4; i++) c.v[i] = ctr[t][i];
        Philox4x32 r = philox4x32_10(c, key[t][0], key[t][1]);
        for (int i = 0; i < 4; i++) CHECK(r.v[i] == want[t][i], "KAT %d word %d: %08x want %08x", t, i, r.v[i], want[t][i]);
    }
    // the SR counter layout: counter {group, stream, step, tensor}, key = the 64-bit seed (lo, hi)
    SrKey k = {0x0123456789ABCDEFull, 11, 22};
    Philox4x32 c = {{33, 1, 11, 22}};
    Philox4x32 want_sr = philox4x32_10(c, 0x89ABCDEFu, 0x01234567u), got_sr = sr_random4(k, 1, 33);
    for (int i = 0; i < 4; i++) CHECK(got_sr.v[i] == want_sr.v[i], "sr_random4 word %d: counter/key layout", i);
    uint32_t block_words[16];
    sr_random16(k, 1, 8, block_words); // block 8 = groups 32..35: group 33 is words 4..7
    for (int i = 0; i < 4; i++) CHECK(block_words[4 + i] == want_sr.v[i], "sr_random16 word %d", 4 + i);
    // distinct (step, tensor, stream, group) give distinct words
    SrKey a = {7, 1, 2}, b = {7, 2, 2};
    CHECK(sr_random4(a, 0, 5).v[0] != sr_random4(b, 0, 5).v[0] && sr_random4(a, 0, 5).v[0] != sr_random4(a, 1, 5).v[0] &&
              sr_random4(a, 0, 5).v[0] != sr_random4(a, 0, 6).v[0], "SR streams must differ");
    // uniformity of the SR bits: mean of 2^18 words / 2^32 within 5 sigma of 1/2
    double sum = 0;
    for (uint32_t g = 0; g < (1u << 16); g++) { Philox4x32 r = sr_random4(a, 0, g); for (int w = 0; w < 4; w++) sum += r.v[w] / 4294967296.0; }
    double mean = sum / (1 << 18);
    CHECK(fabs(mean - 0.5) < 5 * sqrt(1.0 / 12 / (1 << 18)), "Philox mean %.6f", mean);
}

static void test_hadamard16(void) {
    float H[16][16]; // H[i][j] = (H e_j)_i
    for (int j = 0; j < 16; j++) {
        float v[16] = {0};
        v[j] = 1.0f;
        rht16_apply(v, RHT16_SIGN_MASK);
        for (int i = 0; i < 16; i++) H[i][j] = v[i];
    }
    int bad = 0;
    for (int i = 0; i < 16; i++) {
        for (int j = 0; j < 16; j++) {
            float want = 0.25f * (((RHT16_SIGN_MASK >> i) & 1) ? -1.0f : 1.0f) * ((__builtin_popcount(i & j) & 1) ? -1.0f : 1.0f);
            if (H[i][j] != want) bad++;
            double dot = 0; // (H H^T)[i][j]; entries are +-1/4, so the sum is exact
            for (int k = 0; k < 16; k++) dot += (double)H[i][k] * H[j][k];
            if (dot != (i == j ? 1.0 : 0.0)) bad++;
        }
    }
    CHECK(bad == 0, "%d entries of H or H H^T wrong", bad);
    Philox4x32 zero = {{0, 0, 0, 0}};
    CHECK((philox4x32_10(zero, (uint32_t)RHT16_SIGN_SEED, (uint32_t)(RHT16_SIGN_SEED >> 32)).v[0] & 0xFFFFu) == RHT16_SIGN_MASK,
          "RHT16_SIGN_MASK must be the Philox-derived sign vector");
    // norm preserved on random vectors within fp32 rounding (16 adds: < 1e-6 relative)
    for (int t = 0; t < 1000; t++) {
        float v[16];
        double n0 = 0, n1 = 0;
        for (int i = 0; i < 16; i++) { v[i] = random_float(-5, 5); n0 += (double)v[i] * v[i]; }
        rht16_apply(v, RHT16_SIGN_MASK);
        for (int i = 0; i < 16; i++) n1 += (double)v[i] * v[i];
        if (fabs(n1 - n0) > 1e-6 * n0) bad++;
    }
    CHECK(bad == 0, "%d vectors changed norm", bad);
}

// ---------------------------------------------------------------------------- reference quantizers

// NVFP4 stochastic rounding in the reference quantizer: every code is one of the two E2M1
// neighbours of x * e (the same code as RNE or its neighbour), some differ from RNE, and the mean
// of the dequantized values over 400 keys matches x (5-sigma bound per element, all elements).
static void test_nvfp4_reference_stochastic(void) {
    enum { R = 4, C = 48, K = 400 };
    uint16_t x[R * C];
    for (int i = 0; i < R * C; i++) x[i] = bf16_bits_from_float_rne(random_float(-3, 3));
    float s_enc = nvfp4_tensor_scale(ref_amax_bf16(x, R * C)), s_dec = 1.0f / s_enc;
    uint8_t q_rne[R * C / 2], s_rne[R * C / 16], q[R * C / 2], s[R * C / 16];
    ref_quantize_nvfp4_rowwise(x, R, C, s_enc, NULL, q_rne, s_rne);
    double sum[R * C] = {0};
    int differs = 0, bad = 0;
    for (int k = 0; k < K; k++) {
        SrKey key = {5, (uint32_t)k, 1};
        ref_quantize_nvfp4_rowwise(x, R, C, s_enc, &key, q, s);
        for (int i = 0; i < R * C; i++) {
            int a = (q[i / 2] >> (4 * (i % 2))) & 0xF, b = (q_rne[i / 2] >> (4 * (i % 2))) & 0xF;
            float y = bf16_bits_to_float(x[i]) * nvfp4_encode_factor(s[i / 16], s_dec);
            float down = fp4_e2m1_to_float(fp4_e2m1_from_float_sr(y, 0xFFFFFFFFu)), up = fp4_e2m1_to_float(fp4_e2m1_from_float_sr(y, 0));
            float got = fp4_e2m1_to_float((uint8_t)a);
            if (got != down && got != up) bad++;
            differs += a != b;
            sum[i] += got * ue4m3_to_float(s[i / 16]) * (double)s_dec;
        }
        for (int i = 0; i < R * C / 16; i++) if (s[i] != s_rne[i]) bad++; // scales do not depend on SR
    }
    for (int i = 0; i < R * C; i++) {
        float y = bf16_bits_to_float(x[i]) * nvfp4_encode_factor(s_rne[i / 16], s_dec);
        double step = (fp4_e2m1_to_float(fp4_e2m1_from_float_sr(y, 0)) - fp4_e2m1_to_float(fp4_e2m1_from_float_sr(y, 0xFFFFFFFFu))) *
                      ue4m3_to_float(s_rne[i / 16]) * (double)s_dec;
        // SR is unbiased up to saturation: the mean is x, or +-6*sb*s_dec where the block scale
        // rounded down so far that |x * e| > 6
        double target = fmin(fmax((double)y, -6.0), 6.0) * ue4m3_to_float(s_rne[i / 16]) * (double)s_dec;
        double bound = 5.0 * fabs(step) / (2.0 * sqrt((double)K)) + 1e-9 * fabs(target);
        if (fabs(sum[i] / K - target) > bound) { if (bad < 5) printf("  element %d: mean %g want %g\n", i, sum[i] / K, target); bad++; }
    }
    CHECK(bad == 0, "%d SR checks failed", bad);
    CHECK(differs > 0, "stochastic rounding never differed from RNE");
}

// Zero blocks and padded tails: an all-zero MX block gets scale 0x00 and zero codes; an NVFP4 line
// of odd length ends with a zero high nibble; a NaN propagates into its block's scale.
static void test_reference_edge_blocks(void) {
    enum { C = 37 };
    uint16_t x[2 * C];
    for (int i = 0; i < 2 * C; i++) x[i] = bf16_bits_from_float_rne(i < C ? 0.0f : (float)(i - C) - 18.0f);
    uint8_t q[2 * C], s[2 * 2], qn[2 * 19], sn[2 * 3];
    ref_quantize_mxfp8(x, 2, C, q, s, NULL, NULL);
    CHECK(s[0] == 0 && s[1] == 0 && q[0] == 0 && q[36] == 0, "all-zero MX row: scales %d %d", s[0], s[1]);
    CHECK(s[2] == e8m0_scale_round_up(18.0f / 448.0f) && s[3] == e8m0_scale_round_up(18.0f / 448.0f), "row 1 scales from the elements present");
    ref_quantize_nvfp4_rowwise(x, 2, C, nvfp4_tensor_scale(18.0f), NULL, qn, sn);
    CHECK((qn[19 + 18] >> 4) == 0, "odd line: high nibble of the last byte must be 0");
    CHECK(sn[0] == 0 && sn[1] == 0 && sn[2] == 0, "all-zero NVFP4 blocks get scale 0");
    x[C + 3] = 0x7FC0;
    ref_quantize_mxfp8(x, 2, C, q, s, NULL, NULL);
    ref_quantize_nvfp4_rowwise(x, 2, C, nvfp4_tensor_scale(18.0f), NULL, qn, sn);
    CHECK(s[2] == 0xFF && s[3] != 0xFF && q[C + 3] == 0x7F, "MX NaN block");
    CHECK((sn[3] & 0x7F) == 0x7F && (sn[4] & 0x7F) != 0x7F, "NVFP4 NaN block scale");
}

// Layout: every column-wise copy equals the row-wise copy of the transposed input (FP8 tensorwise,
// MXFP8, NVFP4 RNE), on a shape that is a multiple of no block size.
static void test_reference_colwise_is_rowwise_of_transpose(void) {
    enum { R = 45, C = 70 };
    uint16_t x[R * C], xt[C * R];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) xt[c * R + r] = x[r * C + c] = bf16_bits_from_float_rne(random_float(-8, 4));
    static uint8_t q_col[R * C], q_t[R * C], s_col[C * 2], s_t[C * 2];
    ref_quantize_fp8_tensorwise(x, R, C, FP8_E5M2, 3.0f, NULL, q_col);
    ref_quantize_fp8_tensorwise(xt, C, R, FP8_E5M2, 3.0f, q_t, NULL);
    CHECK(memcmp(q_col, q_t, sizeof(q_col)) == 0, "FP8 transposed copy");
    ref_quantize_mxfp8(x, R, C, NULL, NULL, q_col, s_col);
    ref_quantize_mxfp8(xt, C, R, q_t, s_t, NULL, NULL);
    CHECK(memcmp(q_col, q_t, (size_t)C * R) == 0 && memcmp(s_col, s_t, (size_t)C * 2) == 0, "MXFP8 column-wise copy");
    static uint8_t n_col[C * 23], n_t[C * 23], ns_col[C * 3], ns_t[C * 3];
    float s_enc = nvfp4_tensor_scale(ref_amax_bf16(x, R * C));
    ref_quantize_nvfp4_colwise(x, R, C, 0, s_enc, NULL, n_col, ns_col);
    ref_quantize_nvfp4_rowwise(xt, C, R, s_enc, NULL, n_t, ns_t);
    CHECK(memcmp(n_col, n_t, sizeof(n_col)) == 0 && memcmp(ns_col, ns_t, sizeof(ns_col)) == 0, "NVFP4 column-wise copy");
    // the row-wise copy's element (r, c) decodes near x within the format's precision
    int bad = 0;
    ref_quantize_mxfp8(x, R, C, q_t, s_t, NULL, NULL);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            double v = bf16_bits_to_float(x[r * C + c]);
            double deq = (double)fp8_e4m3_to_float(q_t[r * C + c]) * e8m0_to_float(s_t[r * 3 + c / 32]);
            // E4M3 keeps 3 mantissa bits: error <= 2^-4 |v|, or <= the subnormal step 2^-9 * scale
            if (fabs(deq - v) > fmax(fabs(v) / 16, ldexp(e8m0_to_float(s_t[r * 3 + c / 32]), -10)) + 1e-30) bad++;
        }
    CHECK(bad == 0, "%d MXFP8 elements decode too far from x", bad);
}

int main(void) {
    RUN_TEST(test_every_code_decodes_and_reencodes);
    RUN_TEST(test_rounding_at_every_boundary);
    RUN_TEST(test_rounding_random_against_nearest_search);
    RUN_TEST(test_e2m1_rne_encoder_matches_generic_codec);
    RUN_TEST(test_stochastic_rounding_neighbours_and_threshold);
    RUN_TEST(test_stochastic_rounding_unbiased);
    RUN_TEST(test_e8m0_scale_selection);
    RUN_TEST(test_ue4m3_and_nvfp4_scales);
    RUN_TEST(test_fp8cs_scale_rule);
    RUN_TEST(test_int8_int16_rounding);
    RUN_TEST(test_bf16_conversion);
    RUN_TEST(test_philox_known_answers);
    RUN_TEST(test_hadamard16);
    RUN_TEST(test_nvfp4_reference_stochastic);
    RUN_TEST(test_reference_edge_blocks);
    RUN_TEST(test_reference_colwise_is_rowwise_of_transpose);
    return testing_finish();
}
