/* npy.h: NumPy .npy files: write format 1.0 (little-endian float32 / int32),
 * read 2-D float32 back. A file is written under a temporary name beside the target and renamed
 * when complete, so a failed or interrupted run never leaves a partial file. */
#ifndef CB_NPY_H
#define CB_NPY_H
#include <stdint.h>
#include "common.h"
#include "fsutil.h"   /* cb_out_*: cb_npy_write writes through them */

/* dtype: "<f4" or "<i4". data holds product(shape) elements. */
int cb_npy_write(const char *path, const char *dtype, const void *data, int ndim,
              const int64_t *shape, cb_err *err);

/* Read a 2-D little-endian float32 C-order .npy (format 1.0, 2.0 or 3.0)
 * of shape [rows, cols], each checked when >= 0, every value finite.
 * Returns the data (malloc'd, rows * cols floats), or NULL with err "PATH:
 * what is wrong" (a NaN names its element and byte). */
float *cb_npy_read_f32(const char *path, int64_t rows, int64_t cols, cb_err *err);

#endif
