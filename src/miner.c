/* miner.c: see miner.h. Sections: the model table, top-k heaps, exact search,
 * the IVF index, saved embeddings, and the prepare hook. */
#include "miner.h"
#include "blas.h"
#include "encoder.h"
#include "model.h"
#include "npy.h"
#include "rng.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ======================================================================== */
/* Options and the model table                                              */
/* ======================================================================== */

void miner_opts_default(miner_opts *o) {
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

const char *miner_default_model(const char *language, const char *size) {
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

const char *miner_index_name(miner_index k) {
    return k == MINER_INDEX_EXACT ? "exact" : k == MINER_INDEX_IVF ? "ivf" : "auto";
}

int miner_max_rank(size_t n_docs, int cap) {
    size_t r = n_docs / 10;
    if (cap >= 0 && r > (size_t)cap) r = (size_t)cap;
    if (r > n_docs) r = n_docs;
    return (int)r;
}

int miner_init(miner *m, const miner_opts *opts, cb_err *err) {
    memset(m, 0, sizeof *m);
    m->o = *opts;
    if (m->o.min_rank < 0) return cb_err_set(err, "hard-negative minimum rank %d: must be >= 0", m->o.min_rank);
    if (m->o.load_dir) {   /* the model is whatever made the saved embeddings */
        snprintf(m->model_name, sizeof m->model_name, "(from %s)", m->o.load_dir);
        return 0;
    }
    const char *name = m->o.model;
    if (!name) {
        name = miner_default_model(m->o.language, m->o.size);
        if (!name)
            return cb_err_set(err, "--miner-size %s: expected small, base or large", m->o.size);
    }
    snprintf(m->model_name, sizeof m->model_name, "%s", name);
    cb_err e2 = {{0}};
    m->model_dir = model_resolve(name, &e2);
    if (!m->model_dir) {
        if (m->o.model)
            return cb_err_set(err, "hard-negative mining: miner model: %s", e2.msg);
        /* model_resolve says where it looked: keep that part only */
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

void miner_free(miner *m) {
    free(m->model_dir);
    m->model_dir = NULL;
}

void miner_normalize(float *x, size_t n, int dim) {
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
/* Bounded heaps: the k best (score, id) of one query                       */
/* ======================================================================== */
/* Order: higher score first, then lower id. The heap keeps the worst of its
 * k hits at the root, so a new hit enters only when it beats the root. */

typedef struct hit {
    float s;
    int32_t id;
} hit;

static inline int hit_worse(hit a, hit b) { return a.s < b.s || (a.s == b.s && a.id > b.id); }

static void heap_push(hit *h, int *n, int k, float s, int32_t id) {
    if (s != s) s = -INFINITY;   /* NaN ranks last */
    hit x = {s, id};
    int i;
    if (*n < k) {
        i = (*n)++;
        while (i > 0) {
            int parent = (i - 1) / 2;
            if (!hit_worse(x, h[parent])) break;
            h[i] = h[parent];
            i = parent;
        }
        h[i] = x;
        return;
    }
    if (!hit_worse(h[0], x)) return;
    i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= k) break;
        if (c + 1 < k && hit_worse(h[c + 1], h[c])) c++;
        if (!hit_worse(h[c], x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

static int hit_cmp_best_first(const void *a, const void *b) {
    hit x = *(const hit *)a, y = *(const hit *)b;
    return hit_worse(y, x) ? -1 : hit_worse(x, y) ? 1 : 0;
}

/* Sort the heap best first into ids[k], scores[k], padding with -1/-inf. */
static void heap_finish(hit *h, int n, int k, int32_t *ids, float *scores) {
    qsort(h, (size_t)n, sizeof *h, hit_cmp_best_first);
    for (int i = 0; i < k; i++) {
        ids[i] = i < n ? h[i].id : -1;
        scores[i] = i < n ? h[i].s : -INFINITY;
    }
}

/* Push a row of scores s[nb] of documents d0.. into the heap. */
static void heap_push_row(hit *h, int *n, int k, const float *s, size_t nb, const int32_t *doc_ids,
                          size_t d0) {
    for (size_t j = 0; j < nb; j++) {
        if (*n == k && s[j] < h[0].s) continue;   /* the common case: cannot enter */
        heap_push(h, n, k, s[j], doc_ids ? doc_ids[j] : (int32_t)(d0 + j));
    }
}

/* malloc sizes: never 0 */
static size_t at_least1(size_t n) { return n ? n : 1; }


/* ======================================================================== */
/* Exact search                                                             */
/* ======================================================================== */

#define DOC_BLOCK 2048

void miner_topk_exact(int32_t *ids, float *scores, const float *q, size_t nq, const float *d,
                      size_t nd, int dim, int k) {
    if (nq == 0 || k <= 0) return;
    /* Fixed block shapes: the same rounding for any thread count. */
    const size_t QB = 64;
    size_t nblk = (nq + QB - 1) / QB;
    /* Query blocks in parallel; inside a parallel region OpenBLAS runs each
     * SGEMM on one thread, so the results do not depend on the thread count. */
#pragma omp parallel
    {
        float *S = cb_xmalloc(QB * DOC_BLOCK * sizeof(float));
        hit *heaps = cb_xmalloc(QB * (size_t)k * sizeof(hit));
        int *cnt = cb_xmalloc(QB * sizeof(int));
#pragma omp for schedule(dynamic, 1)
        for (size_t b = 0; b < nblk; b++) {
            size_t q0 = b * QB, m = nq - q0 < QB ? nq - q0 : QB;
            memset(cnt, 0, m * sizeof(int));
            for (size_t d0 = 0; d0 < nd; d0 += DOC_BLOCK) {
                size_t nb = nd - d0 < DOC_BLOCK ? nd - d0 : DOC_BLOCK;
                /* S[m, nb] = Q[q0.., :] D[d0.., :]^T */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nb, dim, 1.0f,
                            q + q0 * (size_t)dim, dim, d + d0 * (size_t)dim, dim, 0.0f, S, (int)nb);
                for (size_t i = 0; i < m; i++)
                    heap_push_row(heaps + i * (size_t)k, &cnt[i], k, S + i * nb, nb, NULL, d0);
            }
            for (size_t i = 0; i < m; i++)
                heap_finish(heaps + i * (size_t)k, cnt[i], k, ids + (q0 + i) * (size_t)k,
                            scores + (q0 + i) * (size_t)k);
        }
        free(S);
        free(heaps);
        free(cnt);
    }
}

/* ======================================================================== */
/* IVF-flat                                                                 */
/* ======================================================================== */

#define CENT_BLOCK 4096

/* a[i] = the centroid of c[nc, dim] with the highest dot product with
 * x[i], i < n (ties: lower index). Blocks of points in parallel. */
static void ivf_assign(int32_t *a, const float *x, size_t n, const float *c, int nc, int dim) {
    const size_t PB = 128;
    size_t nblk = (n + PB - 1) / PB;
    size_t cb = (size_t)nc < CENT_BLOCK ? (size_t)nc : CENT_BLOCK;
#pragma omp parallel
    {
        float *S = cb_xmalloc(PB * cb * sizeof(float));
        float *best = cb_xmalloc(PB * sizeof(float));
#pragma omp for schedule(dynamic, 1)
        for (size_t b = 0; b < nblk; b++) {
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
        free(S);
        free(best);
    }
}

void ivf_build(ivf_index *ix, const float *x, size_t n, int dim, int nlist, int iters, uint64_t seed) {
    memset(ix, 0, sizeof *ix);
    ix->dim = dim;
    ix->n = n;
    if (nlist <= 0) nlist = (int)lround(4.0 * sqrt((double)n));
    if ((size_t)nlist > n) nlist = (int)n;
    if (nlist < 1) nlist = 1;
    ix->nlist = nlist;
    size_t L = (size_t)nlist, D = (size_t)dim;
    ix->centroids = cb_xcalloc(L * D, sizeof(float));
    ix->list_off = cb_xcalloc(L + 1, sizeof(uint64_t));
    ix->list_ids = cb_xmalloc((n ? n : 1) * sizeof(int32_t));
    ix->list_vecs = cb_xmalloc((n ? n : 1) * D * sizeof(float));
    if (n == 0) return;

    /* A seeded sample (partial Fisher-Yates); its first nlist points seed
     * the centroids. */
    rng r;
    rng_init(&r, seed, 0x1f5);
    size_t ns = n < 64 * L ? n : 64 * L;
    uint32_t *perm = cb_xmalloc(n * sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
    for (size_t i = 0; i < ns; i++) {
        size_t j = i + (size_t)rng_below(&r, n - i);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    float *xs = cb_xmalloc(ns * D * sizeof(float));
    for (size_t i = 0; i < ns; i++) memcpy(xs + i * D, x + (size_t)perm[i] * D, D * sizeof(float));
    free(perm);
    memcpy(ix->centroids, xs, L * D * sizeof(float));

    /* Spherical k-means: assign by dot product, centroid = normalised sum.
     * Sums run over the sample in order, so any thread count gives the
     * same centroids. An empty list takes a random sample point. */
    int32_t *a = cb_xmalloc((n > ns ? n : ns) * sizeof(int32_t));
    double *sum = cb_xmalloc(L * D * sizeof(double));
    size_t *cnt = cb_xmalloc(L * sizeof(size_t));
    for (int it = 0; it < iters && L > 1; it++) {
        ivf_assign(a, xs, ns, ix->centroids, nlist, dim);
        memset(sum, 0, L * D * sizeof(double));
        memset(cnt, 0, L * sizeof(size_t));
        for (size_t i = 0; i < ns; i++) {
            double *s = sum + (size_t)a[i] * D;
            const float *v = xs + i * D;
            for (size_t j = 0; j < D; j++) s[j] += v[j];
            cnt[a[i]]++;
        }
        for (size_t l = 0; l < L; l++) {
            float *c = ix->centroids + l * D;
            if (cnt[l] == 0) {
                memcpy(c, xs + (size_t)rng_below(&r, ns) * D, D * sizeof(float));
                continue;
            }
            for (size_t j = 0; j < D; j++) c[j] = (float)sum[l * D + j];
        }
        miner_normalize(ix->centroids, L, dim);
    }
    free(sum);
    free(xs);

    /* Every vector joins its list; ids ascend within a list. */
    ivf_assign(a, x, n, ix->centroids, nlist, dim);
    memset(cnt, 0, L * sizeof(size_t));
    for (size_t i = 0; i < n; i++) cnt[a[i]]++;
    for (size_t l = 0; l < L; l++) ix->list_off[l + 1] = ix->list_off[l] + cnt[l];
    memset(cnt, 0, L * sizeof(size_t));
    for (size_t i = 0; i < n; i++) {
        size_t pos = ix->list_off[a[i]] + cnt[a[i]]++;
        ix->list_ids[pos] = (int32_t)i;
        memcpy(ix->list_vecs + pos * D, x + i * D, D * sizeof(float));
    }
    free(cnt);
    free(a);
}

void ivf_free(ivf_index *ix) {
    free(ix->centroids);
    free(ix->list_off);
    free(ix->list_ids);
    free(ix->list_vecs);
    memset(ix, 0, sizeof *ix);
}

int ivf_default_nprobe(const ivf_index *ix, int k) {
    if (ix->nlist <= 0 || ix->n == 0) return 1;
    double per_list = (double)ix->n / ix->nlist;
    /* The tail of a top-110 list is diffuse: on NFCorpus (MiniLM) recall@110
     * reaches 0.99 when about 20 k documents are scanned (docs/prepare.md). */
    int np = (int)ceil(24.0 * k / per_list);
    if (np < (ix->nlist + 7) / 8) np = (ix->nlist + 7) / 8;
    if (np > ix->nlist) np = ix->nlist;
    return np < 1 ? 1 : np;
}

void ivf_search(const ivf_index *ix, int32_t *ids, float *scores, const float *q, size_t nq, int k,
                int nprobe) {
    if (nq == 0 || k <= 0) return;
    int L = ix->nlist, dim = ix->dim;
    if (nprobe <= 0) nprobe = ivf_default_nprobe(ix, k);
    if (nprobe > L) nprobe = L;
    size_t maxlen = 1;
    for (int l = 0; l < L; l++)
        if (ix->list_off[l + 1] - ix->list_off[l] > maxlen) maxlen = ix->list_off[l + 1] - ix->list_off[l];
    const size_t QB = 32;
    size_t nblk = (nq + QB - 1) / QB;
#pragma omp parallel
    {
        float *C = cb_xmalloc(QB * (size_t)(L > 0 ? L : 1) * sizeof(float));
        float *S = cb_xmalloc(maxlen * sizeof(float));
        hit *probe = cb_xmalloc((size_t)nprobe * sizeof(hit));
        hit *h = cb_xmalloc((size_t)k * sizeof(hit));
#pragma omp for schedule(dynamic, 1)
        for (size_t b = 0; b < nblk; b++) {
            size_t q0 = b * QB, m = nq - q0 < QB ? nq - q0 : QB;
            if (L > 0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, L, dim, 1.0f,
                            q + q0 * (size_t)dim, dim, ix->centroids, dim, 0.0f, C, L);
            for (size_t i = 0; i < m; i++) {
                const float *qi = q + (q0 + i) * (size_t)dim;
                int np = 0, n = 0;
                heap_push_row(probe, &np, nprobe, C + i * (size_t)L, (size_t)L, NULL, 0);
                for (int t = 0; t < np; t++) {
                    int l = probe[t].id;
                    size_t o = ix->list_off[l], len = ix->list_off[l + 1] - o;
                    if (len == 0) continue;
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)len, dim, 1.0f,
                                ix->list_vecs + o * (size_t)dim, dim, qi, 1, 0.0f, S, 1);
                    heap_push_row(h, &n, k, S, len, ix->list_ids + o, 0);
                }
                heap_finish(h, n, k, ids + (q0 + i) * (size_t)k, scores + (q0 + i) * (size_t)k);
            }
        }
        free(C);
        free(S);
        free(probe);
        free(h);
    }
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

/* Read a 2-D little-endian float32 C-order .npy of shape [rows, cols]
 * (checked when rows/cols >= 0). Returns malloc'd data or NULL + err. */
static float *npy_read_f32(const char *path, int64_t rows, int64_t cols, cb_err *err) {
    size_t len;
    char *buf = cb_read_file(path, &len, err);
    if (!buf) return NULL;
    const char *why = NULL;
    size_t hl = 0, ho = 0;
    long long r = -1, c = -1;
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6)) why = "not a .npy file";
    else if (buf[6] == 1) hl = (uint8_t)buf[8] | (size_t)(uint8_t)buf[9] << 8, ho = 10;
    else if (buf[6] == 2 || buf[6] == 3) {
        if (len < 12) why = "truncated header";
        else hl = (uint8_t)buf[8] | (size_t)(uint8_t)buf[9] << 8 | (size_t)(uint8_t)buf[10] << 16 |
                  (size_t)(uint8_t)buf[11] << 24, ho = 12;
    } else why = "unknown .npy version";
    if (!why && ho + hl > len) why = "truncated header";
    if (!why) {
        char *hdr = cb_xmalloc(hl + 1);
        memcpy(hdr, buf + ho, hl);
        hdr[hl] = 0;
        const char *sh = strstr(hdr, "'shape':");
        if (!strstr(hdr, "'descr': '<f4'")) why = "dtype is not float32 ('<f4')";
        else if (!strstr(hdr, "'fortran_order': False")) why = "not in C order";
        else if (!sh || sscanf(sh, "'shape': (%lld, %lld)", &r, &c) != 2) why = "not a 2-D array";
        free(hdr);
    }
    if (!why && ((rows >= 0 && r != rows) || (cols >= 0 && c != cols))) {
        cb_err_set(err, "%s: shape (%lld, %lld), expected (%lld, %lld)", path, r, c, (long long)rows,
                   (long long)cols);
        free(buf);
        return NULL;
    }
    if (!why && (r < 0 || c < 0 || len - ho - hl != (size_t)r * (size_t)c * sizeof(float)))
        why = "data size does not match the shape";
    if (why) {
        cb_err_set(err, "%s: %s", path, why);
        free(buf);
        return NULL;
    }
    float *out = cb_xmalloc(at_least1((size_t)r * (size_t)c) * sizeof(float));
    memcpy(out, buf + ho + hl, (size_t)r * (size_t)c * sizeof(float));
    free(buf);
    return out;
}

/* mkdir -p: 0, or -1 when dir is not a directory afterwards. */
static int make_dirs(const char *dir) {
    char *p = cb_xstrdup(dir);
    for (char *c = p + 1; *c; c++)
        if (*c == '/') {
            *c = 0;
            mkdir(p, 0777);
            *c = '/';
        }
    mkdir(p, 0777);
    free(p);
    return cb_dir_exists(dir) ? 0 : -1;
}

static int save_embeddings(const miner *m, const float *D, const float *Q, int dim, uint64_t hd,
                           uint64_t hq, cb_err *err) {
    const char *dir = m->o.save_dir;
    if (make_dirs(dir))
        return cb_err_set(err, "--save-embeddings %s: cannot create the directory", dir);
    int64_t sd[2] = {(int64_t)m->st.n_docs, dim}, sq[2] = {(int64_t)m->st.n_queries, dim};
    char *p = cb_path_join(dir, "docs.npy");
    int rc = npy_write(p, "<f4", D, 2, sd, err);
    free(p);
    if (rc) return -1;
    p = cb_path_join(dir, "queries.npy");
    rc = npy_write(p, "<f4", Q, 2, sq, err);
    free(p);
    if (rc) return -1;
    char h1[32], h2[32];
    snprintf(h1, sizeof h1, "%016llx", (unsigned long long)hd);
    snprintf(h2, sizeof h2, "%016llx", (unsigned long long)hq);
    json_t *j = json_pack("{s:s, s:i, s:I, s:I, s:s, s:s}", "model", m->model_name, "dim", dim,
                          "n_docs", (json_int_t)m->st.n_docs, "n_queries",
                          (json_int_t)m->st.n_queries, "docs_hash", h1, "queries_hash", h2);
    p = cb_path_join(dir, "miner.json");
    char *tmp;
    FILE *f = cb_out_open(p, &tmp, err);
    rc = -1;
    if (f) {
        json_dumpf(j, f, JSON_INDENT(2));
        fputc('\n', f);
        rc = cb_out_commit(f, tmp, p, err);
    }
    free(p);
    json_decref(j);
    return rc;
}

static int save_lists(const miner *m, const int32_t *ids, const float *scores, cb_err *err) {
    if (make_dirs(m->o.save_dir))
        return cb_err_set(err, "--save-embeddings %s: cannot create the directory", m->o.save_dir);
    int64_t s[2] = {(int64_t)m->st.n_queries, m->st.max_rank};
    char *p = cb_path_join(m->o.save_dir, "neighbors.npy");
    int rc = npy_write(p, "<i4", ids, 2, s, err);
    free(p);
    if (rc) return -1;
    p = cb_path_join(m->o.save_dir, "scores.npy");
    rc = npy_write(p, "<f4", scores, 2, s, err);
    free(p);
    return rc;
}

static int load_embeddings(miner *m, float **D, float **Q, int *dim, uint64_t hd, uint64_t hq,
                           cb_err *err) {
    const char *dir = m->o.load_dir;
    char *p = cb_path_join(dir, "miner.json");
    json_error_t je;
    json_t *j = json_load_file(p, 0, &je);
    if (!j) {
        cb_err_set(err, "--load-embeddings: %s: %s (write it with --save-embeddings DIR)", p, je.text);
        free(p);
        return -1;
    }
    const char *model = "", *h1 = "", *h2 = "";
    json_int_t nd = -1, nq = -1;
    int d = 0;
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
    if (rc) return -1;
    p = cb_path_join(dir, "docs.npy");
    *D = npy_read_f32(p, nd, d, err);
    free(p);
    if (!*D) return -1;
    p = cb_path_join(dir, "queries.npy");
    *Q = npy_read_f32(p, nq, d, err);
    free(p);
    if (!*Q) {
        free(*D);
        return -1;
    }
    *dim = d;
    return 0;
}

/* ======================================================================== */
/* The prepare hook                                                         */
/* ======================================================================== */

prepare_miner miner_hook(miner *m) {
    prepare_miner h = {m, miner_candidates};
    return h;
}

void miner_report(const miner *m, FILE *f) {
    const miner_stats *s = &m->st;
    fprintf(f, "mine: %s, %zu documents, %zu queries, dim %d; index %s", m->model_name, s->n_docs,
            s->n_queries, s->dim, miner_index_name(s->index));
    if (s->index == MINER_INDEX_IVF) fprintf(f, " (nlist %d, nprobe %d)", s->nlist, s->nprobe);
    fprintf(f, "; candidates ranks [%d, %d); %s %.2f s, encode %.2f s, index %.2f s, search %.2f s\n",
            s->min_rank, s->max_rank, s->loaded ? "load" : "model", s->t_load, s->t_encode,
            s->t_index, s->t_search);
}

int miner_candidates(void *ctx, const prepare *p, uint64_t **off, uint32_t **cands, cb_err *err) {
    miner *m = ctx;
    size_t nd = prepare_n_passages(p), nq = prepare_n_queries(p);
    if (nd > INT_MAX || nq > INT_MAX)
        return cb_err_set(err, "%zu documents and %zu queries: at most %d each", nd, nq, INT_MAX);
    memset(&m->st, 0, sizeof m->st);
    m->st.n_docs = nd;
    m->st.n_queries = nq;
    const char **dt = cb_xmalloc((nd ? nd : 1) * sizeof(char *)), **qt = cb_xmalloc((nq ? nq : 1) * sizeof(char *));
    size_t *dl = cb_xmalloc((nd ? nd : 1) * sizeof(size_t)), *ql = cb_xmalloc((nq ? nq : 1) * sizeof(size_t));
    for (size_t i = 0; i < nd; i++) dt[i] = prepare_passage(p, (uint32_t)i, &dl[i]);
    for (size_t i = 0; i < nq; i++) qt[i] = prepare_query(p, (uint32_t)i, &ql[i]);
    uint64_t hd = texts_hash(dt, dl, nd), hq = texts_hash(qt, ql, nq);
    float *D = NULL, *Q = NULL;
    int32_t *ids = NULL;
    float *sc = NULL;
    int dim = 0, rc = -1;
    double t = cb_now();
    if (m->o.load_dir) {
        if (load_embeddings(m, &D, &Q, &dim, hd, hq, err)) goto done;
        m->st.loaded = 1;
        m->st.t_load = cb_now() - t;
    } else {
        encoder e;
        cb_err why = {{0}};
        ops_device *dev = ops_open(m->o.device ? m->o.device : "auto", m->o.precision, &why);
        if (!dev) {
            cb_err_set(err, "%s", why.msg);
            goto done;
        }
        if (!m->o.quiet && (strcmp(dev->kind, "cpu") || (m->o.device && !strcmp(m->o.device, "auto"))))
            fprintf(stderr, "mine: on %s%s%s\n", dev->desc, why.msg[0] ? "; " : "", why.msg);
        if (encoder_load(&e, dev, m->model_dir, m->o.max_len, err)) {
            ops_close(dev);
            goto done;
        }
        e.quiet = m->o.quiet;
        m->st.t_load = cb_now() - t;
        dim = e.bert.cfg.hidden_size;
        t = cb_now();
        D = cb_xmalloc((nd ? nd : 1) * (size_t)dim * sizeof(float));
        Q = cb_xmalloc((nq ? nq : 1) * (size_t)dim * sizeof(float));
        if (!m->o.quiet)
            fprintf(stderr, "mine: embedding %zu documents and %zu queries with %s\n", nd, nq,
                    m->model_name);
        int erc = encoder_embed(&e, dt, dl, (int)nd, D, err);
        if (!erc) erc = encoder_embed(&e, qt, ql, (int)nq, Q, err);
        encoder_free(&e);
        ops_close(dev);
        if (erc) goto done;
        m->st.t_encode = cb_now() - t;
    }
    miner_normalize(D, nd, dim);
    miner_normalize(Q, nq, dim);
    m->st.dim = dim;
    if (m->o.save_dir && !m->st.loaded && save_embeddings(m, D, Q, dim, hd, hq, err)) goto done;

    int k = miner_max_rank(nd, m->o.max_rank_cap);
    m->st.max_rank = k;
    m->st.min_rank = m->o.min_rank;
    miner_index kind = m->o.index;
    if (kind == MINER_INDEX_AUTO) kind = nd >= m->o.approx_min_docs ? MINER_INDEX_IVF : MINER_INDEX_EXACT;
    m->st.index = kind;
    ids = cb_xmalloc(at_least1(nq * (size_t)k) * sizeof(int32_t));
    sc = cb_xmalloc(at_least1(nq * (size_t)k) * sizeof(float));
    if (k > 0) {
        if (kind == MINER_INDEX_IVF) {
            ivf_index ix;
            t = cb_now();
            ivf_build(&ix, D, nd, dim, m->o.ivf_nlist, 10, m->o.seed);
            m->st.t_index = cb_now() - t;
            m->st.nlist = ix.nlist;
            m->st.nprobe = m->o.ivf_nprobe > 0 ? (m->o.ivf_nprobe < ix.nlist ? m->o.ivf_nprobe : ix.nlist)
                                               : ivf_default_nprobe(&ix, k);
            t = cb_now();
            ivf_search(&ix, ids, sc, Q, nq, k, m->st.nprobe);
            m->st.t_search = cb_now() - t;
            ivf_free(&ix);
        } else {
            t = cb_now();
            miner_topk_exact(ids, sc, Q, nq, D, nd, dim, k);
            m->st.t_search = cb_now() - t;
        }
    }
    if (m->o.save_dir && save_lists(m, ids, sc, err)) goto done;

    /* Candidates: ranks [min_rank, max_rank) of each list. */
    size_t lo = (size_t)m->o.min_rank < (size_t)k ? (size_t)m->o.min_rank : (size_t)k;
    uint64_t *o = cb_xmalloc((nq + 1) * sizeof(uint64_t));
    uint32_t *c = cb_xmalloc(at_least1(nq * ((size_t)k - lo)) * sizeof(uint32_t));
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
