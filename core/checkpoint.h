// Checkpoint files: atomic writes, read helpers and llm.c-layout model files (the header's meaning
// is the model family's). The training-state file is core/train_state.h.
// Every write is atomic (temporary file, fsync, rename); every read validates what it reads and
// reports problems through a return code and a message naming the file.
// Plain C, also compiled as C++ by nvcc.
#ifndef CORE_CHECKPOINT_H
#define CORE_CHECKPOINT_H

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
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
// version; what the other header words mean is the family's (gpt2_model.h, llama_model.h), described by
// a ModelFileFormat (below).

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

// Reads the first header word of the file at `path` (a model file's magic) into *magic. Returns 0, or -1
// when the file cannot be opened or is shorter than one word.
static inline int model_file_peek_magic(const char *path, int32_t *magic) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return -1;
    size_t got = fread(magic, sizeof(int32_t), 1, f);
    fclose(f);
    return got == 1 ? 0 : -1;
}

// ----------------------------------------------------------------------------
// A family's model-file header as a list of named fields. A family describes its configuration struct
// once, as the header words that hold its fields (ModelFileField: an int, or a float whose bits are
// copied with memcpy, so it round-trips exactly) in a ModelFileFormat; from that list the core writes
// the header, reads it back into the struct, checks the reserved words and the integers' bounds, and
// compares a loaded configuration with a wanted one, naming the first field that differs. The list's
// order is the order of those checks and messages (not necessarily the header's word order).

typedef struct {
    const char *name;  // the configuration field, as messages name it
    int word;          // the header word holding it (2 .. reserved_from - 1)
    size_t offset;     // offsetof(the family's configuration struct, the field): an int or a float
    int is_float;      // a float: its bits in the word, compared bit for bit, printed with %.9g
    int max;           // an int's bounds are 1..max (floats: 0, their bounds are the family's to check)
} ModelFileField;

// A row for int field `field` of configuration struct `type` in header word `word`, valid in 1..max; a
// row for float field `field` (bounds checked by the family).
#define MODEL_FILE_INT(type, field, word, max) {#field, (word), offsetof(type, field), 0, (max)}
#define MODEL_FILE_FLOAT(type, field, word) {#field, (word), offsetof(type, field), 1, 0}

typedef struct {
    const char *family;   // "GPT-2", "Llama": in messages
    int32_t magic;        // header word 0 (word 1 is the version)
    int reserved_from;    // header words reserved_from .. MODEL_FILE_HEADER_INTS-1 are 0
    int num_fields;
    const ModelFileField *fields;
    // Validates a configuration and gives its parameter count (the family's parameter table). Returns 0,
    // or -1 with a message naming the field and value.
    int (*num_parameters)(const void *config, size_t *n, char *err, size_t err_size);
    // Returns -1 with a message when `path` is another family's model file (by its magic), else 0; NULL
    // when there is none to name.
    int (*refuse_other_family)(const char *path, char *err, size_t err_size);
} ModelFileFormat;

// The 4 bytes of field f in the configuration struct `config`.
static inline int32_t model_field_word(const ModelFileField *f, const void *config) {
    int32_t w;
    memcpy(&w, (const char *)config + f->offset, sizeof(w));
    return w;
}

// Checks every int field of `config` against 1..max (before anything is multiplied). Returns 0, or -1
// with a message naming the first field outside its bounds and its value.
static inline int model_config_check_bounds(const ModelFileFormat *fmt, const void *config, char *err, size_t err_size) {
    for (int i = 0; i < fmt->num_fields; i++) {
        const ModelFileField *f = &fmt->fields[i];
        const int32_t v = model_field_word(f, config);
        if (!f->is_float && (v <= 0 || v > f->max)) return set_error(err, err_size, "%s %d is outside 1..%d", f->name, (int)v, f->max);
    }
    return 0;
}

// Index of the first field in which configurations a and b differ (floats bit for bit), or -1.
static inline int model_config_first_difference(const ModelFileFormat *fmt, const void *a, const void *b) {
    for (int i = 0; i < fmt->num_fields; i++)
        if (model_field_word(&fmt->fields[i], a) != model_field_word(&fmt->fields[i], b)) return i;
    return -1;
}

// Returns 1 when two configurations are identical in every field (floats bit for bit).
static inline int model_config_equal(const ModelFileFormat *fmt, const void *a, const void *b) {
    return model_config_first_difference(fmt, a, b) < 0;
}

// Writes `config` and its parameters (fp32, table order) as the family's model file, version 3 (fp32) or
// 5 (bf16). The configuration is validated first. Atomic. Returns 0, or -1 with a message.
static inline int model_file_write_config(const char *path, const ModelFileFormat *fmt, const void *config, const float *params, int version,
                                          char *err, size_t err_size) {
    size_t n = 0;
    if (fmt->num_parameters(config, &n, err, err_size) != 0) return -1;
    int32_t header[MODEL_FILE_HEADER_INTS];
    memset(header, 0, sizeof(header));
    header[0] = fmt->magic;
    for (int i = 0; i < fmt->num_fields; i++) header[fmt->fields[i].word] = model_field_word(&fmt->fields[i], config);
    return model_file_write(path, header, params, n, version, err, err_size);
}

// Reads the header of a model file of this format into *config (every field listed, so config is wholly
// set), *version and *num_parameters: another family's file is refused by name, then the magic, the
// version, the reserved words, the configuration (validated) and the file's length are checked. Returns
// 0, or -1 with a message naming the file.
static inline int model_file_read_config(const char *path, const ModelFileFormat *fmt, void *config, int *version, size_t *num_parameters,
                                         char *err, size_t err_size) {
    if (fmt->refuse_other_family != NULL && fmt->refuse_other_family(path, err, err_size) != 0) return -1;
    int32_t header[MODEL_FILE_HEADER_INTS];
    long long size;
    if (model_file_read_header(path, fmt->magic, fmt->family, header, &size, err, err_size) != 0) return -1;
    for (int i = fmt->reserved_from; i < MODEL_FILE_HEADER_INTS; i++)
        if (header[i] != 0)
            return set_error(err, err_size, "'%s': bad %s model header: reserved word %d is %d, not 0", path, fmt->family, i, (int)header[i]);
    for (int i = 0; i < fmt->num_fields; i++) memcpy((char *)config + fmt->fields[i].offset, &header[fmt->fields[i].word], sizeof(int32_t));
    size_t n = 0;
    char why[256];
    if (fmt->num_parameters(config, &n, why, sizeof(why)) != 0)
        return set_error(err, err_size, "'%s': bad %s model header: %s", path, fmt->family, why);
    *version = header[1];
    *num_parameters = n;
    return model_file_check_size(path, size, *version, n, err, err_size);
}

// Loads a model file of this format (version 3 or 5) into a new fp32 buffer *params (the caller frees).
// When `want` is not NULL the file's configuration must equal it. Fills *config and *version. Returns 0,
// or -1 with a message naming the file (and the first field that differs from `want`, with both values).
static inline int model_file_load(const char *path, const ModelFileFormat *fmt, const void *want, void *config, int *version, float **params,
                                  char *err, size_t err_size) {
    *params = NULL;
    size_t n = 0;
    if (model_file_read_config(path, fmt, config, version, &n, err, err_size) != 0) return -1;
    const int i = want != NULL ? model_config_first_difference(fmt, config, want) : -1;
    if (i >= 0) {
        const ModelFileField *f = &fmt->fields[i];
        const int32_t got = model_field_word(f, config), wanted = model_field_word(f, want);
        if (!f->is_float)
            return set_error(err, err_size, "'%s': model configuration mismatch: %s is %d in the file, %d expected", path, f->name, (int)got,
                             (int)wanted);
        float got_f, wanted_f;
        memcpy(&got_f, &got, sizeof(float));
        memcpy(&wanted_f, &wanted, sizeof(float));
        return set_error(err, err_size, "'%s': model configuration mismatch: %s is %.9g in the file, %.9g expected", path, f->name,
                         (double)got_f, (double)wanted_f);
    }
    return model_file_read_params(path, *version, n, params, err, err_size);
}

#endif // CORE_CHECKPOINT_H
