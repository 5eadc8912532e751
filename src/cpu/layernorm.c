/* cpu/layernorm.c: LayerNorm forward and backward; sums in double for the
 * statistics, as the parity tests against PyTorch expect. */
#include "cpu.h"

#include <math.h>

#define COL_BLOCK 64

/* out, inp: [T, C]; mean, rstd: [T]; w, b: [C] (b NULL: no bias) */
void cb_cpu_layernorm_forward(ops_device *d, float *out, float *mean, float *rstd, const float *inp,
                           const float *w, const float *b, int T, int C, float eps) {
    (void)d;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *x = inp + (size_t)t * C;
        float *o = out + (size_t)t * C;
        double s = 0;
        for (int i = 0; i < C; i++) s += x[i];
        float m = (float)(s / C);
        double v = 0;
        for (int i = 0; i < C; i++) { float dd = x[i] - m; v += (double)dd * dd; }
        float r = 1.0f / sqrtf((float)(v / C) + eps);
        if (b)
            for (int i = 0; i < C; i++) o[i] = (x[i] - m) * r * w[i] + b[i];
        else
            for (int i = 0; i < C; i++) o[i] = (x[i] - m) * r * w[i];
        mean[t] = m;
        rstd[t] = r;
    }
}

/* forward: out = (inp - mean) * rstd * w + b, per row of C.
 * dinp: [T, C] (overwritten); dw, db: [C] (+=; db NULL: no bias); dout, inp: [T, C] */
void cb_cpu_layernorm_backward(ops_device *d, float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, const float *mean, const float *rstd, int T,
                            int C) {
    (void)d;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *x = inp + (size_t)t * C, *dy = dout + (size_t)t * C;
        float *dx = dinp + (size_t)t * C;
        float m = mean[t], r = rstd[t];
        float s1 = 0, s2 = 0;  /* mean of dnorm, mean of dnorm * norm */
        for (int i = 0; i < C; i++) {
            float dn = dy[i] * w[i];
            s1 += dn;
            s2 += dn * (x[i] - m) * r;
        }
        s1 /= (float)C;
        s2 /= (float)C;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - m) * r;
            dx[i] = r * (dy[i] * w[i] - s1 - norm * s2);
        }
    }
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += COL_BLOCK) {
        int c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        for (int t = 0; t < T; t++) {
            const float *x = inp + (size_t)t * C, *dy = dout + (size_t)t * C;
            float m = mean[t], r = rstd[t];
            for (int i = c0; i < c1; i++) {
                dw[i] += dy[i] * (x[i] - m) * r;
                if (db) db[i] += dy[i];
            }
        }
    }
}
