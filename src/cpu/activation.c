/* cpu/activation.c: exact-erf GELU, GeGLU, the residual add and dropout. */
#include "cpu.h"
#include "../fastmath.h"

#include <math.h>

/* Elements per OpenMP chunk of the GELU loops (each chunk one call of a
 * CB_SIMD_CLONES function). */
#define GELU_CHUNK 8192

/* out, inp: [n]; exact GELU 0.5 x (1 + erf(x / sqrt 2)) */
CB_SIMD_CLONES static void gelu_forward_range(float *out, const float *inp, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + cb_fast_erff(x * (float)M_SQRT1_2));
    }
}

void cb_cpu_gelu_forward(ops_device *d, float *out, const float *inp, size_t n) {
    (void)d;
    size_t chunks = (n + GELU_CHUNK - 1) / GELU_CHUNK;
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < chunks; c++) {
        size_t i = c * GELU_CHUNK;
        gelu_forward_range(out + i, inp + i, n - i < GELU_CHUNK ? n - i : GELU_CHUNK);
    }
}

/* forward: out = 0.5 x (1 + erf(x / sqrt 2)); dinp may alias dout */
CB_SIMD_CLONES static void gelu_backward_range(float *dinp, const float *inp, const float *dout, size_t n) {
    const float inv_sqrt_2pi = 0.3989422804014327f;
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + cb_fast_erff(x * (float)M_SQRT1_2));
        float pdf = inv_sqrt_2pi * cb_fast_expf(-0.5f * x * x);
        dinp[i] = dout[i] * (cdf + x * pdf);
    }
}

void cb_cpu_gelu_backward(ops_device *d, float *dinp, const float *inp, const float *dout, size_t n) {
    (void)d;
    size_t chunks = (n + GELU_CHUNK - 1) / GELU_CHUNK;
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < chunks; c++) {
        size_t i = c * GELU_CHUNK;
        gelu_backward_range(dinp + i, inp + i, dout + i, n - i < GELU_CHUNK ? n - i : GELU_CHUNK);
    }
}

/* out: [T, I]; inp: [T, 2I] = (input, gate) per row */
CB_SIMD_CLONES static void geglu_forward_row(float *out, const float *inp, int I) {
    const float *g = inp + I;
#pragma omp simd
    for (int i = 0; i < I; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + cb_fast_erff(x * (float)M_SQRT1_2)) * g[i];
    }
}

void cb_cpu_geglu_forward(ops_device *d, float *out, const float *inp, int T, int I) {
    (void)d;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) geglu_forward_row(out + (size_t)t * I, inp + (size_t)t * 2 * I, I);
}

/* forward: out = gelu(x) * g.  dx = dout * g * GELU'(x); dg = dout * gelu(x).
 * dinp: [T, 2I] (overwritten); dout: [T, I]; inp: [T, 2I] */
CB_SIMD_CLONES static void geglu_backward_row(float *dinp, const float *dout, const float *inp, int I) {
    const float inv_sqrt_2pi = 0.3989422804014327f;
    const float *g = inp + I;
#pragma omp simd
    for (int i = 0; i < I; i++) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + cb_fast_erff(x * (float)M_SQRT1_2));
        float pdf = inv_sqrt_2pi * cb_fast_expf(-0.5f * x * x);
        dinp[i] = dout[i] * g[i] * (cdf + x * pdf);
        dinp[I + i] = dout[i] * (x * cdf);
    }
}

void cb_cpu_geglu_backward(ops_device *d, float *dinp, const float *dout, const float *inp, int T, int I) {
    (void)d;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        geglu_backward_row(dinp + (size_t)t * 2 * I, dout + (size_t)t * I, inp + (size_t)t * 2 * I, I);
}

void cb_cpu_add(ops_device *d, float *out, const float *a, const float *b, size_t n) {
    (void)d;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* mask [T, H] = keep bits, sequence by sequence (ops.h: element e of
 * sequence q keyed by its id); x = x * mask / (1 - p) */
void cb_cpu_dropout_forward(ops_device *d, float *x, uint8_t *mask, const ops_seqs *s, int H, float p,
                         uint64_t seed, uint64_t stream) {
    (void)d;
    CB_ASSERT(s->id);
    float scale = 1.0f / (1.0f - p);
    uint32_t thr = cb_ops_dropout_thr(p);
#pragma omp parallel for schedule(dynamic, 4)
    for (int q = 0; q < s->n_seq; q++) {
        uint64_t key = cb_ops_dropout_key(seed, stream, s->id[q]);
        size_t a = (size_t)s->off[q] * H, n = (size_t)(s->off[q + 1] - s->off[q]) * H;
        for (size_t e = 0; e < n; e++) {
            mask[a + e] = (uint8_t)cb_ops_keep_bit(key, e, thr);
            x[a + e] = mask[a + e] ? x[a + e] * scale : 0.0f;
        }
    }
}

void cb_cpu_dropout_backward(ops_device *d, float *dx, const uint8_t *mask, size_t n, float p) {
    (void)d;
    float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) dx[i] = mask[i] ? dx[i] * scale : 0.0f;
}
