/* npy.c: see npy.h. */
#include "npy.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

int cb_npy_write(const char *path, const char *dtype, const void *data, int ndim,
              const int64_t *shape, cb_err *err) {
    char hdr[256], dims[160] = "";
    size_t count = 1;
    int pos = 0;
    for (int i = 0; i < ndim; i++) {
        pos += snprintf(dims + pos, sizeof dims - (size_t)pos, "%lld,%s", (long long)shape[i],
                        (ndim > 1 && i < ndim - 1) ? " " : "");
        count *= (size_t)shape[i];
    }
    if (ndim > 1) dims[strlen(dims) - 1] = '\0';  /* "(3, 4)" not "(3, 4,)" */
    int n = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
                     dtype, dims);
    /* magic(6) + version(2) + len(2) + header, padded with spaces to a
     * multiple of 64 and ended by '\n' */
    int total = 10 + n + 1;
    int pad = (64 - total % 64) % 64;
    FILE *f;
    char *tmp;
    if (!(f = cb_out_open(path, &tmp, err))) return -1;
    uint16_t hl = (uint16_t)(n + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc(hl & 0xff, f);
    fputc(hl >> 8, f);
    fwrite(hdr, 1, (size_t)n, f);
    for (int i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    fwrite(data, 4, count, f);
    return cb_out_commit(f, tmp, path, err);
}

float *cb_npy_read_f32(const char *path, int64_t rows, int64_t cols, cb_err *err) {
    size_t len;
    char *buf = cb_read_file(path, &len, err);
    if (!buf) return NULL;
    const char *why = NULL;
    size_t hl = 0, ho = 0;
    long long r = -1, c = -1;
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6)) why = "not a .npy file";
    else if (buf[6] == 1) hl = (uint8_t)buf[8] | (size_t)(uint8_t)buf[9] << 8, ho = 10;
    else if (buf[6] == 2 || buf[6] == 3) {
        if (len < 12) why = "truncated header";
        else hl = (uint8_t)buf[8] | (size_t)(uint8_t)buf[9] << 8 | (size_t)(uint8_t)buf[10] << 16 |
                  (size_t)(uint8_t)buf[11] << 24, ho = 12;
    } else why = "unknown .npy version";
    if (!why && ho + hl > len) why = "truncated header";
    if (!why) {
        char *hdr = cb_malloc(hl + 1, "a .npy header", err);
        if (!hdr) {
            free(buf);
            return NULL;
        }
        memcpy(hdr, buf + ho, hl);
        hdr[hl] = 0;
        const char *sh = strstr(hdr, "'shape':");
        if (!strstr(hdr, "'descr': '<f4'")) why = "dtype is not float32 ('<f4')";
        else if (!strstr(hdr, "'fortran_order': False")) why = "not in C order";
        else if (!sh || sscanf(sh, "'shape': (%lld, %lld)", &r, &c) != 2) why = "not a 2-D array";
        free(hdr);
    }
    if (!why && ((rows >= 0 && r != rows) || (cols >= 0 && c != cols))) {
        cb_err_set(err, "%s: shape (%lld, %lld), expected (%lld, %lld)", path, r, c, (long long)rows,
                   (long long)cols);
        free(buf);
        return NULL;
    }
    size_t bytes = 0;
    if (!why && (r < 0 || c < 0 || __builtin_mul_overflow((size_t)r, (size_t)c, &bytes) ||
                 __builtin_mul_overflow(bytes, sizeof(float), &bytes) || len - ho - hl != bytes))
        why = "data size does not match the shape";
    if (why) {
        cb_err_set(err, "%s: %s", path, why);
        free(buf);
        return NULL;
    }
    float *out = cb_malloc(bytes ? bytes : 1, path, err);
    if (out) memcpy(out, buf + ho + hl, bytes);
    free(buf);
    for (size_t i = 0; out && i < bytes / sizeof(float); i++)
        if (!isfinite(out[i])) {
            cb_err_set(err, "%s: element [%lld, %lld] is %s (byte %zu)", path, (long long)(i / (size_t)c),
                       (long long)(i % (size_t)c), isnan(out[i]) ? "NaN" : "infinite", ho + hl + 4 * i);
            free(out);
            return NULL;
        }
    return out;
}
