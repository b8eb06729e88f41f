// Tests of core/checkpoint.h: llm.c model files (fp32 and bf16) round trips and header fields,
// rejection of corrupt files with messages, atomic writes, the training-state file, and a
// bit-exact resume of the CPU reference trainer with the real (shuffling) dataloader.
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/checkpoint.h"
#include "core/gpt2_model.h"
#include "core/lr_schedule.h"
#include "core/rng.h"
#include "dataloader/dataloader.h"
#include "test/reference/gpt2_cpu.h"
#include "test/testing.h"

#define TINYSHAKESPEARE_TRAIN "build/data/tinyshakespeare/tiny_shakespeare_train.bin"

static char tmp_dir[256];

// Path of `name` inside the test's temporary directory.
static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int next = 0;
    char *p = buf[next];
    next = (next + 1) % 4;
    snprintf(p, sizeof(buf[0]), "%s/%s", tmp_dir, name);
    return p;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static long long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

// Number of entries in the temporary directory whose name contains ".tmp.".
static int count_tmp_files(void) {
    DIR *d = opendir(tmp_dir);
    if (d == NULL) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

static void *read_whole_file(const char *path, size_t *size) {
    FILE *f = fopen_check(path, "rb");
    long long n = file_size(path);
    void *buf = malloc_check((size_t)n + 1);
    fread_check(buf, 1, (size_t)n, f);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static void write_whole_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen_check(path, "wb");
    fwrite_check(data, 1, size, f);
    fclose(f);
}

static GPT2Config tiny_config(void) {
    GPT2Config cfg = {16, 61, 64, 2, 2, 8};
    return cfg;
}

// Random parameters of every magnitude bf16 rounding can meet (incl. ties and the padded rows).
static float *random_params(const GPT2Config *cfg, uint64_t seed, size_t *n) {
    GPT2ParamLayout layout;
    gpt2_param_layout(cfg, &layout);
    float *p = (float *)malloc_check(layout.num_parameters * sizeof(float));
    Rng rng;
    rng_seed(&rng, seed);
    rng_fill_normal(&rng, p, layout.num_parameters, 0.0f, 1.0f);
    for (size_t i = 0; i < layout.num_parameters; i += 7) p[i] = ldexpf(p[i], (int)rng_below(&rng, 60) - 30);
    // exact ties between two bf16 values: 1 + 2^-8 (rounds down to even) and 1 + 3 * 2^-8 (up)
    p[1] = 1.0f + 1.0f / 256.0f;
    p[2] = 1.0f + 3.0f / 256.0f;
    *n = layout.num_parameters;
    return p;
}

// The bf16 nearest to f, ties to the even mantissa, found by comparing the two candidates in double.
static uint16_t bf16_nearest_even(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    uint16_t lo = (uint16_t)(bits >> 16), hi = (uint16_t)(lo + 1);
    double dlo = fabs((double)f - (double)bf16_bits_to_float(lo)), dhi = fabs((double)bf16_bits_to_float(hi) - (double)f);
    if (dlo < dhi) return lo;
    if (dhi < dlo) return hi;
    return (lo & 1) ? hi : lo;
}

// ----------------------------------------------------------------------------
// Model files

static void test_model_file_fp32_roundtrip(void) {
    GPT2Config cfg = tiny_config();
    size_t n;
    float *p = random_params(&cfg, 1, &n);
    char err[512];
    const char *path = tmp_path("model_fp32.bin");
    CHECK(model_file_write(path, &cfg, p, MODEL_FILE_VERSION_FP32, err, sizeof(err)) == 0, "write: %s", err);
    CHECK(file_size(path) == 1024 + 4 * (long long)n, "size %lld, expected %lld", file_size(path), 1024 + 4 * (long long)n);
    size_t size;
    int32_t *raw = (int32_t *)read_whole_file(path, &size);
    int32_t want[8] = {20240326, 3, cfg.max_seq_len, cfg.vocab_size, cfg.num_layers, cfg.num_heads, cfg.channels, cfg.padded_vocab_size};
    for (int i = 0; i < 8; i++) CHECK(raw[i] == want[i], "header[%d] = %d, expected %d", i, raw[i], want[i]);
    int rest_zero = 1;
    for (int i = 8; i < 256; i++) rest_zero &= raw[i] == 0;
    CHECK(rest_zero, "header words 8..255 are not zero");
    CHECK(memcmp(raw + 256, p, n * sizeof(float)) == 0, "parameters not stored verbatim after the header");
    free(raw);
    GPT2Config got;
    int version = 0;
    float *q = NULL;
    CHECK(model_file_load(path, &cfg, &got, &version, &q, err, sizeof(err)) == 0, "load: %s", err);
    if (q != NULL) {
        CHECK(version == 3 && gpt2_config_equal(&got, &cfg), "version %d or config differs", version);
        CHECK(memcmp(p, q, n * sizeof(float)) == 0, "fp32 round trip is not bit-exact");
        free(q);
    }
    free(p);
}

static void test_model_file_bf16_roundtrip(void) {
    GPT2Config cfg = tiny_config();
    size_t n;
    float *p = random_params(&cfg, 2, &n);
    char err[512];
    const char *path = tmp_path("model_bf16.bin");
    CHECK(model_file_write(path, &cfg, p, MODEL_FILE_VERSION_BF16, err, sizeof(err)) == 0, "write: %s", err);
    CHECK(file_size(path) == 1024 + 2 * (long long)n, "size %lld, expected %lld", file_size(path), 1024 + 2 * (long long)n);
    GPT2Config got;
    int version = 0;
    float *q = NULL;
    CHECK(model_file_load(path, NULL, &got, &version, &q, err, sizeof(err)) == 0, "load: %s", err);
    if (q == NULL) {
        free(p);
        return;
    }
    CHECK(version == 5 && gpt2_config_equal(&got, &cfg), "version %d or config differs", version);
    size_t wrong = 0;
    for (size_t i = 0; i < n; i++) {
        float expect = bf16_bits_to_float(bf16_nearest_even(p[i]));
        wrong += memcmp(&expect, &q[i], 4) != 0;
    }
    CHECK(wrong == 0, "%zu of %zu loaded values are not the nearest-even bf16 of the written fp32", wrong, n);
    CHECK(q[1] == 1.0f && q[2] == 1.0f + 4.0f / 256.0f, "ties: 1+2^-8 -> %.9g (want 1), 1+3*2^-8 -> %.9g (want 1+2^-6)", q[1], q[2]);
    // writing the loaded values again gives the same bytes (bf16 -> fp32 -> bf16 is exact)
    const char *path2 = tmp_path("model_bf16_again.bin");
    CHECK(model_file_write(path2, &cfg, q, MODEL_FILE_VERSION_BF16, err, sizeof(err)) == 0, "write: %s", err);
    size_t s1, s2;
    void *a = read_whole_file(path, &s1), *b = read_whole_file(path2, &s2);
    CHECK(s1 == s2 && memcmp(a, b, s1) == 0, "re-written bf16 file differs");
    free(a);
    free(b);
    free(q);
    free(p);
    // special values: NaN stays NaN, values beyond the bf16 range round to infinity
    float nan_in = NAN;
    CHECK(isnan(bf16_bits_to_float(bf16_bits_from_float_rne(nan_in))), "NaN did not stay NaN");
    CHECK(isinf(bf16_bits_to_float(bf16_bits_from_float_rne(3.4e38f))), "3.4e38 should round to infinity in bf16");
}

// Writes a modified copy of `src` at `dst`: header word `word` set to `value` (word < 0: none),
// then `delta` bytes cut (delta < 0) or appended (delta > 0).
static void corrupt_copy(const char *src, const char *dst, int word, int32_t value, long delta) {
    size_t size;
    unsigned char *buf = (unsigned char *)read_whole_file(src, &size);
    if (word >= 0) memcpy(buf + 4 * word, &value, 4);
    size_t out = size;
    if (delta < 0) out = size - (size_t)(-delta);
    if (delta > 0) {
        buf = (unsigned char *)realloc(buf, size + (size_t)delta);
        memset(buf + size, 0x5A, (size_t)delta);
        out = size + (size_t)delta;
    }
    write_whole_file(dst, buf, out);
    free(buf);
}

// Loading `path` must fail with a message that names the file and contains `needle`.
static void expect_load_error(const char *path, const GPT2Config *want, const char *needle) {
    char err[512] = "";
    GPT2Config got;
    int version;
    float *q = (float *)&version;  // must be reset to NULL on failure
    int rc = model_file_load(path, want, &got, &version, &q, err, sizeof(err));
    CHECK(rc != 0, "'%s' was accepted (expected an error containing '%s')", path, needle);
    CHECK(q == NULL, "parameters pointer not NULL after a failed load");
    CHECK(strstr(err, path) != NULL && strstr(err, needle) != NULL, "message '%s' lacks the path or '%s'", err, needle);
    if (rc == 0 && q != NULL) free(q);
}

static void test_model_file_rejects_corruption(void) {
    GPT2Config cfg = tiny_config();
    size_t n;
    float *p = random_params(&cfg, 3, &n);
    char err[512];
    const char *good = tmp_path("good.bin");
    CHECK(model_file_write(good, &cfg, p, MODEL_FILE_VERSION_FP32, err, sizeof(err)) == 0, "write: %s", err);
    const char *bad = tmp_path("bad.bin");
    corrupt_copy(good, bad, 0, 20240327, 0);
    expect_load_error(bad, NULL, "magic");
    corrupt_copy(good, bad, 1, 4, 0);
    expect_load_error(bad, NULL, "version 4");
    corrupt_copy(good, bad, -1, 0, -6);
    expect_load_error(bad, NULL, "truncated");
    corrupt_copy(good, bad, -1, 0, 2);
    expect_load_error(bad, NULL, "trailing bytes");
    corrupt_copy(good, bad, 6, 7, 0);  // channels 7 not a multiple of 2 heads
    expect_load_error(bad, NULL, "channels 7");
    corrupt_copy(good, bad, 7, 60, 0);  // padded vocab below vocab
    expect_load_error(bad, NULL, "padded_vocab_size 60");
    corrupt_copy(good, bad, 4, 3, 0);  // 3 layers: a consistent header, but the file is too short for it
    expect_load_error(bad, NULL, "truncated");
    corrupt_copy(good, bad, -1, 0, -(long)(file_size(good) - 100));  // a 100-byte file
    expect_load_error(bad, NULL, "short read");
    expect_load_error(tmp_path("missing.bin"), NULL, "cannot open");
    // a valid file whose configuration differs from the one the run asks for
    GPT2Config other = cfg;
    other.num_heads = 4;
    expect_load_error(good, &other, "num_heads is 2 in the file, 4 expected");
    // the version to write must be 3 or 5
    CHECK(model_file_write(bad, &cfg, p, 4, err, sizeof(err)) != 0 && strstr(err, "version 4") != NULL, "version 4 written (%s)", err);
    free(p);
}

// llm.c's own GPT-2 files, converted from the released weights by llm.c's train_gpt2.py.
static const char *const LLMC_FILES[2] = {"gpt2_124M.bin", "gpt2_124M_bf16.bin"};

// They load as d12 with the right version, and the bf16 file is the rounding of the fp32 one.
static void test_llmc_files_load(void) {
    GPT2Config got, want;
    char err[512];
    gpt2_config_preset("d12", &want, err, sizeof(err));
    float *params[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        int version;
        CHECK(model_file_load(LLMC_FILES[i], &want, &got, &version, &params[i], err, sizeof(err)) == 0, "%s", err);
        CHECK(version == (i == 0 ? 3 : 5), "%s: version %d", LLMC_FILES[i], version);
    }
    if (params[0] != NULL && params[1] != NULL) {
        size_t wrong = 0;
        for (size_t j = 0; j < 124475904; j++) wrong += bf16_bits_to_float(bf16_bits_from_float_rne(params[0][j])) != params[1][j];
        CHECK(wrong == 0, "%zu values of the bf16 file are not the rounding of the fp32 file", wrong);
    }
    free(params[0]);
    free(params[1]);
}

// ----------------------------------------------------------------------------
// Atomic writes

static void test_atomic_writes(void) {
    GPT2Config cfg = tiny_config();
    size_t n;
    float *p = random_params(&cfg, 4, &n);
    char err[512];
    // into a missing directory: an error naming the path, nothing created
    const char *missing = tmp_path("no_such_dir/model.bin");
    CHECK(model_file_write(missing, &cfg, p, MODEL_FILE_VERSION_FP32, err, sizeof(err)) != 0, "write into a missing directory succeeded");
    CHECK(strstr(err, missing) != NULL, "message '%s' does not name the path", err);
    CHECK(!file_exists(missing), "a file appeared at the path");
    // the final rename fails (the path is a directory): the data was written to the temporary
    // file, which must be removed, and the directory must be untouched
    const char *dir_path = tmp_path("a_directory");
    CHECK(mkdir(dir_path, 0755) == 0, "mkdir failed");
    CHECK(model_file_write(dir_path, &cfg, p, MODEL_FILE_VERSION_FP32, err, sizeof(err)) != 0, "write over a directory succeeded");
    CHECK(strstr(err, "renaming") != NULL, "message '%s' should say the rename failed", err);
    struct stat st;
    CHECK(stat(dir_path, &st) == 0 && S_ISDIR(st.st_mode), "the directory was replaced");
    TrainState ts;
    memset(&ts, 0, sizeof(ts));
    ts.num_parameters = ts.shard_size = n;
    CHECK(train_state_write(dir_path, &ts, p, p, NULL, err, sizeof(err)) != 0, "state write over a directory succeeded");
    CHECK(count_tmp_files() == 0, "%d temporary files left behind", count_tmp_files());
    rmdir(dir_path);
    // overwriting a longer file replaces it completely
    const char *path = tmp_path("overwrite.bin");
    GPT2Config big = cfg;
    big.num_layers = 4;
    GPT2ParamLayout big_layout;
    gpt2_param_layout(&big, &big_layout);
    float *pb = (float *)calloc_check(big_layout.num_parameters, sizeof(float));
    CHECK(model_file_write(path, &big, pb, MODEL_FILE_VERSION_FP32, err, sizeof(err)) == 0, "%s", err);
    CHECK(model_file_write(path, &cfg, p, MODEL_FILE_VERSION_FP32, err, sizeof(err)) == 0, "%s", err);
    CHECK(file_size(path) == 1024 + 4 * (long long)n, "overwritten file has %lld bytes", file_size(path));
    CHECK(count_tmp_files() == 0, "temporary files left behind");
    free(pb);
    free(p);
}

// ----------------------------------------------------------------------------
// Training-state files

static TrainState sample_state(size_t n, int has_master) {
    TrainState st;
    memset(&st, 0, sizeof(st));
    st.step = 1234;
    st.num_parameters = n + 10;
    st.shard_offset = 10;
    st.shard_size = n;
    st.has_master = has_master;
    st.rng_state = 0xDEADBEEFCAFEF00Dull;
    st.data.seed = 42;
    st.data.epoch = 3;
    st.data.position = 777;
    st.run.batch_size = 4;
    st.run.seq_len = 64;
    st.run.total_batch_size = 512;
    st.run.world_size = 2;
    st.run.rank = 1;
    return st;
}

static void expect_state_error(const char *path, const TrainRunConfig *now, uint64_t np, uint64_t off, uint64_t size, const char *needle) {
    char err[512] = "";
    TrainState got;
    float *buf = (float *)calloc_check(size > 0 ? size : 1, sizeof(float) * 3);
    int rc = train_state_load(path, now, np, off, size, &got, buf, buf + size, buf + 2 * size, err, sizeof(err));
    CHECK(rc != 0, "'%s' accepted (expected an error containing '%s')", path, needle);
    CHECK(strstr(err, path) != NULL && strstr(err, needle) != NULL, "message '%s' lacks the path or '%s'", err, needle);
    free(buf);
}

static void test_train_state_roundtrip_and_errors(void) {
    size_t n = 1000;
    Rng rng;
    rng_seed(&rng, 5);
    float *m = (float *)malloc_check(n * sizeof(float)), *v = (float *)malloc_check(n * sizeof(float)), *w = (float *)malloc_check(n * sizeof(float));
    rng_fill_normal(&rng, m, n, 0.0f, 1.0f);
    rng_fill_normal(&rng, v, n, 0.0f, 1.0f);
    rng_fill_normal(&rng, w, n, 0.0f, 1.0f);
    char err[512];
    for (int has_master = 0; has_master <= 1; has_master++) {
        const char *path = tmp_path(has_master ? "state_master.bin" : "state.bin");
        TrainState st = sample_state(n, has_master);
        CHECK(train_state_write(path, &st, m, v, has_master ? w : NULL, err, sizeof(err)) == 0, "write: %s", err);
        CHECK(file_size(path) == 512 + 4 * (long long)n * (has_master ? 3 : 2), "size %lld", file_size(path));
        TrainState got;
        float *buf = (float *)calloc_check(3 * n, sizeof(float));
        CHECK(train_state_load(path, &st.run, st.num_parameters, st.shard_offset, n, &got, buf, buf + n, buf + 2 * n, err, sizeof(err)) == 0,
              "load: %s", err);
        CHECK(memcmp(&got, &st, sizeof(st)) == 0, "header fields differ after the round trip");
        CHECK(memcmp(buf, m, n * 4) == 0 && memcmp(buf + n, v, n * 4) == 0, "moments differ");
        if (has_master) CHECK(memcmp(buf + 2 * n, w, n * 4) == 0, "master weights differ");
        else CHECK(buf[2 * n] == 0.0f, "master buffer written although the file has none");
        free(buf);
    }
    // corruptions and mismatches
    const char *good = tmp_path("state.bin"), *bad = tmp_path("state_bad.bin");
    TrainState st = sample_state(n, 0);
    corrupt_copy(good, bad, 0, 12345, 0);
    expect_state_error(bad, &st.run, st.num_parameters, st.shard_offset, n, "magic");
    corrupt_copy(good, bad, 2, 2, 0);  // version word (uint64 [1] = int32 words 2..3)
    expect_state_error(bad, &st.run, st.num_parameters, st.shard_offset, n, "version 2");
    corrupt_copy(good, bad, -1, 0, -4);
    expect_state_error(bad, &st.run, st.num_parameters, st.shard_offset, n, "truncated");
    corrupt_copy(good, bad, -1, 0, 4);
    expect_state_error(bad, &st.run, st.num_parameters, st.shard_offset, n, "trailing bytes");
    corrupt_copy(good, bad, 12, 2, 0);  // has_master = 2
    expect_state_error(bad, &st.run, st.num_parameters, st.shard_offset, n, "has_master");
    TrainRunConfig other = st.run;
    other.batch_size = 8;
    expect_state_error(good, &other, st.num_parameters, st.shard_offset, n, "micro-batch size B was 4 in the saved run but is 8 now");
    other = st.run;
    other.world_size = 4;
    expect_state_error(good, &other, st.num_parameters, st.shard_offset, n, "world size was 2");
    expect_state_error(good, &st.run, st.num_parameters + 1, st.shard_offset, n, "are needed");
    expect_state_error(tmp_path("no_state.bin"), &st.run, st.num_parameters, st.shard_offset, n, "cannot open");
    TrainState wide = sample_state(n, 0);
    wide.shard_offset = 20;  // [20, 1020) of 1010
    CHECK(train_state_write(bad, &wide, m, v, NULL, err, sizeof(err)) != 0 && strstr(err, "exceeds") != NULL, "bad shard written (%s)", err);
    free(m);
    free(v);
    free(w);
}

// ----------------------------------------------------------------------------
// Exact resume

// One training run of the CPU reference: model, optimizer state, data, host RNG.
typedef struct {
    GPT2Cpu model;
    DataLoader dl;
    Rng rng;
    int step;  // optimizer steps done
} Run;

typedef struct {
    const char *pattern;  // shard glob
    GPT2Config cfg;
    int B, T, grad_accum;
    int total_steps;
} ResumeSetup;

static const AdamWConfig RESUME_OPT = {0.9f, 0.95f, 1e-8f, 0.1f, 1.0f};

static void run_start(Run *r, const ResumeSetup *s) {
    char err[512];
    gpt2_cpu_build(&r->model, &s->cfg, s->B, s->T);
    gpt2_init_params(&s->cfg, r->model.params, 77);
    if (dataloader_init(&r->dl, s->pattern, s->B, s->T, 0, 1, s->cfg.vocab_size, 1, 2024, err, sizeof(err)) != 0) fatal("%s", err);
    rng_seed(&r->rng, 99);
    r->step = 0;
}

// One optimizer step over grad_accum micro-batches; returns the mean loss. The host RNG is drawn
// once per step (as a trainer would for sampling or stochastic rounding) and its draw is folded
// into the returned record through *draw.
static float run_step(Run *r, const ResumeSetup *s, uint64_t *draw) {
    char err[512];
    LRSchedule sched = {2e-3f, 2, s->total_steps, 0.1f};
    gpt2_cpu_zero_grad(&r->model);
    double loss = 0.0;
    for (int micro = 0; micro < s->grad_accum; micro++) {
        if (dataloader_next_batch(&r->dl, err, sizeof(err)) != 0) fatal("%s", err);
        loss += gpt2_cpu_forward(&r->model, r->dl.inputs, r->dl.targets);
        gpt2_cpu_backward(&r->model, s->grad_accum);
    }
    gpt2_cpu_update(&r->model, &RESUME_OPT, lr_schedule_at(&sched, r->step), r->step + 1);
    r->step++;
    *draw = rng_next_u64(&r->rng);
    return (float)(loss / s->grad_accum);
}

static TrainRunConfig run_config(const ResumeSetup *s) {
    TrainRunConfig c = {(uint64_t)s->B, (uint64_t)s->T, (uint64_t)s->B * s->T * s->grad_accum, 1, 0};
    return c;
}

// Saves model (fp32 or bf16 file) and training state next to it.
static int run_save(Run *r, const ResumeSetup *s, const char *model_path, const char *state_path, int version, char *err, size_t err_size) {
    if (model_file_write(model_path, &s->cfg, r->model.params, version, err, err_size) != 0) return -1;
    TrainState st;
    memset(&st, 0, sizeof(st));
    st.step = (uint64_t)r->step;
    st.num_parameters = r->model.layout.num_parameters;
    st.shard_offset = 0;
    st.shard_size = st.num_parameters;
    st.has_master = version == MODEL_FILE_VERSION_BF16;
    st.rng_state = r->rng.state;
    dataloader_get_position(&r->dl, &st.data);
    st.run = run_config(s);
    return train_state_write(state_path, &st, r->model.m, r->model.v, st.has_master ? r->model.params : NULL, err, err_size);
}

// Builds a fresh run from the files: parameters from the model file (then the fp32 masters when
// the state has them), moments, step, RNG and data position from the state.
static int run_load(Run *r, const ResumeSetup *s, const char *model_path, const char *state_path, char *err, size_t err_size) {
    GPT2Config got;
    int version;
    float *params;
    if (model_file_load(model_path, &s->cfg, &got, &version, &params, err, err_size) != 0) return -1;
    gpt2_cpu_build(&r->model, &got, s->B, s->T);
    memcpy(r->model.params, params, r->model.layout.num_parameters * sizeof(float));
    free(params);
    TrainRunConfig now = run_config(s);
    TrainState st;
    size_t np = r->model.layout.num_parameters;
    if (train_state_load(state_path, &now, np, 0, np, &st, r->model.m, r->model.v, r->model.params, err, err_size) != 0) return -1;
    if (dataloader_init(&r->dl, s->pattern, s->B, s->T, (int)now.rank, (int)now.world_size, s->cfg.vocab_size, 1, st.data.seed, err, err_size) != 0)
        return -1;
    if (dataloader_set_position(&r->dl, &st.data, err, err_size) != 0) return -1;
    rng_seed(&r->rng, st.rng_state);
    r->step = (int)st.step;
    return 0;
}

static void run_free(Run *r) {
    gpt2_cpu_free(&r->model);
    dataloader_free(&r->dl);
}

// Trains total_steps uninterrupted, then again with a stop after `stop` steps, save, free, load
// into fresh objects and continue: losses, RNG draws and final parameters must be bit-identical.
static void check_resume(const ResumeSetup *s, int stop, int version, const char *label) {
    float *losses = (float *)malloc_check((size_t)s->total_steps * sizeof(float));
    uint64_t *draws = (uint64_t *)malloc_check((size_t)s->total_steps * sizeof(uint64_t));
    Run a;
    run_start(&a, s);
    for (int i = 0; i < s->total_steps; i++) losses[i] = run_step(&a, s, &draws[i]);
    DataLoaderPosition end_a;
    dataloader_get_position(&a.dl, &end_a);

    char err[512];
    const char *model_path = tmp_path("resume_model.bin"), *state_path = tmp_path("resume_state.bin");
    Run b;
    run_start(&b, s);
    uint64_t draw;
    for (int i = 0; i < stop; i++) run_step(&b, s, &draw);
    int saved = run_save(&b, s, model_path, state_path, version, err, sizeof(err)) == 0;
    CHECK(saved, "%s: save failed: %s", label, err);
    run_free(&b);
    if (!saved) {
        run_free(&a);
        free(losses);
        free(draws);
        return;
    }
    Run c;
    int loaded = run_load(&c, s, model_path, state_path, err, sizeof(err)) == 0;
    CHECK(loaded, "%s: load failed: %s", label, err);
    if (loaded) {
        int mismatches = 0;
        for (int i = stop; i < s->total_steps; i++) {
            float loss = run_step(&c, s, &draw);
            int same = memcmp(&loss, &losses[i], sizeof(float)) == 0 && draw == draws[i];
            mismatches += !same;
            if (!same) printf("  %s: step %d loss %.9g (uninterrupted %.9g)\n", label, i, loss, losses[i]);
        }
        DataLoaderPosition end_c;
        dataloader_get_position(&c.dl, &end_c);
        CHECK(mismatches == 0, "%s: %d of the steps %d..%d differ from the uninterrupted run", label, mismatches, stop, s->total_steps - 1);
        size_t np = a.model.layout.num_parameters;
        CHECK(memcmp(a.model.params, c.model.params, np * 4) == 0 && memcmp(a.model.m, c.model.m, np * 4) == 0 &&
                  memcmp(a.model.v, c.model.v, np * 4) == 0,
              "%s: final parameters or moments differ", label);
        CHECK(memcmp(&end_a, &end_c, sizeof(end_a)) == 0, "%s: final data positions differ (epoch %llu pos %llu vs epoch %llu pos %llu)", label,
              (unsigned long long)end_a.epoch, (unsigned long long)end_a.position, (unsigned long long)end_c.epoch, (unsigned long long)end_c.position);
        printf("  %s: resumed at step %d of %d, losses %.6f .. %.6f bit-identical, data at epoch %llu window %llu\n", label, stop, s->total_steps,
               losses[stop], losses[s->total_steps - 1], (unsigned long long)end_c.epoch, (unsigned long long)end_c.position);
        // a resume with other run settings is refused
        ResumeSetup other = *s;
        other.grad_accum = s->grad_accum + 1;
        Run d;
        memset(&d, 0, sizeof(d));
        int rc = run_load(&d, &other, model_path, state_path, err, sizeof(err));
        CHECK(rc != 0 && strstr(err, "total batch size") != NULL, "%s: resume with another total batch accepted (%s)", label, err);
        if (d.model.params != NULL) gpt2_cpu_free(&d.model);
    }
    run_free(&c);
    run_free(&a);
    free(losses);
    free(draws);
}

// Writes a shard of `count` random tokens below `vocab` in the dataloader's format.
static void write_shard(const char *path, size_t count, int vocab, Rng *rng) {
    int32_t header[256];
    memset(header, 0, sizeof(header));
    header[0] = 20240520;
    header[1] = 1;
    header[2] = (int32_t)count;
    uint16_t *tokens = (uint16_t *)malloc_check(count * sizeof(uint16_t));
    // a learnable stream: mostly token i+1 after token i, sometimes a random jump
    uint16_t t = 0;
    for (size_t i = 0; i < count; i++) {
        t = rng_below(rng, 4) == 0 ? (uint16_t)rng_below(rng, (uint64_t)vocab) : (uint16_t)((t + 1) % vocab);
        tokens[i] = t;
    }
    FILE *f = fopen_check(path, "wb");
    fwrite_check(header, sizeof(header), 1, f);
    fwrite_check(tokens, sizeof(uint16_t), count, f);
    fclose(f);
    free(tokens);
}

// Synthetic shards small enough that the run crosses epochs (7 windows per epoch, 10 steps of 2
// micro-batches), so the resume must restore shuffled orders of later epochs.
static void test_resume_synthetic_shards(void) {
    Rng rng;
    rng_seed(&rng, 6);
    write_shard(tmp_path("syn_train_000.bin"), 4 * 32 + 1, 97, &rng);  // B*T = 32: 4 windows
    write_shard(tmp_path("syn_train_001.bin"), 3 * 32 + 5, 97, &rng);  // 3 windows
    ResumeSetup s;
    char pattern[512];
    snprintf(pattern, sizeof(pattern), "%s", tmp_path("syn_train_*.bin"));  // tmp_path's buffers are reused
    s.pattern = pattern;
    GPT2Config cfg = {16, 97, 128, 2, 2, 16};
    s.cfg = cfg;
    s.B = 2;
    s.T = 16;
    s.grad_accum = 2;
    s.total_steps = 10;
    check_resume(&s, 3, MODEL_FILE_VERSION_FP32, "synthetic fp32 file, mid-epoch");
    check_resume(&s, 7, MODEL_FILE_VERSION_BF16, "synthetic bf16 file + masters, epoch 2");
}

// The same on tinyshakespeare with the GPT-2 vocabulary.
static void test_resume_tinyshakespeare(void) {
    ResumeSetup s;
    s.pattern = TINYSHAKESPEARE_TRAIN;
    GPT2Config cfg = {32, 50257, 50304, 2, 2, 32};
    s.cfg = cfg;
    s.B = 2;
    s.T = 16;
    s.grad_accum = 1;
    s.total_steps = 6;
    check_resume(&s, 3, MODEL_FILE_VERSION_BF16, "tinyshakespeare bf16 file + masters");
}

// Removes the files the tests wrote and the temporary directory.
static void remove_tmp_dir(void) {
    DIR *d = opendir(tmp_dir);
    if (d == NULL) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", tmp_dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(tmp_dir);
}

int main(void) {
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/test_checkpoint.XXXXXX");
    if (mkdtemp(tmp_dir) == NULL) fatal("cannot create a temporary directory");
    RUN_TEST(test_model_file_fp32_roundtrip);
    RUN_TEST(test_model_file_bf16_roundtrip);
    RUN_TEST(test_model_file_rejects_corruption);
    if (file_exists(LLMC_FILES[0]) && file_exists(LLMC_FILES[1])) RUN_TEST(test_llmc_files_load);
    else SKIP_TEST(test_llmc_files_load, "llm.c's gpt2_124M.bin and gpt2_124M_bf16.bin are not in the working directory");
    RUN_TEST(test_atomic_writes);
    RUN_TEST(test_train_state_roundtrip_and_errors);
    RUN_TEST(test_resume_synthetic_shards);
    if (file_exists(TINYSHAKESPEARE_TRAIN)) RUN_TEST(test_resume_tinyshakespeare);
    else SKIP_TEST(test_resume_tinyshakespeare, TINYSHAKESPEARE_TRAIN " not found (run `make test-data`)");
    remove_tmp_dir();
    return testing_finish();
}
