/* knn.h: the k nearest neighbours of each query by inner product (unit
 * rows: cosine), as the miner (miner.h) and a dense evaluation (job.h)
 * search: an exact search (blocked SGEMM and one bounded heap per query)
 * and an approximate inverted-file index (IVF-flat: spherical k-means
 * lists, the nprobe nearest lists scanned exactly). Both give the same
 * output for any thread count; bench/bench_ann.c measures one against the
 * other. */
#ifndef CB_KNN_H
#define CB_KNN_H
#include <stddef.h>
#include <stdint.h>

/* Exact top-k by inner product. q[nq, dim], d[nd, dim] (row-major; unit
 * rows for cosine). ids[nq, k] and scores[nq, k] get each query's k best
 * documents, best first; ties in score go to the lower id; -1 / -INFINITY
 * pad when nd < k. Blocked SGEMM, query blocks in parallel (OpenMP).
 * Returns 0, or -1 when out of memory (the search buffers, per thread). */
int cb_knn_exact(int32_t *ids, float *scores, const float *q, size_t nq, const float *d, size_t nd, int dim,
                 int k);

/* IVF-flat: an inverted-file index over unit vectors. */
typedef struct knn_ivf {
    int dim, nlist;
    size_t n;
    float *centroids;    /* [nlist, dim], unit rows */
    uint64_t *list_off;  /* [nlist + 1] */
    int32_t *list_ids;   /* [n] document ids, list by list */
    float *list_vecs;    /* [n, dim] the vectors in list order */
} knn_ivf;

/* Build from x[n, dim]: spherical k-means (iters rounds on a seeded sample
 * of at most 64 points per list), then every vector joins its nearest
 * centroid's list. nlist <= 0: about 4 sqrt(n). Deterministic for a seed.
 * Returns 0, or -1 when out of memory (ix is then empty). */
int cb_knn_ivf_build(knn_ivf *ix, const float *x, size_t n, int dim, int nlist, int iters, uint64_t seed);
void cb_knn_ivf_free(knn_ivf *ix);
/* The default nprobe for k: about 24 k documents scanned, at least nlist / 8
 * lists. */
int cb_knn_ivf_nprobe(const knn_ivf *ix, int k);
/* Top-k of each query among the documents of its nprobe nearest lists;
 * same output contract as cb_knn_exact, and 0 or -1 when out of memory. */
int cb_knn_ivf_search(const knn_ivf *ix, int32_t *ids, float *scores, const float *q, size_t nq, int k,
                      int nprobe);

/* L2-normalise the rows of x[n, dim] in place (a zero row stays zero). */
void cb_knn_normalize(float *x, size_t n, int dim);
#endif
