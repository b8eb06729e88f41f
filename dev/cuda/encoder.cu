/*
Kernel harness for kernels/encoder.cuh: times the embedding forward and backward (position sums, the
token sort and the per-token sums), Vp = 50304, T = 1024, at B = 8 with C = 768 and 1600, and at the
model shapes B = 32, C = 1024 (d24) and B = 64, C = 768 (d12). Token ids are drawn from a skewed
distribution (id = V * u^3), or, given token shards (a file or glob in llm.c format, e.g. tinyshakespeare's
train split), are the data loader's first batch of them: real text repeats a few tokens thousands of times per batch, which is what the
per-token sums must handle (the largest run of equal tokens is printed).
Correctness is tested in test/gpu/test_layers.cu.

Compile and run:
  make build/dev/encoder && ./build/dev/encoder [shard file or glob]

Bytes counted: forward reads the wte rows and wpe rows and writes out (2 bytes each per element);
backward reads dout once and reads and writes the FP32 rows of dwte it touches and all of dwpe.
Timing: median of 50 runs, each after an L2 flush (dev/cuda/layer_bench.cuh).
*/
#include <math.h>
#include "dataloader/dataloader.h"
#include "dev/cuda/layer_bench.cuh"
#include "kernels/encoder.cuh"

// Token ids of a batch: the first batch that the data loader reads from the shards matching `pattern`,
// or the skewed synthetic ids when pattern is NULL.
static std::vector<int> batch_tokens(const char *pattern, int B, int T, int V) {
    std::vector<int> tokens((size_t)B * T);
    if (pattern == NULL) {
        uint64_t state = 12345;
        for (int &token : tokens) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            const double u = (double)(state >> 11) / 9007199254740992.0;
            token = (int)(V * u * u * u);
        }
        return tokens;
    }
    DataLoader dl;
    char err[512];
    if (dataloader_init(&dl, pattern, B, T, 0, 1, V, 0, 0, err, sizeof(err)) != 0 || dataloader_next_batch(&dl, err, sizeof(err)) != 0)
        fatal("%s", err);
    std::copy(dl.inputs, dl.inputs + tokens.size(), tokens.begin());
    dataloader_free(&dl);
    return tokens;
}

int main(int argc, char **argv) {
    const char *token_file = argc > 1 ? argv[1] : NULL;
    const int T = 1024, V = 50257, Vp = 50304, reps = 50;
    const int shapes[][2] = {{8, 768}, {8, 1600}, {32, 1024}, {64, 768}};  // B, C
    printf("tokens: %s\n", token_file ? token_file : "synthetic, id = V * u^3");
    printf("%-44s %13s %13s %13s\n", "kernel", "time", "bytes", "bandwidth");
    for (const auto &shape : shapes) {
        const int B = shape[0], C = shape[1], N = B * T;
        std::vector<int> tokens_host = batch_tokens(token_file, B, T, V);
        std::vector<int> sorted(tokens_host);
        std::sort(sorted.begin(), sorted.end());
        int distinct = 0, longest = 0;
        for (int i = 0, run = 0; i < N; i++) {
            run = (i > 0 && sorted[i] == sorted[i - 1]) ? run + 1 : 1;
            distinct += run == 1;
            longest = std::max(longest, run);
        }
        int *tokens;
        cudaCheck(cudaMalloc(&tokens, N * sizeof(int)));
        cudaCheck(cudaMemcpy(tokens, tokens_host.data(), N * sizeof(int), cudaMemcpyHostToDevice));
        void *scratch;
        cudaCheck(cudaMalloc(&scratch, encoder_backward_scratch_bytes(N, C)));
        printf("B=%d T=%d C=%d: %d tokens, %d distinct, longest run %d\n", B, T, C, N, distinct, longest);
        const size_t act = (size_t)N * C;
        bf16 *wte = bench_alloc_random<bf16>((size_t)Vp * C, 1, 0.0f, 0.1f), *wpe = bench_alloc_random<bf16>((size_t)T * C, 2, 0.0f, 0.1f);
        bf16 *dout = bench_alloc_random<bf16>(act, 3, 0.0f, 1.0f), *out;
        cudaCheck(cudaMalloc(&out, act * sizeof(bf16)));
        float *dwte = bench_alloc_random<float>((size_t)Vp * C, 4, 0.0f, 1.0f), *dwpe = bench_alloc_random<float>((size_t)T * C, 5, 0.0f, 1.0f);
        char name[64];
        float us = bench_median_us(reps, [] {}, [&] { encoder_forward(out, tokens, wte, wpe, B, T, C, 0); });
        snprintf(name, sizeof(name), "encoder_forward B=%d C=%d", B, C);
        bench_report(name, us, 2.0 * ((double)act * 2 + (double)T * C));
        us = bench_median_us(reps, [] {}, [&] { encoder_backward<float>(dwte, dwpe, scratch, dout, tokens, B, T, C, Vp, T, true, 0); });
        snprintf(name, sizeof(name), "encoder_backward B=%d C=%d", B, C);
        bench_report(name, us, 2.0 * act + 8.0 * ((double)distinct * C + (double)T * C));
        cudaCheck(cudaFree(wte)); cudaCheck(cudaFree(wpe)); cudaCheck(cudaFree(dout)); cudaCheck(cudaFree(out));
        cudaCheck(cudaFree(dwte)); cudaCheck(cudaFree(dwpe)); cudaCheck(cudaFree(tokens)); cudaCheck(cudaFree(scratch));
    }
    return 0;
}
