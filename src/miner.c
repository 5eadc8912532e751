/* miner.c: see miner.h. Sections: the model table, exact search, the IVF
 * index, saved embeddings, and the prepare hook. The per-query top-k heaps
 * are topk.h's (ties to the lower document id). The parallel searches take
 * their per-thread buffers from one allocation made before the region; if
 * it fails they return -1 (nothing exits). */
#include "miner.h"
#include "blas.h"
#include "encoder.h"
#include "model.h"
#include "npy.h"
#include "rng.h"
#include "topk.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ======================================================================== */
/* Options and the model table                                              */
/* ======================================================================== */

void cb_miner_opts_default(miner_opts *o) {
    memset(o, 0, sizeof *o);
    o->language = "en";
    o->size = "small";
    o->min_rank = 10;
    o->max_rank_cap = 110;
    o->index = MINER_INDEX_AUTO;
    o->approx_min_docs = 250000;
    o->seed = 42;
    o->precision = OPS_BF16;
}

const char *cb_miner_default_model(const char *language, const char *size) {
    static const char *const table[4][3] = {
        {"BAAI/bge-small-en-v1.5", "BAAI/bge-base-en-v1.5", "BAAI/bge-large-en-v1.5"},
        {"thenlper/gte-small-zh", "thenlper/gte-base-zh", "thenlper/gte-large-zh"},
        /* the reference has no small Solon: small is the base model */
        {"OrdalieTech/Solon-embeddings-base-0.1", "OrdalieTech/Solon-embeddings-base-0.1",
         "OrdalieTech/Solon-embeddings-large-0.1"},
        {"intfloat/multilingual-e5-small", "intfloat/multilingual-e5-base",
         "intfloat/multilingual-e5-large"},
    };
    int s = !strcmp(size, "small") ? 0 : !strcmp(size, "base") ? 1 : !strcmp(size, "large") ? 2 : -1;
    if (s < 0) return NULL;
    int l = !strcmp(language, "en") ? 0 : !strcmp(language, "zh") ? 1 : !strcmp(language, "fr") ? 2 : 3;
    return table[l][s];
}

const char *cb_miner_index_name(miner_index k) {
    return k == MINER_INDEX_EXACT ? "exact" : k == MINER_INDEX_IVF ? "ivf" : "auto";
}

int cb_miner_max_rank(size_t n_docs, int cap) {
    size_t r = n_docs / 10;
    if (cap >= 0 && r > (size_t)cap) r = (size_t)cap;
    if (r > n_docs) r = n_docs;
    return (int)r;
}

int cb_miner_init(miner *m, const miner_opts *opts, cb_err *err) {
    memset(m, 0, sizeof *m);
    m->o = *opts;
    if (m->o.min_rank < 0) return cb_err_set(err, "hard-negative minimum rank %d: must be >= 0", m->o.min_rank);
    if (m->o.load_dir) {   /* the model is whatever made the saved embeddings */
        snprintf(m->model_name, sizeof m->model_name, "(from %s)", m->o.load_dir);
        return 0;
    }
    const char *name = m->o.model;
    if (!name) {
        name = cb_miner_default_model(m->o.language, m->o.size);
        if (!name)
            return cb_err_set(err, "--miner-size %s: expected small, base or large", m->o.size);
    }
    snprintf(m->model_name, sizeof m->model_name, "%s", name);
    cb_err e2 = {{0}};
    m->model_dir = cb_model_resolve(name, &e2);
    if (!m->model_dir) {
        if (m->o.model)
            return cb_err_set(err, "hard-negative mining: miner model: %s", e2.msg);
        /* cb_model_resolve says where it looked: keep that part only */
        const char *where = strstr(e2.msg, "looked for ");
        int wl = where ? (int)strcspn(where, ";)") : 0;
        return cb_err_set(err, "hard-negative mining needs the dense model %s (--language %s, "
                          "--miner-size %s), which is not on this machine (%.*s). Give a "
                          "sentence-transformers model directory with --miner-model PATH, put "
                          "the model in the Hugging Face cache (huggingface-cli download %s), "
                          "or use random negatives with --no-mining", name, m->o.language,
                          m->o.size, wl ? wl : 14, wl ? where : "not in the cache", name);
    }
    return 0;
}

void cb_miner_free(miner *m) {
    free(m->model_dir);
    m->model_dir = NULL;
}

void cb_miner_normalize(float *x, size_t n, int dim) {
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

int cb_miner_topk_exact(int32_t *ids, float *scores, const float *q, size_t nq, const float *d,
                     size_t nd, int dim, int k) {
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

int cb_ivf_build(ivf_index *ix, const float *x, size_t n, int dim, int nlist, int iters, uint64_t seed) {
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
        cb_miner_normalize(ix->centroids, L, dim);
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
    if (rc) cb_ivf_free(ix);
    return rc;
}

void cb_ivf_free(ivf_index *ix) {
    free(ix->centroids);
    free(ix->list_off);
    free(ix->list_ids);
    free(ix->list_vecs);
    memset(ix, 0, sizeof *ix);
}

int cb_ivf_default_nprobe(const ivf_index *ix, int k) {
    if (ix->nlist <= 0 || ix->n == 0) return 1;
    double per_list = (double)ix->n / ix->nlist;
    /* The tail of a top-110 list is diffuse: on NFCorpus (MiniLM) recall@110
     * reaches 0.99 when about 20 k documents are scanned (docs/prepare.md). */
    int np = (int)ceil(24.0 * k / per_list);
    if (np < (ix->nlist + 7) / 8) np = (ix->nlist + 7) / 8;
    if (np > ix->nlist) np = ix->nlist;
    return np < 1 ? 1 : np;
}

int cb_ivf_search(const ivf_index *ix, int32_t *ids, float *scores, const float *q, size_t nq, int k,
               int nprobe) {
    if (nq == 0 || k <= 0) return 0;
    int L = ix->nlist, dim = ix->dim;
    if (nprobe <= 0) nprobe = cb_ivf_default_nprobe(ix, k);
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

/* ======================================================================== */
/* Saved embeddings: DIR/docs.npy, DIR/queries.npy, DIR/neighbors.npy,      */
/* DIR/scores.npy and DIR/miner.json (model, sizes, text hashes)            */
/* ======================================================================== */

/* FNV-1a over the texts, each followed by a 0xff byte (never in UTF-8). */
static uint64_t texts_hash(const char *const *t, const size_t *len, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < len[i]; j++) h = (h ^ (uint8_t)t[i][j]) * 0x100000001b3ull;
        h = (h ^ 0xff) * 0x100000001b3ull;
    }
    return h;
}

/* DIR/NAME written or read as a 2-D .npy of rows x cols. */
static int save_npy(const char *dir, const char *name, const char *dtype, const void *data, int64_t rows,
                    int64_t cols, cb_err *err) {
    char *p = cb_path_new(dir, name, err);
    int64_t shape[2] = {rows, cols};
    int rc = p ? cb_npy_write(p, dtype, data, 2, shape, err) : -1;
    free(p);
    return rc;
}

static float *load_npy(const char *dir, const char *name, int64_t rows, int64_t cols, cb_err *err) {
    char *p = cb_path_new(dir, name, err);
    float *x = p ? cb_npy_read_f32(p, rows, cols, err) : NULL;
    free(p);
    return x;
}

static int save_dir(const miner *m, cb_err *err) {
    if (cb_mkdirs(m->o.save_dir, NULL, err)) return cb_err_prefix(err, "--save-embeddings");
    return 0;
}

static int save_embeddings(const miner *m, const float *D, const float *Q, int dim, uint64_t hd,
                           uint64_t hq, cb_err *err) {
    const char *dir = m->o.save_dir;
    if (save_dir(m, err) || save_npy(dir, "docs.npy", "<f4", D, (int64_t)m->st.n_docs, dim, err) ||
        save_npy(dir, "queries.npy", "<f4", Q, (int64_t)m->st.n_queries, dim, err))
        return -1;
    char h1[32], h2[32];
    snprintf(h1, sizeof h1, "%016llx", (unsigned long long)hd);
    snprintf(h2, sizeof h2, "%016llx", (unsigned long long)hq);
    json_t *j = json_pack("{s:s, s:i, s:I, s:I, s:s, s:s}", "model", m->model_name, "dim", dim,
                          "n_docs", (json_int_t)m->st.n_docs, "n_queries",
                          (json_int_t)m->st.n_queries, "docs_hash", h1, "queries_hash", h2);
    char *p = cb_path_new(dir, "miner.json", err), *tmp;
    FILE *f = p && j ? cb_out_open(p, &tmp, err) : NULL;
    int rc = -1;
    if (f) {
        json_dumpf(j, f, JSON_INDENT(2));
        fputc('\n', f);
        rc = cb_out_commit(f, tmp, p, err);
    } else if (p && !j) {
        cb_err_set(err, "%s: out of memory", p);
    }
    free(p);
    json_decref(j);
    return rc;
}

static int save_lists(const miner *m, const int32_t *ids, const float *scores, cb_err *err) {
    int64_t nq = (int64_t)m->st.n_queries, k = m->st.max_rank;
    if (save_dir(m, err) || save_npy(m->o.save_dir, "neighbors.npy", "<i4", ids, nq, k, err)) return -1;
    return save_npy(m->o.save_dir, "scores.npy", "<f4", scores, nq, k, err);
}

static int load_embeddings(miner *m, float **D, float **Q, int *dim, uint64_t hd, uint64_t hq,
                           cb_err *err) {
    const char *dir = m->o.load_dir;
    char *p = cb_path_new(dir, "miner.json", err);
    if (!p) return -1;
    json_t *j = cb_json_load(p, 0, err);
    if (!j) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err ? err->msg : "");
        cb_err_set(err, "--load-embeddings: %s (write it with --save-embeddings DIR)", why);
        free(p);
        return -1;
    }
    const char *model = "", *h1 = "", *h2 = "";
    json_int_t nd = -1, nq = -1;
    int d = 0;
    json_error_t je;
    if (json_unpack_ex(j, &je, 0, "{s:s, s:i, s:I, s:I, s:s, s:s}", "model", &model, "dim", &d,
                       "n_docs", &nd, "n_queries", &nq, "docs_hash", &h1, "queries_hash", &h2)) {
        cb_err_set(err, "%s: %s", p, je.text);
        json_decref(j);
        free(p);
        return -1;
    }
    char e1[32], e2[32];
    snprintf(e1, sizeof e1, "%016llx", (unsigned long long)hd);
    snprintf(e2, sizeof e2, "%016llx", (unsigned long long)hq);
    int rc = 0;
    if ((size_t)nd != m->st.n_docs || (size_t)nq != m->st.n_queries || strcmp(h1, e1) || strcmp(h2, e2))
        rc = cb_err_set(err, "--load-embeddings %s: saved for other texts (%lld documents, %lld "
                        "queries; this run has %zu and %zu%s): save them again with "
                        "--save-embeddings, or drop --load-embeddings", dir, (long long)nd,
                        (long long)nq, m->st.n_docs, m->st.n_queries,
                        (size_t)nd == m->st.n_docs && (size_t)nq == m->st.n_queries ? ", but other texts" : "");
    else if (d <= 0)
        rc = cb_err_set(err, "%s: dim %d", p, d);
    if (!rc) snprintf(m->model_name, sizeof m->model_name, "%s", model);
    json_decref(j);
    free(p);
    if (rc || !(*D = load_npy(dir, "docs.npy", nd, d, err))) return -1;
    if (!(*Q = load_npy(dir, "queries.npy", nq, d, err))) {
        free(*D);
        *D = NULL;
        return -1;
    }
    *dim = d;
    return 0;
}

/* ======================================================================== */
/* The prepare hook                                                         */
/* ======================================================================== */

prepare_miner cb_miner_hook(miner *m) {
    prepare_miner h = {m, cb_miner_candidates};
    return h;
}

void cb_miner_report(const miner *m, FILE *f) {
    const miner_stats *s = &m->st;
    fprintf(f, "mine: %s, %zu documents, %zu queries, dim %d; index %s", m->model_name, s->n_docs,
            s->n_queries, s->dim, cb_miner_index_name(s->index));
    if (s->index == MINER_INDEX_IVF) fprintf(f, " (nlist %d, nprobe %d)", s->nlist, s->nprobe);
    fprintf(f, "; candidates ranks [%d, %d); %s %.2f s, encode %.2f s, index %.2f s, search %.2f s\n",
            s->min_rank, s->max_rank, s->loaded ? "load" : "model", s->t_load, s->t_encode,
            s->t_index, s->t_search);
}

/* Data parallel: the ranks searched query ranges [lo[r], lo[r+1]); every
 * rank gets every list. */
static int gather_lists(cb_comm *c, int32_t *ids, float *sc, size_t nq, int k, cb_err *err) {
    size_t *counts = cb_malloc((size_t)c->size * sizeof(size_t), "the neighbour lists", err);
    if (cb_comm_max_long(c, !counts)) {
        free(counts);
        return counts ? cb_err_set(err, "another rank is out of memory for the neighbour lists") : -1;
    }
    size_t a, z;
    for (int r = 0; r < c->size; r++) {
        cb_comm_share(c, r, nq, 1, &a, &z);
        counts[r] = (z - a) * (size_t)k;
    }
    cb_comm_share(c, c->rank, nq, 1, &a, &z);
    cb_comm_allgatherv(c, ids, ids + a * (size_t)k, counts, COMM_I32);
    cb_comm_allgatherv(c, sc, sc + a * (size_t)k, counts, COMM_F32);
    free(counts);
    return 0;
}

/* Embed texts t[0..n) with the prompt put before each (sentence-transformers
 * concatenates the strings, then tokenizes); no prompt: the texts as they
 * are. */
static int embed_prompted(encoder *e, const char *prompt, const char **t, const size_t *l, size_t n, float *out,
                          cb_err *err) {
    size_t pl = strlen(prompt);
    if (!pl) return cb_encoder_embed(e, t, l, (int)n, out, err);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += pl + l[i];
    char *buf = cb_malloc(total ? total : 1, "the prompted texts", err);
    const char **pt = buf ? cb_malloc((n ? n : 1) * sizeof(char *), "the prompted texts", err) : NULL;
    size_t *pn = pt ? cb_malloc((n ? n : 1) * sizeof(size_t), "the prompted texts", err) : NULL;
    int rc = -1;
    if (pn) {
        char *w = buf;
        for (size_t i = 0; i < n; i++) {
            memcpy(w, prompt, pl);
            memcpy(w + pl, t[i], l[i]);
            pt[i] = w;
            pn[i] = pl + l[i];
            w += pn[i];
        }
        rc = cb_encoder_embed(e, pt, pn, (int)n, out, err);
    }
    free(buf);
    free(pt);
    free(pn);
    return rc;
}

int cb_miner_candidates(void *ctx, const prepare *p, uint64_t **off, uint32_t **cands, cb_err *err) {
    miner *m = ctx;
    cb_comm *comm = m->o.comm ? m->o.comm : cb_comm_serial();
    size_t nd = cb_prepare_n_passages(p), nq = cb_prepare_n_queries(p);
    if (nd > INT_MAX || nq > INT_MAX)
        return cb_err_set(err, "%zu documents and %zu queries: at most %d each", nd, nq, INT_MAX);
    memset(&m->st, 0, sizeof m->st);
    m->st.n_docs = nd;
    m->st.n_queries = nq;
    const char **dt = cb_malloc(nd * sizeof(char *), "the document list", err);
    const char **qt = cb_malloc(nq * sizeof(char *), "the query list", err);
    size_t *dl = cb_malloc(nd * sizeof(size_t), "the document list", err);
    size_t *ql = cb_malloc(nq * sizeof(size_t), "the query list", err);
    float *D = NULL, *Q = NULL;
    int32_t *ids = NULL;
    float *sc = NULL;
    int dim = 0, rc = -1;
    if (!dt || !qt || !dl || !ql) goto done;
    for (size_t i = 0; i < nd; i++) dt[i] = cb_prepare_passage(p, (uint32_t)i, &dl[i]);
    for (size_t i = 0; i < nq; i++) qt[i] = cb_prepare_query(p, (uint32_t)i, &ql[i]);
    uint64_t hd = texts_hash(dt, dl, nd), hq = texts_hash(qt, ql, nq);
    double t = cb_now();
    if (m->o.load_dir) {
        if (load_embeddings(m, &D, &Q, &dim, hd, hq, err)) goto done;
        m->st.loaded = 1;
        m->st.t_load = cb_now() - t;
    } else {
        encoder e;
        cb_err why = {{0}};
        ops_device *dev = cb_ops_open(m->o.device ? m->o.device : "auto", m->o.precision, &why);
        if (!dev) {
            cb_err_set(err, "%s", why.msg);
            goto done;
        }
        if (!m->o.quiet && (strcmp(dev->kind, "cpu") || (m->o.device && !strcmp(m->o.device, "auto"))))
            fprintf(stderr, "mine: on %s%s%s\n", dev->desc, why.msg[0] ? "; " : "", why.msg);
        if (cb_encoder_load(&e, dev, m->model_dir, m->o.max_len, err)) {
            cb_ops_close(dev);
            goto done;
        }
        e.quiet = m->o.quiet || comm->rank;
        e.comm = comm;
        m->st.t_load = cb_now() - t;
        dim = e.enc.info.hidden;
        t = cb_now();
        D = cb_malloc(nd * (size_t)dim * sizeof(float), "the document embeddings", err);
        Q = cb_malloc(nq * (size_t)dim * sizeof(float), "the query embeddings", err);
        if (!D || !Q) {
            cb_encoder_free(&e);
            goto done;
        }
        if (!m->o.quiet && !comm->rank)
            fprintf(stderr, "mine: embedding %zu documents and %zu queries with %s%s\n", nd, nq,
                    m->model_name, comm->size > 1 ? " (split over the ranks)" : "");
        if (!m->o.quiet && !comm->rank && (e.sbert.prompt_query[0] || e.sbert.prompt_doc[0]))
            fprintf(stderr, "mine: prompts of config_sentence_transformers.json: queries \"%s\", documents "
                    "\"%s\"\n", e.sbert.prompt_query, e.sbert.prompt_doc);
        int erc = embed_prompted(&e, e.sbert.prompt_doc, dt, dl, nd, D, err);
        if (!erc) erc = embed_prompted(&e, e.sbert.prompt_query, qt, ql, nq, Q, err);
        cb_encoder_free(&e);
        cb_ops_close(dev);
        if (erc) goto done;
        m->st.t_encode = cb_now() - t;
    }
    cb_miner_normalize(D, nd, dim);
    cb_miner_normalize(Q, nq, dim);
    m->st.dim = dim;
    if (m->o.save_dir && !m->st.loaded && !comm->rank && save_embeddings(m, D, Q, dim, hd, hq, err)) goto done;

    int k = cb_miner_max_rank(nd, m->o.max_rank_cap);
    m->st.max_rank = k;
    m->st.min_rank = m->o.min_rank;
    miner_index kind = m->o.index;
    if (kind == MINER_INDEX_AUTO) kind = nd >= m->o.approx_min_docs ? MINER_INDEX_IVF : MINER_INDEX_EXACT;
    m->st.index = kind;
    ids = cb_malloc(nq * (size_t)k * sizeof(int32_t), "the neighbour lists", err);
    sc = cb_malloc(nq * (size_t)k * sizeof(float), "the neighbour lists", err);
    if (!ids || !sc) goto done;
    if (k > 0) {
        if (kind == MINER_INDEX_IVF) {
            ivf_index ix;
            t = cb_now();
            if (cb_ivf_build(&ix, D, nd, dim, m->o.ivf_nlist, 10, m->o.seed)) {
                cb_err_set(err, "out of memory: the IVF index of %zu documents (dim %d)", nd, dim);
                goto done;
            }
            m->st.t_index = cb_now() - t;
            m->st.nlist = ix.nlist;
            m->st.nprobe = m->o.ivf_nprobe > 0 ? (m->o.ivf_nprobe < ix.nlist ? m->o.ivf_nprobe : ix.nlist)
                                               : cb_ivf_default_nprobe(&ix, k);
            t = cb_now();
            size_t q0, q1;   /* this rank's queries */
            cb_comm_share(comm, comm->rank, nq, 1, &q0, &q1);
            int bad = cb_ivf_search(&ix, ids + q0 * (size_t)k, sc + q0 * (size_t)k, Q + q0 * (size_t)dim, q1 - q0, k,
                                 m->st.nprobe);
            m->st.t_search = cb_now() - t;
            cb_ivf_free(&ix);
            if (bad) {
                cb_err_set(err, "out of memory: the IVF search buffers");
                goto done;
            }
        } else {
            t = cb_now();
            size_t q0, q1;   /* this rank's queries */
            cb_comm_share(comm, comm->rank, nq, 1, &q0, &q1);
            if (cb_miner_topk_exact(ids + q0 * (size_t)k, sc + q0 * (size_t)k, Q + q0 * (size_t)dim, q1 - q0, D, nd,
                                 dim, k)) {
                cb_err_set(err, "out of memory: the exact search buffers");
                goto done;
            }
            m->st.t_search = cb_now() - t;
        }
        if (comm->size > 1 && gather_lists(comm, ids, sc, nq, k, err)) goto done;
    }
    if (m->o.save_dir && !comm->rank && save_lists(m, ids, sc, err)) goto done;

    /* Candidates: ranks [min_rank, max_rank) of each list. */
    size_t lo = (size_t)m->o.min_rank < (size_t)k ? (size_t)m->o.min_rank : (size_t)k;
    uint64_t *o = cb_malloc((nq + 1) * sizeof(uint64_t), "the mining candidates", err);
    uint32_t *c = cb_malloc(nq * ((size_t)k - lo) * sizeof(uint32_t), "the mining candidates", err);
    if (!o || !c) {
        free(o);
        free(c);
        goto done;
    }
    size_t n = 0;
    o[0] = 0;
    for (size_t qi = 0; qi < nq; qi++) {
        for (size_t r = lo; r < (size_t)k; r++) {
            int32_t id = ids[qi * (size_t)k + r];
            if (id >= 0) c[n++] = (uint32_t)id;
        }
        o[qi + 1] = n;
    }
    *off = o;
    *cands = c;
    rc = 0;
    if (!m->o.quiet && k - (int)lo <= 0)
        fprintf(stderr, "colbert: warning: no mining candidates: %zu documents give max_rank %d "
                "(min(110, documents / 10)), not above the minimum rank %d\n", nd, k, m->o.min_rank);
done:
    free(dt);
    free(qt);
    free(dl);
    free(ql);
    free(D);
    free(Q);
    free(ids);
    free(sc);
    return rc;
}
