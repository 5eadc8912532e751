/* rng.h: a small seeded pseudo-random generator for reproducible sampling.
 *
 * splitmix64 (Steele, Lea, Flood 2014): 64 bits of state, one add and a
 * multiply-xorshift finaliser per draw. Every sampling decision of colbert.c
 * goes through cb_rng_below(), which uses integers only (rejection, then modulo),
 * so the same seed gives the same choices on every machine and
 * compiler: no rand(), no floating point.
 *
 * Streams: cb_rng_init(r, seed, stream) gives independent sequences for the same
 * seed, e.g. one per query, so that results do not depend on the order in
 * which queries are processed.
 */
#ifndef CB_RNG_H
#define CB_RNG_H
#include <stddef.h>
#include <stdint.h>
#include "hostdev.h"

typedef struct rng {
    uint64_t state;
} rng;

/* The splitmix64 finaliser (one step of the stream from state z): the one
 * 64-bit mixing hash of colbert.c (dropout masks, seeds, streams). */
static inline CB_HOSTDEV uint64_t cb_rng_mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Seed r with (seed, stream); distinct streams give unrelated sequences. */
void cb_rng_init(rng *r, uint64_t seed, uint64_t stream);
/* Next 64 uniformly distributed bits. */
uint64_t cb_rng_next(rng *r);
/* Uniform integer in [0, n), exactly unbiased (rejection, then modulo);
 * n must be > 0. */
uint64_t cb_rng_below(rng *r, uint64_t n);
/* Fisher-Yates shuffle of a uint32_t array in place: element i - 1 is
 * swapped with a uniform j in [0, i), i = n..2. */
void cb_rng_shuffle_u32(rng *r, uint32_t *a, size_t n);
#endif
