/*
Kernel harness for kernels/encoder.cuh: times the embedding forward and backward (position sums, the
token sort and the per-token sums) at B = 8, T = 1024, C = 768 and 1600, Vp = 50304, with token ids
drawn from a skewed distribution (id = V * u^3) so that frequent tokens repeat as in real text.
Correctness is tested in test/gpu/test_layers.cu.

Compile and run:
  make build/dev/encoder && ./build/dev/encoder

Bytes counted: forward reads the wte rows and wpe rows and writes out (2 bytes each per element);
backward reads dout once and reads and writes the FP32 rows of dwte it touches and all of dwpe.
Timing: median of 50 runs, each after an L2 flush (dev/cuda/layer_bench.cuh).
*/
#include <math.h>
#include "dev/cuda/layer_bench.cuh"
#include "kernels/encoder.cuh"

int main(void) {
    const int B = 8, T = 1024, N = B * T, V = 50257, Vp = 50304, reps = 50;
    std::vector<int> tokens_host(N);
    uint64_t state = 12345;
    for (int i = 0; i < N; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        const double u = (double)(state >> 11) / 9007199254740992.0;
        tokens_host[i] = (int)(V * u * u * u);
    }
    std::vector<int> sorted(tokens_host);
    std::sort(sorted.begin(), sorted.end());
    const int distinct = (int)(std::unique(sorted.begin(), sorted.end()) - sorted.begin());
    int *tokens;
    cudaCheck(cudaMalloc(&tokens, N * sizeof(int)));
    cudaCheck(cudaMemcpy(tokens, tokens_host.data(), N * sizeof(int), cudaMemcpyHostToDevice));
    void *scratch;
    cudaCheck(cudaMalloc(&scratch, encoder_backward_scratch_bytes(N)));
    printf("%d tokens, %d distinct\n", N, distinct);
    printf("%-44s %13s %13s %13s\n", "kernel", "time", "bytes", "bandwidth");
    const int channels[] = {768, 1600};
    for (int ci = 0; ci < 2; ci++) {
        const int C = channels[ci];
        const size_t act = (size_t)N * C;
        bf16 *wte = bench_alloc_random<bf16>((size_t)Vp * C, 1, 0.0f, 0.1f), *wpe = bench_alloc_random<bf16>((size_t)T * C, 2, 0.0f, 0.1f);
        bf16 *dout = bench_alloc_random<bf16>(act, 3, 0.0f, 1.0f), *out;
        cudaCheck(cudaMalloc(&out, act * sizeof(bf16)));
        float *dwte = bench_alloc_random<float>((size_t)Vp * C, 4, 0.0f, 1.0f), *dwpe = bench_alloc_random<float>((size_t)T * C, 5, 0.0f, 1.0f);
        char name[64];
        float us = bench_median_us(reps, [] {}, [&] { encoder_forward(out, tokens, wte, wpe, B, T, C, 0); });
        snprintf(name, sizeof(name), "encoder_forward C=%d", C);
        bench_report(name, us, 2.0 * ((double)act * 2 + (double)T * C));
        us = bench_median_us(reps, [] {}, [&] { encoder_backward<float>(dwte, dwpe, scratch, dout, tokens, B, T, C, Vp, T, true, 0); });
        snprintf(name, sizeof(name), "encoder_backward C=%d", C);
        bench_report(name, us, 2.0 * act + 8.0 * ((double)distinct * C + (double)T * C));
        cudaCheck(cudaFree(wte)); cudaCheck(cudaFree(wpe)); cudaCheck(cudaFree(dout)); cudaCheck(cudaFree(out));
        cudaCheck(cudaFree(dwte)); cudaCheck(cudaFree(dwpe));
    }
    cudaCheck(cudaFree(tokens)); cudaCheck(cudaFree(scratch));
    return 0;
}
