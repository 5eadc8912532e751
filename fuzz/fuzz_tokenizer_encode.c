/* fuzz_tokenizer_encode.c: encoding any bytes (tokenizer_encode.c, tok_*.c)
 * with four real-looking tokenizers, and the ColBERT query and document
 * layouts on top (colbert.h). The first byte picks the tokenizer and the id
 * budget: bits 0-1: fuzz/data/tok-json (WordPiece tokenizer.json: lowercase,
 * accents stripped, added tokens), tok-vocab (vocab.txt, cased, no accent
 * stripping), tok-unigram (sentencepiece Unigram, Precompiled charsmap,
 * Metaspace, <s> ... </s>) or tok-bpe (byte-level BPE, NFC, added runs of
 * spaces, [MASK] with lstrip); the last two get PyLate's "[Q] " and "[D] "
 * added. Bits 2-7: max ids (0 .. 63). The rest is the text. */
#include "fuzz.h"
#include "colbert.h"
#include "tokenizer.h"

#ifndef CB_FUZZ_DATA
#define CB_FUZZ_DATA "fuzz/data"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define N_TOK 4
static tokenizer *tok[N_TOK];
static colbert_vocab voc[N_TOK];

static void unload(void) {
    for (int i = 0; i < N_TOK; i++) cb_tokenizer_free(tok[i]);
}

static void load(void) {
    const char *env = getenv("CB_FUZZ_DATA");
    const char *base = env ? env : CB_FUZZ_DATA;
    const char *names[N_TOK] = {"tok-json", "tok-vocab", "tok-unigram", "tok-bpe"};
    const char *marks[2] = {"[Q] ", "[D] "};
    for (int i = 0; i < N_TOK; i++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", base, names[i]);
        cb_err err;
        if (!(tok[i] = cb_tokenizer_load(dir, &err)) || (i >= 2 && cb_tokenizer_add_tokens(tok[i], marks, 2, &err) != 2) ||
            cb_colbert_vocab_init(&voc[i], tok[i], &err)) {
            fprintf(stderr, "fuzz_tokenizer_encode: %s (set CB_FUZZ_DATA to the fuzz/data directory)\n", err.msg);
            abort();
        }
    }
    atexit(unload);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok[0]) load();
    if (size < 1) return 0;
    const tokenizer *t = tok[data[0] & 3];
    const colbert_vocab *v = &voc[data[0] & 3];
    int max = data[0] >> 2, V = cb_tokenizer_vocab_size(t);
    /* the text in a buffer of exactly its size (no terminating NUL) */
    size_t len = size - 1;
    char *text = malloc(len ? len : 1);
    if (!text) return 0;
    if (len) memcpy(text, data + 1, len);
    int32_t *ids = malloc((size_t)(max ? max : 1) * sizeof *ids);
    int n = ids ? cb_tokenizer_encode(t, text, len, ids, max) : 0;
    if (n < -1) abort();
    for (int i = 0; i < n && i < max; i++)
        if (ids[i] < 0 || ids[i] >= V) abort();
    /* the same text encoded with room for everything gives the same prefix */
    if (n > 0 && n <= 4096) {
        int32_t *all = malloc((size_t)n * sizeof *all);
        if (all && cb_tokenizer_encode(t, text, len, all, n) == n)
            for (int i = 0; i < n && i < max; i++)
                if (all[i] != ids[i]) abort();
        free(all);
    }
    free(ids);

    colbert_config c;
    cb_colbert_config_default(&c);
    c.query_maxlen = 8 + (data[0] & 7);
    c.doc_maxlen = 5 + (data[0] >> 4);
    int32_t q[16], d[32];
    uint8_t qm[16], keep[32];
    cb_colbert_query_ids(q, qm, v, t, text, len, &c);
    for (int i = 0; i < c.query_maxlen; i++)
        if (q[i] < 0 || q[i] >= V) abort();
    int nd = cb_colbert_doc_ids(d, v, t, text, len, &c);
    if (nd < 3 || nd > c.doc_maxlen) abort();
    cb_colbert_doc_keep(keep, d, nd, v, 1);
    free(text);
    return 0;
}
