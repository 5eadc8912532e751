/* miner.c: see miner.h. Sections: the model table, saved embeddings, and
 * the prepare hook; the searches themselves are knn.h's. */
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
    cb_knn_normalize(D, nd, dim);
    cb_knn_normalize(Q, nq, dim);
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
            knn_ivf ix;
            t = cb_now();
            if (cb_knn_ivf_build(&ix, D, nd, dim, m->o.ivf_nlist, 10, m->o.seed)) {
                cb_err_set(err, "out of memory: the IVF index of %zu documents (dim %d)", nd, dim);
                goto done;
            }
            m->st.t_index = cb_now() - t;
            m->st.nlist = ix.nlist;
            m->st.nprobe = m->o.ivf_nprobe > 0 ? (m->o.ivf_nprobe < ix.nlist ? m->o.ivf_nprobe : ix.nlist)
                                               : cb_knn_ivf_nprobe(&ix, k);
            t = cb_now();
            size_t q0, q1;   /* this rank's queries */
            cb_comm_share(comm, comm->rank, nq, 1, &q0, &q1);
            int bad = cb_knn_ivf_search(&ix, ids + q0 * (size_t)k, sc + q0 * (size_t)k, Q + q0 * (size_t)dim, q1 - q0, k,
                                 m->st.nprobe);
            m->st.t_search = cb_now() - t;
            cb_knn_ivf_free(&ix);
            if (bad) {
                cb_err_set(err, "out of memory: the IVF search buffers");
                goto done;
            }
        } else {
            t = cb_now();
            size_t q0, q1;   /* this rank's queries */
            cb_comm_share(comm, comm->rank, nq, 1, &q0, &q1);
            if (cb_knn_exact(ids + q0 * (size_t)k, sc + q0 * (size_t)k, Q + q0 * (size_t)dim, q1 - q0, D, nd,
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

