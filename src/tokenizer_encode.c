/* tokenizer_encode.c: text -> token ids, the encoding half of the tokenizer
 * (see tokenizer.h; tokenizer.c loads it). The BERT WordPiece pipeline is
 * here whole, tuned; the Unigram and BPE models run the same added-token
 * steps around the stages of tok.h (gen_encode below).
 *
 * The pipeline of one text, as HF runs it:
 *   1. UTF-8 -> code points (invalid sequences -> U+FFFD, maximal subpart,
 *      like Python's errors="replace").
 *   2. Added tokens that are not normalized ("[CLS]", "[MASK]", ...) are cut
 *      out of the raw text, leftmost-longest; each becomes its own id.
 *   3. Each remaining segment is normalized (BertNormalizer: clean text,
 *      spaces around CJK ideographs, NFD + drop Mn, lowercase); normalized
 *      added tokens are then cut out of the normalized segment.
 *   4. BertPreTokenizer: split on whitespace (dropped) and on punctuation
 *      (kept as one-char words).
 *   5. WordPiece: greedy longest match from the left, "##" on continuations;
 *      a word with an unmatched piece, or longer than
 *      max_input_chars_per_word chars, is one [UNK].
 *
 * Unicode data (categories, canonical decomposition, combining classes,
 * case) comes from utf8proc. HF takes categories from the Rust crate
 * unicode_categories (old Unicode tables) and case from Rust's char
 * (current Unicode), utf8proc from its own version: characters encoded or
 * re-categorized between those versions differ (about 600 code points, in
 * recent scripts and signs; tests/test_tokenizer.py lists them). Both
 * datasets and the torture list match id for id.
 *
 * The loaded tokenizer is read-only; cb_tokenizer_encode keeps its scratch on
 * the stack or in buffers it allocates itself, so it is thread-safe. An
 * allocation that fails sets scratch.oom: the pipeline then only runs to
 * its end, and cb_tokenizer_encode returns -1.
 */
#include "tokenizer_encode.h"

#include <stdlib.h>
#include <utf8proc.h>

/* ---------------------------------------------------------------------------
 * Unicode predicates, as HF defines them (on top of utf8proc). */

/* HF is_control: Cc, Cf, Co (unicode_categories' is_other), minus \t \n \r. */
static inline int is_control(uint32_t c) {
    if (c < 0x80) return (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF || k == UTF8PROC_CATEGORY_CO;
}

/* Rust char::is_whitespace: the White_Space property, which is exactly
 * U+0009..000D, U+0085 and the Zs, Zl, Zp categories. */
static inline int is_whitespace(uint32_t c) {
    if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0d);
    if (c == 0x85) return 1;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_ZS || k == UTF8PROC_CATEGORY_ZL || k == UTF8PROC_CATEGORY_ZP;
}

/* HF is_bert_punc: ASCII punctuation or a Unicode P* category. */
static inline int is_punctuation(uint32_t c) {
    if (c < 0x80)
        return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
               (c >= 123 && c <= 126);
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

/* HF is_chinese_char: the CJK ideograph blocks (a definition of BERT's,
 * not a Unicode property). */
static inline int is_chinese(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Word character of the regex \w (Alphabetic, marks, Nd, Pc, joiners), used
 * only by added tokens with single_word; approximated by categories. */
static int is_word_char(uint32_t c) {
    if (c == 0x200C || c == 0x200D) return 1;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_ND) || k == UTF8PROC_CATEGORY_NL ||
           k == UTF8PROC_CATEGORY_PC;
}

/* ---------------------------------------------------------------------------
 * Per-call scratch: growable buffers owned by one cb_tokenizer_encode call. */

typedef struct cp_pend { uint32_t cp; int ccc; } cp_pend;

typedef struct scratch {
    uint32_t *norm; size_t n_norm, cap_norm;   /* normalized segment */
    cp_pend *pend; size_t n_pend, cap_pend;    /* combining run awaiting reorder */
    char *word; size_t n_word, cap_word;       /* current word, UTF-8 */
    int word_chars;                            /* its length in code points */
    int norm_heap, word_heap;                  /* buffers moved off the stack */
    int32_t *out; int n_out, max_out;          /* ids */
    int oom;                                   /* an allocation failed */
} scratch;

/* Double a buffer that may still live on the caller's stack: the new
 * buffer, or NULL (p and *cap unchanged) when out of memory. */
static void *buf_grow(void *p, size_t *cap, size_t elem, int *on_heap) {
    size_t ncap = 2 * *cap + 64;
    void *q = *on_heap ? realloc(p, ncap * elem) : malloc(ncap * elem);
    if (!q) return NULL;
    if (!*on_heap) {
        memcpy(q, p, *cap * elem);
        *on_heap = 1;
    }
    *cap = ncap;
    return q;
}

static inline void norm_push(scratch *s, uint32_t c) {
    if (s->n_norm == s->cap_norm) {
        uint32_t *q = buf_grow(s->norm, &s->cap_norm, sizeof *s->norm, &s->norm_heap);
        if (!q) {
            s->oom = 1;
            return;
        }
        s->norm = q;
    }
    s->norm[s->n_norm++] = c;
}

/* Last stage of the normalizer: lowercase (Rust's full mapping; U+0130 is the
 * one character whose lowercase is two characters). */
static inline void norm_emit(const tokenizer *t, scratch *s, uint32_t c) {
    if (t->lowercase) {
        if (c < 0x80) {
            if (c >= 'A' && c <= 'Z') c += 32;
        } else if (c == 0x130) {
            norm_push(s, 'i');
            c = 0x307;
        } else {
            c = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
        }
    }
    norm_push(s, c);
}

/* End of a combining run: emit the kept marks in canonical order (they were
 * inserted sorted by combining class, stably). */
static void pend_flush(const tokenizer *t, scratch *s) {
    for (size_t i = 0; i < s->n_pend; i++) norm_emit(t, s, s->pend[i].cp);
    s->n_pend = 0;
}

/* NFD of c, then drop Mn (strip accents). Canonical reordering matters only
 * for the marks that survive (non-Mn with a combining class), so only those
 * are held back until the run of non-starters ends. */
static void norm_strip(const tokenizer *t, scratch *s, uint32_t c) {
    utf8proc_int32_t d[32];
    int last_bound = 0;
    utf8proc_ssize_t nd;
    if (c < 0xC0) {
        d[0] = (utf8proc_int32_t)c;
        nd = 1;
    } else {
        nd = utf8proc_decompose_char((utf8proc_int32_t)c, d, 32, UTF8PROC_DECOMPOSE, &last_bound);
        if (nd < 1 || nd > 32) { d[0] = (utf8proc_int32_t)c; nd = 1; }
    }
    for (utf8proc_ssize_t i = 0; i < nd; i++) {
        uint32_t x = (uint32_t)d[i];
        if (x < 0x300) {  /* no combining class, not Mn */
            pend_flush(t, s);
            norm_emit(t, s, x);
            continue;
        }
        const utf8proc_property_t *p = utf8proc_get_property(d[i]);
        int mn = p->category == UTF8PROC_CATEGORY_MN;
        if (p->combining_class == 0) {
            pend_flush(t, s);
            if (!mn) norm_emit(t, s, x);
        } else if (!mn) {
            if (s->n_pend == s->cap_pend) {
                cp_pend *q = realloc(s->pend, (2 * s->cap_pend + 8) * sizeof *s->pend);
                if (!q) {
                    s->oom = 1;
                    continue;
                }
                s->pend = q;
                s->cap_pend = 2 * s->cap_pend + 8;
            }
            size_t j = s->n_pend++;
            while (j > 0 && s->pend[j - 1].ccc > p->combining_class) {
                s->pend[j] = s->pend[j - 1];
                j--;
            }
            s->pend[j] = (cp_pend){x, p->combining_class};
        }
    }
}

static inline void norm_stage2(const tokenizer *t, scratch *s, uint32_t c) {
    if (t->strip_accents) norm_strip(t, s, c);
    else norm_emit(t, s, c);
}

/* BertNormalizer over in[0..n), appended to s->norm. */
static void normalize(const tokenizer *t, scratch *s, const uint32_t *in, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t c = in[i];
        if (t->clean_text) {
            if (c == 0 || c == 0xFFFD || is_control(c)) continue;
            if (is_whitespace(c)) c = ' ';
        }
        if (t->handle_chinese && c >= 0x3400 && is_chinese(c)) {
            norm_stage2(t, s, ' ');
            norm_stage2(t, s, c);
            norm_stage2(t, s, ' ');
        } else {
            norm_stage2(t, s, c);
        }
    }
    pend_flush(t, s);
}

int cb_tokenizer_normalize(const tokenizer *t, const uint32_t *in, size_t n, uint32_t **out, size_t *n_out) {
    if (t->model != TOK_MODEL_WORDPIECE) {
        tok_cps b = {0};
        if (tok_normalizer_apply(&t->norm, in, n, &b)) {
            free(b.p);
            return -1;
        }
        *out = b.p ? b.p : malloc(sizeof *b.p);
        *n_out = b.n;
        return *out ? 0 : -1;
    }
    scratch s = {0};
    s.norm_heap = 1;  /* grow by realloc from NULL */
    normalize(t, &s, in, n);
    free(s.pend);
    if (s.oom) {
        free(s.norm);
        return -1;
    }
    *out = s.norm;
    *n_out = s.n_norm;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Pre-tokenizer and WordPiece. */

static inline void out_push(scratch *s, int id) {
    if (s->n_out < s->max_out) s->out[s->n_out] = id;
    s->n_out++;
}

/* WordPiece of the current word; clears it. */
static void word_flush(const tokenizer *t, scratch *s) {
    if (s->word_chars == 0) return;
    const char *w = s->word;
    size_t len = s->n_word;
    int chars = s->word_chars;
    s->n_word = 0;
    s->word_chars = 0;
    if (chars > t->max_chars) {
        out_push(s, t->unk_id);
        return;
    }
    int n0 = s->n_out;
    size_t start = 0;
    while (start < len) {
        size_t end = len;
        if (end - start > t->vocab.max_tok_len) {  /* no longer token exists */
            end = start + t->vocab.max_tok_len;
            while (end > start && ((unsigned char)w[end] & 0xC0) == 0x80) end--;
        }
        int id = -1;
        while (end > start) {
            id = tok_vocab_find(&t->vocab, start > 0, w + start, end - start);
            if (id >= 0) break;
            do end--; while (end > start && ((unsigned char)w[end] & 0xC0) == 0x80);
        }
        if (id < 0) {
            s->n_out = n0;
            out_push(s, t->unk_id);
            return;
        }
        out_push(s, id);
        start = end;
    }
}

/* Append c to the current word as UTF-8. Past max_chars only the count
 * grows: the word will be [UNK] anyway. */
static inline void word_push(const tokenizer *t, scratch *s, uint32_t c) {
    if (s->word_chars++ >= t->max_chars) return;
    if (s->n_word + 4 > s->cap_word) {
        char *q = buf_grow(s->word, &s->cap_word, 1, &s->word_heap);
        if (!q) {
            s->oom = 1;
            return;
        }
        s->word = q;
    }
    char *p = s->word + s->n_word;
    if (c < 0x80) { p[0] = (char)c; s->n_word += 1; }
    else if (c < 0x800) { p[0] = (char)(0xC0 | (c >> 6)); p[1] = (char)(0x80 | (c & 0x3F)); s->n_word += 2; }
    else if (c < 0x10000) {
        p[0] = (char)(0xE0 | (c >> 12)); p[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        p[2] = (char)(0x80 | (c & 0x3F)); s->n_word += 3;
    } else {
        p[0] = (char)(0xF0 | (c >> 18)); p[1] = (char)(0x80 | ((c >> 12) & 0x3F));
        p[2] = (char)(0x80 | ((c >> 6) & 0x3F)); p[3] = (char)(0x80 | (c & 0x3F)); s->n_word += 4;
    }
}

/* BertPreTokenizer + WordPiece over normalized code points in[0..n). */
static void pretok_wordpiece(const tokenizer *t, scratch *s, const uint32_t *in, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t c = in[i];
        if (is_whitespace(c)) {
            word_flush(t, s);
        } else if (is_punctuation(c)) {
            word_flush(t, s);
            word_push(t, s, c);
            word_flush(t, s);
        } else {
            word_push(t, s, c);
        }
    }
    word_flush(t, s);
}

/* ---------------------------------------------------------------------------
 * Added tokens: leftmost-longest matching over code points. */

/* Next added-token match in in[from..n) among tokens with normalized == norm.
 * Returns 1 and the split [*ms, *me) (strip flags applied; *ms >= seg) with
 * the token index; 0 when none. `seg` is where the pending plain text starts
 * (lstrip never reaches before it). */
static int added_next(const tokenizer *t, int norm, const uint32_t *in, size_t n, size_t from,
                      size_t seg, size_t *ms, size_t *me, int *which) {
    uint64_t first = t->added_first[norm];
    for (size_t i = from; i < n; i++) {
        if (!(first >> (in[i] & 63) & 1)) continue;
        int best = -1;
        size_t best_len = 0;
        for (int k = 0; k < t->n_added; k++) {
            const added_token *a = &t->added[k];
            if (a->normalized != norm || a->n == 0 || (size_t)a->n <= best_len || a->cps[0] != in[i]) continue;
            if (i + (size_t)a->n > n || memcmp(a->cps, in + i, (size_t)a->n * sizeof *in)) continue;
            best = k;
            best_len = (size_t)a->n;
        }
        if (best < 0) continue;
        const added_token *a = &t->added[best];
        size_t start = i, stop = i + best_len;
        if (a->single_word) {
            int ok = (start == 0 || !is_word_char(in[start - 1])) && (stop == n || !is_word_char(in[stop]));
            if (!ok) { i = stop - 1; continue; }  /* matches never overlap: resume after it */
        }
        if (a->lstrip) while (start > seg && is_whitespace(in[start - 1])) start--;
        if (a->rstrip) while (stop < n && is_whitespace(in[stop])) stop++;
        *ms = start;
        *me = stop;
        *which = best;
        return 1;
    }
    return 0;
}

/* Normalized pieces: cut normalized added tokens, word-piece the rest. */
static void encode_normalized(const tokenizer *t, scratch *s, const uint32_t *in, size_t n) {
    size_t seg = 0, from = 0, ms, me;
    int k;
    while (t->n_added_norm && added_next(t, 1, in, n, from, seg, &ms, &me, &k)) {
        pretok_wordpiece(t, s, in + seg, ms - seg);
        out_push(s, t->added[k].id);
        seg = from = me;
    }
    pretok_wordpiece(t, s, in + seg, n - seg);
}

static void encode_segment(const tokenizer *t, scratch *s, const uint32_t *in, size_t n) {
    if (n == 0) return;
    s->n_norm = 0;
    normalize(t, s, in, n);
    encode_normalized(t, s, s->norm, s->n_norm);
}

/* ---------------------------------------------------------------------------
 * The pipeline of the Unigram and BPE models (tok.h): normalizer, added
 * tokens matched after it, pre-tokenizer, model over each split's UTF-8. */

typedef struct gen {
    tok_cps norm;
    tok_splits sp, tmp;
    char *word;
    size_t cap_word;
} gen;

static void gen_push(void *ctx, int id) { out_push(ctx, id); }

/* Pre-tokenize and encode normalized in[0..n). */
static void gen_words(const tokenizer *t, scratch *s, gen *g, const uint32_t *in, size_t n, int first) {
    if (n == 0 || s->oom) return;
    if (tok_pretokenize(&t->pre, in, n, first, &g->sp, &g->tmp)) {
        s->oom = 1;
        return;
    }
    for (size_t i = 0; i < g->sp.n && !s->oom; i++) {
        const uint32_t *c = g->sp.cps.p + g->sp.off[i];
        size_t m = g->sp.len[i];
        if (4 * m > g->cap_word) {
            char *w = realloc(g->word, 4 * m + 16);
            if (!w) { s->oom = 1; return; }
            g->word = w;
            g->cap_word = 4 * m + 16;
        }
        size_t k = 0;
        for (size_t q = 0; q < m; q++) k += (size_t)tok_utf8_put(g->word + k, c[q]);
        int rc = t->model == TOK_MODEL_UNIGRAM ? tok_unigram_encode(&t->uni, &t->vocab, g->word, k, gen_push, s)
                                               : tok_bpe_encode(&t->bpe, &t->vocab, g->word, k, gen_push, s);
        if (rc) s->oom = 1;
    }
}

/* A segment of raw text between raw added tokens; `first`: it starts the text. */
static void gen_segment(const tokenizer *t, scratch *s, gen *g, const uint32_t *in, size_t n, int first) {
    if (n == 0 || s->oom) return;
    if (tok_normalizer_apply(&t->norm, in, n, &g->norm)) {
        s->oom = 1;
        return;
    }
    if (g->norm.n == 0) return;
    /* matching normalized added tokens may not move g->norm: gen_words
     * uses other buffers */
    const uint32_t *nm = g->norm.p;
    size_t nn = g->norm.n, seg = 0, from = 0, ms, me;
    int k;
    while (t->n_added_norm && added_next(t, 1, nm, nn, from, seg, &ms, &me, &k)) {
        gen_words(t, s, g, nm + seg, ms - seg, first && seg == 0);
        out_push(s, t->added[k].id);
        seg = from = me;
    }
    gen_words(t, s, g, nm + seg, nn - seg, first && seg == 0);
}

static void gen_encode(const tokenizer *t, scratch *s, const uint32_t *cps, size_t n) {
    gen g = {0};
    size_t seg = 0, from = 0, ms, me;
    int k;
    while (t->n_added_raw && added_next(t, 0, cps, n, from, seg, &ms, &me, &k)) {
        gen_segment(t, s, &g, cps + seg, ms - seg, seg == 0);
        out_push(s, t->added[k].id);
        seg = from = me;
    }
    gen_segment(t, s, &g, cps + seg, n - seg, seg == 0);
    free(g.norm.p);
    tok_splits_free(&g.sp);
    tok_splits_free(&g.tmp);
    free(g.word);
}

int cb_tokenizer_encode(const tokenizer *t, const char *text, size_t len, int32_t *out, int max_ids) {
    /* Short texts (most queries and passages) never touch the heap. */
    uint32_t stack_cps[512], stack_norm[1024];
    char stack_word[512];
    uint32_t *cps = len < 512 ? stack_cps : malloc((len + 1) * sizeof *cps);
    if (!cps) return -1;
    size_t n = tok_utf8_decode((const unsigned char *)text, len, cps);

    scratch s = {0};
    s.norm = stack_norm;
    s.cap_norm = sizeof stack_norm / sizeof *stack_norm;
    s.word = stack_word;
    s.cap_word = sizeof stack_word;
    s.out = out;
    s.max_out = out ? max_ids : 0;

    if (t->model != TOK_MODEL_WORDPIECE) {
        gen_encode(t, &s, cps, n);
    } else {
        size_t seg = 0, from = 0, ms, me;
        int k;
        while (t->n_added_raw && added_next(t, 0, cps, n, from, seg, &ms, &me, &k)) {
            encode_segment(t, &s, cps + seg, ms - seg);
            out_push(&s, t->added[k].id);
            seg = from = me;
        }
        encode_segment(t, &s, cps + seg, n - seg);
    }

    if (cps != stack_cps) free(cps);
    if (s.norm_heap) free(s.norm);
    if (s.word_heap) free(s.word);
    free(s.pend);
    return s.oom ? -1 : s.n_out;
}
