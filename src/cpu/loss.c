/* cpu/loss.c: colbert-ai's cross-entropy, in-batch and distillation
 * losses and PyLate's contrastive loss with their gradients (loss.h has
 * the formulas). The scores are tiny ([B, B * nway]): plain loops, sums in
 * double. */
#include "cpu.h"

#include <math.h>
#include <string.h>

/* log-sum-exp over the columns outside [lo, hi) */
static double lse_skip(const float *x, int lo, int hi, int C) {
    double m = -INFINITY, s = 0;
    for (int j = 0; j < C; j++)
        if ((j < lo || j >= hi) && x[j] > m) m = x[j];
    for (int j = 0; j < C; j++)
        if (j < lo || j >= hi) s += exp((double)x[j] - m);
    return m + log(s);
}

/* CE = lse(x) - x[target]; dCE/dx_j = softmax_j - [j == target] */
double cb_cpu_loss_ce_row(float *dx, const float *x, int target, int skip_lo, int skip_hi, double scale, int C) {
    CB_ASSERT(target < skip_lo || target >= skip_hi);
    double lse = lse_skip(x, skip_lo, skip_hi, C);
    for (int j = 0; j < C; j++) {
        if (j >= skip_lo && j < skip_hi) continue;
        double p = exp((double)x[j] - lse);
        dx[j] += (float)(scale * (p - (j == target)));
    }
    return scale * (lse - x[target]);
}

/* KL = sum_j p_t,j (log p_t,j - log p_s,j); dKL/dx_j = p_s,j - p_t,j
 * (sum_j p_t,j = 1). */
double cb_cpu_loss_kl_row(float *dx, const float *x, const float *teacher, float alpha, double scale, int C) {
    double mt = -INFINITY, st = 0;
    for (int j = 0; j < C; j++) {
        double a = (double)(teacher[j] * alpha);   /* fp32 product, as torch */
        if (a > mt) mt = a;
    }
    for (int j = 0; j < C; j++) st += exp((double)(teacher[j] * alpha) - mt);
    double lse_t = mt + log(st), lse_s = lse_skip(x, 0, 0, C), kl = 0;
    for (int j = 0; j < C; j++) {
        double lt = (double)(teacher[j] * alpha) - lse_t, ls = (double)x[j] - lse_s;
        kl += exp(lt) * (lt - ls);
        dx[j] += (float)(scale * (exp(ls) - exp(lt)));
    }
    return scale * kl;
}

float cb_cpu_loss(ops_device *d, float *d_scores, loss_parts *parts, const float *scores, const float *teacher,
               const loss_config *c, int B) {
    (void)d;
    int nway = c->nway, cols = cb_loss_score_cols(c, B);
    CB_ASSERT(nway >= 1 && B >= 1 && c->accumsteps >= 1);
    memset(d_scores, 0, (size_t)B * cols * sizeof(float));
    /* both losses are means over the global batch's queries (B of them in
     * one process), then / accumsteps */
    int Q = c->q_global > 0 ? c->q_global : B;
    CB_ASSERT(Q >= B && (!c->ib_global || c->q_global <= 0 || c->q_first + B <= Q));
    double scale = 1.0 / ((double)Q * c->accumsteps), main = 0, ib = 0;
    for (int b = 0; b < B && c->contrastive; b++)
        main += cb_cpu_loss_ce_row(d_scores + (size_t)b * cols, scores + (size_t)b * cols, cb_loss_own_col(c, B, b),
                                   0, 0, scale, cols);
    for (int b = 0; b < B && !c->contrastive; b++) {
        int oc = cb_loss_own_col(c, B, b);
        size_t own = (size_t)b * cols + (size_t)oc;
        if (teacher)
            main += cb_cpu_loss_kl_row(d_scores + own, scores + own, teacher + (size_t)b * nway,
                                c->distillation_alpha, scale, nway);
        else
            main += cb_cpu_loss_ce_row(d_scores + own, scores + own, 0, 0, 0, scale, nway);
        if (c->use_ib_negatives)
            ib += cb_cpu_loss_ce_row(d_scores + (size_t)b * cols, scores + (size_t)b * cols, oc, oc + 1, oc + nway,
                                     scale, cols);
    }
    if (parts) {
        parts->main = (float)(main * c->accumsteps);
        parts->ib = (float)(ib * c->accumsteps);
    }
    return (float)(main + ib);
}
