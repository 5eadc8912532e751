/* tok_precompiled.c: the Precompiled normalizer, sentencepiece's compiled
 * normalization rules (e.g. nmt_nfkc) as tokenizer.json carries them:
 * base64 of [u32 little-endian trie size in bytes][darts double-array trie
 * of u32 units][NUL-separated replacement strings]. The trie maps a UTF-8
 * key to the offset of its replacement.
 *
 * Hugging Face applies it per extended grapheme cluster: a cluster under 6
 * bytes is looked up whole; otherwise (or when it has no rule) each
 * character is looked up alone. A lookup takes the value of the SHORTEST
 * key that is a prefix of the chunk, and the whole chunk is replaced by it
 * (spm_precompiled's transform; not sentencepiece's longest match). */
#include "tok.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

struct tok_precompiled {
    uint32_t *units;
    size_t n_units;
    char *norm;          /* replacement strings */
    size_t n_norm;
};

void tok_precompiled_free(tok_precompiled *pc) {
    if (!pc) return;
    free(pc->units);
    free(pc->norm);
    free(pc);
}

static int b64_val(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

tok_precompiled *tok_precompiled_new(const char *b64, const char *path, cb_err *err) {
    size_t len = strlen(b64);
    unsigned char *blob = cb_malloc(len / 4 * 3 + 3, "the precompiled charsmap", err);
    if (!blob) return NULL;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        if (b64[i] == '=') break;
        int v = b64_val((unsigned char)b64[i]);
        if (v < 0) {
            free(blob);
            cb_err_set(err, "%s: normalizer Precompiled: precompiled_charsmap is not base64 (byte %zu)", path, i);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            blob[n++] = (unsigned char)(acc >> bits);
        }
    }
    tok_precompiled *pc = NULL;
    uint32_t trie_size = n >= 4 ? (uint32_t)blob[0] | (uint32_t)blob[1] << 8 | (uint32_t)blob[2] << 16 |
                                      (uint32_t)blob[3] << 24
                                : 0;
    if (n < 4 || trie_size % 4 || trie_size == 0 || trie_size > n - 4) {
        cb_err_set(err, "%s: normalizer Precompiled: the charsmap is malformed (%zu bytes, trie of %u bytes)", path,
                   n, trie_size);
        goto fail;
    }
    if (!(pc = cb_calloc(1, sizeof *pc, "the precompiled charsmap", err))) goto fail;
    pc->n_units = trie_size / 4;
    pc->n_norm = n - 4 - trie_size;
    pc->units = cb_malloc(pc->n_units * sizeof *pc->units, "the precompiled charsmap", err);
    pc->norm = cb_malloc(pc->n_norm + 1, "the precompiled charsmap", err);
    if (!pc->units || !pc->norm) goto fail;
    for (size_t i = 0; i < pc->n_units; i++) {
        const unsigned char *b = blob + 4 + 4 * i;
        pc->units[i] = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    }
    memcpy(pc->norm, blob + 4 + trie_size, pc->n_norm);
    pc->norm[pc->n_norm] = '\0';
    free(blob);
    return pc;
fail:
    free(blob);
    tok_precompiled_free(pc);
    return NULL;
}

/* darts unit fields */
static inline size_t unit_offset(uint32_t u) { return (size_t)((u >> 10) << ((u & (1u << 9)) >> 6)); }
static inline uint32_t unit_label(uint32_t u) { return u & ((1u << 31) | 0xFF); }
static inline int unit_has_leaf(uint32_t u) { return (u >> 8) & 1; }
static inline uint32_t unit_value(uint32_t u) { return u & ((1u << 31) - 1); }

/* Replacement of the shortest key that prefixes key[0..n): 1 with [*s, *len)
 * in pc->norm, or 0. Indices are checked: a corrupt trie finds nothing. */
static int lookup(const tok_precompiled *pc, const unsigned char *key, size_t n, const char **s, size_t *len) {
    size_t pos = unit_offset(pc->units[0]);
    for (size_t i = 0; i < n; i++) {
        unsigned c = key[i];
        if (c == 0) return 0;
        pos ^= c;
        if (pos >= pc->n_units) return 0;
        uint32_t u = pc->units[pos];
        if (unit_label(u) != c) return 0;
        pos ^= unit_offset(u);
        if (pos >= pc->n_units) return 0;
        if (unit_has_leaf(u)) {
            size_t v = unit_value(pc->units[pos]);
            if (v > pc->n_norm) return 0;
            *s = pc->norm + v;
            *len = strlen(pc->norm + v);
            return 1;
        }
    }
    return 0;
}

/* Look up cps[0..n) (as UTF-8, at most 24 bytes): append the replacement to
 * out and return 1, or 0 when no rule applies. -1: out of memory. */
static int transform(const tok_precompiled *pc, const uint32_t *cps, size_t n, tok_cps *out) {
    unsigned char key[32];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += (size_t)tok_utf8_put((char *)key + k, cps[i]);
    const char *s;
    size_t len;
    if (!lookup(pc, key, k, &s, &len)) return 0;
    uint32_t rep[64];
    while (len) {   /* decode in chunks (replacements are short) */
        size_t take = len;
        if (take > 60) {
            take = 60;
            while (take > 0 && ((unsigned char)s[take] & 0xC0) == 0x80) take--;
        }
        size_t m = tok_utf8_decode((const unsigned char *)s, take, rep);
        if (tok_cps_append(out, rep, m)) return -1;
        s += take;
        len -= take;
    }
    return 1;
}

int tok_precompiled_apply(const tok_precompiled *pc, const uint32_t *in, size_t n, tok_cps *out) {
    size_t i = 0;
    while (i < n) {
        /* the extended grapheme cluster in[i..j) */
        size_t j = i + 1, bytes = (size_t)tok_utf8_len(in[i]);
        utf8proc_int32_t state = 0;
        while (j < n && !utf8proc_grapheme_break_stateful((utf8proc_int32_t)in[j - 1], (utf8proc_int32_t)in[j],
                                                         &state)) {
            bytes += (size_t)tok_utf8_len(in[j]);
            j++;
        }
        int r = 0;
        if (bytes < 6 && (r = transform(pc, in + i, j - i, out)) < 0) return -1;
        if (r == 0) {
            for (size_t k = i; k < j; k++) {
                int rk = transform(pc, in + k, 1, out);
                if (rk < 0 || (rk == 0 && tok_cps_push(out, in[k]))) return -1;
            }
        }
        i = j;
    }
    return 0;
}
