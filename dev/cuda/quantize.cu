/*
Kernel harness for the quantizers (kernels/quantize_*.cuh): correctness against the CPU reference
(kernels/quantize_reference.h) on a 1008 x 4128 tensor, then a benchmark with the L2 flushed before
every run, for 8192x8192 and the GPT-2 / Llama activation shapes (8192 tokens x d, x 4d / ffn).

Compile: make build/dev/quantize
Run:     ./build/dev/quantize            all quantizers
         ./build/dev/quantize <name>...  of: fp8cs_v1 fp8cs mus mxfp8 nvfp4_row nvfp4_row_sr
                                         nvfp4_col_rht_sr nvfp4_col_rht_sr_v2 nvfp4_2d
GB/s counts the bytes every pass must move: each pass over x reads 2 bytes per element (FP8-CS and
NVFP4 make an amax pass first), plus the bytes written (codes and scales). The copy bandwidth of
the lent H100 is about 3.0 TB/s (read + written).

Versions:
  fp8cs_v1  naive: one thread per element, software codec of formats.h, the transposed store is
            uncoalesced (one byte per thread at stride R)
  fp8cs     kernels/quantize_fp8_tensorwise.cuh: 32x64 tiles through shared memory, 8 elements per
            thread, hardware FP8 converts (proved equal to the codec by test_quantizers)
  nvfp4_col_rht_sr     kernels/quantize_nvfp4_block16.cuh (version 1): one thread per (column,
            16-row block), 2-byte loads (a warp reads 64 bytes per row); RHT amax pass likewise
  nvfp4_col_rht_sr_v2  2 columns x 4 blocks per thread, 4-byte loads (128 bytes per warp and row),
            RHT amax pass with the same mapping: slower (106 registers, half the occupancy)
  the others are the kernels of the headers. History (dev/RESULTS.md has the numbers): the E2M1
  RNE encoder of formats.h was rewritten as a threshold count after the first measurement (the
  generic codec's 64-bit shifts made the NVFP4 kernels compute-bound); a threshold-count SR encoder
  was slower than the generic one (float->int converts) and was dropped; the FP8/MXFP8 tiles went
  from 32 x 64 to 64 x 64 (two loads in flight per thread).
*/
#include <string.h>
#include <vector>
#include "kernels/quantize_fp8_tensorwise.cuh"
#include "kernels/quantize_mxfp8_block32.cuh"
#include "kernels/quantize_nvfp4_block16.cuh"
#include "kernels/quantize_reference.h"

// ---------------------------------------------------------------------------- version 1 (naive)

// One thread per element of x [R, C]: q_row[r*C + c] and q_col[c*R + r] = fp8(x * s_enc), s_enc
// from *amax; software codec.
template <Fp8Format F>
__global__ void fp8_cast_transpose_naive_kernel(uint8_t *q_row, uint8_t *q_col, float *s_dec, const bf16 *x, int R, int C,
                                                const float *amax) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    float s_enc = fmt_tensor_scale_from_amax(fp8_max(F), *amax);
    if (idx == 0) *s_dec = 1.0f / s_enc;
    if (idx >= (size_t)R * C) return;
    size_t r = idx / C, c = idx % C;
    float v = bf16_bits_to_float(reinterpret_cast<const uint16_t *>(x)[idx]);
    uint8_t q = F == FP8_E4M3 ? fp8_e4m3_from_float_rne(v * s_enc) : fp8_e5m2_from_float_rne(v * s_enc);
    q_row[idx] = q;
    q_col[c * R + r] = q;
}

static void fp8cs_naive(uint8_t *q_row, uint8_t *q_col, float *s_dec, const bf16 *x, int R, int C, const float *amax,
                        cudaStream_t stream) {
    const int block_size = 256;
    int grid = (int)ceil_div((size_t)R * C, (size_t)block_size);
    fp8_cast_transpose_naive_kernel<FP8_E4M3><<<grid, block_size, 0, stream>>>(q_row, q_col, s_dec, x, R, C, amax);
    cudaCheckLaunch();
}

// Version 2 work of one thread: 2 adjacent columns x NVFP4_COL_GROUPS blocks of 16 rows, so a warp
// loads 128 contiguous bytes per row (4-byte loads) and a thread writes 4 consecutive 8-byte pieces
// of each output line. Slower than version 1 (kernels/quantize_nvfp4_block16.cuh): twice the
// registers (106 with RHT + SR), so half the occupancy.
#define NVFP4_COL_GROUPS 4

// Loads rows [r0, r0 + 16) of columns c (even) and c + 1 into v[0], v[1] (zero past R or C); one
// 4-byte load per row when C is even (then the pair is aligned and inside the row).
__device__ __forceinline__ void nvfp4_load_col16x2(const bf16 *x, int R, int C, int r0, int c, float v[2][16]) {
    const uint16_t *src = reinterpret_cast<const uint16_t *>(x) + (size_t)r0 * C + c;
    for (int k = 0; k < 16; k++) {
        const uint16_t *p = src + (size_t)k * C;
        if (r0 + k >= R) {
            v[0][k] = v[1][k] = 0.0f;
        } else if ((C % 2) == 0) {
            uint32_t w = *reinterpret_cast<const uint32_t *>(p);
            v[0][k] = __uint_as_float(w << 16);
            v[1][k] = __uint_as_float(w & 0xFFFF0000u);
        } else {
            v[0][k] = bf16_bits_to_float(p[0]);
            v[1][k] = c + 1 < C ? bf16_bits_to_float(p[1]) : 0.0f;
        }
    }
}

// Version 2 of the column-wise NVFP4 quantizer: thread = (column pair, NVFP4_COL_GROUPS row blocks),
// flattened with the column pair fastest (a warp reads 64 consecutive columns, 128 bytes, of a row).
template <bool RHT, bool STOCHASTIC>
__global__ void nvfp4_colwise_v2_kernel(uint8_t *q, uint8_t *s, float *s_dec_out, const bf16 *x, int R, int C,
                                              const float *amax, SrKey key) {
    int nb = ceil_div(R, 16), npairs = ceil_div(C, 2);
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    float s_enc = nvfp4_tensor_scale(*amax), s_dec = 1.0f / s_enc;
    if (idx == 0) *s_dec_out = s_dec;
    if (idx >= (size_t)npairs * ceil_div(nb, NVFP4_COL_GROUPS)) return;
    int c = 2 * (int)(idx % npairs), g0 = NVFP4_COL_GROUPS * (int)(idx / npairs);
    for (int g = g0; g < g0 + NVFP4_COL_GROUPS && g < nb; g++) {
        float v[2][16];
        nvfp4_load_col16x2(x, R, C, 16 * g, c, v);
        int count = min(16, R - 16 * g);
        nvfp4_colwise_block<RHT, STOCHASTIC>(v[0], count, c, g, R, s_enc, s_dec, key, q, s);
        if (c + 1 < C) nvfp4_colwise_block<RHT, STOCHASTIC>(v[1], count, c + 1, g, R, s_enc, s_dec, key, q, s);
    }
}

// amax of the RHT'd column-wise blocks into *amax_bits (0 before the launch), R % 16 == 0; same
// thread mapping as nvfp4_colwise_v2_kernel, block-wide reduction, one atomicMax per block.
__global__ void amax_colwise_rht16_v2_kernel(unsigned int *amax_bits, const bf16 *x, int R, int C) {
    int nb = R / 16, npairs = ceil_div(C, 2);
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    uint32_t m = 0;
    if (idx < (size_t)npairs * ceil_div(nb, NVFP4_COL_GROUPS)) {
        int c = 2 * (int)(idx % npairs), g0 = NVFP4_COL_GROUPS * (int)(idx / npairs);
        for (int g = g0; g < g0 + NVFP4_COL_GROUPS && g < nb; g++) {
            float v[2][16];
            nvfp4_load_col16x2(x, R, C, 16 * g, c, v);
            rht16_apply(v[0], RHT16_SIGN_MASK);
            rht16_apply(v[1], RHT16_SIGN_MASK); // a column past C holds zeros and stays zero
            m = max(m, max(nvfp4_amax16(v[0]), nvfp4_amax16(v[1])));
        }
    }
    block_atomic_max_u32(amax_bits, m);
}

static void nvfp4_colwise_rht_sr_v2(uint8_t *q, uint8_t *s, float *s_dec, float *amax, const bf16 *x, int R, int C, SrKey key,
                                    cudaStream_t stream) {
    shapeCheck(R % 16 == 0, "R=%d", R);
    const int block_size = 256;
    int grid = (int)ceil_div((size_t)ceil_div(R / 16, NVFP4_COL_GROUPS) * ceil_div(C, 2), (size_t)block_size);
    cudaCheck(cudaMemsetAsync(amax, 0, sizeof(float), stream));
    amax_colwise_rht16_v2_kernel<<<grid, block_size, 0, stream>>>(reinterpret_cast<unsigned int *>(amax), x, R, C);
    cudaCheckLaunch();
    nvfp4_colwise_v2_kernel<true, true><<<grid, block_size, 0, stream>>>(q, s, s_dec, x, R, C, amax, key);
    cudaCheckLaunch();
}

// ---------------------------------------------------------------------------- buffers and runs

struct Buffers {
    bf16 *x;
    float *amax, *s_dec;
    uint8_t *q_row, *s_row, *q_col, *s_col;
};

static const SrKey BENCH_KEY = {1234, 7, 1};

// Runs quantizer `name` on x [R, C] (amax pass included); returns the bytes it must move.
static double run_quantizer(const char *name, const Buffers &b, int R, int C, cudaStream_t s) {
    double n = (double)R * C;
    if (!strcmp(name, "fp8cs_v1")) {
        amax_bf16(b.amax, b.x, (size_t)R * C, s);
        fp8cs_naive(b.q_row, b.q_col, b.s_dec, b.x, R, C, b.amax, s);
        return n * 6;
    }
    if (!strcmp(name, "fp8cs")) {
        amax_bf16(b.amax, b.x, (size_t)R * C, s);
        fp8cs_quantize(b.q_row, b.q_col, b.s_dec, b.x, R, C, FP8_E4M3, b.amax, s);
        return n * 6;
    }
    if (!strcmp(name, "mus")) {
        mus_quantize(b.q_row, b.q_col, b.s_dec, b.x, R, C, FP8_E4M3, 1.0f, s);
        return n * 4;
    }
    if (!strcmp(name, "mxfp8")) {
        mxfp8_quantize(b.q_row, b.s_row, b.q_col, b.s_col, b.x, R, C, s);
        return n * (4 + 2.0 / 32);
    }
    if (!strcmp(name, "nvfp4_row") || !strcmp(name, "nvfp4_row_sr")) {
        amax_bf16(b.amax, b.x, (size_t)R * C, s);
        nvfp4_quantize_rowwise(b.q_row, b.s_row, b.s_dec, b.x, R, C, b.amax, strcmp(name, "nvfp4_row") ? &BENCH_KEY : nullptr, s);
        return n * (4 + 0.5 + 1.0 / 16);
    }
    if (!strcmp(name, "nvfp4_col_rht_sr_v2")) {
        nvfp4_colwise_rht_sr_v2(b.q_col, b.s_col, b.s_dec, b.amax, b.x, R, C, BENCH_KEY, s);
        return n * (4 + 0.5 + 1.0 / 16);
    }
    if (!strcmp(name, "nvfp4_col_rht_sr")) {
        amax_colwise_rht16(b.amax, b.x, R, C, s);
        nvfp4_quantize_colwise(b.q_col, b.s_col, b.s_dec, b.x, R, C, true, b.amax, &BENCH_KEY, s);
        return n * (4 + 0.5 + 1.0 / 16);
    }
    if (!strcmp(name, "nvfp4_2d")) {
        amax_bf16(b.amax, b.x, (size_t)R * C, s);
        nvfp4_quantize_2d(b.q_row, b.s_row, b.q_col, b.s_col, b.s_dec, b.x, R, C, b.amax, s);
        return n * (4 + 1 + 2.0 / 16);
    }
    fprintf(stderr, "error: unknown quantizer '%s'\n", name);
    exit(1);
}

// The CPU reference outputs of quantizer `name` (same buffers as run_quantizer fills; sizes in
// the comments of quantize_reference.h) and the number of bytes of each to compare.
struct Expected {
    std::vector<uint8_t> q_row, s_row, q_col, s_col;
};
static Expected reference_outputs(const char *name, const std::vector<uint16_t> &x, int R, int C) {
    size_t n = (size_t)R * C;
    Expected e;
    if (!strncmp(name, "fp8cs", 5) || !strcmp(name, "mus")) {
        float s_enc = strcmp(name, "mus") ? fp8cs_scale_from_amax(FP8_E4M3, ref_amax_bf16(x.data(), n)) : 1.0f;
        e.q_row.resize(n); e.q_col.resize(n);
        ref_quantize_fp8_tensorwise(x.data(), R, C, FP8_E4M3, s_enc, e.q_row.data(), e.q_col.data());
    } else if (!strcmp(name, "mxfp8")) {
        e.q_row.resize(n); e.q_col.resize(n);
        e.s_row.resize((size_t)R * ceil_div(C, 32)); e.s_col.resize((size_t)C * ceil_div(R, 32));
        ref_quantize_mxfp8(x.data(), R, C, e.q_row.data(), e.s_row.data(), e.q_col.data(), e.s_col.data());
    } else if (!strncmp(name, "nvfp4_row", 9)) {
        float s_enc = nvfp4_tensor_scale(ref_amax_bf16(x.data(), n));
        e.q_row.resize((size_t)R * ceil_div(C, 2)); e.s_row.resize((size_t)R * ceil_div(C, 16));
        ref_quantize_nvfp4_rowwise(x.data(), R, C, s_enc, strcmp(name, "nvfp4_row") ? &BENCH_KEY : NULL, e.q_row.data(), e.s_row.data());
    } else if (!strncmp(name, "nvfp4_col_rht_sr", 16)) {
        float s_enc = nvfp4_tensor_scale(ref_amax_colwise_rht16(x.data(), R, C));
        e.q_col.resize((size_t)C * ceil_div(R, 2)); e.s_col.resize((size_t)C * ceil_div(R, 16));
        ref_quantize_nvfp4_colwise(x.data(), R, C, 1, s_enc, &BENCH_KEY, e.q_col.data(), e.s_col.data());
    } else if (!strcmp(name, "nvfp4_2d")) {
        float s_enc = nvfp4_tensor_scale(ref_amax_bf16(x.data(), n));
        e.q_row.resize((size_t)R * ceil_div(C, 2)); e.s_row.resize((size_t)R * ceil_div(C, 16));
        e.q_col.resize((size_t)C * ceil_div(R, 2)); e.s_col.resize((size_t)C * ceil_div(R, 16));
        ref_quantize_nvfp4_2d(x.data(), R, C, s_enc, e.q_row.data(), e.s_row.data(), e.q_col.data(), e.s_col.data());
    }
    return e;
}

// Compares one device output with its reference; returns the number of differing bytes.
static size_t count_mismatches(const uint8_t *d, const std::vector<uint8_t> &want) {
    if (want.empty()) return 0;
    std::vector<uint8_t> got(want.size());
    cudaCheck(cudaMemcpy(got.data(), d, want.size(), cudaMemcpyDeviceToHost));
    size_t bad = 0;
    for (size_t i = 0; i < want.size(); i++) bad += got[i] != want[i];
    return bad;
}

int main(int argc, char **argv) {
    const char *all[] = {"fp8cs_v1", "fp8cs", "mus", "mxfp8", "nvfp4_row", "nvfp4_row_sr", "nvfp4_col_rht_sr",
                         "nvfp4_col_rht_sr_v2", "nvfp4_2d"};
    int num_names = (int)(sizeof(all) / sizeof(all[0]));
    const char **names = all;
    if (argc > 1) { names = (const char **)&argv[1]; num_names = argc - 1; }
    struct { int R, C; const char *what; } shapes[] = {
        {8192, 8192, "square"},      {8192, 768, "GPT-2 124M d"}, {8192, 3072, "GPT-2 124M 4d"},
        {8192, 4096, "Llama-3 8B d"}, {8192, 14336, "Llama-3 8B ffn"}};
    size_t max_n = 0;
    for (auto &sh : shapes) max_n = max(max_n, (size_t)sh.R * sh.C);

    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
    Buffers b;
    cudaCheck(cudaMalloc(&b.x, max_n * 2));
    cudaCheck(cudaMalloc(&b.amax, 4));
    cudaCheck(cudaMalloc(&b.s_dec, 4));
    cudaCheck(cudaMalloc(&b.q_row, max_n));
    cudaCheck(cudaMalloc(&b.q_col, max_n));
    cudaCheck(cudaMalloc(&b.s_row, max_n / 16 + 64));
    cudaCheck(cudaMalloc(&b.s_col, max_n / 16 + 64));
    size_t flush_bytes = (size_t)prop.l2CacheSize * 4;
    void *flush;
    cudaCheck(cudaMalloc(&flush, flush_bytes));

    // random BF16 input: normal values times 2^k per 32-element chunk, k in [-8, 8]
    std::vector<uint16_t> x(max_n);
    uint64_t state = 0x9E3779B97F4A7C15ull;
    int k = 0;
    for (size_t i = 0; i < max_n; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t u = (uint32_t)(state >> 32);
        if (i % 32 == 0) k = (int)(u % 17) - 8;
        float v = ((float)(u & 0xFFFFFF) / 16777216.0f - 0.5f) * 3.4f * ldexpf(1.0f, k);
        x[i] = bf16_bits_from_float_rne(v);
    }
    cudaCheck(cudaMemcpy(b.x, x.data(), max_n * 2, cudaMemcpyHostToDevice));

    // correctness on 1000 x 4128 (first rows of x)
    const int check_R = 1008, check_C = 4128;
    std::vector<uint16_t> xc(x.begin(), x.begin() + (size_t)check_R * check_C);
    int failures = 0;
    for (int i = 0; i < num_names; i++) {
        Expected e = reference_outputs(names[i], xc, check_R, check_C);
        run_quantizer(names[i], b, check_R, check_C, 0);
        cudaCheck(cudaDeviceSynchronize());
        size_t bad = count_mismatches(b.q_row, e.q_row) + count_mismatches(b.s_row, e.s_row) +
                     count_mismatches(b.q_col, e.q_col) + count_mismatches(b.s_col, e.s_col);
        printf("check %-17s %dx%d: %s (%zu bytes differ)\n", names[i], check_R, check_C, bad ? "FAIL" : "ok", bad);
        failures += bad != 0;
    }

    // benchmark: flush L2, time one run, 20 repetitions, mean
    cudaEvent_t start, stop;
    cudaCheck(cudaEventCreate(&start));
    cudaCheck(cudaEventCreate(&stop));
    printf("\n%-17s %-16s %12s %10s %10s\n", "quantizer", "shape", "", "time us", "GB/s");
    for (int i = 0; i < num_names; i++) {
        for (auto &sh : shapes) {
            double bytes = 0, total_ms = 0;
            const int reps = 20;
            for (int rep = 0; rep <= reps; rep++) {
                cudaCheck(cudaMemsetAsync(flush, rep, flush_bytes, 0));
                cudaCheck(cudaEventRecord(start, 0));
                bytes = run_quantizer(names[i], b, sh.R, sh.C, 0);
                cudaCheck(cudaEventRecord(stop, 0));
                cudaCheck(cudaEventSynchronize(stop));
                float ms;
                cudaCheck(cudaEventElapsedTime(&ms, start, stop));
                if (rep > 0) total_ms += ms; // rep 0 warms up
            }
            double us = total_ms / reps * 1e3;
            char shape[32];
            snprintf(shape, sizeof(shape), "%dx%d", sh.R, sh.C);
            printf("%-17s %-16s %12s %10.1f %10.0f\n", names[i], shape, sh.what, us, bytes / (us * 1e-6) / 1e9);
        }
    }
    cudaCheck(cudaFree(flush));
    cudaCheck(cudaFree(b.x)); cudaCheck(cudaFree(b.amax)); cudaCheck(cudaFree(b.s_dec));
    cudaCheck(cudaFree(b.q_row)); cudaCheck(cudaFree(b.q_col)); cudaCheck(cudaFree(b.s_row)); cudaCheck(cudaFree(b.s_col));
    if (failures) printf("%d quantizer(s) FAILED the correctness check\n", failures);
    return failures ? 1 : 0;
}
