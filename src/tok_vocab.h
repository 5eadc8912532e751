/* tok_vocab.h: the vocabulary table every tokenizer model shares
 * (WordPiece, Unigram, BPE): token bytes in one arena, an open-addressing
 * hash table from bytes to id, and the lookup the models run per piece.
 * Internal to the tokenizer module (the library API is tokenizer.h); the
 * models (tok_unigram.c, tok_bpe.c) fill it, tokenizer.c owns it.
 */
#ifndef CB_TOK_VOCAB_H
#define CB_TOK_VOCAB_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "common.h"

typedef struct vocab_slot {
    uint64_t hash;
    uint32_t off, len;  /* token bytes: arena[off .. off+len) */
    int32_t id;         /* -1: empty slot */
} vocab_slot;

typedef struct tok_vocab {
    char *arena;             /* all vocab strings, NUL-terminated */
    size_t arena_len, arena_cap;
    vocab_slot *slots;       /* [slot_mask + 1] */
    uint64_t slot_mask;
    int n_vocab;             /* distinct tokens in the model vocab */
    uint32_t max_tok_len;    /* longest vocab token in bytes */
    char prefix[32];         /* WordPiece's continuing_subword_prefix, "##" */
    uint32_t prefix_len;
    uint64_t prefix_hash;    /* FNV state after hashing prefix */
} tok_vocab;

#define FNV_OFFSET 1469598103934665603ULL
#define FNV_PRIME 1099511628211ULL

static inline uint64_t cb_fnv_update(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* Final mix so that the low bits used as slot index depend on every byte. */
static inline uint64_t cb_hash_mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

/* Id of token (pre ? prefix : "") + s[0..n) in the vocab, -1 if absent.
 * No allocation: the prefix is hashed once at load. */
static inline int tok_vocab_find(const tok_vocab *v, int pre, const char *s, size_t n) {
    uint64_t h = cb_hash_mix(cb_fnv_update(pre ? v->prefix_hash : FNV_OFFSET, s, n));
    uint32_t plen = pre ? v->prefix_len : 0;
    for (uint64_t i = h & v->slot_mask;; i = (i + 1) & v->slot_mask) {
        const vocab_slot *sl = &v->slots[i];
        if (sl->id < 0) return -1;
        if (sl->hash == h && sl->len == plen + n &&
            !memcmp(v->arena + sl->off, v->prefix, plen) &&
            !memcmp(v->arena + sl->off + plen, s, n))
            return sl->id;
    }
}

/* Prepare an empty table for up to n tokens (-1 out of memory). */
int tok_vocab_init(tok_vocab *v, size_t n, cb_err *err);
/* Insert one token: 0; 1 with *old_id when the token is already there;
 * -1 out of memory. */
int tok_vocab_put(tok_vocab *v, const char *s, size_t n, int id, int *old_id, cb_err *err);
/* Frees the table and the arena (v itself is the caller's). */
void tok_vocab_free(tok_vocab *v);
#endif
