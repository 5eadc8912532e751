/* topk.h: the k best (score, id) of a stream, in a bounded heap.
 *
 * Order: a higher score first; equal scores by the lower tie key. The tie
 * key makes the order total, so the result does not depend on the order in
 * which hits arrive (or on how a search was split across threads): the
 * miner passes the document id itself (ties go to the lower id), eval passes
 * each document's rank in trec_eval's docid order.
 *
 * The heap keeps the worst of its (at most k) hits at the root, so a new hit
 * is compared once with the root and enters only when it beats it. One heap
 * is an array of k topk_hit plus a count, owned by the caller; nothing here
 * allocates.
 *
 *     topk_hit h[K];
 *     int n = 0;
 *     for (...) cb_topk_push(h, &n, K, score, id, tie);
 *     cb_topk_sort(h, n);          h[0..n) best first
 */
#ifndef CB_TOPK_H
#define CB_TOPK_H
#include <stddef.h>
#include <stdint.h>

typedef struct topk_hit {
    float score;
    uint32_t tie;       /* equal scores: the lower tie first */
    int32_t id;
} topk_hit;

/* 1 when a ranks after b (lower score, or equal score and higher tie). */
static inline int cb_topk_worse(const topk_hit *a, const topk_hit *b) {
    return a->score < b->score || (a->score == b->score && a->tie > b->tie);
}

/* Offer (score, id, tie) to the heap h[0..*n) of capacity k (k >= 1):
 * inserted while *n < k, else it replaces the worst hit when it beats it.
 * score must not be NaN (the caller skips it, or ranks it last as
 * -INFINITY). */
void cb_topk_push(topk_hit *h, int *n, int k, float score, int32_t id, uint32_t tie);

/* A row of nb scores s[0..nb) of ids ids[j] (or id0 + j when ids is NULL),
 * each its own tie key: the miner's order, ties to the lower id. A NaN
 * score ranks last (as -INFINITY). */
void cb_topk_push_row(topk_hit *h, int *n, int k, const float *s, size_t nb, const int32_t *ids, int32_t id0);

/* Sort h[0..n) best first (after this it is no longer a heap). */
void cb_topk_sort(topk_hit *h, int n);

/* The sorted hits into ids[k] and scores[k], padded with -1 / -INFINITY
 * past n. */
void cb_topk_write(const topk_hit *h, int n, int k, int32_t *ids, float *scores);
#endif
