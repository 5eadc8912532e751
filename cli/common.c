/* common.c: what the commands of the colbert CLI share besides option
 * parsing (args.c): the thread count, and a text file read as lines. */
#include "cli.h"
#include "comm.h"
#include "job.h"

#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

int cli_read_lines(const char *path, char **buf, char ***lines, size_t **lens, cb_err *err) {
    size_t n = 0;
    char *text;
    if (!strcmp(path, "-")) {
        size_t cap = 1 << 16;
        text = cb_xmalloc(cap);
        size_t got;
        while ((got = fread(text + n, 1, cap - n - 1, stdin)) > 0) {
            n += got;
            if (n + 1 >= cap) text = cb_xrealloc(text, cap *= 2);
        }
        text[n] = '\0';
    } else if (!(text = cb_read_file(path, &n, err))) {
        return -1;
    }
    size_t cap = 1024, count = 0;
    char **L = cb_xmalloc(cap * sizeof(char *));
    size_t *N = cb_xmalloc(cap * sizeof(size_t));
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && text[j] != '\n') j++;
        size_t e = j;
        if (e > i && text[e - 1] == '\r') e--;
        if (count == cap) {
            L = cb_xrealloc(L, (cap *= 2) * sizeof(char *));
            N = cb_xrealloc(N, cap * sizeof(size_t));
        }
        text[e] = '\0';
        L[count] = text + i;
        N[count] = e - i;
        count++;
        i = j + 1;
    }
    *buf = text;
    *lines = L;
    *lens = N;
    return (int)count;
}

void cli_set_threads(int n) {
    /* by default all cores, shared among the ranks mpirun put on this machine */
    int local = cb_comm_world()->local_size;
#ifdef _OPENMP
    if (n <= 0 && local > 1) {
        n = omp_get_num_procs() / local;
        if (n < 1) n = 1;
    }
#endif
    if (n > 0) cb_set_threads(n);
}

int cli_device_ok(const char *s) {
    if (!strcmp(s, "auto") || !strcmp(s, "cpu") || !strcmp(s, "cuda")) return 1;
    if (strncmp(s, "cuda:", 5) || !s[5] || strlen(s + 5) > 5) return 0;
    for (const char *p = s + 5; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    return 1;
}

ops_device *cli_open_device(const char *spec, ops_precision precision) {
    cb_err err = {{0}};
    ops_device *d = cb_ops_open(spec ? spec : "auto", precision, &err);
    if (!d) {
        fprintf(stderr, "colbert: error: %s\n", err.msg);
        return NULL;
    }
    if (strcmp(d->kind, "cpu") || (spec && !strcmp(spec, "auto")))
        fprintf(stderr, "colbert: device: %s%s%s\n", d->desc, err.msg[0] ? "; " : "", err.msg);
    return d;
}
