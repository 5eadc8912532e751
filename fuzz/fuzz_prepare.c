/* fuzz_prepare.c: the readers of `colbert prepare` (prepare_read.c: JSONL
 * and TSV training records, corpus files; beir.c: BEIR directories), then
 * the preparation itself (grouping, random negatives, triplets) on what
 * they accepted. The first byte holds the options:
 *   bits 0-1  0: part 0 is the training file, part 1 corpus.jsonl
 *             1: the same with corpus.tsv; 2: with corpus.txt (plain)
 *             3: a BEIR directory: parts 0, 1, 2 are corpus.jsonl,
 *                queries.jsonl and qrels/train.tsv
 *   bits 2-3  the kind: auto, pairs, labeled pairs, triplets
 *   bits 4-5  new negatives per query: 0, 1, 3, 10
 *   bit 6     --no-title
 * The rest is cut at FUZZ_SEP into the parts. */
#include "fuzz.h"
#include "prepare.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *NAMES[] = {"train.data", "corpus.jsonl", "corpus.tsv", "corpus.txt", "queries.jsonl",
                              "qrels/train.tsv", "qrels"};
static void cleanup(void) { fuzz_cleanup_dir(fuzz_dir("prepare"), NAMES, 7); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int once;
    const char *dir = fuzz_dir("prepare");
    if (!once) {
        once = 1;
        char q[512];
        fuzz_path(q, sizeof q, dir, "qrels");
        mkdir(q, 0700);
        atexit(cleanup);
    }
    if (size < 1) return 0;
    int opt = data[0];
    fuzz_part parts[3];
    int n = fuzz_split(data + 1, size - 1, parts, 3);
    static const int negs[4] = {0, 1, 3, 10};
    prepare_opts o;
    cb_prepare_opts_default(&o);
    o.kind = (prepare_kind)((opt >> 2) & 3);
    o.num_new_negatives = negs[(opt >> 4) & 3];
    o.no_title = (opt >> 6) & 1;
    o.quiet = 1;
    prepare *p = cb_prepare_new(&o);
    if (!p) return 0;
    cb_err err;
    int rc;
    char path[512];
    if ((opt & 3) == 3) {
        fuzz_write_part(dir, "corpus.jsonl", parts, n, 0);
        fuzz_write_part(dir, "queries.jsonl", parts, n, 1);
        fuzz_write_part(dir, "qrels/train.tsv", parts, n, 2);
        rc = cb_prepare_add_beir(p, dir, "train", &err);
    } else {
        static const char *corpus[3] = {"corpus.jsonl", "corpus.tsv", "corpus.txt"};
        const char *cname = corpus[opt & 3];
        fuzz_write_part(dir, "train.data", parts, n, 0);
        fuzz_write_part(dir, cname, parts, n, 1);
        rc = 0;
        if (n > 1) {
            fuzz_path(path, sizeof path, dir, cname);
            rc = cb_prepare_add_corpus(p, path, &err);
        }
        fuzz_path(path, sizeof path, dir, "train.data");
        if (!rc) rc = cb_prepare_add_train(p, path, &err);
    }
    if (!rc && cb_prepare_run(p, &err) == 0) {
        /* every triplet names a known query and two distinct passages */
        size_t nt;
        const uint32_t *t = cb_prepare_triplets(p, &nt);
        size_t nq = cb_prepare_n_queries(p), np = cb_prepare_n_passages(p);
        for (size_t i = 0; i < nt; i++)
            if (t[3 * i] >= nq || t[3 * i + 1] >= np || t[3 * i + 2] >= np || t[3 * i + 1] == t[3 * i + 2]) abort();
        size_t len;
        for (size_t q = 0; q < nq; q++) cb_prepare_query(p, (uint32_t)q, &len);
        for (size_t d = 0; d < np; d++) cb_prepare_passage(p, (uint32_t)d, &len);
    }
    cb_prepare_free(p);
    return 0;
}
