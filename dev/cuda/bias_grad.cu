/*
Kernel harness for the bias-gradient kernel of core/linear.cuh: the column sums of dout [N, OC] (a linear
layer's bias gradient) at the GPT-2 d24 shapes (N = 32 x 1024, qkv OC = 3072, attproj / fcproj OC = 1024)
and d12 (N = 64 x 1024, OC = 2304 and 768). (The fc bias gradient comes from the fcproj Dgrad's epilogue,
kernels/sm90_bf16_gemm_gelu.cuh.) test/gpu/test_layers.cu (test_linear) tests the values; here two runs
must give the same bits.

Compile and run:
  make build/dev/bias_grad && ./build/dev/bias_grad

Bytes counted: reads dout (2*N*OC). Both kernels (partial sums and their finish) are timed together.
Timing: median of 30 runs, each after the L2 is flushed (dev/cuda/layer_bench.cuh).
*/
#include <string.h>
#include <string>
#include "dev/cuda/layer_bench.cuh"
#include "kernels/bias_grad.cuh"

int main(void) {
    const int reps = 30;
    const int shapes[][2] = {{32768, 3072}, {32768, 1024}, {65536, 2304}, {65536, 768}};  // N, OC
    std::vector<std::string> summary;
    printf("%-44s %13s %13s %13s\n", "kernel", "time", "bytes", "bandwidth");
    for (const auto &shape : shapes) {
        const int N = shape[0], OC = shape[1];
        const size_t n = (size_t)N * OC;
        bf16 *dout = bench_alloc_random<bf16>(n, 11, 0.0f, 1.0f);
        float *dbias, *partials;
        cudaCheck(cudaMalloc(&dbias, OC * sizeof(float)));
        cudaCheck(cudaMalloc(&partials, (size_t)BIAS_GRAD_MAX_CHUNKS * OC * sizeof(float)));
        const double bytes = 2.0 * n;
        printf("--- N=%d OC=%d column sums\n", N, OC);
        std::vector<float> ref(OC), got(OC);
        for (int run = 0; run < 2; run++) {
            cudaCheck(cudaMemset(dbias, 0xFF, OC * sizeof(float)));  // NaN: written over, not read
            bias_grad(dbias, partials, dout, N, OC, false, 0);
            cudaCheck(cudaMemcpy(run == 0 ? ref.data() : got.data(), dbias, OC * sizeof(float), cudaMemcpyDeviceToHost));
        }
        if (memcmp(ref.data(), got.data(), OC * sizeof(float)) != 0) {
            fprintf(stderr, "error: bias_grad not deterministic (N=%d OC=%d)\n", N, OC);
            return 1;
        }
        const float us = bench_median_us(reps, [] {}, [&] { bias_grad(dbias, partials, dout, N, OC, false, 0); });
        bench_report("bias grad", us, bytes);
        char line[160];
        snprintf(line, sizeof(line), "N=%-6d OC=%-5d %-24s %8.1f us %6.0f GB/s", N, OC, "bias grad", us, bytes / (us * 1e-6) / 1e9);
        summary.push_back(line);
        cudaCheck(cudaFree(dout)); cudaCheck(cudaFree(dbias)); cudaCheck(cudaFree(partials));
    }
    printf("\nbias gradient summary\n");
    for (const std::string &line : summary) printf("%s\n", line.c_str());
    return 0;
}
