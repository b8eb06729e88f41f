// Model-independent pieces of a training run, shared by the trainers: checkpoint file naming and
// discovery in the output directory, sampling a token from next-token logits, and the step
// metrics (tokens/s, MFU) with the line every step prints.
//
// Checkpoint naming: a checkpoint after S completed optimizer steps is two files in the output
// directory, S printed with 8 digits (more when S needs them):
//   model_S.bin   the model file (core/checkpoint.h; the trainers write fp32 master weights)
//   state_S.bin   the training-state file (core/train_state.h)
// The model file is written (atomically) before the state file, so a state file implies a complete
// model file. The latest checkpoint is the largest S for which both files exist; temporary files of
// interrupted writes ("<name>.tmp.<pid>") never match.
// Plain C, also compiled as C++ by nvcc.
#ifndef CORE_TRAIN_RUN_H
#define CORE_TRAIN_RUN_H

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/utils.h"

// Dense BF16 peak of an H100 SXM, the denominator of the MFU.
#define TRAIN_PEAK_BF16_FLOPS 989e12

// Fills the paths of checkpoint S in dir. Returns 0, or -1 with a message when a path is too long.
static inline int checkpoint_paths(const char *dir, long long step, char *model_path, char *state_path, size_t size,
                                   char *err, size_t err_size) {
    if ((size_t)snprintf(model_path, size, "%s/model_%08lld.bin", dir, step) >= size ||
        (size_t)snprintf(state_path, size, "%s/state_%08lld.bin", dir, step) >= size) {
        return set_error(err, err_size, "-o/--output-dir '%s': checkpoint path too long", dir);
    }
    return 0;
}

// Sets *latest to the largest S such that dir holds both model_S.bin and state_S.bin, or -1 when
// there is none. Returns 0, or -1 with a message when the directory cannot be read.
static inline int checkpoint_find_latest(const char *dir, long long *latest, char *err, size_t err_size) {
    *latest = -1;
    DIR *d = opendir(dir);
    if (d == NULL) return set_error(err, err_size, "-y/--resume: cannot read the output directory '%s': %s", dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        long long step;
        char tail[8];
        if (sscanf(e->d_name, "state_%lld%7s", &step, tail) != 2 || strcmp(tail, ".bin") != 0 || step <= *latest) continue;
        char model_path[4096], state_path[4096];
        rc = checkpoint_paths(dir, step, model_path, state_path, sizeof(model_path), err, err_size);
        struct stat st;
        if (rc == 0 && stat(state_path, &st) == 0 && stat(model_path, &st) == 0) *latest = step;
    }
    closedir(d);
    return rc;
}

// Draws a token from softmax(logits[0..V)): the first v whose cumulative probability exceeds
// coin * total, coin uniform in [0, 1). Sums in double, in token order.
static inline int sample_token(const float *logits, int V, float coin) {
    float max = -INFINITY;
    for (int v = 0; v < V; v++) max = fmaxf(max, logits[v]);
    double total = 0.0;
    for (int v = 0; v < V; v++) total += exp((double)logits[v] - max);
    const double target = (double)coin * total;
    double acc = 0.0;
    for (int v = 0; v < V; v++) {
        acc += exp((double)logits[v] - max);
        if (target < acc) return v;
    }
    return V - 1;  // only reached through rounding at coin -> 1
}

// Throughput of one step: tokens/s and the model FLOPs utilization against TRAIN_PEAK_BF16_FLOPS.
typedef struct {
    double ms, tokens_per_s, mfu;
} StepMetrics;

static inline StepMetrics step_metrics(double ms, double tokens, double flops_per_token) {
    StepMetrics m;
    m.ms = ms;
    m.tokens_per_s = tokens / (ms / 1e3);
    m.mfu = flops_per_token * m.tokens_per_s / TRAIN_PEAK_BF16_FLOPS;
    return m;
}

#endif // CORE_TRAIN_RUN_H
