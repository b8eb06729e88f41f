// Checkpoint files: atomic writes, read helpers and llm.c-layout model files (the header's meaning
// is the model family's). The training-state file is core/train_state.h.
// Every write is atomic (temporary file, fsync, rename); every read validates what it reads and
// reports problems through a return code and a message naming the file.
// Plain C, also compiled as C++ by nvcc.
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
// Model files (llm.c's layout, little-endian): int32 header[256], then num_parameters values in the
// family's parameter-table order, fp32 (version 3) or bf16 (version 5, rounded to nearest even from
// fp32, widened exactly on load); nothing after. header[0] is the family's magic, header[1] the
// version; what the other header words mean is the family's (gpt2_model.h, llama_model.h).

// Writes header (with header[1] set to `version`) and num_parameters fp32 parameters. Atomic.
// Returns 0, or -1 with a message.
static inline int model_file_write(const char *path, const int32_t header_in[MODEL_FILE_HEADER_INTS], const float *params,
                                   size_t num_parameters, int version, char *err, size_t err_size) {
    if (version != MODEL_FILE_VERSION_FP32 && version != MODEL_FILE_VERSION_BF16)
        return set_error(err, err_size, "cannot write '%s': unknown model file version %d (3 = fp32, 5 = bf16)", path, version);
    int32_t header[MODEL_FILE_HEADER_INTS];
    memcpy(header, header_in, sizeof(header));
    header[1] = version;
    AtomicWriter w;
    if (atomic_writer_open(&w, path, err, err_size) != 0) return -1;
    if (atomic_writer_write(&w, header, sizeof(header), err, err_size) != 0) return -1;
    if (version == MODEL_FILE_VERSION_FP32) {
        if (atomic_writer_write(&w, params, num_parameters * sizeof(float), err, err_size) != 0) return -1;
    } else {
        uint16_t *buf = (uint16_t *)malloc_check(MODEL_FILE_CHUNK * sizeof(uint16_t));
        for (size_t start = 0; start < num_parameters; start += MODEL_FILE_CHUNK) {
            size_t n = num_parameters - start < MODEL_FILE_CHUNK ? num_parameters - start : MODEL_FILE_CHUNK;
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

// Reads the header of a model file whose magic must be `magic` (`family` names the format in messages,
// e.g. "GPT-2") and checks the version. Fills header and *file_size. Returns 0, or -1 with a message.
static inline int model_file_read_header(const char *path, int32_t magic, const char *family, int32_t header[MODEL_FILE_HEADER_INTS],
                                         long long *file_size, char *err, size_t err_size) {
    FILE *f = checkpoint_open_read(path, file_size, err, err_size);
    if (f == NULL) return -1;
    int rc = checkpoint_read(f, header, MODEL_FILE_HEADER_INTS * sizeof(int32_t), path, "the 1024-byte model header", err, err_size);
    fclose(f);
    if (rc != 0) return -1;
    if (header[0] != magic)
        return set_error(err, err_size, "'%s' is not a %s model file: magic %d, expected %d", path, family, header[0], magic);
    if (header[1] != MODEL_FILE_VERSION_FP32 && header[1] != MODEL_FILE_VERSION_BF16)
        return set_error(err, err_size, "'%s': unsupported model file version %d (3 = fp32, 5 = bf16)", path, header[1]);
    return 0;
}

// Checks that a file of file_size bytes with this version holds exactly num_parameters values.
static inline int model_file_check_size(const char *path, long long file_size, int version, size_t num_parameters, char *err,
                                        size_t err_size) {
    const long long expected = (long long)(MODEL_FILE_HEADER_INTS * sizeof(int32_t)) +
                               (long long)num_parameters * (version == MODEL_FILE_VERSION_FP32 ? 4 : 2);
    if (file_size != expected)
        return set_error(err, err_size, "'%s': file is %lld bytes but its header (version %d, %zu parameters) needs exactly %lld (%s)", path,
                         file_size, version, num_parameters, expected, file_size < expected ? "truncated" : "trailing bytes");
    return 0;
}

// Reads the num_parameters values after the header into a new fp32 buffer *params (the caller frees).
// Returns 0, or -1 with a message naming the file.
static inline int model_file_read_params(const char *path, int version, size_t num_parameters, float **params, char *err, size_t err_size) {
    *params = NULL;
    long long size;
    FILE *f = checkpoint_open_read(path, &size, err, err_size);
    if (f == NULL) return -1;
    if (model_file_check_size(path, size, version, num_parameters, err, err_size) != 0) {
        fclose(f);
        return -1;
    }
    if (fseek(f, MODEL_FILE_HEADER_INTS * sizeof(int32_t), SEEK_SET) != 0) {
        fclose(f);
        return set_error(err, err_size, "'%s': cannot seek past the header", path);
    }
    float *p = (float *)malloc_check(num_parameters * sizeof(float));
    int rc = 0;
    if (version == MODEL_FILE_VERSION_FP32) {
        rc = checkpoint_read(f, p, num_parameters * sizeof(float), path, "the fp32 parameters", err, err_size);
    } else {
        uint16_t *buf = (uint16_t *)malloc_check(MODEL_FILE_CHUNK * sizeof(uint16_t));
        for (size_t start = 0; start < num_parameters && rc == 0; start += MODEL_FILE_CHUNK) {
            size_t n = num_parameters - start < MODEL_FILE_CHUNK ? num_parameters - start : MODEL_FILE_CHUNK;
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
