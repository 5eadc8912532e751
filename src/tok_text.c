/* tok_text.c: the bottom of the tokenizer: growable code-point buffers,
 * UTF-8 in both directions (decoding as Python's errors="replace" does) and
 * Rust's char::is_whitespace. Every other tokenizer file uses these; they
 * use nothing of the tokenizer. See tok_text.h. */
#include "tok_text.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---------------------------------------------------------------------------
 * Code-point buffers, UTF-8, whitespace. */

int tok_cps_push(tok_cps *b, uint32_t c) {
    if (b->n == b->cap) {
        size_t cap = 2 * b->cap + 64;
        uint32_t *p = realloc(b->p, cap * sizeof *p);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    b->p[b->n++] = c;
    return 0;
}

int tok_cps_append(tok_cps *b, const uint32_t *c, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = 2 * b->cap + 64;
        if (cap < b->n + n) cap = b->n + n;
        uint32_t *p = realloc(b->p, cap * sizeof *p);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, c, n * sizeof *c);
    b->n += n;
    return 0;
}

int tok_utf8_put(char *p, uint32_t c) {
    if (c < 0x80) { p[0] = (char)c; return 1; }
    if (c < 0x800) { p[0] = (char)(0xC0 | (c >> 6)); p[1] = (char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        p[0] = (char)(0xE0 | (c >> 12)); p[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        p[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    p[0] = (char)(0xF0 | (c >> 18)); p[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    p[2] = (char)(0x80 | ((c >> 6) & 0x3F)); p[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

int tok_is_whitespace(uint32_t c) {
    if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0d);
    if (c == 0x85) return 1;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_ZS || k == UTF8PROC_CATEGORY_ZL || k == UTF8PROC_CATEGORY_ZP;
}

/* A JSON string as code points (malloc'd). */
/* ---------------------------------------------------------------------------
 * UTF-8 decoding with Python's errors="replace": each maximal prefix of a
 * valid sequence that cannot be completed becomes one U+FFFD, and decoding
 * resumes at the byte that broke it. */
size_t tok_utf8_decode(const unsigned char *s, size_t len, uint32_t *out) {
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
