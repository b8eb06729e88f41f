// Host utilities shared by every program and test: fatal-error reporting and
// checked wrappers around the C library calls whose failure must never pass silently.
// Plain C, also compiled as C++ by nvcc.
#ifndef CORE_UTILS_H
#define CORE_UTILS_H

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Print "error: <message>" to stderr and exit with status 1.
__attribute__((noreturn, format(printf, 1, 2)))
static inline void fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stderr);
    exit(1);
}

static inline FILE *fopen_check_(const char *path, const char *mode, const char *file, int line) {
    FILE *f = fopen(path, mode);
    if (f == NULL) fatal("could not open '%s' (mode %s) at %s:%d", path, mode, file, line);
    return f;
}
#define fopen_check(path, mode) fopen_check_(path, mode, __FILE__, __LINE__)

static inline void fread_check_(void *ptr, size_t size, size_t n, FILE *f, const char *file, int line) {
    size_t got = fread(ptr, size, n, f);
    if (got != n) fatal("short read: wanted %zu items of %zu bytes, got %zu at %s:%d", n, size, got, file, line);
}
#define fread_check(ptr, size, n, f) fread_check_(ptr, size, n, f, __FILE__, __LINE__)

static inline void fwrite_check_(const void *ptr, size_t size, size_t n, FILE *f, const char *file, int line) {
    size_t put = fwrite(ptr, size, n, f);
    if (put != n) fatal("short write: wanted %zu items of %zu bytes, wrote %zu at %s:%d", n, size, put, file, line);
}
#define fwrite_check(ptr, size, n, f) fwrite_check_(ptr, size, n, f, __FILE__, __LINE__)

static inline void *malloc_check_(size_t size, const char *file, int line) {
    void *p = malloc(size);
    if (p == NULL && size > 0) fatal("host allocation of %zu bytes failed at %s:%d", size, file, line);
    return p;
}
#define malloc_check(size) malloc_check_(size, __FILE__, __LINE__)

static inline void *calloc_check_(size_t n, size_t size, const char *file, int line) {
    void *p = calloc(n, size);
    if (p == NULL && n > 0 && size > 0) fatal("host allocation of %zu x %zu bytes failed at %s:%d", n, size, file, line);
    return p;
}
#define calloc_check(n, size) calloc_check_(n, size, __FILE__, __LINE__)

// The whole string s as a decimal integer in [lo, hi]; otherwise a fatal error
// "<what>: expected an integer in [lo, hi], got '<s>'" (for command-line tools).
static inline long long parse_int_check(const char *what, const char *s, long long lo, long long hi) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) fatal("%s: expected an integer in [%lld, %lld], got '%s'", what, lo, hi, s);
    return v;
}

// The whole string s as a finite float (rounded to float by strtof); otherwise a fatal error
// "<what>: expected a finite float, got '<s>'".
static inline float parse_float_check(const char *what, const char *s) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v)) fatal("%s: expected a finite float, got '%s'", what, s);
    return v;
}

// Formats a message into an error buffer (used by APIs that report errors to their caller
// instead of exiting, so tests can check them).
static inline int set_error(char *err, size_t err_size, const char *fmt, ...) {
    if (err != NULL && err_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return -1;
}

#endif // CORE_UTILS_H
