/* eval.c: `colbert eval`: nDCG@10, MRR@10, Recall@10 and Recall@100 of a
 * ColBERT model (or of a TREC run file) on a BEIR dataset split. */
#include "args.h"
#include "cli.h"
#include "comm.h"
#include "colmodel.h"
#include "encoder.h"
#include "eval.h"
#include "miner.h"
#include "progress.h"

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

/* documents encoded and ranked at a time: bounds the vectors held */
#define EVAL_CHUNK 256

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

static void report(const eval_metrics *m, const eval_data *d, const char *dataset, const char *split,
                   const char *model, size_t doc_vectors, const double *t, int with_times) {
    fprintf(stderr, "\n%-12s %s (%s): %zu queries, %zu documents\n", "dataset", dataset, split, d->n_queries,
            d->n_docs);
    fprintf(stderr, "%-12s %s\n", "model", model);
    fprintf(stderr, "  %-11s %.4f\n  %-11s %.4f\n  %-11s %.4f\n  %-11s %.4f\n", "nDCG@10", m->ndcg10, "MRR@10",
            m->mrr10, "Recall@10", m->recall10, "Recall@100", m->recall100);
    if (with_times)
        fprintf(stderr, "%-12s data %.1f s, model %.1f s, queries %.1f s, documents %.1f s (%.0f docs/s), "
                "MaxSim %.1f s, total %.1f s\n", "time", t[0], t[1], t[2], t[3],
                t[3] > 0 ? d->n_docs / t[3] : 0.0, t[4], t[5]);
    else
        fprintf(stderr, "%-12s %.1f s\n", "time", t[5]);
    printf("{\"ndcg@10\": %.17g, \"mrr@10\": %.17g, \"recall@10\": %.17g, \"recall@100\": %.17g, "
           "\"queries\": %zu, \"documents\": %zu", m->ndcg10, m->mrr10, m->recall10, m->recall100, d->n_queries,
           d->n_docs);
    if (with_times) printf(", \"doc_vectors\": %zu", doc_vectors);
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

/* The dense ranking: sentence embeddings of the corpus and the queries
 * (the model's pooling, unit length), exact cosine top D per query.
 * t[1..4]: model, queries, documents, search seconds. */
static int dense_rank(const char *model, const eval_data *d, int D, int max_len, int quiet, int32_t **top,
                      float **top_score, double *t, cb_err *err) {
    double t1 = cb_now();
    encoder e;
    if (cb_encoder_load(&e, cb_ops_cpu(), model, max_len, err)) return -1;
    e.quiet = quiet;
    t[1] = cb_now() - t1;
    size_t nq = d->n_queries, nd = d->n_docs, H = (size_t)e.bert.cfg.hidden_size;
    float *q = cb_malloc((nq ? nq : 1) * H * sizeof(float), "the query embeddings", err);
    float *dv = q ? cb_malloc((nd ? nd : 1) * H * sizeof(float), "the document embeddings", err) : NULL;
    *top = dv ? cb_malloc((nq ? nq : 1) * (size_t)D * sizeof(int32_t), "the ranking", err) : NULL;
    *top_score = *top ? cb_malloc((nq ? nq : 1) * (size_t)D * sizeof(float), "the ranking", err) : NULL;
    int rc = *top_score ? 0 : -1;
    if (!rc) {
        t1 = cb_now();
        rc = cb_encoder_embed(&e, d->query_text, d->query_len, (int)nq, q, err);
        t[2] = cb_now() - t1;
    }
    if (!rc) {
        t1 = cb_now();
        rc = cb_encoder_embed(&e, d->doc_text, d->doc_len, (int)nd, dv, err);
        t[3] = cb_now() - t1;
    }
    if (!rc) {
        t1 = cb_now();
        cb_miner_normalize(q, nq, (int)H);
        cb_miner_normalize(dv, nd, (int)H);
        if (cb_miner_topk_exact(*top, *top_score, q, nq, dv, nd, (int)H, D))
            rc = cb_err_set(err, "out of memory: the dense search");
        t[4] = cb_now() - t1;
    }
    free(q);
    free(dv);
    cb_encoder_free(&e);
    return rc;
}

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
    /* under mpirun: the ranks split the encoding and the ranking; rank 0 reports */
    cb_comm *comm = cb_comm_world();
    int root = comm->rank == 0;
    if (!root) quiet = 1;
    double t[6] = {0}, t0 = cb_now(), t1;
    cb_err err = {{0}};
    eval_data d;
    if (cb_eval_data_load(&d, dataset, split, (size_t)max_queries, &err)) {
        fprintf(stderr, "colbert: error: %s\n", err.msg);
        return 1;
    }
    t[0] = cb_now() - t0;
    int D = 100 > depth ? 100 : (int)depth;   /* ranked per query: at least the metrics' 100 */
    int32_t *top = NULL;
    float *top_score = NULL, *qv = NULL;
    size_t doc_vectors = 0;
    int ret = 1;
    eval_metrics m;
    colmodel cm;
    memset(&cm, 0, sizeof cm);
    if (score_run) {
        if (cb_eval_read_run(&top, &d, score_run, D, &err)) {
            fprintf(stderr, "colbert: error: %s\n", err.msg);
            goto done;
        }
        cb_eval_score(&m, NULL, &d, top, D);
        t[5] = cb_now() - t0;
        if (root) report(&m, &d, dataset, split, score_run, 0, t, 0);
        ret = 0;
        goto done;
    }

    if (dense) {
        if (dense_rank(model, &d, D, (int)doc_maxlen, quiet, &top, &top_score, t, &err)) {
            fprintf(stderr, "colbert: error: %s\n", err.msg);
            goto done;
        }
        cb_eval_score(&m, NULL, &d, top, D);
        if (run && cb_eval_write_run(run, &d, top, top_score, D, (int)depth, "colbert.c-dense", &err)) {
            fprintf(stderr, "colbert: error: %s\n", err.msg);
            goto done;
        }
        t[5] = cb_now() - t0;
        report(&m, &d, dataset, split, model, 0, t, 1);
        ret = 0;
        goto done;
    }
    t1 = cb_now();
    if (!(dev = cli_open_device(device, precision))) goto done;
    if (cb_colmodel_load(&cm, dev, model, (int)dim, (uint64_t)seed, &err)) {
        fprintf(stderr, "colbert: error: %s\n", err.msg);
        goto done;
    }
    int maxpos = cm.bert.cfg.max_position_embeddings;
    if (doc_maxlen > maxpos || query_maxlen > maxpos) {
        fprintf(stderr, "colbert: error: --%s-maxlen %lld: the model has %d positions\n",
                doc_maxlen > maxpos ? "doc" : "query", doc_maxlen > maxpos ? doc_maxlen : query_maxlen, maxpos);
        goto done;
    }
    if (doc_maxlen) cm.cc.doc_maxlen = (int)doc_maxlen;
    if (query_maxlen) cm.cc.query_maxlen = (int)query_maxlen;
    cm.quiet = quiet;
    t[1] = cb_now() - t1;
    if (!quiet)
        fprintf(stderr, "colbert eval: %s (%s): %zu queries, %zu documents; %s %s (query_maxlen %d, "
                "doc_maxlen %d, dim %d)\n", dataset, split, d.n_queries, d.n_docs,
                cm.is_colbert ? "ColBERT" : "new ColBERT from", cm.dir, cm.cc.query_maxlen, cm.cc.doc_maxlen,
                cm.cc.dim);

    /* queries: all of them at once, [nq, Lq, dim]; with several ranks each
     * encodes a share (whole encoding batches: the same bytes) and all get
     * every query */
    t1 = cb_now();
    int nq = (int)d.n_queries, Lq = cm.cc.query_maxlen, dimq = cm.cc.dim;
    qv = cb_xmalloc(((size_t)(nq ? nq : 1) * Lq * dimq) * sizeof(float));
    size_t q0, q1, per_q = (size_t)Lq * dimq;
    cb_comm_share(comm, comm->rank, (size_t)nq, (size_t)cb_colmodel_queries_per_batch(&cm), &q0, &q1);
    if (cb_colmodel_encode_queries(&cm, d.query_text + q0, d.query_len + q0, (int)(q1 - q0), qv + q0 * per_q, &err)) {
        fprintf(stderr, "colbert: error: %s\n", err.msg);
        goto done;
    }
    if (comm->size > 1) {
        size_t *counts = cb_xmalloc((size_t)comm->size * sizeof(size_t)), ra, rz;
        for (int r = 0; r < comm->size; r++) {
            cb_comm_share(comm, r, (size_t)nq, (size_t)cb_colmodel_queries_per_batch(&cm), &ra, &rz);
            counts[r] = (rz - ra) * per_q;
        }
        cb_comm_allgatherv(comm, qv, qv + q0 * per_q, counts, COMM_F32);
        free(counts);
    }
    t[2] = cb_now() - t1;

    /* documents: encoded and ranked a chunk at a time (with several ranks,
     * rank k takes the chunks k, k + N, ...; the rankings merge) */
    eval_ranker rk;
    if (cb_eval_ranker_init(&rk, qv, d.doc_tie, nq, Lq, dimq, D, EVAL_CHUNK, cm.cc.doc_maxlen)) {
        fprintf(stderr, "colbert: error: out of memory for the ranking of %d queries\n", nq);
        goto done;
    }
    progress pg;
    cb_progress_init(&pg, "encode + MaxSim", "docs", (int64_t)d.n_docs, quiet);
    cm.quiet = 1;   /* one bar for the whole corpus, not one per chunk */
    size_t chunk = 0;
    for (size_t s = 0; s < d.n_docs; s += EVAL_CHUNK, chunk++) {
        if (chunk % (size_t)comm->size != (size_t)comm->rank) continue;
        int n = d.n_docs - s < EVAL_CHUNK ? (int)(d.n_docs - s) : EVAL_CHUNK;
        int *lengths;
        float *vectors;
        t1 = cb_now();
        if (cb_colmodel_encode_docs(&cm, d.doc_text + s, d.doc_len + s, n, &lengths, &vectors, &err)) {
            fprintf(stderr, "colbert: error: %s\n", err.msg);
            cb_eval_ranker_free(&rk);
            goto done;
        }
        double t2 = cb_now();
        t[3] += t2 - t1;
        cb_eval_ranker_add(&rk, vectors, lengths, (int)s, n);
        t[4] += cb_now() - t2;
        for (int i = 0; i < n; i++) doc_vectors += (size_t)lengths[i];
        free(lengths);
        free(vectors);
        cb_progress_update(&pg, (int64_t)(s + (size_t)n));
    }
    cb_progress_finish(&pg);
    top = cb_xmalloc((size_t)(nq ? nq : 1) * D * sizeof(int32_t));
    top_score = cb_xmalloc((size_t)(nq ? nq : 1) * D * sizeof(float));
    t1 = cb_now();
    cb_eval_ranker_finish(&rk, top, top_score);
    cb_eval_ranker_free(&rk);
    if (comm->size > 1) {
        if (cb_eval_merge_ranks(comm, top, top_score, nq, D, d.doc_tie, &err)) {
            fprintf(stderr, "colbert: error: %s\n", err.msg);
            goto done;
        }
        int64_t dv = (int64_t)doc_vectors;
        cb_comm_allreduce(comm, &dv, 1, COMM_I64, COMM_SUM);
        doc_vectors = (size_t)dv;
        cb_comm_allreduce(comm, t + 2, 3, COMM_F64, COMM_MAX);   /* the slowest rank's times */
    }
    t[4] += cb_now() - t1;
    cb_eval_score(&m, NULL, &d, top, D);
    if (run && root && cb_eval_write_run(run, &d, top, top_score, D, (int)depth, "colbert.c", &err)) {
        fprintf(stderr, "colbert: error: %s\n", err.msg);
        goto done;
    }
    t[5] = cb_now() - t0;
    if (root) report(&m, &d, dataset, split, model, doc_vectors, t, 1);
    ret = 0;
done:
    if (cm.dir) cb_colmodel_free(&cm);
    cb_ops_close(dev);
    free(qv);
    free(top);
    free(top_score);
    cb_eval_data_free(&d);
    return ret;
}
