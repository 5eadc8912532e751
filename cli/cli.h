/* cli.h: the commands of the `colbert` executable, a client of libcolbert.a.
 * Each takes the arguments after its name (argv[0] is the command), prints
 * its own --help, and returns the process exit status (0 ok, 1 error,
 * 2 usage). */
#ifndef CB_CLI_H
#define CB_CLI_H
#include "common.h"
#include "ops.h"

/* `colbert --version` prints "colbert.c " COLBERT_VERSION */
#define COLBERT_VERSION "0.10.0"

int cli_tokenize(int argc, char **argv);  /* tokenize.c */
int cli_encode(int argc, char **argv);    /* encode.c */
int cli_prepare(int argc, char **argv);   /* prepare.c */
int cli_train(int argc, char **argv);     /* train.c */
int cli_eval(int argc, char **argv);      /* eval.c */
int cli_info(int argc, char **argv);      /* info.c */

/* common.c */
/* Allocation that exits (status 1, after "colbert: error: out of memory")
 * when it fails: the CLI may end the process, the library never does
 * (common.h's cb_malloc reports instead). */
void *cli_xmalloc(size_t n);
void *cli_xrealloc(void *p, size_t n);
/* Read the lines of path (or stdin for "-"): *buf holds the text with each
 * line NUL-terminated (a trailing \r dropped), (*lines)[i] and (*lens)[i]
 * the i-th line; returns the count, or -1 with err. The caller frees *buf,
 * *lines and *lens. */
int cli_read_lines(const char *path, char **buf, char ***lines, size_t **lens, cb_err *err);
/* OpenMP and OpenBLAS threads; n <= 0 leaves the default (all cores, or
 * under mpirun the cores divided among the ranks on this machine). */
void cli_set_threads(int n);
/* --device and --precision, for the commands that compute. CLI_DEVICE_HELP
 * is their --help text. cli_device_ok: the spec is auto, cpu, cuda or
 * cuda:N. cli_open_device opens it (NULL spec: auto): a GPU, or "auto"
 * asked for by name, is said on stderr in one line; NULL after printing
 * "colbert: error: ..." (e.g. --device cuda without a usable GPU), for an
 * exit status 1. cb_ops_close the device at the end. */
#define CLI_DEVICE_HELP                                                                        \
    "  --device D         auto (default: a GPU if there is one, else the CPU), cpu,\n"          \
    "                     cuda or cuda:N\n"                                                     \
    "  --precision P      on a GPU: bf16 (default: bf16 matmul inputs, fp32\n"                 \
    "                     accumulation) or fp32 (no TF32); the CPU is always fp32\n"
int cli_device_ok(const char *spec);
ops_device *cli_open_device(const char *spec, ops_precision precision);
#endif
