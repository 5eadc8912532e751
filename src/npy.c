/* npy.c: see npy.h. */
#include "npy.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

FILE *cb_out_open(const char *path, char **tmp_path, cb_err *err) {
    size_t n = strlen(path) + 32;
    char *tmp = cb_xmalloc(n);
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        cb_err_set(err, "%s: cannot create: %s", path, strerror(errno));
        free(tmp);
        return NULL;
    }
    *tmp_path = tmp;
    return f;
}

int cb_out_commit(FILE *f, char *tmp_path, const char *path, cb_err *err) {
    int bad = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
    int e = errno;
    if (fclose(f) != 0 && !bad) { bad = 1; e = errno; }
    if (!bad && rename(tmp_path, path) != 0) { bad = 1; e = errno; }
    if (bad) {
        remove(tmp_path);
        free(tmp_path);
        return cb_err_set(err, "%s: write failed: %s", path, strerror(e));
    }
    free(tmp_path);
    return 0;
}

void cb_out_abort(FILE *f, char *tmp_path) {
    if (f) fclose(f);
    if (tmp_path) {
        remove(tmp_path);
        free(tmp_path);
    }
}

int npy_write(const char *path, const char *dtype, const void *data, int ndim,
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
