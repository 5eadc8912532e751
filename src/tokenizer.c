/* tokenizer.c: the BERT WordPiece tokenizer of Hugging Face `tokenizers`,
 * id for id (see tokenizer.h).
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
 * The loaded tokenizer is read-only; tokenizer_encode keeps its scratch on
 * the stack or in buffers it allocates itself, so it is thread-safe.
 */
#include "tokenizer.h"

#include <jansson.h>
#include <string.h>
#include <utf8proc.h>

static size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *out);

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

struct tokenizer {
    /* WordPiece model */
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
};

#define FNV_OFFSET 1469598103934665603ULL
#define FNV_PRIME 1099511628211ULL

static inline uint64_t fnv_update(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* Final mix so that the low bits used as slot index depend on every byte. */
static inline uint64_t hash_mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

/* Id of token (pre ? prefix : "") + s[0..n) in the model vocab, -1 if absent.
 * No allocation: the prefix is hashed once at load. */
static inline int vocab_find(const tokenizer *t, int pre, const char *s, size_t n) {
    uint64_t h = hash_mix(fnv_update(pre ? t->prefix_hash : FNV_OFFSET, s, n));
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

/* Prepare an empty table for up to n tokens. */
static void vocab_init(tokenizer *t, size_t n) {
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)n + 16) cap *= 2;
    t->slots = cb_xmalloc(cap * sizeof *t->slots);
    for (uint64_t i = 0; i < cap; i++) t->slots[i].id = -1;
    t->slot_mask = cap - 1;
    t->arena_cap = 1 << 16;
    t->arena = cb_xmalloc(t->arena_cap);
    t->arena_len = 0;
}

/* Insert or overwrite (a later duplicate wins, as in HF's maps). */
static void vocab_put(tokenizer *t, const char *s, size_t n, int id) {
    uint64_t h = hash_mix(fnv_update(FNV_OFFSET, s, n));
    uint64_t i = h & t->slot_mask;
    for (;; i = (i + 1) & t->slot_mask) {
        vocab_slot *sl = &t->slots[i];
        if (sl->id < 0) break;
        if (sl->hash == h && sl->len == n && !memcmp(t->arena + sl->off, s, n)) {
            sl->id = id;
            return;
        }
    }
    CB_ASSERT(t->n_vocab < (int)(t->slot_mask / 2 + 8));
    while (t->arena_len + n + 1 > t->arena_cap) t->arena = cb_xrealloc(t->arena, t->arena_cap *= 2);
    memcpy(t->arena + t->arena_len, s, n);
    t->arena[t->arena_len + n] = '\0';
    t->slots[i] = (vocab_slot){h, (uint32_t)t->arena_len, (uint32_t)n, id};
    t->arena_len += n + 1;
    t->n_vocab++;
    if (n > t->max_tok_len) t->max_tok_len = (uint32_t)n;
}

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
 * Per-call scratch: growable buffers owned by one tokenizer_encode call. */

typedef struct cp_pend { uint32_t cp; int ccc; } cp_pend;

typedef struct scratch {
    uint32_t *norm; size_t n_norm, cap_norm;   /* normalized segment */
    cp_pend *pend; size_t n_pend, cap_pend;    /* combining run awaiting reorder */
    char *word; size_t n_word, cap_word;       /* current word, UTF-8 */
    int word_chars;                            /* its length in code points */
    int norm_heap, word_heap;                  /* buffers moved off the stack */
    int32_t *out; int n_out, max_out;          /* ids */
} scratch;

/* Double a buffer that may still live on the caller's stack. */
static void *buf_grow(void *p, size_t *cap, size_t elem, int *on_heap) {
    size_t ncap = 2 * *cap + 64;
    void *q;
    if (*on_heap) q = cb_xrealloc(p, ncap * elem);
    else {
        q = cb_xmalloc(ncap * elem);
        memcpy(q, p, *cap * elem);
        *on_heap = 1;
    }
    *cap = ncap;
    return q;
}

static inline void norm_push(scratch *s, uint32_t c) {
    if (s->n_norm == s->cap_norm) s->norm = buf_grow(s->norm, &s->cap_norm, sizeof *s->norm, &s->norm_heap);
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
            if (s->n_pend == s->cap_pend)
                s->pend = cb_xrealloc(s->pend, (s->cap_pend = 2 * s->cap_pend + 8) * sizeof *s->pend);
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
        if (end - start > t->max_tok_len) {  /* no longer token exists */
            end = start + t->max_tok_len;
            while (end > start && ((unsigned char)w[end] & 0xC0) == 0x80) end--;
        }
        int id = -1;
        while (end > start) {
            id = vocab_find(t, start > 0, w + start, end - start);
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
    if (s->n_word + 4 > s->cap_word) s->word = buf_grow(s->word, &s->cap_word, 1, &s->word_heap);
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

int tokenizer_encode(const tokenizer *t, const char *text, size_t len, int32_t *out, int max_ids) {
    /* Short texts (most queries and passages) never touch the heap. */
    uint32_t stack_cps[512], stack_norm[1024];
    char stack_word[512];
    uint32_t *cps = len < 512 ? stack_cps : cb_xmalloc((len + 1) * sizeof *cps);
    size_t n = utf8_decode((const unsigned char *)text, len, cps);

    scratch s = {0};
    s.norm = stack_norm;
    s.cap_norm = sizeof stack_norm / sizeof *stack_norm;
    s.word = stack_word;
    s.cap_word = sizeof stack_word;
    s.out = out;
    s.max_out = out ? max_ids : 0;

    size_t seg = 0, from = 0, ms, me;
    int k;
    while (t->n_added_raw && added_next(t, 0, cps, n, from, seg, &ms, &me, &k)) {
        encode_segment(t, &s, cps + seg, ms - seg);
        out_push(&s, t->added[k].id);
        seg = from = me;
    }
    encode_segment(t, &s, cps + seg, n - seg);

    if (cps != stack_cps) free(cps);
    if (s.norm_heap) free(s.norm);
    if (s.word_heap) free(s.word);
    free(s.pend);
    return s.n_out;
}

/* ---------------------------------------------------------------------------
 * UTF-8 decoding with Python's errors="replace": each maximal prefix of a
 * valid sequence that cannot be completed becomes one U+FFFD, and decoding
 * resumes at the byte that broke it. out has room for len code points. */
static size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *out) {
    size_t i = 0, n = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            out[n++] = c;
            i++;
            continue;
        }
        int need;
        uint32_t cp;
        unsigned lo = 0x80, hi = 0xBF;  /* allowed range of the next byte */
        if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2; cp = c & 0x0F;
            if (c == 0xE0) lo = 0xA0;       /* no overlong forms */
            else if (c == 0xED) hi = 0x9F;  /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3; cp = c & 0x07;
            if (c == 0xF0) lo = 0x90;
            else if (c == 0xF4) hi = 0x8F;  /* <= U+10FFFF */
        } else {
            out[n++] = 0xFFFD;
            i++;
            continue;
        }
        size_t j = i + 1;
        int k = 0;
        for (; k < need && j < len; k++, j++) {
            unsigned b = s[j];
            if (b < lo || b > hi) break;
            cp = (cp << 6) | (b & 0x3F);
            lo = 0x80;
            hi = 0xBF;
        }
        out[n++] = k == need ? cp : 0xFFFD;
        i = j;
    }
    return n;
}

/* ---------------------------------------------------------------------------
 * Loading. */

static int json_bool(json_t *o, const char *key, int dflt) {
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* A token name given as "[CLS]" or {"content": "[CLS]", ...}; NULL if absent. */
static const char *json_token_name(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static json_t *json_load_path(const char *path, cb_err *err) {
    size_t len;
    char *buf = cb_read_file(path, &len, err);
    if (!buf) return NULL;
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, 0, &jerr);
    free(buf);
    if (!root) {
        cb_err_set(err, "%s: malformed JSON at line %d, column %d: %s", path, jerr.line, jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        cb_err_set(err, "%s: expected a JSON object at the top level", path);
        return NULL;
    }
    return root;
}

static void added_add(tokenizer *t, const char *content, int id, int lstrip, int rstrip, int single_word,
                      int normalized) {
    t->added = cb_xrealloc(t->added, (size_t)(t->n_added + 1) * sizeof *t->added);
    added_token *a = &t->added[t->n_added++];
    memset(a, 0, sizeof *a);
    a->content = cb_xstrdup(content);
    a->id = id;
    a->lstrip = lstrip;
    a->rstrip = rstrip;
    a->single_word = single_word;
    a->normalized = normalized;
}

/* Added tokens of a JSON array (tokenizer.json "added_tokens") or an object
 * {"id": {...}} (tokenizer_config.json "added_tokens_decoder"). */
static int added_load(tokenizer *t, json_t *arr_or_obj, const char *path, cb_err *err) {
    size_t n = json_is_array(arr_or_obj) ? json_array_size(arr_or_obj) : 0;
    const char *key;
    json_t *v;
    void *iter = json_is_object(arr_or_obj) ? json_object_iter(arr_or_obj) : NULL;
    for (size_t i = 0; i < n || iter; i++) {
        long long id;
        if (iter) {
            key = json_object_iter_key(iter);
            v = json_object_iter_value(iter);
            char *end;
            id = strtoll(key, &end, 10);
            if (*end || end == key) return cb_err_set(err, "%s: added token id '%s' is not a number", path, key);
            iter = json_object_iter_next(arr_or_obj, iter);
        } else {
            v = json_array_get(arr_or_obj, i);
            json_t *jid = json_object_get(v, "id");
            if (!json_is_integer(jid)) return cb_err_set(err, "%s: added_tokens[%zu] has no integer \"id\"", path, i);
            id = json_integer_value(jid);
        }
        json_t *c = json_object_get(v, "content");
        if (!json_is_string(c)) return cb_err_set(err, "%s: added token %lld has no string \"content\"", path, id);
        if (id < 0 || id > INT32_MAX / 2) return cb_err_set(err, "%s: added token id %lld out of range", path, id);
        int special = json_bool(v, "special", 0);
        added_add(t, json_string_value(c), (int)id, json_bool(v, "lstrip", 0), json_bool(v, "rstrip", 0),
                  json_bool(v, "single_word", 0), json_bool(v, "normalized", !special));
    }
    return 0;
}

static int load_tokenizer_json(tokenizer *t, const char *path, cb_err *err) {
    json_t *root = json_load_path(path, err);
    if (!root) return -1;
    int rc = -1;
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) { cb_err_set(err, "%s: no \"model\" object", path); goto done; }
    json_t *type = json_object_get(model, "type");
    if (type && !(json_is_string(type) && !strcmp(json_string_value(type), "WordPiece"))) {
        cb_err_set(err, "%s: model type '%s' is not supported (only WordPiece)", path,
                   json_is_string(type) ? json_string_value(type) : "?");
        goto done;
    }
    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab) || json_object_size(vocab) == 0) {
        cb_err_set(err, "%s: model.vocab is missing or empty (expected a WordPiece token -> id map)", path);
        goto done;
    }
    if (!type && json_object_get(model, "merges")) {
        cb_err_set(err, "%s: model looks like BPE (has merges); only WordPiece is supported", path);
        goto done;
    }
    json_t *v = json_object_get(model, "unk_token");
    snprintf(t->unk_token, sizeof t->unk_token, "%s", json_is_string(v) ? json_string_value(v) : "[UNK]");
    v = json_object_get(model, "continuing_subword_prefix");
    if (json_is_string(v)) {
        if (strlen(json_string_value(v)) >= sizeof t->prefix) {
            cb_err_set(err, "%s: continuing_subword_prefix is too long", path);
            goto done;
        }
        snprintf(t->prefix, sizeof t->prefix, "%s", json_string_value(v));
    }
    v = json_object_get(model, "max_input_chars_per_word");
    if (json_is_integer(v)) {
        json_int_t m = json_integer_value(v);
        t->max_chars = m < 0 ? 0 : m > INT32_MAX / 2 ? INT32_MAX / 2 : (int)m;
    }

    vocab_init(t, json_object_size(vocab));
    const char *key;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX / 2) {
            cb_err_set(err, "%s: model.vocab entry '%s' has no valid id", path, key);
            goto done;
        }
        vocab_put(t, key, strlen(key), (int)json_integer_value(v));
    }

    json_t *norm = json_object_get(root, "normalizer");
    if (json_is_null(norm) || !norm) {
        t->clean_text = t->handle_chinese = t->strip_accents = t->lowercase = 0;
    } else {
        json_t *nt = json_object_get(norm, "type");
        if (!json_is_string(nt) || strcmp(json_string_value(nt), "BertNormalizer")) {
            cb_err_set(err, "%s: normalizer type '%s' is not supported (only BertNormalizer)", path,
                       json_is_string(nt) ? json_string_value(nt) : "?");
            goto done;
        }
        t->clean_text = json_bool(norm, "clean_text", 1);
        t->handle_chinese = json_bool(norm, "handle_chinese_chars", 1);
        t->lowercase = json_bool(norm, "lowercase", 1);
        t->strip_accents = json_bool(norm, "strip_accents", t->lowercase);  /* null follows lowercase */
    }
    json_t *pre = json_object_get(root, "pre_tokenizer");
    json_t *pt = json_object_get(pre, "type");
    if (!json_is_string(pt) || strcmp(json_string_value(pt), "BertPreTokenizer")) {
        cb_err_set(err, "%s: pre_tokenizer type '%s' is not supported (only BertPreTokenizer)", path,
                   json_is_string(pt) ? json_string_value(pt) : "none");
        goto done;
    }
    json_t *added = json_object_get(root, "added_tokens");
    if (json_is_array(added) && added_load(t, added, path, err)) goto done;
    rc = 0;
done:
    json_decref(root);
    return rc;
}

static int load_vocab_txt(tokenizer *t, const char *path, cb_err *err) {
    size_t len;
    char *buf = cb_read_file(path, &len, err);
    if (!buf) return -1;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    vocab_init(t, lines);
    int id = 0;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && buf[j] != '\n') j++;
        size_t n = j - i;
        if (n && buf[i + n - 1] == '\r') n--;
        vocab_put(t, buf + i, n, id++);
        i = j + 1;
    }
    free(buf);
    if (t->n_vocab == 0) return cb_err_set(err, "%s: empty vocabulary", path);
    return 0;
}

void tokenizer_free(tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_added; i++) {
        free(t->added[i].cps);
        free(t->added[i].content);
    }
    free(t->added);
    free(t->slots);
    free(t->arena);
    free(t->id_tok);
    free(t);
}

/* After the files are read: unk id, prefix hash, added-token patterns, the
 * id -> token table, special ids. */
static int tokenizer_finish(tokenizer *t, const char *vocab_path, json_t *cfg, cb_err *err) {
    t->prefix_len = (uint32_t)strlen(t->prefix);
    t->prefix_hash = fnv_update(FNV_OFFSET, t->prefix, t->prefix_len);
    t->unk_id = vocab_find(t, 0, t->unk_token, strlen(t->unk_token));
    if (t->unk_id < 0)
        return cb_err_set(err, "%s: unk_token '%s' is not in the vocabulary", vocab_path, t->unk_token);

    /* Patterns: raw content, or its normalized form for normalized tokens. */
    scratch s = {0};
    s.norm_heap = 1;  /* grow by realloc from NULL */
    for (int i = 0; i < t->n_added; i++) {
        added_token *a = &t->added[i];
        size_t len = strlen(a->content);
        uint32_t *cps = cb_xmalloc((len + 1) * sizeof *cps);
        size_t n = utf8_decode((const unsigned char *)a->content, len, cps);
        if (a->normalized) {
            s.n_norm = 0;
            normalize(t, &s, cps, n);
            free(cps);
            cps = cb_xmalloc((s.n_norm + 1) * sizeof *cps);
            memcpy(cps, s.norm, s.n_norm * sizeof *cps);
            n = s.n_norm;
            t->n_added_norm++;
        } else {
            t->n_added_raw++;
        }
        a->cps = cps;
        a->n = (int)n;
        if (n) t->added_first[a->normalized] |= 1ULL << (cps[0] & 63);
    }
    free(s.norm);
    free(s.pend);

    int max_id = -1;
    for (uint64_t i = 0; i <= t->slot_mask; i++) if (t->slots[i].id > max_id) max_id = t->slots[i].id;
    for (int i = 0; i < t->n_added; i++) if (t->added[i].id > max_id) max_id = t->added[i].id;
    t->n_ids = max_id + 1;
    t->id_tok = cb_xcalloc((size_t)t->n_ids, sizeof *t->id_tok);
    for (uint64_t i = 0; i <= t->slot_mask; i++)
        if (t->slots[i].id >= 0) t->id_tok[t->slots[i].id] = t->arena + t->slots[i].off;
    for (int i = 0; i < t->n_added; i++) t->id_tok[t->added[i].id] = t->added[i].content;

    const char *names[4] = {"[CLS]", "[SEP]", "[PAD]", "[MASK]"};
    const char *keys[4] = {"cls_token", "sep_token", "pad_token", "mask_token"};
    int ids[4];
    for (int i = 0; i < 4; i++) {
        const char *nm = cfg ? json_token_name(cfg, keys[i]) : NULL;
        ids[i] = tokenizer_token_id(t, nm ? nm : names[i]);
    }
    t->specials = (tokenizer_specials){ids[0], ids[1], ids[2], ids[3], t->unk_id};
    return 0;
}

tokenizer *tokenizer_load(const char *model_dir, cb_err *err) {
    if (!cb_dir_exists(model_dir)) {
        cb_err_set(err, "%s: no such model directory", model_dir);
        return NULL;
    }
    tokenizer *t = cb_xcalloc(1, sizeof *t);
    snprintf(t->prefix, sizeof t->prefix, "##");
    snprintf(t->unk_token, sizeof t->unk_token, "[UNK]");
    t->max_chars = 100;
    t->clean_text = t->handle_chinese = t->lowercase = t->strip_accents = 1;

    char *tj = cb_path_join(model_dir, "tokenizer.json");
    char *vt = cb_path_join(model_dir, "vocab.txt");
    char *tc = cb_path_join(model_dir, "tokenizer_config.json");
    json_t *cfg = NULL;
    const char *vocab_path = tj;
    int ok = 0;
    if (cb_file_exists(tc) && !(cfg = json_load_path(tc, err))) goto done;
    if (cb_file_exists(tj)) {
        if (load_tokenizer_json(t, tj, err)) goto done;
    } else if (cb_file_exists(vt)) {
        /* BertTokenizer's options, as transformers converts them. */
        vocab_path = vt;
        if (cfg) {
            t->lowercase = json_bool(cfg, "do_lower_case", 1);
            t->handle_chinese = json_bool(cfg, "tokenize_chinese_chars", 1);
            t->strip_accents = json_bool(cfg, "strip_accents", t->lowercase);
            const char *unk = json_token_name(cfg, "unk_token");
            if (unk) snprintf(t->unk_token, sizeof t->unk_token, "%s", unk);
        }
        if (load_vocab_txt(t, vt, err)) goto done;
        json_t *dec = cfg ? json_object_get(cfg, "added_tokens_decoder") : NULL;
        if (json_is_object(dec)) {
            if (added_load(t, dec, tc, err)) goto done;
        } else {
            /* The special tokens, matched before normalization. */
            const char *keys[5] = {"pad_token", "unk_token", "cls_token", "sep_token", "mask_token"};
            const char *names[5] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
            for (int i = 0; i < 5; i++) {
                const char *nm = cfg ? json_token_name(cfg, keys[i]) : NULL;
                if (!nm) nm = names[i];
                int id = vocab_find(t, 0, nm, strlen(nm));
                if (id >= 0) added_add(t, nm, id, 0, 0, 0, 0);
            }
        }
    } else {
        cb_err_set(err, "%s: no tokenizer.json and no vocab.txt in this model directory", model_dir);
        goto done;
    }
    if (tokenizer_finish(t, vocab_path, cfg, err)) goto done;
    ok = 1;
done:
    if (cfg) json_decref(cfg);
    free(tj);
    free(vt);
    free(tc);
    if (!ok) {
        tokenizer_free(t);
        return NULL;
    }
    return t;
}

int tokenizer_token_id(const tokenizer *t, const char *token) {
    int id = vocab_find(t, 0, token, strlen(token));
    if (id >= 0) return id;
    for (int i = 0; i < t->n_added; i++)
        if (!strcmp(t->added[i].content, token)) return t->added[i].id;
    return -1;
}

const char *tokenizer_id_token(const tokenizer *t, int id) {
    return id >= 0 && id < t->n_ids ? t->id_tok[id] : NULL;
}

int tokenizer_vocab_size(const tokenizer *t) { return t->n_ids; }

tokenizer_specials tokenizer_get_specials(const tokenizer *t) { return t->specials; }
