/* train.c: `colbert train`, the command line of train.h. */
#include "args.h"
#include "cli.h"
#include "common.h"
#include "train.h"

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
"  --pretrained M           a ColBERT checkpoint, colbert-ai's or PyLate's (fine-tune:\n"
"                           its projection, settings and markers are kept) or an\n"
"                           encoder of a supported family (a new ColBERT); a\n"
"                           directory or a hub id in the local HF cache\n"
"  --language CODE          language of the data, kept in the metadata (default en)\n"
"  --gpus N                 GPUs to use (default -1: a GPU if there is one; 0: the\n"
"                           CPU; colbert.c trains on one GPU)\n"
"  --device D               auto, cpu, cuda or cuda:N (default: as --gpus says)\n"
"  --precision P            on a GPU: bf16 (default: bf16 matmul inputs, fp32\n"
"                           accumulation, fp32 master weights) or fp32 (no TF32)\n"
"\n"
"training (RAGTrainer.train's defaults):\n"
"  --data DIR               the training files (required)\n"
"  --batch-size N           triples per step (default 32)\n"
"  --accumsteps N           micro-batches per step, gradients add up (default 1)\n"
"  --maxsteps N             at most this many steps (default 500000)\n"
"  --epochs N               passes over the triples (default 1: file order;\n"
"                           later passes reshuffle, seeded)\n"
"  --lr X                   peak learning rate (default 5e-6)\n"
"  --warmup N|auto          linear warmup steps (default auto: 10%% of the steps\n"
"                           this run takes; the rate then falls linearly to 0 at\n"
"                           the run's last step)\n"
"  --schedule run|ragatouille\n"
"                           run (default): warmup, decay and --save-every from the\n"
"                           steps this run takes; ragatouille: RAGatouille's\n"
"                           arithmetic (warmup 10%% of the steps the data allows,\n"
"                           decay to 0 at --maxsteps, a checkpoint every tenth)\n"
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
"  --ib-scope global|local  under mpirun: in-batch negatives over the whole\n"
"                           global batch, exact as one process (global, the\n"
"                           default), or each rank's own documents only\n"
"                           (local: colbert-ai's per-GPU loss)\n"
"  --seed N                 seed of the projection, dropout and shuffles (default 12345)\n"
"\n");
    fprintf(f,
"checkpoints and validation:\n"
"  --output-dir DIR         where runs go (default checkpoints)\n"
"  --save-every N           steps between checkpoints (default: a fifth of the run)\n"
"  --keep-checkpoints N     newest checkpoints kept, besides the best (default 3,\n"
"                           or the resumed run's; 0 keeps all)\n"
"  --val-data DIR           validation triples (same three files); default: hold\n"
"                           out --val-fraction of the training queries\n"
"  --val-fraction X         (default 0.05; 0: no validation, the last checkpoint\n"
"                           is the best)\n"
"  --val-queries N          at most this many held-out queries (default 128)\n"
"  --val-beir DIR           validate on a BEIR dataset's split instead (graded\n"
"                           qrels), e.g. NFCorpus dev\n"
"  --val-split S            the split of --val-beir (default dev)\n"
"  --val-docs N             documents the validation queries are ranked among:\n"
"                           the judged ones plus a seeded sample (default 2000)\n"
"                           Each checkpoint ranks the validation queries by exact\n"
"                           MaxSim; the best checkpoint has the highest nDCG@10.\n"
"  --resume DIR             continue from a checkpoint (its run's options; the\n"
"                           result is bit-identical to an uninterrupted run)\n"
"  --overwrite              replace an earlier run of OUTPUT_DIR/NAME (finished\n"
"                           or not: its checkpoints, log and curve are deleted);\n"
"                           without it such a directory is refused\n"
"\n"
"  --threads N              threads (default: all cores)\n"
"  --quiet                  no progress line\n"
"  -h, --help               this help\n"
"\n"
"Ctrl-C (SIGINT) or SIGTERM: the current step ends, a resumable checkpoint is\n"
"written, exit status 130 / 143.\n"
"\n"
"Data parallel: mpirun -np N colbert train ... splits every batch over N\n"
"processes (N must divide the batch size / accumsteps); rank 0 writes the\n"
"checkpoints and the log. See docs/train.md (MPI).\n");
}

enum { OPT_MODEL_NAME = 256, OPT_PRETRAINED, OPT_LANGUAGE, OPT_GPUS, OPT_DATA, OPT_BATCH_SIZE, OPT_ACCUMSTEPS,
       OPT_MAXSTEPS, OPT_EPOCHS, OPT_LR, OPT_WARMUP, OPT_DIM, OPT_DOC_MAXLEN, OPT_QUERY_MAXLEN, OPT_NBITS,
       OPT_NO_IB_NEGATIVES, OPT_LOSS, OPT_RELU, OPT_NO_DROPOUT, OPT_SEED, OPT_OUTPUT_DIR, OPT_SAVE_EVERY,
       OPT_KEEP_CHECKPOINTS, OPT_VAL_DATA, OPT_VAL_FRACTION, OPT_VAL_QUERIES, OPT_RESUME, OPT_THREADS, OPT_QUIET,
       OPT_SCHEDULE, OPT_VAL_BEIR, OPT_VAL_SPLIT, OPT_VAL_DOCS, OPT_DEVICE, OPT_PRECISION, OPT_IB_SCOPE,
       OPT_OVERWRITE };
static const struct option TRAIN_OPTS[] = {
    {"model-name", required_argument, NULL, OPT_MODEL_NAME},
    {"pretrained", required_argument, NULL, OPT_PRETRAINED},
    {"language", required_argument, NULL, OPT_LANGUAGE},
    {"gpus", required_argument, NULL, OPT_GPUS},
    {"data", required_argument, NULL, OPT_DATA},
    {"batch-size", required_argument, NULL, OPT_BATCH_SIZE},
    {"accumsteps", required_argument, NULL, OPT_ACCUMSTEPS},
    {"maxsteps", required_argument, NULL, OPT_MAXSTEPS},
    {"epochs", required_argument, NULL, OPT_EPOCHS},
    {"lr", required_argument, NULL, OPT_LR},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"dim", required_argument, NULL, OPT_DIM},
    {"doc-maxlen", required_argument, NULL, OPT_DOC_MAXLEN},
    {"query-maxlen", required_argument, NULL, OPT_QUERY_MAXLEN},
    {"nbits", required_argument, NULL, OPT_NBITS},
    {"no-ib-negatives", no_argument, NULL, OPT_NO_IB_NEGATIVES},
    {"loss", required_argument, NULL, OPT_LOSS},
    {"relu", no_argument, NULL, OPT_RELU},
    {"no-dropout", no_argument, NULL, OPT_NO_DROPOUT},
    {"ib-scope", required_argument, NULL, OPT_IB_SCOPE},
    {"seed", required_argument, NULL, OPT_SEED},
    {"output-dir", required_argument, NULL, OPT_OUTPUT_DIR},
    {"save-every", required_argument, NULL, OPT_SAVE_EVERY},
    {"keep-checkpoints", required_argument, NULL, OPT_KEEP_CHECKPOINTS},
    {"val-data", required_argument, NULL, OPT_VAL_DATA},
    {"val-fraction", required_argument, NULL, OPT_VAL_FRACTION},
    {"val-queries", required_argument, NULL, OPT_VAL_QUERIES},
    {"schedule", required_argument, NULL, OPT_SCHEDULE},
    {"val-beir", required_argument, NULL, OPT_VAL_BEIR},
    {"val-split", required_argument, NULL, OPT_VAL_SPLIT},
    {"val-docs", required_argument, NULL, OPT_VAL_DOCS},
    {"resume", required_argument, NULL, OPT_RESUME},
    {"overwrite", no_argument, NULL, OPT_OVERWRITE},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"device", required_argument, NULL, OPT_DEVICE},
    {"precision", required_argument, NULL, OPT_PRECISION},
    {"help", no_argument, NULL, 'h'},
    {0, 0, 0, 0}};

#define MAXSTEPS_MAX 1000000000000000LL   /* 1e15: bounds of the step counts */

int cli_train(int argc, char **argv) {
    train_opts o;
    cb_train_opts_default(&o);
    const char *name = NULL, *pretrained = NULL, *lang = "en";
    int gpus = -1, threads = 0;
    int others = 0;   /* options that set the run up: --resume ignores them */
    cli_args a;
    cli_args_init(&a, "train", argc, argv, TRAIN_OPTS);
    for (int c; (c = cli_args_next(&a)) != -1;) {
        const char *v = a.arg;
        long long n = 0;
        double x = 0;
        int bad = 0;
        switch (c) {
        case 'h': usage(stdout); return 0;
        /* what --resume keeps using */
        case OPT_MODEL_NAME: name = v; break;
        case OPT_RESUME: o.resume = v; break;
        case OPT_KEEP_CHECKPOINTS: bad = cli_args_int(&a, 0, 1000000, &n); o.keep_checkpoints = (int)n; break;
        case OPT_THREADS: bad = cli_args_int(&a, 0, 4096, &n); threads = (int)n; break;
        case OPT_QUIET: o.quiet = 1; break;
        case OPT_DEVICE:   /* allowed with --resume: a run may continue on another device */
            if (!cli_device_ok(v)) return cli_args_bad_value(&a, "auto, cpu, cuda or cuda:N");
            o.device = v;
            break;
        case OPT_PRECISION:
            if (cb_ops_precision_parse(v, &o.precision)) return cli_args_bad_value(&a, "bf16 or fp32");
            break;
        /* the run's own settings */
        case OPT_PRETRAINED: pretrained = v; others++; break;
        case OPT_LANGUAGE: lang = v; others++; break;
        case OPT_DATA: o.data_dir = v; others++; break;
        case OPT_OVERWRITE: o.overwrite = 1; others++; break;
        case OPT_OUTPUT_DIR: o.output_dir = v; others++; break;
        case OPT_VAL_DATA: o.val_data = v; others++; break;
        case OPT_VAL_BEIR: o.val_beir = v; others++; break;
        case OPT_VAL_SPLIT: o.val_split = v; others++; break;
        case OPT_VAL_DOCS: bad = cli_args_int(&a, 1, 100000000, &n); o.val_docs = (int)n; others++; break;
        case OPT_SCHEDULE:
            if (strcmp(v, "run") && strcmp(v, "ragatouille")) return cli_args_bad_value(&a, "run or ragatouille");
            o.ragatouille_schedule = !strcmp(v, "ragatouille");
            others++;
            break;
        case OPT_NO_IB_NEGATIVES: o.use_ib_negatives = 0; others++; break;
        case OPT_RELU: o.relu = 1; others++; break;
        case OPT_NO_DROPOUT: o.dropout = 0; others++; break;
        case OPT_IB_SCOPE:
            if (strcmp(v, "global") && strcmp(v, "local")) return cli_args_bad_value(&a, "global or local");
            o.ib_local = !strcmp(v, "local");
            others++;
            break;
        case OPT_LOSS:
            if (strcmp(v, "colbert") && strcmp(v, "contrastive"))
                return cli_args_bad_value(&a, "colbert or contrastive");
            o.contrastive = !strcmp(v, "contrastive");
            others++;
            break;
        case OPT_WARMUP:
            if (!strcmp(v, "auto")) o.warmup = -1;
            else if (v[strspn(v, "0123456789")]) return cli_args_bad_value(&a, "an integer >= 0 or auto");
            else if (!(bad = cli_args_int(&a, 0, MAXSTEPS_MAX, &n))) o.warmup = (long)n;
            others++;
            break;
        case OPT_GPUS: bad = cli_args_int(&a, -1, 1024, &n); gpus = (int)n; others++; break;
        case OPT_BATCH_SIZE: bad = cli_args_int(&a, 1, 65536, &n); o.bsize = (int)n; others++; break;
        case OPT_ACCUMSTEPS: bad = cli_args_int(&a, 1, 65536, &n); o.accumsteps = (int)n; others++; break;
        case OPT_MAXSTEPS: bad = cli_args_int(&a, 1, MAXSTEPS_MAX, &n); o.maxsteps = (long)n; others++; break;
        case OPT_EPOCHS: bad = cli_args_int(&a, 1, 1000000, &n); o.epochs = (int)n; others++; break;
        case OPT_DIM: bad = cli_args_int(&a, 1, 4096, &n); o.dim = (int)n; others++; break;
        case OPT_DOC_MAXLEN: bad = cli_args_int(&a, 4, 1000000, &n); o.doc_maxlen = (int)n; others++; break;
        case OPT_QUERY_MAXLEN: bad = cli_args_int(&a, 4, 1000000, &n); o.query_maxlen = (int)n; others++; break;
        case OPT_NBITS: bad = cli_args_int(&a, 1, 8, &n); o.nbits = (int)n; others++; break;
        case OPT_SEED: bad = cli_args_u64(&a, &o.seed); others++; break;
        case OPT_SAVE_EVERY: bad = cli_args_int(&a, 1, MAXSTEPS_MAX, &n); o.save_every = (long)n; others++; break;
        case OPT_VAL_QUERIES: bad = cli_args_int(&a, 1, 1000000, &n); o.val_queries = (int)n; others++; break;
        case OPT_LR: bad = cli_args_float(&a, 1e-12, 1, &x); o.lr = x; others++; break;
        case OPT_VAL_FRACTION: bad = cli_args_float(&a, 0, 0.99, &x); o.val_fraction = x; others++; break;
        default: return CLI_USAGE;
        }
        if (bad) return CLI_USAGE;
    }
    if (cli_args_positional(&a, NULL, 0) < 0) return CLI_USAGE;
    if (o.resume) {
        if (others)
            fprintf(stderr, "colbert: note: --resume continues the run with its own options; only "
                    "--keep-checkpoints, --threads and --quiet apply\n");
        if (!name) name = "resumed";
        if (!pretrained) pretrained = o.resume;
    } else if (o.val_beir && o.val_data) {
        return cli_usage_error(a.cmd, "--val-beir and --val-data exclude each other");
    } else if (!name || !pretrained || !o.data_dir) {
        return cli_usage_error(a.cmd, "missing required option '%s'",
                               !name ? "--model-name" : !pretrained ? "--pretrained" : "--data");
    }
    cli_set_threads(threads);
    cb_comm *comm = cb_comm_world();
    o.comm = comm;
    cb_err err = {{0}};
    trainer *t = cb_trainer_new(name, pretrained, lang, gpus, &err);
    if (!t) { fprintf(stderr, "colbert: error: %s\n", err.msg); return 1; }
    int rc = cb_trainer_train(t, &o, &err);
    int status = 0;
    if (rc == TRAIN_ERROR) {
        /* data parallel: the other ranks printed their own errors */
        if (!comm->rank) fprintf(stderr, "colbert: error: %s\n", err.msg);
        status = 1;
    } else {
        const char *p = cb_trainer_best_path(t);
        if (!p) p = cb_trainer_last_path(t);
        if (p && !comm->rank) printf("%s\n", p);
        if (rc == TRAIN_INTERRUPTED) status = 128 + cb_train_stop_signal();
    }
    cb_trainer_free(t);
    fflush(stdout);
    return status;
}
