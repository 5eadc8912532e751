/* tokenizer_encode.h: what the top of the tokenizer shares: the tokenizer
 * struct and the piece of the encoding pipeline that loading needs
 * (added-token patterns are normalized like text). tokenizer.c loads
 * (tokenizer.json or vocab.txt), tokenizer_encode.c encodes; below them,
 * the models and pipeline stages beside WordPiece are in tok_*.c (tok.h),
 * the vocabulary table in tok_vocab.c, code points and UTF-8 in tok_text.c.
 * Internal to the module: the library API is tokenizer.h.
 */
#ifndef CB_TOKENIZER_ENCODE_H
#define CB_TOKENIZER_ENCODE_H
#include <string.h>
#include "tokenizer.h"
#include "tok.h"

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
    tok_vocab vocab;          /* with WordPiece's continuing_subword_prefix */
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

/* The normalizer of t (BertNormalizer, or the tok.h chain) over in[0..n): *out (malloc'd, caller
 * frees) gets the *n_out normalized code points. Returns 0, or -1 when out
 * of memory. */
int cb_tokenizer_normalize(const tokenizer *t, const uint32_t *in, size_t n, uint32_t **out, size_t *n_out);
#endif
