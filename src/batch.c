/* batch.c: length-sorted batches; see batch.h. */
#include "batch.h"

#include <string.h>

/* Most tokens first; equal counts by the lower index. */
static int longest_first(const void *a, const void *b, void *ntok) {
    int x = *(const int *)a, y = *(const int *)b;
    const int *t = ntok;
    if (t[x] != t[y]) return t[x] > t[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

int cb_batch_plan_make(batch_plan *bp, const int *ntok, int n, int max_tokens, cb_err *err) {
    memset(bp, 0, sizeof *bp);
    bp->n = n;
    bp->order = cb_malloc((size_t)n * sizeof(int), "the batch order", err);
    bp->start = cb_malloc(((size_t)n + 1) * sizeof(int), "the batch order", err);
    if (!bp->order || !bp->start) {
        cb_batch_plan_free(bp);
        return -1;
    }
    for (int i = 0; i < n; i++) bp->order[i] = i;
    qsort_r(bp->order, (size_t)n, sizeof(int), longest_first, (void *)ntok);
    bp->start[0] = 0;
    for (int s = 0; s < n;) {
        long long total = ntok[bp->order[s]];
        int e = s + 1;
        while (e < n && total + ntok[bp->order[e]] <= max_tokens) total += ntok[bp->order[e++]];
        bp->start[++bp->n_batches] = e;
        s = e;
    }
    return 0;
}

void cb_batch_plan_free(batch_plan *bp) {
    free(bp->order);
    free(bp->start);
    memset(bp, 0, sizeof *bp);
}
