/* rng.c: splitmix64 and Fisher-Yates; see rng.h. */
#include "rng.h"
#include "common.h"

#include <string.h>

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void rng_init(rng *r, uint64_t seed, uint64_t stream) {
    /* Mix the stream in twice so that nearby (seed, stream) pairs start far
     * apart in the splitmix sequence. */
    r->state = mix64(seed ^ mix64(stream + 0x9e3779b97f4a7c15ULL));
}

uint64_t rng_next(rng *r) {
    r->state += 0x9e3779b97f4a7c15ULL;
    return mix64(r->state);
}

uint64_t rng_below(rng *r, uint64_t n) {
    CB_ASSERT(n > 0);
    /* Reject the lowest (2^64 mod n) values so that x mod n is exactly
     * uniform (the arc4random_uniform method). */
    uint64_t threshold = (0 - n) % n, x;
    do x = rng_next(r); while (x < threshold);
    return x % n;
}

void rng_shuffle(rng *r, void *base, size_t n, size_t size) {
    CB_ASSERT(size <= 64);
    unsigned char tmp[64], *a = base;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)rng_below(r, i);
        if (j == i - 1) continue;
        memcpy(tmp, a + (i - 1) * size, size);
        memcpy(a + (i - 1) * size, a + j * size, size);
        memcpy(a + j * size, tmp, size);
    }
}

void rng_shuffle_u32(rng *r, uint32_t *a, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)rng_below(r, i);
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}
