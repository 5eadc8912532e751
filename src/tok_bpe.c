/* tok_bpe.c: the BPE model of Hugging Face `tokenizers` (byte-level BPE of
 * RoBERTa, GPT-2, ModernBERT), without dropout:
 *   - a word starts as one symbol per character (its vocabulary id, with
 *     continuing_subword_prefix / end_of_word_suffix when set); a character
 *     that is not in the vocabulary becomes its "<0xXX>" byte tokens
 *     (byte_fallback) or the unknown token (fused with the unknown run
 *     before it when fuse_unk), or is dropped when there is no unknown token;
 *   - then the pair of adjacent symbols with the lowest merge rank, the
 *     leftmost among equals, is merged, again and again (a heap of candidate
 *     pairs, stale entries skipped, as HF's Word::merge_all);
 *   - with ignore_merges, a word that is a vocabulary token is that token.
 * Merges are read in both tokenizer.json forms: "a b" and ["a", "b"]. */
#include "tok.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static inline uint64_t pair_key(int a, int b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

static inline uint64_t key_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
}

static const tok_merge *merge_find(const tok_bpe *b, int left, int right) {
    uint64_t k = pair_key(left, right);
    for (uint64_t i = key_hash(k) & b->mask;; i = (i + 1) & b->mask) {
        const tok_merge *m = &b->merges[i];
        if (m->key == UINT64_MAX) return NULL;
        if (m->key == k) return m;
    }
}

/* A later duplicate of a pair replaces the earlier (HF collects a map). */
static void merge_put(tok_bpe *b, int left, int right, int rank, int id) {
    uint64_t k = pair_key(left, right);
    for (uint64_t i = key_hash(k) & b->mask;; i = (i + 1) & b->mask) {
        tok_merge *m = &b->merges[i];
        if (m->key == UINT64_MAX || m->key == k) {
            *m = (tok_merge){k, rank, id};
            return;
        }
    }
}

static char *opt_string(json_t *model, const char *key, cb_err *err, int *fail) {
    json_t *v = json_object_get(model, key);
    if (!json_is_string(v) || json_string_length(v) == 0) return NULL;   /* "" as HF: no effect */
    char *s = cb_strdup(json_string_value(v), err);
    if (!s) *fail = 1;
    return s;
}

int tok_bpe_load(tok_bpe *b, tok_vocab *voc, json_t *model, const char *path, cb_err *err) {
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab) || json_object_size(vocab) == 0)
        return cb_err_set(err, "%s: model.vocab is missing or empty (expected a BPE token -> id map)", path);
    if (!json_is_array(merges)) return cb_err_set(err, "%s: model.merges is missing (expected a list)", path);
    json_t *drop = json_object_get(model, "dropout");
    if (drop && !json_is_null(drop) && !(json_is_number(drop) && json_number_value(drop) == 0.0))
        return cb_err_set(err, "%s: BPE dropout is not supported (it is random; set \"dropout\": null)", path);
    int fail = 0;
    b->prefix = opt_string(model, "continuing_subword_prefix", err, &fail);
    b->suffix = opt_string(model, "end_of_word_suffix", err, &fail);
    if (fail) return -1;
    b->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    b->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    b->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));

    if (tok_vocab_init(voc, json_object_size(vocab), err)) return -1;
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (1 << 24))
            return cb_err_set(err, "%s: model.vocab entry '%s' has no valid id (an integer 0 .. %d)", path, key,
                              1 << 24);
        int old;
        if (tok_vocab_put(voc, key, strlen(key), (int)json_integer_value(v), &old, err) < 0) return -1;
    }
    b->unk_id = -1;
    json_t *unk = json_object_get(model, "unk_token");
    if (json_is_string(unk)) {
        b->unk_id = tok_vocab_find(voc, 0, json_string_value(unk), json_string_length(unk));
        if (b->unk_id < 0)
            return cb_err_set(err, "%s: BPE unk_token '%s' is not in the vocabulary", path, json_string_value(unk));
    }
    for (int c = 0; c < 256; c++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", c);
        b->byte_id[c] = tok_vocab_find(voc, 0, name, 6);
    }

    size_t n = json_array_size(merges);
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)n + 16) cap *= 2;
    if (!(b->merges = cb_malloc(cap * sizeof *b->merges, "the BPE merges", err))) return -1;
    for (uint64_t i = 0; i < cap; i++) b->merges[i].key = UINT64_MAX;
    b->mask = cap - 1;
    size_t plen = b->prefix ? strlen(b->prefix) : 0;
    char *buf = NULL;
    size_t buf_cap = 0;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        json_t *m = json_array_get(merges, i);
        const char *l, *r;
        size_t ln, rn;
        if (json_is_string(m)) {
            l = json_string_value(m);
            const char *sp = strchr(l, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                rc = cb_err_set(err, "%s: model.merges[%zu] '%s' is not two tokens separated by one space", path, i, l);
                break;
            }
            ln = (size_t)(sp - l);
            r = sp + 1;
            rn = strlen(r);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            l = json_string_value(json_array_get(m, 0));
            ln = json_string_length(json_array_get(m, 0));
            r = json_string_value(json_array_get(m, 1));
            rn = json_string_length(json_array_get(m, 1));
        } else {
            rc = cb_err_set(err, "%s: model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", path, i);
            break;
        }
        int a = tok_vocab_find(voc, 0, l, ln), c = tok_vocab_find(voc, 0, r, rn);
        /* the merged token: a + b without b's continuing prefix */
        size_t skip = plen && rn >= plen && !memcmp(r, b->prefix, plen) ? plen : 0;
        if (ln + rn + 1 > buf_cap) {
            buf_cap = 2 * (ln + rn + 1);
            char *nb = realloc(buf, buf_cap);
            if (!nb) { rc = cb_err_set(err, "out of memory reading the BPE merges"); break; }
            buf = nb;
        }
        memcpy(buf, l, ln);
        memcpy(buf + ln, r + skip, rn - skip);
        int id = tok_vocab_find(voc, 0, buf, ln + rn - skip);
        if (a < 0 || c < 0 || id < 0) {
            rc = cb_err_set(err, "%s: model.merges[%zu] ('%.*s' + '%.*s'): token '%.*s' is not in the vocabulary",
                            path, i, (int)ln, l, (int)rn, r,
                            (int)(a < 0 ? ln : c < 0 ? rn : ln + rn - skip), a < 0 ? l : c < 0 ? r : buf);
            break;
        }
        merge_put(b, a, c, (int)i, id);
    }
    free(buf);
    return rc;
}

void tok_bpe_free(tok_bpe *b) {
    free(b->merges);
    free(b->prefix);
    free(b->suffix);
}

/* ---------------------------------------------------------------------------
 * Encoding. */

typedef struct sym { int32_t id, prev, next, alive; } sym;
typedef struct cand { int32_t rank, pos, id; } cand;

static inline int cand_less(const cand *x, const cand *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(cand *h, size_t *n, cand c) {
    size_t i = (*n)++;
    while (i > 0 && cand_less(&c, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static cand heap_pop(cand *h, size_t *n) {
    cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *mc = &last;
        if (l < *n && cand_less(&h[l], mc)) { m = l; mc = &h[l]; }
        if (r < *n && cand_less(&h[r], mc)) m = r;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n) h[i] = last;
    return top;
}

/* Id of one character w[a..b) as a symbol: prefix when not first, suffix
 * when last. */
static int char_id(const tok_bpe *b, const tok_vocab *voc, const char *w, size_t a, size_t e, size_t n) {
    if (!b->prefix && !b->suffix) return tok_vocab_find(voc, 0, w + a, e - a);
    char buf[256];
    size_t k = 0, pl = b->prefix && a > 0 ? strlen(b->prefix) : 0, sl = b->suffix && e == n ? strlen(b->suffix) : 0;
    if (pl + sl + (e - a) > sizeof buf) return -1;
    memcpy(buf, b->prefix, pl);
    k = pl;
    memcpy(buf + k, w + a, e - a);
    k += e - a;
    memcpy(buf + k, b->suffix, sl);
    return tok_vocab_find(voc, 0, buf, k + sl);
}

int tok_bpe_encode(const tok_bpe *b, const tok_vocab *voc, const char *w, size_t n, tok_push_fn push, void *ctx) {
    if (n == 0) return 0;
    if (b->ignore_merges) {
        int id = tok_vocab_find(voc, 0, w, n);
        if (id >= 0) {
            push(ctx, id);
            return 0;
        }
    }
    /* at most one symbol per byte (byte fallback); the heap gets the first
     * pairs, then at most two per merge */
    sym stack_s[128];
    cand stack_h[3 * 128 + 4];
    sym *s = n <= 128 ? stack_s : malloc(n * sizeof *s);
    cand *h = n <= 128 ? stack_h : malloc((3 * n + 4) * sizeof *h);
    if (!s || !h) {
        if (s != stack_s) free(s);
        if (h != stack_h) free(h);
        return -1;
    }
    int32_t ns = 0;
    int unk = -1;           /* pending unknown symbol (fused) */
    for (size_t a = 0; a < n;) {
        unsigned c = (unsigned char)w[a];
        size_t e = a + (c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4);
        if (e > n) e = n;
        int id = char_id(b, voc, w, a, e, n);
        if (id >= 0) {
            if (unk >= 0) { s[ns++] = (sym){unk, 0, 0, 1}; unk = -1; }
            s[ns++] = (sym){id, 0, 0, 1};
        } else {
            int ok = b->byte_fallback;
            for (size_t k = a; k < e && ok; k++) ok = b->byte_id[(unsigned char)w[k]] >= 0;
            if (ok) {
                for (size_t k = a; k < e; k++) s[ns++] = (sym){b->byte_id[(unsigned char)w[k]], 0, 0, 1};
            } else if (b->unk_id >= 0) {
                if (unk >= 0 && !b->fuse_unk) s[ns++] = (sym){unk, 0, 0, 1};
                unk = b->unk_id;
            }
        }
        a = e;
    }
    if (unk >= 0) s[ns++] = (sym){unk, 0, 0, 1};
    for (int32_t i = 0; i < ns; i++) {
        s[i].prev = i - 1;
        s[i].next = i + 1 < ns ? i + 1 : -1;
    }
    size_t nh = 0;
    for (int32_t i = 0; i + 1 < ns; i++) {
        const tok_merge *m = merge_find(b, s[i].id, s[i + 1].id);
        if (m) heap_push(h, &nh, (cand){m->rank, i, m->id});
    }
    while (nh) {
        cand top = heap_pop(h, &nh);
        sym *l = &s[top.pos];
        if (!l->alive || l->next < 0) continue;
        sym *r = &s[l->next];
        const tok_merge *m = merge_find(b, l->id, r->id);
        if (!m || m->id != top.id) continue;   /* stale: a neighbour changed */
        l->id = top.id;
        r->alive = 0;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = top.pos;
        if (l->prev >= 0 && (m = merge_find(b, s[l->prev].id, l->id)))
            heap_push(h, &nh, (cand){m->rank, l->prev, m->id});
        if (l->next >= 0 && (m = merge_find(b, l->id, s[l->next].id)))
            heap_push(h, &nh, (cand){m->rank, top.pos, m->id});
    }
    for (int32_t i = 0; i < ns; i++) if (s[i].alive) push(ctx, s[i].id);
    if (s != stack_s) free(s);
    if (h != stack_h) free(h);
    return 0;
}
