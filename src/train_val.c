/* train_val.c: validation during training, by retrieval.
 *
 * A validation set is a few hundred queries with known relevant documents
 * and a corpus to search: the held-out training queries with their
 * positives, searched among the documents of their triples plus a seeded
 * sample of the training collection (val_docs in all, or the whole
 * collection when it is smaller); or a BEIR split (graded qrels) searched
 * among its judged documents plus a seeded sample of its corpus. At each
 * checkpoint the model being trained encodes the queries and, in chunks,
 * the corpus (eval mode, cb_step_encode); every query is ranked against every
 * document by exact MaxSim (eval.h's ranker) and scored with nDCG@10 and
 * MRR@10 (cb_eval_score, trec_eval's definitions). The best checkpoint is the
 * one with the highest nDCG@10.
 *
 * The earlier measures are kept beside it (with triples only): the mean
 * nway cross-entropy of the validation triples and MRR@10 of each query's
 * positives among its own candidates (the documents of its triples).
 */
#include "train_run.h"
#include "eval.h"
#include "rng.h"

#include <math.h>
#include <string.h>

#define VAL_CHUNK 256           /* documents encoded at once */
#define VAL_DEPTH 100           /* ranking depth kept per query */

void cb_train_val_free(val_set *v) {
    free(v->q_ids); free(v->q_mask); free(v->q_len);
    free(v->d_ids); free(v->d_len); free(v->d_off); free(v->d_keep); free(v->tie);
    free(v->rel_off); free(v->rel_doc); free(v->rel_grade);
    free(v->t_q); free(v->t_d);
    free(v->c_off); free(v->c_doc); free(v->c_pos);
    memset(v, 0, sizeof *v);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Index of id in the sorted ids[n], or -1. */
static int find_i64(const int64_t *ids, int n, int64_t id) {
    const int64_t *p = bsearch(&id, ids, (size_t)n, sizeof *ids, cmp_i64);
    return p ? (int)(p - ids) : -1;
}

/* The corpus: the `must` ids (sorted, distinct) plus a seeded sample of
 * [0, n_coll) up to `want` in all; *out sorted ascending. */
static int sample_docs(int64_t **out, int *n_out, const int64_t *must, int n_must, size_t n_coll, int want,
                       uint64_t seed, cb_err *err) {
    size_t n = n_coll <= (size_t)want ? n_coll : (size_t)(want > n_must ? want : n_must);
    int64_t *d = cb_malloc((n ? n : 1) * sizeof(int64_t), "the validation corpus", err);
    if (!d) return -1;
    size_t k = 0;
    if (n == n_coll) {
        for (size_t i = 0; i < n_coll; i++) d[k++] = (int64_t)i;
    } else {
        for (int i = 0; i < n_must; i++) d[k++] = must[i];
        /* Floyd's sampling of the rest would need a set; the collection is
         * small enough to draw with rejection against the sorted `must` and
         * a bitmap of what was drawn */
        uint8_t *taken = cb_calloc(n_coll, 1, "the validation corpus", err);
        if (!taken) { free(d); return -1; }
        for (int i = 0; i < n_must; i++) taken[must[i]] = 1;
        rng g;
        cb_rng_init(&g, seed, 0x76616c646f6373ULL);
        while (k < n) {
            uint64_t x = cb_rng_below(&g, n_coll);
            if (taken[x]) continue;
            taken[x] = 1;
            d[k++] = (int64_t)x;
        }
        free(taken);
        qsort(d, k, sizeof *d, cmp_i64);
    }
    *out = d;
    *n_out = (int)k;
    return 0;
}

/* Tokenize the queries (text i from qtext) and the documents. */
static int tokenize(run *r, val_set *v, const char *const *qtext, const size_t *qlen, const char *const *dtext,
                    const size_t *dlen, cb_err *err) {
    int Lq = r->cc.query_maxlen, Ld = r->cc.doc_maxlen, nq = v->nq, nd = v->nd;
    v->q_ids = cb_malloc((size_t)nq * Lq * sizeof(int32_t), "the validation queries", err);
    v->q_mask = v->q_ids ? cb_malloc((size_t)nq * Lq, "the validation queries", err) : NULL;
    v->q_len = v->q_mask ? cb_malloc((size_t)(nq ? nq : 1) * sizeof(int), "the validation queries", err) : NULL;
    int32_t *tmp = v->q_len ? cb_malloc((size_t)(nd ? nd : 1) * Ld * sizeof(int32_t), "the validation corpus", err)
                            : NULL;
    v->d_len = tmp ? cb_malloc((size_t)(nd ? nd : 1) * sizeof(int), "the validation corpus", err) : NULL;
    v->d_off = v->d_len ? cb_malloc((size_t)(nd + 1) * sizeof(size_t), "the validation corpus", err) : NULL;
    if (!v->d_off) { free(tmp); return -1; }
    for (int i = 0; i < nq; i++) {
        cb_colbert_query_ids(v->q_ids + (size_t)i * Lq, v->q_mask + (size_t)i * Lq, &r->vocab, r->tok, qtext[i],
                          qlen[i], &r->cc);
        if (r->cc.attend_to_mask_tokens) memset(v->q_mask + (size_t)i * Lq, 1, (size_t)Lq);
        v->q_len[i] = Lq;
    }
#pragma omp parallel for schedule(dynamic, 8)
    for (int i = 0; i < nd; i++)
        v->d_len[i] = cb_colbert_doc_ids(tmp + (size_t)i * Ld, &r->vocab, r->tok, dtext[i], dlen[i], &r->cc);
    v->d_off[0] = 0;
    for (int i = 0; i < nd; i++) v->d_off[i + 1] = v->d_off[i] + (size_t)v->d_len[i];
    v->d_ids = cb_malloc((v->d_off[nd] + 1) * sizeof(int32_t), "the validation corpus", err);
    v->d_keep = v->d_ids ? cb_malloc(v->d_off[nd] + 1, "the validation corpus", err) : NULL;
    if (!v->d_keep) { free(tmp); return -1; }
    for (int i = 0; i < nd; i++)
        memcpy(v->d_ids + v->d_off[i], tmp + (size_t)i * Ld, (size_t)v->d_len[i] * sizeof(int32_t));
    cb_colbert_doc_keep(v->d_keep, v->d_ids, (int)v->d_off[nd], &r->vocab, r->cc.mask_punctuation);
    free(tmp);
    return 0;
}

int cb_train_val_build(run *r, const data_texts *q, const data_texts *c, const data_triples *t, const int64_t *qsel,
                    int n, cb_err *err) {
    val_set *v = &r->val;
    memset(v, 0, sizeof *v);
    v->nq = n;
    int rc = -1, cap = r->o.val_candidates;
    int64_t *must = NULL, *docs = NULL;
    const char **qt = NULL, **dt = NULL;
    size_t *ql = NULL, *dl = NULL;
    /* the validation triples and every document they name */
    size_t n_must = 0;
    for (size_t j = 0; j < t->n; j++)
        for (int i = 0; i < n; i++)
            if (t->qids[j] == qsel[i]) { n_must += (size_t)t->nway; break; }
    must = cb_malloc((n_must ? n_must : 1) * sizeof(int64_t), "the validation set", err);
    v->t_q = must ? cb_malloc((n_must ? n_must : 1) * sizeof(int), "the validation set", err) : NULL;
    v->t_d = v->t_q ? cb_malloc((n_must ? n_must : 1) * sizeof(int), "the validation set", err) : NULL;
    if (!v->t_d) goto done;
    size_t k = 0;
    for (size_t j = 0; j < t->n; j++) {
        int qi = -1;
        for (int i = 0; i < n && qi < 0; i++) if (t->qids[j] == qsel[i]) qi = i;
        if (qi < 0) continue;
        v->t_q[v->nt++] = qi;
        for (int w = 0; w < t->nway; w++) must[k++] = t->pids[j * t->nway + w];
    }
    qsort(must, k, sizeof *must, cmp_i64);
    int nm = 0;
    for (size_t i = 0; i < k; i++) if (!nm || must[nm - 1] != must[i]) must[nm++] = must[i];
    if (sample_docs(&docs, &v->nd, must, nm, c->n, r->o.val_docs, r->o.seed, err)) goto done;
    /* the triples' documents as indices into the corpus */
    {
        size_t j2 = 0;
        for (size_t j = 0; j < t->n; j++) {
            int qi = -1;
            for (int i = 0; i < n && qi < 0; i++) if (t->qids[j] == qsel[i]) qi = i;
            if (qi < 0) continue;
            for (int w = 0; w < NWAY; w++)
                v->t_d[j2 * NWAY + w] = find_i64(docs, v->nd, t->pids[j * t->nway + w]);
            j2++;
        }
    }
    /* qrels and candidates per query, sorted by document index */
    v->rel_off = cb_calloc((size_t)n + 1, sizeof(size_t), "the validation qrels", err);
    v->rel_doc = v->rel_off ? cb_malloc((size_t)(v->nt ? v->nt : 1) * sizeof(uint32_t), "the validation qrels", err)
                            : NULL;
    v->rel_grade = v->rel_doc ? cb_malloc((size_t)(v->nt ? v->nt : 1) * sizeof(int32_t), "the validation qrels",
                                          err) : NULL;
    v->c_off = v->rel_grade ? cb_calloc((size_t)n + 1, sizeof(int), "the validation candidates", err) : NULL;
    v->c_doc = v->c_off ? cb_malloc((size_t)(v->nt ? v->nt : 1) * NWAY * sizeof(int), "the validation candidates",
                                    err) : NULL;
    v->c_pos = v->c_doc ? cb_calloc((size_t)(v->nt ? v->nt : 1) * NWAY, 1, "the validation candidates", err) : NULL;
    if (!v->c_pos) goto done;
    size_t nr = 0;
    int nc = 0;
    for (int qi = 0; qi < n; qi++) {
        v->rel_off[qi] = nr;
        v->c_off[qi] = nc;
        for (int j = 0; j < v->nt; j++) {
            if (v->t_q[j] != qi) continue;
            for (int w = 0; w < NWAY; w++) {
                int d = v->t_d[j * NWAY + w], seen = -1;
                for (int x = v->c_off[qi]; x < nc; x++) if (v->c_doc[x] == d) seen = x;
                if (seen < 0 && nc - v->c_off[qi] < cap) { seen = nc; v->c_doc[nc++] = d; }
                if (seen >= 0 && w == 0) v->c_pos[seen] = 1;
            }
            int pos = v->t_d[j * NWAY], dup = 0;
            for (size_t x = v->rel_off[qi]; x < nr; x++) dup |= v->rel_doc[x] == (uint32_t)pos;
            if (!dup) { v->rel_doc[nr] = (uint32_t)pos; v->rel_grade[nr] = 1; nr++; }
        }
        /* sort this query's judgements by document index */
        for (size_t a = v->rel_off[qi] + 1; a < nr; a++)
            for (size_t b = a; b > v->rel_off[qi] && v->rel_doc[b - 1] > v->rel_doc[b]; b--) {
                uint32_t td = v->rel_doc[b]; v->rel_doc[b] = v->rel_doc[b - 1]; v->rel_doc[b - 1] = td;
            }
    }
    v->rel_off[n] = nr;
    v->c_off[n] = nc;
    /* texts */
    qt = cb_malloc((size_t)(n ? n : 1) * sizeof *qt, "the validation set", err);
    ql = qt ? cb_malloc((size_t)(n ? n : 1) * sizeof *ql, "the validation set", err) : NULL;
    dt = ql ? cb_malloc((size_t)(v->nd ? v->nd : 1) * sizeof *dt, "the validation set", err) : NULL;
    dl = dt ? cb_malloc((size_t)(v->nd ? v->nd : 1) * sizeof *dl, "the validation set", err) : NULL;
    if (!dl) goto done;
    for (int i = 0; i < n; i++) qt[i] = cb_data_texts_get(q, (size_t)cb_data_texts_find(q, qsel[i]), &ql[i]);
    for (int i = 0; i < v->nd; i++) dt[i] = cb_data_texts_get(c, (size_t)docs[i], &dl[i]);
    if (tokenize(r, v, qt, ql, dt, dl, err)) goto done;
    snprintf(v->source, sizeof v->source, "%d held-out queries against %d documents", n, v->nd);
    rc = 0;
done:
    free(must); free(docs); free(qt); free(ql); free(dt); free(dl);
    if (rc) cb_train_val_free(v);
    return rc;
}

int cb_train_val_build_beir(run *r, const char *dir, const char *split, cb_err *err) {
    val_set *v = &r->val;
    memset(v, 0, sizeof *v);
    eval_data d;
    if (cb_eval_data_load(&d, dir, split, 0, err)) return cb_err_prefix(err, "validation data");
    int rc = -1;
    int64_t *must = NULL, *docs = NULL;
    const char **dt = NULL;
    size_t *dl = NULL;
    size_t nj = d.rel_off[d.n_queries];
    must = cb_malloc((nj ? nj : 1) * sizeof(int64_t), "the validation set", err);
    if (!must) goto done;
    for (size_t i = 0; i < nj; i++) must[i] = d.rel_doc[i];
    qsort(must, nj, sizeof *must, cmp_i64);
    int nm = 0;
    for (size_t i = 0; i < nj; i++) if (!nm || must[nm - 1] != must[i]) must[nm++] = must[i];
    if (sample_docs(&docs, &v->nd, must, nm, d.n_docs, r->o.val_docs, r->o.seed, err)) goto done;
    v->nq = (int)d.n_queries;
    v->rel_off = cb_malloc((d.n_queries + 1) * sizeof(size_t), "the validation qrels", err);
    v->rel_doc = v->rel_off ? cb_malloc((nj ? nj : 1) * sizeof(uint32_t), "the validation qrels", err) : NULL;
    v->rel_grade = v->rel_doc ? cb_malloc((nj ? nj : 1) * sizeof(int32_t), "the validation qrels", err) : NULL;
    dt = v->rel_grade ? cb_malloc((size_t)(v->nd ? v->nd : 1) * sizeof *dt, "the validation set", err) : NULL;
    dl = dt ? cb_malloc((size_t)(v->nd ? v->nd : 1) * sizeof *dl, "the validation set", err) : NULL;
    v->tie = dl ? cb_malloc((size_t)(v->nd ? v->nd : 1) * sizeof(uint32_t), "the validation set", err) : NULL;
    if (!v->tie) goto done;
    /* ties as colbert eval breaks them (document id order), so that a
     * validation on the whole corpus is exactly colbert eval of the split */
    for (int i = 0; i < v->nd; i++) v->tie[i] = d.doc_tie[docs[i]];
    /* judgements in the sample's document indices (sorted: the sample is
     * sorted by corpus index, and the qrels are sorted by it too) */
    for (size_t q = 0; q <= d.n_queries; q++) v->rel_off[q] = d.rel_off[q];
    for (size_t i = 0; i < nj; i++) {
        v->rel_doc[i] = (uint32_t)find_i64(docs, v->nd, d.rel_doc[i]);
        v->rel_grade[i] = d.rel_grade[i];
    }
    for (int i = 0; i < v->nd; i++) {
        dt[i] = d.doc_text[docs[i]];
        dl[i] = d.doc_len[docs[i]];
    }
    if (tokenize(r, v, d.query_text, d.query_len, dt, dl, err)) goto done;
    snprintf(v->source, sizeof v->source, "%s (%s): %d queries against %d documents", dir, split, v->nq, v->nd);
    rc = 0;
done:
    free(must); free(docs); free(dt); free(dl);
    cb_eval_data_free(&d);
    if (rc) cb_train_val_free(v);
    return rc;
}

/* Kept rows of documents [a, b) of the encoded chunk `vec` (all rows, keep 0
 * rows zero) packed into `out`, their counts into len. */
static void compact(const val_set *v, int a, int b, const float *vec, float *out, int *len, int D) {
    size_t t0 = v->d_off[a], o = 0;
    for (int i = a; i < b; i++) {
        int k = 0;
        for (size_t t = v->d_off[i]; t < v->d_off[i + 1]; t++) {
            if (!v->d_keep[t]) continue;
            memcpy(out + o * D, vec + (t - t0) * D, (size_t)D * sizeof(float));
            o++;
            k++;
        }
        len[i - a] = k;
    }
}

/* MaxSim of query q (qv [Lq, D]) with document rows [n, D]; -9999 per query
 * vector when the document has no row, as colbert-ai. */
static double maxsim(const float *qv, int Lq, const float *dv, int n, int D) {
    double s = 0;
    for (int i = 0; i < Lq; i++) {
        float best = -9999.0f;
        for (int j = 0; j < n; j++) {
            float dot = 0;
            for (int x = 0; x < D; x++) dot += qv[(size_t)i * D + x] * dv[(size_t)j * D + x];
            if (j == 0 || dot > best) best = dot;
        }
        s += best;
    }
    return s;
}

int cb_train_validate(run *r, val_scores *out, cb_err *err) {
    val_set *v = &r->val;
    int Lq = r->cc.query_maxlen, D = r->cc.dim, nq = v->nq, nd = v->nd;
    *out = (val_scores){NAN, NAN, NAN, NAN};
    size_t max_rows = 0;
    for (int a = 0; a < nd; a += VAL_CHUNK) {
        int b = a + VAL_CHUNK < nd ? a + VAL_CHUNK : nd;
        if (v->d_off[b] - v->d_off[a] > max_rows) max_rows = v->d_off[b] - v->d_off[a];
    }
    int nc = v->c_off ? v->c_off[nq] : 0;
    float *qv = cb_malloc(((size_t)nq * Lq + 1) * D * sizeof(float), "validation", err);
    float *vec = qv ? cb_malloc((max_rows + 1) * D * sizeof(float), "validation", err) : NULL;
    float *kept = vec ? cb_malloc((max_rows + 1) * D * sizeof(float), "validation", err) : NULL;
    int *len = kept ? cb_malloc(VAL_CHUNK * sizeof(int), "validation", err) : NULL;
    int32_t *top = len ? cb_malloc(((size_t)nq + 1) * VAL_DEPTH * sizeof(int32_t), "validation", err) : NULL;
    float *top_s = top ? cb_malloc(((size_t)nq + 1) * VAL_DEPTH * sizeof(float), "validation", err) : NULL;
    double *cand = top_s ? cb_malloc(((size_t)nc + 1) * sizeof(double), "validation", err) : NULL;
    eval_ranker rk;
    int ready = cand && !cb_eval_ranker_init(&rk, qv, v->tie, nq, Lq, D, VAL_DEPTH, VAL_CHUNK, r->cc.doc_maxlen);
    if (cand && !ready) cb_err_set(err, "out of memory: the validation ranking");
    if (cb_comm_agree(r->comm, ready ? 0 : -1, err)) {
        if (ready) cb_eval_ranker_free(&rk);
        free(qv); free(vec); free(kept); free(len); free(top); free(top_s); free(cand);
        return -1;
    }
    cb_step_encode(&r->s, qv, v->q_ids, v->q_mask, NULL, v->q_len, nq);
    /* data parallel: rank k encodes and ranks the chunks k, k + N, ...; the
     * rankings merge and each candidate score comes from one rank */
    cb_comm *comm = r->comm;
    for (int x = 0; x < nc; x++) cand[x] = 0;
    for (int a = 0, chunk = 0; a < nd; a += VAL_CHUNK, chunk++) {
        int b = a + VAL_CHUNK < nd ? a + VAL_CHUNK : nd;
        if (chunk % comm->size != comm->rank) continue;
        cb_step_encode(&r->s, vec, v->d_ids + v->d_off[a], NULL, v->d_keep + v->d_off[a], v->d_len + a, b - a);
        compact(v, a, b, vec, kept, len, D);
        cb_eval_ranker_add(&rk, kept, len, a, b - a);
        /* the candidates' full scores, for the earlier measures */
        for (int x = 0; x < nc; x++) {
            int d = v->c_doc[x];
            if (d < a || d >= b) continue;
            int q = 0;
            while (v->c_off[q + 1] <= x) q++;
            size_t o = 0;
            for (int i = a; i < d; i++) o += (size_t)len[i - a];
            cand[x] = maxsim(qv + (size_t)q * Lq * D, Lq, kept + o * D, len[d - a], D);
        }
    }
    cb_eval_ranker_finish(&rk, top, top_s);
    cb_eval_ranker_free(&rk);
    if (comm->size > 1) {
        if (cb_comm_agree(r->comm, cb_eval_merge_ranks(comm, top, top_s, nq, VAL_DEPTH, v->tie, err), err)) {
            free(qv); free(vec); free(kept); free(len); free(top); free(top_s); free(cand);
            return -1;
        }
        cb_comm_allreduce(comm, cand, (size_t)nc, COMM_F64, COMM_SUM);
    }
    eval_data qr = {.n_queries = (size_t)nq, .n_docs = (size_t)nd, .rel_off = v->rel_off, .rel_doc = v->rel_doc,
                    .rel_grade = v->rel_grade};
    eval_metrics m;
    cb_eval_score(&m, NULL, &qr, top, VAL_DEPTH);
    out->ndcg10 = m.ndcg10;
    out->mrr10 = m.mrr10;
    if (v->nt > 0) {
        /* loss of each validation triple over its nway candidates */
        double loss = 0;
        int counted = 0;
        for (int j = 0; j < v->nt; j++) {
            int q = v->t_q[j];
            double s[NWAY];
            int ok = 1;
            for (int w = 0; w < NWAY && ok; w++) {
                int d = v->t_d[j * NWAY + w], x = -1;
                for (int y = v->c_off[q]; y < v->c_off[q + 1]; y++) if (v->c_doc[y] == d) x = y;
                if (x < 0) ok = 0;
                else s[w] = cand[x];
            }
            if (!ok) continue;
            double mx = s[0], z = 0;
            for (int w = 1; w < NWAY; w++) if (s[w] > mx) mx = s[w];
            for (int w = 0; w < NWAY; w++) z += exp(s[w] - mx);
            loss += log(z) + mx - s[0];
            counted++;
        }
        out->loss = counted ? loss / counted : NAN;
        /* MRR@10 of the best positive among the query's own candidates */
        double mrr = 0;
        for (int q = 0; q < nq; q++) {
            double bestpos = -INFINITY;
            for (int x = v->c_off[q]; x < v->c_off[q + 1]; x++)
                if (v->c_pos[x] && cand[x] > bestpos) bestpos = cand[x];
            int rank = 1;
            for (int x = v->c_off[q]; x < v->c_off[q + 1]; x++)
                if (!v->c_pos[x] && cand[x] > bestpos) rank++;
            if (rank <= 10) mrr += 1.0 / rank;
        }
        out->cand_mrr10 = nq ? mrr / nq : NAN;
    }
    free(qv); free(vec); free(kept); free(len); free(top); free(top_s); free(cand);
    return 0;
}
