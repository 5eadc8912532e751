/* cpu/maxsim.c: ColBERT's MaxSim scores of queries against packed
 * documents, and their backward. */
#include "cpu.h"
#include "../blas.h"

#define MAXSIM_EMPTY -9999.0f

size_t cb_cpu_maxsim_workspace(ops_device *d, int Lq, size_t doc_rows) {
    (void)d;
    return (size_t)Lq * doc_rows * sizeof(float);
}

/* Per query, one GEMM gives the similarities of its Lq vectors with every
 * row of the documents it meets (into the workspace); the max per document
 * runs over those. */
void cb_cpu_maxsim_forward(ops_device *d, float *scores, int32_t *argmax, const float *qv, const float *dv,
                        const int *d_off, const int *d_off_host, const uint8_t *d_keep, int group, int nq,
                        int nd, int Lq, int D, const ops_work *work) {
    (void)d;
    (void)d_off_host;
    float *sim = work->p;
    int G = group > 0 ? group : nd;
    CB_ASSERT(group == 0 || nd >= nq * group);
    for (int q = 0; q < nq; q++) {
        int d_lo = group > 0 ? q * group : 0;
        int r0 = d_off[d_lo], n = d_off[d_lo + G] - r0;
        CB_ASSERT((size_t)Lq * n * sizeof(float) <= work->bytes);
        const float *Q = qv + (size_t)q * Lq * D;
        if (n > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Lq, n, D, 1.0f, Q, D,
                        dv + (size_t)r0 * D, D, 0.0f, sim, n);
#pragma omp parallel for schedule(dynamic, 1)
        for (int k = 0; k < G; k++) {
            int dd = d_lo + k;
            int32_t *am = argmax + ((size_t)q * G + k) * Lq;
            double total = 0;
            for (int i = 0; i < Lq; i++) {
                const float *row = sim + (size_t)i * n - r0;    /* row[j], j a dv row */
                float best = MAXSIM_EMPTY;
                int32_t arg = -1;
                /* strict > keeps the first maximum, as torch.max does */
                for (int j = d_off[dd]; j < d_off[dd + 1]; j++) {
                    if (d_keep && !d_keep[j]) continue;
                    if (arg < 0 || row[j] > best) { best = row[j]; arg = j; }
                }
                am[i] = arg;
                total += arg < 0 ? MAXSIM_EMPTY : best;
            }
            scores[(size_t)q * G + k] = (float)total;
        }
    }
}

/* forward: score(q, d) = sum_i <Q[q, i], dv[argmax_i]> */
void cb_cpu_maxsim_backward(ops_device *d, float *d_qv, float *d_dv, const float *d_scores, const int32_t *argmax,
                         const float *qv, const float *dv, int group, int nq, int nd, int Lq, int D) {
    (void)d;
    int G = group > 0 ? group : nd;
    /* queries: each thread owns the rows of its queries */
#pragma omp parallel for schedule(static)
    for (int q = 0; q < nq; q++) {
        for (int k = 0; k < G; k++) {
            float g = d_scores[(size_t)q * G + k];
            const int32_t *am = argmax + ((size_t)q * G + k) * Lq;
            if (g == 0.0f) continue;
            for (int i = 0; i < Lq; i++) {
                if (am[i] < 0) continue;
                float *dq = d_qv + ((size_t)q * Lq + i) * D;
                const float *x = dv + (size_t)am[i] * D;
                for (int c = 0; c < D; c++) dq[c] += g * x[c];
            }
        }
    }
    /* documents: each thread owns the rows of its documents */
#pragma omp parallel for schedule(static)
    for (int dd = 0; dd < nd; dd++) {
        int q0 = group > 0 ? dd / group : 0, q1 = group > 0 ? q0 + 1 : nq;
        if (q1 > nq) q1 = nq;
        for (int q = q0; q < q1; q++) {
            int k = group > 0 ? dd - q * group : dd;
            float g = d_scores[(size_t)q * G + k];
            const int32_t *am = argmax + ((size_t)q * G + k) * Lq;
            if (g == 0.0f) continue;
            for (int i = 0; i < Lq; i++) {
                if (am[i] < 0) continue;
                float *dx = d_dv + (size_t)am[i] * D;
                const float *y = qv + ((size_t)q * Lq + i) * D;
                for (int c = 0; c < D; c++) dx[c] += g * y[c];
            }
        }
    }
}
