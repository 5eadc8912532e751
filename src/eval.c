/* eval.c: BEIR data, exact MaxSim ranking, trec_eval metrics and run files
 * for `colbert eval` (see eval.h). */
#include "eval.h"
#include "blas.h"
#include "data.h"
#include "fsutil.h"
#include "topk.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ======================================================================== */
/* Loading                                                                  */
/* ======================================================================== */

typedef struct qrel {
    uint32_t q, doc;        /* q: index in queries.jsonl, then in the split */
    int32_t grade;
    uint32_t line;          /* order of the line, for "the last one wins" */
} qrel;

typedef struct qrels {
    qrel *a;
    size_t n, cap;
} qrels;

static int add_qrel(void *ctx, const beir *b, const beir_qrel *r, cb_err *err) {
    qrels *c = ctx;
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 1024;
        qrel *a = cb_realloc(c->a, cap * sizeof *a, "the judgements", err);
        if (!a) return -1;
        c->a = a;
        c->cap = cap;
    }
    c->a[c->n] = (qrel){r->query, r->doc, (int32_t)r->score, (uint32_t)c->n};
    c->n++;
    return 0;
}

static int by_query_doc(const void *a, const void *b) {
    const qrel *x = a, *y = b;
    if (x->q != y->q) return x->q < y->q ? -1 : 1;
    if (x->doc != y->doc) return x->doc < y->doc ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}

static int by_id(const void *a, const void *b, void *ids) {
    return strcmp(cb_strtab_get(ids, *(const uint32_t *)a), cb_strtab_get(ids, *(const uint32_t *)b));
}

void cb_eval_data_free(eval_data *d) {
    free(d->doc_id);
    free(d->doc_text);
    free(d->doc_len);
    free(d->doc_tie);
    free(d->doc_by_id);
    free(d->query_id);
    free(d->query_text);
    free(d->query_len);
    free(d->query_index);
    free(d->rel_off);
    free(d->rel_doc);
    free(d->rel_grade);
    cb_beir_free(&d->src);
    memset(d, 0, sizeof *d);
}

/* The split's queries in order of first appearance in the qrels, cut to
 * max_queries: d->query_index and the query arrays; the judgements of the
 * others are dropped from rels. */
static int split_queries(eval_data *d, qrels *rels, size_t max_queries, cb_err *err) {
    const beir *b = &d->src;
    size_t nq_all = b->query_ids.n, nq = 0, k = 0;
    if (!(d->query_index = cb_malloc(nq_all * sizeof(uint32_t), "the queries", err))) return -1;
    for (size_t i = 0; i < nq_all; i++) d->query_index[i] = UINT32_MAX;
    for (size_t i = 0; i < rels->n; i++)
        if (d->query_index[rels->a[i].q] == UINT32_MAX) d->query_index[rels->a[i].q] = (uint32_t)nq++;
    if (max_queries > 0 && nq > max_queries) nq = max_queries;
    for (size_t i = 0; i < rels->n; i++) {
        uint32_t q = d->query_index[rels->a[i].q];
        if (q < nq) {
            rels->a[k] = rels->a[i];
            rels->a[k++].q = q;
        }
    }
    rels->n = k;
    d->n_queries = nq;
    d->query_id = cb_malloc(nq * sizeof(char *), "the queries", err);
    d->query_text = cb_malloc(nq * sizeof(char *), "the queries", err);
    d->query_len = cb_malloc(nq * sizeof(size_t), "the queries", err);
    if (!d->query_id || !d->query_text || !d->query_len) return -1;
    for (size_t i = 0; i < nq_all; i++) {
        uint32_t q = d->query_index[i];
        if (q >= nq) {
            d->query_index[i] = UINT32_MAX;
            continue;
        }
        d->query_id[q] = cb_strtab_get(&b->query_ids, i);
        d->query_text[q] = cb_strtab_get(&b->query_texts, i);
        d->query_len[q] = cb_strtab_len(&b->query_texts, i);
    }
    return 0;
}

/* The documents: pointers into the reader's tables, and the ids' order. */
static int documents(eval_data *d, cb_err *err) {
    const beir *b = &d->src;
    size_t nd = b->doc_ids.n;
    d->n_docs = nd;
    d->doc_id = cb_malloc(nd * sizeof(char *), "the documents", err);
    d->doc_text = cb_malloc(nd * sizeof(char *), "the documents", err);
    d->doc_len = cb_malloc(nd * sizeof(size_t), "the documents", err);
    d->doc_tie = cb_malloc(nd * sizeof(uint32_t), "the documents", err);
    d->doc_by_id = cb_malloc(nd * sizeof(uint32_t), "the documents", err);
    if (!d->doc_id || !d->doc_text || !d->doc_len || !d->doc_tie || !d->doc_by_id) return -1;
    for (size_t i = 0; i < nd; i++) {
        d->doc_id[i] = cb_strtab_get(&b->doc_ids, i);
        d->doc_text[i] = cb_strtab_get(&b->doc_texts, i);
        d->doc_len[i] = cb_strtab_len(&b->doc_texts, i);
        d->doc_by_id[i] = (uint32_t)i;
    }
    qsort_r(d->doc_by_id, nd, sizeof(uint32_t), by_id, (void *)&b->doc_ids);
    for (size_t i = 0; i < nd; i++) d->doc_tie[d->doc_by_id[i]] = (uint32_t)(nd - 1 - i);
    return 0;
}

/* One judgement per (query, document): the last line wins, as in a dict. */
static int judgements(eval_data *d, qrels *rels, cb_err *err) {
    size_t nq = d->n_queries, nrel = rels->n, k = 0;
    qsort(rels->a, nrel, sizeof(qrel), by_query_doc);
    d->rel_off = cb_calloc(nq + 1, sizeof(size_t), "the judgements", err);
    d->rel_doc = cb_malloc(nrel * sizeof(uint32_t), "the judgements", err);
    d->rel_grade = cb_malloc(nrel * sizeof(int32_t), "the judgements", err);
    if (!d->rel_off || !d->rel_doc || !d->rel_grade) return -1;
    for (size_t i = 0; i < nrel; i++) {
        const qrel *r = &rels->a[i];
        if (i + 1 < nrel && r[1].q == r->q && r[1].doc == r->doc) continue;
        d->rel_doc[k] = r->doc;
        d->rel_grade[k++] = r->grade;
        d->rel_off[r->q + 1]++;
    }
    for (size_t q = 0; q < nq; q++) d->rel_off[q + 1] += d->rel_off[q];
    return 0;
}

int cb_eval_data_load(eval_data *d, const char *dir, const char *split, size_t max_queries, cb_err *err) {
    memset(d, 0, sizeof *d);
    qrels rels = {NULL, 0, 0};
    beir_opts o;
    cb_beir_opts_default(&o);
    o.integer_scores = 1;
    o.qrel = add_qrel;
    o.ctx = &rels;
    int rc = cb_beir_read(&d->src, dir, split, &o, err);
    if (!rc && (d->src.doc_ids.n > INT32_MAX - 1 || d->src.query_ids.n > INT32_MAX - 1))
        rc = cb_err_set(err, "%s: more than 2^31 documents or queries", dir);
    if (!rc && rels.n == 0)
        rc = cb_err_set(err, "%s: no judgement: expected \"query-id<TAB>corpus-id<TAB>score\" lines",
                        d->src.qrels_path);
    if (!rc) rc = split_queries(d, &rels, max_queries, err) || documents(d, err) || judgements(d, &rels, err);
    free(rels.a);
    if (rc) cb_eval_data_free(d);
    return rc ? -1 : 0;
}

int64_t cb_eval_doc_index(const eval_data *d, const char *id, size_t len) {
    uint32_t k = cb_strtab_find(&d->src.doc_ids, id, len);
    return k == STRTAB_NONE ? -1 : (int64_t)k;
}

/* ======================================================================== */
/* Ranking                                                                  */
/* ======================================================================== */

int cb_eval_ranker_init(eval_ranker *r, const float *qv, const uint32_t *tie, int nq, int Lq, int D, int depth,
                     int max_docs, int max_len) {
    CB_ASSERT(nq >= 0 && Lq > 0 && D > 0 && depth > 0 && max_docs > 0 && max_len > 0);
    memset(r, 0, sizeof *r);
    r->qv = qv;
    r->tie = tie;
    r->nq = nq;
    r->Lq = Lq;
    r->D = D;
    r->depth = depth;
    r->max_docs = max_docs;
    /* blocks of about 2048 rows: the SGEMM output [rows, EVAL_QB * Lq] stays
     * a few MB per thread */
    r->block_rows = max_len > 2048 ? max_len : 2048;
#ifdef _OPENMP
    r->n_threads = omp_get_max_threads();
#else
    r->n_threads = 1;
#endif
    size_t W = (size_t)EVAL_QB * Lq, nqs = nq ? (size_t)nq : 1;
    r->heap = malloc(nqs * depth * sizeof(topk_hit));
    r->heap_n = calloc(nqs, sizeof(int));
    r->scores = malloc((size_t)EVAL_QB * max_docs * sizeof(float));
    r->sim = malloc((size_t)r->n_threads * r->block_rows * W * sizeof(float));
    r->colmax = malloc((size_t)r->n_threads * W * sizeof(float));
    r->off = malloc(((size_t)max_docs + 1) * sizeof(size_t));
    r->block = malloc(((size_t)max_docs + 1) * sizeof(int));
    if (r->heap && r->heap_n && r->scores && r->sim && r->colmax && r->off && r->block) return 0;
    cb_eval_ranker_free(r);
    return -1;
}

void cb_eval_ranker_free(eval_ranker *r) {
    free(r->heap);
    free(r->heap_n);
    free(r->scores);
    free(r->sim);
    free(r->colmax);
    free(r->off);
    free(r->block);
    memset(r, 0, sizeof *r);
}

void cb_eval_ranker_add(eval_ranker *r, const float *dv, const int *lengths, int doc0, int nd) {
    CB_ASSERT(nd >= 0 && nd <= r->max_docs);
    if (nd == 0 || r->nq == 0) return;
    const int Lq = r->Lq, D = r->D;
    size_t *off = r->off;
    off[0] = 0;
    for (int i = 0; i < nd; i++) {
        CB_ASSERT(lengths[i] >= 0 && lengths[i] <= r->block_rows);
        off[i + 1] = off[i] + (size_t)lengths[i];
    }
    /* blocks of consecutive documents with at most block_rows rows */
    int nb = 0;
    for (int s = 0; s < nd;) {
        int e = s;
        size_t rows = 0;
        while (e < nd && rows + (size_t)lengths[e] <= (size_t)r->block_rows) rows += (size_t)lengths[e++];
        r->block[nb++] = s;
        s = e;
    }
    r->block[nb] = nd;
    for (int q0 = 0; q0 < r->nq; q0 += EVAL_QB) {
        const int nqb = r->nq - q0 < EVAL_QB ? r->nq - q0 : EVAL_QB, w = nqb * Lq;
        const float *qb = r->qv + (size_t)q0 * Lq * D;
#pragma omp parallel for schedule(dynamic, 1)
        for (int b = 0; b < nb; b++) {
#ifdef _OPENMP
            int th = omp_get_thread_num();
#else
            int th = 0;
#endif
            float *S = r->sim + (size_t)th * r->block_rows * EVAL_QB * Lq;
            float *mx = r->colmax + (size_t)th * EVAL_QB * Lq;
            size_t r0 = off[r->block[b]], rows = off[r->block[b + 1]] - r0;
            /* S[rows, w] = dv[rows, D] @ qb[w, D]^T: every document row
             * against every vector of the batch's queries */
            if (rows)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, w, D, 1.0f, dv + r0 * D, D, qb,
                            D, 0.0f, S, w);
            for (int i = r->block[b]; i < r->block[b + 1]; i++) {
                size_t a = off[i] - r0, e = off[i + 1] - r0;
                if (a == e) {   /* no kept vector: colbert-ai's -9999 per query vector */
                    for (int q = 0; q < nqb; q++) r->scores[(size_t)q * r->max_docs + i] = -9999.0f * Lq;
                    continue;
                }
                memcpy(mx, S + a * w, (size_t)w * sizeof(float));
                for (size_t t = a + 1; t < e; t++) {
                    const float *row = S + t * w;
                    for (int j = 0; j < w; j++) mx[j] = row[j] > mx[j] ? row[j] : mx[j];
                }
                for (int q = 0; q < nqb; q++) {
                    float s = 0.0f;
                    for (int k = 0; k < Lq; k++) s += mx[q * Lq + k];
                    r->scores[(size_t)q * r->max_docs + i] = s;
                }
            }
        }
#pragma omp parallel for schedule(dynamic, 1)
        for (int q = 0; q < nqb; q++) {
            size_t g = (size_t)(q0 + q);
            topk_hit *h = r->heap + g * r->depth;
            const float *sc = r->scores + (size_t)q * r->max_docs;
            for (int i = 0; i < nd; i++) {
                int32_t doc = doc0 + i;
                if (sc[i] == sc[i])   /* a NaN score is left out */
                    cb_topk_push(h, &r->heap_n[g], r->depth, sc[i], doc, r->tie ? r->tie[doc] : (uint32_t)doc);
            }
        }
    }
}

void cb_eval_ranker_finish(eval_ranker *r, int32_t *top, float *top_score) {
    for (int q = 0; q < r->nq; q++) {
        topk_hit *h = r->heap + (size_t)q * r->depth;
        cb_topk_sort(h, r->heap_n[q]);
        cb_topk_write(h, r->heap_n[q], r->depth, top + (size_t)q * r->depth, top_score + (size_t)q * r->depth);
        r->heap_n[q] = 0;
    }
}

int cb_eval_merge_ranks(cb_comm *c, int32_t *top, float *top_score, int nq, int depth, const uint32_t *tie,
                     cb_err *err) {
    if (c->size == 1 || nq == 0) return 0;
    size_t per = (size_t)nq * depth, P = (size_t)c->size;
    int32_t *all = cb_malloc(P * per * sizeof(int32_t), "the ranks' rankings", err);
    float *alls = all ? cb_malloc(P * per * sizeof(float), "the ranks' rankings", err) : NULL;
    topk_hit *h = alls ? cb_malloc((size_t)depth * sizeof(topk_hit), "the ranks' rankings", err) : NULL;
    size_t *counts = h ? cb_malloc(P * sizeof(size_t), "the ranks' rankings", err) : NULL;
    if (cb_comm_agree(c, counts ? 0 : -1, err)) {   /* all ranks go on, or none */
        free(all); free(alls); free(h); free(counts);
        return -1;
    }
    for (size_t r = 0; r < P; r++) counts[r] = per;
    cb_comm_allgatherv(c, all, top, counts, COMM_I32);
    cb_comm_allgatherv(c, alls, top_score, counts, COMM_F32);
    for (int q = 0; q < nq; q++) {
        int n = 0;
        for (size_t r = 0; r < P; r++)
            for (int k = 0; k < depth; k++) {
                size_t i = r * per + (size_t)q * depth + (size_t)k;
                if (all[i] < 0) break;
                cb_topk_push(h, &n, depth, alls[i], all[i], tie ? tie[all[i]] : (uint32_t)all[i]);
            }
        cb_topk_sort(h, n);
        cb_topk_write(h, n, depth, top + (size_t)q * depth, top_score + (size_t)q * depth);
    }
    free(all); free(alls); free(h); free(counts);
    return 0;
}

/* ======================================================================== */
/* Metrics                                                                  */
/* ======================================================================== */

static int32_t grade_of(const eval_data *d, size_t q, int32_t doc) {
    size_t lo = d->rel_off[q], hi = d->rel_off[q + 1];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->rel_doc[mid] == (uint32_t)doc) return d->rel_grade[mid];
        if (d->rel_doc[mid] < (uint32_t)doc) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

void cb_eval_score(eval_metrics *mean, eval_metrics *per_query, const eval_data *d, const int32_t *top, int depth) {
    double sum[4] = {0, 0, 0, 0};
    for (size_t q = 0; q < d->n_queries; q++) {
        /* the ideal DCG@10 from the ten best grades */
        int32_t best[10];
        int nb = 0;
        size_t n_rel = 0;
        for (size_t k = d->rel_off[q]; k < d->rel_off[q + 1]; k++) {
            int32_t g = d->rel_grade[k];
            if (g <= 0) continue;
            n_rel++;
            if (nb < 10) best[nb++] = g;
            else if (g > best[9]) best[9] = g;
            else continue;
            for (int i = nb - 1; i > 0 && best[i] > best[i - 1]; i--) {
                int32_t t = best[i]; best[i] = best[i - 1]; best[i - 1] = t;
            }
        }
        double idcg = 0, dcg = 0, rr = 0;
        for (int i = 0; i < nb; i++) idcg += best[i] / log2(i + 2.0);
        size_t hit10 = 0, hit100 = 0;
        const int32_t *t = top + q * (size_t)depth;
        for (int r = 0; r < depth && r < 100; r++) {
            if (t[r] < 0) break;
            int32_t g = grade_of(d, q, t[r]);
            if (g <= 0) continue;
            hit100++;
            if (r < 10) {
                hit10++;
                dcg += g / log2(r + 2.0);
                if (rr == 0) rr = 1.0 / (r + 1);
            }
        }
        eval_metrics m = {
            .ndcg10 = idcg > 0 ? dcg / idcg : 0,
            .mrr10 = rr,
            .recall10 = n_rel ? (double)hit10 / n_rel : 0,
            .recall100 = n_rel ? (double)hit100 / n_rel : 0,
        };
        if (per_query) per_query[q] = m;
        sum[0] += m.ndcg10;
        sum[1] += m.mrr10;
        sum[2] += m.recall10;
        sum[3] += m.recall100;
    }
    double n = d->n_queries ? (double)d->n_queries : 1;
    mean->ndcg10 = sum[0] / n;
    mean->mrr10 = sum[1] / n;
    mean->recall10 = sum[2] / n;
    mean->recall100 = sum[3] / n;
}

/* ======================================================================== */
/* Run files                                                                */
/* ======================================================================== */

typedef struct run_entry {
    uint32_t q;
    int32_t doc;
    double score;
    uint32_t tie;
} run_entry;

static int by_query_score(const void *a, const void *b) {
    const run_entry *x = a, *y = b;
    if (x->q != y->q) return x->q < y->q ? -1 : 1;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->tie < y->tie ? -1 : x->tie > y->tie;
}

int cb_eval_read_run(int32_t **top, const eval_data *d, const char *path, int depth, cb_err *err) {
    *top = NULL;
    data_lines r;
    if (cb_data_lines_open(&r, path, err)) return -1;
    size_t nq = d->n_queries;
    run_entry *e = NULL;
    size_t n = 0, cap = 0;
    uint32_t *seen = NULL;
    int ret = -1, rc;
    char *line, b[96];
    size_t len;
    while ((rc = cb_data_lines_next_nonblank(&r, NULL, &line, &len, err)) == 1) {
        char *f[7];
        size_t fl[7];
        int nf = 0;
        for (char *s = line, *end = line + len; s < end && nf < 7;) {
            while (s < end && (*s == ' ' || *s == '\t' || *s == '\r')) s++;
            if (s >= end) break;
            char *t = s;
            while (t < end && *t != ' ' && *t != '\t' && *t != '\r') t++;
            f[nf] = s;
            fl[nf++] = (size_t)(t - s);
            s = t;
        }
        if (nf != 6) {
            cb_data_lines_err(err, &r, "expected \"query-id Q0 doc-id rank score tag\", found %d field%s", nf,
                           nf == 1 ? "" : "s");
            goto done;
        }
        uint32_t fq = cb_strtab_find(&d->src.query_ids, f[0], fl[0]);
        if (fq == STRTAB_NONE || d->query_index[fq] == UINT32_MAX) continue;   /* a query outside the split */
        int64_t doc = cb_eval_doc_index(d, f[2], fl[2]);
        if (doc < 0) {
            cb_data_lines_err(err, &r, "doc-id %s is not in the corpus", cb_data_excerpt(b, sizeof b, f[2], fl[2]));
            goto done;
        }
        f[4][fl[4]] = '\0';
        char *endp;
        double s = strtod(f[4], &endp);
        if (*endp || fl[4] == 0) {
            cb_data_lines_err(err, &r, "expected a number as the score, found %s", cb_data_excerpt(b, sizeof b, f[4], fl[4]));
            goto done;
        }
        if (n == cap) {
            size_t c = cap ? 2 * cap : 1024;
            run_entry *g = cb_realloc(e, c * sizeof *e, "the run", err);
            if (!g) goto done;
            e = g;
            cap = c;
        }
        e[n++] = (run_entry){d->query_index[fq], (int32_t)doc, s, d->doc_tie[doc]};
    }
    if (rc < 0) goto done;
    qsort(e, n, sizeof(run_entry), by_query_score);
    *top = cb_malloc(nq * (size_t)depth * sizeof(int32_t), "the ranking", err);
    seen = cb_malloc(d->n_docs * sizeof(uint32_t), "the ranking", err);
    if (!*top || !seen) goto done;
    for (size_t i = 0; i < nq * (size_t)depth; i++) (*top)[i] = -1;
    for (size_t i = 0; i < d->n_docs; i++) seen[i] = UINT32_MAX;
    for (size_t i = 0, k = 0; i < n; i++, k++) {
        if (i == 0 || e[i].q != e[i - 1].q) k = 0;
        if (seen[e[i].doc] == e[i].q) {
            cb_err_set(err, "%s: query %s lists document %s twice", path, d->query_id[e[i].q], d->doc_id[e[i].doc]);
            goto done;
        }
        seen[e[i].doc] = e[i].q;
        if (k < (size_t)depth) (*top)[e[i].q * (size_t)depth + k] = e[i].doc;
    }
    ret = 0;
done:
    if (ret) {
        free(*top);
        *top = NULL;
    }
    cb_data_lines_close(&r);
    free(e);
    free(seen);
    return ret;
}

int cb_eval_write_run(const char *path, const eval_data *d, const int32_t *top, const float *top_score, int depth,
                   int count, const char *tag, cb_err *err) {
    CB_ASSERT(count >= 0 && count <= depth);
    char *tmp;
    FILE *f = cb_out_open(path, &tmp, err);
    if (!f) return -1;
    for (size_t q = 0; q < d->n_queries; q++)
        for (int k = 0; k < count; k++) {
            int32_t doc = top[q * (size_t)depth + k];
            if (doc < 0) break;
            fprintf(f, "%s Q0 %s %d %.9g %s\n", d->query_id[q], d->doc_id[doc], k + 1,
                    (double)top_score[q * (size_t)depth + k], tag);
        }
    if (ferror(f)) {
        cb_err_set(err, "%s: write failed: %s", path, strerror(errno));
        cb_out_abort(f, tmp);
        return -1;
    }
    return cb_out_commit(f, tmp, path, err);
}
