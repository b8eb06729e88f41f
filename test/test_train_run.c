// CPU tests of core/train_run.h: finding the latest checkpoint in an output directory (both files
// needed, temporary files and stray names ignored, missing directory reported), token sampling from
// logits (frequencies follow the softmax), and the step metrics.
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/train_run.h"
#include "test/testing.h"
#include "test/testing_files.h"

static void touch(const char *dir, const char *name) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen_check(path, "wb");
    fclose(f);
}

static void test_find_latest(void) {
    char dir[512], err[1024];
    testing_tmpdir_create(dir, sizeof(dir), "test_train_run");
    long long latest = 123;
    CHECK(checkpoint_find_latest(dir, &latest, err, sizeof(err)) == 0 && latest == -1, "empty directory: latest %lld", latest);
    // random steps, each with both files; then distractors above the largest one
    long long largest = -1;
    for (int i = 0; i < 6; i++) {
        long long s = (long long)testing_rand_int(1, 200000);
        char model[512], state[512];
        CHECK(checkpoint_paths(dir, s, model, state, sizeof(model), err, sizeof(err)) == 0, "%s", err);
        touch(dir, strrchr(model, '/') + 1);
        touch(dir, strrchr(state, '/') + 1);
        if (s > largest) largest = s;
    }
    char name[128];
    snprintf(name, sizeof(name), "state_%08lld.bin", largest + 1);  // state without its model file
    touch(dir, name);
    snprintf(name, sizeof(name), "model_%08lld.bin", largest + 2);  // model without its state file
    touch(dir, name);
    snprintf(name, sizeof(name), "model_%08lld.bin", largest + 3);  // an interrupted state write
    touch(dir, name);
    snprintf(name, sizeof(name), "state_%08lld.bin.tmp.4242", largest + 3);
    touch(dir, name);
    touch(dir, "state_latest.bin");
    touch(dir, "log.txt");
    CHECK(checkpoint_find_latest(dir, &latest, err, sizeof(err)) == 0, "%s", err);
    CHECK(latest == largest, "latest %lld, want %lld", latest, largest);
    testing_tmpdir_remove(dir);
    CHECK(checkpoint_find_latest(dir, &latest, err, sizeof(err)) == -1 && strstr(err, "cannot read the output directory") != NULL &&
              strstr(err, dir) != NULL, "missing directory: %s", err);
    // a directory name longer than the path buffers
    char long_dir[600], model[512], state[512];
    memset(long_dir, 'd', sizeof(long_dir) - 1);
    long_dir[sizeof(long_dir) - 1] = '\0';
    CHECK(checkpoint_paths(long_dir, 1, model, state, sizeof(model), err, sizeof(err)) == -1 && strstr(err, "too long") != NULL,
          "long path: %s", err);
}

// 200000 draws from random logits over V = 7: each frequency within 5 standard deviations of its
// probability (sqrt(p(1-p)/n)); coin 0 gives the first token.
static void test_sample_token(void) {
    enum { V = 7, DRAWS = 200000 };
    float logits[V];
    double p[V], total = 0.0;
    for (int v = 0; v < V; v++) {
        logits[v] = (float)testing_rand_int(-3000, 3000) / 1000.0f + 50.0f;  // offset: the max is subtracted
        p[v] = exp((double)logits[v] - 50.0);
        total += p[v];
    }
    int counts[V] = {0};
    for (int i = 0; i < DRAWS; i++) {
        float coin = (float)(testing_rand_u64() >> 40) / (float)(1 << 24);
        counts[sample_token(logits, V, coin)]++;
    }
    for (int v = 0; v < V; v++) {
        double q = p[v] / total, f = (double)counts[v] / DRAWS, sd = sqrt(q * (1 - q) / DRAWS);
        CHECK(fabs(f - q) <= 5 * sd + 1e-9, "token %d: frequency %.5f, probability %.5f", v, f, q);
    }
    CHECK(sample_token(logits, V, 0.0f) == 0, "coin 0 gives token %d", sample_token(logits, V, 0.0f));
}

static void test_step_metrics(void) {
    // 500,000 tokens in 250 ms at 1e9 FLOPs per token: 2e6 tokens/s, 2e15 FLOP/s = 2.0222 x 989 TFLOP/s
    StepMetrics m = step_metrics(250.0, 500000.0, 1e9);
    CHECK(fabs(m.tokens_per_s - 2e6) < 1e-6, "tokens/s %f", m.tokens_per_s);
    CHECK(fabs(m.mfu - 2.0222446916076846) < 1e-12, "mfu %.17g", m.mfu);
    // d24-like: 32,768 tokens in 147.7 ms at 6 * 354e6 + 6 * 24 * 1024 * 1024 FLOPs per token = 51.03%
    m = step_metrics(147.7, 32768.0, 6.0 * 354e6 + 6.0 * 24 * 1024 * 1024);
    CHECK(fabs(m.mfu - 0.51033291956) < 1e-9, "d24-like mfu %.11f", m.mfu);
}

int main(void) {
    testing_seed("test_train_run");
    RUN_TEST(test_find_latest);
    RUN_TEST(test_sample_token);
    RUN_TEST(test_step_metrics);
    return testing_finish();
}
