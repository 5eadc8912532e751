/* data.c: UTF-8 checks, text helpers, the streaming line reader and the
 * buffered writer; see data.h. The JSON parser is data_json.c, the
 * training-file readers data_load.c. */
#include "data.h"
#include "progress.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ======================================================================== */
/* UTF-8                                                                    */
/* ======================================================================== */

size_t cb_data_utf8_seq(const unsigned char *s, size_t n) {
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

int cb_data_utf8_valid(const char *str, size_t n, size_t *bad) {
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
        size_t k = cb_data_utf8_seq(s + i, n - i);
        if (!k) {
            if (bad) *bad = i;
            return 0;
        }
        i += k;
    }
    return 1;
}

/* ======================================================================== */
/* Text helpers                                                             */
/* ======================================================================== */

int cb_data_is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f')) return 0;
    }
    return 1;
}

const char *cb_data_excerpt(char *buf, size_t cap, const char *s, size_t n) {
    size_t k = n < cap - 8 ? n : cap - 8;
    while (k > 0 && k < n && ((unsigned char)s[k] & 0xc0) == 0x80) k--;   /* whole characters */
    snprintf(buf, cap, "\"%.*s%s\"", (int)k, s, k < n ? "..." : "");
    return buf;
}

const char *cb_data_join_title(char **buf, size_t *cap, const char *title, size_t nt, const char *sep,
                            const char *text, size_t nx, size_t *len, cb_err *err) {
    if (!title || cb_data_is_blank(title, nt)) {
        *len = nx;
        return text;
    }
    if (cb_data_is_blank(text, nx)) {
        *len = nt;
        return title;
    }
    size_t ns = strlen(sep), need = nt + ns + nx + 1;
    if (need > *cap) {
        char *b = cb_realloc(*buf, need * 2, "a document", err);
        if (!b) return NULL;
        *buf = b;
        *cap = need * 2;
    }
    memcpy(*buf, title, nt);
    memcpy(*buf + nt, sep, ns);
    memcpy(*buf + nt + ns, text, nx);
    *len = nt + ns + nx;
    return *buf;
}

/* ======================================================================== */
/* Line reader                                                              */
/* ======================================================================== */

int cb_data_lines_open(data_lines *r, const char *path, cb_err *err) {
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
    if (!(r->buf = cb_malloc(r->cap + 1, path, err))) {
        fclose(r->f);
        r->f = NULL;
        return -1;
    }
    return 0;
}

int cb_data_lines_open_mem(data_lines *r, const char *name, const char *data, size_t len, cb_err *err) {
    memset(r, 0, sizeof *r);
    r->path = name;
    r->size = (int64_t)len;
    if (len == 0) {
        r->eof = 1;   /* nothing to read: next() returns 0 without a FILE */
    } else if (!(r->f = fmemopen((void *)data, len, "r"))) {
        return cb_err_set(err, "%s: cannot read from memory: %s", name, strerror(errno));
    }
    r->cap = 1 << 20;
    if (!(r->buf = cb_malloc(r->cap + 1, name, err))) {
        if (r->f) fclose(r->f);
        r->f = NULL;
        return -1;
    }
    return 0;
}

int cb_data_lines_next(data_lines *r, char **line, size_t *len, cb_err *err) {
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
            /* A NUL byte is no text: the file is binary or corrupt (and a
             * NUL inside a field would cut the text short downstream). */
            const char *z = memchr(s, '\0', n);
            if (z)
                return cb_err_set(err, "%s:%lld: a NUL byte at column %zu (not a text file?)", r->path,
                                  (long long)r->lineno, (size_t)(z - s) + 1);
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
            char *b = cb_realloc(r->buf, 2 * r->cap + 1, "a long line", err);
            if (!b) return cb_err_prefix(err, "%s:%lld", r->path, (long long)r->lineno + 1);
            r->buf = b;
            r->cap *= 2;
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

int cb_data_lines_next_nonblank(data_lines *r, progress *pg, char **line, size_t *len, cb_err *err) {
    int rc;
    while ((rc = cb_data_lines_next(r, line, len, err)) == 1) {
        if (pg && (r->lineno & 4095) == 0) cb_progress_update(pg, r->bytes_read >> 20);
        if (!cb_data_is_blank(*line, *len)) break;
    }
    return rc;
}

int cb_data_lines_err(cb_err *err, const data_lines *r, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cb_err_set(err, "%s:%lld: %s", r->path, (long long)r->lineno, msg);
}

void cb_data_lines_close(data_lines *r) {
    if (r->f) fclose(r->f);
    free(r->buf);
    memset(r, 0, sizeof *r);
}

/* ======================================================================== */
/* Content hash                                                             */
/* ======================================================================== */

/* Little-endian 8-byte words, each mixed in with a multiply-rotate; the
 * partial last word and the length go in at the end (splitmix64 finish). */
static uint64_t hash_word(uint64_t h, uint64_t w) {
    h ^= w * 0x9e3779b97f4a7c15ULL;
    h = (h << 31 | h >> 33) * 0xbf58476d1ce4e5b9ULL;
    return h;
}

void cb_data_hash_init(data_hash *d) { memset(d, 0, sizeof *d); }

void cb_data_hash_update(data_hash *d, const void *p, size_t n) {
    const unsigned char *s = p;
    while (n && (d->bytes & 7)) {   /* finish the partial word */
        d->tail |= (uint64_t)*s++ << (8 * (d->bytes & 7));
        d->bytes++;
        n--;
        if (!(d->bytes & 7)) {
            d->h = hash_word(d->h, d->tail);
            d->tail = 0;
        }
    }
    for (; n >= 8; n -= 8, s += 8) {
        uint64_t w;
        memcpy(&w, s, 8);   /* x86-64 and the other targets are little-endian */
        d->h = hash_word(d->h, w);
        d->bytes += 8;
    }
    for (; n; n--) {
        d->tail |= (uint64_t)*s++ << (8 * (d->bytes & 7));
        d->bytes++;
    }
}

uint64_t cb_data_hash_final(const data_hash *d) {
    uint64_t h = hash_word(hash_word(d->h, d->tail), d->bytes);
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

/* ======================================================================== */
/* Writer                                                                   */
/* ======================================================================== */

int cb_data_writer_init(data_writer *w, FILE *f, cb_err *err) {
    memset(w, 0, sizeof *w);
    w->f = f;
    w->cap = 1 << 20;
    return (w->buf = cb_malloc(w->cap, "the output buffer", err)) ? 0 : -1;
}

static void wflush(data_writer *w) {
    cb_data_hash_update(&w->hash, w->buf, w->n);
    if (w->n && !w->failed && fwrite(w->buf, 1, w->n, w->f) != w->n) {
        w->failed = 1;
        w->err_no = errno;
    }
    w->n = 0;
}

/* Room for n more bytes; 0, or -1 (w->failed, ENOMEM) when out of memory. */
static int wreserve(data_writer *w, size_t n) {
    if (w->cap - w->n >= n) return 0;
    wflush(w);
    if (w->cap < n) {
        char *b = realloc(w->buf, n);
        if (!b) {
            w->failed = 1;
            w->err_no = ENOMEM;
            return -1;
        }
        w->buf = b;
        w->cap = n;
    }
    return 0;
}

static size_t put_u64(char *o, uint64_t v) {
    char t[24];
    size_t k = 0;
    do { t[k++] = (char)('0' + v % 10); v /= 10; } while (v);
    for (size_t i = 0; i < k; i++) o[i] = t[k - 1 - i];
    return k;
}

void cb_data_write_text_line(data_writer *w, uint64_t id, const char *text, size_t len) {
    if (wreserve(w, len + 24)) return;
    char *o = w->buf + w->n;
    o += put_u64(o, id);
    *o++ = '\t';
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        o[i] = (c == '\t' || c == '\n' || c == '\r' || c == '\0') ? ' ' : c;
    }
    o += len;
    *o++ = '\n';
    w->n = (size_t)(o - w->buf);
}

void cb_data_write_id_array(data_writer *w, const uint32_t *ids, size_t n) {
    if (wreserve(w, 12 * n + 3)) return;
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

int cb_data_writer_flush(data_writer *w) {
    wflush(w);
    if (!w->failed && fflush(w->f)) {
        w->failed = 1;
        w->err_no = errno;
    }
    return w->failed ? -1 : 0;
}

void cb_data_writer_free(data_writer *w) {
    free(w->buf);
    memset(w, 0, sizeof *w);
}
