/* train.c: the training run of train.h: the public calls, set-up, batches
 * and the step loop; at each checkpoint it validates (train_val.c), saves
 * with the scores (train_ckpt.c) and redraws the curve (train_curve.c), in
 * that order. train_run.h holds the shared state and lists the other
 * files; the step itself is step.c. */
#include "train_run.h"
#include "progress.h"
#include "fsutil.h"
#include "rng.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

void cb_train_opts_default(train_opts *o) {
    memset(o, 0, sizeof *o);
    o->output_dir = "checkpoints";
    o->bsize = 32;
    o->nbits = 2;
    o->maxsteps = 500000;
    o->lr = 5e-6;
    o->warmup = -1;
    o->accumsteps = 1;
    o->use_ib_negatives = 1;
    o->relu = -1;
    o->epochs = 1;
    o->seed = 12345;
    o->dropout = 1;
    o->keep_checkpoints = -1;
    o->val_fraction = 0.05;
    o->val_queries = 128;
    o->val_candidates = 16;
    o->val_docs = 2000;
    o->val_split = "dev";
    o->precision = OPS_BF16;
}


static volatile sig_atomic_t stop_requested;
void cb_train_request_stop(void) { stop_requested = SIGINT; }
int cb_train_stop_signal(void) { return (int)stop_requested; }
static void on_signal(int sig) {
    stop_requested = sig;
    cb_comm_signal_received();  /* data parallel: peers that stop answering are gone */
    signal(sig, SIG_DFL);       /* a second signal ends the process */
}

trainer *cb_trainer_new(const char *model_name, const char *pretrained, const char *language_code, int n_gpus,
                     cb_err *err) {
    if (!model_name || !*model_name || strchr(model_name, '/') || !strcmp(model_name, ".") ||
        !strcmp(model_name, "..")) {
        cb_err_set(err, "model name \"%s\": expected a non-empty name without '/' (it names the run's "
                   "directory)", model_name ? model_name : "");
        return NULL;
    }
    if (!pretrained || !*pretrained) {
        cb_err_set(err, "no pretrained model: give a ColBERT checkpoint or a BERT-family encoder");
        return NULL;
    }
    trainer *t = cb_calloc(1, sizeof *t, "the trainer", err);
    if (!t) return NULL;
    t->model_name = cb_strdup(model_name, err);
    t->pretrained = t->model_name ? cb_strdup(pretrained, err) : NULL;
    t->language = t->pretrained ? cb_strdup(language_code && *language_code ? language_code : "en", err) : NULL;
    if (!t->language) {
        cb_trainer_free(t);
        return NULL;
    }
    t->n_gpus = n_gpus;
    if (n_gpus > 0 && !cb_ops_have("cuda"))
        fprintf(stderr, "colbert: note: %d GPU(s) asked for; this build trains on the CPU\n", n_gpus);
    else if (n_gpus > 1)
        fprintf(stderr, "colbert: note: %d GPUs asked for; colbert.c trains on one\n", n_gpus);
    return t;
}

void cb_trainer_free(trainer *t) {
    if (!t) return;
    free(t->model_name);
    free(t->pretrained);
    free(t->language);
    free(t->data_dir);
    free(t->best);
    free(t->last);
    free(t);
}

const char *cb_trainer_best_path(const trainer *t) { return t->best; }
const char *cb_trainer_last_path(const trainer *t) { return t->last; }

int cb_trainer_prepare_data(trainer *t, const char *const *train_files, int n_train,
                         const char *const *corpus_files, int n_corpus, const char *data_out,
                         const prepare_opts *po, cb_err *err) {
    prepare_opts d;
    if (!po) { cb_prepare_opts_default(&d); po = &d; }
    prepare *p = cb_prepare_new(po);
    if (!p) return cb_err_set(err, "out of memory: the training data");
    int rc = 0;
    for (int i = 0; i < n_corpus && !rc; i++) rc = cb_prepare_add_corpus(p, corpus_files[i], err);
    for (int i = 0; i < n_train && !rc; i++) rc = cb_prepare_add_train(p, train_files[i], err);
    if (!rc) rc = cb_prepare_run(p, err);
    if (!rc) rc = cb_prepare_export(p, data_out, err);
    cb_prepare_free(p);
    if (rc) return -1;
    char *dd = cb_strdup(data_out, err);
    if (!dd) return -1;
    free(t->data_dir);
    t->data_dir = dd;
    return 0;
}

void cb_train_run_free(run *r) {
    cb_train_release_run_dir(r);   /* needs run_dir */
    free(r->run_dir);
    free(r->src_dir);
    free(r->data_dir);
    free(r->base_meta);
    if (r->tok) cb_tokenizer_free(r->tok);
    if (r->s_ready) cb_step_free(&r->s);
    cb_ops_close(r->dev);
    cb_data_texts_free(&r->queries);
    cb_data_texts_free(&r->coll);
    cb_data_triples_free(&r->trip);
    free(r->train_idx);
    free(r->order);
    cb_train_val_free(&r->val);
    cb_train_hist_free(&r->hist);
    free(r->loss_hist);
    free(r->avg_hist);
    free(r->lr_hist);
    if (r->log) fclose(r->log);
    free(r->q_ids); free(r->d_ids); free(r->q_mask); free(r->d_len); free(r->teacher);
}

/* Load and check the three files of dir. */
int cb_train_load_data(const char *dir, data_texts *q, data_texts *c, data_triples *t, cb_err *err) {
    if (!cb_dir_exists(dir))
        return cb_err_set(err, "%s: no such data directory (expected %s, %s and %s, as `colbert prepare "
                          "--out DIR` writes them)", dir, QF, CF, TF);
    const char *need[3] = {QF, CF, TF};
    for (int i = 0; i < 3; i++) {
        char *p = cb_path_new(dir, need[i], err);
        if (!p) return -1;
        int ok = cb_file_exists(p) && access(p, R_OK) == 0;
        free(p);
        if (!ok)
            return cb_err_set(err, "%s: %s is missing or unreadable (HINT: make the training files with "
                              "`colbert prepare --out %s ...`)", dir, need[i], dir);
    }
    if (cb_prepare_check(dir, err)) return -1;   /* a set that prepare wrote is whole */
    char *p = cb_path_new(dir, QF, err);
    int rc = p ? cb_data_queries_load(q, p, err) : -1;
    free(p);
    if (rc) return -1;
    p = cb_path_new(dir, CF, err);
    rc = p ? cb_data_collection_load(c, p, err) : -1;
    free(p);
    if (rc) return -1;
    if (!(p = cb_path_new(dir, TF, err))) return -1;
    rc = cb_data_triples_load(t, p, NWAY, err);
    if (!rc && t->n == 0) rc = cb_err_set(err, "%s: no triples in the file", p);
    for (size_t i = 0; !rc && i < t->n; i++) {
        if (cb_data_texts_find(q, t->qids[i]) < 0)
            rc = cb_err_set(err, "%s:%zu: query id %lld is not in %s", p, i + 1, (long long)t->qids[i], QF);
        for (int k = 0; !rc && k < t->nway; k++) {
            int64_t pid = t->pids[i * t->nway + k];
            if (pid < 0 || (uint64_t)pid >= c->n)
                rc = cb_err_set(err, "%s:%zu: passage id %lld is not in %s (%zu passages)", p, i + 1,
                                (long long)pid, CF, c->n);
        }
    }
    free(p);
    return rc;
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* ---- batches ------------------------------------------------------------- */

static void epoch_order(run *r, long epoch) {
    if (r->order_epoch == epoch) return;
    for (size_t i = 0; i < r->n_train; i++) r->order[i] = (uint32_t)i;
    if (epoch > 0) {
        rng g;
        cb_rng_init(&g, r->o.seed, 0x65706f6368ULL + (uint64_t)epoch);
        cb_rng_shuffle_u32(&g, r->order, r->n_train);
    }
    r->order_epoch = epoch;
}

/* Tokenize this rank's slice of micro-batch `a` of global batch `g` into
 * r's buffers. */
static void make_batch(run *r, long g, int a, step_batch *b) {
    long epoch = g / r->spe, pos = g % r->spe;
    epoch_order(r, epoch);
    int mq = r->mq, Lq = r->cc.query_maxlen, Ld = r->cc.doc_maxlen;
    /* micro-batch a of the step, then this rank's slice of it */
    size_t first = (size_t)pos * r->o.bsize + (size_t)a * (size_t)(r->o.bsize / r->o.accumsteps) +
                   (size_t)r->comm->rank * mq;
#pragma omp parallel for schedule(dynamic, 1)
    for (int j = 0; j < mq * (1 + NWAY); j++) {
        int q = j / (1 + NWAY), k = j % (1 + NWAY);
        size_t ti = r->train_idx[r->order[first + q]];
        size_t len;
        if (k == 0) {
            int64_t qi = cb_data_texts_find(&r->queries, r->trip.qids[ti]);
            const char *text = cb_data_texts_get(&r->queries, (size_t)qi, &len);
            cb_colbert_query_ids(r->q_ids + (size_t)q * Lq, r->q_mask + (size_t)q * Lq, &r->vocab, r->tok, text,
                              len, &r->cc);
        } else {
            int d = q * NWAY + k - 1;
            const char *text = cb_data_texts_get(&r->coll, (size_t)r->trip.pids[ti * r->trip.nway + k - 1], &len);
            r->d_len[d] = cb_colbert_doc_ids(r->d_ids + (size_t)d * Ld, &r->vocab, r->tok, text, len, &r->cc);
            if (r->teacher) r->teacher[d] = r->trip.scores[ti * r->trip.nway + k - 1];
        }
    }
    /* pack the documents (slots of Ld ids, moved down in order) */
    size_t off = 0;
    for (int d = 0; d < mq * NWAY; d++) {
        memmove(r->d_ids + off, r->d_ids + (size_t)d * Ld, (size_t)r->d_len[d] * sizeof(int32_t));
        off += (size_t)r->d_len[d];
    }
    *b = (step_batch){.nq = mq, .q_ids = r->q_ids, .q_mask = r->q_mask, .d_ids = r->d_ids, .d_len = r->d_len,
                      .teacher = r->teacher};
}

/* ---- set-up ---------------------------------------------------------------- */

/* --resume DIR: the run's options, data, names and directory from the
 * checkpoint's training state (*state keeps the strings o points into). */
static int setup_resume(run *r, json_t **state, cb_err *err) {
    const char *resume = r->o.resume;
    if (!cb_dir_exists(resume)) return cb_err_set(err, "%s: no such checkpoint directory", resume);
    if (cb_train_resume_opts(r, resume, state, err)) return -1;
    json_t *jo = json_object_get(*state, "opts");
    free(r->data_dir);
    const char *dd = json_string_value(json_object_get(jo, "data_dir"));
    if (!dd) return cb_err_set(err, "%s/%s: no data_dir in the training state", resume, STATE_JSON);
    if (!(r->data_dir = cb_strdup(dd, err))) return -1;
    const char *vd = json_string_value(json_object_get(jo, "val_data"));
    const char *keys[3] = {"model_name", "pretrained", "language_code"};
    char **dst[3] = {&r->tr->model_name, &r->tr->pretrained, &r->tr->language};
    for (int k = 0; k < 3; k++) {
        const char *v = json_string_value(json_object_get(jo, keys[k]));
        char *c = v ? cb_strdup(v, err) : NULL;
        if (v && !c) return -1;
        if (c) { free(*dst[k]); *dst[k] = c; }
    }
    r->o.val_data = vd;  /* lives in *state */
    if (!(r->run_dir = cb_train_dir_of(resume, err)) || !(r->src_dir = cb_strdup(resume, err))) return -1;
    return 0;
}

/* The options' ranges (keep_checkpoints resolved). */
static int check_opts(run *r, cb_err *err) {
    train_opts *o = &r->o;
    if (o->keep_checkpoints < 0) o->keep_checkpoints = 3;
    if (o->bsize < 1 || o->bsize > 1 << 16) return cb_err_set(err, "batch size %d out of range (1 .. 65536)", o->bsize);
    if (o->accumsteps < 1 || o->bsize % o->accumsteps)
        return cb_err_set(err, "accumsteps %d must be >= 1 and divide the batch size %d", o->accumsteps, o->bsize);
    if (o->maxsteps < 1) return cb_err_set(err, "maxsteps %ld must be >= 1", o->maxsteps);
    if (!(o->lr > 0) || o->lr > 1) return cb_err_set(err, "learning rate %g out of range (0, 1]", o->lr);
    if (o->epochs < 1) return cb_err_set(err, "epochs %d must be >= 1", o->epochs);
    if (o->dim < 0 || o->dim > 4096) return cb_err_set(err, "dim %d out of range (1 .. 4096)", o->dim);
    if (o->doc_maxlen < 0 || (o->doc_maxlen > 0 && o->doc_maxlen < 4))
        return cb_err_set(err, "doc_maxlen %d out of range (4 .. the model's positions)", o->doc_maxlen);
    if (o->query_maxlen < 0 || (o->query_maxlen > 0 && o->query_maxlen < 4))
        return cb_err_set(err, "query_maxlen %d out of range (4 .. the model's positions)", o->query_maxlen);
    if (o->val_fraction < 0 || o->val_fraction >= 1)
        return cb_err_set(err, "validation fraction %g out of range [0, 1)", o->val_fraction);
    if (!r->data_dir) return cb_err_set(err, "no training data: give a data directory (--data DIR)");
    return 0;
}

/* Where the validation set comes from, between hold_out and build_val:
 * val_data's files, or the held-out query ids of the training triples. */
typedef struct val_source {
    data_texts q, c;
    data_triples t;             /* val_data's */
    int64_t *vq;                /* [nvq] held-out query ids */
    int nvq;
} val_source;

static void val_source_free(val_source *v) {
    free(v->vq);
    cb_data_texts_free(&v->q);
    cb_data_texts_free(&v->c);
    cb_data_triples_free(&v->t);
}

/* The training triples (r->train_idx, n_train): all of them but those of
 * the held-out validation queries (val_fraction of the distinct query ids,
 * at most val_queries, in the order of a seeded hash), or all with val_data
 * (loaded into v) or val_beir. */
static int hold_out(run *r, val_source *v, cb_err *err) {
    const train_opts *o = &r->o;
    uint8_t *held = cb_calloc(r->trip.n ? r->trip.n : 1, 1, "the validation split", err);
    if (!held) return -1;
    if (o->val_data) {
        if (cb_train_load_data(o->val_data, &v->q, &v->c, &v->t, err)) {
            cb_err_prefix(err, "validation data");
            free(held);
            return -1;
        }
    } else if (!o->val_beir && o->val_fraction > 0 && o->val_queries > 0) {
        /* distinct query ids of the triples, ordered by a seeded hash */
        int64_t *ids = cb_malloc(r->trip.n * sizeof(int64_t), "the validation split", err);
        size_t nd = 0;
        uint64_t *key = ids ? cb_malloc(r->trip.n * 2 * sizeof(uint64_t), "the validation split", err) : NULL;
        if (!key) {
            free(ids);
            free(held);
            return -1;
        }
        for (size_t i = 0; i < r->trip.n; i++) ids[nd++] = r->trip.qids[i];
        for (size_t i = 0; i < nd; i++) {
            key[2 * i] = cb_rng_mix64((uint64_t)ids[i] ^ cb_rng_mix64(o->seed ^ 0x76616cULL));
            key[2 * i + 1] = (uint64_t)ids[i];
        }
        /* sort pairs (hash, id) and de-duplicate by id */
        qsort(key, nd, 2 * sizeof(uint64_t), cmp_long);  /* sorts by the hash word as signed; any fixed order works */
        size_t nu = 0;
        for (size_t i = 0; i < nd; i++) {
            if (i && key[2 * i] == key[2 * (i - 1)] && key[2 * i + 1] == key[2 * (i - 1) + 1]) continue;
            key[2 * nu] = key[2 * i];
            key[2 * nu + 1] = key[2 * i + 1];
            nu++;
        }
        if (nu >= 10) {
            v->nvq = (int)(o->val_fraction * (double)nu + 0.5);
            if (v->nvq < 1) v->nvq = 1;
            if (v->nvq > o->val_queries) v->nvq = o->val_queries;
            v->vq = cb_malloc((size_t)v->nvq * sizeof(int64_t), "the validation queries", err);
            for (int i = 0; v->vq && i < v->nvq; i++) v->vq[i] = (int64_t)key[2 * i + 1];
            for (size_t i = 0; v->vq && i < r->trip.n; i++)
                for (int k = 0; k < v->nvq; k++)
                    if (r->trip.qids[i] == v->vq[k]) { held[i] = 1; break; }
        }
        free(key);
        free(ids);
        if (v->nvq && !v->vq) {
            free(held);
            return -1;
        }
    }
    r->n_train = 0;
    r->train_idx = cb_malloc((r->trip.n ? r->trip.n : 1) * sizeof(uint32_t), "the training order", err);
    if (!r->train_idx) {
        free(held);
        return -1;
    }
    for (size_t i = 0; i < r->trip.n; i++)
        if (!held[i]) r->train_idx[r->n_train++] = (uint32_t)i;
    free(held);
    if (r->n_train < (size_t)o->bsize)
        return cb_err_set(err, "%s: %zu training triples%s, fewer than one batch of %d (HINT: lower --batch-size "
                          "to %zu or less, or prepare more data)", r->data_dir, r->n_train,
                          v->nvq ? " after holding out the validation queries" : "", o->bsize,
                          r->n_train ? r->n_train : 1);
    return 0;
}

/* Steps per epoch and in all; warmup, save_every and the end of the decay
 * from the steps this run takes (RAGatouille's arithmetic, from the steps
 * the data allows and maxsteps, with --schedule ragatouille). */
static void set_schedule(run *r) {
    train_opts *o = &r->o;
    r->spe = (long)(r->n_train / (size_t)o->bsize);
    r->total = r->spe * o->epochs < o->maxsteps ? r->spe * o->epochs : o->maxsteps;
    long per = (long)(r->n_triplets / (size_t)o->bsize);
    if (o->ragatouille_schedule) {
        if (o->warmup < 0) o->warmup = (long)((double)per * 0.1);
        if (o->save_every <= 0) o->save_every = per / 10 > 0 ? per / 10 : 1;
        r->decay_end = o->maxsteps;
    } else {
        if (o->warmup < 0) o->warmup = (long)((double)r->total * 0.1);
        if (o->save_every <= 0) o->save_every = (r->total + 4) / 5 > 0 ? (r->total + 4) / 5 : 1;
        r->decay_end = r->total;
    }
}

/* The validation set r->val from v (val_data's queries, the held-out ones)
 * or val_beir; r->has_val when it has judged queries. */
static int build_val(run *r, val_source *v, cb_err *err) {
    const train_opts *o = &r->o;
    int vrc = 0;
    if (o->val_data) {
        int64_t *ids = cb_malloc((v->t.n ? v->t.n : 1) * sizeof(int64_t), "the validation queries", err);
        if (!ids) return -1;
        for (size_t i = 0; i < v->t.n; i++) {
            int seen = 0;
            for (int k = 0; k < v->nvq && !seen; k++) seen = ids[k] == v->t.qids[i];
            if (!seen && v->nvq < o->val_queries) ids[v->nvq++] = v->t.qids[i];
        }
        if (v->nvq) vrc = cb_train_val_build(r, &v->q, &v->c, &v->t, ids, v->nvq, err);
        free(ids);
    } else if (o->val_beir) {
        vrc = cb_train_val_build_beir(r, o->val_beir, o->val_split, err);
    } else if (v->nvq) {
        vrc = cb_train_val_build(r, &r->queries, &r->coll, &r->trip, v->vq, v->nvq, err);
    }
    r->has_val = !vrc && r->val.nq > 0 && r->val.rel_off && r->val.rel_off[r->val.nq] > 0;
    return vrc ? -1 : 0;
}

/* The batch buffers (this rank's share of a micro-batch), the training
 * order and the per-step history of the curve. */
static int alloc_buffers(run *r, cb_err *err) {
    const train_opts *o = &r->o;
    r->mq = r->s.max_q;
    if (!(r->q_ids = cb_malloc((size_t)r->mq * r->cc.query_maxlen * sizeof(int32_t), "a batch", err)) ||
        !(r->q_mask = cb_malloc((size_t)r->mq * r->cc.query_maxlen, "a batch", err)) ||
        !(r->d_ids = cb_malloc((size_t)r->mq * NWAY * r->cc.doc_maxlen * sizeof(int32_t), "a batch", err)) ||
        !(r->d_len = cb_malloc((size_t)r->mq * NWAY * sizeof(int), "a batch", err)) ||
        (r->trip.scores && !o->contrastive &&
         !(r->teacher = cb_malloc((size_t)r->mq * NWAY * sizeof(float), "a batch", err))))
        return -1;
    if (r->trip.scores && o->contrastive && !o->quiet && r->comm->rank == 0)
        fprintf(stderr, "colbert: note: --loss contrastive does not use the triples' teacher scores\n");
    r->order_epoch = -1;
    if (!(r->order = cb_malloc(r->n_train * sizeof(uint32_t), "the training order", err)) ||
        !(r->loss_hist = cb_calloc((size_t)r->total, sizeof(float), "the loss history", err)) ||
        !(r->avg_hist = cb_calloc((size_t)r->total, sizeof(float), "the loss history", err)) ||
        !(r->lr_hist = cb_calloc((size_t)r->total, sizeof(float), "the loss history", err)))
        return -1;
    return 0;
}

/* The run directory (rank 0 writes it and holds its lock), the resumed
 * state and the log. */
static int open_run_dir(run *r, json_t *state, cb_err *err) {
    const char *resume = r->o.resume;
    int root = r->comm->rank == 0;
    if (!resume) {
        if (!(r->run_dir = cb_path_new(r->o.output_dir, r->tr->model_name, err))) return -1;
    }
    if (root && (cb_mkdirs(r->run_dir, NULL, err) || cb_train_claim_run_dir(r, 1, err))) return -1;
    if (root) cb_train_clean_run_dir(r->run_dir);
    if (resume && cb_train_load_state(r, resume, state, err)) return -1;
    return root ? cb_train_open_log(r, cb_step_count(&r->s), err) : 0;
}

/* The device: --device, else a GPU if there is one (n_gpus 0: the CPU;
 * under mpirun the CPUs: a GPU is refused with several ranks, step.h);
 * "auto" says which only when it takes a GPU or was asked for by name. */
static int open_device(run *r, cb_err *err) {
    const train_opts *o = &r->o;
    const char *spec = o->device ? o->device : r->tr->n_gpus == 0 ? "cpu" : "auto";
    if (r->comm->size > 1 && !strcmp(spec, "auto")) spec = "cpu";   /* under mpirun: the CPUs (step.h) */
    if (cb_step_check_device(spec, r->comm->size, err)) return -1;
    cb_err why = {{0}};
    if (!(r->dev = cb_ops_open(spec, o->precision, &why))) return cb_err_set(err, "%s", why.msg);
    if (strcmp(r->dev->kind, "cpu") || (o->device && !strcmp(o->device, "auto")))
        fprintf(stderr, "colbert: training on %s%s%s\n", r->dev->desc, why.msg[0] ? "; " : "", why.msg);
    return 0;
}

/* The run from the options: the data, the model and its configuration,
 * the validation split, the schedule, the step, the validation set, the
 * buffers and the run directory, in that order. */
static int setup(run *r, json_t **state, cb_err *err) {
    train_opts *o = &r->o;
    const char *resume = o->resume;
    int root = r->comm->rank == 0;
    if (resume && setup_resume(r, state, err)) return -1;
    if (check_opts(r, err)) return -1;
    /* a busy run directory, or an earlier run in it, is refused before anything is loaded */
    if (cb_train_claim_run_dir(r, 0, err)) return -1;

    /* data */
    if (cb_train_load_data(r->data_dir, &r->queries, &r->coll, &r->trip, err)) return -1;
    r->n_triplets = r->trip.n;

    /* model and configuration: the base's settings, then the user's */
    if (open_device(r, err)) return -1;
    colmodel m;
    const char *from = resume ? resume : r->tr->pretrained;
    if (cb_colmodel_load(&m, r->dev, from, o->dim, o->seed, err)) {
        cb_err_prefix(err, "model %s", from);
        return -1;
    }
    r->cc = m.cc;
    if (!m.is_colbert) r->cc.doc_maxlen = 256;   /* RAGTrainer's default for a new model */
    if (m.is_colbert && o->dim && o->dim != m.cc.dim) {
        cb_err_set(err, "%s is a ColBERT checkpoint of dim %d; --dim %d cannot change it (leave --dim out "
                   "to fine-tune, or start from the plain encoder)", m.dir, m.cc.dim, o->dim);
        cb_colmodel_free(&m);
        return -1;
    }
    if (o->doc_maxlen) r->cc.doc_maxlen = o->doc_maxlen;
    if (o->query_maxlen) r->cc.query_maxlen = o->query_maxlen;
    if (o->relu >= 0) r->cc.relu = o->relu;
    int maxpos = m.enc.info.max_len;
    if (r->cc.doc_maxlen > maxpos || r->cc.query_maxlen > maxpos) {
        cb_err_set(err, "doc_maxlen %d / query_maxlen %d exceed the %d positions of %s", r->cc.doc_maxlen,
                   r->cc.query_maxlen, maxpos, m.dir);
        cb_colmodel_free(&m);
        return -1;
    }
    if (!resume) {
        r->src_dir = cb_strdup(m.dir, err);
        if (m.metadata && r->src_dir) r->base_meta = cb_strdup(m.metadata, err);
        if (!r->src_dir || (m.metadata && !r->base_meta)) {
            cb_colmodel_free(&m);
            return -1;
        }
        if (m.is_colbert && root)
            fprintf(stderr, "colbert: fine-tuning the %s ColBERT checkpoint %s (dim %d, query_maxlen %d, "
                    "doc_maxlen %d, markers \"%s\" / \"%s\")\n", m.is_pylate ? "PyLate" : "colbert-ai", m.dir,
                    r->cc.dim, r->cc.query_maxlen, r->cc.doc_maxlen, r->cc.query_token, r->cc.doc_token);
        else if (root)
            fprintf(stderr, "colbert: a new ColBERT on the encoder %s (dim %d, linear ~ N(0, %g))\n", m.dir,
                    r->cc.dim, m.enc.info.initializer_range);
    } else if (m.metadata && !(r->base_meta = cb_strdup(m.metadata, err))) {
        cb_colmodel_free(&m);
        return -1;
    }
    r->tok = m.tok;
    m.tok = NULL;
    r->vocab = m.vocab;   /* the markers cb_colmodel_load chose (r->cc names them) */

    /* validation split */
    val_source vs = {0};
    if (hold_out(r, &vs, err)) {
        val_source_free(&vs);
        cb_colmodel_free(&m);
        return -1;
    }
    set_schedule(r);

    /* the step (takes over the encoder) */
    step_config sc = {.cc = r->cc, .lc = {.nway = NWAY, .use_ib_negatives = o->use_ib_negatives,
                                          .distillation_alpha = 1.0f, .accumsteps = o->accumsteps,
                                          .contrastive = o->contrastive},
                      .bsize = o->bsize, .lr = o->lr, .warmup = o->warmup, .maxsteps = r->decay_end,
                      .dropout = o->dropout, .seed = o->seed, .comm = r->comm, .ib_local = o->ib_local};
    int rc = cb_step_init(&r->s, &m.enc, &r->vocab, m.linear, o->seed, &sc, err);
    cb_colmodel_free(&m);
    if (rc) {
        val_source_free(&vs);
        return -1;
    }
    r->s_ready = 1;

    rc = build_val(r, &vs, err);
    val_source_free(&vs);
    if (rc || alloc_buffers(r, err)) return -1;
    return open_run_dir(r, *state, err);
}

/* ---- the loop ------------------------------------------------------------ */

static void fmt_time(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e8) { snprintf(buf, n, "?"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

/* A checkpoint, in this order: the ranks' parameters checked, validation
 * (validate_it, when the run has a validation set), RUN/step-N written
 * with the scores, then the curve redrawn (rank 0). */
static int checkpoint(run *r, int validate_it, cb_err *err) {
    val_scores vs = {NAN, NAN, NAN, NAN};
    int rc = cb_step_check_sync(&r->s, err);
    double tv = cb_now();
    if (!rc && validate_it && r->has_val) rc = cb_train_validate(r, &vs, err);
    if (rc) return -1;
    tv = cb_now() - tv;
    r->t_val += validate_it && r->has_val ? tv : 0;
    if (cb_train_save_checkpoint(r, &vs, tv, err)) return -1;
    cb_err e = {{0}};
    /* the picture is not worth stopping a run for */
    if (r->comm->rank == 0 && cb_train_write_curve(r, &e)) fprintf(stderr, "colbert: warning: %s\n", e.msg);
    return 0;
}

int cb_trainer_train(trainer *tr, const train_opts *opts, cb_err *err) {
    stop_requested = 0;   /* here, so that a stop asked for during the set-up (a caller's handler) counts */
    run r;
    memset(&r, 0, sizeof r);
    r.tr = tr;
    r.o = *opts;
    const char *dd = opts->data_dir ? opts->data_dir : tr->data_dir;
    if (dd && !(r.data_dir = cb_strdup(dd, err))) return TRAIN_ERROR;
    if (r.data_dir && !r.o.resume) {
        char *abs = realpath(r.data_dir, NULL);
        if (abs) { free(r.data_dir); r.data_dir = abs; }
    }
    r.comm = opts->comm ? opts->comm : cb_comm_world();
    json_t *state = NULL;
    int rc = setup(&r, &state, err);
    rc = cb_comm_agree(r.comm, rc, err);
    if (!rc) rc = cb_step_check_sync(&r.s, err);
    if (rc) {
        json_decref(state);
        cb_train_run_free(&r);
        return TRAIN_ERROR;
    }
    step_state *s = &r.s;
    train_opts *o = &r.o;
    cb_comm *comm = r.comm;
    int root = comm->rank == 0;
    long start = cb_step_count(s);
    if (root) {
        fprintf(stderr, "colbert: training %s: %zu triples (%zu for training, %d validation queries), batch %d x "
                "%d micro-batches, %ld steps (%ld per epoch), %.1f GiB\n",
                tr->model_name, r.n_triplets, r.n_train, r.has_val ? r.val.nq : 0, o->bsize / o->accumsteps,
                o->accumsteps, r.total, r.spe, (double)s->bytes / (1 << 30));
        if (comm->size > 1)
            fprintf(stderr, "colbert: data parallel: %s; %d triples per rank and micro-batch, in-batch negatives %s\n",
                    comm->desc, r.mq, o->ib_local ? "per rank (--ib-scope local)" : "over the global batch");
        fprintf(stderr, "colbert: schedule%s: lr %g, linear warmup over %ld steps, then linear decay to 0 at step "
                "%ld; a checkpoint every %ld steps and at the end\n", o->ragatouille_schedule ? " (RAGatouille's)" : "",
                o->lr, o->warmup, r.decay_end, o->save_every);
        if (r.has_val) fprintf(stderr, "colbert: validation: %s, by nDCG@10\n", r.val.source);
        if (start) fprintf(stderr, "colbert: resuming at step %ld from %s\n", start, o->resume);
    }

    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    int tty = r.tty = isatty(2) && !o->quiet && root;
    double t0 = cb_now(), last_draw = 0;
    int interrupted = 0;
    progress pg = {.label = "train", .unit = "steps", .total = r.total, .done = start};   /* for a progress hook */
    cb_progress_notify(&pg, PROGRESS_START);
    while (cb_step_count(s) < r.total) {
        /* the ranks agree, so that all stop after the same step */
        if (comm->size > 1 ? cb_comm_max_long(comm, stop_requested != 0) : stop_requested) {
            interrupted = 1;
            break;
        }
        long g = cb_step_count(s);
        double loss = 0;
        loss_parts lp, sum = {0, 0};
        for (int a = 0; a < o->accumsteps; a++) {
            step_batch b;
            make_batch(&r, g, a, &b);
            loss += cb_step_micro(s, &b, &lp);
            sum.main += lp.main / o->accumsteps;
            sum.ib += lp.ib / o->accumsteps;
        }
        double lr;
        float gn = cb_step_update(s, &lr);
        if (comm->size > 1) {   /* the ranks' shares of the losses */
            double v[3] = {loss, sum.main, sum.ib};
            cb_comm_allreduce(comm, v, 3, COMM_F64, COMM_SUM);
            loss = v[0];
            sum.main = (float)v[1];
            sum.ib = (float)v[2];
        }
        if (!isfinite(loss) || !isfinite(gn)) {
            /* diverged: nothing of this step is saved, the checkpoints on disk stay as they are */
            char ls[32], gs[32];
            const char *good = tr->last ? tr->last : o->resume;   /* a resumed run: where it came from */
            snprintf(ls, sizeof ls, isnan(loss) ? "NaN" : "%g", loss);
            snprintf(gs, sizeof gs, isnan(gn) ? "NaN" : "%g", (double)gn);
            rc = cb_err_set(err, "step %ld of %ld: the loss is %s and the gradient norm %s: training diverged "
                            "and stops; %s%s (HINT: lower --lr, or check the model's weights and the data)",
                            g + 1, r.total, ls, gs, good ? "the last good checkpoint is " :
                            "no checkpoint was written", good ? good : "");
            if (r.log) fprintf(r.log, "{\"event\":\"diverged\",\"step\":%ld,\"loss_finite\":%s,\"grad_norm_finite\":%s}\n",
                    g + 1, isfinite(loss) ? "true" : "false", isfinite(gn) ? "true" : "false");
            if (r.log) fflush(r.log);
            break;
        }
        r.ema = TRAIN_SMOOTH * r.ema + (1 - TRAIN_SMOOTH) * loss;
        double avg = cb_train_smoothed(r.ema, cb_step_count(s));
        r.loss_hist[g] = (float)loss;
        r.avg_hist[g] = (float)avg;
        r.lr_hist[g] = (float)lr;
        double now = cb_now(), el = now - t0;
        double rate = (double)(cb_step_count(s) - start) * o->bsize / (el > 0 ? el : 1e-9);
        if (root) fprintf(r.log, "{\"step\":%ld,\"epoch\":%ld,\"loss\":%.7g,\"loss_main\":%.7g,\"loss_ib\":%.7g,"
                "\"loss_avg\":%.7g,\"lr\":%.7g,\"grad_norm\":%.7g,\"triplets_per_s\":%.4g,\"elapsed_s\":%.3f}\n",
                cb_step_count(s), g / r.spe + 1, loss, (double)sum.main, (double)sum.ib, avg, lr, (double)gn, rate, el);
        if (root) fflush(r.log);
        if (!o->quiet && root && (tty || now - last_draw >= 10 || cb_step_count(s) == r.total || cb_step_count(s) == start + 1)) {
            char eta[32], ela[32];
            fmt_time(eta, sizeof eta, (double)(r.total - cb_step_count(s)) * o->bsize / rate);
            fmt_time(ela, sizeof ela, el);
            int w = 20, fill = (int)((double)w * cb_step_count(s) / r.total);
            char bar[32];
            for (int i = 0; i < w; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
            bar[w] = 0;
            fprintf(stderr, "%strain %ld/%ld [%s] %3d%% loss %.4f lr %.3g %.1f triplets/s %s ETA %s%s", tty ? "\r\033[K" : "",
                    cb_step_count(s), r.total, bar, (int)(100.0 * cb_step_count(s) / r.total), avg, lr, rate, ela, eta, tty ? "" : "\n");
            last_draw = now;
        }
        pg.done = cb_step_count(s);
        cb_progress_notify(&pg, PROGRESS_UPDATE);
        if (cb_step_count(s) % o->save_every == 0 || cb_step_count(s) == r.total) {
            if (checkpoint(&r, 1, err)) { rc = -1; break; }
        }
    }
    if (tty) fputc('\n', stderr);
    cb_progress_notify(&pg, PROGRESS_END);
    if (!rc && interrupted) {
        if (cb_step_count(s) > start || !o->resume) {
            if (cb_step_count(s) > 0 && checkpoint(&r, 0, err)) rc = -1;
        } else {
            char *last = cb_strdup(o->resume, err);
            if (last) {
                free(tr->last);
                tr->last = last;
            } else {
                rc = -1;
            }
        }
        if (!rc && root)
            fprintf(stderr, "colbert: interrupted at step %ld/%ld; continue with --resume %s\n", cb_step_count(s), r.total,
                    tr->last ? tr->last : "(nothing saved yet)");
    }
    if (!rc && !interrupted && !tr->best) {
        /* resumed at the end: nothing new to save */
        int b = cb_train_hist_best(&r.hist);
        if (b >= 0) {
            char *name = cb_train_step_name(r.hist.at[b].step, err);
            if (!name || !(tr->best = cb_path_new(r.run_dir, name, err))) rc = -1;
            free(name);
        }
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (!rc && !interrupted && root) {
        double el = cb_now() - t0;
        fprintf(stderr, "colbert: done: %ld steps in %.1f s (validation %.1f s, %.0f%%); best checkpoint %s\n",
                cb_step_count(s) - start, el, r.t_val, el > 0 ? 100.0 * r.t_val / el : 0.0,
                tr->best ? tr->best : "(none)");
        int b = cb_train_hist_best(&r.hist);
        if (b >= 0 && !isnan(r.hist.at[b].v.ndcg10))
            fprintf(stderr, "colbert: best: step %ld, validation nDCG@10 %.4f, MRR@10 %.4f\n", r.hist.at[b].step,
                    r.hist.at[b].v.ndcg10, r.hist.at[b].v.mrr10);
        fprintf(stderr, "colbert: log %s/train.jsonl, loss curve %s/curve.svg\n", r.run_dir, r.run_dir);
    }
    json_decref(state);
    cb_train_run_free(&r);
    if (rc) return TRAIN_ERROR;
    return interrupted ? TRAIN_INTERRUPTED : TRAIN_OK;
}

