/* data_json.c: the one-line JSON parser of data_json.h. Strings are
 * scanned for '"', '\\', control characters and non-ASCII bytes 32 (AVX2),
 * 16 (SSE2) or 8 (SWAR) bytes at a time, and decoded in place. */
#include "data.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX2__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

typedef struct jparser {
    data_json *j;
    char *p, *start, *end;
    cb_err *err;
    int depth;
} jparser;

static const char *found_desc(const jparser *jp, char *buf, size_t n) {
    if (jp->p >= jp->end) return "end of line";
    unsigned char c = (unsigned char)*jp->p;
    if (c >= 0x20 && c < 0x7f) snprintf(buf, n, "'%c'", c);
    else snprintf(buf, n, "byte 0x%02x", c);
    return buf;
}

static int jfail(jparser *jp, const char *expected) {
    char b[32];
    return cb_err_set(jp->err, "invalid JSON at column %zu: expected %s, found %s",
                      (size_t)(jp->p - jp->start) + 1, expected, found_desc(jp, b, sizeof b));
}

static void jws(jparser *jp) {
    while (jp->p < jp->end && (*jp->p == ' ' || *jp->p == '\t' || *jp->p == '\n' || *jp->p == '\r'))
        jp->p++;
}

/* A new node of type t: its index in *idx. Returns 0, or -1 with err when
 * out of memory. */
static int jnode(jparser *jp, dj_type t, size_t *idx) {
    data_json *j = jp->j;
    if (j->n == j->cap) {
        size_t cap = j->cap ? 2 * j->cap : 64;
        dj_node *nodes = cb_realloc(j->nodes, cap * sizeof *j->nodes, "the JSON nodes of a line", jp->err);
        if (!nodes) return -1;
        j->nodes = nodes;
        j->cap = cap;
    }
    dj_node *nd = &j->nodes[j->n];
    memset(nd, 0, sizeof *nd);
    nd->type = t;
    *idx = j->n++;
    return 0;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_u4(jparser *jp, char *q, unsigned *cp) {
    /* q points just past "\u" */
    if (jp->end - q < 4) return -1;
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval((unsigned char)q[k]);
        if (h < 0) return -1;
        v = v * 16 + (unsigned)h;
    }
    *cp = v;
    return 0;
}

static char *put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) *o++ = (char)cp;
    else if (cp < 0x800) {
        *o++ = (char)(0xc0 | (cp >> 6));
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xe0 | (cp >> 12));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *o++ = (char)(0xf0 | (cp >> 18));
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    }
    return o;
}

/* A byte in w that is '"', '\\', a control character or >= 0x80 (SWAR). */
static int has_special(uint64_t w) {
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
    uint64_t zq = (q - ones) & ~q & high;
    uint64_t zb = (b - ones) & ~b & high;
    uint64_t lt = (w - ones * 0x20) & ~w & high;   /* some byte < 0x20 */
    return (zq | zb | lt | (w & high)) != 0;
}

/* String at jp->p (on the opening quote); decodes in place. */
static int jstring(jparser *jp, size_t idx) {
    char *p = jp->p + 1, *o = NULL, *end = jp->end;
    char *s0 = p;
    for (;;) {
#ifdef __AVX2__
        while (end - p >= 32) {   /* as below, 32 bytes at a time */
            __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)p);
            __m256i m = _mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi8(v, _mm256_set1_epi8('"')),
                                                        _mm256_cmpeq_epi8(v, _mm256_set1_epi8('\\'))),
                                        _mm256_cmpgt_epi8(_mm256_set1_epi8(0x20), v));
            unsigned mask = (unsigned)_mm256_movemask_epi8(m);
            if (mask) {
                int k = __builtin_ctz(mask);
                if (o) { memmove(o, p, (size_t)k); o += k; }
                p += k;
                break;
            }
            if (o) { _mm256_storeu_si256((__m256i *)(void *)o, v); o += 32; }
            p += 32;
        }
#endif
#ifdef __SSE2__
        /* Plain ASCII, 16 bytes at a time: stop at '"', '\\', a control
         * character or a byte >= 0x80 (both < 0x20 as signed bytes). */
        while (end - p >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
            __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                                  _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
                                     _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
            unsigned mask = (unsigned)_mm_movemask_epi8(m);
            if (mask) {
                int k = __builtin_ctz(mask);
                if (o) { memmove(o, p, (size_t)k); o += k; }
                p += k;
                break;
            }
            if (o) { _mm_storeu_si128((__m128i *)(void *)o, v); o += 16; }
            p += 16;
        }
#endif
        while (end - p >= 8) {   /* plain ASCII, 8 bytes at a time */
            uint64_t w;
            memcpy(&w, p, 8);
            if (has_special(w)) break;
            if (o) { memcpy(o, &w, 8); o += 8; }
            p += 8;
        }
        if (p >= end) {
            jp->p = p;
            return jfail(jp, "'\"' closing the string");
        }
        unsigned char c = (unsigned char)*p;
        if (c == '"') break;
        if (c < 0x20) {
            jp->p = p;
            return jfail(jp, "a character of the string (control characters must be escaped)");
        }
        if (c >= 0x80) {
            size_t k = cb_data_utf8_seq((unsigned char *)p, (size_t)(end - p));
            if (!k)
                return cb_err_set(jp->err, "invalid UTF-8 at column %zu (byte 0x%02x)",
                                  (size_t)(p - jp->start) + 1, c);
            if (o) { memmove(o, p, k); o += k; }
            p += k;
            continue;
        }
        if (c != '\\') {
            if (o) *o++ = (char)c;
            p++;
            continue;
        }
        if (!o) o = p;   /* first escape: from here on we write behind p */
        if (end - p < 2) {
            jp->p = p + 1;
            return jfail(jp, "an escape character");
        }
        char e = p[1];
        p += 2;
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (read_u4(jp, p, &cp)) {
                jp->p = p;
                return jfail(jp, "4 hex digits after \\u");
            }
            p += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (end - p >= 6 && p[0] == '\\' && p[1] == 'u' && !read_u4(jp, p + 2, &lo) &&
                    lo >= 0xdc00 && lo <= 0xdfff) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    p += 6;
                } else {
                    return cb_err_set(jp->err, "invalid UTF-8 at column %zu: \\u%04x is an "
                                      "unpaired surrogate", (size_t)(p - jp->start) - 5, cp);
                }
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                return cb_err_set(jp->err, "invalid UTF-8 at column %zu: \\u%04x is an "
                                  "unpaired surrogate", (size_t)(p - jp->start) - 5, cp);
            }
            o = put_utf8(o, cp);
            break;
        }
        default:
            jp->p = p - 1;
            return jfail(jp, "an escape character (one of \"\\/bfnrtu)");
        }
    }
    dj_node *nd = &jp->j->nodes[idx];
    nd->s = s0;
    nd->len = (size_t)((o ? o : p) - s0);
    s0[nd->len] = '\0';   /* safe: at most the closing quote is overwritten */
    jp->p = p + 1;
    return 0;
}

static int jnumber(jparser *jp, size_t idx) {
    char *p = jp->p, *s0 = p;
    int is_int = 1;
    if (p < jp->end && *p == '-') p++;
    if (p < jp->end && *p == '0') p++;
    else if (p < jp->end && *p >= '1' && *p <= '9') while (p < jp->end && *p >= '0' && *p <= '9') p++;
    else { jp->p = p; return jfail(jp, "a digit"); }
    if (p < jp->end && *p == '.') {
        is_int = 0;
        p++;
        if (!(p < jp->end && *p >= '0' && *p <= '9')) { jp->p = p; return jfail(jp, "a digit after '.'"); }
        while (p < jp->end && *p >= '0' && *p <= '9') p++;
    }
    if (p < jp->end && (*p == 'e' || *p == 'E')) {
        is_int = 0;
        p++;
        if (p < jp->end && (*p == '+' || *p == '-')) p++;
        if (!(p < jp->end && *p >= '0' && *p <= '9')) { jp->p = p; return jfail(jp, "a digit in the exponent"); }
        while (p < jp->end && *p >= '0' && *p <= '9') p++;
    }
    dj_node *nd = &jp->j->nodes[idx];
    nd->s = s0;
    nd->len = (size_t)(p - s0);
    /* strtod needs a terminated copy (the line goes on after the number);
     * a number too long for the stack buffer (a hostile "1000...0") gets a
     * heap copy, so that its value is never that of a truncated prefix */
    char tmp[64], *t = tmp;
    if (nd->len >= sizeof tmp && !(t = malloc(nd->len + 1))) {
        jp->p = s0;
        return cb_err_set(jp->err, "out of memory: a number of %zu characters", nd->len);
    }
    memcpy(t, s0, nd->len);
    t[nd->len] = '\0';
    nd->num = strtod(t, NULL);
    if (is_int) {
        errno = 0;
        nd->i = strtoll(t, NULL, 10);
        nd->is_int = errno == 0;
    }
    if (t != tmp) free(t);
    jp->p = p;
    return 0;
}

static int jvalue(jparser *jp);

static int jvalue(jparser *jp) {
    jws(jp);
    if (jp->p >= jp->end) return jfail(jp, "a value");
    char c = *jp->p;
    size_t idx;
    if (c == '"') {
        if (jnode(jp, DJ_STRING, &idx) || jstring(jp, idx)) return -1;
    } else if (c == '[' || c == '{') {
        if (++jp->depth > 64) return cb_err_set(jp->err, "invalid JSON at column %zu: nested "
                                               "deeper than 64", (size_t)(jp->p - jp->start) + 1);
        int obj = c == '{';
        if (jnode(jp, obj ? DJ_OBJECT : DJ_ARRAY, &idx)) return -1;
        jp->p++;
        jws(jp);
        uint32_t count = 0;
        if (jp->p < jp->end && *jp->p == (obj ? '}' : ']')) {
            jp->p++;
        } else {
            for (;;) {
                if (obj) {
                    jws(jp);
                    if (jp->p >= jp->end || *jp->p != '"') return jfail(jp, "'\"' starting a key");
                    size_t k;
                    if (jnode(jp, DJ_STRING, &k) || jstring(jp, k)) return -1;
                    jp->j->nodes[k].next = (uint32_t)jp->j->n;
                    jws(jp);
                    if (jp->p >= jp->end || *jp->p != ':') return jfail(jp, "':'");
                    jp->p++;
                }
                if (jvalue(jp)) return -1;
                count++;
                jws(jp);
                if (jp->p < jp->end && *jp->p == ',') { jp->p++; continue; }
                if (jp->p < jp->end && *jp->p == (obj ? '}' : ']')) { jp->p++; break; }
                return jfail(jp, obj ? "',' or '}'" : "',' or ']'");
            }
        }
        jp->depth--;
        jp->j->nodes[idx].n = count;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        if (jnode(jp, DJ_NUMBER, &idx) || jnumber(jp, idx)) return -1;
    } else if (jp->end - jp->p >= 4 && !memcmp(jp->p, "true", 4)) {
        if (jnode(jp, DJ_TRUE, &idx)) return -1;
        jp->p += 4;
    } else if (jp->end - jp->p >= 5 && !memcmp(jp->p, "false", 5)) {
        if (jnode(jp, DJ_FALSE, &idx)) return -1;
        jp->p += 5;
    } else if (jp->end - jp->p >= 4 && !memcmp(jp->p, "null", 4)) {
        if (jnode(jp, DJ_NULL, &idx)) return -1;
        jp->p += 4;
    } else {
        return jfail(jp, "a value");
    }
    jp->j->nodes[idx].next = (uint32_t)jp->j->n;
    return 0;
}

int cb_data_json_parse(data_json *j, char *line, size_t len, cb_err *err) {
    jparser jp = {j, line, line, line + len, err, 0};
    j->n = 0;
    if (jvalue(&jp)) return -1;
    jws(&jp);
    if (jp.p < jp.end) return jfail(&jp, "end of line after the value");
    return 0;
}

void cb_data_json_free(data_json *j) {
    free(j->nodes);
    memset(j, 0, sizeof *j);
}

int64_t cb_data_json_get(const data_json *j, size_t obj, const char *key) {
    const dj_node *o = &j->nodes[obj];
    if (o->type != DJ_OBJECT) return -1;
    size_t klen = strlen(key), i = obj + 1;
    for (uint32_t m = 0; m < o->n; m++) {
        const dj_node *k = &j->nodes[i];
        size_t v = k->next;
        if (k->len == klen && !memcmp(k->s, key, klen)) return (int64_t)v;
        i = j->nodes[v].next;
    }
    return -1;
}

const char *cb_data_json_type_name(dj_type t) {
    switch (t) {
    case DJ_NULL: return "null";
    case DJ_FALSE: case DJ_TRUE: return "a boolean";
    case DJ_NUMBER: return "a number";
    case DJ_STRING: return "a string";
    case DJ_ARRAY: return "a list";
    case DJ_OBJECT: return "an object";
    }
    return "?";
}
