// Tests of core/checkpoint.h, gpt2_model.h's model files and core/train_state.h: llm.c model files
// (fp32 and bf16) round trips and header fields, rejection of corrupt files with messages (also
// headers whose sizes overflow), atomic writes, the sectioned training-state file (round trip, every
// refusal, the extension path for new sections), and a bit-exact resume of the CPU reference trainer
// with the real (shuffling) dataloader.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  // nftw, mkdtemp (test/testing_files.h)
#endif
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/checkpoint.h"
#include "core/lr_schedule.h"
#include "core/rng.h"
#include "core/train_state.h"
#include "dataloader/dataloader.h"
#include "gpt2_model.h"
#include "test/reference/gpt2_cpu.h"
#include "test/testing.h"
#include "test/testing_files.h"

#define TINYSHAKESPEARE_TRAIN "build/data/tinyshakespeare/tiny_shakespeare_train.bin"

static char tmp_dir[256];

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
    ParamTable table;
    char err[256];
    if (gpt2_param_table(cfg, &table, err, sizeof(err)) != 0) fatal("%s", err);
    float *p = (float *)malloc_check(table.num_parameters * sizeof(float));
    Rng rng;
    rng_seed(&rng, seed);
    rng_fill_normal(&rng, p, table.num_parameters, 0.0f, 1.0f);
    for (size_t i = 0; i < table.num_parameters; i += 7) p[i] = ldexpf(p[i], (int)rng_below(&rng, 60) - 30);
    // exact ties between two bf16 values: 1 + 2^-8 (rounds down to even) and 1 + 3 * 2^-8 (up)
    p[1] = 1.0f + 1.0f / 256.0f;
    p[2] = 1.0f + 3.0f / 256.0f;
    *n = table.num_parameters;
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
    const char *path = testing_path(tmp_dir, "model_fp32.bin");
    CHECK(gpt2_model_file_write(path, &cfg, p, MODEL_FILE_VERSION_FP32, err, sizeof(err)) == 0, "write: %s", err);
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
    CHECK(gpt2_model_file_load(path, &cfg, &got, &version, &q, err, sizeof(err)) == 0, "load: %s", err);
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
    const char *path = testing_path(tmp_dir, "model_bf16.bin");
    CHECK(gpt2_model_file_write(path, &cfg, p, MODEL_FILE_VERSION_BF16, err, sizeof(err)) == 0, "write: %s", err);
    CHECK(file_size(path) == 1024 + 2 * (long long)n, "size %lld, expected %lld", file_size(path), 1024 + 2 * (long long)n);
    GPT2Config got;
    int version = 0;
    float *q = NULL;
    CHECK(gpt2_model_file_load(path, NULL, &got, &version, &q, err, sizeof(err)) == 0, "load: %s", err);
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
    const char *path2 = testing_path(tmp_dir, "model_bf16_again.bin");
    CHECK(gpt2_model_file_write(path2, &cfg, q, MODEL_FILE_VERSION_BF16, err, sizeof(err)) == 0, "write: %s", err);
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
    int rc = gpt2_model_file_load(path, want, &got, &version, &q, err, sizeof(err));
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
    const char *good = testing_path(tmp_dir, "good.bin");
    CHECK(gpt2_model_file_write(good, &cfg, p, MODEL_FILE_VERSION_FP32, err, sizeof(err)) == 0, "write: %s", err);
    const char *bad = testing_path(tmp_dir, "bad.bin");
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
    corrupt_copy(good, bad, 8, 5, 0);  // words 8..255 are reserved (0 in llm.c's files too)
    expect_load_error(bad, NULL, "bad GPT-2 model header: reserved word 8 is 5, not 0");
    corrupt_copy(good, bad, 255, -1, 0);
    expect_load_error(bad, NULL, "reserved word 255 is -1");
    corrupt_copy(good, bad, -1, 0, -(long)(file_size(good) - 100));  // a 100-byte file
    expect_load_error(bad, NULL, "short read");
    expect_load_error(testing_path(tmp_dir, "missing.bin"), NULL, "cannot open");
    // a valid file whose configuration differs from the one the run asks for
    GPT2Config other = cfg;
    other.num_heads = 4;
    expect_load_error(good, &other, "num_heads is 2 in the file, 4 expected");
    // the version to write must be 3 or 5
    CHECK(gpt2_model_file_write(bad, &cfg, p, 4, err, sizeof(err)) != 0 && strstr(err, "version 4") != NULL, "version 4 written (%s)", err);
    free(p);
}

// A header whose sizes would overflow the parameter count (or any product of them) is refused before
// anything is multiplied or allocated, with a message naming the file, the field and its value.
static void test_model_file_rejects_overflowing_header(void) {
    GPT2Config cfg = tiny_config();
    size_t n;
    float *p = random_params(&cfg, 7, &n);
    char err[512];
    const char *good = testing_path(tmp_dir, "good_overflow.bin"), *bad = testing_path(tmp_dir, "overflow.bin");
    CHECK(gpt2_model_file_write(good, &cfg, p, MODEL_FILE_VERSION_FP32, err, sizeof(err)) == 0, "write: %s", err);
    // header words: [2] maxT, [3] V, [4] L, [5] NH, [6] C, [7] Vp
    corrupt_copy(good, bad, 6, 1 << 30, 0);  // channels 2^30: C*C alone is 2^60
    expect_load_error(bad, NULL, "channels 1073741824 is outside 1..65536");
    corrupt_copy(good, bad, 7, 2147483647, 0);  // padded vocabulary 2^31-1
    expect_load_error(bad, NULL, "padded_vocab_size 2147483647 is outside 1..16777216");
    corrupt_copy(good, bad, 4, 2147483647, 0);  // num_layers 2^31-1
    expect_load_error(bad, NULL, "num_layers 2147483647 is outside 1..4096");
    corrupt_copy(good, bad, 2, -16, 0);  // a negative max_seq_len
    expect_load_error(bad, NULL, "max_seq_len -16 is outside 1..1048576");
    // channels 2^30 and Vp 2^31-1 together (wte = Vp*C = 2^61 elements): the first bad field is named
    size_t size;
    int32_t *raw = (int32_t *)read_whole_file(good, &size);
    raw[6] = 1 << 30;
    raw[7] = 2147483647;
    write_whole_file(bad, raw, size);
    expect_load_error(bad, NULL, "padded_vocab_size 2147483647 is outside");
    // every field at its bound (channels 65536, Vp 2^24, 4096 layers): each is valid, the product is
    // not; the parameter table refuses it, naming the first tensor that is too large
    raw[2] = GPT2_MAX_SEQ_LEN;
    raw[3] = raw[7] = GPT2_MAX_VOCAB;
    raw[4] = GPT2_MAX_LAYERS;
    raw[5] = 1;
    raw[6] = GPT2_MAX_CHANNELS;
    write_whole_file(bad, raw, size);
    expect_load_error(bad, NULL, "the model has more than 1099511627776 parameters (at tensor 'wpe')");
    free(raw);
    // the writer refuses such a configuration too (nothing is multiplied, nothing written)
    GPT2Config huge = cfg;
    huge.channels = 1 << 30;
    CHECK(gpt2_model_file_write(bad, &huge, p, MODEL_FILE_VERSION_FP32, err, sizeof(err)) != 0 && strstr(err, "channels 1073741824") != NULL,
          "a configuration with channels 2^30 was written (%s)", err);
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
        CHECK(gpt2_model_file_load(LLMC_FILES[i], &want, &got, &version, &params[i], err, sizeof(err)) == 0, "%s", err);
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
    const char *missing = testing_path(tmp_dir, "no_such_dir/model.bin");
    CHECK(gpt2_model_file_write(missing, &cfg, p, MODEL_FILE_VERSION_FP32, err, sizeof(err)) != 0, "write into a missing directory succeeded");
    CHECK(strstr(err, missing) != NULL, "message '%s' does not name the path", err);
    CHECK(!file_exists(missing), "a file appeared at the path");
    // the final rename fails (the path is a directory): the data was written to the temporary
    // file, which must be removed, and the directory must be untouched
    const char *dir_path = testing_path(tmp_dir, "a_directory");
    CHECK(mkdir(dir_path, 0755) == 0, "mkdir failed");
    CHECK(gpt2_model_file_write(dir_path, &cfg, p, MODEL_FILE_VERSION_FP32, err, sizeof(err)) != 0, "write over a directory succeeded");
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
    const char *path = testing_path(tmp_dir, "overwrite.bin");
    GPT2Config big = cfg;
    big.num_layers = 4;
    ParamTable big_table;
    CHECK(gpt2_param_table(&big, &big_table, err, sizeof(err)) == 0, "%s", err);
    float *pb = (float *)calloc_check(big_table.num_parameters, sizeof(float));
    CHECK(gpt2_model_file_write(path, &big, pb, MODEL_FILE_VERSION_FP32, err, sizeof(err)) == 0, "%s", err);
    CHECK(gpt2_model_file_write(path, &cfg, p, MODEL_FILE_VERSION_FP32, err, sizeof(err)) == 0, "%s", err);
    CHECK(file_size(path) == 1024 + 4 * (long long)n, "overwritten file has %lld bytes", file_size(path));
    CHECK(count_tmp_files() == 0, "temporary files left behind");
    free(pb);
    free(p);
}

// ----------------------------------------------------------------------------
// Training-state files

// Bitwise CRC-32 (zlib's), independent of core/train_state.h's slicing-by-8 version.
static uint32_t crc32_bitwise(const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static TrainState sample_state(size_t n, int has_master) {
    TrainState st;
    memset(&st, 0, sizeof(st));
    st.step = 1234;
    st.num_parameters = n + 10;
    st.shard_offset = 10;
    st.shard_size = n;
    st.has_master = has_master;
    st.rng_state = 0xDEADBEEFCAFEF00Dull;
    st.data.shuffle = 1;
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

// Moments and master weights of a shard of n values.
typedef struct {
    size_t n;
    float *m, *v, *w;
} ShardArrays;

static ShardArrays sample_arrays(size_t n, uint64_t seed) {
    ShardArrays a;
    a.n = n;
    a.m = (float *)malloc_check(n * sizeof(float));
    a.v = (float *)malloc_check(n * sizeof(float));
    a.w = (float *)malloc_check(n * sizeof(float));
    Rng rng;
    rng_seed(&rng, seed);
    rng_fill_normal(&rng, a.m, n, 0.0f, 1.0f);
    rng_fill_normal(&rng, a.v, n, 0.0f, 1.0f);
    rng_fill_normal(&rng, a.w, n, 0.0f, 1.0f);
    return a;
}

static void free_arrays(ShardArrays *a) {
    free(a->m);
    free(a->v);
    free(a->w);
}

// Loading `path` with train_state_load must fail with a message that names the file and contains every
// non-NULL needle.
static void expect_state_error3(const char *path, const TrainRunConfig *now, uint64_t np, uint64_t off, uint64_t size, const char *needle,
                                const char *needle2, const char *needle3) {
    char err[1024] = "";
    TrainState got;
    float *buf = (float *)calloc_check(size > 0 ? size : 1, sizeof(float) * 3);
    int rc = train_state_load(path, now, np, off, size, &got, buf, buf + size, buf + 2 * size, err, sizeof(err));
    CHECK(rc != 0, "'%s' accepted (expected an error containing '%s')", path, needle);
    CHECK(strstr(err, path) != NULL, "message '%s' does not name the file", err);
    const char *needles[3] = {needle, needle2, needle3};
    for (int i = 0; i < 3; i++) CHECK(needles[i] == NULL || strstr(err, needles[i]) != NULL, "message '%s' lacks '%s'", err, needles[i]);
    free(buf);
}

static void expect_state_error(const char *path, const TrainRunConfig *now, uint64_t np, uint64_t off, uint64_t size, const char *needle) {
    expect_state_error3(path, now, np, off, size, needle, NULL, NULL);
}

// Where a section lies in a (valid) state file: its head, payload and CRC offsets.
typedef struct {
    long head, payload, crc;
    uint64_t bytes;
} SectionPlace;

static SectionPlace find_section_in(const char *path, const char *tag, const StateSectionType *types, int num_types) {
    SectionPlace place = {-1, -1, -1, 0};
    StateFile sf;
    char err[512];
    if (state_file_open(&sf, path, types, num_types, err, sizeof(err)) != 0) fatal("%s", err);
    const StateSection *s = state_file_find(&sf, tag);
    if (s == NULL) fatal("'%s' has no section '%s'", path, tag);
    place.payload = (long)s->offset;
    place.head = place.payload - STATE_SECTION_HEAD_BYTES;
    place.bytes = s->bytes;
    place.crc = place.payload + (long)s->bytes;
    state_file_close(&sf);
    return place;
}

static SectionPlace find_section(const char *path, const char *tag) {
    return find_section_in(path, tag, TRAIN_STATE_SECTIONS, TRAIN_STATE_NUM_SECTIONS);
}

// Writes a copy of `src` at `dst` with `len` bytes at `offset` replaced by `bytes`.
static void patch_copy(const char *src, const char *dst, long offset, const void *bytes, size_t len) {
    size_t size;
    unsigned char *buf = (unsigned char *)read_whole_file(src, &size);
    if (offset < 0 || (size_t)offset + len > size) fatal("patch_copy: offset %ld + %zu outside the %zu-byte file", offset, len, size);
    memcpy(buf + offset, bytes, len);
    write_whole_file(dst, buf, size);
    free(buf);
}

// Writes a copy of `src` at `dst` with the bits of `mask` flipped in the byte at `offset`.
static void flip_copy(const char *src, const char *dst, long offset, unsigned char mask) {
    size_t size;
    unsigned char *buf = (unsigned char *)read_whole_file(src, &size);
    buf[offset] ^= mask;
    write_whole_file(dst, buf, size);
    free(buf);
}

// The CRC-32 is zlib's: the check value of "123456789", and a random buffer fed in uneven pieces.
static void test_crc32(void) {
    Crc32Table t;
    crc32_table_init(&t);
    const char *check = "123456789";
    CHECK(crc32_update(&t, 0, check, 9) == 0xCBF43926u, "crc32('123456789') = 0x%08x, expected 0xcbf43926", crc32_update(&t, 0, check, 9));
    CHECK(crc32_update(&t, 0, check, 0) == 0, "crc32 of nothing is not 0");
    unsigned char buf[1000];
    Rng rng;
    rng_seed(&rng, 11);
    for (size_t i = 0; i < sizeof(buf); i++) buf[i] = (unsigned char)rng_below(&rng, 256);
    uint32_t want = crc32_bitwise(buf, sizeof(buf));
    uint32_t whole = crc32_update(&t, 0, buf, sizeof(buf));
    uint32_t pieces = 0;
    for (size_t start = 0, len = 1; start < sizeof(buf); start += len, len = len * 3 % 17 + 1)
        pieces = crc32_update(&t, pieces, buf + start, start + len <= sizeof(buf) ? len : sizeof(buf) - start);
    CHECK(whole == want && pieces == want, "crc32 0x%08x in one piece, 0x%08x in pieces, bitwise 0x%08x", whole, pieces, want);
}

// The layout of the file byte by byte, then a round trip with and without master weights.
static void test_train_state_roundtrip(void) {
    const size_t n = 1000;
    ShardArrays a = sample_arrays(n, 5);
    char err[512];
    for (int has_master = 0; has_master <= 1; has_master++) {
        const char *path = testing_path(tmp_dir, has_master ? "state_master.bin" : "state.bin");
        TrainState st = sample_state(n, has_master);
        CHECK(train_state_write(path, &st, a.m, a.v, has_master ? a.w : NULL, err, sizeof(err)) == 0, "write: %s", err);
        const long long optm_bytes = 32 + 4 * (long long)n * (has_master ? 3 : 2);
        const long long expect_size = 24 + (16 + 56 + 4) + (16 + 32 + 4) + (16 + optm_bytes + 4);
        CHECK(file_size(path) == expect_size, "size %lld, expected %lld", file_size(path), expect_size);
        size_t size;
        unsigned char *raw = (unsigned char *)read_whole_file(path, &size);
        if ((long long)size == expect_size) {
            uint64_t header[3];
            memcpy(header, raw, 24);
            CHECK(header[0] == 20261122 && header[1] == 2 && header[2] == 3, "header %llu %llu %llu, expected 20261122 2 3",
                  (unsigned long long)header[0], (unsigned long long)header[1], (unsigned long long)header[2]);
            // the three sections in order, each head | payload | CRC-32 of head and payload
            const char *tags[3] = {"RUN ", "DATA", "OPTM"};
            const uint64_t bytes[3] = {56, 32, (uint64_t)optm_bytes};
            size_t at = 24;
            for (int i = 0; i < 3; i++) {
                uint32_t layout, crc;
                uint64_t payload;
                memcpy(&layout, raw + at + 4, 4);
                memcpy(&payload, raw + at + 8, 8);
                memcpy(&crc, raw + at + 16 + bytes[i], 4);
                CHECK(memcmp(raw + at, tags[i], 4) == 0 && layout == 1 && payload == bytes[i], "section %d: tag '%.4s' layout %u bytes %llu", i,
                      (const char *)raw + at, layout, (unsigned long long)payload);
                CHECK(crc == crc32_bitwise(raw + at, 16 + bytes[i]), "section '%s': stored CRC 0x%08x is not the CRC-32 of head and payload",
                      tags[i], crc);
                at += 16 + bytes[i] + 4;
            }
            uint64_t run[7], data[4], optm[4];
            memcpy(run, raw + 24 + 16, sizeof(run));
            memcpy(data, raw + 24 + 76 + 16, sizeof(data));
            memcpy(optm, raw + 24 + 76 + 52 + 16, sizeof(optm));
            const uint64_t want_run[7] = {1234, 0xDEADBEEFCAFEF00Dull, 4, 64, 512, 2, 1}, want_data[4] = {1, 42, 3, 777};
            const uint64_t want_optm[4] = {n + 10, 10, n, (uint64_t)has_master};
            CHECK(memcmp(run, want_run, sizeof(run)) == 0, "RUN payload differs from (step, rng, B, T, total, world, rank)");
            CHECK(memcmp(data, want_data, sizeof(data)) == 0, "DATA payload differs from (shuffle, seed, epoch, position)");
            CHECK(memcmp(optm, want_optm, sizeof(optm)) == 0, "OPTM head differs from (num_parameters, offset, size, has_master)");
            const unsigned char *arrays = raw + 24 + 76 + 52 + 16 + 32;
            CHECK(memcmp(arrays, a.m, n * 4) == 0 && memcmp(arrays + 4 * n, a.v, n * 4) == 0, "m, v not stored verbatim");
            if (has_master) CHECK(memcmp(arrays + 8 * n, a.w, n * 4) == 0, "master weights not stored verbatim");
        }
        free(raw);
        TrainState got;
        float *buf = (float *)calloc_check(3 * n, sizeof(float));
        CHECK(train_state_load(path, &st.run, st.num_parameters, st.shard_offset, n, &got, buf, buf + n, buf + 2 * n, err, sizeof(err)) == 0,
              "load: %s", err);
        CHECK(memcmp(&got, &st, sizeof(st)) == 0, "fields differ after the round trip");
        CHECK(memcmp(buf, a.m, n * 4) == 0 && memcmp(buf + n, a.v, n * 4) == 0, "moments differ");
        if (has_master) CHECK(memcmp(buf + 2 * n, a.w, n * 4) == 0, "master weights differ");
        else CHECK(buf[2 * n] == 0.0f, "master buffer written although the file has none");
        free(buf);
    }
    // a position shuffled with seed 0 keeps its shuffle flag; an unshuffled one has flag 0
    for (int shuffle = 0; shuffle <= 1; shuffle++) {
        const char *path = testing_path(tmp_dir, "state_seed0.bin");
        TrainState st = sample_state(n, 0);
        st.data.shuffle = (uint64_t)shuffle;
        st.data.seed = 0;
        CHECK(train_state_write(path, &st, a.m, a.v, NULL, err, sizeof(err)) == 0, "write: %s", err);
        TrainState got;
        float *buf = (float *)calloc_check(2 * n, sizeof(float));
        CHECK(train_state_load(path, &st.run, st.num_parameters, st.shard_offset, n, &got, buf, buf + n, NULL, err, sizeof(err)) == 0, "load: %s", err);
        CHECK(got.data.shuffle == (uint64_t)shuffle && got.data.seed == 0, "shuffle %d seed 0 came back as shuffle %llu seed %llu", shuffle,
              (unsigned long long)got.data.shuffle, (unsigned long long)got.data.seed);
        free(buf);
    }
    free_arrays(&a);
}

// Files that are not this build's state file, or that do not fit the run, are refused by name.
static void test_train_state_errors(void) {
    const size_t n = 1000;
    ShardArrays a = sample_arrays(n, 6);
    char err[512];
    const char *good = testing_path(tmp_dir, "state_good.bin"), *bad = testing_path(tmp_dir, "state_bad.bin");
    TrainState st = sample_state(n, 0);
    CHECK(train_state_write(good, &st, a.m, a.v, NULL, err, sizeof(err)) == 0, "write: %s", err);
    const uint64_t np = st.num_parameters, off = st.shard_offset;
    corrupt_copy(good, bad, 0, 12345, 0);
    expect_state_error(bad, &st.run, np, off, n, "not a training-state file: magic 12345");
    corrupt_copy(good, bad, 2, 3, 0);  // version 3 (uint64 [1] = int32 words 2..3)
    expect_state_error3(bad, &st.run, np, off, n, "version 3 is not one this build reads", "resume it with the build that wrote it", NULL);
    // truncated: inside the header, inside a section head, inside a payload, one byte short
    const long long size = file_size(good);
    corrupt_copy(good, bad, -1, 0, -(long)(size - 20));
    expect_state_error(bad, &st.run, np, off, n, "shorter than the 24-byte training-state header (truncated)");
    corrupt_copy(good, bad, -1, 0, -(long)(size - 30));
    expect_state_error3(bad, &st.run, np, off, n, "inside section 1 of 3", "(truncated)", NULL);
    corrupt_copy(good, bad, -1, 0, -(long)(size - 24 - 76 - 30));
    expect_state_error3(bad, &st.run, np, off, n, "section 'DATA'", "claims 32 payload bytes, but the file has room for only", "truncated");
    corrupt_copy(good, bad, -1, 0, -1);
    expect_state_error3(bad, &st.run, np, off, n, "section 'OPTM'", "claims 8032 payload bytes, but the file has room for only 8031", NULL);
    corrupt_copy(good, bad, -1, 0, 4);
    expect_state_error(bad, &st.run, np, off, n, "4 trailing bytes after the last of its 3 sections");
    expect_state_error(testing_path(tmp_dir, "no_state.bin"), &st.run, np, off, n, "cannot open");
    // run settings and the shard must be the resuming run's
    TrainRunConfig other = st.run;
    other.batch_size = 8;
    expect_state_error(good, &other, np, off, n, "micro-batch size B was 4 in the saved run but is 8 now");
    other = st.run;
    other.world_size = 4;
    expect_state_error(good, &other, np, off, n, "world size was 2");
    expect_state_error(good, &st.run, np + 1, off, n, "the file holds parameters [10, +1000) of 1010 but [10, +1000) of 1011 are needed");
    // master weights in the file but no buffer for them
    const char *with_master = testing_path(tmp_dir, "state_good_master.bin");
    TrainState stm = sample_state(n, 1);
    CHECK(train_state_write(with_master, &stm, a.m, a.v, a.w, err, sizeof(err)) == 0, "write: %s", err);
    float *buf = (float *)calloc_check(2 * n, sizeof(float));
    TrainState got;
    CHECK(train_state_load(with_master, &stm.run, np, off, n, &got, buf, buf + n, NULL, err, sizeof(err)) != 0 &&
              strstr(err, "no buffer for them") != NULL,
          "master weights without a buffer accepted (%s)", err);
    free(buf);
    // the writer refuses what no reader could use, and leaves nothing behind
    TrainState wide = sample_state(n, 0);
    wide.shard_offset = 20;  // [20, 1020) of 1010
    CHECK(train_state_write(bad, &wide, a.m, a.v, NULL, err, sizeof(err)) != 0 && strstr(err, "exceeds") != NULL && strstr(err, bad) != NULL,
          "bad shard written (%s)", err);
    TrainState no_master = sample_state(n, 1);
    CHECK(train_state_write(bad, &no_master, a.m, a.v, NULL, err, sizeof(err)) != 0 && strstr(err, "no master weights") != NULL,
          "has_master without master weights written (%s)", err);
    CHECK(count_tmp_files() == 0, "%d temporary files left behind", count_tmp_files());
    free_arrays(&a);
}

// A version-1 file (the 64-word header of older builds) is refused with what to do about it.
static void test_train_state_refuses_version1(void) {
    const size_t n = 100;
    ShardArrays a = sample_arrays(n, 7);
    const char *path = testing_path(tmp_dir, "state_v1.bin");
    uint64_t header[64];
    memset(header, 0, sizeof(header));
    header[0] = 20261122;
    header[1] = 1;
    header[2] = 50;  // step
    header[3] = n;
    header[5] = n;
    FILE *f = fopen_check(path, "wb");
    fwrite_check(header, sizeof(header), 1, f);
    fwrite_check(a.m, sizeof(float), n, f);
    fwrite_check(a.v, sizeof(float), n, f);
    fclose(f);
    TrainRunConfig run = {4, 64, 256, 1, 0};
    expect_state_error3(path, &run, n, 0, n, "is a version-1 training-state file, written by an older build", "Start a fresh run",
                        "resume this checkpoint with the older build that wrote it");
    free_arrays(&a);
}

// A file with a section this build does not know (here "PREC", as a newer build would write) is
// refused naming the tag, the file and what to do; so is a corrupt, unprintable tag.
static void test_train_state_refuses_unknown_section(void) {
    const size_t n = 100;
    ShardArrays a = sample_arrays(n, 8);
    char err[512];
    const StateSectionType newer[4] = {TRAIN_STATE_SECTIONS[0], TRAIN_STATE_SECTIONS[1], TRAIN_STATE_SECTIONS[2],
                                       {"PREC", 1, 0, "precision recipe"}};
    const char *path = testing_path(tmp_dir, "state_newer.bin");
    TrainState st = sample_state(n, 0);
    StateWriter sw;
    const uint64_t recipe[2] = {7, 8};
    int rc = state_writer_open(&sw, path, newer, 4, err, sizeof(err));
    if (rc == 0) rc = train_state_write_sections(&sw, &st, a.m, a.v, NULL, err, sizeof(err));
    if (rc == 0) rc = state_writer_section(&sw, "PREC", recipe, sizeof(recipe), err, sizeof(err));
    if (rc == 0) rc = state_writer_commit(&sw, err, sizeof(err));
    CHECK(rc == 0, "write: %s", err);
    expect_state_error3(path, &st.run, st.num_parameters, st.shard_offset, n, "section 4 of 4 has the tag 'PREC', which this build does not know",
                        "the file comes from a newer build", "'RUN ', 'DATA', 'OPTM'");
    // a tag of unprintable bytes is shown escaped
    const char *bad = testing_path(tmp_dir, "state_badtag.bin");
    SectionPlace data = find_section_in(path, "DATA", newer, 4);
    const unsigned char tag[4] = {'D', 0x01, 'T', 0xFF};
    patch_copy(path, bad, data.head, tag, 4);
    expect_state_error(bad, &st.run, st.num_parameters, st.shard_offset, n, "has the tag 'D\\x01T\\xff'");
    // a tag twice
    patch_copy(path, bad, data.head, "RUN ", 4);
    expect_state_error(bad, &st.run, st.num_parameters, st.shard_offset, n, "section 'RUN ' appears twice (sections 1 and 2");
    // a known tag with another payload layout
    const uint32_t layout2 = 2;
    patch_copy(path, bad, data.head + 4, &layout2, 4);
    expect_state_error3(bad, &st.run, st.num_parameters, st.shard_offset, n, "section 'DATA' (dataloader position) has payload layout 2",
                        "this build reads layout 1", NULL);
    // the writer writes only the tags of its table
    rc = state_writer_open(&sw, bad, TRAIN_STATE_SECTIONS, TRAIN_STATE_NUM_SECTIONS, err, sizeof(err));
    if (rc == 0) rc = state_writer_section(&sw, "PREC", recipe, sizeof(recipe), err, sizeof(err));
    CHECK(rc != 0 && strstr(err, "section 'PREC' is not one this build reads") != NULL && strstr(err, bad) != NULL,
          "the writer wrote an unknown section (%s)", err);
    CHECK(count_tmp_files() == 0, "%d temporary files left behind", count_tmp_files());
    free_arrays(&a);
}

// A file without a required section is refused naming it; the writer does not write one.
static void test_train_state_refuses_missing_section(void) {
    const size_t n = 100;
    ShardArrays a = sample_arrays(n, 9);
    char err[512];
    TrainState st = sample_state(n, 0);
    // a table in which DATA is optional lets a test write a file without it
    StateSectionType lax[3] = {TRAIN_STATE_SECTIONS[0], TRAIN_STATE_SECTIONS[1], TRAIN_STATE_SECTIONS[2]};
    lax[1].required = 0;
    const char *path = testing_path(tmp_dir, "state_nodata.bin");
    StateWriter sw;
    const uint64_t run[7] = {st.step, st.rng_state, st.run.batch_size, st.run.seq_len, st.run.total_batch_size, st.run.world_size, st.run.rank};
    const uint64_t optm[4] = {st.num_parameters, st.shard_offset, n, 0};
    int rc = state_writer_open(&sw, path, lax, 3, err, sizeof(err));
    if (rc == 0) rc = state_writer_section(&sw, "RUN ", run, sizeof(run), err, sizeof(err));
    if (rc == 0) rc = state_writer_begin(&sw, "OPTM", sizeof(optm) + 8 * n, err, sizeof(err));
    if (rc == 0) rc = state_writer_write(&sw, optm, sizeof(optm), err, sizeof(err));
    if (rc == 0) rc = state_writer_write(&sw, a.m, 4 * n, err, sizeof(err));
    if (rc == 0) rc = state_writer_write(&sw, a.v, 4 * n, err, sizeof(err));
    if (rc == 0) rc = state_writer_end(&sw, err, sizeof(err));
    if (rc == 0) rc = state_writer_commit(&sw, err, sizeof(err));
    CHECK(rc == 0, "write: %s", err);
    expect_state_error(path, &st.run, st.num_parameters, st.shard_offset, n, "the required section 'DATA' (dataloader position) is missing");
    // with this build's table the writer refuses to finish such a file
    const char *bad = testing_path(tmp_dir, "state_nodata2.bin");
    rc = state_writer_open(&sw, bad, TRAIN_STATE_SECTIONS, TRAIN_STATE_NUM_SECTIONS, err, sizeof(err));
    if (rc == 0) rc = state_writer_section(&sw, "RUN ", run, sizeof(run), err, sizeof(err));
    if (rc == 0) rc = state_writer_commit(&sw, err, sizeof(err));
    CHECK(rc != 0 && strstr(err, "the required section 'DATA' (dataloader position) was not written") != NULL, "incomplete file written (%s)", err);
    CHECK(!file_exists(bad) && count_tmp_files() == 0, "a file or temporary file was left behind");
    // a section whose payload ends before its announced size, or runs past it
    rc = state_writer_open(&sw, bad, TRAIN_STATE_SECTIONS, TRAIN_STATE_NUM_SECTIONS, err, sizeof(err));
    if (rc == 0) rc = state_writer_begin(&sw, "RUN ", sizeof(run), err, sizeof(err));
    if (rc == 0) rc = state_writer_write(&sw, run, 8, err, sizeof(err));
    if (rc == 0) rc = state_writer_end(&sw, err, sizeof(err));
    CHECK(rc != 0 && strstr(err, "section 'RUN ' ended after 8 of its 56 payload bytes") != NULL, "short section accepted (%s)", err);
    rc = state_writer_open(&sw, bad, TRAIN_STATE_SECTIONS, TRAIN_STATE_NUM_SECTIONS, err, sizeof(err));
    if (rc == 0) rc = state_writer_begin(&sw, "RUN ", 8, err, sizeof(err));
    if (rc == 0) rc = state_writer_write(&sw, run, sizeof(run), err, sizeof(err));
    CHECK(rc != 0 && strstr(err, "beyond its announced 8") != NULL, "overlong section accepted (%s)", err);
    CHECK(!file_exists(bad) && count_tmp_files() == 0, "a file or temporary file was left behind");
    free_arrays(&a);
}

// Any changed bit in a payload or its checksum is found by the CRC, naming the section.
static void test_train_state_refuses_corrupt_payload(void) {
    const size_t n = 1000;
    ShardArrays a = sample_arrays(n, 10);
    char err[512];
    TrainState st = sample_state(n, 1);
    const char *good = testing_path(tmp_dir, "state_crc.bin"), *bad = testing_path(tmp_dir, "state_crc_bad.bin");
    CHECK(train_state_write(good, &st, a.m, a.v, a.w, err, sizeof(err)) == 0, "write: %s", err);
    const char *tags[3] = {"RUN ", "DATA", "OPTM"};
    for (int i = 0; i < 3; i++) {
        SectionPlace s = find_section(good, tags[i]);
        char needle[64];
        snprintf(needle, sizeof(needle), "section '%s' is corrupt", tags[i]);
        flip_copy(good, bad, s.payload + (long)s.bytes - 1, 0x01);  // the last payload byte (the master weights' for OPTM)
        expect_state_error3(bad, &st.run, st.num_parameters, st.shard_offset, n, needle, "CRC-32", NULL);
        flip_copy(good, bad, s.crc + 2, 0x80);  // the stored CRC itself
        expect_state_error(bad, &st.run, st.num_parameters, st.shard_offset, n, needle);
    }
    SectionPlace optm = find_section(good, "OPTM");
    flip_copy(good, bad, optm.payload + 32 + 4 * 500, 0x10);  // inside m
    expect_state_error(bad, &st.run, st.num_parameters, st.shard_offset, n, "section 'OPTM' is corrupt");
    free_arrays(&a);
}

// Sizes from the file are checked before anything is read or allocated: a section claiming 2^60
// bytes, a header claiming 2^60 sections, an optimizer head claiming a shard of 2^60 values.
static void test_train_state_refuses_oversized(void) {
    const size_t n = 100;
    ShardArrays a = sample_arrays(n, 12);
    char err[512];
    TrainState st = sample_state(n, 0);
    const char *good = testing_path(tmp_dir, "state_size.bin"), *bad = testing_path(tmp_dir, "state_size_bad.bin");
    CHECK(train_state_write(good, &st, a.m, a.v, NULL, err, sizeof(err)) == 0, "write: %s", err);
    const uint64_t huge = (uint64_t)1 << 60;
    SectionPlace optm = find_section(good, "OPTM"), run = find_section(good, "RUN ");
    patch_copy(good, bad, optm.head + 8, &huge, 8);
    expect_state_error3(bad, &st.run, st.num_parameters, st.shard_offset, n, "section 'OPTM' at byte", "claims 1152921504606846976 payload bytes",
                        "room for only 832");
    patch_copy(good, bad, run.head + 8, &huge, 8);  // the first section: checked before any later one is looked at
    expect_state_error(bad, &st.run, st.num_parameters, st.shard_offset, n, "section 'RUN ' at byte 24 claims 1152921504606846976 payload bytes");
    patch_copy(good, bad, 16, &huge, 8);
    expect_state_error(bad, &st.run, st.num_parameters, st.shard_offset, n, "the header claims 1152921504606846976 sections, outside 1..32");
    const uint64_t zero = 0;
    patch_copy(good, bad, 16, &zero, 8);
    expect_state_error(bad, &st.run, st.num_parameters, st.shard_offset, n, "the header claims 0 sections");
    // an OPTM head (with a valid CRC) claiming a shard of 2^60 values in a 32-byte payload: refused before
    // any array is read into the caller's buffers of n values
    const char *liar = testing_path(tmp_dir, "state_liar.bin");
    const uint64_t r[7] = {st.step, st.rng_state, st.run.batch_size, st.run.seq_len, st.run.total_batch_size, st.run.world_size, st.run.rank};
    const uint64_t d[4] = {1, 42, 3, 777};
    const uint64_t o[4] = {huge, 0, huge, 0};
    StateWriter sw;
    int rc = state_writer_open(&sw, liar, TRAIN_STATE_SECTIONS, TRAIN_STATE_NUM_SECTIONS, err, sizeof(err));
    if (rc == 0) rc = state_writer_section(&sw, "RUN ", r, sizeof(r), err, sizeof(err));
    if (rc == 0) rc = state_writer_section(&sw, "DATA", d, sizeof(d), err, sizeof(err));
    if (rc == 0) rc = state_writer_section(&sw, "OPTM", o, sizeof(o), err, sizeof(err));
    if (rc == 0) rc = state_writer_commit(&sw, err, sizeof(err));
    CHECK(rc == 0, "write: %s", err);
    expect_state_error(liar, &st.run, n, 0, n, "section 'OPTM' has 32 payload bytes, which do not hold a shard of 1152921504606846976 values");
    // a bad has_master flag and a shard outside the model, with valid CRCs
    const uint64_t o2[4] = {n, 0, 0, 2};
    rc = state_writer_open(&sw, liar, TRAIN_STATE_SECTIONS, TRAIN_STATE_NUM_SECTIONS, err, sizeof(err));
    if (rc == 0) rc = state_writer_section(&sw, "RUN ", r, sizeof(r), err, sizeof(err));
    if (rc == 0) rc = state_writer_section(&sw, "DATA", d, sizeof(d), err, sizeof(err));
    if (rc == 0) rc = state_writer_section(&sw, "OPTM", o2, sizeof(o2), err, sizeof(err));
    if (rc == 0) rc = state_writer_commit(&sw, err, sizeof(err));
    CHECK(rc == 0, "write: %s", err);
    expect_state_error(liar, &st.run, n, 0, 0, "bad has_master flag 2");
    const uint64_t o3[4] = {n, 90, 20, 0}, d3[4] = {2, 42, 3, 777};
    rc = state_writer_open(&sw, liar, TRAIN_STATE_SECTIONS, TRAIN_STATE_NUM_SECTIONS, err, sizeof(err));
    if (rc == 0) rc = state_writer_section(&sw, "RUN ", r, sizeof(r), err, sizeof(err));
    if (rc == 0) rc = state_writer_section(&sw, "DATA", d, sizeof(d), err, sizeof(err));
    if (rc == 0) rc = state_writer_section(&sw, "OPTM", o3, sizeof(o3), err, sizeof(err));
    if (rc == 0) rc = state_writer_commit(&sw, err, sizeof(err));
    CHECK(rc == 0, "write: %s", err);
    expect_state_error(liar, &st.run, n, 90, 20, "shard [90, +20) exceeds the 100 parameters");
    rc = state_writer_open(&sw, liar, TRAIN_STATE_SECTIONS, TRAIN_STATE_NUM_SECTIONS, err, sizeof(err));
    if (rc == 0) rc = state_writer_section(&sw, "RUN ", r, sizeof(r), err, sizeof(err));
    if (rc == 0) rc = state_writer_section(&sw, "DATA", d3, sizeof(d3), err, sizeof(err));
    if (rc == 0) rc = state_writer_section(&sw, "OPTM", o2, sizeof(o2), err, sizeof(err));
    if (rc == 0) rc = state_writer_commit(&sw, err, sizeof(err));
    CHECK(rc == 0, "write: %s", err);
    expect_state_error(liar, &st.run, n, 0, 0, "section 'DATA': bad shuffle flag 2");
    // a section of the wrong size for its layout
    const uint64_t d5[5] = {1, 42, 3, 777, 0};
    rc = state_writer_open(&sw, liar, TRAIN_STATE_SECTIONS, TRAIN_STATE_NUM_SECTIONS, err, sizeof(err));
    if (rc == 0) rc = state_writer_section(&sw, "RUN ", r, sizeof(r), err, sizeof(err));
    if (rc == 0) rc = state_writer_section(&sw, "DATA", d5, sizeof(d5), err, sizeof(err));
    if (rc == 0) rc = state_writer_section(&sw, "OPTM", o2, sizeof(o2), err, sizeof(err));
    if (rc == 0) rc = state_writer_commit(&sw, err, sizeof(err));
    CHECK(rc == 0, "write: %s", err);
    expect_state_error(liar, &st.run, n, 0, 0, "section 'DATA' has 40 payload bytes, its layout 1 has 32");
    free_arrays(&a);
}

// The extension path: a test registers a section type ("TEST", optional) as a later feature would
// ("PREC", "STSH"): one writer call and one reader lookup next to this build's sections.
#define TEST_SECTION_WORDS 5
static const StateSectionType EXTENDED_SECTIONS[4] = {
    {"RUN ", 1, 1, "step, host RNG state and run settings"},
    {"DATA", 1, 1, "dataloader position"},
    {"OPTM", 1, 1, "optimizer shard: AdamW moments and master weights"},
    {"TEST", 1, 0, "a test's extra section"},
};

static int extended_write(const char *path, const TrainState *st, const ShardArrays *a, const uint64_t *extra, char *err, size_t err_size) {
    StateWriter sw;
    if (state_writer_open(&sw, path, EXTENDED_SECTIONS, 4, err, err_size) != 0) return -1;
    // written first: readers find sections by tag, whatever their order
    if (extra != NULL && state_writer_section(&sw, "TEST", extra, TEST_SECTION_WORDS * 8, err, err_size) != 0) return -1;
    if (train_state_write_sections(&sw, st, a->m, a->v, st->has_master ? a->w : NULL, err, err_size) != 0) return -1;
    return state_writer_commit(&sw, err, err_size);
}

// Reads a file with the extended table; *has_extra says whether the TEST section was there.
static int extended_read(const char *path, const StateSectionType *types, const TrainState *want, TrainState *st, float *buf, uint64_t *extra,
                         int *has_extra, char *err, size_t err_size) {
    StateFile sf;
    if (state_file_open(&sf, path, types, 4, err, err_size) != 0) return -1;
    const size_t n = (size_t)want->shard_size;
    int rc = train_state_read_sections(&sf, &want->run, want->num_parameters, want->shard_offset, n, st, buf, buf + n, buf + 2 * n, err, err_size);
    *has_extra = state_file_find(&sf, "TEST") != NULL;
    if (rc == 0 && *has_extra) rc = state_file_read_section(&sf, "TEST", extra, TEST_SECTION_WORDS * 8, err, err_size);
    state_file_close(&sf);
    return rc;
}

static void test_train_state_extension(void) {
    const size_t n = 300;
    ShardArrays a = sample_arrays(n, 13);
    char err[512];
    TrainState st = sample_state(n, 1);
    const uint64_t extra[TEST_SECTION_WORDS] = {1, 2, 3, 0xFFFFFFFFFFFFFFFFull, 5};
    const char *path = testing_path(tmp_dir, "state_ext.bin"), *plain = testing_path(tmp_dir, "state_plain.bin"), *bad = testing_path(tmp_dir, "state_ext_bad.bin");
    CHECK(extended_write(path, &st, &a, extra, err, sizeof(err)) == 0, "write: %s", err);
    CHECK(train_state_write(plain, &st, a.m, a.v, a.w, err, sizeof(err)) == 0, "write: %s", err);
    CHECK(file_size(path) == file_size(plain) + 16 + 40 + 4, "a section of 40 bytes should add 60 bytes: %lld and %lld bytes", file_size(path),
          file_size(plain));
    TrainState got;
    float *buf = (float *)calloc_check(3 * n, sizeof(float));
    uint64_t back[TEST_SECTION_WORDS] = {0};
    int has_extra = 0;
    CHECK(extended_read(path, EXTENDED_SECTIONS, &st, &got, buf, back, &has_extra, err, sizeof(err)) == 0, "read: %s", err);
    CHECK(has_extra && memcmp(back, extra, sizeof(extra)) == 0, "the extra section did not come back");
    CHECK(memcmp(&got, &st, sizeof(st)) == 0 && memcmp(buf, a.m, 4 * n) == 0 && memcmp(buf + n, a.v, 4 * n) == 0 && memcmp(buf + 2 * n, a.w, 4 * n) == 0,
          "the standard sections differ next to the extra one");
    // a file from before the extra section (this build's writer) still loads: the section is optional
    memset(buf, 0, 3 * n * sizeof(float));
    has_extra = 1;
    CHECK(extended_read(plain, EXTENDED_SECTIONS, &st, &got, buf, back, &has_extra, err, sizeof(err)) == 0, "read of a file without TEST: %s", err);
    CHECK(!has_extra && memcmp(buf + 2 * n, a.w, 4 * n) == 0, "a file without the optional section did not load as it is");
    // a build without the section type refuses the file that has it, by name
    expect_state_error3(path, &st.run, st.num_parameters, st.shard_offset, n, "section 1 of 4 has the tag 'TEST', which this build does not know", "newer build", NULL);
    // a build whose TEST layout moved on refuses layout 1
    StateSectionType moved[4];
    memcpy(moved, EXTENDED_SECTIONS, sizeof(moved));
    moved[3].layout = 2;
    CHECK(extended_read(path, moved, &st, &got, buf, back, &has_extra, err, sizeof(err)) != 0 &&
              strstr(err, "section 'TEST' (a test's extra section) has payload layout 1, this build reads layout 2") != NULL && strstr(err, path) != NULL,
          "a TEST section of another layout was accepted (%s)", err);
    // a corrupt extra section is found like any other
    SectionPlace place = {-1, -1, -1, 0};
    StateFile sf;
    if (state_file_open(&sf, path, EXTENDED_SECTIONS, 4, err, sizeof(err)) == 0) {
        const StateSection *s = state_file_find(&sf, "TEST");
        if (s != NULL) place.payload = (long)s->offset;
        state_file_close(&sf);
    }
    CHECK(place.payload > 0, "TEST section not found");
    if (place.payload > 0) {
        flip_copy(path, bad, place.payload + 3, 0x04);
        CHECK(extended_read(bad, EXTENDED_SECTIONS, &st, &got, buf, back, &has_extra, err, sizeof(err)) != 0 &&
                  strstr(err, "section 'TEST' is corrupt") != NULL,
              "a corrupt TEST section was accepted (%s)", err);
    }
    free(buf);
    free_arrays(&a);
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
    uint64_t data_seed;  // the dataloader shuffles with this seed (0 included)
} ResumeSetup;

static const AdamWConfig RESUME_OPT = {0.9f, 0.95f, 1e-8f, 0.1f, 1.0f};

static void run_start(Run *r, const ResumeSetup *s) {
    char err[512];
    gpt2_cpu_build(&r->model, &s->cfg, s->B, s->T);
    param_table_init(&r->model.core.table, r->model.core.params, 77);
    if (dataloader_init(&r->dl, s->pattern, s->B, s->T, 0, 1, s->cfg.vocab_size, 1, s->data_seed, err, sizeof(err)) != 0) fatal("%s", err);
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
    if (gpt2_model_file_write(model_path, &s->cfg, r->model.core.params, version, err, err_size) != 0) return -1;
    TrainState st;
    memset(&st, 0, sizeof(st));
    st.step = (uint64_t)r->step;
    st.num_parameters = r->model.core.table.num_parameters;
    st.shard_offset = 0;
    st.shard_size = st.num_parameters;
    st.has_master = version == MODEL_FILE_VERSION_BF16;
    st.rng_state = r->rng.state;
    dataloader_get_position(&r->dl, &st.data);
    st.run = run_config(s);
    return train_state_write(state_path, &st, r->model.core.m, r->model.core.v, st.has_master ? r->model.core.params : NULL, err, err_size);
}

// Builds a fresh run from the files: parameters from the model file (then the fp32 masters when
// the state has them), moments, step, RNG and data position from the state.
static int run_load(Run *r, const ResumeSetup *s, const char *model_path, const char *state_path, char *err, size_t err_size) {
    GPT2Config got;
    int version;
    float *params;
    if (gpt2_model_file_load(model_path, &s->cfg, &got, &version, &params, err, err_size) != 0) return -1;
    gpt2_cpu_build(&r->model, &got, s->B, s->T);
    memcpy(r->model.core.params, params, r->model.core.table.num_parameters * sizeof(float));
    free(params);
    TrainRunConfig now = run_config(s);
    TrainState st;
    size_t np = r->model.core.table.num_parameters;
    if (train_state_load(state_path, &now, np, 0, np, &st, r->model.core.m, r->model.core.v, r->model.core.params, err, err_size) != 0) return -1;
    if (dataloader_init(&r->dl, s->pattern, s->B, s->T, (int)now.rank, (int)now.world_size, s->cfg.vocab_size, (int)st.data.shuffle,
                        st.data.seed, err, err_size) != 0)
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
    const char *model_path = testing_path(tmp_dir, "resume_model.bin"), *state_path = testing_path(tmp_dir, "resume_state.bin");
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
        size_t np = a.model.core.table.num_parameters;
        CHECK(memcmp(a.model.core.params, c.model.core.params, np * 4) == 0 && memcmp(a.model.core.m, c.model.core.m, np * 4) == 0 &&
                  memcmp(a.model.core.v, c.model.core.v, np * 4) == 0,
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
        if (d.model.core.params != NULL) gpt2_cpu_free(&d.model);
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
    write_shard(testing_path(tmp_dir, "syn_train_000.bin"), 4 * 32 + 1, 97, &rng);  // B*T = 32: 4 windows
    write_shard(testing_path(tmp_dir, "syn_train_001.bin"), 3 * 32 + 5, 97, &rng);  // 3 windows
    ResumeSetup s;
    char pattern[512];
    snprintf(pattern, sizeof(pattern), "%s", testing_path(tmp_dir, "syn_train_*.bin"));  // testing_path's buffers are reused
    s.pattern = pattern;
    GPT2Config cfg = {16, 97, 128, 2, 2, 16};
    s.cfg = cfg;
    s.B = 2;
    s.T = 16;
    s.grad_accum = 2;
    s.total_steps = 10;
    s.data_seed = 2024;
    check_resume(&s, 3, MODEL_FILE_VERSION_FP32, "synthetic fp32 file, mid-epoch");
    check_resume(&s, 7, MODEL_FILE_VERSION_BF16, "synthetic bf16 file + masters, epoch 2");
    s.data_seed = 0;  // --seed 0 is a shuffle seed like any other
    check_resume(&s, 5, MODEL_FILE_VERSION_FP32, "synthetic fp32 file, data shuffled with seed 0");
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
    s.data_seed = 2024;
    check_resume(&s, 3, MODEL_FILE_VERSION_BF16, "tinyshakespeare bf16 file + masters");
}

int main(void) {
    testing_tmpdir_create(tmp_dir, sizeof(tmp_dir), "test_checkpoint");
    RUN_TEST(test_model_file_fp32_roundtrip);
    RUN_TEST(test_model_file_bf16_roundtrip);
    RUN_TEST(test_model_file_rejects_corruption);
    RUN_TEST(test_model_file_rejects_overflowing_header);
    if (file_exists(LLMC_FILES[0]) && file_exists(LLMC_FILES[1])) RUN_TEST(test_llmc_files_load);
    else SKIP_TEST(test_llmc_files_load, "llm.c's gpt2_124M.bin and gpt2_124M_bf16.bin are not in the working directory");
    RUN_TEST(test_atomic_writes);
    RUN_TEST(test_crc32);
    RUN_TEST(test_train_state_roundtrip);
    RUN_TEST(test_train_state_errors);
    RUN_TEST(test_train_state_refuses_version1);
    RUN_TEST(test_train_state_refuses_unknown_section);
    RUN_TEST(test_train_state_refuses_missing_section);
    RUN_TEST(test_train_state_refuses_corrupt_payload);
    RUN_TEST(test_train_state_refuses_oversized);
    RUN_TEST(test_train_state_extension);
    RUN_TEST(test_resume_synthetic_shards);
    if (file_exists(TINYSHAKESPEARE_TRAIN)) RUN_TEST(test_resume_tinyshakespeare);
    else SKIP_TEST(test_resume_tinyshakespeare, TINYSHAKESPEARE_TRAIN " not found (run `make test-data`)");
    testing_tmpdir_remove(tmp_dir);
    return testing_finish();
}
