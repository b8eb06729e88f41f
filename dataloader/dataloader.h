// Token-shard data loader: reads llm.c shards (dev/data/prepare.py) and yields micro-batches
// inputs[B*T] and targets[B*T] (int32), split across data-parallel ranks, optionally shuffled
// per epoch, with a position that a checkpoint stores for an exact resume.
// Plain C, also compiled as C++ by nvcc; little-endian host assumed (as the shard format).
//
// Shard file: 256 int32 header ([0]=20240520 magic, [1]=1 version, [2]=token count N), then N
// uint16 tokens; the file is exactly 1024 + 2*N bytes.
//
// Window scheme
// - A window is B*T+1 consecutive tokens of one shard: inputs are its first B*T tokens, targets
//   the last B*T (inputs shifted by one). Shard s holds W_s = (N_s - 1) / (B*T) windows, starting
//   at tokens 0, B*T, 2*B*T, ...; the tokens after index W_s*B*T are never an input.
// - An epoch visits all W = sum W_s windows in one global order: the shards one after another
//   (in sorted file-name order, or a permutation of it), the windows of each shard in order (or a
//   permutation of them). With shuffling, both permutations are drawn from (seed, epoch) and are
//   identical on every rank; every seed is valid, 0 included; without shuffling the order is
//   sequential in every epoch.
// - Windows are dealt round-robin: the round starting at global window p gives window p + r to rank
//   r of R. A round happens only when all R windows exist (p + R <= W); the windows after the last
//   complete round of an epoch (W mod R of them when rounds start at multiples of R) are dropped.
//   So every rank yields floor(W / R) batches per epoch, the ranks' windows are disjoint, and the
//   union of their windows is the first R*floor(W/R) windows of the order that R = 1 reads in full.
// - The position is (shuffle, seed, epoch, p): p is the start of the next round, equal on all ranks;
//   shuffle says whether the order is shuffled (seed alone cannot: 0 is a shuffle seed too). After
//   the last round of an epoch the loader moves to (epoch + 1, 0) at once. A position saved with
//   another world size resumes with the windows from p on (a round then starts at p).
// Memory: one shard's tokens at a time (the largest shard's size), plus small per-shard tables.
// Every token of a shard is checked against vocab_size when the shard is loaded (the first one
// during init, the others when training reaches them).
#ifndef DATALOADER_DATALOADER_H
#define DATALOADER_DATALOADER_H

#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utils.h"

#define SHARD_MAGIC 20240520
#define SHARD_VERSION 1
#define SHARD_HEADER_INTS 256
#define SHARD_HEADER_BYTES (SHARD_HEADER_INTS * (long)sizeof(int32_t))

// Where a loader stands, for checkpoints.
typedef struct {
    uint64_t seed;      // shuffle seed the loader was created with, any value when shuffling; 0 when not
    uint64_t epoch;     // number of completed passes over the data
    uint64_t position;  // index of the next global window within the current epoch
    uint64_t shuffle;   // 1: the order is shuffled with `seed`, 0: sequential
} DataLoaderPosition;

typedef struct {
    // settings
    int B, T;                // batch rows and sequence length: a window is B*T+1 tokens
    int rank, world;         // this data-parallel rank and the number of ranks
    int vocab_size;          // every token must be < vocab_size
    int shuffle;             // 1: shards and windows permuted per epoch
    uint64_t seed;           // shuffle seed, any value (0 included) when shuffling; 0 when not
    // shard files, in sorted name order ("file index")
    int num_shards;
    char **shard_paths;
    size_t *shard_tokens;    // token count N_s of each shard
    size_t *shard_windows;   // windows W_s = (N_s - 1) / (B*T) of each shard
    size_t total_windows;    // W, windows per epoch before dealing to ranks
    // order of the current epoch
    uint64_t epoch;          // completed passes
    uint64_t position;       // global index of the next round's first window
    size_t *shard_order;     // [num_shards] file index of the k-th shard visited this epoch
    size_t *order_start;     // [num_shards + 1] global index of the k-th visited shard's first window
    // the shard in memory
    int loaded_shard;        // file index of the tokens in shard_buf, -1 when none
    int window_order_shard;  // file index (and epoch below) that window_order was drawn for, -1 none
    uint64_t window_order_epoch;
    uint16_t *shard_buf;     // [largest N_s] tokens of loaded_shard
    size_t *window_order;    // [largest W_s] window index within the shard of its i-th visited window
    // the batch, filled by dataloader_next_batch
    int *inputs;             // [B*T]
    int *targets;            // [B*T]
} DataLoader;

// A 64-bit mixing function (the splitmix64 finalizer): a well-spread hash of x.
static inline uint64_t dataloader_mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

// Fills order[0..n) with a permutation of 0..n-1: the identity, or (when key_used) a uniform
// Fisher-Yates shuffle driven by a splitmix64 stream started from key. The modulo reduction
// has a bias of about n / 2^64, which is negligible.
static inline void dataloader_permutation(size_t *order, size_t n, int key_used, uint64_t key) {
    for (size_t i = 0; i < n; i++) order[i] = i;
    if (!key_used) return;
    uint64_t state = key;
    for (size_t i = n; i > 1; i--) {
        state += 0x9e3779b97f4a7c15ULL;
        size_t j = (size_t)(dataloader_mix64(state) % (uint64_t)i);
        size_t tmp = order[i - 1];
        order[i - 1] = order[j];
        order[j] = tmp;
    }
}

// The key of the permutation `stream` (0: shard order, 1 + file index: that shard's windows) of
// an epoch, from the loader's seed.
static inline uint64_t dataloader_stream_key(const DataLoader *dl, uint64_t stream) {
    return dataloader_mix64(dataloader_mix64(dataloader_mix64(dl->seed) ^ dl->epoch) ^ stream);
}

// Sets the shard order and the window offsets of the shards for dl->epoch.
static inline void dataloader_begin_epoch(DataLoader *dl) {
    dataloader_permutation(dl->shard_order, (size_t)dl->num_shards, dl->shuffle, dataloader_stream_key(dl, 0));
    dl->order_start[0] = 0;
    for (int k = 0; k < dl->num_shards; k++) {
        dl->order_start[k + 1] = dl->order_start[k] + dl->shard_windows[dl->shard_order[k]];
    }
}

// Reads and checks the header of a shard file; on success *num_tokens is its token count.
static inline int dataloader_read_header(const char *path, size_t *num_tokens, char *err, size_t err_size) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return set_error(err, err_size, "%s: cannot open: %s", path, strerror(errno));
    int32_t header[SHARD_HEADER_INTS];
    size_t got = fread(header, sizeof(int32_t), SHARD_HEADER_INTS, f);
    int read_errno = ferror(f) ? errno : 0;
    long file_bytes = -1;
    if (fseek(f, 0, SEEK_END) == 0) file_bytes = ftell(f);
    fclose(f);
    if (read_errno != 0) return set_error(err, err_size, "%s: cannot read: %s", path, strerror(read_errno));
    if (got != SHARD_HEADER_INTS)
        return set_error(err, err_size, "%s: file is shorter than the %ld-byte shard header", path, SHARD_HEADER_BYTES);
    if (header[0] != SHARD_MAGIC)
        return set_error(err, err_size, "%s: wrong magic number %d in the header (expected %d: not a token shard)",
                         path, header[0], SHARD_MAGIC);
    if (header[1] != SHARD_VERSION)
        return set_error(err, err_size, "%s: unsupported shard version %d (expected %d)", path, header[1], SHARD_VERSION);
    if (header[2] < 0) return set_error(err, err_size, "%s: negative token count %d in the header", path, header[2]);
    long expected_bytes = SHARD_HEADER_BYTES + 2L * header[2];
    if (file_bytes < 0) return set_error(err, err_size, "%s: cannot determine the file size", path);
    if (file_bytes != expected_bytes)
        return set_error(err, err_size, "%s: header token count %d needs a file of %ld bytes, but the file has %ld bytes%s",
                         path, header[2], expected_bytes, file_bytes,
                         file_bytes < expected_bytes ? " (truncated)" : " (trailing data)");
    *num_tokens = (size_t)header[2];
    return 0;
}

// Loads the tokens of shard `file_index` into dl->shard_buf and checks each against vocab_size.
static inline int dataloader_load_shard(DataLoader *dl, int file_index, char *err, size_t err_size) {
    const char *path = dl->shard_paths[file_index];
    size_t n = dl->shard_tokens[file_index];
    dl->loaded_shard = -1;
    FILE *f = fopen(path, "rb");
    if (f == NULL) return set_error(err, err_size, "%s: cannot open: %s", path, strerror(errno));
    size_t got = 0;
    if (fseek(f, SHARD_HEADER_BYTES, SEEK_SET) == 0) got = fread(dl->shard_buf, sizeof(uint16_t), n, f);
    fclose(f);
    if (got != n)
        return set_error(err, err_size, "%s: read %zu of the %zu tokens (file changed since the loader opened it?)",
                         path, got, n);
    for (size_t i = 0; i < n; i++) {
        if ((int)dl->shard_buf[i] >= dl->vocab_size)
            return set_error(err, err_size, "%s: token %d at index %zu is out of range (vocab_size %d)",
                             path, (int)dl->shard_buf[i], i, dl->vocab_size);
    }
    dl->loaded_shard = file_index;
    return 0;
}

// Makes the shard that holds global window g resident (loading it, drawing its window order for
// this epoch) and returns that window's start token within the shard in *offset.
static inline int dataloader_seek_window(DataLoader *dl, size_t g, size_t *offset, char *err, size_t err_size) {
    int lo = 0, hi = dl->num_shards - 1;  // find the visited shard k with order_start[k] <= g < order_start[k+1]
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (dl->order_start[mid] <= g) lo = mid; else hi = mid - 1;
    }
    int file_index = (int)dl->shard_order[lo];
    if (dl->loaded_shard != file_index) {
        if (dataloader_load_shard(dl, file_index, err, err_size) != 0) return -1;
    }
    if (dl->window_order_shard != file_index || dl->window_order_epoch != dl->epoch) {
        dataloader_permutation(dl->window_order, dl->shard_windows[file_index], dl->shuffle,
                               dataloader_stream_key(dl, 1 + (uint64_t)file_index));
        dl->window_order_shard = file_index;
        dl->window_order_epoch = dl->epoch;
    }
    size_t window = dl->window_order[g - dl->order_start[lo]];
    *offset = window * (size_t)dl->B * (size_t)dl->T;
    return 0;
}

// Moves to the next epoch when no complete round is left in this one.
static inline void dataloader_normalize_position(DataLoader *dl) {
    if (dl->position + (uint64_t)dl->world > dl->total_windows) {
        dl->epoch++;
        dl->position = 0;
        dataloader_begin_epoch(dl);
    }
}

static inline int dataloader_compare_paths(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// Frees everything the loader holds (safe on a loader whose init failed) and zeroes it.
static inline void dataloader_free(DataLoader *dl) {
    if (dl->shard_paths != NULL) {
        for (int s = 0; s < dl->num_shards; s++) free(dl->shard_paths[s]);
    }
    free(dl->shard_paths);
    free(dl->shard_tokens);
    free(dl->shard_windows);
    free(dl->shard_order);
    free(dl->order_start);
    free(dl->shard_buf);
    free(dl->window_order);
    free(dl->inputs);
    free(dl->targets);
    memset(dl, 0, sizeof(*dl));
    dl->loaded_shard = -1;
    dl->window_order_shard = -1;
}

// Opens the shards matching the glob `pattern` (sorted by name) for rank `rank` of `world`,
// with micro-batches of B rows of T tokens. Returns 0, or non-zero with a message in err.
static inline int dataloader_init(DataLoader *dl, const char *pattern, int B, int T, int rank, int world,
                                  int vocab_size, int shuffle, uint64_t seed, char *err, size_t err_size) {
    memset(dl, 0, sizeof(*dl));
    dl->loaded_shard = -1;
    dl->window_order_shard = -1;
    if (B < 1) return set_error(err, err_size, "dataloader: batch size B=%d must be at least 1", B);
    if (T < 1) return set_error(err, err_size, "dataloader: sequence length T=%d must be at least 1", T);
    if (B > (INT_MAX - 1) / T) return set_error(err, err_size, "dataloader: B*T = %d*%d is too large", B, T);
    if (world < 1) return set_error(err, err_size, "dataloader: world size %d must be at least 1", world);
    if (rank < 0 || rank >= world)
        return set_error(err, err_size, "dataloader: rank %d is outside 0..%d (world size %d)", rank, world - 1, world);
    if (vocab_size < 1 || vocab_size > 65536)
        return set_error(err, err_size, "dataloader: vocab_size %d is outside 1..65536 (uint16 tokens)", vocab_size);
    dl->B = B; dl->T = T; dl->rank = rank; dl->world = world; dl->vocab_size = vocab_size;
    dl->shuffle = shuffle ? 1 : 0;
    dl->seed = shuffle ? seed : 0;

    glob_t found;
    memset(&found, 0, sizeof(found));
    int grc = glob(pattern, 0, NULL, &found);
    if (grc != 0 || found.gl_pathc == 0) {
        globfree(&found);
        if (grc == 0 || grc == GLOB_NOMATCH)
            return set_error(err, err_size, "dataloader: no file matches the pattern '%s'", pattern);
        return set_error(err, err_size, "dataloader: cannot search for '%s' (glob error %d)", pattern, grc);
    }
    if (found.gl_pathc > (size_t)INT_MAX) {
        globfree(&found);
        return set_error(err, err_size, "dataloader: too many files match '%s'", pattern);
    }
    dl->num_shards = (int)found.gl_pathc;
    dl->shard_paths = (char **)calloc_check((size_t)dl->num_shards, sizeof(char *));
    for (int s = 0; s < dl->num_shards; s++) {
        size_t len = strlen(found.gl_pathv[s]);
        dl->shard_paths[s] = (char *)malloc_check(len + 1);
        memcpy(dl->shard_paths[s], found.gl_pathv[s], len + 1);
    }
    globfree(&found);
    qsort(dl->shard_paths, (size_t)dl->num_shards, sizeof(char *), dataloader_compare_paths);

    size_t window_tokens = (size_t)B * (size_t)T;
    size_t max_tokens = 0, max_windows = 0;
    dl->shard_tokens = (size_t *)calloc_check((size_t)dl->num_shards, sizeof(size_t));
    dl->shard_windows = (size_t *)calloc_check((size_t)dl->num_shards, sizeof(size_t));
    for (int s = 0; s < dl->num_shards; s++) {
        if (dataloader_read_header(dl->shard_paths[s], &dl->shard_tokens[s], err, err_size) != 0) {
            dataloader_free(dl);
            return -1;
        }
        size_t n = dl->shard_tokens[s];
        if (n < window_tokens + 1) {
            set_error(err, err_size, "%s: shard too small: %zu tokens, one window of B*T+1 = %zu tokens needs more",
                      dl->shard_paths[s], n, window_tokens + 1);
            dataloader_free(dl);
            return -1;
        }
        dl->shard_windows[s] = (n - 1) / window_tokens;
        dl->total_windows += dl->shard_windows[s];
        if (n > max_tokens) max_tokens = n;
        if (dl->shard_windows[s] > max_windows) max_windows = dl->shard_windows[s];
    }
    if (dl->total_windows < (size_t)world) {
        set_error(err, err_size, "dataloader: '%s' holds %zu windows of B*T+1 = %zu tokens, fewer than the %d ranks",
                  pattern, dl->total_windows, window_tokens + 1, world);
        dataloader_free(dl);
        return -1;
    }
    dl->shard_order = (size_t *)calloc_check((size_t)dl->num_shards, sizeof(size_t));
    dl->order_start = (size_t *)calloc_check((size_t)dl->num_shards + 1, sizeof(size_t));
    dl->shard_buf = (uint16_t *)malloc_check(max_tokens * sizeof(uint16_t));
    dl->window_order = (size_t *)malloc_check(max_windows * sizeof(size_t));
    dl->inputs = (int *)malloc_check(window_tokens * sizeof(int));
    dl->targets = (int *)malloc_check(window_tokens * sizeof(int));
    dataloader_begin_epoch(dl);
    // load (and check) this rank's first shard now, so bad data fails at startup
    size_t offset;
    if (dataloader_seek_window(dl, (size_t)rank, &offset, err, err_size) != 0) {
        dataloader_free(dl);
        return -1;
    }
    return 0;
}

// Fills dl->inputs and dl->targets with this rank's next window and advances the position,
// moving to the next epoch after its last complete round. Non-zero (message in err) when the
// shard that holds the window cannot be read or has a token out of range.
static inline int dataloader_next_batch(DataLoader *dl, char *err, size_t err_size) {
    size_t offset;
    if (dataloader_seek_window(dl, (size_t)(dl->position + (uint64_t)dl->rank), &offset, err, err_size) != 0) return -1;
    size_t n = (size_t)dl->B * (size_t)dl->T;
    const uint16_t *window = dl->shard_buf + offset;
    for (size_t i = 0; i < n; i++) {
        dl->inputs[i] = (int)window[i];
        dl->targets[i] = (int)window[i + 1];
    }
    dl->position += (uint64_t)dl->world;
    dataloader_normalize_position(dl);
    return 0;
}

// Back to the start of epoch 0.
static inline void dataloader_reset(DataLoader *dl) {
    dl->epoch = 0;
    dl->position = 0;
    dataloader_begin_epoch(dl);
}

static inline void dataloader_get_position(const DataLoader *dl, DataLoaderPosition *pos) {
    pos->seed = dl->seed;
    pos->epoch = dl->epoch;
    pos->position = dl->position;
    pos->shuffle = (uint64_t)dl->shuffle;
}

// Continues from a saved position: the next batch is the one that followed it when it was saved
// (with the same data, B, T and world size). Non-zero (message in err) when the position belongs
// to another order (shuffled or not, another seed) or lies beyond this data's epoch.
static inline int dataloader_set_position(DataLoader *dl, const DataLoaderPosition *pos, char *err, size_t err_size) {
    if (pos->shuffle > 1)
        return set_error(err, err_size, "dataloader: saved position has a bad shuffle flag %llu (0 or 1)", (unsigned long long)pos->shuffle);
    if (pos->shuffle != (uint64_t)dl->shuffle || (dl->shuffle && pos->seed != dl->seed)) {
        char saved[64], now[64];
        if (pos->shuffle) snprintf(saved, sizeof(saved), "the order shuffled with seed %llu", (unsigned long long)pos->seed);
        else snprintf(saved, sizeof(saved), "the sequential order (no shuffle)");
        if (dl->shuffle) snprintf(now, sizeof(now), "shuffles with seed %llu", (unsigned long long)dl->seed);
        else snprintf(now, sizeof(now), "does not shuffle");
        return set_error(err, err_size, "dataloader: the saved position belongs to %s, but this loader %s", saved, now);
    }
    if (pos->position > dl->total_windows) {
        return set_error(err, err_size, "dataloader: saved position %llu is beyond the %zu windows of an epoch "
                         "(different data, B or T?)", (unsigned long long)pos->position, dl->total_windows);
    }
    dl->epoch = pos->epoch;
    dl->position = pos->position;
    dataloader_begin_epoch(dl);
    dataloader_normalize_position(dl);
    return 0;
}

// Batches each rank yields per epoch.
static inline size_t dataloader_batches_per_epoch(const DataLoader *dl) {
    return dl->total_windows / (size_t)dl->world;
}

#endif // DATALOADER_DATALOADER_H
