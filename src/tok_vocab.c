/* tok_vocab.c: building the vocabulary table (see tok_vocab.h): sizing the
 * hash table, inserting tokens into it and the arena, freeing both. */
#include "tok_vocab.h"

#include <stdlib.h>

/* ---------------------------------------------------------------------------
 * The table (the lookup, tok_vocab_find, is inline in tok_vocab.h). */

/* Prepare an empty table for up to n tokens. */
int tok_vocab_init(tok_vocab *v, size_t n, cb_err *err) {
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)n + 16) cap *= 2;
    v->slots = cb_malloc(cap * sizeof *v->slots, "the vocabulary", err);
    v->arena_cap = 1 << 16;
    v->arena = cb_malloc(v->arena_cap, "the vocabulary", err);
    if (!v->slots || !v->arena) return -1;
    for (uint64_t i = 0; i < cap; i++) v->slots[i].id = -1;
    v->slot_mask = cap - 1;
    v->arena_len = 0;
    return 0;
}

/* Insert a token. A token already present is refused: 1 with *old_id set
 * (HF's maps would let the later one win and leave the earlier id without
 * a token, a vocabulary that no longer matches the embedding rows). */
int tok_vocab_put(tok_vocab *v, const char *s, size_t n, int id, int *old_id, cb_err *err) {
    uint64_t h = cb_hash_mix(cb_fnv_update(FNV_OFFSET, s, n));
    uint64_t i = h & v->slot_mask;
    for (;; i = (i + 1) & v->slot_mask) {
        vocab_slot *sl = &v->slots[i];
        if (sl->id < 0) break;
        if (sl->hash == h && sl->len == n && !memcmp(v->arena + sl->off, s, n)) {
            *old_id = sl->id;
            return 1;
        }
    }
    CB_ASSERT(v->n_vocab < (int)(v->slot_mask / 2 + 8));
    if (v->arena_len + n + 1 > v->arena_cap) {
        size_t cap = v->arena_cap;
        while (v->arena_len + n + 1 > cap) cap *= 2;
        char *a = cb_realloc(v->arena, cap, "the vocabulary", err);
        if (!a) return -1;
        v->arena = a;
        v->arena_cap = cap;
    }
    memcpy(v->arena + v->arena_len, s, n);
    v->arena[v->arena_len + n] = '\0';
    v->slots[i] = (vocab_slot){h, (uint32_t)v->arena_len, (uint32_t)n, id};
    v->arena_len += n + 1;
    v->n_vocab++;
    if (n > v->max_tok_len) v->max_tok_len = (uint32_t)n;
    return 0;
}

void tok_vocab_free(tok_vocab *v) {
    free(v->slots);
    free(v->arena);
}
