/* ref.h: comparing our tensors with reference tensors (llm.c's
 * test_gpt2.c way). PyTorch writes the references into a .safetensors file
 * (tests/ref/gen_*.py); the C tests open it with ref_open, fetch tensors by
 * name with ref_raw and measure the difference with one of two errors:
 *   ref_rel_l2   ||a - b||_2 / ||b||_2 (whole-tensor error, for gradients
 *                and parameters); max_abs (may be NULL) gets max |a - b|
 *   ref_rel_max  max |a - b| / max |b| (worst element against the scale)
 * NaN anywhere counts as the worst error. */
#ifndef CB_TEST_REF_H
#define CB_TEST_REF_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "safetensors.h"

static inline void ref_open(st_file *f, const char *dir, const char *file) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    cb_err err = {{0}};
    if (cb_st_open(f, path, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
}

/* The raw bytes of tensor `name`; *n (may be NULL) gets its element count. */
static inline const void *ref_raw(const st_file *f, const char *name, size_t *n) {
    const st_tensor *t = cb_st_find(f, name);
    if (!t) { fprintf(stderr, "reference tensor %s missing\n", name); exit(2); }
    if (n) *n = (t->end - t->begin) / cb_st_dtype_size(t->dtype);
    return f->map + f->data_start + t->begin;
}

static inline double ref_rel_l2(const float *a, const float *b, size_t n, double *max_abs) {
    double num = 0, den = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
        if (fabs(d) > mx || d != d) mx = fabs(d);
    }
    if (max_abs) *max_abs = mx;
    double e = sqrt(num) / (sqrt(den) + 1e-30);
    return e == e ? e : INFINITY;
}

static inline double ref_rel_max(const float *a, const float *b, size_t n) {
    double diff = 0, mag = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d != d) return INFINITY;
        if (d > diff) diff = d;
        if (fabs(b[i]) > mag) mag = fabs(b[i]);
    }
    return diff / (mag > 0 ? mag : 1);
}
#endif
