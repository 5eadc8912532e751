/* train.c: `colbert train`, the command line of train.h. */
#include "cli.h"
#include "common.h"
#include "train.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static void usage(FILE *f) {
    fprintf(f,
"usage: colbert train --model-name NAME --pretrained M --data DIR [options]\n"
"\n"
"Train a ColBERT model (RAGatouille's RAGTrainer.train, colbert-ai's training\n"
"loop) on DIR/queries.train.colbert.tsv, corpus.train.colbert.tsv and\n"
"triples.train.colbert.jsonl (see `colbert prepare`). Checkpoints go to\n"
"OUTPUT_DIR/NAME/step-NNNNNN; OUTPUT_DIR/NAME/best links the best one. The\n"
"last line on stdout is the best checkpoint's path; everything else goes to\n"
"stderr.\n"
"\n"
"model:\n"
"  --model-name NAME        name of the run and of the model (required)\n"
"  --pretrained M           a ColBERT checkpoint (fine-tune: its projection and\n"
"                           settings are kept) or a BERT-family encoder (a new\n"
"                           ColBERT); a directory or a hub id in the local HF cache\n"
"  --language CODE          language of the data, kept in the metadata (default en)\n"
"  --gpus N                 GPUs to use (default -1: all; this build uses the CPU)\n"
"\n"
"training (RAGTrainer.train's defaults):\n"
"  --data DIR               the training files (required)\n"
"  --batch-size N           triples per step (default 32)\n"
"  --accumsteps N           micro-batches per step, gradients add up (default 1)\n"
"  --maxsteps N             at most this many steps (default 500000)\n"
"  --epochs N               passes over the triples (default 1: file order;\n"
"                           later passes reshuffle, seeded)\n"
"  --lr X                   peak learning rate (default 5e-6)\n"
"  --warmup N|auto          linear warmup steps (default auto: 10%% of one pass)\n"
"  --dim N                  vector size of a new model (default 128)\n"
"  --doc-maxlen N           document tokens (default 256; fine-tune: the checkpoint's)\n"
"  --query-maxlen N         query tokens (default 32; fine-tune: the checkpoint's)\n"
"  --nbits N                index bits, kept in the metadata (default 2)\n"
"  --no-ib-negatives        no in-batch negatives loss\n"
"  --loss colbert|contrastive\n"
"                           colbert (default): colbert-ai's n-way cross-entropy plus\n"
"                           the in-batch loss; contrastive: PyLate's, one\n"
"                           cross-entropy over every document of the batch (better\n"
"                           on NFCorpus, see docs/train.md)\n"
"  --relu                   ReLU after the projection\n"
"  --no-dropout             BERT without dropout (exact replays)\n"
"  --seed N                 seed of the projection, dropout and shuffles (default 12345)\n"
"\n"
"checkpoints and validation:\n"
"  --output-dir DIR         where runs go (default checkpoints)\n"
"  --save-every N           steps between checkpoints (default: one pass / 10)\n"
"  --keep-checkpoints N     newest checkpoints kept, besides the best (default 3,\n"
"                           or the resumed run's; 0 keeps all)\n"
"  --val-data DIR           validation triples (same three files); default: hold\n"
"                           out --val-fraction of the training queries\n"
"  --val-fraction X         (default 0.05; 0: no validation, the last checkpoint\n"
"                           is the best)\n"
"  --val-queries N          at most this many validation queries (default 32)\n"
"  --resume DIR             continue from a checkpoint (its run's options; the\n"
"                           result is bit-identical to an uninterrupted run)\n"
"\n"
"  --threads N              threads (default: all cores)\n"
"  --quiet                  no progress line\n"
"  -h, --help               this help\n"
"\n"
"Ctrl-C (SIGINT) or SIGTERM: the current step ends, a resumable checkpoint is\n"
"written, exit status 130 / 143.\n");
}

static int num(const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !(v >= lo && v <= hi)) {
        fprintf(stderr, "colbert: error: %s: expected a number in [%g, %g], found \"%s\"\n", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int integer(const char *opt, const char *s, double v) {
    if (v == (double)(long long)v) return 0;
    fprintf(stderr, "colbert: error: %s: expected an integer, found \"%s\"\n", opt, s);
    return -1;
}

int cli_train(int argc, char **argv) {
    train_opts o;
    train_opts_default(&o);
    const char *name = NULL, *pretrained = NULL, *lang = "en";
    int gpus = -1, threads = 0, others = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!strcmp(a, "--no-ib-negatives")) { o.use_ib_negatives = 0; others++; continue; }
        if (!strcmp(a, "--relu")) { o.relu = 1; others++; continue; }
        if (!strcmp(a, "--no-dropout")) { o.dropout = 0; others++; continue; }
        if (!strcmp(a, "--quiet")) { o.quiet = 1; continue; }
        if (i + 1 >= argc || strncmp(a, "--", 2)) {
            fprintf(stderr, "colbert: error: %s: %s\n", a, strncmp(a, "--", 2) ? "unexpected argument" : "missing value");
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        double x;
        int bad = 0;
#define INT(flag, lo, hi, dst) else if (!strcmp(a, flag)) { \
            bad = num(a, v, lo, hi, &x) || integer(a, v, x); dst = (__typeof__(dst))x; others++; }
        if (!strcmp(a, "--model-name")) name = v;
        else if (!strcmp(a, "--pretrained")) { pretrained = v; others++; }
        else if (!strcmp(a, "--language")) { lang = v; others++; }
        else if (!strcmp(a, "--data")) { o.data_dir = v; others++; }
        else if (!strcmp(a, "--output-dir")) { o.output_dir = v; others++; }
        else if (!strcmp(a, "--val-data")) { o.val_data = v; others++; }
        else if (!strcmp(a, "--resume")) o.resume = v;
        else if (!strcmp(a, "--loss")) {
            if (strcmp(v, "colbert") && strcmp(v, "contrastive")) {
                fprintf(stderr, "colbert: error: --loss: expected colbert or contrastive, found \"%s\"\n", v);
                return 2;
            }
            o.contrastive = !strcmp(v, "contrastive");
            others++;
        }
        else if (!strcmp(a, "--warmup") && !strcmp(v, "auto")) { o.warmup = -1; others++; }
        INT("--gpus", -1, 1024, gpus)
        INT("--batch-size", 1, 65536, o.bsize)
        INT("--accumsteps", 1, 65536, o.accumsteps)
        INT("--maxsteps", 1, 1e15, o.maxsteps)
        INT("--epochs", 1, 1e6, o.epochs)
        INT("--warmup", 0, 1e15, o.warmup)
        INT("--dim", 1, 4096, o.dim)
        INT("--doc-maxlen", 4, 1e6, o.doc_maxlen)
        INT("--query-maxlen", 4, 1e6, o.query_maxlen)
        INT("--nbits", 1, 8, o.nbits)
        else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            o.seed = strtoull(v, &end, 10);
            if (!*v || *end || errno || *v == '-') {
                fprintf(stderr, "colbert: error: --seed: expected an unsigned integer, found \"%s\"\n", v);
                bad = 1;
            }
            others++;
        }
        INT("--save-every", 1, 1e15, o.save_every)
        INT("--val-queries", 1, 1e6, o.val_queries)
        else if (!strcmp(a, "--keep-checkpoints")) { bad = num(a, v, 0, 1e6, &x); o.keep_checkpoints = (int)x; }
        else if (!strcmp(a, "--threads")) { bad = num(a, v, 0, 4096, &x); threads = (int)x; }
        else if (!strcmp(a, "--lr")) { bad = num(a, v, 1e-12, 1, &x); o.lr = x; others++; }
        else if (!strcmp(a, "--val-fraction")) { bad = num(a, v, 0, 0.99, &x); o.val_fraction = x; others++; }
        else {
            fprintf(stderr, "colbert: error: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
#undef INT
        if (bad) return 2;
    }
    if (o.resume) {
        if (others)
            fprintf(stderr, "colbert: note: --resume continues the run with its own options; only "
                    "--keep-checkpoints, --threads and --quiet apply\n");
        if (!name) name = "resumed";
        if (!pretrained) pretrained = o.resume;
    } else if (!name || !pretrained || !o.data_dir) {
        fprintf(stderr, "colbert: error: %s is required\n", !name ? "--model-name" : !pretrained ? "--pretrained" : "--data");
        usage(stderr);
        return 2;
    }
    cli_set_threads(threads);
    cb_err err = {{0}};
    trainer *t = trainer_new(name, pretrained, lang, gpus, &err);
    if (!t) { fprintf(stderr, "colbert: error: %s\n", err.msg); return 1; }
    int rc = trainer_train(t, &o, &err);
    int status = 0;
    if (rc == TRAIN_ERROR) {
        fprintf(stderr, "colbert: error: %s\n", err.msg);
        status = 1;
    } else {
        const char *p = trainer_best_path(t);
        if (!p) p = trainer_last_path(t);
        if (p) printf("%s\n", p);
        if (rc == TRAIN_INTERRUPTED) status = 128 + train_stop_signal();
    }
    trainer_free(t);
    fflush(stdout);
    return status;
}
