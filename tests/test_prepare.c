/* test_prepare.c: rng, UTF-8, the one-line JSON parser, the ColBERT file
 * readers (n-way and teacher-score lines) and prepare's rules through the C
 * API: hand-made queries for the triplet counts, then NFCorpus (BEIR train)
 * with the positives read independently (jansson) from the qrels. */
#include <jansson.h>
#include <string.h>
#include <unistd.h>

#include "data.h"
#include "fsutil.h"
#include "prepare.h"
#include "rng.h"
#include "test.h"

/* Test-only allocation: the library never exits, a test may. */
static void *must(void *p) {
    if (!p) {
        fprintf(stderr, "test_prepare: out of memory\n");
        exit(2);
    }
    return p;
}

static void test_rng(void) {
    rng a, b, c;
    cb_rng_init(&a, 42, 7);
    cb_rng_init(&b, 42, 7);
    cb_rng_init(&c, 42, 8);
    int same = 1, diff = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = cb_rng_next(&a), y = cb_rng_next(&b), z = cb_rng_next(&c);
        same &= x == y;
        diff += x != z;
    }
    CHECK(same);
    CHECK(diff == 100);
    /* cb_rng_below: in range, every value reached, roughly uniform */
    int hist[10] = {0};
    for (int i = 0; i < 100000; i++) hist[cb_rng_below(&a, 10)]++;
    for (int k = 0; k < 10; k++) CHECK_MSG(hist[k] > 9500 && hist[k] < 10500, "bucket %d: %d", k, hist[k]);
    /* the shuffle is a permutation */
    uint32_t v[1000];
    for (uint32_t i = 0; i < 1000; i++) v[i] = i;
    cb_rng_shuffle_u32(&a, v, 1000);
    uint64_t sum = 0;
    int moved = 0;
    for (uint32_t i = 0; i < 1000; i++) { sum += v[i]; moved += v[i] != i; }
    CHECK(sum == 999 * 1000 / 2 && moved > 900);
    /* a fixed value: the same on every machine (splitmix64 of a fixed state) */
    cb_rng_init(&a, 42, 1);
    uint64_t first = cb_rng_next(&a);
    cb_rng_init(&b, 42, 1);
    CHECK(first == cb_rng_next(&b));
}

static void test_utf8_json(void) {
    size_t bad;
    CHECK(cb_data_utf8_valid("plain ascii text, long enough for the fast path", 47, NULL));
    CHECK(cb_data_utf8_valid("caf\xc3\xa9 \xe2\x80\x93 \xf0\x9f\x98\x80", 14, NULL));
    CHECK(!cb_data_utf8_valid("caf\xe9", 4, &bad) && bad == 3);
    CHECK(!cb_data_utf8_valid("\xc0\xaf", 2, &bad) && bad == 0);          /* overlong */
    CHECK(!cb_data_utf8_valid("ab\xed\xa0\x80", 5, &bad) && bad == 2);    /* surrogate */
    CHECK(!cb_data_utf8_valid("\xf4\x90\x80\x80", 4, &bad));              /* > U+10FFFF */

    data_json j = {0};
    cb_err err;
    char l1[] = " [\"a\\tb\\n\\u00e9\\ud83d\\ude00\", [1, -2.5e1], {\"k\": true, \"x\": null}] ";
    CHECK(cb_data_json_parse(&j, l1, strlen(l1), &err) == 0);
    CHECK(j.nodes[0].type == DJ_ARRAY && j.nodes[0].n == 3);
    CHECK(j.nodes[1].type == DJ_STRING && j.nodes[1].len == 10 &&
          !memcmp(j.nodes[1].s, "a\tb\n\xc3\xa9\xf0\x9f\x98\x80", 10));
    size_t arr = j.nodes[1].next;
    CHECK(j.nodes[arr].type == DJ_ARRAY && j.nodes[arr + 1].is_int && j.nodes[arr + 1].i == 1);
    CHECK(j.nodes[arr + 2].num == -25.0 && !j.nodes[arr + 2].is_int);
    size_t obj = j.nodes[arr].next;
    CHECK(cb_data_json_get(&j, obj, "k") > 0 && j.nodes[cb_data_json_get(&j, obj, "k")].type == DJ_TRUE);
    CHECK(cb_data_json_get(&j, obj, "nope") < 0);
    const char *bad_lines[] = {"[1, 2", "[1 2]", "\"abc", "[\"\\x\"]", "[\"\\ud800\"]", "tru", "[1,]",
                               "{\"a\" 1}", "[01]", "\"tab\tinside\"", "[\"caf\xe9\"]", "1 2"};
    for (size_t i = 0; i < sizeof bad_lines / sizeof *bad_lines; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "%s", bad_lines[i]);
        err.msg[0] = 0;
        CHECK_MSG(cb_data_json_parse(&j, buf, strlen(buf), &err) == -1 && err.msg[0], "accepted: %s", bad_lines[i]);
    }
    cb_data_json_free(&j);
}

static const char *tmpdir(void) { return test_env("COLBERT_TMP"); }

static char *write_tmp(const char *name, const char *text) {
    char *path = cb_path_new(tmpdir(), name, NULL);
    FILE *f = fopen(path, "wb");
    CB_ASSERT(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_triples_reader(void) {
    cb_err err;
    data_triples t;
    char *p = write_tmp("nway.jsonl", "[0, 5, 6, 7]\n[1, 2, 3, 4]\n\n");
    CHECK(cb_data_triples_load(&t, p, 2, &err) == 0);
    CHECK(t.n == 2 && t.nway == 2 && !t.scores && t.qids[1] == 1 && t.pids[0] == 5 && t.pids[3] == 3);
    cb_data_triples_free(&t);
    CHECK(cb_data_triples_load(&t, p, 0, &err) == 0 && t.nway == 3 && t.pids[5] == 4);
    cb_data_triples_free(&t);
    CHECK(cb_data_triples_load(&t, p, 4, &err) == -1 && strstr(err.msg, "nway.jsonl:1: expected a query id and 4 passages"));
    free(p);
    p = write_tmp("scores.jsonl", "[3, [10, 0.9], [11, -0.5], [12, 1e-2]]\n");
    CHECK(cb_data_triples_load(&t, p, 0, &err) == 0);
    CHECK(t.n == 1 && t.nway == 3 && t.scores && t.pids[2] == 12 && t.scores[0] == 0.9f && t.scores[1] == -0.5f);
    cb_data_triples_free(&t);
    free(p);
    p = write_tmp("mixed.jsonl", "[3, [10, 0.9], [11, 0.5]]\n[4, 5, 6]\n");
    CHECK(cb_data_triples_load(&t, p, 0, &err) == -1 && strstr(err.msg, "mixed.jsonl:2: passage 1 is a bare pid"));
    free(p);
    p = write_tmp("q.tsv", "10\tfirst query\n  7\tsecond\textra\n");
    data_texts q;
    CHECK(cb_data_queries_load(&q, p, &err) == 0);
    CHECK(q.n == 2 && !q.dense && cb_data_texts_find(&q, 7) == 1 && cb_data_texts_find(&q, 8) == -1);
    size_t n;
    CHECK(!strcmp(cb_data_texts_get(&q, 1, &n), "second") && n == 6);
    cb_data_texts_free(&q);
    free(p);
    p = write_tmp("c.tsv", "0\tpassage zero\n1\tbody\ttitle\n3\tgap\n");
    CHECK(cb_data_collection_load(&q, p, &err) == -1 && strstr(err.msg, "c.tsv:3: expected passage id 2"));
    free(p);
    p = write_tmp("c2.tsv", "0\tpassage zero\n1\tbody\ttitle\n");
    CHECK(cb_data_collection_load(&q, p, &err) == 0 && q.dense && !strcmp(cb_data_texts_get(&q, 1, NULL), "title | body"));
    cb_data_texts_free(&q);
    free(p);
}

/* What a hostile training file gets: refused with FILE:LINE, never wrapped,
 * truncated or passed on. */
static void test_hostile_files(void) {
    cb_err err;
    data_texts q;
    data_triples t;
    char *p = write_tmp("q19.tsv", "1\tfine\n9999999999999999999\ttoo big\n");
    CHECK(cb_data_queries_load(&q, p, &err) == -1);
    CHECK_MSG(strstr(err.msg, "q19.tsv:2: id \"9999999999999999999\" is out of range"), "%s", err.msg);
    free(p);
    p = write_tmp("qlong.tsv", "123456789012345678901234567890\tway too big\n");
    CHECK(cb_data_queries_load(&q, p, &err) == -1 && strstr(err.msg, "qlong.tsv:1: id") && strstr(err.msg, "out of range"));
    free(p);
    p = write_tmp("qmax.tsv", "9223372036854775807\tmax\n-9223372036854775808\tmin\n-0\tzero\n");
    CHECK_MSG(cb_data_queries_load(&q, p, &err) == 0, "%s", err.msg);
    CHECK(q.n == 3 && cb_data_texts_find(&q, INT64_MAX) >= 0 && cb_data_texts_find(&q, INT64_MIN) >= 0 &&
          cb_data_texts_find(&q, 0) >= 0);
    cb_data_texts_free(&q);
    free(p);
    p = write_tmp("q-9.tsv", "-9223372036854775809\tbelow min\n");
    CHECK(cb_data_queries_load(&q, p, &err) == -1 && strstr(err.msg, "out of range"));
    free(p);
    /* a NUL byte anywhere in a line */
    p = cb_path_new(tmpdir(), "qnul.tsv", NULL);
    FILE *f = fopen(p, "wb");
    fwrite("0\tok\n1\tbad\0byte\n", 1, 17, f);
    fclose(f);
    CHECK(cb_data_queries_load(&q, p, &err) == -1);
    CHECK_MSG(strstr(err.msg, "qnul.tsv:2: a NUL byte at column 6"), "%s", err.msg);
    free(p);
    /* ids in the triples: JSON integers past int64, scores past float */
    p = write_tmp("t19.jsonl", "[0, 1, 2]\n[18446744073709551616, 1, 2]\n");
    CHECK(cb_data_triples_load(&t, p, 2, &err) == -1 && strstr(err.msg, "t19.jsonl:2: expected an integer query id"));
    free(p);
    p = write_tmp("tscore.jsonl", "[0, [1, 1e39], [2, 0.5]]\n");
    CHECK(cb_data_triples_load(&t, p, 2, &err) == -1);
    CHECK_MSG(strstr(err.msg, "tscore.jsonl:1: the score of passage 1, 1e39, is out of the float range"), "%s", err.msg);
    free(p);
    /* a number longer than the parser's buffer keeps its value */
    char line[200] = "[0, [1, 1";
    for (int i = 0; i < 80; i++) strcat(line, "0");
    strcat(line, "], [2, 0.5]]\n");
    p = write_tmp("tlong.jsonl", line);
    CHECK(cb_data_triples_load(&t, p, 2, &err) == -1 && strstr(err.msg, "out of the float range"));
    free(p);
}

/* The content hash: any split of the bytes gives the same value; one byte
 * more or different changes it. */
static void test_hash(void) {
    char text[1000];
    for (int i = 0; i < 1000; i++) text[i] = (char)(i * 7 + 3);
    data_hash a, b;
    cb_data_hash_init(&a);
    cb_data_hash_update(&a, text, 1000);
    uint64_t whole = cb_data_hash_final(&a);
    int same = 1;
    for (size_t cut = 0; cut <= 1000; cut += 37) {
        cb_data_hash_init(&b);
        cb_data_hash_update(&b, text, cut);
        for (size_t i = cut; i < 1000; i += 5) cb_data_hash_update(&b, text + i, i + 5 <= 1000 ? 5 : 1000 - i);
        same &= cb_data_hash_final(&b) == whole && b.bytes == 1000;
    }
    CHECK(same);
    cb_data_hash_init(&b);
    cb_data_hash_update(&b, text, 999);
    CHECK(cb_data_hash_final(&b) != whole);
    text[500] ^= 1;
    cb_data_hash_init(&b);
    cb_data_hash_update(&b, text, 1000);
    CHECK(cb_data_hash_final(&b) != whole);
    cb_data_hash_init(&b);
    CHECK(cb_data_hash_final(&b) != cb_data_hash_final(&(data_hash){.bytes = 0, .h = 1}));
}

static int exists(const char *dir, const char *name) {
    char *p = cb_path_new(dir, name, NULL);
    int ok = access(p, F_OK) == 0;
    free(p);
    return ok;
}

/* The three files as one set: the manifest, a mixed set refused, a stale
 * temporary removed; a first query without passages (memcpy from NULL). */
static void test_export_set(void) {
    prepare_opts o;
    cb_prepare_opts_default(&o);
    o.quiet = 1;
    o.num_new_negatives = 0;
    cb_err err;
    char *out = cb_path_new(tmpdir(), "set", NULL);
    char *tr = write_tmp("set.jsonl", "[\"q0\", [], []]\n[\"q1\", \"p1\", \"n1\"]\n[\"q2\", \"p2\", [\"n2\", \"n1\"]]\n");
    prepare *p = cb_prepare_new(&o);
    CHECK_MSG(cb_prepare_add_train(p, tr, &err) == 0, "%s", err.msg);
    CHECK_MSG(cb_prepare_run(p, &err) == 0, "%s", err.msg);
    char stale[4096], live[4096];
    cb_mkdirs(out, NULL, &err);
    snprintf(stale, sizeof stale, "%s/corpus.train.colbert.tsv.tmp.%d", out, 999999999);   /* no such pid */
    snprintf(live, sizeof live, "%s/corpus.train.colbert.tsv.tmp.1", out);               /* init runs */
    fclose(fopen(stale, "w"));
    fclose(fopen(live, "w"));
    CHECK_MSG(cb_prepare_export(p, out, &err) == 0, "%s", err.msg);
    cb_prepare_free(p);
    CHECK(access(stale, F_OK) != 0 && access(live, F_OK) == 0);
    remove(live);
    CHECK(exists(out, CB_PREPARE_MANIFEST));
    CHECK_MSG(cb_prepare_check(out, &err) == 0, "%s", err.msg);
    /* a kill between the renames: a new queries file beside the old rest */
    char *qf = cb_path_new(out, "queries.train.colbert.tsv", NULL);
    char *keep = write_tmp("set-queries.keep", "");
    FILE *f = fopen(qf, "ab");
    fputs("3\tone more query\n", f);
    fclose(f);
    CHECK(cb_prepare_check(out, &err) == -1);
    CHECK_MSG(strstr(err.msg, "set/queries.train.colbert.tsv does not match manifest.train.colbert.json") &&
              strstr(err.msg, "not one set"), "%s", err.msg);
    /* same size, other bytes */
    f = fopen(qf, "r+b");
    fputc('9', f);
    fclose(f);
    f = fopen(qf, "rb");
    char first = (char)fgetc(f);
    fclose(f);
    CHECK(first == '9');
    CHECK(cb_prepare_check(out, &err) == -1 && strstr(err.msg, "does not match"));
    /* a malformed manifest names itself; no manifest: files taken as they are */
    char *man = cb_path_new(out, CB_PREPARE_MANIFEST, NULL);
    f = fopen(man, "wb");
    fputs("{\"version\": 1, \"files\": {\"queries.train.colbert.tsv\": {\"bytes\": -1}}}", f);
    fclose(f);
    CHECK(cb_prepare_check(out, &err) == -1 && strstr(err.msg, "manifest.train.colbert.json: files.") &&
          strstr(err.msg, "must be {"));
    remove(man);
    CHECK(cb_prepare_check(out, &err) == 0);
    free(man);
    free(keep);
    free(qf);
    free(tr);
    free(out);
}

static int count_q(const uint32_t *t, size_t n, uint32_t q) {
    int c = 0;
    for (size_t i = 0; i < n; i++) c += t[3 * i] == q;
    return c;
}

/* The triplet-count rule on hand-made queries (no new negatives). */
static void test_counts(void) {
    prepare_opts o;
    cb_prepare_opts_default(&o);
    o.num_new_negatives = 0;
    prepare *p = cb_prepare_new(&o);
    cb_err err;
    char q[32], d[32];
    /* query A: 1 positive, 5 negatives -> 5; B: 3 pos, 2 neg -> min(20, 6) = 6;
     * C: 2 pos, 30 neg -> 10 per positive = 20; D: 25 pos, 3 neg -> 25;
     * E: 3 pos, 7 neg -> 6 each = 18, topped up to 20; F: only negatives -> 0 */
    const int np[6] = {1, 3, 2, 25, 3, 0}, nn[6] = {5, 2, 30, 3, 7, 4}, want[6] = {5, 6, 20, 25, 20, 0};
    for (int k = 0; k < 6; k++) {
        snprintf(q, sizeof q, "query %c", 'A' + k);
        for (int i = 0; i < np[k]; i++) {
            snprintf(d, sizeof d, "pos %d of %d", i, k);
            CHECK(cb_prepare_add_example(p, q, strlen(q), d, strlen(d), 1, &err) == 0);
        }
        for (int i = 0; i < nn[k]; i++) {
            snprintf(d, sizeof d, "neg %d of %d", i, k);
            CHECK(cb_prepare_add_example(p, q, strlen(q), d, strlen(d), 0, &err) == 0);
        }
    }
    /* a duplicate positive, and a negative that is also a positive: ignored */
    CHECK(cb_prepare_add_example(p, "query A", 7, "pos 0 of 0", 10, 1, &err) == 0);
    CHECK(cb_prepare_add_example(p, "query A", 7, "pos 0 of 0", 10, 0, &err) == 0);
    CHECK(cb_prepare_add_example(p, "query A", 7, "  ", 2, 0, &err) == -1 && strstr(err.msg, "empty passage"));
    CHECK(cb_prepare_run(p, &err) == 0);
    size_t n;
    const uint32_t *t = cb_prepare_triplets(p, &n);
    for (uint32_t k = 0; k < 6; k++) CHECK_MSG(count_q(t, n, k) == want[k], "query %c: %d triplets", 'A' + k, count_q(t, n, k));
    for (size_t i = 0; i < n; i++) {
        const char *pos = cb_prepare_passage(p, t[3 * i + 1], NULL), *neg = cb_prepare_passage(p, t[3 * i + 2], NULL);
        CHECK(!strncmp(pos, "pos", 3) && !strncmp(neg, "neg", 3));
        for (size_t k = 0; k < i; k++) CHECK(memcmp(t + 3 * k, t + 3 * i, 12));
    }
    cb_prepare_free(p);
}

/* Records and documents from memory (the Python package's way) give what the
 * same text read from files gives; errors carry the memory's name. */
static void test_from_memory(void) {
    const char *recs = "[\"q one\", \"p one\"]\n\n[\"q two\", [\"p two\", \"p three\"]]\n[\"q one\", {\"content\": \"p four\"}]\n";
    const char *docs = "{\"text\": \"d one\"}\n{\"text\": \"d two\", \"title\": \"t\"}\n\"d three\"\n";
    char *rf = write_tmp("mem_records.jsonl", recs), *df = write_tmp("mem_docs.jsonl", docs);
    prepare_opts o;
    cb_prepare_opts_default(&o);
    o.num_new_negatives = 2;
    prepare *a = cb_prepare_new(&o), *b = cb_prepare_new(&o);
    cb_err err;
    CHECK(cb_prepare_add_corpus(a, df, &err) == 0 && cb_prepare_add_train(a, rf, &err) == 0 && cb_prepare_run(a, &err) == 0);
    CHECK(cb_prepare_add_corpus_mem(b, "docs", docs, strlen(docs), &err) == 0 &&
          cb_prepare_add_train_mem(b, "raw", recs, strlen(recs), &err) == 0 && cb_prepare_run(b, &err) == 0);
    size_t na, nb;
    const uint32_t *ta = cb_prepare_triplets(a, &na), *tb = cb_prepare_triplets(b, &nb);
    CHECK(na == nb && na > 0 && !memcmp(ta, tb, na * 3 * sizeof(uint32_t)));
    CHECK(cb_prepare_n_passages(a) == 7 && cb_prepare_n_passages(b) == 7);
    for (uint32_t i = 0; i < cb_prepare_n_passages(a); i++)
        CHECK(!strcmp(cb_prepare_passage(a, i, NULL), cb_prepare_passage(b, i, NULL)));
    cb_prepare_free(a);
    cb_prepare_free(b);
    b = cb_prepare_new(&o);
    CHECK(cb_prepare_add_train_mem(b, "raw", "", 0, &err) == -1 && strstr(err.msg, "raw: empty file"));
    const char *bad = "[\"q\", \"p\"]\n[\"q\", 3]";   /* no newline at the end */
    CHECK(cb_prepare_add_train_mem(b, "raw", bad, strlen(bad), &err) == -1 && strstr(err.msg, "raw:2: field 2"));
    cb_prepare_free(b);
    free(rf);
    free(df);
}

/* NFCorpus, BEIR train split: the rules against qrels read with jansson. */
typedef struct kv {
    const char *key;
    const char *val;
} kv;

static int kv_cmp(const void *a, const void *b) { return strcmp(((const kv *)a)->key, ((const kv *)b)->key); }

static kv *load_map(const char *path, int with_title, size_t *n) {
    FILE *f = fopen(path, "r");
    CB_ASSERT(f);
    size_t cap = 8192;
    kv *m = must(malloc(cap * sizeof *m));
    char *line = NULL;
    size_t lcap = 0;
    *n = 0;
    while (getline(&line, &lcap, f) > 0) {
        json_t *o = json_loads(line, 0, NULL);
        CB_ASSERT(o);
        const char *title = with_title ? json_string_value(json_object_get(o, "title")) : NULL;
        const char *text = json_string_value(json_object_get(o, "text"));
        char *v = must(malloc(strlen(text) + (title ? strlen(title) : 0) + 2));
        if (title && *title) sprintf(v, "%s %s", title, text);
        else strcpy(v, text);
        if (*n == cap) m = must(realloc(m, (cap *= 2) * sizeof *m));
        m[*n].key = must(strdup(json_string_value(json_object_get(o, "_id"))));
        m[(*n)++].val = v;
        json_decref(o);
    }
    free(line);
    fclose(f);
    qsort(m, *n, sizeof *m, kv_cmp);
    return m;
}

static const char *lookup(const kv *m, size_t n, const char *key) {
    kv k = {key, NULL};
    kv *r = bsearch(&k, m, n, sizeof *m, kv_cmp);
    return r ? r->val : NULL;
}

static void free_map(kv *m, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free((char *)m[i].key);
        free((char *)m[i].val);
    }
    free(m);
}

static int pair_cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_beir_rules(void) {
    const char *data = test_env("COLBERT_DATASETS");
    char *dir = cb_path_new(data, "nfcorpus", NULL), *cpath = cb_path_new(dir, "corpus.jsonl", NULL),
         *qpath = cb_path_new(dir, "queries.jsonl", NULL), *rpath = cb_path_new(dir, "qrels/train.tsv", NULL);
    char *out = cb_path_new(tmpdir(), "prepare_c_beir", NULL);
    prepare_opts o;
    cb_prepare_opts_default(&o);
    o.quiet = 1;
    prepare *p = cb_prepare_new(&o);
    cb_err err;
    CHECK(cb_prepare_add_beir(p, dir, "train", &err) == 0);
    CHECK(cb_prepare_run(p, &err) == 0);
    CHECK(cb_prepare_export(p, out, &err) == 0);

    /* Read our files back with data.c and index texts -> ids. */
    char *fq = cb_path_new(out, "queries.train.colbert.tsv", NULL);
    char *fc = cb_path_new(out, "corpus.train.colbert.tsv", NULL);
    char *ft = cb_path_new(out, "triples.train.colbert.jsonl", NULL);
    data_texts Q, Cc;
    data_triples T;
    CHECK(cb_data_queries_load(&Q, fq, &err) == 0);
    CHECK(cb_data_collection_load(&Cc, fc, &err) == 0);
    CHECK(cb_data_triples_load(&T, ft, 2, &err) == 0);
    CHECK(Q.n == cb_prepare_n_queries(p) && Cc.n == cb_prepare_n_passages(p) && (int64_t)T.n == cb_prepare_get_stats(p)->triplets);
    kv *qi = must(malloc(Q.n * sizeof *qi)), *ci = must(malloc(Cc.n * sizeof *ci));
    char (*ids)[24] = must(malloc((Q.n + Cc.n) * sizeof *ids));
    for (size_t i = 0; i < Q.n; i++) {
        snprintf(ids[i], 24, "%zu", i);
        qi[i] = (kv){cb_data_texts_get(&Q, i, NULL), ids[i]};
    }
    for (size_t i = 0; i < Cc.n; i++) {
        snprintf(ids[Q.n + i], 24, "%zu", i);
        ci[i] = (kv){cb_data_texts_get(&Cc, i, NULL), ids[Q.n + i]};
    }
    qsort(qi, Q.n, sizeof *qi, kv_cmp);
    qsort(ci, Cc.n, sizeof *ci, kv_cmp);

    /* Positive (qid, pid) pairs from the qrels, through the texts. NFCorpus
     * texts have no tabs or newlines, so they are unchanged in our files. */
    size_t nc, nq;
    kv *corpus = load_map(cpath, 1, &nc), *queries = load_map(qpath, 0, &nq);
    FILE *f = fopen(rpath, "r");
    char line[512];
    size_t npairs = 0, cap = 1 << 17;
    uint64_t *pairs = must(malloc(cap * sizeof *pairs));
    int missing = 0;
    CB_ASSERT(fgets(line, sizeof line, f));   /* header */
    while (fgets(line, sizeof line, f)) {
        char qid[128], did[128];
        int score;
        if (sscanf(line, "%127[^\t]\t%127[^\t]\t%d", qid, did, &score) != 3 || score <= 0) continue;
        const char *qt = lookup(queries, nq, qid), *dt = lookup(corpus, nc, did);
        const char *qn = qt ? lookup(qi, Q.n, qt) : NULL, *dn = dt ? lookup(ci, Cc.n, dt) : NULL;
        if (!qn || !dn) { missing++; continue; }
        if (npairs == cap) pairs = must(realloc(pairs, (cap *= 2) * sizeof *pairs));
        pairs[npairs++] = (uint64_t)strtoull(qn, NULL, 10) << 32 | strtoull(dn, NULL, 10);
    }
    fclose(f);
    CHECK_MSG(missing == 0, "%d qrels texts not found in our files", missing);
    qsort(pairs, npairs, sizeof *pairs, pair_cmp);
    size_t u = 0;
    for (size_t i = 0; i < npairs; i++)
        if (!u || pairs[i] != pairs[u - 1]) pairs[u++] = pairs[i];
    npairs = u;

    /* Every positive is a positive, no negative is; counts per query. */
    int *cnt = must(calloc(Q.n, sizeof *cnt)), *npos = must(calloc(Q.n, sizeof *npos));
    for (size_t i = 0; i < npairs; i++) npos[pairs[i] >> 32]++;
    int bad_pos = 0, bad_neg = 0;
    for (size_t i = 0; i < T.n; i++) {
        uint64_t q = (uint64_t)T.qids[i];
        uint64_t kp = q << 32 | (uint64_t)T.pids[2 * i], kn = q << 32 | (uint64_t)T.pids[2 * i + 1];
        bad_pos += !bsearch(&kp, pairs, npairs, sizeof *pairs, pair_cmp);
        bad_neg += bsearch(&kn, pairs, npairs, sizeof *pairs, pair_cmp) != NULL;
        cnt[q]++;
    }
    CHECK_MSG(bad_pos == 0, "%d triplets whose positive is not a qrels positive", bad_pos);
    CHECK_MSG(bad_neg == 0, "%d triplets whose negative is a positive of the query", bad_neg);
    int bad_count = 0, many = 0, few = 0;
    for (size_t q = 0; q < Q.n; q++) {
        int P = npos[q], N = (int)Cc.n - P < 10 ? (int)Cc.n - P : 10, want;
        if (P == 1) want = N;
        else {
            int npp = 20 / P > 1 ? 20 / P : 1, per = npp < N ? npp : N;
            want = P * per >= 20 ? P * per : (P * N < 20 ? P * N : 20);
        }
        bad_count += cnt[q] != want;
        many += P > 20;
        few += P > 1 && P < 20;
    }
    CHECK_MSG(bad_count == 0, "%d queries with the wrong number of triplets", bad_count);
    CHECK(many > 0 && few > 0);

    /* The same run again: the same triplets. */
    prepare *p2 = cb_prepare_new(&o);
    CHECK(cb_prepare_add_beir(p2, dir, "train", &err) == 0 && cb_prepare_run(p2, &err) == 0);
    size_t n1, n2;
    const uint32_t *t1 = cb_prepare_triplets(p, &n1), *t2 = cb_prepare_triplets(p2, &n2);
    CHECK(n1 == n2 && !memcmp(t1, t2, n1 * 12));
    cb_prepare_free(p2);

    free(cnt); free(npos); free(pairs); free(qi); free(ci); free(ids);
    free_map(corpus, nc);
    free_map(queries, nq);
    cb_data_texts_free(&Q); cb_data_texts_free(&Cc); cb_data_triples_free(&T);
    free(fq); free(fc); free(ft); free(out); free(dir); free(cpath); free(qpath); free(rpath);
    cb_prepare_free(p);
}

int main(void) {
    test_rng();
    test_utf8_json();
    test_triples_reader();
    test_hostile_files();
    test_hash();
    test_export_set();
    test_counts();
    test_from_memory();
    test_beir_rules();
    return test_finish("test_prepare");
}
