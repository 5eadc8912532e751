/* prepare.c: `colbert prepare`, the command line of prepare.h. */
#include "args.h"
#include "cli.h"
#include "comm.h"
#include "common.h"
#include "job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
"usage: colbert prepare (--train-data FILE | --beir DIR [--split NAME]) --out DIR [options]\n"
"\n"
"Turn pairs, labeled pairs or triplets into ColBERT training files (RAGatouille's\n"
"prepare_training_data): OUT/queries.train.colbert.tsv, OUT/corpus.train.colbert.tsv\n"
"and OUT/triples.train.colbert.jsonl, read unchanged by colbert-ai's trainer.\n"
"\n"
"input:\n"
"  --train-data FILE        records, one a line: JSONL lists [\"query\", \"passage\"],\n"
"                           [\"query\", \"passage\", label] or [\"query\", \"positive\",\n"
"                           \"negative\"] (a passage may be a list of strings or\n"
"                           {\"content\": \"...\"}), or TSV with the same columns\n"
"  --beir DIR               a BEIR dataset (corpus.jsonl, queries.jsonl, qrels/):\n"
"                           the qrels lines with score > 0 are the pairs, the whole\n"
"                           corpus joins the collection\n"
"  --split NAME             BEIR qrels split (default train)\n"
"  --corpus FILE            extra documents for the collection and for negatives:\n"
"                           JSONL {\"text\", \"title\"}, TSV id<TAB>text, or plain text\n"
"                           one document a line (repeatable)\n"
"  --title-sep STR          between title and text of BEIR/JSONL documents (default \" \")\n"
"  --no-title               text only, leave the titles out\n"
"\n"
"semantics:\n"
"  --kind K                 auto (default), pairs, labeled or triplets; auto: 2 fields\n"
"                           are pairs, 3 fields labeled pairs when the third is a\n"
"                           number or one of the labels, else triplets\n"
"  --positive-label L       label of a positive in labeled pairs (default 1)\n"
"  --negative-label L       label of a negative (default 0); an integer label also\n"
"                           matches JSON numbers and true/false, other text matches\n"
"                           strings\n"
"  --num-new-negatives N    new negatives per query (default 10; 0: only the given ones)\n"
"  --seed N                 seed of every random choice (default 42): the same input\n"
"                           and seed give byte-identical files\n"
"\n"
"hard-negative mining (RAGatouille's SimpleMiner; on by default):\n"
"  --mine-hard-negatives    the new negatives of a query are documents its dense\n"
"                           embedding ranks near it, ranks [min rank, max rank),\n"
"                           max rank = min(110, documents / 10) (default)\n"
"  --no-mining              random negatives from the collection instead\n"
"  --miner-model M          the dense model: a sentence-transformers directory or a\n"
"                           hub id in the local Hugging Face cache (default by\n"
"                           --language and --miner-size: en BAAI/bge-SIZE-en-v1.5,\n"
"                           zh thenlper/gte-SIZE-zh, fr OrdalieTech/Solon-embeddings-\n"
"                           {base,base,large}-0.1, other intfloat/multilingual-e5-SIZE)\n"
"  --miner-size S           small (default), base or large\n"
"  --language L             language code of the data (default en)\n"
"  --hard-negative-min-rank N  first rank kept as a candidate (default 10)\n"
"  --miner-index K          auto (default: exact below --miner-approx-docs documents,\n"
"                           else ivf), exact (blocked SGEMM) or ivf (approximate)\n"
"  --miner-approx-docs N    collection size from which auto uses ivf (default 250000)\n"
"  --miner-nprobe N         ivf lists scanned per query (default: about 24 x max rank\n"
"                           documents, at least 1/8 of the lists)\n"
"  --save-embeddings DIR    write the embeddings (docs.npy, queries.npy), the ranked\n"
"                           lists (neighbors.npy, scores.npy) and miner.json to DIR\n"
"  --load-embeddings DIR    reuse DIR's embeddings (same texts) instead of encoding\n"
"  --device D               where the miner encodes: auto (default: a GPU if there\n"
"                           is one, else the CPU), cpu, cuda or cuda:N\n"
"  --precision P            on a GPU: bf16 (default) or fp32 (the CPU's negatives)\n"
"\n");
    fprintf(f,
"output:\n"
"  --out DIR                output directory (created if missing); files are written\n"
"                           under temporary names and renamed when complete\n"
"  --threads N              threads for mining (default: all cores)\n"
"  --quiet                  no progress bars, notes or summary\n"
"  -h, --help               this help\n");
}

#define MAX_FILES 64


enum { OPT_TRAIN_DATA = 256, OPT_BEIR, OPT_SPLIT, OPT_CORPUS, OPT_TITLE_SEP, OPT_NO_TITLE, OPT_KIND,
       OPT_POSITIVE_LABEL, OPT_NEGATIVE_LABEL, OPT_NUM_NEW_NEGATIVES, OPT_SEED, OPT_MINE_HARD_NEGATIVES,
       OPT_NO_MINING, OPT_MINER_MODEL, OPT_MINER_SIZE, OPT_LANGUAGE, OPT_HARD_NEGATIVE_MIN_RANK, OPT_MINER_INDEX,
       OPT_MINER_APPROX_DOCS, OPT_MINER_NPROBE, OPT_SAVE_EMBEDDINGS, OPT_LOAD_EMBEDDINGS, OPT_OUT, OPT_THREADS,
       OPT_QUIET, OPT_DEVICE, OPT_PRECISION };
static const struct option PREPARE_OPTS[] = {
    {"train-data", required_argument, NULL, OPT_TRAIN_DATA},
    {"beir", required_argument, NULL, OPT_BEIR},
    {"split", required_argument, NULL, OPT_SPLIT},
    {"corpus", required_argument, NULL, OPT_CORPUS},
    {"title-sep", required_argument, NULL, OPT_TITLE_SEP},
    {"no-title", no_argument, NULL, OPT_NO_TITLE},
    {"kind", required_argument, NULL, OPT_KIND},
    {"positive-label", required_argument, NULL, OPT_POSITIVE_LABEL},
    {"negative-label", required_argument, NULL, OPT_NEGATIVE_LABEL},
    {"num-new-negatives", required_argument, NULL, OPT_NUM_NEW_NEGATIVES},
    {"seed", required_argument, NULL, OPT_SEED},
    {"mine-hard-negatives", no_argument, NULL, OPT_MINE_HARD_NEGATIVES},
    {"no-mining", no_argument, NULL, OPT_NO_MINING},
    {"miner-model", required_argument, NULL, OPT_MINER_MODEL},
    {"miner-size", required_argument, NULL, OPT_MINER_SIZE},
    {"language", required_argument, NULL, OPT_LANGUAGE},
    {"hard-negative-min-rank", required_argument, NULL, OPT_HARD_NEGATIVE_MIN_RANK},
    {"miner-index", required_argument, NULL, OPT_MINER_INDEX},
    {"miner-approx-docs", required_argument, NULL, OPT_MINER_APPROX_DOCS},
    {"miner-nprobe", required_argument, NULL, OPT_MINER_NPROBE},
    {"save-embeddings", required_argument, NULL, OPT_SAVE_EMBEDDINGS},
    {"load-embeddings", required_argument, NULL, OPT_LOAD_EMBEDDINGS},
    {"out", required_argument, NULL, OPT_OUT},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"device", required_argument, NULL, OPT_DEVICE},
    {"precision", required_argument, NULL, OPT_PRECISION},
    {"help", no_argument, NULL, 'h'},
    {0, 0, 0, 0}};
/* title and text may be joined with nothing between */
static const char *const PREPARE_EMPTY_OK[] = {"title-sep", NULL};

int cli_prepare(int argc, char **argv) {
    prepare_job j;
    cb_prepare_job_init(&j);
    prepare_opts o = j.po;             /* mined negatives: the reference's default */
    miner_opts mo = j.mo;
    const char *train[MAX_FILES], *corpus[MAX_FILES], *beir_dir = NULL, *split = "train", *out = NULL;
    int ntrain = 0, ncorpus = 0, threads = 0;
    cli_args a;
    cli_args_init(&a, "prepare", argc, argv, PREPARE_OPTS);
    a.empty_ok = PREPARE_EMPTY_OK;
    for (int c; (c = cli_args_next(&a)) != -1;) {
        const char *v = a.arg;
        long long n;
        switch (c) {
        case 'h': usage(stdout); return 0;
        case OPT_NO_MINING: o.negatives = PREPARE_NEG_RANDOM; break;
        case OPT_MINE_HARD_NEGATIVES: o.negatives = PREPARE_NEG_MINED; break;
        case OPT_NO_TITLE: o.no_title = 1; break;
        case OPT_QUIET: o.quiet = 1; break;
        case OPT_TRAIN_DATA:
        case OPT_CORPUS:
            if ((c == OPT_TRAIN_DATA ? ntrain : ncorpus) == MAX_FILES)
                return cli_usage_error(a.cmd, "option '%s': at most %d files", a.opt, MAX_FILES);
            if (c == OPT_TRAIN_DATA) train[ntrain++] = v;
            else corpus[ncorpus++] = v;
            break;
        case OPT_BEIR: beir_dir = v; break;
        case OPT_SPLIT: split = v; break;
        case OPT_OUT: out = v; break;
        case OPT_TITLE_SEP: o.title_sep = v; break;
        case OPT_POSITIVE_LABEL: o.positive_label = v; break;
        case OPT_NEGATIVE_LABEL: o.negative_label = v; break;
        case OPT_NUM_NEW_NEGATIVES:
            if (cli_args_int(&a, 0, 1000000, &n)) return CLI_USAGE;
            o.num_new_negatives = (int)n;
            break;
        case OPT_SEED:
            if (cli_args_int(&a, 0, INT64_MAX, &n)) return CLI_USAGE;
            o.seed = (uint64_t)n;
            break;
        case OPT_THREADS:
            if (cli_args_int(&a, 1, 4096, &n)) return CLI_USAGE;
            threads = (int)n;
            break;
        case OPT_MINER_MODEL: mo.model = v; break;
        case OPT_MINER_SIZE:
            if (!cb_miner_default_model("en", v)) return cli_args_bad_value(&a, "small, base or large");
            mo.size = v;
            break;
        case OPT_LANGUAGE: mo.language = v; break;
        case OPT_HARD_NEGATIVE_MIN_RANK:
            if (cli_args_int(&a, 0, 1000000, &n)) return CLI_USAGE;
            mo.min_rank = (int)n;
            break;
        case OPT_MINER_INDEX:
            if (!strcmp(v, "auto")) mo.index = MINER_INDEX_AUTO;
            else if (!strcmp(v, "exact")) mo.index = MINER_INDEX_EXACT;
            else if (!strcmp(v, "ivf") || !strcmp(v, "approx")) mo.index = MINER_INDEX_IVF;
            else return cli_args_bad_value(&a, "auto, exact or ivf");
            break;
        case OPT_MINER_APPROX_DOCS:
            if (cli_args_int(&a, 0, INT64_MAX, &n)) return CLI_USAGE;
            mo.approx_min_docs = (size_t)n;
            break;
        case OPT_MINER_NPROBE:
            if (cli_args_int(&a, 1, INT32_MAX, &n)) return CLI_USAGE;
            mo.ivf_nprobe = (int)n;
            break;
        case OPT_SAVE_EMBEDDINGS: mo.save_dir = v; break;
        case OPT_DEVICE:
            if (!cli_device_ok(v)) return cli_args_bad_value(&a, "auto, cpu, cuda or cuda:N");
            mo.device = v;
            break;
        case OPT_PRECISION:
            if (cb_ops_precision_parse(v, &mo.precision)) return cli_args_bad_value(&a, "bf16 or fp32");
            break;
        case OPT_LOAD_EMBEDDINGS: mo.load_dir = v; break;
        case OPT_KIND:
            if (!strcmp(v, "auto")) o.kind = PREPARE_KIND_AUTO;
            else if (!strcmp(v, "pairs")) o.kind = PREPARE_KIND_PAIRS;
            else if (!strcmp(v, "labeled") || !strcmp(v, "labeled_pairs")) o.kind = PREPARE_KIND_LABELED;
            else if (!strcmp(v, "triplets")) o.kind = PREPARE_KIND_TRIPLETS;
            else return cli_args_bad_value(&a, "auto, pairs, labeled or triplets");
            break;
        default: return CLI_USAGE;
        }
    }
    if (cli_args_positional(&a, NULL, 0) < 0) return CLI_USAGE;
    if (!out) return cli_usage_error(a.cmd, "missing required option '--out'");
    if (!ntrain && !beir_dir) return cli_usage_error(a.cmd, "missing required option '--train-data' or '--beir'");
    if (!strcmp(o.positive_label, o.negative_label))
        return cli_usage_error(a.cmd, "options '--positive-label' and '--negative-label' are both '%s'",
                               o.positive_label);
    cli_set_threads(threads);
    j.po = o;
    j.mo = mo;
    j.corpus = corpus;
    j.n_corpus = ncorpus;
    j.beir = beir_dir;
    j.split = split;
    j.train = train;
    j.n_train = ntrain;
    j.out = out;
    /* under mpirun: the ranks split the mining's encoding and search; rank 0 writes */
    cb_comm *comm = j.comm = cb_comm_world();
    cb_err err = {{0}};
    if (cb_prepare_job_run(&j, &err)) {   /* the miner's model is found before any data is read */
        fprintf(stderr, "colbert: error: %s\n", err.msg);
        return 1;
    }
    const prepare_stats *s = cb_prepare_get_stats(j.p);
    if (!o.quiet && !comm->rank) {
        printf("prepare: %s, %lld records -> %lld queries, %lld documents, %lld triplets\n",
               cb_prepare_kind_name(s->kind), (long long)s->records, (long long)s->queries,
               (long long)s->passages, (long long)s->triplets);
        printf("prepare: %lld of %lld queries have triplets; negatives per query %.1f (min %lld, "
               "max %lld), %lld new (%s); %.2f s -> %s\n",
               (long long)s->queries_with_triplets, (long long)s->queries, s->neg_mean,
               (long long)s->neg_min, (long long)s->neg_max, (long long)s->new_negatives,
               s->mined ? "mined" : "random", j.seconds, out);
        if (j.mining) cb_miner_report(&j.m, stdout);
    }
    cb_prepare_job_free(&j);
    return 0;
}
