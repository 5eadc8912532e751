/* job.c: see job.h. */
#include "job.h"
#include "colmodel.h"
#include "encoder.h"
#include "progress.h"

#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

void openblas_set_num_threads(int);

/* ---- threads --------------------------------------------------------------- */

static int default_threads;   /* the OpenMP default before anyone set it */

__attribute__((constructor)) static void remember_threads(void) {
#ifdef _OPENMP
    default_threads = omp_get_max_threads();
#else
    default_threads = 1;
#endif
}

void cb_set_threads(int n) {
    if (n <= 0) n = default_threads > 0 ? default_threads : 1;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
}

/* ---- prepare ----------------------------------------------------------------- */

void cb_prepare_job_init(prepare_job *j) {
    memset(j, 0, sizeof *j);
    cb_prepare_opts_default(&j->po);
    j->po.negatives = PREPARE_NEG_MINED;   /* the reference's default */
    cb_miner_opts_default(&j->mo);
    j->split = "train";
    j->corpus_mem_name = "corpus";
    j->train_mem_name = "records";
}

int cb_prepare_job_run(prepare_job *j, cb_err *err) {
    double t0 = cb_now();
    j->mining = j->po.negatives == PREPARE_NEG_MINED && j->po.num_new_negatives > 0;
    prepare_miner hook = {0};
    prepare_opts po = j->po;
    po.miner = NULL;
    if (j->mining) {
        /* the model is found before any data is read: a missing one fails at once */
        j->mo.quiet = j->po.quiet;
        j->mo.seed = j->po.seed;
        j->mo.comm = j->comm;
        if (cb_miner_init(&j->m, &j->mo, err)) {
            j->mining = 0;
            return -1;
        }
        hook = cb_miner_hook(&j->m);
        po.miner = &hook;
    }
    if (!(j->p = cb_prepare_new(&po))) {
        cb_err_set(err, "out of memory: a new preparation");
        cb_prepare_job_free(j);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < j->n_corpus && !rc; i++) rc = cb_prepare_add_corpus(j->p, j->corpus[i], err);
    if (!rc && j->corpus_mem)
        rc = cb_prepare_add_corpus_mem(j->p, j->corpus_mem_name, j->corpus_mem, j->corpus_mem_len, err);
    if (!rc && j->beir) rc = cb_prepare_add_beir(j->p, j->beir, j->split, err);
    for (int i = 0; i < j->n_train && !rc; i++) rc = cb_prepare_add_train(j->p, j->train[i], err);
    if (!rc && j->train_mem)
        rc = cb_prepare_add_train_mem(j->p, j->train_mem_name, j->train_mem, j->train_mem_len, err);
    if (!rc) rc = cb_prepare_run(j->p, err);
    if (!rc && (!j->comm || j->comm->rank == 0)) rc = cb_prepare_export(j->p, j->out, err);
    if (rc) {
        cb_prepare_job_free(j);
        return -1;
    }
    j->seconds = cb_now() - t0;
    return 0;
}

void cb_prepare_job_free(prepare_job *j) {
    if (j->p) cb_prepare_free(j->p);
    j->p = NULL;
    if (j->mining) cb_miner_free(&j->m);
    j->mining = 0;
}

/* ---- eval --------------------------------------------------------------------- */

void cb_eval_job_init(eval_job *j) {
    memset(j, 0, sizeof *j);
    j->split = "test";
    j->depth = 100;
    j->seed = 12345;
}

/* The dense ranking: sentence embeddings of the corpus and the queries
 * (the model's pooling, unit length), exact cosine top D per query.
 * t[1..4]: model, queries, documents, search seconds. */
static int dense_rank(const char *model, const eval_data *d, int D, int max_len, int quiet, int32_t **top,
                      float **top_score, double *t, cb_err *err) {
    double t1 = cb_now();
    encoder e;
    if (cb_encoder_load(&e, cb_ops_cpu(), model, max_len, err)) return -1;
    e.quiet = quiet;
    t[1] = cb_now() - t1;
    size_t nq = d->n_queries, nd = d->n_docs, H = (size_t)e.enc.info.hidden;
    float *q = cb_malloc((nq ? nq : 1) * H * sizeof(float), "the query embeddings", err);
    float *dv = q ? cb_malloc((nd ? nd : 1) * H * sizeof(float), "the document embeddings", err) : NULL;
    *top = dv ? cb_malloc((nq ? nq : 1) * (size_t)D * sizeof(int32_t), "the ranking", err) : NULL;
    *top_score = *top ? cb_malloc((nq ? nq : 1) * (size_t)D * sizeof(float), "the ranking", err) : NULL;
    int rc = *top_score ? 0 : -1;
    if (!rc) {
        t1 = cb_now();
        rc = cb_encoder_embed(&e, d->query_text, d->query_len, (int)nq, q, err);
        t[2] = cb_now() - t1;
    }
    if (!rc) {
        t1 = cb_now();
        rc = cb_encoder_embed(&e, d->doc_text, d->doc_len, (int)nd, dv, err);
        t[3] = cb_now() - t1;
    }
    if (!rc) {
        t1 = cb_now();
        cb_knn_normalize(q, nq, (int)H);
        cb_knn_normalize(dv, nd, (int)H);
        if (cb_knn_exact(*top, *top_score, q, nq, dv, nd, (int)H, D))
            rc = cb_err_set(err, "out of memory: the dense search");
        t[4] = cb_now() - t1;
    }
    free(q);
    free(dv);
    cb_encoder_free(&e);
    return rc;
}

int cb_eval_job_run(eval_job *j, cb_err *err) {
    cb_comm *comm = j->comm ? j->comm : cb_comm_serial();
    int root = comm->rank == 0, quiet = j->quiet || !root;
    double t0 = cb_now(), t1, t[6] = {0};
    eval_data d;
    if (cb_eval_data_load(&d, j->dataset, j->split, j->max_queries, err)) return -1;
    t[0] = cb_now() - t0;
    j->n_queries = d.n_queries;
    j->n_docs = d.n_docs;
    j->doc_vectors = 0;
    int D = 100 > j->depth ? 100 : j->depth;   /* ranked per query: at least the metrics' 100 */
    int32_t *top = NULL;
    float *top_score = NULL, *qv = NULL;
    size_t *counts = NULL;
    int ret = -1;
    colmodel cm;
    memset(&cm, 0, sizeof cm);
    if (j->run_in) {
        if (cb_eval_read_run(&top, &d, j->run_in, D, err)) goto done;
        cb_eval_score(&j->m, NULL, &d, top, D);
        ret = 0;
        goto done;
    }
    if (j->dense) {
        if (dense_rank(j->model, &d, D, j->doc_maxlen, quiet, &top, &top_score, t, err)) goto done;
        cb_eval_score(&j->m, NULL, &d, top, D);
        if (j->run_out && root &&
            cb_eval_write_run(j->run_out, &d, top, top_score, D, j->depth, "colbert.c-dense", err))
            goto done;
        ret = 0;
        goto done;
    }

    t1 = cb_now();
    if (cb_colmodel_load(&cm, j->dev ? j->dev : cb_ops_cpu(), j->model, j->dim, j->seed, err)) goto done;
    int maxpos = cm.enc.info.max_len;
    if (j->doc_maxlen > maxpos || j->query_maxlen > maxpos) {
        int dl = j->doc_maxlen > maxpos;
        cb_err_set(err, "%s_maxlen %d: the model has %d positions", dl ? "doc" : "query",
                   dl ? j->doc_maxlen : j->query_maxlen, maxpos);
        goto done;
    }
    if (j->doc_maxlen) cm.cc.doc_maxlen = j->doc_maxlen;
    if (j->query_maxlen) cm.cc.query_maxlen = j->query_maxlen;
    cm.quiet = quiet;
    t[1] = cb_now() - t1;
    if (!quiet)
        fprintf(stderr, "colbert eval: %s (%s): %zu queries, %zu documents; %s %s (query_maxlen %d, "
                "doc_maxlen %d, dim %d)\n", j->dataset, j->split, d.n_queries, d.n_docs,
                cm.is_colbert ? "ColBERT" : "new ColBERT from", cm.dir, cm.cc.query_maxlen, cm.cc.doc_maxlen,
                cm.cc.dim);

    /* queries: all of them at once, [nq, Lq, dim]; with several ranks each
     * encodes a share (whole encoding batches: the same bytes) and all get
     * every query */
    t1 = cb_now();
    int nq = (int)d.n_queries, Lq = cm.cc.query_maxlen, dim = cm.cc.dim;
    size_t q0, q1, per_q = (size_t)Lq * dim, qb = (size_t)cb_colmodel_queries_per_batch(&cm);
    if (!(qv = cb_malloc((size_t)(nq ? nq : 1) * per_q * sizeof(float), "the query vectors", err))) goto done;
    cb_comm_share(comm, comm->rank, (size_t)nq, qb, &q0, &q1);
    if (cb_colmodel_encode_queries(&cm, d.query_text + q0, d.query_len + q0, (int)(q1 - q0), qv + q0 * per_q, err))
        goto done;
    if (comm->size > 1) {
        if (!(counts = cb_malloc((size_t)comm->size * sizeof(size_t), "the ranks' counts", err))) goto done;
        for (int r = 0; r < comm->size; r++) {
            size_t ra, rz;
            cb_comm_share(comm, r, (size_t)nq, qb, &ra, &rz);
            counts[r] = (rz - ra) * per_q;
        }
        cb_comm_allgatherv(comm, qv, qv + q0 * per_q, counts, COMM_F32);
    }
    t[2] = cb_now() - t1;

    /* documents: encoded and ranked a chunk at a time (with several ranks,
     * rank k takes the chunks k, k + N, ...; the rankings merge) */
    eval_ranker rk;
    if (cb_eval_ranker_init(&rk, qv, d.doc_tie, nq, Lq, dim, D, EVAL_JOB_CHUNK, cm.cc.doc_maxlen)) {
        cb_err_set(err, "out of memory for the ranking of %d queries", nq);
        goto done;
    }
    progress pg;
    cb_progress_init(&pg, "encode + MaxSim", "docs", (int64_t)d.n_docs, quiet);
    cm.quiet = 1;   /* one bar for the whole corpus, not one per chunk */
    size_t chunk = 0;
    for (size_t s = 0; s < d.n_docs; s += EVAL_JOB_CHUNK, chunk++) {
        if (chunk % (size_t)comm->size != (size_t)comm->rank) continue;
        int n = d.n_docs - s < EVAL_JOB_CHUNK ? (int)(d.n_docs - s) : EVAL_JOB_CHUNK;
        int *lengths;
        float *vectors;
        t1 = cb_now();
        if (cb_colmodel_encode_docs(&cm, d.doc_text + s, d.doc_len + s, n, &lengths, &vectors, err)) {
            cb_eval_ranker_free(&rk);
            goto done;
        }
        double t2 = cb_now();
        t[3] += t2 - t1;
        cb_eval_ranker_add(&rk, vectors, lengths, (int)s, n);
        t[4] += cb_now() - t2;
        for (int i = 0; i < n; i++) j->doc_vectors += (size_t)lengths[i];
        free(lengths);
        free(vectors);
        cb_progress_update(&pg, (int64_t)(s + (size_t)n));
    }
    cb_progress_finish(&pg);
    if (!(top = cb_malloc((size_t)(nq ? nq : 1) * D * sizeof(int32_t), "the ranking", err)) ||
        !(top_score = cb_malloc((size_t)(nq ? nq : 1) * D * sizeof(float), "the ranking", err))) {
        cb_eval_ranker_free(&rk);
        goto done;
    }
    t1 = cb_now();
    cb_eval_ranker_finish(&rk, top, top_score);
    cb_eval_ranker_free(&rk);
    if (comm->size > 1) {
        if (cb_eval_merge_ranks(comm, top, top_score, nq, D, d.doc_tie, err)) goto done;
        int64_t dv = (int64_t)j->doc_vectors;
        cb_comm_allreduce(comm, &dv, 1, COMM_I64, COMM_SUM);
        j->doc_vectors = (size_t)dv;
        cb_comm_allreduce(comm, t + 2, 3, COMM_F64, COMM_MAX);   /* the slowest rank's times */
    }
    t[4] += cb_now() - t1;
    cb_eval_score(&j->m, NULL, &d, top, D);
    if (j->run_out && root && cb_eval_write_run(j->run_out, &d, top, top_score, D, j->depth, "colbert.c", err))
        goto done;
    ret = 0;
done:
    t[5] = cb_now() - t0;
    j->t_data = t[0];
    j->t_model = t[1];
    j->t_queries = t[2];
    j->t_docs = t[3];
    j->t_maxsim = t[4];
    j->t_total = t[5];
    if (cm.dir) cb_colmodel_free(&cm);
    free(counts);
    free(qv);
    free(top);
    free(top_score);
    cb_eval_data_free(&d);
    return ret;
}

/* ---- encode --------------------------------------------------------------------- */

int cb_encode_colbert_load(colmodel *m, ops_device *dev, const char *model, cb_err *err) {
    return cb_colmodel_load(m, dev ? dev : cb_ops_cpu(), model, 0, 12345, err);
}

int cb_encode_colbert_run(colbert_vectors *out, colmodel *m, const char *const *texts, const size_t *lens, int n,
                          int queries, cb_err *err) {
    memset(out, 0, sizeof *out);
    out->n = n;
    out->dim = m->cc.dim;
    out->query_maxlen = m->cc.query_maxlen;
    int rc = 0;
    if (queries) {
        size_t count = ((size_t)n * out->query_maxlen + 1) * out->dim;
        if (!(out->vectors = cb_malloc(count * sizeof(float), "the query vectors", err)) ||
            cb_colmodel_encode_queries(m, texts, lens, n, out->vectors, err))
            rc = -1;
    } else {
        rc = cb_colmodel_encode_docs(m, texts, lens, n, &out->lengths, &out->vectors, err);
    }
    if (rc) cb_colbert_vectors_free(out);
    return rc;
}

int cb_encode_colbert_job(colbert_vectors *out, ops_device *dev, const char *model, const char *const *texts,
                          const size_t *lens, int n, int queries, int quiet, cb_err *err) {
    memset(out, 0, sizeof *out);
    colmodel m;
    if (cb_encode_colbert_load(&m, dev, model, err)) return -1;
    m.quiet = quiet;
    int rc = cb_encode_colbert_run(out, &m, texts, lens, n, queries, err);
    cb_colmodel_free(&m);
    return rc;
}

void cb_colbert_vectors_free(colbert_vectors *v) {
    free(v->vectors);
    free(v->lengths);
    v->vectors = NULL;
    v->lengths = NULL;
}
