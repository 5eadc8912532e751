/* data.h: text files in and out of colbert.c.
 *
 * Four layers, each usable alone:
 *   - data_lines: a streaming line reader (bounded memory, any line length):
 *     strips "\n", "\r\n" and a leading UTF-8 byte-order mark, counts lines
 *     for error messages, reports bytes read for progress bars.
 *   - data_json: a small strict JSON parser for one line (RFC 8259) into a
 *     flat array of nodes; strings are decoded in place in the line buffer
 *     and checked to be valid UTF-8. Fast on long ASCII text.
 *   - data_writer: buffered output of "id<TAB>text" lines (tabs, newlines and
 *     carriage returns in the text become spaces) and JSON id arrays.
 *   - The three ColBERT training files, as colbert-ai reads them:
 *       queries    "qid<TAB>query"           (any integer qids, unique)
 *       collection "pid<TAB>passage[<TAB>title]" (pid = line number from 0)
 *       triples    "[qid, pid+, pid-, ...]" or "[qid, [pid, score], ...]"
 *                  (n-way; the scores are teacher scores for distillation).
 *
 * Errors name the file and the line: "FILE:LINE: what was expected, found".
 */
#ifndef CB_DATA_H
#define CB_DATA_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "common.h"

/* ---- UTF-8 ------------------------------------------------------------- */

/* 1 if s[0..n) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF);
 * else 0 and *bad (if not NULL) = offset of the first invalid byte. */
int data_utf8_valid(const char *s, size_t n, size_t *bad);

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
int data_lines_open(data_lines *r, const char *path, cb_err *err);
/* Next line without its terminator, NUL-terminated and writable until the
 * next call: returns 1 with *line, *len set; 0 at end of file; -1 on a read
 * error (err set). */
int data_lines_next(data_lines *r, char **line, size_t *len, cb_err *err);
void data_lines_close(data_lines *r);

/* ---- JSON, one value per line ------------------------------------------- */

typedef enum {
    DJ_NULL, DJ_FALSE, DJ_TRUE, DJ_NUMBER, DJ_STRING, DJ_ARRAY, DJ_OBJECT
} dj_type;   /* prefixed: jansson.h owns the JSON_ names */

/* One node of a parsed value, in document order. An array node is followed
 * by its elements, an object node by key, value, key, value... (each key a
 * DJ_STRING node); `next` is the index just past this node's subtree, so
 * children are walked with `for (i = first child; ...; i = nodes[i].next)`. */
typedef struct dj_node {
    dj_type type;
    uint32_t n;         /* elements of an array, members of an object */
    uint32_t next;
    const char *s;      /* string: decoded UTF-8 (in the line buffer); number: its text */
    size_t len;
    double num;         /* number value */
    int64_t i;          /* number value when is_int */
    int is_int;         /* number without fraction or exponent that fits int64 */
} dj_node;

typedef struct data_json {
    dj_node *nodes;
    size_t n, cap;
} data_json;

/* Parse the whole of line[0..len) as one JSON value (surrounding white space
 * allowed, nothing else). Strings are decoded in place, so line is modified
 * and must outlive the nodes. Returns 0, or -1 with err = "invalid JSON at
 * column C: expected X, found Y" or "invalid UTF-8 at column C" (the caller
 * prefixes FILE:LINE). Nodes are in j->nodes[0..j->n), the root at 0. */
int data_json_parse(data_json *j, char *line, size_t len, cb_err *err);
void data_json_free(data_json *j);
/* Value of member `key` of the object at index obj, or -1 when absent. */
int64_t data_json_get(const data_json *j, size_t obj, const char *key);
/* "string", "number", ... for messages. */
const char *data_json_type_name(dj_type t);

/* ---- buffered writer ---------------------------------------------------- */

typedef struct data_writer {
    FILE *f;
    char *buf;
    size_t n, cap;
    int failed;         /* a write failed (errno kept in err_no) */
    int err_no;
} data_writer;

void data_writer_init(data_writer *w, FILE *f);
/* "id<TAB>text\n" with '\t', '\n', '\r' in text replaced by ' '. */
void data_write_text_line(data_writer *w, uint64_t id, const char *text, size_t len);
/* "[a,b,c]\n" for ids[0..n). */
void data_write_id_array(data_writer *w, const uint32_t *ids, size_t n);
/* Flush to the FILE. Returns 0, or -1 when any write failed. */
int data_writer_flush(data_writer *w);
void data_writer_free(data_writer *w);

/* ---- ColBERT training files --------------------------------------------- */

/* Texts with integer ids: queries (ids as written) or a collection
 * (ids = 0..n-1). Text i is buf[off[i] .. off[i+1]), NUL-terminated. */
typedef struct data_texts {
    size_t n;
    int64_t *ids;       /* [n] */
    uint64_t *off;      /* [n+1] */
    char *buf;
    int dense;          /* ids[i] == i for all i: lookup by index */
    size_t *by_id;      /* [n] indices sorted by id, when not dense */
} data_texts;

/* queries.train.colbert.tsv: "qid<TAB>query[<TAB>...]" as colbert-ai's
 * load_queries reads it (line stripped of white space, extra fields ignored,
 * qids unique integers). */
int data_queries_load(data_texts *t, const char *path, cb_err *err);
/* corpus.train.colbert.tsv: "pid<TAB>passage[<TAB>title]" as colbert-ai's
 * load_collection reads it (pid must equal the line index from 0; with a
 * title the text is "title | passage"). */
int data_collection_load(data_texts *t, const char *path, cb_err *err);
/* Index of the text with this id, or -1. */
int64_t data_texts_find(const data_texts *t, int64_t id);
/* Text i and its length. */
const char *data_texts_get(const data_texts *t, size_t i, size_t *len);
void data_texts_free(data_texts *t);

/* Training examples: n lines of one query id and nway passage ids (first the
 * positive), optionally with one teacher score per passage. */
typedef struct data_triples {
    size_t n;
    int nway;
    int64_t *qids;      /* [n] */
    int64_t *pids;      /* [n, nway] */
    float *scores;      /* [n, nway], or NULL when the file has no scores */
} data_triples;

/* triples.train.colbert.jsonl and colbert-ai's n-way files: each line a JSON
 * array [qid, pid, pid, ...] or [qid, [pid, score], [pid, score], ...].
 * nway = passages per example to keep (0: as many as the first line has);
 * like colbert-ai, longer lines are cut to nway, shorter ones are an error,
 * and all lines must agree on having scores or not. */
int data_triples_load(data_triples *t, const char *path, int nway, cb_err *err);
void data_triples_free(data_triples *t);

#endif
