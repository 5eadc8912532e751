/* job.h: whole jobs, as one `colbert` command does them, as plain library
 * calls: training data (prepare + miner), evaluation of a model on a BEIR
 * split, ColBERT vectors of texts, and the thread count.
 *
 * The CLI (cli/prepare.c, cli/eval.c, cli/encode.c) and the Python package
 * (python/colbert_c) both call these, so the two cannot drift: the same
 * inputs give the same files, metrics and vectors. Nothing here prints to
 * stdout; progress bars and notes go to stderr unless quiet.
 */
#ifndef CB_JOB_H
#define CB_JOB_H
#include <stddef.h>
#include <stdint.h>
#include "comm.h"
#include "colmodel.h"
#include "common.h"
#include "eval.h"
#include "miner.h"
#include "ops.h"
#include "prepare.h"

/* OpenMP and OpenBLAS threads for what follows in this thread; n <= 0:
 * back to the default (OMP_NUM_THREADS, else all cores). */
void cb_set_threads(int n);

/* ---- prepare: `colbert prepare` ------------------------------------------ */

typedef struct prepare_job {
    /* inputs, added in this order (the collection's order depends on it) */
    const char *const *corpus;     /* corpus files (prepare.h's forms) */
    int n_corpus;
    const char *corpus_mem;        /* or/and corpus text in memory (JSONL, ...) */
    size_t corpus_mem_len;
    const char *corpus_mem_name;   /* its name in messages ("all_documents") */
    const char *beir;              /* a BEIR directory, NULL for none */
    const char *split;             /* its qrels split ("train") */
    const char *const *train;      /* training record files */
    int n_train;
    const char *train_mem;         /* or/and records in memory (JSONL lines) */
    size_t train_mem_len;
    const char *train_mem_name;    /* "raw_data" */
    const char *out;               /* the output directory */
    prepare_opts po;               /* po.negatives MINED (and num_new_negatives > 0): a miner with mo */
    miner_opts mo;
    cb_comm *comm;                 /* NULL: one process; else the ranks split the mining, rank 0 writes */
    /* results, after cb_prepare_job_run returned 0 */
    prepare *p;                    /* stats, texts, triplets; freed by cb_prepare_job_free */
    miner m;                       /* its report when mining */
    int mining;
    double seconds;
} prepare_job;

/* Defaults: prepare's, with mined negatives (the reference's default), and
 * the miner's; no inputs. */
void cb_prepare_job_init(prepare_job *j);
/* Find the miner's model first (a missing model fails before any data is
 * read), read the inputs, build the triplets, write the three files into
 * j->out (nothing new is left there on failure). Returns 0, or -1 with err. */
int cb_prepare_job_run(prepare_job *j, cb_err *err);
void cb_prepare_job_free(prepare_job *j);

/* ---- eval: `colbert eval` ------------------------------------------------- */

typedef struct eval_job {
    const char *model;             /* a ColBERT checkpoint or a plain encoder; NULL with run_in */
    const char *dataset, *split;   /* a BEIR directory and its qrels split ("test") */
    const char *run_in;            /* score this TREC run file instead of a model */
    const char *run_out;           /* also write the ranking as a TREC run file (NULL: no) */
    int depth;                     /* 100: documents per query in run_out */
    int doc_maxlen, query_maxlen;  /* 0: the model's (dense: doc_maxlen caps its tokens) */
    size_t max_queries;            /* 0: all the split's */
    int dim;                       /* 0: 128, a new ColBERT's projection */
    uint64_t seed;                 /* 12345: a new ColBERT's projection */
    int dense;                     /* rank with the model as a dense sentence encoder (its pooling,
                                      cosine, exact search) instead of ColBERT MaxSim */
    ops_device *dev;               /* where the ColBERT encodes (NULL: the CPU); the ranking runs on the CPU */
    cb_comm *comm;                 /* NULL: one process; else the ranks split the encoding and the
                                      ranking (all call together) and all get the result */
    int quiet;
    /* results */
    eval_metrics m;
    size_t n_queries, n_docs, doc_vectors;
    double t_data, t_model, t_queries, t_docs, t_maxsim, t_total;   /* seconds (several ranks: the slowest's) */
} eval_job;

void cb_eval_job_init(eval_job *j);
/* Rank every document of the split's corpus for each query by exact MaxSim
 * (documents encoded and ranked EVAL_JOB_CHUNK at a time) and score the
 * ranking (eval.h); or score run_in. Returns 0, or -1 with err. */
int cb_eval_job_run(eval_job *j, cb_err *err);

#define EVAL_JOB_CHUNK 256         /* documents encoded and ranked at a time */

/* ---- encode: `colbert encode --colbert query|doc` ------------------------- */

typedef struct colbert_vectors {
    int n, dim, query_maxlen;
    float *vectors;                /* queries: [n, query_maxlen, dim]; docs: [sum lengths, dim] */
    int *lengths;                  /* docs: [n] kept vectors per document; NULL for queries */
} colbert_vectors;

/* Load model on dev (NULL: the CPU) as `colbert encode --colbert` does: a
 * ColBERT checkpoint, or a plain encoder with a new projection of 128
 * seeded 12345. Returns 0, or -1 with err; cb_colmodel_free it. */
int cb_encode_colbert_load(colmodel *m, ops_device *dev, const char *model, cb_err *err);
/* Encode texts with m as queries or documents. Returns 0, or -1 with err;
 * free the result with cb_colbert_vectors_free. */
int cb_encode_colbert_run(colbert_vectors *out, colmodel *m, const char *const *texts, const size_t *lens, int n,
                          int queries, cb_err *err);
/* Both, for one call (the Python package's encode). */
int cb_encode_colbert_job(colbert_vectors *out, ops_device *dev, const char *model, const char *const *texts,
                          const size_t *lens, int n, int queries, int quiet, cb_err *err);
void cb_colbert_vectors_free(colbert_vectors *v);
#endif
