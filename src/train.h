/* train.h: a ColBERT training run end to end (RAGatouille's RAGTrainer and
 * the colbert-ai training loop under it, ../shared/SPEC.md sections 1, 5, 6).
 *
 *   trainer *t = trainer_new("my-colbert", "bert-base-uncased", "en", -1, &err);
 *   trainer_prepare_data(t, files, 1, NULL, 0, "data/", NULL, &err); // optional
 *   train_opts o; train_opts_default(&o);                             // RAGTrainer.train's defaults
 *   trainer_train(t, &o, &err);
 *   puts(trainer_best_path(t));
 *   trainer_free(t);
 *
 * The run:
 *   - data: DIR/queries.train.colbert.tsv, corpus.train.colbert.tsv and
 *     triples.train.colbert.jsonl (colbert prepare's or colbert-ai's files;
 *     nway 2: a query, its positive, one negative). A batch is bsize
 *     consecutive triples of the file (a last partial batch is dropped, as
 *     colbert-ai's LazyBatcher does); epoch 1 reads the file in order, each
 *     later epoch in a permutation seeded by (seed, epoch). Steps =
 *     min(maxsteps, epochs * (triples / bsize)).
 *   - model: a ColBERT checkpoint (fine-tune: its linear.weight and its
 *     artifact.metadata settings are kept; an option the user sets
 *     overrides a setting, a different dim is an error) or a BERT-family
 *     encoder (a new ColBERT, linear ~ N(0, initializer_range)).
 *   - schedule: warmup "auto" = int(n_triplets // bsize * 0.1), linear
 *     warmup then linear decay to 0 at maxsteps (step.h).
 *   - checkpoints: every save_every = max(1, n_triplets // bsize // 10)
 *     steps and at the end, as RUN/step-NNNNNN (RUN = output_dir/model_name):
 *     a Hugging Face model directory (colmodel_save) plus the training
 *     state (training_state.safetensors: AdamW m and v; training_state.json:
 *     step, dropout stream, options, validation history). Built under a
 *     dot-name and renamed when complete, so a killed run never leaves a
 *     partial step-* directory. The newest keep_checkpoints are kept, and
 *     the best one always.
 *   - validation: a held-out slice of the queries (val_fraction of them,
 *     at most val_queries; their triples leave the training set) or the
 *     triples of val_data. Each checkpoint is scored: the loss over the
 *     validation triples and MRR@10 of each query's positives among its
 *     candidates (the documents of its triples). Best = highest MRR@10,
 *     then lowest loss; RUN/best is a link to it. Without validation
 *     (fewer than 10 queries) the last checkpoint is the best.
 *   - resume: from any step-* directory: parameters, AdamW moments, step,
 *     schedule, data position and dropout stream come back, so the run
 *     ends bit-identical to an uninterrupted one. SIGINT / SIGTERM finish
 *     the current step, write a checkpoint and return TRAIN_INTERRUPTED.
 *   - seeing it: RUN/train.jsonl (a line per step, a line per checkpoint),
 *     RUN/curve.svg (loss and learning rate), a progress line on stderr.
 */
#ifndef CB_TRAIN_H
#define CB_TRAIN_H
#include <stdint.h>
#include "common.h"
#include "ops.h"
#include "prepare.h"

typedef struct train_opts {
    const char *data_dir;       /* the three training files (or set by trainer_prepare_data) */
    const char *output_dir;     /* "checkpoints": checkpoints go to output_dir/model_name */
    int bsize;                  /* 32 */
    int nbits;                  /* 2 (written to the metadata, for indexing) */
    long maxsteps;              /* 500000 */
    double lr;                  /* 5e-6 */
    int dim;                    /* 0: 128 for a new model, the checkpoint's in fine-tune */
    int doc_maxlen;             /* 0: 256 for a new model, the checkpoint's in fine-tune */
    int query_maxlen;           /* 0: 32 / the checkpoint's */
    long warmup;                /* -1: auto */
    int accumsteps;             /* 1 */
    int use_ib_negatives;       /* 1 */
    int contrastive;            /* 0: colbert-ai's loss; 1: PyLate's Contrastive (--loss contrastive) */
    int relu;                   /* -1: off / the checkpoint's */
    int epochs;                 /* 1 */
    uint64_t seed;              /* 12345 (colbert-ai's) */
    int dropout;                /* 1: BERT's training-mode dropout */
    long save_every;            /* 0: auto */
    int keep_checkpoints;       /* -1: 3 newest (+ the best), or the resumed run's; 0: all */
    const char *val_data;       /* NULL: hold out queries of the training data */
    double val_fraction;        /* 0.05 */
    int val_queries;            /* 32: at most this many held-out queries */
    int val_candidates;         /* 16: at most this many candidates per query */
    const char *resume;         /* a step-* directory to continue from */
    int quiet;                  /* no progress line */
    const char *device;         /* NULL: a GPU if any (the trainer's n_gpus 0: the CPU); else
                                   ops_open's "auto", "cpu", "cuda", "cuda:N" */
    ops_precision precision;    /* OPS_BF16 (default): bf16 matmuls on a GPU; the CPU is fp32 */
} train_opts;

void train_opts_default(train_opts *o);

enum { TRAIN_OK = 0, TRAIN_ERROR = -1, TRAIN_INTERRUPTED = 1 };

typedef struct trainer trainer;

/* model_name names the run (its directory under output_dir); pretrained is
 * a ColBERT checkpoint or a BERT-family encoder (directory or hub id in the
 * local HF cache). language_code is kept in the metadata; n_gpus: -1 all
 * (none in this CPU build), 0 CPU; more than 0 warns and uses the CPU.
 * Nothing is loaded yet. Returns NULL + err on a bad argument. */
trainer *trainer_new(const char *model_name, const char *pretrained, const char *language_code, int n_gpus,
                     cb_err *err);
void trainer_free(trainer *t);

/* RAGTrainer.prepare_training_data: records (pairs, labeled pairs or
 * triplets, prepare.h's formats) and optional extra documents into the
 * three files in data_out; later trainer_train calls use them when
 * opts->data_dir is NULL. po NULL: prepare's defaults (random negatives;
 * pass a miner in po for hard negatives). */
int trainer_prepare_data(trainer *t, const char *const *train_files, int n_train,
                         const char *const *corpus_files, int n_corpus, const char *data_out,
                         const prepare_opts *po, cb_err *err);

/* Train. Returns TRAIN_OK, TRAIN_INTERRUPTED (a resumable checkpoint was
 * written; its path is trainer_last_path) or TRAIN_ERROR with err. */
int trainer_train(trainer *t, const train_opts *o, cb_err *err);

/* The best checkpoint's directory after trainer_train, or NULL. */
const char *trainer_best_path(const trainer *t);
/* The last checkpoint written, or NULL. */
const char *trainer_last_path(const trainer *t);

/* Ask a running trainer_train (any thread or a signal handler) to stop
 * after the current step and write a resumable checkpoint. */
void train_request_stop(void);
/* The signal that stopped the last run (SIGINT for train_request_stop), or 0. */
int train_stop_signal(void);
#endif
