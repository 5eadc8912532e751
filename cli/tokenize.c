/* tokenize.c: `colbert tokenize`: the token ids of each input line,
 * space-separated, one output line per input line, without special tokens
 * (or with them: --special). */
#include "args.h"
#include "cli.h"
#include "model.h"
#include "tokenizer.h"

#include <errno.h>
#include <string.h>

static const char *TOKENIZE_HELP =
    "usage: colbert tokenize --model M [--special] [FILE]\n"
    "\n"
    "Print the token ids of each line of FILE (stdin when FILE is absent or\n"
    "'-'), space-separated, one output line per input line, without special\n"
    "tokens ([CLS], [SEP]). The trailing \\n and \\r of each line are not part of\n"
    "the text. Same ids as Hugging Face tokenizers' encode(text,\n"
    "add_special_tokens=False). WordPiece, Unigram and BPE tokenizers\n"
    "(docs/tokenizers.md).\n"
    "\n"
    "options:\n"
    "  --model M    model directory, or hub id from the local Hugging Face cache\n"
    "  --special    add the post-processor's special tokens around each line\n"
    "               ([CLS] ... [SEP], <s> ... </s>): encode(text,\n"
    "               add_special_tokens=True), without truncation\n"
    "  -h, --help   this help\n";

/* Append the decimal of v (>= 0) to p; returns the new end. */
static char *put_int(char *p, int32_t v) {
    char tmp[12];
    int n = 0;
    uint32_t u = (uint32_t)v;
    do { tmp[n++] = (char)('0' + u % 10); u /= 10; } while (u);
    while (n) *p++ = tmp[--n];
    return p;
}

enum { OPT_MODEL = 256, OPT_SPECIAL };
static const struct option TOKENIZE_OPTS[] = {
    {"model", required_argument, NULL, OPT_MODEL},
    {"special", no_argument, NULL, OPT_SPECIAL},
    {"help", no_argument, NULL, 'h'},
    {0, 0, 0, 0}};

int cli_tokenize(int argc, char **argv) {
    const char *model = NULL, *path = NULL;
    int special = 0;
    cli_args a;
    cli_args_init(&a, "tokenize", argc, argv, TOKENIZE_OPTS);
    for (int c; (c = cli_args_next(&a)) != -1;) {
        switch (c) {
        case 'h': fputs(TOKENIZE_HELP, stdout); return 0;
        case OPT_MODEL: model = a.arg; break;
        case OPT_SPECIAL: special = 1; break;
        default: return CLI_USAGE;
        }
    }
    if (cli_args_positional(&a, &path, 1) < 0) return CLI_USAGE;
    if (!model) return cli_usage_error(a.cmd, "missing required option '--model'");

    cb_err err = {{0}};
    char *dir = cb_model_resolve(model, &err);
    if (!dir) { fprintf(stderr, "colbert: error: %s\n", err.msg); return 1; }
    tokenizer *tok = cb_tokenizer_load(dir, &err);
    free(dir);
    if (!tok) { fprintf(stderr, "colbert: error: %s\n", err.msg); return 1; }

    FILE *in = stdin;
    if (path && strcmp(path, "-")) {
        in = fopen(path, "rb");
        if (!in) {
            fprintf(stderr, "colbert: error: %s: cannot open: %s\n", path, strerror(errno));
            cb_tokenizer_free(tok);
            return 1;
        }
    }
    static char outbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);

    tokenizer_template tm = cb_tokenizer_get_template(tok);
    int cap = 4096;
    int32_t *ids = cli_xmalloc((size_t)cap * sizeof *ids);
    /* an id is at most 11 chars + space; room for the template's ids too */
    char *txt = cli_xmalloc(((size_t)cap + 2 * TOKENIZER_TEMPLATE_MAX) * 12 + 2);
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t got;
    int rc = 0;
    while ((got = getline(&line, &line_cap, in)) >= 0) {
        size_t len = (size_t)got;
        if (len && line[len - 1] == '\n') len--;
        if (len && line[len - 1] == '\r') len--;
        int n = cb_tokenizer_encode(tok, line, len, ids, cap);
        if (n < 0) {
            fprintf(stderr, "colbert: error: out of memory tokenizing a line of %zu bytes\n", len);
            rc = 1;
            break;
        }
        if (n > cap) {
            while (cap < n) cap *= 2;
            ids = cli_xrealloc(ids, (size_t)cap * sizeof *ids);
            txt = cli_xrealloc(txt, ((size_t)cap + 2 * TOKENIZER_TEMPLATE_MAX) * 12 + 2);
            n = cb_tokenizer_encode(tok, line, len, ids, cap);
        }
        char *p = txt;
        for (int i = 0; special && i < tm.n_prefix; i++) {
            p = put_int(p, tm.prefix[i]);
            *p++ = ' ';
        }
        for (int i = 0; i < n; i++) {
            if (i) *p++ = ' ';
            p = put_int(p, ids[i]);
        }
        for (int i = 0; special && i < tm.n_suffix; i++) {
            if (p > txt && p[-1] != ' ') *p++ = ' ';
            p = put_int(p, tm.suffix[i]);
        }
        if (p > txt && p[-1] == ' ') p--;
        *p++ = '\n';
        if (fwrite(txt, 1, (size_t)(p - txt), stdout) != (size_t)(p - txt)) break;
    }
    if (ferror(in)) {
        fprintf(stderr, "colbert: error: %s: read error: %s\n", path ? path : "stdin", strerror(errno));
        rc = 1;
    }
    if (fflush(stdout) || ferror(stdout)) {
        fprintf(stderr, "colbert: error: writing the output: %s\n", strerror(errno));
        rc = 1;
    }
    if (in != stdin) fclose(in);
    free(line);
    free(ids);
    free(txt);
    cb_tokenizer_free(tok);
    return rc;
}
