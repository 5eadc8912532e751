/* cpu/head.c: the ColBERT head after its projection (a linear layer,
 * matmul.c): the punctuation/padding mask, optional ReLU, and the L2
 * normalisation of every token vector. */
#include "cpu.h"

#include <math.h>
#include <string.h>

#define NORM_EPS 1e-12f     /* F.normalize's eps */

/* x: [T, D] in place; keep: [T] or NULL */
void cb_cpu_keep_relu_forward(ops_device *d, float *x, const uint8_t *keep, int relu, int T, int D) {
    (void)d;
    if (!relu && !keep) return;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float *p = x + (size_t)t * D;
        if (keep && !keep[t]) {
            memset(p, 0, (size_t)D * sizeof(float));
        } else if (relu) {
            for (int i = 0; i < D; i++) p[i] = p[i] > 0.0f ? p[i] : 0.0f;
        }
    }
}

/* forward: x = keep * relu(x0); x > 0 is relu's derivative */
void cb_cpu_keep_relu_backward(ops_device *d, float *dx, const float *x, const uint8_t *keep, int relu, int T,
                            int D) {
    (void)d;
    if (!relu && !keep) return;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float *dp = dx + (size_t)t * D;
        const float *p = x + (size_t)t * D;
        if (keep && !keep[t]) memset(dp, 0, (size_t)D * sizeof(float));
        else if (relu)
            for (int i = 0; i < D; i++) dp[i] = p[i] > 0.0f ? dp[i] : 0.0f;
    }
}

void cb_cpu_l2norm_forward(ops_device *d, float *out, float *norm, const float *inp, int T, int D) {
    (void)d;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *x = inp + (size_t)t * D;
        float *y = out + (size_t)t * D;
        double ss = 0;
        for (int i = 0; i < D; i++) ss += (double)x[i] * x[i];
        float nrm = fmaxf((float)sqrt(ss), NORM_EPS);
        norm[t] = nrm;
        for (int i = 0; i < D; i++) y[i] = x[i] / nrm;
    }
}

/* forward: y = x / n, n = max(||x||, eps).
 * Unclamped: dx = (dy - y <y, dy>) / n. Clamped (||x|| < eps, e.g. a masked
 * zero vector): n is a constant, dx = dy / eps. A row's dy is read fully
 * before its dx is written, so dinp may alias dout. */
void cb_cpu_l2norm_backward(ops_device *d, float *dinp, const float *dout, const float *out, const float *norm,
                         int T, int D) {
    (void)d;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *y = out + (size_t)t * D, *dy = dout + (size_t)t * D;
        float *dx = dinp + (size_t)t * D;
        float nrm = norm[t];
        double ydy = 0;
        for (int i = 0; i < D; i++) ydy += (double)y[i] * dy[i];
        float dot = nrm > NORM_EPS ? (float)ydy : 0.0f;
        for (int i = 0; i < D; i++) dx[i] = (dy[i] - y[i] * dot) / nrm;
    }
}
