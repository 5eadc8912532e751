/* tok_normalize.c: the normalizers of tokenizer.json beside BERT's (see
 * tok.h): Sequence, Precompiled (tok_precompiled.c), Replace, NFC, NFD,
 * NFKC, NFKD, Nmt, Strip, Lowercase, Prepend, as Hugging Face `tokenizers`
 * defines them, over code points. Unicode data comes from utf8proc (HF uses
 * the Rust crates' tables: characters newer than either differ). */
#include "tok.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static uint32_t *json_cps(json_t *s, size_t *n, cb_err *err) {
    const char *v = json_string_value(s);
    size_t len = json_string_length(s);
    uint32_t *p = cb_malloc((len + 1) * sizeof *p, "a normalizer", err);
    if (p) *n = tok_utf8_decode((const unsigned char *)v, len, p);
    return p;
}

/* ---------------------------------------------------------------------------
 * Loading. */

static const char *norm_type(json_t *o) {
    json_t *t = json_object_get(o, "type");
    return json_is_string(t) ? json_string_value(t) : NULL;
}

static int norm_add(tok_normalizer *nz, tok_norm **out, cb_err *err) {
    tok_norm *ops = cb_realloc(nz->ops, (size_t)(nz->n_ops + 1) * sizeof *ops, "a normalizer", err);
    if (!ops) return -1;
    nz->ops = ops;
    *out = &ops[nz->n_ops++];
    memset(*out, 0, sizeof **out);
    return 0;
}

static int norm_load_one(tok_normalizer *nz, json_t *j, const char *path, int depth, cb_err *err) {
    const char *type = norm_type(j);
    if (!type) return cb_err_set(err, "%s: a normalizer without a \"type\"", path);
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(j, "normalizers");
        if (!json_is_array(list) || depth > 8)
            return cb_err_set(err, "%s: normalizer Sequence without a \"normalizers\" list", path);
        size_t i;
        json_t *x;
        json_array_foreach(list, i, x) if (norm_load_one(nz, x, path, depth + 1, err)) return -1;
        return 0;
    }
    static const struct { const char *name; tok_norm_kind kind; } simple[] = {
        {"NFC", TOK_NORM_NFC}, {"NFD", TOK_NORM_NFD}, {"NFKC", TOK_NORM_NFKC}, {"NFKD", TOK_NORM_NFKD},
        {"Nmt", TOK_NORM_NMT}, {"Lowercase", TOK_NORM_LOWERCASE}};
    tok_norm *op;
    for (size_t i = 0; i < sizeof simple / sizeof *simple; i++) {
        if (strcmp(type, simple[i].name)) continue;
        if (norm_add(nz, &op, err)) return -1;
        op->kind = simple[i].kind;
        return 0;
    }
    if (!strcmp(type, "Strip")) {
        if (norm_add(nz, &op, err)) return -1;
        op->kind = TOK_NORM_STRIP;
        op->left = json_is_true(json_object_get(j, "strip_left"));
        op->right = json_is_true(json_object_get(j, "strip_right"));
        return 0;
    }
    if (!strcmp(type, "Prepend")) {
        json_t *p = json_object_get(j, "prepend");
        if (!json_is_string(p)) return cb_err_set(err, "%s: normalizer Prepend without a \"prepend\" string", path);
        if (norm_add(nz, &op, err)) return -1;
        op->kind = TOK_NORM_PREPEND;
        return (op->content = json_cps(p, &op->n_content, err)) ? 0 : -1;
    }
    if (!strcmp(type, "Replace")) {
        json_t *pat = json_object_get(j, "pattern"), *c = json_object_get(j, "content");
        json_t *ps = json_object_get(pat, "String"), *pr = json_object_get(pat, "Regex");
        if (!json_is_string(c) || !(json_is_string(ps) || json_is_string(pr)))
            return cb_err_set(err, "%s: normalizer Replace needs \"pattern\" {\"String\" or \"Regex\"} and "
                                   "\"content\"", path);
        if (norm_add(nz, &op, err)) return -1;
        op->kind = TOK_NORM_REPLACE;
        if (!(op->content = json_cps(c, &op->n_content, err))) return -1;
        if (json_is_string(ps)) {
            if (!(op->lit = json_cps(ps, &op->n_lit, err))) return -1;
            if (!op->n_lit) return cb_err_set(err, "%s: normalizer Replace with an empty pattern", path);
            return 0;
        }
        char where[600];
        snprintf(where, sizeof where, "%.500s: normalizer Replace", path);
        return (op->re = tok_regex_new(json_string_value(pr), where, err)) ? 0 : -1;
    }
    if (!strcmp(type, "Precompiled")) {
        json_t *m = json_object_get(j, "precompiled_charsmap");
        if (norm_add(nz, &op, err)) return -1;
        op->kind = TOK_NORM_PRECOMPILED;
        if (json_is_null(m) || !m || (json_is_string(m) && !json_string_length(m))) return 0;
        if (!json_is_string(m))
            return cb_err_set(err, "%s: normalizer Precompiled: precompiled_charsmap is not a string", path);
        return (op->pc = tok_precompiled_new(json_string_value(m), path, err)) ? 0 : -1;
    }
    return cb_err_set(err, "%s: normalizer type '%s' is not supported (supported: BertNormalizer, Sequence, "
                           "Precompiled, Replace, NFC, NFD, NFKC, NFKD, Nmt, Strip, Lowercase, Prepend)", path, type);
}

int tok_normalizer_load(tok_normalizer *nz, json_t *j, const char *path, cb_err *err) {
    memset(nz, 0, sizeof *nz);
    if (!j || json_is_null(j)) return 0;
    if (!json_is_object(j)) return cb_err_set(err, "%s: \"normalizer\" is not an object", path);
    return norm_load_one(nz, j, path, 0, err);
}

void tok_normalizer_free(tok_normalizer *nz) {
    for (int i = 0; i < nz->n_ops; i++) {
        tok_norm *op = &nz->ops[i];
        free(op->lit);
        free(op->content);
        tok_regex_free(op->re);
        tok_precompiled_free(op->pc);
    }
    free(nz->ops);
    memset(nz, 0, sizeof *nz);
}

/* ---------------------------------------------------------------------------
 * Applying. */

static int apply_unicode(const uint32_t *in, size_t n, tok_cps *out, int opts) {
    utf8proc_int32_t d[64];
    int bound = 0;
    for (size_t i = 0; i < n; i++) {
        utf8proc_ssize_t nd = utf8proc_decompose_char((utf8proc_int32_t)in[i], d, 64, (utf8proc_option_t)opts,
                                                      &bound);
        if (nd < 1 || nd > 64) { d[0] = (utf8proc_int32_t)in[i]; nd = 1; }
        for (utf8proc_ssize_t k = 0; k < nd; k++)
            if (tok_cps_push(out, (uint32_t)d[k])) return -1;
    }
    /* canonical ordering: stable sort of each run of non-starters by class */
    uint32_t *p = out->p;
    for (size_t i = 1; i < out->n; i++) {
        int cc = utf8proc_get_property((utf8proc_int32_t)p[i])->combining_class;
        if (cc == 0) continue;
        size_t j = i;
        uint32_t c = p[i];
        while (j > 0) {
            int pc = utf8proc_get_property((utf8proc_int32_t)p[j - 1])->combining_class;
            if (pc <= cc) break;
            p[j] = p[j - 1];
            j--;
        }
        p[j] = c;
    }
    if (!(opts & UTF8PROC_COMPOSE)) return 0;
    utf8proc_ssize_t r = utf8proc_normalize_utf32((utf8proc_int32_t *)out->p, (utf8proc_ssize_t)out->n,
                                                  (utf8proc_option_t)opts);
    if (r < 0) return -1;
    out->n = (size_t)r;
    return 0;
}

static int apply_op(const tok_norm *op, const uint32_t *in, size_t n, tok_cps *out) {
    switch (op->kind) {
    case TOK_NORM_PRECOMPILED:
        return op->pc ? tok_precompiled_apply(op->pc, in, n, out) : tok_cps_append(out, in, n);
    case TOK_NORM_NFC: return apply_unicode(in, n, out, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    case TOK_NORM_NFD: return apply_unicode(in, n, out, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
    case TOK_NORM_NFKC: return apply_unicode(in, n, out, UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
    case TOK_NORM_NFKD: return apply_unicode(in, n, out, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
    case TOK_NORM_NMT:
        /* sentencepiece's nmt_nfkc pre-rules: drop some controls, map
         * others and a few separators to a space */
        for (size_t i = 0; i < n; i++) {
            uint32_t c = in[i];
            if ((c >= 1 && c <= 8) || c == 0xB || (c >= 0xE && c <= 0x1F) || c == 0x7F || c == 0x8F || c == 0x9F)
                continue;
            if (c == 9 || c == 0xA || c == 0xC || c == 0xD || c == 0x1680 || (c >= 0x200B && c <= 0x200F) ||
                c == 0x2028 || c == 0x2029 || c == 0x2581 || c == 0xFEFF || c == 0xFFFD)
                c = ' ';
            if (tok_cps_push(out, c)) return -1;
        }
        return 0;
    case TOK_NORM_STRIP: {
        size_t a = 0, b = n;
        if (op->left) while (a < b && tok_is_whitespace(in[a])) a++;
        if (op->right) while (b > a && tok_is_whitespace(in[b - 1])) b--;
        return tok_cps_append(out, in + a, b - a);
    }
    case TOK_NORM_LOWERCASE:
        /* Rust's char::to_lowercase: U+0130 is the one two-character case */
        for (size_t i = 0; i < n; i++) {
            uint32_t c = in[i];
            if (c == 0x130) {
                if (tok_cps_push(out, 'i')) return -1;
                c = 0x307;
            } else {
                c = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
            }
            if (tok_cps_push(out, c)) return -1;
        }
        return 0;
    case TOK_NORM_PREPEND:
        if (n && tok_cps_append(out, op->content, op->n_content)) return -1;
        return tok_cps_append(out, in, n);
    case TOK_NORM_REPLACE: {
        size_t pos = 0, ms, me;
        for (;;) {
            int found;
            if (op->re) {
                found = tok_regex_find(op->re, in, n, pos, &ms, &me);
                /* an empty match replaces nothing: look further */
                while (found && me == ms && ms < n) found = tok_regex_find(op->re, in, n, ms + 1, &ms, &me);
                if (found && me == ms) found = 0;
            } else {
                found = 0;
                for (size_t i = pos; i + op->n_lit <= n && !found; i++)
                    if (in[i] == op->lit[0] && !memcmp(in + i, op->lit, op->n_lit * sizeof *in)) {
                        found = 1;
                        ms = i;
                        me = i + op->n_lit;
                    }
            }
            if (!found) break;
            if (tok_cps_append(out, in + pos, ms - pos) || tok_cps_append(out, op->content, op->n_content))
                return -1;
            pos = me;
        }
        return tok_cps_append(out, in + pos, n - pos);
    }
    }
    return -1;
}

int tok_normalizer_apply(const tok_normalizer *nz, const uint32_t *in, size_t n, tok_cps *out) {
    out->n = 0;
    if (nz->n_ops == 0) return tok_cps_append(out, in, n);
    tok_cps tmp = {0};
    const uint32_t *src = in;
    size_t n_src = n;
    int rc = 0;
    /* ping-pong between out and tmp so that the last op writes to out */
    for (int i = 0; i < nz->n_ops && !rc; i++) {
        tok_cps *dst = ((nz->n_ops - 1 - i) % 2 == 0) ? out : &tmp;
        dst->n = 0;
        rc = apply_op(&nz->ops[i], src, n_src, dst);
        static const uint32_t none[1];   /* an op that wrote nothing left dst->p NULL */
        src = dst->p ? dst->p : none;
        n_src = dst->n;
    }
    free(tmp.p);
    return rc;
}
