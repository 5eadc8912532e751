/* train.h: a ColBERT training run end to end (RAGatouille's RAGTrainer and
 * the colbert-ai training loop under it, ../shared/SPEC.md sections 1, 5, 6).
 *
 *   trainer *t = cb_trainer_new("my-colbert", "bert-base-uncased", "en", -1, &err);
 *   cb_trainer_prepare_data(t, files, 1, NULL, 0, "data/", NULL, &err); // optional
 *   train_opts o; cb_train_opts_default(&o);                             // RAGTrainer.train's defaults
 *   cb_trainer_train(t, &o, &err);
 *   puts(cb_trainer_best_path(t));
 *   cb_trainer_free(t);
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
 *   - schedule: linear warmup over `warmup` steps, then linear decay to 0 at
 *     the run's last step (step.h); warmup "auto" = 10% of the run's steps.
 *     **beyond**: RAGatouille computes warmup "auto" = int(n_triplets //
 *     bsize * 0.1) and decays to 0 at maxsteps, whatever the run's length
 *     (a 150-step run then never leaves warmup); ragatouille_schedule = 1
 *     gives exactly that (and its save_every).
 *   - checkpoints: every save_every steps (auto: a fifth of the run,
 *     rounded up; RAGatouille's: max(1, n_triplets // bsize // 10)) and at
 *     the end, as RUN/step-NNNNNN (RUN = output_dir/model_name):
 *     a Hugging Face model directory (cb_colmodel_save) plus the training
 *     state (training_state.safetensors: AdamW m and v; training_state.json:
 *     step, dropout stream, options, validation history). Built under a
 *     dot-name and renamed when complete, so a killed run never leaves a
 *     partial step-* directory. The newest keep_checkpoints are kept, and
 *     the best one always.
 *   - validation, by retrieval (train_val.c): a held-out slice of the
 *     queries (val_fraction of them, at most val_queries; their triples
 *     leave the training set), the triples of val_data, or a BEIR split
 *     (val_beir, val_split; graded qrels). At each checkpoint the model
 *     ranks the validation queries by exact MaxSim among val_docs
 *     documents (the judged ones plus a seeded sample of the collection;
 *     all of it when smaller), encoded once per checkpoint in chunks, and
 *     scores nDCG@10 and MRR@10. Best = highest nDCG@10; RUN/best is a
 *     link to it. The earlier measures are logged beside: the nway loss of
 *     the validation triples and MRR@10 among each query's own candidates.
 *     Without validation (fewer than 10 queries) the last checkpoint is
 *     the best.
 *   - resume: from any step-* directory: parameters, AdamW moments, step,
 *     schedule, data position and dropout stream come back, so the run
 *     ends bit-identical to an uninterrupted one. SIGINT / SIGTERM finish
 *     the current step, write a checkpoint and return TRAIN_INTERRUPTED.
 *   - data parallel (comm.h; `mpirun -np N colbert train ...`): every rank
 *     loads the data and the model; step g's micro-batch a is split into N
 *     consecutive slices, rank r tokenizes and runs the r-th (step.h: the
 *     gradients are summed over the ranks in one allreduce, in-batch
 *     negatives over the global batch with ib_local 0). N must divide
 *     bsize / accumsteps. Rank 0 alone writes the checkpoints, the log and
 *     the curve; validation splits the documents over the ranks; the ranks
 *     agree at every step whether a stop signal came, so all stop at the
 *     same step. A checkpoint does not depend on N: --resume takes any N
 *     that divides the batch (one process included). The data, the model
 *     and the run directory must be at the same path on every rank (one
 *     machine, or a shared filesystem).
 *   - seeing it: RUN/train.jsonl (a line per step, a line per checkpoint),
 *     RUN/curve.svg and, with cairo, RUN/curve.png (loss,
 *     smoothed loss, learning rate, validation scores per checkpoint, the
 *     best marked), a progress line on stderr.
 */
#ifndef CB_TRAIN_H
#define CB_TRAIN_H
#include <stdint.h>
#include "comm.h"
#include "common.h"
#include "ops.h"
#include "prepare.h"

typedef struct train_opts {
    const char *data_dir;       /* the three training files (or set by cb_trainer_prepare_data) */
    const char *output_dir;     /* "checkpoints": checkpoints go to output_dir/model_name */
    int bsize;                  /* 32 */
    int nbits;                  /* 2 (written to the metadata, for indexing) */
    long maxsteps;              /* 500000 */
    double lr;                  /* 5e-6 */
    int dim;                    /* 0: 128 for a new model, the checkpoint's in fine-tune */
    int doc_maxlen;             /* 0: 256 for a new model, the checkpoint's in fine-tune */
    int query_maxlen;           /* 0: 32 / the checkpoint's */
    long warmup;                /* -1: auto (10% of the run's steps) */
    int ragatouille_schedule;   /* 1: RAGatouille's warmup / save_every / decay arithmetic */
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
    const char *val_beir;       /* a BEIR directory to validate on (with val_split) instead */
    const char *val_split;      /* "dev" */
    double val_fraction;        /* 0.05 */
    int val_queries;            /* 128: at most this many held-out queries */
    int val_candidates;         /* 16: at most this many candidates per query (earlier measures) */
    int val_docs;               /* 2000: documents the validation queries are ranked among */
    const char *resume;         /* a step-* directory to continue from */
    int overwrite;              /* 1: replace an earlier run in output_dir/model_name (else refused) */
    int quiet;                  /* no progress line */
    const char *device;         /* NULL: a GPU if any (the trainer's n_gpus 0: the CPU); else
                                   cb_ops_open's "auto", "cpu", "cuda", "cuda:N" */
    ops_precision precision;    /* OPS_BF16 (default): bf16 matmuls on a GPU; the CPU is fp32 */
    int ib_local;               /* 1: in-batch negatives among each rank's own documents (colbert-ai's
                                 * per-GPU loss, --ib-scope local); 0: the global batch's (global) */
    cb_comm *comm;              /* the ranks of a data-parallel run; NULL: cb_comm_world() */
} train_opts;

void cb_train_opts_default(train_opts *o);

enum { TRAIN_OK = 0, TRAIN_ERROR = -1, TRAIN_INTERRUPTED = 1 };

typedef struct trainer trainer;

/* model_name names the run (its directory under output_dir); pretrained is
 * a ColBERT checkpoint or a BERT-family encoder (directory or hub id in the
 * local HF cache). language_code is kept in the metadata; n_gpus: -1 all
 * (none in this CPU build), 0 CPU; more than 0 warns and uses the CPU.
 * Nothing is loaded yet. Returns NULL + err on a bad argument. */
trainer *cb_trainer_new(const char *model_name, const char *pretrained, const char *language_code, int n_gpus,
                     cb_err *err);
void cb_trainer_free(trainer *t);

/* RAGTrainer.prepare_training_data: records (pairs, labeled pairs or
 * triplets, prepare.h's formats) and optional extra documents into the
 * three files in data_out; later cb_trainer_train calls use them when
 * opts->data_dir is NULL. po NULL: prepare's defaults (random negatives;
 * pass a miner in po for hard negatives). */
int cb_trainer_prepare_data(trainer *t, const char *const *train_files, int n_train,
                         const char *const *corpus_files, int n_corpus, const char *data_out,
                         const prepare_opts *po, cb_err *err);

/* Train. Returns TRAIN_OK, TRAIN_INTERRUPTED (a resumable checkpoint was
 * written; its path is cb_trainer_last_path) or TRAIN_ERROR with err. */
int cb_trainer_train(trainer *t, const train_opts *o, cb_err *err);

/* The best checkpoint's directory after cb_trainer_train, or NULL. */
const char *cb_trainer_best_path(const trainer *t);
/* The last checkpoint written, or NULL. */
const char *cb_trainer_last_path(const trainer *t);

/* Ask a running cb_trainer_train (any thread or a signal handler) to stop
 * after the current step and write a resumable checkpoint. */
void cb_train_request_stop(void);
/* The signal that stopped the last run (SIGINT for cb_train_request_stop), or 0. */
int cb_train_stop_signal(void);
#endif
