// Small shared helpers: error formatting, clocks, RNG, growable buffers.
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int tc_fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

double tc_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// xorshift64* seeded through splitmix64 so that nearby seeds give unrelated streams.
void tc_rng_seed(tc_rng *r, uint64_t seed) {
    uint64_t z = seed + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z = z ^ (z >> 31);
    r->s = z ? z : 0x2545F4914F6CDD1DULL;
}

uint64_t tc_rng_u64(tc_rng *r) {
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

float tc_rng_uniform(tc_rng *r) { return (float)(tc_rng_u64(r) >> 40) / 16777216.0f; }

float tc_rng_normal(tc_rng *r) {
    float u1 = tc_rng_uniform(r), u2 = tc_rng_uniform(r);
    if (u1 < 1e-7f) u1 = 1e-7f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853071795864f * u2);
}

int tc_buf_append(tc_buf *b, const void *data, size_t len) {
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len + 1) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    if (len) memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = 0;  // keeps text bodies NUL-terminated
    return 0;
}

void tc_buf_free(tc_buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
