/* common.c: what the commands of the colbert CLI share besides option
 * parsing (args.c): the thread count, a text file read as lines, and
 * allocation that exits on out of memory. */
#include "cli.h"
#include "comm.h"
#include "job.h"

#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static void oom(size_t n) {
    fprintf(stderr, "colbert: error: out of memory (asked for %zu bytes)\n", n);
    exit(1);
}

void *cli_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *cli_xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

int cli_read_lines(const char *path, char **buf, char ***lines, size_t **lens, cb_err *err) {
    size_t n = 0;
    char *text;
    if (!strcmp(path, "-")) {
        size_t cap = 1 << 16;
        text = cli_xmalloc(cap);
        size_t got;
        while ((got = fread(text + n, 1, cap - n - 1, stdin)) > 0) {
            n += got;
            if (n + 1 >= cap) text = cli_xrealloc(text, cap *= 2);
        }
        text[n] = '\0';
    } else if (!(text = cb_read_file(path, &n, err))) {
        return -1;
    }
    size_t cap = 1024, count = 0;
    char **L = cli_xmalloc(cap * sizeof(char *));
    size_t *N = cli_xmalloc(cap * sizeof(size_t));
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && text[j] != '\n') j++;
        size_t e = j;
        if (e > i && text[e - 1] == '\r') e--;
        if (count == cap) {
            L = cli_xrealloc(L, (cap *= 2) * sizeof(char *));
            N = cli_xrealloc(N, cap * sizeof(size_t));
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
