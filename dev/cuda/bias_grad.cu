/*
Kernel harness for the bias-gradient kernels of core/linear.cuh: the column sums of dout [N, OC] (a
linear layer's bias gradient), and GELU's backward pass dout <- bf16(dout * gelu'(pre_gelu)) in place
with the column sums of its result (the fc bias gradient), at the GPT-2 d24 shapes (N = 32 x 1024,
fc OC = 4096, qkv OC = 3072) and d12 (N = 64 x 1024, OC = 3072 and 2304). test/gpu/test_layers.cu
(test_linear) tests the values; here two runs must give the same bits (dout and dbias).

Compile and run:
  make build/dev/bias_grad && ./build/dev/bias_grad

Bytes counted: GELU pass: reads dout and pre_gelu, writes dout (6*N*OC); plain column sums: reads dout
(2*N*OC). Both kernels (partial sums and their finish) are timed together. Timing: median of 30 runs,
each after dout is restored from a copy and the L2 is flushed (dev/cuda/layer_bench.cuh).
*/
#include <string.h>
#include <string>
#include "dev/cuda/layer_bench.cuh"
#include "core/linear.cuh"

int main(void) {
    const int reps = 30;
    const int shapes[][3] = {{32768, 4096, 1}, {32768, 3072, 0}, {65536, 3072, 1}, {65536, 2304, 0}};  // N, OC, GELU
    std::vector<std::string> summary;
    printf("%-44s %13s %13s %13s\n", "kernel", "time", "bytes", "bandwidth");
    for (const auto &shape : shapes) {
        const int N = shape[0], OC = shape[1];
        const bool gelu = shape[2] != 0;
        const size_t n = (size_t)N * OC;
        bf16 *pristine = bench_alloc_random<bf16>(n, 11, 0.0f, 1.0f), *pre = bench_alloc_random<bf16>(n, 12, 0.0f, 3.0f), *dout;
        float *dbias, *partials;
        cudaCheck(cudaMalloc(&dout, n * sizeof(bf16)));
        cudaCheck(cudaMalloc(&dbias, OC * sizeof(float)));
        cudaCheck(cudaMalloc(&partials, (size_t)BIAS_GRAD_MAX_CHUNKS * OC * sizeof(float)));
        const bf16 *pre_gelu = gelu ? pre : NULL;
        const double bytes = (gelu ? 6.0 : 2.0) * n;
        auto restore = [&] { cudaCheck(cudaMemcpyAsync(dout, pristine, n * sizeof(bf16), cudaMemcpyDeviceToDevice, 0)); };
        printf("--- N=%d OC=%d %s\n", N, OC, gelu ? "GELU backward + column sums" : "column sums");
        std::vector<unsigned char> ref;
        for (int run = 0; run < 2; run++) {
            restore();
            cudaCheck(cudaMemset(dbias, 0xFF, OC * sizeof(float)));  // NaN: written over, not read
            bias_grad(dbias, partials, dout, pre_gelu, N, OC, false, 0);
            std::vector<unsigned char> got(OC * sizeof(float) + (gelu ? n * sizeof(bf16) : 0));
            cudaCheck(cudaMemcpy(got.data(), dbias, OC * sizeof(float), cudaMemcpyDeviceToHost));
            if (gelu) cudaCheck(cudaMemcpy(got.data() + OC * sizeof(float), dout, n * sizeof(bf16), cudaMemcpyDeviceToHost));
            if (run == 0) ref = got;
            else if (got != ref) {
                fprintf(stderr, "error: bias_grad not deterministic (N=%d OC=%d)\n", N, OC);
                return 1;
            }
        }
        const float us = bench_median_us(reps, restore, [&] { bias_grad(dbias, partials, dout, pre_gelu, N, OC, false, 0); });
        const char *name = gelu ? "gelu bwd + bias grad" : "bias grad";
        bench_report(name, us, bytes);
        char line[160];
        snprintf(line, sizeof(line), "N=%-6d OC=%-5d %-24s %8.1f us %6.0f GB/s", N, OC, name, us, bytes / (us * 1e-6) / 1e9);
        summary.push_back(line);
        cudaCheck(cudaFree(pristine)); cudaCheck(cudaFree(pre)); cudaCheck(cudaFree(dout));
        cudaCheck(cudaFree(dbias)); cudaCheck(cudaFree(partials));
    }
    printf("\nbias gradient summary\n");
    for (const std::string &line : summary) printf("%s\n", line.c_str());
    return 0;
}
