/* tok_regex.c: the small regular-expression subset that tokenizer.json
 * patterns use in Replace normalizers and Split pre-tokenizers (see tok.h),
 * matched over code points by backtracking, leftmost match, alternatives
 * tried in order, greedy quantifiers: what Oniguruma (HF's engine) does for
 * these patterns. Anything else is refused at load with the pattern named,
 * so that no pattern is silently matched differently. */
#include "tok.h"

#include <stdlib.h>
#include <string.h>

typedef enum { RX_LIT, RX_ANY, RX_SPACE, RX_NSPACE, RX_SET, RX_BEGIN, RX_END } rx_kind;

typedef struct rx_atom {
    rx_kind kind;
    uint32_t c;              /* RX_LIT */
    uint32_t (*ranges)[2];   /* RX_SET: [lo, hi] pairs */
    int n_ranges, negate;
    int min, max;            /* repetitions; max -1: unbounded */
} rx_atom;

struct tok_regex {
    rx_atom *atoms;
    int n_atoms;
    int *alt_start;          /* alternative k is atoms[alt_start[k] .. alt_start[k+1]) */
    int n_alts;
};

void tok_regex_free(tok_regex *re) {
    if (!re) return;
    for (int i = 0; i < re->n_atoms; i++) free(re->atoms[i].ranges);
    free(re->atoms);
    free(re->alt_start);
    free(re);
}

/* One UTF-8 code point of the pattern at *p (advanced). */
static uint32_t pat_next(const unsigned char **p) {
    unsigned c = **p;
    size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (strnlen((const char *)*p, len) < len) len = 1;
    uint32_t cp[4];
    tok_utf8_decode(*p, len, cp);   /* JSON strings are valid UTF-8 */
    *p += len;
    return cp[0];
}

static int is_meta(uint32_t c) { return c && strchr("\\^$.|?*+()[]{}", (int)c) != NULL; }

tok_regex *tok_regex_new(const char *pattern, const char *where, cb_err *err) {
    tok_regex *re = cb_calloc(1, sizeof *re, "a regular expression", err);
    size_t cap = strlen(pattern) + 2;
    if (re) re->atoms = cb_calloc(cap, sizeof *re->atoms, "a regular expression", err);
    if (re && re->atoms) re->alt_start = cb_calloc(cap + 1, sizeof *re->alt_start, "a regular expression", err);
    if (!re || !re->atoms || !re->alt_start) {
        tok_regex_free(re);
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)pattern;
    const char *why = NULL;
    re->alt_start[re->n_alts++] = 0;
    while (*p && !why) {
        if (*p == '|') {
            p++;
            re->alt_start[re->n_alts++] = re->n_atoms;
            continue;
        }
        rx_atom *a = &re->atoms[re->n_atoms];
        memset(a, 0, sizeof *a);
        a->min = a->max = 1;
        if (*p == '\\') {
            p++;
            if (!*p) { why = "a trailing backslash"; break; }
            uint32_t e = pat_next(&p);
            switch (e) {
            case 's': a->kind = RX_SPACE; break;
            case 'S': a->kind = RX_NSPACE; break;
            case 'A': a->kind = RX_BEGIN; break;
            case 'z': a->kind = RX_END; break;
            case 'n': a->kind = RX_LIT; a->c = '\n'; break;
            case 't': a->kind = RX_LIT; a->c = '\t'; break;
            case 'r': a->kind = RX_LIT; a->c = '\r'; break;
            default:
                if (e < 0x80 && !is_meta(e) && e != ' ' && e != '-' && e != '/' && e != '\'' && e != '"') {
                    why = "an escape other than \\s \\S \\A \\z \\n \\t \\r";
                    break;
                }
                a->kind = RX_LIT;
                a->c = e;
            }
        } else if (*p == '.') {
            p++;
            a->kind = RX_ANY;
        } else if (*p == '[') {
            p++;
            a->kind = RX_SET;
            if (*p == '^') { a->negate = 1; p++; }
            a->ranges = cb_calloc(strlen((const char *)p) + 1, sizeof *a->ranges, "a regular expression", err);
            if (!a->ranges) { tok_regex_free(re); return NULL; }
            int first = 1;
            while (*p && (*p != ']' || first)) {
                first = 0;
                uint32_t lo;
                if (*p == '\\') {
                    p++;
                    if (!*p || (*p < 0x80 && !is_meta(*p) && *p != '-')) { why = "an escape inside [...]"; break; }
                    lo = pat_next(&p);
                } else if (*p == '[') {
                    why = "a nested [ in a set"; break;
                } else {
                    lo = pat_next(&p);
                }
                uint32_t hi = lo;
                if (*p == '-' && p[1] && p[1] != ']') {
                    p++;
                    if (*p == '\\' || *p == '[') { why = "an escape in a range"; break; }
                    hi = pat_next(&p);
                }
                a->ranges[a->n_ranges][0] = lo;
                a->ranges[a->n_ranges][1] = hi;
                a->n_ranges++;
            }
            if (!why && *p != ']') why = "an unterminated [";
            if (!why) p++;
        } else if (*p == '^' || *p == '$') {
            why = "^ or $ (line anchors in Oniguruma; \\A and \\z are supported)";
        } else if (*p == '(' || *p == ')') {
            why = "a group";
        } else if (*p == '?' || *p == '*' || *p == '+' || *p == '{') {
            why = "a quantifier with nothing to repeat";
        } else {
            a->kind = RX_LIT;
            a->c = pat_next(&p);
        }
        if (why) break;
        /* quantifier */
        if (*p == '?' || *p == '*' || *p == '+') {
            a->min = *p == '+';
            a->max = *p == '?' ? 1 : -1;
            p++;
        } else if (*p == '{') {
            char *end;
            long lo = strtol((const char *)p + 1, &end, 10), hi = lo;
            if (end == (const char *)p + 1) { why = "a { that is not a {n}, {n,} or {n,m} quantifier"; break; }
            if (*end == ',') {
                if (end[1] == '}') { hi = -1; end++; }
                else { hi = strtol(end + 1, &end, 10); }
            }
            if (*end != '}' || lo < 0 || lo > 100000 || (hi >= 0 && hi < lo)) { why = "a malformed {n,m}"; break; }
            a->min = (int)lo;
            a->max = (int)hi;
            p = (const unsigned char *)end + 1;
        }
        if (*p == '?' || *p == '+') { why = "a lazy or possessive quantifier"; break; }
        if ((a->kind == RX_BEGIN || a->kind == RX_END) && (a->min != 1 || a->max != 1)) {
            why = "a quantified anchor";
            break;
        }
        re->n_atoms++;
    }
    if (why) {
        cb_err_set(err, "%s: regex pattern '%s' is not supported: it uses %s", where, pattern, why);
        free(re->atoms[re->n_atoms].ranges);   /* the atom that failed is not counted yet */
        tok_regex_free(re);
        return NULL;
    }
    re->alt_start[re->n_alts] = re->n_atoms;
    return re;
}

static int atom_one(const rx_atom *a, uint32_t c) {
    switch (a->kind) {
    case RX_LIT: return c == a->c;
    case RX_ANY: return c != '\n';
    case RX_SPACE: return tok_is_whitespace(c);
    case RX_NSPACE: return !tok_is_whitespace(c);
    case RX_SET: {
        int in = 0;
        for (int i = 0; i < a->n_ranges && !in; i++) in = c >= a->ranges[i][0] && c <= a->ranges[i][1];
        return in != a->negate;
    }
    default: return 0;
    }
}

/* End of a match of atoms[i..end) at pos, or -1. */
static long match_at(const tok_regex *re, int i, int end, const uint32_t *s, size_t n, size_t pos) {
    if (i == end) return (long)pos;
    const rx_atom *a = &re->atoms[i];
    if (a->kind == RX_BEGIN) return pos == 0 ? match_at(re, i + 1, end, s, n, pos) : -1;
    if (a->kind == RX_END) return pos == n ? match_at(re, i + 1, end, s, n, pos) : -1;
    size_t k = 0;
    while (pos + k < n && (a->max < 0 || k < (size_t)a->max) && atom_one(a, s[pos + k])) k++;
    for (;; k--) {
        if (k < (size_t)a->min) return -1;
        long r = match_at(re, i + 1, end, s, n, pos + k);
        if (r >= 0) return r;
        if (k == 0) return -1;
    }
}

int tok_regex_find(const tok_regex *re, const uint32_t *s, size_t n, size_t from, size_t *ms, size_t *me) {
    for (size_t pos = from; pos <= n; pos++) {
        for (int k = 0; k < re->n_alts; k++) {
            long r = match_at(re, re->alt_start[k], re->alt_start[k + 1], s, n, pos);
            if (r >= 0) {
                *ms = pos;
                *me = (size_t)r;
                return 1;
            }
        }
    }
    return 0;
}
