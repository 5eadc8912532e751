/* common.c: errors, allocation that reports, small file and path helpers;
 * see common.h. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int cb_err_set(cb_err *err, const char *fmt, ...) {
    if (!err) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int cb_err_prefix(cb_err *err, const char *fmt, ...) {
    if (!err) return -1;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* "prefix: old", cut at the buffer's end */
    size_t lp = strlen(prefix), lo = strlen(old), cap = sizeof err->msg - 1;
    if (lp > cap) lp = cap;
    memcpy(err->msg, prefix, lp);
    size_t n = lp;
    for (const char *s = ": "; *s && n < cap; s++) err->msg[n++] = *s;
    if (lo > cap - n) lo = cap - n;
    memcpy(err->msg + n, old, lo);
    err->msg[n + lo] = '\0';
    return -1;
}

static void *oom_err(size_t n, const char *what, cb_err *err) {
    cb_err_set(err, "out of memory: %s needs %zu bytes (%.2f GiB)", what ? what : "a buffer", n,
               (double)n / (1024.0 * 1024.0 * 1024.0));
    return NULL;
}

void *cb_malloc(size_t n, const char *what, cb_err *err) {
    void *p = malloc(n ? n : 1);
    return p ? p : oom_err(n, what, err);
}

void *cb_calloc(size_t n, size_t size, const char *what, cb_err *err) {
    if (size && n > SIZE_MAX / size) return oom_err(SIZE_MAX, what, err);
    void *p = calloc(n ? n : 1, size ? size : 1);
    return p ? p : oom_err(n * size, what, err);
}

void *cb_realloc(void *p, size_t n, const char *what, cb_err *err) {
    void *q = realloc(p, n ? n : 1);
    return q ? q : oom_err(n, what, err);
}

char *cb_strdup(const char *s, cb_err *err) {
    size_t n = strlen(s) + 1;
    char *d = cb_malloc(n, "a string", err);
    if (d) memcpy(d, s, n);
    return d;
}

char *cb_read_file(const char *path, size_t *len, cb_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        cb_err_set(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = cb_malloc(cap, path, err);
    while (buf) {
        if (n + 1 >= cap) {
            char *b = cb_realloc(buf, cap *= 2, path, err);
            if (!b) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    if (buf && ferror(f)) {
        cb_err_set(err, "%s: read error: %s", path, strerror(errno));
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (!buf) return NULL;
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

char *cb_path_new(const char *a, const char *b, cb_err *err) {
    size_t la = strlen(a), lb = strlen(b);
    int slash = la > 0 && a[la - 1] != '/';
    char *p = cb_malloc(la + lb + 2, "a file name", err);
    if (!p) return NULL;
    memcpy(p, a, la);
    if (slash) p[la] = '/';
    memcpy(p + la + slash, b, lb + 1);
    return p;
}

int cb_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int cb_dir_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

double cb_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
