// Small deterministic host random number generator: splitmix64 for integers, uniform floats from
// the top 24 bits, normals by Box-Muller in double. The whole state is one uint64_t, so it can be
// saved in the training-state file and restored for a bit-exact resume.
// Plain C, also compiled as C++ by nvcc.
#ifndef CORE_RNG_H
#define CORE_RNG_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t state;
} Rng;

static inline void rng_seed(Rng *rng, uint64_t seed) { rng->state = seed; }

// Next 64 random bits (splitmix64: a Weyl sequence passed through a bijective mixer).
static inline uint64_t rng_next_u64(Rng *rng) {
    rng->state += 0x9E3779B97F4A7C15ull;
    uint64_t z = rng->state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Uniform float in [0, 1) with 24 random bits (every value is exactly representable).
static inline float rng_uniform(Rng *rng) {
    return (float)(rng_next_u64(rng) >> 40) * (1.0f / 16777216.0f);
}

// Uniform integer in [0, n), n > 0 (multiply-shift; the bias is below 2^-32 for any int n).
static inline uint64_t rng_below(Rng *rng, uint64_t n) {
    return (uint64_t)(((rng_next_u64(rng) >> 32) * n) >> 32);
}

// Two independent N(0, 1) samples by Box-Muller, computed in double.
static inline void rng_normal_pair(Rng *rng, double *z0, double *z1) {
    // u1 in (0, 1] so that log(u1) is finite; u2 in [0, 1).
    double u1 = ((double)(rng_next_u64(rng) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(rng_next_u64(rng) >> 11) * (1.0 / 9007199254740992.0);
    double r = sqrt(-2.0 * log(u1));
    double angle = 6.283185307179586476925 * u2;
    *z0 = r * cos(angle);
    *z1 = r * sin(angle);
}

// One N(mean, std^2) sample (uses a full Box-Muller pair; the second value is dropped so that the
// state stays a single integer).
static inline float rng_normal(Rng *rng, float mean, float std) {
    double z0, z1;
    rng_normal_pair(rng, &z0, &z1);
    return (float)(mean + std * z0);
}

// Fills out[0..n) with N(mean, std^2) samples, both values of every Box-Muller pair used in order.
static inline void rng_fill_normal(Rng *rng, float *out, size_t n, float mean, float std) {
    for (size_t i = 0; i < n; i += 2) {
        double z0, z1;
        rng_normal_pair(rng, &z0, &z1);
        out[i] = (float)(mean + std * z0);
        if (i + 1 < n) out[i + 1] = (float)(mean + std * z1);
    }
}

// Fills out[0..n) with uniform samples in [lo, hi).
static inline void rng_fill_uniform(Rng *rng, float *out, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) out[i] = lo + (hi - lo) * rng_uniform(rng);
}

#endif // CORE_RNG_H
