/* train_hist.c: the history of a training run's checkpoints: the step and
 * validation scores of each, which one is the best, and their JSON (the
 * keys of training_state.json's "history", of artifact.metadata's "meta"
 * and of train.jsonl's checkpoint lines). */
#include "train_run.h"

#include <math.h>

static const char *score_keys[4] = {"val_ndcg10", "val_mrr10", "val_loss", "val_cand_mrr10"};

void cb_train_scores_put(json_t *o, const val_scores *v) {
    const double x[4] = {v->ndcg10, v->mrr10, v->loss, v->cand_mrr10};
    for (int k = 0; k < 4; k++)
        if (!isnan(x[k])) json_object_set_new(o, score_keys[k], json_real(x[k]));
}

/* The scores read back from o (absent keys: NAN). */
static val_scores scores_get(json_t *o) {
    val_scores v;
    double *dst[4] = {&v.ndcg10, &v.mrr10, &v.loss, &v.cand_mrr10};
    for (int k = 0; k < 4; k++) {
        json_t *x = json_object_get(o, score_keys[k]);
        *dst[k] = json_is_number(x) ? json_number_value(x) : NAN;
    }
    /* a state written before validation by retrieval: its MRR among the
     * candidates was called val_mrr10 */
    if (isnan(v.ndcg10) && !isnan(v.mrr10) && isnan(v.cand_mrr10)) {
        v.cand_mrr10 = v.mrr10;
        v.mrr10 = NAN;
    }
    return v;
}

int cb_train_hist_push(ckpt_hist *h, long step, const val_scores *v, cb_err *err) {
    if (h->n == h->cap) {
        int cap = h->cap ? 2 * h->cap : 16;
        ckpt_info *at = cb_realloc(h->at, (size_t)cap * sizeof(ckpt_info), "the checkpoint history", err);
        if (!at) return -1;
        h->at = at;
        h->cap = cap;
    }
    h->at[h->n++] = (ckpt_info){step, *v};
    return 0;
}

void cb_train_hist_free(ckpt_hist *h) {
    free(h->at);
    *h = (ckpt_hist){0};
}

/* The best validated checkpoint: highest nDCG@10, then highest MRR@10,
 * then the latest; without validation the latest. */
int cb_train_hist_best(const ckpt_hist *h) {
    int b = -1;
    for (int i = 0; i < h->n; i++) {
        const val_scores *v = &h->at[i].v;
        if (isnan(v->ndcg10)) continue;
        if (b < 0 || v->ndcg10 > h->at[b].v.ndcg10 ||
            (v->ndcg10 == h->at[b].v.ndcg10 && v->mrr10 >= h->at[b].v.mrr10))
            b = i;
    }
    if (b < 0) b = h->n - 1;
    return b;
}

json_t *cb_train_hist_json(const ckpt_hist *h) {
    json_t *a = json_array();
    for (int i = 0; i < h->n; i++) {
        json_t *e = json_pack("{s:I}", "step", (json_int_t)h->at[i].step);
        cb_train_scores_put(e, &h->at[i].v);
        json_array_append_new(a, e);
    }
    return a;
}

int cb_train_hist_load(ckpt_hist *h, json_t *a, cb_err *err) {
    size_t i;
    json_t *e;
    json_array_foreach(a, i, e) {
        val_scores v = scores_get(e);
        if (cb_train_hist_push(h, (long)json_integer_value(json_object_get(e, "step")), &v, err)) return -1;
    }
    return 0;
}
