/* cli.h: the commands of the `colbert` executable, a client of libcolbert.a.
 * Each takes the arguments after its name (argv[0] is the command), prints
 * its own --help, and returns the process exit status (0 ok, 1 error,
 * 2 usage). */
#ifndef CB_CLI_H
#define CB_CLI_H
#include "common.h"

/* `colbert --version` prints "colbert.c " COLBERT_VERSION */
#define COLBERT_VERSION "0.10.0"

int cli_tokenize(int argc, char **argv);  /* tokenize.c */
int cli_encode(int argc, char **argv);    /* encode.c */
int cli_prepare(int argc, char **argv);   /* prepare.c */
int cli_train(int argc, char **argv);     /* train.c */
int cli_eval(int argc, char **argv);      /* eval.c */
int cli_info(int argc, char **argv);      /* info.c */

/* common.c */
/* Read the lines of path (or stdin for "-"): *buf holds the text with each
 * line NUL-terminated (a trailing \r dropped), (*lines)[i] and (*lens)[i]
 * the i-th line; returns the count, or -1 with err. The caller frees *buf,
 * *lines and *lens. */
int cli_read_lines(const char *path, char **buf, char ***lines, size_t **lens, cb_err *err);
/* OpenMP and OpenBLAS threads; n <= 0 leaves the default (all cores, or
 * under mpirun the cores divided among the ranks on this machine). */
void cli_set_threads(int n);
#endif
