/* rng.c: splitmix64 and Fisher-Yates; see rng.h. Every mixing step goes
 * through cb_rng_mix64 (rng.h), the one definition of the splitmix64 hash. */
#include "rng.h"
#include "common.h"

#define GOLDEN 0x9e3779b97f4a7c15ULL   /* the splitmix64 increment */

void cb_rng_init(rng *r, uint64_t seed, uint64_t stream) {
    /* Mix the stream in twice so that nearby (seed, stream) pairs start far
     * apart in the splitmix sequence. The state is the finaliser of
     * seed ^ mix(stream), written as cb_rng_mix64 of that value minus the
     * increment cb_rng_mix64 adds back. */
    r->state = cb_rng_mix64((seed ^ cb_rng_mix64(stream)) - GOLDEN);
}

uint64_t cb_rng_next(rng *r) {
    uint64_t z = r->state;
    r->state = z + GOLDEN;
    return cb_rng_mix64(z);
}

uint64_t cb_rng_below(rng *r, uint64_t n) {
    CB_ASSERT(n > 0);
    /* Reject the lowest (2^64 mod n) values so that x mod n is exactly
     * uniform (the arc4random_uniform method). */
    uint64_t threshold = (0 - n) % n, x;
    do x = cb_rng_next(r); while (x < threshold);
    return x % n;
}

void cb_rng_shuffle_u32(rng *r, uint32_t *a, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)cb_rng_below(r, i);
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}
