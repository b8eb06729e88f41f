/*
Kernel harness for causal flash attention (kernels/attention.cuh): checks forward and backward against the
CPU reference at a small size, then times them at the benchmark shapes for several tile configurations.

Compile and run:
  make build/dev/attention && ./build/dev/attention          # every configuration
  ./build/dev/attention 1                                    # configuration 1 only (0 = the library default)

Timing: median of REPS runs, each after a 256 MiB memset that flushes the L2, between CUDA events.
FLOPs counted for causal attention: forward 2*2*B*NH*T*T*HS/2, backward 2.5x forward (the FLOPs that
FlashAttention's benchmarks count, so that TFLOP/s compare with PyTorch's dev/bench/bench_attention.py; our
backward recomputes S and dP a second time in its dQ pass, which this count leaves out).
*/
#include <algorithm>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <vector>
#include "kernels/attention.cuh"
#include "test/reference/attention_cpu.h"

// Tile configurations under test; 0 is the library's default (AttentionConfig<HS>).
template <int W, int BC, int DW, int BQ, int QW, int BK>
struct TileConfig {
    static constexpr int FWD_WARPS = W, FWD_BC = BC, DKDV_WARPS = DW, DKDV_BQ = BQ, DQ_WARPS = QW, DQ_BK = BK;
};
typedef TileConfig<8, 64, 8, 32, 8, 64> Config8Warps;      // 1: 128-row blocks everywhere
typedef TileConfig<4, 128, 4, 64, 4, 128> ConfigLongTiles; // 2: 128-long streamed tiles (hs 64 only)
static const char *CONFIG_NAMES[] = {"default", "8 warps", "long tiles"};
static const int NUM_CONFIGS = 3;

template <int HS>
static void run_config(int config, bf16 *dqkv, float *delta, bf16 *out, float *lse, const bf16 *dout, const bf16 *qkv, int B, int T, int NH,
                       bool forward) {
    if (config == 0) {
        if (forward) attention_forward_hs<HS>(out, lse, qkv, B, T, NH, 0);
        else attention_backward_hs<HS>(dqkv, delta, dout, qkv, out, lse, B, T, NH, 0);
    } else if (config == 1) {
        if (forward) attention_forward_hs<HS, Config8Warps>(out, lse, qkv, B, T, NH, 0);
        else attention_backward_hs<HS, Config8Warps>(dqkv, delta, dout, qkv, out, lse, B, T, NH, 0);
    } else {
        shapeCheck(HS == 64, "configuration %d is for HS=64 only", config);
        if (forward) attention_forward_hs<64, ConfigLongTiles>(out, lse, qkv, B, T, NH, 0);
        else attention_backward_hs<64, ConfigLongTiles>(dqkv, delta, dout, qkv, out, lse, B, T, NH, 0);
    }
}

static void run(int config, int HS, bf16 *dqkv, float *delta, bf16 *out, float *lse, const bf16 *dout, const bf16 *qkv, int B, int T, int NH,
                bool forward) {
    if (HS == 64) run_config<64>(config, dqkv, delta, out, lse, dout, qkv, B, T, NH, forward);
    else run_config<128>(config, dqkv, delta, out, lse, dout, qkv, B, T, NH, forward);
}

static float random_normal(uint64_t *state) {
    // two xorshift draws through Box-Muller
    double u[2];
    for (int i = 0; i < 2; i++) {
        *state ^= *state >> 12; *state ^= *state << 25; *state ^= *state >> 27;
        u[i] = (((*state * 2685821657736338717ull) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    }
    return (float)(sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]));
}

struct Buffers {
    bf16 *qkv, *dqkv, *out, *dout;
    float *lse, *delta;
};
static Buffers alloc_random(int B, int T, int NH, int HS, std::vector<float> *qkv_host, std::vector<float> *dout_host) {
    size_t n_qkv = (size_t)B * T * 3 * NH * HS, n_out = (size_t)B * T * NH * HS;
    Buffers d;
    cudaCheck(cudaMalloc(&d.qkv, n_qkv * sizeof(bf16)));
    cudaCheck(cudaMalloc(&d.dqkv, n_qkv * sizeof(bf16)));
    cudaCheck(cudaMalloc(&d.out, n_out * sizeof(bf16)));
    cudaCheck(cudaMalloc(&d.dout, n_out * sizeof(bf16)));
    cudaCheck(cudaMalloc(&d.lse, (size_t)B * NH * T * sizeof(float)));
    cudaCheck(cudaMalloc(&d.delta, (size_t)B * NH * T * sizeof(float)));
    uint64_t state = 0x1234567887654321ull ^ ((uint64_t)T << 20) ^ (uint64_t)HS;
    std::vector<bf16> h(n_qkv);
    for (size_t i = 0; i < n_qkv; i++) h[i] = __float2bfloat16(random_normal(&state));
    if (qkv_host) { qkv_host->resize(n_qkv); for (size_t i = 0; i < n_qkv; i++) (*qkv_host)[i] = __bfloat162float(h[i]); }
    cudaCheck(cudaMemcpy(d.qkv, h.data(), n_qkv * sizeof(bf16), cudaMemcpyHostToDevice));
    for (size_t i = 0; i < n_out; i++) h[i] = __float2bfloat16(random_normal(&state));
    if (dout_host) { dout_host->resize(n_out); for (size_t i = 0; i < n_out; i++) (*dout_host)[i] = __bfloat162float(h[i]); }
    cudaCheck(cudaMemcpy(d.dout, h.data(), n_out * sizeof(bf16), cudaMemcpyHostToDevice));
    return d;
}
static void free_buffers(Buffers d) {
    cudaCheck(cudaFree(d.qkv)); cudaCheck(cudaFree(d.dqkv)); cudaCheck(cudaFree(d.out));
    cudaCheck(cudaFree(d.dout)); cudaCheck(cudaFree(d.lse)); cudaCheck(cudaFree(d.delta));
}

// Largest |gpu - ref| over max |ref| for `n` bf16 values read from the device at `src` with a stride.
static double max_rel_error(const bf16 *src, const float *ref, size_t n) {
    std::vector<bf16> h(n);
    cudaCheck(cudaMemcpy(h.data(), src, n * sizeof(bf16), cudaMemcpyDeviceToHost));
    double err = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)__bfloat162float(h[i]) - ref[i]);
        if (!(d <= err)) err = d;   // NaN propagates
        mx = fmax(mx, fabs(ref[i]));
    }
    return err / mx;
}

// Checks every configuration at one small shape; returns 0 when all are within 8 bf16 ulps of max|ref|.
static int check(int config, int HS) {
    const int B = 2, T = 257, NH = 3;
    std::vector<float> qkv, dout;
    Buffers d = alloc_random(B, T, NH, HS, &qkv, &dout);
    std::vector<float> r_out((size_t)B * T * NH * HS), r_lse((size_t)B * NH * T), r_dqkv(qkv.size());
    attention_forward_cpu(r_out.data(), r_lse.data(), qkv.data(), B, T, NH, HS);
    attention_backward_cpu(r_dqkv.data(), dout.data(), qkv.data(), B, T, NH, HS);
    run(config, HS, d.dqkv, d.delta, d.out, d.lse, d.dout, d.qkv, B, T, NH, true);
    run(config, HS, d.dqkv, d.delta, d.out, d.lse, d.dout, d.qkv, B, T, NH, false);
    cudaCheck(cudaDeviceSynchronize());
    double e_out = max_rel_error(d.out, r_out.data(), r_out.size());
    double e_dqkv = max_rel_error(d.dqkv, r_dqkv.data(), r_dqkv.size());
    bool ok = e_out < 8.0 / 256 && e_dqkv < 8.0 / 256;
    printf("check config %d (%s) HS=%d B=%d T=%d NH=%d: out max err %.2e, dqkv max err %.2e (of max|ref|) %s\n", config,
           CONFIG_NAMES[config], HS, B, T, NH, e_out, e_dqkv, ok ? "ok" : "MISMATCH");
    free_buffers(d);
    return ok ? 0 : 1;
}

// Median milliseconds of `reps` runs of forward or backward, each after an L2 flush.
static float time_ms(int config, int HS, Buffers d, int B, int T, int NH, bool forward, void *flush, size_t flush_bytes, int reps) {
    cudaEvent_t start, stop;
    cudaCheck(cudaEventCreate(&start));
    cudaCheck(cudaEventCreate(&stop));
    std::vector<float> ms(reps);
    for (int i = -2; i < reps; i++) {   // two warm-up runs
        cudaCheck(cudaMemsetAsync(flush, i & 0xFF, flush_bytes, 0));
        cudaCheck(cudaEventRecord(start, 0));
        run(config, HS, d.dqkv, d.delta, d.out, d.lse, d.dout, d.qkv, B, T, NH, forward);
        cudaCheck(cudaEventRecord(stop, 0));
        cudaCheck(cudaEventSynchronize(stop));
        if (i >= 0) cudaCheck(cudaEventElapsedTime(&ms[i], start, stop));
    }
    cudaCheck(cudaEventDestroy(start));
    cudaCheck(cudaEventDestroy(stop));
    std::sort(ms.begin(), ms.end());
    return ms[reps / 2];
}

int main(int argc, char **argv) {
    int only = argc > 1 ? atoi(argv[1]) : -1;
    if (only >= NUM_CONFIGS) { fprintf(stderr, "error: configuration %d does not exist (0..%d)\n", only, NUM_CONFIGS - 1); return 1; }
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);

    int failures = 0;
    for (int c = 0; c < NUM_CONFIGS; c++) {
        if (only >= 0 && c != only) continue;
        failures += check(c, 64);
        if (c != 2) failures += check(c, 128);
    }

    const size_t flush_bytes = 256ull << 20;
    void *flush;
    cudaCheck(cudaMalloc(&flush, flush_bytes));
    const int shapes[][4] = {{8, 1024, 12, 64}, {2, 4096, 12, 64}, {8, 1024, 16, 128}, {2, 4096, 16, 128}};   // B, T, NH, HS
    const int reps = 20;
    printf("%-8s %-22s %10s %8s %10s %8s %10s %8s\n", "config", "B,T,NH,HS", "fwd ms", "TFLOP/s", "bwd ms", "TFLOP/s", "f+b ms", "TFLOP/s");
    for (int s = 0; s < 4; s++) {
        const int B = shapes[s][0], T = shapes[s][1], NH = shapes[s][2], HS = shapes[s][3];
        Buffers d = alloc_random(B, T, NH, HS, NULL, NULL);
        double fwd_flops = 4.0 * B * NH * (double)T * T * HS / 2, bwd_flops = 2.5 * fwd_flops;
        for (int c = 0; c < NUM_CONFIGS; c++) {
            if ((only >= 0 && c != only) || (c == 2 && HS != 64)) continue;
            float f = time_ms(c, HS, d, B, T, NH, true, flush, flush_bytes, reps);
            float b = time_ms(c, HS, d, B, T, NH, false, flush, flush_bytes, reps);
            char shape[64];
            snprintf(shape, sizeof(shape), "%d,%d,%d,%d", B, T, NH, HS);
            printf("%-8d %-22s %10.3f %8.1f %10.3f %8.1f %10.3f %8.1f\n", c, shape, f, fwd_flops / f * 1e-9, b, bwd_flops / b * 1e-9, f + b,
                   (fwd_flops + bwd_flops) / (f + b) * 1e-9);
        }
        free_buffers(d);
    }
    cudaCheck(cudaFree(flush));
    return failures ? 1 : 0;
}
