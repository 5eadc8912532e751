/* train_ckpt.c: the checkpoints of a training run: RUN/step-N written
 * (the model with colbert-ai's artifact.metadata, AdamW's moments, the
 * training state), RUN/best, the older ones pruned; resume (options,
 * state, history) from one; and the JSONL log, train.jsonl. Validation
 * (train_val.c) comes before a checkpoint and hands it its scores; the
 * curve (train_curve.c) after. */
#include "train_run.h"
#include "fsutil.h"
#include "safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

/* Best effort: a leftover is cleaned up by the next run. */
static void remove_quietly(const char *path) { cb_remove_tree(path, NULL); }

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
    /* the markers the model was loaded with: [unused0] / [unused1], the
     * added "[Q] " / "[D] ", or those the checkpoint named */
    const char *qtok = r->cc.query_token, *dtok = r->cc.doc_token;
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
    cb_train_scores_put(meta, v);
    json_object_set_new(m, "meta", meta);
    char *s = json_dumps(m, JSON_SORT_KEYS);
    json_decref(m);
    return s;
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

/* RUN/step-N of the best checkpoint (cb_train_hist_best), NULL + err when
 * out of memory (or, err untouched, when there is no checkpoint). */
static char *best_path(const run *r, cb_err *err) {
    int b = cb_train_hist_best(&r->hist);
    if (b < 0) return NULL;
    char *name = cb_train_step_name(r->hist.at[b].step, err);
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
    if (prune(r, r->hist.at[cb_train_hist_best(&r->hist)].step, &e))
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
                              (json_int_t)r->n_train, "opts", opts_json(r), "history", cb_train_hist_json(&r->hist));
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

/* Write RUN/step-N (model, training state, the scores vs) atomically.
 * Data parallel: every rank keeps the history; rank 0 writes; the ranks
 * agree on the outcome. */
int cb_train_save_checkpoint(run *r, const val_scores *vs, double val_s, cb_err *err) {
    step_state *s = &r->s;
    cb_comm *comm = r->comm;
    int root = comm->rank == 0;
    long step = cb_step_count(s);
    /* what can fail for lack of memory comes before the ranks agree, so
     * that a rank short of memory fails the checkpoint on every rank */
    char *name = cb_train_step_name(step, err);
    char *final = name ? cb_path_new(r->run_dir, name, err) : NULL;
    char *part = final ? cb_train_fmt(err, "%s/.partial-%s", r->run_dir, name) : NULL;
    char *last = part ? cb_strdup(final, err) : NULL, *src = last ? cb_strdup(final, err) : NULL, *best = NULL;
    int added = 0;
    if (src && !cb_train_hist_push(&r->hist, step, vs, err)) {
        added = 1;
        best = best_path(r, err);   /* hist holds this checkpoint: there is a best */
    }
    int rc = best ? 0 : -1;
    if (root && !rc) rc = write_checkpoint(r, step, vs, name, final, part, err);
    comm->patient++;            /* the other ranks wait for rank 0's writing */
    rc = cb_comm_agree(comm, rc, err);
    comm->patient--;
    if (rc) {
        if (added) r->hist.n--;
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
            cb_train_scores_put(j, vs);
            if (!isnan(vs->ndcg10)) json_object_set_new(j, "val_s", json_real(val_s));
            char *line = json_dumps(j, JSON_COMPACT);
            fprintf(r->log, "%s\n", line);
            fflush(r->log);
            free(line);
            json_decref(j);
        }
        if (root && !isnan(vs->ndcg10))
            fprintf(stderr, "%scheckpoint %s: validation nDCG@10 %.4f, MRR@10 %.4f (%.1f s)\n",
                    r->tty ? "\r\033[K" : "", final, vs->ndcg10, vs->mrr10, val_s);
        else if (root && !r->o.quiet)
            fprintf(stderr, "%scheckpoint %s\n", r->tty ? "\r\033[K" : "", final);
        set_best(r, best);
        if (root) {
            cb_err e = {{0}};
            if (strip_states(r, step, &e))
                fprintf(stderr, "colbert: warning: %s: cannot strip the older checkpoints' training state: %s\n",
                        r->run_dir, e.msg);
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
    if (cb_train_hist_load(&r->hist, json_object_get(j, "history"), err)) return -1;
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

