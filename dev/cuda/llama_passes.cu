/*
Kernel harness for Llama's element-wise passes of the first, unfused form (kernels/rope_gqa.cuh,
kernels/swiglu.cuh) at the shapes of l125m (B=64, T=1024: N = 65536, 12 heads, 4 KV heads of 64, F = 2048)
and l1b (B=16, T=1024: 32 heads, 8 KV heads of 64, F = 8192): what they cost per step, the floor a fused
form removes. test/gpu/test_layers.cu (test_rope_gqa, test_swiglu) tests the values.

Compile and run:
  make build/dev/llama_passes && ./build/dev/llama_passes

Bytes counted: each input read once, each output written once (RoPE/GQA forward: the GQA qkv in, the
expanded qkv out; backward: the expanded gradient in, the GQA gradient out; SwiGLU forward: [N, 2F] in,
[N, F] out; backward: [N, F] and [N, 2F] in, [N, 2F] out), plus the cos/sin tables.
Timing: median of 20 runs, each after the L2 is flushed (dev/cuda/layer_bench.cuh).
*/
#include <stdio.h>
#include "dev/cuda/layer_bench.cuh"
#include "kernels/rope_gqa.cuh"
#include "kernels/swiglu.cuh"

int main(void) {
    const int reps = 20;
    struct { const char *name; int B, T, NH, NKV, HS, F, L; } shapes[] = {{"l125m", 64, 1024, 12, 4, 64, 2048, 12},
                                                                         {"l1b", 16, 1024, 32, 8, 64, 8192, 16}};
    printf("%-44s %13s %13s %13s\n", "kernel", "time", "bytes", "bandwidth");
    for (const auto &sh : shapes) {
        const int N = sh.B * sh.T, H = sh.NH + 2 * sh.NKV, half = sh.HS / 2;
        const size_t gqa = (size_t)N * H * sh.HS, mha = (size_t)N * 3 * sh.NH * sh.HS, table = (size_t)sh.T * half;
        bf16 *x = bench_alloc_random<bf16>(gqa, 1, 0.0f, 1.0f), *dy = bench_alloc_random<bf16>(mha, 2, 0.0f, 1.0f);
        bf16 *y, *dx;
        cudaCheck(cudaMalloc(&y, mha * sizeof(bf16)));
        cudaCheck(cudaMalloc(&dx, gqa * sizeof(bf16)));
        float *cos_t = bench_alloc_random<float>(table, 3, 0.0f, 1.0f), *sin_t = bench_alloc_random<float>(table, 4, 0.0f, 1.0f);
        printf("--- %s: N=%d, %d heads, %d KV heads of %d, F=%d (x %d layers per step)\n", sh.name, N, sh.NH, sh.NKV, sh.HS, sh.F, sh.L);
        float us = bench_median_us(reps, [] {}, [&] { rope_gqa_forward(y, x, cos_t, sin_t, sh.B, sh.T, sh.NH, sh.NKV, sh.HS, 0); });
        bench_report("rope_gqa_forward", us, 2.0 * (gqa + mha) + 8.0 * table);
        us = bench_median_us(reps, [] {}, [&] { rope_gqa_backward(dx, dy, cos_t, sin_t, sh.B, sh.T, sh.NH, sh.NKV, sh.HS, 0); });
        bench_report("rope_gqa_backward", us, 2.0 * (gqa + mha) + 8.0 * table);
        const size_t in_n = (size_t)N * 2 * sh.F, out_n = (size_t)N * sh.F;
        bf16 *gu = bench_alloc_random<bf16>(in_n, 5, 0.0f, 2.0f), *dout = bench_alloc_random<bf16>(out_n, 6, 0.0f, 1.0f);
        bf16 *h, *dgu;
        cudaCheck(cudaMalloc(&h, out_n * sizeof(bf16)));
        cudaCheck(cudaMalloc(&dgu, in_n * sizeof(bf16)));
        us = bench_median_us(reps, [] {}, [&] { swiglu_forward(h, gu, N, sh.F, 0); });
        bench_report("swiglu_forward", us, 2.0 * (in_n + out_n));
        us = bench_median_us(reps, [] {}, [&] { swiglu_backward(dgu, dout, gu, N, sh.F, 0); });
        bench_report("swiglu_backward", us, 2.0 * (2 * in_n + out_n));
        void *bufs[] = {x, dy, y, dx, cos_t, sin_t, gu, dout, h, dgu};
        for (void *b : bufs) cudaCheck(cudaFree(b));
    }
    return 0;
}
