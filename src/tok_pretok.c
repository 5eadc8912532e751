/* tok_pretok.c: the pre-tokenizers of tokenizer.json beside BERT's (see
 * tok.h): Sequence, Metaspace, WhitespaceSplit, ByteLevel (with the GPT-2
 * split), Split (the GPT-2 pattern, another regex of tok_regex.c's subset,
 * or a string), as Hugging Face `tokenizers` defines them. A text becomes
 * a list of splits; each pre-tokenizer of a Sequence splits every split of
 * the one before; empty splits are dropped.
 *
 * The GPT-2 regex
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * is matched by hand (gpt2_match), with utf8proc's categories. */
#include "tok.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ---------------------------------------------------------------------------
 * Loading. */

static int pre_add(tok_pretokenizer *pt, tok_pre **out, cb_err *err) {
    tok_pre *ops = cb_realloc(pt->ops, (size_t)(pt->n_ops + 1) * sizeof *ops, "a pre-tokenizer", err);
    if (!ops) return -1;
    pt->ops = ops;
    *out = &ops[pt->n_ops++];
    memset(*out, 0, sizeof **out);
    return 0;
}

static int json_flag(json_t *o, const char *key, int dflt) {
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static int pre_load_one(tok_pretokenizer *pt, json_t *j, const char *path, int depth, cb_err *err) {
    json_t *jt = json_object_get(j, "type");
    const char *type = json_is_string(jt) ? json_string_value(jt) : NULL;
    if (!type) return cb_err_set(err, "%s: a pre_tokenizer without a \"type\"", path);
    tok_pre *op;
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(j, "pretokenizers");
        if (!json_is_array(list) || depth > 8)
            return cb_err_set(err, "%s: pre_tokenizer Sequence without a \"pretokenizers\" list", path);
        size_t i;
        json_t *x;
        json_array_foreach(list, i, x) if (pre_load_one(pt, x, path, depth + 1, err)) return -1;
        return 0;
    }
    if (!strcmp(type, "WhitespaceSplit")) {
        if (pre_add(pt, &op, err)) return -1;
        op->kind = TOK_PRE_WHITESPACE_SPLIT;
        return 0;
    }
    if (!strcmp(type, "Metaspace")) {
        json_t *r = json_object_get(j, "replacement");
        uint32_t rep[4];
        if (!json_is_string(r) || json_string_length(r) > 4 ||
            tok_utf8_decode((const unsigned char *)json_string_value(r), json_string_length(r), rep) != 1)
            return cb_err_set(err, "%s: pre_tokenizer Metaspace: \"replacement\" must be one character", path);
        if (pre_add(pt, &op, err)) return -1;
        op->kind = TOK_PRE_METASPACE;
        op->replacement = rep[0];
        op->split = json_flag(j, "split", 1);
        json_t *ps = json_object_get(j, "prepend_scheme");
        if (json_is_string(ps)) {
            const char *s = json_string_value(ps);
            if (!strcmp(s, "always")) op->prepend_scheme = TOK_PREPEND_ALWAYS;
            else if (!strcmp(s, "first")) op->prepend_scheme = TOK_PREPEND_FIRST;
            else if (!strcmp(s, "never")) op->prepend_scheme = TOK_PREPEND_NEVER;
            else return cb_err_set(err, "%s: pre_tokenizer Metaspace: prepend_scheme '%s' is not one of always, "
                                        "first, never", path, s);
        } else {   /* older files: add_prefix_space */
            op->prepend_scheme = json_flag(j, "add_prefix_space", 1) ? TOK_PREPEND_ALWAYS : TOK_PREPEND_NEVER;
        }
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) {
        if (pre_add(pt, &op, err)) return -1;
        op->kind = TOK_PRE_BYTELEVEL;
        op->add_prefix_space = json_flag(j, "add_prefix_space", 1);
        op->use_regex = json_flag(j, "use_regex", 1);
        return 0;
    }
    if (!strcmp(type, "Split")) {
        json_t *pat = json_object_get(j, "pattern"), *beh = json_object_get(j, "behavior");
        json_t *ps = json_object_get(pat, "String"), *pr = json_object_get(pat, "Regex");
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        int b = -1;
        for (int i = 0; i < 5 && json_is_string(beh); i++) if (!strcmp(json_string_value(beh), names[i])) b = i;
        if (b < 0 || !(json_is_string(ps) || json_is_string(pr)))
            return cb_err_set(err, "%s: pre_tokenizer Split needs \"pattern\" {\"String\" or \"Regex\"} and a "
                                   "\"behavior\" (Removed, Isolated, MergedWithPrevious, MergedWithNext, "
                                   "Contiguous)", path);
        if (pre_add(pt, &op, err)) return -1;
        op->kind = TOK_PRE_SPLIT;
        op->behavior = b;
        op->invert = json_flag(j, "invert", 0);
        if (json_is_string(ps)) {
            size_t len = json_string_length(ps);
            if (!len) return cb_err_set(err, "%s: pre_tokenizer Split with an empty pattern", path);
            if (!(op->lit = cb_malloc((len + 1) * sizeof *op->lit, "a pre-tokenizer", err))) return -1;
            op->n_lit = tok_utf8_decode((const unsigned char *)json_string_value(ps), len, op->lit);
            return 0;
        }
        if (!strcmp(json_string_value(pr), GPT2_PATTERN)) {
            op->gpt2 = 1;
            return 0;
        }
        char where[600];
        snprintf(where, sizeof where, "%.500s: pre_tokenizer Split", path);
        return (op->re = tok_regex_new(json_string_value(pr), where, err)) ? 0 : -1;
    }
    return cb_err_set(err, "%s: pre_tokenizer type '%s' is not supported (supported: BertPreTokenizer with "
                           "WordPiece; Sequence, Metaspace, WhitespaceSplit, ByteLevel, Split)", path, type);
}

int tok_pretokenizer_load(tok_pretokenizer *pt, json_t *j, const char *path, cb_err *err) {
    memset(pt, 0, sizeof *pt);
    if (!j || json_is_null(j)) return 0;
    if (!json_is_object(j)) return cb_err_set(err, "%s: \"pre_tokenizer\" is not an object", path);
    return pre_load_one(pt, j, path, 0, err);
}

void tok_pretokenizer_free(tok_pretokenizer *pt) {
    for (int i = 0; i < pt->n_ops; i++) {
        tok_regex_free(pt->ops[i].re);
        free(pt->ops[i].lit);
    }
    free(pt->ops);
    memset(pt, 0, sizeof *pt);
}

/* ---------------------------------------------------------------------------
 * Split lists. */

void tok_splits_free(tok_splits *s) {
    free(s->cps.p);
    free(s->off);
    free(s->len);
    free(s->first);
    memset(s, 0, sizeof *s);
}

static void splits_reset(tok_splits *s) {
    s->n = 0;
    s->cps.n = 0;
}

/* Append a split with code points c[0..n) (empty ones are dropped). */
static int splits_add(tok_splits *s, const uint32_t *c, size_t n, int first) {
    if (n == 0) return 0;
    if (s->n == s->cap) {
        size_t cap = 2 * s->cap + 16;
        size_t *off = realloc(s->off, cap * sizeof *off);
        if (off) s->off = off;
        size_t *len = realloc(s->len, cap * sizeof *len);
        if (len) s->len = len;
        uint8_t *fi = realloc(s->first, cap);
        if (fi) s->first = fi;
        if (!off || !len || !fi) return -1;
        s->cap = cap;
    }
    s->off[s->n] = s->cps.n;
    s->len[s->n] = n;
    s->first[s->n] = (uint8_t)first;
    s->n++;
    return tok_cps_append(&s->cps, c, n);
}

/* ---------------------------------------------------------------------------
 * Patterns: the segments of a text, each a match of the pattern or not. */

static inline int is_letter(uint32_t c) {
    if (c < 0x80) return (c | 32) >= 'a' && (c | 32) <= 'z';
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
}

static inline int is_number(uint32_t c) {
    if (c < 0x80) return c >= '0' && c <= '9';
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO;
}

/* End of the GPT-2 regex's match at s[i] (it matches at every position). */
static size_t gpt2_match(const uint32_t *s, size_t n, size_t i) {
    uint32_t c = s[i];
    if (c == '\'' && i + 1 < n) {
        uint32_t a = s[i + 1], b = i + 2 < n ? s[i + 2] : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
    size_t j = i + (c == ' ' && i + 1 < n);  /* the optional leading space */
    uint32_t d = s[j];
    if (j == i || !tok_is_whitespace(d)) {
        if (is_letter(d)) {
            while (j < n && is_letter(s[j])) j++;
            return j;
        }
        if (is_number(d)) {
            while (j < n && is_number(s[j])) j++;
            return j;
        }
        if (!tok_is_whitespace(d)) {
            while (j < n && !tok_is_whitespace(s[j]) && !is_letter(s[j]) && !is_number(s[j])) j++;
            return j;
        }
    }
    /* whitespace: \s+(?!\S), else \s+ */
    j = i;
    while (j < n && tok_is_whitespace(s[j])) j++;
    if (j < n && j - i > 1) return j - 1;
    return j;
}

/* Next match of op's pattern in s[from..n): 1 and [*ms, *me), or 0. */
static int pattern_find(const tok_pre *op, const uint32_t *s, size_t n, size_t from, size_t *ms, size_t *me) {
    if (from >= n) return 0;
    switch (op->kind) {
    case TOK_PRE_METASPACE:
        for (size_t i = from; i < n; i++) if (s[i] == op->replacement) { *ms = i; *me = i + 1; return 1; }
        return 0;
    case TOK_PRE_WHITESPACE_SPLIT:
        for (size_t i = from; i < n; i++) if (tok_is_whitespace(s[i])) { *ms = i; *me = i + 1; return 1; }
        return 0;
    case TOK_PRE_BYTELEVEL:
        *ms = from;
        *me = gpt2_match(s, n, from);
        return 1;
    case TOK_PRE_SPLIT:
        if (op->gpt2) {
            *ms = from;
            *me = gpt2_match(s, n, from);
            return 1;
        }
        if (op->re) {
            while (tok_regex_find(op->re, s, n, from, ms, me)) {
                if (*me > *ms) return 1;
                if (++from >= n) return 0;   /* empty matches split nothing */
            }
            return 0;
        }
        for (size_t i = from; i + op->n_lit <= n; i++)
            if (!memcmp(s + i, op->lit, op->n_lit * sizeof *s)) { *ms = i; *me = i + op->n_lit; return 1; }
        return 0;
    }
    return 0;
}

/* Split s[0..n) by op's pattern with `behavior` into out, as HF's
 * NormalizedString::split does. */
static int split_by(const tok_pre *op, int behavior, int invert, const uint32_t *s, size_t n, int first,
                    tok_splits *out) {
    /* segments: [start, end) with is_match; built in a small growable array */
    size_t cap = 16, m = 0;
    struct seg { size_t a, b; int match; } *seg = malloc(cap * sizeof *seg), *tmp;
    if (!seg) return -1;
    size_t pos = 0, ms, me;
    while (pos < n) {
        int found = pattern_find(op, s, n, pos, &ms, &me);
        if (!found) ms = me = n;
        if (m + 2 > cap) {
            cap *= 2;
            if (!(tmp = realloc(seg, cap * sizeof *seg))) { free(seg); return -1; }
            seg = tmp;
        }
        if (ms > pos) seg[m++] = (struct seg){pos, ms, invert};
        if (me > ms) seg[m++] = (struct seg){ms, me, !invert};
        pos = me;
    }
    /* merge by behavior, in place */
    size_t k = 0;
    if (behavior == TOK_SPLIT_MERGED_NEXT) {
        /* right to left: a match joins the piece after it */
        int prev_match = 0;
        size_t w = m;
        for (size_t i = m; i-- > 0;) {
            int mt = seg[i].match;
            if (mt && !prev_match && w < m) {
                seg[w].a = seg[i].a;
            } else {
                seg[--w] = seg[i];
            }
            prev_match = mt;
        }
        memmove(seg, seg + w, (m - w) * sizeof *seg);
        k = m - w;
    } else {
        int prev_match = 0;
        for (size_t i = 0; i < m; i++) {
            int mt = seg[i].match;
            if (behavior == TOK_SPLIT_REMOVED) {
                if (!mt) seg[k++] = seg[i];
            } else if (behavior == TOK_SPLIT_MERGED_PREV && mt && !prev_match && k > 0) {
                seg[k - 1].b = seg[i].b;
            } else if (behavior == TOK_SPLIT_CONTIGUOUS && mt && prev_match && k > 0) {
                seg[k - 1].b = seg[i].b;
            } else {
                seg[k++] = seg[i];
            }
            prev_match = mt;
        }
    }
    int rc = 0;
    for (size_t i = 0; i < k && !rc; i++) rc = splits_add(out, s + seg[i].a, seg[i].b - seg[i].a, first && seg[i].a == 0);
    free(seg);
    return rc;
}

/* The GPT-2 byte -> printable character map of ByteLevel. */
static uint32_t byte_char(unsigned b) {
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE)) return b;
    /* the others, in byte order, become 256, 257, ... */
    unsigned k = b <= 0x20 ? b : b <= 0xA0 ? 33 + (b - 0x7F) : 33 + 34 + (b - 0xAD);
    return 256 + k;
}

/* One pre-tokenizer over every split of in into out. */
static int pretok_one(const tok_pre *op, const tok_splits *in, tok_splits *out) {
    splits_reset(out);
    tok_cps buf = {0};
    int rc = 0;
    for (size_t i = 0; i < in->n && !rc; i++) {
        const uint32_t *s = in->cps.p + in->off[i];
        size_t n = in->len[i];
        int first = in->first[i];
        buf.n = 0;
        switch (op->kind) {
        case TOK_PRE_METASPACE: {
            int pre = n && s[0] != op->replacement && s[0] != ' ' &&
                      (op->prepend_scheme == TOK_PREPEND_ALWAYS || (op->prepend_scheme == TOK_PREPEND_FIRST && first));
            if (pre) rc = tok_cps_push(&buf, op->replacement);
            for (size_t k = 0; k < n && !rc; k++) rc = tok_cps_push(&buf, s[k] == ' ' ? op->replacement : s[k]);
            if (rc) break;
            if (op->split) rc = split_by(op, TOK_SPLIT_MERGED_NEXT, 0, buf.p, buf.n, first, out);
            else rc = splits_add(out, buf.p, buf.n, first);
            break;
        }
        case TOK_PRE_WHITESPACE_SPLIT:
            rc = split_by(op, TOK_SPLIT_REMOVED, 0, s, n, first, out);
            break;
        case TOK_PRE_SPLIT:
            rc = split_by(op, op->behavior, op->invert, s, n, first, out);
            break;
        case TOK_PRE_BYTELEVEL: {
            if (op->add_prefix_space && n && s[0] != ' ') rc = tok_cps_push(&buf, ' ');
            if (!rc) rc = tok_cps_append(&buf, s, n);
            if (rc) break;
            size_t start = out->n;
            if (op->use_regex) rc = split_by(op, TOK_SPLIT_ISOLATED, 0, buf.p, buf.n, first, out);
            else rc = splits_add(out, buf.p, buf.n, first);
            /* each new split's characters -> the characters of their UTF-8 bytes */
            for (size_t k = start; k < out->n && !rc; k++) {
                tok_cps mapped = {0};
                for (size_t q = 0; q < out->len[k] && !rc; q++) {
                    char u[4];
                    int len = tok_utf8_put(u, out->cps.p[out->off[k] + q]);
                    for (int b = 0; b < len && !rc; b++) rc = tok_cps_push(&mapped, byte_char((unsigned char)u[b]));
                }
                if (!rc) {
                    /* mapped splits go after the current end; fix the split's range */
                    out->off[k] = out->cps.n;
                    out->len[k] = mapped.n;
                    rc = tok_cps_append(&out->cps, mapped.p, mapped.n);
                }
                free(mapped.p);
            }
            break;
        }
        }
    }
    free(buf.p);
    return rc;
}

int tok_pretokenize(const tok_pretokenizer *pt, const uint32_t *in, size_t n, int first, tok_splits *out,
                    tok_splits *tmp) {
    splits_reset(out);
    if (splits_add(out, in, n, first)) return -1;
    for (int i = 0; i < pt->n_ops; i++) {
        tok_splits t = *out;
        *out = *tmp;
        *tmp = t;
        if (pretok_one(&pt->ops[i], tmp, out)) return -1;
    }
    return 0;
}
