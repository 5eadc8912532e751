/* prepare_read.h: the state of a preparation as its readers fill it, shared
 * by prepare.c (state, negatives, triplets), prepare_read.c (the readers:
 * corpus files, training records, BEIR directories) and prepare_export.c
 * (the files, their manifest and its check). Internal to those three
 * files; the API is prepare.h.
 *
 * Reading turns every record into (query, document) edges over two string
 * tables: queries and documents are interned once each (ids in order of
 * first appearance), an edge is 8 bytes. cb_prepare_run groups the edges by
 * query after the collection is shuffled.
 */
#ifndef CB_PREPARE_READ_H
#define CB_PREPARE_READ_H
#include "data.h"
#include "prepare.h"
#include "strtab.h"

/* A label as given (--positive-label): its text, and its value when the
 * text is an integer (then it also matches JSON numbers and booleans). */
typedef struct label {
    const char *text;
    size_t len;
    int is_int;
    int64_t v;
} label;

typedef struct edge {
    uint32_t q;
    uint32_t d;                 /* document id << 1 | 1 for a negative */
} edge;

struct prepare {
    prepare_opts o;
    label pos, neg;
    strtab q, d;                /* queries, documents (ids in first-seen order) */
    edge *e;
    size_t ne, cape;
    prepare_kind kind;          /* detected or forced; AUTO until the first record */
    char *kind_path;            /* where the kind was decided */
    int64_t kind_line;
    data_json j;                /* the readers' parser, reused line after line */
    char *scratch;              /* joined title + text */
    size_t cap_scratch;
    prepare_stats st;
    /* after cb_prepare_run */
    uint32_t *iid_of;           /* [C] pid -> document id */
    uint64_t *qoff;             /* [nq+1] per-query segments of qd */
    uint32_t *qd;               /* pids: positives then negatives, sorted */
    uint32_t *npos, *nneg;      /* [nq] */
    uint32_t *trip;             /* [ntrip, 3] */
    size_t ntrip, captrip;
    int ran;
};

/* Record that document d is a positive (or a negative) of query q.
 * Returns 0, or -1 with err when out of memory. */
int cb_prepare_add_edge(prepare *p, uint32_t q, uint32_t d, int positive, cb_err *err);
/* Intern a document text: its id in *id. Returns 0, or -1 with err. */
int cb_prepare_add_doc(prepare *p, const char *s, size_t n, uint32_t *id, cb_err *err);
#endif
