// Helpers for CPU tests that write files and draw random inputs: the run's seed (from $TEST_SEED,
// else the clock, printed so a failing run can be repeated), an xorshift64* generator, and a
// temporary directory under build/tmp that is removed at the end.
// The including file must define _GNU_SOURCE before any system header (for nftw and mkdtemp).
#ifndef TEST_TESTING_FILES_H
#define TEST_TESTING_FILES_H

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "core/utils.h"

static uint64_t testing_rng_state;

// Seeds testing_rand_u64 from $TEST_SEED (or the clock) and prints "<program>: TEST_SEED=<seed>".
static inline void testing_seed(const char *program) {
    const char *env_seed = getenv("TEST_SEED");
    uint64_t seed = env_seed ? strtoull(env_seed, NULL, 10) : (uint64_t)time(NULL);
    testing_rng_state = seed * 0x9e3779b97f4a7c15ULL + 1;
    printf("%s: TEST_SEED=%llu\n", program, (unsigned long long)seed);
}

static inline uint64_t testing_rand_u64(void) {  // xorshift64*
    testing_rng_state ^= testing_rng_state >> 12;
    testing_rng_state ^= testing_rng_state << 25;
    testing_rng_state ^= testing_rng_state >> 27;
    return testing_rng_state * 2685821657736338717ULL;
}

// Uniform integer in [lo, hi].
static inline int testing_rand_int(int lo, int hi) { return lo + (int)(testing_rand_u64() % (uint64_t)(hi - lo + 1)); }

// Creates a fresh directory build/tmp/<program>_XXXXXX and writes its path into dir.
static inline void testing_tmpdir_create(char *dir, size_t size, const char *program) {
    mkdir("build", 0755);
    mkdir("build/tmp", 0755);
    snprintf(dir, size, "build/tmp/%s_XXXXXX", program);
    if (mkdtemp(dir) == NULL) fatal("cannot create a temporary directory under build/tmp");
}

// Path of `name` inside dir, in one of four rotating buffers (so up to four paths can be held at once).
static inline const char *testing_path(const char *dir, const char *name) {
    static char buf[4][512];
    static int next = 0;
    char *p = buf[next];
    next = (next + 1) % 4;
    if ((size_t)snprintf(p, sizeof(buf[0]), "%s/%s", dir, name) >= sizeof(buf[0])) fatal("path '%s/%s' is too long", dir, name);
    return p;
}

static inline int testing_remove_entry_(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

// Removes dir and everything below it.
static inline void testing_tmpdir_remove(const char *dir) { nftw(dir, testing_remove_entry_, 16, FTW_DEPTH | FTW_PHYS); }

#endif // TEST_TESTING_FILES_H
