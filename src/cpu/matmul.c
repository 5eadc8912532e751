/* cpu/matmul.c: linear layers through OpenBLAS sgemm (fp32). */
#include "cpu.h"
#include "../blas.h"

#include <string.h>

/* Column-blocked loops: reductions over T rows are split by columns across
 * threads, so no two threads write the same element and the sums run in
 * the same order whatever the thread count. */
#define COL_BLOCK 64

/* out: [T, OC]; inp: [T, C]; w: [OC, C]; b: [OC] or NULL */
void cb_cpu_linear_forward(ops_device *d, float *out, const float *inp, const float *w, const float *b, int T,
                        int C, int OC) {
    (void)d;
    if (b) {
#pragma omp parallel for schedule(static)
        for (int t = 0; t < T; t++) memcpy(out + (size_t)t * OC, b, (size_t)OC * sizeof(float));
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, OC, C, 1.0f, inp, C, w, C,
                b ? 1.0f : 0.0f, out, OC);
}

/* forward: out[T, OC] = inp[T, C] @ w[OC, C]^T + b */
void cb_cpu_linear_backward(ops_device *d, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                         const float *w, int T, int C, int OC, int acc) {
    (void)d;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, C, OC, 1.0f, dout, OC, w, C,
                acc ? 1.0f : 0.0f, dinp, C);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, T, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
    if (db) {
#pragma omp parallel for schedule(static)
        for (int c0 = 0; c0 < OC; c0 += COL_BLOCK) {
            int c1 = c0 + COL_BLOCK < OC ? c0 + COL_BLOCK : OC;
            for (int t = 0; t < T; t++) {
                const float *dr = dout + (size_t)t * OC;
                for (int i = c0; i < c1; i++) db[i] += dr[i];
            }
        }
    }
}
