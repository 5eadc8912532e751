/* train_run.h: the state of one training run, shared by the files of
 * train.h's implementation (internal; not part of the public API). From
 * the top down (each calls only those below it):
 *   train.c        the public calls, set-up, batches and the step loop; at
 *                  each checkpoint: validate, save (handed the scores), curve
 *   train_val.c    validation by retrieval
 *   train_ckpt.c   checkpoints, training state, resume, the JSONL log
 *   train_curve.c  the run's picture (curve.svg; curve.png with cairo)
 *   train_hist.c   the checkpoints' history: scores, the best, their JSON
 *   train_rundir.c the run directory: names, lock, claim, clean-up
 */
#ifndef CB_TRAIN_RUN_H
#define CB_TRAIN_RUN_H
#include "train.h"
#include "colmodel.h"
#include "data.h"
#include "step.h"

#include <jansson.h>
#include <stdio.h>

#define QF "queries.train.colbert.tsv"
#define CF "corpus.train.colbert.tsv"
#define TF "triples.train.colbert.jsonl"
#define MANIFEST CB_PREPARE_MANIFEST
#define STATE_JSON "training_state.json"
#define STATE_ST "training_state.safetensors"
#define NWAY 2

/* The smoothed loss, one definition for the progress line, train.jsonl's
 * loss_avg and the curve: an exponential moving average with decay
 * TRAIN_SMOOTH (about the last 20 steps), bias-corrected as Adam's moments
 * are (ema starts at 0; after t steps it is divided by 1 - decay^t), so
 * the first steps are not pulled towards 0 or towards the first loss. */
#define TRAIN_SMOOTH 0.95
static inline double cb_train_smoothed(double ema, long t) {
    double c = 1.0;
    for (long i = 0; i < t && c > 1e-12; i++) c *= TRAIN_SMOOTH;
    return t > 0 ? ema / (1.0 - c) : 0.0;
}

struct trainer {
    char *model_name, *pretrained, *language;
    int n_gpus;
    char *data_dir;             /* from cb_trainer_prepare_data */
    char *best, *last;
};

/* The scores of one validation; NAN where not measured. */
typedef struct val_scores {
    double ndcg10, mrr10;       /* retrieval in the validation corpus: picks the best */
    double loss;                /* mean nway cross-entropy of the validation triples */
    double cand_mrr10;          /* MRR@10 of the positives among each query's own candidates */
} val_scores;

typedef struct ckpt_info {
    long step;
    val_scores v;
} ckpt_info;

/* The checkpoints of the run so far, oldest first. */
typedef struct ckpt_hist {
    ckpt_info *at;              /* [n] */
    int n, cap;
} ckpt_hist;

/* A validation set (train_val.c): queries with judged documents, a corpus
 * to rank, and (from training triples) the triples for the earlier
 * measures. */
typedef struct val_set {
    int nq;                     /* queries */
    int32_t *q_ids;             /* [nq, Lq] */
    uint8_t *q_mask;            /* [nq, Lq] */
    int *q_len;                 /* [nq] = Lq */
    int nd;                     /* documents of the validation corpus */
    int32_t *d_ids;             /* packed */
    int *d_len;                 /* [nd] */
    size_t *d_off;              /* [nd + 1] token offsets */
    uint8_t *d_keep;            /* [tokens] */
    uint32_t *tie;              /* [nd] equal scores: the lower first (colbert eval's order), or NULL */
    size_t *rel_off;            /* [nq + 1] judgements of query q: rel_off[q] .. rel_off[q+1] */
    uint32_t *rel_doc;          /*   document index, sorted within a query */
    int32_t *rel_grade;         /*   grade (> 0 relevant) */
    int nt;                     /* validation triples (0 for a BEIR split) */
    int *t_q, *t_d;             /* [nt], [nt, nway]: query, document indices */
    int *c_off, *c_doc;         /* [nq + 1], candidates: documents of each query's triples */
    uint8_t *c_pos;             /* a positive of its query */
    char source[512];           /* what it is, for the log */
} val_set;

typedef struct run {
    trainer *tr;
    train_opts o;               /* resolved */
    cb_comm *comm;              /* never NULL; rank 0 writes the files */
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
    ckpt_hist hist;
    double ema;                 /* raw exponential average of the loss (train_smooth) */
    double t_val;               /* seconds spent validating */
    float *loss_hist, *avg_hist, *lr_hist;  /* [total] per step: loss, smoothed loss, rate (the curve) */
    long decay_end;             /* the learning rate reaches 0 here */
    FILE *log;
    int tty;                    /* stderr is a terminal: redraw the progress line */
    /* batch buffers */
    int mq;                     /* queries per micro-batch */
    int32_t *q_ids, *d_ids;
    uint8_t *q_mask;
    int *d_len;
    float *teacher;
    int lock_fd;                /* RUN/.lock, held (flock) while the run writes there; 0: none */
} run;


void cb_train_run_free(run *r);
/* Load and check the three training files of dir. */
int cb_train_load_data(const char *dir, data_texts *q, data_texts *c, data_triples *t, cb_err *err);

/* train_val.c */
/* The validation set of held-out queries qsel (n ids): their positives in
 * the triples t, searched among the triples' documents and a sample of the
 * collection c (val_docs in all). */
int cb_train_val_build(run *r, const data_texts *q, const data_texts *c, const data_triples *t, const int64_t *qsel,
                    int n, cb_err *err);
/* The validation set of a BEIR split (graded qrels), searched among its
 * judged documents and a sample of its corpus (val_docs in all). */
int cb_train_val_build_beir(run *r, const char *dir, const char *split, cb_err *err);
void cb_train_val_free(val_set *v);
/* Score the model being trained on r->val. */
int cb_train_validate(run *r, val_scores *out, cb_err *err);

/* train_ckpt.c */
/* Write RUN/step-N (model, training state, the scores vs of a validation
 * that took val_s seconds; NAN scores: not validated) atomically, add it to
 * the history, point RUN/best at the best and prune. Every rank calls it;
 * rank 0 writes. */
int cb_train_save_checkpoint(run *r, const val_scores *vs, double val_s, cb_err *err);
/* Restore options from a checkpoint's training_state.json (*state keeps it). */
int cb_train_resume_opts(run *r, const char *dir, json_t **state, cb_err *err);
/* Restore the optimizer state and history of a checkpoint. */
int cb_train_load_state(run *r, const char *dir, json_t *j, cb_err *err);
/* Open the JSONL log; on resume keep its lines up to step `upto`. */
int cb_train_open_log(run *r, long upto, cb_err *err);

/* train_curve.c */
/* RUN/curve.svg and RUN/curve.png (with cairo): loss, smoothed loss,
 * learning rate, validation per checkpoint, the best marked. -1 and err
 * when a picture could not be drawn (out of memory) or written; the caller
 * warns: the picture is not worth stopping a run for. */
int cb_train_write_curve(const run *r, cb_err *err);

/* train_hist.c */
/* Append a checkpoint; -1 and err when out of memory. */
int cb_train_hist_push(ckpt_hist *h, long step, const val_scores *v, cb_err *err);
void cb_train_hist_free(ckpt_hist *h);
/* Index of the best validated checkpoint (highest nDCG@10, then highest
 * MRR@10, then the latest), else of the latest; -1 if none. */
int cb_train_hist_best(const ckpt_hist *h);
/* [{"step": N, "val_ndcg10": ...}, ...] (training_state.json's history). */
json_t *cb_train_hist_json(const ckpt_hist *h);
/* Append the checkpoints of such an array; -1 and err when out of memory. */
int cb_train_hist_load(ckpt_hist *h, json_t *a, cb_err *err);
/* The measured scores of v into the object o ("val_ndcg10", ...; NAN ones
 * left out). */
void cb_train_scores_put(json_t *o, const val_scores *v);

/* train_rundir.c */
/* "step-%06ld" (caller frees); NULL and err when out of memory. */
char *cb_train_step_name(long step, cb_err *err);
/* A new string printf would write (caller frees); NULL and err "out of
 * memory" when it cannot be allocated. */
char *cb_train_fmt(cb_err *err, const char *f, ...) __attribute__((format(printf, 2, 3)));
/* The directory part of path ("." when it has none; caller frees); NULL and
 * err when out of memory. */
char *cb_train_dir_of(const char *path, cb_err *err);
/* Remove the leftovers of a killed run (partial and half-deleted checkpoints). */
void cb_train_clean_run_dir(const char *dir);
/* The run directory (r->run_dir, else output_dir/model_name) for this run:
 * refused when another process holds its lock (the error names it: pid,
 * host, start time), or, for a new run (not --resume), when it holds
 * checkpoints of an earlier run, finished or not, unless o.overwrite.
 * take == 0 only checks (before anything is loaded); take == 1 (the
 * directory exists) takes the lock into r->lock_fd, kept until
 * cb_train_run_free, and with overwrite removes the earlier run's
 * checkpoints, best, train.jsonl and curve. Under MPI only the process
 * that writes the run directory (rank 0) calls it. */
int cb_train_claim_run_dir(run *r, int take, cb_err *err);
/* Remove RUN/.lock and let it go (cb_train_run_free calls it). */
void cb_train_release_run_dir(run *r);
#endif
