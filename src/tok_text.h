/* tok_text.h: the bottom layer of the tokenizer: text as code points
 * (uint32_t) in growable buffers, UTF-8 to and from code points, and the
 * whitespace test the pipeline stages share. Internal to the tokenizer
 * module (the library API is tokenizer.h); it depends on nothing of it.
 */
#ifndef CB_TOK_TEXT_H
#define CB_TOK_TEXT_H
#include <stddef.h>
#include <stdint.h>

/* A growable code-point buffer. */
typedef struct tok_cps {
    uint32_t *p;
    size_t n, cap;
} tok_cps;
int tok_cps_push(tok_cps *b, uint32_t c);
int tok_cps_append(tok_cps *b, const uint32_t *c, size_t n);

static inline int tok_utf8_len(uint32_t c) { return c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4; }
/* UTF-8 of one code point into p (room for 4); returns its length. */
int tok_utf8_put(char *p, uint32_t c);

/* UTF-8 -> code points with Python's errors="replace" (each maximal prefix
 * of a valid sequence that cannot be completed becomes one U+FFFD). out has
 * room for len code points; returns the count. */
size_t tok_utf8_decode(const unsigned char *s, size_t len, uint32_t *out);

/* Rust char::is_whitespace (the White_Space property). */
int tok_is_whitespace(uint32_t c);
#endif
