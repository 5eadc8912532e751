/* prepare.c: `colbert prepare`, the command line of prepare.h. */
#include "cli.h"
#include "common.h"
#include "miner.h"
#include "prepare.h"

#include <errno.h>
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
"\n"
"output:\n"
"  --out DIR                output directory (created if missing); files are written\n"
"                           under temporary names and renamed when complete\n"
"  --threads N              threads for mining (default: all cores)\n"
"  --quiet                  no progress bars, notes or summary\n"
"  -h, --help               this help\n");
}

static int parse_int(const char *opt, const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "colbert: error: %s: expected an integer in [%lld, %lld], found \"%s\"\n",
                opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

#define MAX_FILES 64


int cli_prepare(int argc, char **argv) {
    prepare_opts o;
    prepare_opts_default(&o);
    o.negatives = PREPARE_NEG_MINED;   /* the reference's default */
    miner_opts mo;
    miner_opts_default(&mo);
    const char *train[MAX_FILES], *corpus[MAX_FILES], *beir = NULL, *split = "train", *out = NULL;
    int ntrain = 0, ncorpus = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--no-mining")) { o.negatives = PREPARE_NEG_RANDOM; continue; }
        if (!strcmp(a, "--mine-hard-negatives")) { o.negatives = PREPARE_NEG_MINED; continue; }
        if (!strcmp(a, "--no-title")) { o.no_title = 1; continue; }
        if (!strcmp(a, "--quiet")) { o.quiet = 1; continue; }
        if (i + 1 >= argc || strncmp(a, "--", 2)) {
            fprintf(stderr, "colbert: error: %s: %s\n", a,
                    strncmp(a, "--", 2) ? "unexpected argument" : "missing value");
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        long long n;
        if (!strcmp(a, "--train-data") || !strcmp(a, "--corpus")) {
            int is_train = a[2] == 't';
            if ((is_train ? ntrain : ncorpus) == MAX_FILES) {
                fprintf(stderr, "colbert: error: %s: at most %d files\n", a, MAX_FILES);
                return 2;
            }
            if (is_train) train[ntrain++] = v;
            else corpus[ncorpus++] = v;
        } else if (!strcmp(a, "--beir")) beir = v;
        else if (!strcmp(a, "--split")) split = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--title-sep")) o.title_sep = v;
        else if (!strcmp(a, "--positive-label")) o.positive_label = v;
        else if (!strcmp(a, "--negative-label")) o.negative_label = v;
        else if (!strcmp(a, "--num-new-negatives")) {
            if (parse_int(a, v, 0, 1000000, &n)) return 2;
            o.num_new_negatives = (int)n;
        } else if (!strcmp(a, "--seed")) {
            if (parse_int(a, v, 0, INT64_MAX, &n)) return 2;
            o.seed = (uint64_t)n;
        } else if (!strcmp(a, "--threads")) {
            if (parse_int(a, v, 1, 4096, &n)) return 2;
            threads = (int)n;
        } else if (!strcmp(a, "--miner-model")) mo.model = v;
        else if (!strcmp(a, "--miner-size")) {
            if (!miner_default_model("en", v)) {
                fprintf(stderr, "colbert: error: --miner-size: expected small, base or large, found \"%s\"\n", v);
                return 2;
            }
            mo.size = v;
        } else if (!strcmp(a, "--language")) mo.language = v;
        else if (!strcmp(a, "--hard-negative-min-rank")) {
            if (parse_int(a, v, 0, 1000000, &n)) return 2;
            mo.min_rank = (int)n;
        } else if (!strcmp(a, "--miner-index")) {
            if (!strcmp(v, "auto")) mo.index = MINER_INDEX_AUTO;
            else if (!strcmp(v, "exact")) mo.index = MINER_INDEX_EXACT;
            else if (!strcmp(v, "ivf") || !strcmp(v, "approx")) mo.index = MINER_INDEX_IVF;
            else {
                fprintf(stderr, "colbert: error: --miner-index: expected auto, exact or ivf, found \"%s\"\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--miner-approx-docs")) {
            if (parse_int(a, v, 0, INT64_MAX, &n)) return 2;
            mo.approx_min_docs = (size_t)n;
        } else if (!strcmp(a, "--miner-nprobe")) {
            if (parse_int(a, v, 1, INT32_MAX, &n)) return 2;
            mo.ivf_nprobe = (int)n;
        } else if (!strcmp(a, "--save-embeddings")) mo.save_dir = v;
        else if (!strcmp(a, "--load-embeddings")) mo.load_dir = v;
        else if (!strcmp(a, "--kind")) {
            if (!strcmp(v, "auto")) o.kind = PREPARE_KIND_AUTO;
            else if (!strcmp(v, "pairs")) o.kind = PREPARE_KIND_PAIRS;
            else if (!strcmp(v, "labeled") || !strcmp(v, "labeled_pairs")) o.kind = PREPARE_KIND_LABELED;
            else if (!strcmp(v, "triplets")) o.kind = PREPARE_KIND_TRIPLETS;
            else {
                fprintf(stderr, "colbert: error: --kind: expected auto, pairs, labeled or triplets, "
                        "found \"%s\"\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "colbert: error: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if ((!ntrain && !beir) || !out) {
        fprintf(stderr, "colbert: error: %s\n", !out ? "--out DIR is required"
                        : "give the training data: --train-data FILE or --beir DIR");
        usage(stderr);
        return 2;
    }
    if (!strcmp(o.positive_label, o.negative_label)) {
        fprintf(stderr, "colbert: error: --positive-label and --negative-label are both \"%s\"\n",
                o.positive_label);
        return 2;
    }
    /* The miner finds its model before any data is read: a missing model
     * fails at once, with the name and how to provide it. */
    cli_set_threads(threads);
    miner m = {0};
    prepare_miner hook = {0};
    int mining = o.negatives == PREPARE_NEG_MINED && o.num_new_negatives > 0;
    if (mining) {
        cb_err merr = {{0}};
        mo.quiet = o.quiet;
        mo.seed = o.seed;
        if (miner_init(&m, &mo, &merr)) {
            fprintf(stderr, "colbert: error: %s\n", merr.msg);
            return 1;
        }
        hook = miner_hook(&m);
        o.miner = &hook;
    }

    double t0 = cb_now();
    cb_err err = {{0}};
    prepare *p = prepare_new(&o);
    int rc = 0;
    for (int i = 0; i < ncorpus && !rc; i++) rc = prepare_add_corpus(p, corpus[i], &err);
    if (!rc && beir) rc = prepare_add_beir(p, beir, split, &err);
    for (int i = 0; i < ntrain && !rc; i++) rc = prepare_add_train(p, train[i], &err);
    if (!rc) rc = prepare_run(p, &err);
    if (!rc) rc = prepare_export(p, out, &err);
    if (rc) {
        fprintf(stderr, "colbert: error: %s\n", err.msg);
        prepare_free(p);
        if (mining) miner_free(&m);
        return 1;
    }
    const prepare_stats *s = prepare_get_stats(p);
    if (!o.quiet) {
        printf("prepare: %s, %lld records -> %lld queries, %lld documents, %lld triplets\n",
               prepare_kind_name(s->kind), (long long)s->records, (long long)s->queries,
               (long long)s->passages, (long long)s->triplets);
        printf("prepare: %lld of %lld queries have triplets; negatives per query %.1f (min %lld, "
               "max %lld), %lld new (%s); %.2f s -> %s\n",
               (long long)s->queries_with_triplets, (long long)s->queries, s->neg_mean,
               (long long)s->neg_min, (long long)s->neg_max, (long long)s->new_negatives,
               s->mined ? "mined" : "random", cb_now() - t0, out);
        if (mining) miner_report(&m, stdout);
    }
    prepare_free(p);
    if (mining) miner_free(&m);
    return 0;
}
