/* common.h: what every colbert.c module shares.
 *
 * Errors. Anything that can fail because of the world (a file, user input,
 * memory) takes a `cb_err *` and returns non-zero (or NULL) on failure, with
 * a one-line message in err->msg that names the file, the line or byte, what
 * was expected and what was found. The caller decides: the CLI prints it and
 * exits 1; the library hands it back. A broken invariant (a bug, not the
 * world) aborts through CB_ASSERT with file and line.
 */
#ifndef CB_COMMON_H
#define CB_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct cb_err {
    char msg[1024];
} cb_err;

/* printf-style: set err->msg (err may be NULL: then the message is dropped).
 * Always returns -1 so that `return cb_err_set(err, ...)` reads well. */
int cb_err_set(cb_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefix an existing message: "context: <old message>". Returns -1. */
int cb_err_prefix(cb_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define CB_ASSERT(cond)                                                        \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "colbert: internal error: %s:%d: assertion '%s' "  \
                    "failed\n", __FILE__, __LINE__, #cond);                    \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* Allocation that the library reports: NULL and err "out of memory:
 * <what> needs N bytes" when it fails. The library never exits: every
 * allocation of libcolbert goes through these (or checks malloc's NULL
 * itself) and hands the error back; only the CLI may exit (cli.h). `what`
 * names the buffer for the message. */
void *cb_malloc(size_t n, const char *what, cb_err *err);
void *cb_calloc(size_t n, size_t size, const char *what, cb_err *err);
void *cb_realloc(void *p, size_t n, const char *what, cb_err *err);
char *cb_strdup(const char *s, cb_err *err);

/* Read a whole file into memory (NUL-terminated; *len excludes the NUL).
 * Returns NULL and sets err on failure. Caller frees. */
char *cb_read_file(const char *path, size_t *len, cb_err *err);

/* A new string "a/b" (no second '/' when a ends with one; caller frees);
 * NULL and err "out of memory" when it cannot be allocated. */
char *cb_path_new(const char *a, const char *b, cb_err *err);
int cb_file_exists(const char *path);
int cb_dir_exists(const char *path);

/* Wall-clock seconds (monotonic). */
double cb_now(void);

#endif
