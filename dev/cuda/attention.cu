/*
Kernel harness for causal flash attention (kernels/attention.cuh): checks forward and backward against the
CPU reference at a small size (and the qkv bias gradient that the backward sums on the way against the
column sums of its dqkv), then times them at the benchmark shapes for several tile configurations
(VARIANTS): each kernel (the dQ kernel also computes delta for the dK/dV kernel), forward, backward, their
sum, and the backward with the qkv bias gradient ("bwd+bias": column sums in dK/dV and dQ, plus the finish kernel),
and its pieces: dK/dV and dQ with their column sums ("dkdv+s", "dq+s") and the finish kernel alone.

Compile and run:
  make build/dev/attention && ./build/dev/attention          # every variant
  ./build/dev/attention 1                                    # variant 1 only (see VARIANTS)

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

// Tile configurations under test: (MT, warps, tile length) for forward, dK/dV and dQ; the cp.async stages
// of the streamed tiles and whether the products run as warpgroup wgmma; for the backward also the A
// operands held in registers.
template <int FM, int FW, int FBC, int FS, int FG, int FB, int FL, int KM, int KW, int KBQ, int KS, int KR, int KG, int QM, int QW, int QBK, int QS, int QR, int QG,
          int KL, int QL>
struct TileConfig {
    static constexpr int FWD_MT = FM, FWD_WARPS = FW, FWD_BC = FBC, FWD_STAGES = FS, FWD_MIN_BLOCKS = FB, FWD_GROUP_MB = FL;
    static constexpr bool FWD_WGMMA = FG != 0;
    static constexpr int DKDV_MT = KM, DKDV_WARPS = KW, DKDV_BQ = KBQ, DKDV_STAGES = KS, DKDV_REG_AS = KR;
    static constexpr bool DKDV_WGMMA = KG != 0;
    static constexpr int DKDV_GROUP_MB = KL;
    static constexpr int DQ_MT = QM, DQ_WARPS = QW, DQ_BK = QBK, DQ_STAGES = QS, DQ_REG_AS = QR;
    static constexpr bool DQ_WGMMA = QG != 0;
    static constexpr int DQ_GROUP_MB = QL;
};
typedef void (*ForwardFn)(bf16 *, float *, const bf16 *, int, int, int, cudaStream_t);
typedef void (*DkdvFn)(bf16 *, float *, const float *, const bf16 *, const bf16 *, const float *, int, int, int, cudaStream_t);
typedef void (*DqFn)(bf16 *, float *, float *, const bf16 *, const bf16 *, const bf16 *, const float *, int, int, int, cudaStream_t);
struct Variant {
    int HS;
    const char *name;
    ForwardFn fwd;
    DkdvFn dkdv;
    DqFn dq;
};
#define VARIANT(HS, FM, FW, FBC, FS, FG, FB, FL, KM, KW, KBQ, KS, KR, KG, QM, QW, QBK, QS, QR, QG, KL, QL)                   \
    {HS, "f" #FM "/" #FW "/" #FBC "/" #FS "/" #FG "/" #FB "/" #FL " k" #KM "/" #KW "/" #KBQ "/" #KS "/" #KR "/" #KG "/" #KL " q" #QM "/" #QW "/" #QBK "/" #QS "/" #QR "/" #QG "/" #QL, \
     attention_forward_hs<HS, TileConfig<FM, FW, FBC, FS, FG, FB, FL, KM, KW, KBQ, KS, KR, KG, QM, QW, QBK, QS, QR, QG, KL, QL>>,          \
     attention_backward_dkdv_hs<HS, TileConfig<FM, FW, FBC, FS, FG, FB, FL, KM, KW, KBQ, KS, KR, KG, QM, QW, QBK, QS, QR, QG, KL, QL>>,    \
     attention_backward_dq_hs<HS, TileConfig<FM, FW, FBC, FS, FG, FB, FL, KM, KW, KBQ, KS, KR, KG, QM, QW, QBK, QS, QR, QG, KL, QL>>}
// Variant 0 of each head size is the library default (AttentionConfig<HS>), the others alternatives.
// Names read f<MT>/<warps>/<key tile>/<stages>/<wgmma>/<blocks per SM>/<head group MB>
// k<MT>/<warps>/<query tile>/<stages>/<A operands in registers>/<wgmma>/<head group MB>
// q<MT>/<warps>/<key tile>/<stages>/<A operands in registers>/<wgmma>/<head group MB>.
static const Variant VARIANTS[] = {
    {64, "default", attention_forward_hs<64>, attention_backward_dkdv_hs<64>, attention_backward_dq_hs<64>},
    VARIANT(64, 1, 8, 64, 5, 1, 2, 16, 1, 4, 64, 4, 2, 1, 1, 8, 64, 4, 2, 1, 8, 8),   // dK/dV 1 warpgroup per block
    VARIANT(64, 1, 8, 64, 5, 0, 2, 16, 1, 8, 64, 4, 2, 0, 1, 8, 64, 4, 2, 0, 8, 8),   // the default's tiles with mma.sync (sm_100a builds)
    VARIANT(64, 1, 8, 64, 5, 1, 2, 16, 1, 8, 64, 5, 2, 1, 1, 8, 64, 4, 2, 1, 8, 8),   // dK/dV 5 stages
    VARIANT(64, 1, 8, 64, 5, 1, 2, 16, 1, 8, 64, 3, 2, 1, 1, 8, 64, 4, 2, 1, 8, 8),   // dK/dV 3 stages (1 tile ahead)
    {128, "default", attention_forward_hs<128>, attention_backward_dkdv_hs<128>, attention_backward_dq_hs<128>},
    VARIANT(128, 2, 4, 32, 2, 0, 1, 0, 1, 8, 32, 2, 1, 0, 2, 4, 32, 2, 0, 0, 0, 0),   // the default tiles, all heads at once
    VARIANT(128, 2, 4, 32, 2, 0, 1, 16, 1, 8, 32, 2, 1, 0, 2, 4, 32, 2, 0, 0, 16, 16), // the default tiles, 16 MB head groups everywhere
};
static const int NUM_VARIANTS = (int)(sizeof(VARIANTS) / sizeof(VARIANTS[0]));

// Which part of the computation a run performs (PART_DKDV reads the delta that the last PART_DQ left).
// PART_BACKWARD_BIAS is the backward that also sums the qkv bias gradient (as the model runs it); the
// PART_*_SUMS parts are its dK/dV and dQ kernels with their column sums, PART_BIAS_FINISH its last kernel.
enum Part { PART_FORWARD, PART_DQ, PART_DKDV, PART_BACKWARD, PART_BACKWARD_BIAS, PART_DQ_SUMS, PART_DKDV_SUMS, PART_BIAS_FINISH };

struct Buffers {
    bf16 *qkv, *dqkv, *out, *dout;
    float *lse, *delta, *dbias, *bias_partials;
};

static void run(const Variant &v, Part part, const Buffers &d, int B, int T, int NH) {
    if (part == PART_FORWARD) v.fwd(d.out, d.lse, d.qkv, B, T, NH, 0);
    const bool bias = part == PART_BACKWARD_BIAS || part == PART_DKDV_SUMS || part == PART_DQ_SUMS;
    float *partials = bias ? d.bias_partials : NULL;
    if (part == PART_DQ || part == PART_DQ_SUMS || part == PART_BACKWARD || part == PART_BACKWARD_BIAS)
        v.dq(d.dqkv, partials, d.delta, d.dout, d.qkv, d.out, d.lse, B, T, NH, 0);
    if (part == PART_DKDV || part == PART_DKDV_SUMS || part == PART_BACKWARD || part == PART_BACKWARD_BIAS)
        v.dkdv(d.dqkv, partials, d.delta, d.dout, d.qkv, d.lse, B, T, NH, 0);
    if (part == PART_BACKWARD_BIAS || part == PART_BIAS_FINISH) column_partials_add(d.dbias, d.bias_partials, attention_bias_partial_rows(B, T), 3 * NH * v.HS, true, 0);
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

static Buffers alloc_random(int B, int T, int NH, int HS, std::vector<float> *qkv_host, std::vector<float> *dout_host) {
    size_t n_qkv = (size_t)B * T * 3 * NH * HS, n_out = (size_t)B * T * NH * HS;
    Buffers d;
    cudaCheck(cudaMalloc(&d.qkv, n_qkv * sizeof(bf16)));
    cudaCheck(cudaMalloc(&d.dqkv, n_qkv * sizeof(bf16)));
    cudaCheck(cudaMalloc(&d.out, n_out * sizeof(bf16)));
    cudaCheck(cudaMalloc(&d.dout, n_out * sizeof(bf16)));
    cudaCheck(cudaMalloc(&d.lse, (size_t)B * NH * T * sizeof(float)));
    cudaCheck(cudaMalloc(&d.delta, (size_t)B * NH * T * sizeof(float)));
    cudaCheck(cudaMalloc(&d.dbias, (size_t)3 * NH * HS * sizeof(float)));
    cudaCheck(cudaMemset(d.dbias, 0, (size_t)3 * NH * HS * sizeof(float)));
    cudaCheck(cudaMalloc(&d.bias_partials, attention_backward_bias_scratch_floats(B, T, NH, HS) * sizeof(float)));
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
    cudaCheck(cudaFree(d.dbias)); cudaCheck(cudaFree(d.bias_partials));
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

// Checks a variant at one small shape; returns 0 when out and dqkv are within 8 bf16 ulps of max|ref| and
// the qkv bias gradient is within 1e-5 (fp32 reassociation) of sum|x| of each column sum of the GPU's dqkv.
static int check(const Variant &v) {
    const int HS = v.HS;
    const int B = 2, T = 257, NH = 3;
    std::vector<float> qkv, dout;
    Buffers d = alloc_random(B, T, NH, HS, &qkv, &dout);
    std::vector<float> r_out((size_t)B * T * NH * HS), r_lse((size_t)B * NH * T), r_dqkv(qkv.size());
    attention_forward_cpu(r_out.data(), r_lse.data(), qkv.data(), B, T, NH, HS);
    attention_backward_cpu(r_dqkv.data(), dout.data(), qkv.data(), B, T, NH, HS);
    cudaCheck(cudaMemset(d.out, 0xFF, r_out.size() * sizeof(bf16)));   // NaN poison: unwritten values fail
    cudaCheck(cudaMemset(d.dqkv, 0xFF, r_dqkv.size() * sizeof(bf16)));
    run(v, PART_FORWARD, d, B, T, NH);
    run(v, PART_BACKWARD_BIAS, d, B, T, NH);
    cudaCheck(cudaDeviceSynchronize());
    double e_out = max_rel_error(d.out, r_out.data(), r_out.size());
    double e_dqkv = max_rel_error(d.dqkv, r_dqkv.data(), r_dqkv.size());
    const int nb = 3 * NH * HS;
    std::vector<bf16> g(r_dqkv.size());
    std::vector<float> dbias(nb);
    cudaCheck(cudaMemcpy(g.data(), d.dqkv, g.size() * sizeof(bf16), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(dbias.data(), d.dbias, nb * sizeof(float), cudaMemcpyDeviceToHost));
    double e_bias = 0;
    for (int c = 0; c < nb; c++) {
        double sum = 0, sum_abs = 0;
        for (long n = 0; n < (long)B * T; n++) {
            sum += __bfloat162float(g[n * nb + c]);
            sum_abs += fabs(__bfloat162float(g[n * nb + c]));
        }
        double e = sum_abs > 0 ? fabs(dbias[c] - sum) / sum_abs : fabs(dbias[c]);
        if (!(e <= e_bias)) e_bias = e;   // NaN propagates
    }
    bool ok = e_out < 8.0 / 256 && e_dqkv < 8.0 / 256 && e_bias < 1e-5;
    printf("check HS=%d %-41s B=%d T=%d NH=%d: out max err %.2e, dqkv max err %.2e (of max|ref|), dbias err %.1e (of sum|x|) %s\n", HS, v.name,
           B, T, NH, e_out, e_dqkv, e_bias, ok ? "ok" : "MISMATCH");
    free_buffers(d);
    return ok ? 0 : 1;
}

// Median milliseconds of `reps` runs of one part, each after an L2 flush.
static float time_ms(const Variant &v, Part part, Buffers d, int B, int T, int NH, void *flush, size_t flush_bytes, int reps) {
    cudaEvent_t start, stop;
    cudaCheck(cudaEventCreate(&start));
    cudaCheck(cudaEventCreate(&stop));
    std::vector<float> ms(reps);
    for (int i = -2; i < reps; i++) {   // two warm-up runs
        cudaCheck(cudaMemsetAsync(flush, i & 0xFF, flush_bytes, 0));
        cudaCheck(cudaEventRecord(start, 0));
        run(v, part, d, B, T, NH);
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
    if (only >= NUM_VARIANTS) { fprintf(stderr, "error: variant %d does not exist (0..%d)\n", only, NUM_VARIANTS - 1); return 1; }
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);

    int failures = 0;
    for (int i = 0; i < NUM_VARIANTS; i++) {
        if (only < 0 || i == only) failures += check(VARIANTS[i]);
    }

    const size_t flush_bytes = 256ull << 20;
    void *flush;
    cudaCheck(cudaMalloc(&flush, flush_bytes));
    // B, T, NH, HS: GPT-2 d12's attention (B=8 of its 64), long context, GPT-2 d24's (B=32, NH=16), head size 128
    const int shapes[][4] = {{8, 1024, 12, 64}, {2, 4096, 12, 64}, {32, 1024, 16, 64}, {8, 1024, 16, 128}, {2, 4096, 16, 128}};
    const int nshapes = (int)(sizeof(shapes) / sizeof(shapes[0]));
    const int reps = 20;
    printf("%-3s %-41s %-16s %8s %7s %8s %8s %8s %7s %8s %7s %8s %8s %8s %8s\n", "var", "tiles", "B,T,NH,HS", "fwd ms", "TFLOP/s", "dq+delta",
           "dkdv", "bwd ms", "TFLOP/s", "f+b ms", "TFLOP/s", "bwd+bias", "dq+s", "dkdv+s", "finish");
    for (int s = 0; s < nshapes; s++) {
        const int B = shapes[s][0], T = shapes[s][1], NH = shapes[s][2], HS = shapes[s][3];
        Buffers d = alloc_random(B, T, NH, HS, NULL, NULL);
        double fwd_flops = 4.0 * B * NH * (double)T * T * HS / 2, bwd_flops = 2.5 * fwd_flops;
        for (int i = 0; i < NUM_VARIANTS; i++) {
            const Variant &v = VARIANTS[i];
            if ((only >= 0 && i != only) || v.HS != HS) continue;
            float f = time_ms(v, PART_FORWARD, d, B, T, NH, flush, flush_bytes, reps);
            float q = time_ms(v, PART_DQ, d, B, T, NH, flush, flush_bytes, reps);
            float kv = time_ms(v, PART_DKDV, d, B, T, NH, flush, flush_bytes, reps);
            float b = time_ms(v, PART_BACKWARD, d, B, T, NH, flush, flush_bytes, reps);
            float bb = time_ms(v, PART_BACKWARD_BIAS, d, B, T, NH, flush, flush_bytes, reps);
            float qs = time_ms(v, PART_DQ_SUMS, d, B, T, NH, flush, flush_bytes, reps);
            float kvs = time_ms(v, PART_DKDV_SUMS, d, B, T, NH, flush, flush_bytes, reps);
            float fin = time_ms(v, PART_BIAS_FINISH, d, B, T, NH, flush, flush_bytes, reps);
            char shape[64];
            snprintf(shape, sizeof(shape), "%d,%d,%d,%d", B, T, NH, HS);
            printf("%-3d %-41s %-16s %8.3f %7.1f %8.3f %8.3f %8.3f %7.1f %8.3f %7.1f %8.3f %8.3f %8.3f %8.3f\n", i, v.name, shape, f, fwd_flops / f * 1e-9, q,
                   kv, b, bwd_flops / b * 1e-9, f + b, (fwd_flops + bwd_flops) / (f + b) * 1e-9, bb, qs, kvs, fin);
        }
        free_buffers(d);
    }
    cudaCheck(cudaFree(flush));
    return failures ? 1 : 0;
}
