/* data.h: text files in and out of colbert.c.
 *
 * Layers, each usable alone:
 *   - UTF-8 checks and the small text helpers the readers share (blank
 *     test, quoted excerpts for messages, title + text joins);
 *   - data_lines: a streaming line reader (bounded memory, any line length):
 *     strips "\n", "\r\n" and a leading UTF-8 byte-order mark, counts lines
 *     for error messages, reports bytes read for progress bars;
 *   - data_writer: buffered output of "id<TAB>text" lines (tabs, newlines,
 *     carriage returns and NULs in the text become spaces) and JSON id arrays;
 *   - data_json.h: a strict one-line JSON parser (included here);
 *   - data_load.h: the three ColBERT training files (included here).
 *
 * Errors name the file and the line: "FILE:LINE: what was expected, found".
 */
#ifndef CB_DATA_H
#define CB_DATA_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "common.h"
#include "data_json.h"
#include "data_load.h"

/* ---- UTF-8 ------------------------------------------------------------- */

/* 1 if s[0..n) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF);
 * else 0 and *bad (if not NULL) = offset of the first invalid byte. */
int cb_data_utf8_valid(const char *s, size_t n, size_t *bad);
/* Length of the valid UTF-8 sequence at s[0..n) whose first byte is >= 0x80,
 * or 0 if it is invalid (RFC 3629 table 3-7). */
size_t cb_data_utf8_seq(const unsigned char *s, size_t n);

/* ---- text helpers --------------------------------------------------------- */

/* 1 if s[0..n) is only white space (space, \t, \n, \r, \v, \f) or empty. */
int cb_data_is_blank(const char *s, size_t n);
/* A short quoted excerpt of s[0..n) for messages, cut at a character
 * boundary with "..." when longer than fits: "\"text...\"" in buf[cap]
 * (cap >= 16). Returns buf. */
const char *cb_data_excerpt(char *buf, size_t cap, const char *s, size_t n);
/* A document from a title and a text: "title<sep>text", or the text alone
 * when title is NULL or blank, or the title alone when the text is blank.
 * Returns one of the inputs or *buf (grown as needed: *buf and *cap start
 * NULL/0, the caller frees *buf), with *len; NULL with err when out of
 * memory. */
const char *cb_data_join_title(char **buf, size_t *cap, const char *title, size_t nt, const char *sep,
                            const char *text, size_t nx, size_t *len, cb_err *err);

/* ---- streaming line reader ---------------------------------------------- */

typedef struct data_lines {
    const char *path;
    FILE *f;
    char *buf;          /* [cap] holds the current line and what follows it */
    size_t cap, beg, end;
    int64_t lineno;     /* 1-based number of the line last returned */
    int64_t bytes_read; /* from the file so far, for progress */
    int64_t size;       /* file size in bytes (0 if unknown) */
    int eof;
} data_lines;

/* Open path for reading. Returns 0, or -1 with "PATH: cannot open: why". */
int cb_data_lines_open(data_lines *r, const char *path, cb_err *err);
/* The same over text in memory, data[0, len) (not copied: it must outlive
 * r), named `name` in messages ("NAME:LINE: ..."). Returns 0, or -1 with
 * err when out of memory. */
int cb_data_lines_open_mem(data_lines *r, const char *name, const char *data, size_t len, cb_err *err);
/* Next line without its terminator, NUL-terminated and writable until the
 * next call: returns 1 with *line, *len set; 0 at end of file; -1 on a read
 * error or a line holding a NUL byte (err "PATH:LINE: a NUL byte at column
 * C"). */
int cb_data_lines_next(data_lines *r, char **line, size_t *len, cb_err *err);
/* The same for the next line that is not blank (cb_data_is_blank); pg (may be
 * NULL) is updated with the MB read so far every 4096 lines. */
struct progress;
int cb_data_lines_next_nonblank(data_lines *r, struct progress *pg, char **line, size_t *len, cb_err *err);
void cb_data_lines_close(data_lines *r);
/* err = "PATH:LINE: <printf message>" for the line last returned. Returns -1. */
int cb_data_lines_err(cb_err *err, const data_lines *r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- content hash ------------------------------------------------------- */

/* A fast 64-bit hash of a byte stream (not cryptographic: it tells one
 * version of a file from another, as prepare's manifest needs). The value
 * depends only on the bytes, not on how they were split into updates. */
typedef struct data_hash {
    uint64_t h, bytes, tail;
} data_hash;
void cb_data_hash_init(data_hash *d);
void cb_data_hash_update(data_hash *d, const void *p, size_t n);
uint64_t cb_data_hash_final(const data_hash *d);

/* ---- buffered writer ---------------------------------------------------- */

typedef struct data_writer {
    FILE *f;
    char *buf;
    size_t n, cap;
    data_hash hash;     /* of every byte written so far */
    int failed;         /* a write failed (errno kept in err_no; ENOMEM when
                           a long line found no memory) */
    int err_no;
} data_writer;

/* Start writing to f through a 1 MB buffer. Returns 0, or -1 with err when
 * out of memory. */
int cb_data_writer_init(data_writer *w, FILE *f, cb_err *err);
/* "id<TAB>text\n" with '\t', '\n', '\r' and '\0' (a JSON "\u0000") in text
 * replaced by ' '. */
void cb_data_write_text_line(data_writer *w, uint64_t id, const char *text, size_t len);
/* "[a,b,c]\n" for ids[0..n). */
void cb_data_write_id_array(data_writer *w, const uint32_t *ids, size_t n);
/* Flush to the FILE. Returns 0, or -1 when any write failed. */
int cb_data_writer_flush(data_writer *w);
void cb_data_writer_free(data_writer *w);

#endif
