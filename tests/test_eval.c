/* test_eval.c: the pieces of `colbert eval` through the C API:
 *   - eval_ranker against a brute-force MaxSim on vectors with exact float
 *     arithmetic (small multiples of 1/4), so scores tie often and the tie
 *     order is checked too; several query batches, chunks, empty documents,
 *     depth above and below the document count;
 *   - cb_eval_score on hand-computed rankings (graded nDCG, MRR, recall, a query
 *     without relevant documents);
 *   - cb_eval_data_load on small BEIR directories (title join, CRLF, header,
 *     duplicate judgements, max_queries) and its error messages;
 *   - run files: written, read back, trec_eval's tie order. */
#include <string.h>
#include <sys/stat.h>

#include "eval.h"
#include "test.h"

/* ---- ranking ------------------------------------------------------------- */

static uint64_t rs = 88172645463325252ull;
static uint32_t rnd(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (uint32_t)(rs >> 11);
}

static const float *bf_score;
static const uint32_t *bf_tie;
static int bf_cmp(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    if (bf_score[x] != bf_score[y]) return bf_score[x] > bf_score[y] ? -1 : 1;
    return bf_tie[x] < bf_tie[y] ? -1 : bf_tie[x] > bf_tie[y];
}

static void test_ranker(int nq, int nd, int depth, int max_docs) {
    const int Lq = 8, D = 16;
    float *qv = malloc((size_t)nq * Lq * D * sizeof(float));
    int *len = malloc((size_t)nd * sizeof(int));
    size_t *off = malloc(((size_t)nd + 1) * sizeof(size_t));
    off[0] = 0;
    for (int i = 0; i < nd; i++) {
        len[i] = i % 37 == 5 ? 0 : (int)(rnd() % 40) + 1;
        off[i + 1] = off[i] + (size_t)len[i];
    }
    float *dv = malloc((off[nd] + 1) * D * sizeof(float));
    for (size_t i = 0; i < (size_t)nq * Lq * D; i++) qv[i] = ((int)(rnd() % 5) - 2) * 0.25f;
    for (size_t i = 0; i < off[nd] * D; i++) dv[i] = ((int)(rnd() % 5) - 2) * 0.25f;
    uint32_t *tie = malloc((size_t)nd * sizeof(uint32_t));
    for (int i = 0; i < nd; i++) tie[i] = (uint32_t)i;
    for (int i = nd - 1; i > 0; i--) {
        int j = (int)(rnd() % (uint32_t)(i + 1));
        uint32_t t = tie[i]; tie[i] = tie[j]; tie[j] = t;
    }
    eval_ranker r;
    CHECK(cb_eval_ranker_init(&r, qv, tie, nq, Lq, D, depth, max_docs, 40) == 0);
    /* chunks of varying size, at most max_docs */
    for (int s = 0, k = 0; s < nd; k++) {
        int n = k % 2 ? max_docs : max_docs / 3 + 1;
        if (n > nd - s) n = nd - s;
        cb_eval_ranker_add(&r, dv + off[s] * D, len + s, s, n);
        s += n;
    }
    int32_t *top = malloc((size_t)nq * depth * sizeof(int32_t));
    float *ts = malloc((size_t)nq * depth * sizeof(float));
    cb_eval_ranker_finish(&r, top, ts);
    cb_eval_ranker_free(&r);

    float *sc = malloc((size_t)nd * sizeof(float));
    int *order = malloc((size_t)nd * sizeof(int));
    int bad = 0, ties = 0;
    for (int q = 0; q < nq; q++) {
        for (int i = 0; i < nd; i++) {
            float s = 0;
            for (int a = 0; a < Lq; a++) {
                float m = -9999.0f;
                for (size_t t = off[i]; t < off[i + 1]; t++) {
                    float dot = 0;
                    for (int c = 0; c < D; c++) dot += qv[((size_t)q * Lq + a) * D + c] * dv[t * D + c];
                    if (t == off[i] || dot > m) m = dot;
                }
                s += m;
            }
            sc[i] = s;
            order[i] = i;
        }
        bf_score = sc;
        bf_tie = tie;
        qsort(order, (size_t)nd, sizeof(int), bf_cmp);
        for (int k = 0; k < depth; k++) {
            int want = k < nd ? order[k] : -1;
            if (top[(size_t)q * depth + k] != want) bad++;
            if (want >= 0 && ts[(size_t)q * depth + k] != sc[want]) bad++;
        }
        for (int k = 1; k < nd; k++) ties += sc[order[k]] == sc[order[k - 1]];
    }
    CHECK_MSG(bad == 0, "nq %d nd %d depth %d: %d entries differ from brute force", nq, nd, depth, bad);
    CHECK_MSG(ties > 0, "the case has no tied scores");
    free(qv); free(len); free(off); free(dv); free(tie); free(top); free(ts); free(sc); free(order);
}

/* ---- metrics ------------------------------------------------------------- */

static void test_score(void) {
    /* 3 queries over 200 documents; judgements sorted by document */
    size_t rel_off[] = {0, 3, 4, 5};
    uint32_t rel_doc[] = {0, 3, 5, 7, 150};
    int32_t rel_grade[] = {2, 1, 0, 0, 1};
    eval_data d = {0};
    d.n_docs = 200;
    d.n_queries = 3;
    d.rel_off = rel_off;
    d.rel_doc = rel_doc;
    d.rel_grade = rel_grade;
    const int depth = 120;
    int32_t top[3 * 120];
    for (int q = 0; q < 3; q++)
        for (int k = 0; k < depth; k++) top[q * depth + k] = k < 100 ? 100 - k : -1;   /* docs 100..1 */
    /* q0: d1, d3, d0 first: DCG = 1/log2(3) + 2/log2(4), ideal 2 + 1/log2(3) */
    top[0] = 1; top[1] = 3; top[2] = 0; top[97] = 98; top[99] = 100;
    top[98] = 99;
    /* q2: its relevant d150 at rank 50 */
    top[2 * depth + 49] = 150;
    eval_metrics per[3], m;
    cb_eval_score(&m, per, &d, top, depth);
    double ndcg0 = (1 / log2(3.0) + 2 / log2(4.0)) / (2 + 1 / log2(3.0));
    CHECK_MSG(fabs(per[0].ndcg10 - ndcg0) < 1e-12, "ndcg %g, want %g", per[0].ndcg10, ndcg0);
    CHECK(per[0].mrr10 == 0.5 && per[0].recall10 == 1.0 && per[0].recall100 == 1.0);
    CHECK(per[1].ndcg10 == 0 && per[1].mrr10 == 0 && per[1].recall10 == 0 && per[1].recall100 == 0);
    CHECK(per[2].ndcg10 == 0 && per[2].mrr10 == 0 && per[2].recall10 == 0 && per[2].recall100 == 1.0);
    CHECK(fabs(m.ndcg10 - ndcg0 / 3) < 1e-12 && fabs(m.recall100 - 2.0 / 3) < 1e-12);
    /* a relevant document at rank 101 is outside Recall@100 */
    top[2 * depth + 49] = 49;
    top[2 * depth + 100] = 150;
    cb_eval_score(&m, per, &d, top, depth);
    CHECK(per[2].recall100 == 0);
}

/* ---- data and run files -------------------------------------------------- */

static char tmp[512];

static void put(const char *dir, const char *name, const char *text) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    fputs(text, f);
    fclose(f);
}

static char *mkbeir(const char *name, const char *corpus, const char *queries, const char *qrels) {
    static char dir[600];
    char q[700];
    snprintf(dir, sizeof dir, "%s/%s", tmp, name);
    mkdir(dir, 0755);
    snprintf(q, sizeof q, "%s/qrels", dir);
    mkdir(q, 0755);
    put(dir, "corpus.jsonl", corpus);
    put(dir, "queries.jsonl", queries);
    if (qrels) put(dir, "qrels/test.tsv", qrels);
    return dir;
}

static const char *CORPUS =
    "{\"_id\": \"d1\", \"title\": \"Title one\", \"text\": \"text one\"}\n"
    "{\"_id\": \"d2\", \"title\": \"\", \"text\": \"text two\"}\n"
    "\n"
    "{\"_id\": 3, \"title\": \"only a title\", \"text\": \"\"}\n"
    "{\"_id\": \"d4\", \"text\": \"text four\", \"metadata\": {}}\n";
static const char *QUERIES =
    "{\"_id\": \"q1\", \"text\": \"first\"}\n"
    "{\"_id\": \"q2\", \"text\": \"second\"}\n"
    "{\"_id\": \"q3\", \"text\": \"third\"}\n";

static int load_err(const char *name, const char *corpus, const char *queries, const char *qrels,
                    const char *want) {
    eval_data d;
    cb_err err = {{0}};
    char *dir = mkbeir(name, corpus, queries, qrels);
    int rc = cb_eval_data_load(&d, dir, "test", 0, &err);
    int ok = rc == -1 && strstr(err.msg, want) != NULL;
    if (!ok) fprintf(stderr, "  %s: rc %d, message \"%s\", want \"%s\"\n", name, rc, err.msg, want);
    if (rc == 0) cb_eval_data_free(&d);
    return ok;
}

static void test_data(void) {
    eval_data d;
    cb_err err = {{0}};
    const char *qrels = "query-id\tcorpus-id\tscore\r\nq2\td4\t1\r\nq1\td1\t2\r\nq2\t3\t0\r\nq1\td1\t1\r\n\r\n";
    char *dir = mkbeir("ok", CORPUS, QUERIES, qrels);
    CHECK(cb_eval_data_load(&d, dir, "test", 0, &err) == 0);
    CHECK(d.n_docs == 4 && d.n_queries == 2);
    CHECK(!strcmp(d.doc_text[0], "Title one text one") && d.doc_len[0] == 18);
    CHECK(!strcmp(d.doc_text[1], "text two") && !strcmp(d.doc_text[2], "only a title"));
    CHECK(!strcmp(d.doc_id[2], "3") && cb_eval_doc_index(&d, "3", 1) == 2 && cb_eval_doc_index(&d, "d5", 2) == -1);
    /* queries in order of first appearance in the qrels */
    CHECK(!strcmp(d.query_id[0], "q2") && !strcmp(d.query_id[1], "q1") && !strcmp(d.query_text[1], "first"));
    /* q2: d4 (1) and 3 (0); q1: d1 once, the later line's grade */
    CHECK(d.rel_off[1] == 2 && d.rel_off[2] == 3);
    CHECK(d.rel_doc[2] == 0 && d.rel_grade[2] == 1);
    /* ties: descending id order d4 > d2 > d1 > 3 */
    CHECK(d.doc_tie[3] == 0 && d.doc_tie[1] == 1 && d.doc_tie[0] == 2 && d.doc_tie[2] == 3);

    /* run files: written, read back; trec_eval's order on equal scores */
    int32_t top[2 * 4] = {3, 1, -1, -1, 0, 2, 1, 3};
    float ts[2 * 4] = {5, 4, 0, 0, 1.5f, 1.25f, 1, 0.5f};
    char run[700];
    snprintf(run, sizeof run, "%s/a.run", tmp);
    CHECK(cb_eval_write_run(run, &d, top, ts, 4, 4, "t", &err) == 0);
    int32_t *back;
    CHECK(cb_eval_read_run(&back, &d, run, 4, &err) == 0);
    CHECK(!memcmp(back, top, sizeof top));
    free(back);
    /* the first 1 of rows of 4 */
    CHECK(cb_eval_write_run(run, &d, top, ts, 4, 1, "t", &err) == 0);
    CHECK(cb_eval_read_run(&back, &d, run, 4, &err) == 0);
    CHECK(back[0] == 3 && back[1] == -1 && back[4] == 0 && back[5] == -1);
    free(back);
    put(tmp, "b.run", "q1 Q0 d1 1 2 x\nq1 Q0 d4 2 2 x\nq9 Q0 d1 1 1 x\nq1 Q0 3 3 7 x\nq1 Q0 d2 4 2 x\n");
    snprintf(run, sizeof run, "%s/b.run", tmp);
    CHECK(cb_eval_read_run(&back, &d, run, 3, &err) == 0);
    CHECK(back[0] == -1);                                     /* q2 has no line */
    CHECK(back[3] == 2 && back[4] == 3 && back[5] == 1);      /* 3 (7), then d4, d2 (2), cut at 3 */
    free(back);
    put(tmp, "c.run", "q1 Q0 d1 1 2 x\nq1 Q0 d1 2 1 x\n");
    snprintf(run, sizeof run, "%s/c.run", tmp);
    CHECK(cb_eval_read_run(&back, &d, run, 3, &err) == -1 && strstr(err.msg, "twice"));
    put(tmp, "c.run", "q1 Q0 d7 1 2 x\n");
    CHECK(cb_eval_read_run(&back, &d, run, 3, &err) == -1 && strstr(err.msg, "c.run:1: doc-id \"d7\" is not in"));
    cb_eval_data_free(&d);

    /* max_queries */
    CHECK(cb_eval_data_load(&d, dir, "test", 1, &err) == 0);
    CHECK(d.n_queries == 1 && d.rel_off[1] == 2);
    cb_eval_data_free(&d);

    /* errors name the file, the line and what is wrong */
    CHECK(cb_eval_data_load(&d, "/nonexistent/beir", "test", 0, &err) == -1 && strstr(err.msg, "not a directory"));
    CHECK(cb_eval_data_load(&d, dir, "dev", 0, &err) == -1 && strstr(err.msg, "no split \"dev\"") &&
          strstr(err.msg, "the splits there: test"));
    CHECK(load_err("e1", CORPUS, QUERIES, "q1\td9\t1\n", "test.tsv:1: corpus-id \"d9\" is not in"));
    CHECK(load_err("e2", CORPUS, QUERIES, "h\th\th\nq7\td1\t1\n", "test.tsv:2: query-id \"q7\" is not in"));
    CHECK(load_err("e3", CORPUS, QUERIES, "q1\td1\n", "test.tsv:1: expected \"query-id<TAB>corpus-id<TAB>score\""));
    CHECK(load_err("e4", CORPUS, QUERIES, "q1\td1\t1\nq1\td2\thigh\n", "test.tsv:2: expected an integer grade"));
    CHECK(load_err("e5", CORPUS, QUERIES, "query-id\tcorpus-id\tscore\n", "no judgement"));
    CHECK(load_err("e6", "{\"_id\": \"d1\", \"text\": \"a\"}\n{\"_id\": \"d1\", \"text\": \"b\"}\n", QUERIES,
                   "q1\td1\t1\n", "_id \"d1\" appears twice"));
    CHECK(load_err("e7", "{\"_id\": \"d1\", \"title\": \"a\"}\n", QUERIES, "q1\td1\t1\n",
                   "corpus.jsonl:1: expected a \"text\" string"));
    CHECK(load_err("e8", "{\"_id\": \"d1\", \"text\": \"a\"\n", QUERIES, "q1\td1\t1\n", "corpus.jsonl:1: "));
    CHECK(load_err("e9", "", QUERIES, "q1\td1\t1\n", "corpus.jsonl: empty file"));
    CHECK(load_err("e10", CORPUS, QUERIES, NULL, "no split \"test\""));
    /* TREC qrels ("qid 0 docid grade") are read as well */
    dir = mkbeir("trec", CORPUS, QUERIES, "q3 0 d2 1\nq3 0 d1 0\n");
    CHECK(cb_eval_data_load(&d, dir, "test", 0, &err) == 0 && d.n_queries == 1 && d.rel_off[1] == 2);
    cb_eval_data_free(&d);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "%s/test_eval", test_env("COLBERT_TMP"));
    mkdir(tmp, 0755);
    test_ranker(45, 300, 50, 64);    /* two query batches, five chunks */
    test_ranker(3, 20, 32, 8);       /* depth above the document count */
    test_ranker(33, 101, 1, 101);    /* one chunk, depth 1 */
    test_score();
    test_data();
    return test_finish("test_eval");
}
