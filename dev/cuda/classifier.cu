/*
Kernel harness for kernels/classifier.cuh (fused softmax + cross-entropy + gradient, in place): times
it at the GPT-2 shapes N = B*T = 8 x 1024 and 32 x 1024 rows (d24's batch), V = 50257, Vp = 50304:
the row-in-shared-memory kernel that fused_classifier runs for this Vp, at the library's block size
(928 threads: 7 steps of 8 columns per thread) and at 1024, 768 and 512 threads, and the two-pass kernel
(classifier_l2_kernel: the structure that ran at this Vp until 2026-11-22, now with the same exp2 as the
other; fused_classifier runs it only for Vp > CLASSIFIER_SMEM_MAX_VP).
Correctness is tested in test/gpu/test_layers.cu; here the losses must be finite and every version's
losses must match the library version's within 1e-5 relative.

Compile and run:
  make build/dev/classifier && ./build/dev/classifier

Bytes counted: one read and one write of the BF16 logits, plus targets and losses. Timing: median of
20 runs, each after the logits are restored from a copy and the L2 is flushed (dev/cuda/layer_bench.cuh).
*/
#include <math.h>
#include <string>
#include "dev/cuda/layer_bench.cuh"
#include "kernels/classifier.cuh"

int main(void) {
    const int V = 50257, Vp = 50304, reps = 20;
    const int row_counts[] = {8 * 1024, 32 * 1024};
    std::vector<std::string> summary;
    printf("%-44s %13s %13s %13s\n", "kernel", "time", "bytes", "bandwidth");
    for (int N : row_counts) {
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
        std::vector<float> ref_losses(N), h(N);
        printf("--- N=%d Vp=%d\n", N, Vp);
        const int library = classifier_block_threads(Vp);
        const int threads[] = {library, 1024, 768, 512, library};
        for (int v = 0; v < 5; v++) {
            const bool l2 = (v == 4);
            const float us = bench_median_us(reps, restore, [&] {
                if (l2) {
                    classifier_l2_kernel<<<N, threads[v]>>>(logits, losses, targets, dloss, V, Vp);
                    cudaCheckLaunch();
                } else {
                    fused_classifier_launch_(logits, losses, targets, dloss, N, V, Vp, threads[v], 0);
                }
            });
            char name[96];
            snprintf(name, sizeof(name), "%s (%d threads)%s", l2 ? "classifier_l2_kernel" : "classifier_smem_kernel", threads[v],
                     v == 0 ? " = fused_classifier" : "");
            bench_report(name, us, bytes);
            char line[160];
            snprintf(line, sizeof(line), "N=%-6d %-56s %8.1f us %6.0f GB/s", N, name, us, bytes / (us * 1e-6) / 1e9);
            summary.push_back(line);
            cudaCheck(cudaMemcpy(h.data(), losses, N * sizeof(float), cudaMemcpyDeviceToHost));
            double mean = 0.0;
            for (int i = 0; i < N; i++) {
                if (!isfinite(h[i])) { fprintf(stderr, "error: %s: loss[%d] = %g\n", name, i, h[i]); return 1; }
                if (v == 0) ref_losses[i] = h[i];
                else if (fabsf(h[i] - ref_losses[i]) > 1e-5f * fabsf(ref_losses[i])) {
                    fprintf(stderr, "error: %s: loss[%d] = %.7g, library version %.7g\n", name, i, h[i], ref_losses[i]);
                    return 1;
                }
                mean += h[i] / N;
            }
            // logits uniform in [-a, a): E[loss] ~ log(V E[exp(x)]) - E[x] = log(V sinh(a)/a)
            if (v == 0) printf("mean loss %.4f (expected about %.4f)\n", mean, log((double)V * sinh(4.0) / 4.0));
        }
        cudaCheck(cudaFree(pristine)); cudaCheck(cudaFree(logits)); cudaCheck(cudaFree(targets)); cudaCheck(cudaFree(losses));
    }
    printf("\nclassifier summary (bytes = 4*N*Vp + 8*N)\n");
    for (const std::string &line : summary) printf("%s\n", line.c_str());
    return 0;
}
