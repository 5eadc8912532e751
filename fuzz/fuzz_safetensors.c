/* fuzz_safetensors.c: the .safetensors reader (safetensors.h) on any bytes:
 * cb_st_open_mem validates the header, then every float tensor is read
 * (conversion from F16/BF16, the finiteness check) with its own shape and
 * with a wrong one. */
#include "fuzz.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a copy of exactly size bytes, so that ASan sees any read past the end */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    st_file f;
    cb_err err;
    if (cb_st_open_mem(&f, "fuzz.safetensors", buf, size, &err) == 0) {
        for (int i = 0; i < f.n_tensors; i++) {
            const st_tensor *t = &f.tensors[i];
            if (cb_st_find(&f, t->name) == NULL) abort();   /* every listed tensor is found */
            size_t n = (t->end - t->begin) / cb_st_dtype_size(t->dtype);
            if (n > ((size_t)1 << 24)) continue;   /* cannot be: the data is in the input */
            float *out = malloc((n ? n : 1) * sizeof *out);
            if (!out) continue;
            cb_st_read_f32(&f, t->name, out, t->ndim, t->shape, &err);
            int64_t wrong[ST_MAX_DIMS + 1] = {0};
            memcpy(wrong, t->shape, sizeof t->shape);
            wrong[0] += 1;
            cb_st_read_f32(&f, t->name, out, t->ndim ? t->ndim : 1, wrong, &err);
            free(out);
        }
        cb_st_read_f32(&f, "no such tensor", NULL, 0, NULL, &err);
        cb_st_close(&f);
    }
    free(buf);
    return 0;
}
