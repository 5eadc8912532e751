/* eval.h: retrieval quality of a ColBERT model on a BEIR dataset.
 *
 * Data: a BEIR directory (corpus.jsonl, queries.jsonl, qrels/<split>.tsv),
 *   read by beir.h, the reader prepare --beir uses too.
 *   Documents are "title text" (joined by one space, as prepare does by
 *   default; the text alone when the title is blank). The queries are those
 *   with at least one qrels line in the split, in order of first appearance
 *   there. Ids are kept as text.
 * Ranking: exact MaxSim of every query against every document, by blocks of
 *   documents times batches of queries, one SGEMM each
 *   ([block rows, D] x [D, EVAL_QB * Lq]), then per document the max over
 *   its rows and the sum over each query's Lq columns, then a bounded heap
 *   per query (topk.h). Threads split the document blocks; the buffers are allocated
 *   once, nothing per query.
 * Order: score descending, equal scores by document id descending
 *   (strcmp), which is how trec_eval orders a run, so our metrics and
 *   trec_eval's on our run file agree exactly.
 * Metrics (trec_eval's definitions; relevant = grade > 0):
 *   nDCG@10   sum_{r<=10} grade(r) / log2(r + 1), divided by the same sum
 *             over the ideal ordering of the query's grades (0 when none)
 *   MRR@10    1 / rank of the first relevant document in the top 10, else 0
 *   Recall@k  relevant documents in the top k / relevant documents (0 when none)
 *   Each metric is the mean over the split's queries.
 */
#ifndef CB_EVAL_H
#define CB_EVAL_H
#include <stddef.h>
#include <stdint.h>
#include "beir.h"
#include "comm.h"
#include "common.h"

typedef struct eval_data {
    size_t n_docs;
    const char **doc_id;        /* [n_docs] */
    const char **doc_text;      /* [n_docs] title + " " + text */
    size_t *doc_len;            /* [n_docs] */
    uint32_t *doc_tie;          /* [n_docs] rank of the id in descending strcmp order */
    uint32_t *doc_by_id;        /* [n_docs] indices in ascending strcmp order */
    size_t n_queries;
    const char **query_id;      /* [n_queries] */
    const char **query_text;    /* [n_queries] */
    size_t *query_len;          /* [n_queries] */
    uint32_t *query_index;      /* [queries of queries.jsonl] index in the split, or UINT32_MAX */
    /* judgements of query q: rel_doc/rel_grade[rel_off[q] .. rel_off[q+1]),
     * sorted by document index, one per document */
    size_t *rel_off;            /* [n_queries + 1] */
    uint32_t *rel_doc;
    int32_t *rel_grade;
    beir src;                   /* the tables every string above points into */
} eval_data;

/* Load dir's corpus, queries and qrels/<split>.tsv with cb_beir_read (a header
 * line, CRLF and blank lines allowed; grades are integers; its errors, plus
 * "no judgement" for a split without a line). max_queries > 0 keeps only
 * the first max_queries queries. Returns 0 or -1 with err set (out of memory
 * included); d is freed on failure. */
int cb_eval_data_load(eval_data *d, const char *dir, const char *split, size_t max_queries, cb_err *err);
void cb_eval_data_free(eval_data *d);

/* Index of the document with this id, or -1 (a hash lookup). */
int64_t cb_eval_doc_index(const eval_data *d, const char *id, size_t len);

/* Top `depth` documents per query by MaxSim, fed with the documents in
 * chunks (so that a corpus never has to be held as vectors at once).
 * Query q has Lq vectors qv[q] (all scored); document doc0 + i of a chunk has
 * lengths[i] rows of dv. tie (may be NULL: index order) breaks equal
 * scores, the lower tie value first. Every buffer is allocated by init. */
typedef struct eval_ranker {
    const float *qv;            /* [nq, Lq, D], the caller's */
    const uint32_t *tie;        /* [documents] or NULL, the caller's */
    int nq, Lq, D, depth, max_docs, block_rows, n_threads;
    struct topk_hit *heap;      /* [nq, depth] the best so far per query (topk.h) */
    int *heap_n;                /* [nq] */
    float *scores;              /* [EVAL_QB, max_docs] one query batch x one chunk */
    float *sim;                 /* [n_threads, block_rows, EVAL_QB * Lq] */
    float *colmax;              /* [n_threads, EVAL_QB * Lq] */
    size_t *off;                /* [max_docs + 1] */
    int *block;                 /* [max_docs + 1] first document of each block */
} eval_ranker;

#define EVAL_QB 32              /* queries per SGEMM */

/* max_docs: the most documents one cb_eval_ranker_add gets; max_len: the most
 * vectors one document has (doc_maxlen). Returns 0, or -1 when out of memory
 * (r is then empty; the buffers are about n_threads * max(2048, max_len) *
 * EVAL_QB * Lq floats). */
int cb_eval_ranker_init(eval_ranker *r, const float *qv /* [nq, Lq, D] */, const uint32_t *tie,
                     int nq, int Lq, int D, int depth, int max_docs, int max_len);
void cb_eval_ranker_add(eval_ranker *r, const float *dv /* [sum lengths, D] */,
                     const int *lengths /* [nd] */, int doc0, int nd);
/* The ranking, best first; -1 / -inf past the documents seen. */
void cb_eval_ranker_finish(eval_ranker *r, int32_t *top /* [nq, depth] */, float *top_score /* [nq, depth] */);
void cb_eval_ranker_free(eval_ranker *r);

/* Data-parallel ranking (comm.h): each rank ranked a share of the
 * documents into top/top_score [nq, depth] (cb_eval_ranker_finish: best
 * first, -1 past its list). Afterwards every rank holds the ranking of all
 * the documents, in the order one process computes (score descending, then
 * the lower tie value, or index when tie is NULL). 0, or -1 with err (out
 * of memory). */
int cb_eval_merge_ranks(cb_comm *c, int32_t *top, float *top_score, int nq, int depth, const uint32_t *tie,
                     cb_err *err);

typedef struct eval_metrics {
    double ndcg10, mrr10, recall10, recall100;
} eval_metrics;

/* Metrics of a ranking (top [n_queries, depth] document indices, -1 for
 * none; depth >= 100 for Recall@100 to count the whole top 100): the means
 * into *mean, each query's into per_query[q] when not NULL. */
void cb_eval_score(eval_metrics *mean, eval_metrics *per_query /* [n_queries] */, const eval_data *d,
                const int32_t *top /* [n_queries, depth] */, int depth);

/* A TREC run file ("qid Q0 docid rank score tag" lines), ordered as trec_eval
 * orders it (score descending, then docid descending), cut to depth per
 * query: *top [n_queries, depth] (caller frees), -1 past a query's list and
 * for queries the file lacks (they score 0, as trec_eval -c). Lines of
 * queries outside the split are skipped; a document id not in the corpus or
 * a document listed twice for a query is an error. */
int cb_eval_read_run(int32_t **top, const eval_data *d, const char *path, int depth, cb_err *err);

/* Write the first `count` (<= depth) documents of each row of top/top_score
 * as a TREC run ("qid Q0 docid rank score tag", rank from 1, score with 9
 * significant digits so that the order survives), atomically (temporary
 * name, renamed when complete). */
int cb_eval_write_run(const char *path, const eval_data *d, const int32_t *top /* [n_queries, depth] */,
                   const float *top_score /* [n_queries, depth] */, int depth, int count, const char *tag,
                   cb_err *err);
#endif
