/* main.c: the `colbert` executable: dispatch to the commands of cli.h. */
#include <stdio.h>
#include <string.h>
#include "args.h"
#include "blas.h"
#include "cli.h"
#include "comm.h"

static void usage(FILE *f) {
    fprintf(f,
        "usage: colbert <command> [options]   (colbert <command> --help)\n"
        "       colbert --version\n"
        "\n"
        "commands:\n"
        "  tokenize   token ids of each input line (WordPiece, Unigram, BPE)\n"
        "  encode     sentence embeddings or token vectors of each input line\n"
        "  prepare    training data (queries, corpus, triples) from pairs, labeled pairs or triplets\n"
        "  eval       nDCG@10, MRR@10, Recall@10/100 of a ColBERT model on a BEIR dataset\n"
        "  train      train a ColBERT model (checkpoints, validation, resume)\n"
        "  info       the linear-algebra library and threads in use\n"
        "  version    the version of colbert.c\n");
}

static int run(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        if (argc > 2) return cli_usage_error(NULL, "unexpected argument '%s'", argv[2]);
        printf("colbert.c %s\n", COLBERT_VERSION);
        return 0;
    }
    /* under mpirun with several ranks: the commands that split their work */
    cb_comm *comm = cb_comm_world();
    if (comm->size > 1 && strcmp(cmd, "train") && strcmp(cmd, "prepare") && strcmp(cmd, "eval")) {
        if (!comm->rank)
            fprintf(stderr, "colbert: error: `colbert %s` runs as one process; under mpirun with %d ranks only "
                    "train, prepare and eval split their work (HINT: run it without mpirun)\n", cmd, comm->size);
        return CLI_USAGE;
    }
    if (!strcmp(cmd, "tokenize")) return cli_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "encode")) return cli_encode(argc - 1, argv + 1);
    if (!strcmp(cmd, "prepare")) return cli_prepare(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cli_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "train")) return cli_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cli_info(argc - 1, argv + 1);
    return cli_usage_error(NULL, "unknown %s '%s'", cmd[0] == '-' ? "option" : "command", cmd);
}

int main(int argc, char **argv) {
    cb_blas_init(argc, argv);
    /* MPI only when mpirun (or another MPI launcher) started us */
    cb_err err = {{0}};
    cb_comm *comm = cb_comm_init(&argc, &argv, &err);
    if (!comm) {
        fprintf(stderr, "colbert: error: %s\n", err.msg);
        return 1;
    }
    int rc = run(argc, argv);
    fflush(stdout);
    /* under mpirun a failed rank ends the job: the others may be waiting for
     * it in a collective. Not needed for usage errors (every rank has the
     * same arguments) nor for train, whose ranks agree on their errors. */
    if (comm->size > 1 && rc == 1 && argc > 1 && strcmp(argv[1], "train")) cb_comm_abort(comm, rc);
    cb_comm_finalize(comm);
    return rc;
}
