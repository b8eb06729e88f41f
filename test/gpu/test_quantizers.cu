// GPU quantizers against the CPU reference (kernels/quantize_reference.h), bit for bit, on random
// BF16 tensors of awkward shapes; outputs are poisoned with two different byte patterns before the
// runs so that an element a kernel forgets to write is caught. Also: the hardware FP8 converts used
// by the kernels against the software codec of formats.h for all 2^32 fp32 inputs, the exact amax,
// stochastic-rounding bits for the same key, and the quantization error of each format
// (relative RMS against the BF16 input), printed for the record.
#include <math.h>
#include <vector>
#include "kernels/quantize_fp8_tensorwise.cuh"
#include "kernels/quantize_mxfp8_block32.cuh"
#include "kernels/quantize_nvfp4_block16.cuh"
#include "kernels/quantize_reference.h"
#include "test/testing.h"

struct Shape { int R, C; };
static const Shape SHAPES[] = {{1, 32}, {5, 7}, {77, 96}, {64, 17}, {33, 50}, {129, 160}, {160, 48}, {1000, 4128}};
static const int NUM_SHAPES = (int)(sizeof(SHAPES) / sizeof(SHAPES[0]));
static const uint8_t POISONS[2] = {0x5A, 0xA5};

// ---------------------------------------------------------------------------- host helpers

static uint64_t rng_state = 0x853C49E6748FEA9Bull;
static uint32_t rng_u32() { // xorshift64*
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}
static float rng_uniform() { return ((rng_u32() >> 8) + 0.5f) / 16777216.0f; }
static float rng_normal() { return sqrtf(-2.0f * logf(rng_uniform())) * cosf(6.2831853f * rng_uniform()); }

// Random BF16 tensor: normal values scaled by 2^k per 16-element chunk (k uniform in [-12, 12]),
// about 1 chunk in 40 all zero, a few large outliers, a few values in the FP8 subnormal range.
static std::vector<uint16_t> random_bf16(size_t n) {
    std::vector<uint16_t> x(n);
    float chunk_scale = 1.0f;
    for (size_t i = 0; i < n; i++) {
        if (i % 16 == 0) chunk_scale = (rng_u32() % 40 == 0) ? 0.0f : ldexpf(1.0f, (int)(rng_u32() % 25) - 12);
        float v = rng_normal() * chunk_scale;
        uint32_t pick = rng_u32() % 1000;
        if (pick == 0) v *= 1000.0f;
        if (pick == 1) v = ldexpf(rng_normal(), -10);
        x[i] = bf16_bits_from_float_rne(v);
    }
    return x;
}

template <class T> static T *dev_alloc(size_t n) {
    T *p;
    cudaCheck(cudaMalloc(&p, n * sizeof(T) + 16));
    return p;
}
template <class T> static std::vector<T> to_host(const T *d, size_t n) {
    std::vector<T> h(n);
    cudaCheck(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}
static bf16 *to_device_bf16(const std::vector<uint16_t> &x) {
    bf16 *d = dev_alloc<bf16>(x.size());
    cudaCheck(cudaMemcpy(d, x.data(), x.size() * 2, cudaMemcpyHostToDevice));
    return d;
}
static float host_float(const float *d) {
    float v;
    cudaCheck(cudaMemcpy(&v, d, 4, cudaMemcpyDeviceToHost));
    return v;
}

// Counts differing bytes; prints the first one. Returns the count.
static size_t compare_bytes(const char *what, int R, int C, const uint8_t *got, const uint8_t *want, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (got[i] != want[i]) {
            if (bad == 0) printf("  %s %dx%d: first mismatch at byte %zu: got 0x%02x want 0x%02x\n", what, R, C, i, got[i], want[i]);
            bad++;
        }
    }
    return bad;
}

// An output buffer on the device, poisoned with `poison`, compared with the reference after the run.
struct DevBytes {
    uint8_t *d;
    size_t n;
    DevBytes(size_t n_) : d(dev_alloc<uint8_t>(n_)), n(n_) {}
    ~DevBytes() { cudaCheck(cudaFree(d)); }
    void poison(uint8_t p) { cudaCheck(cudaMemset(d, p, n)); }
    size_t check(const char *what, int R, int C, const std::vector<uint8_t> &want) const {
        std::vector<uint8_t> got = to_host(d, n);
        return compare_bytes(what, R, C, got.data(), want.data(), n);
    }
};

static bool same_bits(float a, float b) { return fmt_float_to_bits(a) == fmt_float_to_bits(b); }

// ---------------------------------------------------------------------------- hardware converts

// For every fp32 bit pattern u in [start, start + count): hardware E4M3/E5M2 convert vs the software
// codec; counts mismatches and keeps the smallest mismatching input of each format.
__global__ void fp8_cvt_compare_kernel(unsigned long long *bad, unsigned int *first_bad, uint64_t start, uint64_t count) {
    uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    unsigned long long local[2] = {0, 0};
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride) {
        uint32_t u = (uint32_t)(start + i);
        float x = __uint_as_float(u);
        uint16_t hw4 = fp8x2_from_float2_rne<FP8_E4M3>(x, -x), hw5 = fp8x2_from_float2_rne<FP8_E5M2>(x, -x);
        uint16_t sw4 = (uint16_t)(fp8_e4m3_from_float_rne(x) | (fp8_e4m3_from_float_rne(-x) << 8));
        uint16_t sw5 = (uint16_t)(fp8_e5m2_from_float_rne(x) | (fp8_e5m2_from_float_rne(-x) << 8));
        if (hw4 != sw4) { local[0]++; atomicMin(&first_bad[0], u); }
        if (hw5 != sw5) { local[1]++; atomicMin(&first_bad[1], u); }
    }
    if (local[0]) atomicAdd(&bad[0], local[0]);
    if (local[1]) atomicAdd(&bad[1], local[1]);
}

static void test_fp8_hardware_convert_matches_codec_exhaustive(void) {
    unsigned long long *bad = dev_alloc<unsigned long long>(2);
    unsigned int *first_bad = dev_alloc<unsigned int>(2);
    cudaCheck(cudaMemset(bad, 0, 2 * sizeof(unsigned long long)));
    cudaCheck(cudaMemset(first_bad, 0xFF, 2 * sizeof(unsigned int)));
    const uint64_t chunk = 1ull << 30;
    for (uint64_t start = 0; start < (1ull << 32); start += chunk) {
        fp8_cvt_compare_kernel<<<1024, 256>>>(bad, first_bad, start, chunk);
        cudaCheckLaunch();
    }
    std::vector<unsigned long long> b = to_host(bad, 2);
    std::vector<unsigned int> f = to_host(first_bad, 2);
    CHECK(b[0] == 0, "E4M3: %llu of 2^32 inputs differ (first 0x%08x)", b[0], f[0]);
    CHECK(b[1] == 0, "E5M2: %llu of 2^32 inputs differ (first 0x%08x)", b[1], f[1]);
    cudaCheck(cudaFree(bad));
    cudaCheck(cudaFree(first_bad));
}

// ---------------------------------------------------------------------------- amax

static void test_amax_exact(void) {
    const size_t sizes[] = {1, 7, 8, 33, 4096 + 5, 1000 * 4128};
    float *amax = dev_alloc<float>(1);
    for (size_t n : sizes) {
        std::vector<uint16_t> x = random_bf16(n);
        bf16 *dx = to_device_bf16(x);
        amax_bf16(amax, dx, n, 0);
        float got = host_float(amax), want = ref_amax_bf16(x.data(), n);
        CHECK(same_bits(got, want), "n=%zu: amax %.9g, reference %.9g", n, got, want);
        cudaCheck(cudaFree(dx));
    }
    // NaN propagates
    std::vector<uint16_t> x = random_bf16(1000);
    x[517] = 0xFFC1;
    bf16 *dx = to_device_bf16(x);
    amax_bf16(amax, dx, x.size(), 0);
    CHECK(fmt_isnan(host_float(amax)), "a NaN input must give a NaN amax");
    cudaCheck(cudaFree(dx));
    cudaCheck(cudaFree(amax));
}

// ---------------------------------------------------------------------------- FP8 tensorwise

static void check_fp8_tensorwise(Fp8Format fmt, bool static_scale) {
    for (int si = 0; si < NUM_SHAPES; si++) {
        int R = SHAPES[si].R, C = SHAPES[si].C;
        size_t n = (size_t)R * C;
        std::vector<uint16_t> x = random_bf16(n);
        bf16 *dx = to_device_bf16(x);
        float *amax = dev_alloc<float>(1), *s_dec = dev_alloc<float>(1);
        float s_enc = static_scale ? 0.37f : fp8cs_scale_from_amax(fmt, ref_amax_bf16(x.data(), n));
        std::vector<uint8_t> want_row(n), want_col(n);
        ref_quantize_fp8_tensorwise(x.data(), R, C, fmt, s_enc, want_row.data(), want_col.data());
        DevBytes q_row(n), q_col(n);
        for (uint8_t p : POISONS) {
            q_row.poison(p);
            q_col.poison(p);
            cudaCheck(cudaMemset(s_dec, p, 4));
            if (static_scale) {
                mus_quantize(q_row.d, q_col.d, s_dec, dx, R, C, fmt, s_enc, 0);
            } else {
                amax_bf16(amax, dx, n, 0);
                fp8cs_quantize(q_row.d, q_col.d, s_dec, dx, R, C, fmt, amax, 0);
            }
            CHECK(q_row.check("row-wise", R, C, want_row) == 0, "row-wise codes differ");
            CHECK(q_col.check("transposed", R, C, want_col) == 0, "transposed codes differ");
            CHECK(same_bits(host_float(s_dec), 1.0f / s_enc), "%dx%d: s_dec %.9g want %.9g", R, C, host_float(s_dec), 1.0f / s_enc);
        }
        // row-wise only leaves the transposed buffer alone
        q_col.poison(0x11);
        if (static_scale) mus_quantize(q_row.d, nullptr, s_dec, dx, R, C, fmt, s_enc, 0);
        else fp8cs_quantize(q_row.d, nullptr, s_dec, dx, R, C, fmt, amax, 0);
        CHECK(q_row.check("row-wise only", R, C, want_row) == 0, "row-wise-only codes differ");
        CHECK(q_col.check("untouched transpose", R, C, std::vector<uint8_t>(n, 0x11)) == 0, "transpose written when not asked");
        cudaCheck(cudaFree(dx));
        cudaCheck(cudaFree(amax));
        cudaCheck(cudaFree(s_dec));
    }
}
static void test_fp8cs_e4m3_matches_reference(void) { check_fp8_tensorwise(FP8_E4M3, false); }
static void test_fp8cs_e5m2_matches_reference(void) { check_fp8_tensorwise(FP8_E5M2, false); }
static void test_mus_static_e4m3_matches_reference(void) { check_fp8_tensorwise(FP8_E4M3, true); }
static void test_mus_static_e5m2_matches_reference(void) { check_fp8_tensorwise(FP8_E5M2, true); }

// ---------------------------------------------------------------------------- MXFP8

static void test_mxfp8_matches_reference(void) {
    for (int si = 0; si < NUM_SHAPES; si++) {
        int R = SHAPES[si].R, C = SHAPES[si].C;
        size_t n = (size_t)R * C, ns_row = (size_t)R * ceil_div(C, 32), ns_col = (size_t)C * ceil_div(R, 32);
        std::vector<uint16_t> x = random_bf16(n);
        if (si == 2) x[5] = 0x7FC0; // a NaN in block 0 of row 0 and of column 5
        bf16 *dx = to_device_bf16(x);
        std::vector<uint8_t> want_q_row(n), want_s_row(ns_row), want_q_col(n), want_s_col(ns_col);
        ref_quantize_mxfp8(x.data(), R, C, want_q_row.data(), want_s_row.data(), want_q_col.data(), want_s_col.data());
        DevBytes q_row(n), s_row(ns_row), q_col(n), s_col(ns_col);
        for (uint8_t p : POISONS) {
            q_row.poison(p); s_row.poison(p); q_col.poison(p); s_col.poison(p);
            mxfp8_quantize(q_row.d, s_row.d, q_col.d, s_col.d, dx, R, C, 0);
            CHECK(q_row.check("row-wise data", R, C, want_q_row) == 0, "row-wise data differ");
            CHECK(s_row.check("row-wise scales", R, C, want_s_row) == 0, "row-wise scales differ");
            CHECK(q_col.check("column-wise data", R, C, want_q_col) == 0, "column-wise data differ");
            CHECK(s_col.check("column-wise scales", R, C, want_s_col) == 0, "column-wise scales differ");
        }
        if (si == 2) CHECK(want_s_row[0] == 0xFF && want_q_row[0] == 0x7F, "NaN block: scale 0x%02x code 0x%02x", want_s_row[0], want_q_row[0]);
        // column-wise only
        q_row.poison(0x11);
        mxfp8_quantize(nullptr, nullptr, q_col.d, s_col.d, dx, R, C, 0);
        CHECK(q_col.check("column-wise only", R, C, want_q_col) == 0, "column-wise-only data differ");
        CHECK(q_row.check("untouched row-wise", R, C, std::vector<uint8_t>(n, 0x11)) == 0, "row-wise written when not asked");
        cudaCheck(cudaFree(dx));
    }
}

// ---------------------------------------------------------------------------- NVFP4

static void test_nvfp4_rowwise_matches_reference(void) {
    SrKey key = {0x1234567890ull, 17, 3};
    for (int si = 0; si < NUM_SHAPES; si++) {
        int R = SHAPES[si].R, C = SHAPES[si].C;
        size_t n = (size_t)R * C, nq = (size_t)R * ceil_div(C, 2), ns = (size_t)R * ceil_div(C, 16);
        std::vector<uint16_t> x = random_bf16(n);
        bf16 *dx = to_device_bf16(x);
        float *amax = dev_alloc<float>(1), *s_dec = dev_alloc<float>(1);
        float s_enc = nvfp4_tensor_scale(ref_amax_bf16(x.data(), n));
        DevBytes q(nq), s(ns);
        for (int stochastic = 0; stochastic < 2; stochastic++) {
            std::vector<uint8_t> want_q(nq), want_s(ns);
            ref_quantize_nvfp4_rowwise(x.data(), R, C, s_enc, stochastic ? &key : NULL, want_q.data(), want_s.data());
            for (uint8_t p : POISONS) {
                q.poison(p); s.poison(p);
                amax_bf16(amax, dx, n, 0);
                nvfp4_quantize_rowwise(q.d, s.d, s_dec, dx, R, C, amax, stochastic ? &key : nullptr, 0);
                CHECK(q.check(stochastic ? "SR data" : "RNE data", R, C, want_q) == 0, "data differ (stochastic=%d)", stochastic);
                CHECK(s.check("scales", R, C, want_s) == 0, "scales differ (stochastic=%d)", stochastic);
                CHECK(same_bits(host_float(s_dec), 1.0f / s_enc), "s_dec %.9g want %.9g", host_float(s_dec), 1.0f / s_enc);
            }
        }
        cudaCheck(cudaFree(dx)); cudaCheck(cudaFree(amax)); cudaCheck(cudaFree(s_dec));
    }
}

static void test_nvfp4_colwise_matches_reference(void) {
    SrKey key = {0xFEEDull, 5, 9};
    for (int si = 0; si < NUM_SHAPES; si++) {
        int R = SHAPES[si].R, C = SHAPES[si].C;
        size_t n = (size_t)R * C, nq = (size_t)C * ceil_div(R, 2), ns = (size_t)C * ceil_div(R, 16);
        std::vector<uint16_t> x = random_bf16(n);
        bf16 *dx = to_device_bf16(x);
        float *amax = dev_alloc<float>(1), *s_dec = dev_alloc<float>(1);
        DevBytes q(nq), s(ns);
        for (int variant = 0; variant < 4; variant++) {
            int rht = variant & 1, stochastic = variant >> 1;
            if (rht && R % 16 != 0) continue;
            float ref_amax = rht ? ref_amax_colwise_rht16(x.data(), R, C) : ref_amax_bf16(x.data(), n);
            float s_enc = nvfp4_tensor_scale(ref_amax);
            std::vector<uint8_t> want_q(nq), want_s(ns);
            ref_quantize_nvfp4_colwise(x.data(), R, C, rht, s_enc, stochastic ? &key : NULL, want_q.data(), want_s.data());
            for (uint8_t p : POISONS) {
                q.poison(p); s.poison(p);
                if (rht) amax_colwise_rht16(amax, dx, R, C, 0);
                else amax_bf16(amax, dx, n, 0);
                CHECK(same_bits(host_float(amax), ref_amax), "%dx%d rht=%d: amax %.9g want %.9g", R, C, rht, host_float(amax), ref_amax);
                nvfp4_quantize_colwise(q.d, s.d, s_dec, dx, R, C, rht, amax, stochastic ? &key : nullptr, 0);
                CHECK(q.check("column-wise data", R, C, want_q) == 0, "data differ (rht=%d stochastic=%d)", rht, stochastic);
                CHECK(s.check("column-wise scales", R, C, want_s) == 0, "scales differ (rht=%d stochastic=%d)", rht, stochastic);
            }
        }
        cudaCheck(cudaFree(dx)); cudaCheck(cudaFree(amax)); cudaCheck(cudaFree(s_dec));
    }
}

static void test_nvfp4_2d_matches_reference(void) {
    for (int si = 0; si < NUM_SHAPES; si++) {
        int R = SHAPES[si].R, C = SHAPES[si].C;
        size_t n = (size_t)R * C;
        size_t nq_row = (size_t)R * ceil_div(C, 2), ns_row = (size_t)R * ceil_div(C, 16);
        size_t nq_col = (size_t)C * ceil_div(R, 2), ns_col = (size_t)C * ceil_div(R, 16);
        std::vector<uint16_t> x = random_bf16(n);
        bf16 *dx = to_device_bf16(x);
        float *amax = dev_alloc<float>(1), *s_dec = dev_alloc<float>(1);
        float s_enc = nvfp4_tensor_scale(ref_amax_bf16(x.data(), n));
        std::vector<uint8_t> wq_row(nq_row), ws_row(ns_row), wq_col(nq_col), ws_col(ns_col);
        ref_quantize_nvfp4_2d(x.data(), R, C, s_enc, wq_row.data(), ws_row.data(), wq_col.data(), ws_col.data());
        DevBytes q_row(nq_row), s_row(ns_row), q_col(nq_col), s_col(ns_col);
        for (uint8_t p : POISONS) {
            q_row.poison(p); s_row.poison(p); q_col.poison(p); s_col.poison(p);
            amax_bf16(amax, dx, n, 0);
            nvfp4_quantize_2d(q_row.d, s_row.d, q_col.d, s_col.d, s_dec, dx, R, C, amax, 0);
            CHECK(q_row.check("2-D row-wise data", R, C, wq_row) == 0, "row-wise data differ");
            CHECK(s_row.check("2-D row-wise scales", R, C, ws_row) == 0, "row-wise scales differ");
            CHECK(q_col.check("2-D column-wise data", R, C, wq_col) == 0, "column-wise data differ");
            CHECK(s_col.check("2-D column-wise scales", R, C, ws_col) == 0, "column-wise scales differ");
        }
        // the column-wise copy is the transpose of the row-wise one
        size_t bad = 0;
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) {
                uint8_t a = (wq_row[(size_t)r * ceil_div(C, 2) + c / 2] >> (4 * (c % 2))) & 0xF;
                uint8_t b = (wq_col[(size_t)c * ceil_div(R, 2) + r / 2] >> (4 * (r % 2))) & 0xF;
                bad += a != b || ws_row[(size_t)r * ceil_div(C, 16) + c / 16] != ws_col[(size_t)c * ceil_div(R, 16) + r / 16];
            }
        CHECK(bad == 0, "%dx%d: %zu elements of the 2-D column-wise copy are not the transpose", R, C, bad);
        cudaCheck(cudaFree(dx)); cudaCheck(cudaFree(amax)); cudaCheck(cudaFree(s_dec));
    }
}

// ---------------------------------------------------------------------------- quantization error

// Relative RMS error ||deq - ref|| / ||ref|| of each format's GPU output on a 1024 x 4096 tensor of
// normal values (the BF16 input, or its RHT for the RHT copy). Bounds: a few times the format's
// RMS rounding error (E4M3 2^-4 relative step, E5M2 2^-3, E2M1 up to 2^-1 with block scaling).
static double rel_rms(const std::vector<double> &deq, const std::vector<double> &ref) {
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); i++) { num += (deq[i] - ref[i]) * (deq[i] - ref[i]); den += ref[i] * ref[i]; }
    return sqrt(num / den);
}

static void test_quantization_error_report(void) {
    const int R = 1024, C = 4096;
    size_t n = (size_t)R * C;
    std::vector<uint16_t> x(n);
    for (size_t i = 0; i < n; i++) x[i] = bf16_bits_from_float_rne(rng_normal());
    std::vector<double> ref(n), deq(n);
    for (size_t i = 0; i < n; i++) ref[i] = bf16_bits_to_float(x[i]);
    bf16 *dx = to_device_bf16(x);
    float *amax = dev_alloc<float>(1), *s_dec = dev_alloc<float>(1);
    DevBytes q(n), s(n / 16);

    amax_bf16(amax, dx, n, 0);
    for (int f = 0; f < 2; f++) {
        Fp8Format fmt = f ? FP8_E5M2 : FP8_E4M3;
        fp8cs_quantize(q.d, nullptr, s_dec, dx, R, C, fmt, amax, 0);
        std::vector<uint8_t> hq = to_host(q.d, n);
        float sd = host_float(s_dec);
        for (size_t i = 0; i < n; i++) deq[i] = (double)fp8_to_float(fmt, hq[i]) * sd;
        double e = rel_rms(deq, ref);
        printf("  rel RMS error FP8-CS %s: %.5f\n", f ? "E5M2" : "E4M3", e);
        CHECK(e < (f ? 0.10 : 0.05), "FP8-CS error %.5f too large", e);
    }
    {
        mxfp8_quantize(q.d, s.d, nullptr, nullptr, dx, R, C, 0);
        std::vector<uint8_t> hq = to_host(q.d, n), hs = to_host(s.d, n / 32);
        for (size_t i = 0; i < n; i++) deq[i] = (double)fp8_e4m3_to_float(hq[i]) * e8m0_to_float(hs[i / 32]);
        double e = rel_rms(deq, ref);
        printf("  rel RMS error MXFP8 E4M3/32: %.5f\n", e);
        CHECK(e < 0.05, "MXFP8 error %.5f too large", e);
    }
    for (int variant = 0; variant < 3; variant++) { // row-wise RNE, row-wise SR, column-wise RHT + SR
        SrKey key = {42, 1, 1};
        std::vector<double> target = ref;
        if (variant < 2) {
            amax_bf16(amax, dx, n, 0);
            nvfp4_quantize_rowwise(q.d, s.d, s_dec, dx, R, C, amax, variant ? &key : nullptr, 0);
        } else {
            amax_colwise_rht16(amax, dx, R, C, 0);
            nvfp4_quantize_colwise(q.d, s.d, s_dec, dx, R, C, true, amax, &key, 0);
            for (int c = 0; c < C; c++) // target: the RHT'd column blocks, in the [C, R] layout
                for (int g = 0; g < R / 16; g++) {
                    float v[16];
                    ref_load_block16(x.data() + c, (size_t)C, R, g, v);
                    rht16_apply(v, RHT16_SIGN_MASK);
                    for (int i = 0; i < 16; i++) target[(size_t)c * R + 16 * g + i] = v[i];
                }
        }
        std::vector<uint8_t> hq = to_host(q.d, n / 2), hs = to_host(s.d, n / 16);
        float sd = host_float(s_dec);
        for (size_t i = 0; i < n; i++) deq[i] = (double)fp4_e2m1_to_float((hq[i / 2] >> (4 * (i % 2))) & 0xF) * ue4m3_to_float(hs[i / 16]) * sd;
        double e = rel_rms(deq, target);
        const char *names[3] = {"NVFP4 1x16 RNE", "NVFP4 1x16 SR", "NVFP4 col RHT+SR"};
        printf("  rel RMS error %s: %.5f\n", names[variant], e);
        CHECK(e < 0.25, "%s error %.5f too large", names[variant], e);
    }
    cudaCheck(cudaFree(dx)); cudaCheck(cudaFree(amax)); cudaCheck(cudaFree(s_dec));
}

int main(void) {
    int device_count = 0;
    if (cudaGetDeviceCount(&device_count) != cudaSuccess || device_count == 0) {
        SKIP_TEST(all, "no CUDA device");
        return testing_finish();
    }
    RUN_TEST(test_fp8_hardware_convert_matches_codec_exhaustive);
    RUN_TEST(test_amax_exact);
    RUN_TEST(test_fp8cs_e4m3_matches_reference);
    RUN_TEST(test_fp8cs_e5m2_matches_reference);
    RUN_TEST(test_mus_static_e4m3_matches_reference);
    RUN_TEST(test_mus_static_e5m2_matches_reference);
    RUN_TEST(test_mxfp8_matches_reference);
    RUN_TEST(test_nvfp4_rowwise_matches_reference);
    RUN_TEST(test_nvfp4_colwise_matches_reference);
    RUN_TEST(test_nvfp4_2d_matches_reference);
    RUN_TEST(test_quantization_error_report);
    return testing_finish();
}
