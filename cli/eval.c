/* eval.c: `colbert eval`: nDCG@10, MRR@10, Recall@10 and Recall@100 of a
 * ColBERT model (or of a TREC run file) on a BEIR dataset split. */
#include "args.h"
#include "cli.h"
#include "comm.h"
#include "job.h"

#include <limits.h>
#include <math.h>
#include <string.h>


static const char *EVAL_HELP =
    "usage: colbert eval --model M --dataset DIR [--split S] [options]\n"
    "       colbert eval --score-run FILE --dataset DIR [--split S]\n"
    "\n"
    "Rank every document of a BEIR dataset (corpus.jsonl, queries.jsonl,\n"
    "qrels/S.tsv) for each query of the split by exact ColBERT MaxSim, and report\n"
    "nDCG@10, MRR@10, Recall@10 and Recall@100 (trec_eval's definitions, graded\n"
    "relevance for nDCG): a table on stderr, one JSON object on stdout.\n"
    "Documents are \"title text\"; the queries are those with qrels in the split.\n"
    "\n"
    "options:\n"
    "  --model M          a ColBERT checkpoint, or a plain encoder (BERT, MiniLM, ...)\n"
    "                     turned into a new ColBERT with a seeded projection; a\n"
    "                     directory or a hub id from the local Hugging Face cache\n"
    "  --dataset DIR      BEIR dataset directory\n"
    "  --split S          qrels split (default: test)\n"
    "  --run FILE         also write the ranking as a TREC run file\n"
    "                     (\"qid Q0 docid rank score tag\"), written to a temporary\n"
    "                     name and renamed when complete\n"
    "  --depth N          documents per query in the run file (default 100)\n"
    "  --score-run FILE   score this TREC run file instead of a model (trec_eval's\n"
    "                     order: score descending, then docid descending)\n"
    "  --dense            rank with the model as a dense sentence encoder instead\n"
    "                     (its sentence-transformers pooling, cosine similarity,\n"
    "                     exact search; --doc-maxlen caps its tokens): the dense\n"
    "                     model a ColBERT starts from, scored by the same evaluator\n"
    "  --doc-maxlen N     tokens per document (default: the model's doc_maxlen)\n"
    "  --query-maxlen N   tokens per query (default: the model's query_maxlen)\n"
    "  --max-queries N    only the first N queries of the split\n"
    "  --dim N            projection size of a new ColBERT (default 128)\n"
    "  --seed N           seed of a new ColBERT's projection (default 12345)\n"
    CLI_DEVICE_HELP
    "                     (the ranking itself runs on the CPU)\n"
    "  --threads N        threads (default: all cores)\n"
    "  --quiet            no progress bar\n"
    "  -h, --help         this help\n";

/* s as a JSON string */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static void report(const eval_job *j, const char *model, int with_times) {
    const eval_metrics *m = &j->m;
    const char *dataset = j->dataset, *split = j->split;
    const double t[6] = {j->t_data, j->t_model, j->t_queries, j->t_docs, j->t_maxsim, j->t_total};
    fprintf(stderr, "\n%-12s %s (%s): %zu queries, %zu documents\n", "dataset", dataset, split, j->n_queries,
            j->n_docs);
    fprintf(stderr, "%-12s %s\n", "model", model);
    fprintf(stderr, "  %-11s %.4f\n  %-11s %.4f\n  %-11s %.4f\n  %-11s %.4f\n", "nDCG@10", m->ndcg10, "MRR@10",
            m->mrr10, "Recall@10", m->recall10, "Recall@100", m->recall100);
    if (with_times)
        fprintf(stderr, "%-12s data %.1f s, model %.1f s, queries %.1f s, documents %.1f s (%.0f docs/s), "
                "MaxSim %.1f s, total %.1f s\n", "time", t[0], t[1], t[2], t[3],
                t[3] > 0 ? j->n_docs / t[3] : 0.0, t[4], t[5]);
    else
        fprintf(stderr, "%-12s %.1f s\n", "time", t[5]);
    printf("{\"ndcg@10\": %.17g, \"mrr@10\": %.17g, \"recall@10\": %.17g, \"recall@100\": %.17g, "
           "\"queries\": %zu, \"documents\": %zu", m->ndcg10, m->mrr10, m->recall10, m->recall100, j->n_queries,
           j->n_docs);
    if (with_times) printf(", \"doc_vectors\": %zu", j->doc_vectors);
    printf(", \"dataset\": ");
    json_str(stdout, dataset);
    printf(", \"split\": ");
    json_str(stdout, split);
    printf(", \"model\": ");
    json_str(stdout, model);
    printf(", \"seconds\": {\"data\": %.3f", t[0]);
    if (with_times)
        printf(", \"model\": %.3f, \"queries\": %.3f, \"documents\": %.3f, \"maxsim\": %.3f", t[1], t[2], t[3],
               t[4]);
    printf(", \"total\": %.3f}}\n", t[5]);
    fflush(stdout);
}

enum { OPT_MODEL = 256, OPT_DATASET, OPT_SPLIT, OPT_RUN, OPT_DEPTH, OPT_SCORE_RUN, OPT_DOC_MAXLEN,
       OPT_QUERY_MAXLEN, OPT_MAX_QUERIES, OPT_DIM, OPT_SEED, OPT_THREADS, OPT_QUIET, OPT_DENSE, OPT_DEVICE,
       OPT_PRECISION };
static const struct option EVAL_OPTS[] = {
    {"model", required_argument, NULL, OPT_MODEL},
    {"dataset", required_argument, NULL, OPT_DATASET},
    {"split", required_argument, NULL, OPT_SPLIT},
    {"run", required_argument, NULL, OPT_RUN},
    {"depth", required_argument, NULL, OPT_DEPTH},
    {"score-run", required_argument, NULL, OPT_SCORE_RUN},
    {"doc-maxlen", required_argument, NULL, OPT_DOC_MAXLEN},
    {"query-maxlen", required_argument, NULL, OPT_QUERY_MAXLEN},
    {"max-queries", required_argument, NULL, OPT_MAX_QUERIES},
    {"dim", required_argument, NULL, OPT_DIM},
    {"seed", required_argument, NULL, OPT_SEED},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"dense", no_argument, NULL, OPT_DENSE},
    {"device", required_argument, NULL, OPT_DEVICE},
    {"precision", required_argument, NULL, OPT_PRECISION},
    {"help", no_argument, NULL, 'h'},
    {0, 0, 0, 0}};

int cli_eval(int argc, char **argv) {
    const char *model = NULL, *dataset = NULL, *split = "test", *run = NULL, *score_run = NULL;
    long long depth = 100, doc_maxlen = 0, query_maxlen = 0, max_queries = 0, dim = 0, seed = 12345, threads = 0;
    int quiet = 0, dense = 0;
    const char *device = NULL;
    ops_precision precision = OPS_BF16;
    ops_device *dev = NULL;
    cli_args a;
    cli_args_init(&a, "eval", argc, argv, EVAL_OPTS);
    for (int c; (c = cli_args_next(&a)) != -1;) {
        int bad = 0;
        switch (c) {
        case 'h': fputs(EVAL_HELP, stdout); return 0;
        case OPT_MODEL: model = a.arg; break;
        case OPT_DATASET: dataset = a.arg; break;
        case OPT_SPLIT: split = a.arg; break;
        case OPT_RUN: run = a.arg; break;
        case OPT_SCORE_RUN: score_run = a.arg; break;
        case OPT_DEPTH: bad = cli_args_int(&a, 1, 100000, &depth); break;
        case OPT_DOC_MAXLEN: bad = cli_args_int(&a, 3, 8192, &doc_maxlen); break;
        case OPT_QUERY_MAXLEN: bad = cli_args_int(&a, 4, 8192, &query_maxlen); break;
        case OPT_MAX_QUERIES: bad = cli_args_int(&a, 1, INT_MAX, &max_queries); break;
        case OPT_DIM: bad = cli_args_int(&a, 1, 65536, &dim); break;
        case OPT_SEED: bad = cli_args_int(&a, 0, LLONG_MAX, &seed); break;
        case OPT_THREADS: bad = cli_args_int(&a, 1, 4096, &threads); break;
        case OPT_QUIET: quiet = 1; break;
        case OPT_DENSE: dense = 1; break;
        case OPT_DEVICE:
            if (!cli_device_ok(a.arg)) return cli_args_bad_value(&a, "auto, cpu, cuda or cuda:N");
            device = a.arg;
            break;
        case OPT_PRECISION:
            if (cb_ops_precision_parse(a.arg, &precision)) return cli_args_bad_value(&a, "bf16 or fp32");
            break;
        default: return CLI_USAGE;
        }
        if (bad) return CLI_USAGE;
    }
    if (cli_args_positional(&a, NULL, 0) < 0) return CLI_USAGE;
    if (!dataset) return cli_usage_error(a.cmd, "missing required option '--dataset'");
    if (!model && !score_run) return cli_usage_error(a.cmd, "missing required option '--model' (or '--score-run')");
    if (model && score_run) return cli_usage_error(a.cmd, "options '--model' and '--score-run' exclude each other");
    if (dense && !model) return cli_usage_error(a.cmd, "option '--dense' needs '--model'");
    cli_set_threads((int)threads);
    eval_job j;
    cb_eval_job_init(&j);
    j.model = model;
    j.dataset = dataset;
    j.split = split;
    j.run_in = score_run;
    j.run_out = run;
    j.depth = (int)depth;
    j.doc_maxlen = (int)doc_maxlen;
    j.query_maxlen = (int)query_maxlen;
    j.max_queries = (size_t)max_queries;
    j.dim = (int)dim;
    j.seed = (uint64_t)seed;
    j.quiet = quiet;
    j.dense = dense;
    /* under mpirun: the ranks split the encoding and the ranking; rank 0 reports */
    cb_comm *comm = j.comm = cb_comm_world();
    if (model && !dense && !(dev = j.dev = cli_open_device(device, precision))) return 1;
    cb_err err = {{0}};
    int rc = cb_eval_job_run(&j, &err);
    cb_ops_close(dev);
    if (rc) {
        fprintf(stderr, "colbert: error: %s\n", err.msg);
        return 1;
    }
    if (comm->rank == 0) report(&j, score_run ? score_run : model, !score_run);
    return 0;
}
