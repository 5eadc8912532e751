/* test_miner.c: the hard-negative miner without a model (test_miner.py has
 * the real-model, real-data checks):
 *   - the default model table of SPEC section 3, max_rank, the missing-model error;
 *   - exact top-k against a double-precision brute force, tie order, padding,
 *     identical results for 1 and 2 threads;
 *   - IVF: recall@110 against exact on clustered data, all lists = exact,
 *     deterministic build for any thread count;
 *   - the prepare hook on saved embeddings: every mined negative comes from
 *     ranks [min_rank, max_rank) and is never a positive; same seed, same
 *     triplets; embeddings saved for other texts are refused. */
#include "miner.h"
#include "npy.h"
#include "prepare.h"
#include "rng.h"
#include "test.h"

#include <sys/stat.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static void set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

static float frand(rng *r) { return (float)((double)(cb_rng_next(r) >> 11) / 9007199254740992.0) * 2.0f - 1.0f; }

static void rand_unit(rng *r, float *x, size_t n, int dim) {
    for (size_t i = 0; i < n * (size_t)dim; i++) x[i] = frand(r);
    cb_knn_normalize(x, n, dim);
}

/* ---- model table -------------------------------------------------------- */
static void test_table(void) {
    CHECK(!strcmp(cb_miner_default_model("en", "small"), "BAAI/bge-small-en-v1.5"));
    CHECK(!strcmp(cb_miner_default_model("en", "base"), "BAAI/bge-base-en-v1.5"));
    CHECK(!strcmp(cb_miner_default_model("en", "large"), "BAAI/bge-large-en-v1.5"));
    CHECK(!strcmp(cb_miner_default_model("zh", "small"), "thenlper/gte-small-zh"));
    CHECK(!strcmp(cb_miner_default_model("zh", "base"), "thenlper/gte-base-zh"));
    CHECK(!strcmp(cb_miner_default_model("zh", "large"), "thenlper/gte-large-zh"));
    CHECK(!strcmp(cb_miner_default_model("fr", "small"), "OrdalieTech/Solon-embeddings-base-0.1"));
    CHECK(!strcmp(cb_miner_default_model("fr", "base"), "OrdalieTech/Solon-embeddings-base-0.1"));
    CHECK(!strcmp(cb_miner_default_model("fr", "large"), "OrdalieTech/Solon-embeddings-large-0.1"));
    CHECK(!strcmp(cb_miner_default_model("de", "small"), "intfloat/multilingual-e5-small"));
    CHECK(!strcmp(cb_miner_default_model("ja", "base"), "intfloat/multilingual-e5-base"));
    CHECK(!strcmp(cb_miner_default_model("", "large"), "intfloat/multilingual-e5-large"));
    CHECK(cb_miner_default_model("en", "tiny") == NULL);
    CHECK(cb_miner_max_rank(3633, 110) == 110);
    CHECK(cb_miner_max_rank(1100, 110) == 110);
    CHECK(cb_miner_max_rank(1099, 110) == 109);
    CHECK(cb_miner_max_rank(500, 110) == 50);
    CHECK(cb_miner_max_rank(9, 110) == 0);
    CHECK(cb_miner_max_rank(0, 110) == 0);
}

static void test_missing_model(const char *tmp) {
    char home[512];
    snprintf(home, sizeof home, "%s/empty_hf_home", tmp);
    mkdir(home, 0777);
    const char *old = getenv("HF_HOME");
    char *saved = old ? strdup(old) : NULL;
    setenv("HF_HOME", home, 1);
    miner_opts o;
    cb_miner_opts_default(&o);
    o.language = "fr";
    o.size = "large";
    miner m;
    cb_err err = {{0}};
    CHECK(cb_miner_init(&m, &o, &err) == -1);
    CHECK_MSG(strstr(err.msg, "OrdalieTech/Solon-embeddings-large-0.1") && strstr(err.msg, "--miner-model PATH") &&
              strstr(err.msg, "--no-mining"), "%s", err.msg);
    o.model = "/nonexistent/model";
    CHECK(cb_miner_init(&m, &o, &err) == -1);
    CHECK_MSG(strstr(err.msg, "/nonexistent/model") != NULL, "%s", err.msg);
    o.model = NULL;
    o.size = "huge";
    CHECK(cb_miner_init(&m, &o, &err) == -1 && strstr(err.msg, "small, base or large"));
    if (saved) setenv("HF_HOME", saved, 1);
    else unsetenv("HF_HOME");
    free(saved);
    rmdir(home);
}

/* ---- exact search --------------------------------------------------------- */
typedef struct ref_hit { double s; int id; } ref_hit;
static int ref_cmp(const void *a, const void *b) {
    const ref_hit *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return x->id - y->id;
}

/* Sorted double-precision scores of every document for query qi. */
static void brute(ref_hit *h, const float *q, const float *d, size_t nd, int dim) {
    for (size_t j = 0; j < nd; j++) {
        double s = 0;
        for (int t = 0; t < dim; t++) s += (double)q[t] * d[j * (size_t)dim + t];
        h[j].s = s;
        h[j].id = (int)j;
    }
    qsort(h, nd, sizeof *h, ref_cmp);
}

static void test_exact(void) {
    rng r;
    cb_rng_init(&r, 1, 0);
    const size_t nq = 300, nd = 5000;
    const int dim = 32, k = 110;
    float *q = malloc(nq * dim * sizeof(float)), *d = malloc(nd * dim * sizeof(float));
    rand_unit(&r, q, nq, dim);
    rand_unit(&r, d, nd, dim);
    int32_t *ids = malloc(nq * k * sizeof(int32_t)), *ids1 = malloc(nq * k * sizeof(int32_t));
    float *sc = malloc(nq * k * sizeof(float)), *sc1 = malloc(nq * k * sizeof(float));
    set_threads(2);
    CHECK(cb_knn_exact(ids, sc, q, nq, d, nd, dim, k) == 0);
    ref_hit *h = malloc(nd * sizeof *h);
    int bad_score = 0, bad_set = 0;
    double maxdiff = 0;
    for (size_t i = 0; i < nq; i++) {
        brute(h, q + i * dim, d, nd, dim);
        for (int t = 0; t < k; t++) {
            double diff = fabs(sc[i * k + t] - h[t].s);
            if (diff > maxdiff) maxdiff = diff;
            if (diff > 1e-5) bad_score++;
            /* ids equal unless the reference scores are within rounding */
            if (ids[i * k + t] != h[t].id && fabs(h[t].s - sc[i * k + t]) > 1e-5) bad_set++;
        }
        for (int t = 1; t < k; t++)
            if (sc[i * k + t] > sc[i * k + t - 1]) bad_score++;
    }
    printf("exact top-%d: %zu queries x %zu docs, max |score - brute force| %.2e\n", k, nq, nd, maxdiff);
    CHECK(bad_score == 0);
    CHECK(bad_set == 0);
    /* thread count does not change a bit */
    set_threads(1);
    CHECK(cb_knn_exact(ids1, sc1, q, nq, d, nd, dim, k) == 0);
    set_threads(2);
    CHECK(!memcmp(ids, ids1, nq * k * sizeof(int32_t)) && !memcmp(sc, sc1, nq * k * sizeof(float)));

    /* ties: identical documents rank by id; fewer documents than k pad */
    float dd[6 * 4] = {0}, qq[4] = {1, 0, 0, 0};
    dd[0 * 4 + 1] = 1;                         /* doc 0: orthogonal */
    dd[1 * 4 + 0] = 1;                         /* docs 1, 3, 4: score 1 */
    dd[3 * 4 + 0] = 1;
    dd[4 * 4 + 0] = 1;
    dd[2 * 4 + 0] = 0.5f, dd[2 * 4 + 1] = 0.5f;/* doc 2: 0.5 */
    dd[5 * 4 + 0] = -1;                        /* doc 5: -1 */
    int32_t ti[8];
    float ts[8];
    CHECK(cb_knn_exact(ti, ts, qq, 1, dd, 6, 4, 8) == 0);
    int32_t want[8] = {1, 3, 4, 2, 0, 5, -1, -1};
    CHECK(!memcmp(ti, want, sizeof want));
    CHECK(ts[0] == 1 && ts[3] == 0.5f && ts[5] == -1 && isinf(ts[6]) && ts[6] < 0);
    CHECK(cb_knn_exact(ti, ts, qq, 1, dd, 6, 4, 2) == 0);
    CHECK(ti[0] == 1 && ti[1] == 3);
    free(h);
    free(q);
    free(d);
    free(ids);
    free(ids1);
    free(sc);
    free(sc1);
}

/* ---- IVF ---------------------------------------------------------------- */
static double recall(const int32_t *a, const int32_t *b, size_t nq, int k) {
    size_t hit = 0, tot = 0;
    for (size_t i = 0; i < nq; i++)
        for (int t = 0; t < k; t++) {
            if (b[i * k + t] < 0) continue;
            tot++;
            for (int u = 0; u < k; u++)
                if (a[i * k + u] == b[i * k + t]) { hit++; break; }
        }
    return tot ? (double)hit / tot : 1.0;
}

static void test_ivf(void) {
    rng r;
    cb_rng_init(&r, 2, 0);
    /* clustered data: 100 centres, points = centre + noise */
    const size_t nd = 12000, nq = 200, nc = 100;
    const int dim = 32, k = 110;
    float *cen = malloc(nc * dim * sizeof(float)), *d = malloc(nd * dim * sizeof(float)),
          *q = malloc(nq * dim * sizeof(float));
    rand_unit(&r, cen, nc, dim);
    for (size_t i = 0; i < nd + nq; i++) {
        float *x = i < nd ? d + i * dim : q + (i - nd) * dim;
        const float *c = cen + (size_t)cb_rng_below(&r, nc) * dim;
        for (int t = 0; t < dim; t++) x[t] = c[t] + 0.25f * frand(&r);
    }
    cb_knn_normalize(d, nd, dim);
    cb_knn_normalize(q, nq, dim);
    int32_t *ex = malloc(nq * k * sizeof(int32_t)), *ap = malloc(nq * k * sizeof(int32_t));
    float *s1 = malloc(nq * k * sizeof(float)), *s2 = malloc(nq * k * sizeof(float));
    CHECK(cb_knn_exact(ex, s1, q, nq, d, nd, dim, k) == 0);
    knn_ivf ix, ix1;
    set_threads(2);
    CHECK(cb_knn_ivf_build(&ix, d, nd, dim, 0, 10, 42) == 0);
    CHECK(ix.nlist == 438);   /* round(4 sqrt(12000)) */
    CHECK(ix.list_off[ix.nlist] == nd);
    int np = cb_knn_ivf_nprobe(&ix, k);
    CHECK(cb_knn_ivf_search(&ix, ap, s2, q, nq, k, np) == 0);
    double rc = recall(ap, ex, nq, k);
    printf("ivf: nlist %d, nprobe %d: recall@%d %.4f\n", ix.nlist, np, k, rc);
    CHECK(rc >= 0.99);
    for (size_t i = 0; i < nq * k; i++)   /* every score is a true score */
        if (ap[i] >= 0) {
            double s = 0;
            for (int t = 0; t < dim; t++) s += (double)q[(i / k) * dim + t] * d[(size_t)ap[i] * dim + t];
            if (fabs(s - s2[i]) > 1e-5) { CHECK_MSG(0, "score of %d", (int)i); break; }
        }
    cb_knn_ivf_search(&ix, ap, s2, q, nq, k, ix.nlist);   /* every list: the exact lists */
    rc = recall(ap, ex, nq, k);
    CHECK_MSG(rc >= 0.9999, "recall with all lists %.5f", rc);
    /* same seed, 1 thread: the same index and the same results */
    set_threads(1);
    CHECK(cb_knn_ivf_build(&ix1, d, nd, dim, 0, 10, 42) == 0);
    set_threads(2);
    CHECK(ix1.nlist == ix.nlist && !memcmp(ix1.centroids, ix.centroids, (size_t)ix.nlist * dim * sizeof(float)) &&
          !memcmp(ix1.list_ids, ix.list_ids, nd * sizeof(int32_t)));
    cb_knn_ivf_free(&ix1);
    /* tiny and degenerate sizes */
    CHECK(cb_knn_ivf_build(&ix1, d, 5, dim, 0, 10, 1) == 0);
    CHECK(ix1.nlist >= 1 && ix1.nlist <= 5 && ix1.list_off[ix1.nlist] == 5);
    int32_t ti[8];
    float ts[8];
    CHECK(cb_knn_ivf_search(&ix1, ti, ts, q, 1, 8, 0) == 0);
    CHECK(ti[4] >= 0 && ti[5] == -1);
    cb_knn_ivf_free(&ix1);
    CHECK(cb_knn_ivf_build(&ix1, d, 0, dim, 0, 10, 1) == 0);
    CHECK(cb_knn_ivf_search(&ix1, ti, ts, q, 1, 8, 0) == 0);
    CHECK(ti[0] == -1);
    cb_knn_ivf_free(&ix1);
    cb_knn_ivf_free(&ix);
    free(cen);
    free(d);
    free(q);
    free(ex);
    free(ap);
    free(s1);
    free(s2);
}

/* ---- the prepare hook on saved embeddings ---------------------------------- */
typedef struct recorder { size_t nd, nq; char **dt, **qt; } recorder;

static int record_texts(void *ctx, const prepare *p, uint64_t **off, uint32_t **cands, cb_err *err) {
    recorder *r = ctx;
    r->nd = cb_prepare_n_passages(p);
    r->nq = cb_prepare_n_queries(p);
    r->dt = malloc(r->nd * sizeof(char *));
    r->qt = malloc(r->nq * sizeof(char *));
    size_t len;
    for (size_t i = 0; i < r->nd; i++) r->dt[i] = strndup(cb_prepare_passage(p, (uint32_t)i, &len), 1 << 20);
    for (size_t i = 0; i < r->nq; i++) r->qt[i] = strndup(cb_prepare_query(p, (uint32_t)i, &len), 1 << 20);
    *off = calloc(r->nq + 1, sizeof(uint64_t));
    *cands = malloc(1);
    return 0;
}

/* miner.json's text hash: FNV-1a 64 over each text followed by 0xff. */
static void hash_hex(char *out, char **t, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        for (const char *c = t[i]; *c; c++) h = (h ^ (uint8_t)*c) * 0x100000001b3ull;
        h = (h ^ 0xff) * 0x100000001b3ull;
    }
    sprintf(out, "%016llx", (unsigned long long)h);
}

#define NQ 40
#define ND 1200

static prepare *make_prepare(const char *corpus, const prepare_miner *hook, uint64_t seed, int extra_query) {
    prepare_opts o;
    cb_prepare_opts_default(&o);
    o.quiet = 1;
    o.seed = seed;
    o.negatives = PREPARE_NEG_MINED;
    o.miner = hook;
    prepare *p = cb_prepare_new(&o);
    cb_err err = {{0}};
    CHECK(cb_prepare_add_corpus(p, corpus, &err) == 0);
    char qb[64], db[64];
    for (int i = 0; i < NQ + extra_query; i++) {
        snprintf(qb, sizeof qb, "query %d", i);
        for (int j = 0; j < 2; j++) {   /* positives: documents 3i, 3i+1 */
            snprintf(db, sizeof db, "document %d", 3 * i + j);
            CHECK(cb_prepare_add_example(p, qb, strlen(qb), db, strlen(db), 1, &err) == 0);
        }
    }
    return p;
}

static void test_hook(const char *tmp) {
    char corpus[512], dir[512], path[600];
    snprintf(corpus, sizeof corpus, "%s/miner_corpus.txt", tmp);
    snprintf(dir, sizeof dir, "%s/miner_emb", tmp);
    FILE *f = fopen(corpus, "w");
    for (int i = 0; i < ND; i++) fprintf(f, "document %d\n", i);
    fclose(f);

    /* 1. the collection and query order prepare will hand the miner */
    recorder rec = {0};
    prepare_miner rh = {&rec, record_texts};
    prepare *p = make_prepare(corpus, &rh, 42, 0);
    cb_err err = {{0}};
    CHECK(cb_prepare_run(p, &err) == 0);   /* no candidates -> random fallback */
    cb_prepare_free(p);
    CHECK(rec.nd == ND && rec.nq == NQ);

    /* 2. embeddings: random documents; query i near its first positive, so
     * positives sit inside the rank window and must be dropped */
    const int dim = 16;
    rng r;
    cb_rng_init(&r, 3, 0);
    float *D = malloc(ND * dim * sizeof(float)), *Q = malloc(NQ * dim * sizeof(float));
    rand_unit(&r, D, ND, dim);
    int pos_pid[NQ][2];
    for (int qi = 0; qi < NQ; qi++) {
        int i;
        sscanf(rec.qt[qi], "query %d", &i);
        for (int j = 0; j < 2; j++)
            for (size_t pid = 0; pid < ND; pid++) {
                int dn;
                sscanf(rec.dt[pid], "document %d", &dn);
                if (dn == 3 * i + j) pos_pid[qi][j] = (int)pid;
            }
        for (int t = 0; t < dim; t++) Q[qi * dim + t] = D[pos_pid[qi][0] * dim + t] + 0.6f * frand(&r);
    }
    cb_knn_normalize(Q, NQ, dim);
    mkdir(dir, 0777);
    int64_t sd[2] = {ND, dim}, sq[2] = {NQ, dim};
    snprintf(path, sizeof path, "%s/docs.npy", dir);
    CHECK(cb_npy_write(path, "<f4", D, 2, sd, &err) == 0);
    snprintf(path, sizeof path, "%s/queries.npy", dir);
    CHECK(cb_npy_write(path, "<f4", Q, 2, sq, &err) == 0);
    char h1[32], h2[32];
    hash_hex(h1, rec.dt, rec.nd);
    hash_hex(h2, rec.qt, rec.nq);
    snprintf(path, sizeof path, "%s/miner.json", dir);
    f = fopen(path, "w");
    fprintf(f, "{\"model\": \"test\", \"dim\": %d, \"n_docs\": %d, \"n_queries\": %d, "
               "\"docs_hash\": \"%s\", \"queries_hash\": \"%s\"}\n", dim, ND, NQ, h1, h2);
    fclose(f);

    /* 3. mine from the saved embeddings */
    const int k = 110, lo = 10;
    int32_t *ex = malloc(NQ * k * sizeof(int32_t));
    float *es = malloc(NQ * k * sizeof(float));
    CHECK(cb_knn_exact(ex, es, Q, NQ, D, ND, dim, k) == 0);
    miner_opts mo;
    cb_miner_opts_default(&mo);
    mo.load_dir = dir;
    mo.quiet = 1;
    miner m;
    CHECK(cb_miner_init(&m, &mo, &err) == 0);
    prepare_miner hook = cb_miner_hook(&m);
    p = make_prepare(corpus, &hook, 42, 0);
    CHECK_MSG(cb_prepare_run(p, &err) == 0, "%s", err.msg);
    CHECK(cb_prepare_get_stats(p)->mined == 1);
    CHECK(m.st.loaded && m.st.max_rank == 110 && m.st.min_rank == 10 && m.st.index == MINER_INDEX_EXACT);
    CHECK(!strcmp(m.model_name, "test"));
    size_t nt;
    const uint32_t *t = cb_prepare_triplets(p, &nt);
    CHECK(nt == NQ * 20);   /* 2 positives x 10 negatives each */
    int outside = 0, positive = 0, in_window_pos = 0;
    int negs[NQ] = {0};
    for (size_t i = 0; i < nt; i++) {
        uint32_t qi = t[3 * i], pp = t[3 * i + 1], nn = t[3 * i + 2];
        CHECK(pp == (uint32_t)pos_pid[qi][0] || pp == (uint32_t)pos_pid[qi][1]);
        if (nn == (uint32_t)pos_pid[qi][0] || nn == (uint32_t)pos_pid[qi][1]) positive++;
        int found = 0;
        for (int rr = lo; rr < k; rr++) found |= ex[qi * k + rr] == (int32_t)nn;
        if (!found) outside++;
        negs[qi]++;
    }
    for (int qi = 0; qi < NQ; qi++)
        for (int rr = lo; rr < k; rr++)
            in_window_pos += ex[qi * k + rr] == pos_pid[qi][0] || ex[qi * k + rr] == pos_pid[qi][1];
    printf("hook: %zu triplets, %d positives inside the windows (dropped)\n", nt, in_window_pos);
    CHECK(outside == 0);
    CHECK(positive == 0);
    size_t n1;
    const uint32_t *t1 = cb_prepare_triplets(p, &n1);
    uint32_t *copy = malloc(n1 * 3 * sizeof(uint32_t));
    memcpy(copy, t1, n1 * 3 * sizeof(uint32_t));
    cb_prepare_free(p);

    /* same seed: the same triplets */
    p = make_prepare(corpus, &hook, 42, 0);
    CHECK(cb_prepare_run(p, &err) == 0);
    t = cb_prepare_triplets(p, &nt);
    CHECK(nt == n1 && !memcmp(t, copy, nt * 3 * sizeof(uint32_t)));
    cb_prepare_free(p);
    /* another seed shuffles the collection into another order: the saved
     * embeddings no longer fit and are refused */
    p = make_prepare(corpus, &hook, 43, 0);
    CHECK(cb_prepare_run(p, &err) == -1);
    CHECK_MSG(strstr(err.msg, "but other texts") != NULL, "%s", err.msg);
    cb_prepare_free(p);

    /* a minimum rank past max_rank: no candidates -> random fallback */
    cb_miner_free(&m);
    mo.min_rank = 200;
    CHECK(cb_miner_init(&m, &mo, &err) == 0);
    hook = cb_miner_hook(&m);
    p = make_prepare(corpus, &hook, 42, 0);
    CHECK(cb_prepare_run(p, &err) == 0);
    CHECK(cb_prepare_get_stats(p)->mined == 0 && cb_prepare_get_stats(p)->triplets == NQ * 20);
    cb_prepare_free(p);

    /* embeddings saved for other texts are refused */
    p = make_prepare(corpus, &hook, 42, 1);
    CHECK(cb_prepare_run(p, &err) == -1);
    CHECK_MSG(strstr(err.msg, "saved for other texts") != NULL, "%s", err.msg);
    cb_prepare_free(p);
    cb_miner_free(&m);

    for (size_t i = 0; i < rec.nd; i++) free(rec.dt[i]);
    for (size_t i = 0; i < rec.nq; i++) free(rec.qt[i]);
    free(rec.dt);
    free(rec.qt);
    free(copy);
    free(D);
    free(Q);
    free(ex);
    free(es);
    const char *names[] = {"docs.npy", "queries.npy", "miner.json"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
    unlink(corpus);
}

int main(void) {
    const char *tmp = getenv("COLBERT_TMP");
    if (!tmp || !*tmp) tmp = "/tmp";
    test_table();
    test_missing_model(tmp);
    test_exact();
    test_ivf();
    test_hook(tmp);
    return test_finish("test_miner");
}
