/* loss.h: colbert-ai's training loss on the MaxSim scores of a batch.
 *
 * B queries, nway documents each, the positive first. With S the scores:
 *   main loss   CrossEntropy(S[b, own nway docs], target 0), mean over b;
 *               or, with teacher scores t[B, nway], KLDivLoss(batchmean,
 *               log_target) of log_softmax(S) against
 *               log_softmax(t * distillation_alpha):
 *               (1/B) sum_b sum_k p_t (log p_t - log p_s)
 *   ib loss     (use_ib_negatives) CrossEntropy over every document of the
 *               batch except the query's own negatives, i.e. columns
 *               0 .. b*nway and b*nway+nway .. B*nway-1 (colbert-ai's
 *               compute_ib_loss), target its own positive; mean over b.
 *   loss        (main + ib) / accumsteps
 * With `contrastive` (PyLate's Contrastive loss, a **beyond** option): one
 * cross-entropy over every document of the batch, the query's own negatives
 * included, target its own positive (column b*nway); mean over b, reported
 * as `main`; no separate ib term. Teacher scores are not used then.
 * Sums run in double; gradients are exact for the returned loss.
 *
 * Data-parallel runs (comm.h): a rank holds B of the global batch's
 * q_global queries, the first being query q_first of the global batch.
 * Every mean above is then over q_global queries: the rank's loss and
 * gradients are its share, and their sums over the ranks are the global
 * batch's loss and gradients. With ib_global (--ib-scope global) the
 * columns are every document of the global batch (all ranks' documents,
 * gathered), query b's own documents at columns (q_first + b) * nway ..;
 * without it (--ib-scope local, colbert-ai's per-GPU loss) only the rank's
 * own B * nway documents. One process: q_first 0, q_global 0 (= B).
 * This header holds the configuration; the computation is cb_ops_loss (ops.h).
 */
#ifndef CB_LOSS_H
#define CB_LOSS_H
#include <stddef.h>

typedef struct loss_config {
    int nway;                   /* documents per query, positive first (2) */
    int use_ib_negatives;       /* in-batch negatives loss */
    float distillation_alpha;   /* teacher score scale (1.0) */
    int accumsteps;             /* the loss is divided by this (1) */
    int contrastive;            /* 1: PyLate's one cross-entropy over the batch */
    int q_first;                /* the batch's first query in the global batch (0) */
    int q_global;               /* queries of the global batch, the means' count (0: B) */
    int ib_global;              /* 1: columns = the documents of all q_global queries */
} loss_config;

/* What the last loss_forward_backward computed, before / accumsteps (a
 * rank's share of the global means in a data-parallel run). */
typedef struct loss_parts {
    float main;                 /* cross-entropy or KL, mean over queries */
    float ib;                   /* in-batch loss (0 when off) */
} loss_parts;

/* Columns of S: use_ib_negatives or contrastive ? B * nway (query b against every
 * document of the batch; its own documents at b*nway .. b*nway+nway-1),
 * q_global * nway with ib_global (its own at (q_first+b)*nway ..)
 * : nway (its own documents only). */
int cb_loss_score_cols(const loss_config *c, int B);
/* The column of query b's positive among cb_loss_score_cols (0 for nway). */
int cb_loss_own_col(const loss_config *c, int B, int b);

/* The loss itself runs on a device: cb_ops_loss (ops.h). */
#endif
