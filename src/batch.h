/* batch.h: length-sorted batching for the encoders.
 *
 * A forward pass costs about the same per token whatever the batch, so
 * texts are encoded longest first and packed into batches of at most
 * max_tokens tokens: the batches are nearly full, short texts share one
 * pass, and the first batch (the longest texts) shows early whether memory
 * suffices. The order is total (token count descending, equal counts by
 * text index ascending), so the batches, and every result computed from
 * them, are the same on every run and thread count.
 *
 *     batch_plan bp;
 *     if (cb_batch_plan_make(&bp, ntok, n, max_tokens, err)) return -1;
 *     for (int b = 0; b < bp.n_batches; b++)
 *         encode the texts bp.order[bp.start[b] .. bp.start[b + 1])
 *     cb_batch_plan_free(&bp);
 */
#ifndef CB_BATCH_H
#define CB_BATCH_H
#include "common.h"

typedef struct batch_plan {
    int n;              /* texts */
    int *order;         /* [n] text indices, most tokens first, ties by index */
    int *start;         /* [n_batches + 1] batch b is order[start[b] .. start[b + 1]) */
    int n_batches;
} batch_plan;

/* Plan batches over n texts of ntok[i] tokens: sort as above, then cut
 * greedily in that order, a batch taking texts while its total stays <=
 * max_tokens (a text longer than max_tokens alone makes a batch). Returns
 * 0, or -1 with err when out of memory (bp is then empty). n = 0 gives no
 * batch. */
int cb_batch_plan_make(batch_plan *bp, const int *ntok /* [n] */, int n, int max_tokens, cb_err *err);
void cb_batch_plan_free(batch_plan *bp);
#endif
