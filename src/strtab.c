/* strtab.c: string interning over one arena; see strtab.h. */
#include "strtab.h"

#include <string.h>

static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* A fast 64-bit hash, two independent lanes of 8 bytes; quality only matters
 * for speed (ids never depend on it, equal hashes are resolved by memcmp). */
static uint64_t hash_bytes_all(const char *s, size_t n) {
    const uint64_t m1 = 0x9e3779b97f4a7c15ULL, m2 = 0xc2b2ae3d27d4eb4fULL;
    uint64_t h1 = 0x243f6a8885a308d3ULL ^ ((uint64_t)n * m2), h2 = 0x13198a2e03707344ULL;
    while (n >= 16) {
        uint64_t a, b;
        memcpy(&a, s, 8);
        memcpy(&b, s + 8, 8);
        h1 = rotl64((h1 ^ a) * m1, 29);
        h2 = rotl64((h2 ^ b) * m2, 31);
        s += 16;
        n -= 16;
    }
    uint64_t a = 0, b = 0;
    if (n > 8) {
        memcpy(&a, s, 8);
        memcpy(&b, s + 8, n - 8);
    } else {
        memcpy(&a, s, n);
    }
    h1 = rotl64((h1 ^ a) * m1, 29);
    h2 = rotl64((h2 ^ b) * m2, 31);
    uint64_t h = h1 ^ rotl64(h2, 17);
    h = (h ^ (h >> 33)) * 0xff51afd7ed558ccdULL;
    h = (h ^ (h >> 33)) * 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

/* Long texts are hashed by their length, first 256 and last 256 bytes: a
 * document is read once but may be looked up many times, and texts that
 * differ only in the middle merely share a probe chain. */
static uint64_t hash_bytes(const char *s, size_t n) {
    if (n <= 512) return hash_bytes_all(s, n);
    return hash_bytes_all(s, 256) ^ rotl64(hash_bytes_all(s + n - 256, 256), 23) ^
           ((uint64_t)n * 0x9e3779b97f4a7c15ULL);
}

void cb_strtab_free(strtab *t) {
    free(t->buf);
    free(t->off);
    free(t->hlo);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

/* Append a text with hash h (kept for re-insertion); *id its new id. */
static int append_h(strtab *t, const char *s, size_t n, uint64_t h, uint32_t *id, cb_err *err) {
    if (t->n >= STRTAB_NONE / 2) return cb_err_set(err, "more than 2^31 distinct texts");
    if (t->n + 1 >= t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 1024;
        uint64_t *off = cb_realloc(t->off, (cap + 1) * sizeof *t->off, "a string table", err);
        if (!off) return -1;
        t->off = off;
        uint32_t *hlo = cb_realloc(t->hlo, cap * sizeof *t->hlo, "a string table", err);
        if (!hlo) return -1;
        t->hlo = hlo;
        if (t->n == 0) t->off[0] = 0;
        t->cap = cap;
    }
    if (t->nbuf + n + 1 > t->capbuf) {
        uint64_t cap = t->capbuf ? t->capbuf : 1 << 16;
        while (t->nbuf + n + 1 > cap) cap *= 2;
        char *buf = cb_realloc(t->buf, cap, "a string table", err);
        if (!buf) return -1;
        t->buf = buf;
        t->capbuf = cap;
    }
    memcpy(t->buf + t->nbuf, s, n);
    t->buf[t->nbuf + n] = '\0';
    t->nbuf += n + 1;
    t->hlo[t->n] = (uint32_t)h;
    t->n++;
    t->off[t->n] = t->nbuf;
    if (id) *id = (uint32_t)(t->n - 1);
    return 0;
}

int cb_strtab_append(strtab *t, const char *s, size_t n, uint32_t *id, cb_err *err) {
    return append_h(t, s, n, 0, id, err);
}

/* Double the slot table (or make the first one) and re-insert every id. */
static int grow_slots(strtab *t, cb_err *err) {
    size_t ns = t->slots ? 2 * (t->mask + 1) : 1 << 12;
    uint64_t *slots = cb_calloc(ns, sizeof *slots, "a string table", err);
    if (!slots) return -1;
    uint64_t *old = t->slots;
    size_t oldn = t->slots ? t->mask + 1 : 0;
    t->slots = slots;
    t->mask = ns - 1;
    for (size_t i = 0; i < oldn; i++) {
        if (!old[i]) continue;
        uint32_t id = (uint32_t)old[i] - 1;
        size_t pos = t->hlo[id] & t->mask;
        while (t->slots[pos]) pos = (pos + 1) & t->mask;
        t->slots[pos] = old[i];
    }
    free(old);
    return 0;
}

int cb_strtab_intern(strtab *t, const char *s, size_t n, uint32_t *id, int *is_new, cb_err *err) {
    if ((!t->slots || 2 * (t->n + 1) > t->mask + 1) && grow_slots(t, err)) return -1;
    uint64_t h = hash_bytes(s, n);
    uint32_t tag = (uint32_t)(h >> 32);
    size_t pos = (uint32_t)h & t->mask;
    for (;;) {
        uint64_t e = t->slots[pos];
        if (!e) break;
        uint32_t k = (uint32_t)e - 1;
        if ((uint32_t)(e >> 32) == tag && cb_strtab_len(t, k) == n && !memcmp(cb_strtab_get(t, k), s, n)) {
            if (is_new) *is_new = 0;
            *id = k;
            return 0;
        }
        pos = (pos + 1) & t->mask;
    }
    if (append_h(t, s, n, h, id, err)) return -1;
    t->slots[pos] = ((uint64_t)tag << 32) | ((uint64_t)*id + 1);
    if (is_new) *is_new = 1;
    return 0;
}

uint32_t cb_strtab_find(const strtab *t, const char *s, size_t n) {
    if (!t->slots) return STRTAB_NONE;
    uint64_t h = hash_bytes(s, n);
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t pos = (uint32_t)h & t->mask;; pos = (pos + 1) & t->mask) {
        uint64_t e = t->slots[pos];
        if (!e) return STRTAB_NONE;
        uint32_t id = (uint32_t)e - 1;
        if ((uint32_t)(e >> 32) == tag && cb_strtab_len(t, id) == n && !memcmp(cb_strtab_get(t, id), s, n))
            return id;
    }
}
