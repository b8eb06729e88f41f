/*
Kernel harness for kernels/layernorm.cuh: times the LayerNorm forward, the fused residual-add +
LayerNorm forward, and the backward at GPT-2 shapes (N = B*T = 8 x 1024 rows, C = 768 and 1600).
Correctness is tested in test/gpu/test_layers.cu; here only that the outputs are finite.

Compile and run:
  make build/dev/layernorm && ./build/dev/layernorm

Bytes counted (the fewest possible, each tensor once): forward reads x and writes out (2 bytes each per
element) plus mean/rstd; fused forward reads residual and branch, writes residual_out and out; backward
reads dout, x and dinp and writes dinp (dinp accumulates), plus dweight/dbias; its second kernel (the
column sums of the per-block partials) is also timed alone. Timing: median of 50 runs, each after an
L2 flush (dev/cuda/layer_bench.cuh); the forward is also timed after a memset flush, to show what the
write-back of a dirty L2 costs a kernel of this size.
*/
#include <math.h>
#include "dev/cuda/layer_bench.cuh"
#include "kernels/layernorm.cuh"

static void check_finite(const char *what, const bf16 *d, size_t n) {
    std::vector<bf16> h(n);
    cudaCheck(cudaMemcpy(h.data(), d, n * sizeof(bf16), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(__bfloat162float(h[i]))) {
            fprintf(stderr, "error: %s[%zu] is not finite\n", what, i);
            exit(1);
        }
    }
}

int main(void) {
    const int N = 8 * 1024, reps = 50;
    const int channels[] = {768, 1600};
    printf("%-44s %13s %13s %13s\n", "kernel", "time", "bytes", "bandwidth");
    for (int ci = 0; ci < 2; ci++) {
        const int C = channels[ci];
        const size_t act = (size_t)N * C;
        bf16 *x = bench_alloc_random<bf16>(act, 1, 0.2f, 2.0f), *branch = bench_alloc_random<bf16>(act, 2, 0.0f, 1.0f);
        bf16 *dout = bench_alloc_random<bf16>(act, 3, 0.0f, 1.0f), *dinp = bench_alloc_random<bf16>(act, 4, 0.0f, 1.0f);
        bf16 *w = bench_alloc_random<bf16>(C, 5, 1.0f, 0.2f), *b = bench_alloc_random<bf16>(C, 6, 0.0f, 0.2f);
        bf16 *out, *residual;
        float *mean, *rstd, *dw, *db, *scratch;
        cudaCheck(cudaMalloc(&out, act * sizeof(bf16)));
        cudaCheck(cudaMalloc(&residual, act * sizeof(bf16)));
        cudaCheck(cudaMalloc(&mean, N * sizeof(float)));
        cudaCheck(cudaMalloc(&rstd, N * sizeof(float)));
        cudaCheck(cudaMalloc(&dw, C * sizeof(float)));
        cudaCheck(cudaMalloc(&db, C * sizeof(float)));
        cudaCheck(cudaMemset(dw, 0, C * sizeof(float)));
        cudaCheck(cudaMemset(db, 0, C * sizeof(float)));
        cudaCheck(cudaMalloc(&scratch, layernorm_backward_scratch_floats(N, C) * sizeof(float)));
        char name[64];

        float us = bench_median_us(reps, [] {}, [&] { layernorm_forward(out, mean, rstd, x, w, b, N, C, 0); });
        snprintf(name, sizeof(name), "layernorm_forward C=%d", C);
        bench_report(name, us, 4.0 * act + 8.0 * N);
        check_finite("out", out, act);
        us = bench_median_us(reps, [] {}, [&] { layernorm_forward(out, mean, rstd, x, w, b, N, C, 0); }, BENCH_FLUSH_MEMSET);
        snprintf(name, sizeof(name), "  same, after a memset (dirty L2) flush");
        bench_report(name, us, 4.0 * act + 8.0 * N);

        us = bench_median_us(reps, [] {}, [&] {
            fused_residual_layernorm_forward(residual, out, mean, rstd, x, branch, w, b, N, C, 0);
        });
        snprintf(name, sizeof(name), "fused_residual_layernorm_forward C=%d", C);
        bench_report(name, us, 8.0 * act + 8.0 * N);
        check_finite("residual", residual, act);

        // dinp accumulates, so its values drift over the repetitions; the timing does not depend on them
        us = bench_median_us(reps, [] {}, [&] {
            layernorm_backward<float>(dinp, dw, db, scratch, dout, x, w, mean, rstd, N, C, 0);
        });
        snprintf(name, sizeof(name), "layernorm_backward C=%d", C);
        bench_report(name, us, 8.0 * act + 8.0 * N);
        check_finite("dinp", dinp, act);
        int rows_per_block;
        const int partial_rows = layernorm_backward_blocks_(N, &rows_per_block);
        us = bench_median_us(reps, [] {}, [&] {
            layernorm_param_grad_kernel<float><<<ceil_div(2 * C, WARP_SIZE), dim3(WARP_SIZE, LAYERNORM_REDUCE_SLICES)>>>(
                dw, db, scratch, partial_rows, C);
            cudaCheckLaunch();
        });
        snprintf(name, sizeof(name), "  of which layernorm_param_grad_kernel");
        bench_report(name, us, 4.0 * 2 * C * partial_rows);

        cudaCheck(cudaFree(x)); cudaCheck(cudaFree(branch)); cudaCheck(cudaFree(dout)); cudaCheck(cudaFree(dinp));
        cudaCheck(cudaFree(w)); cudaCheck(cudaFree(b)); cudaCheck(cudaFree(out)); cudaCheck(cudaFree(residual));
        cudaCheck(cudaFree(mean)); cudaCheck(cudaFree(rstd)); cudaCheck(cudaFree(dw)); cudaCheck(cudaFree(db));
        cudaCheck(cudaFree(scratch));
    }
    return 0;
}
