/* cli_prepare.c: `colbert prepare`, the command line of prepare.h. */
#include "cli.h"
#include "common.h"
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
"  --no-mining              random negatives from the collection. Hard-negative mining\n"
"                           is not available yet: without this flag prepare says so\n"
"                           and uses random negatives too\n"
"\n"
"output:\n"
"  --out DIR                output directory (created if missing); files are written\n"
"                           under temporary names and renamed when complete\n"
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
    const char *train[MAX_FILES], *corpus[MAX_FILES], *beir = NULL, *split = "train", *out = NULL;
    int ntrain = 0, ncorpus = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--no-mining")) { o.negatives = PREPARE_NEG_RANDOM; continue; }
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
        } else if (!strcmp(a, "--kind")) {
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
    if (o.negatives == PREPARE_NEG_MINED && o.num_new_negatives > 0) {
        /* No miner yet (a later issue plugs one in through o.miner). */
        if (!o.quiet)
            fprintf(stderr, "colbert: note: hard-negative mining is not available yet: using random "
                    "negatives (--no-mining silences this note)\n");
        o.negatives = PREPARE_NEG_RANDOM;
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
    }
    prepare_free(p);
    return 0;
}
