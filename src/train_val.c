/* train_val.c: validation during training: held-out queries with their
 * candidate documents, scored by the model being trained. */
#include "train_run.h"

#include <math.h>
#include <string.h>

/* Validation: the queries qsel (n of them, ids) with their triples from t,
 * tokenized once. */
void train_val_build(run *r, const data_texts *q, const data_texts *c, const data_triples *t,
                      const int64_t *qsel, int n) {
    val_set *v = &r->val;
    int Lq = r->cc.query_maxlen, Ld = r->cc.doc_maxlen, cap = r->o.val_candidates;
    v->nq = n;
    v->q_ids = cb_xmalloc((size_t)n * Lq * sizeof(int32_t));
    v->q_mask = cb_xmalloc((size_t)n * Lq);
    v->q_len = cb_xmalloc((size_t)n * sizeof(int));
    v->c_off = cb_xmalloc((size_t)(n + 1) * sizeof(int));
    int64_t *cand = cb_xmalloc((size_t)n * cap * sizeof(int64_t));
    v->c_pos = cb_xcalloc((size_t)n * cap, 1);
    v->t_q = cb_xmalloc(t->n * sizeof(int));
    v->t_c = cb_xmalloc(t->n * NWAY * sizeof(int));
    int nc = 0;
    v->nt = 0;
    for (int i = 0; i < n; i++) {
        v->c_off[i] = nc;
        int64_t qi = data_texts_find(q, qsel[i]);
        size_t len;
        const char *text = data_texts_get(q, (size_t)qi, &len);
        colbert_query_ids(v->q_ids + (size_t)i * Lq, v->q_mask + (size_t)i * Lq, &r->vocab, r->tok, text, len,
                          &r->cc);
        v->q_len[i] = Lq;
        for (size_t j = 0; j < t->n; j++) {
            if (t->qids[j] != qsel[i]) continue;
            int idx[NWAY], ok = 1;
            for (int k = 0; k < NWAY; k++) {
                int64_t pid = t->pids[j * t->nway + k];
                int f = -1;
                for (int x = v->c_off[i]; x < nc; x++)
                    if (cand[x] == pid) { f = x; break; }
                if (f < 0 && nc - v->c_off[i] < cap) { f = nc; cand[nc++] = pid; }
                if (f >= 0 && k == 0) v->c_pos[f] = 1;
                if (f < 0) ok = 0;
                idx[k] = f;
            }
            if (ok) {
                v->t_q[v->nt] = i;
                memcpy(v->t_c + (size_t)v->nt * NWAY, idx, sizeof idx);
                v->nt++;
            }
        }
    }
    v->c_off[n] = nc;
    v->d_len = cb_xmalloc((size_t)(nc + 1) * sizeof(int));
    v->d_off = cb_xmalloc((size_t)(nc + 1) * sizeof(size_t));
    int32_t *tmp = cb_xmalloc((size_t)(nc + 1) * Ld * sizeof(int32_t));
#pragma omp parallel for schedule(dynamic, 4)
    for (int i = 0; i < nc; i++) {
        size_t len;
        const char *text = data_texts_get(c, (size_t)cand[i], &len);
        v->d_len[i] = colbert_doc_ids(tmp + (size_t)i * Ld, &r->vocab, r->tok, text, len, &r->cc);
    }
    v->d_off[0] = 0;
    for (int i = 0; i < nc; i++) v->d_off[i + 1] = v->d_off[i] + (size_t)v->d_len[i];
    v->d_ids = cb_xmalloc((v->d_off[nc] + 1) * sizeof(int32_t));
    v->d_keep = cb_xmalloc(v->d_off[nc] + 1);
    for (int i = 0; i < nc; i++)
        memcpy(v->d_ids + v->d_off[i], tmp + (size_t)i * Ld, (size_t)v->d_len[i] * sizeof(int32_t));
    colbert_doc_keep(v->d_keep, v->d_ids, (int)v->d_off[nc], &r->vocab, r->cc.mask_punctuation);
    free(tmp);
    free(cand);
}

/* Validation loss (mean nway cross-entropy, positive first) and MRR@10. */
void train_validate(run *r, double *loss_out, double *mrr_out) {
    val_set *v = &r->val;
    int Lq = r->cc.query_maxlen, D = r->cc.dim, nc = v->c_off[v->nq];
    float *qv = cb_xmalloc((size_t)v->nq * Lq * D * sizeof(float));
    float *dv = cb_xmalloc((v->d_off[nc] + 1) * D * sizeof(float));
    uint8_t *qm = cb_xmalloc((size_t)v->nq * Lq);
    for (size_t i = 0; i < (size_t)v->nq * Lq; i++) qm[i] = r->cc.attend_to_mask_tokens ? 1 : v->q_mask[i];
    step_encode(&r->s, qv, v->q_ids, qm, NULL, v->q_len, v->nq);
    step_encode(&r->s, dv, v->d_ids, NULL, v->d_keep, v->d_len, nc);
    double *score = cb_xmalloc((size_t)(nc + 1) * sizeof(double));
    for (int q = 0; q < v->nq; q++)
        for (int ci = v->c_off[q]; ci < v->c_off[q + 1]; ci++) {
            double sc = 0;
            for (int i = 0; i < Lq; i++) {
                const float *a = qv + ((size_t)q * Lq + i) * D;
                float best = -9999.0f;
                for (size_t t = v->d_off[ci]; t < v->d_off[ci + 1]; t++) {
                    if (!v->d_keep[t]) continue;
                    const float *b = dv + t * D;
                    float dot = 0;
                    for (int k = 0; k < D; k++) dot += a[k] * b[k];
                    if (dot > best) best = dot;
                }
                sc += best;
            }
            score[ci] = sc;
        }
    double loss = 0, mrr = 0;
    for (int t = 0; t < v->nt; t++) {
        const int *c = v->t_c + (size_t)t * NWAY;
        double mx = score[c[0]];
        for (int k = 1; k < NWAY; k++) if (score[c[k]] > mx) mx = score[c[k]];
        double z = 0;
        for (int k = 0; k < NWAY; k++) z += exp(score[c[k]] - mx);
        loss += log(z) + mx - score[c[0]];
    }
    for (int q = 0; q < v->nq; q++) {
        /* rank of the best-scored positive: 1 + candidates scored above it */
        double bestpos = -INFINITY;
        for (int ci = v->c_off[q]; ci < v->c_off[q + 1]; ci++)
            if (v->c_pos[ci] && score[ci] > bestpos) bestpos = score[ci];
        int rank = 1;
        for (int ci = v->c_off[q]; ci < v->c_off[q + 1]; ci++)
            if (!v->c_pos[ci] && score[ci] > bestpos) rank++;
        if (rank <= 10) mrr += 1.0 / rank;
    }
    *loss_out = v->nt ? loss / v->nt : NAN;
    *mrr_out = v->nq ? mrr / v->nq : NAN;
    free(qv); free(dv); free(qm); free(score);
}

