/*
Kernel harness for kernels/classifier.cuh (fused softmax + cross-entropy + gradient, in place): times
it at the GPT-2 shape N = B*T = 8 x 1024 rows, V = 50257, Vp = 50304, for the library's block size
(928 threads: 7 steps of 8 columns per thread) and for 1024 and 512 threads. Correctness is tested in test/gpu/test_layers.cu; here only that the losses are
finite.

Compile and run:
  make build/dev/classifier && ./build/dev/classifier

Bytes counted: one read and one write of the BF16 logits (the second read of a row, in pass 2, is
expected to hit the L2 cache), plus targets and losses. Timing: median of 30 runs, each after the
logits are restored from a copy and the L2 is flushed (dev/cuda/layer_bench.cuh).
*/
#include <math.h>
#include "dev/cuda/layer_bench.cuh"
#include "kernels/classifier.cuh"

int main(void) {
    const int N = 8 * 1024, V = 50257, Vp = 50304, reps = 30;
    const size_t total = (size_t)N * Vp;
    bf16 *pristine = bench_alloc_random<bf16>(total, 7, 0.0f, 4.0f), *logits;
    cudaCheck(cudaMalloc(&logits, total * sizeof(bf16)));
    std::vector<int> targets_host(N);
    for (int i = 0; i < N; i++) targets_host[i] = (int)((1103515245u * (unsigned)i + 12345u) % (unsigned)V);
    int *targets;
    float *losses;
    cudaCheck(cudaMalloc(&targets, N * sizeof(int)));
    cudaCheck(cudaMalloc(&losses, N * sizeof(float)));
    cudaCheck(cudaMemcpy(targets, targets_host.data(), N * sizeof(int), cudaMemcpyHostToDevice));
    const float dloss = 1.0f / N;
    const double bytes = 4.0 * total + 8.0 * N;
    auto restore = [&] { cudaCheck(cudaMemcpyAsync(logits, pristine, total * sizeof(bf16), cudaMemcpyDeviceToDevice, 0)); };

    printf("%-44s %13s %13s %13s\n", "kernel", "time", "bytes", "bandwidth");
    float us = bench_median_us(reps, restore, [&] { fused_classifier(logits, losses, targets, dloss, N, V, Vp, 0); });
    bench_report("fused_classifier (928 threads)", us, bytes);
    const int blocks[] = {1024, 512};
    for (int i = 0; i < 2; i++) {
        us = bench_median_us(reps, restore, [&] {
            classifier_kernel<<<N, blocks[i]>>>(logits, losses, targets, dloss, V, Vp);
            cudaCheckLaunch();
        });
        char name[64];
        snprintf(name, sizeof(name), "classifier_kernel (%d threads)", blocks[i]);
        bench_report(name, us, bytes);
    }
    std::vector<float> h(N);
    cudaCheck(cudaMemcpy(h.data(), losses, N * sizeof(float), cudaMemcpyDeviceToHost));
    double mean = 0.0;
    for (int i = 0; i < N; i++) {
        if (!isfinite(h[i])) { fprintf(stderr, "error: loss[%d] = %g\n", i, h[i]); return 1; }
        mean += h[i] / N;
    }
    // logits uniform in [-a, a): E[loss] ~ log(V E[exp(x)]) - E[x] = log(V sinh(a)/a)
    printf("mean loss %.4f (expected about %.4f)\n", mean, log((double)V * sinh(4.0) / 4.0));
    cudaCheck(cudaFree(pristine)); cudaCheck(cudaFree(logits)); cudaCheck(cudaFree(targets)); cudaCheck(cudaFree(losses));
    return 0;
}
