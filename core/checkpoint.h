// Checkpoints: llm.c-compatible GPT-2 model files (the training-state file is core/train_state.h).
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
#include "kernels/formats.h"

#define MODEL_FILE_MAGIC 20240326
#define MODEL_FILE_VERSION_FP32 3
#define MODEL_FILE_VERSION_BF16 5
#define MODEL_FILE_HEADER_INTS 256
#define MODEL_FILE_CHUNK ((size_t)1 << 16)  // parameters converted to/from bf16 at a time

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

#endif // CORE_CHECKPOINT_H
