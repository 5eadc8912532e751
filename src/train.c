/* train.c: the training run of train.h: data, configuration, the step
 * loop, validation, checkpoints, resume, logs. The step itself is step.c. */
#include "train.h"
#include "colmodel.h"
#include "data.h"
#include "npy.h"
#include "rng.h"
#include "safetensors.h"
#include "step.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define QF "queries.train.colbert.tsv"
#define CF "corpus.train.colbert.tsv"
#define TF "triples.train.colbert.jsonl"
#define STATE_JSON "training_state.json"
#define STATE_ST "training_state.safetensors"
#define NWAY 2

void train_opts_default(train_opts *o) {
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
    o->val_queries = 32;
    o->val_candidates = 16;
    o->precision = OPS_BF16;
}

struct trainer {
    char *model_name, *pretrained, *language;
    int n_gpus;
    char *data_dir;             /* from trainer_prepare_data */
    char *best, *last;
};

static volatile sig_atomic_t stop_requested;
void train_request_stop(void) { stop_requested = SIGINT; }
int train_stop_signal(void) { return (int)stop_requested; }
static void on_signal(int sig) {
    stop_requested = sig;
    signal(sig, SIG_DFL);       /* a second signal ends the process */
}

trainer *trainer_new(const char *model_name, const char *pretrained, const char *language_code, int n_gpus,
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
    trainer *t = cb_xcalloc(1, sizeof *t);
    t->model_name = cb_xstrdup(model_name);
    t->pretrained = cb_xstrdup(pretrained);
    t->language = cb_xstrdup(language_code && *language_code ? language_code : "en");
    t->n_gpus = n_gpus;
    if (n_gpus > 0 && !ops_have("cuda"))
        fprintf(stderr, "colbert: note: %d GPU(s) asked for; this build trains on the CPU\n", n_gpus);
    else if (n_gpus > 1)
        fprintf(stderr, "colbert: note: %d GPUs asked for; colbert.c trains on one\n", n_gpus);
    return t;
}

void trainer_free(trainer *t) {
    if (!t) return;
    free(t->model_name);
    free(t->pretrained);
    free(t->language);
    free(t->data_dir);
    free(t->best);
    free(t->last);
    free(t);
}

const char *trainer_best_path(const trainer *t) { return t->best; }
const char *trainer_last_path(const trainer *t) { return t->last; }

int trainer_prepare_data(trainer *t, const char *const *train_files, int n_train,
                         const char *const *corpus_files, int n_corpus, const char *data_out,
                         const prepare_opts *po, cb_err *err) {
    prepare_opts d;
    if (!po) { prepare_opts_default(&d); po = &d; }
    prepare *p = prepare_new(po);
    int rc = 0;
    for (int i = 0; i < n_corpus && !rc; i++) rc = prepare_add_corpus(p, corpus_files[i], err);
    for (int i = 0; i < n_train && !rc; i++) rc = prepare_add_train(p, train_files[i], err);
    if (!rc) rc = prepare_run(p, err);
    if (!rc) rc = prepare_export(p, data_out, err);
    prepare_free(p);
    if (rc) return -1;
    free(t->data_dir);
    t->data_dir = cb_xstrdup(data_out);
    return 0;
}

/* ---- small helpers ------------------------------------------------------ */

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) { unlink(dir); return; }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = cb_path_join(dir, e->d_name);
        struct stat st;
        if (!lstat(p, &st) && S_ISDIR(st.st_mode)) remove_tree(p);
        else unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(dir);
}

static int mkdirs(const char *path, cb_err *err) {
    char *p = cb_xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) && errno != EEXIST) { *s = '/'; break; }
        *s = '/';
    }
    int rc = 0;
    if (mkdir(p, 0755) && errno != EEXIST) rc = cb_err_set(err, "%s: cannot create: %s", p, strerror(errno));
    else if (!cb_dir_exists(p)) rc = cb_err_set(err, "%s: exists and is not a directory", p);
    free(p);
    return rc;
}

static int write_json_atomic(const char *path, json_t *j, cb_err *err) {
    char *tmp;
    FILE *f = cb_out_open(path, &tmp, err);
    if (!f) return -1;
    if (json_dumpf(j, f, JSON_INDENT(2) | JSON_SORT_KEYS)) {
        cb_out_abort(f, tmp);
        return cb_err_set(err, "%s: cannot write", path);
    }
    fputc('\n', f);
    return cb_out_commit(f, tmp, path, err);
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    char *s = NULL;
    if (vasprintf(&s, f, ap) < 0) { fprintf(stderr, "colbert: out of memory\n"); exit(1); }
    va_end(ap);
    return s;
}

static char *dir_of(const char *path) {
    char *s = cb_xstrdup(path);
    size_t n = strlen(s);
    while (n > 1 && s[n - 1] == '/') s[--n] = 0;
    char *slash = strrchr(s, '/');
    if (!slash) { free(s); return cb_xstrdup("."); }
    if (slash == s) slash[1] = 0;
    else *slash = 0;
    return s;
}

/* ---- the run ------------------------------------------------------------- */

typedef struct ckpt_info {
    long step;
    double val_loss, mrr;       /* NAN when not validated */
} ckpt_info;

typedef struct val_set {
    int nq;                     /* queries */
    int32_t *q_ids;             /* [nq, Lq] */
    uint8_t *q_mask;            /* [nq, Lq] */
    int *q_len;                 /* [nq] = Lq */
    int *c_off;                 /* [nq+1] candidates of query q: c_off[q] .. c_off[q+1] */
    uint8_t *c_pos;             /* [nc] a positive of its query */
    int32_t *d_ids;             /* packed candidate documents */
    int *d_len;                 /* [nc] */
    size_t *d_off;              /* [nc+1] token offsets */
    uint8_t *d_keep;            /* [tokens] */
    int nt;                     /* validation triples */
    int *t_q, *t_c;             /* [nt], [nt, nway]: query, candidate index of each doc */
} val_set;

typedef struct run {
    trainer *tr;
    train_opts o;               /* resolved */
    char *run_dir, *src_dir, *data_dir, *base_meta;
    tokenizer *tok;
    colbert_vocab vocab;
    colbert_config cc;
    ops_device *dev;            /* where the step runs */
    step_state s;
    int s_ready;
    data_texts queries, coll;
    data_triples trip;
    size_t n_triplets;          /* in the file, for the auto rules */
    uint32_t *train_idx;        /* [n_train] triple indices used for training */
    size_t n_train;
    uint32_t *order;            /* [n_train] this epoch's order */
    long order_epoch;
    long spe, total;            /* steps per epoch, steps in all */
    val_set val;
    int has_val;
    ckpt_info *hist;
    int n_hist, cap_hist;
    double ema;
    float *loss_hist, *lr_hist; /* [total] for the curve */
    FILE *log;
    int tty;                    /* stderr is a terminal: redraw the progress line */
    /* batch buffers */
    int mq;                     /* queries per micro-batch */
    int32_t *q_ids, *d_ids;
    uint8_t *q_mask;
    int *d_len;
    float *teacher;
} run;

static void run_free(run *r) {
    free(r->run_dir);
    free(r->src_dir);
    free(r->data_dir);
    free(r->base_meta);
    if (r->tok) tokenizer_free(r->tok);
    if (r->s_ready) step_free(&r->s);
    ops_close(r->dev);
    data_texts_free(&r->queries);
    data_texts_free(&r->coll);
    data_triples_free(&r->trip);
    free(r->train_idx);
    free(r->order);
    val_set *v = &r->val;
    free(v->q_ids); free(v->q_mask); free(v->q_len); free(v->c_off); free(v->c_pos);
    free(v->d_ids); free(v->d_len); free(v->d_off); free(v->d_keep); free(v->t_q); free(v->t_c);
    free(r->hist);
    free(r->loss_hist);
    free(r->lr_hist);
    if (r->log) fclose(r->log);
    free(r->q_ids); free(r->d_ids); free(r->q_mask); free(r->d_len); free(r->teacher);
}

/* Load and check the three files of dir. */
static int load_data(const char *dir, data_texts *q, data_texts *c, data_triples *t, cb_err *err) {
    if (!cb_dir_exists(dir))
        return cb_err_set(err, "%s: no such data directory (expected %s, %s and %s, as `colbert prepare "
                          "--out DIR` writes them)", dir, QF, CF, TF);
    const char *need[3] = {QF, CF, TF};
    for (int i = 0; i < 3; i++) {
        char *p = cb_path_join(dir, need[i]);
        int ok = cb_file_exists(p) && access(p, R_OK) == 0;
        free(p);
        if (!ok)
            return cb_err_set(err, "%s: %s is missing or unreadable (HINT: make the training files with "
                              "`colbert prepare --out %s ...`)", dir, need[i], dir);
    }
    char *p = cb_path_join(dir, QF);
    int rc = data_queries_load(q, p, err);
    free(p);
    if (rc) return -1;
    p = cb_path_join(dir, CF);
    rc = data_collection_load(c, p, err);
    free(p);
    if (rc) return -1;
    p = cb_path_join(dir, TF);
    rc = data_triples_load(t, p, NWAY, err);
    if (!rc && t->n == 0) rc = cb_err_set(err, "%s: no triples in the file", p);
    for (size_t i = 0; !rc && i < t->n; i++) {
        if (data_texts_find(q, t->qids[i]) < 0)
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

static uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Validation: the queries qsel (n of them, ids) with their triples from t,
 * tokenized once. */
static void val_build(run *r, const data_texts *q, const data_texts *c, const data_triples *t,
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
static void validate(run *r, double *loss_out, double *mrr_out) {
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

/* ---- batches ------------------------------------------------------------- */

static void epoch_order(run *r, long epoch) {
    if (r->order_epoch == epoch) return;
    for (size_t i = 0; i < r->n_train; i++) r->order[i] = (uint32_t)i;
    if (epoch > 0) {
        rng g;
        rng_init(&g, r->o.seed, 0x65706f6368ULL + (uint64_t)epoch);
        rng_shuffle_u32(&g, r->order, r->n_train);
    }
    r->order_epoch = epoch;
}

/* Tokenize micro-batch `a` of global batch `g` into r's buffers. */
static void make_batch(run *r, long g, int a, step_batch *b) {
    long epoch = g / r->spe, pos = g % r->spe;
    epoch_order(r, epoch);
    int mq = r->mq, Lq = r->cc.query_maxlen, Ld = r->cc.doc_maxlen;
    size_t first = (size_t)pos * r->o.bsize + (size_t)a * mq;
#pragma omp parallel for schedule(dynamic, 1)
    for (int j = 0; j < mq * (1 + NWAY); j++) {
        int q = j / (1 + NWAY), k = j % (1 + NWAY);
        size_t ti = r->train_idx[r->order[first + q]];
        size_t len;
        if (k == 0) {
            int64_t qi = data_texts_find(&r->queries, r->trip.qids[ti]);
            const char *text = data_texts_get(&r->queries, (size_t)qi, &len);
            colbert_query_ids(r->q_ids + (size_t)q * Lq, r->q_mask + (size_t)q * Lq, &r->vocab, r->tok, text,
                              len, &r->cc);
        } else {
            int d = q * NWAY + k - 1;
            const char *text = data_texts_get(&r->coll, (size_t)r->trip.pids[ti * r->trip.nway + k - 1], &len);
            r->d_len[d] = colbert_doc_ids(r->d_ids + (size_t)d * Ld, &r->vocab, r->tok, text, len, &r->cc);
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
    json_object_set_new(j, "loss", json_string(o->contrastive ? "contrastive" : "colbert"));
    json_object_set_new(j, "model_name", json_string(r->tr->model_name));
    json_object_set_new(j, "pretrained", json_string(r->tr->pretrained));
    json_object_set_new(j, "language_code", json_string(r->tr->language));
    return j;
}

/* artifact.metadata: the base checkpoint's (fine-tune), then colbert-ai's
 * ColBERTConfig keys of this run, then "meta". */
static char *metadata_text(const run *r, long step, double vl, double mrr) {
    json_t *m = NULL;
    if (r->base_meta) {
        m = json_loads(r->base_meta, 0, NULL);
        json_t *c = json_object_get(m, "config");
        if (json_is_object(c)) { json_incref(c); json_decref(m); m = c; }
        if (!json_is_object(m)) { json_decref(m); m = NULL; }
    }
    if (!m) m = json_object();
    const train_opts *o = &r->o;
    json_t *x = json_pack("{s:i, s:i, s:i, s:b, s:b, s:b, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:f, s:I, "
                          "s:I, s:I, s:i, s:b, s:f, s:b, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:b, s:b}",
                          "query_maxlen", r->cc.query_maxlen, "doc_maxlen", r->cc.doc_maxlen, "dim", r->cc.dim,
                          "mask_punctuation", r->cc.mask_punctuation, "attend_to_mask_tokens",
                          r->cc.attend_to_mask_tokens, "relu", r->cc.relu, "similarity", "cosine",
                          "query_token_id", "[unused0]", "doc_token_id", "[unused1]", "query_token", "[Q]",
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
    if (!isnan(mrr)) {
        json_object_set_new(meta, "val_loss", json_real(vl));
        json_object_set_new(meta, "val_mrr10", json_real(mrr));
    }
    json_object_set_new(m, "meta", meta);
    char *s = json_dumps(m, JSON_SORT_KEYS);
    json_decref(m);
    return s;
}

static json_t *hist_json(const run *r) {
    json_t *a = json_array();
    for (int i = 0; i < r->n_hist; i++) {
        json_t *h = json_pack("{s:I}", "step", (json_int_t)r->hist[i].step);
        if (!isnan(r->hist[i].mrr)) {
            json_object_set_new(h, "val_loss", json_real(r->hist[i].val_loss));
            json_object_set_new(h, "val_mrr10", json_real(r->hist[i].mrr));
        }
        json_array_append_new(a, h);
    }
    return a;
}

static char *step_name(long step) { return fmt("step-%06ld", step); }

/* Index into hist of the best validated checkpoint still on disk (highest
 * MRR@10, then lowest loss, then latest), or of the latest one. */
static int best_index(const run *r) {
    int b = -1;
    for (int i = 0; i < r->n_hist; i++) {
        const ckpt_info *h = &r->hist[i];
        if (isnan(h->mrr)) continue;
        if (b < 0 || h->mrr > r->hist[b].mrr ||
            (h->mrr == r->hist[b].mrr && h->val_loss <= r->hist[b].val_loss))
            b = i;
    }
    if (b < 0) b = r->n_hist - 1;
    return b;
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* Keep the newest keep_checkpoints step-* directories and the best. */
static void prune(run *r, long best_step) {
    if (r->o.keep_checkpoints <= 0) return;
    DIR *d = opendir(r->run_dir);
    if (!d) return;
    long *steps = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long st;
        char tail;
        if (sscanf(e->d_name, "step-%ld%c", &st, &tail) != 1) continue;
        if (n == cap) steps = cb_xrealloc(steps, (cap = cap ? 2 * cap : 16) * sizeof(long));
        steps[n++] = st;
    }
    closedir(d);
    if (n) qsort(steps, n, sizeof(long), cmp_long);
    for (size_t i = 0; i + (size_t)r->o.keep_checkpoints < n; i++) {
        if (steps[i] == best_step) continue;
        char *name = step_name(steps[i]);
        char *p = cb_path_join(r->run_dir, name);
        char *gone = fmt("%s/.deleting-%s", r->run_dir, name);
        if (!rename(p, gone)) remove_tree(gone);
        free(name); free(p); free(gone);
    }
    free(steps);
}

static void set_best(run *r, cb_err *err) {
    int b = best_index(r);
    if (b < 0) return;
    char *name = step_name(r->hist[b].step);
    char *link = cb_path_join(r->run_dir, "best"), *tmp = cb_path_join(r->run_dir, ".best.tmp");
    unlink(tmp);
    if (symlink(name, tmp) || rename(tmp, link))
        fprintf(stderr, "colbert: warning: %s: cannot link the best checkpoint: %s\n", link, strerror(errno));
    free(r->tr->best);
    r->tr->best = cb_path_join(r->run_dir, name);
    prune(r, r->hist[b].step);
    free(name); free(link); free(tmp);
    (void)err;
}

static void write_curve(const run *r);

/* Write RUN/step-N: model, training state, validation; atomically. */
static int save_checkpoint(run *r, int validate_it, cb_err *err) {
    step_state *s = &r->s;
    long step = step_count(s);
    char *name = step_name(step);
    char *final = cb_path_join(r->run_dir, name);
    char *part = fmt("%s/.partial-%s", r->run_dir, name);
    double vl = NAN, mrr = NAN;
    int rc = 0;
    if (validate_it && r->has_val) validate(r, &vl, &mrr);
    char *meta = metadata_text(r, step, vl, mrr);
    remove_tree(part);
    /* host copies of the parameters, then of the moments (staging only
     * while saving) */
    size_t n = s->n;
    float *host = cb_malloc(2 * n * sizeof(float), "the checkpoint's staging copy", err);
    if (!host) rc = -1;
    if (!rc) {
        step_get(s, STEP_PARAMS, host);
        rc = colmodel_save(part, step_bert_config(s), host, host + step_linear_offset(s), &r->cc, r->src_dir,
                           meta, err);
    }
    free(meta);
    if (!rc) {
        step_get(s, STEP_ADAM_M, host);
        step_get(s, STEP_ADAM_V, host + n);
        st_wtensor w[2] = {{"adamw.m", ST_F32, 1, {(int64_t)n}, host},
                           {"adamw.v", ST_F32, 1, {(int64_t)n}, host + n}};
        char *p = cb_path_join(part, STATE_ST);
        rc = st_write(p, w, 2, err);
        free(p);
    }
    free(host);
    if (!rc) {
        if (r->n_hist == r->cap_hist)
            r->hist = cb_xrealloc(r->hist, (size_t)(r->cap_hist = r->cap_hist ? 2 * r->cap_hist : 16) *
                                               sizeof(ckpt_info));
        r->hist[r->n_hist++] = (ckpt_info){step, vl, mrr};
        char seed[32];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)step_dropout_state(s));
        json_t *j = json_pack("{s:i, s:I, s:s, s:f, s:I, s:I, s:I, s:o, s:o}", "version", 1, "step",
                              (json_int_t)step, "dropout_state", seed, "loss_ema", r->ema, "steps_per_epoch",
                              (json_int_t)r->spe, "total_steps", (json_int_t)r->total, "train_triples",
                              (json_int_t)r->n_train, "opts", opts_json(r), "history", hist_json(r));
        json_object_set_new(j, "epoch", json_integer(step / r->spe));
        json_object_set_new(j, "batch_in_epoch", json_integer(step % r->spe));
        char *p = cb_path_join(part, STATE_JSON);
        rc = write_json_atomic(p, j, err);
        free(p);
        json_decref(j);
        if (rc) r->n_hist--;
    }
    if (!rc) {
        if (cb_dir_exists(final)) {
            char *gone = fmt("%s/.deleting-%s", r->run_dir, name);
            if (!rename(final, gone)) remove_tree(gone);
            free(gone);
        }
        if (rename(part, final)) rc = cb_err_set(err, "%s: cannot rename into place: %s", final, strerror(errno));
    }
    if (rc) {
        remove_tree(part);
    } else {
        free(r->tr->last);
        r->tr->last = cb_xstrdup(final);
        /* later checkpoints copy config.json and the tokenizer from the
         * newest one: the directory they came from may be pruned */
        free(r->src_dir);
        r->src_dir = cb_xstrdup(final);
        if (r->log) {
            json_t *j = json_pack("{s:s, s:I, s:s}", "event", "checkpoint", "step", (json_int_t)step, "path", final);
            if (!isnan(mrr)) {
                json_object_set_new(j, "val_loss", json_real(vl));
                json_object_set_new(j, "val_mrr10", json_real(mrr));
            }
            char *line = json_dumps(j, JSON_COMPACT);
            fprintf(r->log, "%s\n", line);
            fflush(r->log);
            free(line);
            json_decref(j);
        }
        if (!isnan(mrr))
            fprintf(stderr, "%scheckpoint %s: validation loss %.4f, MRR@10 %.4f\n", r->tty ? "\r\033[K" : "",
                    final, vl, mrr);
        else if (!r->o.quiet)
            fprintf(stderr, "%scheckpoint %s\n", r->tty ? "\r\033[K" : "", final);
        set_best(r, err);
        write_curve(r);
    }
    free(name); free(final); free(part);
    return rc;
}

/* ---- curve ------------------------------------------------------------- */

static void write_curve(const run *r) {
    long n = step_count(&r->s);
    if (n <= 0 || !r->loss_hist) return;
    const int W = 800, Hh = 360, L = 60, R = 70, T = 30, B = 40;
    int np = n < 1000 ? (int)n : 1000;
    double lmin = INFINITY, lmax = -INFINITY, rmax = 0;
    double *lx = cb_xmalloc((size_t)np * sizeof(double)), *la = cb_xmalloc((size_t)np * sizeof(double));
    double *lr = cb_xmalloc((size_t)np * sizeof(double));
    for (int p = 0; p < np; p++) {
        long a = (long)((double)p * n / np), b = (long)((double)(p + 1) * n / np);
        if (b <= a) b = a + 1;
        double sl = 0, sr = 0;
        for (long i = a; i < b; i++) { sl += r->loss_hist[i]; sr += r->lr_hist[i]; }
        lx[p] = (double)(a + b) / 2.0 + 0.5;
        la[p] = sl / (double)(b - a);
        lr[p] = sr / (double)(b - a);
    }
    /* moving average over ~5% of the points */
    int win = np / 20 > 1 ? np / 20 : 1;
    double *ma = cb_xmalloc((size_t)np * sizeof(double));
    for (int p = 0; p < np; p++) {
        int a = p - win + 1 < 0 ? 0 : p - win + 1;
        double sum = 0;
        for (int i = a; i <= p; i++) sum += la[i];
        ma[p] = sum / (p - a + 1);
        if (la[p] < lmin) lmin = la[p];
        if (la[p] > lmax) lmax = la[p];
        if (lr[p] > rmax) rmax = lr[p];
    }
    if (!(lmax > lmin)) { lmax = lmin + 1; }
    if (rmax <= 0) rmax = 1;
    char *path = cb_path_join(r->run_dir, "curve.svg");
    char *tmp;
    FILE *f = cb_out_open(path, &tmp, NULL);
    if (f) {
        double pw = W - L - R, ph = Hh - T - B;
        fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
                "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, Hh);
        fprintf(f, "<text x=\"%d\" y=\"18\">%s: training loss and learning rate, %ld steps</text>\n", L,
                r->tr->model_name, n);
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%g\" height=\"%g\" fill=\"none\" stroke=\"#888\"/>\n", L, T, pw, ph);
        for (int k = 0; k <= 4; k++) {
            double y = T + ph * k / 4.0;
            fprintf(f, "<text x=\"%d\" y=\"%g\" text-anchor=\"end\" fill=\"#1f77b4\">%.3g</text>\n", L - 4, y + 4,
                    lmax - (lmax - lmin) * k / 4.0);
            fprintf(f, "<text x=\"%g\" y=\"%g\" fill=\"#d62728\">%.2g</text>\n", L + pw + 4, y + 4, rmax * (4 - k) / 4.0);
        }
        fprintf(f, "<text x=\"%d\" y=\"%d\">0</text><text x=\"%g\" y=\"%d\" text-anchor=\"end\">step %ld</text>\n",
                L, Hh - B + 16, L + pw, Hh - B + 16, n);
        const double *ys[3] = {la, ma, lr};
        const char *style[3] = {"stroke=\"#aec7e8\" stroke-width=\"1\"", "stroke=\"#1f77b4\" stroke-width=\"2\"",
                                "stroke=\"#d62728\" stroke-width=\"1.5\" stroke-dasharray=\"4 3\""};
        for (int c = 0; c < 3; c++) {
            fprintf(f, "<polyline fill=\"none\" %s points=\"", style[c]);
            for (int p = 0; p < np; p++) {
                double x = L + pw * lx[p] / (double)n;
                double y = c < 2 ? T + ph * (lmax - ys[c][p]) / (lmax - lmin) : T + ph * (1 - ys[c][p] / rmax);
                fprintf(f, "%.1f,%.1f ", x, y);
            }
            fprintf(f, "\"/>\n");
        }
        fprintf(f, "<text x=\"%g\" y=\"%d\" fill=\"#1f77b4\">loss (moving average)</text>"
                "<text x=\"%g\" y=\"%d\" fill=\"#d62728\" text-anchor=\"end\">learning rate</text>\n</svg>\n",
                L + 4.0, T + 14, L + pw - 4, T + 14);
        cb_out_commit(f, tmp, path, NULL);
    }
    free(path); free(lx); free(la); free(lr); free(ma);
}

/* ---- set-up ------------------------------------------------------------- */

/* Restore options from a checkpoint's training_state.json. */
static int resume_opts(run *r, const char *dir, json_t **state, cb_err *err) {
    char *p = cb_path_join(dir, STATE_JSON);
    json_error_t je;
    json_t *j = json_load_file(p, 0, &je);
    if (!j) {
        cb_err_set(err, "%s: cannot resume: %s (HINT: --resume takes a step-* directory written by "
                   "colbert train)", p, cb_file_exists(p) ? je.text : "no training state");
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
    }
    t->relu = (int)GI("relu"); t->epochs = (int)GI("epochs");
    t->seed = strtoull(seed, NULL, 10);
    t->dropout = json_is_true(json_object_get(o, "dropout"));
    t->save_every = (long)GI("save_every");
    t->val_fraction = json_real_value(json_object_get(o, "val_fraction"));
    t->val_queries = (int)GI("val_queries"); t->val_candidates = (int)GI("val_candidates");
    if (t->keep_checkpoints < 0) t->keep_checkpoints = (int)GI("keep_checkpoints");
#undef GI
    *state = j;
    return 0;
}

static int load_state(run *r, const char *dir, json_t *j, cb_err *err) {
    step_state *s = &r->s;
    char *p = cb_path_join(dir, STATE_ST);
    st_file f;
    int rc = st_open(&f, p, err);
    free(p);
    if (rc) return -1;
    int64_t shape[1] = {(int64_t)s->n};
    float *host = cb_malloc(s->n * sizeof(float), "AdamW's moments", err);
    rc = host ? st_read_f32(&f, "adamw.m", host, 1, shape, err) : -1;
    if (!rc) {
        step_set(s, STEP_ADAM_M, host);
        rc = st_read_f32(&f, "adamw.v", host, 1, shape, err);
    }
    if (!rc) step_set(s, STEP_ADAM_V, host);
    free(host);
    st_close(&f);
    if (rc) return -1;
    const char *ds = json_string_value(json_object_get(j, "dropout_state"));
    step_restore(s, (long)json_integer_value(json_object_get(j, "step")), ds ? strtoull(ds, NULL, 10) : 0);
    r->ema = json_real_value(json_object_get(j, "loss_ema"));
    json_t *h = json_object_get(j, "history");
    size_t i;
    json_t *e;
    json_array_foreach(h, i, e) {
        if (r->n_hist == r->cap_hist)
            r->hist = cb_xrealloc(r->hist, (size_t)(r->cap_hist = r->cap_hist ? 2 * r->cap_hist : 16) *
                                               sizeof(ckpt_info));
        json_t *vl = json_object_get(e, "val_loss"), *mr = json_object_get(e, "val_mrr10");
        r->hist[r->n_hist++] = (ckpt_info){(long)json_integer_value(json_object_get(e, "step")),
                                           vl ? json_real_value(vl) : NAN, mr ? json_real_value(mr) : NAN};
    }
    if ((long)json_integer_value(json_object_get(j, "train_triples")) != (long)r->n_train ||
        (long)json_integer_value(json_object_get(j, "steps_per_epoch")) != r->spe)
        return cb_err_set(err, "%s: the training data changed since this checkpoint (%lld training triples "
                          "then, %zu now)", dir, (long long)json_integer_value(json_object_get(j, "train_triples")),
                          r->n_train);
    if (step_count(s) > r->total)
        return cb_err_set(err, "%s: step %ld is past the run's %ld steps", dir, step_count(s), r->total);
    return 0;
}

/* The JSONL log: on resume, keep the lines up to the resumed step and
 * reload the curve from them. */
static int open_log(run *r, long upto, cb_err *err) {
    char *path = cb_path_join(r->run_dir, "train.jsonl");
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
static void clean_run_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, ".partial-", 9) && strncmp(e->d_name, ".deleting-", 10)) continue;
        char *p = cb_path_join(dir, e->d_name);
        remove_tree(p);
        free(p);
    }
    closedir(d);
}

static int setup(run *r, json_t **state, cb_err *err) {
    train_opts *o = &r->o;
    const char *resume = o->resume;
    if (resume) {
        if (!cb_dir_exists(resume)) return cb_err_set(err, "%s: no such checkpoint directory", resume);
        if (resume_opts(r, resume, state, err)) return -1;
        json_t *jo = json_object_get(*state, "opts");
        free(r->data_dir);
        r->data_dir = cb_xstrdup(json_string_value(json_object_get(jo, "data_dir")));
        const char *vd = json_string_value(json_object_get(jo, "val_data"));
        const char *keys[3] = {"model_name", "pretrained", "language_code"};
        char **dst[3] = {&r->tr->model_name, &r->tr->pretrained, &r->tr->language};
        for (int k = 0; k < 3; k++) {
            const char *v = json_string_value(json_object_get(jo, keys[k]));
            if (v) { free(*dst[k]); *dst[k] = cb_xstrdup(v); }
        }
        o->val_data = vd;  /* lives in *state */
        r->run_dir = dir_of(resume);
        r->src_dir = cb_xstrdup(resume);
    }
    /* options */
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

    /* data */
    if (load_data(r->data_dir, &r->queries, &r->coll, &r->trip, err)) return -1;
    r->n_triplets = r->trip.n;

    /* model and configuration: the base's settings, then the user's */
    /* the device: --device, else a GPU if there is one (n_gpus 0: the CPU);
     * "auto" says which only when it takes a GPU or was asked for by name */
    const char *spec = o->device ? o->device : r->tr->n_gpus == 0 ? "cpu" : "auto";
    cb_err why = {{0}};
    if (!(r->dev = ops_open(spec, o->precision, &why))) return cb_err_set(err, "%s", why.msg);
    if (strcmp(r->dev->kind, "cpu") || (o->device && !strcmp(o->device, "auto")))
        fprintf(stderr, "colbert: training on %s%s%s\n", r->dev->desc, why.msg[0] ? "; " : "", why.msg);
    colmodel m;
    const char *from = resume ? resume : r->tr->pretrained;
    if (colmodel_load(&m, r->dev, from, o->dim, o->seed, err)) {
        cb_err_prefix(err, "model %s", from);
        return -1;
    }
    r->cc = m.cc;
    if (!m.is_colbert) r->cc.doc_maxlen = 256;   /* RAGTrainer's default for a new model */
    if (m.is_colbert && o->dim && o->dim != m.cc.dim) {
        cb_err_set(err, "%s is a ColBERT checkpoint of dim %d; --dim %d cannot change it (leave --dim out "
                   "to fine-tune, or start from the plain encoder)", m.dir, m.cc.dim, o->dim);
        colmodel_free(&m);
        return -1;
    }
    if (o->doc_maxlen) r->cc.doc_maxlen = o->doc_maxlen;
    if (o->query_maxlen) r->cc.query_maxlen = o->query_maxlen;
    if (o->relu >= 0) r->cc.relu = o->relu;
    int maxpos = m.bert.cfg.max_position_embeddings;
    if (r->cc.doc_maxlen > maxpos || r->cc.query_maxlen > maxpos) {
        cb_err_set(err, "doc_maxlen %d / query_maxlen %d exceed the %d positions of %s", r->cc.doc_maxlen,
                   r->cc.query_maxlen, maxpos, m.dir);
        colmodel_free(&m);
        return -1;
    }
    if (!resume) {
        r->src_dir = cb_xstrdup(m.dir);
        if (m.metadata) r->base_meta = cb_xstrdup(m.metadata);
        if (m.is_colbert)
            fprintf(stderr, "colbert: fine-tuning the ColBERT checkpoint %s (dim %d, query_maxlen %d, "
                    "doc_maxlen %d)\n", m.dir, r->cc.dim, r->cc.query_maxlen, r->cc.doc_maxlen);
        else
            fprintf(stderr, "colbert: a new ColBERT on the encoder %s (dim %d, linear ~ N(0, %g))\n", m.dir,
                    r->cc.dim, m.bert.cfg.initializer_range);
    } else {
        if (m.metadata) r->base_meta = cb_xstrdup(m.metadata);
    }
    r->tok = m.tok;
    m.tok = NULL;
    if (colbert_vocab_init(&r->vocab, r->tok, err)) { colmodel_free(&m); return -1; }

    /* validation split */
    int64_t *vq = NULL;
    int nvq = 0;
    data_texts vqs = {0}, vcs = {0};
    data_triples vts = {0};
    uint8_t *held = cb_xcalloc(r->trip.n ? r->trip.n : 1, 1);
    if (o->val_data) {
        if (load_data(o->val_data, &vqs, &vcs, &vts, err)) {
            cb_err_prefix(err, "validation data");
            free(held);
            colmodel_free(&m);
            return -1;
        }
    } else if (o->val_fraction > 0 && o->val_queries > 0) {
        /* distinct query ids of the triples, ordered by a seeded hash */
        int64_t *ids = cb_xmalloc(r->trip.n * sizeof(int64_t));
        size_t nd = 0;
        for (size_t i = 0; i < r->trip.n; i++) ids[nd++] = r->trip.qids[i];
        uint64_t *key = cb_xmalloc(nd * 2 * sizeof(uint64_t));
        for (size_t i = 0; i < nd; i++) {
            key[2 * i] = mix64((uint64_t)ids[i] ^ mix64(o->seed ^ 0x76616cULL));
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
            nvq = (int)(o->val_fraction * (double)nu + 0.5);
            if (nvq < 1) nvq = 1;
            if (nvq > o->val_queries) nvq = o->val_queries;
            vq = cb_xmalloc((size_t)nvq * sizeof(int64_t));
            for (int i = 0; i < nvq; i++) vq[i] = (int64_t)key[2 * i + 1];
            for (size_t i = 0; i < r->trip.n; i++)
                for (int k = 0; k < nvq; k++)
                    if (r->trip.qids[i] == vq[k]) { held[i] = 1; break; }
        }
        free(key);
        free(ids);
    }
    r->n_train = 0;
    r->train_idx = cb_xmalloc((r->trip.n ? r->trip.n : 1) * sizeof(uint32_t));
    for (size_t i = 0; i < r->trip.n; i++)
        if (!held[i]) r->train_idx[r->n_train++] = (uint32_t)i;
    free(held);
    if (r->n_train < (size_t)o->bsize) {
        cb_err_set(err, "%s: %zu training triples%s, fewer than one batch of %d (HINT: lower --batch-size to "
                   "%zu or less, or prepare more data)", r->data_dir, r->n_train,
                   nvq ? " after holding out the validation queries" : "", o->bsize, r->n_train ? r->n_train : 1);
        free(vq);
        data_texts_free(&vqs); data_texts_free(&vcs); data_triples_free(&vts);
        colmodel_free(&m);
        return -1;
    }
    r->spe = (long)(r->n_train / (size_t)o->bsize);
    r->total = r->spe * o->epochs < o->maxsteps ? r->spe * o->epochs : o->maxsteps;
    long per = (long)(r->n_triplets / (size_t)o->bsize);
    if (o->warmup < 0) o->warmup = (long)((double)per * 0.1);
    if (o->save_every <= 0) o->save_every = per / 10 > 0 ? per / 10 : 1;

    /* the step (takes over the encoder) */
    step_config sc = {.cc = r->cc, .lc = {.nway = NWAY, .use_ib_negatives = o->use_ib_negatives,
                                          .distillation_alpha = 1.0f, .accumsteps = o->accumsteps,
                                          .contrastive = o->contrastive},
                      .bsize = o->bsize, .lr = o->lr, .warmup = o->warmup, .maxsteps = o->maxsteps,
                      .dropout = o->dropout, .seed = o->seed};
    int rc = step_init(&r->s, &m.bert, r->tok, m.linear, o->seed, &sc, err);
    colmodel_free(&m);
    if (rc) { free(vq); data_texts_free(&vqs); data_texts_free(&vcs); data_triples_free(&vts); return -1; }
    r->s_ready = 1;

    if (o->val_data) {
        int64_t *ids = cb_xmalloc((vts.n ? vts.n : 1) * sizeof(int64_t));
        for (size_t i = 0; i < vts.n; i++) {
            int seen = 0;
            for (int k = 0; k < nvq && !seen; k++) seen = ids[k] == vts.qids[i];
            if (!seen && nvq < o->val_queries) ids[nvq++] = vts.qids[i];
        }
        if (nvq) val_build(r, &vqs, &vcs, &vts, ids, nvq);
        free(ids);
    } else if (nvq) {
        val_build(r, &r->queries, &r->coll, &r->trip, vq, nvq);
    }
    r->has_val = nvq > 0 && r->val.nt > 0;
    free(vq);
    data_texts_free(&vqs); data_texts_free(&vcs); data_triples_free(&vts);

    /* batch buffers */
    r->mq = o->bsize / o->accumsteps;
    r->q_ids = cb_xmalloc((size_t)r->mq * r->cc.query_maxlen * sizeof(int32_t));
    r->q_mask = cb_xmalloc((size_t)r->mq * r->cc.query_maxlen);
    r->d_ids = cb_xmalloc((size_t)r->mq * NWAY * r->cc.doc_maxlen * sizeof(int32_t));
    r->d_len = cb_xmalloc((size_t)r->mq * NWAY * sizeof(int));
    if (r->trip.scores && !o->contrastive) r->teacher = cb_xmalloc((size_t)r->mq * NWAY * sizeof(float));
    if (r->trip.scores && o->contrastive && !o->quiet)
        fprintf(stderr, "colbert: note: --loss contrastive does not use the triples' teacher scores\n");
    r->order = cb_xmalloc(r->n_train * sizeof(uint32_t));
    r->order_epoch = -1;
    r->loss_hist = cb_xcalloc((size_t)r->total, sizeof(float));
    r->lr_hist = cb_xcalloc((size_t)r->total, sizeof(float));

    if (!resume) {
        char *out = cb_path_join(o->output_dir, r->tr->model_name);
        r->run_dir = out;
    }
    if (mkdirs(r->run_dir, err)) return -1;
    clean_run_dir(r->run_dir);
    if (resume && load_state(r, resume, *state, err)) return -1;
    return open_log(r, step_count(&r->s), err);
}

/* ---- the loop ------------------------------------------------------------ */

static void fmt_time(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e8) { snprintf(buf, n, "?"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

int trainer_train(trainer *tr, const train_opts *opts, cb_err *err) {
    run r;
    memset(&r, 0, sizeof r);
    r.tr = tr;
    r.o = *opts;
    if (opts->data_dir) r.data_dir = cb_xstrdup(opts->data_dir);
    else if (tr->data_dir) r.data_dir = cb_xstrdup(tr->data_dir);
    if (r.data_dir && !r.o.resume) {
        char *abs = realpath(r.data_dir, NULL);
        if (abs) { free(r.data_dir); r.data_dir = abs; }
    }
    json_t *state = NULL;
    int rc = setup(&r, &state, err);
    if (rc) {
        json_decref(state);
        run_free(&r);
        return TRAIN_ERROR;
    }
    step_state *s = &r.s;
    train_opts *o = &r.o;
    long start = step_count(s);
    fprintf(stderr, "colbert: training %s: %zu triples (%zu for training, %d validation queries), batch %d x "
            "%d micro-batches, %ld steps (%ld per epoch), warmup %ld, save every %ld, lr %g, %.1f GiB\n",
            tr->model_name, r.n_triplets, r.n_train, r.has_val ? r.val.nq : 0, r.mq, o->accumsteps, r.total,
            r.spe, o->warmup, o->save_every, o->lr, (double)s->bytes / (1 << 30));
    if (start) fprintf(stderr, "colbert: resuming at step %ld from %s\n", start, o->resume);

    stop_requested = 0;
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    int tty = r.tty = isatty(2) && !o->quiet;
    double t0 = cb_now(), last_draw = 0, alpha = 0.02;
    int interrupted = 0;
    while (step_count(s) < r.total) {
        if (stop_requested) { interrupted = 1; break; }
        long g = step_count(s);
        double loss = 0;
        loss_parts lp, sum = {0, 0};
        for (int a = 0; a < o->accumsteps; a++) {
            step_batch b;
            make_batch(&r, g, a, &b);
            loss += step_micro(s, &b, &lp);
            sum.main += lp.main / o->accumsteps;
            sum.ib += lp.ib / o->accumsteps;
        }
        double lr;
        float gn = step_update(s, &lr);
        r.ema = step_count(s) == 1 ? loss : (1 - alpha) * r.ema + alpha * loss;
        r.loss_hist[g] = (float)loss;
        r.lr_hist[g] = (float)lr;
        double now = cb_now(), el = now - t0;
        double rate = (double)(step_count(s) - start) * o->bsize / (el > 0 ? el : 1e-9);
        fprintf(r.log, "{\"step\":%ld,\"epoch\":%ld,\"loss\":%.7g,\"loss_main\":%.7g,\"loss_ib\":%.7g,"
                "\"loss_avg\":%.7g,\"lr\":%.7g,\"grad_norm\":%.7g,\"triplets_per_s\":%.4g,\"elapsed_s\":%.3f}\n",
                step_count(s), g / r.spe + 1, loss, (double)sum.main, (double)sum.ib, r.ema, lr, (double)gn, rate, el);
        fflush(r.log);
        if (!o->quiet && (tty || now - last_draw >= 10 || step_count(s) == r.total || step_count(s) == start + 1)) {
            char eta[32], ela[32];
            fmt_time(eta, sizeof eta, (double)(r.total - step_count(s)) * o->bsize / rate);
            fmt_time(ela, sizeof ela, el);
            int w = 20, fill = (int)((double)w * step_count(s) / r.total);
            char bar[32];
            for (int i = 0; i < w; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
            bar[w] = 0;
            fprintf(stderr, "%strain %ld/%ld [%s] %3d%% loss %.4f lr %.3g %.1f triplets/s %s ETA %s%s", tty ? "\r\033[K" : "",
                    step_count(s), r.total, bar, (int)(100.0 * step_count(s) / r.total), r.ema, lr, rate, ela, eta, tty ? "" : "\n");
            last_draw = now;
        }
        if (step_count(s) % o->save_every == 0 || step_count(s) == r.total) {
            if (save_checkpoint(&r, 1, err)) { rc = -1; break; }
        }
    }
    if (tty) fputc('\n', stderr);
    if (!rc && interrupted) {
        if (step_count(s) > start || !o->resume) {
            if (step_count(s) > 0 && save_checkpoint(&r, 0, err)) rc = -1;
        } else {
            free(tr->last);
            tr->last = cb_xstrdup(o->resume);
        }
        if (!rc)
            fprintf(stderr, "colbert: interrupted at step %ld/%ld; continue with --resume %s\n", step_count(s), r.total,
                    tr->last ? tr->last : "(nothing saved yet)");
    }
    if (!rc && !interrupted && !tr->best) {
        /* resumed at the end: nothing new to save */
        int b = best_index(&r);
        if (b >= 0) {
            char *name = step_name(r.hist[b].step);
            tr->best = cb_path_join(r.run_dir, name);
            free(name);
        }
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (!rc && !interrupted)
        fprintf(stderr, "colbert: done: %ld steps in %.1f s; best checkpoint %s\n", step_count(s) - start, cb_now() - t0,
                tr->best ? tr->best : "(none)");
    json_decref(state);
    run_free(&r);
    if (rc) return TRAIN_ERROR;
    return interrupted ? TRAIN_INTERRUPTED : TRAIN_OK;
}
