/* prepare.c: pairs, labeled pairs and triplets -> ColBERT training files;
 * see prepare.h for the contract and ../shared/SPEC.md section 2. This file
 * holds the state, the collection and grouping, the new negatives and the
 * triplets; the readers that fill the state are in prepare_read.c
 * (prepare_read.h), the export of the files, their manifest and its check
 * in prepare_export.c. */
#include "prepare_read.h"
#include "fsutil.h"
#include "rng.h"

#include <errno.h>
#include <string.h>

/* rng streams: one per purpose, and one per query from STREAM_QUERY on. */
enum { STREAM_COLLECTION = 1, STREAM_TRIPLES = 2, STREAM_QUERY = 1000 };

/* ======================================================================== */
/* State                                                                    */
/* ======================================================================== */

void cb_prepare_opts_default(prepare_opts *o) {
    memset(o, 0, sizeof *o);
    o->kind = PREPARE_KIND_AUTO;
    o->num_new_negatives = 10;
    o->max_triplets_per_query = 20;
    o->positive_label = "1";
    o->negative_label = "0";
    o->seed = 42;
    o->negatives = PREPARE_NEG_RANDOM;
    o->title_sep = " ";
}

static void label_init(label *l, const char *text) {
    l->text = text;
    l->len = strlen(text);
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    l->is_int = l->len > 0 && *end == '\0' && errno == 0;
    l->v = v;
}

prepare *cb_prepare_new(const prepare_opts *opts) {
    prepare *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->o = *opts;
    if (!p->o.title_sep) p->o.title_sep = " ";
    if (!p->o.positive_label) p->o.positive_label = "1";
    if (!p->o.negative_label) p->o.negative_label = "0";
    if (p->o.max_triplets_per_query <= 0) p->o.max_triplets_per_query = 20;
    label_init(&p->pos, p->o.positive_label);
    label_init(&p->neg, p->o.negative_label);
    p->kind = p->o.kind;
    p->st.neg_min = -1;
    return p;
}

void cb_prepare_free(prepare *p) {
    if (!p) return;
    cb_strtab_free(&p->q);
    cb_strtab_free(&p->d);
    free(p->e);
    free(p->kind_path);
    cb_data_json_free(&p->j);
    free(p->scratch);
    free(p->iid_of);
    free(p->qoff);
    free(p->qd);
    free(p->npos);
    free(p->nneg);
    free(p->trip);
    free(p);
}

const char *cb_prepare_kind_name(prepare_kind k) {
    switch (k) {
    case PREPARE_KIND_AUTO: return "auto";
    case PREPARE_KIND_PAIRS: return "pairs";
    case PREPARE_KIND_LABELED: return "labeled pairs";
    case PREPARE_KIND_TRIPLETS: return "triplets";
    }
    return "?";
}

/* ======================================================================== */
/* Adding texts                                                             */
/* ======================================================================== */

int cb_prepare_add_edge(prepare *p, uint32_t q, uint32_t d, int positive, cb_err *err) {
    if (p->ne == p->cape) {
        size_t cap = p->cape ? 2 * p->cape : 1 << 16;
        edge *e = cb_realloc(p->e, cap * sizeof *p->e, "the training pairs", err);
        if (!e) return -1;
        p->e = e;
        p->cape = cap;
    }
    p->e[p->ne].q = q;
    p->e[p->ne].d = d << 1 | (positive ? 0u : 1u);
    p->ne++;
    return 0;
}

int cb_prepare_add_doc(prepare *p, const char *s, size_t n, uint32_t *id, cb_err *err) {
    return cb_strtab_intern(&p->d, s, n, id, NULL, err);
}

int cb_prepare_add_example(prepare *p, const char *query, size_t qlen, const char *passage,
                        size_t plen, int positive, cb_err *err) {
    size_t bad;
    if (cb_data_is_blank(query, qlen)) return cb_err_set(err, "empty query");
    if (cb_data_is_blank(passage, plen)) return cb_err_set(err, "empty passage");
    if (!cb_data_utf8_valid(query, qlen, &bad)) return cb_err_set(err, "invalid UTF-8 in the query at byte %zu", bad);
    if (!cb_data_utf8_valid(passage, plen, &bad)) return cb_err_set(err, "invalid UTF-8 in the passage at byte %zu", bad);
    uint32_t q, d;
    if (cb_strtab_intern(&p->q, query, qlen, &q, NULL, err) || cb_prepare_add_doc(p, passage, plen, &d, err) ||
        cb_prepare_add_edge(p, q, d, positive, err))
        return -1;
    p->st.records++;
    return 0;
}

/* ======================================================================== */
/* Collection, grouping, negatives, triplets                                */
/* ======================================================================== */

static int cmp_u32(const void *x, const void *y) {
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

static void sort_u32(uint32_t *a, size_t n) {
    if (n > 24) {
        qsort(a, n, sizeof *a, cmp_u32);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        uint32_t v = a[i];
        size_t j = i;
        while (j > 0 && a[j - 1] > v) { a[j] = a[j - 1]; j--; }
        a[j] = v;
    }
}

static int in_sorted(const uint32_t *a, size_t n, uint32_t v) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] == v) return 1;
        if (a[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

static int in_list(const uint32_t *a, size_t n, uint32_t v) {
    for (size_t i = 0; i < n; i++)
        if (a[i] == v) return 1;
    return 0;
}

/* Shuffle the collection and group the edges by query: per query the sorted
 * distinct positive pids, then the sorted distinct negative pids that are not
 * positives. */
static int build_groups(prepare *p, cb_err *err) {
    size_t C = p->d.n, nq = p->q.n;
    rng r;
    cb_rng_init(&r, p->o.seed, STREAM_COLLECTION);
    uint32_t *pid_of = cb_malloc(C * sizeof *pid_of, "the collection", err);   /* document id -> pid */
    uint64_t *fill = cb_malloc((nq + 1) * sizeof *fill, "the queries", err);
    p->iid_of = cb_malloc(C * sizeof *p->iid_of, "the collection", err);
    p->qoff = cb_calloc(nq + 1, sizeof *p->qoff, "the queries", err);
    p->qd = cb_malloc(p->ne * sizeof *p->qd, "the training pairs", err);
    p->npos = cb_malloc(nq * sizeof *p->npos, "the queries", err);
    p->nneg = cb_malloc(nq * sizeof *p->nneg, "the queries", err);
    if (!pid_of || !fill || !p->iid_of || !p->qoff || !p->qd || !p->npos || !p->nneg) {
        free(pid_of);
        free(fill);
        return -1;
    }
    for (size_t i = 0; i < C; i++) p->iid_of[i] = (uint32_t)i;
    cb_rng_shuffle_u32(&r, p->iid_of, C);
    for (size_t i = 0; i < C; i++) pid_of[p->iid_of[i]] = (uint32_t)i;

    for (size_t i = 0; i < p->ne; i++) p->qoff[p->e[i].q + 1]++;
    for (size_t q = 0; q < nq; q++) p->qoff[q + 1] += p->qoff[q];
    memcpy(fill, p->qoff, (nq + 1) * sizeof *fill);
    for (size_t i = 0; i < p->ne; i++) {
        uint32_t d = p->e[i].d;
        p->qd[fill[p->e[i].q]++] = pid_of[d >> 1] << 1 | (d & 1);
    }
    free(fill);
    free(pid_of);
    free(p->e);
    p->e = NULL;
    p->ne = p->cape = 0;

    uint32_t *negs = NULL;
    size_t cap = 0;
    for (size_t q = 0; q < nq; q++) {
        uint32_t *a = p->qd + p->qoff[q];
        size_t n = (size_t)(p->qoff[q + 1] - p->qoff[q]);
        sort_u32(a, n);   /* by pid, a positive before a negative of the same pid */
        if (n > cap) {
            uint32_t *g = cb_realloc(negs, 2 * n * sizeof *negs, "the negatives", err);
            if (!g) {
                free(negs);
                return -1;
            }
            negs = g;
            cap = 2 * n;
        }
        size_t np = 0, nn = 0;
        for (size_t i = 0; i < n;) {
            uint32_t pid = a[i] >> 1;
            int positive = !(a[i] & 1);
            while (i < n && (a[i] >> 1) == pid) i++;
            if (positive) a[np++] = pid;
            else negs[nn++] = pid;
        }
        if (nn) memcpy(a + np, negs, nn * sizeof *negs);   /* negs is NULL while every query so far was empty */
        p->npos[q] = (uint32_t)np;
        p->nneg[q] = (uint32_t)nn;
    }
    free(negs);
    return 0;
}

/* Room for n more triplets. Returns 0, or -1 with err. */
static int reserve_triplets(prepare *p, size_t n, cb_err *err) {
    if (p->ntrip + n <= p->captrip) return 0;
    size_t cap = p->captrip ? p->captrip : 1 << 16;
    while (cap < p->ntrip + n) cap *= 2;
    uint32_t *t = cb_realloc(p->trip, cap * 3 * sizeof *p->trip, "the triplets", err);
    if (!t) return -1;
    p->trip = t;
    p->captrip = cap;
    return 0;
}

/* One triplet, in room made by reserve_triplets. */
static void emit(prepare *p, uint32_t q, uint32_t pos, uint32_t neg) {
    CB_ASSERT(p->ntrip < p->captrip);
    uint32_t *t = p->trip + 3 * p->ntrip++;
    t[0] = q;
    t[1] = pos;
    t[2] = neg;
}

typedef struct scratch {
    uint32_t *negs, *tmp;
    uint64_t *used;
    size_t cap_negs, cap_tmp, cap_used;
} scratch;

/* Array a of *cap elements of elem bytes, grown to hold n: the array
 * (never NULL), or NULL with err when out of memory (a is then unchanged). */
static void *reserve(void *a, size_t *cap, size_t n, size_t elem, cb_err *err) {
    if (a && n <= *cap) return a;
    size_t c = n + n / 2 + 16;
    void *b = cb_realloc(a, c * elem, "the sampling scratch", err);
    if (b) *cap = c;
    return b;
}

static uint32_t *reserve32(uint32_t **a, size_t *cap, size_t n, cb_err *err) {
    uint32_t *b = reserve(*a, cap, n, sizeof **a, err);
    return b ? (*a = b) : NULL;
}

static uint64_t *reserve64(uint64_t **a, size_t *cap, size_t n, cb_err *err) {
    uint64_t *b = reserve(*a, cap, n, sizeof **a, err);
    return b ? (*a = b) : NULL;
}

static int in_list64(const uint64_t *a, size_t n, uint64_t v) {
    for (size_t i = 0; i < n; i++)
        if (a[i] == v) return 1;
    return 0;
}

/* k of the n values a[0..n) in random order (partial Fisher-Yates), into
 * a[0..k); returns k. */
static size_t sample_prefix(rng *r, uint32_t *a, size_t n, size_t k) {
    if (k > n) k = n;
    for (size_t i = 0; i < k; i++) {
        size_t j = i + (size_t)cb_rng_below(r, n - i);
        uint32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
    return k;
}

/* New random negatives of one query: min(k, available) distinct pids that are
 * neither in P nor in N (both sorted), appended to out[*nout...]. */
static int random_negatives(rng *r, size_t C, const uint32_t *P, size_t np, const uint32_t *N,
                            size_t nn, size_t k, scratch *s, size_t *nout, cb_err *err) {
    size_t known = np + nn, avail = C > known ? C - known : 0, take = k < avail ? k : avail;
    if (take == 0) return 0;
    uint32_t *out = reserve32(&s->negs, &s->cap_negs, *nout + take, err);
    if (!out) return -1;
    if (avail <= 4 * take) {
        /* Few left: list the complement, then sample from it. */
        uint32_t *c = reserve32(&s->tmp, &s->cap_tmp, avail, err);
        if (!c) return -1;
        size_t m = 0, i = 0, j = 0;
        for (uint32_t pid = 0; pid < C; pid++) {
            while (i < np && P[i] < pid) i++;
            while (j < nn && N[j] < pid) j++;
            if ((i < np && P[i] == pid) || (j < nn && N[j] == pid)) continue;
            c[m++] = pid;
        }
        CB_ASSERT(m == avail);
        sample_prefix(r, c, m, take);
        memcpy(out + *nout, c, take * sizeof *c);
        *nout += take;
        return 0;
    }
    /* Many left: rejection, expected < 4/3 draws per negative. */
    size_t start = *nout;
    while (*nout - start < take) {
        uint32_t pid = (uint32_t)cb_rng_below(r, C);
        if (in_sorted(P, np, pid) || in_sorted(N, nn, pid) || in_list(out + start, *nout - start, pid))
            continue;
        out[(*nout)++] = pid;
    }
    return 0;
}

/* New mined negatives: up to k of the candidates that are not known,
 * sampled at random (the reference's random.sample over the candidates). */
static int mined_negatives(rng *r, const uint32_t *cand, size_t nc, size_t C, const uint32_t *P,
                           size_t np, const uint32_t *N, size_t nn, size_t k, scratch *s, size_t *nout, cb_err *err) {
    uint32_t *c = reserve32(&s->tmp, &s->cap_tmp, nc, err);
    if (!c) return -1;
    size_t m = 0;
    for (size_t i = 0; i < nc; i++) {
        uint32_t pid = cand[i];
        if (pid >= C || in_sorted(P, np, pid) || in_sorted(N, nn, pid) || in_list(c, m, pid)) continue;
        c[m++] = pid;
    }
    size_t take = sample_prefix(r, c, m, k);
    if (take == 0) return 0;
    uint32_t *out = reserve32(&s->negs, &s->cap_negs, *nout + take, err);
    if (!out) return -1;
    memcpy(out + *nout, c, take * sizeof *c);
    *nout += take;
    return 0;
}

/* Triplets of one query from its positives P and negatives N. */
static int query_triplets(prepare *p, rng *r, uint32_t q, const uint32_t *P, size_t np,
                          const uint32_t *N, size_t nn, scratch *s, cb_err *err) {
    if (np == 0 || nn == 0) return 0;
    if (np == 1) {
        if (reserve_triplets(p, nn, err)) return -1;
        for (size_t j = 0; j < nn; j++) emit(p, q, P[0], N[j]);
        return 0;
    }
    size_t M = (size_t)p->o.max_triplets_per_query;
    size_t npp = M / np > 1 ? M / np : 1, per = npp < nn ? npp : nn;
    size_t first = p->ntrip;
    /* `used` holds the chosen (positive, negative) combinations as i * nn + j,
     * needed only when the top-up follows (fewer than M so far). */
    int topup = np * per < M;
    uint64_t *used = topup ? reserve64(&s->used, &s->cap_used, M, err) : NULL;
    size_t nused = 0;
    /* np * per from the first pass, the top-up to M in all */
    if ((topup && !used) || reserve_triplets(p, topup ? M : np * per, err)) return -1;
    for (size_t i = 0; i < np; i++) {
        if (per * 2 >= nn) {   /* most of them: sample from a list */
            uint32_t *idx = reserve32(&s->tmp, &s->cap_tmp, nn, err);
            if (!idx) return -1;
            for (size_t j = 0; j < nn; j++) idx[j] = (uint32_t)j;
            sample_prefix(r, idx, nn, per);
            for (size_t k = 0; k < per; k++) {
                emit(p, q, P[i], N[idx[k]]);
                if (topup) used[nused++] = (uint64_t)i * nn + idx[k];
            }
        } else {               /* a few of many: rejection */
            uint32_t *idx = reserve32(&s->tmp, &s->cap_tmp, per, err);
            if (!idx) return -1;
            for (size_t k = 0; k < per;) {
                uint32_t j = (uint32_t)cb_rng_below(r, nn);
                if (in_list(idx, k, j)) continue;
                idx[k++] = j;
                emit(p, q, P[i], N[j]);
                if (topup) used[nused++] = (uint64_t)i * nn + j;
            }
        }
    }
    if (!topup) return 0;
    size_t total = np * nn, want = M - (p->ntrip - first);
    if (want > total - nused) want = total - nused;
    if (total <= 4 * M) {
        /* All combinations in random order, skipping those already made. */
        uint32_t *c = reserve32(&s->tmp, &s->cap_tmp, total, err);
        if (!c) return -1;
        for (size_t k = 0; k < total; k++) c[k] = (uint32_t)k;
        cb_rng_shuffle_u32(r, c, total);
        for (size_t k = 0; k < total && want > 0; k++) {
            if (in_list64(used, nused, c[k])) continue;
            emit(p, q, P[c[k] / nn], N[c[k] % nn]);
            want--;
        }
    } else {
        if (!(used = reserve64(&s->used, &s->cap_used, nused + want, err))) return -1;
        while (want > 0) {
            uint64_t c = cb_rng_below(r, total);
            if (in_list64(used, nused, c)) continue;
            used[nused++] = c;
            emit(p, q, P[c / nn], N[c % nn]);
            want--;
        }
    }
    return 0;
}

/* All triplets; cands/coff: mined candidates, or NULL for random negatives. */
static int make_triplets(prepare *p, const uint64_t *coff, const uint32_t *cands, cb_err *err) {
    size_t nq = p->q.n, C = p->d.n, k = p->o.num_new_negatives > 0 ? (size_t)p->o.num_new_negatives : 0;
    scratch s = {0};
    p->ntrip = 0;
    p->st.new_negatives = 0;
    p->st.queries_with_triplets = 0;
    p->st.neg_min = -1;
    p->st.neg_max = 0;
    int64_t neg_sum = 0;
    int rc = 0;
    for (size_t q = 0; q < nq && !rc; q++) {
        const uint32_t *P = p->qd + p->qoff[q], *N = P + p->npos[q];
        size_t np = p->npos[q], nn = p->nneg[q], n = nn;
        rng r;
        cb_rng_init(&r, p->o.seed, STREAM_QUERY + (uint64_t)q);
        if (!reserve32(&s.negs, &s.cap_negs, nn + k, err)) {
            rc = -1;
            break;
        }
        if (nn) memcpy(s.negs, N, nn * sizeof *N);
        if (k > 0 && np > 0) {
            if (cands) rc = mined_negatives(&r, cands + coff[q], (size_t)(coff[q + 1] - coff[q]), C, P, np, N, nn, k, &s, &n, err);
            else rc = random_negatives(&r, C, P, np, N, nn, k, &s, &n, err);
        }
        p->st.new_negatives += (int64_t)(n - nn);
        size_t before = p->ntrip;
        if (rc || (rc = query_triplets(p, &r, (uint32_t)q, P, np, s.negs, n, &s, err))) break;
        if (p->ntrip > before) {
            p->st.queries_with_triplets++;
            neg_sum += (int64_t)n;
            if (p->st.neg_min < 0 || (int64_t)n < p->st.neg_min) p->st.neg_min = (int64_t)n;
            if ((int64_t)n > p->st.neg_max) p->st.neg_max = (int64_t)n;
        }
    }
    if (p->st.neg_min < 0) p->st.neg_min = 0;
    p->st.neg_mean = p->st.queries_with_triplets ? (double)neg_sum / (double)p->st.queries_with_triplets : 0;
    free(s.negs);
    free(s.tmp);
    free(s.used);
    return rc;
}

/* Why no triplet came out, and what to do. */
static int no_triplet_error(const prepare *p, cb_err *err) {
    size_t nq = p->q.n, with_pos = 0;
    for (size_t q = 0; q < nq; q++) with_pos += p->npos[q] > 0;
    if (with_pos == 0)
        return cb_err_set(err, "no training triplet: none of the %zu queries has a positive passage "
                          "(every label is the negative label \"%s\"); check --positive-label",
                          nq, p->neg.text);
    if (p->o.num_new_negatives <= 0)
        return cb_err_set(err, "no training triplet: the data has no negatives and "
                          "--num-new-negatives is 0; give negatives (triplets or labeled pairs) "
                          "or set --num-new-negatives above 0");
    return cb_err_set(err, "no training triplet: the collection has only %zu documents and each "
                      "query's positives cover it, so no negative can be drawn; add documents "
                      "with --corpus FILE or give negatives", p->d.n);
}

typedef struct trip3 {
    uint32_t v[3];
} trip3;

int cb_prepare_run(prepare *p, cb_err *err) {
    CB_ASSERT(!p->ran);
    if (p->q.n == 0 || p->ne == 0)
        return cb_err_set(err, "no training records: give --train-data FILE or --beir DIR");
    p->ran = 1;
    p->st.kind = p->kind;
    if (build_groups(p, err)) return -1;
    p->st.mined = 0;
    if (p->o.negatives == PREPARE_NEG_MINED && p->o.miner && p->o.num_new_negatives > 0) {
        uint64_t *coff = NULL;
        uint32_t *cands = NULL;
        if (p->o.miner->candidates(p->o.miner->ctx, p, &coff, &cands, err)) {
            free(coff);
            free(cands);
            return cb_err_prefix(err, "hard-negative mining");
        }
        int rc = make_triplets(p, coff, cands, err);
        free(coff);
        free(cands);
        if (rc) return -1;
        p->st.mined = 1;
        if (p->ntrip == 0) {
            if (!p->o.quiet)
                fprintf(stderr, "colbert: warning: mining gave no training triplet (too few documents "
                        "or hard negatives?); retrying with random negatives\n");
            p->st.mined = 0;
        }
    }
    if (!p->st.mined && make_triplets(p, NULL, NULL, err)) return -1;
    if (p->ntrip == 0) return no_triplet_error(p, err);
    rng r;
    cb_rng_init(&r, p->o.seed, STREAM_TRIPLES);
    trip3 *t = (trip3 *)p->trip;
    for (size_t i = p->ntrip; i > 1; i--) {
        size_t j = (size_t)cb_rng_below(&r, i);
        trip3 x = t[i - 1];
        t[i - 1] = t[j];
        t[j] = x;
    }
    p->st.queries = (int64_t)p->q.n;
    p->st.passages = (int64_t)p->d.n;
    p->st.triplets = (int64_t)p->ntrip;
    return 0;
}

/* ======================================================================== */
/* Accessors                                                                */
/* ======================================================================== */

const prepare_stats *cb_prepare_get_stats(const prepare *p) { return &p->st; }
size_t cb_prepare_n_queries(const prepare *p) { return p->q.n; }
size_t cb_prepare_n_passages(const prepare *p) { return p->d.n; }

const char *cb_prepare_query(const prepare *p, uint32_t qid, size_t *len) {
    CB_ASSERT(qid < p->q.n);
    if (len) *len = cb_strtab_len(&p->q, qid);
    return cb_strtab_get(&p->q, qid);
}

const char *cb_prepare_passage(const prepare *p, uint32_t pid, size_t *len) {
    CB_ASSERT(p->iid_of && pid < p->d.n);
    uint32_t i = p->iid_of[pid];
    if (len) *len = cb_strtab_len(&p->d, i);
    return cb_strtab_get(&p->d, i);
}

const uint32_t *cb_prepare_triplets(const prepare *p, size_t *n) {
    if (n) *n = p->ntrip;
    return p->trip;
}
