// Tests for dataloader/dataloader.h on synthetic shards written into build/tmp: bad inputs are
// rejected with a message naming the file and the problem, batches match the files, ranks
// partition the windows of the single-rank pass, shuffling is a reproducible permutation, and a
// saved position resumes bit-identically. Sizes and tokens are random (seed printed; set
// TEST_SEED to repeat a run). Seed 0 is a valid shuffle seed; the order of the other seeds is pinned.
#define _GNU_SOURCE
#include <ftw.h>
#include <math.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dataloader/dataloader.h"
#include "test/testing.h"
#include "test/testing_files.h"

#define ERR_SIZE 512

static char tmp_dir[256];
// A uniform integer in lo..hi (inclusive).
// Writes a shard file with the given header fields followed by n tokens.
static void write_shard(const char *path, int magic, int version, int header_count, const uint16_t *tokens, size_t n) {
    int32_t header[SHARD_HEADER_INTS] = {0};
    header[0] = magic;
    header[1] = version;
    header[2] = header_count;
    FILE *f = fopen_check(path, "wb");
    fwrite_check(header, sizeof(int32_t), SHARD_HEADER_INTS, f);
    if (n > 0) fwrite_check(tokens, sizeof(uint16_t), n, f);
    fclose(f);
}

static uint16_t *random_tokens(size_t n, int vocab) {
    uint16_t *t = (uint16_t *)malloc_check(n * sizeof(uint16_t));
    for (size_t i = 0; i < n; i++) t[i] = (uint16_t)testing_rand_int(0, vocab - 1);
    return t;
}

// A valid shard of n random tokens.
static void write_good_shard(const char *path, size_t n, int vocab) {
    uint16_t *t = random_tokens(n, vocab);
    write_shard(path, SHARD_MAGIC, SHARD_VERSION, (int)n, t, n);
    free(t);
}

// Synthetic data set: shard files <tmp>/<name>-<serial>_NNN.bin with random sizes and tokens
// (the serial keeps data sets made under one name apart).
typedef struct {
    int num_shards;
    size_t sizes[16];
    uint16_t *tokens[16];
    char pattern[300];
} Dataset;

static void make_dataset(Dataset *ds, const char *name, int num_shards, size_t min_tokens, size_t max_tokens, int vocab) {
    static int serial = 0;
    serial++;
    ds->num_shards = num_shards;
    snprintf(ds->pattern, sizeof(ds->pattern), "%s/%s-%d_*.bin", tmp_dir, name, serial);
    for (int s = num_shards - 1; s >= 0; s--) {  // written in reverse: the loader must sort by name
        char path[300];
        snprintf(path, sizeof(path), "%s/%s-%d_%03d.bin", tmp_dir, name, serial, s);
        ds->sizes[s] = min_tokens + (size_t)(testing_rand_u64() % (max_tokens - min_tokens + 1));
        ds->tokens[s] = random_tokens(ds->sizes[s], vocab);
        write_shard(path, SHARD_MAGIC, SHARD_VERSION, (int)ds->sizes[s], ds->tokens[s], ds->sizes[s]);
    }
}

static void free_dataset(Dataset *ds) {
    for (int s = 0; s < ds->num_shards; s++) free(ds->tokens[s]);
}

static size_t dataset_windows(const Dataset *ds, int B, int T) {
    size_t w = 0;
    for (int s = 0; s < ds->num_shards; s++) w += (ds->sizes[s] - 1) / ((size_t)B * T);
    return w;
}

// Reads `count` batches into out[count][2*B*T] (inputs then targets); returns the number read
// before an error (count when all succeeded).
static size_t read_batches(DataLoader *dl, size_t count, int *out, char *err) {
    size_t n = (size_t)dl->B * dl->T;
    for (size_t k = 0; k < count; k++) {
        if (dataloader_next_batch(dl, err, ERR_SIZE) != 0) return k;
        memcpy(out + k * 2 * n, dl->inputs, n * sizeof(int));
        memcpy(out + k * 2 * n + n, dl->targets, n * sizeof(int));
    }
    return count;
}

static size_t record_size = 0;  // ints per batch record, for qsort
static int compare_records(const void *a, const void *b) { return memcmp(a, b, record_size * sizeof(int)); }

// Sorts `count` records of `len` ints.
static void sort_records(int *records, size_t count, size_t len) {
    record_size = len;
    qsort(records, count, len * sizeof(int), compare_records);
}

static int open_loader(DataLoader *dl, const char *pattern, int B, int T, int rank, int world, int vocab, int shuffle,
                       uint64_t seed) {
    char err[ERR_SIZE];
    int rc = dataloader_init(dl, pattern, B, T, rank, world, vocab, shuffle, seed, err, sizeof(err));
    CHECK(rc == 0, "init failed: %s", err);
    return rc;
}

// Expects init to fail with a message that contains `what` and `problem`.
static void expect_init_error(const char *pattern, int B, int T, int rank, int world, int vocab, int shuffle,
                              uint64_t seed, const char *what, const char *problem) {
    DataLoader dl;
    char err[ERR_SIZE] = "";
    int rc = dataloader_init(&dl, pattern, B, T, rank, world, vocab, shuffle, seed, err, sizeof(err));
    CHECK(rc != 0, "init accepted a bad input (expected '%s' about '%s')", problem, what);
    CHECK(strstr(err, what) != NULL, "message does not name '%s': %s", what, err);
    CHECK(strstr(err, problem) != NULL, "message does not say '%s': %s", problem, err);
    if (rc == 0) dataloader_free(&dl);
}

static void test_bad_arguments(void) {
    Dataset ds;
    make_dataset(&ds, "args", 1, 200, 300, 1000);
    expect_init_error(ds.pattern, 0, 4, 0, 1, 1000, 0, 0, "B=0", "at least 1");
    expect_init_error(ds.pattern, 4, 0, 0, 1, 1000, 0, 0, "T=0", "at least 1");
    expect_init_error(ds.pattern, 1 << 20, 1 << 12, 0, 1, 1000, 0, 0, "B*T", "too large");
    expect_init_error(ds.pattern, 4, 4, 0, 0, 1000, 0, 0, "world size 0", "at least 1");
    expect_init_error(ds.pattern, 4, 4, -1, 2, 1000, 0, 0, "rank -1", "outside");
    expect_init_error(ds.pattern, 4, 4, 2, 2, 1000, 0, 0, "rank 2", "outside");
    expect_init_error(ds.pattern, 4, 4, 0, 1, 0, 0, 0, "vocab_size 0", "outside");
    expect_init_error(ds.pattern, 4, 4, 0, 1, 65537, 0, 0, "vocab_size 65537", "outside");
    free_dataset(&ds);
}

// Each case: a good shard <case>_000.bin and a bad one <case>_001.bin; the message must name the bad file.
static void test_bad_files(void) {
    const int B = 2, T = 8, V = 500;
    char pattern[300], good[300], bad[300];
    uint16_t *tokens = random_tokens(400, V);
#define CASE_PATHS(name)                                                   \
    snprintf(pattern, sizeof(pattern), "%s/%s_*.bin", tmp_dir, name);      \
    snprintf(good, sizeof(good), "%s/%s_000.bin", tmp_dir, name);          \
    snprintf(bad, sizeof(bad), "%s/%s_001.bin", tmp_dir, name);            \
    write_good_shard(good, 100, V)

    snprintf(pattern, sizeof(pattern), "%s/nothing_*.bin", tmp_dir);
    expect_init_error(pattern, B, T, 0, 1, V, 0, 0, pattern, "no file matches");

    CASE_PATHS("dangling");  // a link to nothing: listed by the glob, cannot be opened
    char target[320];
    snprintf(target, sizeof(target), "%s/no_such_target", tmp_dir);
    CHECK(symlink(target, bad) == 0, "symlink failed");
    expect_init_error(pattern, B, T, 0, 1, V, 0, 0, bad, "cannot open");

    CASE_PATHS("directory");  // a directory named like a shard: opens, cannot be read
    CHECK(mkdir(bad, 0755) == 0, "mkdir failed");
    expect_init_error(pattern, B, T, 0, 1, V, 0, 0, bad, "cannot read");

    CASE_PATHS("short");
    FILE *f = fopen_check(bad, "wb");
    fwrite_check(tokens, 1, 100, f);
    fclose(f);
    expect_init_error(pattern, B, T, 0, 1, V, 0, 0, bad, "shorter than the 1024-byte shard header");

    CASE_PATHS("magic");
    write_shard(bad, 20240521, SHARD_VERSION, 100, tokens, 100);
    expect_init_error(pattern, B, T, 0, 1, V, 0, 0, bad, "wrong magic number 20240521");

    CASE_PATHS("version");
    write_shard(bad, SHARD_MAGIC, 2, 100, tokens, 100);
    expect_init_error(pattern, B, T, 0, 1, V, 0, 0, bad, "unsupported shard version 2");

    CASE_PATHS("negative");
    write_shard(bad, SHARD_MAGIC, SHARD_VERSION, -7, tokens, 100);
    expect_init_error(pattern, B, T, 0, 1, V, 0, 0, bad, "negative token count -7");

    CASE_PATHS("truncated");
    write_shard(bad, SHARD_MAGIC, SHARD_VERSION, 300, tokens, 299);
    expect_init_error(pattern, B, T, 0, 1, V, 0, 0, bad, "header token count 300 needs a file of 1624 bytes, but the file has 1622 bytes (truncated)");

    CASE_PATHS("trailing");
    write_shard(bad, SHARD_MAGIC, SHARD_VERSION, 300, tokens, 301);
    expect_init_error(pattern, B, T, 0, 1, V, 0, 0, bad, "(trailing data)");

    CASE_PATHS("small");  // B*T + 1 = 17 tokens make one window; 16 do not
    write_shard(bad, SHARD_MAGIC, SHARD_VERSION, 16, tokens, 16);
    expect_init_error(pattern, B, T, 0, 1, V, 0, 0, bad, "shard too small: 16 tokens");

    CASE_PATHS("vocab");  // a token == vocab_size in the first shard loaded is found during init
    uint16_t saved = tokens[123];
    tokens[123] = (uint16_t)V;
    snprintf(bad, sizeof(bad), "%s/vocab_000.bin", tmp_dir);  // this case's bad file is the first one
    write_shard(bad, SHARD_MAGIC, SHARD_VERSION, 200, tokens, 200);
    expect_init_error(pattern, B, T, 0, 1, V, 0, 0, bad, "token 500 at index 123 is out of range (vocab_size 500)");
    tokens[123] = saved;

    // 100 + 60 tokens hold 6 + 3 windows of 17: too few for 10 ranks
    CASE_PATHS("fewwindows");
    write_shard(bad, SHARD_MAGIC, SHARD_VERSION, 60, tokens, 60);
    expect_init_error(pattern, B, T, 0, 10, V, 0, 0, pattern, "holds 9 windows");
    free(tokens);
#undef CASE_PATHS
}

// A token out of range in a later shard is reported when the loader reaches that shard.
static void test_bad_token_in_later_shard(void) {
    const int B = 3, T = 5, V = 1000;
    Dataset ds;
    make_dataset(&ds, "latebad", 3, 40, 90, V);
    char bad[300];
    snprintf(bad, sizeof(bad), "%.*s002.bin", (int)strlen(ds.pattern) - 5, ds.pattern);
    ds.tokens[2][ds.sizes[2] - 1] = 65535;
    write_shard(bad, SHARD_MAGIC, SHARD_VERSION, (int)ds.sizes[2], ds.tokens[2], ds.sizes[2]);
    DataLoader dl;
    if (open_loader(&dl, ds.pattern, B, T, 0, 1, V, 0, 0) == 0) {
        size_t good_windows = (ds.sizes[0] - 1) / (B * T) + (ds.sizes[1] - 1) / (B * T);
        char err[ERR_SIZE] = "";
        int *out = (int *)malloc_check((good_windows + 1) * 2 * B * T * sizeof(int));
        size_t got = read_batches(&dl, good_windows + 1, out, err);
        CHECK(got == good_windows, "read %zu batches before the error, expected %zu", got, good_windows);
        CHECK(strstr(err, bad) != NULL && strstr(err, "token 65535") != NULL && strstr(err, "out of range") != NULL,
              "unexpected message: %s", err);
        free(out);
        dataloader_free(&dl);
    }
    free_dataset(&ds);
}

// Single rank, no shuffle: batch k is window k of the shards in name order, windows at multiples of B*T.
static void test_batches_match_files(void) {
    for (int trial = 0; trial < 5; trial++) {
        int B = testing_rand_int(1, 4), T = testing_rand_int(1, 16), V = testing_rand_int(2, 65536);
        Dataset ds;
        make_dataset(&ds, "match", testing_rand_int(1, 5), (size_t)B * T + 1, (size_t)B * T * 6 + 10, V);
        size_t W = dataset_windows(&ds, B, T), n = (size_t)B * T;
        DataLoader dl;
        if (open_loader(&dl, ds.pattern, B, T, 0, 1, V, 0, 0) != 0) { free_dataset(&ds); continue; }
        CHECK(dataloader_batches_per_epoch(&dl) == W, "batches per epoch %zu, expected %zu", dataloader_batches_per_epoch(&dl), W);
        char err[ERR_SIZE];
        size_t mismatches = 0;
        for (int epoch = 0; epoch < 2; epoch++) {
            for (int s = 0; s < ds.num_shards; s++) {
                for (size_t w = 0; w < (ds.sizes[s] - 1) / n; w++) {
                    DataLoaderPosition pos;
                    dataloader_get_position(&dl, &pos);
                    int rc = dataloader_next_batch(&dl, err, sizeof(err));
                    CHECK(rc == 0, "next_batch failed: %s", err);
                    if (rc != 0) break;
                    if (pos.epoch != (uint64_t)epoch || pos.seed != 0 || pos.shuffle != 0) mismatches++;
                    const uint16_t *expect = ds.tokens[s] + w * n;
                    for (size_t i = 0; i < n; i++) {
                        if (dl.inputs[i] != expect[i] || dl.targets[i] != expect[i + 1]) mismatches++;
                    }
                }
            }
        }
        CHECK(mismatches == 0, "%zu token or position mismatches (B=%d T=%d, %d shards)", mismatches, B, T, ds.num_shards);
        DataLoaderPosition pos;
        dataloader_get_position(&dl, &pos);
        CHECK(pos.epoch == 2 && pos.position == 0, "after two epochs at epoch %llu position %llu",
              (unsigned long long)pos.epoch, (unsigned long long)pos.position);
        dataloader_free(&dl);
        free_dataset(&ds);
    }
}

// Ranks r of R: batch j of an epoch is window j*R + r of the single-rank order (same seed), so
// the ranks are disjoint and together cover that order up to the dropped last partial round.
static void test_rank_sharding(void) {
    const int V = 65536;
    for (int shuffle = 0; shuffle <= 1; shuffle++) {
        int B = testing_rand_int(1, 3), T = testing_rand_int(2, 12);
        Dataset ds;
        make_dataset(&ds, shuffle ? "ranks_shuf" : "ranks_seq", testing_rand_int(2, 5), (size_t)B * T + 1, (size_t)B * T * 9, V);
        uint64_t seed = shuffle ? testing_rand_u64() | 1 : 0;
        size_t W = dataset_windows(&ds, B, T), n2 = 2 * (size_t)B * T;
        DataLoader ref;
        if (open_loader(&ref, ds.pattern, B, T, 0, 1, V, shuffle, seed) != 0) { free_dataset(&ds); continue; }
        char err[ERR_SIZE];
        int *ref_batches = (int *)malloc_check(2 * W * n2 * sizeof(int));  // two epochs
        CHECK(read_batches(&ref, 2 * W, ref_batches, err) == 2 * W, "reference pass failed: %s", err);
        for (int R = 2; R <= 4; R++) {
            if ((size_t)R > W) continue;
            size_t per_rank = W / (size_t)R;
            int *all = (int *)malloc_check((size_t)R * per_rank * n2 * sizeof(int));
            int *batch = (int *)malloc_check(2 * per_rank * n2 * sizeof(int));
            size_t wrong = 0;
            for (int r = 0; r < R; r++) {
                DataLoader dl;
                if (open_loader(&dl, ds.pattern, B, T, r, R, V, shuffle, seed) != 0) continue;
                CHECK(dataloader_batches_per_epoch(&dl) == per_rank, "R=%d: %zu batches per epoch, expected %zu", R,
                      dataloader_batches_per_epoch(&dl), per_rank);
                CHECK(read_batches(&dl, 2 * per_rank, batch, err) == 2 * per_rank, "rank %d of %d failed: %s", r, R, err);
                for (int e = 0; e < 2; e++) {
                    for (size_t j = 0; j < per_rank; j++) {
                        const int *expect = ref_batches + ((size_t)e * W + j * R + r) * n2;
                        if (memcmp(batch + ((size_t)e * per_rank + j) * n2, expect, n2 * sizeof(int)) != 0) wrong++;
                    }
                }
                memcpy(all + (size_t)r * per_rank * n2, batch, per_rank * n2 * sizeof(int));
                dataloader_free(&dl);
            }
            CHECK(wrong == 0, "shuffle=%d R=%d: %zu batches differ from windows j*R+r of the single-rank pass", shuffle, R, wrong);
            sort_records(all, (size_t)R * per_rank, n2);  // random tokens: distinct windows never compare equal
            size_t repeats = 0;
            for (size_t i = 1; i < (size_t)R * per_rank; i++) repeats += memcmp(all + (i - 1) * n2, all + i * n2, n2 * sizeof(int)) == 0;
            CHECK(repeats == 0, "shuffle=%d R=%d: %zu windows read by two ranks in one epoch", shuffle, R, repeats);
            free(all);
            free(batch);
        }
        free(ref_batches);
        dataloader_free(&ref);
        free_dataset(&ds);
    }
}

// Reads one epoch of a single-rank loader into out[W][2*B*T].
static void read_epoch(const char *pattern, int B, int T, int V, int shuffle, uint64_t seed, int skip_epochs, size_t W, int *out) {
    DataLoader dl;
    if (open_loader(&dl, pattern, B, T, 0, 1, V, shuffle, seed) != 0) return;
    char err[ERR_SIZE];
    for (int e = 0; e <= skip_epochs; e++) CHECK(read_batches(&dl, W, out, err) == W, "epoch %d failed: %s", e, err);
    dataloader_free(&dl);
}

static void test_shuffle(void) {
    const int B = 2, T = 6, V = 65536;
    size_t n2 = 2 * B * T;
    Dataset ds;
    make_dataset(&ds, "shuffle", 4, B * T * 3 + 1, B * T * 12, V);
    size_t W = dataset_windows(&ds, B, T);
    int *seq = (int *)malloc_check(W * n2 * sizeof(int));
    int *a = (int *)malloc_check(W * n2 * sizeof(int));
    int *b = (int *)malloc_check(W * n2 * sizeof(int));
    int *a1 = (int *)malloc_check(W * n2 * sizeof(int));
    read_epoch(ds.pattern, B, T, V, 0, 0, 0, W, seq);
    read_epoch(ds.pattern, B, T, V, 1, 1234, 0, W, a);
    read_epoch(ds.pattern, B, T, V, 1, 1234, 0, W, b);
    CHECK(memcmp(a, b, W * n2 * sizeof(int)) == 0, "the same seed gave two different orders");
    read_epoch(ds.pattern, B, T, V, 1, 1235, 0, W, b);
    CHECK(memcmp(a, b, W * n2 * sizeof(int)) != 0, "seeds 1234 and 1235 gave the same order");
    CHECK(memcmp(a, seq, W * n2 * sizeof(int)) != 0, "the shuffled order is the sequential one");
    read_epoch(ds.pattern, B, T, V, 1, 1234, 1, W, a1);
    CHECK(memcmp(a, a1, W * n2 * sizeof(int)) != 0, "epochs 0 and 1 have the same order");
    // each shuffled epoch holds every window exactly once
    sort_records(seq, W, n2);
    sort_records(a, W, n2);
    sort_records(a1, W, n2);
    CHECK(memcmp(a, seq, W * n2 * sizeof(int)) == 0, "epoch 0 is not a permutation of the windows");
    CHECK(memcmp(a1, seq, W * n2 * sizeof(int)) == 0, "epoch 1 is not a permutation of the windows");
    free(seq); free(a); free(b); free(a1);
    free_dataset(&ds);

    // the shard order itself is shuffled: 8 shards of one window each
    Dataset one;
    make_dataset(&one, "shardorder", 8, B * T + 1, 2 * B * T, V);
    int *order = (int *)malloc_check(8 * n2 * sizeof(int));
    read_epoch(one.pattern, B, T, V, 1, 99, 0, 8, order);
    size_t moved = 0;
    for (int s = 0; s < 8; s++) moved += order[s * n2] != (int)one.tokens[s][0];
    CHECK(moved > 0, "seed 99 kept the shard order");
    free(order);
    free_dataset(&one);
    // and the windows within one shard: one shard of 20 windows
    Dataset single;
    make_dataset(&single, "windoworder", 1, 20 * B * T + 1, 20 * B * T + 1, V);
    int *win = (int *)malloc_check(20 * n2 * sizeof(int));
    read_epoch(single.pattern, B, T, V, 1, 99, 0, 20, win);
    moved = 0;
    for (int w = 0; w < 20; w++) moved += win[w * n2] != (int)single.tokens[0][w * B * T];
    CHECK(moved > 0, "seed 99 kept the window order of a shard");
    free(win);
    free_dataset(&single);
}

// The shuffle is uniform: over many keys, each element lands on each place of a permutation of n
// with frequency 1/n, within 5 standard deviations of the binomial count.
static void test_permutation_uniform(void) {
    const int draws = 6000;
    size_t order[5];
    for (size_t n = 2; n <= 5; n++) {
        int counts[5][5] = {{0}};
        for (int d = 0; d < draws; d++) {
            dataloader_permutation(order, n, 1, testing_rand_u64());
            for (size_t place = 0; place < n; place++) counts[place][order[place]]++;
        }
        double p = 1.0 / (double)n, expect = draws * p, tol = 5.0 * sqrt(draws * p * (1.0 - p));
        for (size_t place = 0; place < n; place++) {
            for (size_t e = 0; e < n; e++) {
                CHECK(fabs(counts[place][e] - expect) <= tol, "n=%zu: element %zu at place %zu %d times, expected %.0f +- %.0f",
                      n, e, place, counts[place][e], expect, tol);
            }
        }
    }
}

// Saving the position after k batches and restoring it in a new loader gives the same next
// batches, for random k across shards and epochs, with and without shuffle, for several ranks.
static void test_resume(void) {
    const int V = 50257;
    for (int trial = 0; trial < 6; trial++) {
        int shuffle = trial % 2, R = (trial / 2) % 3 + 1;
        int B = testing_rand_int(1, 3), T = testing_rand_int(2, 10), rank = testing_rand_int(0, R - 1);
        uint64_t seed = shuffle ? testing_rand_u64() | 1 : 0;
        Dataset ds;
        make_dataset(&ds, "resume", testing_rand_int(2, 4), (size_t)B * T * R + 1, (size_t)B * T * 8 * R, V);
        size_t n2 = 2 * (size_t)B * T;
        DataLoader dl;
        if (open_loader(&dl, ds.pattern, B, T, rank, R, V, shuffle, seed) != 0) { free_dataset(&ds); continue; }
        size_t per_epoch = dataloader_batches_per_epoch(&dl), total = 4 * per_epoch;
        char err[ERR_SIZE];
        int *ref = (int *)malloc_check(total * n2 * sizeof(int));
        CHECK(read_batches(&dl, total, ref, err) == total, "reference read failed: %s", err);
        int *again = (int *)malloc_check(total * n2 * sizeof(int));
        for (int probe = 0; probe < 4; probe++) {
            size_t k = (size_t)testing_rand_int(0, (int)(3 * per_epoch) - 2);
            DataLoaderPosition pos;
            dataloader_reset(&dl);
            CHECK(read_batches(&dl, k, again, err) == k, "read failed: %s", err);
            dataloader_get_position(&dl, &pos);
            CHECK(pos.shuffle == (uint64_t)shuffle && pos.seed == seed && pos.epoch == k / per_epoch && pos.position == (k % per_epoch) * R,
                  "after %zu batches: shuffle %llu seed %llu epoch %llu position %llu", k, (unsigned long long)pos.shuffle,
                  (unsigned long long)pos.seed, (unsigned long long)pos.epoch, (unsigned long long)pos.position);
            DataLoader resumed;
            if (open_loader(&resumed, ds.pattern, B, T, rank, R, V, shuffle, seed) != 0) continue;
            int rc = dataloader_set_position(&resumed, &pos, err, sizeof(err));
            CHECK(rc == 0, "set_position failed: %s", err);
            CHECK(read_batches(&resumed, per_epoch + 2, again, err) == per_epoch + 2, "resumed read failed: %s", err);
            CHECK(memcmp(again, ref + k * n2, (per_epoch + 2) * n2 * sizeof(int)) == 0,
                  "shuffle=%d R=%d rank %d: batches after resuming at batch %zu differ", shuffle, R, rank, k);
            dataloader_free(&resumed);
        }
        // reset: back to the first batch
        dataloader_reset(&dl);
        CHECK(read_batches(&dl, 3, again, err) == 3 && memcmp(again, ref, 3 * n2 * sizeof(int)) == 0,
              "after reset the batches differ from the first ones");
        free(again);
        free(ref);
        dataloader_free(&dl);
        free_dataset(&ds);
    }
}

// Positions from another seed or beyond the data are refused; a position saved with 2 ranks
// resumes a single-rank loader at the same global window.
static void test_position_checks(void) {
    const int B = 2, T = 4, V = 300;
    Dataset ds;
    make_dataset(&ds, "poscheck", 2, 60, 120, V);
    size_t W = dataset_windows(&ds, B, T), n2 = 2 * B * T;
    char err[ERR_SIZE] = "";
    DataLoader plain, shuffled;
    if (open_loader(&plain, ds.pattern, B, T, 0, 1, V, 0, 0) != 0) { free_dataset(&ds); return; }
    if (open_loader(&shuffled, ds.pattern, B, T, 0, 1, V, 1, 77) != 0) { dataloader_free(&plain); free_dataset(&ds); return; }
    DataLoaderPosition pos;
    dataloader_get_position(&shuffled, &pos);
    CHECK(dataloader_set_position(&plain, &pos, err, sizeof(err)) != 0 &&
              strstr(err, "the saved position belongs to the order shuffled with seed 77, but this loader does not shuffle") != NULL,
          "a shuffled position was accepted by an unshuffled loader: %s", err);
    pos.seed = 78;
    CHECK(dataloader_set_position(&shuffled, &pos, err, sizeof(err)) != 0 &&
              strstr(err, "belongs to the order shuffled with seed 78, but this loader shuffles with seed 77") != NULL,
          "a position of another seed was accepted: %s", err);
    pos.seed = 0;
    pos.shuffle = 0;
    CHECK(dataloader_set_position(&shuffled, &pos, err, sizeof(err)) != 0 &&
              strstr(err, "belongs to the sequential order (no shuffle), but this loader shuffles with seed 77") != NULL,
          "an unshuffled position was accepted by a shuffled loader: %s", err);
    pos.shuffle = 2;
    CHECK(dataloader_set_position(&plain, &pos, err, sizeof(err)) != 0 && strstr(err, "bad shuffle flag 2") != NULL,
          "a shuffle flag of 2 was accepted: %s", err);
    pos.shuffle = 0;
    pos.position = W + 1;
    CHECK(dataloader_set_position(&plain, &pos, err, sizeof(err)) != 0 && strstr(err, "beyond") != NULL,
          "a position beyond the epoch was accepted: %s", err);

    int *ref = (int *)malloc_check(W * n2 * sizeof(int));
    int *got = (int *)malloc_check(W * n2 * sizeof(int));
    dataloader_reset(&plain);
    CHECK(read_batches(&plain, W, ref, err) == W, "read failed: %s", err);
    DataLoader two;
    if (open_loader(&two, ds.pattern, B, T, 1, 2, V, 0, 0) == 0) {
        size_t k = W / 4;
        CHECK(read_batches(&two, k, got, err) == k, "read failed: %s", err);
        dataloader_get_position(&two, &pos);
        CHECK(dataloader_set_position(&plain, &pos, err, sizeof(err)) == 0, "set_position failed: %s", err);
        size_t rest = W - 2 * k;
        CHECK(read_batches(&plain, rest, got, err) == rest, "read failed: %s", err);
        CHECK(memcmp(got, ref + 2 * k * n2, rest * n2 * sizeof(int)) == 0, "world-size change: resumed at the wrong window");
        dataloader_free(&two);
    }
    free(ref);
    free(got);
    dataloader_free(&plain);
    dataloader_free(&shuffled);
    free_dataset(&ds);
}

// Seed 0 is a shuffle seed like any other (--seed 0 is inside the flag's range): it shuffles, every
// epoch is a permutation of the windows, its position says "shuffled" (an unshuffled loader, whose
// seed is also 0, refuses it, and the other way round), and it resumes exactly, also with 2 ranks.
static void test_seed_zero_shuffles(void) {
    const int B = 2, T = 5, V = 65536;
    const size_t n2 = 2 * (size_t)B * T;
    Dataset ds;
    make_dataset(&ds, "seedzero", 4, (size_t)B * T * 4 + 1, (size_t)B * T * 10, V);
    const size_t W = dataset_windows(&ds, B, T);
    int *seq = (int *)malloc_check(W * n2 * sizeof(int));
    int *z0 = (int *)malloc_check(W * n2 * sizeof(int));
    int *z1 = (int *)malloc_check(W * n2 * sizeof(int));
    int *one = (int *)malloc_check(W * n2 * sizeof(int));
    read_epoch(ds.pattern, B, T, V, 0, 0, 0, W, seq);
    read_epoch(ds.pattern, B, T, V, 1, 0, 0, W, z0);
    read_epoch(ds.pattern, B, T, V, 1, 0, 1, W, z1);
    read_epoch(ds.pattern, B, T, V, 1, 1, 0, W, one);
    CHECK(memcmp(z0, seq, W * n2 * sizeof(int)) != 0, "seed 0 gave the sequential order");
    CHECK(memcmp(z0, z1, W * n2 * sizeof(int)) != 0, "seed 0: epochs 0 and 1 have the same order");
    CHECK(memcmp(z0, one, W * n2 * sizeof(int)) != 0, "seeds 0 and 1 gave the same order");
    sort_records(seq, W, n2);
    sort_records(z0, W, n2);
    sort_records(z1, W, n2);
    CHECK(memcmp(z0, seq, W * n2 * sizeof(int)) == 0 && memcmp(z1, seq, W * n2 * sizeof(int)) == 0,
          "a seed-0 epoch is not a permutation of the windows");
    free(seq); free(z0); free(z1); free(one);

    char err[ERR_SIZE] = "";
    for (int R = 1; R <= 2; R++) {
        for (int rank = 0; rank < R; rank++) {
            DataLoader dl, resumed, plain;
            if (open_loader(&dl, ds.pattern, B, T, rank, R, V, 1, 0) != 0) continue;
            const size_t per_epoch = dataloader_batches_per_epoch(&dl), total = 3 * per_epoch;
            int *ref = (int *)malloc_check(total * n2 * sizeof(int));
            int *again = (int *)malloc_check(total * n2 * sizeof(int));
            CHECK(read_batches(&dl, total, ref, err) == total, "reference read failed: %s", err);
            const size_t stops[3] = {1, per_epoch + per_epoch / 2, 2 * per_epoch - 1};
            for (int i = 0; i < 3; i++) {
                const size_t k = stops[i];
                dataloader_reset(&dl);
                CHECK(read_batches(&dl, k, again, err) == k, "read failed: %s", err);
                DataLoaderPosition pos;
                dataloader_get_position(&dl, &pos);
                CHECK(pos.shuffle == 1 && pos.seed == 0 && pos.epoch == k / per_epoch, "after %zu batches: shuffle %llu seed %llu epoch %llu", k,
                      (unsigned long long)pos.shuffle, (unsigned long long)pos.seed, (unsigned long long)pos.epoch);
                if (open_loader(&resumed, ds.pattern, B, T, rank, R, V, 1, 0) != 0) continue;
                CHECK(dataloader_set_position(&resumed, &pos, err, sizeof(err)) == 0, "set_position failed: %s", err);
                const size_t rest = total - k;
                CHECK(read_batches(&resumed, rest, again, err) == rest, "resumed read failed: %s", err);
                CHECK(memcmp(again, ref + k * n2, rest * n2 * sizeof(int)) == 0, "seed 0, R=%d rank %d: batches after resuming at %zu differ", R,
                      rank, k);
                dataloader_free(&resumed);
                // an unshuffled loader (seed 0 as well) refuses the shuffled position, and the other way round
                if (open_loader(&plain, ds.pattern, B, T, rank, R, V, 0, 0) != 0) continue;
                CHECK(dataloader_set_position(&plain, &pos, err, sizeof(err)) != 0 &&
                          strstr(err, "belongs to the order shuffled with seed 0, but this loader does not shuffle") != NULL,
                      "an unshuffled loader accepted a seed-0 shuffled position: %s", err);
                DataLoaderPosition plain_pos;
                dataloader_get_position(&plain, &plain_pos);
                if (open_loader(&resumed, ds.pattern, B, T, rank, R, V, 1, 0) == 0) {
                    CHECK(dataloader_set_position(&resumed, &plain_pos, err, sizeof(err)) != 0 &&
                              strstr(err, "belongs to the sequential order (no shuffle), but this loader shuffles with seed 0") != NULL,
                          "a seed-0 shuffled loader accepted an unshuffled position: %s", err);
                    dataloader_free(&resumed);
                }
                dataloader_free(&plain);
            }
            free(ref);
            free(again);
            dataloader_free(&dl);
        }
    }
    free_dataset(&ds);
}

// The shuffled order of nonzero seeds is pinned to the values of the builds before seed 0 was allowed
// (the GPU proof compares losses bit for bit with older binaries): 3 shards of 5, 3 and 4 windows of
// B*T = 6 tokens, where token i of shard s is 1000*s + i, so a batch's first input names its window.
static void test_shuffle_order_pinned(void) {
    const int B = 2, T = 3, V = 65536, windows[3] = {5, 3, 4};
    char pattern[300];
    snprintf(pattern, sizeof(pattern), "%s/pinned_*.bin", tmp_dir);
    for (int s = 0; s < 3; s++) {
        const size_t n = (size_t)windows[s] * B * T + 1;
        uint16_t *tokens = (uint16_t *)malloc_check(n * sizeof(uint16_t));
        for (size_t i = 0; i < n; i++) tokens[i] = (uint16_t)(1000 * s + (int)i);
        char path[300];
        snprintf(path, sizeof(path), "%s/pinned_%03d.bin", tmp_dir, s);
        write_shard(path, SHARD_MAGIC, SHARD_VERSION, (int)n, tokens, n);
        free(tokens);
    }
    // the first input of each batch over three epochs (12 windows each)
    static const int expect_1234[36] = {1012, 1006, 1000, 0, 12, 24, 6, 18, 2012, 2018, 2006, 2000,
                                        1006, 1012, 1000, 0, 12, 18, 6, 24, 2006, 2012, 2018, 2000,
                                        1006, 1012, 1000, 2018, 2012, 2000, 2006, 24, 18, 0, 6, 12};
    static const int expect_big[36] = {24, 18, 6, 12, 0, 1012, 1000, 1006, 2000, 2006, 2018, 2012,
                                       1006, 1012, 1000, 18, 6, 24, 12, 0, 2000, 2006, 2018, 2012,
                                       18, 12, 24, 6, 0, 2000, 2018, 2006, 2012, 1012, 1006, 1000};
    const uint64_t seeds[2] = {1234, 0xFEDCBA9876543210ull};
    const int *expect[2] = {expect_1234, expect_big};
    for (int k = 0; k < 2; k++) {
        DataLoader dl;
        if (open_loader(&dl, pattern, B, T, 0, 1, V, 1, seeds[k]) != 0) continue;
        char err[ERR_SIZE];
        int wrong = 0;
        for (int b = 0; b < 36; b++) {
            CHECK(dataloader_next_batch(&dl, err, sizeof(err)) == 0, "next_batch failed: %s", err);
            if (dl.inputs[0] != expect[k][b]) {
                if (wrong++ == 0) printf("  seed %llu: batch %d starts with token %d, expected %d\n", (unsigned long long)seeds[k], b, dl.inputs[0],
                                         expect[k][b]);
            }
        }
        CHECK(wrong == 0, "seed %llu: %d of 36 batches are not the pinned windows", (unsigned long long)seeds[k], wrong);
        dataloader_free(&dl);
    }
}

// The tinyshakespeare shards of `make test-data` load with the GPT-2 vocabulary.
static void test_real_shards(void) {
    DataLoader dl;
    char err[ERR_SIZE];
    if (open_loader(&dl, "build/data/tinyshakespeare/tiny_shakespeare_*.bin", 4, 64, 0, 1, 50257, 0, 0) != 0) return;
    CHECK(dl.num_shards == 2, "expected the train and val shards, found %d", dl.num_shards);
    DataLoader val;
    if (open_loader(&val, "build/data/tinyshakespeare/tiny_shakespeare_val.bin", 4, 64, 0, 1, 50257, 0, 0) == 0) {
        CHECK(dataloader_next_batch(&val, err, sizeof(err)) == 0, "next_batch failed: %s", err);
        CHECK(val.inputs[0] == 50256 && val.inputs[1] == 5962 && val.targets[0] == 5962, "val starts %d %d", val.inputs[0],
              val.inputs[1]);
        dataloader_free(&val);
    }
    dataloader_free(&dl);
}

int main(void) {
    testing_seed("test_dataloader");
    testing_tmpdir_create(tmp_dir, sizeof(tmp_dir), "test_dataloader");

    RUN_TEST(test_bad_arguments);
    RUN_TEST(test_bad_files);
    RUN_TEST(test_bad_token_in_later_shard);
    RUN_TEST(test_batches_match_files);
    RUN_TEST(test_rank_sharding);
    RUN_TEST(test_shuffle);
    RUN_TEST(test_permutation_uniform);
    RUN_TEST(test_resume);
    RUN_TEST(test_position_checks);
    RUN_TEST(test_seed_zero_shuffles);
    RUN_TEST(test_shuffle_order_pinned);
    if (access("build/data/tinyshakespeare/tiny_shakespeare_val.bin", R_OK) == 0) RUN_TEST(test_real_shards);
    else SKIP_TEST(test_real_shards, "build/data/tinyshakespeare absent (make test-data)");

    testing_tmpdir_remove(tmp_dir);
    return testing_finish();
}
