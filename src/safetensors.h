/* safetensors.h: read (and write) Hugging Face .safetensors files.
 *
 * Format: u64 little-endian header length N, then N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...,
 *  "__metadata__": {...}}, then the data. Offsets are relative to the end of
 * the header.
 *
 * cb_st_open memory-maps the file and validates everything before anything is
 * used: header length within the file, valid JSON object, known dtype,
 * shape product times dtype size equal to end - begin, every range inside
 * the data area, no two ranges overlapping. Any violation is an error naming
 * the file, the byte or tensor, what was expected and what was found.
 */
#ifndef CB_SAFETENSORS_H
#define CB_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>
#include "common.h"

typedef enum st_dtype {
    ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL
} st_dtype;

#define ST_MAX_DIMS 8

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t begin, end;          /* byte offsets into the data area */
} st_tensor;

typedef struct st_file {
    char *path;
    uint8_t *map;               /* whole file, read-only mmap */
    size_t map_size;
    size_t data_start;          /* 8 + header length */
    st_tensor *tensors;
    int n_tensors;
    int borrowed;               /* map is the caller's buffer (cb_st_open_mem) */
} st_file;

/* Open and validate. Returns 0, or -1 with err set (f is then empty). */
int cb_st_open(st_file *f, const char *path, cb_err *err);
void cb_st_close(st_file *f);
/* The same over size bytes at data (named name in messages), which must
 * outlive f; nothing is copied. */
int cb_st_open_mem(st_file *f, const char *name, const void *data, size_t size, cb_err *err);

/* Tensor by exact name; NULL if absent. */
const st_tensor *cb_st_find(const st_file *f, const char *name);

/* Copy a tensor into `out` as fp32 (F32, F16 and BF16 are converted),
 * after checking that it exists and has exactly the `ndim` dimensions of
 * `shape`, and then that every value is finite (a NaN or an infinity is
 * an error naming the element). Errors name the file, the tensor, and
 * expected vs found. */
int cb_st_read_f32(const st_file *f, const char *name, float *out, int ndim,
                const int64_t *shape, cb_err *err);

const char *cb_st_dtype_name(st_dtype d);
size_t cb_st_dtype_size(st_dtype d);          /* bytes per element */

/* IEEE binary16 to fp32, exact (subnormals, inf, nan included). */
float cb_st_f16_to_f32(uint16_t h);

/* One tensor to write: `data` holds product(shape) elements of `dtype`,
 * little-endian, row-major. */
typedef struct st_wtensor {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;
} st_wtensor;

/* Write `n` tensors to `path` (in the given order, data packed back to back,
 * header padded to 8 bytes, __metadata__ {"format": "pt"} so that
 * transformers loads it). Written to "<path>.tmp.<pid>", synced, then
 * renamed: `path` is either the old file or the complete new one, never a
 * partial one. Returns 0, or -1 with err set. */
int cb_st_write(const char *path, const st_wtensor *tensors, int n, cb_err *err);
#endif
