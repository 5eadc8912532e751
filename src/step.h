/* step.h: one ColBERT training step, as colbert-ai's training loop does it.
 *
 * A step takes bsize triples (a query and its nway documents, positive
 * first), split into accumsteps micro-batches. For each micro-batch:
 *   - the queries ([CLS] [Q] ... [SEP] [MASK]..., query_maxlen each, the
 *     [MASK] padding under attention mask 0) and the documents ([CLS] [D]
 *     ... [SEP], unpadded) go through BERT in ONE packed forward pass;
 *   - the head projects, masks punctuation and L2-normalises every token;
 *   - MaxSim scores each query against its nway documents (and, with
 *     use_ib_negatives, every document of the micro-batch);
 *   - the loss (cross-entropy, + in-batch, or KL with teacher scores) divided
 *     by accumsteps is back-propagated; gradients add up.
 * Then step_update clips the global gradient norm at 2.0, applies AdamW at
 * the scheduled learning rate (linear warmup, linear decay to 0 at maxsteps)
 * and zeroes the gradients.
 *
 * Memory (llm.c style): parameters (BERT + linear) in one allocation, and
 * gradients, AdamW m and v each one allocation of the same layout;
 * activations and every scratch buffer in one allocation each, sized in
 * step_init for the largest micro-batch. Nothing is allocated in a step.
 */
#ifndef CB_STEP_H
#define CB_STEP_H
#include <stddef.h>
#include <stdint.h>
#include "bert.h"
#include "colbert.h"
#include "loss.h"

typedef struct step_config {
    colbert_config cc;          /* dim, query_maxlen, doc_maxlen, masks, relu */
    loss_config lc;             /* nway, use_ib_negatives, alpha, accumsteps */
    int bsize;                  /* queries per step, over all micro-batches */
    double lr;                  /* peak learning rate */
    long warmup, maxsteps;      /* schedule */
    int dropout;                /* 1: BERT's training-mode dropout */
    uint64_t seed;              /* dropout masks derive from it and the step */
} step_config;

/* One tokenized micro-batch. Documents q*nway .. q*nway+nway-1 belong to
 * query q, the positive first. */
typedef struct step_batch {
    int nq;
    const int32_t *q_ids;       /* [nq * query_maxlen] */
    const uint8_t *q_mask;      /* [nq * query_maxlen] attention mask */
    const int32_t *d_ids;       /* [sum d_len] packed */
    const int *d_len;           /* [nq * nway] each <= doc_maxlen */
    const float *teacher;       /* [nq * nway] teacher scores, or NULL */
} step_batch;

typedef struct step_state {
    step_config c;
    bert_model bert;            /* its tensors point into params */
    colbert_vocab vocab;        /* for the punctuation mask */
    int H, D, max_q;            /* hidden, dim, queries per micro-batch */
    /* parameters, gradients, AdamW moments: 4 allocations of n floats,
     * BERT's tensors first, then linear [D, H] */
    size_t n;
    float *params, *grads, *m, *v;
    float *linear, *g_linear;
    bert_grads bg;
    long t;                     /* optimizer steps taken */
    /* activations and scratch */
    bert_acts acts;
    float *buf;                 /* one allocation for the rest */
    float *out, *proj, *norm;   /* [T, D], [T, D], [T] head */
    float *d_out, *d_hidden;    /* [T, D], [T, H] */
    float *scores, *d_scores;   /* [max_q, max_q * nway] */
    float *sim;                 /* MaxSim scratch [Lq, doc tokens] */
    int32_t *argmax;            /* [max_q, max_q * nway, Lq] */
    int32_t *ids;               /* [T] packed queries then documents */
    int *seq_len;               /* [max_q * (1 + nway)] */
    int *d_off;                 /* [max_q * nway + 1] */
    uint8_t *mask, *keep;       /* [T] attention mask, head keep */
    size_t bytes;               /* everything step_init allocated */
    double t_fwd, t_bwd;        /* seconds in encoder forward / all backward, summed */
} step_state;

/* Take over a loaded BERT (its parameters move into the step's allocation;
 * the caller must not free it) and a projection: linear [D, H] copied from
 * `linear`, or, when NULL, initialised from Normal(0, initializer_range)
 * with `linear_seed`. Sizes every buffer for micro-batches of
 * bsize / accumsteps queries. Returns 0 or -1 with err. */
int step_init(step_state *s, bert_model *bert, const tokenizer *tok, const float *linear,
              uint64_t linear_seed, const step_config *c, cb_err *err);
void step_free(step_state *s);

/* Forward and backward of one micro-batch; gradients accumulate. Returns
 * the loss (already divided by accumsteps); parts gets its main and ib
 * terms when not NULL. */
float step_micro(step_state *s, const step_batch *b, loss_parts *parts);

/* Clip, AdamW at the scheduled rate, zero the gradients. Returns the
 * gradient norm before clipping; *lr gets the rate used (may be NULL). */
float step_update(step_state *s, double *lr);
#endif
