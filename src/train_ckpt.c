/* train_ckpt.c: checkpoints of a training run (model, optimizer state,
 * history, the best one), resume, the JSONL log, and the run directory's
 * lock. */
#include "train_run.h"
#include "fsutil.h"
#include "npy.h"
#include "safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- small helpers ------------------------------------------------------ */

/* Best effort: a leftover is cleaned up by the next run. */
static void remove_quietly(const char *path) { cb_remove_tree(path, NULL); }

char *cb_train_fmt(cb_err *err, const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    char *s = NULL;
    int n = vasprintf(&s, f, ap);
    va_end(ap);
    if (n < 0) {   /* s is undefined then */
        cb_err_set(err, "out of memory: a file name");
        return NULL;
    }
    return s;
}

char *cb_train_dir_of(const char *path, cb_err *err) {
    char *s = cb_strdup(path, err);
    if (!s) return NULL;
    size_t n = strlen(s);
    while (n > 1 && s[n - 1] == '/') s[--n] = 0;
    char *slash = strrchr(s, '/');
    if (!slash) { free(s); return cb_strdup(".", err); }
    if (slash == s) slash[1] = 0;
    else *slash = 0;
    return s;
}

/* ---- metadata, state, checkpoints --------------------------------------- */

static json_t *opts_json(const run *r) {
    const train_opts *o = &r->o;
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    json_t *j = json_pack("{s:s, s:s, s:i, s:i, s:I, s:f, s:i, s:i, s:i, s:I, s:i, s:b, s:b, s:i, s:s, s:b, "
                          "s:I, s:i, s:f, s:i, s:i}",
                          "data_dir", r->data_dir, "output_dir", o->output_dir, "bsize", o->bsize, "nbits",
                          o->nbits, "maxsteps", (json_int_t)o->maxsteps, "lr", o->lr, "dim", r->cc.dim,
                          "doc_maxlen", r->cc.doc_maxlen, "query_maxlen", r->cc.query_maxlen, "warmup",
                          (json_int_t)o->warmup, "accumsteps", o->accumsteps, "use_ib_negatives",
                          o->use_ib_negatives, "relu", r->cc.relu, "epochs", o->epochs, "seed", seed, "dropout",
                          o->dropout, "save_every", (json_int_t)o->save_every, "keep_checkpoints",
                          o->keep_checkpoints, "val_fraction", o->val_fraction, "val_queries", o->val_queries,
                          "val_candidates", o->val_candidates);
    json_object_set_new(j, "val_data", o->val_data ? json_string(o->val_data) : json_null());
    json_object_set_new(j, "val_beir", o->val_beir ? json_string(o->val_beir) : json_null());
    json_object_set_new(j, "val_split", json_string(o->val_split ? o->val_split : "dev"));
    json_object_set_new(j, "val_docs", json_integer(o->val_docs));
    json_object_set_new(j, "schedule", json_string(o->ragatouille_schedule ? "ragatouille" : "run"));
    json_object_set_new(j, "loss", json_string(o->contrastive ? "contrastive" : "colbert"));
    json_object_set_new(j, "ib_scope", json_string(o->ib_local ? "local" : "global"));
    json_object_set_new(j, "model_name", json_string(r->tr->model_name));
    json_object_set_new(j, "pretrained", json_string(r->tr->pretrained));
    json_object_set_new(j, "language_code", json_string(r->tr->language));
    return j;
}

static const char *score_keys[4] = {"val_ndcg10", "val_mrr10", "val_loss", "val_cand_mrr10"};

/* The measured scores of v into the object o. */
static void put_scores(json_t *o, const val_scores *v) {
    const double x[4] = {v->ndcg10, v->mrr10, v->loss, v->cand_mrr10};
    for (int k = 0; k < 4; k++)
        if (!isnan(x[k])) json_object_set_new(o, score_keys[k], json_real(x[k]));
}

/* artifact.metadata: the base checkpoint's (fine-tune), then colbert-ai's
 * ColBERTConfig keys of this run, then "meta". */
static char *metadata_text(const run *r, long step, const val_scores *v) {
    json_t *m = NULL;
    if (r->base_meta) {
        m = json_loads(r->base_meta, 0, NULL);
        json_t *c = json_object_get(m, "config");
        if (json_is_object(c)) { json_incref(c); json_decref(m); m = c; }
        if (!json_is_object(m)) { json_decref(m); m = NULL; }
    }
    if (!m) m = json_object();
    const train_opts *o = &r->o;
    const char *qtok, *dtok;   /* [unused0] / [unused1], or the added "[Q] " / "[D] " */
    cb_colmodel_marker_tokens(r->tok, &qtok, &dtok);
    json_t *x = json_pack("{s:i, s:i, s:i, s:b, s:b, s:b, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:f, s:I, "
                          "s:I, s:I, s:i, s:b, s:f, s:b, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:b, s:b}",
                          "query_maxlen", r->cc.query_maxlen, "doc_maxlen", r->cc.doc_maxlen, "dim", r->cc.dim,
                          "mask_punctuation", r->cc.mask_punctuation, "attend_to_mask_tokens",
                          r->cc.attend_to_mask_tokens, "relu", r->cc.relu, "similarity", "cosine",
                          "query_token_id", qtok, "doc_token_id", dtok, "query_token", "[Q]",
                          "doc_token", "[D]", "nbits", o->nbits, "bsize", o->bsize, "accumsteps", o->accumsteps,
                          "lr", o->lr, "maxsteps", (json_int_t)o->maxsteps, "save_every",
                          (json_int_t)o->save_every, "warmup", (json_int_t)o->warmup, "nway", NWAY,
                          "use_ib_negatives", o->use_ib_negatives, "distillation_alpha", 1.0, "ignore_scores", 0,
                          "interaction", "colbert", "name", r->tr->model_name,
                          "checkpoint", r->tr->pretrained, "triples", TF, "collection", CF, "rank", 0, "nranks",
                          1, "amp", 0, "reranker", 0);
    json_object_update(m, x);
    json_decref(x);
    /* colbert-ai builds its HF class from model_name (a hub id) when set;
     * null makes it use the checkpoint directory itself, which works offline */
    json_object_set_new(m, "model_name", json_null());
    json_t *meta = json_pack("{s:s, s:I, s:s}", "written_by", "colbert.c", "step", (json_int_t)step,
                             "language_code", r->tr->language);
    put_scores(meta, v);
    json_object_set_new(m, "meta", meta);
    char *s = json_dumps(m, JSON_SORT_KEYS);
    json_decref(m);
    return s;
}

static json_t *hist_json(const run *r) {
    json_t *a = json_array();
    for (int i = 0; i < r->n_hist; i++) {
        json_t *h = json_pack("{s:I}", "step", (json_int_t)r->hist[i].step);
        put_scores(h, &r->hist[i].v);
        json_array_append_new(a, h);
    }
    return a;
}

/* The scores of v read back from o (absent keys: NAN). */
static val_scores get_scores(json_t *o) {
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

char *cb_train_step_name(long step, cb_err *err) { return cb_train_fmt(err, "step-%06ld", step); }

/* Index into hist of the best validated checkpoint (highest nDCG@10, then
 * highest MRR@10, then the latest), or of the latest one. */
int cb_train_best_index(const run *r) {
    int b = -1;
    for (int i = 0; i < r->n_hist; i++) {
        const val_scores *h = &r->hist[i].v;
        if (isnan(h->ndcg10)) continue;
        if (b < 0 || h->ndcg10 > r->hist[b].v.ndcg10 ||
            (h->ndcg10 == r->hist[b].v.ndcg10 && h->mrr10 >= r->hist[b].v.mrr10))
            b = i;
    }
    if (b < 0) b = r->n_hist - 1;
    return b;
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* Keep the newest keep_checkpoints step-* directories and the best; -1 and
 * err when out of memory (then nothing more is pruned this time). */
static int prune(run *r, long best_step, cb_err *err) {
    if (r->o.keep_checkpoints <= 0) return 0;
    DIR *d = opendir(r->run_dir);
    if (!d) return 0;
    long *steps = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        long st;
        char tail;
        if (sscanf(e->d_name, "step-%ld%c", &st, &tail) != 1) continue;
        if (n == cap) {
            size_t c2 = cap ? 2 * cap : 16;
            long *s2 = cb_realloc(steps, c2 * sizeof(long), "the list of checkpoints", err);
            if (!s2) { rc = -1; break; }
            steps = s2;
            cap = c2;
        }
        steps[n++] = st;
    }
    closedir(d);
    if (!rc && n) qsort(steps, n, sizeof(long), cmp_long);
    for (size_t i = 0; !rc && i + (size_t)r->o.keep_checkpoints < n; i++) {
        if (steps[i] == best_step) continue;
        char *name = cb_train_step_name(steps[i], err);
        char *p = name ? cb_path_new(r->run_dir, name, err) : NULL;
        char *gone = p ? cb_train_fmt(err, "%s/.deleting-%s", r->run_dir, name) : NULL;
        if (!gone) rc = -1;
        else if (!rename(p, gone)) remove_quietly(gone);
        free(name); free(p); free(gone);
    }
    free(steps);
    return rc;
}

/* Only the newest checkpoint keeps the training state (AdamW's moments are
 * twice the model's size; resume needs them only where it continues):
 * every other step-* directory becomes model-only. A kill before this
 * leaves two resumable checkpoints, never none. -1 and err when out of
 * memory (the states left are removed by a later checkpoint). */
static int strip_states(const run *r, long newest, cb_err *err) {
    DIR *d = opendir(r->run_dir);
    if (!d) return 0;
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        long st;
        char tail;
        if (sscanf(e->d_name, "step-%ld%c", &st, &tail) != 1 || st == newest) continue;
        char *dir = cb_path_new(r->run_dir, e->d_name, err);
        char *a = dir ? cb_path_new(dir, STATE_ST, err) : NULL, *b = a ? cb_path_new(dir, STATE_JSON, err) : NULL;
        if (!b) rc = -1;
        else { unlink(a); unlink(b); }
        free(a); free(b); free(dir);
    }
    closedir(d);
    return rc;
}

/* RUN/step-N of the best checkpoint (cb_train_best_index), NULL + err when
 * out of memory (or, err untouched, when there is no checkpoint). */
static char *best_path(const run *r, cb_err *err) {
    int b = cb_train_best_index(r);
    if (b < 0) return NULL;
    char *name = cb_train_step_name(r->hist[b].step, err);
    char *p = name ? cb_path_new(r->run_dir, name, err) : NULL;
    free(name);
    return p;
}

/* tr->best becomes `best` (best_path's, taken); rank 0 points RUN/best at
 * it and prunes. Both are best effort: a failure is a warning. */
static void set_best(run *r, char *best) {
    free(r->tr->best);
    r->tr->best = best;
    if (r->comm->rank != 0) return;   /* the others only know the path */
    cb_err e = {{0}};
    const char *slash = strrchr(best, '/'), *name = slash ? slash + 1 : best;   /* step-N: relative */
    char *link = cb_path_new(r->run_dir, "best", &e), *tmp = link ? cb_path_new(r->run_dir, ".best.tmp", &e) : NULL;
    if (!tmp) {
        fprintf(stderr, "colbert: warning: %s: cannot link the best checkpoint: %s\n", r->run_dir, e.msg);
    } else {
        unlink(tmp);
        if (symlink(name, tmp) || rename(tmp, link))
            fprintf(stderr, "colbert: warning: %s: cannot link the best checkpoint: %s\n", link, strerror(errno));
    }
    free(link); free(tmp);
    if (prune(r, r->hist[cb_train_best_index(r)].step, &e))
        fprintf(stderr, "colbert: warning: %s: cannot remove the older checkpoints: %s\n", r->run_dir, e.msg);
}

/* The files of RUN/step-N (rank 0): model, AdamW moments, training state
 * (with hist, which already holds this checkpoint), built in `part` and
 * renamed to `final`. */
static int write_checkpoint(run *r, long step, const val_scores *vs, const char *name, const char *final,
                            const char *part, cb_err *err) {
    step_state *s = &r->s;
    int rc = 0;
    char *meta = metadata_text(r, step, vs);
    remove_quietly(part);
    /* host copies of the parameters, then of the moments (staging only
     * while saving) */
    size_t n = s->n;
    float *host = cb_malloc(2 * n * sizeof(float), "the checkpoint's staging copy", err);
    if (!host) rc = -1;
    if (!rc) {
        cb_step_get(s, STEP_PARAMS, host);
        rc = cb_colmodel_save(part, cb_step_backbone(s), host, host + cb_step_linear_offset(s), &r->cc, r->tok,
                              r->src_dir, meta, err);
    }
    free(meta);
    if (!rc) {
        cb_step_get(s, STEP_ADAM_M, host);
        cb_step_get(s, STEP_ADAM_V, host + n);
        st_wtensor w[2] = {{"adamw.m", ST_F32, 1, {(int64_t)n}, host},
                           {"adamw.v", ST_F32, 1, {(int64_t)n}, host + n}};
        char *p = cb_path_new(part, STATE_ST, err);
        rc = p ? cb_st_write(p, w, 2, err) : -1;
        free(p);
    }
    free(host);
    if (!rc) {
        char seed[32];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)cb_step_dropout_state(s));
        json_t *j = json_pack("{s:i, s:I, s:s, s:f, s:I, s:I, s:I, s:o, s:o}", "version", 1, "step",
                              (json_int_t)step, "dropout_state", seed, "loss_ema", r->ema, "steps_per_epoch",
                              (json_int_t)r->spe, "total_steps", (json_int_t)r->total, "train_triples",
                              (json_int_t)r->n_train, "opts", opts_json(r), "history", hist_json(r));
        json_object_set_new(j, "epoch", json_integer(step / r->spe));
        json_object_set_new(j, "batch_in_epoch", json_integer(step % r->spe));
        json_object_set_new(j, "written_by_ranks", json_integer(r->comm->size));
        char *p = cb_path_new(part, STATE_JSON, err);
        rc = p ? cb_json_write(p, j, err) : -1;
        free(p);
        json_decref(j);
    }
    if (!rc) {
        if (cb_dir_exists(final)) {
            char *gone = cb_train_fmt(err, "%s/.deleting-%s", r->run_dir, name);
            if (!gone) rc = -1;
            else if (!rename(final, gone)) remove_quietly(gone);
            free(gone);
        }
        if (!rc && rename(part, final))
            rc = cb_err_set(err, "%s: cannot rename into place: %s", final, strerror(errno));
    }
    if (rc) remove_quietly(part);
    return rc;
}

/* Write RUN/step-N: model, training state, validation; atomically. Data
 * parallel: every rank validates (its share) and keeps the history; rank 0
 * writes; the ranks agree on the outcome. */
int cb_train_save_checkpoint(run *r, int validate_it, cb_err *err) {
    step_state *s = &r->s;
    cb_comm *comm = r->comm;
    int root = comm->rank == 0;
    long step = cb_step_count(s);
    val_scores vs = {NAN, NAN, NAN, NAN};
    int rc = cb_train_check_sync(r, err);
    double tv = cb_now();
    if (!rc && validate_it && r->has_val) rc = cb_train_validate(r, &vs, err);
    if (rc) return -1;
    tv = cb_now() - tv;
    r->t_val += validate_it && r->has_val ? tv : 0;
    /* what can fail for lack of memory comes before the ranks agree, so
     * that a rank short of memory fails the checkpoint on every rank */
    char *name = cb_train_step_name(step, err);
    char *final = name ? cb_path_new(r->run_dir, name, err) : NULL;
    char *part = final ? cb_train_fmt(err, "%s/.partial-%s", r->run_dir, name) : NULL;
    char *last = part ? cb_strdup(final, err) : NULL, *src = last ? cb_strdup(final, err) : NULL, *best = NULL;
    int added = 0;
    if (src && r->n_hist == r->cap_hist) {
        int cap = r->cap_hist ? 2 * r->cap_hist : 16;
        ckpt_info *h = cb_realloc(r->hist, (size_t)cap * sizeof(ckpt_info), "the checkpoint history", err);
        if (h) {
            r->hist = h;
            r->cap_hist = cap;
        }
    }
    if (src && r->n_hist < r->cap_hist) {
        r->hist[r->n_hist++] = (ckpt_info){step, vs};
        added = 1;
        best = best_path(r, err);   /* hist holds this checkpoint: there is a best */
    }
    rc = best ? 0 : -1;
    if (root && !rc) rc = write_checkpoint(r, step, &vs, name, final, part, err);
    comm->patient++;            /* the other ranks wait for rank 0's writing */
    rc = cb_train_agree(r, rc, err);
    comm->patient--;
    if (rc) {
        if (added) r->n_hist--;
        free(last); free(src); free(best);
    } else {
        free(r->tr->last);
        r->tr->last = last;
        /* later checkpoints copy config.json and the tokenizer from the
         * newest one: the directory they came from may be pruned */
        free(r->src_dir);
        r->src_dir = src;
        if (r->log) {
            json_t *j = json_pack("{s:s, s:I, s:s}", "event", "checkpoint", "step", (json_int_t)step, "path", final);
            put_scores(j, &vs);
            if (!isnan(vs.ndcg10)) json_object_set_new(j, "val_s", json_real(tv));
            char *line = json_dumps(j, JSON_COMPACT);
            fprintf(r->log, "%s\n", line);
            fflush(r->log);
            free(line);
            json_decref(j);
        }
        if (root && !isnan(vs.ndcg10))
            fprintf(stderr, "%scheckpoint %s: validation nDCG@10 %.4f, MRR@10 %.4f (%.1f s)\n",
                    r->tty ? "\r\033[K" : "", final, vs.ndcg10, vs.mrr10, tv);
        else if (root && !r->o.quiet)
            fprintf(stderr, "%scheckpoint %s\n", r->tty ? "\r\033[K" : "", final);
        set_best(r, best);
        if (root) {
            cb_err e = {{0}};
            if (strip_states(r, step, &e))
                fprintf(stderr, "colbert: warning: %s: cannot strip the older checkpoints' training state: %s\n",
                        r->run_dir, e.msg);
            /* the picture is not worth stopping a run for */
            if (cb_train_write_curve(r, &e)) fprintf(stderr, "colbert: warning: %s\n", e.msg);
        }
    }
    free(name); free(final); free(part);
    return rc;
}

/* Restore options from a checkpoint's training_state.json. */
int cb_train_resume_opts(run *r, const char *dir, json_t **state, cb_err *err) {
    char *p = cb_path_new(dir, STATE_JSON, err);
    if (!p) return -1;
    json_error_t je;
    json_t *j = json_load_file(p, 0, &je);
    if (!j) {
        if (cb_file_exists(p))
            cb_err_set(err, "%s: cannot resume: %s", p, je.text);
        else
            cb_err_set(err, "%s: cannot resume: no training state (HINT: only the newest checkpoint of a run keeps "
                       "its optimizer state; --resume takes that step-* directory, written by colbert train)", dir);
        free(p);
        return -1;
    }
    free(p);
    json_t *o = json_object_get(j, "opts");
    const char *seed = json_string_value(json_object_get(o, "seed"));
    if (!json_is_object(o) || !seed || json_integer_value(json_object_get(j, "version")) != 1) {
        json_decref(j);
        return cb_err_set(err, "%s/%s: not a training state of this version", dir, STATE_JSON);
    }
    train_opts *t = &r->o;
#define GI(k) json_integer_value(json_object_get(o, k))
    t->bsize = (int)GI("bsize"); t->nbits = (int)GI("nbits"); t->maxsteps = (long)GI("maxsteps");
    t->lr = json_real_value(json_object_get(o, "lr"));
    t->dim = (int)GI("dim"); t->doc_maxlen = (int)GI("doc_maxlen"); t->query_maxlen = (int)GI("query_maxlen");
    t->warmup = (long)GI("warmup"); t->accumsteps = (int)GI("accumsteps");
    t->use_ib_negatives = json_is_true(json_object_get(o, "use_ib_negatives"));
    {
        const char *ls = json_string_value(json_object_get(o, "loss"));  /* absent before the option */
        t->contrastive = ls && !strcmp(ls, "contrastive");
        const char *sc = json_string_value(json_object_get(o, "ib_scope"));  /* absent before MPI */
        t->ib_local = sc && !strcmp(sc, "local");
    }
    t->relu = (int)GI("relu"); t->epochs = (int)GI("epochs");
    t->seed = strtoull(seed, NULL, 10);
    t->dropout = json_is_true(json_object_get(o, "dropout"));
    t->save_every = (long)GI("save_every");
    t->val_fraction = json_real_value(json_object_get(o, "val_fraction"));
    t->val_queries = (int)GI("val_queries"); t->val_candidates = (int)GI("val_candidates");
    if (json_object_get(o, "val_docs")) t->val_docs = (int)GI("val_docs");
    {
        const char *sc = json_string_value(json_object_get(o, "schedule"));
        /* a state written before the run schedule followed RAGatouille's */
        t->ragatouille_schedule = !sc || !strcmp(sc, "ragatouille");
        const char *vs = json_string_value(json_object_get(o, "val_split"));
        if (vs) t->val_split = vs;     /* lives in the state, as val_data */
        t->val_beir = json_string_value(json_object_get(o, "val_beir"));
    }
    if (t->keep_checkpoints < 0) t->keep_checkpoints = (int)GI("keep_checkpoints");
#undef GI
    *state = j;
    return 0;
}

int cb_train_load_state(run *r, const char *dir, json_t *j, cb_err *err) {
    step_state *s = &r->s;
    char *p = cb_path_new(dir, STATE_ST, err);
    if (!p) return -1;
    st_file f;
    int rc = cb_st_open(&f, p, err);
    free(p);
    if (rc) return -1;
    int64_t shape[1] = {(int64_t)s->n};
    float *host = cb_malloc(s->n * sizeof(float), "AdamW's moments", err);
    rc = host ? cb_st_read_f32(&f, "adamw.m", host, 1, shape, err) : -1;
    if (!rc) {
        cb_step_set(s, STEP_ADAM_M, host);
        rc = cb_st_read_f32(&f, "adamw.v", host, 1, shape, err);
    }
    if (!rc) cb_step_set(s, STEP_ADAM_V, host);
    free(host);
    cb_st_close(&f);
    if (rc) return -1;
    const char *ds = json_string_value(json_object_get(j, "dropout_state"));
    cb_step_restore(s, (long)json_integer_value(json_object_get(j, "step")), ds ? strtoull(ds, NULL, 10) : 0);
    r->ema = json_real_value(json_object_get(j, "loss_ema"));
    json_t *h = json_object_get(j, "history");
    size_t i;
    json_t *e;
    json_array_foreach(h, i, e) {
        if (r->n_hist == r->cap_hist) {
            int cap = r->cap_hist ? 2 * r->cap_hist : 16;
            ckpt_info *hi = cb_realloc(r->hist, (size_t)cap * sizeof(ckpt_info), "the checkpoint history", err);
            if (!hi) return -1;
            r->hist = hi;
            r->cap_hist = cap;
        }
        r->hist[r->n_hist++] = (ckpt_info){(long)json_integer_value(json_object_get(e, "step")), get_scores(e)};
    }
    if ((long)json_integer_value(json_object_get(j, "train_triples")) != (long)r->n_train ||
        (long)json_integer_value(json_object_get(j, "steps_per_epoch")) != r->spe)
        return cb_err_set(err, "%s: the training data changed since this checkpoint (%lld training triples "
                          "then, %zu now)", dir, (long long)json_integer_value(json_object_get(j, "train_triples")),
                          r->n_train);
    if (cb_step_count(s) > r->total)
        return cb_err_set(err, "%s: step %ld is past the run's %ld steps", dir, cb_step_count(s), r->total);
    return 0;
}

/* The JSONL log: on resume, keep the lines up to the resumed step and
 * reload the curve from them. */
int cb_train_open_log(run *r, long upto, cb_err *err) {
    char *path = cb_path_new(r->run_dir, "train.jsonl", err);
    if (!path) return -1;
    if (upto > 0 && cb_file_exists(path)) {
        size_t len;
        char *text = cb_read_file(path, &len, NULL);
        FILE *f = text ? fopen(path, "w") : NULL;
        for (char *line = text, *nl; f && line && *line; line = nl ? nl + 1 : NULL) {
            nl = strchr(line, '\n');
            if (nl) *nl = 0;
            json_t *j = json_loads(line, 0, NULL);
            long st = j ? (long)json_integer_value(json_object_get(j, "step")) : -1;
            if (j && st <= upto) {
                fprintf(f, "%s\n", line);
                if (!json_object_get(j, "event") && st >= 1 && st <= r->total) {
                    r->loss_hist[st - 1] = (float)json_real_value(json_object_get(j, "loss"));
                    r->avg_hist[st - 1] = (float)json_real_value(json_object_get(j, "loss_avg"));
                    r->lr_hist[st - 1] = (float)json_real_value(json_object_get(j, "lr"));
                }
            }
            json_decref(j);
        }
        if (f) fclose(f);
        free(text);
    }
    r->log = fopen(path, upto > 0 ? "a" : "w");
    int rc = r->log ? 0 : cb_err_set(err, "%s: cannot write: %s", path, strerror(errno));
    free(path);
    return rc;
}

/* Leftovers of a killed run: partial checkpoints, half-deleted ones. */
void cb_train_clean_run_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, ".partial-", 9) && strncmp(e->d_name, ".deleting-", 10)) continue;
        char *p = cb_path_new(dir, e->d_name, NULL);
        if (p) remove_quietly(p);   /* out of memory: left for the next run */
        free(p);
    }
    closedir(d);
}


/* ---- the run directory: one run at a time, never a finished run replaced -- */

/* The holder written into RUN/.lock: "pid P\nhost H\nstarted T\n". */
static void lock_holder(int fd, char *out, size_t cap) {
    char buf[512] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    char pid[32] = "?", host[256] = "?", started[64] = "?";
    for (char *line = n > 0 ? buf : NULL, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl) *nl = 0;
        if (!strncmp(line, "pid ", 4)) snprintf(pid, sizeof pid, "%s", line + 4);
        else if (!strncmp(line, "host ", 5)) snprintf(host, sizeof host, "%s", line + 5);
        else if (!strncmp(line, "started ", 8)) snprintf(started, sizeof started, "%s", line + 8);
    }
    snprintf(out, cap, "pid %s on %s, started %s", pid, host, started);
}

/* Take (or, take == 0, only test) RUN/.lock: an flock that the kernel
 * drops when the holder exits, however it ends (kill -9 included), so a
 * stale lock never blocks. The holder removes the file when it is done
 * (cb_train_release_run_dir), so a taker checks that the file it locked is
 * still the one at the path (else a releaser removed it meanwhile: again). */
static int run_lock(run *r, const char *dir, int take, cb_err *err) {
    char *path = cb_path_new(dir, ".lock", err);
    if (!path) return -1;
    int rc = 0, fd = -1;
    for (int attempt = 0; attempt < 100 && !rc; attempt++) {
        fd = open(path, take ? O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC : O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0) {
            int e = errno;
            if (!take && e == ENOENT) break;   /* nobody holds it */
            rc = cb_err_set(err, "%s/.lock: cannot open the run's lock: %s", dir, strerror(e));
            break;
        }
        if (fd < 3) {   /* lock_fd 0 means "none" */
            int hi = fcntl(fd, F_DUPFD_CLOEXEC, 3), e = errno;
            close(fd);
            if ((fd = hi) < 0) {
                rc = cb_err_set(err, "%s/.lock: %s", dir, strerror(e));
                break;
            }
        }
        if (flock(fd, (take ? LOCK_EX : LOCK_SH) | LOCK_NB)) {
            int e = errno;
            if (e == EWOULDBLOCK) {
                char who[400];
                lock_holder(fd, who, sizeof who);
                rc = cb_err_set(err, "%s: another `colbert train` is using this run directory (%s); wait for it "
                                "to end, or give another --model-name or --output-dir", dir, who);
            } else if (take) {   /* a file system without locks: go on unprotected, and say so */
                fprintf(stderr, "colbert: warning: %s/.lock: cannot lock (%s); nothing stops a second run in "
                        "this directory\n", dir, strerror(e));
            }
            break;
        }
        struct stat a, b;
        if (!take || (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev))
            break;
        close(fd);   /* locked a file its holder had just removed */
        fd = -1;
    }
    if (!rc && take && fd < 0) rc = cb_err_set(err, "%s/.lock: cannot take the lock", dir);
    if (!rc && take) {
        char host[256] = "?", when[64] = "?", text[400];
        gethostname(host, sizeof host - 1);
        time_t now = time(NULL);
        struct tm tm;
        if (gmtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
        int n = snprintf(text, sizeof text, "pid %ld\nhost %s\nstarted %s\n", (long)getpid(), host, when);
        if (ftruncate(fd, 0) || pwrite(fd, text, (size_t)n, 0) != n)
            rc = cb_err_set(err, "%s/.lock: cannot write: %s", dir, strerror(errno));
    }
    free(path);
    if (rc || !take) {
        if (fd >= 0) close(fd);
        return rc;
    }
    r->lock_fd = fd;
    return 0;
}

void cb_train_release_run_dir(run *r) {
    if (r->lock_fd <= 0) return;
    char *path = r->run_dir ? cb_path_new(r->run_dir, ".lock", NULL) : NULL;
    if (path) unlink(path);   /* still holding it: see run_lock */
    free(path);
    close(r->lock_fd);
    r->lock_fd = 0;
}

/* The newest step-N of dir that holds a training state: *step (0 when
 * there is none) and the run's total steps; *n_ckpt = step-* directories.
 * -1 and err when out of memory. */
static int newest_state(const char *dir, long *step, long *total, int *n_ckpt, cb_err *err) {
    DIR *d = opendir(dir);
    long best = 0;
    int rc = 0;
    *step = 0;
    *total = 0;
    *n_ckpt = 0;
    if (!d) return 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        long st;
        char tail;
        if (sscanf(e->d_name, "step-%ld%c", &st, &tail) != 1) continue;
        ++*n_ckpt;
        char *p = cb_train_fmt(err, "%s/%s/%s", dir, e->d_name, STATE_JSON);
        if (!p) { rc = -1; break; }
        json_t *j = st > best ? json_load_file(p, 0, NULL) : NULL;
        if (j) {
            best = st;
            *total = (long)json_integer_value(json_object_get(j, "total_steps"));
            json_decref(j);
        }
        free(p);
    }
    closedir(d);
    *step = best;
    return rc;
}

int cb_train_claim_run_dir(run *r, int take, cb_err *err) {
    char *dir = r->run_dir ? cb_strdup(r->run_dir, err) : cb_path_new(r->o.output_dir, r->tr->model_name, err);
    if (!dir) return -1;
    int rc = 0;
    if (!cb_dir_exists(dir)) goto done;   /* a new run (take: the caller made it) */
    if ((rc = run_lock(r, dir, take, err)) || r->o.resume) goto done;
    long total, step = 0;
    int n_ckpt;
    if ((rc = newest_state(dir, &step, &total, &n_ckpt, err)) || !n_ckpt) goto done;
    if (!r->o.overwrite) {
        if (step > 0 && step >= total)
            rc = cb_err_set(err, "%s holds a finished run (step-%06ld, the last of its %ld steps); --overwrite "
                            "replaces it (its checkpoints, log and curve are deleted), or give another "
                            "--model-name or --output-dir", dir, step, total);
        else if (step > 0)
            rc = cb_err_set(err, "%s holds an unfinished run (step %ld of %ld); continue it with --resume "
                            "%s/step-%06ld, or start over with --overwrite (its checkpoints, log and curve are "
                            "deleted)", dir, step, total, dir, step);
        else
            rc = cb_err_set(err, "%s holds %d checkpoint(s) of an earlier run; --overwrite deletes them (with "
                            "its log and curve), or give another --model-name or --output-dir", dir, n_ckpt);
        goto done;
    }
    if (!take) goto done;
    /* --overwrite: what a run writes goes (each step-* renamed away first,
     * so that a kill half-way never leaves a partial step-*) */
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && !rc && (e = readdir(d))) {
        long st;
        char tail;
        if (sscanf(e->d_name, "step-%ld%c", &st, &tail) != 1) continue;
        char *p = cb_path_new(dir, e->d_name, err);
        char *gone = p ? cb_train_fmt(err, "%s/.deleting-%s", dir, e->d_name) : NULL;
        if (!gone) rc = -1;
        else if (rename(p, gone)) rc = cb_err_set(err, "%s: cannot remove: %s", p, strerror(errno));
        free(p);
        free(gone);
    }
    if (d) closedir(d);
    static const char *files[] = {"best", "train.jsonl", "curve.svg", "curve.png"};
    for (int i = 0; i < 4 && !rc; i++) {
        char *p = cb_path_new(dir, files[i], err);
        rc = p ? cb_remove_tree(p, err) : -1;
        free(p);
    }
    cb_train_clean_run_dir(dir);
    if (!rc) fprintf(stderr, "colbert: --overwrite: removed the earlier run of %s (%d checkpoint(s))\n", dir, n_ckpt);
done:
    free(dir);
    return rc;
}
