/* tok.h: the pieces of the Hugging Face `tokenizers` pipeline beside BERT
 * WordPiece, as tokenizer.json describes them: normalizers (tok_normalize.c,
 * the sentencepiece charsmap in tok_precompiled.c), pre-tokenizers
 * (tok_pretok.c), and the Unigram (tok_unigram.c) and byte-level BPE
 * (tok_bpe.c) models. Internal to the tokenizer module: the library API is
 * tokenizer.h; tokenizer.c loads, tokenizer_encode.c runs the pipeline.
 *
 * The layers, each using only those below it: tokenizer.c and
 * tokenizer_encode.c on top; these stages and models; the vocabulary table
 * (tok_vocab.h), which the models fill and read; code points and UTF-8
 * (tok_text.h) at the bottom. The models get their own state and the
 * vocabulary, never the tokenizer.
 *
 * Text moves between the stages as code points (uint32_t), then as UTF-8
 * words for the model, as HF does (its models see &str). Every stage that
 * allocates reports an allocation failure by returning -1; the loaded
 * structures are read-only while encoding.
 */
#ifndef CB_TOK_H
#define CB_TOK_H
#include <stddef.h>
#include <stdint.h>
#include "common.h"
#include "tok_text.h"
#include "tok_vocab.h"

struct json_t;

/* ---------------------------------------------------------------------------
 * Regular expressions, the small subset the Replace normalizer and Split
 * pre-tokenizer of real tokenizer.json files use: literals and escapes,
 * \s \S \d \D \w \W ., anchors \A \z ^ $, quantifiers * + ? {n} {n,} {n,m}
 * (greedy), alternation |. A pattern outside it is refused at load. */
typedef struct tok_regex tok_regex;
/* NULL + err naming `where` and the pattern when it is not supported. */
tok_regex *tok_regex_new(const char *pattern, const char *where, cb_err *err);
void tok_regex_free(tok_regex *re);
/* Leftmost match in s[from..n): 1 and [*ms, *me), or 0. */
int tok_regex_find(const tok_regex *re, const uint32_t *s, size_t n, size_t from, size_t *ms, size_t *me);

/* ---------------------------------------------------------------------------
 * Normalizers (tok_normalize.c). */

typedef struct tok_precompiled tok_precompiled;
/* The sentencepiece charsmap, base64 as tokenizer.json stores it. */
tok_precompiled *tok_precompiled_new(const char *base64, const char *path, cb_err *err);
void tok_precompiled_free(tok_precompiled *pc);
int tok_precompiled_apply(const tok_precompiled *pc, const uint32_t *in, size_t n, tok_cps *out);

typedef enum tok_norm_kind {
    TOK_NORM_PRECOMPILED, TOK_NORM_REPLACE, TOK_NORM_NFC, TOK_NORM_NFD, TOK_NORM_NFKC, TOK_NORM_NFKD,
    TOK_NORM_NMT, TOK_NORM_STRIP, TOK_NORM_LOWERCASE, TOK_NORM_PREPEND
} tok_norm_kind;

typedef struct tok_norm {
    tok_norm_kind kind;
    uint32_t *lit;          /* Replace with a String pattern */
    size_t n_lit;
    tok_regex *re;          /* Replace with a Regex pattern */
    uint32_t *content;      /* Replace's content, Prepend's prepend */
    size_t n_content;
    int left, right;        /* Strip */
    tok_precompiled *pc;    /* Precompiled (NULL: an empty charsmap, no-op) */
} tok_norm;

typedef struct tok_normalizer {
    tok_norm *ops;          /* applied in order (a Sequence is flattened) */
    int n_ops;
} tok_normalizer;

/* tokenizer.json's "normalizer" (null: none). */
int tok_normalizer_load(tok_normalizer *nz, struct json_t *j, const char *path, cb_err *err);
void tok_normalizer_free(tok_normalizer *nz);
/* in[0..n) -> out (reset first). */
int tok_normalizer_apply(const tok_normalizer *nz, const uint32_t *in, size_t n, tok_cps *out);

/* ---------------------------------------------------------------------------
 * Pre-tokenizers (tok_pretok.c): a text becomes a list of splits. */

typedef enum tok_pre_kind {
    TOK_PRE_METASPACE, TOK_PRE_WHITESPACE_SPLIT, TOK_PRE_BYTELEVEL, TOK_PRE_SPLIT
} tok_pre_kind;

enum { TOK_PREPEND_NEVER, TOK_PREPEND_ALWAYS, TOK_PREPEND_FIRST };
enum { TOK_SPLIT_REMOVED, TOK_SPLIT_ISOLATED, TOK_SPLIT_MERGED_PREV, TOK_SPLIT_MERGED_NEXT, TOK_SPLIT_CONTIGUOUS };

typedef struct tok_pre {
    tok_pre_kind kind;
    uint32_t replacement;      /* Metaspace */
    int prepend_scheme, split; /* Metaspace */
    int add_prefix_space;      /* ByteLevel */
    int use_regex;             /* ByteLevel: the GPT-2 split */
    int gpt2;                  /* Split: the pattern is the GPT-2 regex */
    tok_regex *re;             /* Split: another pattern */
    uint32_t *lit;             /* Split: a String pattern */
    size_t n_lit;
    int behavior, invert;      /* Split */
} tok_pre;

typedef struct tok_pretokenizer {
    tok_pre *ops;
    int n_ops;
} tok_pretokenizer;

int tok_pretokenizer_load(tok_pretokenizer *pt, struct json_t *j, const char *path, cb_err *err);
void tok_pretokenizer_free(tok_pretokenizer *pt);

/* The splits of one piece of text: code points in cps, split i is
 * cps.p[off[i] .. off[i] + len[i]). */
typedef struct tok_splits {
    tok_cps cps;
    size_t *off, *len;
    uint8_t *first;          /* the split starts the original text */
    size_t n, cap;
} tok_splits;
void tok_splits_free(tok_splits *s);

/* Pre-tokenize in[0..n) into out (reset first); `first` is whether the text
 * starts at offset 0 of the original input (Metaspace's prepend "first").
 * tmp is scratch. */
int tok_pretokenize(const tok_pretokenizer *pt, const uint32_t *in, size_t n, int first, tok_splits *out,
                    tok_splits *tmp);

/* ---------------------------------------------------------------------------
 * Models. Each encodes one pre-tokenized word (UTF-8) by appending ids with
 * push(ctx, id). */

typedef void (*tok_push_fn)(void *ctx, int id);

typedef struct tok_unigram {
    double *score;           /* [n] by id */
    int n;
    double min_score;
    int unk_id, byte_fallback;
    int byte_id[256];        /* "<0xXX>" ids, -1 when absent */
} tok_unigram;

/* Reads the model's vocabulary into v (empty) and its scores into u. */
int tok_unigram_load(tok_unigram *u, tok_vocab *v, struct json_t *model, const char *path, cb_err *err);
void tok_unigram_free(tok_unigram *u);
int tok_unigram_encode(const tok_unigram *u, const tok_vocab *v, const char *w, size_t n, tok_push_fn push,
                       void *ctx);

typedef struct tok_merge {
    uint64_t key;            /* (left id << 32) | right id; UINT64_MAX: empty */
    int32_t rank, id;
} tok_merge;

typedef struct tok_bpe {
    tok_merge *merges;       /* open addressing */
    uint64_t mask;
    int unk_id, fuse_unk, byte_fallback, ignore_merges;
    char *prefix, *suffix;   /* continuing_subword_prefix, end_of_word_suffix; NULL: none */
    int byte_id[256];
} tok_bpe;

/* Reads the model's vocabulary into v (empty) and its merges into b. */
int tok_bpe_load(tok_bpe *b, tok_vocab *v, struct json_t *model, const char *path, cb_err *err);
void tok_bpe_free(tok_bpe *b);
int tok_bpe_encode(const tok_bpe *b, const tok_vocab *v, const char *w, size_t n, tok_push_fn push, void *ctx);
#endif
