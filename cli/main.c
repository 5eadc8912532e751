/* main.c: the `colbert` executable: dispatch to the commands of cli.h. */
#include <stdio.h>
#include <string.h>
#include "cli.h"
#include "blas.h"

static void usage(FILE *f) {
    fprintf(f,
        "usage: colbert <command> [options]   (colbert <command> --help)\n"
        "\n"
        "commands:\n"
        "  tokenize   word-piece ids of each input line\n"
        "  encode     sentence embeddings or token vectors of each input line\n"
        "  prepare    training data (queries, corpus, triples) from pairs, labeled pairs or triplets\n"
        "  eval       nDCG@10, MRR@10, Recall@10/100 of a ColBERT model on a BEIR dataset\n"
        "  train      train a ColBERT model (checkpoints, validation, resume)\n"
        "  info       the linear-algebra library and threads in use\n");
}

int main(int argc, char **argv) {
    blas_init(argc, argv);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "tokenize")) return cli_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "encode")) return cli_encode(argc - 1, argv + 1);
    if (!strcmp(cmd, "prepare")) return cli_prepare(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cli_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "train")) return cli_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) { blas_print_info(stdout); return 0; }
    fprintf(stderr, "colbert: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
