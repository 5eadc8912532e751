/* step.h: one ColBERT training step, as colbert-ai's training loop does it.
 *
 * A step takes bsize triples (a query and its nway documents, positive
 * first), split into accumsteps micro-batches. For each micro-batch:
 *   - the queries ([CLS] [Q] ... [SEP] [MASK]..., query_maxlen each, the
 *     [MASK] padding under attention mask 0) and the documents ([CLS] [D]
 *     ... [SEP], unpadded) go through the encoder (backbone.h) in ONE packed forward pass;
 *   - the head projects, masks punctuation and L2-normalises every token;
 *   - MaxSim scores each query against its nway documents (and, with
 *     use_ib_negatives, every document of the micro-batch);
 *   - the loss (cross-entropy, + in-batch, or KL with teacher scores) divided
 *     by accumsteps is back-propagated; gradients add up.
 * Then cb_step_update clips the global gradient norm at 2.0, applies AdamW at
 * the scheduled learning rate (linear warmup, linear decay to 0 at maxsteps)
 * and zeroes the gradients.
 *
 * Data parallel (comm.h, N ranks): each rank holds the whole model and
 * runs 1/N of every micro-batch: rank r's micro-batch m is the r-th slice
 * of the one-process micro-batch m (train.c deals them out). The losses
 * are means over the global micro-batch (loss.h: each rank computes its
 * share), so one in-place allreduce (sum) of the gradient block in
 * cb_step_update gives every rank the one-process gradients. In-batch
 * negatives:
 *   - ib_global (--ib-scope global, the default): every rank's document
 *     vectors (with their lengths and keep masks) are gathered
 *     (allgatherv), each rank scores its queries against ALL documents of
 *     the global micro-batch, and the gradients of the gathered document
 *     vectors go back to the ranks that own them, summed over the ranks
 *     (reduce-scatter). N ranks compute what one process computes, up to
 *     the order of float sums.
 *   - local (--ib-scope local): each rank's queries meet its own documents
 *     only, colbert-ai's per-GPU loss under DistributedDataParallel.
 * Dropout masks are keyed by each sequence's position in the step's global
 * batch (ops.h), so N ranks drop what one process drops.
 *
 * Memory (llm.c style), all on the step's device: parameters (encoder +
 * linear) in one allocation, and gradients, AdamW m and v each one
 * allocation of the same layout; activations and every scratch buffer in
 * one allocation each, sized in cb_step_init for the largest micro-batch; the
 * batch is packed in one host staging area. Nothing is allocated in a step.
 *
 * Ownership: step owns its state. Nothing outside step.c reads or writes
 * the parameters, gradients, moments or activations: train.c, the tests
 * and the benchmarks go through cb_step_encode (eval-mode vectors), cb_step_get /
 * cb_step_set (host copies of a block, for checkpoints and tests) and the
 * step_* accessors.
 */
#ifndef CB_STEP_H
#define CB_STEP_H
#include <stddef.h>
#include <stdint.h>
#include "backbone.h"
#include "colbert.h"
#include "comm.h"
#include "loss.h"
#include "ops.h"

typedef struct step_config {
    colbert_config cc;          /* dim, query_maxlen, doc_maxlen, masks, relu */
    loss_config lc;             /* nway, use_ib_negatives, alpha, accumsteps */
    int bsize;                  /* queries per step, over all micro-batches and ranks */
    double lr;                  /* peak learning rate */
    long warmup, maxsteps;      /* schedule */
    int dropout;                /* 1: the encoder's training-mode dropout */
    uint64_t seed;              /* dropout masks derive from it and the step */
    cb_comm *comm;              /* the ranks sharing each batch; NULL: one process */
    int ib_local;               /* 1: --ib-scope local (colbert-ai's per-GPU in-batch negatives) */
} step_config;

/* One tokenized micro-batch (this rank's share of it). Documents q*nway ..
 * q*nway+nway-1 belong to query q, the positive first. Every rank passes
 * the same nq. */
typedef struct step_batch {
    int nq;
    const int32_t *q_ids;       /* [nq * query_maxlen] */
    const uint8_t *q_mask;      /* [nq * query_maxlen] attention mask */
    const int32_t *d_ids;       /* [sum d_len] packed */
    const int *d_len;           /* [nq * nway] each <= doc_maxlen */
    const float *teacher;       /* [nq * nway] teacher scores, or NULL */
} step_batch;

typedef struct step_state {
    /* read-only for callers */
    step_config c;
    int H, D, max_q;            /* hidden, dim, queries per micro-batch (this rank's) */
    size_t n;                   /* floats in each of params, grads, m, v */
    size_t bytes;               /* device bytes cb_step_init allocated */
    double t_fwd, t_bwd;        /* seconds in encoder forward / all backward, summed */
    double t_attn;              /* seconds of those in attention */
    double t_sim;               /* seconds in MaxSim and the loss (forward and backward) */
    double t_comm;              /* seconds in collectives (gathers, the gradient allreduce) */
    size_t comm_bytes;          /* bytes this rank sent into collectives, summed */
    /* private to step.c */
    ops_device *dev;
    backbone enc;               /* its tensors point into params */
    colbert_vocab vocab;        /* for the punctuation mask */
    float *params, *grads, *m, *v;  /* [dev] 4 allocations of n floats */
    float *linear, *g_linear;   /* [dev] [D, H] inside params, grads */
    long t;                     /* optimizer steps taken */
    int step_q;                 /* global queries of this step's micro-batches so far */
    cb_comm *comm;              /* never NULL (the serial one) */
    int gather;                 /* 1: ib scope global over more than one rank */
    backbone_acts acts;
    void *buf;                  /* [dev] one allocation for the rest */
    float *out, *proj, *norm;   /* [dev] [T, D], [T, D], [T] head */
    float *d_out, *d_hidden;    /* [dev] [T, D], [T, H] */
    float *scores, *d_scores;   /* [dev] [max_q, max_q * nway] */
    float *teacher;             /* [dev] [max_q * nway] */
    int32_t *argmax;            /* [dev] [max_q, max_q * nway, Lq] */
    int *d_off;                 /* [dev] [max_q * nway + 1] */
    uint8_t *keep;              /* [dev] [T] head keep */
    float *g_dv, *g_ddv;        /* [dev] [N * nd * Ld, D] gathered document vectors, their gradients */
    int *g_d_off;               /* [dev] [N * nd + 1] their offsets */
    uint8_t *g_keep;            /* [dev] [N * nd * Ld] their keep masks */
    ops_work sim;               /* MaxSim workspace */
    void *host;                 /* host staging, one allocation: */
    int32_t *h_ids;             /*   [T] packed queries then documents */
    int *h_seq_len;             /*   [max_q * (1 + nway)] */
    int *h_d_off;               /*   [max_q * nway + 1] */
    uint8_t *h_mask, *h_keep;   /*   [T] attention mask, head keep */
    uint64_t *h_seq_id;         /*   [max_q * (1 + nway)] dropout ids */
    int *h_g_len, *h_g_off;     /*   [N * nd], [N * nd + 1] gathered document lengths, offsets */
    uint8_t *h_g_keep;          /*   [N * nd * Ld] gathered keep masks */
    size_t *h_counts;           /*   [N] per-rank counts of a collective */
} step_state;

/* Take over a loaded encoder (on its device; its parameters move into the
 * step's allocation and the caller must not free it), the vocabulary's
 * ColBERT ids (the punctuation mask) and a projection:
 * linear [D, H] ([dev]) copied, or, when NULL, initialised from Normal(0,
 * initializer_range) with `linear_seed`. Sizes every buffer for
 * micro-batches of bsize / accumsteps / N queries (N ranks must divide
 * that). Returns 0 or -1 with err (a bad configuration, or out of memory). */
int cb_step_init(step_state *s, backbone *enc, const colbert_vocab *vocab, const float *linear,
              uint64_t linear_seed, const step_config *c, cb_err *err);
void cb_step_free(step_state *s);

/* Whether a step on device `dev` ("cpu", "auto", "cuda", "cuda:N", or an
 * open device's kind) can run over `ranks` processes. Data-parallel steps
 * pass host buffers to the MPI collectives (comm.h); a GPU's buffers are
 * device memory, and every rank would open the same GPU. Until a
 * multi-GPU path exists (NCCL, or host-staged copies with a GPU per rank),
 * cuda with ranks > 1 is refused: returns -1 with err, else 0. cb_step_init
 * checks it; train.c checks it before it opens the device. */
int cb_step_check_device(const char *dev, int ranks, cb_err *err);

/* Forward and backward of one micro-batch; gradients accumulate. Returns
 * the loss (already divided by accumsteps); parts gets its main and ib
 * terms when not NULL. With N ranks: this rank's share of them (their sum
 * over the ranks is the micro-batch's loss); every rank calls it together. */
float cb_step_micro(step_state *s, const step_batch *b, loss_parts *parts);

/* (N ranks: sum the gradients over the ranks,) clip, AdamW at the scheduled
 * rate, zero the gradients. Returns the gradient norm before clipping;
 * *lr gets the rate used (may be NULL). */
float cb_step_update(step_state *s, double *lr);

/* Eval mode (no dropout): the normalised ColBERT vectors of n packed
 * sequences (ids [sum len], attention mask [sum len] or NULL, head keep
 * [sum len] or NULL: rows with keep 0 come out zero) into out [sum len, D]
 * on the host. Runs in chunks that fit the step's buffers. */
void cb_step_encode(step_state *s, float *out, const int32_t *ids, const uint8_t *mask, const uint8_t *keep,
                 const int *len, int n);

/* The blocks of n floats (step_state.n): the encoder's parameters in the
 * layout of cb_backbone_named_tensors, then linear [D, H]. */
typedef enum { STEP_PARAMS, STEP_GRADS, STEP_ADAM_M, STEP_ADAM_V } step_block;
/* host[n] = the block / the block = host[n] */
void cb_step_get(const step_state *s, step_block which, float *host);
void cb_step_set(step_state *s, step_block which, const float *host);
/* Data parallel: check that every rank holds the same parameters (a hash
 * of them); -1 with err on every rank when not, or when a rank is out of
 * memory for the check. One process: 0. */
int cb_step_check_sync(step_state *s, cb_err *err);
/* Offset of linear in every block (= the encoder's parameter count). */
size_t cb_step_linear_offset(const step_state *s);
/* The encoder (its info, named tensors). */
const backbone *cb_step_backbone(const step_state *s);
/* Optimizer steps taken, and the running dropout seed; both are part of a
 * resumable state. */
long cb_step_count(const step_state *s);
uint64_t cb_step_dropout_state(const step_state *s);
void cb_step_restore(step_state *s, long t, uint64_t dropout_state);
#endif
