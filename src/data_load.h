/* data_load.h: the three ColBERT training files, read as colbert-ai reads
 * them:
 *   queries    "qid<TAB>query"               (any integer qids, unique)
 *   collection "pid<TAB>passage[<TAB>title]" (pid = line number from 0)
 *   triples    "[qid, pid+, pid-, ...]" or "[qid, [pid, score], ...]"
 *              (n-way; the scores are teacher scores for distillation).
 * Errors name the file and the line: "FILE:LINE: what was expected, found".
 */
#ifndef CB_DATA_LOAD_H
#define CB_DATA_LOAD_H
#include <stddef.h>
#include <stdint.h>
#include "common.h"

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
int cb_data_queries_load(data_texts *t, const char *path, cb_err *err);
/* corpus.train.colbert.tsv: "pid<TAB>passage[<TAB>title]" as colbert-ai's
 * load_collection reads it (pid must equal the line index from 0; with a
 * title the text is "title | passage"). */
int cb_data_collection_load(data_texts *t, const char *path, cb_err *err);
/* Index of the text with this id, or -1. */
int64_t cb_data_texts_find(const data_texts *t, int64_t id);
/* Text i and its length. */
const char *cb_data_texts_get(const data_texts *t, size_t i, size_t *len);
void cb_data_texts_free(data_texts *t);

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
int cb_data_triples_load(data_triples *t, const char *path, int nway, cb_err *err);
void cb_data_triples_free(data_triples *t);
#endif
