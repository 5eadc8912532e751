/* args.h: the command-line rules every `colbert` command shares.
 *
 * Options go through getopt_long: long names written in full (an
 * abbreviation is an unknown option), the value after '=' or as the next
 * argument, never empty unless the command says so; -h and --help. Numbers
 * are read in full (strtoll, strtod) and checked against the option's
 * bounds. Every usage error is worded the same way, on stderr:
 *
 *     colbert <cmd>: error: <what>
 *     Try 'colbert <cmd> --help'.
 *
 * and the command exits with status 2 (CLI_USAGE). Errors of the world
 * (files, models) are runtime errors, "colbert: error: <message>", status 1.
 *
 *     static const struct option OPTS[] = {
 *         {"depth", required_argument, NULL, OPT_DEPTH},
 *         {"help", no_argument, NULL, 'h'}, {0, 0, 0, 0}};
 *     cli_args a;
 *     cli_args_init(&a, "eval", argc, argv, OPTS);
 *     for (int c; (c = cli_args_next(&a)) != -1;) {
 *         switch (c) {
 *         case 'h': fputs(HELP, stdout); return 0;
 *         case OPT_DEPTH: if (cli_args_int(&a, 1, 100000, &depth)) return CLI_USAGE; break;
 *         default: return CLI_USAGE;   // CLI_BAD: the error is printed
 *         }
 *     }
 *     if (cli_args_positional(&a, NULL, 0) < 0) return CLI_USAGE;
 */
#ifndef CB_CLI_ARGS_H
#define CB_CLI_ARGS_H
#include <getopt.h>
#include <stdint.h>

#define CLI_USAGE 2    /* exit status of a usage error */
#define CLI_BAD (-2)   /* cli_args_next: a usage error was printed */

typedef struct cli_args {
    const char *cmd;                 /* "eval": names the command in errors */
    int argc;
    char **argv;                     /* argv[0] is the command's name */
    const struct option *opts;       /* {0}-terminated; "help" has val 'h', the others vals >= 256 */
    const char *const *empty_ok;     /* NULL-terminated names whose value may be "", or NULL */
    /* the option cli_args_next returned last */
    char opt[64];                    /* its name as the user writes it: "--depth", "-h" */
    const char *arg;                 /* its value, or NULL */
} cli_args;

/* Print "colbert <cmd>: error: <fmt...>" and the "Try" line to stderr (cmd
 * NULL: the colbert executable itself); returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Start parsing argv[1..argc-1] (getopt's global state is reset). */
void cli_args_init(cli_args *a, const char *cmd, int argc, char **argv, const struct option *opts);
/* The next option's val ('h' for -h/--help) with a->opt and a->arg set;
 * -1 after the last option; CLI_BAD after printing a usage error (unknown
 * option, missing or empty value, value given to a flag). */
int cli_args_next(cli_args *a);
/* The value of the current option as an integer in [lo, hi], or as any
 * uint64_t, or as a finite number in [lo, hi]: 0, or -1 after printing a
 * usage error. */
int cli_args_int(cli_args *a, long long lo, long long hi, long long *out);
int cli_args_u64(cli_args *a, uint64_t *out);
int cli_args_float(cli_args *a, double lo, double hi, double *out);
/* The current option's value is not one of `expected` ("query or doc"):
 * print the usage error; returns CLI_USAGE. */
int cli_args_bad_value(cli_args *a, const char *expected);
/* After the last option: the positional arguments, at most max of them, into
 * out[]; returns their count, or -1 after printing a usage error (one too
 * many, or an empty one). */
int cli_args_positional(cli_args *a, const char **out, int max);
#endif
