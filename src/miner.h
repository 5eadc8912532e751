/* miner.h: hard-negative mining for `colbert prepare` (RAGatouille's
 * SimpleMiner, ../shared/SPEC.md section 3), plugged into prepare.h through
 * its prepare_miner hook.
 *
 * What it does, once for all queries:
 *   1. embeds the whole collection and every query with a dense
 *      sentence-transformers model (encoder.h: batched, sorted by length,
 *      multi-threaded), then L2-normalises them (cosine, as Voyager's
 *      Space.Cosine in the reference);
 *   2. finds each query's top max_rank documents, max_rank =
 *      min(110, n_docs / 10), with an exact search (blocked SGEMM and one
 *      bounded heap per query) or, for large collections, an approximate
 *      inverted-file index (IVF-flat: spherical k-means lists, the nprobe
 *      nearest lists scanned exactly), both knn.h's. AUTO picks IVF from
 *      approx_min_docs documents on;
 *   3. hands prepare the ranks [min_rank, max_rank) of each list as
 *      candidates; prepare drops the query's positives and known negatives
 *      and samples num_new_negatives of the rest with its seeded rng.
 * Beyond the reference: the minimum rank is applied (the reference compares
 * the length of Voyager's (ids, distances) pair, 2, with 10, so it never
 * is), queries are embedded in batches, and ties are broken by document id,
 * so the same input and seed give the same triplets on every run.
 *
 * Why IVF and not HNSW: see docs/prepare.md (mining). In short, IVF search
 * and build are matrix multiplies (OpenBLAS does the work), its build is
 * deterministic with any thread count (hnswlib's parallel insertion is not,
 * which would break byte-identical output). Measured on NFCorpus it needs
 * most of the lists for recall@110 >= 0.99 (the tail of a top-110 list is
 * diffuse), so AUTO keeps exact search for anything but large collections.
 */
#ifndef CB_MINER_H
#define CB_MINER_H
#include <stddef.h>
#include <stdint.h>
#include "comm.h"
#include "common.h"
#include "knn.h"
#include "ops.h"
#include "prepare.h"

typedef enum {
    MINER_INDEX_AUTO = 0,   /* exact below approx_min_docs documents, else IVF */
    MINER_INDEX_EXACT,
    MINER_INDEX_IVF,
} miner_index;

typedef struct miner_opts {
    const char *model;        /* NULL: cb_miner_default_model(language, size) */
    const char *language;     /* "en" */
    const char *size;         /* "small" (small, base, large) */
    int min_rank;             /* 10: first rank kept as a candidate */
    int max_rank_cap;         /* 110: max_rank = min(cap, n_docs / 10) */
    int max_len;              /* 0: the model's max_seq_length */
    miner_index index;        /* AUTO */
    size_t approx_min_docs;   /* 250000: AUTO uses IVF from here on */
    int ivf_nlist;            /* 0: about 4 sqrt(n_docs) */
    int ivf_nprobe;           /* 0: enough lists for about 24 max_rank documents */
    uint64_t seed;            /* 42: k-means initialisation */
    const char *save_dir;     /* NULL, or a directory for the embeddings and lists */
    const char *load_dir;     /* NULL, or a directory written by save_dir: no encoding */
    int quiet;                /* 0: progress bars and the one-line report */
    const char *device;       /* NULL: "auto" (a GPU if any, else the CPU); "cpu", "cuda", "cuda:N" */
    ops_precision precision;  /* OPS_BF16 (default) on a GPU; OPS_FP32 picks the CPU's negatives */
    cb_comm *comm;            /* NULL: one process; else the ranks (all call cb_miner_candidates
                               * together) split the encoding and the search, and every
                               * rank gets the same candidates one process finds; rank 0
                               * alone writes save_dir */
} miner_opts;

typedef struct miner_stats {
    size_t n_docs, n_queries;
    int dim, min_rank, max_rank;
    miner_index index;        /* the one used: EXACT or IVF */
    int nlist, nprobe;        /* IVF only */
    double t_load, t_encode, t_index, t_search;   /* seconds */
    int loaded;               /* embeddings came from load_dir */
} miner_stats;

typedef struct miner {
    miner_opts o;
    char *model_dir;          /* resolved; NULL with load_dir */
    char model_name[512];     /* as named (hub id or path) */
    miner_stats st;
} miner;

void cb_miner_opts_default(miner_opts *o);

/* The reference's model table (SPEC section 3): en -> BAAI/bge-SIZE-en-v1.5,
 * zh -> thenlper/gte-SIZE-zh, fr -> OrdalieTech/Solon-embeddings-{base,base,
 * large}-0.1, any other language -> intfloat/multilingual-e5-SIZE. NULL when
 * size is not small, base or large. */
const char *cb_miner_default_model(const char *language, const char *size);

/* Check the options and find the model (a directory or a hub id in the
 * local Hugging Face cache) before any data is read, so a missing model
 * fails fast: the error names the model and how to provide it. opts is
 * copied (its strings must outlive m). Returns 0, or -1 with err. */
int cb_miner_init(miner *m, const miner_opts *opts, cb_err *err);
void cb_miner_free(miner *m);

/* The prepare hook: {m, cb_miner_candidates}. */
prepare_miner cb_miner_hook(miner *m);
/* prepare_miner.candidates (see prepare.h): ctx is a miner *. */
int cb_miner_candidates(void *ctx, const prepare *p, uint64_t **off, uint32_t **cands, cb_err *err);

/* One line on what was done (model, sizes, index, window, seconds per phase). */
void cb_miner_report(const miner *m, FILE *f);
const char *cb_miner_index_name(miner_index k);

/* max_rank = min(cap, n_docs / 10) (the reference's, also capped by n_docs). */
int cb_miner_max_rank(size_t n_docs, int cap);
#endif
