/* topk.c: bounded top-k heaps; see topk.h. */
#include "topk.h"

#include <math.h>
#include <stdlib.h>

void cb_topk_push(topk_hit *h, int *n, int k, float score, int32_t id, uint32_t tie) {
    topk_hit x = {score, tie, id};
    int i;
    if (*n < k) {   /* sift up: the new hit moves below worse parents */
        i = (*n)++;
        while (i > 0) {
            int parent = (i - 1) / 2;
            if (!cb_topk_worse(&x, &h[parent])) break;
            h[i] = h[parent];
            i = parent;
        }
        h[i] = x;
        return;
    }
    if (!cb_topk_worse(&h[0], &x)) return;
    i = 0;   /* replace the root, sift down */
    for (;;) {
        int c = 2 * i + 1;
        if (c >= k) break;
        if (c + 1 < k && cb_topk_worse(&h[c + 1], &h[c])) c++;
        if (!cb_topk_worse(&h[c], &x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

void cb_topk_push_row(topk_hit *h, int *n, int k, const float *s, size_t nb, const int32_t *ids, int32_t id0) {
    for (size_t j = 0; j < nb; j++) {
        if (*n == k && s[j] < h[0].score) continue;   /* the common case: cannot enter */
        int32_t id = ids ? ids[j] : id0 + (int32_t)j;
        cb_topk_push(h, n, k, s[j] == s[j] ? s[j] : -INFINITY, id, (uint32_t)id);
    }
}

static int best_first(const void *a, const void *b) {
    const topk_hit *x = a, *y = b;
    return cb_topk_worse(y, x) ? -1 : cb_topk_worse(x, y) ? 1 : 0;
}

void cb_topk_sort(topk_hit *h, int n) {
    qsort(h, (size_t)n, sizeof *h, best_first);
}

void cb_topk_write(const topk_hit *h, int n, int k, int32_t *ids, float *scores) {
    for (int i = 0; i < k; i++) {
        ids[i] = i < n ? h[i].id : -1;
        scores[i] = i < n ? h[i].score : -INFINITY;
    }
}
