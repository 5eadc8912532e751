/* knn.c: see knn.h. The per-query top-k heaps are topk.h's (ties to the
 * lower document id). The parallel searches take their per-thread buffers
 * from one allocation made before the region; if it fails they return -1
 * (nothing exits). */
#include "knn.h"
#include "blas.h"
#include "rng.h"
#include "topk.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

void cb_knn_normalize(float *x, size_t n, int dim) {
    for (size_t i = 0; i < n; i++) {
        float *r = x + i * (size_t)dim;
        double s = 0;
        for (int j = 0; j < dim; j++) s += (double)r[j] * r[j];
        if (s <= 0) continue;
        float inv = (float)(1.0 / sqrt(s));
        for (int j = 0; j < dim; j++) r[j] *= inv;
    }
}

/* ======================================================================== */
/* Exact search                                                             */
/* ======================================================================== */

/* Scratch of a parallel search: `bytes` for each thread, one allocation for
 * all of them made before the region (so that a failure is reported, not
 * met inside it). Thread t owns mem[t * bytes .. (t + 1) * bytes). */
typedef struct scratch {
    char *mem;
    size_t bytes;
} scratch;

static int scratch_alloc(scratch *s, size_t bytes) {
#ifdef _OPENMP
    size_t threads = (size_t)omp_get_max_threads();
#else
    size_t threads = 1;
#endif
    s->bytes = (bytes + 63) & ~(size_t)63;   /* each thread on its own cache lines */
    s->mem = malloc(threads * s->bytes);
    return s->mem ? 0 : -1;
}

static char *scratch_mine(const scratch *s) {
#ifdef _OPENMP
    return s->mem + (size_t)omp_get_thread_num() * s->bytes;
#else
    return s->mem;
#endif
}

#define DOC_BLOCK 2048

int cb_knn_exact(int32_t *ids, float *scores, const float *q, size_t nq, const float *d, size_t nd, int dim,
                 int k) {
    if (nq == 0 || k <= 0) return 0;
    /* Fixed block shapes: the same rounding for any thread count. */
    const size_t QB = 64;
    size_t nblk = (nq + QB - 1) / QB;
    /* Query blocks in parallel; inside a parallel region OpenBLAS runs each
     * SGEMM on one thread, so the results do not depend on the thread count. */
    /* per thread: S [QB, DOC_BLOCK], QB heaps of k hits, QB counts */
    size_t o_heaps = QB * DOC_BLOCK * sizeof(float), o_cnt = o_heaps + QB * (size_t)k * sizeof(topk_hit);
    scratch sc;
    if (scratch_alloc(&sc, o_cnt + QB * sizeof(int))) return -1;
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t b = 0; b < nblk; b++) {
        char *mem = scratch_mine(&sc);
        float *S = (float *)(void *)mem;
        topk_hit *heaps = (topk_hit *)(void *)(mem + o_heaps);
        int *cnt = (int *)(void *)(mem + o_cnt);
        size_t q0 = b * QB, m = nq - q0 < QB ? nq - q0 : QB;
        memset(cnt, 0, m * sizeof(int));
        for (size_t d0 = 0; d0 < nd; d0 += DOC_BLOCK) {
            size_t nb = nd - d0 < DOC_BLOCK ? nd - d0 : DOC_BLOCK;
            /* S[m, nb] = Q[q0.., :] D[d0.., :]^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nb, dim, 1.0f,
                        q + q0 * (size_t)dim, dim, d + d0 * (size_t)dim, dim, 0.0f, S, (int)nb);
            for (size_t i = 0; i < m; i++)
                cb_topk_push_row(heaps + i * (size_t)k, &cnt[i], k, S + i * nb, nb, NULL, (int32_t)d0);
        }
        for (size_t i = 0; i < m; i++) {
            cb_topk_sort(heaps + i * (size_t)k, cnt[i]);
            cb_topk_write(heaps + i * (size_t)k, cnt[i], k, ids + (q0 + i) * (size_t)k,
                       scores + (q0 + i) * (size_t)k);
        }
    }
    free(sc.mem);
    return 0;
}

/* ======================================================================== */
/* IVF-flat                                                                 */
/* ======================================================================== */

#define CENT_BLOCK 4096

/* a[i] = the centroid of c[nc, dim] with the highest dot product with
 * x[i], i < n (ties: lower index). Blocks of points in parallel. */
static int ivf_assign(int32_t *a, const float *x, size_t n, const float *c, int nc, int dim) {
    const size_t PB = 128;
    size_t nblk = (n + PB - 1) / PB;
    size_t cb = (size_t)nc < CENT_BLOCK ? (size_t)nc : CENT_BLOCK;
    scratch sc;   /* per thread: S [PB, cb], best [PB] */
    if (scratch_alloc(&sc, (PB * cb + PB) * sizeof(float))) return -1;
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t b = 0; b < nblk; b++) {
        float *S = (float *)(void *)scratch_mine(&sc), *best = S + PB * cb;
        size_t p0 = b * PB, m = n - p0 < PB ? n - p0 : PB;
        for (size_t i = 0; i < m; i++) best[i] = -INFINITY, a[p0 + i] = 0;
        for (size_t c0 = 0; c0 < (size_t)nc; c0 += cb) {
            size_t nb = (size_t)nc - c0 < cb ? (size_t)nc - c0 : cb;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nb, dim, 1.0f,
                        x + p0 * (size_t)dim, dim, c + c0 * (size_t)dim, dim, 0.0f, S, (int)nb);
            for (size_t i = 0; i < m; i++)
                for (size_t j = 0; j < nb; j++)
                    if (S[i * nb + j] > best[i]) best[i] = S[i * nb + j], a[p0 + i] = (int32_t)(c0 + j);
        }
    }
    free(sc.mem);
    return 0;
}

int cb_knn_ivf_build(knn_ivf *ix, const float *x, size_t n, int dim, int nlist, int iters, uint64_t seed) {
    memset(ix, 0, sizeof *ix);
    ix->dim = dim;
    ix->n = n;
    if (nlist <= 0) nlist = (int)lround(4.0 * sqrt((double)n));
    if ((size_t)nlist > n) nlist = (int)n;
    if (nlist < 1) nlist = 1;
    ix->nlist = nlist;
    size_t L = (size_t)nlist, D = (size_t)dim, ns = n < 64 * L ? n : 64 * L;
    ix->centroids = calloc(L * D, sizeof(float));
    ix->list_off = calloc(L + 1, sizeof(uint64_t));
    ix->list_ids = malloc((n ? n : 1) * sizeof(int32_t));
    ix->list_vecs = malloc((n ? n : 1) * D * sizeof(float));
    uint32_t *perm = malloc((n ? n : 1) * sizeof(uint32_t));
    float *xs = malloc((ns ? ns : 1) * D * sizeof(float));
    int32_t *a = malloc(((n > ns ? n : ns) + 1) * sizeof(int32_t));
    double *sum = malloc(L * D * sizeof(double));
    size_t *cnt = malloc(L * sizeof(size_t));
    int rc = -1;
    if (!ix->centroids || !ix->list_off || !ix->list_ids || !ix->list_vecs || !perm || !xs || !a || !sum || !cnt)
        goto done;
    rc = 0;
    if (n == 0) goto done;

    /* A seeded sample (partial Fisher-Yates); its first nlist points seed
     * the centroids. */
    rng r;
    cb_rng_init(&r, seed, 0x1f5);
    for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
    for (size_t i = 0; i < ns; i++) {
        size_t j = i + (size_t)cb_rng_below(&r, n - i);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (size_t i = 0; i < ns; i++) memcpy(xs + i * D, x + (size_t)perm[i] * D, D * sizeof(float));
    memcpy(ix->centroids, xs, L * D * sizeof(float));

    /* Spherical k-means: assign by dot product, centroid = normalised sum.
     * Sums run over the sample in order, so any thread count gives the
     * same centroids. An empty list takes a random sample point. */
    for (int it = 0; it < iters && L > 1 && !rc; it++) {
        if ((rc = ivf_assign(a, xs, ns, ix->centroids, nlist, dim))) break;
        memset(sum, 0, L * D * sizeof(double));
        memset(cnt, 0, L * sizeof(size_t));
        for (size_t i = 0; i < ns; i++) {
            double *sm = sum + (size_t)a[i] * D;
            const float *v = xs + i * D;
            for (size_t j = 0; j < D; j++) sm[j] += v[j];
            cnt[a[i]]++;
        }
        for (size_t l = 0; l < L; l++) {
            float *c = ix->centroids + l * D;
            if (cnt[l] == 0) {
                memcpy(c, xs + (size_t)cb_rng_below(&r, ns) * D, D * sizeof(float));
                continue;
            }
            for (size_t j = 0; j < D; j++) c[j] = (float)sum[l * D + j];
        }
        cb_knn_normalize(ix->centroids, L, dim);
    }

    /* Every vector joins its list; ids ascend within a list. */
    if (rc || (rc = ivf_assign(a, x, n, ix->centroids, nlist, dim))) goto done;
    memset(cnt, 0, L * sizeof(size_t));
    for (size_t i = 0; i < n; i++) cnt[a[i]]++;
    for (size_t l = 0; l < L; l++) ix->list_off[l + 1] = ix->list_off[l] + cnt[l];
    memset(cnt, 0, L * sizeof(size_t));
    for (size_t i = 0; i < n; i++) {
        size_t pos = ix->list_off[a[i]] + cnt[a[i]]++;
        ix->list_ids[pos] = (int32_t)i;
        memcpy(ix->list_vecs + pos * D, x + i * D, D * sizeof(float));
    }
done:
    free(perm);
    free(xs);
    free(a);
    free(sum);
    free(cnt);
    if (rc) cb_knn_ivf_free(ix);
    return rc;
}

void cb_knn_ivf_free(knn_ivf *ix) {
    free(ix->centroids);
    free(ix->list_off);
    free(ix->list_ids);
    free(ix->list_vecs);
    memset(ix, 0, sizeof *ix);
}

int cb_knn_ivf_nprobe(const knn_ivf *ix, int k) {
    if (ix->nlist <= 0 || ix->n == 0) return 1;
    double per_list = (double)ix->n / ix->nlist;
    /* The tail of a top-110 list is diffuse: on NFCorpus (MiniLM) recall@110
     * reaches 0.99 when about 20 k documents are scanned (docs/prepare.md). */
    int np = (int)ceil(24.0 * k / per_list);
    if (np < (ix->nlist + 7) / 8) np = (ix->nlist + 7) / 8;
    if (np > ix->nlist) np = ix->nlist;
    return np < 1 ? 1 : np;
}

int cb_knn_ivf_search(const knn_ivf *ix, int32_t *ids, float *scores, const float *q, size_t nq, int k,
                      int nprobe) {
    if (nq == 0 || k <= 0) return 0;
    int L = ix->nlist, dim = ix->dim;
    if (nprobe <= 0) nprobe = cb_knn_ivf_nprobe(ix, k);
    if (nprobe > L) nprobe = L;
    size_t maxlen = 1;
    for (int l = 0; l < L; l++)
        if (ix->list_off[l + 1] - ix->list_off[l] > maxlen) maxlen = ix->list_off[l + 1] - ix->list_off[l];
    const size_t QB = 32;
    size_t nblk = (nq + QB - 1) / QB;
    /* per thread: C [QB, L] centroid scores, S [maxlen] list scores, the
     * probe heap [nprobe] and the result heap [k] */
    size_t o_s = QB * (size_t)(L > 0 ? L : 1) * sizeof(float), o_probe = o_s + maxlen * sizeof(float);
    size_t o_h = o_probe + (size_t)(nprobe > 0 ? nprobe : 1) * sizeof(topk_hit);
    scratch sc;
    if (scratch_alloc(&sc, o_h + (size_t)k * sizeof(topk_hit))) return -1;
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t b = 0; b < nblk; b++) {
        char *mem = scratch_mine(&sc);
        float *C = (float *)(void *)mem, *S = (float *)(void *)(mem + o_s);
        topk_hit *probe = (topk_hit *)(void *)(mem + o_probe), *h = (topk_hit *)(void *)(mem + o_h);
        size_t q0 = b * QB, m = nq - q0 < QB ? nq - q0 : QB;
        if (L > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, L, dim, 1.0f,
                        q + q0 * (size_t)dim, dim, ix->centroids, dim, 0.0f, C, L);
        for (size_t i = 0; i < m; i++) {
            const float *qi = q + (q0 + i) * (size_t)dim;
            int np = 0, n = 0;
            cb_topk_push_row(probe, &np, nprobe, C + i * (size_t)L, (size_t)L, NULL, 0);
            for (int t = 0; t < np; t++) {
                int l = probe[t].id;
                size_t o = ix->list_off[l], len = ix->list_off[l + 1] - o;
                if (len == 0) continue;
                cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)len, dim, 1.0f,
                            ix->list_vecs + o * (size_t)dim, dim, qi, 1, 0.0f, S, 1);
                cb_topk_push_row(h, &n, k, S, len, ix->list_ids + o, 0);
            }
            cb_topk_sort(h, n);
            cb_topk_write(h, n, k, ids + (q0 + i) * (size_t)k, scores + (q0 + i) * (size_t)k);
        }
    }
    free(sc.mem);
    return 0;
}
