// Checkpoints: llm.c-compatible GPT-2 model files and the training-state file for exact resume.
// Every write is atomic (temporary file, fsync, rename); every read validates what it reads and
// reports problems through a return code and a message naming the file.
// Plain C, also compiled as C++ by nvcc.
//
// Model file (llm.c's format, little-endian):
//   int32 header[256]: [0] magic 20240326, [1] version (3: fp32 parameters, 5: bf16 parameters),
//                      [2] max_seq_len, [3] vocab_size, [4] num_layers, [5] num_heads,
//                      [6] channels, [7] padded_vocab_size, the rest 0
//   then every parameter tensor in llm.c's order (core/gpt2_model.h), fp32 or bf16; nothing after.
//   bf16 is written by rounding the fp32 parameters to nearest even (kernels/formats.h) and widened
//   exactly on load.
//
// Training-state file (this project's format, little-endian), written next to a model file:
//   uint64 header[64]:
//     [0]  magic 20261122            [1]  version 1
//     [2]  step: optimizer steps completed (the run resumes at this step)
//     [3]  num_parameters of the whole model
//     [4]  shard_offset, [5] shard_size: the parameter range [offset, offset+size) that the
//          arrays below cover (the whole model, or one rank's ZeRO shard)
//     [6]  has_master: 1 when the fp32 master weights follow (model file written in bf16)
//     [7]  host RNG state (core/rng.h)
//     [8]  dataloader seed, [9] dataloader epoch, [10] dataloader position (DataLoaderPosition)
//     [11] micro-batch size B, [12] sequence length T, [13] total batch size in tokens,
//     [14] world size, [15] rank of the process that wrote the file (run settings that must
//          match on resume)
//     [16..63] reserved, written as 0
//   float32 m[shard_size]   AdamW first moment
//   float32 v[shard_size]   AdamW second moment
//   float32 master[shard_size]   only when has_master
//   and nothing after.
#ifndef CORE_CHECKPOINT_H
#define CORE_CHECKPOINT_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/gpt2_model.h"
#include "core/utils.h"
#include "dataloader/dataloader.h"
#include "kernels/formats.h"

#define MODEL_FILE_MAGIC 20240326
#define MODEL_FILE_VERSION_FP32 3
#define MODEL_FILE_VERSION_BF16 5
#define MODEL_FILE_HEADER_INTS 256
#define MODEL_FILE_CHUNK ((size_t)1 << 16)  // parameters converted to/from bf16 at a time

#define TRAIN_STATE_MAGIC 20261122ull
#define TRAIN_STATE_VERSION 1ull
#define TRAIN_STATE_HEADER_WORDS 64

// ----------------------------------------------------------------------------
// Atomic file writes: data goes to "<path>.tmp.<pid>", which is flushed, fsynced and renamed
// over <path> (then the directory is fsynced), so <path> is either the old file or the complete
// new one. On any failure the temporary file is removed and nothing appears at <path>.

typedef struct {
    FILE *file;
    char *path;      // final path
    char *tmp_path;  // "<path>.tmp.<pid>"
} AtomicWriter;

// Discards an open writer: closes and deletes the temporary file.
static inline void atomic_writer_abort(AtomicWriter *w) {
    if (w->file != NULL) fclose(w->file);
    if (w->tmp_path != NULL) unlink(w->tmp_path);
    free(w->path);
    free(w->tmp_path);
    w->file = NULL;
    w->path = NULL;
    w->tmp_path = NULL;
}

// Creates the temporary file for `path`. Returns 0, or -1 with a message.
static inline int atomic_writer_open(AtomicWriter *w, const char *path, char *err, size_t err_size) {
    size_t len = strlen(path);
    w->path = (char *)malloc_check(len + 1);
    memcpy(w->path, path, len + 1);
    w->tmp_path = (char *)malloc_check(len + 32);
    snprintf(w->tmp_path, len + 32, "%s.tmp.%ld", path, (long)getpid());
    w->file = fopen(w->tmp_path, "wb");
    if (w->file == NULL) {
        int e = errno;
        set_error(err, err_size, "cannot write '%s': creating '%s' failed: %s", path, w->tmp_path, strerror(e));
        free(w->tmp_path);  // nothing was created, so nothing to unlink
        w->tmp_path = NULL;
        atomic_writer_abort(w);
        return -1;
    }
    return 0;
}

// Appends `bytes` bytes; on failure aborts the writer and returns -1 with a message.
static inline int atomic_writer_write(AtomicWriter *w, const void *data, size_t bytes, char *err, size_t err_size) {
    if (bytes > 0 && fwrite(data, 1, bytes, w->file) != bytes) {
        int e = errno;
        set_error(err, err_size, "cannot write '%s': writing %zu bytes to '%s' failed: %s", w->path, bytes, w->tmp_path, strerror(e));
        atomic_writer_abort(w);
        return -1;
    }
    return 0;
}

// Flushes, fsyncs and renames the temporary file over the final path, then fsyncs the directory.
// Returns 0, or -1 with a message (the temporary file is removed).
static inline int atomic_writer_commit(AtomicWriter *w, char *err, size_t err_size) {
    if (fflush(w->file) != 0 || fsync(fileno(w->file)) != 0) {
        int e = errno;
        set_error(err, err_size, "cannot write '%s': flushing '%s' failed: %s", w->path, w->tmp_path, strerror(e));
        atomic_writer_abort(w);
        return -1;
    }
    int close_failed = fclose(w->file);
    w->file = NULL;
    if (close_failed != 0 || rename(w->tmp_path, w->path) != 0) {
        int e = errno;
        set_error(err, err_size, "cannot write '%s': %s '%s' failed: %s", w->path, close_failed ? "closing" : "renaming", w->tmp_path, strerror(e));
        atomic_writer_abort(w);
        return -1;
    }
    // The rename is durable once the directory entry is on disk.
    const char *slash = strrchr(w->path, '/');
    char *dir;
    if (slash == NULL) {
        dir = (char *)malloc_check(2);
        strcpy(dir, ".");
    } else {
        size_t dlen = slash == w->path ? 1 : (size_t)(slash - w->path);
        dir = (char *)malloc_check(dlen + 1);
        memcpy(dir, w->path, dlen);
        dir[dlen] = '\0';
    }
    int result = 0;
    int fd = open(dir, O_RDONLY);
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL)) {
        int e = errno;
        result = set_error(err, err_size, "wrote '%s' but syncing its directory '%s' failed: %s", w->path, dir, strerror(e));
    }
    if (fd >= 0) close(fd);
    free(dir);
    free(w->tmp_path);  // renamed: nothing left to delete
    w->tmp_path = NULL;
    atomic_writer_abort(w);
    return result;
}

// ----------------------------------------------------------------------------
// Reading helpers

// Opens `path` for reading and returns its size in bytes through *size. NULL with a message on failure.
static inline FILE *checkpoint_open_read(const char *path, long long *size, char *err, size_t err_size) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        set_error(err, err_size, "cannot open '%s': %s", path, strerror(e));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        int e = errno;
        set_error(err, err_size, "cannot stat '%s': %s", path, strerror(e));
        fclose(f);
        return NULL;
    }
    *size = (long long)st.st_size;
    return f;
}

// Reads exactly `bytes` bytes; -1 with a message naming the file and what was being read.
static inline int checkpoint_read(FILE *f, void *out, size_t bytes, const char *path, const char *what, char *err, size_t err_size) {
    size_t got = fread(out, 1, bytes, f);
    if (got != bytes) return set_error(err, err_size, "'%s': short read of %s: wanted %zu bytes, got %zu", path, what, bytes, got);
    return 0;
}

// ----------------------------------------------------------------------------
// Model files

// Writes the configuration and parameters (num_parameters fp32 values in llm.c's order) to an
// llm.c model file; `version` is MODEL_FILE_VERSION_FP32 or MODEL_FILE_VERSION_BF16 (parameters
// rounded to nearest even). Atomic. Returns 0, or -1 with a message.
static inline int model_file_write(const char *path, const GPT2Config *cfg, const float *params, int version, char *err, size_t err_size) {
    if (version != MODEL_FILE_VERSION_FP32 && version != MODEL_FILE_VERSION_BF16)
        return set_error(err, err_size, "cannot write '%s': unknown model file version %d (3 = fp32, 5 = bf16)", path, version);
    if (gpt2_config_validate(cfg, err, err_size) != 0) return -1;
    GPT2ParamLayout layout;
    gpt2_param_layout(cfg, &layout);
    int32_t header[MODEL_FILE_HEADER_INTS];
    memset(header, 0, sizeof(header));
    header[0] = MODEL_FILE_MAGIC;
    header[1] = version;
    header[2] = cfg->max_seq_len;
    header[3] = cfg->vocab_size;
    header[4] = cfg->num_layers;
    header[5] = cfg->num_heads;
    header[6] = cfg->channels;
    header[7] = cfg->padded_vocab_size;
    AtomicWriter w;
    if (atomic_writer_open(&w, path, err, err_size) != 0) return -1;
    if (atomic_writer_write(&w, header, sizeof(header), err, err_size) != 0) return -1;
    if (version == MODEL_FILE_VERSION_FP32) {
        if (atomic_writer_write(&w, params, layout.num_parameters * sizeof(float), err, err_size) != 0) return -1;
    } else {
        uint16_t *buf = (uint16_t *)malloc_check(MODEL_FILE_CHUNK * sizeof(uint16_t));
        for (size_t start = 0; start < layout.num_parameters; start += MODEL_FILE_CHUNK) {
            size_t n = layout.num_parameters - start < MODEL_FILE_CHUNK ? layout.num_parameters - start : MODEL_FILE_CHUNK;
            for (size_t i = 0; i < n; i++) buf[i] = bf16_bits_from_float_rne(params[start + i]);
            if (atomic_writer_write(&w, buf, n * sizeof(uint16_t), err, err_size) != 0) {
                free(buf);
                return -1;
            }
        }
        free(buf);
    }
    return atomic_writer_commit(&w, err, err_size);
}

// Reads and validates the header of a model file (magic, version, configuration, exact file
// length). Fills *cfg and *version. Returns 0, or -1 with a message naming the file.
static inline int model_file_read_header(const char *path, GPT2Config *cfg, int *version, char *err, size_t err_size) {
    long long size;
    FILE *f = checkpoint_open_read(path, &size, err, err_size);
    if (f == NULL) return -1;
    int32_t header[MODEL_FILE_HEADER_INTS];
    int rc = checkpoint_read(f, header, sizeof(header), path, "the 1024-byte model header", err, err_size);
    fclose(f);
    if (rc != 0) return -1;
    if (header[0] != MODEL_FILE_MAGIC)
        return set_error(err, err_size, "'%s' is not a model file: magic %d, expected %d", path, header[0], MODEL_FILE_MAGIC);
    if (header[1] != MODEL_FILE_VERSION_FP32 && header[1] != MODEL_FILE_VERSION_BF16)
        return set_error(err, err_size, "'%s': unsupported model file version %d (3 = fp32, 5 = bf16)", path, header[1]);
    cfg->max_seq_len = header[2];
    cfg->vocab_size = header[3];
    cfg->num_layers = header[4];
    cfg->num_heads = header[5];
    cfg->channels = header[6];
    cfg->padded_vocab_size = header[7];
    char why[256];
    if (gpt2_config_validate(cfg, why, sizeof(why)) != 0) return set_error(err, err_size, "'%s': bad model header: %s", path, why);
    GPT2ParamLayout layout;
    gpt2_param_layout(cfg, &layout);
    long long expected = (long long)sizeof(header) + (long long)layout.num_parameters * (header[1] == MODEL_FILE_VERSION_FP32 ? 4 : 2);
    if (size != expected)
        return set_error(err, err_size, "'%s': file is %lld bytes but its header (version %d, %zu parameters) needs exactly %lld (%s)",
                         path, size, header[1], layout.num_parameters, expected, size < expected ? "truncated" : "trailing bytes");
    *version = header[1];
    return 0;
}

// Fails with a message naming the first field where the file's configuration differs from `want`.
static inline int model_file_check_config(const char *path, const GPT2Config *got, const GPT2Config *want, char *err, size_t err_size) {
    const char *names[6] = {"max_seq_len", "vocab_size", "padded_vocab_size", "num_layers", "num_heads", "channels"};
    int got_v[6] = {got->max_seq_len, got->vocab_size, got->padded_vocab_size, got->num_layers, got->num_heads, got->channels};
    int want_v[6] = {want->max_seq_len, want->vocab_size, want->padded_vocab_size, want->num_layers, want->num_heads, want->channels};
    for (int i = 0; i < 6; i++) {
        if (got_v[i] != want_v[i])
            return set_error(err, err_size, "'%s': model configuration mismatch: %s is %d in the file, %d expected", path, names[i], got_v[i], want_v[i]);
    }
    return 0;
}

// Loads a model file (version 3 or 5) into a newly allocated fp32 parameter buffer *params
// (bf16 widened exactly); the caller frees it. When `want` is not NULL the file's configuration
// must equal it. Fills *cfg and *version. Returns 0, or -1 with a message naming the file.
static inline int model_file_load(const char *path, const GPT2Config *want, GPT2Config *cfg, int *version, float **params, char *err, size_t err_size) {
    *params = NULL;
    if (model_file_read_header(path, cfg, version, err, err_size) != 0) return -1;
    if (want != NULL && model_file_check_config(path, cfg, want, err, err_size) != 0) return -1;
    GPT2ParamLayout layout;
    gpt2_param_layout(cfg, &layout);
    long long size;
    FILE *f = checkpoint_open_read(path, &size, err, err_size);
    if (f == NULL) return -1;
    if (fseek(f, MODEL_FILE_HEADER_INTS * sizeof(int32_t), SEEK_SET) != 0) {
        fclose(f);
        return set_error(err, err_size, "'%s': cannot seek past the header", path);
    }
    float *p = (float *)malloc_check(layout.num_parameters * sizeof(float));
    int rc = 0;
    if (*version == MODEL_FILE_VERSION_FP32) {
        rc = checkpoint_read(f, p, layout.num_parameters * sizeof(float), path, "the fp32 parameters", err, err_size);
    } else {
        uint16_t *buf = (uint16_t *)malloc_check(MODEL_FILE_CHUNK * sizeof(uint16_t));
        for (size_t start = 0; start < layout.num_parameters && rc == 0; start += MODEL_FILE_CHUNK) {
            size_t n = layout.num_parameters - start < MODEL_FILE_CHUNK ? layout.num_parameters - start : MODEL_FILE_CHUNK;
            rc = checkpoint_read(f, buf, n * sizeof(uint16_t), path, "the bf16 parameters", err, err_size);
            for (size_t i = 0; rc == 0 && i < n; i++) p[start + i] = bf16_bits_to_float(buf[i]);
        }
        free(buf);
    }
    fclose(f);
    if (rc != 0) {
        free(p);
        return -1;
    }
    *params = p;
    return 0;
}

// ----------------------------------------------------------------------------
// Training-state files

// Run settings that must be the same when a run resumes from a state file.
typedef struct {
    uint64_t batch_size;        // micro-batch B per process
    uint64_t seq_len;           // T
    uint64_t total_batch_size;  // tokens per optimizer step
    uint64_t world_size;        // number of processes
    uint64_t rank;              // the process that wrote (and must read) this file
} TrainRunConfig;

// Everything in a training-state file except its arrays.
typedef struct {
    uint64_t step;            // optimizer steps completed
    uint64_t num_parameters;  // of the whole model
    uint64_t shard_offset;    // the arrays cover parameters [shard_offset, shard_offset + shard_size)
    uint64_t shard_size;
    int has_master;           // fp32 master weights stored (model file in bf16)
    uint64_t rng_state;       // core/rng.h state
    DataLoaderPosition data;  // where the dataloader resumes
    TrainRunConfig run;
} TrainState;

// Writes a training-state file: the header from *st, then m, v (shard_size floats each) and,
// when st->has_master, master. Atomic. Returns 0, or -1 with a message.
static inline int train_state_write(const char *path, const TrainState *st, const float *m, const float *v, const float *master, char *err, size_t err_size) {
    if (st->shard_offset + st->shard_size > st->num_parameters)
        return set_error(err, err_size, "cannot write '%s': shard [%llu, %llu) exceeds the %llu parameters", path,
                         (unsigned long long)st->shard_offset, (unsigned long long)(st->shard_offset + st->shard_size), (unsigned long long)st->num_parameters);
    if (st->has_master && master == NULL)
        return set_error(err, err_size, "cannot write '%s': has_master is set but no master weights were given", path);
    uint64_t header[TRAIN_STATE_HEADER_WORDS];
    memset(header, 0, sizeof(header));
    header[0] = TRAIN_STATE_MAGIC;
    header[1] = TRAIN_STATE_VERSION;
    header[2] = st->step;
    header[3] = st->num_parameters;
    header[4] = st->shard_offset;
    header[5] = st->shard_size;
    header[6] = st->has_master ? 1 : 0;
    header[7] = st->rng_state;
    header[8] = st->data.seed;
    header[9] = st->data.epoch;
    header[10] = st->data.position;
    header[11] = st->run.batch_size;
    header[12] = st->run.seq_len;
    header[13] = st->run.total_batch_size;
    header[14] = st->run.world_size;
    header[15] = st->run.rank;
    size_t bytes = (size_t)st->shard_size * sizeof(float);
    AtomicWriter w;
    if (atomic_writer_open(&w, path, err, err_size) != 0) return -1;
    if (atomic_writer_write(&w, header, sizeof(header), err, err_size) != 0) return -1;
    if (atomic_writer_write(&w, m, bytes, err, err_size) != 0) return -1;
    if (atomic_writer_write(&w, v, bytes, err, err_size) != 0) return -1;
    if (st->has_master && atomic_writer_write(&w, master, bytes, err, err_size) != 0) return -1;
    return atomic_writer_commit(&w, err, err_size);
}

// Reads and validates the header of a training-state file (magic, version, shard range, exact
// file length) into *st. Returns 0, or -1 with a message naming the file.
static inline int train_state_read_header(const char *path, TrainState *st, char *err, size_t err_size) {
    long long size;
    FILE *f = checkpoint_open_read(path, &size, err, err_size);
    if (f == NULL) return -1;
    uint64_t header[TRAIN_STATE_HEADER_WORDS];
    int rc = checkpoint_read(f, header, sizeof(header), path, "the 512-byte training-state header", err, err_size);
    fclose(f);
    if (rc != 0) return -1;
    if (header[0] != TRAIN_STATE_MAGIC)
        return set_error(err, err_size, "'%s' is not a training-state file: magic %llu, expected %llu", path, (unsigned long long)header[0], TRAIN_STATE_MAGIC);
    if (header[1] != TRAIN_STATE_VERSION)
        return set_error(err, err_size, "'%s': unsupported training-state version %llu (expected %llu)", path, (unsigned long long)header[1], TRAIN_STATE_VERSION);
    if (header[6] > 1) return set_error(err, err_size, "'%s': bad has_master flag %llu", path, (unsigned long long)header[6]);
    if (header[4] > header[3] || header[5] > header[3] - header[4])
        return set_error(err, err_size, "'%s': shard [%llu, +%llu) exceeds the %llu parameters", path,
                         (unsigned long long)header[4], (unsigned long long)header[5], (unsigned long long)header[3]);
    st->step = header[2];
    st->num_parameters = header[3];
    st->shard_offset = header[4];
    st->shard_size = header[5];
    st->has_master = (int)header[6];
    st->rng_state = header[7];
    st->data.seed = header[8];
    st->data.epoch = header[9];
    st->data.position = header[10];
    st->run.batch_size = header[11];
    st->run.seq_len = header[12];
    st->run.total_batch_size = header[13];
    st->run.world_size = header[14];
    st->run.rank = header[15];
    long long expected = (long long)sizeof(header) + (long long)st->shard_size * 4 * (st->has_master ? 3 : 2);
    if (size != expected)
        return set_error(err, err_size, "'%s': file is %lld bytes but its header (%llu values per array, %s master weights) needs exactly %lld (%s)",
                         path, size, (unsigned long long)st->shard_size, st->has_master ? "with" : "without", expected,
                         size < expected ? "truncated" : "trailing bytes");
    return 0;
}

// Checks that a saved run's settings match the resuming run's; -1 with a message naming the
// first setting that differs.
static inline int train_state_check_run(const char *path, const TrainRunConfig *saved, const TrainRunConfig *now, char *err, size_t err_size) {
    const char *names[5] = {"micro-batch size B", "sequence length T", "total batch size", "world size", "rank"};
    uint64_t s[5] = {saved->batch_size, saved->seq_len, saved->total_batch_size, saved->world_size, saved->rank};
    uint64_t n[5] = {now->batch_size, now->seq_len, now->total_batch_size, now->world_size, now->rank};
    for (int i = 0; i < 5; i++) {
        if (s[i] != n[i])
            return set_error(err, err_size, "'%s': cannot resume: %s was %llu in the saved run but is %llu now", path, names[i],
                             (unsigned long long)s[i], (unsigned long long)n[i]);
    }
    return 0;
}

// Loads a training-state file: validates the header (into *st), checks that the saved run
// settings equal *now and that the file covers `num_parameters` parameters from `shard_offset`
// in `shard_size` values, then reads m, v and (when st->has_master) master, each of shard_size
// floats, into the caller's buffers (master may be NULL when the file has none).
// Returns 0, or -1 with a message naming the file.
static inline int train_state_load(const char *path, const TrainRunConfig *now, uint64_t num_parameters, uint64_t shard_offset, uint64_t shard_size,
                                   TrainState *st, float *m, float *v, float *master, char *err, size_t err_size) {
    if (train_state_read_header(path, st, err, err_size) != 0) return -1;
    if (train_state_check_run(path, &st->run, now, err, err_size) != 0) return -1;
    if (st->num_parameters != num_parameters || st->shard_offset != shard_offset || st->shard_size != shard_size)
        return set_error(err, err_size, "'%s': the file holds parameters [%llu, +%llu) of %llu but [%llu, +%llu) of %llu are needed", path,
                         (unsigned long long)st->shard_offset, (unsigned long long)st->shard_size, (unsigned long long)st->num_parameters,
                         (unsigned long long)shard_offset, (unsigned long long)shard_size, (unsigned long long)num_parameters);
    if (st->has_master && master == NULL)
        return set_error(err, err_size, "'%s' holds fp32 master weights but the caller gave no buffer for them", path);
    long long size;
    FILE *f = checkpoint_open_read(path, &size, err, err_size);
    if (f == NULL) return -1;
    size_t bytes = (size_t)shard_size * sizeof(float);
    int rc = 0;
    if (fseek(f, TRAIN_STATE_HEADER_WORDS * sizeof(uint64_t), SEEK_SET) != 0) rc = set_error(err, err_size, "'%s': cannot seek past the header", path);
    if (rc == 0) rc = checkpoint_read(f, m, bytes, path, "the AdamW first moments", err, err_size);
    if (rc == 0) rc = checkpoint_read(f, v, bytes, path, "the AdamW second moments", err, err_size);
    if (rc == 0 && st->has_master) rc = checkpoint_read(f, master, bytes, path, "the fp32 master weights", err, err_size);
    fclose(f);
    return rc;
}

#endif // CORE_CHECKPOINT_H
