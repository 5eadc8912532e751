/* bench_ann.c: the miner's search at scale, exact (blocked SGEMM) versus the
 * IVF index, on synthetic clustered unit vectors (dimension 384, as
 * MiniLM/bge-small). Prints seconds and recall@k of IVF against exact.
 * Optionally writes the data as .npy for a peer (bench/bench_ann.py runs
 * Voyager/hnswlib on the same vectors).
 *
 *   build/bench/ann N_DOCS N_QUERIES [K] [OUT_DIR]
 */
#include "miner.h"
#include "npy.h"
#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float frand(rng *r) { return (float)((double)(cb_rng_next(r) >> 11) / 9007199254740992.0) * 2.0f - 1.0f; }

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s N_DOCS N_QUERIES [K] [OUT_DIR]\n", argv[0]);
        return 2;
    }
    size_t nd = (size_t)atoll(argv[1]), nq = (size_t)atoll(argv[2]);
    int k = argc > 3 ? atoi(argv[3]) : 110, dim = 384;
    size_t nc = nd / 50 > 1 ? nd / 50 : 1;   /* topics of about 50 documents */
    rng r;
    cb_rng_init(&r, 7, 0);
    float *cen = malloc(nc * dim * sizeof(float)), *d = malloc(nd * dim * sizeof(float)),
          *q = malloc(nq * dim * sizeof(float));
    for (size_t i = 0; i < nc * dim; i++) cen[i] = frand(&r);
    cb_knn_normalize(cen, nc, dim);
    for (size_t i = 0; i < nd + nq; i++) {
        float *x = i < nd ? d + i * dim : q + (i - nd) * dim;
        const float *c = cen + (size_t)cb_rng_below(&r, nc) * dim;
        for (int t = 0; t < dim; t++) x[t] = c[t] + 0.06f * frand(&r);
    }
    cb_knn_normalize(d, nd, dim);
    cb_knn_normalize(q, nq, dim);
    if (argc > 4) {
        cb_err err = {{0}};
        char p[1024];
        int64_t sd[2] = {(int64_t)nd, dim}, sq[2] = {(int64_t)nq, dim};
        snprintf(p, sizeof p, "%s/docs.npy", argv[4]);
        if (cb_npy_write(p, "<f4", d, 2, sd, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
        snprintf(p, sizeof p, "%s/queries.npy", argv[4]);
        if (cb_npy_write(p, "<f4", q, 2, sq, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    }
    int32_t *ex = malloc(nq * k * sizeof(int32_t)), *ap = malloc(nq * k * sizeof(int32_t));
    float *s = malloc(nq * k * sizeof(float));
    double t = cb_now();
    cb_knn_exact(ex, s, q, nq, d, nd, dim, k);
    double t_exact = cb_now() - t;
    knn_ivf ix;
    t = cb_now();
    cb_knn_ivf_build(&ix, d, nd, dim, 0, 10, 42);
    double t_build = cb_now() - t;
    int np = cb_knn_ivf_nprobe(&ix, k);
    t = cb_now();
    cb_knn_ivf_search(&ix, ap, s, q, nq, k, np);
    double t_search = cb_now() - t;
    size_t hit = 0;
    for (size_t i = 0; i < nq; i++)
        for (int a = 0; a < k; a++)
            for (int b = 0; b < k; b++)
                if (ap[i * k + a] == ex[i * k + b]) { hit++; break; }
    printf("%zu docs, %zu queries, dim %d, k %d\n", nd, nq, dim, k);
    printf("exact search:            %8.2f s\n", t_exact);
    printf("ivf build (nlist %5d):  %8.2f s\n", ix.nlist, t_build);
    printf("ivf search (nprobe %4d): %8.2f s   recall@%d %.4f\n", np, t_search, k,
           (double)hit / (double)(nq * k));
    if (argc > 4) {
        cb_err err = {{0}};
        char p[1024];
        int64_t sh[2] = {(int64_t)nq, k};
        snprintf(p, sizeof p, "%s/exact.npy", argv[4]);
        cb_npy_write(p, "<i4", ex, 2, sh, &err);
    }
    cb_knn_ivf_free(&ix);
    free(cen);
    free(d);
    free(q);
    free(ex);
    free(ap);
    free(s);
    return 0;
}
