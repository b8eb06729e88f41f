/*
Kernel harness for the optimizer kernels, kernels/adamw.cuh and kernels/global_norm.cuh: times the
global gradient norm and one fused AdamW step over all parameters of GPT-2 d12 (124M) and d48 (1.56B),
with FP32 and with BF16 gradients. Correctness is tested in test/gpu/test_layers.cu.

Compile and run:
  make build/dev/adamw && ./build/dev/adamw

Bytes counted per parameter: AdamW reads master, m, v (FP32) and the gradient, writes master, m, v and
the BF16 parameter: 30 bytes with FP32 gradients, 28 with BF16. The norm reads the gradient once.
Timing: median of 20 runs, each after an L2 flush (dev/cuda/layer_bench.cuh).
*/
#include "gpt2_model.h"
#include "dev/cuda/layer_bench.cuh"
#include "kernels/adamw.cuh"
#include "kernels/global_norm.cuh"

template <typename GradT>
static void bench_model(const char *preset, const AdamWPlan *plan, size_t n, float *master, float *m, float *v, bf16 *params,
                        float *norm_scratch, float *norm_out) {
    const int reps = 20;
    GradT *grads = bench_alloc_random<GradT>(n, 11, 0.0f, 1e-2f);
    const char *type = sizeof(GradT) == 4 ? "fp32" : "bf16";
    char name[80];
    float us = bench_median_us(reps, [] {}, [&] { global_norm_squared<GradT>(norm_out, norm_scratch, grads, (long long)n, 0); });
    snprintf(name, sizeof(name), "global_norm_squared %s %s grads", preset, type);
    bench_report(name, us, (double)n * sizeof(GradT));
    int step = 0;
    us = bench_median_us(reps, [] {}, [&] {
        const AdamWStepParams hp = adamw_step_params(3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, ++step, 0.5f);
        adamw_update<GradT>(params, master, m, v, grads, plan, hp, 0);
    });
    snprintf(name, sizeof(name), "adamw_update %s %s grads", preset, type);
    bench_report(name, us, (double)n * (24.0 + sizeof(GradT) + 2.0));
    cudaCheck(cudaFree(grads));
}

int main(void) {
    const char *presets[] = {"d12", "d48"};
    printf("%-44s %13s %13s %13s\n", "kernel", "time", "bytes", "bandwidth");
    for (int p = 0; p < 2; p++) {
        GPT2Config cfg;
        char err[256];
        if (gpt2_config_preset(presets[p], &cfg, err, sizeof(err)) != 0) fatal("%s", err);
        ParamTable table;
        if (gpt2_param_table(&cfg, &table, err, sizeof(err)) != 0) fatal("%s", err);
        size_t sizes[PARAM_TABLE_MAX];
        int decay[PARAM_TABLE_MAX];
        float lr_mult[PARAM_TABLE_MAX];
        for (int i = 0; i < table.count; i++) {
            sizes[i] = table.specs[i].size;
            decay[i] = table.specs[i].decay;
            lr_mult[i] = table.specs[i].lr_mult;
        }
        const size_t n = table.num_parameters;
        AdamWPlan plan;
        adamw_plan_build(&plan, sizes, decay, lr_mult, table.count, 0, n);
        float *master = bench_alloc_random<float>(n, 8, 0.0f, 0.05f), *m = bench_alloc_random<float>(n, 9, 0.0f, 1e-3f);
        float *v = bench_alloc_random<float>(n, 10, 1e-4f, 5e-5f);
        bf16 *params;
        cudaCheck(cudaMalloc(&params, n * sizeof(bf16)));
        float *norm_scratch, *norm_out;
        cudaCheck(cudaMalloc(&norm_scratch, global_norm_num_blocks((long long)n) * sizeof(float)));
        cudaCheck(cudaMalloc(&norm_out, sizeof(float)));
        bench_model<float>(presets[p], &plan, n, master, m, v, params, norm_scratch, norm_out);
        bench_model<bf16>(presets[p], &plan, n, master, m, v, params, norm_scratch, norm_out);
        adamw_plan_free(&plan);
        cudaCheck(cudaFree(master)); cudaCheck(cudaFree(m)); cudaCheck(cudaFree(v)); cudaCheck(cudaFree(params));
        cudaCheck(cudaFree(norm_scratch)); cudaCheck(cudaFree(norm_out));
    }
    return 0;
}
