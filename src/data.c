/* data.c: line reader, one-line JSON parser, writer and the ColBERT training
 * files; see data.h. */
#include "data.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#if defined(__AVX2__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

/* ======================================================================== */
/* UTF-8                                                                    */
/* ======================================================================== */

/* Length of the valid UTF-8 sequence at s[0..n) whose first byte is >= 0x80,
 * or 0 if it is invalid (RFC 3629 table 3-7). */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c >= 0xc2 && c <= 0xdf) {
        return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
    }
    if (c >= 0xe0 && c <= 0xef) {
        if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80) return 0;
        if (c == 0xe0 && s[1] < 0xa0) return 0;   /* overlong */
        if (c == 0xed && s[1] > 0x9f) return 0;   /* surrogate */
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        if (c == 0xf0 && s[1] < 0x90) return 0;   /* overlong */
        if (c == 0xf4 && s[1] > 0x8f) return 0;   /* > U+10FFFF */
        return 4;
    }
    return 0;
}

int data_utf8_valid(const char *str, size_t n, size_t *bad) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path, 8 bytes at a time. */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ULL) break;
            i += 8;
        }
        if (i >= n) break;
        if (s[i] < 0x80) { i++; continue; }
        size_t k = utf8_seq(s + i, n - i);
        if (!k) {
            if (bad) *bad = i;
            return 0;
        }
        i += k;
    }
    return 1;
}

/* ======================================================================== */
/* Line reader                                                              */
/* ======================================================================== */

int data_lines_open(data_lines *r, const char *path, cb_err *err) {
    memset(r, 0, sizeof *r);
    r->path = path;
    r->f = fopen(path, "rb");
    if (!r->f) return cb_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(r->f), &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            fclose(r->f);
            r->f = NULL;
            return cb_err_set(err, "%s: is a directory, expected a file", path);
        }
        r->size = (int64_t)st.st_size;
    }
    r->cap = 1 << 20;
    r->buf = cb_xmalloc(r->cap + 1);
    return 0;
}

int data_lines_next(data_lines *r, char **line, size_t *len, cb_err *err) {
    for (;;) {
        char *nl = r->end > r->beg ? memchr(r->buf + r->beg, '\n', r->end - r->beg) : NULL;
        if (nl || (r->eof && r->end > r->beg)) {
            char *s = r->buf + r->beg;
            size_t n = nl ? (size_t)(nl - s) : r->end - r->beg;
            r->beg += nl ? n + 1 : n;
            if (n > 0 && s[n - 1] == '\r') n--;
            s[n] = '\0';   /* the buffer has one spare byte past cap */
            r->lineno++;
            if (r->lineno == 1 && n >= 3 && !memcmp(s, "\xef\xbb\xbf", 3)) {
                s += 3;
                n -= 3;
            }
            *line = s;
            *len = n;
            return 1;
        }
        if (r->eof) return 0;
        /* Move the partial line to the front, grow if it fills the buffer. */
        if (r->beg > 0) {
            memmove(r->buf, r->buf + r->beg, r->end - r->beg);
            r->end -= r->beg;
            r->beg = 0;
        }
        if (r->end == r->cap) {
            r->cap *= 2;
            r->buf = cb_xrealloc(r->buf, r->cap + 1);
        }
        size_t got = fread(r->buf + r->end, 1, r->cap - r->end, r->f);
        r->end += got;
        r->bytes_read += (int64_t)got;
        if (got == 0) {
            if (ferror(r->f))
                return cb_err_set(err, "%s: read error: %s", r->path, strerror(errno));
            r->eof = 1;
        }
    }
}

void data_lines_close(data_lines *r) {
    if (r->f) fclose(r->f);
    free(r->buf);
    memset(r, 0, sizeof *r);
}

/* ======================================================================== */
/* JSON                                                                     */
/* ======================================================================== */

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

static size_t jnode(jparser *jp, dj_type t) {
    data_json *j = jp->j;
    if (j->n == j->cap) {
        j->cap = j->cap ? 2 * j->cap : 64;
        j->nodes = cb_xrealloc(j->nodes, j->cap * sizeof *j->nodes);
    }
    dj_node *nd = &j->nodes[j->n];
    memset(nd, 0, sizeof *nd);
    nd->type = t;
    return j->n++;
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
            size_t k = utf8_seq((unsigned char *)p, (size_t)(end - p));
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
    char tmp[64];
    size_t n = nd->len < sizeof tmp - 1 ? nd->len : sizeof tmp - 1;
    memcpy(tmp, s0, n);
    tmp[n] = '\0';
    nd->num = strtod(tmp, NULL);
    if (is_int && nd->len < sizeof tmp - 1) {
        errno = 0;
        nd->i = strtoll(tmp, NULL, 10);
        nd->is_int = errno == 0;
    }
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
        idx = jnode(jp, DJ_STRING);
        if (jstring(jp, idx)) return -1;
    } else if (c == '[' || c == '{') {
        if (++jp->depth > 64) return cb_err_set(jp->err, "invalid JSON at column %zu: nested "
                                               "deeper than 64", (size_t)(jp->p - jp->start) + 1);
        int obj = c == '{';
        idx = jnode(jp, obj ? DJ_OBJECT : DJ_ARRAY);
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
                    size_t k = jnode(jp, DJ_STRING);
                    if (jstring(jp, k)) return -1;
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
        idx = jnode(jp, DJ_NUMBER);
        if (jnumber(jp, idx)) return -1;
    } else if (jp->end - jp->p >= 4 && !memcmp(jp->p, "true", 4)) {
        idx = jnode(jp, DJ_TRUE);
        jp->p += 4;
    } else if (jp->end - jp->p >= 5 && !memcmp(jp->p, "false", 5)) {
        idx = jnode(jp, DJ_FALSE);
        jp->p += 5;
    } else if (jp->end - jp->p >= 4 && !memcmp(jp->p, "null", 4)) {
        idx = jnode(jp, DJ_NULL);
        jp->p += 4;
    } else {
        return jfail(jp, "a value");
    }
    jp->j->nodes[idx].next = (uint32_t)jp->j->n;
    return 0;
}

int data_json_parse(data_json *j, char *line, size_t len, cb_err *err) {
    jparser jp = {j, line, line, line + len, err, 0};
    j->n = 0;
    if (jvalue(&jp)) return -1;
    jws(&jp);
    if (jp.p < jp.end) return jfail(&jp, "end of line after the value");
    return 0;
}

void data_json_free(data_json *j) {
    free(j->nodes);
    memset(j, 0, sizeof *j);
}

int64_t data_json_get(const data_json *j, size_t obj, const char *key) {
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

const char *data_json_type_name(dj_type t) {
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

/* ======================================================================== */
/* Writer                                                                   */
/* ======================================================================== */

void data_writer_init(data_writer *w, FILE *f) {
    memset(w, 0, sizeof *w);
    w->f = f;
    w->cap = 1 << 20;
    w->buf = cb_xmalloc(w->cap);
}

static void wflush(data_writer *w) {
    if (w->n && !w->failed && fwrite(w->buf, 1, w->n, w->f) != w->n) {
        w->failed = 1;
        w->err_no = errno;
    }
    w->n = 0;
}

static void wreserve(data_writer *w, size_t n) {
    if (w->cap - w->n >= n) return;
    wflush(w);
    if (w->cap < n) {
        w->cap = n;
        w->buf = cb_xrealloc(w->buf, w->cap);
    }
}

static size_t put_u64(char *o, uint64_t v) {
    char t[24];
    size_t k = 0;
    do { t[k++] = (char)('0' + v % 10); v /= 10; } while (v);
    for (size_t i = 0; i < k; i++) o[i] = t[k - 1 - i];
    return k;
}

void data_write_text_line(data_writer *w, uint64_t id, const char *text, size_t len) {
    wreserve(w, len + 24);
    char *o = w->buf + w->n;
    o += put_u64(o, id);
    *o++ = '\t';
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        o[i] = (c == '\t' || c == '\n' || c == '\r') ? ' ' : c;
    }
    o += len;
    *o++ = '\n';
    w->n = (size_t)(o - w->buf);
}

void data_write_id_array(data_writer *w, const uint32_t *ids, size_t n) {
    wreserve(w, 12 * n + 3);
    char *o = w->buf + w->n;
    *o++ = '[';
    for (size_t i = 0; i < n; i++) {
        if (i) *o++ = ',';
        o += put_u64(o, ids[i]);
    }
    *o++ = ']';
    *o++ = '\n';
    w->n = (size_t)(o - w->buf);
}

int data_writer_flush(data_writer *w) {
    wflush(w);
    if (!w->failed && fflush(w->f)) {
        w->failed = 1;
        w->err_no = errno;
    }
    return w->failed ? -1 : 0;
}

void data_writer_free(data_writer *w) {
    free(w->buf);
    memset(w, 0, sizeof *w);
}

/* ======================================================================== */
/* ColBERT training files                                                   */
/* ======================================================================== */

static int parse_int64(const char *s, size_t n, int64_t *out) {
    if (n == 0 || n > 19) return -1;
    size_t i = 0;
    int neg = 0;
    if (s[0] == '-' || s[0] == '+') { neg = s[0] == '-'; i = 1; }
    if (i == n) return -1;
    int64_t v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = neg ? -v : v;
    return 0;
}

static int is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

typedef struct tbuild {
    data_texts *t;
    size_t cap_n, cap_buf, nbuf;
} tbuild;

static void tb_add(tbuild *b, int64_t id, const char *a, size_t na, const char *sep,
                   const char *c, size_t nc) {
    data_texts *t = b->t;
    size_t ns = sep ? strlen(sep) : 0, need = na + ns + nc + 1;
    if (t->n + 1 >= b->cap_n) {
        b->cap_n = b->cap_n ? 2 * b->cap_n : 1024;
        t->ids = cb_xrealloc(t->ids, b->cap_n * sizeof *t->ids);
        t->off = cb_xrealloc(t->off, (b->cap_n + 1) * sizeof *t->off);
    }
    if (b->nbuf + need > b->cap_buf) {
        while (b->nbuf + need > b->cap_buf) b->cap_buf = b->cap_buf ? 2 * b->cap_buf : 1 << 16;
        t->buf = cb_xrealloc(t->buf, b->cap_buf);
    }
    char *o = t->buf + b->nbuf;
    memcpy(o, a, na);
    if (ns) memcpy(o + na, sep, ns);
    if (nc) memcpy(o + na + ns, c, nc);
    o[na + ns + nc] = '\0';
    t->ids[t->n] = id;
    t->off[t->n] = b->nbuf;
    b->nbuf += need;
    t->n++;
    t->off[t->n] = b->nbuf;
}

static int cmp_by_id(const void *a, const void *b, void *ctx) {
    const int64_t *ids = ctx;
    int64_t x = ids[*(const size_t *)a], y = ids[*(const size_t *)b];
    return x < y ? -1 : x > y;
}

/* kind 0: queries; 1: collection. */
static int texts_load(data_texts *t, const char *path, int kind, cb_err *err) {
    memset(t, 0, sizeof *t);
    data_lines r;
    if (data_lines_open(&r, path, err)) return -1;
    tbuild b = {t, 0, 0, 0};
    char *line;
    size_t len;
    int rc;
    while ((rc = data_lines_next(&r, &line, &len, err)) == 1) {
        size_t bad;
        if (!data_utf8_valid(line, len, &bad)) {
            cb_err_set(err, "%s:%lld: invalid UTF-8 at column %zu", path, (long long)r.lineno, bad + 1);
            goto fail;
        }
        /* colbert-ai strips the line (queries: all white space; collection:
         * '\n', '\r' and ' ') and splits on tabs. */
        size_t a = 0, z = len;
        if (kind == 0) {
            while (a < z && is_ws(line[a])) a++;
            while (z > a && is_ws(line[z - 1])) z--;
        } else {
            while (a < z && (line[a] == ' ' || line[a] == '\r')) a++;
            while (z > a && (line[z - 1] == ' ' || line[z - 1] == '\r')) z--;
        }
        if (kind == 0 && a == z) continue;   /* blank line */
        char *f0 = line + a, *e = line + z;
        char *t1 = memchr(f0, '\t', (size_t)(e - f0));
        if (!t1) {
            cb_err_set(err, "%s:%lld: expected \"id<TAB>text\", found no tab", path, (long long)r.lineno);
            goto fail;
        }
        int64_t id;
        if (parse_int64(f0, (size_t)(t1 - f0), &id)) {
            cb_err_set(err, "%s:%lld: expected an integer id before the tab, found \"%.*s\"", path,
                       (long long)r.lineno, (int)((t1 - f0) > 40 ? 40 : (t1 - f0)), f0);
            goto fail;
        }
        char *f1 = t1 + 1, *t2 = memchr(f1, '\t', (size_t)(e - f1));
        size_t n1 = t2 ? (size_t)(t2 - f1) : (size_t)(e - f1);
        if (kind == 1) {
            if (id != (int64_t)t->n) {
                cb_err_set(err, "%s:%lld: expected passage id %zu (ids count lines from 0), found %lld",
                           path, (long long)r.lineno, t->n, (long long)id);
                goto fail;
            }
            if (t2) {   /* "pid passage title" -> "title | passage" */
                char *f2 = t2 + 1, *t3 = memchr(f2, '\t', (size_t)(e - f2));
                size_t n2 = t3 ? (size_t)(t3 - f2) : (size_t)(e - f2);
                tb_add(&b, id, f2, n2, " | ", f1, n1);
                continue;
            }
        }
        tb_add(&b, id, f1, n1, NULL, NULL, 0);
    }
    if (rc < 0) goto fail;
    data_lines_close(&r);
    if (!t->off) t->off = cb_xcalloc(1, sizeof *t->off);
    t->dense = 1;
    for (size_t i = 0; i < t->n; i++)
        if (t->ids[i] != (int64_t)i) { t->dense = 0; break; }
    if (!t->dense) {
        t->by_id = cb_xmalloc(t->n * sizeof *t->by_id);
        for (size_t i = 0; i < t->n; i++) t->by_id[i] = i;
        qsort_r(t->by_id, t->n, sizeof *t->by_id, cmp_by_id, t->ids);
        for (size_t i = 1; i < t->n; i++)
            if (t->ids[t->by_id[i]] == t->ids[t->by_id[i - 1]]) {
                cb_err_set(err, "%s: query id %lld is repeated", path, (long long)t->ids[t->by_id[i]]);
                data_texts_free(t);
                return -1;
            }
    }
    return 0;
fail:
    data_lines_close(&r);
    data_texts_free(t);
    return -1;
}

int data_queries_load(data_texts *t, const char *path, cb_err *err) {
    return texts_load(t, path, 0, err);
}

int data_collection_load(data_texts *t, const char *path, cb_err *err) {
    return texts_load(t, path, 1, err);
}

int64_t data_texts_find(const data_texts *t, int64_t id) {
    if (t->dense) return id >= 0 && (uint64_t)id < t->n ? id : -1;
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int64_t v = t->ids[t->by_id[mid]];
        if (v == id) return (int64_t)t->by_id[mid];
        if (v < id) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

const char *data_texts_get(const data_texts *t, size_t i, size_t *len) {
    CB_ASSERT(i < t->n);
    if (len) *len = (size_t)(t->off[i + 1] - t->off[i] - 1);
    return t->buf + t->off[i];
}

void data_texts_free(data_texts *t) {
    free(t->ids);
    free(t->off);
    free(t->buf);
    free(t->by_id);
    memset(t, 0, sizeof *t);
}

int data_triples_load(data_triples *t, const char *path, int nway, cb_err *err) {
    memset(t, 0, sizeof *t);
    data_lines r;
    if (data_lines_open(&r, path, err)) return -1;
    data_json j = {0};
    size_t cap = 0;
    int scored = -1;
    char *line;
    size_t len;
    int rc;
    while ((rc = data_lines_next(&r, &line, &len, err)) == 1) {
        size_t a = 0;
        while (a < len && is_ws(line[a])) a++;
        if (a == len) continue;
        if (data_json_parse(&j, line, len, err)) {
            cb_err_prefix(err, "%s:%lld", path, (long long)r.lineno);
            goto fail;
        }
        const dj_node *root = &j.nodes[0];
        if (root->type != DJ_ARRAY || root->n < 2) {
            cb_err_set(err, "%s:%lld: expected a list [qid, pid, pid, ...], found %s%s", path,
                       (long long)r.lineno, data_json_type_name(root->type),
                       root->type == DJ_ARRAY ? " of fewer than 2 items" : "");
            goto fail;
        }
        int have = (int)root->n - 1;
        if (t->n == 0) {
            if (nway <= 0) nway = have;
            t->nway = nway;
        }
        if (have < nway) {
            cb_err_set(err, "%s:%lld: expected a query id and %d passages, found %d passages", path,
                       (long long)r.lineno, nway, have);
            goto fail;
        }
        if (t->n == cap) {
            cap = cap ? 2 * cap : 4096;
            t->qids = cb_xrealloc(t->qids, cap * sizeof *t->qids);
            t->pids = cb_xrealloc(t->pids, cap * (size_t)nway * sizeof *t->pids);
            t->scores = cb_xrealloc(t->scores, cap * (size_t)nway * sizeof *t->scores);
        }
        size_t i = 1;
        if (j.nodes[i].type != DJ_NUMBER || !j.nodes[i].is_int) {
            cb_err_set(err, "%s:%lld: expected an integer query id first, found %s", path,
                       (long long)r.lineno, data_json_type_name(j.nodes[i].type));
            goto fail;
        }
        t->qids[t->n] = j.nodes[i].i;
        i = j.nodes[i].next;
        for (int k = 0; k < nway; k++) {
            const dj_node *e = &j.nodes[i];
            int is_pair = e->type == DJ_ARRAY;
            if (scored < 0) scored = is_pair;
            if (is_pair != scored) {
                cb_err_set(err, "%s:%lld: passage %d is %s but the first line has %s", path,
                           (long long)r.lineno, k + 1, is_pair ? "a [pid, score] pair" : "a bare pid",
                           scored ? "[pid, score] pairs" : "bare pids");
                goto fail;
            }
            const dj_node *pid = e, *sc = NULL;
            if (is_pair) {
                if (e->n != 2) {
                    cb_err_set(err, "%s:%lld: expected [pid, score] for passage %d, found a list of %u",
                               path, (long long)r.lineno, k + 1, e->n);
                    goto fail;
                }
                pid = &j.nodes[i + 1];
                sc = &j.nodes[pid->next];
                if (sc->type != DJ_NUMBER) {
                    cb_err_set(err, "%s:%lld: expected a number as the score of passage %d, found %s",
                               path, (long long)r.lineno, k + 1, data_json_type_name(sc->type));
                    goto fail;
                }
            }
            if (pid->type != DJ_NUMBER || !pid->is_int || pid->i < 0) {
                cb_err_set(err, "%s:%lld: expected a passage id (integer >= 0) for passage %d, found %s",
                           path, (long long)r.lineno, k + 1, data_json_type_name(pid->type));
                goto fail;
            }
            t->pids[t->n * (size_t)nway + (size_t)k] = pid->i;
            t->scores[t->n * (size_t)nway + (size_t)k] = sc ? (float)sc->num : 0.0f;
            i = e->next;
        }
        t->n++;
    }
    if (rc < 0) goto fail;
    data_lines_close(&r);
    data_json_free(&j);
    if (t->n == 0) {
        cb_err_set(err, "%s: no training examples (the file is empty)", path);
        data_triples_free(t);
        return -1;
    }
    if (!scored) {
        free(t->scores);
        t->scores = NULL;
    }
    return 0;
fail:
    data_lines_close(&r);
    data_json_free(&j);
    data_triples_free(t);
    return -1;
}

void data_triples_free(data_triples *t) {
    free(t->qids);
    free(t->pids);
    free(t->scores);
    memset(t, 0, sizeof *t);
}
