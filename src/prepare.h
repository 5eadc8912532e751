/* prepare.h: training data for ColBERT from pairs, labeled pairs or triplets
 * (RAGatouille's prepare_training_data, ../shared/SPEC.md section 2).
 *
 * Input: any number of corpus files (extra documents), training files (JSONL
 * or TSV records) and BEIR directories, added in that order. Output: three
 * files colbert-ai's trainer reads unchanged:
 *   queries.train.colbert.tsv   "qid<TAB>query"     qid = order of first appearance
 *   corpus.train.colbert.tsv    "pid<TAB>passage"   pid = position in the collection
 *   triples.train.colbert.jsonl "[qid,pos_pid,neg_pid]" per line, shuffled
 *
 * Semantics (the reference's, except where marked beyond):
 *   - Kind from the first record: 2 fields -> pairs (query, passage);
 *     3 fields -> labeled pairs (query, passage, label) when the third field
 *     is a label, else triplets (query, positive(s), negative(s)); or forced
 *     with opts.kind. Every later record must be of the same kind.
 *   - A passage field is a string, a list of strings or {"content": string}.
 *   - Collection = corpus documents + every passage of the records, each
 *     distinct text once (first appearance order), then shuffled (seed).
 *   - Records are grouped by query; per query the positives and negatives are
 *     de-duplicated and a negative that is also a positive is dropped
 *     (beyond: the reference keeps duplicates, which repeats triplets).
 *   - New negatives per query (num_new_negatives > 0): random documents of
 *     the collection that are neither a positive nor a negative of the query
 *     (beyond: exactly min(n, available) of them; the reference draws n and
 *     then drops the known ones), or mined candidates through a miner.
 *   - Triplets: one positive -> one per negative; P > 1 positives ->
 *     max(1, 20 / P) sampled negatives per positive, topped up to 20 from the
 *     other (positive, negative) combinations without duplicates.
 *   - No triplet after mining -> warn, retry with random negatives; still
 *     none -> an error that says why and how to fix it.
 *   - Deterministic (beyond): every random choice comes from rng.h seeded with
 *     (seed, stream), one stream per query, so the same inputs and seed give
 *     byte-identical files on every machine.
 *
 * Memory: strings are interned once (strtab.h: hash table + one text
 * arena), records become 8-byte (query, passage) edges, files are streamed
 * line by line, so memory is a small multiple of the distinct text, not of
 * the input. Out of memory is an error like any other (err "out of memory:
 * ..."); nothing exits.
 *
 * Code: prepare.c (state, negatives, triplets, export) and prepare_read.c
 * (the readers), sharing prepare_read.h.
 */
#ifndef CB_PREPARE_H
#define CB_PREPARE_H
#include <stddef.h>
#include <stdint.h>
#include "common.h"

typedef enum {
    PREPARE_KIND_AUTO = 0,   /* from the first record */
    PREPARE_KIND_PAIRS,
    PREPARE_KIND_LABELED,
    PREPARE_KIND_TRIPLETS,
} prepare_kind;

typedef enum {
    PREPARE_NEG_RANDOM = 0,  /* random documents of the collection */
    PREPARE_NEG_MINED,       /* candidates from opts.miner (hard negatives) */
} prepare_negatives;

typedef struct prepare prepare;

/* A hard-negative miner plugs in here. candidates() is called once, after the
 * collection is final, for all queries at once (so it can batch): it sets
 * *off to a malloc'd [n_queries + 1] array and *cands to a malloc'd array of
 * passage ids, the ranked candidates of query q being cands[off[q] ..
 * off[q+1]). prepare drops the query's known positives and negatives and
 * samples num_new_negatives of the rest, then frees both arrays. Returns 0,
 * or -1 with err set. Texts come from cb_prepare_query() / cb_prepare_passage(). */
typedef struct prepare_miner {
    void *ctx;
    int (*candidates)(void *ctx, const prepare *p, uint64_t **off, uint32_t **cands, cb_err *err);
} prepare_miner;

typedef struct prepare_opts {
    prepare_kind kind;             /* AUTO */
    int num_new_negatives;         /* 10 */
    int max_triplets_per_query;    /* 20: the multi-positive rule */
    const char *positive_label;    /* "1": an integer matches JSON numbers
                                      (and true/false as 1/0, as in Python) and
                                      the same text; other text matches strings */
    const char *negative_label;    /* "0" */
    uint64_t seed;                 /* 42 */
    prepare_negatives negatives;   /* RANDOM; MINED needs a miner */
    const prepare_miner *miner;    /* NULL */
    const char *title_sep;         /* " ": between title and text (BEIR and
                                      JSONL corpora) */
    int no_title;                  /* 0: use titles; 1: text only */
    int quiet;                     /* 0: progress bars on long inputs, warnings */
} prepare_opts;

typedef struct prepare_stats {
    int64_t records;               /* training records read (BEIR: qrels pairs) */
    int64_t queries;               /* distinct queries */
    int64_t passages;              /* documents in the collection */
    int64_t corpus_docs;           /* documents from corpus files (before de-duplication) */
    int64_t triplets;
    int64_t queries_with_triplets;
    int64_t new_negatives;         /* drawn over all queries */
    int64_t neg_min, neg_max;      /* negatives per query with a triplet */
    double neg_mean;
    int mined;                     /* 1 when the triplets use mined negatives */
    prepare_kind kind;             /* the kind detected or forced */
} prepare_stats;

/* Defaults as listed above (the reference's). */
void cb_prepare_opts_default(prepare_opts *o);

/* A new, empty preparation; opts is copied (its strings must outlive p).
 * NULL when out of memory. */
prepare *cb_prepare_new(const prepare_opts *opts);
void cb_prepare_free(prepare *p);

/* Extra documents: JSONL ({"text": ..., optional "title"}), TSV
 * ("id<TAB>text", a header line "id..." is skipped) or plain text (one
 * document a line); the form comes from the extension (.jsonl/.json, .tsv),
 * else from the first line ('{' -> JSONL), else plain text. Blank lines are
 * skipped. Returns 0, or -1 with "FILE:LINE: ..." in err. */
int cb_prepare_add_corpus(prepare *p, const char *path, cb_err *err);

/* Training records: JSONL (each line a JSON list, see the kinds above) or
 * TSV (2 or 3 tab-separated columns; a first line starting with "query" is
 * a header). Form from the first non-blank character ('[' -> JSONL).
 * Returns 0, or -1 with "FILE:LINE: ..." in err. */
int cb_prepare_add_train(prepare *p, const char *path, cb_err *err);

/* The same two from text in memory, data[0, len) in the form of a file
 * (JSONL lines, TSV or plain text, detected from the first line), named
 * `name` in messages ("NAME:LINE: ..."). The Python package hands its
 * records over this way, so they take the very path a file takes. */
int cb_prepare_add_corpus_mem(prepare *p, const char *name, const char *data, size_t len, cb_err *err);
int cb_prepare_add_train_mem(prepare *p, const char *name, const char *data, size_t len, cb_err *err);

/* A BEIR directory, read by beir.h: corpus.jsonl (all documents join the
 * collection, title and text joined by title_sep; empty ones are left out
 * with a warning), queries.jsonl, and qrels/<split>.tsv whose lines with
 * score > 0 are (query, document) pairs. */
int cb_prepare_add_beir(prepare *p, const char *dir, const char *split, cb_err *err);

/* One record from memory: a (query, passage) edge, positive or negative.
 * For callers that build records themselves; no kind checks. */
int cb_prepare_add_example(prepare *p, const char *query, size_t qlen, const char *passage,
                        size_t plen, int positive, cb_err *err);

/* Build the collection, group by query, draw new negatives and make the
 * shuffled triplets. Returns 0, or -1 with err (e.g. no triplet, and why). */
int cb_prepare_run(prepare *p, cb_err *err);

/* Write the three files into out_dir (created if missing) as one set:
 * each under a temporary name and fsync'd, then the manifest
 * out_dir/CB_PREPARE_MANIFEST (each file's size and content hash), then
 * the renames (each followed by an fsync of the directory). Temporary
 * files that a killed prepare left there are removed first. On failure
 * nothing new is left; a kill leaves the old set or files that disagree
 * with the manifest, which cb_prepare_check refuses. Call after
 * cb_prepare_run. */
int cb_prepare_export(prepare *p, const char *out_dir, cb_err *err);

#define CB_PREPARE_MANIFEST "manifest.train.colbert.json"

/* 0 when dir has no manifest (files from colbert-ai or elsewhere), or when
 * the three files match it; else -1 with err naming the file that does
 * not (a mixed set), or the manifest when it is malformed. */
int cb_prepare_check(const char *dir, cb_err *err);

/* After cb_prepare_run (or during miner->candidates): sizes and texts. */
const prepare_stats *cb_prepare_get_stats(const prepare *p);
size_t cb_prepare_n_queries(const prepare *p);
size_t cb_prepare_n_passages(const prepare *p);
const char *cb_prepare_query(const prepare *p, uint32_t qid, size_t *len);
const char *cb_prepare_passage(const prepare *p, uint32_t pid, size_t *len);
/* The triplets [n, 3] (qid, pos_pid, neg_pid) in file order. */
const uint32_t *cb_prepare_triplets(const prepare *p, size_t *n);

const char *cb_prepare_kind_name(prepare_kind k);

#endif
