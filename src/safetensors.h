/* safetensors.h: read (and write) Hugging Face .safetensors files.
 *
 * Format: u64 little-endian header length N, then N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...,
 *  "__metadata__": {...}}, then the data. Offsets are relative to the end of
 * the header.
 *
 * st_open memory-maps the file and validates everything before anything is
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
} st_file;

/* Open and validate. Returns 0, or -1 with err set (f is then empty). */
int st_open(st_file *f, const char *path, cb_err *err);
void st_close(st_file *f);

/* Tensor by exact name; NULL if absent. */
const st_tensor *st_find(const st_file *f, const char *name);

/* Copy a tensor into `out` as fp32 (F32, F16 and BF16 are converted),
 * after checking that it exists and has exactly the `ndim` dimensions of
 * `shape`. Errors name the file, the tensor, and expected vs found. */
int st_read_f32(const st_file *f, const char *name, float *out, int ndim,
                const int64_t *shape, cb_err *err);

const char *st_dtype_name(st_dtype d);
#endif
