/* train_run.h: the state of one training run, shared by the files of
 * train.h's implementation (internal; not part of the public API):
 *   train.c        the public calls, set-up, batches and the step loop
 *   train_ckpt.c   checkpoints, training state, resume, the JSONL log
 *   train_val.c    validation
 *   train_curve.c  the loss curve (SVG)
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
#define STATE_JSON "training_state.json"
#define STATE_ST "training_state.safetensors"
#define NWAY 2

struct trainer {
    char *model_name, *pretrained, *language;
    int n_gpus;
    char *data_dir;             /* from trainer_prepare_data */
    char *best, *last;
};

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


void train_run_free(run *r);
/* Load and check the three training files of dir. */
int train_load_data(const char *dir, data_texts *q, data_texts *c, data_triples *t, cb_err *err);

/* train_val.c */
/* Validation set: the queries qsel (n ids) with their triples from t. */
void train_val_build(run *r, const data_texts *q, const data_texts *c, const data_triples *t, const int64_t *qsel,
                     int n);
/* Validation loss (mean nway cross-entropy, positive first) and MRR@10. */
void train_validate(run *r, double *loss_out, double *mrr_out);

/* train_ckpt.c */
/* Write RUN/step-N (model, training state, validation) atomically. */
int train_save_checkpoint(run *r, int validate_it, cb_err *err);
/* Restore options from a checkpoint's training_state.json (*state keeps it). */
int train_resume_opts(run *r, const char *dir, json_t **state, cb_err *err);
/* Restore the optimizer state and history of a checkpoint. */
int train_load_state(run *r, const char *dir, json_t *j, cb_err *err);
/* Open the JSONL log; on resume keep its lines up to step `upto`. */
int train_open_log(run *r, long upto, cb_err *err);
/* "step-%06ld" */
char *train_step_name(long step);
/* Index into hist of the best validated checkpoint (or the latest), -1 if none. */
int train_best_index(const run *r);
/* Remove the leftovers of a killed run (partial and half-deleted checkpoints). */
void train_clean_run_dir(const char *dir);
char *train_fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
void train_remove_tree(const char *dir);
int train_mkdirs(const char *path, cb_err *err);
int train_write_json(const char *path, json_t *j, cb_err *err);
char *train_dir_of(const char *path);

/* train_curve.c */
/* RUN/curve.svg: the loss and learning rate so far. */
void train_write_curve(const run *r);
#endif
