/* npy.h: write NumPy .npy files (format 1.0, little-endian float32 / int32).
 * The file is written under a temporary name beside the target and renamed
 * when complete, so a failed or interrupted run never leaves a partial file. */
#ifndef CB_NPY_H
#define CB_NPY_H
#include <stdint.h>
#include "common.h"

/* dtype: "<f4" or "<i4". data holds product(shape) elements. */
int npy_write(const char *path, const char *dtype, const void *data, int ndim,
              const int64_t *shape, cb_err *err);

/* Atomic output helpers shared by every writer of colbert.c:
 * cb_out_open opens "<path>.tmp.<pid>" for writing and returns it (NULL +
 * err on failure); cb_out_commit flushes, fsyncs, closes and renames it to
 * path; cb_out_abort closes and removes it. */
FILE *cb_out_open(const char *path, char **tmp_path, cb_err *err);
int cb_out_commit(FILE *f, char *tmp_path, const char *path, cb_err *err);
void cb_out_abort(FILE *f, char *tmp_path);
#endif
