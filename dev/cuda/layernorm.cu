/*
Kernel harness for kernels/layernorm.cuh: times the LayerNorm forward, the fused residual-add +
LayerNorm forward, and versions of the backward at GPT-2 shapes (d12: C=768, d24: C=1024, d48: C=1600;
N = B*T = 32768 and 65536 rows, and 8192 at C=1600). Correctness is tested in test/gpu/test_layers.cu
(the kernels/ version); here the outputs must be finite.

Backward versions (figures in dev/RESULTS.md, "LayerNorm backward" section):
  1  one warp per row, 8 warps per block, slabs of dweight/dbias in shared memory (until 2026-11-22;
     not kept here: measured from the earlier commit)
  2, 3  row groups with the column sums in registers, the next batch of ROWS = 1 / 2 rows loaded into
     registers while this one is worked on (not kept: 1.2-1.5 TB/s, the loads were not kept in flight)
  4, 5, 7  kernels/ layernorm_backward_kernel<ROWS, STAGES, RMS>: the rows come through a shared-memory ring of
     STAGES batches filled by cp.async; 4 is what layernorm_backward runs (6: ROWS=2 STAGES=5 and 8:
     ROWS=1 STAGES=8 were never faster and are no longer built)
Forward versions: kernels/ layernorm_forward_kernel<CHUNKS, STAGES, VEC, RMS> (one warp per row, rows through a
per-warp cp.async ring of STAGES rows; until 2026-11-22 one warp per row loaded straight into
registers, 8 warps per block, one row per warp: measured from the earlier commit) with STAGES = 2 (what
layernorm_forward runs), 1 and 3 (4 was slower still: fewer blocks fit per SM); all must give the same bits.
Each backward is timed with and without dinp_colsum (the third column sum). Versions with ROWS =
LAYERNORM_BWD_ROWS take the same rows in the same order as the kernels/ version and must give its bits.

Compile and run:
  make build/dev/layernorm && ./build/dev/layernorm        (./build/dev/layernorm fwd: the forward only)

Bytes counted (the fewest possible, each tensor once): forward reads x and writes out (2 bytes each per
element) plus mean/rstd; fused forward reads residual and branch, writes residual_out and out; backward
reads dout, x and dinp and writes dinp (dinp accumulates), plus mean/rstd; its second kernel (the
column sums of the per-block partials) is also timed alone. Timing: median of 50 runs, each after an
L2 flush (dev/cuda/layer_bench.cuh).
*/
#include <math.h>
#include <string.h>
#include <string>
#include "dev/cuda/layer_bench.cuh"
#include "kernels/layernorm.cuh"

// ----------------------------------------------------------------------------------------------
// checks

static std::vector<unsigned char> download_bytes(const void *d, size_t bytes) {
    std::vector<unsigned char> h(bytes);
    cudaCheck(cudaMemcpy(h.data(), d, bytes, cudaMemcpyDeviceToHost));
    return h;
}

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

typedef void (*BackwardFn)(bf16 *, float *, float *, float *, float *, const bf16 *, const bf16 *, const bf16 *,
                           const float *, const float *, int, int);

template <int ROWS, int STAGES>
static void layernorm_backward_ring(bf16 *dinp, float *dinp_colsum, float *dweight, float *dbias, float *scratch,
                                    const bf16 *dout, const bf16 *inp, const bf16 *weight, const float *mean,
                                    const float *rstd, int N, int C) {
    layernorm_backward_variant_<ROWS, STAGES>(dinp, dinp_colsum, dweight, dbias, scratch, dout, inp, weight, mean, rstd, N, C, true,
                                              true, 0);
}

typedef void (*ForwardFn)(bf16 *, bf16 *, float *, float *, const bf16 *, const bf16 *, const bf16 *, const bf16 *, int, int);

template <int STAGES>
static void layernorm_forward_ring(bf16 *residual_out, bf16 *out, float *mean, float *rstd, const bf16 *inp1, const bf16 *inp2,
                                   const bf16 *weight, const bf16 *bias, int N, int C) {
    layernorm_forward_variant_<STAGES>(residual_out, out, mean, rstd, inp1, inp2, weight, bias, N, C, 0);
}

struct ForwardVersion {
    const char *name;
    ForwardFn fn;
};

struct BackwardVersion {
    const char *name;
    int rows;  // rows per group and batch: versions with LAYERNORM_BWD_ROWS must give the kernels/ version's bits
    BackwardFn fn;
};

int main(int argc, char **argv) {
    const bool forward_only = argc > 1 && strcmp(argv[1], "fwd") == 0;
    const int reps = 50;
    const int shapes[][2] = {{32768, 768}, {65536, 768}, {32768, 1024}, {65536, 1024}, {8192, 1600}, {32768, 1600}, {65536, 1600}};
    const BackwardVersion versions[] = {
        {"4 ring ROWS=2 STAGES=3 (kernels/)", 2, layernorm_backward_ring<LAYERNORM_BWD_ROWS, LAYERNORM_BWD_STAGES>},
        {"5 ring ROWS=2 STAGES=4", 2, layernorm_backward_ring<2, 4>},
        {"7 ring ROWS=1 STAGES=6", 1, layernorm_backward_ring<1, 6>},
    };
    const int num_versions = sizeof(versions) / sizeof(versions[0]);
    const ForwardVersion fwd_versions[] = {
        {"ring S=2 (kernels/)", layernorm_forward_ring<LAYERNORM_FWD_STAGES>},
        {"ring S=1", layernorm_forward_ring<1>},
        {"ring S=3", layernorm_forward_ring<3>},
    };
    const int num_fwd_versions = sizeof(fwd_versions) / sizeof(fwd_versions[0]);
    std::vector<std::string> summary, fwd_summary;
    printf("%-44s %13s %13s %13s\n", "kernel", "time", "bytes", "bandwidth");
    for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
        const int N = shapes[si][0], C = shapes[si][1];
        const size_t act = (size_t)N * C;
        bf16 *x = bench_alloc_random<bf16>(act, 1, 0.2f, 2.0f), *branch = bench_alloc_random<bf16>(act, 2, 0.0f, 1.0f);
        bf16 *dout = bench_alloc_random<bf16>(act, 3, 0.0f, 1.0f), *dinp = bench_alloc_random<bf16>(act, 4, 0.0f, 1.0f);
        bf16 *w = bench_alloc_random<bf16>(C, 5, 1.0f, 0.2f), *b = bench_alloc_random<bf16>(C, 6, 0.0f, 0.2f);
        bf16 *out, *residual, *dinp0;
        float *mean, *rstd, *dw, *db, *colsum, *scratch;
        cudaCheck(cudaMalloc(&out, act * sizeof(bf16)));
        cudaCheck(cudaMalloc(&residual, act * sizeof(bf16)));
        cudaCheck(cudaMalloc(&dinp0, act * sizeof(bf16)));
        cudaCheck(cudaMemcpy(dinp0, dinp, act * sizeof(bf16), cudaMemcpyDeviceToDevice));
        cudaCheck(cudaMalloc(&mean, N * sizeof(float)));
        cudaCheck(cudaMalloc(&rstd, N * sizeof(float)));
        cudaCheck(cudaMalloc(&dw, C * sizeof(float)));
        cudaCheck(cudaMalloc(&db, C * sizeof(float)));
        cudaCheck(cudaMalloc(&colsum, C * sizeof(float)));
        cudaCheck(cudaMalloc(&scratch, layernorm_backward_scratch_floats(N, C) * sizeof(float)));
        auto free_all = [&] {
            cudaCheck(cudaFree(x)); cudaCheck(cudaFree(branch)); cudaCheck(cudaFree(dout)); cudaCheck(cudaFree(dinp));
            cudaCheck(cudaFree(dinp0)); cudaCheck(cudaFree(w)); cudaCheck(cudaFree(b)); cudaCheck(cudaFree(out));
            cudaCheck(cudaFree(residual)); cudaCheck(cudaFree(mean)); cudaCheck(cudaFree(rstd)); cudaCheck(cudaFree(dw));
            cudaCheck(cudaFree(db)); cudaCheck(cudaFree(colsum)); cudaCheck(cudaFree(scratch));
        };
        char name[96];
        printf("--- N=%d C=%d\n", N, C);

        // forward: the kernels/ ring depth and the others; each must give the kernels/ version's bits
        float us = 0.0f;
        std::vector<unsigned char> ref_fwd;
        for (int v = 0; v < num_fwd_versions; v++) {
            for (int fused = 0; fused < 2; fused++) {
                bf16 *res_out = fused ? residual : NULL;
                const bf16 *inp2 = fused ? branch : NULL;
                us = bench_median_us(reps, [] {}, [&] { fwd_versions[v].fn(res_out, out, mean, rstd, x, inp2, w, b, N, C); });
                snprintf(name, sizeof(name), "%s fwd %s", fused ? "fused residual+ln" : "layernorm", fwd_versions[v].name);
                const double fwd_bytes = (fused ? 8.0 : 4.0) * act + 8.0 * N;
                bench_report(name, us, fwd_bytes);
                char line[160];
                snprintf(line, sizeof(line), "N=%-6d C=%-5d %-40s %8.1f us %6.0f GB/s", N, C, name, us, fwd_bytes / (us * 1e-6) / 1e9);
                fwd_summary.push_back(line);
                check_finite("out", out, act);
                if (!fused) continue;  // the bits are compared on the fused runs (they include the residual)
                std::vector<unsigned char> got = download_bytes(out, act * sizeof(bf16));
                for (const void *p : {(const void *)mean, (const void *)rstd}) {
                    std::vector<unsigned char> more = download_bytes(p, N * sizeof(float));
                    got.insert(got.end(), more.begin(), more.end());
                }
                std::vector<unsigned char> more = download_bytes(residual, act * sizeof(bf16));
                got.insert(got.end(), more.begin(), more.end());
                if (v == 0) ref_fwd = got;
                else if (got != ref_fwd) {
                    fprintf(stderr, "error: forward version %s differs from the kernels/ version in its bits (N=%d C=%d)\n", fwd_versions[v].name, N, C);
                    exit(1);
                }
            }
        }

        if (forward_only) {
            free_all();
            continue;
        }
        // one run of each version from the same dinp and zeroed sums: bits against the kernels/ version
        std::vector<unsigned char> ref_dinp, ref_sums;
        for (int v = 0; v < num_versions; v++) {
            cudaCheck(cudaMemcpy(dinp, dinp0, act * sizeof(bf16), cudaMemcpyDeviceToDevice));
            cudaCheck(cudaMemset(dw, 0, C * sizeof(float)));
            cudaCheck(cudaMemset(db, 0, C * sizeof(float)));
            cudaCheck(cudaMemset(colsum, 0, C * sizeof(float)));
            versions[v].fn(dinp, colsum, dw, db, scratch, dout, x, w, mean, rstd, N, C);
            cudaCheck(cudaDeviceSynchronize());
            check_finite("dinp", dinp, act);
            std::vector<unsigned char> got_dinp = download_bytes(dinp, act * sizeof(bf16));
            std::vector<unsigned char> got_sums = download_bytes(dw, C * sizeof(float));
            std::vector<unsigned char> more = download_bytes(db, C * sizeof(float));
            got_sums.insert(got_sums.end(), more.begin(), more.end());
            more = download_bytes(colsum, C * sizeof(float));
            got_sums.insert(got_sums.end(), more.begin(), more.end());
            if (versions[v].rows == LAYERNORM_BWD_ROWS && ref_dinp.empty()) {
                ref_dinp = got_dinp;
                ref_sums = got_sums;
            } else if (versions[v].rows == LAYERNORM_BWD_ROWS && (got_dinp != ref_dinp || got_sums != ref_sums)) {
                fprintf(stderr, "error: backward version %s differs from the kernels/ version in its bits (N=%d C=%d)\n", versions[v].name, N, C);
                exit(1);
            }
        }

        // dinp accumulates over the repetitions (its values drift; the timing does not depend on them)
        const double bwd_bytes = 8.0 * act + 8.0 * N;
        for (int v = 0; v < num_versions; v++) {
            for (int with_colsum = 0; with_colsum < 2; with_colsum++) {
                float *cs = with_colsum ? colsum : NULL;
                us = bench_median_us(reps, [] {}, [&] { versions[v].fn(dinp, cs, dw, db, scratch, dout, x, w, mean, rstd, N, C); });
                snprintf(name, sizeof(name), "bwd v%s%s", versions[v].name, with_colsum ? " +colsum" : "");
                bench_report(name, us, bwd_bytes);
                char line[160];
                snprintf(line, sizeof(line), "N=%-6d C=%-5d %-34s %-8s %8.1f us %6.0f GB/s", N, C, versions[v].name,
                         with_colsum ? "+colsum" : "", us, bwd_bytes / (us * 1e-6) / 1e9);
                summary.push_back(line);
            }
        }
        LayerNormBwdGeometry g = layernorm_backward_geometry_(N, C, LAYERNORM_BWD_ROWS);
        us = bench_median_us(reps, [] {}, [&] { layernorm_backward_reduce_(dw, db, colsum, scratch, g.blocks, C, true, (cudaStream_t)0); });
        snprintf(name, sizeof(name), "  of which the column sums of %d partials", g.blocks);
        bench_report(name, us, 4.0 * 3 * C * g.blocks);

        free_all();
    }
    printf("\nforward summary (bytes = 4*N*C + 8*N, fused 8*N*C + 8*N)\n");
    for (const std::string &line : fwd_summary) printf("%s\n", line.c_str());
    printf("\nbackward summary (bytes = 8*N*C + 8*N)\n");
    for (const std::string &line : summary) printf("%s\n", line.c_str());
    return 0;
}
