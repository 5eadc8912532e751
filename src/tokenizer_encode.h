/* tokenizer_encode.h: what the parts of the tokenizer share: the tokenizer
 * struct, the vocabulary lookup, and the pieces of the encoding pipeline
 * that loading needs (added-token patterns are decoded and normalized like
 * text). tokenizer.c loads (tokenizer.json or vocab.txt), tokenizer_encode.c
 * encodes; the models and pipeline stages beside WordPiece are in tok_*.c
 * (tok.h). Internal to the module: the library API is tokenizer.h.
 */
#ifndef CB_TOKENIZER_ENCODE_H
#define CB_TOKENIZER_ENCODE_H
#include <string.h>
#include "tokenizer.h"
#include "tok.h"

/* ---------------------------------------------------------------------------
 * Vocabulary: token bytes in one arena, open-addressing hash table. */

typedef struct vocab_slot {
    uint64_t hash;
    uint32_t off, len;  /* token bytes: arena[off .. off+len) */
    int32_t id;         /* -1: empty slot */
} vocab_slot;

typedef struct added_token {
    uint32_t *cps;      /* pattern code points: content, or its normalized form */
    int n;              /* pattern length (code points) */
    int id;
    int lstrip, rstrip, single_word, normalized;
    char *content;      /* UTF-8 as written in the file */
} added_token;

typedef enum tok_model { TOK_MODEL_WORDPIECE, TOK_MODEL_UNIGRAM, TOK_MODEL_BPE } tok_model;

struct tokenizer {
    tok_model model;
    /* Unigram and BPE, with the generic pipeline (tok.h) */
    tok_unigram uni;
    tok_bpe bpe;
    tok_normalizer norm;
    tok_pretokenizer pre;
    tokenizer_template tmpl;  /* the post-processor's single-sequence template */
    int n_added_file;         /* added tokens read from the files; the rest were added at run time */
    /* WordPiece model (the vocabulary table is every model's) */
    char *arena;             /* all vocab strings, NUL-terminated */
    size_t arena_len, arena_cap;
    vocab_slot *slots;       /* [slot_mask + 1] */
    uint64_t slot_mask;
    int n_vocab;             /* distinct tokens in the model vocab */
    uint32_t max_tok_len;    /* longest vocab token in bytes */
    char prefix[32];         /* continuing_subword_prefix, "##" */
    uint32_t prefix_len;
    uint64_t prefix_hash;    /* FNV state after hashing prefix */
    int max_chars;           /* max_input_chars_per_word */
    int unk_id;
    char unk_token[64];
    /* id -> token (vocab and added tokens); NULL in holes */
    const char **id_tok;
    int n_ids;
    /* BertNormalizer */
    int clean_text, handle_chinese, strip_accents, lowercase;
    /* added tokens, split before (normalized == 0) or after normalization */
    added_token *added;
    int n_added, n_added_raw, n_added_norm;
    uint64_t added_first[2];  /* bit (first cp & 63) of the raw [0] and normalized [1] patterns */
    tokenizer_specials specials;
    char *path;               /* tokenizer.json or vocab.txt, for messages */
};

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

/* Id of token (pre ? prefix : "") + s[0..n) in the model vocab, -1 if absent.
 * No allocation: the prefix is hashed once at load. */
static inline int cb_vocab_find(const tokenizer *t, int pre, const char *s, size_t n) {
    uint64_t h = cb_hash_mix(cb_fnv_update(pre ? t->prefix_hash : FNV_OFFSET, s, n));
    uint32_t plen = pre ? t->prefix_len : 0;
    for (uint64_t i = h & t->slot_mask;; i = (i + 1) & t->slot_mask) {
        const vocab_slot *sl = &t->slots[i];
        if (sl->id < 0) return -1;
        if (sl->hash == h && sl->len == plen + n &&
            !memcmp(t->arena + sl->off, t->prefix, plen) &&
            !memcmp(t->arena + sl->off + plen, s, n))
            return sl->id;
    }
}

/* The vocabulary table (tokenizer.c): prepare for n tokens; insert one
 * (1 with *old_id when the token is already there, -1 out of memory). */
int cb_tokenizer_vocab_init(tokenizer *t, size_t n, cb_err *err);
int cb_tokenizer_vocab_put(tokenizer *t, const char *s, size_t n, int id, int *old_id, cb_err *err);

/* UTF-8 -> code points with Python's errors="replace" (each maximal prefix
 * of a valid sequence that cannot be completed becomes one U+FFFD). out has
 * room for len code points; returns the count. */
size_t cb_tokenizer_utf8_decode(const unsigned char *s, size_t len, uint32_t *out);

/* The normalizer of t (BertNormalizer, or the tok.h chain) over in[0..n): *out (malloc'd, caller
 * frees) gets the *n_out normalized code points. Returns 0, or -1 when out
 * of memory. */
int cb_tokenizer_normalize(const tokenizer *t, const uint32_t *in, size_t n, uint32_t **out, size_t *n_out);
#endif
