/* args.c: option parsing and usage errors shared by the colbert commands
 * (args.h). */
#include "args.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    if (cmd) fprintf(stderr, "colbert %s: error: ", cmd);
    else fputs("colbert: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cmd) fprintf(stderr, "\nTry 'colbert %s --help'.\n", cmd);
    else fputs("\nTry 'colbert --help'.\n", stderr);
    return CLI_USAGE;
}

void cli_args_init(cli_args *a, const char *cmd, int argc, char **argv, const struct option *opts) {
    memset(a, 0, sizeof *a);
    a->cmd = cmd;
    a->argc = argc;
    a->argv = argv;
    a->opts = opts;
    optind = 0;   /* 0, not 1: glibc and musl then forget any earlier scan */
    opterr = 0;   /* the errors are ours (cli_usage_error) */
}

/* The option named exactly name[0..n), or NULL. */
static const struct option *find_exact(const cli_args *a, const char *name, size_t n) {
    for (const struct option *o = a->opts; o->name; o++)
        if (strlen(o->name) == n && !strncmp(o->name, name, n)) return o;
    return NULL;
}

/* "unknown option '--name'", with the option it abbreviates if only one. */
static int unknown_long(const cli_args *a, const char *name, size_t n) {
    const struct option *hit = NULL;
    int hits = 0;
    for (const struct option *o = a->opts; o->name; o++)
        if (!strncmp(o->name, name, n)) hit = o, hits++;
    if (hits == 1 && n > 0)
        cli_usage_error(a->cmd, "unknown option '--%.*s' (did you mean '--%s'?)", (int)n, name, hit->name);
    else
        cli_usage_error(a->cmd, "unknown option '--%.*s'", (int)n, name);
    return CLI_BAD;
}

int cli_args_next(cli_args *a) {
    int idx = -1;
    a->opt[0] = '\0';
    a->arg = NULL;
    int c = getopt_long(a->argc, a->argv, ":h", a->opts, &idx);
    if (c == -1) return -1;
    if (c == '?' || c == ':') {
        /* Only long options take values. A bad long option leaves optopt 0
         * (unknown) or its val (a value given to a flag: 'h' or >= 256); a
         * bad short one leaves its letter, and argv[optind - 1] may not be
         * the argument that held it (-xh). */
        if (c == '?' && optopt != 0 && optopt != 'h' && optopt < 256) {
            if (isprint(optopt)) cli_usage_error(a->cmd, "unknown option '-%c'", optopt);
            else cli_usage_error(a->cmd, "unknown option: byte 0x%02x after '-'", (unsigned)optopt & 0xff);
            return CLI_BAD;
        }
        const char *tok = a->argv[optind - 1];   /* getopt has stepped past it */
        if (strncmp(tok, "--", 2)) {             /* not expected; never read past a short one */
            cli_usage_error(a->cmd, "unknown option '%s'", tok);
            return CLI_BAD;
        }
        size_t n = strcspn(tok + 2, "=");
        const struct option *o = find_exact(a, tok + 2, n);
        if (!o) return unknown_long(a, tok + 2, n);
        if (c == ':') cli_usage_error(a->cmd, "option '--%s' needs a value", o->name);
        else cli_usage_error(a->cmd, "option '--%s' takes no value, found '%s'", o->name, tok);
        return CLI_BAD;
    }
    if (idx < 0) {   /* a short option: -h */
        snprintf(a->opt, sizeof a->opt, "-%c", c);
        return c;
    }
    /* getopt takes a unique prefix for the option; we want the full name.
     * The argument that named it is the last one read, or the one before
     * when the value came separately. */
    const struct option *o = &a->opts[idx];
    int separate = o->has_arg && optarg == a->argv[optind - 1];
    const char *tok = a->argv[optind - 1 - separate];
    size_t n = strcspn(tok + 2, "=");
    if (n != strlen(o->name)) return unknown_long(a, tok + 2, n);
    snprintf(a->opt, sizeof a->opt, "--%s", o->name);
    if (o->has_arg) {
        a->arg = optarg;
        int empty_ok = 0;
        for (const char *const *e = a->empty_ok; e && *e; e++) empty_ok |= !strcmp(*e, o->name);
        if (!*optarg && !empty_ok) {
            cli_usage_error(a->cmd, "option '%s' needs a value, found ''", a->opt);
            return CLI_BAD;
        }
    }
    return c;
}

/* strtoll/strtod accept leading blanks; we take the number alone */
static int starts_number(const char *s) { return *s && !isspace((unsigned char)*s); }

int cli_args_int(cli_args *a, long long lo, long long hi, long long *out) {
    const char *s = a->arg;
    char *end;
    errno = 0;
    long long v = starts_number(s) ? strtoll(s, &end, 10) : 0;
    if (!starts_number(s) || *end || errno || v < lo || v > hi) {
        if (hi == LLONG_MAX)
            cli_usage_error(a->cmd, "option '%s': expected an integer >= %lld, found '%s'", a->opt, lo, s);
        else
            cli_usage_error(a->cmd, "option '%s': expected an integer in [%lld, %lld], found '%s'", a->opt, lo,
                            hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_args_u64(cli_args *a, uint64_t *out) {
    const char *s = a->arg;
    char *end;
    errno = 0;
    unsigned long long v = starts_number(s) && *s != '-' ? strtoull(s, &end, 10) : 0;
    if (!starts_number(s) || *s == '-' || *end || errno) {
        cli_usage_error(a->cmd, "option '%s': expected an integer in [0, %llu], found '%s'", a->opt,
                        (unsigned long long)UINT64_MAX, s);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

int cli_args_float(cli_args *a, double lo, double hi, double *out) {
    const char *s = a->arg;
    char *end;
    errno = 0;
    double v = starts_number(s) ? strtod(s, &end) : 0;
    if (!starts_number(s) || *end || errno || !(v >= lo && v <= hi)) {   /* NaN fails the bounds */
        cli_usage_error(a->cmd, "option '%s': expected a number in [%g, %g], found '%s'", a->opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_args_bad_value(cli_args *a, const char *expected) {
    return cli_usage_error(a->cmd, "option '%s': expected %s, found '%s'", a->opt, expected, a->arg);
}

int cli_args_positional(cli_args *a, const char **out, int max) {
    int n = a->argc - optind;
    if (n > max) {
        cli_usage_error(a->cmd, "unexpected argument '%s'", a->argv[optind + max]);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (!*a->argv[optind + i]) {
            cli_usage_error(a->cmd, "empty argument ''");
            return -1;
        }
        out[i] = a->argv[optind + i];
    }
    return n;
}
